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

def num_gates(cell: Cell) -> int: ...
def workspace_size(cell: Cell, T: int, B: int, I: int, H: int, dtype: Any) -> int: ...
def forward(
    cell: Cell,
    x: NDArray[Any],
    weight_ih: NDArray[Any] | None,
    weight_hh: NDArray[Any] | None,
    bias_ih: NDArray[Any] | None,
    bias_hh: NDArray[Any] | None,
    h0: NDArray[Any] | None,
    c0: NDArray[Any] | None,
    training: bool,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any] | None, NDArray[Any] | None]: ...
def backward(
    cell: Cell,
    x: NDArray[Any],
    weight_ih: NDArray[Any] | None,
    weight_hh: NDArray[Any] | None,
    bias_ih: NDArray[Any] | None,
    bias_hh: NDArray[Any] | None,
    workspace: NDArray[Any],
    dy: NDArray[Any] | None,
    dh_n: NDArray[Any] | None,
    dc_n: NDArray[Any] | None,
) -> tuple[
    NDArray[Any],
    NDArray[Any],
    NDArray[Any] | None,
    NDArray[Any],
    NDArray[Any],
    NDArray[Any] | None,
    NDArray[Any] | None,
]: ...
def build_info() -> dict[str, Any]: ...
