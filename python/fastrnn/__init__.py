"""fastrnn: fast CPU recurrent layers (RNN, LSTM, GRU) with fused C++ forward and BPTT kernels.

* :class:`RNN`, :class:`LSTM`, :class:`GRU`: layers with PyTorch's arguments, weight names and
  outputs, plus an explicit :meth:`~LSTM.backward`.
* :mod:`fastrnn.functional`: the kernels as plain functions of arrays, for use as a backend.
* :mod:`fastrnn.reference`: the same cells in readable NumPy, the oracle of the tests.
"""

from __future__ import annotations

import os
from typing import Any

# The kernels run one small GEMM per time step on OpenMP threads. Between steps libgomp's worker
# threads must spin, not sleep: measured here, its throttled default (~100 spins) made 2-thread
# LSTM forward+backward 2x slower (19.3 ms vs 9.5 ms on T,B,I,H = 50,32,128,128). 300000 spins
# (~3 ms, libgomp's documented default) is set before the extension loads libgomp, unless the
# user chose a policy. It applies to this process's libgomp only if not already loaded.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "300000"

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
