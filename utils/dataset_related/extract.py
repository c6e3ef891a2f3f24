"""Precompute model inputs for a corpus split: AST features and lyric tokens, on disk.

Writes, in the corpus schema,

* ``<corpus_dir>/features/<id>.npy`` -- AST ``input_values`` ``(max_length, num_mel_bins)``
  float32, computed in batches by :func:`utils.dataset_related.features.ast_features` (GPU when present);
* ``<corpus_dir>/tokens.json`` -- ``{id: {"input_ids": [...], "attention_mask": [...]}}``
  of length ``profile.model.max_tokens``, tokenised exactly as :class:`utils.dataset_related.text.TokenCache`
  does at training time.

Both are resumable: a feature file that exists with the profile's shape is not computed
again, an id already in ``tokens.json`` with the right length is not tokenised again, and
each batch is written before the next starts. Songs whose audio is missing or unreadable,
or whose lyrics are empty, are skipped and counted, never fatal.
"""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.config import Profile, get_profile

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ExtractReport:
    """Counts of one extraction run.

    Attributes
    ----------
    features, tokens : dict
        ``{"songs", "done_before", "written", "skipped"}`` per output.
    problems : dict
        ``{reason: [id (detail), ...]}`` for every skipped song.
    """

    features: dict = field(default_factory=lambda: {"songs": 0, "done_before": 0, "written": 0, "skipped": 0})
    tokens: dict = field(default_factory=lambda: {"songs": 0, "done_before": 0, "written": 0, "skipped": 0})
    problems: dict = field(default_factory=lambda: defaultdict(list))

    def summary(self, examples: int = 3) -> str:
        lines = [f"features: {self.features}", f"tokens:   {self.tokens}"]
        for reason, items in self.problems.items():
            lines.append(f"  {reason}: {len(items)}  e.g. {', '.join(items[:examples])}")
        return "\n".join(lines)


def _profile(profile: str | Profile) -> Profile:
    return get_profile(profile) if isinstance(profile, str) else profile


def read_split_records(corpus_dir: str | Path, split: str) -> list[dict]:
    """``id`` and ``lyrics`` of every row of ``<corpus_dir>/<split>.jsonl``.

    Only these two fields are needed here, so corpora whose other columns are null (the
    AudioSet subset has no emotion) are read too. Bad lines raise, naming file and line.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    records, seen = [], set()
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err})") from None
            song_id = str(rec.get("id", "")).strip()
            if not song_id or song_id in seen:
                raise ValueError(f"{path}:{line_no}: missing or repeated id {song_id!r}")
            seen.add(song_id)
            records.append({"id": song_id, "lyrics": rec.get("lyrics")})
    return records


# ------------------------------------------------------------------ tokenizer
def resolve_tokenizer(profile: str | Profile, corpus_dir: str | Path,
                      tokenizer_dir: str | Path | None = None, seed: int = 0):
    """The profile's tokenizer.

    ``profile.model.tokenizer_source == "corpus"`` (tiny profile): a byte-level BPE trained
    on the corpus' *train* lyrics (:func:`utils.dataset_related.text.train_tokenizer`, vocabulary
    ``profile.model.vocab_size``), saved in ``tokenizer_dir`` (default
    ``<corpus_dir>/tokenizer``) and loaded from there when already present. Anything else
    is a hub id or local directory for :func:`utils.dataset_related.text.load_tokenizer` (``roberta-large``).
    """
    from utils.dataset_related.text import load_tokenizer, train_tokenizer

    prof = _profile(profile)
    source = prof.model.tokenizer_source
    if source != "corpus":
        return load_tokenizer(source)
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else Path(corpus_dir) / "tokenizer"
    if (tokenizer_dir / "vocab.json").is_file() and (tokenizer_dir / "merges.txt").is_file():
        return load_tokenizer(tokenizer_dir)
    texts = [r["lyrics"] for r in read_split_records(corpus_dir, "train")
             if isinstance(r["lyrics"], str) and r["lyrics"].strip()]
    return train_tokenizer(texts, tokenizer_dir, vocab_size=prof.model.vocab_size, seed=seed)


# ------------------------------------------------------------------ features
def _feature_complete(path: Path, shape: tuple[int, int]) -> bool:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.shape == shape and arr.dtype == np.float32


def extract_features(corpus_dir: str | Path, split: str, profile: str | Profile = "tiny",
                     batch_size: int = 32, device: str | None = None, pad: bool = True,
                     report: ExtractReport | None = None, show_progress: bool = True) -> ExtractReport:
    """AST features for every song of ``split`` into ``<corpus_dir>/features/<id>.npy``.

    Parameters
    ----------
    batch_size : int
        Clips per :func:`utils.dataset_related.features.ast_features` call (and per write).
    device : str, optional
        ``"cuda"`` / ``"cpu"``; default: CUDA when available.
    pad : bool
        Zero-pad clips shorter than the profile's clip length (else they are skipped).
    """
    import torch
    from tqdm.auto import tqdm

    from utils.dataset_related.features import AudioError, ast_features, find_audio, load_clip, save_features

    prof = _profile(profile)
    report = report or ExtractReport()
    corpus_dir = Path(corpus_dir)
    features_dir = corpus_dir / "features"
    shape = (prof.audio.max_length, prof.audio.num_mel_bins)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ids = [r["id"] for r in read_split_records(corpus_dir, split)]
    report.features["songs"] += len(ids)
    todo = [i for i in ids if not _feature_complete(features_dir / f"{i}.npy", shape)]
    report.features["done_before"] += len(ids) - len(todo)
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    for batch in tqdm(batches, desc=f"AST features ({split})", disable=not show_progress):
        clips, kept = [], []
        for song_id in batch:
            try:
                path = find_audio(corpus_dir / "audio", song_id)
                clips.append(load_clip(path, prof.audio, name=f"id {song_id!r}", pad=pad))
                kept.append(song_id)
            except FileNotFoundError:
                report.problems["audio missing"].append(song_id)
            except AudioError as err:
                report.problems["audio unreadable or too short"].append(f"{song_id} ({err})"[:160])
        report.features["skipped"] += len(batch) - len(kept)
        if kept:
            features = ast_features(np.stack(clips), prof.audio, device=device)
            save_features(features_dir, kept, features)
            report.features["written"] += len(kept)
    return report


# ------------------------------------------------------------------ tokens
def _read_tokens(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it to start over") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by id")
    return data


def _write_tokens(path: Path, tokens: dict) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(tokens), encoding="utf-8")
    os.replace(part, path)


def extract_tokens(corpus_dir: str | Path, split: str, tokenizer: Any, max_tokens: int,
                   batch_size: int = 256, report: ExtractReport | None = None,
                   show_progress: bool = True) -> ExtractReport:
    """Token ids and attention masks for every song of ``split`` into ``<corpus_dir>/tokens.json``.

    Tokenised as :class:`utils.dataset_related.text.TokenCache` does (truncation and padding to
    ``max_tokens``). Entries of other splits already in the file are kept. After changing the
    tokenizer, delete ``tokens.json`` (entries are reused when their length fits).
    """
    from tqdm.auto import tqdm

    from utils.dataset_related.text import TokenCache

    report = report or ExtractReport()
    path = Path(corpus_dir) / "tokens.json"
    tokens = _read_tokens(path)
    records = read_split_records(corpus_dir, split)
    report.tokens["songs"] += len(records)

    def done(song_id: str) -> bool:
        entry = tokens.get(song_id)
        return (isinstance(entry, dict) and len(entry.get("input_ids", [])) == max_tokens
                and len(entry.get("attention_mask", [])) == max_tokens)

    todo = []
    for rec in records:
        if done(rec["id"]):
            report.tokens["done_before"] += 1
        elif not isinstance(rec["lyrics"], str) or not rec["lyrics"].strip():
            report.problems["lyrics empty"].append(rec["id"])
            report.tokens["skipped"] += 1
        else:
            todo.append(rec)
    cache = TokenCache(tokenizer, max_tokens)
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    for batch in tqdm(batches, desc=f"tokens ({split})", disable=not show_progress):
        encoded = cache([r["lyrics"] for r in batch])
        for k, rec in enumerate(batch):
            tokens[rec["id"]] = {"input_ids": encoded["input_ids"][k].tolist(),
                                 "attention_mask": encoded["attention_mask"][k].tolist()}
        _write_tokens(path, tokens)
        report.tokens["written"] += len(batch)
    return report


def extract_split(corpus_dir: str | Path, split: str, profile: str | Profile = "tiny",
                  tokenizer: Any = None, tokenizer_dir: str | Path | None = None,
                  batch_size: int = 32, device: str | None = None, seed: int = 0,
                  show_progress: bool = True) -> ExtractReport:
    """Features and tokens for one split (tokenizer from :func:`resolve_tokenizer` when not given)."""
    prof = _profile(profile)
    report = extract_features(corpus_dir, split, prof, batch_size=batch_size, device=device,
                              show_progress=show_progress)
    tokenizer = tokenizer or resolve_tokenizer(prof, corpus_dir, tokenizer_dir, seed)
    extract_tokens(corpus_dir, split, tokenizer, prof.model.max_tokens, report=report,
                   show_progress=show_progress)
    for reason, items in report.problems.items():
        log.warning("extract %s: %d song(s) %s", split, len(items), reason)
    return report


def plot_feature(corpus_dir: str | Path, song_id: str, out_path: str | Path | None = None):
    """Image of one precomputed AST input (frames x mel bins); saved to ``out_path`` if given.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    path = Path(corpus_dir) / "features" / f"{song_id}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"no features for id {song_id!r}: {path}")
    feature = np.load(path, allow_pickle=False)
    fig, ax = plt.subplots(figsize=(8, 3))
    image = ax.imshow(feature.T, origin="lower", aspect="auto", cmap="magma")
    ax.set_xlabel("frame (10 ms)")
    ax.set_ylabel("mel bin")
    ax.set_title(f"AST input of {song_id} (normalised log-mel)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_path, dpi=100)
    return fig
