"""The AudioSet subset (utils.dataset_related.audioset, audioset_selection, audioset_lyrics): segment CSVs, ontology selection, title cleaning,
lyrics checks and the whole pipeline with the network replaced by the FakeClient."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from utils.dataset_related import audioset as aset
from utils.dataset_related import audioset_lyrics as lyrics
from utils.dataset_related import audioset_selection as selection
from utils.config import AUDIOSET_GENRES, get_profile
from utils.dataset_related.fixtures import write_audioset_fixture
from utils.dataset_related.net import NetError, ProgressLog, RetryPolicy
from utils.dataset_related.net_clients import FakeClient

NO_WAIT = {"youtube": 0.0, "lyricfind": 0.0, "genius": 0.0, "download": 0.0}
OURS = {"selection": "ontology", "titles": "ours", "lyrics": "ours", "audio": "ours"}


def _policy(attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_delay=0.0, sleep=lambda s: None)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    return write_audioset_fixture(tmp_path_factory.mktemp("audioset") / "raw", seed=0)


@pytest.fixture(scope="module")
def ontology(fixture_dir) -> dict:
    return selection.load_ontology(fixture_dir / "ontology.json")


# ------------------------------------------------------------------ segment CSVs
def test_read_segments_real_format(tmp_path):
    path = tmp_path / "balanced_train_segments.csv"
    path.write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
        '-0RWZT-miFs, 420.000, 430.000, "/m/03v3yw,/m/0k4j"\n'
        "short, 1\n"
        '-0SdAVK79lg, 40.000, 30.000, "/m/064t9"\n'
        '-0SdAVK79lg, x, 30.000, "/m/064t9"\n'
        '-0vPFx-wRRI, 30.000, 40.000, ""\n')
    df, bad = selection.read_segments(path)
    assert df["youtube_id"].tolist() == ["--PJHxphWEs", "-0RWZT-miFs"]
    assert df.loc[0, "labels"] == ["/m/09x0r", "/t/dd00088"]
    assert df.loc[1, "start_seconds"] == 420.0 and df.loc[1, "end_seconds"] == 430.0
    assert len(bad) == 4
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        selection.read_segments(tmp_path / "nowhere.csv")


# ------------------------------------------------------------------ ontology selection
def test_descendants_and_blacklist(ontology):
    rock = selection.descendants(ontology, "/m/06by7")
    assert {"/m/06by7", "/m/03lty", "/m/05r6t"} <= rock and "/m/064t9" not in rock
    blacklist = selection.default_blacklist(ontology)
    assert set(blacklist) == {"Soul music", "Funk", "Disco", "Classical music", "Blues"}


def test_label_targets_most_specific_wins(ontology):
    mapping = selection.label_targets(ontology)
    assert mapping["/m/03lty"] == "/m/03lty"          # Heavy metal: its own target, not rock
    assert mapping["/m/05r6t"] == "/m/06by7"          # Punk rock -> Rock music
    assert mapping["/m/0n8zsc8"] == "/m/0glt670"      # Trap -> Hip hop
    assert mapping["/m/0gg8l"] == "/m/01lyv"          # Bluegrass -> Country


def test_select_segments_classes(ontology):
    import pandas as pd

    rows = [("aaaaaaaaaa1", "/m/04rlf,/m/06by7,/m/03lty"),   # rock + metal -> heavy music
            ("aaaaaaaaaa2", "/m/04rlf,/m/05r6t"),            # punk rock -> rock
            ("aaaaaaaaaa3", "/m/02w4v"),                     # folk
            ("aaaaaaaaaa4", "/m/01lyv,/m/02w4v"),            # country + folk -> folk (one class)
            ("aaaaaaaaaa5", "/m/06cqb,/m/03_d0"),            # reggae + jazz -> rhythm music
            ("aaaaaaaaaa6", "/m/064t9,/m/06by7"),            # pop + rock -> ambiguous
            ("aaaaaaaaaa7", "/m/064t9,/m/0155w"),            # pop + blues -> blacklisted
            ("aaaaaaaaaa8", "/m/09x0r"),                     # speech -> no target
            ("aaaaaaaaaa9", "/m/0n8zsc8")]                   # trap -> hip hop
    segments = pd.DataFrame({"youtube_id": [r[0] for r in rows], "start_seconds": 10.0,
                             "end_seconds": 20.0, "labels": [r[1].split(",") for r in rows],
                             "source": "x.csv"})
    kept, problems, counts = selection.select_segments(segments, ontology)
    assert dict(zip(kept["youtube_id"], kept["primary_short"])) == {
        "aaaaaaaaaa1": "heavy music", "aaaaaaaaaa2": "rock", "aaaaaaaaaa3": "folk",
        "aaaaaaaaaa4": "folk", "aaaaaaaaaa5": "rhythm music", "aaaaaaaaaa9": "hip hop"}
    assert problems["ambiguous: labels of several classes"] == ["aaaaaaaaaa6_10000"]
    assert problems["blacklisted class among labels"] == ["aaaaaaaaaa7_10000"]
    assert problems["no target genre"] == ["aaaaaaaaaa8_10000"]
    assert counts.table()["total"].tolist() == [9, 9, 7, 6, 6]


def test_unknown_class_names_are_reported(ontology):
    with pytest.raises(ValueError, match="Polka"):
        selection.ids_by_name(ontology, ["Pop music", "Polka"])


# ------------------------------------------------------------------ titles and lyrics text
TITLE_CASES = [
    ("Eminem - Lose Yourself (Official Video) [HD]", ("Eminem", "Lose Yourself")),
    ("Drake ft. Rihanna - Take Care (Lyrics)", ("Drake", "Take Care")),
    ("Kanye West - Stronger feat. Daft Punk (prod. by Kanye) (2007).mp4", ("Kanye West", "Stronger")),
    ("Bob Marley & The Wailers – Is This Love [Official Audio]", ("Bob Marley & The Wailers", "Is This Love")),
    ('Johnny Cash "Hurt"', ("Johnny Cash", "Hurt")),
    ("The Prodigy - Firestarter (Official Music Video)", ("The Prodigy", "Firestarter")),
    ("Daft Punk - Around the World | Official Video", ("Daft Punk", "Around the World")),
    ("► Skrillex - Bangarang [HD 1080p] ♫", ("Skrillex", "Bangarang")),
    ("Artist - Song (Remix)", ("Artist", "Song (Remix)")),
    ("ARTIST - SONG lyrics HQ", ("ARTIST", "SONG")),
    ("Nas - N.Y. State of Mind [1994]", ("Nas", "N.Y. State of Mind")),
    ("my band practice 2012", None),
    ("Song Name HQ", None),
    ("- Song only (Official Video)", None),
]


@pytest.mark.parametrize("title,expected", TITLE_CASES)
def test_split_artist_song(title, expected):
    assert lyrics.split_artist_song(title) == expected


def test_clean_genius_lyrics():
    raw = ("5 ContributorsTranslationsEspañolHurt Lyrics[Verse 1]\nI hurt myself today\n"
           "To see if I still feel\n\n[Chorus]\nWhat have I become\nYou might also like"
           "My sweetest friend\n12Embed")
    assert lyrics.clean_genius_lyrics(raw) == ("I hurt myself today\nTo see if I still feel\n\n"
                                             "What have I become\nMy sweetest friend")


def test_same_song():
    assert lyrics.same_song("Bob Marley & The Wailers", "Is This Love",
                          "Bob Marley and The Wailers", "Is This Love")
    assert lyrics.same_song("Drake", "Take Care", "Drake", "Take Care (Ft. Rihanna)")
    assert not lyrics.same_song("Drake", "Take Care", "A Tribute Band", "Take Care")
    assert not lyrics.same_song("Drake", "Care", "Drake", "Take Care")


def test_english_detection_threshold_and_seed():
    pytest.importorskip("langdetect")
    english = "I walk alone down this empty road tonight\nyou said that you would never leave me"
    spanish = "yo quiero bailar contigo toda la noche\nla luna brilla sobre el mar azul"
    assert lyrics.english_probability(english) >= 0.42 > lyrics.english_probability(spanish)
    assert lyrics.english_probability(english, seed=3) == lyrics.english_probability(english, seed=3)
    assert lyrics.english_probability("1234 5678") == 0.0
    assert lyrics.english_probability(spanish, tries=5) < 0.42


# ------------------------------------------------------------------ the whole pipeline, faked network
def _build(fixture_dir, out, client, attempts=4, **methods):
    """Build from the fixture: the authors' way by default, ``**OURS`` for ours."""
    return aset.build_audioset(
        [fixture_dir / "balanced_train_segments.csv", fixture_dir / "eval_segments.csv"],
        fixture_dir / "class_labels_indices.csv", out, client, profile="tiny", fractions=(0.6, 0.2, 0.2),
        seed=0, policy=_policy(attempts), min_intervals=NO_WAIT, show_progress=False,
        ontology_path=fixture_dir / "ontology.json", **methods)


def _ids(corpus: Path) -> list[str]:
    return sorted(json.loads(line)["id"] for s in ("train", "val", "test")
                  for line in (corpus / f"{s}.jsonl").read_text().splitlines())


def test_pipeline_ours_keeps_the_expected_segments_and_resumes(fixture_dir, tmp_path):
    pytest.importorskip("langdetect")
    expected = json.loads((fixture_dir / "expected.json").read_text())
    client = FakeClient.from_json(fixture_dir / "fake_responses.json")
    report = _build(fixture_dir, tmp_path / "corpus", client, **OURS)
    assert _ids(tmp_path / "corpus") == expected["kept"]
    rows = [json.loads(line) for s in ("train", "val", "test")
            for line in (tmp_path / "corpus" / f"{s}.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["primary_short"] == expected["classes"][r["id"]]
        assert r["primary_short"] in AUDIOSET_GENRES and r["emotion"] is None
        assert "Lyrics" not in r["lyrics"] and "[Chorus]" not in r["lyrics"]
        info = sf.info(str(tmp_path / "corpus" / "audio" / f"{r['id']}.wav"))
        assert info.frames == get_profile("tiny").clip_length and info.samplerate == 16_000
    counts = report.problem_counts()
    assert counts["lyrics: failed after retries (re-run retries it)"] == 1
    assert counts["audio: failed after retries (re-run retries it)"] == 3
    assert counts["lyrics: not English"] == 1 and counts["lyrics: no Genius result"] == 1
    assert counts["lyrics: Genius returned another song"] == 1
    assert counts["title: video unavailable"] == 1
    assert counts["malformed row in segment CSV"] == 3
    assert report.counts["total"].iloc[-1] == len(expected["kept"])
    work = tmp_path / "corpus" / "work"
    assert not list((work / "segments").glob("*.part"))         # partial downloads deleted
    assert len(list((work / "segments").glob("*.wav"))) == len(expected["kept"])

    # second run: finished items are not requested again; the failed lyrics succeed now
    client.calls.clear()
    again = _build(fixture_dir, tmp_path / "corpus", client, **OURS)
    calls = [c[0] for c in client.calls]
    assert "video_titles" not in calls
    assert calls.count("search_song") == 2                      # one 503 left, then success
    assert calls.count("download_audio") == 4                   # 3 broken ones + the new song
    failing = next(i for i, why in expected["dropped"].items() if why == "lyrics failed")
    assert failing in _ids(tmp_path / "corpus")
    assert again.counts["total"].iloc[-1] == len(expected["kept"]) + 1


def test_partial_download_is_never_done(fixture_dir, tmp_path):
    expected = json.loads((fixture_dir / "expected.json").read_text())
    client = FakeClient.from_json(fixture_dir / "fake_responses.json")
    import pandas as pd

    audio_failed = [i for i, why in expected["dropped"].items() if why == "audio failed"]
    segs = pd.DataFrame({"id": audio_failed,
                         "youtube_id": [i.rsplit("_", 1)[0] for i in audio_failed],
                         "start_seconds": 0.0, "end_seconds": 10.0})
    progress = ProgressLog(tmp_path / "audio.jsonl")
    counts = aset.download_segments(segs, client, tmp_path / "corpus", tmp_path / "work",
                                    progress, _policy(), profile="tiny", show_progress=False, audio="ours")
    assert counts["failed"] == 3 and counts["ok"] == 0
    assert not list((tmp_path / "work").rglob("*.wav*"))
    assert not (tmp_path / "corpus" / "audio").exists()


def test_keys_never_reach_progress_files(fixture_dir, tmp_path, monkeypatch):
    pytest.importorskip("langdetect")
    monkeypatch.setenv("GENIUS_ACCESS_TOKEN", "tok_SECRET_4242")

    class LeakyClient(FakeClient):
        def search_song(self, artist, title):
            raise NetError("HTTP 500 for https://api.genius.com/search?q=x&access_token="
                           "tok_SECRET_4242", status=500, retryable=True)

    client = LeakyClient.from_json(fixture_dir / "fake_responses.json")
    report = _build(fixture_dir, tmp_path / "corpus", client, attempts=2)
    text = (tmp_path / "corpus" / "work" / "lyrics_authors.jsonl").read_text()
    assert "tok_SECRET_4242" not in text and "access_token=***" in text
    assert "tok_SECRET_4242" not in report.summary()


def test_make_client_and_missing_langdetect(monkeypatch, fixture_dir):
    assert isinstance(aset.make_client("fake", fixture_dir / "fake_responses.json"), FakeClient)
    with pytest.raises(ValueError, match="canned_path"):
        aset.make_client("fake")
    with pytest.raises(ValueError, match="'web' or 'fake'"):
        aset.make_client("carrier pigeon")
    import builtins

    real_import = builtins.__import__

    def no_langdetect(name, *args, **kwargs):
        if name == "langdetect" or name.startswith("langdetect."):
            raise ImportError("no langdetect")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_langdetect)
    with pytest.raises(ImportError, match="pip install langdetect"):
        lyrics.english_probability("hello there")


def test_quota_exhaustion_stops_title_requests(tmp_path):
    import pandas as pd

    ids = [f"v{k:010d}" for k in range(120)]                      # three batches of <= 50
    client = FakeClient(titles={v: f"A{k} - S{k}" for k, v in enumerate(ids)},
                        errors={ids[50]: [403]})
    segs = pd.DataFrame({"id": [f"{v}_0" for v in ids], "youtube_id": ids})
    progress = ProgressLog(tmp_path / "titles.jsonl")
    counts = lyrics.fetch_titles(segs, client, progress, _policy(), show_progress=False)
    assert counts == {"done_before": 0, "ok": 50, "skipped": 0, "failed": 70}
    assert [c[0] for c in client.calls] == ["video_titles", "video_titles"]   # third not sent
    again = lyrics.fetch_titles(segs, client, ProgressLog(tmp_path / "titles.jsonl"), _policy(),
                              show_progress=False)
    assert again == {"done_before": 50, "ok": 70, "skipped": 0, "failed": 0}
