"""The paper's global-explanation figures, drawn from a :func:`utils.musiclime.aggregate.measures` table.

Every ``plot_*`` function returns the matplotlib ``Figure`` and, given ``save_path``, also saves
it with :func:`utils.plotting.save_figure` (PNG, 150 dpi, tight bounding box, atomic). Bad
requests raise ``ValueError`` instead of drawing an empty figure: an unknown class name / index,
a feature that cannot be placed on the stems x segments grid, or nothing to draw.

Look: the authors drew with seaborn; we redraw with plain matplotlib (no seaborn dependency) in
the project's colour scheme (:mod:`utils.plotting`): their dark-grey -> pale-teal colormap
(:func:`~utils.plotting.magnitude_cmap`) for heatmaps and bars, annotations printed with
``'.2g'`` (two significant digits, which is what the published heatmaps show: ``0.073``,
``0.0087``), white text on dark cells and black on light ones (:func:`~utils.plotting.text_colour`).

The word maps live in :mod:`utils.results.word_maps`; :func:`regenerate_paper_figures` redraws
every published figure from the authors' aggregates.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import matplotlib
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from utils.config import STEMS
from utils.musiclime.aggregate import AUDIO_FEATURE, modality_shares, stem_shares
from utils.musiclime.word_forms import merge_table_words
from utils.musiclime.bootstrap import MIN_SONGS, REL_WIDTH, too_few_songs, uncertain
from utils.plotting import MODALITY_COLOURS, magnitude_cmap, save_figure, text_colour

PAPER_HEATMAP_STEMS: tuple[str, ...] = ("vocals", "bass", "drums", "other")
"""Row order of the authors' published heatmaps (differs from the Open-Unmix order ``STEMS``)."""

STEM_COLOURS = {"vocals": "#b7d5d4", "drums": "#488286", "bass": "#373e40", "other": "#d7abbb"}
"""Stem colours of the stem-share bars (sampled from the authors' palette)."""


# ---------------------------------------------------------------- selecting
def resolve_class(table: pd.DataFrame, cls: str | int) -> str:
    """Class name for a name or an index into the table's class categories."""
    if table is None or len(table) == 0:
        raise ValueError("empty aggregate table: nothing to draw")
    names = list(table["class"].cat.categories) if hasattr(table["class"], "cat") \
        else sorted(table["class"].unique())
    if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
        if not 0 <= cls < len(names):
            raise ValueError(f"class index {cls} out of range: {len(names)} classes {names}")
        return names[int(cls)]
    if cls not in names:
        raise ValueError(f"unknown class {cls!r}; classes are {names}")
    return str(cls)


def _class_rows(table: pd.DataFrame, cls: str | int, value: str) -> tuple[str, pd.DataFrame]:
    name = resolve_class(table, cls)
    if value not in ("W", "C", "I_LIME", "I_AVG", "I_H"):
        raise ValueError(f"unknown value {value!r}; choose W, C, I_LIME, I_AVG or I_H")
    rows = table[table["class"] == name]
    if rows.empty:
        raise ValueError(f"class {name!r} has no aggregated features")
    return name, rows


def audio_matrix(values: Mapping[str, float], num_segments: int = 10,
                 stems: Sequence[str] = STEMS, fill_value: float = 0.0) -> np.ndarray:
    """Place audio component values on the stems x segments grid.

    Parameters
    ----------
    values : dict
        Audio feature name (``'vocals3'``) -> value.
    num_segments : int
        Number of temporal segments (columns).
    stems : sequence of str
        Row order.
    fill_value : float
        For components absent from ``values`` (never kept with a positive weight; the authors
        show 0 there).

    Returns
    -------
    numpy.ndarray, shape (len(stems), num_segments)

    Raises
    ------
    ValueError
        A name that is not an audio component, a stem not in ``stems`` or a segment
        ``>= num_segments``.
    """
    matrix = np.full((len(stems), num_segments), float(fill_value))
    for name, value in values.items():
        match = AUDIO_FEATURE.match(str(name))
        if not match:
            raise ValueError(f"feature {name!r} is not an audio component (stem + segment) and "
                             f"cannot be placed on the heatmap")
        stem, segment = match.group(1), int(match.group(2))
        if stem not in stems:
            raise ValueError(f"feature {name!r}: stem {stem!r} is not a heatmap row {list(stems)}")
        if segment >= num_segments:
            raise ValueError(f"feature {name!r}: segment {segment} is beyond the {num_segments}-segment grid")
        matrix[list(stems).index(stem), segment] = float(value)
    return matrix


def heatmap_matrix(table: pd.DataFrame, cls: str | int, value: str = "I_AVG", num_segments: int = 10,
                   stems: Sequence[str] = STEMS) -> np.ndarray:
    """The (len(stems), num_segments) matrix of ``value`` for one class's audio components."""
    name, rows = _class_rows(table, cls, value)
    audio = rows[rows["modality"] == "audio"]
    if audio.empty:
        raise ValueError(f"class {name!r} has no audio features to draw a heatmap of")
    return audio_matrix(dict(zip(audio["feature"], audio[value])), num_segments, stems)


def top_features(table: pd.DataFrame, cls: str | int, top_k: int = 20, value: str = "I_AVG",
                 modality: str | None = None) -> pd.DataFrame:
    """The ``top_k`` rows of one class by ``value`` (descending), optionally one modality only."""
    name, rows = _class_rows(table, cls, value)
    if modality is not None:
        if modality not in ("audio", "lyrics"):
            raise ValueError(f"modality must be 'audio', 'lyrics' or None, got {modality!r}")
        rows = rows[rows["modality"] == modality]
    if rows.empty:
        raise ValueError(f"class {name!r} has no {modality or ''} features".replace("  ", " "))
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    return rows.sort_values([value, "feature"], ascending=[False, True], kind="stable").head(top_k)


def uncertain_matrix(table: pd.DataFrame, cls: str | int, value: str = "I_AVG", num_segments: int = 10,
                     stems: Sequence[str] = STEMS) -> np.ndarray:
    """Boolean (len(stems), num_segments): audio cells whose bootstrap interval is uncertain
    (:func:`utils.musiclime.bootstrap.uncertain`); all False for a table without intervals."""
    name, rows = _class_rows(table, cls, value)
    audio = rows[rows["modality"] == "audio"]
    flags = uncertain(audio, value)
    return audio_matrix(dict(zip(audio["feature"], flags.astype(float))), num_segments, stems) > 0


def uncertainty_note(table: pd.DataFrame, cls: str, value: str) -> str:
    """What a figure's title adds about the bootstrap: hatched cells, and a class with too few songs."""
    if f"{value}_lo" not in table.columns:
        return ""
    note = f"hatched: 95 % bootstrap interval reaches 0 or is wider than {REL_WIDTH:g}x the value"
    songs = too_few_songs(table, cls)
    if songs is not None:
        note += f"\nonly {songs} songs (< {MIN_SONGS}): too few for the bootstrap, intervals unreliable"
    return "\n" + note


def _hatch_cells(ax, flags: np.ndarray) -> None:
    for row, col in zip(*np.nonzero(flags)):
        ax.add_patch(matplotlib.patches.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, hatch="///",
                                                  edgecolor="#d62728", linewidth=0))


# ---------------------------------------------------------------- drawing helpers
def _draw_heatmap(ax, matrix: np.ndarray, stems: Sequence[str], title: str, fmt: str, colorbar: bool,
                  norm=None):
    image = ax.imshow(matrix, cmap=magnitude_cmap(), norm=norm, aspect="equal")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, format(value, fmt), ha="center", va="center",
                color=text_colour(image.cmap(image.norm(value))), fontsize=10)
    ax.set_xticks(range(matrix.shape[1]), [str(k) for k in range(matrix.shape[1])])
    ax.set_yticks(range(len(stems)), list(stems), rotation=90, va="center")
    ax.tick_params(length=3)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return image


def _draw_bars(ax, labels: Sequence[str], values: np.ndarray, title: str, colorbar: bool = True, norm=None,
               hatched=None):
    if norm is None:
        norm = matplotlib.colors.Normalize(vmin=float(np.min(values)), vmax=float(np.max(values)))
    cmap = magnitude_cmap()
    positions = np.arange(len(labels))
    bars = ax.barh(positions, values, color=cmap(norm(values)))
    if hatched is not None:
        for bar, flag in zip(bars, np.asarray(hatched, dtype=bool)):
            if flag:
                bar.set_hatch("///")
                bar.set_edgecolor("#d62728")
    ax.set_yticks(positions, list(labels))
    ax.invert_yaxis()
    ax.set_xlabel("Weight")
    ax.set_title(title)
    if colorbar:
        mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        ax.figure.colorbar(mappable, ax=ax, fraction=0.06, pad=0.03)


def _stacked_shares(shares: pd.DataFrame, colours: Mapping[str, str], title: str,
                    save_path: str | os.PathLike | None) -> Figure:
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(shares) + 2), 5))
    bottom = np.zeros(len(shares))
    positions = np.arange(len(shares))
    for column in shares.columns:
        part = shares[column].to_numpy()
        ax.bar(positions, part, bottom=bottom, color=colours.get(column), label=column, edgecolor="white")
        for x, (b, p) in enumerate(zip(bottom, part)):
            if p >= 0.06:
                ax.text(x, b + p / 2, f"{p:.0%}", ha="center", va="center", fontsize=8,
                        color=text_colour(colours.get(column, "#888888")))
        bottom += part
    ax.set_xticks(positions, list(shares.index), rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, save_path)


# ---------------------------------------------------------------- the figures
def plot_audio_heatmap(table: pd.DataFrame, cls: str | int, value: str = "I_AVG", num_segments: int = 10,
                       stems: Sequence[str] = STEMS, fmt: str = ".2g", title: str | None = None,
                       save_path: str | os.PathLike | None = None) -> Figure:
    """Per-class heatmap of an audio measure: rows = stems, columns = segments 0..n-1.

    Like the authors' ``global_heatmap_<class>_AVG.png`` (title ``'Feature Weights Heatmap for
    <class>'``, annotated cells, colour bar). Pass ``stems=PAPER_HEATMAP_STEMS`` for their row
    order. Values: see :func:`heatmap_matrix`.
    """
    name = resolve_class(table, cls)
    matrix = heatmap_matrix(table, name, value, num_segments, stems)
    fig, ax = plt.subplots(figsize=(10, 7))
    _draw_heatmap(ax, matrix, stems, (title or f"Feature Weights Heatmap for {name}")
                  + uncertainty_note(table, name, value), fmt, colorbar=True)
    _hatch_cells(ax, uncertain_matrix(table, name, value, num_segments, stems))
    return save_figure(fig, save_path)


def plot_heatmap_and_word_bars(table: pd.DataFrame, cls: str | int, top_k: int = 20, value: str = "I_AVG",
                               num_segments: int = 10, stems: Sequence[str] = STEMS, fmt: str = ".2g",
                               display_name: str | None = None, merge_words: str | None = "lemma",
                               save_path: str | os.PathLike | None = None) -> Figure:
    """Multimodal figure: audio heatmap (left) beside the top-``top_k`` lyric words (right).

    Like the authors' ``multimodal_heatmap&barplot_<class>_AVG.png``. ``display_name`` replaces
    the class name in the titles (the AudioSet figure says ``'hip_hop'``). ``merge_words``: how
    word forms are merged before the bars (:func:`utils.musiclime.word_forms.merge_table_words`):
    ``'lemma'`` (default; the authors' M4A bars), ``'case'``, or ``'none'`` (their AudioSet bars).
    The heatmap (``I_AVG`` of audio components) is the same under every merge.
    """
    name = resolve_class(table, cls)
    table = merge_table_words(table, merge_words)
    matrix = heatmap_matrix(table, name, value, num_segments, stems)
    words = top_features(table, name, top_k, value, modality="lyrics")
    shown = display_name or name
    # one colour scale for both panels (the authors' single colour bar)
    norm = matplotlib.colors.Normalize(vmin=min(float(matrix.min()), float(words[value].min())),
                                       vmax=max(float(matrix.max()), float(words[value].max())))
    fig, (left, right) = plt.subplots(1, 2, figsize=(20, 10), gridspec_kw={"width_ratios": [1.6, 1]})
    _draw_heatmap(left, matrix, stems, f"Audio Feature Weights for {shown}" + uncertainty_note(table, name, value),
                  fmt, colorbar=False, norm=norm)
    _hatch_cells(left, uncertain_matrix(table, name, value, num_segments, stems))
    _draw_bars(right, words["feature"].tolist(), words[value].to_numpy(),
               f"Top {len(words)} Word Feature Weights for {shown}", norm=norm, hatched=uncertain(words, value))
    fig.tight_layout()
    return save_figure(fig, save_path)


def plot_top_features(table: pd.DataFrame, cls: str | int, top_k: int = 30, value: str = "I_AVG",
                      modality: str | None = None, merge_words: str | None = "lemma",
                      display_name: str | None = None, save_path: str | os.PathLike | None = None) -> Figure:
    """Bar chart of one class's top features of any modality (words and audio components mixed),
    like the authors' ``barplot_<class>_AVG.png``; words merged by ``merge_words`` first (see
    :func:`plot_heatmap_and_word_bars`); ``display_name`` replaces the class name in the title."""
    name = resolve_class(table, cls)
    table = merge_table_words(table, merge_words)
    rows = top_features(table, name, top_k, value, modality)
    fig, ax = plt.subplots(figsize=(12, 10))
    _draw_bars(ax, rows["feature"].tolist(), rows[value].to_numpy(),
               f"Feature Weights for {display_name or name}" + uncertainty_note(table, name, value),
               hatched=uncertain(rows, value))
    fig.tight_layout()
    return save_figure(fig, save_path)


def plot_modality_shares(table: pd.DataFrame, value: str = "W", title: str | None = None,
                         save_path: str | os.PathLike | None = None) -> Figure:
    """Stacked bars: per class, the share of total ``value`` carried by audio vs lyric features
    (:func:`utils.musiclime.aggregate.modality_shares`), in :data:`utils.plotting.MODALITY_COLOURS`."""
    shares = modality_shares(table, value)
    return _stacked_shares(shares, MODALITY_COLOURS, title or f"Share of importance ({value}) per modality",
                           save_path)


def plot_stem_shares(table: pd.DataFrame, value: str = "W", title: str | None = None,
                     save_path: str | os.PathLike | None = None) -> Figure:
    """Stacked bars: per class, each stem's share of the audio ``value``
    (:func:`utils.musiclime.aggregate.stem_shares`)."""
    shares = stem_shares(table, value)
    return _stacked_shares(shares, STEM_COLOURS, title or f"Share of audio importance ({value}) per stem",
                           save_path)


# ---------------------------------------------------------------- the paper's figures
PAPER_TABLES = ("genre_audio", "emotion_audio", "genre_multimodal", "audioset_multimodal",
                "emotion_multimodal", "genre_lyrics", "emotion_lyrics")
"""The published pairs (keys of :data:`utils.results.published.PUBLISHED_PAIRS`) the figures draw."""

Drawn = Iterator[tuple[str, Figure]]
"""File name and figure, drawn one at a time (saved and closed before the next is drawn)."""


def _file_label(name: str) -> str:
    return re.sub(r"\W+", "_", name).strip("_")


def _audio_heatmaps(tables: Mapping[str, pd.DataFrame], task: str, classes: Sequence[str]) -> Drawn:
    for name in classes:
        yield (f"{task}__audio__global_heatmap_{_file_label(name)}_AVG.png",
               plot_audio_heatmap(tables[f"{task}_audio"], name, stems=PAPER_HEATMAP_STEMS))


def _multimodal_figures(tables: Mapping[str, pd.DataFrame], which: str) -> Drawn:
    from utils.results.figure_pairs import multimodal_figures

    # words merged as each published set was (M4A genre: lower-case + lemma; emotion and AudioSet: unmerged),
    # once per table
    merged: dict[tuple[str, str], pd.DataFrame] = {}
    for figure in multimodal_figures(which):
        if (figure.key, figure.merge_words) not in merged:
            merged[figure.key, figure.merge_words] = merge_table_words(tables[figure.key], figure.merge_words)
        table = merged[figure.key, figure.merge_words]
        if figure.kind == "heatmap_bars":
            yield figure.ours, plot_heatmap_and_word_bars(table, figure.cls, stems=PAPER_HEATMAP_STEMS,
                                                          display_name=figure.display_name, merge_words="none")
        else:
            yield figure.ours, plot_top_features(table, figure.cls, top_k=30, display_name=figure.display_name,
                                                 merge_words="none")


def _share_figures(tables: Mapping[str, pd.DataFrame]) -> Drawn:
    for key in ("genre_multimodal", "emotion_multimodal", "audioset_multimodal"):
        yield (f"{key}__modality_share.png",
               plot_modality_shares(tables[key], title=f"{key}: share of |weight| per modality"))
        yield f"{key}__stem_share.png", plot_stem_shares(tables[key], title=f"{key}: share of audio |weight| per stem")
    for key in ("genre_audio", "emotion_audio"):
        yield f"{key}__stem_share.png", plot_stem_shares(tables[key], title=f"{key}: share of audio |weight| per stem")


def _word_maps(tables: Mapping[str, pd.DataFrame], embeddings: Mapping[str, np.ndarray] | None,
               seed: int) -> Drawn:
    from utils.results.word_maps import plot_word_map, select_class_words
    from utils.results.word_vectors import published_word_vectors

    # words as aggregated (no merge): the published maps show the top-5 words per class by I_H of the pickle,
    # unmerged ('diamond' and 'diamonds' both), inflections on one point
    maps = [("genre_lyrics", ["hip hop", "heavy music"], 40, "genre__hiphop_vs_heavy.png"),
            ("genre_lyrics", None, 5, "genre__global_class_importance.png"),
            ("emotion_lyrics", None, 5, "emotion__lyrics__global.png")]
    for key, classes, top_k, file_name in maps:
        vectors, label = embeddings, None
        if vectors is None:      # roberta-large's input embeddings when local, else the labelled fallback
            found = published_word_vectors(select_class_words(tables[key], classes, top_k)["word"])
            vectors, label = found.vectors, found.label
        yield file_name, plot_word_map(tables[key], vectors, classes, top_k=top_k, seed=seed, vectors_label=label,
                                       merge_words="none")


def regenerate_paper_figures(source: str | os.PathLike | None, out_dir: str | os.PathLike,
                             genre_classes: Sequence[str] | None = None,
                             emotion_classes: Sequence[str] | None = None,
                             embeddings: Mapping[str, np.ndarray] | None = None,
                             cache_dir: str | os.PathLike | None = None, seed: int = 0,
                             progress: bool = True, multimodal: str = "paper") -> list[Path]:
    """Redraw the paper's global figures from the authors' published aggregates.

    Parameters
    ----------
    source : str or path or None
        Local folder holding the published pickles, or their URL (None: the authors' repository;
        see :func:`utils.results.published.resolve_published_file`).
    out_dir : path
        Where the PNGs go (created).
    genre_classes, emotion_classes : sequence of str, optional
        Classes to draw the per-class audio heatmaps for (default: all nine of each task).
    embeddings : dict, optional
        lemma -> vector for the word maps; default
        :func:`utils.results.word_vectors.published_word_vectors` (``roberta-large``'s input
        embeddings when its weights are on this machine, else hashed character n-grams, and the
        map's title says which).
    cache_dir : path, optional
        Download cache when ``source`` is a URL.
    seed : int
        Seed of the word-map projection (t-SNE).
    progress : bool
        Show a tqdm bar over the figures.
    multimodal : str
        ``'paper'`` (the three multimodal figures of the paper) or ``'all'`` (heatmap + words and
        top-30 bars for every class of the M4A genre, M4A emotion and AudioSet multimodal pairs);
        see :func:`utils.results.figure_pairs.multimodal_figures`.

    Returns
    -------
    list of Path
        The files written, in the order drawn.
    """
    from tqdm.auto import tqdm

    from utils.results.published import load_published_table

    out_dir = Path(out_dir)
    tables = {key: load_published_table(key, source, cache_dir) for key in PAPER_TABLES}
    genre_classes = _class_names(tables["genre_audio"]) if genre_classes is None else list(genre_classes)
    emotion_classes = _class_names(tables["emotion_audio"]) if emotion_classes is None else list(emotion_classes)
    drawn = [_audio_heatmaps(tables, "genre", genre_classes), _audio_heatmaps(tables, "emotion", emotion_classes),
             _multimodal_figures(tables, multimodal), _share_figures(tables), _word_maps(tables, embeddings, seed)]
    written: list[Path] = []
    from utils.results.figure_pairs import multimodal_figures

    total = len(genre_classes) + len(emotion_classes) + len(multimodal_figures(multimodal)) + 11
    with tqdm(total=total, desc="paper figures", unit="figure",
              disable=not progress) as bar:
        for figures in drawn:
            for file_name, fig in figures:
                save_figure(fig, out_dir / file_name)
                plt.close(fig)
                written.append(out_dir / file_name)
                bar.update(1)
    return written


def _class_names(table: pd.DataFrame) -> list[str]:
    return list(table["class"].cat.categories)
