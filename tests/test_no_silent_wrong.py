"""No silent wrong explanation: audio the model would not hear as assumed is refused, lyrics past
the token window are left out with a warning, and degenerate surrogate settings are caught.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.config import GENRES, STEMS, get_profile
from utils.model_related.inputs import prepare_tokens
from utils.model_related.models import build_model
from utils.musiclime.explainer import explain
from utils.musiclime.factorization import SourceSeparationSegments, TimeSegments
from utils.musiclime.lyric_features import LineFeatures, WordFeatures
from utils.musiclime.lyric_tokens import compose_texts
from utils.musiclime.predict import ModelPredictor
from utils.musiclime.separation import check_waveform
from utils.musiclime.surrogate import fit_surrogate

PROFILE = get_profile("tiny")
RATE = PROFILE.audio.sample_rate


def _stems(seconds, rate=RATE, seed=0):
    rng = np.random.default_rng(seed)
    return {s: (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32) for s in STEMS}


class Box:
    """A black box that says what it expects, as ModelPredictor does."""

    sample_rate, clip_length = RATE, PROFILE.clip_length

    def __call__(self, texts, waveforms):
        energy = np.asarray(waveforms, dtype=np.float64)[:, :RATE].std(axis=1) if len(waveforms[0]) else \
            np.zeros(len(texts))
        p = 1 / (1 + np.exp(-(10 * energy - 0.5)))
        return np.stack([p, 1 - p], axis=1)


def test_integer_pcm_is_rescaled_and_loud_floats_warned():
    wave = (0.5 * np.sin(np.linspace(0, 200, 8_000))).astype(np.float32)
    for dtype, scale in ((np.int16, 2 ** 15), (np.int32, 2 ** 31), (np.int8, 2 ** 7)):
        pcm = np.round(wave * (scale - 1)).astype(dtype)
        np.testing.assert_allclose(check_waveform(pcm), wave, atol=2 / scale)
    unsigned = np.round(wave * 127 + 128).astype(np.uint8)
    np.testing.assert_allclose(check_waveform(unsigned), wave, atol=2 / 128)
    with pytest.raises(TypeError, match="uint16"):
        check_waveform(np.zeros(10, np.uint16))
    stems = {s: np.round(v * 2 ** 15).astype(np.int16) for s, v in _stems(1.0).items()}
    mix = sum(v.astype(np.int32) for v in stems.values()).clip(-2 ** 15, 2 ** 15 - 1).astype(np.int16)
    assert float(np.abs(SourceSeparationSegments(mix, RATE, stems=stems).waveform).max()) <= 1.0
    with pytest.warns(UserWarning, match="integer PCM stored as float"):
        check_waveform(wave * 27_852)


def test_factorization_at_another_rate_or_longer_than_the_input_is_refused():
    slow = TimeSegments(_stems(2.0, 22_050)["vocals"], 22_050)
    for rate in (None, 22_050):                 # whether or not sample_rate is passed
        with pytest.raises(ValueError, match="22050 Hz but the model's rate is 16000 Hz"):
            explain(Box(), slow, None, sample_rate=rate, mode="audio", num_samples=50)
    long = TimeSegments(_stems(40.0)["vocals"], RATE)
    with pytest.raises(ValueError, match="40.00 s long but the model's input is 4 s"):
        explain(Box(), long, None, mode="audio", num_samples=50)
    fits = TimeSegments(_stems(4.0)["vocals"], RATE)
    assert explain(Box(), fits, None, mode="audio", num_samples=50).settings["sample_rate"] == RATE
    predictor = ModelPredictor(build_model("audio", PROFILE, len(GENRES)), PROFILE)
    assert (predictor.sample_rate, predictor.clip_length) == (RATE, 64_000)
    with pytest.raises(ValueError, match="40.00 s long"):
        explain(predictor, long, None, mode="audio", num_samples=50)


def test_degenerate_surrogate_settings():
    fac = TimeSegments(_stems(4.0)["vocals"], RATE)
    for width in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="kernel_width must be a positive number"):
            explain(Box(), fac, None, mode="audio", num_samples=50, kernel_width=width)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="kernel_width"):
        fit_surrogate(rng.integers(0, 2, (20, 5)).astype(float), rng.random((20, 2)), rng.random(20), 0,
                      kernel_width=0.0)
    for rows in (2, 9):
        with pytest.warns(UserWarning, match=f"num_samples={rows} rows for 10 features"):
            explain(Box(), fac, None, mode="audio", num_samples=rows)


def test_windowed_word_and_line_features_compose_the_same_texts():
    lyrics = "fire fire night\nrain on the road\nfire again at dawn\nlast line here"
    cut = lyrics.index("again")                           # visible: up to "fire " of line 3
    words = WordFeatures(lyrics, visible_chars=cut)
    assert "again" not in words.names and "fire" in words.names and words.excluded == ["again", "at", "dawn",
                                                                                      "last", "line", "here"]
    masks = np.random.default_rng(0).integers(0, 2, (20, words.n_features))
    assert compose_texts(words, masks) == words.compose(masks)
    off_fire = np.ones((1, words.n_features), int)
    off_fire[0, words.names.index("fire")] = 0
    assert words.compose(off_fire)[0] == "  night\nrain on the road\n again at dawn\nlast line here"
    assert [f for _, f in words.spans() if f is not None] and all(
        f is None for piece, f in words.spans() if piece in ("again", "dawn"))
    lines = LineFeatures(lyrics, visible_chars=cut)
    assert lines.names == ["fire fire night", "rain on the road", "fire again at dawn"]
    assert lines.excluded == ["last line here"]
    assert lines.compose(np.array([[0, 1, 1]]))[0] == "rain on the road\nfire again at dawn\nlast line here"


@pytest.fixture(scope="module")
def tokens(small_corpus):
    return prepare_tokens(PROFILE, small_corpus)


def test_words_past_the_token_window_are_left_out_with_a_warning(tokens):
    torch.manual_seed(0)
    predictor = ModelPredictor(build_model("lyrics", PROFILE, len(GENRES), vocab_size=len(tokens.tokenizer)),
                               PROFILE, tokens, device="cpu")
    short = "love in the night\nwe dance"
    assert predictor.visible_chars(short) is None
    lyrics = " ".join(f"w{i}" for i in range(400))            # far past the 96-token window
    visible = predictor.visible_chars(lyrics)
    assert 0 < visible < len(lyrics)
    seen = tokens.tokenizer(lyrics[:visible])["input_ids"]
    assert len(seen) <= PROFILE.model.max_tokens
    with pytest.warns(UserWarning, match="past the model's token window"):
        exp = explain(predictor, None, lyrics, mode="lyrical", num_samples=60, batch_size=60)
    names = {f.name for f in exp.features}
    assert names and all(lyrics.index(name + " ") < visible for name in names)
    assert "w399" not in names
    with pytest.warns(UserWarning, match="kept as features"):
        kept = explain(predictor, None, lyrics, mode="lyrical", num_samples=60, batch_size=60,
                       words_past_window="keep")
    assert len(kept.features) == 400 > len(exp.features)
