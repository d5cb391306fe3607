"""ONNX export and import of fastrnn layers (needs the ``onnx`` package: ``pip install
"fastrnn[onnx]"``).

:func:`export` writes a layer as an ONNX model made of the standard ``LSTM``/``GRU``/``RNN``
operators, one node per layer, so that ONNX Runtime (or any ONNX backend) can serve it:

* inputs ``X`` ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``), optionally ``initial_h``
  ``(L*D, B, H)``, ``initial_c`` (LSTM) and ``sequence_lens`` ``(B,)`` int32;
* outputs ``Y`` ``(T, B, D*H)`` (or batch first), ``Y_h`` ``(L*D, B, H)`` and ``Y_c`` (LSTM),
  the same layouts as the layer's.

The weights are exported in float32. ``proj_size`` has no ONNX equivalent and is refused.
:func:`load` builds a fastrnn layer from the weights and attributes of one such node.

What each of the operators' attributes and inputs is in fastrnn, both ways (:func:`load`'s
docstring states what it refuses):

=====================================  ========================================================
ONNX                                   fastrnn
=====================================  ========================================================
``direction="forward"``                the default
``direction="reverse"``                ``reverse=True``
``direction="bidirectional"``          ``bidirectional=True``
``layout=1``                           ``batch_first=True`` (:func:`export` transposes instead)
``clip``                               ``clip`` (written as a float32; ``inf`` loads as None)
LSTM ``input_forget=1``                ``LSTM(input_forget=True)``
LSTM input ``P`` (an initializer)      ``LSTM(peephole=True)``, ``weight_peephole_l0`` (blocks
                                       i, f, o; ``P``'s are i, o, f)
GRU ``linear_before_reset`` 1 / 0      ``GRU(reset_after=True)`` / ``reset_after=False``
RNN ``activations`` Tanh / Relu        ``RNN(nonlinearity="tanh")`` / ``"relu"``
=====================================  ========================================================
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from . import convert
from ._args import float_dtype
from ._files import open_regular
from .layers import RecurrentLayer, from_spec
from .spec import StackSpec

__all__ = ["UnsupportedError", "export", "load"]

# ONNX Runtime 1.31 reads models up to IR version 13; onnx 1.23 writes 14 by default.
IR_VERSION = 8
OPSET = 14


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'fastrnn.onnx needs the onnx package: pip install "fastrnn[onnx]"'
        ) from None
    return onnx


#: the ONNX operator of each cell
_OP = {
    "rnn_tanh": "RNN",
    "rnn_relu": "RNN",
    "lstm": "LSTM",
    "lstm_peephole": "LSTM",
    "gru": "GRU",
    "gru_reset_before": "GRU",
}


class _Graph:
    """The nodes, initializers, inputs and outputs of the graph being written."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []

    def const(self, name: str, value: Any) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, **attrs))

    def value(self, io: list[Any], name: str, elem: int, shape: list[Any]) -> None:
        io.append(self.onnx.helper.make_tensor_value_info(name, elem, shape))


def _node_attrs(spec: StackSpec) -> dict[str, Any]:
    D = spec.num_directions
    direction = "bidirectional" if D == 2 else "reverse" if spec.reverse else "forward"
    attrs: dict[str, Any] = {"hidden_size": spec.hidden_size, "direction": direction}
    if _OP[spec.cell] == "GRU":
        attrs["linear_before_reset"] = 1 if spec.cell == "gru" else 0
    if spec.cell == "rnn_relu":
        attrs["activations"] = ["Relu"] * D
    if spec.clip is not None:
        attrs["clip"] = float(spec.clip)
    if spec.input_forget:
        attrs["input_forget"] = 1
    return attrs


def _initial_state_inputs(g: _Graph, spec: StackSpec, layer_idx: int) -> list[str]:
    """This layer's slices of ``initial_h`` (and ``initial_c``); the whole inputs for one layer."""
    names = ["initial_h", "initial_c"] if spec.has_cell_state else ["initial_h"]
    if spec.num_layers == 1:
        return names
    D, sfx = spec.num_directions, f"_l{layer_idx}"
    starts = g.const("start" + sfx, np.array([layer_idx * D], np.int64))
    ends = g.const("end" + sfx, np.array([(layer_idx + 1) * D], np.int64))
    axes = g.const("axes" + sfx, np.array([0], np.int64))
    out = []
    for name in names:
        g.node("Slice", [name, starts, ends, axes], [name[8] + "0" + sfx])
        out.append(name[8] + "0" + sfx)
    return out


def _layer_node(
    g: _Graph, layer: RecurrentLayer, layer_idx: int, x: str, initial_states: bool,
    sequence_lens: bool,
) -> str:  # fmt: skip
    """The nodes of one layer of the stack, reading ``x``; returns its output's name."""
    spec, op, sfx = layer.spec, _OP[layer.spec.cell], f"_l{layer_idx}"
    D = spec.num_directions
    params = spec.entries_of(dict(layer.named_parameters()))[layer_idx * D : (layer_idx + 1) * D]
    peephole = spec.cell == "lstm_peephole"
    w = convert.to_onnx(
        spec.cell, [tuple(p[:4]) + (tuple(p.cell_params) if peephole else ()) for p in params]
    )
    node_in = [x] + [g.const(k + sfx, w[k].astype(np.float32)) for k in ("W", "R", "B")]
    node_in.append("sequence_lens" if sequence_lens else "")
    if initial_states:
        node_in += _initial_state_inputs(g, spec, layer_idx)
    else:
        node_in += ["", ""] if spec.has_cell_state else [""]
    if peephole:
        node_in.append(g.const("P" + sfx, w["P"].astype(np.float32)))
    while not node_in[-1]:  # trailing optional inputs are left out
        node_in.pop()
    outs = ["Y4" + sfx, "Y_h" + sfx] + (["Y_c" + sfx] if spec.has_cell_state else [])
    g.node(op, node_in, outs, name=f"{op.lower()}{sfx}", **_node_attrs(spec))
    # (T, D, B, H) -> (T, B, D*H), the next layer's input
    g.node("Transpose", ["Y4" + sfx], ["Yt" + sfx], perm=[0, 2, 1, 3])
    g.node("Reshape", ["Yt" + sfx, g.const("shape" + sfx, np.array([0, 0, -1], np.int64))],
           ["Y" + sfx])  # fmt: skip
    return "Y" + sfx


def export(
    layer: RecurrentLayer,
    path: str | os.PathLike[str] | None = None,
    *,
    initial_states: bool = False,
    sequence_lens: bool = False,
) -> Any:
    """Export ``layer`` (eval semantics: no dropout) as an ONNX model (the module's docstring
    lists its inputs and outputs).

    Each node carries the layer's options (the module's table): ``direction="reverse"`` for
    ``reverse``, ``clip`` (as a float32), ``input_forget=1`` and the peepholes as the input ``P``.

    Args:
        layer: a :class:`~fastrnn.layers.RNN`, :class:`~fastrnn.layers.LSTM` or
            :class:`~fastrnn.layers.GRU`, without ``proj_size``.
        path: where to write the model, or None.
        initial_states: add the inputs ``initial_h`` ``(L*D, B, H)`` (and ``initial_c``).
        sequence_lens: add the input ``sequence_lens`` ``(B,)`` int32.

    Returns:
        The checked ``onnx.ModelProto`` (opset 14).

    Raises:
        ImportError: the ``onnx`` package is not installed.
        NotImplementedError: the layer has a projection (``proj_size``), or a cell no ONNX
            operator computes (the layer-normalised cells, :class:`~fastrnn.layers.LayerNormLSTM`
            and :class:`~fastrnn.layers.LayerNormGRU`).
    """
    onnx = _onnx()
    TP = onnx.TensorProto
    spec = layer.spec
    if spec.cell not in _OP:
        raise NotImplementedError(
            f"layer: ONNX's RNN, LSTM and GRU operators have no {spec.cell} cell (no layer "
            f"norms); a {type(layer).__name__} cannot be exported"
        )
    if spec.proj_size:
        raise NotImplementedError("proj_size: ONNX's LSTM operator has no projection")
    LD, H, DH, lstm = spec.num_entries, spec.hidden_size, spec.output_size, spec.has_cell_state
    bf = layer.batch_first
    g = _Graph(onnx)
    g.value(
        g.inputs, "X", TP.FLOAT, ["B", "T", spec.input_size] if bf else ["T", "B", spec.input_size]
    )
    if initial_states:
        for name in ["initial_h", "initial_c"] if lstm else ["initial_h"]:
            g.value(g.inputs, name, TP.FLOAT, [LD, "B", H])
    if sequence_lens:
        g.value(g.inputs, "sequence_lens", TP.INT32, ["B"])

    x = "X"
    if bf:
        g.node("Transpose", ["X"], ["X_tmajor"], perm=[1, 0, 2])
        x = "X_tmajor"
    for layer_idx in range(spec.num_layers):
        x = _layer_node(g, layer, layer_idx, x, initial_states, sequence_lens)

    g.node("Transpose" if bf else "Identity", [x], ["Y"], **({"perm": [1, 0, 2]} if bf else {}))
    g.value(g.outputs, "Y", TP.FLOAT, ["B", "T", DH] if bf else ["T", "B", DH])
    for state in ["Y_h", "Y_c"] if lstm else ["Y_h"]:
        g.node("Concat", [f"{state}_l{i}" for i in range(spec.num_layers)], [state], axis=0)
        g.value(g.outputs, state, TP.FLOAT, [LD, "B", H])

    graph = onnx.helper.make_graph(g.nodes, f"fastrnn_{spec.cell}", g.inputs, g.outputs, g.inits)
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="fastrnn"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


class UnsupportedError(NotImplementedError, ValueError):
    """A valid ONNX node that computes what no fastrnn layer does (activations other than
    fastrnn's, peepholes not held in the model, constant lengths or initial states; the list is
    :func:`load`'s): a NotImplementedError, and a ValueError as every problem of a model
    :func:`load` reads."""


#: each operator's attributes (ONNX's LSTM, GRU, RNN, opset 14) and their AttributeProto types
_COMMON_ATTRS = {
    "hidden_size": "INT", "direction": "STRING", "layout": "INT", "activations": "STRINGS",
    "activation_alpha": "FLOATS", "activation_beta": "FLOATS", "clip": "FLOAT",
}  # fmt: skip
_ATTRS = {
    "LSTM": {**_COMMON_ATTRS, "input_forget": "INT"},
    "GRU": {**_COMMON_ATTRS, "linear_before_reset": "INT"},
    "RNN": _COMMON_ATTRS,
}
#: each operator's activation functions per direction, ONNX's defaults (lower case: ONNX Runtime
#: reads the names in any case)
_ACTIVATIONS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"], "RNN": ["tanh"]}
#: the activation functions ONNX defines for them (lower case)
_ONNX_ACTIVATIONS = {
    "relu", "tanh", "sigmoid", "affine", "leakyrelu", "thresholdedrelu", "scaledtanh",
    "hardsigmoid", "elu", "softsign", "softplus",
}  # fmt: skip
#: the node's inputs after X, W, R, B that a layer takes at each call, by position, and why a
#: constant one is refused
_CALL_INPUTS = {
    4: ("sequence_lens", "a constant sequence_lens (a layer takes lengths at each call)"),
    5: ("initial_h", "a constant initial_h (a layer takes its initial state at each call)"),
    6: ("initial_c", "a constant initial_c (a layer takes its initial state at each call)"),
}
#: LSTM's input P, the peepholes, by position
_P = 7
#: the TensorProto data types of weights: FLOAT, DOUBLE, FLOAT16
_FLOATS: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.float32), 11: np.dtype(np.float64), 10: np.dtype(np.float16),
}  # fmt: skip


def _read_model(onnx: Any, path: Any, where: str) -> Any:
    """The ModelProto of the file at ``path`` (a regular file; its external data, if any, is not
    read: :func:`_tensor` refuses it)."""
    with open_regular(path, where) as f:
        data = f.read()
    try:
        return onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError and the like: not an ONNX model
        raise ValueError(f"{where}: not an ONNX model ({type(e).__name__}: {e})") from None


def _find_node(model: Any, node_name: str | None) -> Any:
    nodes = [
        n
        for n in model.graph.node
        if n.op_type in _ATTRS and n.domain in ("", "ai.onnx")
        and (node_name is None or n.name == node_name)
    ]  # fmt: skip
    if not nodes:
        raise ValueError(f"no LSTM/GRU/RNN node{f' named {node_name!r}' if node_name else ''}")
    if node_name is not None and len(nodes) > 1:
        raise ValueError(f"{len(nodes)} LSTM/GRU/RNN nodes are named {node_name!r}")
    return nodes[0]


def _attributes(onnx: Any, node: Any) -> dict[str, Any]:
    """The node's attributes by name, each one of its operator's and of the type ONNX gives it
    (strings decoded)."""
    op, kinds, out = node.op_type, _ATTRS[node.op_type], {}
    for a in node.attribute:
        kind = kinds.get(a.name)
        if kind is None:
            raise ValueError(f"{op}: attribute {a.name!r} is not one of ONNX's {op} attributes")
        if a.name in out:
            raise ValueError(f"{op}: attribute {a.name!r} is given twice")
        if a.type != getattr(onnx.AttributeProto, kind):
            got = {v: k for k, v in onnx.AttributeProto.AttributeType.items()}.get(a.type, a.type)
            raise ValueError(f"{op}: attribute {a.name!r} must be of type {kind}, got {got}")
        v = onnx.helper.get_attribute_value(a)
        if kind == "STRING":
            v = v.decode("utf-8", "replace")
        elif kind == "STRINGS":
            v = [b.decode("utf-8", "replace") for b in v]
        out[a.name] = v
    return out


def _options(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The node's direction, clipping and coupled gates as the spec's ``bidirectional``,
    ``reverse``, ``clip`` and ``input_forget``; a ValueError for a value ONNX does not define
    (or ONNX Runtime refuses: a clip that is not > 0)."""
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(
            f"{op}: direction {direction!r}: expected 'forward', 'reverse' or 'bidirectional'"
        )
    for flag in ("layout", "linear_before_reset", "input_forget"):
        if attrs.get(flag, 0) not in (0, 1):
            raise ValueError(f"{op}: attribute {flag!r} must be 0 or 1, got {attrs[flag]}")
    clip = attrs.get("clip")
    if clip is not None and not clip > 0:  # NaN too
        raise ValueError(f"{op}: attribute 'clip' must be > 0, got {clip}")
    return {
        "bidirectional": direction == "bidirectional",
        "reverse": direction == "reverse",
        "clip": None if clip is None or math.isinf(clip) else float(clip),
        "input_forget": attrs.get("input_forget", 0) == 1,
    }


def _tensor(onnx: Any, t: Any, what: str) -> Any:
    """An initializer's array: float data held in the model, as much as its dims declare (checked
    before it is made), finite."""
    if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
        raise ValueError(
            f"{what}: its data is in an external file, which fastrnn.onnx.load does not read "
            "(onnx.load(path) reads it from the model's folder: pass the ModelProto it returns)"
        )
    dt = _FLOATS.get(t.data_type)
    if dt is None:
        name = {v: k for k, v in onnx.TensorProto.DataType.items()}.get(t.data_type, t.data_type)
        raise ValueError(f"{what}: expected a FLOAT, DOUBLE or FLOAT16 tensor, got {name}")
    if any(d < 0 for d in t.dims) or t.HasField("segment"):
        raise ValueError(f"{what}: declares the shape {tuple(t.dims)} (or a segment)")
    count = math.prod(t.dims)
    field = {1: t.float_data, 11: t.double_data, 10: t.int32_data}[t.data_type]
    held = len(t.raw_data) if t.raw_data else len(field) * dt.itemsize
    if held != count * dt.itemsize:
        raise ValueError(
            f"{what}: declares shape {tuple(t.dims)} of {dt} ({count * dt.itemsize} bytes), "
            f"holds {held} bytes"
        )
    a = onnx.numpy_helper.to_array(t)
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: contains NaN or infinity")
    return a.astype(np.float32) if dt == np.float16 else a


def _weights(onnx: Any, graph: Any, node: Any) -> tuple[Any, Any, Any, Any]:
    """W, R, B (or None) and P (or None) from the graph's initializers; the inputs a layer takes
    at each call must not be constants."""
    op, ins = node.op_type, list(node.input)
    limit = 8 if op == "LSTM" else 6
    if not 3 <= len(ins) <= limit or not ins[1] or not ins[2]:
        raise ValueError(f"{op}: expected the inputs X, W, R and at most {limit} in all, got {ins}")
    inits: dict[str, list[Any]] = {}
    for t in graph.initializer:
        inits.setdefault(t.name, []).append(t)

    def init(i: int, what: str) -> Any:
        found = inits.get(ins[i], [])
        if len(found) != 1:
            problem = "is not an initializer" if not found else "names two initializers"
            raise ValueError(f"{op} input {i} ({what}, {ins[i]!r}) {problem}")
        return _tensor(onnx, found[0], f"{op} input {i} ({what}, {ins[i]!r})")

    for i, (_, why) in _CALL_INPUTS.items():
        if i < len(ins) and ins[i] and ins[i] in inits:
            raise UnsupportedError(f"{op}: {why} has no fastrnn equivalent")
    P = None
    if len(ins) > _P and ins[_P]:
        if ins[_P] not in inits:
            raise UnsupportedError(
                f"{op} input {_P} (P, {ins[_P]!r}) is not an initializer: peepholes given at "
                "run time have no fastrnn equivalent (a layer holds its peepholes: make P an "
                "initializer of the model)"
            )
        P = init(_P, "P")
    B = init(3, "B") if len(ins) > 3 and ins[3] else None
    return init(1, "W"), init(2, "R"), B, P


def _check_weight_shapes(
    op: str, attrs: dict[str, Any], D: int, W: Any, R: Any, B: Any, P: Any
) -> None:
    """W ``(D, G*H, I)``, R ``(D, G*H, H)``, B ``(D, 2*G*H)``, P ``(D, 3*H)`` consistent with each
    other and with the node's ``hidden_size`` and ``direction``: a crafted node cannot declare
    sizes its arrays do not have."""
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] not in (1, 2):
        raise ValueError(f"{op}: W and R must be 3-D (D, G*H, ...), got {W.shape} and {R.shape}")
    _, GH, H = R.shape
    H_attr = attrs.get("hidden_size", H)
    if GH != G * H or H_attr != H or W.shape[:2] != (R.shape[0], GH) or W.shape[2] < 1 or H < 1:
        raise ValueError(
            f"{op}: hidden_size {H_attr} does not match W {W.shape} and R {R.shape} "
            f"(expected W (D, {G}*H, I), R (D, {G}*H, H))"
        )
    if R.shape[0] != D:
        raise ValueError(
            f"{op}: direction {attrs.get('direction', 'forward')!r} needs W and R of {D} "
            f"direction(s), got {R.shape[0]}"
        )
    if B is not None and B.shape != (D, 2 * GH):
        raise ValueError(f"{op}: B must have shape {(D, 2 * GH)}, got {B.shape}")
    if P is not None and P.shape != (D, 3 * H):
        raise ValueError(f"{op}: P must have shape {(D, 3 * H)}, got {P.shape}")


def _cell_of(op: str, attrs: dict[str, Any], D: int, peephole: bool) -> str:
    """The fastrnn cell of an ONNX node, from its operator, activations and peepholes."""
    acts = attrs.get("activations", _ACTIVATIONS[op] * D)
    per = len(_ACTIVATIONS[op])
    if len(acts) != per * D or any(a.lower() not in _ONNX_ACTIVATIONS for a in acts):
        raise ValueError(
            f"{op}: activations {acts}: expected {per * D} of ONNX's activation functions "
            f"({per} per direction)"
        )
    lower = [a.lower() for a in acts]
    if op == "RNN":
        if set(lower) - {"tanh", "relu"} or len(set(lower)) > 1:
            raise UnsupportedError(
                f"RNN activations {acts} have no fastrnn equivalent (fastrnn's RNN: Tanh or Relu, "
                "the same in both directions)"
            )
        return "rnn_relu" if lower[0] == "relu" else "rnn_tanh"
    if lower != _ACTIVATIONS[op] * D:
        raise UnsupportedError(
            f"{op} activations {acts} have no fastrnn equivalent (fastrnn's {op}: "
            f"{', '.join(a.capitalize() for a in _ACTIVATIONS[op])}, ONNX's default)"
        )
    if op == "LSTM":
        return "lstm_peephole" if peephole else "lstm"
    return "gru" if attrs.get("linear_before_reset", 0) == 1 else "gru_reset_before"


def _layer_of(onnx: Any, graph: Any, node: Any, dtype: Any) -> RecurrentLayer:
    """The layer of ``node``, every attribute and initializer it reads checked first."""
    op = node.op_type
    attrs = _attributes(onnx, node)
    options = _options(op, attrs)
    D = 2 if options["bidirectional"] else 1
    W, R, B, P = _weights(onnx, graph, node)
    cell = _cell_of(op, attrs, D, P is not None)
    _check_weight_shapes(op, attrs, D, W, R, B, P)  # before a layer of those sizes is made
    spec = StackSpec(cell, W.shape[2], R.shape[2], dtype=dtype, **options)
    layer = from_spec(spec, batch_first=attrs.get("layout", 0) == 1)
    sd: dict[str, Any] = {}
    for d, params in enumerate(convert.from_onnx(spec.cell, W, R, B, P)):
        names = spec.entry_names(d)
        sd.update(zip(names[:4], params[:4], strict=True))
        if P is not None:
            sd.update(zip(names.cell_params, params[4:], strict=True))
    layer.load_state_dict(sd)
    return layer


def load(model: Any, node_name: str | None = None, *, dtype: Any = np.float32) -> RecurrentLayer:
    """A fastrnn layer with the weights of one ``LSTM``/``GRU``/``RNN`` node of an ONNX model.

    The model is read as untrusted input: every attribute and initializer the node uses is
    checked (types, values, the sizes declared against the data held, finite weights) before a
    layer is made.

    What is taken (the module's table): every attribute of the three operators --
    ``hidden_size``, ``direction`` (``"reverse"``: ``reverse=True``), ``layout``
    (``batch_first``), ``clip`` (> 0; ``inf`` is no clipping), LSTM's ``input_forget``, GRU's
    ``linear_before_reset`` -- and the inputs ``W``, ``R``, ``B`` and LSTM's ``P`` (peepholes:
    ``LSTM(peephole=True)``, whatever its values) as initializers. ``activations`` are taken
    when they are what a fastrnn cell computes, in any letter case: ONNX's defaults (LSTM
    Sigmoid, Tanh, Tanh; GRU Sigmoid, Tanh; RNN Tanh) spelled out, or RNN Relu, the same in both
    directions (ONNX Runtime reads LSTM's and GRU's in any case, RNN's only as written here).
    ``activation_alpha`` and ``activation_beta`` are taken and ignored: only other activations
    than those (Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu) read them, so
    they change none of these (ONNX Runtime ignores them too). The inputs ``X``,
    ``sequence_lens``, ``initial_h`` and ``initial_c`` are the layer call's ``x``, ``lengths``
    and ``hx``.

    Args:
        model: a path or an ``onnx.ModelProto``; the weights must be initializers held in the
            model (float32, float64 or float16; a file's external data is not read).
        node_name: the node's name; None for the first such node.
        dtype: float32 or float64, the layer's.

    Returns:
        An :class:`~fastrnn.layers.RNN`, :class:`~fastrnn.layers.LSTM` or
        :class:`~fastrnn.layers.GRU` with the node's sizes, direction, layout (``batch_first``),
        clipping, coupled gates and peepholes.

    Raises:
        ImportError: the ``onnx`` package is not installed.
        TypeError: ``dtype`` is not float32 or float64.
        UnsupportedError: what no fastrnn layer computes: activations other than the above
            (any other function, or RNN's Tanh in one direction and Relu in the other); a
            ``P`` that is not an initializer (peepholes fed at run time); ``sequence_lens``,
            ``initial_h`` or ``initial_c`` held as initializers (constants: a layer takes them
            at each call).
        ValueError: any other problem of the model (no such node, a bad attribute -- one ONNX
            does not define, or a ``clip`` not > 0, which ONNX Runtime refuses too -- or a bad
            initializer), naming the file (or ``model``).
        OSError: a path that cannot be opened.
    """
    onnx = _onnx()
    dtype = float_dtype("dtype", dtype)
    where = "model"
    if not hasattr(model, "graph"):
        where = f"model: {os.fspath(model)}"
        model = _read_model(onnx, model, where)
    try:
        return _layer_of(onnx, model.graph, _find_node(model, node_name), dtype)
    except UnsupportedError as e:
        raise UnsupportedError(f"{where}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
