"""fastrnn: fast CPU recurrent layers (RNN, LSTM, GRU) with fused C++ forward and BPTT kernels.

* :class:`~fastrnn.layers.RNN`, :class:`~fastrnn.layers.LSTM`, :class:`~fastrnn.layers.GRU`:
  layers with PyTorch's arguments, weight names and outputs, plus an explicit
  :meth:`~fastrnn.layers.RecurrentLayer.backward`; :class:`~fastrnn.layers.LayerNormLSTM` and
  :class:`~fastrnn.layers.LayerNormGRU`, the layer-normalised LSTM (haste's) and GRU;
  :func:`~fastrnn.quantized.quantize_dynamic` makes int8 inference layers of them.
* :mod:`fastrnn.torch` (imported on its own, needs torch): ``torch.nn.LSTM/GRU/RNN`` drop-ins
  whose forward and backward run these kernels.
* :mod:`fastrnn.functional`: the kernels as plain functions of arrays, for use as a backend.
* :mod:`fastrnn.reference`: the same cells in readable NumPy, the oracle of the tests.
* :mod:`fastrnn.spec`: :class:`~fastrnn.spec.StackSpec`, the contract of a recurrent stack
  (parameter names and shapes, state, mask and workspace shapes, every argument rule), stated once.
* Interop: :mod:`fastrnn.convert` (Keras, the course notes' GRU), :mod:`fastrnn.onnx`,
  :mod:`fastrnn.torch`.
* :mod:`fastrnn.training`, the training kit: :class:`~fastrnn.training.nn.Linear`,
  :class:`~fastrnn.training.nn.Embedding`, losses, optim (SGD, Adam, clipping), init,
  :class:`~fastrnn.training.model.SequenceModel`, the encoder-decoder
  :class:`~fastrnn.training.seq2seq.Seq2Seq` with attention, tasks (adding problem, copy memory,
  dates, digit strings), text; its modules are also ``fastrnn.losses``, ``fastrnn.optim``,
  ``fastrnn.init``, ``fastrnn.seq2seq``, ``fastrnn.tasks``, ``fastrnn.text``.
* :mod:`fastrnn.tools`: the ``fastrnn`` command, the peer benchmark, the self-check.
"""

from __future__ import annotations

import sys

from . import _core, functional, reference, spec, training
from .functional import build_info, get_num_threads, set_num_threads
from .layers import GRU, LSTM, RNN, LayerNormGRU, LayerNormLSTM
from .quantized import (
    QuantizedGRU,
    QuantizedLayerNormGRU,
    QuantizedLayerNormLSTM,
    QuantizedLSTM,
    QuantizedRNN,
    quantize_dynamic,
)
from .spec import StackSpec
from .training import (
    Embedding,
    Linear,
    Seq2Seq,
    SequenceModel,
    init,
    losses,
    model,
    nn,
    optim,
    seq2seq,
    tasks,
    text,
)

# the training kit's modules under their short names: `import fastrnn.optim` and
# `from fastrnn.losses import ...` keep working
for _m in (init, losses, model, nn, optim, seq2seq, tasks, text):
    sys.modules.setdefault(f"{__name__}.{_m.__name__.rsplit('.', 1)[1]}", _m)
del _m

#: The package's version (PEP 440), as the compiled core was built with it.
__version__: str = _core.__version__

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Embedding",
    "LayerNormGRU",
    "LayerNormLSTM",
    "Linear",
    "QuantizedGRU",
    "QuantizedLSTM",
    "QuantizedLayerNormGRU",
    "QuantizedLayerNormLSTM",
    "QuantizedRNN",
    "Seq2Seq",
    "SequenceModel",
    "StackSpec",
    "__version__",
    "build_info",
    "functional",
    "get_num_threads",
    "init",
    "losses",
    "optim",
    "quantize_dynamic",
    "reference",
    "seq2seq",
    "set_num_threads",
    "spec",
    "tasks",
    "text",
    "training",
]
