"""The saved model the explain command explains, and its lyrics tokenizer.

:func:`find_model` reads ``model.json`` (task, kind, class names, profile) of a saved model folder
(``runs/<profile>/<task>/<kind>``, its ``best/``, or the checkpoint folder itself) and refuses a
folder of another task or kind; :func:`load_tokens` finds the tokenizer the model was trained
with. Both raise :class:`UsageError`, whose message names the folder or argument; the command
line (:mod:`utils.explain`) turns it into exit status 2.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from utils.config import PROJECT_ROOT, TASKS, Profile, get_profile

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

    ``task`` / ``kind``, when given, must match the model's. The file is read and checked by
    :func:`utils.model_related.models.read_model_json` (the one reader of ``model.json``).
    Raises :class:`UsageError`.
    """
    from utils.model_related.models import (CONFIG_FILE, WEIGHTS_FILE, ModelMismatchError, check_profile_fits,
                                            read_model_json)

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
        description = read_model_json(directory, task=task, kind=kind)
    except ModelMismatchError as error:
        found = "no" if error.found is None else f"a {error.found}"
        raise UsageError(f"{where}: {found} {error.field} model ({error.path}), but --{error.field} "
                         f"{error.expected} was asked for") from error
    except (OSError, ValueError) as error:
        raise UsageError(f"{where}: {error}") from error
    if description.get("task") is None:
        raise UsageError(f"{where}: {directory / CONFIG_FILE} names no task, one of {sorted(TASKS)}")
    profile_name = description.get("profile") or "tiny"        # model.json files without one are tiny
    try:
        check_profile_fits(description, profile_name, directory / CONFIG_FILE)
    except ValueError as error:
        raise UsageError(f"{where}: {error}") from error
    if not (directory / WEIGHTS_FILE).is_file():
        raise UsageError(f"{where}: {WEIGHTS_FILE} is missing next to {CONFIG_FILE}")
    return ModelInfo(directory, description["task"], description["kind"], description["class_names"],
                     get_profile(profile_name), description)


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
    return TokenCache(loaded, model.profile.model.max_tokens, model.profile.model.text_preprocessing)
