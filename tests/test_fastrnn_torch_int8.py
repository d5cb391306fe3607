"""fastrnn.torch in int8: ``quantize_dynamic`` and QuantizedLSTM/GRU/RNN (skipped without torch).

For each cell torch.nn has (RNN tanh/relu, LSTM, LSTM with proj_size, GRU) x option (one layer;
2 layers bidirectional; batch_first; a PackedSequence of unsorted lengths through 2 bidirectional
layers; unbatched; hx given; no bias):

* the int8 module's outputs and final states equal, bit for bit, those of
  :func:`fastrnn.quantize_dynamic`'s layer made independently from the same float weights (the
  same kernels), and its ``state_dict()`` is that layer's;
* they are within ``TOL`` (max abs error over max(1, max |float|)) of torch.nn's float32 module.

And: a model (Embedding -> LSTM -> Linear; nested containers, a shared module, fastrnn.torch's
own modules) quantized end to end, its Linear and Embedding untouched, its output close to the
float model's; ``inplace``; ``qconfig_spec``; state_dict round trips and their checks; deepcopy,
pickle, ``.to``; backward raising; bad input.
"""

from __future__ import annotations

import copy
import io
import pickle
from typing import Any

import numpy as np
import pytest

from helpers import TORCH_KINDS

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import (  # noqa: E402
    PackedSequence,
    pack_padded_sequence,
    pad_packed_sequence,
)

import fastrnn  # noqa: E402
import fastrnn.torch as frt  # noqa: E402

KINDS = list(TORCH_KINDS)
T, B, I, H = 6, 4, 5, 8
LENGTHS = [6, 3, 5, 2]  # unsorted
OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "L1": ({}, "tensor"),
    "L2_bi": ({"num_layers": 2, "bidirectional": True}, "tensor"),
    "bfirst": ({"batch_first": True}, "tensor"),
    "packed_L2_bi": ({"num_layers": 2, "bidirectional": True, "batch_first": True}, "packed"),
    "unbatched": ({"num_layers": 2}, "unbatched"),
    "hx": ({"num_layers": 2, "bidirectional": True}, "hx"),
    "nobias": ({"bias": False}, "tensor"),
}
# int8 against float32 (max abs error over max(1, max |float|)); largest seen here: 1.1e-2
TOL = 3e-2

QCLS = {"LSTM": frt.QuantizedLSTM, "GRU": frt.QuantizedGRU, "RNN": frt.QuantizedRNN}


def float_module(kind: str, **opts: Any) -> Any:
    """torch.nn's float32 module of ``kind``, torch's default initialisation (seeded)."""
    name, kw = TORCH_KINDS[kind]
    torch.manual_seed(0)
    return getattr(torch.nn, name)(I, H, **opts, **kw)


def inputs(kind: str, option: str) -> tuple[Any, Any, Any]:
    """``(x, hx, lengths)`` for an option: x in the caller's layout, hx or None, lengths or
    None."""
    opts, mode = OPTIONS[option]
    name, kw = TORCH_KINDS[kind]
    g = torch.Generator().manual_seed(1)
    bf = opts.get("batch_first", False)
    shape = (T, I) if mode == "unbatched" else ((B, T, I) if bf else (T, B, I))
    x = torch.randn(shape, generator=g)
    hx = None
    if mode == "hx":
        LD = opts.get("num_layers", 1) * (2 if opts.get("bidirectional") else 1)
        Hs = kw.get("proj_size") or H
        h0 = 0.5 * torch.randn(LD, B, Hs, generator=g)
        hx = (h0, 0.5 * torch.randn(LD, B, H, generator=g)) if name == "LSTM" else h0
    lengths = torch.tensor(LENGTHS) if mode == "packed" else None
    return x, hx, lengths


def run(m: Any, x: Any, hx: Any, lengths: Any, batch_first: bool) -> tuple[Any, ...]:
    """``(y, h_n[, c_n])`` of a torch module, y padded when the input is packed."""
    if lengths is None:
        y, st = m(x, hx)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, st = m(packed, hx)
        assert isinstance(out, PackedSequence)
        y, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return (y, *(st if isinstance(st, tuple) else (st,)))


def run_fastrnn(q: Any, x: Any, hx: Any, lengths: Any) -> tuple[Any, ...]:
    """The same through a fastrnn (NumPy) layer."""
    hxn = None
    if hx is not None:
        hxn = tuple(s.numpy() for s in hx) if isinstance(hx, tuple) else hx.numpy()
    y, st = q(x.numpy(), hxn, lengths=None if lengths is None else lengths.numpy())
    return (y, *(st if isinstance(st, tuple) else (st,)))


def max_error(actual: Any, expected: Any) -> float:
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert a.shape == e.shape
    return float(np.abs(a - e).max() / max(1.0, np.abs(e).max()))


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("kind", KINDS)
def test_outputs(kind: str, option: str, record_worst_error: Any) -> None:
    opts = OPTIONS[option][0]
    tm = float_module(kind, **opts)
    qm = frt.quantize_dynamic(tm)
    assert type(qm) is QCLS[TORCH_KINDS[kind][0]]
    assert type(tm) is getattr(torch.nn, TORCH_KINDS[kind][0])  # a bare module: a new one

    # (a) fastrnn.quantize_dynamic's layer, made from the same weights: identical
    name, kw = TORCH_KINDS[kind]
    layer = getattr(fastrnn, name)(I, H, **opts, **kw)
    layer.load_state_dict(tm.state_dict())
    q = fastrnn.quantize_dynamic(layer)
    sd, qsd = qm.state_dict(), q.state_dict()
    assert list(sd) == list(qsd)
    for k in sd:
        assert sd[k].dtype == torch.from_numpy(qsd[k]).dtype, k
        np.testing.assert_array_equal(sd[k].numpy(), qsd[k], err_msg=k)

    x, hx, lengths = inputs(kind, option)
    bf = opts.get("batch_first", False)
    with torch.no_grad():
        got = run(qm, x, hx, lengths, bf)
        want_float = run(tm, x, hx, lengths, bf)
    want = run_fastrnn(q, x, hx, lengths)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        np.testing.assert_array_equal(g.numpy(), w)

    # (b) torch.nn's float32 module on the same weights: close
    for g, w in zip(got, want_float, strict=True):
        assert g.shape == w.shape
        err = max_error(g, w)
        assert err < TOL
        record_worst_error("int8 vs float32 (max abs / max(1, max|float|)), fastrnn.torch", err)


def test_constructor_and_from_float() -> None:
    lstm = frt.QuantizedLSTM(I, H, num_layers=2, proj_size=3, batch_first=True)
    assert repr(lstm) == (
        "QuantizedLSTM(5, 8, proj_size=3, num_layers=2, batch_first=True, dtype=torch.qint8)"
    )
    assert not lstm.training and list(lstm.parameters()) == []
    assert all(not b.requires_grad for b in lstm.buffers())
    assert lstm.weight_hr_l1.dtype == torch.int8 and lstm.weight_hr_l1_scale.shape == (3,)
    rnn = frt.QuantizedRNN(I, H, nonlinearity="relu")
    assert rnn.nonlinearity == "relu" and rnn._layer().spec.cell == "rnn_relu"
    with pytest.raises(ValueError, match="hidden_size"):  # torch's own argument checks
        frt.QuantizedGRU(I, 0)
    with pytest.raises(TypeError, match=r"mod: expected a torch.nn.GRU, got LSTM"):
        frt.QuantizedGRU.from_float(torch.nn.LSTM(I, H))
    # fastrnn.torch's float modules are torch.nn's: from_float takes them, the same result
    tm = float_module("gru")
    fm = frt.GRU(I, H)
    fm.load_state_dict(tm.state_dict())
    x = torch.randn(T, B, I)
    torch.testing.assert_close(
        frt.QuantizedGRU.from_float(fm)(x), frt.QuantizedGRU.from_float(tm)(x), rtol=0, atol=0
    )
    lstm.flatten_parameters()  # kept for code that calls it


class Model(torch.nn.Module):
    """Embedding -> 2-layer LSTM -> Linear, plus containers: a ModuleList holding a fastrnn.torch
    GRU and, twice, one shared RNN."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(20, I)
        self.rnn = torch.nn.LSTM(I, H, num_layers=2, batch_first=True)
        shared = torch.nn.RNN(H, H, batch_first=True)
        self.more = torch.nn.ModuleList([frt.GRU(H, H, batch_first=True), shared, shared])
        self.head = torch.nn.Sequential(torch.nn.Linear(H, 7))

    def forward(self, tokens: Any) -> Any:
        y, _ = self.rnn(self.embed(tokens))
        for m in self.more:
            y, _ = m(y)
        return self.head(y)


def test_model_end_to_end(record_worst_error: Any) -> None:
    torch.manual_seed(0)
    model = Model()
    before = copy.deepcopy(model.state_dict())
    tokens = torch.randint(0, 20, (B, T))
    qmodel = frt.quantize_dynamic(model)
    assert qmodel is not model and model.training and not qmodel.training
    assert type(model.rnn) is torch.nn.LSTM  # the model is unchanged (a deep copy was quantized)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)

    assert type(qmodel.rnn) is frt.QuantizedLSTM
    assert [type(m) for m in qmodel.more] == [frt.QuantizedGRU, frt.QuantizedRNN, frt.QuantizedRNN]
    assert qmodel.more[1] is qmodel.more[2]  # a shared module stays one module
    assert type(qmodel.embed) is torch.nn.Embedding and type(qmodel.head[0]) is torch.nn.Linear
    torch.testing.assert_close(qmodel.head[0].weight, model.head[0].weight, rtol=0, atol=0)

    with torch.no_grad():
        y, want = qmodel(tokens), model(tokens)
    err = max_error(y, want)
    assert err < TOL
    record_worst_error("int8 vs float32, model end to end (max abs / max(1, max|float|))", err)

    # inplace: the same object, its submodules replaced
    same = frt.quantize_dynamic(model, inplace=True)
    assert same is model and type(model.rnn) is frt.QuantizedLSTM
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), y, rtol=0, atol=0)


def test_bare_layer() -> None:
    tm = float_module("lstm")
    for inplace in (False, True):
        q = frt.quantize_dynamic(tm, inplace=inplace)
        assert type(q) is frt.QuantizedLSTM and type(tm) is torch.nn.LSTM
    q = frt.quantize_dynamic(tm, {torch.nn.LSTM}, torch.int8)
    assert type(q) is frt.QuantizedLSTM


def test_qconfig_spec() -> None:
    model = Model()
    only_lstm = frt.quantize_dynamic(model, {torch.nn.LSTM})
    assert type(only_lstm.rnn) is frt.QuantizedLSTM
    assert [type(m) for m in only_lstm.more] == [frt.GRU, torch.nn.RNN, torch.nn.RNN]
    fastrnn_gru = frt.quantize_dynamic(model, [frt.GRU])  # a subclass selects only itself
    assert type(fastrnn_gru.more[0]) is frt.QuantizedGRU and type(fastrnn_gru.rnn) is torch.nn.LSTM
    by_name = frt.quantize_dynamic(model, {"more"})  # that module and those inside it
    assert type(by_name.rnn) is torch.nn.LSTM
    assert [type(m) for m in by_name.more] == [frt.QuantizedGRU, *[frt.QuantizedRNN] * 2]

    with pytest.raises(ValueError, match=r"qconfig_spec: fastrnn quantizes .* got Linear"):
        frt.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.Linear})
    with pytest.raises(ValueError, match=r"qconfig_spec: no module named \['rnnn'\]"):
        frt.quantize_dynamic(model, {"rnnn"})
    with pytest.raises(TypeError, match="qconfig_spec: expected None or a set"):
        frt.quantize_dynamic(model, {torch.nn.LSTM: None})
    with pytest.raises(ValueError, match=r"model: no torch\.nn\.LSTM, GRU or RNN to quantize"):
        frt.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="matching qconfig_spec"):
        frt.quantize_dynamic(model, {"head"})


def test_bad_arguments() -> None:
    tm = float_module("gru")
    for dtype in (torch.float16, torch.quint8, torch.float32, "int8"):
        with pytest.raises(ValueError, match=r"dtype: fastrnn quantizes to torch\.qint8"):
            frt.quantize_dynamic(tm, dtype=dtype)
    with pytest.raises(ValueError, match="mapping: not supported"):
        frt.quantize_dynamic(tm, mapping={torch.nn.GRU: frt.QuantizedGRU})
    with pytest.raises(TypeError, match=r"fastrnn\.quantize_dynamic"):
        frt.quantize_dynamic(fastrnn.GRU(I, H))
    with pytest.raises(TypeError, match="fastrnn quantizes float32 and float64 modules, got "):
        frt.quantize_dynamic(tm.to(torch.bfloat16))
    meta = torch.nn.Sequential(torch.nn.LSTM(I, H, device="meta"))
    with pytest.raises(ValueError, match=r"weight_ih_l0: fastrnn\.torch runs on CPU tensors only"):
        frt.quantize_dynamic(meta, inplace=True)
    assert type(meta[0]) is torch.nn.LSTM  # in place, but unchanged by the failure
    with pytest.raises(ValueError, match="contains NaN"):
        bad = float_module("lstm")
        with torch.no_grad():
            bad.weight_hh_l0[0, 0] = float("nan")
        frt.quantize_dynamic(bad)
    # float64 modules are quantized too (the int8 module computes in float32)
    tm64 = float_module("lstm").double()
    q64, q32 = frt.quantize_dynamic(tm64), frt.quantize_dynamic(float_module("lstm"))
    for k, v in q64.state_dict().items():  # the same weights (exact in float32): the same
        torch.testing.assert_close(v, q32.state_dict()[k], rtol=0, atol=0)


def test_bad_input() -> None:
    q = frt.quantize_dynamic(float_module("lstm", num_layers=2))
    x = torch.randn(T, B, I)
    with pytest.raises(ValueError, match=r"input: dtype torch.float64 does not match .* int8"):
        q(x.double())
    with pytest.raises(ValueError, match=r"input: fastrnn\.torch runs on CPU tensors only"):
        q(x.to("meta"))
    with pytest.raises(RuntimeError, match="input"):
        q(torch.randn(T, B, I + 1))
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h_0, c_0\)"):
        q(x, torch.zeros(2, B, H))
    with pytest.raises(RuntimeError, match=r"hx\[0\]"):
        q(x, (torch.zeros(1, B, H), torch.zeros(2, B, H)))
    with pytest.raises(ValueError, match=r"hx\[1\]: expected dtype torch.float32"):
        q(x, (torch.zeros(2, B, H), torch.zeros(2, B, H, dtype=torch.float64)))
    with pytest.raises(TypeError, match="input: expected a tensor or a PackedSequence"):
        q(x.numpy())
    with pytest.raises(ValueError, match=r"weight_ih_l0: fastrnn\.torch runs on CPU tensors only"):
        frt.quantize_dynamic(float_module("gru")).to("meta")(x)


def test_backward_raises() -> None:
    q = frt.quantize_dynamic(float_module("gru"))
    x = torch.randn(T, B, I, requires_grad=True)
    y, h = q(x)  # the forward runs
    assert y.requires_grad and h.requires_grad
    with pytest.raises(RuntimeError, match="QuantizedGRU: an int8 module is inference-only"):
        y.sum().backward()
    with pytest.raises(RuntimeError, match="inference-only"):
        torch.autograd.grad(h.sum(), x)
    h0 = torch.zeros(1, B, H, requires_grad=True)  # hx requiring a gradient: the same
    with pytest.raises(RuntimeError, match="inference-only"):
        q(x.detach(), h0)[1].sum().backward()
    with torch.no_grad():
        assert not q(x)[0].requires_grad
    with torch.inference_mode():
        assert not q(x)[0].requires_grad

    # a model whose Embedding trains: loss.backward() raises instead of missing the gradient
    torch.manual_seed(0)
    qmodel = frt.quantize_dynamic(Model())
    loss = qmodel(torch.randint(0, 20, (B, T))).square().mean()
    with pytest.raises(RuntimeError, match="an int8 module is inference-only"):
        loss.backward()
    assert qmodel.embed.weight.grad is None

    # data in, a float head after: nothing is differentiated through the int8 module, and the
    # head's gradient is exact (training a head on int8 features works)
    head = torch.nn.Linear(H, 1)
    y, _ = q(x.detach())
    head(y).sum().backward()
    torch.testing.assert_close(head.weight.grad, y.detach().sum((0, 1))[None])


def test_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    qmodel = frt.quantize_dynamic(Model())
    buf = io.BytesIO()
    torch.save(qmodel.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    assert sd["rnn.weight_ih_l0"].dtype == torch.int8
    assert sd["rnn.weight_ih_l0_scale"].dtype == torch.float32
    assert sd["rnn.weight_ih_l0_scale"].shape == (4 * H,)

    torch.manual_seed(1)  # another model of the same structure, other weights
    other = frt.quantize_dynamic(Model())
    tokens = torch.randint(0, 20, (B, T))
    with torch.no_grad():
        assert not torch.equal(other(tokens), qmodel(tokens))
        other.load_state_dict(sd)
        torch.testing.assert_close(other(tokens), qmodel(tokens), rtol=0, atol=0)

    # a bare module built from the arguments, loading the quantized state: the same outputs
    lstm = frt.QuantizedLSTM(I, H, num_layers=2, batch_first=True)
    lstm.load_state_dict(qmodel.rnn.state_dict())
    x = torch.randn(B, T, I)
    torch.testing.assert_close(lstm(x)[0], qmodel.rnn(x)[0], rtol=0, atol=0)

    # fastrnn's (NumPy) layer loads it too: one state_dict
    layer = fastrnn.QuantizedLSTM(lstm._layer().spec, lstm.state_dict(), batch_first=True)
    np.testing.assert_array_equal(layer(x.numpy())[0], lstm(x)[0].numpy())


def test_load_state_dict_checks() -> None:
    q = frt.quantize_dynamic(float_module("lstm"))
    x = torch.randn(T, B, I)
    y = q(x)[0]
    good = q.state_dict()
    float_sd = float_module("lstm").state_dict()  # a float module's: no scales, float weights
    with pytest.raises(RuntimeError, match="expected int8 values"):
        q.load_state_dict(float_sd, strict=False)
    for key, value, match in [
        ("weight_hh_l0", torch.full_like(good["weight_hh_l0"], -128), "in \\[-127, 127\\]"),
        ("weight_ih_l0_scale", -good["weight_ih_l0_scale"], "scales must be >= 0"),
        ("bias_hh_l0", torch.full_like(good["bias_hh_l0"], float("nan")), "NaN"),
        ("weight_ih_l0", good["weight_ih_l0"][:, :2], "shape"),
    ]:
        with pytest.raises(RuntimeError, match=match):
            q.load_state_dict({**good, key: value})
    with pytest.raises(RuntimeError, match="Missing key"):
        q.load_state_dict({k: v for k, v in good.items() if not k.endswith("_scale")})
    torch.testing.assert_close(q(x)[0], y, rtol=0, atol=0)  # unchanged by the failures


def test_copy_pickle_to_and_changes() -> None:
    q = frt.quantize_dynamic(float_module("rnn_tanh", num_layers=2, bidirectional=True))
    x = torch.randn(T, B, I)
    y = q(x)[0]
    q(x)  # the fastrnn layer underneath is made and kept
    for other in (copy.deepcopy(q), pickle.loads(pickle.dumps(q)), q.to("cpu")):
        torch.testing.assert_close(other(x)[0], y, rtol=0, atol=0)
    assert q.to("cpu") is q
    model = torch.nn.Sequential(q).double().half().to(torch.float32)
    assert {b.dtype for b in q.buffers()} == {torch.int8, torch.float32}
    torch.testing.assert_close(model(x)[0], y, rtol=0, atol=0)  # values kept, not rounded

    # a buffer changed in place (or replaced) is used at the next call
    with torch.no_grad():
        q.bias_ih_l0.add_(0.5)
    y2 = q(x)[0]
    assert not torch.equal(y2, y)
    layer = fastrnn.QuantizedRNN(q._layer().spec, q.state_dict())
    np.testing.assert_array_equal(layer(x.numpy())[0], y2.numpy())
    assert q._layer() is q._layer()  # kept while nothing changes
    q.weight_hh_l1 = torch.zeros_like(q.weight_hh_l1)  # a buffer replaced
    assert not torch.equal(q(x)[0], y2)

    # made inside inference_mode: ordinary buffers (their changes are seen), usable outside
    with torch.inference_mode():
        qi = frt.quantize_dynamic(float_module("gru"))
        yi = qi(x)[0]
    assert not any(b.is_inference() for b in qi.buffers())
    torch.testing.assert_close(qi(x)[0], yi, rtol=0, atol=0)


def test_train_mode_autocast_and_memory() -> None:
    q = frt.quantize_dynamic(float_module("lstm", num_layers=2, dropout=0.5))
    x = torch.randn(T, B, I)
    y = q(x)[0]
    q.train()  # changes nothing: no dropout, no backward
    torch.testing.assert_close(q(x)[0], y, rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = q(x.bfloat16())[0]
    assert yb.dtype == torch.float32
    torch.testing.assert_close(yb, q(x.bfloat16().float())[0], rtol=0, atol=0)

    # the weights take about a quarter of the float32 bytes
    tm = torch.nn.LSTM(64, 64, num_layers=2)
    qm = frt.quantize_dynamic(tm)
    fbytes = sum(p.nbytes for p in tm.parameters())
    qbytes = sum(b.nbytes for b in qm.buffers())
    assert qbytes == fastrnn.quantize_dynamic(fastrnn.LSTM(64, 64, num_layers=2)).nbytes
    assert 0.25 < qbytes / fbytes < 0.3
