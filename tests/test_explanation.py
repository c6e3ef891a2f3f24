"""The explanation object: ranking, tables, JSON, records, listening, HTML lyrics, figures."""
import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils.config import STEMS  # noqa: E402
from utils.musiclime.explainer import explain  # noqa: E402
from utils.musiclime.explanation import Explanation, Feature, SurrogateFit  # noqa: E402
from utils.musiclime.factorization import SourceSeparationSegments, TimeSegments  # noqa: E402

SR = 8_000
FREQS = {"vocals": 440.0, "drums": 1000.0, "bass": 100.0, "other": 2000.0}
LYRICS = "the fire <burns> & glows\nwe dance all night\nthe night is cold"


def song():
    t = np.arange(2 * SR) / SR
    stems = {s: (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32) for s, f in FREQS.items()}
    return SourceSeparationSegments(sum(stems.values()), SR, stems=stems)


def level(waveforms, fac, name):
    c = fac.components[fac.names.index(name)]
    ref = 0.2 * np.sin(2 * np.pi * FREQS[c.stem] * np.arange(c.start, c.end) / SR)
    return (waveforms[:, c.start:c.end] @ ref) / (ref @ ref)


def model(fac):
    """p0 = 0.3 + 0.3 drums3 + 0.15 bass7 - 0.12 vocals0 + 0.2 fire - 0.07 cold (a known linear truth)."""
    def predict(texts, waves):
        words = [set(t.split()) for t in texts]
        p0 = (0.3 + 0.3 * level(waves, fac, "drums3") + 0.15 * level(waves, fac, "bass7")
              - 0.12 * level(waves, fac, "vocals0")
              + 0.2 * np.array([float("fire" in w) for w in words])
              - 0.07 * np.array([float("cold" in w) for w in words]))
        return np.stack([p0, 1 - p0], axis=1)
    return predict


@pytest.fixture(scope="module")
def fac():
    return song()


@pytest.fixture(scope="module")
def exp(fac):
    return explain(model(fac), fac, LYRICS, sample_rate=SR, num_samples=400, labels=[0, 1], seed=0,
                   class_names=["rock", "pop"])


def test_ranked_orders_by_weight(exp):
    rows = exp.ranked(0)
    assert [r["name"] for r in rows[:3]] == ["drums3", "fire", "bass7"]
    assert [r["name"] for r in rows[-2:]] == ["cold", "vocals0"]
    weights = [r["weight"] for r in rows]
    assert weights == sorted(weights, reverse=True)
    assert [r["name"] for r in exp.ranked(1)[:2]] == ["vocals0", "cold"]   # p1 = 1 - p0 flips the signs
    assert [r["name"] for r in exp.ranked(0, order="abs")[:4]] == ["drums3", "fire", "bass7", "vocals0"]
    assert all(r["weight"] > 0 for r in exp.ranked(0, positive_only=True))
    lyric_rows = exp.ranked(0, modality="lyrics")
    assert lyric_rows[0]["name"] == "fire" and {r["modality"] for r in lyric_rows} == {"lyrics"}
    r = exp.ranked(0, k=1)[0]
    assert (r["modality"], r["stem"], r["segment"], r["start_seconds"], r["end_seconds"]) == \
        ("audio", "drums", 3, pytest.approx(0.6), pytest.approx(0.8))
    assert exp.ranked(0, k=1, modality="lyrics")[0]["text"] == "fire"
    with pytest.raises(KeyError, match="not explained"):
        exp.ranked(2)


def test_to_frame(exp):
    frame = exp.to_frame()
    n = len(exp.features)
    assert len(frame) == 2 * n
    assert {"label", "label_name", "rank", "name", "modality", "stem", "segment", "text", "weight",
            "intercept", "score", "local_prediction"} <= set(frame.columns)
    first = frame[frame.label == 0].iloc[0]
    assert (first["name"], first["label_name"], first["rank"]) == ("drums3", "rock", 0)
    assert frame[frame.label == 1].iloc[0]["label_name"] == "pop"
    assert len(exp.to_frame(1)) == n


def test_json_round_trip_is_exact(exp, fac, tmp_path):
    text = exp.to_json(tmp_path / "e.json")
    back = Explanation.from_json(text)
    again = Explanation.from_json(tmp_path / "e.json", factorization=fac)
    for other in (back, again):
        assert other.features == exp.features and other.labels == exp.labels
        for label in exp.labels:
            np.testing.assert_array_equal(other.fit(label).weights, exp.fit(label).weights)
            np.testing.assert_array_equal(other.fit(label).used, exp.fit(label).used)
            assert other.fit(label).intercept == exp.fit(label).intercept
            assert other.fit(label).score == exp.fit(label).score
        np.testing.assert_array_equal(other.probabilities, exp.probabilities)
        assert other.settings == exp.settings and other.lyrics == LYRICS and other.class_names == ["rock", "pop"]
    assert again.to_json() == text
    with pytest.raises(ValueError, match="format"):
        Explanation.from_json(json.dumps({"format": "other"}))
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        Explanation.from_json(tmp_path / "nothere.json")


def test_record_for_global_aggregation(exp):
    record = exp.to_record("song42")
    assert set(record) == {"id", "label", "probabilities", "weights", "modality", "settings",
                           "se", "ci_low", "ci_high", "topk_probability", "top_k", "confidence"}
    assert set(record["se"]) == set(record["weights"]) and record["top_k"] == 10
    assert record["ci_low"]["drums3"] < record["weights"]["drums3"] < record["ci_high"]["drums3"]
    assert record["id"] == "song42" and record["label"] == 0
    assert record["probabilities"] == pytest.approx(list(exp.probabilities))
    assert record["weights"]["drums3"] == pytest.approx(0.3, abs=0.01)
    assert record["weights"]["fire"] == pytest.approx(0.2, abs=0.01)
    assert len(record["weights"]) == len(exp.features)
    assert record["modality"]["drums3"] == "audio" and record["modality"]["fire"] == "lyrics"
    assert record["settings"]["num_samples"] == 400 and record["settings"]["label_name"] == "rock"
    assert record["settings"]["separator"] == "precomputed"
    json.dumps(record)                                                # plain JSON types only
    assert exp.to_record("x", label=1)["label"] == 1


def test_record_refuses_name_clash():
    feats = [Feature(0, "drums0", "audio", "drums", 0), Feature(1, "drums0", "lyrics", text="drums0")]
    fit = SurrogateFit(0, 0.0, np.array([0.1, 0.2]), np.array([True, True]), 1.0, 0.3)
    clash = Explanation(feats, {0: fit}, np.array([0.5, 0.5]), mode="both", lyrics="drums0 x")
    with pytest.raises(ValueError, match="drums0"):
        clash.to_record("a")


def test_listen_top_positive_audio_and_complement(exp, fac):
    sounds = exp.listen(0, k=2)
    top_mask = np.zeros(40)
    top_mask[[fac.names.index("drums3"), fac.names.index("bass7")]] = 1
    np.testing.assert_allclose(sounds["top"], fac.compose(top_mask[None])[0], atol=1e-7)
    np.testing.assert_allclose(sounds["complement"], fac.compose(1 - top_mask[None])[0], atol=1e-7)
    assert np.max(np.abs(sounds["top"] + sounds["complement"] - fac.waveform)) < 1e-5
    players = exp.audio_players(0, k=2)
    assert set(players) == {"top", "complement"} and type(players["top"]).__name__ == "Audio"
    lone = Explanation.from_json(exp.to_json())
    with pytest.raises(ValueError, match="factorization"):
        lone.listen(0)
    with pytest.raises(ValueError, match="do not match"):
        lone.attach_factorization(TimeSegments(fac.waveform, SR))


SPAN = re.compile(r'rgba\(([^)]*)\)" title="[^"]*">([^<]*)</span>')


def test_lyrics_html_shades_and_escapes(exp):
    page = exp.lyrics_html(0)
    assert "&lt;" in page and "&amp;" in page and "<burns>" not in page
    colour = {word: rgba for rgba, word in SPAN.findall(page)}
    assert colour["fire"] == "0, 160, 0, 1.000"                         # the strongest lyric weight
    assert colour["cold"].startswith("220, 0, 0, 0.3")                   # about -0.07 / 0.2
    assert page.count(">night</span>") == 2                             # every occurrence is shaded
    flipped = {word: rgba for rgba, word in SPAN.findall(exp.lyrics_html(1))}
    assert flipped["fire"] == "220, 0, 0, 1.000"


def test_figures(exp, tmp_path):
    grid, rows = exp.audio_weight_grid(0)
    assert rows == list(STEMS) and grid.shape == (4, 10)
    assert grid[1, 3] == exp.fit(0).weights[exp.factorization.names.index("drums3")]
    fig = exp.plot_audio_heatmap(0, save_path=tmp_path / "figs" / "heat.png")
    assert isinstance(fig, matplotlib.figure.Figure) and (tmp_path / "figs" / "heat.png").stat().st_size > 0
    fig2 = exp.plot_top_features(0, k=5, save_path=tmp_path / "bars.png")
    bars = fig2.axes[0].patches
    assert len([b for b in bars if b.get_height() > 0.5]) == 5
    assert sorted(round(b.get_width(), 6) for b in bars if b.get_height() > 0.5) == \
        sorted(round(r["weight"], 6) for r in exp.ranked(0, k=5, order="abs"))
    assert (tmp_path / "bars.png").is_file()
    plt.close("all")


def test_time_segments_and_lyrical_explanations(fac):
    time_fac = TimeSegments(fac.waveform, SR, num_segments=10)
    audio = explain(model(fac), time_fac, None, sample_rate=SR, mode="audio", num_samples=60, labels=[0])
    grid, rows = audio.audio_weight_grid()
    assert rows == ["mix"] and grid.shape == (1, 10)
    assert audio.lyrics_html() == "<div></div>"
    lyrical = explain(model(fac), fac, LYRICS, sample_rate=SR, mode="lyrical", num_samples=60, labels=[0],
                      text_unit="lines")
    assert [f.name for f in lyrical.features] == LYRICS.split("\n")
    assert lyrical.ranked(k=1)[0]["name"] == "the fire <burns> & glows"
    assert "&lt;burns&gt;" in lyrical.lyrics_html()
    with pytest.raises(ValueError, match="no audio features"):
        lyrical.listen()
    with pytest.raises(ValueError, match="no audio features"):
        lyrical.plot_audio_heatmap()
    plt.close("all")
