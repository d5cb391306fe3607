"""reference.round_bf16: the bfloat16 rounding of the compute_dtype="bfloat16" products' operands,
against bit patterns worked out by hand and against PyTorch's float32 -> bfloat16 conversion."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastrnn import reference as R
from helpers import stack_params


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).view(np.uint32)


def from_bits(*b: int) -> np.ndarray:
    return np.array(b, np.uint32).view(np.float32)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0x3F800000, 0x3F800000),  # 1.0: exact
        (0x3F807FFF, 0x3F800000),  # below half an ulp: down
        (0x3F808000, 0x3F800000),  # a tie, even below: down
        (0x3F818000, 0x3F820000),  # a tie, odd below: up to even
        (0x3F808001, 0x3F810000),  # above half: up
        (0xBF808001, 0xBF810000),  # the same, negative
        (0x7F7FFFFF, 0x7F800000),  # float32's largest: past bfloat16's, to infinity
        (0x7F7F7FFF, 0x7F7F0000),  # just below the midpoint: bfloat16's largest finite
        (0x7F800000, 0x7F800000),  # inf
        (0xFF800000, 0xFF800000),  # -inf
        (0x00000001, 0x00000000),  # the smallest subnormal: to zero
        (0x80000001, 0x80000000),  # keeps the sign of zero
        (0x00008000, 0x00000000),  # a subnormal tie, even below
        (0x00018000, 0x00020000),  # a subnormal tie, odd below
    ],
    ids=hex,
)
def test_round_to_nearest_even(given: int, expected: int) -> None:
    assert bits(R.round_bf16(from_bits(given)))[0] == expected


@pytest.mark.parametrize("nan", [0x7FC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF])
def test_nan_stays_nan_with_its_sign(nan: int) -> None:
    out = R.round_bf16(from_bits(nan))
    assert np.isnan(out[0])
    assert bits(out)[0] & 0xFFFF == 0  # a bfloat16 value
    assert bits(out)[0] >> 31 == nan >> 31


def test_shapes_dtypes_and_idempotence() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4, 5)).astype(np.float32) * 1e3
    r = R.round_bf16(a)
    assert r.dtype == np.float32 and r.shape == a.shape
    assert np.array_equal(R.round_bf16(r), r)
    assert (bits(r) & 0xFFFF == 0).all()
    assert np.all(np.abs(r - a) <= np.abs(a) * 2.0**-8)  # half an ulp of 8 significant bits
    assert R.round_bf16(np.float64(1.0)).shape == ()
    assert np.array_equal(R.round_bf16(a[:, ::2].T), R.round_bf16(a)[:, ::2].T)  # any strides


def test_against_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    scaled = np.ldexp(rng.uniform(-2, 2, 100_000), rng.integers(-150, 127, 100_000))
    patterns = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32)
    a = np.concatenate([scaled.astype(np.float32), patterns.view(np.float32)])
    finite = np.isfinite(a)
    ours = R.round_bf16(a)
    theirs = torch.from_numpy(a).to(torch.bfloat16).float().numpy()
    assert np.array_equal(bits(ours[finite]), bits(theirs[finite]))
    assert np.array_equal(np.isnan(ours), np.isnan(theirs))


# -------------------------------------------------------- the reference's bfloat16 products

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]


def problem(cell: str, proj: int = 0, layers: int = 2, D: int = 2) -> tuple[Any, ...]:
    rng = np.random.default_rng(3)
    T, B, I, H = 6, 4, 10, 12
    params = stack_params(rng, cell, I, H, num_layers=layers, num_directions=D, proj_size=proj,
                          dtype=np.float64)  # fmt: skip
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, D * (proj or H)))
    return x, params, dict(num_layers=layers, bidirectional=D == 2, lengths=[6, 3, 0, 5]), dy


def run(cell: str, x: Any, params: Any, opts: Any, dy: Any, compute: str | None) -> list[Any]:
    y, h_n, _, cache = R.stack_forward(cell, x, params, compute_dtype=compute, **opts)
    g = R.stack_backward(cache, dy)
    grads = [a for p in g["params"] for a in p.values() if a is not None]
    return [y, h_n, g["dx"], g["dh0"], *grads]


@pytest.mark.parametrize("cell", CELLS)
def test_exact_dtypes_are_the_default(cell: str) -> None:
    x, params, opts, dy = problem(cell)
    base = run(cell, x, params, opts, dy, None)
    for compute in ("float32", "float64"):
        assert all(
            np.array_equal(a, b)
            for a, b in zip(base, run(cell, x, params, opts, dy, compute), strict=True)
        )


@pytest.mark.parametrize("cell", [c for c in CELLS if c != "gru_reset_before"])
def test_one_step_is_the_exact_step_on_rounded_operands(cell: str) -> None:
    """T = 1 from a given state: the products see bfloat16 values of x, h0 and the weights, and
    nothing else is rounded (for gru_reset_before, r*h is rounded too: not this identity)."""
    rng = np.random.default_rng(4)
    (w_ih, w_hh, b_ih, b_hh, _), = stack_params(rng, cell, 10, 12, num_layers=1, num_directions=1,
                                                proj_size=0, dtype=np.float64)  # fmt: skip
    x, h0 = rng.standard_normal((1, 3, 10)), rng.standard_normal((1, 3, 12))
    c0 = rng.standard_normal((1, 3, 12)) if cell == "lstm" else None
    q = lambda a: R.round_bf16(a).astype(np.float64)  # noqa: E731
    h0 = q(h0)  # GRU's z*h reads h unrounded: a state bfloat16 represents
    y, *_ = R.stack_forward(cell, x, [(w_ih, w_hh, b_ih, b_hh, None)], h0, c0,
                            compute_dtype="bfloat16")  # fmt: skip
    y_exact, *_ = R.stack_forward(cell, q(x), [(q(w_ih), q(w_hh), b_ih, b_hh, None)], q(h0), c0)
    assert np.array_equal(y, y_exact)


@pytest.mark.parametrize(("cell", "proj"), [(c, 0) for c in CELLS] + [("lstm", 5)])
def test_bf16_products_are_close_to_exact_but_not_exact(cell: str, proj: int) -> None:
    x, params, opts, dy = problem(cell, proj)
    exact = run(cell, x, params, opts, dy, None)
    bf16 = run(cell, x, params, opts, dy, "bfloat16")
    for a, b in zip(exact, bf16, strict=True):  # relative to the array's norm: a ReLU kink may
        assert np.linalg.norm(a - b) <= 2e-2 * max(1.0, float(np.linalg.norm(a)))  # flip an entry
    assert (
        max(float(np.abs(a - b).max()) for a, b in zip(exact, bf16, strict=True)) > 1e-4
    )  # rounded


def test_backward_follows_the_forward_cache() -> None:
    x, params, opts, dy = problem("lstm")
    _, _, _, cache = R.stack_forward("lstm", x, params, compute_dtype="bfloat16", **opts)
    with R.compute_precision(None):  # the cache's precision, not the caller's context
        g = R.stack_backward(cache, dy)
    assert np.array_equal(g["dx"], run("lstm", x, params, opts, dy, "bfloat16")[2])


def test_unknown_compute_dtype() -> None:
    x, params, opts, _ = problem("gru")
    with pytest.raises(ValueError, match=r"compute_dtype: one of .*bfloat16.*got 'float16'"):
        R.stack_forward("gru", x, params, compute_dtype="float16", **opts)
