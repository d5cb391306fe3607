"""fastrnn.torch: drop-in torch.nn.LSTM/GRU/RNN modules with autograd (skipped without torch).

Parity with torch.nn through autograd for every option combination: cell (RNN tanh/relu, LSTM,
LSTM with proj_size, GRU) x num_layers 1-3 x bidirectional x batch_first x input (a tensor, a
PackedSequence of sorted or unsorted lengths) x float32/float64: outputs, final states, and the
gradients of the input, the initial states and every parameter. Plus gradcheck in float64,
no_grad/inference_mode (no saved activations), retain_graph, dropout, unbatched input, bad
input, a 20-step Adam training loop against torch.nn.GRU, and torch staying optional.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from helpers import TORCH_KINDS, assert_close

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import (  # noqa: E402
    PackedSequence,
    pack_padded_sequence,
    pad_packed_sequence,
)

import fastrnn.torch as frt  # noqa: E402

KINDS = TORCH_KINDS
TOL = {torch.float64: 1e-11, torch.float32: 5e-5}  # relative to max(1, max |torch's array|)
T, I, H, B = 6, 4, 5, 4


def pair(kind: str, dtype: Any, **opts: Any) -> tuple[Any, Any]:
    """A torch.nn module and the fastrnn.torch one with the same weights."""
    name, kw = KINDS[kind]
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(I, H, **opts, **kw).to(dtype)
    fm = getattr(frt, name)(I, H, **opts, **kw).to(dtype)
    fm.load_state_dict(tm.state_dict())
    return tm, fm


def run(m: Any, x: Any, hx: Any, mode: str, lengths: Any, batch_first: bool) -> tuple[Any, Any]:
    """y (padded) and the final state(s) as a tuple."""
    if mode == "tensor":
        y, st = m(x, hx)
    else:
        packed = pack_padded_sequence(
            x, lengths, batch_first=batch_first, enforce_sorted=mode == "sorted"
        )
        out, st = m(packed, hx)
        assert isinstance(out, PackedSequence)
        y, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return y, st if isinstance(st, tuple) else (st,)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", ["tensor", "sorted", "unsorted"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity(
    kind: str, num_layers: int, bidirectional: bool, batch_first: bool, mode: str, dtype: Any
) -> None:
    check(kind, dtype, mode, num_layers=num_layers, bidirectional=bidirectional,
          batch_first=batch_first)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_without_bias(kind: str, dtype: Any) -> None:
    check(kind, dtype, "unsorted", num_layers=2, bidirectional=True, batch_first=True, bias=False)


def check(kind: str, dtype: Any, mode: str, **opts: Any) -> None:
    tm, fm = pair(kind, dtype, **opts)
    lstm = KINDS[kind][0] == "LSTM"
    D = 2 if opts["bidirectional"] else 1
    L = opts["num_layers"]
    Hs = KINDS[kind][1].get("proj_size") or H
    bf = opts["batch_first"]
    lengths = torch.tensor([6, 3, 6, 1] if mode == "unsorted" else [6, 6, 3, 1])
    if mode == "tensor":
        lengths = torch.full((B,), T)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn((B, T, I) if bf else (T, B, I), generator=g, dtype=dtype)
    h00 = torch.randn(L * D, B, Hs, generator=g, dtype=dtype)
    c00 = torch.randn(L * D, B, H, generator=g, dtype=dtype)
    dy = torch.randn((B, T, D * Hs) if bf else (T, B, D * Hs), generator=g, dtype=dtype)
    dh = torch.randn(L * D, B, Hs, generator=g, dtype=dtype)
    dc = torch.randn(L * D, B, H, generator=g, dtype=dtype)
    # the padded steps' output is zero in both, so dy there does not matter

    results = []
    for m in (tm, fm):
        x = x0.clone().requires_grad_(True)
        h0 = h00.clone().requires_grad_(True)
        c0 = c00.clone().requires_grad_(True)
        y, st = run(m, x, (h0, c0) if lstm else h0, mode, lengths, bf)
        loss = (
            (y * dy).sum() + (st[0] * dh).sum() + (st[1] * dc).sum()
            if lstm
            else ((y * dy).sum() + (st[0] * dh).sum())
        )
        m.zero_grad()
        loss.backward()
        results.append((y, st, x.grad, h0.grad, c0.grad if lstm else None,
                        {n: p.grad.clone() for n, p in m.named_parameters()}))  # fmt: skip
    (yt, stt, dxt, dh0t, dc0t, gt), (yf, stf, dxf, dh0f, dc0f, gf) = results
    assert_close(yf, yt, what="output", rtol=TOL[dtype])
    for a, b in zip(stf, stt, strict=True):
        assert_close(a, b, what="final state", rtol=TOL[dtype])
    assert_close(dxf, dxt, what="input gradient", rtol=TOL[dtype])
    assert_close(dh0f, dh0t, what="h0 gradient", rtol=TOL[dtype])
    if lstm:
        assert_close(dc0f, dc0t, what="c0 gradient", rtol=TOL[dtype])
    assert gf.keys() == gt.keys()
    for n in gt:
        assert_close(gf[n], gt[n], what=f"grad {n}", rtol=TOL[dtype])


def test_same_module_surface() -> None:
    for name, kw in KINDS.values():
        opts = {"num_layers": 2, "bidirectional": True, **kw}
        tm, fm = getattr(torch.nn, name)(I, H, **opts), getattr(frt, name)(I, H, **opts)
        assert isinstance(fm, getattr(torch.nn, name))
        assert list(fm.state_dict()) == list(tm.state_dict())
        assert [p.shape for p in fm.parameters()] == [p.shape for p in tm.parameters()]
        assert repr(fm) == repr(tm)
        fm.load_state_dict(tm.state_dict())  # strict
        y, _ = fm(torch.randn(T, B, I, requires_grad=True))
        assert type(y.grad_fn).__name__ == "RNNFunctionBackward"  # the kernels, not torch's


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "lstm_proj", "gru"])
def test_gradcheck(kind: str) -> None:
    name, kw = KINDS[kind]
    torch.manual_seed(0)
    m = getattr(frt, name)(3, 4, num_layers=2, bidirectional=True, **kw).double()
    lstm = name == "LSTM"
    Hs = kw.get("proj_size") or 4
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, Hs, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
    params = list(m.parameters())
    names = [n for n, _ in m.named_parameters()]

    def f(x: Any, h0: Any, c0: Any, *ps: Any) -> Any:
        out = torch.func.functional_call(m, dict(zip(names, ps, strict=True)),
                                         (x, (h0, c0) if lstm else h0))  # fmt: skip
        y, st = out
        return (y, *st) if lstm else (y, st)

    inputs = (x, h0, c0, *[p.detach().clone().requires_grad_(True) for p in params])
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_packed() -> None:
    torch.manual_seed(0)
    m = frt.GRU(3, 4, bidirectional=True).double()
    x = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([2, 5, 1, 4])

    def f(x: Any) -> Any:
        out, h = m(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        return out.data, h

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("ctx", ["no_grad", "inference_mode", "no_requires_grad"])
def test_inference_saves_nothing(ctx: str) -> None:
    tm, fm = pair("lstm", torch.float32, num_layers=2)
    x = torch.randn(T, B, I)
    if ctx == "no_requires_grad":
        for p in fm.parameters():
            p.requires_grad_(False)
        yf, (_, cf) = fm(x)
    else:
        with getattr(torch, ctx)():
            yf, (_, cf) = fm(x)
    assert yf.grad_fn is None and not yf.requires_grad
    with torch.no_grad():
        yt, (_, ct) = tm(x)
    assert_close(yf, yt, what="output", rtol=TOL[torch.float32])
    assert_close(cf, ct, what="c_n", rtol=TOL[torch.float32])


def test_retain_graph_second_backward_same_gradients() -> None:
    _, fm = pair("gru", torch.float64, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, h = fm(x)
    loss = (y**2).sum() + h.sum()
    loss.backward(retain_graph=True)
    first = [x.grad.clone()] + [p.grad.clone() for p in fm.parameters()]
    x.grad = None
    fm.zero_grad()
    loss.backward()
    second = [x.grad] + [p.grad for p in fm.parameters()]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_data_input_skips_its_gradient_same_weight_gradients() -> None:
    _, fm = pair("lstm", torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I)
    grads = []
    for xx in (x, x.clone().requires_grad_(True)):
        fm.zero_grad()
        fm(xx)[0].pow(2).sum().backward()
        grads.append([p.grad.clone() for p in fm.parameters()])
    assert x.grad is None
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_modified_weight_before_backward_is_an_error() -> None:
    _, fm = pair("lstm", torch.float32)
    y, _ = fm(torch.randn(T, B, I))
    with torch.no_grad():
        fm.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_unbatched_and_hidden_only_loss() -> None:
    for kind in ("lstm", "gru", "rnn_relu"):
        tm, fm = pair(kind, torch.float64, num_layers=2, bidirectional=True)
        x = torch.randn(T, I, dtype=torch.float64)
        outs = []
        for m in (tm, fm):
            xx = x.clone().requires_grad_(True)
            y, st = m(xx)
            h = st[0] if isinstance(st, tuple) else st
            assert y.shape == (T, 2 * H) and h.shape == (4, H)
            h.sum().backward()  # the output y is not used: its gradient is None
            outs.append((y, h, xx.grad))
        for a, b in zip(*outs, strict=True):
            assert_close(a, b, what=kind, rtol=TOL[torch.float64])


def test_dropout() -> None:
    """p=1 drops every output between layers in both implementations (deterministic); p in (0, 1)
    is reproducible with torch.manual_seed and inactive in eval mode."""
    tm, fm = pair("lstm", torch.float64, num_layers=3, dropout=1.0)
    x = torch.randn(T, B, I, dtype=torch.float64)
    assert_close(fm(x)[0], tm(x)[0], what="dropout=1", rtol=TOL[torch.float64])
    _, fm = pair("gru", torch.float32, num_layers=2, dropout=0.5)
    x = torch.randn(T, B, I)
    torch.manual_seed(5)
    a = fm(x)[0]
    torch.manual_seed(5)
    b = fm(x)[0]
    c = fm(x)[0]
    assert torch.equal(a, b) and not torch.equal(b, c)
    fm.eval()
    tm, _ = pair("gru", torch.float32, num_layers=2, dropout=0.5)
    tm.eval()
    assert_close(fm(x)[0], tm(x)[0], what="eval mode", rtol=TOL[torch.float32])


def test_bad_input() -> None:
    fm = frt.LSTM(I, H, num_layers=2)
    with pytest.raises(ValueError, match=r"input: dtype torch\.float64 does not match"):
        fm(torch.randn(T, B, I, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"input: expected a 3-D \(batched\) or 2-D \(unbatched\)"):
        fm(torch.randn(T))
    with pytest.raises(RuntimeError, match="input_size=4"):
        fm(torch.randn(T, B, I + 1))
    with pytest.raises(RuntimeError, match=r"hx\[0\]: expected shape \(2, 4, 5\)"):
        fm(torch.randn(T, B, I), (torch.zeros(2, 3, H), torch.zeros(2, B, H)))
    with pytest.raises(TypeError, match="hx: expected a tuple"):
        fm(torch.randn(T, B, I), torch.zeros(2, B, H))
    with pytest.raises(ValueError, match=r"input: fastrnn\.torch runs on CPU tensors only"):
        fm(torch.empty(T, B, I, device="meta"))
    with pytest.raises(TypeError, match="input: expected a tensor"):
        fm(np.zeros((T, B, I), np.float32))
    with pytest.raises(TypeError, match="fastrnn runs float32 and float64"):
        frt.GRU(I, H).half()(torch.randn(T, B, I).half())


def test_training_loop_matches_torch_gru() -> None:
    """Same init, same batches, Adam: 20 steps of a GRU + Linear regression, losses to ~1e-5."""
    losses = {}
    for lib in (torch.nn, frt):
        torch.manual_seed(0)
        rnn = lib.GRU(I, 16, num_layers=2, batch_first=True)
        head = torch.nn.Linear(16, 1)
        opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-2)
        g = torch.Generator().manual_seed(1)
        seen = []
        for _ in range(20):
            x = torch.randn(8, 12, I, generator=g)
            target = x.sum(dim=(1, 2)).unsqueeze(1) / 10
            opt.zero_grad()
            y, _ = rnn(x)
            loss = torch.nn.functional.mse_loss(head(y[:, -1]), target)
            loss.backward()
            opt.step()
            seen.append(loss.item())
        losses[lib.__name__] = seen
    a, b = np.array(losses["torch.nn"]), np.array(losses["fastrnn.torch"])
    assert a[-1] < 0.5 * a[0]  # it learns
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_import_fastrnn_does_not_import_torch() -> None:
    code = "import sys, fastrnn; import fastrnn.functional; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_torch_a_clear_import_error() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import fastrnn.torch\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "fastrnn[torch]"' in out.stdout


def test_second_derivative_is_an_error_not_zero() -> None:
    """create_graph=True then differentiating the gradient again raises (it must never silently
    give a zero second derivative, e.g. in a gradient penalty)."""
    _, fm = pair("gru", torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fm(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        (g**2).sum().backward()
    # first-order gradients taken with create_graph=True are still right
    tm, _ = pair("gru", torch.float64)
    (gt,) = torch.autograd.grad(tm(x)[0].sum(), x, create_graph=True)
    assert_close(g, gt, what="first-order gradient under create_graph", rtol=TOL[torch.float64])


def test_checkpoint_and_torch_func() -> None:
    tm, fm = pair("lstm", torch.float64, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    tm(x)[0].pow(2).sum().backward()
    # activation checkpointing: the workspace is a saved tensor, so it is recomputed too
    xg = x.clone().requires_grad_(True)
    y = torch.utils.checkpoint.checkpoint(lambda a: fm(a)[0], xg, use_reentrant=False)
    y.pow(2).sum().backward()
    for (n, p), q in zip(fm.named_parameters(), tm.parameters(), strict=True):
        assert_close(p.grad, q.grad, what=f"checkpoint {n}", rtol=TOL[torch.float64])
    # the torch.func transforms are not supported: a clear error, not a crash
    params = {n: p.detach() for n, p in fm.named_parameters()}

    def loss(p: Any) -> Any:
        return torch.func.functional_call(fm, p, (x,))[0].pow(2).sum()

    with pytest.raises(RuntimeError, match=r"torch\.func transforms"):
        torch.func.grad(loss)(params)


def test_empty_sequence_is_an_error_as_in_torch() -> None:
    with pytest.raises(RuntimeError, match="sequence length"):
        frt.GRU(I, H)(torch.randn(0, B, I))
