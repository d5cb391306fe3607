"""Regression tests for problems found in review: each failed before its fix."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pytest
from helpers import CELLS, make_problem

from fastrnn import functional as F
from fastrnn import reference as R


def test_equal_but_distinct_dtype_objects_are_accepted() -> None:
    """A pickled array's dtype equals float32 but is another object (multiprocessing, joblib)."""
    p = make_problem("gru", 3, 2, 4, 5, dtype=np.float32)
    x = pickle.loads(pickle.dumps(p.x))
    assert x.dtype == np.float32 and x.dtype is not np.dtype(np.float32)
    a = F.forward("gru", x, *p.params)
    b = F.forward("gru", p.x, *p.params)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.workspace is not None
    ws = pickle.loads(pickle.dumps(a.workspace))
    F.backward("gru", x, *p.params, ws, p.dy)


def test_misaligned_arrays_are_copied_not_misread() -> None:
    p = make_problem("lstm", 3, 2, 4, 5)
    raw = np.zeros(p.x.nbytes + 1, np.uint8)[1:]
    x = raw.view(np.float64).reshape(p.x.shape)
    x[...] = p.x
    assert not x.flags.aligned
    a = F.forward("lstm", x, *p.params, training=False)
    b = F.forward("lstm", p.x, *p.params, training=False)
    np.testing.assert_array_equal(a.y, b.y)


def test_float32_sigmoid_accurate_for_nearly_closed_gates() -> None:
    """Eigen 3.4's float logistic() returns exp(a) for a < -9 (rel. error ~exp(a) ~1e-4 there)."""
    p = make_problem("lstm", 3, 4, 3, 8, dtype=np.float64, scale=0.01)
    assert p.bias_ih is not None and p.bias_hh is not None
    p.bias_ih[:8] = -9.2  # the input gate: i ~ 1e-4
    p.bias_hh[:8] = 0.0
    p32 = p.astype(np.float32)
    fw = F.forward("lstm", p32.x, *p32.params, p32.h0, p32.c0)
    bw = F.backward("lstm", p32.x, *p32.params, fw.workspace, p32.dy, p32.dh_n, p32.dc_n)
    pr = p32.astype(np.float64)
    _, _, _, cache = R.forward("lstm", pr.x, *pr.params, pr.h0, pr.c0)
    g = R.backward(cache, pr.dy, pr.dh_n, pr.dc_n)
    assert bw.dbias_ih is not None and g["bias_ih"] is not None
    rel = np.abs(bw.dbias_ih[:8] - g["bias_ih"][:8]) / np.abs(g["bias_ih"][:8])
    assert rel.max() < 1e-5, rel.max()


@pytest.mark.parametrize("cell", CELLS)
def test_nan_input_propagates(cell: str) -> None:
    p = make_problem(cell, 3, 2, 4, 5)
    p.x[0, 1, 2] = np.nan
    y = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=False).y
    assert np.isnan(y[:, 1]).all()  # every unit of sequence 1, from step 0 on
    assert np.isfinite(y[:, 0]).all()


def test_relu_backward_matches_torch_semantics_on_nonfinite_gradients() -> None:
    """d relu = dh where h > 0 else 0, even when dh is inf (PyTorch: 0, not NaN)."""
    cache = (np.zeros((1, 1)), np.zeros((1, 2)), np.array([[0.0, 1.0]]))
    p = {"w_ih": np.ones((2, 1)), "w_hh": np.ones((2, 2))}
    _, _, g = R.rnn_step_backward(np.array([[np.inf, 1.0]]), cache, p, relu=True)
    assert g["b_ih"][0] == 0.0


@pytest.mark.parametrize("cell", CELLS)
def test_training_and_inference_forward_bit_identical_for_large_inputs(cell: str) -> None:
    """Training projects the input in the same chunks as inference (here over several chunks
    and with I large enough for the GEMM to split its depth)."""
    p = make_problem(cell, 70, 9, 600, 20, dtype=np.float32)
    a = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=True)
    b = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=False)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.h_n, b.h_n)


def test_workspace_remembers_the_bias() -> None:
    p = make_problem("lstm", 3, 2, 4, 5, bias=False)
    fw = F.forward("lstm", p.x, *p.params)
    b = np.zeros(20)
    with pytest.raises(ValueError, match="made by a forward without biases, not with"):
        F.backward("lstm", p.x, p.weight_ih, p.weight_hh, b, b, fw.workspace)


@pytest.mark.parametrize(
    "dims", [(2**32, 2**32, 1, 1024), (3, 2**61, 1, 1), (2**62, 2, 1, 1)], ids=str
)
def test_workspace_size_overflow_is_an_error(dims: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="sizes too large"):
        F.workspace_size("lstm", *dims, np.float32)


def test_concurrent_backward_on_one_workspace_runs_once() -> None:
    p = make_problem("gru", 4, 3, 8, 16)
    for _ in range(50):
        fw = F.forward("gru", p.x, *p.params)
        barrier = threading.Barrier(2)
        outcomes: list[Any] = []

        def run(ws: Any = fw.workspace, out: list[Any] = outcomes, barrier: Any = barrier) -> None:
            barrier.wait()
            try:
                F.backward("gru", p.x, *p.params, ws, p.dy)
                out.append("ok")
            except ValueError as e:
                out.append(str(e))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes)[0] == "ok"
        assert "already consumed" in sorted(outcomes)[1]
