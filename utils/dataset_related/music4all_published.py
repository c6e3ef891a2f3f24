"""The authors' published M4A release, imported as published into our corpus schema.

Their release, in their layout (:data:`AUTHORS_LAYOUT`; a folder holding it is ``source``):

* ``final_split/{train,val,test}.json`` -- JSON lines (``pd.read_json(..., lines=True)``) with
  ``id``, ``lyrics``, ``primary_short``, ``emotion`` and more (``spotify_id``); val and test hold
  6,550 songs each;
* ``spectogram_pikles/batch_{i}.pkl`` (their spelling) -- ``{id: torch.FloatTensor (1, 1024, 128)}``
  per 5,000 songs, or the per-song ``<id>.npy`` (1024, 128) their training notebook converted
  them to; read safely by :mod:`utils.dataset_related.published_spectrograms`;
* ``tokenized_texts.json`` -- ``{id: {"input_ids", "attention_mask"}}``, 256 roberta-large tokens
  of the preprocessed lyrics (:func:`utils.dataset_related.text.authors_preprocess`);
* ``audios/<id>.mp3`` (Music4All) and ``new_audios/<id>.mp3`` (the songs they added from Spotify,
  whose ``id`` is their Spotify track id: ``id == spotify_id``).

:func:`import_published_split` writes ``<out_dir>/{train,val,test}.jsonl`` (their split, their
lyrics text unchanged), ``features/<id>.npy`` (their spectrograms, float32 (frames, mel bins)),
``tokenized_texts.json`` (their token rows of the imported songs, used as they are for training
by :func:`utils.model_related.inputs.prepare_tokens`) and ``audio/<id>.wav`` clips. Every line
of their split files is imported or dropped with a reason (``"dropped: ..."`` keys of the
report's ``problems``; :func:`import_counts`); the other keys are notes on kept songs.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from utils.config import EMOTIONS, GENRES, Profile
from utils.dataset_related.corpus import (SCHEMA_COLUMNS, SPLITS, BuildReport, FilterCounts, as_profile, cut_clips,
                                          finish_corpus, float_or_none, read_text_file)
from utils.dataset_related.published_spectrograms import as_frames, batch_files, load_batch, load_npy
from utils.dataset_related.text import TOKEN_FILE, read_token_file, write_token_file
from utils.io import atomic_path, id_path, is_safe_id

AUTHORS_LAYOUT = {"split_dir": "final_split", "spectrogram_dir": "spectogram_pikles", "token_file": TOKEN_FILE,
                  "audio_dir": "audios", "new_audio_dir": "new_audios"}
"""Where each part of the release lies under its folder (their names, their spelling)."""
DROPPED = "dropped: "
_SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation", "dev"), "test": ("test",)}
_SPLIT_PATTERNS = ("{}.json", "{}.jsonl", "{}_data.jsonl", "{}_data.json", "{}_set.jsonl",
                   "{}_set.json", "{}_df.jsonl", "{}_df.json", "{}_split.jsonl", "{}_split.json")


def find_split_file(split_dir: str | Path, split: str) -> Path:
    """The published file for ``split`` in ``split_dir`` (their ``train.json``, ``val.json``,
    ``test.json``; also ``validation.json``, ``test_data.jsonl``, ...); an error listing what is there."""
    split_dir = Path(split_dir)
    for alias in _SPLIT_ALIASES[split]:
        for pattern in _SPLIT_PATTERNS:
            path = split_dir / pattern.format(alias)
            if path.exists():
                return path
    present = sorted(p.name for p in split_dir.glob("*.json*")) if split_dir.exists() else []
    raise FileNotFoundError(f"no {split} split file in {split_dir}; JSON files there: {present}")


def read_json_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Records from a JSON-lines file (theirs) or a JSON array; unreadable lines are returned as bad rows."""
    path = Path(path)
    text = read_text_file(path)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        return ([r for r in data if isinstance(r, dict)],
                [f"{path.name}: item {i} is not an object" for i, r in enumerate(data) if not isinstance(r, dict)])
    records, bad = [], []
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
    return {n.lower(): n for n in names}.get(str(value).strip().lower())


def resolve_sources(source: str | Path | None, **given: str | Path | None) -> dict[str, Path | None]:
    """The release's parts: each given path, else ``source / AUTHORS_LAYOUT[part]`` when that exists.

    ``source`` may also be the folder of the split files itself (no ``final_split/`` in it).
    """
    root = Path(source) if source is not None else None
    parts: dict[str, Path | None] = {}
    for part, name in AUTHORS_LAYOUT.items():
        if given.get(part) is not None:
            parts[part] = Path(given[part])
        elif root is not None and (root / name).exists():
            parts[part] = root / name
        else:
            parts[part] = None
    if parts["split_dir"] is None and root is not None:
        parts["split_dir"] = root
    if parts["split_dir"] is None:
        raise ValueError("import_published_split: give the release folder or split_dir")
    return parts


def import_published_split(source: str | Path | None, out_dir: str | Path, *, split_dir: str | Path | None = None,
                           spectrogram_dir: str | Path | None = None, token_file: str | Path | None = None,
                           audio_dir: str | Path | None = None, new_audio_dir: str | Path | None = None,
                           profile: str | Profile = "paper", require_audio: bool = False,
                           clip_offset_seconds: float = 0.0, show_progress: bool = True) -> BuildReport:
    """Import the authors' published release into our corpus schema at ``out_dir``.

    Parameters
    ----------
    source : path or None
        The release folder in their layout (:data:`AUTHORS_LAYOUT`), or just their split folder.
    split_dir, spectrogram_dir, token_file, audio_dir, new_audio_dir : path, optional
        Override one part's location (default: its place under ``source``, when there).
    profile : str or Profile
        Default ``"paper"``. Spectrograms must have its ``(max_length, num_mel_bins)`` shape
        (else a ``ValueError`` naming the id); its ``vocab_size`` and ``max_tokens`` check the
        token rows (a ``ValueError`` naming the id); clips are cut at its rate and length. A
        profile with a corpus-trained tokenizer (tiny) does not use the token file (noted).
    require_audio : bool
        Drop songs without a readable audio file even when their spectrogram is there.

    Returns
    -------
    BuildReport
        ``problems`` keys ``"dropped: <reason>"`` list every line not imported (malformed line,
        missing or unsafe id, duplicate id, unknown genre / emotion, empty lyrics, no tokens,
        audio and spectrogram both missing); the others are notes on imported songs or files.
    """
    prof = as_profile(profile)
    parts = resolve_sources(source, split_dir=split_dir, spectrogram_dir=spectrogram_dir, token_file=token_file,
                            audio_dir=audio_dir, new_audio_dir=new_audio_dir)
    out_dir = Path(out_dir)
    problems: dict[str, list[str]] = defaultdict(list)
    counts = FilterCounts(GENRES)
    frames, spotify = _read_published_rows(parts["split_dir"], problems)
    counts.add("usable rows in the split files", _labels(frames))
    tokens = _take_tokens(frames, parts["token_file"], prof, problems)
    if tokens is not None:
        counts.add("with a row in tokenized_texts.json", _labels(frames))
    has_spectrogram = _write_spectrograms(_ids(frames), parts["spectrogram_dir"], out_dir, prof, problems,
                                          show_progress)
    has_audio = _cut_audio(frames, spotify, parts, out_dir, prof, clip_offset_seconds, problems, show_progress)
    if any(parts[p] is not None for p in ("spectrogram_dir", "audio_dir", "new_audio_dir")):
        _drop_without_audio(frames, has_audio, has_spectrogram, require_audio, out_dir, problems)
        counts.add("with audio or a spectrogram" if not require_audio else "with audio", _labels(frames))
    else:
        problems["no spectrograms or audio given: lyrics only"].append(str(parts["split_dir"]))
    if tokens is not None:
        write_token_file(out_dir / TOKEN_FILE, {i: tokens[i] for i in _ids(frames)})
    return finish_corpus(out_dir, frames, counts, problems, GENRES, "published split import")


def import_counts(report: BuildReport) -> dict:
    """``{"imported": songs written, "per_split": {...}, "dropped": {reason: count}}`` of an import."""
    per_split = {split: int(report.split_counts.loc[split, "total"]) for split in report.split_counts.index}
    dropped = {k[len(DROPPED):]: len(v) for k, v in report.problems.items() if k.startswith(DROPPED)}
    return {"imported": sum(per_split.values()), "per_split": per_split, "dropped": dropped}


def _labels(frames: dict[str, pd.DataFrame]) -> pd.Series:
    return pd.concat([df["primary_short"] for df in frames.values()], ignore_index=True)


def _ids(frames: dict[str, pd.DataFrame]) -> list[str]:
    return [song_id for df in frames.values() for song_id in df["id"]]


def _read_published_rows(split_dir: Path, problems: dict) -> tuple[dict[str, pd.DataFrame], set[str]]:
    """The usable rows of each split file in our schema (an id used once), and the Spotify-added ids."""
    frames: dict[str, pd.DataFrame] = {}
    seen: set[str] = set()
    spotify: set[str] = set()
    for split in SPLITS:
        path = find_split_file(split_dir, split)
        records, bad = read_json_records(path)
        problems[DROPPED + "malformed line in split file"] += bad
        rows = [row for row in (_published_row(rec, path, seen, problems) for rec in records) if row]
        spotify.update(str(rec.get("id")) for rec in records if rec.get("spotify_id") is not None
                       and str(rec.get("spotify_id")) == str(rec.get("id")))
        frames[split] = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    return frames, spotify & seen


def _published_row(rec: dict, path: Path, seen: set[str], problems: dict) -> dict | None:
    """One published record as a corpus row, or None (the reason recorded in ``problems``)."""
    song_id = rec.get("id")
    song_id = str(song_id).strip() if isinstance(song_id, (str, int)) and not isinstance(song_id, bool) else song_id
    if not is_safe_id(song_id):
        problems[DROPPED + "missing or unsafe id"].append(f"{path.name}: {song_id!r}")
        return None
    if song_id in seen:
        problems[DROPPED + "duplicate id"].append(f"{song_id} ({path.name})")
        return None
    seen.add(song_id)
    genre = _canonical(rec.get("primary_short"), GENRES)
    emotion = _canonical(rec.get("emotion"), EMOTIONS)
    if genre is None:
        problems[DROPPED + "unknown genre class"].append(f"{song_id}: {rec.get('primary_short')!r}")
        return None
    if emotion is None:
        problems[DROPPED + "unknown emotion class"].append(f"{song_id}: {rec.get('emotion')!r}")
        return None
    text = rec.get("lyrics")
    if not isinstance(text, str) or not text.strip():
        problems[DROPPED + "lyrics empty"].append(song_id)
        return None
    return {"id": song_id, "lyrics": text, "primary_short": genre, "emotion": emotion,
            "valence": float_or_none(rec.get("valence")), "energy": float_or_none(rec.get("energy"))}


def _keep(frames: dict[str, pd.DataFrame], keep: set[str]) -> None:
    for split, df in frames.items():
        frames[split] = df.loc[df["id"].isin(keep)].reset_index(drop=True)


def _take_tokens(frames: dict[str, pd.DataFrame], token_file: Path | None, profile: Profile,
                 problems: dict) -> dict | None:
    """Their token rows of the songs (checked; a bad row raises naming the id); songs without one dropped.

    None when there is no token file, or the profile trains its own tokenizer (noted).
    """
    if token_file is None:
        return None
    if profile.model.tokenizer_source == "corpus":
        problems["token file not used: the profile's tokenizer is corpus-trained"].append(str(token_file))
        return None
    ids = _ids(frames)
    tokens = read_token_file(token_file, profile.model.vocab_size, profile.model.max_tokens, ids=ids)
    problems[DROPPED + f"no tokens in {TOKEN_FILE}"] += [i for i in ids if i not in tokens]
    _keep(frames, set(tokens))
    return tokens


def _audio_folders(ids: list[str], spotify: set[str], parts: dict) -> dict[Path, list[str]]:
    """Which folder each song's ``<id>.mp3`` is read from: ``new_audios/`` for the Spotify-added songs,
    ``audios/`` for the others (their rule); ids whose folder is not given are left out."""
    folders: dict[Path, list[str]] = defaultdict(list)
    for song_id in ids:
        folder = parts["new_audio_dir"] if song_id in spotify else parts["audio_dir"]
        if folder is not None:
            folders[folder].append(song_id)
    return folders


def _cut_audio(frames: dict, spotify: set[str], parts: dict, out_dir: Path, profile: Profile, offset: float,
               problems: dict, show_progress: bool) -> set[str]:
    """Clips ``audio/<id>.wav`` of the songs whose audio is readable; returns their ids."""
    has_audio: set[str] = set()
    notes: dict[str, list[str]] = defaultdict(list)
    for folder, ids in _audio_folders(_ids(frames), spotify, parts).items():
        kept = cut_clips(ids, folder, out_dir, profile, offset, notes, f"audio clips ({folder.name})", show_progress)
        has_audio.update(i for i, ok in zip(ids, kept) if ok)
    for reason, items in notes.items():
        problems[reason] += items
    return has_audio


def _write_spectrograms(ids: list[str], folder: Path | None, out_dir: Path, profile: Profile, problems: dict,
                        show_progress: bool = True) -> set[str]:
    """Their spectrograms of ``ids`` -> ``features/<id>.npy`` (float32 (frames, mel bins)); returns the ids written.

    ``batch_*.pkl`` first (one batch in memory at a time), then ``<id>.npy`` for the songs no batch held.
    A shape other than the profile's raises ``ValueError`` naming the id.
    """
    from tqdm.auto import tqdm

    if folder is None:
        return set()
    shape, wanted, written = (profile.audio.max_length, profile.audio.num_mel_bins), set(ids), set()
    for path in tqdm(batch_files(folder), desc="spectrogram batches", disable=not show_progress):
        for key, arr in load_batch(path).items():
            if key not in wanted:
                problems["spectrogram of an id not imported (ignored)"].append(f"{key!r} ({path.name})")
            elif key in written:
                problems["spectrogram repeated in a later batch (first kept)"].append(f"{key} ({path.name})")
            else:
                _save_features(out_dir, key, as_frames(arr, key, shape, path))
                written.add(key)
    for song_id in tqdm([i for i in ids if i not in written], desc="spectrograms (.npy)", disable=not show_progress):
        source = id_path(folder, song_id, ".npy")
        if not source.is_file():
            continue
        try:
            arr = load_npy(source)
        except (ValueError, OSError) as err:
            problems["spectrogram unreadable (treated as missing)"].append(f"{song_id} ({err})"[:160])
            continue
        _save_features(out_dir, song_id, as_frames(arr, song_id, shape, source))
        written.add(song_id)
    return written


def _save_features(out_dir: Path, song_id: str, arr: np.ndarray) -> None:
    with atomic_path(id_path(out_dir / "features", song_id, ".npy")) as part:
        with open(part, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)


def _drop_without_audio(frames: dict, has_audio: set[str], has_spectrogram: set[str], require_audio: bool,
                        out_dir: Path, problems: dict) -> None:
    """Drop songs with neither audio nor spectrogram (or, with ``require_audio``, without audio); note the rest."""
    keep = set()
    for song_id in _ids(frames):
        if song_id not in has_audio and (require_audio or song_id not in has_spectrogram):
            reason = "audio missing or unreadable" if require_audio else "audio and spectrogram both missing"
            problems[DROPPED + reason].append(song_id)
            id_path(out_dir / "features", song_id, ".npy").unlink(missing_ok=True)
            continue
        keep.add(song_id)
        if song_id not in has_spectrogram:
            problems["no published spectrogram (computed from the audio when needed)"].append(song_id)
        elif song_id not in has_audio:
            problems["no audio (spectrogram only; not explainable by MusicLIME)"].append(song_id)
    _keep(frames, keep)
