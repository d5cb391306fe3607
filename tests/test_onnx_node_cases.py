"""ONNX's own test cases of its recurrent operators (``onnx.backend.test``'s node cases of LSTM, GRU
and RNN), run through fastrnn as a new user would: the case's weights made initializers of its
model, the model loaded with ``fastrnn.onnx.load``, the layer called with the case's other inputs
(``X``, ``sequence_lens``, ``initial_h``, ``initial_c``) and every output the case expects
compared to its expected values, to the case's own tolerances. Skipped without onnx."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from fastrnn import onnx as fonnx  # noqa: E402

#: the node cases of onnx 1.23 whose names contain lstm, gru or rnn (all of LSTM, GRU and RNN's)
CASES = (
    "test_gru_defaults",
    "test_gru_with_initial_bias",
    "test_gru_seq_length",
    "test_gru_batchwise",
    "test_gru_reverse",
    "test_gru_bidirectional",
    "test_lstm_defaults",
    "test_lstm_with_initial_bias",
    "test_lstm_with_peepholes",
    "test_lstm_batchwise",
    "test_lstm_reverse",
    "test_lstm_bidirectional",
    "test_simple_rnn_defaults",
    "test_simple_rnn_with_initial_bias",
    "test_rnn_seq_length",
    "test_simple_rnn_batchwise",
    "test_simple_rnn_reverse",
    "test_simple_rnn_bidirectional",
)
RECURRENT = ("LSTM", "GRU", "RNN")
#: the node's inputs by position: the weights (made initializers) and the call's arguments
WEIGHTS = {1: "W", 2: "R", 3: "B", 7: "P"}
X, SEQUENCE_LENS, INITIAL_H, INITIAL_C = 0, 4, 5, 6


@functools.cache
def recurrent_cases() -> dict[str, Any]:
    """onnx's node cases of its recurrent operators, by name (collected once: ~6 s)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # other operators' cases overflow casts on purpose
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return {
        c.name: c
        for c in cases
        if any(k in c.name for k in ("lstm", "gru", "rnn"))
        and c.model is not None
        and any(n.op_type in RECURRENT for n in c.model.graph.node)
    }


def as_user_model(case: Any) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The case's model with its weights (graph inputs with data) as initializers, its recurrent
    node, the call's inputs (by position: X, sequence_lens, initial_h, initial_c) and the
    expected outputs (by node output position: Y, Y_h, Y_c)."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    graph = model.graph
    (node,) = [n for n in graph.node if n.op_type in RECURRENT]
    inputs, outputs = case.data_sets[0]
    feeds = dict(zip([i.name for i in graph.input], inputs, strict=True))
    expected = dict(zip([o.name for o in graph.output], outputs, strict=True))
    ins = list(node.input)
    for pos in WEIGHTS:
        if pos < len(ins) and ins[pos]:
            name = ins[pos]
            graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(feeds[name]), name))
            kept = [i for i in graph.input if i.name != name]
            del graph.input[:]
            graph.input.extend(kept)
    call = {
        pos: np.asarray(feeds[ins[pos]])
        for pos in (X, SEQUENCE_LENS, INITIAL_H, INITIAL_C)
        if pos < len(ins) and ins[pos]
    }
    wanted = {
        pos: np.asarray(expected[name]) for pos, name in enumerate(node.output) if name in expected
    }
    return model, node, call, wanted


def test_the_cases_are_onnx_s_recurrent_cases() -> None:
    """The list above is every LSTM/GRU/RNN node case of the installed onnx (a new one is a
    feature to look at)."""
    assert sorted(recurrent_cases()) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_onnx_node_case(name: str) -> None:
    case = recurrent_cases().get(name)
    if case is None:
        pytest.fail(f"{name} is not among onnx's node cases")
    model, node, call, wanted = as_user_model(case)
    layer = fonnx.load(model)
    layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
    assert layer.batch_first == (layout == 1)

    def state(pos: int) -> Any:  # a node's initial state (ONNX layout 1: (B, D, H))
        s = call.get(pos)
        return None if s is None or layout == 0 else s.swapaxes(0, 1)

    h0, c0 = state(INITIAL_H), state(INITIAL_C)
    y, st = layer(
        call[X], (h0, c0) if node.op_type == "LSTM" else h0, lengths=call.get(SEQUENCE_LENS)
    )
    h_n, c_n = st if node.op_type == "LSTM" else (st, None)
    D, H = 2 if layer.bidirectional else 1, layer.hidden_size
    # the layer's y (T, B, D*H) as ONNX's Y (T, D, B, H); batch first (B, T, D*H) as (B, T, D, H)
    y4 = y.reshape(*y.shape[:2], D, H)
    got = {
        0: y4 if layout == 1 else y4.transpose(0, 2, 1, 3),
        1: h_n.swapaxes(0, 1) if layout == 1 else h_n,
        2: None if c_n is None else (c_n.swapaxes(0, 1) if layout == 1 else c_n),
    }
    assert wanted, "the case expects no output"
    for pos, expected in wanted.items():
        what = f"{name}: {('Y', 'Y_h', 'Y_c')[pos]}"
        assert got[pos] is not None, what
        np.testing.assert_allclose(got[pos], expected, rtol=case.rtol, atol=case.atol, err_msg=what)
