"""The examples in examples/ run and show what they claim."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_clip_gradients_example(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "clip_gradients.py"), run_name="__main__")
    out = capsys.readouterr().out
    before = float(out.split("before clipping: ")[1].split(",")[0])
    after = float(out.split("after: ")[1])
    assert before > 1e3 and np.isfinite(before)  # exploded
    assert after == pytest.approx(1.0)  # and clipped to max_norm
