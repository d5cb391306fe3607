"""``python -m fastrnn.bench --compute-dtype int8``: the options, a tiny run end to end (against
ONNX Runtime where it is installed), the weights every peer shares, the table's columns, ratios
and targets. No timing is checked."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastrnn.tools import bench, bench_int8
from helpers import assert_bench_usage_error, bench_args

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="needs onnxruntime and onnx")

# the smallest case: S5 (one step of batch 1 from a given state), one run
TINY = ["--compute-dtype", "int8", "--shapes", "S5", "--repeat", "1", "--budget", "0.1"]
HEAD = ("fastrnn int8 ms", "ORT int8 ms", "fastrnn f32 ms", "ORT f32 ms", "int8 x", "f32 x",
        "own x", "dev fastrnn", "dev ORT")  # fmt: skip
T, B, I, H = bench.SHAPES["S5"]


def test_options_and_default_shapes() -> None:
    assert bench_args(["--compute-dtype", "int8"]).shapes == ["S1", "S2", "S3", "S5"]
    args = bench_args([*TINY, "--cells", "lstm", "gru", "--threads", "2"])
    assert (args.shapes, args.cells, args.threads) == (["S5"], ["lstm", "gru"], [2])


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        (["--under-load"], "--under-load: not with --compute-dtype int8"),
        (["--png", "x.png"], "--png: not with --compute-dtype int8"),
        (["--isa", "all"], "--isa: not with --compute-dtype int8"),
        (["--peers", "torch", "reference"], "--peers: the int8 tables time fastrnn and ort"),
        (["--rounds", "0"], "--rounds: must be >= 1, got 0"),
        (
            ["--compute-dtype", "bfloat16", "--rounds", "2"],
            "--rounds: only with --compute-dtype int8",
        ),
    ],
)
def test_arguments_checked_before_timing(
    extra: list[str], msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_bench_usage_error([*TINY, *extra], msg, capsys)


def _case(cell: str, dtype: str = "int8") -> dict[str, Any]:
    return {"shape_name": "S5", "shape": [T, B, I, H], "cell": cell, "passes": "forward",
            "compute_dtype": dtype}  # fmt: skip


def test_every_peer_gets_the_same_weights_of_scale_0_05() -> None:
    """Drawn after the inputs from the case's seeded generator: every process draws the same;
    each parameter uniform in [-0.05, 0.05], spread over it."""
    a, b = bench_int8._Problem.of(_case("lstm")), bench_int8._Problem.of(_case("lstm", "float32"))
    np.testing.assert_array_equal(a.d.x, b.d.x)
    for (name, p), (_, q) in zip(
        a.layer.named_parameters(), b.layer.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(p, q)
        assert np.abs(p).max() <= bench_int8.WEIGHT_SCALE
        assert np.abs(p).max() > 0.9 * bench_int8.WEIGHT_SCALE, name
    assert a.d.h0 is not None and a.d.c0 is not None  # S5 runs from a given state


def _run(tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "int8.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastrnn.bench", *TINY, *extra, "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return proc.stdout, json.loads(out.read_text())


def _fastrnn_bytes(cell: str) -> tuple[int, int]:
    """The bytes of S5's quantized layer (int8 weights, a float32 scale per row of each, float32
    biases) and of its float32 layer."""
    G = bench.CELLS[cell]
    weights, rows = G * H * (I + H), 2 * G * H
    return weights + 4 * rows + 4 * rows, 4 * weights + 4 * rows


def _check_fastrnn(row: dict[str, Any]) -> None:
    assert row["fastrnn_int8_ms"] > 0 and row["fastrnn_f32_ms"] > 0
    assert row["speedup_int8_vs_fastrnn_f32"] == pytest.approx(
        row["fastrnn_f32_ms"] / row["fastrnn_int8_ms"])  # fmt: skip
    # quantized, so not the float32 output, but close to it (the ORT: 0.010-0.062)
    assert 0 < row["fastrnn_int8_max_abs_dev"] < 0.05


def test_tiny_run_fastrnn_only(tmp_path: Path) -> None:
    """Two rounds: a process each, the row's times the median of theirs."""
    argv = ["--cells", "rnn", "--threads", "1", "--peers", "fastrnn", "--rounds", "2"]
    stdout, report = _run(tmp_path, *argv)
    assert all(h in stdout for h in HEAD) and "Median ms (of 2 rounds" in stdout
    assert report["mode"] == "int8" and report["peers"] == ["fastrnn"]
    assert [r["round"] for r in report["runs"]] == [0, 1] and report["rounds"] == 2
    int8 = [c["ms"] for r in report["runs"] for c in r["results"] if c["compute_dtype"] == "int8"]
    assert report["rows"][0]["fastrnn_int8_ms"] == pytest.approx(sum(int8) / 2)
    assert report["weight_scale"] == 0.05
    (row,) = report["rows"]
    assert (row["shape"], row["cell"], row["threads"]) == ("S5", "rnn", 1)
    _check_fastrnn(row)
    assert row["ort_int8_ms"] is None and row["ort_f32_ms"] is None
    assert row["speedup_int8_vs_peer"] is None and row["speedup_f32_vs_ort_f32"] is None
    (w,) = report["weights"]
    assert (w["fastrnn_int8_bytes"], w["fastrnn_f32_bytes"]) == _fastrnn_bytes("rnn")
    assert 0.25 < w["fastrnn_ratio"] < 0.26 and w.get("ort_int8_bytes") is None
    line = [x for x in stdout.splitlines() if x.startswith("S5    rnn ")][-1]  # the weights'
    assert f"{w['fastrnn_int8_bytes']:,}" in line and f"{w['fastrnn_f32_bytes']:,}" in line
    for r in report["runs"]:  # one thread kept busy at most
        assert all(0 < c["cpu_per_wall"] < 1.5 for c in r["results"])
    assert not [x for x in stdout.splitlines() if x.startswith("target")]  # nothing to judge


@needs_ort
def test_tiny_run_against_ort(tmp_path: Path) -> None:
    """LSTM against DynamicQuantizeLSTM and GRU against ORT float32, at 1 and 2 threads: ORT's
    session starts intra_op_num_threads - 1 threads; ORT float32 computes fastrnn's float32
    function; ORT int8 deviates from it as much as fastrnn int8 does, within a factor."""
    stdout, report = _run(tmp_path, "--cells", "lstm", "gru", "--threads", "1", "2")
    assert all(h in stdout for h in HEAD)
    assert report["peers"] == ["fastrnn", "ort"]
    assert [(r["cell"], r["threads"]) for r in report["rows"]] == [
        ("gru", 1), ("gru", 2), ("lstm", 1), ("lstm", 2)]  # fmt: skip
    for row in report["rows"]:
        _check_fastrnn(row)
        assert row["ort_f32_ms"] > 0 and row["ort_f32_max_abs_dev"] < 1e-5
        assert row["speedup_f32_vs_ort_f32"] == pytest.approx(
            row["ort_f32_ms"] / row["fastrnn_f32_ms"])  # fmt: skip
        if row["cell"] == "lstm":
            assert row["int8_peer"] == "ort_int8" and row["ort_int8_ms"] > 0
            assert row["speedup_int8_vs_peer"] == pytest.approx(
                row["ort_int8_ms"] / row["fastrnn_int8_ms"])  # fmt: skip
            dev, ort_dev = row["fastrnn_int8_max_abs_dev"], row["ort_int8_max_abs_dev"]
            assert 0 < ort_dev < 0.05 and 0.2 < dev / ort_dev < 5
        else:  # no int8 GRU in ORT: the peer is its float32
            assert row["int8_peer"] == "ort_f32" and row["ort_int8_ms"] is None
            assert row["speedup_int8_vs_peer"] == pytest.approx(
                row["ort_f32_ms"] / row["fastrnn_int8_ms"])  # fmt: skip
    started = {(r["threads"], c["session_threads"]) for r in report["runs"]
               if r["peer"] == "ort" for c in r["results"]}  # fmt: skip
    if sys.platform.startswith("linux"):
        assert started == {(1, 0), (2, 1)}
        assert "intra_op_num_threads - 1): 0 at 1t, 1 at 2t" in stdout
    gru, lstm = report["weights"]
    assert (gru["fastrnn_int8_bytes"], gru["fastrnn_f32_bytes"]) == _fastrnn_bytes("gru")
    assert gru.get("ort_int8_bytes") is None
    # ORT: int8 W and R, a scale and zero point each (per tensor, its default), float32 B
    assert lstm["ort_f32_bytes"] == lstm["fastrnn_f32_bytes"]
    assert lstm["ort_int8_bytes"] == 4 * H * (I + H) + 2 * (4 + 1) + 4 * 8 * H
    lines = [x for x in stdout.splitlines() if x.startswith("target")]
    assert [x.split(":")[0] for x in lines] == [
        "target LSTM int8 vs ORT DynamicQuantizeLSTM >= 1.30x",
        "target GRU and RNN int8 vs ORT f32 >= 3.00x",
        "target batch 1 fastrnn f32 vs ORT f32 at 2 threads >= 1.50x",
        "target LSTM int8 deviation no larger than ORT int8's, ORT dev / fastrnn dev >= 1.00x",
    ]
    assert all(" of 2" in x for x in lines)


@needs_ort
def test_ort_quantized_makes_dynamic_quantize_lstm() -> None:
    import fastrnn
    from fastrnn import onnx as fonnx

    q = bench_int8.ort_quantized(fonnx.export(fastrnn.LSTM(8, 16, seed=0)))
    assert "DynamicQuantizeLSTM" in [n.op_type for n in q.graph.node]
    assert q.ir_version <= fonnx.IR_VERSION
    with pytest.raises(ValueError, match=r"made no DynamicQuantizeLSTM \(nodes: GRU"):
        bench_int8.ort_quantized(fonnx.export(fastrnn.GRU(8, 16, seed=0)))


def _result(cell: str, dtype: str, **kw: Any) -> dict[str, Any]:
    return {**_case(cell, dtype), "shape_name": "S3", "shape": list(bench.SHAPES["S3"]),
            "cpu_per_wall": 1.0, **kw}  # fmt: skip


def _made_up_report() -> dict[str, Any]:
    """fastrnn and ORT at 2 threads on S3: LSTM int8 2 ms against ORT's 3, GRU int8 1 ms
    against ORT f32's 4."""
    runs = [
        {"peer": "fastrnn", "threads": 2, "isa": "x86-64-v4-amx", "results": [
            _result("lstm", "int8", ms=2.0, max_abs_dev=4e-3, weight_bytes=400,
                    f32_weight_bytes=1600),
            _result("lstm", "float32", ms=5.0),
            _result("gru", "int8", ms=1.0, max_abs_dev=6e-3, weight_bytes=300,
                    f32_weight_bytes=1200),
            _result("gru", "float32", ms=3.0)]},
        {"peer": "ort", "threads": 2, "ort_version": "1.32.0", "results": [
            _result("lstm", "int8", ms=3.0, max_abs_dev=5e-3, session_threads=1,
                    weight_bytes=390, f32_weight_bytes=1600),
            _result("lstm", "float32", ms=6.0, max_abs_dev=1e-7, session_threads=1),
            _result("gru", "float32", ms=4.0, max_abs_dev=1e-7, session_threads=1)]},
    ]  # fmt: skip
    report: dict[str, Any] = {"machine": {"cpus": 2}, "runs": runs, "others_busy_cpus": 0.01}
    report["rows"] = bench_int8.rows(report)
    report["weights"] = bench_int8.weights(report)
    return report


def test_table_columns_and_ratios() -> None:
    report = _made_up_report()
    gru, lstm = report["rows"]
    assert lstm["speedup_int8_vs_peer"] == pytest.approx(1.5)  # ORT int8 / fastrnn int8
    assert lstm["speedup_f32_vs_ort_f32"] == pytest.approx(1.2)
    assert lstm["speedup_int8_vs_fastrnn_f32"] == pytest.approx(2.5)
    assert gru["speedup_int8_vs_peer"] == pytest.approx(4.0)  # ORT f32 / fastrnn int8
    text = bench_int8.table(report)
    lines = text.splitlines()
    head = next(x for x in lines if x.startswith("shape cell  thr"))
    assert head.split() == ["shape", "cell", "thr", "fastrnn", "int8", "ms", "ORT", "int8", "ms",
                            "fastrnn", "f32", "ms", "ORT", "f32", "ms", "int8", "x", "f32", "x",
                            "own", "x", "dev", "fastrnn", "dev", "ORT"]  # fmt: skip
    row = next(x for x in lines if x.startswith("S3    lstm"))
    assert row.split() == ["S3", "lstm", "2", "2.00", "3.00", "5.00", "6.00", "1.50x", "1.20x",
                           "2.50x", "4.0e-03", "5.0e-03"]  # fmt: skip
    row = next(x for x in lines if x.startswith("S3    gru   "))
    assert row.split() == ["S3", "gru", "2", "1.00", "-", "3.00", "4.00", "4.00x", "1.33x",
                           "3.00x", "6.0e-03", "-"]  # fmt: skip
    assert report["weights"] == [
        {"shape": "S3", "cell": "gru", "fastrnn_int8_bytes": 300, "fastrnn_f32_bytes": 1200,
         "fastrnn_ratio": 0.25, "ort_ratio": None},
        {"shape": "S3", "cell": "lstm", "fastrnn_int8_bytes": 400, "fastrnn_f32_bytes": 1600,
         "ort_int8_bytes": 390, "ort_f32_bytes": 1600, "fastrnn_ratio": 0.25,
         "ort_ratio": 390 / 1600},
    ]  # fmt: skip
    assert (
        "S3    lstm             400          1,600  0.250          390        1,600  0.244" in lines
    )
    assert "fastrnn kernel variant: x86-64-v4-amx" in lines and "onnxruntime 1.32.0" in lines
    assert ("threads started by each ORT session (its intra-op pool, intra_op_num_threads - 1): "
            "1 at 2t") in lines  # fmt: skip
    assert [x for x in lines if x.startswith("target")] == [
        "target LSTM int8 vs ORT DynamicQuantizeLSTM >= 1.30x: met 1 of 1",
        "target GRU and RNN int8 vs ORT f32 >= 3.00x: met 1 of 1",
        "target batch 1 fastrnn f32 vs ORT f32 at 2 threads >= 1.50x: met 0 of 2; not met: "
        "S3 gru 2t 1.33x, S3 lstm 2t 1.20x",
        "target LSTM int8 deviation no larger than ORT int8's, ORT dev / fastrnn dev >= 1.00x: "
        "met 1 of 1",
    ]


def test_targets_judge_their_shapes_and_threads_only() -> None:
    def row(shape: str, cell: str, threads: int, **kw: float | None) -> dict[str, Any]:
        base = {"speedup_int8_vs_peer": None, "speedup_f32_vs_ort_f32": None,
                "fastrnn_int8_max_abs_dev": None, "ort_int8_max_abs_dev": None}  # fmt: skip
        return {"shape": shape, "cell": cell, "threads": threads, **base, **kw}

    rows = [
        row("S1", "lstm", 1, speedup_int8_vs_peer=1.2, fastrnn_int8_max_abs_dev=0.02,
            ort_int8_max_abs_dev=0.01),
        row("S4", "lstm", 1, speedup_int8_vs_peer=0.5),  # not a shape of the targets
        row("S5", "rnn", 1, speedup_int8_vs_peer=2.0, speedup_f32_vs_ort_f32=0.5),  # 1 thread
        row("S5", "rnn", 2, speedup_int8_vs_peer=3.5, speedup_f32_vs_ort_f32=1.6),
        row("S2", "gru", 2, speedup_f32_vs_ort_f32=0.5),  # not batch 1
    ]  # fmt: skip
    assert bench_int8.targets(rows) == [
        "target LSTM int8 vs ORT DynamicQuantizeLSTM >= 1.30x: met 0 of 1; not met: S1 lstm 1t "
        "1.20x",
        "target GRU and RNN int8 vs ORT f32 >= 3.00x: met 1 of 2; not met: S5 rnn 1t 2.00x",
        "target batch 1 fastrnn f32 vs ORT f32 at 2 threads >= 1.50x: met 1 of 1",
        "target LSTM int8 deviation no larger than ORT int8's, ORT dev / fastrnn dev >= 1.00x: "
        "met 0 of 1; not met: S1 lstm 1t 0.50x",
    ]


def test_rounds_give_the_median_of_each_case() -> None:
    """Three rounds of each peer: a row's times are the median of the rounds'; the other fields
    are the first round's."""
    runs = [
        {"peer": peer, "threads": 1, "round": i, "results": [
            _result("lstm", "int8", ms=ms, max_abs_dev=dev),
            _result("lstm", "float32", ms=10 * ms)]}
        for i, (a, b) in enumerate([(1.0, 3.0), (5.0, 2.0), (2.0, 9.0)])
        for peer, ms, dev in (("fastrnn", a, 1e-3), ("ort", b, 2e-3))
    ]  # fmt: skip
    report: dict[str, Any] = {"machine": {"cpus": 2}, "runs": runs, "rounds": 3}
    (row,) = bench_int8.rows(report)
    assert (row["fastrnn_int8_ms"], row["ort_int8_ms"]) == (2.0, 3.0)
    assert (row["fastrnn_f32_ms"], row["ort_f32_ms"]) == (20.0, 30.0)
    assert row["speedup_int8_vs_peer"] == pytest.approx(1.5)
    assert row["fastrnn_int8_max_abs_dev"] == 1e-3
    res = bench_int8._results(report)
    assert res[("fastrnn", "int8", 1, "S3", "lstm")]["ms_rounds"] == [1.0, 5.0, 2.0]
    report["rows"], report["weights"] = [row], []
    assert "Median ms (of 3 rounds, the peers' processes alternating)" in bench_int8.table(report)
