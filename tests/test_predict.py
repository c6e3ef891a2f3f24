import numpy as np
import pytest
import torch

from utils.config import get_profile
from utils.musiclime.explainer import explain
from utils.musiclime.factorization import SourceSeparationSegments
from utils.musiclime.lyric_features import WordFeatures
from utils.dataset_related.features import find_audio, load_audio
from utils.model_related.models import build_model
from utils.model_related.pipeline import load_splits, prepare_tokens
from utils.musiclime.predict import ModelPredictor
from utils.musiclime.separation import OracleSeparator


@pytest.fixture(scope="module")
def song(small_corpus):
    profile = get_profile("tiny")
    frame = load_splits(small_corpus)["test"]
    row = frame.iloc[0]
    waveform = load_audio(find_audio(small_corpus / "audio", row["id"]), 16_000)
    factorization = SourceSeparationSegments(waveform, 16_000, OracleSeparator(small_corpus), track_id=row["id"])
    return profile, prepare_tokens(profile, small_corpus), factorization, WordFeatures(row["lyrics"])


@pytest.mark.parametrize("kind", ["lyrics", "audio", "multimodal"])
def test_fast_path_equals_black_box(song, kind):
    profile, tokens, factorization, words = song
    torch.manual_seed(0)
    predictor = ModelPredictor(build_model(kind, profile, 9, vocab_size=len(tokens.tokenizer)), profile, tokens, "cpu")
    rng = np.random.default_rng(0)
    audio_masks = rng.integers(0, 2, (6, factorization.n_components)).astype(float)
    audio_masks[0] = 1
    text_masks = rng.integers(0, 2, (6, words.n_features)).astype(float)
    fast = predictor.predict_masks(audio_masks, text_masks, factorization, words)
    slow = predictor(words.compose(text_masks), factorization.compose(audio_masks))
    assert fast.shape == (6, 9)
    assert np.allclose(fast, slow, atol=1e-5)
    assert np.allclose(fast.sum(1), 1, atol=1e-5)


def test_intact_modality_is_encoded_once(song):
    profile, tokens, factorization, words = song
    torch.manual_seed(0)
    predictor = ModelPredictor(build_model("multimodal", profile, 9, vocab_size=len(tokens.tokenizer)), profile, tokens, "cpu")
    explain(predictor, factorization, words, sample_rate=16_000, mode="audio", num_samples=200, batch_size=50)
    assert predictor.calls["text_rows"] == 1          # lyrics intact: one encoder pass for 200 samples
    assert predictor.calls["audio_rows"] <= 200
    predictor = ModelPredictor(predictor.model, profile, tokens, "cpu")
    explain(predictor, factorization, words, sample_rate=16_000, mode="lyrical", num_samples=200, batch_size=50)
    assert predictor.calls["audio_rows"] == 1         # audio intact: one pass
    assert predictor.calls["text_rows"] <= 200
    predictor.calls = {"audio_rows": 0, "text_rows": 0}
    explain(predictor, factorization, words, sample_rate=16_000, mode="lyrical", num_samples=200, batch_size=50)
    assert predictor.calls["audio_rows"] == 0         # same song again: its intact audio is still cached


def test_lyrics_model_needs_tokens(song):
    profile, tokens, _, _ = song
    with pytest.raises(ValueError, match="tokens"):
        ModelPredictor(build_model("lyrics", profile, 9, vocab_size=len(tokens.tokenizer)), profile, None)
