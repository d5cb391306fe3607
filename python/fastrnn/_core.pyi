"""Type stubs of the compiled extension fastrnn._core (private; use fastrnn.functional)."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

__version__: str

class Cell:
    rnn_tanh: Cell
    rnn_relu: Cell
    lstm: Cell
    gru: Cell
    gru_reset_before: Cell
    lstm_peephole: Cell
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class Compute:
    """The precision of the matrix products: exact (the arrays' dtype), bfloat16, or int8
    (inference; the weights packed by pack_int8)."""

    exact: Compute
    bfloat16: Compute
    int8: Compute
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

_A = NDArray[Any]
# per (layer, direction): (w_ih, w_hh, b_ih, b_hh, w_hr), or with a 6th item, the cell's own
# parameters as one 1-D vector of cell_params_size(cell, H) scalars (None for cells without any;
# required for lstm_peephole)
_Weights = list[tuple[Any, ...]]

def num_gates(cell: Cell) -> int: ...
def cell_params_size(cell: Cell, H: int) -> int: ...
def has_zoneout_cell(cell: Cell) -> bool: ...
def workspace_size(
    cell: Cell,
    T: int,
    B: int,
    I: int,
    H: int,
    dtype: Any,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    reverse: bool = False,
) -> int: ...
def pack_int8(q: NDArray[np.int8], scale: NDArray[np.float32], gates: int = 1) -> NDArray[np.uint8]:
    """Packs an int8 weight matrix q (m, k) in [-127, 127] with float32 scales (m,) for the int8
    products (Compute.int8); m a multiple of gates (the stacked gate blocks)."""

def forward(
    cell: Cell,
    x: _A,
    weights: _Weights,
    h0: _A | None,
    c0: _A | None,
    lengths: _A | None,
    dropout: _A | None,
    num_layers: int,
    bidirectional: bool,
    proj_size: int,
    hidden_size: int,
    training: bool,
    compute: Compute = ...,
    reverse: bool = False,
    clip: float = 0.0,
    input_forget: bool = False,
    zoneout_h: _A | None = None,
    zoneout_c: _A | None = None,
) -> tuple[_A, _A, _A | None, _A | None]: ...
def backward(
    cell: Cell,
    x: _A,
    weights: _Weights,
    lengths: _A | None,
    workspace: _A,
    dy: _A | None,
    dh_n: _A | None,
    dc_n: _A | None,
    num_layers: int,
    bidirectional: bool,
    proj_size: int,
    hidden_size: int,
    need_dx: bool = True,
    compute: Compute = ...,
    reverse: bool = False,
    clip: float = 0.0,
    input_forget: bool = False,
    zoneout_h: _A | None = None,
    zoneout_c: _A | None = None,
) -> tuple[_A | None, _A, _A | None, list[tuple[Any, ...]]]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

MAX_THREADS: int

def available_cpus() -> int: ...
def _cgroup_cpu_limit(root: str, proc_self_cgroup: str, mountinfo: str) -> int: ...
def build_info() -> dict[str, Any]: ...

# ---- training kernels (src/register_train.cpp); float32 or float64 by the first array ----
def linear_forward(x: _A, weight: _A, bias: _A | None) -> _A: ...
def linear_backward(x: _A, weight: _A, dy: _A, has_bias: bool) -> tuple[_A, _A, _A | None]: ...
def softmax_cross_entropy(
    logits: _A, targets: _A, ignore_index: int, mean: bool
) -> tuple[float, _A]: ...
def embedding_backward(ids: _A, dy: _A, num_embeddings: int, padding_idx: int) -> _A: ...
def sgd_update(
    param: _A,
    grad: _A,
    buf: _A | None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    first: bool,
) -> None: ...
def adam_update(
    param: _A,
    grad: _A,
    exp_avg: _A,
    exp_avg_sq: _A,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
) -> None: ...
def sum_squares(array: _A) -> float: ...
def max_abs(array: _A) -> float: ...
def scale_(array: _A, factor: float) -> None: ...
def clamp_(array: _A, limit: float) -> None: ...
def attention_forward(
    query: _A, keys: _A, values: _A, lengths: _A | None, v: _A | None
) -> tuple[_A, _A]: ...
def attention_backward(
    query: _A,
    keys: _A,
    values: _A,
    lengths: _A | None,
    weights: _A,
    dcontext: _A,
    v: _A | None,
) -> tuple[_A, _A, _A, _A | None]: ...
