"""The authors' published global aggregates (W and C pickles), loaded safely.

The MusicLIME authors published, per task and model, two pickles under
``Results/feature_weights_&_counts/`` of their repository:

* ``*_feature_weights*.pkl``: ``W[c][j]``, the sum of ``|w|`` of feature ``j`` over the songs
  predicted as class ``c`` (positive-weight components only);
* ``*_feature_counts*.pkl``: ``C[c][j]``, how many of those songs had ``j`` among their kept
  components.

Each file is a pickled ``collections.defaultdict`` (class index -> ``defaultdict`` (feature name ->
float | int)) whose outer factory was a function of the authors' notebook (``__main__``). They
are read with :func:`~utils.results.published_pickle.restricted_load` (never a plain
``pickle.load``, which could run arbitrary code): only an allow-list of globals, files up to
:data:`MAX_PUBLISHED_BYTES`, every length claim checked before unpickling (see
:mod:`utils.results.published_pickle`).

``load_published_pair`` returns plain ``dict`` s with ``int`` class indices, ``str`` feature
names and finite python ``float`` / ``int`` values (NaN, inf and non-integral counts are
refused, naming file, class and feature), ready for :func:`utils.musiclime.aggregate.measures`.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from utils.config import AUDIOSET_GENRES, EMOTIONS, GENRES
from utils.io import atomic_write
from utils.results.published_pickle import (ALLOWED_GLOBALS, MAX_PUBLISHED_BYTES, MalformedPickleError,
                                            RestrictedUnpickler, UnsafePickleError, default_dict_of_float,
                                            default_dict_of_int, restricted_load, to_plain)

__all__ = ["ALLOWED_GLOBALS", "DEFAULT_CACHE_DIR", "MAX_PUBLISHED_BYTES", "PUBLISHED_PAIRS", "SOURCE_URL_PATTERN",
           "TASK_CLASSES", "MalformedPickleError", "PublishedPair", "RestrictedUnpickler", "UnsafePickleError",
           "default_dict_of_float", "default_dict_of_int", "fetch_published", "fetch_url", "load_published",
           "load_published_pair", "load_published_table", "resolve_published_file", "restricted_load"]

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
        Naming the URL when the download fails or times out (``timeout`` in seconds), or when it
        is larger than :data:`MAX_PUBLISHED_BYTES` (nothing is saved then).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read(MAX_PUBLISHED_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise OSError(
            f"could not download {url} ({err}); pass source=<local directory holding the pickles> "
            f"to work offline"
        ) from err
    if len(payload) > MAX_PUBLISHED_BYTES:
        raise OSError(f"{url}: over the {MAX_PUBLISHED_BYTES}-byte limit for a published aggregate "
                      "(MAX_PUBLISHED_BYTES); not saved")
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
    weights = to_plain(restricted_load(w_path), w_path, float)
    counts = to_plain(restricted_load(c_path), c_path, int)
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

    ``merge_words``: how lyric words are merged before the measures: ``None`` / ``'none'`` (as
    published, raw case), ``'case'`` (lower-case), ``'lemma'`` (lower-case + lemma, the authors'
    word bars) or any ``str -> str`` (see :func:`utils.musiclime.word_forms.word_merge_key`).
    The figure functions merge by themselves (``merge_words='lemma'`` by default), so a table
    loaded unmerged draws the authors' bars too.
    """
    from utils.musiclime.aggregate import measures, merge_word_variants
    from utils.musiclime.word_forms import word_merge_key

    weights, counts, names = load_published(key, source, cache_dir, timeout)
    normalise = word_merge_key(merge_words)
    if normalise is not None:
        weights, counts = merge_word_variants(weights, counts, normalise)
    return measures(weights, counts, names)
