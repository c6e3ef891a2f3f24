"""Which regenerated figure answers which published one (utils.results.figure_pairs); reading the
published PNGs from a clone, a flat folder or a URL (file:// here: no network in tests)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils.results import (APPROXIMATE, EXACT, figure_table, flat_name, multimodal_figures, paper_figures,  # noqa: E402
                           plot_side_by_side, regenerate_paper_figures, resolve_published_figure)


def _png(path, value: float, shape=(20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.full(shape, value), cmap="gray", vmin=0, vmax=1)
    return path


def test_every_listed_figure_is_regenerated(published_fixture, tmp_path):
    written = regenerate_paper_figures(published_fixture.directory, tmp_path, genre_classes=["pop", "hip hop"],
                                       emotion_classes=["Angry"], progress=False)
    listed = paper_figures(["pop", "hip hop"], ["Angry"])
    assert {f.ours for f in listed} <= {p.name for p in written}
    table = figure_table(listed)
    assert list(table.columns) == ["ours", "published", "match", "reason"]
    matches = dict(zip(table["ours"], table["match"]))
    assert matches["genre__audio__global_heatmap_hip_hop_AVG.png"] == EXACT
    assert matches["genre__multimodal__heatmapandbarplot_hip_hop_AVG.png"] == EXACT
    assert {m for o, m in matches.items() if "heatmap" not in o and "barplot" not in o} == {APPROXIMATE}
    published = dict(zip(table["ours"], table["published"]))
    assert published["genre__audio__global_heatmap_hip_hop_AVG.png"] == \
        "Results/plots/genre/audio/global_heatmap_hip hop_AVG.png"
    assert len(paper_figures()) == 9 + 9 + 6
    plt.close("all")


def test_flat_names():
    assert flat_name("Results/plots/genre/audio/global_heatmap_hip hop_AVG.png") == \
        "genre__audio__global_heatmap_hip_hop_AVG.png"
    assert flat_name("Results/plots/audioset/multimodal_heatmap&barplot_hip_hop_AVG.png") == \
        "audioset__multimodal_heatmapandbarplot_hip_hop_AVG.png"
    assert flat_name("Results/plots/genre/global_calss_importance.png") == "genre__global_calss_importance.png"


def test_published_figures_from_a_clone_a_flat_folder_or_a_url(tmp_path):
    path = "Results/plots/genre/multimodal/heatmap&barplot_hip hop_AVG.png"
    clone = _png(tmp_path / "clone" / path, 0.2)
    assert resolve_published_figure(path, tmp_path / "clone") == clone
    flat = _png(tmp_path / "flat" / flat_name(path), 0.4)
    assert resolve_published_figure(path, str(tmp_path / "flat")) == flat
    with pytest.raises(FileNotFoundError, match="heatmapandbarplot_hip_hop_AVG.png"):
        resolve_published_figure(path, tmp_path)
    url = (tmp_path / "clone").as_uri() + "/{file}"
    cached = resolve_published_figure(path, url, cache_dir=tmp_path / "cache")
    assert cached.read_bytes() == clone.read_bytes() and tmp_path / "cache" in cached.parents
    with pytest.raises(OSError, match="could not download"):
        resolve_published_figure("Results/plots/missing.png", url, cache_dir=tmp_path / "cache")

    fig = plot_side_by_side(clone, flat, title="hip hop", save_path=tmp_path / "side.png")
    assert [ax.get_title() for ax in fig.axes] == ["regenerated (ours)", "published (the authors')"]
    assert fig.axes[1].images[0].get_array().shape[:2] == (20, 30)
    assert (tmp_path / "side.png").stat().st_size > 0
    assert fig.axes[0].get_position().x0 < fig.axes[1].get_position().x0        # 20 x 30: side by side
    wide = plot_side_by_side(_png(tmp_path / "wide.png", 0.5, (10, 40)),
                             _png(tmp_path / "wide2.png", 0.1, (12, 40)))
    assert wide.axes[0].get_position().y0 > wide.axes[1].get_position().y0      # wide: ours on top
    plt.close("all")


def test_all_multimodal_figures_are_listed_with_the_authors_names():
    everything = paper_figures(multimodal="all")
    assert len(everything) == 9 + 9 + (9 + 9 + 7) * 2 + 3
    assert len({f.ours for f in everything}) == len(everything)
    published = {f.published for f in everything}
    assert "Results/plots/audioset/multimodal_heatmap&barplot_rock_altrock_punk_AVG.png" in published
    assert "Results/plots/audioset/barplot_heavy_music_AVG.png" in published
    assert "Results/plots/emotion/multimodal/heatmap&barplot_Angry_AVG.png" in published
    merges = {(f.key, f.merge_words) for f in multimodal_figures("all")}
    assert merges == {("genre_multimodal", "lemma"), ("emotion_multimodal", "none"), ("audioset_multimodal", "none")}
    assert [f.ours for f in multimodal_figures("paper")] == [
        "genre__multimodal__heatmapandbarplot_hip_hop_AVG.png", "genre__multimodal__barplot_pop_AVG.png",
        "audioset__multimodal_heatmapandbarplot_hip_hop_AVG.png"]
    with pytest.raises(ValueError, match="multimodal must be one of"):
        multimodal_figures("some")


def test_multimodal_figures_draw_each_set_with_its_merge(published_fixture, monkeypatch):
    import importlib

    from utils.results import figures, load_published_table
    listing = importlib.import_module("utils.results.figure_pairs")

    every = multimodal_figures("all")
    picked = [next(f for f in every if (f.key, f.kind) == pair) for pair in
              [("emotion_multimodal", "heatmap_bars"), ("audioset_multimodal", "top_features")]]
    picked.append(next(f for f in every if f.key == "audioset_multimodal" and f.cls == "rock"))
    monkeypatch.setattr(listing, "multimodal_figures", lambda which: picked)
    tables = {k: load_published_table(k, published_fixture.directory) for k in ("emotion_multimodal",
                                                                                 "audioset_multimodal")}
    drawn = list(figures._multimodal_figures(tables, "all"))
    assert [name for name, _ in drawn] == [f.ours for f in picked]
    angry_words = [t.get_text() for t in drawn[0][1].axes[1].get_yticklabels()]
    assert "Love" in angry_words or "love" in angry_words          # unmerged: raw case as aggregated
    emotion = tables["emotion_multimodal"]
    angry = emotion[(emotion["class"] == picked[0].cls) & (emotion["modality"] == "lyrics")]
    assert angry_words == angry.sort_values(["I_AVG", "feature"], ascending=[False, True])["feature"][:20].tolist()
    assert drawn[2][1].axes[1].get_title() == "Top 20 Word Feature Weights for rock_altrock_punk"
    plt.close("all")
