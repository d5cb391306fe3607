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
/ unbatched ``(T, I)`` input, :class:`~torch.nn.utils.rnn.PackedSequence` in and out (sorted or
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
* ``compute_dtype`` (constructor keyword and settable attribute, as on :class:`fastrnn.LSTM`):
  None for the module's dtype, or ``"bfloat16"`` (float32 modules): the products run on bfloat16
  operands with float32 accumulation (:data:`fastrnn.spec.COMPUTE_DTYPES`); inputs, outputs,
  states and gradients stay float32.
* Autocast: inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` a float32 module runs its
  products in bfloat16 (whatever its ``compute_dtype``) and returns the dtypes ``torch.nn``'s
  module returns there (see :func:`_autocast_dtypes`; measured on torch 2.13); the gradients of
  the parameters are float32, those of the input and ``hx`` come back in their own dtypes. Inputs
  and ``hx`` may then be float32, bfloat16 or float16 (as torch accepts). Under
  ``dtype=torch.float16`` the products run in the module's ``compute_dtype`` (fastrnn has no
  float16 products; float32 is the more precise stand-in) and the outputs take torch's dtypes.
  float64 modules and ``torch.autocast(..., enabled=False)`` are untouched, as in torch.
* Threads: fastrnn's kernels use :func:`fastrnn.set_num_threads` (default
  ``FASTRNN_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs this process may use), not
  ``torch.set_num_threads``; set both when you change one.

torch is optional: ``import fastrnn`` never imports it; importing this module without torch
installed raises ImportError naming the extra (``pip install "fastrnn[torch]"``). The extension is
not compiled against torch: any torch that can share CPU tensors with NumPy works.
"""

from __future__ import annotations

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
from .spec import Layout, StackSpec, check_compute_dtype

__all__ = ["GRU", "LSTM", "RNN", "RNNFunction"]

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
        res = _run_forward(spec, lengths, x, h0, c0, masks, weights, True)
        assert res.workspace is not None
        out = [res.y, res.h_n] + ([res.c_n] if spec.has_cell_state else []) + [res.workspace]
        return tuple(torch.from_numpy(a) for a in out)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        spec, lengths, x, h0, c0, masks, *weights = inputs
        ctx.spec, ctx.lengths = spec, lengths
        ctx.consumed = False
        ctx.mark_non_differentiable(output[-1])
        ctx.save_for_backward(x, h0, c0, masks, output[-1], *weights)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dh_n: Tensor | None, *rest: Tensor | None) -> Any:
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
    (:class:`_FastForward`) and the int8 ones: the input (a tensor in
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
    """``torch.nn.LSTM`` (same arguments, parameters, outputs) running fastrnn's kernels;
    ``compute_dtype``: see :attr:`compute_dtype`."""

    def __init__(self, *args: Any, compute_dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute_dtype = compute_dtype

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.LSTM.forward``: ``(output, (h_n, c_n))``."""
        return self._fastrnn_forward(input, hx)


class GRU(_FastForward, torch.nn.GRU):
    """``torch.nn.GRU`` (same arguments, parameters, outputs) running fastrnn's kernels;
    ``compute_dtype``: see :attr:`compute_dtype`."""

    def __init__(self, *args: Any, compute_dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute_dtype = compute_dtype

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.GRU.forward``: ``(output, h_n)``."""
        return self._fastrnn_forward(input, hx)


class RNN(_FastForward, torch.nn.RNN):
    """``torch.nn.RNN`` (same arguments, tanh or relu, parameters, outputs) running fastrnn's
    kernels; ``compute_dtype``: see :attr:`compute_dtype`."""

    def __init__(self, *args: Any, compute_dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute_dtype = compute_dtype

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.RNN.forward``: ``(output, h_n)``."""
        return self._fastrnn_forward(input, hx)
