"""How sure is a global measure? A bootstrap over songs of I_AVG, I_LIME and I_H.

The global measures (:func:`utils.musiclime.aggregate.measures`) sum over the songs explained
for a class, so their uncertainty is the songs': which songs happened to be in the split.
:func:`bootstrap_measures` resamples songs with replacement -- within each explained class
(stratified: every replicate has as many songs per class as the data, so a small class cannot
vanish from a replicate and each class's interval rests on its own song count) -- recomputes
``W``, ``C`` and the three measures exactly as :func:`~utils.musiclime.aggregate.measures` does
(I_H's entropy over classes included), ``B`` times with a seeded generator, and adds percentile
intervals (default 95 %) to the measures table: ``I_AVG_lo`` / ``I_AVG_hi``, ``I_LIME_lo`` ...,
``I_H_hi``, and ``class_songs`` (songs explained for the class).

In a replicate where no resampled song kept a feature, its ``W`` is 0 and so are its three
measures (no evidence for it), so a feature kept by few songs gets an interval down to 0.

*Uncertain cell* (:func:`uncertain`): the interval reaches 0 (``lo <= 0``) or is wider than the
estimate itself (``(hi - lo) > REL_WIDTH * value``, default ``REL_WIDTH = 1``). *Too few songs*
(:func:`too_few_songs`): a class with fewer than :data:`MIN_SONGS` songs, for which percentile
intervals of a resampled sum are themselves unreliable; the figures say so in their title.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from utils.musiclime.aggregate import accumulate, explained_class, measures, merge_word_variants

BOOTSTRAP_MEASURES = ("I_AVG", "I_LIME", "I_H")
BOOTSTRAP_SAMPLES = 200
MIN_SONGS = 10
"""Fewest songs of a class for which its bootstrap intervals are shown without a warning."""
REL_WIDTH = 1.0
"""A cell is uncertain when its interval is wider than ``REL_WIDTH`` times its value (or reaches 0)."""


def _song_contributions(records: Sequence[Mapping], class_names: Sequence[str], positive_only: bool,
                        normalise: Callable[[str], str] | None, label_key: str):
    """Per song: its class and its ``|w|`` / kept-count row over all features (``(songs, F)`` arrays)."""
    classes, rows = [], []
    for record in records:
        if "skipped" in record:
            continue
        weights, counts = accumulate([record], positive_only=positive_only, label_key=label_key)
        if normalise is not None:
            weights, counts = merge_word_variants(weights, counts, normalise)
        cls = explained_class(record, label_key)
        if not 0 <= cls < len(class_names):
            raise ValueError(f"record {record.get('id')!r}: class index {cls} has no name "
                             f"(class_names has {len(class_names)} entries)")
        classes.append(cls)
        rows.append((weights.get(cls, {}), counts.get(cls, {})))
    features = sorted({name for w, _ in rows for name in w})
    column = {name: j for j, name in enumerate(features)}
    W = np.zeros((len(rows), len(features)))
    C = np.zeros((len(rows), len(features)))
    for s, (w, c) in enumerate(rows):
        for name, value in w.items():
            W[s, column[name]] = value
            C[s, column[name]] = c[name]
    return np.asarray(classes, dtype=np.int64), features, W, C


def replicate_measures(multiplicity: np.ndarray, classes: np.ndarray, W: np.ndarray, C: np.ndarray,
                       n_classes: int) -> dict[str, np.ndarray]:
    """The three measures for songs weighted by ``multiplicity`` (``(B, songs)`` counts).

    Returns ``{'I_AVG', 'I_LIME', 'I_H'}`` of shape ``(B, n_classes, F)`` (0 where ``C = 0``),
    the same formulas as :func:`utils.musiclime.aggregate.measures`; all-ones multiplicities give
    exactly its values.
    """
    B, F = multiplicity.shape[0], W.shape[1]
    w_sum = np.zeros((B, n_classes, F))
    c_sum = np.zeros((B, n_classes, F))
    for cls in range(n_classes):
        mine = classes == cls
        if mine.any():
            w_sum[:, cls] = multiplicity[:, mine] @ W[mine]
            c_sum[:, cls] = multiplicity[:, mine] @ C[mine]
    i_lime = np.sqrt(w_sum)
    i_avg = np.divide(w_sum, c_sum, out=np.zeros_like(w_sum), where=c_sum > 0)
    totals = i_lime.sum(axis=1, keepdims=True)                                   # (B, 1, F)
    p = np.divide(i_lime, totals, out=np.zeros_like(i_lime), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)   # (B, F)
    present = totals[:, 0] > 0
    low = np.where(present, entropy, np.inf).min(axis=1, keepdims=True)
    high = np.where(present, entropy, -np.inf).max(axis=1, keepdims=True)
    span = high - low
    normalised = np.divide(entropy - low, span, out=np.zeros_like(entropy), where=span > 0)
    i_h = (1.0 - normalised[:, None, :]) * i_lime
    return {"I_AVG": i_avg, "I_LIME": i_lime, "I_H": i_h}


def bootstrap_measures(records: Iterable[Mapping], class_names: Sequence[str], *, samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = 0, level: float = 0.95, positive_only: bool = True, merge_case: bool = False,
                       normalise: Callable[[str], str] | None = None, label_key: str = "label") -> pd.DataFrame:
    """The measures table of ``records`` with bootstrap intervals over songs.

    Parameters
    ----------
    records : iterable of dict
        One local explanation per song (:mod:`utils.musiclime.records`); skipped songs are left out.
    class_names : sequence of str
    samples : int
        Bootstrap replicates ``B`` (>= 2).
    seed : int
        Seeds the resampling: the same seed gives the same intervals.
    level : float
        Coverage of the percentile intervals, in (0, 1).
    positive_only, merge_case, label_key
        As :func:`utils.musiclime.aggregate.accumulate` / :func:`~utils.musiclime.records.aggregate_records`.
    normalise : callable, optional
        Merge lyric words mapped to the same key (e.g. a lemmatiser;
        :func:`~utils.musiclime.aggregate.merge_word_variants`) before resampling; ``merge_case``
        is ``normalise=str.lower``. Words must be merged here, not in the finished table: the
        intervals of a merged word are not derived from its forms' intervals.

    Returns
    -------
    pandas.DataFrame
        :func:`~utils.musiclime.aggregate.measures`'s columns, then ``class_songs`` and
        ``<measure>_lo`` / ``<measure>_hi`` for I_AVG, I_LIME and I_H.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 2:
        raise ValueError(f"samples (bootstrap replicates) must be an int >= 2, got {samples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    records = list(records)
    class_names = [str(c) for c in class_names]
    if merge_case and normalise is not None:
        raise ValueError("give merge_case=True or normalise=..., not both")
    normalise = str.lower if merge_case else normalise
    weights, counts = accumulate(records, positive_only=positive_only, label_key=label_key)
    if normalise is not None:
        weights, counts = merge_word_variants(weights, counts, normalise)
    table = measures(weights, counts, class_names)
    classes, features, W, C = _song_contributions(records, class_names, positive_only, normalise, label_key)
    rng = np.random.default_rng(seed)
    multiplicity = np.zeros((samples, len(classes)))
    for cls in np.unique(classes):
        members = np.flatnonzero(classes == cls)
        draws = rng.integers(0, len(members), size=(samples, len(members)))
        for b in range(samples):
            multiplicity[b, members] = np.bincount(draws[b], minlength=len(members))
    replicates = replicate_measures(multiplicity, classes, W, C, len(class_names))
    index = {name: j for j, name in enumerate(features)}
    class_index = table["class"].cat.codes.to_numpy()
    feature_index = table["feature"].map(index).to_numpy()
    songs = np.bincount(classes, minlength=len(class_names))
    table["class_songs"] = songs[class_index]
    tail = 100 * (1 - level) / 2
    for measure in BOOTSTRAP_MEASURES:
        values = replicates[measure][:, class_index, feature_index]                  # (B, rows)
        table[f"{measure}_lo"], table[f"{measure}_hi"] = np.percentile(values, [tail, 100 - tail], axis=0)
    return table


def uncertain(table: pd.DataFrame, value: str = "I_AVG", rel_width: float = REL_WIDTH) -> pd.Series:
    """Boolean per row: the ``value`` interval reaches 0 or is wider than ``rel_width`` times the value.

    All False when the table has no intervals (``<value>_lo`` / ``_hi``).
    """
    lo, hi = f"{value}_lo", f"{value}_hi"
    if lo not in table.columns or hi not in table.columns:
        return pd.Series(False, index=table.index)
    return (table[lo] <= 0) | ((table[hi] - table[lo]) > rel_width * table[value])


def too_few_songs(table: pd.DataFrame, cls: str, minimum: int = MIN_SONGS) -> int | None:
    """The song count of class ``cls`` when it is below ``minimum`` (None: enough, or no ``class_songs``)."""
    if "class_songs" not in table.columns:
        return None
    rows = table[table["class"] == cls]
    if rows.empty:
        return None
    songs = int(rows["class_songs"].iloc[0])
    return songs if songs < minimum else None
