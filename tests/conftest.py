"""Fixtures and hooks: the cell and dtype parameters. What the tests share otherwise is in
helpers.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import CELLS, DTYPES


@pytest.fixture(params=CELLS)
def cell(request: pytest.FixtureRequest) -> str:
    """Every cell of the kernels."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request: pytest.FixtureRequest) -> Any:
    """float64 and float32."""
    return request.param
