"""``python -m fastrnn.bench --cells lnlstm``: the layer-normalised LSTM against its TorchScript
peer (PyTorch's benchmark suite's LayerNormLSTM): the peer computes fastrnn's outputs and
gradients, the other peers skip the cell, the ratios and targets under the table, and a tiny run
end to end. No timing is checked."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastrnn.tools import bench, bench_lnlstm
from helpers import assert_bench_usage_error, bench_args

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="the TorchScript peer needs torch")

# a case smaller than any standard shape: T, B, I, H
SMALL = (6, 3, 5, 4)


def _inputs(states: bool, shape: tuple[int, ...] = SMALL) -> Any:
    return bench._Inputs.draw("lnlstm", shape, states)


def test_options() -> None:
    assert bench_args([]).cells == ["lstm", "gru", "rnn"]  # lnlstm only when asked for
    args = bench_args(["--cells", "lstm", "lnlstm", "--shapes", "S1"])
    assert args.cells == ["lstm", "lnlstm"] and bench.CELLS["lnlstm"] == 4


@pytest.mark.parametrize("mode", ["bfloat16", "int8"])
def test_lnlstm_is_float32_only(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--compute-dtype", mode, "--cells", "lstm", "lnlstm", "--shapes", "S5"]
    assert_bench_usage_error(argv, f"--cells lnlstm: not with --compute-dtype {mode}", capsys)


@pytest.mark.parametrize("passes", ["forward", "forward+backward", "train-step"])
@pytest.mark.parametrize("peer", ["ort", "reference", "fastrnn.torch"])
def test_the_peers_without_the_cell_skip_it(peer: str, passes: str) -> None:
    assert bench._case(peer, "lnlstm", SMALL, passes) is None
    assert bench._case("fastrnn", "lnlstm", SMALL, "train-step") is None


def test_the_cell_params_vector_and_the_fastrnn_case() -> None:
    p = bench_lnlstm.params(np.random.default_rng(0), 5, 4)
    v = bench_lnlstm.cell_params(p)
    assert v.shape == (40,) and v.dtype == np.float32
    np.testing.assert_array_equal(v[:16], p["g_ih"])
    np.testing.assert_array_equal(v[16:32], p["g_hh"])
    np.testing.assert_array_equal(v[32:36], p["g_c"])
    np.testing.assert_array_equal(v[36:], p["b_c"])
    y, h_n, c_n, ws = bench._case("fastrnn", "lnlstm", SMALL, "forward")()
    assert y.shape == (6, 3, 4) and h_n.shape == c_n.shape == (1, 3, 4) and ws is None
    dx, _, _, grads = bench._case("fastrnn", "lnlstm", SMALL, "forward+backward")()
    assert dx.shape == (6, 3, 5) and grads[0][5].shape == (40,)


def _numpy_lnlstm(d: Any, p: dict[str, np.ndarray]) -> np.ndarray:
    """The cell's formulas in float64 NumPy: y."""

    def ln(a: np.ndarray) -> np.ndarray:
        m = a.mean(-1, keepdims=True)
        return (a - m) / np.sqrt(((a - m) ** 2).mean(-1, keepdims=True) + 1e-5)

    def sig(a: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-a))

    q = {k: v.astype(np.float64) for k, v in p.items()}
    _, B, _, H = d.shape
    h = np.zeros((B, H)) if d.h0 is None else d.h0[0].astype(np.float64)
    c = np.zeros((B, H)) if d.c0 is None else d.c0[0].astype(np.float64)
    ys = []
    for xt in d.x.astype(np.float64):
        v = (q["g_ih"] * ln(xt @ q["w_ih"].T) + q["b_ih"] + q["g_hh"] * ln(h @ q["w_hh"].T)
             + q["b_hh"])  # fmt: skip
        i, f, g, o = np.split(v, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(q["g_c"] * ln(c) + q["b_c"])
        ys.append(h)
    return np.stack(ys)


@needs_torch
@pytest.mark.parametrize("states", [False, True])
def test_the_torchscript_peer_computes_the_cell(states: bool) -> None:
    """The TorchScript module with fastrnn's parameters mapped in (layernorm_i = (g_ih, b_ih),
    layernorm_h = (g_hh, b_hh), layernorm_c = (g_c, b_c)) computes the cell's formulas."""
    d = _inputs(states)
    p = bench_lnlstm.params(np.random.default_rng(1), 5, 4)
    m = bench_lnlstm.TorchLN(d, p)
    cell = m.m.cell
    np.testing.assert_array_equal(cell.layernorm_i.weight.detach().numpy(), p["g_ih"])
    np.testing.assert_array_equal(cell.layernorm_h.bias.detach().numpy(), p["b_hh"])
    np.testing.assert_array_equal(cell.layernorm_c.bias.detach().numpy(), p["b_c"])
    y = m.outputs(False)["y"]
    np.testing.assert_allclose(y, _numpy_lnlstm(d, p), atol=1e-5)


@needs_torch
@pytest.mark.parametrize("passes", ["forward", "forward+backward"])
@pytest.mark.parametrize("states", [False, True])
def test_the_check_finds_fastrnn_and_torch_agree(states: bool, passes: str) -> None:
    got = bench_lnlstm.check(_inputs(states), passes)["check"]
    assert got["agree"] and got["max_rel_dev"] < 1e-4, got
    want = {"y", "h_n", "c_n"}
    if passes != "forward":
        want |= {"dx", "dw_ih", "dw_hh", "db_ih", "db_hh", "dcell_params"}
        want |= {"dh0", "dc0"} if states else set()
    assert set(got["compared"]) == want


@needs_torch
def test_the_check_finds_a_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer computing something else (its layer norms' gains swapped) is found."""
    from fastrnn.tools import lnlstm_torch

    real = lnlstm_torch.scripted
    monkeypatch.setattr(lnlstm_torch, "scripted",
                        lambda p: real({**p, "g_ih": p["g_hh"], "g_hh": p["g_ih"]}))  # fmt: skip
    got = bench_lnlstm.check(_inputs(False), "forward")["check"]
    assert not got["agree"] and got["max_rel_dev"] > bench_lnlstm.CHECK_TOLERANCE


def _report(ms: dict[tuple[Any, ...], float], dev: float | None = 1e-6) -> dict[str, Any]:
    """A float32 report holding these timings (peer, threads, shape, cell, passes) -> ms, with
    the torch worker's check on each of its lnlstm cases."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for (peer, threads, shape, cell, passes), v in ms.items():
        c: dict[str, Any] = {"shape_name": shape, "shape": list(bench.SHAPES[shape]),
                             "cell": cell, "passes": passes, "ms": v, "n": 1}  # fmt: skip
        if peer == "torch" and cell == "lnlstm" and dev is not None:
            c["check"] = {"max_rel_dev": dev, "worst": "y", "compared": ["y"],
                          "agree": dev <= bench_lnlstm.CHECK_TOLERANCE}  # fmt: skip
        runs.setdefault((peer, threads), []).append(c)
    report = {"peers": sorted({k[0] for k in ms}), "threads": [1, 2], "isas": [None],
              "memory": [], "runs": [{"peer": p, "threads": t, "results": r, "gemm_peak": 100.0}
                                     for (p, t), r in runs.items()]}  # fmt: skip
    report["lnlstm"] = bench_lnlstm.rows(report, bench._timings(report))
    return report


def test_rows_targets_and_the_table() -> None:
    ms = {}
    for t in (1, 2):
        for s in ("S1", "S2"):
            for p in ("forward", "forward+backward"):
                ms[("fastrnn", t, s, "lstm", p)] = 10.0
                ms[("fastrnn", t, s, "lnlstm", p)] = 12.0 if s == "S1" else 14.0  # S2 misses
                ms[("torch", t, s, "lnlstm", p)] = 120.0 if t == 1 else 48.0  # 2 threads miss
                ms[("torch", t, s, "lstm", p)] = 30.0
    report = _report(ms)
    rows = {(r["shape"], r["passes"], r["threads"]): r for r in report["lnlstm"]}
    assert len(rows) == 8
    r = rows[("S1", "forward+backward", 1)]
    assert r["ratio_to_lstm"] == pytest.approx(1.2) and r["speedup_vs_torch"] == pytest.approx(10)
    assert r["max_rel_dev"] == 1e-6 and r["agree"] and r["isa"] is None
    text = bench.table(report)
    assert "S1    lnlstm fwd+bwd    1" in text  # the speed table's cell column is wider
    assert "S1    lstm   fwd+bwd    1" in text
    assert "ln/lstm" in text and "x TorchScript" in text
    assert "ORT, the NumPy reference and fastrnn.torch have no layer-normalised LSTM" in text
    assert ("target fastrnn lnlstm / fastrnn lstm <= 1.30x (S1 S2 fwd and fwd+bwd): met 4 of 8; "
            "not met: S2 fwd 1t 1.40x, S2 fwd 2t 1.40x, S2 fwd+bwd 1t 1.40x, "
            "S2 fwd+bwd 2t 1.40x") in text  # fmt: skip
    assert ("target TorchScript LayerNormLSTM / fastrnn lnlstm >= 5.00x (S1 fwd+bwd, 1 and 2 "
            "thread(s)): met 1 of 2; not met: S1 fwd+bwd 2t 4.00x") in text  # fmt: skip
    assert "max relative deviation 1.0e-06 (tolerance 0.01): they agree" in text


def test_the_table_without_lstm_or_torch_and_with_a_difference() -> None:
    ms = {("fastrnn", 1, "S1", "lnlstm", "forward"): 12.0}
    text = bench.table(_report(ms))
    assert "(time --cells lstm lnlstm for ln/lstm)" in text and "target" not in text
    ms[("torch", 1, "S1", "lnlstm", "forward")] = 100.0
    text = bench.table(_report(ms, dev=0.5))
    assert "THEY DIFFER in S1 fwd 1t" in text
    assert "lnlstm" not in bench.table(_report({("fastrnn", 1, "S1", "lstm", "forward"): 1.0}))


@needs_torch
def test_bench_command_with_lnlstm(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastrnn.bench", "--shapes", "S5", "--cells", "lstm", "lnlstm",
         "--threads", "1", "--peers", "fastrnn", "torch", "ort", "reference", "fastrnn.torch",
         "--reference-shapes", "S5", "--repeat", "1", "--budget", "0.05", "--memory-shapes",
         "--no-train-step", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert "S5    lnlstm fwd+bwd    1" in proc.stdout
    assert "Layer-normalised LSTM (lnlstm" in proc.stdout and "they agree" in proc.stdout
    report = json.loads(out.read_text())
    timed = {(r["peer"], c["cell"], c["passes"]) for r in report["runs"] for c in r["results"]}
    assert {("fastrnn", "lnlstm", p) for p in ("forward", "forward+backward")} <= timed
    assert {("torch", "lnlstm", p) for p in ("forward", "forward+backward")} <= timed
    assert not [k for k in timed if k[1] == "lnlstm" and k[0] not in ("fastrnn", "torch")]
    (torch_run,) = [r for r in report["runs"] if r["peer"] == "torch"]
    checks = [c["check"] for c in torch_run["results"] if c["cell"] == "lnlstm"]
    assert len(checks) == 2 and all(c["agree"] for c in checks)
    rows = report["lnlstm"]
    assert [(r["shape"], r["passes"], r["threads"]) for r in rows] == [
        ("S5", "forward", 1), ("S5", "forward+backward", 1)]  # fmt: skip
    for r in rows:
        assert r["lnlstm_ms"] > 0 and r["ratio_to_lstm"] > 0 and r["speedup_vs_torch"] > 0
        assert r["agree"] and r["max_rel_dev"] < 1e-4
    overhead = [r["overhead_us"] for r in report["runs"] if "overhead_us" in r]
    assert [set(o) for o in overhead] == [{"lstm"}]  # no layer class of lnlstm to call


def test_a_table_per_kernel_variant() -> None:
    """--isa: fastrnn's rows under each variant, against the same plain LSTM variant's."""
    results = [{"shape_name": "S1", "shape": list(bench.SHAPES["S1"]), "cell": c,
                "passes": "forward", "ms": v, "n": 1} for c, v in (("lstm", 10.0),
                                                                     ("lnlstm", 12.0))]  # fmt: skip
    runs = [{"peer": "fastrnn", "threads": 1, "isa": isa, "gemm_peak": 100.0,
             "results": [{**r, "ms": r["ms"] * k} for r in results]}
            for isa, k in (("x86-64-v3", 2.0), ("x86-64-v4", 1.0))]  # fmt: skip
    report = {"peers": ["fastrnn"], "threads": [1], "isas": ["x86-64-v3", "x86-64-v4"],
              "memory": [], "runs": runs}  # fmt: skip
    report["lnlstm"] = bench_lnlstm.rows(report, bench._timings(report))
    got = [(r["isa"], r["lnlstm_ms"], r["ratio_to_lstm"]) for r in report["lnlstm"]]
    assert got == [("x86-64-v3", 24.0, pytest.approx(1.2)), ("x86-64-v4", 12.0, pytest.approx(1.2))]
    text = bench.table(report)
    assert text.count("fastrnn kernel variant x86-64-v3:") == 2  # the speed and the lnlstm tables
