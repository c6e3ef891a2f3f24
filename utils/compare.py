"""The comparison table: MusicLIME variants against KernelSHAP, occlusion and a random ranking.

On the synthetic corpus (planted cues known), test songs round-robin over the genres::

    python -m utils.compare --run-dir runs/tiny --corpus-dir data/synthetic --songs 20 --num-samples 1000

On your own song (a wav/flac/ogg/mp3, its lyrics as a text file and a saved model folder)::

    python -m utils.compare --audio my_song.wav --lyrics my_song.txt --model runs/tiny/genre/multimodal \
        [--tokenizer data/synthetic/tokenizer] [--separator hpss]

Writes ``<out>/comparison.md`` (the table), ``comparison.csv``, ``comparison.png`` (mean deletion and
insertion curves) and ``songs.json`` (every song's records); default ``--out`` is ``results/comparison``
for the corpus and ``explanations/compare_<audio name>`` for a song. Every method explains the model's
predicted class over the same features with ``--seeds`` seeds (stability = mean pairwise top-10 overlap);
deletion / insertion AOPC are of the first seed's ranking (:mod:`utils.musiclime.faithfulness`); KernelSHAP
gets as many model rows as MusicLIME (``--num-samples``). ``--methods`` picks rows
(:data:`utils.musiclime.compare.METHODS`); a method named there that cannot explain the model (crossed
sampling of a model that is not late fusion) stops with exit status 2 and a message naming both, while
in the default list it is skipped with a note, as is a MusicLIME variant the installed ``explain`` does
not take yet.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from utils.config import KIND_MODES, TASKS
from utils.io import atomic_write
from utils.musiclime.adaptive import AutoTarget
from utils.musiclime.compare import (METHODS, UnsupportedExplainer, compare_song, comparison_table,
                                     paired_differences, plot_comparison, runnable_methods, table_markdown)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils.compare", description=__doc__.split("\n\n")[0])
    source = parser.add_argument_group("synthetic corpus")
    source.add_argument("--corpus-dir", default="data/synthetic")
    source.add_argument("--run-dir", default="runs/tiny", help="trained models (read only)")
    source.add_argument("--task", default="genre", choices=sorted(TASKS))
    source.add_argument("--kind", default="multimodal", choices=["multimodal", "audio", "lyrics"])
    source.add_argument("--songs", type=int, default=20, help="test songs, round-robin over the genres")
    song = parser.add_argument_group("your own song")
    song.add_argument("--audio", default=None, help="audio file; with --model (and --lyrics)")
    song.add_argument("--lyrics", default=None, help="UTF-8 text file of the lyrics")
    song.add_argument("--model", default=None, help="saved model folder (its model.json says task and kind)")
    song.add_argument("--separator", default="hpss", choices=["hpss", "openunmix"])
    song.add_argument("--tokenizer", default=None,
                      help="the lyrics tokenizer the model was trained with (default: data/synthetic/tokenizer)")
    parser.add_argument("--methods", nargs="+", default=None, choices=[m.key for m in METHODS],
                        help="rows of the table (default: all that support the model)")
    parser.add_argument("--num-samples", type=int, default=1000, help="rows per MusicLIME / KernelSHAP explanation")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method (stability across seeds)")
    parser.add_argument("--auto-stability", type=float, default=AutoTarget.stability,
                        help="auto N: the top-k stability to reach (AutoTarget.stability)")
    parser.add_argument("--auto-max-samples", type=int, default=AutoTarget.max_samples,
                        help="auto N: the cap on rows (AutoTarget.max_samples)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("--from-songs", default=None,
                        help="redo the table, CSV and figure from an earlier run's songs.json (no model calls; "
                             "--num-samples / --seeds name the run's when its records do not)")
    return parser


def write_outputs(records: list[dict], methods, out: Path, heading: str, seeds: int, title: str) -> None:
    """comparison.md / .csv / .png and songs.json under ``out``."""
    import matplotlib.pyplot as plt

    table = comparison_table(records, methods)
    paired = paired_differences(records, "kernelshap", methods=methods)
    text = heading + table_markdown(table, seeds)
    if len(paired):
        text += ("\nPaired over songs, method minus KernelSHAP (mean ± SE; songs where the method is ahead):\n\n"
                 "| method | " + " | ".join(dict.fromkeys(paired["metric"])) + " |\n|---|"
                 + "---|" * paired["metric"].nunique() + "\n")
        for method, rows in paired.groupby("method", sort=False):
            text += f"| {method} | " + " | ".join(
                f"{r.difference:+.3f}" + (f" ± {r.difference_se:.3f}" if np.isfinite(r.difference_se) else "")
                + f" ({r.ahead}/{r.songs})" for r in rows.itertuples()) + " |\n"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "comparison.md", text)
    table.to_csv(out / "comparison.csv", index=False)
    atomic_write(out / "songs.json", json.dumps(records, indent=1, default=float))
    plt.close(plot_comparison(records, methods, save_path=out / "comparison.png", title=title))
    print(text)
    print(f"written: {out}/comparison.md, comparison.csv, comparison.png, songs.json")


def _corpus_songs(args):
    """``(predictor, mode, [(song_id, factorization, words, cues)], description)`` of the synthetic corpus."""
    from utils.config import get_profile
    from utils.dataset_related.splits import read_split
    from utils.dataset_related.synth import read_metadata
    from utils.musiclime.benchmark_setup import load_song
    from utils.musiclime.crossed_agreement import _pick_songs
    from utils.musiclime.predict import load_predictor

    profile = get_profile("tiny")
    corpus_dir, run_dir = Path(args.corpus_dir), Path(args.run_dir)
    predictor = load_predictor(run_dir, args.task, args.kind, profile, corpus_dir, device=args.device)
    predictor.source = f"{args.task}/{args.kind}"
    metadata = read_metadata(corpus_dir)
    cue_key = f"{args.task}_cues"

    def songs():
        for position in _pick_songs(read_split(corpus_dir, "test"), args.songs):
            song = load_song(corpus_dir, profile, index=position)
            cues = [c for c in metadata[song.song_id].get(cue_key, []) if c.get("component") or c.get("word")]
            truth = song.genre if args.task == "genre" else metadata[song.song_id]["emotion"]
            yield song.song_id, song.factorization, song.words, cues, TASKS[args.task].index(truth)
    return predictor, KIND_MODES[args.kind][0], songs(), f"{args.songs} synthetic test songs, {args.task} {args.kind}"


def _user_song(args):
    """The same for one audio file + lyrics + saved model (the explain command's readers)."""
    from utils.explain import cli_separator, read_clip, read_lyrics
    from utils.explain_model import find_model, load_tokens
    from utils.model_related.models import load_model
    from utils.musiclime.lyric_features import text_features
    from utils.musiclime.predict import ModelPredictor
    from utils.musiclime.song import clip_factorization

    if args.model is None:
        raise UsageError("--audio needs --model (a saved model folder)")
    model = find_model(args.model)
    tokens = load_tokens(model, args.tokenizer) if model.kind != "audio" else None
    network, _ = load_model(model.directory, device=args.device, task=model.task, kind=model.kind,
                            profile=model.description.get("profile"), class_names=model.class_names)
    predictor = ModelPredictor(network, model.profile, tokens, device=args.device)
    predictor.source = str(args.model)
    lyrics = read_lyrics(args.lyrics) if args.lyrics and model.kind != "audio" else None
    mode = KIND_MODES[model.kind][0] if lyrics is not None or model.kind != "multimodal" else "audio"
    factorization = None
    if model.kind != "lyrics":
        clip = read_clip(Path(args.audio), model, None)
        factorization = clip_factorization(clip, cli_separator(args.separator), model.profile.num_segments)
    words = text_features(lyrics, "words", predictor.visible_chars(lyrics)) if lyrics is not None else None
    return predictor, mode, [(Path(args.audio).stem, factorization, words, None, None)], \
        f"{args.audio}, {model.kind} model"


class UsageError(ValueError):
    """Bad input; exit status 2."""


def run(args: argparse.Namespace) -> Path:
    """Everything :func:`main` does; returns the output folder."""
    if args.num_samples < 2 or args.seeds < 1 or args.songs < 1:
        raise UsageError("--num-samples must be >= 2, --seeds and --songs >= 1")
    if args.from_songs:
        records = json.loads(Path(args.from_songs).read_text())
        out = Path(args.out or Path(args.from_songs).parent)
        songs = len({r["song"] for r in records})
        n, seeds = records[0].get("num_samples", args.num_samples), records[0].get("seeds", args.seeds)
        heading = (f"Comparison on {songs} songs, N = {n} rows per MusicLIME / KernelSHAP explanation, "
                   f"{seeds} seeds; AOPC mean ± SE over songs (from {Path(args.from_songs).name}).\n\n")
        write_outputs(records, METHODS, out, heading, seeds, f"Deletion and insertion curves, {songs} songs, N = {n}")
        return out
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    predictor, mode, songs, description = _user_song(args) if args.audio else _corpus_songs(args)
    target = AutoTarget(stability=args.auto_stability, max_samples=args.auto_max_samples)
    wanted = [dataclasses.replace(m, options={**m.options, "auto_target": target})
              if m.options.get("num_samples") == "auto" else m
              for m in METHODS if args.methods is None or m.key in args.methods]
    methods = runnable_methods(wanted, predictor, mode, skip_unsupported=args.methods is None)
    out = Path(args.out or ("results/comparison" if not args.audio else f"explanations/compare_{Path(args.audio).stem}"))
    records = []
    for song_id, factorization, words, cues, true_label in songs:
        rate = factorization.sample_rate if factorization is not None else None
        song_records = compare_song(predictor, factorization, words, methods, mode=mode, num_samples=args.num_samples,
                                    seeds=tuple(range(args.seeds)), batch_size=args.batch_size, sample_rate=rate,
                                    cues=cues, song_id=song_id, true_label=true_label)
        records += song_records
        print(f"{song_id}: " + ", ".join(f"{r['method']} del {r['deletion_aopc']:.3f} ins {r['insertion_aopc']:.3f}"
                                         for r in song_records), flush=True)
    auto = (f" (auto N: stability {target.stability}, at most {target.max_samples} rows)"
            if any("auto_target" in m.options for m in methods) else "")
    heading = (f"Comparison on {description}: N = {args.num_samples} rows per MusicLIME / KernelSHAP explanation"
               f"{auto}, {args.seeds} seeds, mode {mode!r}; AOPC mean ± SE over songs.\n\n")
    write_outputs(records, methods, out, heading, args.seeds,
                  f"Deletion and insertion curves, {description}, N = {args.num_samples}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (UsageError, UnsupportedExplainer) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:          # the explain command's readers (UsageError of utils.explain_model)
        if type(error).__name__ == "UsageError":
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
