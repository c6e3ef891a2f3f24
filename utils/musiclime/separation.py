"""Source separators: one interface, three ways of splitting a mixture into the four stems.

Every separator answers ``separate(waveform, sample_rate, track_id=None)`` with a dict
``stem -> (samples,) float32`` in :data:`utils.config.STEMS` order (vocals, drums, bass,
other), each stem as long as the input.

* :class:`OracleSeparator` -- the synthetic corpus's saved stems
  (``<corpus_dir>/stems/<id>/<stem>.wav``); exact, needs the track id.
* :class:`HPSSSeparator` -- weight-free, for any audio offline (librosa median-filtering
  masks); the four stems sum back to the mixture. A crude stand-in, see its limits.
* :class:`utils.musiclime.open_unmix.OpenUnmixSeparator` -- the paper's separator (the
  ``openunmix`` package, 44.1 kHz, stems averaged to mono and resampled back), in its own
  module because it needs ``openunmix`` and ``torchaudio``.

:class:`CachedSeparator` wraps any of them so separation runs once per track: results are
stored as ``.npz`` under a cache directory, keyed by the sha256 of the waveform bytes, the
sample rate, the separator's name and configuration and the track id.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from utils.config import STEMS
from utils.io import atomic_path, id_path

SILENCE_PEAK = 1e-6
"""A waveform whose largest absolute sample is below this is treated as silent."""
LOUD_PEAK = 2.0
"""A float waveform peaking above this gets a warning: audio decoded to float lies in [-1, 1]."""


# ---------------------------------------------------------------- input checks
def check_sample_rate(sample_rate: Any, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as a positive ``int`` (Hz) or raise a ``TypeError``/``ValueError``."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float, np.floating)):
        raise TypeError(f"{name} must be a positive number of Hz, got {type(sample_rate).__name__}")
    if not np.isfinite(sample_rate) or sample_rate <= 0 or float(sample_rate) != int(sample_rate):
        raise ValueError(f"{name} must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def check_waveform(waveform: Any, name: str = "waveform", allow_silent: bool = False) -> np.ndarray:
    """Validate a mono waveform and return it as a C-contiguous float32 array.

    Parameters
    ----------
    waveform : array-like, shape (samples,)
        Mono audio. A 2-D array (stereo / multi-channel) is refused: average the channels first.
    name : str
        Argument name used in error messages.
    allow_silent : bool
        If False (default) an all-silent waveform (peak < :data:`SILENCE_PEAK`) is refused:
        nothing in it can be explained.

    Returns
    -------
    np.ndarray, shape (samples,), float32
        Integer PCM is rescaled to [-1, 1] (:func:`pcm_to_float`); a float waveform peaking
        above :data:`LOUD_PEAK` gets a warning (integer samples stored as float?).
    """
    if isinstance(waveform, (str, bytes, Path)):
        raise TypeError(f"{name} must be an array of samples, got {type(waveform).__name__}; "
                        "load the file first (utils.dataset_related.features.load_audio)")
    try:
        array = np.asarray(waveform)
    except Exception as error:  # e.g. ragged lists
        raise TypeError(f"{name} must be a numeric array of samples: {error}") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be mono with shape (samples,), got shape {array.shape}"
                         + ("; it looks multi-channel (stereo): average the channels first" if array.ndim == 2 else ""))
    if array.size == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if np.issubdtype(array.dtype, np.integer):
        array = pcm_to_float(array, name)
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} NaN or inf samples")
    peak = float(np.max(np.abs(array)))
    if not allow_silent and peak < SILENCE_PEAK:
        raise ValueError(f"{name} is silent (peak |sample| < {SILENCE_PEAK}); there is nothing to explain")
    if peak > LOUD_PEAK:
        warnings.warn(f"{name} peaks at {peak:.4g}, far outside [-1, 1]: integer PCM stored as float? The models "
                      "were trained on audio in [-1, 1] (divide 16-bit samples by 32768)", UserWarning, stacklevel=3)
    return array


def pcm_to_float(array: np.ndarray, name: str = "waveform") -> np.ndarray:
    """Integer PCM samples as float32 in [-1, 1]: signed ``/ 2**(bits-1)``, 8-bit unsigned ``(x - 128) / 128``.

    Other unsigned types are no PCM format and are refused (``TypeError`` naming ``name``).
    """
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.unsignedinteger):
        raise TypeError(f"{name} has dtype {array.dtype}, which is no PCM format; give float samples in [-1, 1]")
    return (array.astype(np.float64) / float(2 ** (8 * array.dtype.itemsize - 1))).astype(np.float32)


def check_stems(stems: Mapping[str, Any], length: int, source: str) -> dict[str, np.ndarray]:
    """Validate a separator's output: exactly :data:`STEMS`, each ``(length,)`` finite float32."""
    if not isinstance(stems, Mapping):
        raise TypeError(f"{source} must return a dict stem -> waveform, got {type(stems).__name__}")
    if set(stems) != set(STEMS):
        raise ValueError(f"{source} returned stems {sorted(stems)}, expected exactly {list(STEMS)}")
    out = {}
    for stem in STEMS:
        array = np.ascontiguousarray(np.asarray(stems[stem]), dtype=np.float32)
        if array.shape != (length,):
            raise ValueError(f"{source}: stem {stem!r} has shape {array.shape}, expected ({length},)")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{source}: stem {stem!r} contains NaN or inf samples")
        out[stem] = array
    return out


# ---------------------------------------------------------------- interface
class Separator:
    """Base class: ``separate`` validates, calls ``_separate``, validates the stems.

    Subclasses set ``name`` and implement ``_separate(waveform, sample_rate, track_id)``;
    ``config()`` returns the JSON-serialisable settings that change the output (cache key).
    """

    name = "separator"

    def separate(self, waveform: np.ndarray, sample_rate: int, track_id: str | None = None) -> dict[str, np.ndarray]:
        """Split a mono mixture into stems.

        Parameters
        ----------
        waveform : np.ndarray, shape (samples,)
            Mono mixture, float, finite, not silent.
        sample_rate : int
            Hz.
        track_id : str, optional
            Corpus id; required by :class:`OracleSeparator`, ignored by the others.

        Returns
        -------
        dict[str, np.ndarray]
            ``{stem: (samples,) float32}`` in :data:`STEMS` order.
        """
        waveform = check_waveform(waveform)
        sample_rate = check_sample_rate(sample_rate)
        stems = self._separate(waveform, sample_rate, track_id)
        return check_stems(stems, waveform.shape[0], f"{type(self).__name__}.separate")

    def _separate(self, waveform: np.ndarray, sample_rate: int, track_id: str | None) -> Mapping[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must implement _separate")

    def config(self) -> dict:
        return {}


# ---------------------------------------------------------------- oracle (synthetic corpus)
class OracleSeparator(Separator):
    """The synthetic corpus's own stems: ``<corpus_dir>/stems/<id>/<stem>.wav``.

    Parameters
    ----------
    corpus_dir : str or Path, optional
        Corpus root; stems are looked up by ``track_id``.
    stem_paths : mapping, optional
        ``{track_id: {stem: path}}`` overriding (or replacing) the corpus layout.
    atol : float
        The loaded stems (cropped to the waveform's length, starting at sample 0) must sum
        to the given waveform within ``atol`` (absolute); otherwise the waveform is not
        that track's mix and a ``ValueError`` says so.

    Notes
    -----
    Stems saved at another rate are resampled with ``librosa.resample`` (soxr, linear, so
    their sum still matches the equally resampled mix).
    """

    name = "oracle"

    def __init__(self, corpus_dir: str | Path | None = None,
                 stem_paths: Mapping[str, Mapping[str, str | Path]] | None = None, atol: float = 1e-3):
        if corpus_dir is None and stem_paths is None:
            raise ValueError("OracleSeparator needs corpus_dir or stem_paths")
        self.corpus_dir = None if corpus_dir is None else Path(corpus_dir)
        if self.corpus_dir is not None and not self.corpus_dir.is_dir():
            raise FileNotFoundError(f"corpus_dir {self.corpus_dir} is not a directory")
        self.stem_paths = {str(k): {s: Path(p) for s, p in v.items()} for k, v in (stem_paths or {}).items()}
        self.atol = float(atol)

    def stem_files(self, track_id: str) -> dict[str, Path]:
        """Paths of the four stem files of ``track_id`` (in :data:`STEMS` order)."""
        track_id = str(track_id)
        if track_id in self.stem_paths:
            paths = self.stem_paths[track_id]
            missing = [s for s in STEMS if s not in paths]
            if missing:
                raise ValueError(f"stem_paths[{track_id!r}] lacks stems {missing}")
            return {s: paths[s] for s in STEMS}
        if self.corpus_dir is None:
            raise KeyError(f"track id {track_id!r} is not in stem_paths and no corpus_dir was given")
        folder = id_path(self.corpus_dir / "stems", track_id, source="OracleSeparator track_id")
        return {s: folder / f"{s}.wav" for s in STEMS}

    def _separate(self, waveform, sample_rate, track_id):
        import librosa
        import soundfile

        if track_id is None:
            raise ValueError("OracleSeparator.separate needs track_id= (the corpus id whose stems to load)")
        stems = {}
        for stem, path in self.stem_files(track_id).items():
            if not path.is_file():
                raise FileNotFoundError(f"stem file for id {track_id!r} not found: {path}")
            audio, file_rate = soundfile.read(str(path), dtype="float32", always_2d=False)
            if audio.ndim == 2:
                audio = audio.mean(axis=1)
            if file_rate != sample_rate:
                audio = librosa.resample(audio, orig_sr=file_rate, target_sr=sample_rate)
            if audio.shape[0] < waveform.shape[0]:
                raise ValueError(f"stem {path} of id {track_id!r} has {audio.shape[0]} samples at {sample_rate} Hz, "
                                 f"fewer than the waveform's {waveform.shape[0]}")
            stems[stem] = np.asarray(audio[: waveform.shape[0]], dtype=np.float32)
        error = float(np.max(np.abs(sum(stems.values()) - waveform)))
        if error > self.atol:
            raise ValueError(f"the saved stems of id {track_id!r} do not sum to the given waveform "
                             f"(max abs error {error:.3g} > {self.atol}); "
                             "is it that track's mix, starting at sample 0?")
        return stems

    def config(self) -> dict:
        return {"corpus_dir": None if self.corpus_dir is None else str(self.corpus_dir.resolve()),
                "stem_paths": {k: {s: str(p) for s, p in v.items()} for k, v in sorted(self.stem_paths.items())}}


# ---------------------------------------------------------------- HPSS (weight-free)
class HPSSSeparator(Separator):
    """Weight-free four-stem split from librosa masks, for any audio offline.

    In the STFT domain (``n_fft``, ``hop_length``):

    1. harmonic / percussive soft masks ``Mh + Mp = 1`` (``librosa.decompose.hpss``,
       ``margin=1``); ``drums = Mp``.
    2. vocals: REPET-SIM on the harmonic magnitude (``librosa.decompose.nn_filter`` with a
       cosine nearest-neighbour median) gives a repeating background; the non-repeating
       foreground's Wiener-like mask ``Mv = fg^2 / (fg^2 + bg^2)``, limited to the
       ``vocal_band_hz`` band, takes its share of the harmonic part.
    3. the rest of the harmonic part is split by a smooth low-pass weight at
       ``bass_cutoff_hz`` into bass and other.

    The four masks are a partition of unity, each stem is the inverse STFT of its masked
    mixture, and ``other`` also receives the residual ``mixture - (vocals + drums + bass +
    other)`` so the stems sum to the mixture to float32 rounding (< 1e-5).

    Limits (be honest when reading explanations built on it): this is a signal-processing
    heuristic, not a trained separator. "drums" is whatever is transient/broadband
    (consonants, plucks, note onsets leak in); "vocals" is whatever does not repeat and
    lies in the vocal band (lead synths and guitar solos land here, sustained repeated
    vocals do not); "bass" is everything harmonic below the cut-off, whatever the
    instrument. The REPET-SIM step needs a few seconds of audio to find repetitions; on
    clips shorter than 5 STFT frames it assigns no vocals. Use it to exercise the pipeline
    on real audio without weights, never as evidence about what a model listens to.
    """

    name = "hpss"

    def __init__(self, n_fft: int = 2048, hop_length: int = 512, kernel_size: int = 31,
                 bass_cutoff_hz: float = 250.0, vocal_band_hz: tuple[float, float] = (200.0, 6000.0),
                 repetition_seconds: float = 2.0):
        if n_fft < 16 or hop_length < 1 or hop_length > n_fft:
            raise ValueError(f"need n_fft >= 16 and 1 <= hop_length <= n_fft, "
                             f"got n_fft={n_fft}, hop_length={hop_length}")
        if not 0 < vocal_band_hz[0] < vocal_band_hz[1]:
            raise ValueError(f"vocal_band_hz must be (low, high) with 0 < low < high, got {vocal_band_hz}")
        if bass_cutoff_hz <= 0:
            raise ValueError(f"bass_cutoff_hz must be positive, got {bass_cutoff_hz}")
        self.n_fft, self.hop_length, self.kernel_size = int(n_fft), int(hop_length), int(kernel_size)
        self.bass_cutoff_hz = float(bass_cutoff_hz)
        self.vocal_band_hz = (float(vocal_band_hz[0]), float(vocal_band_hz[1]))
        self.repetition_seconds = float(repetition_seconds)

    def masks(self, spectrum: np.ndarray, sample_rate: int, n_fft: int | None = None) -> dict[str, np.ndarray]:
        """Soft masks ``{stem: (bins, frames)}`` in [0, 1] that sum to 1 in every bin.

        ``spectrum`` is the complex STFT computed with ``n_fft`` (default ``self.n_fft``).
        """
        import librosa

        n_fft = self.n_fft if n_fft is None else int(n_fft)
        harmonic, percussive = librosa.decompose.hpss(spectrum, kernel_size=self.kernel_size, mask=True, margin=1.0)
        total = harmonic + percussive
        silent = total <= 0                                   # librosa gives 0 and 0 where both medians vanish
        harmonic = np.where(silent, 0.5, harmonic / np.where(silent, 1.0, total))
        percussive = 1.0 - harmonic                           # exact partition of unity

        magnitude = np.abs(spectrum) * harmonic
        frames = magnitude.shape[1]
        vocal = np.zeros_like(magnitude)
        if frames >= 5:                                       # recurrence_matrix needs 1 <= width < (frames-1)//2
            width = int(librosa.time_to_frames(self.repetition_seconds, sr=sample_rate, hop_length=self.hop_length))
            width = max(1, min(width, (frames - 1) // 2 - 1))
            background = librosa.decompose.nn_filter(magnitude, aggregate=np.median, metric="cosine", width=width)
            background = np.minimum(magnitude, background)
            foreground = magnitude - background
            vocal = librosa.util.softmask(foreground, background, power=2)
        freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)[:, None]
        low, high = self.vocal_band_hz
        band = 1.0 / (1.0 + (low / np.maximum(freqs, 1e-9)) ** 8) / (1.0 + (freqs / high) ** 8)
        vocal = vocal * band
        lowpass = 1.0 / (1.0 + (freqs / self.bass_cutoff_hz) ** 8)
        return {
            "vocals": harmonic * vocal,
            "drums": percussive,
            "bass": harmonic * (1.0 - vocal) * lowpass,
            "other": harmonic * (1.0 - vocal) * (1.0 - lowpass),
        }

    def _separate(self, waveform, sample_rate, track_id):
        import librosa

        n_fft = min(self.n_fft, 1 << int(np.floor(np.log2(max(16, waveform.shape[0])))))
        hop = max(1, self.hop_length * n_fft // self.n_fft)   # short clips: smaller frames, same overlap
        mixture = waveform.astype(np.float64)
        spectrum = librosa.stft(mixture, n_fft=n_fft, hop_length=hop)
        masks = self.masks(spectrum, sample_rate, n_fft=n_fft)
        stems = {stem: librosa.istft(spectrum * masks[stem], hop_length=hop, n_fft=n_fft, length=mixture.shape[0])
                 for stem in ("vocals", "drums", "bass")}
        stems["other"] = mixture - stems["vocals"] - stems["drums"] - stems["bass"]   # masked part + residual
        return {stem: stems[stem].astype(np.float32) for stem in STEMS}

    def config(self) -> dict:
        return {"n_fft": self.n_fft, "hop_length": self.hop_length, "kernel_size": self.kernel_size,
                "bass_cutoff_hz": self.bass_cutoff_hz, "vocal_band_hz": list(self.vocal_band_hz),
                "repetition_seconds": self.repetition_seconds}


# ---------------------------------------------------------------- on-disk cache
def separation_cache_key(waveform: np.ndarray, sample_rate: int, separator: Separator,
                         track_id: str | None = None) -> str:
    """sha256 hex digest of the waveform bytes (float32), sample rate, separator name and config, track id."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(waveform, dtype=np.float32).tobytes())
    settings = {"sample_rate": int(sample_rate), "separator": separator.name,
                "config": separator.config(), "track_id": None if track_id is None else str(track_id)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


class CachedSeparator(Separator):
    """Wrap a separator so each distinct input is separated once and stored as ``<key>.npz``.

    Parameters
    ----------
    separator : Separator
        The separator doing the work on a cache miss.
    cache_dir : str or Path
        Directory for the ``.npz`` files (created if missing). Files are written atomically
        and read with ``allow_pickle=False``.
    """

    def __init__(self, separator: Separator, cache_dir: str | Path):
        if not isinstance(separator, Separator):
            raise TypeError(f"separator must be a utils.musiclime.separation.Separator, got {type(separator).__name__}")
        self.inner = separator
        self.name = separator.name
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def cache_path(self, waveform: np.ndarray, sample_rate: int, track_id: str | None = None) -> Path:
        return self.cache_dir / f"{separation_cache_key(waveform, sample_rate, self.inner, track_id)}.npz"

    def _separate(self, waveform, sample_rate, track_id):
        path = self.cache_path(waveform, sample_rate, track_id)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    return {stem: stored[stem] for stem in STEMS}
            except Exception as error:
                raise ValueError(f"cached separation {path} is unreadable ({error}); delete it to recompute") from error
        stems = self.inner.separate(waveform, sample_rate, track_id=track_id)
        with atomic_path(path) as part, open(part, "wb") as stream:
            np.savez(stream, **stems)
        return stems

    def config(self) -> dict:
        return self.inner.config()
