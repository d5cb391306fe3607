"""Type stubs of the compiled extension fastrnn._core (private; use fastrnn.functional)."""

from typing import Any

from numpy.typing import NDArray

__version__: str

class Cell:
    rnn_tanh: Cell
    rnn_relu: Cell
    lstm: Cell
    gru: Cell
    gru_reset_before: Cell
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

_A = NDArray[Any]
_Weights = list[tuple[_A, _A, _A | None, _A | None, _A | None]]

def num_gates(cell: Cell) -> int: ...
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
) -> int: ...
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
) -> tuple[_A, _A, _A | None, list[tuple[_A, _A, _A | None, _A | None, _A | None]]]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def build_info() -> dict[str, Any]: ...
