"""The layer-normalised GRU, cell ``lngru`` (PyTorch's GRU, reset gate after the recurrent
product, with its two products layer-normalised), and its layer :class:`fastrnn.LayerNormGRU`.

The kernels against the NumPy reference (outputs, final states and every gradient, the two
layer-norm gains' too; float32 and float64; full and variable lengths; one and two layers, one
and two directions, reverse-only; with and without initial states, biases, dropout masks), the
kernels and the reference against float64 central differences, and PyTorch: the cell written
here with ``torch.nn.LayerNorm(3H)`` on ``x W_ih^T`` and on ``h W_hh^T`` (weights the gains, no
bias) and GRU's gates with ``b_ih``, ``b_hh``, the same weights, outputs and every gradient by
torch's autograd equal to 1e-9 in float64. Then threads (bit-identical results), training against
inference, bfloat16 products, int8 inference, the layer, the training kit and the errors. The
problems and comparisons are test_lnlstm.py's (helpers.LayerNormCase).
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.spec import CELLS, LayerParams, StackSpec
from fastrnn.training import init
from helpers import (
    LayerNormCase,
    as_f64,
    assert_close,
    central_difference,
    contracted_loss,
    stack_opts,
)

# The kernels' float32 tolerance against the float64 reference, in units of helpers.RTOL's 1e-5.
# test_lnlstm.py's is 20 (its layer norm of c' grows float32's rounding most); this cell's two
# layer norms of the products stay within helpers' own: on this file's problems (4 seeds, every
# shape, lengths, states and bias) the kernels were off by up to 4.3e-6 of the largest value
# (x86-64-v2; 3.7e-6 under v3 to v4-amx), a 2.3x margin; float64 keeps helpers' 1e-12.
F32_FACTOR = 1.0

CASE = LayerNormCase("lngru", F32_FACTOR)
T, B, I, H = CASE.T, CASE.B, CASE.I, CASE.H
LENGTHS = CASE.LENGTHS
SHAPES = CASE.SHAPES
LN_NAMES = ("layer_norm_weight_ih", "layer_norm_weight_hh")


# ---- the kernels against the reference ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("states", [True, False], ids=["h0", "zero-states"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize(("L", "D", "reverse"), SHAPES, ids=[CASE.shape_id(*s) for s in SHAPES])
def test_stack_against_reference(
    L: int, D: int, reverse: bool, lengths: Any, states: bool, dtype: Any
) -> None:
    s = CASE.make_stack(L, D, dtype, states=states)
    assert s["c0"] is None and s["dc"] is None
    CASE.compare(s, stack_opts(L, D, reverse, lengths), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("L", "D", "reverse"), [(2, 2, False), (2, 1, True)], ids=["bi", "rev"])
def test_no_bias_against_reference(L: int, D: int, reverse: bool, dtype: Any) -> None:
    s = CASE.make_stack(L, D, dtype, bias=False, seed=1)
    assert all(p.bias_ih is None and p.bias_hh is None for p in s["params"])
    CASE.compare(s, stack_opts(L, D, reverse, LENGTHS), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("L", "D"), [(2, 2), (3, 1)], ids=["L2-bi", "L3-uni"])
def test_dropout_masks_against_reference(L: int, D: int, dtype: Any) -> None:
    """Dropout masks between layers: forward and every gradient as the reference's."""
    s = CASE.make_stack(L, D, dtype, seed=2)
    rng = np.random.default_rng(9)
    masks = ((rng.random((L - 1, T, B, D * H)) > 0.3) / 0.7).astype(dtype)
    CASE.compare(s, stack_opts(L, D, False, LENGTHS), dtype, dropout_masks=masks)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "reverse"])
def test_one_layer_api(reverse: bool, dtype: Any) -> None:
    """functional.forward/backward with the two gains as cell_params, against the reference;
    the workspace's size is workspace_size's."""
    s = CASE.make_stack(1, 1, dtype)
    w_ih, w_hh, b_ih, b_hh, _, own = s["params"][0]
    x, h0 = s["x"], s["h0"][0]
    fw = F.forward("lngru", x, w_ih, w_hh, b_ih, b_hh, h0, cell_params=own, reverse=reverse)
    assert fw.c_n is None
    bw = F.backward("lngru", x, w_ih, w_hh, b_ih, b_hh, fw.workspace, s["dy"], s["dh"][0],
                    cell_params=own, reverse=reverse)  # fmt: skip
    assert bw.dc0 is None
    y, h_n, c_n, cache = R.forward("lngru", *as_f64((x, w_ih, w_hh, b_ih, b_hh, h0)),
                                   cell_params=as_f64(own), reverse=reverse)  # fmt: skip
    assert c_n is None
    g = R.backward(cache, *as_f64((s["dy"], s["dh"][0])))
    for got, want, name in [(fw.y, y, "y"), (fw.h_n, h_n, "h_n"), (bw.dx, g["dx"], "dx"),
                            (bw.dh0, g["dh0"], "dh0"), (bw.dweight_ih, g["weight_ih"], "w_ih"),
                            (bw.dweight_hh, g["weight_hh"], "w_hh"),
                            (bw.dbias_ih, g["bias_ih"], "b_ih"),
                            (bw.dbias_hh, g["bias_hh"], "b_hh")]:  # fmt: skip
        CASE.close(got, want, dtype, name)
    assert bw.dcell_params is not None and len(bw.dcell_params) == 2
    for got, want, name in zip(bw.dcell_params, g["cell_params"], LN_NAMES, strict=True):
        CASE.close(got, want, dtype, name)
    size = F.workspace_size("lngru", T, B, I, H, dtype, reverse=reverse)
    assert fw.workspace is not None and fw.workspace.size == size
    assert size > F.workspace_size("gru", T, B, I, H, dtype)  # the normalised values too


# ---- finite differences ------------------------------------------------------------------------


@pytest.mark.parametrize(("D", "reverse"), [(2, False), (1, True)], ids=["bi", "reverse"])
def test_kernel_gradients_match_finite_differences(D: int, reverse: bool) -> None:
    """Every element of every array, two layers with lengths and dropout masks: float64 central
    differences of the kernels' forward."""
    s = CASE.make_stack(2, D, np.float64, seed=5)
    opts = stack_opts(2, D, reverse, LENGTHS)
    masks = (np.random.default_rng(3).random((1, T, B, D * H)) > 0.25) / 0.75
    _, bw = CASE.kernels(s, opts, dropout_masks=masks)
    f = CASE.loss(s, opts, dropout_masks=masks)
    names = []
    for name, a, g in CASE.arrays(s, bw):
        names.append(name)
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            num[idx] = central_difference(f, a, idx, 1e-6)
        assert_close(g, num, what=name, rtol=1e-6)
    assert f"layer_norm_weight_hh[{2 * D - 1}]" in names and "c0" not in names


def test_reference_gradients_match_finite_differences() -> None:
    """The oracle's own backward against central differences of its forward: up to 8 elements
    of every array, two bidirectional layers with lengths."""
    s = CASE.make_stack(2, 2, np.float64, seed=5)
    opts = stack_opts(2, 2, False, LENGTHS)
    _, _, _, g = CASE.reference(s, opts)

    def f() -> float:
        r = R.stack_forward("lngru", s["x"], s["params"], s["h0"], **opts)
        return contracted_loss(r[0], r[1], r[2], s["dy"], s["dh"], None)

    grads = F.StackBackwardResult(g["dx"], g["dh0"], None, [LayerParams(**e) for e in g["params"]])
    rng = np.random.default_rng(0)
    for name, a, ga in CASE.arrays(s, grads):
        for i in rng.choice(a.size, min(8, a.size), replace=False):
            idx = np.unravel_index(i, a.shape)
            assert_close(ga[idx], central_difference(f, a, idx, 1e-6), what=f"{name} {idx}",
                         rtol=1e-6)  # fmt: skip


# ---- PyTorch -----------------------------------------------------------------------------------


def _torch_stack(torch: Any, s: dict[str, Any], L: int, D: int, reverse: bool, lengths: Any,
                 masks: Any) -> Any:  # fmt: skip
    """The stack in torch, float64: one LayerNormGRUCell per layer and direction, written here
    with ``torch.nn.LayerNorm(3H, bias=False)`` on each product (its weight the gain, eps 1e-5)
    and PyTorch's GRU gates (reset after) with ``b_ih`` and ``b_hh``, its parameters as leaves;
    a sequence's state is held past its length (its outputs zero there) and the reverse
    direction starts at its last step, as packed sequences run."""
    nn = torch.nn

    class LayerNormGRUCell(nn.Module):
        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__()
            self.weight_ih = nn.Parameter(torch.zeros(3 * hidden_size, input_size))
            self.weight_hh = nn.Parameter(torch.zeros(3 * hidden_size, hidden_size))
            self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
            self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))
            self.layernorm_i = nn.LayerNorm(3 * hidden_size, bias=False)
            self.layernorm_h = nn.LayerNorm(3 * hidden_size, bias=False)

        def forward(self, x: Any, hx: Any) -> Any:
            gi = self.layernorm_i(torch.mm(x, self.weight_ih.t())) + self.bias_ih
            gh = self.layernorm_h(torch.mm(hx, self.weight_hh.t()))
            i_r, i_z, i_n = gi.chunk(3, 1)
            h_r, h_z, h_n = gh.chunk(3, 1)
            b_r, b_z, b_n = self.bias_hh.chunk(3)
            r = torch.sigmoid(i_r + h_r + b_r)
            z = torch.sigmoid(i_z + h_z + b_z)
            n = torch.tanh(i_n + r * (h_n + b_n))
            return (1 - z) * n + z * hx

    cells = []
    for p in s["params"]:
        cell = LayerNormGRUCell(p.weight_ih.shape[1], H).double()
        g_ih, g_hh = p.cell_params
        zeros = np.zeros(3 * H)
        with torch.no_grad():
            for t, a in [(cell.weight_ih, p.weight_ih), (cell.weight_hh, p.weight_hh),
                         (cell.layernorm_i.weight, g_ih), (cell.layernorm_h.weight, g_hh),
                         (cell.bias_ih, zeros if p.bias_ih is None else p.bias_ih),
                         (cell.bias_hh, zeros if p.bias_hh is None else p.bias_hh)]:  # fmt: skip
                t.copy_(torch.from_numpy(np.asarray(a, np.float64)))
        cells.append(cell)
    assert len(cells) == L * D
    x = torch.tensor(s["x"], dtype=torch.float64, requires_grad=True)
    h0 = torch.tensor(s["h0"], requires_grad=True)
    lens = torch.full((B,), T) if lengths is None else torch.as_tensor(lengths)
    inp, h_n = x, []
    for layer in range(L):
        outs = []
        for d in range(D):
            k = layer * D + d
            h = h0[k]
            ys: list[Any] = [None] * T
            backwards = d == 1 or reverse
            for t in reversed(range(T)) if backwards else range(T):
                run = (lens > t)[:, None]
                h_new = cells[k](inp[t], h)
                h = torch.where(run, h_new, h)
                ys[t] = torch.where(run, h_new, torch.zeros_like(h_new))
            outs.append(torch.stack(ys))
            h_n.append(h)
        inp = torch.cat(outs, dim=-1)
        if masks is not None and layer < L - 1:
            inp = inp * torch.from_numpy(masks[layer])
    y, h_n = inp, torch.stack(h_n)
    loss = (y * torch.from_numpy(s["dy"])).sum() + (h_n * torch.from_numpy(s["dh"])).sum()
    loss.backward()
    return y, h_n, x, h0, cells


TORCH_CASES = [
    pytest.param(1, 1, False, None, False, True, id="L1-uni"),
    pytest.param(2, 2, False, LENGTHS, True, True, id="L2-bi-lengths-dropout"),
    pytest.param(2, 1, True, LENGTHS, False, True, id="L2-reverse-lengths"),
    pytest.param(2, 2, False, None, True, False, id="L2-bi-dropout-no-bias"),
]


@pytest.mark.parametrize(("L", "D", "reverse", "lengths", "dropout", "bias"), TORCH_CASES)
def test_against_torch(L: int, D: int, reverse: bool, lengths: Any, dropout: bool,
                       bias: bool) -> None:  # fmt: skip
    """The kernels against torch's autograd through the cell written with torch.nn.LayerNorm,
    the same float64 weights and initial states: outputs, final states and every gradient to
    1e-9 (layernorm_i's weight is g_ih, layernorm_h's g_hh)."""
    torch = pytest.importorskip("torch")
    s = CASE.make_stack(L, D, np.float64, seed=7, bias=bias)
    masks = None
    if dropout:
        masks = (np.random.default_rng(4).random((L - 1, T, B, D * H)) > 0.3) / 0.7
    fw, bw = CASE.kernels(s, stack_opts(L, D, reverse, lengths), dropout_masks=masks)
    y, h_n, x, h0, cells = _torch_stack(torch, s, L, D, reverse, lengths, masks)
    tol = 1e-9
    for got, want, name in [(fw.y, y, "y"), (fw.h_n, h_n, "h_n"), (bw.dx, x.grad, "dx"),
                            (bw.dh0, h0.grad, "dh0")]:  # fmt: skip
        assert_close(got, want, what=name, rtol=tol)
    assert fw.c_n is None and bw.dc0 is None
    for k, (g, cell) in enumerate(zip(bw.grads, cells, strict=True)):
        g_ih, g_hh = g.cell_params
        pairs = [(g.weight_ih, cell.weight_ih), (g.weight_hh, cell.weight_hh),
                 (g_ih, cell.layernorm_i.weight), (g_hh, cell.layernorm_h.weight)]  # fmt: skip
        if bias:
            pairs += [(g.bias_ih, cell.bias_ih), (g.bias_hh, cell.bias_hh)]
        else:
            assert g.bias_ih is None and g.bias_hh is None
        assert g.weight_hr is None
        for i, (got, want) in enumerate(pairs):
            assert_close(got, want.grad, what=f"entry {k} parameter {i}", rtol=tol)


def test_layer_norm_gains_of_one_without_layer_norms_is_not_gru() -> None:
    """With the gains at 1 the cell still normalises: it is not the plain GRU of the same
    weights (the layer norms do act), yet its outputs stay in (-1, 1) as a GRU's."""
    s = CASE.make_stack(1, 1, np.float64, seed=3)
    p = s["params"][0]
    ones = p._replace(cell_params=tuple(np.ones_like(a) for a in p.cell_params))
    ln = F.stack_forward("lngru", s["x"], [ones], s["h0"], training=False)
    plain = F.stack_forward("gru", s["x"], [p[:5]], s["h0"], training=False)
    assert np.abs(ln.y - plain.y).max() > 1e-2
    assert np.abs(ln.y).max() < 1


def test_torch_autograd_function_runs_an_lngru_spec() -> None:
    """fastrnn.torch's modules are torch.nn's (no layer norms), but its autograd function takes
    any spec: torch's gradcheck of a two-layer bidirectional lngru stack."""
    torch = pytest.importorskip("torch")
    from fastrnn.torch import RNNFunction

    spec = StackSpec("lngru", 3, 4, 2, True, dtype=np.float64)
    rng = np.random.default_rng(0)
    constants = spec.param_constants()
    weights = [torch.tensor(constants.get(n, 0.0) + rng.uniform(-0.5, 0.5, s), requires_grad=True)
               for n, s in spec.param_shapes().items()]  # fmt: skip
    x = torch.tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)

    def f(x: Any, *w: Any) -> Any:
        return RNNFunction.apply(spec, None, x, None, None, None, *w)[:-1]

    assert torch.autograd.gradcheck(f, (x, *weights))


# ---- threads, training and inference -----------------------------------------------------------


def test_bit_identical_across_thread_counts() -> None:
    """Two bidirectional layers with lengths, forward and backward, 1, 2 and 3 threads, at sizes
    whose products split into several tiles and rows into several parts."""
    spec = StackSpec("lngru", 40, 72, 2, True)
    rng = np.random.default_rng(11)
    k = 1 / np.sqrt(72)
    constants = spec.param_constants()
    params = spec.entries([(constants.get(n, 0.0) + rng.uniform(-k, k, sh)).astype(np.float32)
                           for n, sh in spec.param_shapes().items()])  # fmt: skip
    x = rng.standard_normal((6, 37, 40)).astype(np.float32)
    lengths = rng.integers(0, 7, 37)
    dy = rng.standard_normal(spec.output_shape(6, 37)).astype(np.float32)
    before = fastrnn.get_num_threads()
    out = []
    try:
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            fw = F.run_forward(spec, x, params, lengths=lengths)
            assert fw.workspace is not None and fw.c_n is None
            bw = F.run_backward(spec, x, params, fw.workspace, dy, lengths=lengths)
            inf = F.run_forward(spec, x, params, lengths=lengths, training=False)
            out.append([fw.y, fw.h_n, inf.y, inf.h_n, bw.dx, bw.dh0, *spec.flatten(bw.grads)])
    finally:
        fastrnn.set_num_threads(before)
    for a, b, c in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("L", "D", "reverse"), [(2, 2, False), (2, 1, True)], ids=["bi", "rev"])
def test_training_and_inference_outputs_are_bit_identical(
    L: int, D: int, reverse: bool, dtype: Any
) -> None:
    """A training forward (workspace) and an inference one (none) give the same bits; so do
    the layer in train and eval mode (no dropout)."""
    s = CASE.make_stack(L, D, dtype, seed=6)
    opts = stack_opts(L, D, reverse, LENGTHS)
    tr = F.stack_forward("lngru", s["x"], s["params"], s["h0"], **opts)
    inf = F.stack_forward("lngru", s["x"], s["params"], s["h0"], training=False, **opts)
    assert tr.workspace is not None and inf.workspace is None
    for a, b in ((tr.y, inf.y), (tr.h_n, inf.h_n)):
        np.testing.assert_array_equal(a, b)
    layer = fastrnn.LayerNormGRU(I, H, L, bidirectional=D == 2, reverse=reverse, dtype=dtype,
                                 seed=0)  # fmt: skip
    y_train, h_train = layer(s["x"], lengths=LENGTHS)
    y_eval, h_eval = layer.eval()(s["x"], lengths=LENGTHS)
    np.testing.assert_array_equal(y_train, y_eval)
    np.testing.assert_array_equal(h_train, h_eval)


# ---- other precisions --------------------------------------------------------------------------


@pytest.mark.parametrize(("L", "D", "reverse"), [(2, 2, False), (2, 1, True)], ids=["bi", "rev"])
def test_bf16_products_against_the_bf16_reference(L: int, D: int, reverse: bool) -> None:
    """compute_dtype bfloat16: the kernels compute the reference's bfloat16 products (to float32
    rounding, far below bfloat16's own error), forward and backward; the layer norms stay
    float32. A gain's or bias's gradient sums T*B rows, and where the kernels' float32 operand
    differs from the reference's in its last bit, its bfloat16 rounding may go the other way: a
    bfloat16 step in one term. Over the 3H elements of such a vector the median difference is
    then up to 2e-5 (here, seed 6: 0.7% of bfloat16's own error), so the median's bound is 1e-5
    or 1% of that error, the larger."""
    s = CASE.make_stack(L, D, np.float32, seed=6)
    opts = stack_opts(L, D, reverse, LENGTHS)
    fw, bw = CASE.kernels(s, opts, compute_dtype="bfloat16")
    want = CASE.reference(s, opts, compute_dtype="bfloat16")
    exact = CASE.reference(s, opts)

    def flat(y: Any, dx: Any, grads: Any) -> list[Any]:
        return [y, dx, *(a for _, a in grads if a is not None)]

    got_all = flat(fw.y, bw.dx, CASE.grads(bw))
    want_all = flat(want[0], want[3]["dx"], CASE.ref_grads(want[3]))
    exact_all = flat(exact[0], exact[3]["dx"], CASE.ref_grads(exact[3]))
    for got, w, e in zip(got_all, want_all, exact_all, strict=True):
        scale = max(1.0, float(np.abs(w).max()))
        d = np.abs(got - w) / scale
        bf16_error = float(np.sqrt(np.mean(np.square(w - e)))) / scale
        assert float(np.median(d)) <= max(1e-5, 0.01 * bf16_error)
        assert float(np.sqrt(np.mean(np.square(d)))) <= max(0.2 * bf16_error, 1e-5)
    y_bf16, y_exact = want[0], exact[0]
    assert float(np.sqrt(np.mean(np.square(y_bf16 - y_exact)))) > 1e-4  # bfloat16 does round


def test_bf16_layer() -> None:
    """A float32 layer with compute_dtype bfloat16 runs forward and backward; a float64 one
    refuses it."""
    layer = fastrnn.LayerNormGRU(I, H, 2, bidirectional=True, compute_dtype="bfloat16", seed=0)
    assert layer.compute_dtype == "bfloat16" and "compute_dtype='bfloat16'" in repr(layer)
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    y, _ = layer(x, lengths=LENGTHS)
    dx, _ = layer.backward(np.ones_like(y))
    assert np.isfinite(dx).all() and np.isfinite(layer.grads["layer_norm_weight_ih_l1"]).all()
    with pytest.raises(ValueError, match="compute_dtype: bfloat16 products need a float32"):
        fastrnn.LayerNormGRU(I, H, dtype=np.float64, compute_dtype="bfloat16")


def test_int8_layer_against_the_reference() -> None:
    """quantize_dynamic of a LayerNormGRU: the reference fed the same int8 weights (the gains,
    like the biases, stay float32)."""
    layer = fastrnn.LayerNormGRU(I, 16, 2, bidirectional=True, seed=0).eval()
    sd = layer.state_dict()
    rng = np.random.default_rng(2)
    for name in sd:
        if name.startswith("layer_norm"):
            sd[name] = sd[name] + rng.uniform(-0.3, 0.3, sd[name].shape).astype(np.float32)
    layer.load_state_dict(sd)
    q = fastrnn.quantize_dynamic(layer)
    assert isinstance(q, fastrnn.QuantizedLayerNormGRU) and q.reset_after
    assert q.layer_norm_weight_hh_l1_reverse.dtype == np.float32
    assert "layer_norm_weight_ih_l0_scale" not in q.param_shapes()
    assert q.weight_hh_l0.dtype == np.int8
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y, h_n = q(x, lengths=LENGTHS)
    p = dict(q.named_parameters())
    entries = []
    for k in range(q.spec.num_entries):
        names = q.spec.entry_names(k)
        e: list[Any] = [R.QuantizedWeight(p[n], p[n + "_scale"]) if i in (0, 1) else p[n]
                        for i, n in enumerate(names[:4])]  # fmt: skip
        entries.append((*e, None, tuple(p[n] for n in names.cell_params)))
    y_ref, h_ref, c_ref, _ = R.stack_forward("lngru", x, entries, num_layers=2,
                                             bidirectional=True, lengths=LENGTHS)  # fmt: skip
    assert c_ref is None
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=2e-5)
    y_float, _ = layer(x, lengths=LENGTHS)
    d = np.abs(y - y_float)
    assert 0 < float(d.mean()) < 0.01 and float(d.max()) < 0.2  # int8's own error
    assert repr(q).startswith("QuantizedLayerNormGRU(3, 16, num_layers=2")
    back = q.dequantize()
    assert isinstance(back, fastrnn.LayerNormGRU) and back.spec == layer.spec


# ---- the layer ---------------------------------------------------------------------------------


def test_layer_parameters_and_initialisation() -> None:
    layer = fastrnn.LayerNormGRU(3, 4, 2, bidirectional=True, seed=0)
    assert layer.cell == "lngru" and not layer.spec.has_cell_state and layer.reset_after
    names = list(layer.param_shapes())
    assert names[:6] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "layer_norm_weight_ih_l0", "layer_norm_weight_hh_l0"]  # fmt: skip
    assert names[6] == "weight_ih_l0_reverse" and len(names) == 24
    shapes = layer.param_shapes()
    assert shapes["layer_norm_weight_ih_l1_reverse"] == (12,)
    assert shapes["layer_norm_weight_hh_l1"] == (12,)
    assert shapes["weight_ih_l1"] == (12, 8)
    assert list(layer.state_dict()) == names
    bound = 1 / np.sqrt(4)
    for name, p in layer.named_parameters():
        assert p.dtype == np.float32
        if name.startswith("layer_norm_weight"):
            assert (p == 1).all(), name  # torch.nn.LayerNorm's weight
        else:
            assert np.abs(p).max() <= bound and np.abs(p).max() > 0, name
    assert StackSpec("lngru", 3, 4).param_constants() == {
        "layer_norm_weight_ih_l0": 1.0, "layer_norm_weight_hh_l0": 1.0,
    }  # fmt: skip
    # the same seed, the same weights; reset_parameters keeps the constants
    again = fastrnn.LayerNormGRU(3, 4, 2, bidirectional=True, seed=0)
    for (n, a), (_, b) in zip(layer.named_parameters(), again.named_parameters(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=n)
    layer.reset_parameters(5)
    assert (layer.layer_norm_weight_hh_l1 == 1).all()
    assert not np.array_equal(layer.weight_ih_l0, again.weight_ih_l0)
    no_bias = fastrnn.LayerNormGRU(3, 4, bias=False)
    assert list(no_bias.param_shapes()) == ["weight_ih_l0", "weight_hh_l0",
                                            *(f"{n}_l0" for n in LN_NAMES)]  # fmt: skip


def test_init_recurrent_keeps_the_gains_and_refuses_a_forget_bias() -> None:
    layer = fastrnn.LayerNormGRU(3, 4, 2, seed=0)
    init.init_recurrent(layer, bias="default", rng=0)
    assert (layer.layer_norm_weight_ih_l1 == 1).all()
    assert (layer.layer_norm_weight_hh_l0 == 1).all()
    block = layer.weight_hh_l0[:4].astype(np.float64)  # orthogonal, gate by gate
    np.testing.assert_allclose(block @ block.T, np.eye(4), atol=1e-6)
    with pytest.raises(ValueError, match="forget_bias: only for LSTM layers, got a LayerNormGRU"):
        init.init_recurrent(layer, forget_bias=1.0)
    with pytest.raises(ValueError, match="LSTM"):
        init.set_forget_bias(layer, 1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "kw", [{"num_layers": 2, "bidirectional": True, "batch_first": True}, {"reverse": True}]
)
def test_layer_forward_backward_against_reference(kw: dict[str, Any], dtype: Any) -> None:
    layer = fastrnn.LayerNormGRU(I, H, dtype=dtype, seed=1, **kw)
    spec = layer.spec
    sd = layer.state_dict()
    rng = np.random.default_rng(8)
    for name in sd:  # the gains away from their start, to see their gradients' effect
        if name.startswith("layer_norm"):
            sd[name] = sd[name] + rng.uniform(-0.3, 0.3, sd[name].shape).astype(dtype)
    layer.load_state_dict(sd)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    xb = x.swapaxes(0, 1) if layer.batch_first else x
    h0 = rng.uniform(-1, 1, (spec.num_entries, B, H)).astype(dtype)
    y, h_n = layer(xb, h0, lengths=LENGTHS)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dh0 = layer.backward(dy)
    params = spec.entries_of(as_f64(dict(layer.named_parameters())))
    y_ref, h_ref, _, cache = R.stack_forward(
        "lngru", as_f64(x), params, as_f64(h0), num_layers=spec.num_layers,
        bidirectional=spec.bidirectional, lengths=LENGTHS, reverse=spec.reverse,
    )  # fmt: skip
    g = R.stack_backward(cache, as_f64(dy.swapaxes(0, 1) if layer.batch_first else dy))
    if layer.batch_first:
        y, dx = y.swapaxes(0, 1), dx.swapaxes(0, 1)
    CASE.close(y, y_ref, dtype, "y")
    CASE.close(h_n, h_ref, dtype, "h_n")
    CASE.close(dx, g["dx"], dtype, "dx")
    CASE.close(dh0, g["dh0"], dtype, "dh0")
    want = spec.flatten([LayerParams(**e) for e in g["params"]])
    assert list(layer.grads) == list(layer.param_shapes())
    for (name, got), w in zip(layer.grads.items(), want, strict=True):
        CASE.close(got, w, dtype, name)


def test_layer_unbatched_state_and_repr() -> None:
    layer = fastrnn.LayerNormGRU(I, H, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((T, I)).astype(np.float32)
    y, h = layer(x)
    assert y.shape == (T, H) and h.shape == (2, H)
    y2, _ = layer(x[:, None])
    np.testing.assert_array_equal(y2[:, 0], y)
    y3, _ = layer(x[2:], h)  # a carried state
    assert y3.shape == (T - 2, H)
    with pytest.raises(TypeError, match="hx"):
        layer(x, (h, h))
    assert repr(layer) == "LayerNormGRU(3, 6, num_layers=2)"
    assert repr(fastrnn.LayerNormGRU(3, 4, bias=False, reverse=True, dtype=np.float64)) == (
        "LayerNormGRU(3, 4, bias=False, reverse=True, dtype=float64)"
    )
    for name, value in (("reverse", True), ("clip", 1.0)):
        with pytest.raises(AttributeError, match=f"{name}: read-only"):
            setattr(layer, name, value)
    assert layer.clip is None and layer.proj_size == 0


@pytest.mark.parametrize(
    "options", [{}, {"reverse": True}, {"num_layers": 2, "bidirectional": True}, {"bias": False}]
)
def test_from_spec_and_pickling(options: dict[str, Any]) -> None:
    spec = StackSpec("lngru", 3, 4, dtype=np.float64, **options)
    layer = fastrnn.layers.from_spec(spec, seed=0)
    assert type(layer) is fastrnn.LayerNormGRU and layer.spec == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    copy = pickle.loads(pickle.dumps(layer))
    x = np.ones((2, 1, 3))
    np.testing.assert_array_equal(copy(x)[0], layer(x)[0])
    again = StackSpec.of_params("lngru", layer._entries(), np.float64, num_layers=spec.num_layers,
                                bidirectional=spec.bidirectional, reverse=spec.reverse)  # fmt: skip
    assert again == spec


def test_state_dict_rules_name_the_layer_norm_vectors() -> None:
    layer = fastrnn.LayerNormGRU(3, 4)
    sd = layer.state_dict()
    with pytest.raises(ValueError, match=r"state_dict\['layer_norm_weight_hh_l0'\]: expected "):
        layer.load_state_dict({**sd, "layer_norm_weight_hh_l0": np.ones(4, np.float32)})
    sd.pop("layer_norm_weight_ih_l0")
    with pytest.raises(ValueError, match=r"missing keys \['layer_norm_weight_ih_l0'\]"):
        layer.load_state_dict(sd)


# ---- the spec, the reference's and the self-check's lists --------------------------------------


def test_cell_table_and_names() -> None:
    info = CELLS["lngru"]
    assert info.gate_names == ("r", "z", "n") and not info.has_cell_state
    assert not info.can_project and not info.onnx_options
    assert info.params == (("layer_norm_weight_ih", 3), ("layer_norm_weight_hh", 3))
    assert info.init == (1.0, 1.0)
    assert CASE.names == LN_NAMES
    spec = StackSpec("lngru", 3, 5, bidirectional=True)
    assert spec.cell_params_size == 30 == F._core.cell_params_size(F._core.Cell.lngru, 5)
    assert spec.entry_names(1).cell_params == tuple(f"{n}_l0_reverse" for n in LN_NAMES)
    assert spec.entry_shapes(0).cell_params == ((15,), (15,))
    assert "lngru" in F.CELLS and "lngru" in R.CELLS and R.num_gates("lngru") == 3
    assert F.num_gates("lngru") == 3


def test_selfcheck_lists_and_checks_it() -> None:
    from fastrnn.tools import selfcheck

    assert set(selfcheck.LABELS) == set(F.CELLS)
    for dtype in (np.float64, np.float32):
        err = selfcheck.max_error("lngru", dtype, (6, 3, 5, 7))
        assert err <= selfcheck.TOLERANCE[dtype], err


# ---- the training kit --------------------------------------------------------------------------


def test_sequence_model_trains_saves_and_quantizes(tmp_path: Any) -> None:
    from fastrnn.training import optim, tasks

    model = fastrnn.SequenceModel("lngru", 2, 16, 1, many_to_one=True, seed=0)
    assert isinstance(model.rnn, fastrnn.LayerNormGRU)
    assert model.config["forget_bias"] is None  # no forget gate
    assert (model.rnn.layer_norm_weight_ih_l0 == 1).all()
    opt = optim.Adam(lr=1e-2)
    rng = np.random.default_rng(1)
    x, y = tasks.adding_problem(32, 20, rng)
    first = model.train_step(x, y, opt, clip_norm=1.0).loss
    for _ in range(30):
        last = model.train_step(x, y, opt, clip_norm=1.0).loss
    assert last < first
    assert "rnn.layer_norm_weight_hh_l0" in model.grads
    path = tmp_path / "m.npz"
    model.save(path)
    back, _, _ = fastrnn.SequenceModel.load(path)
    assert back.config == model.config
    np.testing.assert_array_equal(back.forward(x)[0], model.eval().forward(x)[0])
    q = model.quantize_dynamic()
    assert isinstance(q.rnn, fastrnn.QuantizedLayerNormGRU)
    assert abs(q.evaluate(x, y) - model.evaluate(x, y)) < 0.05
    with pytest.raises(ValueError, match="forget_bias: only an LSTM has a forget gate"):
        fastrnn.SequenceModel("lngru", 2, 4, 1, forget_bias=1.0)


# ---- errors ------------------------------------------------------------------------------------


def test_projection_clip_and_input_forget_are_refused() -> None:
    s = CASE.make_stack(1, 1, np.float32)
    with pytest.raises(
        ValueError, match="proj_size: only LSTM layers have a projection, not lngru"
    ):
        StackSpec("lngru", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="clip: ONNX's clip and input_forget are not for the "
                                         r"layer-normalised GRU \(lngru\)"):  # fmt: skip
        StackSpec("lngru", 3, 4, clip=1.0)
    for kw, name in (({"clip": 1.0}, "clip"), ({"input_forget": True}, "input_forget")):
        match = f"{name}: ONNX's clip and input_forget are not for the layer-normalised GRU"
        with pytest.raises(ValueError, match=match):
            StackSpec("lngru", 3, 4, **kw)
        with pytest.raises(ValueError, match=match):
            F.stack_forward("lngru", s["x"], s["params"], **kw)
        with pytest.raises(ValueError, match=match):
            F.workspace_size("lngru", T, B, I, H, np.float32, **kw)
        with pytest.raises(ValueError, match=r"clip, input_forget: not for the layer-normalised "
                                             r"GRU \(lngru\)"):  # fmt: skip
            R.stack_forward("lngru", s["x"], s["params"], **kw)
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
            fastrnn.LayerNormGRU(3, 4, **kw)
    for name in ("reset_after", "proj_size"):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
            fastrnn.LayerNormGRU(3, 4, **{name: 1})


def test_onnx_export_is_refused() -> None:
    pytest.importorskip("onnx")
    import fastrnn.onnx

    with pytest.raises(NotImplementedError, match=r"operators have no lngru cell.*a LayerNormGRU"):
        fastrnn.onnx.export(fastrnn.LayerNormGRU(3, 4))


def test_bad_layer_norm_vectors_name_the_argument() -> None:
    s = CASE.make_stack(2, 1, np.float32)
    x, params = s["x"], s["params"]
    own = params[1].cell_params

    def run(k: int, cell_params: Any) -> None:
        bad = list(params)
        bad[k] = params[k]._replace(cell_params=cell_params)
        F.stack_forward("lngru", x, bad, num_layers=2)

    for i, name in enumerate(LN_NAMES):
        n = 3 * H
        wrong = tuple(np.ones(n + 1, np.float32) if j == i else a for j, a in enumerate(own))
        with pytest.raises(
            ValueError, match=rf"{name}_l1: expected shape \({n},\), got \({n + 1},\)"
        ):
            run(1, wrong)
        f64 = tuple(a.astype(np.float64) if j == i else a for j, a in enumerate(own))
        with pytest.raises(TypeError, match=rf"{name}_l1: expected dtype float32 .*float64"):
            run(1, f64)
        missing = tuple(None if j == i else a for j, a in enumerate(own))
        with pytest.raises(TypeError, match=rf"{name}_l1: required, got None"):
            run(1, missing)
    with pytest.raises(TypeError, match=r"cell_params: expected a tuple of 2 array\(s\).*got 1"):
        run(0, own[:1])
    with pytest.raises(TypeError, match=r"cell_params: expected a tuple of 2 array\(s\)"):
        run(0, np.concatenate(own))
    with pytest.raises(TypeError, match="layer_norm_weight_ih_l0, layer_norm_weight_hh_l0"):
        F.stack_forward("lngru", x, [p[:5] for p in params], num_layers=2)
    with pytest.raises(TypeError, match="layer_norm_weight_ih_l0, "):
        F.forward("lngru", x, *params[0][:4])
