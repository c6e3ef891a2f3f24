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


# ================================================================== the authors' recipe
from utils.dataset_related import audioset_authors as authors  # noqa: E402


def test_recipe_file_holds_the_authors_patterns_as_python_reads_them():
    recipe = authors.load_authors_recipe()
    patterns = recipe["title_patterns"]["patterns"]
    assert len(patterns) == 98 and len(set(patterns)) == 90
    assert patterns[:5] == [r"\(with lyrics\)", "lyrics", "official video", "audio", r"ft\.?"]
    assert patterns[-3:] == [r"\(high quality\)", r"\(\s?\d{4}\s?\)", r"\(\d{4}\)"]
    # two missing commas in their list: adjacent literals joined into one pattern
    assert r"\(Official Video Clip\)\(Official Video 2012\)" in patterns
    assert r"\[Original Techno \+ LYRICS ON SCREEN\]lyrics \(HQ\)" in patterns
    assert recipe["classes"]["names"]["rhythm and blues"] == "rhythm music"
    assert set(recipe["classes"]["names"].values()) == set(AUDIOSET_GENRES) - {"heavy music"}


@pytest.mark.parametrize("title,expected", [
    ("song number 12 (official video) [hd]", "song number 12 () []"),
    ("Stronger (2007)", "Stronger"),
    ("Take Care ( 2011 )", "Take Care"),
    ("Lose Yourself.mp4", "Lose Yourself"),
    ("Soft Rain", "So Rain"),                 # unanchored: "ft" removed inside a word
    ("Audioslave Cover HQ", "slave Cover"),
    ("Bangarang prod. by Skrillex", "Bangarang"),
    ("HD", ""),
])
def test_clean_title_authors(title, expected):
    assert authors.clean_title_authors(title) == expected


@pytest.mark.parametrize("title,expected", [
    ("Drake ft. Rihanna - Take Care (Lyrics)", ("drake ft. rihanna", "take care ()")),   # artist only lower-cased
    ("► Skrillex - Bangarang [HD 1080p] ♫", ("► skrillex", "bangarang [ 1080p]")),
    ('Johnny Cash "Hurt"', ("johnny cash", "hurt")),
    ("Band 4 - Song feat. Someone (prod. by DJ Test).mp4", ("band 4", "song  someone ( test)")),
    ("my band practice 2012", None),          # no separator
    ("Some Artist - Official Video HD", None),  # the song cleans to nothing
    (" - Lyrics", None),
])
def test_split_artist_song_authors(title, expected):
    assert authors.split_artist_song_authors(title) == expected


@pytest.fixture(scope="module")
def label_table(fixture_dir):
    return authors.read_label_indices(fixture_dir / "class_labels_indices.csv")


def test_label_ids_substring_case_insensitive_and_unknown_names(label_table, tmp_path):
    assert authors.label_ids(label_table, "pop") == ["/m/064t9", "/m/07qsvvw"]          # Pop music, "Burst, pop"
    assert authors.label_ids(label_table, "ROCK") == ["/m/06by7", "/m/05r6t", "/m/0dl5d", "/m/07sbbz2", "/m/05w3f"]
    assert authors.label_ids(label_table, "blues") == ["/m/06j6l", "/m/0155w"]
    assert authors.label_ids(label_table, "blues", exact=True) == ["/m/0155w"]
    with pytest.raises(ValueError, match=r"'rhythm & blues'.*class_labels_indices.csv"):
        authors.label_ids(label_table, "rhythm & blues")
    bad = tmp_path / "labels.csv"
    bad.write_text("id,name\n1,x\n")
    with pytest.raises(ValueError, match="index, mid, display_name"):
        authors.read_label_indices(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        authors.read_label_indices(tmp_path / "nowhere.csv")


def _segments(rows):
    import pandas as pd

    return pd.DataFrame({"youtube_id": [r[0] for r in rows], "start_seconds": 10.0, "end_seconds": 20.0,
                         "labels": [r[1].split(",") for r in rows], "source": "x.csv"})


def test_select_segments_authors_rules(label_table):
    rows = [("aaaaaaaaaa1", "/m/04rlf,/m/06by7,/m/03lty"),   # rock list, holds heavy metal -> heavy music
            ("aaaaaaaaaa2", "/m/04rlf,/m/05r6t"),            # "Punk rock" holds "rock" -> rock
            ("aaaaaaaaaa3", "/m/03lty"),                     # heavy metal alone: in no list
            ("aaaaaaaaaa4", "/m/01lyv,/m/02w4v"),            # country + folk lists, both folk -> folk once
            ("aaaaaaaaaa5", "/m/0n8zsc8"),                   # trap: no tree walk, in no list
            ("aaaaaaaaaa6", "/m/064t9,/m/06by7"),            # pop and rock lists -> several classes
            ("aaaaaaaaaa7", "/m/064t9,/m/0155w"),            # pop + blues -> blacklisted
            ("aaaaaaaaaa8", "/m/07qsvvw"),                   # "Burst, pop" -> pop, as the tool does
            ("aaaaaaaaaa9", "/m/02lkt,/m/0m0jc")]            # electronic music + electronica: listed twice
    kept, lists, problems, counts = authors.select_segments_authors(_segments(rows), label_table)
    assert dict(zip(kept["youtube_id"], kept["primary_short"])) == {
        "aaaaaaaaaa1": "heavy music", "aaaaaaaaaa2": "rock", "aaaaaaaaaa4": "folk",
        "aaaaaaaaaa8": "pop", "aaaaaaaaaa9": "electronic"}
    assert lists["electronic"]["youtube_id"].tolist() == ["aaaaaaaaaa9", "aaaaaaaaaa9"]
    assert lists["rock"]["youtube_id"].tolist() == ["aaaaaaaaaa1", "aaaaaaaaaa2", "aaaaaaaaaa6"]
    assert lists["pop"]["youtube_id"].tolist() == ["aaaaaaaaaa6", "aaaaaaaaaa8"]       # 7 blacklisted
    assert problems["blacklisted class among labels"] == ["aaaaaaaaaa7_10000"]
    assert problems["listed under several classes"] == ["aaaaaaaaaa6_10000 (pop, rock)"]
    assert problems["listed again in the same class"] == ["aaaaaaaaaa4_10000 (folk)",      # after country
                                                          "aaaaaaaaaa9_10000 (electronic)"]
    assert counts.table()["total"].tolist() == [9, 7, 5, 5]
    with pytest.raises(ValueError, match="'Blues' -> /m/06j6l"):       # substring blacklist eats R&B
        authors.select_segments_authors(_segments(rows), label_table, blacklist=["Blues"], blacklist_exact=False)
    with pytest.raises(ValueError, match="'polka'"):
        authors.select_segments_authors(_segments(rows), label_table, classes={"polka": "pop"})


SELECTION_COUNTS = {
    # segments selected from the fixture (after one segment per video), per class
    "authors": {"electronic": 4, "folk": 3, "heavy music": 4, "hip hop": 3, "pop": 5, "rhythm music": 4,
                "rock": 4, "total": 27},
    "ontology": {"electronic": 5, "folk": 4, "heavy music": 6, "hip hop": 4, "pop": 4, "rhythm music": 4,
                 "rock": 4, "total": 31},
}


@pytest.mark.parametrize("selection", ["authors", "ontology"])
def test_selection_counts_on_the_fixture(fixture_dir, selection, tmp_path):
    segments, bad = selection_module_read(fixture_dir)
    kept, problems, counts = aset.select(segments, selection, fixture_dir / "class_labels_indices.csv",
                                         fixture_dir / "ontology.json", lists_dir=tmp_path / "lists")
    expected = json.loads((fixture_dir / "expected.json").read_text())
    last = counts.table().iloc[-1].to_dict()
    assert last.pop("other", 0) == 0 and last == SELECTION_COUNTS[selection]
    key = "classes_authors" if selection == "authors" else "classes"
    for seg_id, cls in zip(kept["id"], kept["primary_short"]):
        assert expected[key].get(seg_id, cls) == cls
    if selection == "authors":
        assert sorted(p.name for p in (tmp_path / "lists").iterdir()) == [
            "country.csv", "electronic.csv", "folk.csv", "hip_hop.csv", "jazz.csv", "pop.csv", "reggae.csv",
            "rhythm_and_blues.csv", "rock.csv"]
        # 2 x Electronic music, one row twice (Electronica too), Electronic organ
        assert len((tmp_path / "lists" / "electronic.csv").read_text().splitlines()) == 5


def selection_module_read(fixture_dir):
    return selection.read_segments([fixture_dir / "balanced_train_segments.csv", fixture_dir / "eval_segments.csv"])


def test_lyricfind_page_parsing():
    def page(data):
        return f'<html><script id="__NEXT_DATA__" type="application/json">{data}</script></html>'

    good = {"props": {"pageProps": {"songData": {"track": {"lyrics": "line one\nline two"}}}}}
    assert authors.parse_lyricfind_page(page(json.dumps(good))) == "line one\nline two"
    assert authors.parse_lyricfind_page(page(json.dumps({"props": {"pageProps": {}}}))) is None
    empty = {"props": {"pageProps": {"songData": {"track": {"lyrics": "  "}}}}}
    assert authors.parse_lyricfind_page(page(json.dumps(empty))) is None
    assert authors.parse_lyricfind_page(page("{not json")) is None
    assert authors.parse_lyricfind_page("<html><body>Not found</body></html>") is None
    assert authors.lyricfind_slug("The Prodigy", "Smack My Bitch Up") == "the-prodigy-smack-my-bitch-up"


def test_genius_rules_of_the_authors():
    assert authors.same_song_authors("j. cole", "no role modelz ()", "J. Cole", "No Role Modelz")
    assert authors.same_song_authors("j cole", "middle child", "J.\u200b Cole", "Middle Child")
    assert not authors.same_song_authors("bob marley & the wailers", "is this love",
                                         "Bob Marley and The Wailers", "Is This Love")   # "&" is not "and"
    assert not authors.same_song_authors("drake", "care", "Drake", "Take Care")          # hit title not in ours
    raw = "5 ContributorsHurt Lyrics[Verse 1]\nI hurt myself today\n[Chorus]\nWhat have I become\n12Embed"
    assert authors.clean_genius_lyrics_authors(raw) == "I hurt myself today\nWhat have I become"


# ------------------------------------------------------------------ the authors' lyrics sources, faked network
def _lyrics_client(**errors):
    def page(text):
        data = {"props": {"pageProps": {"songData": {"track": {"lyrics": text}}}}}
        return f'<script id="__NEXT_DATA__">{json.dumps(data)}</script>'

    english = "I walk alone down this empty road tonight\nyou said that you would never leave me"
    return FakeClient(
        pages={"a-one": page(english), "a-two": page(""), "a-three": page(english), "a-five": "<html>blocked</html>"},
        songs={f"a|{s}": {"artist": "A", "title": s.title(), "lyrics": f"{s} Lyrics\n[Verse]\n{english}\n3Embed"}
               for s in ("two", "three", "four")},
        errors={k.replace("_", "|"): v for k, v in errors.items()})


def test_fetch_lyrics_lyricfind_first_then_genius(tmp_path):
    pytest.importorskip("langdetect")
    import pandas as pd

    songs = pd.DataFrame({"id": ["s1", "s2", "s3", "s4", "s5"], "artist": "a",
                          "song": ["one", "two", "three", "four", "five"]})
    client = _lyrics_client(**{"lyricfind_a-one": [429], "lyricfind_a-three": [503] * 4})
    progress = ProgressLog(tmp_path / "lyrics.jsonl")
    counts = lyrics.fetch_lyrics(songs, client, progress, _policy(), show_progress=False)
    assert counts == {"done_before": 0, "ok": 4, "skipped": 0, "failed": 1}
    source = {i: progress.result(i)["source"] for i in ("s1", "s2", "s3", "s4")}
    assert source == {"s1": "lyricfind", "s2": "genius", "s3": "genius", "s4": "genius"}
    assert progress.result("s2")["outcomes"] == {"lyricfind": "page without lyrics", "genius": "ok"}
    assert progress.result("s3")["outcomes"] == {"lyricfind": "failed", "genius": "ok"}
    assert progress.result("s2")["lyrics"].startswith("I walk alone") and "Embed" not in progress.result("s2")["lyrics"]
    # a page without the JSON at all (blocked?) and no Genius hit: failed, asked again next run
    assert progress.records["s5"]["error"].startswith("NetError: LyricFind failed, Genius no result: ")
    table = lyrics.lyrics_outcome_counts(progress, songs["id"])
    assert table.loc["lyricfind"].to_dict()["no page"] == 1 and table.loc["lyricfind", "failed"] == 2
    assert table.loc["lyricfind", "ok"] == 1 and table.loc["genius", "ok"] == 3
    assert table.loc["lyricfind", "page without lyrics"] == 1 and table.loc["genius", "no result"] == 1


def test_fetch_lyrics_nothing_found_is_skipped(tmp_path):
    pytest.importorskip("langdetect")
    import pandas as pd

    progress = ProgressLog(tmp_path / "lyrics.jsonl")
    songs = pd.DataFrame({"id": ["s6"], "artist": "a", "song": ["six"]})
    assert lyrics.fetch_lyrics(songs, _lyrics_client(), progress, _policy(), show_progress=False)["skipped"] == 1
    assert progress.records["s6"]["error"] == "LyricFind no page, Genius no result"
    assert progress.result("s6") == {"outcomes": {"lyricfind": "no page", "genius": "no result"}}


def test_fetch_lyrics_failures_are_counted_and_retried(tmp_path):
    pytest.importorskip("langdetect")
    import pandas as pd

    songs = pd.DataFrame({"id": ["s4"], "artist": "a", "song": ["four"]})
    client = _lyrics_client(**{"lyricfind_a-four": [500] * 4, "a_four": [429] * 4})
    progress = ProgressLog(tmp_path / "lyrics.jsonl")
    assert lyrics.fetch_lyrics(songs, client, progress, _policy(), show_progress=False)["failed"] == 1
    assert progress.records["s4"]["error"].startswith("NetError: LyricFind failed, Genius failed: ")
    table = lyrics.lyrics_outcome_counts(progress, ["s4"])
    assert table.loc["lyricfind", "failed"] == 1 and table.loc["genius", "failed"] == 1
    again = lyrics.fetch_lyrics(songs, client, ProgressLog(tmp_path / "lyrics.jsonl"), _policy(), show_progress=False)
    assert again == {"done_before": 0, "ok": 1, "skipped": 0, "failed": 0}

    class EmptyGeniusPage(FakeClient):      # WebClient raises this when a Genius page holds no text
        def search_song(self, artist, title):
            raise NetError(f"Genius page for {artist!r} - {title!r} gave no lyrics")

    progress = ProgressLog(tmp_path / "empty.jsonl")
    assert lyrics.fetch_lyrics(songs, EmptyGeniusPage(), progress, _policy(), show_progress=False)["failed"] == 1
    assert "gave no lyrics" in progress.records["s4"]["error"]


# ------------------------------------------------------------------ the authors' segments
def test_segment_span_and_mp3_segments(fixture_dir, tmp_path):
    import pandas as pd

    assert aset.segment_span(30.0, 40.0) == (30.0, 41.0)
    assert aset.segment_span(30.5, 40.5) == (30.5, 41.0)
    assert aset.segment_span(30.0, 40.0, "ours") == (30.0, 40.0)
    with pytest.raises(ValueError, match="audio must be one of"):
        aset.segment_span(0.0, 1.0, "theirs")
    client = FakeClient(audio={"aaaaaaaaaaa": "ok", "bbbbbbbbbbb": "partial"})
    segs = pd.DataFrame({"id": ["aaaaaaaaaaa_30000", "bbbbbbbbbbb_0"], "youtube_id": ["aaaaaaaaaaa", "bbbbbbbbbbb"],
                         "start_seconds": [30.0, 0.0], "end_seconds": [40.0, 10.0]})
    progress = ProgressLog(tmp_path / "audio.jsonl")
    counts = aset.download_segments(segs, client, tmp_path / "corpus", tmp_path / "work", progress, _policy(),
                                    profile="tiny", show_progress=False)
    assert counts["ok"] == 1 and counts["failed"] == 1
    info = sf.info(str(tmp_path / "work" / "segments" / "aaaaaaaaaaa_30000.mp3"))
    assert info.format == "MP3" and info.frames / info.samplerate == pytest.approx(11.0, abs=0.05)
    clip = sf.info(str(tmp_path / "corpus" / "audio" / "aaaaaaaaaaa_30000.wav"))
    assert clip.frames == get_profile("tiny").clip_length and clip.samplerate == get_profile("tiny").audio.sample_rate


def test_pipeline_the_authors_way_keeps_the_expected_segments_and_resumes(fixture_dir, tmp_path):
    pytest.importorskip("langdetect")
    expected = json.loads((fixture_dir / "expected.json").read_text())
    client = FakeClient.from_json(fixture_dir / "fake_responses.json")
    report = _build(fixture_dir, tmp_path / "corpus", client)
    assert _ids(tmp_path / "corpus") == expected["kept_authors"]
    table = [json.loads(line) for line in (tmp_path / "corpus" / "segments.jsonl").read_text().splitlines()]
    assert {r["id"]: r["lyrics_source"] for r in table} == expected["lyrics_source_authors"]
    rows = [json.loads(line) for s in ("train", "val", "test")
            for line in (tmp_path / "corpus" / f"{s}.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["primary_short"] == expected["classes_authors"][r["id"]]
    counts = report.problem_counts()
    assert counts["lyrics: LyricFind no page, Genius another song"] == 4      # 3 "ft. Guest" artists + wrong match
    assert counts["lyrics: failed after retries (re-run retries it)"] == 1
    assert counts["title not of the form artist - song"] == 1
    assert counts["listed under several classes"] == 1 and counts["listed again in the same class"] == 1
    assert report.counts["total"].iloc[-1] == len(expected["kept_authors"]) == 14
    segments = sorted((tmp_path / "corpus" / "work" / "segments").glob("*.mp3"))
    assert len(segments) == 14 and (tmp_path / "corpus" / "work" / "class_lists" / "rock.csv").exists()

    client.calls.clear()
    again = _build(fixture_dir, tmp_path / "corpus", client)
    calls = [c[0] for c in client.calls]
    assert "video_titles" not in calls and calls.count("lyricfind_page") == 1
    assert again.counts["total"].iloc[-1] == 15
