"""The sounds of the synthetic corpus: the stems of a song, the planted cues, the distractors.

Plain numpy synthesis (harmonic tones, envelopes, filtered noise) used by
:func:`utils.dataset_related.synth.make_song`; every random draw comes from the generator it is
handed, so a song is reproducible from its seed.
"""
from __future__ import annotations

import numpy as np

from utils.config import STEMS


# ---------------------------------------------------------------- sound makers
def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _tone(freq: float | np.ndarray, n: int, sr: int, harmonics: tuple[float, ...] = (1.0,), phase: float = 0.0) -> np.ndarray:
    """Harmonic tone; ``freq`` may be a per-sample array (vibrato / glide). Partials above 7 kHz are skipped."""
    freq = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    phase_track = 2 * np.pi * np.cumsum(freq) / sr + phase
    out = np.zeros(n)
    for k, amplitude in enumerate(harmonics, start=1):
        if amplitude and k * float(freq.max()) < 7000:
            out += amplitude * np.sin(k * phase_track)
    return out


def _envelope(n: int, sr: int, attack: float, decay: float) -> np.ndarray:
    """Attack (s) then exponential decay with time constant ``decay`` (s)."""
    t = np.arange(n) / sr
    env = np.exp(-t / decay)
    a = min(n, max(1, int(attack * sr)))
    env[:a] *= np.linspace(0, 1, a)
    return env


def fade(x: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    k = min(len(x) // 2, max(1, int(seconds * sr)))
    ramp = np.linspace(0, 1, k)
    x = x.copy()
    x[:k] *= ramp
    x[-k:] *= ramp[::-1]
    return x


def add_sound(track: np.ndarray, sound: np.ndarray, start: int) -> None:
    end = min(len(track), start + len(sound))
    if end > start >= 0:
        track[start:end] += sound[: end - start]


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def _highpass(x: np.ndarray) -> np.ndarray:
    return np.diff(x, prepend=0.0)


def _lowpass(x: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(x, np.ones(width) / width, mode="same")


# ---------------------------------------------------------------- stems
def _progression(rng: np.random.Generator) -> list[int]:
    """Scale degrees (semitones from the root) of 4 chords; major or minor flavour."""
    major = [[0, 7, 9, 5], [0, 5, 7, 5], [0, 9, 5, 7], [0, 4, 5, 7]]
    return major[rng.integers(len(major))]


def _chord_notes(root: int, degree: int) -> list[int]:
    minor_degrees = {9, 4, 2}
    third = 3 if degree % 12 in minor_degrees else 4
    base = root + degree
    return [base, base + third, base + 7]


def render_stems(rng: np.random.Generator, sample_rate: int, clip_seconds: float, energy: float) -> dict[str, np.ndarray]:
    """The four stems of one song (float64, ``round(clip_seconds * sample_rate)`` samples each).

    A chord progression in a random key: plucked bass roots, triads (sustained when calm,
    strummed when energetic), kick / snare / hi-hat at a tempo set by ``energy`` (0..1), and
    a vibrato vocal line on chord tones.
    """
    sr, n = sample_rate, int(round(clip_seconds * sample_rate))
    bpm = 60.0 + 110.0 * energy
    beat = int(sr * 60.0 / bpm)
    root = 40 + int(rng.integers(0, 12))  # E2..D#3 for the bass
    degrees = _progression(rng)
    chord_len = 2 * beat
    stems = {name: np.zeros(n) for name in STEMS}

    # bass: plucked root notes on every beat, octave jumps
    for i, start in enumerate(range(0, n, beat)):
        degree = degrees[(start // chord_len) % len(degrees)]
        note = root + degree + (12 if i % 4 == 3 else 0)
        length = min(beat, n - start)
        sound = _tone(_midi_hz(note), length, sr, (1.0, 0.5, 0.3, 0.15)) * _envelope(length, sr, 0.005, 0.25)
        add_sound(stems["bass"], fade(sound, sr, 0.004) * 0.35, start)

    # other: triads, sustained for calm songs, strummed eighths for energetic ones
    step = chord_len if energy < 0.35 else (beat if energy < 0.65 else beat // 2)
    for start in range(0, n, step):
        degree = degrees[(start // chord_len) % len(degrees)]
        length = min(step, n - start)
        sound = sum(_tone(_midi_hz(root + 24 + p), length, sr, (1.0, 0.4, 0.2)) for p in _chord_notes(0, degree)) / 3
        decay = 0.8 if step == chord_len else 0.18
        add_sound(stems["other"], fade(sound * _envelope(length, sr, 0.01, decay), sr) * 0.18, start)

    # drums: kick on 1 and 3, snare on 2 and 4, hi-hats on eighths (sixteenths when energetic)
    loudness = 0.35 + 0.5 * energy
    kick_len, snare_len, hat_len = int(0.18 * sr), int(0.15 * sr), int(0.05 * sr)
    kick_freq = np.linspace(120, 45, kick_len)
    kick = _tone(kick_freq, kick_len, sr) * _envelope(kick_len, sr, 0.002, 0.06)
    for b, start in enumerate(range(0, n, beat)):
        if b % 2 == 0:
            add_sound(stems["drums"], kick * loudness, start)
        else:
            snare = (_lowpass(_noise(rng, snare_len), 3) * 0.6 + _tone(185.0, snare_len, sr) * 0.4)
            add_sound(stems["drums"], snare * _envelope(snare_len, sr, 0.001, 0.05) * loudness * 0.8, start)
    hat_step = beat // 4 if energy > 0.65 else beat // 2
    for start in range(0, n, hat_step):
        hat = _highpass(_highpass(_noise(rng, hat_len))) * _envelope(hat_len, sr, 0.001, 0.012)
        add_sound(stems["drums"], hat * loudness * 0.25, start)

    # vocals: a sung line on chord tones with vibrato, syllables with short gaps
    t = 0
    while t < n:
        syllable = int(beat * rng.choice([0.5, 1.0, 1.0, 1.5]))
        length = min(syllable, n - t)
        if rng.random() < 0.85 and length > int(0.05 * sr):
            degree = degrees[(t // chord_len) % len(degrees)]
            pitch = root + 24 + degree + int(rng.choice([0, 4, 7, 12]))
            sung = int(length * 0.85)
            vibrato = 1 + 0.012 * np.sin(2 * np.pi * 5.5 * np.arange(sung) / sr)
            voice = _tone(_midi_hz(pitch) * vibrato, sung, sr, (1.0, 0.6, 0.45, 0.3, 0.2, 0.12))
            env = np.minimum(1.0, np.arange(sung) / (0.03 * sr)) * np.minimum(1.0, (sung - np.arange(sung)) / (0.05 * sr))
            add_sound(stems["vocals"], voice * env * 0.16, t)
        t += syllable
    return stems


def cue_sound(rng: np.random.Generator, sound: str, n: int, sr: int) -> np.ndarray:
    """A planted class cue of ``n`` samples (one segment)."""
    t = np.arange(n) / sr
    if sound == "arpeggio":  # bright square-wave 16ths around 1.5-3 kHz
        out = np.zeros(n)
        step = max(1, n // 8)
        base = 84 + int(rng.integers(0, 5))
        for i, start in enumerate(range(0, n, step)):
            length = min(step, n - start)
            note = base + (0, 4, 7, 12)[i % 4]
            out[start:start + length] = np.sign(np.sin(2 * np.pi * _midi_hz(note) * t[:length])) * _envelope(length, sr, 0.002, 0.04)
        return out * 0.30
    if sound == "blast":  # very dense broadband bursts
        out = np.zeros(n)
        step = int(0.035 * sr)
        for start in range(0, n, step):
            length = min(int(0.03 * sr), n - start)
            out[start:start + length] += _noise(rng, length) * _envelope(length, sr, 0.001, 0.01)
        return out * 0.75
    if sound == "boom808":  # gliding sub-bass, saturated
        freq = 58 - 12 * t / t[-1]
        return np.tanh(3.0 * _tone(freq, n, sr)) * np.exp(-t / 0.6) * 0.8
    if sound == "falsetto":  # high sustained sung note with wide vibrato
        pitch = _midi_hz(84 + int(rng.integers(0, 4)))  # ~1.05-1.3 kHz
        vibrato = 1 + 0.03 * np.sin(2 * np.pi * 6.0 * t)
        return _tone(pitch * vibrato, n, sr, (1.0, 0.3, 0.1)) * np.minimum(1.0, t / 0.03) * 0.35
    if sound == "tremolo_guitar":  # distorted mid-range guitar, 12 Hz tremolo picking
        pitch = _midi_hz(50 + int(rng.integers(0, 5)))
        guitar = np.tanh(4.0 * _tone(pitch, n, sr, (1.0, 0.7, 0.5, 0.3)))
        return guitar * (0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 6.0 * t))) * 0.3
    raise ValueError(f"unknown cue sound {sound!r}")


def distractor_sound(rng: np.random.Generator, stem: str, n: int, sr: int) -> np.ndarray:
    """A class-independent event for ``stem`` (crash, shout, synth stab, bass slide)."""
    t = np.arange(n) / sr
    if stem == "drums":
        return _highpass(_noise(rng, n)) * np.exp(-t / 0.15) * 0.35
    if stem == "vocals":
        glide = np.linspace(_midi_hz(62), _midi_hz(67), n)
        return _tone(glide, n, sr, (1.0, 0.5, 0.3)) * np.minimum(1.0, t / 0.02) * 0.2
    if stem == "other":
        return _tone(_midi_hz(74), n, sr, (1.0, 0.5)) * np.exp(-t / 0.1) * 0.2
    return _tone(np.linspace(_midi_hz(45), _midi_hz(52), n), n, sr, (1.0, 0.5)) * 0.3
