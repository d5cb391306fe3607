"""``fastrnn seq2seq``: an encoder-decoder with attention trained on a task that needs no download.

The default task is date normalisation (:func:`~fastrnn.training.tasks.dates`: a date written in one
of 14 human formats, translated to ISO 8601); ``--task reverse`` / ``sort`` take digit strings
(:func:`~fastrnn.training.tasks.digit_strings`). A :class:`~fastrnn.training.seq2seq.Seq2Seq` is
trained with teacher forcing and Adam, then decodes a held-out set (a fixed tenth of the task's
sources, chosen by a hash of the text, is never trained on): a few translations are printed, the
exact-match rate per format (with the model trained without attention beside it, unless
``--no-compare``), and last the line ``held-out exact match: NN.N%``. ``--plot FILE`` draws the
attention weights of one held-out example (source characters against output characters).
:doc:`Training with fastrnn alone </training>` shows runs of it; its options are on
:mod:`fastrnn.tools.cli`'s page.
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..training import optim, tasks
from ..training.model import _CELLS as CELLS
from ..training.seq2seq import ATTENTIONS, Hypothesis, Seq2Seq, Seq2SeqVocab

__all__ = ["add_parser", "attention_figure", "run"]

CLIP_NORM = 1.0  # the global gradient norm every training step clips to
TASKS = ("dates", *tasks.DIGIT_TASKS)


@dataclass
class _Task:
    """A task's data: ``draw(n, rng)`` pairs, the vocabulary, the longest target."""

    name: str
    draw: Callable[[int, np.random.Generator], tasks.Pairs]
    vocab: Seq2SeqVocab
    max_target: int


def _task(args: argparse.Namespace) -> _Task:
    if args.task == "dates":
        src, tgt = tasks.date_alphabet()
        return _Task("dates", lambda n, rng: tasks.dates(n, rng), Seq2SeqVocab(src, tgt), 10)
    src, tgt = tasks.digit_alphabet()
    name, hi = args.task, args.digits

    def draw(n: int, rng: np.random.Generator) -> tasks.Pairs:
        return tasks.digit_strings(n, rng, task=name, min_len=1, max_len=hi)

    return _Task(name, draw, Seq2SeqVocab(src, tgt), hi)


#: one source in HELD_OUT_EVERY is held out: never trained on, the pool of the held-out set
HELD_OUT_EVERY = 10
#: draws of the task (of 4 x --test pairs each) the held-out set may take to fill
_MAX_DRAWS = 1000


def _held_out(source: str) -> bool:
    """Whether ``source`` is held out: a fixed split of the task's sources by a hash of the
    text (CRC-32, the same in every process and run), about one in :data:`HELD_OUT_EVERY`."""
    return zlib.crc32(source.encode()) % HELD_OUT_EVERY == 0


def _held_out_set(task: _Task, n: int, rng: np.random.Generator) -> tasks.Pairs:
    """``n`` pairs of the task whose sources are held out (a source may occur twice, as in any
    random sample), or a ValueError when the task's sources hold none."""
    got: list[tuple[str, str, str]] = []
    for _ in range(_MAX_DRAWS):
        p = task.draw(4 * n, rng)
        got += [x for x in zip(p.sources, p.targets, p.kinds, strict=True) if _held_out(x[0])]
        if len(got) >= n:
            sources, targets, kinds = (list(c) for c in zip(*got[:n], strict=True))
            return tasks.Pairs(sources, targets, kinds)
    raise ValueError(
        f"the task has too few distinct sources to hold any out ({len(got)} held-out pairs in "
        f"{_MAX_DRAWS} draws): give longer digit strings (--digits)"
    )


def _training_batches(task: _Task, batch: int, rng: np.random.Generator) -> Any:
    """Training pairs, ``batch`` at a time, none of whose sources is held out."""
    sources: list[str] = []
    targets: list[str] = []
    while True:
        p = task.draw(batch, rng)
        keep = [i for i, s in enumerate(p.sources) if not _held_out(s)]
        sources += [p.sources[i] for i in keep]
        targets += [p.targets[i] for i in keep]
        while len(sources) >= batch:
            yield sources[:batch], targets[:batch]
            del sources[:batch], targets[:batch]


def _exact(task: _Task, hyps: list[Hypothesis], targets: list[str]) -> float:
    outputs = [task.vocab.decode_target(h.ids) for h in hyps]
    return float(np.mean([o == t for o, t in zip(outputs, targets, strict=True)]))


def _train(
    task: _Task, attention: str | None, args: argparse.Namespace, test: tasks.Pairs
) -> tuple[Seq2Seq, list[Hypothesis], float, list[tuple[int, float]]]:
    """One model trained for ``args.steps`` steps: the model, its held-out hypotheses, the
    seconds its training took, and its learning curve (held-out exact match on the first
    ``args.test // 4`` pairs at five points of the training, decoded greedily)."""
    from .cli import Progress

    model = Seq2Seq(
        args.cell, task.vocab.src_size, task.vocab.tgt_size, embedding_dim=args.embedding,
        hidden_size=args.hidden, num_layers=args.layers, bidirectional=args.bidirectional,
        attention=attention, forget_bias=args.forget_bias if args.cell == "lstm" else None,
        seed=args.seed,
    )  # fmt: skip
    opt = optim.Adam(lr=args.lr)
    batches = _training_batches(task, args.batch, np.random.default_rng(args.seed + 1))
    label = "attention " + (attention or "none")
    bar = Progress(args.steps, f"seq2seq {label:<18}", unit="pair")
    probe = test.sources[: max(args.test // 4, 1)]
    every = max(args.steps // 5, 1)
    curve: list[tuple[int, float]] = []
    seconds = 0.0
    for step in range(1, args.steps + 1):
        sources, targets = next(batches)
        start = time.perf_counter()
        r = model.train_step(task.vocab.batch(sources, targets), opt, clip_norm=CLIP_NORM)
        seconds += time.perf_counter() - start
        if step % every == 0 or step == args.steps:
            hyps = _decode(model, task, probe, 1)
            curve.append((step, _exact(task, hyps, test.targets[: len(probe)])))
        bar.update(1, units=args.batch, loss=r.loss)
    return model, _decode(model, task, test.sources, args.beam), seconds, curve


def _decode(model: Seq2Seq, task: _Task, sources: list[str], beam: int) -> list[Hypothesis]:
    src, lengths = task.vocab.sources(sources)
    max_len = task.max_target + 1  # the EOS counted
    if beam == 1:
        return model.greedy(src, lengths, max_len)
    return model.beam_search(src, lengths, max_len, beam)


def _by_kind(test: tasks.Pairs, outputs: list[str]) -> dict[str, tuple[int, float]]:
    """Per kind of example (a date format; a digit string's length): the longest source and
    the exact-match rate."""
    hits: dict[str, list[bool]] = {}
    longest: dict[str, int] = {}
    for s, t, k, o in zip(test.sources, test.targets, test.kinds, outputs, strict=True):
        if k in tasks.DIGIT_TASKS:
            k = f"{len(s):>2} digits"
        hits.setdefault(k, []).append(o == t)
        longest[k] = max(longest.get(k, 0), len(s))
    return {k: (longest[k], float(np.mean(v))) for k, v in hits.items()}


def attention_figure(source: str, attention: Any, output: str) -> Any:
    """The heatmap of one decoded example's attention weights: the output characters as rows
    against the source characters as columns, weights from 0 to 1. ``fastrnn seq2seq --plot``
    saves this figure.

    Args:
        source: the source text.
        attention: ``(output steps, len(source))``, a
            :class:`~fastrnn.training.seq2seq.Hypothesis`'s ``attention``.
        output: the decoded text (its first ``output steps`` characters label the rows).

    Returns:
        The matplotlib Figure.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib.pyplot as plt

    rows = list(output)[: attention.shape[0]]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.28 * len(source) + 1.5), 0.32 * len(rows) + 1.6))
    im = ax.imshow(attention, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(source)), [c if c != " " else "␣" for c in source])
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="source", ylabel="output", title=f"{source!r} -> {output!r}")
    fig.colorbar(im, ax=ax, fraction=0.03, label="attention weight")
    fig.tight_layout()
    return fig


def _plot_attention(path: str, source: str, hyp: Hypothesis, output: str) -> None:
    """The attention weights of one decoded example (:func:`attention_figure`), saved to
    ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .cli import _NO_PLOT

        print(_NO_PLOT.format("the attention heatmap"))
        return
    assert hyp.attention is not None
    fig = attention_figure(source, hyp.attention, output)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"the attention heatmap: {path}")


def run(args: argparse.Namespace) -> int:
    """Run ``fastrnn seq2seq``: train, decode the held-out set, report on stdout (and draw or
    save what ``--plot`` and ``--save`` ask for).

    Args:
        args: the parsed arguments of the ``seq2seq`` subcommand (:func:`add_parser`'s
            options, with ``args.parser`` the subcommand's parser).

    Returns:
        The exit status, 0.

    Raises:
        SystemExit: ``--forget-bias`` with a cell other than LSTM, or digit strings too short
            to hold any out (a usage error, status 2).
    """
    from .cli import _set_threads

    if args.cell != "lstm" and args.forget_bias not in (None, 1.0):
        args.parser.error(f"--forget-bias: only an LSTM has a forget gate, not --cell {args.cell}")
    _set_threads(args.threads)
    task = _task(args)
    attention = None if args.attention == "none" else args.attention
    try:
        test = _held_out_set(task, args.test, np.random.default_rng(args.seed + 12345))
    except ValueError as e:
        args.parser.error(str(e))
    dirs = "bidirectional " if args.bidirectional else ""
    print(
        f"seq2seq on {task.name}: {dirs}{args.cell.upper()} encoder-decoder, hidden "
        f"{args.hidden}, embedding {args.embedding}, attention {args.attention}; {args.steps} "
        f"Adam steps of {args.batch} pairs (lr {args.lr}, clip norm {CLIP_NORM}); "
        f"held-out set of {args.test}"
    )
    model, hyps, seconds, curve = _train(task, attention, args, test)
    outputs = [task.vocab.decode_target(h.ids) for h in hyps]
    compare = args.compare and attention is not None
    other: dict[str, tuple[int, float]] = {}
    other_curve: list[tuple[int, float]] = []
    if compare:
        _, base_hyps, _, other_curve = _train(task, None, args, test)
        other = _by_kind(test, [task.vocab.decode_target(h.ids) for h in base_hyps])

    print(f"\ntrained in {seconds:.1f} s (the training steps); held-out translations:")
    for s, o, t in list(zip(test.sources, outputs, test.targets, strict=True))[: args.examples]:
        print(f"  {s!r:<42} -> {o!r:<14} {'ok' if o == t else 'expected ' + repr(t)}")
    name = f"attention {args.attention}"
    print(f"\nheld-out exact match while training (the first {max(args.test // 4, 1)} pairs, "
          "greedy):")  # fmt: skip
    print(f"{'step':>6} {name:>18}" + (f" {'no attention':>13}" if compare else ""))
    for i, (step, acc) in enumerate(curve):
        line = f"{step:>6} {100 * acc:>17.1f}%"
        print(line + (f" {100 * other_curve[i][1]:>12.1f}%" if compare else ""))
    mine = _by_kind(test, outputs)
    print(f"\nheld-out exact match by kind ({'greedy' if args.beam == 1 else f'beam {args.beam}'}"
          "), shortest sources first:")  # fmt: skip
    print(f"{'kind':<32} {'longest':>7} {name:>18}" + (f" {'no attention':>13}" if compare else ""))
    for kind, (longest, acc) in sorted(mine.items(), key=lambda kv: (kv[1][0], kv[0])):
        line = f"{kind:<32} {longest:>7} {100 * acc:>17.1f}%"
        print(line + (f" {100 * other[kind][1]:>12.1f}%" if compare else ""))
    if args.plot:
        i = int(np.argmax([len(s) for s in test.sources[: max(args.examples, 1)]]))
        if hyps[i].attention is None:
            print("(no heatmap: the model has no attention)")
        else:
            _plot_attention(args.plot, test.sources[i], hyps[i], outputs[i])
    if args.save:
        model.save(args.save, vocab=task.vocab)
        print(f"saved the model and its vocabulary to {args.save}")
    exact = np.mean([o == t for o, t in zip(outputs, test.targets, strict=True)])
    print(f"held-out exact match: {100 * exact:.1f}%")
    return 0


def add_parser(
    sub: Any, subparser: Any, threads_help: str, forget_bias_value: Callable[[str], float | None]
) -> None:
    """Add the ``seq2seq`` subcommand and its options to the ``fastrnn`` command's parser.

    Args:
        sub: the ``fastrnn`` parser's subparsers (what ``add_subparsers`` returned).
        subparser: makes a subcommand's parser as fastrnn's others are made, called as
            ``subparser(sub, name, help)``.
        threads_help: the help of ``--threads``, as the other subcommands'.
        forget_bias_value: reads ``--forget-bias`` as ``fastrnn demo``'s (a finite number or
            ``none``; else raises ``argparse.ArgumentTypeError``).
    """
    p = subparser(sub, "seq2seq", "an encoder-decoder with attention on date normalisation")
    p.add_argument("--task", choices=TASKS, default="dates",
                   help="dates: 14 formats to ISO 8601; reverse/sort: digit strings")  # fmt: skip
    p.add_argument("--digits", type=int, default=12,
                   help="the longest digit string of --task reverse/sort")  # fmt: skip
    p.add_argument("--cell", choices=list(CELLS), default="lstm",
                   help="the recurrent cell of the encoder and the decoder")  # fmt: skip
    p.add_argument("--hidden", type=int, default=64,
                   help="hidden units per direction of the encoder (the decoder has twice "
                   "as many when the encoder is bidirectional)")  # fmt: skip
    p.add_argument("--layers", type=int, default=1, help="layers of each stack")
    p.add_argument("--embedding", type=int, default=32, help="size of both embeddings")
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=True,
                   help="a bidirectional encoder")  # fmt: skip
    p.add_argument("--attention", choices=[str(a).lower() for a in ATTENTIONS],
                   default="general",
                   help="Luong's general or dot score, Bahdanau's additive, or none")  # fmt: skip
    p.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                   help="also train the model without attention, reported beside")  # fmt: skip
    p.add_argument("--forget-bias", type=forget_bias_value, default=1.0, metavar="B",
                   help="the LSTM's forget-gate bias at initialisation (Seq2Seq's forget_bias), "
                   "or 'none' for PyTorch's initialisation; LSTM only")  # fmt: skip
    p.add_argument("--steps", type=int, default=1500, help="training steps (batches)")
    p.add_argument("--batch", type=int, default=64, help="pairs per training step")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    p.add_argument("--test", type=int, default=2000, help="held-out pairs")
    p.add_argument("--beam", type=int, default=1,
                   help="beam size of the held-out decoding (1: greedy)")  # fmt: skip
    p.add_argument("--examples", type=int, default=8, help="held-out translations to print")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and of the data")
    p.add_argument("--plot", metavar="FILE", default="",
                   help="PNG of one example's attention weights, needs matplotlib")  # fmt: skip
    p.add_argument("--save", metavar="FILE",
                   help="save the model and its vocabulary to this .npz file "
                   "(default: not saved)")  # fmt: skip
    p.add_argument("--threads", type=int, metavar="N", help=threads_help)
    p.set_defaults(func=run, parser=p)
