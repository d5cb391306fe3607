"""``python -m fastrnn.bench --seq2seq``: a training step of the sequence-to-sequence model,
fastrnn against the same model in ``torch.nn``.

The model is :class:`fastrnn.training.seq2seq.Seq2Seq` with ``fastrnn seq2seq``'s defaults unless
told otherwise: embedding ``--seq2seq-embedding`` (32), encoder and decoder of
``--seq2seq-layers`` layers (1), the encoder bidirectional (``--no-seq2seq-bidirectional``: not)
with ``--seq2seq-hidden`` units a direction (64; the decoder has the encoder's output size, 128),
the attention ``--seq2seq-attention`` (general), float32, seed 0; the batch ``--seq2seq-batch``
(64) examples of the date task
(:func:`fastrnn.tasks.dates`, seed 0, encoded by :class:`~fastrnn.training.seq2seq.Seq2SeqVocab`
of :func:`~fastrnn.tasks.date_alphabet`: sources up to 37 characters, targets 10 and EOS). One
step: forward with teacher forcing, the cross-entropy, backward, clipping to global norm 1,
Adam. fastrnn's is :meth:`Seq2Seq.train_step`; torch's is
:class:`~fastrnn.tools.seq2seq_torch.TorchSeq2Seq` (the same model in torch ops, the parity
test's, holding the same weights) with ``torch.nn.utils.clip_grad_norm_`` and
``torch.optim.Adam``. For each cell and attention, at each ``--threads`` count, each peer runs in
a process of its own with that many threads (``fastrnn.set_num_threads``,
``torch.set_num_threads``); each time is the median of at least ``--repeat`` steps (and of 0.25 s
of steps) after one warm-up step, within about ``--budget`` seconds; with ``--rounds N`` each
peer is timed N times, the peers' processes alternating, and the median of the rounds is
reported. The table: milliseconds and
the speed-up (torch's time over fastrnn's), and issue 22's target (at least 1.5x), met or not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from ..training.model import _CELLS
from ..training.seq2seq import ATTENTIONS as _ATTENTIONS
from . import bench as _b

#: the peers of the seq2seq table
PEERS = ("fastrnn", "torch")
CELLS = tuple(_CELLS)  # the cells it may time: Seq2Seq's
DEFAULT_CELLS = ("lstm", "gru")
#: Seq2Seq's attention scores by name, "none": the model without attention
ATTENTIONS = tuple(str(a).lower() for a in _ATTENTIONS)
# the model and batch of `fastrnn seq2seq` (its defaults; a test holds them equal): the attention,
# the defaults of --seq2seq-batch, -embedding, -hidden, -layers, -bidirectional, Adam's rate
DEFAULT_ATTENTIONS = ("general",)
BATCH, EMBEDDING, HIDDEN, LAYERS, BIDIRECTIONAL = 64, 32, 64, 1, True
LR = 3e-3
CLIP_NORM = 1.0  # the global norm the gradients are clipped to
TARGET = 1.5  # issue 22: fastrnn's step at least this much faster than torch.nn's


# ------------------------------------------------------------------------------------ workers


def _problem(case: dict[str, Any]) -> tuple[Any, Any]:
    """The case's fastrnn model (float32, seed 0) and batch of the date task (seed 0)."""
    from ..training.seq2seq import Seq2Seq, Seq2SeqVocab
    from ..training.tasks import date_alphabet, dates

    vocab = Seq2SeqVocab(*date_alphabet())
    pairs = dates(case["batch"], seed=0)
    batch = vocab.batch(pairs.sources, pairs.targets)
    attention = None if case["attention"] == "none" else case["attention"]
    model = Seq2Seq(case["cell"], vocab.src_size, vocab.tgt_size,
                    embedding_dim=case["embedding"], hidden_size=case["hidden"],
                    num_layers=case["layers"], bidirectional=case["bidirectional"],
                    attention=attention, seed=0)  # fmt: skip
    return model, batch


def _fastrnn_step(model: Any, batch: Any) -> Any:
    """fastrnn's training step: Seq2Seq.train_step with clipping and Adam."""
    from ..training import optim

    opt = optim.Adam(lr=LR)
    return lambda: model.train_step(batch, opt, clip_norm=CLIP_NORM)


class _TorchStep:
    """torch's training step (a call): the same model in torch ops (:attr:`model`, a copy of
    the fastrnn model's weights), autograd, torch's clipping and Adam."""

    def __init__(self, model: Any, batch: Any) -> None:
        import torch

        from . import seq2seq_torch as st

        self.model = st.from_seq2seq(model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.tensors = st.batch_tensors(batch)
        self.clip = torch.nn.utils.clip_grad_norm_

    def __call__(self) -> Any:
        src, src_lengths, tgt_in, tgt_out, tgt_lengths = self.tensors
        self.opt.zero_grad()
        logits, _ = self.model(src, src_lengths, tgt_in, tgt_lengths)
        loss = self.model.loss(logits, tgt_out, tgt_lengths)
        loss.backward()  # type: ignore[no-untyped-call]
        self.clip(self.model.parameters(), CLIP_NORM)
        self.opt.step()
        return loss


STEPS = {"fastrnn": _fastrnn_step, "torch": _TorchStep}  # the timed step of each peer


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """A seq2seq worker process (``spec["mode"] == "seq2seq"``): each case's training step
    timed, with the thread count of the spec."""
    peer = spec["peer"]
    out = _b.worker_start(spec, "seq2seq")
    for case in spec["cases"]:
        model, batch = _problem(case)
        secs, n = _b._time_runs(STEPS[peer](model, batch), spec["repeat"], spec["budget"])
        params = sum(int(p.size) for p in model.named_parameters().values())
        sizes = {"src_steps": int(batch.src.shape[0]), "tgt_steps": int(batch.tgt_in.shape[0]),
                 "parameters": params}  # fmt: skip
        out["results"].append({**case, **sizes, "ms": secs * 1e3, "n": n})
    return out


# ------------------------------------------------------------------------------------ the run


def _cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [{"cell": c, "attention": a, "batch": args.seq2seq_batch,
             "embedding": args.seq2seq_embedding, "hidden": args.seq2seq_hidden,
             "layers": args.seq2seq_layers, "bidirectional": args.seq2seq_bidirectional}
            for c in args.seq2seq_cells for a in args.seq2seq_attention]  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Times every case, each peer and thread count in a process of its own; returns the report
    (what ``--json`` writes)."""
    peers = [p for p in PEERS if p in args.peers and _b._available(p)]
    cases = _cases(args)
    machine = _b._machine()
    meter = _b._OthersMeter()
    runs = []
    for threads in args.threads:
        for i in range(args.rounds):  # the peers alternate, first one first, then the other
            for peer in peers if i % 2 == 0 else peers[::-1]:
                print(f"  timing {peer} seq2seq training steps with {threads} thread(s), round "
                      f"{i + 1} of {args.rounds} ...", file=sys.stderr, flush=True)  # fmt: skip
                spec = {"mode": "seq2seq", "peer": peer, "threads": threads, "cases": cases,
                        "repeat": args.repeat, "budget": args.budget}  # fmt: skip
                runs.append({**_b._spawn(spec), "round": i})
    report = {"machine": machine, "mode": "seq2seq", "peers": peers, "threads": args.threads,
              "rounds": args.rounds, "lr": LR, "clip_norm": CLIP_NORM, "runs": runs,
              "others_busy_cpus": meter.cpus()}  # fmt: skip
    report["rows"] = rows(report)
    return report


# ------------------------------------------------------------------------------------ report


def _results(report: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every case's result by (peer, threads, cell, attention): its first round's, with ``ms``
    the median of every round's (``--rounds``; each round's in ``ms_rounds``)."""
    rounds: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in report["runs"]:
        for c in r["results"]:
            rounds.setdefault((r["peer"], r["threads"], c["cell"], c["attention"]), []).append(c)
    return {k: {**v[0], "ms": statistics.median(c["ms"] for c in v),
                "ms_rounds": [c["ms"] for c in v]} for k, v in rounds.items()}  # fmt: skip


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per cell, attention and thread count timed: each peer's ms (the median of the
    rounds) and the speed-up (torch's ms over fastrnn's; None where a peer is missing)."""
    res = _results(report)
    keys = sorted({k[1:] for k in res}, key=lambda k: (CELLS.index(k[1]),
                                                      ATTENTIONS.index(k[2]), k[0]))  # fmt: skip
    out = []
    for threads, cell, attention in keys:
        mine = res.get(("fastrnn", threads, cell, attention), {})
        torch = res.get(("torch", threads, cell, attention), {})
        any_ = mine or torch
        ms, tms = mine.get("ms"), torch.get("ms")
        out.append({"cell": cell, "attention": attention, "threads": threads,
                    "batch": any_["batch"], "src_steps": any_["src_steps"],
                    "tgt_steps": any_["tgt_steps"], "embedding": any_["embedding"],
                    "hidden": any_["hidden"], "layers": any_["layers"],
                    "bidirectional": any_["bidirectional"], "parameters": any_["parameters"],
                    "fastrnn_ms": ms, "torch_ms": tms,
                    "fastrnn_ms_rounds": mine.get("ms_rounds"),
                    "torch_ms_rounds": torch.get("ms_rounds"),
                    "speedup": tms / ms if ms and tms else None})  # fmt: skip
    return out


def _ms(v: float | None, width: int) -> str:
    return _b._ms(v, width) if v is not None else f"{'-':>{width}}"


def _rows_text(rows: list[dict[str, Any]]) -> list[str]:
    head = (f"{'cell':<5} {'attention':<9} {'thr':>3} {'fastrnn ms':>10} {'torch.nn ms':>12} "
            f"{'speed-up':>9}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        x = f"{r['speedup']:>8.2f}x" if r["speedup"] is not None else ""
        ms = f"{_ms(r['fastrnn_ms'], 10)} {_ms(r['torch_ms'], 12)} {x}"
        lines.append(f"{r['cell']:<5} {r['attention']:<9} {r['threads']:>3} {ms}".rstrip())
    return lines


def _about(rows: list[dict[str, Any]]) -> str:
    """What was timed: the sizes (those of the first row; every row has the same batch)."""
    if not rows:
        return "nothing timed"
    r = rows[0]
    H, bi = r["hidden"], r["bidirectional"]
    encoder = f"{'a bidirectional' if bi else 'an'} encoder of {H} units{' a direction' * bi}"
    return (f"batch {r['batch']} of the date task (sources padded to {r['src_steps']} "
            f"characters, targets {r['tgt_steps']} steps), embedding {r['embedding']}, "
            f"{encoder} and a decoder of {H * (1 + bi)}, {r['layers']} layer(s) each, "
            f"{r['parameters']:,} parameters, float32")  # fmt: skip


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 22's target over the rows with both peers: met / entries, and those not met."""
    judged = [r for r in rows if r["speedup"] is not None]
    if not judged:
        return []
    missed = [f"{r['cell']} {r['attention']} {r['threads']}t {r['speedup']:.2f}x"
              for r in judged if r["speedup"] < TARGET]  # fmt: skip
    line = (f"target fastrnn's step >= {TARGET:.1f}x torch.nn's: met "
            f"{len(judged) - len(missed)} of {len(judged)}")  # fmt: skip
    return [line + (f"; not met: {', '.join(missed)}" if missed else "")]


def _of_rounds(report: dict[str, Any]) -> str:
    n = report.get("rounds", 1)
    return f" (of {n} rounds, the peers' processes alternating)" if n > 1 else ""


def table(report: dict[str, Any]) -> str:
    """The seq2seq report as text."""
    r = report["rows"]
    lines = [
        f"Seq2seq training step ({_about(r)}): forward with teacher forcing, cross-entropy, "
        f"backward, clip to norm {report['clip_norm']:g}, Adam. fastrnn = "
        "fastrnn.training.Seq2Seq.train_step; torch.nn = the same model and weights in torch "
        "ops (fastrnn.tools.seq2seq_torch) with autograd, clip_grad_norm_ and torch.optim.Adam. "
        f"Each peer and thread count in a process of its own; median ms{_of_rounds(report)}; "
        "speed-up = torch.nn ms / fastrnn ms.",
        "",
        *_rows_text(r),
        "",
    ]
    isas = sorted({run["isa"] for run in report["runs"] if "isa" in run})
    if isas:
        lines.append(f"fastrnn kernel variant: {', '.join(isas)}")
    others, cpus = report.get("others_busy_cpus"), report["machine"].get("cpus")
    if others is not None:
        load = ": the timings include their load" if others > _b.QUIET_CPUS else ""
        lines.append(f"other processes kept {others:.2f} of the machine's {cpus} CPUs busy on "
                     f"average during the run, the bench's own not counted{load}")  # fmt: skip
    return "\n".join([*lines, *targets(r)])


def chart(report: dict[str, Any], path: str | None = None) -> Any:
    """The seq2seq report's chart (``--replot``): for each cell, attention and thread count,
    torch.nn's training step's time over fastrnn's (above 1: fastrnn faster), drawn by
    :func:`fastrnn.tools.bench.ratio_chart`. Returns the Figure, saved to ``path`` if given."""
    got = report.get("rows") or rows(report)
    labels = [f"{r['cell']} {r['attention']} {r['threads']}t" for r in got]
    panels = {"seq2seq training step": (labels, {"torch.nn": [r["speedup"] for r in got]})}
    isas = sorted({run["isa"] for run in report["runs"] if "isa" in run})
    title = "sequence to sequence, float32" + (
        f", fastrnn kernel variant {', '.join(isas)}" if isas else ""
    )
    return _b.ratio_chart(panels, "torch.nn ms / fastrnn ms (> 1: fastrnn faster)", title, path)


# ------------------------------------------------------------------------------------ options


def add_options(ap: argparse.ArgumentParser) -> None:
    """--seq2seq and the options of its table."""
    ap.add_argument(
        "--seq2seq",
        action="store_true",
        help="instead of the peer tables, one training step of the sequence-to-sequence model "
        "(fastrnn.training.Seq2Seq, by default fastrnn seq2seq's, on a batch of the date task: "
        "forward, cross-entropy, backward, clip norm 1, Adam; float32) against the same model "
        "and weights in torch.nn ops, each peer and thread count in a process of its own "
        "(--threads, --peers fastrnn torch, --repeat, --budget, --rounds and --json apply)",
    )
    ap.add_argument("--seq2seq-cells", nargs="+", choices=CELLS, default=list(DEFAULT_CELLS),
                    metavar="CELL",
                    help=f"with --seq2seq: the cells, of {', '.join(CELLS)} (lstm is fastrnn "
                    "seq2seq's default)")  # fmt: skip
    ap.add_argument("--seq2seq-attention", nargs="+", choices=ATTENTIONS,
                    default=list(DEFAULT_ATTENTIONS), metavar="SCORE",
                    help=f"with --seq2seq: the attention scores, of {', '.join(ATTENTIONS)} "
                    "(none: the model without attention)")  # fmt: skip
    sizes = [
        ("batch", BATCH, "examples of the date task in the batch"),
        ("embedding", EMBEDDING, "the embedding's size"),
        ("hidden", HIDDEN, "the encoder's hidden size per direction (the decoder's: twice "
         "that when the encoder is bidirectional)"),
        ("layers", LAYERS, "the layers of the encoder and the decoder"),
    ]  # fmt: skip
    for name, default, what in sizes:
        ap.add_argument(f"--seq2seq-{name}", type=int, default=default, metavar="N",
                        help=f"with --seq2seq: {what}")  # fmt: skip
    ap.add_argument("--seq2seq-bidirectional", action=argparse.BooleanOptionalAction,
                    default=BIDIRECTIONAL,
                    help="with --seq2seq: a bidirectional encoder (fastrnn seq2seq's)")  # fmt: skip


def check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The options that do not apply to the seq2seq table, and sizes below 1: a usage error."""
    if args.under_load:
        ap.error("--seq2seq: not with --under-load")
    if args.compute_dtype != "float32":
        ap.error(f"--seq2seq: not with --compute-dtype {args.compute_dtype} (it times float32)")
    if args.png:
        ap.error("--png: not with --seq2seq (its results are the table and --json)")
    if args.isa:
        ap.error("--isa: not with --seq2seq (set FASTRNN_ISA in the environment to time fastrnn "
                 "under another kernel variant)")  # fmt: skip
    for name in ("batch", "embedding", "hidden", "layers"):
        value = getattr(args, f"seq2seq_{name}")
        if value < 1:
            ap.error(f"--seq2seq-{name}: must be >= 1, got {value}")
    if not [p for p in PEERS if p in args.peers]:
        ap.error("--peers: --seq2seq times fastrnn and torch; name at least one")
    if args.shapes is not None:
        ap.error("--shapes: not with --seq2seq (its sizes are the --seq2seq-* options)")


def check_unused(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Without --seq2seq, its options changed from their defaults: a usage error (they would be
    ignored)."""
    for action in ap._actions:
        dest = action.dest
        if dest.startswith("seq2seq_") and getattr(args, dest) != action.default:
            ap.error(f"{action.option_strings[0]}: only with --seq2seq")


__all__ = [
    "PEERS",
    "add_options",
    "chart",
    "check",
    "check_unused",
    "rows",
    "run",
    "table",
    "targets",
    "worker",
]
