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
from .layers import GRU, LSTM, RNN, _RNNBase

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


def _op(layer: _RNNBase) -> str:
    return {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM"}.get(layer._cell, "GRU")


def export(
    layer: _RNNBase,
    path: str | os.PathLike[str] | None = None,
    *,
    initial_states: bool = False,
    sequence_lens: bool = False,
) -> Any:
    """Export ``layer`` (eval semantics: no dropout) as an ONNX model; write it to ``path`` if
    given. ``initial_states`` / ``sequence_lens`` add the optional inputs. Returns the
    ``onnx.ModelProto``."""
    onnx = _onnx()
    helper, TP = onnx.helper, onnx.TensorProto
    if layer.proj_size:
        raise NotImplementedError("proj_size: ONNX's LSTM operator has no projection")
    L, D, H, I = layer.num_layers, layer._D, layer.hidden_size, layer.input_size
    op = _op(layer)
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: Any) -> str:
        inits.append(onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    x_shape = ["B", "T", I] if layer.batch_first else ["T", "B", I]
    inputs = [helper.make_tensor_value_info("X", TP.FLOAT, x_shape)]
    if initial_states:
        inputs.append(helper.make_tensor_value_info("initial_h", TP.FLOAT, [L * D, "B", H]))
        if op == "LSTM":
            inputs.append(helper.make_tensor_value_info("initial_c", TP.FLOAT, [L * D, "B", H]))
    if sequence_lens:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TP.INT32, ["B"]))

    x = "X"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_tmajor"], perm=[1, 0, 2]))
        x = "X_tmajor"
    params = layer._param_list()
    hs, cs = [], []
    for layer_idx in range(L):
        w = convert.to_onnx(
            layer._cell, [p[:4] for p in params[layer_idx * D : (layer_idx + 1) * D]]
        )
        sfx = f"_l{layer_idx}"
        node_in = [
            x,
            const("W" + sfx, w["W"].astype(np.float32)),
            const("R" + sfx, w["R"].astype(np.float32)),
            const("B" + sfx, w["B"].astype(np.float32)),
            "sequence_lens" if sequence_lens else "",
        ]
        if initial_states and L == 1:  # the whole inputs: no Slice nodes
            node_in += ["initial_h", "initial_c"] if op == "LSTM" else ["initial_h"]
        elif initial_states:
            starts = const("start" + sfx, np.array([layer_idx * D], np.int64))
            ends = const("end" + sfx, np.array([(layer_idx + 1) * D], np.int64))
            axes = const("axes" + sfx, np.array([0], np.int64))
            nodes.append(helper.make_node("Slice", ["initial_h", starts, ends, axes], ["h0" + sfx]))
            node_in.append("h0" + sfx)
            if op == "LSTM":
                nodes.append(
                    helper.make_node("Slice", ["initial_c", starts, ends, axes], ["c0" + sfx])
                )
                node_in.append("c0" + sfx)
        attrs: dict[str, Any] = {
            "hidden_size": H,
            "direction": "bidirectional" if D == 2 else "forward",
        }
        if op == "GRU":
            attrs["linear_before_reset"] = 1 if layer._cell == "gru" else 0
        if layer._cell == "rnn_relu":
            attrs["activations"] = ["Relu"] * D
        outs = ["Y4" + sfx, "Y_h" + sfx] + (["Y_c" + sfx] if op == "LSTM" else [])
        nodes.append(helper.make_node(op, node_in, outs, name=f"{op.lower()}{sfx}", **attrs))
        hs.append("Y_h" + sfx)
        if op == "LSTM":
            cs.append("Y_c" + sfx)
        # (T, D, B, H) -> (T, B, D*H), the next layer's input
        nodes.append(helper.make_node("Transpose", ["Y4" + sfx], ["Yt" + sfx], perm=[0, 2, 1, 3]))
        shape = const("shape" + sfx, np.array([0, 0, -1], np.int64))
        x = "Y" + sfx
        nodes.append(helper.make_node("Reshape", ["Yt" + sfx, shape], [x]))

    y_shape = ["B", "T", D * H] if layer.batch_first else ["T", "B", D * H]
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["Y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["Y"]))
    nodes.append(helper.make_node("Concat", hs, ["Y_h"], axis=0))
    outputs = [
        helper.make_tensor_value_info("Y", TP.FLOAT, y_shape),
        helper.make_tensor_value_info("Y_h", TP.FLOAT, [L * D, "B", H]),
    ]
    if op == "LSTM":
        nodes.append(helper.make_node("Concat", cs, ["Y_c"], axis=0))
        outputs.append(helper.make_tensor_value_info("Y_c", TP.FLOAT, [L * D, "B", H]))

    graph = helper.make_graph(nodes, f"fastrnn_{layer._cell}", inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fastrnn"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


def load(model: Any, node_name: str | None = None, *, dtype: Any = np.float32) -> _RNNBase:
    """A fastrnn layer with the weights of one ``LSTM``/``GRU``/``RNN`` node of an ONNX model
    (a path or a ``ModelProto``): the first such node, or the one named ``node_name``. The
    weights must be initializers; clipping, peepholes, ``input_forget`` and activations other
    than the defaults (and Relu for RNN) have no fastrnn equivalent and are refused."""
    onnx = _onnx()
    if not hasattr(model, "graph"):
        model = onnx.load(os.fspath(model))
    g = model.graph
    nodes = [n for n in g.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if node_name is not None:
        nodes = [n for n in nodes if n.name == node_name]
    if not nodes:
        raise ValueError(
            f"model: no LSTM/GRU/RNN node{f' named {node_name!r}' if node_name else ''}"
        )
    node = nodes[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}

    def init(i: int) -> Any:
        if len(node.input) <= i or not node.input[i]:
            return None
        if node.input[i] not in inits:
            raise ValueError(f"{node.op_type} input {i} ({node.input[i]!r}) is not an initializer")
        return inits[node.input[i]]

    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction == "reverse":
        raise NotImplementedError("direction='reverse' alone has no fastrnn layer equivalent")
    for unsupported in ("clip", "activation_alpha", "activation_beta"):
        if unsupported in attrs:
            raise NotImplementedError(f"attribute {unsupported!r} has no fastrnn equivalent")
    if attrs.get("input_forget", 0):
        raise NotImplementedError("input_forget=1 has no fastrnn equivalent")
    if node.op_type == "LSTM" and init(7) is not None:
        raise NotImplementedError("LSTM peepholes (input P) have no fastrnn equivalent")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    W, R, B = init(1), init(2), init(3)
    if W is None or R is None:
        raise ValueError(f"{node.op_type}: W and R must be initializers")
    D, _, I = W.shape
    H = int(attrs.get("hidden_size", R.shape[2]))
    batch_first = int(attrs.get("layout", 0)) == 1
    kw = {"bidirectional": D == 2, "batch_first": batch_first, "dtype": dtype}
    layer: _RNNBase
    if node.op_type == "LSTM":
        if acts and acts != ["Sigmoid", "Tanh", "Tanh"] * D:
            raise NotImplementedError(f"LSTM activations {acts} have no fastrnn equivalent")
        cell, layer = "lstm", LSTM(I, H, **kw)
    elif node.op_type == "GRU":
        if acts and acts != ["Sigmoid", "Tanh"] * D:
            raise NotImplementedError(f"GRU activations {acts} have no fastrnn equivalent")
        reset_after = int(attrs.get("linear_before_reset", 0)) == 1
        cell = "gru" if reset_after else "gru_reset_before"
        layer = GRU(I, H, reset_after=reset_after, **kw)
    else:
        if (acts and set(acts) - {"Tanh", "Relu"}) or len(set(acts)) > 1:
            raise NotImplementedError(f"RNN activations {acts} have no fastrnn equivalent")
        nonlinearity = "relu" if acts and acts[0] == "Relu" else "tanh"
        cell, layer = f"rnn_{nonlinearity}", RNN(I, H, nonlinearity=nonlinearity, **kw)
    sd = {}
    for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(convert.from_onnx(cell, W, R, B)):
        sfx = "_l0" + ("_reverse" if d else "")
        sd.update(
            {
                f"weight_ih{sfx}": w_ih,
                f"weight_hh{sfx}": w_hh,
                f"bias_ih{sfx}": b_ih,
                f"bias_hh{sfx}": b_hh,
            }
        )
    layer.load_state_dict(sd)
    return layer
