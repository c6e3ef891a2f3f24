"""Reading a corpus split and turning it into model inputs.

A corpus directory (synthetic or real M4A) holds ``{train,val,test}.jsonl`` and
``audio/<id>.<ext>``; optional ``features/<id>.npy`` hold precomputed AST inputs.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from utils.config import LABEL_COLUMNS, TASKS, Profile
from utils.config import SPLITS
from utils.dataset_related.features import load_features
from utils.dataset_related.text import TokenCache
from utils.io import check_id

log = logging.getLogger(__name__)
REQUIRED_COLUMNS = ("id", "lyrics", "primary_short", "emotion")


class DataError(ValueError):
    """A corpus row or file that cannot be used; the message names the id or file."""


def read_split(corpus_dir: str | Path, split: str, *, skip_bad: bool = False) -> pd.DataFrame:
    """Read ``<corpus_dir>/<split>.jsonl`` and validate it.

    Parameters
    ----------
    corpus_dir : corpus directory.
    split : 'train', 'val' or 'test'.
    skip_bad : when True, rows with empty lyrics or labels outside the class lists are
        dropped with a logged count (``frame.attrs['skipped']`` lists them); when False
        (default) the first such row raises :class:`DataError` naming its id.

    Returns
    -------
    DataFrame with at least id, lyrics, primary_short, emotion (and valence, energy if present).

    Raises
    ------
    ValueError
        An id that is not a safe name (:func:`utils.io.check_id`), ``skip_bad`` or not: the
        message names the id and ``<file>:<line>``. Ids become file names, so such a split is
        refused as a whole.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    rows, numbers = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not valid JSON ({error})") from error
            numbers.append(number)
    if not rows:
        raise DataError(f"{path}: no songs in this split")
    frame = pd.DataFrame(rows)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    frame["id"] = [check_id(_id_text(value), f"{path}:{number}") for value, number in zip(frame["id"], numbers)]
    duplicated = frame["id"][frame["id"].duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path}: duplicate id(s) {duplicated[:5]}")
    problems: list[tuple[str, str]] = []
    for row in frame.itertuples(index=False):
        if not isinstance(row.lyrics, str) or not row.lyrics.strip():
            problems.append((row.id, "empty lyrics"))
        for task, column in LABEL_COLUMNS.items():
            value = getattr(row, column)
            if task == "emotion" and (value is None or value != value):
                continue  # genre-only corpora (AudioSet) have no emotion; encode_labels names such ids
            if value not in TASKS[task]:
                problems.append((row.id, f"{column}={value!r} is not one of the {task} classes"))
    if problems and not skip_bad:
        song_id, what = problems[0]
        raise DataError(f"{path}: id {song_id!r}: {what}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    if problems:
        bad = sorted({song_id for song_id, _ in problems})
        log.warning("%s: skipped %d row(s) with bad lyrics/labels: %s", path, len(bad), bad[:10])
        frame = frame[~frame["id"].isin(bad)].reset_index(drop=True)
        frame.attrs["skipped"] = problems
    return frame


def _id_text(value: object) -> object:
    """An id as read from JSON: a string as it is, a whole number as its digits, anything else unchanged
    (so that :func:`utils.io.check_id` refuses it by its own repr)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return value


def encode_labels(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Class indices (LabelEncoder / alphabetical order) of the task's label column."""
    classes = TASKS[task]
    column = LABEL_COLUMNS[task]
    index = {name: i for i, name in enumerate(classes)}
    labels = []
    for song_id, value in zip(frame["id"], frame[column]):
        if value not in index:
            raise DataError(f"id {song_id!r}: {column}={value!r} is not one of the {task} classes {classes}")
        labels.append(index[value])
    return np.asarray(labels, dtype=np.int64)


class SongDataset(torch.utils.data.Dataset):
    """Model inputs for one split and task.

    Items are dicts with ``labels`` and, depending on ``kind``, ``input_values`` (frames,
    mel) and/or ``input_ids`` / ``attention_mask`` (tokens). Audio features are read from
    ``features/<id>.npy`` (call :func:`utils.dataset_related.extract.extract_features` first); lyrics are tokenised once
    (:meth:`TokenCache.songs`: a corpus's given tokens, the authors' ``tokenized_texts.json``, as they are).
    """

    def __init__(self, frame: pd.DataFrame, corpus_dir: str | Path, profile: Profile, task: str, kind: str,
                 tokens: TokenCache | None = None, in_memory: bool = True):
        if kind not in ("lyrics", "audio", "multimodal"):
            raise ValueError(f"kind must be lyrics, audio or multimodal, got {kind!r}")
        self.ids = list(frame["id"])
        self.kind = kind
        self.profile = profile
        self.labels = torch.as_tensor(encode_labels(frame, task))
        self.features_dir = Path(corpus_dir) / "features"
        self.audio = None
        self.tokens = None
        if kind in ("lyrics", "multimodal"):
            if tokens is None:
                raise ValueError(f"kind={kind!r} needs a TokenCache (tokens=...)")
            self.tokens = tokens.songs(self.ids, list(frame["lyrics"]))
        if kind in ("audio", "multimodal") and in_memory:
            self.audio = torch.stack([self._load(i) for i in self.ids]) if self.ids else None

    def _load(self, song_id: str) -> torch.Tensor:
        return torch.from_numpy(load_features(self.features_dir, song_id, self.profile.audio))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"labels": self.labels[index]}
        if self.kind in ("audio", "multimodal"):
            item["input_values"] = self.audio[index] if self.audio is not None else self._load(self.ids[index])
        if self.tokens is not None:
            item["input_ids"] = self.tokens["input_ids"][index]
            item["attention_mask"] = self.tokens["attention_mask"][index]
        return item


def split_counts(frames: dict[str, pd.DataFrame], column: str) -> pd.DataFrame:
    """Class counts per split (rows: classes, columns: splits)."""
    return pd.DataFrame({name: f[column].value_counts() for name, f in frames.items()}).fillna(0).astype(int)
