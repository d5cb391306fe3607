"""The contract of a recurrent stack, stated once: :class:`~fastrnn.spec.StackSpec`.

A recurrent stack is ``num_layers`` layers of one cell, each run in one or two directions; layer
``l > 0`` reads the concatenated outputs of layer ``l - 1``. Everything that follows from its
description is here and nowhere else: the parameters' names (PyTorch's: ``weight_ih_l0``,
``bias_hh_l1_reverse``, ``weight_hr_l0``), their order and shapes, the shapes of the states,
outputs, dropout masks and zoneout masks, and every rule on the arguments of a call, each with its
message. The layers (:mod:`fastrnn.layers`), the PyTorch modules (:mod:`fastrnn.torch`), the
interop and the training kit describe their stack with a spec and let :mod:`fastrnn.functional`
run it; the compiled core checks its buffers again (the C++ safety net), nothing else does.

Sizes: ``T`` steps, ``B`` sequences, ``I = input_size``, ``H = hidden_size``, ``P = proj_size``
(LSTM only; 0 for none), ``Hs`` = the size of the hidden state and output of one direction (``P`` if
set, else ``H``), ``D`` = 2 if bidirectional else 1, ``L = num_layers``, ``G`` = the cell's gate
count (:data:`CELLS`).

Besides PyTorch's options a stack has ONNX's: ``reverse`` (its one direction runs backwards in
time), ``clip`` (every gate pre-activation clamped to ``[-clip, clip]``) and ``input_forget``
(LSTM's forget gate coupled to its input gate, ``f = 1 - i``); and a cell may have parameters of
its own besides the five of PyTorch (``lstm_peephole``'s ``weight_peephole_l0``, after
``weight_hr_l0`` in PyTorch's order; ``lnlstm``'s four layer-norm vectors, ``lngru``'s two).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from ._args import check_flag, check_int, check_real, float_dtype, to_numpy

__all__ = ["CELLS", "COMPUTE_DTYPES", "CellInfo", "LayerParams", "Layout", "StackSpec"]

Array = NDArray[Any]


class CellInfo(NamedTuple):
    """What the contract needs to know of a cell."""

    gate_names: tuple[str, ...]  #: the stacked gate blocks of its weights, in their order
    has_cell_state: bool  #: a second state c of size H (LSTM)
    can_project: bool  #: may have ``proj_size`` (LSTM)
    #: the cell's own parameter vectors, each ``(name, blocks)``: a vector named ``<name>_l0``
    #: (``_reverse``) of ``blocks * H`` scalars per (layer, direction); none for PyTorch's cells
    params: tuple[tuple[str, int], ...] = ()
    #: the value each of :attr:`params` starts at, one per vector (``lnlstm``'s and ``lngru``'s
    #: layer-norm gains 1 and bias 0, as ``torch.nn.LayerNorm``'s), or ``()``: every vector drawn
    #: as the biases are (``lstm_peephole``'s)
    init: tuple[float, ...] = ()
    #: takes ONNX's ``clip`` (and ``input_forget``, with a cell state); not ``lnlstm``, ``lngru``
    onnx_options: bool = True
    #: its cell state may be zoned out (``zoneout_cell``): ``lstm`` and ``lnlstm``, not
    #: ``lstm_peephole``, whose output gate's peephole reads the new cell state (the core's
    #: ``has_zoneout_cell``)
    zoneout_cell: bool = False

    @property
    def gates(self) -> int:
        """G, the number of gate blocks."""
        return len(self.gate_names)


#: The cells, by the name the API takes, and what the contract needs of each. PyTorch's RNN
#: (tanh, relu), LSTM and GRU (reset gate after the recurrent product), the original GRU of
#: Cho et al. (reset gate before it), ONNX's LSTM with peepholes (``lstm_peephole``: the
#: gates i and f also see ``p * c`` of the previous cell state, o that of the new one; its
#: ``weight_peephole (3H,)`` holds ``p_i, p_f, p_o``) and the layer-normalised LSTM (``lnlstm``,
#: haste's ``LayerNormLSTM``: ``v = g_ih * LN(W_ih x) + g_hh * LN(W_hh h) + b_ih + b_hh``,
#: ``c' = f*c + i*g``, ``h' = o * tanh(g_c * LN(c') + b_c)``, LN over a row without an affine
#: part, eps 1e-5; its ``layer_norm_weight_ih (4H,)``, ``layer_norm_weight_hh (4H,)``,
#: ``layer_norm_weight_c (H,)``, ``layer_norm_bias_c (H,)`` start at 1, 1, 1, 0; no projection,
#: no clip, no input_forget) and the layer-normalised GRU (``lngru``: PyTorch's GRU with
#: ``a = g_ih * LN(W_ih x) + b_ih`` for ``W_ih x + b_ih`` and ``m = g_hh * LN(W_hh h)`` for
#: ``W_hh h``, the biases ``b_hh`` after the layer norm: ``r = s(a_r + m_r + b_hr)``, ``z``
#: likewise, ``n = tanh(a_n + r * (m_n + b_hn))``, ``h' = (1-z)*n + z*h``; its
#: ``layer_norm_weight_ih (3H,)``, ``layer_norm_weight_hh (3H,)`` start at 1; no clip). Gate
#: blocks in PyTorch's order: LSTM input, forget, cell (g), output; GRU reset, update (z), new
#: (n).
CELLS: dict[str, CellInfo] = {
    "rnn_tanh": CellInfo(("h",), False, False),
    "rnn_relu": CellInfo(("h",), False, False),
    "lstm": CellInfo(("i", "f", "g", "o"), True, True, zoneout_cell=True),
    "gru": CellInfo(("r", "z", "n"), False, False),
    "gru_reset_before": CellInfo(("r", "z", "n"), False, False),
    "lstm_peephole": CellInfo(("i", "f", "g", "o"), True, True, (("weight_peephole", 3),)),
    "lnlstm": CellInfo(
        ("i", "f", "g", "o"),
        True,
        False,
        params=(
            ("layer_norm_weight_ih", 4),
            ("layer_norm_weight_hh", 4),
            ("layer_norm_weight_c", 1),
            ("layer_norm_bias_c", 1),
        ),
        init=(1.0, 1.0, 1.0, 0.0),
        onnx_options=False,
        zoneout_cell=True,
    ),
    "lngru": CellInfo(
        ("r", "z", "n"),
        False,
        False,
        params=(("layer_norm_weight_ih", 3), ("layer_norm_weight_hh", 3)),
        init=(1.0, 1.0),
        onnx_options=False,
    ),
}

#: The cells without ONNX's options, as the messages name them
_TITLES = {"lnlstm": "the layer-normalised LSTM", "lngru": "the layer-normalised GRU"}


class LayerParams(NamedTuple):
    """The parameters of one layer and direction, PyTorch's shapes (``I_l`` is ``I`` for layer
    0, ``D*Hs`` above)."""

    weight_ih: Any  #: (G*H, I_l)
    weight_hh: Any  #: (G*H, Hs)
    bias_ih: Any = None  #: (G*H,) or None
    bias_hh: Any = None  #: (G*H,) or None
    weight_hr: Any = None  #: (P, H) LSTM projection, with proj_size only
    #: the cell's own parameters (:attr:`CellInfo.params`): a tuple of one array per kind
    #: (``lstm_peephole``: ``(weight_peephole (3H,),)``; ``lnlstm``: its four layer-norm
    #: vectors ``(4H,), (4H,), (H,), (H,)``; ``lngru``: its two, ``(3H,), (3H,)``), or None for
    #: PyTorch's cells
    cell_params: Any = None


_KINDS = LayerParams._fields[:5]  # PyTorch's five kinds


#: The precisions a stack's matrix products may run in, besides its own dtype, ``"bfloat16"``
#: (float32 stacks): both operands of every product -- weights, inputs, hidden states, GRU's
#: ``r*h``, LSTM's ``o*tanh(c)`` before the projection and, in backward, the gate gradients and
#: ``dL/dh`` -- rounded to bfloat16 (to nearest, ties to even), their products summed in float32;
#: the arrays, biases, activations, LSTM's cell state, the pointwise gradients and the bias
#: gradients stay float32 (oneDNN's scheme). CPUs with AVX512_BF16 run the products on their bf16
#: dot-product instructions; elsewhere the same rounded products run in float32, so results agree
#: across machines to float32 rounding. :func:`fastrnn.reference.stack_forward` takes the same
#: ``compute_dtype``.
COMPUTE_DTYPES: tuple[str, ...] = ("bfloat16",)


def check_compute_dtype(value: Any, dtype: np.dtype[Any]) -> str:
    """The name of the products' precision: ``dtype``'s name for None or ``dtype`` itself,
    ``"bfloat16"`` (also ``"bf16"``, ``torch.bfloat16``, ml_dtypes' ``bfloat16``) for a float32
    stack; anything else is a ValueError."""
    if value is None:
        return str(dtype.name)
    text = value if isinstance(value, str) else getattr(value, "name", None) or str(value)
    if isinstance(text, str) and text.lower().removeprefix("torch.") in ("bfloat16", "bf16"):
        if dtype != np.float32:
            raise ValueError(
                f"compute_dtype: bfloat16 products need a float32 stack, not {dtype.name}"
            )
        return "bfloat16"
    try:
        same = np.dtype(value) == dtype
    except TypeError:
        same = False
    if not same:
        raise ValueError(
            f"compute_dtype: expected None, {dtype.name!r} (the stack's dtype) or 'bfloat16', "
            f"got {value!r}"
        )
    return str(dtype.name)


def check_clip(clip: Any) -> float | None:
    """``clip`` as a stack takes it: None (no clipping), or a finite real number > 0 as a float.

    Raises:
        TypeError: ``clip`` is neither None nor a real number (a bool is not).
        ValueError: ``clip`` is not finite, or not > 0 (None is no clipping).
    """
    if clip is None:
        return None
    c = check_real("clip", clip)
    if c <= 0:
        raise ValueError(f"clip: must be > 0 (None for no clipping), got {clip!r}")
    return c


def check_cell(cell: Any) -> str:
    """``cell`` if it is one of :data:`CELLS`, else a ValueError listing them."""
    if not isinstance(cell, str) or cell not in CELLS:
        raise ValueError(f"cell: expected one of {tuple(CELLS)}, got {cell!r}")
    return cell


@dataclass(frozen=True, init=False)
class StackSpec:
    """A recurrent stack's description, validated on construction (immutable, hashable).

    Args:
        cell: one of :data:`CELLS`.
        input_size, hidden_size, num_layers: each an int >= 1.
        bidirectional: two directions per layer.
        bias: each layer has ``bias_ih`` and ``bias_hh`` (both, or neither anywhere).
        proj_size: LSTM's output projection, ``0 <= proj_size < hidden_size`` (``lstm`` and
            ``lstm_peephole``).
        dtype: float32 or float64: of the parameters and of every array of a call.
        compute_dtype: the precision of the matrix products: None (or ``dtype``) for ``dtype``
            itself, or ``"bfloat16"`` for a float32 stack (:data:`COMPUTE_DTYPES`); stored as its
            name.
        reverse: keyword-only; the one direction of every layer runs from the last step to the
            first (ONNX's ``direction="reverse"``; with lengths each sequence starts at its own
            last step). Not with ``bidirectional``. Its parameters and states are named as a
            forward direction's (``weight_ih_l0``).
        clip: keyword-only; None for none, or a finite number > 0: every gate pre-activation
            is clamped to ``[-clip, clip]`` before its activation (ONNX's ``clip``: RNN's one
            pre-activation, LSTM's i, f, g, o with their peephole terms, GRU's r, z and n's
            whole argument; LSTM's cell state is not clipped); its derivative is zero where it
            clamps. Stored as a float. Not for ``lnlstm`` and ``lngru``.
        input_forget: keyword-only; ``lstm`` and ``lstm_peephole`` only: the forget gate is
            ``f = 1 - i`` (ONNX's ``input_forget``, as ONNX Runtime computes it); the f block's
            weights, biases and peephole are unused (their gradients are zero).

    Raises:
        TypeError: a size is not an int (a bool is not); ``dtype`` is not float32 or float64;
            a switch (``bidirectional``, ``bias``, ``reverse``, ``input_forget``) is not a bool;
            ``clip`` is not None or a real number.
        ValueError: ``cell`` is not one of :data:`CELLS`; a size is below its minimum;
            ``proj_size`` is given for a cell that cannot project or is not below
            ``hidden_size``; ``compute_dtype`` is not one of the above; ``reverse`` with
            ``bidirectional``; ``clip`` not finite or not > 0; ``input_forget`` for a cell
            without a cell state; ``clip`` or ``input_forget`` for ``lnlstm`` or ``lngru``.

    The rules of a call's arrays are the ``check_*`` methods below; every API of fastrnn applies
    them, with these messages.
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    bias: bool
    proj_size: int
    dtype: np.dtype[Any]
    compute_dtype: str
    reverse: bool
    clip: float | None
    input_forget: bool

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        bias: bool = True,
        proj_size: int = 0,
        dtype: DTypeLike = np.float32,
        compute_dtype: Any = None,
        *,
        reverse: bool = False,
        clip: float | None = None,
        input_forget: bool = False,
    ) -> None:
        info = CELLS[check_cell(cell)]
        put = object.__setattr__
        put(self, "cell", cell)
        put(self, "input_size", check_int("input_size", input_size, 1))
        put(self, "hidden_size", check_int("hidden_size", hidden_size, 1))
        put(self, "num_layers", check_int("num_layers", num_layers, 1))
        put(self, "bidirectional", check_flag("bidirectional", bidirectional))
        put(self, "bias", check_flag("bias", bias))
        proj = check_int("proj_size", proj_size, 0)
        if proj and not info.can_project:
            if info.has_cell_state:
                raise ValueError(
                    f"proj_size: the layer-normalised LSTM ({cell}) has no projection; use "
                    "proj_size=0"
                )
            raise ValueError(f"proj_size: only LSTM layers have a projection, not {cell}")
        if proj >= self.hidden_size:
            raise ValueError(
                f"proj_size: must be smaller than hidden_size ({self.hidden_size}), got {proj}"
            )
        put(self, "proj_size", proj)
        put(self, "dtype", float_dtype("dtype", dtype))
        put(self, "compute_dtype", check_compute_dtype(compute_dtype, self.dtype))
        put(self, "reverse", check_flag("reverse", reverse))
        if self.reverse and self.bidirectional:
            raise ValueError(
                "reverse: runs the one direction of a unidirectional stack backwards in time; "
                "a bidirectional stack already runs both (give one of them)"
            )
        put(self, "clip", check_clip(clip))
        put(self, "input_forget", check_flag("input_forget", input_forget))
        if not info.onnx_options and (self.clip is not None or self.input_forget):
            which = "clip" if self.clip is not None else "input_forget"
            raise ValueError(
                f"{which}: ONNX's clip and input_forget are not for {_TITLES.get(cell, cell)} "
                f"({cell}); leave them out"
            )
        if self.input_forget and not info.has_cell_state:
            raise ValueError(
                f"input_forget: couples an LSTM's forget gate to its input gate; {cell} has no "
                "forget gate"
            )
        # derived once (not fields: equality and hash are the fields')
        put(self, "_entry_names", tuple(self._make_names(k) for k in range(self.num_entries)))
        put(self, "_entry_shapes", tuple(self._make_shapes(k) for k in range(self.num_entries)))
        put(self, "_core_shapes", tuple(self._make_core_shapes(k) for k in range(self.num_entries)))

    # ---- sizes --------------------------------------------------------------------------------

    def replace(self, **changes: Any) -> StackSpec:
        """This spec with some fields changed (validated as a new one).

        Raises:
            TypeError: a keyword is not a field; and the constructor's errors.
        """
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"replace: no field {sorted(unknown)[0]!r}")
        fields.update(changes)
        return StackSpec(**fields)

    @property
    def bf16(self) -> bool:
        """Whether the products run in bfloat16 (``compute_dtype == "bfloat16"``)."""
        return self.compute_dtype == "bfloat16"

    @property
    def gates(self) -> int:
        """G, the cell's stacked gate blocks."""
        return CELLS[self.cell].gates

    def gate_rows(self, gate: str) -> slice:
        """The rows of gate block ``gate`` (a name of the cell's ``gate_names``, e.g. LSTM's
        ``"f"``) in ``weight_ih``, ``weight_hh`` and the biases.

        Raises:
            ValueError: the cell has no gate ``gate``.
        """
        names = CELLS[self.cell].gate_names
        if gate not in names:
            raise ValueError(f"gate: {self.cell} has the gates {names}, got {gate!r}")
        k, H = names.index(gate), self.hidden_size
        return slice(k * H, (k + 1) * H)

    @property
    def has_cell_state(self) -> bool:
        """Whether the cell has a cell state c (LSTM)."""
        return CELLS[self.cell].has_cell_state

    @property
    def num_directions(self) -> int:
        """D, 2 if bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        """Hs, the size of a direction's hidden state and output (``proj_size`` or H)."""
        return self.proj_size or self.hidden_size

    @property
    def output_size(self) -> int:
        """D*Hs, the size of an output step (and of the input of layers above the first)."""
        return self.num_directions * self.state_size

    @property
    def num_entries(self) -> int:
        """L*D, the (layer, direction) entries of the parameters and states."""
        return self.num_layers * self.num_directions

    def layer_input_size(self, layer: int) -> int:
        """The input size of ``layer``: I for the first, D*Hs above."""
        return self.input_size if layer == 0 else self.output_size

    # ---- parameters ---------------------------------------------------------------------------

    def entry_names(self, k: int) -> LayerParams:
        """The parameter names of entry ``k`` (layer ``k // D``, direction ``k % D``); None where
        the stack has no such parameter; ``cell_params`` a tuple of names (``lstm_peephole``:
        ``("weight_peephole_l0",)``) or None."""
        return self._entry_names[k]  # type: ignore[attr-defined,no-any-return]

    def entry_shapes(self, k: int) -> LayerParams:
        """The parameter shapes of entry ``k``; None where the stack has no such parameter;
        ``cell_params`` a tuple of shapes (``lstm_peephole``: ``((3*H,),)``) or None."""
        return self._entry_shapes[k]  # type: ignore[attr-defined,no-any-return]

    @property
    def cell_params_size(self) -> int:
        """The scalars of the cell's own parameters per entry (``lstm_peephole``: 3H;
        ``lnlstm``: 10H; ``lngru``: 6H; 0 for PyTorch's cells): the length of the one vector the
        kernels take for them."""
        return sum(n for _, n in CELLS[self.cell].params) * self.hidden_size

    def param_constants(self) -> dict[str, float]:
        """The parameters that start at a constant (:attr:`CellInfo.init`), by name, and their
        value: ``lnlstm``'s and ``lngru``'s ``layer_norm_weight_*`` 1.0, ``lnlstm``'s
        ``layer_norm_bias_c_*`` 0.0 (as ``torch.nn.LayerNorm``'s); empty for the other cells,
        whose parameters are all drawn."""
        init = CELLS[self.cell].init
        if not init:
            return {}
        out: dict[str, float] = {}
        for k in range(self.num_entries):
            names = self.entry_names(k).cell_params or ()
            out.update(zip(names, init, strict=True))
        return out

    def _make_names(self, k: int, all_kinds: bool = False) -> LayerParams:
        sfx = f"_l{k // self.num_directions}{'_reverse' if k % self.num_directions else ''}"
        has = (True, True, self.bias, self.bias, self.proj_size > 0)
        has = (True,) * 5 if all_kinds else has
        own = tuple(f"{n}{sfx}" for n, _ in CELLS[self.cell].params) or None
        five = [f"{n}{sfx}" if h else None for n, h in zip(_KINDS, has, strict=True)]
        return LayerParams._make([*five, own])

    def _make_shapes(self, k: int) -> LayerParams:
        GH, H, P = self.gates * self.hidden_size, self.hidden_size, self.proj_size
        In = self.layer_input_size(k // self.num_directions)
        return LayerParams(
            (GH, In),
            (GH, self.state_size),
            (GH,) if self.bias else None,
            (GH,) if self.bias else None,
            (P, H) if P else None,
            tuple((n * H,) for _, n in CELLS[self.cell].params) or None,
        )

    def _make_core_shapes(self, k: int) -> tuple[Any, ...]:
        """The shapes of an entry as the kernels take it: the five, then the one vector of the
        cell's own parameters (None without)."""
        own = self.cell_params_size
        return (*self.entry_shapes(k)[:5], (own,) if own else None)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, in PyTorch's order (per layer, per direction:
        ``weight_ih, weight_hh, bias_ih, bias_hh, weight_hr``, then the cell's own, e.g.
        ``weight_peephole``)."""
        return dict(self._named_shapes())

    def _named_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        for k in range(self.num_entries):
            names, shapes = _present(self.entry_names(k)), _present(self.entry_shapes(k))
            yield from zip(names, shapes, strict=True)

    def entries(self, flat: Sequence[Any]) -> list[LayerParams]:
        """A flat list of the parameters in PyTorch's order (``param_shapes``, torch's
        ``_flat_weights``) as one :class:`LayerParams` per entry.

        Raises:
            ValueError: ``flat`` does not hold the stack's number of parameters.
        """
        per = sum(1 for _ in _present(self.entry_names(0)))
        if len(flat) != per * self.num_entries:
            raise ValueError(
                f"params: expected {per * self.num_entries} arrays in PyTorch's order, got "
                f"{len(flat)}"
            )
        it = iter(flat)
        return [self._entry_of(k, lambda _: next(it)) for k in range(self.num_entries)]

    def entries_of(self, named: Mapping[str, Any]) -> list[LayerParams]:
        """The parameters held by name (``state_dict()``) as one :class:`LayerParams` per entry."""
        return [self._entry_of(k, named.__getitem__) for k in range(self.num_entries)]

    def _entry_of(self, k: int, value: Any) -> LayerParams:
        """Entry ``k`` with ``value(name)`` for each of its parameters, in PyTorch's order."""
        names = self.entry_names(k)
        five = [None if n is None else value(n) for n in names[:5]]
        own = names.cell_params
        return LayerParams._make([*five, None if own is None else tuple(value(n) for n in own)])

    def flatten(self, entries: Sequence[Sequence[Any]]) -> list[Any]:
        """Per-entry parameters (or gradients) as a flat list in PyTorch's order."""
        return [a for e in entries for a in _present(e)]

    def check_params(self, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``params`` (one :class:`LayerParams` or 5-sequence per entry) as the kernels take
        them: tuples ``(w_ih, w_hh, b_ih, b_hh, w_hr[, cell])`` of C-contiguous, aligned arrays
        of the spec's dtype (copied only where needed), ``cell`` the cell's own parameters as one
        vector (``lstm_peephole``: ``weight_peephole`` itself; required) or None.

        Raises:
            TypeError: an entry is not a sequence of 2 to 6 items; a parameter is None where the
                stack has it, or of another dtype than the spec's; ``cell_params`` is not a
                tuple of one array per kind of the cell's own parameters.
            ValueError: not one entry per (layer, direction); a parameter of another shape
                (:meth:`param_shapes`), or present where the stack has none (``weight_hr``
                without ``proj_size``, ``cell_params`` for a cell without any); one bias
                without the other.
        """
        if len(params) != self.num_entries:
            raise ValueError(
                f"params: expected {self.num_entries} (layer, direction) entries, got {len(params)}"
            )
        out = []
        for k, p in enumerate(params):
            entry = p if isinstance(p, tuple) and 5 <= len(p) <= 6 else _entry(k, p)
            if len(entry) == 6 and entry[5] is not None:
                own = entry[5]  # the common case, one array in a tuple, without the checks
                one = type(own) is tuple and len(own) == 1 == len(CELLS[self.cell].params)
                entry = (*entry[:5], own[0] if one else self._cell_vector(k, own))
            if not self._entry_ready(k, entry):
                entry = self._checked_entry(k, entry)
            out.append(entry)
        return out

    def _cell_vector(self, k: int, own: Any) -> Any:
        """The cell parameters of entry ``k`` (a tuple, one array per kind) as the kernels' one
        vector: the array itself for one kind (checked with the entry), else the kinds'
        concatenation (each checked here)."""
        names = self.entry_names(k).cell_params
        if names is None:
            raise ValueError(
                f"cell_params: the {self.cell} cell has no parameters of its own; entry {k} "
                f"gives {type(own).__name__}"
            )
        if isinstance(own, (str, bytes, np.ndarray)) or not isinstance(own, Sequence):
            raise TypeError(
                f"cell_params: expected a tuple of {len(names)} array(s) {names} in entry {k}, got "
                f"{type(own).__name__}"
            )
        if len(own) != len(names):
            raise TypeError(
                f"cell_params: expected a tuple of {len(names)} array(s) {names} in entry {k}, got "
                f"{len(own)}"
            )
        if len(names) == 1:
            return own[0]
        shapes = self.entry_shapes(k).cell_params
        parts = [self._required(n, a, s) for n, a, s in zip(names, own, shapes, strict=True)]
        return np.concatenate(parts)

    def _required(self, name: str, a: Any, shape: tuple[int, ...]) -> Array:
        if a is None:
            raise TypeError(f"{name}: required, got None")
        return self.array(name, a, shape)

    def _entry_ready(self, k: int, entry: tuple[Any, ...]) -> bool:
        """The common case, checked fast: every array present or absent as it should be, of the
        right shape, dtype and memory layout."""
        dt = self.dtype
        shapes = self._core_shapes[k]  # type: ignore[attr-defined]
        if len(entry) == 5 and shapes[5] is not None:
            return False
        for a, shape in zip(entry, shapes, strict=False):
            if shape is None:
                if a is not None:
                    return False
            elif type(a) is not np.ndarray or a.shape != shape or a.dtype != dt:
                return False
            else:
                flags = a.flags
                if not (flags.c_contiguous and flags.aligned):
                    return False
        return True

    def _checked_entry(self, k: int, entry: tuple[Any, ...]) -> tuple[Any, ...]:
        if (entry[2] is None) != (entry[3] is None) or (entry[2] is not None) != self.bias:
            raise ValueError(
                f"bias_ih, bias_hh: give both biases or neither, in every layer (bias="
                f"{self.bias}); entry {k} has bias_ih {'given' if entry[2] is not None else 'None'}"
                f" and bias_hh {'given' if entry[3] is not None else 'None'}"
            )
        checked: list[Any] = []
        full_names = self._make_names(k, all_kinds=True)
        own = full_names.cell_params
        names = (*full_names[:5], None if own is None else ", ".join(own))
        entry = (*entry, None) if len(entry) == 5 else entry
        for name, a, shape in zip(names, entry, self._core_shapes[k], strict=True):  # type: ignore[attr-defined]
            if shape is None:
                if a is not None:
                    raise ValueError(f"{name}: only with proj_size > 0")
                checked.append(None)
            else:
                checked.append(self._required(name, a, shape))
        return tuple(checked)

    # ---- the arrays of a call -----------------------------------------------------------------

    def array(self, name: str, a: Any, shape: tuple[int, ...] | None = None) -> Array:
        """``a`` as a C-contiguous, aligned array of the spec's dtype (copied only if it is not),
        of ``shape`` if given: nothing is converted silently.

        Raises:
            TypeError: ``a`` has another dtype.
            ValueError: ``a`` has another shape than ``shape``.
        """
        if not _ready(a, self.dtype):
            arr = np.asarray(to_numpy(a))
            if arr.dtype != self.dtype:
                raise TypeError(
                    f"{name}: expected dtype {self.dtype} (the dtype of x), got {arr.dtype}"
                )
            a = np.require(arr, requirements=("C", "A"))
        if shape is not None and a.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
        return a  # type: ignore[no-any-return]

    def check_input(self, x: Any) -> Array:
        """x as the ``(T, B, I)`` time-major array of a call (:meth:`array`'s rule too).

        Raises:
            TypeError: ``x`` has another dtype than the spec's.
            ValueError: ``x`` is not 3-D or its last axis is not ``input_size``.
        """
        xa = self.array("x", x)
        if xa.ndim != 3:
            raise ValueError(f"x: expected a 3-D array (T, B, I), got shape {xa.shape}")
        self.check_input_size("x", xa.shape)
        return xa

    def check_input_size(self, name: str, shape: Sequence[int]) -> None:
        """The rule of an input's last axis: ``input_size`` features, in any layout.

        Raises:
            ValueError: ``shape[-1]`` is not ``input_size``.
        """
        if shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: expected input size {self.input_size} on the last axis "
                f"(input_size={self.input_size}), got shape {tuple(shape)}"
            )

    def state_shape(self, B: int, kind: str = "h") -> tuple[int, int, int]:
        """The shape of the stack's hidden (``kind="h"``: ``(L*D, B, Hs)``) or cell (``"c"``:
        ``(L*D, B, H)``) states."""
        return (self.num_entries, B, self.state_size if kind == "h" else self.hidden_size)

    def check_state_shape(
        self, name: str, shape: Sequence[int], B: int, kind: str = "h", batched: bool = True
    ) -> None:
        """The rule of a state's shape (:meth:`state_shape`; without the batch axis for unbatched
        input).

        Raises:
            ValueError: ``shape`` is not the state's, or ``kind`` is ``"c"`` for a cell without a
                cell state.
        """
        if kind == "c" and not self.has_cell_state:
            raise ValueError(f"{name}: only an LSTM has a cell state, not {self.cell}")
        L, _, S = self.state_shape(B, kind)
        want: tuple[int, ...] = (L, B, S) if batched else (L, S)
        if tuple(shape) != want:
            raise ValueError(f"{name}: expected shape {want}, got {tuple(shape)}")

    def check_state(self, name: str, a: Any, B: int, kind: str = "h") -> Array | None:
        """A state (or its gradient) as an array of :meth:`state_shape`, or None (zeros).

        Raises:
            TypeError: another dtype than the spec's.
            ValueError: another shape (:meth:`check_state_shape`).
        """
        if a is None:
            return None
        arr = self.array(name, a)
        self.check_state_shape(name, arr.shape, B, kind)
        return arr

    def output_shape(self, T: int, B: int) -> tuple[int, int, int]:
        """The shape of y (and dy): ``(T, B, D*Hs)``."""
        return (T, B, self.output_size)

    def mask_shape(self, T: int, B: int) -> tuple[int, int, int, int]:
        """The shape of the dropout masks between layers: ``(L-1, T, B, D*Hs)``."""
        return (self.num_layers - 1, T, B, self.output_size)

    def uses_dropout(self, p: float, training: bool) -> bool:
        """Whether a call draws dropout masks: in training, with p > 0, between layers."""
        return training and p > 0 and self.num_layers > 1

    def check_masks(self, masks: Any, T: int, B: int) -> Array | None:
        """Dropout multipliers for the outputs of layers 0..L-2 (0 or 1/(1-p)), or None.

        Raises:
            TypeError: another dtype than the spec's.
            ValueError: masks for a one-layer stack, or of another shape than :meth:`mask_shape`.
        """
        if masks is None:
            return None
        if self.num_layers < 2:
            raise ValueError("dropout_masks: masks apply between layers; num_layers is 1")
        return self.array("dropout_masks", masks, self.mask_shape(T, B))

    # zoneout (Krueger et al., 2017): after each step of a running sequence a unit keeps its
    # previous value with probability p, h_t = m*h_{t-1} + (1 - m)*h~_t (h~_t the cell's new
    # state, after the projection), and for the LSTM cells c_t = m_c*c_{t-1} + (1 - m_c)*c~_t
    # (the cell's h~ made from its own c~). m: 0/1 draws in training, p itself in inference.

    @property
    def has_zoneout_cell(self) -> bool:
        """Whether the cell's state c may be zoned out (:attr:`CellInfo.zoneout_cell`)."""
        return CELLS[self.cell].zoneout_cell

    def _no_zoneout_cell(self, name: str) -> ValueError:
        cells = " and ".join(c for c, info in CELLS.items() if info.zoneout_cell)
        return ValueError(f"{name}: only {cells} zone out a cell state, not {self.cell}")

    def zoneout_shape(self, T: int, B: int, kind: str = "h") -> tuple[int, int, int, int]:
        """The shape of the zoneout multipliers of the hidden (``kind="h"``: ``(L*D, T, B,
        Hs)``) or cell (``"c"``: ``(L*D, T, B, H)``) states, time-major, in the caller's batch
        order."""
        return (self.num_entries, T, B, self.state_size if kind == "h" else self.hidden_size)

    def check_zoneout(self, name: str, p: Any, kind: str = "h") -> float:
        """A zoneout probability of the hidden (``kind="h"``) or cell (``"c"``) state: a number
        in ``[0, 1)``, the latter 0 but for :attr:`has_zoneout_cell`.

        Raises:
            ValueError: ``p`` is not a number in ``[0, 1)``; a non-zero ``p`` of ``c`` for a cell
                without :attr:`has_zoneout_cell`.
        """
        try:
            f = check_real(name, p, 0.0, 1.0)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: expected a number in [0, 1), got {p!r}") from e
        if f >= 1:
            raise ValueError(f"{name}: expected a number in [0, 1), got {p!r}")
        if kind == "c" and f > 0 and not self.has_zoneout_cell:
            raise self._no_zoneout_cell(name)
        return f

    def check_zoneout_masks(self, masks: Any, T: int, B: int) -> tuple[Array | None, Array | None]:
        """Zoneout multipliers ``(h, c)`` (either None; all of ``masks`` None for none): ``h`` of
        :meth:`zoneout_shape` ``"h"``, ``c`` of ``"c"`` (only :attr:`has_zoneout_cell`), each in
        [0, 1] (0/1 in training, p in inference). A backward must be given the forward's.

        Raises:
            TypeError: ``masks`` is not a pair; a mask has another dtype than the spec's.
            ValueError: a mask of another shape; ``c`` for a cell without
                :attr:`has_zoneout_cell`.
        """
        if masks is None:
            return None, None
        if not isinstance(masks, (tuple, list)) or len(masks) != 2:
            raise TypeError(
                f"zoneout_masks: expected a pair (h, c) of arrays or None, got "
                f"{type(masks).__name__}"
            )
        zh, zc = masks
        if zc is not None and not self.has_zoneout_cell:
            raise self._no_zoneout_cell("zoneout_masks[1]")
        return (
            None if zh is None else self.array("zoneout_masks[0]", zh, self.zoneout_shape(T, B)),
            None
            if zc is None
            else self.array("zoneout_masks[1]", zc, self.zoneout_shape(T, B, "c")),
        )

    @staticmethod
    def check_lengths(lengths: ArrayLike | None, T: int, B: int) -> Array | None:
        """``(B,)`` integer lengths in ``[0, T]`` as int64, or None (every sequence has T
        steps). Integral floats are accepted.

        Raises:
            TypeError: ``lengths`` holds non-integers.
            ValueError: ``lengths`` is not ``(B,)`` or a value is outside ``[0, T]``.
        """
        if lengths is None:
            return None
        la = np.asarray(to_numpy(lengths))
        if la.dtype.kind not in "iu":
            if not (la.dtype.kind == "f" and np.isfinite(la).all() and (la == np.round(la)).all()):
                raise TypeError(f"lengths: expected integers, got dtype {la.dtype}")
        if la.ndim != 1:
            raise ValueError(f"lengths: expected a 1-D array, got shape {la.shape}")
        if la.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},), one per sequence, got {la.shape}")
        if la.size and (la.min() < 0 or la.max() > T):
            raise ValueError(f"lengths: values must be in [0, T={T}], got [{la.min()}, {la.max()}]")
        return np.ascontiguousarray(la, dtype=np.int64)

    # ---- construction from parameters ---------------------------------------------------------

    @classmethod
    def of_params(
        cls,
        cell: str,
        params: Sequence[Any],
        dtype: DTypeLike,
        input_size: int | None = None,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        proj_size: int = 0,
        compute_dtype: Any = None,
        reverse: bool = False,
        clip: float | None = None,
        input_forget: bool = False,
    ) -> StackSpec:
        """The spec of a stack given by its parameters (one entry per layer and direction):
        hidden size, bias and (unless given) input size read from the first entry; the other
        fields are the keywords (as the constructor's).

        Raises:
            TypeError: an entry is not a sequence of arrays; and the constructor's errors.
            ValueError: ``params`` is empty, ``weight_hh_l0`` is not ``(G*H, Hs)`` or
                ``weight_ih_l0`` not 2-D; and the constructor's errors.
        """
        info = CELLS[check_cell(cell)]
        if not len(params):
            raise ValueError("params: expected at least one (layer, direction) entry")
        first = params[0]
        first = first if isinstance(first, tuple) and 5 <= len(first) <= 6 else _entry(0, first)
        w_hh = first[1].shape if type(first[1]) is np.ndarray else np.shape(to_numpy(first[1]))
        if len(w_hh) != 2 or w_hh[0] % info.gates:
            raise ValueError(
                f"weight_hh_l0: expected shape (G*H, Hs) with G = {info.gates}, got {w_hh}"
            )
        if input_size is None:
            w_ih = np.shape(to_numpy(first[0]))
            if len(w_ih) != 2:
                raise ValueError(f"weight_ih_l0: expected shape (G*H, I), got {w_ih}")
            input_size = w_ih[1]
        args = (
            cell,
            input_size,
            w_hh[0] // info.gates,
            check_int("num_layers", num_layers, 1),
            check_flag("bidirectional", bidirectional),
            first[2] is not None,
            check_int("proj_size", proj_size, 0),
            float_dtype("dtype", dtype),
            compute_dtype,
        )
        if reverse is False and clip is None and input_forget is False:  # the common case
            return _cached_spec(*args)
        return _cached_spec(  # ONNX's options, checked here: the cache hashes them
            *args,
            reverse=check_flag("reverse", reverse),
            clip=check_clip(clip),
            input_forget=check_flag("input_forget", input_forget),
        )

    @classmethod
    def cached(cls, *args: Any, **kwargs: Any) -> StackSpec:
        """``StackSpec(*args, **kwargs)``, shared by the calls that give the same arguments (of
        the same types: ``True`` is not ``1``): specs are immutable, and a call's spec costs
        nothing then."""
        return _cached_spec(*args, **kwargs)


class Layout:
    """How the caller of a layer lays out its arrays, and their time-major view for the stack.

    Inputs and outputs are ``(T, B, F)``, or ``(B, T, F)`` with ``batch_first``, or ``(T, F)``
    unbatched; states are ``(L*D, B, S)``, or ``(L*D, S)`` unbatched. The views work on NumPy
    arrays and torch tensors alike (the layers and :mod:`fastrnn.torch` share them).

    Args:
        batch_first: batched inputs and outputs are ``(B, T, F)``.
    """

    __slots__ = ("batch_first",)

    def __init__(self, batch_first: bool = False) -> None:
        self.batch_first = bool(batch_first)

    def time_major(self, name: str, x: Any) -> tuple[Any, bool]:
        """``x`` as ``(T, B, F)`` (a view), and whether it was batched.

        Raises:
            ValueError: ``x`` is neither 2-D nor 3-D (the message names ``name``).
        """
        if x.ndim not in (2, 3):
            raise ValueError(
                f"{name}: expected a 3-D (batched) or 2-D (unbatched) array, got shape "
                f"{tuple(x.shape)}"
            )
        if x.ndim == 2:
            return x[:, None], False
        return (x.swapaxes(0, 1) if self.batch_first else x), True

    def to_caller(self, a: Any, batched: bool) -> Any:
        """A time-major ``(T, B, F)`` result in the caller's layout."""
        if not batched:
            return a[:, 0]
        return a.swapaxes(0, 1) if self.batch_first else a

    @staticmethod
    def state_in(s: Any, batched: bool) -> Any:
        """A caller's state (checked: :meth:`StackSpec.check_state_shape`) as ``(L*D, B, S)``:
        unbatched ones gain the batch axis."""
        return s if batched or s is None else s[:, None]

    @staticmethod
    def state_out(s: Any, batched: bool) -> Any:
        """A ``(L*D, B, S)`` state in the caller's layout."""
        return s if batched or s is None else s[:, 0]


@functools.lru_cache(maxsize=256, typed=True)
def _cached_spec(*args: Any, **kwargs: Any) -> StackSpec:
    """Specs are immutable: the functional API's calls with the same sizes share one."""
    return StackSpec(*args, **kwargs)


def _entry(k: int, p: Any) -> tuple[Any, ...]:
    """One (layer, direction) entry of a parameter list as a :class:`LayerParams` (6-tuple)."""
    if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or not 2 <= len(p) <= 6:
        raise TypeError(
            f"params[{k}]: expected a LayerParams or a sequence (w_ih, w_hh, b_ih, b_hh, w_hr[, "
            f"cell_params]), got {type(p).__name__}"
        )
    return LayerParams(*p)


def _present(entry: Sequence[Any]) -> Iterator[Any]:
    """The items of a :class:`LayerParams`-like entry that are there, in PyTorch's order: the
    five kinds but None, then each of the cell's own (``cell_params``, a tuple or None)."""
    for a in entry[:5]:
        if a is not None:
            yield a
    if len(entry) > 5 and entry[5] is not None:
        yield from entry[5]


def _ready(a: Any, dtype: np.dtype[Any]) -> bool:
    """Whether ``a`` is already a C-contiguous, aligned ndarray of ``dtype`` (the common case,
    checked without np.require's ~1 µs: a generation loop calls a layer once per step)."""
    if type(a) is not np.ndarray or a.dtype != dtype:
        return False
    flags = a.flags
    return bool(flags.c_contiguous and flags.aligned)
