"""The authors' published M4A split, brought into our corpus schema.

The published release holds train / val / test files (JSON lines or JSON arrays with ``id``,
``lyrics``, ``primary_short``, ``emotion``), AST spectrograms (``<id>.npy``) and, separately,
the Music4All audio. :func:`import_published_split` writes ``<out_dir>/{train,val,test}.jsonl``
(:mod:`utils.dataset_related.corpus`), optionally ``audio/<id>.wav`` clips and
``features/<id>.npy``; every row or file it cannot use is counted by reason.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from utils.config import EMOTIONS, GENRES, Profile
from utils.dataset_related.corpus import (SCHEMA_COLUMNS, SPLITS, BuildReport, FilterCounts, as_profile,
                                          clean_lyrics, cut_clips, finish_corpus, float_or_none, read_text_file)
from utils.io import atomic_path, id_path, is_safe_id

_SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation", "dev"),
                  "test": ("test",)}
_SPLIT_PATTERNS = ("{}.jsonl", "{}.json", "{}_data.jsonl", "{}_data.json", "{}_set.jsonl",
                   "{}_set.json", "{}_df.jsonl", "{}_df.json", "{}_split.jsonl", "{}_split.json")


def find_split_file(split_dir: str | Path, split: str) -> Path:
    """The published file for ``split`` in ``split_dir`` (``train.jsonl``, ``val.json``,
    ``validation.json``, ``test_data.json``, ...); a clear error listing what is there."""
    split_dir = Path(split_dir)
    for alias in _SPLIT_ALIASES[split]:
        for pattern in _SPLIT_PATTERNS:
            path = split_dir / pattern.format(alias)
            if path.exists():
                return path
    present = sorted(p.name for p in split_dir.glob("*.json*")) if split_dir.exists() else []
    raise FileNotFoundError(f"no {split} split file in {split_dir}; JSON files there: {present}")


def read_json_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Records from a JSON-lines file or a JSON array; unreadable lines are returned as bad rows."""
    path = Path(path)
    text = read_text_file(path)
    bad: list[str] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        records = [r for r in data if isinstance(r, dict)]
        bad += [f"{path.name}: item {i} is not an object" for i, r in enumerate(data)
                if not isinstance(r, dict)]
        return records, bad
    records = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(f"{path.name} line {line_no}: not JSON")
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad.append(f"{path.name} line {line_no}: not an object")
    return records, bad


def _canonical(value: Any, names: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    lookup = {n.lower(): n for n in names}
    return lookup.get(str(value).strip().lower())


def load_spectrogram(path: str | Path) -> np.ndarray:
    """A published AST spectrogram ``.npy`` as float32 ``(frames, mel_bins)``.

    Leading singleton axes (the extractor's batch axis, ``(1, 1024, 128)``) are dropped.
    Loaded with ``allow_pickle=False`` (never unpickles).
    """
    arr = np.load(str(path), allow_pickle=False)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric (frames, mel_bins) array, got "
                         f"shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: spectrogram has non-finite values")
    return arr


def import_published_split(split_dir: str | Path, out_dir: str | Path,
                           audio_dir: str | Path | None = None,
                           spectrogram_dir: str | Path | None = None,
                           profile: str | Profile = "tiny", require_audio: bool = True,
                           clip_offset_seconds: float = 0.0,
                           show_progress: bool = True) -> BuildReport:
    """Bring the authors' published M4A split into our corpus schema at ``out_dir``.

    Parameters
    ----------
    split_dir : path
        Folder with the published train / val / test files (JSON-lines or JSON arrays with
        ``id``, ``lyrics``, ``primary_short``, ``emotion``; see :func:`find_split_file`).
    audio_dir : path, optional
        Music4All ``audios/`` folder (``<id>.mp3``): clips are cut to the profile's length
        and rate into ``out_dir/audio/<id>.wav``. With ``require_audio`` songs without a
        readable audio file are dropped (counted); otherwise they are kept without audio.
    spectrogram_dir : path, optional
        Published ``<id>.npy`` AST spectrograms -> ``out_dir/features/<id>.npy`` as float32
        ``(frames, mel_bins)``; missing or broken ones are counted.

    Rows with a missing / unsafe id, an unknown genre or emotion, empty lyrics, or an id
    already seen (in any split) are dropped and counted. ``valence`` / ``energy`` are
    ``null`` (the published split does not carry them).
    """
    prof = as_profile(profile)
    out_dir = Path(out_dir)
    problems: dict[str, list[str]] = defaultdict(list)
    counts = FilterCounts(GENRES)
    frames = _read_published_rows(split_dir, problems)
    counts.add("valid rows in split files", pd.concat(frames.values(), ignore_index=True)["primary_short"])
    if audio_dir is not None:
        for split, df in frames.items():
            have = cut_clips(list(df["id"]), Path(audio_dir), out_dir, prof, clip_offset_seconds, problems,
                             f"audio clips ({split})", show_progress)
            frames[split] = df.loc[[ok or not require_audio for ok in have]].reset_index(drop=True)
        counts.add("audio readable" if require_audio else "audio (not required)",
                   pd.concat(frames.values())["primary_short"])
    if spectrogram_dir is not None:
        kept_ids = [i for df in frames.values() for i in df["id"]]
        _copy_spectrograms(kept_ids, Path(spectrogram_dir), out_dir, prof, problems, show_progress)
    return finish_corpus(out_dir, frames, counts, problems, GENRES, "published split import")


def _read_published_rows(split_dir: str | Path, problems: dict) -> dict[str, pd.DataFrame]:
    """The usable rows of each published split file, in our schema (an id is used once)."""
    frames: dict[str, pd.DataFrame] = {}
    seen: set[str] = set()
    for split in SPLITS:
        path = find_split_file(split_dir, split)
        records, bad = read_json_records(path)
        problems["malformed line in split file"] += bad
        rows = [row for row in (_published_row(rec, path, seen, problems) for rec in records) if row]
        frames[split] = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    return frames


def _published_row(rec: dict, path: Path, seen: set[str], problems: dict) -> dict | None:
    """One published record as a corpus row, or None (the reason recorded in ``problems``)."""
    song_id = str(rec.get("id", "")).strip()
    if not is_safe_id(song_id):
        problems["missing or unsafe id"].append(f"{path.name}: {song_id!r}")
        return None
    if song_id in seen:
        problems["duplicate id"].append(song_id)
        return None
    seen.add(song_id)
    genre = _canonical(rec.get("primary_short"), GENRES)
    emotion = _canonical(rec.get("emotion"), EMOTIONS)
    if genre is None:
        problems["unknown genre class"].append(f"{song_id}: {rec.get('primary_short')!r}")
        return None
    if emotion is None:
        problems["unknown emotion class"].append(f"{song_id}: {rec.get('emotion')!r}")
        return None
    text = clean_lyrics(rec.get("lyrics"))
    if not text:
        problems["lyrics empty"].append(song_id)
        return None
    return {"id": song_id, "lyrics": text, "primary_short": genre, "emotion": emotion,
            "valence": float_or_none(rec.get("valence")), "energy": float_or_none(rec.get("energy"))}


def _copy_spectrograms(ids: list[str], spectrogram_dir: Path, out_dir: Path, profile: Profile,
                       problems: dict, show_progress: bool = True) -> None:
    """Published ``<id>.npy`` -> ``out_dir/features/<id>.npy`` (float32 ``(frames, mel_bins)``, atomic)."""
    from tqdm.auto import tqdm

    for song_id in tqdm(ids, desc="spectrograms", disable=not show_progress):
        source = id_path(spectrogram_dir, song_id, ".npy")
        if not source.exists():
            problems["spectrogram missing"].append(song_id)
            continue
        try:
            arr = load_spectrogram(source)
        except (ValueError, OSError) as err:
            problems["spectrogram unreadable"].append(f"{song_id} ({err})"[:160])
            continue
        if arr.shape[1] != profile.audio.num_mel_bins:
            problems["spectrogram mel bins differ from the profile"].append(f"{song_id} {arr.shape}")
        with atomic_path(id_path(out_dir / "features", song_id, ".npy")) as part:
            with open(part, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
