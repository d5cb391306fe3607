"""Weight initialisers with ``torch.nn.init``'s definitions, and
:func:`~fastrnn.training.init.init_recurrent` for layers.

Each initialiser takes a ``shape`` (an int or a sequence of ints; a negative or non-integer
size is a ValueError) and returns a new array of that shape and of ``dtype`` (any NumPy floating
dtype, float32 by default; another is a TypeError) drawn from ``rng``: a seed, a
``numpy.random.Generator`` or None (fresh entropy). The same seed gives the same array. The
numbers differ from torch's (a different random generator); the distributions are the same.

Fans follow ``torch.nn.init``: for a weight of shape ``(out, in, *k)``, ``fan_in = in * prod(k)``
and ``fan_out = out * prod(k)``; so for an RNN's ``weight_ih (G*H, I)``, ``fan_in = I`` and
``fan_out = G*H``.

============================  =========================================================
``xavier_uniform``            U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot)
``xavier_normal``             N(0, std), ``std = gain * sqrt(2 / (fan_in + fan_out))``
``kaiming_uniform``           U(-a, a), ``a = gain * sqrt(3 / fan)`` (He)
``kaiming_normal``            N(0, std), ``std = gain / sqrt(fan)``, ``fan`` by ``mode``
``orthogonal``                ``gain * Q``, Q (semi-)orthogonal from the QR of a Gaussian
``uniform_default``           U(-1/sqrt(H), 1/sqrt(H)): PyTorch's RNN/LSTM/GRU default
``zeros``                     zeros
============================  =========================================================
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .._args import check_int, check_real
from ..layers import RecurrentLayer
from ..spec import LayerParams, StackSpec

__all__ = [
    "SCHEMES",
    "calculate_gain",
    "init_recurrent",
    "kaiming_normal",
    "kaiming_uniform",
    "orthogonal",
    "set_chrono_bias",
    "set_forget_bias",
    "uniform_default",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Array = NDArray[Any]
Shape = int | Sequence[int]
RngLike = int | np.random.Generator | None
_Layer = TypeVar("_Layer", bound=RecurrentLayer)

#: scheme names accepted by :func:`init_recurrent`
SCHEMES = (
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "default",
    "zeros",
)

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)


# ---- helpers ----------------------------------------------------------------------------------


def _shape(shape: Shape, min_ndim: int = 0) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints with at least ``min_ndim`` axes."""
    dims: tuple[Any, ...] = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"shape: expected non-negative ints, got {shape!r}")
    if len(dims) < min_ndim:
        raise ValueError(
            f"shape: expected at least {min_ndim} dimensions (out, in, ...), got {tuple(dims)}"
        )
    return tuple(int(d) for d in dims)


def _dtype(dtype: DTypeLike) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected a floating dtype, got {dtype!r}") from None
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"dtype: expected a floating dtype, got {dt}")
    return dt


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch.nn.init's ``(fan_in, fan_out)`` of a weight ``(out, in, *receptive_field)``."""
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(shape: tuple[int, ...], mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode: expected 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"shape: {mode} is zero for shape {shape}")
    return fan


def _uniform(shape: tuple[int, ...], bound: float, rng: RngLike, dtype: DTypeLike) -> Array:
    dt = _dtype(dtype)
    g = np.random.default_rng(rng)
    return g.uniform(-bound, bound, shape).astype(dt)


def _normal(shape: tuple[int, ...], std: float, rng: RngLike, dtype: DTypeLike) -> Array:
    dt = _dtype(dtype)
    g = np.random.default_rng(rng)
    return g.normal(0.0, std, shape).astype(dt)


# ---- gains and initialisers -------------------------------------------------------------------


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity``, as ``torch.nn.init.calculate_gain``.

    Args:
        nonlinearity: ``linear``, ``conv1d``..``conv3d``, ``conv_transpose1d``..``3d``,
            ``sigmoid`` (gain 1); ``tanh`` (5/3); ``relu`` (sqrt(2)); ``leaky_relu``
            (sqrt(2 / (1 + slope^2))); ``selu`` (3/4).
        param: the negative slope of ``leaky_relu`` (None: 0.01); ignored otherwise.

    Returns:
        The gain.

    Raises:
        ValueError: unknown ``nonlinearity``, or a ``param`` that is not a number.
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, (int, float)):
            raise ValueError(f"param: negative slope {param!r} is not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"nonlinearity: unsupported nonlinearity {nonlinearity!r}")


def _xavier_std(s: tuple[int, ...], gain: float) -> float:
    """Glorot's standard deviation ``gain * sqrt(2 / (fan_in + fan_out))``."""
    gain = check_real("gain", gain)
    fan_in, fan_out = _fans(s)
    if fan_in + fan_out == 0:
        raise ValueError(f"shape: fan_in + fan_out is zero for shape {s}")
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_uniform(
    shape: Shape, gain: float = 1.0, *, rng: RngLike = None, dtype: DTypeLike = np.float32
) -> Array:
    """Glorot uniform: U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``, as
    ``torch.nn.init.xavier_uniform_``.

    Args:
        shape: ``(out, in, ...)``, at least 2 axes.
        gain: the scale (:func:`calculate_gain`).
        rng, dtype: the random source and the array's dtype (the module's conventions).

    Returns:
        A new array of ``shape``.

    Raises:
        ValueError: ``shape`` has fewer than 2 axes, or ``fan_in + fan_out`` is 0; ``gain`` is
            not finite.
        TypeError: ``dtype`` is not a floating dtype; ``gain`` is not a real number.
    """
    s = _shape(shape, 2)
    return _uniform(s, math.sqrt(3.0) * _xavier_std(s, gain), rng, dtype)


def xavier_normal(
    shape: Shape, gain: float = 1.0, *, rng: RngLike = None, dtype: DTypeLike = np.float32
) -> Array:
    """Glorot normal: N(0, std) with ``std = gain * sqrt(2 / (fan_in + fan_out))``, as
    ``torch.nn.init.xavier_normal_``.

    Arguments, result and errors: those of :func:`xavier_uniform`.
    """
    s = _shape(shape, 2)
    return _normal(s, _xavier_std(s, gain), rng, dtype)


def kaiming_uniform(
    shape: Shape,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    rng: RngLike = None,
    dtype: DTypeLike = np.float32,
) -> Array:
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)``, as
    ``torch.nn.init.kaiming_uniform_``.

    Args:
        shape: ``(out, in, ...)``, at least 2 axes.
        a: the negative slope of a leaky ReLU (with the defaults the gain is sqrt(2), ReLU's).
        mode: ``"fan_in"`` or ``"fan_out"``: the ``fan``.
        nonlinearity: ``gain = calculate_gain(nonlinearity, a)`` (:func:`calculate_gain`).
        rng, dtype: the random source and the array's dtype (the module's conventions).

    Returns:
        A new array of ``shape``.

    Raises:
        ValueError: ``shape`` has fewer than 2 axes or a zero ``fan``, an unknown ``mode`` or
            ``nonlinearity``.
        TypeError: ``dtype`` is not a floating dtype.
    """
    s = _shape(shape, 2)
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(s, mode))
    return _uniform(s, math.sqrt(3.0) * std, rng, dtype)


def kaiming_normal(
    shape: Shape,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    rng: RngLike = None,
    dtype: DTypeLike = np.float32,
) -> Array:
    """He normal: N(0, std) with ``std = gain / sqrt(fan)``, as
    ``torch.nn.init.kaiming_normal_``.

    Arguments, result and errors: those of :func:`kaiming_uniform`.
    """
    s = _shape(shape, 2)
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(s, mode))
    return _normal(s, std, rng, dtype)


def orthogonal(
    shape: Shape, gain: float = 1.0, *, rng: RngLike = None, dtype: DTypeLike = np.float32
) -> Array:
    """A (semi-)orthogonal matrix times ``gain``, as ``torch.nn.init.orthogonal_`` (Saxe et al.).

    The matrix is ``(rows, cols) = (shape[0], prod(shape[1:]))`` (reshaped to ``shape``). A
    Gaussian matrix (transposed if wide) is factored ``A = QR``, and the columns of ``Q`` are
    multiplied by the signs of ``diag(R)``, which makes ``Q`` uniformly (Haar) distributed.
    Square: ``W W^T = W^T W = gain^2 I``; wide: orthonormal rows, ``W W^T = gain^2 I``; tall:
    orthonormal columns, ``W^T W = gain^2 I``. Computed in float64, then cast to ``dtype``.

    Args:
        shape: ``(rows, ...)``, at least 2 axes (a zero size gives zeros).
        gain: the scale.
        rng, dtype: the random source and the array's dtype (the module's conventions).

    Returns:
        A new array of ``shape``.

    Raises:
        ValueError: ``shape`` has fewer than 2 axes; ``gain`` is not finite.
        TypeError: ``dtype`` is not a floating dtype; ``gain`` is not a real number.
    """
    s = _shape(shape, 2)
    dt = _dtype(dtype)
    gain = check_real("gain", gain)
    rows = s[0]
    cols = math.prod(s[1:])
    if rows * cols == 0:
        return np.zeros(s, dt)
    g = np.random.default_rng(rng)
    a = g.standard_normal((rows, cols))
    wide = rows < cols
    if wide:
        a = a.T
    q, r = np.linalg.qr(a)  # reduced: q (max, min) with orthonormal columns
    q = q * np.sign(np.diag(r))  # the sign fix
    if wide:
        q = q.T
    w: Array = (gain * q).reshape(s).astype(dt)
    return w


def uniform_default(
    shape: Shape, hidden_size: int, *, rng: RngLike = None, dtype: DTypeLike = np.float32
) -> Array:
    """PyTorch's default for every RNN/LSTM/GRU parameter: U(-k, k) with ``k = 1/sqrt(H)``.

    Args:
        shape: any shape (biases too).
        hidden_size: ``H``, the layer's hidden size (>= 1).
        rng, dtype: the random source and the array's dtype (the module's conventions).

    Returns:
        A new array of ``shape``.

    Raises:
        TypeError: ``hidden_size`` not an int, or ``dtype`` not a floating dtype.
        ValueError: ``hidden_size`` < 1.
    """
    H = check_int("hidden_size", hidden_size, 1)
    return _uniform(_shape(shape), 1.0 / math.sqrt(H), rng, dtype)


def zeros(shape: Shape, *, rng: RngLike = None, dtype: DTypeLike = np.float32) -> Array:
    """An array of zeros.

    Args:
        shape: any shape.
        rng: accepted (and unused) so that every initialiser of this module can be called the
            same way.
        dtype: the array's dtype (a floating dtype).

    Returns:
        A new array of ``shape``.

    Raises:
        TypeError: ``dtype`` is not a floating dtype.
    """
    del rng
    return np.zeros(_shape(shape), _dtype(dtype))


# ---- layers -----------------------------------------------------------------------------------


def _check_scheme(name: str, scheme: str, allowed: Sequence[str]) -> None:
    if scheme not in allowed:
        raise ValueError(f"{name}: expected one of {tuple(allowed)}, got {scheme!r}")


def _init_matrix(
    scheme: str,
    shape: tuple[int, ...],
    blocks: int,
    hidden_size: int,
    rng: np.random.Generator,
    dtype: np.dtype[Any],
) -> Array:
    """A weight matrix ``(rows, cols)`` by ``scheme``; "orthogonal" draws each of the ``blocks``
    row blocks (the gates) on its own, every other scheme the whole matrix (torch's fans)."""
    if scheme == "orthogonal":
        rows, cols = shape
        parts = [orthogonal((rows // blocks, cols), rng=rng, dtype=dtype) for _ in range(blocks)]
        return np.concatenate(parts, axis=0)
    schemes: dict[str, Callable[..., Array]] = {
        "xavier_uniform": xavier_uniform,
        "xavier_normal": xavier_normal,
        "kaiming_uniform": kaiming_uniform,
        "kaiming_normal": kaiming_normal,
        "zeros": zeros,
    }
    if scheme == "default":
        return uniform_default(shape, hidden_size, rng=rng, dtype=dtype)
    return schemes[scheme](shape, rng=rng, dtype=dtype)


def init_recurrent(
    layer: _Layer,
    *,
    weight_ih: str = "xavier_uniform",
    weight_hh: str = "orthogonal",
    bias: str = "zeros",
    forget_bias: float | None = None,
    rng: RngLike = None,
) -> _Layer:
    """Re-initialise every parameter of an :class:`~fastrnn.layers.RNN`,
    :class:`~fastrnn.layers.LSTM`, :class:`~fastrnn.layers.GRU`,
    :class:`~fastrnn.layers.LayerNormLSTM` or :class:`~fastrnn.layers.LayerNormGRU` layer (all
    layers and directions); returns the layer.

    Args:
        layer: the layer; its parameters are replaced through ``layer.load_state_dict`` and keep
            the layer's dtype.
        weight_ih: scheme of the input matrices ``weight_ih_l*`` ``(G*H, I)`` and of an LSTM's
            projections ``weight_hr_l*`` ``(P, H)``.
        weight_hh: scheme of the recurrent matrices ``weight_hh_l*`` ``(G*H, Hs)``.
        bias: ``"zeros"`` or ``"default"`` for ``bias_ih_l*`` and ``bias_hh_l*`` (ignored if the
            layer has no biases), and for the vectors of a cell's own parameters (a peephole
            LSTM's ``weight_peephole_l*``: zeros start it as a plain LSTM), biases or not; but
            those that start at a constant (:meth:`StackSpec.param_constants
            <fastrnn.spec.StackSpec.param_constants>`: a LayerNormLSTM's and a LayerNormGRU's
            layer-norm gains 1, a LayerNormLSTM's ``layer_norm_bias_c`` 0, as
            ``torch.nn.LayerNorm``) take it, whatever the schemes.
        forget_bias: LSTM (and LayerNormLSTM) only: the f block (rows ``H:2H``) of every
            ``bias_ih`` is set to it and that of ``bias_hh`` to 0, so that the forget gate's bias
            sums to ``forget_bias`` (1.0 is the usual choice, which keeps the cell's memory
            early in training).
        rng: seed or ``numpy.random.Generator``; the same seed gives the same weights.

    Returns:
        ``layer``, re-initialised.

    Schemes: ``"xavier_uniform"``, ``"xavier_normal"``, ``"kaiming_uniform"``,
    ``"kaiming_normal"`` (torch's defaults: ``a=0``, ``fan_in``, leaky_relu, i.e. He for ReLU),
    ``"orthogonal"``, ``"default"`` (PyTorch's U(-1/sqrt(H), 1/sqrt(H))) and ``"zeros"``.
    ``"orthogonal"`` draws each gate block ``(H, Hs)`` of a matrix on its own (each block of
    ``weight_hh`` is orthogonal when ``Hs = H``; with a projection, ``Hs < H``, each block has
    orthonormal columns); the Xavier and Kaiming schemes see the whole matrix, with torch's fans
    (``fan_in = I``, ``fan_out = G*H`` for ``weight_ih``).

    Raises:
        TypeError: ``layer`` is not a fastrnn recurrent layer.
        ValueError: an unknown scheme (naming the argument), a weight scheme for ``bias``, or
            ``forget_bias`` for a layer that is not an LSTM with biases and a forget gate of
            its own (``input_forget=False``).
    """
    if not isinstance(layer, RecurrentLayer):
        raise TypeError(
            "layer: expected a fastrnn.RNN, LSTM, GRU, LayerNormLSTM or LayerNormGRU, got "
            f"{type(layer).__name__}"
        )
    spec = layer.spec
    _check_scheme("weight_ih", weight_ih, SCHEMES)
    _check_scheme("weight_hh", weight_hh, SCHEMES)
    _check_scheme("bias", bias, ("zeros", "default"))
    if forget_bias is not None:
        _check_forget_bias(spec, type(layer).__name__, forget_bias)

    g = np.random.default_rng(rng)
    H, G = spec.hidden_size, spec.gates
    schemes = LayerParams(weight_ih, weight_hh, bias, bias, weight_ih, bias)
    blocks = LayerParams(G, G, 1, 1, 1, 1)
    constants = spec.param_constants()
    new: dict[str, Array] = {}
    for k in range(spec.num_entries):
        names, shapes = spec.entry_names(k), spec.entry_shapes(k)
        # the five of PyTorch, then each vector of the cell's own parameters (bias's scheme)
        own = zip(names.cell_params or (), shapes.cell_params or (), strict=True)
        items = [*zip(names[:5], shapes[:5], schemes[:5], blocks[:5], strict=True)]
        items += [(name, shape, schemes.cell_params, 1) for name, shape in own]
        for name, shape, scheme, nb in items:
            if name in constants:
                new[name] = np.full(shape, constants[name], spec.dtype)
            elif name is not None:
                new[name] = _init_matrix(scheme, shape, nb, H, g, spec.dtype)
    if forget_bias is not None:
        _gate_biases(spec, new, "f", [forget_bias] * spec.num_entries)
    layer.load_state_dict(new)
    return layer


def set_forget_bias(layer: _Layer, forget_bias: float) -> _Layer:
    """Set the forget-gate biases of an LSTM layer (all layers and directions) and nothing else;
    returns the layer.

    The f block (rows ``H:2H``) of every ``bias_ih`` is set to ``forget_bias`` and that of
    ``bias_hh`` to 0, so that the forget gate's bias sums to ``forget_bias`` (the rule of
    :func:`init_recurrent`'s ``forget_bias``). A bias of 1 keeps the cell's memory open early in
    training (f = sigmoid(1) = 0.73 rather than 0.5 for a zero input; Gers et al., 2000;
    Jozefowicz et al., 2015); :class:`~fastrnn.training.model.SequenceModel` applies it to its
    LSTMs by default.

    Args:
        layer: an :class:`~fastrnn.layers.LSTM` or :class:`~fastrnn.layers.LayerNormLSTM` with
            biases (a LayerNormLSTM's gate biases are added after its layer norms, as an
            LSTM's after its products).
        forget_bias: the forget gate's bias, a finite number.

    Returns:
        ``layer``.

    Raises:
        TypeError: ``layer`` is not a fastrnn recurrent layer.
        ValueError: ``layer`` is not an LSTM with biases and a forget gate of its own
            (``input_forget=False``), or ``forget_bias`` is not a finite number.
    """
    if not isinstance(layer, RecurrentLayer):
        raise TypeError(f"layer: expected a fastrnn.LSTM, got {type(layer).__name__}")
    spec = layer.spec
    _check_forget_bias(spec, type(layer).__name__, forget_bias)
    params = layer.state_dict()
    _gate_biases(spec, params, "f", [forget_bias] * spec.num_entries)
    layer.load_state_dict(params)
    return layer


def set_chrono_bias(layer: _Layer, t_max: int, *, rng: RngLike = None) -> _Layer:
    """Tallec & Ollivier's chrono initialisation (2018) of an LSTM layer's forget- and input-gate
    biases (all layers and directions); the other parameters are kept. Returns the layer.

    Each unit's forget-gate bias is ``b_f = log(u)``, ``u ~ U(1, t_max - 1)`` drawn per unit
    from ``rng``, and its input-gate bias ``-b_f``: at the start each unit's cell is a moving
    average over about ``u`` steps (f = sigmoid(b_f), i = 1 - f for a zero input), from one step
    to the longest lag the task holds, instead of ``1 / (1 - sigmoid(1))`` = 3.7 steps for a
    constant forget bias of 1. Each bias is set as :func:`set_forget_bias` sets the forget gate's:
    in ``bias_ih``, with ``bias_hh``'s rows 0.

    Args:
        layer: an LSTM with biases.
        t_max: the longest dependency expected (>= 2), e.g. the sequence length.
        rng: seed or ``numpy.random.Generator``; the same seed gives the same biases.

    Returns:
        ``layer``.

    Raises:
        TypeError: ``layer`` is not a fastrnn recurrent layer, ``t_max`` not an int.
        ValueError: ``layer`` is not an LSTM with biases, or ``t_max`` < 2.
    """
    if not isinstance(layer, RecurrentLayer):
        raise TypeError(f"layer: expected a fastrnn.LSTM, got {type(layer).__name__}")
    spec = layer.spec
    if not spec.has_cell_state or not spec.bias:
        raise ValueError(f"layer: the chrono initialisation is for LSTMs with biases, got {layer}")
    t_max = check_int("t_max", t_max, 2)
    g = np.random.default_rng(rng)
    b_f = [np.log(g.uniform(1.0, t_max - 1.0, spec.hidden_size)) for _ in range(spec.num_entries)]
    params = layer.state_dict()
    _gate_biases(spec, params, "f", b_f)
    _gate_biases(spec, params, "i", [-b for b in b_f])
    layer.load_state_dict(params)
    return layer


def _gate_biases(
    spec: StackSpec, params: dict[str, Array], gate: str, values: Sequence[float | Array]
) -> None:
    """Sets the bias of ``gate`` (e.g. LSTM's ``"f"``) of entry ``k`` of ``params`` (the
    layer's, by name) to ``values[k]`` (a number or one per unit), in place: the gate's rows of
    ``bias_ih`` to it and those of ``bias_hh`` to 0, so that the gate's bias sums to it."""
    rows = spec.gate_rows(gate)
    for k, value in enumerate(values):
        names = spec.entry_names(k)
        params[names.bias_ih][rows] = value
        params[names.bias_hh][rows] = 0.0


def _check_forget_bias(spec: StackSpec, kind: str, forget_bias: Any) -> None:
    if not spec.has_cell_state:
        raise ValueError(f"forget_bias: only for LSTM layers, got a {kind} layer")
    if not spec.bias:
        raise ValueError("forget_bias: the layer has no biases (bias=False)")
    if spec.input_forget:
        raise ValueError(
            "forget_bias: the layer's forget gate is 1 - i (input_forget=True), it has no bias "
            "of its own"
        )
    try:
        check_real("forget_bias", forget_bias)
    except TypeError as e:
        raise ValueError(f"forget_bias: expected a number, got {forget_bias!r}") from e
