"""Precompute the model's audio inputs for a corpus, on disk: the one feature-precompute path.

:func:`extract_features` writes ``<corpus_dir>/features/<id>.npy`` -- AST ``input_values``
``(max_length, num_mel_bins)`` float32, computed in batches by
:func:`utils.dataset_related.features.ast_features` (GPU when present). It is resumable: a
feature file that exists with the profile's shape is not computed again, and each batch is
written (atomically) before the next starts. Notebook 04 runs it per split (bad songs skipped
and counted); training (:mod:`utils.model_related.pipeline`) runs it on the songs it uses,
strictly (the first unusable song raises, naming its id).

Lyrics are tokenised at training time (:class:`utils.dataset_related.text.TokenCache`), with
the tokenizer from :func:`resolve_tokenizer`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from utils.config import SPLITS, AudioConfig, Profile
from utils.dataset_related.corpus import as_profile
from utils.dataset_related.features import AudioError, ast_features, find_audio, load_clip, save_features
from utils.io import atomic_write_json, check_id, id_path
from utils.plotting import SPECTROGRAM_CMAP, save_figure

log = logging.getLogger(__name__)


@dataclass
class ExtractReport:
    """Counts of one extraction run.

    Attributes
    ----------
    features : dict
        ``{"songs", "done_before", "written", "skipped"}``.
    problems : dict
        ``{reason: [id (detail), ...]}`` for every skipped song.
    """

    features: dict = field(default_factory=lambda: {"songs": 0, "done_before": 0, "written": 0, "skipped": 0})
    problems: dict = field(default_factory=lambda: defaultdict(list))

    def summary(self, examples: int = 3) -> str:
        lines = [f"features: {self.features}"]
        for reason, items in self.problems.items():
            lines.append(f"  {reason}: {len(items)}  e.g. {', '.join(items[:examples])}")
        return "\n".join(lines)


def read_split_records(corpus_dir: str | Path, split: str) -> list[dict]:
    """``id`` and ``lyrics`` of every row of ``<corpus_dir>/<split>.jsonl``.

    Only these two fields are needed here, so corpora whose other columns are null (the
    AudioSet subset has no emotion) are read too. Bad lines raise, naming file and line; so
    does an id that is not a safe name (:func:`utils.io.check_id`).
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
            check_id(song_id, f"{path}:{line_no}")
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

    prof = as_profile(profile)
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
FEATURE_SETTINGS = "audio.json"
"""File in a features folder that records the :class:`~utils.config.AudioConfig` its ``.npy`` files hold."""


def check_feature_settings(features_dir: str | Path, audio_cfg: AudioConfig) -> None:
    """Record the audio settings of a features folder on first use; refuse other settings later.

    Features of two profiles can share a shape and differ in every number (``paper`` at 44.1 kHz
    and ``paper16k`` at 16 kHz are both (1024, 128)), so the shape check alone would reuse the
    wrong ones. ``<features_dir>/audio.json`` holds ``dataclasses.asdict(audio_cfg)``.

    Raises
    ------
    ValueError
        The file records other settings (the message names the file and each differing field)
        or cannot be read.
    """
    path = Path(features_dir) / FEATURE_SETTINGS
    wanted = dataclasses.asdict(audio_cfg)
    if not path.is_file():
        atomic_write_json(path, wanted)
        return
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the features' audio settings: {error}") from error
    differ = [key for key in wanted if not isinstance(found, dict) or found.get(key) != wanted[key]]
    if differ:
        said = ", ".join(f"{key}={found.get(key) if isinstance(found, dict) else None!r} (profile: {wanted[key]!r})"
                         for key in differ)
        raise ValueError(f"{path}: the features in {path.parent} were computed with {said}; use another corpus "
                         "folder for this profile, or delete that features folder to compute them again")


def _feature_complete(path: Path, shape: tuple[int, int]) -> bool:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.shape == shape and arr.dtype == np.float32


def extract_features(corpus_dir: str | Path, songs: str | Sequence[str], profile: str | Profile = "tiny",
                     batch_size: int = 64, device: str | None = None, pad: bool = True,
                     skip_bad: bool = True, report: ExtractReport | None = None,
                     show_progress: bool = True) -> ExtractReport:
    """AST features of ``songs`` into ``<corpus_dir>/features/<id>.npy``, those not there yet.

    The folder's audio settings are checked first (:func:`check_feature_settings`): features
    computed with another profile's settings are refused, never mixed in.

    Parameters
    ----------
    songs : str or sequence of str
        A split name (every song of ``<corpus_dir>/<split>.jsonl``) or song ids; every id must be a
        safe name (:func:`utils.io.check_id`, a ``ValueError`` naming it otherwise).
    batch_size : int
        Clips per :func:`utils.dataset_related.features.ast_features` call (and per write).
    device : str, optional
        ``"cuda"`` / ``"cpu"``; default: CUDA when available.
    pad : bool
        Zero-pad clips shorter than the profile's clip length (else they are unusable).
    skip_bad : bool
        Skip (and count in ``report.problems``) songs whose audio is missing, unreadable or
        too short; when False the first one raises (``FileNotFoundError`` / ``AudioError``
        naming its id).
    """
    from tqdm.auto import tqdm

    prof = as_profile(profile)
    report = report or ExtractReport()
    corpus_dir = Path(corpus_dir)
    shape = (prof.audio.max_length, prof.audio.num_mel_bins)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(songs, str):
        ids = [r["id"] for r in read_split_records(corpus_dir, songs)]
    else:
        ids = [check_id(song_id, "extract_features songs") for song_id in songs]
    report.features["songs"] += len(ids)
    (corpus_dir / "features").mkdir(parents=True, exist_ok=True)
    check_feature_settings(corpus_dir / "features", prof.audio)
    todo = [i for i in ids if not _feature_complete(id_path(corpus_dir / "features", i, ".npy"), shape)]
    report.features["done_before"] += len(ids) - len(todo)
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    desc = f"AST features ({songs})" if isinstance(songs, str) else "AST features"
    for batch in tqdm(batches, desc=desc, disable=not show_progress):
        clips, kept = _load_batch(corpus_dir / "audio", batch, prof, pad, skip_bad, report)
        report.features["skipped"] += len(batch) - len(kept)
        if kept:
            save_features(corpus_dir / "features", kept, ast_features(np.stack(clips), prof.audio, device=device))
            report.features["written"] += len(kept)
    for reason, items in report.problems.items():
        log.warning("AST features: %d song(s) %s", len(items), reason)
    return report


def _load_batch(audio_dir: Path, ids: list[str], profile: Profile, pad: bool, skip_bad: bool,
                report: ExtractReport) -> tuple[list[np.ndarray], list[str]]:
    """The clips of ``ids`` that can be used, and their ids; the others recorded (or raised)."""
    clips, kept = [], []
    for song_id in ids:
        try:
            path = find_audio(audio_dir, song_id)
            clips.append(load_clip(path, profile.audio, name=f"id {song_id!r}", pad=pad))
            kept.append(song_id)
        except FileNotFoundError:
            if not skip_bad:
                raise
            report.problems["audio missing"].append(song_id)
        except AudioError as err:
            if not skip_bad:
                raise
            report.problems["audio unreadable or too short"].append(f"{song_id} ({err})"[:160])
    return clips, kept


def plot_feature(corpus_dir: str | Path, song_id: str, save_path: str | Path | None = None):
    """Image of one precomputed AST input (frames x mel bins); saved to ``save_path`` if given.

    Returns the matplotlib figure (:func:`utils.plotting.save_figure`, :data:`~utils.plotting.SPECTROGRAM_CMAP`).
    """
    import matplotlib.pyplot as plt

    path = id_path(Path(corpus_dir) / "features", song_id, ".npy", source="plot_feature song_id")
    if not path.is_file():
        raise FileNotFoundError(f"no features for id {song_id!r}: {path}")
    feature = np.load(path, allow_pickle=False)
    fig, ax = plt.subplots(figsize=(8, 3))
    image = ax.imshow(feature.T, origin="lower", aspect="auto", cmap=SPECTROGRAM_CMAP)
    ax.set_xlabel("frame (10 ms)")
    ax.set_ylabel("mel bin")
    ax.set_title(f"AST input of {song_id} (normalised log-mel)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return save_figure(fig, save_path)
