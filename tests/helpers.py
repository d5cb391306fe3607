"""What the tests share: tolerances and the closeness check, central finite differences, random
problems for the functional API, the layer kinds of the parity tests, and the problems and
comparisons of the layer-normalised cells' suites (:class:`LayerNormCase`).

Tests import from here (``from helpers import ...``); conftest.py holds only fixtures and hooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R

# the cells of the generic suites (the fixture `cell`): PyTorch's, whose parameters are the five
# of torch.nn; a cell with parameters of its own (lstm_peephole) is tested by test_cell_options.py
CELLS = tuple(c for c in F.CELLS if not fastrnn.spec.CELLS[c].params)
DTYPES = (np.float64, np.float32)

# relative tolerance of the kernels against the float64 reference, by dtype (against the largest
# magnitude of the expected array, see assert_close)
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}

# ------------------------------------------------------------------------------------ closeness


def _as_float64(a: Any) -> np.ndarray:
    """A float64 NumPy copy of an array, or of a torch tensor (detached, on the CPU)."""
    if hasattr(a, "detach"):  # a torch tensor, possibly requiring grad
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def assert_close(
    actual: Any,
    expected: Any,
    dtype: Any = None,
    what: str = "",
    factor: float = 1.0,
    *,
    rtol: float | None = None,
    per_element: bool = False,
) -> float:
    """Asserts that ``actual`` is ``expected`` to the tolerance ``t = factor * rtol``.

    The arrays (NumPy arrays or torch tensors) are compared in float64 and must have the same
    shape. ``rtol`` defaults to ``RTOL[dtype]``, the kernels' tolerance for the dtype they ran in.

    - ``per_element=False`` (the default):
      ``max |actual - expected| <= t * max(1, max |expected|)``, the error measured against the
      largest magnitude of the expected array;
    - ``per_element=True``: ``|actual - expected| <= t + t * |expected|`` element by element
      (``numpy.testing.assert_allclose`` with ``rtol = atol = t``).

    Returns the error relative to the expected array, ``max |actual - expected| / max(1, max
    |expected|)`` (0 for empty arrays), for reports of the largest error seen.
    """
    assert actual is not None and expected is not None, what
    if rtol is None:
        assert dtype is not None, "assert_close: give the dtype or rtol"
        rtol = RTOL[np.dtype(dtype)]
    tol = factor * rtol
    a = _as_float64(actual)
    e = _as_float64(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    if a.size == 0:
        return 0.0
    scale = max(1.0, float(np.abs(e).max()))
    err = float(np.abs(a - e).max())
    if per_element:
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol, err_msg=what)
    else:
        assert err <= tol * scale, f"{what}: max abs error {err:.3e} > {tol * scale:.3e}"
    return err / scale


# --------------------------------------------------------------------------- finite differences


def central_difference(f: Callable[[], float], a: np.ndarray, idx: Any, eps: float) -> float:
    """(f() at a[idx] + eps - f() at a[idx] - eps) / (2 eps): the derivative of the scalar f()
    with respect to one element of ``a``, which is perturbed in place and restored."""
    keep = a[idx]
    a[idx] = keep + eps
    up = f()
    a[idx] = keep - eps
    down = f()
    a[idx] = keep
    return (up - down) / (2 * eps)


def numeric_grad(f: Callable[[], float], a: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to every element of ``a``."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        g[idx] = central_difference(f, a, idx, eps)
    return g


def contracted_loss(
    y: np.ndarray,
    h_n: np.ndarray,
    c_n: np.ndarray | None,
    dy: np.ndarray,
    dh_n: np.ndarray,
    dc_n: np.ndarray | None,
) -> float:
    """L = sum(y * dy) + sum(h_n * dh_n) [+ sum(c_n * dc_n)]: the scalar whose gradients are what
    a backward returns for the incoming gradients (dy, dh_n, dc_n)."""
    out = float((y * dy).sum() + (h_n * dh_n).sum())
    if c_n is not None:
        out += float((c_n * dc_n).sum())
    return out


# ------------------------------------------------------------------------------------- problems


@dataclass
class Problem:
    """A random problem for one cell: inputs, parameters, initial states and output gradients."""

    cell: str
    x: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray | None
    bias_hh: np.ndarray | None
    h0: np.ndarray | None
    c0: np.ndarray | None
    dy: np.ndarray | None
    dh_n: np.ndarray | None
    dc_n: np.ndarray | None

    @property
    def params(self) -> tuple[Any, ...]:
        """(weight_ih, weight_hh, bias_ih, bias_hh), as the functional API takes them."""
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def astype(self, dtype: Any) -> Problem:
        """A copy with every array cast to ``dtype``."""

        def cast(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a.astype(dtype)

        arrays: list[Any] = [cast(getattr(self, f)) for f in _FIELDS]
        return Problem(self.cell, *arrays)


_FIELDS = ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0", "c0", "dy", "dh_n", "dc_n")


def make_problem(
    cell: str,
    T: int,
    B: int,
    I: int,
    H: int,
    *,
    seed: int = 0,
    bias: bool = True,
    states: bool = True,
    grads: bool = True,
    dtype: Any = np.float64,
    scale: float = 1.0,
) -> Problem:
    """Random float64 data (cast to dtype) with pre-activations of order one."""
    rng = np.random.default_rng(seed)
    G = F.num_gates(cell)
    k = scale / np.sqrt(H)

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(-1, 1, shape)

    lstm = cell == "lstm"
    p = Problem(
        cell,
        x=rng.standard_normal((T, B, I)),
        weight_ih=k * 2 * u(G * H, I),
        weight_hh=k * 2 * u(G * H, H),
        bias_ih=u(G * H) * 0.5 if bias else None,
        bias_hh=u(G * H) * 0.5 if bias else None,
        h0=u(B, H) if states else None,
        c0=u(B, H) if states and lstm else None,
        dy=rng.standard_normal((T, B, H)) if grads else None,
        dh_n=rng.standard_normal((B, H)) if grads else None,
        dc_n=rng.standard_normal((B, H)) if grads and lstm else None,
    )
    return p.astype(dtype)


def stack_params(
    rng: np.random.Generator,
    cell: str,
    I: int,
    H: int,
    *,
    num_layers: int,
    num_directions: int,
    proj_size: int,
    dtype: Any,
    bias: bool = True,
) -> list[tuple[np.ndarray | None, ...]]:
    """Random parameters of a stack, as ``functional.stack_forward`` takes them: one tuple
    (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) per layer and direction, layer-major,
    each entry uniform in (-1/sqrt(H), 1/sqrt(H)), drawn from ``rng`` in that order."""
    G = F.num_gates(cell)
    Hs = proj_size or H
    k = 1 / np.sqrt(H)

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(-k, k, shape).astype(dtype)

    params: list[tuple[np.ndarray | None, ...]] = []
    for layer in range(num_layers):
        In = I if layer == 0 else num_directions * Hs
        for _ in range(num_directions):
            params.append(
                (
                    u(G * H, In),
                    u(G * H, Hs),
                    u(G * H) if bias else None,
                    u(G * H) if bias else None,
                    u(proj_size, H) if proj_size else None,
                )
            )
    return params


# ---------------------------------------------------------------------------------- layer kinds

# The layer kinds of the layer and parity tests: id -> (class name, constructor keywords) of
# fastrnn's layers (the NumPy API); torch.nn and fastrnn.torch take the same for TORCH_KINDS.
LAYER_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "rnn_tanh": ("RNN", {}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "lstm_proj": ("LSTM", {"proj_size": 3}),
    "gru": ("GRU", {}),
    "gru_reset_before": ("GRU", {"reset_after": False}),
}
# the kinds torch.nn has (its GRU resets after the product only)
TORCH_KINDS = {k: v for k, v in LAYER_KINDS.items() if k != "gru_reset_before"}


def make_layer(kind: str, input_size: int, hidden_size: int, **kw: Any) -> Any:
    """A fastrnn layer (NumPy) of ``kind``; ``kw`` adds to (or overrides) the kind's keywords."""
    name, kind_kw = LAYER_KINDS[kind]
    return getattr(fastrnn, name)(input_size, hidden_size, **{**kind_kw, **kw})


# ------------------------------------------------------------------------------ the bench's options


def bench_args(argv: list[str]) -> Any:
    """``python -m fastrnn.bench``'s arguments for ``argv``, parsed and checked as before a run."""
    from fastrnn.tools import bench

    ap = bench._parser("bench")
    args = ap.parse_args(argv)
    bench._check(ap, args)
    return args


def assert_bench_usage_error(argv: list[str], msg: str, capsys: Any) -> None:
    """``python -m fastrnn.bench argv`` stops with a usage error holding ``msg`` (exit status 2),
    before printing anything."""
    import pytest

    from fastrnn.tools import bench

    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and msg in err


def int8_reference_entries(q: Any) -> list[tuple[Any, ...]]:
    """A quantized layer's parameters as the reference's ``stack_forward`` takes them:
    ``QuantizedWeight`` for the weight matrices (``w_ih``, ``w_hh``, ``w_hr``), the float32
    biases and the cell's own vectors (a tuple, or None) as they are."""
    p = dict(q.named_parameters())
    out = []
    for k in range(q.spec.num_entries):
        names = q.spec.entry_names(k)
        e: list[Any] = [
            None if n is None else R.QuantizedWeight(p[n], p[n + "_scale"]) if i in (0, 1, 4)
            else p[n]
            for i, n in enumerate(names[:5])
        ]  # fmt: skip
        cp = names.cell_params
        out.append((*e, None if cp is None else tuple(p[n] for n in cp)))
    return out


def rewrite_config(src: Any, dst: Any, **change: Any) -> Any:
    """A saved model's file ``src`` written to ``dst`` with its config's keys changed (a value
    None: the key dropped, as in a file written before the key existed); returns ``dst``."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    for k, v in change.items():
        if v is None:
            del meta["config"][k]
        else:
            meta["config"][k] = v
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)
    return dst


# ---------------------------------------------------------------- the layer-normalised cells


def as_f64(a: Any) -> Any:
    """A float64 copy of an array, of each array of a (nested) tuple, list, dict or LayerParams;
    None stays None."""
    if a is None:
        return None
    if isinstance(a, fastrnn.spec.LayerParams):
        return fastrnn.spec.LayerParams(*(as_f64(v) for v in a))
    if isinstance(a, (tuple, list)):
        return type(a)(as_f64(v) for v in a)
    if isinstance(a, dict):
        return {k: as_f64(v) for k, v in a.items()}
    return np.asarray(a, np.float64)


def stack_opts(L: int, D: int, reverse: bool, lengths: Any = None) -> dict[str, Any]:
    """The stack calls' keywords of a shape: layers, directions, reverse, lengths."""
    return {"num_layers": L, "bidirectional": D == 2, "reverse": reverse, "lengths": lengths}


class LayerNormCase:
    """The problems and comparisons of a layer-normalised cell's suite
    (test_layer_norm_cells.py), for one cell: random stacks with the layer norms' vectors away
    from their start, the kernels and the float64 reference run on them, every output and
    gradient compared (the cell state's only for a cell that has one), and the loss and arrays
    of finite differences."""

    T, B, I, H = 5, 5, 3, 6
    LENGTHS = np.array([2, 5, 0, 3, 5])  # unsorted, zero and full lengths
    # (L, D, reverse): one and two layers, one and two directions, reverse-only
    SHAPES = ((1, 1, False), (1, 2, False), (2, 1, False), (2, 2, False), (1, 1, True),
              (2, 1, True))  # fmt: skip

    def __init__(self, cell: str, f32_factor: float) -> None:
        info = fastrnn.spec.CELLS[cell]
        self.cell = cell
        self.f32_factor = f32_factor  # float32's tolerance, in units of RTOL's 1e-5
        self.has_c = info.has_cell_state
        self.names = tuple(name for name, _ in info.params)  # the layer-norm vectors

    @staticmethod
    def shape_id(L: int, D: int, reverse: bool) -> str:
        return f"L{L}-{'bi' if D == 2 else 'reverse' if reverse else 'uni'}"

    def make_stack(
        self, L: int, D: int, dtype: Any, *, bias: bool = True, seed: int = 0, states: bool = True
    ) -> dict[str, Any]:
        """A random stack as stack_forward takes it: weights and biases uniform(-1/sqrt(H),
        1/sqrt(H)), the layer norms' vectors their start + U(-0.3, 0.3); the inputs, states (or
        None; ``c0`` and ``dc`` None without a cell state) and the gradients of the outputs."""
        T, B, I, H = self.T, self.B, self.I, self.H
        rng = np.random.default_rng(seed)
        spec = fastrnn.spec.StackSpec(self.cell, I, H, L, D == 2, bias)
        k = 1 / np.sqrt(H)
        constants = spec.param_constants()
        flat = [
            (
                constants[n] + rng.uniform(-0.3, 0.3, s)
                if n in constants
                else rng.uniform(-k, k, s)
            ).astype(dtype)
            for n, s in spec.param_shapes().items()
        ]
        c = states and self.has_c
        return {
            "params": spec.entries(flat),
            "x": rng.standard_normal((T, B, I)).astype(dtype),
            "h0": rng.uniform(-1, 1, (L * D, B, H)).astype(dtype) if states else None,
            "c0": rng.uniform(-1, 1, (L * D, B, H)).astype(dtype) if c else None,
            "dy": rng.standard_normal((T, B, D * H)).astype(dtype),
            "dh": rng.standard_normal((L * D, B, H)).astype(dtype),
            "dc": rng.standard_normal((L * D, B, H)).astype(dtype) if self.has_c else None,
        }

    def close(self, actual: Any, expected: Any, dtype: Any, what: str) -> None:
        """assert_close at the dtype's tolerance, float32's widened by the case's factor."""
        factor = self.f32_factor if np.dtype(dtype) == np.float32 else 1.0
        assert_close(actual, expected, dtype, what, factor)

    def kernels(self, s: dict[str, Any], opts: dict[str, Any], **extra: Any) -> tuple[Any, Any]:
        """The kernels' forward and backward of a stack (``compute_dtype`` for both)."""
        fw = F.stack_forward(self.cell, s["x"], s["params"], s["h0"], s["c0"], **opts, **extra)
        assert fw.workspace is not None
        same = {k: v for k, v in extra.items() if k == "compute_dtype"}
        bw = F.stack_backward(self.cell, s["x"], s["params"], fw.workspace, s["dy"], s["dh"],
                              s["dc"], **opts, **same)  # fmt: skip
        return fw, bw

    def reference(self, s: dict[str, Any], opts: dict[str, Any], **extra: Any) -> tuple[Any, ...]:
        """The float64 reference's ``(y, h_n, c_n, gradients)`` of a stack."""
        y, h_n, c_n, cache = R.stack_forward(
            self.cell, as_f64(s["x"]), [as_f64(p) for p in s["params"]], as_f64(s["h0"]),
            as_f64(s["c0"]), **opts, **extra,
        )  # fmt: skip
        g = R.stack_backward(cache, as_f64(s["dy"]), as_f64(s["dh"]), as_f64(s["dc"]))
        return y, h_n, c_n, g

    def grads(self, bw: Any) -> Any:
        """(name, gradient) of every parameter of a kernels' backward, the layer norms' too."""
        for k, g in enumerate(bw.grads):
            for name in fastrnn.spec.LayerParams._fields[:5]:
                yield f"{name}[{k}]", getattr(g, name)
            assert g.cell_params is not None and len(g.cell_params) == len(self.names)
            for name, a in zip(self.names, g.cell_params, strict=True):
                yield f"{name}[{k}]", a

    def ref_grads(self, g: dict[str, Any]) -> Any:
        """(name, gradient) of every parameter of the reference's gradients."""
        for k, p in enumerate(g["params"]):
            for name in fastrnn.spec.LayerParams._fields[:5]:
                yield f"{name}[{k}]", p[name]
            for name, a in zip(self.names, p["cell_params"], strict=True):
                yield f"{name}[{k}]", a

    def compare(self, s: dict[str, Any], opts: dict[str, Any], dtype: Any, **extra: Any) -> None:
        """The kernels against the float64 reference: y, h_n, dx, dh0 (c_n, dc0 with a cell
        state), every gradient."""
        fw, bw = self.kernels(s, opts, **extra)
        y, h_n, c_n, g = self.reference(s, opts, **extra)
        pairs = [(fw.y, y, "y"), (fw.h_n, h_n, "h_n"), (bw.dx, g["dx"], "dx"),
                 (bw.dh0, g["dh0"], "dh0")]  # fmt: skip
        if self.has_c:
            pairs += [(fw.c_n, c_n, "c_n"), (bw.dc0, g["dc0"], "dc0")]
        else:
            assert fw.c_n is None and bw.dc0 is None and c_n is None and g["dc0"] is None
        for got, want, name in pairs:
            assert got.dtype == dtype, name
            self.close(got, want, dtype, name)
        got_grads, want_grads = list(self.grads(bw)), list(self.ref_grads(g))
        assert [n for n, _ in got_grads] == [n for n, _ in want_grads]
        for (name, a), (_, b) in zip(got_grads, want_grads, strict=True):
            assert (a is None) == (b is None), name
            if a is not None:
                assert a.dtype == dtype, name
                self.close(a, b, dtype, name)

    def loss(self, s: dict[str, Any], opts: dict[str, Any], **extra: Any) -> Callable[[], float]:
        """The scalar whose gradients a backward of ``s``'s dy, dh (dc) returns, of the
        kernels' inference forward."""

        def f() -> float:
            r = F.stack_forward(self.cell, s["x"], s["params"], s["h0"], s["c0"], training=False,
                                **opts, **extra)  # fmt: skip
            return contracted_loss(r.y, r.h_n, r.c_n, s["dy"], s["dh"], s["dc"])

        return f

    def arrays(self, s: dict[str, Any], grads: Any) -> Any:
        """(name, array of the problem, its gradient) for x, the states and every parameter."""
        yield "x", s["x"], grads.dx
        yield "h0", s["h0"], grads.dh0
        if self.has_c:
            yield "c0", s["c0"], grads.dc0
        for k, (p, g) in enumerate(zip(s["params"], grads.grads, strict=True)):
            for name in fastrnn.spec.LayerParams._fields[:5]:
                if getattr(p, name) is not None:
                    yield f"{name}[{k}]", getattr(p, name), getattr(g, name)
            for name, a, ga in zip(self.names, p.cell_params, g.cell_params, strict=True):
                yield f"{name}[{k}]", a, ga
