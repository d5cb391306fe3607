"""int8 inference: :func:`quantize_dynamic` and the quantized layers it returns.

``fastrnn.quantize_dynamic(layer)`` turns a trained :class:`~fastrnn.layers.RNN`,
:class:`~fastrnn.layers.LSTM`, :class:`~fastrnn.layers.GRU`,
:class:`~fastrnn.layers.LayerNormLSTM` or :class:`~fastrnn.layers.LayerNormGRU` (any options:
layers, directions, ``proj_size``, both GRU forms, ``batch_first``, peepholes, ONNX's
``reverse``, ``clip`` and ``input_forget``) into an inference-only layer with the same call and
outputs whose weight matrices are int8 with one float32 scale per output row (per gate and unit)::

    W ~ q * scale[:, None],   scale = max|row| / 127,   q = rint(W / scale) in [-127, 127]

At every matrix product the activation operand (the inputs, ``h``, GRU's ``r*h``, LSTM's
``o*tanh(c)`` before the projection) is quantized the same way, per row (per step and sequence),
the int8 products are summed exactly in int32 and the sum is dequantized straight into the
float32 gates: ``sum * scale_x[row] * scale_w[col]``. Biases, peepholes, the layer norms (their
gains, biases and arithmetic), activations and LSTM's cell state stay float32
(:func:`fastrnn.reference.quantize_rows` and :func:`fastrnn.reference.int8_matmul` state the
arithmetic; the kernels compute exactly those integers).

The layer's ``state_dict()`` holds the int8 weights under PyTorch's names
(``weight_ih_l0``: int8 ``(G*H, I)``), their scales (``weight_ih_l0_scale``: float32 ``(G*H,)``)
and the float32 biases, and loads back with :meth:`QuantizedLayer.load_state_dict`. The weights
take a quarter of the float32 memory (plus one scale per row).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import functional as F
from ._args import check_flag, float_array
from .layers import RecurrentLayer, State
from .reference import QuantizedWeight
from .spec import StackSpec

__all__ = [
    "QuantizedGRU",
    "QuantizedLSTM",
    "QuantizedLayer",
    "QuantizedLayerNormGRU",
    "QuantizedLayerNormLSTM",
    "QuantizedRNN",
    "quantize_dynamic",
    "quantized_param_shapes",
]

Array = NDArray[Any]
_WEIGHTS = ("weight_ih", "weight_hh", "weight_hr")
SCALE_SUFFIX = "_scale"


def _is_weight(name: str) -> bool:
    return name.startswith(_WEIGHTS) and not name.endswith(SCALE_SUFFIX)


def quantized_param_shapes(spec: StackSpec) -> dict[str, tuple[int, ...]]:
    """The parameters of the int8 stack of ``spec`` and their shapes, in PyTorch's order.

    Args:
        spec: the float stack.

    Returns:
        ``{name: shape}``: each weight matrix (int8, ``weight_ih_l0 (G*H, I)``...) followed by
        its scales (``<name>_scale``, float32, one per row: ``(G*H,)``), the biases and the
        peepholes (``weight_peephole_l0``, float32).
    """
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in spec.param_shapes().items():
        out[name] = shape
        if _is_weight(name):
            out[name + SCALE_SUFFIX] = shape[:1]
    return out


class QuantizedLayer(RecurrentLayer):
    """An int8 recurrent layer for inference (made by :func:`quantize_dynamic`).

    Called as the float layer it came from -- ``layer(x, hx=None, lengths=None)`` returns
    ``(y, h_n)`` (LSTM: ``(y, (h_n, c_n))``) -- with float32 inputs, states and outputs.
    :meth:`backward` raises: quantized layers do not train. Its parameters
    (:func:`quantized_param_shapes`): for each weight matrix of the float layer the int8 values
    under the same name and a float32 scale per row under ``<name>_scale``; the biases as float32.

    Args:
        spec: the stack (computed as float32 around the int8 products, whatever its dtype).
        params: the parameters, checked and copied as by :meth:`load_state_dict`.
        batch_first: as :class:`~fastrnn.layers.RecurrentLayer`'s.
        zoneout, zoneout_cell: the zoneout probabilities of the float layer (as
            :class:`~fastrnn.layers.RecurrentLayer`'s): inference's expectation
            ``h_t = p*h_(t-1) + (1 - p)*h~_t`` (and ``c``'s likewise).

    Raises:
        TypeError: ``spec`` is not a :class:`~fastrnn.spec.StackSpec`; and as
            :meth:`load_state_dict`.
        ValueError: ``zoneout`` or ``zoneout_cell`` not a number in [0, 1) (``zoneout_cell``
            > 0 for a cell without it); and as :meth:`load_state_dict`.
    """

    def __init__(
        self,
        spec: StackSpec,
        params: Mapping[str, Any],
        *,
        batch_first: bool = False,
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
    ):
        if not isinstance(spec, StackSpec):
            raise TypeError(f"spec: expected a fastrnn.StackSpec, got {type(spec).__name__}")
        self._spec = spec.replace(dtype=np.float32, compute_dtype=None)
        self.batch_first = check_flag("batch_first", batch_first)
        self.dropout = 0.0
        self.zoneout = spec.check_zoneout("zoneout", zoneout)
        self.zoneout_cell = spec.check_zoneout("zoneout_cell", zoneout_cell, "c")
        self.training = False
        self.grads = {}
        self._saved = None
        self._params = {}
        self.load_state_dict(params)

    # ---- parameters ---------------------------------------------------------------------------

    @property
    def compute_dtype(self) -> str:
        """The products' precision, ``"int8"``; fixed (setting it is an AttributeError;
        :meth:`dequantize` gives a float layer)."""
        return "int8"

    @compute_dtype.setter
    def compute_dtype(self, value: Any) -> None:
        raise AttributeError(
            "compute_dtype: a quantized layer computes in int8; use dequantize() for a float layer"
        )

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The parameters in PyTorch's order, each weight matrix followed by its scales
        (:func:`quantized_param_shapes`)."""
        return quantized_param_shapes(self.spec)

    def reset_parameters(self, seed: int | np.random.Generator | None = None) -> None:
        """Not available: a quantized layer holds the weights it was made from.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError(
            "reset_parameters: a quantized layer holds the weights it was made from; quantize "
            "a freshly initialised float layer instead"
        )

    def _checked_param(self, what: str, value: Any, shape: tuple[int, ...]) -> Array:
        """int8 weights (values in [-127, 127]), finite non-negative float32 scales, finite
        float32 biases; copied."""
        name = what.split("'")[1] if "'" in what else what
        if _is_weight(name):
            v = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            if v.dtype != np.int8:
                raise TypeError(f"{what}: expected int8 values (a quantized weight), got {v.dtype}")
            if v.shape != shape:
                raise ValueError(f"{what}: expected shape {shape}, got {v.shape}")
            if v.size and int(v.min()) < -127:
                raise ValueError(f"{what}: int8 weights are symmetric, in [-127, 127]; got -128")
            return np.array(v, dtype=np.int8, order="C", copy=True)
        v = float_array(what, value)
        if v.shape != shape:
            raise ValueError(f"{what}: expected shape {shape}, got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{what}: contains NaN or infinity")
        if name.endswith(SCALE_SUFFIX) and v.size and float(v.min()) < 0:
            raise ValueError(f"{what}: scales must be >= 0")
        return np.array(v, dtype=np.float32, order="C", copy=True)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load int8 weights, their scales and the biases, packed for the kernels at once.

        Args:
            state_dict: every name of :meth:`param_shapes` and no other: int8 weights in
                [-127, 127], float scales finite and >= 0, float biases finite (arrays or
                tensors).

        Raises:
            TypeError: a weight is not int8, a scale or bias not float; ``state_dict`` not a
                mapping.
            ValueError: missing or unexpected keys, another shape, a weight of -128, a negative
                scale, or NaN or infinity.

        Each error names the entry (:meth:`fastrnn.module.Module.load_state_dict`); the layer is
        unchanged then.
        """
        old = self._params
        super().load_state_dict(state_dict)
        try:
            self.packed_entries()
        except Exception:
            self._params = old
            raise

    def quantized_weights(self) -> Iterator[tuple[str, QuantizedWeight]]:
        """Each weight matrix as a :class:`~fastrnn.reference.QuantizedWeight`.

        Returns:
            An iterator of ``(name, QuantizedWeight(q (m, k) int8, scale (m,) float32))``.
        """
        for name, p in self._params.items():
            if _is_weight(name):
                yield name, QuantizedWeight(p, self._params[name + SCALE_SUFFIX])

    def packed_entries(self) -> list[tuple[Any, ...]]:
        """``(w_ih, w_hh, b_ih, b_hh, w_hr)`` per (layer, direction), the weight matrices packed
        for the int8 kernels (1-D uint8 arrays), the biases float32, None where the stack has no
        such parameter, and for a cell with parameters of its own (``lstm_peephole``,
        ``lnlstm``, ``lngru``) a 6th
        item, those as one float32 vector; kept while the parameters are the same."""
        cached = self.__dict__.get("_qentries_of")
        if cached is None or cached[0] is not self._params:
            p = self._params
            G = self.spec.gates
            entries = []
            for k in range(self.spec.num_entries):
                names = self.spec.entry_names(k)
                e: list[Any] = []
                for i, n in enumerate(names[:5]):
                    if n is None:
                        e.append(None)
                    elif i in (0, 1, 4):
                        q = QuantizedWeight(p[n], p[n + SCALE_SUFFIX])
                        e.append(F.pack_int8(q, G if i < 2 else 1))
                    else:
                        e.append(p[n])
                if names.cell_params is not None:  # the kernels' one vector (float32)
                    e.append(np.concatenate([p[n] for n in names.cell_params]))
                entries.append(tuple(e))
            cached = (p, entries)
            self._qentries_of = cached
        return cached[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the parameters held (int8 weights, their scales, the biases)."""
        return sum(p.nbytes for p in self._params.values())

    def dequantize(self) -> RecurrentLayer:
        """The float32 layer whose weights are ``q * scale`` (what the int8 layer approximates,
        up to the activations' quantization)."""
        from .layers import from_spec

        layer = from_spec(self.spec, batch_first=self.batch_first, zoneout=self.zoneout,
                          zoneout_cell=self.zoneout_cell, seed=0)  # fmt: skip
        sd = {}
        for name in layer.param_shapes():
            sd[name] = (
                QuantizedWeight(self._params[name], self._params[name + SCALE_SUFFIX]).dequantize()
                if _is_weight(name)
                else self._params[name]
            )
        layer.load_state_dict(sd)
        return layer.eval()

    # ---- forward ------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> QuantizedLayer:
        """Quantized layers are inference-only (always in eval mode).

        Args:
            mode: False, a no-op.

        Returns:
            The layer itself.

        Raises:
            RuntimeError: ``mode`` is true.
        """
        if mode:
            raise RuntimeError("train: a quantized layer is inference-only (no backward)")
        return self

    def forward(
        self, x: ArrayLike, hx: Any = None, lengths: ArrayLike | None = None
    ) -> tuple[Array, State]:
        """As :meth:`fastrnn.layers.RecurrentLayer.forward` (arguments, shapes, errors), float32 in
        and out, the products in int8."""
        layout, xt, batched, h0, c0, la = self._call_inputs(x, hx, lengths)
        zo = self._zoneout_masks(*xt.shape[:2])
        res = F.run_forward_int8(
            self.spec, xt, self.packed_entries(), h0, c0, lengths=la, zoneout_masks=zo
        )
        y = layout.to_caller(res.y, batched)
        return y, self._states_out(res.h_n, res.c_n, batched)

    __call__ = forward

    def backward(self, dy: ArrayLike | None, dstate: Any = None) -> tuple[Array, State]:
        """Not available: a quantized layer is inference-only.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError(
            "backward: a quantized (int8) layer is inference-only; train the float layer and "
            "quantize it again (or use dequantize() for a float copy)"
        )

    def _extra_repr(self) -> str:
        return super()._extra_repr() + ", int8"


class QuantizedRNN(QuantizedLayer):
    """int8 :class:`~fastrnn.layers.RNN` (see :class:`~fastrnn.quantized.QuantizedLayer`)."""

    @property
    def nonlinearity(self) -> str:
        """``"tanh"`` or ``"relu"``, as the float layer's."""
        return "relu" if self.spec.cell == "rnn_relu" else "tanh"

    def _extra_repr(self) -> str:
        return super()._extra_repr() + (
            ", nonlinearity='relu'" if self.nonlinearity == "relu" else ""
        )


class QuantizedLSTM(QuantizedLayer):
    """int8 :class:`~fastrnn.layers.LSTM` (see :class:`~fastrnn.quantized.QuantizedLayer`)."""

    @property
    def peephole(self) -> bool:
        """Whether the gates see the cell state, as the float layer's."""
        return self.spec.cell == "lstm_peephole"

    def _cell_repr(self) -> str:
        return ", peephole=True" if self.peephole else ""


class QuantizedLayerNormLSTM(QuantizedLayer):
    """int8 :class:`~fastrnn.layers.LayerNormLSTM` (see :class:`~fastrnn.quantized.QuantizedLayer`):
    its products in int8, each normalised in float32; the layer-norm vectors stay float32."""


class QuantizedLayerNormGRU(QuantizedLayer):
    """int8 :class:`~fastrnn.layers.LayerNormGRU` (see :class:`~fastrnn.quantized.QuantizedLayer`):
    its products in int8, each normalised in float32; the layer-norm gains stay float32."""

    #: the reset gate after the recurrent product, as the float layer's (always)
    reset_after = True


class QuantizedGRU(QuantizedLayer):
    """int8 :class:`~fastrnn.layers.GRU` (see :class:`~fastrnn.quantized.QuantizedLayer`)."""

    @property
    def reset_after(self) -> bool:
        """Whether the reset gate applies after the recurrent product, as the float layer's."""
        return self.spec.cell == "gru"

    def _extra_repr(self) -> str:
        return super()._extra_repr() + ("" if self.reset_after else ", reset_after=False")


_CLASSES = {
    "rnn_tanh": QuantizedRNN,
    "rnn_relu": QuantizedRNN,
    "lstm": QuantizedLSTM,
    "gru": QuantizedGRU,
    "gru_reset_before": QuantizedGRU,
    "lstm_peephole": QuantizedLSTM,
    "lnlstm": QuantizedLayerNormLSTM,
    "lngru": QuantizedLayerNormGRU,
}


def quantize_dynamic(layer: RecurrentLayer, dtype: Any = "int8") -> QuantizedLayer:
    """An int8 copy of ``layer`` for inference (dynamic quantization, PyTorch's name).

    Args:
        layer: a :class:`~fastrnn.layers.RNN`, :class:`~fastrnn.layers.LSTM`,
            :class:`~fastrnn.layers.GRU`, :class:`~fastrnn.layers.LayerNormLSTM` or
            :class:`~fastrnn.layers.LayerNormGRU` (float32 or float64; the quantized layer
            computes in float32 around its int8 products).
        dtype: ``"int8"`` (or ``numpy.int8``), the only one.

    Returns:
        A :class:`QuantizedRNN`, :class:`QuantizedLSTM`, :class:`QuantizedGRU`,
        :class:`QuantizedLayerNormLSTM` or :class:`QuantizedLayerNormGRU` with the same options
        and call; ``layer`` is unchanged.
        Each weight matrix is quantized per row (:func:`fastrnn.reference.quantize_rows`); the
        biases are kept in float32.

    Raises:
        TypeError: ``layer`` is not a fastrnn recurrent layer, or is quantized already.
        ValueError: ``dtype`` is not int8.
    """
    if isinstance(layer, QuantizedLayer):
        raise TypeError("layer: already quantized")
    if not isinstance(layer, RecurrentLayer):
        raise TypeError(
            f"layer: expected a fastrnn RNN, LSTM or GRU, got {type(layer).__name__} "
            "(for torch models: fastrnn.torch.quantize_dynamic)"
        )
    try:
        ok = (isinstance(dtype, str) and dtype == "int8") or np.dtype(dtype) == np.int8
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"dtype: only 'int8' is supported, got {dtype!r}")
    params: dict[str, Any] = {}
    for name, p in layer.named_parameters():
        if _is_weight(name):
            q = QuantizedWeight.of(p)
            params[name], params[name + SCALE_SUFFIX] = q.q, q.scale
        else:
            params[name] = p.astype(np.float32)
    cls = _CLASSES[layer.spec.cell]
    return cls(layer.spec, params, batch_first=layer.batch_first, zoneout=layer.zoneout,
               zoneout_cell=layer.zoneout_cell)  # fmt: skip
