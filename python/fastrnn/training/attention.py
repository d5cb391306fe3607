"""Attention over an encoder's outputs: Luong's *dot* and *general* scores, Bahdanau's *additive*.

:class:`Attention` lets every decoder step (the *query*) look at all the encoder's outputs (the
*memory*) of its sequence, instead of a fixed-length summary::

    dot        e[t, j] = q_t . h_j                                   (query_size == key_size)
    general    e[t, j] = q_t^T W h_j                                 W (query_size, key_size)
    additive   e[t, j] = v . tanh(W_q q_t + W_k h_j)                 W_q (attn, query_size),
                                                                     W_k (attn, key_size), v (attn,)
    a[t, :] = softmax(e[t, :lengths])  (zero over the padding),   c_t = sum_j a[t, j] h_j

The memory's projection (``W h_j``, ``W_k h_j``) does not depend on the query: it is made once per
source (:meth:`Attention.memory`) and reused by every step of a decoding. The queries of all
decoder steps of teacher-forced training are attended to in one call, so the scores and the
context are batched products over all steps (:func:`fastrnn.functional.attention_forward`, the
compiled kernel: scores, the masked softmax and the context fused per batch entry).

Arrays are time-major like fastrnn's layers: queries ``(Tq, B, query_size)``, memory ``(Tk, B,
key_size)``, weights ``(Tq, B, Tk)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .. import functional as F
from .._args import check_int, check_lengths, float_dtype
from ..module import Module

__all__ = ["SCORES", "Attention", "Memory", "attention_param_shapes"]

Array = NDArray[Any]
#: the score functions of :class:`Attention`
SCORES = ("dot", "general", "additive")


@dataclass(frozen=True)
class Memory:
    """What an :class:`Attention` attends to, made by :meth:`Attention.memory` once per source.

    Attributes:
        values: the encoder's outputs ``(Tk, B, key_size)``.
        keys: their projection for the score (``W h_j`` for general ``(Tk, B, query_size)``,
            ``W_k h_j`` for additive ``(Tk, B, attn_size)``; ``values`` itself for dot).
        lengths: the valid steps ``(B,)``, int64, each in ``[1, Tk]``.
    """

    values: Array
    keys: Array
    lengths: NDArray[np.int64]

    @property
    def batch_size(self) -> int:
        """``B``."""
        return int(self.values.shape[1])


def attention_param_shapes(
    score: str, query_size: int, key_size: int, attn_size: int | None = None
) -> dict[str, tuple[int, ...]]:
    """The parameters of an :class:`Attention` of these arguments, without making one.

    Args:
        score, query_size, key_size, attn_size: as :class:`Attention`'s (``attn_size`` None:
            ``query_size``); not checked (the constructor checks them).

    Returns:
        Name -> shape: ``"general"``: ``weight (query_size, key_size)``; ``"additive"``:
        ``query_weight (attn_size, query_size)``, ``key_weight (attn_size, key_size)``, ``v
        (attn_size,)``; ``"dot"`` (or any other score): none.
    """
    if score == "general":
        return {"weight": (query_size, key_size)}
    if score == "additive":
        A = query_size if attn_size is None else attn_size
        return {"query_weight": (A, query_size), "key_weight": (A, key_size), "v": (A,)}
    return {}


def _rows(a: Array) -> Array:
    """``a (..., n)`` as C-contiguous rows ``(N, n)``."""
    return np.ascontiguousarray(a.reshape(-1, a.shape[-1]))


class Attention(Module):
    """Attention of decoder states over encoder outputs (Luong's ``dot``/``general``,
    Bahdanau's ``additive`` score), forward and backward in the compiled core.

    Args:
        score: ``"dot"``, ``"general"`` or ``"additive"`` (see the module's formulas).
        query_size: features of a query (the decoder's hidden size).
        key_size: features of a memory entry (the encoder's output size); must equal
            ``query_size`` for ``"dot"``.
        attn_size: the additive score's hidden size (default ``query_size``).
        dtype: float32 or float64, of the parameters and the computation.
        seed: an int, a ``numpy.random.Generator`` or None, for the initialisation.

    Parameters (:func:`attention_param_shapes`): ``"general"``: ``weight (query_size,
    key_size)``; ``"additive"``: ``query_weight (attn_size, query_size)``, ``key_weight
    (attn_size, key_size)``, ``v (attn_size,)``; ``"dot"`` has none. Each is initialised
    uniformly in ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``, as a ``torch.nn.Linear`` of the same
    shape. The state_dict round trip, modes and :attr:`~fastrnn.module.Module.grads` are
    :class:`~fastrnn.module.Module`'s.

    Raises:
        ValueError: an unknown ``score``, a size < 1, or ``key_size != query_size`` for
            ``"dot"``.
        TypeError: a size not an int, or ``dtype`` not float32 or float64.
    """

    def __init__(
        self,
        score: str,
        query_size: int,
        key_size: int,
        attn_size: int | None = None,
        *,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
        self.score = score
        self.query_size = check_int("query_size", query_size, 1)
        self.key_size = check_int("key_size", key_size, 1)
        if score == "dot" and self.key_size != self.query_size:
            raise ValueError(
                f"key_size: the dot score needs key_size == query_size, got {self.key_size} and "
                f"{self.query_size} (use 'general' or 'additive')"
            )
        self.attn_size = check_int(
            "attn_size", self.query_size if attn_size is None else attn_size, 1
        )
        self.dtype = float_dtype("dtype", dtype)
        self.training = True
        self.grads = {}
        self._saved: tuple[Array, Memory, Array, Array] | None = None
        self.reset_parameters(seed)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The score's parameters (none for ``"dot"``): :func:`attention_param_shapes`."""
        return attention_param_shapes(self.score, self.query_size, self.key_size, self.attn_size)

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """Uniform in ``(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``v``: fan_in ``attn_size``)."""
        rng = np.random.default_rng(seed)
        params = {}
        for name, shape in self.param_shapes().items():
            k = 1.0 / np.sqrt(shape[-1])
            params[name] = rng.uniform(-k, k, shape).astype(self.dtype)
        self._params = params

    # ---- forward ----------------------------------------------------------------------------

    def _array(self, name: str, a: ArrayLike, features: int) -> Array:
        x = np.asarray(a)
        if x.dtype != self.dtype:
            raise TypeError(f"{name}: expected dtype {self.dtype.name}, got {x.dtype}")
        if x.ndim != 3 or x.shape[2] != features:
            raise ValueError(f"{name}: expected shape (T, B, {features}), got {x.shape}")
        return np.ascontiguousarray(x)

    def memory(self, values: ArrayLike, lengths: ArrayLike | None = None) -> Memory:
        """The memory to attend to: the encoder's outputs, projected once for the score.

        Args:
            values: the encoder's outputs ``(Tk, B, key_size)``, ``Tk >= 1``, of the layer's
                dtype.
            lengths: the valid steps of each sequence ``(B,)``, integers in ``[1, Tk]``; None:
                all ``Tk``.

        Returns:
            The :class:`Memory`, for :meth:`attend`.

        Raises:
            TypeError: ``values`` not of the layer's dtype, or ``lengths`` not integers.
            ValueError: ``values`` not ``(Tk, B, key_size)`` or with ``Tk = 0``, or
                ``lengths`` of another shape or out of ``[1, Tk]``.
        """
        v = self._array("values", values, self.key_size)
        Tk, B = v.shape[:2]
        if Tk == 0:
            raise ValueError("values: the memory needs at least one step")
        la = check_lengths("lengths", lengths, Tk, B)
        if self.score == "general":
            keys = F.linear_forward(_rows(v), self._params["weight"], None)
        elif self.score == "additive":
            keys = F.linear_forward(_rows(v), self._params["key_weight"], None)
        else:
            keys = v
        return Memory(v, keys.reshape(Tk, B, -1), la)

    def attend(self, query: ArrayLike, memory: Memory) -> tuple[Array, Array]:
        """Every query step attends over ``memory``, in one call of the kernel; in training
        mode it saves what :meth:`backward` needs.

        Args:
            query: ``(Tq, B, query_size)``, of the layer's dtype.
            memory: from :meth:`memory`, of the same batch ``B``.

        Returns:
            ``(context, weights)``: ``context (Tq, B, key_size)``, ``weights (Tq, B, Tk)``
            (each row sums to 1 over the valid steps, 0 over the padding).

        Raises:
            TypeError: ``query`` not of the layer's dtype.
            ValueError: ``query`` not ``(Tq, B, query_size)``, or another batch than the
                memory's.
        """
        q = self._array("query", query, self.query_size)
        if q.shape[1] != memory.batch_size:
            raise ValueError(
                f"query: its batch ({q.shape[1]}) is not the memory's ({memory.batch_size})"
            )
        qs = q
        if self.score == "additive":
            Tq, B = q.shape[:2]
            qs = F.linear_forward(_rows(q), self._params["query_weight"], None).reshape(Tq, B, -1)
        v = self._params.get("v")
        context, weights = F.attention_forward(qs, memory.keys, memory.values, memory.lengths, v)
        self._saved = (q, memory, qs, weights) if self.training else None
        return context, weights

    def forward(
        self, query: ArrayLike, values: ArrayLike, lengths: ArrayLike | None = None
    ) -> tuple[Array, Array]:
        """``attend(query, memory(values, lengths))`` (:meth:`memory`, :meth:`attend`: the
        arguments, results and errors).

        Returns:
            ``(context (Tq, B, key_size), weights (Tq, B, Tk))``.
        """
        return self.attend(query, self.memory(values, lengths))

    __call__ = forward

    # ---- backward ---------------------------------------------------------------------------

    def backward(self, dcontext: ArrayLike) -> tuple[Array, Array]:
        """Backpropagation for the last training-mode :meth:`attend` (one backward per
        forward); fills :attr:`~fastrnn.module.Module.grads` (the score's parameters).

        Args:
            dcontext: ``dL/dcontext``, ``(Tq, B, key_size)``. (The weights are an output for
                inspection; no gradient flows from them.)

        Returns:
            ``(dquery (Tq, B, query_size), dvalues (Tk, B, key_size))``; ``dvalues`` holds both
            of the memory's roles (the values and, through the projection, the keys).

        Raises:
            RuntimeError: no forward to go back through.
            ValueError: ``dcontext`` of another shape.
        """
        if self._saved is None:
            raise RuntimeError("backward: no saved forward (call attend in training mode)")
        q, mem, qs, weights = self._saved
        dc = np.asarray(dcontext)
        want = (q.shape[0], q.shape[1], self.key_size)
        if dc.shape != want:
            raise ValueError(f"dcontext: expected shape {want}, got {dc.shape}")
        dc = np.ascontiguousarray(dc, dtype=self.dtype)
        v = self._params.get("v")
        dqs, dkeys, dvalues, dv = F.attention_backward(
            qs, mem.keys, mem.values, mem.lengths, weights, dc, v
        )
        self._saved = None
        grads: dict[str, Array] = {}
        dq = dqs
        if self.score == "general":
            dk, grads["weight"], _ = F.linear_backward(
                _rows(mem.values), self._params["weight"], _rows(dkeys), False
            )
            dvalues = dvalues + dk.reshape(dvalues.shape)
        elif self.score == "additive":
            dqr, grads["query_weight"], _ = F.linear_backward(
                _rows(q), self._params["query_weight"], _rows(dqs), False
            )
            dk, grads["key_weight"], _ = F.linear_backward(
                _rows(mem.values), self._params["key_weight"], _rows(dkeys), False
            )
            assert dv is not None  # the additive score has v
            grads["v"] = dv
            dq = dqr.reshape(q.shape)
            dvalues = dvalues + dk.reshape(dvalues.shape)
        else:
            dvalues = dvalues + dkeys
        self.grads = grads
        return dq, dvalues

    def __repr__(self) -> str:
        extra = f", attn_size={self.attn_size}" if self.score == "additive" else ""
        return (
            f"Attention({self.score!r}, query_size={self.query_size}, "
            f"key_size={self.key_size}{extra})"
        )
