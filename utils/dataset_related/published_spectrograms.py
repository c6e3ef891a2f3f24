"""The authors' AST spectrograms, read without trusting the files: ``batch_*.pkl`` or ``<id>.npy``.

Their preprocessing notebook wrote ``spectogram_pikles/batch_{i}.pkl`` (``i`` = 0, 5000, 10000,
...; their spelling), each a plain ``pickle.dump`` of ``{id: torch.FloatTensor (1, 1024, 128)}``;
their training notebook first converted them to one ``<id>.npy`` of shape (1024, 128) per song.
Both are read here; nothing of torch is imported or called.

Disassembling ``pickle.dump({id: torch.randn(1, 1024, 128)})`` (``pickletools``, torch 2.x, any
protocol) shows exactly three globals, and the storage inside is a nested legacy ``torch.save``
payload whose own pickles name one more:

=====================================  =================================================
global                                 what we give it
=====================================  =================================================
``torch._utils._rebuild_tensor_v2``    :func:`_rebuild_tensor`: a float32 ndarray view of
                                       the storage, offset / size / stride bounds-checked
``torch.storage._load_from_bytes``     :func:`_storage_from_bytes`: the legacy payload
                                       parsed (magic number, protocol 1001, little
                                       endian, one storage record, its raw float32 data)
``collections.OrderedDict``            the (empty) backward hooks
``torch.FloatStorage`` (nested)        the storage's element type (float32)
=====================================  =================================================

(``torch.storage._load_from_bytes`` itself would call ``torch.load(..., weights_only=False)``
on the nested bytes -- arbitrary code again; it is never called.) Arrays pickled as numpy float
ndarrays are accepted too (``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, and ``numpy._core.numeric._frombuffer`` for protocol 5; float kinds only, rebuilt
from their raw bytes by :class:`_ArraySpec` / :func:`_array_from_buffer`). Any
other global -- ``os.system`` and everything else -- raises
:class:`~utils.dataset_related.safe_pickle.UnsafePickleError` naming the file before anything
it names is called.
"""
from __future__ import annotations

import collections
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from utils.dataset_related.safe_pickle import (MalformedPickleError, RestrictedUnpickler, UnsafePickleError,
                                               load_checked, restricted_load)

MAX_BATCH_BYTES = 8 * 2**30
"""Largest spectrogram batch read (8 GiB; 5000 songs of (1, 1024, 128) float32 are 2.6 GB)."""
BATCH_PATTERN = re.compile(r"batch_(\d+)\.pkl")
WHAT = "a spectrogram batch ({id: float tensor})"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C     # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
_FLOAT_STORAGES = {"FloatStorage": np.dtype("<f4")}


class _Storage:
    """A rebuilt torch storage: a read-only 1-D array of its elements."""

    def __init__(self, data: np.ndarray):
        self.data = data


class _StorageType:
    """What ``torch.FloatStorage`` resolves to inside the nested payload."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


class _StorageUnpickler(RestrictedUnpickler):
    """Restricted unpickler of the nested payload: its one persistent id is a storage record."""

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or pid[3] != "cpu" or not _is_count(pid[4]) or (len(pid) == 6 and pid[5] is not None)):
            raise UnsafePickleError(f"{self.source_name}: refused persistent id {pid!r}")
        return pid


def _legacy_pickle(stream: io.BytesIO, allowed: dict, size: int) -> Any:
    """The next pickle of a nested payload (opcodes walked first, only ``allowed`` globals)."""
    return load_checked(stream, allowed, "nested torch storage", "a torch storage payload", size=size,
                        unpickler=_StorageUnpickler)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _storage_from_bytes(payload: bytes) -> _Storage:
    """Stands in for ``torch.storage._load_from_bytes``: parse the legacy ``torch.save`` of one storage.

    Layout: pickles of the magic number, the protocol version, the system info, the storage
    record (a persistent id ``('storage', torch.FloatStorage, key, 'cpu', numel[, None])``) and
    the list of storage keys; then the storage's element count (int64, little endian) and its
    raw elements. Everything is checked; anything else raises ``UnpicklingError``.
    """
    if not isinstance(payload, bytes):
        raise UnsafePickleError(f"refused storage payload of type {type(payload).__name__}")
    stream, size = io.BytesIO(payload), len(payload)
    plain: dict = {}
    if _legacy_pickle(stream, plain, size) != LEGACY_MAGIC:
        raise MalformedPickleError("nested torch storage: wrong magic number (not a legacy torch.save payload)")
    if _legacy_pickle(stream, plain, size) != LEGACY_PROTOCOL:
        raise MalformedPickleError("nested torch storage: not protocol 1001")
    info = _legacy_pickle(stream, plain, size)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise MalformedPickleError(f"nested torch storage: system info {info!r} is not little endian")
    types = {("torch", name): _StorageType(dtype) for name, dtype in _FLOAT_STORAGES.items()}
    record = _legacy_pickle(stream, types, size)
    keys = _legacy_pickle(stream, plain, size)
    if not isinstance(record, tuple) or keys != [record[2]]:
        raise MalformedPickleError(f"nested torch storage: one storage expected, keys {keys!r}")
    dtype, numel = record[1].dtype, record[4]
    header = stream.read(8)
    data = stream.read()
    if len(header) != 8 or int.from_bytes(header, "little") != numel or len(data) != numel * dtype.itemsize:
        raise MalformedPickleError(f"nested torch storage: {len(data)} data bytes for {numel} elements of {dtype}")
    return _Storage(np.frombuffer(data, dtype=dtype))


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    hooks: Any = None, metadata: Any = None) -> np.ndarray:
    """Stands in for ``torch._utils._rebuild_tensor_v2``: the tensor as a float32 ndarray (a copy).

    The view ``offset + sum(index * stride)`` must stay inside the storage (checked before
    ``as_strided``); hooks must be empty and there may be no python attributes (``metadata``).
    """
    if not isinstance(storage, _Storage):
        raise UnsafePickleError(f"refused tensor storage of type {type(storage).__name__}")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(map(_is_count, size + stride)) and _is_count(offset)):
        raise MalformedPickleError(f"tensor size {size!r} / stride {stride!r} / offset {offset!r} not valid")
    if not isinstance(requires_grad, bool) or (hooks is not None and len(hooks)) or metadata:
        raise UnsafePickleError("refused a tensor with gradient hooks or python attributes")
    data = storage.data
    if math.prod(size) == 0:
        return np.zeros(size, dtype=np.float32)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= data.size:
        raise MalformedPickleError(f"tensor of size {size} stride {stride} offset {offset} reads past its "
                                   f"storage of {data.size} elements")
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                           strides=tuple(s * data.itemsize for s in stride), writeable=False)
    return np.array(view, dtype=np.float32)


def _empty_hooks(*args: Any) -> collections.OrderedDict:
    """Stands in for ``collections.OrderedDict`` (the tensor's backward hooks): empty only."""
    if args:
        raise UnsafePickleError("refused collections.OrderedDict with contents")
    return collections.OrderedDict()


class _DtypeSpec:
    """Stands in for ``numpy.dtype`` in a pickled ndarray: float dtypes, byte order from its state."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = False):
        if not isinstance(spec, str) or np.dtype(spec).kind != "f":
            raise UnsafePickleError(f"refused numpy dtype {spec!r} (float dtypes only)")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        if (not isinstance(state, tuple) or len(state) not in (8, 9) or state[1] not in ("<", ">", "=", "|")
                or any(v is not None for v in state[2:5])):
            raise UnsafePickleError(f"refused numpy dtype state {state!r}")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


_NDARRAY = object()   # what ``numpy.ndarray`` resolves to: only a marker for ``_reconstruct``


class _ArraySpec:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``; its state
    ``(version, shape, dtype, fortran, raw bytes)`` becomes :attr:`array` (float32)."""

    def __init__(self, cls: Any, shape: Any = (0,), typecode: Any = b"b"):
        if cls is not _NDARRAY:
            raise UnsafePickleError("refused _reconstruct of anything but numpy.ndarray")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise UnsafePickleError("refused ndarray state (not a plain float array)")
        _, shape, dtype, fortran, raw = state
        if (not isinstance(dtype, _DtypeSpec) or not isinstance(raw, bytes) or not isinstance(shape, tuple)
                or not all(map(_is_count, shape)) or len(raw) != math.prod(shape) * dtype.dtype.itemsize):
            raise UnsafePickleError("refused ndarray state (not a plain float array with its raw bytes)")
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").astype(np.float32)


def _array_from_buffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    """Stands in for ``numpy._core.numeric._frombuffer`` (pickle protocol 5): a float32 copy."""
    if (not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, _DtypeSpec) or order not in ("C", "F")
            or not isinstance(shape, tuple) or not all(map(_is_count, shape))
            or len(buffer) != math.prod(shape) * dtype.dtype.itemsize):
        raise UnsafePickleError("refused ndarray buffer (not a plain float array with its raw bytes)")
    return np.frombuffer(bytes(buffer), dtype=dtype.dtype).reshape(shape, order=order).astype(np.float32)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): _empty_hooks,
    ("numpy._core.multiarray", "_reconstruct"): _ArraySpec,
    ("numpy.core.multiarray", "_reconstruct"): _ArraySpec,
    ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeSpec,
}
"""The globals a spectrogram batch may reference, and what each resolves to."""


def load_batch(path: str | Path, max_bytes: int = MAX_BATCH_BYTES) -> dict[str, np.ndarray]:
    """One ``batch_*.pkl``: ``{id: float32 ndarray}`` (shapes as stored, e.g. (1, 1024, 128)).

    Raises
    ------
    UnsafePickleError
        A global outside :data:`ALLOWED_GLOBALS` (named, with the file; nothing was called).
    ValueError
        (``MalformedPickleError`` included) Over ``max_bytes``, malformed, or not a ``dict`` of
        string ids to float tensors / arrays: the message names the file (and the key).
    """
    path = Path(path)
    obj = restricted_load(path, ALLOWED_GLOBALS, max_bytes, WHAT)
    if type(obj) is not dict:
        raise ValueError(f"{path}: expected a dict id -> spectrogram, got {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, _ArraySpec):
            value = value.array
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise ValueError(f"{path}: entry {key!r} is not an id with a float tensor ({type(value).__name__})")
        out[key] = value
    return out


def load_npy(path: str | Path) -> np.ndarray:
    """A converted ``<id>.npy`` spectrogram as float32, read with ``allow_pickle=False`` (never unpickles)."""
    arr = np.load(str(path), allow_pickle=False)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{path}: expected a float spectrogram, got dtype {arr.dtype}")
    return arr.astype(np.float32)


def as_frames(arr: np.ndarray, song_id: str, shape: tuple[int, int], source: str | Path) -> np.ndarray:
    """``arr`` as ``shape`` (frames, mel bins), leading singleton axes dropped; finite values.

    Raises
    ------
    ValueError
        Naming ``song_id`` and ``source``: another shape (a profile whose frames or mel bins
        differ from the file's), or NaN / inf values.
    """
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"id {song_id!r}: spectrogram of shape {tuple(arr.shape)} in {source}, the profile "
                         f"expects {tuple(shape)} (frames, mel bins)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"id {song_id!r}: spectrogram in {source} holds NaN or inf")
    return np.ascontiguousarray(arr, dtype=np.float32)


def batch_files(folder: str | Path) -> list[Path]:
    """The ``batch_<i>.pkl`` files of ``folder``, by ``i``."""
    found = [p for p in Path(folder).glob("batch_*.pkl") if BATCH_PATTERN.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(BATCH_PATTERN.fullmatch(p.name).group(1)))
