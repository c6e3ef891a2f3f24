"""``model.json``: what a saved model is for (task, kind, class names, profile), read and checked.

Every saved model folder (:func:`utils.model_related.models.save_model`) holds a ``model.json``
next to its weights: the model's kind and number of classes, its architecture, and the task,
class names and profile it was trained for. :func:`read_model_json` is the one reader of that
file: it checks it and refuses a model whose task, kind, profile or class names differ from what
the caller expects (:class:`ModelMismatchError`). Every unreadable file is reported with its path.
"""
from __future__ import annotations

import json
from pathlib import Path

from utils.config import MODEL_KINDS, PROFILES, TASKS

CONFIG_FILE = "model.json"
"""Our description of a saved model (beside the Hugging Face ``config.json`` and weights)."""


class ModelMismatchError(ValueError):
    """A saved model is not the one the caller expects.

    Attributes
    ----------
    path : Path
        The ``model.json`` that says so.
    field : str
        ``'task'``, ``'kind'``, ``'profile'`` or ``'class_names'``.
    found, expected
        The file's value (None when it names none) and the caller's.
    """

    def __init__(self, path: Path, field: str, found, expected):
        self.path, self.field, self.found, self.expected = Path(path), field, found, expected
        said = f"names no {field}" if found is None else f"says {field}={found!r}"
        super().__init__(f"{path}: the saved model {said}, but {field}={expected!r} was expected; "
                         f"refusing to use a model made for another {field}")


def check_profile_fits(description: dict, profile_name: str, path: Path) -> None:
    """Refuse a model whose audio input differs from what profile ``profile_name`` makes: its mel
    bins, or the sample rate it was trained at (``sample_rate`` in ``model.json``, when recorded)."""
    kind = description.get("kind")
    audio_config = description.get("audio_config") or (description.get("config") if kind == "audio" else None)
    audio = PROFILES[profile_name]().audio
    if audio_config and audio_config.get("num_mel_bins") != audio.num_mel_bins:
        raise ValueError(f"{path}: the model takes {audio_config.get('num_mel_bins')} mel bins, the "
                         f"{profile_name!r} profile makes {audio.num_mel_bins}")
    rate = description.get("sample_rate")
    if kind != "lyrics" and rate is not None and rate != audio.sample_rate:
        raise ValueError(f"{path}: the model was trained on spectrograms of {rate} Hz audio, the "
                         f"{profile_name!r} profile makes them at {audio.sample_rate} Hz")


def _check_description(description: dict, path: Path) -> None:
    """Validate a parsed ``model.json`` and fill in ``class_names`` (default: the task's); errors name ``path``."""
    problem = None if isinstance(description, dict) else f"must be a JSON object, not {type(description).__name__}"
    if problem:
        raise ValueError(f"{path}: the model description {problem}")
    kind, task, profile = description.get("kind"), description.get("task"), description.get("profile")
    if kind not in MODEL_KINDS:
        raise ValueError(f"{path}: model kind {kind!r} is not one of {MODEL_KINDS}")
    if task is not None and task not in TASKS:
        raise ValueError(f"{path}: task {task!r} is not one of {sorted(TASKS)}")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"{path}: profile {profile!r} is not one of {sorted(PROFILES)}")
    configs = ("audio_config", "lyrics_config") if kind == "multimodal" else ("config",)
    missing = [key for key in configs if not isinstance(description.get(key), dict)]
    if missing:
        raise ValueError(f"{path}: no architecture {missing} for a {kind} model")
    num_labels = description.get("num_labels")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"{path}: num_labels must be a positive int, got {num_labels!r}")
    names = description.get("class_names")
    if names is None and task is not None:
        names = list(TASKS[task])
    if names is not None:
        if not isinstance(names, list) or len(names) != num_labels:
            raise ValueError(f"{path}: class_names must be a list of {num_labels} names (one per output), "
                             f"got {names!r}")
        description["class_names"] = [str(name) for name in names]
    if profile is not None:
        check_profile_fits(description, profile, path)


def read_model_json(model_dir: str | Path, *, task: str | None = None, kind: str | None = None,
                    profile: str | None = None, class_names=None) -> dict:
    """Read and check the ``model.json`` of a saved model folder; the one reader of that file.

    Parameters
    ----------
    model_dir : path
        The folder holding ``model.json`` (and ``model.safetensors``).
    task, kind, profile : str, optional
        What the caller expects; a model that names another value, or none, is refused.
    class_names : sequence of str, optional
        The class names the caller will give the model's outputs, in order.

    Returns
    -------
    dict
        The description, with ``class_names`` filled in from the task when the file has none.

    Raises
    ------
    FileNotFoundError
        No ``model.json`` in ``model_dir``.
    ModelMismatchError
        The model is of another task, kind, profile or class list (names the file and the field).
    ValueError
        An unreadable or invalid ``model.json`` (names the file).
    """
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {model_dir}: not a saved model directory")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: not a readable model description ({type(error).__name__}: {error})") from error
    _check_description(description, path)
    expected = {"kind": kind, "task": task, "profile": profile,
                "class_names": None if class_names is None else [str(name) for name in class_names]}
    for field, wanted in expected.items():
        if wanted is not None and description.get(field) != wanted:
            raise ModelMismatchError(path, field, description.get(field), wanted)
    return description
