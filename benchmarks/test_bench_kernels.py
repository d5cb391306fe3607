"""pytest-benchmark timings of the kernels (float32), each also checking its result.

Run with ``python -m pytest benchmarks`` (add ``--benchmark-only`` to skip nothing but tests,
``--benchmark-json out.json`` to save). Groups: one per shape and pass, comparing the cells, and
PyTorch's modules where torch is installed. The result of every benchmarked call is compared with
the NumPy reference (run once, in float64) so that a fast wrong kernel cannot pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R

pytest.importorskip("pytest_benchmark")

SHAPES = {  # T, B, I, H
    "T50-B32-I128-H128": (50, 32, 128, 128),
    "S1-T100-B64-I256-H256": (100, 64, 256, 256),
    "S3-T200-B1-I128-H256": (200, 1, 128, 256),
}
TORCH = {"rnn_tanh": ("RNN", {}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
         "lstm": ("LSTM", {}), "gru": ("GRU", {})}  # fmt: skip
_REF: dict[tuple[str, str], Any] = {}


def problem(cell: str, shape: tuple[int, ...]) -> dict[str, Any]:
    T, B, I, H = shape
    rng = np.random.default_rng(0)
    G = F.num_gates(cell)
    k = 1 / np.sqrt(H)
    own = F.StackSpec(cell, I, H).cell_params_size  # lstm_peephole's peepholes
    p = {
        "x": rng.standard_normal((T, B, I)).astype(np.float32),
        "params": [rng.uniform(-k, k, s).astype(np.float32)
                   for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))],
        "own": [rng.uniform(-k, k, own).astype(np.float32)] if own else None,
        "dy": rng.standard_normal((T, B, H)).astype(np.float32),
    }  # fmt: skip
    return p


def reference(cell: str, name: str, p: dict[str, Any]) -> dict[str, Any]:
    if (cell, name) not in _REF:
        x = p["x"].astype(np.float64)
        params = [a.astype(np.float64) for a in p["params"]]
        own = None if p["own"] is None else [a.astype(np.float64) for a in p["own"]]
        y, _, _, cache = R.forward(cell, x, *params, cell_params=own)
        g = R.backward(cache, p["dy"].astype(np.float64))
        _REF[(cell, name)] = {"y": y, **g}
    return _REF[(cell, name)]


def check(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max())
    assert err <= 1e-4 * scale, f"{what}: {err:.2e}"


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("cell", F.CELLS)
def test_forward_inference(benchmark: Any, cell: str, name: str) -> None:
    benchmark.group = f"forward {name}"
    p = problem(cell, SHAPES[name])
    res = benchmark(
        lambda: F.forward(cell, p["x"], *p["params"], cell_params=p["own"], training=False)
    )
    check(res.y, reference(cell, name, p)["y"], "y")


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("cell", F.CELLS)
def test_forward_backward(benchmark: Any, cell: str, name: str) -> None:
    benchmark.group = f"forward+backward {name}"
    p = problem(cell, SHAPES[name])

    def step() -> Any:
        fw = F.forward(cell, p["x"], *p["params"], cell_params=p["own"])
        return F.backward(cell, p["x"], *p["params"], fw.workspace, p["dy"], cell_params=p["own"])

    res = benchmark(step)
    ref = reference(cell, name, p)
    check(res.dx, ref["dx"], "dx")
    check(res.dweight_hh, ref["weight_hh"], "dweight_hh")


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("cell", list(TORCH))
def test_torch_forward_backward(benchmark: Any, cell: str, name: str) -> None:
    torch = pytest.importorskip("torch")
    benchmark.group = f"forward+backward {name}"
    p = problem(cell, SHAPES[name])
    cls, kw = TORCH[cell]
    _T, _B, I, H = SHAPES[name]
    m = getattr(torch.nn, cls)(I, H, **kw)
    with torch.no_grad():
        for par, a in zip(m.parameters(), p["params"], strict=False):
            par.copy_(torch.from_numpy(a))
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    dy = torch.from_numpy(p["dy"])

    def step() -> Any:
        x.grad = None
        y, _ = m(x)
        y.backward(dy)
        return x.grad

    dx = benchmark(step)
    check(dx.numpy(), reference(cell, name, p)["dx"], "torch dx")


@pytest.mark.parametrize("lengths", ["none", "all_full", "mixed"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lengths_overhead(benchmark: Any, cell: str, lengths: str) -> None:
    """Bidirectional 2-layer stack on S1 with lengths not given, given but all T (the cost of the
    sorting and copies alone), and mixed (less work: finished sequences are skipped)."""
    T, B, I, H = SHAPES["S1-T100-B64-I256-H256"]
    benchmark.group = f"lengths {cell} S1 2 layers bidirectional"
    rng = np.random.default_rng(0)
    G = F.num_gates(cell)
    k = 1 / np.sqrt(H)
    params = [
        tuple(rng.uniform(-k, k, s).astype(np.float32) for s in ((G * H, In), (G * H, H)))
        for In in (I, I, 2 * H, 2 * H)
    ]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lens = {"none": None, "all_full": np.full(B, T), "mixed": rng.integers(1, T + 1, B)}[lengths]
    opts = {"num_layers": 2, "bidirectional": True, "lengths": lens, "training": False}
    res = benchmark(lambda: F.stack_forward(cell, x, params, **opts))
    if lengths == "all_full":
        ref = F.stack_forward(cell, x, params, **{**opts, "lengths": None})
        np.testing.assert_array_equal(res.y, ref.y)
