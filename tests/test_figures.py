"""The paper's figures (utils.results.figures, utils.results.word_maps).

The figure tests draw from small pickles in the authors' published format written by
tests/published_fixtures.py (fixture ``published_fixture``) and compare every drawn value with
the values the fixture chose. The tests marked ``published`` check the figures against the
authors' real aggregates from $MUSICLIME_PUBLISHED_DIR (skipped when it is unset).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from published_fixtures import class_index  # noqa: E402
from utils.musiclime.aggregate import AUDIO_FEATURE, measures, merge_word_variants  # noqa: E402
from utils.config import STEMS  # noqa: E402
from utils.results import (PAPER_HEATMAP_STEMS, audio_matrix, hashing_embeddings, heatmap_matrix,  # noqa: E402
                           load_published, plot_audio_heatmap, plot_heatmap_and_word_bars, plot_modality_shares,
                           plot_stem_shares, plot_top_features, plot_word_map, project_2d,
                           regenerate_paper_figures, resolve_class, select_class_words, top_features)

POP_VOCALS = [0.073, 0.055, 0.058, 0.051, 0.064, 0.065, 0.067, 0.044, 0.056, 0.061]
ANGRY_OTHER = [0.057, 0.037, 0.032, 0.027, 0.025, 0.018, 0.025, 0.031, 0.038, 0.054]

PAPER_FIGURES = {"genre__audio__global_heatmap_pop_AVG.png", "genre__audio__global_heatmap_hip_hop_AVG.png",
                 "emotion__audio__global_heatmap_Angry_AVG.png", "genre__multimodal__barplot_pop_AVG.png",
                 "genre__multimodal__heatmapandbarplot_hip_hop_AVG.png",
                 "audioset__multimodal_heatmapandbarplot_hip_hop_AVG.png", "genre_multimodal__modality_share.png",
                 "genre_audio__stem_share.png", "genre__hiphop_vs_heavy.png"}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _table(source, key: str, merge=None):
    weights, counts, names = load_published(key, source)
    if merge is not None:
        weights, counts = merge_word_variants(weights, counts, merge)
    return measures(weights, counts, names)


def _texts(fig, axis: int = 0) -> list[str]:
    return [t.get_text() for t in fig.axes[axis].texts]


def _grid(averages: dict[str, float], stems=STEMS) -> np.ndarray:
    """The stems x 10 grid of chosen averages (0 where a component was never kept)."""
    return np.array([[averages.get(f"{stem}{k}", 0.0) for k in range(10)] for stem in stems])


def _ranked(averages: dict[str, float], words_only: bool = False) -> list[str]:
    """Features by value (descending), ties by name: the order of utils.results.figures.top_features."""
    names = [f for f in averages if not (words_only and AUDIO_FEATURE.match(f))]
    return sorted(names, key=lambda f: (-averages[f], f))


# ---------------------------------------------------------------- on the fixture (always run)
def test_genre_pop_heatmap_draws_the_written_values(published_fixture, tmp_path):
    pop = class_index("genre_audio", "pop")
    chosen = published_fixture.pairs["genre_audio"].averages[pop]
    table = _table(published_fixture.directory, "genre_audio")
    matrix = heatmap_matrix(table, "pop")
    assert matrix.shape == (4, 10)
    assert np.allclose(matrix, _grid(chosen), rtol=1e-12, atol=0)
    vocals = [round(chosen[f"vocals{k}"], 3) for k in range(10)]
    assert np.round(matrix[STEMS.index("vocals")], 3).tolist() == vocals
    assert np.array_equal(heatmap_matrix(table, pop), matrix)           # class index 5 == pop
    paper_rows = heatmap_matrix(table, "pop", stems=PAPER_HEATMAP_STEMS)
    assert np.array_equal(paper_rows[1], matrix[STEMS.index("bass")])
    fig = plot_audio_heatmap(table, "pop", stems=PAPER_HEATMAP_STEMS, save_path=tmp_path / "pop.png")
    texts = _texts(fig)
    assert texts == [format(v, ".2g") for v in _grid(chosen, PAPER_HEATMAP_STEMS).ravel()]
    assert texts[13] == "0.0087"                                        # bass3: two significant digits
    assert fig.axes[0].get_title() == "Feature Weights Heatmap for pop"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["vocals", "bass", "drums", "other"]
    assert (tmp_path / "pop.png").stat().st_size > 10_000


def test_emotion_angry_heatmap_draws_the_written_values(published_fixture):
    angry = class_index("emotion_audio", "Angry")
    chosen = published_fixture.pairs["emotion_audio"].averages[angry]
    table = _table(published_fixture.directory, "emotion_audio")
    matrix = heatmap_matrix(table, angry)
    expected = _grid(chosen)[STEMS.index("other")]
    assert np.allclose(matrix[STEMS.index("other")], expected, rtol=1e-12, atol=0)
    fig = plot_audio_heatmap(table, "Angry", fmt=".3f")
    assert _texts(fig)[30:40] == [f"{v:.3f}" for v in expected]


def test_multimodal_hip_hop_figures_draw_the_written_values(published_fixture):
    directory = published_fixture.directory
    hip_hop = class_index("audioset_multimodal", "hip hop")
    chosen = published_fixture.pairs["audioset_multimodal"].averages[hip_hop]
    table = _table(directory, "audioset_multimodal")
    fig = plot_heatmap_and_word_bars(table, "hip hop", stems=PAPER_HEATMAP_STEMS, display_name="hip_hop",
                                     merge_words="none")     # the published AudioSet bars are unmerged
    assert _texts(fig) == [format(v, ".2g") for v in _grid(chosen, PAPER_HEATMAP_STEMS).ravel()]
    words = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert words == _ranked(chosen, words_only=True)[:20]
    assert np.allclose([p.get_width() for p in fig.axes[1].patches], [chosen[w] for w in words], rtol=1e-12)
    assert fig.axes[1].get_title() == "Top 20 Word Feature Weights for hip_hop"

    pair = published_fixture.pairs["genre_multimodal"]
    hip_hop = class_index("genre_multimodal", "hip hop")
    m4a = _table(directory, "genre_multimodal")
    matrix = heatmap_matrix(m4a, "hip hop", stems=PAPER_HEATMAP_STEMS)
    assert pair.absent[hip_hop]
    assert np.allclose(matrix, _grid(pair.averages[hip_hop], PAPER_HEATMAP_STEMS), rtol=1e-12, atol=0)
    for name in pair.absent[hip_hop]:                                   # never kept -> 0
        stem, segment = AUDIO_FEATURE.match(name).groups()
        assert matrix[PAPER_HEATMAP_STEMS.index(stem), int(segment)] == 0.0
    # merging case variants: I_AVG = (W1 + W2) / (C1 + C2)
    weights, counts = pair.weights[hip_hop], pair.counts[hip_hop]
    sums: dict[str, list[float]] = {}
    for word in weights:
        if not AUDIO_FEATURE.match(word):
            total = sums.setdefault(word.lower(), [0.0, 0])
            total[0] += weights[word]
            total[1] += counts[word]
    merged_values = {w: s / c for w, (s, c) in sums.items()}
    merged = _table(directory, "genre_multimodal", merge=str.lower)
    top = top_features(merged, "hip hop", 20, modality="lyrics")
    assert top["feature"].tolist() == _ranked(merged_values)[:20]
    assert np.allclose(top["I_AVG"], [merged_values[w] for w in top["feature"]], rtol=1e-12)
    love = merged[(merged["class"] == "hip hop") & (merged["feature"] == "love")]
    both = (weights["love"] + weights["Love"]) / (counts["love"] + counts["Love"])
    assert love["I_AVG"].item() == pytest.approx(both, rel=1e-12)
    assert "Love" not in set(merged["feature"])


def test_top_mixed_features_pop_draws_the_written_values(published_fixture):
    pop = class_index("genre_multimodal", "pop")
    chosen = published_fixture.pairs["genre_multimodal"].averages[pop]
    table = _table(published_fixture.directory, "genre_multimodal")
    fig = plot_top_features(table, "pop", top_k=30, merge_words="none")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == _ranked(chosen)[:30]
    assert any(AUDIO_FEATURE.match(f) for f in labels) and not all(AUDIO_FEATURE.match(f) for f in labels)
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert np.allclose(widths, [chosen[f] for f in labels], rtol=1e-12)
    assert fig.axes[0].get_title() == "Feature Weights for pop"


def test_regenerate_paper_figures_on_the_fixture(published_fixture, tmp_path):
    paths = regenerate_paper_figures(published_fixture.directory, tmp_path, genre_classes=["pop", "hip hop"],
                                     emotion_classes=["Angry"], progress=False)
    names = [p.name for p in paths]
    assert len(names) == len(set(names)) == 17
    assert PAPER_FIGURES <= set(names)
    assert all(p.parent == tmp_path and p.stat().st_size > 5_000 for p in paths)


# ---------------------------------------------------------------- small hand-made tables
SMALL = {0: {"vocals0": 0.4, "drums9": 0.2, "love": 0.3, "night": 0.1},
         1: {"bass3": 0.5, "love": 0.1, "fire": 0.6}}
SMALL_COUNTS = {0: {"vocals0": 2, "drums9": 1, "love": 1, "night": 1}, 1: {"bass3": 1, "love": 1, "fire": 2}}


def test_small_table_values_and_errors():
    table = measures(SMALL, SMALL_COUNTS, ["calm", "loud"])
    expected = np.zeros((4, 10))
    expected[0, 0], expected[1, 9] = 0.2, 0.2
    assert np.allclose(heatmap_matrix(table, "calm"), expected)
    with pytest.raises(ValueError, match="unknown class 'jazz'"):
        heatmap_matrix(table, "jazz")
    with pytest.raises(ValueError, match="class index 7"):
        plot_audio_heatmap(table, 7)
    with pytest.raises(ValueError, match="segment 9 is beyond the 5-segment grid"):
        heatmap_matrix(table, "calm", num_segments=5)
    with pytest.raises(ValueError, match="'love' is not an audio component"):
        audio_matrix({"vocals0": 1.0, "love": 2.0})
    with pytest.raises(ValueError, match="no audio features"):
        plot_audio_heatmap(measures({0: {"love": 1.0}}, {0: {"love": 1}}, ["calm"]), "calm")
    with pytest.raises(ValueError, match="empty"):
        resolve_class(table.iloc[0:0], "calm")
    with pytest.raises(ValueError, match="no lyrics features"):
        plot_heatmap_and_word_bars(measures({0: {"bass1": 1.0}}, {0: {"bass1": 1}}, ["calm"]), "calm")
    fig = plot_modality_shares(table)
    heights = [p.get_height() for p in fig.axes[0].patches]
    # audio share calm = 0.6 / 1.0, loud = 0.5 / 1.2 (W sums)
    assert heights[:2] == pytest.approx([0.6, 0.5 / 1.2])
    fig = plot_stem_shares(table)
    assert len(fig.axes[0].patches) == 8


def test_word_maps(tmp_path):
    table = measures(SMALL, SMALL_COUNTS, ["calm", "loud"])
    words = select_class_words(table, top_k=2, value="I_AVG")
    # calm: love 0.3, night 0.1 ; loud: fire 0.3, love 0.1 -> love goes to calm (higher)
    assert sorted(zip(words["word"], words["class"])) == [("fire", "loud"), ("love", "calm"), ("night", "calm")]
    embeddings = {"love": [1.0, 0.0, 0.0], "night": [0.0, 1.0, 0.0], "fire": [0.0, 0.0, 1.0]}
    fig = plot_word_map(table, embeddings, top_k=2, value="I_AVG", save_path=tmp_path / "map.png")
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["fire", "love", "night"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["calm", "loud"]
    assert (tmp_path / "map.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no embedding for lemmas \\['night'\\]"):
        plot_word_map(table, {"love": [1, 0], "fire": [0, 1]}, top_k=2, value="I_AVG")
    first = hashing_embeddings(["love", "lover", "fire"])
    again = hashing_embeddings(["fire", "love", "lover"])
    assert all(np.array_equal(first[w], again[w]) for w in first)
    assert first["love"] @ first["lover"] > first["love"] @ first["fire"]
    vectors = np.random.default_rng(0).normal(size=(6, 8))
    assert np.array_equal(project_2d(vectors, "tsne", seed=3), project_2d(vectors, "tsne", seed=3))
    assert project_2d(vectors, "pca").shape == (6, 2)
