"""Optimizers and gradient clipping over named parameter arrays, updated in place.

The optimizers keep their state by parameter name, so they work with any set of arrays (a
layer's :meth:`named_parameters`, or a model's): ``opt.step(params, grads)`` with two mappings
from names to arrays. Each array's update is one fused pass in the compiled core (float32 or
float64) and gives PyTorch's numbers: :class:`SGD` is ``torch.optim.SGD`` (momentum, dampening,
Nesterov, weight decay), :class:`Adam` is ``torch.optim.Adam`` (bias-corrected, weight decay added
to the gradient), i.e. the notes' ``m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import functional as F

__all__ = ["SGD", "Adam", "Optimizer", "clip_grad_norm", "clip_grad_value", "global_norm"]

Array = NDArray[Any]


def _nonneg(name: str, v: Any) -> float:
    f = float(v)
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
    return f


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
    """Common machinery: state by name, ``state_dict`` / ``load_state_dict``."""

    state: dict[str, dict[str, Any]]
    defaults: dict[str, Any]
    steps: int

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        """Update every array of ``params`` in place from ``grads`` (same names and shapes)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, step count and per-parameter state (copies), for saving."""
        return {
            "type": type(self).__name__,
            "defaults": dict(self.defaults),
            "steps": self.steps,
            "state": {k: {n: np.copy(a) for n, a in s.items()} for k, s in self.state.items()},
        }

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (to resume training)."""
        if sd.get("type") != type(self).__name__:
            raise ValueError(f"state_dict: saved by {sd.get('type')}, not {type(self).__name__}")
        self.defaults.update(sd["defaults"])
        self.steps = int(sd["steps"])
        self.state = {k: {n: np.array(a) for n, a in s.items()} for k, s in sd["state"].items()}


class SGD(Optimizer):
    """``torch.optim.SGD``: ``p -= lr * d`` with momentum buffers ``buf = m*buf + (1-damp)*g``."""

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
            "nesterov": bool(nesterov),
        }
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov: requires a momentum and zero dampening")
        self.state = {}
        self.steps = 0

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
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
    """``torch.optim.Adam`` (no amsgrad): bias-corrected first and second moments."""

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        b1, b2 = (float(b) for b in betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        self.defaults = {
            "lr": _nonneg("lr", lr),
            "betas": (b1, b2),
            "eps": _nonneg("eps", eps),
            "weight_decay": _nonneg("weight_decay", weight_decay),
        }
        self.state = {}
        self.steps = 0

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
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
    """The 2-norm of all the arrays together (summed in double)."""
    return math.sqrt(sum(F.sum_squares(g) for g in _arrays(grads)))


def clip_grad_norm(
    grads: Iterable[Array] | Mapping[str, Array], max_norm: float, norm_type: float = 2.0
) -> float:
    """Scale the gradients in place so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: factor ``max_norm / (norm + 1e-6)`` when below 1;
    ``norm_type`` 2 or ``inf``. Returns the norm before clipping; a NaN norm turns every
    gradient into NaN and an infinite one zeroes them, as PyTorch does (check the returned norm
    to skip such a step).
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
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` in place; returns the global
    2-norm before clipping."""
    items = _arrays(grads)
    c = _nonneg("clip_value", clip_value)
    total = global_norm(items)
    for g in items:
        F.clamp_(g, c)
    return total
