"""Files a user may get from someone else, read as untrusted input.

:func:`open_regular` opens a regular file only (a FIFO or a device such as ``/dev/zero`` would
block or never end). :class:`NpzReader` reads an ``.npz`` archive: every member's ``.npy`` header
is read and checked against the member's size, and the members' sizes against the archive's,
before any array is made, so that a crafted archive cannot make it allocate more than about a
thousand times its own size (deflate's largest ratio), nor read a pickle.

Every problem of a file's content is a ValueError that starts with the ``where`` it was opened
with (``"path: m.npz"``) and names the member; a path that cannot be opened keeps its OSError
(FileNotFoundError, IsADirectoryError, PermissionError).
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Member", "NpzReader", "open_regular"]

#: what numpy writes (np.savez, np.savez_compressed); other methods can expand without bound
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
#: deflate expands at most ~1032 times; a member declaring more is crafted
_MAX_RATIO = 1100
#: what reading a damaged archive or member raises (zlib, zipfile, numpy's header parser)
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, OverflowError,
            NotImplementedError, RuntimeError)  # fmt: skip


def open_regular(path: str | os.PathLike[str], where: str) -> IO[bytes]:
    """``path`` opened for reading in binary if it is a regular file; anything else but a folder
    (whose open raises IsADirectoryError) is a ValueError naming it: a FIFO would block, a device
    such as /dev/zero never end."""
    mode = os.stat(path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(f"{where}: not a regular file")
    return open(path, "rb")


@dataclass(frozen=True)
class Member:
    """One ``.npy`` member as its header declares it (its data not read)."""

    name: str  #: without ``.npy``
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    info: zipfile.ZipInfo


class NpzReader:
    """The members of an ``.npz`` archive, checked on opening (a context manager)."""

    def __init__(self, path: str | os.PathLike[str], where: str) -> None:
        self.where = where
        self._file = open_regular(path, where)
        try:
            size = os.fstat(self._file.fileno()).st_size
            self._zip = self._open_zip()
            self.members = self._read_members(size)
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive."""
        self._file.close()

    def error(self, problem: str) -> ValueError:
        """A ValueError naming the archive and ``problem``."""
        return ValueError(f"{self.where}: {problem}")

    def _open_zip(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self._file)
        except _DAMAGED as e:
            raise self.error(f"not an .npz archive ({type(e).__name__}: {e})") from None

    def _read_members(self, size: int) -> dict[str, Member]:
        infos = self._zip.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise self.error("the archive names a member twice")
        if sum(i.compress_size for i in infos) > size:
            raise self.error(f"its members declare more bytes than the archive's {size}")
        return {m.name: m for m in (self._member(i) for i in infos)}

    def _member(self, info: zipfile.ZipInfo) -> Member:
        """A member's header, checked against the member's declared size (both bounded by the
        archive's size) before anything of the header's size is made."""
        name = info.filename
        if not name.endswith(".npy"):
            raise self.error(f"member {name!r}: not an .npy array")
        if info.compress_type not in _METHODS or info.flag_bits & 0x1:
            raise self.error(f"member {name!r}: compressed or encrypted as numpy never writes")
        if info.file_size > _MAX_RATIO * info.compress_size + 1024 or (
            info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
        ):
            raise self.error(f"member {name!r}: declares {info.file_size} bytes, impossibly many")
        try:
            with self._zip.open(info) as f:
                shape, dtype, offset = _header(f)
        except _DAMAGED as e:
            raise self.error(f"member {name!r}: damaged ({type(e).__name__}: {e})") from None
        if any(n < 0 for n in shape):
            raise self.error(f"member {name!r}: its header declares shape {shape}")
        if dtype.hasobject:
            raise self.error(f"member {name!r}: an array of Python objects (a pickle)")
        held = info.file_size - offset
        if math.prod(shape) * dtype.itemsize != held:
            raise self.error(
                f"member {name!r}: its header declares shape {shape} of {dtype} "
                f"({math.prod(shape) * dtype.itemsize} bytes), it holds {held} bytes"
            )
        return Member(name[: -len(".npy")], shape, dtype, info)

    def read(self, name: str) -> NDArray[Any]:
        """The array of member ``name`` (whose header was checked on opening)."""
        m = self.members[name]
        try:
            with self._zip.open(m.info) as f:
                a: NDArray[Any] = np.lib.format.read_array(f, allow_pickle=False)
        except _DAMAGED as e:
            raise self.error(f"member {name!r}: damaged ({type(e).__name__}: {e})") from None
        return a


def _header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """An ``.npy`` header: shape, dtype and the offset of the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"npy format version {version} (numpy writes 1.0 or 2.0 for arrays)")
    return tuple(shape), dtype, f.tell()
