"""fastrnn's training kit, built on the library's layers: :mod:`~fastrnn.training.nn`
(:class:`~fastrnn.training.nn.Linear`, :class:`~fastrnn.training.nn.Embedding`),
:mod:`~fastrnn.training.losses`,
:mod:`~fastrnn.training.optim` (SGD, Adam, clipping), :mod:`~fastrnn.training.init`,
:class:`~fastrnn.training.model.SequenceModel`, the encoder-decoder
:class:`~fastrnn.training.seq2seq.Seq2Seq` (with :mod:`~fastrnn.training.attention`), and the
data of :mod:`~fastrnn.training.tasks` (synthetic problems) and :mod:`~fastrnn.training.text`
(characters).

Each module is also importable under its short name (``fastrnn.optim``, ``fastrnn.losses``, ...),
and the main classes are ``fastrnn.Linear``, ``fastrnn.Embedding``, ``fastrnn.SequenceModel``,
``fastrnn.Seq2Seq``.
"""

from . import init, losses, model, nn, optim, seq2seq, tasks, text
from .model import SequenceModel
from .nn import Embedding, Linear
from .seq2seq import Seq2Seq, Seq2SeqVocab

__all__ = [
    "Embedding",
    "Linear",
    "Seq2Seq",
    "Seq2SeqVocab",
    "SequenceModel",
    "init",
    "losses",
    "model",
    "nn",
    "optim",
    "seq2seq",
    "tasks",
    "text",
]
