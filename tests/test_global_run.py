"""Global runs (utils.musiclime.global_explain and the utils.global_run command): records, resume, shards, settings, planted-cue summaries, word vectors.

Mechanics are checked with untrained tiny models on the session's small synthetic corpus
(what is explained does not matter for them); the planted-cue summaries on hand-made records
whose answer is known.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from utils.musiclime.aggregate import accumulate, measures, read_measures, write_measures
from utils.musiclime.global_explain import global_explain, select_songs, song_record, song_seed
from utils.musiclime.planted import planted_cue_summary, planted_cues, song_planted_summary
from utils.musiclime.records import aggregate_records, load_records
from utils.config import GENRES, get_profile
from utils.dataset_related.splits import read_split
from utils.global_run import main
from utils.results.run_figures import word_embeddings
from utils.model_related.models import build_model, save_model
from utils.model_related.pipeline import prepare_tokens
from utils.musiclime.predict import ModelPredictor
from utils.dataset_related.synth import AUDIO_CUES, LYRIC_CUES, read_metadata

PROFILE = get_profile("tiny")
SETTING_KEYS = {"task", "kind", "mode", "num_samples", "seed", "separator", "split", "profile"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP thrashing
    (10x faster here under load); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokens(small_corpus):
    return prepare_tokens(PROFILE, small_corpus)


def _predictor(kind, tokens, seed=0):
    torch.manual_seed(seed)
    model = build_model(kind, PROFILE, len(GENRES), vocab_size=len(tokens.tokenizer))
    return ModelPredictor(model, PROFILE, tokens, device="cpu")


class FailingPredictor:
    """A predictor that dies on the ``fail_on``-th song (a killed run, as seen from the store)."""

    def __init__(self, inner, fail_on):
        self.inner, self.kind, self.fail_on, self.songs = inner, inner.kind, fail_on, []

    def predict_masks(self, audio_masks, text_masks, factorization, text):
        if not self.songs or self.songs[-1] is not text:
            self.songs.append(text)
        if len(self.songs) == self.fail_on:
            raise KeyboardInterrupt("killed")
        return self.inner.predict_masks(audio_masks, text_masks, factorization, text)


def test_select_songs(small_corpus):
    frame = read_split(small_corpus, "test")
    two = select_songs(frame, "genre", songs_per_class=1)
    assert len(two) == 9 and two["primary_short"].nunique() == 9
    assert list(two["id"]) == [frame[frame["primary_short"] == g]["id"].iloc[0] for g in two["primary_short"]]
    assert len(select_songs(frame, "genre", limit=3)) == 3
    with pytest.raises(ValueError, match="limit"):
        select_songs(frame, "genre", limit=0)


def test_records_resume_after_kill(small_corpus, tokens, tmp_path):
    predictor = _predictor("multimodal", tokens)
    common = dict(corpus_dir=small_corpus, num_samples=16, batch_size=8, seed=5, limit=3, progress=False)
    killed = tmp_path / "killed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        global_explain(PROFILE, "genre", "multimodal", "both", killed,
                       predictor=FailingPredictor(predictor, fail_on=3), **common)
    done = load_records(killed)
    assert len(done) == 2                                    # two songs finished before the kill
    before = killed.read_bytes()

    counting = FailingPredictor(predictor, fail_on=0)         # never fails, counts songs
    global_explain(PROFILE, "genre", "multimodal", "both", killed, predictor=counting, **common)
    assert len(counting.songs) == 1                          # only the missing song was explained
    assert killed.read_bytes().startswith(before)            # append-only
    records = load_records(killed)
    songs = select_songs(read_split(small_corpus, "test"), "genre", limit=3)
    assert [r["id"] for r in records] == list(songs["id"])

    record = records[0]
    assert SETTING_KEYS <= set(record["settings"])
    assert record["settings"]["num_samples"] == 16 and record["settings"]["seed"] == 5
    assert record["settings"]["separator"] == "oracle" and record["settings"]["mode"] == "both"
    assert record["song_seed"] == song_seed(5, record["id"])
    assert record["label"] == int(np.argmax(record["probabilities"]))      # explained = predicted class
    assert record["true_label"] == GENRES.index(songs["primary_short"][0])
    assert {"audio", "lyrics"} == set(record["modality"].values())
    assert "bass1" in record["weights"]

    # the resumed file equals an uninterrupted run (per-song seeds do not depend on the order)
    straight = tmp_path / "straight.jsonl"
    global_explain(PROFILE, "genre", "multimodal", "both", straight, predictor=predictor, **common)
    assert load_records(straight) == records


def test_shards_merge_to_the_unsharded_run_and_settings_are_checked(small_corpus, tokens, tmp_path):
    predictor = _predictor("lyrics", tokens)
    common = dict(corpus_dir=small_corpus, num_samples=30, seed=0, songs_per_class=1, progress=False,
                  predictor=predictor)
    whole = global_explain(PROFILE, "genre", "lyrics", "lyrical", tmp_path / "all.jsonl", **common)
    parts = [global_explain(PROFILE, "genre", "lyrics", "lyrical", tmp_path / f"shard{k}.jsonl", shard=f"{k}/2",
                            **common) for k in (1, 2)]
    sizes = [len(load_records(p)) for p in parts]
    assert sum(sizes) == 9 and min(sizes) > 0
    unsharded = aggregate_records([whole], GENRES)
    merged = aggregate_records(parts, GENRES)
    pd.testing.assert_frame_equal(merged, unsharded)
    assert set(unsharded["modality"]) == {"lyrics"}

    # the CSV round trip keeps the table
    path = write_measures(merged, tmp_path / "measures.csv")
    pd.testing.assert_frame_equal(read_measures(path, GENRES), merged, check_dtype=False)

    # other settings on an existing file are refused, or the old file is moved aside on request
    with pytest.raises(ValueError, match="num_samples=30"):
        global_explain(PROFILE, "genre", "lyrics", "lyrical", whole, **{**common, "num_samples": 40})
    with pytest.raises(ValueError, match="seed"):
        global_explain(PROFILE, "genre", "lyrics", "lyrical", whole, **{**common, "seed": 1, "limit": 1})
    with pytest.warns(UserWarning, match="replaced"):
        global_explain(PROFILE, "genre", "lyrics", "lyrical", whole, **{**common, "num_samples": 40, "limit": 2},
                       on_mismatch="replace")
    assert len(load_records(whole)) == 2 and len(load_records(str(whole) + ".replaced")) == 9
    assert {r["settings"]["num_samples"] for r in load_records(whole)} == {40}

    # another sampling design is other settings too; an old record without the key counts as i.i.d.
    assert {r["settings"]["sampling"] for r in load_records(whole)} == {"iid"}
    with pytest.raises(ValueError, match="sampling='iid'"):
        global_explain(PROFILE, "genre", "lyrics", "lyrical", whole, **{**common, "num_samples": 40},
                       sampling="antithetic")
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text("".join(json.dumps({**r, "settings": {k: v for k, v in r["settings"].items() if k != "sampling"}})
                              + "\n" for r in load_records(whole)))
    with pytest.raises(ValueError, match="sampling='iid'"):
        global_explain(PROFILE, "genre", "lyrics", "lyrical", legacy, **{**common, "num_samples": 40},
                       sampling="antithetic")
    antithetic = global_explain(PROFILE, "genre", "lyrics", "lyrical", tmp_path / "anti.jsonl",
                                **{**common, "limit": 2}, sampling="antithetic")
    assert {r["settings"]["sampling"] for r in load_records(antithetic)} == {"antithetic"}
    assert load_records(antithetic)[0]["weights"] != load_records(whole)[0]["weights"]

    with pytest.raises(ValueError, match="crossed"):
        global_explain(PROFILE, "genre", "lyrics", "lyrical", tmp_path / "x.jsonl", **common, sampling="crossed")
    with pytest.raises(ValueError, match="in mode"):
        global_explain(PROFILE, "genre", "lyrics", "both", tmp_path / "x.jsonl", **common)
    with pytest.raises(ValueError, match="classes"):
        aggregate_records(parts, [f"c{i}" for i in range(9)])


def test_command_line_explain_and_merge(small_corpus, tokens, tmp_path):
    run_dir = tmp_path / "runs"
    torch.manual_seed(0)
    save_model(build_model("lyrics", PROFILE, 9, vocab_size=len(tokens.tokenizer)), run_dir / "genre" / "lyrics" / "best",
               task="genre", class_names=list(GENRES), profile="tiny")
    args = ["--task", "genre", "--kind", "lyrics", "--corpus-dir", str(small_corpus), "--run-dir", str(run_dir),
            "--num-samples", "20", "--limit", "3", "--no-progress", "--merge-case"]
    for k in (1, 2):
        assert main(args + ["--records", str(tmp_path / f"s{k}.jsonl"), "--shard", f"{k}/2"]) == 0
    assert main(["explain"] + args + ["--records", str(tmp_path / "all.jsonl")]) == 0
    records = load_records(tmp_path / "all.jsonl")
    assert len(records) == 3 and records[0]["settings"]["mode"] == "lyrical"
    assert records[0]["settings"]["separator"] is None and len(records[0]["settings"]["model_sha256"]) == 64
    assert (tmp_path / "all.csv").is_file() and not (tmp_path / "s1.csv").exists()
    assert main(["merge", "--records", str(tmp_path / "s1.jsonl"), str(tmp_path / "s2.jsonl"),
                 "--out", str(tmp_path / "merged.csv"), "--merged-records", str(tmp_path / "merged.jsonl"),
                 "--merge-case"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "merged.csv"), pd.read_csv(tmp_path / "all.csv"))
    assert load_records(tmp_path / "merged.jsonl") == sorted(records, key=lambda r: r["id"])
    with pytest.raises(ValueError, match="num_samples"):
        main(args + ["--records", str(tmp_path / "all.jsonl"), "--num-samples", "21"])
    # a records file named .csv keeps its records: the measures go to <name>.measures.csv
    assert main(args + ["--records", str(tmp_path / "r.csv")]) == 0
    assert len(load_records(tmp_path / "r.csv")) == 3 and (tmp_path / "r.measures.csv").is_file()
    assert main(args + ["--records", str(tmp_path / "r.csv")]) == 0                  # and it resumes
    before = (tmp_path / "all.jsonl").read_bytes()
    with pytest.raises(ValueError, match="same file"):
        main(args + ["--records", str(tmp_path / "all.jsonl"), "--measures", str(tmp_path / "all.jsonl")])
    with pytest.raises(ValueError, match="same file"):
        main(["merge", "--records", str(tmp_path / "all.jsonl"), "--out", str(tmp_path / "all.jsonl")])
    with pytest.raises(ValueError, match="same file"):
        main(["merge", "--records", str(tmp_path / "s1.jsonl"), str(tmp_path / "all.jsonl"), "--out",
              str(tmp_path / "m.csv"), "--merged-records", str(tmp_path / "all.jsonl")])
    assert (tmp_path / "all.jsonl").read_bytes() == before                            # inputs untouched


def test_explain_song_names_the_song(tokens):
    item = {"id": "one-word", "lyrics": "la la la", "primary_short": "pop"}
    with pytest.raises(ValueError, match="'one-word'"):
        song_record(_predictor("lyrics", tokens), ".", item, PROFILE, separator=None, task="genre",
                    mode="lyrical", num_samples=10, seed=0)


# ---------------------------------------------------------------- planted cues
def test_planted_cues_from_metadata(small_corpus):
    planted = planted_cues(read_metadata(small_corpus), "genre")
    assert planted["hip hop"] == {"bass1"} and planted["heavy music"] == {"drums6"}
    assert planted["folk"] <= set(LYRIC_CUES["folk"]) and planted["folk"]
    assert "vocals8" in planted["pop"] and planted["pop"] - {"vocals8"} <= set(LYRIC_CUES["pop"])
    assert {g for g in AUDIO_CUES} | {g for g in LYRIC_CUES} == set(planted)
    emotion = planted_cues(read_metadata(small_corpus), "emotion")
    assert all(not any(w.startswith(("vocals", "drums")) for w in words) for words in emotion.values())


CLASSES = ["hip hop", "folk", "pop", "punk"]
PLANTED = {"hip hop": {"bass1"}, "folk": {"river", "meadow"}, "pop": {"vocals8", "heart"}, "punk": {"riot"}}
HAND_RECORDS = [  # label = explained (predicted) class index into CLASSES
    {"id": "h1", "label": 0, "weights": {"bass1": 0.9, "other2": 0.2, "night": 0.1}},
    {"id": "h2", "label": 0, "weights": {"bass1": 0.7, "other2": 0.3}},
    {"id": "f1", "label": 1, "weights": {"road": 0.8, "river": 0.5, "drums3": 0.1, "meadow": -0.9}},
    {"id": "f2", "label": 1, "weights": {"road": 0.6, "river": 0.4, "drums3": 0.45}},
    {"id": "p1", "label": 2, "weights": {"night": 0.5, "other2": 0.4, "drums3": 0.3, "vocals8": -0.2, "heart": 0.01}},
]
# Rankings by I_AVG (mean positive weight): hip hop bass1 0.8 > other2 0.25 > night 0.1 -> rank 1;
# folk road 0.7 > river 0.45 > drums3 0.275 -> rank 2; pop night > other2 > drums3 > heart -> rank 4;
# punk has no songs.


def test_planted_cue_summary_on_a_known_aggregate():
    table = measures(*accumulate(HAND_RECORDS), CLASSES)
    summary = planted_cue_summary(table, PLANTED, value="I_AVG", ks=(1, 3), records=HAND_RECORDS).set_index("class")
    assert list(summary.index) == CLASSES + ["overall"]
    assert summary.loc["hip hop", "best_rank"] == 1 and summary.loc["hip hop", "in_top1"] == 1.0
    assert summary.loc["folk", "best_rank"] == 2 and summary.loc["folk", "best_planted"] == "river"
    assert (summary.loc["folk", "in_top1"], summary.loc["folk", "in_top3"]) == (0.0, 1.0)
    assert summary.loc["pop", "best_rank"] == 4 and summary.loc["pop", "in_top3"] == 0.0
    assert summary.loc["pop", "top_feature"] == "night" and summary.loc["pop", "planted"] == "heart, vocals8"
    assert math.isnan(summary.loc["punk", "in_top1"]) and math.isnan(summary.loc["punk", "best_rank"])
    assert list(summary["songs"]) == [2, 2, 1, 0, 5]
    assert summary.loc["overall", "in_top1"] == pytest.approx(1 / 3)     # over the 3 classes with songs
    assert summary.loc["overall", "in_top3"] == pytest.approx(2 / 3)

    audio_only = planted_cue_summary(table, PLANTED, value="I_AVG", mode="audio").set_index("class")
    assert list(audio_only.index) == ["hip hop", "pop", "overall"]      # folk / punk have no audio cue
    assert math.isnan(audio_only.loc["pop", "best_rank"])                # vocals8 never had a positive weight
    with pytest.raises(ValueError, match="unknown classes"):
        planted_cue_summary(table, {"jazz": {"x"}})


def test_song_planted_summary():
    metadata = {
        "h1": {"genre": "hip hop", "genre_cues": [{"modality": "audio", "component": "bass1"}]},
        "h2": {"genre": "folk", "genre_cues": [{"modality": "lyrics", "word": "river"}]},   # predicted hip hop: skipped
        "f1": {"genre": "folk", "genre_cues": [{"modality": "lyrics", "word": "River"}]},
        "f2": {"genre": "folk", "genre_cues": [{"modality": "lyrics", "word": "meadow"}]},
        "p1": {"genre": "pop", "genre_cues": [{"modality": "audio", "component": "vocals8"}]},
    }
    summary = song_planted_summary(HAND_RECORDS, metadata, CLASSES, ks=(1, 2)).set_index("class")
    assert summary.loc["hip hop", "songs"] == 1 and summary.loc["hip hop", "in_top1"] == 1.0
    assert summary.loc["folk", "songs"] == 2
    assert summary.loc["folk", "in_top2"] == 0.5 and summary.loc["folk", "in_top1"] == 0.0
    assert summary.loc["pop", "in_top2"] == 0.0
    assert summary.loc["overall", "songs"] == 4 and summary.loc["overall", "in_top2"] == pytest.approx(2 / 4)


# ---------------------------------------------------------------- word embeddings
def test_word_embeddings_come_from_the_input_matrix(tokens):
    lyrics_model = build_model("lyrics", PROFILE, 9, vocab_size=len(tokens.tokenizer))
    words = ["river", "heart", "river", "anarchy"]
    vectors = word_embeddings(lyrics_model, tokens.tokenizer, words)
    assert list(vectors) == ["river", "heart", "anarchy"]
    hidden = PROFILE.model.roberta_hidden
    assert all(v.shape == (hidden,) for v in vectors.values())
    matrix = lyrics_model.model.get_input_embeddings().weight.detach().numpy()
    ids = tokens.tokenizer(" anarchy", add_special_tokens=False)["input_ids"]
    assert np.allclose(vectors["anarchy"], matrix[ids].mean(0))
    again = word_embeddings(lyrics_model, tokens.tokenizer, words)
    assert all(np.array_equal(vectors[w], again[w]) for w in vectors)
    assert not np.allclose(vectors["river"], vectors["heart"])

    fusion = build_model("multimodal", PROFILE, 9, vocab_size=len(tokens.tokenizer))
    predictor = ModelPredictor(fusion, PROFILE, tokens, device="cpu")
    from_predictor = word_embeddings(predictor, tokens.tokenizer, ["river"])
    assert np.allclose(from_predictor["river"],
                       fusion.lyrics_encoder.get_input_embeddings().weight.detach().numpy()[
                           tokens.tokenizer(" river", add_special_tokens=False)["input_ids"]].mean(0))
    with pytest.raises(TypeError, match="lyrics input embeddings"):
        word_embeddings(build_model("audio", PROFILE, 9), tokens.tokenizer, ["river"])
