"""Losses, each returning ``(loss, gradient w.r.t. its input)``.

* :func:`cross_entropy`: softmax cross-entropy fused in the compiled core, numerically stable
  (log-sum-exp around each row's maximum), PyTorch's ``CrossEntropyLoss`` (mean over the
  non-ignored targets, or sum).
* :func:`mse`: mean squared error. **Convention:** the default is PyTorch's ``MSELoss``,
  ``mean((pred - target)^2)`` with no 1/2; ``half=True`` gives the course notes'
  ``1/2 * mean((pred - target)^2)`` (gradient ``(pred - target) / n``). Reported test MSEs (the
  adding problem's 0.167 baseline) use the default.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import functional as F

__all__ = ["cross_entropy", "mse"]

Array = NDArray[Any]


def _reduction(reduction: str) -> bool:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    return reduction == "mean"


def cross_entropy(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[float, Array]:
    """Softmax cross-entropy of ``logits`` against integer class ids, as PyTorch's
    ``CrossEntropyLoss``.

    Args:
        logits: ``(..., C)``, float32 or float64: one row of ``C`` class scores per target.
        targets: integer class ids ``(...)``, ``logits``' shape without its last axis.
        ignore_index: targets equal to it contribute nothing (zero gradient).
        reduction: ``"mean"`` (divided by the number of targets not ignored; NaN if there are
            none, as PyTorch) or ``"sum"``.

    Returns:
        ``(loss, dlogits)``: the loss as a float and its gradient w.r.t. ``logits``, of
        ``logits``' shape and dtype.

    Raises:
        TypeError: ``logits`` not float32 or float64, or ``targets`` not integers.
        ValueError: ``logits`` 0-d, ``targets`` of another shape, or an unknown ``reduction``.
    """
    mean = _reduction(reduction)
    z = np.asarray(logits)
    if z.dtype not in (np.float32, np.float64):
        raise TypeError(f"logits: expected float32 or float64, got dtype {z.dtype}")
    if z.ndim < 1:
        raise ValueError("logits: expected at least one axis (the classes)")
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets: expected an integer array, got dtype {t.dtype}")
    if t.shape != z.shape[:-1]:
        raise ValueError(f"targets: expected shape {z.shape[:-1]} (logits' minus the last), "
                         f"got {t.shape}")  # fmt: skip
    C = z.shape[-1]
    loss, d = F.softmax_cross_entropy(
        np.ascontiguousarray(z.reshape(-1, C)),
        np.ascontiguousarray(t.reshape(-1), dtype=np.int64),
        int(ignore_index),
        mean,
    )
    return float(loss), d.reshape(z.shape)


def mse(
    pred: ArrayLike, target: ArrayLike, *, reduction: str = "mean", half: bool = False
) -> tuple[float, Array]:
    """Squared error of ``pred`` against ``target``: ``mean((pred - target)^2)``, PyTorch's
    ``MSELoss`` (the convention is the module's).

    Args:
        pred: any shape, float32 or float64.
        target: ``pred``'s shape (converted to its dtype).
        reduction: ``"mean"`` (NaN for empty arrays) or ``"sum"``.
        half: multiply both the loss and the gradient by 1/2 (the notes' convention).

    Returns:
        ``(loss, dpred)``: the loss as a float and its gradient w.r.t. ``pred``, of ``pred``'s
        shape and dtype.

    Raises:
        TypeError: ``pred`` not float32 or float64.
        ValueError: ``target`` of another shape, or an unknown ``reduction``.
    """
    mean = _reduction(reduction)
    p = np.asarray(pred)
    if p.dtype not in (np.float32, np.float64):
        raise TypeError(f"pred: expected float32 or float64, got dtype {p.dtype}")
    y = np.asarray(target)
    if y.shape != p.shape:
        raise ValueError(f"target: expected the shape of pred {p.shape}, got {y.shape}")
    diff = p - y.astype(p.dtype, copy=False)
    k = (0.5 if half else 1.0) / (diff.size if mean and diff.size else 1)
    loss = float(k * F.sum_squares(np.ascontiguousarray(diff)))
    if mean and diff.size == 0:
        loss = float("nan")
    return loss, (2.0 * k * diff).astype(p.dtype, copy=False)
