"""Weight conventions: Keras (its formulas written out here, in its layout), ONNX arrays, notes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import convert
from fastrnn import functional as F
from fastrnn.reference import sigmoid

T, B, I, H = 6, 3, 4, 5


def keras_run(cell: str, x: np.ndarray, kernel: Any, rk: Any, bias: Any) -> np.ndarray:
    """Keras' LSTM / GRU / SimpleRNN recurrences (recurrent_activation sigmoid, the default)."""
    h = np.zeros((x.shape[1], H))
    c = np.zeros((x.shape[1], H))
    ys = []
    for t in range(x.shape[0]):
        xt = x[t]
        if cell == "lstm":
            z = xt @ kernel + h @ rk + (0 if bias is None else bias)
            i, f, cc, o = np.split(z, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(cc)
            h = sigmoid(o) * np.tanh(c)
        elif cell == "gru":  # reset_after=True, bias (2, 3H) = [input, recurrent]
            mx = xt @ kernel + bias[0]
            mi = h @ rk + bias[1]
            xz, xr, xh = np.split(mx, 3, axis=-1)
            rz, rr, rh = np.split(mi, 3, axis=-1)
            z, r = sigmoid(xz + rz), sigmoid(xr + rr)
            hh = np.tanh(xh + r * rh)
            h = z * h + (1 - z) * hh
        elif cell == "gru_reset_before":  # reset_after=False, bias (3H,)
            xz, xr, xh = np.split(xt @ kernel + (0 if bias is None else bias), 3, axis=-1)
            z = sigmoid(xz + h @ rk[:, :H])
            r = sigmoid(xr + h @ rk[:, H : 2 * H])
            hh = np.tanh(xh + (r * h) @ rk[:, 2 * H :])
            h = z * h + (1 - z) * hh
        else:  # SimpleRNN
            a = xt @ kernel + h @ rk + (0 if bias is None else bias)
            h = np.tanh(a) if cell == "rnn_tanh" else np.maximum(a, 0)
        ys.append(h)
    return np.stack(ys)


KERAS = {
    "lstm": (4, lambda rng: rng.uniform(-0.5, 0.5, 4 * H)),
    "gru": (3, lambda rng: rng.uniform(-0.5, 0.5, (2, 3 * H))),
    "gru_reset_before": (3, lambda rng: rng.uniform(-0.5, 0.5, 3 * H)),
    "rnn_tanh": (1, lambda rng: rng.uniform(-0.5, 0.5, H)),
    "rnn_relu": (1, lambda rng: rng.uniform(-0.5, 0.5, H)),
}


# Keras' reset_after GRU always has its (2, 3H) bias
KERAS_CASES = [(c, b) for c in KERAS for b in (True, False) if c != "gru" or b]


@pytest.mark.parametrize(("cell", "use_bias"), KERAS_CASES)
def test_keras_weights_reproduce_keras_formulas(cell: str, use_bias: bool) -> None:
    G, make_bias = KERAS[cell]
    rng = np.random.default_rng(0)
    kernel = rng.uniform(-0.5, 0.5, (I, G * H))
    rk = rng.uniform(-0.5, 0.5, (H, G * H))
    bias = make_bias(rng) if use_bias else None
    x = rng.standard_normal((T, B, I))
    w = convert.from_keras(cell, kernel, rk, bias)
    y = F.forward(cell, x, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"]).y
    np.testing.assert_allclose(y, keras_run(cell, x, kernel, rk, bias), rtol=1e-12, atol=1e-12)
    # and back: the same Keras arrays (a single bias is the sum of ours)
    back = convert.to_keras(cell, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"])
    np.testing.assert_array_equal(back[0], kernel)
    np.testing.assert_array_equal(back[1], rk)
    if use_bias:
        np.testing.assert_allclose(back[2], bias, rtol=0, atol=1e-15)
    else:
        assert len(back) == 2


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before", "rnn_tanh"])
def test_onnx_arrays_round_trip(cell: str) -> None:
    G = F.num_gates(cell)
    rng = np.random.default_rng(1)
    params = [
        tuple(rng.standard_normal(s) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,)))
        for _ in range(2)
    ]
    onnx = convert.to_onnx(cell, params)
    assert onnx["W"].shape == (2, G * H, I) and onnx["B"].shape == (2, 2 * G * H)
    back = convert.from_onnx(cell, onnx["W"], onnx["R"], onnx["B"])
    for p, q in zip(params, back, strict=True):
        for a, b in zip(p, q, strict=True):
            np.testing.assert_array_equal(a, b)


def test_onnx_lstm_gate_order_is_iofc() -> None:
    """Each gate block, tagged with its PyTorch index, lands where ONNX expects it."""
    w = np.repeat(np.arange(4.0), H)[:, None] * np.ones((1, I))  # blocks i=0, f=1, g=2, o=3
    onnx = convert.to_onnx("lstm", [(w, w[:, :1].repeat(H, 1), None, None)])
    assert list(onnx["W"][0, ::H, 0]) == [0.0, 3.0, 1.0, 2.0]  # i, o, f, c
    gru = np.repeat(np.arange(3.0), H)[:, None] * np.ones((1, I))  # r=0, z=1, n=2
    assert list(convert.to_onnx("gru", [(gru, gru[:, :1].repeat(H, 1))])["W"][0, ::H, 0]) == [
        1.0,
        0.0,
        2.0,
    ]  # z, r, h


def test_onnx_peepholes_round_trip_and_order() -> None:
    """fastrnn's weight_peephole (blocks i, f, o) is a row of ONNX's P (blocks i, o, f)."""
    rng = np.random.default_rng(3)
    params = [
        (
            *(rng.standard_normal(s) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))),
            np.repeat([0.0, 1.0, 2.0], H) + d,  # p_i = d, p_f = 1 + d, p_o = 2 + d
        )
        for d in range(2)
    ]
    onnx = convert.to_onnx("lstm_peephole", params)
    assert onnx["P"].shape == (2, 3 * H)
    assert [list(onnx["P"][d, ::H]) for d in range(2)] == [[0.0, 2.0, 1.0], [1.0, 3.0, 2.0]]
    plain = convert.to_onnx("lstm", [p[:4] for p in params])
    for k in ("W", "R", "B"):
        np.testing.assert_array_equal(onnx[k], plain[k])
    back = convert.from_onnx("lstm_peephole", onnx["W"], onnx["R"], onnx["B"], onnx["P"])
    for p, q in zip(params, back, strict=True):
        assert len(q) == 5
        for a, b in zip(p, q, strict=True):
            np.testing.assert_array_equal(a, b)
    # ONNX's default P is zeros
    zero = convert.from_onnx("lstm_peephole", onnx["W"], onnx["R"])
    assert all(np.array_equal(q[4], np.zeros(3 * H)) for q in zero)


def test_onnx_peephole_errors() -> None:
    W, R = np.zeros((1, 4 * H, I)), np.zeros((1, 4 * H, H))
    with pytest.raises(ValueError, match=r"P: peepholes are only for cell 'lstm_peephole', not"):
        convert.from_onnx("lstm", W, R, None, np.zeros((1, 3 * H)))
    with pytest.raises(ValueError, match=rf"P: expected shape \(1, {3 * H}\), got \(1, {H}\)"):
        convert.from_onnx("lstm_peephole", W, R, None, np.zeros((1, H)))
    with pytest.raises(TypeError, match=r"P: expected a floating-point array, got int64"):
        convert.from_onnx("lstm_peephole", W, R, None, np.zeros((1, 3 * H), np.int64))
    entry = (W[0], R[0], None, None)
    with pytest.raises(TypeError, match=r"params\[0\].weight_peephole: an lstm_peephole entry"):
        convert.to_onnx("lstm_peephole", [entry])
    with pytest.raises(ValueError, match=r"params\[0\].weight_peephole: expected shape"):
        convert.to_onnx("lstm_peephole", [(*entry, np.zeros(H))])
    with pytest.raises(ValueError, match=r"cell: expected one of .*lstm_peephole.*, got 'lsm'"):
        convert.to_onnx("lsm", [entry])


def test_notes_gru_convention() -> None:
    rng = np.random.default_rng(2)
    p = [rng.standard_normal(s) for s in ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))]
    x = rng.standard_normal((T, B, I))
    # the notes: h' = (1 - z) h + z n, reset gate before the product
    h = np.zeros((B, H))
    for t in range(T):
        r = sigmoid(x[t] @ p[0][:H].T + p[2][:H] + h @ p[1][:H].T + p[3][:H])
        z = sigmoid(
            x[t] @ p[0][H : 2 * H].T + p[2][H : 2 * H] + h @ p[1][H : 2 * H].T + p[3][H : 2 * H]
        )
        n = np.tanh(
            x[t] @ p[0][2 * H :].T + p[2][2 * H :] + (r * h) @ p[1][2 * H :].T + p[3][2 * H :]
        )
        h = (1 - z) * h + z * n
    m = fastrnn.GRU(I, H, reset_after=False, dtype=np.float64)
    w_ih, w_hh, b_ih, b_hh = convert.notes_gru(*p)
    m.load_state_dict(
        {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    )
    np.testing.assert_allclose(m(x)[1][0], h, rtol=1e-12, atol=1e-12)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cell: expected one of"):
        convert.from_keras("lstmm", np.zeros((3, 8)), np.zeros((2, 8)))
    with pytest.raises(ValueError, match="recurrent_kernel: expected shape"):
        convert.from_keras("lstm", np.zeros((3, 8)), np.zeros((3, 8)))
    with pytest.raises(ValueError, match=r"bias: Keras GRU\(reset_after=True\)"):
        convert.from_keras("gru", np.zeros((3, 6)), np.zeros((2, 6)), np.zeros(6))
    with pytest.raises(ValueError, match="not a multiple of 4 gates"):
        convert.from_keras("lstm", np.zeros((3, 7)), np.zeros((2, 7)))
    with pytest.raises(ValueError, match="B: expected shape"):
        convert.from_onnx("gru", np.zeros((1, 6, 3)), np.zeros((1, 6, 2)), np.zeros((1, 6)))
