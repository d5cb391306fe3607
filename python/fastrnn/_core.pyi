"""Type stubs of the compiled extension fastrnn._core (private; use fastrnn.functional)."""

from typing import Any, Optional

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
def workspace_size(cell: Cell, T: int, B: int, I: int, H: int, dtype: Any) -> int: ...  # noqa: E741
def forward(
    cell: Cell,
    x: NDArray[Any],
    weight_ih: Optional[NDArray[Any]],
    weight_hh: Optional[NDArray[Any]],
    bias_ih: Optional[NDArray[Any]],
    bias_hh: Optional[NDArray[Any]],
    h0: Optional[NDArray[Any]],
    c0: Optional[NDArray[Any]],
    training: bool,
) -> tuple[NDArray[Any], NDArray[Any], Optional[NDArray[Any]], Optional[NDArray[Any]]]: ...
def backward(
    cell: Cell,
    x: NDArray[Any],
    weight_ih: Optional[NDArray[Any]],
    weight_hh: Optional[NDArray[Any]],
    bias_ih: Optional[NDArray[Any]],
    bias_hh: Optional[NDArray[Any]],
    workspace: NDArray[Any],
    dy: Optional[NDArray[Any]],
    dh_n: Optional[NDArray[Any]],
    dc_n: Optional[NDArray[Any]],
) -> tuple[
    NDArray[Any],
    NDArray[Any],
    Optional[NDArray[Any]],
    NDArray[Any],
    NDArray[Any],
    Optional[NDArray[Any]],
    Optional[NDArray[Any]],
]: ...
def build_info() -> dict[str, Any]: ...

