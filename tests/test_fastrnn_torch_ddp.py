"""fastrnn.torch modules under DistributedDataParallel: two processes on this machine (gloo,
loopback), through examples/ddp_train.py, started both ways the example documents (skipped
without torch). In float64 (--check) the example compares, at every step, DDP's averaged
gradients with those of one process on the whole batch and with the same model built from
torch.nn modules under DDP."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ddp_train.py"
ARGS = ["--check", "--steps", "4", "--batch", "16", "--T", "12", "--hidden", "8"]


def check_output(out: str) -> None:
    single = float(re.search(r"one process on the whole batch\|: (\S+)", out).group(1))  # type: ignore[union-attr]
    peer = float(re.search(r"torch\.nn\.LSTM under DDP\|: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert single < 1e-12, out  # averaged exactly as one process on the whole batch would
    assert peer < 1e-12, out  # and as torch.nn's LSTM under DDP
    assert "trained with 2 processes" in out
    assert len(re.findall(r"step +\d+ +loss \d", out)) >= 2


def _run(cmd: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_ddp_two_processes_spawned() -> None:
    check_output(_run([sys.executable, str(EXAMPLE), *ARGS]))


def test_ddp_two_processes_torchrun() -> None:
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    check_output(_run([*cmd, str(EXAMPLE), *ARGS]))
