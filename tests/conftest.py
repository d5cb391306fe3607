"""Fixtures and hooks: the cell and dtype parameters, and the report of the largest errors
against torch at the end of the run. What the tests share otherwise is in helpers.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from helpers import CELLS, DTYPES

_WORST_ERRORS = pytest.StashKey[dict[str, float]]()


@pytest.fixture(params=CELLS)
def cell(request: pytest.FixtureRequest) -> str:
    """Every cell of the kernels."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request: pytest.FixtureRequest) -> Any:
    """float64 and float32."""
    return request.param


@pytest.fixture(scope="session")
def record_worst_error(pytestconfig: pytest.Config) -> Callable[[str, float], None]:
    """record(what, error): keeps the largest error seen per ``what`` over the session; the
    terminal summary lists them (no test reads them, so no test depends on another)."""
    worst = pytestconfig.stash.setdefault(_WORST_ERRORS, {})

    def record(what: str, error: float) -> None:
        worst[what] = max(worst.get(what, 0.0), error)

    return record


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Lists the largest relative errors recorded through ``record_worst_error``."""
    worst = config.stash.get(_WORST_ERRORS, {})
    for what, error in sorted(worst.items()):
        terminalreporter.write_line(f"largest relative error, {what}: {error:.2e}")
