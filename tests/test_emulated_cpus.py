"""fastrnn on emulated x86-64-v2 and -v3 CPUs (and one below v2), via tools/emulated_cpus.sh.

qemu-user's TCG emulates SSE4.2 (Nehalem) and AVX2/FMA (Haswell) but neither AVX-512 nor AMX, so
the import picks x86-64-v2 resp. x86-64-v3 there, FASTRNN_ISA=x86-64-v4 (and -v4-bf16, -v4-amx)
must be an ImportError naming the missing features, and every cell's kernels must run (no SIGILL)
and match the NumPy reference; below x86-64-v2 the module must refuse to load with an
ImportError. Runs only where qemu-x86_64 is installed (Debian: apt-get
install qemu-user); about a minute.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "emulated_cpus.sh"


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
    reason="emulates x86-64 CPUs with qemu-user on x86-64 Linux",
)
@pytest.mark.skipif(
    shutil.which("qemu-x86_64") is None and not os.environ.get("FASTRNN_REQUIRE_QEMU"),
    reason="needs qemu-x86_64 (qemu-user); FASTRNN_REQUIRE_QEMU=1 makes its absence a failure",
)
def test_emulated_cpus() -> None:
    assert shutil.which("qemu-x86_64"), "FASTRNN_REQUIRE_QEMU is set but qemu-x86_64 is missing"
    r = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
