"""The synthetic long-range tasks: layout of the adding problem and the copy-memory task, their
targets, their baselines (checked empirically / recomputed from the definition), determinism by
seed and argument checking."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastrnn import tasks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [2, 3, 10, 51])
def test_adding_problem_layout(T: int, dtype: Any) -> None:
    n = 500
    x, y = tasks.adding_problem(n, T, seed=1, low=-1.0, high=1.0, dtype=dtype)
    assert x.shape == (T, n, 2) and x.dtype == dtype
    assert y.shape == (n, 1) and y.dtype == dtype
    values, marker = x[..., 0], x[..., 1]
    assert values.min() >= -1 and values.max() < 1
    assert set(np.unique(marker)) <= {0.0, 1.0}
    half = T // 2
    assert (marker[:half].sum(0) == 1).all(), "one marker in the first half"
    assert (marker[half:].sum(0) == 1).all(), "one marker in the second half"
    expected = (values * marker).sum(0, dtype=np.float64)
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6, atol=1e-6)
    # the marker positions cover both halves, not one fixed step
    if T > 3:
        assert len(np.unique(marker[:half].argmax(0))) == half
        assert len(np.unique(marker[half:].argmax(0))) == T - half


def test_adding_values_stay_below_high_in_float32() -> None:
    # [1, 1 + 2**-22) spans two float32 steps: rounding to float32 alone would often give `high`
    low, high = 1.0, 1.0 + 2.0**-22
    x, _ = tasks.adding_problem(1000, 4, seed=0, low=low, high=high)
    assert x[..., 0].min() == low and x[..., 0].max() < np.float32(high)


@pytest.mark.parametrize(("low", "high", "expected"), [(0.0, 1.0, 1 / 6), (-1.0, 1.0, 2 / 3)])
def test_adding_baseline_mse(low: float, high: float, expected: float) -> None:
    baseline = tasks.adding_baseline_mse(low, high)
    assert baseline == pytest.approx(expected)
    _, y = tasks.adding_problem(200_000, 6, seed=2, low=low, high=high, dtype=np.float64)
    mse = float(np.mean((y - y.mean()) ** 2))
    assert mse == pytest.approx(baseline, rel=0.02)


def test_adding_defaults() -> None:
    x, _ = tasks.adding_problem(4, 5, seed=0)
    assert x.dtype == np.float32 and 0 <= x[..., 0].min() and x[..., 0].max() < 1
    assert tasks.adding_baseline_mse() == pytest.approx(1 / 6)


def test_copy_memory_layout() -> None:
    n, T, K, S = 300, 12, 10, 8
    x, y = tasks.copy_memory(n, T, seed=3, num_symbols=S, copy_len=K)
    assert x.shape == y.shape == (T + 2 * K, n)
    assert x.dtype == y.dtype == np.int64
    symbols = x[:K]
    assert symbols.min() == 1 and symbols.max() == S, "symbols are 1..num_symbols, all used"
    assert (x[K : T + K - 1] == 0).all(), "T - 1 blanks after the symbols"
    assert (x[T + K - 1] == S + 1).all(), "then the delimiter"
    assert (x[T + K :] == 0).all(), "then copy_len blanks"
    assert (y[: T + K] == 0).all(), "blank targets until the delimiter included"
    np.testing.assert_array_equal(y[T + K :], symbols)


def test_copy_memory_shortest_delay() -> None:
    x, y = tasks.copy_memory(2, 1, seed=0, num_symbols=3, copy_len=2)
    assert x.shape == (5, 2), "T + 2*copy_len steps: no blank between symbols and delimiter"
    np.testing.assert_array_equal(x[2:], [[4, 4], [0, 0], [0, 0]])
    np.testing.assert_array_equal(y[:3], np.zeros((3, 2)))
    np.testing.assert_array_equal(y[3:], x[:2])


@pytest.mark.parametrize(("T", "S", "K"), [(1, 8, 10), (50, 8, 10), (200, 4, 3), (7, 1, 2)])
def test_copy_memory_baseline(T: int, S: int, K: int) -> None:
    _, y = tasks.copy_memory(64, T, seed=4, num_symbols=S, copy_len=K)
    steps, V = T + 2 * K, S + 2
    # the memoryless predictor: blank with certainty until the delimiter, then uniform symbols
    probs = np.zeros((steps, V))
    probs[: T + K, 0] = 1.0
    probs[T + K :, 1 : S + 1] = 1.0 / S
    p_target = np.take_along_axis(probs, y, axis=1)
    ce = float(np.mean(-np.log(p_target)))
    assert tasks.copy_memory_baseline(T, num_symbols=S, copy_len=K) == pytest.approx(ce)
    assert tasks.copy_memory_baseline(T, S, K) == pytest.approx(K * np.log(S) / steps)


def test_copy_memory_baseline_defaults() -> None:
    assert tasks.copy_memory_baseline(100) == pytest.approx(10 * np.log(8) / 120)


@pytest.mark.parametrize("make", [tasks.adding_problem, tasks.copy_memory])
def test_determinism(make: Any) -> None:
    a = make(16, 20, 7)
    b = make(16, 20, 7)
    c = make(16, 20, 8)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    # a Generator is used as is and advanced
    rng = np.random.default_rng(7)
    first, second = make(16, 20, rng), make(16, 20, rng)
    np.testing.assert_array_equal(first[0], a[0])
    assert not np.array_equal(second[0], a[0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: tasks.adding_problem(4, 1), ValueError, "T: must be >= 2, got 1"),
        (lambda: tasks.adding_problem(0, 5), ValueError, "n: must be >= 1"),
        (lambda: tasks.adding_problem(True, 5), TypeError, "n: expected an int"),
        (lambda: tasks.adding_problem(4, 5.0), TypeError, "T: expected an int, got float"),
        (lambda: tasks.adding_problem(4, 5, seed=-1), ValueError, "seed: must be >= 0"),
        (lambda: tasks.adding_problem(4, 5, seed=True), TypeError, "seed: expected an int"),
        (lambda: tasks.adding_problem(4, 5, seed=1.5), TypeError, "seed: expected an int"),
        (lambda: tasks.adding_problem(4, 5, low=1, high=0), ValueError, "high: must be greater"),
        (lambda: tasks.adding_problem(4, 5, low=np.nan), ValueError, "low: must be finite"),
        (lambda: tasks.adding_problem(4, 5, high="1"), TypeError, "high: expected a real"),
        (lambda: tasks.adding_problem(4, 5, dtype=np.int32), TypeError, "dtype: expected float"),
        (lambda: tasks.adding_problem(4, 5, dtype="nope"), TypeError, "dtype: expected float"),
        (lambda: tasks.adding_baseline_mse(2.0, 2.0), ValueError, "high: must be greater"),
        (lambda: tasks.copy_memory(4, 0), ValueError, "T: must be >= 1, got 0"),
        (lambda: tasks.copy_memory(4, 5, num_symbols=0), ValueError, "num_symbols: must be >= 1"),
        (lambda: tasks.copy_memory(4, 5, copy_len=False), TypeError, "copy_len: expected an int"),
        (lambda: tasks.copy_memory_baseline(0), ValueError, "T: must be >= 1"),
        (lambda: tasks.copy_memory_baseline(5, copy_len=0), ValueError, "copy_len: must be"),
    ],
)
def test_bad_arguments(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_numpy_integers_accepted() -> None:
    x, y = tasks.adding_problem(np.int64(3), np.int32(4), seed=np.uint8(5))
    assert x.shape == (4, 3, 2) and y.shape == (3, 1)
    x, y = tasks.copy_memory(np.int64(2), np.int64(3), copy_len=np.int16(2))
    assert x.shape == y.shape == (7, 2)
