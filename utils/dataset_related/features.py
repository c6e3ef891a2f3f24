"""Audio loading and AST input features, batched in torch.

``ast_features`` reproduces ``transformers.ASTFeatureExtractor`` (Kaldi-compatible log-mel
filterbank: 25 ms Hann frames every 10 ms, DC removal, pre-emphasis 0.97, 512-point power
spectrum, Kaldi mel scale from 20 Hz to Nyquist, natural log with a float32-epsilon floor,
zero-padding / truncation to ``max_length`` frames, then ``(x - mean) / (2 * std)``).
We write the pipeline ourselves because the library version runs one clip at a time in numpy;
here a whole batch goes through one set of tensor ops, on GPU when the input lives there.
The mel filters and the window come from ``transformers.audio_utils`` so they are the
library's own.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from utils.config import AudioConfig
from utils.io import atomic_path, check_id, id_path

FRAME_LENGTH = 400  # samples (25 ms at 16 kHz)
HOP_LENGTH = 160  # samples (10 ms at 16 kHz)
FFT_LENGTH = 512
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
AST_SAMPLE_RATE = 16_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


class AudioError(ValueError):
    """An audio file or waveform that cannot be used; the message names the file or id."""


# ---------------------------------------------------------------- loading
def load_audio(path: str | Path, sample_rate: int, *, name: str | None = None) -> np.ndarray:
    """Load an audio file as mono float32 at ``sample_rate`` Hz (librosa).

    Parameters
    ----------
    path : audio file (wav, flac, mp3, ...).
    sample_rate : target rate in Hz; the file is resampled when it differs.
    name : how to refer to the file in errors (defaults to the path).

    Returns
    -------
    np.ndarray, shape (samples,), float32.

    Raises
    ------
    FileNotFoundError if the file is missing; AudioError if it is unreadable, empty or holds
    NaN / inf samples.
    """
    import librosa

    path = Path(path)
    label = name or str(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file for {label} not found: {path}")
    try:
        waveform, _ = librosa.load(path, sr=sample_rate, mono=True)
    except Exception as error:  # librosa/soundfile/audioread raise many types
        raise AudioError(f"cannot decode audio file for {label} ({path}): {error}") from error
    if waveform.size == 0:
        raise AudioError(f"audio file for {label} is empty: {path}")
    if not np.all(np.isfinite(waveform)):
        raise AudioError(f"audio file for {label} holds NaN or inf samples: {path}")
    return waveform.astype(np.float32, copy=False)


def find_audio(audio_dir: str | Path, song_id: str) -> Path:
    """Path of ``<audio_dir>/<song_id>.<ext>`` for the first known extension that exists."""
    audio_dir = Path(audio_dir)
    for extension in AUDIO_EXTENSIONS:
        candidate = id_path(audio_dir, song_id, extension, source=f"audio of {audio_dir}")
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no audio file for id {song_id!r} in {audio_dir} (tried {', '.join(AUDIO_EXTENSIONS)})"
    )


def fit_clip(waveform: np.ndarray, num_samples: int, *, name: str = "clip", pad: bool = False) -> np.ndarray:
    """Cut a waveform to the first ``num_samples`` samples.

    A clip shorter than ``num_samples`` raises :class:`AudioError` naming it, unless
    ``pad=True``, which zero-pads at the end.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise AudioError(f"{name}: expected a mono waveform (samples,), got shape {waveform.shape}")
    if waveform.shape[0] >= num_samples:
        return waveform[:num_samples]
    if not pad:
        raise AudioError(
            f"{name}: clip has {waveform.shape[0]} samples, shorter than the model input of "
            f"{num_samples} samples"
        )
    return np.pad(waveform, (0, num_samples - waveform.shape[0]))


def load_clip(path: str | Path, audio_cfg: AudioConfig, *, name: str | None = None, pad: bool = False) -> np.ndarray:
    """:func:`load_audio` then :func:`fit_clip` to the profile's clip length (samples)."""
    waveform = load_audio(path, audio_cfg.sample_rate, name=name)
    num_samples = int(round(audio_cfg.clip_seconds * audio_cfg.sample_rate))
    return fit_clip(waveform, num_samples, name=name or str(path), pad=pad)


# ---------------------------------------------------------------- AST features
@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    from transformers.audio_utils import window_function

    return window_function(FRAME_LENGTH, "hann", periodic=False).astype(np.float32)  # (400,)


@functools.lru_cache(maxsize=8)
def _mel_filters(num_mel_bins: int, sample_rate: int) -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    mel_filters = mel_filter_bank(
        num_frequency_bins=FFT_LENGTH // 2 + 1,
        num_mel_filters=num_mel_bins,
        min_frequency=20,
        max_frequency=sample_rate // 2,
        sampling_rate=sample_rate,
        norm=None,
        mel_scale="kaldi",
        triangularize_in_mel_space=True,
    )  # (257, num_mel_bins)
    return mel_filters.astype(np.float32)


def num_frames(num_samples: int) -> int:
    """Number of 10 ms frames the AST front end produces for ``num_samples`` (no centring)."""
    return max(0, 1 + (num_samples - FRAME_LENGTH) // HOP_LENGTH)


def frame_spectra(waveforms: torch.Tensor) -> torch.Tensor:
    """Complex spectra of the pre-processed frames: the linear part of the AST front end.

    Parameters
    ----------
    waveforms : (batch, samples) float tensor at 16 kHz.

    Returns
    -------
    (batch, frames, 257) complex tensor: rFFT (512 points) of each 400-sample frame after
    DC removal, pre-emphasis and the Hann window. Linear in the waveform.
    """
    frames = waveforms.unfold(-1, FRAME_LENGTH, HOP_LENGTH)  # (batch, frames, 400)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    emphasised = torch.cat(
        [frames[..., :1] * (1 - PREEMPHASIS), frames[..., 1:] - PREEMPHASIS * frames[..., :-1]], dim=-1
    )
    window_t = torch.as_tensor(_window(), device=waveforms.device, dtype=waveforms.dtype)
    return torch.fft.rfft(emphasised * window_t, n=FFT_LENGTH, dim=-1)


def spectra_to_features(spectra: torch.Tensor, audio_cfg: AudioConfig) -> torch.Tensor:
    """Non-linear tail of the AST front end: power, mel, log, pad/truncate, normalise.

    Parameters
    ----------
    spectra : (batch, frames, 257) complex tensor from :func:`frame_spectra`.

    Returns
    -------
    (batch, max_length, num_mel_bins) float32 tensor, the AST ``input_values``.
    """
    mel_filters = _mel_filters(audio_cfg.num_mel_bins, audio_cfg.sample_rate)
    power = spectra.real.square() + spectra.imag.square()
    mel_t = torch.as_tensor(mel_filters, device=power.device, dtype=power.dtype)
    log_mel = torch.log(torch.clamp(power @ mel_t, min=MEL_FLOOR))  # (batch, frames, mel)
    frames = log_mel.shape[1]
    if frames < audio_cfg.max_length:
        log_mel = torch.nn.functional.pad(log_mel, (0, 0, 0, audio_cfg.max_length - frames))
    else:
        log_mel = log_mel[:, : audio_cfg.max_length]
    return ((log_mel - audio_cfg.feature_mean) / (audio_cfg.feature_std * 2)).float()


def ast_features(
    waveforms: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    audio_cfg: AudioConfig,
    *,
    device: str | torch.device | None = None,
    chunk_size: int = 256,
) -> torch.Tensor:
    """AST ``input_values`` for a batch of clips, equal to ``ASTFeatureExtractor`` output.

    Parameters
    ----------
    waveforms : (batch, samples) array/tensor, or a (samples,) single clip, mono at
        ``audio_cfg.sample_rate`` (must be 16 kHz, as the AST front end assumes).
    audio_cfg : supplies num_mel_bins, max_length (frames), mean and std.
    device : where to compute (defaults to the input tensor's device, else CPU).
    chunk_size : clips per internal chunk, to bound memory (frames are unfolded).

    Returns
    -------
    torch.Tensor, (batch, max_length, num_mel_bins) float32 on ``device``.
    """
    if audio_cfg.sample_rate != AST_SAMPLE_RATE:
        raise ValueError(
            f"AST features need 16000 Hz audio; the profile says sample_rate={audio_cfg.sample_rate}"
        )
    if isinstance(waveforms, (list, tuple)):
        waveforms = np.stack([np.asarray(w, dtype=np.float32) for w in waveforms])
    batch = torch.as_tensor(waveforms)
    if device is not None:
        batch = batch.to(device)
    batch = batch.float()
    if batch.ndim == 1:
        batch = batch[None]
    if batch.ndim != 2:
        raise ValueError(f"waveforms must be (batch, samples), got shape {tuple(batch.shape)}")
    if batch.shape[1] < FRAME_LENGTH:
        raise ValueError(f"clips of {batch.shape[1]} samples are shorter than one frame ({FRAME_LENGTH})")
    if not torch.isfinite(batch).all():
        raise ValueError("waveforms hold NaN or inf samples")
    outputs = [
        spectra_to_features(frame_spectra(batch[start : start + chunk_size]), audio_cfg)
        for start in range(0, batch.shape[0], chunk_size)
    ]
    return torch.cat(outputs) if outputs else batch.new_zeros((0, audio_cfg.max_length, audio_cfg.num_mel_bins))


def reference_features(waveform: np.ndarray, audio_cfg: AudioConfig) -> np.ndarray:
    """The library's own ``ASTFeatureExtractor`` output for one clip, (max_length, mel)."""
    from transformers import ASTFeatureExtractor

    extractor = ASTFeatureExtractor(
        sampling_rate=audio_cfg.sample_rate,
        num_mel_bins=audio_cfg.num_mel_bins,
        max_length=audio_cfg.max_length,
        mean=audio_cfg.feature_mean,
        std=audio_cfg.feature_std,
    )
    out = extractor(np.asarray(waveform, dtype=np.float32), sampling_rate=audio_cfg.sample_rate, return_tensors="np")
    return out["input_values"][0]


# ---------------------------------------------------------------- precomputed features
def save_features(features_dir: str | Path, ids: Iterable[str], features: np.ndarray | torch.Tensor) -> None:
    """Write one ``<id>.npy`` (frames, mel) float32 per clip, as the authors shared them (atomically)."""
    ids = [check_id(song_id, "save_features ids") for song_id in ids]
    features_dir = Path(features_dir)
    features_dir.mkdir(parents=True, exist_ok=True)
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if len(ids) != array.shape[0]:
        raise ValueError(f"{len(ids)} ids for {array.shape[0]} feature arrays")
    for song_id, feature in zip(ids, array):
        with atomic_path(id_path(features_dir, song_id, ".npy", source="save_features ids")) as part:
            with open(part, "wb") as handle:
                np.save(handle, feature.astype(np.float32))


def load_features(features_dir: str | Path, song_id: str, audio_cfg: AudioConfig | None = None) -> np.ndarray:
    """Read ``<features_dir>/<id>.npy``; check its shape against the profile when given."""
    path = id_path(features_dir, song_id, ".npy", source=f"features of {features_dir}")
    if not path.is_file():
        raise FileNotFoundError(f"no precomputed features for id {song_id!r}: {path}")
    feature = np.load(path, allow_pickle=False)
    if audio_cfg is not None and feature.shape != (audio_cfg.max_length, audio_cfg.num_mel_bins):
        raise ValueError(
            f"features for id {song_id!r} have shape {feature.shape}, expected "
            f"{(audio_cfg.max_length, audio_cfg.num_mel_bins)} ({path})"
        )
    return feature.astype(np.float32, copy=False)
