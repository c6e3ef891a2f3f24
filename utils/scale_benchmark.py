"""Throughput of a global run: songs per hour with 1 and 2 processes, and what the prefetch thread saves.

    python -m utils.scale_benchmark --songs 20 --corpus-dir data/synthetic --run-dir runs/tiny \\
        [--separator hpss] [--kind multimodal] [--num-samples 1000] [--threads 1] [--random-model] \\
        [--out results/scale.md]

Runs the real command line (:mod:`utils.global_run`) in fresh processes, on the first ``--songs``
test songs, each run on its own view of the corpus (symlinks; an empty separation cache, so HPSS or
Open-Unmix is paid by every run and nothing is written into the corpus):

* ``1 process``            -- ``python -m utils.global_run explain ...`` (prefetch on, the default);
* ``1 process, no prefetch`` -- the same with ``--no-prefetch`` (load and separate, then explain);
* ``2 processes``          -- ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m
  utils.global_run explain ...`` (each rank its shard; the last merges).

Each process gets ``--threads`` torch threads (default 1: on a 2-core machine, 2 processes x 1
thread use the cores without OpenMP contention). It prints wall seconds (start-up included: imports,
model load), songs per hour, the 2-process scaling ratio and the prefetch gain, and checks that the
three runs' records are identical (record contents, with any timing field removed; the records
hold none today, so the files are also compared byte for byte). ``--random-model`` saves an
untrained tiny model first (for a machine without ``runs/tiny``; the cost does not depend on the
weights). The figures depend on the machine and its load: run it on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from utils.config import MODEL_KINDS, PROJECT_ROOT, SEPARATORS

TIMING_KEYS = frozenset({"seconds", "wall", "wall_s", "timings", "elapsed"})
"""Record keys that would hold times (compared records drop them, at any depth)."""


def corpus_view(corpus_dir: str | os.PathLike, view: str | os.PathLike) -> Path:
    """A folder whose entries are symlinks to ``corpus_dir``'s, without its ``separations`` cache.

    Separating into the view's own ``separations/`` leaves the corpus untouched and makes every run
    pay for separation.
    """
    corpus_dir, view = Path(corpus_dir).resolve(), Path(view)
    if not (corpus_dir / "test.jsonl").is_file():
        raise FileNotFoundError(f"--corpus-dir {corpus_dir} has no test.jsonl (make the corpus first)")
    view.mkdir(parents=True, exist_ok=False)
    for entry in corpus_dir.iterdir():
        if entry.name != "separations":
            (view / entry.name).symlink_to(entry)
    return view


def without_timing(value):
    """``value`` (records, JSON-like) with every key of :data:`TIMING_KEYS` removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def songs_per_hour(songs: int, seconds: float) -> float:
    """Throughput: ``3600 * songs / seconds``."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return 3600.0 * songs / seconds


def save_random_model(profile_name: str, corpus_dir: Path, run_dir: Path, task: str, kind: str, seed: int = 0) -> Path:
    """An untrained model of the profile saved as ``run_dir/task/kind/best`` (what ``global_run`` loads)."""
    import torch

    from utils.config import TASKS, get_profile
    from utils.model_related.models import build_model, save_model
    from utils.model_related.pipeline import prepare_tokens

    profile = get_profile(profile_name)
    tokens = prepare_tokens(profile, corpus_dir)
    torch.manual_seed(seed)
    model = build_model(kind, profile, len(TASKS[task]), vocab_size=len(tokens.tokenizer))
    best = run_dir / task / kind / "best"
    save_model(model, best, task=task, class_names=list(TASKS[task]), profile=profile_name)
    return run_dir


def _run(command: Sequence[str], log) -> tuple[float, float]:
    """``(wall seconds of the command, longest 'explain wall' a process of it printed)``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    log("$ " + " ".join(command))
    tick = time.perf_counter()
    done = subprocess.run(list(command), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    if done.returncode != 0:
        raise RuntimeError(f"{command[:6]}... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    inner = [float(m) for m in re.findall(r"explain wall: ([0-9.]+) s", done.stdout)]
    if not inner:
        raise RuntimeError(f"{command[:6]}... printed no 'explain wall' line:\n{done.stdout[-2000:]}")
    return seconds, max(inner)


def run_scale_benchmark(corpus_dir: Path, run_dir: Path | None, work_dir: Path, songs: int = 20,
                        profile: str = "tiny", task: str = "genre", kind: str = "multimodal",
                        separator: str | None = None, num_samples: int | None = None, threads: int = 1,
                        random_model: bool = False, repeats: int = 1, log=print) -> dict:
    """The three runs of the module doc, ``repeats`` times in rotated order (the fastest run of each
    kept, as ``timeit`` does: load from other processes only ever adds time; the rotation lets warm
    caches help every kind alike); returns the JSON-ready results."""
    from utils.musiclime.records import load_records

    work_dir = Path(work_dir)
    if random_model:
        run_dir = save_random_model(profile, corpus_view(corpus_dir, work_dir / "corpus-model"), work_dir / "runs",
                                    task, kind)
    if run_dir is None or not (Path(run_dir) / task / kind / "best").is_dir():
        raise FileNotFoundError(f"no trained {kind} model under --run-dir {run_dir}; train it (the main job) or "
                                "pass --random-model")
    base = ["-m", "utils.global_run", "explain", "--profile", profile, "--task", task, "--kind", kind,
            "--run-dir", str(Path(run_dir).resolve()), "--limit", str(songs), "--threads", str(threads),
            "--no-progress"]
    base += ["--separator", separator] if separator else []
    base += ["--num-samples", str(num_samples)] if num_samples else []
    runs = {"1 process": ([sys.executable], []),
            "1 process, no prefetch": ([sys.executable], ["--no-prefetch"]),
            "2 processes": ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                             "2"], [])}
    results = {"songs": songs, "profile": profile, "kind": kind, "separator": separator or "profile default",
               "num_samples": num_samples, "threads_per_process": threads, "repeats": repeats, "cpu_count": os.cpu_count(),
               "load_average_start": list(os.getloadavg()), "runs": {}}
    records, timings = {}, {name: [] for name in runs}
    names = list(runs)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            launcher, extra = runs[name]
            number = f"{names.index(name)}-{repeat}"
            view = corpus_view(corpus_dir, work_dir / f"corpus{number}")
            path = work_dir / f"records{number}.jsonl"
            seconds, inner = _run(launcher + base + extra + ["--corpus-dir", str(view), "--records", str(path)], log)
            records[f"{name}, run {repeat + 1}"] = path
            timings[name].append((seconds, inner))
            log(f"{name:24s} {seconds:8.1f} s  {songs_per_hour(songs, seconds):8.0f} songs/h; without start-up "
                f"{inner:8.1f} s {songs_per_hour(songs, inner):8.0f} songs/h")
    for name, runs_of_name in timings.items():
        seconds, inner = min(runs_of_name)
        results["runs"][name] = {"wall_s": seconds, "songs_per_hour": songs_per_hour(songs, seconds),
                                 "explain_s": inner, "explain_songs_per_hour": songs_per_hour(songs, inner),
                                 "wall_runs_s": [t[0] for t in runs_of_name]}
    for key, suffix in (("wall_s", ""), ("explain_s", "_without_startup")):
        one, two, plain = (results["runs"][k][key] for k in ("1 process", "2 processes", "1 process, no prefetch"))
        results["scaling_ratio" + suffix] = one / two
        results["prefetch_gain" + suffix] = plain / one
    contents = {name: without_timing(load_records(path, repair=False)) for name, path in records.items()}
    reference = contents["1 process, run 1"]
    results["records_identical"] = all(c == reference for c in contents.values()) and len(reference) == songs
    results["records_byte_identical"] = len({path.read_bytes() for path in records.values()}) == 1
    results["load_average_end"] = list(os.getloadavg())
    return results


def scale_markdown(results: dict) -> str:
    """The results as a markdown table and notes."""
    lines = [f"Global run throughput: profile `{results['profile']}`, {results['kind']} model, separator "
             f"{results['separator']}, {results['songs']} songs, {results['threads_per_process']} torch thread(s) per "
             f"process, {results['cpu_count']} CPU cores (load average at start "
             f"{results['load_average_start'][0]:.2f}, end {results['load_average_end'][0]:.2f}); fastest of "
             f"{results['repeats']} run(s) of each, in rotated order. Wall: the whole "
             "command; without start-up: from model load to the merged records (the longest process), imports and "
             "the launcher's start excluded.", "",
             "| run | wall (s) | songs / hour | without start-up (s) | songs / hour |", "|---|---|---|---|---|"]
    for name, run in results["runs"].items():
        lines.append(f"| {name} | {run['wall_s']:.1f} | {run['songs_per_hour']:.0f} | {run['explain_s']:.1f} | "
                     f"{run['explain_songs_per_hour']:.0f} |")
    lines += ["", f"Scaling 1 -> 2 processes: {results['scaling_ratio']:.2f}x ({results['scaling_ratio_without_startup']:.2f}x "
              f"without start-up). Prefetch (the next song's loading and separation in a background thread): "
              f"{results['prefetch_gain']:.2f}x ({results['prefetch_gain_without_startup']:.2f}x) vs without. Records "
              f"of all runs identical: {results['records_identical']} (byte for byte: "
              f"{results['records_byte_identical']})."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m utils.scale_benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=20)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--task", default="genre")
    parser.add_argument("--kind", default="multimodal", choices=list(MODEL_KINDS))
    parser.add_argument("--separator", default=None, choices=list(SEPARATORS), help="default: the profile's")
    parser.add_argument("--num-samples", type=int, default=None, help="default: the profile's explain_samples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--corpus-dir", type=Path, default=PROJECT_ROOT / "data" / "synthetic")
    parser.add_argument("--run-dir", type=Path, default=None, help="default runs/<profile>")
    parser.add_argument("--random-model", action="store_true", help="an untrained model instead of --run-dir's")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each kind, in rotated order (fastest kept)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown) and JSON beside")
    args = parser.parse_args(argv)
    if args.songs < 2:
        parser.error("--songs must be at least 2 (one per process)")
    run_dir = args.run_dir or PROJECT_ROOT / "runs" / args.profile
    with tempfile.TemporaryDirectory(prefix="scale-benchmark-") as work:
        results = run_scale_benchmark(args.corpus_dir, run_dir, Path(work), args.songs, args.profile, args.task,
                                      args.kind, args.separator, args.num_samples, args.threads, args.random_model,
                                      args.repeats)
    text = scale_markdown(results)
    print()
    print(text)
    if args.out:
        from utils.io import atomic_write

        atomic_write(args.out, "# Global run throughput\n\nWritten by `python -m utils.scale_benchmark`.\n\n" + text)
        atomic_write(Path(args.out).with_suffix(".json"), json.dumps(results, indent=1))
        print("wrote", args.out)
    return results


if __name__ == "__main__":
    main()
