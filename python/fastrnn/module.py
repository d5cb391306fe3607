"""What every fastrnn layer has: :class:`Module`, parameters by name, their state_dict round trip,
training and inference modes, and gradients filled by an explicit ``backward``.

The recurrent layers (:mod:`fastrnn.layers`) and the training kit's layers
(:mod:`fastrnn.training.nn`) are Modules; they differ only in their parameters' shapes
(:meth:`Module.param_shapes`), their initialisation and their forward and backward.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from ._args import float_array

__all__ = ["Module"]

Array = NDArray[Any]
_M = TypeVar("_M", bound="Module")


class Module:
    """Parameters by name (PyTorch's names and shapes), ``state_dict`` round trip, train/eval.

    Not made directly: subclasses set :attr:`dtype`, fill ``_params`` (name -> array, in
    PyTorch's order) and define :meth:`param_shapes`. A parameter is also an attribute:
    ``layer.weight_ih_l0`` reads it, and assigning one replaces it, checked and copied as an
    entry of :meth:`load_state_dict`.
    """

    #: the dtype of the parameters, float32 or float64
    dtype: np.dtype[Any]
    #: whether in training mode (the default), where forward saves what backward needs
    training: bool = True
    #: the gradients of the last backward, by parameter name (replaced, not accumulated)
    grads: dict[str, Array]
    _params: dict[str, Array]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, in PyTorch's order."""
        raise NotImplementedError

    def named_parameters(self) -> Iterator[tuple[str, Array]]:
        """The live parameter arrays (modifying them in place modifies the layer; optimizers
        update them in place).

        Returns:
            An iterator of ``(name, array)`` in :meth:`param_shapes`' order.
        """
        yield from self._params.items()

    def state_dict(self) -> dict[str, Array]:
        """Copies of the parameters under PyTorch's names."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load parameters saved by :meth:`state_dict` or by the matching ``torch.nn`` module.

        Args:
            state_dict: every name of :meth:`param_shapes` and no other, each with an array or
                torch tensor of its shape (float32 or float64; copied and converted to the
                layer's dtype).

        Raises:
            TypeError: ``state_dict`` is not a mapping, or a value is not float.
            ValueError: missing or unexpected keys, a value of another shape, or one holding NaN
                or infinity.

        Each error names the entry; the layer is unchanged then.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        shapes = self.param_shapes()
        missing = [k for k in shapes if k not in state_dict]
        unexpected = [k for k in state_dict if k not in shapes]
        if missing or unexpected:
            raise ValueError(
                f"state_dict: missing keys {missing}, unexpected keys {unexpected} "
                f"(expected exactly {list(shapes)})"
            )
        new = {
            name: self._checked_param(f"state_dict[{name!r}]", state_dict[name], shape)
            for name, shape in shapes.items()
        }
        # new arrays, not in-place: a pending backward keeps the weights its forward used
        self._params = new

    def _checked_param(self, what: str, value: Any, shape: tuple[int, ...]) -> Array:
        """A new parameter value (an array or tensor) checked (float dtype, shape, finite) and
        copied in the layer's dtype: the rule of load_state_dict and of assignment."""
        v = float_array(what, value)
        if v.shape != shape:
            raise ValueError(f"{what}: expected shape {shape}, got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{what}: contains NaN or infinity")
        return np.array(v, dtype=self.dtype, order="C", copy=True)

    def __setattr__(self, name: str, value: Any) -> None:
        """Assigning a parameter (``layer.weight_hh_l0 = w``) replaces it, checked and copied like
        an entry of :meth:`load_state_dict` (the forward and ``state_dict()`` use it); anything
        else is an ordinary attribute."""
        params = None if name[0] == "_" else self.__dict__.get("_params")  # "_": never a param
        if params is not None and name in params:
            shape = self.param_shapes()[name]
            self._params = {**params, name: self._checked_param(name, value, shape)}
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Array:
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]  # type: ignore[no-any-return]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def train(self: _M, mode: bool = True) -> _M:
        """Training mode (the default): forward saves what backward needs (and dropout is
        active where a layer has it).

        Args:
            mode: False is :meth:`eval`.

        Returns:
            The module itself.
        """
        self.training = bool(mode)
        return self

    def eval(self: _M) -> _M:
        """Inference mode: forward saves nothing (backward is unavailable), no dropout.

        Returns:
            The module itself.
        """
        return self.train(False)
