"""The bench's charts: ``--replot`` of a saved report of each table, and the recorded runs of
docs/_data/ (what docs/speed.md draws) holding the milliseconds of that page's tables."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from fastrnn.tools import bench, bench_bf16, bench_int8, bench_seq2seq
from helpers import assert_bench_usage_error

DOCS = Path(__file__).resolve().parents[1] / "docs"
DATA = DOCS / "_data"
RECORDED = sorted(DATA.glob("bench-*.json"))
HAS_MPL = importlib.util.find_spec("matplotlib") is not None
needs_mpl = pytest.mark.skipif(not HAS_MPL, reason="the charts need matplotlib")


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _section(title: str) -> str:
    """docs/speed.md from the heading ``title`` to the next section."""
    text = (DOCS / "speed.md").read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _bare_blocks(text: str) -> list[str]:
    """The fenced blocks without an info string (the printed tables), in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    bare = False
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, bare = [], line == "```"
            else:
                if bare:
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _table_ms(lines: list[str]) -> dict[tuple[str, ...], list[str]]:
    """The milliseconds of a printed float32 or bfloat16 table by (shape, cell, pass, thr) and
    variant: the first column and each peer's (those not followed by an x, after %peak)."""
    out: dict[tuple[str, ...], list[str]] = {}
    variant = ""
    for line in lines:
        if m := re.match(r"fastrnn kernel variant (\S+):", line):
            variant = m.group(1)
        f = line.split()
        if len(f) > 7 and re.fullmatch(r"S\d", f[0]) and f[2] in ("fwd", "fwd+bwd"):
            rest = line[line.index("%") + 1 :].split()
            peers = [v for v in rest if not v.endswith("x") and "e-" not in v]
            out[(variant, *f[:4])] = [f[4], *peers]
    return out


def test_every_recorded_run_is_a_report_with_its_provenance() -> None:
    assert {p.name for p in RECORDED} >= {
        "bench-float32.json", "bench-float32-avx2.json", "bench-float32-zen4.json",
        "bench-bfloat16.json", "bench-int8.json", "bench-seq2seq.json",
    }  # fmt: skip
    for path in RECORDED:
        report = json.loads(path.read_text(encoding="utf-8"))
        t = report["transcribed"]
        assert re.fullmatch(r"[0-9a-f]{7}", t["commit"]) and re.fullmatch(
            r"2026-\d\d-\d\d", t["date"]
        )
        assert t["command"].startswith(("python -m fastrnn.bench", "ATEN_CPU_CAPABILITY"))
        assert report["machine"]["cpus"] == 2 and report["machine"]["processor"]
        assert report["runs"] and all(c["ms"] > 0 for r in report["runs"] for c in r["results"]
                                      if c.get("ms") is not None)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "title", "first"),
    [
        ("bench-float32.json", "## By kernel variant", 0),
        ("bench-float32-avx2.json", "## By kernel variant", 1),
        ("bench-float32-zen4.json", "## Earlier full run", 0),
    ],
)
def test_recorded_float32_runs_are_the_tables_of_speed_md(
    name: str, title: str, first: int
) -> None:
    """The table the bench prints from a recorded run has the milliseconds of the table on the
    page (the ratios, GFLOP/s and %peak it recomputes from them may differ in the last digit)."""
    report = _load(name)
    printed = _table_ms(bench.table(report).splitlines())
    block = _bare_blocks(_section(title))[first]
    page = _table_ms(block.splitlines())
    if report["isas"] == [None] or len(report["isas"]) == 1:  # one table: no variant header
        page = {("", *k[1:]): v for k, v in page.items()}
        printed = {("", *k[1:]): v for k, v in printed.items()}
    assert printed == page and len(page) == 60 * len(report["isas"])


def test_recorded_bfloat16_run_is_the_table_of_speed_md() -> None:
    report = _load("bench-bfloat16.json")
    assert report["rows"] == bench_bf16.rows(report)
    printed = bench_bf16.table(report).splitlines()
    block = _bare_blocks(_section("## bfloat16"))[0]
    assert _table_ms(printed) == _table_ms(block.splitlines()) != {}
    assert re.search(r"bfloat16 902 / 1997; float32 141 / 311", "\n".join(printed))


def test_recorded_int8_run_is_the_table_of_speed_md() -> None:
    report = _load("bench-int8.json")
    assert report["rows"] == bench_int8.rows(report)
    page = {}
    for line in _section("## int8").splitlines():
        if re.match(r"\| S\d ", line):
            f = [v.strip() for v in line.strip("|").split("|")]
            page[(f[0], f[1], int(f[2]))] = [*f[3:7], *f[9:11]]
    got = {}
    for r in report["rows"]:
        ms = [r[k] for k in ("fastrnn_int8_ms", "ort_int8_ms", "fastrnn_f32_ms", "ort_f32_ms")]
        devs = [r["fastrnn_int8_max_abs_dev"], r["ort_int8_max_abs_dev"]]
        got[(r["shape"], r["cell"], r["threads"])] = [
            *("-" if v is None else bench._ms(v, 0) for v in ms),
            *("-" if v is None else f"{v:.1e}" for v in devs),
        ]
    assert got == page and len(page) == 24


def test_recorded_seq2seq_run_is_the_table_of_speed_md() -> None:
    report = _load("bench-seq2seq.json")
    assert report["rows"] == bench_seq2seq.rows(report)
    section = _section("## Sequence to sequence")
    rows = [
        line
        for line in bench_seq2seq.table(report).splitlines()
        if line.startswith(("lstm", "gru"))
    ]
    assert len(rows) == 4 and all(line in section for line in rows)


@needs_mpl
@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
def test_replot_draws_each_recorded_run(path: Path, tmp_path: Path, capsys: Any) -> None:
    png = tmp_path / "chart.png"
    assert bench.main(["--replot", str(path), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"the chart of {path}: {png}" in capsys.readouterr().out


@needs_mpl
def test_charts_have_a_panel_per_shape_and_a_bar_per_case() -> None:
    report = _load("bench-float32.json")
    fig = bench.chart_from_json(str(DATA / "bench-float32.json"))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split()[0] for ax in axes] == ["S1", "S2", "S3", "S4", "S5"]
    # 12 cases (3 cells, 2 passes, 2 thread counts) a shape, a bar per peer (torch, ort); ORT
    # has no forward+backward: its bars there are NaN, not drawn
    for ax in axes:
        heights = [p.get_height() for p in ax.patches]
        assert len(heights) == 24 and sum(h == h for h in heights) == 18  # NaN != NaN
    # the x86-64-v3 half: another chart of the same report, its own bars
    v3 = bench.chart(report, isa="x86-64-v3")
    assert "x86-64-v3" in v3.texts[0].get_text()
    assert [p.get_height() for p in v3.axes[0].patches] != [
        p.get_height() for p in fig.axes[0].patches
    ]
    with pytest.raises(ValueError, match="isa: the report has the variants"):
        bench.chart(report, isa="x86-64-v2")
    for name, panels in (
        ("bench-bfloat16.json", 3),
        ("bench-int8.json", 4),
        ("bench-seq2seq.json", 1),
    ):
        fig = bench.chart_from_json(str(DATA / name))
        assert len([ax for ax in fig.axes if ax.get_visible()]) == panels


@needs_mpl
def test_a_bar_is_the_peers_time_over_fastrnns() -> None:
    report = _load("bench-seq2seq.json")
    fig = bench.draw(report)
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    bottoms = [p.get_y() for p in ax.patches]
    tops = [p.get_y() + p.get_height() for p in ax.patches]
    assert bottoms == [1.0] * 4  # drawn from 1: up where fastrnn is faster
    assert tops == pytest.approx([r["torch_ms"] / r["fastrnn_ms"] for r in report["rows"]])


def test_replot_usage_errors(tmp_path: Path, capsys: Any) -> None:
    recorded = str(DATA / "bench-seq2seq.json")
    assert_bench_usage_error(
        ["--replot", recorded], "--replot: give the chart's file with --png FILE", capsys
    )
    missing = str(tmp_path / "none.json")
    assert_bench_usage_error(["--replot", missing, "--png", str(tmp_path / "a.png")],
                             "--replot: no such file", capsys)  # fmt: skip
    assert_bench_usage_error(["--replot", recorded, "--png", str(tmp_path / "no" / "a.png")],
                             "--png: the folder", capsys)  # fmt: skip
    load = tmp_path / "load.json"
    load.write_text(json.dumps({"mode": "under-load", "runs": []}))
    assert_bench_usage_error(["--replot", str(load), "--png", str(tmp_path / "a.png")],
                             "no chart of a 'under-load' report", capsys)  # fmt: skip
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    assert_bench_usage_error(["--replot", str(other), "--png", str(tmp_path / "a.png")],
                             "not a report of the bench's --json", capsys)  # fmt: skip
    assert not (tmp_path / "a.png").exists()
