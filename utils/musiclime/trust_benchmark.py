"""How far to trust an explanation, measured: auto sample size, interval calibration, locality kernel.

``python -m utils.musiclime.trust_benchmark`` (:func:`run_trust_benchmark`) explains ``--songs``
test songs of the synthetic corpus with the trained multimodal model
``runs/<profile>/<task>/multimodal/best`` (nothing is trained here; a missing model is an error)
and compares every explanation of a song's predicted class with a *reference*: an antithetic
explanation of ``--reference-samples`` rows (30,000; its own seed). It measures

(a) **auto N** -- rows ``num_samples='auto'`` took and its top-10 overlap with the reference,
    against the i.i.d. rows (the paper's sampling, a grid of sizes) needed for the same mean
    overlap (log-linear interpolation on the grid);
(b) **calibration** -- the share of features whose 95 % interval covers the reference weight,
    for i.i.d. explanations of ``--calibration-samples`` rows (5000) and for the auto ones; also
    with the reference's own noise added (``|w - w_ref| <= 1.96 sqrt(se^2 + se_ref^2)``), and a
    reliability curve (nominal against observed coverage) in ``trust_calibration.png``;
(c) **the locality kernel** -- i.i.d. explanations of the same rows with ``kernel='locality'``:
    top-10 overlap with the paper-kernel explanation and with the reference, planted genre cues
    in the top 3 under both kernels, and the rows' effective sample size under each kernel.

Writes ``trust_benchmark.json``, ``trust_benchmark.md`` and ``trust_calibration.png`` to ``--out``.
Smaller runs (``--songs 5 --reference-samples 10000``) keep the same meaning with more noise.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from utils.config import DATA_DIR, RESULTS_DIR, TASKS, resolve_device
from utils.musiclime.adaptive import AutoTarget
from utils.musiclime.benchmark_setup import load_song, trained_multimodal
from utils.musiclime.crossed_agreement import _pick_songs, _planted_hits
from utils.musiclime.explainer import explain
from utils.musiclime.predict import ModelPredictor
from utils.musiclime.surrogate import kernel, kernel_distances
from utils.plotting import save_figure

TOP = 10
NOMINAL = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


class CachedPredictor:
    """The model's answers memoised per row of switch masks (one song).

    Explanations of one song with the same seed share rows (i.i.d. masks of ``n`` rows are the
    first ``n`` of ``N`` rows, :func:`utils.musiclime.sampling.sample_masks`), so the i.i.d. grid
    and the locality-kernel explanation cost the model only their largest size. The answers
    are the model's own; only repeated queries are skipped. ``rows_run`` counts the rows sent to
    the model.
    """

    def __init__(self, predictor):
        self.predictor, self.cache, self.rows_run = predictor, {}, 0

    def __getattr__(self, name):                      # sample_rate, clip_length, visible_chars, ...
        return getattr(self.predictor, name)

    def predict_masks(self, audio_masks, text_masks, factorization, text):
        keys = [len(a).to_bytes(4, "little") + np.packbits(np.r_[a, t].astype(bool)).tobytes()
                for a, t in zip(audio_masks, text_masks)]
        missing, seen = [], set()
        for i, key in enumerate(keys):
            if key not in self.cache and key not in seen:
                seen.add(key)
                missing.append(i)
        if missing:
            answers = np.asarray(self.predictor.predict_masks(audio_masks[missing], text_masks[missing],
                                                              factorization, text), dtype=np.float64)
            self.rows_run += len(missing)
            for i, answer in zip(missing, answers):
                self.cache[keys[i]] = answer
        return np.stack([self.cache[key] for key in keys])


def _top(explanation, k: int = TOP) -> set[int]:
    return {row["index"] for row in explanation.ranked(k=k)}


def _overlap(a, b, k: int = TOP) -> float:
    return len(_top(a, k) & _top(b, k)) / k


def _z_scores(explanation, reference) -> tuple[list[float], list[float]]:
    """``(w - w_ref) / se`` and ``(w - w_ref) / sqrt(se^2 + se_ref^2)`` over the fitted features."""
    fit, ref = explanation.fit(), reference.fit(explanation.fit().label)
    used = fit.used & ref.used
    diff = fit.weights[used] - ref.weights[used]
    se, se_ref = fit.se[used], ref.se[used]
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.inf))
        both = np.where(se > 0, diff / np.sqrt(se ** 2 + se_ref ** 2), np.where(diff == 0, 0.0, np.inf))
    clip = lambda values: [float(v) for v in np.clip(values, -1e6, 1e6)]        # noqa: E731  JSON has no inf
    return clip(plain), clip(both)


def _kernel_weights(explanation_rows: int, n_features: int, kernel_name: str, seed: int) -> dict:
    """Kish effective sample size of the kernel weights as a share of the rows, and the weights'
    1st and 99th percentiles over rows 1.. (uniform half masks, as the explainer draws)."""
    from utils.musiclime.sampling import sample_masks
    from utils.musiclime.surrogate import cosine_distances

    masks = sample_masks(explanation_rows, n_features, seed)
    weights = kernel(kernel_distances(cosine_distances(masks), kernel_name))
    return {"effective_share": float(weights.sum() ** 2 / (weights ** 2).sum() / len(weights)),
            "weight_p01": float(np.percentile(weights[1:], 1)), "weight_p99": float(np.percentile(weights[1:], 99))}


def coverage(z_scores: Sequence[float], level: float = 0.95) -> float:
    """Share of ``|z|`` within the two-sided normal ``level`` quantile."""
    from scipy.stats import norm

    z = np.abs(np.asarray(z_scores, dtype=float))
    return float(np.mean(z <= norm.ppf((1 + level) / 2))) if z.size else float("nan")


def rows_for_overlap(sizes: Sequence[int], overlaps: Sequence[float], target: float) -> float | None:
    """Rows where the mean overlap curve first reaches ``target`` (log-linear between grid sizes);
    None when the largest size does not reach it."""
    sizes, overlaps = np.asarray(sizes, dtype=float), np.asarray(overlaps, dtype=float)
    for i, value in enumerate(overlaps):
        if value >= target:
            if i == 0:
                return float(sizes[0])
            low, high = overlaps[i - 1], value
            share = (target - low) / (high - low) if high > low else 1.0
            return float(np.exp(np.log(sizes[i - 1]) + share * (np.log(sizes[i]) - np.log(sizes[i - 1]))))
    return None


def run_trust_benchmark(profile_name: str = "tiny", device: str = "cpu", songs: int = 20,
                        reference_samples: int = 30_000, calibration_samples: int = 5000,
                        iid_samples: Sequence[int] = (1000, 2000, 5000, 10_000, 20_000),
                        target: AutoTarget = AutoTarget(stability=0.9), overlap_target: float = 0.9,
                        corpus_dir: Path = DATA_DIR / "synthetic", run_dir: Path | None = None, task: str = "genre",
                        seed: int = 0, chunk_size: int = 256, log=print) -> dict:
    """Measure (a) auto N, (b) calibration, (c) the locality kernel on ``songs`` test songs (module doc).

    Returns ``{"summary": ..., "songs": [...], "z": {...}}``, JSON-ready (``z`` holds the z-scores
    behind the calibration figure).
    """
    from utils.dataset_related.splits import read_split
    from utils.dataset_related.synth import read_metadata

    iid_samples = sorted({int(n) for n in iid_samples} | {int(calibration_samples)})
    device = resolve_device(device)
    corpus_dir = Path(corpus_dir)
    profile, model, tokens, model_source = trained_multimodal(profile_name, corpus_dir, run_dir, task, device, seed,
                                                              "the trust benchmark")
    metadata, frame = read_metadata(corpus_dir), read_split(corpus_dir, "test")
    new_predictor = partial(ModelPredictor, model, profile, tokens, device, chunk_size=chunk_size)
    rate = profile.audio.sample_rate
    per_song, z = [], {"iid": [], "iid_with_reference_noise": [], "auto": [], "auto_with_reference_noise": []}
    for position in _pick_songs(frame, songs):
        song = load_song(corpus_dir, profile, index=position)
        run = partial(explain, factorization=song.factorization, lyrics=song.words, sample_rate=rate)
        tick = time.perf_counter()
        cached = CachedPredictor(new_predictor())             # the i.i.d. grid and the locality kernel share rows
        reference = run(new_predictor(), num_samples=reference_samples, batch_size=2000, sampling="antithetic",
                        seed=seed + 1000)
        label = reference.labels[0]
        record = {"id": song.song_id, "genre": song.genre, "label": TASKS[task][label],
                  "features": len(reference.features), "reference_stability": reference.fit().stability}
        iid = {n: run(cached, num_samples=n, batch_size=2000, seed=seed, labels=[label])
               for n in sorted(iid_samples, reverse=True)}
        record["iid_overlap"] = {str(n): _overlap(e, reference) for n, e in iid.items()}
        record["iid_stability"] = {str(n): e.fit().stability for n, e in iid.items()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            auto = run(new_predictor(), num_samples="auto", auto_target=target, batch_size=2000, seed=seed,
                       labels=[label])
        record["auto"] = {**auto.adaptive, "overlap": _overlap(auto, reference),
                          "warned": any("target not met" in str(w.message) for w in caught)}
        calibration = iid[int(calibration_samples)]
        for name, explanation in (("iid", calibration), ("auto", auto)):
            plain, both = _z_scores(explanation, reference)
            z[name] += plain
            z[f"{name}_with_reference_noise"] += both
            record[f"{name}_coverage95"] = coverage(plain)
        cues = metadata[song.song_id]["genre_cues"]
        locality = run(cached, num_samples=int(calibration_samples), batch_size=2000, seed=seed,
                       labels=[label], kernel="locality")
        record["kernel"] = {"paper_hits": _planted_hits(calibration, cues),
                            "locality_hits": _planted_hits(locality, cues),
                            "reference_hits": _planted_hits(reference, cues),
                            "locality_vs_paper_overlap": _overlap(locality, calibration),
                            "locality_vs_reference_overlap": _overlap(locality, reference),
                            "paper_vs_reference_overlap": _overlap(calibration, reference),
                            "paper_stability": calibration.fit().stability,
                            "locality_stability": locality.fit().stability,
                            "paper_score": calibration.fit().score, "locality_score": locality.fit().score}
        record["seconds"] = time.perf_counter() - tick
        per_song.append(record)
        log(f"{song.song_id} ({song.genre}, {record['features']} features): auto {record['auto']['rows']} rows "
            f"(met {record['auto']['target_met']}, stability {record['auto']['achieved']:.3f}) overlap "
            f"{record['auto']['overlap']:.1f}; iid overlap " + ", ".join(f"{n}: {v:.1f}" for n, v in
                                                                         record["iid_overlap"].items())
            + f"; coverage iid@{calibration_samples} {record['iid_coverage95']:.2f}; {record['seconds']:.0f} s")
    n_features = int(np.median([r["features"] for r in per_song]))
    settings = {"songs": len(per_song), "reference_samples": reference_samples, "reference_sampling": "antithetic",
                "calibration_samples": calibration_samples, "iid_samples": iid_samples,
                "auto_target": target.as_dict(), "top_k": TOP, "overlap_target": overlap_target,
                "model": model_source, "seed": seed}
    summary = _summary(per_song, z, settings, n_features)
    return {"summary": summary, "songs": per_song, "z": z}


def _summary(per_song: Sequence[dict], z: dict, settings: dict, n_features: int) -> dict:
    mean = lambda values: float(np.mean(list(values)))                                  # noqa: E731
    sizes = settings["iid_samples"]
    curve = [mean(r["iid_overlap"][str(n)] for r in per_song) for n in sizes]
    auto_rows = mean(r["auto"]["rows"] for r in per_song)
    auto_overlap = mean(r["auto"]["overlap"] for r in per_song)
    iid_for_target = rows_for_overlap(sizes, curve, settings["overlap_target"])
    iid_for_auto = rows_for_overlap(sizes, curve, auto_overlap)
    stability = [mean(r["iid_stability"][str(n)] for r in per_song) for n in sizes]
    auto_stability = mean(r["auto"]["achieved"] for r in per_song)
    iid_for_stability = rows_for_overlap(sizes, stability, auto_stability)
    hits = lambda key: float(np.mean([h for r in per_song for h in r["kernel"][key]] or [np.nan]))  # noqa: E731
    calibration = settings["calibration_samples"]
    return {
        **settings,
        "auto": {"rows_mean": auto_rows, "rows_median": float(np.median([r["auto"]["rows"] for r in per_song])),
                 "overlap_mean": auto_overlap, "target_met_share": mean(r["auto"]["target_met"] for r in per_song),
                 "stability_mean": mean(r["auto"]["achieved"] for r in per_song),
                 "songs_reaching_overlap_target": mean(r["auto"]["overlap"] >= settings["overlap_target"]
                                                        for r in per_song)},
        "iid_overlap_curve": dict(zip([str(n) for n in sizes], curve)),
        "iid_stability_curve": dict(zip([str(n) for n in sizes], stability)),
        "iid_rows_for_auto_stability": iid_for_stability,
        "auto_share_of_iid_rows_same_stability": None if iid_for_stability is None else auto_rows / iid_for_stability,
        "iid_rows_for_overlap_target": iid_for_target,
        "iid_rows_for_auto_overlap": iid_for_auto,
        "auto_share_of_iid_rows": None if iid_for_auto is None else auto_rows / iid_for_auto,
        "calibration": {
            f"iid_{calibration}_coverage95": coverage(z["iid"]),
            f"iid_{calibration}_coverage95_with_reference_noise": coverage(z["iid_with_reference_noise"]),
            "auto_coverage95": coverage(z["auto"]),
            "auto_coverage95_with_reference_noise": coverage(z["auto_with_reference_noise"]),
            "features": len(z["iid"]),
            "reliability_iid": {str(level): coverage(z["iid"], level) for level in NOMINAL},
            "reliability_auto": {str(level): coverage(z["auto"], level) for level in NOMINAL},
        },
        "kernel": {
            "planted_top3_paper": hits("paper_hits"), "planted_top3_locality": hits("locality_hits"),
            "planted_top3_reference": hits("reference_hits"),
            "locality_vs_paper_overlap": mean(r["kernel"]["locality_vs_paper_overlap"] for r in per_song),
            "locality_vs_reference_overlap": mean(r["kernel"]["locality_vs_reference_overlap"] for r in per_song),
            "paper_vs_reference_overlap": mean(r["kernel"]["paper_vs_reference_overlap"] for r in per_song),
            "paper_stability": mean(r["kernel"]["paper_stability"] for r in per_song),
            "locality_stability": mean(r["kernel"]["locality_stability"] for r in per_song),
            "weights_paper": _kernel_weights(calibration, n_features, "paper", 0),
            "weights_locality": _kernel_weights(calibration, n_features, "locality", 0),
        },
        "seconds_per_song_median": float(np.median([r["seconds"] for r in per_song])),
    }


def plot_calibration(results: dict, save_path: str | Path | None = None):
    """Reliability (nominal vs observed interval coverage) and top-10 overlap against rows; returns the Figure."""
    import matplotlib.pyplot as plt

    summary = results["summary"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    levels = np.linspace(0.05, 0.995, 60)
    for name, colour in (("iid", "tab:blue"), ("auto", "tab:orange")):
        label = f"i.i.d. N = {summary['calibration_samples']}" if name == "iid" else "auto"
        left.plot(levels, [coverage(results["z"][name], lv) for lv in levels], color=colour, label=label)
        left.plot(levels, [coverage(results["z"][f"{name}_with_reference_noise"], lv) for lv in levels],
                  color=colour, linestyle="--", label=f"{label}, reference noise added")
    left.plot([0, 1], [0, 1], color="black", linewidth=0.8)
    left.axvline(0.95, color="grey", linewidth=0.5)
    left.set(xlabel="nominal coverage of the interval", ylabel="share covering the reference weight",
             title=f"calibration ({summary['calibration']['features']} feature weights, "
                   f"{summary['songs']} songs)")
    left.legend(fontsize=7)
    sizes = [int(n) for n in summary["iid_overlap_curve"]]
    right.plot(sizes, list(summary["iid_overlap_curve"].values()), marker="o", label="i.i.d. (mean)")
    rows = [r["auto"]["rows"] for r in results["songs"]]
    right.scatter(rows, [r["auto"]["overlap"] for r in results["songs"]], color="tab:orange", alpha=0.6,
                  label="auto (per song)")
    right.scatter([summary["auto"]["rows_mean"]], [summary["auto"]["overlap_mean"]], color="tab:red", marker="*",
                  s=120, label="auto (mean)", zorder=3)
    right.axhline(summary["overlap_target"], color="grey", linewidth=0.5)
    right.set_xscale("log")
    right.set(xlabel="rows", ylabel=f"top-{TOP} overlap with the reference",
              title=f"reference: antithetic N = {summary['reference_samples']}")
    right.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, save_path)


def trust_markdown(results: dict) -> str:
    """The summary as a short Markdown report."""
    s = results["summary"]
    cal, ker, auto = s["calibration"], s["kernel"], s["auto"]
    fmt = lambda v: "not reached" if v is None else f"{v:,.0f}"                          # noqa: E731
    n = s["calibration_samples"]
    lines = [
        f"# How far to trust an explanation ({s['songs']} synthetic test songs, model {s['model']})",
        "",
        f"Reference: antithetic explanation, N = {s['reference_samples']:,}. Top-{s['top_k']} by weight.",
        "",
        "## Auto sample size",
        f"- auto (target stability {s['auto_target']['stability']}, cap {s['auto_target']['max_samples']:,}, "
        f"batches of {s['auto_target']['batch_rows']}): mean {auto['rows_mean']:,.0f} rows (median "
        f"{auto['rows_median']:,.0f}), top-10 overlap {auto['overlap_mean']:.3f}, target met on "
        f"{auto['target_met_share']:.0%} of songs",
        f"- i.i.d. rows for the same mean overlap: {fmt(s['iid_rows_for_auto_overlap'])}; for overlap "
        f"{s['overlap_target']}: {fmt(s['iid_rows_for_overlap_target'])}"
        + ("" if s["auto_share_of_iid_rows"] is None else f"; auto uses {s['auto_share_of_iid_rows']:.2f} of them"),
        "- i.i.d. mean overlap by N: " + ", ".join(f"{k}: {v:.3f}" for k, v in s["iid_overlap_curve"].items()),
        f"- estimated top-10 stability (expected overlap of a redraw, SurrogateFit.stability): auto "
        f"{auto['stability_mean']:.3f}; i.i.d. rows for the same: {fmt(s['iid_rows_for_auto_stability'])}"
        + ("" if s["auto_share_of_iid_rows_same_stability"] is None
           else f" (auto uses {s['auto_share_of_iid_rows_same_stability']:.2f} of them)")
        + "; i.i.d. stability by N: " + ", ".join(f"{k}: {v:.3f}" for k, v in s["iid_stability_curve"].items()),
        "",
        "## Calibration of the 95 % intervals",
        f"- i.i.d. N = {n}: {cal[f'iid_{n}_coverage95']:.3f} of {cal['features']} weights covered "
        f"({cal[f'iid_{n}_coverage95_with_reference_noise']:.3f} with the reference's own noise added)",
        f"- auto: {cal['auto_coverage95']:.3f} ({cal['auto_coverage95_with_reference_noise']:.3f})",
        "",
        "## Locality kernel (distance x100) vs the paper's flat kernel, i.i.d. N = " + str(n),
        f"- planted cue in the top 3: paper {ker['planted_top3_paper']:.3f}, locality "
        f"{ker['planted_top3_locality']:.3f} (reference {ker['planted_top3_reference']:.3f})",
        f"- top-10 overlap: locality vs paper {ker['locality_vs_paper_overlap']:.3f}; with the (flat-kernel) "
        f"reference: locality {ker['locality_vs_reference_overlap']:.3f}, paper "
        f"{ker['paper_vs_reference_overlap']:.3f}",
        f"- top-10 stability: paper {ker['paper_stability']:.3f}, locality {ker['locality_stability']:.3f}",
        "- row weights (1st-99th percentile) and effective rows (Kish, share of N): paper "
        + _weights_text(ker["weights_paper"]) + "; locality " + _weights_text(ker["weights_locality"]),
        "",
        f"Median seconds per song: {s['seconds_per_song_median']:.0f}. Rerun: `python -m "
        f"utils.musiclime.trust_benchmark --songs {s['songs']} --reference-samples {s['reference_samples']}`.",
    ]
    return "\n".join(lines) + "\n"


def _weights_text(weights: dict) -> str:
    return f"{weights['weight_p01']:.3f}-{weights['weight_p99']:.3f}, {weights['effective_share']:.3f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils.musiclime.trust_benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=20)
    parser.add_argument("--reference-samples", type=int, default=30_000)
    parser.add_argument("--calibration-samples", type=int, default=5000)
    parser.add_argument("--iid-samples", type=int, nargs="+", default=[1000, 2000, 5000, 10_000, 20_000])
    parser.add_argument("--stability", type=float, default=0.9,
                        help="auto's top-10 stability target (default the overlap target: the expected overlap "
                             "of a redraw)")
    parser.add_argument("--max-samples", type=int, default=20_000, help="auto's row cap")
    parser.add_argument("--batch-rows", type=int, default=500, help="auto's rows between checks")
    parser.add_argument("--overlap-target", type=float, default=0.9)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--corpus", type=Path, default=DATA_DIR / "synthetic")
    parser.add_argument("--runs", type=Path, default=None, help="default runs/<profile>")
    parser.add_argument("--task", choices=sorted(TASKS), default="genre")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--summarise", type=Path, default=None, metavar="JSON",
                        help="recompute the summary, Markdown and figure of an earlier trust_benchmark.json "
                             "(no model queries)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the Markdown, write JSON, Markdown and the figure (unless ``--no-write``)."""
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.summarise is not None:
        results = json.loads(Path(args.summarise).read_text())
        old = results["summary"]
        settings = {key: old[key] for key in ("songs", "reference_samples", "reference_sampling",
                                              "calibration_samples", "iid_samples", "auto_target", "top_k",
                                              "overlap_target", "model", "seed")}
        n_features = int(np.median([r["features"] for r in results["songs"]]))
        results["summary"] = _summary(results["songs"], results["z"], settings, n_features)
    else:
        target = AutoTarget(stability=args.stability, max_samples=args.max_samples, batch_rows=args.batch_rows)
        results = run_trust_benchmark(args.profile, args.device, args.songs, args.reference_samples,
                                      args.calibration_samples, args.iid_samples, target, args.overlap_target,
                                      args.corpus, args.runs, args.task, args.seed)
    text = trust_markdown(results)
    print(text)
    if not args.no_write:
        from utils.io import atomic_write

        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out / "trust_benchmark.json", json.dumps(results, indent=1))
        atomic_write(args.out / "trust_benchmark.md", text)
        plot_calibration(results, args.out / "trust_calibration.png")
        print("wrote", args.out / "trust_benchmark.json", args.out / "trust_benchmark.md",
              args.out / "trust_calibration.png")
    return results


if __name__ == "__main__":
    main()
