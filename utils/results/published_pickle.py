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
:class:`MalformedPickleError` naming the file. The machinery is the generic one of
:mod:`utils.dataset_related.safe_pickle` (shared with the spectrogram batches); this module
holds the aggregates' allow-list and value checks.

The values become plain python numbers with :func:`to_plain` (NaN, inf and non-integral
counts are refused, naming file, class and feature).
"""
from __future__ import annotations

import collections
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from utils.dataset_related.safe_pickle import (MalformedPickleError, UnsafePickleError, safe_dtype, safe_scalar)
from utils.dataset_related.safe_pickle import RestrictedUnpickler as _GenericUnpickler
from utils.dataset_related.safe_pickle import restricted_load as _restricted_load

__all__ = ["ALLOWED_GLOBALS", "MAX_PUBLISHED_BYTES", "MalformedPickleError", "RestrictedUnpickler",
           "UnsafePickleError", "default_dict_of_float", "default_dict_of_int", "restricted_load", "to_plain"]

MAX_PUBLISHED_BYTES = 64 * 2**20
"""Largest published pickle read or downloaded (64 MiB; the authors' largest is 0.44 MB)."""
WHAT = "a published aggregate"


def default_dict_of_float() -> collections.defaultdict:
    """Stand-in for the authors' ``__main__.default_dict_of_float``."""
    return collections.defaultdict(float)


def default_dict_of_int() -> collections.defaultdict:
    """Stand-in for the authors' ``__main__.default_dict_of_int``."""
    return collections.defaultdict(int)


ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "defaultdict"): collections.defaultdict,
    ("__main__", "default_dict_of_float"): default_dict_of_float,
    ("__main__", "default_dict_of_int"): default_dict_of_int,
    ("builtins", "float"): float,
    ("builtins", "int"): int,
    ("builtins", "str"): str,
    ("numpy.core.multiarray", "scalar"): safe_scalar,
    ("numpy._core.multiarray", "scalar"): safe_scalar,
    ("numpy", "dtype"): safe_dtype,
}


class RestrictedUnpickler(_GenericUnpickler):
    """:class:`utils.dataset_related.safe_pickle.RestrictedUnpickler` with :data:`ALLOWED_GLOBALS`.

    Parameters
    ----------
    file : binary file object
    source_name : str
        Shown in error messages (normally the file path).
    """

    def __init__(self, file, source_name: str = "<pickle>"):
        super().__init__(file, ALLOWED_GLOBALS, source_name, WHAT)


def restricted_load(path: str | os.PathLike, max_bytes: int | None = None) -> object:
    """Unpickle ``path`` with :data:`ALLOWED_GLOBALS` only (raises before running anything unsafe).

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
    limit = MAX_PUBLISHED_BYTES if max_bytes is None else max_bytes
    return _restricted_load(path, ALLOWED_GLOBALS, limit, WHAT)


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
