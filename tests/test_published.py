"""Loading the authors' published W / C pickles safely (utils.published)."""
from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from utils import published
from utils.published import (PUBLISHED_PAIRS, TASK_CLASSES, UnsafePickleError, load_published,
                             load_published_pair, resolve_published_file, restricted_load)

SHARED = Path(__file__).resolve().parents[2] / "shared"
PUBLISHED = SHARED / "reference" / "published"


@pytest.fixture
def published_dir() -> Path:
    if not (PUBLISHED / "audio_genre_feature_weights.pkl").exists():
        pytest.skip("shared reference data not present")
    return PUBLISHED


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


def test_allow_list_covers_exactly_what_the_pickles_reference(published_dir):
    referenced = set()
    for pair in PUBLISHED_PAIRS.values():
        for name in (pair.weights, pair.counts):
            referenced |= _globals_in(published_dir / name)
    assert referenced == {
        ("collections", "defaultdict"), ("__main__", "default_dict_of_float"),
        ("__main__", "default_dict_of_int"), ("builtins", "float"), ("builtins", "int"),
        ("numpy.core.multiarray", "scalar"), ("numpy", "dtype"),
    }
    assert referenced <= set(published.ALLOWED_GLOBALS)


def test_all_pairs_load_as_plain_dicts(published_dir):
    for key, pair in PUBLISHED_PAIRS.items():
        weights, counts, names = load_published(key, published_dir)
        assert names == TASK_CLASSES[pair.task]
        assert type(weights) is dict and set(weights) <= set(range(len(names))), key
        for cls in weights:
            assert type(cls) is int
            assert set(weights[cls]) == set(counts[cls])
            for feature, value in weights[cls].items():
                assert type(feature) is str and type(value) is float and value >= 0
                assert type(counts[cls][feature]) is int and counts[cls][feature] >= 1


def test_checked_values_from_the_manifest(published_dir):
    weights, counts = load_published_pair("audio_genre_feature_weights.pkl", "audio_genre_feature_counts.pkl",
                                          source=published_dir)
    pop = [round(weights[5][f"vocals{k}"] / counts[5][f"vocals{k}"], 3) for k in range(10)]
    assert pop == [0.073, 0.055, 0.058, 0.051, 0.064, 0.065, 0.067, 0.044, 0.056, 0.061]
    weights, counts = load_published_pair("emotion_audio_feature_weights.pkl", "emotion_audio_feature_counts.pkl",
                                          source=str(published_dir))
    angry = [round(weights[0][f"other{k}"] / counts[0][f"other{k}"], 3) for k in range(10)]
    assert angry == [0.057, 0.037, 0.032, 0.027, 0.025, 0.018, 0.025, 0.031, 0.038, 0.054]


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


def test_download_from_file_url_into_cache(published_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    pattern = published_dir.as_uri() + "/{file}"
    weights, counts = load_published_pair("audio_genre_feature_weights.pkl", "audio_genre_feature_counts.pkl",
                                          source=pattern, cache_dir=cache)
    cached = sorted(p.name for p in cache.rglob("*.pkl"))
    assert cached == ["audio_genre_feature_counts.pkl", "audio_genre_feature_weights.pkl"]
    assert round(weights[5]["vocals0"] / counts[5]["vocals0"], 3) == 0.073

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
