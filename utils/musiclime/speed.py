"""Explanation speed: how far one MusicLIME explanation is from the model's own cost.

The measurements behind ``python -m utils.benchmark`` (one song, one model), each a median of
``repeats`` runs:

* **floor** (:class:`Floor`) -- the model's own forward passes (``model(input_values, input_ids,
  attention_mask)``) over the same N inputs as the explanation, features and token ids
  precomputed, at the best batch size of a small sweep (:func:`best_batch_size`);
* **fast** (:func:`time_fast`) -- one :func:`utils.musiclime.explainer.explain` call with
  :class:`utils.musiclime.predict.ModelPredictor` (linear-domain features, distinct rows only,
  intact modality encoded once), per phase: separation, composition, features, encoders, head,
  surrogate; ``ratio = fast / floor``;
* **authors' loop** (:func:`time_authors`) -- :class:`utils.musiclime.authors_loop.AuthorsLoop`
  on the same model and the same masks, with the same lime surrogate;
* features alone (:func:`features_comparison`): waveform-domain (compose +
  :func:`utils.dataset_related.features.ast_features`) vs the linear-domain
  :class:`utils.musiclime.predict.SpectralComposer` (``'spectra'``, ``'gram'``, ``'table'``);
* crossed sampling: time and encoder passes of a crossed explanation vs i.i.d.;
* autocast (:func:`autocast_check`): max probability difference of bf16 (CPU) / bf16 + fp16
  (CUDA) vs fp32.

Timing discipline: the floor and the fast explanation are measured alternately so that machine
load hits both alike; the ratio is what to read. The ``paper`` profile runs the paper-size
models (AST-base and RoBERTa-large configs, randomly initialised) on its 10.2551 s clips at 44.1 kHz.
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from utils.config import DATA_DIR, RUNS_DIR, Profile, resolve_device
from utils.musiclime.authors_loop import AuthorsLoop
from utils.musiclime.benchmark_setup import Song, benchmark_profile, load_model_and_tokens, load_song
from utils.musiclime.explainer import explain
from utils.musiclime.sampling import sample_masks
from utils.musiclime.surrogate import cosine_distances, fit_surrogate
from utils.config import MODES
from utils.musiclime.predict import PHASES as PREDICTOR_PHASES, ModelPredictor
from utils.musiclime.spectral import SpectralComposer

PHASES = ("separation", "composition", "features", "encoders", "head", "surrogate")
"""The phases of one explanation, as reported (seconds each)."""


# ---------------------------------------------------------------- helpers
def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def split_mask_columns(masks: np.ndarray, mode: str, n_audio: int,
                       n_text: int) -> tuple[np.ndarray, np.ndarray]:
    """(audio masks, text masks) of an explanation's ``masks`` (rows, columns) in mode ``mode``;
    the modality not explained is all ones."""
    rows = masks.shape[0]
    if mode == "both":
        return masks[:, :n_audio], masks[:, n_audio:]
    if mode == "audio":
        return masks, np.ones((rows, n_text))
    return np.ones((rows, n_audio)), masks


def _median_seconds(fn, repeats: int, device: str) -> float:
    runs = []
    for _ in range(repeats):
        _sync(device)
        tick = time.perf_counter()
        fn()
        _sync(device)
        runs.append(time.perf_counter() - tick)
    return float(np.median(runs))


# ---------------------------------------------------------------- the floor
class Floor:
    """The model's own forward passes over the explanation's N inputs (features precomputed)."""

    def __init__(self, model, song: Song, tokens, profile: Profile, masks: np.ndarray, mode: str, device: str,
                 autocast: str | None = None):
        self.model, self.device, self.autocast = model, device, autocast
        n_audio, n_text = song.factorization.n_components, song.words.n_features
        audio_masks, text_masks = split_mask_columns(masks, mode, n_audio, n_text)
        composer = SpectralComposer(song.factorization.components_matrix, profile.audio, device)
        self.inputs = {}
        if model.kind in ("audio", "multimodal"):
            self.inputs["input_values"] = torch.cat([composer(audio_masks[s:s + 512])
                                                     for s in range(0, len(masks), 512)])
        if model.kind in ("lyrics", "multimodal"):
            encoded = tokens(song.words.compose(text_masks))
            self.inputs.update({k: v.to(device) for k, v in encoded.items()})
        self.rows = len(masks)

    @torch.no_grad()
    def run(self, batch_size: int) -> float:
        """Seconds for all rows at ``batch_size``."""
        from utils.musiclime.predict import AUTOCAST_DTYPES

        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        _sync(self.device)
        tick = time.perf_counter()
        with torch.autocast(device_type, dtype=AUTOCAST_DTYPES.get(self.autocast, torch.float32),
                            enabled=self.autocast is not None):
            for start in range(0, self.rows, batch_size):
                self.model(**{k: v[start:start + batch_size] for k, v in self.inputs.items()})
        _sync(self.device)
        return time.perf_counter() - tick


def best_batch_size(floor: Floor, candidates: Sequence[int], repeats: int) -> tuple[int, dict[int, float]]:
    """The candidate with the smallest median time (OOM candidates skipped)."""
    times = {}
    for size in candidates:
        try:
            times[size] = float(np.median([floor.run(size) for _ in range(repeats)]))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
    best = min(times, key=times.get)
    return best, times


# ---------------------------------------------------------------- one configuration
def time_fast(model, song: Song, tokens, profile: Profile, mode: str, num_samples: int, chunk_size: int,
              device: str, seed: int, autocast: str | None = None, sampling: str = "iid",
              crossed_masks=None, sync_timings: bool = False) -> dict:
    """One fast explanation: wall seconds, per-phase seconds, encoder passes.

    On CUDA the phases overlap (kernels run while the host prepares the next phase), so
    per-phase seconds need ``sync_timings=True``, which also slows the wall time a little.
    """
    predictor = ModelPredictor(model, profile, tokens, device, chunk_size=chunk_size, autocast=autocast)
    predictor.sync_timings = sync_timings
    factorization = None if model.kind == "lyrics" else song.factorization
    _sync(device)
    tick = time.perf_counter()
    explanation = explain(predictor, factorization, None if model.kind == "audio" else song.words,
                          sample_rate=profile.audio.sample_rate, mode=mode, num_samples=num_samples,
                          batch_size=num_samples, seed=seed, sampling=sampling, crossed_masks=crossed_masks)
    wall = time.perf_counter() - tick          # explain() ends on host arrays: nothing left queued
    phases = {phase: float(sum(predictor.timings.get(k, 0.0) for k in keys))
              for phase, keys in PREDICTOR_PHASES.items()}
    phases["surrogate"] = max(0.0, wall - sum(phases.values()))   # lime fit + masks, distances, checks
    details = {k: float(v) for k, v in predictor.timings.items()}
    return {"wall": wall, "phases": phases, "details": details, "encoder_passes": dict(predictor.calls),
            "explanation": explanation}


def time_authors(model, song: Song, tokens, profile: Profile, mode: str, masks: np.ndarray, device: str) -> dict:
    """The authors' loop on the same ``masks``, lime surrogate included: wall and per-phase seconds."""
    loop = AuthorsLoop(model, profile, tokens.tokenizer, device)
    factorization = song.factorization
    tick = time.perf_counter()
    predictions = loop.predictions(masks, factorization, song.words, mode)
    middle = time.perf_counter()
    label = int(np.argmax(predictions[0]))
    fit_surrogate(masks, predictions, cosine_distances(masks), label)
    end = time.perf_counter()
    phases = {"composition": loop.timings["composition"], "features": loop.timings["features"],
              "encoders": loop.timings["model"], "head": 0.0, "surrogate": end - middle}
    return {"wall": end - tick, "phases": phases, "predictions": predictions}


def features_comparison(song: Song, profile: Profile, device: str, num_samples: int, repeats: int,
                        seed: int = 0) -> dict:
    """Waveform-domain vs linear-domain features for ``num_samples`` audio masks (seconds, medians)."""
    from utils.dataset_related.features import ast_features

    masks = sample_masks(num_samples, song.factorization.n_components, seed)
    factorization = song.factorization

    def waveform():
        for start in range(0, num_samples, 256):
            ast_features(factorization.compose(masks[start:start + 256]), profile.audio, device=device)

    out = {"num_samples": num_samples}
    timings = {"waveform": waveform}
    for method in ("spectra", "gram", "table"):
        def linear(method=method):
            composer = SpectralComposer(factorization.components_matrix, profile.audio, device, method=method)
            for start in range(0, num_samples, 256):
                composer(masks[start:start + 256])
        timings[method] = linear
    for name, fn in timings.items():
        out[name] = _median_seconds(fn, repeats, device)
    for method in ("spectra", "gram", "table"):
        out[f"speedup_{method}"] = out["waveform"] / out[method]
    composer = SpectralComposer(factorization.components_matrix, profile.audio, device)
    out["auto_method"] = composer.method
    return out


def autocast_check(model, song: Song, tokens, profile: Profile, device: str, num_samples: int, seed: int = 0) -> dict:
    """Max |p_autocast - p_fp32| over the explanation's rows, per autocast dtype."""
    masks = sample_masks(num_samples, song.factorization.n_components + song.words.n_features, seed)
    audio_masks, text_masks = split_mask_columns(masks, "both", song.factorization.n_components,
                                                 song.words.n_features)
    reference = ModelPredictor(model, profile, tokens, device).predict_masks(audio_masks, text_masks,
                                                                             song.factorization, song.words)
    dtypes = ["bf16", "fp16"] if str(device).startswith("cuda") else ["bf16"]
    out = {}
    for dtype in dtypes:
        predictor = ModelPredictor(model, profile, tokens, device, autocast=dtype)
        tick = time.perf_counter()
        probabilities = predictor.predict_masks(audio_masks, text_masks, song.factorization, song.words)
        out[dtype] = {"max_probability_difference": float(np.abs(probabilities - reference).max()),
                      "argmax_agreement": float(np.mean(probabilities.argmax(1) == reference.argmax(1))),
                      "seconds": time.perf_counter() - tick}
    return out


# ---------------------------------------------------------------- the whole benchmark
def run_speed(profile_name: str = "tiny", device: str = "cpu", samples: Sequence[int] = (1000, 5000),
              modes: Sequence[str] = MODES, repeats: int = 3, baseline: Sequence[str] | None = None,
              corpus_dir: Path = DATA_DIR / "synthetic", run_dir: Path | None = None, task: str = "genre",
              batch_sizes: Sequence[int] = (32, 64, 128, 256, 512), autocast: str | None = None, seed: int = 0,
              crossed: bool = True, feature_samples: int = 1000, log=print) -> dict:
    """The speed benchmark (see the module doc); returns the JSON-ready results.

    ``baseline``: ``'mode:N'`` configurations that also run the authors' loop (None: all);
    ``log``: where progress lines go.
    """
    device = resolve_device(device)
    profile = benchmark_profile(profile_name)
    run_dir = Path(run_dir) if run_dir is not None else RUNS_DIR / profile_name
    corpus_dir = Path(corpus_dir)
    baseline = {f"{m}:{n}" for m in modes for n in samples} if baseline is None else set(baseline)
    model, tokens, model_source = load_model_and_tokens(profile, corpus_dir, run_dir, task, "multimodal", device, seed)
    song = load_song(corpus_dir, profile)
    song.separation_seconds = float(np.median([load_song(corpus_dir, profile).separation_seconds
                                               for _ in range(repeats)]))          # warm (imports done)
    log(f"profile {profile.name}, device {device}, torch threads {torch.get_num_threads()}, model: {model_source}")
    log(f"song {song.song_id} ({song.genre}): {song.factorization.n_components} audio components, "
        f"{song.words.n_features} words; separation (oracle stems) {song.separation_seconds:.3f} s")
    results = {"profile": profile.name, "device": device, "torch_threads": torch.get_num_threads(),
               "machine": _machine(device), "model": model_source, "song": song.song_id,
               "n_audio": song.factorization.n_components, "n_words": song.words.n_features, "repeats": repeats,
               "autocast": autocast, "configs": []}
    setup = dict(model=model, song=song, tokens=tokens, profile=profile, device=device, seed=seed, autocast=autocast)
    chunk = _sweep_batch_sizes(setup, min(samples), batch_sizes, repeats, results, log)
    log(f"{'mode':8} {'N':>5} {'method':8} {'wall s':>8} {'floor s':>8} {'ratio':>6} "
        + " ".join(f"{p[:9]:>9}" for p in PHASES))
    for mode in modes:
        for num_samples in samples:
            results["configs"].append(_time_config(setup, mode, num_samples, chunk, repeats,
                                                   f"{mode}:{num_samples}" in baseline, log))
    if crossed and model.kind == "multimodal":
        results["crossed_timing"] = [_time_crossed(setup, num_samples, chunk, repeats, results["configs"], log)
                                     for num_samples in samples]
    results["features"] = features_comparison(song, profile, device, feature_samples, repeats, seed)
    f = results["features"]
    log(f"features, N={feature_samples}: waveform {f['waveform']:.3f} s, linear-domain spectra {f['spectra']:.3f} s "
        f"({f['speedup_spectra']:.1f}x), gram {f['gram']:.3f} s ({f['speedup_gram']:.1f}x), table {f['table']:.3f} s "
        f"({f['speedup_table']:.1f}x); set-up included, {f['num_samples']} rows in chunks of 256")
    results["autocast_check"] = autocast_check(model, song, tokens, profile, device, min(samples), seed)
    for dtype, check in results["autocast_check"].items():
        log(f"autocast {dtype}: max probability difference vs fp32 {check['max_probability_difference']:.2e}, "
            f"argmax agreement {check['argmax_agreement']:.3f}")
    results["machine"]["load_average_end"] = list(os.getloadavg())
    return results


def _machine(device: str) -> dict:
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "load_average_start": list(os.getloadavg())}
    if device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine


def _sweep_batch_sizes(setup: dict, num_samples: int, batch_sizes: Sequence[int], repeats: int, results: dict,
                       log) -> int:
    """The model's best batch size on the N = ``num_samples`` 'both' inputs (recorded in ``results``)."""
    song = setup["song"]
    masks = sample_masks(num_samples, song.factorization.n_components + song.words.n_features, setup["seed"])
    floor = Floor(setup["model"], song, setup["tokens"], setup["profile"], masks, "both", setup["device"],
                  setup["autocast"])
    floor.run(min(batch_sizes))                                                       # warm-up
    chunk, sweep = best_batch_size(floor, [b for b in batch_sizes if b <= num_samples], repeats)
    results["batch_size_sweep"] = {str(k): v for k, v in sweep.items()}
    results["best_batch_size"] = chunk
    log("model forward, N=%d, by batch size: %s -> best %d" %
        (num_samples, ", ".join(f"{b}: {t:.2f}s" for b, t in sweep.items()), chunk))
    return chunk


def _time_config(setup: dict, mode: str, num_samples: int, chunk: int, repeats: int, with_authors: bool,
                 log) -> dict:
    """Floor and fast path alternately ``repeats`` times (median run kept), then the authors' loop."""
    model, song, tokens, profile, device = (setup[k] for k in ("model", "song", "tokens", "profile", "device"))
    fast_args = (model, song, tokens, profile, mode, num_samples, chunk, device, setup["seed"], setup["autocast"])
    columns = (song.factorization.n_components if mode != "lyrical" else 0) + \
              (song.words.n_features if mode != "audio" else 0)
    masks = sample_masks(num_samples, columns, setup["seed"])
    floor = Floor(model, song, tokens, profile, masks, mode, device, setup["autocast"])
    floors, fasts = [], []
    for _ in range(repeats):                       # alternate: load hits both alike
        floors.append(floor.run(chunk))
        fasts.append(time_fast(*fast_args))
    del floor
    floor_s = float(np.median(floors))
    fast = sorted(fasts, key=lambda r: r["wall"])[len(fasts) // 2]      # the median run
    if device.startswith("cuda"):                    # per-phase seconds from a synchronised run
        fast["phases"] = time_fast(*fast_args, sync_timings=True)["phases"]
    config = {"mode": mode, "num_samples": num_samples, "floor": floor_s, "floor_runs": floors,
              "fast": {"wall": fast["wall"], "wall_runs": [r["wall"] for r in fasts],
                       "phases": {"separation": song.separation_seconds, **fast["phases"]},
                       "details": fast["details"], "encoder_passes": fast["encoder_passes"]},
              "ratio_to_floor": fast["wall"] / floor_s}
    log(_row(mode, num_samples, "fast", fast["wall"], floor_s, config["fast"]["phases"]))
    log("    fast path detail (s): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(fast["details"].items())))
    if with_authors:
        _time_authors_config(setup, config, masks, log)
    return config


def _time_authors_config(setup: dict, config: dict, masks: np.ndarray, log) -> None:
    """The authors' loop on the configuration's masks, and how far its probabilities are from the fast path's."""
    model, song, tokens, profile, device = (setup[k] for k in ("model", "song", "tokens", "profile", "device"))
    mode, num_samples, floor_s = config["mode"], config["num_samples"], config["floor"]
    authors = time_authors(model, song, tokens, profile, mode, masks, device)
    config["authors_loop"] = {"wall": authors["wall"],
                              "phases": {"separation": song.separation_seconds, **authors["phases"]}}
    config["speedup_vs_authors"] = authors["wall"] / config["fast"]["wall"]
    check = ModelPredictor(model, profile, tokens, device).predict_masks(
        *split_mask_columns(masks, mode, song.factorization.n_components, song.words.n_features),
        song.factorization, song.words)
    config["authors_max_probability_difference"] = float(np.abs(check - authors["predictions"]).max())
    log(_row(mode, num_samples, "authors", authors["wall"], floor_s,
             config["authors_loop"]["phases"]) + f"  (fast is {config['speedup_vs_authors']:.1f}x faster)")


def _time_crossed(setup: dict, num_samples: int, chunk: int, repeats: int, configs: Sequence[dict], log) -> dict:
    """A crossed explanation's median run, beside the i.i.d. one of the same N when it was timed."""
    runs = [time_fast(setup["model"], setup["song"], setup["tokens"], setup["profile"], "both", num_samples, chunk,
                      setup["device"], setup["seed"], setup["autocast"], sampling="crossed") for _ in range(repeats)]
    run = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
    iid = next((c for c in configs if c["mode"] == "both" and c["num_samples"] == num_samples), None)
    entry = {"num_samples": num_samples, "wall": run["wall"], "phases": run["phases"],
             "encoder_passes": run["encoder_passes"],
             "crossed_masks": run["explanation"].settings["crossed_masks"]}
    if iid is not None:
        entry["iid_wall"] = iid["fast"]["wall"]
        entry["iid_encoder_passes"] = iid["fast"]["encoder_passes"]
        entry["speedup_vs_iid"] = iid["fast"]["wall"] / run["wall"]
    log(f"crossed N={num_samples} K={entry['crossed_masks']}: {run['wall']:.2f} s, encoder passes "
        f"{run['encoder_passes']}" + (f" (i.i.d.: {iid['fast']['wall']:.2f} s, "
                                      f"{iid['fast']['encoder_passes']})" if iid else ""))
    return entry


def _row(mode, num_samples, method, wall, floor, phases) -> str:
    return (f"{mode:8} {num_samples:>5} {method:8} {wall:8.2f} {floor:8.2f} {wall / floor:6.2f} "
            + " ".join(f"{phases.get(p, 0.0):9.3f}" for p in PHASES))
