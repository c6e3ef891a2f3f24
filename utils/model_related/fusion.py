"""The late-fusion classifier as a Hugging Face model: :class:`FusionConfig` and :class:`FusionClassifier`.

The paper's multimodal model (the authors' ``AudioTextClassificationModel``): the AST pooled
output (mean of the CLS and distillation tokens) concatenated with RoBERTa's first-token
(``<s>``) hidden state, then ``LayerNorm`` and ``Linear``; no dropout in the head.

Because it is a ``transformers.PreTrainedModel`` with its own ``PretrainedConfig`` (holding the
AST and RoBERTa configs, the number of classes and their names), a trained model is saved with
``save_pretrained`` (``config.json`` + ``model.safetensors``) and loaded back with one call,
``FusionClassifier.from_pretrained(folder)``, on this machine or from the Hub.

This module imports ``transformers`` when it is imported; :mod:`utils.model_related.models` loads
it only when a fusion model is wanted, so that importing the package stays light.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import ASTConfig, ASTModel, PretrainedConfig, PreTrainedModel, RobertaConfig, RobertaModel

__all__ = ["FusionConfig", "FusionClassifier"]


def _sub_config(config_class, value):
    """``value`` (a config, a dict from ``config.json``, or None for the defaults) as a ``config_class``."""
    if isinstance(value, config_class):
        return value
    if value is None:
        return config_class()
    if isinstance(value, dict):
        return config_class.from_dict(value)
    raise TypeError(f"expected a {config_class.__name__} or a dict, got {type(value).__name__}")


class FusionConfig(PretrainedConfig):
    """Configuration of :class:`FusionClassifier`.

    Parameters
    ----------
    audio_config : ASTConfig or dict, optional
        The audio encoder (``ASTModel``).
    text_config : RobertaConfig or dict, optional
        The lyrics encoder (``RobertaModel``, pooler included as in the authors' model).
    layer_norm_eps : float
        Epsilon of the head's ``LayerNorm`` (PyTorch's default, as the authors' ``nn.LayerNorm``).
    **kwargs
        Standard ``PretrainedConfig`` fields, e.g. ``num_labels``, ``id2label`` (class names).
    """

    model_type = "musiclime-fusion"
    sub_configs = {"audio_config": ASTConfig, "text_config": RobertaConfig}

    def __init__(self, audio_config=None, text_config=None, layer_norm_eps: float = 1e-5, **kwargs):
        # the base class first: it sets the attention implementation of every sub-config it already
        # holds, and the sub-configs may be those of live encoders, which must keep theirs
        super().__init__(**kwargs)
        self.audio_config = _sub_config(ASTConfig, audio_config)
        self.text_config = _sub_config(RobertaConfig, text_config)
        self.layer_norm_eps = layer_norm_eps

    def to_dict(self) -> dict:
        """JSON-ready dict, the sub-configs as dicts (``config.json``)."""
        output = super().to_dict()
        for key in self.sub_configs:
            value = getattr(self, key)
            output[key] = value.to_dict() if isinstance(value, PretrainedConfig) else value
        return output


class FusionClassifier(PreTrainedModel):
    """Late fusion as in the paper: [AST pooled ; RoBERTa ``<s>`` state] -> LayerNorm -> Linear.

    ``encode_audio``, ``encode_lyrics`` and ``classify`` let one modality's encoder run without the
    other (MusicLIME's crossed sampling). Parameter names: ``audio_encoder.*`` (``ASTModel``),
    ``lyrics_encoder.*`` (``RobertaModel``), ``head.0.*`` (``LayerNorm``), ``head.1.*`` (``Linear``).

    Parameters
    ----------
    config : FusionConfig
        The encoders' configs and the number of classes.
    audio_encoder, lyrics_encoder : ASTModel, RobertaModel, optional
        Ready encoders (e.g. pretrained ones); default: new ones built from ``config``. Given
        encoders' configs replace those in ``config``.

    Notes
    -----
    The head is initialised by PyTorch when it is built (``nn.Linear``'s own initialisation, the
    only random draw after the encoders), and ``post_init`` leaves it so; ``from_pretrained``
    initialises only weights its file lacks, the same way.
    """

    config_class = FusionConfig
    base_model_prefix = "fusion"
    main_input_name = "input_values"
    _supports_sdpa = True           # as its encoders: the default attention (sdpa) stays that of a fresh build
    kind = "multimodal"

    def __init__(self, config: FusionConfig, audio_encoder=None, lyrics_encoder=None):
        super().__init__(config)
        self.audio_encoder = audio_encoder if audio_encoder is not None else ASTModel(config.audio_config)
        self.lyrics_encoder = lyrics_encoder if lyrics_encoder is not None else RobertaModel(config.text_config)
        config.audio_config, config.text_config = self.audio_encoder.config, self.lyrics_encoder.config
        width = self.audio_encoder.config.hidden_size + self.lyrics_encoder.config.hidden_size
        self.head = nn.Sequential(nn.LayerNorm(width, eps=config.layer_norm_eps), nn.Linear(width, config.num_labels))
        if not self.head[1].weight.is_meta:       # built for real (not for from_pretrained): keep torch's init
            for module in self.head:
                module._is_hf_initialized = True
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's own initialisation for the head's layers (the encoders initialise themselves)."""
        if isinstance(module, (nn.LayerNorm, nn.Linear)):
            module.reset_parameters()

    def get_input_embeddings(self) -> nn.Module:
        """The token embeddings (those of the lyrics encoder: the only token input)."""
        return self.lyrics_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the lyrics encoder's token embeddings."""
        self.lyrics_encoder.set_input_embeddings(value)

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
        """Logits (batch, classes) of songs given as spectrograms and tokenised lyrics."""
        return self.classify(self.encode_audio(input_values), self.encode_lyrics(input_ids, attention_mask))
