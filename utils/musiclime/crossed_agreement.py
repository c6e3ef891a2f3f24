"""How well crossed and antithetic sampling agree with the i.i.d. explanation.

Measured by ``python -m utils.benchmark --part crossed``.

:func:`run_crossed_agreement` explains ``songs`` test songs of the synthetic corpus with the
trained multimodal model ``runs/<profile>/<task>/multimodal/best``, once per sampling design, and
compares each design with the i.i.d. reference: top-10 overlap, Spearman correlation of the
weights, planted-cue hit rate, encoder passes, seconds.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from utils.config import DATA_DIR, TASKS, resolve_device
from utils.musiclime.benchmark_setup import Song, load_song, trained_multimodal
from utils.musiclime.explainer import explain
from utils.musiclime.sampling import crossed_sizes
from utils.musiclime.predict import ModelPredictor

PRECISE_METRICS = ("top10_overlap", "top10_overlap_abs", "spearman")


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

    Returns ``{"summary": ..., "songs": [one record per song]}``, JSON-ready.
    """
    from utils.dataset_related.splits import read_split
    from utils.dataset_related.synth import read_metadata

    device = resolve_device(device)
    corpus_dir = Path(corpus_dir)
    profile, model, tokens, model_source = trained_multimodal(profile_name, corpus_dir, run_dir, task, device, seed,
                                                              "crossed agreement")
    metadata = read_metadata(corpus_dir)
    frame = read_split(corpus_dir, "test")
    k_audio, k_text = crossed_sizes(num_samples, crossed_masks)
    budget = max(2, (k_audio + k_text) // 2)
    variants = sampling_variants(num_samples, (k_audio, k_text), budget, seed)
    runs_wanted = [("reference", dict(seed=seed)), *((k, v[1]) for k, v in variants.items())]
    if precise_samples:
        runs_wanted.append(("precise", dict(sampling="antithetic", seed=seed + 2, num_samples=precise_samples)))
    new_predictor = partial(ModelPredictor, model, profile, tokens, device, chunk_size=chunk_size)
    per_song = []
    for position in _pick_songs(frame, songs):
        song = load_song(corpus_dir, profile, index=position)
        cues = metadata[song.song_id]["genre_cues"]
        record = {"id": song.song_id, "genre": song.genre}
        runs = {name: _record_run(record, name, song, options, new_predictor(), num_samples, profile.audio.sample_rate)
                for name, options in runs_wanted}
        _compare_with_reference(record, runs, variants, cues, TASKS[task], precise_samples)
        per_song.append(record)
        log(f"{song.song_id} ({song.genre}, predicted {record['predicted']}): top-10 overlap with the reference "
            + ", ".join(f"{name} {record[f'{name}_top10_overlap']:.1f}" for name in variants)
            + f"; planted in top 3 ref {sum(record['reference_hits'])}/{len(cues)} crossed "
            f"{sum(record['crossed_hits'])}/{len(cues)}; seconds ref {record['reference_seconds']:.1f} crossed "
            f"{record['crossed_seconds']:.1f}")
    settings = {"num_samples": num_samples, "crossed_masks": [k_audio, k_text], "same_budget_iid_samples": budget,
                "model": model_source, "precise_samples": int(precise_samples)}
    return {"summary": _summary(per_song, variants, settings), "songs": per_song}


def sampling_variants(num_samples: int, masks: tuple[int, int], budget: int, seed: int) -> dict[str, tuple]:
    """Name -> (label, ``explain`` options) of every design compared with the i.i.d. reference.

    ``masks`` = (K_a, K_t) of the crossed design; ``budget`` = rows of the i.i.d. design with the
    crossed design's encoder budget. The audio-heavy design's masks depend on the song (a callable).
    """
    k_audio, k_text = masks
    double = crossed_sizes(num_samples, (2 * k_audio, 2 * k_text))
    budget_masks = k_audio + k_text

    def audio_heavy(song: Song) -> tuple[int, int]:      # 80 / 20, the lyric share kept identifiable
        return crossed_sizes(num_samples, (max(3, round(0.8 * budget_masks)),
                                           max(3, round(0.2 * budget_masks), 2 * song.words.n_features + 1)))
    return {
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


def _record_run(record: dict, name: str, song: Song, options: dict, predictor: ModelPredictor, num_samples: int,
                sample_rate: int):
    """Explain ``song`` with one design; its seconds, encoder passes (and crossed masks) go into ``record``.

    ``options`` are :func:`utils.musiclime.explainer.explain` options; they may override ``num_samples``.
    """
    options = dict(options)
    n = options.pop("num_samples", num_samples)
    if callable(options.get("crossed_masks")):
        options["crossed_masks"] = options["crossed_masks"](song)
        record[f"{name}_crossed_masks"] = list(options["crossed_masks"])
    tick = time.perf_counter()
    explanation = explain(predictor, song.factorization, song.words, sample_rate=sample_rate,
                          num_samples=n, batch_size=n, **options)
    record[f"{name}_seconds"] = time.perf_counter() - tick
    record[f"{name}_encoder_passes"] = predictor.calls["audio_rows"] + predictor.calls["text_rows"]
    return explanation


def _compare_with_reference(record: dict, runs: dict, variants: dict, cues: Sequence[dict],
                            class_names: Sequence[str], precise_samples: int) -> None:
    """Top-10 overlaps, Spearman correlations and planted-cue hits of every run, into ``record``."""
    from scipy.stats import spearmanr

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


def _summary(per_song: Sequence[dict], variants: dict, settings: dict) -> dict:
    """Means over the songs, per design (medians for seconds)."""
    mean = lambda key: float(np.mean([r[key] for r in per_song]))                          # noqa: E731
    precise = settings["precise_samples"]
    summary = {"songs": len(per_song), **settings,
               "reference_planted_hit_rate": _rate([r["reference_hits"] for r in per_song]),
               "reference_encoder_passes": mean("reference_encoder_passes"),
               "reference_seconds": float(np.median([r["reference_seconds"] for r in per_song]))}
    if precise:
        summary["reference"] = {"label": f"i.i.d. N = {settings['num_samples']} (the reference)",
                                **{f"precise_{m}_mean": mean(f"reference_precise_{m}") for m in PRECISE_METRICS}}
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
        if precise:
            summary[name].update({f"precise_{m}_mean": mean(f"{name}_precise_{m}") for m in PRECISE_METRICS})
    return summary


def _rate(hit_lists: Sequence[Sequence[bool]]) -> float:
    flat = [h for hits in hit_lists for h in hits]
    return float(np.mean(flat)) if flat else float("nan")


def _top(explanation, k: int, order: str = "weight") -> list[int]:
    return [row["index"] for row in explanation.ranked(k=k, order=order)]


def _planted_hits(explanation, cues: Sequence[dict], k: int = 3) -> list[bool]:
    """Per planted cue: is it among the explanation's top ``k`` features (words case-insensitively)?"""
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
