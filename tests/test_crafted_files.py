"""Crafted or damaged files: a ValueError naming the file and the problem, checked before
anything of the declared sizes is allocated (not AttributeError, IndexError, KeyError,
DecodeError or MemoryError), for every entry point that reads a file a user may get from someone
else: ``SequenceModel.load``, ``fastrnn.onnx.load``, ``text.load_text`` (and ``fastrnn demo
--text``), and the optimizer state they restore."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastrnn
import fastrnn.onnx
from fastrnn import convert
from fastrnn.tools import cli
from fastrnn.training import optim, text

Arrays = dict[str, Any]

# ------------------------------------------------------------------------------------ helpers


@contextmanager
def bounded(mb: float = 20.0) -> Iterator[None]:
    """Asserts that the block allocates (traced by tracemalloc, as NumPy's arrays are) at most
    ``mb`` megabytes at its peak: a crafted size must be refused before it is allocated."""
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < mb * 1e6, f"allocated {peak / 1e6:.0f} MB"


def raises_naming(path: Path, problem: str, error: type[Exception] = ValueError) -> Any:
    """pytest.raises for an error whose message starts with the file and then says the problem
    (a regular expression)."""
    return pytest.raises(error, match=rf"^(path|model): {re.escape(str(path))}: {problem}")


def _trained(optimizer: optim.Optimizer) -> fastrnn.SequenceModel:
    model = fastrnn.SequenceModel("gru", 5, 8, 3, embedding_dim=4, seed=0)
    ids = np.zeros((4, 2), np.int64)
    model.train_step(ids, ids % 3, optimizer, loss="cross_entropy")
    return model


@pytest.fixture(scope="module")
def adam_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Arrays]:
    """A saved model with an Adam state after one step and a vocabulary, and its arrays."""
    path = tmp_path_factory.mktemp("saved") / "m.npz"
    opt = optim.Adam(lr=0.01)
    _trained(opt).save(path, opt, vocab="abcde", note="hi")
    with np.load(path) as z:
        return path, {k: z[k] for k in z.files}


def rewrite(tmp_path: Path, arrays: Arrays, meta: object = None) -> Path:
    """``arrays`` (with ``meta`` as its JSON header, unless ``arrays`` holds one) in a new file."""
    out = tmp_path / "crafted.npz"
    header = {} if "meta" in arrays else {"meta": np.array(json.dumps(meta))}
    np.savez(out, **arrays, **header)
    return out


def _split(arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
    a = {k: v.copy() for k, v in arrays.items() if k != "meta"}
    return a, json.loads(str(arrays["meta"]))


# ----------------------------------------------------------------- SequenceModel: the header


def _set(where: str, key: str, value: Any) -> Callable[[Arrays, dict[str, Any]], None]:
    """A mutation: ``meta[where][key] = value`` (``where`` '' for the header itself, dotted for
    deeper objects)."""

    def mutate(arrays: Arrays, meta: dict[str, Any]) -> None:
        obj = meta
        for part in filter(None, where.split(".")):
            obj = obj[part]
        obj[key] = value

    return mutate


def _drop(where: str, key: str) -> Callable[[Arrays, dict[str, Any]], None]:
    def mutate(arrays: Arrays, meta: dict[str, Any]) -> None:
        obj = meta
        for part in filter(None, where.split(".")):
            obj = obj[part]
        del obj[key]

    return mutate


def _array(name: str, value: Any) -> Callable[[Arrays, dict[str, Any]], None]:
    """A mutation of the arrays: ``arrays[name] = value`` (None deletes it)."""

    def mutate(arrays: Arrays, meta: dict[str, Any]) -> None:
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value(arrays[name]) if callable(value) else value

    return mutate


NAN = float("nan")
HEADER_CASES = {
    # the header
    "format": (_set("", "format", "fastrnn.SequenceModel/2"), r"not a fastrnn SequenceModel"),
    "extra missing": (_drop("", "extra"), r"its header has the keys \['config', 'format', "),
    "unknown key": (_set("", "surprise", 1), r"its header has the keys .*'surprise'"),
    "config list": (_set("", "config", [1]), r"its config is not a JSON object"),
    "extra list": (_set("", "extra", [1]), r"its extra is not a JSON object"),
    "optimizer null": (_set("", "optimizer", None), r"its optimizer is not a JSON object"),
    # the config
    "hidden str": (
        _set("config", "hidden_size", "8"),
        r"a bad config \(hidden_size: expected an int, got str\)",
    ),
    "hidden float": (
        _set("config", "hidden_size", 8.0),
        r"a bad config \(hidden_size: expected an int, got float\)",
    ),
    "hidden 0": (
        _set("config", "hidden_size", 0),
        r"a bad config \(hidden_size: must be >= 1, got 0\)",
    ),
    "hidden neg": (_set("config", "hidden_size", -8), r"a bad config \(hidden_size: must be >= 1"),
    "layers bool": (
        _set("config", "num_layers", True),
        r"a bad config \(num_layers: expected an int, got bool\)",
    ),
    "layers null": (
        _set("config", "num_layers", None),
        r"a bad config \(num_layers: expected an int, got NoneType\)",
    ),
    "layers huge": (
        _set("config", "num_layers", 10**5),
        r"its config declares 100000 layers, it holds 7 arrays",
    ),
    "output huge": (
        _set("config", "output_size", 10**12),
        r"head\.weight has shape \(3, 8\), its config says \(1000000000000, 8\)",
    ),
    "input huge": (
        _set("config", "input_size", 10**12),
        r"embedding\.weight has shape \(5, 4\), its config says \(1000000000000, 4\)",
    ),
    "emb float": (
        _set("config", "embedding_dim", 4.5),
        r"a bad config \(embedding_dim: expected an int, got float\)",
    ),
    "emb dropped": (
        _set("config", "embedding_dim", None),
        r"rnn\.weight_ih_l0 has shape \(24, 4\), its config says \(24, 5\)",
    ),
    "bidirectional": (
        _set("config", "bidirectional", True),
        r"rnn\.weight_ih_l0_reverse has shape None",
    ),
    "bidirectional int": (
        _set("config", "bidirectional", 1),
        r"a bad config \(bidirectional: expected a bool, got int\)",
    ),
    "many_to_one str": (
        _set("config", "many_to_one", "no"),
        r"a bad config \(many_to_one: expected a bool, got str\)",
    ),
    "cell": (_set("config", "cell", "transformer"), r"a bad config \(cell: expected one of"),
    "cell list": (_set("config", "cell", ["gru"]), r"a bad config \(cell: expected one of"),
    "cell lstm": (
        _set("config", "cell", "lstm"),
        r"rnn\.weight_ih_l0 has shape \(24, 4\), its config says \(32, 4\)",
    ),
    "dtype": (
        _set("config", "dtype", "float16"),
        r"a bad config \(dtype: expected float32 or float64",
    ),
    "dtype object": (
        _set("config", "dtype", "object"),
        r"a bad config \(dtype: expected float32 or float64",
    ),
    "dtype list": (
        _set("config", "dtype", [["a", "<f4"]]),
        r"a bad config \(dtype: expected float32 or float64",
    ),
    "seed neg": (_set("config", "seed", -1), r"a bad config \(seed: must be >= 0, got -1\)"),
    "seed str": (
        _set("config", "seed", "zero"),
        r"a bad config \(seed: expected an int, got str\)",
    ),
    "dropout nan": (_set("config", "dropout", NAN), r"dropout: must be finite, got nan"),
    "dropout str": (
        _set("config", "dropout", "x"),
        r"dropout: expected a number in \[0, 1\], got 'x'",
    ),
    "dropout 2": (_set("config", "dropout", 2), r"dropout: must be <= 1"),
    "config missing": (
        _drop("config", "hidden_size"),
        r"a bad config \(unknown keys \[\], missing keys \['hidden_size'\]\)",
    ),
    "config unknown": (
        _set("config", "surprise", 1),
        r"a bad config \(unknown keys \['surprise'\]",
    ),
    # the vocabulary fastrnn demo --save writes
    "vocab dup": (
        _set("extra", "vocab", "abcda"),
        r"extra\['vocab'\] is not a character vocabulary \(chars: 'a' occurs more than once\)",
    ),
    "vocab words": (
        _set("extra", "vocab", ["ab", "c", "d", "e", "f"]),
        r"extra\['vocab'\] is not a character vocabulary \(chars: expected single characters",
    ),
    "vocab ints": (
        _set("extra", "vocab", [1, 2, 3, 4, 5]),
        r"extra\['vocab'\] is not a character vocabulary \(chars: expected single characters",
    ),
    "vocab int": (
        _set("extra", "vocab", 5),
        r"extra\['vocab'\] is not a character vocabulary \(chars: expected a str, got int\)",
    ),
    "vocab empty": (
        _set("extra", "vocab", ""),
        r"extra\['vocab'\] is not a character vocabulary \(chars: the vocabulary is empty\)",
    ),
    "vocab size": (
        _set("extra", "vocab", "abc"),
        r"extra\['vocab'\] has 3 characters, the model's embedding 5",
    ),
    # the optimizer's header
    "opt type": (
        _set("optimizer", "type", "RMSprop"),
        r"optimizer: state_dict\['type'\]: expected 'SGD' or 'Adam', got 'RMSprop'",
    ),
    "opt no steps": (_drop("optimizer", "steps"), r"optimizer: state_dict: expected the keys"),
    "opt extra key": (
        _set("optimizer", "surprise", 1),
        r"optimizer: state_dict: expected the keys",
    ),
    "opt state key": (_set("optimizer", "state", {}), r"its optimizer header holds a 'state'"),
    "lr str": (
        _set("optimizer.defaults", "lr", "0.1"),
        r"optimizer: lr: expected a real number, got str",
    ),
    "lr neg": (_set("optimizer.defaults", "lr", -1), r"optimizer: lr: must be >= 0, got -1"),
    "lr nan": (_set("optimizer.defaults", "lr", NAN), r"optimizer: lr: must be finite, got nan"),
    "lr bool": (
        _set("optimizer.defaults", "lr", True),
        r"optimizer: lr: expected a real number, got bool",
    ),
    "eps list": (
        _set("optimizer.defaults", "eps", [1e-8]),
        r"optimizer: eps: expected a real number, got list",
    ),
    "betas one": (
        _set("optimizer.defaults", "betas", [0.9]),
        r"optimizer: betas: expected two numbers in \[0, 1\)",
    ),
    "betas three": (
        _set("optimizer.defaults", "betas", [0.9, 0.9, 0.9]),
        r"optimizer: betas: expected two numbers",
    ),
    "betas 1.5": (
        _set("optimizer.defaults", "betas", [0.9, 1.5]),
        r"optimizer: betas: expected two numbers in \[0, 1\)",
    ),
    "betas str": (
        _set("optimizer.defaults", "betas", "ab"),
        r"optimizer: betas: expected two numbers",
    ),
    "defaults extra": (
        _set("optimizer.defaults", "amsgrad", True),
        r"optimizer: state_dict\['defaults'\]: expected the keys "
        r"\['betas', 'eps', 'lr', 'weight_decay'\]",
    ),
    "defaults missing": (
        _drop("optimizer.defaults", "lr"),
        r"optimizer: state_dict\['defaults'\]: expected the keys",
    ),
    "defaults list": (
        _set("optimizer", "defaults", [0.1]),
        r"optimizer: state_dict\['defaults'\]: expected the keys",
    ),
    "steps str": (
        _set("optimizer", "steps", "1"),
        r"optimizer: state_dict\['steps'\]: expected an int, got str",
    ),
    "steps neg": (
        _set("optimizer", "steps", -1),
        r"optimizer: state_dict\['steps'\]: must be >= 0, got -1",
    ),
    "steps 0": (
        _set("optimizer", "steps", 0),
        r"optimizer: .*\['step'\]: expected a step count in \[1, 0\]",
    ),
    # the arrays
    "param missing": (
        _array("param/head.bias", None),
        r"head\.bias has shape None, its config says \(3,\)",
    ),
    "param shape": (
        _array("param/rnn.weight_hh_l0", np.zeros((24, 9), np.float32)),
        r"rnn\.weight_hh_l0 has shape \(24, 9\), its config says \(24, 8\)",
    ),
    "param rank": (
        _array("param/rnn.weight_hh_l0", np.zeros(192, np.float32)),
        r"rnn\.weight_hh_l0 has shape \(192,\), its config says \(24, 8\)",
    ),
    "param scalar": (
        _array("param/head.bias", np.float32(0)),
        r"head\.bias has shape \(\), its config says \(3,\)",
    ),
    "param int": (
        _array("param/rnn.weight_ih_l0", lambda a: a.astype(np.int64)),
        r"rnn: state_dict\['weight_ih_l0'\]: expected dtype float32 or float64, got int64",
    ),
    "param complex": (
        _array("param/head.bias", np.zeros(3, np.complex64)),
        r"head: state_dict\['bias'\]: expected dtype float32 or float64, got complex64",
    ),
    "param str": (
        _array("param/head.bias", np.array(["a", "b", "c"])),
        r"head: state_dict\['bias'\]: expected dtype float32 or float64, got <U1",
    ),
    "param nan": (
        _array("param/head.bias", np.array([0, np.nan, 0], np.float32)),
        r"head: state_dict\['bias'\]: contains NaN or infinity",
    ),
    "param inf": (
        _array("param/embedding.weight", lambda a: np.full_like(a, -np.inf)),
        r"embedding: state_dict\['weight'\]: contains NaN or infinity",
    ),
    "param object": (
        _array("param/head.bias", np.array([None, 1, 2], object)),
        r"member 'param/head\.bias\.npy': an array of Python objects \(a pickle\)",
    ),
    "extra array": (_array("junk", np.zeros(3)), r"an array the format does not have: 'junk'"),
    "unknown param": (
        _array("param/rnn.weight_ih_l1", np.zeros((24, 8), np.float32)),
        r"an array the format does not have: 'param/rnn\.weight_ih_l1'",
    ),
    "opt without optimizer": (_drop("", "optimizer"), r"an array the format does not have: 'opt/"),
    "opt no slot": (
        _array("opt/head.bias", np.zeros(3, np.float32)),
        r"an array the format does not have: 'opt/head\.bias'",
    ),
    "opt unknown param": (
        _array("opt/nope/exp_avg", np.zeros(3, np.float32)),
        r"optimizer: state_dict\['state'\]\['nope'\]: there is no parameter of that name",
    ),
    "opt unknown slot": (
        _array("opt/head.bias/momentum_buffer", np.zeros(3, np.float32)),
        r"optimizer: state_dict\['state'\]\['head\.bias'\]: expected the slots "
        r"\['exp_avg', 'exp_avg_sq', 'step'\] \(or none\)",
    ),
    "opt slot missing": (
        _array("opt/head.bias/step", None),
        r"optimizer: state_dict\['state'\]\['head\.bias'\]: expected the slots",
    ),
    "opt shape": (
        _array("opt/head.bias/exp_avg", np.zeros(4, np.float32)),
        r"optimizer: state_dict\['state'\]\['head\.bias'\]\['exp_avg'\]: "
        r"expected shape \(3,\) and dtype float32, got \(4,\) and float32",
    ),
    "opt dtype": (
        _array("opt/head.bias/exp_avg_sq", np.zeros(3, np.float64)),
        r"optimizer: .*\['exp_avg_sq'\]: "
        r"expected shape \(3,\) and dtype float32, got \(3,\) and float64",
    ),
    "opt int": (
        _array("opt/head.bias/exp_avg", np.zeros(3, np.int32)),
        r"optimizer: .*\['exp_avg'\]: expected dtype float32 or float64, got int32",
    ),
    "opt nan": (
        _array("opt/head.bias/exp_avg", np.full(3, np.nan, np.float32)),
        r"optimizer: .*\['exp_avg'\]: expected finite values$",
    ),
    "opt square neg": (
        _array("opt/head.bias/exp_avg_sq", -np.ones(3, np.float32)),
        r"optimizer: .*\['exp_avg_sq'\]: expected finite values >= 0",
    ),
    "step 0": (
        _array("opt/head.bias/step", np.array(0)),
        r"optimizer: .*\['step'\]: expected a step count in \[1, 1\]",
    ),
    "step neg": (
        _array("opt/head.bias/step", np.array(-5)),
        r"optimizer: .*\['step'\]: expected a step count in \[1, 1\]",
    ),
    "step huge": (
        _array("opt/head.bias/step", np.array(2**62)),
        r"optimizer: .*\['step'\]: expected a step count in \[1, 1\]",
    ),
    "step float": (
        _array("opt/head.bias/step", np.array(1.0)),
        r"optimizer: .*\['step'\]: expected an integer scalar, got float64 \(\)",
    ),
    "step vector": (
        _array("opt/head.bias/step", np.array([1])),
        r"optimizer: .*\['step'\]: expected an integer scalar, got int64 \(1,\)",
    ),
    # the header's own array
    "meta bytes": (
        _array("meta", lambda a: np.array(str(a).encode())),
        r"not a fastrnn SequenceModel file \('meta' is \|S\d+ \(\), not a string\)",
    ),
    "meta vector": (
        _array("meta", lambda a: np.array([str(a)])),
        r"not a fastrnn SequenceModel file \('meta' is <U\d+ \(1,\), not a string\)",
    ),
    "meta missing": (_array("meta", None), r"not a fastrnn SequenceModel file \(no 'meta'\)"),
    "meta object": (
        _array("meta", lambda a: np.array({"format": 1}, object)),
        r"member 'meta\.npy': an array of Python objects",
    ),
    "meta not json": (
        _array("meta", np.array("{")),
        r"not a fastrnn SequenceModel file \(Expecting property name",
    ),
    "meta deep": (
        _array("meta", np.array("[" * 100_000)),
        r"not a fastrnn SequenceModel file \(maximum recursion depth",
    ),
    "meta list": (_array("meta", np.array("[1, 2]")), r"not a fastrnn SequenceModel file \(list\)"),
}


@pytest.mark.parametrize("case", HEADER_CASES)
def test_sequence_model_crafted(tmp_path: Path, adam_file: tuple[Path, Arrays], case: str) -> None:
    mutate, problem = HEADER_CASES[case]
    arrays, meta = _split(adam_file[1])
    original = arrays["meta"] = np.array(json.dumps(meta))
    mutate(arrays, meta)
    if arrays.get("meta") is original:  # not replaced: the header, mutated or not
        arrays["meta"] = np.array(json.dumps(meta))
    path = tmp_path / "crafted.npz"
    np.savez(path, **arrays)
    with bounded(), raises_naming(path, problem):
        fastrnn.SequenceModel.load(path)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", method) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": a crafted archive's
        for name, data in members.items():
            zf.writestr(name.split("#")[0], data)
    return out.getvalue()


def _npy(a: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, a)
    return out.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f4", data: bytes = b"\0" * 16) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return out.getvalue() + data


def _members(arrays: Arrays, **replace: bytes) -> dict[str, bytes]:
    out = {f"{k}.npy": _npy(v) for k, v in arrays.items()}
    return out | replace


def _patch_central(data: bytes, name: str, field: int, value: int) -> bytes:
    """Sets a 4-byte field (offset 20: compressed size, 24: uncompressed size) of ``name``'s
    entry in the archive's central directory."""
    at = data.index(b"PK\x01\x02")
    while True:
        n, extra, comment = struct.unpack("<HHH", data[at + 28 : at + 34])
        if data[at + 46 : at + 46 + n] == name.encode():
            return data[: at + field] + struct.pack("<I", value) + data[at + field + 4 :]
        at += 46 + n + extra + comment


def _archive_cases(arrays: Arrays) -> dict[str, tuple[bytes, str]]:
    """Damaged or crafted archives (the bytes of the file) and the problem each is."""
    good = _zip(_members(arrays))
    bias = _npy(arrays["param/head.bias"])
    flipped = bytearray(good)
    at = good.index(bias) + len(bias) - 2
    flipped[at] ^= 0xFF
    deflated = _zip(_members(arrays), zipfile.ZIP_DEFLATED)
    return {
        "empty": (b"", r"not an \.npz archive \(BadZipFile"),
        "truncated": (good[: len(good) // 2], r"not an \.npz archive \(BadZipFile"),
        "tail cut": (good[:-10], r"not an \.npz archive \(BadZipFile"),
        "text": (b"hello world\n" * 20, r"not an \.npz archive \(BadZipFile"),
        "npy": (_npy(np.zeros(3)), r"not an \.npz archive \(BadZipFile"),
        "pickle": (b"\x80\x04\x95" + b"\0" * 40, r"not an \.npz archive \(BadZipFile"),
        "crc": (
            bytes(flipped),
            r"member 'param/head\.bias\.npy': damaged \(BadZipFile: Bad CRC-32",
        ),
        "huge header": (
            _zip(_members(arrays, **{"param/head.bias.npy": _npy_header((10**9,))})),
            r"member 'param/head\.bias\.npy': its header declares shape \(1000000000,\) of "
            r"float32 \(4000000000 bytes\), it holds 16 bytes",
        ),
        "huge string": (
            _zip(_members(arrays, **{"meta.npy": _npy_header((), "<U200000000")})),
            r"member 'meta\.npy': its header declares shape \(\) of <U200000000",
        ),
        "negative shape": (
            _zip(_members(arrays, **{"param/head.bias.npy": _npy_header((-4, -1))})),
            r"member 'param/head\.bias\.npy': its header declares shape \(-4, -1\)",
        ),
        "bad magic": (
            _zip(_members(arrays, **{"param/head.bias.npy": b"\x93NUMPY\x07\x00junk"})),
            r"member 'param/head\.bias\.npy': damaged \(ValueError",
        ),
        "bad header": (
            _zip(_members(arrays, **{"param/head.bias.npy": b"\x93NUMPY\x01\x00\x04\x00{}x\n"})),
            r"member 'param/head\.bias\.npy': damaged \(ValueError",
        ),
        "not npy": (
            _zip(_members(arrays, **{"readme.txt": b"hi"})),
            r"member 'readme\.txt': not an \.npy array",
        ),
        "twice": (
            _zip(_members(arrays, **{"param/head.bias.npy#2": bias})),
            r"the archive names a member twice",
        ),
        "bzip2": (
            _zip(_members(arrays), zipfile.ZIP_BZIP2),
            r"member '.*\.npy': compressed or encrypted as numpy never writes",
        ),
        "stored size": (
            _patch_central(good, "param/head.bias.npy", 24, 10**9),
            r"member 'param/head\.bias\.npy': declares 1000000000 bytes, impossibly many",
        ),
        "deflate ratio": (
            _patch_central(deflated, "param/head.bias.npy", 24, 10**9),
            r"member 'param/head\.bias\.npy': declares 1000000000 bytes, impossibly many",
        ),
        "overlapping": (
            _patch_central(good, "param/head.bias.npy", 20, 10**8),
            r"its members declare more bytes than the archive's",
        ),
    }


ARCHIVE_CASES = [
    "empty", "truncated", "tail cut", "text", "npy", "pickle", "crc", "huge header",
    "huge string", "negative shape", "bad magic", "bad header", "not npy", "twice", "bzip2",
    "stored size", "deflate ratio", "overlapping",
]  # fmt: skip


@pytest.mark.parametrize("case", ARCHIVE_CASES)
def test_sequence_model_damaged_archive(
    tmp_path: Path, adam_file: tuple[Path, Arrays], case: str
) -> None:
    data, problem = _archive_cases(adam_file[1])[case]
    path = tmp_path / "damaged.npz"
    path.write_bytes(data)
    with bounded(), raises_naming(path, problem):
        fastrnn.SequenceModel.load(path)


def test_sequence_model_paths(tmp_path: Path) -> None:
    """A path that cannot be opened keeps its OSError."""
    with pytest.raises(FileNotFoundError):
        fastrnn.SequenceModel.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError):
        fastrnn.SequenceModel.load(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A path that is no regular file (a FIFO: np.load and onnx.load waited forever for a writer)
    is a ValueError naming it. In a child process: a regression blocks, the timeout fails it."""
    pytest.importorskip("onnx")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = (
        "import fastrnn, fastrnn.onnx\n"
        "for load in (fastrnn.SequenceModel.load, fastrnn.onnx.load):\n"
        "    try:\n"
        f"        load({str(fifo)!r})\n"
        "    except ValueError as e:\n"
        "        print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.splitlines() == [
        f"path: {fifo}: not a regular file",
        f"model: {fifo}: not a regular file",
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: (fastrnn.SequenceModel("gru", 5, 8, 3, embedding_dim=4, seed=0), optim.Adam()),
        lambda: (
            fastrnn.SequenceModel(
                "lstm",
                3,
                4,
                2,
                num_layers=2,
                bidirectional=True,
                many_to_one=True,
                dtype=np.float64,
                seed=1,
            ),
            optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
        ),
        lambda: (
            fastrnn.SequenceModel("rnn_relu", 3, 4, 2, dropout=0.5, num_layers=2),
            optim.SGD(),
        ),
        lambda: (fastrnn.SequenceModel("rnn", 3, 4, 2, seed=np.random.default_rng(0)), None),
    ],
    ids=["gru-adam", "lstm-sgd-momentum", "rnn-sgd", "no-optimizer"],
)
@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_sequence_model_round_trip(tmp_path: Path, make: Any, compressed: bool) -> None:
    """What save writes loads back (no false alarm), also recompressed by the user, and trains
    on identically."""
    model, opt = make()
    emb = model.embedding is not None
    x = np.arange(8).reshape(4, 2) % 5 if emb else np.ones((4, 2, 3), model.dtype)
    y = np.zeros((4, 2) if emb else (2, 2) if model.many_to_one else (4, 2, 2))
    loss = "cross_entropy" if emb else "mse"
    if opt is not None:
        model.train_step(x, y.astype(np.int64) if emb else y, opt, loss=loss)
    path = tmp_path / "m.npz"
    model.save(path, opt, vocab=["a", "b", "c", "d", "e"] if emb else None)
    if compressed:
        with np.load(path) as z:
            np.savez_compressed(path, **{k: z[k] for k in z.files})
    back, opt2, extra = fastrnn.SequenceModel.load(path)
    assert back.config == model.config and extra["vocab"] == (list("abcde") if emb else None)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    if opt is not None:
        assert opt2 is not None and type(opt2) is type(opt) and opt2.steps == opt.steps
        if model.config["dropout"]:
            return  # the masks are drawn from each layer's own generator
        a = model.train_step(x, y.astype(np.int64) if emb else y, opt, loss=loss).loss
        b = back.train_step(x, y.astype(np.int64) if emb else y, opt2, loss=loss).loss
        assert a == b


def test_sequence_model_existing_cases(tmp_path: Path, adam_file: tuple[Path, Arrays]) -> None:
    """The cases of the first pass: a header that is not an object, sizes declared and not held
    (refused before a model of them is made), a config key the constructor does not take."""
    arrays, meta = _split(adam_file[1])
    for bad in ([1, 2], "text", 3):
        with raises_naming(tmp_path / "crafted.npz", "not a fastrnn SequenceModel file"):
            fastrnn.SequenceModel.load(rewrite(tmp_path, arrays, bad))
    meta["config"]["hidden_size"] = 200_000  # ~10**11 parameters declared, a few hundred held
    path = rewrite(tmp_path, arrays, meta)
    with bounded(), raises_naming(path, r"rnn\.weight_ih_l0 has shape \(24, 4\)"):
        fastrnn.SequenceModel.load(path)
    meta["config"] = {"cell": "lstm"}
    with raises_naming(path, "a bad config"):
        fastrnn.SequenceModel.load(rewrite(tmp_path, arrays, meta))
    model, _, extra = fastrnn.SequenceModel.load(adam_file[0])  # the untouched file loads
    assert model.rnn.hidden_size == 8 and extra == {"vocab": "abcde", "note": "hi"}


# ------------------------------------------------------------- the optimizer's own contract


def test_optimizer_load_state_dict_checks_before_changing() -> None:
    """Optimizer.load_state_dict (the path a file's state takes) checks everything before it
    changes anything; the constructors' rules are its rules for the hyper-parameters."""
    opt = optim.Adam(lr=0.01)
    p = {"w": np.ones(3, np.float32)}
    opt.step(p, {"w": np.ones(3, np.float32)})
    good = opt.state_dict()
    bad = {**good, "state": {"w": {**good["state"]["w"], "exp_avg_sq": -np.ones(3, np.float32)}}}
    with pytest.raises(ValueError, match=r"\['exp_avg_sq'\]: expected finite values >= 0"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"lr: must be >= 0"):
        opt.load_state_dict({**good, "defaults": {**good["defaults"], "lr": -1.0}})
    with pytest.raises(ValueError, match=r"\['w'\]: there is no parameter of that name"):
        opt.load_state_dict(good, params={"v": np.ones(3, np.float32)})
    with pytest.raises(TypeError, match=r"state_dict: expected a mapping, got list"):
        opt.load_state_dict([])  # type: ignore[arg-type]
    assert opt.defaults["lr"] == 0.01 and opt.state["w"]["exp_avg_sq"].min() >= 0
    opt.load_state_dict(good, params=p)  # a good one still loads
    with pytest.raises(TypeError, match=r"lr: expected a real number, got str"):
        optim.SGD(lr="0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nesterov: expected a bool, got str"):
        optim.SGD(momentum=0.9, nesterov="no")  # type: ignore[arg-type]
    assert optim.Adam(betas=np.array([0.5, 0.5])).defaults["betas"] == (0.5, 0.5)


def test_sequence_model_config_rules_are_the_constructors() -> None:
    """The rules load applies to a config are the constructor's: no silent int(3.7)."""
    with pytest.raises(TypeError, match=r"output_size: expected an int, got float"):
        fastrnn.SequenceModel("gru", 3, 4, 2.7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"many_to_one: expected a bool, got str"):
        fastrnn.SequenceModel("gru", 3, 4, 2, many_to_one="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed: must be >= 0"):
        fastrnn.SequenceModel("gru", 3, 4, 2, seed=-1)
    assert fastrnn.SequenceModel("gru", np.int64(3), 4, 2, seed=np.int64(5)).config["seed"] == 5


# ----------------------------------------------------------------------------------- ONNX


def onnx_model(cell: str = "gru", H: int = 4, I: int = 3, **kw: Any) -> Any:
    pytest.importorskip("onnx")
    layer = {"gru": fastrnn.GRU, "lstm": fastrnn.LSTM, "rnn": fastrnn.RNN}[cell](I, H, seed=0, **kw)
    return fastrnn.onnx.export(layer)


def _node(model: Any) -> Any:
    return next(n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))


def _init(model: Any, name: str) -> Any:
    return next(t for t in model.graph.initializer if t.name == name)


def _attr(name: str, value: Any) -> Callable[[Any], None]:
    """A mutation: the node's attribute ``name`` set to ``value`` (replaced; None removes it)."""

    def mutate(model: Any) -> None:
        import onnx

        node = _node(model)
        for a in [a for a in node.attribute if a.name == name]:
            node.attribute.remove(a)
        if value is not None:
            node.attribute.append(onnx.helper.make_attribute(name, value))

    return mutate


def _tensor(name: str, value: Any) -> Callable[[Any], None]:
    """A mutation: initializer ``name`` replaced by ``value`` (an array, or a function of the
    TensorProto that edits it)."""

    def mutate(model: Any) -> None:
        import onnx

        t = _init(model, name)
        if callable(value):
            value(t)
        else:
            t.CopyFrom(onnx.numpy_helper.from_array(value, name))

    return mutate


def _inputs(*names: str, init: dict[str, np.ndarray] | None = None) -> Callable[[Any], None]:
    """A mutation: the node's inputs replaced (``...`` keeps the original at that position), and
    initializers added."""

    def mutate(model: Any) -> None:
        import onnx

        node = _node(model)
        old = list(node.input)
        new = [old[i] if n == "..." else n for i, n in enumerate(names)]
        del node.input[:]
        node.input.extend(new)
        for k, v in (init or {}).items():
            model.graph.initializer.append(onnx.numpy_helper.from_array(v, k))

    return mutate


def _dims(*dims: int) -> Callable[[Any], None]:
    def edit(t: Any) -> None:
        del t.dims[:]
        t.dims.extend(dims)

    return edit


def _strings(t: Any) -> None:
    import onnx

    t.CopyFrom(onnx.helper.make_tensor(t.name, onnx.TensorProto.STRING, [1, 12, 3], [b"a"] * 36))


def _external(location: str) -> Callable[[Any], None]:
    def edit(t: Any) -> None:
        import onnx

        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        for key, value in (("location", location), ("offset", "0"), ("length", "144")):
            e = t.external_data.add()
            e.key, e.value = key, value

    return edit


def _raw(extra: bytes) -> Callable[[Any], None]:
    def edit(t: Any) -> None:
        t.raw_data = t.raw_data + extra

    return edit


def _float_data(t: Any) -> None:
    """The values in float_data (not raw) and a declared size far beyond them."""
    vals = np.frombuffer(t.raw_data, np.float32).tolist()
    t.ClearField("raw_data")
    t.float_data.extend(vals)
    t.dims[2] = 10**7


def _no_rnn_nodes(model: Any) -> None:
    del model.graph.node[:]


def _custom_domain(model: Any) -> None:
    _node(model).domain = "com.example"


def _named_twice(model: Any) -> None:
    import onnx

    model.graph.node.append(
        onnx.helper.make_node("GRU", ["X", "W_l0", "R_l0"], ["Z"], name="gru_l0")
    )


def _two_inits(model: Any) -> None:
    model.graph.initializer.append(_init(model, "W_l0"))


W = np.zeros((1, 12, 3), np.float32)
ONNX_CASES: dict[str, tuple[Callable[[Any], None], str, bool]] = {
    # attributes: (mutation, problem, unsupported: an UnsupportedError, valid ONNX)
    "hidden float": (
        _attr("hidden_size", 4.0),
        r"GRU: attribute 'hidden_size' must be of type INT, got FLOAT",
        False,
    ),
    "hidden str": (
        _attr("hidden_size", "4"),
        r"GRU: attribute 'hidden_size' must be of type INT, got STRING",
        False,
    ),
    "hidden ints": (
        _attr("hidden_size", [4]),
        r"GRU: attribute 'hidden_size' must be of type INT, got INTS",
        False,
    ),
    "hidden 0": (_attr("hidden_size", 0), r"GRU: hidden_size 0 does not match", False),
    "hidden huge": (_attr("hidden_size", 4000), r"GRU: hidden_size 4000 does not match", False),
    "direction": (
        _attr("direction", "sideways"),
        r"GRU: direction 'sideways': expected 'forward', 'reverse' or 'bidirectional'",
        False,
    ),
    "direction int": (
        _attr("direction", 1),
        r"GRU: attribute 'direction' must be of type STRING, got INT",
        False,
    ),
    "direction 2": (
        _attr("direction", "bidirectional"),
        r"GRU: direction 'bidirectional' needs W and R of 2 direction\(s\), got 1",
        False,
    ),
    "layout": (_attr("layout", 2), r"GRU: attribute 'layout' must be 0 or 1, got 2", False),
    "linear_before_reset": (
        _attr("linear_before_reset", -1),
        r"GRU: attribute 'linear_before_reset' must be 0 or 1, got -1",
        False,
    ),
    "activations unknown": (
        _attr("activations", ["Foo", "Tanh"]),
        r"GRU: activations \['Foo', 'Tanh'\]: expected 2 of ONNX's activation functions",
        False,
    ),
    "activations count": (
        _attr("activations", ["Sigmoid"]),
        r"GRU: activations \['Sigmoid'\]: expected 2 of ONNX's",
        False,
    ),
    "activations string": (
        _attr("activations", "Tanh"),
        r"GRU: attribute 'activations' must be of type STRINGS, got STRING",
        False,
    ),
    "activations ints": (
        _attr("activations", [1, 2]),
        r"GRU: attribute 'activations' must be of type STRINGS, got INTS",
        False,
    ),
    "activations unsupported": (
        _attr("activations", ["HardSigmoid", "Tanh"]),
        r"GRU activations \['HardSigmoid', 'Tanh'\] have no fastrnn equivalent",
        True,
    ),
    "clip 0": (_attr("clip", 0.0), r"GRU: attribute 'clip' must be > 0, got 0.0", False),
    "clip negative": (_attr("clip", -1.0), r"GRU: attribute 'clip' must be > 0, got -1.0", False),
    "clip nan": (_attr("clip", float("nan")), r"GRU: attribute 'clip' must be > 0, got nan", False),
    "clip int": (
        _attr("clip", 1),
        r"GRU: attribute 'clip' must be of type FLOAT, got INT",
        False,
    ),
    "activation_alpha ints": (
        _attr("activation_alpha", [1, 2]),
        r"GRU: attribute 'activation_alpha' must be of type FLOATS, got INTS",
        False,
    ),
    "activations scaled tanh": (
        _attr("activations", ["Sigmoid", "ScaledTanh"]),
        r"GRU activations \['Sigmoid', 'ScaledTanh'\] have no fastrnn equivalent \(fastrnn's "
        r"GRU: Sigmoid, Tanh, ONNX's default\)",
        True,
    ),
    "unknown attribute": (
        _attr("input_forget", 1),
        r"GRU: attribute 'input_forget' is not one of ONNX's GRU attributes",
        False,
    ),
    # initializers
    "W int64": (
        _tensor("W_l0", W.astype(np.int64)),
        r"GRU input 1 \(W, 'W_l0'\): expected a FLOAT, DOUBLE or FLOAT16 tensor, got INT64",
        False,
    ),
    "W string": (
        _tensor("W_l0", _strings),
        r"GRU input 1 \(W, 'W_l0'\): expected a FLOAT, DOUBLE or FLOAT16 tensor, got STRING",
        False,
    ),
    "W bool": (
        _tensor("W_l0", W.astype(bool)),
        r"GRU input 1 \(W, 'W_l0'\): expected a FLOAT, DOUBLE or FLOAT16 tensor, got BOOL",
        False,
    ),
    "W nan": (
        _tensor("W_l0", W + np.nan),
        r"GRU input 1 \(W, 'W_l0'\): contains NaN or infinity",
        False,
    ),
    "R inf": (
        _tensor("R_l0", np.full((1, 12, 4), np.inf, np.float32)),
        r"GRU input 2 \(R, 'R_l0'\): contains NaN or infinity",
        False,
    ),
    "W dims huge": (
        _tensor("W_l0", _dims(1, 12, 10**8)),
        r"GRU input 1 \(W, 'W_l0'\): declares shape \(1, 12, 100000000\) of float32 "
        r"\(4800000000 bytes\), holds 144 bytes",
        False,
    ),
    "W float_data huge": (
        _tensor("W_l0", _float_data),
        r"GRU input 1 \(W, 'W_l0'\): declares shape \(1, 12, 10000000\) of float32 "
        r"\(480000000 bytes\), holds 144 bytes",
        False,
    ),
    "W dims negative": (
        _tensor("W_l0", _dims(1, 12, -3)),
        r"GRU input 1 \(W, 'W_l0'\): declares the shape \(1, 12, -3\)",
        False,
    ),
    "W raw odd": (
        _tensor("W_l0", _raw(b"\0")),
        r"GRU input 1 \(W, 'W_l0'\): declares shape \(1, 12, 3\) of float32 "
        r"\(144 bytes\), holds 145 bytes",
        False,
    ),
    "W external": (
        _tensor("W_l0", _external("weights.bin")),
        r"GRU input 1 \(W, 'W_l0'\): its data is in an external file",
        False,
    ),
    "W external abs": (
        _tensor("W_l0", _external("/etc/passwd")),
        r"GRU input 1 \(W, 'W_l0'\): its data is in an external file",
        False,
    ),
    "R rank": (
        _tensor("R_l0", np.zeros((1, 12), np.float32)),
        r"GRU: W and R must be 3-D \(D, G\*H, \.\.\.\), got \(1, 12, 3\) and \(1, 12\)",
        False,
    ),
    "R scalar": (_tensor("R_l0", np.float32(0)), r"GRU: W and R must be 3-D", False),
    "W rank 4": (_tensor("W_l0", W[None]), r"GRU: W and R must be 3-D", False),
    "W no inputs": (
        _tensor("W_l0", np.zeros((1, 12, 0), np.float32)),
        r"GRU: hidden_size 4 does not match W \(1, 12, 0\)",
        False,
    ),
    "B rank": (
        _tensor("B_l0", np.zeros(24, np.float32)),
        r"GRU: B must have shape \(1, 24\), got \(24,\)",
        False,
    ),
    "B int": (
        _tensor("B_l0", np.zeros((1, 24), np.int32)),
        r"GRU input 3 \(B, 'B_l0'\): expected a FLOAT, DOUBLE or FLOAT16 tensor, got INT32",
        False,
    ),
    # inputs
    "only X": (
        _inputs("..."),
        r"GRU: expected the inputs X, W, R and at most 6 in all, got \['X'\]",
        False,
    ),
    "no R": (_inputs("...", "...", ""), r"GRU: expected the inputs X, W, R", False),
    "too many": (
        _inputs("...", "...", "...", "...", "", "", "x"),
        r"GRU: expected the inputs X, W, R and at most 6 in all",
        False,
    ),
    "W not init": (
        _inputs("...", "nope", "..."),
        r"GRU input 1 \(W, 'nope'\) is not an initializer",
        False,
    ),
    "W twice": (_two_inits, r"GRU input 1 \(W, 'W_l0'\) names two initializers", False),
    "B not init": (
        _inputs("...", "...", "...", "nope"),
        r"GRU input 3 \(B, 'nope'\) is not an initializer",
        False,
    ),
    "lengths constant": (
        _inputs("...", "...", "...", "...", "lens", init={"lens": np.array([2], np.int32)}),
        r"GRU: a constant sequence_lens \(a layer takes lengths at each call\) "
        r"has no fastrnn equivalent",
        True,
    ),
    "h0 constant": (
        _inputs("...", "...", "...", "...", "", "h0", init={"h0": np.ones((1, 1, 4), np.float32)}),
        r"GRU: a constant initial_h .* has no fastrnn equivalent",
        True,
    ),
    # nodes
    "no nodes": (_no_rnn_nodes, r"no LSTM/GRU/RNN node$", False),
    "custom domain": (_custom_domain, r"no LSTM/GRU/RNN node$", False),
}


@pytest.mark.parametrize("case", ONNX_CASES)
def test_onnx_crafted(tmp_path: Path, case: str) -> None:
    mutate, problem, unsupported = ONNX_CASES[case]
    model = onnx_model()
    mutate(model)
    path = tmp_path / "crafted.onnx"
    path.write_bytes(model.SerializeToString())
    (tmp_path / "weights.bin").write_bytes(np.ones(36, np.float32).tobytes())
    error = fastrnn.onnx.UnsupportedError if unsupported else ValueError
    with bounded(), raises_naming(path, problem, error) as e:
        fastrnn.onnx.load(path)
    assert isinstance(e.value, NotImplementedError) == unsupported
    with pytest.raises(error, match=rf"^model: {problem}"):  # a ModelProto: "model: ..."
        fastrnn.onnx.load(model)


def test_onnx_lstm_and_rnn_cases(tmp_path: Path) -> None:
    """The checks per operator: LSTM's peepholes and input_forget, RNN's activations."""
    import onnx

    model = onnx_model("lstm")
    _inputs("...", "...", "...", "...", "", "", "", "P")(model)
    model.graph.input.append(
        onnx.helper.make_tensor_value_info("P", onnx.TensorProto.FLOAT, [1, 12])
    )
    path = tmp_path / "lstm.onnx"
    path.write_bytes(model.SerializeToString())
    with raises_naming(
        path,
        r"LSTM input 7 \(P, 'P'\) is not an initializer: peepholes given at run time have no "
        r"fastrnn equivalent",
        fastrnn.onnx.UnsupportedError,
    ):
        fastrnn.onnx.load(path)
    for P, problem in [
        (np.zeros((1, 8), np.float32), r"LSTM: P must have shape \(1, 12\), got \(1, 8\)"),
        (np.zeros((12,), np.float32), r"LSTM: P must have shape \(1, 12\), got \(12,\)"),
        (np.full((1, 12), np.nan, np.float32), r"LSTM input 7 \(P, 'P'\): contains NaN"),
        (np.zeros((1, 12), np.int32), r"LSTM input 7 \(P, 'P'\): expected a FLOAT, DOUBLE"),
    ]:
        model = onnx_model("lstm")
        _inputs("...", "...", "...", "...", "", "", "", "P", init={"P": P})(model)
        with pytest.raises(ValueError, match=rf"^model: {problem}") as e:
            fastrnn.onnx.load(model)
        assert not isinstance(e.value, NotImplementedError)
    model = onnx_model("lstm")
    _inputs("...", "...", "...", "...", "", "", "c0", init={"c0": np.ones((1, 1, 4), np.float32)})(
        model
    )
    with pytest.raises(
        fastrnn.onnx.UnsupportedError, match=r"LSTM: a constant initial_c .* has no fastrnn"
    ):
        fastrnn.onnx.load(model)
    model = onnx_model("lstm")
    _attr("input_forget", 2)(model)
    with pytest.raises(ValueError, match=r"LSTM: attribute 'input_forget' must be 0 or 1, got 2"):
        fastrnn.onnx.load(model)
    model = onnx_model("rnn")
    _attr("activations", ["Sigmoid"])(model)
    with pytest.raises(fastrnn.onnx.UnsupportedError, match=r"RNN activations \['Sigmoid'\]"):
        fastrnn.onnx.load(model)
    model = onnx_model("rnn")
    _attr("linear_before_reset", 1)(model)
    with pytest.raises(ValueError, match=r"RNN: attribute 'linear_before_reset' is not one of"):
        fastrnn.onnx.load(model)
    model = onnx_model("rnn")
    node = _node(model)
    node.attribute.append(onnx.helper.make_attribute("hidden_size", 4))
    with pytest.raises(ValueError, match=r"attribute 'hidden_size' is given twice"):
        fastrnn.onnx.load(model)
    model = onnx_model()
    _named_twice(model)
    with pytest.raises(ValueError, match=r"2 LSTM/GRU/RNN nodes are named 'gru_l0'"):
        fastrnn.onnx.load(model, node_name="gru_l0")
    with pytest.raises(ValueError, match=r"no LSTM/GRU/RNN node named 'other'"):
        fastrnn.onnx.load(model, node_name="other")


def test_onnx_external_data_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tensor whose data is 'external' names a file; fastrnn.onnx.load reads none (a
    ModelProto's would be looked for in the current folder), and says how to load it safely."""
    import onnx

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.bin").write_bytes(np.ones(36, np.float32).tobytes())
    model = onnx_model()
    _tensor("W_l0", _external("w.bin"))(model)
    with pytest.raises(
        ValueError, match=r"^model: GRU input 1 .*external file.*onnx\.load\(path\)"
    ):
        fastrnn.onnx.load(model)
    onnx.save(model, str(tmp_path / "ext.onnx"))
    layer = fastrnn.onnx.load(onnx.load(str(tmp_path / "ext.onnx")))  # onnx reads it: fine
    assert (layer.weight_ih_l0 == 1).all()


def test_onnx_files(tmp_path: Path) -> None:
    """Files that are not ONNX, empty, cut short, no regular file; and good files of every
    float type still load."""
    import onnx

    good = onnx_model().SerializeToString()
    for name, data, problem in [
        ("garbage.onnx", b"\x08\x96\x01 this is not protobuf \xff\xfe" * 10, "not an ONNX model"),
        ("cut.onnx", good[: len(good) // 2], "not an ONNX model"),
        ("empty.onnx", b"", "no LSTM/GRU/RNN node"),
    ]:
        (tmp_path / name).write_bytes(data)
        with raises_naming(tmp_path / name, problem):
            fastrnn.onnx.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        fastrnn.onnx.load(tmp_path / "missing.onnx")
    with pytest.raises(IsADirectoryError):
        fastrnn.onnx.load(tmp_path)
    path = tmp_path / "ok.onnx"
    onnx.save(onnx_model(), str(path))
    assert fastrnn.onnx.load(path).hidden_size == 4
    for dt in (np.float64, np.float16):
        model = onnx_model()
        for name in ("W_l0", "R_l0", "B_l0"):
            a = onnx.numpy_helper.to_array(_init(model, name))
            _tensor(name, a.astype(dt))(model)
        ref = fastrnn.onnx.load(onnx_model()).weight_hh_l0
        np.testing.assert_allclose(fastrnn.onnx.load(model).weight_hh_l0, ref, atol=1e-3)
    model = onnx_model("lstm", bidirectional=True)
    assert fastrnn.onnx.load(model).bidirectional


# ----------------------------------------------------------------------------- text files


def test_text_binary_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A binary file (NUL characters) is no text to learn from: a ValueError naming it, also for
    a device that never ends; in ``fastrnn demo --text`` a one-line usage error."""
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(ValueError, match=rf"^path: {re.escape(repr(str(binary)))} is not a text"):
        text.load_text(binary)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match=r"^path: '/dev/zero' is not a text file"):
            text.load_text("/dev/zero")
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--text", str(binary), "--steps", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("fastrnn demo: error: --text: path: ")
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1") * 3)
    assert text.load_text(tmp_path / "latin1.txt") == "caf\ufffd\n" * 3  # replaced, as documented


# -------------------------------------------------------------- other frameworks' weights


def test_keras_and_onnx_weights_dtype() -> None:
    """Weights from another framework's file: a non-float bias is a TypeError naming it, as a
    non-float kernel already was."""
    k, rk = np.zeros((3, 12), np.float32), np.zeros((4, 12), np.float32)
    with pytest.raises(TypeError, match=r"bias: expected a floating-point array, got <U1"):
        convert.from_keras("gru_reset_before", k, rk, np.array(["a"] * 12))
    with pytest.raises(TypeError, match=r"^W: expected a floating-point array, got int64"):
        convert.from_onnx("gru", np.zeros((1, 12, 3), np.int64), np.zeros((1, 12, 4)))
    with pytest.raises(TypeError, match=r"^B: expected a floating-point array, got object"):
        convert.from_onnx(
            "gru", np.zeros((1, 12, 3)), np.zeros((1, 12, 4)), np.zeros((1, 24), object)
        )
