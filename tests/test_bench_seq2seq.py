"""``python -m fastrnn.bench --seq2seq``: the options, a tiny run end to end (against torch where
it is installed), the table's rows, speed-ups and target line, and that the two peers' timed
steps train the same model alike. No timing is checked."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastrnn.tools import bench, bench_seq2seq, cli, seq2seq_cli
from helpers import assert_bench_usage_error, bench_args

# tiny sizes: 3 examples of the date task, embedding 4, hidden 8, at 1 thread, one run
TINY = ["--seq2seq", "--seq2seq-batch", "3", "--seq2seq-embedding", "4", "--seq2seq-hidden", "8",
        "--threads", "1", "--repeat", "1", "--budget", "0.1"]  # fmt: skip
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_defaults_are_fastrnn_seq2seqs() -> None:
    """By default the bench times the model and batch `fastrnn seq2seq` trains, LSTM and GRU."""
    cli_args = cli._parser().parse_args(["seq2seq"])
    args = bench_args(["--seq2seq"])
    assert (args.seq2seq_cells, args.seq2seq_attention) == ([cli_args.cell, "gru"],
                                                            [cli_args.attention])  # fmt: skip
    mine = (args.seq2seq_batch, args.seq2seq_embedding, args.seq2seq_hidden, args.seq2seq_layers,
            args.seq2seq_bidirectional, bench_seq2seq.LR, bench_seq2seq.CLIP_NORM)  # fmt: skip
    assert mine == (cli_args.batch, cli_args.embedding, cli_args.hidden, cli_args.layers,
                    cli_args.bidirectional, cli_args.lr, seq2seq_cli.CLIP_NORM)  # fmt: skip
    assert args.threads == [1, 2] and not bench_args([]).seq2seq


def test_options() -> None:
    cases = bench_seq2seq._cases(bench_args([*TINY, "--seq2seq-cells", "rnn", "--seq2seq-attention",
                                        "dot", "none", "--no-seq2seq-bidirectional",
                                        "--seq2seq-layers", "2"]))  # fmt: skip
    got = [(c["cell"], c["attention"], c["batch"], c["bidirectional"], c["layers"]) for c in cases]
    assert got == [("rnn", "dot", 3, False, 2), ("rnn", "none", 3, False, 2)]


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        (["--under-load"], "--seq2seq: not with --under-load"),
        (["--compute-dtype", "int8"], "--seq2seq: not with --compute-dtype int8"),
        (["--png", "x.png"], "--png: not with --seq2seq"),
        (["--isa", "all"], "--isa: not with --seq2seq"),
        (["--peers", "ort"], "--peers: --seq2seq times fastrnn and torch"),
        (["--seq2seq-batch", "0"], "--seq2seq-batch: must be >= 1, got 0"),
        (["--seq2seq-hidden", "-1"], "--seq2seq-hidden: must be >= 1, got -1"),
        (["--seq2seq-layers", "0"], "--seq2seq-layers: must be >= 1, got 0"),
        (["--seq2seq-cells", "tanh"], "argument --seq2seq-cells: invalid choice"),
        (["--seq2seq-attention", "luong"], "argument --seq2seq-attention: invalid choice"),
    ],
)
def test_arguments_checked_before_timing(
    extra: list[str], msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_bench_usage_error([*TINY, *extra], msg, capsys)


def test_tiny_run(tmp_path: Path) -> None:
    """Both cells, general attention and none, each peer in a process of its own, two rounds;
    the JSON holds the runs and the rows the table prints."""
    out = tmp_path / "seq2seq.json"
    peers = ["fastrnn", "torch"] if HAS_TORCH else ["fastrnn"]
    proc = subprocess.run(
        [sys.executable, "-m", "fastrnn.bench", *TINY, "--seq2seq-attention", "general", "none",
         "--peers", *peers, "--rounds", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["mode"] == "seq2seq" and report["peers"] == peers
    assert sorted((r["peer"], r["threads"], r["round"]) for r in report["runs"]) == [
        (p, 1, i) for p in peers for i in (0, 1)]  # two rounds: a process each  # fmt: skip
    rows = report["rows"]
    assert [(r["cell"], r["attention"], r["threads"]) for r in rows] == [
        ("lstm", "none", 1), ("lstm", "general", 1),
        ("gru", "none", 1), ("gru", "general", 1)]  # Seq2Seq's order of attentions  # fmt: skip
    stdout = proc.stdout
    assert "cell  attention thr fastrnn ms  torch.nn ms  speed-up" in stdout
    assert "Seq2seq training step (batch 3 of the date task (sources padded to " in stdout
    assert "a bidirectional encoder of 8 units a direction and a decoder of 16, 1 layer" in stdout
    for r in rows:
        assert (r["batch"], r["embedding"], r["hidden"], r["tgt_steps"]) == (3, 4, 8, 11)
        assert 8 <= r["src_steps"] <= 37 and r["fastrnn_ms"] > 0
        assert len(r["fastrnn_ms_rounds"]) == 2
        line = f"{r['cell']:<5} {r['attention']:<9}   1 {bench._ms(r['fastrnn_ms'], 10)}"
        assert line in stdout
        if HAS_TORCH:
            assert r["torch_ms"] > 0
            assert r["speedup"] == pytest.approx(r["torch_ms"] / r["fastrnn_ms"])
        else:
            assert r["torch_ms"] is None and r["speedup"] is None
    assert ("target fastrnn's step >= 1.5x torch.nn's: met" in stdout) == HAS_TORCH


def _report(times: dict[tuple[str, int, str], float]) -> dict[str, Any]:
    """A made-up report of (peer, threads, cell) -> ms, general attention."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for (peer, threads, cell), ms in times.items():
        run = runs.setdefault((peer, threads), {"peer": peer, "threads": threads, "results": []})
        run["results"].append({"cell": cell, "attention": "general", "batch": 64,
                               "embedding": 32, "hidden": 64, "layers": 1,
                               "bidirectional": True, "src_steps": 37, "tgt_steps": 11,
                               "parameters": 123456, "ms": ms})  # fmt: skip
    report = {"machine": {"cpus": 2}, "runs": list(runs.values()), "clip_norm": 1.0}
    report["rows"] = bench_seq2seq.rows(report)
    return report


def test_rows_speedups_and_target() -> None:
    report = _report({("fastrnn", 1, "lstm"): 20.0, ("torch", 1, "lstm"): 40.0,
                      ("fastrnn", 2, "lstm"): 20.0, ("torch", 2, "lstm"): 25.0,
                      ("fastrnn", 1, "gru"): 10.0})  # fmt: skip
    rows = report["rows"]
    assert [(r["cell"], r["threads"], r["speedup"]) for r in rows] == [
        ("lstm", 1, 2.0), ("lstm", 2, 1.25), ("gru", 1, None)]  # fmt: skip
    text = bench_seq2seq.table(report)
    assert "lstm  general     1      20.00        40.00     2.00x" in text
    assert "lstm  general     2      20.00        25.00     1.25x" in text
    assert "gru   general     1      10.00            -" in text
    assert "a bidirectional encoder of 64 units a direction and a decoder of 128" in text
    assert "123,456 parameters" in text
    assert text.endswith(
        "target fastrnn's step >= 1.5x torch.nn's: met 1 of 2; not met: lstm general 2t 1.25x"
    )


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("attention", ["general", "additive", "none"])
def test_the_peers_steps_train_alike(attention: str) -> None:
    """The two timed steps do the same work: from the same model and batch, three steps of
    each give the same losses and parameters (float32's rounding)."""
    case = {"cell": "gru", "attention": attention, "batch": 4, "embedding": 4, "hidden": 8,
            "layers": 2, "bidirectional": True}  # fmt: skip
    model, batch = bench_seq2seq._problem(case)
    fastrnn_step = bench_seq2seq._fastrnn_step(model, batch)
    torch_step = bench_seq2seq._TorchStep(model, batch)  # copies the weights before any step
    initial = model.state_dict()
    for _ in range(3):
        assert fastrnn_step().loss == pytest.approx(torch_step().item(), rel=1e-5)
    params = model.named_parameters()
    moved = max(float(np.abs(params[k] - initial[k]).max()) for k in params)
    assert moved > 1e-3  # three Adam steps of lr 1e-3 moved the weights
    for name, p in torch_step.model.named_parameters():
        np.testing.assert_allclose(params[name], p.detach().numpy(), atol=1e-5, err_msg=name)


def test_rounds_give_the_median() -> None:
    """Three rounds of each peer: a row's times are the median of the rounds'."""
    runs = []
    for i, (f, t) in enumerate([(30.0, 50.0), (10.0, 90.0), (20.0, 40.0)]):
        one = _report({("fastrnn", 1, "lstm"): f, ("torch", 1, "lstm"): t})["runs"]
        runs += [{**r, "round": i} for r in one]
    report = {"machine": {"cpus": 2}, "runs": runs, "clip_norm": 1.0, "rounds": 3}
    (row,) = bench_seq2seq.rows(report)
    assert (row["fastrnn_ms"], row["torch_ms"], row["speedup"]) == (20.0, 50.0, 2.5)
    assert row["fastrnn_ms_rounds"] == [30.0, 10.0, 20.0]
    report["rows"] = [row]
    text = bench_seq2seq.table(report)
    assert "median ms (of 3 rounds, the peers' processes alternating)" in text
