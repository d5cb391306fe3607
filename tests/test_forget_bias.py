"""The LSTM's gate biases at initialisation: ``init.set_forget_bias``, ``init.set_chrono_bias``,
``SequenceModel(forget_bias=...)`` (1.0 by default for an LSTM; its config, its files, files
written before it existed) and the ``--forget-bias`` option of ``fastrnn demo`` (PyTorch's
initialisation by default) and ``fastrnn adding`` (chrono by default)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import init
from fastrnn.tools import cli
from fastrnn.training.model import SequenceModel
from helpers import rewrite_config

H = 5


def _f_rows_differ_only(a: dict[str, np.ndarray], b: dict[str, np.ndarray], h: int) -> list[str]:
    """Asserts that the parameters ``a`` and ``b`` are equal except in the f rows (``h:2h``) of
    the LSTM's biases; the names of the biases whose f rows differ."""
    assert a.keys() == b.keys()
    differ = []
    for k in a:
        if ".bias_" in k or k.startswith("bias_"):
            rest_a = np.concatenate([a[k][:h], a[k][2 * h :]])
            rest_b = np.concatenate([b[k][:h], b[k][2 * h :]])
            np.testing.assert_array_equal(rest_a, rest_b, err_msg=k)
            if not np.array_equal(a[k][h : 2 * h], b[k][h : 2 * h]):
                differ.append(k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    return differ


# ------------------------------------------------------------------ init.set_forget_bias


def test_set_forget_bias_sets_the_f_rows_only() -> None:
    layer = fastrnn.LSTM(3, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    before = layer.state_dict()
    assert init.set_forget_bias(layer, 1.5) is layer
    after = layer.state_dict()
    differ = _f_rows_differ_only(before, after, H)
    assert len(differ) == 2 * 2 * 2  # bias_ih and bias_hh of 2 layers x 2 directions
    for k in after:
        if k.startswith("bias_ih"):
            b_hh = after[k.replace("bias_ih", "bias_hh")]
            np.testing.assert_array_equal(after[k][H : 2 * H], 1.5)
            np.testing.assert_array_equal(b_hh[H : 2 * H], 0.0)


def test_set_forget_bias_is_init_recurrents_rule() -> None:
    """init_recurrent(forget_bias=b) gives what init_recurrent then set_forget_bias(b) gives."""
    a = init.init_recurrent(fastrnn.LSTM(3, H, num_layers=2), bias="default", forget_bias=0.7,
                            rng=1)  # fmt: skip
    b = init.set_forget_bias(init.init_recurrent(fastrnn.LSTM(3, H, num_layers=2),
                                                 bias="default", rng=1), 0.7)  # fmt: skip
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_set_forget_bias_errors() -> None:
    for layer in (fastrnn.GRU(2, 4), fastrnn.RNN(2, 4), fastrnn.LSTM(2, 4, bias=False)):
        before = layer.state_dict()
        with pytest.raises(ValueError, match="forget_bias"):
            init.set_forget_bias(layer, 1.0)
        for k, v in layer.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    for bad in (float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="forget_bias"):
            init.set_forget_bias(fastrnn.LSTM(2, 4), bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layer"):
        init.set_forget_bias(object(), 1.0)  # type: ignore[type-var]


# ------------------------------------------------------------------ init.set_chrono_bias


def test_chrono_sets_the_f_and_i_rows_only() -> None:
    T = 50
    layer = fastrnn.LSTM(3, H, num_layers=2, bidirectional=True, seed=0)
    before = layer.state_dict()
    assert init.set_chrono_bias(layer, T, rng=7) is layer
    after = layer.state_dict()
    for k, v in after.items():
        if k.startswith("bias"):
            np.testing.assert_array_equal(v[2 * H :], before[k][2 * H :], err_msg=k)
        else:
            np.testing.assert_array_equal(v, before[k], err_msg=k)
    draws = []
    for k in (k for k in after if k.startswith("bias_ih")):
        b_ih, b_hh = after[k], after[k.replace("bias_ih", "bias_hh")]
        b_f = b_ih[H : 2 * H]
        assert b_f.dtype == np.float32 and (b_f >= 0).all() and (b_f <= np.log(T - 1)).all()
        np.testing.assert_array_equal(b_ih[:H], -b_f)  # the input gate's: its negative
        np.testing.assert_array_equal(b_hh[: 2 * H], 0.0)
        draws.append(b_f)
    assert len({d.tobytes() for d in draws}) == 4  # each layer and direction its own draw
    again = init.set_chrono_bias(fastrnn.LSTM(3, H, num_layers=2, bidirectional=True), T, rng=7)
    other = init.set_chrono_bias(fastrnn.LSTM(3, H, num_layers=2, bidirectional=True), T, rng=8)
    np.testing.assert_array_equal(again.bias_ih_l1_reverse[: 2 * H],
                                  layer.bias_ih_l1_reverse[: 2 * H])  # fmt: skip
    assert not np.array_equal(other.bias_ih_l0[H : 2 * H], layer.bias_ih_l0[H : 2 * H])


def test_chrono_time_constants_are_uniform() -> None:
    """exp(b_f) ~ U(1, t_max - 1): f = sigmoid(b_f) forgets over about exp(b_f) steps."""
    T, h, layers = 400, 64, 80  # 5120 draws; weights of 1.7 MB each layer
    layer = init.set_chrono_bias(fastrnn.LSTM(1, h, layers, dtype=np.float64), T, rng=0)
    b_f = np.concatenate([getattr(layer, f"bias_ih_l{k}")[h : 2 * h] for k in range(layers)])
    u = np.exp(b_f)
    assert u.min() >= 1 and u.max() <= T - 1
    assert abs(u.mean() - T / 2) < 0.02 * T and abs(np.median(u) - T / 2) < 0.03 * T
    f = 1 / (1 + np.exp(-b_f))
    np.testing.assert_allclose(1 / (1 - f), 1 + u, rtol=1e-9)


def test_chrono_errors() -> None:
    for layer in (fastrnn.GRU(2, 4), fastrnn.LSTM(2, 4, bias=False)):
        with pytest.raises(ValueError, match="layer: the chrono initialisation is for LSTMs"):
            init.set_chrono_bias(layer, 10)
    with pytest.raises(ValueError, match="t_max: must be >= 2"):
        init.set_chrono_bias(fastrnn.LSTM(2, 4), 1)
    with pytest.raises(TypeError, match="t_max: expected an int"):
        init.set_chrono_bias(fastrnn.LSTM(2, 4), 10.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layer"):
        init.set_chrono_bias(object(), 10)  # type: ignore[type-var]


# ------------------------------------------------------------------ SequenceModel


@pytest.mark.parametrize("value", [1.0, -2.0, 0])
def test_model_forget_bias_sets_exactly_the_f_rows(value: float) -> None:
    kw: dict[str, Any] = dict(num_layers=2, bidirectional=True, embedding_dim=3,
                              dtype=np.float64, seed=4)  # fmt: skip
    plain = SequenceModel("lstm", 7, H, 2, forget_bias=None, **kw)
    model = SequenceModel("lstm", 7, H, 2, forget_bias=value, **kw)
    assert model.config["forget_bias"] == value and plain.config["forget_bias"] is None
    differ = _f_rows_differ_only(plain.state_dict(), model.state_dict(), H)
    assert len(differ) == 8  # PyTorch's default draws every f row at random
    for k, v in model.named_parameters().items():
        if ".bias_ih" in k:
            b_hh = model.named_parameters()[k.replace("bias_ih", "bias_hh")]
            np.testing.assert_array_equal(v[H : 2 * H], value)
            np.testing.assert_array_equal(b_hh[H : 2 * H], 0.0)


def test_model_default_is_one_for_an_lstm_only() -> None:
    lstm = SequenceModel("lstm", 2, H, 1, seed=0)
    assert lstm.config["forget_bias"] == 1.0 and type(lstm.config["forget_bias"]) is float
    np.testing.assert_array_equal((lstm.rnn.bias_ih_l0 + lstm.rnn.bias_hh_l0)[H : 2 * H], 1.0)
    same = SequenceModel("lstm", 2, H, 1, seed=0, forget_bias=1.0).state_dict()
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, same[k])
    for cell in ("rnn", "rnn_relu", "gru"):
        m = SequenceModel(cell, 2, H, 1, seed=0)
        assert m.config["forget_bias"] is None
        untouched = SequenceModel(cell, 2, H, 1, seed=0, forget_bias=None).state_dict()
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, untouched[k])


def test_model_bad_forget_bias() -> None:
    for cell in ("gru", "rnn"):
        with pytest.raises(ValueError, match=r"forget_bias: only an LSTM has a forget gate.*"
                           rf"'{cell}'"):  # fmt: skip
            SequenceModel(cell, 2, H, 1, forget_bias=1.0)
    with pytest.raises(ValueError, match="forget_bias: must be finite"):
        SequenceModel("lstm", 2, H, 1, forget_bias=float("nan"))
    for bad in ("1", True, [1.0]):
        with pytest.raises(TypeError, match="forget_bias: expected a number or None"):
            SequenceModel("lstm", 2, H, 1, forget_bias=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["SequenceModel", "Seq2Seq"])
def test_forget_bias_must_be_finite_in_the_models_dtype(model: str) -> None:
    """1e308 is a finite float but inf in float32: a ValueError naming forget_bias, before any
    parameter is made (not a state_dict error later); a float64 model takes it."""

    def make(dtype: Any, value: float) -> Any:
        if model == "SequenceModel":
            return SequenceModel("lstm", 2, H, 1, dtype=dtype, forget_bias=value, seed=0)
        return fastrnn.Seq2Seq("lstm", 5, 6, hidden_size=H, dtype=dtype, forget_bias=value,
                               seed=0)  # fmt: skip

    msg = r"forget_bias: must be finite in the model's dtype float32 \(\|value\| <= 3\.40282e\+38\)"
    for value in (1e308, -1e39):
        with pytest.raises(ValueError, match=msg + re.escape(f", got {value!r}")):
            make(np.float32, value)
    assert make(np.float32, 3e38).config["forget_bias"] == 3e38
    m = make(np.float64, 1e308)
    assert m.config["forget_bias"] == 1e308
    assert any((p == 1e308).any() for p in m.named_parameters().values())


def test_int8_model_keeps_the_config() -> None:
    m = SequenceModel("lstm", 2, H, 1, many_to_one=True, seed=0, forget_bias=2.0)
    q = m.quantize_dynamic()
    assert q.config["forget_bias"] == 2.0
    direct = SequenceModel("lstm", 2, H, 1, seed=0, compute_dtype="int8")
    assert direct.config["forget_bias"] == 1.0


@pytest.mark.parametrize("value", [2.5, None])
def test_save_and_load_keep_it(tmp_path: Path, value: float | None) -> None:
    m = SequenceModel("lstm", 2, H, 1, seed=0, forget_bias=value)
    m.save(tmp_path / "m.npz")
    back, _, _ = SequenceModel.load(tmp_path / "m.npz")
    assert back.config == m.config and back.config["forget_bias"] == value
    with np.load(tmp_path / "m.npz") as z:
        assert json.loads(str(z["meta"]))["config"]["forget_bias"] == value


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_files_without_the_key_load(tmp_path: Path, cell: str) -> None:
    """A file written before forget_bias existed loads, as a model made with PyTorch's default
    (which it was), with the file's weights."""
    m = SequenceModel(cell, 2, H, 1, seed=0, forget_bias=None)
    m.save(tmp_path / "new.npz")
    rewrite_config(tmp_path / "new.npz", tmp_path / "old.npz", forget_bias=None)
    back, _, _ = SequenceModel.load(tmp_path / "old.npz")
    assert back.config["forget_bias"] is None and back.config == m.config
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)


def test_a_bad_forget_bias_in_a_file(tmp_path: Path) -> None:
    for cell, bad, problem in (("gru", 1.0, "only an LSTM has a forget gate"),
                               ("lstm", "x", "expected a number"),
                               ("lstm", 1e999, "must be finite")):  # fmt: skip
        SequenceModel(cell, 2, H, 1, seed=0).save(tmp_path / "m.npz")
        rewrite_config(tmp_path / "m.npz", tmp_path / "bad.npz", forget_bias=bad)
        path = re.escape(str(tmp_path / "bad.npz"))
        with pytest.raises(ValueError, match=rf"^path: {path}: a bad config \(forget_bias: "
                           f"{problem}"):  # fmt: skip
            SequenceModel.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------ the command line


def test_demo_option() -> None:
    tiny = ["--max-chars", "5000", "--hidden", "4", "--embedding", "2"]
    d = cli.DemoTraining.build(cli.demo_args(tiny))  # PyTorch's init: it learnt the text better
    assert d.model.config["forget_bias"] is None
    d = cli.DemoTraining.build(cli.demo_args([*tiny, "--forget-bias", "-0.5"]))
    assert d.model.config["forget_bias"] == -0.5
    np.testing.assert_array_equal(d.model.rnn.bias_ih_l0[4:8], -0.5)
    d = cli.DemoTraining.build(
        cli.demo_args([*tiny, "--forget-bias", "1", "--forget-bias", "None"])
    )
    assert d.model.config["forget_bias"] is None
    d = cli.DemoTraining.build(cli.demo_args([*tiny, "--cell", "gru"]))  # no forget gate
    assert d.model.config["forget_bias"] is None


@pytest.mark.parametrize("bad", ["x", "nan", "inf", ""])
def test_bad_values_are_usage_errors(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [("demo", bad, " or 'none'"), ("demo", "chrono", " or 'none'"),  # adding's only
             ("adding", bad, ", 'chrono' or 'none'")]  # fmt: skip
    for command, value, allowed in cases:
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--forget-bias", value])
        assert e.value.code == 2
        want = f"fastrnn {command}: error: argument --forget-bias: expected a finite number"
        assert f"{want}{allowed}, got {value!r}" in capsys.readouterr().err


def test_adding_says_which_bias(capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["adding", "--T", "4", "--steps", "2", "--hidden", "3", "--batch", "2", "--plot", ""]
    assert cli.main([*tiny, "--cells", "gru", "lstm"]) == 0
    assert "; LSTM: chrono initialisation of its gate biases (t_max 4)\n" in capsys.readouterr().out
    assert cli.main([*tiny, "--cells", "lstm", "--forget-bias", "1"]) == 0
    assert "; LSTM: forget-gate bias 1\n" in capsys.readouterr().out
    assert cli.main([*tiny, "--cells", "lstm", "--forget-bias", "none"]) == 0
    assert "; LSTM: PyTorch's default initialisation\n" in capsys.readouterr().out
    assert cli.main([*tiny, "--cells", "gru"]) == 0
    assert "forget" not in capsys.readouterr().out


def _adding_args(*options: str) -> Any:
    args = cli._parser().parse_args(["adding", "--T", "30", "--hidden", "4", *options])
    cli._check(args.parser, args)
    return args


def test_adding_models() -> None:
    """adding's LSTM: chrono with t_max = --T by default, --forget-bias B or none; the other
    cells are made as SequenceModel makes them."""
    kw: dict[str, Any] = dict(many_to_one=True, seed=0)
    chrono = cli._adding_model("lstm", _adding_args())
    want = init.set_chrono_bias(SequenceModel("lstm", 2, 4, 1, forget_bias=None, **kw).rnn, 30,
                                rng=0)  # fmt: skip
    for fb, model_kw in (("1.5", {"forget_bias": 1.5}), ("none", {"forget_bias": None})):
        m = cli._adding_model("lstm", _adding_args("--forget-bias", fb))
        assert m.config["forget_bias"] == model_kw["forget_bias"]
        ref = SequenceModel("lstm", 2, 4, 1, **kw, **model_kw)
        for k, v in ref.state_dict().items():
            np.testing.assert_array_equal(m.state_dict()[k], v)
    for k, v in want.state_dict().items():
        np.testing.assert_array_equal(chrono.rnn.state_dict()[k], v)
    gru = cli._adding_model("gru", _adding_args("--forget-bias", "3"))
    assert gru.config["forget_bias"] is None
    for k, v in SequenceModel("gru", 2, 4, 1, **kw).state_dict().items():
        np.testing.assert_array_equal(gru.state_dict()[k], v)


def test_gradflow_keeps_pytorchs_default(capsys: pytest.CaptureFixture[str]) -> None:
    """gradflow --init default measures PyTorch's initialisation, LSTM forget-gate bias too."""
    T, B, hidden = 6, 2, 4
    assert cli.main(["gradflow", "--T", str(T), "--hidden", str(hidden), "--batch", str(B),
                     "--cells", "lstm", "--plot", ""]) == 0  # fmt: skip
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("lstm"))
    x, y = fastrnn.tasks.adding_problem(B, T, 0)
    for fb, same in ((None, True), (1.0, False)):
        m = SequenceModel("lstm", 2, hidden, 1, many_to_one=True, seed=0, dtype=np.float64,
                          forget_bias=fb)  # fmt: skip
        n = m.hidden_grad_norms(x.astype(np.float64), y.astype(np.float64))
        assert (f"{n[0]:>11.3e}" in row) is same
