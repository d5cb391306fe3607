"""fastrnn: fast CPU recurrent layers (RNN, LSTM, GRU) with fused C++ forward and BPTT kernels.

* :class:`RNN`, :class:`LSTM`, :class:`GRU`: layers with PyTorch's arguments, weight names and
  outputs, plus an explicit :meth:`~LSTM.backward`.
* :mod:`fastrnn.functional`: the kernels as plain functions of arrays, for use as a backend.
* :mod:`fastrnn.reference`: the same cells in readable NumPy, the oracle of the tests.
"""

from __future__ import annotations

from typing import Any

from . import functional, reference
from ._core import __version__ as _core_version
from .layers import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["GRU", "LSTM", "RNN", "__version__", "build_info", "functional", "reference"]


def build_info() -> dict[str, Any]:
    """How the compiled core was built: Eigen version, SIMD instruction sets, OpenMP."""
    from . import _core

    info: dict[str, Any] = dict(_core.build_info())
    info["version"] = _core_version
    return info
