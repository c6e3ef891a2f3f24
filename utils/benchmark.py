"""Explanation speed: how far one MusicLIME explanation is from the model's own cost.

``python -m utils.benchmark`` prints tables and writes ``results/speed.json`` and
``results/speed.md``. It is a benchmark, not a timed test: the figures depend on the machine.

``--part speed`` (default; :func:`utils.musiclime.speed.run_speed`, one song, one model,
``--profile tiny`` on CPU by default): the model's own forward passes (the floor), the fast
explanation per phase (separation, composition, features, encoders, head, surrogate), the
authors' loop (:class:`utils.musiclime.authors_loop.AuthorsLoop`) on the same masks,
waveform- vs linear-domain features, crossed sampling, autocast. Every figure is the median of
``--repeats`` runs; the floor and the fast explanation are measured alternately, and their
ratio is what to read. ``--profile paper --device cuda`` runs the paper-size models (AST-base
and RoBERTa-large configs, randomly initialised) on a GPU, on the paper's 10.2551 s clips at 44.1 kHz
(``--profile paper16k``: 10.24 s at 16 kHz).

``--part crossed`` (:func:`utils.musiclime.crossed_agreement.run_crossed_agreement`): how well
crossed and antithetic sampling agree with the i.i.d. N = 5000 explanation on ``--songs`` test
songs (top-10 overlap, Spearman correlation of the weights, planted-cue hit rate, encoder
passes; with ``--precise-samples M`` also against an antithetic explanation of M rows) with the
trained multimodal model ``runs/<profile>/<task>/multimodal/best``; results under ``crossed``
in the same JSON.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from utils.config import DATA_DIR, PROFILES, RESULTS_DIR, TASKS
from utils.io import atomic_write
from utils.musiclime.crossed_agreement import run_crossed_agreement
from utils.config import MODES
from utils.musiclime.speed import PHASES, run_speed


def speed_markdown(results: dict) -> str:
    """The speed tables as markdown (``results``: keys ``speed`` and / or ``crossed``)."""
    lines = []
    if results.get("speed"):
        lines += _speed_lines(results["speed"])
    if results.get("crossed"):
        lines += _crossed_lines(results["crossed"])
    return "\n".join(lines) + "\n"


def _speed_lines(speed: dict) -> list[str]:
    """The timing table of ``run_speed``'s results and the notes under it."""
    machine = speed["machine"]
    lines = [f"Profile `{speed['profile']}` on `{speed['device']}` ({speed['torch_threads']} torch threads, "
              f"{machine.get('gpu', str(machine['cpu_count']) + ' CPU cores')}; load average at start "
              f"{machine['load_average_start'][0]:.2f}); model: {speed['model']}; song `{speed['song']}` "
              f"({speed['n_audio']} audio components, {speed['n_words']} words); median of {speed['repeats']} "
              f"runs; batch size {speed['best_batch_size']} (best of the model's own sweep).", "",
              "| mode | N | method | wall (s) | floor (s) | wall / floor | " + " | ".join(PHASES) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(PHASES)]
    for config in speed["configs"]:
        for method, key in (("fast", "fast"), ("authors' loop", "authors_loop")):
            if key not in config:
                continue
            entry = config[key]
            lines.append(f"| {config['mode']} | {config['num_samples']} | {method} | {entry['wall']:.2f} | "
                         f"{config['floor']:.2f} | {entry['wall'] / config['floor']:.2f} | "
                         + " | ".join(f"{entry['phases'].get(p, 0.0):.3f}" for p in PHASES) + " |")
    lines.append("")
    speedups = [(c["mode"], c["num_samples"], c["speedup_vs_authors"]) for c in speed["configs"]
                if "speedup_vs_authors" in c]
    if speedups:
        lines.append("Fast path vs the authors' loop: " + ", ".join(f"{m} N={n}: {s:.1f}x" for m, n, s in speedups)
                     + ".")
    f = speed["features"]
    lines += ["", f"Audio features of N = {f['num_samples']} perturbations (per-song set-up included): waveform "
              f"domain (compose, then `ast_features`) {f['waveform']:.3f} s; linear domain: complex spectra "
              f"product {f['spectra']:.3f} s ({f['speedup_spectra']:.1f}x), Gram quadratic form {f['gram']:.3f} s "
              f"({f['speedup_gram']:.1f}x), per-frame table lookup (used for 0/1 masks) {f['table']:.3f} s "
              f"({f['speedup_table']:.1f}x)."]
    for entry in speed.get("crossed_timing", []):
        lines.append(f"Crossed sampling, N = {entry['num_samples']} pairs, K = {entry['crossed_masks']}: "
                     f"{entry['wall']:.2f} s, encoder passes {entry['encoder_passes']}"
                     + (f" (i.i.d.: {entry['iid_wall']:.2f} s, {entry['iid_encoder_passes']})"
                        if "iid_wall" in entry else "") + ".")
    for dtype, check in speed.get("autocast_check", {}).items():
        lines.append(f"Autocast {dtype}: max probability difference vs fp32 "
                     f"{check['max_probability_difference']:.2e} (argmax agreement {check['argmax_agreement']:.3f}).")
    return lines


def _crossed_lines(crossed: dict) -> list[str]:
    """The agreement table of ``run_crossed_agreement``'s results."""
    s = crossed["summary"]
    precise = s.get("precise_samples", 0)
    lines = ["", f"Crossed and antithetic sampling vs the i.i.d. N = {s['num_samples']} explanation on "
              f"{s['songs']} test songs ({s['model']}); reference planted-cue hit rate (top 3) "
              f"{s['reference_planted_hit_rate']:.2f}, {s['reference_encoder_passes']:.0f} encoder passes, "
              f"{s['reference_seconds']:.1f} s" + (f"; last two columns: agreement with an antithetic "
                                                   f"N = {precise} explanation" if precise else "") + ":", "",
              "| variant | top-10 overlap (mean / min) | top-10 by abs weight | Spearman | planted in top 3 | "
              "encoder passes | saving | s |" + (" top-10 overlap, N = %d | Spearman, N = %d |" % (precise, precise)
                                                 if precise else ""),
              "|---|---|---|---|---|---|---|---|" + ("---|---|" if precise else "")]
    for key in ("crossed", "crossed_audio_heavy", "crossed_double", "antithetic", "iid_other_seed",
                "iid_same_budget", "reference"):
        v = s.get(key)
        if v is None:
            continue
        tail = (f" {v['precise_top10_overlap_mean']:.2f} | {v['precise_spearman_mean']:.3f} |"
                if precise else "")
        if key == "reference":
            if precise:
                lines.append(f"| {v['label']} | 1 | 1 | 1 | {s['reference_planted_hit_rate']:.2f} | "
                             f"{s['reference_encoder_passes']:.0f} | 1x | {s['reference_seconds']:.1f} |" + tail)
            continue
        lines.append(f"| {v.get('label', key)} | {v['top10_overlap_mean']:.2f} / {v['top10_overlap_min']:.1f} | "
                     f"{v['top10_overlap_abs_mean']:.2f} | "
                     f"{v['spearman_mean']:.3f} | {v['planted_hit_rate']:.2f} | {v['encoder_passes']:.0f} | "
                     f"{v['encoder_pass_saving']:.1f}x | {v['seconds']:.1f} |" + tail)
    return lines


def write_results(results: dict, out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Merge ``results`` into ``out_dir/speed.json`` (keys ``speed`` / ``crossed``) and rewrite speed.md."""
    out_dir = Path(out_dir)
    path = out_dir / "speed.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(results)
    atomic_write(path, json.dumps(merged, indent=1, default=float))
    markdown = out_dir / "speed.md"
    header = "# Explanation speed\n\nWritten by `python -m utils.benchmark`.\n\n"
    atomic_write(markdown, header + speed_markdown(merged))
    return path, markdown


def _strip(results: dict) -> dict:
    return json.loads(json.dumps(results, default=lambda o: None if not isinstance(o, (np.floating, np.integer))
                                 else o.item()))


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m utils.benchmark``."""
    parser = argparse.ArgumentParser(prog="python -m utils.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("speed", "crossed", "all"), default="speed")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", nargs="*", default=None, metavar="MODALITY:N",
                        help="configurations that also run the authors' loop, e.g. both:1000 audio:1000 "
                             "(default: every mode and N; give none to skip)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--feature-samples", type=int, default=1000, help="N of the features-only comparison")
    parser.add_argument("--autocast", choices=("bf16", "fp16"), default=None)
    parser.add_argument("--songs", type=int, default=20, help="test songs for --part crossed")
    parser.add_argument("--crossed-samples", type=int, default=5000, help="N of the crossed-agreement explanations")
    parser.add_argument("--crossed-masks", type=int, nargs=2, default=None, metavar=("K_A", "K_T"))
    parser.add_argument("--precise-samples", type=int, default=0,
                        help="also compare every explanation with an antithetic one of this many rows (0: skip)")
    parser.add_argument("--corpus", type=Path, default=DATA_DIR / "synthetic")
    parser.add_argument("--runs", type=Path, default=None, help="default runs/<profile>")
    parser.add_argument("--task", choices=sorted(TASKS), default="genre")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-write", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the parts asked for, print the tables and (unless ``--no-write``) write speed.json / speed.md."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    if args.part in ("speed", "all"):
        results["speed"] = run_speed(args.profile, args.device, args.samples, args.modes, args.repeats,
                                     args.baseline, args.corpus, args.runs, args.task, args.batch_sizes,
                                     args.autocast, args.seed, feature_samples=args.feature_samples)
    if args.part in ("crossed", "all"):
        results["crossed"] = run_crossed_agreement(args.profile, args.device, args.songs, args.crossed_samples,
                                                   tuple(args.crossed_masks) if args.crossed_masks else None,
                                                   args.corpus, args.runs, args.task, args.seed,
                                                   precise_samples=args.precise_samples)
    results = _strip(results)
    print()
    print(speed_markdown(results))
    if not args.no_write:
        paths = write_results(results, args.out)
        print("wrote", ", ".join(str(p) for p in paths))
    return results


if __name__ == "__main__":
    main()
