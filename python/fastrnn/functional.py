"""Low-level functional API over the compiled kernels, for projects managing their own parameters.

Everything here takes and returns plain NumPy arrays, time-major, one layer, one direction:

* ``x``: ``(T, B, I)``; ``h0``, ``c0``: ``(B, H)``; ``y``: ``(T, B, H)``;
* ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh (G*H,)`` or None, in
  PyTorch's layout and gate order (see :mod:`fastrnn.reference` for the formulas);
* ``cell``: one of :data:`CELLS`: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"`` (PyTorch's
  GRU, ``reset_after=True``) or ``"gru_reset_before"`` (the original GRU, ``reset_after=False``).

All arrays of a call must have the same dtype, float32 or float64: nothing is converted silently
(a mismatch is a ``TypeError`` naming the argument). Non-contiguous or misaligned arrays are
copied (to C order).

A training-mode :func:`forward` returns a *workspace*, a 1-D array holding what :func:`backward`
needs. :func:`backward` consumes it (it overwrites the saved activations with their gradients, to
save memory): one forward supports one backward, and a second backward on the same workspace
raises ``ValueError``. The workspace also records the cell and sizes it was made for, so passing
it with other arguments is an error too. The weights given to backward must be those of forward.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _core

__all__ = [
    "CELLS",
    "BackwardResult",
    "ForwardResult",
    "backward",
    "forward",
    "num_gates",
    "workspace_size",
]

Array = NDArray[Any]

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before")
_CELL = {name: getattr(_core.Cell, name) for name in CELLS}


class ForwardResult(NamedTuple):
    """Result of :func:`forward`."""

    y: Array  #: (T, B, H) the hidden state of every step
    h_n: Array  #: (B, H) the last hidden state
    c_n: Array | None  #: (B, H) the last cell state (LSTM), else None
    workspace: Array | None  #: 1-D, what backward needs (training), else None


class BackwardResult(NamedTuple):
    """Result of :func:`backward`: the gradients of the loss w.r.t. each input of forward."""

    dx: Array  #: (T, B, I)
    dh0: Array  #: (B, H)
    dc0: Array | None  #: (B, H) for LSTM, else None
    dweight_ih: Array  #: (G*H, I)
    dweight_hh: Array  #: (G*H, H)
    dbias_ih: Array | None  #: (G*H,) or None without biases
    dbias_hh: Array | None  #: (G*H,) or None without biases


def _cell(cell: str) -> Any:
    try:
        return _CELL[cell]
    except (KeyError, TypeError):
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}") from None


def num_gates(cell: str) -> int:
    """Number of stacked gate blocks ``G`` of ``cell``: 1 (RNN), 3 (GRU) or 4 (LSTM)."""
    return int(_core.num_gates(_cell(cell)))


def workspace_size(cell: str, T: int, B: int, I: int, H: int, dtype: DTypeLike) -> int:
    """Number of elements of the training workspace for these sizes."""
    return int(_core.workspace_size(_cell(cell), T, B, I, H, np.dtype(dtype)))


def _float_dtype(name: str, a: Array) -> np.dtype[Any]:
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    return a.dtype


def _arr(name: str, a: ArrayLike | None, dtype: np.dtype[Any]) -> Array | None:
    """``a`` as a C-contiguous, aligned array of exactly ``dtype`` (copied only if it is not)."""
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the dtype of x), got {arr.dtype}")
    return np.require(arr, requirements=("C", "A"))


def forward(
    cell: str,
    x: ArrayLike,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None = None,
    bias_hh: ArrayLike | None = None,
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    *,
    training: bool = True,
) -> ForwardResult:
    """Run one recurrent layer over all steps of ``x``.

    Args:
        cell: one of :data:`CELLS`.
        x: ``(T, B, I)`` input, time-major.
        weight_ih, weight_hh: ``(G*H, I)`` and ``(G*H, H)``.
        bias_ih, bias_hh: ``(G*H,)`` each, or both None.
        h0: ``(B, H)`` initial hidden state, None for zeros.
        c0: ``(B, H)`` initial cell state (LSTM only), None for zeros.
        training: save what :func:`backward` needs into a workspace. When False nothing per step
            is kept (memory beyond the output stays O(B*H)) and ``workspace`` is None.

    Returns:
        :class:`ForwardResult` ``(y, h_n, c_n, workspace)``.
    """
    c = _cell(cell)
    xa = np.asarray(x)
    dt = _float_dtype("x", xa)
    xa = np.require(xa, requirements=("C", "A"))
    y, h_n, c_n, ws = _core.forward(
        c,
        xa,
        _arr("weight_ih", weight_ih, dt),
        _arr("weight_hh", weight_hh, dt),
        _arr("bias_ih", bias_ih, dt),
        _arr("bias_hh", bias_hh, dt),
        _arr("h0", h0, dt),
        _arr("c0", c0, dt),
        bool(training),
    )
    return ForwardResult(y, h_n, c_n, ws)


def backward(
    cell: str,
    x: ArrayLike,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None,
    bias_hh: ArrayLike | None,
    workspace: Array,
    dy: ArrayLike | None = None,
    dh_n: ArrayLike | None = None,
    dc_n: ArrayLike | None = None,
) -> BackwardResult:
    """Backpropagation through time for the forward that filled ``workspace``.

    Args:
        cell, x, weight_ih, weight_hh, bias_ih, bias_hh: exactly as given to :func:`forward`.
        workspace: the workspace that training-mode :func:`forward` returned. Consumed.
        dy: ``(T, B, H)`` gradient of the loss w.r.t. ``y``, None for zeros.
        dh_n, dc_n: ``(B, H)`` gradients w.r.t. the final states, None for zeros
            (``dc_n`` for LSTM only).

    Returns:
        :class:`BackwardResult` with the gradients w.r.t. ``x``, the initial states and every
        parameter (freshly allocated; not accumulated into anything).
    """
    c = _cell(cell)
    xa = np.asarray(x)
    dt = _float_dtype("x", xa)
    xa = np.require(xa, requirements=("C", "A"))
    if not isinstance(workspace, np.ndarray):
        raise TypeError(
            "workspace: expected the numpy.ndarray returned by forward, got "
            f"{type(workspace).__name__}"
        )
    if workspace.dtype != dt:
        raise TypeError(f"workspace: expected dtype {dt} (the dtype of x), got {workspace.dtype}")
    out = _core.backward(
        c,
        xa,
        _arr("weight_ih", weight_ih, dt),
        _arr("weight_hh", weight_hh, dt),
        _arr("bias_ih", bias_ih, dt),
        _arr("bias_hh", bias_hh, dt),
        workspace,
        _arr("dy", dy, dt),
        _arr("dh_n", dh_n, dt),
        _arr("dc_n", dc_n, dt),
    )
    return BackwardResult(*out)
