"""The training checkpoint: weights, optimizer and state, written and read back as one unit.

``<out_dir>/last/`` holds the model as :func:`~utils.model_related.models.save_model` writes it
(``config.json`` + ``model.safetensors`` + ``model.json``: the weights after the last finished
epoch), ``optimizer.pt`` (optimizer, scheduler and scaler state, read back with
``torch.load(weights_only=True)``) and ``state.json`` (epochs done, best epoch, history and the
run's settings). :func:`save_checkpoint` writes them all into a fresh folder and swaps it in with
:func:`utils.io.atomic_dir`, so a crash at any moment leaves either the previous checkpoint or
the new one, never the weights of one epoch with the optimizer or state of another.

:func:`load_checkpoint` resumes only a run with the same settings (:func:`run_settings`: seed,
epochs, batch size, learning rate and the other training settings, the profile's model and audio
settings, the training and validation labels, and the task, class names and profile stored in
``model.json``); a difference is refused with a message naming each differing setting. The
device may change between calls (e.g. a CPU session continuing a GPU one). Every unreadable
checkpoint file is reported with its path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.config import Profile
from utils.io import (
    atomic_dir,
    atomic_path,
    atomic_write_json,
    json_default,
    recover_dir,
)
from utils.model_related.models import (
    WEIGHTS_FILE,
    load_weights,
    read_model_json,
    save_model,
)

CHECKPOINT_DIR = "last"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"
STATE_KEYS = ("epochs_done", "best_epoch", "best_accuracy", "best_loss", "bad_epochs", "finished", "history",
              "settings")
"""What a checkpoint's ``state.json`` must hold."""


def _labels_digest(dataset) -> str | None:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    values = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    return hashlib.sha256(values.tobytes()).hexdigest()[:16]


def run_settings(kind: str, profile: Profile, *, seed: int, epochs: int, train_set, val_set, extra: dict) -> dict:
    """Everything a resumed run must share with the run it continues (JSON values).

    Parameters
    ----------
    kind : str
        The model kind.
    profile : Profile
        Its training settings for ``kind``, and its model and audio settings, are included.
    seed, epochs : int
        The run's seed and total epochs (the learning-rate schedule depends on both).
    train_set, val_set : datasets
        Their sizes and a digest of their labels are included.
    extra : dict
        What goes into ``model.json`` (task, class names, profile).
    """
    cfg = profile.train
    settings = {
        "kind": kind, "seed": seed, "epochs": epochs, "batch_size": cfg.batch_size[kind],
        "learning_rate": cfg.learning_rate[kind], "warmup_ratio": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay, "grad_accumulation": cfg.grad_accumulation, "patience": cfg.patience,
        "mixed_precision": cfg.mixed_precision, "profile": profile.name,
        "model": dataclasses.asdict(profile.model), "audio": dataclasses.asdict(profile.audio),
        "num_segments": profile.num_segments,
        "train_songs": len(train_set), "val_songs": len(val_set),
        "train_labels": _labels_digest(train_set), "val_labels": _labels_digest(val_set),
        "extra": extra,
    }
    return json.loads(json.dumps(settings, default=json_default))


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def settings_differences(saved: dict, current: dict) -> list[str]:
    """``'name: checkpoint X, now Y'`` for every setting (nested ones dotted) that differs."""
    old, new = _flatten(saved, ""), _flatten(current, "")
    missing = object()
    return [f"{key}: checkpoint {old.get(key)!r}, now {new.get(key)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]


def save_checkpoint(out_dir: str | Path, model: nn.Module, state: dict, optimizer, scheduler, scaler,
                    extra: dict) -> Path:
    """Write ``out_dir/last/`` (weights, ``model.json``, ``optimizer.pt``, ``state.json``) as one unit."""
    with atomic_dir(Path(out_dir) / CHECKPOINT_DIR) as unit:
        save_model(model, unit, **extra)
        with atomic_path(unit / OPTIMIZER_FILE) as part:
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else {}}, part)
        atomic_write_json(unit / STATE_FILE, state)
    return Path(out_dir) / CHECKPOINT_DIR


def _state_problem(state) -> str | None:
    """What makes a parsed ``state.json`` unusable (None: nothing)."""
    if not isinstance(state, dict):
        return f"a training state must be a JSON object, not {type(state).__name__}"
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        return f"not a training state of this version (missing {missing})"
    if isinstance(state["epochs_done"], bool) or not isinstance(state["epochs_done"], int):
        return f"epochs_done must be an int, got {state['epochs_done']!r}"
    if not isinstance(state["settings"], dict):
        return f"settings must be a JSON object, got {state['settings']!r}"
    return None


def _read_state(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {path.parent} is not a complete training checkpoint; "
                                f"move {path.parent.parent} aside to train afresh")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: not a readable training state ({type(error).__name__}: {error})") from error
    problem = _state_problem(state)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return state


def _load_optimizer(path: Path, optimizer, scheduler, scaler, device: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {path.parent} is not a complete training checkpoint")
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a corrupt or hostile pickle fails in many ways; each names the file
        raise ValueError(f"{path}: not a readable optimizer checkpoint, corrupt or refused by "
                         f"weights_only loading ({type(error).__name__}: {error})") from error
    if not isinstance(saved, dict) or not {"optimizer", "scheduler"} <= set(saved):
        raise ValueError(f"{path}: not an optimizer checkpoint (expected a dict with 'optimizer' and 'scheduler')")
    try:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: the optimizer state does not fit this model "
                         f"({type(error).__name__}: {error})") from error


def load_checkpoint(out_dir: str | Path, model: nn.Module, optimizer, scheduler, scaler, *, device: str,
                    settings: dict) -> dict | None:
    """Load ``out_dir/last/`` into ``model``, ``optimizer``, ``scheduler`` and ``scaler``; returns its state.

    None when there is no checkpoint (a fresh start). An interrupted save is first finished or
    undone (:func:`utils.io.recover_dir`).

    Raises
    ------
    ValueError
        The checkpoint was made with other ``settings`` (each differing one named), or one of its
        files is unreadable or does not fit (the file named); a checkpoint of the earlier,
        non-atomic layout (``state.json`` beside ``last/``) is refused too.
    """
    out_dir = Path(out_dir)
    unit = out_dir / CHECKPOINT_DIR
    if (out_dir / STATE_FILE).is_file():
        raise ValueError(f"{out_dir / STATE_FILE}: a checkpoint of the earlier layout (state.json and optimizer.pt "
                         f"beside last/, not written as one unit), which cannot be resumed safely; move {out_dir} "
                         "aside to train afresh")
    if not recover_dir(unit):
        return None
    state = _read_state(unit / STATE_FILE)
    differences = settings_differences(state["settings"], settings)
    if differences:
        raise ValueError(f"{unit / STATE_FILE}: this checkpoint was trained with other settings: "
                         + "; ".join(differences)
                         + f". Resume with the same settings, or train into another folder than {out_dir}")
    read_model_json(unit, kind=settings["kind"])
    load_weights(model, unit / WEIGHTS_FILE)         # either layout: a run begun before config.json resumes too
    _load_optimizer(unit / OPTIMIZER_FILE, optimizer, scheduler, scaler, device)
    return state
