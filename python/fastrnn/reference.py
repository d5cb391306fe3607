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
    lstm_peephole         as lstm, with p = weight_peephole = [p_i | p_f | p_o]  (3H,):
                          i = s(. + p_i * c), f = s(. + p_f * c), o = s(. + p_o * c')
    lnlstm                v = g_ih * LN(W_ih x) + g_hh * LN(W_hh h) + b_ih + b_hh
                          i, f, o = s(v.), g = tanh(v.) ;  c' = f * c + i * g
                          h' = o * tanh(g_c * LN(c') + b_c)
                          LN(a) = (a - mean(a)) / sqrt(var(a) + 1e-5) over a row's 4H (or H)
                          values, var biased (torch.nn.LayerNorm's); its cell_params are
                          (g_ih (4H,), g_hh (4H,), g_c (H,), b_c (H,)), haste's LayerNormLSTM
    lngru                 a = g_ih * LN(W_ih x) + b_ih ;  m = g_hh * LN(W_hh h)  (LN over 3H)
                          r = s(a_r + m_r + b_hr), z = s(a_z + m_z + b_hz)
                          n = tanh(a_n + r * (m_n + b_hn)) ;  h' = (1 - z) * n + z * h
                          (gru's formula on the normalised products); its cell_params are
                          (g_ih (3H,), g_hh (3H,))

  The course notes write the GRU update as ``h' = (1 - z) * h + z * n``: their ``z`` is our
  ``1 - z`` (the same model with the z weights and bias negated, see
  :func:`fastrnn.convert.gru_notes_to_torch`).
* ONNX's options, for every layer of a stack: ``clip`` clamps each gate pre-activation (the
  argument of its activation, peephole terms included; GRU's n: its whole argument) to
  ``[-clip, clip]``, with a zero derivative where it clamps (LSTM's c is not clipped);
  ``input_forget`` (LSTM) makes ``f = 1 - i`` (ONNX Runtime's coupling: the f block is unused);
  ``reverse`` runs a unidirectional stack's one direction from the last step to the first.
* Zoneout (Krueger et al., 2017), multipliers ``m`` per step and unit (0/1 draws in training, the
  probability p in inference): after each step of a running sequence ``h_t = m*h_{t-1} + (1 -
  m)*h~_t``, ``h~_t`` the step's new state (after the projection), and the LSTM cells' ``c_t =
  m_c*c_{t-1} + (1 - m_c)*c~_t`` (the step's ``h~`` is made from its own ``c~``); the output is
  ``h_t``.

Entry points: :func:`stack_forward` / :func:`stack_backward` for stacks of layers with every
option of torch.nn.RNN/LSTM/GRU (layers, directions, variable lengths, LSTM projections,
dropout masks), :func:`forward` / :func:`backward` for one layer, and the per-step functions
``*_step`` / ``*_step_backward`` they are made of; then the training pieces (linear, embedding,
losses, clipping, SGD, Adam), the int8 and bfloat16 arithmetic of the kernels, and attention.
The functions check little: they are given what the kernels' tests give them.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._args import check_lengths

__all__ = [
    "CELLS",
    "COMPUTE_DTYPES",
    "LAYER_NORM_EPS",
    "QUANT_MIN",
    "Cache",
    "DirCache",
    "QuantizedWeight",
    "adam_step",
    "attention_backward",
    "attention_forward",
    "attention_scores",
    "backprop_direction",
    "backward",
    "clip_grad_norm",
    "clip_grad_value",
    "compute_precision",
    "embedding_backward",
    "embedding_forward",
    "forward",
    "gru_step",
    "gru_step_backward",
    "int8_matmul",
    "linear_backward",
    "linear_forward",
    "lngru_step",
    "lngru_step_backward",
    "lnlstm_step",
    "lnlstm_step_backward",
    "lstm_step",
    "lstm_step_backward",
    "mse_loss",
    "num_gates",
    "quantize_rows",
    "rnn_step",
    "rnn_step_backward",
    "round_bf16",
    "run_direction",
    "sgd_step",
    "sigmoid",
    "softmax_cross_entropy",
    "stack_backward",
    "stack_forward",
]

Array = NDArray[np.floating[Any]]

#: The cells' names, as in :data:`fastrnn.functional.CELLS`.
CELLS = (
    "rnn_tanh",
    "rnn_relu",
    "lstm",
    "gru",
    "gru_reset_before",
    "lstm_peephole",
    "lnlstm",
    "lngru",
)
_GATES = {
    "rnn_tanh": 1,
    "rnn_relu": 1,
    "lstm": 4,
    "gru": 3,
    "gru_reset_before": 3,
    "lstm_peephole": 4,
    "lnlstm": 4,
    "lngru": 3,
}
_LSTMS = ("lstm", "lstm_peephole")  # ONNX's LSTMs: lstm_step, input_forget
_CELL_STATE = (*_LSTMS, "lnlstm")  # the cells with a cell state c
#: the layer-normalised cells: the blocks of H at which their cell_params' vector splits into its
#: vectors, and the name their messages give them
_LAYER_NORM = {"lnlstm": (4, 8, 9), "lngru": (3,)}
_LN_TITLES = {"lnlstm": "the layer-normalised LSTM", "lngru": "the layer-normalised GRU"}

#: The layer norm's epsilon, in the variance: ``LN(a) = (a - mean) / sqrt(var + eps)``
#: (``torch.nn.LayerNorm``'s default and haste's).
LAYER_NORM_EPS = 1e-5


def num_gates(cell: str) -> int:
    """The number of stacked gate blocks ``G`` of ``cell`` (weights have ``G*H`` rows).

    Raises:
        ValueError: ``cell`` is not one of :data:`CELLS`.
    """
    try:
        return _GATES[cell]
    except KeyError:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}") from None


def round_bf16(a: ArrayLike) -> NDArray[np.float32]:
    """``a`` as float32 values that bfloat16 represents: each rounded to the nearest bfloat16
    (8 significant bits), ties to even, as the CPUs' ``vcvtneps2bf16`` and PyTorch's
    ``.to(torch.bfloat16)`` round. Infinities stay infinite; a NaN stays a NaN (made quiet, its
    sign kept), never rounded into an infinity; values past bfloat16's largest finite value
    (3.3895e38) round to infinity. Other dtypes are first converted to float32 (the kernels'
    operands are float32). The rounding of the ``compute_dtype="bfloat16"`` products'
    operands (the weights, the inputs, ``h``, and in backward the gate gradients)."""
    shape = np.shape(a)
    f = np.ascontiguousarray(np.asarray(a, dtype=np.float32)).reshape(-1)
    bits = f.view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1  # ties to even: add 0x7fff plus the bit that survives
    rounded = ((bits + 0x7FFF + lsb) >> 16) << 16
    nan = np.isnan(f)
    rounded = np.where(nan, (bits | 0x400000) >> 16 << 16, rounded)  # quiet NaN, sign kept
    return rounded.astype(np.uint32).view(np.float32).reshape(shape)


#: Whether the products of the steps below round their operands to bfloat16 (set by
#: :func:`stack_forward` / :func:`stack_backward` for ``compute_dtype="bfloat16"``, or by
#: :func:`compute_precision` around direct calls of the step functions).
_BF16_PRODUCTS: contextvars.ContextVar[bool] = contextvars.ContextVar("bf16", default=False)
#: The values :func:`compute_precision` (and the ``compute_dtype`` of :func:`stack_forward`)
#: takes: None and the float dtypes' names are exact, ``"bfloat16"`` rounds the products' operands.
COMPUTE_DTYPES = (None, "float32", "float64", "bfloat16")


@contextlib.contextmanager
def compute_precision(compute_dtype: str | None) -> Iterator[None]:
    """The step functions' products inside: exact (None, ``"float32"``, ``"float64"``: the
    arrays' own dtype) or ``"bfloat16"``: both operands of every matrix product -- weights,
    inputs, ``h``, ``r*h``, LSTM's ``o*tanh(c)`` before its projection, and in backward the gate
    gradients and ``dL/dh`` before a product -- rounded to bfloat16 (:func:`round_bf16`), the
    products accumulated in the arrays' dtype; biases, activations, the cell state, the
    pointwise gradients and the bias gradients stay in it (oneDNN's scheme).

    Raises:
        ValueError: ``compute_dtype`` is not one of :data:`COMPUTE_DTYPES`.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype: one of {', '.join(map(str, COMPUTE_DTYPES))}, got {compute_dtype!r}"
        )
    token = _BF16_PRODUCTS.set(compute_dtype == "bfloat16")
    try:
        yield
    finally:
        _BF16_PRODUCTS.reset(token)


def _q(a: Array) -> Array:
    """A product's operand, as the compute precision sees it."""
    return round_bf16(a).astype(a.dtype) if _BF16_PRODUCTS.get() else a


# ------------------------------------------------------------------------------------------------
# int8 (fastrnn.quantize_dynamic): symmetric per-row quantization and the quantized product
# ------------------------------------------------------------------------------------------------

#: A row whose largest magnitude is below this quantizes to zeros (scale 0), since 127 / amax
#: would overflow float32 near the smallest normal numbers.
QUANT_MIN = np.float32(1e-30)


def quantize_rows(a: ArrayLike) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """Symmetric int8 quantization of each row (last axis) of ``a``, in float32: ``amax`` the
    row's largest magnitude, ``scale = amax / 127``, ``q = rint(a * (127 / amax))`` (ties to
    even) in [-127, 127], so that ``a ~ q * scale``. A row below :data:`QUANT_MIN` is zeros with
    scale 0; a row holding a NaN or an infinity is zeros with scale NaN (its products are NaN, as
    in float). The rule of the weights (per output row: per gate and unit, once, by
    :func:`fastrnn.quantized.quantize_dynamic`) and of the activations (per row: per step and
    sequence, at every product, by the kernels)."""
    f = np.asarray(a, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if f.shape[-1]:
            amax = np.max(np.abs(f), axis=-1, keepdims=True)
        else:
            amax = np.zeros((*f.shape[:-1], 1), np.float32)
        bad = ~np.isfinite(amax)
        small = amax < QUANT_MIN
        safe = np.where(bad | small, np.float32(1), amax)
        inv = np.float32(127) / safe
        q = np.clip(np.rint(f * inv), -127, 127)
    q = np.where(bad | small, 0, q).astype(np.int8)
    scale = np.where(small, np.float32(0), amax / np.float32(127))
    scale = np.where(bad, np.float32(np.nan), scale).astype(np.float32)
    return q, scale[..., 0]


class QuantizedWeight(NamedTuple):
    """An int8 weight matrix ``(m, k)``, one float32 scale per row: ``W ~ q * scale[:, None]``.

    Args:
        q: ``(m, k)`` int8 in [-127, 127].
        scale: ``(m,)`` float32.
    """

    q: NDArray[np.int8]
    scale: NDArray[np.float32]

    @classmethod
    def of(cls, w: ArrayLike) -> QuantizedWeight:
        """``w`` quantized per row (:func:`quantize_rows`)."""
        q, s = quantize_rows(w)
        return cls(q, s)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(m, k)``, the matrix's shape."""
        return self.q.shape

    def rows(self, sl: slice) -> QuantizedWeight:
        """The rows ``sl`` of the matrix, with their scales."""
        return QuantizedWeight(self.q[sl], self.scale[sl])

    def dequantize(self) -> NDArray[np.float32]:
        """``q * scale``, float32."""
        return self.q.astype(np.float32) * self.scale[:, None]


def int8_matmul(a: ArrayLike, w: QuantizedWeight) -> NDArray[np.float32]:
    """``a @ W.T`` as the int8 kernels compute it: each row of ``a`` quantized on the fly
    (:func:`quantize_rows`), the products of the int8 values summed exactly (int32 in the
    kernels, which take depths up to 32768 so that no sum overflows; float64 here), the sum
    converted to float32 and multiplied by ``scale_a[row] * scale_w[col]`` (float32).

    Args:
        a: ``(N, k)``, float.
        w: the quantized ``W (m, k)``.

    Returns:
        ``(N, m)`` float32.
    """
    qa, sa = quantize_rows(a)
    acc = qa.astype(np.float64) @ w.q.astype(np.float64).T  # integers, exact below 2**53
    with np.errstate(invalid="ignore"):
        out: NDArray[np.float32] = acc.astype(np.float32) * (sa[:, None] * w.scale[None, :])
    return out


def _mm(a: Array, w: Any) -> Array:
    """``a @ w.T`` in the compute precision: an int8 product for a :class:`QuantizedWeight`,
    else both operands as :func:`_q` sees them."""
    if isinstance(w, QuantizedWeight):
        return int8_matmul(a, w).astype(a.dtype)
    out: Array = _q(a) @ _q(w).T
    return out


def _rows(w: Any, sl: slice) -> Any:
    """Rows ``sl`` of a weight matrix (float or quantized)."""
    return w.rows(sl) if isinstance(w, QuantizedWeight) else w[sl]


def sigmoid(a: Array) -> Array:
    """The logistic function ``1 / (1 + exp(-a))`` of each element, without overflow for any
    finite input."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _split(v: Array, n: int) -> list[Array]:
    """Split the last axis into ``n`` equal gate blocks."""
    return np.split(v, n, axis=-1)


def _clip(a: Array, clip: float | None) -> tuple[Array, Any]:
    """ONNX's clip of a pre-activation: ``a`` clamped to ``[-clip, clip]`` (None: unchanged),
    and where the clamp's derivative is 1, ``|a| <= clip`` (None: everywhere); elsewhere it is
    0."""
    if clip is None:
        return a, None
    return np.clip(a, -clip, clip), np.abs(a) <= clip


def _through(da: Array, keep: Any) -> Array:
    """The gradient ``da`` of a clamped pre-activation passed back through the clamp: zero where
    it clamped (``keep`` from :func:`_clip`)."""
    return da if keep is None else np.where(keep, da, 0)


# ------------------------------------------------------------------------------------------------
# One time step of each cell. `p` holds the parameters: w_ih, w_hh, b_ih, b_hh (biases as zeros
# when the layer has none), LSTM's w_hr and w_peep, lnlstm's and lngru's w_ln (None without). A
# step returns the new state(s) and a cache for its backward. `clip` is ONNX's (None: none).
# ------------------------------------------------------------------------------------------------


def rnn_step(
    x: Array, h: Array, p: dict[str, Array], relu: bool, clip: float | None = None
) -> tuple[Array, tuple[Any, ...]]:
    """One RNN step, ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Args:
        x: ``(B, I)``.
        h: ``(B, H)``, the previous state.
        p: ``w_ih (H, I)``, ``w_hh (H, H)``, ``b_ih``, ``b_hh (H,)`` (zeros for none).
        relu: ``act`` is relu, else tanh.
        clip: the pre-activation clamped to ``[-clip, clip]`` before ``act``; None: not.

    Returns:
        ``(h' (B, H), cache)``, the cache for :func:`rnn_step_backward`.
    """
    a, keep = _clip(_mm(x, p["w_ih"]) + p["b_ih"] + _mm(h, p["w_hh"]) + p["b_hh"], clip)
    h_new = np.maximum(a, 0) if relu else np.tanh(a)
    return h_new, (x, h, h_new, keep)


def rnn_step_backward(
    dh_new: Array, cache: tuple[Any, ...], p: dict[str, Array], relu: bool
) -> tuple[Array, Array, dict[str, Array]]:
    """The gradients of one :func:`rnn_step` from ``dh_new = dL/dh' (B, H)``.

    Returns:
        ``(dx (B, I), dh (B, H), grads)``, ``grads`` keyed as ``p``.
    """
    x, h, h_new = cache[:3]
    keep = cache[3] if len(cache) > 3 else None  # the clamp's mask (a cache without: no clip)
    da = np.where(h_new > 0, dh_new, 0) if relu else dh_new * (1 - h_new**2)
    da = _through(da, keep)
    qa = _q(da)
    grads = {"w_ih": qa.T @ _q(x), "w_hh": qa.T @ _q(h), "b_ih": da.sum(0), "b_hh": da.sum(0)}
    return qa @ _q(p["w_ih"]), qa @ _q(p["w_hh"]), grads


def lstm_step(
    x: Array,
    h: Array,
    c: Array,
    p: dict[str, Array],
    clip: float | None = None,
    input_forget: bool = False,
) -> tuple[Array, Array, tuple[Any, ...]]:
    """One LSTM step: gates i, f, g, o; ``c' = f*c + i*g``; ``h' = o*tanh(c')``.

    Args:
        x: ``(B, I)``.
        h: ``(B, Hs)``, the previous hidden state.
        c: ``(B, H)``, the previous cell state.
        p: ``w_ih (4H, I)``, ``w_hh (4H, Hs)``, ``b_ih``, ``b_hh (4H,)``, ``w_hr (P, H)``
            (or None) for a projection ``h' = W_hr (o*tanh(c'))``, and ``w_peep (3H,)`` (or
            None) for peepholes ``[p_i | p_f | p_o]``: ``p_i * c`` and ``p_f * c`` added to the
            pre-activations of i and f, ``p_o * c'`` to that of o.
        clip: each gate's pre-activation (its peephole term included) clamped to
            ``[-clip, clip]``; None: not. ``c'`` is not clipped.
        input_forget: ``f = 1 - i`` (ONNX Runtime's coupled gates): the f block is unused.

    Returns:
        ``(h' (B, Hs), c' (B, H), cache)``, the cache for :func:`lstm_step_backward`.
    """
    a = _mm(x, p["w_ih"]) + p["b_ih"] + _mm(h, p["w_hh"]) + p["b_hh"]
    ai, af, ag, ao = _split(a, 4)
    peep = p.get("w_peep")
    if peep is not None:
        p_i, p_f, p_o = _split(peep, 3)
        ai = ai + p_i * c
        af = af + p_f * c
    ai, keep_i = _clip(ai, clip)
    af, keep_f = _clip(af, clip)
    ag, keep_g = _clip(ag, clip)
    i, g = sigmoid(ai), np.tanh(ag)
    f = 1 - i if input_forget else sigmoid(af)
    c_new = f * c + i * g
    if peep is not None:
        ao = ao + p_o * c_new  # the output gate sees the new cell state
    ao, keep_o = _clip(ao, clip)
    o = sigmoid(ao)
    hc = o * np.tanh(c_new)
    # with a projection (proj_size): h' = W_hr (o * tanh(c'))
    h_new = hc if p.get("w_hr") is None else _mm(hc, p["w_hr"])
    keep = (keep_i, keep_f, keep_g, keep_o)
    return h_new, c_new, (x, h, c, i, f, g, o, c_new, hc, keep, input_forget)


def lstm_step_backward(
    dh_new: Array, dc_new: Array, cache: tuple[Any, ...], p: dict[str, Array]
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """The gradients of one :func:`lstm_step` from ``dh_new (B, Hs)`` and ``dc_new (B, H)``.

    Returns:
        ``(dx (B, I), dh (B, Hs), dc (B, H), grads)``, ``grads`` keyed as ``p``.
    """
    x, h, c, i, f, g, o, c_new, hc, keep, input_forget = cache
    keep_i, keep_f, keep_g, keep_o = keep
    peep = p.get("w_peep")
    grads = {}
    if p.get("w_hr") is not None:  # h' = W_hr hc
        grads["w_hr"] = _q(dh_new).T @ _q(hc)
        dh_new = _q(dh_new) @ _q(p["w_hr"])
    tc = np.tanh(c_new)
    do = dh_new * tc
    dao = _through(do * o * (1 - o), keep_o)
    dc_total = dc_new + dh_new * o * (1 - tc**2)
    if peep is not None:
        p_i, p_f, p_o = _split(peep, 3)
        dc_total = dc_total + dao * p_o  # o's peephole sees c'
    di = dc_total * g
    df = dc_total * c
    dg = dc_total * i
    dc = dc_total * f
    if input_forget:  # f = 1 - i: f's gradient goes to i, its own pre-activation gets none
        di = di - df
        daf = np.zeros_like(df)
    else:
        daf = _through(df * f * (1 - f), keep_f)
    dai = _through(di * i * (1 - i), keep_i)
    dag = _through(dg * (1 - g**2), keep_g)
    if peep is not None:  # i and f's peepholes see c
        dc = dc + dai * p_i + daf * p_f
        grads["w_peep"] = np.concatenate([(dai * c).sum(0), (daf * c).sum(0), (dao * c_new).sum(0)])
    # the pre-activations' gradients to the products and biases
    da = np.concatenate([dai, daf, dag, dao], axis=-1)
    qa = _q(da)
    grads.update({"w_ih": qa.T @ _q(x), "w_hh": qa.T @ _q(h), "b_ih": da.sum(0), "b_hh": da.sum(0)})
    return qa @ _q(p["w_ih"]), qa @ _q(p["w_hh"]), dc, grads


def _layer_norm(a: Array) -> tuple[Array, Array]:
    """``(a - mean) / sqrt(var + eps)`` over the last axis (biased variance, two passes: the
    mean, then the variance around it), and ``rstd = 1 / sqrt(var + eps)`` ``(..., 1)``."""
    mean = a.mean(axis=-1, keepdims=True)
    centred = a - mean
    rstd = 1.0 / np.sqrt(np.square(centred).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS)
    return centred * rstd, rstd


def _layer_norm_backward(dxhat: Array, xhat: Array, rstd: Array) -> Array:
    """The gradient of the layer norm's input from ``dxhat = dL/dxhat`` (the gain already
    applied): ``rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))`` over the last
    axis."""
    m1 = dxhat.mean(axis=-1, keepdims=True)
    m2 = (dxhat * xhat).mean(axis=-1, keepdims=True)
    out: Array = rstd * (dxhat - m1 - xhat * m2)
    return out


def lnlstm_step(
    x: Array, h: Array, c: Array, p: dict[str, Array]
) -> tuple[Array, Array, tuple[Any, ...]]:
    """One step of the layer-normalised LSTM (haste's ``LayerNormLSTM``), gates i, f, g, o:
    ``v = g_ih * LN(W_ih x) + g_hh * LN(W_hh h) + b_ih + b_hh``; ``c' = f*c + i*g``;
    ``h' = o * tanh(g_c * LN(c') + b_c)``. The carried cell state is ``c'`` itself, not its
    normalised value.

    Args:
        x: ``(B, I)``.
        h: ``(B, H)``, the previous hidden state.
        c: ``(B, H)``, the previous cell state.
        p: ``w_ih (4H, I)``, ``w_hh (4H, H)``, ``b_ih``, ``b_hh (4H,)`` (zeros for none) and
            ``w_ln (10H,)``: ``[g_ih (4H) | g_hh (4H) | g_c (H) | b_c (H)]``.

    Returns:
        ``(h' (B, H), c' (B, H), cache)``, the cache for :func:`lnlstm_step_backward`.
    """
    H = c.shape[-1]
    g_ih, g_hh, g_c, b_c = np.split(p["w_ln"], [4 * H, 8 * H, 9 * H])
    xhat_ih, rstd_ih = _layer_norm(_mm(x, p["w_ih"]))
    xhat_hh, rstd_hh = _layer_norm(_mm(h, p["w_hh"]))
    v = g_ih * xhat_ih + g_hh * xhat_hh + p["b_ih"] + p["b_hh"]
    ai, af, ag, ao = _split(v, 4)
    i, f, g, o = sigmoid(ai), sigmoid(af), np.tanh(ag), sigmoid(ao)
    c_new = f * c + i * g
    chat, rstd_c = _layer_norm(c_new)
    tc = np.tanh(g_c * chat + b_c)
    h_new = o * tc
    norms = (xhat_ih, rstd_ih, xhat_hh, rstd_hh, chat, rstd_c)
    return h_new, c_new, (x, h, c, i, f, g, o, tc, norms)


def lnlstm_step_backward(
    dh_new: Array, dc_new: Array, cache: tuple[Any, ...], p: dict[str, Array]
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """The gradients of one :func:`lnlstm_step` from ``dh_new`` and ``dc_new`` ``(B, H)``.

    Returns:
        ``(dx (B, I), dh (B, H), dc (B, H), grads)``, ``grads`` keyed as ``p`` (``w_ln``: the
        gradients of ``[g_ih | g_hh | g_c | b_c]``).
    """
    x, h, c, i, f, g, o, tc, norms = cache
    xhat_ih, rstd_ih, xhat_hh, rstd_hh, chat, rstd_c = norms
    H = c.shape[-1]
    g_ih, g_hh, g_c, _ = np.split(p["w_ln"], [4 * H, 8 * H, 9 * H])
    dao = dh_new * tc * o * (1 - o)  # h' = o * tanh(y_c)
    dyc = dh_new * o * (1 - tc**2)  # y_c = g_c * chat + b_c
    dc_total = dc_new + _layer_norm_backward(dyc * g_c, chat, rstd_c)  # through LN(c')
    dai = dc_total * g * i * (1 - i)
    daf = dc_total * c * f * (1 - f)
    dag = dc_total * i * (1 - g**2)
    dc = dc_total * f
    dv = np.concatenate([dai, daf, dag, dao], axis=-1)
    # through the two layer norms to the products' outputs x W_ih^T and h W_hh^T
    dxw = _layer_norm_backward(dv * g_ih, xhat_ih, rstd_ih)
    dhw = _layer_norm_backward(dv * g_hh, xhat_hh, rstd_hh)
    qx, qh = _q(dxw), _q(dhw)
    dln = [(dv * xhat_ih).sum(0), (dv * xhat_hh).sum(0), (dyc * chat).sum(0), dyc.sum(0)]
    grads = {
        "w_ih": qx.T @ _q(x),
        "w_hh": qh.T @ _q(h),
        "b_ih": dv.sum(0),
        "b_hh": dv.sum(0),
        "w_ln": np.concatenate(dln),
    }
    return qx @ _q(p["w_ih"]), qh @ _q(p["w_hh"]), dc, grads


def lngru_step(x: Array, h: Array, p: dict[str, Array]) -> tuple[Array, tuple[Any, ...]]:
    """One step of the layer-normalised GRU (``lngru``), gates r, z, n, the reset gate after
    the recurrent product (PyTorch's GRU): ``a = g_ih * LN(W_ih x) + b_ih``, ``m = g_hh *
    LN(W_hh h)``; ``r = s(a_r + m_r + b_hr)``, ``z = s(a_z + m_z + b_hz)``, ``n = tanh(a_n + r *
    (m_n + b_hn))``, ``h' = (1 - z)*n + z*h``.

    Args:
        x: ``(B, I)``.
        h: ``(B, H)``, the previous state.
        p: ``w_ih (3H, I)``, ``w_hh (3H, H)``, ``b_ih``, ``b_hh (3H,)`` (zeros for none) and
            ``w_ln (6H,)``: ``[g_ih (3H) | g_hh (3H)]``.

    Returns:
        ``(h' (B, H), cache)``, the cache for :func:`lngru_step_backward`.
    """
    g_ih, g_hh = np.split(p["w_ln"], 2)
    xhat_ih, rstd_ih = _layer_norm(_mm(x, p["w_ih"]))
    xhat_hh, rstd_hh = _layer_norm(_mm(h, p["w_hh"]))
    a_r, a_z, a_n = _split(g_ih * xhat_ih + p["b_ih"], 3)
    m_r, m_z, m_n = _split(g_hh * xhat_hh, 3)
    b_hr, b_hz, b_hn = _split(p["b_hh"], 3)
    r, z = sigmoid(a_r + m_r + b_hr), sigmoid(a_z + m_z + b_hz)
    hn = m_n + b_hn  # the recurrent part of n, before the reset gate
    n = np.tanh(a_n + r * hn)
    h_new = (1 - z) * n + z * h
    return h_new, (x, h, r, z, n, hn, (xhat_ih, rstd_ih, xhat_hh, rstd_hh))


def lngru_step_backward(
    dh_new: Array, cache: tuple[Any, ...], p: dict[str, Array]
) -> tuple[Array, Array, dict[str, Array]]:
    """The gradients of one :func:`lngru_step` from ``dh_new = dL/dh' (B, H)``.

    Returns:
        ``(dx (B, I), dh (B, H), grads)``, ``grads`` keyed as ``p`` (``w_ln``: the gradients of
        ``[g_ih | g_hh]``).
    """
    x, h, r, z, n, hn, (xhat_ih, rstd_ih, xhat_hh, rstd_hh) = cache
    g_ih, g_hh = np.split(p["w_ln"], 2)
    dan = dh_new * (1 - z) * (1 - n**2)  # pre-activation of n
    daz = dh_new * (h - n) * z * (1 - z)
    dhn = dan * r  # gradient of m_n + b_hn
    dar = dan * hn * r * (1 - r)
    da = np.concatenate([dar, daz, dan], axis=-1)  # input side: a = g_ih * xhat_ih + b_ih
    dm = np.concatenate([dar, daz, dhn], axis=-1)  # recurrent side: m = g_hh * xhat_hh
    # through the two layer norms to the products' outputs x W_ih^T and h W_hh^T
    qx = _q(_layer_norm_backward(da * g_ih, xhat_ih, rstd_ih))
    qh = _q(_layer_norm_backward(dm * g_hh, xhat_hh, rstd_hh))
    grads = {
        "w_ih": qx.T @ _q(x),
        "w_hh": qh.T @ _q(h),
        "b_ih": da.sum(0),
        "b_hh": dm.sum(0),
        "w_ln": np.concatenate([(da * xhat_ih).sum(0), (dm * xhat_hh).sum(0)]),
    }
    return qx @ _q(p["w_ih"]), dh_new * z + qh @ _q(p["w_hh"]), grads


def gru_step(
    x: Array, h: Array, p: dict[str, Array], reset_after: bool, clip: float | None = None
) -> tuple[Array, tuple[Any, ...]]:
    """One GRU step, gates r, z, n; ``h' = (1 - z)*n + z*h``.

    Args:
        x: ``(B, I)``.
        h: ``(B, H)``, the previous state.
        p: ``w_ih (3H, I)``, ``w_hh (3H, H)``, ``b_ih``, ``b_hh (3H,)``.
        reset_after: the reset gate after the recurrent product (PyTorch's ``"gru"``), else
            before it (``"gru_reset_before"``).
        clip: the pre-activations of r, z and the whole argument of n's tanh clamped to
            ``[-clip, clip]``; None: not.

    Returns:
        ``(h' (B, H), cache)``, the cache for :func:`gru_step_backward`.
    """
    H = p["w_hh"].shape[0] // 3
    x_r, x_z, x_n = _split(_mm(x, p["w_ih"]), 3)
    b_ir, b_iz, b_in = _split(p["b_ih"], 3)
    b_hr, b_hz, b_hn = _split(p["b_hh"], 3)
    if reset_after:  # one product of h for the three blocks
        h_r, h_z, h_n = _split(_mm(h, p["w_hh"]), 3)
    else:  # h for r and z; r*h for n
        h_r, h_z = _split(_mm(h, _rows(p["w_hh"], slice(0, 2 * H))), 2)
    ar, keep_r = _clip(x_r + b_ir + h_r + b_hr, clip)
    az, keep_z = _clip(x_z + b_iz + h_z + b_hz, clip)
    r, z = sigmoid(ar), sigmoid(az)
    if reset_after:
        hn = h_n + b_hn  # the recurrent part of n, before the reset gate
        an, keep_n = _clip(x_n + b_in + r * hn, clip)
    else:
        hn = _mm(r * h, _rows(p["w_hh"], slice(2 * H, 3 * H))) + b_hn  # the reset gate first
        an, keep_n = _clip(x_n + b_in + hn, clip)
    n = np.tanh(an)
    h_new = (1 - z) * n + z * h
    return h_new, (x, h, r, z, n, hn, (keep_r, keep_z, keep_n))


def gru_step_backward(
    dh_new: Array, cache: tuple[Any, ...], p: dict[str, Array], reset_after: bool
) -> tuple[Array, Array, dict[str, Array]]:
    """The gradients of one :func:`gru_step` from ``dh_new = dL/dh' (B, H)``.

    Returns:
        ``(dx (B, I), dh (B, H), grads)``, ``grads`` keyed as ``p``.
    """
    x, h, r, z, n, hn, (keep_r, keep_z, keep_n) = cache
    w_hr, w_hz, w_hn = _split(_q(p["w_hh"]).T, 3)
    xq, hq = _q(x), _q(h)
    dn = dh_new * (1 - z)
    dz = dh_new * (h - n)
    dh = dh_new * z
    dan = _through(dn * (1 - n**2), keep_n)  # pre-activation of n
    daz = _through(dz * z * (1 - z), keep_z)
    if reset_after:
        dhn = dan * r  # gradient of W_hn h + b_hn
        dr = dan * hn
        dh = dh + _q(dhn) @ w_hn.T
        dw_hn = _q(dhn).T @ hq
    else:
        dhn = dan  # gradient of W_hn (r*h) + b_hn
        drh = _q(dan) @ w_hn.T  # gradient of r*h
        dr = drh * h
        dh = dh + drh * r
        dw_hn = _q(dhn).T @ _q(r * h)
    dar = _through(dr * r * (1 - r), keep_r)
    dh = dh + _q(dar) @ w_hr.T + _q(daz) @ w_hz.T
    da_x = np.concatenate([dar, daz, dan], axis=-1)  # input side
    da_h = np.concatenate([dar, daz, dhn], axis=-1)  # recurrent side
    grads = {
        "w_ih": _q(da_x).T @ xq,
        "w_hh": np.concatenate([_q(dar).T @ hq, _q(daz).T @ hq, dw_hn], axis=0),
        "b_ih": da_x.sum(0),
        "b_hh": da_h.sum(0),
    }
    return _q(da_x) @ _q(p["w_ih"]), dh, grads


# ------------------------------------------------------------------------------------------------
# Whole sequences: one direction of one layer, then stacks of layers and directions
# ------------------------------------------------------------------------------------------------


def _step(
    cell: str,
    x: Array,
    h: Array,
    c: Array,
    p: dict[str, Any],
    clip: float | None = None,
    input_forget: bool = False,
) -> tuple[Any, ...]:
    if cell in _LSTMS:  # lstm_peephole: p["w_peep"] is its weight_peephole
        return lstm_step(x, h, c, p, clip, input_forget)
    if cell == "lnlstm":  # p["w_ln"]: its four layer-norm vectors, concatenated
        return lnlstm_step(x, h, c, p)
    if cell == "lngru":  # p["w_ln"]: its two gains
        h_new, st = lngru_step(x, h, p)
        return h_new, c, st
    if cell.startswith("gru"):
        h_new, st = gru_step(x, h, p, reset_after=cell == "gru", clip=clip)
    else:
        h_new, st = rnn_step(x, h, p, relu=cell == "rnn_relu", clip=clip)
    return h_new, c, st


def _step_backward(
    cell: str, dh: Array, dc: Array, st: Any, p: dict[str, Any]
) -> tuple[Array, Array, Array, dict[str, Array]]:
    if cell in _LSTMS:
        return lstm_step_backward(dh, dc, st, p)
    if cell == "lnlstm":
        return lnlstm_step_backward(dh, dc, st, p)
    if cell == "lngru":
        dx, dh_prev, g = lngru_step_backward(dh, st, p)
        return dx, dh_prev, dc, g
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
    zoneout: tuple[Any, Any] = (None, None)  # the (T, B, Hs) and (T, B, H) multipliers, or None


def run_direction(
    cell: str,
    x: Array,
    p: dict[str, Any],
    h0: Array,
    c0: Array,
    lengths: Array,
    reverse: bool,
    *,
    clip: float | None = None,
    input_forget: bool = False,
    zoneout: tuple[Any, Any] = (None, None),
) -> tuple[Array, Array, Array, DirCache]:
    """One direction of one layer over padded sequences.

    A sequence b runs steps 0..lengths[b]-1 (in decreasing order if ``reverse``); at its other
    steps its state is unchanged and its output is zero.

    Args:
        cell: one of :data:`CELLS`.
        x: ``(T, B, I)``.
        h0: ``(B, Hs)``.
        c0: ``(B, H)`` (ignored but for LSTM).
        p: the parameters, as the step functions take them.
        lengths: ``(B,)`` integers in ``[0, T]``.
        reverse: run from each sequence's last step to its first.
        clip, input_forget: ONNX's options, as the step functions take them (the caches keep
            what the backward needs of them).
        zoneout: the multipliers ``(m (T, B, Hs), m_c (T, B, H))``, either None: after a
            running step ``h = m[t]*h + (1 - m[t])*h~`` (``c`` likewise), the output ``h``.

    Returns:
        ``(y (T, B, Hs), h_n (B, Hs), c_n (B, H), cache)``.
    """
    T, B, I = x.shape
    Hs = h0.shape[1]
    zh, zc = zoneout
    y = np.zeros((T, B, Hs), x.dtype)
    h, c = h0, c0
    steps, times, masks = [], [], []
    for t in reversed(range(T)) if reverse else range(T):
        run = (lengths > t)[:, None]
        h_new, c_new, st = _step(cell, x[t], h, c, p, clip, input_forget)
        if zh is not None:
            h_new = zh[t] * h + (1 - zh[t]) * h_new
        if zc is not None:
            c_new = zc[t] * c + (1 - zc[t]) * c_new
        h = np.where(run, h_new, h)
        c = np.where(run, c_new, c)
        y[t] = np.where(run, h_new, 0)
        steps.append(st)
        times.append(t)
        masks.append(run)
    shape = (T, B, I, p["w_hh"].shape[0], Hs)
    return y, h, c, DirCache(cell, p, steps, times, masks, shape, (zh, zc))


def backprop_direction(
    cache: DirCache, dy: Array, dh_n: Array, dc_n: Array
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """The gradients of :func:`run_direction` from ``dy (T, B, Hs)``, ``dh_n (B, Hs)`` and
    ``dc_n (B, H)``.

    Returns:
        ``(dx (T, B, I), dh0 (B, Hs), dc0 (B, H), grads)``, ``grads`` keyed as the parameters.
    """
    cell, p = cache.cell, cache.params
    T, B, I, _, _ = cache.shape
    dx = np.zeros((T, B, I), dy.dtype)
    dh, dc = dh_n, dc_n
    total = {k: np.zeros_like(v) for k, v in p.items() if v is not None}
    zh, zc = cache.zoneout
    processed = zip(cache.steps, cache.times, cache.active, strict=True)
    for st, t, run in reversed(list(processed)):
        # only running sequences pass their gradient through the step; the others keep it
        dh_t, dc_t = dh + dy[t], dc
        # zoneout: h_t = m*h_{t-1} + (1 - m)*h~_t splits dh_t between h~_t and h_{t-1}
        mh = 0 if zh is None else zh[t]
        mc = 0 if zc is None else zc[t]
        dh_step = np.where(run, (1 - mh) * dh_t, 0)
        dc_step = np.where(run, (1 - mc) * dc_t, 0)
        dx[t], dh_prev, dc_prev, g = _step_backward(cell, dh_step, dc_step, st, p)
        dh = np.where(run, dh_prev + mh * dh_t, dh)
        dc = np.where(run, dc_prev + mc * dc_t, dc)
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
    compute_dtype: str | None = None


def _param_dict(cell: str, params: Any, dtype: Any) -> dict[str, Any]:
    w_ih, w_hh, b_ih, b_hh, w_hr, own = (list(params) + [None] * 6)[:6]
    zeros = np.zeros(w_ih.shape[0], dtype=dtype)
    # the cell's own parameters (lstm_peephole: (weight_peephole,); lnlstm, lngru: their
    # layer-norm vectors) as one vector, under the step's key
    vector = own if own is None or isinstance(own, np.ndarray) else np.concatenate(own)
    return {
        "w_ih": w_ih,
        "w_hh": w_hh,
        "b_ih": zeros if b_ih is None else b_ih,
        "b_hh": zeros if b_hh is None else b_hh,
        "w_hr": w_hr,
        "w_ln" if cell in _LAYER_NORM else "w_peep": vector,
    }


def _cell_grads(cell: str, g: dict[str, Array], H: int) -> tuple[Array, ...] | None:
    """The gradients of the cell's own parameters as :class:`fastrnn.spec.LayerParams` holds
    them: lstm_peephole's ``(dweight_peephole,)``, lnlstm's four vectors, lngru's two, None for
    the others."""
    if "w_peep" in g:
        return (g["w_peep"],)
    if cell in _LAYER_NORM:
        return tuple(np.split(g["w_ln"], [n * H for n in _LAYER_NORM[cell]]))
    return None


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
    compute_dtype: str | None = None,
    reverse: bool = False,
    clip: float | None = None,
    input_forget: bool = False,
    zoneout_masks: tuple[Any, Any] | None = None,
) -> tuple[Array, Array, Array | None, Cache]:
    """A stack of layers, as torch.nn.RNN/LSTM/GRU: ``params`` holds ``num_layers * D`` tuples
    ``(w_ih, w_hh, b_ih, b_hh, w_hr[, cell_params])`` (biases and ``w_hr`` may be None;
    ``cell_params`` is ``lstm_peephole``'s ``(weight_peephole,)``, ``lnlstm``'s ``(g_ih, g_hh,
    g_c, b_c)`` or ``lngru``'s ``(g_ih, g_hh)``, as :class:`fastrnn.spec.LayerParams` holds it),
    layer by layer, forward direction first. The directions of a layer are concatenated on the
    last axis; the outputs of every layer but the last are multiplied by ``dropout_masks[l]``;
    ``compute_dtype`` is the precision of the products (:func:`compute_precision`; the backward
    of the cache uses it too); ``reverse``, ``clip`` and ``input_forget`` are ONNX's options
    (the module's docstring). Returns ``(y, h_n, c_n, cache)`` with ``y (T, B, D*Hs)`` and
    states ``(L*D, B, Hs)`` (``c_n (L*D, B, H)``, None but for the LSTM cells); ``x`` is ``(T,
    B, I)``, ``h0``, ``c0`` as the states (None: zeros), ``lengths (B,)`` (None: all ``T``),
    ``dropout_masks (L-1, T, B, D*Hs)``; ``zoneout_masks`` the zoneout multipliers ``(h (L*D,
    T, B, Hs), c (L*D, T, B, H))`` (either None; ``c`` for ``lstm`` and ``lnlstm``), kept in the
    cache for the backward.

    Raises:
        ValueError: ``cell`` is not one of :data:`CELLS`, or ``compute_dtype`` not one of
            :data:`COMPUTE_DTYPES`; ``reverse`` with ``bidirectional``; ``input_forget`` for a
            cell without a forget gate; ``clip`` or ``input_forget`` for ``lnlstm`` or
            ``lngru``.
    """
    num_gates(cell)
    if reverse and bidirectional:
        raise ValueError("reverse: not with bidirectional")
    if cell in _LAYER_NORM and (clip is not None or input_forget):
        raise ValueError(f"clip, input_forget: not for {_LN_TITLES[cell]} ({cell})")
    if input_forget and cell not in _LSTMS:
        raise ValueError(f"input_forget: {cell} has no forget gate")
    with compute_precision(compute_dtype):
        return _stack_forward(
            cell,
            x,
            params,
            h0,
            c0,
            num_layers,
            bidirectional,
            lengths,
            dropout_masks,
            compute_dtype,
            (reverse, clip, input_forget),
            (None, None) if zoneout_masks is None else zoneout_masks,
        )


def _stack_forward(
    cell: str,
    x: Array,
    params: list[Any],
    h0: Array | None,
    c0: Array | None,
    num_layers: int,
    bidirectional: bool,
    lengths: Any,
    dropout_masks: Array | None,
    compute_dtype: str | None,
    options: tuple[bool, float | None, bool],
    zoneout: tuple[Any, Any],
) -> tuple[Array, Array, Array | None, Cache]:
    reverse, clip, input_forget = options
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    ps = [_param_dict(cell, p, x.dtype) for p in params]
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
            backwards = d == 1 or reverse  # a bidirectional layer's second, or reverse's one
            zk = tuple(None if z is None else np.asarray(z)[k] for z in zoneout)
            y_d, h_n[k], c_n[k], dc = run_direction(
                cell,
                inp,
                ps[k],
                h,
                c,
                lens,
                backwards,
                clip=clip,
                input_forget=input_forget,
                zoneout=(zk[0], zk[1]),
            )
            outs.append(y_d)
            dirs.append(dc)
        inp = np.concatenate(outs, axis=-1)
        if l < num_layers - 1 and dropout_masks is not None:
            masks.append(dropout_masks[l])
            inp = inp * dropout_masks[l]
    cache = Cache(
        cell,
        dirs,
        masks,
        num_layers,
        D,
        params[0][2] is not None,
        ps[0]["w_hr"] is not None,
        compute_dtype,
    )
    return inp, h_n, (c_n if cell in _CELL_STATE else None), cache


def stack_backward(
    cache: Cache, dy: Array | None = None, dh_n: Array | None = None, dc_n: Array | None = None
) -> dict[str, Any]:
    """Gradients of :func:`stack_forward`: a dict with ``dx``, ``dh0``, ``dc0`` (None except
    LSTM) and ``params``, a list of dicts ``weight_ih, weight_hh, bias_ih, bias_hh, weight_hr,
    cell_params`` (None where the layer has no such parameter; ``cell_params`` is
    ``lstm_peephole``'s ``(dweight_peephole,)``, ``lnlstm``'s gradients of its four layer-norm
    vectors, ``lngru``'s of its two) per layer and direction. The products run in
    the forward's ``compute_dtype``; ``reverse``, ``clip`` and ``input_forget`` are the
    forward's."""
    with compute_precision(cache.compute_dtype):
        return _stack_backward(cache, dy, dh_n, dc_n)


def _stack_backward(
    cache: Cache, dy: Array | None, dh_n: Array | None, dc_n: Array | None
) -> dict[str, Any]:
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
                "cell_params": _cell_grads(cache.cell, g, H),
            }
        assert din is not None
        if l > 0 and cache.masks:
            din = din * cache.masks[l - 1]
        dout = din
    dc0_out = dc0 if cache.cell in _CELL_STATE else None
    return {"dx": dout, "dh0": dh0, "dc0": dc0_out, "params": grads}


def forward(
    cell: str,
    x: Array,
    weight_ih: Array,
    weight_hh: Array,
    bias_ih: Array | None = None,
    bias_hh: Array | None = None,
    h0: Array | None = None,
    c0: Array | None = None,
    *,
    cell_params: Any = None,
    reverse: bool = False,
    clip: float | None = None,
    input_forget: bool = False,
) -> tuple[Array, Array, Array | None, Cache]:
    """Run one layer of ``cell`` over ``x (T, B, I)``: ``weight_ih (G*H, I)``, ``weight_hh (G*H,
    H)``, biases ``(G*H,)`` or None, states ``(B, H)`` (None: zeros); ``cell_params`` the cell's
    own (``lstm_peephole``: ``(weight_peephole (3H,),)``; ``lnlstm``: ``(g_ih (4H,), g_hh (4H,),
    g_c (H,), b_c (H,))``; ``lngru``: ``(g_ih (3H,), g_hh (3H,))``), ``reverse``, ``clip`` and
    ``input_forget`` as :func:`stack_forward`'s.

    Returns:
        ``(y (T, B, H), h_n, c_n, cache)``; ``c_n`` is None except for LSTM.

    Raises:
        ValueError: ``cell`` is not one of :data:`CELLS`; and as :func:`stack_forward`.
    """
    y, h_n, c_n, cache = stack_forward(
        cell,
        x,
        [(weight_ih, weight_hh, bias_ih, bias_hh, None, cell_params)],
        None if h0 is None else h0[None],
        None if c0 is None else c0[None],
        reverse=reverse,
        clip=clip,
        input_forget=input_forget,
    )
    return y, h_n[0], (None if c_n is None else c_n[0]), cache


def backward(
    cache: Cache, dy: Array | None = None, dh_n: Array | None = None, dc_n: Array | None = None
) -> dict[str, Any]:
    """Backpropagation through time for the one-layer :func:`forward` of ``cache``.

    ``dy (T, B, H)``, ``dh_n`` and ``dc_n (B, H)`` are the gradients of the loss with respect to
    the outputs and the final states (None: zeros). Returns a dict with ``dx``, ``dh0``, ``dc0``
    (None except LSTM) and the parameter gradients ``weight_ih``, ``weight_hh``, ``bias_ih``,
    ``bias_hh`` (the biases None when the layer has none) and ``cell_params`` (None but for
    ``lstm_peephole``: ``(dweight_peephole,)``, and ``lnlstm``, ``lngru``: their vectors'
    gradients).
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
        "cell_params": p["cell_params"],
    }


# ================================================================================================
# Training pieces
#
# The layers around a recurrent stack and the steps of a training loop, each written from its
# formula: the output layer y = W h + b, an embedding lookup, the two losses of the notes, gradient
# clipping and the SGD and Adam updates. They follow PyTorch (torch.nn.functional.linear,
# torch.nn.Embedding, torch.nn.CrossEntropyLoss, torch.nn.MSELoss, torch.nn.utils.clip_grad_*_,
# torch.optim.SGD, torch.optim.Adam) and are the oracle of the compiled versions.
# ================================================================================================


def linear_forward(x: Array, weight: Array, bias: Array | None = None) -> Array:
    """Affine map ``y = x W^T + b``, as ``torch.nn.functional.linear``.

    Args:
        x: ``(..., in)``, any number of leading axes.
        weight: ``(out, in)`` (PyTorch's layout).
        bias: ``(out,)`` or None.

    Returns:
        ``y (..., out)``.
    """
    y: Array = x @ weight.T
    if bias is not None:
        y = y + bias
    return y


def linear_backward(
    x: Array, weight: Array, dy: Array, has_bias: bool = True
) -> tuple[Array, Array, Array | None]:
    """Gradients of :func:`linear_forward` given ``dy = dL/dy (..., out)``.

    Every leading axis is a batch axis: the parameter gradients sum over all of them.

    Returns:
        ``(dx, dweight, dbias)``: ``dx = dy W`` ``(..., in)``; ``dweight = sum dy^T x`` ``(out,
        in)``; ``dbias = sum dy`` ``(out,)``, or None if ``has_bias`` is False.
    """
    dx = dy @ weight
    dy_rows = dy.reshape(-1, weight.shape[0])  # (N, out), N = product of the leading axes
    x_rows = x.reshape(-1, weight.shape[1])  # (N, in)
    dweight = dy_rows.T @ x_rows
    dbias = dy_rows.sum(axis=0) if has_bias else None
    return dx, dweight, dbias


def _check_ids(ids: ArrayLike, num_embeddings: int) -> NDArray[np.integer[Any]]:
    """ids as an integer array with every value in ``[0, num_embeddings)``."""
    a = np.asarray(ids)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids: expected an integer array, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= num_embeddings):
        raise ValueError(
            f"ids: values must be in [0, {num_embeddings}), got [{a.min()}, {a.max()}]"
        )
    return a


def embedding_forward(ids: ArrayLike, weight: Array) -> Array:
    """Embedding lookup ``weight[ids]``, as ``torch.nn.functional.embedding``.

    Args:
        ids: integers of any shape, each in ``[0, num_embeddings)``.
        weight: ``(num_embeddings, D)``.

    Returns:
        ``ids.shape + (D,)``, the rows of ``weight`` (a new array).

    Raises:
        ValueError: ``ids`` is not an integer array, or an id is out of range.
    """
    rows: Array = weight[_check_ids(ids, weight.shape[0])]
    return rows


def embedding_backward(
    ids: ArrayLike, dy: Array, num_embeddings: int, padding_idx: int | None = None
) -> Array:
    """Gradient of :func:`embedding_forward` w.r.t. ``weight``, given ``dy (ids.shape + (D,))``.

    Row ``k`` of the result is the sum of ``dy`` over every position where ``ids == k`` (a row
    used twice gets both contributions). As ``torch.nn.Embedding(padding_idx=...)``, the row
    ``padding_idx`` (negative values count from the end) gets zero gradient.

    Returns:
        ``dweight (num_embeddings, D)``, of ``dy``'s dtype.

    Raises:
        ValueError: ``ids`` is not an integer array or an id is out of range; ``dy`` is not
            ``ids.shape + (D,)``; ``padding_idx`` is outside ``[-num_embeddings,
            num_embeddings)``.
    """
    a = _check_ids(ids, num_embeddings)
    D = dy.shape[-1]
    expected = (*a.shape, D)
    if dy.shape != expected:
        raise ValueError(f"dy: expected shape {expected} (ids.shape + (D,)), got {dy.shape}")
    dweight = np.zeros((num_embeddings, D), dtype=dy.dtype)
    np.add.at(dweight, a.reshape(-1), dy.reshape(-1, D))
    if padding_idx is not None:
        if not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(
                f"padding_idx: must be in [{-num_embeddings}, {num_embeddings}), got {padding_idx}"
            )
        dweight[padding_idx] = 0
    return dweight


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")


def softmax_cross_entropy(
    logits: Array, targets: ArrayLike, ignore_index: int = -100, reduction: str = "mean"
) -> tuple[float, Array]:
    """Cross-entropy of the softmax of ``logits``, as ``torch.nn.CrossEntropyLoss``.

    For a row with target ``t``: ``loss = logsumexp(a) - a_t``, and its gradient is
    ``softmax(a) - onehot(t)``. The log-sum-exp subtracts the row maximum first, so logits of any
    finite size (1e4, say) give finite values.

    Args:
        logits: ``(N, C)``.
        targets: ``(N,)`` integers in ``[0, C)``, or ``ignore_index`` for rows that do not count.
        ignore_index: target value of ignored rows; they add nothing and get zero gradient.
        reduction: ``"mean"`` divides the sum over the counted rows by their number (not by N);
            ``"sum"`` does not divide.

    Returns:
        ``(loss, dlogits)``, ``dlogits = dloss/dlogits (N, C)``.

    Raises:
        ValueError: ``reduction`` is neither ``"mean"`` nor ``"sum"``; ``targets`` is not
            ``(N,)`` integers, or one is out of range.

    When every target is ignored (or N is 0), ``"mean"`` returns a NaN loss with an all-zero
    gradient and ``"sum"`` returns 0.0 with an all-zero gradient: what torch 2.13 returns.
    """
    _check_reduction(reduction)
    t = np.asarray(targets)
    N, C = logits.shape
    if not np.issubdtype(t.dtype, np.integer) or t.shape != (N,):
        raise ValueError(f"targets: expected ({N},) integers, got {t.shape} of dtype {t.dtype}")
    counted = t != ignore_index
    if ((t[counted] < 0) | (t[counted] >= C)).any():
        raise ValueError(f"targets: values must be in [0, {C}) or ignore_index ({ignore_index})")

    shifted = logits - logits.max(axis=1, keepdims=True)  # the largest logit of a row becomes 0
    log_sum_exp = np.log(np.exp(shifted).sum(axis=1))
    log_probs = shifted - log_sum_exp[:, None]  # log softmax
    rows = np.flatnonzero(counted)
    losses = -log_probs[rows, t[rows]]  # per counted row

    dlogits = np.exp(log_probs)  # softmax
    dlogits[rows, t[rows]] -= 1.0
    dlogits[~counted] = 0.0

    total = float(losses.sum())
    if reduction == "sum":
        return total, dlogits
    count = len(rows)
    if count == 0:
        return float("nan"), dlogits  # torch's 0/0; its gradient stays zero
    return total / count, dlogits / count


def mse_loss(
    pred: Array, target: Array, reduction: str = "mean", half: bool = False
) -> tuple[float, Array]:
    """Squared error and its gradient.

    Convention: by default PyTorch's ``torch.nn.MSELoss``, ``L = mean((pred - target)^2)`` (or
    the sum with ``reduction="sum"``), gradient ``2 (pred - target) / n`` (``n`` the number of
    elements; 1 for the sum). ``half=True`` is the course notes' ``L = 1/2 mean((pred -
    target)^2)``, whose gradient ``(pred - target) / n`` has no factor 2: both loss and gradient
    are exactly half of the default's. A mean over zero elements is NaN, as in torch.

    Args:
        pred, target: arrays of one shape.
        reduction: ``"mean"`` or ``"sum"``.
        half: the notes' convention, half the loss and gradient.

    Returns:
        ``(loss, dpred)``, ``dpred`` shaped like ``pred``.

    Raises:
        ValueError: ``reduction`` is neither ``"mean"`` nor ``"sum"``, or the shapes differ.
    """
    _check_reduction(reduction)
    if pred.shape != target.shape:
        raise ValueError(f"target: expected the shape of pred, {pred.shape}, got {target.shape}")
    diff = pred - target
    loss = float((diff**2).sum())
    dpred = 2.0 * diff
    if reduction == "mean":
        n = diff.size
        loss = loss / n if n else float("nan")
        dpred = dpred / max(n, 1)
    if half:
        loss = 0.5 * loss
        dpred = 0.5 * dpred
    return loss, dpred


def _global_norm(grads: list[NDArray[Any]], norm_type: float) -> float:
    """The ``norm_type``-norm of all the arrays seen as one vector: the norm of their norms."""
    if not grads:
        return 0.0
    norms = [np.linalg.norm(g.reshape(-1), ord=norm_type) for g in grads]
    return float(np.linalg.norm(np.array(norms), ord=norm_type))


def clip_grad_norm(grads: list[NDArray[Any]], max_norm: float, norm_type: float = 2.0) -> float:
    """Scale ``grads`` in place so that their global norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``.

    ``total`` is the ``norm_type``-norm of all the arrays together (``inf``: the largest absolute
    value). With ``coef = max_norm / (total + 1e-6)``, every array is multiplied by ``coef`` if
    ``coef < 1`` and left alone otherwise. A NaN total (a NaN gradient) gives a NaN ``coef``,
    which torch multiplies in as well (``clamp(nan, max=1)`` is NaN): so does this function.

    Returns:
        ``total``, the norm before clipping.

    Raises:
        ValueError: ``norm_type`` is not positive.
    """
    if not (norm_type > 0):
        raise ValueError(f"norm_type: expected a positive number or inf, got {norm_type}")
    total = _global_norm(grads, norm_type)
    coef = max_norm / (total + 1e-6)
    if coef < 1 or math.isnan(coef):
        for g in grads:
            g *= coef
    return total


def clip_grad_value(grads: list[NDArray[Any]], clip_value: float) -> float:
    """Clamp every gradient element in place to ``[-clip_value, clip_value]``, as
    ``torch.nn.utils.clip_grad_value_``.

    Returns:
        The global 2-norm of ``grads`` before clipping (torch returns None).

    Raises:
        ValueError: ``clip_value`` is negative (or NaN).
    """
    if not (clip_value >= 0):
        raise ValueError(f"clip_value: expected a number >= 0, got {clip_value}")
    total = _global_norm(grads, 2.0)
    for g in grads:
        np.clip(g, -clip_value, clip_value, out=g)
    return total


def sgd_step(
    params: list[NDArray[Any]],
    grads: list[NDArray[Any]],
    bufs: list[NDArray[Any] | None],
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> None:
    """One update of ``torch.optim.SGD``, in place on ``params`` (and ``bufs``).

    For each parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p
        if momentum != 0:
            buf = g                                        first step (``bufs[i]`` is None)
            buf = momentum * buf + (1 - dampening) * g     later steps
            g = g + momentum * buf  if nesterov  else  buf
        p = p - lr * g

    ``bufs`` holds one momentum buffer per parameter: start with ``[None] * len(params)``; the
    None entries are replaced by new arrays on the first step (untouched when ``momentum`` is 0).
    ``grads`` are not modified. With momentum 0 this is the notes' ``theta = theta - lr * g``.

    Raises:
        ValueError: ``nesterov`` without a momentum or with dampening; ``params``, ``grads`` and
            ``bufs`` of different lengths.
    """
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov: requires a momentum > 0 and zero dampening (as torch)")
    if not len(params) == len(grads) == len(bufs):
        raise ValueError(
            f"bufs: params, grads and bufs must have the same length, got "
            f"{len(params)}, {len(grads)}, {len(bufs)}"
        )
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = g + weight_decay * p if weight_decay != 0 else g
        if momentum != 0:
            buf = bufs[i]
            if buf is None:
                buf = np.array(d, copy=True)
            else:
                buf[...] = momentum * buf + (1 - dampening) * d  # in place: bufs[i] is updated
            bufs[i] = buf
            d = d + momentum * buf if nesterov else buf
        p -= lr * d


def adam_step(
    params: list[NDArray[Any]],
    grads: list[NDArray[Any]],
    m: list[NDArray[Any]],
    v: list[NDArray[Any]],
    step: int,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> None:
    """One update of ``torch.optim.Adam`` (``amsgrad=False``), in place on ``params``, ``m``, ``v``.

    For each parameter ``p`` with gradient ``g`` (``weight_decay`` is added to the gradient, L2
    style, as torch's Adam does; AdamW would decay ``p`` directly)::

        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

    ``step`` is the 1-based number of this update (1 on the first call: the count after
    incrementing). ``m`` and ``v`` start as zeros shaped like the parameters. The last line is
    torch's arrangement of the notes' ``p = p - lr * m_hat / (sqrt(v_hat) + eps)`` with the
    bias-corrected ``m_hat = m / (1 - beta1^step)``, ``v_hat = v / (1 - beta2^step)``: the same
    formula, ``eps`` added to ``sqrt(v_hat)``.

    Raises:
        ValueError: ``step < 1``; ``params``, ``grads``, ``m`` and ``v`` of different lengths.
    """
    if step < 1:
        raise ValueError(f"step: the 1-based step count, must be >= 1, got {step}")
    if not len(params) == len(grads) == len(m) == len(v):
        raise ValueError(
            f"m: params, grads, m and v must have the same length, got "
            f"{len(params)}, {len(grads)}, {len(m)}, {len(v)}"
        )
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    for p, g, m_i, v_i in zip(params, grads, m, v, strict=True):
        d = g + weight_decay * p if weight_decay != 0 else g
        m_i[...] = beta1 * m_i + (1 - beta1) * d  # [...] = : in place, the caller's arrays
        v_i[...] = beta2 * v_i + (1 - beta2) * d**2
        denom = np.sqrt(v_i) / np.sqrt(bias_correction2) + eps
        p -= lr / bias_correction1 * m_i / denom


# ================================================================================================
# Attention (sequence to sequence): the masked-softmax core of fastrnn's attention kernels.
# ================================================================================================


def _attention_mask(lengths: ArrayLike | None, Tk: int, B: int) -> NDArray[np.bool_]:
    """``(B, Tk)``: True where key ``j`` of batch entry ``b`` is valid (``j < lengths[b]``)."""
    la = check_lengths("lengths", lengths, Tk, B)  # None: all Tk
    mask: NDArray[np.bool_] = np.arange(Tk)[None, :] < la[:, None]
    return mask


def attention_scores(query: Array, keys: Array, v: Array | None = None) -> Array:
    """The scores ``e (Tq, B, Tk)`` of every query against every key of its batch entry.

    ``v is None``: the dot score, ``e[t, b, j] = query[t, b] . keys[j, b]`` (Luong's *dot*, and
    his *general* ``h_t^T W h_s`` when ``keys`` are the memory projected by ``W``).
    Otherwise the additive score, ``e[t, b, j] = v . tanh(query[t, b] + keys[j, b])``
    (Bahdanau's ``v^T tanh(W s + U h)`` when ``query`` and ``keys`` are already projected by
    ``W`` and ``U``).
    """
    e = np.empty((query.shape[0], query.shape[1], keys.shape[0]), dtype=query.dtype)
    for t in range(query.shape[0]):
        for b in range(query.shape[1]):
            for j in range(keys.shape[0]):
                if v is None:
                    e[t, b, j] = query[t, b] @ keys[j, b]
                else:
                    e[t, b, j] = v @ np.tanh(query[t, b] + keys[j, b])
    return e


def attention_forward(
    query: Array, keys: Array, values: Array, lengths: ArrayLike | None = None,
    v: Array | None = None,
) -> tuple[Array, Array]:  # fmt: skip
    """Attention of ``query (Tq, B, D)`` over ``keys (Tk, B, D)`` and ``values (Tk, B, Dv)``.

    The scores are :func:`attention_scores`'s (dot, or additive with ``v (D,)``). Each query's
    weights are the softmax of its scores over the valid keys of its batch entry, the first
    ``lengths[b]`` (all ``Tk`` if ``lengths`` is None; each in ``[1, Tk]``), and exactly zero
    over the padding. The context is the weighted sum of the values::

        a[t, b, :] = softmax(e[t, b, :lengths[b]]),   c[t, b] = sum_j a[t, b, j] values[j, b]

    Returns:
        ``(context (Tq, B, Dv), weights (Tq, B, Tk))``.

    Raises:
        TypeError: ``lengths`` holds non-integers.
        ValueError: ``lengths`` is not ``(B,)`` or a length is outside ``[1, Tk]``.
    """
    Tq, B = query.shape[:2]
    mask = _attention_mask(lengths, keys.shape[0], B)
    e = attention_scores(query, keys, v)
    weights = np.zeros_like(e)
    for t in range(Tq):
        for b in range(B):
            valid = e[t, b][mask[b]]
            w = np.exp(valid - valid.max())
            weights[t, b, mask[b]] = w / w.sum()
    context = np.einsum("tbj,jbd->tbd", weights, values)
    return context, weights


def attention_backward(
    query: Array, keys: Array, values: Array, lengths: ArrayLike | None, weights: Array,
    dcontext: Array, v: Array | None = None,
) -> tuple[Array, Array, Array, Array | None]:  # fmt: skip
    """Gradients of :func:`attention_forward` given its ``weights`` and ``dcontext = dL/dc``.

    With ``s = a * (da - sum_j a da)`` the softmax's backward (zero over the padding)::

        da[t, b, j] = dcontext[t, b] . values[j, b]      dvalues[j, b] = sum_t a[t, b, j] dc[t, b]
        dot:       dquery[t, b] = sum_j s[t, b, j] keys[j, b],  dkeys[j, b] = sum_t s query[t, b]
        additive:  u = tanh(query[t, b] + keys[j, b]);  g = s[t, b, j] * v * (1 - u^2)
                   dquery[t, b] = sum_j g,  dkeys[j, b] = sum_t g,  dv = sum_{t, b, j} s u

    Returns:
        ``(dquery (Tq, B, D), dkeys (Tk, B, D), dvalues (Tk, B, Dv), dv (D,))``; ``dv`` is None
        for the dot score.

    Raises:
        TypeError, ValueError: ``lengths`` breaks :func:`attention_forward`'s rule.
    """
    mask = _attention_mask(lengths, keys.shape[0], query.shape[1])
    da = np.einsum("tbd,jbd->tbj", dcontext, values)
    s = weights * (da - (weights * da).sum(axis=2, keepdims=True))
    s = s * mask[None]
    dvalues = np.einsum("tbj,tbd->jbd", weights, dcontext)
    if v is None:
        dquery = np.einsum("tbj,jbd->tbd", s, keys)
        dkeys = np.einsum("tbj,tbd->jbd", s, query)
        return dquery, dkeys, dvalues, None
    u = np.tanh(query[:, :, None] + keys.transpose(1, 0, 2)[None])  # (Tq, B, Tk, D)
    g = s[..., None] * v * (1 - u * u)
    dv = np.einsum("tbj,tbjd->d", s, u)
    return g.sum(axis=2), g.sum(axis=0).transpose(1, 0, 2), dvalues, dv
