"""Lyrics tokenisation: a corpus-trained RoBERTa tokenizer for the tiny profile, the authors'
text preprocessing, their token file, and a cache.

The tiny profile trains a byte-level BPE tokenizer (Hugging Face ``tokenizers``) on the
training lyrics and saves it in RoBERTa's format (``vocab.json`` + ``merges.txt``), so it
loads with the very class the paper profile uses (``RobertaTokenizerFast``) from a local
directory, offline.

The paper profile (``ModelConfig.text_preprocessing == "authors"``) tokenises every text as the
authors' ``DataPreprocessor`` did (:func:`authors_preprocess`, 256 tokens, ``padding='max_length'``,
truncation), and trains on their ``tokenized_texts.json`` as it is (:func:`read_token_file`,
:attr:`TokenCache.given`).

Inferred, not shown by their code: that MusicLIME's perturbed lyrics were preprocessed the same way.
Their global-aggregation notebook's ``predict_fn`` builds ``MultimodalmDataset(texts, waveforms,
feature_extractor)``, whose code is not published ("should ... give the corresponding token ids,
attention masks"); the only tokenisation their code shows is ``DataPreprocessor`` (preprocess, then
256 tokens), the one their models were trained on, so the predictor applies it to every perturbed
text (:class:`utils.musiclime.lyric_tokens.PieceTokenizer` with ``preprocess``), while LIME's words
come from the lyrics as published (their loop explains ``batch['lyrics']``, the raw text).
"""
from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from utils.io import atomic_write

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TOKEN_FILE = "tokenized_texts.json"
"""The authors' token file: ``{id: {"input_ids": [...], "attention_mask": [...]}}``."""
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def authors_preprocess(text: str) -> str:
    """The authors' ``DataPreprocessor.preprocess``: lower-case, ``string.punctuation`` removed,
    ``\\n`` / ``\\t`` -> space, whitespace runs collapsed to one space, ends stripped."""
    text = text.lower()
    text = text.translate(_PUNCTUATION)
    text = text.replace("\n", " ").replace("\t", " ")
    return " ".join(text.split())


def authors_preprocess_sources(text: str) -> list[int]:
    """For each character of :func:`authors_preprocess` ``(text)``, the index in ``text`` it comes from.

    Built character by character (``str.lower`` of one character, punctuation dropped, a
    whitespace run -> one space, mapped to the run's first character); the result has the
    length of the preprocessed text (checked), so token offsets map back to the raw lyrics.
    """
    sources: list[int] = []
    gap: int | None = None
    for index, char in enumerate(text):
        if char.isspace():
            gap = index if gap is None else gap
            continue
        kept = char.lower().translate(_PUNCTUATION)
        if not kept:
            continue
        if gap is not None and sources:
            sources.append(gap)
        gap = None
        sources.extend([index] * len(kept))
    if len(sources) != len(authors_preprocess(text)):  # pragma: no cover - str.lower is per character
        raise ValueError("authors_preprocess_sources: character map out of step with authors_preprocess")
    return sources


PREPROCESSING: dict[str, Callable[[str], str] | None] = {"none": None, "authors": authors_preprocess}
"""``ModelConfig.text_preprocessing`` -> the function applied to every text before tokenising."""


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
    global runs re-tokenise the same songs per setting; the cache keys on the SHA-1 of the text
    as tokenised (after ``preprocessing``).

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer.
    max_tokens : sequence length (tokens); longer lyrics are truncated, shorter padded.
    preprocessing : str
        A key of :data:`PREPROCESSING` (``ModelConfig.text_preprocessing``): ``"none"``, or
        ``"authors"`` (:func:`authors_preprocess` before every tokenisation).
    given : dict, optional
        Songs' tokens to use as they are, ``{id: (input_ids, attention_mask)}``
        (:func:`read_token_file`); :meth:`songs` takes them instead of tokenising.
    given_source : str
        Where ``given`` came from (named in errors).
    """

    def __init__(self, tokenizer, max_tokens: int, preprocessing: str = "none",
                 given: dict[str, tuple[list[int], list[int]]] | None = None, given_source: str = "given tokens"):
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"text preprocessing must be one of {sorted(PREPROCESSING)}, got {preprocessing!r}")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.preprocessing = preprocessing
        self.preprocess = PREPROCESSING[preprocessing]
        self.given = dict(given or {})
        self.given_source = given_source
        self._cache: dict[str, tuple[list[int], list[int]]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """The texts as they are tokenised (preprocessed when the profile says so)."""
        return [self.preprocess(t) for t in texts] if self.preprocess else list(texts)

    def visible_chars(self, text: str) -> int | None:
        """How many leading characters of ``text`` fit in the ``max_tokens`` window; None if all do.

        Counted in ``text`` as given: with preprocessing, the window's end in the preprocessed
        text is mapped back (:func:`authors_preprocess_sources`). Needs a fast tokenizer
        (character offsets); a slow one gives None (not checked).
        """
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        seen = self.prepare([text])[0]
        if len(self.tokenizer(seen, truncation=False)["input_ids"]) <= self.max_tokens:
            return None
        encoded = self.tokenizer(seen, truncation=True, max_length=self.max_tokens, return_offsets_mapping=True,
                                 return_overflowing_tokens=False)
        end = max((end for start, end in encoded["offset_mapping"] if end > start), default=0)
        if not self.preprocess or end == 0:
            return end
        return authors_preprocess_sources(text)[end - 1] + 1

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise a batch; returns ``input_ids`` and ``attention_mask`` of shape (batch, max_tokens)."""
        if isinstance(texts, str):
            raise TypeError("TokenCache expects a list of texts, not one string")
        texts = self.prepare(texts)
        keys = [self._key(t) for t in texts]
        missing = {k: t for k, t in zip(keys, texts) if k not in self._cache}
        if missing:
            encoded = self.tokenizer(list(missing.values()), truncation=True, max_length=self.max_tokens,
                                     padding="max_length")
            for key, ids, mask in zip(missing, encoded["input_ids"], encoded["attention_mask"]):
                self._cache[key] = (ids, mask)
        return self._tensors([self._cache[k] for k in keys])

    def _tensors(self, rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([r[0] for r in rows], dtype=torch.long)
        mask = torch.tensor([r[1] for r in rows], dtype=torch.long)
        return {"input_ids": ids.reshape(len(rows), self.max_tokens),
                "attention_mask": mask.reshape(len(rows), self.max_tokens)}

    def songs(self, ids: Sequence[str], texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The model inputs of songs: their :attr:`given` tokens as they are, else their texts tokenised.

        Raises
        ------
        ValueError
            Tokens are given but not for one of ``ids`` (named): no song of such a corpus is
            re-tokenised behind the given file's back.
        """
        ids, texts = list(ids), list(texts)
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        if not self.given:
            return self(texts)
        missing = [song_id for song_id in ids if song_id not in self.given]
        if missing:
            raise ValueError(f"{self.given_source}: no tokens for id {missing[0]!r} ({len(missing)} song(s) "
                             "without); the given tokens are used as they are, never re-made")
        return self._tensors([self.given[song_id] for song_id in ids])


def read_token_file(path: str | Path, vocab_size: int, max_tokens: int,
                    ids: Iterable[str] | None = None) -> dict[str, tuple[list[int], list[int]]]:
    """The authors' ``tokenized_texts.json``, checked: ``{id: (input_ids, attention_mask)}``.

    Parameters
    ----------
    path : path
        ``{id: {"input_ids": [...], "attention_mask": [...]}}`` (JSON).
    vocab_size : int
        Every token id must be in ``[0, vocab_size)``.
    max_tokens : int
        Every row must have exactly this many ids and mask values (the profile's window).
    ids : iterable of str, optional
        Read (and check) only these songs' rows; those absent are simply not in the result.

    Raises
    ------
    ValueError
        Naming the file and the id: a row that is not two lists of ints of length
        ``max_tokens``, an id outside the vocabulary, a mask value other than 0 / 1.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON token file ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object id -> tokens, got {type(data).__name__}")
    wanted = list(data) if ids is None else [i for i in ids if i in data]
    return {song_id: _token_row(data[song_id], song_id, path, vocab_size, max_tokens) for song_id in wanted}


def _token_row(row, song_id: str, path: Path, vocab_size: int, max_tokens: int) -> tuple[list[int], list[int]]:
    """One checked row of a token file (see :func:`read_token_file`)."""
    where = f"{path}: id {song_id!r}"
    if not isinstance(row, dict) or not {"input_ids", "attention_mask"} <= set(row):
        raise ValueError(f"{where}: expected {{'input_ids': [...], 'attention_mask': [...]}}")
    ids, mask = row["input_ids"], row["attention_mask"]
    for name, values in (("input_ids", ids), ("attention_mask", mask)):
        if not isinstance(values, list) or not all(type(v) is int for v in values):
            raise ValueError(f"{where}: {name} is not a list of integers")
        if len(values) != max_tokens:
            raise ValueError(f"{where}: {name} has {len(values)} tokens, the profile's max_tokens is {max_tokens}")
    bad = [v for v in ids if not 0 <= v < vocab_size]
    if bad:
        raise ValueError(f"{where}: token id {bad[0]} outside the {vocab_size}-token vocabulary")
    if any(v not in (0, 1) for v in mask):
        raise ValueError(f"{where}: attention_mask holds values other than 0 and 1")
    return ids, mask


def write_token_file(path: str | Path, rows: dict[str, tuple[list[int], list[int]]]) -> Path:
    """Write ``{id: (input_ids, attention_mask)}`` in the authors' format (atomically)."""
    payload = {song_id: {"input_ids": list(ids), "attention_mask": list(mask)} for song_id, (ids, mask) in rows.items()}
    return atomic_write(path, json.dumps(payload))
