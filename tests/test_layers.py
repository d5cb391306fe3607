"""The layer API: constructors, parameters, modes, the once-per-forward backward, layouts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import reference as R
from fastrnn.spec import Layout
from helpers import CELLS, assert_close, make_layer


@pytest.fixture(params=CELLS)
def kind(request: pytest.FixtureRequest) -> str:
    """The layer of every cell (RNN tanh and relu, LSTM, GRU resetting after and before)."""
    return request.param  # type: ignore[no-any-return]


def make(kind: str, **kw: Any) -> Any:
    """A layer of 4 inputs and 6 units."""
    return make_layer(kind, 4, 6, **kw)


def states_of(kind: str, st: Any) -> tuple[Any, ...]:
    return st if kind == "lstm" else (st,)


def test_constructor_signature_positional_like_torch() -> None:
    # torch.nn.RNN(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, ...)
    r = fastrnn.RNN(3, 5, 1, "relu", False, True)
    assert (r.nonlinearity, r.bias, r.batch_first) == ("relu", False, True)
    # torch.nn.LSTM / GRU(input_size, hidden_size, num_layers, bias, batch_first, ...)
    for cls in (fastrnn.LSTM, fastrnn.GRU):
        m = cls(3, 5, 1, False, True)
        assert (m.bias, m.batch_first, m.num_layers) == (False, True, 1)
        assert "bias_ih_l0" not in m.state_dict()


def test_defaults(kind: str) -> None:
    m = make(kind)
    assert m.dtype == np.float32 and m.training and not m.batch_first and m.bias
    assert all(p.dtype == np.float32 for _, p in m.named_parameters())
    m64 = make(kind, dtype=np.float64)
    assert all(p.dtype == np.float64 for _, p in m64.named_parameters())


def test_seed_reproducible_and_init_range(kind: str) -> None:
    a, b, c = make(kind, seed=7), make(kind, seed=7), make(kind, seed=8)
    for (n, p), (_, q), (_, r) in zip(
        a.named_parameters(), b.named_parameters(), c.named_parameters(), strict=False
    ):
        np.testing.assert_array_equal(p, q)
        assert not np.array_equal(p, r), n
        assert np.abs(p).max() <= 1 / np.sqrt(6)


def test_init_distribution() -> None:
    """uniform(-k, k), k = 1/sqrt(H): the range is filled and the mean is ~0 (5 sigma)."""
    H = 64
    k = 1 / np.sqrt(H)
    for name, p in fastrnn.LSTM(10, H, seed=0).named_parameters():
        assert np.abs(p).max() <= k and np.abs(p).max() > 0.95 * k, name
        assert abs(float(p.mean())) < 5 * k / np.sqrt(3 * p.size), name


def test_state_dict_round_trip(kind: str) -> None:
    a, b = make(kind, seed=1), make(kind, seed=2)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    sd = a.state_dict()
    sd["weight_hh_l0"][:] = 0  # a copy: the layer is unchanged
    assert a.weight_hh_l0.any()


def test_load_converts_dtype(kind: str) -> None:
    a = make(kind, dtype=np.float64, seed=3)
    b = make(kind)  # float32
    b.load_state_dict(a.state_dict())
    for _, p in b.named_parameters():
        assert p.dtype == np.float32


def test_outputs_shapes(kind: str) -> None:
    m = make(kind)
    x = np.zeros((5, 3, 4), np.float32)
    y, st = m(x)
    assert y.shape == (5, 3, 6) and y.dtype == np.float32
    assert all(s.shape == (1, 3, 6) for s in states_of(kind, st))
    if kind == "lstm":
        assert isinstance(st, tuple) and len(st) == 2
    else:
        assert isinstance(st, np.ndarray)


def test_layer_matches_reference_with_batch_first(kind: str) -> None:
    m = make(kind, dtype=np.float64, batch_first=True, seed=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 4))  # (B, T, I)
    h0 = rng.standard_normal((1, 3, 6))
    hx = (h0, rng.standard_normal((1, 3, 6))) if kind == "lstm" else h0
    y, st = m(x, hx)
    p = m.state_dict()
    c0 = hx[1][0] if kind == "lstm" else None
    yr, hr, _cr, cache = R.forward(
        m.cell, x.swapaxes(0, 1), p["weight_ih_l0"], p["weight_hh_l0"],
        p["bias_ih_l0"], p["bias_hh_l0"], h0[0], c0,
    )  # fmt: skip
    assert_close(y, yr.swapaxes(0, 1), np.float64, "y")
    assert_close(states_of(kind, st)[0][0], hr, np.float64, "h_n")
    dy = rng.standard_normal(y.shape)
    dx, dst = m.backward(dy)
    g = R.backward(cache, dy.swapaxes(0, 1))
    assert dx.shape == x.shape
    assert_close(dx, g["dx"].swapaxes(0, 1), np.float64, "dx")
    assert_close(states_of(kind, dst)[0][0], g["dh0"], np.float64, "dh0")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert_close(m.grads[name + "_l0"], g[name], np.float64, name)


def test_unbatched(kind: str) -> None:
    m = make(kind, dtype=np.float64, seed=2)
    x = np.random.default_rng(0).standard_normal((5, 4))
    y, st = m(x)
    yb, stb = m(x[:, None, :])
    assert y.shape == (5, 6)
    np.testing.assert_array_equal(y, yb[:, 0])
    for s, sb in zip(states_of(kind, st), states_of(kind, stb), strict=False):
        assert s.shape == (1, 6)
        np.testing.assert_array_equal(s, sb[:, 0])
    m(x)
    dx, dst = m.backward(np.ones((5, 6)))
    assert dx.shape == (5, 4)
    assert all(s.shape == (1, 6) for s in states_of(kind, dst))


def test_backward_state_gradient_parts_may_be_none(kind: str) -> None:
    m = make(kind, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    dy = np.random.default_rng(1).standard_normal((5, 3, 6))
    results = []
    z = np.zeros((1, 3, 6))
    dstates: list[Any] = [None, z]
    if kind == "lstm":
        dstates = [None, (None, None), (z, None), (None, z), (z, z)]
    for ds in dstates:
        m(x)
        results.append(m.backward(dy, ds))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0][0], other[0])


def test_backward_only_once_per_forward(kind: str) -> None:
    m = make(kind)
    x = np.zeros((5, 3, 4), np.float32)
    with pytest.raises(RuntimeError, match="no saved forward"):
        m.backward(np.zeros((5, 3, 6), np.float32))
    y, _ = m(x)
    m.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="exactly one backward"):
        m.backward(np.ones_like(y))
    m(x)
    m.backward(np.ones_like(y))  # a new forward makes backward valid again


def test_eval_mode_saves_nothing(kind: str) -> None:
    m = make(kind)
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    y_train, _ = m(x)
    assert m.eval() is m and not m.training
    y_eval, _ = m(x)
    np.testing.assert_array_equal(y_train, y_eval)
    assert m._saved is None
    with pytest.raises(RuntimeError, match="no saved forward"):
        m.backward(np.ones_like(y_eval))
    m.train()
    m(x)
    m.backward(np.ones_like(y_eval))


def test_failed_backward_keeps_the_saved_forward(kind: str) -> None:
    """A backward rejected for a bad argument does not use up the forward."""
    m = make(kind)
    y, _ = m(np.zeros((5, 3, 4), np.float32))
    with pytest.raises(ValueError, match="dy"):
        m.backward(np.ones((5, 3, 7), np.float32))
    m.backward(np.ones_like(y))


def test_modifying_x_after_forward_does_not_change_gradients(kind: str) -> None:
    m = make(kind, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    dy = np.ones((5, 3, 6))
    m(x.copy())
    m.backward(dy)
    expected = m.grads["weight_ih_l0"].copy()
    m(x)
    x[:] = 100.0  # the caller reuses its buffer before backward
    m.backward(dy)
    np.testing.assert_array_equal(m.grads["weight_ih_l0"], expected)


def test_load_state_dict_between_forward_and_backward_uses_forward_weights(kind: str) -> None:
    m = make(kind, dtype=np.float64, seed=1)
    other = make(kind, dtype=np.float64, seed=2).state_dict()
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    dy = np.ones((5, 3, 6))
    m(x)
    dx_ref, _ = m.backward(dy)
    m2 = make(kind, dtype=np.float64, seed=1)
    m2(x)
    m2.load_state_dict(other)
    dx, _ = m2.backward(dy)
    np.testing.assert_array_equal(dx, dx_ref)


def test_float64_input_to_float32_layer_is_converted(kind: str) -> None:
    m = make(kind)
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    y64, _ = m(x)
    y32, _ = m(x.astype(np.float32))
    assert y64.dtype == np.float32
    np.testing.assert_array_equal(y64, y32)


def test_grads_keys_match_state_dict(kind: str) -> None:
    for bias in (True, False):
        m = make(kind, bias=bias)
        y, _ = m(np.zeros((2, 1, 4), np.float32))
        m.backward(np.ones_like(y))
        assert set(m.grads) == set(m.state_dict())
        for k, v in m.state_dict().items():
            assert m.grads[k].shape == v.shape and m.grads[k].dtype == v.dtype


def test_proj_size_must_be_smaller_than_hidden_size() -> None:
    with pytest.raises(ValueError, match="proj_size: must be smaller than hidden_size"):
        fastrnn.LSTM(3, 4, proj_size=4)
    with pytest.raises(TypeError):
        fastrnn.GRU(3, 4, proj_size=2)  # type: ignore[call-arg]


def test_dropout_is_seeded_train_only_and_matches_the_reference() -> None:
    kw = {"num_layers": 3, "dropout": 0.4, "bidirectional": True, "dtype": np.float64}
    x = np.random.default_rng(0).standard_normal((6, 4, 3))
    lengths = np.array([6, 2, 0, 4])
    a, b, c = (fastrnn.GRU(3, 5, **kw, seed=s) for s in (11, 11, 12))
    ya, yb, yc = (m(x, lengths=lengths)[0] for m in (a, b, c))
    np.testing.assert_array_equal(ya, yb)  # same seed, same masks
    assert not np.array_equal(ya, yc)
    # the masks a used are the next ones of a fresh layer with the same seed
    twin = fastrnn.GRU(3, 5, **kw, seed=11)
    masks = twin._dropout_masks(6, 4)
    assert masks is not None and set(np.unique(masks)) == {0.0, 1 / 0.6}
    params = [tuple(p) for p in twin.spec.entries_of(dict(twin.named_parameters()))]
    y_ref = fastrnn.reference.stack_forward(
        "gru", x, params, num_layers=3, bidirectional=True, lengths=lengths, dropout_masks=masks
    )[0]
    np.testing.assert_allclose(ya, y_ref, rtol=1e-12, atol=1e-12)
    # eval mode: no dropout, and the same as the reference without masks
    a.eval()
    y_eval = a(x, lengths=lengths)[0]
    y_ref = fastrnn.reference.stack_forward(
        "gru", x, params, num_layers=3, bidirectional=True, lengths=lengths
    )[0]
    np.testing.assert_allclose(y_eval, y_ref, rtol=1e-12, atol=1e-12)


def test_dropout_on_one_layer_warns_like_torch() -> None:
    """The warning names the caller's line, whichever of fastrnn's constructors it went
    through."""
    makers = [
        lambda: fastrnn.GRU(3, 4, dropout=0.5),
        lambda: fastrnn.RNN(3, 4, dropout=0.5),
        lambda: fastrnn.LSTM(3, 4, dropout=0.5),
        lambda: fastrnn.LayerNormLSTM(3, 4, dropout=0.5),
        lambda: fastrnn.LayerNormGRU(3, 4, dropout=0.5),
        lambda: fastrnn.layers.from_spec(fastrnn.StackSpec("lstm", 3, 4), dropout=0.5),
        lambda: fastrnn.SequenceModel("gru", 3, 4, 2, dropout=0.5),
    ]
    for make in makers:
        with pytest.warns(UserWarning, match="dropout") as record:
            make()
        assert [w.filename for w in record] == [__file__]
    assert repr(fastrnn.GRU(3, 4, num_layers=2, dropout=0.5, bidirectional=True)) == (
        "GRU(3, 4, num_layers=2, dropout=0.5, bidirectional=True)"
    )


def test_repr() -> None:
    assert repr(fastrnn.LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(fastrnn.GRU(3, 4, batch_first=True, reset_after=False)) == (
        "GRU(3, 4, batch_first=True, reset_after=False)"
    )
    assert repr(fastrnn.RNN(3, 4, nonlinearity="relu", dtype=np.float64)) == (
        "RNN(3, 4, dtype=float64, nonlinearity='relu')"
    )


def test_attribute_access_to_parameters() -> None:
    m = fastrnn.LSTM(3, 4)
    assert m.weight_ih_l0.shape == (16, 3)
    with pytest.raises(AttributeError):
        _ = m.weight_ih_l1


def test_read_only_fortran_and_strided_inputs_are_accepted(kind: str) -> None:
    m = make(kind, dtype=np.float64, seed=5)
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    y_ref, _ = m(x.copy())
    ro = x.copy()
    ro.flags.writeable = False
    fortran = np.asfortranarray(x)
    strided = np.zeros((10, 3, 8))[::2, :, ::2]
    strided[...] = x
    for variant in (ro, fortran, strided):
        y, _ = m(variant)
        np.testing.assert_array_equal(y, y_ref)
        dx, _ = m.backward(np.ones_like(y))
        assert np.isfinite(dx).all()
    y0, _ = m(ro)
    assert y0.flags.writeable  # outputs are the caller's to modify


def test_contiguous_input_of_the_layer_dtype_is_not_copied_for_the_forward() -> None:
    m = fastrnn.GRU(4, 6).eval()
    x = np.zeros((5, 3, 4), np.float32)
    xt = m.spec.check_input(Layout(m.batch_first).time_major("x", x)[0])
    assert xt is x or np.shares_memory(xt, x)


@pytest.mark.parametrize("make", [lambda: fastrnn.GRU(4, 3), lambda: fastrnn.Linear(3, 2)])
def test_assigning_a_parameter_takes_effect_checked(make: Any) -> None:
    """``layer.weight = w`` replaces the parameter (forward and state_dict use it), checked and
    copied like a load_state_dict entry; it was once a silent no-op."""
    m = make().eval()
    name, old = next(iter(m.named_parameters()))
    x = np.ones((5, 2, 4) if isinstance(m, fastrnn.GRU) else (2, 3), np.float32)
    y0 = np.asarray(m(x)[0] if isinstance(m, fastrnn.GRU) else m(x))
    w = np.zeros(old.shape, np.float64)  # converted to the layer's dtype
    setattr(m, name, w)
    assert getattr(m, name) is not w and getattr(m, name).dtype == np.float32
    np.testing.assert_array_equal(m.state_dict()[name], w)
    y1 = np.asarray(m(x)[0] if isinstance(m, fastrnn.GRU) else m(x))
    assert not np.array_equal(y0, y1)
    with pytest.raises(ValueError, match=rf"{name}: expected shape"):
        setattr(m, name, np.zeros((1, 1), np.float32))
    with pytest.raises(TypeError, match=rf"{name}: expected dtype float32 or float64"):
        setattr(m, name, np.zeros(old.shape, np.int64))
    with pytest.raises(ValueError, match=rf"{name}: contains NaN or infinity"):
        setattr(m, name, np.full(old.shape, np.inf, np.float32))
    np.testing.assert_array_equal(getattr(m, name), w)  # unchanged by the refused ones
