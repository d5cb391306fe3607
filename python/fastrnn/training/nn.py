"""The layers around a recurrent stack: :class:`~fastrnn.training.nn.Linear` (the output layer)
and :class:`~fastrnn.training.nn.Embedding`.

Both follow the conventions of :class:`fastrnn.LSTM <fastrnn.layers.LSTM>`: PyTorch's constructor
arguments, parameter names, shapes and default initialisation, a forward that saves what the
backward needs (in training mode), and an explicit ``backward`` that returns the input gradient
and fills :attr:`~fastrnn.module.Module.grads` (the :class:`~fastrnn.module.Module`
conventions). Their products and the embedding gradient (a scatter-add) run in the compiled core.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .. import functional as F
from .._args import check_int, float_dtype
from ..module import Module

__all__ = ["Embedding", "Linear"]

Array = NDArray[Any]


def _saved(a: Array | None) -> Array:
    """What the last forward saved for backward; none is a RuntimeError."""
    if a is None:
        raise RuntimeError("backward: no saved forward (call the layer in training mode)")
    return a


def _output_grad(dy: ArrayLike, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    """The gradient w.r.t. an output of ``shape`` as a C-contiguous 2-D array (rows, features)."""
    dya = np.asarray(dy)
    if dya.shape != shape:
        raise ValueError(f"dy: expected shape {shape}, got {dya.shape}")
    return np.ascontiguousarray(dya.reshape(-1, shape[-1]), dtype=dtype)


class Linear(Module):
    """``y = x W^T + b`` over the last axis of ``x`` (any leading shape), as ``torch.nn.Linear``.

    Parameters ``weight (out_features, in_features)`` and ``bias (out_features,)``, both
    initialised as PyTorch does (:meth:`reset_parameters`); the state_dict round trip, modes and
    :attr:`~fastrnn.module.Module.grads` are :class:`~fastrnn.module.Module`'s.

    Args:
        in_features: the size of the last axis of ``x`` (>= 1).
        out_features: the size of the last axis of ``y`` (>= 1).
        bias: whether there is a bias.
        dtype: float32 or float64, of the parameters and the computation.
        seed: an int, a ``numpy.random.Generator`` or None (fresh entropy), for the
            initialisation.

    Raises:
        TypeError: a size not an int, or ``dtype`` not float32 or float64.
        ValueError: a size < 1.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self._has_bias = bool(bias)
        self.dtype = float_dtype("dtype", dtype)
        self.training = True
        self.grads = {}
        self._x: Array | None = None
        self._x_shape: tuple[int, ...] = ()
        self.reset_parameters(seed)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``weight (out_features, in_features)`` and ``bias (out_features,)``."""
        shapes = {"weight": (self.out_features, self.in_features)}
        return shapes | ({"bias": (self.out_features,)} if self._has_bias else {})

    @property
    def bias(self) -> Array | None:
        """The bias array, or None (as torch.nn.Linear.bias)."""
        return self._params.get("bias")

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """PyTorch's default: weight and bias uniform in ``(-1/sqrt(in_features),
        1/sqrt(in_features))``, drawn from ``seed`` (as the constructor's)."""
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        self._params = {"weight": rng.uniform(-k, k, shape).astype(self.dtype)}
        if self._has_bias:
            self._params["bias"] = rng.uniform(-k, k, self.out_features).astype(self.dtype)

    def forward(self, x: ArrayLike) -> Array:
        """The output ``y = x W^T + b``; in training mode ``x`` is kept for :meth:`backward`.

        Args:
            x: ``(..., in_features)``, any numeric dtype (computed in the layer's dtype).

        Returns:
            ``y`` ``(..., out_features)``, in the layer's dtype.

        Raises:
            ValueError: the last axis of ``x`` is not ``in_features`` (or ``x`` is 0-d).
            TypeError: ``x`` is not numeric.
        """
        xa = np.asarray(x)
        if xa.ndim < 1 or xa.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected shape (..., {self.in_features}), got {getattr(xa, 'shape', None)}"
            )
        if xa.dtype.kind not in "fiu":
            raise TypeError(f"x: expected a numeric array, got dtype {xa.dtype}")
        xa = np.ascontiguousarray(xa, dtype=self.dtype)
        x2 = xa.reshape(-1, self.in_features)
        y = F.linear_forward(x2, self._params["weight"], self._params.get("bias"))
        if self.training:  # a private copy if it is the caller's buffer
            self._x = x2.copy() if np.may_share_memory(x2, np.asarray(x)) else x2
            self._x_shape = xa.shape
        else:
            self._x = None
        out: Array = y.reshape(*xa.shape[:-1], self.out_features)
        return out

    __call__ = forward

    def backward(self, dy: ArrayLike) -> Array:
        """The gradient w.r.t. ``x`` of the last training-mode :meth:`forward` (one backward
        per forward); fills :attr:`~fastrnn.module.Module.grads` (``weight``, and ``bias`` if
        there is one).

        Args:
            dy: the gradient w.r.t. ``y``, ``(..., out_features)``, ``y``'s shape.

        Returns:
            ``dx``, ``x``'s shape, in the layer's dtype.

        Raises:
            RuntimeError: no forward to go back through (none in training mode since the last
                backward).
            ValueError: ``dy`` not of ``y``'s shape.
        """
        x = _saved(self._x)
        d2 = _output_grad(dy, (*self._x_shape[:-1], self.out_features), self.dtype)
        dx, dw, db = F.linear_backward(x, self._params["weight"], d2, self._has_bias)
        self.grads = {"weight": dw}
        if db is not None:
            self.grads["bias"] = db
        self._x = None
        out: Array = dx.reshape(self._x_shape)
        return out

    def __repr__(self) -> str:
        return (
            f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self._has_bias})"
        )


class Embedding(Module):
    """Token ids to vectors, as ``torch.nn.Embedding``: row ``i`` of ``weight
    (num_embeddings, embedding_dim)`` is the vector of id ``i``.

    ``weight`` is initialised N(0, 1) (:meth:`reset_parameters`); the state_dict round trip,
    modes and :attr:`~fastrnn.module.Module.grads` are :class:`~fastrnn.module.Module`'s.

    Args:
        num_embeddings: the number of ids (>= 1).
        embedding_dim: the size of a vector (>= 1).
        padding_idx: an id whose row is zero and gets no gradient (negative: counted from the
            end, as PyTorch), or None.
        dtype: float32 or float64.
        seed: an int, a ``numpy.random.Generator`` or None (fresh entropy), for the
            initialisation.

    Raises:
        TypeError: a size or ``padding_idx`` not an int, or ``dtype`` not float32 or float64.
        ValueError: a size < 1, or ``padding_idx`` outside ``[-num_embeddings,
            num_embeddings)``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.num_embeddings = check_int("num_embeddings", num_embeddings, 1)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(f"padding_idx: expected an int or None, got {padding_idx!r}")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(
                    f"padding_idx: must be within num_embeddings ({self.num_embeddings}), "
                    f"got {padding_idx}"
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.dtype = float_dtype("dtype", dtype)
        self.training = True
        self.grads = {}
        self._ids: Array | None = None
        self.reset_parameters(seed)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``weight (num_embeddings, embedding_dim)``."""
        return {"weight": (self.num_embeddings, self.embedding_dim)}

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """PyTorch's default: N(0, 1) drawn from ``seed`` (as the constructor's), the
        ``padding_idx`` row zero."""
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0
        self._params = {"weight": w}

    def _check_ids(self, ids: ArrayLike) -> Array:
        a = np.asarray(ids)
        if a.dtype.kind not in "iu":
            raise TypeError(f"ids: expected an integer array, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= self.num_embeddings):
            raise ValueError(
                f"ids: values must be in [0, {self.num_embeddings}), got [{a.min()}, {a.max()}]"
            )
        return a.astype(np.int64, copy=False)

    def forward(self, ids: ArrayLike) -> Array:
        """The rows of ``weight`` for ``ids``; in training mode the ids are kept for
        :meth:`backward`.

        Args:
            ids: integer ids of any shape, each in ``[0, num_embeddings)``.

        Returns:
            ``ids.shape + (embedding_dim,)``, in the layer's dtype.

        Raises:
            TypeError: ``ids`` are not integers.
            ValueError: an id outside ``[0, num_embeddings)``.
        """
        a = self._check_ids(ids)
        self._ids = a.copy() if self.training else None
        return self._params["weight"][a]

    __call__ = forward

    def backward(self, dy: ArrayLike) -> None:
        """Fills :attr:`~fastrnn.module.Module.grads` ``{"weight": ...}`` for the last training-mode
        :meth:`forward` (one backward per forward): the rows of ``dy`` summed into the rows of
        their ids, the ``padding_idx`` row zero. Ids have no gradient, so nothing is returned.

        Args:
            dy: the gradient w.r.t. the output, ``ids.shape + (embedding_dim,)``.

        Raises:
            RuntimeError: no forward to go back through.
            ValueError: ``dy`` not of the output's shape.
        """
        ids = _saved(self._ids)
        d2 = _output_grad(dy, (*ids.shape, self.embedding_dim), self.dtype)
        pad = -1 if self.padding_idx is None else self.padding_idx
        self.grads = {
            "weight": F.embedding_backward(
                np.ascontiguousarray(ids.reshape(-1)), d2, self.num_embeddings, pad
            )
        }
        self._ids = None

    def __repr__(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad})"
