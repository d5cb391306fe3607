"""What the training kit's models share: a model made of named parts (:class:`Composite`).

:class:`~fastrnn.SequenceModel` and :class:`~fastrnn.Seq2Seq` are each a list of named
:class:`~fastrnn.module.Module` parts (``rnn``, ``head``; ``encoder``, ``attention``, ...). Their
parameters and gradients go under dotted names (``encoder.weight_ih_l0``), their state_dict round
trip checks every name and lets each part check its entries, and one training step's clipping and
optimizer update are stated here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from numpy.typing import NDArray

from . import optim

__all__ = ["Composite"]

Array = NDArray[Any]


class Composite:
    """A model of named parts; subclasses define :meth:`_parts`."""

    #: the gradients of the last backward, by dotted name
    grads: dict[str, Array]

    def _parts(self) -> list[tuple[str, Any]]:
        """``(name, Module)`` of every part, in the order of the parameters."""
        raise NotImplementedError

    def named_parameters(self) -> dict[str, Array]:
        """The live arrays under dotted names (``part.parameter``); optimizers update them in
        place."""
        return {f"{p}.{k}": v for p, m in self._parts() for k, v in m.named_parameters()}

    def state_dict(self) -> dict[str, Array]:
        """Copies of all parameters under their dotted names."""
        return {k: v.copy() for k, v in self.named_parameters().items()}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Load the parameters of :meth:`state_dict`: exactly its names (else a ValueError
        listing the missing and unexpected ones), each entry checked by its part (an error
        names the part and the entry: ``"rnn: state_dict['weight_ih_l0']: ..."``)."""
        if not isinstance(sd, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(sd).__name__}")
        want = set(self.named_parameters())
        if set(sd) != want:
            raise ValueError(
                f"state_dict: missing {sorted(want - set(sd))}, unexpected {sorted(set(sd) - want)}"
            )
        for p, m in self._parts():
            try:
                m.load_state_dict(
                    {k[len(p) + 1 :]: v for k, v in sd.items() if k.startswith(p + ".")}
                )
            except (TypeError, ValueError) as e:
                raise type(e)(f"{p}: {e}") from None

    def _gather_grads(self) -> dict[str, Array]:
        """The parts' gradients of the last backward under dotted names, kept in :attr:`grads`."""
        self.grads = {f"{p}.{k}": v for p, m in self._parts() for k, v in m.grads.items()}
        return self.grads

    def _update(
        self, optimizer: optim.Optimizer, clip_norm: float | None, clip_value: float | None
    ) -> float:
        """A training step's end: :attr:`grads` clipped to the global norm ``clip_norm``, then
        each value to ``clip_value`` (None: not), and one step of ``optimizer``; returns the
        gradients' global norm before clipping."""
        if clip_norm is not None:
            norm = optim.clip_grad_norm(self.grads, clip_norm)
        else:
            norm = optim.global_norm(self.grads)
        if clip_value is not None:
            optim.clip_grad_value(self.grads, clip_value)
        optimizer.step(self.named_parameters(), self.grads)
        return norm
