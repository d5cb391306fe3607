"""pytest-benchmark: the saved machine info names fastrnn's kernel variant (FASTRNN_ISA chooses
one), so that timings of different instruction sets are never compared unknowingly."""

from __future__ import annotations

from typing import Any

import fastrnn


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    info = fastrnn.build_info()
    machine_info["fastrnn_isa"] = info["isa"]
    machine_info["fastrnn_isa_available"] = info["isa_available"]
