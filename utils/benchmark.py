"""Explanation speed: how far one MusicLIME explanation is from the model's own cost.

``python -m utils.benchmark`` prints tables and writes ``results/speed.json`` and
``results/speed.md``. It is a benchmark, not a timed test: the figures depend on the machine.

Figures (one song, one model; ``--profile tiny`` on CPU by default):

* **floor** -- the model's own forward passes (``model(input_values, input_ids,
  attention_mask)``) over the same N inputs as the explanation, features and token ids
  precomputed, at the best batch size of a small sweep;
* **fast** -- one :func:`utils.musiclime.explainer.explain` call with :class:`utils.musiclime.predict.ModelPredictor`
  (linear-domain features, distinct rows only, intact modality encoded once), per phase:
  separation, composition, features, encoders, head, surrogate; ``ratio = fast / floor``;
* **authors' loop** -- :class:`AuthorsLoop`, a faithful re-creation of the authors'
  implementation (PAPER.md; their ``LimeMusicExplainer``): per-row composition (Python
  ``sum`` of the switched-on components, lime's ``inverse_removing``), per-sample
  ``transformers.ASTFeatureExtractor`` and per-sample tokenisation, the full model on batches
  of 10 rows, the same lime surrogate, on the same model and the same masks;
* features alone (N = 1000): waveform-domain (compose + :func:`utils.dataset_related.features.ast_features`)
  vs the linear-domain :class:`utils.musiclime.predict.SpectralComposer` (``'spectra'`` and ``'gram'``);
* crossed sampling: time and encoder passes of a crossed explanation vs i.i.d.;
* autocast: max probability difference of bf16 (CPU) / bf16 + fp16 (CUDA) vs fp32.

``python -m utils.benchmark --part crossed`` measures how well crossed and antithetic
sampling agree with the i.i.d. N = 5000 explanation on ``--songs`` test songs (top-10
overlap, Spearman correlation of the weights, planted-cue hit rate, encoder passes; with
``--precise-samples M`` also against an antithetic explanation of M rows) with the trained
multimodal model ``runs/<profile>/<task>/multimodal/best``; results under ``crossed`` in the
same JSON.

Timing discipline: every figure is the median of ``--repeats`` runs, and the floor and the
fast explanation are measured alternately so that machine load hits both alike; the ratio
is what to read. ``--profile paper --device cuda`` runs the paper-size models (AST-base and
RoBERTa-large configs, randomly initialised) on a GPU, with clips tiled to 10.24 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from utils.config import PROJECT_ROOT, DATA_DIR, RESULTS_DIR, RUNS_DIR, STEMS, TASKS, Profile, get_profile, resolve_device
from utils.musiclime.explainer import explain
from utils.musiclime.factorization import SourceSeparationSegments, WordFeatures
from utils.musiclime.predict import PHASES as PREDICTOR_PHASES, ModelPredictor
from utils.musiclime.sampling import sample_masks
from utils.musiclime.spectral import SpectralComposer
from utils.musiclime.surrogate import cosine_distances, fit_surrogate

PHASES = ("separation", "composition", "features", "encoders", "head", "surrogate")
MODALITIES = ("both", "audio", "lyrical")


# ---------------------------------------------------------------- the authors' loop
class AuthorsLoop:
    """The authors' MusicLIME query loop, re-created on one of our models.

    As their notebooks (``LimeMusicExplainer.combined_data_labels_distances`` and the
    multimodal ``predict_fn``): for each mask row, the perturbed clip is the Python ``sum``
    of the switched-on component waveforms (audioLIME's ``compose_model_input``; silence if
    none; in ``'lyrical'`` mode all components, every row) and the perturbed lyrics lime's
    ``IndexedString.inverse_removing``; every ``batch_size`` rows the batch goes to
    ``predict_fn``, which runs ``transformers.ASTFeatureExtractor`` and the tokenizer
    (``padding='max_length'``, truncation) on each sample and the full model on the batch,
    then softmax. Only the model (ours) and the masks (given, to compare with the fast path)
    differ from their code.

    Parameters
    ----------
    model : a model from :mod:`utils.model_related.models` (lyrics, audio or multimodal).
    profile : audio settings of the feature extractor; ``model.max_tokens`` for the tokenizer.
    tokenizer : a Hugging Face tokenizer (lyrics and fusion models).
    device : where the model runs.
    batch_size : rows per ``predict_fn`` call (the authors: 10).

    Attributes
    ----------
    timings : dict
        Seconds per phase: ``composition``, ``features`` (extractor + tokenizer), ``model``.
    """

    def __init__(self, model: torch.nn.Module, profile: Profile, tokenizer=None, device: str = "cpu",
                 batch_size: int = 10):
        from transformers import ASTFeatureExtractor

        self.model = model.to(device).eval()
        self.kind = model.kind
        self.profile = profile
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        audio = profile.audio
        self.extractor = ASTFeatureExtractor(sampling_rate=audio.sample_rate, num_mel_bins=audio.num_mel_bins,
                                             max_length=audio.max_length, mean=audio.feature_mean,
                                             std=audio.feature_std)
        self.timings: dict[str, float] = defaultdict(float)

    @torch.no_grad()
    def predict_fn(self, texts: Sequence[str], waveforms: np.ndarray) -> np.ndarray:
        """Their ``predict_fn(texts, waveforms)``: per-sample features, then one model call."""
        tick = time.perf_counter()
        inputs = {}
        if self.kind in ("audio", "multimodal"):
            specs = [self.extractor(w, sampling_rate=self.profile.audio.sample_rate, return_tensors="pt")
                     ["input_values"][0] for w in waveforms]
            inputs["input_values"] = torch.stack(specs).to(self.device)
        if self.kind in ("lyrics", "multimodal"):
            encoded = [self.tokenizer(t, padding="max_length", truncation=True,
                                      max_length=self.profile.model.max_tokens, return_tensors="pt") for t in texts]
            inputs["input_ids"] = torch.cat([e["input_ids"] for e in encoded]).to(self.device)
            inputs["attention_mask"] = torch.cat([e["attention_mask"] for e in encoded]).to(self.device)
        middle = time.perf_counter()
        self.timings["features"] += middle - tick
        logits = self.model(**inputs)
        probabilities = torch.softmax(logits, dim=1).cpu().numpy()
        self.timings["model"] += time.perf_counter() - middle
        return probabilities

    def predictions(self, masks: np.ndarray, factorization, text_features, modality: str = "both") -> np.ndarray:
        """Model probabilities for the neighbourhood ``masks`` (num_samples, columns), row by row."""
        components = list(factorization.components_matrix) if factorization is not None else []
        n_audio = len(components)
        indexed = text_features.indexed_string if text_features is not None else None
        original = text_features.lyrics if text_features is not None else ""
        labels, audios, texts = [], [], []

        def compose(selection):                       # audioLIME's compose_model_input
            if len(selection) == 0:
                return np.zeros_like(components[0])
            selected = [components[i] for i in selection]
            return sum(selected) if len(selected) > 1 else selected[0]

        for row in masks:
            tick = time.perf_counter()
            if modality == "both":
                audios.append(compose(np.where(row[:n_audio] != 0)[0]))
                texts.append(indexed.inverse_removing(np.where(row[n_audio:] == 0)[0]))
            elif modality == "audio":
                audios.append(compose(np.where(row != 0)[0]))
                texts.append(indexed.inverse_removing(np.array([], dtype=int)) if indexed is not None else original)
            else:
                audios.append(compose(np.arange(n_audio)) if n_audio else np.zeros(0, np.float32))
                texts.append(indexed.inverse_removing(np.where(row == 0)[0]))
            self.timings["composition"] += time.perf_counter() - tick
            if len(audios) == self.batch_size:
                labels.extend(self.predict_fn(texts, np.array(audios)))
                audios, texts = [], []
        if audios:
            labels.extend(self.predict_fn(texts, np.array(audios)))
        return np.array(labels)


# ---------------------------------------------------------------- set-up
@dataclasses.dataclass
class Song:
    song_id: str
    factorization: SourceSeparationSegments
    words: WordFeatures
    genre: str
    separation_seconds: float


def load_song(corpus_dir: Path, profile: Profile, index: int = 0, song_id: str | None = None) -> Song:
    """One test song: its clip at the profile's length (tiled when the corpus clips are
    shorter, e.g. 4 s synthetic clips for the paper's 10.24 s) and oracle stems x segments."""
    from utils.dataset_related.splits import read_split
    from utils.dataset_related.features import find_audio, load_audio
    from utils.musiclime.separation import OracleSeparator

    frame = read_split(corpus_dir, "test")
    row = frame.iloc[index] if song_id is None else frame.set_index("id").loc[song_id].rename(song_id)
    song_id = row["id"] if song_id is None else song_id
    tick = time.perf_counter()
    waveform = load_audio(find_audio(corpus_dir / "audio", song_id), profile.audio.sample_rate, name=song_id)
    stems = OracleSeparator(corpus_dir).separate(waveform, profile.audio.sample_rate, track_id=song_id)
    length = profile.clip_samples
    stems = {s: np.resize(stems[s], length) for s in STEMS}          # tile or cut to the clip length
    clip = sum(stems[s] for s in STEMS)
    factorization = SourceSeparationSegments(clip, profile.audio.sample_rate, stems=stems,
                                             num_segments=profile.num_segments)
    seconds = time.perf_counter() - tick
    return Song(song_id, factorization, WordFeatures(row["lyrics"]), row["primary_short"], seconds)


def benchmark_profile(name: str) -> Profile:
    """The profile to time: ``tiny`` as is; ``paper`` with its encoder configs built from scratch
    (AST-base, RoBERTa-large sizes; random weights, no download)."""
    profile = get_profile(name)
    if name == "paper":
        model = dataclasses.replace(profile.model, audio_source="scratch", lyrics_source="scratch",
                                    fusion_init="pretrained")
        profile = dataclasses.replace(profile, model=model)
    return profile


def load_model_and_tokens(profile: Profile, corpus_dir: Path, run_dir: Path, task: str, kind: str, device: str,
                          seed: int = 0):
    """The trained ``run_dir/task/kind/best`` model when it exists (tiny profile), else a randomly
    initialised one of the profile's config; tokens from the corpus tokenizer."""
    from utils.model_related.models import build_model, load_model
    from utils.model_related.inputs import prepare_tokens
    from utils.dataset_related.text import TokenCache

    profile_for_tokens = profile if profile.name == "tiny" else get_profile("tiny")
    tokens = prepare_tokens(profile_for_tokens, corpus_dir)
    tokens = TokenCache(tokens.tokenizer, profile.model.max_tokens)
    best = run_dir / task / kind / "best"
    if profile.name == "tiny" and (best / "model.json").is_file():
        model, _ = load_model(best, device=device)
        try:  # no machine paths in written results
            shown = str(Path(best).resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            shown = Path(best).name
        return model, tokens, shown
    torch.manual_seed(seed)
    vocab = len(tokens.tokenizer) if profile.name == "tiny" else profile.model.vocab_size
    model = build_model(kind, profile, len(TASKS[task]), vocab_size=vocab).to(device).eval()
    return model, tokens, f"random init ({profile.name} config)"


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _column_split(masks: np.ndarray, modality: str, n_audio: int, n_text: int) -> tuple[np.ndarray, np.ndarray]:
    rows = masks.shape[0]
    if modality == "both":
        return masks[:, :n_audio], masks[:, n_audio:]
    if modality == "audio":
        return masks, np.ones((rows, n_text))
    return np.ones((rows, n_audio)), masks


# ---------------------------------------------------------------- the floor
class Floor:
    """The model's own forward passes over the explanation's N inputs (features precomputed)."""

    def __init__(self, model, song: Song, tokens, profile: Profile, masks: np.ndarray, modality: str, device: str,
                 autocast: str | None = None):
        self.model, self.device, self.autocast = model, device, autocast
        n_audio, n_text = song.factorization.n_components, song.words.n_features
        audio_masks, text_masks = _column_split(masks, modality, n_audio, n_text)
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
def time_fast(model, song: Song, tokens, profile: Profile, modality: str, num_samples: int, chunk_size: int,
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
                          sample_rate=profile.audio.sample_rate, modality=modality, num_samples=num_samples,
                          batch_size=num_samples, seed=seed, sampling=sampling, crossed_masks=crossed_masks)
    wall = time.perf_counter() - tick          # explain() ends on host arrays: nothing left queued
    phases = {phase: float(sum(predictor.timings.get(k, 0.0) for k in keys)) for phase, keys in PREDICTOR_PHASES.items()}
    phases["surrogate"] = max(0.0, wall - sum(phases.values()))   # lime fit + masks, distances, checks
    details = {k: float(v) for k, v in predictor.timings.items()}
    return {"wall": wall, "phases": phases, "details": details, "encoder_passes": dict(predictor.calls),
            "explanation": explanation}


def time_surrogate(masks: np.ndarray, predictions: np.ndarray, label: int, repeats: int) -> float:
    distances = cosine_distances(masks)
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fit_surrogate(masks, predictions, distances, label)
        times.append(time.perf_counter() - tick)
    return float(np.median(times))


def time_authors(model, song: Song, tokens, profile: Profile, modality: str, masks: np.ndarray, device: str) -> dict:
    loop = AuthorsLoop(model, profile, tokens.tokenizer, device)
    factorization = song.factorization
    tick = time.perf_counter()
    predictions = loop.predictions(masks, factorization, song.words, modality)
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
        runs = []
        for _ in range(repeats):
            _sync(device)
            tick = time.perf_counter()
            fn()
            _sync(device)
            runs.append(time.perf_counter() - tick)
        out[name] = float(np.median(runs))
    for method in ("spectra", "gram", "table"):
        out[f"speedup_{method}"] = out["waveform"] / out[method]
    composer = SpectralComposer(factorization.components_matrix, profile.audio, device)
    out["auto_method"] = composer.method
    return out


def autocast_check(model, song: Song, tokens, profile: Profile, device: str, num_samples: int, seed: int = 0) -> dict:
    """Max |p_autocast - p_fp32| over the explanation's rows, per autocast dtype."""
    masks = sample_masks(num_samples, song.factorization.n_components + song.words.n_features, seed)
    audio_masks, text_masks = _column_split(masks, "both", song.factorization.n_components, song.words.n_features)
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


def run_speed(profile_name: str = "tiny", device: str = "cpu", samples: Sequence[int] = (1000, 5000),
              modalities: Sequence[str] = MODALITIES, repeats: int = 3, baseline: Sequence[str] | None = None,
              corpus_dir: Path = DATA_DIR / "synthetic", run_dir: Path | None = None, task: str = "genre",
              batch_sizes: Sequence[int] = (32, 64, 128, 256, 512), autocast: str | None = None, seed: int = 0,
              crossed: bool = True, feature_samples: int = 1000, log=print) -> dict:
    """The speed benchmark (see the module doc); returns the JSON-ready results."""
    device = resolve_device(device)
    profile = benchmark_profile(profile_name)
    run_dir = Path(run_dir) if run_dir is not None else RUNS_DIR / profile_name
    corpus_dir = Path(corpus_dir)
    baseline = {f"{m}:{n}" for m in modalities for n in samples} if baseline is None else set(baseline)
    model, tokens, model_source = load_model_and_tokens(profile, corpus_dir, run_dir, task, "multimodal", device, seed)
    song = load_song(corpus_dir, profile)
    song.separation_seconds = float(np.median([load_song(corpus_dir, profile).separation_seconds
                                               for _ in range(repeats)]))          # warm (imports done)
    log(f"profile {profile.name}, device {device}, torch threads {torch.get_num_threads()}, model: {model_source}")
    log(f"song {song.song_id} ({song.genre}): {song.factorization.n_components} audio components, "
        f"{song.words.n_features} words; separation (oracle stems) {song.separation_seconds:.3f} s")
    results = {"profile": profile.name, "device": device, "torch_threads": torch.get_num_threads(),
               "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "load_average_start": list(os.getloadavg())},
               "model": model_source, "song": song.song_id, "n_audio": song.factorization.n_components,
               "n_words": song.words.n_features, "repeats": repeats, "autocast": autocast, "configs": []}
    if device.startswith("cuda"):
        results["machine"]["gpu"] = torch.cuda.get_device_name(device)

    # best batch size of the model itself, on the N = min(samples) 'both' inputs
    n0 = min(samples)
    masks0 = sample_masks(n0, song.factorization.n_components + song.words.n_features, seed)
    floor0 = Floor(model, song, tokens, profile, masks0, "both", device, autocast)
    floor0.run(min(batch_sizes))                                                       # warm-up
    chunk, sweep = best_batch_size(floor0, [b for b in batch_sizes if b <= n0], repeats)
    del floor0
    results["batch_size_sweep"] = {str(k): v for k, v in sweep.items()}
    results["best_batch_size"] = chunk
    log("model forward, N=%d, by batch size: %s -> best %d" %
        (n0, ", ".join(f"{b}: {t:.2f}s" for b, t in sweep.items()), chunk))

    header = (f"{'modality':8} {'N':>5} {'method':8} {'wall s':>8} {'floor s':>8} {'ratio':>6} "
              + " ".join(f"{p[:9]:>9}" for p in PHASES))
    log(header)
    for modality in modalities:
        for num_samples in samples:
            columns = (song.factorization.n_components if modality != "lyrical" else 0) + \
                      (song.words.n_features if modality != "audio" else 0)
            masks = sample_masks(num_samples, columns, seed)
            floor = Floor(model, song, tokens, profile, masks, modality, device, autocast)
            floors, fasts = [], []
            for _ in range(repeats):                       # alternate: load hits both alike
                floors.append(floor.run(chunk))
                fasts.append(time_fast(model, song, tokens, profile, modality, num_samples, chunk, device, seed,
                                       autocast))
            del floor
            floor_s = float(np.median(floors))
            fast = sorted(fasts, key=lambda r: r["wall"])[len(fasts) // 2]      # the median run
            if device.startswith("cuda"):                    # per-phase seconds from a synchronised run
                fast["phases"] = time_fast(model, song, tokens, profile, modality, num_samples, chunk, device, seed,
                                           autocast, sync_timings=True)["phases"]
            label = fast["explanation"].labels[0]
            config = {"modality": modality, "num_samples": num_samples, "floor": floor_s, "floor_runs": floors,
                      "fast": {"wall": fast["wall"], "wall_runs": [r["wall"] for r in fasts],
                               "phases": {"separation": song.separation_seconds, **fast["phases"]},
                               "details": fast["details"],
                               "encoder_passes": fast["encoder_passes"]},
                      "ratio_to_floor": fast["wall"] / floor_s}
            log(_row(modality, num_samples, "fast", fast["wall"], floor_s, config["fast"]["phases"]))
            log("    fast path detail (s): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(fast["details"].items())))
            if f"{modality}:{num_samples}" in baseline:
                authors = time_authors(model, song, tokens, profile, modality, masks, device)
                config["authors_loop"] = {"wall": authors["wall"],
                                          "phases": {"separation": song.separation_seconds, **authors["phases"]}}
                config["speedup_vs_authors"] = authors["wall"] / fast["wall"]
                check = ModelPredictor(model, profile, tokens, device).predict_masks(
                    *_column_split(masks, modality, song.factorization.n_components, song.words.n_features),
                    song.factorization, song.words)
                config["authors_max_probability_difference"] = float(np.abs(check - authors["predictions"]).max())
                log(_row(modality, num_samples, "authors", authors["wall"], floor_s,
                         config["authors_loop"]["phases"]) + f"  (fast is {config['speedup_vs_authors']:.1f}x faster)")
            results["configs"].append(config)
            del fast, fasts

    if crossed and model.kind == "multimodal":
        results["crossed_timing"] = []
        for num_samples in samples:
            runs = [time_fast(model, song, tokens, profile, "both", num_samples, chunk, device, seed, autocast,
                              sampling="crossed") for _ in range(repeats)]
            run = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
            iid = next(c for c in results["configs"] if c["modality"] == "both" and c["num_samples"] == num_samples) \
                if "both" in modalities else None
            entry = {"num_samples": num_samples, "wall": run["wall"], "phases": run["phases"],
                     "encoder_passes": run["encoder_passes"],
                     "crossed_masks": run["explanation"].settings["crossed_masks"]}
            if iid is not None:
                entry["iid_wall"] = iid["fast"]["wall"]
                entry["iid_encoder_passes"] = iid["fast"]["encoder_passes"]
                entry["speedup_vs_iid"] = iid["fast"]["wall"] / run["wall"]
            results["crossed_timing"].append(entry)
            log(f"crossed N={num_samples} K={entry['crossed_masks']}: {run['wall']:.2f} s, encoder passes "
                f"{run['encoder_passes']}" + (f" (i.i.d.: {iid['fast']['wall']:.2f} s, "
                                              f"{iid['fast']['encoder_passes']})" if iid else ""))

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


def _row(modality, num_samples, method, wall, floor, phases) -> str:
    return (f"{modality:8} {num_samples:>5} {method:8} {wall:8.2f} {floor:8.2f} {wall / floor:6.2f} "
            + " ".join(f"{phases.get(p, 0.0):9.3f}" for p in PHASES))


# ---------------------------------------------------------------- crossed-sampling agreement
def _top(explanation, k: int, order: str = "weight") -> list[int]:
    return [row["index"] for row in explanation.ranked(k=k, order=order)]


def _planted_hits(explanation, cues: Sequence[dict], k: int = 3) -> list[bool]:
    top = explanation.ranked(k=k)
    names = {row["name"] for row in top if row["modality"] == "audio"}
    words = {row["name"].lower() for row in top if row["modality"] == "lyrics"}
    hits = []
    for cue in cues:
        if cue["modality"] == "audio":
            hits.append(cue["component"] in names)
        else:
            hits.append(cue["word"].lower() in words)
    return hits


def _pick_songs(frame, count: int) -> list[int]:
    """Row positions of ``count`` test songs, round-robin over the genres (split order within a genre)."""
    by_genre = defaultdict(list)
    for position, genre in enumerate(frame["primary_short"]):
        by_genre[genre].append(position)
    picked, round_ = [], 0
    while len(picked) < count and any(round_ < len(v) for v in by_genre.values()):
        for genre in sorted(by_genre):
            if round_ < len(by_genre[genre]) and len(picked) < count:
                picked.append(by_genre[genre][round_])
        round_ += 1
    return picked


def run_crossed_agreement(profile_name: str = "tiny", device: str = "cpu", songs: int = 20, num_samples: int = 5000,
                          crossed_masks: tuple[int, int] | None = None, corpus_dir: Path = DATA_DIR / "synthetic",
                          run_dir: Path | None = None, task: str = "genre", seed: int = 0, chunk_size: int = 256,
                          precise_samples: int = 0, log=print) -> dict:
    """Crossed (and antithetic) vs i.i.d. explanations of ``songs`` test songs with the trained fusion model.

    Per song (its predicted class explained): the reference is the i.i.d. explanation with
    ``num_samples`` rows (seed ``seed``); compared with it are the crossed explanation
    (about ``num_samples`` pairs of ``crossed_masks``, default ``num_samples // 10`` masks per
    modality, same seed), crossed with the same encoder budget split 80 / 20 between audio
    and lyrics, crossed with twice the masks, an antithetic explanation with
    ``num_samples`` rows (seed ``seed + 1``), an i.i.d. one with seed ``seed + 1`` (the
    reference's own sampling noise) and an i.i.d. one with the crossed explanation's encoder
    budget (``(K_a + K_t) / 2`` rows). Metrics: top-10 overlap (by weight and by ``|weight|``),
    Spearman correlation of all weights, planted genre cues (``utils.dataset_related.synth.read_metadata``)
    in the top 3, encoder passes, seconds. With ``precise_samples`` > 0 every explanation,
    the reference included, is also compared with an antithetic explanation of
    ``precise_samples`` rows (seed ``seed + 2``): closer to what all of them estimate, it
    shows how much of the disagreement is the N = ``num_samples`` reference's own noise.
    """
    from scipy.stats import spearmanr

    from utils.dataset_related.splits import read_split
    from utils.musiclime.sampling import crossed_sizes
    from utils.dataset_related.synth import read_metadata

    device = resolve_device(device)
    profile = benchmark_profile(profile_name)
    run_dir = Path(run_dir) if run_dir is not None else RUNS_DIR / profile_name
    corpus_dir = Path(corpus_dir)
    model, tokens, model_source = load_model_and_tokens(profile, corpus_dir, run_dir, task, "multimodal", device, seed)
    if model_source.startswith("random"):
        raise FileNotFoundError(f"crossed agreement needs the trained model {run_dir / task / 'multimodal' / 'best'}")
    metadata = read_metadata(corpus_dir)
    frame = read_split(corpus_dir, "test")
    k_audio, k_text = crossed_sizes(num_samples, crossed_masks)
    double = crossed_sizes(num_samples, (2 * k_audio, 2 * k_text))
    budget_masks = k_audio + k_text

    def audio_heavy(song: Song) -> tuple[int, int]:      # 80 / 20, the lyric share kept identifiable
        return crossed_sizes(num_samples, (max(3, round(0.8 * budget_masks)),
                                           max(3, round(0.2 * budget_masks), 2 * song.words.n_features + 1)))
    budget = max(2, (k_audio + k_text) // 2)
    variants = {
        "crossed": (f"crossed K = ({k_audio}, {k_text}), ~{num_samples} pairs",
                    dict(sampling="crossed", crossed_masks=(k_audio, k_text), seed=seed)),
        "crossed_audio_heavy": (f"crossed, 80 % of the {budget_masks} masks audio, ~{num_samples} pairs",
                                dict(sampling="crossed", crossed_masks=audio_heavy, seed=seed)),
        "crossed_double": (f"crossed K = {double}, ~{num_samples} pairs",
                           dict(sampling="crossed", crossed_masks=double, seed=seed)),
        "antithetic": (f"antithetic N = {num_samples}, other seed", dict(sampling="antithetic", seed=seed + 1)),
        "iid_other_seed": (f"i.i.d. N = {num_samples}, other seed", dict(seed=seed + 1)),
        "iid_same_budget": (f"i.i.d. N = {budget} (crossed's encoder budget)", dict(seed=seed, num_samples=budget)),
    }
    runs_wanted = [("reference", dict(seed=seed)), *((k, v[1]) for k, v in variants.items())]
    if precise_samples:
        runs_wanted.append(("precise", dict(sampling="antithetic", seed=seed + 2, num_samples=precise_samples)))
    per_song = []
    class_names = TASKS[task]
    for position in _pick_songs(frame, songs):
        song = load_song(corpus_dir, profile, index=position)
        cues = metadata[song.song_id]["genre_cues"]
        record = {"id": song.song_id, "genre": song.genre}
        runs = {}
        for name, options in runs_wanted:
            options = dict(options)
            n = options.pop("num_samples", num_samples)
            if callable(options.get("crossed_masks")):
                options["crossed_masks"] = options["crossed_masks"](song)
                record[f"{name}_crossed_masks"] = list(options["crossed_masks"])
            predictor = ModelPredictor(model, profile, tokens, device, chunk_size=chunk_size)
            tick = time.perf_counter()
            runs[name] = explain(predictor, song.factorization, song.words, sample_rate=profile.audio.sample_rate,
                                 num_samples=n, batch_size=n, **options)
            record[f"{name}_seconds"] = time.perf_counter() - tick
            record[f"{name}_encoder_passes"] = predictor.calls["audio_rows"] + predictor.calls["text_rows"]
        reference = runs["reference"]
        label = reference.labels[0]
        record["predicted"] = class_names[label]
        record["reference_hits"] = _planted_hits(reference, cues)
        targets = [(prefix, set(_top(target, 10)), set(_top(target, 10, "abs")), target.fit(label).weights)
                   for prefix, target in [("", reference)] + ([("precise_", runs["precise"])] if precise_samples
                                                               else [])]
        for name in [*variants, "reference"]:
            other = runs[name]
            weights = other.fit(label).weights
            top, top_abs = set(_top(other, 10)), set(_top(other, 10, "abs"))
            record[f"{name}_same_label"] = other.labels[0] == label
            record[f"{name}_hits"] = _planted_hits(other, cues)
            for prefix, top_target, top_target_abs, target_weights in targets:
                if name == "reference" and not prefix:
                    continue
                record[f"{name}_{prefix}top10_overlap"] = len(top_target & top) / 10
                record[f"{name}_{prefix}top10_overlap_abs"] = len(top_target_abs & top_abs) / 10
                record[f"{name}_{prefix}spearman"] = float(spearmanr(target_weights, weights).statistic)
        per_song.append(record)
        log(f"{song.song_id} ({song.genre}, predicted {record['predicted']}): top-10 overlap with the reference "
            + ", ".join(f"{name} {record[f'{name}_top10_overlap']:.1f}" for name in variants)
            + f"; planted in top 3 ref {sum(record['reference_hits'])}/{len(cues)} crossed "
            f"{sum(record['crossed_hits'])}/{len(cues)}; seconds ref {record['reference_seconds']:.1f} crossed "
            f"{record['crossed_seconds']:.1f}")
    mean = lambda key: float(np.mean([r[key] for r in per_song]))                          # noqa: E731
    summary = {"songs": len(per_song), "num_samples": num_samples, "crossed_masks": [k_audio, k_text],
               "same_budget_iid_samples": budget, "model": model_source, "precise_samples": int(precise_samples),
               "reference_planted_hit_rate": _rate([r["reference_hits"] for r in per_song]),
               "reference_encoder_passes": mean("reference_encoder_passes"),
               "reference_seconds": float(np.median([r["reference_seconds"] for r in per_song]))}
    if precise_samples:
        summary["reference"] = {"label": f"i.i.d. N = {num_samples} (the reference)",
                                **{f"precise_{m}_mean": mean(f"reference_precise_{m}")
                                   for m in ("top10_overlap", "top10_overlap_abs", "spearman")}}
    for name, (label_text, _) in variants.items():
        summary[name] = {
            "label": label_text,
            "top10_overlap_mean": mean(f"{name}_top10_overlap"),
            "top10_overlap_min": float(np.min([r[f"{name}_top10_overlap"] for r in per_song])),
            "top10_overlap_abs_mean": mean(f"{name}_top10_overlap_abs"),
            "spearman_mean": mean(f"{name}_spearman"),
            "planted_hit_rate": _rate([r[f"{name}_hits"] for r in per_song]),
            "encoder_passes": mean(f"{name}_encoder_passes"),
            "encoder_pass_saving": float(np.mean([r["reference_encoder_passes"] / r[f"{name}_encoder_passes"]
                                                  for r in per_song])),
            "seconds": float(np.median([r[f"{name}_seconds"] for r in per_song])),
            "same_label": mean(f"{name}_same_label"),
        }
        if precise_samples:
            summary[name].update({f"precise_{m}_mean": mean(f"{name}_precise_{m}")
                                  for m in ("top10_overlap", "top10_overlap_abs", "spearman")})
    return {"summary": summary, "songs": per_song}


def _rate(hit_lists: Sequence[Sequence[bool]]) -> float:
    flat = [h for hits in hit_lists for h in hits]
    return float(np.mean(flat)) if flat else float("nan")


# ---------------------------------------------------------------- output
def speed_markdown(results: dict) -> str:
    """The speed tables as markdown."""
    lines = []
    speed = results.get("speed")
    if speed:
        machine = speed["machine"]
        lines += [f"Profile `{speed['profile']}` on `{speed['device']}` ({speed['torch_threads']} torch threads, "
                  f"{machine.get('gpu', str(machine['cpu_count']) + ' CPU cores')}; load average at start "
                  f"{machine['load_average_start'][0]:.2f}); model: {speed['model']}; song `{speed['song']}` "
                  f"({speed['n_audio']} audio components, {speed['n_words']} words); median of {speed['repeats']} "
                  f"runs; batch size {speed['best_batch_size']} (best of the model's own sweep).", "",
                  "| modality | N | method | wall (s) | floor (s) | wall / floor | " + " | ".join(PHASES) + " |",
                  "|---|---|---|---|---|---|" + "---|" * len(PHASES)]
        for config in speed["configs"]:
            for method, key in (("fast", "fast"), ("authors' loop", "authors_loop")):
                if key not in config:
                    continue
                entry = config[key]
                lines.append(f"| {config['modality']} | {config['num_samples']} | {method} | {entry['wall']:.2f} | "
                             f"{config['floor']:.2f} | {entry['wall'] / config['floor']:.2f} | "
                             + " | ".join(f"{entry['phases'].get(p, 0.0):.3f}" for p in PHASES) + " |")
        lines.append("")
        speedups = [(c["modality"], c["num_samples"], c["speedup_vs_authors"]) for c in speed["configs"]
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
    crossed = results.get("crossed")
    if crossed:
        s = crossed["summary"]
        precise = s.get("precise_samples", 0)
        lines += ["", f"Crossed and antithetic sampling vs the i.i.d. N = {s['num_samples']} explanation on "
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
    return "\n".join(lines) + "\n"


def write_results(results: dict, out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Merge ``results`` into ``out_dir/speed.json`` (keys ``speed`` / ``crossed``) and rewrite speed.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "speed.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(results)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(merged, indent=1, default=float))
    tmp.replace(path)
    markdown = out_dir / "speed.md"
    markdown.write_text("# Explanation speed\n\nWritten by `python -m utils.benchmark`.\n\n" + speed_markdown(merged))
    return path, markdown


def _strip(results: dict) -> dict:
    return json.loads(json.dumps(results, default=lambda o: None if not isinstance(o, (np.floating, np.integer))
                                 else o.item()))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m utils.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("speed", "crossed", "all"), default="speed")
    parser.add_argument("--profile", choices=("tiny", "paper"), default="tiny")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, default=list(MODALITIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", nargs="*", default=None, metavar="MODALITY:N",
                        help="configurations that also run the authors' loop, e.g. both:1000 audio:1000 "
                             "(default: every modality and N; give none to skip)")
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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    if args.part in ("speed", "all"):
        results["speed"] = run_speed(args.profile, args.device, args.samples, args.modalities, args.repeats,
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
