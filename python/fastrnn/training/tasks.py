"""Synthetic tasks generated from a seed, with nothing to download.

Long-range dependency tasks, at any sequence length ``T``, returned time-major (the layout of
fastrnn's layers), each with the loss of the best input-blind predictor, the level a model must
beat to show that it carries information across ``T`` steps:

* :func:`adding_problem` (Hochreiter & Schmidhuber 1997): ``x`` is ``(T, n, 2)``, a random value
  and a marker per step; the target ``(n, 1)`` is the sum of the two marked values. A constant
  prediction scores :func:`adding_baseline_mse`.
* :func:`copy_memory` (Arjovsky et al. 2016): ``copy_len`` symbols, ``T`` steps of waiting, then
  the symbols must be reproduced. A predictor without memory scores :func:`copy_memory_baseline`.

Sequence-to-sequence (transduction) tasks, returned as :class:`Pairs` of plain strings (a
source and its target per example, of differing lengths), with the characters each can write
(:func:`date_alphabet`, :func:`digit_alphabet`) so that a vocabulary can be built without data:

* :func:`dates`: date normalisation, a date written in one of :data:`DATE_FORMATS` (``"Sunday,
  the 29th of November 2026"``, ``"11/29/26"``, ...) to its ISO 8601 form ``"2026-11-29"``;
  :func:`format_date` writes one date in one format.
* :func:`digit_strings`: a string of digits to its reversal or its sorted order.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .._args import as_rng, check_int, check_real, float_dtype

__all__ = [
    "DATE_FORMATS",
    "DIGIT_TASKS",
    "Pairs",
    "adding_baseline_mse",
    "adding_problem",
    "copy_memory",
    "copy_memory_baseline",
    "date_alphabet",
    "dates",
    "digit_alphabet",
    "digit_strings",
    "format_date",
]

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.int64]
#: an int seed, a Generator (advanced by the call) or None (fresh entropy)
Seed = int | np.random.Generator | None


def _interval(low: Any, high: Any) -> tuple[float, float]:
    lo, hi = check_real("low", low), check_real("high", high)
    if not lo < hi:
        raise ValueError(f"high: must be greater than low, got low={lo}, high={hi}")
    return lo, hi


def adding_problem(
    n: int, T: int, seed: Seed = None, *, low: float = 0.0, high: float = 1.0,
    dtype: DTypeLike = np.float32,
) -> tuple[FloatArray, FloatArray]:  # fmt: skip
    """``n`` sequences of the adding problem, of length ``T``.

    Channel 0 of ``x`` holds values drawn uniformly in ``[low, high)``; channel 1 is a marker,
    1.0 at exactly two steps of each sequence, one drawn uniformly in the first half ``[0,
    T//2)`` and one in the second half ``[T//2, T)``, 0.0 elsewhere. ``y`` is the sum of the two
    marked values.

    Args:
        n: the number of sequences (>= 1).
        T: their length (>= 2).
        seed: an int, a ``numpy.random.Generator`` (advanced by the call) or None; the same int
            seed gives the same data.
        low, high: the interval of the values, ``low < high``.
        dtype: float32 or float64.

    Returns:
        ``(x, y)``: ``x (T, n, 2)`` and ``y (n, 1)``, both of ``dtype``.

    Raises:
        TypeError: ``n`` or ``T`` not an int, ``low`` or ``high`` not a real number, ``dtype``
            not float32 or float64.
        ValueError: ``n`` < 1, ``T`` < 2, a negative seed, or not ``low < high`` (both finite).
    """
    n = check_int("n", n, 1)
    T = check_int("T", T, 2)
    lo, hi = _interval(low, high)
    dt = float_dtype("dtype", dtype)
    rng = as_rng(seed)

    values = rng.uniform(lo, hi, (T, n)).astype(dt)
    # rounding to float32 can reach `high`: keep the interval half-open
    np.minimum(values, np.nextafter(np.asarray(hi, dt), np.asarray(lo, dt)), out=values)
    first = rng.integers(0, T // 2, n)
    second = rng.integers(T // 2, T, n)
    cols = np.arange(n)

    x = np.zeros((T, n, 2), dtype=dt)
    x[:, :, 0] = values
    x[first, cols, 1] = 1
    x[second, cols, 1] = 1
    y = (values[first, cols] + values[second, cols])[:, None]
    return x, y


def adding_baseline_mse(low: float = 0.0, high: float = 1.0) -> float:
    """Mean squared error (no 1/2 factor) of the best constant prediction of the adding problem.

    That constant is the mean of the target, and its MSE the target's variance: the sum of two
    independent uniform values on ``[low, high)`` has variance ``2 * (high - low)**2 / 12``
    (0.1667 on [0, 1], 0.6667 on [-1, 1]). A model that solves the task gets well below it.

    Args:
        low, high: the values' interval, as in :func:`adding_problem`.

    Returns:
        The MSE.

    Raises:
        TypeError, ValueError: the interval's, as in :func:`adding_problem`.
    """
    lo, hi = _interval(low, high)
    return 2.0 * (hi - lo) ** 2 / 12.0


def copy_memory(
    n: int, T: int, seed: Seed = None, *, num_symbols: int = 8, copy_len: int = 10
) -> tuple[IntArray, IntArray]:
    """``n`` sequences of the copy-memory task with a delay of ``T`` steps.

    The ids are over a vocabulary of ``num_symbols + 2``: 0 is the blank, ``1..num_symbols`` the
    symbols and ``num_symbols + 1`` the delimiter.

    * Input ``x``: ``copy_len`` symbols drawn uniformly, ``T - 1`` blanks, the delimiter, then
      ``copy_len`` blanks.
    * Target ``y``: blanks for ``T + copy_len`` steps, then the ``copy_len`` symbols of ``x``.

    Args:
        n: the number of sequences (>= 1).
        T: the delay (>= 1).
        seed: as in :func:`adding_problem`.
        num_symbols: the number of distinct symbols (>= 1).
        copy_len: the symbols to remember (>= 1).

    Returns:
        ``(x, y)``: int64 ids, both ``(T + 2*copy_len, n)`` (time-major).

    Raises:
        TypeError: an argument not an int.
        ValueError: an argument < 1, or a negative seed.
    """
    n = check_int("n", n, 1)
    T = check_int("T", T, 1)
    num_symbols = check_int("num_symbols", num_symbols, 1)
    copy_len = check_int("copy_len", copy_len, 1)
    rng = as_rng(seed)

    symbols = rng.integers(1, num_symbols + 1, (copy_len, n), dtype=np.int64)
    x = np.zeros((T + 2 * copy_len, n), dtype=np.int64)
    y = np.zeros_like(x)
    x[:copy_len] = symbols
    x[T + copy_len - 1] = num_symbols + 1
    y[T + copy_len :] = symbols
    return x, y


def copy_memory_baseline(T: int, num_symbols: int = 8, copy_len: int = 10) -> float:
    """Cross-entropy (nats, mean over all ``T + 2*copy_len`` steps) of the memoryless baseline.

    The baseline predicts the blank with certainty until the delimiter has been seen, then a
    uniform guess over the ``num_symbols`` symbols: ``copy_len * log(num_symbols) / (T +
    2*copy_len)``. A model below it remembers something of the symbols.

    Args:
        T, num_symbols, copy_len: as in :func:`copy_memory`.

    Returns:
        The cross-entropy.

    Raises:
        TypeError: an argument not an int.
        ValueError: an argument < 1.
    """
    T = check_int("T", T, 1)
    num_symbols = check_int("num_symbols", num_symbols, 1)
    copy_len = check_int("copy_len", copy_len, 1)
    return copy_len * math.log(num_symbols) / (T + 2 * copy_len)


# --- sequence-to-sequence tasks ------------------------------------------------------------------


class Pairs(NamedTuple):
    """``n`` examples of a sequence-to-sequence task, as three lists of the same length."""

    #: the input strings
    sources: list[str]
    #: the output strings, ``targets[i]`` the translation of ``sources[i]``
    targets: list[str]
    #: what each example is, its format in :func:`dates`, its task in :func:`digit_strings`
    kinds: list[str]


#: The written forms of :func:`dates`, each named by a template (its example is 2026-11-29):
#: ``d``/``dd`` the day (``dd`` zero-padded), ``dth`` the day as an ordinal (``1st``, ``22nd``),
#: ``m``/``mm`` the month's number, ``yy``/``yyyy`` the year, ``month``/``mon`` the month's English
#: name/its first three letters, ``weekday``/``wkd`` the weekday's; the case of a name's field is
#: the case it is written in (``Month`` November, ``month`` november, ``MONTH`` NOVEMBER). A
#: two-digit year ``yy`` stands for 20yy if yy < 50, else 19yy (1950..2049).
DATE_FORMATS: tuple[str, ...] = (
    "d Mon yyyy",  # 29 Nov 2026
    "d Month yyyy",  # 29 November 2026
    "month d, yyyy",  # november 29, 2026
    "Mon d, yyyy",  # Nov 29, 2026
    "MONTH d yyyy",  # NOVEMBER 29 2026
    "mm/dd/yy",  # 11/29/26
    "d/m/yyyy",  # 29/11/2026
    "dd.mm.yyyy",  # 29.11.2026
    "yyyy-mm-dd",  # 2026-11-29
    "d-Mon-yyyy",  # 29-Nov-2026
    "wkd d mon yyyy",  # sun 29 nov 2026
    "Weekday, Month d, yyyy",  # Sunday, November 29, 2026
    "Weekday, the dth of Month yyyy",  # Sunday, the 29th of November 2026
    "the dth of month, yyyy",  # the 29th of november, 2026
)

#: the tasks of :func:`digit_strings`
DIGIT_TASKS: tuple[str, ...] = ("reverse", "sort")

_DIGITS = "0123456789"
# English, written here: strftime's %b/%B/%a/%A follow the locale
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TWO_DIGIT_YEARS = (1950, 2049)  # what ``yy`` can write: yy < 50 is 20yy, else 19yy
_DEFAULT_START = datetime.date(1950, 1, 1)
_DEFAULT_END = datetime.date(2049, 12, 31)


def _ordinal(day: int) -> str:
    """``1st 2nd 3rd 4th ... 11th 12th 13th ... 21st 22nd 23rd ... 31st``."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# a field of a template: how it writes a date, and every character it can write
_Writer = Callable[[datetime.date], str]
_NUMBER_FIELDS: dict[str, tuple[_Writer, str]] = {
    "d": (lambda t: str(t.day), _DIGITS),
    "dd": (lambda t: f"{t.day:02d}", _DIGITS),
    "dth": (lambda t: _ordinal(t.day), _DIGITS + "stndrh"),
    "m": (lambda t: str(t.month), _DIGITS),
    "mm": (lambda t: f"{t.month:02d}", _DIGITS),
    "yy": (lambda t: f"{t.year % 100:02d}", _DIGITS),
    "yyyy": (lambda t: f"{t.year:04d}", _DIGITS),
}
_NAME_FIELDS: dict[str, tuple[_Writer, tuple[str, ...]]] = {
    "month": (lambda t: _MONTHS[t.month - 1], _MONTHS),
    "mon": (lambda t: _MONTHS[t.month - 1][:3], tuple(m[:3] for m in _MONTHS)),
    "weekday": (lambda t: _WEEKDAYS[t.weekday()], _WEEKDAYS),
    "wkd": (lambda t: _WEEKDAYS[t.weekday()][:3], tuple(w[:3] for w in _WEEKDAYS)),
}
# the longest names first; a field is a whole word of the template
_FIELD = re.compile(r"\b((?i:weekday|wkd|month|mon)|dth|dd|d|mm|m|yyyy|yy)\b")
_CASES: tuple[Callable[[str], str], ...] = (str.lower, str.title, str.upper)


class _Template(NamedTuple):
    pieces: tuple[str | _Writer, ...]  # literal text or a field's writer
    chars: frozenset[str]  # every character it can write
    two_digit_year: bool


def _field(word: str) -> tuple[_Writer, str]:
    if word in _NUMBER_FIELDS:
        return _NUMBER_FIELDS[word]
    writer, names = _NAME_FIELDS[word.lower()]
    case = next(f for f in _CASES if f(word) == word)
    return (lambda t: case(writer(t))), "".join(case(name) for name in names)


def _compile(fmt: str) -> _Template:
    pieces: list[str | _Writer] = []
    chars: set[str] = set()
    for i, part in enumerate(_FIELD.split(fmt)):
        if i % 2 == 0:  # the literal text between two fields
            if part:
                pieces.append(part)
            chars.update(part)
        else:
            writer, field_chars = _field(part)
            pieces.append(writer)
            chars.update(field_chars)
    return _Template(tuple(pieces), frozenset(chars), "yy" in _FIELD.findall(fmt))


_TEMPLATES = {fmt: _compile(fmt) for fmt in DATE_FORMATS}


def _render(template: _Template, day: datetime.date) -> str:
    return "".join(p if isinstance(p, str) else p(day) for p in template.pieces)


def _check_format(name: str, fmt: Any) -> _Template:
    if not isinstance(fmt, str):
        raise TypeError(f"{name}: expected a date format (str), got {type(fmt).__name__}")
    if fmt not in _TEMPLATES:
        raise ValueError(f"{name}: unknown date format {fmt!r}; the formats are {DATE_FORMATS}")
    return _TEMPLATES[fmt]


def _check_formats(formats: Sequence[str] | None) -> list[str]:
    if formats is None:
        return list(DATE_FORMATS)
    if isinstance(formats, str) or not isinstance(formats, Sequence):
        raise TypeError(
            f"formats: expected a sequence of date formats, got {type(formats).__name__}"
        )
    if not formats:
        raise ValueError("formats: expected at least one date format, got none")
    for fmt in formats:
        _check_format("formats", fmt)
    return list(formats)


def _check_date(name: str, v: Any) -> datetime.date:
    """``v`` (a ``datetime.date`` or an ISO string ``"YYYY-MM-DD"``) as a date."""
    if isinstance(v, datetime.datetime):
        return v.date()
    if isinstance(v, datetime.date):
        return v
    if isinstance(v, str):
        try:
            return datetime.date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{name}: expected an ISO date 'YYYY-MM-DD', got {v!r}") from None
    raise TypeError(f"{name}: expected a date or an ISO date string, got {type(v).__name__}")


def _check_two_digit_year(name: str, fmt: str, first: datetime.date, last: datetime.date) -> None:
    lo, hi = _TWO_DIGIT_YEARS
    if _TEMPLATES[fmt].two_digit_year and not (lo <= first.year and last.year <= hi):
        span = str(first) if first == last else f"{first}..{last}"
        raise ValueError(
            f"{name}: the format {fmt!r} writes a two-digit year, which stands for a year in "
            f"{lo}..{hi} only, got {span}"
        )


def format_date(day: datetime.date, fmt: str) -> str:
    """``day`` written in the date format ``fmt``: ``format_date(date(2026, 11, 29), "wkd d
    mon yyyy")`` is ``"sun 29 nov 2026"``. Names are English whatever the locale.

    Args:
        day: a ``datetime.date`` (a ``datetime`` counts as its date) or an ISO string
            ``"YYYY-MM-DD"``.
        fmt: one of :data:`DATE_FORMATS`.

    Returns:
        The written date.

    Raises:
        TypeError: ``fmt`` not a string, or ``day`` neither a date nor a string.
        ValueError: an unknown format, a string that is not an ISO date, or a two-digit year
            (``"mm/dd/yy"``) outside 1950..2049, which is what it can stand for.
    """
    template = _check_format("fmt", fmt)
    day = _check_date("day", day)
    _check_two_digit_year("day", fmt, day, day)
    return _render(template, day)


def dates(
    n: int, seed: Seed = None, *, formats: Sequence[str] | None = None,
    start: datetime.date | str = _DEFAULT_START, end: datetime.date | str = _DEFAULT_END,
) -> Pairs:  # fmt: skip
    """``n`` examples of date normalisation: a date written by a human, and its ISO 8601 form.

    Each example draws a day uniformly in ``[start, end]`` (dates or ISO strings, by default
    1950-01-01..2049-12-31) and, independently, a format uniformly from ``formats`` (by default
    all of :data:`DATE_FORMATS`; a name given twice is drawn twice as often). ``sources[i]`` is
    the day written in the format ``kinds[i]`` (:func:`format_date`), ``targets[i]`` the day as
    ``"YYYY-MM-DD"``: ``("Sunday, the 29th of November 2026", "2026-11-29", "Weekday, the dth of
    Month yyyy")``. Every source names one day only: the two-digit year of ``"mm/dd/yy"`` stands
    for 20yy if yy < 50, else 19yy, so with that format the range must lie in 1950..2049.
    Sources are at most 37 characters long (``"Wednesday, the 23rd of September 2026"``),
    targets 10; :func:`date_alphabet` lists their characters.

    Args:
        n: the number of examples (>= 1).
        seed: as in :func:`adding_problem`.
        formats: date formats of :data:`DATE_FORMATS` (at least one), or None for all.
        start, end: the first and last day that can be drawn, dates or ISO strings.

    Returns:
        The :class:`Pairs` ``(sources, targets, kinds)``.

    Raises:
        TypeError: ``n`` not an int, ``formats`` not a sequence of strings, ``start`` or
            ``end`` neither a date nor a string.
        ValueError: ``n`` < 1, an unknown or no format, an ISO string that is not a date,
            ``end`` before ``start``, or a range outside 1950..2049 with ``"mm/dd/yy"``.
    """
    n = check_int("n", n, 1)
    fmts = _check_formats(formats)
    first, last = _check_date("start", start), _check_date("end", end)
    if last < first:
        raise ValueError(f"end: must not be before start, got start={first}, end={last}")
    for fmt in fmts:
        _check_two_digit_year("start", fmt, first, last)
    rng = as_rng(seed)

    days = rng.integers(first.toordinal(), last.toordinal() + 1, n).tolist()
    kinds = [fmts[i] for i in rng.integers(0, len(fmts), n).tolist()]
    sources, targets = [], []
    for ordinal, fmt in zip(days, kinds, strict=True):
        day = datetime.date.fromordinal(ordinal)
        sources.append(_render(_TEMPLATES[fmt], day))
        targets.append(day.isoformat())
    return Pairs(sources, targets, kinds)


def date_alphabet(formats: Sequence[str] | None = None) -> tuple[str, str]:
    """The characters :func:`dates` can write with ``formats``.

    With the default formats and range every one of them occurs in enough data; a narrower range
    may leave some out (the alphabet lists the digits of every year).

    Args:
        formats: as in :func:`dates` (None: all of :data:`DATE_FORMATS`).

    Returns:
        ``(source characters, target characters)``, each a sorted string without repeats.

    Raises:
        TypeError, ValueError: ``formats`` as in :func:`dates`.
    """
    chars = set().union(*(_TEMPLATES[fmt].chars for fmt in _check_formats(formats)))
    return "".join(sorted(chars)), "-" + _DIGITS


def digit_strings(
    n: int, seed: Seed = None, *, task: str = "reverse", min_len: int = 1, max_len: int = 10
) -> Pairs:
    """``n`` strings of digits and their reversal (``task="reverse"``) or their digits in
    ascending order (``task="sort"``).

    Each source has a length drawn uniformly in ``[min_len, max_len]`` and digits drawn
    uniformly; ``"40213"`` becomes ``"31204"`` reversed, ``"01234"`` sorted;
    :func:`digit_alphabet` lists the characters.

    Args:
        n: the number of examples (>= 1).
        seed: as in :func:`adding_problem`.
        task: one of :data:`DIGIT_TASKS`.
        min_len, max_len: the range of the sources' lengths, ``1 <= min_len <= max_len``.

    Returns:
        The :class:`Pairs`; ``kinds`` is ``task`` for every example.

    Raises:
        TypeError: ``n``, ``min_len`` or ``max_len`` not an int.
        ValueError: an unknown ``task``, ``n`` or ``min_len`` < 1, or ``max_len < min_len``.
    """
    n = check_int("n", n, 1)
    if task not in DIGIT_TASKS:
        raise ValueError(f"task: expected one of {DIGIT_TASKS}, got {task!r}")
    min_len = check_int("min_len", min_len, 1)
    max_len = check_int("max_len", max_len, 1)
    if max_len < min_len:
        raise ValueError(f"max_len: must be >= min_len, got min_len={min_len}, max_len={max_len}")
    rng = as_rng(seed)

    lengths = rng.integers(min_len, max_len + 1, n)
    text = (rng.integers(0, 10, int(lengths.sum())) + ord("0")).astype(np.uint8).tobytes()
    ends = np.cumsum(lengths).tolist()
    sources = [text[a:b].decode("ascii") for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    if task == "reverse":
        targets = [s[::-1] for s in sources]
    else:
        targets = ["".join(sorted(s)) for s in sources]
    return Pairs(sources, targets, [task] * n)


def digit_alphabet() -> tuple[str, str]:
    """The characters of :func:`digit_strings`' sources and targets: ``("0123456789",
    "0123456789")``."""
    return _DIGITS, _DIGITS
