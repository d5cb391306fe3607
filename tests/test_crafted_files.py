"""Crafted or damaged files: a ValueError naming the file and the problem, checked before
anything of the declared sizes is allocated (not AttributeError, IndexError, DecodeError or
MemoryError)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fastrnn
import fastrnn.onnx
from fastrnn.training import optim


def saved_model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    model = fastrnn.SequenceModel("gru", 5, 8, 3, embedding_dim=4, seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as z:
        return path, {k: z[k] for k in z.files}


def rewrite(path: Path, arrays: dict[str, np.ndarray], meta: object) -> Path:
    out = path.with_name("crafted.npz")
    np.savez(out, **{**arrays, "meta": np.array(json.dumps(meta))})
    return out


def test_sequence_model_meta_not_an_object(tmp_path: Path) -> None:
    path, arrays = saved_model(tmp_path)
    for meta in ([1, 2], "text", 3):
        with pytest.raises(ValueError, match=r"crafted\.npz: not a fastrnn SequenceModel file"):
            fastrnn.SequenceModel.load(rewrite(path, arrays, meta))
    no_meta = tmp_path / "no_meta.npz"
    np.savez(no_meta, **{k: v for k, v in arrays.items() if k != "meta"})
    with pytest.raises(ValueError, match=r"no_meta\.npz: not a fastrnn SequenceModel file"):
        fastrnn.SequenceModel.load(no_meta)


def test_sequence_model_sizes_checked_before_allocating(tmp_path: Path) -> None:
    path, arrays = saved_model(tmp_path)
    meta = json.loads(str(arrays["meta"]))
    meta["config"]["hidden_size"] = 200_000  # ~10**11 parameters declared, a few hundred held
    with pytest.raises(ValueError, match=r"crafted\.npz: rnn\.weight_ih_l0 has shape \(24, 4\)"):
        fastrnn.SequenceModel.load(rewrite(path, arrays, meta))
    meta["config"] = {"cell": "lstm"}
    with pytest.raises(ValueError, match=r"crafted\.npz: a bad config"):
        fastrnn.SequenceModel.load(rewrite(path, arrays, meta))
    meta = json.loads(str(arrays["meta"]))
    meta["config"]["surprise"] = 1
    with pytest.raises(ValueError, match=r"crafted\.npz: a bad config .*surprise"):
        fastrnn.SequenceModel.load(rewrite(path, arrays, meta))
    model, _, _ = fastrnn.SequenceModel.load(path)  # the untouched file still loads
    assert model.rnn.hidden_size == 8


def onnx_gru(H: int = 4, I: int = 3) -> object:
    pytest.importorskip("onnx")
    return fastrnn.onnx.export(fastrnn.GRU(I, H, seed=0))


def test_onnx_garbage_file(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x96\x01 this is not protobuf \xff\xfe" * 10)
    with pytest.raises(ValueError, match=r"garbage\.onnx: not an ONNX model"):
        fastrnn.onnx.load(bad)


def _set(model: object, name: str, value: np.ndarray) -> None:
    import onnx

    for t in model.graph.initializer:  # type: ignore[attr-defined]
        if t.name == name:
            t.CopyFrom(onnx.numpy_helper.from_array(value, name))


def test_onnx_node_sizes_checked(tmp_path: Path) -> None:
    import onnx

    model = onnx_gru()
    _set(model, "R_l0", np.zeros((1, 12), np.float32))  # wrong rank
    with pytest.raises(ValueError, match="GRU: W and R must be 3-D"):
        fastrnn.onnx.load(model)
    model = onnx_gru()
    node = next(n for n in model.graph.node if n.op_type == "GRU")  # type: ignore[attr-defined]
    attr = next(a for a in node.attribute if a.name == "hidden_size")
    attr.i = 4000  # declared, not held: refused before a 4000-unit layer is made
    with pytest.raises(ValueError, match="GRU: hidden_size 4000 does not match"):
        fastrnn.onnx.load(model)
    path = tmp_path / "ok.onnx"
    onnx.save(onnx_gru(), str(path))
    assert fastrnn.onnx.load(path).hidden_size == 4


# ------------------------------------------------------------- the optimizer's own contract


def test_optimizer_load_state_dict_checks_before_changing() -> None:
    """Optimizer.load_state_dict (the path a file's state takes) checks everything before it
    changes anything; the constructors' rules are its rules for the hyper-parameters."""
    opt = optim.Adam(lr=0.01)
    p = {"w": np.ones(3, np.float32)}
    opt.step(p, {"w": np.ones(3, np.float32)})
    good = opt.state_dict()
    bad = {**good, "state": {"w": {**good["state"]["w"], "exp_avg_sq": -np.ones(3, np.float32)}}}
    with pytest.raises(ValueError, match=r"\['exp_avg_sq'\]: expected finite values >= 0"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"lr: must be >= 0"):
        opt.load_state_dict({**good, "defaults": {**good["defaults"], "lr": -1.0}})
    with pytest.raises(ValueError, match=r"\['w'\]: there is no parameter of that name"):
        opt.load_state_dict(good, params={"v": np.ones(3, np.float32)})
    with pytest.raises(TypeError, match=r"state_dict: expected a mapping, got list"):
        opt.load_state_dict([])  # type: ignore[arg-type]
    assert opt.defaults["lr"] == 0.01 and opt.state["w"]["exp_avg_sq"].min() >= 0
    opt.load_state_dict(good, params=p)  # a good one still loads
    with pytest.raises(TypeError, match=r"lr: expected a real number, got str"):
        optim.SGD(lr="0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nesterov: expected a bool, got str"):
        optim.SGD(momentum=0.9, nesterov="no")  # type: ignore[arg-type]
    assert optim.Adam(betas=np.array([0.5, 0.5])).defaults["betas"] == (0.5, 0.5)
