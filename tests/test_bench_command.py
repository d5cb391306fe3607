"""The comparison command runs end to end and writes its JSON (a tiny configuration)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
