"""The authors' MusicLIME query loop, re-created on one of our models: the speed benchmark's baseline.

:class:`AuthorsLoop` does per row what the authors' ``LimeMusicExplainer`` does (PAPER.md): Python
``sum`` of the switched-on component waveforms, lime's ``inverse_removing`` for the lyrics,
per-sample ``transformers.ASTFeatureExtractor`` and tokenizer, the full model on batches of 10
rows. :func:`utils.musiclime.speed.time_authors` times it against the fast path on the same masks.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from utils.config import Profile
from utils.dataset_related.features import AST_SAMPLE_RATE, ast_features
from utils.dataset_related.text import PREPROCESSING


class AuthorsLoop:
    """The authors' MusicLIME query loop, re-created on one of our models.

    As their notebooks (``LimeMusicExplainer.combined_data_labels_distances`` and the
    multimodal ``predict_fn``): for each mask row, the perturbed clip is the Python ``sum``
    of the switched-on component waveforms (audioLIME's ``compose_model_input``; silence if
    none; in ``'lyrical'`` mode all components, every row) and the perturbed lyrics lime's
    ``IndexedString.inverse_removing``; every ``batch_size`` rows the batch goes to
    ``predict_fn``, which runs ``transformers.ASTFeatureExtractor`` and the tokenizer
    (``padding='max_length'``, truncation; the profile's text preprocessing first, for the paper
    profile their ``DataPreprocessor.preprocess``) on each sample and the full model on the batch,
    then softmax. Only the model (ours) and the masks (given, to compare with the fast path)
    differ from their code.

    The extractor is the authors' front end when ``torchaudio`` is installed (their Colab: the
    Kaldi fbank at the profile's rate) or at 16 kHz (its numpy fallback computes the same
    there). Its numpy fallback keeps 16 kHz frames (400 / 160 samples) at any other rate, so
    without ``torchaudio`` at the authors' 44.1 kHz each sample goes through
    :func:`~utils.dataset_related.features.ast_features` on its own instead (the same numbers
    as the torchaudio path, still one clip per call).

    Parameters
    ----------
    model : a model from :mod:`utils.model_related.models` (lyrics, audio or multimodal).
    profile : audio settings of the feature extractor; ``model.max_tokens`` for the tokenizer.
    tokenizer : a Hugging Face tokenizer (lyrics and fusion models).
    device : where the model runs.
    batch_size : rows per ``predict_fn`` call (the authors: 10).

    Attributes
    ----------
    timings : dict
        Seconds per phase: ``composition``, ``features`` (extractor + tokenizer), ``model``.
    """

    def __init__(self, model: torch.nn.Module, profile: Profile, tokenizer=None, device: str = "cpu",
                 batch_size: int = 10):
        from transformers import ASTFeatureExtractor

        self.model = model.to(device).eval()
        self.kind = model.kind
        self.profile = profile
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        audio = profile.audio
        self.extractor = ASTFeatureExtractor(sampling_rate=audio.sample_rate, num_mel_bins=audio.num_mel_bins,
                                             max_length=audio.max_length, mean=audio.feature_mean,
                                             std=audio.feature_std)
        self.library_front_end = audio.sample_rate == AST_SAMPLE_RATE or _torchaudio_extractor()
        self.timings: dict[str, float] = defaultdict(float)

    def spectrogram(self, waveform: np.ndarray) -> torch.Tensor:
        """One clip's AST input, shape (max_length, num_mel_bins) float32, computed on its own.

        ``ASTFeatureExtractor`` where it computes the authors' front end (``library_front_end``),
        else :func:`~utils.dataset_related.features.ast_features` on the one clip.
        """
        audio = self.profile.audio
        if self.library_front_end:
            return self.extractor(waveform, sampling_rate=audio.sample_rate, return_tensors="pt")["input_values"][0]
        return ast_features(waveform, audio)[0]

    @torch.no_grad()
    def predict_fn(self, texts: Sequence[str], waveforms: np.ndarray) -> np.ndarray:
        """Their ``predict_fn(texts, waveforms)``: per-sample features, then one model call."""
        tick = time.perf_counter()
        inputs = {}
        if self.kind in ("audio", "multimodal"):
            specs = [self.spectrogram(w) for w in waveforms]
            inputs["input_values"] = torch.stack(specs).to(self.device)
        if self.kind in ("lyrics", "multimodal"):
            preprocess = PREPROCESSING[self.profile.model.text_preprocessing] or (lambda text: text)
            encoded = [self.tokenizer(preprocess(t), padding="max_length", truncation=True,
                                      max_length=self.profile.model.max_tokens, return_tensors="pt") for t in texts]
            inputs["input_ids"] = torch.cat([e["input_ids"] for e in encoded]).to(self.device)
            inputs["attention_mask"] = torch.cat([e["attention_mask"] for e in encoded]).to(self.device)
        middle = time.perf_counter()
        self.timings["features"] += middle - tick
        logits = self.model(**inputs)
        probabilities = torch.softmax(logits, dim=1).cpu().numpy()
        self.timings["model"] += time.perf_counter() - middle
        return probabilities

    def predictions(self, masks: np.ndarray, factorization, text_features, mode: str = "both") -> np.ndarray:
        """Model probabilities for the neighbourhood ``masks`` (num_samples, columns), row by row."""
        components = list(factorization.components_matrix) if factorization is not None else []
        n_audio = len(components)
        indexed = text_features.indexed_string if text_features is not None else None
        original = text_features.lyrics if text_features is not None else ""
        labels, audios, texts = [], [], []

        def compose(selection):                       # audioLIME's compose_model_input
            if len(selection) == 0:
                return np.zeros_like(components[0])
            selected = [components[i] for i in selection]
            return sum(selected) if len(selected) > 1 else selected[0]

        for row in masks:
            tick = time.perf_counter()
            if mode == "both":
                audios.append(compose(np.where(row[:n_audio] != 0)[0]))
                texts.append(indexed.inverse_removing(np.where(row[n_audio:] == 0)[0]))
            elif mode == "audio":
                audios.append(compose(np.where(row != 0)[0]))
                texts.append(indexed.inverse_removing(np.array([], dtype=int)) if indexed is not None else original)
            else:
                audios.append(compose(np.arange(n_audio)) if n_audio else np.zeros(0, np.float32))
                texts.append(indexed.inverse_removing(np.where(row == 0)[0]))
            self.timings["composition"] += time.perf_counter() - tick
            if len(audios) == self.batch_size:
                labels.extend(self.predict_fn(texts, np.array(audios)))
                audios, texts = [], []
        if audios:
            labels.extend(self.predict_fn(texts, np.array(audios)))
        return np.array(labels)


def _torchaudio_extractor() -> bool:
    """Whether ``transformers.ASTFeatureExtractor`` takes its torchaudio (Kaldi) path here."""
    from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer as ast

    return bool(ast.is_speech_available())
