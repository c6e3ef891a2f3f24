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

Checks (:data:`CUE_CHECKS`): the multimodal model in ``'both'`` mode (audio and lyric cues,
ranked among all features), ``'audio'`` mode (audio cues) and ``'lyrical'`` mode (lyric
cues); the audio model in ``'audio'`` mode; the lyrics model in ``'lyrical'`` mode; and the
audio model in ``'both'`` mode, where the lyrics are perturbed but never reach the model: no
lyric feature should outweigh the best audio feature (:func:`lyrics_ignored`).

Explanations are written as JSON under ``cache_dir`` (one file per check and song), so a
long run resumes where it stopped.
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
from utils.musiclime.explanation import Explanation

TOP_K = 3
TARGET_HIT_RATE = 0.8
"""The issue's target: the planted cue in the top 3 for at least 80% of the songs, per modality."""


@dataclass(frozen=True)
class CueCheck:
    """One way of explaining a song: which model, which explainer mode, which cues count.

    Attributes
    ----------
    model : {'multimodal', 'audio', 'lyrics'}
        The trained model kind explained.
    modality : {'both', 'audio', 'lyrical'}
        The explainer mode.
    cues : tuple of {'audio', 'lyrics'}
        Planted cues the explanation is expected to find; songs without one are skipped.
    """

    model: str
    modality: str
    cues: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.model}/{self.modality}"


CUE_CHECKS: tuple[CueCheck, ...] = (
    CueCheck("multimodal", "both", ("audio", "lyrics")),
    CueCheck("multimodal", "audio", ("audio",)),
    CueCheck("multimodal", "lyrical", ("lyrics",)),
    CueCheck("audio", "audio", ("audio",)),
    CueCheck("lyrics", "lyrical", ("lyrics",)),
    CueCheck("audio", "both", ("audio",)),     # also the "lyrics are ignored" check
)
"""All checks, in report order. ``audio/both`` is the audio model with lyrics perturbed too."""


def get_checks(names: Sequence[str] | None = None) -> tuple[CueCheck, ...]:
    """Checks by name (``'multimodal/both'``, ...); all of :data:`CUE_CHECKS` when ``names`` is None."""
    if names is None:
        return CUE_CHECKS
    by_name = {c.name: c for c in CUE_CHECKS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {list(by_name)}")
    return tuple(by_name[n] for n in names)


# ---------------------------------------------------------------- songs and cues
def genre_cues(metadata: Mapping[str, dict], song_id: str, modalities: Sequence[str] = ("audio", "lyrics")) -> list[dict]:
    """The planted genre cues of ``song_id`` whose modality is in ``modalities``.

    Each cue is a metadata dict: audio cues carry ``component`` (e.g. ``'bass1'``), lyric
    cues ``word``.
    """
    if song_id not in metadata:
        raise KeyError(f"song id {song_id!r} has no planted-cue metadata (is this the corpus the songs come from?)")
    return [c for c in metadata[song_id]["genre_cues"] if c["modality"] in modalities]


def cue_songs(frame: pd.DataFrame, metadata: Mapping[str, dict], modalities: Sequence[str] = ("audio", "lyrics"),
              songs_per_class: int | None = None) -> pd.DataFrame:
    """Songs of ``frame`` with at least one genre cue of ``modalities``, in file order.

    Parameters
    ----------
    frame : a split DataFrame (``id``, ``primary_short``, ``lyrics``).
    metadata : :func:`utils.dataset_related.synth.read_metadata` of the same corpus.
    modalities : cue modalities that qualify a song.
    songs_per_class : keep the first ``n`` qualifying songs of each genre (all when None).
        The choice depends only on the file order, never on the model or its explanation.
    """
    if songs_per_class is not None and songs_per_class < 1:
        raise ValueError(f"songs_per_class must be >= 1 or None, got {songs_per_class}")
    keep = [bool(genre_cues(metadata, song_id, modalities)) for song_id in frame["id"]]
    selected = frame[np.asarray(keep, dtype=bool)]
    if songs_per_class is not None:
        selected = selected.groupby("primary_short", sort=False).head(songs_per_class)
    return selected.reset_index(drop=True)


EXAMPLE_GENRES = ("hip hop", "folk", "rock", "electronic", "punk", "pop", "heavy music", "rhythm music",
                  "alternative rock")
"""Genres for example songs, in order: an audio cue, a lyric cue, both, and so on."""


def example_songs(frame: pd.DataFrame, n: int, genres: Sequence[str] = EXAMPLE_GENRES) -> pd.DataFrame:
    """The first song (file order) of each of the first ``n`` of ``genres`` present in ``frame``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    firsts = frame.groupby("primary_short", sort=False).head(1).set_index("primary_short", drop=False)
    chosen = [g for g in genres if g in firsts.index][:n]
    if not chosen:
        raise ValueError(f"no song of genres {list(genres)} in the frame")
    return firsts.loc[chosen].reset_index(drop=True)


def song_factorization(corpus_dir: str | Path, song_id: str, profile: Profile, separator: Any,
                       num_segments: int | None = None):
    """The paper's audio components of one corpus song: ``SourceSeparationSegments``.

    The clip is ``<corpus_dir>/audio/<id>.*`` at the profile's rate, cut to its clip length
    (``profile.audio.clip_seconds``); ``separator`` is any :mod:`utils.musiclime.separation`
    separator (the oracle needs the id, which is passed along).
    """
    from utils.musiclime.factorization import SourceSeparationSegments
    from utils.dataset_related.features import find_audio, load_clip

    waveform = load_clip(find_audio(Path(corpus_dir) / "audio", song_id), profile.audio, name=f"song {song_id!r}",
                         pad=True)
    return SourceSeparationSegments(waveform, profile.audio.sample_rate, separator,
                                    num_segments=num_segments or profile.num_segments, track_id=song_id)


def explain_song(predictor: Any, corpus_dir: str | Path, song: Any, profile: Profile, *, separator: Any = None,
                 modality: str = "both", labels: Sequence[int] | None = None, num_samples: int = 1000,
                 batch_size: int = 250, seed: int = 0, num_segments: int | None = None,
                 factorization: Any = None, class_names: Sequence[str] = GENRES) -> Explanation:
    """MusicLIME explanation of one corpus song (a split row with ``id`` and ``lyrics``).

    Parameters
    ----------
    predictor : the black box (e.g. :func:`utils.musiclime.predict.load_predictor`; its fast path is used).
    separator : any :mod:`utils.musiclime.separation` separator; needed unless ``factorization`` is
        given or the predictor is a lyrics model (``predictor.kind == 'lyrics'``), which is
        explained without audio.
    modality : ``'both'``, ``'audio'`` or ``'lyrical'``.
    labels : classes to explain (default the predicted class, as the paper).
    num_samples, batch_size, seed : the explainer's settings.
    factorization : reuse an existing ``SourceSeparationSegments`` of this song.

    Returns
    -------
    Explanation (with the factorization attached when audio was perturbed, for listening).
    """
    from utils.musiclime.explainer import explain

    needs_audio = getattr(predictor, "kind", None) != "lyrics"
    if needs_audio and factorization is None:
        if separator is None:
            raise ValueError(f"song {song.id!r}: give separator= or factorization= to explain audio")
        factorization = song_factorization(corpus_dir, song.id, profile, separator, num_segments)
    return explain(predictor, factorization if needs_audio else None, song.lyrics,
                   sample_rate=profile.audio.sample_rate, modality=modality, labels=labels,
                   num_samples=num_samples, batch_size=batch_size, seed=seed, class_names=class_names)


def compare_sampling(predictor: Any, factorization: Any, lyrics: str, profile: Profile, *,
                     designs: Sequence[str] = ("iid", "antithetic", "crossed"), num_samples: int = 1000,
                     seed: int = 0, k: int = 10, class_names: Sequence[str] = GENRES) -> pd.DataFrame:
    """One song explained with each neighbourhood design (:func:`utils.musiclime.explainer.explain`'s ``sampling``).

    All designs explain the class the model predicts for the intact song, in ``'both'``
    mode. ``'crossed'`` needs a late-fusion predictor (``predict_crossed``).

    Returns
    -------
    pd.DataFrame, one row per design: ``design``, ``rows`` (surrogate rows), ``encoder_passes``
    (encoder rows actually run, audio + text), ``seconds``, ``top`` (the ``k`` best features by
    weight), ``overlap_with_first`` (share of the first design's top ``k``).
    """
    from utils.musiclime.explainer import explain

    rows, first_top, label = [], None, None
    for design in designs:
        if hasattr(predictor, "reset_counters"):
            predictor.reset_counters()
        tick = time.perf_counter()
        explanation = explain(predictor, factorization, lyrics, sample_rate=profile.audio.sample_rate,
                              labels=None if label is None else [label], num_samples=num_samples,
                              batch_size=num_samples, seed=seed, sampling=design, class_names=class_names)
        seconds = time.perf_counter() - tick
        label = explanation.labels[0] if label is None else label
        top = [row["name"] for row in explanation.ranked(label, k=k)]
        first_top = top if first_top is None else first_top
        calls = getattr(predictor, "calls", {})
        rows.append({"design": design, "rows": explanation.settings["num_samples"],
                     "encoder_passes": calls.get("audio_rows", 0) + calls.get("text_rows", 0),
                     "seconds": round(seconds, 2), "top": top,
                     "overlap_with_first": len(set(top) & set(first_top)) / max(len(first_top), 1)})
    return pd.DataFrame(rows)


def describe_cues(metadata: Mapping[str, dict], song_id: str) -> str:
    """One line naming the planted genre cues of a song, e.g. ``'hip hop: audio bass1 (boom808)'``."""
    record = metadata[song_id] if song_id in metadata else None
    if record is None:
        raise KeyError(f"song id {song_id!r} has no planted-cue metadata")
    parts = [f"audio {c['component']} ({c['sound']}, {c['start_s']:.1f}-{c['end_s']:.1f} s)" if c["modality"] == "audio"
             else f"lyric word '{c['word']}'" for c in record["genre_cues"]]
    return f"{record['genre']}: " + (", ".join(parts) if parts else "no planted genre cue")


def write_explanation(explanation: Explanation, out_dir: str | Path, name: str, label: int | None = None,
                      k: int = 10) -> dict[str, Path]:
    """Save one explanation: ``explanations/<name>.json`` and ``.csv`` and its figures.

    Writes ``<out_dir>/explanations/<name>.json`` (:meth:`Explanation.to_json`),
    ``<out_dir>/explanations/<name>.csv`` (:meth:`Explanation.to_frame`),
    ``<out_dir>/figures/<name>_top.png`` (top-``k`` bars of both modalities) and, when the
    explanation has audio features, ``<out_dir>/figures/<name>_heatmap.png`` (stems x
    segments). Returns the paths by kind (``json``, ``csv``, ``top``, ``heatmap``).
    """
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = {"json": out_dir / "explanations" / f"{name}.json", "csv": out_dir / "explanations" / f"{name}.csv",
             "top": out_dir / "figures" / f"{name}_top.png"}
    explanation.to_json(paths["json"])
    explanation.to_frame(label).to_csv(paths["csv"], index=False)
    plt.close(explanation.plot_top_features(label, k=k, save_path=paths["top"], order="weight"))
    if explanation.audio_features:
        paths["heatmap"] = out_dir / "figures" / f"{name}_heatmap.png"
        plt.close(explanation.plot_audio_heatmap(label, save_path=paths["heatmap"]))
    return paths


# ---------------------------------------------------------------- scoring one explanation
def _matches(feature: dict, cue: dict) -> bool:
    if cue["modality"] == "audio":
        return feature["modality"] == "audio" and feature["name"] == cue["component"]
    return feature["modality"] == "lyrics" and feature["name"].lower() == cue["word"].lower()


def cue_rank(explanation: Explanation, cue: dict, label: int | None = None) -> dict:
    """Where a planted cue lands in the explanation of ``label``.

    Features are ranked by signed weight, largest first, over all features of the
    explanation (both modalities in ``'both'`` mode). A lyric cue matches every feature
    spelling the word (case-insensitive: a line-initial word is capitalised); the best
    one counts.

    Returns
    -------
    dict
        ``rank`` (1-based, over all features), ``rank_in_modality`` (1-based, among the
        cue's modality), ``weight`` of the cue feature (NaN if absent) and ``feature``
        (its name; None if the explanation has no such feature).
    """
    ranked = explanation.ranked(label, order="weight")
    for rank, feature in enumerate(ranked, start=1):
        if _matches(feature, cue):
            same = [f for f in ranked if f["modality"] == feature["modality"]]
            return {"rank": rank, "rank_in_modality": 1 + same.index(feature), "weight": feature["weight"],
                    "feature": feature["name"]}
    return {"rank": None, "rank_in_modality": None, "weight": float("nan"), "feature": None}


def is_hit(rank: dict, k: int = TOP_K) -> bool:
    """A cue is found when its weight is positive and it ranks in the top ``k``."""
    return rank["rank"] is not None and rank["weight"] > 0 and rank["rank"] <= k


def modality_margin(explanation: Explanation, label: int | None = None) -> dict:
    """``max |lyric weight|`` against the best (largest signed) audio weight of ``label``.

    For a model that never sees lyrics the lyric weights are regression noise, so
    ``lyrics_ignored`` (max |lyric weight| < best audio weight) should hold.
    """
    rows = explanation.ranked(label, order="weight")
    lyric = [abs(r["weight"]) for r in rows if r["modality"] == "lyrics"]
    audio = [r["weight"] for r in rows if r["modality"] == "audio"]
    if not lyric or not audio:
        raise ValueError(f"modality_margin needs an explanation of both modalities, got modality "
                         f"{explanation.modality!r}")
    max_lyric, best_audio = float(max(lyric)), float(max(audio))
    return {"max_abs_lyric_weight": max_lyric, "best_audio_weight": best_audio,
            "lyrics_ignored": bool(max_lyric < best_audio)}


# ---------------------------------------------------------------- the run
def model_fingerprint(predictor: Any) -> str:
    """A short sha256 of a predictor's weights (``predictor.model``'s state dict), for cache keys.

    Black boxes without a torch ``model`` attribute get ``'custom'``: their cache entries
    are only safe while the black box does not change.
    """
    import hashlib

    import torch

    model = getattr(predictor, "model", None)
    if not isinstance(model, torch.nn.Module):
        return "custom"
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def _cache_path(cache_dir: Path | None, check: CueCheck, song_id: str, label: int, settings: dict,
                fingerprint: str) -> Path | None:
    if cache_dir is None:
        return None
    tag = "-".join(f"{k}{v}" for k, v in settings.items())
    return cache_dir / f"{check.model}-{check.modality}-{fingerprint}-{tag}" / f"{song_id}_{label}.json"


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
        (:func:`model_fingerprint`), settings, song and label; existing ones are reused.
    progress : tqdm bar over songs.

    Returns
    -------
    pandas.DataFrame
        One row per (check, song, cue): ``check``, ``model``, ``modality``, ``id``,
        ``genre`` (true class, the explained label), ``predicted``, ``correct``,
        ``probability`` (of the true class), ``cue_modality``, ``cue`` (component or word),
        ``rank``, ``rank_in_modality``, ``weight``, ``hit``, ``top`` (the top-``k``
        feature names), ``score`` (surrogate R^2), ``seconds`` (explanation time, NaN if
        read from the cache) and, for checks in ``'both'`` mode, ``max_abs_lyric_weight``,
        ``best_audio_weight``, ``lyrics_ignored``.
    """
    from tqdm.auto import tqdm

    from utils.musiclime.explainer import explain
    from utils.musiclime.factorization import WordFeatures

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
    fingerprints = {c.model: model_fingerprint(predictors[c.model]) if cache_dir is not None else None for c in checks}
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
                    factorization = song_factorization(corpus_dir, song.id, profile, separator, num_segments)
                started = time.perf_counter()
                explanation = explain(predictors[check.model], factorization if check.model != "lyrics" else None,
                                      words, sample_rate=profile.audio.sample_rate, modality=check.modality,
                                      labels=[label], num_samples=num_samples, batch_size=batch_size, seed=seed,
                                      class_names=GENRES)
                seconds = time.perf_counter() - started
                if path is not None:
                    explanation.to_json(path)
            predicted = int(np.argmax(explanation.probabilities))
            common = {"check": check.name, "model": check.model, "modality": check.modality, "id": song.id,
                      "genre": song.primary_short, "predicted": GENRES[predicted], "correct": predicted == label,
                      "probability": float(explanation.probabilities[label]),
                      "top": [r["name"] for r in explanation.ranked(label, k=k, positive_only=True)],
                      "score": explanation.fit(label).score, "seconds": seconds}
            if check.modality == "both":
                common.update(modality_margin(explanation, label))
            for cue in genre_cues(metadata, song.id, check.cues):
                rank = cue_rank(explanation, cue, label)
                rows.append({**common, "cue_modality": cue["modality"],
                             "cue": cue["component"] if cue["modality"] == "audio" else cue["word"],
                             "rank": rank["rank"], "rank_in_modality": rank["rank_in_modality"],
                             "weight": rank["weight"], "hit": is_hit(rank, k)})
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
    if save_path is not None:
        Path(save_path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save_path, dpi=150, bbox_inches="tight")
    return fig
