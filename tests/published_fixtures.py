"""Small stand-ins for the MusicLIME authors' published W / C pickles, in their exact format.

The authors published, per task and model, ``*_feature_weights*.pkl`` (W) and
``*_feature_counts*.pkl`` (C) -- see :mod:`utils.results.published`. Inspected with ``pickletools``,
every one of those files is a protocol-4 pickle of

* an outer ``collections.defaultdict`` whose factory is ``__main__.default_dict_of_float``
  (W) or ``__main__.default_dict_of_int`` (C), functions of the authors' notebook;
* mapping the class index (python ``int`` for the Music4All tasks, ``numpy.int64`` for
  AudioSet) to an inner ``defaultdict(float)`` / ``defaultdict(int)``;
* mapping feature names -- audio components ``'vocals0'`` .. ``'other9'`` as python ``str``,
  lyric words as ``numpy.str_`` -- to the sum of |LIME weight| (``numpy.float64`` for the audio
  and multimodal runs, python ``float`` for the lyrics runs) or the count (python ``int``).

numpy scalars are pickled (by numpy 1.x) through ``numpy.core.multiarray.scalar`` and
``numpy.dtype``. :func:`write_published_fixture` writes the eleven files with the same
structure, types, protocol and referenced globals, and values chosen here from a seeded RNG,
so the loader and the figure code can be tested without the authors' files.
:func:`real_published_dir` is the one place that looks up the real files (environment variable
``MUSICLIME_PUBLISHED_DIR``) for the tests that check the published numbers themselves.
"""
from __future__ import annotations

import collections
import contextlib
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from utils.config import STEMS
from utils.results.published import PUBLISHED_PAIRS, TASK_CLASSES

PUBLISHED_DIR_ENV = "MUSICLIME_PUBLISHED_DIR"   # the variable utils.main reads too (PUBLISHED_ENV)
SKIP_REASON = f"{PUBLISHED_DIR_ENV} not set (directory of the authors' published pickles)"

PROTOCOL = 4
"""Pickle protocol of every published file."""

AUTHORS_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("collections", "defaultdict"), ("__main__", "default_dict_of_float"),
    ("__main__", "default_dict_of_int"), ("builtins", "float"), ("builtins", "int"),
    ("numpy.core.multiarray", "scalar"), ("numpy", "dtype"),
})
"""The globals the eleven published pairs reference, all files together (read with pickletools)."""

NUM_SEGMENTS = 10
AUDIO_COMPONENTS = tuple(f"{stem}{k}" for stem in STEMS for k in range(NUM_SEGMENTS))

WORDS = ("love", "Love", "fire", "Fire", "baby", "Baby", "night", "Night", "heart", "dance", "rain",
         "money", "street", "dream", "tears", "blood", "scream", "sun", "road", "home", "party", "soul",
         "light", "dark", "kiss", "run", "city", "gold", "storm", "smile", "river", "angel", "ghost",
         "wild", "sky", "bass")
"""Lyric vocabulary (case variants included, and 'bass' -- a word that is not an audio component)."""

ALWAYS_WORDS = ("love", "Love")
"""Present in every class, so merging case variants always has something to merge."""

WORDS_PER_CLASS = 24

POP_BASS3_K = 87
"""genre_audio, pop, bass3: I_AVG = 0.0087 (below 0.01, so '.2g' prints two significant digits)."""


def _average_codes() -> np.ndarray:
    """Allowed I_AVG values in units of 1e-4: 0.0010 .. 0.1200, last digit never 5, so neither
    ``round(., 3)`` nor ``format(., '.2g')`` ever meets a tie."""
    codes = np.arange(10, 1201)
    return codes[codes % 10 != 5]


@dataclass(frozen=True)
class FixturePair:
    """What :func:`write_published_fixture` wrote for one pair, as the loader must return it."""

    weights: dict[int, dict[str, float]]   # W, plain python types
    counts: dict[int, dict[str, int]]      # C
    averages: dict[int, dict[str, float]]  # the chosen I_AVG = W / C (multiples of 1e-4)
    absent: dict[int, tuple[str, ...]]     # audio components never kept (no entry in W / C)


@dataclass(frozen=True)
class PublishedFixture:
    directory: Path
    pairs: dict[str, FixturePair]


# ---------------------------------------------------------------- the authors' pickle format
def _main_function(name: str, factory: type):
    def function():
        return collections.defaultdict(factory)

    function.__name__ = function.__qualname__ = name
    function.__module__ = "__main__"
    function.__doc__ = f"The authors' notebook function ``{name}`` (returns defaultdict({factory.__name__}))."
    return function


default_dict_of_float = _main_function("default_dict_of_float", float)
default_dict_of_int = _main_function("default_dict_of_int", int)

_NUMPY_SCALAR = np.float64(0.0).__reduce__()[0]      # numpy._core.multiarray.scalar (numpy 2)


@contextlib.contextmanager
def _authors_main():
    """Register the two notebook functions on ``sys.modules['__main__']`` while pickling."""
    main = sys.modules["__main__"]
    missing = object()
    saved = {f.__name__: getattr(main, f.__name__, missing) for f in (default_dict_of_float, default_dict_of_int)}
    try:
        for function in (default_dict_of_float, default_dict_of_int):
            setattr(main, function.__name__, function)
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(main, name)
            else:
                setattr(main, name, value)


class _AuthorsPickler(pickle._Pickler):  # the pure-Python pickler: its save_global can be overridden
    """Writes numpy's scalar reconstructor as ``numpy.core.multiarray.scalar``, the name numpy 1.x
    (which the authors used) gives it; numpy 2 would write ``numpy._core.multiarray.scalar``."""

    def save_global(self, obj, name=None):
        if obj is _NUMPY_SCALAR:
            self.save("numpy.core.multiarray")
            self.save("scalar")
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dump_authors_pickle(obj: object, path: Path) -> None:
    """Pickle ``obj`` to ``path`` the way the authors' notebook did (protocol 4)."""
    with _authors_main(), open(path, "wb") as handle:
        _AuthorsPickler(handle, protocol=PROTOCOL).dump(obj)


# ---------------------------------------------------------------- the fixture
def _pair_values(key: str, rng: np.random.Generator) -> FixturePair:
    pair = PUBLISHED_PAIRS[key]
    has_audio = pair.model in ("audio", "multimodal")
    has_words = pair.model in ("lyrics", "multimodal")
    codes = _average_codes()
    optional = [w for w in WORDS if w not in ALWAYS_WORDS]
    weights, counts, averages, absent = {}, {}, {}, {}
    for cls in range(len(pair.class_names)):
        features: list[str] = []
        dropped: list[str] = []
        if has_audio:
            pinned = {"bass3"} if key == "genre_audio" and pair.class_names[cls] == "pop" else set()
            others = [c for c in AUDIO_COMPONENTS if not c.startswith("vocals") and c not in pinned]
            forced = others[int(rng.integers(len(others)))]          # at least one never-kept cell
            dropped = [c for c in others if c == forced or rng.random() < 0.1]
            features += [c for c in AUDIO_COMPONENTS if c not in dropped]
        if has_words:
            features += list(ALWAYS_WORDS)
            features += [str(w) for w in rng.choice(optional, WORDS_PER_CLASS - len(ALWAYS_WORDS), replace=False)]
        features = [features[i] for i in rng.permutation(len(features))]   # arbitrary insertion order
        chosen = rng.choice(codes, len(features), replace=False)           # distinct within the class
        class_counts = rng.integers(1, 60, size=len(features))
        averages[cls] = {f: int(k) / 10_000 for f, k in zip(features, chosen)}
        counts[cls] = {f: int(n) for f, n in zip(features, class_counts)}
        absent[cls] = tuple(sorted(dropped))
    if key == "genre_audio":
        pop = pair.class_names.index("pop")
        averages[pop]["bass3"] = POP_BASS3_K / 10_000
    for cls in averages:
        weights[cls] = {f: float(np.float64(a) * np.float64(counts[cls][f])) for f, a in averages[cls].items()}
    return FixturePair(weights, counts, averages, absent)


def _as_authors_object(pair_key: str, values: dict[int, dict[str, float | int]], kind: str):
    """Nested defaultdicts with the numpy scalar types of the authors' file of this pair."""
    pair = PUBLISHED_PAIRS[pair_key]
    class_key = np.int64 if pair.task == "audioset_genre" else int
    if kind == "weights":
        outer = collections.defaultdict(default_dict_of_float)
        value_type = float if pair.model == "lyrics" else np.float64
    else:
        outer = collections.defaultdict(default_dict_of_int)
        value_type = int
    for cls, features in values.items():
        inner = outer[class_key(cls)]
        for name, value in features.items():
            # a fresh object per entry, as in the authors' files (no memo hits across classes)
            feature = "".join([name[:1], name[1:]]) if name in AUDIO_COMPONENTS else np.str_(name)
            inner[feature] = value_type(value)
    return outer


def write_published_fixture(directory: str | os.PathLike, seed: int = 0) -> PublishedFixture:
    """Write all eleven published pairs (file names of :data:`utils.results.published.PUBLISHED_PAIRS`)
    into ``directory``, in the authors' format, with values drawn from ``numpy`` RNG ``seed``.

    Returns what was written: per pair key, W, C and the chosen ``I_AVG = W / C``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = {}
    for key, pair in PUBLISHED_PAIRS.items():
        values = _pair_values(key, rng)
        dump_authors_pickle(_as_authors_object(key, values.weights, "weights"), directory / pair.weights)
        dump_authors_pickle(_as_authors_object(key, values.counts, "counts"), directory / pair.counts)
        pairs[key] = values
    return PublishedFixture(directory, pairs)


def real_published_dir() -> Path:
    """Directory of the authors' real pickles from ``$MUSICLIME_PUBLISHED_DIR`` (skips when unset)."""
    value = os.environ.get(PUBLISHED_DIR_ENV, "").strip()
    if not value:
        pytest.skip(SKIP_REASON)
    path = Path(value).expanduser()
    missing = [name for pair in PUBLISHED_PAIRS.values() for name in (pair.weights, pair.counts)
               if not (path / name).is_file()]
    if missing:
        pytest.fail(f"{PUBLISHED_DIR_ENV}={value} lacks published files {missing}")
    return path


def class_index(pair_key: str, name: str) -> int:
    """Class index of ``name`` in the task of ``pair_key`` (LabelEncoder order)."""
    return TASK_CLASSES[PUBLISHED_PAIRS[pair_key].task].index(name)
