"""Audio loading and AST input features, batched in torch.

``ast_features`` reproduces ``transformers.ASTFeatureExtractor`` as it runs with ``torchaudio``
installed (``torchaudio.compliance.kaldi.fbank(..., window_type="hanning")``): Kaldi frames of
25 ms every 10 ms at the audio's own rate (``int(rate * 0.025)`` / ``int(rate * 0.010)``
samples, no centring), per-frame DC removal, pre-emphasis 0.97, a symmetric Hann window, the
power spectrum of the frame zero-padded to the next power of two, a Kaldi mel bank from 20 Hz to
Nyquist, natural log with a float32-epsilon floor, zero-padding / truncation to ``max_length``
frames, then ``(x - mean) / (2 * std)``. At 16 kHz (400 / 160 / 512 samples) this is also the
library's numpy fallback (``tests/reference.py``); at 44.1 kHz, the authors' rate (1102 / 441 /
2048 samples), only the torchaudio path computes it, and ``tests/fixtures`` holds its output.
We write the pipeline ourselves because the library version runs one clip at a time; here a
whole batch goes through one set of tensor ops, on GPU when the input lives there. The mel
filters and the window come from ``transformers.audio_utils`` so they are the library's own.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from utils.config import AudioConfig
from utils.io import atomic_path, check_id, id_path

FRAME_MILLISECONDS = 25.0  # Kaldi's frame length (torchaudio's ``frame_length``)
SHIFT_MILLISECONDS = 10.0  # Kaldi's frame shift (torchaudio's ``frame_shift``)
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
AST_SAMPLE_RATE = 16_000  # the AST checkpoint's own rate (AudioSet)
AUTHORS_SAMPLE_RATE = 44_100  # the rate of the authors' spectrograms, separation and segments
SUPPORTED_RATES = (AST_SAMPLE_RATE, AUTHORS_SAMPLE_RATE)
"""Rates whose front end is checked against the extractor (tests/test_features.py)."""
FRAME_LENGTH = 400  # samples: 25 ms at 16 kHz (``frame_geometry(rate).frame_length`` for any rate)
HOP_LENGTH = 160  # samples: 10 ms at 16 kHz
FFT_LENGTH = 512  # samples: FFT size at 16 kHz
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


def clip_window(file_length: int, clip_length: int, sample_rate: int,
                start_seconds: float | None = 0.0) -> tuple[int, int]:
    """Where the model's clip is cut from a file: ``(start, end)`` in samples, end exclusive.

    Parameters
    ----------
    file_length : int
        Length of the (resampled) file, samples.
    clip_length : int
        The model's input length, samples.
    sample_rate : int
        Hz of both.
    start_seconds : float or None
        Where the clip starts, seconds (default 0: the first ``clip_length``). ``None`` centres
        the clip on the file's middle (``start = (file_length - clip_length) // 2``). A file
        shorter than the clip always starts at 0.

    Returns
    -------
    (int, int)
        ``end - start == clip_length`` when the file is long enough; otherwise ``(0,
        file_length)`` and the caller pads ``clip_length - file_length`` zeros.

    Raises
    ------
    ValueError
        A start that is negative or leaves less than a clip before the end of the file (or, for
        a file shorter than the clip, is not 0).
    """
    if start_seconds is None:
        start = max(0, (file_length - clip_length) // 2)
    else:
        latest = max(0, file_length - clip_length)
        start = int(round(float(start_seconds) * sample_rate)) if np.isfinite(start_seconds) else -1
        if start < 0 or start > latest:
            raise ValueError(f"start {start_seconds}: the {clip_length / sample_rate:g} s clip must lie inside the "
                             f"{file_length / sample_rate:.2f} s file; choose a start in [0, {latest / sample_rate:.2f}]")
    return start, min(file_length, start + clip_length)


def cut_clip(waveform: np.ndarray, length: int, sample_rate: int, start_seconds: float | None = 0.0, *,
             name: str = "clip", pad: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """The model's clip of a mono waveform: the project's one clip policy.

    The window is :func:`clip_window` (default the first ``length`` samples). A waveform
    shorter than ``length`` raises :class:`AudioError` naming ``name``, unless ``pad=True``:
    then it is zero-padded at the end with a ``UserWarning`` naming it.

    Parameters
    ----------
    waveform : np.ndarray, shape (samples,)
        Mono audio at ``sample_rate``.
    length : int
        The model's input length, samples.
    sample_rate : int
        Hz.
    start_seconds : float or None
        Where the clip starts (:func:`clip_window`; None: centred).
    name : str
        How errors and warnings refer to the audio.
    pad : bool
        Zero-pad a short waveform instead of refusing it.

    Returns
    -------
    (np.ndarray, (int, int))
        The clip, shape (length,) float32, and its ``(start, end)`` window in ``waveform``.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise AudioError(f"{name}: expected a mono waveform (samples,), got shape {waveform.shape}")
    start, end = clip_window(waveform.shape[0], length, sample_rate, start_seconds)
    clip, missing = waveform[start:end], length - (end - start)
    if missing and not pad:
        raise AudioError(f"{name}: clip has {waveform.shape[0]} samples, shorter than the model input of "
                         f"{length} samples")
    if missing:
        warnings.warn(f"{name} is {waveform.shape[0] / sample_rate:.2f} s long, shorter than the model's "
                      f"{length / sample_rate:g} s input; padded with {missing / sample_rate:.2f} s of silence",
                      UserWarning, stacklevel=3)
        clip = np.pad(clip, (0, missing))
    return np.ascontiguousarray(clip), (start, end)


def load_clip(path: str | Path, audio_cfg: AudioConfig, *, name: str | None = None, pad: bool = False,
              start_seconds: float | None = 0.0) -> np.ndarray:
    """:func:`load_audio` then :func:`cut_clip` to the profile's clip, shape (clip_length,) float32."""
    waveform = load_audio(path, audio_cfg.sample_rate, name=name)
    return cut_clip(waveform, audio_cfg.clip_length, audio_cfg.sample_rate, start_seconds,
                    name=name or str(path), pad=pad)[0]


# ---------------------------------------------------------------- AST features
@dataclass(frozen=True)
class FrameGeometry:
    """Kaldi framing of the AST front end at one sample rate (all lengths in samples).

    Attributes
    ----------
    sample_rate : int
        Hz.
    frame_length : int
        Window, ``int(sample_rate * 0.025)`` (400 at 16 kHz, 1102 at 44.1 kHz).
    hop_length : int
        Shift, ``int(sample_rate * 0.010)`` (160 at 16 kHz, 441 at 44.1 kHz).
    fft_length : int
        The next power of two ``>= frame_length`` (512 at 16 kHz, 2048 at 44.1 kHz).
    """

    sample_rate: int
    frame_length: int
    hop_length: int
    fft_length: int

    @property
    def num_bins(self) -> int:
        """Frequency bins of the one-sided spectrum, ``fft_length // 2 + 1``."""
        return self.fft_length // 2 + 1

    def num_frames(self, length: int) -> int:
        """Frames of a ``length``-sample clip (Kaldi ``snip_edges``: whole windows only)."""
        return max(0, 1 + (int(length) - self.frame_length) // self.hop_length)


@functools.lru_cache(maxsize=8)
def frame_geometry(sample_rate: int) -> FrameGeometry:
    """The AST front end's framing at ``sample_rate`` Hz, as ``torchaudio.compliance.kaldi`` derives it.

    Raises
    ------
    ValueError
        A rate outside :data:`SUPPORTED_RATES` (the message names the profile's ``sample_rate``).
    """
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"AST features need {' Hz or '.join(str(r) for r in SUPPORTED_RATES)} Hz audio "
                         f"(the checkpoint's rate or the authors'); the profile says sample_rate={sample_rate}")
    # the same float expressions as torchaudio's int(sample_frequency * frame_length * 0.001)
    frame_length = int(sample_rate * FRAME_MILLISECONDS * 0.001)
    hop_length = int(sample_rate * SHIFT_MILLISECONDS * 0.001)
    fft_length = 1 << (frame_length - 1).bit_length()
    return FrameGeometry(int(sample_rate), frame_length, hop_length, fft_length)


@functools.lru_cache(maxsize=4)
def _window(frame_length: int) -> np.ndarray:
    """Symmetric Hann window, shape (frame_length,) float32 (Kaldi's ``hanning``)."""
    from transformers.audio_utils import window_function

    return window_function(frame_length, "hann", periodic=False).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _mel_filters(num_mel_bins: int, sample_rate: int) -> np.ndarray:
    """Kaldi mel bank, 20 Hz to Nyquist, shape (fft_length // 2 + 1, num_mel_bins) float32."""
    from transformers.audio_utils import mel_filter_bank

    mel_filters = mel_filter_bank(
        num_frequency_bins=frame_geometry(sample_rate).num_bins,
        num_mel_filters=num_mel_bins,
        min_frequency=20,
        max_frequency=sample_rate // 2,
        sampling_rate=sample_rate,
        norm=None,
        mel_scale="kaldi",
        triangularize_in_mel_space=True,
    )
    return mel_filters.astype(np.float32)


def num_frames(length: int, sample_rate: int) -> int:
    """Number of 10 ms frames the AST front end produces for ``length`` samples at ``sample_rate`` Hz."""
    return frame_geometry(sample_rate).num_frames(length)


def frame_spectra(waveforms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Complex spectra of the pre-processed frames: the linear part of the AST front end.

    Parameters
    ----------
    waveforms : (batch, samples) float tensor at ``sample_rate`` Hz.
    sample_rate : Hz; sets the framing (:func:`frame_geometry`).

    Returns
    -------
    (batch, frames, fft_length // 2 + 1) complex tensor: rFFT (``fft_length`` points, zero
    padded) of each ``frame_length``-sample frame after DC removal, pre-emphasis and the Hann
    window. Linear in the waveform.
    """
    geometry = frame_geometry(sample_rate)
    frames = waveforms.unfold(-1, geometry.frame_length, geometry.hop_length)  # (batch, frames, window)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    emphasised = torch.cat(
        [frames[..., :1] * (1 - PREEMPHASIS), frames[..., 1:] - PREEMPHASIS * frames[..., :-1]], dim=-1
    )
    window_t = torch.as_tensor(_window(geometry.frame_length), device=waveforms.device, dtype=waveforms.dtype)
    return torch.fft.rfft(emphasised * window_t, n=geometry.fft_length, dim=-1)


def spectra_to_features(spectra: torch.Tensor, audio_cfg: AudioConfig) -> torch.Tensor:
    """Non-linear tail of the AST front end: power, mel, log, pad/truncate, normalise.

    Parameters
    ----------
    spectra : (batch, frames, fft_length // 2 + 1) complex tensor from :func:`frame_spectra`
        at ``audio_cfg.sample_rate``.

    Returns
    -------
    (batch, max_length, num_mel_bins) float32 tensor, the AST ``input_values``.
    """
    mel_filters = _mel_filters(audio_cfg.num_mel_bins, audio_cfg.sample_rate)
    if spectra.shape[-1] != mel_filters.shape[0]:
        raise ValueError(f"spectra have {spectra.shape[-1]} frequency bins; sample_rate={audio_cfg.sample_rate} "
                         f"needs {mel_filters.shape[0]}")
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
        ``audio_cfg.sample_rate`` (one of :data:`SUPPORTED_RATES`: 16 kHz or the authors' 44.1 kHz).
    audio_cfg : supplies sample_rate (the framing), num_mel_bins, max_length (frames), mean and std.
    device : where to compute (defaults to the input tensor's device, else CPU).
    chunk_size : clips per internal chunk, to bound memory (frames are unfolded).

    Returns
    -------
    torch.Tensor, (batch, max_length, num_mel_bins) float32 on ``device``.
    """
    geometry = frame_geometry(audio_cfg.sample_rate)
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
    if batch.shape[1] < geometry.frame_length:
        raise ValueError(f"clips of {batch.shape[1]} samples are shorter than one frame "
                         f"({geometry.frame_length} samples at {geometry.sample_rate} Hz)")
    if not torch.isfinite(batch).all():
        raise ValueError("waveforms hold NaN or inf samples")
    outputs = [
        spectra_to_features(frame_spectra(batch[start : start + chunk_size], geometry.sample_rate), audio_cfg)
        for start in range(0, batch.shape[0], chunk_size)
    ]
    return torch.cat(outputs) if outputs else batch.new_zeros((0, audio_cfg.max_length, audio_cfg.num_mel_bins))


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
