"""bfloat16 products (``compute_dtype="bfloat16"``): the kernels against the NumPy reference fed
the same bfloat16-rounded operands (this tests the kernels, not the rounding), against float32 end
to end, and the API's rules.

Comparing with the reference: the kernels and the reference compute the same rounded products,
summed in float32 in different orders, so their pre-activations differ in the last bits of float32;
a value that lies within those bits of a bfloat16 rounding boundary then rounds the other way in
one of them (a change of 2^-9 of that value), and its sequence carries the difference on. Such
flips are rare and local: most elements agree to float32 rounding (the median test below), and the
root-mean-square difference stays a small fraction of the bfloat16 error itself (a missing or
extra rounding of any operand gives a difference of the order of that error).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import _core
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.spec import StackSpec
from helpers import CELLS, stack_params

BF16 = "bfloat16"

# (T, B, I, H): batch 1 and 3 (the packed products' few-rows path), a batch of 64 (Eigen's
# kernel), a depth over the packed products' 512-deep blocks, a step count and batch for which
# float32 reads the weights in place (direct mode), and H not a multiple of the SIMD width
SHAPES = {
    "b1": (9, 1, 12, 24),
    "b3": (6, 3, 10, 16),
    "b64": (5, 64, 33, 40),
    "deep": (3, 8, 600, 20),
    "direct": (2, 2, 16, 32),
    "odd": (4, 5, 7, 13),
}
# the stack options: (num_layers, bidirectional, proj_size, lengths, dropout)
OPTIONS = {
    "plain": (1, False, 0, False, False),
    "proj": (1, False, 5, False, False),
    "bidir": (1, True, 0, False, False),
    "stack": (2, True, 0, False, True),
    "lengths": (2, False, 0, True, False),
}


def _case(cell: str, shape: str, option: str, seed: int = 0) -> dict[str, Any]:
    T, B, I, H = SHAPES[shape]
    L, bidir, P, lengths, dropout = OPTIONS[option]
    D = 2 if bidir else 1
    rng = np.random.default_rng(seed)
    params = stack_params(
        rng, cell, I, H, num_layers=L, num_directions=D, proj_size=P, dtype=np.float32
    )
    Hs = P or H
    case: dict[str, Any] = {
        "cell": cell,
        "params": params,
        "x": rng.standard_normal((T, B, I)).astype(np.float32),
        "h0": rng.uniform(-1, 1, (L * D, B, Hs)).astype(np.float32),
        "c0": rng.uniform(-1, 1, (L * D, B, H)).astype(np.float32) if cell == "lstm" else None,
        "dy": rng.standard_normal((T, B, D * Hs)).astype(np.float32),
        "lengths": rng.integers(0, T + 1, B) if lengths else None,
        "masks": (
            (rng.random((L - 1, T, B, D * Hs)) > 0.3).astype(np.float32) / np.float32(0.7)
            if dropout
            else None
        ),
        "kw": {"num_layers": L, "bidirectional": bidir},
        "proj": P,
    }
    return case


def _kernel(c: dict[str, Any], compute_dtype: Any) -> tuple[Any, ...]:
    r = F.stack_forward(
        c["cell"], c["x"], c["params"], c["h0"], c["c0"], proj_size=c["proj"],
        lengths=c["lengths"], dropout_masks=c["masks"], compute_dtype=compute_dtype, **c["kw"],
    )  # fmt: skip
    b = F.stack_backward(
        c["cell"], c["x"], c["params"], r.workspace, c["dy"], proj_size=c["proj"],
        lengths=c["lengths"], compute_dtype=compute_dtype, **c["kw"],
    )  # fmt: skip
    grads = [g for entry in b.grads for g in entry if g is not None]
    return (r.y, r.h_n, b.dx, b.dh0, *grads)


def _reference(c: dict[str, Any], compute_dtype: Any) -> tuple[Any, ...]:
    y, h_n, _, cache = R.stack_forward(
        c["cell"], c["x"], c["params"], c["h0"], c["c0"], lengths=c["lengths"],
        dropout_masks=c["masks"], compute_dtype=compute_dtype, **c["kw"],
    )  # fmt: skip
    g = R.stack_backward(cache, c["dy"])
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    grads = [e[n] for e in g["params"] for n in names if e[n] is not None]
    return (y, h_n, g["dx"], g["dh0"], *grads)


NAMES = ("y", "h_n", "dx", "dh0")


def _rms(a: Any) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(a, np.float64)))))


@pytest.mark.parametrize(
    ("cell", "shape", "option"),
    [
        (cell, shape, option)
        for cell in CELLS
        for shape in SHAPES
        for option in OPTIONS
        if cell == "lstm" or not OPTIONS[option][2]  # proj_size: LSTM only
    ],
)
def test_kernels_compute_the_references_bf16_products(
    cell: str, shape: str, option: str, record_worst_error: Any
) -> None:
    c = _case(cell, shape, option)
    got = _kernel(c, BF16)
    want = _reference(c, BF16)
    exact = _reference(c, None)
    assert len(got) == len(want)
    for k, (g, w, e) in enumerate(zip(got, want, exact, strict=True)):
        name = NAMES[k] if k < len(NAMES) else f"grad {k - len(NAMES)}"
        assert g.dtype == np.float32 and g.shape == w.shape, name
        scale = max(float(np.abs(w).max()), 1e-30)
        d = np.abs(g.astype(np.float64) - w)
        if k < len(NAMES):  # a sequence's own values: most of them to float32 rounding
            assert np.median(d) <= 1e-6 * scale, (name, np.median(d) / scale)
        # (a weight's gradient sums over every sequence and step: every flip reaches it)
        # all: bfloat16 rounding flips, far below bfloat16's own error
        bf16_error = _rms(w - e)
        if bf16_error == 0:  # an all-zero gradient (every sequence of length 0)
            np.testing.assert_array_equal(g, w)
            continue
        record_worst_error(
            "bf16 kernels vs the bf16 reference, rms / bf16 rms", _rms(d) / bf16_error
        )
        assert _rms(d) <= 0.2 * bf16_error + 1e-7 * scale, (name, _rms(d), bf16_error)


@pytest.mark.parametrize("cell", CELLS)
def test_one_step_agrees_with_the_reference_to_float32_rounding(cell: str) -> None:
    """A single step from given states: the products' operands are the same bfloat16 values in
    both, nothing of one step's rounding reaches another."""
    c = _case(cell, "b64", "plain", seed=3)
    c["x"] = c["x"][:1]
    c["dy"] = c["dy"][:1]
    got = _kernel(c, BF16)[:2]
    want = _reference(c, BF16)[:2]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6 * np.abs(w).max())


@pytest.mark.parametrize("cell", CELLS)
def test_bf16_is_within_2e_2_of_float32(cell: str, record_worst_error: Any) -> None:
    """End to end against float32 on the same weights (PyTorch's bf16 LSTM tolerance), and
    clearly not float32 (the products did run in bfloat16): the outputs' largest error relative
    to their largest value, the gradients' norm of the error relative to theirs (an element of a
    ReLU's gradient is switched on or off where a pre-activation near 0 changes sign)."""
    c = _case(cell, "b64", "stack", seed=1)
    for k, (g, e) in enumerate(zip(_kernel(c, BF16), _kernel(c, None), strict=True)):
        if k < 2:  # the outputs themselves
            rel = float(np.abs(g - e).max() / np.abs(e).max())
            assert rel > 1e-4, (k, rel)
        else:
            rel = float(np.linalg.norm(g - e) / np.linalg.norm(e))
        record_worst_error(f"bf16 vs float32, {cell}", rel)
        # a ReLU's gradients: the pre-activations' bfloat16 rounding switches ~0.1% of the
        # derivatives per step between 0 and 1, 2-8% of the gradients' norm (the reference's
        # own bf16 model shows the same, test above); the outputs are within 2e-2
        assert rel <= (1e-1 if cell == "rnn_relu" and k >= 2 else 2e-2), (k, rel)


def test_bf16_results_do_not_depend_on_the_thread_count() -> None:
    c = _case("lstm", "b64", "bidir", seed=2)
    old = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        one = _kernel(c, BF16)
        fastrnn.set_num_threads(3)
        three = _kernel(c, BF16)
    finally:
        fastrnn.set_num_threads(old)
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)


def test_generation_one_step_at_a_time_equals_the_sequence() -> None:
    """A layer called one step at a time (a generation loop) computes what one call over the
    whole sequence computes, in bfloat16 too."""
    layer = fastrnn.LSTM(6, 20, compute_dtype=BF16, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((7, 2, 6)).astype(np.float32)
    y, _ = layer(x)
    state = None
    for t in range(7):
        yt, state = layer(x[t : t + 1], state)
        np.testing.assert_allclose(yt[0], y[t], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------- the API


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_layers_take_compute_dtype_and_it_is_settable(kind: str) -> None:
    cls = getattr(fastrnn, kind)
    layer = cls(5, 8, compute_dtype="bfloat16", seed=0)
    assert layer.compute_dtype == "bfloat16" and layer.spec.bf16
    assert "compute_dtype='bfloat16'" in repr(layer)
    x = np.random.default_rng(1).standard_normal((4, 2, 5)).astype(np.float32)
    y16, _ = layer(x)
    layer.compute_dtype = None
    assert layer.compute_dtype == "float32" and "compute_dtype" not in repr(layer)
    y32, _ = layer(x)
    assert 0 < np.abs(y16 - y32).max() < 2e-2
    layer.compute_dtype = "bf16"
    assert layer.compute_dtype == "bfloat16"
    np.testing.assert_array_equal(layer(x)[0], y16)


def test_backward_runs_in_the_precision_of_its_forward() -> None:
    layer = fastrnn.GRU(5, 8, compute_dtype="bfloat16", seed=0)
    x = np.random.default_rng(1).standard_normal((4, 2, 5)).astype(np.float32)
    y, _ = layer(x)
    layer.compute_dtype = "float32"  # changed between forward and backward
    dx, _ = layer.backward(np.ones_like(y))
    ref = fastrnn.GRU(5, 8, compute_dtype="bfloat16", seed=0)
    ref(x)
    np.testing.assert_array_equal(dx, ref.backward(np.ones_like(y))[0])


@pytest.mark.parametrize(
    ("dtype", "value", "match"),
    [
        (np.float64, "bfloat16", "need a float32 stack"),
        (np.float32, "float16", "expected None"),
        (np.float32, "float64", "expected None"),
        (np.float32, 3, "expected None"),
    ],
)
def test_bad_compute_dtype_is_a_value_error(dtype: Any, value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=f"compute_dtype: .*{match}"):
        fastrnn.LSTM(4, 6, dtype=dtype, compute_dtype=value)
    with pytest.raises(ValueError, match="compute_dtype"):
        StackSpec("gru", 4, 6, dtype=dtype, compute_dtype=value)


def test_compute_dtype_accepts_the_dtypes_own_name_and_object() -> None:
    assert StackSpec("gru", 4, 6, dtype=np.float64, compute_dtype=np.float64).compute_dtype == (
        "float64"
    )
    assert StackSpec("gru", 4, 6, compute_dtype="float32").compute_dtype == "float32"
    assert StackSpec("gru", 4, 6, compute_dtype="BF16").compute_dtype == "bfloat16"


def test_a_backward_in_another_precision_than_its_forward_is_refused() -> None:
    c = _case("lstm", "b3", "plain")
    r = F.stack_forward(c["cell"], c["x"], c["params"], compute_dtype=BF16)
    with pytest.raises(ValueError, match="compute: the forward of this workspace ran"):
        F.stack_backward(c["cell"], c["x"], c["params"], r.workspace, c["dy"])
    r = F.stack_forward(c["cell"], c["x"], c["params"])
    with pytest.raises(ValueError, match="compute: the forward of this workspace ran"):
        F.stack_backward(c["cell"], c["x"], c["params"], r.workspace, c["dy"], compute_dtype=BF16)


def test_the_core_refuses_bf16_products_of_float64_arrays() -> None:
    rng = np.random.default_rng(0)
    params = stack_params(
        rng, "gru", 3, 4, num_layers=1, num_directions=1, proj_size=0, dtype=np.float64
    )
    x = rng.standard_normal((2, 1, 3))
    with pytest.raises(ValueError, match="bfloat16 products need float32"):
        _core.forward(
            _core.Cell.gru, x, list(params), None, None, None, None, 1, False, 0, 4, False,
            _core.Compute.bfloat16,
        )  # fmt: skip


def test_sequence_model_keeps_compute_dtype_through_save_and_load(tmp_path: Any) -> None:
    from fastrnn.training import SequenceModel

    m = SequenceModel("lstm", 5, 8, 3, compute_dtype="bfloat16", seed=0)
    assert m.rnn.compute_dtype == "bfloat16" and m.config["compute_dtype"] == "bfloat16"
    m.save(tmp_path / "m.npz")
    back, _, _ = SequenceModel.load(tmp_path / "m.npz")
    assert back.rnn.compute_dtype == "bfloat16"
    m.rnn.compute_dtype = None  # the layer's value is what is saved
    m.save(tmp_path / "m32.npz")
    assert SequenceModel.load(tmp_path / "m32.npz")[0].rnn.compute_dtype == "float32"


# ---------------------------------------------------------------------------------- training


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_training_in_bf16_ends_where_float32_ends(cell: str) -> None:
    """The adding problem (T = 20, a short run) trained in float32 and in bfloat16 from the same
    weights and batches: both learn it, and the bfloat16 model's test error ends within 5% (of
    the constant predictor's error) of the float32 one's. (`fastrnn adding --T 100` and `fastrnn
    demo` with --compute-dtype bfloat16 are compared in docs/precision.md.)"""
    from fastrnn.training import SequenceModel, optim, tasks

    x_test, y_test = tasks.adding_problem(500, 20, 99)
    base = tasks.adding_baseline_mse()
    result = {}
    for cd in (None, "bfloat16"):
        model = SequenceModel(cell, 2, 24, 1, many_to_one=True, seed=0, compute_dtype=cd)
        opt = optim.Adam(lr=1e-2)
        rng = np.random.default_rng(1)
        for _ in range(600):
            x, y = tasks.adding_problem(32, 20, rng)
            model.train_step(x, y, opt, clip_norm=1.0)
        result[cd] = model.evaluate(x_test, y_test)
    assert result[None] < 0.1 * base  # float32 learnt it
    assert result["bfloat16"] < 0.1 * base
    assert abs(result["bfloat16"] - result[None]) <= 0.05 * base, result
