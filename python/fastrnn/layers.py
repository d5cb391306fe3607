"""Recurrent layers with PyTorch's constructor arguments, weight names and call conventions.

``fastrnn.RNN``, ``fastrnn.LSTM`` and ``fastrnn.GRU`` take the arguments of ``torch.nn.RNN``,
``torch.nn.LSTM`` and ``torch.nn.GRU`` in the same order, with the same meanings and defaults, hold
their parameters under the same names and shapes (``weight_ih_l0 (G*H, I)``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0``), and return what PyTorch returns: ``(y, h_n)``, or
``(y, (h_n, c_n))`` for LSTM, with ``h_n`` of shape ``(1, B, H)``. Unlike PyTorch there is no
autograd: :meth:`RecurrentLayer.backward` takes the gradient of the loss w.r.t. the outputs and
returns the one w.r.t. the inputs, and fills :attr:`~fastrnn.module.Module.grads`.

Every option of PyTorch's modules is supported: ``num_layers``, ``bidirectional``, ``batch_first``,
``bias``, ``dropout`` (between layers, in training mode, from the layer's seed) and ``proj_size``
(LSTM), plus haste's zoneout (keyword-only ``zoneout``, and the LSTMs' ``zoneout_cell``), plus
variable-length batches through ``layer(x, hx, lengths=...)``; and ONNX's,
keyword-only: ``reverse`` (the one direction runs backwards in time), ``clip`` (gate
pre-activations clamped to ``[-clip, clip]``), LSTM's ``input_forget`` (``f = 1 - i``) and
``peephole`` (the gates see the cell state, through ``weight_peephole_l0 (3H,)``). And
``fastrnn.LayerNormLSTM``, the layer-normalised LSTM of haste (``LayerNormLSTM``), with LSTM's
arguments but ``proj_size``, and ``fastrnn.LayerNormGRU``, PyTorch's GRU with its two products
layer-normalised, with GRU's arguments but ``reset_after``. All layers and directions run in
one call into the compiled core, forward and backward.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import functional as F
from ._args import as_rng, check_flag, check_real, float_array
from .module import Module
from .spec import LayerParams, Layout, StackSpec

__all__ = ["GRU", "LSTM", "RNN", "LayerNormGRU", "LayerNormLSTM", "RecurrentLayer", "from_spec"]

Array = NDArray[Any]
State = Array | tuple[Array, Array]
_T = TypeVar("_T")


def _float_array(name: str, v: Any, dtype: np.dtype[Any]) -> Array:
    """``v`` as an array of the layer's dtype: float32 and float64 are converted (the layers'
    convenience; the functional API converts nothing)."""
    return float_array(name, v).astype(dtype, copy=False)


class _SpecField(Generic[_T]):
    """A read-only attribute of a layer: the field of its :attr:`~RecurrentLayer.spec` of the
    same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _SpecField[_T]: ...
    @overload
    def __get__(self, obj: RecurrentLayer, owner: type) -> _T: ...
    def __get__(self, obj: RecurrentLayer | None, owner: type) -> _T | _SpecField[_T]:
        return self if obj is None else getattr(obj.spec, self.name)

    def __set__(self, obj: RecurrentLayer, value: Any) -> None:
        raise AttributeError(
            f"{self.name}: read-only, a part of the layer's stack (its spec); make a new layer"
        )


class _Saved:
    """What a training-mode forward keeps for its one backward."""

    __slots__ = ("batch_shape", "lengths", "params", "spec", "thread", "workspace", "x", "zoneout")

    def __init__(
        self,
        spec: StackSpec,
        x: Array,
        params: list[LayerParams],
        workspace: Array,
        batch_shape: tuple[int, ...],
        lengths: Array | None,
        zoneout: tuple[Array | None, Array | None] | None,
    ) -> None:
        self.spec = spec  # the forward's (compute_dtype may change before the backward)
        self.x = x
        self.params = params
        self.workspace = workspace
        self.batch_shape = batch_shape  # shape of y as the caller saw it
        self.lengths = lengths
        self.zoneout = zoneout  # the forward's zoneout masks, which its backward must be given
        self.thread = threading.get_ident()  # the thread whose backward this is


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of a warning from the function calling this one that names the first
    frame outside fastrnn (the user's call, whichever constructors and helpers it went through)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("fastrnn."):
        frame, level = frame.f_back, level + 1
    return level


class RecurrentLayer(Module):
    """What :class:`RNN`, :class:`LSTM` and :class:`GRU` share: a :class:`~fastrnn.spec.StackSpec`
    (:attr:`RecurrentLayer.spec`) with PyTorch's call conventions (``batch_first``, unbatched input,
    ``hx``), dropout between layers, zoneout, and an explicit :meth:`RecurrentLayer.backward`.

    Sizes in the shapes below: ``T`` steps, ``B`` sequences, ``I`` input size, ``H`` hidden size,
    ``Hs`` the hidden state's size (``proj_size`` if set, else ``H``), ``L`` layers, ``D`` = 2 if
    bidirectional else 1.

    Args:
        spec: the stack to run; a layer of another stack is another layer.
        batch_first: inputs and outputs are ``(B, T, F)`` rather than ``(T, B, F)``.
        dropout: the probability of zeroing an output of each layer but the last, in training
            mode (masks drawn from the layer's generator; a warning when ``num_layers`` is 1).
        zoneout: the zoneout probability of the hidden state (Krueger et al.; haste's
            ``zoneout``), in [0, 1): after each step a unit keeps its previous value with this
            probability, in training (masks drawn from the layer's generator); in eval mode
            ``h_t = p*h_{t-1} + (1 - p)*h~_t``, the expectation. 0: none.
        zoneout_cell: the same for the cell state of ``lstm`` and ``lnlstm`` (not
            ``lstm_peephole``); 0 for every other cell.
        seed: the seed (int >= 0 or a ``numpy.random.Generator``) of the initial weights, the
            dropout masks and the zoneout masks; None for fresh entropy.

    Raises:
        TypeError: ``spec`` is not a :class:`~fastrnn.spec.StackSpec`; ``seed`` is not an int or
            a Generator.
        ValueError: ``dropout`` is not a number in [0, 1]; ``zoneout`` or ``zoneout_cell`` not a
            number in [0, 1), ``zoneout_cell`` > 0 for a cell without it; ``seed`` is negative.
    """

    batch_first: bool
    dropout: float
    zoneout: float  #: the hidden state's zoneout probability (0: none)
    zoneout_cell: float  #: the cell state's zoneout probability (LSTM, LayerNormLSTM; 0: none)

    def __init__(
        self,
        spec: StackSpec,
        *,
        batch_first: bool = False,
        dropout: float = 0.0,
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if not isinstance(spec, StackSpec):
            raise TypeError(f"spec: expected a fastrnn.StackSpec, got {type(spec).__name__}")
        self._spec = spec
        self.batch_first = check_flag("batch_first", batch_first)
        try:
            self.dropout = check_real("dropout", dropout, 0.0, 1.0)
        except TypeError as e:
            raise ValueError(f"dropout: expected a number in [0, 1], got {dropout!r}") from e
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={self.dropout} and "
                f"num_layers={self.num_layers}",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        self.zoneout = spec.check_zoneout("zoneout", zoneout)
        self.zoneout_cell = spec.check_zoneout("zoneout_cell", zoneout_cell, "c")
        self.training = True
        self.grads = {}
        self._saved: _Saved | None = None
        # one seed makes the initial weights, the dropout and the zoneout masks reproducible
        # (the third child leaves the first two as they were before zoneout)
        init_rng, self._dropout_rng, self._zoneout_rng = as_rng(seed).spawn(3)
        self.reset_parameters(init_rng)

    def _init_args(
        self, cell: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
        batch_first: bool, dropout: float, bidirectional: bool, dtype: DTypeLike,
        compute_dtype: Any, seed: int | np.random.Generator | None, *, proj_size: int = 0,
        zoneout: float = 0.0, zoneout_cell: float = 0.0, **options: Any,
    ) -> None:  # fmt: skip
        """The torch-like constructors' one body (:class:`RNN`, :class:`LSTM`, ...): the
        :class:`~fastrnn.spec.StackSpec` of their arguments (``options``: its keyword-only
        ``reverse``, ``clip``, ``input_forget``), then :class:`RecurrentLayer`'s."""
        spec = StackSpec(cell, input_size, hidden_size, num_layers, bidirectional, bias, proj_size,
                         dtype, compute_dtype, **options)  # fmt: skip
        RecurrentLayer.__init__(self, spec, batch_first=batch_first, dropout=dropout,
                                zoneout=zoneout, zoneout_cell=zoneout_cell, seed=seed)  # fmt: skip

    @property
    def spec(self) -> StackSpec:
        """The stack this layer runs (cell, sizes, layers, directions, bias, projection, dtype);
        fixed, a layer of another stack is another layer."""
        return self._spec

    # ---- the spec's fields, as torch.nn's attributes (read-only) -------------------------------

    input_size: _SpecField[int] = _SpecField()  #: I, the size of an input step
    hidden_size: _SpecField[int] = _SpecField()  #: H, the size of the hidden (and cell) state
    num_layers: _SpecField[int] = _SpecField()  #: L, the stacked layers
    bias: _SpecField[bool] = _SpecField()  #: whether the layers have biases
    bidirectional: _SpecField[bool] = _SpecField()  #: every layer also runs backwards in time
    proj_size: _SpecField[int] = _SpecField()  #: P, LSTM's projection size, 0 for none
    dtype: _SpecField[np.dtype[Any]] = _SpecField()  #: float32 or float64, the arrays'
    #: the one direction of every layer runs from the last step to the first (ONNX's reverse)
    reverse: _SpecField[bool] = _SpecField()
    #: the bound of the gate pre-activations (ONNX's clip), None for none
    clip: _SpecField[float | None] = _SpecField()
    #: LSTM's forget gate is ``1 - i`` (ONNX's input_forget); False for the other cells
    input_forget: _SpecField[bool] = _SpecField()

    @property
    def cell(self) -> str:
        """The cell, one of :data:`fastrnn.functional.CELLS`."""
        return self.spec.cell

    @property
    def compute_dtype(self) -> str:
        """The precision of the layer's matrix products, its dtype's name or ``"bfloat16"``
        (a float32 layer; :data:`fastrnn.spec.COMPUTE_DTYPES` states what stays float32).
        Settable: ``layer.compute_dtype = "bfloat16"`` switches it, None goes back to the dtype.
        A backward runs in the precision of its forward. Setting another value (or bfloat16 on a
        float64 layer) is a ValueError."""
        return self.spec.compute_dtype

    @compute_dtype.setter
    def compute_dtype(self, value: Any) -> None:
        self._spec = self.spec.replace(compute_dtype=value)

    # ---- parameters ---------------------------------------------------------------------------

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """PyTorch's parameters, in its order: per layer, per direction, w_ih, w_hh, b_ih, b_hh,
        w_hr, then the cell's own (``weight_peephole``)."""
        return self.spec.param_shapes()

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """PyTorch's default initialisation: every parameter (the peepholes too)
        uniform(-1/sqrt(H), 1/sqrt(H)), but those that start at a constant
        (:meth:`StackSpec.param_constants <fastrnn.spec.StackSpec.param_constants>`: a
        :class:`LayerNormLSTM`'s and :class:`LayerNormGRU`'s layer-norm gains 1 and bias 0,
        ``torch.nn.LayerNorm``'s).

        Args:
            seed: an int >= 0, a ``numpy.random.Generator``, or None for fresh entropy.

        Raises:
            TypeError, ValueError: ``seed`` is not one of those (NumPy's messages).
        """
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        constants = self.spec.param_constants()
        self._params = {
            name: (
                np.full(shape, constants[name], self.dtype)
                if name in constants
                else rng.uniform(-k, k, shape).astype(self.dtype)
            )
            for name, shape in self.param_shapes().items()
        }

    # ---- forward / backward -------------------------------------------------------------------

    def _hx(self, name: str, v: Any, B: int, batched: bool) -> tuple[Array | None, Array | None]:
        """hx (or dstate) as time-major (h, c) arrays of the layer's dtype, c None except LSTM."""
        spec = self.spec
        if v is None:
            return None, None
        if not spec.has_cell_state:
            if isinstance(v, (tuple, list)):
                raise TypeError(
                    f"{name}: expected one array for {type(self).__name__}, got a tuple"
                )
            parts: tuple[Any, ...] = (v, None)
            names = (name, "")
        elif not isinstance(v, (tuple, list)) or len(v) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) for LSTM, got {type(v).__name__}")
        else:
            parts, names = tuple(v), (f"{name}[0]", f"{name}[1]")
        out: list[Array | None] = []
        for kind, n, s in zip("hc", names, parts, strict=True):
            if s is None:
                out.append(None)
                continue
            a = _float_array(n, s, self.dtype)
            spec.check_state_shape(n, a.shape, B, kind, batched)
            out.append(Layout.state_in(a, batched))
        return out[0], out[1]

    def _dropout_masks(self, T: int, B: int) -> Array | None:
        if not self.spec.uses_dropout(self.dropout, self.training):
            return None
        shape = self.spec.mask_shape(T, B)
        if self.dropout >= 1:
            return np.zeros(shape, self.dtype)
        keep = self._dropout_rng.random(shape, dtype=np.float32) >= self.dropout
        masks: Array = keep.astype(self.dtype) * self.dtype.type(1 / (1 - self.dropout))
        return masks

    def _zoneout_masks(self, T: int, B: int) -> tuple[Array | None, Array | None] | None:
        """The zoneout multipliers of a call (:meth:`StackSpec.check_zoneout_masks
        <fastrnn.spec.StackSpec.check_zoneout_masks>`): in training 1 (keep the previous value)
        with probability p, else 0, drawn from the layer's generator (h's, then c's); in eval p
        itself; None for p = 0."""
        if not (self.zoneout or self.zoneout_cell):
            return None
        out: list[Array | None] = []
        for kind, p in (("h", self.zoneout), ("c", self.zoneout_cell)):
            shape = self.spec.zoneout_shape(T, B, kind)
            if not p:
                out.append(None)
            elif self.training:
                keep = self._zoneout_rng.random(shape, dtype=np.float32) < p
                out.append(keep.astype(self.dtype))
            else:
                out.append(np.full(shape, p, self.dtype))
        return out[0], out[1]

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
            ``(L*D, B, H)`` (without the batch axis for unbatched input).

        Raises:
            TypeError: ``x`` or a state is not float32 or float64; ``hx`` is a tuple for a cell
                without a cell state or not a tuple ``(h0, c0)`` for LSTM; ``lengths`` holds
                non-integers.
            ValueError: ``x`` is not 2-D or 3-D or its last axis is not ``input_size``; a state
                or ``lengths`` has another shape, a length is outside ``[0, T]``, or ``lengths``
                is given for unbatched input (the rules of :class:`~fastrnn.spec.StackSpec`).
        """
        spec = self.spec
        layout, xt, batched, h0, c0, la = self._call_inputs(x, hx, lengths)
        T, B = xt.shape[:2]
        params = self._entries()
        zoneout = self._zoneout_masks(T, B)
        res = F.run_forward(
            spec,
            xt,
            params,
            h0,
            c0,
            lengths=la,
            dropout_masks=self._dropout_masks(T, B),
            zoneout_masks=zoneout,
            training=self.training,
        )
        y = layout.to_caller(res.y, batched)
        self._saved = None
        if self.training:
            assert res.workspace is not None
            # keep x for the weight gradients; a private copy if it is the caller's own buffer,
            # so that modifying x after forward cannot change the gradients
            x_saved = xt.copy() if np.may_share_memory(xt, np.asarray(x)) else xt
            self._saved = _Saved(spec, x_saved, params, res.workspace, y.shape, la, zoneout)
        return y, self._states_out(res.h_n, res.c_n, batched)

    __call__ = forward

    def _call_inputs(
        self, x: ArrayLike, hx: Any, lengths: ArrayLike | None
    ) -> tuple[Layout, Array, bool, Array | None, Array | None, Array | None]:
        """A forward's arguments checked, in the kernels' form: (layout, x time-major, batched,
        h0, c0, lengths), x and the states converted to the layer's dtype."""
        spec, layout = self.spec, Layout(self.batch_first)
        xa = _float_array("x", x, spec.dtype)
        xt, batched = layout.time_major("x", xa)
        spec.check_input_size("x", xa.shape)
        xt = spec.check_input(xt)
        T, B = xt.shape[:2]
        h0, c0 = self._hx("hx", hx, B, batched)
        if lengths is not None and not batched:
            raise ValueError("lengths: only for batched input (a 3-D x)")
        return layout, xt, batched, h0, c0, spec.check_lengths(lengths, T, B)

    def _entries(self) -> list[LayerParams]:
        """The parameters per (layer, direction), kept while the parameter dict is the same (it is
        replaced, never changed, by load_state_dict and reset_parameters)."""
        cached = self.__dict__.get("_entries_of")
        if cached is None or cached[0] is not self._params:
            cached = (self._params, self.spec.entries_of(self._params))
            self._entries_of = cached
        return cached[1]

    def _states_out(self, h: Array, c: Array | None, batched: bool) -> State:
        h, c = Layout.state_out(h, batched), Layout.state_out(c, batched)
        return (h, c) if self.spec.has_cell_state else h

    def _take_saved(self) -> _Saved:
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
        return saved

    def backward(self, dy: ArrayLike | None, dstate: Any = None) -> tuple[Array, State]:
        """Backpropagation through time for the last (training-mode) forward.

        Args:
            dy: gradient of the loss w.r.t. ``y``, same shape as ``y``; None for zeros. Its
                values at padded steps are ignored.
            dstate: gradient w.r.t. the final state, shaped like it (a tuple ``(dh_n, dc_n)``
                for LSTM); None, or a None part, for zeros.

        Returns:
            ``(dx, dh0)`` or, for LSTM, ``(dx, (dh0, dc0))``, shaped like ``x`` and ``hx``.
            :attr:`~fastrnn.module.Module.grads` maps every parameter name to its gradient
            (replaced, not accumulated).

        Raises:
            RuntimeError: if there is no forward to go back through: none yet, the last one ran in
                eval mode, its backward was already done, or it ran in another thread.
            TypeError: ``dy`` or ``dstate`` is not float, or ``dstate`` not shaped as the state
                (a tuple for LSTM).
            ValueError: ``dy`` is not shaped like ``y``, or a part of ``dstate`` like its state.
        """
        saved = self._take_saved()
        batched = len(saved.batch_shape) == 3
        layout = Layout(self.batch_first)
        dyt = None
        if dy is not None:
            dya = _float_array("dy", dy, self.dtype)
            if dya.shape != saved.batch_shape:
                raise ValueError(
                    f"dy: expected the shape of the output y, {saved.batch_shape}, got {dya.shape}"
                )
            dyt = layout.time_major("dy", dya)[0]
        dh, dc = self._hx("dstate", dstate, saved.x.shape[1], batched)

        self._saved = None  # one backward per forward
        r = F.run_backward(
            saved.spec,
            saved.x,
            saved.params,
            saved.workspace,
            dyt,
            dh,
            dc,
            lengths=saved.lengths,
            zoneout_masks=saved.zoneout,
        )
        self.grads = dict(zip(self.param_shapes(), self.spec.flatten(r.grads), strict=True))
        assert r.dx is not None
        return layout.to_caller(r.dx, batched), self._states_out(r.dh0, r.dc0, batched)

    # ---- misc ---------------------------------------------------------------------------------

    def _extra_repr(self) -> str:
        defaults = {
            "num_layers": 1,
            "bias": True,
            "batch_first": False,
            "dropout": 0.0,
            "bidirectional": False,
            "proj_size": 0,
        }
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in defaults.items():
            v = getattr(self, name)
            if v != default:
                s += f", {name}={v}"
        s += self._cell_repr()
        if self.zoneout:
            s += f", zoneout={self.zoneout!r}"
        if self.zoneout_cell:
            s += f", zoneout_cell={self.zoneout_cell!r}"
        if self.reverse:
            s += ", reverse=True"
        if self.clip is not None:
            s += f", clip={self.clip!r}"
        if self.input_forget:
            s += ", input_forget=True"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name}"
        if self.spec.bf16:
            s += ", compute_dtype='bfloat16'"
        return s

    def _cell_repr(self) -> str:
        """The cell's own options in the repr (LSTM's peephole), before ONNX's."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"


class RNN(RecurrentLayer):
    """Elman RNN, ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with ``act`` tanh or relu.

    The arguments of ``torch.nn.RNN``, in its order, then keyword-only ones; the calls are
    :meth:`~RecurrentLayer.forward` and :meth:`~RecurrentLayer.backward`.

    Args:
        input_size: I, the size of an input step.
        hidden_size: H, the size of the hidden state.
        num_layers: L, stacked layers; layer ``l > 0`` reads the outputs of layer ``l - 1``.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        bias: whether the layers have ``bias_ih`` and ``bias_hh``.
        batch_first: inputs and outputs are ``(B, T, F)`` rather than ``(T, B, F)``.
        dropout: the probability of zeroing an output of each layer but the last, in training.
        bidirectional: every layer also runs backwards in time (D = 2).
        zoneout: the zoneout probability of the hidden state, in [0, 1)
            (:class:`RecurrentLayer`).
        clip: ONNX's clip: every pre-activation clamped to ``[-clip, clip]`` before ``act``
            (a finite number > 0), None for none (:class:`~fastrnn.spec.StackSpec`).
        reverse: ONNX's reverse direction: the one direction of every layer runs from the last
            step to the first (not with ``bidirectional``).
        dtype: float32 or float64, of the parameters and of every array of a call.
        compute_dtype: the precision of the matrix products: None for ``dtype``, or
            ``"bfloat16"`` (a float32 layer; :attr:`~RecurrentLayer.compute_dtype`).
        seed: the seed of the initial weights, the dropout and zoneout masks
            (:class:`RecurrentLayer`).

    Raises:
        ValueError: ``nonlinearity`` is neither ``"tanh"`` nor ``"relu"``; and the rules of
            :class:`~fastrnn.spec.StackSpec` and :class:`RecurrentLayer` (TypeError or
            ValueError naming the argument).
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
        zoneout: float = 0.0,
        clip: float | None = None,
        reverse: bool = False,
        dtype: DTypeLike = np.float32,
        compute_dtype: Any = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"nonlinearity: unknown nonlinearity {nonlinearity!r}; select 'tanh' or 'relu'"
            )
        self.nonlinearity = nonlinearity
        self._init_args(f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias,
                        batch_first, dropout, bidirectional, dtype, compute_dtype, seed,
                        zoneout=zoneout, reverse=reverse, clip=clip)  # fmt: skip

    def _extra_repr(self) -> str:
        s = super()._extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RecurrentLayer):
    """Long short-term memory layer, gates ``i, f, g, o`` (PyTorch's order).

    The arguments of ``torch.nn.LSTM``, in its order, then keyword-only ones; all but
    ``proj_size``, ``peephole`` and ``input_forget`` are :class:`RNN`'s (``input_size,
    hidden_size, num_layers, bias, batch_first, dropout, bidirectional``; ``clip, reverse, dtype,
    compute_dtype, seed``; LSTM's ``clip`` clamps the pre-activations of i, f, g and o, not the
    cell state). States are tuples ``(h, c)``, ``h`` of size ``Hs``, ``c`` of size ``H``.

    Args:
        proj_size: P, the size of a projection ``h = W_hr (o * tanh(c))`` (0 for none),
            ``0 <= P < hidden_size``; then ``Hs = P``.
        peephole: ONNX's peepholes (cell ``"lstm_peephole"``): ``i = s(. + p_i * c)``,
            ``f = s(. + p_f * c)`` with the previous cell state, ``o = s(. + p_o * c')`` with
            the new one; ``p_i, p_f, p_o`` are the blocks of the parameter
            ``weight_peephole_l0 (3H,)`` (``_reverse``, per layer, after ``weight_hr_l0``).
        input_forget: ONNX's coupled gates, as ONNX Runtime computes them: ``f = 1 - i`` (the
            f block's weights, biases and peephole are unused; their gradients are zero).
        zoneout: the zoneout probability of the hidden state, in [0, 1)
            (:class:`RecurrentLayer`).
        zoneout_cell: the zoneout probability of the cell state, in [0, 1) (not with
            ``peephole``).

    Raises:
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec` or
            :class:`RecurrentLayer`, naming it.
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
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        peephole: bool = False,
        input_forget: bool = False,
        clip: float | None = None,
        reverse: bool = False,
        dtype: DTypeLike = np.float32,
        compute_dtype: Any = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        cell = "lstm_peephole" if check_flag("peephole", peephole) else "lstm"
        self._init_args(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                        bidirectional, dtype, compute_dtype, seed, proj_size=proj_size,
                        zoneout=zoneout, zoneout_cell=zoneout_cell, reverse=reverse, clip=clip,
                        input_forget=input_forget)  # fmt: skip

    @property
    def peephole(self) -> bool:
        """Whether the gates see the cell state (cell ``"lstm_peephole"``)."""
        return self.spec.cell == "lstm_peephole"

    def _cell_repr(self) -> str:
        return ", peephole=True" if self.peephole else ""


class LayerNormLSTM(RecurrentLayer):
    """Layer-normalised LSTM (haste's ``LayerNormLSTM``; Ba et al., 2016), gates ``i, f, g, o``
    (PyTorch's order), cell ``"lnlstm"``.

    A step::

        v  = g_ih * LN(W_ih x) + g_hh * LN(W_hh h) + b_ih + b_hh
        i, f, o = sigmoid(v_i, v_f, v_o),  g = tanh(v_g)
        c' = f * c + i * g
        h' = o * tanh(g_c * LN(c') + b_c)

    ``LN`` normalises a row (the 4H values of a product, the H of ``c'``) to zero mean and unit
    variance, ``(a - mean) / sqrt(var + 1e-5)`` (biased variance, as ``torch.nn.LayerNorm``);
    the carried cell state is ``c'`` itself. Besides LSTM's ``weight_ih_l0 (4H, I)``,
    ``weight_hh_l0 (4H, H)``, ``bias_ih_l0`` and ``bias_hh_l0 (4H,)``, each layer and direction
    has ``layer_norm_weight_ih_l0 (4H,)`` (``g_ih``), ``layer_norm_weight_hh_l0 (4H,)``
    (``g_hh``), ``layer_norm_weight_c_l0 (H,)`` (``g_c``) and ``layer_norm_bias_c_l0 (H,)``
    (``b_c``) (``_reverse`` for the second direction), which start at 1, 1, 1 and 0 (the other
    parameters uniform(-1/sqrt(H), 1/sqrt(H)), PyTorch's default).

    In PyTorch's terms (the ``LayerNormLSTMCell`` of PyTorch's ``benchmarks/fastrnns``): its
    ``layernorm_i.weight`` is ``g_ih``, ``layernorm_h.weight`` ``g_hh``, ``layernorm_i.bias +
    layernorm_h.bias`` is ``b_ih + b_hh``, ``layernorm_c`` ``(g_c, b_c)``; but that cell carries
    the normalised ``LN(c')`` to the next step, this one (and haste's) ``c'``.

    The arguments of :class:`LSTM` but ``proj_size``, ``peephole``, ``input_forget`` and
    ``clip`` (``input_size, hidden_size, num_layers, bias, batch_first, dropout,
    bidirectional``; ``reverse, dtype, compute_dtype, seed``); states are tuples ``(h, c)`` of
    shape ``(L*D, B, H)`` each, as an LSTM's. ``compute_dtype="bfloat16"`` rounds the products'
    operands only (the layer norms run in float32); :func:`fastrnn.quantize_dynamic` makes an
    int8 :class:`~fastrnn.quantized.QuantizedLayerNormLSTM` of it.

    Args:
        input_size: I, the size of an input step.
        hidden_size: H, the size of the hidden and cell states.
        num_layers: L, stacked layers; layer ``l > 0`` reads the outputs of layer ``l - 1``.
        bias: whether the layers have ``bias_ih`` and ``bias_hh`` (the layer norms' ``b_c``
            is there either way).
        batch_first: inputs and outputs are ``(B, T, F)`` rather than ``(T, B, F)``.
        dropout: the probability of zeroing an output of each layer but the last, in training.
        bidirectional: every layer also runs backwards in time (D = 2).
        zoneout, zoneout_cell: the zoneout probabilities of the hidden and cell states, in
            [0, 1) (:class:`RecurrentLayer`).
        reverse: the one direction of every layer runs from the last step to the first (not
            with ``bidirectional``).
        dtype: float32 or float64, of the parameters and of every array of a call.
        compute_dtype: the precision of the matrix products: None for ``dtype``, or
            ``"bfloat16"`` (a float32 layer; :attr:`~RecurrentLayer.compute_dtype`).
        seed: the seed of the initial weights, the dropout and zoneout masks
            (:class:`RecurrentLayer`).

    Raises:
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec` or
            :class:`RecurrentLayer`, naming it.

    A two-layer stack, forward and backward::

        layer = fastrnn.LayerNormLSTM(8, 16, num_layers=2, seed=0)
        y, (h_n, c_n) = layer(np.zeros((5, 3, 8), np.float32))   # y (5, 3, 16)
        dx, (dh0, dc0) = layer.backward(np.ones_like(y))
        layer.grads["layer_norm_weight_c_l1"].shape               # (16,)
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
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        reverse: bool = False,
        dtype: DTypeLike = np.float32,
        compute_dtype: Any = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self._init_args("lnlstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                        bidirectional, dtype, compute_dtype, seed, zoneout=zoneout,
                        zoneout_cell=zoneout_cell, reverse=reverse)  # fmt: skip


class GRU(RecurrentLayer):
    """Gated recurrent unit, gates ``r, z, n`` (PyTorch's order), ``h' = (1 - z)*n + z*h``.

    The arguments of ``torch.nn.GRU``, in its order, then keyword-only ones; all but
    ``reset_after`` are :class:`RNN`'s (``input_size, hidden_size, num_layers, bias, batch_first,
    dropout, bidirectional``; ``clip, reverse, dtype, compute_dtype, seed``; GRU's ``clip``
    clamps the pre-activations of r and z and the whole argument of n's tanh). The course notes'
    update gate is our ``1 - z``: see :func:`fastrnn.convert.gru_notes_to_torch`.

    Args:
        reset_after: True (the default; PyTorch's, cuDNN's and Keras') applies the reset gate
            after the recurrent product, ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``; False
            is the original formula of Cho et al. and the course notes,
            ``n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)``.
        zoneout: the zoneout probability of the hidden state, in [0, 1)
            (:class:`RecurrentLayer`).

    Raises:
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec` or
            :class:`RecurrentLayer`, naming it.
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
        zoneout: float = 0.0,
        reset_after: bool = True,
        clip: float | None = None,
        reverse: bool = False,
        dtype: DTypeLike = np.float32,
        compute_dtype: Any = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.reset_after = check_flag("reset_after", reset_after)
        cell = "gru" if self.reset_after else "gru_reset_before"
        self._init_args(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                        bidirectional, dtype, compute_dtype, seed, zoneout=zoneout, reverse=reverse,
                        clip=clip)  # fmt: skip

    def _extra_repr(self) -> str:
        s = super()._extra_repr()
        return s + ("" if self.reset_after else ", reset_after=False")


class LayerNormGRU(RecurrentLayer):
    """Layer-normalised GRU: PyTorch's GRU (gates ``r, z, n``, the reset gate after the
    recurrent product) with its input and recurrent products each normalised, cell ``"lngru"``.

    A step::

        a = g_ih * LN(W_ih x) + b_ih              m = g_hh * LN(W_hh h)
        r = sigmoid(a_r + m_r + b_hr),  z = sigmoid(a_z + m_z + b_hz)
        n = tanh(a_n + r * (m_n + b_hn))
        h' = (1 - z) * n + z * h

    ``LN`` normalises a product's row of 3H values to zero mean and unit variance, ``(a - mean) /
    sqrt(var + 1e-5)`` (biased variance, as ``torch.nn.LayerNorm``), before its gain; the biases
    are added after it, ``b_hn`` inside the reset gate's product as in PyTorch's GRU. Besides
    GRU's ``weight_ih_l0 (3H, I)``, ``weight_hh_l0 (3H, H)``, ``bias_ih_l0`` and ``bias_hh_l0
    (3H,)``, each layer and direction has ``layer_norm_weight_ih_l0 (3H,)`` (``g_ih``) and
    ``layer_norm_weight_hh_l0 (3H,)`` (``g_hh``) (``_reverse`` for the second direction), which
    start at 1 (the other parameters uniform(-1/sqrt(H), 1/sqrt(H)), PyTorch's default). In
    PyTorch's terms: ``torch.nn.LayerNorm(3H)`` on ``x W_ih^T`` (its weight ``g_ih``, its bias
    ``b_ih``) and another on ``h W_hh^T`` (weight ``g_hh``, no bias), then the GRU's gates with
    ``b_hh``.

    The arguments of :class:`GRU` but ``reset_after`` (always True) and ``clip``
    (``input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional``;
    ``reverse, dtype, compute_dtype, seed``); states are ``(L*D, B, H)``, as a GRU's.
    ``compute_dtype="bfloat16"`` rounds the products' operands only (the layer norms run in
    float32); :func:`fastrnn.quantize_dynamic` makes an int8
    :class:`~fastrnn.quantized.QuantizedLayerNormGRU` of it.

    Args:
        input_size: I, the size of an input step.
        hidden_size: H, the size of the hidden state.
        num_layers: L, stacked layers; layer ``l > 0`` reads the outputs of layer ``l - 1``.
        bias: whether the layers have ``bias_ih`` and ``bias_hh``.
        batch_first: inputs and outputs are ``(B, T, F)`` rather than ``(T, B, F)``.
        dropout: the probability of zeroing an output of each layer but the last, in training.
        bidirectional: every layer also runs backwards in time (D = 2).
        zoneout: the zoneout probability of the hidden state, in [0, 1)
            (:class:`RecurrentLayer`).
        reverse: the one direction of every layer runs from the last step to the first (not
            with ``bidirectional``).
        dtype: float32 or float64, of the parameters and of every array of a call.
        compute_dtype: the precision of the matrix products: None for ``dtype``, or
            ``"bfloat16"`` (a float32 layer; :attr:`~RecurrentLayer.compute_dtype`).
        seed: the seed of the initial weights, the dropout and zoneout masks
            (:class:`RecurrentLayer`).

    Raises:
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec` or
            :class:`RecurrentLayer`, naming it.

    A two-layer stack, forward and backward::

        layer = fastrnn.LayerNormGRU(8, 16, num_layers=2, seed=0)
        y, h_n = layer(np.zeros((5, 3, 8), np.float32))          # y (5, 3, 16)
        dx, dh0 = layer.backward(np.ones_like(y))
        layer.grads["layer_norm_weight_hh_l1"].shape              # (48,)
    """

    #: the reset gate after the recurrent product (:class:`GRU`'s ``reset_after``), always
    reset_after = True

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
        zoneout: float = 0.0,
        reverse: bool = False,
        dtype: DTypeLike = np.float32,
        compute_dtype: Any = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self._init_args("lngru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                        bidirectional, dtype, compute_dtype, seed, zoneout=zoneout,
                        reverse=reverse)  # fmt: skip


def from_spec(
    spec: StackSpec,
    *,
    batch_first: bool = False,
    dropout: float = 0.0,
    zoneout: float = 0.0,
    zoneout_cell: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> RecurrentLayer:
    """The layer that runs ``spec``, freshly initialised from ``seed``.

    Args:
        spec: the stack (its cell chooses the class, its fields the arguments).
        batch_first, dropout, zoneout, zoneout_cell, seed: as :class:`RecurrentLayer`'s
            (``zoneout_cell`` for ``lstm`` and ``lnlstm``).

    Returns:
        An :class:`RNN`, :class:`LSTM`, :class:`GRU`, :class:`LayerNormLSTM` or
        :class:`LayerNormGRU`.

    Raises:
        TypeError: ``spec`` is not a :class:`~fastrnn.spec.StackSpec`.
        TypeError, ValueError: as :class:`RecurrentLayer`'s (an invalid ``dropout``, ``zoneout``,
            ``zoneout_cell`` or ``seed``).
    """
    if not isinstance(spec, StackSpec):
        raise TypeError(f"spec: expected a fastrnn.StackSpec, got {type(spec).__name__}")
    lstm = {"proj_size": spec.proj_size, "input_forget": spec.input_forget}
    kinds: dict[str, tuple[Callable[..., RecurrentLayer], dict[str, Any]]] = {
        "rnn_tanh": (RNN, {"nonlinearity": "tanh"}),
        "rnn_relu": (RNN, {"nonlinearity": "relu"}),
        "lstm": (LSTM, lstm),
        "gru": (GRU, {"reset_after": True}),
        "gru_reset_before": (GRU, {"reset_after": False}),
        "lstm_peephole": (LSTM, {**lstm, "peephole": True}),
        "lnlstm": (LayerNormLSTM, {}),
        "lngru": (LayerNormGRU, {}),
    }
    cls, kw = kinds[spec.cell]
    if spec.clip is not None:  # the cells that take it; the layer-normalised ones have no such
        kw = {**kw, "clip": spec.clip}
    if spec.check_zoneout("zoneout_cell", zoneout_cell, "c"):  # the LSTMs' (the spec's rule)
        kw = {**kw, "zoneout_cell": zoneout_cell}
    return cls(
        spec.input_size,
        spec.hidden_size,
        spec.num_layers,
        bias=spec.bias,
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=spec.bidirectional,
        zoneout=zoneout,
        reverse=spec.reverse,
        dtype=spec.dtype,
        compute_dtype=spec.compute_dtype,
        seed=seed,
        **kw,
    )
