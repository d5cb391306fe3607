"""Empty inputs have defined results; extreme values never make NaN or inf by themselves; NaN
and inf in the input propagate as NaN instead of crashing. The layers of every kind, and where
said the functional API and the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from helpers import CELLS, LAYER_KINDS, make_layer, make_problem

OPTS = {"num_layers": 2, "bidirectional": True}


@pytest.fixture(params=list(LAYER_KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    """Every layer kind: the layer of every cell, and an LSTM with a projection."""
    return request.param  # type: ignore[no-any-return]


def make(kind: str, **kw: Any) -> Any:
    """A layer of 3 inputs and 4 units (lstm_proj: projected to 2)."""
    if kind == "lstm_proj":
        kw["proj_size"] = 2
    return make_layer(kind, 3, 4, **kw)


def states(st: Any) -> tuple[Any, ...]:
    return st if isinstance(st, tuple) else (st,)


@pytest.mark.parametrize("batch_first", [False, True])
def test_zero_steps_returns_empty_output_and_the_initial_state(
    kind: str, batch_first: bool
) -> None:
    m = make(kind, **OPTS, batch_first=batch_first, dtype=np.float64)
    Hs = m.spec.state_size
    x = np.zeros((2, 0, 3) if batch_first else (0, 2, 3))
    rng = np.random.default_rng(0)
    h0 = rng.standard_normal((4, 2, Hs))
    c0 = rng.standard_normal((4, 2, 4))
    hx = (h0, c0) if kind.startswith("lstm") else h0
    y, st = m(x, hx)
    assert y.shape == ((2, 0, 2 * Hs) if batch_first else (0, 2, 2 * Hs))
    for a, b in zip(states(st), states(hx), strict=True):
        np.testing.assert_array_equal(a, b)
    dh = rng.standard_normal(h0.shape)
    dc = rng.standard_normal(c0.shape)
    dx, dst = m.backward(np.zeros_like(y), (dh, dc) if kind.startswith("lstm") else dh)
    assert dx.shape == x.shape
    for a, b in zip(states(dst), (dh, dc), strict=False):
        np.testing.assert_array_equal(a, b)
    assert all(not g.any() for g in m.grads.values())


def test_empty_batch_returns_empty_arrays(kind: str) -> None:
    m = make(kind, **OPTS)
    y, st = m(np.zeros((5, 0, 3), np.float32), lengths=np.zeros(0, int))
    assert y.shape == (5, 0, 2 * m.spec.state_size)
    assert all(s.shape[1] == 0 for s in states(st))
    dx, _ = m.backward(y)
    assert dx.shape == (5, 0, 3)


@pytest.mark.parametrize("scale", [1e4, 1e-30, 1e30], ids=["pre_1e4", "tiny_w", "huge_w"])
def test_extreme_values_stay_finite(kind: str, scale: float) -> None:
    """Pre-activations of +-1e4 (and weights of 1e-30 or 1e30 with unit inputs): the outputs and
    gradients are finite; saturated gates give exact 0/1 (relu: large but finite)."""
    for dtype in (np.float32, np.float64):
        m = make(kind, **OPTS, dtype=dtype, seed=1)
        rng = np.random.default_rng(2)
        if scale == 1e4:
            sd = {k: np.sign(v) * 1e4 / max(1, v.shape[-1] if v.ndim > 1 else 1)
                  for k, v in m.state_dict().items()}  # fmt: skip
        else:
            sd = {k: v * scale for k, v in m.state_dict().items()}
        if kind in ("rnn_relu", "lstm_proj") and scale > 1:
            continue  # relu and the linear projection are unbounded: overflow is the right answer
        m.load_state_dict(sd)
        x = np.sign(rng.standard_normal((50, 3, 3))).astype(dtype)
        y, st = m(x)
        dx, _ = m.backward(np.ones_like(y))
        for a in (y, *states(st), dx, *m.grads.values()):
            assert np.isfinite(a).all()


def test_long_sequence_stays_bounded(kind: str) -> None:
    m = make(kind, seed=3).eval()
    x = np.random.default_rng(0).standard_normal((20000, 2, 3)).astype(np.float32)
    y, _ = m(x)
    assert np.isfinite(y).all()
    if kind != "rnn_relu":
        assert np.abs(y).max() <= 1.0 + 1e-6 or kind == "lstm_proj"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_propagates_as_nan_not_a_crash(kind: str, bad: float) -> None:
    m = make(kind, **OPTS, seed=4)
    x = np.random.default_rng(0).standard_normal((6, 3, 3)).astype(np.float32)
    x[2, 1, 0] = bad
    y, _ = m(x)
    dx, _ = m.backward(np.ones_like(y))  # runs, no exception
    assert np.isfinite(y[:, 0]).all() and np.isfinite(y[:, 2]).all()  # other sequences untouched
    assert np.isfinite(dx[:, 0]).all() and np.isfinite(dx[:, 2]).all()
    if np.isnan(bad):
        assert np.isnan(y[5, 1]).any()  # NaN reaches the later steps of its sequence


@pytest.mark.parametrize("cell", CELLS)
def test_nan_input_propagates(cell: str) -> None:
    """The functional API: NaN in one sequence's input reaches every unit of that sequence's
    output from its step on, and no other sequence. (Found in review; failed before its fix.)"""
    p = make_problem(cell, 3, 2, 4, 5)
    p.x[0, 1, 2] = np.nan
    y = F.forward(cell, p.x, *p.params, p.h0, p.c0, training=False).y
    assert np.isnan(y[:, 1]).all()  # every unit of sequence 1, from step 0 on
    assert np.isfinite(y[:, 0]).all()


def test_relu_backward_matches_torch_semantics_on_nonfinite_gradients() -> None:
    """d relu = dh where h > 0 else 0, even when dh is inf (PyTorch: 0, not NaN).
    (Found in review; failed before its fix.)"""
    cache = (np.zeros((1, 1)), np.zeros((1, 2)), np.array([[0.0, 1.0]]))
    p = {"w_ih": np.ones((2, 1)), "w_hh": np.ones((2, 2))}
    _, _, g = R.rnn_step_backward(np.array([[np.inf, 1.0]]), cache, p, relu=True)
    assert g["b_ih"][0] == 0.0
