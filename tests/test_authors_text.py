"""The authors' text preprocessing (utils.dataset_related.text) wherever the paper profile tokenises:
training texts, MusicLIME's perturbed lyrics on the fast path (PieceTokenizer) and in the authors'
loop, the token window."""
from __future__ import annotations

import dataclasses
import string

import numpy as np
import pytest
import torch

from utils.config import GENRES, get_profile
from utils.dataset_related.text import TokenCache, authors_preprocess, authors_preprocess_sources, train_tokenizer
from utils.model_related.models import build_model
from utils.musiclime.authors_loop import AuthorsLoop
from utils.musiclime.lyric_features import WordFeatures
from utils.musiclime.lyric_tokens import PieceTokenizer, compose_texts
from utils.musiclime.predict import ModelPredictor
from utils.musiclime.sampling import sample_masks

TRICKY = ["", "   ", "\n\n", "Don't STOP, we'll  go!!\n\t 12 3.5\n", "caf\u00e9\u00a0na\u00efve \u2009x\u3000y",
          "a,\x1cb \x85c\r\nd", "tabs\t\tand  spaces  \n  ", "\U0001f3b8 Rock \U0001f3b8\U0001f3b8!",
          "\u0130stanbul \u039f\u0394\u039f\u03a3 co-op -- a - b", "[Chorus]\nOh, oh... (yeah)\n"]


def _their_preprocess(text: str) -> str:
    """The authors' DataPreprocessor.preprocess, as in their Dataset Related notebook."""
    text = text.lower()
    text = text.translate(str.maketrans('', '', string.punctuation))
    text = text.replace('\n', ' ').replace('\t', ' ')
    text = ' '.join(text.split())
    return text


LYRICS = ("I walk ALONE down this road, tonight!\nYou said: \"never leave\" -- me...\n\n"
          "The city-lights are burning; in my eyes?\tWe were young & running free.\n")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [_their_preprocess(LYRICS), LYRICS] * 4 + TRICKY
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=300)


def test_authors_preprocess_is_theirs_and_maps_back_to_the_lyrics():
    for text in TRICKY + [LYRICS]:
        processed = authors_preprocess(text)
        assert processed == _their_preprocess(text)
        sources = authors_preprocess_sources(text)
        assert len(sources) == len(processed) and sources == sorted(sources)
        for char, source in zip(processed, sources):        # (a final sigma lowers by context)
            assert text[source].isspace() if char == " " else char.replace("\u03c2", "\u03c3") in text[source].lower()


def test_the_fast_path_tokenises_the_preprocessed_perturbed_lyrics(tokenizer):
    cache = TokenCache(tokenizer, 24, "authors")
    pieces = PieceTokenizer(tokenizer, 24, cache.preprocess)
    words = WordFeatures(LYRICS)
    texts = compose_texts(words, sample_masks(40, words.n_features, 0)) + TRICKY + [LYRICS * 3]
    expected = tokenizer([_their_preprocess(t) for t in texts], truncation=True, max_length=24,
                         padding="max_length", return_tensors="pt")
    for encoded in (cache(texts), pieces(texts)):
        assert torch.equal(encoded["input_ids"], expected["input_ids"])
        assert torch.equal(encoded["attention_mask"], expected["attention_mask"])
    raw = PieceTokenizer(tokenizer, 24)(texts)                          # without: other tokens
    assert not torch.equal(raw["input_ids"], expected["input_ids"])


def test_the_predictor_fast_path_equals_the_black_box_with_preprocessing(tokenizer):
    tiny = get_profile("tiny")
    profile = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, text_preprocessing="authors",
                                                                  max_tokens=24))
    torch.manual_seed(0)
    model = build_model("lyrics", profile, len(GENRES), vocab_size=len(tokenizer))
    predictor = ModelPredictor(model, profile, TokenCache(tokenizer, 24, "authors"), device="cpu")
    words = WordFeatures(LYRICS)
    masks = sample_masks(30, words.n_features, 1)
    fast = predictor.predict_masks(None, masks, None, words)
    assert predictor._pieces and predictor._pieces.preprocess is authors_preprocess
    slow = predictor(words.compose(masks), None)
    assert np.allclose(fast, slow, rtol=0, atol=1e-6)
    authors = AuthorsLoop(model, profile, tokenizer, "cpu").predictions(masks, None, words, mode="lyrical")
    assert np.allclose(fast, authors, rtol=0, atol=1e-6)           # their loop preprocesses too


def test_the_token_window_is_counted_in_the_raw_lyrics(tokenizer):
    cache = TokenCache(tokenizer, 24, "authors")
    long = LYRICS * 4
    visible = cache.visible_chars(long)
    assert 0 < visible < len(long)
    window = tokenizer(authors_preprocess(long), truncation=True, max_length=24)["input_ids"]
    assert tokenizer.decode(window, skip_special_tokens=True) == authors_preprocess(long[:visible])
    assert cache.visible_chars(LYRICS[:20]) is None
