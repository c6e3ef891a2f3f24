"""Our trained models as MusicLIME's black box: ``(texts, waveforms) -> probabilities``.

:class:`ModelPredictor` is callable like any black box, and also exposes the explainer's
fast paths:

* ``predict_masks(audio_masks, text_masks, factorization, text_features)`` (i.i.d.
  sampling): only distinct mask rows are composed and encoded (``np.unique`` over rows), so
  the intact modality in ``'audio'`` / ``'lyrical'`` mode is composed, featurised and
  encoded once, and its encoding is kept across batches -- for the fusion model the
  unperturbed modality's encoder runs once per explanation, not once per sample;
* ``predict_crossed(audio_masks, text_masks, factorization, text_features, pairs)``
  (crossed sampling, fusion model only): each encoder runs once per mask of its own
  modality and the head on (audio mask, text mask) pairs; see
  :func:`utils.musiclime.sampling.sample_crossed_neighbourhood`.

Audio features of perturbed clips come straight from the masks
(:class:`utils.musiclime.spectral.SpectralComposer`); perturbed lyrics are composed and
tokenised piecewise (:mod:`utils.musiclime.lyric_tokens`).

Inference can run under autocast (``autocast='bf16'`` / ``'fp16'``); features, masks and
embeddings stay on the model's device between phases, and only the probabilities come back.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from utils.config import Profile, resolve_device
from utils.dataset_related.features import ast_features
from utils.dataset_related.text import TokenCache
from utils.musiclime.lyric_tokens import PieceTokenizer, compose_texts
from utils.musiclime.spectral import SpectralComposer

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FEATURE_PATHS = ("auto", "spectral", "waveform")
HEAD_CHUNK = 65_536  # (audio, text) pairs per head call in crossed mode (bounds memory)
PHASES = {"composition": ("audio_composition", "text_composition"),
          "features": ("audio_features", "text_features"),
          "encoders": ("audio_encoder", "text_encoder"), "head": ("head",)}
"""How :attr:`ModelPredictor.timings` keys group into the benchmark's phases."""


class ModelPredictor:
    """Wrap a lyrics, audio or fusion classifier from :mod:`utils.model_related.models`.

    Parameters
    ----------
    model : LyricsClassifier, AudioClassifier or FusionClassifier.
    profile : supplies the audio settings (rate, mel bins, frames).
    tokens : a :class:`TokenCache` (needed for lyrics and fusion models).
    device : 'cpu', 'cuda' or 'auto'.
    chunk_size : rows per encoder call (bounds memory).
    features : 'auto' (linear-domain :class:`~utils.musiclime.spectral.SpectralComposer`
        features whenever the factorization offers a ``components_matrix``), 'spectral'
        (require it) or 'waveform' (compose waveforms, then
        :func:`utils.dataset_related.features.ast_features`).
    autocast : None (fp32), 'bf16' or 'fp16': encoders and head run under
        ``torch.autocast`` with that dtype; features are computed in fp32 and the
        probabilities returned in float32.

    Attributes
    ----------
    calls : dict
        ``audio_rows`` / ``text_rows``: encoder rows actually run (encoder passes).
    timings : dict
        Seconds spent per phase: ``audio_composition`` / ``text_composition`` (waveforms /
        texts from masks), ``audio_features`` (AST features, composer set-up) /
        ``text_features`` (tokenisation), ``audio_encoder`` / ``text_encoder``, ``head``
        (fusion head, softmax, copy to host); :data:`PHASES` groups them. On CUDA set
        ``sync_timings = True`` for exact per-phase figures (synchronises at phase ends).
    """

    def __init__(self, model: torch.nn.Module, profile: Profile, tokens: TokenCache | None = None,
                 device: str = "auto", chunk_size: int = 256, *, features: str = "auto",
                 autocast: str | None = None):
        self.kind = model.kind
        if self.kind in ("lyrics", "multimodal") and tokens is None:
            raise ValueError(f"a {self.kind} model needs tokens=TokenCache(...)")
        if features not in FEATURE_PATHS:
            raise ValueError(f"features must be one of {FEATURE_PATHS}, got {features!r}")
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.profile = profile
        self.tokens = tokens
        self.features = features
        self.autocast = autocast
        self.sync_timings = False
        self._intact: dict[str, tuple[object, torch.Tensor]] = {}
        self._composer: tuple[object, SpectralComposer] | None = None
        self._pieces: PieceTokenizer | bool | None = None   # perturbed lyrics' tokens (False: unsupported)
        self.calls = {"audio_rows": 0, "text_rows": 0}  # encoder rows actually run (for benchmarks)
        self.timings: dict[str, float] = defaultdict(float)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.chunk_size = int(chunk_size)

    # ------------------------------------------------------------ what the model takes
    @property
    def sample_rate(self) -> int:
        """The audio rate the model expects, Hz (checked against a factorization's)."""
        return int(self.profile.audio.sample_rate)

    @property
    def clip_length(self) -> int:
        """The model's audio input, samples; a longer factorization is refused."""
        return int(self.profile.clip_length)

    def visible_chars(self, lyrics: str) -> int | None:
        """Leading characters of ``lyrics`` inside the token window (None: all of them, or no lyrics model)."""
        if self.kind == "audio" or self.tokens is None:
            return None
        return self.tokens.visible_chars(lyrics)

    # ------------------------------------------------------------ bookkeeping
    def reset_counters(self) -> None:
        """Zero ``calls`` and ``timings``."""
        self.calls = {"audio_rows": 0, "text_rows": 0}
        self.timings = defaultdict(float)

    def _tick(self, phase: str, since: float) -> float:
        if self.sync_timings and str(self.device).startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[phase] += now - since
        return now

    def _to_device(self, array) -> torch.Tensor:
        """Host array -> tensor on the model's device; to CUDA through pinned memory without
        blocking, so the copy does not wait for the kernels already queued (no host round trip)."""
        tensor = torch.as_tensor(array)
        if tensor.device.type == "cpu" and str(self.device).startswith("cuda"):
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _autocast(self):
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        return torch.autocast(device_type, dtype=AUTOCAST_DTYPES.get(self.autocast, torch.float32),
                              enabled=self.autocast is not None)


    # ------------------------------------------------------------ encoders
    def _encode_audio_features(self, features: torch.Tensor) -> torch.Tensor:
        """Audio model: logits; fusion model: AST pooled embeddings, for (rows, frames, mel) features."""
        with self._autocast():
            if self.kind == "audio":
                return self.model(input_values=features)
            return self.model.encode_audio(features)

    def _audio_outputs(self, waveforms: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Audio model: logits; fusion model: AST pooled embeddings, for (rows, samples) waveforms."""
        outputs = []
        for start in range(0, len(waveforms), self.chunk_size):
            tick = time.perf_counter()
            features = ast_features(waveforms[start:start + self.chunk_size], self.profile.audio, device=self.device)
            tick = self._tick("audio_features", tick)
            outputs.append(self._encode_audio_features(features))
            self._tick("audio_encoder", tick)
        self.calls["audio_rows"] += len(waveforms)
        return torch.cat(outputs)

    def _encode_tokens(self, encoded: dict) -> torch.Tensor:
        with self._autocast():
            if self.kind == "lyrics":
                return self.model(**encoded)
            return self.model.encode_lyrics(**encoded)

    def _text_outputs(self, texts: Sequence[str], tokenize=None) -> torch.Tensor:
        """Lyrics model: logits; fusion model: RoBERTa first-token states. (rows, ...).

        ``tokenize`` (default the ``TokenCache``) turns a list of texts into ids and masks.
        """
        tokenize = tokenize or self.tokens
        tick = time.perf_counter()
        tokens = tokenize(list(texts))                      # one call: the tokenizer batches internally
        self._tick("text_features", tick)
        outputs = []
        for start in range(0, len(texts), self.chunk_size):
            tick = time.perf_counter()
            encoded = {k: self._to_device(v[start:start + self.chunk_size]) for k, v in tokens.items()}
            tick = self._tick("text_features", tick)
            outputs.append(self._encode_tokens(encoded))
            self._tick("text_encoder", tick)
        self.calls["text_rows"] += len(texts)
        return torch.cat(outputs)

    def _composer_for(self, factorization) -> SpectralComposer | None:
        """The song's :class:`~utils.musiclime.spectral.SpectralComposer` (built once per factorization),
        or None for the waveform path."""
        if self.features == "waveform":
            return None
        matrix = getattr(factorization, "components_matrix", None)
        if matrix is None:
            if self.features == "spectral":
                raise ValueError("features='spectral' needs a factorization with a components_matrix")
            return None
        if self._composer is None or self._composer[0] is not factorization:
            tick = time.perf_counter()
            self._composer = (factorization, SpectralComposer(matrix, self.profile.audio, self.device))
            self._tick("audio_features", tick)
        return self._composer[1]

    def _audio_from_masks(self, masks: np.ndarray, factorization) -> torch.Tensor:
        """Encoder outputs for (rows, n_components) masks, chunk by chunk.

        Perturbed rows take the linear-domain path; the intact clip alone (all-ones rows,
        encoded once per song) takes it too when the song's composer exists, else the
        waveform path, so no composer is built for a song whose audio is never perturbed
        ('lyrical' mode).
        """
        intact_only = bool(np.all(np.asarray(masks) == 1))
        existing = self._composer is not None and self._composer[0] is factorization
        composer = None if intact_only and not existing else self._composer_for(factorization)
        if composer is None:
            tick = time.perf_counter()
            waveforms = factorization.compose(masks).astype(np.float32, copy=False)
            self._tick("audio_composition", tick)
            return self._audio_outputs(waveforms)
        outputs = []
        masks_t = self._to_device(np.asarray(masks, dtype=np.float64))
        for start in range(0, len(masks_t), self.chunk_size):
            tick = time.perf_counter()
            features = composer(masks_t[start:start + self.chunk_size])
            tick = self._tick("audio_features", tick)
            outputs.append(self._encode_audio_features(features))
            self._tick("audio_encoder", tick)
        self.calls["audio_rows"] += len(masks_t)
        return torch.cat(outputs)

    def _text_from_masks(self, masks: np.ndarray, text_features) -> torch.Tensor:
        tick = time.perf_counter()
        texts = compose_texts(text_features, masks)
        self._tick("text_composition", tick)
        if self._pieces is None:
            supported = PieceTokenizer.supports(self.tokens.tokenizer)
            self._pieces = PieceTokenizer(self.tokens.tokenizer, self.tokens.max_tokens,
                                          getattr(self.tokens, "preprocess", None)) if supported else False
        return self._text_outputs(texts, self._pieces or None)

    def _finish(self, logits: torch.Tensor) -> np.ndarray:
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

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
            audio = self._audio_outputs(np.asarray(waveforms, dtype=np.float32))
            text = self._text_outputs(texts)
            tick = time.perf_counter()
            with self._autocast():
                logits = self.model.classify(audio, text)
            out = self._finish(logits)
            self._tick("head", tick)
            return out
        tick = time.perf_counter()
        out = self._finish(logits)
        self._tick("head", tick)
        return out

    # ------------------------------------------------------------ explainer fast paths
    def _unique_encode(self, masks: np.ndarray, source, encode) -> torch.Tensor:
        """Encode each distinct mask row once; all-ones rows are cached per source object."""
        unique, inverse = np.unique(np.asarray(masks), axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        full = np.all(unique == 1, axis=1)
        key = type(source).__name__
        todo = np.flatnonzero(~full)
        encoded = encode(unique[todo]) if len(todo) else None   # perturbed rows first (they build the composer)
        if full.any():
            cached = self._intact.get(key)
            if cached is None or cached[0] is not source:
                self._intact[key] = (source, encode(unique[full][:1])[0])
            intact = self._intact[key][1]
            if encoded is None:
                return intact.expand(len(inverse), *intact.shape)
            rows = encoded.new_empty((len(unique), *encoded.shape[1:]))
            rows[self._to_device(todo)] = encoded
            rows[self._to_device(np.flatnonzero(full))] = intact.to(encoded.dtype)
        else:
            rows = encoded
        return rows[self._to_device(inverse)]

    def _check_sources(self, factorization, text_features) -> None:
        if self.kind in ("audio", "multimodal") and factorization is None:
            raise ValueError(f"a {self.kind} model needs a factorization of the audio")
        if self.kind in ("lyrics", "multimodal") and text_features is None:
            raise ValueError(f"a {self.kind} model needs lyrics")

    @torch.no_grad()
    def predict_masks(self, audio_masks: np.ndarray, text_masks: np.ndarray, factorization, text_features) -> np.ndarray:
        """Probabilities (batch, classes) for a batch of switch rows (see the module doc).

        ``audio_masks`` is (batch, n_components), ``text_masks`` (batch, n_text_features);
        row ``i`` of the answer is the model's output for audio row ``i`` with text row ``i``.
        """
        self._check_sources(factorization, text_features)
        audio = text = None
        if self.kind in ("audio", "multimodal"):
            audio = self._unique_encode(audio_masks, factorization, lambda m: self._audio_from_masks(m, factorization))
        if self.kind in ("lyrics", "multimodal"):
            text = self._unique_encode(text_masks, text_features, lambda m: self._text_from_masks(m, text_features))
        tick = time.perf_counter()
        if self.kind == "multimodal":
            with self._autocast():
                logits = self.model.classify(audio, text)
        else:
            logits = audio if self.kind == "audio" else text
        out = self._finish(logits)
        self._tick("head", tick)
        return out

    @torch.no_grad()
    def predict_crossed(self, audio_masks: np.ndarray, text_masks: np.ndarray, factorization, text_features,
                        pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Crossed sampling (fusion model only): each encoder once per mask, the head on pairs.

        Parameters
        ----------
        audio_masks : (K_a, n_components) audio switch rows.
        text_masks : (K_t, n_text_features) text switch rows.
        pairs : (audio_index, text_index) integer arrays of equal length ``n``; default all
            ``K_a * K_t`` pairs in row-major order (audio index major).

        Returns
        -------
        (n, classes) float32 probabilities: row ``r`` is the model's output for
        ``audio_masks[audio_index[r]]`` with ``text_masks[text_index[r]]``. The encoders
        run ``K_a + K_t`` rows (fewer when masks repeat), not ``2 n``.
        """
        if self.kind != "multimodal":
            raise ValueError(f"crossed sampling needs a late-fusion model (per-modality encoders + head); "
                             f"this predictor wraps a {self.kind} model")
        self._check_sources(factorization, text_features)
        audio = self._unique_encode(audio_masks, factorization, lambda m: self._audio_from_masks(m, factorization))
        text = self._unique_encode(text_masks, text_features, lambda m: self._text_from_masks(m, text_features))
        if pairs is None:
            audio_index = np.repeat(np.arange(len(audio)), len(text))
            text_index = np.tile(np.arange(len(text)), len(audio))
        else:
            audio_index, text_index = (np.asarray(p, dtype=np.int64).reshape(-1) for p in pairs)
            if audio_index.shape != text_index.shape:
                raise ValueError(f"pairs must be two index arrays of equal length, got {audio_index.shape} "
                                 f"and {text_index.shape}")
            for name, index, size in (("audio", audio_index, len(audio)), ("text", text_index, len(text))):
                if len(index) and (index.min() < 0 or index.max() >= size):
                    raise ValueError(f"pairs: {name} index out of range [0, {size})")
        tick = time.perf_counter()
        audio_index, text_index = self._to_device(audio_index), self._to_device(text_index)
        logits = []
        with self._autocast():
            for start in range(0, len(audio_index), HEAD_CHUNK):
                stop = start + HEAD_CHUNK
                logits.append(self.model.classify(audio[audio_index[start:stop]], text[text_index[start:stop]]).float())
        out = self._finish(torch.cat(logits))
        self._tick("head", tick)
        return out


def load_predictor(run_dir: str | Path, task: str, kind: str, profile: Profile, corpus_dir: str | Path,
                   device: str = "auto", **options) -> ModelPredictor:
    """The best ``run_dir/task/kind`` model wrapped as a predictor (tokenizer from the corpus).

    ``options`` go to :class:`ModelPredictor` (``chunk_size``, ``features``, ``autocast``). A saved
    model of another task, kind, profile or class list is refused
    (:func:`utils.model_related.models.load_trained`).
    """
    from utils.model_related.inputs import prepare_tokens
    from utils.model_related.models import load_trained

    device = resolve_device(device)
    tokens = prepare_tokens(profile, corpus_dir) if kind in ("lyrics", "multimodal") else None
    model = load_trained(run_dir, task, kind, device=device, profile=profile.name)
    return ModelPredictor(model, profile, tokens, device=device, **options)
