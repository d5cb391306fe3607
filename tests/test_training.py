"""The training kit, fastrnn.training (nn, losses, optim, model), against the NumPy reference,
finite differences and, where installed, torch.nn / torch.optim."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fastrnn import losses, optim
from fastrnn import reference as R
from fastrnn.model import SequenceModel
from fastrnn.nn import Embedding, Linear
from helpers import assert_close, numeric_grad

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}  # relative to each element, and absolute


# ------------------------------------------------------------------------------- kernels vs ref


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_reference(dt, bias):
    rng = np.random.default_rng(0)
    lin = Linear(7, 5, bias=bias, dtype=dt, seed=1)
    x = rng.standard_normal((4, 3, 7)).astype(dt)
    y = lin(x)
    assert_close(y, R.linear_forward(x, lin.weight, lin.bias), rtol=TOL[dt], per_element=True)
    assert (lin.bias is None) == (not bias)
    dy = rng.standard_normal(y.shape).astype(dt)
    dx = lin.backward(dy)
    rdx, rdw, rdb = R.linear_backward(x, lin.weight, dy, has_bias=bias)
    assert_close(dx, rdx, rtol=TOL[dt], per_element=True)
    assert_close(lin.grads["weight"], rdw, rtol=TOL[dt], per_element=True)
    if bias:
        assert_close(lin.grads["bias"], rdb, rtol=TOL[dt], per_element=True)
    else:
        assert "bias" not in lin.grads


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_matches_reference(dt, padding_idx):
    rng = np.random.default_rng(0)
    emb = Embedding(6, 4, padding_idx=padding_idx, dtype=dt, seed=0)
    ids = rng.integers(0, 6, (9, 3))
    y = emb(ids)
    assert_close(y, R.embedding_forward(ids, emb.weight), rtol=TOL[dt], per_element=True)
    dy = rng.standard_normal(y.shape).astype(dt)
    emb.backward(dy)
    assert_close(
        emb.grads["weight"],
        R.embedding_backward(ids, dy, 6, padding_idx=padding_idx),
        rtol=TOL[dt],
        per_element=True,
    )


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_reference(dt, reduction):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((50, 11)) * 30).astype(dt)
    z[3] += 1e4  # large logits stay finite
    t = rng.integers(0, 11, 50)
    t[[1, 7]] = -100
    loss, d = losses.cross_entropy(z, t, reduction=reduction)
    rl, rd = R.softmax_cross_entropy(z, t, reduction=reduction)
    assert math.isfinite(loss)
    assert loss == pytest.approx(rl, rel=1e-5 if dt == np.float32 else 1e-12)
    assert_close(d, rd, rtol=TOL[dt], per_element=True)
    assert not d[[1, 7]].any()


def test_cross_entropy_all_ignored_and_bad_targets():
    z = np.zeros((3, 4))
    loss, d = losses.cross_entropy(z, np.full(3, -100))
    assert math.isnan(loss) and not d.any()
    with pytest.raises(ValueError, match="targets"):
        losses.cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="targets"):
        losses.cross_entropy(z, np.array([0, 1]))
    with pytest.raises(TypeError, match="targets"):
        losses.cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="logits"):
        losses.cross_entropy(z.astype(np.int64), np.array([0, 1, 2]))


@pytest.mark.parametrize("half", [False, True])
def test_mse_matches_reference(half):
    rng = np.random.default_rng(0)
    p, y = rng.standard_normal((2, 5, 3))
    loss, d = losses.mse(p, y, half=half)
    rl, rd = R.mse_loss(p, y, half=half)
    assert loss == pytest.approx(rl, rel=1e-13)
    assert_close(d, rd, rtol=TOL[np.float64], per_element=True)
    with pytest.raises(ValueError, match="target"):
        losses.mse(p, y[:2])


EPS = 1e-6  # finite-difference step (central differences, float64)


def test_losses_finite_differences():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    _, d = losses.cross_entropy(z, t)
    np.testing.assert_allclose(
        d, numeric_grad(lambda: losses.cross_entropy(z, t)[0], z, EPS), atol=1e-8
    )
    p, y = rng.standard_normal((2, 4, 3))
    _, d = losses.mse(p, y)
    np.testing.assert_allclose(d, numeric_grad(lambda: losses.mse(p, y)[0], p, EPS), atol=1e-8)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize(
    "kw",
    [{}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
     {"momentum": 0.8, "nesterov": True}],
)  # fmt: skip
def test_sgd_matches_reference(dt, kw):
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((4, 3)).astype(dt), "b": rng.standard_normal(5).astype(dt)}
    ref = [params["a"].copy(), params["b"].copy()]
    bufs: list = [None, None]
    opt = optim.SGD(lr=0.1, **kw)
    for _ in range(6):
        grads = {
            "a": rng.standard_normal((4, 3)).astype(dt),
            "b": rng.standard_normal(5).astype(dt),
        }
        opt.step(params, grads)
        R.sgd_step(ref, [grads["a"], grads["b"]], bufs, 0.1, **kw)
    assert_close(params["a"], ref[0], rtol=TOL[dt], per_element=True)
    assert_close(params["b"], ref[1], rtol=TOL[dt], per_element=True)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_matches_reference(dt, wd):
    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal((6, 2)).astype(dt)}
    ref = [p["w"].copy()]
    m, v = [np.zeros_like(ref[0])], [np.zeros_like(ref[0])]
    opt = optim.Adam(lr=0.01, weight_decay=wd)
    for step in range(1, 11):
        g = rng.standard_normal((6, 2)).astype(dt)
        opt.step(p, {"w": g})
        R.adam_step(ref, [g], m, v, step, lr=0.01, weight_decay=wd)
    assert_close(p["w"], ref[0], rtol=TOL[dt], per_element=True)


def test_clipping_matches_reference():
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal((5, 4)) * 10, rng.standard_normal(7)]
    ref = [g.copy() for g in gs]
    assert optim.clip_grad_norm(gs, 1.0) == pytest.approx(R.clip_grad_norm(ref, 1.0), rel=1e-13)
    for a, b in zip(gs, ref, strict=True):
        assert_close(a, b, rtol=TOL[np.float64], per_element=True)
    assert optim.global_norm(gs) == pytest.approx(1.0, rel=1e-5)
    gs = [rng.standard_normal((5, 4)) * 10]
    ref = [gs[0].copy()]
    assert optim.clip_grad_value(gs, 0.5) == pytest.approx(R.clip_grad_value(ref, 0.5), rel=1e-13)
    assert_close(gs[0], ref[0], rtol=TOL[np.float64], per_element=True)
    assert np.abs(gs[0]).max() == 0.5
    gs = [rng.standard_normal(9) * 3]
    ref = [gs[0].copy()]
    n = optim.clip_grad_norm(gs, 1.0, norm_type=math.inf)
    assert n == pytest.approx(R.clip_grad_norm(ref, 1.0, norm_type=math.inf))
    assert_close(gs[0], ref[0], rtol=TOL[np.float64], per_element=True)


def test_optimizer_bad_input():
    p = {"w": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="grads"):
        optim.SGD(lr=0.1).step(p, {})
    with pytest.raises(ValueError, match="grads"):
        optim.Adam().step(p, {"w": np.zeros(4, np.float32)})
    with pytest.raises(TypeError, match="grads"):
        optim.Adam().step(p, {"w": np.zeros(3, np.float64)})
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm([np.zeros(2)], float("nan"))


# ----------------------------------------------------------------------------------- torch


def test_training_run_matches_torch():
    """20 Adam steps of LSTM + Linear (many-to-many, MSE), same init and batches: same losses."""
    torch = pytest.importorskip("torch")
    T, B, I, H, O = 12, 5, 3, 8, 2
    model = SequenceModel("lstm", I, H, O, num_layers=2, dtype=np.float64, seed=0)
    tl = torch.nn.LSTM(I, H, 2).double()
    th = torch.nn.Linear(H, O).double()
    sd = model.state_dict()
    tl.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith("rnn.")})
    th.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith("head.")})
    topt = torch.optim.Adam([*tl.parameters(), *th.parameters()], lr=0.01)
    opt = optim.Adam(lr=0.01)
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = rng.standard_normal((T, B, I))
        y = rng.standard_normal((T, B, O))
        r = model.train_step(x, y, opt, clip_norm=0.5)
        topt.zero_grad()
        out, _ = tl(torch.from_numpy(x))
        tloss = torch.nn.functional.mse_loss(th(out), torch.from_numpy(y))
        tloss.backward()
        tnorm = torch.nn.utils.clip_grad_norm_([*tl.parameters(), *th.parameters()], 0.5)
        topt.step()
        assert r.loss == pytest.approx(tloss.item(), rel=1e-9)
        assert r.grad_norm == pytest.approx(tnorm.item(), rel=1e-9)


def test_char_model_matches_torch():
    """Embedding + GRU + Linear with cross-entropy and SGD momentum, against torch."""
    torch = pytest.importorskip("torch")
    V, E, H = 7, 4, 6
    model = SequenceModel("gru", V, H, V, embedding_dim=E, seed=3)
    te, tg, th = torch.nn.Embedding(V, E), torch.nn.GRU(E, H), torch.nn.Linear(H, V)
    sd = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    for prefix, mod in (("embedding.", te), ("rnn.", tg), ("head.", th)):
        mod.load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
    params = [*te.parameters(), *tg.parameters(), *th.parameters()]
    topt = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    opt = optim.SGD(lr=0.5, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, V, (9, 4))
        y = rng.integers(0, V, (9, 4))
        r = model.train_step(x, y, opt, loss="cross_entropy")
        topt.zero_grad()
        out, _ = tg(te(torch.from_numpy(x)))
        logits = th(out)
        tloss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, V), torch.from_numpy(y).reshape(-1)
        )
        tloss.backward()
        topt.step()
        assert r.loss == pytest.approx(tloss.item(), rel=1e-5)


# ------------------------------------------------------------------------------------ model


def test_truncated_bptt_carries_state_without_crossing():
    """Two chunks with the carried state give the same outputs as one run of the whole
    sequence, and the second chunk's gradients do not depend on the first chunk's targets."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3, 2))
    m = SequenceModel("lstm", 2, 5, 1, dtype=np.float64, seed=0)
    full, _ = m.forward(x)
    a, st = m.forward(x[:6])
    b, _ = m.forward(x[6:], st)
    np.testing.assert_allclose(np.concatenate([a, b]), full, rtol=1e-12)
    y2 = rng.standard_normal((4, 3, 1))
    grads = []
    for seed in (1, 2):  # different first-chunk targets
        m2 = SequenceModel("lstm", 2, 5, 1, dtype=np.float64, seed=0)
        y1 = np.random.default_rng(seed).standard_normal((6, 3, 1))
        r = m2.train_step(x[:6], y1, optim.SGD(lr=0.0))
        out, _ = m2.forward(x[6:], r.state)
        _, d = m2.loss(out, y2, "mse")
        grads.append(m2.backward(d)["rnn.weight_hh_l0"].copy())
    np.testing.assert_array_equal(grads[0], grads[1])


def test_save_load_resume(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4, 3)), rng.standard_normal((4, 2))
    m = SequenceModel("gru", 3, 6, 2, many_to_one=True, dtype=np.float64, seed=0)
    opt = optim.Adam(lr=0.01)
    for _ in range(3):
        m.train_step(x, y, opt)
    m.save(tmp_path / "m.npz", opt, note="hi")
    m2, opt2, extra = SequenceModel.load(tmp_path / "m.npz")
    assert extra == {"note": "hi"} and opt2 is not None and opt2.steps == 3
    for _ in range(3):  # both continue identically
        a = m.train_step(x, y, opt).loss
        b = m2.train_step(x, y, opt2).loss
        assert a == b
    with pytest.raises(ValueError, match="cell"):
        SequenceModel("tanh", 3, 6, 2)


def test_hidden_grad_norms_match_finite_differences():
    """||dL/dh_t|| from the kernels against a finite-difference derivative of the loss with
    respect to the state at t (perturbing the state passed into the remaining steps)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 2, 2)), rng.standard_normal((2, 1))
    m = SequenceModel("rnn", 2, 4, 1, many_to_one=True, dtype=np.float64, seed=0)
    norms = m.hidden_grad_norms(x, y)
    m.eval()
    _, st = m.forward(x[:3])  # state after steps 0..2, i.e. t = 2
    h = st.copy()

    def f():
        out, _ = m.forward(x[3:], h)
        return m.loss(out, y, "mse")[0]

    g = numeric_grad(f, h, EPS)
    assert norms[2] == pytest.approx(np.linalg.norm(g), rel=1e-6)


def test_generate_and_adding_problem_learns():
    from fastrnn import tasks

    m = SequenceModel("lstm", 2, 32, 1, many_to_one=True, seed=0)
    opt = optim.Adam(lr=1e-2)
    rng = np.random.default_rng(0)
    xt, yt = tasks.adding_problem(500, 50, 123)
    for _ in range(800):  # measured: 0.0034 after 600 steps, 0.0014 after 800
        x, y = tasks.adding_problem(64, 50, rng)
        m.train_step(x, y, opt, clip_norm=1.0)
    mse = m.evaluate(xt, yt)
    assert mse < 0.05, mse  # the constant predictor: 0.167
    c = SequenceModel("gru", 5, 8, 5, embedding_dim=3, seed=0)
    ids = c.generate([1, 2], 20, temperature=0.7, seed=0)
    assert ids.shape == (20,) and ids.min() >= 0 and ids.max() < 5
    np.testing.assert_array_equal(ids, c.generate([1, 2], 20, temperature=0.7, seed=0))
    g = c.generate([1, 2], 5, temperature=0)
    assert g.shape == (5,)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"steps": -1}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"steps": 3, "temperature": -0.5}, ValueError, "temperature"),
        ({"steps": 3, "temperature": float("nan")}, ValueError, "temperature"),
        ({"steps": 3, "temperature": "hot"}, TypeError, "temperature"),
        ({"steps": 3, "prime": [9]}, ValueError, "ids"),
    ],
)
def test_generate_rejects(kwargs: dict[str, Any], exc: type, match: str) -> None:
    c = SequenceModel("gru", 5, 8, 5, embedding_dim=3, seed=0)
    kwargs = {"prime": [1, 2], **kwargs}
    with pytest.raises(exc, match=match):
        c.generate(**kwargs)
