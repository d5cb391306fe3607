"""A small model container: ``[Embedding] -> recurrent stack -> Linear``, trained with BPTT.

:class:`SequenceModel` chains the layers and runs forward, backward, gradient clipping and the
optimizer step (:meth:`~SequenceModel.train_step`) for the three shapes of the notes:

* many-to-one (``many_to_one=True``): the output layer reads the last step only (classify or
  regress a whole sequence, e.g. the adding problem);
* many-to-many, aligned (the default): one output per step (tagging, forecasting, next-character
  prediction);
* one-to-many: :meth:`~SequenceModel.generate` feeds each sampled token back as the next input,
  carrying the state.

Inference in int8: :meth:`~SequenceModel.quantize_dynamic` returns a copy whose recurrent stack is
:func:`~fastrnn.quantized.quantize_dynamic`'s (``compute_dtype`` ``"int8"``); it runs forward,
evaluate and generate, and saves and loads as any model; it does not train.

Stateful / truncated BPTT: pass the state returned by one chunk's ``train_step`` to the next
chunk's. It is used as the next initial state, and no gradient flows back across the boundary
(the state is data for the next chunk, not a graph node).

:meth:`~SequenceModel.save` / :meth:`~SequenceModel.load` keep the configuration, the weights and
the optimizer's state in one ``.npz`` file, so training can resume.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._args import as_rng, check_bool, check_int, check_real, float_dtype
from ..layers import RecurrentLayer, from_spec
from ..quantized import QuantizedLayer, quantize_dynamic, quantized_param_shapes
from ..spec import StackSpec, check_compute_dtype
from . import _saved, init, losses, optim
from ._parts import Composite
from .nn import Embedding, Linear
from .text import CharVocab

__all__ = ["SequenceModel", "StepResult"]

Array = NDArray[Any]
#: the cell names of the models (SequenceModel's and Seq2Seq's) -> the stack's
_CELLS = {"rnn": "rnn_tanh", "rnn_relu": "rnn_relu", "lstm": "lstm", "gru": "gru"}
#: SequenceModel's: those and the layer-normalised LSTM and GRU
_MODEL_CELLS = {**_CELLS, "lnlstm": "lnlstm", "lngru": "lngru"}
#: the cells with a forget gate (SequenceModel's forget_bias)
_FORGET_GATE = ("lstm", "lnlstm")
#: the compute_dtype of an inference-only model whose recurrent stack is quantized
INT8 = "int8"


class _DefaultForgetBias(float):
    """The default of SequenceModel's ``forget_bias``: 1.0 for an LSTM, nothing for the cells
    without a forget gate (told apart from a 1.0 passed for them, which is an error)."""


_DEFAULT_FORGET_BIAS = _DefaultForgetBias(1.0)
#: config keys added after files of this format were first written: the value a file without the
#: key stands for (forget_bias: those models were made with PyTorch's default initialisation;
#: zoneout: they had none)
_ADDED_KEYS: dict[str, Any] = {"forget_bias": None, "zoneout": 0.0, "zoneout_cell": 0.0}


def _is_int8(value: Any) -> bool:
    """Whether ``value`` names int8 (``"int8"`` or ``numpy.int8``)."""
    if isinstance(value, str):
        return value.lower() == INT8
    try:
        return value is not None and np.dtype(value) == np.int8
    except TypeError:
        return False


def _checked_compute_dtype(value: Any, dtype: np.dtype[Any]) -> str:
    """:func:`~fastrnn.spec.check_compute_dtype`'s values (the float stack's products), or
    ``"int8"``: the stack quantized (:func:`fastrnn.quantize_dynamic`), for a float32 model."""
    if not _is_int8(value):
        return check_compute_dtype(value, dtype)
    if dtype != np.float32:
        raise ValueError(
            f"compute_dtype: an int8 model computes in float32 around its int8 products; "
            f"its dtype must be float32, not {dtype.name} (SequenceModel.quantize_dynamic "
            "converts)"
        )
    return INT8


def _checked_forget_bias(value: Any, cell: str, dtype: np.dtype[Any]) -> float | None:
    """``forget_bias`` as the config holds it: a float for an LSTM (``lstm``, ``lnlstm``), finite
    in the parameters' ``dtype`` (1e308 would be inf in float32), or None (PyTorch's default
    initialisation untouched, and always for the other cells)."""
    if value is None or (value is _DEFAULT_FORGET_BIAS and cell not in _FORGET_GATE):
        return None
    if cell not in _FORGET_GATE:
        raise ValueError(
            f"forget_bias: only an LSTM has a forget gate, got {value!r} for cell {cell!r} "
            "(leave it out or pass None)"
        )
    try:
        f = check_real("forget_bias", value)
    except TypeError:
        raise TypeError(f"forget_bias: expected a number or None, got {value!r}") from None
    top = float(np.finfo(dtype).max)
    if abs(f) > top:
        raise ValueError(
            f"forget_bias: must be finite in the model's dtype {dtype.name} (|value| <= "
            f"{top:.6g}), got {value!r}"
        )
    return f


def _checked_config(c: Mapping[str, Any]) -> dict[str, Any]:
    """SequenceModel's arguments (every key of its constructor), checked and normalised as its
    config holds them: the rules the constructor and :meth:`SequenceModel.load` share, applied
    before anything is allocated (``dropout``, ``zoneout`` and ``zoneout_cell`` are the
    recurrent layer's to check)."""
    cell, emb, seed = c["cell"], c["embedding_dim"], c["seed"]
    dtype = float_dtype("dtype", c["dtype"])
    if not isinstance(cell, str) or cell not in _MODEL_CELLS:
        raise ValueError(f"cell: expected one of {sorted(_MODEL_CELLS)}, got {cell!r}")
    return {
        "cell": cell,
        "input_size": check_int("input_size", c["input_size"], 1),
        "hidden_size": check_int("hidden_size", c["hidden_size"], 1),
        "output_size": check_int("output_size", c["output_size"], 1),
        "num_layers": check_int("num_layers", c["num_layers"], 1),
        "embedding_dim": None if emb is None else check_int("embedding_dim", emb, 1),
        "many_to_one": check_bool("many_to_one", c["many_to_one"]),
        "dropout": c["dropout"],
        "zoneout": c["zoneout"],
        "zoneout_cell": c["zoneout_cell"],
        "bidirectional": check_bool("bidirectional", c["bidirectional"]),
        "dtype": dtype.name,
        "compute_dtype": _checked_compute_dtype(c["compute_dtype"], dtype),
        "forget_bias": _checked_forget_bias(c["forget_bias"], cell, dtype),
        "seed": None if seed is None else check_int("seed", seed, 0),
    }


def _check_extra(config: Mapping[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A saved model's ``extra``, whose ``vocab`` (``fastrnn demo --save`` writes one) must be a
    character vocabulary (:class:`~fastrnn.training.text.CharVocab`'s rule), one character per
    id."""
    vocab = extra.get("vocab")
    if vocab is None:
        return extra
    try:
        if isinstance(vocab, list):
            if any(not isinstance(c, str) or len(c) != 1 for c in vocab):
                raise TypeError(f"chars: expected single characters, got {vocab!r:.80}")
            vocab = "".join(vocab)
        chars = CharVocab(vocab).chars
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra['vocab'] is not a character vocabulary ({e})") from None
    if config["embedding_dim"] is not None and len(chars) != config["input_size"]:
        raise ValueError(
            f"extra['vocab'] has {len(chars)} characters, the model's embedding "
            f"{config['input_size']}"
        )
    return extra


def _param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameters of a model of ``config`` by name, and their shapes (the stack's are its
    spec's; an int8 stack's weights have a scale per row, as :class:`fastrnn.QuantizedLSTM`)."""
    emb = config["embedding_dim"]
    spec = StackSpec(
        _MODEL_CELLS[config["cell"]], emb if emb is not None else config["input_size"],
        config["hidden_size"], config["num_layers"], config["bidirectional"],
        dtype=config["dtype"],
    )  # fmt: skip
    out = config["output_size"]
    rnn = quantized_param_shapes(spec) if config["compute_dtype"] == INT8 else spec.param_shapes()
    shapes = {f"rnn.{k}": v for k, v in rnn.items()}
    shapes |= {"head.weight": (out, spec.output_size), "head.bias": (out,)}
    if emb is not None:
        shapes["embedding.weight"] = (config["input_size"], emb)
    return shapes


#: the file of :meth:`SequenceModel.save` (:mod:`fastrnn.training._saved`)
_FORMAT = _saved.ModelFormat(
    "SequenceModel", "fastrnn.SequenceModel/1", _checked_config, _param_shapes, _check_extra,
    inference_only=lambda config: config["compute_dtype"] == INT8, added_keys=_ADDED_KEYS,
)  # fmt: skip


@dataclass
class StepResult:
    """What one :meth:`SequenceModel.train_step` (or :meth:`Seq2Seq.train_step
    <fastrnn.training.seq2seq.Seq2Seq.train_step>`) reports."""

    loss: float  #: the loss of the step's forward (before the update)
    grad_norm: float  #: global 2-norm of all gradients, before clipping
    state: Any  #: the final state, to carry into the next chunk (truncated BPTT); None for Seq2Seq


class SequenceModel(Composite):
    """``[Embedding] -> RNN/LSTM/GRU stack -> Linear``.

    Args:
        cell: ``"rnn"`` (tanh), ``"rnn_relu"``, ``"lstm"``, ``"gru"``, ``"lnlstm"`` (the
            layer-normalised LSTM, :class:`~fastrnn.layers.LayerNormLSTM`) or ``"lngru"`` (the
            layer-normalised GRU, :class:`~fastrnn.layers.LayerNormGRU`).
        input_size: features per step, or the vocabulary size when ``embedding_dim`` is given
            (the input is then integer ids ``(T, B)``).
        hidden_size, num_layers, dropout, bidirectional: as the recurrent layers.
        zoneout, zoneout_cell: the recurrent stack's zoneout probabilities of the hidden and
            (``"lstm"``, ``"lnlstm"``) cell states, in ``[0, 1)`` (as the recurrent layers':
            0/1 draws in training, the expectation in eval and in an int8 model).
        output_size: outputs of the final Linear layer (classes, or regression targets).
        embedding_dim: if given, an :class:`~fastrnn.training.nn.Embedding` turns ids into vectors.
        many_to_one: the output layer reads only the last step.
        dtype: float32 or float64, of every layer.
        seed: an int, a ``numpy.random.Generator`` or None, for every layer (one seed makes the
            whole model reproducible; an int seed is kept in :attr:`config`, a Generator is
            not).
        compute_dtype: the precision of the recurrent stack's matrix products: None (the dtype)
            or ``"bfloat16"`` (see
            :attr:`RecurrentLayer.compute_dtype <fastrnn.layers.RecurrentLayer.compute_dtype>`),
            settable on :attr:`rnn` later; or ``"int8"``: an inference-only model whose stack is a
            :class:`fastrnn.quantized.QuantizedLayer` (float32 only; what
            :meth:`quantize_dynamic` makes, and what :meth:`load` makes of its files; made
            directly, it holds its random initialisation quantized, for
            :meth:`load_state_dict`). The embedding and the output layer stay in ``dtype``.
        forget_bias: an LSTM's (``"lstm"``, ``"lnlstm"``) forget-gate bias: after the layer's
            default initialisation, the f rows of every ``bias_ih`` are set to it and those of
            ``bias_hh`` to 0 (:func:`~fastrnn.training.init.set_forget_bias`), so the gate starts
            open (sigmoid(1) = 0.73). 1.0 by default (Jozefowicz et al., 2015); None keeps the
            default initialisation untouched. For long lags see
            :func:`~fastrnn.training.init.set_chrono_bias` (docs/training.md: the adding problem at
            T = 400). The other cells have no forget gate: for them it is None (their
            :attr:`config` says so), and any other value given is a ValueError.

    Parameters and their state_dict round trip go under the parts' dotted names
    (``embedding.weight``, ``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``):
    :meth:`named_parameters`, :meth:`state_dict`, :meth:`load_state_dict`.

    Raises:
        TypeError: a size or ``seed`` not an int, a flag not a bool, ``dtype`` not float32 or
            float64, or ``forget_bias`` not a number.
        ValueError: an unknown ``cell`` or ``compute_dtype``, a size < 1, ``dropout`` out of
            ``[0, 1]``, ``zoneout`` or ``zoneout_cell`` out of ``[0, 1)`` (``zoneout_cell`` > 0
            for a cell without a cell state), ``"int8"`` with a float64 ``dtype``, or a
            ``forget_bias`` for a cell without a forget gate or not finite in ``dtype``.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        num_layers: int = 1,
        embedding_dim: int | None = None,
        many_to_one: bool = False,
        dropout: float = 0.0,
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        compute_dtype: Any = None,
        forget_bias: float | None = _DEFAULT_FORGET_BIAS,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        rng = as_rng(seed)  # a Generator is used as is; the config keeps int seeds only
        #: the constructor's arguments as checked (``dtype`` by name, ``dropout`` and the zoneout
        #: probabilities as the layer took them, an int ``seed`` or None): what :meth:`save` writes
        self.config: dict[str, Any] = _checked_config({
            "cell": cell, "input_size": input_size, "hidden_size": hidden_size,
            "output_size": output_size, "num_layers": num_layers, "embedding_dim": embedding_dim,
            "many_to_one": many_to_one, "dropout": dropout, "zoneout": zoneout,
            "zoneout_cell": zoneout_cell, "bidirectional": bidirectional,
            "dtype": dtype, "compute_dtype": compute_dtype, "forget_bias": forget_bias,
            "seed": None if isinstance(seed, np.random.Generator) else seed,
        })  # fmt: skip
        c = self.config
        r_emb, r_rnn, r_head = rng.spawn(3)
        #: the :class:`~fastrnn.training.nn.Embedding` of the ids, or None
        self.embedding = (
            Embedding(c["input_size"], c["embedding_dim"], dtype=c["dtype"], seed=r_emb)
            if c["embedding_dim"] is not None
            else None
        )
        rnn_in = c["embedding_dim"] if c["embedding_dim"] is not None else c["input_size"]
        int8 = c["compute_dtype"] == INT8
        spec = StackSpec(_MODEL_CELLS[cell], rnn_in, c["hidden_size"], c["num_layers"],
                         c["bidirectional"], dtype=c["dtype"],
                         compute_dtype=None if int8 else c["compute_dtype"])  # fmt: skip
        #: the recurrent stack, an :class:`~fastrnn.layers.RNN`, :class:`~fastrnn.layers.LSTM`,
        #: :class:`~fastrnn.layers.GRU`, :class:`~fastrnn.layers.LayerNormLSTM` or
        #: :class:`~fastrnn.layers.LayerNormGRU` (a :class:`~fastrnn.quantized.QuantizedLayer`
        #: for int8)
        self.rnn: RecurrentLayer = from_spec(
            spec, dropout=dropout, zoneout=c["zoneout"], zoneout_cell=c["zoneout_cell"], seed=r_rnn
        )
        # the layer's rules
        c["dropout"], c["zoneout"] = self.rnn.dropout, self.rnn.zoneout
        c["zoneout_cell"] = self.rnn.zoneout_cell
        if c["forget_bias"] is not None:
            init.set_forget_bias(self.rnn, c["forget_bias"])
        if int8:  # the weights a load_state_dict replaces: quantize_dynamic or load
            self.rnn = quantize_dynamic(self.rnn)
        #: the output layer, a :class:`~fastrnn.training.nn.Linear`
        self.head = Linear(spec.output_size, c["output_size"], dtype=c["dtype"], seed=r_head)
        self.many_to_one = c["many_to_one"]
        self.dtype = np.dtype(c["dtype"])
        #: the gradients of the last :meth:`backward`, by dotted name (``rnn.weight_hh_l0``)
        self.grads: dict[str, Array] = {}
        self._T = 0
        if int8:
            self.eval()

    # ---- parameters -------------------------------------------------------------------------

    def _parts(self) -> list[tuple[str, Any]]:
        parts: list[tuple[str, Any]] = [("rnn", self.rnn), ("head", self.head)]
        if self.embedding is not None:
            parts.insert(0, ("embedding", self.embedding))
        return parts

    def _inference_only(self, what: str) -> None:
        """A RuntimeError for ``what`` (a training entry point) if the stack is quantized."""
        if isinstance(self.rnn, QuantizedLayer):
            raise RuntimeError(
                f"{what}: an int8 model is inference-only; train the float model and call "
                "quantize_dynamic() again"
            )

    def train(self, mode: bool = True) -> SequenceModel:
        """Training (default) or inference mode for every layer; returns the model.

        Raises:
            RuntimeError: ``train(True)`` on an int8 model (inference only).
        """
        if mode:
            self._inference_only("train")
        for _, m in self._parts():
            m.train(mode)
        return self

    def eval(self) -> SequenceModel:
        """Inference mode: nothing is saved for a backward, no dropout."""
        return self.train(False)

    # ---- forward / backward -----------------------------------------------------------------

    def forward(self, x: ArrayLike, state: Any = None) -> tuple[Array, Any]:
        """Run the model; in training mode it saves what :meth:`backward` needs.

        Args:
            x: ``(T, B, input_size)`` (float), or integer ids ``(T, B)`` for a model with an
                embedding. Time-major, as the recurrent layers without ``batch_first``.
            state: the initial state of the stack (its ``hx``, e.g. the last chunk's final
                state), or None for zeros.

        Returns:
            ``(out, state)``: ``out`` ``(T, B, output_size)``, or ``(B, output_size)`` when
            many-to-one; ``state`` the stack's final state (``h_n`` ``(L*D, B, H)``, for an
            LSTM ``(h_n, c_n)``).

        Raises:
            ValueError: ``x`` of the wrong number of axes, ``T == 0`` for a many-to-one model,
                or an error of the layers (sizes, ids out of the vocabulary, state shapes).
            TypeError: ids not integers, or ``x`` not float (the layers' rules).
        """
        xa = np.asarray(x)
        if self.embedding is not None:
            if xa.ndim != 2:
                raise ValueError(f"x: expected token ids of shape (T, B), got {xa.shape}")
            xa = self.embedding(xa)
        elif xa.ndim != 3:
            raise ValueError(f"x: expected shape (T, B, input_size), got {xa.shape}")
        y, state = self.rnn(xa, state)
        self._T = y.shape[0]
        if self.many_to_one:
            if y.shape[0] == 0:
                raise ValueError("x: a many-to-one model needs at least one step")
            y = y[-1]
        return self.head(y), state

    __call__ = forward

    def backward(self, dout: ArrayLike) -> dict[str, Array]:
        """Backpropagation through the head, all steps and the embedding for the last
        training-mode :meth:`forward` (one backward per forward).

        Args:
            dout: ``dL/dout``, of ``out``'s shape.

        Returns:
            :attr:`grads`, filled with every parameter's gradient by dotted name.

        Raises:
            RuntimeError: no forward to go back through, or an int8 model.
            ValueError: ``dout`` not of ``out``'s shape.
        """
        self._inference_only("backward")
        dy = self.head.backward(dout)
        if self.many_to_one:
            full = np.zeros((self._T, *dy.shape), self.dtype)
            full[-1] = dy
            dy = full
        dx, _ = self.rnn.backward(dy)
        if self.embedding is not None:
            self.embedding.backward(dx)
        self._gather_grads()
        return self.grads

    def loss(self, out: Array, target: ArrayLike, kind: str) -> tuple[float, Array]:
        """The loss of ``out`` against ``target`` and its gradient.

        Args:
            out: the model's output.
            target: for ``"mse"`` as many values as ``out`` (reshaped to it); for
                ``"cross_entropy"`` integer class ids of ``out``'s shape without its last axis.
            kind: ``"mse"`` (:func:`~fastrnn.training.losses.mse`) or ``"cross_entropy"``
                (:func:`~fastrnn.training.losses.cross_entropy`).

        Returns:
            ``(loss, dL/dout)``.

        Raises:
            ValueError: an unknown ``kind``, or the loss's errors.
        """
        if kind == "mse":
            return losses.mse(out, np.asarray(target, dtype=out.dtype).reshape(out.shape))
        if kind == "cross_entropy":
            return losses.cross_entropy(out, target)
        raise ValueError(f"loss: expected 'mse' or 'cross_entropy', got {kind!r}")

    def train_step(
        self,
        x: ArrayLike,
        target: ArrayLike,
        optimizer: optim.Optimizer,
        *,
        loss: str = "mse",
        state: Any = None,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> StepResult:
        """One training step: forward (training mode), loss, backward, clipping and one
        optimizer update.

        Args:
            x: as in :meth:`forward`.
            target: as in :meth:`loss`.
            optimizer: an :class:`~fastrnn.training.optim.Optimizer` (updates
                :meth:`named_parameters` in place).
            loss: ``"mse"`` or ``"cross_entropy"`` (:meth:`loss`).
            state: the initial state (e.g. the previous chunk's, for truncated BPTT; no
                gradient flows into it), or None.
            clip_norm: clip the gradients' global norm to it
                (:func:`~fastrnn.training.optim.clip_grad_norm`), or None.
            clip_value: then clamp each gradient value to ``[-clip_value, clip_value]``
                (:func:`~fastrnn.training.optim.clip_grad_value`), or None.

        Returns:
            A :class:`StepResult`: the loss, the gradient norm before clipping and the final
            state.

        Raises:
            RuntimeError: an int8 model (inference only).
            ValueError, TypeError: the errors of :meth:`forward`, :meth:`loss`, the clipping
                and the optimizer.
        """
        self._inference_only("train_step")
        self.train()
        out, new_state = self.forward(x, state)
        value, dout = self.loss(out, target, loss)
        self.backward(dout)
        norm = self._update(optimizer, clip_norm, clip_value)
        return StepResult(value, norm, new_state)

    def evaluate(self, x: ArrayLike, target: ArrayLike, *, loss: str = "mse") -> float:
        """The loss on ``(x, target)`` in inference mode (the mode is restored); arguments and
        errors as :meth:`forward` and :meth:`loss`.

        Returns:
            The loss, a float.
        """
        was = self.rnn.training
        self.eval()
        try:
            out, _ = self.forward(x)
            return self.loss(out, target, loss)[0]
        finally:
            self.train(was)

    # ---- diagnostics ------------------------------------------------------------------------

    def hidden_grad_norms(self, x: ArrayLike, target: ArrayLike, *, loss: str = "mse") -> Array:
        """``||dL/dh_t||`` for t = 0..T-1: the gradient of the loss w.r.t. the top layer's hidden
        state after step t (norm over the batch and the units) -- the vanishing or exploding
        gradient, measured. ``h_{t}`` here is the state entering step t+1 (``t = -1`` is h0).

        Computed exactly with the kernels: for each t the model is run from the state at t over
        the remaining steps and the loss differentiated w.r.t. that initial state (O(T^2) steps;
        meant for diagnostics on moderate T). The model's weights and mode are left as they
        were.

        Args:
            x: a many-to-one model's input ``(T, B, input_size)`` (or ids ``(T, B)``).
            target: as in :meth:`loss`.
            loss: as in :meth:`loss`.

        Returns:
            ``(T,)``, float64: ``||dL/dh_t||`` for ``t = 0 .. T-1``.

        Raises:
            ValueError: a bidirectional or many-to-many model.
            RuntimeError: an int8 model.
        """
        self._inference_only("hidden_grad_norms")
        if self.rnn.bidirectional:
            raise ValueError("hidden_grad_norms: unidirectional models only")
        xa = np.asarray(x)
        T = xa.shape[0]
        if not self.many_to_one:
            raise ValueError("hidden_grad_norms: for many-to-one models (the loss at the end)")
        was = self.rnn.training
        L = self.rnn.num_layers
        norms = np.zeros(T)
        try:
            self.eval()
            states: list[Any] = []
            st: Any = None
            for t in range(T):  # the state after steps 0..t
                _, st = self.forward(xa[t : t + 1], st)
                states.append(st)
            self.train()
            for t in range(T - 1):
                out, _ = self.forward(xa[t + 1 :], states[t])
                _, dout = self.loss(out, target, loss)
                dy = self.head.backward(dout)
                full = np.zeros((self._T, *dy.shape), self.dtype)
                full[-1] = dy
                _, dstate = self.rnn.backward(full)
                dh = dstate[0] if isinstance(dstate, tuple) else dstate
                norms[t] = float(np.linalg.norm(dh[L - 1].astype(np.float64)))
            out, _ = self.forward(xa[T - 1 : T], states[T - 2] if T > 1 else None)
            _, dout = self.loss(out, target, loss)
            norms[T - 1] = float(np.linalg.norm(self.head.backward(dout).astype(np.float64)))
        finally:
            self.train(was)
        return norms

    # ---- one-to-many -------------------------------------------------------------------------

    def generate(
        self,
        prime: ArrayLike,
        steps: int,
        *,
        temperature: float = 1.0,
        seed: int | np.random.Generator | None = None,
    ) -> Array:
        """One-to-many generation with an embedding model, in inference mode (the mode is
        restored): run the ``prime`` ids, then sample ``steps`` ids one at a time, feeding each
        back as the next input and carrying the state.

        Args:
            prime: ids ``(T0,)`` (any shape, flattened), at least one.
            steps: the number of ids to sample.
            temperature: each id is drawn from ``softmax(logits / temperature)``; 0 takes the
                argmax.
            seed: an int, a ``numpy.random.Generator`` or None, for the draws.

        Returns:
            The sampled ids, int64 ``(steps,)`` (the prime not included).

        Raises:
            ValueError: a model without an embedding or many-to-one, an empty ``prime`` or an id
                of it outside the vocabulary, a negative ``steps``, or a negative or non-finite
                ``temperature``.
            TypeError: ``steps`` not an int, ``temperature`` not a real number.
        """
        if self.embedding is None or self.many_to_one:
            raise ValueError("generate: needs a many-to-many model with an embedding (token ids)")
        steps = check_int("steps", steps, 0)
        temperature = check_real("temperature", temperature, 0.0)
        p = np.asarray(prime, dtype=np.int64).reshape(-1)
        if p.size == 0:
            raise ValueError("prime: needs at least one id")
        rng = np.random.default_rng(seed)
        was = self.rnn.training
        self.eval()
        out_ids = np.empty(int(steps), np.int64)
        try:
            logits, state = self.forward(p[:, None])
            z = logits[-1, 0].astype(np.float64)
            for i in range(int(steps)):
                if temperature == 0:
                    nxt = int(np.argmax(z))
                else:
                    q = z / temperature
                    q = np.exp(q - q.max())
                    nxt = int(rng.choice(q.size, p=q / q.sum()))
                out_ids[i] = nxt
                logits, state = self.forward(np.array([[nxt]]), state)
                z = logits[-1, 0].astype(np.float64)
        finally:
            self.train(was)
        return out_ids

    # ---- int8 ---------------------------------------------------------------------------------

    def quantize_dynamic(self, dtype: Any = INT8) -> SequenceModel:
        """An int8 copy of the model for inference; the model is unchanged.

        Its recurrent stack is ``fastrnn.quantize_dynamic(self.rnn)`` (int8 weights with a scale
        per row, activations quantized on the fly; see :mod:`fastrnn.quantized`); the embedding
        and the output layer are float32 copies (a float64 model's converted), not quantized.
        The copy's :attr:`config` is this model's with ``dtype`` ``"float32"`` and
        ``compute_dtype`` ``"int8"``: :meth:`forward`, :meth:`evaluate`, :meth:`generate` and
        :meth:`save` (without an optimizer) / :meth:`load` work as for any model, while
        :meth:`train_step`, :meth:`backward`, ``train(True)`` and :meth:`hidden_grad_norms`
        raise RuntimeError.

        Args:
            dtype: ``"int8"`` (or ``numpy.int8``), the only one.

        Returns:
            The int8 :class:`SequenceModel`.

        Raises:
            TypeError: the model is already int8.
            ValueError: ``dtype`` is not int8.
        """
        if isinstance(self.rnn, QuantizedLayer):
            raise TypeError("quantize_dynamic: the model is already int8")
        if not _is_int8(dtype):
            raise ValueError(f"dtype: only 'int8' is supported, got {dtype!r}")
        sd = {k: v for k, v in self.named_parameters().items() if not k.startswith("rnn.")}
        sd |= {f"rnn.{k}": v for k, v in quantize_dynamic(self.rnn).named_parameters()}
        config = {**self.config, "dtype": "float32", "compute_dtype": INT8}
        model = SequenceModel(**config)
        model.load_state_dict(sd)  # the embedding's and head's converted to float32
        return model

    # ---- files ------------------------------------------------------------------------------

    def save(
        self, path: str | Path, optimizer: optim.Optimizer | None = None, **extra: Any
    ) -> None:
        """Save the model to one ``.npz`` file, for :meth:`load`. An int8 model's file holds its
        int8 weights and their scales (its config's ``compute_dtype`` is ``"int8"``).

        Args:
            path: the file to write.
            optimizer: its state is saved too (to resume training), or None; not for an int8
                model.
            **extra: JSON values saved with the model (e.g. ``vocab``, a
                :class:`~fastrnn.training.text.CharVocab`'s ``chars``).

        Raises:
            ValueError: an optimizer with an int8 model.
            TypeError: an ``extra`` value that JSON cannot hold.
            OSError: the file cannot be written.
        """
        if optimizer is not None and isinstance(self.rnn, QuantizedLayer):
            raise ValueError("optimizer: an int8 model is inference-only; it saves no optimizer")
        self.config["compute_dtype"] = self.rnn.compute_dtype  # settable on the layer
        _saved.save(path, _FORMAT, self.config, self.named_parameters(), optimizer, extra)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str]
    ) -> tuple[SequenceModel, optim.Optimizer | None, dict[str, Any]]:
        """A model saved by :meth:`save`.

        The file is read as untrusted input: its header, config and optimizer state, and the
        sizes its config declares against the arrays it holds, are checked before a model of
        those sizes is made; an ``extra['vocab']`` must be a character vocabulary of the
        embedding's size.

        Args:
            path: the ``.npz`` file.

        Returns:
            ``(model, optimizer or None, extra)``: the optimizer if one was saved, and the
            ``extra`` values.

        Raises:
            ValueError: any problem of the file, named.
            OSError: the path cannot be opened (FileNotFoundError, IsADirectoryError).
        """
        return _saved.load(cls, path, _FORMAT)
