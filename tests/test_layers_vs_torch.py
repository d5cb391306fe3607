"""fastrnn's layers (the NumPy API: fastrnn.RNN / LSTM / GRU) against torch.nn.RNN / LSTM / GRU
(skipped without torch). The drop-in torch modules, fastrnn.torch, are tested in
test_fastrnn_torch.py.

Weights move through state_dict in both directions; outputs, final states, the input and
initial-state gradients and every parameter gradient are compared:
- one layer of every kind, with and without initial states, bias, batch_first, float32/float64;
- every option combination: cell (RNN tanh/relu, LSTM, LSTM with proj_size, GRU) x num_layers 1-3
  x bidirectional x batch_first x lengths (none, or mixed lengths through pack_padded_sequence) x
  float32/float64. A zero-length sequence (which torch's packing refuses) rides along in the
  batch: its results must be the defined ones (zero outputs, the initial state passed through,
  zero dx, dh0 = dh_n) and the others must match torch run without it.
The largest relative errors are listed in the run's terminal summary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastrnn
from helpers import TORCH_KINDS, assert_close

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

KINDS = TORCH_KINDS
ONE_LAYER_KINDS = {k: v for k, v in KINDS.items() if k != "lstm_proj"}
# relative to max(1, max |torch's array|): one layer, and every option combination
TOL_ONE_LAYER = {np.float64: 1e-12, np.float32: 2e-5}
TOL = {np.float64: 1e-11, np.float32: 5e-5}
T, I, H = 6, 4, 5
LENGTHS = [6, 2, 0, 4, 6]  # unsorted; zero and full lengths


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity(
    kind: str, num_layers: int, bidirectional: bool, batch_first: bool, with_lengths: bool,
    dtype: Any, record_worst_error: Callable[[str, float], None],
) -> None:  # fmt: skip
    check(kind, num_layers, bidirectional, batch_first, with_lengths, dtype, True,
          record_worst_error)  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_without_bias(
    kind: str, dtype: Any, record_worst_error: Callable[[str, float], None]
) -> None:
    check(kind, 2, True, True, True, dtype, False, record_worst_error)


def check(
    kind: str, num_layers: int, bidirectional: bool, batch_first: bool, with_lengths: bool,
    dtype: Any, bias: bool, record: Callable[[str, float], None],
) -> None:  # fmt: skip
    """fastrnn's layer and torch.nn's on the same data: everything to TOL; records the largest
    relative error per dtype (for the run's summary)."""

    def close(a: Any, b: Any, what: str) -> None:
        err = assert_close(a, b, what=what, rtol=TOL[dtype])
        record(f"fastrnn layers vs torch.nn, {np.dtype(dtype).name}", err)

    name, kw = KINDS[kind]
    lstm = name == "LSTM"
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(0)
    opts = {
        "num_layers": num_layers,
        "bidirectional": bidirectional,
        "batch_first": batch_first,
        "bias": bias,
    }
    tm = getattr(torch.nn, name)(I, H, **opts, **kw).to(tdt)
    fm = getattr(fastrnn, name)(I, H, **opts, **kw, dtype=dtype)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})

    lengths = np.array(LENGTHS if with_lengths else [T] * len(LENGTHS))
    B = len(lengths)
    D = 2 if bidirectional else 1
    Hs = kw.get("proj_size") or H
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((num_layers * D, B, Hs)).astype(dtype)
    c0 = rng.standard_normal((num_layers * D, B, H)).astype(dtype)
    dy = rng.standard_normal((B, T, D * Hs) if batch_first else (T, B, D * Hs)).astype(dtype)
    dh = rng.standard_normal(h0.shape).astype(dtype)
    dc = rng.standard_normal(c0.shape).astype(dtype)
    bax = 0 if batch_first else 1  # batch axis of x and y

    # fastrnn, whole batch
    hx = (h0, c0) if lstm else h0
    y_f, st_f = fm(x, hx, lengths=lengths if with_lengths else None)
    dx_f, dst_f = fm.backward(dy, (dh, dc) if lstm else dh)
    states_f = st_f if lstm else (st_f,)
    dstates_f = dst_f if lstm else (dst_f,)

    # torch, without the zero-length sequences
    keep = np.flatnonzero(lengths > 0)
    xt = torch.tensor(np.take(x, keep, axis=bax), requires_grad=True)
    h0t = torch.tensor(h0[:, keep], requires_grad=True)
    c0t = torch.tensor(c0[:, keep], requires_grad=True)
    if with_lengths:
        packed = pack_padded_sequence(
            xt, torch.tensor(lengths[keep]), batch_first=batch_first, enforce_sorted=False
        )
        out, st_t = tm(packed, (h0t, c0t) if lstm else h0t)
        y_t, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    else:
        y_t, st_t = tm(xt, (h0t, c0t) if lstm else h0t)
    states_t = st_t if lstm else (st_t,)
    dstates = (dh, dc) if lstm else (dh,)
    loss = (y_t * torch.tensor(np.take(dy, keep, axis=bax))).sum()
    for s, d in zip(states_t, dstates, strict=True):
        loss = loss + (s * torch.tensor(d[:, keep])).sum()
    loss.backward()

    close(np.take(y_f, keep, axis=bax), y_t, "y")
    for a, b in zip(states_f, states_t, strict=True):
        close(a[:, keep], b, "final state")
    close(np.take(dx_f, keep, axis=bax), xt.grad, "dx")
    for a, b in zip(dstates_f, (h0t, c0t) if lstm else (h0t,), strict=True):
        close(a[:, keep], b.grad, "initial-state gradient")
    for pname, par in tm.named_parameters():
        close(fm.grads[pname], par.grad, f"grad {pname}")
    assert set(fm.grads) == {n for n, _ in tm.named_parameters()}

    # the zero-length sequences: defined results
    for b in np.flatnonzero(lengths == 0):
        assert not np.take(y_f, b, axis=bax).any()
        assert not np.take(dx_f, b, axis=bax).any()
        for s, s0 in zip(states_f, (h0, c0) if lstm else (h0,), strict=True):
            np.testing.assert_array_equal(s[:, b], s0[:, b])
        for g, g0 in zip(dstates_f, dstates, strict=True):
            np.testing.assert_array_equal(g[:, b], g0[:, b])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("kind", list(ONE_LAYER_KINDS))
def test_one_layer_parity(
    kind: str, dtype: Any, batch_first: bool, bias: bool, with_hx: bool,
    record_worst_error: Callable[[str, float], None],
) -> None:  # fmt: skip
    """One layer, with and without initial states: everything to TOL_ONE_LAYER."""

    def close(a: Any, b: Any, what: str) -> None:
        err = assert_close(a, b, what=what, rtol=TOL_ONE_LAYER[dtype])
        record_worst_error(f"fastrnn layers vs torch.nn, {np.dtype(dtype).name}", err)

    name, kw = ONE_LAYER_KINDS[kind]
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
    close(y_f, y_t, "y")
    states_t = st_t if lstm else (st_t,)
    states_f = st_f if lstm else (st_f,)
    for a, b in zip(states_f, states_t, strict=False):
        close(a, b, "final state")

    dy = torch.randn_like(y_t)
    dstates = [torch.randn_like(s) for s in states_t]
    loss = (y_t * dy).sum() + sum((s * d).sum() for s, d in zip(states_t, dstates, strict=False))
    loss.backward()
    d_np = [d.numpy() for d in dstates]
    dx, dst = fm.backward(dy.numpy(), tuple(d_np) if lstm else d_np[0])
    close(dx, x.grad, "dx")
    if with_hx:
        for a, b in zip(dst if lstm else (dst,), hx_t if lstm else (hx_t,), strict=False):
            close(a, b.grad, "d initial state")
    for pname, par in tm.named_parameters():
        close(fm.grads[pname], par.grad, f"grad {pname}")
    assert set(fm.grads) == {n for n, _ in tm.named_parameters()}


def test_state_dict_names_and_shapes_match_torch() -> None:
    for name, kw in ONE_LAYER_KINDS.values():
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
