"""Global MusicLIME runs from the command line: explain every song of a split, then aggregate.

    python -m utils.global_run --profile tiny --task genre --kind multimodal --mode both \\
        --split test --num-samples 1000 --records results/global/genre_multimodal_both.jsonl \\
        [--shard 2/8] [--limit N] [--songs-per-class K] [--separator oracle|hpss|openunmix] \\
        [--corpus-dir data/synthetic] [--run-dir runs/tiny] [--seed 0] [--batch-size 250] [--threads 1] \\
        [--measures results/global/genre_multimodal_both.csv] [--bootstrap 200]
    python -m utils.global_run merge --task genre --records shard1.jsonl shard2.jsonl ... \\
        --out results/global/genre_multimodal_both.csv [--merged-records all.jsonl] [--merge-case] [--bootstrap 200]
    torchrun --standalone --nproc_per_node 4 -m utils.global_run explain ... --records R.jsonl
    accelerate launch --num_processes 4 -m utils.global_run explain ... --records R.jsonl
    python -m utils.global_run merge --shards-of R.jsonl      # a launched run's shards, by hand

The first explains with :func:`utils.musiclime.global_explain.global_explain` (append-only,
resumable after a kill, shardable) and, for an unsharded run, writes the measures table; the
second merges record files (e.g. one per shard) with
:func:`utils.musiclime.records.aggregate_records` and writes the measures table as CSV.

Under a launcher (torchrun, ``accelerate launch``, a Slurm array with ``--shard auto``) each
process explains its shard into ``R.shard{k}of{n}.jsonl`` and the last one to finish merges them
into ``R.jsonl`` (the records one process writes) and writes the measures table
(:mod:`utils.musiclime.launch`). ``merge --shards-of R.jsonl`` does that merge by hand and
refuses while a shard is missing or incomplete.

Both commands add 95 % bootstrap intervals over songs to I_AVG, I_LIME and I_H (``--bootstrap B``
replicates, default 200, seeded by ``--seed``; :mod:`utils.musiclime.bootstrap`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from utils.config import KIND_MODES, MODEL_KINDS, MODES, PROFILES, SEPARATORS, TASKS, num_samples_arg
from utils.io import refuse_clobber
from utils.musiclime.aggregate import write_measures
from utils.musiclime.bootstrap import BOOTSTRAP_SAMPLES
from utils.musiclime.global_explain import global_explain
from utils.musiclime.launch import launch_from_env, merge_shards, missing_shards, shard_count
from utils.musiclime.records import aggregate_records, append_record, load_records, merge_records
from utils.musiclime.sampling import SAMPLING


# ---------------------------------------------------------------- command line
def default_measures_path(records: str | os.PathLike) -> Path:
    """Where an unsharded run writes its measures table: ``<records>`` with the suffix ``.csv``,
    or ``<records>.measures.csv`` when that would be the records file itself."""
    records = Path(records)
    return records.with_suffix(".csv") if records.suffix != ".csv" else records.with_name(records.name[:-4]
                                                                                           + ".measures.csv")


def _explain_main(argv: list[str]) -> int:
    from utils.config import get_profile

    parser = argparse.ArgumentParser(prog="python -m utils.global_run",
                                     description="Explain every song of a split with MusicLIME (global run).",
                                     epilog="Merge record files (shards) into a measures CSV: "
                                            "python -m utils.global_run merge --help")
    parser.add_argument("--profile", default="tiny", choices=sorted(PROFILES))
    parser.add_argument("--task", default="genre", choices=sorted(TASKS))
    parser.add_argument("--kind", default="multimodal", choices=list(MODEL_KINDS))
    parser.add_argument("--mode", "--modality", dest="mode", default=None, choices=list(MODES),
                        help="explainer mode (--modality: its old name); default: 'both' for multimodal, "
                             "the model's own input otherwise")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-samples", type=num_samples_arg, default=None,
                        help="rows per song, or 'auto' (antithetic pairs until the top 10 is stable); default: the "
                             "profile's explain_samples")
    parser.add_argument("--kernel", default="paper", choices=["paper", "locality"],
                        help="surrogate kernel: paper (flat, the authors') or locality (distance x100 as lime_text)")
    parser.add_argument("--records", required=True, help="JSON-lines record file (resumed when it exists)")
    parser.add_argument("--shard", default=None,
                        help="k/n: explain only shard k of n into --records; 'auto': this process's shard from "
                             "the launcher (RANK/WORLD_SIZE of torchrun or accelerate, SLURM_ARRAY_TASK_ID/COUNT "
                             "of a Slurm array) into its own file, merged into --records by the last to finish. "
                             "Default: auto under a launcher of more than one process")
    parser.add_argument("--limit", type=int, default=None, help="only the first N songs")
    parser.add_argument("--songs-per-class", type=int, default=None, help="only the first K songs of each class")
    parser.add_argument("--separator", default=None, choices=list(SEPARATORS), help="default: the profile's")
    parser.add_argument("--corpus-dir", default="data/synthetic")
    parser.add_argument("--run-dir", default=None, help="default: runs/<profile>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--measures", default=None,
                        help="CSV of the measures table (default for an unsharded run: the records path with the "
                             "suffix .csv, or <records>.measures.csv when the records file itself ends in .csv)")
    parser.add_argument("--merge-case", action="store_true", help="merge words differing only in case")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_SAMPLES,
                        help="bootstrap replicates over songs for the 95 %% intervals of I_AVG, I_LIME, I_H "
                             f"(default {BOOTSTRAP_SAMPLES}; 0: none)")
    parser.add_argument("--replace-mismatched", action="store_true",
                        help="move a records file made with other settings aside instead of refusing")
    parser.add_argument("--sampling", default="iid", choices=list(SAMPLING),
                        help="neighbourhood design: iid (the paper), antithetic (same cost, less noise), crossed "
                             "(multimodal model in both mode: a tenth of the encoder passes)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip a song that cannot be read (recorded with its reason) instead of stopping")
    parser.add_argument("--no-prefetch", action="store_true",
                        help="do not load and separate the next song in a background thread during this one")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    launch, shard = _launch(args.shard)
    measures_path = args.measures or (None if shard else default_measures_path(args.records))
    refuse_clobber({"--measures": measures_path}, {"--records": args.records})
    profile = get_profile(args.profile)
    mode = args.mode or KIND_MODES[args.kind][0]
    run_dir = args.run_dir or f"runs/{args.profile}"
    tick = time.perf_counter()
    records = global_explain(profile, args.task, args.kind, mode, args.records, split=args.split,
                             corpus_dir=args.corpus_dir, run_dir=run_dir, num_samples=args.num_samples,
                             seed=args.seed, batch_size=args.batch_size, separator=args.separator, shard=shard,
                             songs_per_class=args.songs_per_class, limit=args.limit,
                             on_mismatch="replace" if args.replace_mismatched else "raise", num_threads=args.threads,
                             progress=not args.no_progress, sampling=args.sampling, skip_bad=args.skip_bad,
                             launch=launch, prefetch=not args.no_prefetch, kernel=args.kernel)
    print(f"explain wall: {time.perf_counter() - tick:.3f} s (model load, songs and merge; start-up excluded)")
    if launch is not None and Path(records) != Path(args.records):
        k, n = launch.shard
        print(f"shard {k}/{n} ({launch.source}) complete: {records} ({len(load_records(records, repair=False))} "
              f"songs); shards {missing_shards(args.records, n)} still running: the last to finish merges into "
              f"{args.records}")
        return 0
    stored = load_records(records, repair=False)
    skipped = [r["id"] for r in stored if "skipped" in r]
    print(f"records: {records} ({len(stored)} songs" + (f", {len(skipped)} skipped: {skipped[:10]}" if skipped
                                                          else "") + ")")
    if measures_path:
        table = aggregate_records([records], TASKS[args.task], merge_case=args.merge_case, bootstrap=args.bootstrap,
                                  seed=args.seed)
        print(f"measures: {write_measures(table, measures_path)} ({len(table)} rows)")
    return 0


def _launch(shard: str | None):
    """``(launch, shard)``: a :class:`utils.musiclime.launch.Launch` for ``--shard auto`` (or none given)
    under a launcher of several processes, else ``(None, shard)``."""
    found = launch_from_env()
    if shard not in (None, "auto"):
        if found is not None and found.world_size > 1:
            raise SystemExit(f"--shard {shard} under a launcher of {found.world_size} processes ({found.source}) "
                             "would make every process explain the same shard; give --shard auto (or none)")
        return None, shard
    if found is None or found.world_size == 1:
        return None, None
    return found, None


def _merge_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.global_run merge",
                                     description="Merge record files (shards) and write the measures table (CSV).")
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--records", nargs="+", help="record files of one run (e.g. its shards)")
    sources.add_argument("--shards-of", default=None, metavar="RECORDS",
                         help="merge the shards of a launched run (RECORDS.shard{k}of{n}.jsonl) into RECORDS, "
                              "refusing while one is missing or incomplete")
    parser.add_argument("--world-size", type=int, default=None,
                        help="with --shards-of: the number of shards (default: from the shard files found)")
    parser.add_argument("--out", default=None,
                        help="CSV of the measures table (required with --records; with --shards-of default: as an "
                             "unsharded explain run)")
    parser.add_argument("--task", default=None, choices=sorted(TASKS),
                        help="class names of this task (default: the class_names stored in the records)")
    parser.add_argument("--merged-records", default=None, help="also write the merged records here (JSON lines)")
    parser.add_argument("--merge-case", action="store_true", help="merge words differing only in case")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_SAMPLES,
                        help=f"bootstrap replicates over songs (default {BOOTSTRAP_SAMPLES}; 0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    args = parser.parse_args(argv)
    if args.shards_of:
        if args.merged_records:
            parser.error("--merged-records goes with --records; --shards-of writes the merged records to RECORDS")
        n = args.world_size or shard_count(args.shards_of)
        args.records = [str(merge_shards(args.shards_of, n))]
        print(f"merged records: {args.records[0]} ({n} shards)")
        args.out = args.out or str(default_measures_path(args.shards_of))
    elif args.out is None:
        parser.error("--out is required with --records")
    refuse_clobber({"--out": args.out, "--merged-records": args.merged_records}, {"--records": args.records})
    refuse_clobber({"--merged-records": args.merged_records}, {"--out": args.out})
    records = merge_records(args.records)
    if not records:
        raise SystemExit(f"no records in {args.records}")
    if args.task:
        class_names = list(TASKS[args.task])
    else:
        class_names = (records[0].get("settings") or {}).get("class_names")
        if not class_names:
            raise SystemExit("the records store no class_names; pass --task")
    table = aggregate_records(args.records, class_names, merge_case=args.merge_case, bootstrap=args.bootstrap,
                              seed=args.seed)
    print(f"measures: {write_measures(table, args.out)} ({len(records)} songs, {len(table)} rows)")
    if args.merged_records:
        target = Path(args.merged_records)
        if target.exists():
            raise SystemExit(f"{target} exists; choose a new file for the merged records")
        target.parent.mkdir(parents=True, exist_ok=True)
        for record in records:
            append_record(target, record)
        print(f"merged records: {target}")
    return 0




def main(argv: list[str] | None = None) -> int:
    """``python -m utils.global_run [explain] ...`` or ``python -m utils.global_run merge|aggregate ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("merge", "aggregate"):
        return _merge_main(argv[1:])
    if argv and argv[0] == "explain":
        argv = argv[1:]
    return _explain_main(argv)


if __name__ == "__main__":
    sys.exit(main())
