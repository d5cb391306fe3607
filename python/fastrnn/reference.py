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

Entry points: :func:`stack_forward` / :func:`stack_backward` for stacks of layers with every
option of torch.nn.RNN/LSTM/GRU (layers, directions, variable lengths, LSTM projections,
dropout masks), :func:`forward` / :func:`backward` for one layer, and the per-step functions
``*_step`` / ``*_step_backward`` they are made of.
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
    hc = o * np.tanh(c_new)
    # with a projection (proj_size): h' = W_hr (o * tanh(c'))
    h_new = hc if p.get("w_hr") is None else hc @ p["w_hr"].T
    return h_new, c_new, (x, h, c, i, f, g, o, c_new, hc)


def lstm_step_backward(
    dh_new: Array, dc_new: Array, cache: tuple[Any, ...], p: dict[str, Array]
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """Gradients of one LSTM step: returns dx, dh, dc (previous states) and parameter grads."""
    x, h, c, i, f, g, o, c_new, hc = cache
    grads = {}
    if p.get("w_hr") is not None:  # h' = W_hr hc
        grads["w_hr"] = dh_new.T @ hc
        dh_new = dh_new @ p["w_hr"]
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
    grads.update({"w_ih": da.T @ x, "w_hh": da.T @ h, "b_ih": da.sum(0), "b_hh": da.sum(0)})
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
# Whole sequences: one direction of one layer, then stacks of layers and directions
# ------------------------------------------------------------------------------------------------


def _step(cell: str, x: Array, h: Array, c: Array, p: dict[str, Any]) -> tuple[Any, ...]:
    if cell == "lstm":
        return lstm_step(x, h, c, p)
    if cell.startswith("gru"):
        h_new, st = gru_step(x, h, p, reset_after=cell == "gru")
    else:
        h_new, st = rnn_step(x, h, p, relu=cell == "rnn_relu")
    return h_new, c, st


def _step_backward(
    cell: str, dh: Array, dc: Array, st: Any, p: dict[str, Any]
) -> tuple[Array, Array, Array, dict[str, Array]]:
    if cell == "lstm":
        return lstm_step_backward(dh, dc, st, p)
    if cell.startswith("gru"):
        dx, dh_prev, g = gru_step_backward(dh, st, p, reset_after=cell == "gru")
    else:
        dx, dh_prev, g = rnn_step_backward(dh, st, p, relu=cell == "rnn_relu")
    return dx, dh_prev, dc, g


class DirCache(NamedTuple):
    """What :func:`run_direction` keeps for :func:`backprop_direction`."""

    cell: str
    params: dict[str, Any]
    steps: list[Any]  # in processing order
    times: list[int]  # the time of each processed step
    active: list[Any]  # (B, 1) boolean masks of the running sequences, per processed step
    shape: tuple[int, int, int, int, int]  # T, B, I, H, Hs


def run_direction(
    cell: str,
    x: Array,
    p: dict[str, Any],
    h0: Array,
    c0: Array,
    lengths: Array,
    reverse: bool,
) -> tuple[Array, Array, Array, DirCache]:
    """One direction of one layer over padded sequences.

    A sequence b runs steps 0..lengths[b]-1 (in decreasing order if ``reverse``); at its other
    steps its state is unchanged and its output is zero. Returns ``y (T, B, Hs)``, the final
    states and a cache.
    """
    T, B, I = x.shape
    Hs = h0.shape[1]
    y = np.zeros((T, B, Hs), x.dtype)
    h, c = h0, c0
    steps, times, masks = [], [], []
    for t in reversed(range(T)) if reverse else range(T):
        run = (lengths > t)[:, None]
        h_new, c_new, st = _step(cell, x[t], h, c, p)
        h = np.where(run, h_new, h)
        c = np.where(run, c_new, c)
        y[t] = np.where(run, h_new, 0)
        steps.append(st)
        times.append(t)
        masks.append(run)
    return y, h, c, DirCache(cell, p, steps, times, masks, (T, B, I, p["w_hh"].shape[0], Hs))


def backprop_direction(
    cache: DirCache, dy: Array, dh_n: Array, dc_n: Array
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """Gradients of :func:`run_direction`: dx, dh0, dc0 and the parameter gradients."""
    cell, p = cache.cell, cache.params
    T, B, I, _, _ = cache.shape
    dx = np.zeros((T, B, I), dy.dtype)
    dh, dc = dh_n, dc_n
    total = {k: np.zeros_like(v) for k, v in p.items() if v is not None}
    processed = zip(cache.steps, cache.times, cache.active, strict=True)
    for st, t, run in reversed(list(processed)):
        # only running sequences pass their gradient through the step; the others keep it
        dh_step = np.where(run, dh + dy[t], 0)
        dc_step = np.where(run, dc, 0)
        dx[t], dh_prev, dc_prev, g = _step_backward(cell, dh_step, dc_step, st, p)
        dh = np.where(run, dh_prev, dh)
        dc = np.where(run, dc_prev, dc)
        for k in total:
            total[k] += g[k]
    return dx, dh, dc, total


class Cache(NamedTuple):
    """What :func:`stack_forward` keeps for :func:`stack_backward`."""

    cell: str
    dirs: list[DirCache]  # layer by layer, forward direction first
    masks: list[Array]  # dropout multipliers applied after each layer but the last
    num_layers: int
    D: int
    has_bias: bool
    proj: bool


def _param_dict(params: Any, dtype: Any) -> dict[str, Any]:
    w_ih, w_hh, b_ih, b_hh, w_hr = (list(params) + [None] * 5)[:5]
    zeros = np.zeros(w_ih.shape[0], dtype=dtype)
    return {
        "w_ih": w_ih,
        "w_hh": w_hh,
        "b_ih": zeros if b_ih is None else b_ih,
        "b_hh": zeros if b_hh is None else b_hh,
        "w_hr": w_hr,
    }


def stack_forward(
    cell: str,
    x: Array,
    params: list[Any],
    h0: Array | None = None,
    c0: Array | None = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    lengths: Any = None,
    dropout_masks: Array | None = None,
) -> tuple[Array, Array, Array | None, Cache]:
    """A stack of layers, as torch.nn.RNN/LSTM/GRU: ``params`` holds ``num_layers * D`` tuples
    ``(w_ih, w_hh, b_ih, b_hh, w_hr)`` (biases and ``w_hr`` may be None), layer by layer, forward
    direction first. The directions of a layer are concatenated on the last axis; the outputs of
    every layer but the last are multiplied by ``dropout_masks[l]``. Returns ``(y, h_n, c_n,
    cache)`` with states ``(L*D, B, Hs)`` (``c_n (L*D, B, H)``, None except LSTM)."""
    num_gates(cell)
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    ps = [_param_dict(p, x.dtype) for p in params]
    H = ps[0]["w_hh"].shape[0] // num_gates(cell)
    Hs = ps[0]["w_hh"].shape[1]
    h_n = np.zeros((num_layers * D, B, Hs), x.dtype)
    c_n = np.zeros((num_layers * D, B, H), x.dtype)
    dirs, masks = [], []
    inp = x
    for l in range(num_layers):
        outs = []
        for d in range(D):
            k = l * D + d
            h = np.zeros((B, Hs), x.dtype) if h0 is None else h0[k]
            c = np.zeros((B, H), x.dtype) if c0 is None else c0[k]
            y_d, h_n[k], c_n[k], dc = run_direction(cell, inp, ps[k], h, c, lens, d == 1)
            outs.append(y_d)
            dirs.append(dc)
        inp = np.concatenate(outs, axis=-1)
        if l < num_layers - 1 and dropout_masks is not None:
            masks.append(dropout_masks[l])
            inp = inp * dropout_masks[l]
    cache = Cache(
        cell, dirs, masks, num_layers, D, params[0][2] is not None, ps[0]["w_hr"] is not None
    )
    return inp, h_n, (c_n if cell == "lstm" else None), cache


def stack_backward(
    cache: Cache,
    dy: Array | None = None,
    dh_n: Array | None = None,
    dc_n: Array | None = None,
) -> dict[str, Any]:
    """Gradients of :func:`stack_forward`: a dict with ``dx``, ``dh0``, ``dc0`` (None except
    LSTM) and ``params``, a list of dicts ``weight_ih, weight_hh, bias_ih, bias_hh, weight_hr``
    (None where the layer has no such parameter) per layer and direction."""
    L, D = cache.num_layers, cache.D
    first = cache.dirs[0]
    T, B, _, _, Hs = first.shape
    H = first.params["w_hh"].shape[0] // num_gates(cache.cell)
    dtype = first.params["w_hh"].dtype
    dh0 = np.zeros((L * D, B, Hs), dtype)
    dc0 = np.zeros((L * D, B, H), dtype)
    grads: list[Any] = [None] * (L * D)
    dout = np.zeros((T, B, D * Hs), dtype) if dy is None else np.asarray(dy, dtype)
    for l in reversed(range(L)):
        din = None
        for d in range(D):
            k = l * D + d
            dhk = np.zeros((B, Hs), dtype) if dh_n is None else np.asarray(dh_n[k], dtype)
            dck = np.zeros((B, H), dtype) if dc_n is None else np.asarray(dc_n[k], dtype)
            dy_d = dout[..., d * Hs : (d + 1) * Hs]
            dx_d, dh0[k], dc0[k], g = backprop_direction(cache.dirs[k], dy_d, dhk, dck)
            din = dx_d if din is None else din + dx_d
            grads[k] = {
                "weight_ih": g["w_ih"],
                "weight_hh": g["w_hh"],
                "bias_ih": g["b_ih"] if cache.has_bias else None,
                "bias_hh": g["b_hh"] if cache.has_bias else None,
                "weight_hr": g.get("w_hr"),
            }
        assert din is not None
        if l > 0 and cache.masks:
            din = din * cache.masks[l - 1]
        dout = din
    return {
        "dx": dout,
        "dh0": dh0,
        "dc0": dc0 if cache.cell == "lstm" else None,
        "params": grads,
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
    """Run one layer of ``cell`` over ``x (T, B, I)``. Returns ``(y, h_n, c_n, cache)``; ``c_n``
    is None except for LSTM. States are ``(B, H)``; missing initial states are zeros."""
    y, h_n, c_n, cache = stack_forward(
        cell,
        x,
        [(weight_ih, weight_hh, bias_ih, bias_hh, None)],
        None if h0 is None else h0[None],
        None if c0 is None else c0[None],
    )
    return y, h_n[0], (None if c_n is None else c_n[0]), cache


def backward(
    cache: Cache,
    dy: Array | None = None,
    dh_n: Array | None = None,
    dc_n: Array | None = None,
) -> dict[str, Any]:
    """Backpropagation through time for the one-layer :func:`forward` of ``cache``.

    ``dy (T, B, H)``, ``dh_n`` and ``dc_n (B, H)`` are the gradients of the loss with respect to
    the outputs and the final states (None: zeros). Returns a dict with ``dx``, ``dh0``, ``dc0``
    (None except LSTM) and the parameter gradients ``weight_ih``, ``weight_hh``, ``bias_ih``,
    ``bias_hh`` (the biases None when the layer has none).
    """
    g = stack_backward(
        cache,
        dy,
        None if dh_n is None else np.asarray(dh_n)[None],
        None if dc_n is None else np.asarray(dc_n)[None],
    )
    p = g["params"][0]
    return {
        "dx": g["dx"],
        "dh0": g["dh0"][0],
        "dc0": None if g["dc0"] is None else g["dc0"][0],
        "weight_ih": p["weight_ih"],
        "weight_hh": p["weight_hh"],
        "bias_ih": p["bias_ih"],
        "bias_hh": p["bias_hh"],
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
