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
  (a clear RuntimeError), forward-mode AD, ``torch.jit`` tracing or scripting, autocast (the
  kernels compute in the module's dtype).
* Threads: fastrnn's kernels use :func:`fastrnn.set_num_threads` (default ``OMP_NUM_THREADS``,
  else every core), not ``torch.set_num_threads``; set both when you change one.

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

__all__ = ["GRU", "LSTM", "RNN", "RNNFunction"]

Tensor = torch.Tensor

_CELL_OF_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


class _Config:
    """The non-tensor arguments of one call (hashable-free, kept on the autograd context)."""

    __slots__ = ("bidirectional", "cell", "has_c", "lengths", "num_layers", "per_layer", "proj")

    def __init__(
        self,
        cell: str,
        num_layers: int,
        bidirectional: bool,
        proj: int,
        per_layer: int,
        lengths: np.ndarray[Any, Any] | None,
    ) -> None:
        self.cell = cell
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.proj = proj
        self.per_layer = per_layer  # tensors per (layer, direction) in the flat weight list
        self.lengths = lengths
        self.has_c = cell == "lstm"

    def params(self, weights: tuple[np.ndarray[Any, Any], ...]) -> list[F.LayerParams]:
        """The flat torch weight list (w_ih, w_hh, [b_ih, b_hh], [w_hr] per layer and direction)
        as fastrnn's per-(layer, direction) parameters."""
        k, out = self.per_layer, []
        for i in range(0, len(weights), k):
            w = weights[i : i + k]
            bias = k - (1 if self.proj else 0) == 4
            out.append(
                F.LayerParams(
                    w[0],
                    w[1],
                    w[2] if bias else None,
                    w[3] if bias else None,
                    w[-1] if self.proj else None,
                )
            )
        return out

    def forward(
        self,
        x: np.ndarray[Any, Any],
        weights: tuple[np.ndarray[Any, Any], ...],
        h0: np.ndarray[Any, Any] | None,
        c0: np.ndarray[Any, Any] | None,
        masks: np.ndarray[Any, Any] | None,
        training: bool,
    ) -> F.ForwardResult:
        return F.stack_forward(
            self.cell,
            x,
            self.params(weights),
            h0,
            c0,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            proj_size=self.proj,
            lengths=self.lengths,
            dropout_masks=masks,
            training=training,
        )


def _np(t: Tensor | None) -> np.ndarray[Any, Any] | None:
    """A CPU tensor's memory as a NumPy array (no copy)."""
    return None if t is None else t.detach().numpy()


def _tensor(a: np.ndarray[Any, Any] | None) -> Tensor | None:
    return None if a is None else torch.from_numpy(a)


class RNNFunction(torch.autograd.Function):
    """``(cfg, x, h0, c0, masks, *weights) -> (y, h_n[, c_n], workspace)`` for a whole stack.

    ``x (T, B, I)`` time-major, ``h0 (L*D, B, Hs)`` or None, ``c0 (L*D, B, H)`` or None (LSTM),
    ``masks (L-1, T, B, D*Hs)`` or None (dropout multipliers), ``weights``: the module's flat weight
    list in torch's order; all contiguous CPU tensors of one dtype. ``workspace`` (not
    differentiable) is what the backward needs, returned so that it is saved like any tensor
    (saved-tensor hooks and checkpointing see it). Use the modules rather than this.
    """

    @staticmethod
    def forward(
        cfg: _Config,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        masks: Tensor | None,
        *weights: Tensor,
    ) -> tuple[Tensor, ...]:
        ws_np = tuple(_np(w) for w in weights)
        res = cfg.forward(_np(x), ws_np, _np(h0), _np(c0), _np(masks), True)  # type: ignore[arg-type]
        assert res.workspace is not None
        out = [res.y, res.h_n] + ([res.c_n] if cfg.has_c else []) + [res.workspace]
        return tuple(torch.from_numpy(a) for a in out)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        cfg, x, h0, c0, masks, *weights = inputs
        ctx.cfg = cfg
        ctx.consumed = False
        ctx.mark_non_differentiable(output[-1])
        ctx.save_for_backward(x, h0, c0, masks, output[-1], *weights)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dh_n: Tensor | None, *rest: Tensor | None) -> Any:
        cfg: _Config = ctx.cfg
        dc_n = rest[0] if cfg.has_c else None
        saved = ctx.saved_tensors
        x, h0, c0, masks, workspace, *weights = saved
        with torch.no_grad():
            try:
                xn, ws_np = _np(x), tuple(_np(w) for w in weights)
                wsn = _np(workspace)
                dyn, dhn, dcn = _np(dy), _np(dh_n), _np(dc_n)
            except RuntimeError as e:  # functorch's wrapped tensors have no storage
                raise RuntimeError(
                    "fastrnn.torch: the torch.func transforms (grad, vjp, jacrev, vmap) are not "
                    "supported; use torch.autograd (loss.backward(), torch.autograd.grad)"
                ) from e
            if ctx.consumed:
                # a second backward through the same graph (retain_graph=True, gradcheck): the
                # forward is deterministic, so recomputing gives exactly the activations saved
                wsn = cfg.forward(xn, ws_np, _np(h0), _np(c0), _np(masks), True).workspace  # type: ignore[arg-type]
            ctx.consumed = True  # the kernels' backward overwrites the workspace
            r = F.stack_backward(
                cfg.cell,
                xn,  # type: ignore[arg-type]
                cfg.params(ws_np),  # type: ignore[arg-type]
                wsn,  # type: ignore[arg-type]
                dyn,
                dhn,
                dcn,
                num_layers=cfg.num_layers,
                bidirectional=cfg.bidirectional,
                proj_size=cfg.proj,
                lengths=cfg.lengths,
                need_dx=ctx.needs_input_grad[1],  # skipped when the input is data
            )
        need = ctx.needs_input_grad
        grads = [g for layer in r.grads for g in layer if g is not None]
        out: list[Tensor | None] = [
            _tensor(r.dx),
            _tensor(r.dh0) if need[2] else None,
            _tensor(r.dc0) if need[3] else None,
            None,
            *(torch.from_numpy(g) if n else None for g, n in zip(grads, need[5:], strict=True)),
        ]
        # The gradients are not differentiable again. With create_graph=True they would silently
        # be constants (a zero second derivative); like torch's @once_differentiable, but also when
        # only the inputs (not the incoming gradients) require grad, attach a node that raises if
        # anything is differentiated through them.
        inputs = [t for t in (*saved, dy, dh_n, dc_n) if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
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
        return (None, *out)


def _check_cpu(name: str, t: Tensor) -> None:
    if t.device.type != "cpu":
        raise ValueError(
            f"{name}: fastrnn.torch runs on CPU tensors only, got a tensor on {t.device} "
            "(move the module and the data to the CPU, or use torch.nn's module on this device)"
        )


def _check_state(name: str, t: Any, expected: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    _check_cpu(name, t)
    if tuple(t.shape) != expected:
        raise RuntimeError(f"{name}: expected size {expected}, got {list(t.shape)}")
    if t.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype} (the input's), got {t.dtype}")
    return t


def _packed_index(batch_sizes: Tensor) -> tuple[Tensor, np.ndarray[Any, Any]]:
    """For packed data (rows of step 0, then step 1, ...; the sequences sorted by decreasing
    length): each row's position ``t*B + b`` in a padded (T, B) grid, and each sequence's length."""
    bs = batch_sizes.numpy().astype(np.int64)
    B = int(bs[0])
    index = np.concatenate([t * B + np.arange(n, dtype=np.int64) for t, n in enumerate(bs)])
    lengths = (bs[None, :] > np.arange(B)[:, None]).sum(axis=1)
    return torch.from_numpy(index), lengths


class _FastForward:
    """The ``forward`` shared by :class:`LSTM`, :class:`GRU` and :class:`RNN`."""

    def _fastrnn_forward(self: Any, input: Any, hx: Any = None) -> Any:
        self._update_flat_weights()
        cell = _CELL_OF_MODE[self.mode]
        is_lstm = cell == "lstm"
        D = 2 if self.bidirectional else 1
        LD = self.num_layers * D
        Hs = self.proj_size if self.proj_size > 0 else self.hidden_size
        weights: list[Tensor] = list(self._flat_weights)
        for n, w in zip(self._flat_weights_names, weights, strict=True):
            _check_cpu(n, w)
        wdtype = weights[0].dtype
        if wdtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{self._flat_weights_names[0]}: fastrnn runs float32 and float64, got {wdtype}"
            )

        packed = isinstance(input, PackedSequence)
        sorted_indices = unsorted_indices = None
        lengths = None
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            if data.dim() != 2:
                raise RuntimeError(f"input: packed data must have 2 dimensions, got {data.dim()}")
            index, lengths = _packed_index(batch_sizes)
            T, B = len(batch_sizes), int(batch_sizes[0])
            is_batched, batch_dim = True, 1
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(
                    f"input: expected a tensor or a PackedSequence, got {type(input).__name__}"
                )
            if input.dim() not in (2, 3):
                raise ValueError(
                    "input: expected a 2-D (unbatched) or 3-D (batched) tensor, "
                    f"got {input.dim()}-D"
                )
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            data = input if is_batched else input.unsqueeze(batch_dim)
            if self.batch_first:
                data = data.transpose(0, 1)
            T, B = data.shape[0], data.shape[1]
        _check_cpu("input", data)
        if data.layout != torch.strided:
            raise TypeError(f"input: expected a dense (strided) tensor, got layout {data.layout}")
        if T == 0:
            raise RuntimeError("input: expected sequence length to be larger than 0 (as torch.nn)")
        if data.dtype != wdtype:
            raise ValueError(
                f"input: dtype {data.dtype} does not match the weights' dtype {wdtype}; "
                f"convert the input (input.to({wdtype})) or the module (module.to({data.dtype}))"
            )
        if data.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input: size of the last dimension must be input_size={self.input_size}, "
                f"got {data.shape[-1]}"
            )

        h0 = c0 = None
        if hx is not None:
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(
                        f"hx: expected a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}"
                    )
                h0, c0 = hx
            else:
                h0 = hx
            sizes = [(LD, B, Hs), (LD, B, self.hidden_size)]
            states = []
            names = ("hx[0]", "hx[1]") if is_lstm else ("hx",)
            for k, (name, s) in enumerate(zip(names, (h0, c0)[: len(names)], strict=True)):
                if not is_batched:
                    if not isinstance(s, torch.Tensor) or s.dim() != 2:
                        got = f"{s.dim()}-D" if isinstance(s, torch.Tensor) else type(s).__name__
                        raise RuntimeError(
                            f"{name}: for unbatched 2-D input the state must be 2-D, got {got}"
                        )
                    s = s.unsqueeze(1)
                s = _check_state(name, s, sizes[k], wdtype)
                if sorted_indices is not None:
                    s = s.index_select(1, sorted_indices)
                states.append(s.contiguous())
            h0, c0 = (states[0], states[1]) if is_lstm else (states[0], None)

        x = data.contiguous()
        if packed:
            padded = x.new_zeros(T * B, x.shape[-1])
            x = padded.index_copy(0, index, x).view(T, B, -1)

        masks = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            shape = (self.num_layers - 1, T, B, D * Hs)
            p = float(self.dropout)
            masks = (
                torch.zeros(shape, dtype=wdtype)
                if p >= 1
                else torch.empty(shape, dtype=wdtype).bernoulli_(1 - p).div_(1 - p)
            )

        cfg = _Config(
            cell,
            self.num_layers,
            bool(self.bidirectional),
            int(self.proj_size),
            len(weights) // LD,
            lengths,
        )
        tensors = [t for t in (x, h0, c0, *weights) if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            outs = RNNFunction.apply(cfg, x, h0, c0, masks, *weights)[:-1]  # type: ignore[no-untyped-call]
        else:  # inference: no workspace, no per-step activations
            res = cfg.forward(
                _np(x),  # type: ignore[arg-type]
                tuple(_np(w) for w in weights),  # type: ignore[misc]
                _np(h0),
                _np(c0),
                _np(masks),
                False,
            )
            outs = tuple(torch.from_numpy(a) for a in (res.y, res.h_n, res.c_n) if a is not None)
        y, h_n = outs[0], outs[1]
        c_n = outs[2] if is_lstm else None

        if packed:
            y = y.reshape(T * B, -1).index_select(0, index)
            out: Any = PackedSequence(y, batch_sizes, sorted_indices, unsorted_indices)
            if unsorted_indices is not None:
                h_n = h_n.index_select(1, unsorted_indices)
                c_n = None if c_n is None else c_n.index_select(1, unsorted_indices)
        else:
            if self.batch_first:
                y = y.transpose(0, 1)
            if not is_batched:
                y = y.squeeze(batch_dim)
                h_n = h_n.squeeze(1)
                c_n = None if c_n is None else c_n.squeeze(1)
            out = y
        return (out, (h_n, c_n)) if is_lstm else (out, h_n)


class LSTM(_FastForward, torch.nn.LSTM):
    """``torch.nn.LSTM`` (same arguments, parameters, outputs) running fastrnn's kernels."""

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.LSTM.forward``: ``(output, (h_n, c_n))``."""
        return self._fastrnn_forward(input, hx)


class GRU(_FastForward, torch.nn.GRU):
    """``torch.nn.GRU`` (same arguments, parameters, outputs) running fastrnn's kernels."""

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.GRU.forward``: ``(output, h_n)``."""
        return self._fastrnn_forward(input, hx)


class RNN(_FastForward, torch.nn.RNN):
    """``torch.nn.RNN`` (same arguments, tanh or relu, parameters, outputs) running fastrnn's
    kernels."""

    def forward(self, input: Any, hx: Any = None) -> Any:
        """As ``torch.nn.RNN.forward``: ``(output, h_n)``."""
        return self._fastrnn_forward(input, hx)
