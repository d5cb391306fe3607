"""``fastrnn seq2seq``: runs end to end with tiny settings (dates and digit strings, with and
without attention, the comparison, the heatmap, the saved model), learns the reversal of short
digit strings, and stops bad arguments before any work."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_cli import _usage_error, run

from fastrnn import Seq2Seq
from fastrnn.tools import cli, seq2seq_cli

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


def test_short_digit_strings_finish_and_hold_out_a_fixed_tenth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two-digit strings (110 sources): training and the held-out set both fill (a split by a
    hash of the source, not by the drawn test set, which could take every source)."""
    assert cli.main(["seq2seq", "--task", "reverse", "--digits", "2", *TINY, "--no-compare"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("held-out exact match")
    rng = np.random.default_rng(0)
    task = seq2seq_cli._task(cli._parser().parse_args(["seq2seq", "--task", "sort"]))
    test = seq2seq_cli._held_out_set(task, 50, rng)
    assert len(test.sources) == 50 and all(seq2seq_cli._held_out(s) for s in test.sources)
    batches = seq2seq_cli._training_batches(task, 64, rng)
    for _ in range(5):
        sources, targets = next(batches)
        assert len(sources) == len(targets) == 64
        assert not any(seq2seq_cli._held_out(s) for s in sources)
    share = np.mean([seq2seq_cli._held_out(s) for s in task.draw(20000, rng).sources])
    assert 0.07 < share < 0.13


def test_forget_bias_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["seq2seq", *TINY, "--forget-bias", "none", "--no-compare"]) == 0
    capsys.readouterr()
    for value in ("nan", "x"):
        assert "--forget-bias" in _usage_error(["seq2seq", "--forget-bias", value], capsys)
    err = _usage_error(["seq2seq", *TINY, "--cell", "gru", "--forget-bias", "2"], capsys)
    assert "--forget-bias: only an LSTM has a forget gate" in err


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
