"""A catalogue of bad inputs, each run in a fresh subprocess: it must end with the documented
exception, printed by the child, and exit normally — a segfault or abort fails the test instead
of killing the test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import numpy as np, fastrnn
from fastrnn import functional as F, convert
f32 = np.float32
x = np.zeros((5, 2, 3), f32)
w_ih, w_hh, b = np.zeros((12, 3), f32), np.zeros((12, 4), f32), np.zeros(12, f32)
"""

CATALOGUE = {  # name: (code, expected exception name)
    "x_int": ("fastrnn.LSTM(3, 4)(np.zeros((5, 2, 3), int))", "TypeError"),
    "x_float16": ("fastrnn.GRU(3, 4)(np.zeros((5, 2, 3), np.float16))", "TypeError"),
    "x_complex": ("fastrnn.RNN(3, 4)(np.zeros((5, 2, 3), complex))", "TypeError"),
    "x_object": ("fastrnn.RNN(3, 4)(np.zeros((5, 2, 3), object))", "TypeError"),
    "x_4d": ("fastrnn.LSTM(3, 4)(np.zeros((5, 2, 3, 1), f32))", "ValueError"),
    "x_wrong_size": ("fastrnn.LSTM(3, 4)(np.zeros((5, 2, 7), f32))", "ValueError"),
    "hx_wrong": ("fastrnn.GRU(3, 4)(x, np.zeros((1, 3, 4), f32))", "ValueError"),
    "lstm_hx_not_tuple": ("fastrnn.LSTM(3, 4)(x, np.zeros((1, 2, 4), f32))", "TypeError"),
    "lengths_too_long": ("fastrnn.GRU(3, 4)(x, lengths=[5, 6])", "ValueError"),
    "lengths_negative": ("fastrnn.GRU(3, 4)(x, lengths=[5, -1])", "ValueError"),
    "lengths_count": ("fastrnn.GRU(3, 4)(x, lengths=[5, 5, 5])", "ValueError"),
    "lengths_nan": ("fastrnn.GRU(3, 4)(x, lengths=[5, float('nan')])", "TypeError"),
    "lengths_inf": ("fastrnn.GRU(3, 4)(x, lengths=[5, float('inf')])", "TypeError"),
    "backward_first": ("fastrnn.LSTM(3, 4).backward(np.zeros((5, 2, 4), f32))", "RuntimeError"),
    "backward_twice": (
        "m = fastrnn.GRU(3, 4); y, _ = m(x); m.backward(y); m.backward(y)",
        "RuntimeError",
    ),
    "dy_wrong": ("m = fastrnn.GRU(3, 4); m(x); m.backward(np.zeros((5, 2, 5), f32))", "ValueError"),
    "state_dict_missing": ("fastrnn.GRU(3, 4).load_state_dict({})", "ValueError"),
    "state_dict_shape": (
        "m = fastrnn.GRU(3, 4); sd = m.state_dict(); sd['weight_hh_l0'] = sd['weight_hh_l0'][:3]; "
        "m.load_state_dict(sd)",
        "ValueError",
    ),
    "state_dict_nan": (
        "m = fastrnn.GRU(3, 4); sd = m.state_dict(); sd['bias_ih_l0'][0] = np.nan; "
        "m.load_state_dict(sd)",
        "ValueError",
    ),
    "functional_mixed_dtypes": ("F.forward('lstm', x, w_ih.astype(np.float64), w_hh)", "TypeError"),
    "functional_bad_weight": ("F.forward('lstm', x, np.zeros((12, 5), f32), w_hh)", "ValueError"),
    "functional_not_array_weight": ("F.forward('lstm', x, 'w', w_hh)", "TypeError"),
    "workspace_garbage": (
        "F.backward('lstm', x, w_ih, w_hh, None, None, "
        "np.zeros(F.workspace_size('lstm', 5, 2, 3, 4, f32), f32))",
        "ValueError",
    ),
    "workspace_truncated": (
        "ws = F.forward('lstm', x, w_ih, w_hh).workspace; "
        "F.backward('lstm', x, w_ih, w_hh, None, None, ws[:-1])",
        "ValueError",
    ),
    "workspace_reused": (
        "ws = F.forward('lstm', x, w_ih, w_hh).workspace; "
        "F.backward('lstm', x, w_ih, w_hh, None, None, ws); "
        "F.backward('lstm', x, w_ih, w_hh, None, None, ws)",
        "ValueError",
    ),
    "workspace_size_overflow": (
        "F.workspace_size('lstm', 2**40, 2**40, 1, 2**20, f32)",
        "ValueError",
    ),
    "core_null_weights": (
        "import fastrnn._core as C; C.forward(C.Cell.lstm, x, [(None, None, None, None, None)], "
        "None, None, None, None, 1, False, 0, 4, True)",
        "TypeError",
    ),
    "core_wrong_weight_list": (
        "import fastrnn._core as C; C.forward(C.Cell.lstm, x, [], None, None, None, None, 1, "
        "False, 0, 4, True)",
        "ValueError",
    ),
    "core_negative_hidden": (
        "import fastrnn._core as C; C.forward(C.Cell.lstm, x, [(w_ih, w_hh, None, None, None)], "
        "None, None, None, None, 1, False, 0, -4, True)",
        "ValueError",
    ),
    "keras_bad": ("convert.from_keras('gru', np.zeros((3, 7)), np.zeros((2, 7)))", "ValueError"),
    "onnx_bad": (
        "convert.from_onnx('lstm', np.zeros((1, 8, 3)), np.zeros((2, 8, 2)))",
        "ValueError",
    ),
    "threads_zero": ("fastrnn.set_num_threads(0)", "ValueError"),
    "proj_size_too_big": ("fastrnn.LSTM(3, 4, proj_size=4)", "ValueError"),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input_exits_cleanly_with_the_exception(name: str) -> None:
    code, expected = CATALOGUE[name]
    script = PRELUDE + textwrap.dedent(f"""
        try:
            {code}
        except Exception as e:
            print("RAISED", type(e).__name__, e)
        else:
            print("NO EXCEPTION")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"child died (code {proc.returncode}): {proc.stderr[-2000:]}"
    assert f"RAISED {expected}" in proc.stdout, proc.stdout + proc.stderr[-2000:]
