"""Sampling designs: antithetic rows and crossed blocks cancel what they claim to cancel.

A toy late-fusion "model" whose class-0 probability is 0.5 plus main effects, pairwise
interactions inside each modality and audio x text interactions (all in the +-1 coding of
the masks) has known LIME slopes: twice the main effects. Antithetic pairs remove the
pairwise terms from the fit and crossed blocks remove the cross-modal ones, so those designs
recover the slopes almost exactly where i.i.d. rows leave noise.
"""
import numpy as np
import pytest

from utils.musiclime.explainer import explain
from utils.musiclime.sampling import crossed_design, crossed_sizes, sample_crossed_neighbourhood
from utils.musiclime.factorization import SourceSeparationSegments
from utils.musiclime.lyric_features import WordFeatures

SR = 8_000
LYRICS = " ".join(f"word{i}" for i in range(30)) + "\n" + " ".join(f"word{i}" for i in range(0, 30, 3))


def factorization() -> SourceSeparationSegments:
    rng = np.random.default_rng(0)
    stems = {s: (0.1 * rng.standard_normal(2 * SR)).astype(np.float32) for s in ("vocals", "drums", "bass", "other")}
    return SourceSeparationSegments(sum(stems.values()), SR, stems=stems)


class ToyFusion:
    """``p0 = 0.5 + g(a, t)``, ``g`` = main effects + pairwise (in-modality) + audio x text terms.

    Coefficients are scaled so that ``|g| <= 0.45`` for every mask: probabilities stay valid
    without clipping (clipping would add higher-order terms). The interactions vanish at the
    original, so the fit's only other error sources are the ridge penalty and the kernel.
    """

    def __init__(self, n_audio: int, n_text: int, seed: int = 0, cross: bool = True, pairwise: bool = True):
        rng = np.random.default_rng(seed)
        self.main_audio, self.main_text = rng.normal(size=n_audio), rng.normal(size=n_text)
        self.pair_audio = np.triu(rng.normal(size=(n_audio, n_audio)), 1) * pairwise
        self.pair_text = np.triu(rng.normal(size=(n_text, n_text)), 1) * pairwise
        self.cross = rng.normal(size=(n_audio, n_text)) * cross
        # interactions summing to 0: none at the original (all ones), whose row every design contains
        for terms in (self.pair_audio, self.pair_text, self.cross):
            if terms.any():
                terms[terms != 0] -= terms[terms != 0].mean()
        main = np.abs(self.main_audio).sum() + np.abs(self.main_text).sum()
        interactions = np.abs(self.pair_audio).sum() + np.abs(self.pair_text).sum() + np.abs(self.cross).sum()
        self.main_scale = 0.2 / main
        self.interaction_scale = 0.25 / max(interactions, 1e-12)
        self.calls = {"audio_rows": 0, "text_rows": 0}

    def slopes(self) -> np.ndarray:
        """The LIME slopes of class 0 on 0/1 masks: ``2 x`` the +-1 main effects."""
        return 2 * self.main_scale * np.concatenate([self.main_audio, self.main_text])

    def _probabilities(self, audio_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        s, u = 2 * audio_masks - 1, 2 * text_masks - 1
        g = self.main_scale * (s @ self.main_audio + u @ self.main_text)
        g += self.interaction_scale * (np.einsum("ni,ij,nj->n", s, self.pair_audio, s)
                                       + np.einsum("ni,ij,nj->n", u, self.pair_text, u)
                                       + np.einsum("ni,ij,nj->n", s, self.cross, u))
        return np.stack([0.5 + g, 0.5 - g], axis=1)

    def predict_masks(self, audio_masks, text_masks, factorization, text_features):
        self.calls["audio_rows"] += len(audio_masks)
        self.calls["text_rows"] += len(text_masks)
        return self._probabilities(audio_masks, text_masks)

    def predict_crossed(self, audio_masks, text_masks, factorization, text_features, pairs):
        self.calls["audio_rows"] += len(audio_masks)
        self.calls["text_rows"] += len(text_masks)
        audio_index, text_index = pairs
        return self._probabilities(audio_masks[audio_index], text_masks[text_index])


def slope_error(explanation, model: ToyFusion) -> float:
    return float(np.abs(explanation.fit(0).weights - model.slopes()).max() / np.abs(model.slopes()).max())


def test_crossed_design_blocks_and_balance():
    audio_index, text_index = crossed_design(21, 31, 400, seed=3)
    assert audio_index[0] == 0 and text_index[0] == 0
    blocks_a, blocks_t = audio_index[1:].reshape(-1, 4), text_index[1:].reshape(-1, 4)
    # each block: one audio pair (2p+1, 2p+2) crossed with one text pair, all 4 combinations
    assert np.all(blocks_a % 2 == np.array([1, 1, 0, 0])) and np.all(blocks_t % 2 == np.array([1, 0, 1, 0]))
    assert np.all(blocks_a[:, 2] == blocks_a[:, 0] + 1) and np.all(blocks_t[:, 1] == blocks_t[:, 0] + 1)
    # 10 audio pairs x r text pairs, r the smallest giving >= 400 rows: ceil(399 / 40) = 10
    assert len(audio_index) == 1 + 4 * 10 * 10
    assert np.all(np.bincount(audio_index[1:], minlength=21)[1:] == 20)       # every audio mask 20 times
    text_uses = np.bincount(text_index[1:], minlength=15)[1:]
    assert set(text_uses) == {12, 14}              # 100 blocks over 15 text pairs: each pair in 6 or 7 blocks
    assert len(set(zip(audio_index, text_index))) == len(audio_index)       # no pair twice
    # whole grid when asked for more than it has
    audio_index, text_index = crossed_design(5, 7, 10_000, seed=0)
    assert len(audio_index) == 1 + 4 * 3 * 2 and len(set(zip(audio_index, text_index))) == 1 + 4 * 6
    np.testing.assert_array_equal(crossed_design(21, 31, 400, seed=3)[1], crossed_design(21, 31, 400, seed=3)[1])
    with pytest.raises(ValueError, match="odd"):
        crossed_design(20, 15, 100, seed=0)


def test_crossed_sizes_round_to_odd_and_keep_weights_identifiable():
    assert crossed_sizes(5000) == (499, 499)
    assert crossed_sizes(5000, n_features=(40, 36)) == (499, 499)       # a tenth of the i.i.d. passes
    assert crossed_sizes(1000, n_features=(40, 36)) == (161, 145)       # small N: the 4 n + 1 floor
    assert crossed_sizes(200, (12, 9)) == (11, 9)
    with pytest.raises(ValueError, match=">= 3"):
        crossed_sizes(200, (2, 9))


def test_crossed_blocks_cancel_interactions_and_use_few_encoder_passes():
    fac, words = factorization(), WordFeatures(LYRICS)
    model = ToyFusion(fac.n_components, words.n_features)
    crossed = explain(model, fac, words, sample_rate=SR, num_samples=3000, labels=[0], sampling="crossed",
                      crossed_masks=(301, 301), seed=1)
    assert model.calls == {"audio_rows": 301, "text_rows": 301}
    assert crossed.settings["num_samples"] == 1 + 4 * 150 * 5
    iid = explain(ToyFusion(fac.n_components, words.n_features), fac, words, sample_rate=SR, num_samples=3000,
                  batch_size=3000, labels=[0], seed=1)
    crossed_error, iid_error = slope_error(crossed, model), slope_error(iid, model)
    assert crossed_error < 0.01, crossed_error                    # only ridge shrinkage and kernel weights left
    assert iid_error > 5 * crossed_error, (iid_error, crossed_error)


def test_antithetic_rows_cancel_pairwise_interactions():
    fac, words = factorization(), WordFeatures(LYRICS)
    model = ToyFusion(fac.n_components, words.n_features, seed=4)
    antithetic = explain(model, fac, words, sample_rate=SR, num_samples=1001, batch_size=1001, labels=[0],
                         sampling="antithetic", seed=2)
    iid = explain(model, fac, words, sample_rate=SR, num_samples=1001, batch_size=1001, labels=[0], seed=2)
    assert antithetic.settings["sampling"] == "antithetic" and "sampling" not in iid.settings
    antithetic_error, iid_error = slope_error(antithetic, model), slope_error(iid, model)
    assert antithetic_error < 0.03, antithetic_error
    assert iid_error > 5 * antithetic_error, (iid_error, antithetic_error)


def test_crossed_neighbourhood_rows_are_the_design():
    fac, words = factorization(), WordFeatures(LYRICS)
    model = ToyFusion(fac.n_components, words.n_features, cross=False, pairwise=False)
    neighbourhood = sample_crossed_neighbourhood(model, fac, words, num_samples=700, crossed_masks=(161, 121),
                                                 seed=5, sample_rate=SR)
    audio, text = neighbourhood.masks[:, :fac.n_components], neighbourhood.masks[:, fac.n_components:]
    assert np.all(neighbourhood.masks[0] == 1) and neighbourhood.masks.shape[0] == 1 + 4 * 80 * 3
    # within a block the two audio masks are complements, and so are the two text masks
    np.testing.assert_array_equal(audio[1::4] + audio[3::4], 1)
    np.testing.assert_array_equal(text[1::4] + text[2::4], 1)
    np.testing.assert_allclose(neighbourhood.predictions, model._probabilities(audio, text))


def test_compare_sampling_table():
    from types import SimpleNamespace

    from utils.musiclime.song import compare_sampling

    fac, words = factorization(), WordFeatures(LYRICS)
    model = ToyFusion(fac.n_components, words.n_features, seed=6)
    model.reset_counters = lambda: model.calls.update(audio_rows=0, text_rows=0)
    table = compare_sampling(model, fac, words, SimpleNamespace(audio=SimpleNamespace(sample_rate=SR)),
                             num_samples=3000, k=10, class_names=["a", "b"])
    assert list(table["design"]) == ["iid", "antithetic", "crossed"]
    assert list(table["encoder_passes"]) == [6000, 6000, 2 * 299]      # crossed: K = 3000 // 10 -> 299 each
    assert table["rows"].iloc[0] == 3000 and table["overlap_with_first"].iloc[0] == 1.0
    truth = [f.name for f in explain(model, fac, words, sample_rate=SR, num_samples=2, labels=[0]).features]
    original = model._probabilities(np.ones((1, fac.n_components)), np.ones((1, words.n_features)))[0]
    slopes = model.slopes() if original.argmax() == 0 else -model.slopes()    # class 1's slopes are class 0's, negated
    best = {truth[i] for i in np.argsort(-slopes)[:10]}
    assert len(best & set(table["top"].iloc[2])) >= 9                     # crossed finds the true top 10
