"""The comparison command runs end to end and writes its JSON (a tiny configuration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fastrnn.tools import bench
from helpers import assert_bench_usage_error


def test_bench_command(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastrnn.bench", "--shapes", "S3", "--cells", "rnn",
         "--threads", "1", "--peers", "fastrnn", "reference", "--repeat", "1",
         "--budget", "0.1", "--memory-shapes", "S3", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert "S3    rnn   fwd+bwd" in proc.stdout and "GEMM peak" in proc.stdout
    assert "T = B = 1, I = H = 32, 1 thread(s), median µs: RNN" in proc.stdout
    report = json.loads(out.read_text())
    assert {r["peer"] for r in report["runs"]} == {"fastrnn", "reference"}
    assert all(c["ms"] > 0 for r in report["runs"] for c in r["results"])
    (overhead,) = [r["overhead_us"] for r in report["runs"] if "overhead_us" in r]
    assert set(overhead) == {"rnn"} and 0 < overhead["rnn"] < 1e5
    # peak memory: one fresh process per case, fastrnn only here (torch not among the peers)
    assert "Peak resident memory" in proc.stdout
    mem = report["memory"]
    assert {(m["peer"], m["passes"]) for m in mem} == {
        ("fastrnn", "forward"),
        ("fastrnn", "forward+backward"),
    }
    assert all(0 <= m["peak_mib"] < 1024 for m in mem)


# --under-load on the smallest cases: S5 RNN and a demo of 8 units, 16 characters a step
TINY_LOAD = ["--under-load", "--threads", "1", "2", "--peers", "fastrnn", "--load-shape", "S5",
             "--load-cell", "rnn", "--load-demo",
             "--hidden 8 --batch 2 --seq-len 8 --max-chars 20000", "--repeat", "1",
             "--budget", "0.2", "--load-seconds", "0.05"]  # fmt: skip


def _competitor_running(pid: int) -> bool:
    """Whether the bench's competitor still runs as process `pid` (a reused pid, or a zombie
    waiting to be reaped, is not it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc here: the pid is alive
    return bench.COMPETITOR_MARK in cmdline and "\nState:\tZ" not in status


def test_bench_under_load(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastrnn.bench", *TINY_LOAD, "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert "quiet 2t/1t   loaded 2t/1t" in proc.stdout
    assert "demo train-step, fastrnn, loaded: characters/s" in proc.stdout
    report = json.loads(out.read_text())
    competitor = report["competitor"]
    if hasattr(os, "sched_setaffinity"):  # pinned to the last CPU this process may use
        assert competitor["pinned"] and competitor["cpu"] == max(os.sched_getaffinity(0))
        assert f"pinned to CPU {competitor['cpu']}" in proc.stdout
    assert not _competitor_running(competitor["pid"])  # killed at the end
    others = report["others_busy_cpus"]  # other processes' load, where /proc/stat tells
    assert set(others) == {"quiet", "loaded"}
    assert all(v is None or v >= 0 for v in others.values())
    # a process per peer, thread count and load; every case timed in each
    assert sorted((r["load"], r["threads"]) for r in report["runs"]) == [
        ("loaded", 1), ("loaded", 2), ("quiet", 1), ("quiet", 2)]  # fmt: skip
    for r in report["runs"]:
        assert {c["case"] for c in r["results"]} == {"demo train-step", "S5 rnn fwd+bwd"}
        assert all(c["ms"] > 0 and c["n"] >= bench.LOAD_MIN_RUNS for c in r["results"])
    rows = {(s["case"], s["peer"]): s for s in report["summary"]}
    assert set(rows) == {("demo train-step", "fastrnn"), ("S5 rnn fwd+bwd", "fastrnn")}
    for row in rows.values():
        for load in ("quiet", "loaded"):
            assert set(row[f"{load}_ms"]) == {"1", "2"} and min(row[f"{load}_ms"].values()) > 0
            assert set(row[f"{load}_speed_ratio"]) == {"2"}
    demo = rows[("demo train-step", "fastrnn")]
    assert report["demo"]["chars_per_step"] == 16
    assert demo["loaded_chars_per_s"]["2"] == pytest.approx(16e3 / demo["loaded_ms"]["2"])


def test_competitor_killed_when_the_loaded_timings_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or an error) while the competitor runs: it is killed on the way out."""
    started: list[bench.Competitor] = []

    class Recorded(bench.Competitor):
        def __enter__(self) -> bench.Competitor:
            started.append(super().__enter__())
            return self

    def spawn(spec: dict[str, Any]) -> dict[str, Any]:
        if started:  # loaded: the competitor is running
            assert _competitor_running(started[0].info()["pid"])
            raise KeyboardInterrupt
        return {"peer": spec["peer"], "threads": spec["threads"], "results": []}

    monkeypatch.setattr(bench, "Competitor", Recorded)
    monkeypatch.setattr(bench, "_spawn", spawn)
    args = bench._parser("bench").parse_args(TINY_LOAD)
    with pytest.raises(KeyboardInterrupt):
        bench.run_under_load(args)
    assert len(started) == 1 and not _competitor_running(started[0].info()["pid"])


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        (["--png", "x.png"], "python -m fastrnn.bench: error: --png: not with --under-load"),
        (["--isa", "all"], "python -m fastrnn.bench: error: --isa: not with --under-load"),
        (["--load-seconds", "-1"], "--load-seconds: must be >= 0"),
        (["--load-demo", "--threads 2"], "--load-demo: no --threads in it"),
        (["--load-demo", "--hidden 0"], "fastrnn demo: error: --hidden: must be >= 1"),
        (["--load-demo", "--hidden '8"], "--load-demo: No closing quotation"),
    ],
)
def test_under_load_arguments_checked_before_timing(
    extra: list[str], msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_bench_usage_error([*TINY_LOAD, *extra], msg, capsys)
