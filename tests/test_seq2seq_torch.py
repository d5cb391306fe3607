"""PyTorch parity of the sequence-to-sequence model: fastrnn's Seq2Seq against the same model
written with torch ops (fastrnn.tools.seq2seq_torch: torch.nn.Embedding, LSTM/GRU/RNN over packed
sequences, the attention in torch ops with the padding masked out of the softmax, Linear), the
same weights, in float64: logits, attention weights, loss and every parameter's gradient equal to
1e-9 (relative to max(1, |expected|)), with variable source and target lengths and padding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from helpers import assert_close

torch = pytest.importorskip("torch")

from fastrnn.tools import seq2seq_torch as st  # noqa: E402 (needs torch)
from fastrnn.training import optim  # noqa: E402
from fastrnn.training.seq2seq import PAD, Batch, Seq2Seq  # noqa: E402

RTOL = 1e-9
SRC_VOCAB, TGT_VOCAB = 11, 9
SRC_LENGTHS = (6, 2, 9, 1, 4)  # padded to 9
TGT_LENGTHS = (3, 6, 1, 5, 2)  # with EOS; padded to 6


def _batch(seed: int = 0) -> Batch:
    """Five pairs of different lengths, with junk ids (not PAD) in the padding of src and tgt_in:
    whatever lies beyond the lengths must not count, in either model."""
    rng = np.random.default_rng(seed)
    sources = [rng.integers(1, SRC_VOCAB, n) for n in SRC_LENGTHS]
    targets = [rng.integers(3, TGT_VOCAB, n - 1) for n in TGT_LENGTHS]
    b = Batch.of(sources, targets)
    src, tgt_in = b.src.copy(), b.tgt_in.copy()
    src[src == PAD] = rng.integers(1, SRC_VOCAB, int((src == PAD).sum()))
    tgt_in[tgt_in == PAD] = rng.integers(3, TGT_VOCAB, int((tgt_in == PAD).sum()))
    return Batch(src, b.src_lengths, tgt_in, b.tgt_out, b.tgt_lengths)


def _model(cell: str, attention: str | None, bidirectional: bool, **kw: Any) -> Seq2Seq:
    return Seq2Seq(cell, SRC_VOCAB, TGT_VOCAB, embedding_dim=5, hidden_size=4, num_layers=2,
                   bidirectional=bidirectional, attention=attention, dtype=np.float64, seed=3,
                   **kw)  # fmt: skip


def _check_parity(model: Seq2Seq, batch: Batch, record: Callable[[str, float], None]) -> None:
    """One forward and backward of each model: every output and gradient equal to RTOL."""
    logits, weights = model.forward(batch)
    loss, dlogits = model.loss(logits, batch)
    grads = model.backward(dlogits)

    tm = st.from_seq2seq(model)
    src, src_lengths, tgt_in, tgt_out, tgt_lengths = st.batch_tensors(batch)
    t_logits, t_weights = tm(src, src_lengths, tgt_in, tgt_lengths)
    t_loss = tm.loss(t_logits, tgt_out, tgt_lengths)
    t_loss.backward()

    what = repr(model)
    record("seq2seq vs torch, logits", assert_close(logits, t_logits, rtol=RTOL, what=what))
    record("seq2seq vs torch, loss", assert_close(loss, t_loss, rtol=RTOL, what=what))
    assert (weights is None) == (t_weights is None) == (model.attention is None)
    if weights is not None:
        record("seq2seq vs torch, attention weights",
               assert_close(weights, t_weights, rtol=RTOL, what=what))  # fmt: skip
        # the padding has weight exactly 0, and each valid row sums to 1
        src_pad = np.arange(batch.src.shape[0])[None, :] >= batch.src_lengths[:, None]
        assert (weights[:, src_pad] == 0).all()
        valid = np.arange(batch.tgt_in.shape[0])[:, None] < batch.tgt_lengths[None, :]
        np.testing.assert_allclose(weights.sum(axis=2)[valid], 1.0, rtol=1e-12)
        assert (weights[~valid] == 0).all()
    t_params = dict(tm.named_parameters())
    assert set(grads) == set(t_params) == set(model.named_parameters())
    for name, p in t_params.items():
        assert p.grad is not None, name
        g = grads[name]
        assert np.abs(g).max() > 0, f"{name}: a zero gradient compares nothing"
        record("seq2seq vs torch, gradients",
               assert_close(g, p.grad, rtol=RTOL, what=f"{what}: {name}"))  # fmt: skip


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("attention", ["dot", "general", "additive", None])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_same_model_in_torch(
    cell: str,
    attention: str | None,
    bidirectional: bool,
    record_worst_error: Callable[[str, float], None],
) -> None:
    model = _model(cell, attention, bidirectional)
    _check_parity(model, _batch(), record_worst_error)


def test_relu_rnn_additive_attn_size_and_no_forget_bias(
    record_worst_error: Callable[[str, float], None],
) -> None:
    """The remaining configurations: the ReLU RNN, an additive score of its own size."""
    model = _model("rnn_relu", "additive", True, attn_size=3)
    _check_parity(model, _batch(1), record_worst_error)
    lstm = _model("lstm", "general", False, forget_bias=None)
    _check_parity(lstm, _batch(2), record_worst_error)


def test_padding_changes_nothing() -> None:
    """The torch model ignores what lies beyond the lengths as fastrnn's does: junk in the
    padding gives the logits of PAD in the padding (a check of the parity test's batch)."""
    model = _model("gru", "general", True)
    tm = st.from_seq2seq(model)
    junk = st.batch_tensors(_batch())
    clean = Batch.of(
        [junk[0][: n, b].numpy() for b, n in enumerate(SRC_LENGTHS)],
        [junk[3][: n - 1, b].numpy() for b, n in enumerate(TGT_LENGTHS)],
    )  # fmt: skip
    c = st.batch_tensors(clean)
    with torch.no_grad():
        a, wa = tm(junk[0], junk[1], junk[2], junk[4])
        b, wb = tm(c[0], c[1], c[2], c[4])
    valid = torch.arange(a.shape[0])[:, None] < junk[4][None, :]
    assert torch.equal(a[valid], b[valid]) and torch.equal(wa, wb)


def test_training_steps_match() -> None:
    """Three Adam steps with global-norm clipping (what the bench times) move both models'
    parameters alike."""
    model = _model("lstm", "general", True)
    tm = st.from_seq2seq(model)
    opt = optim.Adam(lr=0.01)
    t_opt = torch.optim.Adam(tm.parameters(), lr=0.01)
    batch = _batch()
    tensors = st.batch_tensors(batch)
    for _ in range(3):
        res = model.train_step(batch, opt, clip_norm=0.1)
        t_opt.zero_grad()
        logits, _ = tm(tensors[0], tensors[1], tensors[2], tensors[4])
        t_loss = tm.loss(logits, tensors[3], tensors[4])
        t_loss.backward()
        t_norm = torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.1)
        t_opt.step()
        assert res.loss == pytest.approx(t_loss.item(), rel=1e-9)
        assert res.grad_norm == pytest.approx(t_norm.item(), rel=1e-9)
        assert res.grad_norm > 0.1  # the clipping acted
    for name, p in tm.named_parameters():
        assert_close(model.named_parameters()[name], p, rtol=1e-9, what=name)


def test_float32_models_agree() -> None:
    """In float32 (the bench's dtype) the two models compute the same loss, to float32's
    rounding."""
    model = Seq2Seq("gru", SRC_VOCAB, TGT_VOCAB, embedding_dim=8, hidden_size=16, seed=0)
    tm = st.from_seq2seq(model)
    assert all(p.dtype == torch.float32 for p in tm.parameters())
    batch = _batch()
    loss = model.loss(model.forward(batch)[0], batch)[0]
    t = st.batch_tensors(batch)
    with torch.no_grad():
        t_loss = tm.loss(tm(t[0], t[1], t[2], t[4])[0], t[3], t[4])
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)


def test_from_seq2seq_needs_a_seq2seq() -> None:
    with pytest.raises(TypeError, match="model: expected a fastrnn Seq2Seq, got dict"):
        st.from_seq2seq({})  # type: ignore[arg-type]
