"""Checks of the authors' REAL published aggregates, read from $MUSICLIME_PUBLISHED_DIR.

The whole module is skipped (one skip, with its reason) when the variable is unset; every other
test of the loader and the figures runs on pickles the tests write themselves
(tests/published_fixtures.py). CI's second pass runs these:
``MUSICLIME_PUBLISHED_DIR=<dir of the pickles> python -m pytest -q -m published``.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from published_fixtures import AUTHORS_GLOBALS, PUBLISHED_DIR_ENV, SKIP_REASON  # noqa: E402
from test_figures import ANGRY_OTHER, PAPER_FIGURES, POP_VOCALS, _table, _texts  # noqa: E402
from test_published import _file_names, _globals_in, _opcodes  # noqa: E402
from utils.results import published  # noqa: E402
from utils.config import STEMS  # noqa: E402
from utils.results.figures import (PAPER_HEATMAP_STEMS, heatmap_matrix, plot_audio_heatmap,  # noqa: E402
                           plot_heatmap_and_word_bars, plot_top_features, regenerate_paper_figures)
from utils.main import main  # noqa: E402
from utils.results.published import (PUBLISHED_PAIRS, TASK_CLASSES, load_published, load_published_pair,  # noqa: E402
                                     load_published_table)

if not os.environ.get(PUBLISHED_DIR_ENV, "").strip():
    pytest.skip(SKIP_REASON, allow_module_level=True)

pytestmark = pytest.mark.published


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_allow_list_covers_exactly_what_the_pickles_reference(real_published_dir, published_fixture):
    referenced = set()
    for name in _file_names():
        real = _globals_in(real_published_dir / name)
        referenced |= real
        # the fixture writes each file in the same format: protocol, globals, opcodes
        assert _globals_in(published_fixture.directory / name) == real, name
        assert _opcodes(published_fixture.directory / name) == _opcodes(real_published_dir / name), name
    assert referenced == AUTHORS_GLOBALS
    assert referenced <= set(published.ALLOWED_GLOBALS)


def test_all_pairs_load_as_plain_dicts(real_published_dir):
    for key, pair in PUBLISHED_PAIRS.items():
        weights, counts, names = load_published(key, real_published_dir)
        assert names == TASK_CLASSES[pair.task]
        assert type(weights) is dict and set(weights) <= set(range(len(names))), key
        for cls in weights:
            assert type(cls) is int
            assert set(weights[cls]) == set(counts[cls])
            for feature, value in weights[cls].items():
                assert type(feature) is str and type(value) is float and value >= 0
                assert type(counts[cls][feature]) is int and counts[cls][feature] >= 1


def test_checked_values_from_the_manifest(real_published_dir):
    weights, counts = load_published_pair("audio_genre_feature_weights.pkl", "audio_genre_feature_counts.pkl",
                                          source=real_published_dir)
    pop = [round(weights[5][f"vocals{k}"] / counts[5][f"vocals{k}"], 3) for k in range(10)]
    assert pop == POP_VOCALS
    weights, counts = load_published_pair("emotion_audio_feature_weights.pkl", "emotion_audio_feature_counts.pkl",
                                          source=str(real_published_dir))
    angry = [round(weights[0][f"other{k}"] / counts[0][f"other{k}"], 3) for k in range(10)]
    assert angry == ANGRY_OTHER


def test_genre_pop_heatmap_reproduces_published_values(real_published_dir, tmp_path):
    table = _table(real_published_dir, "genre_audio")
    matrix = heatmap_matrix(table, "pop")
    assert matrix.shape == (4, 10)
    assert np.round(matrix[STEMS.index("vocals")], 3).tolist() == POP_VOCALS
    assert np.array_equal(heatmap_matrix(table, 5), matrix)             # class index 5 == pop
    fig = plot_audio_heatmap(table, "pop", stems=PAPER_HEATMAP_STEMS, save_path=tmp_path / "pop.png")
    texts = _texts(fig)
    assert len(texts) == 40 and texts[:10] == [f"{v:.3f}" for v in POP_VOCALS]
    assert texts[13] == "0.0087"                                        # bass3, as printed by the authors
    assert (tmp_path / "pop.png").stat().st_size > 10_000


def test_emotion_angry_heatmap_reproduces_published_values(real_published_dir):
    table = _table(real_published_dir, "emotion_audio")
    matrix = heatmap_matrix(table, 0)
    assert np.round(matrix[STEMS.index("other")], 3).tolist() == ANGRY_OTHER
    fig = plot_audio_heatmap(table, "Angry", fmt=".3f")
    assert _texts(fig)[30:40] == [f"{v:.3f}" for v in ANGRY_OTHER]


def test_multimodal_hip_hop_reproduces_published_figures(real_published_dir):
    table = _table(real_published_dir, "audioset_multimodal")
    fig = plot_heatmap_and_word_bars(table, "hip hop", stems=PAPER_HEATMAP_STEMS, display_name="hip_hop",
                                     merge_words="none")
    assert fig.axes[1].get_title() == "Top 20 Word Feature Weights for hip_hop"
    assert _texts(fig)[:10] == ["0.069", "0.064", "0.052", "0.034", "0.028", "0.024", "0.044", "0.039",
                                "0.046", "0.045"]
    words = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert words == ["Bitch", "Nigga", "motherfucking", "nigga", "niggas", "bitches", "Fuck", "tryna", "yo",
                     "rap", "lyrical", "Weed", "lyricist", "gon", "shit", "Jesus", "bitch", "rappers",
                     "killas", "BiAtch"]                                 # the published AudioSet bars

    m4a = _table(real_published_dir, "genre_multimodal")
    matrix = heatmap_matrix(m4a, "hip hop", stems=PAPER_HEATMAP_STEMS)
    assert matrix[1, 2] == 0.0 and matrix[1, 8] == 0.0                  # never kept -> 0, as published
    assert round(matrix[0, 9], 2) == 0.1 and round(matrix[2, 9], 3) == 0.074
    # the authors merged lower-case + lemma before the M4A bars (the default merge_words="lemma")
    fig = plot_heatmap_and_word_bars(m4a, "hip hop", stems=PAPER_HEATMAP_STEMS)
    words = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert words == PUBLISHED_HIP_HOP_WORDS                              # the published M4A bars
    values = dict(zip(words, [p.get_width() for p in fig.axes[1].patches]))
    assert f"{values['nigga']:.3f}" == "0.150" and f"{values['fuck']:.3f}" == "0.090"


PUBLISHED_HIP_HOP_WORDS = ["jigga", "hood", "nigga", "homie", "shit", "bitch", "fuck", "suicide", "rapper", "mic",
                           "drug", "kennedy", "crack", "veteran", "dead", "black", "ain", "tryna", "tellin", "fan"]
"""genre__multimodal__heatmapandbarplot_hip_hop_AVG.png, top to bottom."""

PUBLISHED_POP_LABELS = ["bleed", "vocals7", "breath", "vocals9", "petrify", "comfort", "freak", "fuck", "vocals5",
                        "vocals0", "kid", "wrist", "vocals3", "trippin", "vocals6", "something", "pain", "dancin",
                        "other1", "cold", "glass", "vocals1", "kiss", "girl", "city", "vocals4", "oldest",
                        "vocals8", "scar", "into"]
"""genre__multimodal__barplot_pop_AVG.png, top to bottom."""


def test_four_published_word_bar_values(real_published_dir):
    """Issue 14: the M4A word bars merge lower-case + lemma, summing W and C over the forms."""
    merged = load_published_table("genre_multimodal", real_published_dir, merge_words="lemma")
    value = {(c, f): v for c, f, v in zip(merged["class"], merged["feature"], merged["I_AVG"])}
    printed = {key: f"{value[key]:.3f}" for key in [("hip hop", "nigga"), ("hip hop", "fuck"),
                                                    ("punk", "drink"), ("punk", "scar")]}
    assert printed == {("hip hop", "nigga"): "0.150", ("hip hop", "fuck"): "0.090",
                       ("punk", "drink"): "0.035", ("punk", "scar"): "0.034"}
    # case-only merging gives other values / labels: nigga 0.191, fuck 0.060, 'drinking', 'scars'
    case = load_published_table("genre_multimodal", real_published_dir, merge_words="case")
    case_value = {(c, f): v for c, f, v in zip(case["class"], case["feature"], case["I_AVG"])}
    assert f"{case_value[('hip hop', 'nigga')]:.3f}" == "0.191"
    assert f"{case_value[('hip hop', 'fuck')]:.3f}" == "0.060"
    assert ("punk", "drink") not in case_value and ("punk", "scars") in case_value


def test_top_mixed_features_pop_reproduces_published_bars(real_published_dir):
    table = _table(real_published_dir, "genre_multimodal")
    fig = plot_top_features(table, "pop", top_k=30)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    # the published labels, lemmatised; simplemma also lemmatises the adjective 'oldest' (same value)
    assert labels == [("old" if w == "oldest" else w) for w in PUBLISHED_POP_LABELS]
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert np.round(widths[:4], 3).tolist() == [0.049, 0.042, 0.036, 0.035]
    assert f"{widths[labels.index('girl')]:.4f}" == "0.0225"             # girl + Girl merged, as published


def test_regenerate_paper_figures_on_published(real_published_dir, tmp_path):
    paths = regenerate_paper_figures(real_published_dir, tmp_path, genre_classes=["pop", "hip hop"],
                                     emotion_classes=["Angry"], progress=False)
    assert PAPER_FIGURES <= {p.name for p in paths}
    assert all(p.parent == tmp_path and p.stat().st_size > 5_000 for p in paths)


def test_paper_figures_notebook(real_published_dir, tmp_path):
    """Notebook 11 top to bottom on the real files (it asserts the checked values itself)."""
    results = tmp_path / "results"
    assert main(["--only", "11", "--published", str(real_published_dir), "--results-dir", str(results)]) == 0
    text = (results / "notebooks" / "11_paper_figures.ipynb").read_text()
    assert "0.073, 0.055, 0.058" in text                     # the checked pop vocals row was printed
    assert "hip hop  nigga  lemma merge: 0.150   case only: 0.191" in text     # the word-bar merge check
    assert "exact          21" in text and "approximate     3" in text       # the exact / approximate table
    assert (results / "figures" / "published" / "genre__audio__global_heatmap_pop_AVG.png").stat().st_size > 5_000


PUBLISHED_WORDS = {
    # Results/plots/genre/multimodal/heatmap&barplot_punk_AVG.png (merged by lemma)
    ("genre_multimodal", "punk"): ["beer", "sell", "drink", "scar", "corner", "classical", "beethoven", "boom",
                                   "bloody", "music", "like", "record", "lie", "catchy", "lover", "bedsit", "change",
                                   "emptiness", "body", "play"],
    # Results/plots/emotion/multimodal/heatmap&barplot_Angry_AVG.png (unmerged)
    ("emotion_multimodal", "Angry"): ["ripping", "survived", "Cursed", "Rip", "wanna", "Haunting", "damned",
                                      "Drowned", "evil", "demon", "dehumanized", "myth", "blast", "abyssal", "grab",
                                      "Forever", "Swallowed", "destroy", "Devour", "regret"],
    # Results/plots/audioset/multimodal_heatmap&barplot_rock_altrock_punk_AVG.png (unmerged)
    ("audioset_multimodal", "rock"): ["Karen", "D", "fine", "Dan", "dumb", "truth", "fuck", "better", "claws", "liked",
                                      "feeling", "saccharine", "Motorway", "teenage", "Ooh", "ears", "wheel", "shape",
                                      "Waste", "S"],
}
"""Word bars of published multimodal figures beyond the paper's three, top to bottom."""


def test_multimodal_word_bars_of_other_classes(real_published_dir):
    from utils.results import multimodal_figures

    spec = {(f.key, f.cls): f for f in multimodal_figures("all") if f.kind == "heatmap_bars"}
    for (key, cls), words in PUBLISHED_WORDS.items():
        figure = spec[key, cls]
        table = load_published_table(key, real_published_dir)
        fig = plot_heatmap_and_word_bars(table, cls, stems=PAPER_HEATMAP_STEMS, display_name=figure.display_name,
                                         merge_words=figure.merge_words)
        assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == words, (key, cls)
        plt.close(fig)


PUBLISHED_GLOBAL_MAP_WORDS = set("na ho bitch ghetto dick oh freak girls blues dance mighty wasted anyway fucking skate "
                                 "hymns bleed weary troubles forever dead give last than destroy cut television grow "
                                 "flower pastures barn ships".split())
"""Words of Results/plots/genre/global_calss_importance.png (the same as emotion/lyrics/global.png)."""


def test_published_genre_word_maps_come_from_the_emotion_pickle(real_published_dir):
    """The published genre map shows 'hymns' as electronic (class 1), 'skate' as pop (5): the top-5 I_H words of
    Calm (1) and Neutral (5) in the emotion lyrics pickle, whose top-5 words are nearly all the map's words."""
    from utils.results import select_class_words

    emotion = select_class_words(load_published_table("emotion_lyrics", real_published_dir), None, 5, "I_H")
    where = dict(zip(emotion["word"], emotion["class"]))
    assert (where["hymns"], where["skate"], where["pastures"]) == ("Calm", "Neutral", "Depressed")
    assert len(PUBLISHED_GLOBAL_MAP_WORDS & set(emotion["word"])) == 31
    genre = select_class_words(load_published_table("genre_lyrics", real_published_dir), None, 5, "I_H")
    assert len(PUBLISHED_GLOBAL_MAP_WORDS & set(genre["word"])) == 3
