"""Recurrent layers with PyTorch's constructor arguments, weight names and call conventions.

``fastrnn.RNN``, ``fastrnn.LSTM`` and ``fastrnn.GRU`` take the arguments of ``torch.nn.RNN``,
``torch.nn.LSTM`` and ``torch.nn.GRU`` in the same order, with the same meanings and defaults, hold
their parameters under the same names and shapes (``weight_ih_l0 (G*H, I)``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0``), and return what PyTorch returns: ``(y, h_n)``, or
``(y, (h_n, c_n))`` for LSTM, with ``h_n`` of shape ``(1, B, H)``. Unlike PyTorch there is no
autograd: :meth:`backward` takes the gradient of the loss w.r.t. the outputs and returns the one
w.r.t. the inputs, and fills :attr:`grads`.

Every option of PyTorch's modules is supported: ``num_layers``, ``bidirectional``, ``batch_first``,
``bias``, ``dropout`` (between layers, in training mode, from the layer's seed) and ``proj_size``
(LSTM), plus variable-length batches through ``layer(x, hx, lengths=...)``. All layers and
directions run in one call into the compiled core, forward and backward.
"""

from __future__ import annotations

import numbers
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import functional as F

__all__ = ["GRU", "LSTM", "RNN"]

Array = NDArray[Any]
State = Array | tuple[Array, Array]
Params = tuple[Array, Array, Array | None, Array | None, Array | None]


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

    __slots__ = ("batch_shape", "lengths", "params", "thread", "workspace", "x")

    def __init__(
        self,
        x: Array,
        params: list[Params],
        workspace: Array,
        batch_shape: tuple[int, ...],
        lengths: Array | None,
    ) -> None:
        self.x = x
        self.params = params
        self.workspace = workspace
        self.batch_shape = batch_shape  # shape of y as the caller saw it
        self.lengths = lengths
        self.thread = threading.get_ident()  # the thread whose backward this is


class _RNNBase:
    """Common machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    _num_states = 1  # 2 for LSTM
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int
    dtype: np.dtype[Any]
    training: bool
    grads: dict[str, Array]
    _dropout_rng: np.random.Generator

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
        if proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size: must be smaller than hidden_size ({self.hidden_size}), got {proj_size}"
            )
        self.proj_size = int(proj_size)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={self.dropout} and "
                f"num_layers={self.num_layers}",
                UserWarning,
                stacklevel=3,
            )
        self.dtype = _layer_dtype(dtype)
        self.training = True
        self.grads = {}
        self._saved: _Saved | None = None
        self._params: dict[str, Array] = {}
        self._param_names: list[tuple[str, ...]] = [  # per layer and direction, for _param_list
            tuple(f"{kind}_l{layer}{'_reverse' if d else ''}" for kind in F.LayerParams._fields)
            for layer in range(self.num_layers)
            for d in range(self._D)
        ]
        # one seed makes both the initial weights and the dropout masks reproducible
        root = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        init_rng, self._dropout_rng = root.spawn(2)
        self.reset_parameters(init_rng)

    # ---- parameters ---------------------------------------------------------------------------

    @property
    def _D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _Hs(self) -> int:
        return self.proj_size or self.hidden_size

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """PyTorch's parameters, in its order: per layer, per direction, w_ih, w_hh, b_ih, b_hh,
        w_hr."""
        G, H, Hs, P = F.num_gates(self._cell), self.hidden_size, self._Hs, self.proj_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            In = self.input_size if layer == 0 else self._D * Hs
            for d in range(self._D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes[f"weight_ih{sfx}"] = (G * H, In)
                shapes[f"weight_hh{sfx}"] = (G * H, Hs)
                if self.bias:
                    shapes[f"bias_ih{sfx}"] = (G * H,)
                    shapes[f"bias_hh{sfx}"] = (G * H,)
                if P:
                    shapes[f"weight_hr{sfx}"] = (P, H)
        return shapes

    def _param_list(self) -> list[Params]:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) per layer and direction."""
        p = self._params
        return [
            (p[w_ih], p[w_hh], p.get(b_ih), p.get(b_hh), p.get(w_hr))
            for w_ih, w_hh, b_ih, b_hh, w_hr in self._param_names
        ]

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
        """Training mode (the default): forward saves what backward needs, dropout is active."""
        self.training = bool(mode)
        return self

    def eval(self) -> _RNNBase:
        """Inference mode: forward saves nothing (backward is unavailable), no dropout."""
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

    def _check_state(self, name: str, v: Any, B: int, batched: bool, size: int) -> Array | None:
        """A (L*D, B, size) state (or (L*D, size) unbatched) as an array of the layer's dtype."""
        if v is None:
            return None
        a = np.asarray(v)
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {a.dtype}")
        LD = self.num_layers * self._D
        expected = (LD, B, size) if batched else (LD, size)
        if a.shape != expected:
            raise ValueError(f"{name}: expected shape {expected}, got {a.shape}")
        return np.ascontiguousarray(a.reshape(LD, B, size), dtype=self.dtype)

    def _states(self, name: str, v: Any, B: int, batched: bool) -> tuple[Array | None, ...]:
        """hx (or dstate) as (h, c) arrays, c None except LSTM."""
        if self._num_states == 1:
            if isinstance(v, (tuple, list)):
                raise TypeError(
                    f"{name}: expected one array for {type(self).__name__}, got a tuple"
                )
            return self._check_state(name, v, B, batched, self._Hs), None
        if v is None:
            return None, None
        if not isinstance(v, (tuple, list)) or len(v) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) for LSTM, got {type(v).__name__}")
        return (
            self._check_state(f"{name}[0]", v[0], B, batched, self._Hs),
            self._check_state(f"{name}[1]", v[1], B, batched, self.hidden_size),
        )

    def _out_states(self, h: Array, c: Array | None, batched: bool) -> State:
        if not batched:
            h = h[:, 0]
            c = None if c is None else c[:, 0]
        if self._num_states == 2:
            assert c is not None
            return h, c
        return h

    def _to_caller(self, a: Array, batched: bool) -> Array:
        """A time-major (T, B, F) array in the caller's layout."""
        if not batched:
            return a[:, 0, :]
        return a.swapaxes(0, 1) if self.batch_first else a

    def _dropout_masks(self, T: int, B: int) -> Array | None:
        if not (self.training and self.dropout > 0 and self.num_layers > 1):
            return None
        shape = (self.num_layers - 1, T, B, self._D * self._Hs)
        if self.dropout >= 1:
            return np.zeros(shape, self.dtype)
        keep = self._dropout_rng.random(shape, dtype=np.float32) >= self.dropout
        masks: Array = keep.astype(self.dtype) * self.dtype.type(1 / (1 - self.dropout))
        return masks

    def _check_lengths(self, lengths: ArrayLike | None, T: int, B: int, batched: bool) -> Any:
        if lengths is None:
            return None
        if not batched:
            raise ValueError("lengths: only for batched input (a 3-D x)")
        la = F._lengths(lengths, T)
        assert la is not None
        if la.shape != (B,):
            raise ValueError(
                f"lengths: expected one length per sequence, shape ({B},), got {la.shape}"
            )
        return la

    def forward(
        self, x: ArrayLike, hx: Any = None, lengths: ArrayLike | None = None
    ) -> tuple[Array, State]:
        """Run the layer over a sequence.

        Args:
            x: ``(T, B, I)``, or ``(B, T, I)`` with ``batch_first``, or ``(T, I)`` unbatched.
                float32 or float64 (converted to the layer's dtype).
            hx: initial state, ``(L*D, B, Hs)`` (``(L*D, Hs)`` unbatched); for LSTM a tuple
                ``(h0, c0)`` with ``c0`` of size H. None (or a None part) means zeros.
            lengths: ``(B,)`` valid steps of each padded sequence, in any order (what
                ``pack_padded_sequence`` takes). Padded steps leave the state unchanged and
                output zeros; the reverse direction starts at each sequence's last valid step.

        Returns:
            ``(y, h_n)`` or, for LSTM, ``(y, (h_n, c_n))``; ``y`` is ``(T, B, D*Hs)``
            (``(B, T, D*Hs)`` with ``batch_first``), ``h_n`` ``(L*D, B, Hs)``, ``c_n``
            ``(L*D, B, H)``.
        """
        xt, batched = self._check_input(x)
        T, B = xt.shape[:2]
        h0, c0 = self._states("hx", hx, B, batched)
        la = self._check_lengths(lengths, T, B, batched)
        params = self._param_list()
        res = F.stack_forward(
            self._cell,
            xt,
            params,
            h0,
            c0,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            proj_size=self.proj_size,
            lengths=la,
            dropout_masks=self._dropout_masks(T, B),
            training=self.training,
        )
        y = self._to_caller(res.y, batched)
        if self.training:
            assert res.workspace is not None
            # keep x for the weight gradients; a private copy if it is the caller's own buffer,
            # so that modifying x after forward cannot change the gradients
            x_saved = xt.copy() if np.may_share_memory(xt, np.asarray(x)) else xt
            self._saved = _Saved(x_saved, params, res.workspace, y.shape, la)
        else:
            self._saved = None
        return y, self._out_states(res.h_n, res.c_n, batched)

    __call__ = forward

    def backward(self, dy: ArrayLike | None, dstate: Any = None) -> tuple[Array, State]:
        """Backpropagation through time for the last (training-mode) forward; fills :attr:`grads`.

        Args:
            dy: gradient of the loss w.r.t. ``y``, same shape as ``y``; None for zeros. Its
                values at padded steps are ignored.
            dstate: gradient w.r.t. the final state, shaped like it (a tuple ``(dh_n, dc_n)``
                for LSTM); None, or a None part, for zeros.

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
        if saved.thread != threading.get_ident():
            raise RuntimeError(
                "backward: the last forward of this layer ran in another thread. A layer holds "
                "one forward at a time; give each thread its own layer (they can share weights "
                "through load_state_dict)."
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
        dh, dc = self._states("dstate", dstate, B, batched)

        self._saved = None  # one backward per forward
        r = F.stack_backward(
            self._cell,
            saved.x,
            saved.params,
            saved.workspace,
            dya,
            dh,
            dc,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            proj_size=self.proj_size,
            lengths=saved.lengths,
        )
        names = list(self._shapes())
        flat = [a for g in r.grads for a in g if a is not None]
        self.grads = dict(zip(names, flat, strict=True))
        assert r.dx is not None
        return self._to_caller(r.dx, batched), self._out_states(r.dh0, r.dc0, batched)

    # ---- misc ---------------------------------------------------------------------------------

    def _extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
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
