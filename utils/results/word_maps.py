"""Word maps: lyric words placed by a 2-D projection of their embeddings, marker and colour = class.

Like the authors' ``global_calss_importance.png`` (every class) and ``hiphop_vs_heavy.png``
(class vs class). :func:`select_class_words` picks the words from a
:func:`utils.musiclime.aggregate.measures` table, :func:`project_2d` places them (PCA or t-SNE),
:func:`plot_word_map` draws them; :func:`hashing_embeddings` is a deterministic, spelling-based
fallback when no real word embeddings are at hand. Saving: :func:`utils.plotting.save_figure`.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from utils.plotting import MAGNITUDE_COLOURS, save_figure
from utils.results.figures import resolve_class, top_features

CLASS_MARKERS = ("o", "s", "^", "p", "*", "D", "X", "<", ">")
CLASS_COLOURS = (MAGNITUDE_COLOURS[0], "#488286", "#408d7b", "#5ab894", "#918c9f",
                 "#aa5d78", "#d7abbb", MAGNITUDE_COLOURS[1], "#f9f871")
"""Marker and colour of class index ``i`` (sampled from the authors' figure, which runs between the
two ends of the magnitude colour map)."""


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
                  save_path: str | os.PathLike | None = None) -> Figure:
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
                   color=CLASS_COLOURS[index % len(CLASS_COLOURS)], s=110, label=name)
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
    return save_figure(fig, save_path)
