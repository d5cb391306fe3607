"""The training pieces of fastrnn.reference (output layer, embedding, losses, clipping, SGD, Adam):
against PyTorch in float64, and against central finite differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fastrnn import reference as R
from helpers import assert_close, numeric_grad

EPS = 1e-6  # finite-difference step (central differences, float64)


def _torch() -> Any:
    return pytest.importorskip("torch")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


FD_RTOL = 1e-7  # analytic against numeric gradients, relative to max(1, max |numeric|)


# ---- linear -------------------------------------------------------------------------------------


def test_linear_matches_torch() -> None:
    torch = _torch()
    r = _rng(1)
    x, w, b = r.normal(size=(2, 3, 5)), r.normal(size=(4, 5)), r.normal(size=4)
    dy = r.normal(size=(2, 3, 4))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(dy))

    y = R.linear_forward(x, w, b)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-12)
    dx, dw, db = R.linear_backward(x, w, dy)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=0, atol=1e-12)
    assert db is not None
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=0, atol=1e-12)

    # without a bias, and a single vector x (no leading axes)
    np.testing.assert_allclose(
        R.linear_forward(x[0, 0], w),
        torch.nn.functional.linear(torch.tensor(x[0, 0]), torch.tensor(w)).numpy(),
        rtol=0,
        atol=1e-12,
    )


def test_linear_backward_no_bias() -> None:
    r = _rng(2)
    x, w, dy = r.normal(size=(7, 3)), r.normal(size=(2, 3)), r.normal(size=(7, 2))
    dx, dw, db = R.linear_backward(x, w, dy, has_bias=False)
    assert db is None
    np.testing.assert_allclose(dx, dy @ w, rtol=1e-13)
    np.testing.assert_allclose(dw, dy.T @ x, rtol=1e-13)


def test_linear_finite_differences() -> None:
    r = _rng(3)
    x, w, b = r.normal(size=(2, 3, 4)), r.normal(size=(5, 4)), r.normal(size=5)
    c = r.normal(size=(2, 3, 5))  # contracts y to a scalar: L = sum(c * y), so dL/dy = c

    def loss() -> float:
        return float((c * R.linear_forward(x, w, b)).sum())

    dx, dw, db = R.linear_backward(x, w, c)
    assert db is not None
    assert_close(dx, numeric_grad(loss, x, EPS), what="dx", rtol=FD_RTOL)
    assert_close(dw, numeric_grad(loss, w, EPS), what="dweight", rtol=FD_RTOL)
    assert_close(db, numeric_grad(loss, b, EPS), what="dbias", rtol=FD_RTOL)


# ---- embedding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(padding_idx: int | None) -> None:
    torch = _torch()
    r = _rng(4)
    V, D = 6, 3
    ids = np.array([[0, 2, 2, 5], [1, 5, 2, 0], [3, 3, 3, 2]])  # repeats, and the padding rows
    w = r.normal(size=(V, D))
    dy = r.normal(size=(*ids.shape, D))
    emb = torch.nn.Embedding(V, D, padding_idx=padding_idx, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(w))
    ty = emb(torch.tensor(ids))
    ty.backward(torch.tensor(dy))

    y = R.embedding_forward(ids, w)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dw = R.embedding_backward(ids, dy, V, padding_idx=padding_idx)
    np.testing.assert_allclose(dw, emb.weight.grad.numpy(), rtol=0, atol=1e-12)
    if padding_idx is not None:
        assert not dw[padding_idx].any()
        assert np.abs(dy[ids == padding_idx % V]).sum() > 0  # the padding row was used


def test_embedding_finite_differences() -> None:
    r = _rng(5)
    ids = np.array([[4, 0, 4], [1, 1, 4]])
    w = r.normal(size=(5, 2))
    c = r.normal(size=(2, 3, 2))

    def loss() -> float:
        return float((c * R.embedding_forward(ids, w)).sum())

    dw = R.embedding_backward(ids, c, 5)
    assert_close(dw, numeric_grad(loss, w, EPS), what="dweight", rtol=FD_RTOL)
    assert not dw[2].any() and not dw[3].any()  # unused rows


def test_embedding_errors() -> None:
    w = np.zeros((4, 2))
    with pytest.raises(ValueError, match="ids"):
        R.embedding_forward(np.array([0, 4]), w)
    with pytest.raises(ValueError, match="ids"):
        R.embedding_forward(np.array([-1]), w)
    with pytest.raises(ValueError, match="ids"):
        R.embedding_forward(np.array([0.0]), w)
    with pytest.raises(ValueError, match="dy"):
        R.embedding_backward(np.array([0, 1]), np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="padding_idx"):
        R.embedding_backward(np.array([0, 1]), np.zeros((2, 2)), 4, padding_idx=4)


# ---- cross-entropy ------------------------------------------------------------------------------


def _torch_ce(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int, reduction: str
) -> tuple[float, np.ndarray]:
    torch = _torch()
    tl = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(
        tl, torch.tensor(targets), ignore_index=ignore_index, reduction=reduction
    )
    loss.backward()
    return float(loss.detach()), tl.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-100, 1])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cross_entropy_matches_torch(reduction: str, ignore_index: int, scale: float) -> None:
    _torch()
    r = _rng(6)
    N, C = 9, 5
    logits = scale * r.normal(size=(N, C))
    targets = r.integers(0, C, N)
    targets[[2, 5]] = -100  # ignored rows (with ignore_index=-100)
    targets[3] = 1
    if ignore_index == 1:
        targets[[2, 5]] = 0
    loss, d = R.softmax_cross_entropy(
        logits, targets, ignore_index=ignore_index, reduction=reduction
    )
    t_loss, t_d = _torch_ce(logits, targets, ignore_index, reduction)
    assert np.isfinite(loss) and np.isfinite(d).all()
    assert loss == pytest.approx(t_loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(d, t_d, rtol=0, atol=1e-12)
    assert not d[targets == ignore_index].any()


def test_cross_entropy_mean_divides_by_counted_rows() -> None:
    logits = np.zeros((4, 2))  # each counted row: log 2
    targets = np.array([0, -100, 1, -100])
    loss, d = R.softmax_cross_entropy(logits, targets)
    assert loss == pytest.approx(np.log(2), rel=1e-15)
    np.testing.assert_allclose(d[0], [-0.25, 0.25], rtol=1e-15)


def test_cross_entropy_all_ignored() -> None:
    logits = _rng(7).normal(size=(3, 4))
    targets = np.full(3, -100)
    loss, d = R.softmax_cross_entropy(logits, targets)
    assert np.isnan(loss)  # torch's 0/0
    assert d.shape == logits.shape and not d.any()
    loss, d = R.softmax_cross_entropy(logits, targets, reduction="sum")
    assert loss == 0.0 and not d.any()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_all_ignored_matches_torch(reduction: str) -> None:
    _torch()
    logits = _rng(7).normal(size=(3, 4))
    targets = np.full(3, -100)
    loss, d = R.softmax_cross_entropy(logits, targets, reduction=reduction)
    t_loss, t_d = _torch_ce(logits, targets, -100, reduction)
    assert (np.isnan(loss) and np.isnan(t_loss)) or loss == t_loss
    np.testing.assert_array_equal(d, t_d)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_finite_differences(reduction: str) -> None:
    r = _rng(8)
    logits = 3 * r.normal(size=(6, 4))
    targets = np.array([0, 3, -100, 2, 2, 1])
    _, d = R.softmax_cross_entropy(logits, targets, reduction=reduction)

    def loss() -> float:
        return R.softmax_cross_entropy(logits, targets, reduction=reduction)[0]

    assert_close(d, numeric_grad(loss, logits, EPS), what="dlogits", rtol=FD_RTOL)


def test_cross_entropy_errors() -> None:
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="reduction"):
        R.softmax_cross_entropy(logits, np.array([0, 1]), reduction="none")
    with pytest.raises(ValueError, match="targets"):
        R.softmax_cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="targets"):
        R.softmax_cross_entropy(logits, np.array([0, 1, 2]))


# ---- MSE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch_and_half_convention(reduction: str) -> None:
    torch = _torch()
    r = _rng(9)
    pred, target = r.normal(size=(4, 3, 2)), r.normal(size=(4, 3, 2))
    tp = torch.tensor(pred, requires_grad=True)
    t_loss = torch.nn.functional.mse_loss(tp, torch.tensor(target), reduction=reduction)
    t_loss.backward()

    loss, d = R.mse_loss(pred, target, reduction=reduction)
    assert loss == pytest.approx(t_loss.item(), rel=1e-13)
    np.testing.assert_allclose(d, tp.grad.numpy(), rtol=0, atol=1e-13)

    half_loss, half_d = R.mse_loss(pred, target, reduction=reduction, half=True)
    assert half_loss == 0.5 * loss
    np.testing.assert_array_equal(half_d, 0.5 * d)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("half", [False, True])
def test_mse_finite_differences(reduction: str, half: bool) -> None:
    r = _rng(10)
    pred, target = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    _, d = R.mse_loss(pred, target, reduction=reduction, half=half)

    def loss() -> float:
        return R.mse_loss(pred, target, reduction=reduction, half=half)[0]

    assert_close(d, numeric_grad(loss, pred, EPS), what="dpred", rtol=FD_RTOL)


def test_mse_notes_convention_by_hand() -> None:
    loss, d = R.mse_loss(np.array([3.0, 1.0]), np.array([1.0, 1.0]), half=True)
    assert loss == 1.0  # 1/2 * mean([4, 0])
    np.testing.assert_array_equal(d, [1.0, 0.0])  # (pred - target) / n
    with pytest.raises(ValueError, match="target"):
        R.mse_loss(np.zeros(2), np.zeros(3))


# ---- clipping -----------------------------------------------------------------------------------


def _grad_set(seed: int, scale: float = 1.0) -> list[np.ndarray]:
    r = _rng(seed)
    return [scale * r.normal(size=s) for s in [(4, 3), (5,), (2, 2, 2)]]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type: float, max_norm: float) -> None:
    torch = _torch()
    grads = _grad_set(11)
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    t_total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)

    before = [g.copy() for g in grads]
    ids = [id(g) for g in grads]
    total = R.clip_grad_norm(grads, max_norm, norm_type)
    assert [id(g) for g in grads] == ids  # in place
    assert total == pytest.approx(float(t_total), rel=1e-13)
    for g, p in zip(grads, params, strict=True):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=0, atol=1e-13)
    if max_norm > total:
        for g, b in zip(grads, before, strict=True):
            np.testing.assert_array_equal(g, b)
    else:
        assert R._global_norm(grads, norm_type) == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_nan_matches_torch() -> None:
    torch = _torch()
    grads = _grad_set(12)
    grads[1][2] = np.nan
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    t_total = torch.nn.utils.clip_grad_norm_(params, 1.0)
    total = R.clip_grad_norm(grads, 1.0)
    assert np.isnan(total) and np.isnan(float(t_total))
    for g, p in zip(grads, params, strict=True):
        np.testing.assert_array_equal(g, p.grad.numpy())  # all NaN, as torch


def test_clip_grad_norm_empty_and_errors() -> None:
    assert R.clip_grad_norm([], 1.0) == 0.0
    with pytest.raises(ValueError, match="norm_type"):
        R.clip_grad_norm(_grad_set(0), 1.0, norm_type=0.0)


@pytest.mark.parametrize("clip_value", [0.3, 10.0])
def test_clip_grad_value_matches_torch(clip_value: float) -> None:
    torch = _torch()
    grads = _grad_set(13)
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_(params, clip_value)

    expected_norm = float(np.sqrt(sum((g**2).sum() for g in grads)))
    total = R.clip_grad_value(grads, clip_value)
    assert total == pytest.approx(expected_norm, rel=1e-13)
    for g, p in zip(grads, params, strict=True):
        np.testing.assert_array_equal(g, p.grad.numpy())
        assert np.abs(g).max() <= clip_value
    with pytest.raises(ValueError, match="clip_value"):
        R.clip_grad_value(grads, -1.0)


# ---- optimisers ---------------------------------------------------------------------------------

STEPS = 10


def _problem(seed: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Initial parameters and a sequence of STEPS gradients for them."""
    r = _rng(seed)
    shapes = [(3, 4), (4,), (2, 3, 2)]
    params = [r.normal(size=s) for s in shapes]
    grads = [[r.normal(size=s) for s in shapes] for _ in range(STEPS)]
    return params, grads


def _run_torch(
    make_opt: Callable[[list[Any]], Any], params: list[np.ndarray], grads: list[list[np.ndarray]]
) -> list[np.ndarray]:
    torch = _torch()
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    opt = make_opt(tp)
    for step_grads in grads:
        for p, g in zip(tp, step_grads, strict=True):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in tp]


SGD_CONFIGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.3},
    {"momentum": 0.8, "nesterov": True},
    {"weight_decay": 0.05},
    {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.05},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
]


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=lambda c: ",".join(c) or "plain")
def test_sgd_matches_torch(cfg: dict[str, Any]) -> None:
    torch = _torch()
    params, grads = _problem(14)
    lr = 0.1
    expected = _run_torch(lambda tp: torch.optim.SGD(tp, lr=lr, **cfg), params, grads)

    ps = [p.copy() for p in params]
    bufs: list[np.ndarray | None] = [None] * len(ps)
    for step_grads in grads:
        R.sgd_step(ps, step_grads, bufs, lr, **cfg)
    for p, e in zip(ps, expected, strict=True):
        np.testing.assert_allclose(p, e, rtol=0, atol=1e-12)
    if cfg.get("momentum", 0.0):
        assert all(b is not None and b.shape == p.shape for b, p in zip(bufs, ps, strict=True))
    else:
        assert bufs == [None] * len(ps)


def test_sgd_plain_is_the_notes_update() -> None:
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    g_before = g.copy()
    R.sgd_step([p], [g], [None], lr=0.1)
    np.testing.assert_array_equal(p, [1.0 - 0.05, -2.0 - 0.025])
    np.testing.assert_array_equal(g, g_before)  # grads untouched
    with pytest.raises(ValueError, match="nesterov"):
        R.sgd_step([p], [g], [None], lr=0.1, nesterov=True)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_matches_torch(weight_decay: float) -> None:
    torch = _torch()
    params, grads = _problem(15)
    kw = {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": weight_decay}
    expected = _run_torch(lambda tp: torch.optim.Adam(tp, **kw), params, grads)

    ps = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    for step, step_grads in enumerate(grads, start=1):
        R.adam_step(
            ps,
            step_grads,
            m,
            v,
            step,
            lr=0.02,
            beta1=0.8,
            beta2=0.99,
            eps=1e-6,
            weight_decay=weight_decay,
        )
    for p, e in zip(ps, expected, strict=True):
        np.testing.assert_allclose(p, e, rtol=0, atol=1e-12)


def test_adam_defaults_match_torch() -> None:
    torch = _torch()
    params, grads = _problem(16)
    expected = _run_torch(lambda tp: torch.optim.Adam(tp), params, grads)
    ps = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    for step, step_grads in enumerate(grads, start=1):
        R.adam_step(ps, step_grads, m, v, step)
    for p, e in zip(ps, expected, strict=True):
        np.testing.assert_allclose(p, e, rtol=0, atol=1e-12)


def test_adam_is_the_notes_bias_corrected_update() -> None:
    r = _rng(17)
    p0 = r.normal(size=5)
    g1, g2 = r.normal(size=5), r.normal(size=5)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-3
    p = p0.copy()
    m, v = [np.zeros(5)], [np.zeros(5)]
    R.adam_step([p], [g1], m, v, 1)
    R.adam_step([p], [g2], m, v, 2)

    # the notes: m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), p -= lr m_hat / (sqrt(v_hat) + eps)
    mm, vv, q = np.zeros(5), np.zeros(5), p0.copy()
    for t, g in ((1, g1), (2, g2)):
        mm = b1 * mm + (1 - b1) * g
        vv = b2 * vv + (1 - b2) * g**2
        q = q - lr * (mm / (1 - b1**t)) / (np.sqrt(vv / (1 - b2**t)) + eps)
    np.testing.assert_allclose(p, q, rtol=0, atol=1e-15)
    np.testing.assert_allclose(m[0], mm, rtol=1e-15)
    np.testing.assert_allclose(v[0], vv, rtol=1e-15)
    # the first step moves every coordinate by about lr (m_hat / sqrt(v_hat) = sign(g))
    np.testing.assert_allclose(np.abs(p0 - _first_adam(p0, g1)), lr, rtol=1e-4)
    with pytest.raises(ValueError, match="step"):
        R.adam_step([p], [g1], m, v, 0)


def _first_adam(p0: np.ndarray, g: np.ndarray) -> np.ndarray:
    p: np.ndarray = p0.copy()
    R.adam_step([p], [g], [np.zeros_like(p)], [np.zeros_like(p)], 1)
    return p
