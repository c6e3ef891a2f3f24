"""Perturbed lyrics, fast: texts from masks in one vectorised pass, token ids piece by piece.

:func:`compose_texts` equals ``WordFeatures.compose`` (lime's ``IndexedString``) and
:class:`PieceTokenizer` equals the RoBERTa tokenizer on those texts (tests/test_speed.py);
:class:`utils.musiclime.predict.ModelPredictor` uses both for its lyrics fast path.
"""
from __future__ import annotations

import itertools
import json
import re
from typing import Callable, Sequence

import numpy as np
import torch

from utils.musiclime.factorization import check_masks


class PieceTokenizer:
    """Token ids of many perturbed versions of one lyric, reusing the tokens of their pieces.

    RoBERTa's byte-level BPE (no normalizer, ``add_prefix_space=False``) tokenises each regex
    pre-token on its own, and whitespace right after a non-space character always starts a
    new pre-token: no alternative of the GPT-2 pattern (contractions, `` ?\\p{L}+``,
    `` ?\\p{N}+``, `` ?[^\\s\\p{L}\\p{N}]+``, whitespace runs) runs from a non-space character
    into whitespace, and how a whitespace run splits depends only on the run and the
    character after it. So the ids of a text are the concatenation of the ids of its pieces
    split there (a whitespace run and the non-space characters after it: ``" fire,"``,
    ``"\\n  night"``), and the perturbed lyrics of one song are made of few distinct pieces:
    each is tokenised once. Whitespace here is exactly the tokenizer regex's ``\\s`` (Unicode
    White_Space), not Python's wider ``\\s``. The result equals ``TokenCache`` / ``tokenizer(texts,
    truncation=True, max_length=max_tokens, padding='max_length')`` (tests/test_speed.py);
    :meth:`supports` says whether a tokenizer qualifies (else the predictor uses its
    ``TokenCache``).

    With ``preprocess`` (the paper profile's :func:`~utils.dataset_related.text.authors_preprocess`)
    each text is preprocessed whole first and the preprocessed text is split into pieces, so the
    result equals ``TokenCache`` with the same preprocessing (tests/test_authors_text.py): the
    piecewise argument holds for any text, the preprocessed one included, whereas preprocessing
    piece by piece would not (removing punctuation can join two pieces into one word).

    Parameters
    ----------
    tokenizer : a Hugging Face RoBERTa tokenizer (with ``backend_tokenizer``).
    max_tokens : sequence length (tokens) including ``<s>`` and ``</s>``.
    preprocess : callable, optional
        Applied to every text before it is split and tokenised (``TokenCache.preprocess``).
    """

    WHITESPACE = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"  # the tokenizer's \s
    SPLIT = re.compile(f"(?<=[^{WHITESPACE}])(?=[{WHITESPACE}])")
    MAX_PIECES = 200_000

    def __init__(self, tokenizer, max_tokens: int, preprocess: Callable[[str], str] | None = None):
        if not self.supports(tokenizer):
            raise ValueError("PieceTokenizer needs a byte-level BPE tokenizer without normalizer or prefix space "
                             "(RoBERTa's)")
        self.backend = self._backend(tokenizer)
        self.max_tokens = int(max_tokens)
        self.preprocess = preprocess
        self.cls_id, self.sep_id, self.pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        self._pieces: dict[str, list[int]] = {}

    _backends: dict[int, tuple[object, object]] = {}

    @classmethod
    def _backend(cls, tokenizer):
        """A private copy of the Rust tokenizer without padding / truncation (the Hugging Face
        wrapper sets those on its own backend per call), built once per tokenizer object."""
        from tokenizers import Tokenizer

        cached = cls._backends.get(id(tokenizer))
        if cached is None or cached[0] is not tokenizer:
            backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            backend.no_padding()
            backend.no_truncation()
            cached = cls._backends[id(tokenizer)] = (tokenizer, backend)
        return cached[1]

    @staticmethod
    def supports(tokenizer) -> bool:
        """True for RoBERTa-style byte-level BPE tokenizers, where piecewise tokenisation is exact."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return False
        config = json.loads(backend.to_str())
        pre, post = config.get("pre_tokenizer") or {}, config.get("post_processor") or {}
        return (config.get("normalizer") is None and pre.get("type") == "ByteLevel"
                and not pre.get("add_prefix_space", True) and pre.get("use_regex", False)
                and post.get("type") == "RobertaProcessing"
                and getattr(tokenizer, "truncation_side", "right") == "right"
                and getattr(tokenizer, "padding_side", "right") == "right"
                and None not in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id))

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask``, (len(texts), max_tokens) int64."""
        if self.preprocess is not None:
            texts = [self.preprocess(text) for text in texts]
        split = [self.SPLIT.split(text) for text in texts]
        missing = list({piece for pieces in split for piece in pieces if piece not in self._pieces})
        if missing:
            if len(self._pieces) + len(missing) > self.MAX_PIECES:
                self._pieces.clear()
                missing = list({piece for pieces in split for piece in pieces})
            encoded = self.backend.encode_batch(missing, add_special_tokens=False)
            self._pieces.update(zip(missing, (e.ids for e in encoded)))
        ids = np.full((len(texts), self.max_tokens), self.pad_id, dtype=np.int64)
        lengths = np.empty(len(texts), dtype=np.int64)
        content = self.max_tokens - 2
        pieces_of = self._pieces
        for row, pieces in enumerate(split):
            tokens = [self.cls_id, *itertools.islice(itertools.chain.from_iterable(pieces_of[p] for p in pieces),
                                                     content), self.sep_id]
            ids[row, : len(tokens)] = tokens
            lengths[row] = len(tokens)
        mask = (np.arange(self.max_tokens)[None, :] < lengths[:, None]).astype(np.int64)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def compose_texts(text_features, masks: np.ndarray) -> list[str]:
    """``text_features.compose(masks)``; for lime's bag-of-words features one vectorised pass.

    ``IndexedString.inverse_removing`` drops the pieces (words) at the positions of every
    switched-off word and joins the rest; here a (rows x pieces) keep matrix is built at once
    and each row joined with ``itertools.compress`` -- the same strings (tests/test_speed.py).
    """
    indexed = getattr(text_features, "indexed_string", None)
    if indexed is None or not callable(getattr(text_features, "piece_owner", None)):
        return text_features.compose(masks)
    n_features = text_features.n_features
    masks = check_masks(masks, n_features, binary=True)
    owner = text_features.piece_owner()                   # separators and words kept intact: the ones column
    keep = np.concatenate([masks, np.ones((len(masks), 1), masks.dtype)], axis=1)[:, owner] != 0
    pieces = indexed.as_list
    return ["".join(itertools.compress(pieces, row)) for row in keep.tolist()]
