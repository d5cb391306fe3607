"""fastrnn.spec: StackSpec, the one contract of a recurrent stack, and Layout."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from fastrnn.spec import CELLS, LayerParams, Layout, StackSpec

OPTIONS = [
    {},
    {"num_layers": 3},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "bias": False},
]


def torch_module(spec: StackSpec) -> Any:
    torch = pytest.importorskip("torch")
    kinds = {
        "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}),
        "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}),
        "lstm": (torch.nn.LSTM, {"proj_size": spec.proj_size}),
        "gru": (torch.nn.GRU, {}),
    }
    cls, kw = kinds[spec.cell]
    return cls(spec.input_size, spec.hidden_size, spec.num_layers, bias=spec.bias,
               bidirectional=spec.bidirectional, **kw)  # fmt: skip


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"])
def test_parameters_are_torch_nn_s(cell: str, options: dict[str, Any]) -> None:
    """Names, order and shapes of the parameters: exactly torch.nn's, for every option."""
    proj = 2 if cell == "lstm_proj" else 0
    spec = StackSpec(cell.removesuffix("_proj"), 3, 5, proj_size=proj, **options)
    module = torch_module(spec)
    want = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert list(spec.param_shapes().items()) == list(want.items())
    assert list(spec.param_shapes()) == list(module._flat_weights_names)


@pytest.mark.parametrize("cell", list(CELLS))
def test_entries_and_flatten_are_inverse(cell: str) -> None:
    spec = StackSpec(cell, 3, 4, num_layers=2, bidirectional=True, proj_size=0)
    flat = [np.full(s, i, np.float32) for i, s in enumerate(spec.param_shapes().values())]
    entries = spec.entries(flat)
    assert len(entries) == spec.num_entries == 4
    assert all(isinstance(e, LayerParams) for e in entries)
    assert [a is b for a, b in zip(spec.flatten(entries), flat, strict=True)] == [True] * len(flat)
    named = dict(zip(spec.param_shapes(), flat, strict=True))
    assert spec.entries_of(named) == entries
    assert entries[3].weight_ih.shape == (spec.gates * 4, 2 * 4)  # layer 1 reads both directions
    with pytest.raises(ValueError, match=rf"params: expected {len(flat)} arrays"):  # 16 but 20
        spec.entries(flat[:-1])


def test_sizes_and_shapes() -> None:
    spec = StackSpec("lstm", 3, 6, num_layers=2, bidirectional=True, proj_size=2)
    assert (spec.gates, spec.num_directions, spec.state_size, spec.output_size) == (4, 2, 2, 4)
    assert spec.state_shape(7) == (4, 7, 2) and spec.state_shape(7, "c") == (4, 7, 6)
    assert spec.output_shape(5, 7) == (5, 7, 4) and spec.mask_shape(5, 7) == (1, 5, 7, 4)
    assert spec.layer_input_size(0) == 3 and spec.layer_input_size(1) == 4
    assert spec.gate_rows("f") == slice(6, 12)
    assert StackSpec("gru", 3, 6).gate_rows("n") == slice(12, 18)
    with pytest.raises(ValueError, match=r"gate: gru has the gates \('r', 'z', 'n'\), got 'f'"):
        StackSpec("gru", 3, 6).gate_rows("f")
    assert F.workspace_size(spec, 5, 7) > 0


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        (("lstm2", 3, 4), {}, ValueError, r"cell: expected one of \('rnn_tanh'"),
        (("lstm", 0, 4), {}, ValueError, "input_size: must be >= 1, got 0"),
        (("lstm", 3, True), {}, TypeError, "hidden_size: expected an int, got bool"),
        (("lstm", 3, 4.0), {}, TypeError, "hidden_size: expected an int, got float"),
        (("lstm", 3, 4), {"num_layers": 0}, ValueError, "num_layers: must be >= 1"),
        (("lstm", 3, 4), {"proj_size": 4}, ValueError, "proj_size: must be smaller than hidden"),
        (("lstm", 3, 4), {"proj_size": -1}, ValueError, "proj_size: must be >= 0"),
        (("gru", 3, 4), {"proj_size": 2}, ValueError, "proj_size: only LSTM layers"),
        (("gru", 3, 4), {"dtype": np.float16}, TypeError, "dtype: expected float32 or float64"),
        (("gru", 3, 4), {"dtype": "nonsense"}, TypeError, "dtype: expected float32 or float64"),
    ],
)
def test_rules_of_a_spec(args: tuple[Any, ...], kwargs: dict[str, Any], exc: type,
                         match: str) -> None:  # fmt: skip
    with pytest.raises(exc, match=match):
        StackSpec(*args, **kwargs)


def test_immutable_hashable_picklable_and_cached_by_type() -> None:
    spec = StackSpec("gru", 3, 4, dtype="float64")
    assert spec.dtype == np.float64 and spec == StackSpec("gru", 3, 4, dtype=np.float64)
    assert hash(spec) == hash(StackSpec("gru", 3, 4, dtype=np.float64))
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(AttributeError):
        spec.hidden_size = 5  # type: ignore[misc]
    assert StackSpec.cached("gru", 3, 4) is StackSpec.cached("gru", 3, 4)
    # a bad value is refused even when an equal good one is cached (True == 1, 1.0 == 1)
    StackSpec.cached("gru", 3, 4, 1)
    with pytest.raises(TypeError, match="num_layers: expected an int, got bool"):
        StackSpec.cached("gru", 3, 4, True)
    with pytest.raises(TypeError, match="num_layers: expected an int, got float"):
        StackSpec.cached("gru", 3, 4, 1.0)


def test_check_params_names_the_parameter() -> None:
    spec = StackSpec("lstm", 3, 4, bidirectional=True, proj_size=2)
    flat = [np.zeros(s, np.float32) for s in spec.param_shapes().values()]
    good = spec.entries(flat)
    assert spec.check_params(good)[1][4] is good[1].weight_hr  # not copied
    bad = list(good)
    bad[1] = good[1]._replace(weight_hh=np.zeros((16, 3), np.float32))
    with pytest.raises(ValueError, match=r"weight_hh_l0_reverse: expected shape \(16, 2\)"):
        spec.check_params(bad)
    bad[1] = good[1]._replace(weight_hr=None)
    with pytest.raises(TypeError, match="weight_hr_l0_reverse: required, got None"):
        spec.check_params(bad)
    bad[1] = good[1]._replace(bias_hh=None)
    with pytest.raises(ValueError, match="bias_ih, bias_hh: give both biases or neither"):
        spec.check_params(bad)
    bad[1] = good[1]._replace(weight_ih=good[1].weight_ih.astype(np.float64))
    with pytest.raises(TypeError, match=r"weight_ih_l0_reverse: expected dtype float32"):
        spec.check_params(bad)
    with pytest.raises(TypeError, match=r"params\[1\]: expected a LayerParams or a sequence"):
        spec.check_params([good[0], None])
    no_proj = StackSpec("lstm", 3, 4, bidirectional=True)
    flat = [np.zeros(s, np.float32) for s in no_proj.param_shapes().values()]
    entries = no_proj.entries(flat)
    entries[1] = entries[1]._replace(weight_hr=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="weight_hr_l0_reverse: only with proj_size > 0"):
        no_proj.check_params(entries)


def test_states_lengths_masks() -> None:
    spec = StackSpec("gru", 3, 4, num_layers=2)
    spec.check_state_shape("hx", (2, 5, 4), 5)
    spec.check_state_shape("hx", (2, 4), 1, batched=False)
    with pytest.raises(ValueError, match=r"hx: expected shape \(2, 4\), got \(2, 1, 4\)"):
        spec.check_state_shape("hx", (2, 1, 4), 1, batched=False)
    with pytest.raises(ValueError, match="c0: only an LSTM has a cell state, not gru"):
        spec.check_state("c0", np.zeros((2, 5, 4), np.float32), 5, "c")
    assert spec.check_lengths(None, 6, 2) is None
    la = spec.check_lengths([6.0, 0], 6, 2)
    assert la is not None and la.dtype == np.int64 and la.tolist() == [6, 0]
    with pytest.raises(ValueError, match=r"lengths: values must be in \[0, T=6\]"):
        spec.check_lengths([7, 1], 6, 2)
    with pytest.raises(ValueError, match="dropout_masks: masks apply between layers"):
        StackSpec("gru", 3, 4).check_masks(np.ones((0, 6, 2, 4), np.float32), 6, 2)
    assert spec.uses_dropout(0.5, True) and not spec.uses_dropout(0.5, False)
    assert not StackSpec("gru", 3, 4).uses_dropout(0.5, True)


@pytest.mark.parametrize("batch_first", [False, True])
def test_layout_views(batch_first: bool) -> None:
    layout = Layout(batch_first)
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    xt, batched = layout.time_major("x", x)
    assert batched and np.shares_memory(xt, x)
    assert np.array_equal(layout.to_caller(xt, True), x)
    assert xt.shape == ((3, 2, 4) if batch_first else (2, 3, 4))
    u, batched = layout.time_major("x", x[0])
    assert not batched and u.shape == (3, 1, 4) and np.array_equal(layout.to_caller(u, False), x[0])
    s = np.zeros((2, 4))
    assert Layout.state_in(s, False).shape == (2, 1, 4)
    assert Layout.state_out(Layout.state_in(s, False), False).shape == (2, 4)
    with pytest.raises(ValueError, match=r"x: expected a 3-D \(batched\) or 2-D \(unbatched\)"):
        layout.time_major("x", np.zeros(3))


def test_layers_are_their_spec() -> None:
    """Every layer's attributes are its spec's, read-only, and a layer runs through the spec."""
    m = fastrnn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2, dtype=np.float64)
    assert m.spec == StackSpec("lstm", 3, 6, 2, True, True, 2, np.float64)
    assert (m.input_size, m.hidden_size, m.proj_size, m.cell) == (3, 6, 2, "lstm")
    assert list(m.state_dict()) == list(m.spec.param_shapes())
    for name in ("spec", "hidden_size", "dtype"):
        with pytest.raises(AttributeError):
            setattr(m, name, 1)
    twin = fastrnn.layers.from_spec(m.spec, seed=0)
    assert type(twin) is fastrnn.LSTM and twin.spec == m.spec
    twin.load_state_dict(m.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    assert np.array_equal(m.eval()(x)[0], twin.eval()(x)[0])
