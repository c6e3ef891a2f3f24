"""The result of one MusicLIME explanation, and the ways to read it.

An :class:`Explanation` holds, for each explained label, the surrogate's weight of every
interpretable feature (audio components first, then lyric words or lines), its intercept,
weighted R^2 (``score``) and local prediction, plus the model's probabilities for the
unperturbed song. It renders as

* a ranked table (``ranked``, ``to_frame``), JSON (``to_json`` / ``from_json``) and the
  per-song record used by global aggregation (``to_record``);
* audio: the top-k positive audio components and their complement as waveforms
  (``listen``) or notebook players (``audio_players``);
* lyrics as HTML with words shaded by weight (``lyrics_html``);
* figures: a stems x segments heatmap (``plot_audio_heatmap``) and a top-k bar chart
  mixing both modalities (``plot_top_features``), drawn by :mod:`utils.plotting`.
"""
from __future__ import annotations

import dataclasses
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.config import MODES, STEMS
from utils.io import atomic_write
from utils.musiclime.surrogate_fit import UNCERTAINTY_FIELDS, SurrogateFit, fit_from_dict, fit_to_dict
from utils.plotting import plot_signed_bars, plot_weight_grid

FORMAT = "musiclime-explanation/1"


@dataclass(frozen=True)
class Feature:
    """One interpretable feature.

    ``modality`` is ``'audio'`` or ``'lyrics'``. Audio features carry ``stem`` (None for
    time-only segments), ``segment`` and the segment's span in seconds; lyric features carry
    ``text`` (the word or line).
    """

    index: int
    name: str
    modality: str
    stem: str | None = None
    segment: int | None = None
    text: str | None = None
    start_seconds: float | None = None
    end_seconds: float | None = None


class Explanation:
    """Weights of the interpretable features of one song, per explained label.

    Parameters
    ----------
    features : list of Feature
        In surrogate column order (audio first in ``'both'`` mode).
    fits : dict[int, SurrogateFit]
        One surrogate per explained label, in explanation order.
    probabilities : np.ndarray, shape (n_classes,)
        Model probabilities of the unperturbed input (neighbourhood row 0).
    mode : str
        ``'both'``, ``'audio'`` or ``'lyrical'``.
    lyrics : str, optional
        The lyrics explained (or kept intact).
    text_unit : str
        ``'words'`` or ``'lines'``.
    class_names : list of str, optional
    settings : dict, optional
        How the explanation was made (samples, seed, kernel width, ...).
    top_labels : list of int, optional
        Set when labels were chosen by ``top_labels``.
    factorization : utils.musiclime.factorization.Factorization, optional
        Needed for listening; not serialised (pass it again to ``from_json``).
    adaptive : dict, optional
        What ``num_samples='auto'`` did (:func:`utils.musiclime.adaptive.sample_until_stable`):
        ``{"rows", "target_met", "achieved", "top_k", "stability", "max_samples", "batch_rows"}``.
    """

    def __init__(self, features: list[Feature], fits: dict[int, SurrogateFit], probabilities: np.ndarray, *,
                 mode: str, lyrics: str | None = None, text_unit: str = "words",
                 class_names: list[str] | None = None, settings: dict | None = None,
                 top_labels: list[int] | None = None, factorization: Any = None, adaptive: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not fits:
            raise ValueError("an explanation needs at least one fitted label")
        for label, fit in fits.items():
            if np.shape(fit.weights) != (len(features),):
                raise ValueError(f"label {label}: {np.shape(fit.weights)} weights for {len(features)} features")
        self.features = list(features)
        self.fits = dict(fits)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.mode = mode
        self.lyrics = lyrics
        self.text_unit = text_unit
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.settings = dict(settings or {})
        self.top_labels = None if top_labels is None else [int(x) for x in top_labels]
        self.adaptive = None if adaptive is None else dict(adaptive)
        self.factorization = None
        if factorization is not None:
            self.attach_factorization(factorization)

    # ------------------------------------------------------------ basics
    @property
    def target_met(self) -> bool | None:
        """Whether ``num_samples='auto'`` reached its target (None for a fixed sample size)."""
        return None if self.adaptive is None else bool(self.adaptive["target_met"])

    @property
    def labels(self) -> list[int]:
        """Explained labels, in explanation order."""
        return list(self.fits)

    @property
    def audio_features(self) -> list[Feature]:
        return [f for f in self.features if f.modality == "audio"]

    @property
    def lyric_features(self) -> list[Feature]:
        return [f for f in self.features if f.modality == "lyrics"]

    def label_name(self, label: int) -> str:
        return self.class_names[label] if self.class_names is not None else str(label)

    def fit(self, label: int | None = None) -> SurrogateFit:
        """The surrogate of ``label`` (default: the first explained label)."""
        if label is None:
            return next(iter(self.fits.values()))
        if label not in self.fits:
            raise KeyError(f"label {label!r} was not explained; explained labels: {self.labels}")
        return self.fits[label]

    def attach_factorization(self, factorization: Any) -> None:
        """Attach the audio factorization (for listening); its names must match the audio features."""
        names = [f.name for f in self.audio_features]
        if list(getattr(factorization, "names", [])) != names:
            raise ValueError("factorization's component names do not match this explanation's audio features")
        self.factorization = factorization

    def ranked(self, label: int | None = None, k: int | None = None, positive_only: bool = False,
               modality: str | None = None, order: str = "weight") -> list[dict]:
        """Features of ``label`` as dicts, best first.

        Parameters
        ----------
        label : int, optional
            Default: the first explained label.
        k : int, optional
            Keep the first ``k``.
        positive_only : bool
            Keep only positive weights (as the paper's global runs).
        modality : {'audio', 'lyrics'}, optional
            Keep one modality.
        order : {'weight', 'abs'}
            Sort by weight, largest first (the authors' default), or by ``|weight|`` (lime's).
        """
        if order not in ("weight", "abs"):
            raise ValueError(f"order must be 'weight' or 'abs', got {order!r}")
        if modality not in (None, "audio", "lyrics"):
            raise ValueError(f"modality must be None, 'audio' or 'lyrics', got {modality!r}")
        fit = self.fit(label)
        rows = []
        for feature in self.features:
            if not fit.used[feature.index]:
                continue
            weight = float(fit.weights[feature.index])
            if (positive_only and weight <= 0) or (modality and feature.modality != modality):
                continue
            row = {**dataclasses.asdict(feature), "weight": weight}
            if fit.has_uncertainty:
                row.update({name: float(getattr(fit, name)[feature.index]) for name in UNCERTAINTY_FIELDS})
            rows.append(row)
        key = (lambda r: -r["weight"]) if order == "weight" else (lambda r: -abs(r["weight"]))
        rows.sort(key=key)            # stable: ties keep feature order
        return rows[:k] if k is not None else rows

    def to_frame(self, label: int | None = None):
        """A pandas DataFrame: one row per (label, feature), ranked by weight within each label."""
        import pandas as pd

        labels = self.labels if label is None else [label]
        rows = []
        for lab in labels:
            fit = self.fit(lab)
            for rank, row in enumerate(self.ranked(lab)):
                rows.append({"label": lab, "label_name": self.label_name(lab), "rank": rank, **row,
                             "intercept": fit.intercept, "score": fit.score,
                             "local_prediction": fit.local_prediction})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "mode": self.mode,
            "text_unit": self.text_unit,
            "lyrics": self.lyrics,
            "class_names": self.class_names,
            "probabilities": [float(p) for p in self.probabilities],
            "top_labels": self.top_labels,
            "settings": self.settings,
            "features": [dataclasses.asdict(f) for f in self.features],
            "fits": [fit_to_dict(fit) for fit in self.fits.values()],
            **({"adaptive": self.adaptive} if self.adaptive is not None else {}),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (floats round-trip exactly); also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            atomic_write(path, text)
        return text

    @classmethod
    def from_json(cls, source: str | Path, factorization: Any = None) -> "Explanation":
        """Read what :meth:`to_json` wrote: a JSON string or a path to a file."""
        if isinstance(source, Path) or not str(source).lstrip().startswith("{"):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"explanation file not found: {path}")
            source = path.read_text()
        data = json.loads(source)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a MusicLIME explanation (format {data.get('format')!r}, expected {FORMAT!r})")
        features = [Feature(**f) for f in data["features"]]
        fits = {int(f["label"]): fit_from_dict(f) for f in data["fits"]}
        return cls(features, fits, np.asarray(data["probabilities"]), mode=data.get("mode", data.get("modality")),
                   lyrics=data["lyrics"], text_unit=data["text_unit"], class_names=data["class_names"],
                   settings=data["settings"], top_labels=data["top_labels"], factorization=factorization,
                   adaptive=data.get("adaptive"))

    def to_record(self, track_id: str, label: int | None = None) -> dict:
        """The per-song record for global aggregation.

        Returns
        -------
        dict
            ``{"id", "label", "probabilities", "weights": {name: weight}, "modality":
            {name: 'audio'|'lyrics'}, "settings"}`` for the features the surrogate used
            (all of them by default). All weights are kept; the aggregation decides which
            (the paper keeps the positive ones). With uncertainty, also ``"se"``, ``"ci_low"``,
            ``"ci_high"``, ``"topk_probability"`` (``{name: value}`` each), ``"top_k"`` and
            ``"confidence"``; with ``num_samples='auto'``, ``"adaptive"``. Readers must not need
            them (older records lack them).
        """
        fit = self.fit(label)
        used = [f for f in self.features if fit.used[f.index]]
        names = [f.name for f in used]
        if len(set(names)) != len(names):
            clash = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"feature names {clash} occur twice (a lyric word equals an audio component name); "
                             "records key weights by name")
        record = {
            "id": str(track_id),
            "label": int(fit.label),
            "probabilities": [float(p) for p in self.probabilities],
            "weights": {f.name: float(fit.weights[f.index]) for f in used},
            "modality": {f.name: f.modality for f in used},
            "settings": {**self.settings, "mode": self.mode, "text_unit": self.text_unit,
                         "class_names": self.class_names, "label_name": self.label_name(fit.label)},
        }
        if fit.has_uncertainty:
            for name in UNCERTAINTY_FIELDS:
                record[name] = {f.name: float(getattr(fit, name)[f.index]) for f in used}
            record["top_k"], record["confidence"] = fit.top_k, fit.confidence
        if self.adaptive is not None:
            record["adaptive"] = dict(self.adaptive)
        return record

    # ------------------------------------------------------------ audio
    def audio_masks(self, label: int | None = None, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """``(top, complement)`` 0/1 vectors over the audio components.

        ``top`` switches on the ``k`` audio components with the largest positive weights;
        ``complement`` switches on all the others.
        """
        audio = self.audio_features
        if not audio:
            raise ValueError(f"this explanation (mode {self.mode!r}) has no audio features")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        top = np.zeros(len(audio), dtype=np.float32)
        for row in self.ranked(label, k=k, positive_only=True, modality="audio"):
            top[row["index"]] = 1.0          # audio features come first: feature index == component index
        return top, 1.0 - top

    def listen(self, label: int | None = None, k: int = 3) -> dict[str, np.ndarray]:
        """Waveforms ``{"top": (samples,), "complement": (samples,)}`` at the factorization's rate."""
        top, complement = self.audio_masks(label, k)
        if self.factorization is None:
            raise ValueError("no factorization attached; pass factorization= to from_json or call attach_factorization")
        composed = self.factorization.compose(np.stack([top, complement]))
        return {"top": composed[0], "complement": composed[1]}

    def audio_players(self, label: int | None = None, k: int = 3) -> dict[str, Any]:
        """IPython ``Audio`` players for :meth:`listen`'s waveforms (for notebooks)."""
        from IPython.display import Audio

        rate = self.factorization.sample_rate if self.factorization is not None else None
        return {name: Audio(wave, rate=rate, normalize=True) for name, wave in self.listen(label, k).items()}

    # ------------------------------------------------------------ lyrics
    def lyrics_html(self, label: int | None = None) -> str:
        """The lyrics as HTML, each word (or line) shaded by its weight.

        Green for positive weights, red for negative; opacity proportional to
        ``|weight| / max |weight|`` over the lyric features; text is HTML-escaped and the
        weight is in each span's ``title``. Unweighted text (audio-only mode) is plain. With
        uncertainty, the title also gives the interval, and a word whose interval contains 0 is
        underlined with dots (class ``uncertain``): its sign is not established.
        """
        from utils.musiclime.lyric_features import text_features

        if self.lyrics is None:
            return "<div></div>"
        fit = self.fit(label)
        lyric = self.lyric_features
        weights = {j: float(fit.weights[f.index]) for j, f in enumerate(lyric) if fit.used[f.index]}
        index = {j: f.index for j, f in enumerate(lyric)}
        uncertain = fit.uncertain()
        scale = max((abs(w) for w in weights.values()), default=0.0)
        parts = []
        spans = text_features(self.lyrics, self.text_unit).spans() if lyric else [(self.lyrics, None)]
        for piece, feature in spans:
            text = html.escape(piece)
            weight = weights.get(feature) if feature is not None else None
            if weight is None or scale == 0:
                parts.append(text)
                continue
            alpha = abs(weight) / scale
            colour = (0, 160, 0) if weight > 0 else (220, 0, 0)
            title, marked = f"{weight:+.4g}", False
            if fit.has_uncertainty:
                column = index[feature]
                title += f" [{fit.ci_low[column]:+.3g}, {fit.ci_high[column]:+.3g}]"
                marked = bool(uncertain[column])
                title += " (interval contains 0)" if marked else ""
            style = f"background-color: rgba({colour[0]}, {colour[1]}, {colour[2]}, {alpha:.3f})"
            if marked:
                parts.append(f'<span class="uncertain" style="{style}; text-decoration: underline dotted" '
                             f'title="{title}">{text}</span>')
            else:
                parts.append(f'<span style="{style}" title="{title}">{text}</span>')
        return ('<div style="white-space: pre-wrap; font-family: monospace; line-height: 1.6">'
                + "".join(parts) + "</div>")

    # ------------------------------------------------------------ figures
    def audio_weight_grid(self, label: int | None = None) -> tuple[np.ndarray, list[str]]:
        """Audio weights as ``(rows, segments)``: rows are stems (or ``['mix']`` for time-only segments)."""
        audio = self.audio_features
        if not audio:
            raise ValueError(f"this explanation (mode {self.mode!r}) has no audio features")
        grid, stems, _ = self._audio_grids(label)
        return grid, stems

    def _audio_grids(self, label: int | None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Audio weights and "interval contains 0" flags, both ``(rows, segments)``, and the row names."""
        audio = self.audio_features
        if not audio:
            raise ValueError(f"this explanation (mode {self.mode!r}) has no audio features")
        fit = self.fit(label)
        flags = fit.uncertain()
        stems = [s for s in STEMS if any(f.stem == s for f in audio)] or ["mix"]
        segments = 1 + max(f.segment for f in audio)
        grid = np.zeros((len(stems), segments))
        uncertain = np.zeros((len(stems), segments), dtype=bool)
        for f in audio:
            cell = stems.index(f.stem if f.stem is not None else "mix"), f.segment
            grid[cell] = fit.weights[f.index]
            uncertain[cell] = flags[f.index]
        return grid, stems, uncertain

    def plot_audio_heatmap(self, label: int | None = None, save_path: str | Path | None = None):
        """Heatmap of audio weights, stems x segments (:func:`utils.plotting.plot_weight_grid`); returns the Figure."""
        grid, rows, uncertain = self._audio_grids(label)
        return plot_weight_grid(grid, rows, f"audio weights for '{self.label_name(self.fit(label).label)}'", save_path,
                                uncertain=uncertain if self.fit(label).has_uncertainty else None)

    def plot_top_features(self, label: int | None = None, k: int = 10, save_path: str | Path | None = None,
                          order: str = "abs"):
        """Top-``k`` features of both modalities as bars (:func:`utils.plotting.plot_signed_bars`); returns it."""
        rows = self.ranked(label, k=k, order=order)
        fit = self.fit(label)
        intervals = [(r["ci_low"], r["ci_high"]) for r in rows] if fit.has_uncertainty else None
        return plot_signed_bars([r["name"] for r in rows], [r["weight"] for r in rows], [r["modality"] for r in rows],
                                f"top {len(rows)} features for '{self.label_name(fit.label)}'", save_path,
                                intervals=intervals)

    def __repr__(self) -> str:
        return (f"Explanation(mode={self.mode!r}, features={len(self.features)}, labels={self.labels}, "
                f"settings={self.settings})")

