"""The record store under misuse: outputs never clobber inputs, one writer per file, bad songs
skipped on request, and merges refuse records of different runs.

Everything here runs on hand-made records and a fake ``explain_fn`` (no model), so it is fast.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from utils.global_run import default_measures_path
from utils.io import BusyError, exclusive, refuse_clobber
from utils.musiclime.aggregate import accumulate, write_measures
from utils.musiclime.global_explain import run_global
from utils.musiclime.records import load_records, merge_records


def _record(song_id, label=0, **settings):
    return {"id": song_id, "label": label, "weights": {"drums1": 0.5, "love": -0.2},
            "settings": {"num_samples": 40, "seed": 0, "sampling": "iid", "kind": "multimodal", "task": "genre",
                         "profile": "tiny", "separator": "oracle", "mode": "both", **settings}}


def _explain(item):
    if item["id"].startswith("bad"):
        raise ValueError(f"cannot decode audio file for song {item['id']!r}")
    return _record(item["id"])


ROOT = Path(__file__).resolve().parents[1]
ITEMS = [{"id": f"s{i}"} for i in range(4)] + [{"id": "bad1"}]


def test_default_measures_path_never_names_the_records():
    assert default_measures_path("out/r.jsonl").as_posix() == "out/r.csv"
    assert default_measures_path("out/r.csv").as_posix() == "out/r.measures.csv"
    assert default_measures_path("r").as_posix() == "r.csv"


def test_refuse_clobber_names_both_arguments(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="--out .*link.jsonl is the same file as --records .*a.jsonl"):
        refuse_clobber({"--out": tmp_path / "link.jsonl"}, {"--records": [tmp_path / "b", tmp_path / "a.jsonl"]})
    with pytest.raises(ValueError, match="same file"):
        refuse_clobber({"--out": tmp_path / "sub" / ".." / "new.csv"}, {"--records": tmp_path / "new.csv"})
    refuse_clobber({"--out": tmp_path / "m.csv", "--merged-records": None}, {"--records": [tmp_path / "a.jsonl"]})


def test_measures_never_overwrite_a_records_file(tmp_path):
    records = tmp_path / "r.jsonl"
    records.write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match="r.jsonl holds JSON"):
        write_measures(None, records)
    assert records.read_text() == '{"id": "a"}\n'


def test_skip_bad_records_the_skip_and_goes_on(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match="'bad1'"):
        run_global(ITEMS, _explain, path, progress=False)
    assert [r["id"] for r in load_records(path)] == ["s0", "s1", "s2", "s3"]     # nothing done is lost
    with pytest.warns(UserWarning, match="1 of 5 songs skipped"):
        records = run_global(ITEMS, _explain, path, progress=False, skip_bad=True)
    skipped = [r for r in records if "skipped" in r]
    assert [r["id"] for r in skipped] == ["bad1"] and "cannot decode" in skipped[0]["skipped"]
    weights, counts = accumulate(records)
    assert counts[0]["drums1"] == 4                                             # the skip is left out
    calls = []
    with pytest.warns(UserWarning, match="1 of 5 songs skipped"):
        run_global(ITEMS, lambda item: calls.append(item) or _explain(item), path, progress=False, skip_bad=True)
    assert calls == []                                                           # not retried


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\nfrom utils.io import exclusive\n"
                               f"with exclusive({str(path)!r}):\n    print('locked', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match="r.jsonl is being written by another process"):
            run_global(ITEMS[:2], _explain, path, progress=False)
        assert not path.exists() or load_records(path) == []
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert len(run_global(ITEMS[:2], _explain, path, progress=False)) == 2        # a dead holder leaves no lock
    with exclusive(tmp_path / "other.jsonl"):
        with pytest.raises(BusyError):
            with exclusive(tmp_path / "other.jsonl"):
                pass


def test_merge_refuses_shards_of_different_runs(tmp_path):
    forty, eighty = tmp_path / "forty.jsonl", tmp_path / "eighty.jsonl"
    run_global(ITEMS[:2], _explain, forty, progress=False)
    run_global(ITEMS[2:4], lambda item: _record(item["id"], num_samples=80), eighty, progress=False)
    with pytest.raises(ValueError, match="eighty.jsonl .*num_samples=80 but .*forty.jsonl with num_samples=40"):
        merge_records([forty, eighty])
    for key, value in [("seed", 1), ("sampling", "antithetic"), ("kind", "audio"), ("task", "emotion"),
                       ("profile", "paper"), ("separator", "hpss")]:
        other = tmp_path / f"{key}.jsonl"
        run_global(ITEMS[2:4], lambda item, key=key, value=value: _record(item["id"], **{key: value}), other,
                   progress=False)
        with pytest.raises(ValueError, match=f"{key}="):
            merge_records([forty, other])
    same = tmp_path / "same.jsonl"
    run_global(ITEMS[2:4], _explain, same, progress=False)
    assert [r["id"] for r in merge_records([forty, same])] == ["s0", "s1", "s2", "s3"]
