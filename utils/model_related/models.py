"""The paper's three models, built from a profile, saved and loaded in the Hugging Face layout.

* lyrics: ``RobertaForSequenceClassification``; audio: ``ASTForAudioClassification`` (new head)
* multimodal: :class:`~utils.model_related.fusion.FusionClassifier`, a ``PreTrainedModel``
  (AST pooled ++ RoBERTa first token -> ``LayerNorm`` -> ``Linear``; ``encode_audio``,
  ``encode_lyrics`` and ``classify`` run one modality's encoder without the other).

All three take keyword inputs (``input_values`` and/or ``input_ids`` + ``attention_mask``) and
return logits, so one training loop serves them. A saved model is a folder: ``config.json`` +
``model.safetensors`` (``save_pretrained``; it loads with one ``from_pretrained`` call anywhere)
and our ``model.json`` (task, kind, class names, profile: :mod:`~utils.model_related.metadata`).
:func:`load_model` loads strictly; folders of the earlier layout (wrapper key names, no
``config.json``) still load (``python -m utils.model_related.convert legacy runs/`` rewrites them).
Every unreadable file is reported with its path. ``transformers`` is imported on first use.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from utils.config import MODEL_KINDS, TASKS, Profile
from utils.io import atomic_write, fsync_dir
from utils.model_related.metadata import (CONFIG_FILE, ModelMismatchError, check_profile_fits,
                                          read_model_json)

__all__ = ["INPUT_KEYS", "WEIGHTS_FILE", "HF_CONFIG_FILE", "CONFIG_FILE", "LyricsClassifier", "AudioClassifier",
           "build_model", "model_inputs", "hf_part", "save_model", "ModelMismatchError", "check_profile_fits",
           "read_model_json", "read_weights", "load_state_report", "load_state", "load_weights", "load_model",
           "trained_model_dir", "load_trained", "model_fingerprint"]
"""Public names (``FusionClassifier`` and ``FusionConfig`` too, imported on first use)."""

INPUT_KEYS = {
    "lyrics": ("input_ids", "attention_mask"),
    "audio": ("input_values",),
    "multimodal": ("input_values", "input_ids", "attention_mask"),
}
"""The keyword inputs each model kind takes (keys in :data:`utils.config.MODEL_KINDS` order)."""
WEIGHTS_FILE = "model.safetensors"
HF_CONFIG_FILE = "config.json"
STAGING_DIR = ".save.part"
"""Inside a model folder: where ``save_pretrained`` writes before each file is moved into place."""


# ---------------------------------------------------------------- encoder configs
def _ast_config(profile: Profile, num_labels: int | None = None):
    from transformers import ASTConfig

    m, a = profile.model, profile.audio
    kwargs = dict(num_mel_bins=a.num_mel_bins, max_length=a.max_length)
    if num_labels:
        kwargs["num_labels"] = num_labels
    if m.audio_source == "scratch":
        return ASTConfig(hidden_size=m.ast_hidden, num_hidden_layers=m.ast_layers, num_attention_heads=m.ast_heads,
                         intermediate_size=m.ast_intermediate, hidden_dropout_prob=m.dropout,
                         attention_probs_dropout_prob=m.dropout, **kwargs)
    return ASTConfig.from_pretrained(m.audio_source, **kwargs)


def _roberta_config(profile: Profile, vocab_size: int, num_labels: int | None = None):
    from transformers import RobertaConfig

    m = profile.model
    kwargs = {"num_labels": num_labels} if num_labels else {}
    if m.lyrics_source == "scratch":
        return RobertaConfig(vocab_size=vocab_size, hidden_size=m.roberta_hidden, num_hidden_layers=m.roberta_layers,
                             num_attention_heads=m.roberta_heads, intermediate_size=m.roberta_intermediate,
                             max_position_embeddings=m.max_tokens + 2, hidden_dropout_prob=m.dropout,
                             attention_probs_dropout_prob=m.dropout, pad_token_id=1, bos_token_id=0,
                             eos_token_id=2, type_vocab_size=1, **kwargs)
    return RobertaConfig.from_pretrained(m.lyrics_source, **kwargs)


def _from_source(model_class, source: str, config):
    """Pretrained weights from a hub id / local dir, or fresh weights when ``source == 'scratch'``."""
    if source == "scratch":
        return model_class(config)
    return model_class.from_pretrained(source, config=config, ignore_mismatched_sizes=True)


# ---------------------------------------------------------------- the three models
def __getattr__(name: str):
    """``FusionClassifier`` / ``FusionConfig`` on first use (their module imports ``transformers``)."""
    if name in ("FusionClassifier", "FusionConfig"):
        from utils.model_related import fusion

        return getattr(fusion, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Wrapped(nn.Module):
    """A Hugging Face classifier (``self.model``) that returns bare logits; saved as that model."""

    kind = ""
    hf_class_name = ""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @classmethod
    def hf_class(cls):
        """The wrapped ``transformers`` class."""
        import transformers

        return getattr(transformers, cls.hf_class_name)

    def save_pretrained(self, folder: str | Path, **kwargs) -> None:
        """``config.json`` + ``model.safetensors`` of the wrapped model (its own key names)."""
        self.model.save_pretrained(folder, **kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs):
        """The wrapped class's ``from_pretrained`` (a local folder or a hub id), wrapped."""
        return cls(cls.hf_class().from_pretrained(folder, **kwargs))


class LyricsClassifier(_Wrapped):
    """``RobertaForSequenceClassification``; ``forward(input_ids, attention_mask) -> logits``."""

    kind = "lyrics"
    hf_class_name = "RobertaForSequenceClassification"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class AudioClassifier(_Wrapped):
    """``ASTForAudioClassification``; ``forward(input_values (batch, frames, mel)) -> logits``."""

    kind = "audio"
    hf_class_name = "ASTForAudioClassification"

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


def _fusion(audio, lyrics, num_labels: int) -> nn.Module:
    """A :class:`FusionClassifier` over ready encoders; the head is the only new (random) part."""
    from utils.model_related.fusion import FusionClassifier, FusionConfig

    config = FusionConfig(audio_config=audio.config, text_config=lyrics.config, num_labels=num_labels)
    return FusionClassifier(config, audio_encoder=audio, lyrics_encoder=lyrics)


def build_model(kind: str, profile: Profile, num_labels: int, vocab_size: int | None = None) -> nn.Module:
    """A new model of ``kind`` ('lyrics', 'audio', 'multimodal') for ``profile``.

    The paper profile starts from the pretrained checkpoints named in the profile (hub ids
    or local directories); the tiny profile initialises the same classes from scratch.
    ``vocab_size`` is needed for a scratch RoBERTa (the tokenizer's size).
    """
    from transformers import ASTForAudioClassification, ASTModel, RobertaForSequenceClassification, RobertaModel

    vocab_size = vocab_size or profile.model.vocab_size
    if kind == "lyrics":
        config = _roberta_config(profile, vocab_size, num_labels)
        return LyricsClassifier(_from_source(RobertaForSequenceClassification, profile.model.lyrics_source, config))
    if kind == "audio":
        config = _ast_config(profile, num_labels)
        return AudioClassifier(_from_source(ASTForAudioClassification, profile.model.audio_source, config))
    if kind == "multimodal":
        audio = _from_source(ASTModel, profile.model.audio_source, _ast_config(profile))
        lyrics = _from_source(RobertaModel, profile.model.lyrics_source, _roberta_config(profile, vocab_size))
        return _fusion(audio, lyrics, num_labels)
    raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")


def model_inputs(kind: str, batch: dict) -> dict:
    """The keyword inputs ``kind`` takes, picked from a batch dict."""
    return {key: batch[key] for key in INPUT_KEYS[kind]}


# ---------------------------------------------------------------- save
def hf_part(model: nn.Module) -> nn.Module:
    """The ``transformers`` model inside ``model``: the one that is saved and loaded.

    The wrapped ``RobertaForSequenceClassification`` / ``ASTForAudioClassification`` of a lyrics
    or audio classifier; the fusion model itself (a ``PreTrainedModel``).
    """
    return model.model if isinstance(model, _Wrapped) else model


def _describe(model: nn.Module) -> dict:
    if model.kind == "multimodal":
        return {"kind": model.kind, "num_labels": model.config.num_labels,
                "audio_config": model.audio_encoder.config.to_dict(),
                "lyrics_config": model.lyrics_encoder.config.to_dict()}
    config = model.model.config
    return {"kind": model.kind, "num_labels": config.num_labels, "config": config.to_dict()}


def _name_labels(config, extra: dict, out_dir: Path) -> None:
    """Write the class names (``extra['class_names']``, else the task's) into the config's ``id2label``."""
    names = extra.get("class_names")
    if names is None and extra.get("task") in TASKS:
        names = TASKS[extra["task"]]
    if names is None:
        return
    if len(names) != config.num_labels:
        raise ValueError(f"{out_dir}: {len(names)} class names {list(names)} for a model with "
                         f"{config.num_labels} outputs")
    config.id2label = {index: str(name) for index, name in enumerate(names)}
    config.label2id = {str(name): index for index, name in enumerate(names)}


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def save_model(model: nn.Module, out_dir: str | Path, **extra) -> Path:
    """Save ``model`` with ``save_pretrained`` (``config.json``, ``model.safetensors``) plus ``model.json``.

    Parameters
    ----------
    model : LyricsClassifier, AudioClassifier or FusionClassifier
    out_dir : path
        The folder (created if needed); files of an earlier save there are replaced.
    **extra
        Stored in ``model.json`` (e.g. ``task``, ``class_names``, ``profile``); the class names
        (default: the task's) also become the config's ``id2label``.

    Notes
    -----
    ``save_pretrained`` writes into ``out_dir/.save.part/``; each file is then fsynced and renamed
    into place (weights first, ``config.json``, then ``model.json``), so a crash never leaves a
    half-written file under its final name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pretrained = hf_part(model)
    _name_labels(pretrained.config, extra, out_dir)
    staging = out_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    pretrained.save_pretrained(staging)
    for path in sorted(staging.iterdir(), key=lambda p: (p.name == HF_CONFIG_FILE, p.name)):
        _fsync(path)
        os.replace(path, out_dir / path.name)
    shutil.rmtree(staging)
    fsync_dir(out_dir)
    atomic_write(out_dir / CONFIG_FILE, json.dumps({**_describe(model), **extra}, indent=1, default=str))
    return out_dir


# ---------------------------------------------------------------- load
def _hf_class(kind: str):
    if kind == "multimodal":
        from utils.model_related.fusion import FusionClassifier

        return FusionClassifier
    return {"lyrics": LyricsClassifier, "audio": AudioClassifier}[kind].hf_class()


def _wrap(kind: str, pretrained: nn.Module) -> nn.Module:
    return pretrained if kind == "multimodal" else {"lyrics": LyricsClassifier, "audio": AudioClassifier}[kind](pretrained)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors``, under Hugging Face names.

    A file of the earlier layout (every key ``model.``-prefixed: our wrappers' names) loses the
    prefix. An unreadable file is reported with its path.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable safetensors file, truncated or corrupt "
                         f"({type(error).__name__}: {error})") from error
    if state and all(key.startswith("model.") for key in state):
        return {key[len("model."):]: value for key, value in state.items()}
    return state


def _listed(label: str, keys, limit: int = 20) -> str:
    keys = sorted(map(str, keys))
    return f"{label} ({len(keys)}): {keys[:limit]}{' ...' if len(keys) > limit else ''}" if keys else ""


def load_state_report(hf_class, config, state: dict, where: Path) -> tuple[nn.Module, str]:
    """A new ``hf_class`` model of ``config`` holding ``state``, and what did not fit ('' when all did).

    ``from_pretrained(None, config=..., state_dict=state)``: ``transformers`` applies its own key
    conversions (checkpoint names as ``save_pretrained`` writes them, in-memory names, legacy
    names), so a state saved by another ``transformers`` version loads too. The report lists the
    keys of another shape, the missing and the unexpected ones; a failure names ``where``.
    """
    import copy

    try:
        model, info = hf_class.from_pretrained(None, config=copy.deepcopy(config), state_dict=state,
                                               output_loading_info=True, ignore_mismatched_sizes=True)
    except Exception as error:  # a state of another architecture fails in many ways; each names the file
        raise ValueError(f"{where}: cannot load these weights into a {hf_class.__name__} "
                         f"({type(error).__name__}: {error})") from error
    wrong = [f"{key}: checkpoint {tuple(saved)} vs model {tuple(own)}" for key, saved, own in
             info.get("mismatched_keys") or ()]
    report = "; ".join(filter(None, [_listed("wrong shape", wrong), _listed("missing", info.get("missing_keys") or ()),
                                     _listed("unexpected", info.get("unexpected_keys") or ()),
                                     _listed("errors", info.get("error_msgs") or ())]))
    return model.eval(), report


def load_state(hf_class, config, state: dict, where: Path) -> nn.Module:
    """:func:`load_state_report`, refusing any weight that does not fit: every one present and used."""
    model, report = load_state_report(hf_class, config, state, where)
    if report:
        raise ValueError(f"checkpoint {where} does not fit the model: {report}")
    return model


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``model.safetensors`` (either layout) into ``model``, in place; a mismatch names the file."""
    path = Path(path)
    target = hf_part(model)
    target.load_state_dict(load_state(type(target), target.config, read_weights(path), path).state_dict())
    return model


def _config(kind: str, model_dir: Path, description: dict):
    """The Hugging Face config: ``config.json``, or for the earlier layout rebuilt from ``model.json``."""
    config_class = _hf_class(kind).config_class
    path = model_dir / HF_CONFIG_FILE
    if not path.is_file():
        path = model_dir / CONFIG_FILE
        saved = {"audio_config": description.get("audio_config"), "text_config": description.get("lyrics_config"),
                 "num_labels": description["num_labels"], "model_type": config_class.model_type} \
            if kind == "multimodal" else description.get("config")
    else:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"{path}: not a readable config ({type(error).__name__}: {error})") from error
    found = saved.get("model_type") if isinstance(saved, dict) else None
    if found != config_class.model_type:
        raise ValueError(f"{path}: the config of a {found!r} model, not of a {kind} model ({config_class.model_type!r})")
    try:
        config = config_class.from_dict(saved)
    except Exception as error:  # a config the class refuses fails in many ways; each names the file
        raise ValueError(f"{path}: cannot make a {config_class.__name__} of it ({type(error).__name__}: {error})") \
            from error
    if config.num_labels != description["num_labels"]:
        raise ValueError(f"{path}: {config.num_labels} outputs, but {model_dir / CONFIG_FILE} "
                         f"says num_labels={description['num_labels']}")
    return config


def load_model(model_dir: str | Path, device: str = "cpu", *, task: str | None = None, kind: str | None = None,
               profile: str | None = None, class_names=None) -> tuple[nn.Module, dict]:
    """Load a model saved by :func:`save_model` (or in the earlier layout); returns (model in eval mode, model.json).

    ``task``, ``kind``, ``profile`` and ``class_names``, when given, must match the model's
    (:func:`read_model_json`); a mismatch raises :class:`ModelMismatchError` naming the file.
    The architecture comes from ``config.json`` (or, in the earlier layout, ``model.json``);
    every weight must be present and used (:func:`load_state`). Errors name the file.
    """
    model_dir = Path(model_dir)
    description = read_model_json(model_dir, task=task, kind=kind, profile=profile, class_names=class_names)
    kind = description["kind"]
    config = _config(kind, model_dir, description)
    weights = model_dir / WEIGHTS_FILE
    model = _wrap(kind, load_state(_hf_class(kind), config, read_weights(weights), weights))
    return model.to(device).eval(), description


def trained_model_dir(run_dir: str | Path, task: str, kind: str) -> Path:
    """``run_dir/task/kind/best``: where training keeps the best checkpoint of one model."""
    return Path(run_dir) / task / kind / "best"


def load_trained(run_dir: str | Path, task: str, kind: str, device: str = "cpu", *,
                 profile: str | None = None) -> nn.Module:
    """The best checkpoint of ``run_dir/task/kind`` (see :func:`trained_model_dir`), in eval mode on ``device``.

    Its ``model.json`` must say this ``task`` and ``kind``, the task's class names (in
    :data:`utils.config.TASKS` order) and, when given, ``profile``; anything else (e.g. an
    emotion model copied under ``genre/``) raises :class:`ModelMismatchError` naming the file.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    return load_model(trained_model_dir(run_dir, task, kind), device=device, task=task, kind=kind,
                      profile=profile, class_names=TASKS[task])[0]


def model_fingerprint(model: nn.Module) -> str:
    """Hex sha256 of a model's weights: every state-dict entry, sorted by name, as name + raw bytes.

    Two models give the same fingerprint exactly when their parameters and buffers are equal
    (names, dtypes and values); use it, or a prefix of it, as a cache key for results that
    depend on the weights.
    """
    import hashlib

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
