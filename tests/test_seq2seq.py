"""The encoder-decoder (fastrnn.Seq2Seq): gradients of the whole model against central finite
differences in float64, padding invariance, greedy and beam-search decoding (beam 1 is greedy, a
wide beam is exhaustive search, decoding together is decoding alone), save and load (also of
crafted files), argument errors, and a small learning test (reversing digit strings)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn.training import optim
from fastrnn.training.seq2seq import (
    BOS,
    EOS,
    PAD,
    Batch,
    Hypothesis,
    Seq2Seq,
    Seq2SeqVocab,
    _param_shapes,
    pad,
)
from helpers import central_difference

VS, VT = 7, 8  # source ids 1..6, target ids 3..7 (+ PAD, BOS, EOS)


def make_model(cell: str = "lstm", attention: str | None = "general", **kw: Any) -> Seq2Seq:
    kw = {"embedding_dim": 4, "hidden_size": 3, "dtype": np.float64, "seed": 0, **kw}
    return Seq2Seq(cell, VS, VT, attention=attention, **kw)


def make_batch(seed: int = 0, src_lens: Any = (4, 2, 5), tgt_lens: Any = (2, 3, 0)) -> Batch:
    """Variable lengths on both sides (a target may be empty: EOS only)."""
    rng = np.random.default_rng(seed)
    sources = [rng.integers(1, VS, n) for n in src_lens]
    targets = [rng.integers(3, VT, n) for n in tgt_lens]
    return Batch.of(sources, targets)


def decoding_model(cell: str = "gru", attention: str | None = "general", **kw: Any) -> Seq2Seq:
    """A float64 model trained a little (40 steps of reversing id strings), so that its outputs
    have various lengths, most of them ended by EOS (a random model's rarely are)."""
    m = make_model(cell, attention, hidden_size=6, **kw)
    opt = optim.Adam(lr=2e-2)
    rng = np.random.default_rng(0)
    for _ in range(40):
        s = [rng.integers(1, VS, rng.integers(1, 6)) for _ in range(16)]
        m.train_step(Batch.of(s, [x[::-1] % 5 + 3 for x in s]), opt)
    return m


# ------------------------------------------------------------------------------------ gradients

GRAD_CASES = [
    ("lstm", "general", False, 1),
    ("gru", "dot", True, 2),
    ("lstm", "additive", True, 2),
    ("gru", None, False, 2),
    ("rnn", "general", True, 1),
    ("lstm", "dot", False, 2),
    ("gru", "additive", False, 1),
    ("lstm", None, True, 2),
    ("rnn_relu", "additive", True, 1),
]


@pytest.mark.parametrize(
    ("cell", "attention", "bidirectional", "num_layers"),
    GRAD_CASES,
    ids=[f"{c}-{a}-{'bi' if d else 'uni'}-L{n}" for c, a, d, n in GRAD_CASES],
)
def test_gradients_match_finite_differences(
    cell: str, attention: str | None, bidirectional: bool, num_layers: int, record_worst_error: Any
) -> None:
    """Every parameter's gradient (the loss's mean over the real target tokens) against central
    differences in float64: a random direction over the whole array, and single entries (all of
    a small array, 12 of a larger one)."""
    kw = {"attn_size": 5} if attention == "additive" else {}
    m = make_model(cell, attention, bidirectional=bidirectional, num_layers=num_layers, **kw)
    batch = make_batch()
    m.train()
    logits, _ = m.forward(batch)
    _, dlogits = m.loss(logits, batch)
    grads = m.backward(dlogits)
    params = m.named_parameters()
    assert set(grads) == set(params)

    def loss() -> float:
        return m.evaluate(batch)

    rng = np.random.default_rng(1)
    eps = 1e-5  # rounding (~1e-16 / eps) and truncation (~eps^2) both below 1e-7 here
    for name, p in params.items():
        g = grads[name]
        assert g.shape == p.shape and g.dtype == np.float64, name
        scale = max(float(np.abs(g).max()), 1e-3)
        # a direction over the whole array
        u = rng.standard_normal(p.shape)
        keep = p.copy()
        p += eps * u
        up = loss()
        p[...] = keep - eps * u
        down = loss()
        p[...] = keep
        fd = (up - down) / (2 * eps)
        err = abs(fd - float((g * u).sum())) / (scale * np.sqrt(u.size))
        # single entries
        flat = range(p.size) if p.size <= 30 else rng.choice(p.size, 12, replace=False)
        for i in flat:
            idx = np.unravel_index(int(i), p.shape)
            err = max(err, abs(central_difference(loss, p, idx, eps) - g[idx]) / scale)
        record_worst_error(f"seq2seq gradients vs finite differences ({cell})", err)
        assert err < 1e-6, f"{name}: relative error {err:.2e}"


def test_the_bridge_and_the_attention_gradients_are_not_zero() -> None:
    """The encoder learns through both paths: its final state (the decoder's initial state) and
    the attention. Without attention the gradient still reaches every encoder parameter."""
    for attention in ("general", None):
        m = make_model("lstm", attention, bidirectional=True, num_layers=2)
        b = make_batch()
        logits, _ = m.forward(b)
        grads = m.backward(m.loss(logits, b)[1])
        for name, g in grads.items():
            if name.startswith(("encoder.", "decoder.", "combine", "out", "attention")):
                assert np.abs(g).max() > 0, name


def test_the_decoder_starts_from_the_encoders_final_state() -> None:
    """Bidirectional: the decoder's initial state of layer l is [forward; backward] of layer l's
    final states (h and c), the order of the encoder's outputs."""
    m = make_model("lstm", bidirectional=True, num_layers=2)
    b = make_batch()
    m.eval()
    _, (h, c) = m.encoder(m.src_embedding(b.src), None, lengths=b.src_lengths)
    _, (h0, c0) = m._encode(b.src, b.src_lengths)
    assert h0.shape == (2, 3, 6) and m.decoder_size == 6 and m.config["hidden_size"] == 3
    for layer in range(2):
        np.testing.assert_array_equal(
            h0[layer], np.concatenate([h[2 * layer], h[2 * layer + 1]], 1)
        )
        np.testing.assert_array_equal(
            c0[layer], np.concatenate([c[2 * layer], c[2 * layer + 1]], 1)
        )


# ------------------------------------------------------------------------------------ padding


@pytest.mark.parametrize("attention", ["general", "additive", None])
def test_padding_changes_nothing(attention: str | None) -> None:
    """More padding (longer arrays), holding anything at the padded positions: the logits at the
    real target steps, the loss and every gradient are unchanged; the attention weights are
    exactly zero over padded source steps and on padded target steps."""
    m = make_model("gru", attention, bidirectional=True, num_layers=2)
    b = make_batch()
    rng = np.random.default_rng(5)
    Ts, B = b.src.shape
    Tt = b.tgt_in.shape[0]
    src = rng.integers(0, VS, (Ts + 3, B))
    tgt_in = rng.integers(0, VT, (Tt + 2, B))
    tgt_out = rng.integers(0, VT, (Tt + 2, B))
    src[:Ts][b.src > 0] = b.src[b.src > 0]
    for t in range(Tt):
        real = t < b.tgt_lengths
        tgt_in[t, real] = b.tgt_in[t, real]
        tgt_out[t, real] = b.tgt_out[t, real]
    padded = Batch(src, b.src_lengths, tgt_in, tgt_out, b.tgt_lengths)

    def run(batch: Batch) -> tuple[Any, Any, float, dict[str, Any]]:
        logits, w = m.forward(batch)
        value, d = m.loss(logits, batch)
        return logits, w, value, {k: v.copy() for k, v in m.backward(d).items()}

    l1, w1, v1, g1 = run(b)
    l2, w2, v2, g2 = run(padded)
    real = np.arange(Tt)[:, None] < b.tgt_lengths
    np.testing.assert_allclose(l2[:Tt][real], l1[real], rtol=1e-12, atol=1e-13)
    assert v2 == pytest.approx(v1, rel=1e-12)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-10, atol=1e-13, err_msg=k)
    if attention is None:
        assert w1 is None and w2 is None
        return
    for w, T in ((w1, Ts), (w2, Ts + 3)):
        for j in range(B):
            n = b.src_lengths[j]
            assert (w[:, j, n:] == 0).all()
            assert (w[b.tgt_lengths[j] :, j] == 0).all()
            np.testing.assert_allclose(w[: b.tgt_lengths[j], j, :n].sum(-1), 1, rtol=1e-12)
        assert w.shape[2] == T
    np.testing.assert_allclose(w2[:Tt, :, :Ts], w1, rtol=1e-12, atol=1e-14)


def test_the_loss_is_the_mean_over_real_target_tokens() -> None:
    """The loss is the mean of -log p(target) over the tokens within tgt_lengths (EOS included),
    computed here from the logits."""
    m = make_model()
    b = make_batch()
    logits, _ = m.forward(b)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    terms = [-logp[t, j, b.tgt_out[t, j]] for j in range(3) for t in range(int(b.tgt_lengths[j]))]
    assert len(terms) == 3 + 4 + 1
    assert m.loss(logits, b)[0] == pytest.approx(np.mean(terms), rel=1e-12)


# ------------------------------------------------------------------------------------ decoding


def _sources(seed: int = 3, B: int = 6) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return pad([rng.integers(1, VS, rng.integers(1, 6)) for _ in range(B)])


def _same(a: Hypothesis, b: Hypothesis) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.finished == b.finished
    assert a.score == pytest.approx(b.score, rel=1e-12, abs=1e-12)
    if a.attention is None:
        assert b.attention is None
    else:
        assert b.attention is not None
        np.testing.assert_allclose(a.attention, b.attention, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("attention", ["general", "dot", "additive", None])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_beam_of_one_is_greedy(cell: str, attention: str | None) -> None:
    """beam_size=1 gives greedy's ids, scores, ends and attention (the cut ones too)."""
    m = decoding_model(cell, attention, bidirectional=True)
    src, lengths = _sources()
    ends = set()
    for max_len in (2, 12):
        greedy = m.greedy(src, lengths, max_len)
        beam = m.beam_search(src, lengths, max_len, beam_size=1)
        for g, b in zip(greedy, beam, strict=True):
            _same(g, b)
        assert any(len(h.ids) > 0 for h in greedy)  # not all empty: the test means something
        ends |= {h.finished for h in greedy}
    assert ends == {True, False}


def test_decoding_is_consistent_with_teacher_forcing() -> None:
    """A hypothesis's score is the log-probability teacher forcing gives its ids (and its EOS),
    and its attention rows are the weights teacher forcing gives those steps."""
    m = decoding_model("lstm", "additive", num_layers=2)
    src, lengths = _sources()
    for hyps in (m.greedy(src, lengths, 8), m.beam_search(src, lengths, 8, beam_size=3)):
        for j, h in enumerate(hyps):
            n = len(h.ids)
            one = Batch.of([src[: lengths[j], j]], [h.ids])
            m.eval()
            logits, w = m.forward(one)
            z = logits[:, 0] - logits[:, 0].max(-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
            want = sum(logp[t, one.tgt_out[t, 0]] for t in range(n + h.finished))
            assert h.score == pytest.approx(want, rel=1e-10)
            assert w is not None and h.attention is not None
            np.testing.assert_allclose(h.attention, w[:n, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("length_penalty", [0.0, 0.8, 3.0])
@pytest.mark.parametrize("attention", ["general", None])
def test_a_wide_beam_is_exhaustive_search(attention: str | None, length_penalty: float) -> None:
    """With two output characters, a beam wider than the hypotheses there are never drops one:
    its result is the best of all outputs of at most max_len steps, found by scoring every one
    of them with teacher forcing (the ranking of beam_search: score / ((5 + n) / 6) ** alpha)."""
    m = Seq2Seq("gru", VS, 5, embedding_dim=4, hidden_size=6, attention=attention,
                dtype=np.float64, seed=2)  # fmt: skip
    sd = m.state_dict()
    sd["out.bias"][EOS] -= 1.0  # fewer empty outputs
    m.load_state_dict(sd)
    max_len = 4
    src, lengths = _sources(B=8)
    m.eval()
    beam = m.beam_search(src, lengths, max_len, beam_size=40, length_penalty=length_penalty)

    def lp(n: int) -> float:
        return float(((5 + n) / 6) ** length_penalty)

    for j in range(src.shape[1]):
        best: tuple[float, tuple[int, ...] | None] = (-np.inf, None)
        for n in range(max_len + 1):
            for ids in itertools.product((3, 4), repeat=n):
                logits, _ = m.forward(Batch.of([src[: lengths[j], j]], [np.array(ids, int)]))
                z = logits[:, 0] - logits[:, 0].max(-1, keepdims=True)
                logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
                score = sum(logp[t, i] for t, i in enumerate(ids))
                if n < max_len:  # finished: EOS at step n
                    rank = (score + logp[n, EOS]) / lp(n + 1)
                else:  # cut at max_len
                    rank = score / lp(n)
                if rank > best[0]:
                    best = (rank, ids)
        h = beam[j]
        steps = len(h.ids) + h.finished
        assert h.score / lp(steps) == pytest.approx(best[0], rel=1e-10)
        assert tuple(h.ids) == best[1]


def test_beam_is_at_least_as_probable_as_greedy_here() -> None:
    """On a partly trained model, beams of 2, 4 and 8 find outputs at least as probable as
    greedy's for every source (no theorem: a beam can drop greedy's prefix; checked here on
    this model and these sources), and more probable for some."""
    m = Seq2Seq("lstm", VS, VT, embedding_dim=8, hidden_size=16, seed=0)
    opt = optim.Adam(lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(30):
        s = [rng.integers(1, VS, rng.integers(1, 5)) for _ in range(16)]
        m.train_step(Batch.of(s, [np.sort(x) % 5 + 3 for x in s]), opt)
    src, lengths = _sources(seed=11, B=40)
    greedy = m.greedy(src, lengths, 8)
    better = 0
    for k in (2, 4, 8):
        beam = m.beam_search(src, lengths, 8, beam_size=k)
        for g, b in zip(greedy, beam, strict=True):
            assert b.score >= g.score - 1e-5
            better += b.score > g.score + 1e-5
    assert better > 0


@pytest.mark.parametrize(("name", "value"), [("out.weight", np.nan), ("out.bias", np.inf)])
def test_decoding_a_model_with_non_finite_outputs_is_a_value_error(name: str, value: float) -> None:
    """NaN or inf weights (set directly, or diverged) make no outputs to choose from: both
    decoders say so, instead of an empty max() or NaN scores."""
    m = make_model()
    m.named_parameters()[name][1] = value
    src, lengths = _sources()
    msg = r"the model's outputs are not finite \(NaN or inf\): its logits for 6 of 6 decoder rows"
    with pytest.raises(ValueError, match=msg):
        m.greedy(src, lengths, 4)
    msg = msg.replace("6 of 6", "24 of 24")
    with pytest.raises(ValueError, match=msg):
        m.beam_search(src, lengths, 4, beam_size=4)


def test_decoding_together_is_decoding_alone() -> None:
    """Each source's result does not depend on the others in its batch (nor on their padding)."""
    m = decoding_model("gru", "general", bidirectional=True)
    src, lengths = _sources()
    together = (m.greedy(src, lengths, 6), m.beam_search(src, lengths, 6, 3, length_penalty=0.5))
    for j in range(src.shape[1]):
        one = src[: lengths[j], j : j + 1]
        _same(together[0][j], m.greedy(one, None, 6)[0])
        _same(together[1][j], m.beam_search(one, None, 6, 3, length_penalty=0.5)[0])


def test_decoding_restores_the_mode_and_keeps_the_weights() -> None:
    m = decoding_model()
    before = m.state_dict()
    src, lengths = _sources()
    m.greedy(src, lengths, 4)
    m.beam_search(src, lengths, 4)
    assert m.training and m.decoder.training and m.encoder.training
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    m.eval()
    m.greedy(src, lengths, 4)
    assert not m.training and not m.decoder.training


# ------------------------------------------------------------------------------------ vocabulary


def test_vocab_round_trip_and_batches() -> None:
    v = Seq2SeqVocab.from_pairs(["29 Nov 2026", "1/2/03"], ["2026-11-29", "2003-01-02"])
    assert v.src.chars == " /012369Nov" and v.tgt.chars == "-012369"
    assert (v.src_size, v.tgt_size) == (len(v.src.chars) + 1, len(v.tgt.chars) + 3)
    assert v.decode_target(v.encode_target("2026-11-29")) == "2026-11-29"
    assert v.decode_source(v.encode_source("1/2/03")) == "1/2/03"
    b = v.batch(["29 Nov 2026", "1/2/03"], ["2026-11-29", ""])
    assert b.src.shape == (11, 2) and b.src_lengths.tolist() == [11, 6]
    assert b.tgt_in.shape == (11, 2) and b.tgt_lengths.tolist() == [11, 1]
    assert b.tgt_in[0].tolist() == [BOS, BOS] and b.tgt_out[0, 1] == EOS
    assert b.tgt_out[10, 0] == EOS and (b.tgt_out[1:, 1] == PAD).all()
    np.testing.assert_array_equal(b.tgt_in[1:11, 0], b.tgt_out[:10, 0])
    assert v.decode_target(b.tgt_out[:10, 0]) == "2026-11-29"
    assert Seq2SeqVocab.from_json(json.loads(json.dumps(v.to_json()))) == v
    src, lengths = v.sources(["1/2/03"])
    assert src.shape == (6, 1) and lengths.tolist() == [6]


def test_vocab_errors_name_the_string() -> None:
    v = Seq2SeqVocab("abc", "xyz")
    with pytest.raises(ValueError, match=r"sources\[1\]: text: the character 'd' \(index 0\)"):
        v.batch(["a", "d"], ["x", "y"])
    with pytest.raises(ValueError, match=r"targets\[0\]: text: the character 'a'"):
        v.batch(["a"], ["a"])
    with pytest.raises(ValueError, match=r"sources\[0\]: is empty"):
        v.batch([""], ["x"])
    with pytest.raises(ValueError, match=r"targets: expected one per source \(2\), got 1"):
        v.batch(["a", "b"], ["x"])
    with pytest.raises(TypeError, match=r"texts: expected a sequence of strings, got str"):
        v.sources("abc")
    with pytest.raises(ValueError, match=r"src_chars: chars: 'a' occurs more than once"):
        Seq2SeqVocab("aa", "x")
    with pytest.raises(ValueError, match=r"ids: ids must be >= 3"):
        v.decode_target([EOS])


def test_translate_strings() -> None:
    v = Seq2SeqVocab("0123456", "01234")
    m = Seq2Seq("gru", v.src_size, v.tgt_size, embedding_dim=4, hidden_size=6, seed=0)
    src, lengths = v.sources(["12", "3456"])
    want = [v.decode_target(h.ids) for h in m.greedy(src, lengths, 5)]
    assert v.translate(m, ["12", "3456"], max_len=5) == want
    beam = [v.decode_target(h.ids) for h in m.beam_search(src, lengths, 5, 3)]
    assert v.translate(m, ["12", "3456"], max_len=5, beam_size=3) == beam


# ------------------------------------------------------------------------------------ the model


def test_parameters_names_and_shapes() -> None:
    """The file's statement of the shapes is the model's, for every attention and direction."""
    for attention, bidirectional, attn_size in itertools.product(
        ["general", "dot", "additive", None], [False, True], [None, 7]
    ):
        if attn_size is not None and attention != "additive":
            continue
        m = Seq2Seq("lstm", VS, VT, embedding_dim=4, hidden_size=3, num_layers=2, seed=0,
                    bidirectional=bidirectional, attention=attention,
                    attn_size=attn_size)  # fmt: skip
        shapes = {k: v.shape for k, v in m.named_parameters().items()}
        assert shapes == _param_shapes(m.config)
    m = Seq2Seq("lstm", VS, VT, embedding_dim=4, hidden_size=3, num_layers=2,
                bidirectional=True, attention="additive", seed=0)  # fmt: skip
    shapes = {k: v.shape for k, v in m.named_parameters().items()}
    names = list(shapes)
    assert names[:2] == ["src_embedding.weight", "encoder.weight_ih_l0"]
    assert "encoder.weight_hh_l1_reverse" in names and "decoder.weight_hh_l1" in names
    assert names[-7:-4] == ["attention.query_weight", "attention.key_weight", "attention.v"]
    assert names[-4:] == ["combine.weight", "combine.bias", "out.weight", "out.bias"]
    assert shapes["combine.weight"] == (6, 12) and shapes["decoder.weight_hh_l0"] == (24, 6)
    assert fastrnn.Seq2Seq is Seq2Seq and fastrnn.seq2seq.Seq2Seq is Seq2Seq


def test_forget_bias() -> None:
    """LSTM: the forget gate's biases sum to forget_bias in both stacks (1 by default); None
    keeps PyTorch's initialisation; the other cells have none."""
    m = Seq2Seq("lstm", VS, VT, hidden_size=4, bidirectional=True, num_layers=2, seed=0)
    assert m.config["forget_bias"] == 1.0
    for layer, H in ((m.encoder, 4), (m.decoder, 8)):
        for name, p in layer.named_parameters():
            if name.startswith("bias_ih"):
                assert (p[H : 2 * H] == 1).all() and not (p[:H] == 0).all(), name
            if name.startswith("bias_hh"):
                assert (p[H : 2 * H] == 0).all(), name
    m = Seq2Seq("lstm", VS, VT, hidden_size=4, forget_bias=None, seed=0)
    assert m.config["forget_bias"] is None and not (m.encoder.bias_ih_l0[4:8] == 1).all()
    assert Seq2Seq("gru", VS, VT, hidden_size=4).config["forget_bias"] is None
    with pytest.raises(ValueError, match=r"forget_bias: only an LSTM has a forget gate"):
        Seq2Seq("gru", VS, VT, forget_bias=1.0)
    a = Seq2Seq("lstm", VS, VT, hidden_size=4, forget_bias=2.5, seed=3).state_dict()
    b = Seq2Seq("lstm", VS, VT, hidden_size=4, forget_bias=2.5, seed=3).state_dict()
    assert all((a[k] == b[k]).all() for k in a)  # the seed makes it reproducible
    assert (a["decoder.bias_ih_l0"][4:8] == 2.5).all()


def test_train_step_and_evaluate() -> None:
    """train_step lowers the loss on its batch; its grad_norm is the norm before clipping; it
    matches forward + loss + backward + the optimizer's step."""
    b = make_batch()
    m = make_model(bidirectional=True)
    twin = make_model(bidirectional=True)
    opt, opt2 = optim.SGD(lr=0.5), optim.SGD(lr=0.5)
    before = m.evaluate(b)
    r = m.train_step(b, opt, clip_norm=1e-3)
    assert r.state is None and r.grad_norm > 1e-3 and r.loss == pytest.approx(before)
    logits, _ = twin.forward(b)
    grads = twin.backward(twin.loss(logits, b)[1])
    assert r.grad_norm == pytest.approx(optim.global_norm(grads))
    optim.clip_grad_norm(grads, 1e-3)
    opt2.step(twin.named_parameters(), grads)
    for k, v in m.state_dict().items():
        np.testing.assert_allclose(v, twin.state_dict()[k], rtol=1e-12, atol=1e-15)
    for _ in range(20):
        m.train_step(b, opt, clip_value=0.5)
    assert m.evaluate(b) < 0.7 * before
    assert m.training


@pytest.mark.parametrize("attention", ["general", "additive"])
def test_training_is_bit_identical_across_thread_counts(attention: str) -> None:
    """Three Adam steps of a float32 model at 1, 2 and 3 threads: the same losses and weights,
    bit for bit (every kernel of the step splits its work in fixed pieces)."""
    from fastrnn.training import tasks

    src, tgt = tasks.date_alphabet()
    vocab = Seq2SeqVocab(src, tgt)
    pairs = tasks.dates(48, seed=0)
    batch = vocab.batch(pairs.sources, pairs.targets)
    before = fastrnn.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            m = Seq2Seq("lstm", vocab.src_size, vocab.tgt_size, hidden_size=24,
                        bidirectional=True, attention=attention, seed=0)  # fmt: skip
            opt = optim.Adam(lr=3e-3)
            losses = [m.train_step(batch, opt, clip_norm=1.0).loss for _ in range(3)]
            runs.append((losses, m.state_dict()))
    finally:
        fastrnn.set_num_threads(before)
    for losses, sd in runs[1:]:
        assert losses == runs[0][0]
        for k, v in sd.items():
            np.testing.assert_array_equal(v, runs[0][1][k], err_msg=k)


def test_float32_model_runs_in_float32() -> None:
    m = Seq2Seq("gru", VS, VT, embedding_dim=4, hidden_size=5, seed=0)
    b = make_batch()
    logits, w = m.forward(b)
    assert logits.dtype == np.float32 and w is not None and w.dtype == np.float32
    assert all(g.dtype == np.float32 for g in m.backward(m.loss(logits, b)[1]).values())
    h = m.greedy(b.src, b.src_lengths, 4)[0]
    assert h.attention is not None and h.attention.dtype == np.float32


# ------------------------------------------------------------------------------------ files


def _trained(path: Path) -> tuple[Seq2Seq, optim.Optimizer, Seq2SeqVocab]:
    v = Seq2SeqVocab("abcdef", "uvwxy")
    m = Seq2Seq("lstm", v.src_size, v.tgt_size, embedding_dim=4, hidden_size=5, seed=0,
                bidirectional=True, num_layers=2, attention="additive", attn_size=3)  # fmt: skip
    opt = optim.Adam(lr=0.01)
    m.train_step(v.batch(["abc", "fed"], ["uv", "yyy"]), opt)
    m.save(path, opt, vocab=v, note="hi")
    return m, opt, v


def test_save_load_round_trip(tmp_path: Path) -> None:
    """The config, the weights, the vocabulary and extras come back; the outputs are equal and
    the optimizer resumes where it was (the next steps equal)."""
    m, opt, v = _trained(tmp_path / "m.npz")
    back, opt2, extra = Seq2Seq.load(tmp_path / "m.npz")
    assert back.config == m.config and extra == {"vocab": v, "note": "hi"}
    assert opt2 is not None and type(opt2) is optim.Adam and opt2.steps == 1
    b = v.batch(["ab", "cdef"], ["x", "uvw"])
    np.testing.assert_array_equal(back.forward(b)[0], m.forward(b)[0])
    for _ in range(2):
        assert back.train_step(b, opt2).loss == m.train_step(b, opt).loss
    for k, val in m.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], val)
    assert v.translate(back, ["abc"], max_len=4, beam_size=2) == v.translate(
        m, ["abc"], max_len=4, beam_size=2
    )
    g = Seq2Seq("gru", VS, VT, attention=None, hidden_size=3, seed=None)
    g.save(tmp_path / "g.npz")
    g2, none, extra = Seq2Seq.load(tmp_path / "g.npz")
    assert none is None and extra == {} and g2.config == g.config and g2.attention is None


def _rewrite(tmp_path: Path, src: Path, mutate: Any) -> Path:
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    mutate(arrays, meta)
    out = tmp_path / "crafted.npz"
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    return out


def _config(key: str, value: Any) -> Any:
    return lambda arrays, meta: meta["config"].__setitem__(key, value)


CRAFTED = {
    "format": (
        lambda a, meta: meta.__setitem__("format", "fastrnn.SequenceModel/1"),
        r"not a fastrnn Seq2Seq file \(fastrnn\.SequenceModel/1\)",
    ),
    "attention": (_config("attention", "luong"), r"a bad config \(attention: expected one of"),
    "attn_size": (
        _config("attention", "general"),
        r"a bad config \(attn_size: only for the additive score",
    ),
    "hidden huge": (
        _config("hidden_size", 10**6),
        r"encoder\.weight_ih_l0 has shape \(20, 4\), its config says \(4000000, 4\)",
    ),
    "attn_size huge": (
        _config("attn_size", 10**9),
        r"attention\.query_weight has shape \(3, 10\), its config says \(1000000000, 10\)",
    ),
    "layers huge": (_config("num_layers", 10**7), r"its config declares 10000000 layers"),
    "tgt vocab 2": (
        _config("tgt_vocab_size", 2),
        r"a bad config \(tgt_vocab_size: must be >= 3, got 2\)",
    ),
    "forget_bias gru": (
        _config("cell", "gru"),
        r"a bad config \(forget_bias: only an LSTM has a forget gate",
    ),
    "forget_bias str": (
        _config("forget_bias", "1"),
        r"a bad config \(forget_bias: expected a number or None",
    ),
    "missing key": (
        lambda a, meta: meta["config"].pop("src_vocab_size"),
        r"a bad config \(unknown keys \[\], missing keys \['src_vocab_size'\]\)",
    ),
    "vocab size": (
        lambda a, meta: meta["extra"].__setitem__("vocab", {"src": "abc", "tgt": "uvwxy"}),
        r"extra\['vocab'\] makes vocabularies of 4 and 8 ids, the model has 7 and 8",
    ),
    "vocab str": (
        lambda a, meta: meta["extra"].__setitem__("vocab", "abcdef"),
        r"extra\['vocab'\] is not a Seq2SeqVocab \(expected an object",
    ),
    "vocab dup": (
        lambda a, meta: meta["extra"].__setitem__("vocab", {"src": "abcdea", "tgt": "uvwxy"}),
        r"extra\['vocab'\] is not a Seq2SeqVocab \(src_chars: chars: 'a' occurs more than once",
    ),
    "param shape": (
        lambda a, meta: a.__setitem__("param/combine.bias", np.zeros(3)),
        r"combine\.bias has shape \(3,\), its config says \(10,\)",
    ),
    "param nan": (
        lambda a, meta: a["param/out.bias"].__setitem__(0, np.nan),
        r"out: state_dict\['bias'\]: contains NaN or infinity",
    ),
    "opt shape": (
        lambda a, meta: a.__setitem__("opt/out.bias/exp_avg", np.zeros(2, np.float32)),
        r"optimizer: state_dict\['state'\]\['out\.bias'\]\['exp_avg'\]: expected shape \(8,\)",
    ),
    "junk": (
        lambda a, meta: a.__setitem__("param/attention.weight", np.zeros((10, 10))),
        r"an array the format does not have: 'param/attention\.weight'",
    ),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_files_are_a_value_error_naming_the_file(tmp_path: Path, case: str) -> None:
    good = tmp_path / "m.npz"
    _trained(good)
    mutate, problem = CRAFTED[case]
    path = _rewrite(tmp_path, good, mutate)
    with pytest.raises(ValueError, match=rf"^path: {re.escape(str(path))}: {problem}"):
        Seq2Seq.load(path)


def test_the_two_models_refuse_each_others_files(tmp_path: Path) -> None:
    _trained(tmp_path / "s.npz")
    fastrnn.SequenceModel("gru", 5, 8, 3, embedding_dim=4, seed=0).save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"not a fastrnn SequenceModel file \(fastrnn\.Seq2Seq/1"):
        fastrnn.SequenceModel.load(tmp_path / "s.npz")
    with pytest.raises(ValueError, match=r"not a fastrnn Seq2Seq file \(fastrnn\.SequenceModel/1"):
        Seq2Seq.load(tmp_path / "m.npz")
    with pytest.raises(FileNotFoundError):
        Seq2Seq.load(tmp_path / "missing.npz")


def test_save_checks_the_vocabulary(tmp_path: Path) -> None:
    m = make_model()
    with pytest.raises(ValueError, match=r"vocab: extra\['vocab'\] makes vocabularies of 4 and"):
        m.save(tmp_path / "m.npz", vocab=Seq2SeqVocab("abc", "xyzuv"))
    with pytest.raises(TypeError, match=r"vocab: expected a Seq2SeqVocab, got str"):
        m.save(tmp_path / "m.npz", vocab="abc")  # type: ignore[arg-type]
    m.save(tmp_path / "m.npz", vocab=Seq2SeqVocab("abcdef", "vwxyz"))


# ------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"cell": "transformer"}, ValueError, r"cell: expected one of"),
        ({"src_vocab_size": 1}, ValueError, r"src_vocab_size: must be >= 2, got 1"),
        ({"tgt_vocab_size": 3.0}, TypeError, r"tgt_vocab_size: expected an int, got float"),
        ({"attention": "luong"}, ValueError, r"attention: expected one of \(None, 'dot'"),
        ({"attention": "dot", "attn_size": 4}, ValueError, r"attn_size: only for the additive"),
        ({"attention": "additive", "attn_size": 0}, ValueError, r"attn_size: must be >= 1"),
        ({"bidirectional": 1}, TypeError, r"bidirectional: expected a bool, got int"),
        ({"hidden_size": 0}, ValueError, r"hidden_size: must be >= 1, got 0"),
        ({"dropout": 1.5}, ValueError, r"dropout: must be <= 1"),
        ({"forget_bias": float("nan")}, ValueError, r"forget_bias: must be finite"),
        ({"dtype": np.float16}, TypeError, r"dtype: expected float32 or float64"),
        ({"seed": -1}, ValueError, r"seed: must be >= 0"),
    ],
)
def test_constructor_errors(kw: dict[str, Any], error: type[Exception], message: str) -> None:
    args = {"cell": "lstm", "src_vocab_size": VS, "tgt_vocab_size": VT, **kw}
    with pytest.raises(error, match=message):
        Seq2Seq(**args)


def test_attention_none_is_also_the_string() -> None:
    assert Seq2Seq("gru", VS, VT, attention="none").config["attention"] is None


def test_batch_and_decoding_errors() -> None:
    b = make_batch()
    with pytest.raises(ValueError, match=r"src_lengths: values must be in \[1, 5\], got \[0, 5\]"):
        Batch(b.src, np.array([4, 0, 5]), b.tgt_in, b.tgt_out, b.tgt_lengths)
    with pytest.raises(ValueError, match=r"tgt_out: PAD \(0\) within tgt_lengths"):
        Batch(b.src, b.src_lengths, b.tgt_in, b.tgt_out, np.array([4, 4, 4]))
    with pytest.raises(ValueError, match=r"tgt_in, tgt_out: expected the shape \(Tt, 3\)"):
        Batch(b.src, b.src_lengths, b.tgt_in[:, :2], b.tgt_out[:, :2], b.tgt_lengths)
    with pytest.raises(TypeError, match=r"src: expected integer ids, got dtype float64"):
        Batch(b.src * 1.0, b.src_lengths, b.tgt_in, b.tgt_out, b.tgt_lengths)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"targets\[0\]: ids must be >= 3"):
        Batch.of([[1]], [[2]])
    m = make_model()
    big = Batch(b.src + 10, b.src_lengths, b.tgt_in, b.tgt_out, b.tgt_lengths)
    with pytest.raises(ValueError, match=r"batch\.src: ids must be < 7"):
        m.forward(big)
    with pytest.raises(TypeError, match=r"batch: expected a fastrnn\.training\.seq2seq\.Batch"):
        m.forward((b.src, b.tgt_in))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=r"backward: no saved forward"):
        make_model().backward(np.zeros((4, 3, VT)))
    with pytest.raises(ValueError, match=r"max_len: must be >= 1, got 0"):
        m.greedy(b.src, b.src_lengths, 0)
    with pytest.raises(ValueError, match=r"beam_size: must be >= 1, got 0"):
        m.beam_search(b.src, b.src_lengths, 3, 0)
    with pytest.raises(ValueError, match=r"length_penalty: must be >= 0"):
        m.beam_search(b.src, b.src_lengths, 3, 2, length_penalty=-1)
    with pytest.raises(ValueError, match=r"src_lengths: expected shape \(3,\)"):
        m.greedy(b.src, [1, 2], 3)
    with pytest.raises(ValueError, match=r"src: ids must be < 7 \(the vocabulary's size\), got 9"):
        m.greedy(np.full((2, 1), 9), None, 3)
    with pytest.raises(ValueError, match=r"state_dict: missing \['out\.bias'\]"):
        m.load_state_dict({k: v for k, v in m.state_dict().items() if k != "out.bias"})
    with pytest.raises(ValueError, match=r"^combine: state_dict\['weight'\]: expected shape"):
        m.load_state_dict({**m.state_dict(), "combine.weight": np.zeros((2, 2))})


def test_pad_within_a_source_is_a_value_error() -> None:
    """PAD is only padding, in a source as in a target: Batch, greedy and beam_search refuse it
    within src_lengths, as Batch.of and pad do; beyond the lengths it is what padding is."""
    b = make_batch()
    src = b.src.copy()
    src[1, 2] = PAD  # within source 2's 5 steps
    msg = r"src: PAD \(0\) within src_lengths \(step 1 of sequence 2\): it is only padding"
    with pytest.raises(ValueError, match=msg):
        Batch(src, b.src_lengths, b.tgt_in, b.tgt_out, b.tgt_lengths)
    m = make_model()
    inner = np.array([[1, 2], [0, 3]])
    msg = r"src: PAD \(0\) within src_lengths \(step 1 of sequence 0\)"
    with pytest.raises(ValueError, match=msg):
        m.greedy(inner, [2, 2], 3)
    with pytest.raises(ValueError, match=msg):
        m.beam_search(inner, [2, 2], 3, beam_size=2)
    with pytest.raises(ValueError, match=msg):
        m.greedy(inner, None, 3)  # None: every source all Ts steps long
    assert len(m.greedy(inner, [1, 2], 3)) == 2  # the PAD is beyond source 0's length
    with pytest.raises(ValueError, match=r"sources\[0\]: ids must be >= 1 \(0 is PAD\)"):
        pad([[1, 0]], "sources")


def test_a_batch_holds_its_own_read_only_arrays() -> None:
    """A Batch is frozen, its arrays too: they are copies of the caller's (changing those
    changes nothing) and writing into them is an error (it cannot change a loss afterwards)."""
    b = make_batch()
    fields = [b.src, b.src_lengths, b.tgt_in, b.tgt_out, b.tgt_lengths]
    mine = [a.copy() for a in fields]
    c = Batch(*mine)
    m = make_model()
    before = m.evaluate(c)
    for name in ("src", "src_lengths", "tgt_in", "tgt_out", "tgt_lengths"):
        a = getattr(c, name)
        assert not a.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 1
    held = [c.src, c.src_lengths, c.tgt_in, c.tgt_out, c.tgt_lengths]
    for a in mine:
        assert not any(np.shares_memory(a, x) for x in held)
        a[...] = 1  # the caller's arrays stay theirs
    assert m.evaluate(c) == before
    with pytest.raises(ValueError, match="read-only"):
        c.tgt_lengths[1] = 0


# ------------------------------------------------------------------------------------ learning


@pytest.mark.parametrize(("cell", "attention"), [("lstm", "general"), ("gru", "additive")])
def test_learns_to_reverse_digit_strings(cell: str, attention: str) -> None:
    """Reversing strings of 2 to 4 digits: after 300 Adam steps of 32 pairs, greedy decoding of
    300 new draws is right for at least 95% of them (seen: 98.7% and 100%; the untrained model
    gets none right)."""
    v = Seq2SeqVocab("0123456789", "0123456789")
    rng = np.random.default_rng(0)

    def draw(n: int, rng: np.random.Generator) -> list[str]:
        return ["".join(map(str, rng.integers(0, 10, rng.integers(2, 5)))) for _ in range(n)]

    m = Seq2Seq(cell, v.src_size, v.tgt_size, embedding_dim=16, hidden_size=32,
                attention=attention, seed=0)  # fmt: skip
    test = draw(300, np.random.default_rng(123))

    def accuracy() -> float:
        out = v.translate(m, test, max_len=6)
        return float(np.mean([o == s[::-1] for o, s in zip(out, test, strict=True)]))

    assert accuracy() < 0.05
    opt = optim.Adam(lr=1e-2)
    for _ in range(300):
        s = draw(32, rng)
        m.train_step(v.batch(s, [x[::-1] for x in s]), opt, clip_norm=1.0)
    assert accuracy() >= 0.95


# ---- zoneout -----------------------------------------------------------------------------------


def test_zoneout_trains_reproducibly_and_decodes_as_teacher_forcing(tmp_path: Path) -> None:
    """Seq2Seq(zoneout=, zoneout_cell=): both stacks zone out (the config keeps it), training is
    reproducible from the seed and differs from the model's without; decoding, one step at a
    time in eval, scores a hypothesis as eval-mode teacher forcing does (zoneout's expectation
    the same either way); save/load keeps it, a file written before zoneout existed loads
    without, and bad probabilities are named."""
    m = decoding_model("lstm", "general", zoneout=0.2, zoneout_cell=0.1)
    assert (m.config["zoneout"], m.config["zoneout_cell"]) == (0.2, 0.1)
    for layer in (m.encoder, m.decoder):
        assert (layer.zoneout, layer.zoneout_cell) == (0.2, 0.1)
    again = decoding_model("lstm", "general", zoneout=0.2, zoneout_cell=0.1).state_dict()
    plain = decoding_model("lstm", "general").state_dict()
    sd = m.state_dict()
    for k, v in sd.items():
        np.testing.assert_array_equal(v, again[k])
    assert any(not np.array_equal(v, plain[k]) for k, v in sd.items())
    src, lengths = _sources()
    hyps = m.greedy(src, lengths, 8)
    assert any(len(h.ids) > 0 for h in hyps)
    m.eval()
    for j, h in enumerate(hyps):
        one = Batch.of([src[: lengths[j], j]], [h.ids])
        logits, _ = m.forward(one)
        z = logits[:, 0] - logits[:, 0].max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        want = sum(logp[t, one.tgt_out[t, 0]] for t in range(len(h.ids) + h.finished))
        assert h.score == pytest.approx(want, rel=1e-10)
    m.save(tmp_path / "z.npz")
    back, _, _ = Seq2Seq.load(tmp_path / "z.npz")
    assert back.config == m.config and back.decoder.zoneout_cell == 0.1
    for got, want_h in zip(back.greedy(src, lengths, 8), hyps, strict=True):
        _same(got, want_h)

    def drop(arrays: Any, meta: Any) -> None:
        del meta["config"]["zoneout"], meta["config"]["zoneout_cell"]

    old, _, _ = Seq2Seq.load(_rewrite(tmp_path, tmp_path / "z.npz", drop))
    assert (old.config["zoneout"], old.config["zoneout_cell"]) == (0.0, 0.0)
    assert old.encoder.zoneout == 0.0
    with pytest.raises(ValueError, match=r"zoneout: expected a number in \[0, 1\)"):
        Seq2Seq.load(_rewrite(tmp_path, tmp_path / "z.npz", _config("zoneout", 1.5)))
    with pytest.raises(ValueError, match=r"^zoneout_cell: only lstm and lnlstm .* not gru"):
        make_model("gru", zoneout_cell=0.1)
