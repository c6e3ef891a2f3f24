"""Word vectors for the word maps, looked up by lemma so that a word's inflections share one point.

The authors' word maps (``hiphop_vs_heavy.png``, ``global_calss_importance.png``) place the forms
of one word on the same point with separate labels (``work`` / ``working``, ``diamond`` /
``diamonds``): pretrained word vectors looked up after lemmatising. The notebook that drew them
is not in their repository, so which vectors they used is unknown. Our choice:

* **our own models** -- the lyrics model's input embeddings (the mean of a word's token rows,
  :func:`utils.results.run_figures.word_embeddings`), looked up for each lemma;
* **the published aggregates** (:func:`published_word_vectors`) -- the input embeddings of the
  paper profile's RoBERTa (``roberta-large``, ``ModelConfig.lyrics_source`` / ``tokenizer_source``),
  the encoder every published model started from, when its weights are on this machine (a local
  folder or the Hugging Face cache; nothing is downloaded). Otherwise an offline **fallback**:
  hashed character n-grams (:func:`utils.results.word_maps.hashing_embeddings`), spelling
  similarity rather than meaning, and the figure title says so (:data:`FALLBACK_LABEL`).

Every dictionary returned here is keyed by lemma (:func:`utils.musiclime.word_forms.lemma_key`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from utils.musiclime.word_forms import lemma_key

FALLBACK_LABEL = "fallback: character n-grams, not word vectors"
"""Shown on a word map placed by :func:`utils.results.word_maps.hashing_embeddings`."""

WORD_EMBEDDING_SUFFIX = "embeddings.word_embeddings.weight"
"""Name ending of a RoBERTa checkpoint's input embedding matrix (``roberta.`` prefix or none)."""


@dataclass
class WordVectors:
    """Vectors keyed by lemma, and what they are (printed on the figure)."""

    vectors: dict[str, np.ndarray]   # lemma -> vector of shape (dim,)
    label: str                       # e.g. 'roberta-large input embeddings' or FALLBACK_LABEL
    fallback: bool                   # True: not word vectors (hashed character n-grams)


def lemmas(words: Iterable[str]) -> list[str]:
    """The distinct lemmas (:func:`lemma_key`) of ``words``, in first-seen order."""
    return list(dict.fromkeys(lemma_key(str(w)) for w in words))


def token_mean_vectors(matrix: np.ndarray, tokenizer, words: Iterable[str],
                       leading_space: bool = True) -> dict[str, np.ndarray]:
    """Word -> mean of its token rows in an input embedding ``matrix`` (vocabulary, hidden).

    ``leading_space``: tokenise ``' ' + word``, how a word inside a lyric line reaches byte-level
    BPE. Raises ``ValueError`` for a word with no tokens or a token id outside ``matrix``.
    """
    vectors: dict[str, np.ndarray] = {}
    for word in dict.fromkeys(words):
        ids = tokenizer((" " + word) if leading_space else word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"word {word!r} gives no tokens")
        if max(ids) >= len(matrix):
            raise ValueError(f"word {word!r}: token id {max(ids)} outside the {len(matrix)}-row embedding matrix")
        vectors[word] = np.asarray(matrix[ids], dtype=np.float64).mean(axis=0)
    if not vectors:
        raise ValueError("no words to embed")
    return vectors


def _local_file(source: str, file_name: str) -> Path | None:
    if Path(source).is_dir():
        path = Path(source) / file_name
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:                                     # pragma: no cover - comes with transformers
        return None
    try:
        cached = try_to_load_from_cache(source, file_name)
    except ValueError:                                      # not a hub id (e.g. a missing folder)
        return None
    return Path(cached) if isinstance(cached, (str, os.PathLike)) else None


def pretrained_input_embeddings(source: str | os.PathLike) -> np.ndarray:
    """The (vocabulary, hidden) input embedding matrix of a RoBERTa checkpoint on this machine.

    Parameters
    ----------
    source : str or path
        A local folder (``save_pretrained`` output) or a hub id already in the Hugging Face cache.
        Only ``model.safetensors`` is read, and only the embedding tensor (no model is built).

    Raises
    ------
    OSError
        No local ``model.safetensors`` for ``source`` (nothing is downloaded).
    ValueError
        The file holds no ``*embeddings.word_embeddings.weight`` tensor.
    """
    from safetensors import safe_open

    path = _local_file(str(source), "model.safetensors")
    if path is None:
        raise OSError(f"no local weights for {source!r} (model.safetensors in the folder or the Hugging Face "
                      f"cache); nothing is downloaded")
    with safe_open(str(path), framework="pt") as weights:
        keys = [k for k in weights.keys() if k.endswith(WORD_EMBEDDING_SUFFIX)]
        if not keys:
            raise ValueError(f"{path}: no tensor named *{WORD_EMBEDDING_SUFFIX}")
        return weights.get_tensor(sorted(keys, key=len)[0]).float().numpy()


def local_tokenizer(source: str | os.PathLike):
    """The Hugging Face tokenizer of ``source`` from local files only (``OSError`` when absent)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as err:
        raise OSError(f"no local tokenizer for {source!r}: {err}") from err


def published_word_vectors(words: Iterable[str], source: str | os.PathLike | None = None,
                           tokenizer_source: str | os.PathLike | None = None) -> WordVectors:
    """Vectors for the lemmas of ``words``: RoBERTa input embeddings when local, else the fallback.

    Parameters
    ----------
    words : iterable of str
        Words as aggregated (any case, any inflection); the result is keyed by their lemmas.
    source, tokenizer_source : str or path, optional
        Checkpoint and tokenizer (default: the paper profile's ``lyrics_source`` and
        ``tokenizer_source``, ``'roberta-large'``).

    Returns
    -------
    WordVectors
        ``label`` names the checkpoint (``'<source> input embeddings'``) or is
        :data:`FALLBACK_LABEL` (``fallback=True``) when the checkpoint or its tokenizer is not
        on this machine.
    """
    from utils.config import get_profile
    from utils.results.word_maps import hashing_embeddings

    wanted = lemmas(words)
    if not wanted:
        raise ValueError("no words to embed")
    model = get_profile("paper").model
    source = model.lyrics_source if source is None else source
    tokenizer_source = (model.tokenizer_source if source == model.lyrics_source else source) \
        if tokenizer_source is None else tokenizer_source
    try:
        matrix = pretrained_input_embeddings(source)
        tokenizer = local_tokenizer(tokenizer_source)
    except OSError:
        return WordVectors(hashing_embeddings(wanted), FALLBACK_LABEL, fallback=True)
    name = Path(str(source)).name if Path(str(source)).is_dir() else str(source)
    return WordVectors(token_mean_vectors(matrix, tokenizer, wanted), f"{name} input embeddings", fallback=False)
