"""Which lyric words count as one: the authors' lower-case + lemma merge of word features.

The authors' published word bar charts merge a word's forms before summing ``W`` and ``C``: from
their genre multimodal pickles (5,000 samples), hip hop shows ``nigga`` = (nigga + niggas) =
0.150 and ``fuck`` = (fuck + fucking + Fuck) = 0.090, punk shows ``drink`` = (Drinking +
drinking) = 0.035 and ``scar`` = (scars) = 0.034 (``I_AVG = W / C`` after summing W and C over the
forms; the label is the lemma). Their pickles keep the raw case, so the merge happened at drawing
time. :func:`lemma_key` gives that merge key, :func:`merge_table_words` applies it to a
:func:`utils.musiclime.aggregate.measures` table.

Lemmatiser: ``simplemma`` (MIT, pure Python, no dependencies, its English dictionary ships in the
wheel, so it works offline). It is a context-free dictionary lookup: one lemma per word form, the
same answer every time, which is what a merge of bag-of-words features needs. Checked on the
published pickles it reproduces all four values above to the printed digit, and the hip hop top
20 and the pop top 30 bars word for word and value for value; the one label that differs is pop's
``oldest``, which simplemma (dictionary covers adjectives) shows as ``old`` (same value: no other
form merges with it). ``lemminflect`` was tried and rejected: it needs a part-of-speech tag
per word, which bag-of-words features do not carry; without one (noun / verb guesses) it leaves
``fucking`` and ``niggas`` unmerged (hip hop ``nigga`` 0.191, ``fuck`` 0.060: wrong) and its
out-of-vocabulary rules produce non-words (``was`` -> ``wa``, ``goes`` -> ``goe``).
"""
from __future__ import annotations

from typing import Callable

import pandas as pd

WORD_MERGES: tuple[str, ...] = ("lemma", "case", "none")
"""How lyric word features are merged before drawing: ``'lemma'`` (lower-case + lemma, the
authors' word bars; the default), ``'case'`` (lower-case only), ``'none'`` (as aggregated)."""

LEMMA_LANGUAGE = "en"


def simplemma_lemma(word: str) -> str:
    """The English lemma of ``word`` by ``simplemma`` (the word itself when it is not in the dictionary)."""
    import simplemma

    return simplemma.lemmatize(word, lang=LEMMA_LANGUAGE)


def lemma_key(word: str, lemmatise: Callable[[str], str] | None = None) -> str:
    """Merge key of a lyric word: its lemma of the lower-cased word, lower-cased.

    Parameters
    ----------
    word : str
        A lyric word feature as aggregated (raw case), e.g. ``'Drinking'``.
    lemmatise : callable, optional
        ``str -> str`` lemmatiser; default :func:`simplemma_lemma`.

    Returns
    -------
    str
        e.g. ``'drink'``; ``'niggas'`` -> ``'nigga'``, ``'Fuck'`` -> ``'fuck'``. A word whose lemma
        is empty (or only whitespace) is returned unchanged, i.e. kept unmerged.
    """
    lemma = (lemmatise or simplemma_lemma)(word.lower())
    lemma = lemma.strip().lower() if isinstance(lemma, str) else ""
    return lemma if lemma else word


def word_merge_key(merge: str | Callable[[str], str] | None) -> Callable[[str], str] | None:
    """The ``str -> str`` merge key for a :data:`WORD_MERGES` name (``None`` for ``'none'``).

    A callable is passed through (a custom normaliser); ``None`` means no merge.
    """
    if merge is None or callable(merge):
        return merge
    if merge == "lemma":
        return lemma_key
    if merge == "case":
        return str.lower
    if merge == "none":
        return None
    raise ValueError(f"merge_words must be one of {WORD_MERGES} or a callable, got {merge!r}")


def merge_table_words(table: pd.DataFrame, merge: str | Callable[[str], str] | None = "lemma") -> pd.DataFrame:
    """A measures table with its lyric words merged: W and C summed over the merged forms, then
    every measure recomputed (``I_AVG = W / C`` of the sums; ``I_H`` over the merged features).

    Parameters
    ----------
    table : DataFrame
        :func:`utils.musiclime.aggregate.measures` output (columns ``class`` (categorical),
        ``feature``, ``W``, ``C``, ...).
    merge : str or callable or None
        See :func:`word_merge_key`. ``'none'`` / ``None`` returns ``table`` itself.

    Returns
    -------
    DataFrame
        Same columns; a merged word's ``feature`` is its key (the lemma for ``'lemma'``). Audio
        components are never merged.
    """
    from utils.musiclime.aggregate import measures, merge_word_variants

    key = word_merge_key(merge)
    if key is None:
        return table
    if table is None or len(table) == 0:
        raise ValueError("empty aggregate table: nothing to merge")
    if not hasattr(table["class"], "cat"):
        raise ValueError("table['class'] must be categorical (a utils.musiclime.aggregate.measures table)")
    names = [str(c) for c in table["class"].cat.categories]
    weights: dict[int, dict[str, float]] = {}
    counts: dict[int, dict[str, int]] = {}
    for code, feature, w, c in zip(table["class"].cat.codes, table["feature"], table["W"], table["C"]):
        weights.setdefault(int(code), {})[str(feature)] = float(w)
        counts.setdefault(int(code), {})[str(feature)] = int(c)
    weights, counts = merge_word_variants(weights, counts, key)
    return _carry_bootstrap(measures(weights, counts, names), table, key)


def _carry_bootstrap(merged: pd.DataFrame, table: pd.DataFrame, key: Callable[[str], str]) -> pd.DataFrame:
    """Keep the bootstrap columns that stay true after merging: each class's ``class_songs``, and
    the ``I_AVG`` interval of a feature made of one form only (``I_AVG = W / C`` is unchanged for
    it). A merged word's interval, and every ``I_LIME`` / ``I_H`` interval (they depend on the other
    features of the class), would need the bootstrap redone on merged records: left NaN (not
    marked uncertain)."""
    from utils.musiclime.aggregate import AUDIO_FEATURE

    if "class_songs" in table.columns:
        songs = table.groupby("class", observed=True)["class_songs"].first()
        merged["class_songs"] = merged["class"].astype(str).map({str(k): int(v) for k, v in songs.items()})
    if "I_AVG_lo" not in table.columns:
        return merged
    keys = [f if AUDIO_FEATURE.match(str(f)) else key(str(f)) for f in table["feature"]]
    original = pd.DataFrame({"class": table["class"].astype(str).to_numpy(), "key": keys,
                             "lo": table["I_AVG_lo"].to_numpy(), "hi": table["I_AVG_hi"].to_numpy()})
    forms = original.groupby(["class", "key"])["lo"].transform("size")
    single = original[forms == 1].set_index(["class", "key"])
    index = pd.MultiIndex.from_arrays([merged["class"].astype(str), merged["feature"].astype(str)])
    merged["I_AVG_lo"] = single["lo"].reindex(index).to_numpy()
    merged["I_AVG_hi"] = single["hi"].reindex(index).to_numpy()
    return merged
