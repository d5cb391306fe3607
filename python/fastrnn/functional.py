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

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _core

__all__ = [
    "CELLS",
    "BackwardResult",
    "ForwardResult",
    "LayerParams",
    "StackBackwardResult",
    "backward",
    "forward",
    "num_gates",
    "stack_backward",
    "stack_forward",
    "workspace_size",
]

Array = NDArray[Any]

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before")
_CELL = {name: getattr(_core.Cell, name) for name in CELLS}
_GATES = {name: int(_core.num_gates(c)) for name, c in _CELL.items()}


class ForwardResult(NamedTuple):
    """Result of :func:`forward`."""

    y: Array  #: (T, B, H) the hidden state of every step
    h_n: Array  #: (B, H) the last hidden state
    c_n: Array | None  #: (B, H) the last cell state (LSTM), else None
    workspace: Array | None  #: 1-D, what backward needs (training), else None


class LayerParams(NamedTuple):
    """The parameters of one layer and direction, PyTorch's shapes (``I_l`` is ``I`` for layer
    0, ``D*Hs`` above; ``Hs`` is ``proj_size`` if set, else ``H``)."""

    weight_ih: Any  #: (G*H, I_l)
    weight_hh: Any  #: (G*H, Hs)
    bias_ih: Any = None  #: (G*H,) or None
    bias_hh: Any = None  #: (G*H,) or None
    weight_hr: Any = None  #: (P, H) LSTM projection, with proj_size only


class StackBackwardResult(NamedTuple):
    """Result of :func:`stack_backward`."""

    dx: Array | None  #: (T, B, I), None if not asked for (``need_dx=False``)
    dh0: Array  #: (L*D, B, Hs)
    dc0: Array | None  #: (L*D, B, H) for LSTM, else None
    grads: list[LayerParams]  #: per layer and direction, in the order of the parameters


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
    g = _GATES.get(cell) if isinstance(cell, str) else None
    return g if g is not None else int(_core.num_gates(_cell(cell)))


def workspace_size(cell: str, T: int, B: int, I: int, H: int, dtype: DTypeLike) -> int:
    """Number of elements of the training workspace for these sizes."""
    return int(_core.workspace_size(_cell(cell), T, B, I, H, np.dtype(dtype)))


def _float_dtype(name: str, a: Array) -> np.dtype[Any]:
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    return a.dtype


def _ready(a: Any, dtype: np.dtype[Any]) -> bool:
    """Whether ``a`` is already a C-contiguous, aligned ndarray of ``dtype`` (the common case,
    checked without np.require's ~1 µs: a generation loop calls a layer once per step)."""
    if type(a) is not np.ndarray or a.dtype != dtype:
        return False
    flags = a.flags
    return bool(flags.c_contiguous and flags.aligned)


def _arr(name: str, a: ArrayLike | None, dtype: np.dtype[Any]) -> Array | None:
    """``a`` as a C-contiguous, aligned array of exactly ``dtype`` (copied only if it is not)."""
    if a is None:
        return None
    if _ready(a, dtype):
        return a  # type: ignore[return-value]
    arr = np.asarray(a)
    if arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the dtype of x), got {arr.dtype}")
    return np.require(arr, requirements=("C", "A"))


def _params(params: Sequence[Any], dt: np.dtype[Any], num_layers: int, D: int) -> list[Any]:
    if len(params) != num_layers * D:
        raise ValueError(
            f"params: expected {num_layers * D} (layer, direction) entries, got {len(params)}"
        )
    out = []
    for k, p in enumerate(params):
        entry = p if type(p) is tuple and len(p) == 5 else tuple(LayerParams(*p))
        if not all(a is None or _ready(a, dt) for a in entry):  # names only for conversions
            sfx = f"_l{k // D}{'_reverse' if k % D else ''}"
            names = (f"{n}{sfx}" for n in LayerParams._fields)
            entry = tuple(_arr(n, a, dt) for n, a in zip(names, entry, strict=True))
        out.append(entry)
    return out


def _hidden_size(cell: str, params: Sequence[Any]) -> int:
    if not params:
        raise ValueError("params: expected at least one (layer, direction) entry")
    first = params[0]
    w_hh = first[1] if type(first) is tuple and len(first) == 5 else LayerParams(*first).weight_hh
    w_hh = np.asarray(w_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] % num_gates(cell):
        raise ValueError(
            f"weight_hh_l0: expected shape (G*H, Hs) with G = {num_gates(cell)}, got {w_hh.shape}"
        )
    return int(w_hh.shape[0] // num_gates(cell))


def _lengths(lengths: ArrayLike | None, T: int) -> Array | None:
    if lengths is None:
        return None
    la = np.asarray(lengths)
    if la.dtype.kind not in "iu":
        if la.dtype.kind == "f" and np.isfinite(la).all() and (la == np.round(la)).all():
            la = la.astype(np.int64)
        else:
            raise TypeError(f"lengths: expected integers, got dtype {la.dtype}")
    if la.ndim != 1:
        raise ValueError(f"lengths: expected a 1-D array, got shape {la.shape}")
    if la.size and (la.min() < 0 or la.max() > T):
        raise ValueError(f"lengths: values must be in [0, T={T}], got [{la.min()}, {la.max()}]")
    return np.ascontiguousarray(la, dtype=np.int64)


def stack_forward(
    cell: str,
    x: ArrayLike,
    params: Sequence[Any],
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    lengths: ArrayLike | None = None,
    dropout_masks: ArrayLike | None = None,
    training: bool = True,
) -> ForwardResult:
    """Run a stack of recurrent layers (torch.nn.RNN/LSTM/GRU with every option) over ``x``.

    Args:
        cell: one of :data:`CELLS`.
        x: ``(T, B, I)`` input, time-major.
        params: ``num_layers * D`` :class:`LayerParams` (or 5-tuples), layer by layer, the forward
            direction before the reverse one (D = 2 when ``bidirectional``).
        h0: ``(L*D, B, Hs)`` initial hidden states, None for zeros.
        c0: ``(L*D, B, H)`` initial cell states (LSTM only), None for zeros.
        num_layers, bidirectional, proj_size: as in PyTorch (``proj_size`` for LSTM only).
        lengths: ``(B,)`` valid steps of each (padded) sequence, in any order, None for all T.
            Padded steps do not change a sequence's state and output zeros; the reverse
            direction starts at the sequence's own last step (PyTorch's packed sequences).
        dropout_masks: ``(L-1, T, B, D*Hs)`` multipliers for the outputs of layers 0..L-2
            (inverted dropout: 0 or 1/(1-p)), None for no dropout.
        training: save what :func:`stack_backward` needs in a workspace.

    Returns:
        :class:`ForwardResult` with ``y (T, B, D*Hs)``, ``h_n (L*D, B, Hs)``,
        ``c_n (L*D, B, H)`` or None, and the workspace or None.
    """
    c = _cell(cell)
    xa = np.asarray(x)
    dt = _float_dtype("x", xa)
    if not _ready(xa, dt):
        xa = np.require(xa, requirements=("C", "A"))
    D = 2 if bidirectional else 1
    H = _hidden_size(cell, params)
    y, h_n, c_n, ws = _core.forward(
        c,
        xa,
        _params(params, dt, num_layers, D),
        _arr("h0", h0, dt),
        _arr("c0", c0, dt),
        _lengths(lengths, xa.shape[0] if xa.ndim == 3 else 0),
        _arr("dropout_masks", dropout_masks, dt),
        num_layers,
        bool(bidirectional),
        proj_size,
        H,
        bool(training),
    )
    return ForwardResult(y, h_n, c_n, ws)


def stack_backward(
    cell: str,
    x: ArrayLike,
    params: Sequence[Any],
    workspace: Array,
    dy: ArrayLike | None = None,
    dh_n: ArrayLike | None = None,
    dc_n: ArrayLike | None = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    lengths: ArrayLike | None = None,
    need_dx: bool = True,
) -> StackBackwardResult:
    """Backpropagation through time through every layer and direction of :func:`stack_forward`.

    ``x``, ``params`` and the options must be those of the forward that filled ``workspace``
    (consumed). ``dy (T, B, D*Hs)``, ``dh_n (L*D, B, Hs)``, ``dc_n (L*D, B, H)``: gradients of
    the loss w.r.t. the outputs, None for zeros. Gradients of padded steps are ignored (and the
    padded steps of ``x`` get zero gradient). ``need_dx=False`` skips the input gradient (its
    GEMM, a sixth of the work when I = H) and returns ``dx=None``: for inputs that are data.
    """
    c = _cell(cell)
    xa = np.asarray(x)
    dt = _float_dtype("x", xa)
    if not _ready(xa, dt):
        xa = np.require(xa, requirements=("C", "A"))
    _check_workspace(workspace, dt)
    D = 2 if bidirectional else 1
    H = _hidden_size(cell, params)
    dx, dh0, dc0, grads = _core.backward(
        c,
        xa,
        _params(params, dt, num_layers, D),
        _lengths(lengths, xa.shape[0] if xa.ndim == 3 else 0),
        workspace,
        _arr("dy", dy, dt),
        _arr("dh_n", dh_n, dt),
        _arr("dc_n", dc_n, dt),
        num_layers,
        bool(bidirectional),
        proj_size,
        H,
        bool(need_dx),
    )
    return StackBackwardResult(dx, dh0, dc0, [LayerParams(*g) for g in grads])


def _check_workspace(workspace: Any, dt: np.dtype[Any]) -> None:
    if not isinstance(workspace, np.ndarray):
        raise TypeError(
            "workspace: expected the numpy.ndarray returned by forward, got "
            f"{type(workspace).__name__}"
        )
    if workspace.dtype != dt:
        raise TypeError(f"workspace: expected dtype {dt} (the dtype of x), got {workspace.dtype}")


def _state(
    name: str, a: ArrayLike | None, cell: str, x: ArrayLike, weight_hh: ArrayLike
) -> Array | None:
    """A (B, H) state of the one-layer API as the (1, B, H) of the stack API."""
    if a is None:
        return None
    arr = np.asarray(a)
    B = np.shape(x)[1] if np.ndim(x) == 3 else None
    H = np.shape(weight_hh)[0] // num_gates(cell) if np.ndim(weight_hh) >= 1 else None
    expected = (B, H)
    if arr.ndim != 2 or (None not in expected and arr.shape != expected):
        raise ValueError(f"{name}: expected shape (B, H) = {expected}, got {arr.shape}")
    return arr[None]


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
    """Run one recurrent layer (one direction) over all steps of ``x``.

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
        :class:`ForwardResult` ``(y, h_n, c_n, workspace)``, states ``(B, H)``.
    """
    r = stack_forward(
        cell,
        x,
        [(weight_ih, weight_hh, bias_ih, bias_hh, None)],
        _state("h0", h0, cell, x, weight_hh),
        _state("c0", c0, cell, x, weight_hh),
        training=training,
    )
    return ForwardResult(r.y, r.h_n[0], None if r.c_n is None else r.c_n[0], r.workspace)


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
    """Backpropagation through time for the one-layer :func:`forward` that filled ``workspace``.

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
    r = stack_backward(
        cell,
        x,
        [(weight_ih, weight_hh, bias_ih, bias_hh, None)],
        workspace,
        dy,
        _state("dh_n", dh_n, cell, x, weight_hh),
        _state("dc_n", dc_n, cell, x, weight_hh),
    )
    g = r.grads[0]
    assert r.dx is not None
    return BackwardResult(
        r.dx,
        r.dh0[0],
        None if r.dc0 is None else r.dc0[0],
        g.weight_ih,
        g.weight_hh,
        g.bias_ih,
        g.bias_hh,
    )
