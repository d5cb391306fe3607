"""Zoneout (Krueger et al., 2017; haste's ``zoneout``): after each step of a running sequence
``h_t = m*h_{t-1} + (1 - m)*h~_t`` and, for ``lstm`` and ``lnlstm``, ``c_t = m_c*c_{t-1} +
(1 - m_c)*c~_t``; ``m`` 0/1 draws in training, p in inference.

The kernels against the NumPy reference (outputs, final states, every gradient; float32 and
float64; full and variable lengths; reverse, bidirectional, two layers with dropout, projection;
every cell), the kernels against float64 central differences, the layers (eval is the
expectation formula, training draws reproducible from the seed and fresh at each call, p = 0 is
no zoneout bit for bit, the masks kept for the backward), thread determinism and the errors;
the rule of c's zoneout shared by Python and the core, the int8 layers (the expectation) and
SequenceModel (training, save/load, older files, quantize_dynamic).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.layers import from_spec
from fastrnn.spec import CELLS, LayerParams, StackSpec
from helpers import (
    as_f64,
    assert_close,
    central_difference,
    contracted_loss,
    int8_reference_entries,
    rewrite_config,
)

T, B, I, H = 5, 5, 3, 4
LENGTHS = np.array([2, 5, 0, 3, 5])  # unsorted, zero and full lengths
P_H, P_C = 0.3, 0.4
# the layer-normalised cells' float32 tolerance, lnlstm's f32_factor in test_layer_norm_cells.py
# (its comment: a layer norm's backward divides by its row's spread twice); helpers' 1e-5 for
# every other cell


def _factor(cell: str, dtype: Any) -> float:
    return 20.0 if cell in ("lnlstm", "lngru") and dtype == np.float32 else 1.0


# id: (cell, proj_size, num_layers, D, reverse, dropout)
KINDS: dict[str, tuple[str, int, int, int, bool, bool]] = {
    "lstm": ("lstm", 0, 1, 1, False, False),
    "lstm_proj_bi_L2_dropout": ("lstm", 2, 2, 2, False, True),
    "lstm_reverse": ("lstm", 0, 1, 1, True, False),
    "lnlstm_bi_L2": ("lnlstm", 0, 2, 2, False, True),
    "lnlstm_reverse": ("lnlstm", 0, 1, 1, True, False),
    "gru_L2_dropout": ("gru", 0, 2, 1, False, True),
    "gru_bi": ("gru", 0, 1, 2, False, False),
    "gru_reset_before_reverse": ("gru_reset_before", 0, 1, 1, True, False),
    "lngru_bi_L2": ("lngru", 0, 2, 2, False, True),
    "rnn_tanh_bi": ("rnn_tanh", 0, 1, 2, False, False),
    "rnn_relu_L2_dropout": ("rnn_relu", 0, 2, 1, False, True),
    "lstm_peephole_h_only": ("lstm_peephole", 0, 2, 2, False, False),
}


def _spec(kind: str, dtype: Any = np.float64) -> StackSpec:
    cell, P, L, D, reverse, _ = KINDS[kind]
    return StackSpec(cell, I, H, L, D == 2, True, P, dtype, reverse=reverse)


def zoneout_masks(spec: StackSpec, Tn: int, Bn: int, train: bool, seed: int = 1) -> tuple[Any, Any]:
    """0/1 draws (training) or p (inference), h's and (lstm, lnlstm) c's."""
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for kind, p in (("h", P_H), ("c", P_C)):
        if kind == "c" and not spec.has_zoneout_cell:
            out.append(None)
            continue
        shape = spec.zoneout_shape(Tn, Bn, kind)
        m = (rng.random(shape) < p) if train else np.full(shape, p)
        out.append(m.astype(spec.dtype))
    return out[0], out[1]


def make_problem(spec: StackSpec, seed: int = 0, Tn: int = T, Bn: int = B) -> dict[str, Any]:
    """Parameters (the layer-norm vectors near their constants), inputs, states, gradients."""
    rng = np.random.default_rng(seed)
    dt, k = spec.dtype, 1 / np.sqrt(H)
    consts = spec.param_constants()
    flat = [
        (consts.get(n, 0.0) + rng.uniform(-k, k, s)).astype(dt)
        for n, s in spec.param_shapes().items()
    ]
    LD, Hs = spec.num_entries, spec.state_size
    lstm = spec.has_cell_state
    return {
        "params": spec.entries(flat),
        "x": rng.standard_normal((Tn, Bn, I)).astype(dt),
        "h0": rng.uniform(-1, 1, (LD, Bn, Hs)).astype(dt),
        "c0": rng.uniform(-1, 1, (LD, Bn, H)).astype(dt) if lstm else None,
        "dy": rng.standard_normal((Tn, Bn, spec.output_size)).astype(dt),
        "dh": rng.standard_normal((LD, Bn, Hs)).astype(dt),
        "dc": rng.standard_normal((LD, Bn, H)).astype(dt) if lstm else None,
    }


def dropout_masks(spec: StackSpec, kind: str, Tn: int = T, Bn: int = B) -> Any:
    if not KINDS[kind][5]:
        return None
    keep = np.random.default_rng(7).random(spec.mask_shape(Tn, Bn)) >= 0.5
    return (keep * 2.0).astype(spec.dtype)


def kernels(spec: StackSpec, s: dict[str, Any], zo: Any, dm: Any, lengths: Any) -> Any:
    fw = F.run_forward(
        spec, s["x"], s["params"], s["h0"], s["c0"], lengths=lengths, dropout_masks=dm,
        zoneout_masks=zo,
    )  # fmt: skip
    bw = F.run_backward(
        spec, s["x"], s["params"], fw.workspace, s["dy"], s["dh"], s["dc"], lengths=lengths,
        zoneout_masks=zo,
    )  # fmt: skip
    return fw, bw


def reference(spec: StackSpec, s: dict[str, Any], zo: Any, dm: Any, lengths: Any) -> Any:
    y, h_n, c_n, cache = R.stack_forward(
        spec.cell, as_f64(s["x"]), as_f64(s["params"]), as_f64(s["h0"]), as_f64(s["c0"]),
        num_layers=spec.num_layers, bidirectional=spec.bidirectional, lengths=lengths,
        dropout_masks=as_f64(dm), reverse=spec.reverse, zoneout_masks=as_f64(zo),
    )  # fmt: skip
    g = R.stack_backward(cache, as_f64(s["dy"]), as_f64(s["dh"]), as_f64(s["dc"]))
    return y, h_n, c_n, g


def _grad_pairs(bw: Any, g: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    yield "dx", bw.dx, g["dx"]
    yield "dh0", bw.dh0, g["dh0"]
    if g["dc0"] is not None or bw.dc0 is not None:
        yield "dc0", bw.dc0, g["dc0"]
    for k, (got, want) in enumerate(zip(bw.grads, g["params"], strict=True)):
        for name in LayerParams._fields:
            a, b = getattr(got, name), want[name]
            assert (a is None) == (b is None), (k, name)
            if a is None:
                continue
            if name == "cell_params":
                for j, (aj, bj) in enumerate(zip(a, b, strict=True)):
                    yield f"cell_params[{k}][{j}]", aj, bj
            else:
                yield f"{name}[{k}]", a, b


# ---- the kernels against the reference ---------------------------------------------------------


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_kernels_against_reference(kind: str, dtype: Any, lengths: Any, train: bool) -> None:
    spec = _spec(kind, dtype)
    s = make_problem(spec)
    zo = zoneout_masks(spec, T, B, train)
    dm = dropout_masks(spec, kind)
    fw, bw = kernels(spec, s, zo, dm, lengths)
    y, h_n, c_n, g = reference(spec, s, zo, dm, lengths)
    k = _factor(spec.cell, dtype)
    assert_close(fw.y, y, dtype, "y", k)
    assert_close(fw.h_n, h_n, dtype, "h_n", k)
    if spec.has_cell_state:
        assert_close(fw.c_n, c_n, dtype, "c_n", k)
    for name, a, b in _grad_pairs(bw, g):
        assert a.dtype == dtype, name
        assert_close(a, b, dtype, name, k)


@pytest.mark.parametrize("kind", ["lstm", "gru_L2_dropout", "lnlstm_bi_L2"])
def test_zoneout_changes_the_result(kind: str) -> None:
    """The masks are not ignored: the reference without them differs."""
    spec = _spec(kind)
    s = make_problem(spec)
    fw, _ = kernels(spec, s, zoneout_masks(spec, T, B, True), dropout_masks(spec, kind), None)
    y0 = reference(spec, s, None, dropout_masks(spec, kind), None)[0]
    assert np.abs(fw.y - y0).max() > 1e-3


# ---- finite differences -------------------------------------------------------------------------

FD_KINDS = ["lstm_proj_bi_L2_dropout", "lnlstm_reverse", "gru_L2_dropout", "lngru_bi_L2",
            "rnn_tanh_bi", "lstm_peephole_h_only"]  # fmt: skip


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", FD_KINDS)
def test_kernel_gradients_match_finite_differences(kind: str, train: bool) -> None:
    """Every element of every array: float64 central differences of the kernels' forward with
    the same masks (variable lengths)."""
    spec = _spec(kind)
    Tn, Bn = 4, 3
    lengths = np.array([4, 2, 3])
    s = make_problem(spec, seed=5, Tn=Tn, Bn=Bn)
    zo = zoneout_masks(spec, Tn, Bn, train)
    dm = dropout_masks(spec, kind, Tn, Bn)
    _, bw = kernels(spec, s, zo, dm, lengths)

    def f() -> float:
        r = F.run_forward(
            spec, s["x"], s["params"], s["h0"], s["c0"], lengths=lengths, dropout_masks=dm,
            zoneout_masks=zo, training=False,
        )  # fmt: skip
        return contracted_loss(r.y, r.h_n, r.c_n, s["dy"], s["dh"], s["dc"])

    arrays = [("x", s["x"], bw.dx), ("h0", s["h0"], bw.dh0)]
    if s["c0"] is not None:
        arrays.append(("c0", s["c0"], bw.dc0))
    for k, (p, g) in enumerate(zip(s["params"], bw.grads, strict=True)):
        for name in LayerParams._fields[:5]:
            if getattr(p, name) is not None:
                arrays.append((f"{name}[{k}]", getattr(p, name), getattr(g, name)))
        for j, (pj, gj) in enumerate(zip(p.cell_params or (), g.cell_params or (), strict=True)):
            arrays.append((f"cell_params[{k}][{j}]", pj, gj))
    for name, a, g in arrays:
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            num[idx] = central_difference(f, a, idx, 1e-6)
        assert_close(g, num, what=name, rtol=1e-6)


# ---- properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm_proj_bi_L2_dropout", "gru_L2_dropout", "lngru_bi_L2"])
def test_zero_masks_are_no_zoneout_bit_for_bit(kind: str) -> None:
    spec = _spec(kind, np.float32)
    s = make_problem(spec)
    dm = dropout_masks(spec, kind)
    zeros = tuple(None if m is None else np.zeros_like(m) for m in zoneout_masks(spec, T, B, True))
    a_fw, a_bw = kernels(spec, s, zeros, dm, LENGTHS)
    b_fw, b_bw = kernels(spec, s, None, dm, LENGTHS)
    for a, b in [(a_fw.y, b_fw.y), (a_fw.h_n, b_fw.h_n), (a_bw.dx, b_bw.dx), (a_bw.dh0, b_bw.dh0)]:
        assert np.array_equal(a, b)
    for ga, gb in zip(a_bw.grads, b_bw.grads, strict=True):
        assert np.array_equal(ga.weight_hh, gb.weight_hh)
        assert np.array_equal(ga.weight_ih, gb.weight_ih)


def test_ones_keep_the_initial_state() -> None:
    """m = 1 everywhere: the state never moves, every output is h0 (running steps)."""
    spec = _spec("lstm")
    s = make_problem(spec)
    ones = tuple(np.ones(spec.zoneout_shape(T, B, k)) for k in "hc")
    fw = F.run_forward(spec, s["x"], s["params"], s["h0"], s["c0"], zoneout_masks=ones)
    assert np.array_equal(fw.h_n, s["h0"]) and np.array_equal(fw.c_n, s["c0"])
    assert np.array_equal(fw.y, np.broadcast_to(s["h0"][0], fw.y.shape))


def test_eval_is_the_expectation_formula() -> None:
    """A one-layer GRU in eval mode: h_t = p*h_{t-1} + (1 - p)*gru(x_t, h_{t-1}), written out."""
    layer = fastrnn.GRU(I, H, zoneout=P_H, dtype=np.float64, seed=0).eval()
    x = np.random.default_rng(1).standard_normal((T, B, I))
    y, h_n = layer(x)
    sd = layer.state_dict()
    p = {k: sd[f"{n}_l0"] for k, n in [("w_ih", "weight_ih"), ("w_hh", "weight_hh"),
                                        ("b_ih", "bias_ih"), ("b_hh", "bias_hh")]}  # fmt: skip
    h = np.zeros((B, H))
    for t in range(T):
        h = P_H * h + (1 - P_H) * R.gru_step(x[t], h, p, reset_after=True)[0]
        assert_close(y[t], h, np.float64, f"y[{t}]")
    assert_close(h_n[0], h, np.float64, "h_n")


@pytest.mark.parametrize("factory", [
    lambda **kw: fastrnn.LSTM(I, H, 2, bidirectional=True, proj_size=2, dropout=0.5, **kw),
    lambda **kw: fastrnn.LayerNormLSTM(I, H, 2, dropout=0.5, **kw),
], ids=["lstm", "lnlstm"])  # fmt: skip
def test_layer_eval_passes_p(factory: Any) -> None:
    layer = factory(zoneout=P_H, zoneout_cell=P_C, dtype=np.float64, seed=0).eval()
    x = np.random.default_rng(1).standard_normal((T, B, I))
    y, (h_n, c_n) = layer(x, lengths=LENGTHS)
    spec = layer.spec
    zo = (np.full(spec.zoneout_shape(T, B), P_H), np.full(spec.zoneout_shape(T, B, "c"), P_C))
    r = F.run_forward(spec, x, layer._entries(), lengths=LENGTHS, zoneout_masks=zo, training=False)
    assert np.array_equal(y, r.y) and np.array_equal(h_n, r.h_n) and np.array_equal(c_n, r.c_n)


LAYERS = {
    "lstm": lambda **kw: fastrnn.LSTM(I, H, 2, bidirectional=True, dropout=0.5, **kw),
    "lstm_proj": lambda **kw: fastrnn.LSTM(I, H, proj_size=2, **kw),
    "lnlstm": lambda **kw: fastrnn.LayerNormLSTM(I, H, 2, **kw),
    "gru": lambda **kw: fastrnn.GRU(I, H, 2, dropout=0.5, **kw),
    "lngru": lambda **kw: fastrnn.LayerNormGRU(I, H, bidirectional=True, **kw),
    "rnn": lambda **kw: fastrnn.RNN(I, H, nonlinearity="relu", **kw),
}
CELL_ZONEOUT = {"lstm", "lstm_proj", "lnlstm"}


def _zo(kind: str) -> dict[str, float]:
    return {"zoneout": P_H, **({"zoneout_cell": P_C} if kind in CELL_ZONEOUT else {})}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_training_against_reference(kind: str, dtype: Any) -> None:
    """The layer's draws are 0/1 at the rate p, and its forward and backward are the
    reference's with them (batch_first, lengths)."""
    layer = LAYERS[kind](**_zo(kind), dtype=dtype, seed=3, batch_first=True)
    rng = np.random.default_rng(2)
    Bn, Tn = 16, 12
    x = rng.standard_normal((Bn, Tn, I)).astype(dtype)
    lengths = rng.integers(0, Tn + 1, Bn)
    y, _ = layer(x, lengths=lengths)
    saved = layer._saved
    assert saved is not None and saved.zoneout is not None
    zh, zc = saved.zoneout
    assert set(np.unique(zh)) == {0, 1} and abs(zh.mean() - P_H) < 0.05
    if kind in CELL_ZONEOUT:
        assert zc is not None and set(np.unique(zc)) == {0, 1} and abs(zc.mean() - P_C) < 0.05
        assert not np.array_equal(
            zh[..., : min(zh.shape[-1], zc.shape[-1])], zc[..., : zh.shape[-1]]
        )
    else:
        assert zc is None
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, _ = layer.backward(dy)
    spec = layer.spec
    # the dropout masks of the layer's generator: redraw them from a layer of the same seed
    twin = LAYERS[kind](**_zo(kind), dtype=dtype, seed=3, batch_first=True)
    dm = twin._dropout_masks(Tn, Bn)
    ry, _, _, cache = R.stack_forward(
        spec.cell, as_f64(x.transpose(1, 0, 2)), [as_f64(p) for p in layer._entries()],
        num_layers=spec.num_layers, bidirectional=spec.bidirectional, lengths=lengths,
        dropout_masks=as_f64(dm), zoneout_masks=as_f64(saved.zoneout),
    )  # fmt: skip
    k = _factor(spec.cell, dtype)
    assert_close(y.transpose(1, 0, 2), ry, dtype, "y", k)
    g = R.stack_backward(cache, as_f64(dy.transpose(1, 0, 2)))
    assert_close(dx.transpose(1, 0, 2), g["dx"], dtype, "dx", k)
    for e in range(spec.num_entries):  # the products' gradients of every layer and direction
        names = spec.entry_names(e)
        for n in ("weight_ih", "weight_hh"):
            got = layer.grads[getattr(names, n)]
            assert_close(got, g["params"][e][n], dtype, getattr(names, n), k)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_training_draws_reproducible_and_fresh(kind: str) -> None:
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    a = LAYERS[kind](**_zo(kind), seed=11)
    b = LAYERS[kind](**_zo(kind), seed=11)
    ya1, ya2 = a(x)[0], a(x)[0]
    yb1, yb2 = b(x)[0], b(x)[0]
    assert np.array_equal(ya1, yb1) and np.array_equal(ya2, yb2)  # the seed's
    assert not np.array_equal(ya1, ya2)  # fresh masks at each call
    dxa, _ = a.backward(np.ones_like(ya2))
    dxb, _ = b.backward(np.ones_like(yb2))
    assert np.array_equal(dxa, dxb)
    for name in a.grads:
        assert np.array_equal(a.grads[name], b.grads[name]), name


@pytest.mark.parametrize("kind", list(LAYERS))
def test_zoneout_leaves_the_seeds_weights_and_dropout(kind: str) -> None:
    """The zoneout draws come from a generator of their own: a seed's initial weights and
    dropout masks are those of the layer without zoneout; p = 0 is no zoneout, bit for bit."""
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    with_zo = LAYERS[kind](**_zo(kind), seed=4)
    zero = LAYERS[kind](zoneout=0.0, seed=4)
    plain = LAYERS[kind](seed=4)
    for name, v in plain.state_dict().items():
        assert np.array_equal(v, with_zo.state_dict()[name]), name
    masks = [layer._dropout_masks(T, B) for layer in (plain, with_zo, zero)]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    for mode in ("train", "eval"):
        getattr(zero, mode)()
        getattr(plain, mode)()
        y0, _ = zero(x)
        y1, _ = plain(x)
        assert np.array_equal(y0, y1), mode
        if mode == "train":
            d0 = zero.backward(np.ones_like(y0))[0]
            d1 = plain.backward(np.ones_like(y1))[0]
            assert np.array_equal(d0, d1)


def test_threads_bit_identical() -> None:
    n = fastrnn.get_num_threads()
    spec = StackSpec("lstm", 16, 64, 2, True, True, 0, np.float32)
    s = make_problem_sized(spec)
    zo = (
        (np.random.default_rng(0).random(spec.zoneout_shape(12, 32)) < 0.3).astype(np.float32),
        (np.random.default_rng(1).random(spec.zoneout_shape(12, 32, "c")) < 0.3).astype(np.float32),
    )
    lengths = np.random.default_rng(2).integers(0, 13, 32)
    out = []
    try:
        for threads in (1, 2, 3):
            fastrnn.set_num_threads(threads)
            fw = F.run_forward(spec, s["x"], s["params"], lengths=lengths, zoneout_masks=zo)
            bw = F.run_backward(spec, s["x"], s["params"], fw.workspace, s["dy"], lengths=lengths,
                                zoneout_masks=zo)  # fmt: skip
            out.append(b"".join(a.tobytes() for a in (fw.y, fw.h_n, fw.c_n, bw.dx, bw.dh0,
                                                       *spec.flatten(bw.grads))))  # fmt: skip
    finally:
        fastrnn.set_num_threads(n)
    assert out[0] == out[1] == out[2]


def make_problem_sized(spec: StackSpec) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    flat = [rng.uniform(-0.2, 0.2, s).astype(np.float32) for s in spec.param_shapes().values()]
    return {
        "params": spec.entries(flat),
        "x": rng.standard_normal((12, 32, spec.input_size)).astype(np.float32),
        "dy": rng.standard_normal((12, 32, spec.output_size)).astype(np.float32),
    }


# ---- the layers' attributes --------------------------------------------------------------------


def test_attributes_repr_pickle_from_spec() -> None:
    layer = fastrnn.LSTM(I, H, 2, dropout=0.5, zoneout=0.1, zoneout_cell=0.25, seed=0)
    assert (layer.zoneout, layer.zoneout_cell) == (0.1, 0.25)
    assert repr(layer) == "LSTM(3, 4, num_layers=2, dropout=0.5, zoneout=0.1, zoneout_cell=0.25)"
    assert repr(fastrnn.GRU(I, H, zoneout=0.2)) == "GRU(3, 4, zoneout=0.2)"
    assert repr(fastrnn.LSTM(I, H)) == "LSTM(3, 4)"
    assert fastrnn.GRU(I, H).zoneout == 0.0 and fastrnn.LSTM(I, H).zoneout_cell == 0.0
    copy = pickle.loads(pickle.dumps(layer))
    assert (copy.zoneout, copy.zoneout_cell) == (0.1, 0.25)
    assert list(layer.state_dict()) == list(fastrnn.LSTM(I, H, 2).state_dict())
    made = from_spec(layer.spec, zoneout=0.1, zoneout_cell=0.25)
    assert (type(made), made.zoneout, made.zoneout_cell) == (fastrnn.LSTM, 0.1, 0.25)
    assert from_spec(fastrnn.GRU(I, H).spec, zoneout=0.3).zoneout == 0.3
    # unbatched input
    y, _ = fastrnn.LSTM(I, H, zoneout=0.5, zoneout_cell=0.5, seed=0)(np.ones((T, I), np.float32))
    assert y.shape == (T, H)


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan"), "0.1", True, None])
@pytest.mark.parametrize("name", ["zoneout", "zoneout_cell"])
def test_bad_probability(name: str, p: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: "):
        fastrnn.LSTM(I, H, **{name: p})


def test_zoneout_cell_only_for_lstm_and_lnlstm() -> None:
    with pytest.raises(ValueError, match=r"zoneout_cell: only lstm and lnlstm.*lstm_peephole"):
        fastrnn.LSTM(I, H, peephole=True, zoneout_cell=0.1)
    fastrnn.LSTM(I, H, peephole=True, zoneout=0.1)  # h's zoneout is fine
    with pytest.raises(TypeError, match="zoneout_cell"):
        fastrnn.GRU(I, H, zoneout_cell=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"zoneout_cell: only lstm and lnlstm.*gru"):
        from_spec(fastrnn.GRU(I, H).spec, zoneout_cell=0.1)
    with pytest.raises(ValueError, match=r"zoneout_cell: .*lngru"):
        StackSpec("lngru", I, H).check_zoneout("zoneout_cell", 0.1, "c")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_zoneout_cell_rule_is_the_cores(cell: str) -> None:
    """CellInfo.zoneout_cell states the core's has_zoneout_cell, and the core refuses a zoneout
    of c for the other cells even past the spec's check."""
    core_cell = getattr(F._core.Cell, cell)
    assert CELLS[cell].zoneout_cell == F._core.has_zoneout_cell(core_cell)
    if CELLS[cell].zoneout_cell:
        return
    spec = StackSpec(cell, I, H, dtype=np.float32)
    x = np.zeros((T, B, I), np.float32)
    params = spec.check_params(
        spec.entries([np.zeros(v, np.float32) for v in spec.param_shapes().values()])
    )
    zh = np.zeros(spec.zoneout_shape(T, B), np.float32)
    zc = np.zeros((1, T, B, H), np.float32)

    def core(zo: tuple[Any, Any]) -> Any:  # past the spec's check_zoneout_masks
        return F._forward(spec, x, params, None, None, None, None, True, F._COMPUTE_EXACT, zo)

    with pytest.raises(ValueError, match=rf"^zoneout_c: only lstm and lnlstm .*not {cell}$"):
        core((zh, zc))
    core((zh, None))  # h's zoneout is fine


def test_mask_errors() -> None:
    spec = _spec("lstm", np.float32)
    s = make_problem(spec)
    zh, zc = zoneout_masks(spec, T, B, True)

    def run(zo: Any, sp: StackSpec = spec) -> Any:
        return F.run_forward(sp, s["x"], s["params"], zoneout_masks=zo)

    with pytest.raises(TypeError, match=r"zoneout_masks: expected a pair"):
        run(zh)
    with pytest.raises(ValueError, match=r"zoneout_masks\[0\]: expected shape \(1, 5, 5, 4\)"):
        run((zh[:, :-1], zc))
    with pytest.raises(ValueError, match=r"zoneout_masks\[1\]: expected shape"):
        run((zh, zc[..., :-1]))
    with pytest.raises(TypeError, match=r"zoneout_masks\[0\]: expected dtype float32"):
        run((zh.astype(np.float64), zc))
    peep = StackSpec("lstm_peephole", I, H, dtype=np.float32)
    with pytest.raises(ValueError, match=r"zoneout_masks\[1\]: only lstm and lnlstm"):
        F.run_forward(peep, s["x"], peep.entries([np.zeros(v, np.float32) for v in
                      peep.param_shapes().values()]), zoneout_masks=(zh, zc))  # fmt: skip
    gru = StackSpec("gru", I, H, dtype=np.float32)
    with pytest.raises(ValueError, match=r"zoneout_masks\[1\]: .*not gru"):
        gru.check_zoneout_masks((None, zc), T, B)


def test_backward_needs_the_forwards_masks() -> None:
    spec = _spec("gru_L2_dropout")
    s = make_problem(spec)
    zo = zoneout_masks(spec, T, B, True)
    fw = F.run_forward(spec, s["x"], s["params"], zoneout_masks=zo)
    with pytest.raises(ValueError, match="zoneout"):
        F.run_backward(spec, s["x"], s["params"], fw.workspace, s["dy"])
    fw = F.run_forward(spec, s["x"], s["params"])
    with pytest.raises(ValueError, match="zoneout"):
        F.run_backward(spec, s["x"], s["params"], fw.workspace, s["dy"], zoneout_masks=zo)
    # the stack API passes them too
    p = list(s["params"])
    fw = F.stack_forward("gru", s["x"], p, num_layers=2, zoneout_masks=zo)
    bw = F.stack_backward("gru", s["x"], p, fw.workspace, s["dy"], num_layers=2, zoneout_masks=zo)
    assert bw.dx.shape == s["x"].shape


@pytest.mark.parametrize(
    ("cls", "cell", "kw"),
    [
        (fastrnn.LSTM, "lstm", {"zoneout": 0.3, "zoneout_cell": 0.2}),
        (fastrnn.GRU, "gru", {"zoneout": 0.3}),
        (fastrnn.LayerNormLSTM, "lnlstm", {"zoneout": 0.2, "zoneout_cell": 0.4}),
    ],
    ids=["lstm", "gru", "lnlstm"],
)
def test_int8_layer_keeps_zoneout(cls: Any, cell: str, kw: dict[str, Any]) -> None:
    """quantize_dynamic of a layer with zoneout: the int8 layer runs inference's expectation
    (multipliers p), as the reference fed the same int8 weights and p-filled masks; the float
    layer in eval is within int8's error of it, and without zoneout they differ; dequantize
    keeps the probabilities."""
    layer = cls(I, 16, 2, bidirectional=True, seed=0, **kw).eval()
    q = fastrnn.quantize_dynamic(layer)
    assert (q.zoneout, q.zoneout_cell) == (layer.zoneout, layer.zoneout_cell)
    assert f"zoneout={kw['zoneout']}" in repr(q)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = np.array([5, 2, 4, 0, 3])
    y, state = q(x, lengths=lengths)
    masks = tuple(
        None if not pz else np.full(q.spec.zoneout_shape(T, B, kind), pz, np.float32)
        for kind, pz in (("h", layer.zoneout), ("c", layer.zoneout_cell))
    )
    y_ref, h_ref, c_ref, _ = R.stack_forward(
        cell,
        x,
        int8_reference_entries(q),
        num_layers=2,
        bidirectional=True,
        lengths=lengths,
        zoneout_masks=masks,
    )
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=2e-5)
    h_n = state[0] if isinstance(state, tuple) else state
    np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=2e-5)
    if isinstance(state, tuple):
        np.testing.assert_allclose(state[1], c_ref, rtol=0, atol=2e-5)
    y_float, _ = layer(x, lengths=lengths)
    y_plain, _ = fastrnn.quantize_dynamic(from_spec(layer.spec, seed=0))(x, lengths=lengths)
    # int8's own error is well below zoneout's effect
    assert float(np.abs(y - y_float).max()) < 0.1 * float(np.abs(y_plain - y).max())
    back = q.dequantize()
    assert (back.zoneout, back.zoneout_cell) == (layer.zoneout, layer.zoneout_cell)
    q_none = fastrnn.quantize_dynamic(fastrnn.GRU(I, H))
    assert (q_none.zoneout, q_none.zoneout_cell) == (0.0, 0.0) and "zoneout" not in repr(q_none)


# ---- the training kit --------------------------------------------------------------------------


def _model(**kw: Any) -> Any:
    from fastrnn.training import SequenceModel

    return SequenceModel("lstm", 3, 8, 2, num_layers=2, seed=4, **kw)


def test_sequence_model_trains_with_zoneout(tmp_path: Any) -> None:
    """SequenceModel(zoneout=, zoneout_cell=): its stack zones out (the config keeps the
    probabilities), training steps are reproducible from the seed and differ from the model's
    without zoneout; eval is deterministic; save/load, a file written before zoneout existed and
    quantize_dynamic keep what they should."""
    from fastrnn.training import SequenceModel, optim

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    target = rng.standard_normal((6, 4, 2)).astype(np.float32)

    def losses(m: Any) -> list[float]:
        opt = optim.Adam(lr=1e-2)
        return [m.train_step(x, target, opt).loss for _ in range(3)]

    m = _model(zoneout=0.3, zoneout_cell=0.2)
    assert (m.config["zoneout"], m.config["zoneout_cell"]) == (0.3, 0.2)
    assert (m.rnn.zoneout, m.rnn.zoneout_cell) == (0.3, 0.2)
    zoned = losses(m)
    assert zoned == losses(_model(zoneout=0.3, zoneout_cell=0.2))  # reproducible
    assert zoned != losses(_model())
    m.eval()
    y1, _ = m.forward(x)
    y2, _ = m.forward(x)
    np.testing.assert_array_equal(y1, y2)
    m.save(tmp_path / "m.npz")
    back, _, _ = SequenceModel.load(tmp_path / "m.npz")
    assert back.config == m.config and back.rnn.zoneout_cell == 0.2
    np.testing.assert_array_equal(back.eval().forward(x)[0], y1)
    q = m.quantize_dynamic()
    assert (q.rnn.zoneout, q.rnn.zoneout_cell) == (0.3, 0.2)
    assert float(np.abs(q.forward(x)[0] - y1).max()) < 0.05
    with pytest.raises(ValueError, match=r"^zoneout_cell: only lstm and lnlstm .* not gru"):
        SequenceModel("gru", 3, 8, 2, zoneout_cell=0.1)
    with pytest.raises(ValueError, match=r"^zoneout: expected a number in \[0, 1\)"):
        SequenceModel("gru", 3, 8, 2, zoneout=1.0)


def test_sequence_model_file_without_zoneout_loads(tmp_path: Any) -> None:
    """A SequenceModel file written before zoneout existed (no such config keys) loads as a
    model without zoneout; a bad zoneout in a file is named."""
    from fastrnn.training import SequenceModel

    m = _model()
    m.save(tmp_path / "new.npz")

    def rewrite(dst: str, **config: Any) -> Any:
        return rewrite_config(tmp_path / "new.npz", tmp_path / dst, **config)

    back, _, _ = SequenceModel.load(rewrite("old.npz", zoneout=None, zoneout_cell=None))
    assert back.config == m.config and (back.rnn.zoneout, back.rnn.zoneout_cell) == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"zoneout: expected a number in \[0, 1\)"):
        SequenceModel.load(rewrite("bad.npz", zoneout=2.0))
