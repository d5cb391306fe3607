"""ONNX export, run in ONNX Runtime; import of ONNX nodes' weights (skipped without onnx / ORT)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastrnn
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
