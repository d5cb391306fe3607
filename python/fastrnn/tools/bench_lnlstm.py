"""The layer-normalised LSTM (cell ``lnlstm``) in the float32 peer tables of ``python -m
fastrnn.bench --cells lnlstm``.

fastrnn's ``lnlstm`` (haste's LayerNormLSTM: ``v = g_ih*LN(x W_ih^T) + g_hh*LN(h W_hh^T) + b_ih +
b_hh``, ``c' = f*c + i*g``, ``h' = o*tanh(g_c*LN(c') + b_c)``) is timed through the kernels'
binding (``fastrnn._core.forward``/``backward``, the 10H vector of its own parameters
``[g_ih | g_hh | g_c | b_c]`` built here), forward and forward+backward (every gradient, the
input's included) as the layers are. Its torch peer is the TorchScript LayerNormLSTM of PyTorch's
benchmark suite (:mod:`fastrnn.tools.lnlstm_torch`) on the same weights; ONNX Runtime, the NumPy
reference and ``fastrnn.torch`` have no layer-normalised LSTM and do not time it. The torch
worker also checks, once per case and untimed, that the TorchScript peer computes fastrnn's
outputs (``y``, ``h_n``, ``c_n``; forward+backward: also ``dx``, the initial states' gradients
where the case has states, and every parameter's gradient): :func:`check`.

Under the speed tables, :func:`table_lines` prints for each shape, pass and thread count
fastrnn's lnlstm time over its plain LSTM's of the same run and the TorchScript peer's over
fastrnn's, judged against issue 24's targets (:data:`TARGETS`); :func:`rows` are the same in the
report (``"lnlstm"``, what ``--json`` writes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the cell's name in the bench (and in fastrnn's kernels, ``fastrnn._core.Cell.lnlstm``)
CELL = "lnlstm"
#: the peers that time it (the others have no layer-normalised LSTM)
PEERS = ("fastrnn", "torch")
#: the torch peer's name in the tables
TORCH_PEER = "TorchScript LayerNormLSTM"
#: the largest relative deviation (``max |fastrnn - torch| / max |torch|`` of each output) for the
#: check to pass. float32's rounding over the steps, each through three layer norms, reaches a
#: few 1e-4 on S2 (each peer as far from a float64 run as from the other); a wrong parameter
#: (the gains g_ih and g_hh swapped) is off by about 2
CHECK_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Target:
    """One of issue 24's targets: ``value`` of a row (None: not judged) at most ``most`` (or at
    least ``least``), on the rows of these shapes, passes and thread counts (None: all)."""

    what: str
    shapes: tuple[str, ...]
    passes: tuple[str, ...]
    threads: tuple[int, ...] | None
    value: Callable[[dict[str, Any]], float | None]
    most: float | None = None
    least: float | None = None

    def met(self, v: float) -> bool:
        return (self.most is None or v <= self.most) and (self.least is None or v >= self.least)

    @property
    def bound(self) -> str:
        return f"<= {self.most:.2f}x" if self.most is not None else f">= {self.least:.2f}x"


#: issue 24's targets, judged under the lnlstm table (:func:`targets`)
TARGETS = [
    Target("fastrnn lnlstm / fastrnn lstm", ("S1", "S2"), ("forward", "forward+backward"), None,
           lambda r: r["ratio_to_lstm"], most=1.3),
    Target(f"{TORCH_PEER} / fastrnn lnlstm", ("S1",), ("forward+backward",), (1, 2),
           lambda r: r["speedup_vs_torch"], least=5.0),
]  # fmt: skip


# ------------------------------------------------------------------------------------ workers


def params(rng: np.random.Generator, I: int, H: int) -> dict[str, np.ndarray]:
    """The layer's float32 parameters by name, drawn from ``rng``: the weights and biases as
    PyTorch's LSTM initialises them (uniform in +-1/sqrt(H)), the layer norms' gains around 1
    and their biases around 0 (not their initial 1 and 0, so that the check tells them apart)."""
    k = 1 / np.sqrt(H)

    def u(lo: float, hi: float, *shape: int) -> np.ndarray:
        return rng.uniform(lo, hi, shape).astype(np.float32)

    return {"w_ih": u(-k, k, 4 * H, I), "w_hh": u(-k, k, 4 * H, H), "b_ih": u(-k, k, 4 * H),
            "b_hh": u(-k, k, 4 * H), "g_ih": u(0.5, 1.5, 4 * H), "g_hh": u(0.5, 1.5, 4 * H),
            "g_c": u(0.5, 1.5, H), "b_c": u(-0.5, 0.5, H)}  # fmt: skip


def cell_params(p: dict[str, np.ndarray]) -> np.ndarray:
    """The kernels' one vector of the cell's own parameters: ``[g_ih | g_hh | g_c | b_c]``
    (10H)."""
    return np.concatenate([p["g_ih"], p["g_hh"], p["g_c"], p["b_c"]])


class FastrnnLN:
    """fastrnn's lnlstm on one case's data ``d`` (a ``fastrnn.tools.bench._Inputs``) and
    parameters ``p``, through the kernels' binding (one layer, one direction)."""

    def __init__(self, d: Any, p: dict[str, np.ndarray]) -> None:
        from fastrnn import _core

        self.core, self.d = _core, d
        self.cell = getattr(_core.Cell, CELL)
        self.entries = [(p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], None, cell_params(p))]
        self.H = p["w_hh"].shape[1]

    def forward(self, training: bool = False) -> tuple[Any, ...]:
        """``(y, h_n, c_n, workspace)``; the states ``(1, B, H)``."""
        d = self.d
        return self.core.forward(self.cell, d.x, self.entries, d.h0, d.c0, None, None, 1,
                                 False, 0, self.H, training)  # fmt: skip

    def backward(self, workspace: Any) -> tuple[Any, ...]:
        """``(dx, dh0, dc0, grads)`` of the loss ``sum(y * dy)``."""
        d = self.d
        return self.core.backward(self.cell, d.x, self.entries, None, workspace, d.dy, None,
                                  None, 1, False, 0, self.H, True)  # fmt: skip

    def step(self) -> tuple[Any, ...]:
        """A training step: forward, then backward."""
        return self.backward(self.forward(True)[3])

    def outputs(self, train: bool) -> dict[str, np.ndarray]:
        """What :func:`check` compares, by name: ``y``, ``h_n``, ``c_n``, and with ``train``
        the gradients (``dx``, ``dh0`` and ``dc0`` where the case has states, and each
        parameter's)."""
        y, h_n, c_n, ws = self.forward(train)
        out = {"y": y, "h_n": h_n[0], "c_n": c_n[0]}
        if train:
            dx, dh0, dc0, grads = self.backward(ws)
            w_ih, w_hh, b_ih, b_hh, _, own = grads[0]
            out |= {"dx": dx, "dw_ih": w_ih, "dw_hh": w_hh, "db_ih": b_ih, "db_hh": b_hh,
                    "dcell_params": own}  # fmt: skip
            if self.d.h0 is not None:
                out |= {"dh0": dh0[0], "dc0": dc0[0]}
        return out


def _warm(fn: Any, runs: int = 2) -> Any:
    """fn after a few calls: TorchScript's profiling executor optimises a graph once it has seen
    it run (the timing's own warm-up call follows)."""
    for _ in range(runs):
        fn()
    return fn


class TorchLN:
    """The TorchScript peer (:func:`fastrnn.tools.lnlstm_torch.scripted`) on the case's data
    ``d`` and parameters ``p``; the zero state where the case has none."""

    def __init__(self, d: Any, p: dict[str, np.ndarray]) -> None:
        import torch

        from . import lnlstm_torch

        self.torch, self.d = torch, d
        self.m = lnlstm_torch.scripted(p)
        _, B, _, H = d.shape
        self.x, self.dy = torch.from_numpy(d.x), torch.from_numpy(d.dy)
        if d.h0 is None:
            self.state = (torch.zeros(B, H), torch.zeros(B, H))
        else:
            self.state = (torch.from_numpy(d.h0[0]), torch.from_numpy(d.c0[0]))

    def case(self, forward: bool) -> Any:
        """The timed call: forward under ``torch.inference_mode``, or forward and backward of
        ``sum(y * dy)`` into the input's and the parameters' gradients (as the ``torch.nn``
        peers')."""
        torch, m, x, state = self.torch, self.m, self.x, self.state
        if forward:

            def fwd() -> Any:
                with torch.inference_mode():
                    return m(x, state)

            return _warm(fwd)
        xg = x.clone().requires_grad_(True)

        def tstep() -> Any:
            xg.grad = None
            y, _ = m(xg, state)
            y.backward(self.dy)
            return xg.grad

        return _warm(tstep)

    def outputs(self, train: bool) -> dict[str, np.ndarray]:
        """:meth:`FastrnnLN.outputs`' tensors computed by the TorchScript module (autograd for
        the gradients)."""
        torch = self.torch
        x = self.x.clone().requires_grad_(train)
        h0, c0 = (s.clone().requires_grad_(train and self.d.h0 is not None) for s in self.state)
        y, (h, c) = self.m(x, (h0, c0))
        out = {"y": y, "h_n": h, "c_n": c}
        if train:
            cell = self.m.cell
            named = {"dx": x, "dw_ih": cell.weight_ih, "dw_hh": cell.weight_hh,
                     "db_ih": cell.layernorm_i.bias, "db_hh": cell.layernorm_h.bias,
                     "dg_ih": cell.layernorm_i.weight, "dg_hh": cell.layernorm_h.weight,
                     "dg_c": cell.layernorm_c.weight, "db_c": cell.layernorm_c.bias}  # fmt: skip
            if self.d.h0 is not None:
                named |= {"dh0": h0, "dc0": c0}
            grads = dict(zip(named, torch.autograd.grad(y, list(named.values()), self.dy),
                             strict=True))  # fmt: skip
            own = [grads.pop(k) for k in ("dg_ih", "dg_hh", "dg_c", "db_c")]
            out |= {**grads, "dcell_params": torch.cat(own)}
        return {k: v.detach().numpy() for k, v in out.items()}


def case(peer: str, d: Any, passes: str) -> Any:
    """The timed call of an lnlstm case for ``peer``, or None where the peer has no
    layer-normalised LSTM (ONNX Runtime, the reference, fastrnn.torch) or the pass is not timed
    for it (the whole PyTorch training step)."""
    if peer not in PEERS or passes == "train-step":
        return None
    _, _, I, H = d.shape
    p = params(d.rng, I, H)
    forward = passes == "forward"
    if peer == "torch":
        return TorchLN(d, p).case(forward)
    run = FastrnnLN(d, p)
    return run.forward if forward else run.step


def check(d: Any, passes: str) -> dict[str, Any]:
    """In the torch worker, untimed: the TorchScript peer's outputs against fastrnn's (its
    kernels on one thread) on the case's data and weights. Returns ``{"check": {"max_rel_dev",
    "worst", "compared", "agree"}}``: the largest over the outputs compared of ``max |fastrnn
    - torch| / max |torch|``, the output it was found in, the names compared, and whether it is
    within :data:`CHECK_TOLERANCE`."""
    from fastrnn import _core

    _, _, I, H = d.shape
    p = params(d.rng, I, H)
    train = passes != "forward"
    _core.set_num_threads(1)
    mine = FastrnnLN(d, p).outputs(train)
    theirs = TorchLN(d, p).outputs(train)
    devs = {k: float(np.abs(mine[k] - v).max() / max(float(np.abs(v).max()), 1e-30))
            for k, v in theirs.items()}  # fmt: skip
    worst = max(devs, key=lambda k: devs[k])
    return {"check": {"max_rel_dev": devs[worst], "worst": worst, "compared": sorted(devs),
                      "agree": devs[worst] <= CHECK_TOLERANCE}}  # fmt: skip


# ------------------------------------------------------------------------------------ report


def _row(ms: dict[tuple[Any, ...], float], me: Any, key: tuple[Any, ...],
         checks: dict[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """One shape, pass and thread count: fastrnn's lnlstm ms, its plain lstm's, the TorchScript
    peer's, the two ratios and the check."""
    threads, shape, passes = key
    ln = ms[(me, threads, shape, CELL, passes)]
    lstm = ms.get((me, threads, shape, "lstm", passes))
    torch = ms.get(("torch", threads, shape, CELL, passes))
    chk = checks.get(key)
    return {"shape": shape, "passes": passes, "threads": threads, "lnlstm_ms": ln,
            "lstm_ms": lstm, "ratio_to_lstm": ln / lstm if lstm else None, "torch_ms": torch,
            "speedup_vs_torch": torch / ln if torch else None,
            "max_rel_dev": None if chk is None else chk["max_rel_dev"],
            "agree": None if chk is None else chk["agree"]}  # fmt: skip


def rows(report: dict[str, Any], ms: dict[tuple[Any, ...], float]) -> list[dict[str, Any]]:
    """A row per kernel variant, shape, pass and thread count fastrnn timed lnlstm at (its
    milliseconds, ratios and check; ``"isa"``: the variant under ``--isa``, else None); ``ms``
    the report's timings by ``(peer, threads, shape, cell, passes)``."""
    checks = {(r["threads"], c["shape_name"], c["passes"]): c["check"]
              for r in report["runs"] if r["peer"] == "torch"
              for c in r["results"] if "check" in c}  # fmt: skip
    isas = report.get("isas", [None])
    out = []
    for isa in isas:
        me: Any = "fastrnn" if isas == [None] else ("fastrnn", isa)
        keys = sorted({(k[1], k[2], k[4]) for k in ms if k[0] == me and k[3] == CELL},
                      key=lambda k: (k[1], k[2] != "forward", k[0]))  # fmt: skip
        out += [{"isa": isa, **_row(ms, me, k, checks)} for k in keys]
    return out


def targets(rs: list[dict[str, Any]]) -> list[str]:
    """A line per target with rows to judge: met / entries, and those not met."""
    lines = []
    for t in TARGETS:
        judged = [(r, v) for r in rs if r["shape"] in t.shapes and r["passes"] in t.passes
                  and (t.threads is None or r["threads"] in t.threads)
                  and (v := t.value(r)) is not None]  # fmt: skip
        if not judged:
            continue
        missed = [f"{r['shape']} {_pass(r['passes'])} {r['threads']}t {v:.2f}x"
                  for r, v in judged if not t.met(v)]  # fmt: skip
        where = f"{' '.join(t.shapes)} {' and '.join(_pass(p) for p in t.passes)}"
        if t.threads:
            where += f", {' and '.join(map(str, t.threads))} thread(s)"
        line = (f"target {t.what} {t.bound} ({where}): met {len(judged) - len(missed)} of "
                f"{len(judged)}")  # fmt: skip
        lines.append(line + (f"; not met: {', '.join(missed)}" if missed else ""))
    return lines


def _pass(passes: str) -> str:
    return "fwd" if passes == "forward" else "fwd+bwd"


def _cell(v: float | None, fmt: str, width: int) -> str:
    return f"{v:>{width}{fmt}}" if v is not None else f"{'-':>{width}}"


def _ms(v: float | None, width: int) -> str:
    return _cell(v, ".2f" if v is None or v >= 1 else ".3f", width)


def _check_line(rs: list[dict[str, Any]]) -> list[str]:
    """What the check found (nothing if the torch peer did not run)."""
    devs = [(r, r["max_rel_dev"]) for r in rs if r["max_rel_dev"] is not None]
    if not devs:
        return []
    bad = [f"{r['shape']} {_pass(r['passes'])} {r['threads']}t" for r, _ in devs if not r["agree"]]
    worst = max(v for _, v in devs)
    head = (f"check: the {TORCH_PEER}'s outputs against fastrnn's lnlstm, same inputs and "
            "weights (y, h_n, c_n; fwd+bwd also dx and every parameter's gradient): max "
            f"relative deviation {worst:.1e} (tolerance {CHECK_TOLERANCE:g})")  # fmt: skip
    if bad:
        return [f"{head}: THEY DIFFER in {', '.join(bad)}"]
    return [f"{head}: they agree"]


_COLUMNS = ("shape", "pass", "thr", "lnlstm ms", "lstm ms", "ln/lstm", "TorchScript ms",
            "x TorchScript", "max rel dev")  # fmt: skip
_WIDTHS = (5, 8, 3, 10, 10, 8, 15, 14, 12)


def _line(r: dict[str, Any]) -> str:
    ratio, speed, dev = r["ratio_to_lstm"], r["speedup_vs_torch"], r["max_rel_dev"]
    return (f"{r['shape']:<5} {_pass(r['passes']):<8} {r['threads']:>3} "
            f"{_ms(r['lnlstm_ms'], 10)} {_ms(r['lstm_ms'], 10)} {_cell(ratio, '.2f', 7)}"
            f"{'x' if ratio else ' '} {_ms(r['torch_ms'], 15)} {_cell(speed, '.2f', 13)}"
            f"{'x' if speed else ' '} {_cell(dev, '.1e', 12)}")  # fmt: skip


def table_lines(report: dict[str, Any]) -> list[str]:
    """The lnlstm section under the speed tables (nothing if lnlstm was not timed): a table per
    kernel variant of ``report["lnlstm"]`` (:func:`rows`), the targets and the check."""
    rs = report.get(CELL) or []
    if not rs:
        return []
    lines = ["", f"Layer-normalised LSTM (lnlstm, haste's LayerNormLSTM): fastrnn's time over "
             "its plain LSTM's of this run (ln/lstm), and the torch peer, the "
             f"{TORCH_PEER} of PyTorch's benchmark suite (custom_lstms.py's cell, "
             "torch.jit.script over the steps, same weights), over fastrnn's (x TorchScript). "
             "ORT, the NumPy reference and fastrnn.torch have no layer-normalised LSTM: they do "
             "not time lnlstm."]  # fmt: skip
    head = " ".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}"
                    for i, (c, w) in enumerate(zip(_COLUMNS, _WIDTHS, strict=True)))  # fmt: skip
    for isa in dict.fromkeys(r["isa"] for r in rs):
        if isa is not None:
            lines.append(f"fastrnn kernel variant {isa}:")
        lines += [head, "-" * len(head), *(_line(r) for r in rs if r["isa"] == isa)]
    if all(r["lstm_ms"] is None for r in rs):
        lines.append("(time --cells lstm lnlstm for ln/lstm)")
    return lines + targets(rs) + _check_line(rs)


__all__ = ["CELL", "CHECK_TOLERANCE", "PEERS", "TARGETS", "TORCH_PEER", "FastrnnLN", "Target",
           "TorchLN", "case", "cell_params", "check", "params", "rows", "table_lines",
           "targets"]  # fmt: skip
