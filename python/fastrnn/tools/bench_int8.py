"""``python -m fastrnn.bench --compute-dtype int8``: int8 inference, fastrnn against ONNX Runtime.

For each shape (default S1 S2 S3 S5), cell and thread count, the forward (inference) of

* fastrnn int8: ``fastrnn.quantize_dynamic(layer)`` (int8 weights with a float32 scale per row,
  the activations quantized on the fly; :mod:`fastrnn.quantized`);
* ORT int8 (LSTM only; ONNX Runtime has no int8 GRU or RNN): the layer exported to ONNX
  (:func:`fastrnn.onnx.export`) and quantized by ``onnxruntime.quantization.quantize_dynamic``
  with ``weight_type=QuantType.QInt8`` and its other defaults (per-tensor weight scales), which
  makes the LSTM node a ``DynamicQuantizeLSTM``;
* fastrnn f32 and ORT f32: the same float32 layer, and its export, unquantized.

Every peer has the same weights: each parameter (biases too) drawn from uniform(-0.05, 0.05)
(WEIGHT_SCALE) after the case's inputs, which are drawn as the float32 tables draw them (S5 with
initial states). fastrnn runs in a process of its own (each case in int8, then at once in
float32), ORT in another, shape by shape at each thread count; ONNX Runtime with
``intra_op_num_threads`` the thread count and one inter-op thread (the float32 tables' ORT
peer). Every median is of at least --repeat runs, and of 0.25 s of runs for short calls, within
about --budget seconds; with ``--rounds N`` each shape is timed N times, the peers' processes
alternating (fastrnn, ORT, ORT, fastrnn, ...), and the table has the median of the rounds'
medians (the speed of a shared machine drifts over minutes). Each result also records the
process's CPU time over the wall time of its runs, which shows how many threads the peer kept
busy (it checks that the thread count was honoured).

The table: milliseconds; ``int8 x``, the int8 peer's time over fastrnn int8's (ORT int8 for
LSTM, ORT f32 for GRU and RNN); ``f32 x``, ORT f32's over fastrnn f32's; ``own x``, fastrnn
f32's over fastrnn int8's; and the largest ``|int8 - float32|`` difference of the output ``y`` of
fastrnn int8 and of ORT int8, both against fastrnn's float32 output on the same weights. Under
it, the weights' bytes (the quantized layer's ``nbytes`` against the float32 layer's
parameters; ORT's quantized initializers against its float32 ones) and issue 21's targets, met
or not."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _options
from . import bench as _b

#: the peers of the int8 tables
PEERS = ("fastrnn", "ort")
#: the default shapes (issue 21's)
SHAPES = _b.INT8_SHAPES
DTYPES = ("int8", "float32")  # fastrnn times each case in both, in this order
#: every parameter is drawn from uniform(-WEIGHT_SCALE, WEIGHT_SCALE)
WEIGHT_SCALE = 0.05
ORT_INT8_CELLS = ("lstm",)  # the cells ONNX Runtime quantizes (DynamicQuantizeLSTM)
ORT_INT8_OP = "DynamicQuantizeLSTM"
# the recurrent operators whose initializers are the weights (float32 export and quantized)
_RECURRENT_OPS = ("LSTM", "GRU", "RNN", ORT_INT8_OP)


# ------------------------------------------------------------------------------------ workers


@dataclass
class _Problem:
    """One case's inputs (as the float32 tables draw them) and its float32 fastrnn layer with
    the weights of scale WEIGHT_SCALE, the same in every process."""

    d: _b._Inputs
    layer: Any

    @classmethod
    def of(cls, case: dict[str, Any]) -> _Problem:
        import fastrnn

        shape = tuple(case["shape"])
        d = _b._Inputs.draw(case["cell"], shape, case["shape_name"] in _b.WITH_STATES)
        _, _, I, H = shape
        layer = getattr(fastrnn, d.layer)(I, H, seed=0)
        k = WEIGHT_SCALE
        layer.load_state_dict({name: d.rng.uniform(-k, k, s).astype(np.float32)
                               for name, s in layer.param_shapes().items()})  # fmt: skip
        return cls(d, layer.eval())

    def y32(self) -> np.ndarray:
        """fastrnn's float32 output y: what both int8 outputs are compared with."""
        return np.asarray(self.layer(self.d.x, self.d.hx)[0])


def _max_abs_dev(y: Any, y32: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(y, np.float64) - y32)))


def _param_bytes(layer: Any) -> int:
    return sum(int(p.nbytes) for _, p in layer.named_parameters())


def _fastrnn_case(p: _Problem, dtype: str) -> tuple[Any, dict[str, Any]]:
    """The timed call of fastrnn in ``dtype``, and for int8 what the row reports beside its
    time: the deviation from float32 and the weights' bytes."""
    import fastrnn

    if dtype == "float32":
        return _b._fastrnn_case(p.d, True, p.layer), {}
    q = fastrnn.quantize_dynamic(p.layer)
    extra = {
        "max_abs_dev": _max_abs_dev(q(p.d.x, p.d.hx)[0], p.y32()),
        "weight_bytes": int(q.nbytes),
        "f32_weight_bytes": _param_bytes(p.layer),
    }
    return _b._fastrnn_case(p.d, True, q), extra


def _initializer_bytes(model: Any) -> int:
    """Bytes of the initializers read by the model's recurrent nodes (weights, scales, zero
    points, biases)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    names = {n for node in model.graph.node if node.op_type in _RECURRENT_OPS
             for n in node.input if n in inits}  # fmt: skip
    return sum(int(numpy_helper.to_array(inits[n]).nbytes) for n in names)


def _os_threads() -> int | None:
    """The threads of this process (Linux: /proc/self/task; None elsewhere)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def ort_quantized(model: Any) -> Any:
    """``model`` (a float32 ONNX model) quantized by ``onnxruntime.quantization.quantize_dynamic``
    (QInt8 weights, its other defaults), with the IR version ONNX Runtime loads; ValueError if
    no recurrent node became a DynamicQuantizeLSTM."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    from fastrnn import onnx as fonnx

    # it advises pre-processing (shape inference, for convolution models) through the root
    # logger: quiet while it runs
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "int8.onnx")
            quantize_dynamic(model, path, weight_type=QuantType.QInt8)
            q = onnx.load(path)
    finally:
        root.setLevel(level)
    if ORT_INT8_OP not in {n.op_type for n in q.graph.node}:
        ops = ", ".join(n.op_type for n in q.graph.node)
        raise ValueError(f"quantize_dynamic made no {ORT_INT8_OP} (nodes: {ops})")
    q.ir_version = min(q.ir_version, fonnx.IR_VERSION)  # ONNX Runtime loads IR <= 13
    return q


def _ort_case(p: _Problem, dtype: str) -> tuple[Any, dict[str, Any]]:
    """The timed call of ONNX Runtime in ``dtype`` (int8: DynamicQuantizeLSTM), and what the
    row reports beside its time: the deviation from fastrnn's float32 output (ORT f32's shows
    that the export computes the same function), the threads its session started (its
    intra-op pool: intra_op_num_threads - 1) and the initializers' bytes."""
    from fastrnn import onnx as fonnx

    model = fonnx.export(p.layer, initial_states=p.d.h0 is not None)
    if dtype == "int8":
        if p.d.cell not in ORT_INT8_CELLS:
            raise ValueError(f"ONNX Runtime has no int8 {p.d.layer}")
        f32_bytes = _initializer_bytes(model)
        model = ort_quantized(model)
    before = _os_threads()
    fn = _b._ort_case(p.d, True, model)
    after = _os_threads()
    added = after - before if after is not None and before is not None else None
    extra: dict[str, Any] = {"max_abs_dev": _max_abs_dev(fn()[0], p.y32()),
                             "session_threads": added}  # fmt: skip
    if dtype == "int8":
        extra.update(weight_bytes=_initializer_bytes(model), f32_weight_bytes=f32_bytes)
    return fn, extra


_CASES: dict[str, Callable[[_Problem, str], tuple[Any, dict[str, Any]]]] = {
    "fastrnn": _fastrnn_case,
    "ort": _ort_case,
}


def _time_case(peer: str, case: dict[str, Any], repeat: int, budget: float) -> dict[str, Any]:
    """One case's result: its median ms and runs, the process's CPU seconds per wall second
    over the runs, and the case's extras (:func:`_fastrnn_case`, :func:`_ort_case`)."""
    fn, extra = _CASES[peer](_Problem.of(case), case["compute_dtype"])
    cpu, wall = time.process_time(), time.perf_counter()
    secs, n = _b._time_runs(fn, repeat, budget)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {**case, "ms": secs * 1e3, "n": n, "cpu_per_wall": cpu / wall, **extra}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """An int8 worker process (``spec["mode"] == "int8"``): the cases of the spec with its
    thread count (fastrnn: set_num_threads; ORT: FASTRNN_BENCH_THREADS, set by the parent)."""
    peer = spec["peer"]
    out = _b.worker_start(spec, "int8")
    if peer != "fastrnn":
        import onnxruntime as ort  # type: ignore[import-untyped]

        import fastrnn

        # fastrnn computes only the float32 output compared with here: one thread, none left
        # spinning beside ORT's
        fastrnn.set_num_threads(1)
        out["ort_version"] = ort.__version__
    for case in spec["cases"]:
        out["results"].append(_time_case(peer, case, spec["repeat"], spec["budget"]))
    return out


# ------------------------------------------------------------------------------------ the run


def _cases(peer: str, shape: str, cells: list[str]) -> list[dict[str, Any]]:
    """A peer's cases of one shape: fastrnn each cell in int8 then float32; ORT LSTM in int8
    then float32, GRU and RNN in float32."""
    out = []
    for c in cells:
        for dt in DTYPES:
            if peer == "ort" and dt == "int8" and c not in ORT_INT8_CELLS:
                continue
            out.append({"shape_name": shape, "shape": list(_b.SHAPES[shape]), "cell": c,
                        "passes": "forward", "compute_dtype": dt})  # fmt: skip
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Times every case asked for, per thread count and shape: fastrnn (int8 and float32) and
    ORT (int8 LSTM, float32), each in a process of its own; returns the report (what ``--json``
    writes)."""
    peers = [p for p in PEERS if p in args.peers and _b._available(p)]
    machine = _b._machine()
    meter = _b._OthersMeter()
    runs = []
    for threads in args.threads:
        for shape in args.shapes:
            for i in range(args.rounds):  # the peers alternate, first one first, then the other
                for peer in peers if i % 2 == 0 else peers[::-1]:
                    print(f"  timing {peer} on {shape} with {threads} thread(s), round {i + 1} "
                          f"of {args.rounds} ...", file=sys.stderr, flush=True)  # fmt: skip
                    spec = {"mode": "int8", "peer": peer, "threads": threads,
                            "repeat": args.repeat, "budget": args.budget,
                            "cases": _cases(peer, shape, args.cells)}  # fmt: skip
                    runs.append({**_b._spawn(spec), "round": i})
    report = {"machine": machine, "mode": "int8", "peers": peers, "threads": args.threads,
              "shapes": args.shapes, "cells": args.cells, "rounds": args.rounds,
              "weight_scale": WEIGHT_SCALE, "runs": runs,
              "others_busy_cpus": meter.cpus()}  # fmt: skip
    report["rows"] = rows(report)
    report["weights"] = weights(report)
    return report


# ------------------------------------------------------------------------------------ report


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def _results(report: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every case's result by (peer, dtype, threads, shape, cell): its first round's, with
    ``ms`` the median of every round's (``--rounds``; each round's in ``ms_rounds``)."""
    rounds: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in report["runs"]:
        for c in r["results"]:
            key = (r["peer"], c["compute_dtype"], r["threads"], c["shape_name"], c["cell"])
            rounds.setdefault(key, []).append(c)
    return {k: {**v[0], "ms": statistics.median(c["ms"] for c in v),
                "ms_rounds": [c["ms"] for c in v]} for k, v in rounds.items()}  # fmt: skip


def _row(key: tuple[int, str, str], res: dict[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
    """One row of the table: a shape, cell and thread count."""
    threads, shape, cell = key

    def get(peer: str, dtype: str, field: str) -> Any:
        return res.get((peer, dtype, *key), {}).get(field)

    int8, f32 = get("fastrnn", "int8", "ms"), get("fastrnn", "float32", "ms")
    ort8, ort32 = get("ort", "int8", "ms"), get("ort", "float32", "ms")
    peer = "ort_int8" if cell in ORT_INT8_CELLS else "ort_f32"
    return {
        "shape": shape, "cell": cell, "passes": "forward", "threads": threads,
        "fastrnn_int8_ms": int8, "ort_int8_ms": ort8, "fastrnn_f32_ms": f32, "ort_f32_ms": ort32,
        "int8_peer": peer,
        "speedup_int8_vs_peer": _ratio(ort8 if peer == "ort_int8" else ort32, int8),
        "speedup_f32_vs_ort_f32": _ratio(ort32, f32),
        "speedup_int8_vs_fastrnn_f32": _ratio(f32, int8),
        "fastrnn_int8_max_abs_dev": get("fastrnn", "int8", "max_abs_dev"),
        "ort_int8_max_abs_dev": get("ort", "int8", "max_abs_dev"),
        "ort_f32_max_abs_dev": get("ort", "float32", "max_abs_dev"),
    }  # fmt: skip


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per shape, cell and thread count timed (see :func:`_row`), sorted by shape, cell,
    then threads."""
    res = _results(report)
    keys = sorted({k[2:] for k in res}, key=lambda k: (k[1], k[2], k[0]))
    return [_row(k, res) for k in keys]


def weights(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The weights' bytes per shape and cell: fastrnn's quantized layer (``nbytes``: int8
    weights, scales, float32 biases) and float32 layer, ORT's quantized and float32 initializers
    (weights, scales, zero points, biases); from the first thread count that has them."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    by_threads = sorted(_results(report).items(), key=lambda kv: kv[0][2])
    for (peer, dtype, _, shape, cell), c in by_threads:
        if dtype != "int8" or "weight_bytes" not in c:
            continue
        w = out.setdefault((shape, cell), {"shape": shape, "cell": cell})
        w.setdefault(f"{peer}_int8_bytes", c["weight_bytes"])
        w.setdefault(f"{peer}_f32_bytes", c["f32_weight_bytes"])
    for w in out.values():
        for peer in PEERS:
            w[f"{peer}_ratio"] = _ratio(w.get(f"{peer}_int8_bytes"), w.get(f"{peer}_f32_bytes"))
    return [out[k] for k in sorted(out)]


def _ms(v: float | None, width: int) -> str:
    return _b._ms(v, width) if v is not None else f"{'-':>{width}}"


def _x(v: float | None, width: int) -> str:
    return f"{v:>{width - 1}.2f}x" if v is not None else f"{'':>{width}}"


def _dev(v: float | None, width: int) -> str:
    return f"{v:>{width}.1e}" if v is not None else f"{'-':>{width}}"


# the table's columns after shape, cell and threads: head, width, text of a row
COLUMNS: list[tuple[str, int, Any]] = [
    ("fastrnn int8 ms", 15, lambda r: _ms(r["fastrnn_int8_ms"], 15)),
    ("ORT int8 ms", 11, lambda r: _ms(r["ort_int8_ms"], 11)),
    ("fastrnn f32 ms", 14, lambda r: _ms(r["fastrnn_f32_ms"], 14)),
    ("ORT f32 ms", 10, lambda r: _ms(r["ort_f32_ms"], 10)),
    ("int8 x", 6, lambda r: _x(r["speedup_int8_vs_peer"], 6)),
    ("f32 x", 6, lambda r: _x(r["speedup_f32_vs_ort_f32"], 6)),
    ("own x", 6, lambda r: _x(r["speedup_int8_vs_fastrnn_f32"], 6)),
    ("dev fastrnn", 11, lambda r: _dev(r["fastrnn_int8_max_abs_dev"], 11)),
    ("dev ORT", 7, lambda r: _dev(r["ort_int8_max_abs_dev"], 7)),
]  # fmt: skip


def _rows_text(rows: list[dict[str, Any]]) -> list[str]:
    """The table: a head, a rule and a line per row."""
    head = f"{'shape':<5} {'cell':<5} {'thr':>3}" + "".join(f" {h:>{w}}" for h, w, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['shape']:<5} {r['cell']:<5} {r['threads']:>3}"
        lines.append((line + "".join(f" {text(r)}" for _, _, text in COLUMNS)).rstrip())
    return lines


def _bytes(v: int | None, width: int) -> str:
    return f"{v:>{width},}" if v is not None else f"{'-':>{width}}"


def _weights_text(weights: list[dict[str, Any]]) -> list[str]:
    """The weights' bytes, int8 against float32, fastrnn's and ORT's (nothing if none)."""
    if not weights:
        return []
    head = (f"{'shape':<5} {'cell':<5} {'fastrnn int8 B':>14} {'fastrnn f32 B':>14} "
            f"{'ratio':>6} {'ORT int8 B':>12} {'ORT f32 B':>12} {'ratio':>6}")  # fmt: skip
    lines = ["", "Weights' memory, bytes (fastrnn: the quantized layer's nbytes and the float32 "
             "layer's parameters; ORT: its recurrent node's initializers):", head,
             "-" * len(head)]  # fmt: skip
    for w in weights:
        fr, orr = w.get("fastrnn_ratio"), w.get("ort_ratio")
        lines.append(
            (f"{w['shape']:<5} {w['cell']:<5} {_bytes(w.get('fastrnn_int8_bytes'), 14)} "
             f"{_bytes(w.get('fastrnn_f32_bytes'), 14)} "
             + (f"{fr:>6.3f}" if fr else f"{'-':>6}")
             + f" {_bytes(w.get('ort_int8_bytes'), 12)} {_bytes(w.get('ort_f32_bytes'), 12)} "
             + (f"{orr:>6.3f}" if orr else f"{'-':>6}")).rstrip()
        )  # fmt: skip
    return lines


def _busy_line(report: dict[str, Any]) -> list[str]:
    """Each peer's CPU seconds per wall second during its runs, by thread count: the threads it
    kept busy (thread counts honoured: about 1 at 1 thread, up to N at N); nothing where a
    report has none (a table transcribed without them)."""
    busy: dict[tuple[str, int], list[float]] = {}
    for r in report["runs"]:
        for c in r["results"]:
            if "cpu_per_wall" in c:
                busy.setdefault((r["peer"], r["threads"]), []).append(c["cpu_per_wall"])
    if not busy:
        return []
    parts = [f"{peer} {t}t {min(v):.2f}-{max(v):.2f}" for (peer, t), v in sorted(busy.items())]
    lines = [f"CPU time / wall time during the runs (threads kept busy): {', '.join(parts)}"]
    started = {(r["threads"], c["session_threads"]) for r in report["runs"] for c in r["results"]
               if c.get("session_threads") is not None}  # fmt: skip
    if started:
        by = ", ".join(f"{n} at {t}t" for t, n in sorted(started))
        lines.append(f"threads started by each ORT session (its intra-op pool, "
                     f"intra_op_num_threads - 1): {by}")  # fmt: skip
    return lines


def _notes(report: dict[str, Any]) -> list[str]:
    """Under the table: fastrnn's variant, ORT's version, the threads busy, the machine's load."""
    lines = []
    isas = sorted({r["isa"] for r in report["runs"] if "isa" in r})
    if isas:
        lines.append(f"fastrnn kernel variant: {', '.join(isas)}")
    versions = sorted({r["ort_version"] for r in report["runs"] if "ort_version" in r})
    if versions:
        lines.append(f"onnxruntime {', '.join(versions)}")
    lines += _busy_line(report)
    others, cpus = report.get("others_busy_cpus"), report["machine"].get("cpus")
    if others is not None:
        load = ": the timings include their load" if others > _b.QUIET_CPUS else ""
        lines.append(f"other processes kept {others:.2f} of the machine's {cpus} CPUs busy on "
                     f"average during the run, the bench's own not counted{load}")  # fmt: skip
    return lines


@dataclass(frozen=True)
class Target:
    """One of issue 21's targets: a row's value (None: not judged) and the least meeting it, on
    the rows of these cells and shapes (and thread counts: None for all)."""

    what: str
    cells: tuple[str, ...]
    shapes: tuple[str, ...]
    threads: tuple[int, ...] | None
    value: Callable[[dict[str, Any]], float | None]
    least: float


def _dev_ratio(r: dict[str, Any]) -> float | None:
    """ORT int8's deviation over fastrnn int8's: at least 1 when fastrnn's is no larger."""
    mine, ort = r["fastrnn_int8_max_abs_dev"], r["ort_int8_max_abs_dev"]
    if mine is None or ort is None:
        return None
    return ort / mine if mine else float("inf")


#: issue 21's targets, judged under the table (:func:`targets`)
TARGETS = [
    Target("LSTM int8 vs ORT DynamicQuantizeLSTM", ("lstm",), SHAPES, None,
           lambda r: r["speedup_int8_vs_peer"], 1.3),
    Target("GRU and RNN int8 vs ORT f32", ("gru", "rnn"), SHAPES, None,
           lambda r: r["speedup_int8_vs_peer"], 3.0),
    Target("batch 1 fastrnn f32 vs ORT f32 at 2 threads", ("lstm", "gru", "rnn"), ("S3", "S5"),
           (2,), lambda r: r["speedup_f32_vs_ort_f32"], 1.5),
    Target("LSTM int8 deviation no larger than ORT int8's, ORT dev / fastrnn dev", ("lstm",),
           SHAPES, None, _dev_ratio, 1.0),
]  # fmt: skip


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """A line per target of issue 21 with rows to judge: met / entries, and those not met."""
    lines = []
    for t in TARGETS:
        judged = [(r, v) for r in rows if r["cell"] in t.cells and r["shape"] in t.shapes
                  and (t.threads is None or r["threads"] in t.threads)
                  and (v := t.value(r)) is not None]  # fmt: skip
        if not judged:
            continue
        missed = [f"{r['shape']} {r['cell']} {r['threads']}t {v:.2f}x"
                  for r, v in judged if v < t.least]  # fmt: skip
        met = len(judged) - len(missed)
        line = f"target {t.what} >= {t.least:.2f}x: met {met} of {len(judged)}"
        lines.append(line + (f"; not met: {', '.join(missed)}" if missed else ""))
    return lines


def table(report: dict[str, Any]) -> str:
    """The int8 report as text."""
    n = report.get("rounds", 1)
    median = "Median ms" if n == 1 else (f"Median ms (of {n} rounds, the peers' processes "
                                         "alternating)")  # fmt: skip
    lines = [
        "int8 inference (forward): fastrnn int8 = fastrnn.quantize_dynamic(layer); ORT int8 = "
        "its ONNX export through onnxruntime.quantization.quantize_dynamic (QInt8: "
        f"{ORT_INT8_OP}, LSTM only); f32 = the same layer and export in float32. Weights "
        f"uniform(-{WEIGHT_SCALE:g}, {WEIGHT_SCALE:g}), the same for all. {median}; int8 x = "
        "the int8 peer's ms (ORT int8 for LSTM, ORT f32 for GRU and RNN) / fastrnn int8's; "
        "f32 x = ORT f32 / fastrnn f32; own x = fastrnn f32 / fastrnn int8 (> 1: fastrnn's "
        "faster); dev = max |int8 - float32| of y against fastrnn's float32 output, same "
        "weights.",
        "",
    ]
    lines += _rows_text(report["rows"])
    lines += _weights_text(report.get("weights", []))
    return "\n".join([*lines, "", *_notes(report), *targets(report["rows"])])


def chart(report: dict[str, Any], path: str | None = None) -> Any:
    """The int8 report's chart (``--replot``): for each shape a panel, for each cell and thread
    count the time of the int8 peer (ORT int8 for LSTM, ORT f32 for GRU and RNN) and of fastrnn
    f32 over fastrnn int8's (above 1: fastrnn int8 faster), drawn by
    :func:`fastrnn.tools.bench.ratio_chart`. Returns the Figure, saved to ``path`` if given."""
    got = report.get("rows") or rows(report)
    panels: dict[str, tuple[list[str], dict[str, list[float | None]]]] = {}
    for shape in sorted({r["shape"] for r in got}):
        mine = [r for r in got if r["shape"] == shape]
        panels[f"{shape} (T, B, I, H = {', '.join(map(str, _b.SHAPES[shape]))})"] = (
            [f"{r['cell']} {r['threads']}t" for r in mine],
            {"ORT int8 (LSTM), ORT f32 (GRU, RNN)": [r["speedup_int8_vs_peer"] for r in mine],
             "fastrnn f32": [r["speedup_int8_vs_fastrnn_f32"] for r in mine]},
        )  # fmt: skip
    isas = sorted({run["isa"] for run in report["runs"] if "isa" in run})
    title = "int8 inference" + (f", fastrnn kernel variant {', '.join(isas)}" if isas else "")
    return _b.ratio_chart(panels, "ms / fastrnn int8 ms (> 1: fastrnn int8 faster)", title, path)


def check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The options that do not apply to the int8 tables: a usage error."""
    _options.check_precision_mode(ap, args, "int8", PEERS, "fastrnn and ort")


__all__ = ["PEERS", "SHAPES", "TARGETS", "WEIGHT_SCALE", "chart", "check", "ort_quantized", "rows",
           "run", "table", "weights", "worker"]  # fmt: skip
