"""Character-level text utilities: the built-in corpus, the vocabulary, stateful stream batches,
random windows, temperature sampling and the train/test split."""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastrnn import text

# ------------------------------------------------------------------------------------------------
# corpus
# ------------------------------------------------------------------------------------------------


def test_default_corpus() -> None:
    corpus = text.default_corpus()
    assert 100_000 < len(corpus) <= 1_000_000
    assert corpus == text.default_corpus(), "deterministic"
    assert "def " in corpus and "import " in corpus
    short = text.default_corpus(max_chars=12_345)
    assert len(short) == 12_345 and corpus.startswith(short)
    assert text.default_corpus(max_chars=1) == corpus[0]
    assert list(text._STDLIB_FILES) == sorted(text._STDLIB_FILES)


def test_default_corpus_fallback_to_builtins_docstrings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    corpus = text.default_corpus()
    assert len(corpus) >= 10_000
    assert corpus == text.default_corpus()
    assert len(text.default_corpus(max_chars=500)) == 500
    assert "Return the absolute value of the argument." in corpus  # abs.__doc__

    monkeypatch.setattr(text, "_builtins_docstrings", lambda: "too short")
    with pytest.raises(RuntimeError, match="--text FILE"):
        text.default_corpus()


def test_default_corpus_uses_the_files_that_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "encoder.py").write_text("second\n", encoding="utf-8")
    (tmp_path / "csv.py").write_text("first\n", encoding="utf-8")
    (tmp_path / "typing.py").write_bytes(b"\xff\xfe not utf-8 \xff")
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    assert text.default_corpus() == "first\nsecond\n"


def test_load_text(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("héllo\r\nworld \xff".encode() + b"\xff")
    assert text.load_text(path) == "héllo\nworld \xff\ufffd"
    assert text.load_text(str(path), max_chars=3) == "hél"
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        text.load_text(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError):
        text.load_text(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="max_chars: must be >= 1"):
        text.load_text(path, max_chars=0)


# ------------------------------------------------------------------------------------------------
# vocabulary
# ------------------------------------------------------------------------------------------------


def test_vocab_round_trip() -> None:
    sample = "Hello, wörld!\n\tß → 🐍 and more"
    vocab = text.CharVocab.from_text(sample)
    assert vocab.chars == "".join(sorted(set(sample)))
    assert vocab.size == len(vocab) == len(set(sample))
    ids = vocab.encode(sample)
    assert ids.dtype == np.int64 and ids.shape == (len(sample),)
    assert [vocab.chars[i] for i in ids] == list(sample)
    assert vocab.decode(ids) == sample
    assert vocab.decode(list(ids)) == sample
    assert vocab.decode(ids[3]) == sample[3]
    assert vocab.decode([]) == "" and vocab.encode("").shape == (0,)
    # a vocabulary rebuilt from its chars (a saved model) encodes the same way
    again = text.CharVocab(vocab.chars)
    assert again == vocab and hash(again) == hash(vocab)
    np.testing.assert_array_equal(again.encode(sample), ids)


def test_vocab_keeps_the_given_order() -> None:
    vocab = text.CharVocab("zay")
    np.testing.assert_array_equal(vocab.encode("yaz"), [2, 1, 0])
    assert vocab.decode([0, 2]) == "zy"


def test_vocab_on_the_default_corpus() -> None:
    corpus = text.default_corpus(200_000)
    vocab = text.CharVocab.from_text(corpus)
    assert vocab.decode(vocab.encode(corpus)) == corpus


def test_vocab_unknown_characters() -> None:
    strict = text.CharVocab("abc")
    with pytest.raises(ValueError, match=r"text: the character 'z' \(index 2\)"):
        strict.encode("abzqc")
    lenient = text.CharVocab("abc?", unknown="?")
    np.testing.assert_array_equal(lenient.encode("azb€"), [0, 3, 1, 3])
    assert lenient.decode(lenient.encode("azb€")) == "a?b?"
    added = text.CharVocab.from_text("banana", unknown="_")
    assert added.chars == "_abn" and added.unknown == "_"
    assert added.decode(added.encode("bandana")) == "ban_ana"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: text.CharVocab(""), ValueError, "chars: the vocabulary is empty"),
        (lambda: text.CharVocab("abca"), ValueError, "chars: 'a' occurs more than once"),
        (lambda: text.CharVocab(["a"]), TypeError, "chars: expected a str"),
        (lambda: text.CharVocab("ab", unknown="c"), ValueError, "unknown: 'c' is not one"),
        (lambda: text.CharVocab("ab", unknown="ab"), TypeError, "unknown: expected one char"),
        (lambda: text.CharVocab.from_text(""), ValueError, "text: is empty"),
        (lambda: text.CharVocab("ab").encode(b"ab"), TypeError, "text: expected a str"),
        (lambda: text.CharVocab("ab").decode([0, 2]), ValueError, r"ids: must be in \[0, 2\)"),
        (lambda: text.CharVocab("ab").decode([-1]), ValueError, "ids: must be in"),
        (lambda: text.CharVocab("ab").decode([0.0]), TypeError, "ids: expected integers"),
        (lambda: text.CharVocab("ab").decode([[0]]), ValueError, "ids: expected a scalar"),
    ],
)
def test_vocab_bad_arguments(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------------------------
# batches
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "B", "S"), [(1000, 4, 7), (1003, 5, 10), (64, 8, 7), (63, 8, 3)])
def test_stream_batches_continuity(n: int, B: int, S: int) -> None:
    ids = np.arange(n, dtype=np.int64) * 3 % 1009  # distinct values: positions are recoverable
    batches = list(text.stream_batches(ids, B, S))
    L = n // B
    assert len(batches) == text.num_stream_batches(n, B, S) == (L - 1) // S
    for x, y in batches:
        assert x.shape == y.shape == (S, B) and x.dtype == y.dtype == np.int64
        np.testing.assert_array_equal(x[1:], y[:-1])  # y is x shifted by one
    for b in range(B):
        stream = ids[b * L : (b + 1) * L]
        xs = np.concatenate([x[:, b] for x, _ in batches])
        ys = np.concatenate([y[:, b] for _, y in batches])
        np.testing.assert_array_equal(xs, stream[: len(xs)])  # chunk k+1 continues chunk k
        np.testing.assert_array_equal(ys, stream[1 : len(xs) + 1])
    # the whole stream is used, short of one partial chunk
    assert L - 1 - len(batches) * S < S


def test_stream_batches_too_short_and_dtypes() -> None:
    assert list(text.stream_batches(np.arange(7), 4, 1)) == []  # streams of one id: no target
    assert list(text.stream_batches(np.arange(19), 4, 4)) == []  # streams of 4: a partial chunk
    assert text.num_stream_batches(8, 4, 1) == 1
    assert text.num_stream_batches(7, 4, 1) == 0 and text.num_stream_batches(0, 4, 3) == 0
    ((x, y),) = text.stream_batches(np.arange(8, dtype=np.int16), 4, 1)
    assert x.dtype == np.int64
    np.testing.assert_array_equal(x, [[0, 2, 4, 6]])
    np.testing.assert_array_equal(y, [[1, 3, 5, 7]])


def test_stream_batches_checks_arguments_at_the_call() -> None:
    with pytest.raises(ValueError, match="seq_len: must be >= 1"):
        text.stream_batches(np.arange(10), 2, 0)
    with pytest.raises(TypeError, match="batch_size: expected an int"):
        text.stream_batches(np.arange(10), 2.0, 3)
    with pytest.raises(TypeError, match="ids: expected integers"):
        text.stream_batches(np.zeros(10), 2, 3)
    with pytest.raises(ValueError, match="ids: expected a 1-d array"):
        text.stream_batches(np.zeros((2, 5), np.int64), 2, 3)


def test_random_windows() -> None:
    ids = np.arange(500, dtype=np.int64)
    rng = np.random.default_rng(0)
    x, y = text.random_windows(ids, 64, 20, rng)
    assert x.shape == y.shape == (20, 64) and x.dtype == np.int64
    np.testing.assert_array_equal(np.diff(x, axis=0), 1)  # contiguous windows of ids
    np.testing.assert_array_equal(y, x + 1)
    assert x.min() >= 0 and y.max() <= 499
    assert len(np.unique(x[0])) > 30, "random offsets"
    x2, _ = text.random_windows(ids, 64, 20, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)
    # the shortest text: one possible window, which reaches the last id
    x, y = text.random_windows(ids[:21], 3, 20, rng)
    np.testing.assert_array_equal(y[-1], [20, 20, 20])
    with pytest.raises(ValueError, match="ids: need at least seq_len"):
        text.random_windows(ids[:20], 3, 20, rng)
    with pytest.raises(TypeError, match=r"rng: expected a numpy\.random\.Generator"):
        text.random_windows(ids, 3, 20, 0)  # type: ignore[arg-type]


def test_train_test_split() -> None:
    ids = np.arange(1000)
    train, test = text.train_test_split(ids, 0.1)
    np.testing.assert_array_equal(train, ids[:900])
    np.testing.assert_array_equal(test, ids[900:])
    train, test = text.train_test_split(ids)
    assert len(test) == 100
    with pytest.raises(ValueError, match=r"test_fraction: must be in \(0, 1\)"):
        text.train_test_split(ids, 1.0)
    with pytest.raises(ValueError, match="ids: 3 ids are too few"):
        text.train_test_split(np.arange(3), 0.1)


# ------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------


def test_sample_index_greedy() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([0.5, 2.0, -1.0, 1.9])
    assert text.sample_index(logits, 0, rng) == 1
    assert text.sample_index(logits, 0.0, None) == 1  # type: ignore[arg-type]
    assert all(text.sample_index(logits, 1e-3, rng) == 1 for _ in range(200))
    # huge logits over a tiny temperature: no overflow (warnings are errors here)
    big = np.array([1e300, -1e300, 1e300 * (1 + 1e-15), -np.inf])
    assert text.sample_index(big, 1e-300, rng) == 2
    assert text.sample_index([3.0, -np.inf, 1.0], 1.0, rng) != 1


def test_sample_index_distribution() -> None:
    rng = np.random.default_rng(1)
    logits = np.array([1.0, 2.0, 0.0, 1.5, -1.0])
    for temperature in (1.0, 2.5):
        draws = [text.sample_index(logits, temperature, rng) for _ in range(20_000)]
        freq = np.bincount(draws, minlength=len(logits)) / len(draws)
        p = np.exp(logits / temperature)
        p /= p.sum()
        np.testing.assert_allclose(freq, p, atol=0.02)


@pytest.mark.parametrize(
    ("logits", "temperature", "error", "match"),
    [
        ([1.0, 2.0], -0.5, ValueError, "temperature: must be >= 0, got -0.5"),
        ([1.0, 2.0], float("nan"), ValueError, "temperature: must be finite"),
        ([1.0, 2.0], True, TypeError, "temperature: expected a real"),
        ([], 1.0, ValueError, "logits: expected a non-empty 1-d"),
        ([[1.0, 2.0]], 1.0, ValueError, "logits: expected a non-empty 1-d"),
        ([1.0, np.nan], 1.0, ValueError, "logits: must have no NaN"),
        ([-np.inf, -np.inf], 1.0, ValueError, "logits: must have no NaN"),
    ],
)
def test_sample_index_bad_arguments(
    logits: Any, temperature: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        text.sample_index(logits, temperature, np.random.default_rng(0))
