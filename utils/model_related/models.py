"""The paper's three models, built from a profile, saved and loaded as safetensors.

* lyrics: ``RobertaForSequenceClassification``
* audio: ``ASTForAudioClassification`` (new head, ``ignore_mismatched_sizes=True``)
* multimodal: ``ASTModel`` pooled output (768) ++ ``RobertaModel`` first-token state (1024)
  -> ``LayerNorm`` -> ``Linear``. :class:`FusionClassifier` exposes ``encode_audio``,
  ``encode_lyrics`` and ``classify`` so one modality's encoder can run without the other.

A saved model is a folder with ``model.safetensors`` and ``model.json`` (architecture, plus the
task, class names and profile it was trained for). :func:`read_model_json` is the one reader of
``model.json``: it checks the file and refuses a model whose task, kind, profile or class names
differ from what the caller expects (:class:`ModelMismatchError`); :func:`load_model` and
:func:`load_trained` go through it. Every unreadable file is reported with its path.

All three take keyword inputs (``input_values`` and/or ``input_ids`` + ``attention_mask``) and
return logits, so one training loop serves them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from utils.config import MODEL_KINDS, PROFILES, TASKS, Profile
from utils.io import atomic_path, atomic_write

INPUT_KEYS = {
    "lyrics": ("input_ids", "attention_mask"),
    "audio": ("input_values",),
    "multimodal": ("input_values", "input_ids", "attention_mask"),
}
"""The keyword inputs each model kind takes (keys in :data:`utils.config.MODEL_KINDS` order)."""
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


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
class LyricsClassifier(nn.Module):
    """``RobertaForSequenceClassification``; ``forward(input_ids, attention_mask) -> logits``."""

    kind = "lyrics"

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class AudioClassifier(nn.Module):
    """``ASTForAudioClassification``; ``forward(input_values (batch, frames, mel)) -> logits``."""

    kind = "audio"

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


class FusionClassifier(nn.Module):
    """Late fusion as in the paper: [AST pooled ; RoBERTa <s> state] -> LayerNorm -> Linear."""

    kind = "multimodal"

    def __init__(self, audio_encoder, lyrics_encoder, num_labels: int):
        super().__init__()
        self.audio_encoder = audio_encoder
        self.lyrics_encoder = lyrics_encoder
        width = audio_encoder.config.hidden_size + lyrics_encoder.config.hidden_size
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_labels))

    def encode_audio(self, input_values: torch.Tensor) -> torch.Tensor:
        """(batch, frames, mel) -> AST pooled output (batch, audio hidden)."""
        return self.audio_encoder(input_values=input_values).pooler_output

    def encode_lyrics(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) -> RoBERTa first-token hidden state (batch, lyrics hidden)."""
        return self.lyrics_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]

    def classify(self, audio_embedding: torch.Tensor, lyrics_embedding: torch.Tensor) -> torch.Tensor:
        """Head only: embeddings -> logits (batch, classes)."""
        return self.head(torch.cat([audio_embedding, lyrics_embedding], dim=-1))

    def forward(self, input_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encode_audio(input_values), self.encode_lyrics(input_ids, attention_mask))


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
        return FusionClassifier(audio, lyrics, num_labels)
    raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")


def model_inputs(kind: str, batch: dict) -> dict:
    """The keyword inputs ``kind`` takes, picked from a batch dict."""
    return {key: batch[key] for key in INPUT_KEYS[kind]}


# ---------------------------------------------------------------- save / load
def _describe(model: nn.Module) -> dict:
    if isinstance(model, FusionClassifier):
        return {"kind": model.kind, "num_labels": model.head[1].out_features,
                "audio_config": model.audio_encoder.config.to_dict(),
                "lyrics_config": model.lyrics_encoder.config.to_dict()}
    config = model.model.config
    return {"kind": model.kind, "num_labels": config.num_labels, "config": config.to_dict()}


def save_model(model: nn.Module, out_dir: str | Path, **extra) -> Path:
    """Save weights (``model.safetensors``) and how to rebuild them (``model.json``).

    ``extra`` (e.g. task, class_names, profile) is stored in ``model.json`` as well.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / WEIGHTS_FILE) as part:
        save_file(state, str(part))
    atomic_write(out_dir / CONFIG_FILE, json.dumps({**_describe(model), **extra}, indent=1, default=str))
    return out_dir


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


def rebuild_model(description: dict) -> nn.Module:
    """An untrained model with the architecture described by a ``model.json`` dict (no network)."""
    from transformers import (ASTConfig, ASTForAudioClassification, ASTModel, RobertaConfig,
                              RobertaForSequenceClassification, RobertaModel)

    kind = description.get("kind")
    if kind == "lyrics":
        return LyricsClassifier(RobertaForSequenceClassification(RobertaConfig.from_dict(description["config"])))
    if kind == "audio":
        return AudioClassifier(ASTForAudioClassification(ASTConfig.from_dict(description["config"])))
    if kind == "multimodal":
        return FusionClassifier(ASTModel(ASTConfig.from_dict(description["audio_config"])),
                                RobertaModel(RobertaConfig.from_dict(description["lyrics_config"])),
                                description["num_labels"])
    raise ValueError(f"unknown model kind {kind!r}")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load safetensors weights into ``model``; an unreadable file, or a shape or key mismatch, names the file."""
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
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"checkpoint {path} does not fit the model: "
            + "; ".join(filter(None, [f"wrong shape {wrong[:3]}" if wrong else "",
                                      f"missing {missing[:3]}" if missing else "",
                                      f"unexpected {unexpected[:3]}" if unexpected else ""]))
        )
    model.load_state_dict(state)
    return model


def load_model(model_dir: str | Path, device: str = "cpu", *, task: str | None = None, kind: str | None = None,
               profile: str | None = None, class_names=None) -> tuple[nn.Module, dict]:
    """Rebuild and load a model saved by :func:`save_model`; returns (model in eval mode, model.json).

    ``task``, ``kind``, ``profile`` and ``class_names``, when given, must match the model's
    (:func:`read_model_json`); a mismatch raises :class:`ModelMismatchError` naming the file.
    """
    model_dir = Path(model_dir)
    description = read_model_json(model_dir, task=task, kind=kind, profile=profile, class_names=class_names)
    try:
        model = rebuild_model(description)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{model_dir / CONFIG_FILE}: cannot rebuild the model it describes "
                         f"({type(error).__name__}: {error})") from error
    model = load_weights(model, model_dir / WEIGHTS_FILE)
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
