"""Which regenerated figure answers which published one, and how closely.

:func:`regenerate_paper_figures` (:mod:`utils.results.figures`) redraws the paper's global
figures from the authors' published W / C pickles. :func:`paper_figures` pairs each one we draw
with the published PNG in the authors' repository (``Results/plots/...``) and says whether it
matches to the printed digit (``'exact'``) or is an approximation, and why:

* **exact** -- the audio heatmaps (``I_AVG = W / C`` of the matching pair, printed to two
  significant digits), the multimodal word bars (M4A: after the lower-case + lemma merge of
  :mod:`utils.musiclime.word_forms`; AudioSet: unmerged, as published);
* **approximate** -- the word maps: the authors' notebook that drew them is not in their
  repository, so the word vectors (ours: ``roberta-large``'s input embeddings, or the labelled
  fallback), the word selection and the projection (t-SNE, its start and randomness) all differ.

The published PNGs are read like the pickles (:func:`resolve_published_figure`): from the
authors' repository URL (downloaded once into a cache), or from a local folder -- a clone of
their repository, or a flat folder whose file names are :func:`flat_name` of the repository paths.
:func:`plot_side_by_side` puts ours next to theirs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from utils.config import AUDIOSET_GENRES, EMOTIONS, GENRES

FIGURES_URL_PATTERN = "https://raw.githubusercontent.com/IamTheo2000/MusicLIME/main/{file}"
"""Where the authors keep their figures (``{file}`` = path in the repository, e.g.
``Results/plots/genre/hiphop_vs_heavy.png``)."""

EXACT = "exact"
APPROXIMATE = "approximate"

_HEATMAP = "W / C of the published pair, to the printed digit"
_WORD_MAP = ("different word vectors (roberta-large input embeddings when local, else hashed character n-grams) "
             "and t-SNE start / randomness; the authors' notebook that drew the maps is not in their repository. "
             "Their words are the top words per class by I_H of the lyrics pickle, unmerged, without the "
             "capitalised ones (likely missing from their word vectors); ours keep those")
_GENRE_MAP = ("; the published genre maps were drawn from the EMOTION lyrics pickle (emotion_feature_weights.pkl) "
              "with genre names on its class indices (hip hop = Happy, heavy music = Excited; 'hymns' (Calm) is "
              "shown as electronic, 'skate' (Neutral) as pop), ours from the genre lyrics pickle")


MULTIMODAL_MERGES: dict[str, str] = {"genre_multimodal": "lemma", "emotion_multimodal": "none",
                                     "audioset_multimodal": "none"}
"""How the published multimodal bars of each pair merged word forms (read off the published PNGs: the M4A
genre bars show lemmas, the emotion and AudioSet bars show the words as aggregated, e.g. 'Cursed', 'Rip')."""

AUDIOSET_NAMES = {"hip hop": "hip_hop", "heavy music": "heavy_music", "rhythm music": "rhythm_music",
                  "rock": "rock_altrock_punk"}
"""AudioSet class -> the name in the authors' file names and titles (their rock class is 'rock_altrock_punk')."""

MULTIMODAL_SETS = ("paper", "all")
"""``'paper'``: the three multimodal figures of the paper (M4A hip hop heatmap + words, pop top-30 bars,
AudioSet hip hop heatmap + words); ``'all'``: both kinds for every class of the three multimodal pairs."""

_FOLDERS = {"genre_multimodal": ("Results/plots/genre/multimodal/heatmap&barplot_{}_AVG.png",
                                 "Results/plots/genre/multimodal/barplot_{}_AVG.png"),
            "emotion_multimodal": ("Results/plots/emotion/multimodal/heatmap&barplot_{}_AVG.png",
                                   "Results/plots/emotion/multimodal/barplot_{}_AVG.png"),
            "audioset_multimodal": ("Results/plots/audioset/multimodal_heatmap&barplot_{}_AVG.png",
                                    "Results/plots/audioset/barplot_{}_AVG.png")}
_CLASSES = {"genre_multimodal": GENRES, "emotion_multimodal": EMOTIONS, "audioset_multimodal": AUDIOSET_GENRES}
_PAPER = (("genre_multimodal", "hip hop", "heatmap_bars"), ("genre_multimodal", "pop", "top_features"),
          ("audioset_multimodal", "hip hop", "heatmap_bars"))


@dataclass(frozen=True)
class MultimodalFigure:
    """One published multimodal figure: which pair, class and kind, and how its words were merged."""

    key: str           # published pair (utils.results.published.PUBLISHED_PAIRS)
    cls: str           # class name
    kind: str          # 'heatmap_bars' (audio heatmap + top-20 words) | 'top_features' (top-30 mixed bars)
    published: str    # path in the authors' repository
    display_name: str  # class name as the authors' titles print it
    merge_words: str   # MULTIMODAL_MERGES[key]

    @property
    def ours(self) -> str:
        """File name we write: :func:`flat_name` of the published path."""
        return flat_name(self.published)


def multimodal_figures(which: str = "paper") -> list[MultimodalFigure]:
    """The published multimodal figures to redraw (:data:`MULTIMODAL_SETS`)."""
    if which not in MULTIMODAL_SETS:
        raise ValueError(f"multimodal must be one of {MULTIMODAL_SETS}, got {which!r}")
    wanted = list(_PAPER) if which == "paper" else [
        (key, cls, kind) for key, classes in _CLASSES.items() for cls in classes
        for kind in ("heatmap_bars", "top_features")]
    figures = []
    for key, cls, kind in wanted:
        name = AUDIOSET_NAMES.get(cls, cls) if key == "audioset_multimodal" else cls
        pattern = _FOLDERS[key][0 if kind == "heatmap_bars" else 1]
        figures.append(MultimodalFigure(key, cls, kind, pattern.format(name), name, MULTIMODAL_MERGES[key]))
    return figures


def _multimodal_reason(figure: MultimodalFigure) -> str:
    what = "top-20 words" if figure.kind == "heatmap_bars" else "top-30 features"
    merged = {"lemma": "after the lower-case + lemma merge", "none": "unmerged, as published"}[figure.merge_words]
    reason = ("heatmap = W / C; " if figure.kind == "heatmap_bars" else "") + f"{what} and values {merged}"
    if figure.key == "genre_multimodal" and figure.cls == "pop":
        reason += ("; one label differs: 'old' (simplemma also lemmatises adjectives) where the authors show "
                   "'oldest' (same value)")
    return reason


@dataclass(frozen=True)
class PaperFigure:
    """One regenerated figure and the published figure it redraws."""

    ours: str        # file name written by regenerate_paper_figures
    published: str   # path in the authors' repository
    match: str       # EXACT | APPROXIMATE
    reason: str      # what matches, or why it is only an approximation


def _label(name: str) -> str:
    return name.replace(" ", "_")


def paper_figures(genre_classes: Sequence[str] = GENRES, emotion_classes: Sequence[str] = EMOTIONS,
                  multimodal: str = "paper") -> list[PaperFigure]:
    """The published figures :func:`utils.results.figures.regenerate_paper_figures` redraws.

    Parameters
    ----------
    genre_classes, emotion_classes : sequence of str
        The classes whose audio heatmaps were drawn (the same arguments as for the regeneration).
    multimodal : str
        Which multimodal figures were drawn (:data:`MULTIMODAL_SETS`).

    Returns
    -------
    list of PaperFigure
        In drawing order; figures of ours with no published counterpart (the share bars) are
        not listed.
    """
    figures = [PaperFigure(f"genre__audio__global_heatmap_{_label(c)}_AVG.png",
                           f"Results/plots/genre/audio/global_heatmap_{c}_AVG.png", EXACT, _HEATMAP)
               for c in genre_classes]
    figures += [PaperFigure(f"emotion__audio__global_heatmap_{_label(c)}_AVG.png",
                            f"Results/plots/emotion/audio/global_heatmap_{c}_AVG.png", EXACT, _HEATMAP)
                for c in emotion_classes]
    figures += [PaperFigure(f.ours, f.published, EXACT, _multimodal_reason(f)) for f in multimodal_figures(multimodal)]
    figures += [
        PaperFigure("genre__hiphop_vs_heavy.png", "Results/plots/genre/hiphop_vs_heavy.png", APPROXIMATE,
                    _WORD_MAP + _GENRE_MAP),
        PaperFigure("genre__global_class_importance.png", "Results/plots/genre/global_calss_importance.png",
                    APPROXIMATE, _WORD_MAP + _GENRE_MAP),
        PaperFigure("emotion__lyrics__global.png", "Results/plots/emotion/lyrics/global.png", APPROXIMATE,
                    _WORD_MAP + "; the published emotion map shows the same words at the same points as the "
                                "published genre map (both drawn from the emotion pickle; only the legend differs)"),
    ]
    return figures


def figure_table(figures: Sequence[PaperFigure]) -> pd.DataFrame:
    """The figures as a table: ``ours``, ``published``, ``match``, ``reason``."""
    return pd.DataFrame([vars(f) for f in figures], columns=["ours", "published", "match", "reason"])


def flat_name(path: str) -> str:
    """File name of a repository figure in a flat folder: ``Results/plots/`` dropped, ``/`` -> ``__``,
    ``&`` -> ``and``, spaces -> ``_`` (``genre/audio/global_heatmap_hip hop_AVG.png`` ->
    ``genre__audio__global_heatmap_hip_hop_AVG.png``)."""
    inner = path[len("Results/plots/"):] if path.startswith("Results/plots/") else path
    return inner.replace("/", "__").replace("&", "and").replace(" ", "_")


def resolve_published_figure(path: str, source: str | os.PathLike | None = None,
                             cache_dir: str | os.PathLike | None = None, timeout: float = 30.0) -> Path:
    """Local path of one published figure.

    Parameters
    ----------
    path : str
        Path in the authors' repository (:attr:`PaperFigure.published`).
    source : str or path, optional
        A URL containing ``{file}`` (default :data:`FIGURES_URL_PATTERN`; downloaded once into
        ``cache_dir``), or a local folder: a clone of the authors' repository (``<folder>/<path>``)
        or a flat folder (``<folder>/<flat_name(path)>``).
    cache_dir, timeout
        See :func:`utils.results.published.resolve_published_file`.

    Raises
    ------
    FileNotFoundError
        A local folder without the figure (naming both places looked at).
    OSError
        The download failed (offline, unreachable), naming the URL.
    """
    from utils.results.published import resolve_published_file

    source = FIGURES_URL_PATTERN if source is None else source
    if isinstance(source, str) and "://" in source:
        try:
            return resolve_published_file(path, source, cache_dir, timeout)
        except OSError as err:
            reason = str(err).split("; pass source=")[0]
            raise OSError(f"{reason}; pass a local folder of the published figures to work offline") from err
    folder = Path(source)
    for candidate in (folder / path, folder / flat_name(path)):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"published figure {path!r} not in {folder} (looked for {folder / path} and "
                            f"{folder / flat_name(path)})")


def plot_side_by_side(ours: str | os.PathLike, published: str | os.PathLike, title: str | None = None,
                      save_path: str | os.PathLike | None = None) -> Figure:
    """Our regenerated PNG next to the published one, axes hidden: side by side (ours left), or
    one above the other (ours on top) when the images are wide (width > 1.5 x height)."""
    from utils.plotting import save_figure

    images = [plt.imread(str(ours)), plt.imread(str(published))]
    heights = [image.shape[0] / image.shape[1] for image in images]
    if max(heights) < 1 / 1.5:
        fig, axes = plt.subplots(2, 1, figsize=(16, 2 * 16 * max(heights) + 1.2))
    else:
        fig, axes = plt.subplots(1, 2, figsize=(16, 8 * max(heights) + 0.8))
    for ax, image, label in zip(axes, images, ("regenerated (ours)", "published (the authors')")):
        ax.imshow(image)
        ax.set_title(label)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, save_path)
