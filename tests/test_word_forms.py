"""The authors' word-bar merge (utils.musiclime.word_forms): lower-case + lemma, W and C summed.

Always run: small pickles in the authors' published format (tests/published_fixtures.py helpers)
whose hip hop and punk words are the forms behind the four values issue 14 quotes from the real
pickles (nigga 0.150, fuck 0.090, drink 0.035, scar 0.034). Every assertion below would fail with
case-only merging. The same four values from the real pickles: tests/test_published_real.py.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from published_fixtures import _as_authors_object, class_index, dump_authors_pickle  # noqa: E402
from utils.musiclime.aggregate import measures  # noqa: E402
from utils.musiclime.word_forms import lemma_key, merge_table_words, word_merge_key  # noqa: E402
from utils.results import load_published_table, plot_heatmap_and_word_bars, plot_top_features  # noqa: E402
from utils.results.published import PUBLISHED_PAIRS  # noqa: E402

HIP_HOP = class_index("genre_multimodal", "hip hop")
PUNK = class_index("genre_multimodal", "punk")

# (W, C) per form; W / C of each form is the real pickles' rounded to 4 places
FORMS = {
    HIP_HOP: {"nigga": (0.3826, 2), "niggas": (0.0664, 1), "Fuck": (0.0554, 1), "fuck": (0.0640, 1),
              "fucking": (0.1509, 1), "hood": (0.1542, 1), "vocals9": (0.5, 5), "bass1": (0.0234, 3)},
    PUNK: {"Drinking": (0.0387, 1), "drinking": (0.0660, 2), "scars": (0.0338, 1), "beer": (0.0426, 1),
           "drums0": (0.2, 4)},
}


@pytest.fixture()
def forms_dir(tmp_path):
    pair = PUBLISHED_PAIRS["genre_multimodal"]
    weights = {cls: {f: w for f, (w, _) in forms.items()} for cls, forms in FORMS.items()}
    counts = {cls: {f: c for f, (_, c) in forms.items()} for cls, forms in FORMS.items()}
    dump_authors_pickle(_as_authors_object("genre_multimodal", weights, "weights"), tmp_path / pair.weights)
    dump_authors_pickle(_as_authors_object("genre_multimodal", counts, "counts"), tmp_path / pair.counts)
    yield tmp_path
    plt.close("all")


def _values(table) -> dict[tuple[str, str], float]:
    return {(c, f): v for c, f, v in zip(table["class"], table["feature"], table["I_AVG"])}


def test_lemma_keys():
    assert [lemma_key(w) for w in ("fucking", "Fuck", "niggas", "Drinking", "drinking", "scars", "Kennedy")] == \
        ["fuck", "fuck", "nigga", "drink", "drink", "scar", "kennedy"]
    assert lemma_key("Trippin") == "trippin"                    # not in the dictionary: lower-cased only
    # a word whose lemma is empty is kept unmerged, as it is
    assert lemma_key("Ghost", lemmatise=lambda w: "") == "Ghost"
    assert lemma_key("Ghost", lemmatise=lambda w: "  ") == "Ghost"
    assert word_merge_key("case")("Drinking") == "drinking" and word_merge_key("none") is None
    with pytest.raises(ValueError, match="merge_words must be one of"):
        word_merge_key("stem")


def test_four_values_from_authors_format_pickles(forms_dir):
    lemma = _values(load_published_table("genre_multimodal", forms_dir, merge_words="lemma"))
    printed = {k: f"{lemma[k]:.3f}" for k in [("hip hop", "nigga"), ("hip hop", "fuck"), ("punk", "drink"),
                                              ("punk", "scar")]}
    assert printed == {("hip hop", "nigga"): "0.150", ("hip hop", "fuck"): "0.090", ("punk", "drink"): "0.035",
                       ("punk", "scar"): "0.034"}
    assert lemma[("hip hop", "nigga")] == pytest.approx((0.3826 + 0.0664) / 3, rel=1e-12)
    assert lemma[("hip hop", "fuck")] == pytest.approx((0.0554 + 0.0640 + 0.1509) / 3, rel=1e-12)
    assert lemma[("hip hop", "vocals9")] == pytest.approx(0.1, rel=1e-12)     # audio never merged
    assert not {("hip hop", "niggas"), ("hip hop", "fucking"), ("hip hop", "Fuck"), ("punk", "scars")} & set(lemma)
    # case-only merging: other values and labels
    case = _values(load_published_table("genre_multimodal", forms_dir, merge_words="case"))
    assert f"{case[('hip hop', 'nigga')]:.3f}" == "0.191" and f"{case[('hip hop', 'fuck')]:.3f}" == "0.060"
    assert ("punk", "drinking") in case and ("punk", "drink") not in case and ("punk", "scars") in case


def test_word_bars_merge_by_lemma_by_default(forms_dir):
    table = load_published_table("genre_multimodal", forms_dir)              # as published: raw case
    assert {"niggas", "Fuck", "Drinking"} <= set(table["feature"])
    fig = plot_heatmap_and_word_bars(table, "hip hop", top_k=3)
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    widths = [p.get_width() for p in fig.axes[1].patches]
    assert labels == ["hood", "nigga", "fuck"]
    assert [f"{w:.3f}" for w in widths] == ["0.154", "0.150", "0.090"]
    assert fig.axes[0].texts[9].get_text() == "0.1"                          # vocals9 = 0.5 / 5, unchanged
    fig = plot_heatmap_and_word_bars(table, "hip hop", top_k=3, merge_words="case")
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["nigga", "hood", "fucking"]
    fig = plot_top_features(table, "punk", top_k=4)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["drums0", "beer", "drink", "scar"]
    fig = plot_top_features(table, "punk", top_k=4, merge_words="none")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["drums0", "beer", "Drinking", "scars"]


def test_merge_table_words_recomputes_every_measure(forms_dir):
    table = load_published_table("genre_multimodal", forms_dir)
    merged = merge_table_words(table, "lemma")
    direct = load_published_table("genre_multimodal", forms_dir, merge_words="lemma")
    assert merged["feature"].tolist() == direct["feature"].tolist()
    for column in ("W", "C", "I_LIME", "I_AVG", "I_H"):
        assert np.allclose(merged[column], direct[column], rtol=1e-12, atol=0), column
    assert merge_table_words(table, "none") is table
    # an empty lemma keeps the word unmerged (here: every form of 'drink' stays apart)
    keep = merge_table_words(table, lambda w: lemma_key(w, lemmatise=lambda x: "" if "rink" in x else x))
    assert {"Drinking", "drinking"} <= set(keep["feature"])
    with pytest.raises(ValueError, match="categorical"):
        merge_table_words(table.assign(**{"class": table["class"].astype(str)}))


def test_our_own_tables_merge_too():
    table = measures({0: {"Scars": 0.2, "scar": 0.1, "vocals0": 0.3}}, {0: {"Scars": 1, "scar": 1, "vocals0": 1}},
                     ["calm"])
    fig = plot_top_features(table, "calm", top_k=5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["vocals0", "scar"]
    assert [p.get_width() for p in fig.axes[0].patches] == pytest.approx([0.3, 0.15])
    plt.close("all")


def test_merging_keeps_only_the_intervals_that_stay_true():
    """A one-form feature keeps its I_AVG interval (W / C unchanged); a merged word's interval and
    every I_H interval would need the bootstrap redone, so they go (NaN: not marked uncertain)."""
    W = {0: {"drinking": 0.2, "Drinking": 0.1, "beer": 0.3, "drums0": 0.4}}
    C = {0: {"drinking": 2, "Drinking": 1, "beer": 3, "drums0": 4}}
    table = measures(W, C, ["punk"])
    table["class_songs"] = 7
    table["I_AVG_lo"] = table["I_AVG"] - 0.01
    table["I_AVG_hi"] = table["I_AVG"] + 0.01
    table["I_H_lo"], table["I_H_hi"] = 0.0, 1.0
    merged = merge_table_words(table, "lemma").set_index("feature")
    assert merged.loc["drink", "W"] == pytest.approx(0.3) and merged.loc["drink", "C"] == 3
    assert np.isnan(merged.loc["drink", "I_AVG_lo"]) and np.isnan(merged.loc["drink", "I_AVG_hi"])
    assert merged.loc["beer", "I_AVG_lo"] == pytest.approx(0.1 - 0.01)
    assert merged.loc["drums0", "I_AVG_hi"] == pytest.approx(0.1 + 0.01)
    assert (merged["class_songs"] == 7).all() and "I_H_lo" not in merged.columns
