"""Unpickling files we did not write, without trusting them: an allow-list, and size and structure first.

A plain ``pickle.load`` of a downloaded file can run arbitrary code: every global a pickle names
is imported and may be called. :class:`RestrictedUnpickler` resolves only the globals of an
allow-list given by the caller (what the expected files reference, found with ``pickletools``)
and raises :class:`UnsafePickleError`, naming ``module.name`` and the file, from ``find_class``
-- i.e. before the object it would build is called. Persistent ids are refused.

:func:`restricted_load` reads a file in two passes, streaming (never the whole file in memory):

1. the size: over ``max_bytes`` -> :class:`MalformedPickleError` naming the file;
2. the opcodes, walked with ``pickletools.genops`` (nothing built): a length claim beyond the end
   of the file (``BINBYTES8`` announcing 1 TiB, which would make the unpickler allocate it) or a
   truncated pickle -> :class:`MalformedPickleError`;
3. only then the restricted unpickling.

Used for the authors' published aggregates (:mod:`utils.results.published_pickle`) and their
spectrogram batches (:mod:`utils.dataset_related.published_spectrograms`); each supplies its own
allow-list. The numpy stand-ins here (:func:`safe_dtype`, :func:`safe_scalar`) build plain
numeric / string dtypes only, never an object dtype.
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list, or a persistent id (nothing was executed)."""


class MalformedPickleError(pickle.UnpicklingError, ValueError):
    """A pickle refused before unpickling: larger than its size limit, a length claim beyond its
    end, or not a complete pickle (nothing was built)."""


# ---------------------------------------------------------------- numpy stand-ins
SAFE_DTYPE_KINDS = "biufcUS"
"""Plain dtype kinds: bool, ints, floats, complex, unicode and byte strings."""


def check_dtype(dt: Any, kinds: str = SAFE_DTYPE_KINDS) -> np.dtype:
    """``dt`` when it is a plain (no object, no fields, no subarray) dtype of one of ``kinds``."""
    if (not isinstance(dt, np.dtype) or dt.hasobject or dt.kind not in kinds or dt.fields
            or dt.subdtype is not None):
        raise UnsafePickleError(f"refused numpy dtype {dt!r} (only plain dtypes of kinds {kinds!r})")
    return dt


def safe_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """Stands in for ``numpy.dtype``: dtype strings of plain kinds only, always a fresh copy.

    The copy matters: a pickle follows the dtype with ``BUILD`` (``__setstate__``), which must
    never reach numpy's shared built-in descriptors.
    """
    if not isinstance(spec, str):
        raise UnsafePickleError(f"refused numpy dtype spec {spec!r} (only dtype strings)")
    return check_dtype(np.dtype(spec, bool(align), True))


def _numpy_scalar_function():
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


_NUMPY_SCALAR = _numpy_scalar_function()


def safe_scalar(dtype: np.dtype, data: bytes = None):
    """Stands in for ``numpy.core.multiarray.scalar``: a numpy scalar from its dtype and raw bytes."""
    check_dtype(dtype)
    if not isinstance(data, bytes):
        raise UnsafePickleError(f"refused numpy scalar payload of type {type(data).__name__}")
    return _NUMPY_SCALAR(dtype, data)


# ---------------------------------------------------------------- reading, bounded
class BoundedReader:
    """A binary file as the unpickler and ``pickletools`` read it, never past ``max_bytes``.

    ``read(n)`` is cut to what the file still holds (a length claim cannot make the reader
    allocate more than the file) and raises :class:`MalformedPickleError` once more than
    ``max_bytes`` were read (for files whose ``st_size`` says nothing: pipes, devices).
    """

    def __init__(self, handle, path: Path, max_bytes: int, what: str):
        self.handle, self.path, self.max_bytes, self.what = handle, path, int(max_bytes), what
        stat = os.fstat(handle.fileno()) if hasattr(handle, "fileno") else None
        regular = stat is not None and (stat.st_mode & 0o170000) == 0o100000
        self.size = stat.st_size if regular else None
        self.consumed = 0

    def _cap(self, n: int | None) -> int:
        left = self.max_bytes + 1 - self.consumed
        if self.size is not None:
            left = min(left, max(0, self.size - self.consumed))
        return left if n is None or n < 0 else min(n, left)

    def _count(self, data: bytes) -> bytes:
        self.consumed += len(data)
        if self.consumed > self.max_bytes:
            raise over_limit(self.path, self.consumed, self.max_bytes, self.what)
        return data

    def read(self, n: int = -1) -> bytes:
        return self._count(self.handle.read(self._cap(n)))

    def readline(self, limit: int = -1) -> bytes:
        return self._count(self.handle.readline(self._cap(limit)))

    def tell(self) -> int:
        return self.consumed

    def seek(self, offset: int, whence: int = 0) -> int:
        """Absolute seeks only (the two passes over one pickle)."""
        if whence != 0:
            raise OSError(f"{self.path}: only absolute seeks")
        self.handle.seek(offset)
        self.consumed = offset
        return offset


def over_limit(path: Path, size: int, max_bytes: int, what: str) -> MalformedPickleError:
    """The error for a file of ``size`` bytes (or more) over ``max_bytes``."""
    return MalformedPickleError(f"{path}: {size} bytes or more, over the {max_bytes}-byte limit for {what}; "
                                "refused without unpickling")


def check_structure(stream, path: Path | str, size: int | None = None) -> None:
    """Walk one pickle's opcodes from ``stream`` without building anything (``pickletools.genops``).

    ``genops`` reads every length-prefixed argument with a bounded read and raises when a length
    claims more bytes than remain; a ``FRAME`` claim is checked against ``size`` (the stream's
    length, when known). Raises :class:`MalformedPickleError` naming ``path``.
    """
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            left = None if size is None else size - pos - 9
            if opcode.name == "FRAME" and left is not None and arg > left:
                raise ValueError(f"at byte {pos}, a frame of {arg} bytes, but only {left} remain")
    except ValueError as err:
        raise MalformedPickleError(f"{path}: malformed pickle refused before unpickling ({err})") from None


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals of ``allowed``.

    Parameters
    ----------
    file : binary file object
    allowed : mapping
        ``{(module, name): object}``: what each allowed global resolves to (the real object or
        a checked stand-in).
    source_name : str
        Shown in error messages (normally the file path).
    what : str
        What the file should be, for the message (``"a published aggregate"``).
    """

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any], source_name: str = "<pickle>",
                 what: str = "this pickle"):
        super().__init__(file)
        self.allowed, self.source_name, self.what = allowed, source_name, what

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source_name}: refused global {module}.{name}; {self.what} may only reference "
                f"{sorted(m + '.' + n for m, n in self.allowed)}") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source_name}: refused persistent id {pid!r}")


def load_checked(stream, allowed: Mapping[tuple[str, str], Any], source_name: str, what: str,
                 size: int | None = None, unpickler: type = RestrictedUnpickler) -> Any:
    """One pickle from a seekable ``stream``: its opcodes walked first, then restricted unpickling.

    ``size``: the stream's length (``FRAME`` claims are checked against it). The stream is left
    just after the pickle's ``STOP``, so several pickles in a row are read by
    calling this once each. Unpickling errors other than :class:`UnsafePickleError` become
    ``pickle.UnpicklingError`` naming ``source_name``.
    """
    start = stream.tell()
    check_structure(stream, source_name, size)
    end = stream.tell()
    stream.seek(start)
    try:
        value = unpickler(stream, allowed, source_name, what).load()
    except UnsafePickleError as err:
        if source_name in str(err):
            raise
        raise UnsafePickleError(f"{source_name}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise pickle.UnpicklingError(f"{source_name}: not readable as {what} ({err})") from err
    stream.seek(end)
    return value


def restricted_load(path: str | os.PathLike, allowed: Mapping[tuple[str, str], Any], max_bytes: int,
                    what: str, unpickler: type = RestrictedUnpickler) -> Any:
    """Unpickle the file ``path`` with only ``allowed`` globals, after its size and opcodes are checked.

    Parameters
    ----------
    path : path
    allowed : mapping
        ``{(module, name): object}`` (see :class:`RestrictedUnpickler`).
    max_bytes : int
        Size limit: a larger file is refused unread.
    what : str
        What the file should be, for the messages.
    unpickler : type
        A :class:`RestrictedUnpickler` subclass (for files that need their own persistent ids).

    Raises
    ------
    MalformedPickleError
        (a ``ValueError`` too) Over ``max_bytes``, a length claim beyond its end, or truncated.
    UnsafePickleError
        A global outside ``allowed`` (nothing it names was called).
    pickle.UnpicklingError
        Anything else that stops the unpickling, naming the file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise over_limit(path, size, max_bytes, what)
    with open(path, "rb") as handle:
        stream = BoundedReader(handle, path, max_bytes, what)
        if stream.size is None:          # a pipe or device: read it (bounded) into memory once
            data = stream.read()
            stream = io.BytesIO(data)
            return load_checked(stream, allowed, str(path), what, size=len(data), unpickler=unpickler)
        return load_checked(stream, allowed, str(path), what, size=stream.size, unpickler=unpickler)
