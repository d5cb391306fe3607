"""The ``fastrnn`` command's subcommands run end to end with tiny settings and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastrnn.tools import cli


def run(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "fastrnn", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_tiny(tmp_path: Path) -> None:
    txt = tmp_path / "t.txt"
    txt.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    out = run("demo", "--text", str(txt), "--steps", "3", "--hidden", "16", "--batch", "4",
              "--seq-len", "8", "--sample-len", "20", "--save", str(tmp_path / "m.npz"),
              cwd=tmp_path)  # fmt: skip
    assert "characters/s" in out and "temperature 0.2" in out and "held-out" in out
    assert (tmp_path / "m.npz").exists()


def test_demo_builtin_corpus(tmp_path: Path) -> None:
    out = run("demo", "--steps", "2", "--hidden", "8", "--batch", "2", "--seq-len", "8",
              "--sample-len", "5", "--max-chars", "20000", cwd=tmp_path)  # fmt: skip
    assert "standard library" in out


def test_adding_and_gradflow_tiny(tmp_path: Path) -> None:
    out = run("adding", "--T", "10", "--steps", "4", "--hidden", "4", "--batch", "8",
              "--plot", "", cwd=tmp_path)  # fmt: skip
    for cell in ("rnn", "gru", "lstm", "const"):
        assert cell in out
    out = run("gradflow", "--T", "6", "--hidden", "4", "--batch", "2", "--plot", "",
              cwd=tmp_path)  # fmt: skip
    assert "||dL/dh_t||" in out and "lstm" in out
    out = run("gradflow", "--T", "6", "--hidden", "4", "--batch", "2", "--plot", "",
              "--init", "orthogonal", "--scale", "3", cwd=tmp_path)  # fmt: skip
    assert "orthogonal" in out and "x 3.0" in out


def test_plot_written_or_explained(tmp_path: Path) -> None:
    out = run("gradflow", "--T", "5", "--hidden", "3", "--batch", "2", "--plot", "g.png",
              cwd=tmp_path)  # fmt: skip
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "install matplotlib" in out
    else:
        assert (tmp_path / "g.png").stat().st_size > 1000


def test_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["demo", "--steps", "0"])
    with pytest.raises(SystemExit):
        cli.main(["adding", "--T", "1"])


def test_progress_lines() -> None:
    import io

    s = io.StringIO()
    p = cli.Progress(20, "x", stream=s)
    for _ in range(20):
        p.update(1, loss=1.0)
    lines = s.getvalue().splitlines()
    assert 10 <= len(lines) <= 12 and lines[-1].startswith("x [####################] 20/20")
