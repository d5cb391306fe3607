"""``python -m fastrnn.bench``: fastrnn against PyTorch, ONNX Runtime and the NumPy reference.

In one run, on the standard shapes (S5: one step of batch 1 from a given state, as a generation
loop calls the layer), at each thread count, every peer (where installed) is timed in a process
of its own with that many threads (fastrnn.set_num_threads, torch.set_num_threads, ORT
intra_op_num_threads, OpenBLAS for NumPy): forward (inference) and forward+backward (a training
step, the input gradient included; not ONNX Runtime); the median of at least --repeat runs, and
of 0.25 s of runs for short calls. The same run times the machine's float32 GEMM (NumPy's,
2048^3) as the peak to compare with, and a fastrnn layer's forward call on T = B = 1, H = 32.
Prints a table of milliseconds, GFLOP/s (forward FLOPs = 2*T*B*G*H*(I+H); forward+backward =
3x), the fraction of the GEMM peak and fastrnn's speed-up over each peer; writes JSON
(``--json``) and a PNG chart (``--png``, needs matplotlib: :func:`chart`). ``--replot FILE --png
OUT`` times nothing and draws the chart of a saved report of any table but ``--under-load``'s
(:func:`chart_from_json`; every chart is :func:`ratio_chart`'s). On ``--memory-shapes``
(default S4), fastrnn and PyTorch also run each forward and forward+backward in a fresh process of
their own, which reports its peak resident memory during two calls beyond what it held before
them (the inputs and the model: Linux's VmHWM, reset first). ``--isa x86-64-v3 x86-64-v4`` (or
``--isa all``) times fastrnn's kernels under each of those variants (FASTRNN_ISA, a process each)
against the same peers' timings of the run, one table per variant. ``--cells lnlstm`` adds the
layer-normalised LSTM (not timed by default), by fastrnn and its torch peer only, a TorchScript
LayerNormLSTM checked to compute fastrnn's outputs, with its ratio to fastrnn's plain LSTM and
the speed-up under the table (:mod:`fastrnn.tools.bench_lnlstm`).

``--under-load`` runs the "under load" scenario instead: one training step of ``fastrnn demo``
(its model, text, batch, Adam and clipping, built by the demo's own code; ``--load-demo`` passes
it options) for fastrnn, and an S1 LSTM forward+backward (``--load-shape``, ``--load-cell``) for
fastrnn and PyTorch, at each thread count in a process of its own, first quietly, then with a
competitor process (a Python busy loop pinned to the last CPU this process may use, unpinned where
the OS cannot pin) running throughout; the competitor is killed at the end whatever happens. Each
median is of at least 7 runs, then of ``--load-seconds``. It prints milliseconds quiet and loaded,
the demo's characters/s and the speed at N threads over the fewest's (the target: with the
competitor, 2 threads at least 0.8x the 1-thread speed), and how many CPUs other processes kept
busy during the quiet and the loaded timings (a shared machine is not quiet).

``--compute-dtype bfloat16`` prints the bfloat16 tables instead (:mod:`fastrnn.tools.bench_bf16`):
fastrnn with ``compute_dtype="bfloat16"`` against ``torch.nn`` under bfloat16 autocast, each in
processes of its own, with fastrnn float32 and the bfloat16 GEMM peak (torch.matmul) of the same
run; default shapes S1 S2 S4. ``--compute-dtype int8`` prints the int8 tables
(:mod:`fastrnn.tools.bench_int8`): ``fastrnn.quantize_dynamic`` layers against ONNX Runtime's
DynamicQuantizeLSTM (LSTM) and its float32 (GRU, RNN), with both in float32, the output's
deviation from float32 and the weights' bytes; default shapes S1 S2 S3 S5.

``--seq2seq`` prints the sequence-to-sequence table instead (:mod:`fastrnn.tools.bench_seq2seq`):
one training step of :class:`fastrnn.training.seq2seq.Seq2Seq` on a batch of the date task
against the same model and weights in ``torch.nn`` ops, each peer and thread count in a process
of its own; by default the model of ``fastrnn seq2seq``'s defaults, LSTM and GRU."""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _options

#: the standard problem sizes by name: T, B, I, H (time steps, batch, input size, hidden size)
SHAPES = {  # T, B, I, H
    "S1": (100, 64, 256, 256),
    "S2": (100, 32, 512, 512),
    "S3": (200, 1, 128, 256),
    "S4": (50, 128, 1024, 1024),
    "S5": (1, 1, 256, 512),  # one step of one sequence: a generation loop's call
}
# Without initial states ONNX Runtime skips the first step's recurrent product (measured on
# S5: RNN 18 µs without, 38 with), a saving no step of a generation loop gets but the first.
#: shapes whose calls get initial states, for every peer: a generation loop carries the state
#: from step to step
WITH_STATES = ("S5",)
#: the cells timed, each with its number of gates G (the FLOPs of :func:`flops`); ``lnlstm``,
#: the layer-normalised LSTM, by fastrnn and its TorchScript peer only (:mod:`.bench_lnlstm`)
CELLS = {"lstm": 4, "gru": 3, "rnn": 1, "lnlstm": 4}
#: the cells timed when --cells is not given
DEFAULT_CELLS = ("lstm", "gru", "rnn")
#: the cells of the float32 tables only (not of --compute-dtype bfloat16 or int8)
FLOAT32_ONLY_CELLS = ("lnlstm",)
#: the default shapes of ``--compute-dtype bfloat16``
BF16_SHAPES = ("S1", "S2", "S4")
#: the default shapes of ``--compute-dtype int8``
INT8_SHAPES = ("S1", "S2", "S3", "S5")
#: the modules of the ``--compute-dtype`` tables other than float32, by compute dtype
MODES = {"bfloat16": "bench_bf16", "int8": "bench_int8"}
#: the mode of ``--seq2seq``'s table
SEQ2SEQ = "seq2seq"
#: the modules of the tables other than the float32 peer tables, by their reports' ``"mode"``
TABLES = {**MODES, SEQ2SEQ: "bench_seq2seq"}
#: the peers of the float32 tables (``fastrnn.torch``: the PyTorch training step only)
PEERS = ("fastrnn", "torch", "ort", "reference", "fastrnn.torch")
#: what is timed of each case: inference, a training step of the layer, a whole torch step
PASSES = ("forward", "forward+backward", "train-step")


def _train_step(peer: str, cell: str, shape: tuple[int, ...]) -> Any:
    """One PyTorch training step (recurrent layer, Linear head on every step, MSE, Adam) with the
    layer from torch.nn or from fastrnn.torch; everything else is the same torch code."""
    import torch

    mod: Any = torch.nn
    if peer == "fastrnn.torch":
        import fastrnn.torch as mod
    T, B, I, H = shape
    torch.manual_seed(0)
    rnn = getattr(mod, {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell])(I, H)
    head = torch.nn.Linear(H, 16)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)
    x, target = torch.randn(T, B, I), torch.randn(T, B, 16)

    def step() -> Any:
        opt.zero_grad()
        y, _ = rnn(x)
        loss = torch.nn.functional.mse_loss(head(y), target)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        return loss

    return step


def flops(cell: str, shape: tuple[int, ...], passes: str) -> float:
    """The floating-point operations of one case: a forward ``2*T*B*G*H*(I+H)`` (the products;
    G the cell's gates), a forward+backward three times that."""
    T, B, I, H = shape
    f = 2.0 * T * B * CELLS[cell] * H * (I + H)
    return f if passes == "forward" else 3 * f


# ------------------------------------------------------------------------------------ workers


#: seconds: short calls run until this long, so that their median has many runs
MIN_SECONDS = 0.25


def _time_runs(
    fn: Any, repeat: int, budget: float, min_seconds: float = MIN_SECONDS, min_runs: int = 1
) -> tuple[float, int]:
    """Median seconds after one warm-up, and the number of runs it is the median of: `repeat`
    runs, or more until `min_seconds` have passed, stopping after about `budget` seconds, but
    never fewer than `min_runs`."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (
        (elapsed := time.perf_counter() - start) < budget
        and (len(times) < repeat or elapsed < min_seconds)
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def _time(fn: Any, repeat: int, budget: float) -> float:
    """Median seconds after one warm-up: of `repeat` runs, or more until MIN_SECONDS have passed
    (short calls), stopping after about `budget` seconds (at least one run)."""
    return _time_runs(fn, repeat, budget)[0]


def _gemm_peak(repeat: int) -> float:
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.T.copy()
    return 2.0 * n**3 / _time(lambda: a @ b, repeat, 3.0) / 1e9


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _peak_growth(fn: Any) -> float | None:
    """MiB: the process's peak resident memory while fn runs twice, minus its resident memory
    before (Linux only: the peak, VmHWM, is reset through /proc/self/clear_refs first)."""
    gc.collect()
    try:  # give the C library's free heap memory back first, so that it is not counted as held
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS")
    except (OSError, KeyError):
        return None
    fn()
    fn()
    return (_status_kib("VmHWM") - before) / 1024


@dataclass
class _Inputs:
    """One case's data, the same for every peer: float32 input ``x`` and output gradient ``dy``,
    and with initial states ``h0`` (and ``c0``, drawn for every cell, used by LSTM), else None.
    ``rng`` goes on to draw the reference's weights."""

    cell: str
    shape: tuple[int, ...]
    x: np.ndarray
    dy: np.ndarray
    h0: np.ndarray | None
    c0: np.ndarray | None
    rng: np.random.Generator

    @classmethod
    def draw(cls, cell: str, shape: tuple[int, ...], states: bool) -> _Inputs:
        T, B, I, H = shape
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        h0 = c0 = None
        if states:
            h0, c0 = (np.tanh(rng.standard_normal((1, B, H))).astype(np.float32) for _ in range(2))
        return cls(cell, shape, x, dy, h0, c0, rng)

    @property
    def layer(self) -> str:
        """The layer's class name: LSTM, GRU or RNN."""
        return {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[self.cell]

    @property
    def hx(self) -> Any:
        """The initial state as the layer takes it: None, h0, or (h0, c0) for LSTM."""
        return None if self.h0 is None else (self.h0, self.c0) if self.cell == "lstm" else self.h0

    @property
    def c0_if_lstm(self) -> np.ndarray | None:
        return self.c0 if self.cell == "lstm" else None


def _fastrnn_case(d: _Inputs, forward: bool, layer: Any = None) -> Any:
    """The timed call of a fastrnn case: ``layer`` (default: the case's float32 layer, seed 0)
    over the case's input, forward only or forward then backward."""
    import fastrnn

    _, _, I, H = d.shape
    m = getattr(fastrnn, d.layer)(I, H, seed=0) if layer is None else layer
    hx = d.hx
    if forward:
        m.eval()
        return lambda: m(d.x, hx)

    def step() -> Any:
        m(d.x, hx)
        return m.backward(d.dy)

    return step


def _torch_case(d: _Inputs, forward: bool) -> Any:
    import torch

    _, _, I, H = d.shape
    tm = getattr(torch.nn, d.layer)(I, H)
    xt, dyt = torch.from_numpy(d.x), torch.from_numpy(d.dy)
    thx: Any = None
    if d.h0 is not None:
        ht, ct = torch.from_numpy(d.h0), torch.from_numpy(d.c0)
        thx = (ht, ct) if d.cell == "lstm" else ht
    if forward:

        def fwd() -> Any:
            with torch.inference_mode():
                return tm(xt, thx)

        return fwd
    xg = xt.clone().requires_grad_(True)

    def tstep() -> Any:
        xg.grad = None
        y, _ = tm(xg, thx)
        y.backward(dyt)
        return xg.grad

    return tstep


def _ort_case(d: _Inputs, forward: bool, model: Any = None) -> Any:
    """The timed call of an ONNX Runtime case (forward only; None for forward+backward): a
    session of ``model`` (an ``onnx.ModelProto`` taking the case's inputs; default: the export
    of the case's float32 fastrnn layer, seed 0) with the worker's thread count as
    ``intra_op_num_threads`` and one inter-op thread."""
    if not forward:
        return None  # inference only
    import onnxruntime as ort  # type: ignore[import-untyped]

    if model is None:
        import fastrnn
        from fastrnn import onnx as fonnx

        _, _, I, H = d.shape
        layer = getattr(fastrnn, d.layer)(I, H, seed=0)
        model = fonnx.export(layer, initial_states=d.h0 is not None)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ["FASTRNN_BENCH_THREADS"])
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts)
    feeds = {"X": d.x}
    if d.h0 is not None:
        feeds["initial_h"] = d.h0
        if d.c0_if_lstm is not None:
            feeds["initial_c"] = d.c0_if_lstm
    return lambda: sess.run(None, feeds)


def _reference_case(d: _Inputs, forward: bool) -> Any:
    from fastrnn import reference as R

    _, _, I, H = d.shape
    G = CELLS[d.cell]
    k = 1 / np.sqrt(H)
    params = [tuple(d.rng.uniform(-k, k, s).astype(np.float32) for s in
                    ((G * H, I), (G * H, H), (G * H,), (G * H,)))]  # fmt: skip
    rcell = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}[d.cell]
    if forward:
        return lambda: R.stack_forward(rcell, d.x, params, d.h0, d.c0_if_lstm)

    def rstep() -> Any:
        cache = R.stack_forward(rcell, d.x, params, d.h0, d.c0_if_lstm)[3]
        return R.stack_backward(cache, d.dy)

    return rstep


# the peers timed on fastrnn's own calls (forward, forward+backward), by the builder of a case
_LAYER_CASES = {
    "fastrnn": _fastrnn_case,
    "torch": _torch_case,
    "ort": _ort_case,
    "reference": _reference_case,
}


def _case(peer: str, cell: str, shape: tuple[int, ...], passes: str, states: bool = False) -> Any:
    """A callable running one case for a peer, or None if the peer cannot run it. states: every
    call gets initial states (h0, and c0 for LSTM), the same for every peer."""
    if cell == "lnlstm":
        from . import bench_lnlstm

        return bench_lnlstm.case(peer, _Inputs.draw(cell, shape, states), passes)
    if passes == "train-step":
        return _train_step(peer, cell, shape) if peer in ("torch", "fastrnn.torch") else None
    if peer == "fastrnn.torch":
        return None
    if peer not in _LAYER_CASES:
        raise ValueError(peer)
    return _LAYER_CASES[peer](_Inputs.draw(cell, shape, states), passes == "forward")


def _demo_case(options: list[str]) -> Any:
    """One step of ``fastrnn demo``'s training loop, with these demo options on top of its
    defaults: built by the demo's own code (:class:`~fastrnn.tools.cli.DemoTraining`: text, model,
    Adam, clipping), each call the next chunk of the text's streams with the state carried, a
    new pass starting afresh, as the demo trains."""
    from . import cli

    d = cli.DemoTraining.build(cli.demo_args(options))
    if d.num_batches() == 0:
        raise SystemExit("the demo's text is too short for one batch (--load-demo)")
    batches, state = d.batches(), None

    def step() -> Any:
        nonlocal batches, state
        chunk = next(batches, None)
        if chunk is None:
            batches, state = d.batches(), None
            chunk = next(batches)
        state = d.step(*chunk, state).state
        return state

    return step


def _worker_case(peer: str, case: dict[str, Any]) -> Any:
    """A case of a worker's spec as a callable, or None if the peer cannot run it: the demo's
    training step (fastrnn only), or a layer case (:func:`_case`)."""
    if "demo" in case:
        return _demo_case(case["demo"]) if peer == "fastrnn" else None
    states = case["shape_name"] in WITH_STATES
    return _case(peer, case["cell"], tuple(case["shape"]), case["passes"], states)


def _mode(name: str) -> Any:
    """The module of the tables ``name``: a ``--compute-dtype`` (bfloat16, int8) or
    ``seq2seq``."""
    return importlib.import_module(f"{__package__}.{TABLES[name]}")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process, with its thread count set through the environment: the float32
    tables' worker, or with ``spec["mode"]`` ("bfloat16", "int8", "seq2seq") that mode's."""
    if spec.get("mode") in TABLES:
        return _mode(spec["mode"]).worker(spec)  # type: ignore[no-any-return]
    return _worker(spec)


def worker_start(spec: dict[str, Any], mode: str | None = None) -> dict[str, Any]:
    """A worker process's start, the one rule of every table's worker: its peer's library set
    to the spec's thread count (fastrnn's ``set_num_threads``, and its kernel variant noted;
    torch's for ``torch`` and ``fastrnn.torch``; ONNX Runtime reads FASTRNN_BENCH_THREADS, set
    by the parent) and its report ``{["mode",] "peer", "threads", "results": [], ["isa"]}``."""
    threads, peer = spec["threads"], spec["peer"]
    out: dict[str, Any] = {} if mode is None else {"mode": mode}
    out |= {"peer": peer, "threads": threads, "results": []}
    if peer.startswith("fastrnn"):
        import fastrnn

        fastrnn.set_num_threads(threads)
        out["isa"] = fastrnn.build_info()["isa"]
    if peer in ("torch", "fastrnn.torch"):
        import torch

        torch.set_num_threads(threads)
    return out


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The float32 tables' worker (see :func:`worker`)."""
    peer = spec["peer"]
    out = worker_start(spec)
    if spec.get("peak"):
        out["gemm_peak"] = _gemm_peak(spec["repeat"])
        # OpenBLAS's threads keep spinning for a while after a multi-threaded GEMM, and a
        # fastrnn team timed then loses whole scheduler slices to them (measured: the next calls
        # of a 0.1 ms, 2-thread forward took 8-16 ms each for ~80 ms): let them go to sleep
        time.sleep(0.5)
    for case in spec["cases"]:
        fn = _worker_case(peer, case)
        if fn is None:
            continue
        if spec.get("memory"):
            mib = _peak_growth(fn)
            if mib is not None:
                out["results"].append({**case, "peak_mib": mib})
            continue
        low = (spec.get("min_seconds", MIN_SECONDS), spec.get("min_runs", 1))
        secs, n = _time_runs(fn, spec["repeat"], spec["budget"], *low)
        out["results"].append({**case, "ms": secs * 1e3, "n": n, **_verify(peer, case)})
    if spec.get("overhead") and not spec.get("memory"):
        cells = {c["cell"] for c in spec["cases"]} - set(FLOAT32_ONLY_CELLS)  # no layer class
        out["overhead_us"] = _overhead(sorted(cells))
    return out


def _verify(peer: str, case: dict[str, Any]) -> dict[str, Any]:
    """After a case's timing, untimed: the torch peer's lnlstm outputs checked against
    fastrnn's (:func:`fastrnn.tools.bench_lnlstm.check`), nothing for the other cases."""
    if peer != "torch" or case.get("cell") != "lnlstm" or case["passes"] == "train-step":
        return {}
    from . import bench_lnlstm

    states = case["shape_name"] in WITH_STATES
    return bench_lnlstm.check(_Inputs.draw("lnlstm", tuple(case["shape"]), states),
                              case["passes"])  # fmt: skip


def _overhead(cells: list[str]) -> dict[str, float]:
    """Microseconds per call of a fastrnn layer's forward on T = B = 1, I = H = 32 (median over
    MIN_SECONDS of calls): what Python, the argument checks and the call itself cost."""
    import fastrnn

    x = np.zeros((1, 1, 32), np.float32)
    out = {}
    for cell in cells:
        m = getattr(fastrnn, {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell])(32, 32, seed=0)
        m.eval()
        out[cell] = _time(lambda m=m: m(x), 1000, 2 * MIN_SECONDS) * 1e6
    return out


def _available(peer: str) -> bool:
    mod = {"fastrnn": "fastrnn", "torch": "torch", "ort": "onnxruntime", "reference": "numpy",
           "fastrnn.torch": "torch"}  # fmt: skip
    try:
        __import__(mod[peer])
        if peer == "ort":
            __import__("onnx")
    except ImportError:
        return False
    return True


def _spawn(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    n = str(spec["threads"])
    env.update({"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
                "FASTRNN_BENCH_THREADS": n})  # fmt: skip
    if spec.get("isa"):
        env["FASTRNN_ISA"] = spec["isa"]
    proc = subprocess.run(
        [sys.executable, "-m", "fastrnn.tools.bench", "--worker", json.dumps(spec)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['peer']} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------ report


def _machine() -> dict[str, Any]:
    """The machine and Python the report was measured on (and fastrnn's build)."""
    machine: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import fastrnn

        machine["fastrnn"] = fastrnn.build_info()
    except ImportError:  # pragma: no cover
        pass
    return machine


def _peer_cases(peer: str, cases: list[dict[str, Any]], args: argparse.Namespace) -> list[Any]:
    """The cases a peer runs: the reference only on --reference-shapes, fastrnn.torch only the
    training steps."""
    if peer == "reference":
        return [c for c in cases if c["shape_name"] in args.reference_shapes]
    if peer == "fastrnn.torch":
        return [c for c in cases if c["passes"] == "train-step"]
    return cases


def _timing_runs(
    args: argparse.Namespace, peers: list[str], cases: list[dict[str, Any]], isas: list[str | None]
) -> list[dict[str, Any]]:
    """Every peer at every thread count, a worker process each (fastrnn one per variant)."""
    runs = []
    for threads in args.threads:
        for peer in peers:
            pcases = _peer_cases(peer, cases, args)
            if not pcases:
                continue
            # fastrnn's kernels under each variant asked for (None: the default choice)
            for i, isa in enumerate(isas if peer == "fastrnn" else [None]):
                what = f"{peer} ({isa})" if isa else peer
                print(f"  timing {what} with {threads} thread(s) ...", file=sys.stderr, flush=True)
                spec = {"peer": peer, "threads": threads, "cases": pcases, "repeat": args.repeat,
                        "budget": args.budget, "peak": peer == "fastrnn" and i == 0,
                        "overhead": peer == "fastrnn", "isa": isa}  # fmt: skip
                runs.append(_spawn(spec))
    return runs


def _memory_runs(args: argparse.Namespace, peers: list[str]) -> list[dict[str, Any]]:
    """Peak memory of fastrnn and PyTorch on --memory-shapes, one process per case."""
    mem_peers = [p for p in ("fastrnn", "torch") if p in peers]
    if args.memory_shapes and mem_peers:
        print("  peak memory, one process per case ...", file=sys.stderr, flush=True)
    memory = []
    for s in args.memory_shapes:
        for c in args.cells:
            for p in ("forward", "forward+backward"):
                for peer in mem_peers:
                    case = {"shape_name": s, "shape": list(SHAPES[s]), "cell": c, "passes": p}
                    spec = {"peer": peer, "threads": min(args.threads), "cases": [case],
                            "memory": True}  # fmt: skip
                    memory += [{"peer": peer, **r} for r in _spawn(spec)["results"]]
    return memory


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Times every case asked for, each peer in processes of its own; returns the report (what
    ``--json`` writes)."""
    peers = [p for p in args.peers if _available(p)]
    cases = [
        {"shape_name": s, "shape": list(SHAPES[s]), "cell": c, "passes": p}
        for s in args.shapes
        for c in args.cells
        for p in PASSES
        if p != "train-step" or args.train_step
    ]
    isas = _isas(args.isa)
    machine = _machine()
    runs = _timing_runs(args, peers, cases, isas)
    report = {"machine": machine, "peers": peers, "threads": args.threads, "runs": runs,
              "isas": isas, "memory": _memory_runs(args, peers)}  # fmt: skip
    if "lnlstm" in args.cells:
        from . import bench_lnlstm

        report["lnlstm"] = bench_lnlstm.rows(report, _timings(report))
    return report


# ------------------------------------------------------------------------------ under load

#: the peers ``--under-load`` times (the demo's step: fastrnn only)
LOAD_PEERS = ("fastrnn", "torch")
#: the two timings of ``--under-load``: without the competitor, then with it
LOADS = ("quiet", "loaded")
#: loaded timings are noisy: every ``--under-load`` median is of at least this many runs
LOAD_MIN_RUNS = 7
#: the target of ``--under-load``: loaded, 2 threads at least this fraction of 1 thread's speed
LOAD_TARGET = 0.8
#: the name of the demo's training step in the ``--under-load`` table
DEMO_CASE = "demo train-step"
#: in the competitor's command line, to tell it from other processes
COMPETITOR_MARK = "fastrnn.bench competitor"
# a pure busy loop; it ends by itself once its parent is gone (killed without unwinding)
_BUSY = f"""# {COMPETITOR_MARK}
import os, sys
parent = os.getppid()
sys.stdout.write("busy\\n")
sys.stdout.flush()
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


class Competitor:
    """A process competing for one core while the loaded timings run: a busy loop in a
    ``python -c`` process of its own, pinned to the last CPU of this process's allowed set where
    the OS can pin a process (``os.sched_setaffinity``), unpinned elsewhere. A context manager:
    entered once the loop spins; on exit, however the block ends (an exception, Ctrl-C), the
    process is killed and reaped."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.cpu: int | None = None  # the CPU it is pinned to (None: unpinned)
        self.allowed: list[int] | None = None  # this process's CPUs, where the OS tells

    def __enter__(self) -> Competitor:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BUSY], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            self._pin(self.proc.pid)
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != "busy":
                raise RuntimeError(f"the competitor process ended (status {self.proc.wait()})")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _pin(self, pid: int) -> None:
        if not hasattr(os, "sched_setaffinity"):
            return
        self.allowed = sorted(os.sched_getaffinity(0))
        try:
            os.sched_setaffinity(pid, {self.allowed[-1]})
        except OSError:  # not permitted here: it runs unpinned
            return
        self.cpu = self.allowed[-1]

    def stop(self) -> None:
        """Kills the process and waits for it (nothing if it is not running)."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def info(self) -> dict[str, Any]:
        """What the report says of it: pid, the CPU it was pinned to (None: unpinned) and the
        CPUs this process may use (None: the OS does not tell)."""
        pid = self.proc.pid if self.proc is not None else None
        return {"pid": pid, "cpu": self.cpu, "pinned": self.cpu is not None,
                "allowed_cpus": self.allowed}  # fmt: skip


#: other processes keeping more CPUs than this busy on average: the run was not quiet
QUIET_CPUS = 0.25


def _cpu_seconds() -> tuple[float, float] | None:
    """CPU seconds so far: the whole machine's busy time (every CPU, from /proc/stat; the time the
    hypervisor took included), and this process's with its reaped children's (os.times); None
    where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]  # user ... steal
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # - idle, iowait
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


class _OthersMeter:
    """How many CPUs other processes kept busy, on average, from its creation to
    :meth:`cpus`: the machine's busy time minus the bench's own (its workers and the competitor
    once reaped). A shared machine is not quiet, and its load is part of every timing."""

    def __init__(self) -> None:
        self.start, self.t0 = _cpu_seconds(), time.perf_counter()

    def cpus(self) -> float | None:
        end, seconds = _cpu_seconds(), time.perf_counter() - self.t0
        if self.start is None or end is None or seconds <= 0:
            return None
        return max(0.0, (end[0] - self.start[0] - (end[1] - self.start[1])) / seconds)


def _demo_about(options: list[str]) -> dict[str, Any]:
    """The demo's training step the bench times: its options, a line describing it, and the
    characters one step trains on."""
    from . import cli

    a = cli.demo_args(options)
    text = a.text or f"the built-in corpus ({a.max_chars:,} characters at most)"
    about = (f"{a.cell.upper()} {a.layers}x{a.hidden}, embedding {a.embedding}, batch "
             f"{a.batch} x {a.seq_len} characters, Adam lr {a.lr}, clip norm "
             f"{cli.DEMO_CLIP_NORM:g}, {text}")  # fmt: skip
    return {"options": options, "about": about, "chars_per_step": a.batch * a.seq_len}


def _load_cases(args: argparse.Namespace, demo: dict[str, Any]) -> list[dict[str, Any]]:
    """The cases timed under load: the demo's training step, the layer's forward+backward."""
    s, c = args.load_shape, args.load_cell
    return [
        {"case": DEMO_CASE, "passes": "train-step", "demo": demo["options"],
         "chars": demo["chars_per_step"]},
        {"case": f"{s} {c} fwd+bwd", "shape_name": s, "shape": list(SHAPES[s]), "cell": c,
         "passes": "forward+backward"},
    ]  # fmt: skip


def _load_runs(
    args: argparse.Namespace, peers: list[str], cases: list[dict[str, Any]], load: str
) -> list[dict[str, Any]]:
    """Every peer at every thread count, a worker process each, marked quiet or loaded."""
    runs = []
    for threads in args.threads:
        for peer in peers:
            print(f"  timing {peer} with {threads} thread(s), {load} ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            spec = {"peer": peer, "threads": threads, "cases": cases, "repeat": args.repeat,
                    "budget": args.budget, "min_seconds": args.load_seconds,
                    "min_runs": LOAD_MIN_RUNS}  # fmt: skip
            runs.append({"load": load, **_spawn(spec)})
    return runs


def run_under_load(args: argparse.Namespace) -> dict[str, Any]:
    """--under-load: the cases timed quietly, then again with a :class:`Competitor` running
    throughout (killed at the end, whatever happens); returns the report (``--json``)."""
    peers = [p for p in LOAD_PEERS if p in args.peers and _available(p)]
    demo = _demo_about(shlex.split(args.load_demo))
    cases = _load_cases(args, demo)
    machine = _machine()
    meter = _OthersMeter()
    runs = _load_runs(args, peers, cases, "quiet")
    others = {"quiet": meter.cpus()}
    print("  starting the competitor ...", file=sys.stderr, flush=True)
    meter = _OthersMeter()
    with Competitor() as competitor:
        runs += _load_runs(args, peers, cases, "loaded")
    others["loaded"] = meter.cpus()  # the competitor reaped: its time counts as the bench's
    return {"machine": machine, "mode": "under-load", "peers": peers, "threads": args.threads,
            "min_runs": LOAD_MIN_RUNS, "min_seconds": args.load_seconds, "demo": demo,
            "competitor": competitor.info(), "others_busy_cpus": others, "runs": runs,
            "summary": _load_summary(runs, args.threads)}  # fmt: skip


def _load_row(ms: dict[tuple[Any, ...], float], case: dict[str, Any], peer: str,
              threads: list[int]) -> dict[str, Any]:  # fmt: skip
    """One case and peer: ms by thread count (JSON keys: strings), quiet and loaded, the speed
    at each thread count over the fewest's, and the demo's characters/s."""
    base = min(threads)
    row: dict[str, Any] = {"case": case["case"], "peer": peer}
    for load in LOADS:
        t_ms = {str(t): ms[(load, peer, t, case["case"])] for t in threads
                if (load, peer, t, case["case"]) in ms}  # fmt: skip
        row[f"{load}_ms"] = t_ms
        if str(base) in t_ms:
            row[f"{load}_speed_ratio"] = {t: t_ms[str(base)] / v for t, v in t_ms.items()
                                          if t != str(base)}  # fmt: skip
        if "chars" in case:
            row[f"{load}_chars_per_s"] = {t: case["chars"] / v * 1e3 for t, v in t_ms.items()}
    return row


def _load_summary(runs: list[dict[str, Any]], threads: list[int]) -> list[dict[str, Any]]:
    """A row per case and peer (see :func:`_load_row`), in the order they were timed."""
    ms = {(r["load"], r["peer"], r["threads"], c["case"]): c["ms"]
          for r in runs for c in r["results"]}  # fmt: skip
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        for c in r["results"]:
            found.setdefault((c["case"], r["peer"]), c)
    order = sorted(found, key=lambda k: (k[0] != DEMO_CASE, k[0], LOAD_PEERS.index(k[1])))
    return [_load_row(ms, found[k], k[1], sorted(set(threads))) for k in order]


def _isas(wanted: list[str] | None) -> list[str | None]:
    """The variants to time fastrnn under: None (the default choice) unless --isa names some;
    "all" means every variant this CPU runs. An unknown one is an error here, before timing."""
    if not wanted:
        return [None]
    import fastrnn

    info = fastrnn.build_info()
    names = info["isa_available"] if wanted == ["all"] else wanted
    for n in names:
        if n not in info["isa_available"]:
            raise SystemExit(f"--isa: {n!r} is not a variant this CPU runs; choose from "
                             f"{', '.join(info['isa_available'])} (or all)")  # fmt: skip
    return list(names)


def _ms(v: float, width: int) -> str:
    """Milliseconds with 2 decimals, 3 under 1 ms (S5's calls take tens of microseconds)."""
    return f"{v:>{width}.{2 if v >= 1 else 3}f}"


def _pass(passes: str) -> str:
    return "fwd" if passes == "forward" else "fwd+bwd"


def _timings(report: dict[str, Any]) -> dict[tuple[Any, ...], float]:
    """Milliseconds by (peer, threads, shape, cell, passes); fastrnn's runs under --isa variants
    are kept apart, as the peer ("fastrnn", isa)."""
    isas = report.get("isas", [None])
    ms: dict[tuple[Any, ...], float] = {}
    for r in report["runs"]:
        peer = (r["peer"], r.get("isa")) if r["peer"] == "fastrnn" and isas != [None] else r["peer"]
        for c in r["results"]:
            ms[(peer, r["threads"], c["shape_name"], c["cell"], c["passes"])] = c["ms"]
    return ms


def _speed_tables(
    ms: dict[tuple[Any, ...], float],
    peak: dict[int, float],
    isas: list[str | None],
    others: list[str],
) -> list[str]:
    """fastrnn's times against each other peer's, one table per kernel variant."""
    cw = max([5, *(len(k[3]) for k in ms)])  # the cell column: lnlstm is wider
    head = (
        f"{'shape':<5} {'cell':<{cw}} {'pass':<8} {'thr':>3} {'fastrnn ms':>10} {'GFLOP/s':>8} "
        f"{'%peak':>6}"
    )
    for p in others:
        head += f" {p + ' ms':>13} {'x':>6}"
    lines: list[str] = []
    for isa in isas:
        me: Any = "fastrnn" if isa is None else ("fastrnn", isa)
        if isa is not None:
            lines += ([""] if lines else []) + [f"fastrnn kernel variant {isa}:"]
        lines += [head, "-" * len(head)]
        keys = sorted({k[1:] for k in ms if k[0] == me},
                      key=lambda k: (k[1], k[2], k[3], k[0]))  # fmt: skip
        for threads, shape, cell, passes in keys:
            t = ms[(me, threads, shape, cell, passes)]
            gf = flops(cell, SHAPES[shape], passes) / t / 1e6
            row = (f"{shape:<5} {cell:<{cw}} {_pass(passes):<8} "
                   f"{threads:>3} {_ms(t, 10)} {gf:>8.1f} "
                   f"{100 * gf / peak[threads]:>5.0f}%")  # fmt: skip
            for p in others:
                o = ms.get((p, threads, shape, cell, passes))
                row += f" {_ms(o, 13)} {o / t:>5.2f}x" if o else f" {'-':>13} {'':>6}"
            lines.append(row)
    return lines


def _peak_and_overhead(runs: list[dict[str, Any]], peak: dict[int, float]) -> list[str]:
    """The GEMM peak and the call overhead lines."""
    peaks = ", ".join(f"{v:.0f} GFLOP/s at {k} thread(s)" for k, v in sorted(peak.items()))
    lines = [f"float32 GEMM peak (NumPy 2048^3, same run): {peaks}"]
    overhead = [(r["threads"], r.get("isa"), r["overhead_us"]) for r in runs if "overhead_us" in r]
    for threads, isa, us in sorted(overhead, key=lambda o: o[0]):
        calls = ", ".join(f"{cell.upper()} {v:.1f}" for cell, v in us.items())
        lines.append(f"fastrnn layer forward call ({isa}), T = B = 1, I = H = 32, {threads} "
                     f"thread(s), median µs: {calls}")  # fmt: skip
    return lines


def _train_step_table(ms: dict[tuple[Any, ...], float]) -> list[str]:
    """torch.nn against fastrnn.torch inside a PyTorch training step (nothing if not timed)."""
    steps = sorted({k[1:4] for k in ms if k[0] == "fastrnn.torch"},
                   key=lambda k: (k[1], k[2], k[0]))  # fmt: skip
    if not steps:
        return []
    lines = ["", "Inside a PyTorch training step (layer + Linear head + MSE + Adam, float32):",
             f"{'shape':<5} {'cell':<5} {'thr':>3} {'torch.nn ms':>12} "
             f"{'fastrnn.torch ms':>17} {'speed-up':>9}"]  # fmt: skip
    for threads, shape, cell in steps:
        f = ms[("fastrnn.torch", threads, shape, cell, "train-step")]
        o = ms.get(("torch", threads, shape, cell, "train-step"))
        lines.append(f"{shape:<5} {cell:<5} {threads:>3} "
                     + (_ms(o, 12) if o else f"{'-':>12}")
                     + f" {_ms(f, 17)} " + (f"{o / f:>8.2f}x" if o else ""))  # fmt: skip
    return lines


def _memory_table(memory: list[dict[str, Any]]) -> list[str]:
    """fastrnn's peak memory against PyTorch's (nothing if not measured)."""
    mem = {(m["peer"], m["shape_name"], m["cell"], m["passes"]): m["peak_mib"] for m in memory}
    if not mem:
        return []
    cw = max([5, *(len(k[2]) for k in mem)])  # the cell column: lnlstm is wider
    lines = ["", "Peak resident memory of a call beyond the inputs and the model (MiB, one "
             "process per case; fastrnn's forward includes its output):",
             f"{'shape':<5} {'cell':<{cw}} {'pass':<8} {'fastrnn':>9} {'torch':>9} "
             f"{'fastrnn/torch':>14}"]  # fmt: skip
    for shape, cell, passes in sorted({k[1:] for k in mem}):
        fm = mem.get(("fastrnn", shape, cell, passes))
        om = mem.get(("torch", shape, cell, passes))
        lines.append(f"{shape:<5} {cell:<{cw}} {_pass(passes):<8} "
                     + (f"{fm:>9.1f}" if fm is not None else f"{'-':>9}")
                     + (f" {om:>9.1f}" if om is not None else f" {'-':>9}")
                     + (f" {fm / om:>13.2f}x" if fm is not None and om else ""))  # fmt: skip
    return lines


def table(report: dict[str, Any]) -> str:
    """The report as text: the speed tables, the layer-normalised LSTM's (lnlstm) ratios,
    targets and check, the GEMM peak, the call overhead, the training steps and the peak
    memory."""
    runs = report["runs"]
    peak = {r["threads"]: r["gemm_peak"] for r in runs if "gemm_peak" in r}
    ms = _timings(report)
    others = [p for p in report["peers"] if p not in ("fastrnn", "fastrnn.torch")]
    lines = _speed_tables(ms, peak, report.get("isas", [None]), others)
    if report.get("lnlstm"):
        from . import bench_lnlstm

        lines += bench_lnlstm.table_lines(report)
    lines += ["", *_peak_and_overhead(runs, peak)]
    lines += _train_step_table(ms)
    lines += _memory_table(report.get("memory", []))
    return "\n".join(lines)


def _competitor_line(c: dict[str, Any]) -> str:
    """Where the competitor ran."""
    if c["pinned"]:
        cpus = ", ".join(map(str, c["allowed_cpus"]))
        where = f"pinned to CPU {c['cpu']} (this process may use CPUs {cpus})"
    elif c["allowed_cpus"] is None:
        where = "unpinned (this platform cannot pin a process to a CPU)"
    else:
        where = "unpinned (pinning it was refused)"
    return (f"loaded: a busy-loop process (pid {c['pid']}) {where}, running through every "
            "loaded timing")  # fmt: skip


def _others_line(others: dict[str, float | None], cpus: int | None) -> list[str]:
    """How busy other processes kept the machine during each load (nothing where unknown)."""
    if any(others.get(load) is None for load in LOADS):
        return []
    line = (f"other processes kept {others['quiet']:.2f} (quiet timings) and "
            f"{others['loaded']:.2f} (loaded) of the machine's {cpus} CPUs busy on average, the "
            "bench's own not counted")  # fmt: skip
    if max(v for v in others.values() if v is not None) > QUIET_CPUS:
        line += ": the machine was not quiet, and the timings include their load"
    return [line + "."]


def _load_rows(summary: list[dict[str, Any]], threads: list[int]) -> list[str]:
    """The table of the loaded and quiet timings, with the speed ratios."""
    base = threads[0]
    heads = [f"{load} {t}t" for load in LOADS for t in threads]
    ratios = [f"{load} {t}t/{base}t" for load in LOADS for t in threads[1:]]
    head = f"{'case':<20} {'peer':<8}" + "".join(f" {h:>10}" for h in heads)
    head += "".join(f" {h:>14}" for h in ratios)
    lines = [head, "-" * len(head)]
    for row in summary:
        line = f"{row['case']:<20} {row['peer']:<8}"
        for load in LOADS:
            for t in threads:
                v = row[f"{load}_ms"].get(str(t))
                line += f" {_ms(v, 10)}" if v else f" {'-':>10}"
        for load in LOADS:
            for t in threads[1:]:
                r = row.get(f"{load}_speed_ratio", {}).get(str(t))
                line += f" {r:>13.2f}x" if r else f" {'-':>14}"
        lines.append(line)
    return lines


def _load_notes(report: dict[str, Any], threads: list[int]) -> list[str]:
    """The demo's characters/s, and fastrnn's loaded speed ratios against the target."""
    lines = []
    for row in report["summary"]:
        if row["case"] == DEMO_CASE:
            for load in LOADS:
                cps = row.get(f"{load}_chars_per_s", {})
                rates = ", ".join(f"{cps[str(t)]:,.0f} at {t}t" for t in threads if str(t) in cps)
                lines.append(f"demo train-step, {row['peer']}, {load}: characters/s {rates}")
    if 1 in threads and 2 in threads:
        mine = [f"{r['case']} {r['loaded_speed_ratio']['2']:.2f}x" for r in report["summary"]
                if r["peer"] == "fastrnn" and "2" in r.get("loaded_speed_ratio", {})]  # fmt: skip
        if mine:
            lines.append(f"fastrnn loaded, speed at 2 threads / at 1: {', '.join(mine)} "
                         f"(target: at least {LOAD_TARGET}x)")  # fmt: skip
    return lines


def load_table(report: dict[str, Any]) -> str:
    """The --under-load report as text: what was timed and how, the table of milliseconds and
    speed ratios (speed at N threads over the fewest's: its time / N's), the demo's
    characters/s."""
    threads = sorted(set(report["threads"]))
    demo = report["demo"]
    lines = [
        f"Under load: {DEMO_CASE} = one training step of `fastrnn demo` ({demo['about']}; "
        f"{demo['chars_per_step']:,} characters a step).",
        f"Each peer and thread count in a process of its own; median ms of at least "
        f"{report['min_runs']} runs, more for {report['min_seconds']:g} s or --repeat runs within "
        "--budget.",
        "quiet: nothing started by the bench; " + _competitor_line(report["competitor"]) + ".",
        *_others_line(report.get("others_busy_cpus", {}), report["machine"]["cpus"]),
        "",
    ]
    lines += _load_rows(report["summary"], threads)
    return "\n".join([*lines, "", *_load_notes(report, threads)])


#: what ``pip`` installs for the charts
PLOT_EXTRA = 'pip install "fastrnn[plot]"'


def _matplotlib() -> Any:
    """matplotlib's Figure class and its ticker module, or None (and a note on stderr) where
    matplotlib is missing."""
    try:
        from matplotlib import ticker  # type: ignore[import-not-found, unused-ignore]
        from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print(f"a chart needs matplotlib: {PLOT_EXTRA}", file=sys.stderr)
        return None
    return Figure, ticker


def ratio_chart(
    panels: dict[str, tuple[list[str], dict[str, list[float | None]]]],
    ylabel: str,
    title: str = "",
    path: str | None = None,
) -> Any:
    """The bench's chart: one panel of bars per entry of ``panels`` (its title: ``(labels,
    {series: values})``, a value per label, None where not timed), each bar drawn from 1 to its
    value on a log scale shared by the panels (up: above 1, down: below), two panels a row.
    Every table's chart is drawn by it (:func:`chart`, and the ``chart`` of
    :mod:`~fastrnn.tools.bench_bf16`, :mod:`~fastrnn.tools.bench_int8` and
    :mod:`~fastrnn.tools.bench_seq2seq`). Returns the matplotlib Figure (made without pyplot;
    a notebook shows it), saved to ``path`` (PNG) if given; None without matplotlib."""
    got = _matplotlib()
    if got is None:
        return None
    Figure, ticker = got
    ncols = min(2, len(panels)) or 1
    nrows = max(1, -(-len(panels) // ncols))
    widest = max((len(labels) for labels, _ in panels.values()), default=1)
    size = (ncols * max(4.5, 0.42 * widest + 1.5), 3.3 * nrows + 0.6 * bool(title))
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    values = [v for _, series in panels.values() for vs in series.values() for v in vs if v]
    low, high = min([1.0, *values]), max([1.0, *values])
    peers = list(dict.fromkeys(p for _, series in panels.values() for p in series))
    colours = {p: f"C{i}" for i, p in enumerate(peers)}
    for ax, (name, (labels, series)) in zip(axes.flat, panels.items(), strict=False):
        width = 0.8 / max(1, len(series))
        x = np.arange(len(labels))
        for i, (peer, vals) in enumerate(series.items()):
            ys = np.array([np.nan if v is None else v for v in vals])
            ax.bar(x + (i - (len(series) - 1) / 2) * width, ys - 1, width, bottom=1.0,
                   label=peer, color=colours[peer])  # fmt: skip
        ax.set_xticks(x, labels, rotation=90, fontsize=7)
        ax.set_title(name, fontsize=9)
    ax0 = axes.flat[0]
    ax0.set_yscale("log")
    ax0.set_ylim(low / 1.15, high * 1.15)
    ax0.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax0.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax0.yaxis.set_minor_formatter(ticker.NullFormatter())
    for ax in axes.flat:
        ax.axhline(1.0, color="k", lw=0.6)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    handles = [h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]]
    names = [n for ax in axes.flat for n in ax.get_legend_handles_labels()[1]]
    first = {n: h for h, n in zip(handles, names, strict=True)}
    fig.legend(list(first.values()), list(first), loc="outside upper right", fontsize=8,
               ncols=len(first))  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    if path:
        fig.savefig(path, dpi=120)
    return fig


def _case_label(cell: str, passes: str, threads: int) -> str:
    return f"{cell} {'fwd' if passes == 'forward' else 'f+b'} {threads}t"


def chart(report: dict[str, Any], path: str | None = None, *, isa: str | None = None) -> Any:
    """The float32 report's chart (``--png``): for each shape a panel, for each cell, pass and
    thread count fastrnn timed a bar per other peer, its time over fastrnn's (above 1: fastrnn
    faster), on a log scale. ``isa``: with ``--isa``, the variant whose timings are fastrnn's
    (default: the first). The whole PyTorch training steps are not charted (their table is).
    Returns the Figure (see :func:`ratio_chart`), saved to ``path`` if given."""
    isas = report.get("isas", [None])
    isa = isa if isa is not None else isas[0]
    if isa not in isas:
        raise ValueError(f"isa: the report has the variants {isas}, not {isa!r}")
    ms = _timings(report)
    me: Any = "fastrnn" if isas == [None] else ("fastrnn", isa)
    others = [p for p in report["peers"] if p not in ("fastrnn", "fastrnn.torch")]
    keys = sorted({k[1:] for k in ms if k[0] == me and k[4] != "train-step"},
                  key=lambda k: (k[1], k[2], k[3], k[0]))  # fmt: skip
    panels: dict[str, tuple[list[str], dict[str, list[float | None]]]] = {}
    for shape in sorted({k[1] for k in keys}):
        mine = [k for k in keys if k[1] == shape]
        labels = [_case_label(k[2], k[3], k[0]) for k in mine]
        series: dict[str, list[float | None]] = {}
        for p in others:
            vals: list[float | None] = []
            for k in mine:
                theirs, ours = (p, *k), (me, *k)
                vals.append(ms[theirs] / ms[ours] if theirs in ms else None)
            if any(v is not None for v in vals):
                series[p] = vals
        name = f"{shape} (T, B, I, H = {', '.join(map(str, SHAPES[shape]))})"
        panels[name] = (labels, series)
    title = "float32" + (f", fastrnn kernel variant {isa}" if isa else "")
    return ratio_chart(panels, "peer ms / fastrnn ms (> 1: fastrnn faster)", title, path)


def draw(report: dict[str, Any], path: str | None = None) -> Any:
    """The chart of any bench report (what ``--json`` wrote): the float32 tables' (:func:`chart`)
    or, by the report's ``"mode"``, the bfloat16, int8 or seq2seq table's; a ValueError for an
    ``--under-load`` report (it has no chart). Returns the Figure, saved to ``path`` if
    given."""
    mode = report.get("mode")
    if mode is None:
        return chart(report, path)
    if mode not in TABLES:
        raise ValueError(f"no chart of a {mode!r} report (only of the float32, "
                         f"{', '.join(TABLES)} tables)")  # fmt: skip
    return _mode(mode).chart(report, path)


def chart_from_json(json_path: str, path: str | None = None) -> Any:
    """The chart of a report saved by ``--json`` (:func:`draw`): ``python -m fastrnn.bench
    --replot FILE --png OUT`` from the command line. Returns the Figure, saved to ``path`` if
    given."""
    with open(json_path, encoding="utf-8") as f:
        report = json.load(f)
    return draw(report, path)


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = _options.parser(
        prog,
        "fastrnn against PyTorch, ONNX Runtime and the NumPy reference: milliseconds, GFLOP/s, "
        "fraction of the GEMM peak, speed-ups and peak memory.",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    shapes = ", ".join(f"{k} = {','.join(map(str, v))}" for k, v in SHAPES.items())

    def choose(flag: str, choices: Any, default: Any, help: str, nargs: str = "+") -> None:
        meta = flag.rsplit("-", 1)[-1].upper().rstrip("S")
        ap.add_argument(flag, nargs=nargs, default=default, choices=list(choices), metavar=meta,
                        help=help)  # fmt: skip

    bf16_shapes, int8_shapes = " ".join(BF16_SHAPES), " ".join(INT8_SHAPES)
    choose("--shapes", SHAPES, None, f"problem sizes to time, T,B,I,H: {shapes} (default: "
           f"all; {bf16_shapes} with --compute-dtype bfloat16, {int8_shapes} with "
           "--compute-dtype int8)")  # fmt: skip
    choose("--cells", CELLS, list(DEFAULT_CELLS),
           f"cells to time (default: {' '.join(DEFAULT_CELLS)}); lnlstm, the layer-normalised "
           "LSTM, is timed by fastrnn and torch only (a TorchScript LayerNormLSTM after PyTorch's "
           "benchmarks/fastrnns/custom_lstms.py, checked to compute fastrnn's outputs), with "
           "its time over fastrnn's plain LSTM's of the run (time lstm too) under the table; "
           "float32 tables only")  # fmt: skip
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2], metavar="N",
                    help="thread counts, each timed in processes of its own")  # fmt: skip
    choose("--peers", PEERS, list(PEERS),
           f"what to time, of {', '.join(PEERS)} (those not installed are skipped)")  # fmt: skip
    choose("--reference-shapes", SHAPES, ["S1", "S3"], "shapes the (slow) NumPy reference runs on",
           "*")  # fmt: skip
    choose("--memory-shapes", SHAPES, ["S4"],
           "shapes whose peak memory is measured (none given: skip)", "*")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=5, help="runs per case (median)")
    ap.add_argument(
        "--budget",
        type=float,
        default=4.0,
        help="seconds per case, at most about (one run at least)",
    )
    ap.add_argument(
        "--no-train-step",
        dest="train_step",
        action="store_false",
        help="skip the rows of a whole PyTorch training step (torch.nn vs fastrnn.torch)",
    )
    ap.add_argument(
        "--isa",
        nargs="+",
        metavar="VARIANT",
        help="time fastrnn under these kernel variants (FASTRNN_ISA), or 'all' "
        "(default: the one chosen at import)",
    )
    ap.add_argument(
        "--compute-dtype",
        choices=("float32", *MODES),
        default="float32",
        help="bfloat16: instead of the float32 tables, fastrnn with compute_dtype='bfloat16' "
        "against torch.nn under torch.autocast('cpu', dtype=torch.bfloat16), with fastrnn "
        "float32 and the bfloat16 GEMM peak (torch.matmul) timed in the same run (--shapes, "
        "--cells, --threads, --peers fastrnn torch, --repeat, --budget and --json apply); "
        "int8: the forward of fastrnn.quantize_dynamic(layer) against ONNX Runtime's "
        "DynamicQuantizeLSTM for LSTM and its float32 for GRU and RNN, with both in float32, "
        "the int8 outputs' deviation from float32 and the weights' bytes (--peers fastrnn ort; "
        "the same options apply)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="with --compute-dtype int8 or --seq2seq: time each shape (--seq2seq: each case) "
        "N times, the peers' processes alternating, and report the median of the rounds (a "
        "shared machine's speed drifts)",
    )
    _load_options(ap, choose)
    _mode(SEQ2SEQ).add_options(ap)
    ap.add_argument(
        "--json", metavar="FILE", help="write the results to this JSON file (default: none)"
    )
    ap.add_argument(
        "--png",
        metavar="FILE",
        help="draw a chart into this PNG file, needs matplotlib (default: none)",
    )
    ap.add_argument(
        "--replot",
        metavar="JSON",
        help="time nothing: draw the chart of a report saved by --json (any table's but "
        "--under-load's) into --png FILE (default: none, time the peers)",
    )
    return ap


def _load_options(ap: argparse.ArgumentParser, choose: Any) -> None:
    """--under-load and the options of its scenario."""
    ap.add_argument(
        "--under-load",
        action="store_true",
        help="instead of the peer tables, the 'under load' scenario: the demo's training step "
        "(fastrnn) and a --load-shape --load-cell forward+backward (fastrnn, torch), at each "
        "--threads count, first quietly, then with a busy competitor process pinned to one CPU "
        "running throughout; prints ms and the speed at N threads over the fewest's "
        "(--threads, --peers, --repeat, --budget and --json apply)",
    )
    choose("--load-shape", SHAPES, "S1", "with --under-load: the layer case's shape", None)
    choose("--load-cell", CELLS, "lstm", "with --under-load: the layer case's cell", None)
    ap.add_argument(
        "--load-demo",
        metavar="OPTIONS",
        default="",
        help="with --under-load: options of `fastrnn demo` for the timed training step, in one "
        "argument, e.g. '--hidden 64 --batch 8' (default: none, the demo's defaults)",
    )
    ap.add_argument(
        "--load-seconds",
        type=float,
        default=2.0,
        metavar="S",
        help=f"with --under-load: each case runs at least {LOAD_MIN_RUNS} times, then on for "
        "at least this long (or --repeat runs) within --budget; the median is reported",
    )


def _check_under_load(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--under-load's arguments; the demo's options are checked by the demo's parser."""
    if not args.under_load:
        return
    if args.png:
        ap.error("--png: not with --under-load (its results are the table and --json)")
    if args.isa:
        ap.error("--isa: not with --under-load (it times the kernel variant chosen at import)")
    if args.load_seconds < 0:
        ap.error(f"--load-seconds: must be >= 0, got {args.load_seconds}")
    try:
        options = shlex.split(args.load_demo)
    except ValueError as e:
        ap.error(f"--load-demo: {e}")
    from . import cli

    if cli.demo_args(options).threads is not None:
        ap.error("--load-demo: no --threads in it (the bench's --threads sets them)")


def _check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The arguments, before any timing: a one-line usage error (exit status 2)."""
    if args.repeat < 1:
        ap.error(f"--repeat: must be >= 1, got {args.repeat}")
    if args.rounds < 1:
        ap.error(f"--rounds: must be >= 1, got {args.rounds}")
    if args.rounds > 1 and args.compute_dtype != "int8" and not args.seq2seq:
        ap.error("--rounds: only with --compute-dtype int8 or --seq2seq")
    if not args.budget > 0:
        ap.error(f"--budget: must be > 0, got {args.budget}")
    _options.check_threads(ap, args.threads)
    _options.check_output_path(ap, "--json", args.json)
    _options.check_output_path(ap, "--png", args.png)
    _check_under_load(ap, args)
    if args.seq2seq:
        _mode(SEQ2SEQ).check(ap, args)
    else:
        _mode(SEQ2SEQ).check_unused(ap, args)
    if args.compute_dtype in MODES:
        _mode(args.compute_dtype).check(ap, args)
        only = [c for c in args.cells if c in FLOAT32_ONLY_CELLS]
        if only:
            ap.error(f"--cells {' '.join(only)}: not with --compute-dtype {args.compute_dtype} "
                     "(float32 tables only)")  # fmt: skip
    if args.shapes is None:
        default = {"bfloat16": BF16_SHAPES, "int8": INT8_SHAPES}.get(args.compute_dtype, SHAPES)
        args.shapes = list(default)


def _replot(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--replot JSON --png FILE``: the saved report's chart, nothing timed."""
    if not args.png:
        ap.error("--replot: give the chart's file with --png FILE")
    _options.check_input_file(ap, "--replot", args.replot)
    _options.check_output_path(ap, "--png", args.png)
    try:
        with open(args.replot, encoding="utf-8") as f:
            report = json.load(f)
        if not isinstance(report, dict) or "runs" not in report:
            raise ValueError("not a report of the bench's --json")
        fig = draw(report, args.png)
    except (ValueError, KeyError, TypeError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        ap.error(f"--replot: {args.replot!r}: {what}")
    if fig is None:
        return 1
    print(f"the chart of {args.replot}: {args.png}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m fastrnn.bench") -> int:
    """Runs the benchmark (``fastrnn bench``, ``python -m fastrnn.bench``); ``prog`` names the
    command in its help and errors."""
    ap = _parser(prog)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.replot is not None:
        return _replot(ap, args)
    _check(ap, args)
    tables = args.compute_dtype if args.compute_dtype in MODES else None
    tables = SEQ2SEQ if args.seq2seq else tables  # (_check: not both)
    if tables is not None:
        mode = _mode(tables)
        report = mode.run(args)
        print(mode.table(report))
    else:
        report = run_under_load(args) if args.under_load else run(args)
        print(load_table(report) if args.under_load else table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.png:
        chart(report, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
