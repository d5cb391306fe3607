"""fastrnn inside PyTorch: drop-in ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` running fastrnn's kernels.

Swap one line and keep everything else::

    import fastrnn.torch as frt

    model.rnn = frt.LSTM(**the_same_arguments)   # was torch.nn.LSTM(...)
    model.rnn.load_state_dict(old.state_dict())   # the same parameter names and shapes

The classes here *are* the ``torch.nn`` classes (subclasses), so constructor arguments,
parameters, ``state_dict()`` keys, initialisation, ``repr``, ``.to(dtype)`` and
``isinstance(m, torch.nn.LSTM)`` are PyTorch's own. Only ``forward`` differs: it runs the whole
stack (every layer, direction and time step) in one call of fastrnn's C++ kernels, and the
backward is the kernels' own backpropagation through time, through a ``torch.autograd.Function``
(not autograd through thousands of small ops). Tensors are handed to the kernels without copies
(a CPU tensor's memory viewed as a NumPy array); results come back the same way.

Everything ``torch.nn`` accepts is accepted: batched ``(T, B, I)`` / ``batch_first`` ``(B, T, I)``
/ unbatched ``(T, I)`` input, ``PackedSequence`` in and out (sorted or
not), ``hx``, ``num_layers``, ``bidirectional``, ``bias``, ``dropout`` (masks drawn from torch's
generator, so ``torch.manual_seed`` makes them reproducible; they are not the same draws as
torch's own kernel makes), ``proj_size`` (LSTM), ``nonlinearity`` (RNN).

* CPU float32 and float64 only: a tensor on another device raises ``ValueError`` naming it (no
  silent copies). Input and parameters must have the same dtype (as in torch).
* Under ``torch.no_grad()`` / ``torch.inference_mode()``, or when nothing requires a gradient,
  the forward keeps no per-step activations (inference kernels).
* ``torch.autograd.gradcheck`` passes in float64; ``retain_graph=True`` works (a second backward
  recomputes the saved activations, bit-identical) and so does activation checkpointing (the
  saved activations are an ordinary saved tensor). The backward is not itself differentiable:
  differentiating a gradient again (``create_graph=True``, a gradient penalty) raises
  RuntimeError rather than giving a silent zero. Not supported: the ``torch.func`` transforms
  (a clear RuntimeError), forward-mode AD, ``torch.jit`` tracing or scripting.
* ``compute_dtype`` (constructor keyword and settable attribute, as on
  :class:`fastrnn.layers.LSTM`):
  None for the module's dtype, or ``"bfloat16"`` (float32 modules): the products run on bfloat16
  operands with float32 accumulation (:data:`fastrnn.spec.COMPUTE_DTYPES`); inputs, outputs,
  states and gradients stay float32.
* Autocast: inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` a float32 module runs its
  products in bfloat16 (whatever its ``compute_dtype``) and returns the dtypes ``torch.nn``'s
  module returns there (measured on torch 2.13: the table is ``_autocast_dtypes``'s); the
  gradients of the parameters are float32, those of the input and ``hx`` come back in their own
  dtypes. Inputs and ``hx`` may then be float32, bfloat16 or float16 (as torch accepts). Under
  ``dtype=torch.float16`` the products run in the module's ``compute_dtype`` (fastrnn has no
  float16 products; float32 is the more precise stand-in) and the outputs take torch's dtypes.
  float64 modules and ``torch.autocast(..., enabled=False)`` are untouched, as in torch.
* int8 inference: :func:`quantize_dynamic` (``torch.ao.quantization.quantize_dynamic``'s call)
  replaces every ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` of a model by :class:`QuantizedLSTM` /
  :class:`QuantizedGRU` / :class:`QuantizedRNN`: the same call and outputs, int8 weights with a
  float32 scale per row held as buffers, :func:`fastrnn.quantized.quantize_dynamic`'s layer
  underneath, no backward (a clear RuntimeError). Other layers (``Linear``, ``Embedding``) stay
  float.
* Threads: fastrnn's kernels use :func:`fastrnn.functional.set_num_threads` (default
  ``FASTRNN_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs this process may use), not
  ``torch.set_num_threads``; set both when you change one.

torch is optional: ``import fastrnn`` never imports it; importing this module without torch
installed raises ImportError naming the extra (``pip install "fastrnn[torch]"``). The extension is
not compiled against torch: any torch that can share CPU tensors with NumPy works.
"""

from __future__ import annotations

import copy
from typing import Any

try:
    import torch
    from torch.nn.utils.rnn import PackedSequence
except ImportError as e:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError(
        "fastrnn.torch needs PyTorch, which is not installed: "
        'pip install "fastrnn[torch]" (or any torch with CPU support)'
    ) from e

import numpy as np

from . import functional as F
from . import quantized as _fq
from .layers import from_spec
from .spec import Layout, StackSpec, check_compute_dtype

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "QuantizedGRU",
    "QuantizedLSTM",
    "QuantizedModule",
    "QuantizedRNN",
    "RNNFunction",
    "quantize_dynamic",
]

Tensor = torch.Tensor
NDArray = np.ndarray[Any, Any]

_CELL_OF_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}
_NP_DTYPE: dict[torch.dtype, np.dtype[Any]] = {
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
}


def _np(t: Tensor | None) -> NDArray | None:
    """A CPU tensor's memory as a NumPy array (no copy)."""
    return None if t is None else t.detach().numpy()


def _tensor(a: NDArray | None) -> Tensor | None:
    return None if a is None else torch.from_numpy(a)


def _run_forward(
    spec: StackSpec, lengths: NDArray | None, x: Tensor, h0: Tensor | None, c0: Tensor | None,
    masks: Tensor | None, weights: tuple[Tensor, ...], training: bool,
) -> F.ForwardResult:  # fmt: skip
    """The kernels' forward on the tensors' memory."""
    params = spec.entries([_np(w) for w in weights])
    return F.run_forward(
        spec, x.detach().numpy(), params, _np(h0), _np(c0), lengths=lengths,
        dropout_masks=_np(masks), training=training,
    )  # fmt: skip


class RNNFunction(torch.autograd.Function):
    """``(spec, lengths, x, h0, c0, masks, *weights) -> (y, h_n[, c_n], workspace)`` for a stack.

    ``spec``: the :class:`~fastrnn.spec.StackSpec`; ``lengths``: ``(B,)`` int64 array or None;
    ``x (T, B, I)`` time-major, ``h0 (L*D, B, Hs)`` or None, ``c0 (L*D, B, H)`` or None (LSTM),
    ``masks (L-1, T, B, D*Hs)`` or None (dropout multipliers), ``weights``: the module's flat weight
    list in torch's order; all contiguous CPU tensors of one dtype. ``workspace`` (not
    differentiable) is what the backward needs, returned so that it is saved like any tensor
    (saved-tensor hooks and checkpointing see it). Use the modules rather than this.
    """

    @staticmethod
    def forward(
        spec: StackSpec,
        lengths: NDArray | None,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        masks: Tensor | None,
        *weights: Tensor,
    ) -> tuple[Tensor, ...]:
        """The training-mode forward of the stack (the arguments and outputs: the class's).

        Returns:
            ``(y (T, B, D*Hs), h_n (L*D, B, Hs)[, c_n (L*D, B, H)], workspace (n,))``.

        Raises:
            TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec`,
                naming it.
        """
        res = _run_forward(spec, lengths, x, h0, c0, masks, weights, True)
        assert res.workspace is not None
        out = [res.y, res.h_n] + ([res.c_n] if spec.has_cell_state else []) + [res.workspace]
        return tuple(torch.from_numpy(a) for a in out)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        """Saves ``x``, the states, the masks, the weights and the workspace for the backward;
        the workspace is marked non-differentiable."""
        spec, lengths, x, h0, c0, masks, *weights = inputs
        ctx.spec, ctx.lengths = spec, lengths
        ctx.consumed = False
        ctx.mark_non_differentiable(output[-1])
        ctx.save_for_backward(x, h0, c0, masks, output[-1], *weights)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dh_n: Tensor | None, *rest: Tensor | None) -> Any:
        """Backpropagation through time, from the gradients of ``y``, ``h_n`` (and ``c_n``).

        Returns:
            The gradients of the forward's arguments: None for ``spec``, ``lengths`` and
            ``masks``, and for what needs none; ``dx``, ``dh0``, ``dc0`` and one per weight.

        Raises:
            RuntimeError: under the ``torch.func`` transforms, or (when differentiated again)
                double backward.
        """
        spec: StackSpec = ctx.spec
        dc_n = rest[0] if spec.has_cell_state else None
        saved = ctx.saved_tensors
        x, h0, c0, masks, workspace, *weights = saved
        need = ctx.needs_input_grad
        with torch.no_grad():
            try:
                args = (x.detach().numpy(), spec.entries([_np(w) for w in weights]),
                        workspace.detach().numpy())  # fmt: skip
                grads_out = (_np(dy), _np(dh_n), _np(dc_n))
            except RuntimeError as e:  # functorch's wrapped tensors have no storage
                raise RuntimeError(
                    "fastrnn.torch: the torch.func transforms (grad, vjp, jacrev, vmap) are not "
                    "supported; use torch.autograd (loss.backward(), torch.autograd.grad)"
                ) from e
            xn, params, wsn = args
            if ctx.consumed:
                # a second backward through the same graph (retain_graph=True, gradcheck): the
                # forward is deterministic, so recomputing gives exactly the activations saved
                res = _run_forward(spec, ctx.lengths, x, h0, c0, masks, tuple(weights), True)
                wsn = res.workspace
            ctx.consumed = True  # the kernels' backward overwrites the workspace
            r = F.run_backward(
                spec, xn, params, wsn, *grads_out, lengths=ctx.lengths,
                need_dx=need[2],  # skipped when the input is data
            )  # fmt: skip
        out: list[Tensor | None] = [
            _tensor(r.dx),
            _tensor(r.dh0) if need[3] else None,
            _tensor(r.dc0) if need[4] else None,
            None,
            *(
                torch.from_numpy(g) if n else None
                for g, n in zip(spec.flatten(r.grads), need[6:], strict=True)
            ),
        ]
        _not_differentiable_again(out, (*saved, dy, dh_n, dc_n))
        return (None, None, *out)


def _not_differentiable_again(out: list[Tensor | None], inputs: tuple[Tensor | None, ...]) -> None:
    """The gradients are not differentiable again. With create_graph=True they would silently be
    constants (a zero second derivative); like torch's @once_differentiable, but also when only
    the inputs (not the incoming gradients) require grad, attach a node that raises if anything
    is differentiated through them."""
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in inputs):
        return
    idx = [i for i, t in enumerate(out) if t is not None]
    err = torch._C._functions.DelayedError(
        b"fastrnn.torch: the backward of the kernels is not differentiable "
        b"(no double backward / second derivatives; use torch.nn's module for those)",
        len(idx),
    )
    wrapped = err(*[t.detach().requires_grad_(True) for t in out if t is not None])
    wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
    for i, t in zip(idx, wrapped, strict=True):
        out[i] = t


def _check_cpu(name: str, t: Tensor) -> None:
    if t.device.type != "cpu":
        raise ValueError(
            f"{name}: fastrnn.torch runs on CPU tensors only, got a tensor on {t.device} "
            "(move the module and the data to the CPU, or use torch.nn's module on this device)"
        )


#: the dtypes a float32 module accepts for its input and hx under autocast (torch.nn's casts them)
_AUTOCAST_IN = (torch.float32, torch.bfloat16, torch.float16)


def _autocast_dtype(wdtype: torch.dtype) -> torch.dtype | None:
    """The lower precision ``torch.autocast("cpu")`` asks of a module's products, or None: outside
    it (or inside ``enabled=False``) and for any module but a float32 one (autocast leaves float64
    alone)."""
    if wdtype != torch.float32 or not _cpu_autocast_enabled():
        return None
    return _cpu_autocast_dtype()


def _cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4: no device argument  # pragma: no cover
        return torch.is_autocast_cpu_enabled()


def _cpu_autocast_dtype() -> torch.dtype:
    try:
        return torch.get_autocast_dtype("cpu")
    except (AttributeError, TypeError):  # torch < 2.4  # pragma: no cover
        return torch.get_autocast_cpu_dtype()


def _autocast_dtypes(
    mode: str, proj_size: int, packed: bool, low: torch.dtype, state: torch.dtype, x: torch.dtype
) -> tuple[torch.dtype, torch.dtype, torch.dtype]:
    """The dtypes of ``(output, h_n, c_n)`` that ``torch.nn``'s module returns under autocast to
    ``low`` (bfloat16 or float16); ``state``: the carried state's dtype (LSTM's ``c_0``, GRU's
    ``h_0``; the input's when hx is None), ``x``: the input's.

    Measured on torch 2.13 (CPU), float32 module, any layers/directions/``batch_first``, batched
    or not (``low`` = bfloat16; the same with float16, where torch's oneDNN LSTM raises in
    training)::

        module                                output  h_n     c_n
        LSTM, tensor input (oneDNN)           low     low     low
        LSTM, PackedSequence                  state'  state'  state'
        LSTM, proj_size > 0                   low     low     state'
        GRU                                   state'  state'  -
        RNN (tanh, relu)                      low     low     -

    with ``state' = promote_types(low, state)`` (float32 for a float32 state). torch's per-step
    cells run every ``linear`` in ``low`` and add the carried state in its own dtype, so the
    results follow type promotion; its unprojected LSTM on a tensor goes to oneDNN, which casts
    input, weights and states to ``low`` (a float16 input there takes the per-step path in
    training, so the packed row applies)."""
    carried = torch.promote_types(low, state)
    if mode != "LSTM":
        return (carried, carried, carried) if mode == "GRU" else (low, low, low)
    if proj_size:
        return low, low, carried
    if packed or x == torch.float16:
        return carried, carried, carried
    return low, low, low


class _Packing:
    """A PackedSequence's rows (step 0, then step 1, ...; sequences sorted by decreasing length)
    placed in a padded (T, B) grid, and back."""

    def __init__(self, packed: PackedSequence) -> None:
        data, self.batch_sizes, self.sorted_indices, self.unsorted_indices = packed
        if data.dim() != 2:
            raise RuntimeError(f"input: packed data must have 2 dimensions, got {data.dim()}")
        bs = self.batch_sizes.numpy().astype(np.int64)
        self.T, self.B = len(bs), int(bs[0])
        self.index = torch.from_numpy(
            np.concatenate([t * self.B + np.arange(n, dtype=np.int64) for t, n in enumerate(bs)])
        )
        self.lengths = (bs[None, :] > np.arange(self.B)[:, None]).sum(axis=1)
        self.data = data

    def padded(self, x: Tensor) -> Tensor:
        out = x.new_zeros(self.T * self.B, x.shape[-1])
        return out.index_copy(0, self.index, x).view(self.T, self.B, -1)

    def packed(self, y: Tensor) -> PackedSequence:
        y = y.reshape(self.T * self.B, -1).index_select(0, self.index)
        return PackedSequence(y, self.batch_sizes, self.sorted_indices, self.unsorted_indices)

    def state_in(self, s: Tensor) -> Tensor:
        return s if self.sorted_indices is None else s.index_select(1, self.sorted_indices)

    def state_out(self, s: Tensor | None) -> Tensor | None:
        return (
            s
            if s is None or self.unsorted_indices is None
            else s.index_select(1, self.unsorted_indices)
        )


class _TorchCalls:
    """torch.nn's call conventions around a stack, shared by the float modules
    (:class:`_FastForward`) and the int8 ones (:class:`QuantizedModule`): the input (a tensor in
    the caller's layout, unbatched, or a PackedSequence) and ``hx`` checked and made time-major,
    and the outputs put back in the caller's layout. Needs ``self.batch_first``."""

    def _dtype_hint(self, have: torch.dtype, want: torch.dtype) -> str:
        """What to do about an input of dtype ``have`` given a module computing in ``want``."""
        return f"convert the input (input.to({want})) or the module (module.to({have}))"

    def _input(
        self: Any, input: Any, spec: StackSpec, wdtype: torch.dtype, autocast: bool
    ) -> tuple[Tensor, bool, _Packing | None, torch.dtype]:
        """The input as a contiguous time-major (T, B, I) tensor of the weights' dtype, whether it
        was batched, the packing of a PackedSequence, and the input's own dtype (under autocast
        a float32 module takes bfloat16 and float16 too, cast here so that its gradient comes
        back in that dtype)."""
        packing = _Packing(input) if isinstance(input, PackedSequence) else None
        if packing is not None:
            data, batched = packing.data, True
        elif isinstance(input, torch.Tensor):
            data, batched = Layout(self.batch_first).time_major("input", input)
        else:
            raise TypeError(
                f"input: expected a tensor or a PackedSequence, got {type(input).__name__}"
            )
        _check_cpu("input", data)
        if data.layout != torch.strided:
            raise TypeError(f"input: expected a dense (strided) tensor, got layout {data.layout}")
        dtype = data.dtype
        if autocast and dtype in _AUTOCAST_IN:
            data = data.to(wdtype)
        if data.dtype != wdtype:
            raise ValueError(
                f"input: dtype {data.dtype} does not match the weights' dtype {wdtype}; "
                + self._dtype_hint(data.dtype, wdtype)
            )
        try:  # the spec's rule, with torch.nn's exception type
            spec.check_input_size("input", data.shape)
        except ValueError as e:
            raise RuntimeError(str(e)) from None
        x = data.contiguous() if packing is None else packing.padded(data.contiguous())
        if x.shape[0] == 0:
            raise RuntimeError("input: expected sequence length to be larger than 0 (as torch.nn)")
        return x, batched, packing, dtype

    def _states(
        self: Any,
        hx: Any,
        spec: StackSpec,
        x: Tensor,
        batched: bool,
        packing: _Packing | None,
        autocast: bool,
    ) -> tuple[Tensor | None, Tensor | None]:
        """hx as contiguous (L*D, B, S) tensors of x's dtype, checked against the spec (under
        autocast bfloat16 and float16 states are cast, as the input)."""
        if hx is None:
            return None, None
        lstm = spec.has_cell_state
        if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"hx: expected a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
        parts = tuple(hx) if lstm else (hx,)
        names = ("hx[0]", "hx[1]") if lstm else ("hx",)
        out = []
        for kind, name, s in zip("hc", names, parts, strict=False):
            if not isinstance(s, torch.Tensor):
                raise TypeError(f"{name}: expected a tensor, got {type(s).__name__}")
            _check_cpu(name, s)
            if autocast and s.dtype in _AUTOCAST_IN:
                s = s.to(x.dtype)
            if s.dtype != x.dtype:
                raise ValueError(f"{name}: expected dtype {x.dtype} (the input's), got {s.dtype}")
            try:  # the spec's rule, with torch.nn's exception type
                spec.check_state_shape(name, s.shape, x.shape[1], kind, batched)
            except ValueError as e:
                raise RuntimeError(str(e)) from None
            s = Layout.state_in(s, batched)
            out.append((s if packing is None else packing.state_in(s)).contiguous())
        return out[0], (out[1] if lstm else None)

    def _outputs(
        self: Any,
        y: Tensor,
        h_n: Tensor,
        c_n: Tensor | None,
        batched: bool,
        packing: _Packing | None,
    ) -> Any:
        """Time-major results in the caller's layout: ``(output, h_n)``, or ``(output, (h_n,
        c_n))`` when ``c_n`` is given (LSTM); output packed when the input was."""
        if packing is not None:
            out: Any = packing.packed(y)
            h_n, c_n = packing.state_out(h_n), packing.state_out(c_n)  # type: ignore[assignment]
        else:
            out = Layout(self.batch_first).to_caller(y, batched)
            h_n, c_n = Layout.state_out(h_n, batched), Layout.state_out(c_n, batched)
        return (out, h_n) if c_n is None else (out, (h_n, c_n))


class _FastForward(_TorchCalls):
    """The ``forward`` shared by :class:`LSTM`, :class:`GRU` and :class:`RNN`: torch's layouts
    and types around :func:`fastrnn.functional.run_forward`."""

    @property
    def compute_dtype(self: Any) -> str:
        """The precision of the module's matrix products outside autocast: its dtype's name, or
        ``"bfloat16"`` (a float32 module). Settable: ``module.compute_dtype = "bfloat16"``, None
        goes back to the dtype. Inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` a float32
        module computes in bfloat16 whatever this says."""
        return check_compute_dtype(self._compute_set(), self._np_dtype())

    @compute_dtype.setter
    def compute_dtype(self: Any, value: Any) -> None:
        dtype = self._np_dtype()
        name = check_compute_dtype(value, dtype)
        self._fastrnn_compute_dtype = None if name == dtype.name else name

    def _compute_set(self: Any) -> str | None:
        """The compute_dtype set (None: the dtype; also for modules pickled before it existed)."""
        value: str | None = self.__dict__.get("_fastrnn_compute_dtype")
        return value

    def _np_dtype(self: Any) -> np.dtype[Any]:
        dtype = getattr(self, self._flat_weights_names[0]).dtype
        if dtype not in _NP_DTYPE:
            raise TypeError(
                f"{self._flat_weights_names[0]}: fastrnn runs float32 and float64, got {dtype}"
            )
        return _NP_DTYPE[dtype]

    def extra_repr(self: Any) -> str:
        s: str = torch.nn.RNNBase.extra_repr(self)
        return s + (", compute_dtype='bfloat16'" if self._compute_set() == "bfloat16" else "")

    def _spec(self: Any, autocast: torch.dtype | None) -> tuple[StackSpec, list[Tensor]]:
        """The stack this module runs (in bfloat16 under bfloat16 autocast), and its flat weights
        (checked: CPU, float32/64)."""
        self._update_flat_weights()
        weights: list[Tensor] = list(self._flat_weights)
        for n, w in zip(self._flat_weights_names, weights, strict=True):
            _check_cpu(n, w)
        wdtype = weights[0].dtype
        if wdtype not in _NP_DTYPE:
            raise TypeError(
                f"{self._flat_weights_names[0]}: fastrnn runs float32 and float64, got {wdtype}"
            )
        compute = "bfloat16" if autocast == torch.bfloat16 else self._compute_set()
        spec = StackSpec.cached(
            _CELL_OF_MODE[self.mode], self.input_size, self.hidden_size, self.num_layers,
            self.bidirectional, self.bias, self.proj_size, _NP_DTYPE[wdtype], compute,
        )  # fmt: skip
        return spec, weights

    def _dropout_masks(self: Any, spec: StackSpec, x: Tensor) -> Tensor | None:
        p = float(self.dropout)
        if not spec.uses_dropout(p, self.training):
            return None
        shape = spec.mask_shape(x.shape[0], x.shape[1])
        if p >= 1:
            return torch.zeros(shape, dtype=x.dtype)
        return torch.empty(shape, dtype=x.dtype).bernoulli_(1 - p).div_(1 - p)

    def _fastrnn_forward(self: Any, input: Any, hx: Any = None) -> Any:
        low = _autocast_dtype(getattr(self, self._flat_weights_names[0]).dtype)
        spec, weights = self._spec(low)
        x, batched, packing, xdtype = self._input(input, spec, weights[0].dtype, low is not None)
        h0, c0 = self._states(hx, spec, x, batched, packing, low is not None)
        masks = self._dropout_masks(spec, x)
        lengths = None if packing is None else packing.lengths
        tensors = [t for t in (x, h0, c0, *weights) if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            outs = RNNFunction.apply(spec, lengths, x, h0, c0, masks, *weights)[:-1]  # type: ignore[no-untyped-call]
        else:  # inference: no workspace, no per-step activations
            res = _run_forward(spec, lengths, x, h0, c0, masks, tuple(weights), False)
            outs = tuple(torch.from_numpy(a) for a in (res.y, res.h_n, res.c_n) if a is not None)
        y, h_n = outs[0], outs[1]
        c_n = outs[2] if spec.has_cell_state else None
        if low is not None:  # torch.nn's dtypes under autocast (differentiable casts)
            carried = hx if hx is None or not spec.has_cell_state else hx[1]
            state = xdtype if carried is None else carried.dtype
            ydt, hdt, cdt = _autocast_dtypes(
                self.mode, self.proj_size, packing is not None, low, state, xdtype
            )
            y, h_n = y.to(ydt), h_n.to(hdt)
            c_n = None if c_n is None else c_n.to(cdt)
        return self._outputs(y, h_n, c_n, batched, packing)


class LSTM(_FastForward, torch.nn.LSTM):
    """``torch.nn.LSTM`` (same arguments, parameters, outputs) running fastrnn's kernels.

    Args:
        *args: ``torch.nn.LSTM``'s (``input_size, hidden_size, num_layers=1,
            bias=True, batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
            device=None, dtype=None``).
        **kwargs: the same, by keyword.
        compute_dtype: the precision of the matrix products outside autocast: None for the
            module's dtype, or ``"bfloat16"`` (a float32 module). Also a settable attribute
            (None goes back to the dtype); inside ``torch.autocast("cpu",
            dtype=torch.bfloat16)`` a float32 module computes in bfloat16 whatever it says.

    Raises:
        ValueError: ``compute_dtype`` is not one of those; and ``torch.nn.LSTM``'s errors.
    """

    def __init__(self, *args: Any, compute_dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute_dtype = compute_dtype

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.LSTM.forward``.

        Args:
            input: ``(T, B, I)``, ``(B, T, I)`` with ``batch_first``, ``(T, I)`` unbatched, or a
                ``PackedSequence``; float32 or float64, on the CPU.
            hx: ``(h_0 (L*D, B, Hs), c_0 (L*D, B, H))`` (no batch axis unbatched), or None for
                zeros.

        Returns:
            ``(output, (h_n, c_n))``: ``output (T, B, D*Hs)`` in ``input``'s layout (packed if it
            was), ``h_n (L*D, B, Hs)``, ``c_n (L*D, B, H)``.

        Raises:
            TypeError: ``input`` is not a tensor or ``PackedSequence``; ``hx`` not a tensor (a
                tuple of two for LSTM).
            ValueError: a tensor is not on the CPU, or of another dtype than the weights'
                (outside autocast); ``input`` is not 2-D or 3-D.
            RuntimeError: the input size or a state's shape does not match (as ``torch.nn``).
        """
        return self._fastrnn_forward(input, hx)


class GRU(_FastForward, torch.nn.GRU):
    """``torch.nn.GRU`` (same arguments, parameters, outputs) running fastrnn's kernels.

    Args:
        *args: ``torch.nn.GRU``'s (``input_size, hidden_size, num_layers=1, bias=True,
            batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None``).
        **kwargs: the same, by keyword.
        compute_dtype: as :class:`LSTM`'s.

    Raises:
        ValueError: ``compute_dtype`` is not None, the dtype or ``"bfloat16"``; and
            ``torch.nn.GRU``'s errors.
    """

    def __init__(self, *args: Any, compute_dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute_dtype = compute_dtype

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.GRU.forward``.

        Args:
            input: as :meth:`LSTM.forward`'s.
            hx: ``h_0 (L*D, B, H)`` (no batch axis unbatched), or None for zeros.

        Returns:
            ``(output, h_n)``: ``output (T, B, D*H)`` in ``input``'s layout (packed if it was),
            ``h_n (L*D, B, H)``.

        Raises:
            TypeError, ValueError, RuntimeError: as :meth:`LSTM.forward`'s.
        """
        return self._fastrnn_forward(input, hx)


class RNN(_FastForward, torch.nn.RNN):
    """``torch.nn.RNN`` (same arguments, tanh or relu, parameters, outputs) running fastrnn's
    kernels.

    Args:
        *args: ``torch.nn.RNN``'s (``input_size, hidden_size, num_layers=1,
            nonlinearity="tanh", bias=True, batch_first=False, dropout=0.0, bidirectional=False,
            device=None, dtype=None``).
        **kwargs: the same, by keyword.
        compute_dtype: as :class:`LSTM`'s.

    Raises:
        ValueError: ``compute_dtype`` is not None, the dtype or ``"bfloat16"``; and
            ``torch.nn.RNN``'s errors.
    """

    def __init__(self, *args: Any, compute_dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute_dtype = compute_dtype

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.RNN.forward``: arguments, returns and errors as :meth:`GRU.forward`'s."""
        return self._fastrnn_forward(input, hx)


# ---- int8 inference ----------------------------------------------------------------------------


def _run_int8(
    layer: Any, lengths: NDArray | None, x: Tensor, h0: Tensor | None, c0: Tensor | None
) -> tuple[Tensor, ...]:
    """``(y, h_n[, c_n])``: the int8 layer's forward (a
    :class:`fastrnn.quantized.QuantizedLayer`: its packed weights, the kernels it calls) on
    time-major tensors' memory, checked by the caller."""
    res = F.run_forward_int8(
        layer.spec, x.detach().numpy(), layer.packed_entries(), _np(h0), _np(c0), lengths=lengths
    )
    return tuple(torch.from_numpy(a) for a in (res.y, res.h_n, res.c_n) if a is not None)


class _Int8Forward(torch.autograd.Function):
    """:func:`_run_int8` in the autograd graph when its input or ``hx`` requires a gradient.
    There is none through int8 products: the outputs depend on ``x``, ``h0``, ``c0`` in the
    graph so that a backward reaching them raises (rather than leaving the gradients silently
    missing)."""

    @staticmethod
    def forward(
        ctx: Any,
        layer: Any,
        lengths: NDArray | None,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
    ) -> tuple[Tensor, ...]:
        # forward(ctx, ...) rather than setup_context: torch binds the latter's arguments
        # through inspect.signature at every call (~70 us, more than a batch-1 step)
        ctx.name = type(layer).__name__
        return _run_int8(layer, lengths, x, h0, c0)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> Any:
        raise RuntimeError(
            f"fastrnn.torch.{ctx.name}: an int8 module is inference-only, there is no gradient "
            "through it; train the float model and quantize it again (quantize_dynamic), or run "
            "the int8 model under torch.no_grad() / torch.inference_mode()"
        )


class QuantizedModule(_TorchCalls, torch.nn.Module):
    """What :class:`QuantizedLSTM`, :class:`QuantizedGRU` and :class:`QuantizedRNN` share: an
    int8 ``torch.nn.Module`` that runs :func:`fastrnn.quantized.quantize_dynamic`'s layer.

    * Called as the ``torch.nn`` module it replaces -- ``forward(input, hx=None)`` returns
      ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) for a tensor in its layout
      (``batch_first``), an unbatched ``(T, I)`` tensor or a ``PackedSequence`` (packed out) --
      with float32 CPU tensors in and out. Another dtype raises ``ValueError`` (as the float
      modules; under ``torch.autocast`` a bfloat16 or float16 input or ``hx`` is cast to float32,
      and the outputs stay float32); a tensor on another device raises ``ValueError``.
    * The weights are buffers, ``state_dict()`` holds them under ``torch.nn``'s names: int8
      ``weight_ih_l0 (G*H, I)``, its float32 scale per row ``weight_ih_l0_scale (G*H,)`` (``W ~ q *
      scale[:, None]``; the same for ``weight_hh``, ``weight_hr``), float32 biases: the
      ``state_dict()`` of :func:`fastrnn.quantized.quantize_dynamic`'s layer. ``load_state_dict``
      checks them as that layer does (int8 in [-127, 127], finite scales >= 0, finite biases) and
      leaves the module unchanged when they fail. ``copy.deepcopy``, pickling and
      ``module.to("cpu")`` work; ``.to(dtype)``, ``.double()``, ``.half()`` leave the int8 weights,
      scales and biases as they are (as torch's quantized modules).
    * No parameters, nothing to train: a backward reaching the module (its input or ``hx``
      requiring a gradient, e.g. after a float ``Embedding``) raises ``RuntimeError``; the
      forward runs. ``train()`` changes nothing (no dropout, inference kernels).

    Made as one of those three, never directly.

    Args:
        *args: the ``torch.nn`` module's (``input_size, hidden_size, num_layers=1,
            ...``): that module, initialised as torch does, quantized. Load a quantized
            ``state_dict()`` into it, or make the module from a trained one with
            :meth:`from_float` or :func:`quantize_dynamic`.
        **kwargs: the same, by keyword.

    Raises:
        TypeError, ValueError: the ``torch.nn`` module's errors for its arguments.
    """

    _float_cls: type[torch.nn.RNNBase]  # the torch.nn module this one replaces
    _fastrnn_cls: type[Any]  # the fastrnn (NumPy) quantized layer it runs
    _spec: StackSpec  # the float32 stack
    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        torch.nn.Module.__init__(self)
        self._take(self._float_cls(*args, **kwargs))

    @classmethod
    def from_float(cls, mod: torch.nn.Module) -> Any:
        """The int8 module of ``mod``: its weights quantized per row by
        :func:`fastrnn.quantized.quantize_dynamic`, its options (``batch_first`` included) kept.

        Args:
            mod: a ``torch.nn`` module of this kind (or fastrnn.torch's), on the CPU, float32 or
                float64; left unchanged.

        Raises:
            TypeError: ``mod`` is not of this kind, or its weights not float32 or float64.
            ValueError: a weight is not on the CPU.
        """
        if not isinstance(mod, cls._float_cls):
            raise TypeError(
                f"mod: expected a torch.nn.{cls._float_cls.__name__}, got {type(mod).__name__}"
            )
        self = cls.__new__(cls)
        torch.nn.Module.__init__(self)
        self._take(mod)
        return self

    def _take(self, mod: torch.nn.RNNBase) -> None:
        """Options from ``mod``; buffers: its weights quantized by fastrnn.quantize_dynamic."""
        names = list(mod._flat_weights_names)
        weights = [getattr(mod, n) for n in names]
        for n, w in zip(names, weights, strict=True):
            _check_cpu(n, w)
        if weights[0].dtype not in _NP_DTYPE:
            raise TypeError(
                f"{names[0]}: fastrnn quantizes float32 and float64 modules, got "
                f"{weights[0].dtype} (convert the module with .float() first)"
            )
        for attr in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "dropout", "bidirectional", "proj_size"):  # fmt: skip
            setattr(self, attr, getattr(mod, attr))
        if isinstance(mod, torch.nn.RNN):
            self.nonlinearity = mod.nonlinearity
        spec = StackSpec(
            _CELL_OF_MODE[self.mode], self.input_size, self.hidden_size, self.num_layers,
            self.bidirectional, self.bias, self.proj_size, _NP_DTYPE[weights[0].dtype],
        )  # fmt: skip
        self._spec = spec.replace(dtype=np.float32, compute_dtype=None)
        layer = from_spec(spec, seed=0)
        layer.load_state_dict({n: w.detach().numpy() for n, w in zip(names, weights, strict=True)})
        q = _fq.quantize_dynamic(layer)
        with torch.inference_mode(False):  # ordinary tensors (their versions tell changes)
            for name, a in q.state_dict().items():
                self.register_buffer(name, torch.from_numpy(a))
        self.training = False

    # ---- the fastrnn layer underneath ---------------------------------------------------------

    def _layer(self) -> Any:
        """The fastrnn quantized layer holding the buffers' values (copied; remade when a buffer
        is replaced or changed in place; at every call if a buffer is an inference tensor, which
        has no version counter)."""
        try:
            key: list[tuple[Any, Any]] = [
                (t, t._version) for t in self._buffers.values() if t is not None
            ]
        except RuntimeError:  # an inference tensor: no version counter
            key = [(t, object()) for t in self._buffers.values()]
        cached = self.__dict__.get("_fastrnn_layer")
        if cached is not None and len(cached[0]) == len(key):
            if all(a is b and va == vb for (a, va), (b, vb) in zip(cached[0], key, strict=True)):
                return cached[1]
        layer = self._checked_layer(dict(self._buffers))
        self.__dict__["_fastrnn_layer"] = (key, layer)
        return layer

    def _checked_layer(self, values: dict[str, Any]) -> Any:
        """The fastrnn layer of these buffer values (its checks: dtypes, shapes, ranges)."""
        for name, t in values.items():
            if isinstance(t, torch.Tensor):
                _check_cpu(name, t)
        params = {n: t.detach().numpy() if isinstance(t, torch.Tensor) else t
                  for n, t in values.items()}  # fmt: skip
        return self._fastrnn_cls(self._spec, params)

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """torch's loading, after the fastrnn layer's checks of the values (a failure is one of
        load_state_dict's error messages; this module is then left unchanged)."""
        values: dict[str, Any] = dict(self._buffers)
        for name in values:
            if prefix + name in state_dict:
                values[name] = state_dict[prefix + name]
        try:
            self._checked_layer(values)
        except (TypeError, ValueError) as e:
            where = f" {prefix[:-1]!r}" if prefix else ""
            error_msgs.append(f"{type(self).__name__}{where}: {e}")
            return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        """torch's ``_apply`` (``to``, ``cpu``, ``double``, ...) keeping every buffer's dtype: a
        dtype change would turn the scales and biases into other numbers than the weights were
        quantized with."""
        before = dict(self._buffers)
        out = super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        for name, old in before.items():
            new = self._buffers[name]
            if old is not None and new is not None and new.dtype != old.dtype:
                self._buffers[name] = old.to(new.device)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())  # type: ignore[no-untyped-call]
        state.pop("_fastrnn_layer", None)  # a copy of the buffers, remade on use
        return state

    # ---- forward ------------------------------------------------------------------------------

    def _dtype_hint(self, have: torch.dtype, want: torch.dtype) -> str:
        return (
            f"convert the input (input.to({want})): an int8 module computes in float32 around "
            "its int8 products"
        )

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As the ``torch.nn`` module's forward (:meth:`LSTM.forward`, :meth:`GRU.forward`), float32
        in and out, the matrix products in int8.

        Raises:
            TypeError: as :meth:`LSTM.forward`'s.
            ValueError: a tensor is not on the CPU or not float32 (outside autocast); ``input``
                is not 2-D or 3-D.
            RuntimeError: the input size or a state's shape does not match (as ``torch.nn``); a
                backward reaches the module.
        """
        layer = self._layer()
        spec = layer.spec
        autocast = _cpu_autocast_enabled()
        x, batched, packing, _ = self._input(input, spec, torch.float32, autocast)
        h0, c0 = self._states(hx, spec, x, batched, packing, autocast)
        lengths = None if packing is None else packing.lengths
        if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, h0, c0)
        ):  # a backward would reach this module: it raises
            outs = _Int8Forward.apply(layer, lengths, x, h0, c0)  # type: ignore[no-untyped-call]
        else:
            outs = _run_int8(layer, lengths, x, h0, c0)
        c_n = outs[2] if spec.has_cell_state else None
        return self._outputs(outs[0], outs[1], c_n, batched, packing)

    def flatten_parameters(self) -> None:
        """Nothing to do (``torch.nn``'s modules compact their weights for cuDNN here); kept so
        that code calling it runs unchanged."""

    def extra_repr(self) -> str:
        s: str = torch.nn.RNNBase.extra_repr(self)  # type: ignore[arg-type]
        return s + ", dtype=torch.qint8"


class QuantizedLSTM(QuantizedModule):
    """int8 ``torch.nn.LSTM`` (``proj_size`` too) running
    :class:`fastrnn.quantized.QuantizedLSTM`; see :class:`QuantizedModule`.
    ``forward(input, hx=None) -> (output, (h_n, c_n))``."""

    _float_cls = torch.nn.LSTM
    _fastrnn_cls = _fq.QuantizedLSTM


class QuantizedGRU(QuantizedModule):
    """int8 ``torch.nn.GRU`` running :class:`fastrnn.quantized.QuantizedGRU`; see
    :class:`QuantizedModule`. ``forward(input, hx=None) -> (output, h_n)``."""

    _float_cls = torch.nn.GRU
    _fastrnn_cls = _fq.QuantizedGRU


class QuantizedRNN(QuantizedModule):
    """int8 ``torch.nn.RNN`` (tanh or relu) running :class:`fastrnn.quantized.QuantizedRNN`; see
    :class:`QuantizedModule`. ``forward(input, hx=None) -> (output, h_n)``."""

    _float_cls = torch.nn.RNN
    _fastrnn_cls = _fq.QuantizedRNN
    nonlinearity: str


_QUANTIZED: dict[type[torch.nn.Module], type[QuantizedModule]] = {
    torch.nn.LSTM: QuantizedLSTM,
    torch.nn.GRU: QuantizedGRU,
    torch.nn.RNN: QuantizedRNN,
}
_INT8_DTYPES = (torch.qint8, torch.int8)


def _quantizable(m: torch.nn.Module) -> type[QuantizedModule] | None:
    for base, cls in _QUANTIZED.items():
        if isinstance(m, base):
            return cls
    return None


def _selector(qconfig_spec: Any) -> Any:
    """``qconfig_spec`` (None, or a set of module types and/or qualified names) as a predicate
    of ``(name, module)``; the names it must find."""
    if qconfig_spec is None:
        return (lambda name, m: True), set()
    if isinstance(qconfig_spec, (dict, str)) or not isinstance(
        qconfig_spec, (set, frozenset, list, tuple)
    ):
        raise TypeError(
            "qconfig_spec: expected None or a set of module types (torch.nn.LSTM, torch.nn.GRU, "
            f"torch.nn.RNN) and/or module names, got {type(qconfig_spec).__name__} (per-module "
            "qconfigs are torch.ao's: fastrnn has one, per-row int8 weights)"
        )
    types, names = [], set()
    for entry in qconfig_spec:
        if isinstance(entry, str):
            names.add(entry)
        elif isinstance(entry, type) and any(issubclass(entry, b) for b in _QUANTIZED):
            types.append(entry)
        else:
            what = entry.__name__ if isinstance(entry, type) else repr(entry)
            raise ValueError(
                f"qconfig_spec: fastrnn quantizes torch.nn.LSTM, GRU and RNN (and their "
                f"subclasses), got {what}; leave it out (Linear layers stay float: torchao or "
                "torch.ao quantize those)"
            )

    def chosen(name: str, m: torch.nn.Module) -> bool:
        in_named = any(name == n or name.startswith(n + ".") for n in names)
        return in_named or isinstance(m, tuple(types))

    return chosen, names


def quantize_dynamic(
    model: torch.nn.Module,
    qconfig_spec: Any = None,
    dtype: torch.dtype = torch.qint8,
    mapping: Any = None,
    inplace: bool = False,
) -> torch.nn.Module:
    """``model`` with its recurrent layers in int8: ``torch.ao.quantization.quantize_dynamic``'s
    call, for the layers it no longer serves.

    Every ``torch.nn.LSTM``, ``GRU`` and ``RNN`` in ``model`` (fastrnn.torch's too, and
    subclasses; ``model`` itself if it is one) is replaced by :class:`QuantizedLSTM`,
    :class:`QuantizedGRU` or :class:`QuantizedRNN` (:meth:`~QuantizedModule.from_float`): int8
    weights with one float32 scale per row, activations quantized on the fly, products summed in
    int32 (:func:`fastrnn.quantized.quantize_dynamic`). Everything else -- ``Linear``,
    ``Embedding``, convolutions -- stays float, untouched (torchao quantizes ``Linear``). A module
    shared by several parents is replaced by one int8 module. The result is put in eval mode, as
    torch's.

    Args:
        model: a ``torch.nn.Module`` on the CPU with float32 or float64 recurrent layers.
        qconfig_spec: None (every recurrent layer), or a set of module types (``{torch.nn.LSTM}``:
            those and their subclasses) and/or qualified names (``{"encoder.rnn"}``: that module
            and the recurrent layers inside it). Other types (``torch.nn.Linear``), names that
            match no module and per-module qconfig dicts raise.
        dtype: ``torch.qint8`` (or ``torch.int8``), the only one (no float16).
        mapping: None only (fastrnn's modules replace torch's; there is no other mapping).
        inplace: False (the default, as torch): ``model`` is deep-copied and left unchanged;
            True: its submodules are replaced in place and ``model`` returned (a recurrent
            ``model`` itself cannot be replaced in place: the new module is returned and
            ``model`` is unchanged).

    Returns:
        The model with int8 recurrent layers (the int8 module when ``model`` is one).

    Raises:
        TypeError: ``model`` is not a torch module, ``qconfig_spec`` is not a set.
        ValueError: ``dtype`` is not int8, ``mapping`` is given, ``qconfig_spec`` names a type
            fastrnn does not quantize or a name no module has, or nothing is left to quantize;
            a recurrent layer is not on the CPU.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model: expected a torch.nn.Module, got {type(model).__name__} "
            "(for fastrnn's own layers: fastrnn.quantize_dynamic)"
        )
    if dtype not in _INT8_DTYPES:
        raise ValueError(
            f"dtype: fastrnn quantizes to torch.qint8 (int8 weights) only, got {dtype!r}"
        )
    if mapping is not None:
        raise ValueError("mapping: not supported (fastrnn's int8 modules replace torch.nn's)")
    targets = _targets(model, qconfig_spec)
    if "" in targets:  # the model is a recurrent layer: its int8 module (model unchanged)
        return _int8_of(model)
    if not inplace:
        model = copy.deepcopy(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    # every conversion first (an error leaves an in-place model unchanged); one per module
    int8 = {id(modules[n]): _int8_of(modules[n]) for n in targets}
    for parent in list(model.modules()):
        for child_name, child in list(parent._modules.items()):  # shared children: every name
            if id(child) in int8:
                setattr(parent, child_name, int8[id(child)])
    return model.eval()


def _int8_of(m: torch.nn.Module) -> QuantizedModule:
    cls = _quantizable(m)
    assert cls is not None
    out: QuantizedModule = cls.from_float(m)
    return out


def _targets(model: torch.nn.Module, qconfig_spec: Any) -> list[str]:
    """The qualified names of the recurrent modules of ``model`` that ``qconfig_spec`` selects
    (``""``: the model itself); raises if there are none or a name is not in the model."""
    chosen, names = _selector(qconfig_spec)
    known = dict(model.named_modules(remove_duplicate=False))
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        raise ValueError(f"qconfig_spec: no module named {unknown} in the model")
    targets = [n for n, m in known.items() if _quantizable(m) is not None and chosen(n, m)]
    if not targets:
        raise ValueError(
            f"model: no torch.nn.LSTM, GRU or RNN to quantize in {type(model).__name__}"
            + ("" if qconfig_spec is None else f" matching qconfig_spec={qconfig_spec!r}")
        )
    return targets
