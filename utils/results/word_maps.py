"""Word maps: lyric words placed by a 2-D projection of their embeddings, marker and colour = class.

Like the authors' ``global_calss_importance.png`` (every class) and ``hiphop_vs_heavy.png``
(class vs class). :func:`select_class_words` picks the words from a
:func:`utils.musiclime.aggregate.measures` table, :func:`project_2d` places them (t-SNE, seeded,
or PCA), :func:`plot_word_map` draws them. As in the published maps, a word's inflections share
one point (its lemma's vector, :func:`utils.musiclime.word_forms.lemma_key`) and keep their own
labels. The vectors: :mod:`utils.results.word_vectors` (real word vectors, or the labelled
fallback :func:`hashing_embeddings`, deterministic and spelling-based). Saving:
:func:`utils.plotting.save_figure`.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from utils.musiclime.word_forms import lemma_key, merge_table_words
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


def tsne_perplexity(n_points: int) -> float:
    """t-SNE perplexity for ``n_points``: a third of the other points, between 1 and 30 (sklearn's
    default), so it stays below the number of points as t-SNE requires."""
    return float(min(30.0, max(1.0, (n_points - 1) / 3.0)))


def project_2d(vectors: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """Project (n_words, dim) vectors to (n_words, 2) with sklearn t-SNE or PCA, seeded.

    t-SNE: perplexity :func:`tsne_perplexity`, exact gradients up to 1,000 points (Barnes-Hut
    beyond), started from the 2-D PCA of the vectors scaled as sklearn's ``init='pca'`` does
    (first coordinate's std 1e-4) plus seeded normal jitter (std 1e-5, numpy RNG ``seed``): two
    words whose PCA points coincide would otherwise get identical gradients and never part.
    Same seed and input -> the same coordinates.
    """
    vectors = np.asarray(vectors, dtype=float)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"need at least 2 vectors of shape (n, dim) to project, got {vectors.shape}")
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    from sklearn.decomposition import PCA

    if vectors.shape[1] < 2:
        raise ValueError("projecting to 2-D needs vectors of dimension >= 2")
    pca = PCA(n_components=2, svd_solver="full").fit_transform(vectors)
    if method == "pca":
        return pca
    from sklearn.manifold import TSNE

    spread = float(np.std(pca[:, 0]))
    start = pca / spread * 1e-4 if spread > 0 else np.zeros_like(pca)
    start = (start + np.random.default_rng(seed).normal(scale=1e-5, size=start.shape)).astype(np.float32)
    return TSNE(n_components=2, perplexity=tsne_perplexity(len(vectors)), init=start, learning_rate="auto",
                method="exact" if len(vectors) <= 1000 else "barnes_hut",
                random_state=seed).fit_transform(vectors)


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


def word_points(words: Sequence[str], embeddings: Mapping[str, np.ndarray], method: str = "tsne", seed: int = 0,
                merge_inflections: bool = True) -> np.ndarray:
    """2-D points of ``words``; with ``merge_inflections`` every form of a lemma gets the same point.

    Parameters
    ----------
    words : sequence of str
        The words drawn (surface forms).
    embeddings : dict
        Keyed by lemma (:func:`utils.musiclime.word_forms.lemma_key`) when ``merge_inflections``,
        else by word; vectors of one length.
    method, seed
        :func:`project_2d`, applied to the distinct lemmas (each projected once; a single lemma
        is placed at the origin).

    Returns
    -------
    numpy.ndarray, shape (len(words), 2)

    Raises
    ------
    ValueError
        A word (lemma) without a vector, naming them.
    """
    keys = [lemma_key(w) for w in words] if merge_inflections else list(words)
    distinct = list(dict.fromkeys(keys))
    missing = [k for k in distinct if k not in embeddings]
    if missing:
        what = "lemmas" if merge_inflections else "words"
        raise ValueError(f"no embedding for {what} {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                         f"they cannot be placed on the map")
    if len(distinct) == 1:              # one lemma (e.g. 'river', 'rivers'): one point, nothing to project
        return np.zeros((len(keys), 2))
    points = project_2d(np.stack([np.asarray(embeddings[k], dtype=float) for k in distinct]), method, seed)
    return points[[distinct.index(k) for k in keys]]


def plot_word_map(table: pd.DataFrame, embeddings: Mapping[str, np.ndarray],
                  classes: Sequence[str | int] | None = None, top_k: int = 5, value: str = "I_H",
                  method: str = "tsne", seed: int = 0, title: str | None = None,
                  vectors_label: str | None = None, merge_words: str | None = "case",
                  merge_inflections: bool = True, save_path: str | os.PathLike | None = None) -> Figure:
    """Words placed by a 2-D projection of their embeddings, marker / colour = class.

    ``classes=None`` draws every class (the authors' ``global_calss_importance.png``, titled
    ``'2D Visualization of Word Embeddings by Class Importance'``); two classes give the
    class-vs-class map (``hiphop_vs_heavy.png``, no title). Words: :func:`select_class_words`
    of the table merged by ``merge_words`` (default lower-case only: the published maps label
    ``work`` and ``working`` apart, on one point).

    Parameters
    ----------
    embeddings : dict
        lemma -> vector (word -> vector when ``merge_inflections=False``); see
        :mod:`utils.results.word_vectors`.
    method, seed
        :func:`project_2d` (t-SNE by default).
    vectors_label : str, optional
        What the vectors are, added to the title (e.g. :data:`utils.results.word_vectors.FALLBACK_LABEL`).
    merge_inflections : bool
        Place a word's inflections on one point (:func:`word_points`).
    """
    table = merge_table_words(table, merge_words)
    names = list(table["class"].cat.categories) if len(table) else []
    words = select_class_words(table, classes, top_k, value)
    points = word_points(words["word"].tolist(), embeddings, method, seed, merge_inflections)
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
    if vectors_label:
        title = f"{title}\n({vectors_label})" if title else f"({vectors_label})"
    if title:
        ax.set_title(title)
    return save_figure(fig, save_path)
