"""Fixed test signals for the torchaudio (Kaldi) reference of the AST front end.

Pure numpy, so the fixture script (``tests/fixtures/make_kaldi_reference.py``, run in an
environment with ``torchaudio``) and the tests (run without it) build the same inputs. Every
signal is a formula plus a seeded ``numpy.random.default_rng``; float64 maths, float32 out.

The fixture ``tests/fixtures/kaldi_fbank_reference.npz`` holds, per signal and rate, the
non-padded frames of ``ASTFeatureExtractor(sampling_rate=rate, num_mel_bins=128)`` computed
through ``torchaudio.compliance.kaldi.fbank`` (key ``"<name>@<rate>"``, shape (frames, 128)
float32, normalised ``(x - mean) / (2 std)``), plus ``versions`` (a JSON string).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "kaldi_fbank_reference.npz"
NUM_MEL_BINS = 128
MAX_LENGTH = 1024
MEAN, STD = -4.2677393, 4.5689974          # AudioSet normalisation, ASTFeatureExtractor's defaults
COMPOSED_SECONDS = 1.2
SOURCES = ("chord", "kick", "hiss")
SEGMENTS = 3
MASKS = np.array([[1] * 9,
                  [1, 0, 1, 0, 1, 1, 0, 0, 1],
                  [0, 1, 1, 1, 0, 0, 1, 1, 0],
                  [0, 0, 0, 1, 1, 1, 0, 0, 0]], dtype=np.float32)
"""(rows, SEGMENTS * len(SOURCES)) 0/1 switches of :func:`components` (segment-major)."""
RATES = {44_100: ("composed", "chirp", "gaps", "short"), 16_000: ("composed", "chirp")}
"""Which signals the fixture holds at which rate (44.1 kHz: the authors'; 16 kHz: AST's own)."""


def _time(seconds: float, rate: int) -> np.ndarray:
    return np.arange(int(round(seconds * rate))) / rate


def sources(rate: int) -> dict[str, np.ndarray]:
    """Three float64 sources of :data:`COMPOSED_SECONDS`: a chord with harmonics, a decaying kick, hiss."""
    t = _time(COMPOSED_SECONDS, rate)
    rng = np.random.default_rng(11)
    chord = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((220.0, 277.2, 329.6, 440.0, 3520.0)))
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-(t % 0.4) / 0.06)
    hiss = rng.standard_normal(t.size)
    return {"chord": 0.15 * chord, "kick": 0.5 * kick, "hiss": 0.03 * hiss}


def components(rate: int) -> np.ndarray:
    """(SEGMENTS * 3, samples) float32: each source inside each of :data:`SEGMENTS` equal segments.

    Segment-major like the paper's factorization (index = segment * 3 + source); trailing samples
    that do not fill a segment are dropped.
    """
    parts = sources(rate)
    length = next(iter(parts.values())).size // SEGMENTS
    matrix = np.zeros((SEGMENTS * len(SOURCES), SEGMENTS * length))
    for segment in range(SEGMENTS):
        window = slice(segment * length, (segment + 1) * length)
        for index, name in enumerate(SOURCES):
            matrix[segment * len(SOURCES) + index, window] = parts[name][window]
    return matrix.astype(np.float32)


def composed(rate: int) -> np.ndarray:
    """(len(MASKS), samples) float32: ``MASKS @ components(rate)`` (float64 sum, then float32)."""
    return (MASKS.astype(np.float64) @ components(rate).astype(np.float64)).astype(np.float32)


def signal(name: str, rate: int) -> np.ndarray:
    """One test signal: (samples,) float32, or (rows, samples) for ``'composed'``.

    * ``composed`` -- :func:`composed`;
    * ``chirp`` -- 1 s exponential sweep 30 Hz .. 0.45 * rate plus quiet noise (the top mel bands);
    * ``gaps`` -- 0.6 s of tone bursts between stretches of exact digital silence, on a DC offset
      in the first half (the log floor and per-frame DC removal);
    * ``short`` -- a noise burst of 1102 + 3 * 441 + 17 samples at 44.1 kHz (4 frames and a bit).
    """
    rng = np.random.default_rng({"chirp": 1, "gaps": 2, "short": 3}.get(name, 0))
    if name == "composed":
        return composed(rate)
    if name == "chirp":
        t = _time(1.0, rate)
        low, high = 30.0, 0.45 * rate
        phase = 2 * np.pi * low * (np.power(high / low, t) - 1) / np.log(high / low)
        wave = 0.3 * np.sin(phase) + 0.002 * rng.standard_normal(t.size)
    elif name == "gaps":
        t = _time(0.6, rate)
        wave = 0.25 * np.sin(2 * np.pi * 1000.0 * t) * ((t % 0.2) < 0.08)
        wave = wave + np.where(t < 0.3, 0.1, 0.0) * ((t % 0.2) < 0.08)
    elif name == "short":
        wave = 0.2 * rng.standard_normal(1102 + 3 * 441 + 17)
    else:
        raise KeyError(f"unknown test signal {name!r}; known: composed, chirp, gaps, short")
    return wave.astype(np.float32)


def audio_config(rate: int):
    """The project's :class:`utils.config.AudioConfig` with the fixture's extractor settings at ``rate``."""
    from utils.config import AudioConfig

    return AudioConfig(sample_rate=rate, num_mel_bins=NUM_MEL_BINS, max_length=MAX_LENGTH, feature_mean=MEAN,
                       feature_std=STD)


def load_reference() -> tuple[dict[str, np.ndarray], dict]:
    """The fixture's arrays (``"<name>@<rate>"`` -> (rows, frames, 128) or (frames, 128)) and its versions."""
    with np.load(FIXTURE, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files if key != "versions"}
        versions = json.loads(str(data["versions"]))
    return arrays, versions
