"""Parity with torch.nn.RNN / LSTM / GRU (skipped where torch is not installed).

Weights go through state_dict() in both directions; outputs, final states, the input and
initial-state gradients and every parameter gradient are compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import TORCH_KINDS, assert_close

import fastrnn

torch = pytest.importorskip("torch")

# id: (class name in torch.nn and fastrnn, constructor keywords); without the projection
MODULES = {k: v for k, v in TORCH_KINDS.items() if k != "lstm_proj"}
TOL = {np.float64: 1e-12, np.float32: 2e-5}  # relative to max(1, max |torch's array|)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("kind", list(MODULES))
def test_parity(kind: str, dtype: Any, batch_first: bool, bias: bool, with_hx: bool) -> None:
    name, kw = MODULES[kind]
    T, B, I, H = 6, 3, 5, 7
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tm = getattr(torch.nn, name)(I, H, bias=bias, batch_first=batch_first, **kw).to(tdtype)
    fm = getattr(fastrnn, name)(I, H, bias=bias, batch_first=batch_first, dtype=dtype, **kw)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})

    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=tdtype, requires_grad=True)
    lstm = name == "LSTM"
    hx_t: Any = None
    hx_f: Any = None
    if with_hx:
        h0 = torch.randn(1, B, H, dtype=tdtype, requires_grad=True)
        c0 = torch.randn(1, B, H, dtype=tdtype, requires_grad=True)
        hx_t = (h0, c0) if lstm else h0
        hx_f = (h0.detach().numpy(), c0.detach().numpy()) if lstm else h0.detach().numpy()

    y_t, st_t = tm(x, hx_t)
    y_f, st_f = fm(x.detach().numpy(), hx_f)
    assert_close(y_f, y_t, what="y", rtol=TOL[dtype])
    states_t = st_t if lstm else (st_t,)
    states_f = st_f if lstm else (st_f,)
    for a, b in zip(states_f, states_t, strict=False):
        assert_close(a, b, what="final state", rtol=TOL[dtype])

    dy = torch.randn_like(y_t)
    dstates = [torch.randn_like(s) for s in states_t]
    loss = (y_t * dy).sum() + sum((s * d).sum() for s, d in zip(states_t, dstates, strict=False))
    loss.backward()
    d_np = [d.numpy() for d in dstates]
    dx, dst = fm.backward(dy.numpy(), tuple(d_np) if lstm else d_np[0])
    assert_close(dx, x.grad, what="dx", rtol=TOL[dtype])
    if with_hx:
        for a, b in zip(dst if lstm else (dst,), hx_t if lstm else (hx_t,), strict=False):
            assert_close(a, b.grad, what="d initial state", rtol=TOL[dtype])
    for pname, par in tm.named_parameters():
        assert_close(fm.grads[pname], par.grad, what=f"grad {pname}", rtol=TOL[dtype])
    assert set(fm.grads) == {n for n, _ in tm.named_parameters()}


def test_state_dict_names_and_shapes_match_torch() -> None:
    for name, kw in MODULES.values():
        tm = getattr(torch.nn, name)(5, 7, **kw)
        fm = getattr(fastrnn, name)(5, 7, **kw)
        assert {k: tuple(v.shape) for k, v in tm.state_dict().items()} == {
            k: v.shape for k, v in fm.state_dict().items()
        }
        tm2 = getattr(torch.nn, name)(5, 7, **kw)
        tm2.load_state_dict({k: torch.from_numpy(v) for k, v in fm.state_dict().items()})


def test_torch_tensors_load_directly() -> None:
    tm = torch.nn.LSTM(3, 4)
    fm = fastrnn.LSTM(3, 4)
    fm.load_state_dict(tm.state_dict())  # tensors with requires_grad, no manual conversion
    np.testing.assert_array_equal(fm.weight_hh_l0, tm.weight_hh_l0.detach().numpy())


def test_unbatched_input_like_torch() -> None:
    torch.manual_seed(1)
    tm = torch.nn.GRU(3, 4).double()
    fm = fastrnn.GRU(3, 4, dtype=np.float64)
    fm.load_state_dict(tm.state_dict())
    x = torch.randn(5, 3, dtype=torch.float64)
    h0 = torch.randn(1, 4, dtype=torch.float64)
    y_t, h_t = tm(x, h0)
    y_f, h_f = fm(x.numpy(), h0.numpy())
    assert y_f.shape == tuple(y_t.shape) and h_f.shape == tuple(h_t.shape)
    np.testing.assert_allclose(y_f, y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
