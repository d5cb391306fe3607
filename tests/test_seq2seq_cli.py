"""``fastrnn seq2seq``: runs end to end with tiny settings (dates and digit strings, with and
without attention, the comparison, the heatmap, the saved model), learns the reversal of short
digit strings, and stops bad arguments before any work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_cli import _usage_error, run

from fastrnn import Seq2Seq
from fastrnn.tools import cli

TINY = ["--steps", "4", "--batch", "8", "--hidden", "8", "--embedding", "4", "--test", "24"]


def test_dates_tiny_with_comparison_plot_and_save(tmp_path: Path) -> None:
    out = run("seq2seq", *TINY, "--examples", "3", "--plot", str(tmp_path / "a.png"),
              "--save", str(tmp_path / "m.npz"), cwd=tmp_path)  # fmt: skip
    lines = out.strip().splitlines()
    assert re.fullmatch(r"held-out exact match: \d{1,3}\.\d%", lines[-1]), lines[-1]
    assert "attention general  no attention" in out
    # every date format has its row, the longest source last
    rows = [ln for ln in lines if ln.startswith("Weekday, the dth of Month yyyy")]
    assert len(rows) <= 1  # 24 held-out pairs need not hold every format
    assert sum("->" in ln for ln in lines) == 3
    assert (tmp_path / "m.npz").exists()
    model, _, extra = Seq2Seq.load(tmp_path / "m.npz")
    assert model.config["attention"] == "general" and model.config["bidirectional"]
    assert extra["vocab"].tgt_size == 11 + 3  # "-", ten digits, PAD/BOS/EOS
    png = tmp_path / "a.png"
    assert png.exists() or "no plot: install matplotlib" in out


def test_digits_without_attention(tmp_path: Path) -> None:
    out = run("seq2seq", *TINY, "--task", "sort", "--digits", "5", "--attention", "none",
              "--cell", "gru", "--no-bidirectional", "--beam", "3", "--plot",
              str(tmp_path / "a.png"), cwd=tmp_path)  # fmt: skip
    assert "no attention" not in out.split("held-out exact match by kind")[1].splitlines()[1]
    assert "digits" in out and "(no heatmap: the model has no attention)" in out
    assert not (tmp_path / "a.png").exists()
    assert out.strip().splitlines()[-1].startswith("held-out exact match: ")


def test_learns_to_reverse_short_digit_strings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["seq2seq", "--task", "reverse", "--digits", "4", "--steps", "300",
                     "--hidden", "32", "--test", "200", "--no-compare"]) == 0  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    exact = float(re.fullmatch(r"held-out exact match: ([\d.]+)%", last).group(1))  # type: ignore[union-attr]
    assert exact >= 90, last


def test_bad_arguments_stop_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for option, value in [("--steps", "0"), ("--test", "0"), ("--beam", "0"),
                          ("--digits", "0"), ("--hidden", "0"), ("--lr", "0")]:  # fmt: skip
        err = _usage_error(["seq2seq", option, value], capsys)
        assert option in err
    err = _usage_error(["seq2seq", "--plot", str(tmp_path / "no" / "a.png")], capsys)
    assert "--plot: the folder" in err
    err = _usage_error(["seq2seq", "--save", str(tmp_path / "no" / "m.npz")], capsys)
    assert "--save: the folder" in err
    err = _usage_error(["seq2seq", "--attention", "cosine"], capsys)
    assert "--attention" in err
