"""Sequence to sequence: an encoder-decoder of fastrnn's layers, with attention
(:class:`~fastrnn.training.seq2seq.Seq2Seq`).

The many-to-many *transduction* of the notes (a source sequence in, a target sequence of another
length out, e.g. translation)::

    src ids (Ts, B) -> Embedding -> encoder (RNN/LSTM/GRU stack, maybe bidirectional) -> enc_out
                                      | its final state (both directions side by side per layer)
                                      v
    tgt_in ids (Tt, B) -> Embedding -> decoder (same cell and layers, unidirectional) -> dec_out
    context = Attention(query = dec_out, memory = enc_out, the source lengths)
    h~ = tanh(combine([context; dec_out]))          logits = out(h~)   (Tt, B, tgt_vocab_size)

This is Luong et al.'s (2015) placement: each step's score is computed from the decoder's output
at that step, and the context joins after the recurrence (no "input feeding"), so in training
(teacher forcing: the decoder reads the true previous token) the decoder runs over all target
steps in one call of the recurrent kernels and every step attends in one call of the attention
kernel. Bahdanau's additive *score* is offered in the same placement. Without attention
(``attention=None``) ``h~ = tanh(combine(dec_out))``: the same depth, the source reaching the
decoder only through the encoder's final state.

Ids: 0 is :data:`PAD` in both vocabularies; target ids 1 and 2 are :data:`BOS` (the decoder's
first input) and :data:`EOS` (the last target). :class:`Seq2SeqVocab` maps strings to these ids
and makes :class:`Batch` es: time-major padded arrays, ``tgt_in = [BOS, y...]`` and
``tgt_out = [y..., EOS]``. Padding is masked everywhere: the recurrent layers take the lengths,
the attention gives padded source steps weight exactly 0, the loss ignores padded target steps.

Decoding (:meth:`Seq2Seq.greedy`, :meth:`Seq2Seq.beam_search`) runs the decoder one step at a time
for all sources at once, carrying its state, with the memory's projection made once; each
:class:`Hypothesis` has its ids, its log-probability and its attention weights (output steps x
source steps) for inspection.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._args import as_rng, check_bool, check_int, check_lengths, check_real, float_dtype
from ..layers import RecurrentLayer, from_spec
from ..spec import StackSpec
from . import _saved, init, losses, optim
from ._parts import Composite
from .attention import SCORES, Attention, Memory, attention_param_shapes
from .model import _CELLS, _DEFAULT_FORGET_BIAS, StepResult, _checked_forget_bias
from .nn import Embedding, Linear
from .text import CharVocab

__all__ = [
    "ATTENTIONS",
    "BOS",
    "EOS",
    "NUM_SPECIAL",
    "PAD",
    "Batch",
    "Hypothesis",
    "Seq2Seq",
    "Seq2SeqVocab",
    "pad",
]

Array = NDArray[Any]
IntArray = NDArray[np.int64]

#: the padding id of both vocabularies (its embedding row is zero; it is never a target)
PAD = 0
#: the target id the decoder starts from
BOS = 1
#: the target id that ends a target
EOS = 2
#: the target ids that are not characters (a target vocabulary's first ids)
NUM_SPECIAL = 3
#: the ``attention`` values of :class:`Seq2Seq`, None for no attention
ATTENTIONS = (None, *SCORES)


# ---- ids and batches --------------------------------------------------------------------------


def _id_matrix(name: str, a: ArrayLike) -> IntArray:
    """``a`` as time-major ids ``(T, B)``, int64, with at least one step and one sequence."""
    x = np.asarray(a)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer ids, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name}: expected ids of shape (T, B), T, B >= 1, got {x.shape}")
    if x.min() < 0:
        raise ValueError(f"{name}: ids must be >= 0, got {x.min()}")
    return np.ascontiguousarray(x, dtype=np.int64)


def _steps(lengths: IntArray, T: int) -> NDArray[np.bool_]:
    """``(T, B)``: whether step t is within each sequence's length."""
    mask: NDArray[np.bool_] = np.arange(T)[:, None] < lengths[None, :]
    return mask


def _check_no_pad(name: str, ids: IntArray, lengths: IntArray, lengths_name: str) -> None:
    """:data:`PAD` is only padding: never an id within a sequence's length (a ValueError)."""
    t, b = np.nonzero((ids == PAD) & _steps(lengths, ids.shape[0]))
    if len(b):
        raise ValueError(
            f"{name}: PAD ({PAD}) within {lengths_name} (step {t[0]} of sequence {b[0]}): it "
            "is only padding"
        )


@dataclass(frozen=True, eq=False)
class Batch:
    """A padded batch of source and target ids, time-major (what :meth:`Seq2Seq.forward`,
    :meth:`~Seq2Seq.train_step` and :meth:`~Seq2Seq.evaluate` take).

    Attributes:
        src: source ids ``(Ts, B)``, :data:`PAD` beyond each length (and only there).
        src_lengths: ``(B,)``, each in ``[1, Ts]``.
        tgt_in: the decoder's inputs ``(Tt, B)``: ``[BOS, y_1, ..., y_n]``.
        tgt_out: the targets ``(Tt, B)``: ``[y_1, ..., y_n, EOS]``; never :data:`PAD` within
            the lengths.
        tgt_lengths: ``(B,)``, ``n + 1``, each in ``[1, Tt]``.

    The arrays are checked and copied as read-only int64 arrays on construction. What lies
    beyond the lengths is ignored by the model. :meth:`of` makes a batch from id sequences,
    :meth:`Seq2SeqVocab.batch` from strings.

    Raises:
        TypeError: ids or lengths not integers (the field named).
        ValueError: ids not ``(T, B)`` with ``T, B >= 1`` or negative, targets not of one shape
            ``(Tt, B)``, lengths of another shape or out of range, or :data:`PAD` within
            ``src_lengths`` or ``tgt_lengths``.
    """

    src: IntArray
    src_lengths: IntArray
    tgt_in: IntArray
    tgt_out: IntArray
    tgt_lengths: IntArray

    def __post_init__(self) -> None:
        src = _id_matrix("src", self.src)
        Ts, B = src.shape
        tgt_in = _id_matrix("tgt_in", self.tgt_in)
        tgt_out = _id_matrix("tgt_out", self.tgt_out)
        if tgt_in.shape[1] != B or tgt_out.shape != tgt_in.shape:
            raise ValueError(
                f"tgt_in, tgt_out: expected the shape (Tt, {B}) (src's batch), got "
                f"{tgt_in.shape} and {tgt_out.shape}"
            )
        src_lengths = check_lengths("src_lengths", self.src_lengths, Ts, B)
        tgt_lengths = check_lengths("tgt_lengths", self.tgt_lengths, tgt_in.shape[0], B)
        _check_no_pad("src", src, src_lengths, "src_lengths")
        _check_no_pad("tgt_out", tgt_out, tgt_lengths, "tgt_lengths")
        fields = {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out,
                  "tgt_lengths": tgt_lengths}  # fmt: skip
        for name, a in fields.items():
            a = a.copy()  # the batch's own, read-only: not a view of the caller's arrays
            a.flags.writeable = False
            object.__setattr__(self, name, a)

    @property
    def batch_size(self) -> int:
        """``B``."""
        return int(self.src.shape[1])

    @classmethod
    def of(cls, sources: Sequence[ArrayLike], targets: Sequence[ArrayLike]) -> Batch:
        """The batch of id sequences, padded with :data:`PAD`.

        Args:
            sources: 1-d source id sequences, each non-empty, ids >= 1.
            targets: 1-d target id sequences, one per source, ids >= :data:`NUM_SPECIAL`,
                without :data:`BOS` and :data:`EOS` (they are added); may be empty.

        Returns:
            The :class:`Batch`: ``Ts`` the longest source, ``Tt`` the longest target + 1.

        Raises:
            ValueError: not one target per source, no sources, an empty source, a sequence not
                1-d, or an id below its side's first.
            TypeError: ``sources`` not a sequence, or ids not integers.
        """
        if len(sources) != len(targets):
            raise ValueError(
                f"targets: expected one per source ({len(sources)}), got {len(targets)}"
            )
        src, src_lengths = pad(sources, "sources")
        ys = [_id_row(f"targets[{i}]", y, NUM_SPECIAL, empty=True) for i, y in enumerate(targets)]
        tgt_lengths = np.array([len(y) + 1 for y in ys], np.int64)
        Tt, B = int(tgt_lengths.max(initial=1)), len(ys)
        tgt_in = np.full((Tt, B), PAD, np.int64)
        tgt_out = np.full((Tt, B), PAD, np.int64)
        for b, y in enumerate(ys):
            tgt_in[: len(y) + 1, b] = np.concatenate([[BOS], y])
            tgt_out[: len(y) + 1, b] = np.concatenate([y, [EOS]])
        return cls(src, src_lengths, tgt_in, tgt_out, tgt_lengths)


def _id_row(name: str, ids: ArrayLike, low: int, *, empty: bool) -> IntArray:
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of ids, got shape {a.shape}")
    if a.size == 0:
        if not empty:
            raise ValueError(f"{name}: is empty (a source needs at least one id)")
        return np.zeros(0, np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer ids, got dtype {a.dtype}")
    if a.min() < low:
        below = "0 is PAD" if low == 1 else "0, 1, 2 are PAD, BOS, EOS"
        raise ValueError(f"{name}: ids must be >= {low} ({below}), got {a.min()}")
    return a.astype(np.int64)


def pad(sequences: Sequence[ArrayLike], name: str = "sequences") -> tuple[IntArray, IntArray]:
    """Id sequences as one time-major array padded with :data:`PAD` (the source arrays
    :meth:`Seq2Seq.greedy` and :meth:`~Seq2Seq.beam_search` take).

    Args:
        sequences: 1-d integer id sequences, each non-empty, ids >= 1.
        name: the argument's name in error messages.

    Returns:
        ``(ids, lengths)``: int64 ``ids (T, B)``, ``T`` the longest sequence, and
        ``lengths (B,)``.

    Raises:
        TypeError: ``sequences`` not a sequence (a string is not one), or ids not integers.
        ValueError: no sequences, an empty one or not 1-d, or an id < 1.
    """
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Sequence):
        raise TypeError(f"{name}: expected a sequence of id sequences, got {type(sequences)}")
    if not sequences:
        raise ValueError(f"{name}: is empty")
    rows = [_id_row(f"{name}[{i}]", s, 1, empty=False) for i, s in enumerate(sequences)]
    lengths = np.array([len(r) for r in rows], np.int64)
    ids = np.full((int(lengths.max()), len(rows)), PAD, np.int64)
    for b, r in enumerate(rows):
        ids[: len(r), b] = r
    return ids, lengths


class Seq2SeqVocab:
    """The character vocabularies of a :class:`~fastrnn.training.seq2seq.Seq2Seq`: source id
    ``i + 1`` is ``src_chars[i]``, target id ``i + NUM_SPECIAL`` is ``tgt_chars[i]`` (0 is
    :data:`~fastrnn.training.seq2seq.PAD`, 1 :data:`~fastrnn.training.seq2seq.BOS`, 2
    :data:`~fastrnn.training.seq2seq.EOS`). A character not in a vocabulary is a ValueError
    naming it.

    Its model has ``src_vocab_size=vocab.src_size`` and ``tgt_vocab_size=vocab.tgt_size``.

    Args:
        src_chars: the source characters, in id order, each once.
        tgt_chars: the target characters, likewise.

    Attributes:
        src: the source :class:`~fastrnn.training.text.CharVocab` (ids without the offset).
        tgt: the target :class:`~fastrnn.training.text.CharVocab`.

    Raises:
        TypeError: a vocabulary not a string.
        ValueError: an empty vocabulary or a character in it twice (the argument named).
    """

    def __init__(self, src_chars: str, tgt_chars: str) -> None:
        try:
            self.src = CharVocab(src_chars)
        except (TypeError, ValueError) as e:
            raise type(e)(f"src_chars: {e}") from None
        try:
            self.tgt = CharVocab(tgt_chars)
        except (TypeError, ValueError) as e:
            raise type(e)(f"tgt_chars: {e}") from None

    @classmethod
    def from_pairs(cls, sources: Iterable[str], targets: Iterable[str]) -> Seq2SeqVocab:
        """The vocabulary of the sorted unique characters of ``sources`` and of ``targets``
        (strings; neither may be all empty, a ValueError)."""
        src, tgt = "".join(sources), "".join(targets)
        return cls("".join(sorted(set(src))), "".join(sorted(set(tgt))))

    @property
    def src_size(self) -> int:
        """The model's ``src_vocab_size``: the characters and :data:`PAD`."""
        return self.src.size + 1

    @property
    def tgt_size(self) -> int:
        """The model's ``tgt_vocab_size``: the characters, :data:`PAD`, :data:`BOS`, :data:`EOS`."""
        return self.tgt.size + NUM_SPECIAL

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Seq2SeqVocab):
            return NotImplemented
        return (self.src, self.tgt) == (other.src, other.tgt)

    def __hash__(self) -> int:
        return hash((self.src, self.tgt))

    def __repr__(self) -> str:
        return f"Seq2SeqVocab({self.src.chars!r}, {self.tgt.chars!r})"

    def encode_source(self, text: str) -> IntArray:
        """The source ids of ``text``, int64 ``(len(text),)``; a character not in the
        vocabulary is a ValueError."""
        return self.src.encode(text) + 1

    def encode_target(self, text: str) -> IntArray:
        """The target ids of ``text``, int64 ``(len(text),)``, without BOS and EOS; a character
        not in the vocabulary is a ValueError."""
        return self.tgt.encode(text) + NUM_SPECIAL

    def decode_source(self, ids: ArrayLike) -> str:
        """The text of 1-d source ids (each in ``[1, src_size)``, else a ValueError)."""
        return self.src.decode(_id_row("ids", ids, 1, empty=True) - 1)

    def decode_target(self, ids: ArrayLike) -> str:
        """The text of 1-d target ids without BOS and EOS (a :class:`Hypothesis`'s ``ids``;
        each in ``[NUM_SPECIAL, tgt_size)``, else a ValueError)."""
        return self.tgt.decode(_id_row("ids", ids, NUM_SPECIAL, empty=True) - NUM_SPECIAL)

    def sources(self, texts: Sequence[str]) -> tuple[IntArray, IntArray]:
        """Source strings (each non-empty) as the arrays a decoding takes: ``(src (Ts, B),
        src_lengths (B,))`` (:func:`pad`); an unknown character is a ValueError naming the
        string."""
        return pad(self._encoded(texts, "texts", self.encode_source), "texts")

    def batch(self, sources: Sequence[str], targets: Sequence[str]) -> Batch:
        """The :class:`Batch` of source strings (each non-empty) and their target strings
        (:meth:`Batch.of`); an unknown character is a ValueError naming the string."""
        src = self._encoded(sources, "sources", self.encode_source)
        return Batch.of(src, self._encoded(targets, "targets", self.encode_target))

    @staticmethod
    def _encoded(texts: Sequence[str], name: str, encode: Any) -> list[IntArray]:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"{name}: expected a sequence of strings, got {type(texts).__name__}")
        out = []
        for i, t in enumerate(texts):
            try:
                out.append(encode(t))
            except (TypeError, ValueError) as e:
                raise type(e)(f"{name}[{i}]: {e}") from None
        return out

    def translate(
        self,
        model: Seq2Seq,
        texts: Sequence[str],
        *,
        max_len: int,
        beam_size: int = 1,
        length_penalty: float = 0.0,
    ) -> list[str]:
        """``model``'s translations of ``texts``.

        Args:
            model: a :class:`Seq2Seq` of this vocabulary's sizes.
            texts: source strings, each non-empty.
            max_len: the most decoder steps per text (EOS counted).
            beam_size: 1 for :meth:`Seq2Seq.greedy`, more for :meth:`Seq2Seq.beam_search`.
            length_penalty: the beam search's.

        Returns:
            The target strings, one per text.

        Raises:
            ValueError: an unknown character, or the decoding's errors.
        """
        src, lengths = self.sources(texts)
        if beam_size == 1:
            hyps = model.greedy(src, lengths, max_len)
        else:
            hyps = model.beam_search(
                src, lengths, max_len, beam_size, length_penalty=length_penalty
            )
        return [self.decode_target(h.ids) for h in hyps]

    def to_json(self) -> dict[str, str]:
        """``{"src": src_chars, "tgt": tgt_chars}`` (what :meth:`Seq2Seq.save` stores)."""
        return {"src": self.src.chars, "tgt": self.tgt.chars}

    @classmethod
    def from_json(cls, value: Any) -> Seq2SeqVocab:
        """The vocabulary of :meth:`to_json`'s value; anything but such a dict is a
        ValueError (the characters' errors as the constructor's)."""
        if not isinstance(value, dict) or set(value) != {"src", "tgt"}:
            raise ValueError(
                f"expected an object {{'src': chars, 'tgt': chars}}, got {value!r:.80}"
            )
        return cls(value["src"], value["tgt"])


# ---- the model ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Hypothesis:
    """One decoded output of :meth:`Seq2Seq.greedy` or :meth:`Seq2Seq.beam_search`.

    Attributes:
        ids: the output ids, without BOS and EOS (:meth:`Seq2SeqVocab.decode_target`).
        score: its log-probability under the model: the sum of the log-softmax of each output
            id (and of EOS if it ended with one).
        finished: whether it ended with EOS (False: cut at ``max_len`` steps).
        attention: the attention weights ``(len(ids), source length)``: row i is where output
            id i looked; None for a model without attention.
    """

    ids: IntArray
    score: float
    finished: bool
    attention: Array | None


def _checked_config(c: Mapping[str, Any]) -> dict[str, Any]:
    """Seq2Seq's arguments (every key of its constructor), checked and normalised as its config
    holds them: the rules the constructor and :meth:`Seq2Seq.load` share, applied before
    anything is allocated (``dropout``, ``zoneout`` and ``zoneout_cell`` are the recurrent
    layers' to check)."""
    cell, attention, attn_size, seed = c["cell"], c["attention"], c["attn_size"], c["seed"]
    dtype = float_dtype("dtype", c["dtype"])
    if not isinstance(cell, str) or cell not in _CELLS:
        raise ValueError(f"cell: expected one of {sorted(_CELLS)}, got {cell!r}")
    if attention == "none":
        attention = None
    if attention is not None and (not isinstance(attention, str) or attention not in SCORES):
        raise ValueError(f"attention: expected one of {ATTENTIONS}, got {attention!r}")
    if attn_size is not None:
        if attention != "additive":
            raise ValueError(f"attn_size: only for the additive score, got attention={attention!r}")
        attn_size = check_int("attn_size", attn_size, 1)
    return {
        "cell": cell,
        "src_vocab_size": check_int("src_vocab_size", c["src_vocab_size"], 2),
        "tgt_vocab_size": check_int("tgt_vocab_size", c["tgt_vocab_size"], NUM_SPECIAL),
        "embedding_dim": check_int("embedding_dim", c["embedding_dim"], 1),
        "hidden_size": check_int("hidden_size", c["hidden_size"], 1),
        "num_layers": check_int("num_layers", c["num_layers"], 1),
        "bidirectional": check_bool("bidirectional", c["bidirectional"]),
        "attention": attention,
        "attn_size": attn_size,
        "dropout": c["dropout"],
        "zoneout": c["zoneout"],
        "zoneout_cell": c["zoneout_cell"],
        "forget_bias": _checked_forget_bias(c["forget_bias"], cell, dtype),
        "dtype": dtype.name,
        "seed": None if seed is None else check_int("seed", seed, 0),
    }


def _specs(config: Mapping[str, Any]) -> tuple[StackSpec, StackSpec]:
    """The encoder's and the decoder's stacks (the decoder's hidden size is the encoder's
    output size: its initial state is the encoder's final state, directions side by side)."""
    c = config
    enc = StackSpec(_CELLS[c["cell"]], c["embedding_dim"], c["hidden_size"], c["num_layers"],
                    c["bidirectional"], dtype=c["dtype"])  # fmt: skip
    dec = StackSpec(_CELLS[c["cell"]], c["embedding_dim"], enc.output_size, c["num_layers"],
                    False, dtype=c["dtype"])  # fmt: skip
    return enc, dec


def _param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameters of a model of ``config`` by name, and their shapes (those of
    :class:`Embedding`, the stacks' specs, :class:`Attention` and :class:`Linear`; the tests
    hold them to the model's)."""
    c = config
    enc, dec = _specs(c)
    Hd, E = dec.hidden_size, c["embedding_dim"]
    shapes: dict[str, tuple[int, ...]] = {"src_embedding.weight": (c["src_vocab_size"], E)}
    shapes |= {f"encoder.{k}": v for k, v in enc.param_shapes().items()}
    shapes["tgt_embedding.weight"] = (c["tgt_vocab_size"], E)
    shapes |= {f"decoder.{k}": v for k, v in dec.param_shapes().items()}
    if c["attention"] is not None:
        att = attention_param_shapes(c["attention"], Hd, Hd, c["attn_size"])
        shapes |= {f"attention.{k}": v for k, v in att.items()}
    shapes["combine.weight"] = (Hd, 2 * Hd if c["attention"] is not None else Hd)
    shapes["combine.bias"] = (Hd,)
    shapes |= {"out.weight": (c["tgt_vocab_size"], Hd), "out.bias": (c["tgt_vocab_size"],)}
    return shapes


def _check_extra(config: Mapping[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A saved model's ``extra``, whose ``vocab`` (if any) must be a :class:`Seq2SeqVocab`'s
    JSON of the model's sizes; it is returned as the vocabulary."""
    if "vocab" not in extra:
        return extra
    try:
        vocab = Seq2SeqVocab.from_json(extra["vocab"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra['vocab'] is not a Seq2SeqVocab ({e})") from None
    _check_vocab_sizes(vocab, config)
    return {**extra, "vocab": vocab}


def _check_vocab_sizes(vocab: Seq2SeqVocab, config: Mapping[str, Any]) -> None:
    sizes = (vocab.src_size, vocab.tgt_size)
    want = (config["src_vocab_size"], config["tgt_vocab_size"])
    if sizes != want:
        raise ValueError(
            f"extra['vocab'] makes vocabularies of {sizes[0]} and {sizes[1]} ids, the model has "
            f"{want[0]} and {want[1]}"
        )


#: the file of :meth:`Seq2Seq.save` (:mod:`fastrnn.training._saved`)
#: config keys added after files of this format were first written: the value a file without the
#: key stands for (zoneout: those models had none)
_ADDED_KEYS: dict[str, Any] = {"zoneout": 0.0, "zoneout_cell": 0.0}

_FORMAT = _saved.ModelFormat("Seq2Seq", "fastrnn.Seq2Seq/1", _checked_config, _param_shapes,
                             _check_extra, added_keys=_ADDED_KEYS)  # fmt: skip


def _log_softmax(z: Array) -> NDArray[np.float64]:
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    out: NDArray[np.float64] = z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))
    return out


class Seq2Seq(Composite):
    """An encoder-decoder with attention (the module's diagram), trained with teacher forcing.

    Args:
        cell: ``"rnn"`` (tanh), ``"rnn_relu"``, ``"lstm"`` or ``"gru"``, for both stacks.
        src_vocab_size: the source ids, :data:`PAD` included (:attr:`Seq2SeqVocab.src_size`;
            >= 2).
        tgt_vocab_size: the target ids, :data:`PAD`, :data:`BOS` and :data:`EOS` included
            (:attr:`Seq2SeqVocab.tgt_size`; >= 3).
        embedding_dim: the size of both embeddings (their :data:`PAD` row zero).
        hidden_size: the encoder's ``H``; the decoder's is ``H * D`` (``D = 2`` if
            bidirectional), as its initial state is the encoder's final state with the two
            directions side by side per layer (no parameters between them).
        num_layers: of both stacks (the decoder starts from the encoder's state layer by layer).
        bidirectional: the encoder's (the decoder is unidirectional).
        attention: ``"general"`` (default; Luong's ``q^T W h``), ``"dot"`` (``q . h``),
            ``"additive"`` (Bahdanau's score ``v . tanh(W_q q + W_k h)``), or None (no
            attention).
        attn_size: the additive score's hidden size (default: the decoder's hidden size).
        dropout: between the layers of each stack, in training (as the recurrent layers').
        zoneout, zoneout_cell: the zoneout probabilities of both stacks' hidden and (``"lstm"``,
            ``"lnlstm"``) cell states, in ``[0, 1)`` (as the recurrent layers': 0/1 draws in
            training, the expectation when decoding).
        forget_bias: an LSTM's forget-gate bias, in both stacks, set after PyTorch's default
            initialisation by :func:`~fastrnn.training.init.set_forget_bias` (1.0 by default;
            Jozefowicz et al., 2015), as :class:`~fastrnn.training.model.SequenceModel`'s.
            None keeps PyTorch's initialisation. The other cells have no forget gate: for them
            it is None (their :attr:`config` says so), and any other value given is a ValueError.
        dtype: float32 or float64, of every layer.
        seed: an int, a ``numpy.random.Generator`` or None, for every layer (an int seed is
            kept in :attr:`config`, a Generator is not).

    Parameters (:meth:`named_parameters`): ``src_embedding.weight``, ``encoder.*`` and
    ``decoder.*`` (PyTorch's names, e.g. ``encoder.weight_ih_l0_reverse``),
    ``tgt_embedding.weight``, ``attention.*`` (:class:`~fastrnn.training.attention.Attention`'s:
    ``weight`` for general; ``query_weight``, ``key_weight``, ``v`` for additive; none for dot),
    ``combine.weight`` ``(Hd, 2 Hd)`` (``(Hd, Hd)`` without attention), ``combine.bias``,
    ``out.weight`` ``(tgt_vocab_size, Hd)``, ``out.bias``; :meth:`state_dict` and
    :meth:`load_state_dict` use the same names.

    The parts are attributes under the names of the parameters' prefixes.

    Raises:
        TypeError: a size or ``seed`` not an int, ``bidirectional`` not a bool, ``dtype`` not
            float32 or float64, or ``forget_bias`` not a number.
        ValueError: an unknown ``cell`` or ``attention``, a vocabulary smaller than its special
            ids (``src_vocab_size`` < 2, ``tgt_vocab_size`` < 3), another size < 1,
            ``attn_size`` without the additive score, ``dropout`` out of ``[0, 1]``, ``zoneout``
            or ``zoneout_cell`` out of ``[0, 1)`` (``zoneout_cell`` > 0 for a cell without a cell
            state), or a ``forget_bias`` for a cell without a forget gate.
    """

    def __init__(
        self,
        cell: str,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        embedding_dim: int = 32,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        attention: str | None = "general",
        attn_size: int | None = None,
        dropout: float = 0.0,
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        forget_bias: float | None = _DEFAULT_FORGET_BIAS,
        dtype: Any = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        rng = as_rng(seed)  # a Generator is used as is; the config keeps int seeds only
        #: the constructor's arguments as checked (``dtype`` by name, ``dropout`` and the zoneout
        #: probabilities as the layers took them, an int ``seed`` or None): what :meth:`save`
        #: writes
        self.config: dict[str, Any] = _checked_config({
            "cell": cell, "src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size,
            "embedding_dim": embedding_dim, "hidden_size": hidden_size, "num_layers": num_layers,
            "bidirectional": bidirectional, "attention": attention, "attn_size": attn_size,
            "dropout": dropout, "zoneout": zoneout, "zoneout_cell": zoneout_cell,
            "forget_bias": forget_bias, "dtype": dtype,
            "seed": None if isinstance(seed, np.random.Generator) else seed,
        })  # fmt: skip
        c = self.config
        self.dtype = np.dtype(c["dtype"])
        enc, dec = _specs(c)
        Hd, E = dec.hidden_size, c["embedding_dim"]
        r = rng.spawn(7)
        self.src_embedding = Embedding(c["src_vocab_size"], E, PAD, dtype=self.dtype, seed=r[0])
        reg = {"dropout": c["dropout"], "zoneout": c["zoneout"], "zoneout_cell": c["zoneout_cell"]}
        self.encoder: RecurrentLayer = from_spec(enc, **reg, seed=r[1])
        # the layer's rules
        c["dropout"], c["zoneout"] = self.encoder.dropout, self.encoder.zoneout
        c["zoneout_cell"] = self.encoder.zoneout_cell
        self.tgt_embedding = Embedding(c["tgt_vocab_size"], E, PAD, dtype=self.dtype, seed=r[2])
        self.decoder: RecurrentLayer = from_spec(dec, **reg, seed=r[3])
        if c["forget_bias"] is not None:
            for layer in (self.encoder, self.decoder):
                init.set_forget_bias(layer, c["forget_bias"])
        self.attention: Attention | None = None
        if c["attention"] is not None:
            self.attention = Attention(
                c["attention"], Hd, Hd, c["attn_size"], dtype=self.dtype, seed=r[4]
            )
        width = 2 * Hd if self.attention is not None else Hd
        self.combine = Linear(width, Hd, dtype=self.dtype, seed=r[5])
        self.out = Linear(Hd, c["tgt_vocab_size"], dtype=self.dtype, seed=r[6])
        self.training = True
        #: the gradients of the last :meth:`backward`, by dotted name
        self.grads: dict[str, Array] = {}
        self._attended: Array | None = None  # h~ of the last training forward, for backward

    # ---- parameters ---------------------------------------------------------------------------

    def _parts(self) -> list[tuple[str, Any]]:
        parts: list[tuple[str, Any]] = [
            ("src_embedding", self.src_embedding),
            ("encoder", self.encoder),
            ("tgt_embedding", self.tgt_embedding),
            ("decoder", self.decoder),
        ]
        if self.attention is not None:
            parts.append(("attention", self.attention))
        return [*parts, ("combine", self.combine), ("out", self.out)]

    def train(self, mode: bool = True) -> Seq2Seq:
        """Training (default) or inference mode for every layer; returns the model."""
        self.training = bool(mode)
        for _, m in self._parts():
            m.train(mode)
        return self

    def eval(self) -> Seq2Seq:
        """Inference mode: nothing is saved for a backward, no dropout."""
        return self.train(False)

    @property
    def decoder_size(self) -> int:
        """``Hd``: the decoder's hidden size (the encoder's ``hidden_size``, the constructor's
        and :attr:`config`'s, times its directions)."""
        return self.decoder.hidden_size

    # ---- forward / backward ---------------------------------------------------------------------

    def _bridge(self, state: Any) -> Any:
        """The encoder's final state ``(L*D, B, H)`` (LSTM: a tuple) as the decoder's initial
        state ``(L, B, D*H)``: each layer's directions side by side, as in its output."""
        D = 2 if self.encoder.bidirectional else 1
        if isinstance(state, tuple):
            return tuple(self._bridge(s) for s in state)
        if D == 1:
            return state
        LD, B, H = state.shape
        return state.reshape(LD // D, D, B, H).transpose(0, 2, 1, 3).reshape(LD // D, B, D * H)

    def _unbridge(self, dstate: Any) -> Any:
        """The gradient w.r.t. the decoder's initial state as the one w.r.t. the encoder's
        final state (:meth:`_bridge` reversed)."""
        D = 2 if self.encoder.bidirectional else 1
        if isinstance(dstate, tuple):
            return tuple(self._unbridge(s) for s in dstate)
        if D == 1:
            return dstate
        L, B, DH = dstate.shape
        H = DH // D
        return dstate.reshape(L, B, D, H).transpose(0, 2, 1, 3).reshape(L * D, B, H)

    def _encode(self, src: IntArray, src_lengths: IntArray) -> tuple[Array, Any]:
        """``(enc_out (Ts, B, Hd), the decoder's initial state)``."""
        enc_out, state = self.encoder(self.src_embedding(src), None, lengths=src_lengths)
        return enc_out, self._bridge(state)

    def _memory(self, enc_out: Array, src_lengths: IntArray) -> Memory | None:
        return None if self.attention is None else self.attention.memory(enc_out, src_lengths)

    def _head(self, dec_out: Array, memory: Memory | None) -> tuple[Array, Array | None]:
        """``dec_out (T, B, Hd)`` -> ``(logits (T, B, V), attention weights (T, B, Ts) or
        None)``: the attention, ``h~ = tanh(combine([context; dec_out]))`` and the output
        layer."""
        weights = None
        z = dec_out
        if self.attention is not None:
            assert memory is not None
            context, weights = self.attention.attend(dec_out, memory)
            z = np.concatenate([context, dec_out], axis=-1)
        attended = np.tanh(self.combine(z))
        self._attended = attended if self.training else None
        return self.out(attended), weights

    def forward(self, batch: Batch) -> tuple[Array, Array | None]:
        """Teacher forcing: the decoder reads ``batch.tgt_in``; in training mode it saves what
        :meth:`backward` needs.

        Args:
            batch: a :class:`Batch` whose ids are within the model's vocabularies.

        Returns:
            ``(logits, weights)``: ``logits (Tt, B, tgt_vocab_size)`` and the attention weights
            ``(Tt, B, Ts)``, zero over padded source steps and on padded target steps (None
            without attention).

        Raises:
            TypeError: ``batch`` is not a :class:`Batch`.
            ValueError: an id of ``batch`` beyond its vocabulary.
        """
        b = self._checked_batch(batch)
        enc_out, state = self._encode(b.src, b.src_lengths)
        dec_out, _ = self.decoder(self.tgt_embedding(b.tgt_in), state, lengths=b.tgt_lengths)
        logits, weights = self._head(dec_out, self._memory(enc_out, b.src_lengths))
        if weights is not None:
            weights = weights * _steps(b.tgt_lengths, weights.shape[0])[:, :, None]
        return logits, weights

    __call__ = forward

    def _checked_batch(self, batch: Batch) -> Batch:
        if not isinstance(batch, Batch):
            raise TypeError(f"batch: expected a fastrnn.training.seq2seq.Batch, got {type(batch)}")
        for name, ids, size in (
            ("src", batch.src, self.config["src_vocab_size"]),
            ("tgt_in", batch.tgt_in, self.config["tgt_vocab_size"]),
            ("tgt_out", batch.tgt_out, self.config["tgt_vocab_size"]),
        ):
            if ids.max() >= size:
                raise ValueError(f"batch.{name}: ids must be < {size} (the vocabulary's size), "
                                 f"got {ids.max()}")  # fmt: skip
        return batch

    def loss(self, logits: Array, batch: Batch) -> tuple[float, Array]:
        """The cross-entropy of ``logits`` against ``batch.tgt_out``, the mean over the target
        steps within ``tgt_lengths`` (the others ignored).

        Args:
            logits: :meth:`forward`'s, ``(Tt, B, tgt_vocab_size)``.
            batch: the :class:`Batch` they were computed from.

        Returns:
            ``(loss, dL/dlogits)``, the gradient of ``logits``' shape.

        Raises:
            ValueError, TypeError: :func:`~fastrnn.training.losses.cross_entropy`'s (logits of
                another shape than the batch's targets).
        """
        targets = np.where(_steps(batch.tgt_lengths, batch.tgt_out.shape[0]), batch.tgt_out, PAD)
        return losses.cross_entropy(logits, targets, ignore_index=PAD)

    def backward(self, dlogits: ArrayLike) -> dict[str, Array]:
        """Backpropagation for the last training-mode :meth:`forward` (one backward per
        forward): through the output layer, the attention (into both the decoder's outputs and
        the encoder's), the decoder, its initial state into the encoder's final state, the
        encoder and the embeddings.

        Args:
            dlogits: ``dL/dlogits``, ``(Tt, B, tgt_vocab_size)``.

        Returns:
            :attr:`grads`, filled with every parameter's gradient by dotted name.

        Raises:
            RuntimeError: no forward to go back through.
            ValueError: ``dlogits`` of another shape than the logits.
        """
        attended = self._attended
        if attended is None:
            raise RuntimeError("backward: no saved forward (call forward in training mode)")
        self._attended = None
        da = self.out.backward(dlogits)
        dz = self.combine.backward(da * (1 - attended * attended))  # tanh' from its output
        denc = None
        if self.attention is not None:
            Hd = self.decoder_size
            dquery, denc = self.attention.backward(dz[..., :Hd])
            ddec = dz[..., Hd:] + dquery
        else:
            ddec = dz
        demb, dstate = self.decoder.backward(ddec)
        self.tgt_embedding.backward(demb)
        demb, _ = self.encoder.backward(denc, self._unbridge(dstate))
        self.src_embedding.backward(demb)
        self._gather_grads()
        return self.grads

    def train_step(
        self,
        batch: Batch,
        optimizer: optim.Optimizer,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> StepResult:
        """One training step: :meth:`forward` (teacher forcing, training mode), :meth:`loss`,
        :meth:`backward`, clipping and one optimizer update.

        Args:
            batch: a :class:`Batch`.
            optimizer: an :class:`~fastrnn.training.optim.Optimizer` (updates
                :meth:`named_parameters` in place).
            clip_norm: clip the gradients' global norm to it
                (:func:`~fastrnn.training.optim.clip_grad_norm`), or None.
            clip_value: then clamp each gradient value to ``[-clip_value, clip_value]``, or
                None.

        Returns:
            A :class:`~fastrnn.training.model.StepResult`: the loss and the gradient norm before
            clipping (its ``state`` is None).

        Raises:
            TypeError, ValueError: :meth:`forward`'s, the clipping's and the optimizer's.
        """
        self.train()
        logits, _ = self.forward(batch)
        value, dlogits = self.loss(logits, batch)
        self.backward(dlogits)
        norm = self._update(optimizer, clip_norm, clip_value)
        return StepResult(value, norm, None)

    def evaluate(self, batch: Batch) -> float:
        """The loss on ``batch`` (a :class:`Batch`) in inference mode (the mode is restored);
        errors as :meth:`forward`'s.

        Returns:
            The loss, a float.
        """
        was = self.training
        self.eval()
        try:
            logits, _ = self.forward(batch)
            return self.loss(logits, batch)[0]
        finally:
            self.train(was)

    # ---- decoding ---------------------------------------------------------------------------

    def _sources(self, src: ArrayLike, src_lengths: ArrayLike | None) -> tuple[IntArray, IntArray]:
        s = _id_matrix("src", src)
        if s.max() >= self.config["src_vocab_size"]:
            raise ValueError(
                f"src: ids must be < {self.config['src_vocab_size']} (the vocabulary's size), "
                f"got {s.max()}"
            )
        lengths = check_lengths("src_lengths", src_lengths, *s.shape)
        _check_no_pad("src", s, lengths, "src_lengths")
        return s, lengths

    def _step(
        self, tokens: IntArray, state: Any, memory: Memory | None
    ) -> tuple[NDArray[np.float64], Any, Array | None]:
        """One decoder step from ``tokens (N,)``: ``(log-probabilities (N, V) with PAD and BOS
        at -inf, the new state, the attention weights (N, Ts) or None)``. Logits that are not
        finite (e.g. NaN weights) are a ValueError: no output can be chosen from them."""
        dec_out, state = self.decoder(self.tgt_embedding(tokens[None]), state)
        logits, weights = self._head(dec_out, memory)
        if not np.isfinite(logits).all():
            raise ValueError(
                "the model's outputs are not finite (NaN or inf): its logits for "
                f"{int((~np.isfinite(logits)).any(axis=-1).sum())} of {len(tokens)} decoder rows "
                "(check its parameters, e.g. with np.isfinite over named_parameters())"
            )
        logp = _log_softmax(logits[0])
        logp[:, [PAD, BOS]] = -np.inf  # never an output
        return logp, state, None if weights is None else weights[0]

    def greedy(
        self, src: ArrayLike, src_lengths: ArrayLike | None, max_len: int
    ) -> list[Hypothesis]:
        """Greedy decoding: from BOS, each step's most probable id (PAD and BOS excepted) is
        the next input, until EOS or ``max_len`` steps (the EOS counted). All sources run
        together, one step at a time, in inference mode (the mode is restored).

        Args:
            src: source ids ``(Ts, B)`` (:func:`pad`, :meth:`Seq2SeqVocab.sources`), within the
                vocabulary, :data:`PAD` only beyond the lengths.
            src_lengths: ``(B,)``, each in ``[1, Ts]``; None: all ``Ts``.
            max_len: the most decoder steps (>= 1).

        Returns:
            One :class:`Hypothesis` per source.

        Raises:
            TypeError: ids or lengths not integers, ``max_len`` not an int.
            ValueError: ``src`` not ``(Ts, B)``, an id beyond the vocabulary or negative, PAD
                within a length, lengths out of range, ``max_len`` < 1, or outputs that are not
                finite (NaN weights).
        """
        s, lengths = self._sources(src, src_lengths)
        max_len = check_int("max_len", max_len, 1)
        Ts, B = s.shape
        was = self.training
        self.eval()
        try:
            enc_out, state = self._encode(s, lengths)
            memory = self._memory(enc_out, lengths)
            tokens = np.full(B, BOS, np.int64)
            alive = np.ones(B, bool)
            score = np.zeros(B)
            n = np.zeros(B, np.int64)
            ids = np.zeros((max_len, B), np.int64)
            attn = np.zeros((max_len, B, Ts)) if memory is not None else None
            for t in range(max_len):
                logp, state, w = self._step(tokens, state, memory)
                tokens = logp.argmax(axis=1)
                score[alive] += logp[alive, tokens[alive]]
                ids[t] = tokens
                if attn is not None and w is not None:
                    attn[t] = w
                ended = alive & (tokens == EOS)
                n[alive & ~ended] += 1
                alive &= ~ended
                if not alive.any():
                    break
        finally:
            self.train(was)
        return [
            Hypothesis(
                ids[: n[b], b].copy(),
                float(score[b]),
                not alive[b],
                None if attn is None else attn[: n[b], b, : lengths[b]].astype(self.dtype),
            )
            for b in range(B)
        ]

    def beam_search(
        self,
        src: ArrayLike,
        src_lengths: ArrayLike | None,
        max_len: int,
        beam_size: int = 4,
        *,
        length_penalty: float = 0.0,
    ) -> list[Hypothesis]:
        """Beam-search decoding of every source of ``src (Ts, B)``: the best :class:`Hypothesis`
        of each.

        Each source keeps ``beam_size`` live hypotheses; the beams of all sources run together
        (``B * beam_size`` rows, one step at a time, the decoder's states reordered by each
        new hypothesis's parent). At each step the ``2 * beam_size`` best extensions (by
        log-probability, PAD and BOS excepted) are taken: those ending in EOS among the first
        ``beam_size`` are finished hypotheses, the first ``beam_size`` others are the new live
        ones. A source stops when no live hypothesis can beat its best finished one any more
        (log-probabilities only fall), or after ``max_len`` steps (EOS counted), when its live
        hypotheses compete too, unfinished. Hypotheses are ranked by ``score / lp(n)``, ``n``
        the steps they took, ``lp(n) = ((5 + n) / 6) ** length_penalty`` (Wu et al., 2016):
        0 (the default) ranks by log-probability; larger values favour longer outputs.

        ``beam_size=1`` is :meth:`greedy`. A larger beam usually finds a more probable output
        than greedy, but need not: it may drop the greedy one's prefix on the way.

        Args:
            src, src_lengths, max_len: as in :meth:`greedy`.
            beam_size: the live hypotheses per source (>= 1).
            length_penalty: ``alpha`` of ``lp(n)`` (>= 0).

        Returns:
            One :class:`Hypothesis` per source: its best.

        Raises:
            TypeError, ValueError: as :meth:`greedy`, and for a ``beam_size`` < 1 or a negative
                ``length_penalty``.
        """
        s, lengths = self._sources(src, src_lengths)
        max_len = check_int("max_len", max_len, 1)
        k = check_int("beam_size", beam_size, 1)
        alpha = check_real("length_penalty", length_penalty, 0.0)
        was = self.training
        self.eval()
        try:
            enc_out, state = self._encode(s, lengths)
            rows = np.repeat(np.arange(s.shape[1]), k)  # row b*k + j: beam j of source b
            memory = self._memory(enc_out, lengths)  # projected once, for the B sources
            if memory is not None:
                memory = Memory(memory.values[:, rows], memory.keys[:, rows], memory.lengths[rows])
            beams = _Beams(k, lengths, max_len, alpha, s.shape[0] if memory is not None else 0)
            state = _take(state, rows)
            for _ in range(max_len):
                logp, state, w = self._step(beams.tokens, state, memory)
                state = _take(state, beams.advance(logp, w))
                if beams.done.all():
                    break
            return beams.best(self.dtype)
        finally:
            self.train(was)

    # ---- files ------------------------------------------------------------------------------

    def save(
        self,
        path: str | Path,
        optimizer: optim.Optimizer | None = None,
        *,
        vocab: Seq2SeqVocab | None = None,
        **extra: Any,
    ) -> None:
        """Save the model to one ``.npz`` file, for :meth:`load`.

        Args:
            path: the file to write.
            optimizer: its state is saved too (to resume training), or None.
            vocab: the :class:`Seq2SeqVocab` of the model's sizes, or None.
            **extra: JSON values saved with the model.

        Raises:
            TypeError: ``vocab`` not a :class:`Seq2SeqVocab`, or an ``extra`` value JSON cannot
                hold.
            ValueError: ``vocab`` of other sizes than the model's.
            OSError: the file cannot be written.
        """
        if vocab is not None:
            if not isinstance(vocab, Seq2SeqVocab):
                raise TypeError(f"vocab: expected a Seq2SeqVocab, got {type(vocab).__name__}")
            try:
                _check_vocab_sizes(vocab, self.config)
            except ValueError as e:
                raise ValueError(f"vocab: {e}") from None
            extra = {**extra, "vocab": vocab.to_json()}
        _saved.save(path, _FORMAT, self.config, self.named_parameters(), optimizer, extra)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str]
    ) -> tuple[Seq2Seq, optim.Optimizer | None, dict[str, Any]]:
        """A model saved by :meth:`save`.

        The file is read as untrusted input: its header, config and optimizer state, and the
        sizes its config declares against the arrays it holds, are checked before a model of
        those sizes is made; a vocabulary must have the model's sizes.

        Args:
            path: the ``.npz`` file.

        Returns:
            ``(model, optimizer or None, extra)``; ``extra['vocab']`` (if saved) is the
            :class:`Seq2SeqVocab`.

        Raises:
            ValueError: any problem of the file, named.
            OSError: the path cannot be opened.
        """
        return _saved.load(cls, path, _FORMAT)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Seq2Seq({c['cell']!r}, {c['src_vocab_size']}, {c['tgt_vocab_size']}, "
            f"embedding_dim={c['embedding_dim']}, hidden_size={c['hidden_size']}, "
            f"num_layers={c['num_layers']}, bidirectional={c['bidirectional']}, "
            f"attention={c['attention']!r})"
        )


def _take(state: Any, rows: IntArray) -> Any:
    """The state's batch rows ``rows`` (a tuple for LSTM)."""
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


class _Beams:
    """The hypotheses of :meth:`Seq2Seq.beam_search`: ``k`` live ones per source (their scores,
    ids and attention rows), the finished ones, and which sources are done."""

    def __init__(self, k: int, lengths: IntArray, max_len: int, alpha: float, Ts: int) -> None:
        """``k`` beams for each source of ``lengths``; ``Ts``: the source steps of the
        attention weights kept (0: none, a model without attention)."""
        B = len(lengths)
        self.k, self.lengths, self.max_len, self.alpha = k, lengths, max_len, alpha
        self.scores = np.full((B, k), -np.inf)
        self.scores[:, 0] = 0.0  # one live hypothesis (BOS) to start from
        self.seqs = np.zeros((B, k, 0), np.int64)
        self.attn = np.zeros((B, k, 0, Ts)) if Ts else None
        self.tokens = np.full(B * k, BOS, np.int64)
        self.found: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(B)]
        self.best_found = np.full(B, -np.inf)  # each source's best finished rank score
        self.done = np.zeros(B, bool)

    def lp(self, n: int) -> float:
        """The length penalty of ``n`` steps."""
        return float(((5 + n) / 6) ** self.alpha)

    def _keep(self, b: int, j: int, score: float, finished: bool) -> None:
        """Hypothesis ``j`` of source ``b`` (its ids and attention as they are now) as a
        candidate result."""
        n = self.seqs.shape[2]
        attn = None if self.attn is None else self.attn[b, j, :n, : self.lengths[b]]
        h = Hypothesis(self.seqs[b, j].copy(), score, finished, attn)
        rank = score / self.lp(n + finished)
        self.found[b].append((rank, h))
        self.best_found[b] = max(self.best_found[b], rank)

    def advance(self, logp: NDArray[np.float64], weights: Array | None) -> IntArray:
        """One step from the live hypotheses' log-probabilities ``(B*k, V)`` and attention
        weights ``(B*k, Ts)``; the rows (parents) the new live hypotheses continue."""
        B, k = self.scores.shape
        cand = self.scores[:, :, None] + logp.reshape(B, k, -1)
        cand[self.done] = -np.inf
        flat = cand.reshape(B, -1)
        top = np.argsort(-flat, axis=1, kind="stable")[:, : 2 * k]
        top_score = np.take_along_axis(flat, top, axis=1)
        parent, tok = np.divmod(top, logp.shape[1])
        eos = tok == EOS
        for b, j in zip(*np.nonzero(eos[:, :k] & np.isfinite(top_score[:, :k])), strict=True):
            self._keep(b, parent[b, j], float(top_score[b, j]), True)
        cols = np.nonzero(~eos & (np.cumsum(~eos, axis=1) <= k))[1].reshape(B, k)  # k others
        p = np.take_along_axis(parent, cols, axis=1)
        bi = np.arange(B)[:, None]
        self.scores = np.take_along_axis(top_score, cols, axis=1)
        new = np.take_along_axis(tok, cols, axis=1)
        self.seqs = np.concatenate([self.seqs[bi, p], new[:, :, None]], axis=2)
        if self.attn is not None and weights is not None:
            w = weights.reshape(B, k, 1, -1)[bi, p]
            self.attn = np.concatenate([self.attn[bi, p], w], axis=2)
        self.tokens = new.reshape(-1)
        # the best a live hypothesis can still reach: its score only falls, lp only grows
        self.done |= self.best_found >= self.scores.max(axis=1) / self.lp(self.max_len)
        if self.seqs.shape[2] == self.max_len:  # cut: the live ones compete, unfinished
            for b, j in zip(*np.nonzero(~self.done[:, None] & np.isfinite(self.scores)),
                            strict=True):  # fmt: skip
                self._keep(b, j, float(self.scores[b, j]), False)
            self.done[:] = True
        out: IntArray = (bi * k + p).reshape(-1)
        return out

    def best(self, dtype: np.dtype[Any]) -> list[Hypothesis]:
        """Each source's best hypothesis (the first of equals: found earlier)."""
        out = []
        for hyps in self.found:
            h = max(hyps, key=lambda x: x[0])[1]
            a = None if h.attention is None else h.attention.astype(dtype)
            out.append(Hypothesis(h.ids, h.score, h.finished, a))
        return out
