"""Character-level text utilities for a char-RNN: a corpus, a vocabulary, batches and sampling.

* :func:`default_corpus`: text that needs no download (the source of Python's standard library);
  :func:`load_text` reads any UTF-8 file instead.
* :class:`CharVocab`: characters <-> int64 ids.
* :func:`stream_batches`: contiguous chunks for stateful truncated BPTT (the hidden state is
  carried from one batch to the next); :func:`random_windows`: independent random windows.
* :func:`sample_index`: draw the next character from logits with a temperature.
* :func:`encode_indentation` / :func:`decode_indentation`: each line's indentation as one
  character per change of level (:data:`INDENT`, :data:`DEDENT`), as Python's tokenizer sees it,
  instead of runs of spaces.

Id arrays are time-major like fastrnn's layers: a batch is ``x`` of shape ``(seq_len, batch)``
and ``y`` of the same shape holding, at every position, the character that follows ``x``'s.
"""

from __future__ import annotations

import builtins
import inspect
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._args import check_int, check_real

__all__ = [
    "DEDENT",
    "INDENT",
    "CharVocab",
    "decode_indentation",
    "default_corpus",
    "encode_indentation",
    "load_text",
    "num_stream_batches",
    "random_windows",
    "sample_index",
    "stream_batches",
    "train_test_split",
]

IntArray = NDArray[np.int64]

# Pure-Python modules present, as plain files, in every CPython since 3.10 (sorted; ~1 MB in all).
_STDLIB_FILES = (
    "argparse.py",
    "ast.py",
    "bisect.py",
    "calendar.py",
    "collections/__init__.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "enum.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "inspect.py",
    "json/decoder.py",
    "json/encoder.py",
    "random.py",
    "shutil.py",
    "statistics.py",
    "string.py",
    "textwrap.py",
    "typing.py",
)
_MIN_FALLBACK_CHARS = 10_000
#: characters :func:`load_text` reads at a time
_CHUNK = 1 << 20


def _builtins_docstrings() -> str:
    """The docstrings of the ``builtins`` module's public objects, sorted by name."""
    docs = []
    for name in sorted(dir(builtins)):
        doc = None if name.startswith("_") else getattr(getattr(builtins, name), "__doc__", None)
        if isinstance(doc, str) and doc.strip():
            docs.append(inspect.cleandoc(doc) + "\n\n")
    return "".join(docs)


def default_corpus(max_chars: int = 1_000_000) -> str:
    """A built-in training text of at most ``max_chars`` characters, with no download.

    It is the source of a fixed, sorted list of ~20 pure-Python modules of the running Python's
    standard library (argparse, collections, dataclasses, inspect, typing, ...; about 1 MB),
    concatenated in that order and truncated: the same text for a given Python installation, and
    ``default_corpus(m)`` is a prefix of ``default_corpus(m2)`` for ``m <= m2``. Where none of those
    files can be read (some distributions ship only ``.pyc``), the docstrings of the builtins are
    used instead.

    Args:
        max_chars: the most characters returned (>= 1).

    Returns:
        The text.

    Raises:
        TypeError: ``max_chars`` not an int.
        ValueError: ``max_chars`` < 1.
        RuntimeError: no standard-library source is readable and the builtins' docstrings
            have under 10,000 characters: pass a text file (``--text FILE``,
            :func:`load_text`).
    """
    max_chars = check_int("max_chars", max_chars, 1)
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    total = 0
    for name in _STDLIB_FILES:
        if total >= max_chars:
            break
        try:
            part = (root / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(part)
        total += len(part)
    text = "".join(parts)
    if not text:
        text = _builtins_docstrings()
        if len(text) < _MIN_FALLBACK_CHARS:
            raise RuntimeError(
                f"no built-in corpus: the standard library's sources are not readable under "
                f"{root} and the builtins' docstrings have only {len(text)} characters; "
                f"pass a text file instead (--text FILE)"
            )
    return text[:max_chars]


def load_text(path: str | os.PathLike[str], max_chars: int | None = None) -> str:
    """The text of a UTF-8 file: undecodable bytes become U+FFFD, line endings ``\\n``.

    Args:
        path: the file.
        max_chars: the most characters read, or None for all.

    Returns:
        The text.

    Raises:
        ValueError: an empty file, or a binary one (a NUL character, which no text file holds;
            looked for as it reads, so that a device such as /dev/zero is refused at once),
            the file named; ``max_chars`` < 1.
        TypeError: ``max_chars`` not an int or None.
        OSError: the file cannot be opened or read.
    """
    if max_chars is not None:
        max_chars = check_int("max_chars", max_chars, 1)
    parts: list[str] = []
    left = max_chars
    with open(path, encoding="utf-8", errors="replace") as f:
        while left is None or left > 0:
            part = f.read(_CHUNK if left is None else min(_CHUNK, left))
            if "\0" in part:
                raise ValueError(
                    f"path: {os.fspath(path)!r} is not a text file (it holds NUL characters, "
                    "as binary files do); give a UTF-8 text file"
                )
            if not part:
                break
            parts.append(part)
            left = None if left is None else left - len(part)
    if not parts:
        raise ValueError(f"path: {os.fspath(path)!r} is empty, there is no text to learn from")
    return "".join(parts)


def _code_points(text: str) -> NDArray[np.uint32]:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharVocab:
    """A character vocabulary: id ``i`` is the character ``chars[i]``.

    ``CharVocab(chars)`` keeps the given order (to reload a saved model, store ``vocab.chars``);
    :meth:`from_text` takes the sorted unique characters of a text.

    Unknown characters: by default :meth:`encode` raises ValueError naming the first one. With
    ``unknown=c`` (a character of the vocabulary; :meth:`from_text` adds it if the text lacks it)
    every unknown character is encoded as the id of ``c`` instead, and :meth:`decode` gives ``c``
    back: the round trip then replaces unknown characters by ``c``.

    Args:
        chars: the characters, in id order, each once.
        unknown: the character unknown ones are encoded as, one of ``chars``; or None.

    Raises:
        TypeError: ``chars`` not a string, ``unknown`` not one character or None.
        ValueError: ``chars`` empty or with a character twice, or ``unknown`` not in it.
    """

    def __init__(self, chars: str, unknown: str | None = None) -> None:
        if not isinstance(chars, str):
            raise TypeError(f"chars: expected a str, got {type(chars).__name__}")
        if not chars:
            raise ValueError("chars: the vocabulary is empty")
        if len(set(chars)) != len(chars):
            dup = next(c for i, c in enumerate(chars) if c in chars[:i])
            raise ValueError(f"chars: {dup!r} occurs more than once")
        if unknown is not None:
            if not isinstance(unknown, str) or len(unknown) != 1:
                raise TypeError(f"unknown: expected one character or None, got {unknown!r}")
            if unknown not in chars:
                raise ValueError(f"unknown: {unknown!r} is not one of the vocabulary's chars")
        self._chars = chars
        self._unknown = unknown
        self._codes = _code_points(chars)
        self._order = np.argsort(self._codes).astype(np.int64)
        self._sorted_codes = self._codes[self._order]

    @classmethod
    def from_text(cls, text: str, unknown: str | None = None) -> CharVocab:
        """The vocabulary of the sorted unique characters of ``text`` (plus ``unknown``, a
        character, if given).

        Raises:
            TypeError: ``text`` not a string, or ``unknown`` not one character.
            ValueError: ``text`` empty.
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text: is empty")
        chars = set(text) if unknown is None else set(text) | {unknown}
        return cls("".join(sorted(chars)), unknown)

    @property
    def chars(self) -> str:
        """The characters, in id order."""
        return self._chars

    @property
    def unknown(self) -> str | None:
        """The character unknown characters are encoded as, or None (they raise)."""
        return self._unknown

    @property
    def size(self) -> int:
        """The number of characters (ids are ``0 .. size-1``)."""
        return len(self._chars)

    def __len__(self) -> int:
        return len(self._chars)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharVocab):
            return NotImplemented
        return (self._chars, self._unknown) == (other._chars, other._unknown)

    def __hash__(self) -> int:
        return hash((self._chars, self._unknown))

    def __repr__(self) -> str:
        extra = "" if self._unknown is None else f", unknown={self._unknown!r}"
        return f"CharVocab({self._chars!r}{extra})"

    def encode(self, text: str) -> IntArray:
        """The ids of the characters of ``text``, int64 ``(len(text),)``.

        Raises:
            TypeError: ``text`` not a string.
            ValueError: a character not in the vocabulary (the first named), without
                :attr:`unknown`.
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        codes = _code_points(text)
        pos = np.searchsorted(self._sorted_codes, codes)
        np.minimum(pos, self.size - 1, out=pos)
        known = self._sorted_codes[pos] == codes
        ids = self._order[pos]
        if not known.all():
            if self._unknown is None:
                i = int(np.argmin(known))
                raise ValueError(
                    f"text: the character {text[i]!r} (index {i}) is not in the vocabulary"
                )
            ids[~known] = self._chars.index(self._unknown)
        return ids

    def decode(self, ids: ArrayLike) -> str:
        """The text of a 1-d sequence (or a scalar) of ids in ``0 .. size-1``.

        Raises:
            ValueError: ids of 2 or more axes, or out of range.
            TypeError: ids not integers.
        """
        a = np.asarray(ids)
        if a.ndim > 1:
            raise ValueError(f"ids: expected a scalar or a 1-d sequence, got shape {a.shape}")
        if a.size == 0:
            return ""
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"ids: expected integers, got dtype {a.dtype}")
        bad = (a < 0) | (a >= self.size)
        if bad.any():
            raise ValueError(f"ids: must be in [0, {self.size}), got {a.ravel()[bad.ravel()][0]}")
        return str(self._codes[a.ravel()].tobytes().decode("utf-32-le", "surrogatepass"))


def _ids(ids: ArrayLike) -> IntArray:
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError(f"ids: expected a 1-d array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"ids: expected integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def num_stream_batches(n_ids: int, batch_size: int, seq_len: int) -> int:
    """The number of batches :func:`stream_batches` yields for ``n_ids`` ids:
    ``(n_ids // batch_size - 1) // seq_len``, at least 0.

    Raises:
        TypeError: an argument not an int.
        ValueError: ``n_ids`` < 0, or ``batch_size`` or ``seq_len`` < 1.
    """
    n_ids = check_int("n_ids", n_ids, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    return max(0, (n_ids // batch_size - 1) // seq_len)


def stream_batches(
    ids: ArrayLike, batch_size: int, seq_len: int
) -> Iterator[tuple[IntArray, IntArray]]:
    """Consecutive chunks of ``batch_size`` parallel streams, for stateful truncated BPTT.

    ``ids`` is cut into ``batch_size`` contiguous streams of ``len(ids) // batch_size`` ids (the
    remainder is dropped); stream ``b`` is column ``b`` of every batch. Each batch is ``(x, y)``,
    both int64 ``(seq_len, batch_size)``, ``y`` the ids that follow ``x``'s in the stream. Chunk
    ``k + 1`` of a stream starts exactly where chunk ``k`` ended, so the final hidden state of one
    batch is the right initial state of the next. A last, partial chunk is dropped; there are
    :func:`num_stream_batches` batches (none if the text is too short).

    Args:
        ids: 1-d integer ids (e.g. :meth:`CharVocab.encode`'s).
        batch_size: the number of streams (>= 1).
        seq_len: the steps of each chunk (>= 1).

    Returns:
        An iterator of ``(x, y)``, both int64 ``(seq_len, batch_size)``.

    Raises:
        ValueError: ``ids`` not 1-d, ``batch_size`` or ``seq_len`` < 1 (checked at the call,
            not at the first iteration).
        TypeError: ``ids`` not integers, ``batch_size`` or ``seq_len`` not an int.
    """
    a = _ids(ids)
    batch_size = check_int("batch_size", batch_size, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    count = num_stream_batches(a.size, batch_size, seq_len)
    length = a.size // batch_size
    streams = np.ascontiguousarray(a[: batch_size * length].reshape(batch_size, length).T)

    def chunks() -> Iterator[tuple[IntArray, IntArray]]:
        for k in range(count):
            t = k * seq_len
            yield streams[t : t + seq_len].copy(), streams[t + 1 : t + seq_len + 1].copy()

    return chunks()


def random_windows(
    ids: ArrayLike, batch_size: int, seq_len: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """``batch_size`` windows of ``seq_len`` ids at independent uniform random offsets.

    Args:
        ids: 1-d integer ids, at least ``seq_len + 1``.
        batch_size: the number of windows (>= 1).
        seq_len: the steps of each (>= 1).
        rng: a ``numpy.random.Generator`` (``np.random.default_rng(seed)``), advanced by the
            call.

    Returns:
        ``(x, y)``, both int64 ``(seq_len, batch_size)``, ``y`` the ids that follow ``x``'s.

    Raises:
        ValueError: ``ids`` not 1-d or too short, ``batch_size`` or ``seq_len`` < 1.
        TypeError: ``ids`` not integers, a size not an int, ``rng`` not a Generator.
    """
    a = _ids(ids)
    batch_size = check_int("batch_size", batch_size, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if a.size < seq_len + 1:
        raise ValueError(f"ids: need at least seq_len + 1 = {seq_len + 1} ids, got {a.size}")
    starts = rng.integers(0, a.size - seq_len, batch_size)
    idx = starts + np.arange(seq_len)[:, None]
    return a[idx], a[idx + 1]


def sample_index(logits: ArrayLike, temperature: float, rng: np.random.Generator) -> int:
    """An index drawn from ``softmax(logits / temperature)``.

    ``temperature`` 0 gives the argmax (greedy decoding; ``rng`` is then not used), 1 the model's
    own distribution; lower values sharpen it, higher flatten it. Computed without overflow for
    any finite logits and temperature; logits of ``-inf`` (masked entries) are never drawn.

    Args:
        logits: ``(C,)``, at least one finite, none NaN or ``+inf``.
        temperature: >= 0.
        rng: a ``numpy.random.Generator``, advanced by the call (unused at temperature 0).

    Returns:
        The index, in ``[0, C)``.

    Raises:
        ValueError: ``logits`` empty, not 1-d, with NaN or ``+inf`` or no finite value; a
            negative or non-finite ``temperature``.
        TypeError: ``temperature`` not a real number, ``rng`` not a Generator.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"logits: expected a non-empty 1-d array, got shape {z.shape}")
    temperature = check_real("temperature", temperature)
    if temperature < 0:
        raise ValueError(f"temperature: must be >= 0, got {temperature}")
    top = z.max()
    if not np.isfinite(top):
        raise ValueError("logits: must have no NaN or +inf and at least one finite value")
    if temperature == 0:
        return int(np.argmax(z))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    with np.errstate(over="ignore"):  # (z - top) / tiny temperature -> -inf, whose exp is 0
        p = np.exp((z - top) / temperature)
    return int(rng.choice(z.size, p=p / p.sum()))


def train_test_split(ids: ArrayLike, test_fraction: float = 0.1) -> tuple[IntArray, IntArray]:
    """A contiguous split: the first ids for training, the last ``test_fraction`` for testing.

    Contiguous, not shuffled, so that the test text is unseen text, as it would be for a
    held-out document.

    Args:
        ids: 1-d integer ids.
        test_fraction: the fraction for testing, in ``(0, 1)`` (rounded to whole ids).

    Returns:
        ``(train, test)``, both non-empty 1-d int64 arrays.

    Raises:
        ValueError: ``ids`` not 1-d, ``test_fraction`` out of ``(0, 1)``, or too few ids for
            both parts to be non-empty.
        TypeError: ``ids`` not integers, ``test_fraction`` not a real number.
    """
    a = _ids(ids)
    f = check_real("test_fraction", test_fraction)
    if not 0 < f < 1:
        raise ValueError(f"test_fraction: must be in (0, 1), got {f}")
    n_test = round(a.size * f)
    if not 0 < n_test < a.size:
        raise ValueError(f"ids: {a.size} ids are too few to split with test_fraction={f}")
    return a[: a.size - n_test], a[a.size - n_test :]


INDENT = "\ue000"  #: one level deeper (a code point of Unicode's private use area)
DEDENT = "\ue001"  #: one level shallower


def encode_indentation(text: str, width: int = 4) -> str:
    """``text`` with each line's indentation written as its change of level.

    A line's leading spaces make ``n // width`` levels and ``n % width`` spaces kept as they are;
    the line then starts with one :data:`INDENT` per level deeper than the previous non-blank
    line, or one :data:`DEDENT` per level shallower, followed by the kept spaces and the rest of
    the line. Blank lines (spaces only) become empty and change no level. Other whitespace is
    kept. :func:`decode_indentation` gives the text back (blank lines empty).

    Why: in indented code a run of spaces is more often followed by another space than by any
    other single character (in the built-in corpus, after 2 to 60 spaces the next one is a space
    with probability 0.51 to 0.97), so sampling at a low temperature, which favours the likeliest
    character at every step, indents deeper forever. Level changes are single, rarer characters.

    Args:
        text: the text.
        width: the spaces of one level (>= 1).

    Returns:
        The encoded text.

    Raises:
        TypeError: ``text`` not a string, ``width`` not an int.
        ValueError: ``text`` already holds INDENT or DEDENT, or ``width`` < 1.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    width = check_int("width", width, 1)
    if INDENT in text or DEDENT in text:
        raise ValueError("text: already holds the INDENT or DEDENT character")
    out, level = [], 0
    for line in text.split("\n"):
        body = line.lstrip(" ")
        if not body:
            out.append("")
            continue
        new, kept = divmod(len(line) - len(body), width)
        marks = INDENT * (new - level) if new >= level else DEDENT * (level - new)
        out.append(marks + " " * kept + body)
        level = new
    return "\n".join(out)


def decode_indentation(text: str, width: int = 4) -> str:
    """The inverse of :func:`encode_indentation`: each line's INDENT and DEDENT characters
    (at its start) move the level, which becomes ``width`` spaces per level. The level never
    goes below 0; INDENT or DEDENT elsewhere in a line (a model's sample may put them there) are
    dropped, and a line of markers only is blank.

    Args:
        text: an encoded text.
        width: the spaces of one level (>= 1).

    Returns:
        The text with spaces.

    Raises:
        TypeError: ``text`` not a string, ``width`` not an int.
        ValueError: ``width`` < 1.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    width = check_int("width", width, 1)
    out, level = [], 0
    for line in text.split("\n"):
        body = line.lstrip(INDENT + DEDENT)
        for mark in line[: len(line) - len(body)]:
            level = level + 1 if mark == INDENT else max(level - 1, 0)
        body = body.replace(INDENT, "").replace(DEDENT, "")
        out.append(" " * (width * level) + body if body else "")
    return "\n".join(out)
