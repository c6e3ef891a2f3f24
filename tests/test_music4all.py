"""M4A pipelines (utils.dataset_related.music4all, corpus): the authors' genre rules, lyrics cleaning and
the raw Music4All rebuild, on fixtures in the real formats (the published release: test_published_split.py)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from utils.dataset_related import corpus as schema
from utils.dataset_related import fixtures
from utils.dataset_related import music4all as m4a
from utils.config import emotion_from_valence_energy, get_profile

RULES_PATH = m4a.DEFAULT_RULES_PATH


@pytest.fixture(scope="module")
def rules() -> dict:
    return m4a.load_genre_rules()


# ------------------------------------------------------------------ genre rules, by hand
# Each expected value was read off m4a_genre_rules.json by hand: classes are tried in
# 'order' (pop, rock, alternative rock, rythm and blues, electronic, hip hop, folk, blue note,
# metal, punk, hardcore, jamaican); the first class with a matching rule wins.
PRIMARY_CASES = [
    ("pop", "pop"),                                   # pop rule 2: no excluded other tag
    ("pop,rock", None),                               # pop first, rock among others -> nothing
    ("pop,dance,rock", None),                         # same, rock not second
    ("pop,dance pop,electropop", "pop"),              # others not in the excluded list
    ("pop,folk", None),                               # folk is excluded too
    ("synthpop", "pop"),                              # pop rule 10: synthpop alone
    ("synthpop,electronic", "electronic"),            # pop rules fail; electronic rule 3
    ("synthpop,new wave", "punk"),                    # only punk rule 3 matches
    ("synthpop,new wave,electropop", "pop"),          # pop rule 4 (an other tag contains 'pop') wins
    ("synthpop,minimal wave", "electronic"),          # electronic rule 4
    ("metalcore", "metal"),                           # metal rule 3: no other tag contains 'hardcore'
    ("metalcore,post-hardcore", "hardcore"),          # metal rule 3 fails; hardcore rule 2
    ("metalcore,hardcore,metal", "hardcore"),
    ("hard rock,rock", "rock"),                       # rock rule 3
    ("hard rock,heavy metal", "metal"),               # rock rule 3 fails (contains metal); metal rule 2
    ("hard rock,metal", "metal"),
    ("rock,classic rock", "rock"),                    # rock rule 2
    ("rock,alternative rock", None),                  # second tag excluded, nothing else matches
    ("rock,indie,pop", None),                         # pop among the others
    ("rock", "rock"),                                 # no second tag: second_not_in holds
    ("soundtrack,pop,rock", "pop"),                   # pop rule 7 before rock rule 4
    ("soundtrack,rock", "rock"),
    ("soundtrack,electronic", "electronic"),
    ("soundtrack", None),
    ("britpop", "pop"),                               # pop rule 6: no other tag contains 'rock'
    ("britpop,indie rock", "alternative rock"),       # alternative rock rule 3
    ("disco,pop", "pop"),
    ("disco,funk", "rythm and blues"),
    ("dream pop,shoegaze", "alternative rock"),       # pop rule 5 needs 'pop' in an other tag
    ("dream pop,indie pop", "pop"),
    ("indie folk", "pop"),                            # pop rule 9: no 'folk' among others
    ("indie folk,folk", "folk"),                      # folk rule 2
    ("singer-songwriter,pop,folk", "pop"),            # pop rule 3 before folk rule 2
    ("singer-songwriter,folk", "folk"),
    ("canadian country", "pop"),                      # pop rule 11 (!), not folk
    ("country,pop", "folk"),
    ("electronic", None),                             # electronic rule 2 needs pop or rock
    ("electronic,pop", "electronic"),
    ("punk", "punk"),
    ("punk,rock", None),                              # punk rule 2 excludes rock
    ("grindcore", "hardcore"),                        # hardcore rule 3
    ("grindcore,death metal", "metal"),               # metal rule 2
    ("grunge,rock", "alternative rock"),
    ("grunge,nu metal", "metal"),
    ("jazz,blues", "blue note"),
    ("reggae,ska", "jamaican"),
    ("hip hop,rap", "hip hop"),
    ("classical,piano", None),
    ("", None),
]


@pytest.mark.parametrize("genres,expected", PRIMARY_CASES)
def test_primary_genre_by_hand(rules, genres, expected):
    assert m4a.primary_genre(m4a.parse_tags(genres), rules) == expected


CLASS_CASES = [
    ("metalcore", "heavy music"), ("metalcore,post-hardcore", "heavy music"),
    ("disco,funk", "rhythm music"), ("jazz", "rhythm music"), ("dub", "rhythm music"),
    ("alternative rock,rock", "alternative rock"), ("pop,rock", None), ("post-punk", "punk"),
    ("trap music", "hip hop"), ("celtic", "folk"), ("house", "electronic"),
]


@pytest.mark.parametrize("genres,expected", CLASS_CASES)
def test_genre_class_merges_to_the_nine_classes(rules, genres, expected):
    assert m4a.genre_class(m4a.parse_tags(genres), rules) == expected


def test_fixture_tag_table_agrees_with_the_rules(rules):
    for tags, expected in fixtures.FIXTURE_TAGS:
        assert m4a.genre_class(m4a.parse_tags(tags), rules) == expected, tags


def test_parse_tags_one_column_list_with_quirks():
    assert m4a.parse_tags("rock,pop,indie rock") == ["rock", "pop", "indie rock"]
    assert m4a.parse_tags(' Rock , "Pop",,') == ["rock", "pop"]
    assert m4a.parse_tags(float("nan")) == [] and m4a.parse_tags(None) == []


def test_rule_conditions_individually():
    assert m4a.rule_matches({"first_in": ["a"], "second_not_in": ["b"]}, ["a"])
    assert not m4a.rule_matches({"first_in": ["a"], "second_not_in": ["b"]}, ["a", "b"])
    assert m4a.rule_matches({"first_in": ["a"], "second_not_in": ["b"]}, ["a", "c", "b"])
    assert m4a.rule_matches({"first_in": ["a"], "no_others": True}, ["a"])
    assert not m4a.rule_matches({"first_in": ["a"], "no_others": True}, ["a", "x"])
    assert m4a.rule_matches({"first_in": ["a"], "others_any_contains": "pop"}, ["a", "x", "electropop"])
    assert not m4a.rule_matches({"first_in": ["a"], "others_any_of": ["pop"]}, ["a", "electropop"])
    assert not m4a.rule_matches({"first_in": ["a"]}, [])


def test_load_genre_rules_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="m4a_genre_rules.json"):
        m4a.load_genre_rules(tmp_path / "m4a_genre_rules.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"order": ["x"], "to_class": {"x": "polka"}, "rules": {"x": []}}))
    with pytest.raises(ValueError, match="polka"):
        m4a.load_genre_rules(bad)
    bad.write_text(json.dumps({"order": ["x"], "to_class": {"x": "pop"},
                               "rules": {"x": [{"first_in": ["a"], "sounds_like": "b"}]}}))
    with pytest.raises(ValueError, match="sounds_like"):
        m4a.load_genre_rules(bad)


# ------------------------------------------------------------------ lyrics
def test_clean_lyrics():
    raw = ("\ufeff[Verse 1]\r\nHello   darkness\u200b my old friend\r\n\r\n\r\n"
           "[Chorus]\r\nI've come   to talk\r\n\r\n  \r\nagain\r\n5Embed")
    assert schema.clean_lyrics(raw) == "Hello darkness my old friend\n\nI've come to talk\n\nagain"
    assert schema.clean_lyrics(None) == "" and schema.clean_lyrics("[Instrumental]\n\n") == ""


# ------------------------------------------------------------------ reading the tsv files
def test_read_tsv_collects_odd_rows(tmp_path):
    path = tmp_path / "id_genres.csv"
    path.write_text("id\tgenres\n"
                    "aaaa\trock,pop\n"
                    "bbbb\n"                       # missing value
                    "cccc\trock\tEXTRA\n"          # too many fields
                    "\tpop\n"                      # no id
                    "../x\tpop\n"                  # unsafe id
                    'dddd\t"metal,rock"\n')        # quoted tag list
    df, bad = m4a.read_tsv(path, ["id", "genres"])
    assert df["id"].tolist() == ["aaaa", "bbbb", "dddd"]
    assert pd.isna(df.loc[1, "genres"])
    assert m4a.parse_tags(df.loc[2, "genres"]) == ["metal", "rock"]
    assert len(bad) == 3 and any("too many fields" in b for b in bad)
    with pytest.raises(ValueError, match="missing column"):
        m4a.read_tsv(path, ["id", "lang"])


# ------------------------------------------------------------------ the raw rebuild
@pytest.fixture(scope="module")
def built(tmp_path_factory, rules):
    base = tmp_path_factory.mktemp("m4a")
    raw = fixtures.write_music4all_fixture(base / "raw", seed=3)
    report = m4a.build_m4a(raw, base / "corpus", rules_path=RULES_PATH, profile="tiny",
                           fractions=(0.6, 0.2, 0.2), seed=1, show_progress=False)
    return raw, base / "corpus", report


def _read_split(corpus: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (corpus / f"{name}.jsonl").read_text().splitlines()]


def test_build_keeps_exactly_the_clean_english_songs(built):
    raw, corpus, report = built
    expected = json.loads((raw / "expected.json").read_text())
    classes = dict(zip(expected["ids"], expected["classes"]))
    dup_pair = {expected["duplicate_lyrics_of"],
                next(i for i, k in expected["defects"].items() if k == "dup_lyrics")}
    clean = {i for i, c in classes.items() if c is not None and i not in expected["defects"]}
    rows = [r for s in ("train", "val", "test") for r in _read_split(corpus, s)]
    kept = {r["id"] for r in rows}
    assert len(kept) == len(rows)                                   # no id twice
    assert len(kept & dup_pair) == 1                                # one of the duplicate lyrics
    assert kept - dup_pair == clean - dup_pair
    for r in rows:
        assert r["primary_short"] == classes[r["id"]]


def test_build_emotion_from_metadata_and_lyrics_cleaned(built):
    raw, corpus, _ = built
    with (raw / "id_metadata.csv").open() as fh:
        meta = {row["id"]: row for row in csv.DictReader(fh, delimiter="\t")}
    for r in _read_split(corpus, "train"):
        v, e = float(meta[r["id"]]["valence"]), float(meta[r["id"]]["energy"])
        assert r["valence"] == pytest.approx(v) and r["energy"] == pytest.approx(e)
        assert r["emotion"] == emotion_from_valence_energy(v, e)
        assert "\r" not in r["lyrics"] and not r["lyrics"].startswith("[Verse")


def test_build_audio_clips_have_the_model_length(built):
    _, corpus, _ = built
    profile = get_profile("tiny")
    rows = [r for s in ("train", "val", "test") for r in _read_split(corpus, s)]
    for r in rows:
        info = sf.info(str(corpus / "audio" / f"{r['id']}.wav"))
        assert info.samplerate == profile.audio.sample_rate == 16_000
        assert info.frames == profile.clip_length and info.channels == 1
    assert not list((corpus / "audio").glob("*.part"))


def test_build_report_counts_every_filter(built):
    raw, _, report = built
    expected = json.loads((raw / "expected.json").read_text())
    n = len(expected["ids"])
    n_other = sum(c is None for c in expected["classes"])
    totals = report.counts["total"].tolist()
    # rows (+1 duplicate id row) -> unique -> English (-3) -> genre (-others) -> emotion (-2)
    # -> lyrics (-2) -> unique lyrics (-1) -> audio (-2)
    assert totals == [n + 1, n, n - 3, n - 3 - n_other, n - 5 - n_other, n - 7 - n_other,
                      n - 8 - n_other, n - 10 - n_other]
    counts = report.problem_counts()
    assert counts["duplicate id"] == 1
    assert counts["not English (id_lang.csv)"] == 2 and counts["no language in id_lang.csv"] == 1
    assert counts["genre tags match no rule (other)"] == n_other
    assert counts["missing or invalid valence/energy"] == 2
    assert counts["lyrics file missing"] == 1 and counts["lyrics empty after cleaning"] == 1
    assert counts["audio file missing"] == 1 and counts["audio unreadable"] == 1
    assert counts["malformed row in id_genres.csv"] == 2
    assert counts["malformed row in id_lang.csv"] == 1
    assert counts["malformed row in id_metadata.csv"] == 1
    assert report.split_counts["total"].sum() == totals[-1]
    assert "audio readable" in report.summary()


def test_build_is_resumable_and_deterministic(built, tmp_path):
    raw, corpus, report = built
    clip = next((corpus / "audio").glob("*.wav"))
    before = clip.stat().st_mtime_ns
    again = m4a.build_m4a(raw, corpus, rules_path=RULES_PATH, profile="tiny",
                          fractions=(0.6, 0.2, 0.2), seed=1, show_progress=False)
    assert clip.stat().st_mtime_ns == before                       # not decoded again
    pd.testing.assert_frame_equal(again.split_counts, report.split_counts)
    first = {s: [r["id"] for r in _read_split(corpus, s)] for s in ("train", "val", "test")}
    assert set(first["val"]) | set(first["test"])


def test_stratified_split_exact_proportions_and_seed():
    df = pd.DataFrame({"id": [f"s{i}" for i in range(200)],
                       "primary_short": ["pop"] * 100 + ["rock"] * 50 + ["folk"] * 50})
    splits = schema.stratified_split(df, "primary_short", (0.8, 0.1, 0.1), seed=0)
    counts = {k: v["primary_short"].value_counts().to_dict() for k, v in splits.items()}
    assert counts["train"] == {"pop": 80, "rock": 40, "folk": 40}
    assert counts["val"] == {"pop": 10, "rock": 5, "folk": 5}
    assert counts["test"] == {"pop": 10, "rock": 5, "folk": 5}
    again = schema.stratified_split(df, "primary_short", (0.8, 0.1, 0.1), seed=0)
    other = schema.stratified_split(df, "primary_short", (0.8, 0.1, 0.1), seed=1)
    assert again["test"]["id"].tolist() == splits["test"]["id"].tolist()
    assert other["test"]["id"].tolist() != splits["test"]["id"].tolist()
    union = pd.concat(splits.values())["id"]
    assert sorted(union) == sorted(df["id"])
    with pytest.raises(ValueError, match="sum"):
        schema.stratified_split(df, "primary_short", (0.5, 0.1, 0.1))


def test_stratified_split_small_classes_keep_a_training_song():
    df = pd.DataFrame({"id": ["a", "b", "c"], "primary_short": ["pop", "rock", "rock"]})
    splits = schema.stratified_split(df, "primary_short", (0.34, 0.33, 0.33), seed=0)
    assert set(splits["train"]["primary_short"]) == {"pop", "rock"}


def test_load_clip_pads_short_audio_and_rejects_garbage(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(str(path), np.full(8000, 0.5, dtype=np.float32), 8000)      # 1 s at 8 kHz
    wave, padding = schema.decode_clip(path, 16_000, 1.5)
    assert wave.shape == (24_000,) and padding == 8_000
    assert np.allclose(wave[2000:14_000], 0.5, atol=0.01) and not wave[-8000:].any()
    garbage = tmp_path / "bad.mp3"
    garbage.write_bytes(b"not audio at all" * 10)
    with pytest.raises(ValueError, match="bad.mp3"):
        schema.decode_clip(garbage, 16_000, 1.0)


