"""The paper's global-explanation figures, drawn from a :func:`utils.musiclime.aggregate.measures` table.

Every ``plot_*`` function returns the matplotlib ``Figure`` and, given ``path``, also saves it
(PNG, 100 dpi, tight bounding box). Bad requests raise ``ValueError`` instead of drawing an
empty figure: an unknown class name / index, a feature that cannot be placed on the
stems x segments grid, words without an embedding, or nothing to draw.

Look: the authors drew with seaborn; we redraw with plain matplotlib (no seaborn dependency)
using their colours sampled from the published PNGs: a dark-grey -> pale-teal colormap,
annotations printed with ``'.2g'`` (two significant digits, which is what the published heatmaps
show: ``0.073``, ``0.0087``), white text on dark cells and black on light ones.

:func:`regenerate_paper_figures` redraws the published figures from the authors' aggregates.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap, to_rgb
from matplotlib.figure import Figure

from utils.musiclime.aggregate import AUDIO_FEATURE, modality_shares, stem_shares
from utils.config import STEMS

HEATMAP_CMAP = LinearSegmentedColormap.from_list("musiclime", ["#373e40", "#b7d5d4"])
"""Dark grey (low) to pale teal (high), sampled from the authors' colour bars."""

PAPER_HEATMAP_STEMS: tuple[str, ...] = ("vocals", "bass", "drums", "other")
"""Row order of the authors' published heatmaps (differs from the Open-Unmix order ``STEMS``)."""

CLASS_MARKERS = ("o", "s", "^", "p", "*", "D", "X", "<", ">")
CLASS_COLORS = ("#373e40", "#488286", "#408d7b", "#5ab894", "#918c9f",
                "#aa5d78", "#d7abbb", "#b7d5d4", "#f9f871")
"""Marker and colour of class index ``i`` in the word maps (sampled from the authors' figure)."""

MODALITY_COLORS = {"audio": "#488286", "lyrics": "#d7abbb"}
STEM_COLORS = {"vocals": "#b7d5d4", "drums": "#488286", "bass": "#373e40", "other": "#d7abbb"}


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


# ---------------------------------------------------------------- drawing helpers
def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def _text_color(rgba) -> str:
    """Black on light cells, white on dark ones (seaborn's relative-luminance rule)."""
    rgb = np.asarray(to_rgb(rgba))
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return "black" if float(linear @ [0.2126, 0.7152, 0.0722]) > 0.408 else "white"


def _draw_heatmap(ax, matrix: np.ndarray, stems: Sequence[str], title: str, fmt: str, colorbar: bool,
                  norm=None):
    image = ax.imshow(matrix, cmap=HEATMAP_CMAP, norm=norm, aspect="equal")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, format(value, fmt), ha="center", va="center",
                color=_text_color(image.cmap(image.norm(value))), fontsize=10)
    ax.set_xticks(range(matrix.shape[1]), [str(k) for k in range(matrix.shape[1])])
    ax.set_yticks(range(len(stems)), list(stems), rotation=90, va="center")
    ax.tick_params(length=3)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return image


def _draw_bars(ax, labels: Sequence[str], values: np.ndarray, title: str, colorbar: bool = True, norm=None):
    if norm is None:
        norm = matplotlib.colors.Normalize(vmin=float(np.min(values)), vmax=float(np.max(values)))
    positions = np.arange(len(labels))
    ax.barh(positions, values, color=HEATMAP_CMAP(norm(values)))
    ax.set_yticks(positions, list(labels))
    ax.invert_yaxis()
    ax.set_xlabel("Weight")
    ax.set_title(title)
    if colorbar:
        mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=HEATMAP_CMAP)
        ax.figure.colorbar(mappable, ax=ax, fraction=0.06, pad=0.03)


# ---------------------------------------------------------------- the figures
def plot_audio_heatmap(table: pd.DataFrame, cls: str | int, value: str = "I_AVG", num_segments: int = 10,
                       stems: Sequence[str] = STEMS, fmt: str = ".2g", title: str | None = None,
                       path: str | os.PathLike | None = None) -> Figure:
    """Per-class heatmap of an audio measure: rows = stems, columns = segments 0..n-1.

    Like the authors' ``global_heatmap_<class>_AVG.png`` (title ``'Feature Weights Heatmap for
    <class>'``, annotated cells, colour bar). Pass ``stems=PAPER_HEATMAP_STEMS`` for their row
    order. Values: see :func:`heatmap_matrix`.
    """
    name = resolve_class(table, cls)
    matrix = heatmap_matrix(table, name, value, num_segments, stems)
    fig, ax = plt.subplots(figsize=(10, 7))
    _draw_heatmap(ax, matrix, stems, title or f"Feature Weights Heatmap for {name}", fmt, colorbar=True)
    return _finish(fig, path)


def plot_heatmap_and_word_bars(table: pd.DataFrame, cls: str | int, top_k: int = 20, value: str = "I_AVG",
                               num_segments: int = 10, stems: Sequence[str] = STEMS, fmt: str = ".2g",
                               display_name: str | None = None,
                               path: str | os.PathLike | None = None) -> Figure:
    """Multimodal figure: audio heatmap (left) beside the top-``top_k`` lyric words (right).

    Like the authors' ``multimodal_heatmap&barplot_<class>_AVG.png``. ``display_name`` replaces
    the class name in the titles (the AudioSet figure says ``'hip_hop'``).
    """
    name = resolve_class(table, cls)
    matrix = heatmap_matrix(table, name, value, num_segments, stems)
    words = top_features(table, name, top_k, value, modality="lyrics")
    shown = display_name or name
    # one colour scale for both panels (the authors' single colour bar)
    norm = matplotlib.colors.Normalize(vmin=min(float(matrix.min()), float(words[value].min())),
                                       vmax=max(float(matrix.max()), float(words[value].max())))
    fig, (left, right) = plt.subplots(1, 2, figsize=(20, 10), gridspec_kw={"width_ratios": [1.6, 1]})
    _draw_heatmap(left, matrix, stems, f"Audio Feature Weights for {shown}", fmt, colorbar=False, norm=norm)
    _draw_bars(right, words["feature"].tolist(), words[value].to_numpy(),
               f"Top {len(words)} Word Feature Weights for {shown}", norm=norm)
    fig.tight_layout()
    return _finish(fig, path)


def plot_top_features(table: pd.DataFrame, cls: str | int, top_k: int = 30, value: str = "I_AVG",
                      modality: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Bar chart of one class's top features of any modality (words and audio components mixed),
    like the authors' ``barplot_<class>_AVG.png``."""
    name = resolve_class(table, cls)
    rows = top_features(table, name, top_k, value, modality)
    fig, ax = plt.subplots(figsize=(12, 10))
    _draw_bars(ax, rows["feature"].tolist(), rows[value].to_numpy(), f"Feature Weights for {name}")
    fig.tight_layout()
    return _finish(fig, path)


def plot_modality_shares(table: pd.DataFrame, value: str = "W", title: str | None = None,
                         path: str | os.PathLike | None = None) -> Figure:
    """Stacked bars: per class, the share of total ``value`` carried by audio vs lyric features
    (:func:`utils.musiclime.aggregate.modality_shares`)."""
    shares = modality_shares(table, value)
    return _stacked_shares(shares, MODALITY_COLORS, title or f"Share of importance ({value}) per modality", path)


def plot_stem_shares(table: pd.DataFrame, value: str = "W", title: str | None = None,
                     path: str | os.PathLike | None = None) -> Figure:
    """Stacked bars: per class, each stem's share of the audio ``value``
    (:func:`utils.musiclime.aggregate.stem_shares`)."""
    shares = stem_shares(table, value)
    return _stacked_shares(shares, STEM_COLORS, title or f"Share of audio importance ({value}) per stem", path)


def _stacked_shares(shares: pd.DataFrame, colors: Mapping[str, str], title: str,
                    path: str | os.PathLike | None) -> Figure:
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(shares) + 2), 5))
    bottom = np.zeros(len(shares))
    positions = np.arange(len(shares))
    for column in shares.columns:
        part = shares[column].to_numpy()
        ax.bar(positions, part, bottom=bottom, color=colors.get(column), label=column, edgecolor="white")
        for x, (b, p) in enumerate(zip(bottom, part)):
            if p >= 0.06:
                ax.text(x, b + p / 2, f"{p:.0%}", ha="center", va="center", fontsize=8,
                        color=_text_color(colors.get(column, "#888888")))
        bottom += part
    ax.set_xticks(positions, list(shares.index), rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _finish(fig, path)


# ---------------------------------------------------------------- word maps
def hashing_embeddings(words: Sequence[str], n_features: int = 512,
                       ngram_range: tuple[int, int] = (2, 4)) -> dict[str, np.ndarray]:
    """Deterministic fallback word vectors: hashed character n-grams (sklearn ``HashingVectorizer``).

    Spelling-based, not semantic: words sharing n-grams land close together. Use real word
    embeddings (e.g. the lyrics model's input embeddings) when available.

    Returns
    -------
    dict[str, numpy.ndarray]
        word -> L2-normalised vector of shape (n_features,).
    """
    from sklearn.feature_extraction.text import HashingVectorizer

    words = list(dict.fromkeys(words))
    if not words:
        raise ValueError("no words to embed")
    vectorizer = HashingVectorizer(analyzer="char_wb", ngram_range=ngram_range, n_features=n_features,
                                   alternate_sign=False, norm="l2", lowercase=True)
    matrix = vectorizer.transform(words).toarray()
    return {word: matrix[i] for i, word in enumerate(words)}


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project (n_words, dim) vectors to (n_words, 2) with sklearn PCA or t-SNE (seeded)."""
    vectors = np.asarray(vectors, dtype=float)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"need at least 2 vectors of shape (n, dim) to project, got {vectors.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA

        if vectors.shape[1] < 2:
            raise ValueError("PCA to 2-D needs vectors of dimension >= 2")
        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(1, len(vectors) - 1)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def select_class_words(table: pd.DataFrame, classes: Sequence[str | int] | None = None, top_k: int = 5,
                       value: str = "I_H") -> pd.DataFrame:
    """Top-``top_k`` lyric words of each class; a word picked by several classes goes to the class
    where its ``value`` is highest. Returns columns ``word``, ``class``, ``value``."""
    if table is None or len(table) == 0:
        raise ValueError("empty aggregate table: nothing to draw")
    names = list(table["class"].cat.categories)
    classes = names if classes is None else [resolve_class(table, c) for c in classes]
    picked = []
    for name in classes:
        if not ((table["class"] == name) & (table["modality"] == "lyrics")).any():
            continue
        rows = top_features(table, name, top_k, value, modality="lyrics")
        picked += [(w, name, v) for w, v in zip(rows["feature"], rows[value])]
    if not picked:
        raise ValueError(f"classes {classes} have no lyric words")
    frame = pd.DataFrame(picked, columns=["word", "class", "value"])
    frame = frame.sort_values(["value", "word"], ascending=[False, True], kind="stable")
    return frame.drop_duplicates("word", keep="first").reset_index(drop=True)


def plot_word_map(table: pd.DataFrame, embeddings: Mapping[str, np.ndarray],
                  classes: Sequence[str | int] | None = None, top_k: int = 5, value: str = "I_H",
                  method: str = "pca", seed: int = 0, title: str | None = None,
                  path: str | os.PathLike | None = None) -> Figure:
    """Words placed by a 2-D projection of their embeddings, marker / colour = class.

    ``classes=None`` draws every class (the authors' ``global_calss_importance.png``, titled
    ``'2D Visualization of Word Embeddings by Class Importance'``); two classes give the
    class-vs-class map (``hiphop_vs_heavy.png``, no title). Words: :func:`select_class_words`.

    Parameters
    ----------
    embeddings : dict
        word -> vector (all the same length). Every selected word must have one.
    method, seed
        :func:`project_2d`.
    """
    names = list(table["class"].cat.categories) if len(table) else []
    words = select_class_words(table, classes, top_k, value)
    missing = [w for w in words["word"] if w not in embeddings]
    if missing:
        raise ValueError(f"no embedding for words {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                         f"they cannot be placed on the map")
    points = project_2d(np.stack([np.asarray(embeddings[w], dtype=float) for w in words["word"]]), method, seed)
    fig, ax = plt.subplots(figsize=(10, 10) if classes is None else (12, 10))
    for name in dict.fromkeys(words["class"]):
        index = names.index(name)
        mask = (words["class"] == name).to_numpy()
        ax.scatter(points[mask, 0], points[mask, 1], marker=CLASS_MARKERS[index % len(CLASS_MARKERS)],
                   color=CLASS_COLORS[index % len(CLASS_COLORS)], s=110, label=name)
    for (x, y), word in zip(points, words["word"]):
        ax.annotate(word, (x, y), xytext=(2, 4), textcoords="offset points", fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: names.index(labels[i]))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], frameon=classes is not None,
              loc="lower right" if classes is None else "upper right", ncol=2 if classes is None else 1)
    if title is None and classes is None:
        title = "2D Visualization of Word Embeddings by Class Importance"
    if title:
        ax.set_title(title)
    return _finish(fig, path)


# ---------------------------------------------------------------- the paper's figures
def _file_label(name: str) -> str:
    return re.sub(r"\W+", "_", name).strip("_")


def regenerate_paper_figures(source: str | os.PathLike | None, out_dir: str | os.PathLike,
                             genre_classes: Sequence[str] | None = None,
                             emotion_classes: Sequence[str] | None = None,
                             embeddings: Mapping[str, np.ndarray] | None = None,
                             cache_dir: str | os.PathLike | None = None, seed: int = 0,
                             progress: bool = True) -> list[Path]:
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
        word -> vector for the word maps; default :func:`hashing_embeddings` of the words drawn
        (the published pickles carry no embeddings).
    cache_dir : path, optional
        Download cache when ``source`` is a URL.
    seed : int
        Seed of the word-map projection.
    progress : bool
        Show a tqdm bar over the figures.

    Returns
    -------
    list of Path
        The files written, in the order drawn.
    """
    from tqdm.auto import tqdm

    from utils.results.published import load_published_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def table_of(key: str, merge_case: bool = False) -> pd.DataFrame:
        return load_published_table(key, source, cache_dir, merge_words=str.lower if merge_case else None)

    genre_audio = table_of("genre_audio")
    emotion_audio = table_of("emotion_audio")
    genre_classes = list(genre_audio["class"].cat.categories) if genre_classes is None else list(genre_classes)
    emotion_classes = list(emotion_audio["class"].cat.categories) if emotion_classes is None else list(emotion_classes)
    bar = tqdm(total=len(genre_classes) + len(emotion_classes) + 14, desc="paper figures", unit="figure",
               disable=not progress)

    def save(fig: Figure, name: str) -> None:
        path = out_dir / name
        _finish(fig, path)
        plt.close(fig)
        written.append(path)
        bar.update(1)

    for name in genre_classes:
        save(plot_audio_heatmap(genre_audio, name, stems=PAPER_HEATMAP_STEMS),
             f"genre__audio__global_heatmap_{_file_label(name)}_AVG.png")
    for name in emotion_classes:
        save(plot_audio_heatmap(emotion_audio, name, stems=PAPER_HEATMAP_STEMS),
             f"emotion__audio__global_heatmap_{_file_label(name)}_AVG.png")

    genre_multimodal = table_of("genre_multimodal")
    genre_multimodal_merged = table_of("genre_multimodal", merge_case=True)
    save(plot_heatmap_and_word_bars(genre_multimodal_merged, "hip hop", stems=PAPER_HEATMAP_STEMS),
         "genre__multimodal__heatmapandbarplot_hip_hop_AVG.png")
    save(plot_top_features(genre_multimodal, "pop", top_k=30), "genre__multimodal__barplot_pop_AVG.png")
    audioset_multimodal = table_of("audioset_multimodal")
    save(plot_heatmap_and_word_bars(audioset_multimodal, "hip hop", stems=PAPER_HEATMAP_STEMS,
                                    display_name="hip_hop"),
         "audioset__multimodal_heatmapandbarplot_hip_hop_AVG.png")

    for key, table in [("genre_multimodal", genre_multimodal), ("emotion_multimodal", table_of("emotion_multimodal")),
                       ("audioset_multimodal", audioset_multimodal)]:
        save(plot_modality_shares(table, title=f"{key}: share of |weight| per modality"),
             f"{key}__modality_share.png")
        save(plot_stem_shares(table, title=f"{key}: share of audio |weight| per stem"), f"{key}__stem_share.png")
    for key, table in [("genre_audio", genre_audio), ("emotion_audio", emotion_audio)]:
        save(plot_stem_shares(table, title=f"{key}: share of audio |weight| per stem"), f"{key}__stem_share.png")

    genre_lyrics = table_of("genre_lyrics")
    emotion_lyrics = table_of("emotion_lyrics")
    maps = [(genre_lyrics, ["hip hop", "heavy music"], 40, "genre__hiphop_vs_heavy.png"),
            (genre_lyrics, None, 5, "genre__global_class_importance.png"),
            (emotion_lyrics, None, 5, "emotion__lyrics__global.png")]
    for table, classes, top_k, file_name in maps:
        vectors = embeddings
        if vectors is None:
            vectors = hashing_embeddings(select_class_words(table, classes, top_k)["word"].tolist())
        save(plot_word_map(table, vectors, classes, top_k=top_k, seed=seed), file_name)
    bar.close()
    return written
