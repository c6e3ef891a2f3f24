"""Speed work, correctness only (timings live in ``python -m utils.benchmark``).

Linear-domain features equal ASTFeatureExtractor on the composed waveforms; crossed sampling
gives the model's exact answers with K_a + K_t encoder passes; the authors'-loop baseline
gives the fast path's predictions on the same masks; autocast stays close to fp32.
"""
import dataclasses

import numpy as np
import pytest
import torch

import kaldi_signals
from utils.musiclime.authors_loop import AuthorsLoop
from utils.config import get_profile
from utils.musiclime.explainer import explain
from utils.musiclime.sampling import sample_crossed_neighbourhood, sample_masks
from utils.musiclime.factorization import SourceSeparationSegments, TimeSegments
from utils.musiclime.lyric_features import LineFeatures, WordFeatures
from reference import reference_features
from utils.dataset_related.features import ast_features, find_audio, load_audio
from utils.model_related.models import build_model
from utils.model_related.pipeline import load_splits, prepare_tokens
from utils.musiclime.lyric_tokens import PieceTokenizer, compose_texts
from utils.musiclime.predict import ModelPredictor
from utils.musiclime.separation import OracleSeparator
from utils.musiclime.spectral import SpectralComposer
from utils.musiclime.speed import split_mask_columns


@pytest.fixture(scope="module")
def song(small_corpus):
    profile = get_profile("tiny")
    row = load_splits(small_corpus)["test"].iloc[1]
    waveform = load_audio(find_audio(small_corpus / "audio", row["id"]), 16_000)
    factorization = SourceSeparationSegments(waveform, 16_000, OracleSeparator(small_corpus), track_id=row["id"])
    return profile, prepare_tokens(profile, small_corpus), factorization, WordFeatures(row["lyrics"])


@pytest.fixture(scope="module")
def fusion(song):
    profile, tokens, _, _ = song
    torch.manual_seed(0)
    return build_model("multimodal", profile, 9, vocab_size=len(tokens.tokenizer)).eval()


def special_masks(n_components, rows=8, seed=0):
    """Random 0/1 rows plus the edge cases: all on, all off, one component, float scales."""
    masks = sample_masks(rows, n_components, seed)
    masks[1] = 0
    masks[2] = 0
    masks[2, 5] = 1
    masks[3] = np.random.default_rng(seed).uniform(0, 1.5, n_components)
    return masks


# ---------------------------------------------------------------- linear-domain features
@pytest.mark.parametrize("method", ["table", "gram", "spectra"])
@pytest.mark.parametrize("profile_name", ["tiny", "paper16k"])
def test_linear_domain_features_equal_feature_extractor(song, method, profile_name):
    _, _, factorization, _ = song
    audio = get_profile(profile_name).audio      # paper16k: 128 mel bins, 1024 frames (the 4 s clip is padded)
    masks = special_masks(factorization.n_components)
    waveforms = factorization.compose(masks)
    composer = SpectralComposer(factorization.components_matrix, audio, method=method)
    if method == "table":                        # 0/1 rows are looked up; scaled rows go to the Gram fallback
        assert np.abs(composer(masks[4:]).numpy() - composer(masks)[4:].numpy()).max() < 1e-6
        assert composer._fallback is not None and composer._fallback.method == "gram"
    ours = composer(masks).numpy()
    assert ours.shape == (len(masks), audio.max_length, audio.num_mel_bins)
    reference = np.stack([reference_features(w, audio) for w in waveforms])
    assert np.abs(ours - reference).max() < 1e-3
    assert np.abs(ours - ast_features(waveforms, audio).numpy()).max() < 1e-3
    silence = ours[1, : composer.num_frames]
    assert np.abs(silence - silence[0, 0]).max() == 0          # silence: every bin at the log floor


@pytest.mark.parametrize("method", ["table", "gram", "spectra"])
@pytest.mark.parametrize("rate", sorted(kaldi_signals.RATES))
def test_linear_domain_features_equal_the_torchaudio_kaldi_extractor(method, rate):
    """At the authors' 44.1 kHz (and 16 kHz): ASTFeatureExtractor with torchaudio, from the fixture."""
    references, _ = kaldi_signals.load_reference()
    audio = kaldi_signals.audio_config(rate)
    composer = SpectralComposer(kaldi_signals.components(rate), audio, method=method)
    ours = composer(kaldi_signals.MASKS).numpy()
    reference = references[f"composed@{rate}"]                   # (rows, frames, 128)
    assert composer.num_frames == reference.shape[1]
    assert np.abs(ours[:, : composer.num_frames] - reference).max() < 1e-3
    assert np.all(ours[:, composer.num_frames:] == np.float32(-audio.feature_mean / (2 * audio.feature_std)))


def test_composer_handles_dense_components_and_picks_the_cheaper_method(song):
    profile, _, factorization, _ = song
    composer = SpectralComposer(factorization.components_matrix, profile.audio)
    assert composer.method == "table"                                 # 0/1 masks: feature lookup
    assert SpectralComposer(factorization.components_matrix, profile.audio, method="gram").method == "gram"
    assert set(composer.runs[0][2]) <= {0, 1, 2, 3}                   # segment 0's frames: its own stems only
    assert max(len(comps) for _, _, comps in composer.runs) <= 8      # at most two segments' stems per frame
    # dense components (each spans the whole clip): no table (2**60 cases), and Gram would cost more than
    # the complex product
    dense = np.stack([factorization.stems[s] for s in ("vocals", "drums", "bass", "other")] * 15)
    assert SpectralComposer(dense, profile.audio).method == "spectra"
    segments = TimeSegments(factorization.waveform, 16_000, num_segments=7)   # another factorization
    masks = special_masks(segments.n_components)
    ours = SpectralComposer(segments.components_matrix, profile.audio)(masks).numpy()
    assert np.abs(ours - ast_features(segments.compose(masks), profile.audio).numpy()).max() < 1e-3
    with pytest.raises(ValueError, match="masks must be"):
        composer(np.ones((2, 3)))


def test_predictor_fast_path_uses_linear_domain_features(song, fusion):
    profile, tokens, factorization, words = song
    masks = sample_masks(12, factorization.n_components + words.n_features, 1)
    audio_masks, text_masks = masks[:, :40], masks[:, 40:]
    spectral = ModelPredictor(fusion, profile, tokens, "cpu")
    waveform = ModelPredictor(fusion, profile, tokens, "cpu", features="waveform")
    fast = spectral.predict_masks(audio_masks, text_masks, factorization, words)
    assert spectral._composer is not None and spectral._composer[0] is factorization
    assert waveform._composer is None
    assert np.allclose(fast, waveform.predict_masks(audio_masks, text_masks, factorization, words), atol=1e-4)
    # lyrics-only perturbation: the intact clip goes through the waveform path, no composer is built
    lyrical = ModelPredictor(fusion, profile, tokens, "cpu")
    lyrical.predict_masks(np.ones_like(audio_masks), text_masks, factorization, words)
    assert lyrical._composer is None and lyrical.calls["audio_rows"] == 1


def test_text_composition_and_piece_tokenizer_equal_lime_and_the_tokenizer(song, small_corpus):
    profile, tokens, _, _ = song
    assert PieceTokenizer.supports(tokens.tokenizer)
    pieces = PieceTokenizer(tokens.tokenizer, tokens.max_tokens)
    texts = []
    for lyrics in load_splits(small_corpus)["test"]["lyrics"].iloc[:12]:
        words = WordFeatures(lyrics)
        masks = sample_masks(25, words.n_features, len(texts))
        masks[1] = 0
        composed = compose_texts(words, masks)
        assert composed == words.compose(masks)                    # lime's inverse_removing, vectorised
        texts += composed
        lines = LineFeatures(lyrics)
        line_masks = sample_masks(3, lines.n_features, 0)
        assert compose_texts(lines, line_masks) == lines.compose(line_masks)
        texts.append(" ".join([lyrics] * 4))                      # longer than max_tokens: truncated
    texts += ["", "   ", "\n\n", "don't stop, we'll  go!!\n\t 12 3.5\n", "caf\u00e9\u00a0na\u00efve \u2009x\u3000y",
              "a,\x1cb \x85c\r\nd", "tabs\t\tand  spaces  \n  ", "\U0001f3b8 rock \U0001f3b8\U0001f3b8!"]
    expected = tokens(texts)
    ours = pieces(texts)
    assert torch.equal(ours["input_ids"], expected["input_ids"])
    assert torch.equal(ours["attention_mask"], expected["attention_mask"])
    assert torch.equal(pieces(texts[:7])["input_ids"], expected["input_ids"][:7])   # warm cache, same answers


# ---------------------------------------------------------------- crossed sampling
def test_crossed_sampling_rows_answers_and_encoder_passes(song, fusion):
    profile, tokens, factorization, words = song
    predictor = ModelPredictor(fusion, profile, tokens, "cpu")
    k_text = 4 * words.n_features + 1
    neighbourhood = sample_crossed_neighbourhood(predictor, factorization, words, num_samples=400,
                                                 crossed_masks=(162, k_text), seed=4, sample_rate=16_000)
    masks = neighbourhood.masks                 # K_a = 161: 80 audio pairs x 2 text pairs each, blocks of 4 rows
    assert masks.shape == (1 + 4 * 80 * 2, 40 + words.n_features) and np.all(masks[0] == 1)
    assert len(np.unique(masks, axis=0)) == len(masks)                # distinct pairs
    assert len(np.unique(masks[:, :40], axis=0)) == 161 and len(np.unique(masks[:, 40:], axis=0)) <= k_text
    assert predictor.calls == {"audio_rows": 161, "text_rows": k_text}  # K_a + K_t encoder passes, not 2 x 641
    # the head on pairs gives exactly the model's answers for those rows
    iid = ModelPredictor(fusion, profile, tokens, "cpu").predict_masks(masks[:, :40], masks[:, 40:], factorization, words)
    assert np.allclose(neighbourhood.predictions, iid, atol=1e-5)
    assert np.allclose(neighbourhood.distances[0], 0) and neighbourhood.distances.shape == (len(masks),)
    # same seed, same neighbourhood
    again = sample_crossed_neighbourhood(ModelPredictor(fusion, profile, tokens, "cpu"), factorization, words,
                                         num_samples=400, crossed_masks=(162, k_text), seed=4, sample_rate=16_000)
    assert np.array_equal(again.masks, masks)
    # too few masks to identify 40 audio weights: refused; barely enough: a warning
    with pytest.raises(ValueError, match="K_a .* 19 complementary pairs for 40 features; need K >= 81"):
        sample_crossed_neighbourhood(predictor, factorization, words, num_samples=400, crossed_masks=(39, k_text),
                                     seed=0, sample_rate=16_000)
    with pytest.warns(UserWarning, match="poorly determined"):
        sample_crossed_neighbourhood(predictor, factorization, words, num_samples=400, crossed_masks=(101, k_text),
                                     seed=0, sample_rate=16_000)


def test_explain_crossed_and_its_limits(song, fusion):
    profile, tokens, factorization, words = song
    predictor = ModelPredictor(fusion, profile, tokens, "cpu")
    explanation = explain(predictor, factorization, words, sample_rate=16_000, num_samples=200, sampling="crossed")
    k_text = 4 * words.n_features + 1                  # at small N the floor 4 n + 1 beats N // 10 = 20
    assert explanation.settings["sampling"] == "crossed" and explanation.settings["crossed_masks"] == [161, k_text]
    assert predictor.calls == {"audio_rows": 161, "text_rows": k_text}
    assert len(explanation.features) == 40 + words.n_features
    iid = explain(ModelPredictor(fusion, profile, tokens, "cpu"), factorization, words, sample_rate=16_000,
                  num_samples=50)
    assert "sampling" not in iid.settings                             # i.i.d. records are unchanged
    with pytest.raises(ValueError, match="mode='both'"):
        explain(predictor, factorization, words, sample_rate=16_000, mode="audio", sampling="crossed")
    with pytest.raises(TypeError, match="late-fusion"):
        explain(lambda texts, waves: np.full((len(texts), 2), 0.5), factorization, words, sample_rate=16_000,
                num_samples=20, sampling="crossed")
    audio_only = ModelPredictor(build_model("audio", profile, 9), profile, None, "cpu")
    with pytest.raises(ValueError, match="late-fusion"):
        audio_only.predict_crossed(np.ones((2, 40)), np.ones((2, 3)), factorization, words)
    with pytest.raises(ValueError, match="sampling must be"):
        explain(predictor, factorization, words, sample_rate=16_000, sampling="grid")


# ---------------------------------------------------------------- baseline and autocast
@pytest.mark.parametrize("mode", ["both", "audio", "lyrical"])
def test_authors_loop_gives_the_fast_path_predictions(song, fusion, mode):
    profile, tokens, factorization, words = song
    columns = (40 if mode != "lyrical" else 0) + (words.n_features if mode != "audio" else 0)
    masks = sample_masks(13, columns, 2)                  # 13 rows: one full batch of 10 and a remainder
    loop = AuthorsLoop(fusion, profile, tokens.tokenizer, "cpu")
    slow = loop.predictions(masks, factorization, words, mode)
    fast = ModelPredictor(fusion, profile, tokens, "cpu").predict_masks(
        *split_mask_columns(masks, mode, 40, words.n_features), factorization, words)
    assert slow.shape == fast.shape == (13, 9)
    assert np.abs(slow - fast).max() < 1e-4
    assert loop.timings["features"] > 0 and loop.timings["model"] > 0


def test_authors_loop_computes_the_authors_front_end_at_44k(song, fusion):
    """Without torchaudio the extractor's numpy fallback frames at 16 kHz whatever the rate; the loop
    then computes each sample's features with ast_features (the torchaudio path's numbers)."""
    profile, tokens, _, _ = song
    assert AuthorsLoop(fusion, profile, tokens.tokenizer, "cpu").library_front_end     # 16 kHz: the library's
    profile44 = profile.replace(audio=dataclasses.replace(profile.audio, sample_rate=44_100))
    loop = AuthorsLoop(fusion, profile44, tokens.tokenizer, "cpu")
    wave = kaldi_signals.signal("chirp", 44_100)
    ours = ast_features(wave, profile44.audio)[0].numpy()
    assert np.abs(loop.spectrogram(wave).numpy() - ours).max() < 1e-3
    if not loop.library_front_end:
        fallback = loop.extractor(wave, sampling_rate=44_100, return_tensors="np")["input_values"][0]
        assert np.abs(fallback - ours).max() > 0.1                                 # 400-sample frames: wrong


def test_autocast_is_close_to_fp32(song, fusion):
    profile, tokens, factorization, words = song
    masks = sample_masks(16, 40 + words.n_features, 3)
    fp32 = ModelPredictor(fusion, profile, tokens, "cpu").predict_masks(masks[:, :40], masks[:, 40:], factorization, words)
    bf16 = ModelPredictor(fusion, profile, tokens, "cpu", autocast="bf16").predict_masks(
        masks[:, :40], masks[:, 40:], factorization, words)
    assert bf16.dtype == np.float32 and np.allclose(bf16.sum(1), 1, atol=1e-5)
    assert 0 < np.abs(bf16 - fp32).max() < 0.02                      # different arithmetic, close answers
    with pytest.raises(ValueError, match="autocast"):
        ModelPredictor(fusion, profile, tokens, "cpu", autocast="int8")
