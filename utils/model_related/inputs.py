"""What the models are fed: the profile's tokenizer and the split datasets.

* :func:`prepare_tokens` -- the lyrics tokenizer in a :class:`~utils.dataset_related.text.TokenCache`
  (what the lyrics and fusion models, and the MusicLIME predictor, encode lyrics with);
* :func:`make_datasets` -- one :class:`~utils.dataset_related.splits.SongDataset` per split,
  with the AST features of audio-reading kinds computed first.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from utils.config import Profile
from utils.dataset_related.extract import extract_features
from utils.dataset_related.splits import SongDataset
from utils.dataset_related.text import TOKEN_FILE, TokenCache, read_token_file


def prepare_tokens(profile: Profile, corpus_dir: str | Path, *, seed: int = 0) -> TokenCache:
    """The profile's tokenizer (see :func:`utils.dataset_related.extract.resolve_tokenizer`) in a :class:`TokenCache`.

    ``tokenizer_source == 'corpus'`` trains one on the training lyrics once and keeps it in
    ``<corpus_dir>/tokenizer``; anything else is a hub id or a local directory. Sequences are
    cut at ``profile.model.max_tokens`` tokens; every text is preprocessed first as
    ``profile.model.text_preprocessing`` says (the paper profile: the authors' preprocessing).

    A corpus imported from the authors' release carries their ``tokenized_texts.json``: with a
    tokenizer that is not corpus-trained (the paper profile's ``roberta-large``, the one that
    made those ids) the songs' tokens are taken from it as they are (:meth:`TokenCache.songs`),
    checked against the tokenizer's vocabulary and ``max_tokens`` (errors name the id).
    """
    from utils.dataset_related.extract import resolve_tokenizer

    tokenizer = resolve_tokenizer(profile, corpus_dir, seed=seed)
    given, token_file = None, Path(corpus_dir) / TOKEN_FILE
    if profile.model.tokenizer_source != "corpus" and token_file.is_file():
        given = read_token_file(token_file, len(tokenizer), profile.model.max_tokens)
    return TokenCache(tokenizer, profile.model.max_tokens, profile.model.text_preprocessing, given=given,
                      given_source=str(token_file))


def make_datasets(frames: dict[str, pd.DataFrame], corpus_dir: str | Path, profile: Profile, task: str, kind: str,
                  tokens: TokenCache) -> dict[str, SongDataset]:
    """One dataset per split in ``frames`` for a ``kind`` model on ``task``.

    For ``'audio'`` and ``'multimodal'`` the songs' AST features (``<corpus>/features/<id>.npy``)
    are computed first where missing.
    """
    if kind in ("audio", "multimodal"):
        for frame in frames.values():
            extract_features(corpus_dir, frame["id"], profile, pad=False, skip_bad=False, show_progress=False)
    return {split: SongDataset(frame, corpus_dir, profile, task, kind, tokens=tokens) for split, frame in frames.items()}
