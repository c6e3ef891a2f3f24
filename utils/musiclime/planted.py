"""The synthetic corpus's planted cues, and where they land in local and global explanations.

The synthetic corpus (:mod:`utils.dataset_related.synth`) plants one audio cue (a stem inside
one segment, e.g. ``bass1``) and/or one lyric cue word per genre (and valence words per
emotion) and records them in ``metadata.jsonl``. This module reads them and scores
explanations against them:

* songs and cues -- :func:`genre_cues`, :func:`cue_songs`, :func:`example_songs`, :func:`describe_cues`;
* one local explanation -- :func:`cue_rank` (where a cue ranks), :func:`is_hit` (in the top ``k``
  with positive weight), :func:`modality_margin` (do ignored lyrics get weight?); the planted-cue
  check of :mod:`utils.musiclime.sanity` runs these over many songs;
* a global run -- :func:`planted_cues` (class -> planted features), :func:`planted_cue_summary`
  (per class: a planted cue among the class's top global features?), :func:`song_planted_summary`
  (per song), :func:`compare_planted` and :func:`describe_planted` (several runs at once).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from utils.config import TASKS
from utils.musiclime.aggregate import AUDIO_FEATURE, parse_feature
from utils.config import MODES
from utils.musiclime.explanation import Explanation

TOP_K = 3
"""A cue is found when it ranks in the top ``TOP_K`` features by positive weight."""


# ---------------------------------------------------------------- songs and cues
def genre_cues(metadata: Mapping[str, dict], song_id: str, modalities: Sequence[str] = ("audio", "lyrics")) -> list[dict]:
    """The planted genre cues of ``song_id`` whose modality is in ``modalities``.

    Each cue is a metadata dict: audio cues carry ``component`` (e.g. ``'bass1'``), lyric
    cues ``word``.
    """
    if song_id not in metadata:
        raise KeyError(f"song id {song_id!r} has no planted-cue metadata (is this the corpus the songs come from?)")
    return [c for c in metadata[song_id]["genre_cues"] if c["modality"] in modalities]


def cue_songs(frame: pd.DataFrame, metadata: Mapping[str, dict], modalities: Sequence[str] = ("audio", "lyrics"),
              songs_per_class: int | None = None) -> pd.DataFrame:
    """Songs of ``frame`` with at least one genre cue of ``modalities``, in file order.

    Parameters
    ----------
    frame : a split DataFrame (``id``, ``primary_short``, ``lyrics``).
    metadata : :func:`utils.dataset_related.synth.read_metadata` of the same corpus.
    modalities : cue modalities that qualify a song.
    songs_per_class : keep the first ``n`` qualifying songs of each genre (all when None).
        The choice depends only on the file order, never on the model or its explanation.
    """
    if songs_per_class is not None and songs_per_class < 1:
        raise ValueError(f"songs_per_class must be >= 1 or None, got {songs_per_class}")
    keep = [bool(genre_cues(metadata, song_id, modalities)) for song_id in frame["id"]]
    selected = frame[np.asarray(keep, dtype=bool)]
    if songs_per_class is not None:
        selected = selected.groupby("primary_short", sort=False).head(songs_per_class)
    return selected.reset_index(drop=True)


EXAMPLE_GENRES = ("hip hop", "folk", "rock", "electronic", "punk", "pop", "heavy music", "rhythm music",
                  "alternative rock")
"""Genres for example songs, in order: an audio cue, a lyric cue, both, and so on."""


def example_songs(frame: pd.DataFrame, n: int, genres: Sequence[str] = EXAMPLE_GENRES) -> pd.DataFrame:
    """The first song (file order) of each of the first ``n`` of ``genres`` present in ``frame``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    firsts = frame.groupby("primary_short", sort=False).head(1).set_index("primary_short", drop=False)
    chosen = [g for g in genres if g in firsts.index][:n]
    if not chosen:
        raise ValueError(f"no song of genres {list(genres)} in the frame")
    return firsts.loc[chosen].reset_index(drop=True)


def describe_cues(metadata: Mapping[str, dict], song_id: str) -> str:
    """One line naming the planted genre cues of a song, e.g. ``'hip hop: audio bass1 (boom808)'``."""
    record = metadata[song_id] if song_id in metadata else None
    if record is None:
        raise KeyError(f"song id {song_id!r} has no planted-cue metadata")
    parts = [f"audio {c['component']} ({c['sound']}, {c['start_s']:.1f}-{c['end_s']:.1f} s)" if c["modality"] == "audio"
             else f"lyric word '{c['word']}'" for c in record["genre_cues"]]
    return f"{record['genre']}: " + (", ".join(parts) if parts else "no planted genre cue")


# ---------------------------------------------------------------- scoring one explanation
def _matches(feature: dict, cue: dict) -> bool:
    if cue["modality"] == "audio":
        return feature["modality"] == "audio" and feature["name"] == cue["component"]
    return feature["modality"] == "lyrics" and feature["name"].lower() == cue["word"].lower()


def cue_rank(explanation: Explanation, cue: dict, label: int | None = None) -> dict:
    """Where a planted cue lands in the explanation of ``label``.

    Features are ranked by signed weight, largest first, over all features of the
    explanation (both modalities in ``'both'`` mode). A lyric cue matches every feature
    spelling the word (case-insensitive: a line-initial word is capitalised); the best
    one counts.

    Returns
    -------
    dict
        ``rank`` (1-based, over all features), ``rank_in_modality`` (1-based, among the
        cue's modality), ``weight`` of the cue feature (NaN if absent) and ``feature``
        (its name; None if the explanation has no such feature).
    """
    ranked = explanation.ranked(label, order="weight")
    for rank, feature in enumerate(ranked, start=1):
        if _matches(feature, cue):
            same = [f for f in ranked if f["modality"] == feature["modality"]]
            return {"rank": rank, "rank_in_modality": 1 + same.index(feature), "weight": feature["weight"],
                    "feature": feature["name"]}
    return {"rank": None, "rank_in_modality": None, "weight": float("nan"), "feature": None}


def is_hit(rank: dict, k: int = TOP_K) -> bool:
    """A cue is found when its weight is positive and it ranks in the top ``k``."""
    return rank["rank"] is not None and rank["weight"] > 0 and rank["rank"] <= k


def modality_margin(explanation: Explanation, label: int | None = None) -> dict:
    """``max |lyric weight|`` against the best (largest signed) audio weight of ``label``.

    For a model that never sees lyrics the lyric weights are regression noise, so
    ``lyrics_ignored`` (max |lyric weight| < best audio weight) should hold.
    """
    rows = explanation.ranked(label, order="weight")
    lyric = [abs(r["weight"]) for r in rows if r["modality"] == "lyrics"]
    audio = [r["weight"] for r in rows if r["modality"] == "audio"]
    if not lyric or not audio:
        raise ValueError(f"modality_margin needs an explanation of both modalities, got mode "
                         f"{explanation.mode!r}")
    max_lyric, best_audio = float(max(lyric)), float(max(audio))
    return {"max_abs_lyric_weight": max_lyric, "best_audio_weight": best_audio,
            "lyrics_ignored": bool(max_lyric < best_audio)}



# ---------------------------------------------------------------- global: the top features of each class
def planted_cues(metadata: Mapping[str, Mapping], task: str = "genre") -> dict[str, set[str]]:
    """The features the synthetic corpus planted as evidence of each class.

    Parameters
    ----------
    metadata : dict
        :func:`utils.dataset_related.synth.read_metadata` (id -> planted cues).
    task : {'genre', 'emotion'}
        Genre: the audio cue component (``'bass1'`` for hip hop) and the cue words of each
        genre. Emotion: the valence words (the energy cue is the whole drum stem's tempo and
        loudness, not one component, so it is not listed).

    Returns
    -------
    dict[str, set[str]]
        class name -> planted feature names (audio component names and lowercase words).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    planted: dict[str, set[str]] = {}
    for song_id, meta in metadata.items():
        cls = meta.get("genre" if task == "genre" else "emotion")
        if cls is None:
            raise ValueError(f"metadata of {song_id!r} has no {task} class")
        cues = meta.get("genre_cues" if task == "genre" else "emotion_cues") or []
        for cue in cues:
            if cue.get("modality") == "audio" and cue.get("component"):
                planted.setdefault(cls, set()).add(cue["component"])
            elif cue.get("modality") == "lyrics" and cue.get("word"):
                planted.setdefault(cls, set()).add(cue["word"].lower())
    return planted


def _in_mode(features: Iterable[str], mode: str) -> set[str]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    keep = {"both": ("audio", "lyrics"), "audio": ("audio",), "lyrical": ("lyrics",)}[mode]
    return {f for f in features if parse_feature(f)[0] in keep}


def planted_cue_summary(table: pd.DataFrame, planted: Mapping[str, Iterable[str]], value: str = "I_AVG",
                        ks: Sequence[int] = (1, 3), mode: str = "both",
                        records: Iterable[Mapping] | None = None) -> pd.DataFrame:
    """Per class: is a planted cue among the class's top-k features of the global ranking?

    Each class's features are ranked by ``value`` (descending, ties by name, as
    :func:`utils.results.figures.top_features`). A class counts as a hit at ``k`` when any of its
    planted features (restricted to the run's ``mode``) is in its top ``k``.

    Parameters
    ----------
    table : DataFrame
        :func:`utils.musiclime.records.aggregate_records` output (lyric words compared as they are: aggregate with
        ``merge_case=True`` to match lowercase planted words).
    planted : dict
        class name -> planted features (:func:`planted_cues`).
    value : {'I_AVG', 'I_H', 'I_LIME', 'W', 'C'}
        The ranking measure. ``I_AVG`` (default; the paper's heatmaps and bars) is the mean
        weight over the songs that kept the feature. ``I_H`` is less reliable on few songs per
        class: a word kept by one song of one class has zero entropy and keeps its whole
        ``I_LIME``, while a planted component that other classes' explanations also keep with
        small positive weights is pushed down by its entropy (seen on the tiny genre models:
        with 5-8 songs per class, heavy music's ``drums6`` ranks 4th-10th by ``I_H``, 1st by ``I_AVG``).
    ks : sequence of int
        The ``k`` of the ``in_top<k>`` columns.
    mode : {'both', 'audio', 'lyrical'}
        The run's explainer mode: only planted features of its modalities count.
    records : iterable of dict, optional
        The run's records; when given, a ``songs`` column counts the songs explained as each
        class (their ``label``).

    Returns
    -------
    DataFrame
        One row per class with a planted cue in this mode (class order), then a row
        ``'overall'``. Columns: ``class``, ``planted`` (comma-joined), [``songs``],
        ``top_feature`` (rank 1), ``best_planted``, ``best_rank`` (1-based rank of the best
        planted feature, NaN if none was kept), ``in_top<k>`` (1.0 / 0.0; NaN when no song was
        explained as the class). The overall row holds, per ``in_top<k>``, the fraction of
        classes with a hit among the classes with songs (and the total of ``songs``).
    """
    if value not in ("W", "C", "I_LIME", "I_AVG", "I_H"):
        raise ValueError(f"unknown value {value!r}; choose W, C, I_LIME, I_AVG or I_H")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive ints, got {ks}")
    names = list(table["class"].cat.categories)
    unknown = sorted(set(planted) - set(names))
    if unknown:
        raise ValueError(f"planted cues for unknown classes {unknown}; the table's classes are {names}")
    counts = None
    if records is not None:
        labels = [int(r["label"]) for r in records]
        counts = {name: labels.count(i) for i, name in enumerate(names)}
    rows = []
    for cls in names:
        cues = _in_mode(planted.get(cls, ()), mode)
        if not cues:
            continue
        ranked = table[table["class"] == cls].sort_values([value, "feature"], ascending=[False, True], kind="stable")
        features = ranked["feature"].tolist()
        row: dict[str, Any] = {"class": cls, "planted": ", ".join(sorted(cues)),
                               **({"songs": counts[cls]} if counts is not None else {}),
                               "top_feature": features[0] if features else None,
                               "best_planted": None, "best_rank": np.nan}
        ranks = [features.index(f) + 1 for f in cues if f in features]
        if ranks:
            row["best_rank"] = float(min(ranks))
            row["best_planted"] = features[min(ranks) - 1]
        for k in ks:
            row[f"in_top{k}"] = np.nan if not features else float(bool(ranks) and min(ranks) <= k)
        rows.append(row)
    if not rows:
        raise ValueError(f"no class has a planted cue in mode {mode!r}")
    summary = pd.DataFrame(rows)
    overall: dict[str, Any] = {"class": "overall", "planted": "",
                               **({"songs": int(summary["songs"].sum())} if counts is not None else {}),
                               "top_feature": None, "best_planted": None, "best_rank": np.nan}
    for k in ks:
        overall[f"in_top{k}"] = float(summary[f"in_top{k}"].mean()) if summary[f"in_top{k}"].notna().any() else np.nan
    return pd.concat([summary, pd.DataFrame([overall])], ignore_index=True)


def song_planted_summary(records: Iterable[Mapping], metadata: Mapping[str, Mapping], class_names: Sequence[str],
                         task: str = "genre", ks: Sequence[int] = (1, 3), mode: str = "both") -> pd.DataFrame:
    """Per song instead of per class: how often a correctly predicted song's own planted cue is
    among its top-k positive local features.

    Only songs explained as their true class count (an explanation of a wrong class has no
    reason to point at the true class's cue), and only cues of the run's ``mode``. Words
    are compared lowercase.

    Returns
    -------
    DataFrame
        One row per class with such songs, then ``'overall'``; columns ``class``, ``songs``
        (correctly predicted songs with a planted cue) and ``in_top<k>`` (fraction of them).
    """
    class_names = [str(c) for c in class_names]
    ks = [int(k) for k in ks]
    hits: dict[str, list[list[bool]]] = {}
    for record in records:
        meta = metadata.get(record["id"])
        if meta is None:
            raise ValueError(f"record {record['id']!r} has no planted-cue metadata")
        true_name = meta.get("genre" if task == "genre" else "emotion")
        if true_name not in class_names or record.get("label") != class_names.index(true_name):
            continue
        cues = _in_mode(planted_cues({record["id"]: meta}, task).get(true_name, ()), mode)
        if not cues:
            continue
        positive = sorted(((w, n) for n, w in record["weights"].items() if w > 0), key=lambda p: (-p[0], p[1]))
        ranked = [n if AUDIO_FEATURE.match(n) else n.lower() for _, n in positive]
        hits.setdefault(true_name, []).append([any(f in cues for f in ranked[:k]) for k in ks])
    rows = [{"class": cls, "songs": len(hits[cls]),
             **{f"in_top{k}": float(np.mean([h[i] for h in hits[cls]])) for i, k in enumerate(ks)}}
            for cls in class_names if cls in hits]
    every = [h for cls in hits for h in hits[cls]]
    rows.append({"class": "overall", "songs": len(every),
                 **{f"in_top{k}": float(np.mean([h[i] for h in every])) if every else np.nan
                    for i, k in enumerate(ks)}})
    return pd.DataFrame(rows)


def compare_planted(runs: Mapping[str, tuple[pd.DataFrame, Sequence[Mapping], str]], planted: Mapping[str, Iterable[str]],
                    values: Sequence[str] = ("I_AVG", "I_H"), ks: Sequence[int] = (1, 3)) -> pd.DataFrame:
    """:func:`planted_cue_summary` of several runs and ranking measures in one long table.

    Parameters
    ----------
    runs : dict
        run name -> (measures table, its records, explainer mode).
    planted : dict
        class -> planted features (:func:`planted_cues`).
    values : ranking measures to compare.

    Returns
    -------
    DataFrame
        Columns ``run``, ``value`` and the summary's columns, one block per (run, value).
    """
    blocks = []
    for name, (table, records, mode) in runs.items():
        for value in values:
            summary = planted_cue_summary(table, planted, value=value, ks=ks, mode=mode, records=records)
            blocks.append(summary.assign(run=name, value=value))
    frame = pd.concat(blocks, ignore_index=True)
    return frame[["run", "value"] + [c for c in frame.columns if c not in ("run", "value")]]


def describe_planted(summary: pd.DataFrame) -> str:
    """One sentence per (run, value) of :func:`compare_planted`: in how many classes (with songs)
    a planted cue ranks first / in the top k."""
    ks = [c for c in summary.columns if c.startswith("in_top")]
    lines = []
    for (run, value), block in summary.groupby(["run", "value"], sort=False):
        classes = block[(block["class"] != "overall") & block[ks[0]].notna()]
        if classes.empty:
            lines.append(f"{run} ({value}): no class with a planted cue was predicted")
            continue
        parts = [f"{int(classes[k].sum())}/{len(classes)} in the {k.replace('in_top', 'top-')}" for k in ks]
        lines.append(f"{run} ({value} ranking): planted cue " + ", ".join(parts) + " of the classes predicted")
    return "\n".join(lines)
