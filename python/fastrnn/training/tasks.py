"""Synthetic long-range dependency tasks: the adding problem and the copy-memory task.

Both are generated from a seed at any sequence length ``T`` and returned time-major, the layout
of fastrnn's layers. Each comes with the loss of the best input-blind predictor, the level a
model must beat to show that it carries information across ``T`` steps:

* :func:`adding_problem` (Hochreiter & Schmidhuber 1997): ``x`` is ``(T, n, 2)``, a random value
  and a marker per step; the target ``(n, 1)`` is the sum of the two marked values. A constant
  prediction scores :func:`adding_baseline_mse`.
* :func:`copy_memory` (Arjovsky et al. 2016): ``copy_len`` symbols, ``T`` steps of waiting, then
  the symbols must be reproduced. A predictor without memory scores :func:`copy_memory_baseline`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .._args import as_rng, check_int, check_real, float_dtype

__all__ = ["adding_baseline_mse", "adding_problem", "copy_memory", "copy_memory_baseline"]

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.int64]
#: an int seed, a Generator (advanced by the call) or None (fresh entropy)
Seed = int | np.random.Generator | None


def _interval(low: Any, high: Any) -> tuple[float, float]:
    lo, hi = check_real("low", low), check_real("high", high)
    if not lo < hi:
        raise ValueError(f"high: must be greater than low, got low={lo}, high={hi}")
    return lo, hi


def adding_problem(
    n: int, T: int, seed: Seed = None, *, low: float = 0.0, high: float = 1.0,
    dtype: DTypeLike = np.float32,
) -> tuple[FloatArray, FloatArray]:  # fmt: skip
    """``n`` sequences of the adding problem, of length ``T`` (>= 2).

    Returns ``x`` of shape ``(T, n, 2)`` and ``y`` of shape ``(n, 1)``, both of ``dtype`` (float32
    or float64). Channel 0 of ``x`` holds values drawn uniformly in ``[low, high)``; channel 1 is a
    marker, 1.0 at exactly two steps of each sequence, one drawn uniformly in the first half
    ``[0, T//2)`` and one in the second half ``[T//2, T)``, 0.0 elsewhere. ``y`` is the sum of the
    two marked values. ``seed`` is an int, a ``numpy.random.Generator`` (advanced by the call) or
    None; the same int seed gives the same data.
    """
    n = check_int("n", n, 1)
    T = check_int("T", T, 2)
    lo, hi = _interval(low, high)
    dt = float_dtype("dtype", dtype)
    rng = as_rng(seed)

    values = rng.uniform(lo, hi, (T, n)).astype(dt)
    # rounding to float32 can reach `high`: keep the interval half-open
    np.minimum(values, np.nextafter(np.asarray(hi, dt), np.asarray(lo, dt)), out=values)
    first = rng.integers(0, T // 2, n)
    second = rng.integers(T // 2, T, n)
    cols = np.arange(n)

    x = np.zeros((T, n, 2), dtype=dt)
    x[:, :, 0] = values
    x[first, cols, 1] = 1
    x[second, cols, 1] = 1
    y = (values[first, cols] + values[second, cols])[:, None]
    return x, y


def adding_baseline_mse(low: float = 0.0, high: float = 1.0) -> float:
    """Mean squared error (no 1/2 factor) of the best constant prediction of the adding problem.

    That constant is the mean of the target, and its MSE the target's variance: the sum of two
    independent uniform values on ``[low, high)`` has variance ``2 * (high - low)**2 / 12``
    (0.1667 on [0, 1], 0.6667 on [-1, 1]). A model that solves the task gets well below it.
    """
    lo, hi = _interval(low, high)
    return 2.0 * (hi - lo) ** 2 / 12.0


def copy_memory(
    n: int, T: int, seed: Seed = None, *, num_symbols: int = 8, copy_len: int = 10
) -> tuple[IntArray, IntArray]:
    """``n`` sequences of the copy-memory task with a delay of ``T`` (>= 1) steps.

    Returns int64 ids ``x`` and ``y``, both of shape ``(T + 2*copy_len, n)`` (time-major), over a
    vocabulary of ``num_symbols + 2`` ids: 0 is the blank, ``1..num_symbols`` the symbols and
    ``num_symbols + 1`` the delimiter.

    * Input ``x``: ``copy_len`` symbols drawn uniformly, ``T - 1`` blanks, the delimiter, then
      ``copy_len`` blanks.
    * Target ``y``: blanks for ``T + copy_len`` steps, then the ``copy_len`` symbols of ``x``.

    ``seed`` is as in :func:`adding_problem`.
    """
    n = check_int("n", n, 1)
    T = check_int("T", T, 1)
    num_symbols = check_int("num_symbols", num_symbols, 1)
    copy_len = check_int("copy_len", copy_len, 1)
    rng = as_rng(seed)

    symbols = rng.integers(1, num_symbols + 1, (copy_len, n), dtype=np.int64)
    x = np.zeros((T + 2 * copy_len, n), dtype=np.int64)
    y = np.zeros_like(x)
    x[:copy_len] = symbols
    x[T + copy_len - 1] = num_symbols + 1
    y[T + copy_len :] = symbols
    return x, y


def copy_memory_baseline(T: int, num_symbols: int = 8, copy_len: int = 10) -> float:
    """Cross-entropy (nats, mean over all ``T + 2*copy_len`` steps) of the memoryless baseline.

    The baseline predicts the blank with certainty until the delimiter has been seen, then a
    uniform guess over the ``num_symbols`` symbols: ``copy_len * log(num_symbols) / (T +
    2*copy_len)``. A model below it remembers something of the symbols.
    """
    T = check_int("T", T, 1)
    num_symbols = check_int("num_symbols", num_symbols, 1)
    copy_len = check_int("copy_len", copy_len, 1)
    return copy_len * math.log(num_symbols) / (T + 2 * copy_len)
