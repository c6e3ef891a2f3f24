"""MusicLIME against other explainers on the same features: the comparison table.

Each method (:class:`Method`) explains the same song, the same label (the model's predicted
class) over the same features (audio components, then words). A MusicLIME variant is just a dict
of :func:`utils.musiclime.explainer.explain` keyword arguments; a variant whose arguments the
installed ``explain`` does not take yet is skipped with a note (:func:`explain_accepts`). The
other methods are KernelSHAP (captum), occlusion and a random ranking
(:mod:`utils.musiclime.baselines`).

Per song and method (:func:`compare_song`): the weights with ``len(seeds)`` seeds, the model rows
and seconds each explanation took, the deletion / insertion AOPC of the first seed's weights
(:mod:`utils.musiclime.faithfulness`), the mean pairwise top-10 overlap across seeds, and (on the
synthetic corpus) whether each planted cue is in the top 3. :func:`comparison_table` averages
over songs (mean and standard error). The command is :mod:`utils.compare`.
"""
from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from utils.musiclime.baselines import kernel_shap_weights, occlusion_weights, random_weights
from utils.musiclime.faithfulness import MaskedModel, aopc, faithfulness, mean_se, ranking, seed_stability

EXPLAINERS = ("musiclime", "kernelshap", "occlusion", "random")


@dataclass(frozen=True)
class Method:
    """One row of the comparison.

    Attributes
    ----------
    key : str
        Short id (CSV, figure legend).
    label : str
        What the table calls it.
    explainer : {'musiclime', 'kernelshap', 'occlusion', 'random'}
    options : dict
        For ``'musiclime'``: keyword arguments of ``explain`` (e.g. ``{"sampling": "antithetic"}``).
    """

    key: str
    label: str
    explainer: str
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.explainer not in EXPLAINERS:
            raise ValueError(f"method {self.key!r}: explainer must be one of {EXPLAINERS}, got {self.explainer!r}")


METHODS: tuple[Method, ...] = (
    Method("musiclime_iid", "MusicLIME i.i.d. (paper)", "musiclime", {"sampling": "iid"}),
    Method("musiclime_antithetic", "MusicLIME antithetic", "musiclime", {"sampling": "antithetic"}),
    Method("musiclime_crossed", "MusicLIME crossed", "musiclime", {"sampling": "crossed"}),
    Method("musiclime_auto", "MusicLIME auto N", "musiclime", {"num_samples": "auto"}),
    Method("musiclime_locality", "MusicLIME locality kernel", "musiclime", {"kernel": "locality"}),
    Method("kernelshap", "KernelSHAP (captum)", "kernelshap"),
    Method("occlusion", "occlusion (leave one out)", "occlusion"),
    Method("random", "random ranking", "random"),
)
"""Every method of the table, in its row order."""


class UnsupportedExplainer(ValueError):
    """A method that cannot explain this model (or mode); the message names both."""


# ---------------------------------------------------------------- what can run
def explain_accepts(options: dict, explain_fn: Callable | None = None) -> str | None:
    """Why the installed ``explain`` cannot take ``options`` (None: it can).

    An unknown keyword, or a string ``num_samples`` (``"auto"``) that ``explain`` neither annotates
    (``str`` / ``Literal``) nor documents (``num_samples : int or 'auto'`` in its docstring).
    """
    if explain_fn is None:
        from utils.musiclime.explainer import explain as explain_fn
    parameters = inspect.signature(explain_fn).parameters
    unknown = [name for name in options if name not in parameters]
    if unknown:
        return f"explain() takes no {', '.join(map(repr, unknown))} argument yet"
    value = options.get("num_samples")
    if isinstance(value, str):
        annotation = str(parameters["num_samples"].annotation)
        documented = re.search(rf"num_samples\s*:[^\n]*'{re.escape(value)}'", explain_fn.__doc__ or "")
        if "str" not in annotation and "Literal" not in annotation and not documented:
            return f"explain() takes no num_samples={value!r} yet"
    return None


def describe_model(predictor: Any) -> str:
    """``'<kind> model'`` plus where it came from when the predictor says (``source``)."""
    kind = getattr(predictor, "kind", None) or type(predictor).__name__
    source = getattr(predictor, "source", None)
    return f"the {kind} model" + (f" ({source})" if source else "")


def check_supported(method: Method, predictor: Any, mode: str) -> None:
    """Refuse a method that cannot explain this model in this mode (:class:`UnsupportedExplainer`).

    Crossed sampling needs a late-fusion model (``predict_crossed``, a multimodal predictor) in
    ``'both'`` mode; the other methods only query the model and work for any.
    """
    if method.explainer == "musiclime" and method.options.get("sampling") == "crossed":
        late_fusion = callable(getattr(predictor, "predict_crossed", None)) and \
            getattr(predictor, "kind", "multimodal") == "multimodal"
        if not late_fusion:
            raise UnsupportedExplainer(f"explainer {method.label!r} ({method.key}) does not support "
                                       f"{describe_model(predictor)}: crossed sampling needs a late-fusion model "
                                       "(per-modality encoders and a head, predict_crossed); use sampling 'iid' or "
                                       "'antithetic'")
        if mode != "both":
            raise UnsupportedExplainer(f"explainer {method.label!r} ({method.key}) does not support mode {mode!r} of "
                                       f"{describe_model(predictor)}: crossed sampling crosses audio and lyric masks "
                                       "and needs mode 'both'")


def runnable_methods(methods: Sequence[Method], predictor: Any, mode: str, *, skip_unsupported: bool = False,
                     explain_fn: Callable | None = None, log: Callable[[str], None] = print) -> list[Method]:
    """The methods to run: refuses (or, with ``skip_unsupported``, skips with a note) a method that does not
    support the model, and skips with a note a MusicLIME variant the installed ``explain`` cannot take yet."""
    keep = []
    for method in methods:
        try:
            check_supported(method, predictor, mode)
        except UnsupportedExplainer as error:
            if not skip_unsupported:
                raise
            log(f"skipped: {error}")
            continue
        reason = explain_accepts(method.options, explain_fn) if method.explainer == "musiclime" else None
        if reason:
            log(f"skipped {method.key}: {reason} (defined; it runs once explain() supports it)")
            continue
        keep.append(method)
    return keep


# ---------------------------------------------------------------- counting the model
class CountingPredictor:
    """Forwards a predictor's black-box interface and counts the rows (perturbed songs) asked about.

    ``rows`` counts rows of ``__call__`` / ``predict_masks`` and head rows (pairs) of
    ``predict_crossed``; every other attribute (``sample_rate``, ``calls``, ``kind`` ...) is the
    wrapped predictor's.
    """

    def __init__(self, predictor: Any):
        self._predictor = predictor
        self.rows = 0
        if callable(getattr(predictor, "predict_masks", None)):
            self.predict_masks = self._predict_masks
        if callable(getattr(predictor, "predict_crossed", None)):
            self.predict_crossed = self._predict_crossed

    def __getattr__(self, name: str):
        return getattr(self._predictor, name)

    def __call__(self, texts, waveforms):
        self.rows += len(texts)
        return self._predictor(texts, waveforms)

    def _predict_masks(self, audio_masks, text_masks, factorization, text_features):
        self.rows += len(audio_masks)
        return self._predictor.predict_masks(audio_masks, text_masks, factorization, text_features)

    def _predict_crossed(self, audio_masks, text_masks, factorization, text_features, pairs=None):
        self.rows += len(pairs[0]) if pairs is not None else len(audio_masks) * len(text_masks)
        return self._predictor.predict_crossed(audio_masks, text_masks, factorization, text_features, pairs=pairs)


def _encoder_passes(predictor: Any) -> int | None:
    calls = getattr(predictor, "calls", None)
    return None if not isinstance(calls, dict) else int(calls.get("audio_rows", 0) + calls.get("text_rows", 0))


# ---------------------------------------------------------------- one song
def method_weights(method: Method, predictor: CountingPredictor, masked: MaskedModel, factorization: Any, text: Any,
                   *, label: int, mode: str, num_samples: int, seed: int, batch_size: int,
                   sample_rate: int | None) -> np.ndarray:
    """One explanation's weights, shape (n_features,), in ``masked``'s column order."""
    if method.explainer == "musiclime":
        from utils.musiclime.explainer import explain

        options = {"num_samples": num_samples, **method.options}
        explanation = explain(predictor, factorization, text, sample_rate=sample_rate, mode=mode, labels=[label],
                              batch_size=batch_size, seed=seed, **options)
        return np.asarray(explanation.fit(label).weights, dtype=np.float64)
    if method.explainer == "kernelshap":
        return kernel_shap_weights(masked, masked.n_features, label, num_samples=num_samples, seed=seed,
                                   batch_size=batch_size)
    if method.explainer == "occlusion":
        return occlusion_weights(masked, masked.n_features, label)
    return random_weights(masked.n_features, seed)


def planted_hits(weights: Any, names: Sequence[str], modalities: Sequence[str], cues: Sequence[dict],
                 k: int = 3) -> list[bool]:
    """Per planted cue (``{'modality': 'audio', 'component': ...}`` or ``{'modality': 'lyrics', 'word': ...}``):
    is it among the top ``k`` features by weight (words case-insensitively)?"""
    top = ranking(weights)[:k]
    audio = {names[i] for i in top if modalities[i] == "audio"}
    words = {names[i].lower() for i in top if modalities[i] == "lyrics"}
    return [cue["component"] in audio if cue["modality"] == "audio" else cue["word"].lower() in words for cue in cues]


def compare_song(predictor: Any, factorization: Any, text: Any, methods: Sequence[Method], *, mode: str = "both",
                 num_samples: int = 1000, seeds: Sequence[int] = (0, 1, 2), batch_size: int = 250,
                 sample_rate: int | None = None, cues: Sequence[dict] | None = None, song_id: str = "song",
                 stability_k: int = 10, true_label: int | None = None) -> list[dict]:
    """Every method on one song; one JSON-ready record per method.

    Record keys: ``song``, ``method``, ``label`` (explained class: the model's prediction),
    ``n_features``, ``num_samples``, ``seeds`` (how many), ``model_calls`` (rows per explanation, mean over seeds), ``encoder_passes``
    (when the predictor counts them), ``seconds`` (per explanation, mean over seeds),
    ``deletion_aopc`` / ``insertion_aopc`` (first seed; the random method: mean over its seeds,
    the random-order baseline), ``deletion_curve`` / ``insertion_curve``, ``stability`` (mean
    pairwise top-``stability_k`` overlap across seeds; NaN with one seed), ``hits`` (planted cues
    in the top 3; absent without ``cues``) and ``true_label`` (when given: the song's class, so
    the table can count hits on correctly predicted songs).
    """
    if len(seeds) < 1:
        raise ValueError("seeds must hold at least one seed")
    for method in methods:
        check_supported(method, predictor, mode)
    counting = CountingPredictor(predictor)
    masked = MaskedModel(counting, factorization, text, mode=mode, batch_size=batch_size)
    label = int(np.argmax(masked(np.ones((1, masked.n_features)))[0]))
    records = []
    for method in methods:
        weights, rows, seconds, passes = [], [], [], []
        for seed in seeds:
            counting.rows, before = 0, _encoder_passes(predictor)
            tick = time.perf_counter()
            weights.append(method_weights(method, counting, masked, factorization, text, label=label, mode=mode,
                                          num_samples=num_samples, seed=int(seed), batch_size=batch_size,
                                          sample_rate=sample_rate))
            seconds.append(time.perf_counter() - tick)
            rows.append(counting.rows)
            after = _encoder_passes(predictor)
            if after is not None:
                passes.append(after - before)
        scored = weights if method.explainer == "random" else weights[:1]
        faithful = [faithfulness(masked, w, label, random_count=0) for w in scored]
        record = {"song": song_id, "method": method.key, "label": label, "n_features": masked.n_features,
                  "num_samples": num_samples, "seeds": len(seeds),
                  "model_calls": float(np.mean(rows)), "encoder_passes": float(np.mean(passes)) if passes else None,
                  "seconds": float(np.mean(seconds)),
                  "deletion_aopc": float(np.mean([f.deletion_aopc for f in faithful])),
                  "insertion_aopc": float(np.mean([f.insertion_aopc for f in faithful])),
                  "deletion_curve": np.mean([f.deletion for f in faithful], axis=0).tolist(),
                  "insertion_curve": np.mean([f.insertion for f in faithful], axis=0).tolist(),
                  "stability": seed_stability(weights, stability_k) if len(weights) > 1 else float("nan")}
        if cues is not None:
            record["hits"] = planted_hits(weights[0], masked.names, masked.modalities, cues)
        if true_label is not None:
            record["true_label"] = int(true_label)
        records.append(record)
    return records


# ---------------------------------------------------------------- the table
TABLE_COLUMNS = ["method", "songs", "planted_top3", "planted_top3_correct", "deletion_aopc", "deletion_aopc_se", "insertion_aopc",
                 "insertion_aopc_se", "deletion_aopc_top", "deletion_aopc_top_se", "insertion_aopc_top",
                 "insertion_aopc_top_se", "top10_stability", "model_calls", "encoder_passes", "seconds"]
TOP_STEPS = 10
"""The ``*_aopc_top`` columns: AOPC over the first ``TOP_STEPS`` steps of each curve (the top 10 features),
where the rankings differ most; the whole curve's AOPC is dominated by the long saturated tail."""


def comparison_table(records: Sequence[dict], methods: Sequence[Method] = METHODS) -> pd.DataFrame:
    """Per method (table row order of ``methods``): songs, planted cues in the top 3 (share of all
    cues; NaN without cues; ``_correct``: on the songs whose predicted class is their true class), mean and standard error over songs of each AOPC (whole curve, and over
    its first :data:`TOP_STEPS` steps), mean top-10
    stability, mean model calls and encoder passes per explanation, mean seconds per explanation."""
    labels = {m.key: m.label for m in methods}
    rows = []
    for key in [m.key for m in methods if any(r["method"] == m.key for r in records)]:
        mine = [r for r in records if r["method"] == key]
        hits = [h for r in mine for h in r.get("hits", [])]
        correct = [h for r in mine if r.get("true_label") == r["label"] for h in r.get("hits", [])]
        deletion, deletion_se = mean_se([r["deletion_aopc"] for r in mine])
        insertion, insertion_se = mean_se([r["insertion_aopc"] for r in mine])
        deletion_top, deletion_top_se = mean_se([float(aopc(r["deletion_curve"][:TOP_STEPS + 1], "deletion"))
                                                 for r in mine])
        insertion_top, insertion_top_se = mean_se([float(aopc(r["insertion_curve"][:TOP_STEPS + 1], "insertion"))
                                                   for r in mine])
        passes = [r["encoder_passes"] for r in mine if r.get("encoder_passes") is not None]
        rows.append({"method": labels[key], "songs": len(mine),
                     "planted_top3": float(np.mean(hits)) if hits else float("nan"),
                     "planted_top3_correct": float(np.mean(correct)) if correct else float("nan"),
                     "deletion_aopc": deletion, "deletion_aopc_se": deletion_se,
                     "insertion_aopc": insertion, "insertion_aopc_se": insertion_se,
                     "deletion_aopc_top": deletion_top, "deletion_aopc_top_se": deletion_top_se,
                     "insertion_aopc_top": insertion_top, "insertion_aopc_top_se": insertion_top_se,
                     "top10_stability": mean_se([r["stability"] for r in mine])[0],
                     "model_calls": float(np.mean([r["model_calls"] for r in mine])),
                     "encoder_passes": float(np.mean(passes)) if passes else float("nan"),
                     "seconds": float(np.mean([r["seconds"] for r in mine]))})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _metric(record: dict, metric: str) -> float:
    if metric.endswith("_top"):
        curve = metric.split("_")[0]
        return float(aopc(record[f"{curve}_curve"][:TOP_STEPS + 1], curve))
    return float(record[metric])


def paired_differences(records: Sequence[dict], reference: str = "kernelshap",
                       metrics: Sequence[str] = ("deletion_aopc", "insertion_aopc", "deletion_aopc_top",
                                                 "insertion_aopc_top"),
                       methods: Sequence[Method] = METHODS) -> pd.DataFrame:
    """Per method and metric: mean and standard error over songs of ``method - reference`` (same song),
    and on how many songs the method is ahead. Empty without the reference's records."""
    by_method: dict[str, dict[str, dict]] = {}
    for record in records:
        by_method.setdefault(record["method"], {})[record["song"]] = record
    rows = []
    if reference not in by_method:
        return pd.DataFrame(rows, columns=["method", "metric", "difference", "difference_se", "ahead", "songs"])
    labels = {m.key: m.label for m in methods}
    for key in [m.key for m in methods if m.key in by_method and m.key != reference]:
        songs = sorted(set(by_method[key]) & set(by_method[reference]))
        for metric in metrics:
            differences = [_metric(by_method[key][s], metric) - _metric(by_method[reference][s], metric) for s in songs]
            mean, se = mean_se(differences)
            rows.append({"method": labels[key], "metric": metric, "difference": mean, "difference_se": se,
                         "ahead": int(np.sum(np.asarray(differences) > 0)), "songs": len(songs)})
    return pd.DataFrame(rows)


def table_markdown(table: pd.DataFrame, seeds: int = 3) -> str:
    """The comparison table as markdown (AOPCs as mean ± SE; ``seeds``: for the stability column's heading)."""
    def number(value, fmt):
        return "–" if value is None or not np.isfinite(value) else format(value, fmt)

    def mean_pm(row, key):
        se = row[f"{key}_se"]
        return number(row[key], ".3f") + (f" ± {se:.3f}" if se is not None and np.isfinite(se) else "")

    lines = ["| method | planted cue in top 3 (correctly predicted songs) | deletion AOPC | insertion AOPC | "
             f"deletion AOPC, top {TOP_STEPS} | insertion AOPC, top {TOP_STEPS} | top-10 stability ({seeds} seeds) | "
             "model calls | encoder passes | wall time (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        planted = "–" if not np.isfinite(row["planted_top3"]) else f"{row['planted_top3']:.0%}"
        if np.isfinite(row["planted_top3_correct"]):
            planted += f" ({row['planted_top3_correct']:.0%})"
        cells = [row["method"], planted, *(mean_pm(row, key) for key in ("deletion_aopc", "insertion_aopc",
                                                                        "deletion_aopc_top", "insertion_aopc_top")),
                 number(row["top10_stability"], ".2f"), number(row["model_calls"], ".0f"),
                 number(row["encoder_passes"], ".0f"), number(row["seconds"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(records: Sequence[dict], methods: Sequence[Method] = METHODS, title: str | None = None,
                    save_path: Any = None, grid: int = 21):
    """Mean deletion and insertion curves per method (x: share of features removed / added, each song's
    curve interpolated on ``grid`` points), AOPC in the legend. Returns the Figure."""
    import matplotlib.pyplot as plt

    from utils.plotting import save_figure

    x = np.linspace(0.0, 1.0, grid)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, curve in zip(axes, ("deletion", "insertion")):
        for i, method in enumerate(m for m in methods if any(r["method"] == m.key for r in records)):
            mine = [r for r in records if r["method"] == method.key]
            curves = [np.interp(x, np.linspace(0, 1, len(r[f"{curve}_curve"])), r[f"{curve}_curve"]) for r in mine]
            mean = float(np.mean([r[f"{curve}_aopc"] for r in mine]))
            ax.plot(x, np.mean(curves, axis=0), label=f"{method.label} (AOPC {mean:.3f})",
                    linestyle="--" if method.explainer == "random" else "-", color=plt.get_cmap("tab10")(i % 10))
        ax.set_xlabel(f"share of features {'removed' if curve == 'deletion' else 'added'}, in ranked order")
        ax.set_title(f"{curve} curve")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("probability of the explained class")
    songs = len({r["song"] for r in records})
    fig.suptitle(title or f"Faithfulness on {songs} songs (mean curves)")
    fig.tight_layout()
    return save_figure(fig, save_path)
