"""fastrnn.torch in bfloat16: ``compute_dtype`` and ``torch.autocast`` (skipped without torch).

For each cell torch.nn has (RNN tanh/relu, LSTM, LSTM with proj_size, GRU) x options (one layer;
2 layers bidirectional; batch_first; a PackedSequence of unsorted lengths through 2 layers;
unbatched input), inside ``torch.autocast("cpu", dtype=torch.bfloat16)``:

* the dtypes of output, h_n, c_n are those torch.nn's module returns there, also for bfloat16
  inputs, float32/bfloat16/mixed hx, and under float16 autocast;
* the outputs are within 2e-2 (relative to the largest magnitude) of torch.nn's float32 ones and
  their error is at most 2x that of torch's own autocast run on the same problem (torch computes
  every product in bfloat16 too: oneDNN's LSTM, ``linear`` per step for the others);
* the parameters' gradients are float32, the input's and hx's come back in their dtypes, and all
  are within 2e-2 (norm-relative) of the float32 gradients -- except the ReLU RNN's: its gradient
  jumps where a pre-activation changes sign, and bfloat16 products move some across zero, so its
  gradients (torch's autocast ones alike) can differ from float32 by several percent; there the
  test is the NumPy reference's bfloat16 model, which all cells also meet;
* ``compute_dtype="bfloat16"`` outside autocast gives the same numbers, bit for bit;
* float64 modules, ``enabled=False`` and float16 autocast (float32 products) are what they say.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from helpers import TORCH_KINDS

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

import fastrnn.torch as frt  # noqa: E402
from fastrnn import reference as R  # noqa: E402

BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32
KINDS = list(TORCH_KINDS)
OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "L1": ({}, "tensor"),
    "L2_bi": ({"num_layers": 2, "bidirectional": True}, "tensor"),
    "bfirst": ({"batch_first": True}, "tensor"),
    "packed_L2": ({"num_layers": 2}, "packed"),
    "unbatched": ({}, "unbatched"),
}
LENGTHS = [8, 5, 7, 3]  # unsorted; B = 4
TOL = 2e-2  # PyTorch's own bf16 LSTM test tolerance (the criterion)


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():  # torch: "LSTM with projections is not supported with oneDNN"
        warnings.filterwarnings("ignore", "LSTM with projections", UserWarning)
        yield


def pair(kind: str, size: tuple[int, int], **opts: Any) -> tuple[Any, Any]:
    """torch.nn's module and fastrnn.torch's, float32, torch's default init, the same weights."""
    name, kw = TORCH_KINDS[kind]
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(*size, **opts, **kw)
    fm = getattr(frt, name)(*size, **opts, **kw)
    fm.load_state_dict(tm.state_dict())
    return tm, fm


class Problem:
    """An input (and optionally hx) for one option, as leaves whose gradients can be read."""

    def __init__(
        self, kind: str, option: str, T: int, I: int, H: int, x_dtype: Any = F32,
        hx_dtypes: tuple[Any, ...] | None = None, seed: int = 1,
    ) -> None:  # fmt: skip
        self.kind, (self.opts, self.mode) = kind, OPTIONS[option]
        name, kw = TORCH_KINDS[kind]
        self.lstm = name == "LSTM"
        g = torch.Generator().manual_seed(seed)
        B = len(LENGTHS)
        bf = self.opts.get("batch_first", False)
        shape = (T, I) if self.mode == "unbatched" else ((B, T, I) if bf else (T, B, I))
        self.x = torch.randn(shape, generator=g).to(x_dtype).requires_grad_()
        self.hx: list[Any] = []
        if hx_dtypes is not None:
            LD = self.opts.get("num_layers", 1) * (2 if self.opts.get("bidirectional") else 1)
            batch = () if self.mode == "unbatched" else (B,)
            sizes = [kw.get("proj_size") or H, H] if self.lstm else [H]
            for s, dt in zip(sizes, hx_dtypes, strict=True):
                self.hx.append((0.5 * torch.randn((LD, *batch, s), generator=g)).to(dt))
                self.hx[-1].requires_grad_()

    def args(self) -> tuple[Any, Any]:
        x: Any = self.x
        if self.mode == "packed":
            bf = self.opts.get("batch_first", False)
            x = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=bf, enforce_sorted=False)
        hx = None if not self.hx else (tuple(self.hx) if self.lstm else self.hx[0])
        return x, hx


def outputs(result: Any) -> list[Any]:
    """[output (a PackedSequence's data), h_n, c_n (LSTM)] of a module's result."""
    out, st = result
    states = st if isinstance(st, tuple) else (st,)
    return [out.data if isinstance(out, PackedSequence) else out, *states]


def run(m: Any, p: Problem, autocast: Any = None, seeds: int = 7) -> tuple[list[Any], list[Any]]:
    """The outputs (detached) and the gradients of the parameters, the input and hx (in that order)
    of a backward of random weightings of every output; ``autocast``: its dtype or None."""
    m.zero_grad()
    for t in (p.x, *p.hx):
        t.grad = None
    with torch.autocast("cpu", dtype=autocast or BF16, enabled=autocast is not None):
        outs = outputs(m(*p.args()))
    g = torch.Generator().manual_seed(seeds)
    # weights bfloat16 represents, so that the gradient reaching the module is the same whether
    # its output is float32 or bfloat16 (a bfloat16 output's gradient is rounded to bfloat16)
    loss = sum(
        (o.float() * torch.randn(o.shape, generator=g).bfloat16().float()).sum() for o in outs
    )
    loss.backward()  # type: ignore[union-attr]
    grads = [q.grad for q in m.parameters()] + [t.grad for t in (p.x, *p.hx)]
    return [o.detach() for o in outs], grads


def rel(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (b the float32 truth)."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max())


def norm_rel(a: Any, b: Any) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def dtypes(ts: list[Any]) -> list[Any]:
    return [t.dtype for t in ts]


# ------------------------------------------------------------------------------------- dtypes

HX_CASES = {  # input dtype, hx dtypes ((h, c) for LSTM, h otherwise; None: no hx)
    "x32": (F32, None),
    "x16": (BF16, None),
    "x32_h32": (F32, (F32, F32)),
    "x32_h16": (F32, (BF16, BF16)),
    "x16_h32": (BF16, (F32, F32)),
    "x32_h16_c32": (F32, (BF16, F32)),
    "x32_h32_c16": (F32, (F32, BF16)),
}


def hx_cases(kind: str, option: str) -> list[str]:
    """Every case for a tensor and a PackedSequence (torch's rule differs between them); the
    input's dtype for the layouts."""
    lstm = TORCH_KINDS[kind][0] == "LSTM"
    cases = [c for c in HX_CASES if lstm or c.count("_") < 2]
    return cases if option in ("L1", "packed_L2") else cases[:2]


@pytest.mark.parametrize(
    ("kind", "option", "case"),
    [(k, o, c) for k in KINDS for o in OPTIONS for c in hx_cases(k, o)],
)
def test_dtypes_under_bf16_autocast_are_torchs(kind: str, option: str, case: str) -> None:
    x_dtype, hx = HX_CASES[case]
    lstm = TORCH_KINDS[kind][0] == "LSTM"
    hx_dtypes = None if hx is None else (hx if lstm else hx[:1])
    tm, fm = pair(kind, (4, 6), **OPTIONS[option][0])
    p = Problem(kind, option, 8, 4, 6, x_dtype, hx_dtypes)
    t_out, t_grads = run(tm, p, BF16)
    f_out, f_grads = run(fm, p, BF16)
    assert dtypes(f_out) == dtypes(t_out)
    assert dtypes(f_grads) == dtypes(t_grads)  # parameters float32, input and hx their own


@pytest.mark.parametrize(("kind", "option"), [(k, o) for k in KINDS for o in OPTIONS])
def test_dtypes_under_fp16_autocast_are_torchs_and_products_float32(kind: str, option: str) -> None:
    """fastrnn has no float16 products: it runs float32 and returns torch's dtypes."""
    tm, fm = pair(kind, (4, 6), **OPTIONS[option][0])
    p = Problem(kind, option, 8, 4, 6)
    try:
        t_out, _ = run(tm, p, F16)
    except RuntimeError:  # torch's oneDNN LSTM has no float16 training: its inference dtypes
        with torch.no_grad(), torch.autocast("cpu", dtype=F16):
            t_out = outputs(tm(*p.args()))
    f_out, f_grads = run(fm, p, F16)
    assert dtypes(f_out) == dtypes(t_out)
    assert all(g.dtype == F32 for g in f_grads)
    plain, plain_grads = run(fm, p)
    for a, b in zip(f_out, plain, strict=True):
        assert torch.equal(a, b.to(a.dtype))
    for a, b in zip(f_grads, plain_grads, strict=True):  # up to the output gradients' rounding
        assert norm_rel(a, b) < 2e-3


# ---------------------------------------------------------------------- values and gradients

T, I, H = 8, 16, 32


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("kind", KINDS)
def test_values_and_gradients_against_float32_and_torch_autocast(
    kind: str, option: str, record_worst_error: Any
) -> None:
    tm, fm = pair(kind, (I, H), **OPTIONS[option][0])
    p = Problem(kind, option, T, I, H)
    exact, exact_grads = run(tm, p)
    theirs, their_grads = run(tm, p, BF16)
    ours, our_grads = run(fm, p, BF16)
    assert dtypes(ours) == dtypes(theirs)
    for o, t, e in zip(ours, theirs, exact, strict=True):
        err, their_err = rel(o, e), rel(t, e)
        record_worst_error("bf16 autocast outputs vs float32, fastrnn.torch", err)
        record_worst_error("bf16 autocast outputs vs float32, torch.nn", their_err)
        record_worst_error("bf16 autocast outputs, fastrnn.torch / torch.nn error", err / their_err)
        assert err <= TOL, (err, their_err)
        assert err <= 2 * their_err, (err, their_err)
        assert err > 1e-4  # the products did run in bfloat16
    assert all(g.dtype == F32 for g in our_grads)
    errs = [norm_rel(g, e) for g, e in zip(our_grads, exact_grads, strict=True)]
    their_errs = [norm_rel(g, e) for g, e in zip(their_grads, exact_grads, strict=True)]
    what = "ReLU RNN" if kind == "rnn_relu" else "other cells"
    record_worst_error(f"bf16 autocast gradients vs float32 ({what}), fastrnn.torch", max(errs))
    record_worst_error(f"bf16 autocast gradients vs float32 ({what}), torch.nn", max(their_errs))
    if kind != "rnn_relu":  # see the module's docstring
        assert max(errs) <= TOL, errs


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_input_and_hx_under_autocast(kind: str) -> None:
    """bfloat16 input and hx (torch.nn takes them under autocast): their gradients are bfloat16,
    the parameters' float32, the values those of the float32 input rounded to bfloat16."""
    tm, fm = pair(kind, (I, H), num_layers=2, bidirectional=True)
    lstm = TORCH_KINDS[kind][0] == "LSTM"
    p16 = Problem(kind, "L2_bi", T, I, H, BF16, (BF16, BF16) if lstm else (BF16,))
    p32 = Problem(kind, "L2_bi", T, I, H, F32, (F32, F32) if lstm else (F32,))
    with torch.no_grad():  # the same values, given as float32
        for a, b in zip((p32.x, *p32.hx), (p16.x, *p16.hx), strict=True):
            a.copy_(b)
    ours, our_grads = run(fm, p16, BF16)
    theirs, their_grads = run(tm, p16, BF16)
    assert dtypes(ours) == dtypes(theirs) and dtypes(our_grads) == dtypes(their_grads)
    assert [g.dtype for g in our_grads[-len(p16.hx) - 1 :]] == [BF16] * (len(p16.hx) + 1)
    same, same_grads = run(fm, p32, BF16)
    for a, b in zip(ours, same, strict=True):  # a carried state of bfloat16 gives bfloat16 out
        assert torch.equal(a, b.to(a.dtype))
    for a, b in zip(our_grads, same_grads, strict=True):
        assert torch.equal(a, b.to(a.dtype))


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("kind", KINDS)
def test_compute_dtype_outside_autocast_is_the_same_run(kind: str, option: str) -> None:
    """``compute_dtype="bfloat16"`` gives float32 outputs that, cast to autocast's dtypes, are its
    outputs, and the same gradients, bit for bit; ``None`` switches back."""
    _, fm = pair(kind, (I, H), **OPTIONS[option][0])
    p = Problem(kind, option, T, I, H)
    inside, inside_grads = run(fm, p, BF16)
    fm.compute_dtype = "bfloat16"
    outside, outside_grads = run(fm, p)
    assert dtypes(outside) == [F32] * len(outside)
    for a, b in zip(inside, outside, strict=True):
        assert torch.equal(a, b.to(a.dtype))
    for a, b in zip(inside_grads, outside_grads, strict=True):
        assert torch.equal(a, b)
    fm.compute_dtype = None
    exact, _ = run(fm, p)
    tm, _ = pair(kind, (I, H), **OPTIONS[option][0])
    theirs, _ = run(tm, p)
    assert max(rel(a, b) for a, b in zip(exact, theirs, strict=True)) < 1e-5


@pytest.mark.parametrize("option", ["L2_bi", "packed_L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_autocast_runs_the_reference_bf16_model(kind: str, option: str) -> None:
    """Outputs and every gradient equal the NumPy reference's bfloat16 model (products of
    bfloat16-rounded operands, accumulated exactly) to float32-level error: the autocast run is
    compute_dtype="bfloat16" (bit for bit, above), checked here against the model."""
    _, fm = pair(kind, (I, H), **OPTIONS[option][0])
    fm.compute_dtype = "bfloat16"
    p = Problem(kind, option, T, I, H, hx_dtypes=(F32, F32) if kind.startswith("lstm") else (F32,))
    p.x.data.copy_(p.x.data * torch.tensor(_mask(p)))  # padding zero, as the kernels see it
    ours, our_grads = run(fm, p)
    # the model, float64, on the same weights, time-major, with the same output gradients
    spec, weights = fm._spec(None)
    params = spec.entries([w.detach().double().numpy() for w in weights])
    x = p.x.detach().double().numpy()
    lengths = LENGTHS if p.mode == "packed" else None
    h0 = p.hx[0].detach().double().numpy()
    c0 = p.hx[1].detach().double().numpy() if len(p.hx) == 2 else None
    y, h_n, c_n, cache = R.stack_forward(
        spec.cell, x, list(params), h0, c0, num_layers=spec.num_layers,
        bidirectional=spec.bidirectional, lengths=lengths, compute_dtype="bfloat16",
    )  # fmt: skip
    g = torch.Generator().manual_seed(7)
    if p.mode == "packed":  # the packed data's rows in the padded grid
        packed = pack_padded_sequence(
            torch.from_numpy(y), torch.tensor(LENGTHS), enforce_sorted=False
        )
        y_ref = packed.data.numpy()
        dy_packed = torch.randn(ours[0].shape, generator=g).bfloat16().double()
        dy = _unpack(dy_packed, y.shape)
    else:
        y_ref = y
        dy = torch.randn(ours[0].shape, generator=g).bfloat16().double().numpy()
    refs = [y_ref, h_n] + ([c_n] if c_n is not None else [])
    dstates = [torch.randn(o.shape, generator=g).bfloat16().double().numpy() for o in ours[1:]]
    for o, r in zip(ours, refs, strict=True):
        assert rel(o, torch.from_numpy(np.asarray(r))) < 2e-4
    grads = R.stack_backward(cache, dy, *dstates)
    ref_grads = [
        a for e in grads["params"] for a in (e[n] for n in
        ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")) if a is not None
    ] + [grads["dx"], grads["dh0"]] + ([grads["dc0"]] if c0 is not None else [])  # fmt: skip
    for a, r in zip(our_grads, ref_grads, strict=True):
        if p.mode == "packed" and a.dim() == 3 and a.shape == p.x.shape:
            r = r * _mask(p)  # the padding's input gradient is zero
        assert norm_rel(a, torch.from_numpy(np.asarray(r))) < 2e-4


def _mask(p: Problem) -> np.ndarray:
    T_, B = p.x.shape[0], p.x.shape[1]
    if p.mode != "packed":
        return np.ones((T_, B, 1), np.float32)
    return (np.arange(T_)[:, None] < np.array(LENGTHS)[None, :]).astype(np.float32)[..., None]


def _unpack(data: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A packed gradient (unsorted LENGTHS, time-major) back on the (T, B, F) grid, zeros in the
    padding."""
    grid = torch.zeros(shape, dtype=data.dtype, requires_grad=True)
    packed = pack_padded_sequence(grid, torch.tensor(LENGTHS), enforce_sorted=False)
    (packed.data * data).sum().backward()
    assert grid.grad is not None
    return grid.grad.numpy()


# ------------------------------------------------------------------- untouched and errors


@pytest.mark.parametrize("kind", KINDS)
def test_what_autocast_leaves_alone(kind: str) -> None:
    """float64 modules and nested ``enabled=False`` run as outside autocast (so does torch)."""
    _, fm = pair(kind, (4, 6), num_layers=2)
    p = Problem(kind, "L1", 8, 4, 6)
    plain, _ = run(fm, p)
    with torch.autocast("cpu", dtype=BF16), torch.autocast("cpu", enabled=False):
        off = outputs(fm(p.x))
    assert all(torch.equal(a, b) for a, b in zip(off, plain, strict=True))
    fm.double()
    p64 = Problem(kind, "L1", 8, 4, 6, torch.float64)
    plain, _ = run(fm, p64)
    ours, _ = run(fm, p64, BF16)
    assert dtypes(ours) == [torch.float64] * len(ours)
    assert all(torch.equal(a, b) for a, b in zip(ours, plain, strict=True))


def test_bad_dtypes_still_raise() -> None:
    _, fm = pair("lstm", (4, 6))
    x = torch.randn(5, 2, 4)
    with pytest.raises(ValueError, match=r"input: dtype torch\.bfloat16 does not match"):
        fm(x.bfloat16())  # outside autocast, as torch.nn
    with torch.autocast("cpu", dtype=BF16), pytest.raises(ValueError, match="float64"):
        fm(x.double())
    h = torch.zeros(1, 2, 6)
    with pytest.raises(ValueError, match=r"hx\[0\]: expected dtype torch.float32"):
        fm(x, (h.bfloat16(), h))
    with torch.autocast("cpu", dtype=BF16), pytest.raises(ValueError, match=r"hx\[1\]"):
        fm(x, (h, h.double()))


def test_compute_dtype_attribute() -> None:
    m = frt.LSTM(4, 6, compute_dtype="bfloat16")
    assert m.compute_dtype == "bfloat16" and "compute_dtype='bfloat16'" in repr(m)
    m.compute_dtype = None
    assert m.compute_dtype == "float32" and "compute_dtype" not in repr(m)
    m.compute_dtype = torch.bfloat16
    assert m.compute_dtype == "bfloat16"
    m.compute_dtype = "float32"
    assert m.compute_dtype == "float32"
    with pytest.raises(ValueError, match="compute_dtype: expected None"):
        m.compute_dtype = "float16"
    with pytest.raises(ValueError, match="bfloat16 products need a float32 stack"):
        frt.GRU(4, 6, dtype=torch.float64, compute_dtype="bfloat16")
    g = frt.GRU(4, 6, compute_dtype="bf16")
    g.double()  # the setting stays; a float64 forward says why it cannot run
    with pytest.raises(ValueError, match="bfloat16 products need a float32 stack"):
        g(torch.randn(3, 4, dtype=torch.float64))
    r = frt.RNN(4, 6, nonlinearity="relu", compute_dtype="bfloat16")
    assert isinstance(r, torch.nn.RNN) and r.nonlinearity == "relu"
    assert r.state_dict().keys() == torch.nn.RNN(4, 6).state_dict().keys()


def test_no_grad_under_autocast_is_the_same() -> None:
    _, fm = pair("gru", (I, H), num_layers=2)
    p = Problem("gru", "packed_L2", T, I, H)
    ours, _ = run(fm, p, BF16)
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        again = outputs(fm(*p.args()))
    assert all(torch.equal(a, b) for a, b in zip(ours, again, strict=True))
