"""The main job, ``python -m fastrnn``: runs, prints the table, and fails when it should."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fastrnn.tools import selfcheck as _selfcheck


def test_module_runs_and_reports_every_cell() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastrnn",
            "selfcheck",
            "--shape",
            "4",
            "2",
            "8",
            "8",
            "--repeat",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    for label in _selfcheck.LABELS.values():
        assert label in out
    assert "all cells agree with the reference" in out


def test_fails_when_a_cell_disagrees(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(_selfcheck.TOLERANCE, _selfcheck.np.float64, 0.0)
    assert _selfcheck.main(["--no-timing"]) == 1
    assert "FAILED" in capsys.readouterr().out
