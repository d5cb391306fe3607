"""The attention kernels (fastrnn.functional.attention_forward / attention_backward) against the
NumPy reference, finite differences in float64, and the Attention module's three scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.training.attention import SCORES, Attention
from helpers import assert_close, numeric_grad

SHAPES = [  # Tq, B, Tk, D, Dv, lengths
    (1, 1, 1, 1, 1, [1]),
    (5, 4, 7, 9, 6, [7, 1, 3, 6]),
    (11, 3, 37, 20, 33, None),
    (3, 2, 5, 17, 4, [5, 5]),
]


def _problem(shape: tuple[Any, ...], dtype: Any, additive: bool, seed: int = 0) -> dict[str, Any]:
    Tq, B, Tk, D, Dv, lengths = shape
    rng = np.random.default_rng(seed)

    def u(*s: int) -> np.ndarray:
        return rng.uniform(-1, 1, s).astype(dtype)

    return {
        "query": u(Tq, B, D), "keys": u(Tk, B, D), "values": u(Tk, B, Dv),
        "lengths": None if lengths is None else np.array(lengths, dtype=np.int64),
        "v": u(D) if additive else None, "dcontext": u(Tq, B, Dv),
    }  # fmt: skip


def _fwd_args(p: dict[str, Any]) -> tuple[Any, ...]:
    return p["query"], p["keys"], p["values"], p["lengths"], p["v"]


@pytest.mark.parametrize("additive", [False, True], ids=["dot", "additive"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:5])))
def test_kernel_matches_reference(shape: Any, additive: bool, dtype: Any) -> None:
    p = _problem(shape, dtype, additive)
    ctx, w = F.attention_forward(*_fwd_args(p))
    ctx_r, w_r = R.attention_forward(*_fwd_args(p))
    assert ctx.dtype == w.dtype == np.dtype(dtype)
    assert_close(ctx, ctx_r, dtype, "context")
    assert_close(w, w_r, dtype, "weights")
    got = F.attention_backward(*_fwd_args(p)[:4], w, p["dcontext"], p["v"])
    want = R.attention_backward(*_fwd_args(p)[:4], w_r, p["dcontext"], p["v"])
    for name, a, b in zip(("dquery", "dkeys", "dvalues", "dv"), got, want, strict=True):
        if b is None:
            assert a is None, name
        else:
            assert a.dtype == np.dtype(dtype)
            assert_close(a, b, dtype, name, factor=4)


@pytest.mark.parametrize("additive", [False, True], ids=["dot", "additive"])
def test_padding_gets_no_weight_and_no_gradient(additive: bool) -> None:
    p = _problem(SHAPES[1], np.float64, additive)
    ctx, w = F.attention_forward(*_fwd_args(p))
    L = p["lengths"]
    for b, n in enumerate(L):
        assert np.all(w[:, b, n:] == 0)
        np.testing.assert_allclose(w[:, b, :n].sum(axis=1), 1, rtol=1e-12)
    # whatever the padding holds, nothing changes
    keys, values = p["keys"].copy(), p["values"].copy()
    for b, n in enumerate(L):
        keys[n:, b] = 1e3
        values[n:, b] = np.nan
    ctx2, w2 = F.attention_forward(p["query"], keys, values, L, p["v"])
    np.testing.assert_array_equal(w2, w)
    np.testing.assert_array_equal(ctx2, ctx)
    _, dk, dv, _ = F.attention_backward(p["query"], keys, values, L, w2, p["dcontext"], p["v"])
    for b, n in enumerate(L):
        assert np.all(dk[n:, b] == 0) and np.all(dv[n:, b] == 0)


@pytest.mark.parametrize("additive", [False, True], ids=["dot", "additive"])
def test_kernel_finite_differences(additive: bool) -> None:
    p = _problem(SHAPES[1], np.float64, additive, seed=3)
    args = [p["query"], p["keys"], p["values"], p["v"]]

    def loss() -> float:
        ctx, _ = F.attention_forward(args[0], args[1], args[2], p["lengths"], args[3])
        return float((ctx * p["dcontext"]).sum())

    _, w = F.attention_forward(*_fwd_args(p))
    grads = F.attention_backward(*_fwd_args(p)[:4], w, p["dcontext"], p["v"])
    for name, a, g in zip(("query", "keys", "values", "v"), args, grads, strict=True):
        if a is None:
            continue
        assert_close(g, numeric_grad(loss, a, 1e-6), rtol=1e-8, what=name)


@pytest.mark.parametrize("additive", [False, True], ids=["dot", "additive"])
def test_bit_identical_across_thread_counts(additive: bool) -> None:
    p = _problem((9, 13, 31, 24, 40, list(range(19, 32))), np.float32, additive)
    before = fastrnn.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            ctx, w = F.attention_forward(*_fwd_args(p))
            g = F.attention_backward(*_fwd_args(p)[:4], w, p["dcontext"], p["v"])
            results.append([ctx, w, *[a for a in g if a is not None]])
    finally:
        fastrnn.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_kernel_argument_errors() -> None:
    p = _problem(SHAPES[1], np.float32, True)
    q, k, val, L, v = _fwd_args(p)
    bad: list[tuple[tuple[Any, ...], type[Exception], str]] = [
        (
            (q, k, val, np.array([8, 1, 1, 1]), v),
            ValueError,
            r"lengths: values must be in \[1, 7\], got \[1, 8\]",
        ),
        (
            (q, k, val, np.array([0, 1, 1, 1]), v),
            ValueError,
            r"lengths: values must be in \[1, 7\], got \[0, 1\]",
        ),
        (
            (q, k, val, np.array([1, 1, 1]), v),
            ValueError,
            r"lengths: expected shape \(4,\), one per sequence",
        ),
        (
            (q, k, val, np.array([1.0, 1, 1, 1]), v),
            TypeError,
            "lengths: expected integers, got dtype float64",
        ),
        ((q, k, val, np.ones(4, bool), v), TypeError, "lengths: expected integers, got dtype bool"),
        ((q, k[:, :3], val, L, v), ValueError, "keys: expected shape"),
        ((q, k, val[:6], L, v), ValueError, "values: expected shape"),
        ((q[0], k, val, L, v), ValueError, "query: expected shape"),
        ((q, k.astype(np.float64), val, L, v), TypeError, "keys: expected dtype float32"),
        ((q, k, val, L, v[:3]), ValueError, "v: expected shape"),
        ((q, k[:0], val[:0], None, v), ValueError, "lengths: entry 0 is 0"),
    ]
    for args, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            F.attention_forward(*args)
    _, w = F.attention_forward(q, k, val, L, v)
    with pytest.raises(ValueError, match="weights: expected shape"):
        F.attention_backward(q, k, val, L, w[:, :2], p["dcontext"], v)
    with pytest.raises(ValueError, match="dcontext: expected shape"):
        F.attention_backward(q, k, val, L, w, p["dcontext"][:1], v)


@pytest.mark.parametrize("where", ["functional", "reference", "Attention", "Seq2Seq"])
def test_one_lengths_rule(where: str) -> None:
    """The kernel, its reference, the module and Seq2Seq's decoding take lengths by one rule
    (fastrnn._args.check_lengths): integers only (not floats, not bools: a TypeError), one per
    sequence, each in [1, Tk] (a ValueError naming the range)."""
    q, mem = np.zeros((2, 3, 4)), np.zeros((5, 3, 4))
    name = "lengths"
    if where == "functional":
        call = lambda la: F.attention_forward(q, mem, mem, la)  # noqa: E731
    elif where == "reference":
        call = lambda la: R.attention_forward(q, mem, mem, la)  # noqa: E731
    elif where == "Attention":
        att = Attention("dot", 4, 4, dtype=np.float64)
        call = lambda la: att(q, mem, la)  # noqa: E731
    else:
        m = fastrnn.Seq2Seq("gru", 4, 5, hidden_size=3, seed=0)
        call = lambda la: m.greedy(np.ones((5, 3), np.int64), la, 2)  # noqa: E731
        name = "src_lengths"
    for bad, word in (([1.0, 2.0, 3.0], "float64"), ([True, True, True], "bool")):
        with pytest.raises(TypeError, match=rf"^{name}: expected integers, got dtype {word}$"):
            call(bad)
    with pytest.raises(ValueError, match=rf"^{name}: expected shape \(3,\), one per sequence"):
        call([1, 2])
    for bad, got in (([0, 2, 3], r"\[0, 3\]"), ([1, 6, 3], r"\[1, 6\]")):
        with pytest.raises(ValueError, match=rf"^{name}: values must be in \[1, 5\], got {got}$"):
            call(bad)
    call(np.array([1, 5, 3], np.int32))  # any integer dtype


def test_empty_queries_and_batch() -> None:
    p = _problem((0, 2, 3, 4, 5, [3, 2]), np.float32, False)
    ctx, w = F.attention_forward(*_fwd_args(p))
    assert ctx.shape == (0, 2, 5) and w.shape == (0, 2, 3)
    _, dk, dv, _ = F.attention_backward(*_fwd_args(p)[:4], w, ctx, None)
    assert dk.shape == (3, 2, 4) and not dk.any() and dv.shape == (3, 2, 5) and not dv.any()
    p = _problem((2, 0, 3, 4, 5, []), np.float32, True)
    ctx, w = F.attention_forward(*_fwd_args(p))
    assert ctx.shape == (2, 0, 5) and w.shape == (2, 0, 3)


# ---- the module -------------------------------------------------------------------------------


@pytest.mark.parametrize("score", SCORES)
def test_module_finite_differences(score: str) -> None:
    rng = np.random.default_rng(1)
    Q, K = 6, 6 if score == "dot" else 5
    att = Attention(score, Q, K, attn_size=4, dtype=np.float64, seed=2)
    q = rng.standard_normal((3, 2, Q))
    mem = rng.standard_normal((4, 2, K))
    lengths = np.array([4, 2])
    dc = rng.standard_normal((3, 2, K))
    ctx, w = att(q, mem, lengths)
    assert ctx.shape == (3, 2, K) and w.shape == (3, 2, 4)
    dq, dmem = att.backward(dc)

    def loss() -> float:
        att.eval()
        try:
            return float((att(q, mem, lengths)[0] * dc).sum())
        finally:
            att.train()

    assert_close(dq, numeric_grad(loss, q, 1e-6), rtol=1e-8, what="dquery")
    assert_close(dmem, numeric_grad(loss, mem, 1e-6), rtol=1e-8, what="dvalues")
    assert set(att.grads) == set(att.param_shapes())
    for name, param in att.named_parameters():
        assert_close(att.grads[name], numeric_grad(loss, param, 1e-6), rtol=1e-8, what=name)


@pytest.mark.parametrize("score", SCORES)
def test_module_matches_the_formulas(score: str) -> None:
    """Each score as written in the module's docstring, in NumPy."""
    rng = np.random.default_rng(4)
    att = Attention(score, 8, 8, attn_size=5, dtype=np.float64, seed=0)
    q, mem = rng.standard_normal((2, 3, 8)), rng.standard_normal((6, 3, 8))
    lengths = np.array([6, 3, 1])
    ctx, w = att.eval()(q, mem, lengths)
    for t in range(2):
        for b in range(3):
            n = lengths[b]
            h = mem[:n, b]
            if score == "dot":
                e = h @ q[t, b]
            elif score == "general":
                e = h @ (att.weight.T @ q[t, b])
            else:
                e = np.tanh(att.query_weight @ q[t, b] + h @ att.key_weight.T) @ att.v
            a = np.exp(e - e.max())
            a /= a.sum()
            np.testing.assert_allclose(w[t, b, :n], a, rtol=1e-12)
            np.testing.assert_allclose(ctx[t, b], a @ h, rtol=1e-12, atol=1e-14)


def test_memory_is_reused_step_by_step() -> None:
    """Attending one query at a time to a memory made once equals attending all at once (the
    products have other shapes -- the query's projection, the context -- so they may round
    differently in the last bits)."""
    rng = np.random.default_rng(5)
    att = Attention("additive", 7, 9, dtype=np.float32, seed=1).eval()
    q, mem = rng.standard_normal((4, 2, 7), np.float32), rng.standard_normal((5, 2, 9), np.float32)
    memory = att.memory(mem, [5, 3])
    ctx, w = att.attend(q, memory)
    for t in range(4):
        c1, w1 = att.attend(q[t : t + 1], memory)
        np.testing.assert_allclose(c1[0], ctx[t], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(w1[0], w[t], rtol=1e-5, atol=1e-7)


def test_module_errors() -> None:
    with pytest.raises(ValueError, match="score: expected one of"):
        Attention("cosine", 4, 4)
    with pytest.raises(ValueError, match="key_size: the dot score needs"):
        Attention("dot", 4, 5)
    with pytest.raises(ValueError, match="query_size"):
        Attention("general", 0, 5)
    att = Attention("general", 4, 5)
    q = np.zeros((2, 3, 4), np.float32)
    mem = np.zeros((6, 3, 5), np.float32)
    with pytest.raises(TypeError, match="query: expected dtype float32"):
        att(q.astype(np.float64), mem)
    with pytest.raises(ValueError, match="values: expected shape"):
        att(q, mem[..., :4])
    with pytest.raises(ValueError, match=r"lengths: values must be in \[1, 6\], got \[1, 7\]"):
        att(q, mem, [7, 1, 1])
    with pytest.raises(ValueError, match="query: its batch"):
        att(q[:, :2], mem)
    with pytest.raises(RuntimeError, match="backward: no saved forward"):
        att.eval()(q, mem)
        att.backward(np.zeros((2, 3, 5), np.float32))
    att.train()(q, mem)
    with pytest.raises(ValueError, match="dcontext: expected shape"):
        att.backward(np.zeros((2, 3, 4), np.float32))
    assert repr(Attention("additive", 4, 5, 3)) == (
        "Attention('additive', query_size=4, key_size=5, attn_size=3)"
    )


def test_state_dict_round_trip() -> None:
    a = Attention("additive", 4, 5, 3, seed=0)
    b = Attention("additive", 4, 5, 3, seed=1)
    b.load_state_dict(a.state_dict())
    q, mem = np.ones((1, 2, 4), np.float32), np.ones((3, 2, 5), np.float32)
    np.testing.assert_array_equal(a(q, mem)[0], b(q, mem)[0])
    assert list(a.state_dict()) == ["query_weight", "key_weight", "v"]
