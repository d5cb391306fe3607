"""Low-level functional API over the compiled kernels, for projects managing their own parameters.

Everything here takes and returns plain NumPy arrays, time-major, one layer, one direction:

* ``x``: ``(T, B, I)``; ``h0``, ``c0``: ``(B, H)``; ``y``: ``(T, B, H)``;
* ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh (G*H,)`` or None, in
  PyTorch's layout and gate order (see :mod:`fastrnn.reference` for the formulas);
* ``cell``: one of :data:`CELLS`: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"`` (PyTorch's
  GRU, ``reset_after=True``), ``"gru_reset_before"`` (the original GRU, ``reset_after=False``),
  ``"lstm_peephole"`` (ONNX's LSTM with peepholes: its ``cell_params`` are
  ``(weight_peephole (3H,),)``), ``"lnlstm"`` (the layer-normalised LSTM, haste's: its
  ``cell_params`` are ``(layer_norm_weight_ih (4H,), layer_norm_weight_hh (4H,),
  layer_norm_weight_c (H,), layer_norm_bias_c (H,))``; no ``proj_size``, ``clip`` or
  ``input_forget``) or ``"lngru"`` (the layer-normalised GRU, reset after: its ``cell_params``
  are ``(layer_norm_weight_ih (3H,), layer_norm_weight_hh (3H,))``; no ``clip``);
* ONNX's options, keyword-only: ``reverse`` (a unidirectional stack runs backwards in time),
  ``clip`` (gate pre-activations clamped to ``[-clip, clip]``) and ``input_forget`` (LSTM's
  ``f = 1 - i``): :class:`~fastrnn.spec.StackSpec` states them.

All arrays of a call must have the same dtype, float32 or float64: nothing is converted silently
(a mismatch is a ``TypeError`` naming the argument). Non-contiguous or misaligned arrays are
copied (to C order).

A training-mode :func:`forward` returns a *workspace*, a 1-D array holding what :func:`backward`
needs. :func:`backward` consumes it (it overwrites the saved activations with their gradients, to
save memory): one forward supports one backward, and a second backward on the same workspace
raises ``ValueError``. The workspace also records the cell and sizes it was made for, so passing
it with other arguments is an error too. The weights given to backward must be those of forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _core
from ._args import check_int, check_lengths, float_array
from .spec import CELLS as _CELL_INFO
from .spec import LayerParams, StackSpec, check_cell

__all__ = [
    "CELLS",
    "MAX_THREADS",
    "BackwardResult",
    "ForwardResult",
    "LayerParams",
    "StackBackwardResult",
    "StackSpec",
    "adam_update",
    "attention_backward",
    "attention_forward",
    "available_cpus",
    "backward",
    "build_info",
    "clamp_",
    "embedding_backward",
    "forward",
    "get_num_threads",
    "linear_backward",
    "linear_forward",
    "max_abs",
    "num_gates",
    "run_backward",
    "run_forward",
    "scale_",
    "set_num_threads",
    "sgd_update",
    "softmax_cross_entropy",
    "stack_backward",
    "stack_forward",
    "sum_squares",
    "workspace_size",
]

Array = NDArray[Any]

#: The cells' names, as every function here takes them (:data:`fastrnn.spec.CELLS` describes
#: each).
CELLS: tuple[str, ...] = tuple(_CELL_INFO)
_CELL = {name: getattr(_core.Cell, name) for name in CELLS}
_COMPUTE_EXACT = _core.Compute.exact
_COMPUTE_BF16 = _core.Compute.bfloat16
_INT8 = _core.Compute.int8


class ForwardResult(NamedTuple):
    """Result of :func:`forward`."""

    y: Array  #: (T, B, H) the hidden state of every step
    h_n: Array  #: (B, H) the last hidden state
    c_n: Array | None  #: (B, H) the last cell state (LSTM), else None
    workspace: Array | None  #: 1-D, what backward needs (training), else None


class StackBackwardResult(NamedTuple):
    """Result of :func:`stack_backward`."""

    dx: Array | None  #: (T, B, I), None if not asked for (``need_dx=False``)
    dh0: Array  #: (L*D, B, Hs)
    dc0: Array | None  #: (L*D, B, H) for LSTM, else None
    grads: list[LayerParams]  #: per layer and direction, in the order of the parameters


class BackwardResult(NamedTuple):
    """Result of :func:`backward`: the gradients of the loss w.r.t. each input of forward."""

    dx: Array  #: (T, B, I)
    dh0: Array  #: (B, H)
    dc0: Array | None  #: (B, H) for LSTM, else None
    dweight_ih: Array  #: (G*H, I)
    dweight_hh: Array  #: (G*H, H)
    dbias_ih: Array | None  #: (G*H,) or None without biases
    dbias_hh: Array | None  #: (G*H,) or None without biases
    #: the gradients of the cell's own parameters (``lstm_peephole``:
    #: ``(dweight_peephole (3H,),)``; ``lnlstm``, ``lngru``: their layer-norm vectors'), None for
    #: the other cells
    dcell_params: tuple[Array, ...] | None = None


#: The most threads fastrnn's kernels use (:func:`set_num_threads` refuses more; a larger
#: ``FASTRNN_NUM_THREADS`` or ``OMP_NUM_THREADS`` is cut to it).
MAX_THREADS: int = int(_core.MAX_THREADS)


def set_num_threads(n: int) -> None:
    """Set the number of threads fastrnn's kernels use, in place of the default
    (:func:`~fastrnn.functional.get_num_threads`).

    Independent of NumPy's and PyTorch's thread pools. Results are bit-identical for every value:
    products are cut into tiles of a fixed shape, whatever the thread count, and each tile is
    computed by one thread.

    Args:
        n: 1 to :data:`MAX_THREADS`.

    Raises:
        TypeError: ``n`` is not an int (a bool is not).
        ValueError: ``n`` is below 1 or above :data:`MAX_THREADS`.
    """
    if check_int("n", n) < 1:
        raise ValueError(f"n: the number of threads must be >= 1, got {n}")
    if n > MAX_THREADS:
        raise ValueError(
            f"n: at most {MAX_THREADS} threads (fastrnn.functional.MAX_THREADS), got {n}"
        )
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads fastrnn's kernels use.

    The last :func:`set_num_threads`, else the default, chosen at the first call that needs it:

    1. ``FASTRNN_NUM_THREADS``, a positive integer (fastrnn's threads alone);
    2. else ``OMP_NUM_THREADS``, read as OpenMP does (a comma list of positive integers, the
       first counts; it sets PyTorch's and OpenBLAS's threads too);
    3. else the CPUs this process may use: its affinity mask (``taskset``,
       ``os.sched_setaffinity``) and, in a container, its cgroup CPU quota rounded up
       (``docker --cpus=1.5`` gives 2), not the machine's core count.

    A variable that is empty, not such a number, or <= 0 is ignored; the default is cut to
    :data:`MAX_THREADS`, but not to the CPUs (a variable may ask for more).

    Returns:
        The thread count, 1 to :data:`MAX_THREADS`.
    """
    return int(_core.get_num_threads())


def available_cpus() -> int:
    """The CPUs this process may use: the fewest of its affinity mask and its cgroups' CPU
    quota rounded up (Linux; Windows: the affinity mask; elsewhere the machine's cores).

    Read from the system at each call. The default of :func:`get_num_threads` when no variable
    sets one; more threads than this wait for each other.

    Returns:
        The count, >= 1.
    """
    return int(_core.available_cpus())


def build_info() -> dict[str, Any]:
    """How the compiled core was built and which of its kernels run.

    Returns:
        A new dict: ``version``, ``eigen`` (Eigen's version), ``isa`` (the kernel variant in use,
        e.g. ``"x86-64-v3"``), ``isa_available`` (the compiled variants this CPU and OS can run,
        best last), ``isa_compiled`` (all variants in this build, lowest first) and ``simd``
        (Eigen's SIMD instruction sets in the variant in use).

    The variant is chosen at import: the one named by the environment variable ``FASTRNN_ISA``
    when set (an unknown name, or one this CPU cannot run, is an ImportError listing the
    choices), else the best in ``isa_available``. Variants may round differently in the last
    bits; within one, results are bit-identical across thread counts and runs."""
    info: dict[str, Any] = dict(_core.build_info())
    info["version"] = _core.__version__
    return info


def num_gates(cell: str) -> int:
    """The number of stacked gate blocks ``G`` of ``cell``: 1 (RNN), 3 (GRU) or 4 (LSTM).

    Args:
        cell: one of :data:`CELLS`.

    Raises:
        ValueError: ``cell`` is not one of :data:`CELLS`.
    """
    return _CELL_INFO[check_cell(cell)].gates


def workspace_size(
    cell: str | StackSpec,
    T: int,
    B: int,
    I: int | None = None,
    H: int | None = None,
    dtype: DTypeLike | None = None,
    *,
    reverse: bool = False,
    clip: float | None = None,
    input_forget: bool = False,
) -> int:
    """The number of elements of the training workspace of one call (the 1-D array a
    training-mode forward returns): ``workspace_size(spec, T, B)`` for a stack, or
    ``workspace_size(cell, T, B, I, H, dtype)`` for one layer.

    Args:
        cell: a :class:`~fastrnn.spec.StackSpec`, or one of :data:`CELLS` with ``I``, ``H`` and
            ``dtype``.
        T, B: the steps and sequences of the call, ints >= 0.
        I, H, dtype: the input size, hidden size and dtype of one layer (with a cell name only).
        reverse, clip, input_forget: the layer's options (with a cell name only; a spec holds
            its own), as :func:`forward`'s.

    Raises:
        TypeError: a cell name without ``I``, ``H`` and ``dtype``, or a spec with an option;
            ``T`` or ``B`` not an int.
        ValueError: ``T`` or ``B`` negative; and the :class:`~fastrnn.spec.StackSpec` rules.
    """
    if not isinstance(cell, StackSpec):
        if I is None or H is None or dtype is None:
            raise TypeError("workspace_size: give a StackSpec, or a cell with I, H and dtype")
        cell = StackSpec(
            cell, I, H, dtype=dtype, reverse=reverse, clip=clip, input_forget=input_forget
        )
    elif reverse or clip is not None or input_forget:
        raise TypeError(
            "workspace_size: reverse, clip and input_forget go with a cell name; a StackSpec "
            "holds its own (spec.replace(...))"
        )
    s = cell
    return int(
        _core.workspace_size(
            _CELL[s.cell],
            check_int("T", T, 0),
            check_int("B", B, 0),
            s.input_size,
            s.hidden_size,
            s.dtype,
            s.num_layers,
            s.bidirectional,
            s.proj_size,
            s.reverse,  # clip and input_forget do not change the size (the workspace records them)
        )
    )


def _options(spec: StackSpec) -> tuple[bool, float, bool]:
    """The kernels' last arguments, the spec's ONNX options: ``(reverse, clip, input_forget)``,
    clip 0 for none (positional: the binding's keywords cost a microsecond a call)."""
    return spec.reverse, 0.0 if spec.clip is None else spec.clip, spec.input_forget


def _grads(spec: StackSpec, grads: list[tuple[Any, ...]]) -> list[LayerParams]:
    """The kernels' gradients (5-tuples, or 6-tuples ending with the one vector of the cell's
    own parameters) as :class:`~fastrnn.spec.LayerParams`, that vector split into the tuple of
    ``cell_params``."""
    if not spec.cell_params_size:
        return [LayerParams(*g) for g in grads]
    out = []
    for k, g in enumerate(grads):
        shapes = spec.entry_shapes(k).cell_params
        ends = np.cumsum([s[0] for s in shapes])[:-1]
        own = (g[5],) if len(shapes) == 1 else tuple(np.split(g[5], ends))
        out.append(LayerParams._make([*g[:5], own]))
    return out


def _input(name: str, x: Any) -> tuple[Array, np.dtype[Any]]:
    """``x`` as an array and its (float) dtype, the dtype of the call."""
    xa = float_array(name, x)
    return xa, xa.dtype


def run_forward(
    spec: StackSpec,
    x: ArrayLike,
    params: Sequence[Any],
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    *,
    lengths: ArrayLike | None = None,
    dropout_masks: ArrayLike | None = None,
    zoneout_masks: tuple[ArrayLike | None, ArrayLike | None] | None = None,
    training: bool = True,
) -> ForwardResult:
    """Run the stack described by ``spec`` over ``x``: the entry point every other API goes
    through (the layers, :mod:`fastrnn.torch`, :func:`stack_forward`, :func:`forward`).

    Args:
        spec: the stack, with its dtype and ``compute_dtype``.
        x: ``(T, B, I)``.
        params: one :class:`~fastrnn.spec.LayerParams` per (layer, direction).
        h0: ``(L*D, B, Hs)`` or None.
        c0: ``(L*D, B, H)`` or None.
        lengths: ``(B,)`` or None.
        dropout_masks: ``(L-1, T, B, D*Hs)`` or None.
        zoneout_masks: ``(h (L*D, T, B, Hs), c (L*D, T, B, H))`` (either None) or None.
        training: as :func:`stack_forward`'s, as are the others.

    Returns:
        :class:`ForwardResult`, as :func:`stack_forward`'s.

    Raises:
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec`
            (every array is checked against ``spec``), naming it.
    """
    xa = spec.check_input(x)
    T, B = xa.shape[:2]
    compute = _COMPUTE_BF16 if spec.bf16 else _COMPUTE_EXACT
    masks = spec.check_masks(dropout_masks, T, B)
    zoneout = spec.check_zoneout_masks(zoneout_masks, T, B)
    return _forward(
        spec, xa, spec.check_params(params), h0, c0, lengths, masks, training, compute, zoneout
    )


def _forward(
    spec: StackSpec,
    xa: Array,
    entries: list[tuple[Any, ...]],
    h0: ArrayLike | None,
    c0: ArrayLike | None,
    lengths: ArrayLike | None,
    masks: Array | None,
    training: bool,
    compute: Any,
    zoneout: tuple[Array | None, Array | None] = (None, None),
) -> ForwardResult:
    """The kernels' forward on a checked input and checked parameter entries; the states and
    lengths are checked here (run_forward and run_forward_int8 differ only in the entries and
    the precision)."""
    T, B = xa.shape[:2]
    y, h_n, c_n, ws = _core.forward(
        _CELL[spec.cell],
        xa,
        entries,
        spec.check_state("h0", h0, B),
        spec.check_state("c0", c0, B, "c"),
        spec.check_lengths(lengths, T, B),
        masks,
        spec.num_layers,
        spec.bidirectional,
        spec.proj_size,
        spec.hidden_size,
        bool(training),
        compute,
        *_options(spec),
        *zoneout,
    )
    return ForwardResult(y, h_n, c_n, ws)


def pack_int8(w: Any, gates: int = 1) -> Array:
    """An int8 weight matrix (a :class:`~fastrnn.reference.QuantizedWeight`: ``q (m, k)`` int8
    in [-127, 127], ``scale (m,)`` float32; ``m`` a multiple of ``gates``, the stacked gate
    blocks) packed for the int8 kernels: a 1-D uint8 array, made once and passed to
    :func:`run_forward_int8` in place of the matrix. Its layout is the kernels' own (the same
    for every instruction-set variant) and carries its sizes, checked at each call."""
    q = np.asarray(w.q)
    scale = np.asarray(w.scale)
    if q.dtype != np.int8 or q.ndim != 2:
        raise TypeError(f"q: expected a 2-D int8 array, got {q.dtype} of shape {q.shape}")
    if scale.dtype != np.float32 or scale.shape != q.shape[:1]:
        raise TypeError(
            f"scale: expected float32 of shape {q.shape[:1]}, got {scale.dtype} {scale.shape}"
        )
    G = check_int("gates", gates, 1)
    return _core.pack_int8(np.ascontiguousarray(q), np.ascontiguousarray(scale), G)


def run_forward_int8(
    spec: StackSpec,
    x: ArrayLike,
    params: Sequence[Any],
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    *,
    lengths: ArrayLike | None = None,
    zoneout_masks: tuple[ArrayLike | None, ArrayLike | None] | None = None,
) -> ForwardResult:
    """Inference of the float32 stack ``spec`` with int8 products (:mod:`fastrnn.quantized`):
    ``params`` one ``(w_ih, w_hh, b_ih, b_hh, w_hr)`` per (layer, direction) with the weight
    matrices packed by :func:`pack_int8` (``w_ih``, ``w_hh`` with the cell's gates, ``w_hr``
    with 1) and float32 biases (or None); the other arguments as :func:`run_forward` (zoneout's
    multipliers in inference: ``p``)."""
    if spec.dtype != np.float32:
        raise TypeError(f"spec: int8 products need a float32 stack, got {spec.dtype}")
    xa = spec.check_input(x)
    if len(params) != spec.num_entries:
        raise ValueError(
            f"params: expected {spec.num_entries} (layer, direction) entries, got {len(params)}"
        )
    entries = [tuple(p) for p in params]  # the packed weights' checks are the binding's
    zoneout = spec.check_zoneout_masks(zoneout_masks, *xa.shape[:2])
    return _forward(spec, xa, entries, h0, c0, lengths, None, False, _INT8, zoneout)


def run_backward(
    spec: StackSpec,
    x: ArrayLike,
    params: Sequence[Any],
    workspace: Array,
    dy: ArrayLike | None = None,
    dh_n: ArrayLike | None = None,
    dc_n: ArrayLike | None = None,
    *,
    lengths: ArrayLike | None = None,
    zoneout_masks: tuple[ArrayLike | None, ArrayLike | None] | None = None,
    need_dx: bool = True,
) -> StackBackwardResult:
    """Backpropagation through time for :func:`run_forward`.

    Args:
        spec, x, params, lengths, zoneout_masks: those of the forward that filled
            ``workspace`` (the same zoneout masks, or none if it had none).
        workspace: the forward's workspace (consumed); dy, dh_n, dc_n, need_dx: as
            :func:`stack_backward`'s.

    Returns:
        :class:`StackBackwardResult`, as :func:`stack_backward`'s.

    Raises:
        TypeError: ``workspace`` is not a NumPy array of the spec's dtype; an argument breaks a
            rule of :class:`~fastrnn.spec.StackSpec`.
        ValueError: ``workspace`` was already consumed or was made for other arguments (zoneout
            masks given to one of the forward and the backward only, too); an argument breaks a
            rule of :class:`~fastrnn.spec.StackSpec`.
    """
    xa = spec.check_input(x)
    T, B = xa.shape[:2]
    if not isinstance(workspace, np.ndarray):
        raise TypeError(
            "workspace: expected the numpy.ndarray returned by forward, got "
            f"{type(workspace).__name__}"
        )
    if workspace.dtype != spec.dtype:
        raise TypeError(
            f"workspace: expected dtype {spec.dtype} (the dtype of x), got {workspace.dtype}"
        )
    zoneout = spec.check_zoneout_masks(zoneout_masks, T, B)
    dx, dh0, dc0, grads = _core.backward(
        _CELL[spec.cell],
        xa,
        spec.check_params(params),
        spec.check_lengths(lengths, T, B),
        workspace,
        None if dy is None else spec.array("dy", dy, spec.output_shape(T, B)),
        spec.check_state("dh_n", dh_n, B),
        spec.check_state("dc_n", dc_n, B, "c"),
        spec.num_layers,
        spec.bidirectional,
        spec.proj_size,
        spec.hidden_size,
        bool(need_dx),
        _COMPUTE_BF16 if spec.bf16 else _COMPUTE_EXACT,
        *_options(spec),
        *zoneout,
    )
    return StackBackwardResult(dx, dh0, dc0, _grads(spec, grads))


def _spec(
    cell: str,
    x: Any,
    params: Sequence[Any],
    num_layers: int,
    bidirectional: bool,
    proj_size: int,
    compute_dtype: Any,
    reverse: bool,
    clip: float | None,
    input_forget: bool,
) -> tuple[StackSpec, Array]:
    xa, dt = _input("x", x)
    spec = StackSpec.of_params(
        cell,
        params,
        dt,
        xa.shape[2] if xa.ndim == 3 and xa.shape[2] > 0 else None,
        num_layers=num_layers,
        bidirectional=bidirectional,
        proj_size=proj_size,
        compute_dtype=compute_dtype,
        reverse=reverse,
        clip=clip,
        input_forget=input_forget,
    )
    return spec, xa


def stack_forward(
    cell: str,
    x: ArrayLike,
    params: Sequence[Any],
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    lengths: ArrayLike | None = None,
    dropout_masks: ArrayLike | None = None,
    zoneout_masks: tuple[ArrayLike | None, ArrayLike | None] | None = None,
    training: bool = True,
    compute_dtype: Any = None,
    reverse: bool = False,
    clip: float | None = None,
    input_forget: bool = False,
) -> ForwardResult:
    """Run a stack of recurrent layers (torch.nn.RNN/LSTM/GRU with every option) over ``x``.

    Args:
        cell: one of :data:`CELLS`.
        x: ``(T, B, I)`` input, time-major.
        params: ``num_layers * D`` :class:`~fastrnn.spec.LayerParams` (or 5-tuples), layer by layer,
            the forward direction before the reverse one (D = 2 when ``bidirectional``);
            ``lstm_peephole``'s with their ``cell_params``, ``(weight_peephole (3H,),)``,
            ``lnlstm``'s with its four layer-norm vectors, ``lngru``'s with its two.
        h0: ``(L*D, B, Hs)`` initial hidden states, None for zeros.
        c0: ``(L*D, B, H)`` initial cell states (LSTM only), None for zeros.
        num_layers, bidirectional, proj_size: as in PyTorch (``proj_size`` for LSTM only).
        lengths: ``(B,)`` valid steps of each (padded) sequence, in any order, None for all T.
            Padded steps do not change a sequence's state and output zeros; the reverse
            direction starts at the sequence's own last step (PyTorch's packed sequences).
        dropout_masks: ``(L-1, T, B, D*Hs)`` multipliers for the outputs of layers 0..L-2
            (inverted dropout: 0 or 1/(1-p)), None for no dropout.
        zoneout_masks: ``(h, c)``, the zoneout multipliers (Krueger et al.) of the hidden
            states ``(L*D, T, B, Hs)`` and of the cell states ``(L*D, T, B, H)`` (``lstm`` and
            ``lnlstm`` only), time-major in the batch order of ``x``, either None; None for no
            zoneout. After each step of a running sequence ``h_t = m*h_{t-1} + (1 - m)*h~_t``
            (``h~_t`` the cell's new state, after the projection; ``c`` likewise, the cell's
            ``h~`` made from its own ``c~``): ``m`` 0 or 1 in training (1 with probability p),
            p in inference. The backward of the workspace must be given the same.
        training: save what :func:`stack_backward` needs in a workspace.
        compute_dtype: the precision of the matrix products: None for x's dtype, or
            ``"bfloat16"`` (float32 only; :data:`fastrnn.spec.COMPUTE_DTYPES`). The backward of
            the workspace must be given the same.
        reverse, clip, input_forget: ONNX's options (:class:`~fastrnn.spec.StackSpec`): the
            one direction runs backwards in time (not with ``bidirectional``); gate
            pre-activations clamped to ``[-clip, clip]`` (None: not); LSTM's ``f = 1 - i``.
            The backward of the workspace must be given the same.

    Returns:
        :class:`ForwardResult` with ``y (T, B, D*Hs)``, ``h_n (L*D, B, Hs)``,
        ``c_n (L*D, B, H)`` or None, and the workspace or None.

    Raises:
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec`
            (a dtype other than ``x``'s, a shape, a cell, a compute dtype...); the message names
            it.

    The sizes, the bias and the dtype are read from ``params[0]`` and ``x`` into a
    :class:`~fastrnn.spec.StackSpec`, whose rules every argument must meet; :func:`run_forward`
    takes the spec.
    """
    spec, xa = _spec(
        cell, x, params, num_layers, bidirectional, proj_size, compute_dtype, reverse, clip,
        input_forget,
    )  # fmt: skip
    return run_forward(
        spec,
        xa,
        params,
        h0,
        c0,
        lengths=lengths,
        dropout_masks=dropout_masks,
        zoneout_masks=zoneout_masks,
        training=training,
    )


def stack_backward(
    cell: str,
    x: ArrayLike,
    params: Sequence[Any],
    workspace: Array,
    dy: ArrayLike | None = None,
    dh_n: ArrayLike | None = None,
    dc_n: ArrayLike | None = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    lengths: ArrayLike | None = None,
    zoneout_masks: tuple[ArrayLike | None, ArrayLike | None] | None = None,
    need_dx: bool = True,
    compute_dtype: Any = None,
    reverse: bool = False,
    clip: float | None = None,
    input_forget: bool = False,
) -> StackBackwardResult:
    """Backpropagation through time through every layer and direction of :func:`stack_forward`.

    Args:
        cell, x, params: those of the forward that filled ``workspace``; and its options
            (``num_layers``, ``bidirectional``, ``proj_size``, ``lengths``, ``zoneout_masks``,
            ``compute_dtype``, ``reverse``, ``clip``, ``input_forget``).
        workspace: the training-mode forward's workspace; consumed (a second backward on it
            raises).
        dy: ``(T, B, D*Hs)`` gradient of the loss w.r.t. ``y``, None for zeros; its padded steps
            are ignored (and the padded steps of ``x`` get zero gradient).
        dh_n: ``(L*D, B, Hs)`` gradient w.r.t. the final hidden states, None for zeros.
        dc_n: ``(L*D, B, H)`` gradient w.r.t. the final cell states (LSTM), None for zeros.
        need_dx: False skips the input gradient (its GEMM, a sixth of the work when I = H) and
            returns ``dx=None``: for inputs that are data.

    Returns:
        :class:`StackBackwardResult` ``(dx (T, B, I), dh0 (L*D, B, Hs), dc0 (L*D, B, H) or None,
        grads)``, ``grads`` one :class:`~fastrnn.spec.LayerParams` of gradients per (layer,
        direction), freshly allocated (``lstm_peephole``'s ``cell_params``:
        ``(dweight_peephole,)``; ``lnlstm``'s, ``lngru``'s: their vectors' gradients).

    Raises:
        ValueError: ``workspace`` was consumed already, or made for other sizes or options.
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec`,
            naming it.
    """
    spec, xa = _spec(
        cell, x, params, num_layers, bidirectional, proj_size, compute_dtype, reverse, clip,
        input_forget,
    )  # fmt: skip
    return run_backward(
        spec,
        xa,
        params,
        workspace,
        dy,
        dh_n,
        dc_n,
        lengths=lengths,
        zoneout_masks=zoneout_masks,
        need_dx=need_dx,
    )


def _state(name: str, a: ArrayLike | None, x: Any, weight_hh: Any, cell: str) -> Array | None:
    """A (B, H) state of the one-layer API as the (1, B, H) of the stack API."""
    if a is None:
        return None
    arr = np.asarray(a)
    B = np.shape(x)[1] if np.ndim(x) == 3 else None
    H = np.shape(weight_hh)[0] // num_gates(cell) if np.ndim(weight_hh) >= 1 else None
    expected = (B, H)
    if arr.ndim != 2 or (None not in expected and arr.shape != expected):
        raise ValueError(f"{name}: expected shape (B, H) = {expected}, got {arr.shape}")
    return arr[None]


def forward(
    cell: str,
    x: ArrayLike,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None = None,
    bias_hh: ArrayLike | None = None,
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    *,
    cell_params: Sequence[ArrayLike] | None = None,
    training: bool = True,
    compute_dtype: Any = None,
    reverse: bool = False,
    clip: float | None = None,
    input_forget: bool = False,
) -> ForwardResult:
    """Run one recurrent layer (one direction) over all steps of ``x``.

    Args:
        cell: one of :data:`CELLS`.
        x: ``(T, B, I)`` input, time-major.
        weight_ih: ``(G*H, I)``.
        weight_hh: ``(G*H, H)``.
        bias_ih, bias_hh: ``(G*H,)`` each, or both None.
        h0: ``(B, H)`` initial hidden state, None for zeros.
        c0: ``(B, H)`` initial cell state (LSTM only), None for zeros.
        cell_params: the cell's own parameters, ``lstm_peephole``'s ``(weight_peephole (3H,),)``
            or ``lnlstm``'s ``(layer_norm_weight_ih (4H,), layer_norm_weight_hh (4H,),
            layer_norm_weight_c (H,), layer_norm_bias_c (H,))`` or ``lngru``'s
            ``(layer_norm_weight_ih (3H,), layer_norm_weight_hh (3H,))`` (required for them); None
            for the other cells.
        training: save what :func:`backward` needs into a workspace. When False nothing per step
            is kept (memory beyond the output stays O(B*H)) and ``workspace`` is None.
        compute_dtype, reverse, clip, input_forget: as :func:`stack_forward`'s.

    Returns:
        :class:`ForwardResult` ``(y (T, B, H), h_n (B, H), c_n (B, H) or None, workspace or
        None)``.

    Raises:
        ValueError: ``h0`` or ``c0`` is not ``(B, H)``.
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec`
            (a dtype other than ``x``'s, a shape, one bias without the other...), naming it.
    """
    r = stack_forward(
        cell,
        x,
        [LayerParams(weight_ih, weight_hh, bias_ih, bias_hh, None, cell_params)],
        _state("h0", h0, x, weight_hh, cell),
        _state("c0", c0, x, weight_hh, cell),
        training=training,
        compute_dtype=compute_dtype,
        reverse=reverse,
        clip=clip,
        input_forget=input_forget,
    )
    return ForwardResult(r.y, r.h_n[0], None if r.c_n is None else r.c_n[0], r.workspace)


def backward(
    cell: str,
    x: ArrayLike,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None,
    bias_hh: ArrayLike | None,
    workspace: Array,
    dy: ArrayLike | None = None,
    dh_n: ArrayLike | None = None,
    dc_n: ArrayLike | None = None,
    *,
    cell_params: Sequence[ArrayLike] | None = None,
    compute_dtype: Any = None,
    reverse: bool = False,
    clip: float | None = None,
    input_forget: bool = False,
) -> BackwardResult:
    """Backpropagation through time for the one-layer :func:`forward` that filled ``workspace``.

    Args:
        cell, x, weight_ih, weight_hh, bias_ih, bias_hh: exactly as given to :func:`forward`.
        workspace: the workspace that training-mode :func:`forward` returned. Consumed.
        dy: ``(T, B, H)`` gradient of the loss w.r.t. ``y``, None for zeros.
        dh_n, dc_n: ``(B, H)`` gradients w.r.t. the final states, None for zeros
            (``dc_n`` for LSTM only).
        cell_params, compute_dtype, reverse, clip, input_forget: as given to :func:`forward`.

    Returns:
        :class:`BackwardResult` with the gradients w.r.t. ``x``, the initial states and every
        parameter (freshly allocated; not accumulated into anything).

    Raises:
        ValueError: ``workspace`` was consumed already, or made for other sizes; ``dh_n`` or
            ``dc_n`` is not ``(B, H)``.
        TypeError, ValueError: an argument breaks a rule of :class:`~fastrnn.spec.StackSpec`,
            naming it.
    """
    r = stack_backward(
        cell,
        x,
        [LayerParams(weight_ih, weight_hh, bias_ih, bias_hh, None, cell_params)],
        workspace,
        dy,
        _state("dh_n", dh_n, x, weight_hh, cell),
        _state("dc_n", dc_n, x, weight_hh, cell),
        compute_dtype=compute_dtype,
        reverse=reverse,
        clip=clip,
        input_forget=input_forget,
    )
    g = r.grads[0]
    assert r.dx is not None
    return BackwardResult(
        r.dx,
        r.dh0[0],
        None if r.dc0 is None else r.dc0[0],
        g.weight_ih,
        g.weight_hh,
        g.bias_ih,
        g.bias_hh,
        g.cell_params,
    )


# ---- attention ----------------------------------------------------------------------------------


def _attention_inputs(*arrays: Any) -> list[Any]:
    """The float arrays of an attention call, C-contiguous (None stays None)."""
    return [None if a is None else np.ascontiguousarray(a) for a in arrays]


def _attention_lengths(
    lengths: ArrayLike | None, query: Array, keys: Array
) -> NDArray[np.int64] | None:
    """``lengths`` by :func:`~fastrnn._args.check_lengths`' rule, one per batch entry of
    ``query (Tq, B, D)``, each in ``[1, Tk]`` of ``keys (Tk, B, D)`` (None: all ``Tk``). Arrays
    of other ranks are the core's to refuse, naming them."""
    if lengths is None or query.ndim != 3 or keys.ndim != 3:
        return None if lengths is None else np.zeros(0, np.int64)
    return check_lengths("lengths", lengths, keys.shape[0], query.shape[1])


def attention_forward(
    query: Array, keys: Array, values: Array, lengths: ArrayLike | None = None,
    v: Array | None = None,
) -> tuple[Array, Array]:  # fmt: skip
    """Masked-softmax attention of each query over the keys of its batch entry.

    The dot score (``v`` None) or the additive one (``v (D,)``): the formulas are
    :func:`fastrnn.reference.attention_forward`'s. The scores, the masked softmax and the context
    run fused per batch entry, every product over all ``Tq`` queries at once.

    Args:
        query: ``(Tq, B, D)``, float32 or float64; every float array has its dtype.
        keys: ``(Tk, B, D)``.
        values: ``(Tk, B, Dv)``.
        lengths: ``(B,)`` integers, the valid keys of each batch entry, each in ``[1, Tk]``;
            None: all ``Tk``. The weights are exactly zero beyond them.
        v: ``(D,)`` for the additive score, None for the dot score.

    Returns:
        ``(context (Tq, B, Dv), weights (Tq, B, Tk))``.

    Raises:
        TypeError: an array is not a NumPy array of ``query``'s float dtype; ``lengths`` not
            integers.
        ValueError: the shapes do not match, or a length is out of range.
    """
    q, k, val, vv = _attention_inputs(query, keys, values, v)
    context, weights = _core.attention_forward(q, k, val, _attention_lengths(lengths, q, k), vv)
    return context, weights


def attention_backward(
    query: Array, keys: Array, values: Array, lengths: ArrayLike | None, weights: Array,
    dcontext: Array, v: Array | None = None,
) -> tuple[Array, Array, Array, Array | None]:  # fmt: skip
    """The gradients of :func:`attention_forward` (formulas:
    :func:`fastrnn.reference.attention_backward`); the additive score's ``tanh`` values are
    recomputed, not saved.

    Args:
        query, keys, values, lengths, v: as given to :func:`attention_forward`.
        weights: ``(Tq, B, Tk)``, the weights it returned.
        dcontext: ``(Tq, B, Dv)``, the gradient of the loss w.r.t. the context.

    Returns:
        ``(dquery (Tq, B, D), dkeys (Tk, B, D), dvalues (Tk, B, Dv), dv (D,))``, ``dv`` None for
        the dot score.

    Raises:
        TypeError: an array is not a NumPy array of ``query``'s float dtype; ``lengths`` not
            integers.
        ValueError: the shapes do not match, or a length is out of range.
    """
    q, k, val, w, dc, vv = _attention_inputs(query, keys, values, weights, dcontext, v)
    dq, dk, dval, dv = _core.attention_backward(
        q, k, val, _attention_lengths(lengths, q, k), w, dc, vv
    )
    return dq, dk, dval, dv


# ---- the training kit's kernels -----------------------------------------------------------------
# What fastrnn.training's Linear, Embedding, losses, optimizers and clipping call. The binding
# checks every array (C-contiguous and aligned, one float dtype chosen by the first array, the
# shapes); its messages name the argument: a non-array or another dtype is a TypeError, another
# shape, a non-contiguous array or a read-only output a ValueError.


def linear_forward(x: Array, weight: Array, bias: Array | None) -> Array:
    """The affine map ``y = x @ weight.T + bias`` (``torch.nn.functional.linear`` on rows).

    Args:
        x: ``(N, in)``, float32 or float64, C-contiguous.
        weight: ``(out, in)``, of ``x``'s dtype.
        bias: ``(out,)`` or None.

    Returns:
        ``y (N, out)``, a new array.

    Raises:
        TypeError: an argument is not a NumPy array of ``x``'s float dtype.
        ValueError: the shapes do not match, or an array is not C-contiguous.
    """
    return _core.linear_forward(x, weight, bias)


def linear_backward(
    x: Array, weight: Array, dy: Array, has_bias: bool
) -> tuple[Array, Array, Array | None]:
    """The gradients of :func:`linear_forward` from ``dy = dL/dy (N, out)``.

    Args:
        x: ``(N, in)``, as given to :func:`linear_forward`.
        weight: ``(out, in)``, as given to it.
        dy: ``(N, out)``.
        has_bias: whether to return the bias gradient.

    Returns:
        ``(dx (N, in), dweight (out, in), dbias (out,))``, ``dbias`` None without ``has_bias``.

    Raises:
        TypeError: an argument is not a NumPy array of ``x``'s float dtype.
        ValueError: the shapes do not match, or an array is not C-contiguous.
    """
    return _core.linear_backward(x, weight, dy, has_bias)


def embedding_backward(ids: Any, dy: Array, num_embeddings: int, padding_idx: int) -> Array:
    """The gradient of an embedding lookup ``weight[ids]`` w.r.t. ``weight``: row ``k`` sums
    ``dy`` over the positions where ``ids == k``.

    Args:
        ids: ``(n,)`` int64, each in ``[0, num_embeddings)``.
        dy: ``(n, D)``, float32 or float64.
        num_embeddings: the rows of the embedding, >= 1.
        padding_idx: a row that gets zero gradient, or a negative value for none.

    Returns:
        ``dweight (num_embeddings, D)`` of ``dy``'s dtype.

    Raises:
        TypeError: ``dy`` is not a float array, ``ids`` not int64.
        ValueError: a shape does not match, an id is out of range, or ``num_embeddings < 1``.
    """
    return _core.embedding_backward(ids, dy, num_embeddings, padding_idx)


def softmax_cross_entropy(
    logits: Array, targets: Any, ignore_index: int, mean: bool
) -> tuple[float, Array]:
    """The cross-entropy of the softmax of each row of ``logits`` and its gradient, fused
    (``torch.nn.CrossEntropyLoss``; the formulas: :func:`fastrnn.reference.softmax_cross_entropy`).

    Args:
        logits: ``(N, C)``, float32 or float64, ``C >= 1``.
        targets: ``(N,)`` int64, each in ``[0, C)`` or ``ignore_index`` (the row adds nothing and
            gets zero gradient).
        ignore_index: the target value of ignored rows.
        mean: divide by the number of counted rows (NaN when there are none), else the sum.

    Returns:
        ``(loss, dlogits)``: a float and ``dloss/dlogits (N, C)``.

    Raises:
        TypeError: ``logits`` is not a float array, ``targets`` not int64.
        ValueError: a shape does not match, or a target is out of range.
    """
    return _core.softmax_cross_entropy(logits, targets, ignore_index, mean)


def sgd_update(
    param: Array, grad: Array, buf: Array | None, lr: float, momentum: float, dampening: float,
    weight_decay: float, nesterov: bool, first: bool,
) -> None:  # fmt: skip
    """One ``torch.optim.SGD`` update of one parameter, in place (the formulas:
    :func:`fastrnn.reference.sgd_step`).

    Args:
        param: the parameter, float32 or float64, any shape, updated in place.
        grad: its gradient, of ``param``'s size and dtype (not modified).
        buf: the momentum buffer (size of ``param``, updated in place); None only when
            ``momentum`` is 0.
        lr, momentum, dampening, weight_decay, nesterov: as ``torch.optim.SGD``'s.
        first: the first step: ``buf`` is set to the gradient rather than averaged into.

    Raises:
        TypeError: an array is not a NumPy array of ``param``'s float dtype.
        ValueError: a size does not match, an array is not C-contiguous or writeable, or ``buf``
            is None with a momentum.
    """
    _core.sgd_update(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first)


def adam_update(
    param: Array, grad: Array, exp_avg: Array, exp_avg_sq: Array, lr: float, beta1: float,
    beta2: float, eps: float, weight_decay: float, step: int,
) -> None:  # fmt: skip
    """One ``torch.optim.Adam`` update of one parameter, in place (the formulas:
    :func:`fastrnn.reference.adam_step`).

    Args:
        param: the parameter, float32 or float64, any shape, updated in place.
        grad: its gradient, of ``param``'s size and dtype (not modified).
        exp_avg: the first moment (size of ``param``), updated in place.
        exp_avg_sq: the second moment (size of ``param``), updated in place.
        lr, beta1, beta2, eps, weight_decay: as ``torch.optim.Adam``'s.
        step: the 1-based count of this update.

    Raises:
        TypeError: an array is not a NumPy array of ``param``'s float dtype.
        ValueError: a size does not match, an array is not C-contiguous or writeable, or
            ``step < 1``.
    """
    _core.adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step)


def sum_squares(array: Array) -> float:
    """The sum of the squares of ``array``'s elements, accumulated in float64 in a fixed order
    (the same result for every thread count).

    Args:
        array: float32 or float64, any shape, C-contiguous.

    Raises:
        TypeError: ``array`` is not a float NumPy array.
        ValueError: ``array`` is not C-contiguous.
    """
    return _core.sum_squares(array)


def max_abs(array: Array) -> float:
    """The largest absolute value of ``array`` (0.0 when empty; NaN if it holds a NaN).

    ``array`` and the errors: as :func:`sum_squares`'s.
    """
    return _core.max_abs(array)


def scale_(array: Array, factor: float) -> None:
    """Multiply ``array`` by ``factor`` in place (gradient clipping by norm).

    Args:
        array: float32 or float64, any shape, C-contiguous and writeable.
        factor: the multiplier (rounded to ``array``'s dtype).

    Raises:
        TypeError: ``array`` is not a float NumPy array.
        ValueError: ``array`` is not C-contiguous or not writeable.
    """
    _core.scale_(array, factor)


def clamp_(array: Array, limit: float) -> None:
    """Clip every element of ``array`` to ``[-limit, limit]`` in place (gradient clipping by
    value).

    Args:
        array: float32 or float64, any shape, C-contiguous and writeable.
        limit: the bound, >= 0 (not checked).

    Raises:
        TypeError: ``array`` is not a float NumPy array.
        ValueError: ``array`` is not C-contiguous or not writeable.
    """
    _core.clamp_(array, limit)
