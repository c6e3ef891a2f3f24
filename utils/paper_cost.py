"""The explainer's cost at paper size: per-row cost of each phase, FLOPs, and a GPU projection.

    python -m utils.paper_cost [--num-samples 50] [--authors-rows 50] [--device cpu|cuda] \\
        [--corpus-dir data/synthetic] [--chunk-size 8] [--threads N] [--mfu 0.4] [--songs 6550] \\
        [--out results/paper_size.md]

One test song of the corpus, explained in ``'both'`` mode (the paper's multimodal global runs) with
the paper-size fusion model -- AST-base over 1024 x 128 spectrograms at 44.1 kHz (the paper's
10.2551 s clips) and RoBERTa-large over 256 tokens, randomly initialised (nothing downloaded,
:func:`utils.musiclime.benchmark_setup.benchmark_profile`; the cost does not depend on the weights):

1. separation, per song: loading the clip with its oracle stems (what the synthetic corpus gives)
   and HPSS (:class:`utils.musiclime.separation.HPSSSeparator`, the CPU separator);
2. the fast path (:func:`utils.musiclime.speed.time_fast`) on N rows, per phase: composition,
   features, audio encoder, text encoder, head, surrogate; seconds per row and the share of time
   outside the model;
3. the authors' loop (:func:`utils.musiclime.speed.time_authors`: waveforms composed, Kaldi
   features per clip, then the model) on the first ``--authors-rows`` of the same rows;
4. FLOPs of one row through each encoder and the head (``torch.utils.flop_counter.FlopCounterMode``),
   and from them the projected cost of one 5,000-sample explanation and of a global run
   (``--songs``, the paper's 6,550 test songs) on one A100 / H100 at an assumed model FLOPs
   utilisation (``--mfu``), under the assumptions written next to the table.

Writes ``<out>`` (markdown) and the JSON beside it. On 2 idle CPU cores N = 50 takes several
minutes; ``--device cuda`` runs the same on a GPU (per-phase times synchronised) and gives the
achieved TFLOP/s of the encoders, to compare with the assumed utilisation.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np


from utils.config import DATA_DIR, RESULTS_DIR

GPUS = {"A100 (bf16 dense, 312 TFLOP/s)": 312e12, "H100 SXM (bf16 dense, 989 TFLOP/s)": 989e12}
"""Peak dense bf16 tensor throughput (vendor data sheets), FLOP/s."""
PAPER_SAMPLES = 5000
PAPER_SONGS = 6550
MODEL_PHASES = ("audio_encoder", "text_encoder", "head")


def encoder_flops(model, input_values, input_ids, attention_mask) -> dict[str, float]:
    """FLOPs of one row through the audio encoder, the text encoder and the head (``FlopCounterMode``:
    matrix products and attention; element-wise work is not counted).

    Attention is counted through the math backend of ``scaled_dot_product_attention`` (its matrix
    products): the fused CPU kernel is not known to the counter and would count as zero.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as counter:
            audio = model.encode_audio(input_values[:1])
        out["audio_encoder"] = float(counter.get_total_flops())
        with FlopCounterMode(display=False) as counter:
            text = model.encode_lyrics(input_ids[:1], attention_mask[:1])
        out["text_encoder"] = float(counter.get_total_flops())
        with FlopCounterMode(display=False) as counter:
            model.classify(audio, text)
        out["head"] = float(counter.get_total_flops())
    return out


def _example_song(corpus_dir: Path | None, work: Path, log) -> Path:
    """``corpus_dir`` when it holds a corpus, else a small synthetic one at the paper's rate and clip length."""
    if corpus_dir is not None and (Path(corpus_dir) / "test.jsonl").is_file():
        return Path(corpus_dir)
    from utils.config import get_profile
    from utils.dataset_related.synth import CorpusSettings, generate_corpus

    paper = get_profile("paper")
    log(f"no corpus at {corpus_dir}: generating a small one at {paper.audio.sample_rate} Hz")
    return generate_corpus(work / "corpus", CorpusSettings(songs_per_class=3, sample_rate=paper.audio.sample_rate,
                                                           clip_seconds=paper.audio.clip_seconds,
                                                           num_segments=paper.num_segments,
                                                           split=(1 / 3, 1 / 3, 1 / 3)), progress=False)


def run_paper_cost(num_samples: int = 50, authors_rows: int | None = None, device: str = "cpu",
                   corpus_dir: Path | None = DATA_DIR / "synthetic", chunk_size: int | None = None, seed: int = 0,
                   mfu: float = 0.4, songs: int = PAPER_SONGS, autocast: str | None = None, log=print) -> dict:
    """Measure and project (see the module doc); returns the JSON-ready results."""

    from utils.config import resolve_device
    from utils.musiclime.benchmark_setup import benchmark_profile, load_model_and_tokens, load_song
    from utils.musiclime.predict import ModelPredictor
    from utils.musiclime.sampling import sample_masks
    from utils.musiclime.separation import HPSSSeparator
    from utils.musiclime.song import corpus_clip
    from utils.musiclime.spectral import SpectralComposer
    from utils.musiclime.speed import split_mask_columns, time_authors, time_fast
    from utils.paper_check import _peak_gib

    device = resolve_device(device)
    cuda = device.startswith("cuda")
    chunk_size = chunk_size or (64 if cuda else 8)
    authors_rows = min(authors_rows or num_samples, num_samples)
    profile = benchmark_profile("paper")
    with tempfile.TemporaryDirectory(prefix="paper-cost-") as work:
        corpus = _example_song(corpus_dir, Path(work), log)
        tick = time.perf_counter()
        model, tokens, source = load_model_and_tokens(profile, corpus, Path(work) / "no-runs", "genre", "multimodal",
                                                      device, seed)
        log(f"paper-size model ({source}) on {device}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M "
            f"parameters, built in {time.perf_counter() - tick:.1f} s")
        song = load_song(corpus, profile)
        clip = corpus_clip(corpus, song.song_id, profile)
    tick = time.perf_counter()
    HPSSSeparator().separate(clip.waveform, clip.sample_rate)
    hpss = time.perf_counter() - tick
    n_audio, n_words = song.factorization.n_components, song.words.n_features
    log(f"song {song.song_id}: {clip.waveform.shape[0]} samples at {clip.sample_rate} Hz, {n_audio} audio components, "
        f"{n_words} words; oracle load {song.separation_seconds:.2f} s, HPSS {hpss:.2f} s")

    masks = sample_masks(num_samples, n_audio + n_words, seed)
    audio_masks, text_masks = split_mask_columns(masks, "both", n_audio, n_words)
    warm = ModelPredictor(model, profile, tokens, device, chunk_size=chunk_size, autocast=autocast)
    warm.predict_masks(audio_masks[:2], text_masks[:2], song.factorization, song.words)      # first-call costs
    features = SpectralComposer(song.factorization.components_matrix, profile.audio, device)(audio_masks[:1])
    encoded = tokens(song.words.compose(text_masks[:1]))
    flops = encoder_flops(model, features.to(device).float(), encoded["input_ids"].to(device),
                          encoded["attention_mask"].to(device))
    log("FLOPs per row: " + ", ".join(f"{k} {v / 1e9:.3g} G" for k, v in flops.items()))

    log(f"fast path, N = {num_samples} rows, chunks of {chunk_size} ...")
    fast = time_fast(model, song, tokens, profile, "both", num_samples, chunk_size, device, seed, autocast,
                     sync_timings=cuda)
    composer_s = time_composer(song.factorization.components_matrix, profile, device, audio_masks, chunk_size)
    log(f"fast path: {fast['wall']:.1f} s (audio features: composer set-up {composer_s['setup']:.2f} s, then "
        f"{1000 * composer_s['per_row']:.1f} ms / row); authors' loop on {authors_rows} of the same rows ...")
    authors = time_authors(model, song, tokens, profile, "both", masks[:authors_rows], device)
    log(f"authors' loop: {authors['wall']:.1f} s")
    results = {"profile": "paper (random AST-base + RoBERTa-large)", "device": device, "autocast": autocast,
               "machine": _machine(device), "song": song.song_id, "n_audio": n_audio, "n_words": n_words,
               "sample_rate": clip.sample_rate, "clip_samples": int(clip.waveform.shape[0]),
               "max_tokens": profile.model.max_tokens, "chunk_size": chunk_size, "num_samples": num_samples,
               "authors_rows": authors_rows, "separation_s": {"oracle_load": song.separation_seconds, "hpss": hpss},
               "flops_per_row": flops, "audio_features": composer_s,
               "fast": _per_row(fast, num_samples), "authors_loop": _per_row_authors(authors, authors_rows)}
    results["surrogate_at_paper_n_s"] = time_surrogate(PAPER_SAMPLES, n_audio + n_words, seed=seed)
    log(f"surrogate at N = {PAPER_SAMPLES}: {results['surrogate_at_paper_n_s']:.2f} s")
    results["projection"] = project(results, mfu=mfu, songs=songs)
    results["peak_memory_gib"] = _peak_gib()
    return results


def time_composer(components_matrix, profile, device: str, audio_masks: np.ndarray, chunk_size: int) -> dict:
    """Audio features of the fast path split into a per-song set-up and a per-row cost (seconds).

    The linear-domain composer (:class:`utils.musiclime.spectral.SpectralComposer`) builds its
    tables once per song, then each row costs a lookup / product: scaling the phase's total by
    rows would overcharge a 5,000-row explanation with N / 5000 of a set-up.
    """
    from utils.musiclime.spectral import SpectralComposer
    from utils.musiclime.speed import _sync

    _sync(device)
    tick = time.perf_counter()
    composer = SpectralComposer(components_matrix, profile.audio, device)
    _sync(device)
    setup = time.perf_counter() - tick
    for start in range(0, len(audio_masks), chunk_size):
        composer(audio_masks[start:start + chunk_size])
    _sync(device)
    rows = time.perf_counter() - tick - setup
    return {"setup": setup, "rows": rows, "per_row": rows / len(audio_masks), "method": composer.method}


def time_surrogate(num_samples: int, num_features: int, num_classes: int = 9, seed: int = 0) -> float:
    """Seconds of the surrogate for ``num_samples`` rows: masks, cosine distances and lime's ridge fit
    (:func:`utils.musiclime.surrogate.fit_surrogate`) on made-up probabilities (its cost does not depend
    on them). Measured at the projected N rather than scaled: at small N the fit's fixed cost dominates."""
    from utils.musiclime.sampling import sample_masks
    from utils.musiclime.surrogate import cosine_distances, fit_surrogate

    tick = time.perf_counter()
    masks = sample_masks(num_samples, num_features, seed)
    predictions = np.random.default_rng(seed).dirichlet(np.ones(num_classes), size=num_samples)
    fit_surrogate(masks, predictions, cosine_distances(masks), int(np.argmax(predictions[0])))
    return time.perf_counter() - tick


def _machine(device: str) -> dict:
    import torch

    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
               "load_average": list(os.getloadavg())}
    if device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine


def _per_row(fast: dict, rows: int) -> dict:
    """Seconds of the fast path per phase (encoders split into audio and text), totals and per row."""
    details, phases = fast["details"], dict(fast["phases"])
    seconds = {"composition": phases["composition"], "audio_features": details.get("audio_features", 0.0),
               "text_features": details.get("text_features", 0.0),
               "audio_encoder": details.get("audio_encoder", 0.0), "text_encoder": details.get("text_encoder", 0.0),
               "head": phases["head"], "surrogate": phases["surrogate"]}
    model = sum(seconds[k] for k in MODEL_PHASES)
    return {"wall": fast["wall"], "seconds": seconds, "per_row": {k: v / rows for k, v in seconds.items()},
            "outside_model_share": 1.0 - model / fast["wall"], "encoder_passes": fast["encoder_passes"]}


def _per_row_authors(authors: dict, rows: int) -> dict:
    phases = authors["phases"]
    seconds = {"composition": phases["composition"], "features": phases["features"], "model": phases["encoders"],
               "surrogate": phases["surrogate"]}
    return {"wall": authors["wall"], "seconds": seconds, "per_row": {k: v / rows for k, v in seconds.items()},
            "outside_model_share": 1.0 - phases["encoders"] / authors["wall"]}


def project(results: dict, mfu: float = 0.4, songs: int = PAPER_SONGS, samples: int = PAPER_SAMPLES) -> dict:
    """One ``samples``-row explanation and a ``songs``-song global run on each GPU of :data:`GPUS`.

    Assumptions (also written with the table): the model runs at ``mfu`` of the GPU's peak dense bf16
    throughput on the counted FLOPs; every row runs both encoders (i.i.d. masks in ``'both'`` mode:
    rows are distinct); the surrogate (lime's ridge) stays on the CPU, timed at the projected N;
    composition and features either stay on the CPU at the measured cost ('CPU-side phases as
    measured': the audio composer's per-song set-up once, then per row) or move to the GPU and speed
    up by the same factor as the encoders ('moved to the GPU'); separation is HPSS on the CPU, once per song, either in series or hidden behind the
    previous song's explanation by the prefetch thread (when it is shorter); the authors' loop keeps
    its per-clip feature extraction on the CPU (as their code does) and runs the model on the GPU.
    """
    flops = sum(results["flops_per_row"].values())
    fast, authors = results["fast"]["per_row"], results["authors_loop"]["per_row"]
    measured_model = sum(fast[k] for k in MODEL_PHASES)
    hpss = results["separation_s"]["hpss"]
    out = {"mfu": mfu, "songs": songs, "samples": samples, "model_flops_per_row": flops,
           "measured_model_tflops": flops / measured_model / 1e12 if measured_model else None, "gpus": {}}
    for gpu, peak in GPUS.items():
        model_s = samples * flops / (peak * mfu)
        speedup = measured_model / (flops / (peak * mfu))        # encoders: measured here -> projected GPU
        audio = results["audio_features"]
        cpu_side = audio["setup"] + samples * (fast["composition"] + fast["text_features"] + audio["per_row"])
        surrogate = results["surrogate_at_paper_n_s"] * (samples / PAPER_SAMPLES)
        explanations = {"fast, CPU-side phases as measured": model_s + cpu_side + surrogate,
                        "fast, composition and features moved to the GPU": model_s + cpu_side / speedup + surrogate,
                        "authors' loop (features per clip on the CPU)": model_s + surrogate + samples * (
                            authors["composition"] + authors["features"])}
        out["gpus"][gpu] = {"model_s": model_s, "explanation_s": explanations,
                            "global_run_gpu_hours": {k: songs * (v + hpss) / 3600 for k, v in explanations.items()},
                            "global_run_gpu_hours_prefetch": {k: songs * max(v, hpss) / 3600
                                                              for k, v in explanations.items()}}
    return out


def paper_cost_markdown(r: dict) -> str:
    """The results as markdown: per-phase table, FLOPs, projection and its assumptions."""
    fast, authors, p = r["fast"], r["authors_loop"], r["projection"]
    m = r["machine"]
    lines = [f"Paper-size model ({r['profile']}) on `{r['device']}`"
             + (f" ({m['gpu']})" if "gpu" in m else f" ({m['cpu_count']} CPU cores, {m['torch_threads']} torch threads, "
                                                     f"load average {m['load_average'][0]:.2f})")
             + f"; song `{r['song']}`: {r['clip_samples']} samples at {r['sample_rate']} Hz, {r['n_audio']} audio "
             f"components, {r['n_words']} words, {r['max_tokens']} tokens; mode both, N = {r['num_samples']} rows "
             f"(authors' loop: the first {r['authors_rows']} of them), chunks of {r['chunk_size']} rows.", "",
             "| phase | fast path: s | fast path: ms / row | authors' loop: s | authors' loop: ms / row |",
             "|---|---|---|---|---|",
             f"| separation, oracle stems (per song) | {r['separation_s']['oracle_load']:.2f} | | | |",
             f"| separation, HPSS (per song) | {r['separation_s']['hpss']:.2f} | | | |"]
    a_map = {"composition": "composition", "audio_features": "features", "surrogate": "surrogate"}
    audio = r["audio_features"]
    lines.append(f"| audio features, composer set-up (per song; {audio['method']}) | {audio['setup']:.2f} | | | |")
    lines.append(f"| audio features, rows alone | {audio['rows']:.2f} | {1000 * audio['per_row']:.1f} | | |")
    for phase in ("composition", "audio_features", "text_features", "audio_encoder", "text_encoder", "head",
                  "surrogate"):
        a = a_map.get(phase)
        a_cells = (f"{authors['seconds'][a]:.2f} | {1000 * authors['per_row'][a]:.1f}" if a else
                   (f"{authors['seconds']['model']:.2f} | {1000 * authors['per_row']['model']:.1f} (whole model)"
                    if phase == "audio_encoder" else " | "))
        label = {"audio_features": "audio features (set-up + rows)"}.get(phase, phase.replace("_", " "))
        lines.append(f"| {label} | {fast['seconds'][phase]:.2f} | {1000 * fast['per_row'][phase]:.1f} "
                     f"| {a_cells} |")
    lines += [f"| **wall** | {fast['wall']:.2f} | {1000 * fast['wall'] / r['num_samples']:.1f} | {authors['wall']:.2f} "
              f"| {1000 * authors['wall'] / r['authors_rows']:.1f} |", "",
              f"Share of the explanation's time outside the model: fast path {fast['outside_model_share']:.1%}, "
              f"authors' loop {authors['outside_model_share']:.1%}. Peak resident memory "
              f"{r.get('peak_memory_gib', float('nan')):.1f} GiB. The surrogate (masks, distances, lime's ridge) "
              f"at N = {PAPER_SAMPLES:,}: {r['surrogate_at_paper_n_s']:.2f} s.", "",
              "FLOPs per row (FlopCounterMode: matrix products and attention): "
              + ", ".join(f"{k.replace('_', ' ')} {v / 1e9:.3g} GFLOP" for k, v in r["flops_per_row"].items())
              + f"; the encoders ran at {p['measured_model_tflops']:.2f} TFLOP/s here.", "",
              f"Projection for one {p['samples']:,}-sample explanation and a global run of {p['songs']:,} songs "
              f"(model at {p['mfu']:.0%} of peak; GPU hours per song add HPSS in series, or hide it behind the "
              "explanation with the prefetch thread):", "",
              "| GPU | explanation | one explanation (s) | global run (GPU h) | with prefetch (GPU h) |",
              "|---|---|---|---|---|"]
    for gpu, g in p["gpus"].items():
        for name, seconds in g["explanation_s"].items():
            lines.append(f"| {gpu} | {name} | {seconds:.1f} | {g['global_run_gpu_hours'][name]:.1f} | "
                         f"{g['global_run_gpu_hours_prefetch'][name]:.1f} |")
    lines += ["", "Assumptions: " + " ".join(project.__doc__.split("Assumptions (also written with the table):")[1]
                                              .split())]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m utils.paper_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=50, help="rows of the fast path (N)")
    parser.add_argument("--authors-rows", type=int, default=None, help="rows of the authors' loop (default N)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--autocast", choices=("bf16", "fp16"), default=None)
    parser.add_argument("--corpus-dir", type=Path, default=DATA_DIR / "synthetic",
                        help="a corpus (its first test song); a small one is generated when missing")
    parser.add_argument("--chunk-size", type=int, default=None, help="rows per encoder call (default 8 CPU, 64 GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation on the GPU")
    parser.add_argument("--songs", type=int, default=PAPER_SONGS, help="songs of the projected global run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "paper_size.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.num_samples < 2 or not 0 < args.mfu <= 1:
        parser.error("--num-samples must be >= 2 and --mfu in (0, 1]")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = run_paper_cost(args.num_samples, args.authors_rows, args.device, args.corpus_dir, args.chunk_size,
                             args.seed, args.mfu, args.songs, args.autocast)
    text = paper_cost_markdown(results)
    print()
    print(text)
    if not args.no_write:
        from utils.io import atomic_write

        atomic_write(args.out, "# The explainer at paper size\n\nWritten by `python -m utils.paper_cost`.\n\n" + text)
        atomic_write(Path(args.out).with_suffix(".json"), json.dumps(results, indent=1, default=float))
        print("wrote", args.out)
    return results


if __name__ == "__main__":
    main()
