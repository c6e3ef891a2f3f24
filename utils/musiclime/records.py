"""The record store of a global run: one local explanation per song, in an append-only JSON-lines file.

Read top to bottom:

1. :func:`append_record` / :func:`load_records` -- the store itself, on the project's one
   append-only JSON-lines store (:func:`utils.io.append_jsonl` / :func:`utils.io.read_jsonl`):
   one ``os.write`` + ``fsync`` per line; reading drops (and, with ``repair``, truncates away) a
   torn last line, checks that every record is a JSON object with a string ``id`` and keeps the
   first of duplicate ids (with a warning).
2. :func:`settings_conflict` -- may a file be resumed with a run's settings?
3. :func:`merge_records` -- several files (e.g. one per shard) into one list, refusing a song
   whose records disagree; :func:`aggregate_records` -- files -> the measures table of
   :mod:`utils.musiclime.aggregate`.

The runner that writes the store (resume, shards) is :func:`utils.musiclime.global_explain.run_global`.

A *record* is a dict::

    {"id": "song-1",                       # str, unique
     "label": 4,                           # explained class index (the authors: predicted class)
     "probabilities": [0.1, ...],          # model output for the song (optional)
     "weights": {"vocals0": 0.03, "love": -0.01, ...},   # LIME weight per feature
     "modality": {"vocals0": "audio", "love": "lyrics"}, # optional
     "settings": {"num_samples": 5000, ...}}             # optional
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from utils.io import append_jsonl, json_default, read_jsonl
from utils.musiclime.aggregate import accumulate, measures, merge_word_variants


# ---------------------------------------------------------------- 1. the store
def _check_record(record: Any) -> None:
    if not isinstance(record.get("id"), str):
        raise ValueError("a record must be a JSON object with a string 'id'")


def append_record(path: str | os.PathLike, record: Mapping) -> None:
    """Append one record as one JSON line (:func:`utils.io.append_jsonl`: one write, then ``fsync``).

    A process killed during the call leaves either nothing or a partial last line without its
    newline, which :func:`load_records` drops.
    """
    append_jsonl(path, record)


def load_records(path: str | os.PathLike, repair: bool = True) -> list[dict]:
    """Read a records file written by :func:`append_record`; a missing file gives ``[]``.

    A torn or unparsable last line is a write cut short by a kill: it is dropped (with a
    warning) and, when ``repair``, truncated away so that later appends start on a clean line;
    that song is redone by the runner. Duplicate ids keep the first record (warning).

    Raises
    ------
    ValueError
        A bad line that is not the last one, a record without a string ``id``, or a file that
        holds no record at all (names the file and line).
    """
    path = Path(path)
    records: list[dict] = []
    seen: set[str] = set()
    for record in read_jsonl(path, repair=repair, validate=_check_record, what="record"):
        if record["id"] in seen:
            warnings.warn(f"{path}: duplicate record id {record['id']!r}; keeping the first")
            continue
        seen.add(record["id"])
        records.append(record)
    return records


# ---------------------------------------------------------------- 2. resuming
SETTINGS_DEFAULTS = {"sampling": "iid", "kernel": "paper"}
"""Settings a record made before they existed implicitly had (i.i.d. explanations carry no
``sampling`` key, explanations with the paper's flat kernel no ``kernel`` key)."""


def settings_conflict(records: Iterable[Mapping], settings: Mapping) -> str | None:
    """Why ``records`` cannot be resumed with run ``settings`` (None: they can).

    A conflict is a key in both a record's ``settings`` and ``settings`` with different
    values; a record made before a key existed counts as having its default
    (:data:`SETTINGS_DEFAULTS`).
    """
    for record in records:
        stored = _normalised_settings(record)
        for key, value in settings.items():
            if key in stored and stored[key] != json.loads(json.dumps(value, default=json_default)):
                return f"record {record['id']!r} was made with {key}={stored[key]!r}, this run uses {key}={value!r}"
    return None


# ---------------------------------------------------------------- 3. merging
MERGE_KEYS = ("profile", "task", "kind", "mode", "split", "num_samples", "seed", "sampling", "kernel", "separator",
              "num_segments", "model_sha256")
"""Run settings that every merged record must share (as a resume checks them)."""


def merge_records(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """Combine records files (e.g. one per shard) into one list sorted by id.

    Every record must have been made with the same run settings (:data:`MERGE_KEYS`; a key a
    record lacks is not compared), else ``ValueError`` names both files and the setting. The
    same id in several files is kept once when its ``label`` and ``weights`` agree; if they
    differ, ``ValueError`` names the id and both files. A song skipped in one file and explained
    in another keeps its explanation. Because ``W`` and ``C`` are recomputed from the records
    (:func:`utils.musiclime.aggregate.accumulate`), the order of ``paths`` does not matter.
    """
    merged: dict[str, tuple[dict, Path]] = {}
    reference: tuple[dict, Path] | None = None
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"records file {path} does not exist")
        for record in load_records(path, repair=False):
            reference = reference or (_run_settings(record), path)
            _check_same_run(record, path, *reference)
            song_id = record["id"]
            if song_id in merged and "skipped" not in record and "skipped" not in merged[song_id][0]:
                first, first_path = merged[song_id]
                if first.get("weights") != record.get("weights") or first.get("label") != record.get("label"):
                    raise ValueError(f"record {song_id!r} differs between {first_path} and {path} "
                                     f"(label or weights)")
            if song_id not in merged or "skipped" in merged[song_id][0]:
                merged[song_id] = (record, path)
    return [merged[song_id][0] for song_id in sorted(merged)]


def _normalised_settings(record: Mapping) -> dict:
    """A record's settings with :data:`SETTINGS_DEFAULTS` filled in and old key names updated."""
    stored = {**SETTINGS_DEFAULTS, **(record.get("settings") or {})}
    if "modality" in stored:                      # records made before the explainer mode's key was renamed
        stored.setdefault("mode", stored.pop("modality"))
    return stored


def _run_settings(record: Mapping) -> dict:
    stored = _normalised_settings(record)
    return {key: stored[key] for key in MERGE_KEYS if key in stored}


def _check_same_run(record: Mapping, path: Path, reference: dict, reference_path: Path) -> None:
    mine = _run_settings(record)
    for key in MERGE_KEYS:
        if key in mine and key in reference and mine[key] != reference[key]:
            raise ValueError(f"{path} (record {record['id']!r}) was made with {key}={mine[key]!r} but "
                             f"{reference_path} with {key}={reference[key]!r}: records of different runs "
                             "cannot be merged")


def aggregate_records(paths: str | os.PathLike | Iterable[str | os.PathLike], class_names: Sequence[str],
                      positive_only: bool = True, merge_case: bool = False, bootstrap: int = 0,
                      seed: int = 0) -> pd.DataFrame:
    """Merge record files (shards) and compute the global measures table.

    Parameters
    ----------
    paths : path or iterable of paths
        Record files of one run (:func:`merge_records`: a song in several files must agree).
    class_names : sequence of str
        ``class_names[i]`` names class index ``i``; must equal the ``class_names`` stored in the
        records' settings when they have them.
    positive_only : bool
        Keep only positive weights (the authors).
    merge_case : bool
        Merge lyric words that differ only in case (``'Heart'`` + ``'heart'``), as the authors did
        for their M4A word bars.
    bootstrap : int
        With ``B >= 2``, add 95 % bootstrap intervals over songs (``B`` replicates, seeded by
        ``seed``; :func:`utils.musiclime.bootstrap.bootstrap_measures`); 0: no intervals.

    Returns
    -------
    DataFrame
        :func:`utils.musiclime.aggregate.measures`: ``class, feature, modality, stem, segment, W, C,
        I_LIME, I_AVG, I_H``; with ``bootstrap`` also ``class_songs`` and ``I_AVG_lo``, ``I_AVG_hi``,
        ``I_LIME_lo``, ``I_LIME_hi``, ``I_H_lo``, ``I_H_hi``.
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
    if bootstrap:
        from utils.musiclime.bootstrap import bootstrap_measures

        return bootstrap_measures(records, class_names, samples=bootstrap, seed=seed, positive_only=positive_only,
                                  merge_case=merge_case)
    weights, counts = accumulate(records, positive_only=positive_only)
    if merge_case:
        weights, counts = merge_word_variants(weights, counts, str.lower)
    return measures(weights, counts, class_names)
