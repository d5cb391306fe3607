"""Central finite-difference checks, in float64, of the reference's and the kernels' gradients.

The scalar loss is L = sum(y * dy) + sum(h_n * dh_n) [+ sum(c_n * dc_n)], whose analytic gradients
are what backward returns for the incoming gradients (dy, dh_n, dc_n). Every entry of every input
and parameter is perturbed (the problems are small). Step eps ~ eps_machine^(1/3); the truncation
error of central differences is O(eps^2) and the rounding error O(eps_machine / eps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.convert import gru_notes_to_torch
from helpers import assert_close, contracted_loss, make_problem, numeric_grad

EPS = 1e-5
TOL = 1e-7  # relative to max(1, max |gradient|)


def loss_fn(p: Any, impl: str) -> Callable[[], float]:
    def loss() -> float:
        if impl == "reference":
            y, h_n, c_n, _ = R.forward(p.cell, p.x, *p.params, p.h0, p.c0)
        else:
            y, h_n, c_n, _ = F.forward(p.cell, p.x, *p.params, p.h0, p.c0, training=False)
        return contracted_loss(y, h_n, c_n, p.dy, p.dh_n, p.dc_n)

    return loss


def analytic(p: Any, impl: str) -> dict[str, Any]:
    if impl == "reference":
        _, _, _, cache = R.forward(p.cell, p.x, *p.params, p.h0, p.c0)
        g = R.backward(cache, p.dy, p.dh_n, p.dc_n)
        return {"x": g["dx"], "h0": g["dh0"], "c0": g["dc0"], **{k: g[k] for k in _PARAMS}}
    fw = F.forward(p.cell, p.x, *p.params, p.h0, p.c0)
    b = F.backward(p.cell, p.x, *p.params, fw.workspace, p.dy, p.dh_n, p.dc_n)
    return {
        "x": b.dx, "h0": b.dh0, "c0": b.dc0, "weight_ih": b.dweight_ih,
        "weight_hh": b.dweight_hh, "bias_ih": b.dbias_ih, "bias_hh": b.dbias_hh,
    }  # fmt: skip


_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@pytest.mark.parametrize("impl", ["reference", "kernels"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_gradients_match_finite_differences(cell: str, impl: str, bias: bool) -> None:
    p = make_problem(cell, 4, 2, 3, 5, bias=bias, seed=3)
    grads = analytic(p, impl)
    loss = loss_fn(p, impl)
    names = ["x", "h0", *(["c0"] if cell == "lstm" else []), "weight_ih", "weight_hh"]
    names += ["bias_ih", "bias_hh"] if bias else []
    for name in names:
        num = numeric_grad(loss, getattr(p, name), EPS)
        assert_close(grads[name], num, what=f"{impl} d{name}", rtol=TOL)
    if not bias:
        assert grads["bias_ih"] is None and grads["bias_hh"] is None


def test_gru_notes_convention_conversion() -> None:
    """The course notes' GRU (h' = (1 - z) h + z n) equals ours with the z block negated."""
    p = make_problem("gru_reset_before", 5, 3, 4, 6)
    H = 6
    w_ih, w_hh, b_ih, b_hh = p.params
    # the notes' formula, written out, with their z
    sig = R.sigmoid
    h = p.h0
    for t in range(5):
        x = p.x[t]
        r = sig(x @ w_ih[:H].T + b_ih[:H] + h @ w_hh[:H].T + b_hh[:H])
        z = sig(x @ w_ih[H : 2 * H].T + b_ih[H : 2 * H] + h @ w_hh[H : 2 * H].T + b_hh[H : 2 * H])
        n = np.tanh(x @ w_ih[2 * H :].T + b_ih[2 * H :] + (r * h) @ w_hh[2 * H :].T + b_hh[2 * H :])
        h = (1 - z) * h + z * n
    conv = gru_notes_to_torch(w_ih, w_hh, b_ih, b_hh)
    _, h_n, _, _ = F.forward("gru_reset_before", p.x, *conv, p.h0, training=False)
    np.testing.assert_allclose(h_n, h, rtol=1e-12, atol=1e-12)
    back = gru_notes_to_torch(*conv)
    for a, b in zip(back, p.params, strict=False):
        np.testing.assert_array_equal(a, b)
