"""The authors' published checkpoints, loaded into our models.

The authors' code (IamTheo2000/MusicLIME, ``Models/Model Related.ipynb``) saves its models with
``torch.save``:

* lyrics: the ``state_dict()`` of a ``RobertaForSequenceClassification`` (from ``roberta-large``);
* audio: the ``state_dict()`` of an ``ASTForAudioClassification``
  (from ``MIT/ast-finetuned-audioset-10-10-0.4593``);
* multimodal: a dict whose ``'model_state_dict'`` is the ``state_dict()`` of their fusion model
  (attributes ``audio_model`` = ``ASTModel``, ``text_model`` = ``RobertaModel`` with its pooler,
  ``classifier.layer_norm`` = ``LayerNorm``, ``classifier.fc`` = ``Linear``), which computes
  ``fc(layer_norm(cat(audio_model(x)[1], text_model(ids, mask)[0][:, 0])))``, exactly what
  :class:`~utils.model_related.fusion.FusionClassifier` computes.

:func:`load_authors_checkpoint` reads such a file with ``torch.load(weights_only=True)`` (no code
from the file runs), renames its keys by :data:`AUTHORS_KEY_MAP` and loads them, strictly, into
the model our profile builds. Key mapping (their prefix -> ours, in the state dict of
:func:`~utils.model_related.models.hf_part`, i.e. the names in our ``model.safetensors``):

==========  ==================================  ==================================
kind        theirs                              ours
==========  ==================================  ==================================
lyrics      ``roberta.``                        ``roberta.``
lyrics      ``classifier.``                     ``classifier.`` (``dense``, ``out_proj``)
audio       ``audio_spectrogram_transformer.``  ``audio_spectrogram_transformer.``
audio       ``classifier.``                     ``classifier.`` (``layernorm``, ``dense``)
multimodal  ``audio_model.``                    ``audio_encoder.``
multimodal  ``text_model.``                     ``lyrics_encoder.``
multimodal  ``classifier.layer_norm.``          ``head.0.``
multimodal  ``classifier.fc.``                  ``head.1.``
==========  ==================================  ==================================

A key under none of these prefixes is refused. The renamed state then loads through
``from_pretrained(None, config=..., state_dict=...)``, so ``transformers`` applies its own
conversions between the names its versions use (their files are in the names of the 4.x versions
they were saved with; e.g. the AST's ``encoder.layer.N.attention.attention.query`` is
``layers.N.attention.q_proj`` in memory since 5.0) and ignores the buffers older versions saved
(RoBERTa's ``position_ids``). The class count (and, for a from-scratch RoBERTa, the vocabulary
size) is read from the file; everything else comes from the profile's configs, so a checkpoint of
another architecture is refused with the list of missing, unexpected and mis-shaped keys and the
file's name.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from utils.config import MODEL_KINDS, Profile
from utils.model_related.models import _ast_config, _hf_class, _roberta_config, _wrap, load_state_report

__all__ = ["AUTHORS_KEY_MAP", "read_authors_state", "map_authors_keys", "load_authors_checkpoint"]

AUTHORS_KEY_MAP: dict[str, tuple[tuple[str, str], ...]] = {
    "lyrics": (("roberta.", "roberta."), ("classifier.", "classifier.")),
    "audio": (("audio_spectrogram_transformer.", "audio_spectrogram_transformer."), ("classifier.", "classifier.")),
    "multimodal": (("audio_model.", "audio_encoder."), ("text_model.", "lyrics_encoder."),
                   ("classifier.layer_norm.", "head.0."), ("classifier.fc.", "head.1.")),
}
"""Per kind, (their key prefix, our key prefix) pairs; see the module's table."""
OUTPUT_WEIGHT = {"lyrics": "classifier.out_proj.weight", "audio": "classifier.dense.weight",
                 "multimodal": "head.1.weight"}
"""Our name of the last layer's weight: its first dimension is the number of classes."""
WORD_EMBEDDINGS = {"lyrics": "roberta.embeddings.word_embeddings.weight",
                   "multimodal": "lyrics_encoder.embeddings.word_embeddings.weight"}


def read_authors_state(path: str | Path, kind: str) -> dict[str, torch.Tensor]:
    """The state dict in one of the authors' checkpoint files (their key names).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a file ``torch.load(weights_only=True)`` accepts, or not a state dict (for
        ``kind='multimodal'``: not a dict holding one under ``'model_state_dict'``); names the file.
    """
    path = Path(path)
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or hostile pickle fails in many ways; each names the file
        raise ValueError(f"{path}: not a readable PyTorch checkpoint, corrupt or refused by weights_only "
                         f"loading ({type(error).__name__}: {error})") from error
    if kind == "multimodal":
        if not isinstance(saved, Mapping) or "model_state_dict" not in saved:
            found = sorted(map(str, saved))[:8] if isinstance(saved, Mapping) else type(saved).__name__
            raise ValueError(f"{path}: not the authors' multimodal checkpoint, a dict with 'model_state_dict' "
                             f"(found {found})")
        saved = saved["model_state_dict"]
    if not isinstance(saved, Mapping) or not saved or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in saved.items()):
        found = type(saved).__name__ if not isinstance(saved, Mapping) else \
            f"a mapping of {sorted({type(v).__name__ for v in saved.values()}) or 'nothing'}"
        raise ValueError(f"{path}: not a state dict (parameter names -> tensors), found {found}")
    return dict(saved)


def map_authors_keys(state: Mapping[str, torch.Tensor], kind: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename the authors' keys to ours (:data:`AUTHORS_KEY_MAP`); returns (renamed, keys under no prefix)."""
    renamed, unmapped = {}, []
    for key, value in state.items():
        prefix = next((pair for pair in AUTHORS_KEY_MAP[kind] if key.startswith(pair[0])), None)
        if prefix is None:
            unmapped.append(key)
        else:
            renamed[prefix[1] + key[len(prefix[0]):]] = value
    return renamed, unmapped


def _size(state: dict, key: str | None, kind: str, path: Path) -> int | None:
    if key is None:
        return None
    if key not in state:
        raise ValueError(f"{path}: no weight that maps to {key!r}, so not the authors' {kind} checkpoint "
                         f"(first keys after mapping: {sorted(state)[:5]})")
    return int(state[key].shape[0])


def _config(kind: str, profile: Profile, num_labels: int, vocab_size: int | None):
    """The Hugging Face config of the profile's ``kind`` model with ``num_labels`` outputs."""
    if kind == "lyrics":
        return _roberta_config(profile, vocab_size, num_labels)
    if kind == "audio":
        return _ast_config(profile, num_labels)
    return _hf_class(kind).config_class(audio_config=_ast_config(profile), text_config=_roberta_config(profile, vocab_size),
                                        num_labels=num_labels)


def load_authors_checkpoint(path: str | Path, kind: str, profile: Profile) -> nn.Module:
    """One of the authors' checkpoint files as our ``kind`` model (eval mode, CPU).

    Parameters
    ----------
    path : path
        Their file (``torch.save`` output; see the module's notes for each kind's layout).
    kind : str
        ``'lyrics'``, ``'audio'`` or ``'multimodal'``.
    profile : Profile
        Gives the encoders' configs (the paper profile: ``roberta-large`` and the AudioSet AST,
        read from the hub cache or the local folders it names; the tiny profile: its small ones).

    Returns
    -------
    LyricsClassifier, AudioClassifier or FusionClassifier
        Computing what their model computes with these weights; save it with
        :func:`~utils.model_related.models.save_model`.

    Raises
    ------
    ValueError
        The file is unreadable or not a state dict, or its weights do not fit the model: the
        message names the file and lists the missing, unexpected and mis-shaped keys.
    """
    path = Path(path)
    state, unmapped = map_authors_keys(read_authors_state(path, kind), kind)
    num_labels = _size(state, OUTPUT_WEIGHT[kind], kind, path)
    vocab_size = _size(state, WORD_EMBEDDINGS.get(kind), kind, path)
    model, report = load_state_report(_hf_class(kind), _config(kind, profile, num_labels, vocab_size), state, path)
    if unmapped:
        report = "; ".join(filter(None, [report, f"under none of the mapped prefixes ({len(unmapped)}): "
                                                 f"{sorted(unmapped)[:20]}"]))
    if report:
        raise ValueError(f"{path}: the authors' {kind} checkpoint does not fit the {profile.name!r} profile's "
                         f"{kind} model: {report}")
    return _wrap(kind, model).eval()
