"""Reading the authors' published pickles without trusting them: restricted unpickling,
size and structure checks, plain finite values (used by :mod:`utils.results.published`).

Each file is a pickled ``collections.defaultdict`` (class index -> ``defaultdict`` (feature name ->
float | int)) whose outer factory was a function of the authors' notebook (``__main__``), so a
plain ``pickle.load`` fails outside it -- and a plain ``pickle.load`` of a downloaded file can run
arbitrary code. :class:`RestrictedUnpickler` therefore resolves only the globals those pickles
reference (checked with ``pickletools``):

==============================================  ==========================================
global in the pickle                            what we give it
==============================================  ==========================================
``collections.defaultdict``                     ``collections.defaultdict``
``__main__.default_dict_of_float`` / ``_int``   :func:`default_dict_of_float` / ``_int``
``builtins.float`` / ``builtins.int``           inner ``defaultdict`` factories
``numpy.core.multiarray.scalar``                numpy scalar reconstruction, non-object dtypes
(``numpy._core.multiarray.scalar``)             only
``numpy.dtype``                                 ``numpy.dtype``, non-object kinds only
==============================================  ==========================================

Anything else raises :class:`UnsafePickleError` naming ``module.name`` and the file, from
``find_class`` -- i.e. before the object it would build is called.

Before unpickling, a file larger than :data:`MAX_PUBLISHED_BYTES` is refused, and the whole
pickle is walked with ``pickletools`` (nothing built): a length claim beyond the end of the
file (e.g. ``BINBYTES8`` announcing 1 TiB, which would make the unpickler allocate it) raises
:class:`MalformedPickleError` naming the file.

The values become plain python numbers with :func:`to_plain` (NaN, inf and non-integral
counts are refused, naming file, class and feature).
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
from pathlib import Path
from typing import Mapping

import numpy as np

MAX_PUBLISHED_BYTES = 64 * 2**20
"""Largest published pickle read or downloaded (64 MiB; the authors' largest is 0.44 MB)."""


# ---------------------------------------------------------------- restricted unpickling
class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list (nothing was executed)."""


class MalformedPickleError(pickle.UnpicklingError, ValueError):
    """A published pickle refused before unpickling: larger than :data:`MAX_PUBLISHED_BYTES`,
    a length claim beyond its end, or not a complete pickle (nothing was built)."""


def default_dict_of_float() -> collections.defaultdict:
    """Stand-in for the authors' ``__main__.default_dict_of_float``."""
    return collections.defaultdict(float)


def default_dict_of_int() -> collections.defaultdict:
    """Stand-in for the authors' ``__main__.default_dict_of_int``."""
    return collections.defaultdict(int)


_SAFE_DTYPE_KINDS = set("biufcUS")   # bool, ints, floats, complex, unicode and byte strings


def _check_dtype(dt: np.dtype) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.hasobject or dt.kind not in _SAFE_DTYPE_KINDS or dt.fields:
        raise UnsafePickleError(f"refused numpy dtype {dt!r} (only plain numeric / string dtypes)")
    return dt


def _safe_dtype(spec, align: bool = False, copy: bool = False) -> np.dtype:
    """``numpy.dtype`` restricted to plain numeric and string dtypes (no object dtype)."""
    if not isinstance(spec, str):
        raise UnsafePickleError(f"refused numpy dtype spec {spec!r} (only dtype strings)")
    return _check_dtype(np.dtype(spec, align, copy))


def _numpy_scalar_function():
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


_NUMPY_SCALAR = _numpy_scalar_function()


def _safe_scalar(dtype: np.dtype, data: bytes = None):
    """Rebuild a numpy scalar from its dtype and raw bytes (object dtypes refused)."""
    _check_dtype(dtype)
    if not isinstance(data, bytes):
        raise UnsafePickleError(f"refused numpy scalar payload of type {type(data).__name__}")
    return _NUMPY_SCALAR(dtype, data)


ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "defaultdict"): collections.defaultdict,
    ("__main__", "default_dict_of_float"): default_dict_of_float,
    ("__main__", "default_dict_of_int"): default_dict_of_int,
    ("builtins", "float"): float,
    ("builtins", "int"): int,
    ("builtins", "str"): str,
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
    ("numpy", "dtype"): _safe_dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`.

    Parameters
    ----------
    file : binary file object
    source_name : str
        Shown in error messages (normally the file path).
    """

    def __init__(self, file, source_name: str = "<pickle>"):
        super().__init__(file)
        self.source_name = source_name

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source_name}: refused global {module}.{name}; a published aggregate may only "
                f"reference {sorted(m + '.' + n for m, n in ALLOWED_GLOBALS)}"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source_name}: refused persistent id {pid!r}")


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``; :class:`MalformedPickleError` (naming it) beyond ``max_bytes``."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)       # bounded even where st_size lies (pipes, devices)
    if max(size, len(data)) > max_bytes:
        raise MalformedPickleError(
            f"{path}: {max(size, len(data))} bytes or more, over the {max_bytes}-byte limit for a published "
            f"aggregate (MAX_PUBLISHED_BYTES); refused without unpickling")
    return data


def _check_structure(data: bytes, path: Path) -> None:
    """Walk the opcodes of ``data`` without building anything (``pickletools.genops``).

    ``genops`` reads every length-prefixed argument with a bounded read and raises when a
    length claims more bytes than remain; a ``FRAME`` claim is checked here.
    """
    try:
        for opcode, arg, pos in pickletools.genops(data):
            if opcode.name == "FRAME" and arg > len(data) - pos - 9:
                raise ValueError(f"at byte {pos}, a frame of {arg} bytes, but only {len(data) - pos - 9} remain")
    except ValueError as err:
        raise MalformedPickleError(f"{path}: malformed pickle refused before unpickling ({err})") from None


def restricted_load(path: str | os.PathLike, max_bytes: int | None = None) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (raises before running anything unsafe).

    Parameters
    ----------
    path : path
        A published pickle.
    max_bytes : int, optional
        Size limit (default :data:`MAX_PUBLISHED_BYTES`).

    Raises
    ------
    MalformedPickleError
        (a ``ValueError`` too) The file is over ``max_bytes``, claims a length beyond its end or
        is truncated -- checked before unpickling, so no huge allocation is attempted.
    UnsafePickleError
        A global outside the allow-list.
    """
    path = Path(path)
    data = _read_bounded(path, MAX_PUBLISHED_BYTES if max_bytes is None else max_bytes)
    _check_structure(data, path)
    try:
        return RestrictedUnpickler(io.BytesIO(data), source_name=str(path)).load()
    except UnsafePickleError as err:
        if str(path) in str(err):
            raise
        raise UnsafePickleError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise pickle.UnpicklingError(f"{path}: not a readable aggregate pickle ({err})") from err


def to_plain(obj: object, path: Path, value_type: type) -> dict[int, dict[str, float | int]]:
    """``defaultdict`` of ``defaultdict`` with numpy scalars -> plain nested dicts.

    Parameters
    ----------
    obj : object
        What :func:`restricted_load` returned.
    path : Path
        The file it came from (named in every error).
    value_type : type
        ``float`` for W, ``int`` for C (see :func:`_plain_value`).

    Raises
    ------
    ValueError
        Naming the file (and class, feature): not a mapping of integer classes to mappings of
        string features to finite numbers.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a mapping class -> features, got {type(obj).__name__}")
    plain: dict[int, dict[str, float | int]] = {}
    for cls, features in obj.items():
        if isinstance(cls, (bool, np.bool_)) or not isinstance(cls, (int, np.integer)):
            raise ValueError(f"{path}: class key {cls!r} is not an integer class index")
        if not isinstance(features, Mapping):
            raise ValueError(f"{path}: class {cls} maps to {type(features).__name__}, not a mapping")
        inner: dict[str, float | int] = {}
        for name, value in features.items():
            if not isinstance(name, str):
                raise ValueError(f"{path}: class {cls}: feature name {name!r} is not a string")
            inner[str(name)] = _plain_value(value, value_type, f"{path}: class {cls}, feature {name!r}")
        plain[int(cls)] = inner
    return plain


def _plain_value(value: object, value_type: type, where: str) -> float | int:
    """``value`` as a finite python ``value_type``; a ``ValueError`` starting with ``where`` otherwise.

    NaN and inf are refused (they would flow into every measure of the class), and so are
    counts that are not whole numbers (``int()`` would truncate them silently).
    """
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: value {value!r} is not a number")
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise ValueError(f"{where}: value {value!r} is not finite (NaN / inf refused)")
    try:
        plain = value_type(value)
    except OverflowError:
        raise ValueError(f"{where}: value {value!r} does not fit a {value_type.__name__}") from None
    if value_type is int and plain != value:
        raise ValueError(f"{where}: value {value!r} is not a whole count")
    return plain
