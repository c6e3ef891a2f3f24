"""The authors' published M4A release imported as published (utils.dataset_related.music4all_published).

The fixture (utils.dataset_related.fixtures_published) is their exact layout: final_split/*.json
(JSON lines), spectogram_pikles/batch_*.pkl (plain pickle.dump of {id: FloatTensor}),
tokenized_texts.json, audios/ and new_audios/ (Spotify-added songs, id == spotify_id). Its
spectrograms have 64 frames (the profile is told), for speed.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import json
import os
import pickle
import pickletools
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from utils.config import get_profile
from utils.dataset_related.fixtures_published import write_published_fixture
from utils.dataset_related.music4all_published import find_split_file, import_counts, import_published_split
from utils.dataset_related.published_spectrograms import ALLOWED_GLOBALS, load_batch, load_npy
from utils.dataset_related.safe_pickle import MalformedPickleError, UnsafePickleError
from utils.dataset_related.splits import SongDataset, read_split
from utils.dataset_related.text import TOKEN_FILE, load_tokenizer
from utils.model_related.inputs import prepare_tokens

FRAMES = 64
DROPPED = {"malformed line in split file": 1, "duplicate id": 1, "unknown genre class": 1,
           "unknown emotion class": 1, "lyrics empty": 1, "missing or unsafe id": 1,
           "no tokens in tokenized_texts.json": 1, "audio and spectrogram both missing": 1}


def _profile(release):
    """The paper profile told the fixture's frames, with the fixture's stand-in for roberta-large."""
    paper = get_profile("paper")
    vocab = len(load_tokenizer(release / "tokenizer"))
    return dataclasses.replace(paper, audio=dataclasses.replace(paper.audio, max_length=FRAMES),
                               model=dataclasses.replace(paper.model, tokenizer_source=str(release / "tokenizer"),
                                                         vocab_size=vocab))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("published_release")
    release = write_published_fixture(root / "release", spectrogram_shape=(1, FRAMES, 128), audio_seconds=1.0)
    profile = _profile(release)
    report = import_published_split(release, root / "corpus", profile=profile, show_progress=False)
    return release, root / "corpus", profile, report


def _copy_text_parts(release, to):
    """The split files and the token file of ``release`` in a new release folder ``to``."""
    shutil.copytree(release / "final_split", to / "final_split")
    shutil.copy(release / TOKEN_FILE, to / TOKEN_FILE)
    return to


def _records(release):
    rows = {}
    for split in ("train", "val", "test"):
        for line in (release / "final_split" / f"{split}.json").read_text().splitlines():
            try:
                rows.setdefault(json.loads(line)["id"], json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


# ---------------------------------------------------------------- counts
def test_every_line_is_imported_or_dropped_with_a_reason(imported):
    release, corpus, _, report = imported
    expected = json.loads((release / "expected.json").read_text())
    counts = import_counts(report)
    assert counts == {"imported": 30, "per_split": {"train": 12, "val": 9, "test": 9}, "dropped": DROPPED}
    assert counts["imported"] + sum(counts["dropped"].values()) == expected["lines"] == 38
    for split, ids in expected["imported"].items():
        assert list(read_split(corpus, split)["id"]) == ids
    for reason, items in expected["dropped"].items():
        assert any(items[0] in str(x) for x in report.problems["dropped: " + reason]), reason
    assert inspect.signature(import_published_split).parameters["profile"].default == "paper"


def test_spotify_songs_come_with_their_audio_from_new_audios(imported):
    release, corpus, profile, _ = imported
    expected = json.loads((release / "expected.json").read_text())
    imported_ids = {i for ids in expected["imported"].values() for i in ids}
    assert len(expected["spotify"]) == 6 and set(expected["spotify"]) <= imported_ids
    for song_id in expected["spotify"]:
        assert len(song_id) == 22 and (release / "new_audios" / f"{song_id}.mp3").is_file()
        assert not (release / "audios" / f"{song_id}.mp3").exists()
        assert sf.info(str(corpus / "audio" / f"{song_id}.wav")).frames == profile.clip_length
    no_spectrogram = next(i for i, why in expected["kept_with_defects"].items() if why.startswith("Spotify"))
    assert no_spectrogram in imported_ids and not (corpus / "features" / f"{no_spectrogram}.npy").exists()


def test_lyrics_tokens_and_spectrograms_as_published(imported):
    release, corpus, _, _ = imported
    source, records = json.loads((release / TOKEN_FILE).read_text()), _records(release)
    given = json.loads((corpus / TOKEN_FILE).read_text())
    ids = [i for split in ("train", "val", "test") for i in read_split(corpus, split)["id"]]
    assert sorted(given) == sorted(ids) and all(given[i] == source[i] for i in ids)
    for split in ("train", "val", "test"):
        for row in read_split(corpus, split).itertuples():
            assert row.lyrics == records[row.id]["lyrics"]             # their text, unchanged
    features = {p.stem: np.load(p, allow_pickle=False) for p in (corpus / "features").glob("*.npy")}
    assert len(features) == 28 and all(a.shape == (FRAMES, 128) and a.dtype == np.float32
                                       for a in features.values())
    batch = load_batch(release / "spectogram_pikles" / "batch_0.pkl")
    for key, tensor in batch.items():
        if key in features:
            assert np.array_equal(features[key], tensor[0])


def test_converted_npy_spectrograms_give_the_same_features(imported, tmp_path):
    release, corpus, profile, _ = imported
    converted = _copy_text_parts(release, tmp_path / "converted")
    (converted / "spectrograms").mkdir()
    for path in sorted((release / "spectogram_pikles").glob("batch_*.pkl")):   # their notebook's conversion
        for key, [spectrogram] in load_batch(path).items():
            if "/" not in key:
                np.save(converted / "spectrograms" / f"{key}.npy", spectrogram)
    report = import_published_split(converted, tmp_path / "corpus", spectrogram_dir=converted / "spectrograms",
                                     profile=profile, show_progress=False)
    counts = import_counts(report)           # no audio given: the songs without a spectrogram go too
    assert counts["imported"] == 28 and counts["dropped"]["audio and spectrogram both missing"] == 3
    for path in (tmp_path / "corpus" / "features").glob("*.npy"):
        assert np.array_equal(np.load(path), np.load(corpus / "features" / path.name))


def test_require_audio_drops_spectrogram_only_songs(imported, tmp_path):
    release, _, profile, _ = imported
    report = import_published_split(release, tmp_path / "corpus", profile=profile, require_audio=True,
                                    show_progress=False)
    counts = import_counts(report)
    assert counts["imported"] == 28 and counts["dropped"]["audio missing or unreadable"] == 3
    kept = {i for s in ("train", "val", "test") for i in read_split(tmp_path / "corpus", s)["id"]}
    assert not [p for p in (tmp_path / "corpus" / "features").glob("*.npy") if p.stem not in kept]


# ---------------------------------------------------------------- errors name the id
def test_a_wrong_spectrogram_shape_names_the_id(imported, tmp_path):
    release, _, profile, _ = imported
    full = dataclasses.replace(profile, audio=dataclasses.replace(profile.audio, max_length=1024))
    first = next(iter(load_batch(release / "spectogram_pikles" / "batch_0.pkl")))
    with pytest.raises(ValueError, match=f"id '{first}': spectrogram of shape \\({FRAMES}, 128\\)"):
        import_published_split(release, tmp_path / "corpus", profile=full, show_progress=False)


@pytest.mark.parametrize("defect, message", [("vocabulary", "outside the"), ("length", "has 255 tokens")])
def test_a_bad_token_row_names_the_id(imported, tmp_path, defect, message):
    release, _, profile, _ = imported
    bad = _copy_text_parts(release, tmp_path / "release")
    tokens = json.loads((bad / TOKEN_FILE).read_text())
    song_id = read_split(imported[1], "val")["id"][2]
    if defect == "vocabulary":
        tokens[song_id]["input_ids"][3] = profile.model.vocab_size
    else:
        tokens[song_id] = {k: v[:-1] for k, v in tokens[song_id].items()}
    (bad / TOKEN_FILE).write_text(json.dumps(tokens))
    with pytest.raises(ValueError, match=f"id '{song_id}'.*{message}"):
        import_published_split(bad, tmp_path / "corpus", profile=profile, show_progress=False)


# ---------------------------------------------------------------- the token file, as it is
def test_the_paper_profile_trains_on_the_given_tokens_as_they_are(imported, tmp_path):
    _, corpus, profile, _ = imported
    work = tmp_path / "corpus"
    shutil.copytree(corpus, work)
    tokens = json.loads((work / TOKEN_FILE).read_text())
    frame = read_split(work, "train")
    song_id = frame["id"][0]
    tokens[song_id]["input_ids"][1:4] = [7, 8, 9]       # not what re-tokenising its lyrics would give
    (work / TOKEN_FILE).write_text(json.dumps(tokens))
    cache = prepare_tokens(profile, work)
    assert cache.preprocessing == "authors" and cache.max_tokens == 256 and len(cache.given) == 30
    dataset = SongDataset(frame, work, profile, "genre", "lyrics", tokens=cache)
    assert dataset[0]["input_ids"].tolist() == tokens[song_id]["input_ids"]
    assert dataset[0]["attention_mask"].tolist() == tokens[song_id]["attention_mask"]
    assert cache(list(frame["lyrics"][:1]))["input_ids"][0, 1:4].tolist() != [7, 8, 9]
    del tokens[song_id]
    (work / TOKEN_FILE).write_text(json.dumps(tokens))
    with pytest.raises(ValueError, match=f"no tokens for id '{song_id}'"):
        SongDataset(frame, work, profile, "genre", "lyrics", tokens=prepare_tokens(profile, work))
    tokens[frame["id"][1]]["input_ids"][0] = 10 ** 6
    (work / TOKEN_FILE).write_text(json.dumps(tokens))
    with pytest.raises(ValueError, match=f"id '{frame['id'][1]}': token id 1000000 outside"):
        prepare_tokens(profile, work)


def test_the_paper_profile_is_256_tokens_of_preprocessed_text():
    paper, tiny = get_profile("paper"), get_profile("tiny")
    assert paper.model.max_tokens == 256 and paper.model.text_preprocessing == "authors"
    assert tiny.model.text_preprocessing == "none"


# ---------------------------------------------------------------- spectrogram pickles, read safely
class _RunsShell:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _StorageRunningShell:
    """A 'tensor storage' whose nested payload runs a shell: ``torch.storage._load_from_bytes`` would
    hand it to ``torch.load(weights_only=False)``."""

    def __init__(self, command: str):
        self.payload = pickle.dumps(_RunsShell(command), protocol=2)

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.payload,))


def _globals(data: bytes) -> tuple[set, list]:
    """The globals one pickle names (GLOBAL / STACK_GLOBAL), and its BINBYTES payloads."""
    names, strings, payloads = set(), [], []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(tuple(strings[-2:]))
        elif op.name == "GLOBAL":
            names.add(tuple(arg.split(" ")))
        elif op.name.startswith("BINBYTES"):
            payloads.append(arg)
    return names, payloads


def test_the_globals_of_a_tensor_pickle_are_exactly_the_allowed_ones(tmp_path):
    for protocol in (3, 4, 5):
        names, payloads = _globals(pickle.dumps({"someId": torch.randn(1, 4, 3)}, protocol=protocol))
        assert names == {("torch._utils", "_rebuild_tensor_v2"), ("torch.storage", "_load_from_bytes"),
                         ("collections", "OrderedDict")} and names <= set(ALLOWED_GLOBALS)
        nested, stream = set(), io.BytesIO(payloads[0])
        for _ in range(5):                                   # the legacy torch.save: five pickles, then data
            start = stream.tell()
            end = [pos for _, _, pos in pickletools.genops(stream)][-1] + 1
            nested |= _globals(payloads[0][start:end])[0]
        assert nested == {("torch", "FloatStorage")}
    values = {"a": torch.randn(1, 6, 5), "b": torch.randn(1, 12, 5)[:, ::2], "c": np.random.rand(1, 6, 5)}
    for protocol in (3, 4, 5):
        (tmp_path / "batch_0.pkl").write_bytes(pickle.dumps(values, protocol=protocol))
        loaded = load_batch(tmp_path / "batch_0.pkl")
        for key, value in values.items():
            want = value.numpy() if isinstance(value, torch.Tensor) else value.astype(np.float32)
            assert loaded[key].dtype == np.float32 and np.array_equal(loaded[key], want)


@pytest.mark.parametrize("payload", ["shell", "nested shell", "eval", "object array", "not a dict", "tebibyte"])
def test_an_unsafe_or_malformed_batch_is_refused_naming_the_file_before_anything_runs(imported, tmp_path, payload):
    release, _, profile, _ = imported
    bad = _copy_text_parts(release, tmp_path / "release")
    (bad / "spectogram_pikles").mkdir()
    marker = tmp_path / "pwned"
    good = pickle.dumps({"x": torch.zeros(1, FRAMES, 128)})
    at = next(pos for op, arg, pos in pickletools.genops(good) if arg == "torch.storage")
    data = {"shell": lambda: pickle.dumps({"x": _RunsShell(f"touch {marker}")}),
            "nested shell": lambda: pickle.dumps({"x": _StorageRunningShell(f"touch {marker}")}),
            "eval": lambda: pickle.dumps({"x": eval}),
            "object array": lambda: pickle.dumps({"x": np.array([None, 1], dtype=object)}),
            "not a dict": lambda: pickle.dumps([torch.zeros(2)]),
            "tebibyte": lambda: good[:at] + pickle.BINBYTES8 + struct.pack("<Q", 2**40) + good[at:]}[payload]()
    path = bad / "spectogram_pikles" / "batch_0.pkl"
    path.write_bytes(data)
    error = {"not a dict": ValueError, "tebibyte": MalformedPickleError}.get(payload, UnsafePickleError)
    with pytest.raises(error, match=str(path)):
        import_published_split(bad, tmp_path / "corpus", profile=profile, show_progress=False)
    assert not marker.exists()


def test_npy_spectrograms_are_never_unpickled(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        load_npy(path)
    np.save(path, np.ones((5, 4), dtype=np.float64))
    assert load_npy(path).dtype == np.float32


def test_find_split_file(tmp_path):
    (tmp_path / "validation.json").write_text("[]")
    assert find_split_file(tmp_path, "val").name == "validation.json"
    with pytest.raises(FileNotFoundError, match="test"):
        find_split_file(tmp_path, "test")
