"""The synthetic tasks: layout of the adding problem and the copy-memory task, their targets,
their baselines (checked empirically / recomputed from the definition); the sequence-to-sequence
tasks (dates read back by an independent parser, digit strings), their alphabets; determinism by
seed and argument checking."""

from __future__ import annotations

import datetime
import itertools
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest

from fastrnn import tasks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [2, 3, 10, 51])
def test_adding_problem_layout(T: int, dtype: Any) -> None:
    n = 500
    x, y = tasks.adding_problem(n, T, seed=1, low=-1.0, high=1.0, dtype=dtype)
    assert x.shape == (T, n, 2) and x.dtype == dtype
    assert y.shape == (n, 1) and y.dtype == dtype
    values, marker = x[..., 0], x[..., 1]
    assert values.min() >= -1 and values.max() < 1
    assert set(np.unique(marker)) <= {0.0, 1.0}
    half = T // 2
    assert (marker[:half].sum(0) == 1).all(), "one marker in the first half"
    assert (marker[half:].sum(0) == 1).all(), "one marker in the second half"
    expected = (values * marker).sum(0, dtype=np.float64)
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6, atol=1e-6)
    # the marker positions cover both halves, not one fixed step
    if T > 3:
        assert len(np.unique(marker[:half].argmax(0))) == half
        assert len(np.unique(marker[half:].argmax(0))) == T - half


def test_adding_values_stay_below_high_in_float32() -> None:
    # [1, 1 + 2**-22) spans two float32 steps: rounding to float32 alone would often give `high`
    low, high = 1.0, 1.0 + 2.0**-22
    x, _ = tasks.adding_problem(1000, 4, seed=0, low=low, high=high)
    assert x[..., 0].min() == low and x[..., 0].max() < np.float32(high)


@pytest.mark.parametrize(("low", "high", "expected"), [(0.0, 1.0, 1 / 6), (-1.0, 1.0, 2 / 3)])
def test_adding_baseline_mse(low: float, high: float, expected: float) -> None:
    baseline = tasks.adding_baseline_mse(low, high)
    assert baseline == pytest.approx(expected)
    _, y = tasks.adding_problem(200_000, 6, seed=2, low=low, high=high, dtype=np.float64)
    mse = float(np.mean((y - y.mean()) ** 2))
    assert mse == pytest.approx(baseline, rel=0.02)


def test_adding_defaults() -> None:
    x, _ = tasks.adding_problem(4, 5, seed=0)
    assert x.dtype == np.float32 and 0 <= x[..., 0].min() and x[..., 0].max() < 1
    assert tasks.adding_baseline_mse() == pytest.approx(1 / 6)


def test_copy_memory_layout() -> None:
    n, T, K, S = 300, 12, 10, 8
    x, y = tasks.copy_memory(n, T, seed=3, num_symbols=S, copy_len=K)
    assert x.shape == y.shape == (T + 2 * K, n)
    assert x.dtype == y.dtype == np.int64
    symbols = x[:K]
    assert symbols.min() == 1 and symbols.max() == S, "symbols are 1..num_symbols, all used"
    assert (x[K : T + K - 1] == 0).all(), "T - 1 blanks after the symbols"
    assert (x[T + K - 1] == S + 1).all(), "then the delimiter"
    assert (x[T + K :] == 0).all(), "then copy_len blanks"
    assert (y[: T + K] == 0).all(), "blank targets until the delimiter included"
    np.testing.assert_array_equal(y[T + K :], symbols)


def test_copy_memory_shortest_delay() -> None:
    x, y = tasks.copy_memory(2, 1, seed=0, num_symbols=3, copy_len=2)
    assert x.shape == (5, 2), "T + 2*copy_len steps: no blank between symbols and delimiter"
    np.testing.assert_array_equal(x[2:], [[4, 4], [0, 0], [0, 0]])
    np.testing.assert_array_equal(y[:3], np.zeros((3, 2)))
    np.testing.assert_array_equal(y[3:], x[:2])


@pytest.mark.parametrize(("T", "S", "K"), [(1, 8, 10), (50, 8, 10), (200, 4, 3), (7, 1, 2)])
def test_copy_memory_baseline(T: int, S: int, K: int) -> None:
    _, y = tasks.copy_memory(64, T, seed=4, num_symbols=S, copy_len=K)
    steps, V = T + 2 * K, S + 2
    # the memoryless predictor: blank with certainty until the delimiter, then uniform symbols
    probs = np.zeros((steps, V))
    probs[: T + K, 0] = 1.0
    probs[T + K :, 1 : S + 1] = 1.0 / S
    p_target = np.take_along_axis(probs, y, axis=1)
    ce = float(np.mean(-np.log(p_target)))
    assert tasks.copy_memory_baseline(T, num_symbols=S, copy_len=K) == pytest.approx(ce)
    assert tasks.copy_memory_baseline(T, S, K) == pytest.approx(K * np.log(S) / steps)


def test_copy_memory_baseline_defaults() -> None:
    assert tasks.copy_memory_baseline(100) == pytest.approx(10 * np.log(8) / 120)


@pytest.mark.parametrize("make", [tasks.adding_problem, tasks.copy_memory])
def test_determinism(make: Any) -> None:
    a = make(16, 20, 7)
    b = make(16, 20, 7)
    c = make(16, 20, 8)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    # a Generator is used as is and advanced
    rng = np.random.default_rng(7)
    first, second = make(16, 20, rng), make(16, 20, rng)
    np.testing.assert_array_equal(first[0], a[0])
    assert not np.array_equal(second[0], a[0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: tasks.adding_problem(4, 1), ValueError, "T: must be >= 2, got 1"),
        (lambda: tasks.adding_problem(0, 5), ValueError, "n: must be >= 1"),
        (lambda: tasks.adding_problem(True, 5), TypeError, "n: expected an int"),
        (lambda: tasks.adding_problem(4, 5.0), TypeError, "T: expected an int, got float"),
        (lambda: tasks.adding_problem(4, 5, seed=-1), ValueError, "seed: must be >= 0"),
        (lambda: tasks.adding_problem(4, 5, seed=True), TypeError, "seed: expected an int"),
        (lambda: tasks.adding_problem(4, 5, seed=1.5), TypeError, "seed: expected an int"),
        (lambda: tasks.adding_problem(4, 5, low=1, high=0), ValueError, "high: must be greater"),
        (lambda: tasks.adding_problem(4, 5, low=np.nan), ValueError, "low: must be finite"),
        (lambda: tasks.adding_problem(4, 5, high="1"), TypeError, "high: expected a real"),
        (lambda: tasks.adding_problem(4, 5, dtype=np.int32), TypeError, "dtype: expected float"),
        (lambda: tasks.adding_problem(4, 5, dtype="nope"), TypeError, "dtype: expected float"),
        (lambda: tasks.adding_baseline_mse(2.0, 2.0), ValueError, "high: must be greater"),
        (lambda: tasks.copy_memory(4, 0), ValueError, "T: must be >= 1, got 0"),
        (lambda: tasks.copy_memory(4, 5, num_symbols=0), ValueError, "num_symbols: must be >= 1"),
        (lambda: tasks.copy_memory(4, 5, copy_len=False), TypeError, "copy_len: expected an int"),
        (lambda: tasks.copy_memory_baseline(0), ValueError, "T: must be >= 1"),
        (lambda: tasks.copy_memory_baseline(5, copy_len=0), ValueError, "copy_len: must be"),
    ],
)
def test_bad_arguments(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_numpy_integers_accepted() -> None:
    x, y = tasks.adding_problem(np.int64(3), np.int32(4), seed=np.uint8(5))
    assert x.shape == (4, 3, 2) and y.shape == (3, 1)
    x, y = tasks.copy_memory(np.int64(2), np.int64(3), copy_len=np.int16(2))
    assert x.shape == y.shape == (7, 2)


# --- sequence-to-sequence tasks ------------------------------------------------------------------
# The dates are read back by a parser written here, independently of fastrnn.tasks: its own
# English names, one regular expression per format (exact case, padding and punctuation), the
# two-digit year rule, the weekday and the ordinal suffix checked against the date.

MONTHS = "January February March April May June July August September October November December"
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"  # date.weekday() order
ORDINALS = (
    "1st 2nd 3rd 4th 5th 6th 7th 8th 9th 10th 11th 12th 13th 14th 15th 16th 17th 18th 19th 20th "
    "21st 22nd 23rd 24th 25th 26th 27th 28th 29th 30th 31st"
).split()
# a named field's group name is the spelling of its case
NAMES = {
    "Month": MONTHS.split(),
    "month": MONTHS.lower().split(),
    "MONTH": MONTHS.upper().split(),
    "Mon": [m[:3] for m in MONTHS.split()],
    "mon": [m[:3].lower() for m in MONTHS.split()],
    "Weekday": WEEKDAYS.split(),
    "wkd": [w[:3].lower() for w in WEEKDAYS.split()],
}
D, DTH, YYYY = r"(?P<d>[1-9]\d?)", r"(?P<d>[1-9]\d?)(?P<th>st|nd|rd|th)", r"(?P<yyyy>\d{4})"
MON, MONTH = r"(?P<Mon>[A-Z][a-z]{2})", r"(?P<Month>[A-Z][a-z]+)"
# the date 2026-11-29 (a Sunday) in every format, as the issue writes them
EXAMPLES = {
    "d Mon yyyy": ("29 Nov 2026", rf"{D} {MON} {YYYY}"),
    "d Month yyyy": ("29 November 2026", rf"{D} {MONTH} {YYYY}"),
    "month d, yyyy": ("november 29, 2026", rf"(?P<month>[a-z]+) {D}, {YYYY}"),
    "Mon d, yyyy": ("Nov 29, 2026", rf"{MON} {D}, {YYYY}"),
    "MONTH d yyyy": ("NOVEMBER 29 2026", rf"(?P<MONTH>[A-Z]+) {D} {YYYY}"),
    "mm/dd/yy": ("11/29/26", r"(?P<mm>\d\d)/(?P<dd>\d\d)/(?P<yy>\d\d)"),
    "d/m/yyyy": ("29/11/2026", rf"{D}/(?P<m>[1-9]\d?)/{YYYY}"),
    "dd.mm.yyyy": ("29.11.2026", rf"(?P<dd>\d\d)\.(?P<mm>\d\d)\.{YYYY}"),
    "yyyy-mm-dd": ("2026-11-29", rf"{YYYY}-(?P<mm>\d\d)-(?P<dd>\d\d)"),
    "d-Mon-yyyy": ("29-Nov-2026", rf"{D}-{MON}-{YYYY}"),
    "wkd d mon yyyy": ("sun 29 nov 2026", rf"(?P<wkd>[a-z]{{3}}) {D} (?P<mon>[a-z]{{3}}) {YYYY}"),
    "Weekday, Month d, yyyy": (
        "Sunday, November 29, 2026",
        rf"(?P<Weekday>[A-Z][a-z]+), {MONTH} {D}, {YYYY}",
    ),
    "Weekday, the dth of Month yyyy": (
        "Sunday, the 29th of November 2026",
        rf"(?P<Weekday>[A-Z][a-z]+), the {DTH} of {MONTH} {YYYY}",
    ),
    "the dth of month, yyyy": (
        "the 29th of november, 2026",
        rf"the {DTH} of (?P<month>[a-z]+), {YYYY}",
    ),
}
PARSERS = {fmt: re.compile(pattern) for fmt, (_, pattern) in EXAMPLES.items()}


def parse(fmt: str, text: str) -> datetime.date:
    """The date ``text`` names in the format ``fmt``; AssertionError if it is not one."""
    m = PARSERS[fmt].fullmatch(text)
    assert m, f"{text!r} is not written in the format {fmt!r}"
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    if "yy" in g:
        yy = int(g["yy"])
        year = 2000 + yy if yy < 50 else 1900 + yy
    else:
        year = int(g["yyyy"])
    month = next(
        (NAMES[k].index(g[k]) + 1 for k in ("Month", "month", "MONTH", "Mon", "mon") if k in g),
        None,
    )
    month = month or int(g.get("mm") or g["m"])
    day = datetime.date(year, month, int(g.get("dd") or g["d"]))
    if "th" in g:
        assert g["d"] + g["th"] == ORDINALS[day.day - 1], text
    for k in ("Weekday", "wkd"):
        if k in g:
            assert g[k] == NAMES[k][day.weekday()], (
                f"{text!r}: {day} is a {WEEKDAYS.split()[day.weekday()]}"
            )
    return day


def all_days(start: datetime.date, end: datetime.date) -> list[datetime.date]:
    return [datetime.date.fromordinal(o) for o in range(start.toordinal(), end.toordinal() + 1)]


def test_date_formats_examples() -> None:
    assert len(tasks.DATE_FORMATS) >= 12 and len(set(tasks.DATE_FORMATS)) == len(tasks.DATE_FORMATS)
    assert set(tasks.DATE_FORMATS) == set(EXAMPLES)
    day = datetime.date(2026, 11, 29)
    for fmt, (example, _) in EXAMPLES.items():
        assert tasks.format_date(day, fmt) == example
        assert parse(fmt, example) == day
    # a datetime is its date, an ISO string the date it names
    assert (
        tasks.format_date(datetime.datetime(2026, 11, 29, 23, 59), "wkd d mon yyyy")
        == "sun 29 nov 2026"
    )
    assert tasks.format_date("2000-01-01", "dd.mm.yyyy") == "01.01.2000"


def test_every_day_in_every_format_reads_back_as_one_date() -> None:
    # every day of 1950..2049 in every format: each string reads back as its date, and no string
    # is written for two different dates (so the target is a function of the source)
    seen: dict[str, datetime.date] = {}
    longest = ""
    for day in all_days(datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)):
        for fmt in tasks.DATE_FORMATS:
            text = tasks.format_date(day, fmt)
            assert parse(fmt, text) == day
            assert seen.setdefault(text, day) == day, f"{text!r} is {seen[text]} and {day}"
            longest = max(longest, text, key=len)
    assert len(longest) == 37 and longest.startswith("Wednesday, the ") and "September" in longest


def test_ordinals_and_weekdays() -> None:
    days = all_days(datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
    written = [tasks.format_date(d, "the dth of month, yyyy") for d in days]
    assert [w.split()[1] for w in written] == ORDINALS
    assert [tasks.format_date(d, "Weekday, Month d, yyyy").split(",")[0] for d in days[:7]] == [
        "Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday",
    ]  # fmt: skip
    # days known from elsewhere
    assert tasks.format_date(datetime.date(1969, 7, 20), "wkd d mon yyyy") == "sun 20 jul 1969"
    assert tasks.format_date(datetime.date(2000, 2, 29), "wkd d mon yyyy") == "tue 29 feb 2000"
    assert tasks.format_date(datetime.date(1950, 1, 1), "Weekday, the dth of Month yyyy") == (
        "Sunday, the 1st of January 1950"
    )


def test_two_digit_year_rule() -> None:
    fmt = "mm/dd/yy"
    assert tasks.format_date(datetime.date(1950, 1, 1), fmt) == "01/01/50"
    assert tasks.format_date(datetime.date(1999, 12, 31), fmt) == "12/31/99"
    assert tasks.format_date(datetime.date(2000, 1, 1), fmt) == "01/01/00"
    assert tasks.format_date(datetime.date(2049, 12, 31), fmt) == "12/31/49"
    for outside in (datetime.date(1949, 12, 31), datetime.date(2050, 1, 1)):
        with pytest.raises(ValueError, match=r"day: the format 'mm/dd/yy' writes a two-digit year"):
            tasks.format_date(outside, fmt)
    with pytest.raises(
        ValueError, match=r"start: the format 'mm/dd/yy' .* 1950..2049 only, got 1949"
    ):
        tasks.dates(5, 0, start="1949-12-31")
    with pytest.raises(
        ValueError, match=r"start: the format 'mm/dd/yy' .* got 1950-01-01..2050-01-01"
    ):
        tasks.dates(5, 0, end=datetime.date(2050, 1, 1))
    # without it, any range: four-digit years
    others = [f for f in tasks.DATE_FORMATS if f != fmt]
    pairs = tasks.dates(500, 0, formats=others, start="1800-01-01", end="1800-12-31")
    assert all(t.startswith("1800-") for t in pairs.targets)
    assert all(parse(k, s).isoformat() == t for s, t, k in zip(*pairs, strict=True))


def test_dates_targets_are_the_sources_dates() -> None:
    n = 20_000
    sources, targets, kinds = tasks.dates(n, seed=0)
    assert len(sources) == len(targets) == len(kinds) == n
    days = [parse(k, s) for s, k in zip(sources, kinds, strict=True)]
    assert [d.isoformat() for d in days] == targets
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", t) for t in targets)
    # every format drawn, about equally often (expected n/14 = 1429 each, sd 37)
    counts = Counter(kinds)
    assert set(counts) == set(tasks.DATE_FORMATS)
    assert max(counts.values()) - min(counts.values()) < 400
    # days drawn across the default range, both ends reached within a week, every weekday and month
    assert min(days) < datetime.date(1950, 1, 8) and max(days) > datetime.date(2049, 12, 24)
    assert min(days) >= datetime.date(1950, 1, 1) and max(days) <= datetime.date(2049, 12, 31)
    assert len({d.weekday() for d in days}) == 7 and len({d.month for d in days}) == 12
    assert len({d.day for d in days}) == 31


def test_dates_formats_and_range() -> None:
    sub = [
        "mm/dd/yy",
        "Weekday, the dth of Month yyyy",
        "mm/dd/yy",
    ]  # a repeat is drawn twice as often
    start, end = datetime.date(2024, 2, 25), datetime.date(2024, 3, 4)
    sources, targets, kinds = tasks.dates(3000, 1, formats=sub, start=start, end=end)
    counts = Counter(kinds)
    assert set(counts) == set(sub) and 1800 < counts["mm/dd/yy"] < 2200
    assert sorted(set(targets)) == [d.isoformat() for d in all_days(start, end)], (
        "every day, leap day too"
    )
    assert all(
        parse(k, s).isoformat() == t for s, t, k in zip(sources, targets, kinds, strict=True)
    )
    # a range of one day; ISO strings and datetimes as bounds
    one = tasks.dates(
        3, 2, formats=("d Mon yyyy",), start="2026-11-29", end=datetime.datetime(2026, 11, 29, 12)
    )
    assert one == (["29 Nov 2026"] * 3, ["2026-11-29"] * 3, ["d Mon yyyy"] * 3)


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_digit_strings(task: str) -> None:
    sources, targets, kinds = tasks.digit_strings(5000, 3, task=task, min_len=2, max_len=7)
    assert kinds == [task] * 5000
    assert {len(s) for s in sources} == set(range(2, 8)), "every length in [min_len, max_len]"
    for s, t in zip(sources, targets, strict=True):
        if task == "reverse":
            assert len(t) == len(s) and all(t[i] == s[len(s) - 1 - i] for i in range(len(s)))
        else:
            assert Counter(t) == Counter(s) and all(a <= b for a, b in itertools.pairwise(t))
    # digits drawn uniformly (22,500 expected, 2,250 each, sd 45), strings independently
    counts = Counter("".join(sources))
    assert (
        set(counts) == set("0123456789")
        and 2000 < min(counts.values()) < max(counts.values()) < 2500
    )
    longest = [s for s in sources if len(s) == 7]
    assert len(set(longest)) > 0.99 * len(longest), "random strings, not a few repeated"
    fixed = tasks.digit_strings(4, 0, task=task, min_len=3, max_len=3)
    assert [len(s) for s in fixed.sources] == [3] * 4
    assert tasks.digit_strings(1, 0).kinds == ["reverse"]


def test_alphabets_cover_the_data() -> None:
    src, tgt = tasks.date_alphabet()
    assert src == "".join(sorted(set(src))) and tgt == "-0123456789"
    sources, targets, _ = tasks.dates(20_000, seed=5)
    # every character the data can hold is listed, and nothing more with the default formats
    assert set("".join(sources)) == set(src)
    assert set("".join(targets)) == set(tgt)
    for fmt in tasks.DATE_FORMATS:
        s, _ = tasks.date_alphabet([fmt])
        written = set("".join(tasks.dates(3000, 6, formats=[fmt]).sources))
        assert written == set(s), fmt
    assert tasks.date_alphabet(["yyyy-mm-dd"]) == ("-0123456789", "-0123456789")
    assert tasks.date_alphabet(["dd.mm.yyyy", "mm/dd/yy"])[0] == "./0123456789"
    assert tasks.digit_alphabet() == ("0123456789", "0123456789")


@pytest.mark.parametrize(
    "make",
    [
        tasks.dates,
        lambda n, seed: tasks.digit_strings(n, seed, task="sort", max_len=20),
    ],
    ids=["dates", "digits"],
)
def test_seq2seq_determinism(make: Any) -> None:
    a, b, c = make(50, 7), make(50, 7), make(50, 8)
    assert a == b and a.sources != c.sources
    rng = np.random.default_rng(7)
    first, second = make(50, rng), make(50, rng)
    assert first == a and second.sources != a.sources


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: tasks.dates(0), ValueError, "n: must be >= 1, got 0"),
        (lambda: tasks.dates(2.0), TypeError, "n: expected an int, got float"),
        (lambda: tasks.dates(2, seed=-1), ValueError, "seed: must be >= 0"),
        (lambda: tasks.dates(2, formats=["d Mon yyyy", "dd/mm/yy"]), ValueError,
         r"formats: unknown date format 'dd/mm/yy'; the formats are \('d Mon yyyy', "),
        (lambda: tasks.dates(2, formats=["D Mon yyyy"]), ValueError, "unknown date format 'D Mon"),
        (lambda: tasks.dates(2, formats="d Mon yyyy"), TypeError, "formats: expected a sequence"),
        (lambda: tasks.dates(2, formats=[]), ValueError, "formats: expected at least one"),
        (lambda: tasks.dates(2, formats=[3]), TypeError, "formats: expected a date format"),
        (lambda: tasks.dates(2, start="2000-02-30"), ValueError, "start: expected an ISO date"),
        (lambda: tasks.dates(2, end=2000), TypeError, "end: expected a date or an ISO date"),
        (lambda: tasks.dates(2, start="2001-01-01", end="2000-12-31"), ValueError,
         "end: must not be before start, got start=2001-01-01, end=2000-12-31"),
        (lambda: tasks.format_date(datetime.date(2000, 1, 1), "iso"), ValueError,
         "fmt: unknown date format 'iso'"),
        (lambda: tasks.format_date(20000101, "dd.mm.yyyy"), TypeError, "day: expected a date"),
        (lambda: tasks.date_alphabet(["nope"]), ValueError, "formats: unknown date format 'nope'"),
        (lambda: tasks.digit_strings(0), ValueError, "n: must be >= 1, got 0"),
        (lambda: tasks.digit_strings(2, task="shuffle"), ValueError,
         r"task: expected one of \('reverse', 'sort'\), got 'shuffle'"),
        (lambda: tasks.digit_strings(2, min_len=0), ValueError, "min_len: must be >= 1, got 0"),
        (lambda: tasks.digit_strings(2, max_len=True), TypeError, "max_len: expected an int"),
        (lambda: tasks.digit_strings(2, min_len=5, max_len=4), ValueError,
         "max_len: must be >= min_len, got min_len=5, max_len=4"),
    ],
)  # fmt: skip
def test_seq2seq_bad_arguments(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_seq2seq_numpy_integers_accepted() -> None:
    assert len(tasks.dates(np.int64(3), np.uint8(1)).sources) == 3
    pairs = tasks.digit_strings(np.int32(2), min_len=np.int64(4), max_len=np.int16(4))
    assert [len(s) for s in pairs.sources] == [4, 4]
