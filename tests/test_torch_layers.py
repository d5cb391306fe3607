"""Parity with torch.nn for every option combination (skipped without torch).

cell (RNN tanh/relu, LSTM, LSTM with proj_size, GRU) x num_layers 1-3 x bidirectional x
batch_first x lengths (none, or mixed lengths through pack_padded_sequence) x float32/float64:
outputs, final states, input and initial-state gradients and every parameter gradient. Weights
move through state_dict. A zero-length sequence (which torch's packing refuses) rides along in
the batch: its results must be the defined ones (zero outputs, the initial state passed through,
zero dx, dh0 = dh_n) and the others must match torch run without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import TORCH_KINDS, assert_close

import fastrnn

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

KINDS = TORCH_KINDS
TOL = {np.float64: 1e-11, np.float32: 5e-5}  # relative to max(1, max |torch's array|)
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
    """Runs fastrnn's layer and torch.nn's on the same data and compares everything; records the
    largest relative error per dtype (for the run's summary)."""

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
