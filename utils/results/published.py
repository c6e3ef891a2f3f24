"""The authors' published global aggregates (W and C pickles), loaded safely.

The MusicLIME authors published, per task and model, two pickles under
``Results/feature_weights_&_counts/`` of their repository:

* ``*_feature_weights*.pkl``: ``W[c][j]``, the sum of ``|w|`` of feature ``j`` over the songs
  predicted as class ``c`` (positive-weight components only);
* ``*_feature_counts*.pkl``: ``C[c][j]``, how many of those songs had ``j`` among their kept
  components.

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

``load_published_pair`` returns plain ``dict`` s with ``int`` class indices, ``str`` feature
names and python ``float`` / ``int`` values, ready for :func:`utils.musiclime.aggregate.measures`.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from utils.config import AUDIOSET_GENRES, EMOTIONS, GENRES
from utils.io import atomic_write

# ---------------------------------------------------------------- what the files are
SOURCE_URL_PATTERN = (
    "https://raw.githubusercontent.com/IamTheo2000/MusicLIME/main/"
    "Results/feature_weights_%26_counts/{file}"
)
"""Where the authors keep the pickles (``{file}`` is replaced by the file name)."""

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "musiclime"

TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "m4a_genre": GENRES,
    "m4a_emotion": EMOTIONS,
    "audioset_genre": AUDIOSET_GENRES,
}
"""Class names per task; class index ``i`` in a pickle is ``TASK_CLASSES[task][i]``
(sklearn ``LabelEncoder``, i.e. alphabetical, order)."""


@dataclass(frozen=True)
class PublishedPair:
    """One published (weights, counts) pair and what it belongs to."""

    key: str            # short name used in this project
    weights: str        # file name of W
    counts: str         # file name of C
    task: str           # key of TASK_CLASSES
    model: str          # 'audio' | 'lyrics' | 'multimodal'
    figures: str        # which published figures it feeds

    @property
    def class_names(self) -> tuple[str, ...]:
        return TASK_CLASSES[self.task]


PUBLISHED_PAIRS: dict[str, PublishedPair] = {p.key: p for p in [
    PublishedPair("genre_audio", "audio_genre_feature_weights.pkl", "audio_genre_feature_counts.pkl",
                  "m4a_genre", "audio", "genre audio heatmaps (I_AVG)"),
    PublishedPair("emotion_audio", "emotion_audio_feature_weights.pkl", "emotion_audio_feature_counts.pkl",
                  "m4a_emotion", "audio", "emotion audio heatmaps (I_AVG)"),
    PublishedPair("genre_lyrics", "genre_feature_weights_640.pkl", "genre_feature_counts_640.pkl",
                  "m4a_genre", "lyrics", "genre lyric-word maps"),
    PublishedPair("emotion_lyrics", "emotion_feature_weights.pkl", "emotion_feature_counts.pkl",
                  "m4a_emotion", "lyrics", "emotion lyric-word maps"),
    PublishedPair("emotion_lyrics_small", "emotion_feature_weights_1.pkl", "emotion_feature_counts_1.pkl",
                  "m4a_emotion", "lyrics", "a smaller run of the emotion lyrics aggregation"),
    PublishedPair("genre_multimodal", "genre_multimodal_feature_weights_5000.pkl",
                  "genre_multimodal_feature_counts_5000.pkl", "m4a_genre", "multimodal",
                  "genre multimodal heatmap + top-20 word bars (5000 samples)"),
    PublishedPair("genre_multimodal_other", "multimodal_genre_feature_weights.pkl",
                  "multimodal_genre_feature_counts.pkl", "m4a_genre", "multimodal",
                  "another multimodal genre run"),
    PublishedPair("genre_multimodal_extra", "mult_genre_extra_feature_weights.pkl",
                  "mult_genre_extra_feature_counts.pkl", "m4a_genre", "multimodal",
                  "an extra multimodal genre run"),
    PublishedPair("emotion_multimodal", "emotion_multimodal_feature_weights.pkl",
                  "emotion_multimodal_feature_counts.pkl", "m4a_emotion", "multimodal",
                  "emotion multimodal heatmaps and bars"),
    PublishedPair("audioset_multimodal", "audioset_multimodal_feature_weights.pkl",
                  "audioset_multimodal_feature_counts.pkl", "audioset_genre", "multimodal",
                  "AudioSet multimodal heatmap + word bars"),
    PublishedPair("audioset_lyrics", "audioset_lyrics_feature_weights.pkl",
                  "audioset_lyrics_feature_counts.pkl", "audioset_genre", "lyrics",
                  "AudioSet lyric-word maps"),
]}
"""The eleven published pairs (same content as the reference MANIFEST, no file needed)."""


# ---------------------------------------------------------------- restricted unpickling
class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list (nothing was executed)."""


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


def restricted_load(path: str | os.PathLike) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (raises before running anything unsafe)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), source_name=str(path)).load()
    except UnsafePickleError as err:
        if str(path) in str(err):
            raise
        raise UnsafePickleError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise pickle.UnpicklingError(f"{path}: not a readable aggregate pickle ({err})") from err


def _to_plain(obj: object, path: Path, value_type: type) -> dict[int, dict[str, float | int]]:
    """``defaultdict`` of ``defaultdict`` with numpy scalars -> plain nested dicts."""
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
            if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
                raise ValueError(f"{path}: class {cls}, feature {name!r}: value {value!r} is not a number")
            inner[str(name)] = value_type(value)
        plain[int(cls)] = inner
    return plain


# ---------------------------------------------------------------- finding the files
def _is_url(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and "://" in source


def _file_url(source: str, file_name: str) -> str:
    quoted = urllib.parse.quote(file_name)
    if "{file}" in source:
        return source.replace("{file}", quoted)
    return source.rstrip("/") + "/" + quoted


def fetch_url(url: str, destination: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` atomically (:func:`utils.io.atomic_write`).

    Raises
    ------
    OSError
        Naming the URL when the download fails or times out (``timeout`` in seconds).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise OSError(
            f"could not download {url} ({err}); pass source=<local directory holding the pickles> "
            f"to work offline"
        ) from err
    atomic_write(destination, payload)
    return destination


def resolve_published_file(file_name: str, source: str | os.PathLike | None = None,
                           cache_dir: str | os.PathLike | None = None, timeout: float = 60.0) -> Path:
    """Local path of one published file.

    Parameters
    ----------
    file_name : str
        e.g. ``'audio_genre_feature_weights.pkl'``.
    source : str or path, optional
        A local directory holding the files, or a URL (``http(s)://`` or ``file://``) either
        containing ``{file}`` (like :data:`SOURCE_URL_PATTERN`, the default) or naming a folder.
    cache_dir : path, optional
        Where downloads are kept (default ``~/.cache/musiclime``); one sub-folder per source URL,
        so files from different sources never mix. A cached file is not downloaded again.
    timeout : float
        Download timeout in seconds.
    """
    source = SOURCE_URL_PATTERN if source is None else source
    if not _is_url(source):
        path = Path(source) / file_name
        if not path.is_file():
            raise FileNotFoundError(f"published file {file_name!r} not found in {Path(source)} ({path})")
        return path
    url = _file_url(str(source), file_name)
    base = hashlib.sha1(str(source).encode("utf-8")).hexdigest()[:12]
    destination = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR) / base / file_name
    if destination.is_file() and destination.stat().st_size > 0:
        return destination
    return fetch_url(url, destination, timeout=timeout)


def fetch_published(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                    timeout: float = 60.0) -> list[Path]:
    """Local paths of all 22 published files (downloading into the cache what is missing).

    Raises ``OSError`` (offline, URL unreachable) or ``FileNotFoundError`` (a local directory
    lacks a file), naming the file; what was already downloaded stays cached.
    """
    return [resolve_published_file(name, source, cache_dir, timeout)
            for pair in PUBLISHED_PAIRS.values() for name in (pair.weights, pair.counts)]


def load_published_pair(weights_file: str, counts_file: str, source: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None, timeout: float = 60.0,
                        ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, int]]]:
    """Load one published (W, C) pair as plain dicts.

    Parameters
    ----------
    weights_file, counts_file : str
        File names, e.g. ``'audio_genre_feature_weights.pkl'``, ``'audio_genre_feature_counts.pkl'``.
    source, cache_dir, timeout
        See :func:`resolve_published_file` (default source: the authors' repository URL).

    Returns
    -------
    W : dict[int, dict[str, float]]
        class index -> feature name -> sum of |LIME weight| (unitless).
    C : dict[int, dict[str, int]]
        class index -> feature name -> number of songs where the feature was kept.

    Raises
    ------
    UnsafePickleError
        A file references anything beyond the allow-list (nothing is executed).
    ValueError
        Malformed content, or W and C disagree on classes / features (names the files).
    """
    w_path = resolve_published_file(weights_file, source, cache_dir, timeout)
    c_path = resolve_published_file(counts_file, source, cache_dir, timeout)
    weights = _to_plain(restricted_load(w_path), w_path, float)
    counts = _to_plain(restricted_load(c_path), c_path, int)
    if set(weights) != set(counts):
        raise ValueError(f"{w_path} and {c_path} hold different classes: {sorted(weights)} vs {sorted(counts)}")
    for cls in weights:
        missing = set(weights[cls]) - set(counts[cls])
        if missing:
            raise ValueError(f"{c_path}: class {cls} has no count for {sorted(missing)[:5]} (present in {w_path})")
    return weights, counts


def load_published(key: str, source: str | os.PathLike | None = None,
                   cache_dir: str | os.PathLike | None = None, timeout: float = 60.0,
                   ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, int]], tuple[str, ...]]:
    """Load a pair by its key in :data:`PUBLISHED_PAIRS`; returns ``(W, C, class_names)``."""
    if key not in PUBLISHED_PAIRS:
        raise ValueError(f"unknown published pair {key!r}; choose one of {sorted(PUBLISHED_PAIRS)}")
    pair = PUBLISHED_PAIRS[key]
    weights, counts = load_published_pair(pair.weights, pair.counts, source, cache_dir, timeout)
    bad = [c for c in weights if not 0 <= c < len(pair.class_names)]
    if bad:
        raise ValueError(f"{pair.weights}: class indices {bad} outside the {len(pair.class_names)} "
                         f"{pair.task} classes")
    return weights, counts, pair.class_names


def load_published_table(key: str, source: str | os.PathLike | None = None,
                         cache_dir: str | os.PathLike | None = None, timeout: float = 60.0,
                         merge_words=None):
    """A published pair as the tidy measures table of :func:`utils.musiclime.aggregate.measures`.

    ``merge_words``: optional ``str -> str`` applied to lyric words before the measures
    (e.g. ``str.lower``; see :func:`utils.musiclime.aggregate.merge_word_variants`).
    """
    from utils.musiclime.aggregate import measures, merge_word_variants

    weights, counts, names = load_published(key, source, cache_dir, timeout)
    if merge_words is not None:
        weights, counts = merge_word_variants(weights, counts, merge_words)
    return measures(weights, counts, names)
