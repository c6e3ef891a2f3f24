"""Loading the authors' published W / C pickles safely (utils.results.published).

Every loader test runs on small pickles written in the authors' exact format by
tests/published_fixtures.py (fixture ``published_fixture``). The tests marked ``published``
check the real published numbers; they read the authors' files from $MUSICLIME_PUBLISHED_DIR
and skip when it is unset (``MUSICLIME_PUBLISHED_DIR=... python -m pytest -m published``).
"""
from __future__ import annotations

import collections
import os
import pickle
import pickletools
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from published_fixtures import (AUTHORS_GLOBALS, PROTOCOL, class_index, default_dict_of_float, default_dict_of_int,
                                dump_authors_pickle)
from utils.results import published
from utils.results.published import (PUBLISHED_PAIRS, TASK_CLASSES, MalformedPickleError, UnsafePickleError,
                                     load_published, load_published_pair, resolve_published_file, restricted_load)

POP_VOCALS = [0.073, 0.055, 0.058, 0.051, 0.064, 0.065, 0.067, 0.044, 0.056, 0.061]
ANGRY_OTHER = [0.057, 0.037, 0.032, 0.027, 0.025, 0.018, 0.025, 0.031, 0.038, 0.054]


@pytest.fixture
def published_dir(published_fixture) -> Path:
    return published_fixture.directory


def _globals_in(path: Path) -> set[tuple[str, str]]:
    """(module, name) pairs a protocol-4 pickle pushes with STACK_GLOBAL, read statically."""
    memo, stack, found = {}, [], set()
    for op, arg, _ in pickletools.genops(path.read_bytes()):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            stack.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif op.name in ("BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            name, module = stack.pop(), stack.pop()
            found.add((module, name))
            stack.append(None)
        elif op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        else:
            stack.append(None)
    return found


def _opcodes(path: Path) -> tuple[int, set[str]]:
    """(protocol, set of opcode names) of a pickle."""
    ops = list(pickletools.genops(path.read_bytes()))
    assert ops[0][0].name == "PROTO", path
    return ops[0][1], {op.name for op, _, _ in ops}


def _file_names() -> list[str]:
    return [name for pair in PUBLISHED_PAIRS.values() for name in (pair.weights, pair.counts)]


# ---------------------------------------------------------------- on the fixture (always run)
def test_fixture_references_exactly_the_authors_globals(published_dir):
    referenced = set()
    for name in _file_names():
        assert _opcodes(published_dir / name)[0] == PROTOCOL, name
        referenced |= _globals_in(published_dir / name)
    # numpy 1.x's module name, as in the authors' files -- not numpy 2's numpy._core.multiarray
    assert referenced == AUTHORS_GLOBALS
    assert referenced <= set(published.ALLOWED_GLOBALS)


def test_fixture_needs_the_restricted_unpickler(published_dir):
    # like the authors' files: a plain pickle.load outside their notebook cannot find the factory
    assert not hasattr(sys.modules["__main__"], "default_dict_of_float")     # the writer cleaned up
    with pytest.raises(AttributeError, match="default_dict_of_float"):
        pickle.loads((published_dir / "audio_genre_feature_weights.pkl").read_bytes())
    raw = restricted_load(published_dir / "audioset_multimodal_feature_weights.pkl")
    assert raw.default_factory is published.default_dict_of_float
    cls = next(iter(raw))
    assert type(cls) is np.int64 and raw[cls].default_factory is float
    names = {type(f) for f in raw[cls]}
    assert names == {str, np.str_} and {type(v) for v in raw[cls].values()} == {np.float64}


def test_all_pairs_load_exactly_as_written(published_fixture):
    for key, pair in PUBLISHED_PAIRS.items():
        weights, counts, names = load_published(key, published_fixture.directory)
        expected = published_fixture.pairs[key]
        assert names == TASK_CLASSES[pair.task]
        assert weights == expected.weights and counts == expected.counts, key
        assert sorted(weights) == list(range(len(names))), key
        for cls in weights:
            assert type(cls) is int
            for feature, value in weights[cls].items():
                assert type(feature) is str and type(value) is float and value >= 0
                assert type(counts[cls][feature]) is int and counts[cls][feature] >= 1


def test_loader_returns_the_chosen_averages(published_fixture):
    directory = published_fixture.directory
    pop = class_index("genre_audio", "pop")
    chosen = published_fixture.pairs["genre_audio"].averages[pop]
    weights, counts = load_published_pair("audio_genre_feature_weights.pkl", "audio_genre_feature_counts.pkl",
                                          source=directory)
    vocals = [round(weights[pop][f"vocals{k}"] / counts[pop][f"vocals{k}"], 3) for k in range(10)]
    assert vocals == [round(chosen[f"vocals{k}"], 3) for k in range(10)]
    assert round(weights[pop]["bass3"] / counts[pop]["bass3"], 4) == 0.0087
    angry = class_index("emotion_audio", "Angry")
    chosen = published_fixture.pairs["emotion_audio"].averages[angry]
    weights, counts = load_published_pair("emotion_audio_feature_weights.pkl", "emotion_audio_feature_counts.pkl",
                                          source=str(directory))
    other = [weights[angry].get(f"other{k}", 0.0) / counts[angry].get(f"other{k}", 1) for k in range(10)]
    assert [round(v, 3) for v in other] == [round(chosen.get(f"other{k}", 0.0), 3) for k in range(10)]


# ---------------------------------------------------------------- unsafe and malformed pickles
class _RunsShell:
    """Pickles to ``os.system(command)``: what a hostile 'aggregate' would contain."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil_feature_weights.pkl"
    evil.write_bytes(pickle.dumps({0: _RunsShell(f"touch {marker}")}))
    with pytest.raises(UnsafePickleError) as info:
        restricted_load(evil)
    message = str(info.value)
    assert "system" in message and str(evil) in message
    assert not marker.exists()
    # through the public loader too (counts file is never reached)
    (tmp_path / "c.pkl").write_bytes(pickle.dumps({0: {"a": 1}}))
    with pytest.raises(UnsafePickleError):
        load_published_pair(evil.name, "c.pkl", source=tmp_path)
    assert not marker.exists()


def test_other_unsafe_globals_are_refused(tmp_path):
    cases = {
        "eval.pkl": pickle.dumps(eval),                        # builtins.eval
        "array.pkl": pickle.dumps(np.zeros(2)),                # numpy reconstruct: not in the list
        "object_scalar.pkl": b"\x80\x04cnumpy\ndtype\n(VO\nI00\nI01\ntR.",   # numpy.dtype('O')
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(UnsafePickleError, match=name):
            restricted_load(tmp_path / name)


def test_plain_dict_pickles_and_mismatches(tmp_path):
    (tmp_path / "w.pkl").write_bytes(pickle.dumps({1: {"vocals0": np.float64(0.5), "love": 0.25}}))
    (tmp_path / "c.pkl").write_bytes(pickle.dumps({1: {"vocals0": 2, "love": 1}}))
    (tmp_path / "c_bad.pkl").write_bytes(pickle.dumps({1: {"vocals0": 2}}))
    (tmp_path / "c_other.pkl").write_bytes(pickle.dumps({2: {"vocals0": 2, "love": 1}}))
    (tmp_path / "not_mapping.pkl").write_bytes(pickle.dumps([1, 2]))
    weights, counts = load_published_pair("w.pkl", "c.pkl", source=tmp_path)
    assert weights == {1: {"vocals0": 0.5, "love": 0.25}} and counts == {1: {"vocals0": 2, "love": 1}}
    with pytest.raises(ValueError, match="love"):
        load_published_pair("w.pkl", "c_bad.pkl", source=tmp_path)
    with pytest.raises(ValueError, match="different classes"):
        load_published_pair("w.pkl", "c_other.pkl", source=tmp_path)
    with pytest.raises(ValueError, match="not_mapping.pkl"):
        load_published_pair("not_mapping.pkl", "c.pkl", source=tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        load_published_pair("missing.pkl", "c.pkl", source=tmp_path)
    with pytest.raises(ValueError, match="unknown published pair"):
        load_published("no_such_pair", tmp_path)


TIB = 2**40


@pytest.mark.parametrize("opcode", [pickle.BINBYTES8, pickle.BINUNICODE8, pickle.BYTEARRAY8, pickle.FRAME])
def test_a_length_claim_of_a_tebibyte_is_refused_naming_the_file(published_fixture, tmp_path, opcode):
    # an authors-format file with, just before its first feature name, an opcode announcing 1 TiB
    good = (published_fixture.directory / "audio_genre_feature_weights.pkl").read_bytes()
    at = next(pos for op, arg, pos in pickletools.genops(good) if op.name == "SHORT_BINUNICODE" and arg == "vocals0")
    path = tmp_path / "audio_genre_feature_weights.pkl"
    path.write_bytes(good[:at] + opcode + struct.pack("<Q", TIB) + good[at:])
    (tmp_path / "c.pkl").write_bytes(pickle.dumps({0: {"vocals0": 1}}))
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:     # not a MemoryError
        restricted_load(path)
    assert isinstance(info.value, MalformedPickleError) and str(TIB) in str(info.value)
    with pytest.raises(MalformedPickleError, match=re.escape(str(path))):
        load_published_pair(path.name, "c.pkl", source=tmp_path)


def test_a_file_over_the_size_limit_is_refused_naming_the_file(published_fixture, tmp_path, monkeypatch):
    path = published_fixture.directory / "audio_genre_feature_weights.pkl"
    size = path.stat().st_size
    assert restricted_load(path, max_bytes=size)                     # at the limit: read
    with pytest.raises(MalformedPickleError, match=f"{re.escape(str(path))}: {size} bytes.*{size - 1}-byte limit"):
        restricted_load(path, max_bytes=size - 1)
    monkeypatch.setattr(published, "MAX_PUBLISHED_BYTES", size - 1)  # a download is bounded too
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="audio_genre_feature_weights.pkl: over the"):
        resolve_published_file(path.name, published_fixture.directory.as_uri(), cache_dir=cache)
    assert not list(cache.rglob("*.pkl"))


def _write_authors_pair(directory, weights: dict, counts: dict) -> None:
    """W and C files ``w.pkl`` / ``c.pkl`` in the authors' format (nested defaultdicts, protocol 4)."""
    for name, values, factory in (("w.pkl", weights, default_dict_of_float), ("c.pkl", counts, default_dict_of_int)):
        outer = collections.defaultdict(factory)
        for cls, features in values.items():
            outer[cls].update(features)
        dump_authors_pickle(outer, directory / name)


@pytest.mark.parametrize("file, bad, why", [
    ("w.pkl", np.float64("nan"), "not finite"), ("w.pkl", float("inf"), "not finite"),
    ("w.pkl", np.float64("-inf"), "not finite"), ("c.pkl", float("nan"), "not finite"),
    ("c.pkl", np.float64("inf"), "not finite"), ("c.pkl", 2.5, "not a whole count"),
])
def test_nan_inf_and_fractional_counts_are_refused_naming_file_and_key(tmp_path, file, bad, why):
    weights = {0: {"vocals0": np.float64(0.5), "love": 0.25}, 1: {"vocals0": np.float64(0.1)}}
    counts = {0: {"vocals0": 2, "love": 1}, 1: {"vocals0": 1}}
    (weights if file == "w.pkl" else counts)[1]["vocals0"] = bad
    _write_authors_pair(tmp_path, weights, counts)
    where = re.escape(f"{tmp_path / file}: class 1, feature 'vocals0'")
    with pytest.raises(ValueError, match=f"{where}: value .* {why}"):
        load_published_pair("w.pkl", "c.pkl", source=tmp_path)


def test_download_from_file_url_into_cache(published_fixture, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    pattern = published_fixture.directory.as_uri() + "/{file}"
    weights, counts = load_published_pair("audio_genre_feature_weights.pkl", "audio_genre_feature_counts.pkl",
                                          source=pattern, cache_dir=cache)
    cached = sorted(p.name for p in cache.rglob("*.pkl"))
    assert cached == ["audio_genre_feature_counts.pkl", "audio_genre_feature_weights.pkl"]
    assert weights == published_fixture.pairs["genre_audio"].weights
    assert counts == published_fixture.pairs["genre_audio"].counts

    def no_network(url, destination, timeout=60.0):
        raise AssertionError(f"should have used the cache, fetched {url}")

    monkeypatch.setattr(published, "fetch_url", no_network)
    again, _ = load_published_pair("audio_genre_feature_weights.pkl", "audio_genre_feature_counts.pkl",
                                   source=pattern, cache_dir=cache)
    assert again == weights


def test_url_without_placeholder_and_monkeypatched_fetch(tmp_path, monkeypatch):
    fetched = []

    def fake_fetch(url, destination, timeout=60.0):
        fetched.append((url, timeout))
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(pickle.dumps({0: {"vocals0": 1.0}}))
        return destination

    monkeypatch.setattr(published, "fetch_url", fake_fetch)
    path = resolve_published_file("x y.pkl", "https://example.invalid/results", tmp_path, timeout=5)
    assert fetched == [("https://example.invalid/results/x%20y.pkl", 5)]
    assert path.parent.parent == tmp_path and path.name == "x y.pkl"


def test_failed_download_names_the_url(tmp_path):
    missing = (tmp_path / "nowhere").as_uri()
    with pytest.raises(OSError, match="could not download .*nowhere/a.pkl"):
        resolve_published_file("a.pkl", missing, cache_dir=tmp_path / "cache", timeout=2)
    assert not list((tmp_path / "cache").rglob("*.pkl"))
