"""SequenceModel in int8: ``quantize_dynamic()`` makes an inference-only copy whose recurrent stack
is ``fastrnn.quantize_dynamic``'s (the embedding and the output layer float32); it runs forward,
evaluate and generate, refuses to train, and its file round-trips (recording ``compute_dtype``
``"int8"``) while float files load as before. The accuracy of trained models is in
test_quantized_accuracy.py."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn.training import SequenceModel, optim

VOCAB = 11


def char_model(cell: str = "lstm", **kw: Any) -> SequenceModel:
    """A small many-to-many model of token ids, after a few training steps (weights not at their
    initial values)."""
    m = SequenceModel(cell, VOCAB, 12, VOCAB, embedding_dim=5, seed=0, **kw)
    rng = np.random.default_rng(1)
    opt = optim.Adam(lr=1e-2)
    for _ in range(3):
        ids = rng.integers(0, VOCAB, (9, 3))
        m.train_step(ids[:-1], ids[1:], opt, loss="cross_entropy")
    return m


def ids(T: int = 7, B: int = 3, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (T, B))


@pytest.mark.parametrize(
    ("cell", "kw"),
    [
        ("rnn", {}),
        ("rnn_relu", {}),
        ("gru", {"num_layers": 2}),
        ("lstm", {"bidirectional": True}),
        ("lstm", {"num_layers": 2, "compute_dtype": "bfloat16"}),
    ],
    ids=["rnn", "rnn_relu", "gru-2layers", "lstm-bidirectional", "lstm-bf16"],
)
def test_quantized_copy_is_the_int8_stack_between_the_float_layers(
    cell: str, kw: dict[str, Any]
) -> None:
    m = char_model(cell, **kw)
    before = m.state_dict()
    q = m.quantize_dynamic()
    assert isinstance(q.rnn, fastrnn.quantized.QuantizedLayer) and q.rnn.compute_dtype == "int8"
    assert q.config == {**m.config, "compute_dtype": "int8"}
    for k, v in m.state_dict().items():  # the model is unchanged
        np.testing.assert_array_equal(v, before[k])
    assert isinstance(m.rnn, fastrnn.layers.RecurrentLayer) and m.rnn.compute_dtype != "int8"

    x = ids()
    out, state = q(x)
    # what it computes: the layer's quantize_dynamic between the float embedding and head
    assert m.embedding is not None
    y, want_state = fastrnn.quantize_dynamic(m.rnn)(m.embedding(x))
    np.testing.assert_array_equal(out, m.head(y))
    states = (state, want_state) if cell != "lstm" else (state[0], want_state[0])
    np.testing.assert_array_equal(*states)
    if cell == "lstm":
        np.testing.assert_array_equal(state[1], want_state[1])
    assert out.dtype == np.float32
    # int8, not the float model: close to it, not the same
    ref, _ = m.eval()(x)
    assert 0 < np.abs(out - ref).max() < 0.1
    # the recurrent weights are int8 with a float32 scale per row; the rest float32
    sd = q.state_dict()
    assert sd["rnn.weight_hh_l0"].dtype == np.int8
    assert sd["rnn.weight_hh_l0_scale"].shape == sd["rnn.weight_hh_l0"].shape[:1]
    assert sd["head.weight"].dtype == sd["embedding.weight"].dtype == np.float32
    np.testing.assert_array_equal(sd["head.weight"], before["head.weight"])
    # the float model still trains
    m.train_step(ids()[:-1], ids()[1:], optim.SGD(lr=0.1), loss="cross_entropy")


def test_evaluate_and_generate() -> None:
    m = char_model("gru")
    q = m.quantize_dynamic()
    x = ids(9, 4)
    loss = q.evaluate(x[:-1], x[1:], loss="cross_entropy")
    float_loss = m.evaluate(x[:-1], x[1:], loss="cross_entropy")
    assert loss != float_loss and abs(loss - float_loss) < 0.01 * float_loss
    g = q.generate([1, 2, 3], 12, temperature=0.7, seed=5)
    assert g.shape == (12,) and g.dtype == np.int64 and ((g >= 0) & (g < VOCAB)).all()
    np.testing.assert_array_equal(g, q.generate([1, 2, 3], 12, temperature=0.7, seed=5))
    # argmax generation: each id is the argmax of the int8 model's logits after the ids before
    g0 = q.generate([4], 5, temperature=0)
    seq = [4]
    for i in range(5):
        logits, _ = q(np.array(seq)[:, None])
        assert g0[i] == int(np.argmax(logits[-1, 0]))
        seq.append(int(g0[i]))


def test_many_to_one_regression_model() -> None:
    m = SequenceModel("lstm", 2, 8, 1, many_to_one=True, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 4, 2)).astype(np.float32)
    q = m.quantize_dynamic()
    out, _ = q(x)
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out, m(x)[0], atol=0.02)
    assert q.evaluate(x, np.zeros((4, 1))) == pytest.approx(float(np.mean(out**2)))


def test_training_entry_points_raise() -> None:
    m = char_model()
    q = m.quantize_dynamic()
    x = ids()
    opt = optim.Adam(lr=1e-2)
    with pytest.raises(RuntimeError, match="train_step: an int8 model is inference-only"):
        q.train_step(x[:-1], x[1:], opt, loss="cross_entropy")
    with pytest.raises(RuntimeError, match="train: an int8 model is inference-only"):
        q.train()
    q.eval()  # inference mode is what it is in
    q(x)
    with pytest.raises(RuntimeError, match="backward: an int8 model is inference-only"):
        q.backward(np.zeros((7, 3, VOCAB), np.float32))
    r = SequenceModel("rnn", 2, 4, 1, many_to_one=True, seed=0).quantize_dynamic()
    with pytest.raises(RuntimeError, match="hidden_grad_norms: an int8 model"):
        r.hidden_grad_norms(np.zeros((3, 1, 2)), np.zeros((1, 1)))
    with pytest.raises(TypeError, match="already int8"):
        q.quantize_dynamic()
    with pytest.raises(ValueError, match="dtype: only 'int8'"):
        m.quantize_dynamic("int4")
    assert m.quantize_dynamic(np.int8).rnn.compute_dtype == "int8"


def test_float64_model_gives_a_float32_int8_model() -> None:
    m = SequenceModel("gru", 3, 6, 2, dtype=np.float64, seed=0)
    q = m.quantize_dynamic()
    assert q.config["dtype"] == "float32" and q.head.dtype == np.float32
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_allclose(q(x)[0], m(x)[0], atol=0.02)
    with pytest.raises(ValueError, match=r"compute_dtype: an int8 model .* not float64"):
        SequenceModel("gru", 3, 6, 2, dtype=np.float64, compute_dtype="int8")


def test_save_load_round_trip(tmp_path: Path) -> None:
    q = char_model("lstm", num_layers=2).quantize_dynamic()
    q.save(tmp_path / "q.npz", vocab="abcdefghijk")
    with zipfile.ZipFile(tmp_path / "q.npz") as z:  # the file records it
        meta = json.loads(str(np.load(z.open("meta.npy"))))
    assert meta["config"]["compute_dtype"] == "int8" and "optimizer" not in meta
    q2, opt, extra = SequenceModel.load(tmp_path / "q.npz")
    assert opt is None and extra == {"vocab": "abcdefghijk"}
    assert isinstance(q2.rnn, fastrnn.QuantizedLSTM) and q2.config == q.config
    sd, sd2 = q.state_dict(), q2.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype
        np.testing.assert_array_equal(sd[k], sd2[k])
    x = ids()
    np.testing.assert_array_equal(q(x)[0], q2(x)[0])
    np.testing.assert_array_equal(q.generate([1], 8, seed=0), q2.generate([1], 8, seed=0))
    with pytest.raises(ValueError, match="optimizer: an int8 model is inference-only"):
        q.save(tmp_path / "x.npz", optim.Adam())
    assert not (tmp_path / "x.npz").exists()


def test_float_files_still_load(tmp_path: Path) -> None:
    """A float model's file (with its optimizer) loads as a float model, and so does a file of
    before compute_dtype (no such key in its config); either quantizes after loading."""
    m = char_model("gru")
    opt = optim.Adam(lr=1e-2)
    m.train_step(ids()[:-1], ids()[1:], opt, loss="cross_entropy")
    m.save(tmp_path / "m.npz", opt)
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["meta"]))
    del meta["config"]["compute_dtype"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    x = ids()
    for name in ("m.npz", "old.npz"):
        m2, opt2, _ = SequenceModel.load(tmp_path / name)
        assert opt2 is not None and m2.rnn.compute_dtype == "float32"
        np.testing.assert_array_equal(m2(x)[0], m(x)[0])
        np.testing.assert_array_equal(m2.quantize_dynamic()(x)[0], m.quantize_dynamic()(x)[0])


def _rewritten(path: Path, out: Path, change: Any) -> Path:
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["meta"]))
    change(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)
    return out


def test_crafted_int8_files_are_refused(tmp_path: Path) -> None:
    char_model().quantize_dynamic().save(tmp_path / "q.npz")
    float_file = tmp_path / "f.npz"
    char_model().save(float_file, optim.Adam())

    def with_optimizer(arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        meta["optimizer"] = {"type": "Adam", "defaults": {}, "steps": 0}

    def float_weight(arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        arrays["param/rnn.weight_hh_l0"] = arrays["param/rnn.weight_hh_l0"].astype(np.float32)

    def no_scale(arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        del arrays["param/rnn.weight_ih_l0_scale"]

    def int8_config(arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """A float model's weights under an int8 config."""
        del meta["optimizer"]
        meta["config"]["compute_dtype"] = "int8"
        for k in [k for k in arrays if k.startswith("opt/")]:
            del arrays[k]

    cases = [
        (tmp_path / "q.npz", with_optimizer, r"an int8 model .* with an optimizer's state"),
        (tmp_path / "q.npz", float_weight, "expected int8 values"),
        (tmp_path / "q.npz", no_scale, r"rnn.weight_ih_l0_scale has shape None"),
        (float_file, int8_config, r"rnn.weight_ih_l0_scale has shape None"),
    ]
    for i, (path, change, message) in enumerate(cases):
        bad = _rewritten(path, tmp_path / f"bad{i}.npz", change)
        with pytest.raises(ValueError, match=message) as e:
            SequenceModel.load(bad)
        assert str(bad) in str(e.value)
