"""The embedded default: a synthetic, M4A-style corpus with planted, recorded class evidence.

Every song is the sample-exact sum of four stems (vocals, drums, bass, other) saved beside
the mix, so the stems can serve as an "oracle" separation. The music is simple but musical:
a chord progression in a random key (``other``: strummed or sustained triads), a pitched bass
line on the chord roots, a kick/snare/hi-hat pattern whose tempo follows the song's energy, and
a vibrato vocal line on chord tones with syllable envelopes.

Class evidence is planted on purpose and recorded in ``metadata.jsonl``:

============== ====================================================== ==================
genre          audio cue (stem, segment)                              lyric cue words
============== ====================================================== ==================
electronic     bright square-wave arpeggio (other, 3)                 --
heavy music    blast beat of dense noise bursts (drums, 6)            --
hip hop        distorted 808 sub-bass boom (bass, 1)                  --
folk           --                                                     river, mountain...
punk           --                                                     riot, anarchy...
rhythm music   --                                                     groove, soul...
pop            falsetto vibrato note (vocals, 8)                      heart, forever...
rock           falsetto vibrato note (vocals, 8)                      highway, thunder...
alt. rock      tremolo-picked distorted guitar (other, 5)             heart, forever...
============== ====================================================== ==================

So audio alone separates 6 of 9 classes at best (folk / punk / rhythm music sound alike, pop
and rock share the falsetto), lyrics alone also 6 of 9 (the audio-cue classes read alike, pop
and alternative rock share the love words); only both modalities separate all nine, as in the
paper, where the multimodal model beats both unimodal ones.

Emotion follows the paper's valence/energy rule. Energy is audible (tempo, drum loudness and
hi-hat density); valence is readable (one word from a positive / neutral / negative pool). Each
song also carries class-independent distractors: one random sound event in a random stem and
segment, and one random distractor word.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from utils.config import EMOTIONS, GENRES, STEMS, component_name, emotion_from_valence_energy

# ---------------------------------------------------------------- the planted design
AUDIO_CUES: dict[str, tuple[str, int, str]] = {
    # genre: (stem, segment, sound)
    "electronic": ("other", 3, "arpeggio"),
    "heavy music": ("drums", 6, "blast"),
    "hip hop": ("bass", 1, "boom808"),
    "pop": ("vocals", 8, "falsetto"),
    "rock": ("vocals", 8, "falsetto"),
    "alternative rock": ("other", 5, "tremolo_guitar"),
}
LOVE_WORDS = ("heart", "forever", "darling", "tonight")
LYRIC_CUES: dict[str, tuple[str, ...]] = {
    "folk": ("river", "mountain", "willow", "meadow"),
    "punk": ("riot", "anarchy", "rebel", "system"),
    "rhythm music": ("groove", "soul", "funky", "swing"),
    "pop": LOVE_WORDS,
    "alternative rock": LOVE_WORDS,
    "rock": ("highway", "thunder", "wild", "fire"),
}
VALENCE_WORDS = {  # band index 0 = high valence, 1 = middle, 2 = low
    0: ("sunshine", "smile", "golden", "laughing"),
    1: ("ordinary", "steady", "plain", "quiet"),
    2: ("tears", "broken", "lonely", "sorrow"),
}
DISTRACTOR_WORDS = ("telephone", "yellow", "candle", "window", "paper", "silver", "engine", "garden")
DISTRACTOR_SOUNDS = ("crash", "shout", "stab", "slide")  # one per stem, see _distractor
CUE_REPEATS = (2, 3)  # a cue word appears in 2..3 lines

# generic English-like material (no cue word appears here)
_PRONOUNS = ("I", "you", "we", "they", "she", "he")
_VERBS = ("walk", "run", "dream", "call", "wait", "fall", "hold", "keep", "find", "turn", "know", "feel", "see", "need")
_NOUNS = ("night", "road", "light", "door", "street", "time", "rain", "sky", "morning", "city", "voice", "name",
          "town", "line", "sea", "song", "room", "summer", "winter", "wall")
_ADJECTIVES = ("long", "empty", "old", "little", "distant", "endless", "late", "open", "same", "narrow")
_PREPOSITIONS = ("in", "through", "across", "under", "behind", "along", "into", "over")
_TEMPLATES = (
    "{P} {V} {R} the {A} {N}",
    "{P} {V} the {N} and {P2} {V2}",
    "oh the {N} is {A} again",
    "{P} {V} {R} the {N}",
    "every {N} {P} {V} {R} the {N2}",
    "{A} {N} {A2} {N2}",
    "and {P} {V} my {N}",
    "{P} will {V} {R} the {A} {N}",
)

# emotion -> (valence band, energy band)
_EMOTION_BANDS = {
    "Excited": (0, 0), "Happy": (0, 1), "Relaxed": (0, 2),
    "Tense": (1, 0), "Neutral": (1, 1), "Calm": (1, 2),
    "Angry": (2, 0), "Sad": (2, 1), "Depressed": (2, 2),
}
_BAND_RANGES = {0: (0.68, 0.97), 1: (0.38, 0.62), 2: (0.03, 0.32)}  # away from the 0.35/0.65 edges


@dataclass(frozen=True)
class CorpusSettings:
    """What the generator was asked for; stored as ``corpus.json`` beside the data."""

    songs_per_class: int = 60
    seed: int = 0
    sample_rate: int = 16_000  # Hz
    clip_seconds: float = 4.0  # seconds
    num_segments: int = 10
    split: tuple[float, float, float] = (0.6, 0.15, 0.25)
    version: int = 1


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


def _fade(x: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    k = min(len(x) // 2, max(1, int(seconds * sr)))
    ramp = np.linspace(0, 1, k)
    x = x.copy()
    x[:k] *= ramp
    x[-k:] *= ramp[::-1]
    return x


def _add(track: np.ndarray, sound: np.ndarray, start: int) -> None:
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


def _render_stems(rng: np.random.Generator, s: CorpusSettings, energy: float) -> dict[str, np.ndarray]:
    sr, n = s.sample_rate, int(round(s.clip_seconds * s.sample_rate))
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
        _add(stems["bass"], _fade(sound, sr, 0.004) * 0.35, start)

    # other: triads, sustained for calm songs, strummed eighths for energetic ones
    step = chord_len if energy < 0.35 else (beat if energy < 0.65 else beat // 2)
    for start in range(0, n, step):
        degree = degrees[(start // chord_len) % len(degrees)]
        length = min(step, n - start)
        sound = sum(_tone(_midi_hz(root + 24 + p), length, sr, (1.0, 0.4, 0.2)) for p in _chord_notes(0, degree)) / 3
        decay = 0.8 if step == chord_len else 0.18
        _add(stems["other"], _fade(sound * _envelope(length, sr, 0.01, decay), sr) * 0.18, start)

    # drums: kick on 1 and 3, snare on 2 and 4, hi-hats on eighths (sixteenths when energetic)
    loudness = 0.35 + 0.5 * energy
    kick_len, snare_len, hat_len = int(0.18 * sr), int(0.15 * sr), int(0.05 * sr)
    kick_freq = np.linspace(120, 45, kick_len)
    kick = _tone(kick_freq, kick_len, sr) * _envelope(kick_len, sr, 0.002, 0.06)
    for b, start in enumerate(range(0, n, beat)):
        if b % 2 == 0:
            _add(stems["drums"], kick * loudness, start)
        else:
            snare = (_lowpass(_noise(rng, snare_len), 3) * 0.6 + _tone(185.0, snare_len, sr) * 0.4)
            _add(stems["drums"], snare * _envelope(snare_len, sr, 0.001, 0.05) * loudness * 0.8, start)
    hat_step = beat // 4 if energy > 0.65 else beat // 2
    for start in range(0, n, hat_step):
        hat = _highpass(_highpass(_noise(rng, hat_len))) * _envelope(hat_len, sr, 0.001, 0.012)
        _add(stems["drums"], hat * loudness * 0.25, start)

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
            _add(stems["vocals"], voice * env * 0.16, t)
        t += syllable
    return stems


def _cue_sound(rng: np.random.Generator, sound: str, n: int, sr: int) -> np.ndarray:
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


def _distractor(rng: np.random.Generator, stem: str, n: int, sr: int) -> np.ndarray:
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


# ---------------------------------------------------------------- lyrics
def _line(rng: np.random.Generator) -> str:
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
    pick = lambda pool: pool[rng.integers(len(pool))]  # noqa: E731
    return template.format(
        P=pick(_PRONOUNS), P2=pick(_PRONOUNS), V=pick(_VERBS), V2=pick(_VERBS), N=pick(_NOUNS),
        N2=pick(_NOUNS), A=pick(_ADJECTIVES), A2=pick(_ADJECTIVES), R=pick(_PREPOSITIONS),
    )


def _insert_word(rng: np.random.Generator, lines: list[str], word: str, times: int) -> None:
    """Put ``word`` into ``times`` distinct lines (replacing a word or appending)."""
    for index in rng.choice(len(lines), size=min(times, len(lines)), replace=False):
        words = lines[index].split()
        position = int(rng.integers(0, len(words) + 1))
        words.insert(position, word)
        lines[index] = " ".join(words)


def _lyrics(rng: np.random.Generator, words_to_plant: list[tuple[str, int]]) -> str:
    lines = [_line(rng) for _ in range(int(rng.integers(7, 11)))]
    for word, times in words_to_plant:
        _insert_word(rng, lines, word, times)
    lines[0] = lines[0][0].upper() + lines[0][1:]
    return "\n".join(lines)


# ---------------------------------------------------------------- songs
def _song_id(rng: np.random.Generator) -> str:
    alphabet = np.array(list("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    return "".join(rng.choice(alphabet, size=16))


def make_song(settings: CorpusSettings, index: int, genre: str, emotion: str) -> dict:
    """Render one song: stems (float64, unquantised), lyrics and its metadata record."""
    rng = np.random.default_rng([settings.seed, index])
    song_id = _song_id(rng)
    sr = settings.sample_rate
    n = int(round(settings.clip_seconds * sr))
    segment_len = n // settings.num_segments
    valence_band, energy_band = _EMOTION_BANDS[emotion]
    valence = float(np.round(rng.uniform(*_BAND_RANGES[valence_band]), 3))
    energy = float(np.round(rng.uniform(*_BAND_RANGES[energy_band]), 3))
    assert_emotion = emotion_from_valence_energy(valence, energy)
    if assert_emotion != emotion:  # the band ranges guarantee this; keep the data honest anyway
        raise RuntimeError(f"internal: {valence}, {energy} -> {assert_emotion}, not {emotion}")

    stems = _render_stems(rng, settings, energy)
    genre_cues, distractors = [], []
    if genre in AUDIO_CUES:
        stem, segment, sound = AUDIO_CUES[genre]
        start = segment * segment_len
        _add(stems[stem], _fade(_cue_sound(rng, sound, segment_len, sr), sr, 0.005), start)
        genre_cues.append({"modality": "audio", "stem": stem, "segment": segment,
                           "component": component_name(stem, segment), "sound": sound,
                           "start_s": start / sr, "end_s": (start + segment_len) / sr})
    words = []
    if genre in LYRIC_CUES:
        word = LYRIC_CUES[genre][rng.integers(len(LYRIC_CUES[genre]))]
        words.append((word, int(rng.integers(CUE_REPEATS[0], CUE_REPEATS[1] + 1))))
        genre_cues.append({"modality": "lyrics", "word": word})
    valence_word = VALENCE_WORDS[valence_band][rng.integers(4)]
    words.append((valence_word, int(rng.integers(CUE_REPEATS[0], CUE_REPEATS[1] + 1))))
    distractor_word = DISTRACTOR_WORDS[rng.integers(len(DISTRACTOR_WORDS))]
    words.append((distractor_word, int(rng.integers(1, 3))))
    distractors.append({"modality": "lyrics", "word": distractor_word})

    d_stem = STEMS[rng.integers(len(STEMS))]
    d_segment = int(rng.integers(settings.num_segments))
    _add(stems[d_stem], _fade(_distractor(rng, d_stem, segment_len, sr), sr, 0.005), d_segment * segment_len)
    distractors.append({"modality": "audio", "stem": d_stem, "segment": d_segment,
                        "component": component_name(d_stem, d_segment)})

    return {
        "id": song_id,
        "stems": stems,
        "lyrics": _lyrics(rng, words),
        "meta": {
            "id": song_id, "genre": genre, "emotion": emotion, "valence": valence, "energy": energy,
            "tempo_bpm": round(60.0 + 110.0 * energy, 1),
            "genre_cues": genre_cues,
            "emotion_cues": [{"modality": "audio", "stem": "drums", "what": "tempo and loudness (energy)"},
                             {"modality": "lyrics", "word": valence_word, "what": "valence"}],
            "distractors": distractors,
        },
    }


def _quantise(stems: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scale, round each stem to int16 and sum in int32, so the mix is the exact stem sum."""
    total = sum(stems.values())
    scale = 0.85 / max(1e-9, float(np.max(np.abs(total))))
    ints = {k: np.round(v * scale * 32767).astype(np.int32) for k, v in stems.items()}
    mix = sum(ints.values())
    peak = int(np.max(np.abs(mix)))
    if peak > 32767:  # rounding pushed it over: shrink and redo
        return _quantise({k: v * 0.98 for k, v in stems.items()})
    return {k: v.astype(np.int16) for k, v in ints.items()}, mix.astype(np.int16)


def _assign(settings: CorpusSettings) -> list[tuple[str, str, str]]:
    """(genre, emotion, split) for every song; balanced emotions, stratified split per genre."""
    rng = np.random.default_rng([settings.seed, 10**6])
    plan = []
    per_class = settings.songs_per_class
    n_train = max(1, int(round(per_class * settings.split[0])))
    n_val = max(1, int(round(per_class * settings.split[1])))
    n_train = min(n_train, per_class - n_val - 1)  # at least one test song per class
    for genre in GENRES:
        emotions = [EMOTIONS[i % len(EMOTIONS)] for i in range(per_class)]
        rng.shuffle(emotions)
        splits = ["train"] * n_train + ["val"] * n_val + ["test"] * (per_class - n_train - n_val)
        plan.extend((genre, emotion, split) for emotion, split in zip(emotions, splits))
    return plan


def generate_corpus(out_dir: str | Path, settings: CorpusSettings | None = None, *, overwrite: bool = False,
                    progress: bool = True) -> Path:
    """Write the synthetic corpus to ``out_dir`` and return the directory.

    Writes ``{train,val,test}.jsonl`` (id, lyrics, primary_short, emotion, valence, energy),
    ``audio/<id>.wav`` (mono PCM 16-bit), ``stems/<id>/<stem>.wav`` (sum == mix exactly),
    ``metadata.jsonl`` (planted cues and distractors per song, with its split) and
    ``corpus.json`` (the settings). An existing corpus made with the same settings is reused
    unless ``overwrite``; one made with other settings raises instead of being mixed with.
    """
    import soundfile as sf
    from tqdm.auto import tqdm

    settings = settings or CorpusSettings()
    if settings.songs_per_class < 3:
        raise ValueError(f"songs_per_class must be >= 3 (one song per split), got {settings.songs_per_class}")
    out_dir = Path(out_dir)
    manifest_path = out_dir / "corpus.json"
    wanted = asdict(settings)
    wanted["split"] = list(settings.split)
    if manifest_path.is_file() and not overwrite:
        existing = json.loads(manifest_path.read_text())
        if existing.get("settings") == wanted:
            return out_dir
        raise FileExistsError(
            f"{out_dir} holds a corpus made with other settings ({existing.get('settings')}); "
            "pass overwrite=True or choose another directory"
        )
    started = time.time()
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "val": [], "test": []}
    metadata = []
    for index, (genre, emotion, split) in enumerate(tqdm(_assign(settings), desc="synthesising songs", disable=not progress)):
        song = make_song(settings, index, genre, emotion)
        stems, mix = _quantise(song["stems"])
        stem_dir = out_dir / "stems" / song["id"]
        stem_dir.mkdir(parents=True, exist_ok=True)
        for name, samples in stems.items():
            sf.write(stem_dir / f"{name}.wav", samples, settings.sample_rate, subtype="PCM_16")
        sf.write(out_dir / "audio" / f"{song['id']}.wav", mix, settings.sample_rate, subtype="PCM_16")
        meta = song["meta"]
        rows[split].append({"id": song["id"], "lyrics": song["lyrics"], "primary_short": genre,
                            "emotion": emotion, "valence": meta["valence"], "energy": meta["energy"]})
        metadata.append({**meta, "split": split})
    for split, split_rows in rows.items():
        with open(out_dir / f"{split}.jsonl", "w") as handle:
            for row in split_rows:
                handle.write(json.dumps(row) + "\n")
    with open(out_dir / "metadata.jsonl", "w") as handle:
        for meta in metadata:
            handle.write(json.dumps(meta) + "\n")
    manifest = {"settings": wanted, "songs": len(metadata), "seconds_to_generate": round(time.time() - started, 2),
                "audio_cues": {g: list(v) for g, v in AUDIO_CUES.items()},
                "lyric_cues": {g: list(v) for g, v in LYRIC_CUES.items()}}
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return out_dir


def read_metadata(corpus_dir: str | Path) -> dict[str, dict]:
    """Planted-cue metadata of a synthetic corpus, keyed by song id."""
    path = Path(corpus_dir) / "metadata.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metadata.jsonl in {corpus_dir}: not a synthetic corpus?")
    with open(path) as handle:
        return {record["id"]: record for record in map(json.loads, handle)}


def plot_genre_examples(corpus_dir: str | Path, frame, profile, metadata: dict[str, dict], path: str | Path | None = None):
    """AST input features of one song per genre, with its planted audio cue boxed.

    Parameters
    ----------
    frame : a split DataFrame (id, primary_short); the first song of each genre is shown.
    profile : supplies the audio settings. metadata : :func:`read_metadata` output.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from utils.dataset_related.features import ast_features, find_audio, load_audio

    firsts = frame.groupby("primary_short", sort=True).head(1)
    if firsts.empty:
        raise ValueError("plot_genre_examples: the frame holds no songs")
    columns = 3
    rows = int(np.ceil(len(firsts) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.6 * rows), squeeze=False)
    frames_per_second = 100.0  # 10 ms hop
    for ax, song in zip(axes.flat, firsts.itertuples()):
        waveform = load_audio(find_audio(Path(corpus_dir) / "audio", song.id), profile.audio.sample_rate)
        feature = ast_features(waveform, profile.audio)[0].numpy()
        ax.imshow(feature.T, origin="lower", aspect="auto", cmap="magma")
        for cue in metadata[song.id]["genre_cues"]:
            if cue["modality"] == "audio":
                x0 = cue["start_s"] * frames_per_second
                width = (cue["end_s"] - cue["start_s"]) * frames_per_second
                ax.add_patch(Rectangle((x0, 0), width, feature.shape[1] - 1, fill=False, color="cyan", lw=1.5))
                ax.text(x0, feature.shape[1] - 3, cue["component"], color="cyan", fontsize=8, va="top")
        ax.set_title(f"{song.primary_short}", fontsize=10)
        ax.set_xlabel("frame (10 ms)", fontsize=8)
        ax.set_ylabel("mel bin", fontsize=8)
    for ax in axes.flat[len(firsts):]:
        ax.axis("off")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
