"""Lyrics tokenisation: a corpus-trained RoBERTa tokenizer for the tiny profile, and a cache.

The tiny profile trains a byte-level BPE tokenizer (Hugging Face ``tokenizers``) on the
training lyrics and saves it in RoBERTa's format (``vocab.json`` + ``merges.txt``), so it
loads with the very class the paper profile uses (``RobertaTokenizerFast``) from a local
directory, offline.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

import torch

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 1000, seed: int = 0):
    """Train a byte-level BPE tokenizer on ``texts`` and save it as a RoBERTa tokenizer.

    Returns the loaded ``RobertaTokenizerFast``. Training is deterministic for the same texts.
    """
    from tokenizers import ByteLevelBPETokenizer

    texts = list(texts)
    if not texts:
        raise ValueError("train_tokenizer: no texts to train on")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                            show_progress=False)
    bpe.save_model(str(out_dir))
    return load_tokenizer(out_dir)


def load_tokenizer(source: str | Path):
    """``RobertaTokenizerFast`` from a hub id (``'roberta-large'``) or a local directory."""
    from transformers import RobertaTokenizerFast

    return RobertaTokenizerFast.from_pretrained(str(source))


class TokenCache:
    """Tokenise texts to fixed-length ``input_ids`` / ``attention_mask``, remembering results.

    LIME queries the same perturbed lyrics many times (the original row, repeated masks), and
    global runs re-tokenise the same songs per setting; the cache keys on the text's SHA-1.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer.
    max_tokens : sequence length (tokens); longer lyrics are truncated, shorter padded.
    """

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self._cache: dict[str, tuple[list[int], list[int]]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def visible_chars(self, text: str) -> int | None:
        """How many leading characters of ``text`` fit in the ``max_tokens`` window; None if all do.

        Needs a fast tokenizer (character offsets); a slow one gives None (not checked).
        """
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        encoded = self.tokenizer(text, truncation=True, max_length=self.max_tokens, return_offsets_mapping=True,
                                 return_overflowing_tokens=False)
        ends = [end for start, end in encoded["offset_mapping"] if end > start]
        if len(self.tokenizer(text, truncation=False)["input_ids"]) <= self.max_tokens:
            return None
        return max(ends, default=0)

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise a batch; returns ``input_ids`` and ``attention_mask`` of shape (batch, max_tokens)."""
        if isinstance(texts, str):
            raise TypeError("TokenCache expects a list of texts, not one string")
        keys = [self._key(t) for t in texts]
        missing = {k: t for k, t in zip(keys, texts) if k not in self._cache}
        if missing:
            encoded = self.tokenizer(list(missing.values()), truncation=True, max_length=self.max_tokens,
                                     padding="max_length")
            for key, ids, mask in zip(missing, encoded["input_ids"], encoded["attention_mask"]):
                self._cache[key] = (ids, mask)
        ids = torch.tensor([self._cache[k][0] for k in keys], dtype=torch.long)
        mask = torch.tensor([self._cache[k][1] for k in keys], dtype=torch.long)
        return {"input_ids": ids.reshape(len(keys), self.max_tokens),
                "attention_mask": mask.reshape(len(keys), self.max_tokens)}
