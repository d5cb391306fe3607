"""The ``fastrnn`` command (also ``python -m fastrnn``): train the training kit's models on
tasks that need no download, compare the cells, and time and check the kernels.

The guide, :doc:`Training with fastrnn alone </training>`, shows what each subcommand does, with
measured runs; :doc:`The fastrnn command </command>` lists the options of each, as
``fastrnn COMMAND -h`` prints them (:func:`options_reference`); this page is the reference of the
Python names that other tools reuse.

Subcommands:

* ``demo``: train a character-level model on a built-in corpus (the source of Python's standard
  library, no download) or ``--text FILE``, report loss and speed, print samples
  (``--quantize int8``: of the model with its recurrent layers in int8, its held-out loss next to
  the float model's).
* ``adding``: RNN, GRU and LSTM of the same size on the adding problem (``--cells``: also the
  layer-normalised LSTM and GRU, ``lnlstm`` and ``lngru``); final test MSE against the constant
  predictor's (``--quantize int8``: and the int8 models'), and the learning curves (PNG with
  matplotlib).
* ``gradflow``: ``||dL/dh_t||`` against t for RNN, GRU and LSTM (``--cells``) at
  initialisation (PNG).
* ``seq2seq``: an encoder-decoder with attention trained on date normalisation (or digit
  strings); held-out translations, exact match per format beside the same model without
  attention, the attention heatmap of an example (:mod:`fastrnn.tools.seq2seq_cli`).
* ``bench``: the speed comparison (:mod:`fastrnn.tools.bench`, also ``python -m fastrnn.bench``);
  ``selfcheck``: kernels against the NumPy reference (:mod:`fastrnn.tools.selfcheck`).

Every option's help shows its default; options are never abbreviated; paths, sizes and thread
counts are checked before any work (a one-line usage error, exit status 2).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..training import init, optim, tasks, text
from ..training.model import SequenceModel, StepResult
from . import _options, seq2seq_cli

__all__ = ["DEMO_CLIP_NORM", "DemoTraining", "Progress", "demo_args", "main", "options_reference"]

_NO_PLOT = '(no plot: install matplotlib, pip install "fastrnn[plot]", to get {})'


class Progress:
    """A one-line progress bar on stderr: count, rate, ETA and the latest metrics.

    Redrawn in place on a terminal (at most 10 times a second); elsewhere (logs, CI) a line at
    every 10% of the run.

    Args:
        total: the steps of the run (at least 1 is counted).
        desc: the label at the start of the line.
        unit: what the rate counts (``"chars"``: characters per second).
        stream: where to write (None: ``sys.stderr``).
    """

    def __init__(self, total: int, desc: str, unit: str = "step", stream: TextIO | None = None):
        self.total, self.desc, self.unit = max(int(total), 1), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.count = 0
        self._units = 0.0
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, n: int = 1, units: float | None = None, **metrics: float) -> None:
        """Advance by ``n`` steps and redraw if it is time.

        Args:
            n: the steps done.
            units: what they count for the rate (e.g. characters); None: ``n``.
            **metrics: the latest values to show (``loss=1.23``).
        """
        self.count += n
        self._units += n if units is None else units
        now = time.perf_counter()
        decile = 10 * self.count // self.total
        done = self.count >= self.total
        if self.tty and (now - self._last_draw > 0.1 or done):
            self._draw(now, metrics, end="\n" if done else "\r")
        elif not self.tty and (decile != self._last_decile or done):
            self._draw(now, metrics, end="\n")
        self._last_decile = decile

    def _draw(self, now: float, metrics: dict[str, float], end: str) -> None:
        self._last_draw = now
        el = max(now - self.start, 1e-9)
        rate = self._units / el
        eta = (self.total - self.count) * el / max(self.count, 1)
        frac = self.count / self.total
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        ms = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.stream.write(
            f"{self.desc} [{bar}] {self.count}/{self.total}  {ms}  {rate:,.0f} {self.unit}/s  "
            f"ETA {eta:4.0f}s{end}"
        )
        self.stream.flush()


def _plot(path: str, what: str, draw: Any) -> None:
    """Draws a log-scale chart into ``path`` (nothing for ''), or says how to get matplotlib."""
    if not path:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(_NO_PLOT.format(what))
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    draw(ax)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"{what}: {path}")


def _forget_bias(args: argparse.Namespace, cell: str) -> float | None:
    """SequenceModel's ``forget_bias`` for ``cell``: ``--forget-bias`` for an LSTM (``lstm``,
    ``lnlstm``), None for the cells without a forget gate."""
    return args.forget_bias if cell in _FORGET_GATE else None


def _set_threads(n: int | None) -> None:
    if n is not None:
        from .. import set_num_threads

        set_num_threads(n)


# ---------------------------------------------------------------------------------------- demo


#: the global gradient norm the demo's training step clips to
DEMO_CLIP_NORM = 5.0


def _demo_text(args: argparse.Namespace) -> tuple[str, bool, str]:
    """The training text, with indentation as level changes where it can be
    (:func:`~fastrnn.training.text.encode_indentation`: at a low temperature, runs of spaces
    would otherwise grow forever), whether it is so encoded, and the line that describes it."""
    try:
        corpus = text.load_text(args.text) if args.text else text.default_corpus(args.max_chars)
    except ValueError as e:  # a binary --text: a usage error, as an empty one is
        args.parser.error(f"--text: {e}")
    source = args.text or "the Python standard library's source (built in)"
    encoded = text.INDENT not in corpus and text.DEDENT not in corpus
    train_text = text.encode_indentation(corpus) if encoded else corpus
    how = f" ({len(train_text):,} with indentation as level changes)" if encoded else ""
    return train_text, encoded, f"corpus: {source}: {len(corpus):,} characters{how}"


@dataclass
class DemoTraining:
    """What ``fastrnn demo`` trains: the text, its vocabulary and split, the model and the
    optimizer.

    :meth:`build` makes it from the demo's arguments without printing anything; :meth:`step` is
    one step of its training loop, which ``python -m fastrnn.bench --under-load`` times too.
    """

    corpus: str  #: the training text (indentation encoded if ``encoded``)
    #: whether ``corpus`` has its indentation encoded
    #: (:func:`~fastrnn.training.text.encode_indentation`)
    encoded: bool
    about: str  #: the line describing the text
    vocab: text.CharVocab  #: the characters of ``corpus``
    train_ids: Any  #: the first 95% of ``corpus``'s ids, int64
    test_ids: Any  #: the last 5%, held out
    model: SequenceModel  #: an embedding model, ``--cell``, ``--hidden``, ``--layers``...
    opt: optim.Optimizer  #: Adam at ``--lr``
    batch: int  #: parallel streams per batch (``--batch``)
    seq_len: int  #: steps per chunk, the truncated BPTT length (``--seq-len``)

    @classmethod
    def build(cls, args: argparse.Namespace) -> DemoTraining:
        """The demo's training from ``fastrnn demo``'s parsed arguments (:func:`demo_args`);
        the thread count is not set here.

        Raises:
            SystemExit: a ``--text`` that is not a text file (a usage error, status 2).
            RuntimeError: no built-in corpus (:func:`~fastrnn.training.text.default_corpus`).
        """
        corpus, encoded, about = _demo_text(args)
        vocab = text.CharVocab.from_text(corpus)
        train_ids, test_ids = text.train_test_split(vocab.encode(corpus), 0.05)
        model = SequenceModel(
            args.cell, vocab.size, args.hidden, vocab.size, num_layers=args.layers,
            embedding_dim=args.embedding, seed=args.seed,
            compute_dtype=getattr(args, "compute_dtype", None),
            forget_bias=_forget_bias(args, args.cell),
        )  # fmt: skip
        return cls(corpus, encoded, about, vocab, train_ids, test_ids, model,
                   optim.Adam(lr=args.lr), args.batch, args.seq_len)  # fmt: skip

    def num_batches(self) -> int:
        """Batches in one pass over the training text (0: too short for one;
        :func:`~fastrnn.training.text.num_stream_batches`)."""
        return text.num_stream_batches(len(self.train_ids), self.batch, self.seq_len)

    def batches(self) -> Iterator[tuple[Any, Any]]:
        """One pass over the training text: ``(x, y)`` chunks of the parallel streams, both
        int64 ``(seq_len, batch)`` (:func:`~fastrnn.training.text.stream_batches`)."""
        return text.stream_batches(self.train_ids, self.batch, self.seq_len)

    def step(self, x: Any, y: Any, state: Any) -> StepResult:
        """One training step: forward, cross-entropy, backward (truncated BPTT from ``state``),
        clipping to :data:`DEMO_CLIP_NORM`, Adam (:meth:`SequenceModel.train_step
        <fastrnn.training.model.SequenceModel.train_step>`).

        Args:
            x: ids ``(seq_len, batch)``, a chunk of :meth:`batches`.
            y: the ids that follow, ``(seq_len, batch)``.
            state: the previous chunk's final state, or None.

        Returns:
            The step's :class:`~fastrnn.training.model.StepResult` (its ``state`` for the next
            chunk).
        """
        return self.model.train_step(x, y, self.opt, loss="cross_entropy", state=state,
                                     clip_norm=DEMO_CLIP_NORM)  # fmt: skip


def _held_out_lines(held_out: str, chars: int = 150) -> str:
    """The prime of the samples by default: whole lines from the start of the held-out text (the
    first complete one, then more up to about ``chars`` characters), or its first ``chars``
    characters cut after a space if it has no line break there. Real text puts the model's state
    in the text's mode (code, comment, prose) before it samples; an empty state is not."""
    start = held_out.find("\n") + 1
    end = held_out.rfind("\n", start, start + chars) + 1
    if start == 0 or end <= start:
        head = held_out[:chars]
        return head[: head.rfind(" ") + 1] or head
    return held_out[start:end]


def _train_demo(d: DemoTraining, steps: int) -> list[float]:
    """``steps`` steps of truncated BPTT over the text's streams; the losses."""
    bar = Progress(steps, "demo", unit="chars")
    step, state, losses = 0, None, []
    while step < steps:
        for x, y in d.batches():
            r = d.step(x, y, state)
            state, step = r.state, step + 1
            losses.append(r.loss)
            bar.update(1, units=x.size, loss=float(np.mean(losses[-20:])))
            if step >= steps:
                break
        state = None  # a new pass over the text starts each stream afresh
    return losses


def _held_out_loss(model: SequenceModel, test_ids: Any, batch: int) -> float:
    """Cross-entropy on the held-out text, in one pass (nan if it is shorter than a batch)."""
    model.eval()
    tx = test_ids[: (len(test_ids) - 1) // batch * batch + 1]
    if len(tx) <= batch:
        return float("nan")
    return model.evaluate(tx[:-1].reshape(batch, -1).T, tx[1:].reshape(batch, -1).T,
                          loss="cross_entropy")  # fmt: skip


class _Indentation:
    """The rule of text written by :func:`~fastrnn.training.text.encode_indentation`, for
    sampling: INDENT and DEDENT only at the start of a line, DEDENT only above level 0 (as
    :func:`~fastrnn.training.text.decode_indentation` reads it). Without it a model that cannot
    count the levels may dedent forever at a low temperature, as it indented forever before."""

    def __init__(self, vocab: text.CharVocab, prime: str) -> None:
        chars = vocab.chars
        self.indent = chars.index(text.INDENT) if text.INDENT in chars else None
        self.dedent = chars.index(text.DEDENT) if text.DEDENT in chars else None
        self.level, self.line_start = 0, True
        for c in prime:
            self.advance(c)

    def advance(self, c: str) -> None:
        """Follows one more character of the text."""
        if c == "\n":
            self.line_start = True
        elif c == text.INDENT and self.line_start:
            self.level += 1
        elif c == text.DEDENT and self.line_start:
            self.level = max(self.level - 1, 0)
        else:
            self.line_start = False

    def mask(self, logits: Any) -> Any:
        """The logits with the characters not allowed next set to -inf."""
        z = np.array(logits, dtype=np.float64)
        for i, allowed in ((self.indent, self.line_start),
                           (self.dedent, self.line_start and self.level > 0)):  # fmt: skip
            if i is not None and not allowed:
                z[i] = -np.inf
        return z


def _sample(model: SequenceModel, vocab: text.CharVocab, prime: str, temperature: float,
            args: Any) -> str:  # fmt: skip
    """``args.sample_len`` characters after ``prime``, drawn one at a time from the model's
    softmax at ``temperature`` (:func:`~fastrnn.training.text.sample_index`), under the rule of
    the encoded indentation (``SequenceModel.generate`` knows no such rule)."""
    rule = _Indentation(vocab, prime)
    rng = np.random.default_rng(args.seed)
    logits, state = model.forward(vocab.encode(prime)[:, None])
    out = []
    for _ in range(args.sample_len):
        i = text.sample_index(rule.mask(logits[-1, 0]), temperature, rng)
        out.append(vocab.chars[i])
        rule.advance(out[-1])
        logits, state = model.forward(np.array([[i]]), state)
    return "".join(out)


def _samples(
    model: SequenceModel, vocab: text.CharVocab, prime: str, encoded: bool, args: Any
) -> None:
    """Prints the prime, then a continuation at each temperature (indentation decoded); an int8
    model's samples say so."""
    model.eval()
    shown = text.decode_indentation if encoded else str
    what = "--prime" if args.prime is not None else "the first lines of the held-out text"
    int8 = " (int8 model)" if model.rnn.compute_dtype == "int8" else ""
    print(f"\n--- prime ({what}) ---\n{shown(prime)}", end="" if prime.endswith("\n") else "\n")
    for temp in args.temperatures:
        out = _sample(model, vocab, prime, temp, args)
        # decoded with the prime, which sets the indentation level the sample starts from
        print(f"\n--- sample, temperature {temp}{int8} ---\n"
              f"{shown(prime + out)[len(shown(prime)) :]}")  # fmt: skip


def _int8_line(model: SequenceModel, qmodel: SequenceModel, loss: float, q_loss: float) -> str:
    """The int8 model's held-out loss next to the float model's, and its recurrent layers'
    bytes."""
    f_bytes = sum(p.nbytes for _, p in model.rnn.named_parameters())
    return (
        f"int8 model (recurrent layers int8; embedding, output layer float32): held-out "
        f"{q_loss:.4f} nats/char, float {loss:.4f} ({(q_loss - loss) / loss:+.3%}); recurrent "
        f"layers {qmodel.rnn.nbytes:,} bytes, float {f_bytes:,}"
    )


def demo(args: argparse.Namespace) -> int:
    """Character-level language model: train, report, sample."""
    _set_threads(args.threads)
    d = DemoTraining.build(args)
    corpus, encoded, vocab, model, opt = d.corpus, d.encoded, d.vocab, d.model, d.opt
    print(f"{d.about}, vocabulary {vocab.size}")
    n_par = sum(p.size for p in model.named_parameters().values())
    print(f"model: {args.cell.upper()} {args.layers}x{args.hidden}, embedding {args.embedding}, "
          f"{n_par:,} parameters; batch {args.batch} x {args.seq_len} characters, truncated BPTT "
          f"with the state carried across chunks; Adam lr {args.lr}, clip norm "
          f"{DEMO_CLIP_NORM:g}")  # fmt: skip
    if d.num_batches() == 0:
        print("error: the text is too short for one batch; use a longer --text", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    losses = _train_demo(d, args.steps)
    secs = time.perf_counter() - t0
    chars = args.steps * args.batch * args.seq_len
    test_loss = _held_out_loss(model, d.test_ids, args.batch)
    first = float(np.mean(losses[: min(20, len(losses))]))
    last = float(np.mean(losses[-20:]))
    print(f"\ntrained {args.steps} steps ({chars:,} characters) in {secs:.1f} s: "
          f"{chars / secs:,.0f} characters/s, {args.steps / secs:.1f} steps/s")  # fmt: skip
    print(
        f"train loss {first:.3f} -> {last:.3f} nats/char ({last / math.log(2):.3f} bits); "
        f"held-out {test_loss:.3f} nats/char; uniform guess {math.log(vocab.size):.3f}"
    )
    sampled = model
    if args.quantize is not None:
        sampled = model.quantize_dynamic(args.quantize)
        q_loss = _held_out_loss(sampled, d.test_ids, args.batch)
        print(_int8_line(model, sampled, test_loss, q_loss))
    if args.prime is None:
        prime = _held_out_lines(vocab.decode(d.test_ids[:1000]))
    else:
        prime = text.encode_indentation(args.prime) if encoded else args.prime
        prime = "".join(c for c in prime if c in vocab.chars) or corpus[:1]
    _samples(sampled, vocab, prime, encoded, args)
    if args.save:  # the float model, to resume training (SequenceModel.quantize_dynamic after load)
        model.save(args.save, opt, vocab=vocab.chars, indentation_encoded=encoded)
        print(f"\nsaved model (float) and optimizer state to {args.save}")
    return 0


# -------------------------------------------------------------------------------------- adding


def _adding_model(cell: str, args: argparse.Namespace) -> SequenceModel:
    """The model ``fastrnn adding`` trains for ``cell``: an LSTM's (``lstm``, ``lnlstm``) gate
    biases by ``--forget-bias`` (``chrono``: :func:`~fastrnn.training.init.set_chrono_bias` with
    ``t_max`` the sequence length)."""
    chrono = cell in _FORGET_GATE and args.forget_bias == _CHRONO
    model = SequenceModel(cell, 2, args.hidden, 1, many_to_one=True, seed=args.seed,
                          compute_dtype=args.compute_dtype,
                          forget_bias=None if chrono else _forget_bias(args, cell))  # fmt: skip
    if chrono:
        init.set_chrono_bias(model.rnn, args.T, rng=args.seed)
    return model


def _adding_run(cell: str, args: argparse.Namespace, x_test: Any, y_test: Any) -> dict[str, Any]:
    model = _adding_model(cell, args)
    opt = optim.Adam(lr=args.lr)
    rng = np.random.default_rng(args.seed + 1)
    curve: list[tuple[int, float]] = []
    bar = Progress(args.steps, f"adding {cell:>4}", unit="seq")
    every = max(args.steps // 20, 1)
    for step in range(1, args.steps + 1):
        x, y = tasks.adding_problem(args.batch, args.T, rng)
        r = model.train_step(x, y, opt, clip_norm=1.0)
        if step % every == 0 or step == args.steps:
            curve.append((step, model.evaluate(x_test, y_test)))
        # the test MSE once there is one (it is measured every `every` steps)
        test = {"test": curve[-1][1]} if curve else {}
        bar.update(1, units=args.batch, loss=r.loss, **test)
    run = {"cell": cell, "curve": curve, "test_mse": curve[-1][1]}
    if args.quantize is not None:
        run["int8_mse"] = model.quantize_dynamic(args.quantize).evaluate(x_test, y_test)
    return run


def adding(args: argparse.Namespace) -> int:
    """The adding problem: gated cells bridge the lag, the vanilla RNN does not."""
    _set_threads(args.threads)
    x_test, y_test = tasks.adding_problem(1000, args.T, args.seed + 12345)
    base = tasks.adding_baseline_mse()
    fb = args.forget_bias
    how = ("PyTorch's default initialisation" if fb is None else
           f"chrono initialisation of its gate biases (t_max {args.T})" if fb == _CHRONO else
           f"forget-gate bias {fb:g}")  # fmt: skip
    lstm = f"; LSTM: {how}" if set(_FORGET_GATE) & set(args.cells) else ""
    print(f"adding problem, T={args.T}: hidden {args.hidden}, batch {args.batch}, "
          f"{args.steps} Adam steps (lr {args.lr}, clip norm 1), test set of 1000"
          f"{lstm}")  # fmt: skip
    runs = [_adding_run(c, args, x_test, y_test) for c in args.cells]
    int8 = args.quantize is not None
    print(f"\n{'cell':<6} {'test MSE':>10} {'/ baseline':>11}  solved (< 0.1 x baseline)"
          + ("  int8 test MSE" if int8 else ""))  # fmt: skip
    for r in runs:
        ratio = r["test_mse"] / base
        solved = "yes" if ratio < 0.1 else "no"
        q = f"  {r['int8_mse']:>13.4f}" if int8 else ""
        print(f"{r['cell']:<6} {r['test_mse']:>10.4f} {ratio:>11.3f}  {solved:<25}{q}".rstrip())
    print(f"{'const':<6} {base:>10.4f} {1:>11.3f}  (predicting the mean, 2/12)")

    def draw(ax: Any) -> None:
        for r in runs:
            s, v = zip(*r["curve"], strict=True)
            ax.plot(s, v, label=r["cell"].upper())
        ax.axhline(base, color="gray", ls="--", label="constant predictor")
        ax.set(xlabel="training step", ylabel="test MSE", yscale="log",
               title=f"Adding problem, T={args.T}")  # fmt: skip

    _plot(args.plot, "the learning curves", draw)
    return 0


# ------------------------------------------------------------------------------------ gradflow


def gradflow(args: argparse.Namespace) -> int:
    """||dL/dh_t|| against t at initialisation, for each cell."""
    _set_threads(args.threads)
    x, y = tasks.adding_problem(args.batch, args.T, args.seed)
    rows = {}
    for cell in args.cells:
        m = SequenceModel(cell, 2, args.hidden, 1, many_to_one=True, seed=args.seed,
                          dtype=np.float64, forget_bias=None)  # fmt: skip
        if args.init == "orthogonal":
            fb = 1.0 if cell in _FORGET_GATE else None
            init.init_recurrent(m.rnn, forget_bias=fb, rng=args.seed)
        if args.scale != 1:
            sd = m.rnn.state_dict()
            m.rnn.load_state_dict(
                {k: v * args.scale if k.startswith("weight_hh") else v for k, v in sd.items()}
            )
        rows[cell] = m.hidden_grad_norms(x.astype(np.float64), y.astype(np.float64))
    T = args.T
    cols = sorted({0, T // 4, T // 2, 3 * T // 4, T - 1})
    how = ("PyTorch's default init" if args.init == "default" else
           "orthogonal W_hh, Xavier W_ih, zero biases, LSTM forget bias 1")  # fmt: skip
    if args.scale != 1:
        how += f", W_hh x {args.scale}"
    print(
        f"||dL/dh_t|| at initialisation ({how}), adding problem T={T}, "
        f"batch {args.batch}, hidden {args.hidden}; loss at the last step"
    )
    print(f"{'cell':<6}" + "".join(f"{f't={c}':>11}" for c in cols) + f"{'first/last':>12}")
    for cell, n in rows.items():
        print(f"{cell:<6}" + "".join(f"{n[c]:>11.3e}" for c in cols) + f"{n[0] / n[-1]:>12.2e}")

    def draw(ax: Any) -> None:
        for cell, n in rows.items():
            ax.plot(np.arange(T), n, label=cell.upper())
        ax.set(xlabel="step t", ylabel="||dL/dh_t||", yscale="log",
               title=f"Gradient flowing back from the loss at t={T - 1}")  # fmt: skip

    _plot(args.plot, "the plot", draw)
    return 0


# ---------------------------------------------------------------------------------------- main


def _version() -> str:
    from .. import __version__, build_info

    return f"fastrnn {__version__} (kernel variant {build_info()['isa']})"


_CELLS = ["rnn", "rnn_relu", "gru", "lstm", "lnlstm", "lngru"]
_FORGET_GATE = ("lstm", "lnlstm")  # the cells with a forget gate (--forget-bias)
_COMPUTE_HELP = (
    "precision of the recurrent layers' matrix products: float32, or bfloat16 (products of "
    "bfloat16-rounded operands summed in float32; on the CPU's bf16 units where it has them)"
)
_QUANTIZE_HELP = (
    "after training, quantize the recurrent layers to int8 (SequenceModel.quantize_dynamic: "
    "int8 weights with a scale per row, activations quantized on the fly) and {what} "
    "(default: not quantized)"
)
_FORGET_BIAS_HELP = (
    "the LSTM's forget-gate bias at initialisation (SequenceModel's forget_bias: the f rows of "
    "bias_ih set to it, bias_hh's to 0), or 'none' (default: none: PyTorch's initialisation, "
    "with which the demo's LSTM learnt better than with a bias of 1, see docs/training.md)"
)
_CHRONO = "chrono"
_ADDING_FORGET_BIAS_HELP = (
    "the LSTM's gate biases at initialisation: 'chrono', Tallec & Ollivier's chrono "
    "initialisation with t_max = --T (forget-gate biases log u, u ~ U(1, T-1) per unit, "
    "input-gate biases their negatives: fastrnn.init.set_chrono_bias); a number: the forget "
    "gate's bias (SequenceModel's forget_bias; at T=400 a bias of 1 did not learn in 2000 "
    "steps, chrono did); 'none': PyTorch's default initialisation"
)
_THREADS_HELP = (
    "threads of fastrnn's kernels (default: FASTRNN_NUM_THREADS or OMP_NUM_THREADS if set, else "
    "the CPUs this process may use)"
)


def _demo_parser(sub: Any) -> None:
    d = _options.subparser(sub, "demo", "train a character-level model and sample from it")
    d.add_argument(
        "--text",
        metavar="FILE",
        help="train on this UTF-8 text file (default: the built-in corpus, the source "
        "of Python's standard library)",
    )
    d.add_argument(
        "--max-chars",
        type=int,
        default=1_000_000,
        help="characters of the built-in corpus to train and test on",
    )
    d.add_argument("--cell", choices=_CELLS, default="lstm", help="recurrent cell")
    d.add_argument("--hidden", type=int, default=192, help="hidden units per layer")
    d.add_argument("--layers", type=int, default=1, help="stacked recurrent layers")
    d.add_argument("--embedding", type=int, default=32, help="size of the character embedding")
    d.add_argument("--steps", type=int, default=900, help="training steps (batches)")
    d.add_argument("--batch", type=int, default=32, help="parallel streams of text per batch")
    d.add_argument(
        "--seq-len", type=int, default=64, help="characters per chunk: the truncated BPTT length"
    )
    d.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    d.add_argument("--forget-bias", type=_forget_bias_value, metavar="B", help=_FORGET_BIAS_HELP)
    d.add_argument("--seed", type=int, default=0, help="seed of the weights and of the samples")
    d.add_argument(
        "--prime",
        help="text the samples start from (default: the first lines of the held-out text)",
    )
    d.add_argument(
        "--sample-len", type=int, default=300, help="characters sampled at each temperature"
    )
    d.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0.2, 0.6, 1.0],
        metavar="T",
        help="sampling temperatures (0: always the likeliest character)",
    )
    d.add_argument(
        "--save",
        metavar="FILE",
        help="save the model and the optimizer state to this .npz file (default: not saved)",
    )
    d.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                   help=_COMPUTE_HELP)  # fmt: skip
    d.add_argument("--quantize", choices=["int8"],
                   help=_QUANTIZE_HELP.format(what="print the int8 model's held-out loss next "
                                              "to the float model's; the samples are the int8 "
                                              "model's"))  # fmt: skip
    d.add_argument("--threads", type=int, metavar="N", help=_THREADS_HELP)
    d.set_defaults(func=demo, parser=d)


def _cells_experiment(
    p: argparse.ArgumentParser, T_help: str, hidden: int, batch: int, batch_help: str,
    cells_help: str,
) -> None:  # fmt: skip
    """The options `adding` and `gradflow` share: one model per cell, of one size."""
    p.add_argument("--T", type=int, default=100, help=T_help)
    p.add_argument("--hidden", type=int, default=hidden, help="hidden units of each model")
    p.add_argument("--batch", type=int, default=batch, help=batch_help)
    p.add_argument("--cells", nargs="+", choices=_CELLS, default=["rnn", "gru", "lstm"],
                   help=cells_help)  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and of the data")


def _forget_bias_value(text: str) -> float | None:
    """``--forget-bias``'s value: a finite number, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number or 'none', got {text!r}")
    return v


def _forget_bias_or_chrono(text: str) -> float | str | None:
    """``fastrnn adding``'s ``--forget-bias``: ``chrono``, a finite number or ``none``."""
    if text.lower() == _CHRONO:
        return _CHRONO
    try:
        return _forget_bias_value(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a finite number, 'chrono' or 'none', got {text!r}"
        ) from None


def _plot_and_threads(p: argparse.ArgumentParser, default: str, what: str) -> None:
    p.add_argument("--plot", metavar="FILE", default=default,
                   help=f"PNG of {what}, needs matplotlib ('' for none)")  # fmt: skip
    p.add_argument("--threads", type=int, metavar="N", help=_THREADS_HELP)


def _adding_parser(sub: Any) -> None:
    a = _options.subparser(sub, "adding", "RNN vs GRU vs LSTM on the adding problem")
    _cells_experiment(
        a, "sequence length: the lag to bridge", 32, 64, "sequences per training step",
        "the cells to train, one model each",
    )  # fmt: skip
    a.add_argument("--steps", type=int, default=2000, help="training steps of each model")
    a.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate")
    a.add_argument("--forget-bias", type=_forget_bias_or_chrono, default=_CHRONO, metavar="B",
                   help=_ADDING_FORGET_BIAS_HELP)  # fmt: skip
    a.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                   help=_COMPUTE_HELP)  # fmt: skip
    a.add_argument("--quantize", choices=["int8"],
                   help=_QUANTIZE_HELP.format(what="print each int8 model's test MSE next "
                                              "to the float model's"))  # fmt: skip
    _plot_and_threads(a, "adding.png", "the learning curves")
    a.set_defaults(func=adding, parser=a)


def _gradflow_parser(sub: Any) -> None:
    g = _options.subparser(sub, "gradflow", "plot ||dL/dh_t|| over t at initialisation")
    _cells_experiment(g, "sequence length", 64, 32, "sequences the gradient is taken over",
                      "the cells to measure")  # fmt: skip
    g.add_argument(
        "--init",
        choices=["default", "orthogonal"],
        default="default",
        help="PyTorch's default initialisation (LSTM forget-gate bias too, unlike the models of "
        "demo and adding: this shows the default's gradients), or orthogonal recurrent weights "
        "(Xavier input weights, zero biases, LSTM forget bias 1)",
    )
    g.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the recurrent weights (e.g. 3 to see gradients explode)",
    )
    _plot_and_threads(g, "gradflow.png", "the gradient norms")
    g.set_defaults(func=gradflow, parser=g)


def _parser() -> argparse.ArgumentParser:
    return _parser_and_subcommands()[0]


def _parser_and_subcommands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``fastrnn`` parser and its subcommands' parsers by name (``bench`` and ``selfcheck``:
    placeholders, their modules parse their options)."""
    ap = _options.parser(
        "fastrnn",
        "fastrnn's command line: train a character-level model, compare the cells on the adding "
        "problem and their gradient flow, time and check the kernels.",
    )
    ap.add_argument(
        "--version",
        action="version",
        version=_version(),
        help="print fastrnn's version and kernel variant, and exit",
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    _demo_parser(sub)
    _adding_parser(sub)
    _gradflow_parser(sub)
    seq2seq_cli.add_parser(sub, _options.subparser, _THREADS_HELP, _forget_bias_value)
    # parsed by their own modules (main forwards the rest of the command line to them)
    _options.subparser(
        sub, "bench", "speed against PyTorch / ONNX Runtime (fastrnn bench -h)", add_help=False
    )
    _options.subparser(
        sub,
        "selfcheck",
        "kernels against the NumPy reference, timed (fastrnn selfcheck -h)",
        add_help=False,
    )
    return ap, dict(sub.choices)


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser a user meets, by the command it parses: ``fastrnn``, each subcommand's, and
    those of ``fastrnn bench`` and ``fastrnn selfcheck``."""
    from . import bench, selfcheck

    ap, subcommands = _parser_and_subcommands()
    out = {"fastrnn": ap}
    for name, p in subcommands.items():
        if name == "bench":
            p = bench._parser("fastrnn bench")
        elif name == "selfcheck":
            p = selfcheck._parser("fastrnn selfcheck")
        out[f"fastrnn {name}"] = p
    return out


def options_reference(width: int = 92) -> str:
    """The options of the command and of each subcommand, as reStructuredText.

    The documentation's page of the command is this text, made from the parsers when the site is
    built, so that it shows them as they are.

    Args:
        width: the columns of the help text, whatever the terminal.

    Returns:
        For ``fastrnn`` and each subcommand, a title and what its ``-h`` prints, as a literal
        block.
    """
    parts = ["\nThe options of each command, as its ``-h`` prints them:\n"]
    for prog, p in _parsers().items():
        p.formatter_class = functools.partial(_options.HelpFormatter, width=width)
        block = textwrap.indent(p.format_help().rstrip(), "    ")
        parts.append(f"``{prog}``::\n\n{block}\n")
    return "\n".join(parts)


# option: the smallest value it takes (every count >= 1; the lag of the adding problem >= 2)
_MINIMUM = {
    "steps": 1,
    "hidden": 1,
    "batch": 1,
    "T": 2,
    "seq_len": 1,
    "layers": 1,
    "embedding": 1,
    "max_chars": 1,
    "sample_len": 0,
    "digits": 1,
    "test": 1,
    "beam": 1,
    "examples": 0,
}


def _check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every argument checked before any work: a one-line usage error (exit status 2)."""
    for name, low in _MINIMUM.items():
        v = getattr(args, name, None)
        if v is not None and v < low:
            ap.error(f"--{name.replace('_', '-')}: must be >= {low}, got {v}")
    if getattr(args, "lr", 1.0) <= 0:
        ap.error(f"--lr: must be > 0, got {args.lr}")
    if any(t < 0 for t in getattr(args, "temperatures", [])):
        ap.error(f"--temperatures: must be >= 0, got {min(args.temperatures)}")
    _options.check_input_file(ap, "--text", getattr(args, "text", None))
    _options.check_output_path(ap, "--save", getattr(args, "save", None))
    _options.check_output_path(ap, "--plot", getattr(args, "plot", None))
    _options.check_threads(ap, args.threads)


def demo_args(options: Sequence[str] = ()) -> argparse.Namespace:
    """``fastrnn demo``'s arguments, parsed and checked, for :meth:`DemoTraining.build`.

    Args:
        options: command-line options of ``fastrnn demo`` (``["--hidden", "64"]``), on top of
            its defaults.

    Returns:
        The parsed arguments.

    Raises:
        SystemExit: a bad option (``fastrnn demo``'s usage error, status 2).
    """
    args = _parser().parse_args(["demo", *options])
    _check(args.parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastrnn`` console script and of ``python -m fastrnn``.

    Args:
        argv: the command line after ``fastrnn`` (None: ``sys.argv[1:]``); ``bench`` and
            ``selfcheck`` are forwarded to their own modules.

    Returns:
        The exit status (0; 1 for a failed self-check; 2 for a text too short for the demo).

    Raises:
        SystemExit: ``-h``, ``--version`` (status 0) or a bad argument (a usage error,
            status 2).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from . import bench

        return bench.main(argv[1:], prog="fastrnn bench")
    if argv and argv[0] == "selfcheck":
        from . import selfcheck

        return selfcheck.main(argv[1:], prog="fastrnn selfcheck")
    ap = _parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    _check(args.parser, args)  # errors name the subcommand: "fastrnn demo: error: ..."
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
