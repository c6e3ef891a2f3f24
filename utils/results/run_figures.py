"""What the figures of a global run need beyond the measures table: which classes to draw, and word vectors.

* :func:`present_classes`, :func:`pick_class`, :func:`pick_classes` -- the classes of a measures
  table (:func:`utils.musiclime.aggregate.measures`) that have features to draw, preferred ones first;
* :func:`word_embeddings` -- word vectors read off the lyrics model's input embedding matrix
  (:func:`input_embedding_matrix`), for the class-vs-class word maps of
  :func:`utils.results.figures.plot_word_map`.

The figures themselves are :mod:`utils.results.figures`; notebook 10 draws them.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd


# ---------------------------------------------------------------- classes to draw
def present_classes(table: pd.DataFrame, modality: str | None = None) -> list[str]:
    """Classes (in class order) that have aggregated features (of ``modality`` when given)."""
    rows = table if modality is None else table[table["modality"] == modality]
    present = set(rows["class"].astype(str))
    return [c for c in table["class"].cat.categories if c in present]


def pick_class(table: pd.DataFrame, preferred: Sequence[str] = (), modalities: Sequence[str] = ("audio", "lyrics"),
               ) -> str:
    """The first of ``preferred`` that has features of every modality in ``modalities``, else the
    first such class in class order (for figures that need e.g. audio and words of one class)."""
    have = [set(present_classes(table, m)) for m in modalities]
    usable = [c for c in table["class"].cat.categories if all(c in h for h in have)]
    if not usable:
        raise ValueError(f"no class has features of all of {list(modalities)}")
    return next((c for c in preferred if c in usable), usable[0])


def pick_classes(table: pd.DataFrame, preferred: Sequence[str], n: int = 2, modality: str = "lyrics") -> list[str]:
    """``n`` classes with ``modality`` features: ``preferred`` ones first, then the others in class order."""
    usable = present_classes(table, modality)
    if not usable:
        raise ValueError(f"no class has {modality} features")
    ordered = [c for c in preferred if c in usable] + [c for c in usable if c not in preferred]
    return ordered[:n]


# ---------------------------------------------------------------- word embeddings
def input_embedding_matrix(model) -> np.ndarray:
    """The (vocabulary, hidden) token embedding matrix of a lyrics or fusion model's RoBERTa.

    Accepts :class:`utils.model_related.models.LyricsClassifier`, :class:`utils.model_related.models.FusionClassifier`, a
    :class:`utils.musiclime.predict.ModelPredictor` around either, or any Hugging Face model.
    """
    candidates = [model, getattr(model, "model", None), getattr(model, "lyrics_encoder", None)]
    inner = getattr(model, "model", None)
    candidates += [getattr(inner, "model", None), getattr(inner, "lyrics_encoder", None)]
    for candidate in candidates:
        get = getattr(candidate, "get_input_embeddings", None)
        if callable(get):
            embedding = get()
            if embedding is not None and hasattr(embedding, "weight"):
                return embedding.weight.detach().float().cpu().numpy()
    raise TypeError(f"{type(model).__name__} has no lyrics input embeddings (not a lyrics or multimodal model?)")


def word_embeddings(model, tokenizer, words: Iterable[str], leading_space: bool = True,
                    by_lemma: bool = True) -> dict[str, np.ndarray]:
    """Word vectors from the lyrics model's input embeddings: the mean of each word's token rows.

    Parameters
    ----------
    model : lyrics or fusion model (see :func:`input_embedding_matrix`).
    tokenizer : the model's Hugging Face tokenizer (e.g. ``TokenCache.tokenizer``).
    words : iterable of str
        Duplicates are embedded once.
    leading_space : bool
        Tokenise ``' ' + word`` (how a word inside a lyric line reaches byte-level BPE) rather
        than the bare word.
    by_lemma : bool
        Embed and key by lemma (:func:`utils.musiclime.word_forms.lemma_key`: ``'Working'`` ->
        ``'work'``), what :func:`utils.results.word_maps.plot_word_map` looks up so that a word's
        inflections share a point; ``False``: the words as given.

    Returns
    -------
    dict[str, np.ndarray]
        lemma (or word) -> float64 vector of shape (hidden,). Deterministic for fixed weights.

    Raises
    ------
    ValueError
        A word that tokenises to nothing, or a token id outside the embedding matrix.
    """
    from utils.results.word_vectors import lemmas, token_mean_vectors

    words = lemmas(words) if by_lemma else list(words)
    return token_mean_vectors(input_embedding_matrix(model), tokenizer, words, leading_space)
