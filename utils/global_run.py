"""Global MusicLIME runs from the command line: explain every song of a split, then aggregate.

    python -m utils.global_run --profile tiny --task genre --kind multimodal --mode both \\
        --split test --num-samples 1000 --records results/global/genre_multimodal_both.jsonl \\
        [--shard 2/8] [--limit N] [--songs-per-class K] [--separator oracle|hpss|openunmix] \\
        [--corpus-dir data/synthetic] [--run-dir runs/tiny] [--seed 0] [--batch-size 250] [--threads 1] \\
        [--measures results/global/genre_multimodal_both.csv]
    python -m utils.global_run merge --task genre --records shard1.jsonl shard2.jsonl ... \\
        --out results/global/genre_multimodal_both.csv [--merged-records all.jsonl] [--merge-case]

The first explains with :func:`utils.musiclime.global_explain.global_explain` (append-only,
resumable after a kill, shardable) and, for an unsharded run, writes the measures table; the
second merges record files (e.g. one per shard) with
:func:`utils.musiclime.records.aggregate_records` and writes the measures table as CSV.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from utils.config import KIND_MODES, MODEL_KINDS, MODES, PROFILES, SEPARATORS, TASKS
from utils.io import refuse_clobber
from utils.musiclime.aggregate import write_measures
from utils.musiclime.global_explain import global_explain
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
    parser.add_argument("--num-samples", type=_num_samples, default=None,
                        help="rows per song, or 'auto' (antithetic pairs until the top 10 is stable); default: the "
                             "profile's explain_samples")
    parser.add_argument("--kernel", default="paper", choices=["paper", "locality"],
                        help="surrogate kernel: paper (flat, the authors') or locality (distance x100 as lime_text)")
    parser.add_argument("--records", required=True, help="JSON-lines record file (resumed when it exists)")
    parser.add_argument("--shard", default=None, help="k/n: explain only shard k of n")
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
    parser.add_argument("--replace-mismatched", action="store_true",
                        help="move a records file made with other settings aside instead of refusing")
    parser.add_argument("--sampling", default="iid", choices=list(SAMPLING),
                        help="neighbourhood design: iid (the paper), antithetic (same cost, less noise), crossed "
                             "(multimodal model in both mode: a tenth of the encoder passes)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip a song that cannot be read (recorded with its reason) instead of stopping")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    measures_path = args.measures or (None if args.shard else default_measures_path(args.records))
    refuse_clobber({"--measures": measures_path}, {"--records": args.records})
    profile = get_profile(args.profile)
    mode = args.mode or KIND_MODES[args.kind][0]
    run_dir = args.run_dir or f"runs/{args.profile}"
    records = global_explain(profile, args.task, args.kind, mode, args.records, split=args.split,
                             corpus_dir=args.corpus_dir, run_dir=run_dir, num_samples=args.num_samples,
                             seed=args.seed, batch_size=args.batch_size, separator=args.separator, shard=args.shard,
                             songs_per_class=args.songs_per_class, limit=args.limit,
                             on_mismatch="replace" if args.replace_mismatched else "raise", num_threads=args.threads,
                             progress=not args.no_progress, sampling=args.sampling, skip_bad=args.skip_bad,
                             kernel=args.kernel)
    stored = load_records(records, repair=False)
    skipped = [r["id"] for r in stored if "skipped" in r]
    print(f"records: {records} ({len(stored)} songs" + (f", {len(skipped)} skipped: {skipped[:10]}" if skipped
                                                          else "") + ")")
    if measures_path:
        table = aggregate_records([records], TASKS[args.task], merge_case=args.merge_case)
        print(f"measures: {write_measures(table, measures_path)} ({len(table)} rows)")
    return 0


def _merge_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.global_run merge",
                                     description="Merge record files (shards) and write the measures table (CSV).")
    parser.add_argument("--records", nargs="+", required=True, help="record files of one run (e.g. its shards)")
    parser.add_argument("--out", required=True, help="CSV of the measures table")
    parser.add_argument("--task", default=None, choices=sorted(TASKS),
                        help="class names of this task (default: the class_names stored in the records)")
    parser.add_argument("--merged-records", default=None, help="also write the merged records here (JSON lines)")
    parser.add_argument("--merge-case", action="store_true", help="merge words differing only in case")
    args = parser.parse_args(argv)
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
    table = aggregate_records(args.records, class_names, merge_case=args.merge_case)
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


def _num_samples(text: str) -> int | str:
    """``--num-samples``: a positive int or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--num-samples must be an int or 'auto', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"--num-samples must be >= 2, got {value}")
    return value


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
