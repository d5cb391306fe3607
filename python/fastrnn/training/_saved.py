"""The file of a training-kit model (:class:`~fastrnn.SequenceModel`, :class:`~fastrnn.Seq2Seq`):
one ``.npz`` of configuration, weights, optimizer state and extra JSON values, written by
:func:`save` and read as untrusted input by :func:`load`. The format is stated here once; each
model describes itself with a :class:`ModelFormat` (its format string, its config rules and the
parameter shapes a config declares).

The archive (read by :class:`~fastrnn._files.NpzReader`) holds ``meta``, a JSON object
``{"format", "config", "extra"[, "optimizer"]}``; ``param/<name>`` for every parameter the config
declares; ``opt/<name>/<slot>`` for the optimizer's state. The header and the config are checked,
and the shapes the config declares against the arrays' headers, before anything is read or a
model made; every problem is a ValueError naming the file.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from .._files import NpzReader
from . import optim

__all__ = ["ModelFormat", "load", "save"]

Array = NDArray[Any]
#: the keys of a saved model's JSON header ("optimizer" only with an optimizer's state)
_META_KEYS = ("format", "config", "extra", "optimizer")


def _no_extra_rule(config: Mapping[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return extra


def _trains(config: Mapping[str, Any]) -> bool:
    return False


@dataclass(frozen=True)
class ModelFormat:
    """What a model's file declares of it.

    Attributes:
        kind: the class's name, as the errors say it (``"not a fastrnn SequenceModel file"``).
        format: the header's ``format`` string (``"fastrnn.SequenceModel/1"``).
        check_config: the constructor's rules: every constructor argument -> the checked
            config (a TypeError or ValueError for a bad one). Its result has a ``num_layers``
            (bounded by the arrays held before :attr:`param_shapes` is asked).
        param_shapes: a checked config -> every parameter's name and shape.
        check_extra: ``(config, extra) -> extra``: the rules of the model's extra values (a
            ValueError or TypeError saying the problem; the file's error names the file).
        inference_only: whether a config's model cannot train (its file holds no optimizer).
        added_keys: config keys added after files of the format were first written, and the
            value a file without one stands for.
    """

    kind: str
    format: str
    check_config: Callable[[Mapping[str, Any]], dict[str, Any]]
    param_shapes: Callable[[Mapping[str, Any]], dict[str, tuple[int, ...]]]
    check_extra: Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]] = field(
        default=_no_extra_rule
    )
    inference_only: Callable[[Mapping[str, Any]], bool] = field(default=_trains)
    added_keys: Mapping[str, Any] = field(default_factory=dict)


class _Model(Protocol):
    def load_state_dict(self, sd: Mapping[str, Any]) -> None: ...
    def named_parameters(self) -> dict[str, Array]: ...


_M = TypeVar("_M", bound=_Model)


def save(
    path: str | os.PathLike[str],
    fmt: ModelFormat,
    config: Mapping[str, Any],
    params: Mapping[str, Array],
    optimizer: optim.Optimizer | None,
    extra: Mapping[str, Any],
) -> None:
    """Write a model's file: its ``config`` (JSON values), ``params`` by name, the optimizer's
    state (if given) and ``extra`` (JSON values)."""
    arrays: dict[str, Array] = {f"param/{k}": v for k, v in params.items()}
    meta: dict[str, Any] = {"format": fmt.format, "config": dict(config), "extra": dict(extra)}
    if optimizer is not None:
        sd = optimizer.state_dict()
        meta["optimizer"] = {k: sd[k] for k in ("type", "defaults", "steps")}
        for name, st in sd["state"].items():
            for key, a in st.items():
                arrays[f"opt/{name}/{key}"] = np.asarray(a)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def load(
    cls: Callable[..., _M], path: str | os.PathLike[str] | Path, fmt: ModelFormat
) -> tuple[_M, optim.Optimizer | None, dict[str, Any]]:
    """``(model, optimizer or None, extra)`` from a file of :func:`save`: the model made by
    ``cls(**config)`` once the file has been checked, its parameters loaded, the optimizer (with
    its state) if one was saved. Every problem of the file is a ValueError naming it; a path that
    cannot be opened keeps its OSError (FileNotFoundError, IsADirectoryError)."""
    saved = _SavedFile(path, fmt, inspect.signature(cls))
    try:
        model = cls(**saved.config)
        model.load_state_dict(saved.params)
    except (TypeError, ValueError) as e:
        raise saved.error(str(e)) from None
    if saved.optimizer is None:
        return model, None, saved.extra
    try:
        opt = optim.Optimizer.from_state_dict(saved.optimizer, model.named_parameters())
    except (TypeError, ValueError) as e:
        raise saved.error(f"optimizer: {e}") from None
    return model, opt, saved.extra


class _SavedFile:
    """A model's file, read as untrusted input (the module's format)."""

    def __init__(
        self, path: str | os.PathLike[str], fmt: ModelFormat, signature: inspect.Signature
    ) -> None:
        self._fmt = fmt
        with NpzReader(path, f"path: {os.fspath(path)}") as npz:
            self._npz = npz
            meta = self._meta()
            self.config = self._config(meta["config"], signature)
            if "optimizer" in meta and fmt.inference_only(self.config):
                raise self.error("an int8 model (inference-only) with an optimizer's state")
            self._check_members(self._check_shapes(), "optimizer" in meta)
            try:
                self.extra: dict[str, Any] = fmt.check_extra(self.config, meta["extra"])
            except (TypeError, ValueError) as e:
                raise self.error(str(e)) from None
            self.params = self._arrays("param/")
            state: dict[str, dict[str, Any]] = {}
            for k, a in self._arrays("opt/").items():
                name, slot = k.rsplit("/", 1)
                state.setdefault(name, {})[slot] = a
            o = meta.get("optimizer")
            self.optimizer = None if o is None else {**o, "state": state}

    def error(self, problem: str) -> ValueError:
        return self._npz.error(problem)

    def _meta(self) -> dict[str, Any]:
        """The JSON header: an object of this format, with a config and extra objects."""
        not_ours = f"not a fastrnn {self._fmt.kind} file"
        m = self._npz.members.get("meta")
        if m is None or m.shape != () or m.dtype.kind != "U":
            what = "no 'meta'" if m is None else f"'meta' is {m.dtype} {m.shape}, not a string"
            raise self.error(f"{not_ours} ({what})")
        try:
            meta = json.loads(str(self._npz.read("meta")))
        except (ValueError, RecursionError) as e:
            raise self.error(f"{not_ours} ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != self._fmt.format:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise self.error(f"{not_ours} ({got})")
        for key in ("config", "extra", "optimizer"):
            if not isinstance(meta.get(key, {}), dict):
                raise self.error(f"its {key} is not a JSON object")
        if "state" in meta.get("optimizer", {}):  # the arrays hold it
            raise self.error("its optimizer header holds a 'state'")
        if set(meta) - set(_META_KEYS) or "config" not in meta or "extra" not in meta:
            raise self.error(f"its header has the keys {sorted(meta)}, expected {list(_META_KEYS)}")
        return meta

    def _config(self, cfg: dict[str, Any], signature: inspect.Signature) -> dict[str, Any]:
        """The config, checked by the constructor's rules (its keys: the constructor's
        arguments)."""
        params = signature.parameters
        unknown = sorted(set(cfg) - set(params))
        missing = sorted(k for k, p in params.items() if p.default is p.empty and k not in cfg)
        if unknown or missing:
            raise self.error(f"a bad config (unknown keys {unknown}, missing keys {missing})")
        try:
            given = {**self._fmt.added_keys, **cfg}
            config = self._fmt.check_config({k: given.get(k, p.default) for k, p in params.items()})
        except (TypeError, ValueError) as e:
            raise self.error(f"a bad config ({e})") from None
        return config

    def _check_shapes(self) -> set[str]:
        """The parameter shapes the config declares against the arrays' headers (before the
        arrays are read or a model made); the parameters' names."""
        held = sum(k.startswith("param/") for k in self._npz.members)
        if self.config["num_layers"] > held:  # bounds the spec's size by the file's
            raise self.error(
                f"its config declares {self.config['num_layers']} layers, it holds {held} arrays"
            )
        shapes = self._fmt.param_shapes(self.config)
        for name, shape in shapes.items():
            m = self._npz.members.get(f"param/{name}")
            got = None if m is None else m.shape
            if got != shape:
                raise self.error(f"{name} has shape {got}, its config says {shape}")
        return set(shapes)

    def _check_members(self, names: set[str], has_optimizer: bool) -> None:
        """No array the format does not have: ``param/`` of the config's parameters, ``opt/``
        only with an optimizer (its names and slots are the optimizer's to check)."""
        for k in self._npz.members:
            kind, _, rest = k.partition("/")
            ok = k == "meta" or (kind == "param" and rest in names)
            ok = ok or (kind == "opt" and has_optimizer and "/" in rest)
            if not ok:
                raise self.error(f"an array the format does not have: {k!r}")

    def _arrays(self, prefix: str) -> dict[str, Any]:
        """The arrays under ``prefix`` (their sizes checked: bounded by the file's)."""
        return {
            k[len(prefix) :]: self._npz.read(k) for k in self._npz.members if k.startswith(prefix)
        }
