"""The saved model the explain command explains, and its lyrics tokenizer.

:func:`find_model` reads ``model.json`` (task, kind, class names, profile) of a saved model folder
(``runs/<profile>/<task>/<kind>``, its ``best/``, or the checkpoint folder itself) and refuses a
folder of another task or kind; :func:`load_tokens` finds the tokenizer the model was trained
with. Both raise :class:`UsageError`, whose message names the folder or argument; the command
line (:mod:`utils.explain`) turns it into exit status 2.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from utils.config import MODEL_KINDS, PROFILES, PROJECT_ROOT, TASKS, Profile, get_profile

DEFAULT_TOKENIZER = Path("data/synthetic/tokenizer")
"""Relative to the project root: the tiny profile's corpus-trained tokenizer (made by the main job)."""


class UsageError(ValueError):
    """Bad input; the message names the file or argument. The command line exits with status 2."""


@dataclass(frozen=True)
class ModelInfo:
    """A saved model as ``model.json`` describes it.

    Attributes
    ----------
    directory : Path
        The folder holding ``model.json`` and ``model.safetensors``.
    task : str
        ``'genre'`` or ``'emotion'``.
    kind : str
        ``'lyrics'``, ``'audio'`` or ``'multimodal'``.
    class_names : list of str
        In the model's output order.
    profile : Profile
        The profile it was trained with (audio rate, clip length, segments, tokenizer).
    description : dict
        The whole ``model.json``.
    """

    directory: Path
    task: str
    kind: str
    class_names: list[str]
    profile: Profile
    description: dict


def find_model(model_dir: str | os.PathLike, task: str | None = None, kind: str | None = None) -> ModelInfo:
    """Read and check the ``model.json`` of ``model_dir`` (or of ``model_dir/best``).

    ``task`` / ``kind``, when given, must match the model's. Raises :class:`UsageError`.
    """
    from utils.model_related.models import CONFIG_FILE, WEIGHTS_FILE

    model_dir = Path(model_dir)
    where = f"--model {model_dir}"
    if not model_dir.is_dir():
        raise UsageError(f"{where}: no such folder; `python -m utils.main` trains the tiny models into "
                         "runs/tiny/<task>/<kind>/ (run it from the project root first)")
    directory = next((d for d in (model_dir, model_dir / "best") if (d / CONFIG_FILE).is_file()), None)
    if directory is None:
        raise UsageError(f"{where}: no {CONFIG_FILE} in it (nor in best/), so it is not a saved model; "
                         "`python -m utils.main` makes runs/tiny/<task>/<kind>/")
    try:
        description = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{where}: cannot read {directory / CONFIG_FILE}: {error}") from error
    found_kind, found_task = description.get("kind"), description.get("task")
    if found_kind not in MODEL_KINDS:
        raise UsageError(f"{where}: {CONFIG_FILE} names model kind {found_kind!r}, not one of {MODEL_KINDS}")
    if found_task not in TASKS:
        raise UsageError(f"{where}: {CONFIG_FILE} names task {found_task!r}, not one of {sorted(TASKS)}")
    if kind is not None and found_kind != kind:
        raise UsageError(f"{where}: a {found_kind} model, but --kind {kind} was asked for")
    if task is not None and found_task != task:
        raise UsageError(f"{where}: a {found_task} model, but --task {task} was asked for")
    class_names = [str(c) for c in description.get("class_names") or TASKS[found_task]]
    if len(class_names) != description.get("num_labels", len(class_names)):
        raise UsageError(f"{where}: {len(class_names)} class names for {description['num_labels']} outputs")
    profile_name = description.get("profile", "tiny")
    if profile_name not in PROFILES:
        raise UsageError(f"{where}: {CONFIG_FILE} names profile {profile_name!r}, not one of {sorted(PROFILES)}")
    profile = get_profile(profile_name)
    audio_config = description.get("audio_config") or (description.get("config") if found_kind == "audio" else None)
    if audio_config and audio_config.get("num_mel_bins") != profile.audio.num_mel_bins:
        raise UsageError(f"{where}: the model takes {audio_config.get('num_mel_bins')} mel bins, the "
                         f"{profile_name!r} profile makes {profile.audio.num_mel_bins}")
    if not (directory / WEIGHTS_FILE).is_file():
        raise UsageError(f"{where}: {WEIGHTS_FILE} is missing next to {CONFIG_FILE}")
    return ModelInfo(directory, found_task, found_kind, class_names, profile, description)


def load_tokens(model: ModelInfo, tokenizer: str | os.PathLike | None = None):
    """The lyrics tokenizer of ``model`` in a :class:`utils.dataset_related.text.TokenCache`.

    Default: ``<model folder>/tokenizer`` when present, else the profile's: the main job's
    corpus tokenizer (``data/synthetic/tokenizer``) for a corpus-trained one, otherwise its hub
    id (``roberta-large``). A corpus tokenizer must have exactly the model's vocabulary size.
    """
    from utils.dataset_related.text import TokenCache, load_tokenizer

    corpus_trained = model.profile.model.tokenizer_source == "corpus"
    if tokenizer is None:
        own = model.directory / "tokenizer"
        tokenizer = own if own.is_dir() else (PROJECT_ROOT / DEFAULT_TOKENIZER if corpus_trained
                                              else model.profile.model.tokenizer_source)
    try:
        loaded = load_tokenizer(tokenizer)
    except Exception as error:
        raise UsageError(f"--tokenizer {tokenizer}: cannot load a tokenizer ({type(error).__name__}: {error}); "
                         "`python -m utils.main` makes data/synthetic/tokenizer") from error
    config = model.description.get("lyrics_config") or model.description.get("config") or {}
    vocabulary = config.get("vocab_size")
    if vocabulary is not None and (len(loaded) > vocabulary or (corpus_trained and len(loaded) != vocabulary)):
        raise UsageError(f"--tokenizer {tokenizer}: {len(loaded)} tokens, but the model was trained with a "
                         f"{vocabulary}-token vocabulary; give the tokenizer of the model's corpus")
    return TokenCache(loaded, model.profile.model.max_tokens)
