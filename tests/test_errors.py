"""Bad input gets a clear exception naming the argument, never a crash or wrong numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from helpers import make_problem

# ------------------------------------------------------------------------------- constructors


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"input_size": 0, "hidden_size": 4}, ValueError, "input_size"),
        ({"input_size": 3, "hidden_size": -1}, ValueError, "hidden_size"),
        ({"input_size": 3.0, "hidden_size": 4}, TypeError, "input_size"),
        ({"input_size": True, "hidden_size": 4}, TypeError, "input_size"),
        ({"input_size": 3, "hidden_size": 4, "dropout": 1.5}, ValueError, "dropout"),
        ({"input_size": 3, "hidden_size": 4, "dtype": np.int32}, TypeError, "dtype"),
        ({"input_size": 3, "hidden_size": 4, "dtype": np.float16}, TypeError, "dtype"),
        ({"input_size": 3, "hidden_size": 4, "dtype": "complex128"}, TypeError, "dtype"),
        ({"input_size": 3, "hidden_size": 4, "num_layers": 0}, ValueError, "num_layers"),
        # PyTorch's switches: a bool (or 0 / 1), never a truthy string that reads as False
        ({"input_size": 3, "hidden_size": 4, "bias": "no"}, TypeError, "bias"),
        ({"input_size": 3, "hidden_size": 4, "bidirectional": "false"}, TypeError, "bidirectional"),
        ({"input_size": 3, "hidden_size": 4, "batch_first": None}, TypeError, "batch_first"),
        ({"input_size": 3, "hidden_size": 4, "bias": 2}, TypeError, "bias"),
    ],
)
def test_constructor_rejects(kwargs: dict[str, Any], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        fastrnn.LSTM(**kwargs)


def test_switches_take_bools_and_zero_or_one() -> None:
    a = fastrnn.LSTM(3, 4, bias=0, bidirectional=1, batch_first=np.bool_(True))
    assert (a.spec.bias, a.spec.bidirectional, a.batch_first) == (False, True, True)
    with pytest.raises(TypeError, match="reset_after"):
        fastrnn.GRU(3, 4, reset_after="no")


def test_from_spec_rejects_a_non_spec() -> None:
    with pytest.raises(TypeError, match=r"spec: expected a fastrnn\.StackSpec"):
        fastrnn.layers.from_spec({"cell": "lstm"})  # type: ignore[arg-type]


def test_rnn_rejects_unknown_nonlinearity() -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNN(3, 4, nonlinearity="sigmoid")


# ------------------------------------------------------------------------------- layer calls

LAYERS = [
    ("rnn", lambda: fastrnn.RNN(3, 4)),
    ("lstm", lambda: fastrnn.LSTM(3, 4)),
    ("gru", lambda: fastrnn.GRU(3, 4)),
]


@pytest.fixture(params=LAYERS, ids=lambda p: p[0])
def layer(request: pytest.FixtureRequest) -> Any:
    return request.param[1]()


def good_hx(layer: Any, B: int = 2) -> Any:
    h = np.zeros((1, B, 4), np.float32)
    return (h, h) if isinstance(layer, fastrnn.LSTM) else h


@pytest.mark.parametrize(
    ("x", "exc", "match"),
    [
        (np.zeros((5, 2, 7), np.float32), ValueError, "input size 3"),
        (np.zeros((5, 2, 3, 1), np.float32), ValueError, "x: expected a 3-D"),
        (np.zeros(3, np.float32), ValueError, "x: expected a 3-D"),
        (np.zeros((5, 2, 3), np.int64), TypeError, "x: .*int64"),
        (np.zeros((5, 2, 3), np.float16), TypeError, "x: .*float16"),
        (np.zeros((5, 2, 3), np.complex128), TypeError, "x: .*complex128"),
        (np.zeros((5, 2, 3), object), TypeError, "x: .*object"),
        ([["a", "b", "c"]], TypeError, "x: "),
    ],
    ids=["input_size", "4d", "1d", "int", "float16", "complex", "object", "strings"],
)
def test_layer_rejects_bad_x(layer: Any, x: Any, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        layer(x)


def test_layer_rejects_bad_state(layer: Any) -> None:
    x = np.zeros((5, 2, 3), np.float32)
    lstm = isinstance(layer, fastrnn.LSTM)
    bad_shapes = [(2, 4), (1, 3, 4), (1, 2, 5), (2, 2, 4)]
    for shape in bad_shapes:
        h = np.zeros(shape, np.float32)
        hx = (h, np.zeros((1, 2, 4), np.float32)) if lstm else h
        with pytest.raises(ValueError, match=r"hx(\[0\])?: expected shape \(1, 2, 4\)"):
            layer(x, hx)
    if lstm:
        with pytest.raises(ValueError, match=r"hx\[1\]: expected shape"):
            layer(x, (np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 5), np.float32)))
        with pytest.raises(TypeError, match="tuple"):
            layer(x, np.zeros((1, 2, 4), np.float32))
    else:
        with pytest.raises(TypeError, match="hx"):
            layer(x, (np.zeros((1, 2, 4), np.float32),) * 2)
    h_int = np.zeros((1, 2, 4), np.int32)
    with pytest.raises(TypeError, match="hx"):
        layer(x, (h_int, h_int) if lstm else h_int)


def test_layer_backward_rejects_bad_gradients(layer: Any) -> None:
    x = np.zeros((5, 2, 3), np.float32)
    lstm = isinstance(layer, fastrnn.LSTM)
    y, _ = layer(x)
    with pytest.raises(ValueError, match=r"dy: expected the shape of the output y, \(5, 2, 4\)"):
        layer.backward(np.zeros((5, 2, 5), np.float32))
    with pytest.raises(TypeError, match="dy"):
        layer.backward(np.zeros((5, 2, 4), np.int32))
    bad = np.zeros((1, 2, 5), np.float32)
    with pytest.raises(ValueError, match="dstate"):
        layer.backward(y, (bad, None) if lstm else bad)
    layer.backward(np.ones_like(y), good_hx(layer))  # still valid after the rejections


def test_load_state_dict_rejects(layer: Any) -> None:
    sd = layer.state_dict()
    missing = dict(sd)
    del missing["bias_hh_l0"]
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l0'\]"):
        layer.load_state_dict(missing)
    extra = {**sd, "weight_ih_l1": sd["weight_ih_l0"]}
    with pytest.raises(ValueError, match=r"unexpected keys \['weight_ih_l1'\]"):
        layer.load_state_dict(extra)
    wrong = {**sd, "weight_hh_l0": sd["weight_hh_l0"][:, :3]}
    with pytest.raises(ValueError, match=r"weight_hh_l0.*expected shape"):
        layer.load_state_dict(wrong)
    nan = {**sd, "bias_ih_l0": np.full_like(sd["bias_ih_l0"], np.nan)}
    with pytest.raises(ValueError, match=r"bias_ih_l0.*NaN"):
        layer.load_state_dict(nan)
    ints = {**sd, "weight_ih_l0": sd["weight_ih_l0"].astype(np.int64)}
    with pytest.raises(TypeError, match="weight_ih_l0"):
        layer.load_state_dict(ints)
    with pytest.raises(TypeError, match="state_dict"):
        layer.load_state_dict([1, 2])
    # nothing was half-loaded
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])


# ------------------------------------------------------------------------------- functional


def test_functional_rejects_unknown_cell() -> None:
    p = make_problem("lstm", 3, 2, 4, 5)
    with pytest.raises(ValueError, match="cell: expected one of"):
        F.forward("lstmm", p.x, *p.params)


def test_functional_rejects_mixed_dtypes() -> None:
    p = make_problem("gru", 3, 2, 4, 5)
    with pytest.raises(TypeError, match=r"weight_hh_l0: expected dtype float64 \(the dtype of x\)"):
        F.forward("gru", p.x, p.weight_ih, p.weight_hh.astype(np.float32), p.bias_ih, p.bias_hh)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        F.forward("gru", p.x.astype(np.int64), *p.params)


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("weight_ih", np.zeros((15, 3)), r"weight_ih_l0: expected shape \(15, 4\), got \(15, 3\)"),
        ("weight_ih", np.zeros((12, 4)), r"weight_ih_l0: expected shape \(15, 4\), got \(12, 4\)"),
        ("weight_hh", np.zeros((15, 4)), r"weight_hh_l0: expected shape \(15, 5\), got \(15, 4\)"),
        ("weight_hh", np.zeros((15,)), r"weight_hh_l0: expected shape \(G\*H, Hs\)"),
        ("bias_ih", np.zeros(14), r"bias_ih_l0: expected shape \(15,\)"),
        ("h0", np.zeros((3, 5)), r"h0: expected shape \(B, H\) = \(2, 5\), got \(3, 5\)"),
        ("x", np.zeros((3, 2)), r"x: expected a 3-D array"),
    ],
)
def test_functional_rejects_bad_shapes(name: str, bad: np.ndarray, match: str) -> None:
    p = make_problem("gru", 3, 2, 4, 5)
    args = {"x": p.x, "weight_ih": p.weight_ih, "weight_hh": p.weight_hh,
            "bias_ih": p.bias_ih, "bias_hh": p.bias_hh, "h0": p.h0}  # fmt: skip
    args[name] = bad
    with pytest.raises(ValueError, match=match):
        F.forward("gru", **args)


def test_functional_rejects_one_bias_only() -> None:
    p = make_problem("rnn_tanh", 3, 2, 4, 5)
    with pytest.raises(ValueError, match="bias_ih, bias_hh: give both biases or neither"):
        F.forward("rnn_tanh", p.x, p.weight_ih, p.weight_hh, p.bias_ih, None)


def test_functional_rejects_c0_for_non_lstm() -> None:
    p = make_problem("gru", 3, 2, 4, 5)
    with pytest.raises(ValueError, match="c0: only an LSTM"):
        F.forward("gru", p.x, *p.params, p.h0, np.zeros((2, 5)))


def test_workspace_misuse_is_an_error() -> None:
    p = make_problem("lstm", 3, 2, 4, 5)
    fw = F.forward("lstm", p.x, *p.params)
    ws = fw.workspace
    assert ws is not None
    # wrong cell (an LSTM workspace given to a GRU of the same sizes has another size; and the
    # header names the cell when the sizes happen to agree)
    q = make_problem("gru", 3, 2, 4, 5)
    with pytest.raises(ValueError, match="workspace: expected shape"):
        F.backward("gru", q.x, *q.params, ws)
    g = F.forward("gru", q.x, *q.params)
    with pytest.raises(ValueError, match="made by a forward of cell 'gru', not 'gru_reset_before'"):
        F.backward("gru_reset_before", q.x, *q.params, g.workspace)
    # other sizes: T changes the workspace size; I does not, the header catches it
    with pytest.raises(ValueError, match="workspace: expected shape"):
        F.backward("lstm", np.zeros((2, 3, 4)), *p.params, ws)
    r = make_problem("lstm", 3, 2, 6, 5)
    dims = r"\(T, B, I, H, P, L, D\) = "
    with pytest.raises(ValueError, match=dims + r"\(3, 2, 4, 5, 0, 1, 1\), not " + dims):
        F.backward("lstm", r.x, *r.params, ws)
    # never filled
    with pytest.raises(ValueError, match="not filled by a training-mode forward"):
        F.backward("lstm", p.x, *p.params, np.zeros_like(ws))
    with pytest.raises(TypeError, match="workspace: expected dtype float64"):
        F.backward("lstm", p.x, *p.params, ws.astype(np.float32))
    with pytest.raises(TypeError, match=r"workspace: expected the numpy\.ndarray"):
        F.backward("lstm", p.x, *p.params, list(ws))
    ro = ws.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="workspace: must be writeable"):
        F.backward("lstm", p.x, *p.params, ro)
    # consumed
    F.backward("lstm", p.x, *p.params, ws)
    with pytest.raises(ValueError, match="already consumed"):
        F.backward("lstm", p.x, *p.params, ws)


def test_workspace_remembers_the_bias() -> None:
    """A workspace made by a forward without biases is refused by a backward given biases.
    (Found in review; failed before its fix.)"""
    p = make_problem("lstm", 3, 2, 4, 5, bias=False)
    fw = F.forward("lstm", p.x, *p.params)
    b = np.zeros(20)
    with pytest.raises(ValueError, match="made by a forward without biases, not with"):
        F.backward("lstm", p.x, p.weight_ih, p.weight_hh, b, b, fw.workspace)


@pytest.mark.parametrize(
    "dims", [(2**32, 2**32, 1, 1024), (3, 2**61, 1, 1), (2**62, 2, 1, 1)], ids=str
)
def test_workspace_size_overflow_is_an_error(dims: tuple[int, ...]) -> None:
    """Sizes too large for the workspace's size to be computed are a ValueError, never a
    wrapped-around size. (Found in review; failed before its fix.)"""
    with pytest.raises(ValueError, match="sizes too large"):
        F.workspace_size("lstm", *dims, np.float32)


def test_functional_backward_rejects_bad_gradients() -> None:
    p = make_problem("lstm", 3, 2, 4, 5)
    fw = F.forward("lstm", p.x, *p.params)
    with pytest.raises(ValueError, match=r"dy: expected shape \(3, 2, 5\)"):
        F.backward("lstm", p.x, *p.params, fw.workspace, np.zeros((3, 2, 4)))
    with pytest.raises(ValueError, match=r"dc_n: expected shape \(B, H\) = \(2, 5\)"):
        F.backward("lstm", p.x, *p.params, fw.workspace, None, None, np.zeros((5, 2)))
    # the rejected calls did not consume the workspace
    F.backward("lstm", p.x, *p.params, fw.workspace)
