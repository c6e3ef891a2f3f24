"""Faithfulness metrics, the other explainers and the comparison, on toy models with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from utils.musiclime.baselines import kernel_shap_weights, occlusion_weights, random_weights
from utils.musiclime.compare import (METHODS, Method, UnsupportedExplainer, check_supported, compare_song,
                                     comparison_table, explain_accepts, paired_differences, planted_hits,
                                     runnable_methods, table_markdown)
from utils.musiclime.factorization import TimeSegments
from utils.musiclime.faithfulness import (MaskedModel, aopc, curve_masks, faithfulness, ranking, seed_stability,
                                          summarise_faithfulness, top_k_overlap)
from utils.musiclime.lyric_features import WordFeatures

RATE = 16000
WEIGHTS = np.array([0.30, 0.0, 0.12, 0.02, 0.20, 0.0, 0.05, 0.01])   # 5 audio segments + 3 words


class Additive:
    """A two-class model whose class-1 probability is ``0.1 + WEIGHTS . switches`` (additive, in [0.1, 0.8])."""

    kind = "multimodal"

    def __init__(self, weights=WEIGHTS, square=False):
        self.weights, self.square = np.asarray(weights), square

    def predict_masks(self, audio_masks, text_masks, factorization, text):
        switches = np.hstack([audio_masks, text_masks])
        p = 0.1 + switches @ self.weights
        if self.square:                          # not additive: an interaction of features 0 and 4
            p = 0.1 + 0.7 * switches[:, 0] * switches[:, 4]
        return np.stack([1 - p, p], axis=1)


def _song():
    waveform = np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1
    return TimeSegments(waveform, RATE, num_segments=5), WordFeatures("thunder road night thunder")


def test_masked_model_columns_and_counts():
    factorization, words = _song()
    model = MaskedModel(Additive(), factorization, words, batch_size=3)
    assert model.n_features == 8 and model.names[:2] == ["segment0", "segment1"] and model.names[5:] == words.names
    out = model(np.ones((7, 8)))
    assert out.shape == (7, 2) and model.rows == 7
    assert out[0, 1] == pytest.approx(0.1 + WEIGHTS.sum())
    with pytest.raises(ValueError, match="0/1"):
        model(np.full((1, 8), 0.5))


def test_curves_and_aopc_by_hand():
    masks = curve_masks([2, 0, 1], 3, "deletion")
    assert masks.tolist() == [[1, 1, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert curve_masks([2, 0, 1], 3, "insertion", steps=1).tolist() == [[0, 0, 0], [0, 0, 1]]
    assert aopc([0.9, 0.5, 0.2, 0.1], "deletion") == pytest.approx((0 + 0.4 + 0.7 + 0.8) / 4)
    assert aopc([0.1, 0.5, 0.6, 0.9], "insertion") == pytest.approx((0 + 0.4 + 0.5 + 0.8) / 4)
    assert ranking([0.1, 0.5, 0.5, -1]).tolist() == [1, 2, 0, 3]
    with pytest.raises(ValueError, match="permutation"):
        curve_masks([0, 0, 1], 3, "deletion")


def test_true_ranking_beats_random_and_reversed():
    factorization, words = _song()
    model = MaskedModel(Additive(), factorization, words)
    true = faithfulness(model, WEIGHTS, 1, random_count=5, seed=0)
    reversed_ = faithfulness(model, -WEIGHTS, 1, random_count=0)
    assert true.deletion_aopc > true.random_deletion_aopc > reversed_.deletion_aopc
    assert true.insertion_aopc > true.random_insertion_aopc > reversed_.insertion_aopc
    # the additive model's deletion curve: p drops by each removed weight, in ranked order
    assert true.deletion[:3] == pytest.approx([0.8, 0.5, 0.3])
    assert true.model_rows == 2 * 6 * 9
    summary = summarise_faithfulness([true, true])
    assert summary["deletion_aopc_mean"] == pytest.approx(true.deletion_aopc)
    assert summary["deletion_aopc_over_random_mean"] > 0 and summary["songs"] == 2


def test_occlusion_exact_on_additive_model():
    factorization, words = _song()
    model = MaskedModel(Additive(), factorization, words)
    np.testing.assert_allclose(occlusion_weights(model, 8, 1), WEIGHTS, atol=1e-12)
    assert model.rows == 9
    # and blind to an interaction: removing 0 or 4 alone drops all of it, each gets the full 0.7
    model = MaskedModel(Additive(square=True), factorization, words)
    np.testing.assert_allclose(occlusion_weights(model, 8, 1), [0.7, 0, 0, 0, 0.7, 0, 0, 0], atol=1e-12)


def test_kernel_shap_recovers_linear_weights_and_is_seeded():
    factorization, words = _song()
    model = MaskedModel(Additive(), factorization, words)
    values = kernel_shap_weights(model, 8, 1, num_samples=300, seed=0, batch_size=64)
    np.testing.assert_allclose(values, WEIGHTS, atol=1e-6)       # Shapley values of a linear model
    assert model.rows == 300
    other = kernel_shap_weights(MaskedModel(Additive(square=True), factorization, words), 8, 1, num_samples=200,
                                seed=3)
    again = kernel_shap_weights(MaskedModel(Additive(square=True), factorization, words), 8, 1, num_samples=200,
                                seed=3)
    np.testing.assert_array_equal(other, again)
    assert other[0] == pytest.approx(0.35, abs=0.05) and other[4] == pytest.approx(0.35, abs=0.05)


def test_stability_and_random_weights():
    assert top_k_overlap([3, 2, 1, 0], [3, 1, 2, 0], k=2) == 0.5
    assert seed_stability([[3, 2, 1, 0]] * 3, k=2) == 1.0
    np.testing.assert_array_equal(random_weights(5, 1), random_weights(5, 1))
    with pytest.raises(ValueError, match="at least 2"):
        seed_stability([[1, 2]])


def test_unsupported_explainer_names_method_and_model():
    crossed = next(m for m in METHODS if m.key == "musiclime_crossed")

    class AudioOnly:
        kind = "audio"

        def predict_masks(self, *args):
            raise AssertionError("never called")

    with pytest.raises(UnsupportedExplainer, match=r"MusicLIME crossed.*audio model"):
        check_supported(crossed, AudioOnly(), "audio")
    with pytest.raises(UnsupportedExplainer, match=r"MusicLIME crossed.*multimodal model"):
        check_supported(crossed, Additive(), "both")            # no predict_crossed: not late fusion
    notes = []
    kept = runnable_methods([crossed, METHODS[0]], AudioOnly(), "audio", skip_unsupported=True, log=notes.append)
    assert kept == [METHODS[0]] and "does not support" in notes[0]
    factorization, words = _song()
    with pytest.raises(UnsupportedExplainer):
        compare_song(AudioOnly(), factorization, words, [crossed], mode="audio")


def test_explain_accepts_options_by_signature():
    def old_explain(predict_fn, factorization, lyrics, *, num_samples: int = 1000, sampling: str = "iid"):
        return None

    def new_explain(predict_fn, factorization, lyrics, *, num_samples: int | str = 1000, kernel: str = "paper"):
        return None

    assert explain_accepts({"sampling": "antithetic"}, old_explain) is None
    assert "kernel" in explain_accepts({"kernel": "locality"}, old_explain)
    assert "auto" in explain_accepts({"num_samples": "auto"}, old_explain)
    assert explain_accepts({"num_samples": "auto", "kernel": "locality"}, new_explain) is None

    def documented_explain(predict_fn, *, num_samples: int = 1000, feature_selection: str = "auto"):
        """Explain.

        num_samples : int or 'auto'
            Rows.
        """

    assert explain_accepts({"num_samples": "auto"}, documented_explain) is None
    documented_explain.__doc__ = "num_samples : int\n    Rows.\nfeature_selection : 'auto'"
    assert "auto" in explain_accepts({"num_samples": "auto"}, documented_explain)
    with pytest.raises(ValueError, match="explainer must be"):
        Method("x", "x", "lime")


def test_compare_song_on_toy_model():
    factorization, words = _song()
    methods = [m for m in METHODS if m.key in ("musiclime_iid", "musiclime_antithetic", "kernelshap", "occlusion",
                                               "random")]
    cues = [{"modality": "audio", "component": "segment4"}, {"modality": "lyrics", "word": "ROAD"}]
    records = compare_song(Additive(), factorization, words, methods, num_samples=200, seeds=(0, 1),
                           batch_size=50, sample_rate=RATE, cues=cues)
    by_method = {r["method"]: r for r in records}
    assert by_method["occlusion"]["hits"] == [True, False]     # top 3: segment0, segment4, segment2; 'road' 4th
    assert by_method["occlusion"]["model_calls"] == 9 and by_method["random"]["model_calls"] == 0
    assert by_method["kernelshap"]["model_calls"] == 200 == by_method["musiclime_iid"]["model_calls"]
    assert by_method["occlusion"]["stability"] == 1.0
    for key in ("musiclime_iid", "musiclime_antithetic", "kernelshap", "occlusion"):
        assert by_method[key]["deletion_aopc"] > by_method["random"]["deletion_aopc"]
    assert by_method["musiclime_iid"]["label"] == 1
    table = comparison_table(records)
    assert table["method"].tolist()[0] == "MusicLIME i.i.d. (paper)" and table["songs"].tolist() == [1] * 5
    assert table.set_index("method").loc["occlusion (leave one out)", "planted_top3"] == 0.5
    assert "| MusicLIME antithetic |" in table_markdown(table)
    paired = paired_differences(records).set_index(["method", "metric"])
    random_gap = paired.loc[("random ranking", "deletion_aopc")]
    assert random_gap["difference"] == pytest.approx(by_method["random"]["deletion_aopc"]
                                                     - by_method["kernelshap"]["deletion_aopc"])
    assert random_gap["ahead"] == 0 and random_gap["songs"] == 1
    assert paired_differences([r for r in records if r["method"] != "kernelshap"]).empty
    assert planted_hits([0, 1, 2], ["a", "b", "Word"], ["audio", "audio", "lyrics"],
                        [{"modality": "lyrics", "word": "word"}], k=1) == [True]


def test_compare_command_on_a_small_corpus(small_corpus, tmp_path, capsys):
    import torch

    from utils.compare import main
    from utils.config import GENRES, get_profile
    from utils.model_related.models import build_model, save_model

    run_dir = tmp_path / "runs"
    torch.manual_seed(0)
    save_model(build_model("audio", get_profile("tiny"), 9), run_dir / "genre" / "audio" / "best", task="genre",
               class_names=list(GENRES), profile="tiny")
    common = ["--corpus-dir", str(small_corpus), "--run-dir", str(run_dir), "--kind", "audio", "--songs", "1",
              "--num-samples", "30", "--seeds", "2", "--batch-size", "64", "--out", str(tmp_path / "out")]
    assert main(common + ["--methods", "musiclime_crossed", "occlusion"]) == 2
    error = capsys.readouterr().err
    assert "MusicLIME crossed" in error and "audio model" in error and not (tmp_path / "out").exists()
    assert main(common + ["--methods", "musiclime_antithetic", "occlusion", "random"]) == 0
    table = (tmp_path / "out" / "comparison.csv").read_text()
    assert "MusicLIME antithetic" in table and "occlusion" in table and "KernelSHAP" not in table
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 0
    assert "| random ranking | " in (tmp_path / "out" / "comparison.md").read_text()
    # auto N with the command's target: it stops at its cap here (a random model never settles)
    assert main(common + ["--methods", "musiclime_auto", "--auto-stability", "0.99", "--auto-max-samples", "60",
                          "--out", str(tmp_path / "auto")]) == 0
    text = (tmp_path / "auto" / "comparison.md").read_text()
    assert "auto N: stability 0.99, at most 60 rows" in text
    auto_row = next(line for line in text.splitlines() if line.startswith("| MusicLIME auto N |"))
    assert 50 <= int(auto_row.split("|")[-4]) <= 60           # model calls: up to the cap (antithetic pairs)


class WaveAndWords:
    """A black box on raw inputs: class-1 evidence is the energy of the first 0.2 s plus 0.1 per 'road'."""

    def __call__(self, texts, waveforms):
        energy = np.asarray([float(np.mean(w[:RATE // 5] ** 2)) for w in waveforms]) * 50
        roads = np.asarray([t.lower().split().count("road") for t in texts], dtype=float)
        p = np.clip(0.1 + energy + 0.1 * roads, 0, 0.95)
        return np.stack([1 - p, p], axis=1)


def test_masked_model_composes_as_the_explainer_does():
    from utils.musiclime.explainer import explain
    from utils.musiclime.faithfulness import explanation_faithfulness
    from utils.musiclime.sampling import sample_masks, sample_neighbourhood

    factorization, words = _song()
    for mode, n in (("both", 8), ("audio", 5), ("lyrical", 3)):
        neighbourhood = sample_neighbourhood(WaveAndWords(), factorization, words, mode=mode, num_samples=40,
                                             batch_size=7, seed=4, sample_rate=RATE)
        np.testing.assert_array_equal(neighbourhood.masks, sample_masks(40, n, 4))
        masked = MaskedModel(WaveAndWords(), factorization, words, mode=mode, batch_size=9)
        np.testing.assert_allclose(masked(neighbourhood.masks), neighbourhood.predictions, atol=1e-12)
    explanation = explain(WaveAndWords(), factorization, words, sample_rate=RATE, num_samples=300, seed=0)
    result = explanation_faithfulness(WaveAndWords(), explanation, factorization, words, random_count=2)
    assert result.label == 1 and result.deletion_aopc > result.random_deletion_aopc
    with pytest.raises(ValueError, match="features"):
        explanation_faithfulness(WaveAndWords(), explanation, factorization, WordFeatures("road night"))
