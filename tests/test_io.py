"""utils.io: atomic writes and the append-only JSON-lines store; utils.plotting's saving."""
from __future__ import annotations

import json

import numpy as np
import pytest

from utils.io import (append_jsonl, atomic_dir, atomic_path, atomic_write, atomic_write_json, part_path, read_jsonl,
                      recover_dir)


def test_atomic_write_replaces_whole_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert json.loads(target.read_text()) == {"x": 0.5, "n": 3, "v": [0, 1]}
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as part:
            part.write_text("half")
            raise RuntimeError("boom")
    assert json.loads(target.read_text())["n"] == 3                  # the old file is untouched
    assert not part_path(target).exists()
    with pytest.raises(OSError, match="no file"):
        with atomic_path(tmp_path / "b.npy"):
            pass                                                      # writer wrote nothing
    assert atomic_write(tmp_path / "c.txt", "héllo").read_bytes() == "héllo".encode()


def _folder(path, text):
    path.mkdir(parents=True)
    (path / "a.txt").write_text(text)
    (path / "b.txt").write_text(text)
    return path


@pytest.mark.parametrize("left, expected", [
    ({"unit": "old", "unit.new": "half"}, "old"),          # killed while filling .new: rolled back
    ({"unit.old": "old", "unit.new": "new"}, "new"),       # killed between the two renames: rolled forward
    ({"unit.old": "old"}, "old"),                          # .new lost as well: the old one is put back
    ({"unit": "new", "unit.old": "old"}, "new"),           # killed before removing .old
    ({"unit.new": "half"}, None),                          # the first save never committed
])
def test_recover_dir_leaves_a_whole_folder(tmp_path, left, expected):
    for name, text in left.items():
        _folder(tmp_path / name, text)
    assert recover_dir(tmp_path / "unit") == (expected is not None)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["unit"] if expected else [])
    if expected:
        assert {p.read_text() for p in (tmp_path / "unit").iterdir()} == {expected}


def test_atomic_dir_swaps_the_whole_folder_or_nothing(tmp_path):
    target = _folder(tmp_path / "unit", "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target) as new:
        (new / "a.txt").write_text("new")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit"]
    assert {p.read_text() for p in target.iterdir()} == {"old"}
    with atomic_dir(target) as new:
        (new / "c.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit"]
    assert [p.name for p in target.iterdir()] == ["c.txt"]


def test_jsonl_round_trip_and_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    assert read_jsonl(path) == []
    append_jsonl(path, {"id": "a", "w": np.float64(0.25)})
    append_jsonl(path, {"id": "b", "w": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"id": "c", "w"')                              # a kill mid-append
    with pytest.warns(UserWarning, match="half-written last line"):
        assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]
    assert path.read_bytes().endswith(b"\n") and path.read_text().count("\n") == 2
    append_jsonl(path, {"id": "c", "w": 2})
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b", "c"]


def test_jsonl_refuses_files_that_are_not_records_and_bad_middle_lines(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("notes")
    with pytest.raises(ValueError, match="records file"):
        read_jsonl(notes)
    assert notes.read_text() == "notes"                               # never truncated
    notes.write_text("notes\n")
    with pytest.raises(ValueError, match="line 1"):
        read_jsonl(notes)
    assert notes.read_text() == "notes\n"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(mixed)

    def needs_id(record):
        if not isinstance(record.get("id"), str):
            raise ValueError("no string 'id'")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n{"x": 1}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="line 2: not a record \\(no string 'id'\\)"):
        read_jsonl(bad, validate=needs_id)

    # only a torn JSON object is a half-written line: other endings are refused and kept
    for ending in (b"# trailing comment\n", b"# trailing comment", b'{"id": "c"}', b"notes"):
        tailed = tmp_path / "tailed.jsonl"
        tailed.write_bytes(b'{"id": "a"}\n' + ending)
        with pytest.raises(ValueError, match="tailed.jsonl"):
            read_jsonl(tailed)
        assert tailed.read_bytes() == b'{"id": "a"}\n' + ending
    first = tmp_path / "first.jsonl"
    first.write_bytes(b'{"id": "a", "w')                              # killed during the very first append
    with pytest.warns(UserWarning, match="half-written"):
        assert read_jsonl(first) == []
    assert first.read_bytes() == b""


def test_save_figure_is_tight_at_one_dpi_and_atomic(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.plotting import DPI, plot_signed_bars, plot_weight_grid, save_figure

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    save_figure(fig, tmp_path / "f" / "line.png")
    from PIL import Image

    with Image.open(tmp_path / "f" / "line.png") as image:
        assert round(image.info["dpi"][0]) == DPI
    assert not part_path(tmp_path / "f" / "line.png").exists()
    grid = np.array([[0.5, -0.25], [0.0, 1.0]])
    fig = plot_weight_grid(grid, ["vocals", "drums"], "t")
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.5", "-0.25", "0", "1"]
    fig = plot_signed_bars(["a", "b"], [0.3, -0.1], ["audio", "lyrics"], "bars")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b", "a"]   # first name on top
    with pytest.raises(ValueError, match="unknown modalities"):
        plot_signed_bars(["a"], [0.1], ["video"], "x")
    plt.close("all")
