"""Global aggregation of local MusicLIME explanations (after van der Linden et al. 2019): the measures.

Read top to bottom:

1. :func:`accumulate` -- records (one local explanation per song) -> ``W[c][j]`` (sum of
   ``|weight|``) and ``C[c][j]`` (how many songs kept feature ``j``), per explained class ``c``.
2. :func:`measures` -- ``W``, ``C`` -> a tidy table with ``I_LIME = sqrt(W)``, ``I_AVG = W / C`` and
   the homogeneity-weighted ``I_H = (1 - Hn) * I_LIME`` of every (class, feature).
3. :func:`modality_shares` / :func:`stem_shares` -- how a class's weight splits over modalities and
   stems; :func:`write_measures` / :func:`read_measures` -- the table as CSV.

Records come from the record store of a global run (:mod:`utils.musiclime.records`, which
describes their format); at least ``id``, ``label`` and ``weights`` (feature -> LIME weight).
Audio feature names are stem + segment index (``'vocals0'`` .. ``'other9'``); any other name is a
lyric word.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from utils.config import STEMS
from utils.io import atomic_path

AUDIO_FEATURE = re.compile(r"^(" + "|".join(STEMS) + r")(\d+)$")
"""Matches audio component names: a stem name followed by the segment index."""

MEASURE_COLUMNS = ["class", "feature", "modality", "stem", "segment", "W", "C", "I_LIME", "I_AVG", "I_H"]


def parse_feature(name: str) -> tuple[str, str | None, int | None]:
    """``'drums3'`` -> ``('audio', 'drums', 3)``; any other name -> ``('lyrics', None, None)``."""
    match = AUDIO_FEATURE.match(name)
    if match:
        return "audio", match.group(1), int(match.group(2))
    return "lyrics", None, None


# ---------------------------------------------------------------- 1. accumulate
def explained_class(record: Mapping, label_key: str = "label") -> int:
    """Class index a record is aggregated under.

    ``label_key`` names a record field holding a class index; the special value ``'predicted'``
    uses ``record['predicted']`` when present, else ``argmax(record['probabilities'])``.
    """
    rid = record.get("id", "<no id>")
    if label_key == "predicted" and "predicted" not in record:
        probabilities = record.get("probabilities")
        if probabilities is None or len(probabilities) == 0:
            raise ValueError(f"record {rid!r}: label_key='predicted' needs 'probabilities'")
        return int(np.argmax(np.asarray(probabilities, dtype=float)))
    if label_key not in record:
        raise ValueError(f"record {rid!r} has no {label_key!r} field (keys: {sorted(record)})")
    value = record[label_key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"record {rid!r}: {label_key}={value!r} is not a class index")
    return int(value)


def accumulate(records: Iterable[Mapping], positive_only: bool = True, label_key: str = "label",
               ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, int]]]:
    """Sum ``|weight|`` and count appearances per (explained class, feature).

    Follows the authors: each song's explanation is for its predicted class (the record's
    ``label``), and only components with weight ``> 0`` are kept (``positive_only=True``; with
    ``False`` every non-zero weight counts, by its absolute value).

    Parameters
    ----------
    records : iterable of dict
        See the module docstring; needs ``id``, the ``label_key`` field and ``weights``. Records
        of skipped songs (a ``skipped`` key) are left out.
    positive_only : bool
        Keep only weights ``> 0`` (the authors' ``negative_components=False``).
    label_key : str
        Record field holding the class index; ``'predicted'`` = argmax of ``probabilities``.

    Returns
    -------
    W : dict[int, dict[str, float]]
        class index -> feature -> sum of ``|w|``.
    C : dict[int, dict[str, int]]
        class index -> feature -> number of songs that kept the feature.

    Notes
    -----
    When a record's ``modality`` map calls a feature ``'lyrics'`` although its name looks like
    an audio component (a lyric word such as ``'other1'``), it is stored under
    ``'<name> (word)'`` so it is never mixed with the audio component (a warning says so).
    """
    weights_sum: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        rid = record.get("id", "<no id>")
        if "skipped" in record:          # a song a run skipped (--skip-bad): nothing to aggregate
            continue
        if "weights" not in record or not isinstance(record["weights"], Mapping):
            raise ValueError(f"record {rid!r} has no 'weights' mapping")
        cls = explained_class(record, label_key)
        modality = record.get("modality") or {}
        for name, weight in record["weights"].items():
            weight = float(weight)
            if not math.isfinite(weight):
                raise ValueError(f"record {rid!r}: weight of {name!r} is {weight}")
            if weight == 0.0 or (positive_only and weight < 0.0):
                continue
            key = str(name)
            if modality.get(name) == "lyrics" and AUDIO_FEATURE.match(key):
                warnings.warn(f"record {rid!r}: lyric word {key!r} looks like an audio component; "
                              f"aggregated as {key + ' (word)'!r}")
                key = key + " (word)"
            weights_sum[cls][key] += abs(weight)
            counts[cls][key] += 1
    return ({c: dict(f) for c, f in sorted(weights_sum.items())},
            {c: dict(f) for c, f in sorted(counts.items())})


def merge_word_variants(W: Mapping[int, Mapping[str, float]], C: Mapping[int, Mapping[str, int]],
                        normalise: Callable[[str], str] = str.lower,
                        ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, int]]]:
    """Merge lyric words that ``normalise`` maps to the same key (sums of W and of C).

    Audio components are left alone. With the default ``str.lower``, ``'Bitch'`` and ``'bitch'``
    become one feature whose ``I_AVG`` is ``(W1 + W2) / (C1 + C2)``. The authors' word bars
    also merged inflections (``'niggas'`` -> ``'nigga'``): pass
    :func:`utils.musiclime.word_forms.lemma_key` as ``normalise`` to do the same.
    """
    merged_w: dict[int, dict[str, float]] = {}
    merged_c: dict[int, dict[str, int]] = {}
    for cls, features in W.items():
        out_w: dict[str, float] = defaultdict(float)
        out_c: dict[str, int] = defaultdict(int)
        for name, value in features.items():
            key = name if AUDIO_FEATURE.match(name) else normalise(name)
            out_w[key] += float(value)
            out_c[key] += int(C[cls][name])
        merged_w[cls], merged_c[cls] = dict(out_w), dict(out_c)
    return merged_w, merged_c


# ---------------------------------------------------------------- 2. measures
def measures(W: Mapping[int, Mapping[str, float]], C: Mapping[int, Mapping[str, int]],
             class_names: Sequence[str]) -> pd.DataFrame:
    """The three global importance measures of every (class, feature) with ``C > 0``.

    Parameters
    ----------
    W, C : dict[int, dict[str, float | int]]
        From :func:`accumulate` or :func:`utils.results.published.load_published_pair`.
    class_names : sequence of str
        ``class_names[i]`` names class index ``i``.

    Returns
    -------
    pandas.DataFrame
        Columns ``class`` (categorical, categories = ``class_names`` in order), ``feature``,
        ``modality`` (``'audio'`` | ``'lyrics'``), ``stem``, ``segment`` (``<NA>`` for words),
        ``W``, ``C`` and

        * ``I_LIME = sqrt(W)``
        * ``I_AVG = W / C``
        * ``I_H = (1 - Hn) * I_LIME`` with ``p[c][j] = I_LIME[c][j] / sum_c' I_LIME[c'][j]``,
          ``H[j] = -sum_c p log2 p`` (``p = 0`` terms skipped) and ``Hn`` = ``H`` min-max
          normalised over all features (all ``Hn = 0`` when every ``H`` is equal).

        Rows are sorted by class index, then feature name.

    Raises
    ------
    ValueError
        Empty aggregates, a class index outside ``class_names``, a feature in W without a
        positive count in C, or a negative W.
    """
    class_names = [str(c) for c in class_names]
    rows = []
    for cls in sorted(W):
        if not 0 <= int(cls) < len(class_names):
            raise ValueError(f"class index {cls} has no name (class_names has {len(class_names)} entries)")
        for feature, w in W[cls].items():
            count = C.get(cls, {}).get(feature, 0)
            if count <= 0:
                raise ValueError(f"class {cls} ({class_names[cls]}), feature {feature!r}: W={w} but C={count}")
            if w < 0:
                raise ValueError(f"class {cls}, feature {feature!r}: W={w} < 0 (W sums |weights|)")
            rows.append((int(cls), str(feature), float(w), int(count)))
    if not rows:
        raise ValueError("empty aggregates: no (class, feature) with a count")
    table = pd.DataFrame(rows, columns=["class_index", "feature", "W", "C"])
    table["I_LIME"] = np.sqrt(table["W"])
    table["I_AVG"] = table["W"] / table["C"]
    totals = table.groupby("feature")["I_LIME"].transform("sum")
    p = np.where(totals > 0, table["I_LIME"] / totals.where(totals > 0, 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    entropy = pd.Series(terms, index=table.index).groupby(table["feature"]).sum()
    span = entropy.max() - entropy.min()
    normalised = (entropy - entropy.min()) / span if span > 0 else entropy * 0.0
    table["I_H"] = (1.0 - table["feature"].map(normalised)) * table["I_LIME"]
    parsed = [parse_feature(f) for f in table["feature"]]
    table["modality"] = [m for m, _, _ in parsed]
    table["stem"] = pd.array([s for _, s, _ in parsed], dtype="string")
    table["segment"] = pd.array([k for _, _, k in parsed], dtype="Int64")
    table["class"] = pd.Categorical.from_codes(table["class_index"], categories=class_names)
    table = table.sort_values(["class_index", "feature"], kind="stable").reset_index(drop=True)
    return table[MEASURE_COLUMNS]


def modality_shares(table: pd.DataFrame, value: str = "W") -> pd.DataFrame:
    """Share of each class's total ``value`` carried by audio and by lyric features.

    Returns a DataFrame indexed by class name (classes with rows only) with columns
    ``audio`` and ``lyrics``; each row sums to 1.
    """
    table = _non_empty(table, value)
    sums = table.groupby(["class", "modality"], observed=True)[value].sum().unstack("modality", fill_value=0.0)
    sums = sums.reindex(columns=["audio", "lyrics"], fill_value=0.0)
    return _row_shares(sums, value)


def stem_shares(table: pd.DataFrame, value: str = "W") -> pd.DataFrame:
    """Share of each class's audio ``value`` carried by each stem (columns = ``STEMS``, rows sum to 1)."""
    table = _non_empty(table, value)
    audio = table[table["modality"] == "audio"]
    if audio.empty:
        raise ValueError("no audio features in the table: stem shares need audio components")
    sums = audio.groupby(["class", "stem"], observed=True)[value].sum().unstack("stem", fill_value=0.0)
    return _row_shares(sums.reindex(columns=list(STEMS), fill_value=0.0), value)


def _non_empty(table: pd.DataFrame, value: str) -> pd.DataFrame:
    if table is None or len(table) == 0:
        raise ValueError("empty aggregate table")
    if value not in table.columns:
        raise ValueError(f"unknown value column {value!r}; choose one of {MEASURE_COLUMNS[5:]}")
    return table


def _row_shares(sums: pd.DataFrame, value: str) -> pd.DataFrame:
    totals = sums.sum(axis=1)
    if (totals <= 0).any():
        raise ValueError(f"classes {list(totals[totals <= 0].index)} have zero total {value}")
    shares = sums.div(totals, axis=0)
    shares.index = shares.index.astype(str)
    shares.columns = shares.columns.astype(str)
    return shares


# ---------------------------------------------------------------- 4. the table as CSV
def write_measures(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save a measures table as CSV (creating the folder, written atomically); returns the path.

    Refuses (``ValueError`` naming it) to replace a file that starts like JSON: a records file is
    only ever rewritten by the record store.
    """
    target = Path(path)
    if target.is_file():
        with open(target, "rb") as handle:
            if handle.read(64).lstrip().startswith((b"{", b"[")):
                raise ValueError(f"{target} holds JSON (records?), not a measures table: it was left untouched; "
                                 "choose another path for the measures CSV")
    with atomic_path(path) as part:
        table.to_csv(part, index=False)
    return Path(path)


def read_measures(path: str | os.PathLike, class_names: Sequence[str]) -> pd.DataFrame:
    """Read a CSV written by :func:`write_measures` back into the :func:`measures` dtypes."""
    table = pd.read_csv(path, keep_default_na=False, na_values={"stem": [""], "segment": [""]})
    table["feature"] = table["feature"].astype(str)
    table["class"] = pd.Categorical(table["class"], categories=[str(c) for c in class_names])
    if table["class"].isna().any():
        raise ValueError(f"{path}: classes outside {list(class_names)}")
    table["stem"] = table["stem"].astype("string")
    table["segment"] = table["segment"].astype("Int64")
    return table
