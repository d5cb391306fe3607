"""The layers around a recurrent stack: :class:`Linear` (the output layer) and :class:`Embedding`.

Both follow the conventions of :class:`fastrnn.LSTM`: PyTorch's constructor arguments, parameter
names, shapes and default initialisation, a forward that saves what the backward needs (in
training mode), and an explicit :meth:`backward` that returns the input gradient and fills
:attr:`grads`. The products run on NumPy's BLAS; the embedding gradient (a scatter-add) runs in
the compiled core.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .. import _core

__all__ = ["Embedding", "Linear"]

Array = NDArray[Any]


def _count(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return int(v)


def _float_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


class _Module:
    """Parameters by name, state_dict round trip, train/eval."""

    dtype: np.dtype[Any]
    training: bool
    grads: dict[str, Array]
    _params: dict[str, Array]

    def named_parameters(self) -> Iterator[tuple[str, Array]]:
        """The live parameter arrays (optimizers update them in place)."""
        yield from self._params.items()

    def state_dict(self) -> dict[str, Array]:
        """Copies of the parameters under PyTorch's names."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load parameters (NumPy arrays or torch tensors) of the same names and shapes."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        if set(state_dict) != set(self._params):
            raise ValueError(
                f"state_dict: expected exactly the keys {sorted(self._params)}, "
                f"got {sorted(state_dict)}"
            )
        new = {}
        for k, old in self._params.items():
            v = state_dict[k]
            v = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            if v.shape != old.shape:
                raise ValueError(f"state_dict[{k!r}]: expected shape {old.shape}, got {v.shape}")
            if v.dtype.kind != "f" or not np.isfinite(v).all():
                raise ValueError(f"state_dict[{k!r}]: expected finite floating-point values")
            new[k] = np.array(v, dtype=self.dtype, order="C", copy=True)
        self._params = new

    def __getattr__(self, name: str) -> Array:
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]  # type: ignore[no-any-return]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def train(self, mode: bool = True) -> _Module:
        """Training mode: forward saves its input for backward."""
        self.training = bool(mode)
        return self

    def eval(self) -> _Module:
        """Inference mode: nothing is saved."""
        return self.train(False)


class Linear(_Module):
    """``y = x W^T + b`` over the last axis of ``x`` (any leading shape), as ``torch.nn.Linear``.

    ``weight (out_features, in_features)``, ``bias (out_features,)``; both initialised as PyTorch
    does, uniform in ``(-1/sqrt(in_features), 1/sqrt(in_features))``.
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
        self.in_features = _count("in_features", in_features)
        self.out_features = _count("out_features", out_features)
        self._has_bias = bool(bias)
        self.dtype = _float_dtype(dtype)
        self.training = True
        self.grads = {}
        self._x: Array | None = None
        self._x_shape: tuple[int, ...] = ()
        self.reset_parameters(seed)

    @property
    def bias(self) -> Array | None:
        """The bias array, or None (as torch.nn.Linear.bias)."""
        return self._params.get("bias")

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """PyTorch's default: weight and bias uniform in (-1/sqrt(in), 1/sqrt(in))."""
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        self._params = {"weight": rng.uniform(-k, k, shape).astype(self.dtype)}
        if self._has_bias:
            self._params["bias"] = rng.uniform(-k, k, self.out_features).astype(self.dtype)

    def forward(self, x: ArrayLike) -> Array:
        """``x (..., in_features)`` -> ``(..., out_features)``."""
        xa = np.asarray(x)
        if xa.ndim < 1 or xa.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected shape (..., {self.in_features}), got {getattr(xa, 'shape', None)}"
            )
        if xa.dtype.kind not in "fiu":
            raise TypeError(f"x: expected a numeric array, got dtype {xa.dtype}")
        xa = np.ascontiguousarray(xa, dtype=self.dtype)
        x2 = xa.reshape(-1, self.in_features)
        y = _core.linear_forward(x2, self._params["weight"], self._params.get("bias"))
        if self.training:  # a private copy if it is the caller's buffer
            self._x = x2.copy() if np.may_share_memory(x2, np.asarray(x)) else x2
            self._x_shape = xa.shape
        else:
            self._x = None
        out: Array = y.reshape(*xa.shape[:-1], self.out_features)
        return out

    __call__ = forward

    def backward(self, dy: ArrayLike) -> Array:
        """Gradient w.r.t. ``x`` from the one w.r.t. ``y``; fills :attr:`grads`."""
        x = self._x
        if x is None:
            raise RuntimeError("backward: no saved forward (call the layer in training mode)")
        dya = np.asarray(dy)
        want = (*self._x_shape[:-1], self.out_features)
        if dya.shape != want:
            raise ValueError(f"dy: expected shape {want}, got {dya.shape}")
        d2 = np.ascontiguousarray(dya.reshape(-1, self.out_features), dtype=self.dtype)
        dx, dw, db = _core.linear_backward(x, self._params["weight"], d2, self._has_bias)
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


class Embedding(_Module):
    """Token ids to vectors, as ``torch.nn.Embedding``: ``weight (num_embeddings, dim)``,
    initialised N(0, 1); the ``padding_idx`` row is zero and gets no gradient."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.num_embeddings = _count("num_embeddings", num_embeddings)
        self.embedding_dim = _count("embedding_dim", embedding_dim)
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
        self.dtype = _float_dtype(dtype)
        self.training = True
        self.grads = {}
        self._ids: Array | None = None
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """PyTorch's default: N(0, 1), the padding row zero."""
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
        """``ids`` (any shape) -> ``ids.shape + (embedding_dim,)``."""
        a = self._check_ids(ids)
        self._ids = a.copy() if self.training else None
        return self._params["weight"][a]

    __call__ = forward

    def backward(self, dy: ArrayLike) -> None:
        """Fills :attr:`grads` ``{"weight": ...}`` from the gradient w.r.t. the output."""
        ids = self._ids
        if ids is None:
            raise RuntimeError("backward: no saved forward (call the layer in training mode)")
        dya = np.asarray(dy)
        want = (*ids.shape, self.embedding_dim)
        if dya.shape != want:
            raise ValueError(f"dy: expected shape {want}, got {dya.shape}")
        d2 = np.ascontiguousarray(dya.reshape(-1, self.embedding_dim), dtype=self.dtype)
        pad = -1 if self.padding_idx is None else self.padding_idx
        self.grads = {
            "weight": _core.embedding_backward(
                np.ascontiguousarray(ids.reshape(-1)), d2, self.num_embeddings, pad
            )
        }
        self._ids = None

    def __repr__(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad})"
