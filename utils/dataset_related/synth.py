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
from utils.dataset_related.synth_sounds import add_sound, cue_sound, distractor_sound, fade, render_stems
from utils.io import id_path
from utils.plotting import SPECTROGRAM_CMAP, save_figure

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
DISTRACTOR_SOUNDS = ("crash", "shout", "stab", "slide")  # one per stem, see distractor_sound
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

    stems = render_stems(rng, settings.sample_rate, settings.clip_seconds, energy)
    genre_cues, distractors = [], []
    if genre in AUDIO_CUES:
        stem, segment, sound = AUDIO_CUES[genre]
        start = segment * segment_len
        add_sound(stems[stem], fade(cue_sound(rng, sound, segment_len, sr), sr, 0.005), start)
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
    add_sound(stems[d_stem], fade(distractor_sound(rng, d_stem, segment_len, sr), sr, 0.005), d_segment * segment_len)
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
        stem_dir = id_path(out_dir / "stems", song["id"])
        stem_dir.mkdir(parents=True, exist_ok=True)
        for name, samples in stems.items():
            sf.write(stem_dir / f"{name}.wav", samples, settings.sample_rate, subtype="PCM_16")
        sf.write(id_path(out_dir / "audio", song["id"], ".wav"), mix, settings.sample_rate, subtype="PCM_16")
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


def plot_genre_examples(corpus_dir: str | Path, frame, profile, metadata: dict[str, dict],
                        save_path: str | Path | None = None):
    """AST input features of one song per genre, with its planted audio cue boxed.

    Parameters
    ----------
    frame : a split DataFrame (id, primary_short); the first song of each genre is shown.
    profile : supplies the audio settings. metadata : :func:`read_metadata` output.
    save_path : where to save the figure (:func:`utils.plotting.save_figure`), if given.
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
        ax.imshow(feature.T, origin="lower", aspect="auto", cmap=SPECTROGRAM_CMAP)
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
    return save_figure(fig, save_path)
