"""Recurrent layers with PyTorch's constructor arguments, weight names and call conventions.

``fastrnn.RNN``, ``fastrnn.LSTM`` and ``fastrnn.GRU`` take the arguments of ``torch.nn.RNN``,
``torch.nn.LSTM`` and ``torch.nn.GRU`` in the same order, with the same meanings and defaults, hold
their parameters under the same names and shapes (``weight_ih_l0 (G*H, I)``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0``), and return what PyTorch returns: ``(y, h_n)``, or
``(y, (h_n, c_n))`` for LSTM, with ``h_n`` of shape ``(1, B, H)``. Unlike PyTorch there is no
autograd: :meth:`backward` takes the gradient of the loss w.r.t. the outputs and returns the one
w.r.t. the inputs, and fills :attr:`grads`.

This version implements one unidirectional layer (``num_layers=1``, ``bidirectional=False``,
``proj_size=0``); other values of those arguments raise ``NotImplementedError``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import functional as F

__all__ = ["GRU", "LSTM", "RNN"]

Array = NDArray[Any]
State = Array | tuple[Array, Array]
Params = tuple[Array, Array, Array | None, Array | None]


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name}: must be greater than zero, got {v}")
    return int(v)


def _layer_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def _to_numpy(v: Any) -> Any:
    """A torch tensor (detached, on CPU) as a NumPy array, without importing torch."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        return v.detach().cpu().numpy()
    return v


class _Saved:
    """What a training-mode forward keeps for its one backward."""

    __slots__ = ("batch_shape", "params", "workspace", "x")

    def __init__(
        self, x: Array, params: Params, workspace: Array, batch_shape: tuple[int, ...]
    ) -> None:
        self.x = x
        self.params = params
        self.workspace = workspace
        self.batch_shape = batch_shape  # shape of y as the caller saw it


class _RNNBase:
    """Common machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    _num_states = 1  # 2 for LSTM
    dtype: np.dtype[Any]
    training: bool
    grads: dict[str, Array]

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self._cell = cell
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, numbers.Real)
            or not 0 <= dropout <= 1
        ):
            raise ValueError(f"dropout: expected a number in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size: expected an int, got {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError(f"proj_size: must be >= 0, got {proj_size}")
        self.proj_size = int(proj_size)
        if self.num_layers != 1 or self.bidirectional or self.proj_size != 0:
            raise NotImplementedError(
                "fastrnn currently implements one unidirectional layer: num_layers=1, "
                "bidirectional=False, proj_size=0"
            )
        if self.dropout > 0:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={self.dropout} and "
                f"num_layers={self.num_layers}",
                UserWarning,
                stacklevel=3,
            )
        self.dtype = _layer_dtype(dtype)
        self.training = True
        self.grads: dict[str, Array] = {}
        self._saved: _Saved | None = None
        self._params: dict[str, Array] = {}
        self.reset_parameters(seed)

    # ---- parameters ---------------------------------------------------------------------------

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        G, H, I = F.num_gates(self._cell), self.hidden_size, self.input_size
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih_l0": (G * H, I),
            "weight_hh_l0": (G * H, H),
        }
        if self.bias:
            shapes.update({"bias_ih_l0": (G * H,), "bias_hh_l0": (G * H,)})
        return shapes

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """PyTorch's default initialisation: every parameter uniform(-1/sqrt(H), 1/sqrt(H))."""
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        self._params = {
            name: rng.uniform(-k, k, shape).astype(self.dtype)
            for name, shape in self._shapes().items()
        }

    def __getattr__(self, name: str) -> Array:
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]  # type: ignore[no-any-return]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def named_parameters(self) -> Iterator[tuple[str, Array]]:
        """The live parameter arrays (modifying them in place modifies the layer)."""
        yield from self._params.items()

    def state_dict(self) -> dict[str, Array]:
        """Copies of the parameters under PyTorch's names (``weight_ih_l0``, ...)."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load parameters saved by :meth:`state_dict` or by the matching ``torch.nn`` module.

        Values may be NumPy arrays or torch tensors; they are copied and converted to the layer's
        dtype. Missing, unexpected or mis-shaped entries, non-float or non-finite values raise.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        shapes = self._shapes()
        missing = [k for k in shapes if k not in state_dict]
        unexpected = [k for k in state_dict if k not in shapes]
        if missing or unexpected:
            raise ValueError(
                f"state_dict: missing keys {missing}, unexpected keys {unexpected} "
                f"(expected exactly {list(shapes)})"
            )
        new = {}
        for name, shape in shapes.items():
            v = np.asarray(_to_numpy(state_dict[name]))
            if v.dtype not in (np.float32, np.float64):
                raise TypeError(f"state_dict[{name!r}]: expected float32 or float64, got {v.dtype}")
            if v.shape != shape:
                raise ValueError(f"state_dict[{name!r}]: expected shape {shape}, got {v.shape}")
            if not np.isfinite(v).all():
                raise ValueError(f"state_dict[{name!r}]: contains NaN or infinity")
            new[name] = np.array(v, dtype=self.dtype, order="C", copy=True)
        # new arrays, not in-place: a pending backward keeps the weights its forward used
        self._params = new

    # ---- modes --------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> _RNNBase:
        """Training mode (the default): forward saves what backward needs."""
        self.training = bool(mode)
        return self

    def eval(self) -> _RNNBase:
        """Inference mode: forward saves nothing (and backward is unavailable)."""
        return self.train(False)

    # ---- forward / backward -------------------------------------------------------------------

    def _check_input(self, x: ArrayLike) -> tuple[Array, bool]:
        """x as a time-major C-contiguous array of the layer's dtype, and whether it was batched."""
        xa = np.asarray(x)
        if xa.dtype not in (np.float32, np.float64):
            raise TypeError(f"x: expected a float32 or float64 array, got dtype {xa.dtype}")
        if xa.ndim not in (2, 3):
            raise ValueError(
                f"x: expected a 3-D (batched) or 2-D (unbatched) array, got shape {xa.shape}"
            )
        if xa.shape[-1] != self.input_size:
            raise ValueError(
                f"x: expected input size {self.input_size} on the last axis, got shape {xa.shape}"
            )
        batched = xa.ndim == 3
        if not batched:
            xa = xa[:, None, :]
        elif self.batch_first:
            xa = xa.swapaxes(0, 1)
        return np.ascontiguousarray(xa, dtype=self.dtype), batched

    def _check_state(
        self, name: str, v: Any, B: int, batched: bool, *, allow_none: bool = True
    ) -> Array | None:
        """A (1, B, H) state (or (1, H) unbatched) as a (B, H) array of the layer's dtype."""
        if v is None:
            return None
        a = np.asarray(v)
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {a.dtype}")
        expected = (1, B, self.hidden_size) if batched else (1, self.hidden_size)
        if a.shape != expected:
            raise ValueError(f"{name}: expected shape {expected}, got {a.shape}")
        return np.ascontiguousarray(a.reshape(B, self.hidden_size), dtype=self.dtype)

    def _split_state(self, name: str, v: Any) -> tuple[Any, Any]:
        if self._num_states == 1:
            if isinstance(v, (tuple, list)):
                raise TypeError(
                    f"{name}: expected one array for {type(self).__name__}, got a tuple"
                )
            return v, None
        if v is None:
            return None, None
        if not isinstance(v, (tuple, list)) or len(v) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) for LSTM, got {type(v).__name__}")
        return v[0], v[1]

    def _out_state(self, s: Array | None, batched: bool) -> Array:
        assert s is not None
        return s[None] if batched else s

    def forward(self, x: ArrayLike, hx: Any = None) -> tuple[Array, State]:
        """Run the layer over a sequence.

        Args:
            x: ``(T, B, I)``, or ``(B, T, I)`` with ``batch_first``, or ``(T, I)`` unbatched.
                float32 or float64 (converted to the layer's dtype).
            hx: initial state, ``(1, B, H)`` (``(1, H)`` unbatched); for LSTM a tuple
                ``(h0, c0)``. None (or a None part) means zeros.

        Returns:
            ``(y, h_n)`` or, for LSTM, ``(y, (h_n, c_n))``; ``y`` is ``(T, B, H)`` (``(B, T, H)``
            with ``batch_first``), ``h_n`` and ``c_n`` are ``(1, B, H)``.
        """
        xt, batched = self._check_input(x)
        B = xt.shape[1]
        h0, c0 = self._split_state("hx", hx)
        h0a = self._check_state("hx" if self._num_states == 1 else "hx[0]", h0, B, batched)
        c0a = self._check_state("hx[1]", c0, B, batched)
        p = self._params
        params: Params = (
            p["weight_ih_l0"],
            p["weight_hh_l0"],
            p.get("bias_ih_l0"),
            p.get("bias_hh_l0"),
        )
        res = F.forward(self._cell, xt, *params, h0a, c0a, training=self.training)
        y = res.y
        if not batched:
            y = y[:, 0, :]
        elif self.batch_first:
            y = y.swapaxes(0, 1)
        if self.training:
            assert res.workspace is not None
            # keep x for the weight gradients; a private copy if it is the caller's own buffer,
            # so that modifying x after forward cannot change the gradients
            x_saved = xt.copy() if np.may_share_memory(xt, np.asarray(x)) else xt
            self._saved = _Saved(x_saved, params, res.workspace, y.shape)
        else:
            self._saved = None
        h_n = self._out_state(res.h_n, batched)
        if self._num_states == 2:
            return y, (h_n, self._out_state(res.c_n, batched))
        return y, h_n

    __call__ = forward

    def backward(self, dy: ArrayLike | None, dstate: Any = None) -> tuple[Array, State]:
        """Backpropagation through time for the last (training-mode) forward; fills :attr:`grads`.

        Args:
            dy: gradient of the loss w.r.t. ``y``, same shape as ``y``; None for zeros.
            dstate: gradient w.r.t. the final state, shaped like it (``(1, B, H)``; a tuple
                ``(dh_n, dc_n)`` for LSTM); None, or a None part, for zeros.

        Returns:
            ``(dx, dh0)`` or, for LSTM, ``(dx, (dh0, dc0))``, shaped like ``x`` and ``hx``.
            :attr:`grads` maps every parameter name to its gradient (replaced, not accumulated).

        Raises:
            RuntimeError: if there is no forward to go back through: none yet, the last one ran in
                eval mode, or its backward was already done.
        """
        saved = self._saved
        if saved is None:
            raise RuntimeError(
                "backward: no saved forward. Call the layer in training mode first; each forward "
                "supports exactly one backward."
            )
        batched = len(saved.batch_shape) == 3
        B = saved.x.shape[1]
        dya: Array | None = None
        if dy is not None:
            dya = np.asarray(dy)
            if dya.dtype not in (np.float32, np.float64):
                raise TypeError(f"dy: expected a float32 or float64 array, got dtype {dya.dtype}")
            if dya.shape != saved.batch_shape:
                raise ValueError(
                    f"dy: expected the shape of the output y, {saved.batch_shape}, got {dya.shape}"
                )
            if not batched:
                dya = dya[:, None, :]
            elif self.batch_first:
                dya = dya.swapaxes(0, 1)
            dya = np.ascontiguousarray(dya, dtype=self.dtype)
        dh, dc = self._split_state("dstate", dstate)
        dha = self._check_state("dstate" if self._num_states == 1 else "dstate[0]", dh, B, batched)
        dca = self._check_state("dstate[1]", dc, B, batched)

        self._saved = None  # one backward per forward
        r = F.backward(self._cell, saved.x, *saved.params, saved.workspace, dya, dha, dca)
        self.grads = {"weight_ih_l0": r.dweight_ih, "weight_hh_l0": r.dweight_hh}
        if self.bias:
            assert r.dbias_ih is not None and r.dbias_hh is not None
            self.grads.update({"bias_ih_l0": r.dbias_ih, "bias_hh_l0": r.dbias_hh})
        dx = r.dx
        if not batched:
            dx = dx[:, 0, :]
        elif self.batch_first:
            dx = dx.swapaxes(0, 1)
        dh0 = self._out_state(r.dh0, batched)
        if self._num_states == 2:
            return dx, (dh0, self._out_state(r.dc0, batched))
        return dx, dh0

    # ---- misc ---------------------------------------------------------------------------------

    def _extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name}"
        return s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"


class RNN(_RNNBase):
    """Elman RNN, ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with ``act`` tanh or relu.

    Arguments as ``torch.nn.RNN``: ``input_size, hidden_size, num_layers=1, nonlinearity="tanh",
    bias=True, batch_first=False, dropout=0.0, bidirectional=False``; plus keyword-only
    ``dtype`` (float32 or float64) and ``seed`` for the initial weights.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"nonlinearity: unknown nonlinearity {nonlinearity!r}; select 'tanh' or 'relu'"
            )
        self.nonlinearity = nonlinearity
        super().__init__(
            f"rnn_{nonlinearity}",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            dtype=dtype,
            seed=seed,
        )

    def _extra_repr(self) -> str:
        s = super()._extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(_RNNBase):
    """Long short-term memory layer, gates ``i, f, g, o`` (PyTorch's order).

    Arguments as ``torch.nn.LSTM``: ``input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0``; plus keyword-only
    ``dtype`` and ``seed``. States are tuples ``(h, c)``.
    """

    _num_states = 2

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(
            "lstm",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            dtype=dtype,
            seed=seed,
        )


class GRU(_RNNBase):
    """Gated recurrent unit, gates ``r, z, n`` (PyTorch's order), ``h' = (1 - z)*n + z*h``.

    Arguments as ``torch.nn.GRU``: ``input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False``; plus keyword-only ``dtype``, ``seed``
    and ``reset_after``: True (default; PyTorch, cuDNN and Keras' default) applies the reset gate
    after the recurrent product, ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``; False is the
    original formula of Cho et al. and the course notes, ``n = tanh(W_in x + b_in + W_hn (r*h) +
    b_hn)``. The course notes' update gate is our ``1 - z``: see
    :func:`fastrnn.reference.gru_notes_to_torch`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        reset_after: bool = True,
        dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.reset_after = bool(reset_after)
        super().__init__(
            "gru" if self.reset_after else "gru_reset_before",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            dtype=dtype,
            seed=seed,
        )

    def _extra_repr(self) -> str:
        s = super()._extra_repr()
        return s + ("" if self.reset_after else ", reset_after=False")
