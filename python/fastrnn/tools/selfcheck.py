"""``fastrnn selfcheck``: check every cell against the NumPy reference and time both.

For each cell, the compiled kernels and :mod:`fastrnn.reference` run the same problem; the largest
relative difference of the outputs and of every gradient is reported (float64 and float32), then
forward (inference) and forward+backward times, kernels vs reference. Exits with status 1 if any
difference is above its tolerance. Prints the kernel variant (instruction set) in use and those
this CPU can run; ``--every-isa`` repeats the checks under each of them (``FASTRNN_ISA``, one
process each). Its options are on :mod:`fastrnn.tools.cli`'s page, with the other subcommands'.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import __version__, build_info
from .. import functional as F
from .. import reference as R
from . import _options

__all__ = ["LABELS", "TOLERANCE", "main", "max_error", "timings"]

#: the largest :func:`max_error` that passes, by dtype
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}
#: each cell of :data:`fastrnn.functional.CELLS` as the report names it
LABELS = {
    "rnn_tanh": "RNN tanh",
    "rnn_relu": "RNN relu",
    "lstm": "LSTM",
    "gru": "GRU",
    "gru_reset_before": "GRU reset_before",
    "lstm_peephole": "LSTM peephole",
    "lnlstm": "LSTM layer norm",
    "lngru": "GRU layer norm",
}


def _problem(cell: str, T: int, B: int, I: int, H: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    G = F.num_gates(cell)
    k = 1 / np.sqrt(H)
    spec = F.StackSpec(cell, I, H)
    lstm = spec.has_cell_state
    # the cell's own parameters (lstm_peephole's 3H; lnlstm's, lngru's layer norms, about their
    # starting 1 and 0)
    own = spec.entry_shapes(0).cell_params or ()
    start = list(spec.param_constants().values()) or [0.0] * len(own)
    return {
        "x": rng.standard_normal((T, B, I)),
        "params": [rng.uniform(-k, k, s) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))],
        "cell_params": [c + rng.uniform(-k, k, s) for c, s in zip(start, own, strict=True)] or None,
        "h0": rng.uniform(-1, 1, (B, H)),
        "c0": rng.uniform(-1, 1, (B, H)) if lstm else None,
        "dy": rng.standard_normal((T, B, H)),
        "dh": rng.standard_normal((B, H)),
        "dc": rng.standard_normal((B, H)) if lstm else None,
    }


def _cast(p: dict[str, Any], dtype: Any) -> dict[str, Any]:
    def c(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, list):
            return [a.astype(dtype) for a in v]
        return v.astype(dtype)

    return {k: c(v) for k, v in p.items()}


def _kernels(cell: str, p: dict[str, Any], training: bool = True) -> list[np.ndarray | None]:
    w_ih, w_hh, b_ih, b_hh = p["params"]
    own = p["cell_params"]
    fw = F.forward(cell, p["x"], w_ih, w_hh, b_ih, b_hh, p["h0"], p["c0"], cell_params=own,
                   training=training)  # fmt: skip
    if fw.workspace is None:
        return [fw.y]
    bw = F.backward(cell, p["x"], w_ih, w_hh, b_ih, b_hh, fw.workspace, p["dy"], p["dh"], p["dc"],
                    cell_params=own)  # fmt: skip
    return [fw.y, fw.h_n, fw.c_n, *bw[:7], *(bw.dcell_params or ())]


def _reference(cell: str, p: dict[str, Any]) -> list[np.ndarray | None]:
    w_ih, w_hh, b_ih, b_hh = p["params"]
    own = p["cell_params"]
    y, h, c, cache = R.forward(cell, p["x"], w_ih, w_hh, b_ih, b_hh, p["h0"], p["c0"],
                               cell_params=own)  # fmt: skip
    g = R.backward(cache, p["dy"], p["dh"], p["dc"])
    keys = ("dx", "dh0", "dc0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [y, h, c, *(g[k] for k in keys), *(g["cell_params"] or ())]


def max_error(cell: str, dtype: Any, shape: tuple[int, int, int, int]) -> float:
    """The largest difference of the kernels from :mod:`fastrnn.reference` on one random problem:
    ``max|kernel - reference| / max(1, max|reference|)`` over the outputs and all gradients.

    Args:
        cell: one of :data:`fastrnn.functional.CELLS`.
        dtype: the kernels' dtype, ``np.float32`` or ``np.float64``; the reference runs in
            float64 on the kernels' (rounded) inputs.
        shape: ``(T, B, I, H)``: steps, batch, input size, hidden size.

    Returns:
        The relative error, to compare with :data:`TOLERANCE`.
    """
    p = _cast(_problem(cell, *shape), dtype)
    ref = _reference(cell, _cast(p, np.float64))
    worst = 0.0
    for a, b in zip(_kernels(cell, p), ref, strict=False):
        if a is None or b is None:
            assert a is None and b is None
            continue
        scale = max(1.0, float(np.abs(b).max()))
        worst = max(worst, float(np.abs(a.astype(np.float64) - b).max()) / scale)
    return worst


def _median_time(fn: Callable[[], Any], repeat: int, budget: float = 2.0) -> float:
    """Median of up to `repeat` runs (fewer if they exceed `budget` seconds) after three warm-up
    runs (the first calls of a process also pay for faulting in fresh memory), in milliseconds."""
    for _ in range(3):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times) * 1e3


def timings(cell: str, shape: tuple[int, int, int, int], repeat: int) -> tuple[float, ...]:
    """The times of the kernels and of :mod:`fastrnn.reference` on one float32 problem: the
    median of up to ``repeat`` runs (fewer past 2 s) after three warm-up runs.

    Args:
        cell: one of :data:`fastrnn.functional.CELLS`.
        shape: ``(T, B, I, H)``.
        repeat: the most timed runs of each.

    Returns:
        ``(kernel forward, reference forward, kernel forward+backward, reference
        forward+backward)`` in milliseconds; the kernels' forward is inference (nothing saved).
    """
    p = _cast(_problem(cell, *shape), np.float32)
    p_inference = {**p, "dy": None}

    w_ih, w_hh, b_ih, b_hh = p["params"]
    own = p["cell_params"]

    def r_fwd() -> None:
        R.forward(cell, p["x"], w_ih, w_hh, b_ih, b_hh, p["h0"], p["c0"], cell_params=own)

    def r_step() -> None:
        cache = R.forward(cell, p["x"], w_ih, w_hh, b_ih, b_hh, p["h0"], p["c0"], cell_params=own)
        R.backward(cache[3], p["dy"], p["dh"], p["dc"])

    return (
        _median_time(lambda: _kernels(cell, p_inference, training=False), repeat),
        _median_time(r_fwd, repeat),
        _median_time(lambda: _kernels(cell, p), repeat),
        _median_time(r_step, repeat),
    )


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = _options.parser(
        prog, "Check every fastrnn cell against the NumPy reference and time both."
    )
    ap.add_argument(
        "--shape",
        type=int,
        nargs=4,
        metavar=("T", "B", "I", "H"),
        default=(50, 32, 128, 128),
        help="problem size of the timings: steps, batch, input size, hidden size",
    )
    ap.add_argument("--repeat", type=int, default=20, help="timing runs per entry (median)")
    ap.add_argument("--no-timing", action="store_true", help="only the correctness checks")
    ap.add_argument(
        "--every-isa",
        action="store_true",
        help="also run the correctness checks under every kernel variant this CPU can run",
    )
    return ap


def main(argv: list[str] | None = None, prog: str = "fastrnn selfcheck") -> int:
    """The ``fastrnn selfcheck`` command: the report on stdout.

    Args:
        argv: the command's arguments (None: ``sys.argv[1:]``); ``-h`` lists them.
        prog: the command's name in its help and errors.

    Returns:
        The exit status: 0, or 1 if a cell differs from the reference beyond
        :data:`TOLERANCE`.

    Raises:
        SystemExit: ``-h`` (status 0) or a bad argument (a usage error, status 2).
    """
    ap = _parser(prog)
    args = ap.parse_args(argv)
    if min(args.shape) < 1:
        ap.error(f"--shape: every size must be >= 1, got {' '.join(map(str, args.shape))}")
    if args.repeat < 1:
        ap.error(f"--repeat: must be >= 1, got {args.repeat}")
    shape: tuple[int, int, int, int] = tuple(args.shape)
    check_shape = (7, 3, 5, 9)

    info = build_info()
    print(
        f"fastrnn {__version__} self-check  (Python {platform.python_version()}, "
        f"NumPy {np.__version__}, Eigen {info['eigen']}, {F.get_num_threads()} threads)"
    )
    print(f"kernel variant: {info['isa']} (this CPU can run: {', '.join(info['isa_available'])}; "
          f"FASTRNN_ISA=<name> chooses one)")  # fmt: skip
    print(f"SIMD: {info['simd']}")
    print(f"max relative error vs reference on T,B,I,H = {check_shape} (all outputs and "
          f"gradients); timings float32, T,B,I,H = {shape}, "
          f"median of up to {args.repeat} runs\n")  # fmt: skip

    head = f"{'cell':<17} {'err f64':>8} {'err f32':>8}  "
    if not args.no_timing:
        head += (f"{'fwd ms':>8} {'ref ms':>8} {'speed-up':>8}   "
                 f"{'fwd+bwd ms':>10} {'ref ms':>8} {'speed-up':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    failed = []
    for cell in F.CELLS:
        e64 = max_error(cell, np.float64, check_shape)
        e32 = max_error(cell, np.float32, check_shape)
        ok = e64 <= TOLERANCE[np.float64] and e32 <= TOLERANCE[np.float32]
        if not ok:
            failed.append(cell)
        row = f"{LABELS[cell]:<17} {e64:8.1e} {e32:8.1e}  "
        if not args.no_timing:
            kf, rf, ks, rs = timings(cell, shape, args.repeat)
            row += f"{kf:8.2f} {rf:8.2f} {rf / kf:7.1f}x   {ks:10.2f} {rs:8.2f} {rs / ks:7.1f}x"
        print(row + ("" if ok else "   FAILED"))
    print()
    tol = f"float64 {TOLERANCE[np.float64]:g}, float32 {TOLERANCE[np.float32]:g}"
    if args.every_isa:
        failed += _every_isa(info)
    if failed:
        print(f"FAILED: {', '.join(failed)} differ from the reference beyond tolerance ({tol})")
        return 1
    print(f"all cells agree with the reference (tolerance {tol})")
    return 0


def _every_isa(info: dict[str, Any]) -> list[str]:
    """Runs the correctness checks under each variant this CPU can run but the one in use, each
    in a process of its own; returns the variants whose checks failed."""
    failed = []
    for name in info["isa_available"]:
        if name == info["isa"]:
            continue
        proc = subprocess.run(
            [sys.executable, "-m", "fastrnn", "selfcheck", "--no-timing"],
            env={**os.environ, "FASTRNN_ISA": name}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        ok = proc.returncode == 0
        print(f"kernel variant {name}: " + ("all cells agree with the reference" if ok else
                                             "FAILED\n" + proc.stdout + proc.stderr))  # fmt: skip
        if not ok:
            failed.append(name)
    return failed


if __name__ == "__main__":
    sys.exit(main())
