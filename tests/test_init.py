"""fastrnn.init: initialisers with torch.nn.init's fans and gains, and init_recurrent on layers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import init

BIG = (512, 2048)  # for statistics: 1M samples, the std is estimated to ~0.1%


def _torch() -> Any:
    return pytest.importorskip("torch")


INITS: dict[str, Callable[..., np.ndarray]] = {
    "xavier_uniform": init.xavier_uniform,
    "xavier_normal": init.xavier_normal,
    "kaiming_uniform": init.kaiming_uniform,
    "kaiming_normal": init.kaiming_normal,
    "orthogonal": init.orthogonal,
    "zeros": init.zeros,
}


def _make(name: str, shape: Any, **kw: Any) -> np.ndarray:
    if name == "uniform_default":
        return init.uniform_default(shape, 16, **kw)
    return INITS[name](shape, **kw)


ALL = [*INITS, "uniform_default"]


# ---- shapes, dtypes, determinism ----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(6, 4), (3, 7), (5, 2, 3)])
def test_shape_and_dtype(name: str, shape: tuple[int, ...]) -> None:
    w = _make(name, shape, rng=0)
    assert w.shape == shape and w.dtype == np.float32
    w64 = _make(name, list(shape), rng=0, dtype=np.float64)
    assert w64.shape == shape and w64.dtype == np.float64
    assert np.isfinite(w64).all()


@pytest.mark.parametrize("name", ALL)
def test_determinism_by_seed(name: str) -> None:
    a = _make(name, (8, 5), rng=123)
    b = _make(name, (8, 5), rng=123)
    np.testing.assert_array_equal(a, b)
    c = _make(name, (8, 5), rng=np.random.default_rng(123))
    np.testing.assert_array_equal(a, c)
    if name != "zeros":
        assert not np.array_equal(a, _make(name, (8, 5), rng=124))
        # float64 draws the same numbers, before the cast
        np.testing.assert_allclose(a, _make(name, (8, 5), rng=123, dtype=np.float64), rtol=1e-6)


def test_new_array_each_call() -> None:
    g = np.random.default_rng(0)
    a = init.xavier_uniform((4, 4), rng=g)
    b = init.xavier_uniform((4, 4), rng=g)
    assert not np.array_equal(a, b)  # a shared Generator advances


def test_one_dimensional_shapes() -> None:
    assert init.zeros(5).shape == (5,)
    b = init.uniform_default(7, 4, rng=0)
    assert b.shape == (7,) and np.abs(b).max() <= 0.5


@pytest.mark.parametrize(
    "name", ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"]
)
def test_weight_initialisers_need_two_axes(name: str) -> None:
    with pytest.raises(ValueError, match="shape"):
        INITS[name]((5,), rng=0)
    with pytest.raises(ValueError, match="shape"):
        INITS[name]((5, -1), rng=0)


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal((4, 4), mode="fan_avg")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.kaiming_uniform((4, 4), nonlinearity="swish")
    with pytest.raises(ValueError, match="hidden_size"):
        init.uniform_default((4,), 0)
    with pytest.raises(TypeError, match="dtype"):
        init.xavier_uniform((4, 4), dtype=np.int32)


# ---- statistics ---------------------------------------------------------------------------------


def test_xavier_normal_std() -> None:
    w = init.xavier_normal(BIG, rng=1, dtype=np.float64)
    fan_out, fan_in = BIG
    expected = math.sqrt(2 / (fan_in + fan_out))
    assert abs(w.std() / expected - 1) < 0.02
    assert abs(w.mean()) < 0.01 * expected
    w2 = init.xavier_normal(BIG, gain=3.0, rng=1, dtype=np.float64)
    np.testing.assert_allclose(w2, 3 * w, rtol=1e-14)


def test_xavier_uniform_bounds_and_std() -> None:
    gain = init.calculate_gain("tanh")
    w = init.xavier_uniform(BIG, gain=gain, rng=2, dtype=np.float64)
    fan_out, fan_in = BIG
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.999 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02


def test_fans_of_higher_dimensional_shapes() -> None:
    # torch: fan_in = in * receptive field, fan_out = out * receptive field
    w = init.xavier_uniform((16, 8, 3), rng=0, dtype=np.float64)
    bound = math.sqrt(6 / (8 * 3 + 16 * 3))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_relu_gain(mode: str) -> None:
    fan = BIG[1] if mode == "fan_in" else BIG[0]
    w = init.kaiming_normal(BIG, mode=mode, nonlinearity="relu", rng=3, dtype=np.float64)
    assert abs(w.std() / math.sqrt(2 / fan) - 1) < 0.02
    u = init.kaiming_uniform(BIG, mode=mode, nonlinearity="relu", rng=3, dtype=np.float64)
    bound = math.sqrt(6 / fan)
    assert np.abs(u).max() <= bound and np.abs(u).max() > 0.999 * bound
    # the default (leaky_relu with a = 0) is the ReLU gain; a = 1 is a linear map, gain 1
    d = init.kaiming_normal(BIG, mode=mode, rng=3, dtype=np.float64)
    np.testing.assert_array_equal(d, w)
    lin = init.kaiming_normal(BIG, a=1.0, mode=mode, rng=3, dtype=np.float64)
    np.testing.assert_allclose(lin, w / math.sqrt(2), rtol=1e-14)


def test_uniform_default_bounds() -> None:
    w = init.uniform_default(BIG, 64, rng=4, dtype=np.float64)
    assert np.abs(w).max() <= 1 / 8 and np.abs(w).max() > 0.999 / 8


@pytest.mark.parametrize(
    ("name", "shape", "kw"),
    [
        ("xavier_uniform", (300, 200), {}),
        ("xavier_normal", (300, 200), {"gain": 2.0}),
        ("kaiming_uniform", (300, 200), {"mode": "fan_out", "nonlinearity": "relu"}),
        ("kaiming_normal", (300, 200), {"a": 0.3}),
        ("kaiming_normal", (40, 30, 5), {"mode": "fan_out"}),
        ("xavier_normal", (40, 30, 5), {}),
    ],
)
def test_std_matches_torch(name: str, shape: tuple[int, ...], kw: dict[str, Any]) -> None:
    torch = _torch()
    t = torch.empty(shape, dtype=torch.float64)
    torch.manual_seed(0)
    getattr(torch.nn.init, name + "_")(t, **kw)
    ours = INITS[name](shape, rng=0, dtype=np.float64, **kw)
    assert abs(ours.std() / t.std().item() - 1) < 0.02


@pytest.mark.parametrize(
    ("nonlinearity", "param"),
    [
        ("linear", None),
        ("conv1d", None),
        ("conv2d", None),
        ("conv3d", None),
        ("conv_transpose1d", None),
        ("conv_transpose2d", None),
        ("conv_transpose3d", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("leaky_relu", 1),
        ("selu", None),
    ],
)
def test_calculate_gain_matches_torch(nonlinearity: str, param: float | None) -> None:
    torch = _torch()
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15
    )


def test_calculate_gain_errors() -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("leaky_relu", "0.1")  # type: ignore[arg-type]


# ---- orthogonal ---------------------------------------------------------------------------------

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_orthonormal(w: np.ndarray, tol: float, gain: float = 1.0) -> None:
    """Orthonormal rows (wide or square) or columns (tall), times gain."""
    w = np.asarray(w, np.float64)
    g = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    err = float(np.abs(g - gain**2 * np.eye(g.shape[0])).max())
    assert err <= tol * gain**2, f"not orthonormal: {err:.3e}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32), (1, 5), (5, 1)])
def test_orthogonal(dtype: Any, shape: tuple[int, int]) -> None:
    w = init.orthogonal(shape, rng=5, dtype=dtype)
    assert w.dtype == dtype
    assert_orthonormal(w, TOL[dtype])
    assert_orthonormal(init.orthogonal(shape, gain=1.5, rng=5, dtype=dtype), TOL[dtype], 1.5)
    if shape[0] == shape[1]:
        w64 = np.asarray(w, np.float64)
        np.testing.assert_allclose(w64.T @ w64, np.eye(shape[0]), atol=TOL[dtype])


def test_orthogonal_flattens_trailing_axes() -> None:
    w = init.orthogonal((6, 2, 3), rng=0, dtype=np.float64)
    assert_orthonormal(w.reshape(6, 6), 1e-12)


def test_orthogonal_is_haar_distributed() -> None:
    # Without the sign fix, Householder QR makes diag(R) < 0 and so Q[0, 0] < 0 almost always.
    # With it, Q's first column is the first Gaussian column normalised: either sign, equally.
    g = np.random.default_rng(6)
    firsts = np.array([init.orthogonal((4, 4), rng=g, dtype=np.float64)[0, 0] for _ in range(400)])
    assert 0.4 < (firsts > 0).mean() < 0.6
    assert abs(firsts.mean()) < 0.1


# ---- init_recurrent -----------------------------------------------------------------------------


def _blocks(w: np.ndarray, H: int) -> list[np.ndarray]:
    return [w[k * H : (k + 1) * H] for k in range(w.shape[0] // H)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_recurrent_lstm_projection(dtype: Any) -> None:
    H, P, I = 8, 3, 4
    layer = fastrnn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P, dtype=dtype, seed=0)
    before = layer.state_dict()
    out = init.init_recurrent(layer, rng=0)
    assert out is layer
    sd = layer.state_dict()
    assert list(sd) == list(before)
    names_hh = [k for k in sd if k.startswith("weight_hh")]
    assert len(names_hh) == 4  # 2 layers x 2 directions
    for name, w in sd.items():
        assert w.dtype == dtype and w.shape == before[name].shape, name
        assert not np.array_equal(w, before[name]), name
        if name.startswith("weight_hh"):
            assert w.shape == (4 * H, P)
            for block in _blocks(w, H):  # (H, P): orthonormal columns
                assert_orthonormal(block, TOL[dtype])
        elif name.startswith("bias"):
            assert not w.any(), name
        elif name.startswith("weight_ih"):  # xavier_uniform, fans of the whole (4H, In) matrix
            In = I if name.endswith(("l0", "l0_reverse")) else 2 * P
            bound = math.sqrt(6 / (In + 4 * H))
            assert np.abs(w).max() <= bound * (1 + 1e-6), name
            assert np.abs(w).max() > 0.5 * bound, name
        else:  # weight_hr (P, H), with the weight_ih scheme
            assert name.startswith("weight_hr") and w.shape == (P, H)
            assert np.abs(w).max() <= math.sqrt(6 / (P + H)) * (1 + 1e-6), name
    # the layer still runs
    y, (h, c) = layer(np.random.default_rng(1).normal(size=(5, 2, I)).astype(dtype))
    assert y.shape == (5, 2, 2 * P) and h.shape == (4, 2, P) and c.shape == (4, 2, H)
    assert np.isfinite(y).all() and np.abs(y).max() > 0


@pytest.mark.parametrize("reset_after", [True, False])
def test_init_recurrent_gru_blocks_orthogonal(reset_after: bool) -> None:
    H = 6
    layer = fastrnn.GRU(
        5, H, num_layers=2, bidirectional=True, reset_after=reset_after, dtype=np.float64
    )
    init.init_recurrent(layer, rng=2)
    sd = layer.state_dict()
    for name, w in sd.items():
        if name.startswith("weight_hh"):
            assert w.shape == (3 * H, H)
            blocks = _blocks(w, H)
            for block in blocks:
                assert_orthonormal(block, 1e-12)
                np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-12)
            assert not np.allclose(blocks[0], blocks[1])  # each block drawn on its own
        elif name.startswith("bias"):
            assert not w.any(), name
    y, _ = layer(np.random.default_rng(3).normal(size=(4, 3, 5)))
    assert y.shape == (4, 3, 2 * H) and np.isfinite(y).all()


def test_init_recurrent_rnn_and_schemes() -> None:
    H = 16
    layer = fastrnn.RNN(10, H, seed=0)
    init.init_recurrent(
        layer, weight_ih="kaiming_normal", weight_hh="orthogonal", bias="default", rng=0
    )
    assert_orthonormal(layer.weight_hh_l0, 1e-5)
    k = 1 / math.sqrt(H)
    assert np.abs(layer.bias_ih_l0).max() <= k and layer.bias_ih_l0.any()
    init.init_recurrent(layer, weight_ih="default", weight_hh="zeros", rng=0)
    assert np.abs(layer.weight_ih_l0).max() <= k
    assert not layer.weight_hh_l0.any() and not layer.bias_hh_l0.any()
    init.init_recurrent(layer, weight_ih="orthogonal", weight_hh="xavier_normal", rng=0)
    assert_orthonormal(layer.weight_ih_l0, 1e-5)  # (16, 10), tall
    y, _ = layer(np.ones((3, 2, 10), np.float32))
    assert np.isfinite(y).all()


def test_init_recurrent_kaiming_uses_whole_matrix_fan() -> None:
    H, I = 128, 256
    layer = fastrnn.LSTM(I, H, dtype=np.float64)
    init.init_recurrent(layer, weight_ih="kaiming_normal", weight_hh="kaiming_uniform", rng=4)
    assert abs(layer.weight_ih_l0.std() / math.sqrt(2 / I) - 1) < 0.02  # fan_in = I
    assert np.abs(layer.weight_hh_l0).max() <= math.sqrt(6 / H)  # fan_in = H


def test_init_recurrent_deterministic() -> None:
    a = init.init_recurrent(fastrnn.GRU(3, 4, num_layers=2, seed=1), rng=9).state_dict()
    b = init.init_recurrent(fastrnn.GRU(3, 4, num_layers=2, seed=2), rng=9).state_dict()
    c = init.init_recurrent(fastrnn.GRU(3, 4, num_layers=2, seed=1), rng=10).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a if k.startswith("weight"))


@pytest.mark.parametrize("bias", ["zeros", "default"])
def test_forget_bias(bias: str) -> None:
    H = 5
    layer = fastrnn.LSTM(3, H, num_layers=2, bidirectional=True, dtype=np.float64)
    init.init_recurrent(layer, bias=bias, forget_bias=1.0, rng=0)
    for name, b in layer.state_dict().items():
        if name.startswith("bias_ih"):
            b_hh = getattr(layer, name.replace("bias_ih", "bias_hh"))
            np.testing.assert_array_equal(b[H : 2 * H], 1.0)
            np.testing.assert_array_equal(b_hh[H : 2 * H], 0.0)
            np.testing.assert_array_equal((b + b_hh)[H : 2 * H], 1.0)
            others = np.concatenate([b[:H], b[2 * H :], b_hh[:H], b_hh[2 * H :]])
            if bias == "zeros":
                assert not others.any()
            else:
                assert others.all() and np.abs(others).max() <= 1 / math.sqrt(H)
    y, _ = layer(np.zeros((2, 1, 3)))
    assert np.isfinite(y).all()


def test_forget_bias_float32_layer() -> None:
    layer = fastrnn.LSTM(2, 4, seed=0)
    init.init_recurrent(layer, forget_bias=2.5, rng=0)
    assert layer.bias_ih_l0.dtype == np.float32
    np.testing.assert_array_equal(
        layer.bias_ih_l0 + layer.bias_hh_l0, [0] * 4 + [2.5] * 4 + [0] * 8
    )


def test_init_recurrent_errors() -> None:
    lstm = fastrnn.LSTM(2, 4)
    for arg in ("weight_ih", "weight_hh", "bias"):
        kw: dict[str, Any] = {arg: "glorot"}
        with pytest.raises(ValueError, match=arg):
            init.init_recurrent(lstm, **kw)
    with pytest.raises(ValueError, match="bias"):
        init.init_recurrent(lstm, bias="orthogonal")
    with pytest.raises(ValueError, match="forget_bias"):
        init.init_recurrent(fastrnn.GRU(2, 4), forget_bias=1.0)
    with pytest.raises(ValueError, match="forget_bias"):
        init.init_recurrent(fastrnn.RNN(2, 4), forget_bias=1.0)
    with pytest.raises(ValueError, match="forget_bias"):
        init.init_recurrent(fastrnn.LSTM(2, 4, bias=False), forget_bias=1.0)
    with pytest.raises(TypeError, match="layer"):
        init.init_recurrent(object(), rng=0)  # type: ignore[type-var]
    # a failed call changes nothing
    before = lstm.state_dict()
    with pytest.raises(ValueError, match="weight_hh"):
        init.init_recurrent(lstm, weight_hh="he")
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_init_recurrent_no_bias_layer() -> None:
    layer = fastrnn.GRU(3, 4, bias=False)
    init.init_recurrent(layer, rng=0)
    assert not any(k.startswith("bias") for k in layer.state_dict())
    for block in _blocks(layer.weight_hh_l0, 4):
        assert_orthonormal(block, 1e-5)


@pytest.mark.parametrize("fn", [init.xavier_uniform, init.xavier_normal, init.orthogonal])
@pytest.mark.parametrize(("gain", "exc"), [(float("nan"), ValueError), (float("inf"), ValueError),
                                           ("x", TypeError), (True, TypeError)])  # fmt: skip
def test_gain_must_be_a_finite_real(fn: Any, gain: Any, exc: type) -> None:
    with pytest.raises(exc, match="gain"):
        fn((4, 4), gain=gain, rng=0)
