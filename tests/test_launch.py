"""Global runs under a launcher (utils.musiclime.launch) and the one-song-ahead prefetch of run_global.

Mechanics on a toy explainer whose record depends only on the song and its seed (no model), so
each test takes well under a second; one real ``torchrun`` run of the command line, on CPU with
an untrained tiny lyrics model, checks the launcher end to end.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from utils.global_run import main
from utils.musiclime.global_explain import run_global, shard_of, song_seed
from utils.musiclime.launch import (Launch, ShardsIncomplete, launch_device, launch_from_env, merge_shards,
                                    run_launched, shard_count, shard_paths)
from utils.musiclime.records import load_records

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"task": "genre", "num_samples": 10, "seed": 3, "profile": "tiny"}
ITEMS = [{"id": f"song{i:02d}", "lyrics": f"words {i}"} for i in range(11)]


def toy_explain(item, prepared=None):
    """A record that depends only on the song (through its per-song seed): as song_record's does."""
    rng = np.random.default_rng(song_seed(SETTINGS["seed"], item["id"]))
    weights = rng.normal(size=4)
    record = {"label": int(rng.integers(9)), "weights": {f"w{j}": float(w) for j, w in enumerate(weights)},
              "song_seed": song_seed(SETTINGS["seed"], item["id"])}
    if prepared is not None:
        record["prepared"] = prepared
    return record


def _launched(records, n, items=ITEMS, settings=SETTINGS, explain_fn=toy_explain, **options):
    return [run_launched(items, explain_fn, records, Launch(rank, n), settings=settings, progress=False, **options)
            for rank in range(n)]


# ---------------------------------------------------------------- the environment
def test_launch_from_env_reads_torchrun_accelerate_and_slurm_arrays():
    assert launch_from_env({}) is None
    assert launch_from_env({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Launch(2, 4, 1, "torchrun/accelerate")
    assert Launch(2, 4).shard == (3, 4)
    slurm = launch_from_env({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "4",
                             "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"})
    assert (slurm.rank, slurm.world_size) == (2, 4)
    both = launch_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "RANK": "1",
                            "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (both.rank, both.world_size, both.local_rank) == (3, 6, 1) and both.source == "slurm array x torchrun/accelerate"
    assert launch_device(Launch(1, 2, 1), "cuda") == "cuda:1" and launch_device(Launch(1, 2, 1), "cpu") == "cpu"
    assert launch_device(None, "cuda") == "cuda"
    with pytest.raises(ValueError, match="only one of RANK and WORLD_SIZE"):
        launch_from_env({"RANK": "0"})
    with pytest.raises(ValueError, match="0 <= RANK < WORLD_SIZE"):
        launch_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        launch_from_env({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="contiguous"):            # --array=0-6:2
        launch_from_env({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
                         "SLURM_ARRAY_TASK_MAX": "6"})


def test_shard_paths_are_derived_from_the_records_path(tmp_path):
    assert shard_paths(tmp_path / "genre.jsonl", 2, 4) == (tmp_path / "genre.shard2of4.jsonl",
                                                           tmp_path / "genre.shard2of4.done.json")
    assert shard_paths(tmp_path / "plain", 1, 1)[0] == tmp_path / "plain.shard1of1"
    with pytest.raises(ValueError, match="looks like a shard file"):
        shard_paths(tmp_path / "genre.shard1of2.jsonl", 1, 2)


# ---------------------------------------------------------------- launched == one process
def test_launched_run_merges_to_the_single_process_bytes(tmp_path):
    single = tmp_path / "single.jsonl"
    run_global(ITEMS, toy_explain, single, settings=SETTINGS, progress=False)
    for n in (1, 3):
        records = tmp_path / f"launched{n}.jsonl"
        returned = _launched(records, n)
        assert returned[-1] == records and all(r != records for r in returned[:-1])   # the last one merged
        assert records.read_bytes() == single.read_bytes()                            # same records, same order
        assert [r["id"] for r in load_records(records)] == [item["id"] for item in ITEMS]   # split order, not sorted
    # a rerun of a finished launch redoes nothing and leaves the merge as it is
    before = (tmp_path / "launched3.jsonl").read_bytes()
    calls = []
    _launched(tmp_path / "launched3.jsonl", 3, explain_fn=lambda item: calls.append(item) or toy_explain(item))
    assert calls == [] and (tmp_path / "launched3.jsonl").read_bytes() == before
    assert shard_count(tmp_path / "launched3.jsonl") == 3


def test_more_ranks_than_songs_leave_empty_complete_shards(tmp_path):
    records = tmp_path / "r.jsonl"
    assert _launched(records, 6, items=ITEMS[:2])[-1] == records
    sizes = [len(load_records(shard_paths(records, k, 6)[0])) for k in range(1, 7)]
    assert sum(sizes) == 2 and sizes.count(0) >= 4          # idle ranks: an empty shard file each
    assert all(shard_paths(records, k, 6)[0].is_file() and shard_paths(records, k, 6)[1].is_file()
               for k in range(1, 7))
    single = tmp_path / "single.jsonl"
    run_global(ITEMS[:2], toy_explain, single, settings=SETTINGS, progress=False)
    assert records.read_bytes() == single.read_bytes()


def test_a_dead_rank_blocks_the_merge_and_resumes(tmp_path):
    records = tmp_path / "r.jsonl"
    mine = [item for item in ITEMS if shard_of(item["id"], 3) == 2]
    assert len(mine) >= 2
    seen = []

    def dies_on_second(item):
        seen.append(item["id"])
        if len(seen) == 2:
            raise KeyboardInterrupt("killed")
        return toy_explain(item)

    run_launched(ITEMS, toy_explain, records, Launch(0, 3), settings=SETTINGS, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_launched(ITEMS, dies_on_second, records, Launch(1, 3), settings=SETTINGS, progress=False)
    run_launched(ITEMS, toy_explain, records, Launch(2, 3), settings=SETTINGS, progress=False)
    assert not records.exists()                               # nobody merged: shard 2 is incomplete
    with pytest.raises(ShardsIncomplete, match=r"shard\(s\) 2/3 \(.*r\.shard2of3\.jsonl\)"):
        merge_shards(records, 3)
    with pytest.raises(ShardsIncomplete, match="2/3"):
        main(["merge", "--shards-of", str(records)])
    calls = []
    assert run_launched(ITEMS, lambda item: calls.append(item["id"]) or toy_explain(item), records, Launch(1, 3),
                        settings=SETTINGS, progress=False) == records
    assert calls == [item["id"] for item in mine[1:]]          # only the songs it had not finished
    single = tmp_path / "single.jsonl"
    run_global(ITEMS, toy_explain, single, settings=SETTINGS, progress=False)
    assert records.read_bytes() == single.read_bytes()


def test_mixed_settings_and_song_lists_across_ranks_are_refused(tmp_path):
    records = tmp_path / "r.jsonl"
    run_launched(ITEMS, toy_explain, records, Launch(0, 2), settings=SETTINGS, progress=False)
    with pytest.raises(ValueError, match=r"mixed settings across ranks: .*r\.shard2of2\.done\.json has "
                                         r"num_samples=20, .*r\.shard1of2\.done\.json has num_samples=10"):
        run_launched(ITEMS, toy_explain, records, Launch(1, 2), settings={**SETTINGS, "num_samples": 20},
                     progress=False)
    other = tmp_path / "o.jsonl"
    run_launched(ITEMS, toy_explain, other, Launch(0, 2), settings=SETTINGS, progress=False)
    with pytest.raises(ValueError, match="different song lists"):
        run_launched(ITEMS[:5], toy_explain, other, Launch(1, 2), settings=SETTINGS, progress=False)
    # a records file from a single-process run is not overwritten by a launch
    single = tmp_path / "single.jsonl"
    run_global(ITEMS[:3], toy_explain, single, settings=SETTINGS, progress=False)
    with pytest.raises(ValueError, match="not the merge of a 2-process run"):
        run_launched(ITEMS, toy_explain, single, Launch(0, 2), settings=SETTINGS, progress=False)
    # a shard file edited after it completed is refused by the merge
    edited = tmp_path / "e.jsonl"
    _launched(edited, 2)
    edited.unlink()
    with open(shard_paths(edited, 1, 2)[0], "ab") as handle:
        handle.write(b'{"id": "extra", "label": 0, "weights": {}}\n')
    with pytest.raises(ValueError, match=r"e\.shard1of2\.jsonl changed after shard 1/2 completed"):
        merge_shards(edited, 2)


# ---------------------------------------------------------------- prefetch
def test_prefetch_overlaps_the_next_song_and_changes_nothing(tmp_path):
    events, lock = [], threading.Lock()

    def prepare(item):
        with lock:
            events.append(("prepare start", item["id"], threading.current_thread().name))
        time.sleep(0.02)
        if item["id"] == "song03":
            raise ValueError(f"song {item['id']!r}: unreadable audio")
        return f"components of {item['id']}"

    def explain(item, prepared):
        assert prepared == f"components of {item['id']}"       # the song's own preparation
        time.sleep(0.02)
        with lock:
            events.append(("explain end", item["id"], threading.current_thread().name))
        return toy_explain(item, prepared)

    paths = {}
    for prefetch in (True, False):
        events.clear()
        paths[prefetch] = tmp_path / f"prefetch_{prefetch}.jsonl"
        run_global(ITEMS[:6], explain, paths[prefetch], settings=SETTINGS, progress=False, skip_bad=True,
                   prepare_fn=prepare, prefetch=prefetch)
        order = [(kind, song) for kind, song, _ in events]
        threads = {thread for kind, _, thread in events if kind == "prepare start"}
        if prefetch:       # song i+1 is being prepared, in another thread, before song i's explanation ends
            assert order.index(("prepare start", "song01")) < order.index(("explain end", "song00"))
            assert all(name.startswith("prefetch") for name in threads)
        else:
            assert order.index(("prepare start", "song01")) > order.index(("explain end", "song00"))
            assert threads == {threading.current_thread().name}
    assert paths[True].read_bytes() == paths[False].read_bytes()
    records = {r["id"]: r for r in load_records(paths[True])}
    assert records["song03"]["skipped"] == "ValueError: song 'song03': unreadable audio"   # reported against its id
    assert records["song04"]["prepared"] == "components of song04"
    with pytest.raises(ValueError, match="song 'song03'"):
        run_global(ITEMS[:6], explain, tmp_path / "strict.jsonl", settings=SETTINGS, progress=False,
                   prepare_fn=prepare, prefetch=True)
    assert [r["id"] for r in load_records(tmp_path / "strict.jsonl")] == ["song00", "song01", "song02"]


def test_global_explain_with_and_without_prefetch_writes_the_same_records(small_corpus, tmp_path):
    import torch

    from utils.config import GENRES, get_profile
    from utils.model_related.models import build_model
    from utils.model_related.pipeline import prepare_tokens
    from utils.musiclime.global_explain import global_explain
    from utils.musiclime.predict import ModelPredictor

    profile = get_profile("tiny")
    tokens = prepare_tokens(profile, small_corpus)
    torch.manual_seed(0)
    predictor = ModelPredictor(build_model("multimodal", profile, len(GENRES), vocab_size=len(tokens.tokenizer)),
                               profile, tokens, device="cpu")
    paths = [global_explain(profile, "genre", "multimodal", "both", tmp_path / f"{prefetch}.jsonl",
                            corpus_dir=small_corpus, predictor=predictor, num_samples=40, limit=2, progress=False,
                            prefetch=prefetch, num_threads=1) for prefetch in (True, False)]
    assert paths[0].read_bytes() == paths[1].read_bytes() and len(load_records(paths[0])) == 2
    assert "vocals0" in load_records(paths[0])[0]["weights"]


# ---------------------------------------------------------------- torchrun, for real
@pytest.mark.filterwarnings("ignore:num_samples=20 rows")
def test_torchrun_runs_one_process_per_rank_and_merges(small_corpus, tmp_path):
    """``python -m torch.distributed.run --nproc_per_node 2`` on CPU: 2 ranks, merged = one process."""
    import torch

    from utils.config import GENRES, get_profile
    from utils.model_related.models import build_model, save_model
    from utils.model_related.pipeline import prepare_tokens

    profile = get_profile("tiny")
    tokens = prepare_tokens(profile, small_corpus)
    torch.manual_seed(0)
    save_model(build_model("lyrics", profile, 9, vocab_size=len(tokens.tokenizer)),
               tmp_path / "runs" / "genre" / "lyrics" / "best", task="genre", class_names=list(GENRES), profile="tiny")
    args = ["-m", "utils.global_run", "explain", "--kind", "lyrics", "--corpus-dir", str(small_corpus),
            "--run-dir", str(tmp_path / "runs"), "--num-samples", "20", "--limit", "4", "--no-progress",
            "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(ROOT)
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                               "2", *args, "--records", str(tmp_path / "launched.jsonl")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert main(args[3:] + ["--records", str(tmp_path / "single.jsonl")]) == 0
    assert (tmp_path / "launched.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()
    assert (tmp_path / "launched.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.glob("launched.shard*of2.jsonl")) == ["launched.shard1of2.jsonl",
                                                                                 "launched.shard2of2.jsonl"]
    # --shard k/n under a launcher would make every rank do the same shard
    with pytest.raises(SystemExit, match="--shard auto"):
        os.environ.update(RANK="0", WORLD_SIZE="2")
        try:
            main(args[3:] + ["--records", str(tmp_path / "x.jsonl"), "--shard", "1/2"])
        finally:
            del os.environ["RANK"], os.environ["WORLD_SIZE"]


# ---------------------------------------------------------------- the benchmarks' arithmetic
def test_scale_benchmark_helpers(tmp_path):
    from utils.scale_benchmark import corpus_view, songs_per_hour, without_timing

    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    (corpus / "separations" / "hpss").mkdir(parents=True)
    (corpus / "test.jsonl").write_text("{}\n")
    view = corpus_view(corpus, tmp_path / "view")
    assert sorted(p.name for p in view.iterdir()) == ["audio", "test.jsonl"]     # no separation cache
    assert (view / "audio").resolve() == (corpus / "audio").resolve()
    with pytest.raises(FileNotFoundError, match="no test.jsonl"):
        corpus_view(tmp_path / "not-a-corpus", tmp_path / "v3")
    assert songs_per_hour(20, 90.0) == 800.0
    assert without_timing([{"id": "a", "seconds": 3, "settings": {"wall": 1, "seed": 2}}]) == \
        [{"id": "a", "settings": {"seed": 2}}]


def test_paper_cost_flops_and_projection():
    import torch

    from utils.config import get_profile
    from utils.model_related.models import build_model
    from utils.paper_cost import GPUS, encoder_flops, paper_cost_markdown, project

    profile = get_profile("tiny")
    torch.manual_seed(0)
    model = build_model("multimodal", profile, 9, vocab_size=200).eval()
    flops = encoder_flops(model, torch.zeros(1, model.audio_encoder.config.max_length,
                                             model.audio_encoder.config.num_mel_bins),
                          torch.ones(1, 16, dtype=torch.long), torch.ones(1, 16, dtype=torch.long))
    width = model.audio_encoder.config.hidden_size + model.lyrics_encoder.config.hidden_size
    assert flops["head"] == 2 * width * 9                      # one Linear(width, 9) on one row
    text = model.lyrics_encoder.config
    per_layer = 2 * 16 * (4 * text.hidden_size ** 2 + 2 * text.hidden_size * text.intermediate_size) \
        + 2 * 2 * 16 * 16 * text.hidden_size                   # projections + feed-forward, then QK^T and AV
    pooler = 2 * text.hidden_size ** 2
    assert flops["text_encoder"] == text.num_hidden_layers * per_layer + pooler
    assert flops["audio_encoder"] > flops["text_encoder"] > 0

    per_row = {"composition": 0.001, "audio_features": 0.05, "text_features": 0.002, "audio_encoder": 0.5,
               "text_encoder": 0.5, "head": 0.0, "surrogate": 0.0001}
    results = {"flops_per_row": {"audio_encoder": 2e11, "text_encoder": 1.5e11, "head": 0.0},
               "fast": {"per_row": per_row, "seconds": {k: 50 * v for k, v in per_row.items()}, "wall": 50.2,
                        "outside_model_share": 0.004},
               "authors_loop": {"per_row": {"composition": 0.01, "features": 0.2, "model": 1.0, "surrogate": 0.0001},
                                "seconds": {"composition": 0.5, "features": 10.0, "model": 50.0, "surrogate": 0.005},
                                "wall": 60.5, "outside_model_share": 0.17},
               "separation_s": {"oracle_load": 0.1, "hpss": 4.0},
               "audio_features": {"setup": 2.0, "rows": 0.05, "per_row": 0.001, "method": "table"},
               "surrogate_at_paper_n_s": 0.5, "profile": "paper", "device": "cpu",
               "machine": {"cpu_count": 2, "torch_threads": 2, "load_average": [1.0]}, "song": "s", "clip_samples": 1,
               "sample_rate": 44100, "n_audio": 40, "n_words": 30, "max_tokens": 256, "num_samples": 50,
               "authors_rows": 50, "chunk_size": 8}
    p = project(results, mfu=0.5, songs=100)
    h100 = p["gpus"]["H100 SXM (bf16 dense, 989 TFLOP/s)"]
    model_s = 5000 * 3.5e11 / (GPUS["H100 SXM (bf16 dense, 989 TFLOP/s)"] * 0.5)
    assert h100["model_s"] == pytest.approx(model_s)
    cpu_side = 2.0 + 5000 * (0.001 + 0.002 + 0.001)            # set-up once; composition, text, audio per row
    assert h100["explanation_s"]["fast, CPU-side phases as measured"] == pytest.approx(model_s + cpu_side + 0.5)
    authors = h100["explanation_s"]["authors' loop (features per clip on the CPU)"]
    assert authors == pytest.approx(model_s + 0.5 + 5000 * 0.21)
    assert h100["global_run_gpu_hours_prefetch"]["fast, CPU-side phases as measured"] == pytest.approx(
        100 * max(model_s + cpu_side + 0.5, 4.0) / 3600)
    assert p["measured_model_tflops"] == pytest.approx(3.5e11 / 1.0 / 1e12)
    results["projection"] = p
    text = paper_cost_markdown(results)
    assert "| audio features (set-up + rows) | 2.50 | 50.0 | 10.00 | 200.0 |" in text and "Assumptions: the model runs at" in text
