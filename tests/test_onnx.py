"""ONNX export, run in ONNX Runtime; import of ONNX nodes' weights (skipped without onnx / ORT)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn.layers import from_spec
from helpers import CELLS, make_layer

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from fastrnn import onnx as fonnx  # noqa: E402

KINDS = CELLS  # a layer of every cell (ONNX has no projection)
T, B = 6, 4
LENGTHS = np.array([6, 2, 1, 4])


def run_ort(model: Any, feeds: dict[str, Any]) -> list[Any]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts)
    return sess.run(None, feeds)  # type: ignore[no-any-return]


@pytest.mark.parametrize("seq_lens", [False, True], ids=["full", "sequence_lens"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_export_runs_in_onnxruntime(
    kind: str,
    num_layers: int,
    bidirectional: bool,
    batch_first: bool,
    seq_lens: bool,
    tmp_path: Any,
) -> None:
    m = make_layer(
        kind, 4, 5, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
        seed=3,
    ).eval()  # fmt: skip
    D = 2 if bidirectional else 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, 4) if batch_first else (T, B, 4)).astype(np.float32)
    h0 = rng.standard_normal((num_layers * D, B, 5)).astype(np.float32)
    c0 = rng.standard_normal((num_layers * D, B, 5)).astype(np.float32)
    lstm = kind == "lstm"
    path = tmp_path / "model.onnx"
    model = fonnx.export(m, path, initial_states=True, sequence_lens=seq_lens)
    assert path.exists()
    feeds = {"X": x, "initial_h": h0}
    if lstm:
        feeds["initial_c"] = c0
    if seq_lens:
        feeds["sequence_lens"] = LENGTHS.astype(np.int32)
    outs = run_ort(onnx.load(str(path)), feeds)
    y, st = m(x, (h0, c0) if lstm else h0, lengths=LENGTHS if seq_lens else None)
    np.testing.assert_allclose(outs[0], y, rtol=1e-5, atol=1e-5)
    for a, b in zip(outs[1:], st if lstm else (st,), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert model.ir_version == fonnx.IR_VERSION


def test_export_without_optional_inputs() -> None:
    m = fastrnn.LSTM(4, 5, seed=1).eval()
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    (y_ort, *_) = run_ort(fonnx.export(m), {"X": x})
    np.testing.assert_allclose(y_ort, m(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_import_round_trip(kind: str, bidirectional: bool) -> None:
    m = make_layer(kind, 4, 5, bidirectional=bidirectional, seed=4)
    back = fonnx.load(fonnx.export(m))
    assert type(back) is type(m)
    for k, v in m.state_dict().items():
        np.testing.assert_allclose(back.state_dict()[k], v, rtol=0, atol=1e-7)
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    np.testing.assert_allclose(back(x)[0], m(x)[0], rtol=1e-6, atol=1e-6)


def test_import_a_hand_written_onnx_gru_with_default_linear_before_reset() -> None:
    """ONNX's default GRU (linear_before_reset=0) imports as GRU(reset_after=False)."""
    rng = np.random.default_rng(5)
    H, I = 3, 2
    W = rng.standard_normal((1, 3 * H, I)).astype(np.float32)
    R = rng.standard_normal((1, 3 * H, H)).astype(np.float32)
    Bb = rng.standard_normal((1, 6 * H)).astype(np.float32)
    h = onnx.helper
    node = h.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H)
    graph = h.make_graph(
        [node], "g", [h.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [T, B, I])],
        [h.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (Bb, "B"))],
    )  # fmt: skip
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 14)])
    model.ir_version = 8
    layer = fonnx.load(model)
    assert isinstance(layer, fastrnn.GRU) and not layer.reset_after
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    (y_ort,) = run_ort(model, {"X": x})
    np.testing.assert_allclose(y_ort[:, 0], layer(x)[0], rtol=1e-5, atol=1e-5)


def test_proj_size_is_refused() -> None:
    with pytest.raises(NotImplementedError, match="proj_size"):
        fonnx.export(fastrnn.LSTM(4, 5, proj_size=2))


# ---------------------------------------------------------------- ONNX's options: export and load

#: every cell ONNX has a node for, and its operator
OPTION_CELLS = ("lstm", "lstm_peephole", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu")
DIRECTIONS = ("forward", "reverse", "bidirectional")
CLIP = 0.5  # clamps a good part of the pre-activations of these sizes (checked below)


def option_layer(
    cell: str, direction: str, clip: float | None, input_forget: bool, **kw: Any
) -> Any:
    spec = fastrnn.StackSpec(
        cell, 4, 5, kw.pop("num_layers", 2), bidirectional=direction == "bidirectional",
        reverse=direction == "reverse", clip=clip, input_forget=input_forget,
    )  # fmt: skip
    return from_spec(spec, seed=kw.pop("seed", 3), **kw).eval()


def option_cases() -> list[Any]:
    """cell x direction x clip x input_forget (the cells with a cell state)."""
    return [
        pytest.param(cell, d, clip, fi, id=f"{cell}-{d}-{'clip' if clip else 'noclip'}"
                     + ("-input_forget" if fi else ""))
        for cell in OPTION_CELLS
        for d in DIRECTIONS
        for clip in (None, CLIP)
        for fi in ((False, True) if cell.startswith("lstm") else (False,))
    ]  # fmt: skip


@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("initial_states", [False, True], ids=["zeros", "h0"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("cell", "direction", "clip", "input_forget"), option_cases())
def test_export_options_run_in_onnxruntime(
    cell: str, direction: str, clip: float | None, input_forget: bool, lengths: bool,
    initial_states: bool, batch_first: bool,
) -> None:  # fmt: skip
    """reverse, clip, input_forget and peepholes written as ONNX's: ONNX Runtime's Y, Y_h (and
    Y_c) are the layer's, two layers deep, with lengths, initial states, batch first."""
    m = option_layer(cell, direction, clip, input_forget, batch_first=batch_first)
    lstm, LD = m.spec.has_cell_state, m.spec.num_entries
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, 4) if batch_first else (T, B, 4)).astype(np.float32)
    h0, c0 = rng.standard_normal((2, LD, B, 5)).astype(np.float32)
    model = fonnx.export(m, initial_states=initial_states, sequence_lens=lengths)
    feeds = {"X": x}
    if initial_states:
        feeds.update({"initial_h": h0, "initial_c": c0} if lstm else {"initial_h": h0})
    if lengths:
        feeds["sequence_lens"] = LENGTHS.astype(np.int32)
    outs = run_ort(model, feeds)
    hx = ((h0, c0) if lstm else h0) if initial_states else None
    y, st = m(x, hx, lengths=LENGTHS if lengths else None)
    assert len(outs) == (3 if lstm else 2)
    for what, a, b in zip(("Y", "Y_h", "Y_c"), outs, (y, *(st if lstm else (st,))), strict=False):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=what)


def test_the_options_change_the_outputs() -> None:
    """Each option changes the outputs of these sizes (so that the test above checks each)."""
    x = np.random.default_rng(1).standard_normal((T, B, 4)).astype(np.float32)
    for cell, direction, clip, input_forget in [
        ("lstm", "reverse", None, False),
        ("lstm", "forward", CLIP, False),
        ("lstm", "forward", None, True),
        ("gru", "forward", CLIP, False),
        ("rnn_tanh", "forward", CLIP, False),
    ]:
        on = option_layer(cell, direction, clip, input_forget)
        off = option_layer(cell, "forward", None, False)
        off.load_state_dict(on.state_dict())
        assert np.abs(on(x)[0] - off(x)[0]).max() > 1e-2, on.spec
    on = option_layer("lstm_peephole", "forward", None, False)
    off = option_layer("lstm_peephole", "forward", None, False)
    off.load_state_dict({k: 0 * v if "peephole" in k else v for k, v in on.state_dict().items()})
    assert np.abs(on(x)[0] - off(x)[0]).max() > 1e-2


@pytest.mark.parametrize(("cell", "direction", "clip", "input_forget"), option_cases())
def test_import_round_trip_of_the_options(
    cell: str, direction: str, clip: float | None, input_forget: bool
) -> None:
    """export then load: the same spec (reverse, clip, input_forget, the peephole cell) and the
    same parameters, weight_peephole included."""
    m = option_layer(cell, direction, clip, input_forget, num_layers=1, seed=4)
    back = fonnx.load(fonnx.export(m))
    assert back.spec == m.spec
    assert back.state_dict().keys() == m.state_dict().keys()
    for k, v in m.state_dict().items():
        np.testing.assert_allclose(back.state_dict()[k], v, rtol=0, atol=1e-7, err_msg=k)
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    np.testing.assert_allclose(back(x)[0], m(x)[0], rtol=1e-6, atol=1e-6)


def test_clip_is_written_as_a_float32() -> None:
    m = fastrnn.GRU(4, 5, clip=0.1, seed=0)
    assert fonnx.load(fonnx.export(m)).clip == float(np.float32(0.1))


# ------------------------------------------------------------ hand-written nodes with the options


def lstm_node_model(
    H: int, I: int, D: int, attrs: dict[str, Any], *, peephole_init: bool = True, seed: int = 7
) -> tuple[Any, dict[str, Any]]:
    """A one-node LSTM model as another tool writes it: W, R, B, P initializers in ONNX's layout,
    X, sequence_lens, initial_h, initial_c graph inputs; and its weights."""
    rng = np.random.default_rng(seed)
    w = {
        "W": rng.uniform(-1, 1, (D, 4 * H, I)), "R": rng.uniform(-1, 1, (D, 4 * H, H)),
        "B": rng.uniform(-1, 1, (D, 8 * H)), "P": rng.uniform(-1, 1, (D, 3 * H)),
    }  # fmt: skip
    w = {k: v.astype(np.float32) for k, v in w.items()}
    h = onnx.helper
    F32 = onnx.TensorProto.FLOAT
    ins = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    node = h.make_node("LSTM", ins, ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=H, **attrs)
    inputs = [
        h.make_tensor_value_info("X", F32, ["T", "B", I]),
        h.make_tensor_value_info("sequence_lens", onnx.TensorProto.INT32, ["B"]),
        h.make_tensor_value_info("initial_h", F32, [D, "B", H]),
        h.make_tensor_value_info("initial_c", F32, [D, "B", H]),
    ]
    inits = [onnx.numpy_helper.from_array(w[k], k) for k in ("W", "R", "B")]
    if peephole_init:
        inits.append(onnx.numpy_helper.from_array(w["P"], "P"))
    else:
        inputs.append(h.make_tensor_value_info("P", F32, [D, 3 * H]))
    outputs = [
        h.make_tensor_value_info("Y", F32, ["T", D, "B", H]),
        h.make_tensor_value_info("Y_h", F32, [D, "B", H]),
        h.make_tensor_value_info("Y_c", F32, [D, "B", H]),
    ]
    graph = h.make_graph([node], "g", inputs, outputs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, w


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_import_a_hand_written_lstm_with_every_option(direction: str) -> None:
    """An LSTM node with P, clip, input_forget, activations spelled out in other letter cases and
    activation_alpha/beta (read by no activation of these): fastrnn's layer computes what ONNX
    Runtime does."""
    H, I, D = 3, 2, 2 if direction == "bidirectional" else 1
    attrs = {
        "direction": direction, "clip": 1.5, "input_forget": 1,
        "activations": ["sigmoid", "TANH", "Tanh"] * D,
        "activation_alpha": [0.3, 2.0], "activation_beta": [5.0],
    }  # fmt: skip
    model, w = lstm_node_model(H, I, D, attrs)
    layer = fonnx.load(model)
    assert isinstance(layer, fastrnn.LSTM)
    assert (layer.cell, layer.clip, layer.input_forget) == ("lstm_peephole", 1.5, True)
    assert (layer.bidirectional, layer.reverse) == (D == 2, direction == "reverse")
    # P (i, o, f) as weight_peephole (i, f, o)
    P = w["P"][-1]
    sfx = "_l0_reverse" if D == 2 else "_l0"
    np.testing.assert_array_equal(
        layer.state_dict()["weight_peephole" + sfx],
        np.concatenate([P[:H], P[2 * H :], P[H : 2 * H]]),
    )
    rng = np.random.default_rng(2)
    x = (3 * rng.standard_normal((T, B, I))).astype(np.float32)
    h0, c0 = rng.standard_normal((2, D, B, H)).astype(np.float32)
    feeds = {"X": x, "sequence_lens": LENGTHS.astype(np.int32), "initial_h": h0, "initial_c": c0}
    y_ort, h_ort, c_ort = run_ort(model, feeds)
    y, (h_n, c_n) = layer(x, (h0, c0), lengths=LENGTHS)
    np.testing.assert_allclose(y.reshape(T, B, D, H).transpose(0, 2, 1, 3), y_ort, rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(h_n, h_ort, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_n, c_ort, rtol=1e-5, atol=1e-5)
    y64, _ = fonnx.load(model, dtype=np.float64)(x, (h0, c0), lengths=LENGTHS)
    np.testing.assert_allclose(y64, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_export_a_peephole_lstm_without_bias(direction: str) -> None:
    """bias=False: B is zeros, P is still written."""
    spec = fastrnn.StackSpec(
        "lstm_peephole", 4, 5, 2, bias=False, bidirectional=direction == "bidirectional",
        reverse=direction == "reverse", input_forget=True, clip=CLIP,
    )  # fmt: skip
    m = from_spec(spec, seed=5).eval()
    model = fonnx.export(m, sequence_lens=True)
    assert {t.name for t in model.graph.initializer} >= {"P_l0", "P_l1", "B_l0"}
    x = np.random.default_rng(3).standard_normal((T, B, 4)).astype(np.float32)
    outs = run_ort(model, {"X": x, "sequence_lens": LENGTHS.astype(np.int32)})
    y, (h_n, c_n) = m(x, lengths=LENGTHS)
    for a, b in zip(outs, (y, h_n, c_n), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    back = fonnx.load(model)
    assert back.bias and back.cell == "lstm_peephole"  # ONNX's B is always there: zeros
    assert not back.state_dict()["bias_ih_l0"].any()


def with_activations(m: Any, activations: list[str], alpha: Any = None) -> Any:
    """``m`` exported, its node's activations (and activation_alpha) replaced."""
    model = fonnx.export(m)
    node = next(n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))
    for a in [a for a in node.attribute if a.name == "activations"]:
        node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute("activations", activations))
    if alpha is not None:
        node.attribute.append(onnx.helper.make_attribute("activation_alpha", alpha))
    return model


@pytest.mark.parametrize(
    ("op", "activations", "alpha"),
    [
        ("RNN", ["relu"], None),
        ("RNN", ["RELU", "Relu"], None),
        ("RNN", ["tanh"], [0.5]),
        ("GRU", ["SIGMOID", "tanh"], [1.0, 2.0]),
        ("LSTM", ["sigmoid", "TANH", "Tanh"], [1.0]),
    ],
)
def test_activations_in_any_case(op: str, activations: list[str], alpha: Any) -> None:
    """fastrnn's activations spelled out in any letter case (as ONNX Runtime reads LSTM's and
    GRU's; its RNN takes only Relu, Tanh, ...), alpha/beta unread by them."""
    m = {
        "RNN": fastrnn.RNN(4, 5, bidirectional=len(activations) == 2, seed=0),
        "GRU": fastrnn.GRU(4, 5, reset_after=False, seed=0),
        "LSTM": fastrnn.LSTM(4, 5, seed=0),
    }[op]
    model = with_activations(m, activations, alpha)
    layer = fonnx.load(model)
    relu = activations[0].lower() == "relu"
    assert layer.cell == ("rnn_relu" if relu else "rnn_tanh") if op == "RNN" else m.cell
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    if op == "RNN":  # ONNX Runtime's RNN refuses "relu", "RELU", "tanh"
        model = with_activations(m, [a.capitalize() for a in activations], alpha)
    y_ort = run_ort(model, {"X": x})[0]
    np.testing.assert_allclose(y_ort, layer(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("activations", "alpha", "problem"),
    [
        (["HardSigmoid", "Tanh", "Tanh"], [0.2], r"LSTM activations \['HardSigmoid', 'Tanh', "
         r"'Tanh'\] have no fastrnn equivalent \(fastrnn's LSTM: Sigmoid, Tanh, Tanh"),
        (["Sigmoid", "ScaledTanh", "Tanh"], [1.0], r"LSTM activations \['Sigmoid', 'ScaledTanh'"),
        (["Sigmoid", "Tanh", "Affine"], [1.0], r"LSTM activations \['Sigmoid', 'Tanh', 'Affine'"),
        (["Sigmoid", "Relu", "Tanh"], None, r"LSTM activations \['Sigmoid', 'Relu', 'Tanh'\]"),
    ],
)  # fmt: skip
def test_other_activations_are_refused(activations: list[str], alpha: Any, problem: str) -> None:
    attrs: dict[str, Any] = {"activations": activations}
    if alpha is not None:
        attrs["activation_alpha"] = alpha
    model, _ = lstm_node_model(3, 2, 1, attrs)
    with pytest.raises(fonnx.UnsupportedError, match=rf"^model: {problem}"):
        fonnx.load(model)


def test_rnn_activations_that_differ_per_direction_are_refused() -> None:
    model = fonnx.export(fastrnn.RNN(4, 5, bidirectional=True, seed=0))
    node = next(n for n in model.graph.node if n.op_type == "RNN")
    node.attribute.append(onnx.helper.make_attribute("activations", ["Tanh", "Relu"]))
    with pytest.raises(fonnx.UnsupportedError, match=r"RNN activations \['Tanh', 'Relu'\] have no"):
        fonnx.load(model)


def test_peepholes_fed_at_run_time_are_refused() -> None:
    model, _ = lstm_node_model(3, 2, 1, {}, peephole_init=False)
    with pytest.raises(
        fonnx.UnsupportedError,
        match=r"^model: LSTM input 7 \(P, 'P'\) is not an initializer: peepholes given at run "
        r"time have no fastrnn equivalent",
    ):
        fonnx.load(model)


@pytest.mark.parametrize(("clip", "loaded"), [(float("inf"), None), (3e38, 3e38), (0.25, 0.25)])
def test_clip_values(clip: float, loaded: float | None) -> None:
    """ONNX Runtime takes any clip > 0; inf is no clipping."""
    model = fonnx.export(fastrnn.GRU(4, 5, seed=0))
    node = next(n for n in model.graph.node if n.op_type == "GRU")
    node.attribute.append(onnx.helper.make_attribute("clip", clip))
    layer = fonnx.load(model)
    assert layer.clip == (None if loaded is None else float(np.float32(loaded)))
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    (y_ort, _) = run_ort(model, {"X": x})
    np.testing.assert_allclose(y_ort, layer(x)[0], rtol=1e-5, atol=1e-5)
