"""``python -m fastrnn.bench --compute-dtype bfloat16``: bfloat16 compute, fastrnn against PyTorch's
autocast.

For each shape (default S1 S2 S4), cell and thread count, forward (inference) and
forward+backward (the input gradient included; dL/dy a fixed float32 array):

* fastrnn bf16: the layer made with ``compute_dtype="bfloat16"`` (float32 weights, input and
  output; the products in bfloat16 with float32 accumulation);
* torch bf16: ``torch.nn``'s float32 module on the float32 input inside
  ``torch.autocast("cpu", dtype=torch.bfloat16)``, the backward of its output with dL/dy cast to
  the output's dtype (autocast returns bfloat16 from LSTM and RNN, float32 from GRU);
* fastrnn f32: the same fastrnn layer in float32, for reference.

Each thread count begins with a torch process timing the GEMM peaks (``torch.matmul`` of 2048^3
matrices, bfloat16 and float32; where the CPU has AMX, oneDNN runs the bfloat16 one on it, and a
second process times it again with oneDNN kept to AVX512_BF16, for information); then, shape by
shape, fastrnn runs in a process of its own (each case in bfloat16, then at once in float32) and
torch in another, so that the compared timings are minutes apart at most. Every median is of at
least --repeat runs, and of 0.25 s of runs for short calls, within about --budget seconds. The
table: milliseconds, fastrnn bf16's GFLOP/s (forward 2*T*B*G*H*(I+H), forward+backward 3x) and
its fraction of the bfloat16 GEMM peak, its speed-up over torch bf16 and over its own float32
(> 1: fastrnn bf16 faster), and each forward's largest difference from the same layer's float32
output; under it, issue 20's speed targets, met or not. A fastrnn without ``compute_dtype`` (or
one that refuses it) shows n/a in its bf16 columns, with the reason under the table."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from . import _options
from . import bench as _b

#: the peers of the bfloat16 tables (the others have no bfloat16)
PEERS = ("fastrnn", "torch")
PEAK_N = 2048  # the GEMM peak: n x n times n x n
DTYPES = ("bfloat16", "float32")  # the fastrnn process times each case in both, in this order
# where the CPU has AMX, oneDNN's bfloat16 GEMM runs on it (several times the AVX512_BF16 rate):
# the peak is then also timed with oneDNN kept to AVX512_BF16 (vdpbf16ps), in a process of its own
NO_AMX_ISA = "AVX512_CORE_BF16"
NO_AMX = "bfloat16_no_amx"


class Unavailable(Exception):
    """A case this peer cannot run (fastrnn without ``compute_dtype="bfloat16"``): n/a."""


# ------------------------------------------------------------------------------------ workers


def _fastrnn_layer(d: _b._Inputs, compute_dtype: str) -> Any:
    """The fastrnn layer of a case (seed 0) computing in ``compute_dtype``; Unavailable if this
    fastrnn has no such compute precision."""
    import fastrnn

    _, _, I, H = d.shape
    cls = getattr(fastrnn, d.layer)
    if compute_dtype == "float32":
        return cls(I, H, seed=0)
    try:
        return cls(I, H, seed=0, compute_dtype=compute_dtype)
    except (TypeError, ValueError, NotImplementedError) as e:
        raise Unavailable(f"fastrnn.{d.layer}(..., compute_dtype={compute_dtype!r}): "
                          f"{type(e).__name__}: {e}") from e  # fmt: skip


def _fastrnn_case(d: _b._Inputs, forward: bool, compute_dtype: str) -> Any:
    return _b._fastrnn_case(d, forward, _fastrnn_layer(d, compute_dtype))


def _torch_module(d: _b._Inputs) -> tuple[Any, Any, Any]:
    """torch.nn's float32 module of a case, the input and the initial states as tensors."""
    import torch

    _, _, I, H = d.shape
    torch.manual_seed(0)
    tm = getattr(torch.nn, d.layer)(I, H)
    thx: Any = None
    if d.h0 is not None:
        ht, ct = torch.from_numpy(d.h0), torch.from_numpy(d.c0)
        thx = (ht, ct) if d.cell == "lstm" else ht
    return tm, torch.from_numpy(d.x), thx


def _torch_case(d: _b._Inputs, forward: bool) -> Any:
    """torch.nn's float32 module under bfloat16 autocast, inference mode for the forward."""
    import torch

    tm, xt, thx = _torch_module(d)

    def autocast() -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16)

    if forward:

        def fwd() -> Any:
            with torch.inference_mode(), autocast():
                return tm(xt, thx)

        return fwd
    xg = xt.clone().requires_grad_(True)
    dys: dict[Any, Any] = {}  # dL/dy in the output's dtype, cast once

    def tstep() -> Any:
        xg.grad = None
        with autocast():
            y, _ = tm(xg, thx)
        if y.dtype not in dys:
            dys[y.dtype] = torch.from_numpy(d.dy).to(y.dtype)
        y.backward(dys[y.dtype])
        return xg.grad

    return tstep


def _deviation(peer: str, d: _b._Inputs) -> float:
    """The largest |bfloat16 - float32| of the forward's output, the same weights both ways."""
    if peer == "fastrnn":
        m = _fastrnn_layer(d, "bfloat16").eval()
        m32 = _fastrnn_layer(d, "float32").eval()
        m32.load_state_dict(m.state_dict())
        y, y32 = m(d.x, d.hx)[0], m32(d.x, d.hx)[0]
        return float(np.max(np.abs(np.asarray(y, np.float64) - y32)))
    import torch

    tm, xt, thx = _torch_module(d)
    with torch.inference_mode():
        y32 = tm(xt, thx)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = tm(xt, thx)[0]
        return float((y.double() - y32.double()).abs().max())


def _case(peer: str, case: dict[str, Any]) -> Any:
    """A case's callable (Unavailable: n/a), with its inputs as the float32 bench draws them."""
    d = _b._Inputs.draw(case["cell"], tuple(case["shape"]), case["shape_name"] in _b.WITH_STATES)
    forward = case["passes"] == "forward"
    if peer == "fastrnn":
        return _fastrnn_case(d, forward, case["compute_dtype"])
    if peer == "torch" and case["compute_dtype"] == "bfloat16":
        return _torch_case(d, forward)
    raise ValueError(f"{peer} in {case['compute_dtype']}: not a case of the bfloat16 tables")


def _torch_peaks(repeat: int, names: tuple[str, ...] = DTYPES) -> dict[str, float]:
    """GFLOP/s of torch.matmul on PEAK_N^3 in these dtypes (median of the runs)."""
    import torch

    n = PEAK_N
    out = {}
    for name in names:
        dtype = getattr(torch, name)
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
        c = torch.empty(n, n, dtype=dtype)
        secs = _b._time(lambda a=a, b=b, c=c: torch.mm(a, b, out=c), repeat, 3.0)
        out[name] = 2.0 * n**3 / secs / 1e9
    return out


def _time_case(peer: str, case: dict[str, Any], repeat: int, budget: float) -> dict[str, Any]:
    """One case's result: its median ms and runs, and for a bfloat16 forward the deviation from
    float32; or why it is n/a."""
    try:
        fn = _case(peer, case)
        secs, n = _b._time_runs(fn, repeat, budget)
    except Unavailable as e:
        return {**case, "na": str(e)}
    except NotImplementedError as e:  # accepted by the constructor, refused by the call
        return {**case, "na": f"{type(e).__name__}: {e}"}
    out = {**case, "ms": secs * 1e3, "n": n}
    if case["passes"] == "forward" and case["compute_dtype"] == "bfloat16":
        d = _b._Inputs.draw(case["cell"], tuple(case["shape"]),
                            case["shape_name"] in _b.WITH_STATES)  # fmt: skip
        out["max_abs_dev"] = _deviation(peer, d)
    return out


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """A bfloat16 worker process (``spec["mode"] == "bfloat16"``): the GEMM peaks (torch, with
    ``spec["peaks"]``) and the cases, with the thread count of the spec."""
    peer = spec["peer"]
    if spec.get("no_amx"):  # read by oneDNN when torch first uses it (in worker_start)
        os.environ["ONEDNN_MAX_CPU_ISA"] = NO_AMX_ISA
    out = _b.worker_start(spec, "bfloat16")
    if spec.get("no_amx"):  # a torch worker
        out["peaks"] = {NO_AMX: _torch_peaks(spec["repeat"], ("bfloat16",))["bfloat16"]}
        return out
    if spec.get("peaks"):
        out["peaks"] = _torch_peaks(spec["repeat"])
    for case in spec["cases"]:
        out["results"].append(_time_case(peer, case, spec["repeat"], spec["budget"]))
    return out


# ------------------------------------------------------------------------------------ the run


def _cases(peer: str, shape: str, cells: list[str]) -> list[dict[str, Any]]:
    """A peer's cases of one shape: fastrnn each in bfloat16 then float32, torch in bfloat16."""
    dtypes = DTYPES if peer == "fastrnn" else ("bfloat16",)
    return [{"shape_name": shape, "shape": list(_b.SHAPES[shape]), "cell": c, "passes": p,
             "compute_dtype": dt}
            for c in cells for p in ("forward", "forward+backward") for dt in dtypes]  # fmt: skip


def has_amx() -> bool:
    """Whether the CPU has AMX for bfloat16 (Linux: /proc/cpuinfo's flags; False elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def _spawn(args: argparse.Namespace, peer: str, threads: int, **spec: Any) -> dict[str, Any]:
    base = {"mode": "bfloat16", "peer": peer, "threads": threads, "repeat": args.repeat,
            "budget": args.budget, "cases": []}  # fmt: skip
    return _b._spawn({**base, **spec})


def _log(what: str) -> None:
    print(f"  {what} ...", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Times every case asked for, per thread count: the GEMM peaks, then shape by shape fastrnn
    (bfloat16 and float32) and torch (autocast), each in a process of its own; returns the report
    (what ``--json`` writes)."""
    peers = [p for p in PEERS if p in args.peers and _b._available(p)]
    machine = _b._machine()
    meter = _b._OthersMeter()
    runs = []
    for threads in args.threads:
        if "torch" in peers:
            _log(f"GEMM peaks (torch.matmul {PEAK_N}^3) with {threads} thread(s)")
            runs.append(_spawn(args, "torch", threads, peaks=True))
            if has_amx():
                runs.append(_spawn(args, "torch", threads, no_amx=True))
        for shape in args.shapes:
            for peer in peers:
                _log(f"timing {peer} on {shape} with {threads} thread(s)")
                runs.append(_spawn(args, peer, threads, cases=_cases(peer, shape, args.cells)))
    others = meter.cpus()
    report = {"machine": machine, "mode": "bfloat16", "peers": peers, "threads": args.threads,
              "shapes": args.shapes, "cells": args.cells, "runs": runs,
              "others_busy_cpus": others}  # fmt: skip
    report["peaks"] = _peaks(runs)
    report["rows"] = rows(report)
    return report


# ------------------------------------------------------------------------------------ report


def _peaks(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """GFLOP/s by thread count (JSON keys: strings) and dtype (and NO_AMX where timed)."""
    peaks: dict[str, dict[str, float]] = {}
    for r in runs:
        peaks.setdefault(str(r["threads"]), {}).update(r.get("peaks", {}))
    return {t: p for t, p in peaks.items() if p}


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def _row(
    key: tuple[int, str, str, str],
    res: dict[tuple[Any, ...], dict[str, Any]],
    peak: dict[str, float],
) -> dict[str, Any]:
    """One row of the table: a shape, cell, pass and thread count."""
    threads, shape, cell, passes = key
    mine = res.get(("fastrnn", "bfloat16", *key), {})
    torch = res.get(("torch", "bfloat16", *key), {})
    f32 = res.get(("fastrnn", "float32", *key), {})
    ms = mine.get("ms")
    gflops = _b.flops(cell, _b.SHAPES[shape], passes) / ms / 1e6 if ms else None
    return {
        "shape": shape, "cell": cell, "passes": passes, "threads": threads,
        "fastrnn_bf16_ms": ms, "torch_bf16_ms": torch.get("ms"), "fastrnn_f32_ms": f32.get("ms"),
        "fastrnn_bf16_na": mine.get("na"),
        "gflops": gflops, "bf16_peak_fraction": _ratio(gflops, peak.get("bfloat16")),
        "speedup_vs_torch_bf16": _ratio(torch.get("ms"), ms),
        "speedup_vs_fastrnn_f32": _ratio(f32.get("ms"), ms),
        "fastrnn_bf16_max_abs_dev": mine.get("max_abs_dev"),
        "torch_bf16_max_abs_dev": torch.get("max_abs_dev"),
    }  # fmt: skip


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per shape, cell, pass and thread count timed (see :func:`_row`), sorted as the
    float32 tables are."""
    res = {(r["peer"], c["compute_dtype"], r["threads"], c["shape_name"], c["cell"],
            c["passes"]): c for r in report["runs"] for c in r["results"]}  # fmt: skip
    keys = sorted({k[2:] for k in res}, key=lambda k: (k[1], k[2], k[3], k[0]))
    peaks = report.get("peaks", {})
    return [_row(k, res, peaks.get(str(k[0]), {})) for k in keys]


def _ms(v: float | None, width: int, none: str = "-") -> str:
    return _b._ms(v, width) if v is not None else f"{none:>{width}}"


def _pct(v: float | None, width: int) -> str:
    return f"{100 * v:>{width - 1}.0f}%" if v is not None else f"{'-':>{width}}"


def _x(v: float | None, width: int) -> str:
    return f"{v:>{width - 1}.2f}x" if v is not None else f"{'':>{width}}"


def _dev(v: float | None, width: int) -> str:
    return f"{v:>{width}.1e}" if v is not None else f"{'-':>{width}}"


# the table's columns after shape, cell, pass and threads: head, width, text of a row
COLUMNS: list[tuple[str, int, Any]] = [
    ("fastrnn bf16 ms", 15,
     lambda r: _ms(r["fastrnn_bf16_ms"], 15, "n/a" if r["fastrnn_bf16_na"] else "-")),
    ("GFLOP/s", 8, lambda r: f"{r['gflops']:>8.1f}" if r["gflops"] else f"{'-':>8}"),
    ("%peak", 6, lambda r: _pct(r["bf16_peak_fraction"], 6)),
    ("torch bf16 ms", 13, lambda r: _ms(r["torch_bf16_ms"], 13)),
    ("x", 6, lambda r: _x(r["speedup_vs_torch_bf16"], 6)),
    ("fastrnn f32 ms", 14, lambda r: _ms(r["fastrnn_f32_ms"], 14)),
    ("x", 6, lambda r: _x(r["speedup_vs_fastrnn_f32"], 6)),
    ("dev fastrnn", 11, lambda r: _dev(r["fastrnn_bf16_max_abs_dev"], 11)),
    ("dev torch", 9, lambda r: _dev(r["torch_bf16_max_abs_dev"], 9)),
]  # fmt: skip


def _rows_text(rows: list[dict[str, Any]]) -> list[str]:
    """The table: a head, a rule and a line per row."""
    head = f"{'shape':<5} {'cell':<5} {'pass':<8} {'thr':>3}" + "".join(
        f" {h:>{w}}" for h, w, _ in COLUMNS
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['shape']:<5} {r['cell']:<5} {_b._pass(r['passes']):<8} {r['threads']:>3}"
        lines.append((line + "".join(f" {text(r)}" for _, _, text in COLUMNS)).rstrip())
    return lines


def _peak_line(peaks: dict[str, dict[str, float]]) -> str:
    if not peaks:
        return "GEMM peak: not timed (it needs torch)"
    by = sorted(peaks.items(), key=lambda kv: int(kv[0]))
    no_amx = f"bfloat16 with oneDNN kept from AMX (ONEDNN_MAX_CPU_ISA={NO_AMX_ISA})"
    names = [("bfloat16", "bfloat16"), ("float32", "float32"), (NO_AMX, no_amx)]
    parts = [f"{label} " + " / ".join(f"{p[name]:.0f}" if name in p else "-" for _, p in by)
             for name, label in names if any(name in p for _, p in by)]  # fmt: skip
    threads = " / ".join(t for t, _ in by)
    return (f"GEMM peak (torch.matmul {PEAK_N}^3, same run), GFLOP/s at {threads} thread(s): "
            + "; ".join(parts))  # fmt: skip


def _notes(report: dict[str, Any]) -> list[str]:
    """Under the table: the peaks, fastrnn's variant, why a column is n/a, the machine's load."""
    lines = [_peak_line(report.get("peaks", {}))]
    isas = sorted({r["isa"] for r in report["runs"] if "isa" in r})
    if isas:
        lines.append(f"fastrnn kernel variant: {', '.join(isas)}")
    reasons = sorted({c["na"] for r in report["runs"] for c in r["results"] if "na" in c})
    lines += [f"n/a: {reason}" for reason in reasons]
    others, cpus = report.get("others_busy_cpus"), report["machine"].get("cpus")
    if others is not None:
        load = ": the timings include their load" if others > _b.QUIET_CPUS else ""
        lines.append(f"other processes kept {others:.2f} of the machine's {cpus} CPUs busy on "
                     f"average during the run, the bench's own not counted{load}")  # fmt: skip
    return lines


# issue 20's speed targets, on S1 S2 S4 at every thread count: what, the rows it covers (cells,
# passes, shapes), the row's value, the least value meeting it
TARGETS: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str, float]] = [
    ("LSTM fwd vs torch bf16", ("lstm",), ("forward",), ("S1", "S2", "S4"),
     "speedup_vs_torch_bf16", 1.0),
    ("LSTM fwd+bwd vs torch bf16", ("lstm",), ("forward+backward",), ("S1", "S2", "S4"),
     "speedup_vs_torch_bf16", 1.2),
    ("GRU and RNN vs torch bf16", ("gru", "rnn"), ("forward", "forward+backward"),
     ("S1", "S2", "S4"), "speedup_vs_torch_bf16", 1.5),
    ("GRU and RNN bf16 vs fastrnn f32", ("gru", "rnn"), ("forward", "forward+backward"),
     ("S1", "S2", "S4"), "speedup_vs_fastrnn_f32", 1.0),
    ("fwd, fraction of the bf16 GEMM peak", ("lstm", "gru", "rnn"), ("forward",), ("S2", "S4"),
     "bf16_peak_fraction", 0.85),
]  # fmt: skip


def _target_text(key: str, value: float) -> str:
    return f"{100 * value:.0f}%" if key == "bf16_peak_fraction" else f"{value:.2f}x"


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """A line per target of issue 20 with rows to judge: met / entries, and those not met."""
    lines = []
    for what, cells, passes, shapes, key, least in TARGETS:
        judged = [r for r in rows if r["cell"] in cells and r["passes"] in passes
                  and r["shape"] in shapes and r[key] is not None]  # fmt: skip
        if not judged:
            continue
        missed = [f"{r['shape']} {r['cell']} {_b._pass(r['passes'])} {r['threads']}t "
                  f"{_target_text(key, r[key])}" for r in judged if r[key] < least]  # fmt: skip
        line = (f"target {what} >= {_target_text(key, least)}: met "
                f"{len(judged) - len(missed)} of {len(judged)}")  # fmt: skip
        lines.append(line + (f"; not met: {', '.join(missed)}" if missed else ""))
    return lines


def table(report: dict[str, Any]) -> str:
    """The bfloat16 report as text."""
    lines = [
        'bfloat16 compute: fastrnn bf16 = compute_dtype="bfloat16"; torch bf16 = torch.nn\'s '
        'float32 module under torch.autocast("cpu", dtype=torch.bfloat16); fastrnn f32 = the '
        "same fastrnn layer in float32. Median ms; GFLOP/s and %peak (of the bfloat16 GEMM "
        "peak) are fastrnn bf16's; x = that column's ms / fastrnn bf16's (> 1: fastrnn bf16 "
        "faster); dev = a forward's max |bf16 - float32| output difference, same weights.",
        "",
    ]
    lines += _rows_text(report["rows"])
    return "\n".join([*lines, "", *_notes(report), *targets(report["rows"])])


def chart(report: dict[str, Any], path: str | None = None) -> Any:
    """The bfloat16 report's chart (``--replot``): for each shape a panel, for each cell, pass
    and thread count the time of torch bf16 and of fastrnn f32 over fastrnn bf16's (above 1:
    fastrnn bf16 faster), drawn by :func:`fastrnn.tools.bench.ratio_chart`. Returns the
    Figure, saved to ``path`` if given."""
    got = report.get("rows") or rows(report)
    panels: dict[str, tuple[list[str], dict[str, list[float | None]]]] = {}
    for shape in sorted({r["shape"] for r in got}):
        mine = [r for r in got if r["shape"] == shape]
        labels = [_b._case_label(r["cell"], r["passes"], r["threads"]) for r in mine]
        panels[f"{shape} (T, B, I, H = {', '.join(map(str, _b.SHAPES[shape]))})"] = (labels, {
            "torch bf16 (autocast)": [r["speedup_vs_torch_bf16"] for r in mine],
            "fastrnn f32": [r["speedup_vs_fastrnn_f32"] for r in mine],
        })  # fmt: skip
    isas = sorted({run["isa"] for run in report["runs"] if "isa" in run})
    title = "bfloat16 compute" + (f", fastrnn kernel variant {', '.join(isas)}" if isas else "")
    return _b.ratio_chart(panels, "ms / fastrnn bf16 ms (> 1: fastrnn bf16 faster)", title, path)


def check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The options that do not apply to the bfloat16 tables: a usage error."""
    _options.check_precision_mode(ap, args, "bfloat16", PEERS, "fastrnn and torch")


__all__ = ["PEERS", "Unavailable", "chart", "check", "rows", "run", "table", "worker"]
