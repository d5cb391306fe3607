"""Plain NumPy reference of every fastrnn cell, forward and backward (BPTT).

This module is the oracle of the test suite and a teaching aid: each cell is written straight from
its formula, one time step at a time, with no fusion and no cleverness. It is slow on purpose.

Conventions (the same as the compiled kernels and PyTorch):

* ``x`` is ``(T, B, I)``; states are ``(B, H)``; ``y`` is ``(T, B, H)``, the ``h`` of every step.
* ``weight_ih`` is ``(G*H, I)``, ``weight_hh`` is ``(G*H, H)``, biases ``(G*H,)`` or ``None``,
  with the gates stacked in PyTorch's order: LSTM ``i, f, g, o``; GRU ``r, z, n``; RNN one block.
* Cells (``*`` is the element-wise product, ``s`` the logistic sigmoid)::

    rnn_tanh / rnn_relu   h' = act(W_ih x + b_ih + W_hh h + b_hh)
    lstm                  i, f, o = s(.), g = tanh(.)     each  W_i* x + b_i* + W_h* h + b_h*
                          c' = f * c + i * g ;  h' = o * tanh(c')
    gru                   r, z = s(.) ;  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
                          h' = (1 - z) * n + z * h
    gru_reset_before      as gru but  n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)

  The course notes write the GRU update as ``h' = (1 - z) * h + z * n``: their ``z`` is our
  ``1 - z`` (the same model with the z weights and bias negated, see :func:`gru_notes_to_torch`).

Entry points: :func:`forward` and :func:`backward` over a whole sequence, and the per-step
functions ``*_step`` / ``*_step_backward`` they are made of.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating[Any]]

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before")
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}


def num_gates(cell: str) -> int:
    """Number of stacked gate blocks ``G`` of ``cell`` (weights have ``G*H`` rows)."""
    try:
        return _GATES[cell]
    except KeyError:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}") from None


def sigmoid(a: Array) -> Array:
    """Logistic function, without overflow for any finite input."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _split(v: Array, n: int) -> list[Array]:
    """Split the last axis into ``n`` equal gate blocks."""
    return np.split(v, n, axis=-1)


# ------------------------------------------------------------------------------------------------
# One time step of each cell. `p` holds the parameters: w_ih, w_hh, b_ih, b_hh (biases as zeros
# when the layer has none). A step returns the new state(s) and a cache for its backward.
# ------------------------------------------------------------------------------------------------


def rnn_step(x: Array, h: Array, p: dict[str, Array], relu: bool) -> tuple[Array, tuple[Any, ...]]:
    """h' = act(W_ih x + b_ih + W_hh h + b_hh)."""
    a = x @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]
    h_new = np.maximum(a, 0) if relu else np.tanh(a)
    return h_new, (x, h, h_new)


def rnn_step_backward(
    dh_new: Array, cache: tuple[Any, ...], p: dict[str, Array], relu: bool
) -> tuple[Array, Array, dict[str, Array]]:
    """Gradients of one RNN step: returns dx, dh (previous state) and the parameter gradients."""
    x, h, h_new = cache
    da = np.where(h_new > 0, dh_new, 0) if relu else dh_new * (1 - h_new**2)
    grads = {"w_ih": da.T @ x, "w_hh": da.T @ h, "b_ih": da.sum(0), "b_hh": da.sum(0)}
    return da @ p["w_ih"], da @ p["w_hh"], grads


def lstm_step(
    x: Array, h: Array, c: Array, p: dict[str, Array]
) -> tuple[Array, Array, tuple[Any, ...]]:
    """One LSTM step: gates i, f, g, o; c' = f*c + i*g; h' = o*tanh(c')."""
    a = x @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]
    ai, af, ag, ao = _split(a, 4)
    i, f, g, o = sigmoid(ai), sigmoid(af), np.tanh(ag), sigmoid(ao)
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new, (x, h, c, i, f, g, o, c_new)


def lstm_step_backward(
    dh_new: Array, dc_new: Array, cache: tuple[Any, ...], p: dict[str, Array]
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """Gradients of one LSTM step: returns dx, dh, dc (previous states) and parameter grads."""
    x, h, c, i, f, g, o, c_new = cache
    tc = np.tanh(c_new)
    do = dh_new * tc
    dc_total = dc_new + dh_new * o * (1 - tc**2)
    di = dc_total * g
    df = dc_total * c
    dg = dc_total * i
    dc = dc_total * f
    # through the activations to the pre-activations
    da = np.concatenate(
        [di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=-1
    )
    grads = {"w_ih": da.T @ x, "w_hh": da.T @ h, "b_ih": da.sum(0), "b_hh": da.sum(0)}
    return da @ p["w_ih"], da @ p["w_hh"], dc, grads


def gru_step(
    x: Array, h: Array, p: dict[str, Array], reset_after: bool
) -> tuple[Array, tuple[Any, ...]]:
    """One GRU step, gates r, z, n; h' = (1 - z)*n + z*h."""
    w_ir, w_iz, w_in = _split(p["w_ih"].T, 3)
    w_hr, w_hz, w_hn = _split(p["w_hh"].T, 3)
    b_ir, b_iz, b_in = _split(p["b_ih"], 3)
    b_hr, b_hz, b_hn = _split(p["b_hh"], 3)
    r = sigmoid(x @ w_ir + b_ir + h @ w_hr + b_hr)
    z = sigmoid(x @ w_iz + b_iz + h @ w_hz + b_hz)
    if reset_after:
        hn = h @ w_hn + b_hn  # the recurrent part of n, before the reset gate
        n = np.tanh(x @ w_in + b_in + r * hn)
    else:
        hn = (r * h) @ w_hn + b_hn  # the reset gate applied to h first
        n = np.tanh(x @ w_in + b_in + hn)
    h_new = (1 - z) * n + z * h
    return h_new, (x, h, r, z, n, hn)


def gru_step_backward(
    dh_new: Array, cache: tuple[Any, ...], p: dict[str, Array], reset_after: bool
) -> tuple[Array, Array, dict[str, Array]]:
    """Gradients of one GRU step: returns dx, dh (previous state) and parameter grads."""
    x, h, r, z, n, hn = cache
    w_hr, w_hz, w_hn = _split(p["w_hh"].T, 3)
    dn = dh_new * (1 - z)
    dz = dh_new * (h - n)
    dh = dh_new * z
    dan = dn * (1 - n**2)  # pre-activation of n
    daz = dz * z * (1 - z)
    if reset_after:
        dhn = dan * r  # gradient of W_hn h + b_hn
        dr = dan * hn
        dh = dh + dhn @ w_hn.T
        dw_hn = dhn.T @ h
    else:
        dhn = dan  # gradient of W_hn (r*h) + b_hn
        drh = dan @ w_hn.T  # gradient of r*h
        dr = drh * h
        dh = dh + drh * r
        dw_hn = dhn.T @ (r * h)
    dar = dr * r * (1 - r)
    dh = dh + dar @ w_hr.T + daz @ w_hz.T
    da_x = np.concatenate([dar, daz, dan], axis=-1)  # input side
    da_h = np.concatenate([dar, daz, dhn], axis=-1)  # recurrent side
    grads = {
        "w_ih": da_x.T @ x,
        "w_hh": np.concatenate([dar.T @ h, daz.T @ h, dw_hn], axis=0),
        "b_ih": da_x.sum(0),
        "b_hh": da_h.sum(0),
    }
    return da_x @ p["w_ih"], dh, grads


# ------------------------------------------------------------------------------------------------
# Whole sequences
# ------------------------------------------------------------------------------------------------


class Cache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward`."""

    cell: str
    params: dict[str, Array]
    has_bias: bool
    steps: list[tuple[Any, ...]]
    shape: tuple[int, int, int, int]  # T, B, I, H


def _params(
    weight_ih: Array, weight_hh: Array, bias_ih: Array | None, bias_hh: Array | None
) -> dict[str, Array]:
    zeros = np.zeros(weight_ih.shape[0], dtype=weight_ih.dtype)
    return {
        "w_ih": weight_ih,
        "w_hh": weight_hh,
        "b_ih": zeros if bias_ih is None else bias_ih,
        "b_hh": zeros if bias_hh is None else bias_hh,
    }


def forward(
    cell: str,
    x: Array,
    weight_ih: Array,
    weight_hh: Array,
    bias_ih: Array | None = None,
    bias_hh: Array | None = None,
    h0: Array | None = None,
    c0: Array | None = None,
) -> tuple[Array, Array, Array | None, Cache]:
    """Run ``cell`` over ``x (T, B, I)``. Returns ``(y, h_n, c_n, cache)``; ``c_n`` is None
    except for LSTM. States are ``(B, H)``; missing initial states are zeros."""
    num_gates(cell)
    T, B, I = x.shape
    H = weight_hh.shape[1]
    p = _params(weight_ih, weight_hh, bias_ih, bias_hh)
    h = np.zeros((B, H), x.dtype) if h0 is None else h0
    c = np.zeros((B, H), x.dtype) if c0 is None else c0
    y = np.zeros((T, B, H), x.dtype)
    steps = []
    for t in range(T):
        if cell == "lstm":
            h, c, st = lstm_step(x[t], h, c, p)
        elif cell.startswith("gru"):
            h, st = gru_step(x[t], h, p, reset_after=cell == "gru")
        else:
            h, st = rnn_step(x[t], h, p, relu=cell == "rnn_relu")
        y[t] = h
        steps.append(st)
    cache = Cache(cell, p, bias_ih is not None, steps, (T, B, I, H))
    return y, h, (c if cell == "lstm" else None), cache


def backward(
    cache: Cache,
    dy: Array | None = None,
    dh_n: Array | None = None,
    dc_n: Array | None = None,
) -> dict[str, Array | None]:
    """Backpropagation through time for the sequence of ``cache``.

    ``dy (T, B, H)``, ``dh_n`` and ``dc_n (B, H)`` are the gradients of the loss with respect to
    the outputs and the final states (None: zeros). Returns a dict with ``dx``, ``dh0``, ``dc0``
    (None except LSTM) and the parameter gradients ``weight_ih``, ``weight_hh``, ``bias_ih``,
    ``bias_hh`` (the biases None when the layer has none).
    """
    cell, p = cache.cell, cache.params
    T, B, I, H = cache.shape
    dtype = p["w_ih"].dtype
    dh = np.zeros((B, H), dtype) if dh_n is None else np.array(dh_n, dtype)
    dc = np.zeros((B, H), dtype) if dc_n is None else np.array(dc_n, dtype)
    dx = np.zeros((T, B, I), dtype)
    total = {k: np.zeros_like(v) for k, v in p.items()}
    for t in reversed(range(T)):
        if dy is not None:
            dh = dh + dy[t]
        st = cache.steps[t]
        if cell == "lstm":
            dx[t], dh, dc, g = lstm_step_backward(dh, dc, st, p)
        elif cell.startswith("gru"):
            dx[t], dh, g = gru_step_backward(dh, st, p, reset_after=cell == "gru")
        else:
            dx[t], dh, g = rnn_step_backward(dh, st, p, relu=cell == "rnn_relu")
        for k in total:
            total[k] += g[k]
    return {
        "dx": dx,
        "dh0": dh,
        "dc0": dc if cell == "lstm" else None,
        "weight_ih": total["w_ih"],
        "weight_hh": total["w_hh"],
        "bias_ih": total["b_ih"] if cache.has_bias else None,
        "bias_hh": total["b_hh"] if cache.has_bias else None,
    }


def gru_notes_to_torch(
    weight_ih: Array, weight_hh: Array, bias_ih: Array | None, bias_hh: Array | None
) -> tuple[Array, Array, Array | None, Array | None]:
    """Convert GRU weights written with the course notes' update gate to PyTorch's convention.

    The notes write ``h' = (1 - z) * h + z * n``; PyTorch writes ``h' = (1 - z) * n + z * h``.
    Since ``1 - sigmoid(a) = sigmoid(-a)``, negating the z block of every weight and bias maps one
    onto the other. The conversion is its own inverse.
    """
    H = weight_hh.shape[1]

    def flip(a: Array | None) -> Array | None:
        if a is None:
            return None
        out = np.array(a, copy=True)
        out[H : 2 * H] *= -1
        return out

    return flip(weight_ih), flip(weight_hh), flip(bias_ih), flip(bias_hh)  # type: ignore[return-value]
