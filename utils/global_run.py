"""Global MusicLIME runs: explain every song of a split, aggregate, check against the planted cues.

Read top to bottom:

1. :func:`select_songs` picks the songs of a split (all, or the first ``k`` per class).
2. :func:`global_explain` explains each song's *predicted* class with MusicLIME (as the authors'
   global runs did) and appends one record per song through :func:`utils.musiclime.aggregate.run_global`:
   append-only, resumable after a kill, shardable (``shard='2/8'``), with a tqdm bar and ETA.
   Every record carries the run settings (task, model kind, modality, num_samples, seed,
   separator, ...), so resuming a file with other settings is refused.
3. :func:`aggregate_records` merges record files (e.g. one per shard) and returns the tidy
   measures table (``I_LIME``, ``I_AVG``, ``I_H`` per class and feature); :func:`write_measures`
   saves it as CSV.
4. :func:`planted_cues` / :func:`planted_cue_summary` / :func:`song_planted_summary` say how often
   the top features of each class are the cues the synthetic corpus planted there.
5. :func:`word_embeddings` reads word vectors off the lyrics model's input embedding matrix
   (for the class-vs-class word maps of :func:`utils.results.figures.plot_word_map`).

Command line (run from the project root)::

    python -m utils.global_run --profile tiny --task genre --kind multimodal --modality both \\
        --split test --num-samples 1000 --records results/global/genre_multimodal_both.jsonl \\
        [--shard 2/8] [--limit N] [--songs-per-class K] [--separator oracle|hpss|openunmix] \\
        [--corpus-dir data/synthetic] [--run-dir runs/tiny] [--seed 0] [--batch-size 250] [--threads 1] \\
        [--measures results/global/genre_multimodal_both.csv]
    python -m utils.global_run merge --task genre --records shard1.jsonl shard2.jsonl ... \\
        --out results/global/genre_multimodal_both.csv [--merged-records all.jsonl] [--merge-case]

Seeds: song ``id`` is explained with the seed ``SeedSequence([seed, crc32(id)])``, so a song's
explanation does not depend on which shard or position it ran in: sharded == unsharded.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from utils.musiclime.aggregate import (AUDIO_FEATURE, accumulate, append_record, load_records, measures, merge_records,
                        merge_word_variants, parse_feature, run_global, settings_conflict)
from utils.config import LABEL_COLUMNS, MODEL_KINDS, TASKS, Profile
from utils.musiclime.sampling import SAMPLING

SEPARATORS = ("oracle", "hpss", "openunmix")
MODALITIES = ("both", "audio", "lyrical")
KIND_MODALITIES = {"multimodal": MODALITIES, "audio": ("audio",), "lyrics": ("lyrical",)}
"""Which explainer modes each model kind supports (a unimodal model is explained on its modality)."""

PAPER_RUNS: tuple[tuple[str, str], ...] = (("multimodal", "both"), ("audio", "audio"), ("lyrics", "lyrical"))
"""(model kind, modality) of the three global runs: multimodal model on both modalities, the
audio model on audio components, the lyrics model on words."""


# ---------------------------------------------------------------- 1. songs
def select_songs(frame: pd.DataFrame, task: str, songs_per_class: int | None = None,
                 limit: int | None = None) -> pd.DataFrame:
    """The songs to explain: the first ``songs_per_class`` of each class (split-file order), then
    the first ``limit`` of those. Deterministic; ``None`` keeps all.

    Parameters
    ----------
    frame : DataFrame
        A split (:func:`utils.dataset_related.splits.read_split`), with ``id`` and the task's label column.
    task : {'genre', 'emotion'}
    songs_per_class, limit : int, optional
        Must be >= 1 when given.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    for name, value in (("songs_per_class", songs_per_class), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    column = LABEL_COLUMNS[task]
    if column not in frame.columns:
        raise ValueError(f"the split has no {column!r} column (task {task!r})")
    chosen = frame
    if songs_per_class is not None:
        chosen = frame[frame.groupby(column, sort=False).cumcount() < songs_per_class]
    if limit is not None:
        chosen = chosen.head(limit)
    return chosen.reset_index(drop=True)


def song_seed(seed: int, song_id: str) -> int:
    """Per-song explainer seed from the run seed and the id: ``SeedSequence([seed, crc32(id)])``."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(str(song_id).encode("utf-8"))]).generate_state(1)[0])


def make_separator(name: str, corpus_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
    """A :mod:`utils.musiclime.separation` separator by name; ``hpss`` / ``openunmix`` are cached on disk.

    ``oracle`` reads the synthetic corpus's saved stems (nothing to cache). ``cache_dir``
    defaults to ``<corpus_dir>/separations/<name>``.
    """
    from utils.musiclime.open_unmix import OpenUnmixSeparator
    from utils.musiclime.separation import CachedSeparator, HPSSSeparator, OracleSeparator

    if name == "oracle":
        return OracleSeparator(corpus_dir)
    if name not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS}, got {name!r}")
    inner = HPSSSeparator() if name == "hpss" else OpenUnmixSeparator()
    return CachedSeparator(inner, cache_dir or Path(corpus_dir) / "separations" / name)


def song_factorization(song_id: str, corpus_dir: str | os.PathLike, profile: Profile, separator):
    """The paper's audio components of one song: its clip (the profile's length, samples at the
    profile's rate) separated into stems x ``profile.num_segments`` segments."""
    from utils.musiclime.factorization import SourceSeparationSegments
    from utils.dataset_related.features import find_audio, fit_clip, load_audio

    name = f"id {song_id!r}"
    waveform = load_audio(find_audio(Path(corpus_dir) / "audio", song_id), profile.audio.sample_rate, name=name)
    clip = fit_clip(waveform, profile.clip_samples, name=name)
    return SourceSeparationSegments(clip, profile.audio.sample_rate, separator, num_segments=profile.num_segments,
                                    track_id=song_id)


# ---------------------------------------------------------------- 2. explain a split
def explain_song(item: Mapping, predictor, profile: Profile, corpus_dir: str | os.PathLike, separator, *,
                 task: str, modality: str, num_samples: int, seed: int, batch_size: int = 250,
                 sampling: str = "iid") -> dict:
    """Explain one song's predicted class; returns its record (see :mod:`utils.musiclime.aggregate`).

    The record adds ``song_seed`` (the explainer seed used) and, when the item carries a valid
    label, ``true_label`` (class index) to :meth:`utils.musiclime.explanation.Explanation.to_record`.
    """
    from utils.musiclime.explainer import explain

    song_id = str(item["id"])
    class_names = list(TASKS[task])
    seed_used = song_seed(seed, song_id)
    try:
        factorization = None if predictor.kind == "lyrics" else song_factorization(song_id, corpus_dir, profile,
                                                                                      separator)
        explanation = explain(predictor, factorization, item.get("lyrics"), sample_rate=profile.audio.sample_rate,
                              modality=modality, num_samples=num_samples, batch_size=batch_size, seed=seed_used,
                              class_names=class_names, sampling=sampling)
    except (ValueError, TypeError) as error:
        raise (ValueError if isinstance(error, ValueError) else TypeError)(f"song {song_id!r}: {error}") from error
    record = explanation.to_record(song_id)
    record["song_seed"] = seed_used
    true_name = item.get(LABEL_COLUMNS[task])
    if true_name in class_names:
        record["true_label"] = class_names.index(true_name)
    return record


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_settings(profile: Profile, task: str, kind: str, modality: str, split: str, num_samples: int, seed: int,
                 separator: str | None, model_sha256: str | None = None, sampling: str = "iid") -> dict:
    """The settings stored in every record of a run (a resume must match them)."""
    return {"profile": profile.name, "task": task, "kind": kind, "modality": modality, "split": split,
            "num_samples": int(num_samples), "seed": int(seed), "sampling": sampling,
            "separator": None if kind == "lyrics" else separator,
            "num_segments": None if kind == "lyrics" else int(profile.num_segments),
            "model_sha256": model_sha256}


def global_explain(profile: Profile, task: str, kind: str, modality: str, records_path: str | os.PathLike, *,
                   split: str = "test", corpus_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None,
                   num_samples: int | None = None, seed: int = 0, batch_size: int = 250,
                   separator: str | None = None, shard: str | tuple[int, int] | None = None,
                   songs_per_class: int | None = None, limit: int | None = None, predictor=None,
                   on_mismatch: str = "raise", num_threads: int | None = None, progress: bool = True,
                   sampling: str = "iid") -> Path:
    """Explain every selected song of ``split`` with MusicLIME into ``records_path``; resumable.

    Parameters
    ----------
    profile : Profile
        Audio settings, ``num_segments``, default ``explain_samples`` and ``separator``.
    task : {'genre', 'emotion'}
    kind : {'multimodal', 'audio', 'lyrics'}
        The model explained (``run_dir/task/kind/best``).
    modality : {'both', 'audio', 'lyrical'}
        Explainer mode; a unimodal model only supports its own modality.
    records_path : path
        JSON-lines record store (one record per song; created, or resumed when it exists).
    split : str
        Split file of ``corpus_dir`` to explain.
    corpus_dir, run_dir : path
        The corpus (audio, stems, lyrics, tokenizer) and the checkpoints (``runs/<profile>``).
    num_samples : int, optional
        Neighbourhood size per song (default ``profile.explain_samples``; the paper's
        multimodal global runs: 5000).
    seed : int
        Run seed; song ``id`` uses :func:`song_seed` ``(seed, id)``.
    batch_size : int
        Perturbations per model call.
    separator : {'oracle', 'hpss', 'openunmix'}, optional
        Default ``profile.separator``. Ignored for the lyrics model (no audio components).
    shard : ``'k/n'``, optional
        Only this shard's songs (see :func:`utils.musiclime.aggregate.shard_of`); merge shard files with
        :func:`aggregate_records`.
    songs_per_class, limit : int, optional
        Explain a subset (:func:`select_songs`).
    predictor : optional
        A ready :class:`utils.musiclime.predict.ModelPredictor` (its ``kind`` must equal ``kind``); default
        :func:`utils.musiclime.predict.load_predictor` from ``run_dir``. Its weights' sha256 is stored in
        the settings only when it is loaded here.
    on_mismatch : {'raise', 'replace'}
        What to do when ``records_path`` holds records made with other settings: raise
        ``ValueError`` (default), or move the old file to ``<records_path>.replaced`` and start
        afresh (for notebooks re-run after retraining).
    num_threads : int, optional
        torch intra-op threads during the run (restored afterwards). The tiny models' small
        matrix products gain little from threads, and on a busy 2-core machine 1 thread is
        several times faster than 2 (no OpenMP contention). None leaves torch's setting.
    progress : bool
        tqdm bar with ETA over the songs.
    sampling : {'iid', 'antithetic', 'crossed'}
        Neighbourhood design (:func:`utils.musiclime.explainer.explain`): ``'iid'`` the paper's;
        ``'antithetic'`` any model, same cost, less noise; ``'crossed'`` the multimodal model in
        ``'both'`` mode only, a tenth of the encoder passes. Stored in the settings.

    Returns
    -------
    Path
        ``records_path``.
    """
    from utils.dataset_related.splits import read_split

    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if modality not in KIND_MODALITIES[kind]:
        raise ValueError(f"a {kind} model can be explained with modality {KIND_MODALITIES[kind]}, not {modality!r}")
    if on_mismatch not in ("raise", "replace"):
        raise ValueError(f"on_mismatch must be 'raise' or 'replace', got {on_mismatch!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if sampling == "crossed" and (kind != "multimodal" or modality != "both"):
        raise ValueError(f"sampling='crossed' needs the late-fusion multimodal model in 'both' mode, not the {kind} "
                         f"model in {modality!r} mode; use 'iid' or 'antithetic'")
    separator = separator or profile.separator
    if separator not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS}, got {separator!r}")
    num_samples = int(num_samples or profile.explain_samples)
    corpus_dir = Path(corpus_dir)
    records_path = Path(records_path)

    model_sha256 = None
    if predictor is None:
        from utils.musiclime.predict import load_predictor

        if run_dir is None:
            raise ValueError("give run_dir= (e.g. runs/tiny) or predictor=")
        weights = Path(run_dir) / task / kind / "best" / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"no trained {kind} model for {task}: {weights} is missing")
        model_sha256 = file_sha256(weights)
        predictor = load_predictor(run_dir, task, kind, profile, corpus_dir, device=profile.device)
    elif getattr(predictor, "kind", None) != kind:
        raise ValueError(f"predictor is a {getattr(predictor, 'kind', type(predictor).__name__)} model, "
                         f"kind={kind!r} was asked for")
    settings = run_settings(profile, task, kind, modality, split, num_samples, seed, separator, model_sha256,
                            sampling)
    if records_path.exists():
        conflict = settings_conflict(load_records(records_path, repair=False), settings)
        if conflict and on_mismatch == "replace":
            warnings.warn(f"{records_path}: {conflict}; moving the old records to {records_path}.replaced "
                          "and starting afresh")
            os.replace(records_path, str(records_path) + ".replaced")
        elif conflict:
            raise ValueError(f"{records_path}: {conflict}; use another records file")

    songs = select_songs(read_split(corpus_dir, split), task, songs_per_class, limit)
    audio_separator = None if kind == "lyrics" else make_separator(separator, corpus_dir)

    def explain_fn(item: Mapping) -> dict:
        return explain_song(item, predictor, profile, corpus_dir, audio_separator, task=task, modality=modality,
                            num_samples=num_samples, seed=seed, batch_size=batch_size, sampling=sampling)

    import torch

    threads_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        run_global(songs.to_dict("records"), explain_fn, records_path, shard=shard, settings=settings,
                   progress=progress)
    finally:
        torch.set_num_threads(threads_before)
    records_path.touch(exist_ok=True)        # an empty shard still leaves a (mergeable) file
    return records_path


# ---------------------------------------------------------------- 3. aggregate
def aggregate_records(paths: str | os.PathLike | Iterable[str | os.PathLike], class_names: Sequence[str],
                      positive_only: bool = True, merge_case: bool = False) -> pd.DataFrame:
    """Merge record files (shards) and compute the global measures table.

    Parameters
    ----------
    paths : path or iterable of paths
        Record files of one run (:func:`utils.musiclime.aggregate.merge_records`: a song in several files
        must agree).
    class_names : sequence of str
        ``class_names[i]`` names class index ``i``; must equal the ``class_names`` stored in the
        records' settings when they have them.
    positive_only : bool
        Keep only positive weights (the authors).
    merge_case : bool
        Merge lyric words that differ only in case (``'Heart'`` + ``'heart'``), as the authors did
        for their M4A word bars.

    Returns
    -------
    DataFrame
        :func:`utils.musiclime.aggregate.measures`: ``class, feature, modality, stem, segment, W, C, I_LIME,
        I_AVG, I_H``.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no record files given")
    records = merge_records(paths)
    if not records:
        raise ValueError(f"no records in {[str(p) for p in paths]}")
    class_names = [str(c) for c in class_names]
    for record in records:
        stored = (record.get("settings") or {}).get("class_names")
        if stored is not None and list(stored) != class_names:
            raise ValueError(f"record {record['id']!r} was made for classes {stored}, not {class_names}")
    weights, counts = accumulate(records, positive_only=positive_only)
    if merge_case:
        weights, counts = merge_word_variants(weights, counts, str.lower)
    return measures(weights, counts, class_names)


def write_measures(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save a measures table as CSV (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


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


def present_classes(table: pd.DataFrame, modality: str | None = None) -> list[str]:
    """Classes (in class order) that have aggregated features (of ``modality`` when given)."""
    rows = table if modality is None else table[table["modality"] == modality]
    present = set(rows["class"].astype(str))
    return [c for c in table["class"].cat.categories if c in present]


def pick_class(table: pd.DataFrame, preferred: Sequence[str] = (), modalities: Sequence[str] = ("audio", "lyrics"),
               ) -> str:
    """The first of ``preferred`` that has features of every modality in ``modalities``, else the
    first such class in class order (for figures that need e.g. audio and words of one class)."""
    have = [set(present_classes(table, m)) for m in modalities]
    usable = [c for c in table["class"].cat.categories if all(c in h for h in have)]
    if not usable:
        raise ValueError(f"no class has features of all of {list(modalities)}")
    return next((c for c in preferred if c in usable), usable[0])


def pick_classes(table: pd.DataFrame, preferred: Sequence[str], n: int = 2, modality: str = "lyrics") -> list[str]:
    """``n`` classes with ``modality`` features: ``preferred`` ones first, then the others in class order."""
    usable = present_classes(table, modality)
    if not usable:
        raise ValueError(f"no class has {modality} features")
    ordered = [c for c in preferred if c in usable] + [c for c in usable if c not in preferred]
    return ordered[:n]


# ---------------------------------------------------------------- 4. planted cues
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


def _of_modality(features: Iterable[str], modality: str) -> set[str]:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    keep = {"both": ("audio", "lyrics"), "audio": ("audio",), "lyrical": ("lyrics",)}[modality]
    return {f for f in features if parse_feature(f)[0] in keep}


def planted_cue_summary(table: pd.DataFrame, planted: Mapping[str, Iterable[str]], value: str = "I_AVG",
                        ks: Sequence[int] = (1, 3), modality: str = "both",
                        records: Iterable[Mapping] | None = None) -> pd.DataFrame:
    """Per class: is a planted cue among the class's top-k features of the global ranking?

    Each class's features are ranked by ``value`` (descending, ties by name, as
    :func:`utils.results.figures.top_features`). A class counts as a hit at ``k`` when any of its
    planted features (restricted to the run's ``modality``) is in its top ``k``.

    Parameters
    ----------
    table : DataFrame
        :func:`aggregate_records` output (lyric words compared as they are: aggregate with
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
    modality : {'both', 'audio', 'lyrical'}
        The run's explainer mode: only planted features of its modalities count.
    records : iterable of dict, optional
        The run's records; when given, a ``songs`` column counts the songs explained as each
        class (their ``label``).

    Returns
    -------
    DataFrame
        One row per class with a planted cue in this modality (class order), then a row
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
        cues = _of_modality(planted.get(cls, ()), modality)
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
        raise ValueError(f"no class has a planted cue in modality {modality!r}")
    summary = pd.DataFrame(rows)
    overall: dict[str, Any] = {"class": "overall", "planted": "",
                               **({"songs": int(summary["songs"].sum())} if counts is not None else {}),
                               "top_feature": None, "best_planted": None, "best_rank": np.nan}
    for k in ks:
        overall[f"in_top{k}"] = float(summary[f"in_top{k}"].mean()) if summary[f"in_top{k}"].notna().any() else np.nan
    return pd.concat([summary, pd.DataFrame([overall])], ignore_index=True)


def song_planted_summary(records: Iterable[Mapping], metadata: Mapping[str, Mapping], class_names: Sequence[str],
                         task: str = "genre", ks: Sequence[int] = (1, 3), modality: str = "both") -> pd.DataFrame:
    """Per song instead of per class: how often a correctly predicted song's own planted cue is
    among its top-k positive local features.

    Only songs explained as their true class count (an explanation of a wrong class has no
    reason to point at the true class's cue), and only cues of the run's ``modality``. Words
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
        cues = _of_modality(planted_cues({record["id"]: meta}, task).get(true_name, ()), modality)
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
        run name -> (measures table, its records, explainer modality).
    planted : dict
        class -> planted features (:func:`planted_cues`).
    values : ranking measures to compare.

    Returns
    -------
    DataFrame
        Columns ``run``, ``value`` and the summary's columns, one block per (run, value).
    """
    blocks = []
    for name, (table, records, modality) in runs.items():
        for value in values:
            summary = planted_cue_summary(table, planted, value=value, ks=ks, modality=modality, records=records)
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


# ---------------------------------------------------------------- 5. word embeddings
def input_embedding_matrix(model) -> np.ndarray:
    """The (vocabulary, hidden) token embedding matrix of a lyrics or fusion model's RoBERTa.

    Accepts :class:`utils.model_related.models.LyricsClassifier`, :class:`utils.model_related.models.FusionClassifier`, a
    :class:`utils.musiclime.predict.ModelPredictor` around either, or any Hugging Face model.
    """
    candidates = [model, getattr(model, "model", None), getattr(model, "lyrics_encoder", None)]
    inner = getattr(model, "model", None)
    candidates += [getattr(inner, "model", None), getattr(inner, "lyrics_encoder", None)]
    for candidate in candidates:
        get = getattr(candidate, "get_input_embeddings", None)
        if callable(get):
            embedding = get()
            if embedding is not None and hasattr(embedding, "weight"):
                return embedding.weight.detach().float().cpu().numpy()
    raise TypeError(f"{type(model).__name__} has no lyrics input embeddings (not a lyrics or multimodal model?)")


def word_embeddings(model, tokenizer, words: Iterable[str], leading_space: bool = True) -> dict[str, np.ndarray]:
    """Word vectors from the lyrics model's input embeddings: the mean of each word's token rows.

    Parameters
    ----------
    model : lyrics or fusion model (see :func:`input_embedding_matrix`).
    tokenizer : the model's Hugging Face tokenizer (e.g. ``TokenCache.tokenizer``).
    words : iterable of str
        Duplicates are embedded once.
    leading_space : bool
        Tokenise ``' ' + word`` (how a word inside a lyric line reaches byte-level BPE) rather
        than the bare word.

    Returns
    -------
    dict[str, np.ndarray]
        word -> float64 vector of shape (hidden,). Deterministic for fixed weights.

    Raises
    ------
    ValueError
        A word that tokenises to nothing, or a token id outside the embedding matrix.
    """
    matrix = input_embedding_matrix(model)
    vectors: dict[str, np.ndarray] = {}
    for word in dict.fromkeys(words):
        ids = tokenizer((" " + word) if leading_space else word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"word {word!r} gives no tokens")
        if max(ids) >= len(matrix):
            raise ValueError(f"word {word!r}: token id {max(ids)} outside the {len(matrix)}-row embedding matrix")
        vectors[word] = matrix[ids].astype(np.float64).mean(axis=0)
    if not vectors:
        raise ValueError("no words to embed")
    return vectors


# ---------------------------------------------------------------- command line
def _explain_main(argv: list[str]) -> int:
    from utils.config import get_profile

    parser = argparse.ArgumentParser(prog="python -m utils.global_run",
                                     description="Explain every song of a split with MusicLIME (global run).",
                                     epilog="Merge record files (shards) into a measures CSV: "
                                            "python -m utils.global_run merge --help")
    parser.add_argument("--profile", default="tiny", choices=["tiny", "paper"])
    parser.add_argument("--task", default="genre", choices=sorted(TASKS))
    parser.add_argument("--kind", default="multimodal", choices=list(MODEL_KINDS))
    parser.add_argument("--modality", default=None, choices=list(MODALITIES),
                        help="default: 'both' for multimodal, the model's own modality otherwise")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-samples", type=int, default=None, help="default: the profile's explain_samples")
    parser.add_argument("--records", required=True, help="JSON-lines record file (resumed when it exists)")
    parser.add_argument("--shard", default=None, help="k/n: explain only shard k of n")
    parser.add_argument("--limit", type=int, default=None, help="only the first N songs")
    parser.add_argument("--songs-per-class", type=int, default=None, help="only the first K songs of each class")
    parser.add_argument("--separator", default=None, choices=list(SEPARATORS), help="default: the profile's")
    parser.add_argument("--corpus-dir", default="data/synthetic")
    parser.add_argument("--run-dir", default=None, help="default: runs/<profile>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--measures", default=None,
                        help="CSV of the measures table (default for an unsharded run: <records>.csv)")
    parser.add_argument("--merge-case", action="store_true", help="merge words differing only in case")
    parser.add_argument("--replace-mismatched", action="store_true",
                        help="move a records file made with other settings aside instead of refusing")
    parser.add_argument("--sampling", default="iid", choices=list(SAMPLING),
                        help="neighbourhood design: iid (the paper), antithetic (same cost, less noise), crossed "
                             "(multimodal model in both mode: a tenth of the encoder passes)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    modality = args.modality or KIND_MODALITIES[args.kind][0]
    run_dir = args.run_dir or f"runs/{args.profile}"
    records = global_explain(profile, args.task, args.kind, modality, args.records, split=args.split,
                             corpus_dir=args.corpus_dir, run_dir=run_dir, num_samples=args.num_samples,
                             seed=args.seed, batch_size=args.batch_size, separator=args.separator, shard=args.shard,
                             songs_per_class=args.songs_per_class, limit=args.limit,
                             on_mismatch="replace" if args.replace_mismatched else "raise", num_threads=args.threads,
                             progress=not args.no_progress, sampling=args.sampling)
    print(f"records: {records} ({len(load_records(records, repair=False))} songs)")
    measures_path = args.measures or (None if args.shard else str(Path(records).with_suffix(".csv")))
    if measures_path:
        table = aggregate_records([records], TASKS[args.task], merge_case=args.merge_case)
        print(f"measures: {write_measures(table, measures_path)} ({len(table)} rows)")
    return 0


def _merge_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.global_run merge",
                                     description="Merge record files (shards) and write the measures table (CSV).")
    parser.add_argument("--records", nargs="+", required=True, help="record files of one run (e.g. its shards)")
    parser.add_argument("--out", required=True, help="CSV of the measures table")
    parser.add_argument("--task", default=None, choices=sorted(TASKS),
                        help="class names of this task (default: the class_names stored in the records)")
    parser.add_argument("--merged-records", default=None, help="also write the merged records here (JSON lines)")
    parser.add_argument("--merge-case", action="store_true", help="merge words differing only in case")
    args = parser.parse_args(argv)
    records = merge_records(args.records)
    if not records:
        raise SystemExit(f"no records in {args.records}")
    if args.task:
        class_names = list(TASKS[args.task])
    else:
        class_names = (records[0].get("settings") or {}).get("class_names")
        if not class_names:
            raise SystemExit("the records store no class_names; pass --task")
    table = aggregate_records(args.records, class_names, merge_case=args.merge_case)
    print(f"measures: {write_measures(table, args.out)} ({len(records)} songs, {len(table)} rows)")
    if args.merged_records:
        target = Path(args.merged_records)
        if target.exists():
            raise SystemExit(f"{target} exists; choose a new file for the merged records")
        target.parent.mkdir(parents=True, exist_ok=True)
        for record in records:
            append_record(target, record)
        print(f"merged records: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.global_run [explain] ...`` or ``python -m utils.global_run merge|aggregate ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("merge", "aggregate"):
        return _merge_main(argv[1:])
    if argv and argv[0] == "explain":
        argv = argv[1:]
    return _explain_main(argv)


if __name__ == "__main__":
    sys.exit(main())
