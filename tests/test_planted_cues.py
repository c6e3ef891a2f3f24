"""The planted-cue sanity check (audioLIME's idea): explanations of trained models find the cues.

The scoring helpers are checked on hand-made explanations and the run on a cue-reading black
box; the last tests explain the tiny genre models of the ``trained_genre`` fixture on a fixed
subset of test songs (the first songs of each genre with a cue, in file order) and assert the
hit rates the models reliably reach.
"""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from utils.config import GENRES  # noqa: E402
from utils.musiclime.explanation import Explanation, Feature, SurrogateFit  # noqa: E402
from utils.model_related.pipeline import load_splits  # noqa: E402
from utils.musiclime.planted import cue_rank, cue_songs, is_hit, modality_margin  # noqa: E402
from utils.musiclime.sanity import (CUE_CHECKS, hit_rates, lyrics_ignored, predictor_fingerprint,  # noqa: E402
                                    plot_hit_rates, run_cue_checks)
from utils.musiclime.separation import OracleSeparator  # noqa: E402
from utils.dataset_related.synth import LYRIC_CUES, read_metadata  # noqa: E402


def hand_made(weights: dict[str, float]) -> Explanation:
    """An explanation with audio features vocals0..other1 and the given lyric words."""
    audio = ["vocals0", "drums0", "bass0", "other0", "vocals1", "drums1", "bass1", "other1"]
    words = [n for n in weights if n not in audio]
    features = [Feature(i, n, "audio", n.rstrip("01"), int(n[-1])) for i, n in enumerate(audio)]
    features += [Feature(len(audio) + j, w, "lyrics", text=w) for j, w in enumerate(words)]
    vector = np.array([weights.get(f.name, 0.0) for f in features])
    fit = SurrogateFit(0, 0.1, vector, np.ones(len(features), bool), 0.9, 0.8)
    return Explanation(features, {0: fit}, np.array([0.8, 0.2]), mode="both", lyrics=" ".join(words))


def test_cue_rank_and_hit():
    exp = hand_made({"bass1": 0.30, "River": 0.25, "drums0": 0.2, "river": 0.1, "heart": 0.05, "other1": -0.4})
    bass = cue_rank(exp, {"modality": "audio", "component": "bass1"})
    assert (bass["rank"], bass["rank_in_modality"], bass["weight"]) == (1, 1, 0.30) and is_hit(bass)
    river = cue_rank(exp, {"modality": "lyrics", "word": "river"})      # the capitalised spelling ranks first
    assert (river["rank"], river["rank_in_modality"], river["feature"]) == (2, 1, "River") and is_hit(river)
    heart = cue_rank(exp, {"modality": "lyrics", "word": "heart"})
    assert heart["rank"] == 5 and not is_hit(heart) and is_hit(heart, k=5)
    other = cue_rank(exp, {"modality": "audio", "component": "other1"})  # top by |weight| but negative
    assert other["rank"] == 11 and not is_hit(other, k=100)
    missing = cue_rank(exp, {"modality": "lyrics", "word": "anarchy"})
    assert missing["rank"] is None and math.isnan(missing["weight"]) and not is_hit(missing)


def test_modality_margin():
    assert modality_margin(hand_made({"bass1": 0.3, "river": -0.29}))["lyrics_ignored"]
    margin = modality_margin(hand_made({"bass1": 0.3, "river": -0.31}))
    assert not margin["lyrics_ignored"] and margin["max_abs_lyric_weight"] == 0.31
    assert margin["best_audio_weight"] == 0.3


def test_cue_songs_selection(small_corpus):
    frame, metadata = load_splits(small_corpus)["test"], read_metadata(small_corpus)
    lyric = cue_songs(frame, metadata, ("lyrics",))
    assert set(lyric["primary_short"]) == set(LYRIC_CUES)
    firsts = cue_songs(frame, metadata, ("audio",), songs_per_class=1)
    assert firsts["primary_short"].is_unique and len(firsts) == 6
    assert list(firsts["id"]) == list(cue_songs(frame, metadata, ("audio",)).groupby("primary_short", sort=False)
                                       .head(1)["id"])                # the first songs, in file order
    with pytest.raises(KeyError, match="no planted-cue metadata"):
        cue_songs(frame.assign(id="nope"), metadata)


def word_reader(texts, waveforms):
    """A black box that reads only the lyric cue words: p(genre) grows with its cue words."""
    scores = np.zeros((len(texts), len(GENRES)))
    for row, text in enumerate(texts):
        words = set(text.lower().split())
        for genre, cues in LYRIC_CUES.items():
            scores[row, GENRES.index(genre)] += 3.0 * len(words & set(cues))
    scores[:, GENRES.index("alternative rock")] -= 0.5    # pop wins the shared love words
    return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def test_run_on_a_cue_reading_black_box(small_corpus, tmp_path):
    """The lyrics check finds the cue word of every song; the lyric-blind model's words weigh ~0."""
    from utils.config import get_profile

    profile = get_profile("tiny")
    frame, metadata = load_splits(small_corpus)["train"], read_metadata(small_corpus)   # 4 songs per genre
    # an "audio model" that never reads lyrics: genre c's score is the loudness of segment c
    def loudness_reader(texts, waveforms):
        segments = waveforms[:, :9 * 6400].reshape(len(waveforms), 9, 6400)
        scores = 20 * np.sqrt((segments ** 2).mean(axis=2))
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)

    kwargs = dict(separator=OracleSeparator(small_corpus), checks=[c for c in CUE_CHECKS if c.name in ("lyrics/lyrical", "audio/both")],
                  songs_per_class=2, num_samples=120, batch_size=60, seed=1, progress=False)
    results = run_cue_checks({"lyrics": word_reader, "audio": loudness_reader}, small_corpus, frame, metadata,
                             profile, cache_dir=tmp_path, **kwargs)
    lyric = results[results["check"] == "lyrics/lyrical"]
    assert len(lyric) == 12 and lyric["hit"].all() and (lyric["rank"] == 1).all()
    assert set(lyric["cue_modality"]) == {"lyrics"}
    assert lyric.loc[lyric["genre"] == "pop", "correct"].all()
    assert not lyric.loc[lyric["genre"] == "alternative rock", "correct"].any()
    table = hit_rates(results)
    assert table.loc[("lyrics/lyrical", "lyrics"), "hit_rate"] == 1.0
    assert math.isnan(hit_rates(lyric, by=["genre"]).loc["alternative rock", "hit_rate_correct"])
    audio = results[results["check"] == "audio/both"]
    assert set(audio["genre"]) == {"electronic", "heavy music", "hip hop", "pop", "rock", "alternative rock"}
    assert lyrics_ignored(results) == {"songs": 12, "fraction": 1.0, "worst_ratio": pytest.approx(
        (audio["max_abs_lyric_weight"] / audio["best_audio_weight"]).max())}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio-both-custom-n120-seed1-seg10-seporacle",
                                                          "lyrics-lyrical-custom-n120-seed1-seg10-seporacle"]
    # resume: the second run reads every explanation back from the cache, same numbers
    again = run_cue_checks({"lyrics": word_reader, "audio": loudness_reader}, small_corpus, frame, metadata,
                           profile, cache_dir=tmp_path, **kwargs)
    assert again["seconds"].isna().all()
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), results.drop(columns="seconds"))
    fig = plot_hit_rates(results, tmp_path / "figures" / "planted_cues.png")
    heights = np.array([bar.get_height() for bar in fig.axes[0].patches]).reshape(2, 10)   # 2 series x (9 genres + all)
    lyric_bars = heights[0]                                    # lyrics/lyrical: NaN for the 3 genres without a word cue
    assert np.isnan(lyric_bars).sum() == 3 and np.all(lyric_bars[~np.isnan(lyric_bars)] == 1.0)
    assert heights[1, -1] == pytest.approx(audio["hit"].mean())
    assert (tmp_path / "figures" / "planted_cues.png").stat().st_size > 1000


def test_predictor_fingerprint():
    import torch

    class Wrapper:
        def __init__(self, model):
            self.model = model

    torch.manual_seed(0)
    first, second = Wrapper(torch.nn.Linear(3, 2)), Wrapper(torch.nn.Linear(3, 2))
    assert predictor_fingerprint(first) == predictor_fingerprint(Wrapper(first.model)) != predictor_fingerprint(second)
    assert len(predictor_fingerprint(first)) == 12 and predictor_fingerprint(word_reader) == "custom"


def test_explain_song_and_write_explanation(small_corpus, tmp_path):
    from utils.config import get_profile
    from utils.musiclime.planted import describe_cues, example_songs
    from utils.musiclime.song import explain_song, write_explanation

    frame, metadata = load_splits(small_corpus)["test"], read_metadata(small_corpus)
    songs = example_songs(frame, 3)
    assert list(songs["primary_short"]) == ["hip hop", "folk", "rock"]
    rock = songs.iloc[2]
    cues = {c["modality"]: c for c in metadata[rock.id]["genre_cues"]}
    assert describe_cues(metadata, rock.id) == (f"rock: audio vocals8 (falsetto, 3.2-3.6 s), "
                                                f"lyric word '{cues['lyrics']['word']}'")
    exp = explain_song(word_reader, small_corpus, rock, get_profile("tiny"), separator=OracleSeparator(small_corpus),
                       mode="both", labels=[GENRES.index("rock")], num_samples=80, batch_size=40)
    assert len(exp.audio_features) == 40 and exp.ranked(k=1)[0]["name"].lower() == cues["lyrics"]["word"]
    assert exp.factorization is not None and exp.factorization.separator_name == "oracle"
    paths = write_explanation(exp, tmp_path, f"explanation_{rock.id}_both")
    assert sorted(paths) == ["csv", "heatmap", "json", "top"] and all(p.stat().st_size > 0 for p in paths.values())
    assert paths["heatmap"].parent == tmp_path / "figures" and paths["json"].parent == tmp_path / "explanations"
    again = Explanation.from_json(paths["json"])
    assert np.array_equal(again.fit().weights, exp.fit().weights)
    table = pd.read_csv(paths["csv"])
    assert len(table) == len(exp.features) and table.loc[0, "name"].lower() == cues["lyrics"]["word"]
    with pytest.raises(ValueError, match="separator= or factorization="):
        explain_song(word_reader, small_corpus, rock, get_profile("tiny"))


# ---------------------------------------------------------------- the trained tiny genre models
SONGS_PER_CLASS = 2
NUM_SAMPLES = 300
# Measured on the main job's runs/tiny genre models, all 38 test songs per genre, 250 samples: every check
# finds the cue in the top 3 for >= 99.5% of the songs (3 misses in 1596), 1000 samples on 10 songs per genre: 100%.
# The assertion uses the target (0.8), leaving room for models trained afresh by the fixture.
THRESHOLDS = {
    ("multimodal/both", "audio"): 0.8, ("multimodal/both", "lyrics"): 0.8,
    ("multimodal/audio", "audio"): 0.8, ("multimodal/lyrical", "lyrics"): 0.8,
    ("audio/audio", "audio"): 0.8, ("lyrics/lyrical", "lyrics"): 0.8, ("audio/both", "audio"): 0.8,
}


@pytest.fixture(scope="module")
def trained_results(trained_genre):
    from utils.musiclime.predict import load_predictor

    profile, corpus, run_dir = trained_genre
    predictors = {kind: load_predictor(run_dir, "genre", kind, profile, corpus, device="cpu")
                  for kind in ("multimodal", "audio", "lyrics")}
    return run_cue_checks(predictors, corpus, load_splits(corpus)["test"], read_metadata(corpus), profile,
                          separator=OracleSeparator(corpus), checks=CUE_CHECKS, songs_per_class=SONGS_PER_CLASS,
                          num_samples=NUM_SAMPLES, batch_size=250, seed=0, progress=False)


def test_trained_models_find_the_planted_cues(trained_results):
    table = hit_rates(trained_results)
    assert set(table.index) == set(THRESHOLDS)
    for key, threshold in THRESHOLDS.items():
        assert table.loc[key, "cues"] == 6 * SONGS_PER_CLASS          # 6 genres carry a cue of each modality
        assert table.loc[key, "hit_rate"] >= threshold, (key, table)


def test_trained_audio_model_ignores_lyrics(trained_results):
    summary = lyrics_ignored(trained_results)
    assert summary["songs"] == 6 * SONGS_PER_CLASS
    assert summary["fraction"] == 1.0, summary


def test_crossed_agreement_benchmark_on_trained_models(trained_genre):
    """``python -m utils.benchmark --part crossed`` in miniature: every variant measured, the
    crossed one with about a tenth of the reference's encoder passes, all finding the cues."""
    from utils.benchmark import run_crossed_agreement, speed_markdown

    profile, corpus, run_dir = trained_genre
    results = run_crossed_agreement("tiny", "cpu", songs=2, num_samples=2000, corpus_dir=corpus, run_dir=run_dir,
                                    precise_samples=3000, log=lambda *a: None)
    summary = results["summary"]
    assert summary["songs"] == 2 and summary["crossed_masks"] == [199, 199]
    assert summary["reference_encoder_passes"] == 4000                   # 2000 rows x 2 encoders
    assert summary["crossed"]["encoder_passes"] == 398 and summary["crossed"]["encoder_pass_saving"] > 10
    assert summary["iid_same_budget"]["encoder_passes"] == 2 * 199
    for name in ("crossed", "crossed_audio_heavy", "crossed_double", "antithetic", "iid_other_seed",
                 "iid_same_budget"):
        assert 0 <= summary[name]["top10_overlap_mean"] <= 1 and -1 <= summary[name]["spearman_mean"] <= 1
        assert summary[name]["same_label"] == 1.0                        # the fusion model is sure of these songs
    assert summary["reference_planted_hit_rate"] >= 0.5 and summary["crossed"]["planted_hit_rate"] >= 0.5
    assert 0 <= summary["reference"]["precise_top10_overlap_mean"] <= 1
    table = speed_markdown({"crossed": results})
    assert "crossed K = (199, 199)" in table and "antithetic N = 2000" in table and "N = 3000" in table
