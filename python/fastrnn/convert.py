"""Weight conventions of other frameworks, to and from fastrnn's (which are PyTorch's).

fastrnn stores one layer and direction as ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``,
``bias_ih``, ``bias_hh (G*H,)`` with the gates stacked in PyTorch's order. The others:

* PyTorch (and fastrnn): ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh``;
  gates LSTM i f g o, GRU r z n.
* Keras: ``kernel (I, G*H)``, ``recurrent_kernel (H, G*H)``, one ``bias (G*H,)`` (GRU with
  ``reset_after=True``: ``(2, 3H)``, input and recurrent rows); gates LSTM i f c o, GRU z r h.
* ONNX: ``W (D, G*H, I)``, ``R (D, G*H, H)``, ``B (D, 2*G*H) = [Wb, Rb]``, directions stacked on
  the first axis (forward, reverse); gates LSTM i o f c, GRU z r h. An LSTM with peepholes
  (fastrnn's ``"lstm_peephole"``) also has ``P (D, 3H)``, blocks i, o, f, where fastrnn's
  ``weight_peephole (3H,)`` of each direction has blocks i, f, o.

The update gate ``z`` means the same in PyTorch, Keras and ONNX (``h' = (1-z)*n + z*h``). Keras'
and ONNX's GRU ``reset_after=True`` / ``linear_before_reset=1`` is PyTorch's GRU (fastrnn's
``"gru"``); ``reset_after=False`` / ``linear_before_reset=0`` (ONNX's default) is fastrnn's
``"gru_reset_before"``. With a single bias (Keras LSTM, SimpleRNN, GRU ``reset_after=False``) the
import puts it in ``bias_ih`` and sets ``bias_hh`` to zeros, the export sums the two: the same
model either way. The course notes' GRU writes ``h' = (1-z)*h + z*n``: see :func:`notes_gru`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "GATE_ORDER",
    "from_keras",
    "from_onnx",
    "gru_notes_to_torch",
    "notes_gru",
    "to_keras",
    "to_onnx",
]

Array = NDArray[Any]

#: gate order of each convention, per cell family; "g", "c" and "h"/"n" name the candidate
GATE_ORDER = {
    "torch": {"lstm": "ifgo", "gru": "rzn", "rnn": "n"},
    "keras": {"lstm": "ifgo", "gru": "zrn", "rnn": "n"},
    "onnx": {"lstm": "iofg", "gru": "zrn", "rnn": "n"},  # ONNX writes LSTM i, o, f, c
}


#: the peephole blocks of fastrnn's ``weight_peephole`` and of ONNX's ``P``
_PEEPHOLE_ORDER = {"torch": "ifo", "onnx": "iof"}


def _family(cell: str) -> str:
    if cell == "lstm":
        return "lstm"
    if cell in ("gru", "gru_reset_before"):
        return "gru"
    if cell in ("rnn_tanh", "rnn_relu"):
        return "rnn"
    raise ValueError(
        f"cell: expected one of rnn_tanh, rnn_relu, lstm, gru, gru_reset_before, got {cell!r}"
    )


def _reorder(a: Array, src: str, dst: str, axis: int) -> Array:
    """Permute the gate blocks of `a` along `axis` from order `src` to order `dst`."""
    blocks = np.split(np.asarray(a), len(src), axis=axis)
    return np.concatenate([blocks[src.index(g)] for g in dst], axis=axis)


def _as_float(name: str, a: ArrayLike) -> Array:
    """``a`` as an array of floats (weights from another framework: any float width)."""
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got {arr.dtype}")
    return arr


def _as2d(name: str, a: ArrayLike, rows: int | None = None) -> Array:
    arr = _as_float(name, a)
    if arr.ndim != 2 or (rows is not None and arr.shape[0] != rows):
        raise ValueError(f"{name}: expected a 2-D array, got shape {arr.shape}")
    return arr


def _gates(name: str, n: int, G: int) -> int:
    if n % G:
        raise ValueError(f"{name}: the gate axis has {n} entries, not a multiple of {G} gates")
    return n // G


def from_keras(
    cell: str,
    kernel: ArrayLike,
    recurrent_kernel: ArrayLike,
    bias: ArrayLike | None = None,
) -> dict[str, Array | None]:
    """Keras ``LSTM``/``GRU``/``SimpleRNN`` weights (``layer.get_weights()``) as fastrnn's.

    Args:
        cell: the fastrnn cell: ``"lstm"``; ``"gru"`` for Keras ``GRU(reset_after=True)`` (its
            default, with a ``(2, 3H)`` bias) or ``"gru_reset_before"`` for
            ``reset_after=False`` (a ``(3H,)`` bias); ``"rnn_tanh"``/``"rnn_relu"`` for
            ``SimpleRNN``.
        kernel: ``(I, G*H)``.
        recurrent_kernel: ``(H, G*H)``.
        bias: as above, or None (``use_bias=False``).

    Returns:
        ``{"weight_ih": (G*H, I), "weight_hh": (G*H, H), "bias_ih": (G*H,), "bias_hh": (G*H,)}``
        in PyTorch's gate order (biases None without bias).

    Raises:
        TypeError: an array is not floating-point.
        ValueError: ``cell`` is unknown, or a shape does not match.
    """
    fam = _family(cell)
    G = len(GATE_ORDER["torch"][fam])
    k = _as2d("kernel", kernel)
    rk = _as2d("recurrent_kernel", recurrent_kernel)
    H = _gates("kernel", k.shape[1], G)
    if rk.shape != (H, G * H):
        raise ValueError(f"recurrent_kernel: expected shape {(H, G * H)}, got {rk.shape}")
    src, dst = GATE_ORDER["keras"][fam], GATE_ORDER["torch"][fam]
    out: dict[str, Array | None] = {
        "weight_ih": _reorder(k, src, dst, axis=1).T.copy(),
        "weight_hh": _reorder(rk, src, dst, axis=1).T.copy(),
        "bias_ih": None,
        "bias_hh": None,
    }
    if bias is not None:
        b = _as_float("bias", bias)
        if cell == "gru":
            if b.shape != (2, G * H):
                raise ValueError(
                    f"bias: Keras GRU(reset_after=True) has a (2, {G * H}) bias, got {b.shape}"
                )
            out["bias_ih"] = _reorder(b[0], src, dst, axis=0)
            out["bias_hh"] = _reorder(b[1], src, dst, axis=0)
        else:
            if b.shape != (G * H,):
                raise ValueError(f"bias: expected shape ({G * H},), got {b.shape}")
            out["bias_ih"] = _reorder(b, src, dst, axis=0)
            out["bias_hh"] = np.zeros_like(out["bias_ih"])
    return out


def to_keras(
    cell: str,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None = None,
    bias_hh: ArrayLike | None = None,
) -> list[Array]:
    """fastrnn's weights of one layer and direction as Keras' ``layer.set_weights()`` list.

    Args:
        cell: the fastrnn cell (:func:`from_keras` says which Keras layer each is).
        weight_ih: ``(G*H, I)``.
        weight_hh: ``(G*H, H)``.
        bias_ih, bias_hh: ``(G*H,)`` each, or both None.

    Returns:
        ``[kernel (I, G*H), recurrent_kernel (H, G*H)]`` plus the bias when there is one:
        ``(2, 3H)`` for ``"gru"``, else ``(G*H,)``, the sum of the two.

    Raises:
        TypeError: a weight is not floating-point.
        ValueError: ``cell`` is unknown, a weight is not 2-D or its rows not ``G*H``, or one bias
            is given without the other.
    """
    fam = _family(cell)
    G = len(GATE_ORDER["torch"][fam])
    w = _as2d("weight_ih", weight_ih)
    r = _as2d("weight_hh", weight_hh)
    _gates("weight_ih", w.shape[0], G)
    src, dst = GATE_ORDER["torch"][fam], GATE_ORDER["keras"][fam]
    out = [_reorder(w, src, dst, axis=0).T.copy(), _reorder(r, src, dst, axis=0).T.copy()]
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("bias_ih, bias_hh: give both or neither")
    if bias_ih is not None and bias_hh is not None:
        bi = _reorder(np.asarray(bias_ih), src, dst, axis=0)
        bh = _reorder(np.asarray(bias_hh), src, dst, axis=0)
        out.append(np.stack([bi, bh]) if cell == "gru" else bi + bh)
    return out


def _onnx_family(cell: str) -> str:
    """The gate family of a cell ONNX has: :func:`_family`'s, and ``"lstm_peephole"`` (ONNX's
    LSTM with ``P``)."""
    if cell == "lstm_peephole":
        return "lstm"
    try:
        return _family(cell)
    except ValueError:
        raise ValueError(
            "cell: expected one of rnn_tanh, rnn_relu, lstm, lstm_peephole, gru, "
            f"gru_reset_before, got {cell!r}"
        ) from None


def to_onnx(cell: str, params: list[Any]) -> dict[str, Array]:
    """fastrnn's weights of one layer as the inputs of an ONNX ``LSTM``/``GRU``/``RNN`` node.

    Args:
        cell: the fastrnn cell.
        params: one tuple ``(weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh)`` per
            direction, forward first; the biases ``(G*H,)`` or None. With ``"lstm_peephole"``
            each tuple has a fifth item, ``weight_peephole (3H,)`` (blocks i, f, o).

    Returns:
        ``{"W": (D, G*H, I), "R": (D, G*H, H), "B": (D, 2*G*H)}`` in ONNX's gate order, ``B``
        zeros when the layer has no bias; with ``"lstm_peephole"`` also ``"P": (D, 3H)``
        (blocks i, o, f).

    Raises:
        TypeError: a weight is not floating-point; an ``"lstm_peephole"`` tuple has no
            ``weight_peephole``.
        ValueError: ``cell`` is unknown, a weight is not 2-D, or a ``weight_peephole`` is not
            ``(3H,)``.
    """
    fam = _onnx_family(cell)
    src, dst = GATE_ORDER["torch"][fam], GATE_ORDER["onnx"][fam]
    Ws, Rs, Bs, Ps = [], [], [], []
    for k, p in enumerate(params):
        w_ih, w_hh, b_ih, b_hh = (list(p) + [None] * 4)[:4]
        w = _as2d(f"params[{k}].weight_ih", w_ih)
        r = _as2d(f"params[{k}].weight_hh", w_hh)
        Ws.append(_reorder(w, src, dst, axis=0))
        Rs.append(_reorder(r, src, dst, axis=0))
        if b_ih is None:
            Bs.append(np.zeros(2 * w.shape[0], w.dtype))
        else:
            Bs.append(
                np.concatenate(
                    [
                        _reorder(np.asarray(b_ih), src, dst, 0),
                        _reorder(np.asarray(b_hh), src, dst, 0),
                    ]
                )
            )
        if cell == "lstm_peephole":
            Ps.append(_peephole_to_onnx(k, p, r.shape[1]))
    out = {"W": np.stack(Ws), "R": np.stack(Rs), "B": np.stack(Bs)}
    if cell == "lstm_peephole":
        out["P"] = np.stack(Ps)
    return out


def _peephole_to_onnx(k: int, p: Any, H: int) -> Array:
    """Entry ``k``'s ``weight_peephole`` (its fifth item, blocks i, f, o) as a row of ONNX's
    ``P`` (blocks i, o, f)."""
    name = f"params[{k}].weight_peephole"
    if len(p) < 5 or p[4] is None:
        raise TypeError(f"{name}: an lstm_peephole entry needs a fifth item, weight_peephole")
    a = _as_float(name, p[4])
    if a.shape != (3 * H,):
        raise ValueError(f"{name}: expected shape ({3 * H},), got {a.shape}")
    return _reorder(a, _PEEPHOLE_ORDER["torch"], _PEEPHOLE_ORDER["onnx"], 0)


def from_onnx(
    cell: str,
    W: ArrayLike,
    R: ArrayLike,
    B: ArrayLike | None = None,
    P: ArrayLike | None = None,
) -> list[tuple[Array, ...]]:
    """The inputs of an ONNX ``LSTM``/``GRU``/``RNN`` node as fastrnn's weights.

    Args:
        cell: the fastrnn cell; for GRU, from the node's ``linear_before_reset``: 1 is ``"gru"``,
            0 (ONNX's default) ``"gru_reset_before"``; an LSTM with peepholes (input ``P``) is
            ``"lstm_peephole"``.
        W: ``(D, G*H, I)``.
        R: ``(D, G*H, H)``.
        B: ``(D, 2*G*H)``, or None for zeros.
        P: ``(D, 3H)`` (blocks i, o, f), ``"lstm_peephole"`` only; None for zeros (ONNX's
            default).

    Returns:
        One tuple ``(weight_ih (G*H, I), weight_hh (G*H, H), bias_ih (G*H,), bias_hh (G*H,))``
        per direction, in PyTorch's gate order; with ``"lstm_peephole"`` a fifth item,
        ``weight_peephole (3H,)`` (blocks i, f, o).

    Raises:
        TypeError: an array is not floating-point.
        ValueError: ``cell`` is unknown, the shapes do not match, or ``P`` is given for another
            cell than ``"lstm_peephole"``.
    """
    fam = _onnx_family(cell)
    src, dst = GATE_ORDER["onnx"][fam], GATE_ORDER["torch"][fam]
    Wa, Ra = _as_float("W", W), _as_float("R", R)
    if Wa.ndim != 3 or Ra.ndim != 3 or Wa.shape[0] != Ra.shape[0] or Wa.shape[1] != Ra.shape[1]:
        raise ValueError(f"W, R: expected (D, G*H, I) and (D, G*H, H), got {Wa.shape}, {Ra.shape}")
    D, GH = Wa.shape[:2]
    Ba = np.zeros((D, 2 * GH), Wa.dtype) if B is None else _as_float("B", B)
    if Ba.shape != (D, 2 * GH):
        raise ValueError(f"B: expected shape {(D, 2 * GH)}, got {Ba.shape}")
    Pa = _onnx_peepholes(cell, P, D, Ra.shape[2], Wa.dtype)
    out: list[tuple[Array, ...]] = []
    for d in range(D):
        weights: tuple[Array, ...] = (
            _reorder(Wa[d], src, dst, 0),
            _reorder(Ra[d], src, dst, 0),
            _reorder(Ba[d, :GH], src, dst, 0),
            _reorder(Ba[d, GH:], src, dst, 0),
        )
        if Pa is not None:
            weights += (_reorder(Pa[d], _PEEPHOLE_ORDER["onnx"], _PEEPHOLE_ORDER["torch"], 0),)
        out.append(weights)
    return out


def _onnx_peepholes(cell: str, P: ArrayLike | None, D: int, H: int, dtype: Any) -> Array | None:
    """ONNX's ``P`` checked: ``(D, 3H)`` for ``"lstm_peephole"`` (zeros for None), None for the
    other cells."""
    if cell != "lstm_peephole":
        if P is not None:
            raise ValueError(f"P: peepholes are only for cell 'lstm_peephole', not {cell!r}")
        return None
    Pa = np.zeros((D, 3 * H), dtype) if P is None else _as_float("P", P)
    if Pa.shape != (D, 3 * H):
        raise ValueError(f"P: expected shape {(D, 3 * H)}, got {Pa.shape}")
    return Pa


def gru_notes_to_torch(
    weight_ih: Array, weight_hh: Array, bias_ih: Array | None, bias_hh: Array | None
) -> tuple[Array, Array, Array | None, Array | None]:
    """Convert GRU weights written with the course notes' update gate to PyTorch's convention.

    The notes write ``h' = (1 - z) * h + z * n``; PyTorch writes ``h' = (1 - z) * n + z * h``.
    Since ``1 - sigmoid(a) = sigmoid(-a)``, negating the z block of every weight and bias maps one
    onto the other. The conversion is its own inverse.

    Args:
        weight_ih: ``(3H, I)``.
        weight_hh: ``(3H, H)``.
        bias_ih, bias_hh: ``(3H,)`` or None.

    Returns:
        New arrays ``(weight_ih, weight_hh, bias_ih, bias_hh)``, the z rows ``H:2H`` negated.
    """
    H = weight_hh.shape[1]

    def flip(a: Array | None) -> Array | None:
        if a is None:
            return None
        out = np.array(a, copy=True)
        out[H : 2 * H] *= -1
        return out

    return flip(weight_ih), flip(weight_hh), flip(bias_ih), flip(bias_hh)  # type: ignore[return-value]


def notes_gru(
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None = None,
    bias_hh: ArrayLike | None = None,
) -> tuple[Array, Array, Array | None, Array | None]:
    """GRU weights written with the course notes' update gate (``h' = (1-z)*h + z*n``, their z is
    our 1 - z) to PyTorch's convention, and back: the z rows are negated (it is its own inverse).
    The notes apply the reset gate before the product: use the result with
    ``GRU(..., reset_after=False)`` (cell ``"gru_reset_before"``).

    Args:
        weight_ih: ``(3H, I)``, array-like (so are the others).
        weight_hh: ``(3H, H)``.
        bias_ih, bias_hh: ``(3H,)`` or None.

    Returns:
        New arrays, as :func:`gru_notes_to_torch`'s.
    """
    return gru_notes_to_torch(
        np.asarray(weight_ih),
        np.asarray(weight_hh),
        None if bias_ih is None else np.asarray(bias_ih),
        None if bias_hh is None else np.asarray(bias_hh),
    )
