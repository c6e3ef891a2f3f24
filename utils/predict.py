"""Our trained models as MusicLIME's black box: ``(texts, waveforms) -> probabilities``.

:class:`ModelPredictor` is callable like any black box, and also exposes the explainer's
fast path ``predict_masks(audio_masks, text_masks, factorization, text_features)``:

* only distinct mask rows are composed and encoded (``np.unique`` over rows), so the intact
  modality in ``'audio'`` / ``'lyrical'`` mode is composed, featurised and encoded once per
  batch, and its encoding is kept across batches -- for the fusion model the unperturbed
  modality's encoder runs once per explanation, not once per sample;
* perturbed clips are composed with one (masks x components) matrix product and their AST
  features computed in one batched call;
* the fusion model runs its two encoders separately and the head on the row pairs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .config import Profile, resolve_device
from .features import ast_features
from .text import TokenCache


class ModelPredictor:
    """Wrap a lyrics, audio or fusion classifier from :mod:`utils.models`.

    Parameters
    ----------
    model : LyricsClassifier, AudioClassifier or FusionClassifier.
    profile : supplies the audio settings (rate, mel bins, frames).
    tokens : a :class:`TokenCache` (needed for lyrics and fusion models).
    device : 'cpu', 'cuda' or 'auto'.
    chunk_size : rows per encoder call inside one request (bounds memory).
    """

    def __init__(self, model: torch.nn.Module, profile: Profile, tokens: TokenCache | None = None,
                 device: str = "auto", chunk_size: int = 256):
        self.kind = model.kind
        if self.kind in ("lyrics", "multimodal") and tokens is None:
            raise ValueError(f"a {self.kind} model needs tokens=TokenCache(...)")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.profile = profile
        self.tokens = tokens
        self.chunk_size = chunk_size
        self._intact: dict[str, tuple[object, torch.Tensor]] = {}
        self.calls = {"audio_rows": 0, "text_rows": 0}  # encoder rows actually run (for benchmarks)

    # ------------------------------------------------------------ encoders
    def _audio_outputs(self, waveforms: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Audio model: logits; fusion model: AST pooled embeddings. (rows, ...)."""
        outputs = []
        for start in range(0, len(waveforms), self.chunk_size):
            features = ast_features(waveforms[start:start + self.chunk_size], self.profile.audio, device=self.device)
            if self.kind == "audio":
                outputs.append(self.model(input_values=features))
            else:
                outputs.append(self.model.encode_audio(features))
        self.calls["audio_rows"] += len(waveforms)
        return torch.cat(outputs)

    def _text_outputs(self, texts: Sequence[str]) -> torch.Tensor:
        """Lyrics model: logits; fusion model: RoBERTa first-token states. (rows, ...)."""
        outputs = []
        for start in range(0, len(texts), self.chunk_size):
            encoded = {k: v.to(self.device) for k, v in self.tokens(list(texts[start:start + self.chunk_size])).items()}
            if self.kind == "lyrics":
                outputs.append(self.model(**encoded))
            else:
                outputs.append(self.model.encode_lyrics(**encoded))
        self.calls["text_rows"] += len(texts)
        return torch.cat(outputs)

    # ------------------------------------------------------------ black-box interface
    @torch.no_grad()
    def __call__(self, texts: Sequence[str], waveforms: np.ndarray) -> np.ndarray:
        """Probabilities (batch, classes) for lists of lyrics and (batch, samples) waveforms."""
        if self.kind == "lyrics":
            logits = self._text_outputs(texts)
        elif self.kind == "audio":
            logits = self._audio_outputs(np.asarray(waveforms, dtype=np.float32))
        else:
            if len(texts) != len(waveforms):
                raise ValueError(f"{len(texts)} texts but {len(waveforms)} waveforms")
            logits = self.model.classify(self._audio_outputs(np.asarray(waveforms, dtype=np.float32)),
                                         self._text_outputs(texts))
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    # ------------------------------------------------------------ explainer fast path
    def _unique_encode(self, masks: np.ndarray, source, encode, compose) -> torch.Tensor:
        """Encode each distinct mask row once; all-ones rows are cached per source object."""
        unique, inverse = np.unique(masks, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        full = np.all(unique == 1, axis=1)
        rows: list[torch.Tensor | None] = [None] * len(unique)
        key = type(source).__name__
        if full.any():
            cached = self._intact.get(key)
            if cached is None or cached[0] is not source:
                self._intact[key] = (source, encode(compose(unique[full][:1]))[0])
            for index in np.flatnonzero(full):
                rows[index] = self._intact[key][1]
        todo = np.flatnonzero(~full)
        if len(todo):
            for index, value in zip(todo, encode(compose(unique[todo]))):
                rows[index] = value
        return torch.stack(rows)[torch.as_tensor(inverse, device=self.device)]

    @torch.no_grad()
    def predict_masks(self, audio_masks: np.ndarray, text_masks: np.ndarray, factorization, text_features) -> np.ndarray:
        """Probabilities (batch, classes) for a batch of switch rows (see the module doc)."""
        audio = text = None
        if self.kind in ("audio", "multimodal"):
            if factorization is None:
                raise ValueError(f"a {self.kind} model needs a factorization of the audio")
            audio = self._unique_encode(audio_masks, factorization, self._audio_outputs,
                                        lambda m: factorization.compose(m).astype(np.float32, copy=False))
        if self.kind in ("lyrics", "multimodal"):
            if text_features is None:
                raise ValueError(f"a {self.kind} model needs lyrics")
            text = self._unique_encode(text_masks, text_features, self._text_outputs, text_features.compose)
        logits = audio if self.kind == "audio" else text if self.kind == "lyrics" else self.model.classify(audio, text)
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def load_predictor(run_dir: str | Path, task: str, kind: str, profile: Profile, corpus_dir: str | Path,
                   device: str = "auto") -> ModelPredictor:
    """The best ``run_dir/task/kind`` model wrapped as a predictor (tokenizer from the corpus)."""
    from .pipeline import prepare_tokens, trained_model

    device = resolve_device(device)
    tokens = prepare_tokens(profile, corpus_dir) if kind in ("lyrics", "multimodal") else None
    return ModelPredictor(trained_model(run_dir, task, kind, device=device), profile, tokens, device=device)
