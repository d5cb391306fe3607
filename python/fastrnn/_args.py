"""The argument rules shared by every public function: one place for each rule and its message.

Each checker takes the argument's public name first, so that its error names it
(``"hidden_size: must be >= 1, got 0"``). Bools are never accepted as numbers.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

__all__ = [
    "as_rng",
    "check_bool",
    "check_flag",
    "check_int",
    "check_lengths",
    "check_real",
    "float_array",
    "float_dtype",
    "to_numpy",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_bool(name: str, v: Any) -> bool:
    """``v`` as a bool; anything but a bool (or NumPy's) is a TypeError: ``"no"`` is not False."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def check_flag(name: str, v: Any) -> bool:
    """A switch of PyTorch's constructors (``bias``, ``bidirectional``, ``batch_first``): a bool,
    or 0 or 1 as PyTorch takes them; anything else (``"no"``, ``2``, None) is a TypeError."""
    if isinstance(v, (bool, np.bool_)) or (
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) in (0, 1)
    ):
        return bool(v)
    raise TypeError(f"{name}: expected a bool, got {v!r}")


def check_int(name: str, v: Any, minimum: int | None = None) -> int:
    """``v`` as an int (>= ``minimum`` if given); bools and non-integers are a TypeError."""
    if type(v) is not int and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {v}")
    return int(v)


def check_real(name: str, v: Any, low: float | None = None, high: float | None = None) -> float:
    """``v`` as a finite float in ``[low, high]`` (each bound if given); bools and non-numbers are
    a TypeError, values outside a ValueError."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name}: must be finite, got {v}")
    if low is not None and f < low:
        raise ValueError(f"{name}: must be >= {low:g}, got {v}")
    if high is not None and f > high:
        raise ValueError(f"{name}: must be <= {high:g}, got {v}")
    return f


def check_lengths(name: str, a: Any, T: int, B: int, minimum: int = 1) -> NDArray[np.int64]:
    """``a`` as ``(B,)`` sequence lengths, each in ``[minimum, T]``, contiguous int64; None is
    every sequence ``T`` steps long. A non-integer dtype (bool and integral floats too) is a
    TypeError; another shape or a value out of range a ValueError naming ``name`` and the range.

    The rule of the sequence-to-sequence models and the attention (sources, targets, memories:
    each at least ``minimum`` = 1 step). :meth:`fastrnn.spec.StackSpec.check_lengths`, the
    recurrent layers' rule, differs on purpose: it takes integral floats (as PyTorch's
    ``pack_padded_sequence`` does) and lengths 0, and returns None for None."""
    if a is None:
        return np.full(B, T, np.int64)
    la = np.asarray(to_numpy(a))
    if la.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {la.dtype}")
    if la.shape != (B,):
        raise ValueError(f"{name}: expected shape ({B},), one per sequence, got {la.shape}")
    if la.size and (la.min() < minimum or la.max() > T):
        raise ValueError(
            f"{name}: values must be in [{minimum}, {T}], got [{la.min()}, {la.max()}]"
        )
    return np.ascontiguousarray(la, dtype=np.int64)


def float_dtype(name: str, dtype: DTypeLike) -> np.dtype[Any]:
    """``dtype`` as float32 or float64; anything else is a TypeError naming ``name``."""
    if isinstance(dtype, np.dtype) and dtype in FLOAT_DTYPES:  # the common case, fast
        return dtype
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def float_array(name: str, v: Any) -> NDArray[Any]:
    """``v`` (an array-like or a torch tensor) as a NumPy array of dtype float32 or float64, not
    converted; any other dtype is a TypeError naming ``name``."""
    a = v if type(v) is np.ndarray else np.asarray(to_numpy(v))
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    return a


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator from an int seed >= 0, a Generator (used as is) or None (fresh entropy)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    return np.random.default_rng(check_int("seed", seed, 0))


def to_numpy(v: Any) -> Any:
    """A torch tensor (detached, on CPU) as a NumPy array, without importing torch; anything
    else unchanged."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        return v.detach().cpu().numpy()
    return v
