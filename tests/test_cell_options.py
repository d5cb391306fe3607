"""ONNX's stack options and its LSTM with peepholes: ``reverse``, ``clip``, ``input_forget`` and
the cell ``lstm_peephole`` (``weight_peephole``).

The kernels against the NumPy reference (outputs, final states and every gradient, the peepholes'
too; float32 and float64; full and variable lengths, one and two layers, one and two directions,
projections, no bias), the kernels and the reference against float64 central differences (with
no pre-activation near the clip bound, checked), properties that need no oracle (reverse is
the forward of the flipped sequence and a bidirectional layer's second direction; input_forget's
unused f block gets zero gradients), the layers, the spec's rules and the errors. PyTorch has
none of these; ONNX Runtime's parity is test_onnx's.
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
from fastrnn.spec import CELLS, LayerParams, StackSpec
from fastrnn.training import init
from helpers import (
    as_f64,
    assert_close,
    central_difference,
    contracted_loss,
    int8_reference_entries,
)

T, B, I, H = 5, 5, 3, 6
LENGTHS = np.array([2, 5, 0, 3, 5])  # unsorted, zero and full lengths
CLIP = 0.5  # pre-activations are of order 1: many clamp, many do not
# the finite differences' clip: on their problems (seed 5) no pre-activation of any kind comes
# within 1e-4 of it (asserted: 0.5 has one at 4e-5)
FD_CLIP = 0.6

# id: (cell, proj_size, options); every cell with clip, the LSTMs with input_forget, peepholes
# alone and with everything
KINDS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "peephole": ("lstm_peephole", 0, {}),
    "peephole_proj": ("lstm_peephole", 4, {}),
    "peephole_clip": ("lstm_peephole", 0, {"clip": CLIP}),
    "peephole_input_forget": ("lstm_peephole", 0, {"input_forget": True}),
    "peephole_proj_clip_input_forget": ("lstm_peephole", 4, {"clip": CLIP, "input_forget": True}),
    "lstm_clip": ("lstm", 0, {"clip": CLIP}),
    "lstm_proj_clip": ("lstm", 4, {"clip": CLIP}),
    "lstm_input_forget": ("lstm", 0, {"input_forget": True}),
    "gru_clip": ("gru", 0, {"clip": CLIP}),
    "gru_reset_before_clip": ("gru_reset_before", 0, {"clip": CLIP}),
    "rnn_tanh_clip": ("rnn_tanh", 0, {"clip": CLIP}),
    "rnn_relu_clip": ("rnn_relu", 0, {"clip": CLIP}),
}
# reverse-only stacks (one direction): every cell
REVERSE_KINDS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "lstm_reverse": ("lstm", 0, {"reverse": True}),
    "peephole_proj_reverse_clip": ("lstm_peephole", 4, {"reverse": True, "clip": CLIP}),
    "lstm_reverse_input_forget": ("lstm", 0, {"reverse": True, "input_forget": True}),
    "gru_reverse": ("gru", 0, {"reverse": True}),
    "gru_reset_before_reverse_clip": ("gru_reset_before", 0, {"reverse": True, "clip": CLIP}),
    "rnn_tanh_reverse": ("rnn_tanh", 0, {"reverse": True}),
    "rnn_relu_reverse_clip": ("rnn_relu", 0, {"reverse": True, "clip": CLIP}),
}
ALL_KINDS = {**KINDS, **REVERSE_KINDS}


def _cases() -> Iterator[Any]:
    """(kind, L, D): two directions but with reverse."""
    for kind, (_, _, opts) in ALL_KINDS.items():
        for L in (1, 2):
            for D in (1,) if opts.get("reverse") else (1, 2):
                yield pytest.param(kind, L, D, id=f"{kind}-L{L}-{'bi' if D == 2 else 'uni'}")


def make_stack(
    cell: str, L: int, D: int, P: int, dtype: Any, bias: bool = True, seed: int = 0
) -> dict[str, Any]:
    """A random stack as stack_forward takes it (LayerParams, lstm_peephole's with its
    weight_peephole), its inputs, states and output gradients."""
    rng = np.random.default_rng(seed)
    spec = StackSpec(cell, I, H, L, D == 2, bias, P)
    k = 1 / np.sqrt(H)
    flat = [rng.uniform(-k, k, s).astype(dtype) for s in spec.param_shapes().values()]
    lstm, Hs = spec.has_cell_state, spec.state_size
    return {
        "params": spec.entries(flat),
        "x": rng.standard_normal((T, B, I)).astype(dtype),
        "h0": rng.uniform(-1, 1, (L * D, B, Hs)).astype(dtype),
        "c0": rng.uniform(-1, 1, (L * D, B, H)).astype(dtype) if lstm else None,
        "dy": rng.standard_normal((T, B, D * Hs)).astype(dtype),
        "dh": rng.standard_normal((L * D, B, Hs)).astype(dtype),
        "dc": rng.standard_normal((L * D, B, H)).astype(dtype) if lstm else None,
    }


def _kernels(cell: str, s: dict[str, Any], opts: dict[str, Any]) -> tuple[Any, Any]:
    fw = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], **opts)
    bw = F.stack_backward(
        cell, s["x"], s["params"], fw.workspace, s["dy"], s["dh"], s["dc"], **opts
    )
    return fw, bw


def _reference(cell: str, s: dict[str, Any], opts: dict[str, Any]) -> tuple[Any, ...]:
    ropts = {k: v for k, v in opts.items() if k != "proj_size"}
    y, h_n, c_n, cache = R.stack_forward(
        cell,
        as_f64(s["x"]),
        as_f64(s["params"]),
        as_f64(s["h0"]),
        as_f64(s["c0"]),
        **ropts,
    )
    g = R.stack_backward(cache, as_f64(s["dy"]), as_f64(s["dh"]), as_f64(s["dc"]))
    return y, h_n, c_n, g


def _options(kind: str, L: int, D: int, lengths: Any) -> tuple[str, int, dict[str, Any]]:
    cell, P, extra = ALL_KINDS[kind]
    opts = {"num_layers": L, "bidirectional": D == 2, "lengths": lengths, "proj_size": P}
    return cell, P, {**opts, **extra}


def compare(kind: str, L: int, D: int, dtype: Any, lengths: Any, bias: bool = True) -> None:
    cell, P, opts = _options(kind, L, D, lengths)
    s = make_stack(cell, L, D, P, dtype, bias)
    fw, bw = _kernels(cell, s, opts)
    y, h_n, c_n, g = _reference(cell, s, opts)
    assert_close(fw.y, y, dtype, "y")
    assert_close(fw.h_n, h_n, dtype, "h_n")
    assert_close(bw.dx, g["dx"], dtype, "dx")
    assert_close(bw.dh0, g["dh0"], dtype, "dh0")
    if CELLS[cell].has_cell_state:
        assert_close(fw.c_n, c_n, dtype, "c_n")
        assert_close(bw.dc0, g["dc0"], dtype, "dc0")
    else:
        assert fw.c_n is None and bw.dc0 is None
    for k, (got, want) in enumerate(zip(bw.grads, g["params"], strict=True)):
        assert isinstance(got, LayerParams)
        for name in LayerParams._fields:
            a, b = getattr(got, name), want[name]
            assert (a is None) == (b is None), (k, name)
            if name == "cell_params" and a is not None:
                assert len(a) == len(b) == 1, (k, name)
                a, b = a[0], b[0]
            if a is not None:
                assert a.dtype == dtype, (k, name)
                assert_close(a, b, dtype, f"{name}[{k}]")


# ---- the kernels against the reference ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize(("kind", "L", "D"), list(_cases()))
def test_stack_against_reference(kind: str, L: int, D: int, lengths: Any, dtype: Any) -> None:
    compare(kind, L, D, dtype, lengths)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "kind", ["peephole_proj_clip_input_forget", "peephole", "gru_clip", "rnn_relu_reverse_clip"]
)
def test_no_bias_against_reference(kind: str, dtype: Any) -> None:
    D = 1 if ALL_KINDS[kind][2].get("reverse") else 2
    compare(kind, 2, D, dtype, LENGTHS, bias=False)


@pytest.mark.parametrize("kind", ["peephole_proj", "lstm_reverse", "gru_clip"])
def test_dropout_masks_and_inference(kind: str) -> None:
    """Dropout masks between layers reach the reference's; inference (no workspace) gives the
    training outputs."""
    D = 1 if ALL_KINDS[kind][2].get("reverse") else 2
    cell, P, opts = _options(kind, 3, D, LENGTHS)
    s = make_stack(cell, 3, D, P, np.float64)
    rng = np.random.default_rng(9)
    masks = (rng.random((2, T, B, D * (P or H))) > 0.3) / 0.7
    fw = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], dropout_masks=masks, **opts)
    ropts = {k: v for k, v in opts.items() if k != "proj_size"}
    y, _, _, cache = R.stack_forward(
        cell, s["x"], s["params"], s["h0"], s["c0"], dropout_masks=masks, **ropts
    )
    assert_close(fw.y, y, np.float64, "y")
    bw = F.stack_backward(cell, s["x"], s["params"], fw.workspace, s["dy"], s["dh"], s["dc"],
                          **opts)  # fmt: skip
    g = R.stack_backward(cache, s["dy"], s["dh"], s["dc"])
    assert_close(bw.dx, g["dx"], np.float64, "dx")
    inf = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], training=False, **opts)
    no_drop = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], **opts)
    assert inf.workspace is None
    np.testing.assert_array_equal(inf.y, no_drop.y)
    np.testing.assert_array_equal(inf.h_n, no_drop.h_n)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("options", [{}, {"clip": CLIP, "input_forget": True, "reverse": True}])
def test_one_layer_api(options: dict[str, Any], dtype: Any) -> None:
    """functional.forward/backward with cell_params and the options, against the reference."""
    s = make_stack("lstm_peephole", 1, 1, 0, dtype)
    w_ih, w_hh, b_ih, b_hh, _, own = s["params"][0]
    x, h0, c0 = s["x"], s["h0"][0], s["c0"][0]
    fw = F.forward("lstm_peephole", x, w_ih, w_hh, b_ih, b_hh, h0, c0, cell_params=own, **options)
    bw = F.backward("lstm_peephole", x, w_ih, w_hh, b_ih, b_hh, fw.workspace, s["dy"],
                    s["dh"][0], s["dc"][0], cell_params=own, **options)  # fmt: skip
    y, h_n, c_n, cache = R.forward("lstm_peephole", *as_f64((x, w_ih, w_hh, b_ih, b_hh, h0, c0)),
                                   cell_params=as_f64(own), **options)  # fmt: skip
    g = R.backward(cache, *as_f64((s["dy"], s["dh"][0], s["dc"][0])))
    for got, want, name in [(fw.y, y, "y"), (fw.h_n, h_n, "h_n"), (fw.c_n, c_n, "c_n"),
                            (bw.dx, g["dx"], "dx"), (bw.dh0, g["dh0"], "dh0"),
                            (bw.dc0, g["dc0"], "dc0"), (bw.dweight_ih, g["weight_ih"], "w_ih"),
                            (bw.dweight_hh, g["weight_hh"], "w_hh"),
                            (bw.dbias_ih, g["bias_ih"], "b_ih"),
                            (bw.dbias_hh, g["bias_hh"], "b_hh")]:  # fmt: skip
        assert_close(got, want, dtype, name)
    assert bw.dcell_params is not None and len(bw.dcell_params) == 1
    assert_close(bw.dcell_params[0], g["cell_params"][0], dtype, "weight_peephole")
    size = F.workspace_size("lstm_peephole", T, B, I, H, dtype, **options)
    assert fw.workspace is not None and fw.workspace.size == size
    plain = F.backward("lstm", x, w_ih, w_hh, b_ih, b_hh,
                       F.forward("lstm", x, w_ih, w_hh, b_ih, b_hh).workspace)  # fmt: skip
    assert plain.dcell_params is None


def test_workspace_size_of_a_spec_holds_its_options() -> None:
    spec = StackSpec("lstm_peephole", I, H, 2, clip=1.0, input_forget=True, reverse=True)
    s = make_stack("lstm_peephole", 2, 1, 0, np.float32)
    fw = F.run_forward(spec, s["x"], s["params"])
    assert fw.workspace is not None and fw.workspace.size == F.workspace_size(spec, T, B)
    with pytest.raises(TypeError, match="workspace_size: reverse, clip and input_forget go"):
        F.workspace_size(spec, T, B, clip=1.0)


# ---- finite differences ------------------------------------------------------------------------


class _Margin:
    """Records how near the clip bound the pre-activations of a reference run come: the central
    differences below step over no bound (a pre-activation within 1e-4 of it would)."""

    def __init__(self) -> None:
        self.nearest = np.inf
        self.clamped = 0
        self.total = 0

    def clip(self, a: Any, clip: float | None) -> tuple[Any, Any]:
        if clip is not None:
            self.nearest = min(self.nearest, float(np.abs(np.abs(a) - clip).min()))
            self.clamped += int((np.abs(a) > clip).sum())
            self.total += a.size
        return _REF_CLIP(a, clip)


_REF_CLIP = R._clip


def _assert_margin(cell: str, s: dict[str, Any], opts: dict[str, Any], monkeypatch: Any) -> None:
    """The case's pre-activations are all further than 1e-4 from the clip bound, and with a clip
    some clamp and some do not (the test sees both sides)."""
    if opts.get("clip") is None:
        return
    margin = _Margin()
    with monkeypatch.context() as m:
        m.setattr(R, "_clip", margin.clip)
        _reference(cell, s, opts)
    assert margin.nearest > 1e-4, margin.nearest
    assert 0 < margin.clamped < margin.total, (margin.clamped, margin.total)


def _fd_options(kind: str, D: int) -> tuple[str, int, dict[str, Any]]:
    """The finite differences' case of ``kind``: two layers, lengths, :data:`FD_CLIP`."""
    cell, P, opts = _options(kind, 2, D, LENGTHS)
    return cell, P, {**opts, "clip": FD_CLIP} if "clip" in opts else opts


def _loss(cell: str, s: dict[str, Any], opts: dict[str, Any]) -> Any:
    def f() -> float:
        r = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], training=False, **opts)
        return contracted_loss(r.y, r.h_n, r.c_n, s["dy"], s["dh"], s["dc"])

    return f


def _arrays(s: dict[str, Any], grads: Any) -> Iterator[tuple[str, Any, Any]]:
    """(name, array of the problem, its gradient) for x, the states and every parameter."""
    yield "x", s["x"], grads.dx
    yield "h0", s["h0"], grads.dh0
    if s["c0"] is not None:
        yield "c0", s["c0"], grads.dc0
    for k, (p, g) in enumerate(zip(s["params"], grads.grads, strict=True)):
        for name in LayerParams._fields[:5]:
            if getattr(p, name) is not None:
                yield f"{name}[{k}]", getattr(p, name), getattr(g, name)
        if p.cell_params is not None:
            yield f"weight_peephole[{k}]", p.cell_params[0], g.cell_params[0]


@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_kernel_gradients_match_finite_differences(kind: str, monkeypatch: Any) -> None:
    """Every element of every array: float64 central differences of the kernels' forward."""
    D = 1 if ALL_KINDS[kind][2].get("reverse") else 2
    cell, P, opts = _fd_options(kind, D)
    s = make_stack(cell, 2, D, P, np.float64, seed=5)
    _assert_margin(cell, s, opts, monkeypatch)
    _, bw = _kernels(cell, s, opts)
    f = _loss(cell, s, opts)
    for name, a, g in _arrays(s, bw):
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            num[idx] = central_difference(f, a, idx, 1e-6)
        # |g - num| <= 1e-6 * max(1, max |num|)
        assert_close(g, num, what=name, rtol=1e-6)


@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_reference_gradients_match_finite_differences(kind: str, monkeypatch: Any) -> None:
    """The oracle's own backward against central differences of its forward: up to 8 elements
    of every array."""
    D = 1 if ALL_KINDS[kind][2].get("reverse") else 2
    cell, P, opts = _fd_options(kind, D)
    s = make_stack(cell, 2, D, P, np.float64, seed=5)
    _assert_margin(cell, s, opts, monkeypatch)
    ropts = {k: v for k, v in opts.items() if k != "proj_size"}
    cache = R.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], **ropts)[3]
    g = R.stack_backward(cache, s["dy"], s["dh"], s["dc"])

    def f() -> float:
        r = R.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], **ropts)
        return contracted_loss(r[0], r[1], r[2], s["dy"], s["dh"], s["dc"])

    grads = F.StackBackwardResult(
        g["dx"], g["dh0"], g["dc0"], [LayerParams(**e) for e in g["params"]]
    )
    rng = np.random.default_rng(0)
    for name, a, ga in _arrays(s, grads):
        flat = rng.choice(a.size, min(8, a.size), replace=False)
        for i in flat:
            idx = np.unravel_index(i, a.shape)
            num = central_difference(f, a, idx, 1e-6)
            assert_close(ga[idx], num, what=f"{name} {idx}", rtol=1e-6)


# ---- properties --------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", list(CELLS))
def test_reverse_is_the_forward_of_the_flipped_sequence(cell: str) -> None:
    """Full lengths: reverse on x is the forward direction on x[::-1], its outputs flipped back;
    the gradients too."""
    s = make_stack(cell, 2, 1, 0, np.float64, seed=2)
    opts = {"num_layers": 2}
    rev_fw, rev_bw = _kernels(cell, s, {**opts, "reverse": True})
    flipped = {**s, "x": s["x"][::-1].copy(), "dy": s["dy"][::-1].copy()}
    fw, bw = _kernels(cell, flipped, opts)
    assert_close(rev_fw.y, fw.y[::-1], np.float64, "y")
    assert_close(rev_fw.h_n, fw.h_n, np.float64, "h_n")
    assert_close(rev_bw.dx, bw.dx[::-1], np.float64, "dx")
    for a, b in zip(F.StackSpec(cell, I, H, 2).flatten(rev_bw.grads),
                    F.StackSpec(cell, I, H, 2).flatten(bw.grads), strict=True):  # fmt: skip
        assert_close(a, b, np.float64, "grad")


@pytest.mark.parametrize("cell", list(CELLS))
def test_reverse_is_the_second_direction_of_a_bidirectional_layer(cell: str) -> None:
    """With lengths: a reverse-only layer given the _reverse parameters outputs the second half
    of a bidirectional layer's y, each sequence starting at its own last step."""
    s = make_stack(cell, 1, 2, 0, np.float32, seed=3)
    bi = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], bidirectional=True,
                         lengths=LENGTHS)  # fmt: skip
    c0 = None if s["c0"] is None else s["c0"][1:]
    rev = F.stack_forward(cell, s["x"], s["params"][1:], s["h0"][1:], c0, reverse=True,
                          lengths=LENGTHS)  # fmt: skip
    assert_close(rev.y, bi.y[..., H:], np.float32, "y")
    assert_close(rev.h_n, bi.h_n[1:], np.float32, "h_n")


@pytest.mark.parametrize("cell", ["lstm", "lstm_peephole"])
def test_input_forget_leaves_the_forget_block_unused(cell: str) -> None:
    """f = 1 - i: the f block's weights, biases and peephole get exactly zero gradient, and
    changing them changes nothing."""
    s = make_stack(cell, 2, 2, 0, np.float32, seed=4)
    opts = {"num_layers": 2, "bidirectional": True, "lengths": LENGTHS, "input_forget": True}
    fw, bw = _kernels(cell, s, opts)
    rows = StackSpec(cell, I, H).gate_rows("f")
    for g in bw.grads:
        for a in (g.weight_ih, g.weight_hh, g.bias_ih, g.bias_hh):
            assert not a[rows].any()
            assert a.any()
        if g.cell_params is not None:
            assert not g.cell_params[0][H : 2 * H].any() and g.cell_params[0].any()
    changed = []
    for p in s["params"]:
        q = [None if a is None else np.array(a, copy=True) for a in p[:5]]
        for a in q[:4]:
            a[rows] += 1.0
        own = None if p.cell_params is None else (p.cell_params[0].copy(),)
        if own is not None:
            own[0][H : 2 * H] += 1.0
        changed.append(LayerParams(*q, own))
    fw2 = F.stack_forward(cell, s["x"], changed, s["h0"], s["c0"], **opts)
    np.testing.assert_array_equal(fw2.y, fw.y)


def test_clip_bounds_what_the_gates_see() -> None:
    """A huge input saturates every gate to the value of its clipped pre-activation: an RNN's
    output is then tanh(clip) exactly where the pre-activation was above the bound."""
    w = np.ones((H, I)), np.zeros((H, H))
    x = np.full((1, 1, I), 100.0)
    y = F.stack_forward("rnn_tanh", x, [(*w, None, None)], clip=0.25).y
    np.testing.assert_allclose(y, np.tanh(0.25), rtol=1e-15)
    y = F.stack_forward("rnn_relu", -x, [(*w, None, None)], clip=0.25).y
    np.testing.assert_array_equal(y, 0.0)


# ---- other precisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["peephole_proj_clip_input_forget", "gru_reset_before_reverse_clip"]
)
def test_bf16_products_against_the_bf16_reference(kind: str) -> None:
    """compute_dtype bfloat16: the kernels compute the reference's bfloat16 products (to float32
    rounding, far below bfloat16's own error); the peepholes and the clip stay float32."""
    D = 1 if ALL_KINDS[kind][2].get("reverse") else 2
    cell, P, opts = _options(kind, 2, D, LENGTHS)
    s = make_stack(cell, 2, D, P, np.float32, seed=6)
    fw = F.stack_forward(cell, s["x"], s["params"], s["h0"], s["c0"], compute_dtype="bfloat16",
                         **opts)  # fmt: skip
    ropts = {k: v for k, v in opts.items() if k != "proj_size"}
    p64 = as_f64(s["params"])
    want, exact = (
        R.stack_forward(cell, as_f64(s["x"]), p64, as_f64(s["h0"]), as_f64(s["c0"]),
                        compute_dtype=compute, **ropts)[0]
        for compute in ("bfloat16", None)
    )  # fmt: skip
    d = np.abs(fw.y - want)
    bf16_error = float(np.sqrt(np.mean(np.square(want - exact))))
    assert bf16_error > 1e-4  # bfloat16 does round
    assert float(np.median(d)) <= 1e-6 * float(np.abs(want).max())
    assert float(np.sqrt(np.mean(np.square(d)))) <= 0.2 * bf16_error


def test_int8_layer_against_the_reference() -> None:
    """quantize_dynamic of a peephole LSTM with every option: the reference fed the same int8
    weights (the peepholes, like the biases, stay float32)."""
    layer = fastrnn.LSTM(I, 16, 2, proj_size=5, peephole=True, input_forget=True, clip=0.75,
                         seed=0).eval()  # fmt: skip
    q = fastrnn.quantize_dynamic(layer)
    assert isinstance(q, fastrnn.QuantizedLSTM) and q.peephole
    assert q.weight_peephole_l1.dtype == np.float32
    assert "weight_peephole_l0_scale" not in q.param_shapes()
    x = np.random.default_rng(7).standard_normal((T, B, I)).astype(np.float32)
    y, (h_n, c_n) = q(x, lengths=LENGTHS)
    y_ref, h_ref, c_ref, _ = R.stack_forward(
        "lstm_peephole",
        x,
        int8_reference_entries(q),
        num_layers=2,
        lengths=LENGTHS,
        clip=0.75,
        input_forget=True,
    )
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(c_n, c_ref, rtol=0, atol=2e-5)
    assert "peephole=True" in repr(q) and "clip=0.75" in repr(q)
    back = q.dequantize()
    assert back.spec == layer.spec


# ---- the layers --------------------------------------------------------------------------------


def test_peephole_lstm_parameters() -> None:
    layer = fastrnn.LSTM(3, 4, 2, bidirectional=True, proj_size=2, peephole=True, seed=0)
    assert layer.cell == "lstm_peephole" and layer.peephole
    names = list(layer.param_shapes())
    assert names[:6] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "weight_hr_l0", "weight_peephole_l0"]  # fmt: skip
    assert names[11] == "weight_peephole_l0_reverse" and len(names) == 24
    assert layer.param_shapes()["weight_peephole_l1_reverse"] == (12,)
    bound = 1 / np.sqrt(4)
    p = layer.weight_peephole_l1
    assert p.dtype == np.float32 and np.abs(p).max() <= bound and np.abs(p).max() > 0
    assert list(layer.state_dict()) == names
    assert not fastrnn.LSTM(3, 4).peephole


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    ("kind", "factory"),
    [
        ("peephole", lambda **kw: fastrnn.LSTM(I, H, 2, bidirectional=True, proj_size=4,
                                               peephole=True, clip=CLIP, **kw)),
        ("lstm", lambda **kw: fastrnn.LSTM(I, H, 2, reverse=True, input_forget=True, **kw)),
        ("gru", lambda **kw: fastrnn.GRU(I, H, 2, reset_after=False, clip=CLIP, reverse=True,
                                         **kw)),
        ("rnn", lambda **kw: fastrnn.RNN(I, H, 2, nonlinearity="relu", bidirectional=True,
                                         clip=CLIP, **kw)),
    ],
)  # fmt: skip
def test_layer_forward_backward_against_reference(kind: str, factory: Any, dtype: Any) -> None:
    layer = factory(dtype=dtype, seed=1)
    spec = layer.spec
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    y, state = layer(x, lengths=LENGTHS)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, _ = layer.backward(dy)
    params = spec.entries_of(as_f64(dict(layer.named_parameters())))
    y_ref, h_ref, _, cache = R.stack_forward(
        spec.cell, as_f64(x), params, num_layers=spec.num_layers, bidirectional=spec.bidirectional,
        lengths=LENGTHS, reverse=spec.reverse, clip=spec.clip, input_forget=spec.input_forget,
    )  # fmt: skip
    g = R.stack_backward(cache, as_f64(dy))
    assert_close(y, y_ref, dtype, "y")
    assert_close(state[0] if spec.has_cell_state else state, h_ref, dtype, "h_n")
    assert_close(dx, g["dx"], dtype, "dx")
    want = spec.flatten([LayerParams(**e) for e in g["params"]])
    assert list(layer.grads) == list(layer.param_shapes())
    for (name, got), w in zip(layer.grads.items(), want, strict=True):
        assert_close(got, w, dtype, name)


def test_layer_attributes_and_repr() -> None:
    lstm = fastrnn.LSTM(3, 4, peephole=True, input_forget=True, clip=2, reverse=True)
    assert (lstm.reverse, lstm.clip, lstm.input_forget) == (True, 2.0, True)
    assert isinstance(lstm.clip, float)
    assert repr(lstm) == "LSTM(3, 4, peephole=True, reverse=True, clip=2.0, input_forget=True)"
    gru = fastrnn.GRU(3, 4, clip=0.5, reset_after=False)
    assert repr(gru) == "GRU(3, 4, clip=0.5, reset_after=False)"
    assert (gru.reverse, gru.clip, gru.input_forget) == (False, 0.5, False)
    rnn = fastrnn.RNN(3, 4, reverse=True)
    assert repr(rnn) == "RNN(3, 4, reverse=True)" and rnn.clip is None
    assert repr(fastrnn.LSTM(3, 4)) == "LSTM(3, 4)"
    for name, value in (("clip", 1.0), ("reverse", False), ("input_forget", True)):
        with pytest.raises(AttributeError, match=f"{name}: read-only"):
            setattr(lstm, name, value)
    with pytest.raises(AttributeError):
        lstm.peephole = False  # type: ignore[misc]


@pytest.mark.parametrize("cell", [c for c in CELLS if CELLS[c].onnx_options])  # lnlstm: its own
@pytest.mark.parametrize(
    "options", [{}, {"clip": 0.5}, {"reverse": True}, {"num_layers": 2, "bidirectional": True}]
)
def test_from_spec_maps_every_spec_to_its_layer(cell: str, options: dict[str, Any]) -> None:
    more = {"input_forget": True} if CELLS[cell].has_cell_state else {}
    spec = StackSpec(cell, 3, 4, dtype=np.float64, **options, **more)
    layer = fastrnn.layers.from_spec(spec, seed=0)
    assert layer.spec == spec
    assert type(layer).__name__ == {"l": "LSTM", "g": "GRU", "r": "RNN"}[cell[0]]
    assert fastrnn.layers.from_spec(spec.replace(compute_dtype="float64"), seed=0).spec == spec


def test_layer_rules_name_the_argument() -> None:
    with pytest.raises(ValueError, match="reverse: runs the one direction"):
        fastrnn.LSTM(3, 4, bidirectional=True, reverse=True)
    with pytest.raises(TypeError, match="peephole: expected a bool"):
        fastrnn.LSTM(3, 4, peephole="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input_forget: expected a bool"):
        fastrnn.LSTM(3, 4, input_forget=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clip: must be > 0"):
        fastrnn.GRU(3, 4, clip=-1.0)
    with pytest.raises(TypeError, match="clip: expected a real number"):
        fastrnn.RNN(3, 4, clip="1")  # type: ignore[arg-type]
    layer = fastrnn.LSTM(3, 4, peephole=True)
    sd = layer.state_dict()
    with pytest.raises(ValueError, match=r"state_dict\['weight_peephole_l0'\]: expected shape"):
        layer.load_state_dict({**sd, "weight_peephole_l0": np.zeros(4, np.float32)})
    sd.pop("weight_peephole_l0")
    with pytest.raises(ValueError, match=r"missing keys \['weight_peephole_l0'\]"):
        layer.load_state_dict(sd)


def test_init_recurrent_and_forget_bias() -> None:
    layer = fastrnn.LSTM(3, 4, 2, peephole=True, seed=0)
    init.init_recurrent(layer, rng=0)
    assert not layer.weight_peephole_l1.any()  # bias's scheme, zeros by default
    init.init_recurrent(layer, bias="default", forget_bias=1.0, rng=0)
    p = layer.weight_peephole_l0
    assert p.any() and np.abs(p).max() <= 0.5
    assert (layer.bias_ih_l1[4:8] == 1.0).all()
    coupled = fastrnn.LSTM(3, 4, input_forget=True)
    with pytest.raises(ValueError, match="forget_bias: the layer's forget gate is 1 - i"):
        init.set_forget_bias(coupled, 1.0)
    with pytest.raises(ValueError, match="forget_bias: the layer's forget gate is 1 - i"):
        init.init_recurrent(coupled, forget_bias=1.0)


# ---- the spec ----------------------------------------------------------------------------------


def test_spec_fields_equality_hash_replace_cached() -> None:
    a = StackSpec("lstm", 3, 4, clip=1, input_forget=True, reverse=True)
    assert (a.clip, a.input_forget, a.reverse) == (1.0, True, True)
    b = StackSpec("lstm", 3, 4, clip=1.0, input_forget=True, reverse=True)
    assert a == b and hash(a) == hash(b)
    assert pickle.loads(pickle.dumps(a)) == a
    for change in ({"clip": None}, {"clip": 2.0}, {"input_forget": False}, {"reverse": False}):
        c = a.replace(**change)
        assert c != a and all(getattr(c, k) == v for k, v in change.items())
    assert StackSpec.cached("gru", 3, 4, clip=0.5) is StackSpec.cached("gru", 3, 4, clip=0.5)
    assert StackSpec.cached("gru", 3, 4, clip=0.5).clip == 0.5
    assert StackSpec("lstm", 3, 4, 1, False, True, 0, np.float32, None, reverse=True).reverse
    with pytest.raises(TypeError):
        StackSpec("lstm", 3, 4, 1, False, True, 0, np.float32, None, True)  # type: ignore[misc]
    with pytest.raises(ValueError, match="reverse: runs the one direction"):
        a.replace(bidirectional=True)
    s = make_stack("lstm_peephole", 2, 1, 4, np.float32)
    spec = StackSpec.of_params("lstm_peephole", s["params"], np.float32, num_layers=2,
                               proj_size=4, clip=0.5, reverse=True)  # fmt: skip
    assert spec == StackSpec("lstm_peephole", I, H, 2, proj_size=4, clip=0.5, reverse=True)


def test_spec_names_and_shapes_of_the_cells_own_parameters() -> None:
    spec = StackSpec("lstm_peephole", 3, 5, bidirectional=True)
    assert CELLS["lstm_peephole"].params == (("weight_peephole", 3),)
    assert CELLS["lstm"].params == ()
    assert spec.entry_names(1).cell_params == ("weight_peephole_l0_reverse",)
    assert spec.entry_shapes(0).cell_params == ((15,),)
    assert spec.cell_params_size == 15 and StackSpec("gru", 3, 5).cell_params_size == 0
    assert StackSpec("lstm", 3, 5).entry_names(0).cell_params is None
    flat = [np.zeros(s, np.float32) for s in spec.param_shapes().values()]
    entries = spec.entries(flat)
    checked = spec.check_params(entries)
    assert len(checked[0]) == 6 and checked[0][5] is entries[0].cell_params[0]  # not copied
    assert all(a is b for a, b in zip(spec.flatten(entries), flat, strict=True))


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clip", "exc", "match"),
    [
        (-1.0, ValueError, r"clip: must be > 0 \(None for no clipping\), got -1.0"),
        (0, ValueError, "clip: must be > 0"),
        (float("nan"), ValueError, "clip: must be finite, got nan"),
        (float("inf"), ValueError, "clip: must be finite, got inf"),
        ("1", TypeError, "clip: expected a real number, got str"),
        (True, TypeError, "clip: expected a real number, got bool"),
        (np.array([1.0]), TypeError, "clip: expected a real number, got ndarray"),
    ],
)
def test_bad_clip(clip: Any, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        StackSpec("gru", 3, 4, clip=clip)
    s = make_stack("gru", 1, 1, 0, np.float32)
    with pytest.raises(exc, match=match):
        F.stack_forward("gru", s["x"], s["params"], clip=clip)
    with pytest.raises(exc, match=match):
        fastrnn.LSTM(3, 4, clip=clip)


def test_reverse_with_bidirectional_and_input_forget_without_forget_gate() -> None:
    s = make_stack("gru", 1, 2, 0, np.float32)
    with pytest.raises(ValueError, match="reverse: runs the one direction of a unidirectional"):
        F.stack_forward("gru", s["x"], s["params"], bidirectional=True, reverse=True)
    with pytest.raises(TypeError, match="reverse: expected a bool"):
        StackSpec("gru", 3, 4, reverse="yes")
    for cell in ("gru", "gru_reset_before", "rnn_tanh", "rnn_relu"):
        with pytest.raises(ValueError, match=f"input_forget: couples .*; {cell} has no forget"):
            StackSpec(cell, 3, 4, input_forget=True)
    with pytest.raises(ValueError, match="input_forget: couples"):
        F.stack_forward("gru", s["x"], s["params"][:1], input_forget=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'input_forget'"):
        fastrnn.GRU(3, 4, input_forget=True)  # type: ignore[call-arg]


def test_bad_peephole_vectors_name_the_argument() -> None:
    s = make_stack("lstm_peephole", 2, 1, 0, np.float32)
    x, params = s["x"], s["params"]
    opts = {"num_layers": 2}

    def run(k: int, **change: Any) -> None:
        bad = list(params)
        bad[k] = params[k]._replace(**change)
        F.stack_forward("lstm_peephole", x, bad, **opts)

    with pytest.raises(ValueError, match=r"weight_peephole_l1: expected shape \(18,\), got \(6,\)"):
        run(1, cell_params=(np.zeros(6, np.float32),))
    with pytest.raises(TypeError, match=r"weight_peephole_l0: expected dtype float32 .*float64"):
        run(0, cell_params=(np.zeros(18),))
    with pytest.raises(TypeError, match="weight_peephole_l1: required, got None"):
        run(1, cell_params=None)
    with pytest.raises(TypeError, match="weight_peephole_l0: required, got None"):
        run(0, cell_params=(None,))
    with pytest.raises(TypeError, match=r"cell_params: expected a tuple of 1 array\(s\)"):
        run(0, cell_params=np.zeros(18, np.float32))
    with pytest.raises(TypeError, match=r"cell_params: expected a tuple of 1 array\(s\).*got 2"):
        run(0, cell_params=(np.zeros(18, np.float32),) * 2)
    with pytest.raises(TypeError, match="weight_peephole_l0: required, got None"):
        F.stack_forward("lstm_peephole", x, [p[:5] for p in params], **opts)
    with pytest.raises(TypeError, match="weight_peephole_l0: required, got None"):
        F.forward("lstm_peephole", x, *params[0][:4])
    plain = make_stack("lstm", 1, 1, 0, np.float32)["params"]
    with pytest.raises(ValueError, match="cell_params: the lstm cell has no parameters of its"):
        F.stack_forward("lstm", x, [plain[0]._replace(cell_params=(np.zeros(18, np.float32),))])
    strided = np.zeros(36, np.float32)[::2]  # copied, not refused
    ok = F.stack_forward("lstm_peephole", x, [params[0]._replace(cell_params=(strided,))])
    assert ok.y.shape == (T, B, H)


@pytest.mark.parametrize(
    "change", [{"clip": 0.7}, {"clip": None}, {"reverse": False}, {"input_forget": False}]
)
def test_a_backward_with_other_options_than_its_forward_is_refused(change: dict[str, Any]) -> None:
    s = make_stack("lstm_peephole", 1, 1, 0, np.float32)
    opts = {"clip": 0.5, "reverse": True, "input_forget": True}
    fw = F.stack_forward("lstm_peephole", s["x"], s["params"], **opts)
    match = "reverse: the forward" if "reverse" in change else "clip, input_forget: this backward"
    with pytest.raises(ValueError, match=match):
        F.stack_backward("lstm_peephole", s["x"], s["params"], fw.workspace, s["dy"],
                         **{**opts, **change})  # fmt: skip


def test_torch_autograd_function_runs_any_spec() -> None:
    """fastrnn.torch's modules are torch.nn's (no peepholes, no ONNX options), but its autograd
    function takes any spec: torch's gradcheck of a peephole stack with every option."""
    torch = pytest.importorskip("torch")
    from fastrnn.torch import RNNFunction

    spec = StackSpec("lstm_peephole", 3, 4, 2, proj_size=2, dtype=np.float64, clip=FD_CLIP,
                     input_forget=True, reverse=True)  # fmt: skip
    rng = np.random.default_rng(0)
    weights = [torch.tensor(rng.uniform(-0.5, 0.5, s), requires_grad=True)
               for s in spec.param_shapes().values()]  # fmt: skip
    x = torch.tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)

    def f(x: Any, *w: Any) -> Any:
        return RNNFunction.apply(spec, None, x, None, None, None, *w)[:-1]

    assert torch.autograd.gradcheck(f, (x, *weights))


def test_bit_identical_across_thread_counts() -> None:
    """A peephole stack with every option, forward and backward, 1 and 3 threads, at sizes the
    products split into several tiles."""
    spec = StackSpec("lstm_peephole", 40, 72, 2, True, proj_size=24, clip=CLIP, input_forget=True)
    rng = np.random.default_rng(11)
    k = 1 / np.sqrt(72)
    params = spec.entries([rng.uniform(-k, k, sh).astype(np.float32)
                           for sh in spec.param_shapes().values()])  # fmt: skip
    x = rng.standard_normal((6, 37, 40)).astype(np.float32)
    lengths = rng.integers(0, 7, 37)
    dy = rng.standard_normal(spec.output_shape(6, 37)).astype(np.float32)
    before = fastrnn.get_num_threads()
    out = []
    try:
        for n in (1, 3):
            fastrnn.set_num_threads(n)
            fw = F.run_forward(spec, x, params, lengths=lengths)
            assert fw.workspace is not None
            bw = F.run_backward(spec, x, params, fw.workspace, dy, lengths=lengths)
            out.append([fw.y, fw.h_n, fw.c_n, bw.dx, bw.dh0, bw.dc0, *spec.flatten(bw.grads)])
    finally:
        fastrnn.set_num_threads(before)
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)
