"""fastrnn.functional's stacks (stack_forward, stack_backward) against the NumPy reference: every
cell (and LSTM with a projection) x 1-3 layers x one or two directions x full or variable lengths
(including zero-length and full-length sequences in one batch) x float32/float64; dropout masks;
finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from helpers import assert_close, central_difference, contracted_loss, stack_params

KINDS = {  # id: (cell, proj_size)
    "rnn_tanh": ("rnn_tanh", 0),
    "rnn_relu": ("rnn_relu", 0),
    "lstm": ("lstm", 0),
    "lstm_proj": ("lstm", 4),
    "gru": ("gru", 0),
    "gru_reset_before": ("gru_reset_before", 0),
}
T, B, I, H = 5, 5, 3, 6
LENGTHS = np.array([2, 5, 0, 3, 5])  # unsorted, zero and full lengths


def make_stack(
    cell: str, L: int, D: int, P: int, dtype: Any, bias: bool = True, seed: int = 0
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    Hs = P or H
    params = stack_params(
        rng, cell, I, H, num_layers=L, num_directions=D, proj_size=P, dtype=dtype, bias=bias
    )
    lstm = cell == "lstm"
    return {
        "params": params,
        "x": rng.standard_normal((T, B, I)).astype(dtype),
        "h0": rng.uniform(-1, 1, (L * D, B, Hs)).astype(dtype),
        "c0": rng.uniform(-1, 1, (L * D, B, H)).astype(dtype) if lstm else None,
        "dy": rng.standard_normal((T, B, D * Hs)).astype(dtype),
        "dh": rng.standard_normal((L * D, B, Hs)).astype(dtype),
        "dc": rng.standard_normal((L * D, B, H)).astype(dtype) if lstm else None,
        "masks": (rng.random((max(L - 1, 0), T, B, D * Hs)) > 0.3).astype(dtype) / dtype(0.7),
    }


def compare(
    kind: str, L: int, D: int, dtype: Any, lengths: Any, dropout: bool, bias: bool = True
) -> None:
    cell, P = KINDS[kind]
    s = make_stack(cell, L, D, P, dtype, bias)
    opts = {"num_layers": L, "bidirectional": D == 2, "lengths": lengths}
    masks = s["masks"] if dropout and L > 1 else None
    fw = F.stack_forward(
        cell, s["x"], s["params"], s["h0"], s["c0"], proj_size=P, dropout_masks=masks, **opts
    )
    bw = F.stack_backward(
        cell, s["x"], s["params"], fw.workspace, s["dy"], s["dh"], s["dc"], proj_size=P, **opts
    )
    f64 = [None if a is None else np.asarray(a, np.float64) for a in (s["x"], s["h0"], s["c0"])]
    p64 = [tuple(None if a is None else a.astype(np.float64) for a in p) for p in s["params"]]
    y, h_n, c_n, cache = R.stack_forward(
        cell,
        f64[0],
        p64,
        f64[1],
        f64[2],
        dropout_masks=None if masks is None else masks.astype(np.float64),
        **opts,
    )
    g = R.stack_backward(cache, s["dy"].astype(np.float64), s["dh"], s["dc"])
    assert_close(fw.y, y, dtype, "y")
    assert_close(fw.h_n, h_n, dtype, "h_n")
    assert_close(bw.dx, g["dx"], dtype, "dx")
    assert_close(bw.dh0, g["dh0"], dtype, "dh0")
    if cell == "lstm":
        assert_close(fw.c_n, c_n, dtype, "c_n")
        assert_close(bw.dc0, g["dc0"], dtype, "dc0")
    for k, (got, want) in enumerate(zip(bw.grads, g["params"], strict=True)):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
            a, b = getattr(got, name), want[name]
            assert (a is None) == (b is None), (k, name)
            if a is not None:
                assert_close(a, b, dtype, f"{name}[{k}]")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("D", [1, 2], ids=["uni", "bi"])
@pytest.mark.parametrize("L", [1, 2, 3], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("kind", list(KINDS))
def test_stack_against_reference(kind: str, L: int, D: int, lengths: Any, dtype: Any) -> None:
    compare(kind, L, D, dtype, lengths, dropout=False)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_masks_against_reference(kind: str, lengths: Any) -> None:
    compare(kind, 3, 2, np.float64, lengths, dropout=True)


@pytest.mark.parametrize("kind", ["lstm_proj", "gru"])
def test_no_bias_stack(kind: str) -> None:
    compare(kind, 2, 2, np.float64, LENGTHS, dropout=False, bias=False)


def test_inference_equals_training_for_stacks() -> None:
    for kind, (cell, P) in KINDS.items():
        s = make_stack(cell, 3, 2, P, np.float32)
        opts = {"num_layers": 3, "bidirectional": True, "lengths": LENGTHS, "proj_size": P}
        a = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], training=True, **opts)
        b = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], training=False, **opts)
        np.testing.assert_array_equal(a.y, b.y, err_msg=kind)
        np.testing.assert_array_equal(a.h_n, b.h_n, err_msg=kind)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_need_dx_false_skips_only_dx(lengths: Any) -> None:
    """need_dx=False returns dx=None and bit-identical other gradients."""
    for kind, (cell, P) in KINDS.items():
        s = make_stack(cell, 2, 2, P, np.float32)
        opts = {"num_layers": 2, "bidirectional": True, "lengths": lengths, "proj_size": P}
        out = []
        for need in (True, False):
            fw = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], **opts)
            out.append(F.stack_backward(cell, s["x"], s["params"], fw.workspace, s["dy"],
                                        s["dh"], s["dc"], need_dx=need, **opts))  # fmt: skip
        full, skip = out
        assert full.dx is not None and skip.dx is None
        np.testing.assert_array_equal(full.dh0, skip.dh0, err_msg=kind)
        for a, b in zip(full.grads, skip.grads, strict=True):
            for u, v in zip(a, b, strict=True):
                assert (u is None) == (v is None)
                if u is not None:
                    np.testing.assert_array_equal(u, v, err_msg=kind)


def test_padding_values_never_matter() -> None:
    """NaN in the padded steps of x and dy changes nothing (they never reach a GEMM)."""
    s = make_stack("gru", 2, 2, 0, np.float64)
    opts = {"num_layers": 2, "bidirectional": True, "lengths": LENGTHS}
    x_nan, dy_nan = s["x"].copy(), s["dy"].copy()
    for b, n in enumerate(LENGTHS):
        x_nan[n:, b] = np.nan
        dy_nan[n:, b] = np.nan
    res = []
    for x, dy in ((s["x"], s["dy"]), (x_nan, dy_nan)):
        fw = F.stack_forward("gru", x, s["params"], s["h0"], **opts)
        bw = F.stack_backward("gru", x, s["params"], fw.workspace, dy, s["dh"], **opts)
        res.append(
            (fw.y, fw.h_n, bw.dx, bw.dh0, *[a for g in bw.grads for a in g if a is not None])
        )
    for a, b in zip(*res, strict=True):
        np.testing.assert_array_equal(np.nan_to_num(a, nan=7.0), np.nan_to_num(b, nan=7.0))
    dx = res[1][2]
    for b, n in enumerate(LENGTHS):
        assert not dx[n:, b].any()  # padded steps get zero gradient


def test_lengths_must_match_between_forward_and_backward() -> None:
    s = make_stack("lstm", 1, 1, 0, np.float64)
    fw = F.stack_forward("lstm", s["x"], s["params"], lengths=LENGTHS)
    with pytest.raises(ValueError, match="lengths: not the lengths the forward"):
        F.stack_backward("lstm", s["x"], s["params"], fw.workspace, s["dy"][..., :H])


@pytest.mark.parametrize(
    ("lengths", "exc", "match"),
    [
        (np.array([1, 2, 3, 4, 6]), ValueError, r"lengths: values must be in \[0, T=5\]"),
        (np.array([1, 2, 3, -1, 5]), ValueError, r"lengths: values must be in \[0, T=5\]"),
        (np.array([1, 2, 3]), ValueError, r"lengths: expected shape \(5,\)"),
        (np.array([1.5, 2, 3, 4, 5]), TypeError, "lengths: expected integers"),
        (np.array([np.nan, 2, 3, 4, 5]), TypeError, "lengths: expected integers"),
        (np.ones((5, 1), int), ValueError, "lengths: expected a 1-D array"),
    ],
)
def test_bad_lengths(lengths: Any, exc: type, match: str) -> None:
    s = make_stack("gru", 1, 1, 0, np.float64)
    with pytest.raises(exc, match=match):
        F.stack_forward("gru", s["x"], s["params"], lengths=lengths)


def test_float_lengths_with_integer_values_are_accepted() -> None:
    s = make_stack("gru", 1, 1, 0, np.float64)
    a = F.stack_forward("gru", s["x"], s["params"], lengths=LENGTHS.astype(float))
    b = F.stack_forward("gru", s["x"], s["params"], lengths=LENGTHS)
    np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize("kind", ["lstm_proj", "gru_reset_before", "rnn_tanh"])
def test_stack_gradients_match_finite_differences(kind: str) -> None:
    cell, P = KINDS[kind]
    L, D = 2, 2
    s = make_stack(cell, L, D, P, np.float64, seed=5)
    masks = s["masks"]
    opts = {"num_layers": L, "bidirectional": True, "lengths": LENGTHS, "proj_size": P}

    def loss() -> float:
        r = F.stack_forward(
            cell, s["x"], s["params"], s["h0"], s["c0"], dropout_masks=masks, training=False,
            **opts,
        )  # fmt: skip
        return contracted_loss(r.y, r.h_n, r.c_n, s["dy"], s["dh"], s["dc"])

    fw = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], dropout_masks=masks, **opts)
    bw = F.stack_backward(
        cell, s["x"], s["params"], fw.workspace, s["dy"], s["dh"], s["dc"], **opts
    )
    checks = [(s["x"], bw.dx), (s["h0"], bw.dh0)]
    for p, g in zip(s["params"], bw.grads, strict=True):
        checks += [(a, b) for a, b in zip(F.LayerParams(*p), g, strict=True) if a is not None]
    rng = np.random.default_rng(0)
    for arr, grad in checks:
        for _ in range(6):  # random entries of every array
            idx = tuple(rng.integers(0, n) for n in arr.shape)
            num = central_difference(loss, arr, idx, eps=1e-6)
            # |num - grad[idx]| <= 1e-6 * max(1, |num|)
            assert_close(grad[idx], num, what=f"entry {idx}", rtol=1e-6)
