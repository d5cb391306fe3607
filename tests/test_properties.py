"""Property-based tests (hypothesis) over random shapes, options and dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrnn import functional as F
from fastrnn import reference as R
from helpers import assert_close, stack_params

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]


@st.composite
def problems(draw: Any) -> dict[str, Any]:
    cell = draw(st.sampled_from(CELLS))
    T = draw(st.integers(0, 7))
    B = draw(st.integers(0, 5))
    I = draw(st.integers(1, 6))
    H = draw(st.integers(1, 7))
    L = draw(st.integers(1, 3))
    D = draw(st.sampled_from([1, 2]))
    P = draw(st.integers(0, H - 1)) if cell == "lstm" and H > 1 and draw(st.booleans()) else 0
    bias = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    lengths = (
        np.array(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)), dtype=np.int64)
        if draw(st.booleans())
        else None
    )
    seed = draw(st.integers(0, 2**31))
    return {"cell": cell, "T": T, "B": B, "I": I, "H": H, "L": L, "D": D, "P": P, "bias": bias,
            "dtype": dtype, "lengths": lengths, "seed": seed}  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_kernels_agree_with_the_reference(p: dict[str, Any]) -> None:
    cell, T, B, I, H, L, D, P = (p[k] for k in ("cell", "T", "B", "I", "H", "L", "D", "P"))
    dtype = p["dtype"]
    rng = np.random.default_rng(p["seed"])
    Hs = P or H
    params = stack_params(
        rng, cell, I, H, num_layers=L, num_directions=D, proj_size=P, dtype=dtype, bias=p["bias"]
    )
    lstm = cell == "lstm"
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((L * D, B, Hs)).astype(dtype)
    c0 = rng.standard_normal((L * D, B, H)).astype(dtype) if lstm else None
    dy = rng.standard_normal((T, B, D * Hs)).astype(dtype)
    dh = rng.standard_normal((L * D, B, Hs)).astype(dtype)
    dc = rng.standard_normal((L * D, B, H)).astype(dtype) if lstm else None
    opts = {"num_layers": L, "bidirectional": D == 2, "lengths": p["lengths"]}

    fw = F.stack_forward(cell, x, params, h0, c0, proj_size=P, **opts)
    bw = F.stack_backward(cell, x, params, fw.workspace, dy, dh, dc, proj_size=P, **opts)

    as64 = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    y, h_n, c_n, cache = R.stack_forward(
        cell, as64(x), [tuple(as64(a) for a in q) for q in params], as64(h0), as64(c0), **opts
    )
    g = R.stack_backward(cache, as64(dy), as64(dh), as64(dc))
    # float32 accumulates over up to 3 layers x 7 steps: a looser factor than the 1e-5 base
    f = 10.0
    assert_close(fw.y, y, dtype, "y", f)
    assert_close(fw.h_n, h_n, dtype, "h_n", f)
    assert_close(bw.dx, g["dx"], dtype, "dx", f)
    assert_close(bw.dh0, g["dh0"], dtype, "dh0", f)
    if lstm:
        assert_close(fw.c_n, c_n, dtype, "c_n", f)
        assert_close(bw.dc0, g["dc0"], dtype, "dc0", f)
    for got, want in zip(bw.grads, g["params"], strict=True):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
            a, b = getattr(got, name), want[name]
            assert (a is None) == (b is None)
            if a is not None:
                assert_close(a, b, dtype, name, f)


ARRAYS = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.sampled_from(["x", b"y", [1, 2], [[1.0]], object()]),
    st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)).map(np.zeros),
    st.tuples(st.integers(0, 3), st.integers(0, 3)).map(lambda s: np.zeros(s, np.float32)),
    st.sampled_from([np.int32, np.float16, np.complex64, np.float32, np.float64]).map(
        lambda d: np.zeros((3, 2, 4), d)
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    cell=st.sampled_from([*CELLS, "bogus"]),
    x=ARRAYS,
    w_ih=ARRAYS,
    w_hh=ARRAYS,
    h0=ARRAYS,
    lengths=st.one_of(st.none(), st.lists(st.integers(-2, 5), max_size=4)),
)
def test_any_call_succeeds_or_raises_a_documented_exception(
    cell: str, x: Any, w_ih: Any, w_hh: Any, h0: Any, lengths: Any
) -> None:
    try:
        fw = F.stack_forward(cell, x, [(w_ih, w_hh, None, None, None)], h0, lengths=lengths)
        F.stack_backward(cell, x, [(w_ih, w_hh, None, None, None)], fw.workspace, lengths=lengths)
    except (TypeError, ValueError):
        pass
