import json

import numpy as np
import pytest
import soundfile as sf

from utils.config import EMOTIONS, GENRES, STEMS, emotion_from_valence_energy
from utils.dataset_related.synth import AUDIO_CUES, LYRIC_CUES, CorpusSettings, generate_corpus, make_song, read_metadata


def _rows(corpus, split):
    return [json.loads(line) for line in open(corpus / f"{split}.jsonl")]


def test_schema_and_stems_sum_exactly(small_corpus):
    rows = sum((_rows(small_corpus, s) for s in ("train", "val", "test")), [])
    assert len(rows) == 6 * len(GENRES)
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows[:12]:
        assert set(row) == {"id", "lyrics", "primary_short", "emotion", "valence", "energy"}
        assert row["primary_short"] in GENRES and row["emotion"] in EMOTIONS
        assert row["emotion"] == emotion_from_valence_energy(row["valence"], row["energy"])
        assert len(row["lyrics"].splitlines()) >= 7
        mix, rate = sf.read(small_corpus / "audio" / f"{row['id']}.wav", dtype="float32")
        stems = [sf.read(small_corpus / "stems" / row["id"] / f"{s}.wav", dtype="float32")[0] for s in STEMS]
        assert rate == 16_000 and mix.shape == (64_000,)
        assert np.array_equal(mix, stems[0] + stems[1] + stems[2] + stems[3])
        assert all(np.abs(s).max() > 0.01 for s in stems)  # every stem is audible


def test_stratified_split(small_corpus):
    for split, expected in (("train", 4), ("val", 1), ("test", 1)):  # 6 x (0.6, 0.15, 0.25), rounded
        genres = [r["primary_short"] for r in _rows(small_corpus, split)]
        assert all(genres.count(g) == expected for g in GENRES), split


def test_planted_cues_are_recorded_and_present(small_corpus):
    metadata = read_metadata(small_corpus)
    rows = {r["id"]: r for s in ("train", "val", "test") for r in _rows(small_corpus, s)}
    for song_id, meta in metadata.items():
        genre = rows[song_id]["primary_short"]
        words = set(rows[song_id]["lyrics"].split())
        audio = [c for c in meta["genre_cues"] if c["modality"] == "audio"]
        lyric = [c for c in meta["genre_cues"] if c["modality"] == "lyrics"]
        assert bool(audio) == (genre in AUDIO_CUES)
        assert bool(lyric) == (genre in LYRIC_CUES)
        if audio:
            stem, segment, _ = AUDIO_CUES[genre]
            assert audio[0]["component"] == f"{stem}{segment}"
        if lyric:
            assert lyric[0]["word"] in LYRIC_CUES[genre] and lyric[0]["word"] in words
        # no other genre's cue word leaks into the lyrics
        foreign = {w for g, ws in LYRIC_CUES.items() if g != genre for w in ws} - set(LYRIC_CUES.get(genre, ()))
        assert not (foreign & words), (genre, foreign & words)


def test_audio_cue_lives_in_its_component(small_corpus):
    """The cue stem is much louder inside the cue segment than in the same stem of a no-cue song."""
    metadata = read_metadata(small_corpus)
    for genre, (stem, segment, _) in AUDIO_CUES.items():
        song = next(m for m in metadata.values() if m["genre"] == genre)
        other = next(m for m in metadata.values() if m["genre"] == "folk")
        seg = 64_000 // 10
        def energy(song_id):
            x, _ = sf.read(small_corpus / "stems" / song_id / f"{stem}.wav", dtype="float32")
            return float(np.mean(x[segment * seg:(segment + 1) * seg] ** 2))
        assert energy(song["id"]) > 1.5 * energy(other["id"]), genre


def test_deterministic_and_seed_sensitive():
    a = make_song(CorpusSettings(seed=1), 5, "pop", "Happy")
    b = make_song(CorpusSettings(seed=1), 5, "pop", "Happy")
    c = make_song(CorpusSettings(seed=2), 5, "pop", "Happy")
    assert a["id"] == b["id"] and a["lyrics"] == b["lyrics"]
    assert all(np.array_equal(a["stems"][s], b["stems"][s]) for s in STEMS)
    assert a["lyrics"] != c["lyrics"]


def test_reuse_and_conflicting_settings(small_corpus):
    assert generate_corpus(small_corpus, CorpusSettings(songs_per_class=6, seed=3), progress=False) == small_corpus
    with pytest.raises(FileExistsError, match="other settings"):
        generate_corpus(small_corpus, CorpusSettings(songs_per_class=7, seed=3), progress=False)
    with pytest.raises(ValueError, match="songs_per_class"):
        generate_corpus(small_corpus / "x", CorpusSettings(songs_per_class=1), progress=False)


@pytest.mark.parametrize("valence,energy,expected", [
    (0.9, 0.9, "Excited"), (0.9, 0.5, "Happy"), (0.9, 0.1, "Relaxed"),
    (0.5, 0.66, "Tense"), (0.65, 0.65, "Neutral"), (0.35, 0.35, "Neutral"), (0.5, 0.34, "Calm"),
    (0.1, 0.9, "Angry"), (0.349, 0.5, "Sad"), (0.0, 0.0, "Depressed"),
])
def test_emotion_rule(valence, energy, expected):
    assert emotion_from_valence_energy(valence, energy) == expected


def test_emotion_rule_rejects_out_of_range():
    with pytest.raises(ValueError, match="valence"):
        emotion_from_valence_energy(1.5, 0.2)
