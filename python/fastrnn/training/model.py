"""A small model container: ``[Embedding] -> recurrent stack -> Linear``, trained with BPTT.

:class:`SequenceModel` chains the layers and runs forward, backward, gradient clipping and the
optimizer step (:meth:`~SequenceModel.train_step`) for the three shapes of the notes:

* many-to-one (``many_to_one=True``): the output layer reads the last step only (classify or
  regress a whole sequence, e.g. the adding problem);
* many-to-many, aligned (the default): one output per step (tagging, forecasting, next-character
  prediction);
* one-to-many: :meth:`~SequenceModel.generate` feeds each sampled token back as the next input,
  carrying the state.

Stateful / truncated BPTT: pass the state returned by one chunk's ``train_step`` to the next
chunk's. It is used as the next initial state, and no gradient flows back across the boundary
(the state is data for the next chunk, not a graph node).

:meth:`~SequenceModel.save` / :meth:`~SequenceModel.load` keep the configuration, the weights and
the optimizer's state in one ``.npz`` file, so training can resume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..layers import RecurrentLayer, from_spec
from ..spec import StackSpec
from . import losses, optim
from .nn import Embedding, Linear

__all__ = ["SequenceModel", "StepResult"]

Array = NDArray[Any]
#: the model's cell names -> the stack's
_CELLS = {"rnn": "rnn_tanh", "rnn_relu": "rnn_relu", "lstm": "lstm", "gru": "gru"}
_FORMAT = "fastrnn.SequenceModel/1"


def _read_meta(z: Any, path: Any) -> dict[str, Any]:
    """The JSON header of a saved model, checked: an object of this format with a config."""
    try:
        meta = json.loads(str(z["meta"]))
    except (KeyError, ValueError) as e:
        raise ValueError(f"path: {path}: not a fastrnn SequenceModel file ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"path: {path}: not a fastrnn SequenceModel file ({got})")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"path: {path}: its config is not a JSON object")
    return meta


def _check_sizes(config: dict[str, Any], z: Any, path: Any) -> None:
    """The sizes a file declares against the arrays it holds, before a model of those sizes is
    allocated (a crafted header cannot make load allocate more than the file holds)."""
    try:
        emb = config.get("embedding_dim")
        spec = StackSpec(
            _CELLS[config["cell"]], emb if emb is not None else config["input_size"],
            config["hidden_size"], config.get("num_layers", 1), config.get("bidirectional", False),
            dtype=config.get("dtype", "float32"),
        )  # fmt: skip
        want = {f"rnn.{k}": v for k, v in spec.param_shapes().items()}
        out = config["output_size"]
        want |= {"head.weight": (out, spec.output_size), "head.bias": (out,)}
        if emb is not None:
            want["embedding.weight"] = (config["input_size"], emb)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"path: {path}: a bad config ({e!r})") from None
    for name, shape in want.items():
        key = f"param/{name}"
        got = z[key].shape if key in z.files else None
        if got != shape:
            raise ValueError(f"path: {path}: {name} has shape {got}, its config says {shape}")


@dataclass
class StepResult:
    """What one :meth:`SequenceModel.train_step` reports."""

    loss: float
    grad_norm: float  #: global 2-norm of all gradients, before clipping
    state: Any  #: the final state, to carry into the next chunk (truncated BPTT)


class SequenceModel:
    """``[Embedding] -> RNN/LSTM/GRU stack -> Linear``.

    Args:
        cell: ``"rnn"`` (tanh), ``"rnn_relu"``, ``"lstm"`` or ``"gru"``.
        input_size: features per step, or the vocabulary size when ``embedding_dim`` is given
            (the input is then integer ids ``(T, B)``).
        hidden_size, num_layers, dropout, bidirectional: as the recurrent layers.
        output_size: outputs of the final Linear layer (classes, or regression targets).
        embedding_dim: if given, an :class:`~fastrnn.nn.Embedding` turns ids into vectors.
        many_to_one: the output layer reads only the last step.
        dtype, seed: for every layer (one seed makes the whole model reproducible).
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
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: int | None = None,
    ) -> None:
        if cell not in _CELLS:
            raise ValueError(f"cell: expected one of {sorted(_CELLS)}, got {cell!r}")
        self.config: dict[str, Any] = {
            "cell": cell,
            "input_size": int(input_size),
            "hidden_size": int(hidden_size),
            "output_size": int(output_size),
            "num_layers": int(num_layers),
            "embedding_dim": None if embedding_dim is None else int(embedding_dim),
            "many_to_one": bool(many_to_one),
            "dropout": float(dropout),
            "bidirectional": bool(bidirectional),
            "dtype": np.dtype(dtype).name,
            "seed": seed,
        }
        rng = np.random.default_rng(seed)
        r_emb, r_rnn, r_head = rng.spawn(3)
        self.embedding = (
            Embedding(input_size, embedding_dim, dtype=dtype, seed=r_emb)
            if embedding_dim is not None
            else None
        )
        rnn_in = embedding_dim if embedding_dim is not None else input_size
        spec = StackSpec(_CELLS[cell], rnn_in, hidden_size, num_layers, bidirectional, dtype=dtype)
        self.rnn: RecurrentLayer = from_spec(spec, dropout=dropout, seed=r_rnn)
        self.head = Linear(spec.output_size, output_size, dtype=dtype, seed=r_head)
        self.many_to_one = bool(many_to_one)
        self.dtype = np.dtype(dtype)
        self.grads: dict[str, Array] = {}
        self._T = 0

    # ---- parameters -------------------------------------------------------------------------

    def _parts(self) -> list[tuple[str, Any]]:
        parts: list[tuple[str, Any]] = [("rnn", self.rnn), ("head", self.head)]
        if self.embedding is not None:
            parts.insert(0, ("embedding", self.embedding))
        return parts

    def named_parameters(self) -> dict[str, Array]:
        """The live arrays under dotted names (``rnn.weight_ih_l0``, ``head.weight``, ...)."""
        return {f"{p}.{k}": v for p, m in self._parts() for k, v in m.named_parameters()}

    def state_dict(self) -> dict[str, Array]:
        """Copies of all parameters under their dotted names."""
        return {k: v.copy() for k, v in self.named_parameters().items()}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Load the parameters of :meth:`state_dict`."""
        want = set(self.named_parameters())
        if set(sd) != want:
            raise ValueError(
                f"state_dict: missing {sorted(want - set(sd))}, unexpected {sorted(set(sd) - want)}"
            )
        for p, m in self._parts():
            m.load_state_dict({k[len(p) + 1 :]: v for k, v in sd.items() if k.startswith(p + ".")})

    def train(self, mode: bool = True) -> SequenceModel:
        """Training (default) or inference mode for every layer."""
        for _, m in self._parts():
            m.train(mode)
        return self

    def eval(self) -> SequenceModel:
        """Inference mode: nothing is saved for a backward, no dropout."""
        return self.train(False)

    # ---- forward / backward -----------------------------------------------------------------

    def forward(self, x: ArrayLike, state: Any = None) -> tuple[Array, Any]:
        """``x (T, B, I)`` (or ids ``(T, B)`` with an embedding) -> ``(out, state)``; ``out`` is
        ``(T, B, output_size)``, or ``(B, output_size)`` when many-to-one."""
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
        """Backpropagation from ``dL/dout`` through the head, all steps and the embedding; fills
        and returns :attr:`grads` (dotted names)."""
        dy = self.head.backward(dout)
        if self.many_to_one:
            full = np.zeros((self._T, *dy.shape), self.dtype)
            full[-1] = dy
            dy = full
        dx, _ = self.rnn.backward(dy)
        if self.embedding is not None:
            self.embedding.backward(dx)
        self.grads = {f"{p}.{k}": v for p, m in self._parts() for k, v in m.grads.items()}
        return self.grads

    def loss(self, out: Array, target: ArrayLike, kind: str) -> tuple[float, Array]:
        """``(loss, dL/dout)``: ``kind`` ``"mse"`` (PyTorch's mean, no 1/2) or
        ``"cross_entropy"`` (integer targets shaped like ``out`` without its last axis)."""
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
        """Forward, loss, backward, clipping and one optimizer step. ``state``: the initial state
        (e.g. the previous chunk's, for truncated BPTT); the result carries the final one."""
        self.train()
        out, new_state = self.forward(x, state)
        value, dout = self.loss(out, target, loss)
        grads = self.backward(dout)
        if clip_norm is not None:
            norm = optim.clip_grad_norm(grads, clip_norm)
        else:
            norm = optim.global_norm(grads)
        if clip_value is not None:
            optim.clip_grad_value(grads, clip_value)
        optimizer.step(self.named_parameters(), grads)
        return StepResult(value, norm, new_state)

    def evaluate(self, x: ArrayLike, target: ArrayLike, *, loss: str = "mse") -> float:
        """The loss on ``(x, target)`` in inference mode (training mode is restored)."""
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
        meant for diagnostics on moderate T). Unidirectional models only; the model's weights
        and mode are left as they were.
        """
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
        """One-to-many generation with an embedding model: run the ``prime`` ids ``(T0,)``, then
        sample ``steps`` ids one at a time from softmax(logits / temperature) (0 = argmax),
        feeding each back as the next input and carrying the state."""
        if self.embedding is None or self.many_to_one:
            raise ValueError("generate: needs a many-to-many model with an embedding (token ids)")
        if temperature < 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature: expected a finite number >= 0, got {temperature}")
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

    # ---- files ------------------------------------------------------------------------------

    def save(
        self, path: str | Path, optimizer: optim.Optimizer | None = None, **extra: Any
    ) -> None:
        """One ``.npz``: configuration, weights, optimizer state (if given) and ``extra`` JSON
        values (e.g. a vocabulary)."""
        arrays: dict[str, Array] = {f"param/{k}": v for k, v in self.named_parameters().items()}
        meta: dict[str, Any] = {"format": _FORMAT, "config": self.config, "extra": extra}
        if optimizer is not None:
            sd = optimizer.state_dict()
            meta["optimizer"] = {k: sd[k] for k in ("type", "defaults", "steps")}
            for name, st in sd["state"].items():
                for key, a in st.items():
                    arrays[f"opt/{name}/{key}"] = np.asarray(a)
        arrays["meta"] = np.array(json.dumps(meta))
        with open(path, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> tuple[SequenceModel, optim.Optimizer | None, dict[str, Any]]:
        """``(model, optimizer or None, extra)`` from a file of :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = _read_meta(z, path)
            _check_sizes(meta["config"], z, path)  # before any array of those sizes is made
            try:
                model = cls(**meta["config"])
            except TypeError as e:  # a key the constructor does not take
                raise ValueError(f"path: {path}: a bad config ({e})") from None
            model.load_state_dict(
                {k[len("param/") :]: z[k] for k in z.files if k.startswith("param/")}
            )
            opt: optim.Optimizer | None = None
            if "optimizer" in meta:
                o = meta["optimizer"]
                opt = optim.SGD() if o["type"] == "SGD" else optim.Adam()
                state: dict[str, dict[str, Any]] = {}
                for k in z.files:
                    if k.startswith("opt/"):
                        name, key = k[4:].rsplit("/", 1)
                        state.setdefault(name, {})[key] = z[k]
                defaults = dict(o["defaults"])
                if "betas" in defaults:
                    defaults["betas"] = tuple(defaults["betas"])
                opt.load_state_dict({**o, "defaults": defaults, "state": state})
        return model, opt, meta["extra"]
