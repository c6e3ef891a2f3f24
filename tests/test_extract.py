"""Precomputing AST features for a split or a list of songs, and the tokenizer (utils.dataset_related.extract)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from utils.dataset_related import extract
from utils.config import get_profile
from reference import reference_features
from utils.dataset_related.features import AudioError

PROFILE = get_profile("tiny")
LINES = ("the river runs under the mountain", "we dance all night in the city light",
         "hold my hand and sing with me", "thunder on the highway home")


def _write_corpus(root: Path) -> Path:
    """train: 5 good songs, one without audio, one with garbage audio, one with empty lyrics;
    val: 2 good songs."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    sr, n = PROFILE.audio.sample_rate, PROFILE.clip_length
    splits = {"train": [f"song{i}" for i in range(5)] + ["noaudio", "garbage", "nolyrics"],
              "val": ["val0", "val1"]}
    for split, ids in splits.items():
        with (root / f"{split}.jsonl").open("w") as fh:
            for k, song_id in enumerate(ids):
                lyrics = "" if song_id == "nolyrics" else "\n".join(rng.choice(LINES, size=3)) + f" {song_id}"
                fh.write(json.dumps({"id": song_id, "lyrics": lyrics, "primary_short": "pop",
                                     "emotion": "Happy", "valence": 0.7, "energy": 0.5}) + "\n")
                if song_id == "noaudio":
                    continue
                if song_id == "garbage":
                    (root / "audio" / f"{song_id}.wav").write_bytes(b"RIFF....not a wav")
                    continue
                t = np.arange(n) / sr
                wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t) + 0.01 * rng.standard_normal(n)
                sf.write(str(root / "audio" / f"{song_id}.wav"), wave.astype(np.float32), sr)
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return _write_corpus(tmp_path / "corpus")


def test_features_match_the_reference_extractor_and_skip_bad_audio(corpus):
    report = extract.extract_features(corpus, "train", PROFILE, batch_size=3, show_progress=False)
    assert report.features == {"songs": 8, "done_before": 0, "written": 6, "skipped": 2}
    assert report.problems["audio missing"] == ["noaudio"]
    assert len(report.problems["audio unreadable or too short"]) == 1
    shape = (PROFILE.audio.max_length, PROFILE.audio.num_mel_bins)
    for song_id in ["song0", "song4", "nolyrics"]:
        feature = np.load(corpus / "features" / f"{song_id}.npy", allow_pickle=False)
        assert feature.shape == shape and feature.dtype == np.float32
    wave, _ = sf.read(str(corpus / "audio" / "song2.wav"), dtype="float32")
    expected = reference_features(wave, PROFILE.audio)
    got = np.load(corpus / "features" / "song2.npy")
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert not list((corpus / "features").glob("*.part"))


def test_features_of_another_profile_are_refused_not_reused(corpus):
    """Same shapes, other numbers (paper at 44.1 kHz after paper16k): the folder's audio.json says which."""
    import dataclasses

    extract.extract_features(corpus, ["song0"], PROFILE, show_progress=False)
    settings = json.loads((corpus / "features" / extract.FEATURE_SETTINGS).read_text())
    assert settings == dataclasses.asdict(PROFILE.audio)
    extract.extract_features(corpus, ["song1"], PROFILE, show_progress=False)          # the same settings: fine
    other = PROFILE.replace(audio=dataclasses.replace(PROFILE.audio, sample_rate=44_100))
    with pytest.raises(ValueError, match=r"audio.json.*sample_rate=16000 \(profile: 44100\)"):
        extract.extract_features(corpus, ["song0"], other, show_progress=False)
    (corpus / "features" / extract.FEATURE_SETTINGS).write_text("{not json")
    with pytest.raises(ValueError, match="audio.json: cannot read"):
        extract.extract_features(corpus, ["song0"], PROFILE, show_progress=False)


def test_features_resume_and_redo_broken_files(corpus):
    extract.extract_features(corpus, "train", PROFILE, show_progress=False)
    kept = corpus / "features" / "song1.npy"
    before = kept.stat().st_mtime_ns
    (corpus / "features" / "song3.npy").write_bytes(b"\x93NUMPY truncated")
    again = extract.extract_features(corpus, "train", PROFILE, show_progress=False)
    assert again.features["done_before"] == 5 and again.features["written"] == 1
    assert kept.stat().st_mtime_ns == before
    assert np.load(corpus / "features" / "song3.npy").shape == (PROFILE.audio.max_length,
                                                                PROFILE.audio.num_mel_bins)


def test_resolve_tokenizer_reuses_the_saved_one(corpus):
    first = extract.resolve_tokenizer(PROFILE, corpus)
    assert (corpus / "tokenizer" / "vocab.json").is_file()
    vocab = (corpus / "tokenizer" / "vocab.json").read_text()
    (corpus / "train.jsonl").write_text("")                          # would fail if retrained
    second = extract.resolve_tokenizer(PROFILE, corpus)
    assert (corpus / "tokenizer" / "vocab.json").read_text() == vocab
    assert first("hold my hand")["input_ids"] == second("hold my hand")["input_ids"]


def test_extract_a_split_end_to_end_and_bad_inputs(corpus):
    report = extract.extract_features(corpus, "val", PROFILE, show_progress=False)
    assert report.features["written"] == 2
    assert "features:" in report.summary()
    with pytest.raises(ValueError, match="split"):
        extract.read_split_records(corpus, "holdout")
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        extract.read_split_records(corpus, "test")
    (corpus / "test.jsonl").write_text('{"id": "a", "lyrics": "x"}\n{"id": "a", "lyrics": "y"}\n')
    with pytest.raises(ValueError, match="repeated id"):
        extract.read_split_records(corpus, "test")


def test_extract_given_ids_strictly_raises_on_the_first_bad_song(corpus):
    report = extract.extract_features(corpus, ["song0", "song1"], PROFILE, skip_bad=False, show_progress=False)
    assert report.features == {"songs": 2, "done_before": 0, "written": 2, "skipped": 0}
    with pytest.raises(AudioError, match="garbage"):
        extract.extract_features(corpus, ["song2", "garbage"], PROFILE, skip_bad=False, show_progress=False)
    assert not (corpus / "features" / "song2.npy").exists()         # nothing of that batch written


def test_plot_feature_saves_a_figure(corpus, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    extract.extract_features(corpus, "val", PROFILE, show_progress=False)
    fig = extract.plot_feature(corpus, "val0", tmp_path / "fig" / "feature.png")
    assert (tmp_path / "fig" / "feature.png").stat().st_size > 1000
    assert fig.axes[0].images[0].get_array().shape == (PROFILE.audio.num_mel_bins, PROFILE.audio.max_length)
    with pytest.raises(FileNotFoundError, match="nosuch"):
        extract.plot_feature(corpus, "nosuch")
