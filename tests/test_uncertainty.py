"""How far to trust an explanation: intervals, top-k probabilities, num_samples='auto', kernel option."""
import json
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils.musiclime.adaptive import AutoTarget  # noqa: E402
from utils.musiclime.explainer import explain  # noqa: E402
from utils.musiclime.explanation import Explanation  # noqa: E402
from utils.musiclime.factorization import SourceSeparationSegments  # noqa: E402
from utils.musiclime.records import merge_records  # noqa: E402
from utils.musiclime.sampling import antithetic_groups, sample_masks  # noqa: E402
from utils.musiclime.surrogate import cosine_distances, fit_surrogate, kernel, kernel_distances  # noqa: E402
from utils.musiclime.uncertainty import topk_probabilities, topk_stability  # noqa: E402

SR = 8_000
LYRICS = "the fire burns\nwe dance all night\nthe night is young"


def song():
    t = np.arange(2 * SR) / SR
    stems = {s: (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32)
             for s, f in {"vocals": 440.0, "drums": 1000.0, "bass": 100.0, "other": 2000.0}.items()}
    return SourceSeparationSegments(sum(stems.values()), SR, stems=stems)


class MaskModel:
    """A two-class model of the switch matrices: p0 = clip(base + audio @ a + text @ t + interactions)."""

    def __init__(self, audio_weights, text_weights, interaction=0.0, seed=0, constant=False):
        self.a, self.t = np.asarray(audio_weights, float), np.asarray(text_weights, float)
        self.interaction, self.constant = interaction, constant
        self.pairs = np.random.default_rng(seed).integers(0, len(self.a), size=(30, 3))
        self.calls = 0

    def predict_masks(self, audio_masks, text_masks, factorization, text):
        self.calls += len(audio_masks)
        if self.constant:
            p0 = np.full(len(audio_masks), 0.37)
        else:
            p0 = 0.3 + audio_masks @ self.a + text_masks[:, :len(self.t)] @ self.t
            for i, j, k in self.pairs:        # third-order terms survive antithetic pairing
                p0 = p0 + self.interaction * audio_masks[:, i] * audio_masks[:, j] * (1 - audio_masks[:, k])
            p0 = np.clip(p0, 0.0, 1.0)
        return np.stack([p0, 1 - p0], axis=1)


def easy_model():
    a = np.zeros(40)
    a[:12] = np.linspace(0.12, 0.03, 12)            # a clear ranking, far apart
    return MaskModel(a * 0.6, [0.05, -0.04], interaction=0.01)


def hard_model():
    a = np.zeros(40)
    a[:20] = 0.01 + 0.0004 * np.arange(20)          # twenty near-equal weights around the top-10 boundary
    return MaskModel(a, [0.01, 0.005], interaction=0.04)


# ---------------------------------------------------------------- the surrogate's intervals
def linear_truth(masks, rng_seed=1):
    """A misspecified target: linear + a pairwise and a third-order interaction; its population slopes."""
    beta = np.array([0.10, 0.06, -0.05, 0.03, 0.0, 0.02, -0.01, 0.04])
    y = 0.2 + masks @ beta + 0.3 * masks[:, 0] * masks[:, 1] + 0.4 * masks[:, 2] * masks[:, 3] * masks[:, 4]
    truth = beta.copy()
    truth[[0, 1]] += 0.3 / 2                        # x0 x1 projects onto (x0 + x1) / 2
    truth[[2, 3, 4]] += 0.4 / 4                     # x2 x3 x4 projects onto (x2 + x3 + x4) / 4
    return np.stack([y, 1 - y], axis=1), truth


@pytest.mark.parametrize("antithetic", [False, True])
def test_intervals_cover_the_population_weights(antithetic):
    covered, ratios = [], []
    estimates, ses = [], []
    for seed in range(150):
        masks = sample_masks(301, 8, seed, antithetic=antithetic)
        predictions, truth = linear_truth(masks)
        fit = fit_surrogate(masks, predictions, cosine_distances(masks), 0, random_state=seed,
                            groups=antithetic_groups(301) if antithetic else None)
        covered.append((fit.ci_low <= truth) & (truth <= fit.ci_high))
        estimates.append(fit.weights)
        ses.append(fit.se)
    coverage = float(np.mean(covered))
    assert 0.91 <= coverage <= 0.985, coverage
    ratios = np.mean(ses, axis=0) / np.std(estimates, axis=0)      # the sandwich SE ~ the seed-to-seed spread
    assert np.all((ratios > 0.8) & (ratios < 1.25)), ratios


def test_antithetic_pairs_must_be_clustered():
    """Treating antithetic rows as independent overstates the noise; clustering by pair does not."""
    masks = sample_masks(401, 8, 3, antithetic=True)
    predictions, _ = linear_truth(masks)
    clustered = fit_surrogate(masks, predictions, cosine_distances(masks), 0, groups=antithetic_groups(401))
    naive = fit_surrogate(masks, predictions, cosine_distances(masks), 0)
    np.testing.assert_allclose(clustered.weights, naive.weights)
    assert np.all(clustered.se[:5] < 0.8 * naive.se[:5])


def test_feature_selection_gives_intervals_for_the_reported_columns():
    masks = sample_masks(300, 8, 0)
    predictions, _ = linear_truth(masks)
    fit = fit_surrogate(masks, predictions, cosine_distances(masks), 0, num_features=3)
    assert fit.used.sum() == 3
    assert np.all(fit.se[fit.used] > 0) and np.all(fit.se[~fit.used] == 0)
    assert np.all(fit.topk_probability[~fit.used] == 0)


def test_topk_probabilities_by_monte_carlo():
    weights = np.array([1.0, 0.9, 0.5, 0.49, 0.0])
    sharp = topk_probabilities(weights, np.eye(5) * 1e-8, k=2, seed=0)
    np.testing.assert_allclose(sharp, [1, 1, 0, 0, 0])
    blurred = topk_probabilities(np.array([1.0, 0.5, 0.5]), np.eye(3) * 1e-4, k=2, seed=0)
    assert blurred[0] == 1 and abs(blurred[1] - 0.5) < 0.05 and abs(blurred.sum() - 2) < 1e-12
    np.testing.assert_array_equal(blurred, topk_probabilities(np.array([1.0, 0.5, 0.5]), np.eye(3) * 1e-4, 2, seed=0))
    assert topk_stability(weights, sharp, 2) == 1.0
    assert abs(topk_stability(np.array([1.0, 0.5, 0.5]), blurred, 2) - 0.75) < 0.03


# ---------------------------------------------------------------- explanations
@pytest.fixture(scope="module")
def fac():
    return song()


def test_every_explanation_has_uncertainty_and_round_trips(fac, tmp_path):
    exp = explain(easy_model(), fac, LYRICS, sample_rate=SR, num_samples=400, sampling="antithetic", seed=2)
    fit = exp.fit()
    assert fit.top_k == 10 and fit.confidence == 0.95 and 0 < fit.stability <= 1
    assert np.all(fit.ci_low <= fit.weights) and np.all(fit.weights <= fit.ci_high)
    top = exp.ranked(k=3)
    assert all({"se", "ci_low", "ci_high", "topk_probability"} <= set(row) for row in top)
    assert top[0]["topk_probability"] > 0.99
    back = Explanation.from_json(exp.to_json(tmp_path / "e.json"))
    for name in ("se", "ci_low", "ci_high", "topk_probability"):
        np.testing.assert_array_equal(getattr(back.fit(), name), getattr(fit, name))
    assert back.fit().top_k == 10 and back.fit().stability == fit.stability
    # explanations written before uncertainty existed still load, without it
    data = json.loads(exp.to_json())
    for f in data["fits"]:
        for key in ("se", "ci_low", "ci_high", "topk_probability", "top_k", "confidence"):
            f.pop(key)
    old = Explanation.from_json(json.dumps(data))
    assert not old.fit().has_uncertainty and old.fit().stability is None and "se" not in old.ranked()[0]
    assert "se" not in old.to_record("x")


def test_uncertain_features_are_drawn(fac):
    exp = explain(hard_model(), fac, LYRICS, sample_rate=SR, num_samples=200, seed=0)
    fit = exp.fit()
    flags = fit.uncertain()
    assert flags.any() and not flags.all()
    html = exp.lyrics_html()
    words = [f for f in exp.lyric_features if flags[f.index]]
    assert html.count('class="uncertain"') >= 1 and "underline dotted" in html and "interval contains 0" in html
    assert len(words) >= 1
    bars = exp.plot_top_features(k=5)
    assert any(len(c.get_segments()) == 5 for c in bars.axes[0].collections)     # one error bar per bar
    heat = exp.plot_audio_heatmap()
    hatched = [p for p in heat.axes[0].patches if p.get_hatch() == "///"]
    audio_flags = sum(flags[f.index] for f in exp.audio_features)
    assert len(hatched) == audio_flags > 0


def test_constant_model_warns_and_gives_zero_weights(fac, tmp_path):
    with pytest.warns(UserWarning, match="same for all 300"):
        exp = explain(MaskModel(np.zeros(40), [0.0], constant=True), fac, LYRICS, sample_rate=SR,
                      num_samples=300, seed=0)
    fit = exp.fit()
    for array in (fit.weights, fit.se, fit.ci_low, fit.ci_high):
        assert np.all(array == 0) and not np.isnan(array).any()
    assert fit.label == 1 and fit.local_prediction == pytest.approx(0.63) and np.isfinite(fit.score)
    back = Explanation.from_json(exp.to_json())
    assert np.all(back.fit().se == 0)
    json.dumps(exp.to_record("x"), allow_nan=False)


# ---------------------------------------------------------------- num_samples='auto'
def test_auto_stops_earlier_on_an_easy_model_and_is_seeded(fac):
    target = AutoTarget(stability=0.9, max_samples=6000, batch_rows=200)
    easy = explain(easy_model(), fac, LYRICS, sample_rate=SR, num_samples="auto", auto_target=target, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hard = explain(hard_model(), fac, LYRICS, sample_rate=SR, num_samples="auto", auto_target=target, seed=1)
    assert easy.target_met and easy.adaptive["achieved"] >= 0.9
    assert easy.adaptive["rows"] < hard.adaptive["rows"]
    assert easy.settings["num_samples"] == "auto" and easy.settings["sampling"] == "antithetic"
    assert easy.settings["auto_target"] == {"stability": 0.9, "max_samples": 6000, "batch_rows": 200}
    assert easy.fit().stability == pytest.approx(easy.adaptive["achieved"])
    again = explain(easy_model(), fac, LYRICS, sample_rate=SR, num_samples="auto", auto_target=target, seed=1)
    assert again.adaptive == easy.adaptive
    np.testing.assert_array_equal(again.fit().weights, easy.fit().weights)
    record = easy.to_record("s")
    assert record["adaptive"]["rows"] == easy.adaptive["rows"] and record["settings"]["num_samples"] == "auto"


def test_auto_target_not_met_returns_the_explanation_marked(fac):
    model = hard_model()
    with pytest.warns(UserWarning, match="target not met"):
        exp = explain(model, fac, LYRICS, sample_rate=SR, num_samples="auto", seed=0,
                      auto_target=AutoTarget(stability=0.999, max_samples=400, batch_rows=100))
    assert exp.target_met is False and exp.adaptive["achieved"] < 0.999
    assert exp.adaptive["rows"] <= 400 and model.calls == exp.adaptive["rows"]
    back = Explanation.from_json(exp.to_json())
    assert back.adaptive == exp.adaptive and back.target_met is False


def test_auto_refuses_what_it_cannot_do(fac):
    with pytest.raises(ValueError, match="crossed"):
        explain(easy_model(), fac, LYRICS, sample_rate=SR, num_samples="auto", sampling="crossed")
    with pytest.raises(ValueError, match="'auto'"):
        explain(easy_model(), fac, LYRICS, sample_rate=SR, num_samples="many")
    with pytest.raises(ValueError, match="only used with num_samples='auto'"):
        explain(easy_model(), fac, LYRICS, sample_rate=SR, num_samples=100, auto_target=AutoTarget())
    with pytest.raises(ValueError, match="stability"):
        AutoTarget(stability=1.5)
    with pytest.raises(ValueError, match="max_samples"):
        AutoTarget(max_samples=1)


# ---------------------------------------------------------------- the kernel option
def test_locality_kernel_weights_rows_and_is_recorded(fac, tmp_path):
    masks = sample_masks(500, 40, 0)
    cosine = cosine_distances(masks)
    flat, local = kernel(kernel_distances(cosine, "paper")), kernel(kernel_distances(cosine, "locality"))
    assert flat.min() > 0.999 and local.min() < 0.5 and local[0] == 1
    with pytest.raises(ValueError, match="kernel must be one of"):
        kernel_distances(cosine, "gaussian")

    model = hard_model()
    paper = explain(model, fac, LYRICS, sample_rate=SR, num_samples=300, seed=0)
    locality = explain(model, fac, LYRICS, sample_rate=SR, num_samples=300, seed=0, kernel="locality")
    assert "kernel" not in paper.settings and locality.settings["kernel"] == "locality"
    assert np.max(np.abs(paper.fit().weights - locality.fit().weights)) > 1e-3
    with pytest.raises(ValueError, match="kernel must be one of"):
        explain(model, fac, LYRICS, sample_rate=SR, num_samples=300, kernel="flat")

    # records: a kernel is a run setting; a record without one had the paper's
    old = paper.to_record("a")
    files = []
    for name, record in (("old", old), ("new", locality.to_record("b"))):
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match="kernel='locality'"):
        merge_records(files)
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({**paper.to_record("c"), "settings": {**old["settings"], "kernel": "paper"}}) + "\n")
    assert [r["id"] for r in merge_records([files[0], same])] == ["a", "c"]


def test_kernel_and_auto_are_run_settings():
    from utils.config import get_profile, num_samples_arg
    from utils.musiclime.global_explain import run_settings
    from utils.musiclime.records import settings_conflict

    profile = get_profile("tiny")
    locality = run_settings(profile, "genre", "multimodal", "both", "test", 100, 0, "oracle", kernel="locality")
    paper = run_settings(profile, "genre", "multimodal", "both", "test", 100, 0, "oracle")
    assert locality["kernel"] == "locality" and paper["kernel"] == "paper"
    old = [{"id": "a", "settings": {"num_samples": 100, "seed": 0}}]        # made before the kernel option
    assert settings_conflict(old, paper) is None
    assert "kernel='paper'" in settings_conflict(old, locality)
    auto = run_settings(profile, "genre", "multimodal", "both", "test", "auto", 0, "oracle")
    assert auto["num_samples"] == "auto" and auto["sampling"] == "antithetic"
    assert num_samples_arg("auto") == "auto" and num_samples_arg("300") == 300
    with pytest.raises(Exception, match="int or 'auto'"):
        num_samples_arg("lots")
    with pytest.raises(Exception, match=">= 2"):
        num_samples_arg("1")


def test_benchmark_helpers():
    from utils.musiclime.trust_benchmark import coverage, rows_for_overlap

    assert coverage([0.0, 1.0, 1.9, 2.5]) == 0.75 and coverage([0.5, 1.0], 0.5) == 0.5
    assert rows_for_overlap([1000, 4000], [0.8, 1.0], 0.9) == pytest.approx(2000)
    assert rows_for_overlap([1000, 4000], [0.95, 1.0], 0.9) == 1000
    assert rows_for_overlap([1000, 4000], [0.5, 0.6], 0.9) is None


def test_auto_rows_are_the_antithetic_design_and_the_cache_is_transparent(fac):
    from utils.musiclime.trust_benchmark import CachedPredictor

    target = AutoTarget(stability=0.9, max_samples=3000, batch_rows=200)
    auto = explain(hard_model(), fac, LYRICS, sample_rate=SR, num_samples="auto", auto_target=target, seed=4)
    fixed = explain(hard_model(), fac, LYRICS, sample_rate=SR, num_samples=auto.adaptive["rows"], seed=4,
                    sampling="antithetic")
    np.testing.assert_allclose(auto.fit().weights, fixed.fit().weights, atol=1e-12)
    np.testing.assert_allclose(auto.fit().se, fixed.fit().se, atol=1e-12)

    model = hard_model()
    cached = CachedPredictor(model)
    big = explain(cached, fac, LYRICS, sample_rate=SR, num_samples=600, seed=2)
    small = explain(cached, fac, LYRICS, sample_rate=SR, num_samples=300, seed=2)      # the first 300 rows of big
    assert cached.rows_run == model.calls < 600 + 1
    np.testing.assert_array_equal(small.fit().weights,
                                  explain(hard_model(), fac, LYRICS, sample_rate=SR, num_samples=300,
                                          seed=2).fit().weights)
    assert big.settings["num_samples"] == 600
