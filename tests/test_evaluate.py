import json

import numpy as np
import pytest

from utils.model_related import classification_metrics, plot_history, results_table, write_evaluation, write_results_table


def test_metrics_by_hand(tmp_path):
    labels = np.array([0, 0, 1, 1, 2])
    probabilities = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .6, .3], [.5, .2, .3]])
    metrics = classification_metrics(labels, probabilities, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # per-class F1: a: p=1/2 r=1/2 -> .5 ; b: p=2/3 r=1 -> .8 ; c: 0  -> macro (0.5 + 0.8 + 0) / 3
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    write_evaluation(metrics, ["a", "b", "c"], tmp_path / "genre" / "audio", "t")
    saved = json.loads((tmp_path / "genre" / "audio" / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(0.6)
    assert (tmp_path / "genre" / "audio" / "confusion_matrix.png").stat().st_size > 1000
    table = results_table(tmp_path, tasks=["genre"], kinds=["audio", "lyrics"])
    assert table.loc[0, "ours_accuracy_%"] == 60.0 and table.loc[0, "paper_accuracy_%"] == 53.76
    assert np.isnan(table.loc[1, "ours_accuracy_%"])  # lyrics not evaluated
    text = write_results_table(table.iloc[:1], tmp_path).read_text()
    assert "| genre | audio | 60.00 (0.43) | 53.76 (0.54) |" in text


def test_bad_shapes_and_empty_history():
    with pytest.raises(ValueError, match="classes"):
        classification_metrics(np.array([0]), np.array([[1.0, 0.0]]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="empty training history"):
        plot_history([], "x")


def test_files_keep_their_bytes_and_figures_their_dpi(tmp_path):
    from PIL import Image

    metrics = classification_metrics(np.array([0, 1]), np.array([[.9, .1], [.2, .8]]), ["a", "b"])
    write_evaluation(metrics, ["a", "b"], tmp_path, "t")
    expected = json.dumps({k: v for k, v in metrics.items() if k != "report_text"}, indent=1)
    assert (tmp_path / "metrics.json").read_text() == expected
    assert (tmp_path / "classification_report.txt").read_text() == metrics["report_text"]
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_accuracy": 0.5},
               {"epoch": 2, "train_loss": 0.8, "val_loss": 0.9, "val_accuracy": 0.6}]
    plot_history(history, "t", save_path=tmp_path / "figures" / "history.png")
    for name in ("confusion_matrix.png", "figures/history.png"):
        assert Image.open(tmp_path / name).info["dpi"] == pytest.approx((150, 150), abs=0.1)
    assert not list(tmp_path.rglob("*.part"))
