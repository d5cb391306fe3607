"""fastrnn.functional, one layer (forward, backward: the compiled kernels) against the NumPy
reference, every cell and option; its handling of inputs (layouts, dtypes, empty sizes)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from helpers import CELLS, assert_close, make_problem

SHAPES = [  # T, B, I, H
    (1, 1, 1, 1),
    (1, 1, 3, 5),
    (7, 1, 4, 6),
    (5, 3, 4, 6),
    (6, 4, 7, 3),
    (4, 2, 5, 17),
    (12, 5, 16, 33),
    (3, 9, 64, 130),
    (4, 3, 80, 48),  # weight gradients: panels of 3, 2 and 1 SIMD packets
    (2, 3, 272, 16),  # more than one 256-column tile of dW_ih
    (3, 1, 37, 70),  # few steps, few rows: unpacked products; rows and depth past whole packets
    (2, 1, 20, 48),  # the same, depth of one packet and a half
    (9, 1, 20, 33),  # batch 1, more steps: packed again
    (2, 4, 75, 40),  # weight gradients over 8 rows, unpacked: 4-packet runs, packets, last columns
]
OPTIONS = {  # name: (bias, initial states given, dy and final-state gradients given)
    "full": (True, True, True),
    "no_bias": (False, True, True),
    "zero_states": (True, False, True),
    "no_incoming_grads": (True, True, False),
}


def run_both(p: Any, dtype: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Kernels in `dtype`, reference in float64 on the same (rounded) inputs."""
    pk = p.astype(dtype)
    fw = F.forward(p.cell, pk.x, *pk.params, pk.h0, pk.c0, training=True)
    bw = F.backward(p.cell, pk.x, *pk.params, fw.workspace, pk.dy, pk.dh_n, pk.dc_n)
    pr = pk.astype(np.float64)
    y, h_n, c_n, cache = R.forward(p.cell, pr.x, *pr.params, pr.h0, pr.c0)
    g = R.backward(cache, pr.dy, pr.dh_n, pr.dc_n)
    kern = {
        "y": fw.y, "h_n": fw.h_n, "c_n": fw.c_n, "dx": bw.dx, "dh0": bw.dh0, "dc0": bw.dc0,
        "weight_ih": bw.dweight_ih, "weight_hh": bw.dweight_hh,
        "bias_ih": bw.dbias_ih, "bias_hh": bw.dbias_hh, "cell_params": bw.dcell_params,
    }  # fmt: skip
    ref = {"y": y, "h_n": h_n, "c_n": c_n, **g}
    return kern, ref


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("option", list(OPTIONS))
def test_against_reference(cell: str, dtype: Any, shape: tuple[int, ...], option: str) -> None:
    bias, states, grads = OPTIONS[option]
    p = make_problem(cell, *shape, bias=bias, states=states, grads=grads or False)
    if not grads:  # only the loss through y: dy given, final-state gradients absent
        p.dy = np.random.default_rng(1).standard_normal((*p.x.shape[:2], shape[3]))
    kern, ref = run_both(p, dtype)
    for name, expected in ref.items():
        if expected is None:
            assert kern[name] is None, name
            continue
        assert kern[name].dtype == np.dtype(dtype), name
        assert_close(kern[name], expected, dtype, name)


def test_float32_sigmoid_accurate_for_nearly_closed_gates() -> None:
    """Eigen 3.4's float logistic() returns exp(a) for a < -9 (rel. error ~exp(a) ~1e-4 there).
    (Found in review; failed before its fix.)"""
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


@pytest.mark.parametrize("T", [1, 5, 600])  # 600 steps x B=1 spans several inference chunks
def test_inference_equals_training_forward(cell: str, dtype: Any, T: int) -> None:
    p = make_problem(cell, T, 1 if T > 100 else 3, 4, 6, dtype=dtype)
    a = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=True)
    b = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=False)
    assert b.workspace is None and a.workspace is not None
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.h_n, b.h_n)
    if cell == "lstm":
        np.testing.assert_array_equal(a.c_n, b.c_n)


@pytest.mark.parametrize("cell", CELLS)
def test_training_and_inference_forward_bit_identical_for_large_inputs(cell: str) -> None:
    """Training projects the input in the same chunks as inference (here over several chunks
    and with I large enough for the GEMM to split its depth).
    (Found in review; failed before its fix.)"""
    p = make_problem(cell, 70, 9, 600, 20, dtype=np.float32)
    a = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=True)
    b = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=False)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.h_n, b.h_n)


def test_outputs_and_final_states(cell: str) -> None:
    p = make_problem(cell, 5, 3, 4, 6)
    r = F.forward(cell, p.x, *p.params, p.h0, p.c0)
    np.testing.assert_array_equal(r.y[-1], r.h_n)
    assert (r.c_n is not None) == (cell == "lstm")


def test_dy_none_equals_zero_dy(cell: str) -> None:
    p = make_problem(cell, 5, 3, 4, 6)
    outs = []
    for dy in (None, np.zeros_like(p.dy)):
        fw = F.forward(cell, p.x, *p.params, p.h0, p.c0)
        outs.append(F.backward(cell, p.x, *p.params, fw.workspace, dy, p.dh_n, p.dc_n))
    for a, b in zip(*outs, strict=False):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)


def test_empty_sequence(cell: str, dtype: Any) -> None:
    """T = 0: empty output, the final state is the initial state, the gradients pass through."""
    p = make_problem(cell, 0, 3, 4, 6, dtype=dtype)
    fw = F.forward(cell, p.x, *p.params, p.h0, p.c0)
    assert fw.y.shape == (0, 3, 6)
    np.testing.assert_array_equal(fw.h_n, p.h0)
    bw = F.backward(cell, p.x, *p.params, fw.workspace, p.dy, p.dh_n, p.dc_n)
    assert bw.dx.shape == (0, 3, 4)
    np.testing.assert_array_equal(bw.dh0, p.dh_n)
    assert not bw.dweight_ih.any() and not bw.dweight_hh.any()
    if cell == "lstm":
        np.testing.assert_array_equal(fw.c_n, p.c0)
        np.testing.assert_array_equal(bw.dc0, p.dc_n)


def test_empty_batch(cell: str) -> None:
    p = make_problem(cell, 4, 0, 3, 5)
    for training in (True, False):
        fw = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=training)
        assert fw.y.shape == (4, 0, 5) and fw.h_n.shape == (0, 5)
    fw = F.forward(cell, p.x, *p.params, p.h0, p.c0)
    bw = F.backward(cell, p.x, *p.params, fw.workspace, p.dy, p.dh_n, p.dc_n)
    assert bw.dx.shape == (4, 0, 3)
    assert not bw.dweight_hh.any()


def test_workspace_size_matches(cell: str, dtype: Any) -> None:
    p = make_problem(cell, 5, 3, 4, 6, dtype=dtype)
    fw = F.forward(cell, p.x, *p.params)
    assert fw.workspace is not None
    assert fw.workspace.shape == (F.workspace_size(cell, 5, 3, 4, 6, dtype),)


def test_inputs_not_modified(cell: str) -> None:
    p = make_problem(cell, 5, 3, 4, 6)
    before = [None if a is None else a.copy() for a in (p.x, *p.params, p.h0, p.c0, p.dy)]
    fw = F.forward(cell, p.x, *p.params, p.h0, p.c0)
    F.backward(cell, p.x, *p.params, fw.workspace, p.dy, p.dh_n, p.dc_n)
    for a, b in zip(before, (p.x, *p.params, p.h0, p.c0, p.dy), strict=False):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_non_contiguous_inputs_accepted(cell: str) -> None:
    p = make_problem(cell, 5, 3, 4, 6)
    x_f = np.asfortranarray(p.x)
    w_t = np.ascontiguousarray(p.weight_ih.T).T  # a transposed view, not C-contiguous
    assert not w_t.flags.c_contiguous
    a = F.forward(cell, x_f, w_t, *p.params[1:], p.h0, p.c0, training=False)
    b = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=False)
    np.testing.assert_array_equal(a.y, b.y)


def test_misaligned_arrays_are_copied_not_misread() -> None:
    """An array at an odd byte offset (not aligned to its elements) is copied before the kernels
    read it: the same results as from an aligned copy. (Found in review; failed before its fix.)"""
    p = make_problem("lstm", 3, 2, 4, 5)
    raw = np.zeros(p.x.nbytes + 1, np.uint8)[1:]
    x = raw.view(np.float64).reshape(p.x.shape)
    x[...] = p.x
    assert not x.flags.aligned
    a = F.forward("lstm", x, *p.params, training=False)
    b = F.forward("lstm", p.x, *p.params, training=False)
    np.testing.assert_array_equal(a.y, b.y)


def test_equal_but_distinct_dtype_objects_are_accepted() -> None:
    """A pickled array's dtype equals float32 but is another object (multiprocessing, joblib).
    (Found in review; failed before its fix.)"""
    p = make_problem("gru", 3, 2, 4, 5, dtype=np.float32)
    x = pickle.loads(pickle.dumps(p.x))
    assert x.dtype == np.float32 and x.dtype is not np.dtype(np.float32)
    a = F.forward("gru", x, *p.params)
    b = F.forward("gru", p.x, *p.params)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.workspace is not None
    ws = pickle.loads(pickle.dumps(a.workspace))
    F.backward("gru", x, *p.params, ws, p.dy)


@pytest.mark.parametrize("cell_name", CELLS)
def test_repeatable(cell_name: str) -> None:
    """The same inputs give bit-identical results, run after run."""
    p = make_problem(cell_name, 8, 4, 16, 32, dtype=np.float32)
    res = []
    for _ in range(3):
        fw = F.forward(cell_name, p.x, *p.params, p.h0, p.c0)
        bw = F.backward(cell_name, p.x, *p.params, fw.workspace, p.dy, p.dh_n, p.dc_n)
        res.append((fw.y, *[a for a in bw if a is not None]))
    for other in res[1:]:
        for a, b in zip(res[0], other, strict=False):
            np.testing.assert_array_equal(a, b)
