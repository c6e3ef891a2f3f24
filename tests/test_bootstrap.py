"""Bootstrap intervals of the global measures over songs, and how the figures mark uncertain cells."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from utils.musiclime.aggregate import accumulate, measures, read_measures, write_measures
from utils.musiclime.bootstrap import (MIN_SONGS, _song_contributions, bootstrap_measures, replicate_measures,
                                       too_few_songs, uncertain)

matplotlib.use("Agg")
CLASSES = ["calm", "loud"]


def _records(songs_per_class: int, seed: int = 0) -> list[dict]:
    """Calm songs keep vocals0 (~0.5) and sometimes 'love'; loud songs keep drums1 (~0.8) and sometimes vocals0."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(songs_per_class):
        weights = {"vocals0": float(rng.uniform(0.3, 0.7)), "drums1": float(rng.uniform(-0.2, 0.1))}
        if rng.random() < 0.3:
            weights["Love"] = float(rng.uniform(0.0, 0.4))
        records.append({"id": f"calm{i}", "label": 0, "weights": weights})
        weights = {"drums1": float(rng.uniform(0.6, 1.0)), "vocals0": float(rng.uniform(-0.1, 0.2)), "love": 0.05}
        records.append({"id": f"loud{i}", "label": 1, "weights": weights})
    records.append({"id": "bad", "skipped": "unreadable"})
    return records


def test_unit_multiplicities_give_the_point_estimates():
    records = _records(12)
    for merge_case in (False, True):
        classes, features, W, C = _song_contributions(records, CLASSES, True, str.lower if merge_case else None,
                                                      "label")
        replicate = replicate_measures(np.ones((1, len(classes))), classes, W, C, 2)
        table = bootstrap_measures(records, CLASSES, samples=20, merge_case=merge_case)
        for row in table.to_dict("records"):
            j, c = features.index(row["feature"]), CLASSES.index(row["class"])
            for measure in ("I_AVG", "I_LIME", "I_H"):
                assert replicate[measure][0, c, j] == pytest.approx(row[measure])
        # the table's own columns are measures()'s, unchanged
        reference = measures(*accumulate(records), CLASSES) if not merge_case else None
        if reference is not None:
            pd.testing.assert_frame_equal(table[reference.columns], reference)


def test_intervals_seeded_cover_the_estimate_and_shrink_with_songs():
    small = bootstrap_measures(_records(10), CLASSES, samples=200, seed=1)
    again = bootstrap_measures(_records(10), CLASSES, samples=200, seed=1)
    other = bootstrap_measures(_records(10), CLASSES, samples=200, seed=2)
    pd.testing.assert_frame_equal(small, again)
    assert not np.allclose(small["I_AVG_hi"], other["I_AVG_hi"])
    for measure in ("I_AVG", "I_LIME", "I_H"):
        assert (small[f"{measure}_lo"] <= small[measure] + 1e-12).all()
        assert (small[measure] <= small[f"{measure}_hi"] + 1e-12).all()
    large = bootstrap_measures(_records(160), CLASSES, samples=200, seed=1)
    key = ["class", "feature"]
    width = lambda t: (t["I_AVG_hi"] - t["I_AVG_lo"]).set_axis(pd.MultiIndex.from_frame(t[key].astype(str)))  # noqa
    assert (width(large).loc[("calm", "vocals0")] < 0.5 * width(small).loc[("calm", "vocals0")])
    assert small["class_songs"].tolist() == [10] * len(small)
    # I_LIME = sqrt(sum): its interval grows with the song count but relative to the value it shrinks
    rel = lambda t: ((t["I_LIME_hi"] - t["I_LIME_lo"]) / t["I_LIME"]).mean()                       # noqa
    assert rel(large) < rel(small)


def test_uncertain_cells_and_too_few_songs():
    table = bootstrap_measures(_records(8), CLASSES, samples=100, seed=0)
    flags = uncertain(table, "I_AVG").set_axis(table["feature"] + "/" + table["class"].astype(str))
    assert not flags["vocals0/calm"]                           # kept by every calm song, tight interval
    assert flags["Love/calm"]                                   # kept by ~30 % of 8 songs: interval reaches 0
    assert too_few_songs(table, "calm") == 8 and too_few_songs(table, "calm", minimum=5) is None
    plain = measures(*accumulate(_records(8)), CLASSES)
    assert not uncertain(plain).any() and too_few_songs(plain, "calm") is None
    with pytest.raises(ValueError, match="samples"):
        bootstrap_measures(_records(3), CLASSES, samples=1)
    # a lemmatiser-like merge: 'love' and 'Love' and 'loves' become one word, its interval recomputed
    merged = bootstrap_measures(_records(8), CLASSES, samples=50, normalise=lambda w: w.lower().rstrip("s"))
    assert set(merged.loc[merged["modality"] == "lyrics", "feature"]) == {"love"}
    with pytest.raises(ValueError, match="not both"):
        bootstrap_measures(_records(3), CLASSES, samples=5, merge_case=True, normalise=str.upper)


def test_csv_round_trip_keeps_the_intervals(tmp_path):
    table = bootstrap_measures(_records(5), CLASSES, samples=50)
    back = read_measures(write_measures(table, tmp_path / "m.csv"), CLASSES)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_figures_mark_uncertain_cells_and_small_classes():
    from utils.results.figures import plot_audio_heatmap, plot_heatmap_and_word_bars

    table = bootstrap_measures(_records(MIN_SONGS - 2), CLASSES, samples=100, seed=0)
    fig = plot_audio_heatmap(table, "calm", num_segments=2)
    title = fig.axes[0].get_title()
    assert f"only {MIN_SONGS - 2} songs" in title and "hatched" in title
    assert any(p.get_hatch() for p in fig.axes[0].patches)
    fig = plot_heatmap_and_word_bars(table, "calm", num_segments=2)
    assert any(bar.get_hatch() for bar in fig.axes[1].patches)      # 'love' bar: uncertain
    enough = bootstrap_measures(_records(MIN_SONGS), CLASSES, samples=50, seed=0)
    assert "only" not in plot_audio_heatmap(enough, "loud", num_segments=2).axes[0].get_title()
    plain = measures(*accumulate(_records(3)), CLASSES)
    assert plot_audio_heatmap(plain, "calm", num_segments=2).axes[0].get_title() == \
        "Feature Weights Heatmap for calm"
