"""Global aggregation (utils.musiclime.aggregate): W / C, the three measures; the resumable record store
(utils.musiclime.records) and its sharded runner (utils.musiclime.global_explain.run_global)."""
from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pandas as pd
import pytest

from utils.musiclime.aggregate import (accumulate, measures, merge_word_variants, modality_shares,
                                       parse_feature, stem_shares)
from utils.musiclime.global_explain import parse_shard, run_global, shard_of
from utils.musiclime.records import append_record, load_records, merge_records

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["calm", "loud"]

RECORDS = [
    {"id": "a", "label": 0, "probabilities": [0.7, 0.3],
     "weights": {"vocals0": 0.4, "love": 0.2, "drums1": -0.3}},
    {"id": "b", "label": 0, "probabilities": [0.6, 0.4], "weights": {"vocals0": 0.2, "love": -0.5}},
    {"id": "c", "label": 1, "probabilities": [0.2, 0.8],
     "weights": {"vocals0": 0.1, "drums1": 0.9, "love": 0.3}},
]


def _row(table: pd.DataFrame, cls: str, feature: str) -> pd.Series:
    rows = table[(table["class"] == cls) & (table["feature"] == feature)]
    assert len(rows) == 1, (cls, feature)
    return rows.iloc[0]


def test_accumulate_positive_only_and_all():
    weights, counts = accumulate(RECORDS)
    assert weights == {0: {"vocals0": pytest.approx(0.6), "love": 0.2},
                       1: {"vocals0": 0.1, "drums1": 0.9, "love": 0.3}}
    assert counts == {0: {"vocals0": 2, "love": 1}, 1: {"vocals0": 1, "drums1": 1, "love": 1}}
    weights, counts = accumulate(RECORDS, positive_only=False)
    assert weights[0] == {"vocals0": pytest.approx(0.6), "love": pytest.approx(0.7), "drums1": pytest.approx(0.3)}
    assert counts[0] == {"vocals0": 2, "love": 2, "drums1": 1}


def test_label_key_switch():
    records = [dict(r, label=1 - r["label"]) for r in RECORDS]   # explained the other class
    by_label, _ = accumulate(records)
    by_prediction, _ = accumulate(records, label_key="predicted")
    assert set(by_label[1]) == {"vocals0", "love"} and set(by_prediction[0]) == {"vocals0", "love"}
    with pytest.raises(ValueError, match="'a'.*true_label"):
        accumulate(RECORDS, label_key="true_label")


def test_measures_against_hand_computation():
    table = measures(*accumulate(RECORDS), CLASSES)
    assert list(table.columns) == ["class", "feature", "modality", "stem", "segment",
                                   "W", "C", "I_LIME", "I_AVG", "I_H"]
    assert len(table) == 5
    # I_LIME = sqrt(W), I_AVG = W / C
    assert _row(table, "calm", "vocals0")["I_LIME"] == pytest.approx(math.sqrt(0.6))
    assert _row(table, "calm", "vocals0")["I_AVG"] == pytest.approx(0.3)
    assert _row(table, "loud", "drums1")["I_AVG"] == pytest.approx(0.9)
    # entropies over classes of p = I_LIME / sum I_LIME
    def entropy(*lime):
        total = sum(lime)
        return -sum(v / total * math.log2(v / total) for v in lime)

    h_vocals = entropy(math.sqrt(0.6), math.sqrt(0.1))   # ~0.868
    h_love = entropy(math.sqrt(0.2), math.sqrt(0.3))     # ~0.993 (max)
    h_drums = 0.0                                        # one class only (min)
    hn_vocals = (h_vocals - h_drums) / (h_love - h_drums)
    assert 0.8 < h_vocals < 0.9 and 0.99 < h_love < 1.0
    assert _row(table, "calm", "vocals0")["I_H"] == pytest.approx((1 - hn_vocals) * math.sqrt(0.6))
    assert _row(table, "loud", "vocals0")["I_H"] == pytest.approx((1 - hn_vocals) * math.sqrt(0.1))
    assert _row(table, "calm", "love")["I_H"] == pytest.approx(0.0, abs=1e-12)
    assert _row(table, "loud", "drums1")["I_H"] == pytest.approx(math.sqrt(0.9))
    # parsing of names
    assert _row(table, "loud", "drums1")[["modality", "stem", "segment"]].tolist() == ["audio", "drums", 1]
    love = _row(table, "calm", "love")
    assert love["modality"] == "lyrics" and pd.isna(love["stem"]) and pd.isna(love["segment"])
    assert list(table["class"].cat.categories) == CLASSES


def test_measures_all_weights_and_equal_entropies():
    table = measures(*accumulate(RECORDS, positive_only=False), CLASSES)
    assert _row(table, "calm", "love")["I_AVG"] == pytest.approx(0.35)
    assert _row(table, "calm", "drums1")["C"] == 1
    single = measures({0: {"x": 4.0, "y": 1.0}}, {0: {"x": 2, "y": 1}}, ["only"])
    assert single["I_H"].tolist() == pytest.approx([2.0, 1.0])       # all H equal -> Hn = 0


def test_measures_errors():
    with pytest.raises(ValueError, match="empty"):
        measures({}, {}, CLASSES)
    with pytest.raises(ValueError, match="class index 2"):
        measures({2: {"x": 1.0}}, {2: {"x": 1}}, CLASSES)
    with pytest.raises(ValueError, match="'x'"):
        measures({0: {"x": 1.0}}, {0: {}}, CLASSES)
    with pytest.raises(ValueError, match="no 'weights'"):
        accumulate([{"id": "z", "label": 0}])


def test_parse_feature_and_word_that_looks_like_audio():
    assert parse_feature("other9") == ("audio", "other", 9)
    assert parse_feature("other") == ("lyrics", None, None)
    assert parse_feature("vocalsX") == ("lyrics", None, None)
    record = {"id": "w", "label": 0, "weights": {"bass2": 0.5, "other1": 0.2},
              "modality": {"bass2": "audio", "other1": "lyrics"}}
    with pytest.warns(UserWarning, match="other1"):
        weights, _ = accumulate([record])
    assert set(weights[0]) == {"bass2", "other1 (word)"}


def test_merge_word_variants():
    weights = {0: {"Love": 0.3, "love": 0.1, "vocals0": 0.2}}
    counts = {0: {"Love": 1, "love": 3, "vocals0": 2}}
    merged_w, merged_c = merge_word_variants(weights, counts)
    assert merged_w == {0: {"love": pytest.approx(0.4), "vocals0": 0.2}}
    assert merged_c == {0: {"love": 4, "vocals0": 2}}


def test_modality_and_stem_shares():
    table = measures(*accumulate(RECORDS), CLASSES)
    shares = modality_shares(table)
    # calm: audio W 0.6, lyrics 0.2 ; loud: audio 1.0, lyrics 0.3
    assert shares.loc["calm"].tolist() == pytest.approx([0.75, 0.25])
    assert shares.loc["loud"].tolist() == pytest.approx([1.0 / 1.3, 0.3 / 1.3])
    stems = stem_shares(table)
    assert list(stems.columns) == ["vocals", "drums", "bass", "other"]
    assert stems.loc["loud"].tolist() == pytest.approx([0.1, 0.9, 0.0, 0.0])
    with pytest.raises(ValueError, match="no audio"):
        stem_shares(measures({0: {"love": 1.0}}, {0: {"love": 1}}, CLASSES))


# ---------------------------------------------------------------- record store
def test_record_store_round_trip_and_repairs(tmp_path):
    path = tmp_path / "records.jsonl"
    for record in RECORDS:
        append_record(path, record)
    assert load_records(path) == RECORDS
    with open(path, "ab") as handle:
        handle.write(b'{"id": "half", "lab')             # a write cut short by a kill
    with pytest.warns(UserWarning, match="half-written"):
        assert [r["id"] for r in load_records(path)] == ["a", "b", "c"]
    assert path.read_bytes().endswith(b"\n") and b"half" not in path.read_bytes()
    before = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(b'# a comment\n')                    # a complete line is never a torn write: refused
    with pytest.raises(ValueError, match="line 4: not a record"):
        load_records(path)
    assert path.read_bytes() == before + b'# a comment\n'    # left untouched
    path.write_bytes(before)
    append_record(path, dict(RECORDS[0], weights={"x": 1.0}))
    with pytest.warns(UserWarning, match="duplicate record id 'a'"):
        loaded = load_records(path)
    assert loaded[0] == RECORDS[0] and len(loaded) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2"):
        load_records(bad)
    bad.write_bytes(b'{"no_id": 1}\n')
    with pytest.raises(ValueError, match="line 1"):
        load_records(bad)
    assert load_records(tmp_path / "absent.jsonl") == []


def test_shards():
    assert parse_shard("2/3") == (2, 3) and parse_shard((3, 3)) == (3, 3) and parse_shard(None) == (1, 1)
    for bad in ["0/3", "4/3", "x", (1, 0)]:
        with pytest.raises(ValueError):
            parse_shard(bad)
    # documented rule: CRC-32 of the UTF-8 id (standard check value of "123456789": 0xCBF43926)
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert [shard_of("123456789", n) for n in (2, 3, 7)] == [0xCBF43926 % n + 1 for n in (2, 3, 7)] == [1, 3, 6]


DUMMY = textwrap.dedent('''
    import time, zlib

    def dummy_explain(item, delay=0.0):
        """Deterministic stand-in for MusicLIME: weights derived from the id."""
        time.sleep(delay)
        h = zlib.crc32(item["id"].encode("utf-8"))
        weights = {"vocals%d" % (h % 10): (h % 97) / 100.0, "drums%d" % (h % 7): -((h >> 3) % 11) / 10.0,
                   "love": ((h >> 8) % 13 - 6) / 10.0, "word%d" % (h % 5): 0.25}
        label = h % 3
        probabilities = [0.1, 0.1, 0.1]
        probabilities[label] = 0.8
        return {"id": item["id"], "label": label, "probabilities": probabilities, "weights": weights}
''')
namespace: dict = {}
exec(DUMMY, namespace)
dummy_explain = namespace["dummy_explain"]
ITEMS = [{"id": f"song-{i}", "lyrics": "la la"} for i in range(30)]


def test_resume_after_kill(tmp_path):
    records_path = tmp_path / "run.jsonl"
    child = DUMMY + textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from utils.musiclime.global_explain import run_global
        items = [{{"id": "song-%d" % i, "lyrics": "la la"}} for i in range(30)]
        run_global(items, lambda item: dummy_explain(item, 0.15), {str(records_path)!r},
                   settings={{"num_samples": 10}}, progress=False)
    ''')
    process = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if records_path.exists() and records_path.read_bytes().count(b"\n") >= 5:
                break
            assert process.poll() is None, "the child run ended before it could be killed"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    done_before = records_path.read_bytes().count(b"\n")
    assert 5 <= done_before < 30
    with open(records_path, "ab") as handle:              # and it died mid-write of the next line
        handle.write(b'{"id": "song-29", "label": 2, "weig')

    calls = []

    def counting_explain(item):
        calls.append(item["id"])
        return dummy_explain(item)

    with pytest.warns(UserWarning, match="half-written"):
        resumed = run_global(ITEMS, counting_explain, records_path, settings={"num_samples": 10}, progress=False)
    assert len(calls) == 30 - done_before
    stored = load_records(records_path)
    assert sorted(r["id"] for r in stored) == sorted(item["id"] for item in ITEMS)   # each id exactly once
    clean = run_global(ITEMS, dummy_explain, tmp_path / "clean.jsonl", settings={"num_samples": 10}, progress=False)
    assert resumed == clean
    assert sorted(stored, key=lambda r: r["id"]) == sorted(clean, key=lambda r: r["id"])
    # nothing left to do, and other settings are refused
    assert run_global(ITEMS, counting_explain, records_path, settings={"num_samples": 10}, progress=False) == clean
    assert len(calls) == 30 - done_before
    with pytest.raises(ValueError, match="num_samples"):
        run_global(ITEMS, counting_explain, records_path, settings={"num_samples": 5000}, progress=False)


def test_sharded_runs_merge_in_any_order(tmp_path):
    full = run_global(ITEMS, dummy_explain, tmp_path / "all.jsonl", progress=False)
    paths = []
    for k in (1, 2, 3):
        part = run_global(ITEMS, dummy_explain, tmp_path / f"shard{k}.jsonl", shard=f"{k}/3", progress=False)
        assert all(shard_of(r["id"], 3) == k for r in part)
        paths.append(tmp_path / f"shard{k}.jsonl")
    assert sum(len(load_records(p)) for p in paths) == 30
    expected = sorted(full, key=lambda r: r["id"])
    expected_table = measures(*accumulate(full), ["x", "y", "z"])
    for order in itertools.permutations(paths):
        merged = merge_records(order)
        assert merged == expected
        pd.testing.assert_frame_equal(measures(*accumulate(merged), ["x", "y", "z"]), expected_table)
    # overlapping identical records are fine, conflicting ones are not
    assert merge_records([paths[0], tmp_path / "all.jsonl"]) == expected
    conflict = tmp_path / "conflict.jsonl"
    first = load_records(paths[0])[0]
    append_record(conflict, dict(first, weights={"vocals0": 0.123}))
    with pytest.raises(ValueError, match=first["id"]):
        merge_records([paths[0], conflict])


def test_run_global_bad_items(tmp_path):
    with pytest.raises(ValueError, match="duplicate item id 'x'"):
        run_global([{"id": "x"}, {"id": "x"}], dummy_explain, tmp_path / "r.jsonl", progress=False)
    with pytest.raises(ValueError, match="item 0 has no 'id'"):
        run_global([{"name": "x"}], dummy_explain, tmp_path / "r.jsonl", progress=False)
    with pytest.raises(ValueError, match="returned id"):
        run_global([{"id": "x"}], lambda item: {"id": "y", "label": 0, "weights": {}}, tmp_path / "r.jsonl",
                   progress=False)
