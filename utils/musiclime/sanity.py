"""The planted-cue sanity check: does MusicLIME find the evidence we planted?

audioLIME's sanity check (Haunschmid et al. 2020) trains a classifier on a planted spurious
signal and asks whether the explanation points at it. Our synthetic corpus
(:mod:`utils.dataset_related.synth`) plants one audio cue (a stem inside one segment, e.g. ``bass1``) and/or
one lyric cue word per genre and records them in ``metadata.jsonl``; the trained models can
only tell the genres apart through those cues. For each test song whose genre has a cue we
explain the model and ask whether the cue's feature is among the ``k`` (default 3) features
with the largest positive weight.

Which label is explained: the song's **true** genre. "Does the explanation find the cue
for this class" is a question about the class that owns the cue, whatever the model
predicted (pop and rock share the falsetto audio cue, pop and alternative rock share the
love words, so a unimodal model may pick the sibling class while still relying on the cue).
Each result row also records whether the model's prediction was correct; on correctly
predicted songs the true class is the predicted class, so the hit rate restricted to them
(``hit_rate_correct`` in :func:`hit_rates`) is the paper's setting (explain the predicted
class) without a second explanation.

The checks are :data:`CUE_CHECKS`; the audio model in ``'both'`` mode also checks that lyrics it
never sees get no weight (:func:`lyrics_ignored`). Explanations are cached as JSON under
``cache_dir`` (one file per check and song), so a long run resumes where it stopped. The song
becomes components through :func:`utils.musiclime.song.song_factorization`, as everywhere.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from utils.config import GENRES, Profile
from utils.io import id_path
from utils.musiclime.explanation import Explanation
from utils.musiclime.planted import TOP_K, cue_rank, cue_songs, genre_cues, is_hit, modality_margin
from utils.plotting import save_figure

TARGET_HIT_RATE = 0.8
"""The issue's target: the planted cue in the top 3 for at least 80% of the songs, per modality."""


@dataclass(frozen=True)
class CueCheck:
    """One way of explaining a song: which model, which explainer mode, which cues count.

    Attributes
    ----------
    model : {'multimodal', 'audio', 'lyrics'}
        The trained model kind explained.
    mode : {'both', 'audio', 'lyrical'}
        The explainer mode.
    cues : tuple of {'audio', 'lyrics'}
        Planted cues the explanation is expected to find; songs without one are skipped.
    """

    model: str
    mode: str
    cues: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.model}/{self.mode}"


CUE_CHECKS: tuple[CueCheck, ...] = (
    CueCheck("multimodal", "both", ("audio", "lyrics")),
    CueCheck("multimodal", "audio", ("audio",)),
    CueCheck("multimodal", "lyrical", ("lyrics",)),
    CueCheck("audio", "audio", ("audio",)),
    CueCheck("lyrics", "lyrical", ("lyrics",)),
    CueCheck("audio", "both", ("audio",)),     # also the "lyrics are ignored" check
)
"""All checks, in report order. ``audio/both`` is the audio model with lyrics perturbed too."""


def cue_rows(explanation: Explanation, check: CueCheck, song: Any, metadata: Mapping[str, dict], k: int,
             seconds: float) -> list[dict]:
    """The :func:`run_cue_checks` rows of one song's explanation (of its true genre): one per cue of ``check``."""
    label = GENRES.index(song.primary_short)
    predicted = int(np.argmax(explanation.probabilities))
    common = {"check": check.name, "model": check.model, "mode": check.mode, "id": song.id,
              "genre": song.primary_short, "predicted": GENRES[predicted], "correct": predicted == label,
              "probability": float(explanation.probabilities[label]),
              "top": [r["name"] for r in explanation.ranked(label, k=k, positive_only=True)],
              "score": explanation.fit(label).score, "seconds": seconds}
    if check.mode == "both":
        common.update(modality_margin(explanation, label))
    rows = []
    for cue in genre_cues(metadata, song.id, check.cues):
        rank = cue_rank(explanation, cue, label)
        rows.append({**common, "cue_modality": cue["modality"],
                     "cue": cue["component"] if cue["modality"] == "audio" else cue["word"],
                     "rank": rank["rank"], "rank_in_modality": rank["rank_in_modality"],
                     "weight": rank["weight"], "hit": is_hit(rank, k)})
    return rows


# ---------------------------------------------------------------- the run
def predictor_fingerprint(predictor: Any) -> str:
    """A short :func:`utils.model_related.models.model_fingerprint` of ``predictor.model``, for cache keys.

    Black boxes without a torch ``model`` attribute get ``'custom'``: their cache entries
    are only safe while the black box does not change.
    """
    import torch

    from utils.model_related.models import model_fingerprint

    model = getattr(predictor, "model", None)
    return model_fingerprint(model)[:12] if isinstance(model, torch.nn.Module) else "custom"


def _cache_path(cache_dir: Path | None, check: CueCheck, song_id: str, label: int, settings: dict,
                fingerprint: str) -> Path | None:
    if cache_dir is None:
        return None
    tag = "-".join(f"{k}{v}" for k, v in settings.items())
    return id_path(cache_dir / f"{check.model}-{check.mode}-{fingerprint}-{tag}", song_id, f"_{int(label)}.json",
                   source="sanity cache")


def run_cue_checks(predictors: Mapping[str, Any], corpus_dir: str | Path, frame: pd.DataFrame,
                   metadata: Mapping[str, dict], profile: Profile, *, separator: Any,
                   checks: Sequence[CueCheck] = CUE_CHECKS, songs_per_class: int | None = None,
                   num_samples: int = 1000, batch_size: int = 250, seed: int = 0, k: int = TOP_K,
                   num_segments: int | None = None, cache_dir: str | Path | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Explain songs with planted genre cues and locate the cues in the explanations.

    Parameters
    ----------
    predictors : mapping
        Model kind (``'multimodal'``, ``'audio'``, ``'lyrics'``) -> black box, e.g.
        :func:`utils.musiclime.predict.load_predictor` (its fast path is used); checks whose model is
        missing are skipped.
    corpus_dir : the synthetic corpus (audio, stems, metadata).
    frame : the split explained (usually the test split), ``id``, ``lyrics``, ``primary_short``.
    metadata : :func:`utils.dataset_related.synth.read_metadata` of the corpus.
    profile : audio settings (rate, clip length) and the default number of segments.
    separator : a :mod:`utils.musiclime.separation` separator (``OracleSeparator(corpus_dir)`` for the
        exact stems).
    checks : which :class:`CueCheck` to run.
    songs_per_class : the first ``n`` qualifying songs of each genre per check (all when None).
    num_samples, batch_size, seed : the explainer's settings (seed fixed: same numbers each run).
    k : a cue is a hit when it ranks in the top ``k`` by positive weight.
    num_segments : temporal segments (default ``profile.num_segments``).
    cache_dir : optional directory for the explanations (JSON), keyed by check, model weights
        (:func:`predictor_fingerprint`), settings, song and label; existing ones are reused.
    progress : tqdm bar over songs.

    Returns
    -------
    pandas.DataFrame
        One row per (check, song, cue): ``check``, ``model``, ``mode``, ``id``,
        ``genre`` (true class, the explained label), ``predicted``, ``correct``,
        ``probability`` (of the true class), ``cue_modality``, ``cue`` (component or word),
        ``rank``, ``rank_in_modality``, ``weight``, ``hit``, ``top`` (the top-``k``
        feature names), ``score`` (surrogate R^2), ``seconds`` (explanation time, NaN if
        read from the cache) and, for checks in ``'both'`` mode, ``max_abs_lyric_weight``,
        ``best_audio_weight``, ``lyrics_ignored``.
    """
    from tqdm.auto import tqdm

    from utils.musiclime.explainer import explain
    from utils.musiclime.lyric_features import WordFeatures
    from utils.musiclime.song import song_factorization

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    unknown = sorted(set(frame["primary_short"]) - set(GENRES))
    if unknown:
        raise ValueError(f"frame has genres {unknown} outside the genre classes {list(GENRES)}")
    checks = [c for c in checks if c.model in predictors]
    if not checks:
        raise ValueError(f"no check can run: predictors has {sorted(predictors)}, checks need "
                         f"{sorted({c.model for c in CUE_CHECKS})}")
    num_segments = num_segments or profile.num_segments
    cache_dir = None if cache_dir is None else Path(cache_dir)
    settings = {"n": num_samples, "seed": seed, "seg": num_segments, "sep": getattr(separator, "name", "custom")}
    fingerprints = {c.model: predictor_fingerprint(predictors[c.model]) if cache_dir is not None else None
                    for c in checks}
    per_check = {c.name: set(cue_songs(frame, metadata, c.cues, songs_per_class)["id"]) for c in checks}
    songs = frame[frame["id"].isin(set().union(*per_check.values()))]
    rows = []
    for song in tqdm(list(songs.itertuples(index=False)), desc="planted-cue check", unit="song", disable=not progress):
        label = GENRES.index(song.primary_short)
        factorization = None
        words = WordFeatures(song.lyrics)
        for check in checks:
            if song.id not in per_check[check.name]:
                continue
            path = _cache_path(cache_dir, check, song.id, label, settings, fingerprints[check.model])
            seconds = float("nan")
            if path is not None and path.is_file():
                explanation = Explanation.from_json(path)
            else:
                if check.model != "lyrics" and factorization is None:     # the lyrics model never gets audio
                    factorization = song_factorization(corpus_dir, song.id, profile, separator,
                                                       num_segments=num_segments)
                started = time.perf_counter()
                explanation = explain(predictors[check.model], factorization if check.model != "lyrics" else None,
                                      words, sample_rate=profile.audio.sample_rate, mode=check.mode,
                                      labels=[label], num_samples=num_samples, batch_size=batch_size, seed=seed,
                                      class_names=GENRES)
                seconds = time.perf_counter() - started
                if path is not None:
                    explanation.to_json(path)
            rows += cue_rows(explanation, check, song, metadata, k, seconds)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- summaries
def hit_rates(results: pd.DataFrame, by: Sequence[str] = ("check", "cue_modality")) -> pd.DataFrame:
    """Hit rates of :func:`run_cue_checks` rows grouped by ``by``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``by``: ``cues`` (rows), ``hits``, ``hit_rate`` (all songs, true class
        explained), ``correct`` (rows whose song the model classified correctly),
        ``hit_rate_correct`` (hit rate on those: the predicted class explained) and
        ``median_rank``.
    """
    if results.empty:
        raise ValueError("no planted-cue results to summarise")
    grouped = results.groupby(list(by), sort=False)
    table = pd.DataFrame({
        "cues": grouped.size(),
        "hits": grouped["hit"].sum().astype(int),
        "hit_rate": grouped["hit"].mean(),
        "correct": grouped["correct"].sum().astype(int),
        "hit_rate_correct": grouped.apply(lambda g: g.loc[g["correct"], "hit"].mean() if g["correct"].any()
                                          else float("nan"), include_groups=False),
        "median_rank": grouped["rank"].median(),
    })
    return table


def lyrics_ignored(results: pd.DataFrame, check: str = "audio/both") -> dict:
    """The fraction of songs where no lyric weight outranks the best audio weight.

    Parameters
    ----------
    results : :func:`run_cue_checks` output holding ``check`` (the audio model in
        ``'both'`` mode).

    Returns
    -------
    dict
        ``songs``, ``fraction`` (songs with max |lyric weight| < best audio weight) and
        ``worst_ratio`` (the largest max |lyric weight| / best audio weight).
    """
    rows = results[results["check"] == check].drop_duplicates("id")
    if rows.empty:
        raise ValueError(f"no rows of check {check!r}; run it with an audio predictor")
    ratio = rows["max_abs_lyric_weight"] / rows["best_audio_weight"].where(rows["best_audio_weight"] > 0)
    return {"songs": int(len(rows)), "fraction": float(rows["lyrics_ignored"].mean()),
            "worst_ratio": float(ratio.max()) if ratio.notna().all() else float("inf")}


def plot_hit_rates(results: pd.DataFrame, save_path: str | Path | None = None, k: int = TOP_K,
                   target: float = TARGET_HIT_RATE):
    """Bar chart of planted-cue hit rates per genre, one bar per check and cue modality.

    The last group (``all``) pools the genres; the dashed line is the target. Returns the
    matplotlib Figure (also saved to ``save_path`` when given).
    """
    import matplotlib.pyplot as plt

    if results.empty:
        raise ValueError("no planted-cue results to plot")
    series = results.assign(series=results["check"] + " (" + results["cue_modality"] + " cue)")
    per_genre = series.pivot_table(index="genre", columns="series", values="hit", aggfunc="mean", sort=False)
    genres = [g for g in GENRES if g in per_genre.index]
    order = list(dict.fromkeys(series["series"]))
    per_genre = per_genre.reindex(index=genres, columns=order)
    per_genre.loc["all"] = series.groupby("series")["hit"].mean().reindex(order)
    counts = series.groupby("series").size().reindex(order)

    width = 0.8 / len(order)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(per_genre)), 4.2))
    x = np.arange(len(per_genre))
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(order):
        ax.bar(x + (i - (len(order) - 1) / 2) * width, per_genre[name].to_numpy(dtype=float), width,
               label=f"{name}, n={counts[name]}", color=colours(i % 10))
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.set_xticks(x, [g.replace(" ", "\n") for g in per_genre.index], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"cue in top {k} (positive weight)")
    ax.set_title("Planted-cue sanity check: does the explanation of the true class find the cue?")
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.tight_layout()
    return save_figure(fig, save_path)
