"""fastrnn's training kit, built on the library's layers: :mod:`~fastrnn.training.nn`
(:class:`Linear`, :class:`Embedding`), :mod:`~fastrnn.training.losses`,
:mod:`~fastrnn.training.optim` (SGD, Adam, clipping), :mod:`~fastrnn.training.init`,
:class:`~fastrnn.training.model.SequenceModel`, and the data of :mod:`~fastrnn.training.tasks`
(synthetic problems) and :mod:`~fastrnn.training.text` (characters).

Each module is also importable under its short name (``fastrnn.optim``, ``fastrnn.losses``, ...),
and the main classes are ``fastrnn.Linear``, ``fastrnn.Embedding``, ``fastrnn.SequenceModel``.
"""

from . import init, losses, model, nn, optim, tasks, text
from .model import SequenceModel
from .nn import Embedding, Linear

__all__ = [
    "Embedding",
    "Linear",
    "SequenceModel",
    "init",
    "losses",
    "model",
    "nn",
    "optim",
    "tasks",
    "text",
]
