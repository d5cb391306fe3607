"""``python -m fastrnn.bench --compute-dtype bfloat16``: the options, a tiny run end to end (with
torch where it is installed), the table's columns and ratios, and the n/a of a fastrnn without
the bfloat16 compute precision. No timing is checked."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fastrnn
from fastrnn.tools import bench, bench_bf16
from helpers import assert_bench_usage_error, bench_args

# the smallest case: S5 (one step, batch 1) RNN, at 1 thread, one run
TINY = ["--compute-dtype", "bfloat16", "--shapes", "S5", "--cells", "rnn", "--threads", "1",
        "--repeat", "1", "--budget", "0.1"]  # fmt: skip
HEAD = ("fastrnn bf16 ms", "GFLOP/s", "%peak", "torch bf16 ms", "fastrnn f32 ms", "dev fastrnn",
        "dev torch")  # fmt: skip


def _has_bf16() -> bool:
    """Whether this fastrnn has the bfloat16 compute precision (the bench's own test)."""
    try:
        fastrnn.RNN(4, 4, compute_dtype="bfloat16")
    except TypeError:
        return False
    return True


def test_options_and_default_shapes() -> None:
    assert bench_args([]).compute_dtype == "float32"
    assert bench_args([]).shapes == list(bench.SHAPES)  # float32: every shape
    assert bench_args(["--compute-dtype", "bfloat16"]).shapes == ["S1", "S2", "S4"]
    args = bench_args([*TINY, "--cells", "lstm", "gru"])
    assert (args.shapes, args.cells, args.threads) == (["S5"], ["lstm", "gru"], [1])


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        (["--under-load"], "--under-load: not with --compute-dtype bfloat16"),
        (["--png", "x.png"], "--png: not with --compute-dtype bfloat16"),
        (["--isa", "all"], "--isa: not with --compute-dtype bfloat16"),
        (["--peers", "ort", "reference"], "--peers: the bfloat16 tables time fastrnn and torch"),
        (["--compute-dtype", "float16"], "argument --compute-dtype: invalid choice: 'float16'"),
    ],
)
def test_arguments_checked_before_timing(
    extra: list[str], msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_bench_usage_error([*TINY, *extra], msg, capsys)


def _run(tmp_path: Path, peers: list[str]) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "bf16.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastrnn.bench", *TINY, "--peers", *peers, "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return proc.stdout, json.loads(out.read_text())


def _check_fastrnn(stdout: str, row: dict[str, Any]) -> None:
    """fastrnn's columns of a row: float32 timed; bfloat16 timed and different from float32, or
    n/a with the reason (a fastrnn without compute_dtype)."""
    assert row["fastrnn_f32_ms"] > 0
    if _has_bf16():
        assert row["fastrnn_bf16_ms"] > 0 and row["speedup_vs_fastrnn_f32"] > 0
        if row["passes"] == "forward":  # products in bfloat16: not the float32 output
            assert 0 < row["fastrnn_bf16_max_abs_dev"] < 0.1
    else:
        assert row["fastrnn_bf16_ms"] is None and "TypeError" in row["fastrnn_bf16_na"]
        assert "n/a: fastrnn.RNN(..., compute_dtype='bfloat16'): TypeError" in stdout


def test_tiny_run_fastrnn_only(tmp_path: Path) -> None:
    stdout, report = _run(tmp_path, ["fastrnn"])
    assert all(h in stdout for h in HEAD)
    assert "S5    rnn   fwd        1" in stdout and "S5    rnn   fwd+bwd    1" in stdout
    assert "GEMM peak: not timed (it needs torch)" in stdout
    assert report["mode"] == "bfloat16" and report["peers"] == ["fastrnn"]
    assert [(r["passes"], r["threads"]) for r in report["rows"]] == [
        ("forward", 1), ("forward+backward", 1)]  # fmt: skip
    for row in report["rows"]:
        assert row["torch_bf16_ms"] is None and row["bf16_peak_fraction"] is None
        _check_fastrnn(stdout, row)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_tiny_run_against_torch(tmp_path: Path) -> None:
    stdout, report = _run(tmp_path, ["fastrnn", "torch"])
    assert all(h in stdout for h in HEAD)
    assert "GEMM peak (torch.matmul 2048^3, same run), GFLOP/s at 1 thread(s): bfloat16 " in stdout
    peaks = report["peaks"]["1"]
    assert peaks["bfloat16"] > 0 and peaks["float32"] > 0
    assert (bench_bf16.NO_AMX in peaks) == bench_bf16.has_amx()
    # one process for the peaks (two with AMX), one per peer for the shape
    assert sorted(r["peer"] for r in report["runs"]) == sorted(
        ["fastrnn", "torch", "torch"] + ["torch"] * bench_bf16.has_amx()
    )
    for row in report["rows"]:
        assert row["torch_bf16_ms"] > 0
        if row["passes"] == "forward":  # autocast's products in bfloat16
            assert 0 < row["torch_bf16_max_abs_dev"] < 0.1
        _check_fastrnn(stdout, row)
        if row["fastrnn_bf16_ms"]:
            assert row["speedup_vs_torch_bf16"] == pytest.approx(
                row["torch_bf16_ms"] / row["fastrnn_bf16_ms"])  # fmt: skip
            assert row["bf16_peak_fraction"] > 0


def _result(cell: str, passes: str, dtype: str, **kw: Any) -> dict[str, Any]:
    return {"shape_name": "S1", "shape": list(bench.SHAPES["S1"]), "cell": cell,
            "passes": passes, "compute_dtype": dtype, **kw}  # fmt: skip


def test_table_columns_and_ratios() -> None:
    """A made-up report: the speed-ups are the peers' ms over fastrnn bf16's, GFLOP/s and %peak
    from the forward's FLOPs; a fastrnn bf16 case that is n/a shows n/a and its reason."""
    fwd = bench.flops("lstm", bench.SHAPES["S1"], "forward")
    runs = [
        {"peer": "torch", "threads": 1, "results": [],
         "peaks": {"bfloat16": fwd / 10e-3 / 1e9 * 2, "float32": 100.0}},
        {"peer": "fastrnn", "threads": 1, "isa": "x86-64-v4-bf16", "results": [
            _result("lstm", "forward", "bfloat16", ms=10.0, max_abs_dev=3e-3),
            _result("lstm", "forward", "float32", ms=25.0),
            _result("gru", "forward", "bfloat16", na="fastrnn.GRU(...): TypeError: no"),
            _result("gru", "forward", "float32", ms=30.0)]},
        {"peer": "torch", "threads": 1, "results": [
            _result("lstm", "forward", "bfloat16", ms=15.0, max_abs_dev=4e-3),
            _result("gru", "forward", "bfloat16", ms=40.0, max_abs_dev=5e-3)]},
    ]  # fmt: skip
    report: dict[str, Any] = {"machine": {"cpus": 2}, "runs": runs, "others_busy_cpus": 0.01}
    report["peaks"] = bench_bf16._peaks(runs)
    report["rows"] = bench_bf16.rows(report)
    gru, lstm = report["rows"]
    assert lstm["speedup_vs_torch_bf16"] == pytest.approx(1.5)
    assert lstm["speedup_vs_fastrnn_f32"] == pytest.approx(2.5)
    assert lstm["gflops"] == pytest.approx(fwd / 10e-3 / 1e9)
    assert lstm["bf16_peak_fraction"] == pytest.approx(0.5)
    assert gru["fastrnn_bf16_ms"] is None and gru["speedup_vs_torch_bf16"] is None
    text = bench_bf16.table(report)
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("shape"))
    assert head.split() == ["shape", "cell", "pass", "thr", "fastrnn", "bf16", "ms", "GFLOP/s",
                            "%peak", "torch", "bf16", "ms", "x", "fastrnn", "f32", "ms", "x",
                            "dev", "fastrnn", "dev", "torch"]  # fmt: skip
    row = next(line for line in lines if line.startswith("S1    lstm"))
    assert row.split() == ["S1", "lstm", "fwd", "1", "10.00", f"{lstm['gflops']:.1f}", "50%",
                           "15.00", "1.50x", "25.00", "2.50x", "3.0e-03", "4.0e-03"]  # fmt: skip
    row = next(line for line in lines if line.startswith("S1    gru"))
    assert row.split() == ["S1", "gru", "fwd", "1", "n/a", "-", "-", "40.00", "30.00", "-",
                           "5.0e-03"]  # fmt: skip
    assert "n/a: fastrnn.GRU(...): TypeError: no" in lines
    assert "fastrnn kernel variant: x86-64-v4-bf16" in lines
    # the targets judged where the rows have values: LSTM's forward only here (S1: no peak target)
    assert [line for line in lines if line.startswith("target")] == [
        "target LSTM fwd vs torch bf16 >= 1.00x: met 1 of 1"
    ]


def test_targets_name_the_rows_not_met() -> None:
    def row(shape: str, cell: str, passes: str, threads: int, **kw: float) -> dict[str, Any]:
        base = {"speedup_vs_torch_bf16": None, "speedup_vs_fastrnn_f32": None,
                "bf16_peak_fraction": None}  # fmt: skip
        return {"shape": shape, "cell": cell, "passes": passes, "threads": threads, **base, **kw}

    rows = [
        row("S2", "gru", "forward", 1, speedup_vs_torch_bf16=1.6, speedup_vs_fastrnn_f32=0.9,
            bf16_peak_fraction=0.5),
        row("S4", "rnn", "forward+backward", 2, speedup_vs_torch_bf16=1.4,
            speedup_vs_fastrnn_f32=1.1),
        row("S3", "rnn", "forward", 1, speedup_vs_torch_bf16=0.1),  # not a target's shape
    ]  # fmt: skip
    assert bench_bf16.targets(rows) == [
        "target GRU and RNN vs torch bf16 >= 1.50x: met 1 of 2; not met: S4 rnn fwd+bwd 2t 1.40x",
        "target GRU and RNN bf16 vs fastrnn f32 >= 1.00x: met 1 of 2; not met: S2 gru fwd 1t 0.90x",
        "target fwd, fraction of the bf16 GEMM peak >= 85%: met 0 of 1; not met: S2 gru fwd 1t 50%",
    ]


def test_fastrnn_without_compute_dtype_is_na(monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer that refuses compute_dtype (a fastrnn before it): the case is n/a, with the
    reason; its float32 case is timed."""

    class OldRNN(fastrnn.RNN):
        def __init__(self, *args: Any, **kw: Any) -> None:
            if "compute_dtype" in kw:
                raise TypeError("RNN.__init__() got an unexpected keyword argument")
            super().__init__(*args, **kw)

    monkeypatch.setattr(fastrnn, "RNN", OldRNN)
    case = {"shape_name": "S5", "shape": list(bench.SHAPES["S5"]), "cell": "rnn",
            "passes": "forward"}  # fmt: skip
    na = bench_bf16._time_case("fastrnn", {**case, "compute_dtype": "bfloat16"}, 1, 0.01)
    assert "ms" not in na
    assert na["na"] == ("fastrnn.RNN(..., compute_dtype='bfloat16'): TypeError: "
                        "RNN.__init__() got an unexpected keyword argument")  # fmt: skip
    f32 = bench_bf16._time_case("fastrnn", {**case, "compute_dtype": "float32"}, 1, 0.01)
    assert f32["ms"] > 0 and "na" not in f32
