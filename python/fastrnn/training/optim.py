"""Optimizers and gradient clipping over named parameter arrays, updated in place.

The optimizers keep their state by parameter name, so they work with any set of arrays (a layer's
:meth:`~fastrnn.module.Module.named_parameters`, or a model's): ``opt.step(params, grads)`` with two
mappings from names to arrays. Each array's update is one fused pass in the compiled core (float32
or float64) and gives PyTorch's numbers: :class:`SGD` is ``torch.optim.SGD`` (momentum, dampening,
Nesterov, weight decay), :class:`Adam` is ``torch.optim.Adam`` (bias-corrected, weight decay added
to the gradient), i.e. the notes' ``m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .. import functional as F
from .._args import check_bool, check_int, check_real, float_array

__all__ = ["SGD", "Adam", "Optimizer", "clip_grad_norm", "clip_grad_value", "global_norm"]

Array = NDArray[Any]


def _nonneg(name: str, v: Any) -> float:
    return check_real(name, v, 0.0)


def _betas(betas: Any) -> tuple[float, float]:
    """Adam's two decay rates, each in [0, 1)."""
    ok = isinstance(betas, (Sequence, np.ndarray)) and not isinstance(betas, (str, bytes))
    if not ok or len(betas) != 2:
        raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
    b1, b2 = (check_real("betas", b, 0.0) for b in betas)
    if b1 >= 1 or b2 >= 1:
        raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
    return b1, b2


def _pairs(
    params: Mapping[str, Array], grads: Mapping[str, Array]
) -> list[tuple[str, Array, Array]]:
    missing = [k for k in params if k not in grads]
    if missing:
        raise ValueError(f"grads: no gradient for {missing}")
    out = []
    for k, p in params.items():
        g = grads[k]
        if not isinstance(p, np.ndarray) or not isinstance(g, np.ndarray):
            raise TypeError(f"params[{k!r}], grads[{k!r}]: expected numpy arrays")
        if g.shape != p.shape:
            raise ValueError(f"grads[{k!r}]: expected shape {p.shape}, got {g.shape}")
        if g.dtype != p.dtype:
            raise TypeError(f"grads[{k!r}]: expected dtype {p.dtype}, got {g.dtype}")
        if not p.flags.c_contiguous or not p.flags.writeable:
            raise ValueError(f"params[{k!r}]: must be a writeable C-contiguous array")
        out.append((k, p, np.ascontiguousarray(g)))
    return out


class Optimizer:
    """What :class:`SGD` and :class:`Adam` share: the state by parameter name, and its
    :meth:`Optimizer.state_dict` / :meth:`Optimizer.load_state_dict` round trip (to resume
    training).
    """

    #: per parameter name, its slots (:attr:`SLOTS`), made at its first update
    state: dict[str, dict[str, Any]]
    #: the hyper-parameters, as the constructor took them
    defaults: dict[str, Any]
    #: the number of :meth:`step` calls so far
    steps: int
    #: the slots of one parameter's state (it has all of them or none), each with its kind:
    #: ``"moment"`` (a finite float array of the parameter's shape and dtype), ``"square"`` (the
    #: same, >= 0) or ``"count"`` (an int64 scalar, the steps that updated it, 1 to
    #: :attr:`~Optimizer.steps`)
    SLOTS: ClassVar[dict[str, str]] = {}

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        """Update every array of ``params`` in place from its gradient (one fused pass per array
        in the compiled core); :attr:`steps` counts the calls.

        Args:
            params: name -> parameter array, writeable and C-contiguous, float32 or float64
                (a model's ``named_parameters()``).
            grads: name -> gradient, of its parameter's shape and dtype, for every name of
                ``params`` (more names are ignored).

        Raises:
            ValueError: a parameter without its gradient, a gradient of another shape, or a
                parameter not writeable and C-contiguous.
            TypeError: a value not a NumPy array, or a gradient of another dtype.
        """
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` restores: ``{"type": "SGD" or "Adam", "defaults": the
        hyper-parameters, "steps": the step count, "state": per parameter name its slots}``, the
        arrays copies."""
        return {
            "type": type(self).__name__,
            "defaults": dict(self.defaults),
            "steps": self.steps,
            "state": {k: {n: np.copy(a) for n, a in s.items()} for k, s in self.state.items()},
        }

    def load_state_dict(
        self, sd: Mapping[str, Any], params: Mapping[str, Array] | None = None
    ) -> None:
        """Restore what :meth:`state_dict` returned (to resume training); everything is
        checked before the optimizer changes.

        Args:
            sd: a :meth:`state_dict` of an optimizer of this type: its hyper-parameters, by the
                constructor's rules (exactly the keys of :attr:`defaults`); the step count (an
                int >= 0); each parameter's state (:attr:`SLOTS`: finite float arrays of one
                shape and dtype, step counts in ``[1, steps]``).
            params: the arrays being optimised, by name, or None; if given, each state must
                name one of them and have its shape and dtype.

        Raises:
            ValueError: an entry that breaks these rules (its name in the message), or a
                ``state_dict`` saved by another optimizer type.
            TypeError: an entry of the wrong type (``sd`` not a mapping, a step count not an
                integer, an array not float).
        """
        if not isinstance(sd, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(sd).__name__}")
        if set(sd) != {"type", "defaults", "steps", "state"}:
            raise ValueError(
                f"state_dict: expected the keys ['defaults', 'state', 'steps', 'type'], got "
                f"{sorted(map(str, sd))}"
            )
        if sd["type"] != type(self).__name__:
            raise ValueError(f"state_dict: saved by {sd['type']}, not {type(self).__name__}")
        defaults = self._checked_defaults(sd["defaults"])
        steps = check_int("state_dict['steps']", sd["steps"], 0)
        state = _checked_state(sd["state"], self.SLOTS, steps, params)
        self.defaults, self.steps, self.state = defaults, steps, state

    def _checked_defaults(self, defaults: Any) -> dict[str, Any]:
        """Hyper-parameters as the constructor takes and checks them."""
        if not isinstance(defaults, Mapping) or set(defaults) != set(self.defaults):
            got = sorted(map(str, defaults)) if isinstance(defaults, Mapping) else defaults
            raise ValueError(
                f"state_dict['defaults']: expected the keys {sorted(self.defaults)}, got {got!r}"
            )
        return type(self)(**defaults).defaults

    @staticmethod
    def from_state_dict(
        sd: Mapping[str, Any], params: Mapping[str, Array] | None = None
    ) -> Optimizer:
        """A new optimizer of the type ``sd`` names with the hyper-parameters and the state of
        ``sd``.

        Args:
            sd: a :meth:`state_dict` of an :class:`SGD` or an :class:`Adam`.
            params: as in :meth:`load_state_dict`.

        Returns:
            The :class:`SGD` or :class:`Adam`.

        Raises:
            ValueError: ``sd["type"]`` is not ``"SGD"`` or ``"Adam"`` (or ``sd`` has none), or
                ``sd`` breaks a rule of :meth:`load_state_dict`.
            TypeError: as in :meth:`load_state_dict`.
        """
        kind = sd.get("type") if isinstance(sd, Mapping) else None
        types: dict[Any, type[Optimizer]] = {"SGD": SGD, "Adam": Adam}
        if kind not in types:
            raise ValueError(f"state_dict['type']: expected 'SGD' or 'Adam', got {kind!r}")
        opt = types[kind]()
        opt.load_state_dict(sd, params)
        return opt


def _checked_state(
    state: Any, slots: dict[str, str], steps: int, params: Mapping[str, Array] | None
) -> dict[str, dict[str, Array]]:
    """The per-parameter state of a state_dict, checked and copied."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state_dict['state']: expected a mapping, got {type(state).__name__}")
    out = {}
    for name, st in state.items():
        what = f"state_dict['state'][{name!r}]"
        if params is not None and name not in params:
            raise ValueError(f"{what}: there is no parameter of that name")
        like = None if params is None else params[name]
        out[name] = _checked_slots(what, st, slots, steps, like)
    return out


def _checked_slots(
    what: str, st: Any, slots: dict[str, str], steps: int, like: Array | None
) -> dict[str, Array]:
    """One parameter's state: all of ``slots`` or none, each by the rule of its kind."""
    if not isinstance(st, Mapping) or (st and set(st) != set(slots)):
        got = sorted(map(str, st)) if isinstance(st, Mapping) else type(st).__name__
        raise ValueError(f"{what}: expected the slots {sorted(slots)} (or none), got {got}")
    out: dict[str, Array] = {}
    for key, v in st.items():
        name = f"{what}[{key!r}]"
        if slots[key] == "count":
            out[key] = _count(name, v, steps)
            continue
        a = float_array(name, v)
        like = a if like is None else like
        if a.shape != like.shape or a.dtype != like.dtype:
            raise ValueError(
                f"{name}: expected shape {like.shape} and dtype {like.dtype}, got {a.shape} and "
                f"{a.dtype}"
            )
        if not np.isfinite(a).all() or (slots[key] == "square" and (a < 0).any()):
            raise ValueError(f"{name}: expected finite values{' >= 0' * (slots[key] == 'square')}")
        out[key] = np.array(a, order="C", copy=True)
    return out


def _count(name: str, v: Any, steps: int) -> Array:
    """A step count slot: an integer scalar in [1, steps], as an int64 0-d array."""
    a = np.asarray(v)
    if a.shape != () or a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer scalar, got {a.dtype} {a.shape}")
    if not 1 <= int(a) <= steps:
        raise ValueError(f"{name}: expected a step count in [1, {steps}] (the steps taken)")
    return np.array(int(a), np.int64)


class SGD(Optimizer):
    """``torch.optim.SGD``: ``p -= lr * d`` with momentum buffers ``buf = m*buf + (1-damp)*g``.

    ``g`` is the gradient plus ``weight_decay * p``; ``d`` is ``g`` without momentum, ``buf``
    with it (``buf = g`` at a parameter's first step), ``g + momentum * buf`` with Nesterov.

    Args:
        lr: the learning rate (>= 0).
        momentum: the momentum factor (>= 0; 0: no buffer).
        dampening: the dampening of the momentum (>= 0).
        weight_decay: the L2 penalty added to the gradient (>= 0).
        nesterov: Nesterov momentum (needs a momentum and zero dampening).

    Raises:
        TypeError: a hyper-parameter not a real number, ``nesterov`` not a bool.
        ValueError: a negative or non-finite hyper-parameter, or ``nesterov`` without momentum
            or with dampening.
    """

    SLOTS: ClassVar[dict[str, str]] = {"momentum_buffer": "moment"}

    def __init__(
        self,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        self.defaults = {
            "lr": _nonneg("lr", lr),
            "momentum": _nonneg("momentum", momentum),
            "dampening": _nonneg("dampening", dampening),
            "weight_decay": _nonneg("weight_decay", weight_decay),
            "nesterov": check_bool("nesterov", nesterov),
        }
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov: requires a momentum and zero dampening")
        self.state = {}
        self.steps = 0

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        """One SGD update of every array of ``params`` in place (arguments and errors:
        :meth:`Optimizer.step`)."""
        d = self.defaults
        for k, p, g in _pairs(params, grads):
            st = self.state.setdefault(k, {})
            first = "momentum_buffer" not in st
            buf = None
            if d["momentum"] != 0:
                if first:
                    st["momentum_buffer"] = np.empty_like(p)
                buf = st["momentum_buffer"]
            F.sgd_update(p, g, buf, d["lr"], d["momentum"], d["dampening"],
                             d["weight_decay"], d["nesterov"], first)  # fmt: skip
        self.steps += 1


class Adam(Optimizer):
    """``torch.optim.Adam`` (no amsgrad): bias-corrected first and second moments.

    ``p -= lr * m_hat / (sqrt(v_hat) + eps)``, ``m_hat = m / (1 - b1^t)`` and ``v_hat = v / (1 -
    b2^t)`` for the moments ``m`` and ``v`` of the gradient plus ``weight_decay * p``, ``t`` the
    parameter's step count.

    Args:
        lr: the learning rate (>= 0).
        betas: ``(b1, b2)``, the decay rates of the first and second moments, each in
            ``[0, 1)``.
        eps: added to the denominator (>= 0).
        weight_decay: the L2 penalty added to the gradient (>= 0).

    Raises:
        TypeError: a hyper-parameter not a real number.
        ValueError: a negative or non-finite hyper-parameter, or ``betas`` not two numbers in
            ``[0, 1)``.
    """

    SLOTS: ClassVar[dict[str, str]] = {"exp_avg": "moment", "exp_avg_sq": "square", "step": "count"}

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        b1, b2 = _betas(betas)
        self.defaults = {
            "lr": _nonneg("lr", lr),
            "betas": (b1, b2),
            "eps": _nonneg("eps", eps),
            "weight_decay": _nonneg("weight_decay", weight_decay),
        }
        self.state = {}
        self.steps = 0

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        """One Adam update of every array of ``params`` in place (arguments and errors:
        :meth:`Optimizer.step`)."""
        d = self.defaults
        b1, b2 = d["betas"]
        for k, p, g in _pairs(params, grads):
            st = self.state.setdefault(k, {})
            if "exp_avg" not in st:
                st["exp_avg"] = np.zeros_like(p)
                st["exp_avg_sq"] = np.zeros_like(p)
                st["step"] = np.zeros((), np.int64)
            st["step"] += 1
            F.adam_update(p, g, st["exp_avg"], st["exp_avg_sq"], d["lr"], b1, b2,
                              d["eps"], d["weight_decay"], int(st["step"]))  # fmt: skip
        self.steps += 1


def _arrays(grads: Iterable[Array] | Mapping[str, Array]) -> list[Array]:
    items = list(grads.values()) if isinstance(grads, Mapping) else list(grads)
    for g in items:
        if not isinstance(g, np.ndarray) or g.dtype not in (np.float32, np.float64):
            raise TypeError("grads: expected float32 or float64 numpy arrays")
        if not g.flags.c_contiguous or not g.flags.writeable:
            raise ValueError("grads: arrays must be writeable and C-contiguous")
    return items


def global_norm(grads: Iterable[Array] | Mapping[str, Array]) -> float:
    """The 2-norm of all the arrays together, as if concatenated (summed in double).

    Args:
        grads: float32 or float64 arrays, C-contiguous, or a mapping of them (a model's
            ``grads``).

    Returns:
        The norm (0.0 for no arrays).

    Raises:
        TypeError: an item not a float32 or float64 NumPy array.
        ValueError: an array not writeable and C-contiguous.
    """
    return math.sqrt(sum(F.sum_squares(g) for g in _arrays(grads)))


def clip_grad_norm(
    grads: Iterable[Array] | Mapping[str, Array], max_norm: float, norm_type: float = 2.0
) -> float:
    """Scale the gradients in place so that their global norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``: by ``max_norm / (norm + 1e-6)`` when that is below 1.

    A NaN norm turns every gradient into NaN and an infinite one zeroes them, as PyTorch does
    (check the returned norm to skip such a step).

    Args:
        grads: the arrays (or a mapping of them), as in :func:`global_norm`.
        max_norm: the largest norm kept (>= 0).
        norm_type: 2 (the 2-norm of all the arrays together) or ``math.inf`` (the largest
            absolute value).

    Returns:
        The norm before clipping.

    Raises:
        TypeError: as in :func:`global_norm`, or ``max_norm`` not a real number.
        ValueError: as in :func:`global_norm`, ``max_norm`` negative or not finite, or
            ``norm_type`` neither 2 nor inf.
    """
    items = _arrays(grads)
    max_norm = _nonneg("max_norm", max_norm)
    if norm_type == 2:
        total = global_norm(items)
    elif norm_type == math.inf:
        total = max((F.max_abs(g) for g in items), default=0.0)
    else:
        raise ValueError(f"norm_type: expected 2 or inf, got {norm_type!r}")
    coef = max_norm / (total + 1e-6)
    if coef < 1 or math.isnan(coef):  # as torch: a NaN norm makes every gradient NaN
        for g in items:
            F.scale_(g, coef)
    return total


def clip_grad_value(grads: Iterable[Array] | Mapping[str, Array], clip_value: float) -> float:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` in place.

    Args:
        grads: the arrays (or a mapping of them), as in :func:`global_norm`.
        clip_value: the largest absolute value kept (>= 0).

    Returns:
        The global 2-norm before clipping.

    Raises:
        TypeError: as in :func:`global_norm`, or ``clip_value`` not a real number.
        ValueError: as in :func:`global_norm`, or ``clip_value`` negative or not finite.
    """
    items = _arrays(grads)
    c = _nonneg("clip_value", clip_value)
    total = global_norm(items)
    for g in items:
        F.clamp_(g, c)
    return total
