"""MusicLIME explainer: lime equivalence, end-to-end recovery of planted features, seeds, errors."""
from functools import partial

import numpy as np
import pytest
from lime.lime_base import LimeBase
from sklearn.linear_model import Ridge

from utils.config import STEMS
from utils.musiclime.explainer import explain
from utils.musiclime.sampling import sample_masks, sample_neighbourhood
from utils.musiclime.surrogate import cosine_distances, fit_surrogate, kernel
from utils.musiclime.factorization import SourceSeparationSegments, TimeSegments
from utils.musiclime.lyric_features import WordFeatures

SR = 8_000
SECONDS = 2.0
FREQS = {"vocals": 440.0, "drums": 1000.0, "bass": 100.0, "other": 2000.0}
LYRICS = "the fire burns\nwe dance all night\nthe night is young"


def song():
    """Four sine stems (orthogonal within every segment) and their mix."""
    t = np.arange(int(SECONDS * SR)) / SR
    stems = {s: (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32) for s, f in FREQS.items()}
    return SourceSeparationSegments(sum(stems.values()), SR, stems=stems)


def stem_level(waveforms, factorization, stem="drums", segment=3):
    """Amplitude of ``stem`` in ``segment`` relative to the original (1 on, 0 off)."""
    c = factorization.components[segment * 4 + STEMS.index(stem)]
    t = np.arange(c.start, c.end) / SR
    ref = 0.2 * np.sin(2 * np.pi * FREQS[stem] * t)
    return (waveforms[:, c.start:c.end] @ ref) / (ref @ ref)


def linear_model(factorization):
    """p0 = 0.1 + 0.5 [drums3 on] + 0.3 ['fire' present]; p1 = 1 - p0."""
    def predict(texts, waveforms):
        a = stem_level(waveforms, factorization)
        b = np.array([float("fire" in t.split()) for t in texts])
        p0 = 0.1 + 0.5 * a + 0.3 * b
        return np.stack([p0, 1 - p0], axis=1)
    return predict


def energy_model(factorization):
    """Three classes; class 0's logit grows with the drums3 energy and the word 'fire'."""
    def predict(texts, waveforms):
        energy = stem_level(waveforms, factorization) ** 2
        fire = np.array([float("fire" in t.split()) for t in texts])
        logits = np.stack([3 * energy + 2 * fire, np.ones(len(texts)), np.zeros(len(texts))], axis=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return predict


# ---------------------------------------------------------------- surrogate == lime
def random_neighbourhood(seed=0, n=300, f=25, c=3):
    rng = np.random.default_rng(seed)
    masks = sample_masks(n, f, rng)
    logits = masks @ rng.normal(size=(f, c)) + rng.normal(scale=0.3, size=(n, c))
    predictions = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return masks, predictions, cosine_distances(masks)


@pytest.mark.parametrize("num_features", [100_000, 5])
def test_surrogate_equals_lime_base(num_features):
    masks, predictions, distances = random_neighbourhood()
    ours = fit_surrogate(masks, predictions, distances, 1, num_features=num_features)
    base = LimeBase(partial(kernel, kernel_width=25.0))
    intercept, pairs, score, local = base.explain_instance_with_data(
        masks, predictions, distances, 1, num_features, feature_selection="auto",
        model_regressor=Ridge(alpha=1, fit_intercept=True))
    assert len(pairs) == min(num_features, 25) == ours.used.sum()
    for feature, weight in pairs:
        assert abs(ours.weights[feature] - weight) < 1e-8
    assert abs(ours.intercept - intercept) < 1e-8 and abs(ours.score - score) < 1e-8
    assert abs(ours.local_prediction - local[0]) < 1e-8


def test_surrogate_is_weighted_ridge_in_closed_form():
    masks, predictions, distances = random_neighbourhood(seed=3)
    fit = fit_surrogate(masks, predictions, distances, 2)
    w = np.sqrt(np.exp(-distances ** 2 / 25.0 ** 2))
    x_mean, y_mean = np.average(masks, axis=0, weights=w), np.average(predictions[:, 2], weights=w)
    xc, yc = masks - x_mean, predictions[:, 2] - y_mean
    coef = np.linalg.solve(xc.T @ (w[:, None] * xc) + np.eye(masks.shape[1]), xc.T @ (w * yc))
    np.testing.assert_allclose(fit.weights, coef, atol=1e-8)
    assert abs(fit.intercept - (y_mean - x_mean @ coef)) < 1e-8
    assert abs(fit.local_prediction - (fit.intercept + coef.sum())) < 1e-8


def test_distances_and_kernel():
    masks = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(cosine_distances(masks), [0, 1 - 2 / (2 * np.sqrt(2)), 1, 1 - 1 / 2], atol=1e-12)
    np.testing.assert_allclose(kernel(np.array([0.0, 1.0, 25.0])), [1, np.exp(-0.5 / 625), np.exp(-0.5)])


def test_masks_are_seeded_uniform_with_row_zero_ones():
    a, b, c = sample_masks(500, 30, 7), sample_masks(500, 30, 7), sample_masks(500, 30, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a[0] == 1) and set(np.unique(a)) == {0.0, 1.0}
    assert abs(a[1:].mean() - 0.5) < 0.02


def test_antithetic_masks_come_in_complementary_pairs():
    for rows in (9, 10):
        masks = sample_masks(rows, 30, 7, antithetic=True)
        assert masks.shape == (rows, 30) and np.all(masks[0] == 1) and set(np.unique(masks)) == {0.0, 1.0}
        for first in range(1, rows - 1, 2):
            np.testing.assert_array_equal(masks[first] + masks[first + 1], np.ones(30))
        np.testing.assert_array_equal(masks, sample_masks(rows, 30, 7, antithetic=True))
    assert not np.array_equal(masks[-1] + masks[-2], np.ones(30))   # even count: the last row is unpaired
    np.testing.assert_array_equal(sample_masks(50, 30, 7), sample_masks(50, 30, 7, antithetic=False))


# ---------------------------------------------------------------- end to end
def test_linear_model_weights_are_recovered():
    fac = song()
    exp = explain(linear_model(fac), fac, LYRICS, sample_rate=SR, num_samples=400, labels=[0], seed=1)
    names = [f.name for f in exp.features]
    assert names[:40] == fac.names and len(names) == 40 + WordFeatures(LYRICS).n_features
    fit = exp.fit(0)
    weights = dict(zip(names, fit.weights))
    assert weights["drums3"] == pytest.approx(0.5, abs=0.01)
    assert weights["fire"] == pytest.approx(0.3, abs=0.01)
    others = [abs(w) for n, w in weights.items() if n not in ("drums3", "fire")]
    assert max(others) < 0.01
    assert fit.score > 0.999 and fit.local_prediction == pytest.approx(0.9, abs=0.01)
    np.testing.assert_allclose(exp.probabilities, [0.9, 0.1], atol=1e-6)


def test_planted_energy_and_word_rank_first():
    fac = song()
    exp = explain(energy_model(fac), fac, LYRICS, sample_rate=SR, num_samples=300, seed=0,
                  class_names=["a", "b", "c"])
    assert exp.labels == [0]                                          # default: the predicted class
    top = [r["name"] for r in exp.ranked(k=2)]
    assert set(top) == {"drums3", "fire"}
    assert exp.ranked(k=1, modality="audio")[0]["name"] == "drums3"
    assert exp.ranked(k=1, modality="lyrics")[0]["name"] == "fire"


def test_time_segments_find_the_segment():
    fac = song()
    time_fac = TimeSegments(fac.waveform, SR, num_segments=10)
    exp = explain(linear_model(fac), time_fac, LYRICS, sample_rate=SR, num_samples=200, labels=[0],
                  mode="audio")
    assert exp.ranked(k=1)[0]["name"] == "segment3"
    assert exp.ranked(k=1)[0]["weight"] == pytest.approx(0.5, abs=0.02)     # ridge shrinks by ~1/(1+4/n)


def test_same_seed_is_bit_identical_and_another_seed_differs():
    fac = song()
    run = partial(explain, energy_model(fac), fac, LYRICS, sample_rate=SR, num_samples=120, top_labels=2)
    a, b, c = run(seed=5), run(seed=5), run(seed=6)
    for label in a.labels:
        np.testing.assert_array_equal(a.fit(label).weights, b.fit(label).weights)
        assert a.fit(label).intercept == b.fit(label).intercept and a.fit(label).score == b.fit(label).score
    assert a.to_json() == b.to_json()
    assert not np.array_equal(a.fit(0).weights, c.fit(0).weights)
    n1 = sample_neighbourhood(energy_model(fac), fac, WordFeatures(LYRICS), sample_rate=SR, num_samples=50, seed=5)
    n2 = sample_neighbourhood(energy_model(fac), fac, WordFeatures(LYRICS), sample_rate=SR, num_samples=50, seed=6)
    assert not np.array_equal(n1.masks, n2.masks)


def test_top_labels_order_by_probability():
    fac = song()
    exp = explain(energy_model(fac), fac, LYRICS, sample_rate=SR, num_samples=50, top_labels=3)
    assert exp.labels == list(np.argsort(exp.probabilities)[::-1]) == exp.top_labels


# ---------------------------------------------------------------- modes, batches, hook
class Recorder:
    def __init__(self, factorization):
        self.model = linear_model(factorization)
        self.texts, self.waveforms, self.batches = [], [], []

    def __call__(self, texts, waveforms):
        assert isinstance(texts, list) and waveforms.dtype == np.float32 and waveforms.ndim == 2
        self.texts += texts
        self.waveforms.append(waveforms.copy())
        self.batches.append(len(texts))
        return self.model(texts, waveforms)


def test_audio_mode_keeps_lyrics_intact():
    fac = song()
    rec = Recorder(fac)
    exp = explain(rec, fac, LYRICS, sample_rate=SR, mode="audio", num_samples=25, batch_size=10, labels=[0])
    assert rec.batches == [10, 10, 5]
    assert set(rec.texts) == {LYRICS}
    assert [f.modality for f in exp.features] == ["audio"] * 40
    n = sample_neighbourhood(rec, fac, None, sample_rate=SR, mode="audio", num_samples=25, batch_size=10)
    np.testing.assert_allclose(np.concatenate(rec.waveforms[-3:]), fac.compose(n.masks), atol=1e-6)  # float32 products of other batch shapes
    assert set(rec.texts[-25:]) == {""}                               # no lyrics at all: empty texts


def test_lyrical_mode_keeps_audio_intact():
    fac = song()
    rec = Recorder(fac)
    exp = explain(rec, fac, LYRICS, sample_rate=SR, mode="lyrical", num_samples=30, batch_size=7, labels=[0])
    waves = np.concatenate(rec.waveforms)
    assert waves.shape == (30, fac.length)
    assert np.all(waves == fac.compose(np.ones((1, 40)))[0])
    assert [f.modality for f in exp.features] == ["lyrics"] * WordFeatures(LYRICS).n_features
    assert rec.texts[0] == LYRICS and len(set(rec.texts)) > 10
    assert exp.ranked(k=1)[0]["name"] == "fire"
    none = explain(lambda texts, waves: rec.model(texts, np.zeros((len(texts), fac.length), np.float32)),
                   None, LYRICS, mode="lyrical", num_samples=30, labels=[0])
    assert none.ranked(k=1)[0]["name"] == "fire"


def test_both_mode_columns_are_audio_then_words():
    fac = song()
    rec = Recorder(fac)
    words = WordFeatures(LYRICS)
    n = sample_neighbourhood(rec, fac, words, sample_rate=SR, num_samples=40, batch_size=40, seed=3)
    assert n.masks.shape == (40, 40 + words.n_features) and (n.n_audio, n.n_text) == (40, words.n_features)
    np.testing.assert_array_equal(rec.waveforms[0], fac.compose(n.masks[:, :40]))
    assert rec.texts == words.compose(n.masks[:, 40:])
    np.testing.assert_array_equal(n.distances, cosine_distances(n.masks))


class MaskModel:
    """An adapter with the fast path: it gets masks, never waveforms."""

    def __init__(self, factorization):
        self.model = linear_model(factorization)
        self.calls = 0

    def __call__(self, texts, waveforms):
        raise AssertionError("the explainer must use predict_masks when present")

    def predict_masks(self, audio_masks, text_masks, factorization, text_features):
        self.calls += 1
        return self.model(text_features.compose(text_masks), factorization.compose(audio_masks))


def test_predict_masks_hook_gives_the_same_explanation():
    fac = song()
    hooked = MaskModel(fac)
    a = explain(hooked, fac, LYRICS, sample_rate=SR, num_samples=60, batch_size=16, labels=[0], seed=2)
    b = explain(linear_model(fac), fac, LYRICS, sample_rate=SR, num_samples=60, batch_size=16, labels=[0], seed=2)
    assert hooked.calls == 4
    np.testing.assert_array_equal(a.fit(0).weights, b.fit(0).weights)


# ---------------------------------------------------------------- bad input
def test_bad_settings_are_refused():
    fac = song()
    model = linear_model(fac)
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        explain(model, fac, LYRICS, sample_rate=SR, num_samples=1)
    with pytest.raises(ValueError, match="mode"):
        explain(model, fac, LYRICS, sample_rate=SR, mode="video")
    with pytest.raises(ValueError, match="sample_rate= .* is required"):
        explain(model, fac, LYRICS)
    with pytest.raises(ValueError, match="sample_rate=16000"):
        explain(model, fac, LYRICS, sample_rate=16_000)
    with pytest.raises(ValueError, match="needs a factorization"):
        explain(model, None, LYRICS, mode="both")
    for lyrics in ("", "fire", "fire, fire!"):
        for mode in ("both", "lyrical"):
            with pytest.raises(ValueError, match="at least 2"):
                explain(model, fac, lyrics, sample_rate=SR, mode=mode, num_samples=10)
    explain(model, fac, "", sample_rate=SR, mode="audio", num_samples=10)     # audio mode needs no lyrics
    with pytest.raises(ValueError, match="top_labels"):
        explain(model, fac, LYRICS, sample_rate=SR, top_labels=0)
    with pytest.raises(TypeError, match="seed"):
        explain(model, fac, LYRICS, sample_rate=SR, seed=1.5)


def test_label_outside_the_classes_fails_after_the_first_batch():
    fac = song()
    rec = Recorder(fac)
    with pytest.raises(ValueError, match="labels contains 5, outside the model's 2 classes"):
        explain(rec, fac, LYRICS, sample_rate=SR, labels=[5], num_samples=100, batch_size=10)
    assert len(rec.batches) == 1
    with pytest.raises(ValueError, match="labels contains 3"):
        explain(rec, fac, LYRICS, sample_rate=SR, labels=[3], class_names=["a", "b"], num_samples=100)
    with pytest.raises(ValueError, match="top_labels=4 exceeds"):
        explain(rec, fac, LYRICS, sample_rate=SR, top_labels=4, num_samples=10)
    with pytest.raises(ValueError, match="class_names has 3 names"):
        explain(rec, fac, LYRICS, sample_rate=SR, class_names=["a", "b", "c"], num_samples=10)


@pytest.mark.parametrize("output, match", [
    (lambda n: np.full((n,), 0.5), "shape"),
    (lambda n: np.full((n + 1, 2), 0.5), "shape"),
    (lambda n: np.full((n, 2), 1.0), "sum to 1"),
    (lambda n: np.tile([1.5, -0.5], (n, 1)), "negative"),
    (lambda n: np.tile([np.nan, 0.5], (n, 1)), "NaN"),
    (lambda n: np.ones((n, 1)), "2 classes"),
])
def test_bad_model_output_is_refused(output, match):
    fac = song()
    with pytest.raises(ValueError, match=match):
        explain(lambda texts, waves: output(len(texts)), fac, LYRICS, sample_rate=SR, num_samples=10)


def test_model_output_with_changing_class_count_is_refused():
    fac = song()
    calls = []

    def flaky(texts, waves):
        calls.append(1)
        k = 2 if len(calls) == 1 else 3
        return np.full((len(texts), k), 1 / k)

    with pytest.raises(ValueError, match=r"expected \(10, 2\)"):
        explain(flaky, fac, LYRICS, sample_rate=SR, num_samples=20, batch_size=10)
