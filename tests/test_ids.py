"""Ids are data, not paths: every id read from a split, a published split, an AudioSet list or
the command line must be a safe name (:func:`utils.io.check_id`), and every path made from an id
stays inside its folder (:func:`utils.io.id_path`). Nothing is ever read or written outside."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from utils.config import EMOTIONS, GENRES, get_profile

BAD_IDS = ["../../outside/x", "/abs/x", "a/b", "", "..", ".", "a\\b", "x" * 65, "caf\u00e9", "a b", "a\x00b"]
GOOD_IDS = ["0009fFIM1eYThaPg", "dQw4w9WgXcQ", "-_aZ09-_aZ0", "dQw4w9WgXcQ_30000", "song-29", "a", "x" * 64]


def _files(root: Path, skip: Path | None = None) -> set[Path]:
    """Every file under ``root`` (outside ``skip``)."""
    return {p for p in root.rglob("*") if p.is_file() and (skip is None or skip not in p.parents)}


def _row(song_id: str, k: int = 0) -> dict:
    return {"id": song_id, "lyrics": "la la love you", "primary_short": GENRES[k % len(GENRES)],
            "emotion": EMOTIONS[k % len(EMOTIONS)], "valence": 0.5, "energy": 0.5}


def _write_split(corpus: Path, split: str, ids: list[str]) -> Path:
    corpus.mkdir(parents=True, exist_ok=True)
    path = corpus / f"{split}.jsonl"
    path.write_text("".join(json.dumps(_row(i, k)) + "\n" for k, i in enumerate(ids)), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the one pattern
def test_check_id_accepts_every_id_the_project_makes():
    from utils.dataset_related.fixtures import _unique_ids
    from utils.dataset_related.synth import _song_id
    from utils.io import check_id

    made = GOOD_IDS + _unique_ids(np.random.default_rng(0), 20) + [_song_id(np.random.default_rng(k)) for k in range(20)]
    assert [check_id(i, "test") for i in made] == made


@pytest.mark.parametrize("bad", BAD_IDS + [None, 5, b"abc"])
def test_check_id_refuses_names_the_id_and_where_it_came_from(bad):
    from utils.io import check_id, is_safe_id

    assert not is_safe_id(bad)
    with pytest.raises(ValueError, match=re.escape(f"somefile.jsonl:3: id {bad!r}")):
        check_id(bad, "somefile.jsonl:3")


def test_id_path_stays_inside_its_folder(tmp_path):
    from utils.io import id_path

    assert id_path(tmp_path, "abc", ".npy") == tmp_path / "abc.npy"
    assert id_path(tmp_path, "abc") == tmp_path / "abc"
    for bad in BAD_IDS:
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            id_path(tmp_path, bad, ".npy", source="test")
    for suffix in ("/../../x.npy", "/x", "\\..\\x"):
        with pytest.raises(ValueError, match="suffix"):
            id_path(tmp_path, "abc", suffix)


def test_one_pattern_defined_once():
    """The safe-id pattern lives in utils.io only; nothing else compiles its own copy."""
    root = Path(__file__).resolve().parents[1] / "utils"
    copies = [str(p.relative_to(root)) for p in root.rglob("*.py")
              if "A-Za-z0-9_-]{1,64}" in p.read_text(encoding="utf-8") and p.name != "io.py"]
    assert copies == []


# ---------------------------------------------------------------- split files
@pytest.mark.parametrize("bad", BAD_IDS)
def test_split_file_refuses_path_ids(tmp_path, bad):
    from utils.dataset_related.extract import read_split_records
    from utils.dataset_related.splits import read_split

    path = _write_split(tmp_path / "corpus", "train", ["good1", bad, "good2"])
    where = re.escape(f"{path}:2: id {bad!r}")
    with pytest.raises(ValueError, match=where):
        read_split(tmp_path / "corpus", "train")
    with pytest.raises(ValueError, match=where):
        read_split(tmp_path / "corpus", "train", skip_bad=True)
    if bad.strip():          # read_split_records already refuses an empty id
        with pytest.raises(ValueError, match=re.escape(f"{path}:2: id {bad.strip()!r}")):
            read_split_records(tmp_path / "corpus", "train")


@pytest.mark.parametrize("kind", ["relative", "absolute"])
@pytest.mark.parametrize("songs", ["train", "list"])
def test_extract_features_reads_and_writes_nothing_outside_the_corpus(tmp_path, kind, songs):
    """The reported fault: an id ``../../outside/x`` read ``outside/x.wav`` and wrote ``outside/x.npy``."""
    from utils.dataset_related.extract import extract_features

    profile = get_profile("tiny")
    outside = tmp_path / "outside"
    outside.mkdir()
    tone = 0.1 * np.sin(np.linspace(0, 2000, profile.clip_length)).astype(np.float32)
    sf.write(str(outside / "x.wav"), tone, profile.audio.sample_rate)
    bad = "../../outside/x" if kind == "relative" else str(outside / "x")
    corpus = tmp_path / "corpus"
    _write_split(corpus, "train", [bad])
    (corpus / "audio").mkdir()
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        extract_features(corpus, "train" if songs == "train" else [bad], profile, device="cpu",
                         skip_bad=False, show_progress=False)
    assert not (outside / "x.npy").exists()
    assert _files(tmp_path) == before


def test_feature_files_refuse_path_ids(tmp_path):
    from utils.dataset_related.features import find_audio, load_features, save_features

    features = tmp_path / "corpus" / "features"
    with pytest.raises(ValueError, match=re.escape("'../../outside/x'")):
        save_features(features, ["ok", "../../outside/x"], np.zeros((2, 3, 4), dtype=np.float32))
    assert not (tmp_path / "outside").exists() and not list(tmp_path.rglob("*.npy"))
    np.save(tmp_path / "x.npy", np.zeros((3, 4), dtype=np.float32))
    sf.write(str(tmp_path / "x.wav"), np.zeros(1600, dtype=np.float32), 16_000)
    with pytest.raises(ValueError, match=re.escape("'../x'")):
        load_features(features, "../x")
    with pytest.raises(ValueError, match=re.escape("'../x'")):
        find_audio(tmp_path / "corpus" / "audio", "../x")


def test_oracle_stems_refuse_path_ids(tmp_path):
    from utils.musiclime.separation import OracleSeparator

    (tmp_path / "corpus").mkdir()
    for bad in ("../../outside/x", "/abs/x", ".."):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            OracleSeparator(tmp_path / "corpus").stem_files(bad)


# ---------------------------------------------------------------- the published split
def test_published_split_drops_path_ids_and_writes_nothing_outside(tmp_path):
    from utils.dataset_related.music4all_published import import_published_split

    raw, out = tmp_path / "pub", tmp_path / "work" / "corpus"
    (raw / "split").mkdir(parents=True)
    (raw / "spectrograms").mkdir()
    good = [f"good{k}" for k in range(6)]
    for split, ids in (("train", good[:4] + BAD_IDS[:5]), ("val", good[4:5]), ("test", good[5:])):
        (raw / "split" / f"{split}.jsonl").write_text("".join(json.dumps(_row(i, k)) + "\n"
                                                              for k, i in enumerate(ids)), encoding="utf-8")
    for song_id in good:
        np.save(raw / "spectrograms" / f"{song_id}.npy", np.zeros((1, 400, 32), dtype=np.float32))
    (tmp_path / "outside").mkdir()
    np.save(tmp_path / "outside" / "x.npy", np.zeros((1, 400, 32), dtype=np.float32))
    before = _files(tmp_path)
    report = import_published_split(raw / "split", out, spectrogram_dir=raw / "spectrograms", profile="tiny",
                                    show_progress=False)
    unsafe = report.problems["dropped: missing or unsafe id"]
    assert len(unsafe) == 5 and all(repr(bad) in " ".join(unsafe) for bad in BAD_IDS[:5])
    assert _files(tmp_path, skip=out) == before
    assert sorted(p.stem for p in (out / "features").glob("*.npy")) == good


# ---------------------------------------------------------------- AudioSet
def test_audioset_list_refuses_path_ids(tmp_path):
    from utils.dataset_related.audioset_selection import read_segments

    rows = ["# comment", 'dQw4w9WgXcQ, 30.000, 40.000, "/m/064t9"']
    rows += [f'{bad}, 0.000, 10.000, "/m/064t9"' for bad in ("../../outside/x", "/abs/x", "a/b", "..", "")]
    (tmp_path / "segments.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    segments, bad = read_segments(tmp_path / "segments.csv")
    assert list(segments["youtube_id"]) == ["dQw4w9WgXcQ"]
    assert len(bad) == 5 and "'../../outside/x'" in bad[0]


class _RecordingClient:
    """A client that records its downloads and writes a valid WAV where it is told to."""

    def __init__(self):
        self.calls = []

    def download_audio(self, youtube_id, start, end, part, limiter=None):
        self.calls.append((youtube_id, Path(part)))
        sf.write(str(part), np.zeros(16_000 * 10, dtype=np.float32), 16_000, format="WAV")


@pytest.mark.parametrize("bad", ["../../outside/x", "/abs/x", "a/b", ".."])
def test_audioset_download_refuses_path_ids_before_any_download(tmp_path, bad):
    from utils.dataset_related.audioset import download_segments
    from utils.dataset_related.net import ProgressLog, RetryPolicy

    segments = pd.DataFrame({"id": ["dQw4w9WgXcQ_0", bad], "youtube_id": ["dQw4w9WgXcQ", "dQw4w9WgXcQ"],
                             "start_seconds": [0.0, 0.0], "end_seconds": [10.0, 10.0]})
    client = _RecordingClient()
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        download_segments(segments, client, tmp_path / "a" / "corpus", tmp_path / "a" / "work",
                          ProgressLog(tmp_path / "a" / "audio.jsonl"),
                          RetryPolicy(attempts=1, base_delay=0.0, sleep=lambda s: None), show_progress=False)
    assert client.calls == [] and _files(tmp_path) == before


# ---------------------------------------------------------------- the command line
@pytest.mark.parametrize("bad", ["../../outside/x", "/abs/x", "a/b", ".."])
def test_global_run_cli_refuses_a_split_with_path_ids(tmp_path, bad):
    from utils.global_run import main

    path = _write_split(tmp_path / "corpus", "test", ["good1", bad])
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: id {bad!r}")):
        main(["--kind", "lyrics", "--corpus-dir", str(tmp_path / "corpus"), "--run-dir", str(tmp_path / "runs"),
              "--records", str(tmp_path / "out" / "r.jsonl"), "--no-progress"])
    assert _files(tmp_path) == before


def test_run_global_refuses_items_with_path_ids(tmp_path):
    from utils.musiclime.global_explain import run_global

    calls = []
    with pytest.raises(ValueError, match=re.escape("item 1: id '../x'")):
        run_global([{"id": "ok"}, {"id": "../x"}], lambda item: calls.append(item) or {}, tmp_path / "r.jsonl",
                   progress=False)
    assert calls == []


def test_sanity_cache_paths_stay_in_their_folder(tmp_path):
    from utils.musiclime.sanity import CueCheck, _cache_path

    check = CueCheck("multimodal", "both", ("audio",))
    path = _cache_path(tmp_path, check, "song-1", 3, {"n": 10}, "abc")
    assert path.name == "song-1_3.json" and path.parent.parent == tmp_path
    with pytest.raises(ValueError, match=re.escape("'../../x'")):
        _cache_path(tmp_path, check, "../../x", 3, {"n": 10}, "abc")
