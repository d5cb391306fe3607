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
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import convert
from .layers import RecurrentLayer, from_spec
from .spec import StackSpec

__all__ = ["export", "load"]

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
    attrs: dict[str, Any] = {
        "hidden_size": spec.hidden_size,
        "direction": "bidirectional" if D == 2 else "forward",
    }
    if _OP[spec.cell] == "GRU":
        attrs["linear_before_reset"] = 1 if spec.cell == "gru" else 0
    if spec.cell == "rnn_relu":
        attrs["activations"] = ["Relu"] * D
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
    w = convert.to_onnx(spec.cell, [p[:4] for p in params])
    node_in = [x] + [g.const(k + sfx, w[k].astype(np.float32)) for k in ("W", "R", "B")]
    node_in.append("sequence_lens" if sequence_lens else "")
    if initial_states:
        node_in += _initial_state_inputs(g, spec, layer_idx)
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
    """Export ``layer`` (eval semantics: no dropout) as an ONNX model; write it to ``path`` if
    given. ``initial_states`` / ``sequence_lens`` add the optional inputs. Returns the
    ``onnx.ModelProto``."""
    onnx = _onnx()
    TP = onnx.TensorProto
    spec = layer.spec
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


def _find_node(model: Any, node_name: str | None) -> Any:
    nodes = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if node_name is not None:
        nodes = [n for n in nodes if n.name == node_name]
    if not nodes:
        raise ValueError(
            f"model: no LSTM/GRU/RNN node{f' named {node_name!r}' if node_name else ''}"
        )
    return nodes[0]


def _check_supported(node: Any, attrs: dict[str, Any], peepholes: Any) -> None:
    """Refuse what no fastrnn cell computes."""
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction == "reverse":
        raise NotImplementedError("direction='reverse' alone has no fastrnn layer equivalent")
    for unsupported in ("clip", "activation_alpha", "activation_beta"):
        if unsupported in attrs:
            raise NotImplementedError(f"attribute {unsupported!r} has no fastrnn equivalent")
    if attrs.get("input_forget", 0):
        raise NotImplementedError("input_forget=1 has no fastrnn equivalent")
    if node.op_type == "LSTM" and peepholes is not None:
        raise NotImplementedError("LSTM peepholes (input P) have no fastrnn equivalent")


def _check_weight_shapes(op: str, attrs: dict[str, Any], W: Any, R: Any, B: Any) -> None:
    """W ``(D, G*H, I)``, R ``(D, G*H, H)``, B ``(D, 2*G*H)`` consistent with each other and with
    the node's ``hidden_size``: a crafted node cannot declare sizes its arrays do not have."""
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] not in (1, 2):
        raise ValueError(f"{op}: W and R must be 3-D (D, G*H, ...), got {W.shape} and {R.shape}")
    D, GH, H = R.shape
    H_attr = attrs.get("hidden_size", H)
    if GH != G * H or H_attr != H or W.shape[:2] != (D, GH) or W.shape[2] < 1 or H < 1:
        raise ValueError(
            f"{op}: hidden_size {H_attr} does not match W {W.shape} and R {R.shape} "
            f"(expected W (D, {G}*H, I), R (D, {G}*H, H))"
        )
    if B is not None and B.shape != (D, 2 * GH):
        raise ValueError(f"{op}: B must have shape {(D, 2 * GH)}, got {B.shape}")


def _cell_of(op: str, attrs: dict[str, Any], D: int) -> str:
    """The fastrnn cell of an ONNX node, from its operator and activations."""
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    defaults = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
    if op in defaults:
        if acts and acts != defaults[op] * D:
            raise NotImplementedError(f"{op} activations {acts} have no fastrnn equivalent")
        if op == "LSTM":
            return "lstm"
        return "gru" if int(attrs.get("linear_before_reset", 0)) == 1 else "gru_reset_before"
    if (acts and set(acts) - {"Tanh", "Relu"}) or len(set(acts)) > 1:
        raise NotImplementedError(f"RNN activations {acts} have no fastrnn equivalent")
    return "rnn_relu" if acts and acts[0] == "Relu" else "rnn_tanh"


def load(model: Any, node_name: str | None = None, *, dtype: Any = np.float32) -> RecurrentLayer:
    """A fastrnn layer with the weights of one ``LSTM``/``GRU``/``RNN`` node of an ONNX model
    (a path or a ``ModelProto``): the first such node, or the one named ``node_name``. The
    weights must be initializers; clipping, peepholes, ``input_forget`` and activations other
    than the defaults (and Relu for RNN) have no fastrnn equivalent and are refused."""
    onnx = _onnx()
    if not hasattr(model, "graph"):
        path = os.fspath(model)
        try:
            model = onnx.load(path)
        except OSError:
            raise
        except Exception as e:  # protobuf's DecodeError and the like: not an ONNX model
            raise ValueError(
                f"model: {path}: not an ONNX model ({type(e).__name__}: {e})"
            ) from None
    node = _find_node(model, node_name)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}

    def init(i: int) -> Any:
        if len(node.input) <= i or not node.input[i]:
            return None
        if node.input[i] not in inits:
            raise ValueError(f"{node.op_type} input {i} ({node.input[i]!r}) is not an initializer")
        return inits[node.input[i]]

    _check_supported(node, attrs, init(7))
    W, R, B = init(1), init(2), init(3)
    if W is None or R is None:
        raise ValueError(f"{node.op_type}: W and R must be initializers")
    _check_weight_shapes(node.op_type, attrs, W, R, B)  # before a layer of those sizes is made
    D, _, I = W.shape
    H = int(R.shape[2])
    spec = StackSpec(_cell_of(node.op_type, attrs, D), I, H, bidirectional=D == 2, dtype=dtype)
    layer = from_spec(spec, batch_first=int(attrs.get("layout", 0)) == 1)
    sd: dict[str, Any] = {}
    for d, params in enumerate(convert.from_onnx(spec.cell, W, R, B)):
        sd.update(zip(spec.entry_names(d)[:4], params, strict=True))
    layer.load_state_dict(sd)
    return layer
