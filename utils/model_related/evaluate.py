"""Evaluation: accuracy, macro-F1, classification report, confusion matrix, results table.

Files are written atomically (:mod:`utils.io`); figures are saved by :func:`utils.plotting.save_figure`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from utils.config import MODEL_KINDS, TASKS
from utils.io import atomic_write
from utils.plotting import save_figure

# The paper's M4A test accuracy in % (macro-F1), PAPER.md "Reported results".
PAPER_RESULTS = {
    ("genre", "lyrics"): (45.15, 0.45), ("genre", "audio"): (53.76, 0.54), ("genre", "multimodal"): (57.34, 0.58),
    ("emotion", "lyrics"): (32.34, 0.25), ("emotion", "audio"): (48.29, 0.43), ("emotion", "multimodal"): (48.53, 0.45),
}


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, the sklearn report (text and dict) and the confusion matrix.

    Parameters
    ----------
    labels : (songs,) true class indices.
    probabilities : (songs, classes) predicted probabilities.
    """
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[0] != labels.shape[0]:
        raise ValueError(f"probabilities {probabilities.shape} do not match {labels.shape[0]} labels")
    if probabilities.shape[1] != len(class_names):
        raise ValueError(f"probabilities have {probabilities.shape[1]} classes, class_names has {len(class_names)}")
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=indices, average="macro", zero_division=0)),
        "songs": int(labels.shape[0]),
        "report": classification_report(labels, predicted, labels=indices, target_names=list(class_names),
                                        zero_division=0, output_dict=True),
        "report_text": classification_report(labels, predicted, labels=indices, target_names=list(class_names),
                                             zero_division=0, digits=3),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
    }


def plot_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str,
                   save_path: str | os.PathLike | None = None):
    """Confusion-matrix figure (rows: true class, columns: predicted; counts of songs).

    Parameters
    ----------
    matrix : (classes, classes) song counts, as in :func:`classification_metrics`.
    class_names : the classes in index order.
    save_path : saved there by :func:`utils.plotting.save_figure` when given.
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(class_names)).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, save_path)


def write_evaluation(metrics: dict, class_names: Sequence[str], out_dir: str | Path, title: str) -> Path:
    """Write ``metrics.json``, ``classification_report.txt`` and ``confusion_matrix.png`` to ``out_dir``."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    atomic_write(out_dir / "metrics.json", json.dumps({k: v for k, v in metrics.items() if k != "report_text"}, indent=1))
    atomic_write(out_dir / "classification_report.txt", metrics["report_text"])
    plt.close(plot_confusion(metrics["confusion_matrix"], class_names, title, save_path=out_dir / "confusion_matrix.png"))
    return out_dir


def results_table(results_dir: str | Path, tasks: Sequence[str] = tuple(TASKS),
                  kinds: Sequence[str] = MODEL_KINDS) -> pd.DataFrame:
    """Our test accuracy / macro-F1 next to the paper's, from ``<results_dir>/<task>/<kind>/metrics.json``."""
    rows = []
    for task in tasks:
        for kind in kinds:
            path = Path(results_dir) / task / kind / "metrics.json"
            ours = json.loads(path.read_text()) if path.is_file() else None
            paper_acc, paper_f1 = PAPER_RESULTS[(task, kind)]
            rows.append({"task": task, "model": kind,
                         "ours_accuracy_%": round(100 * ours["accuracy"], 2) if ours else np.nan,
                         "ours_macro_f1": round(ours["macro_f1"], 2) if ours else np.nan,
                         "paper_accuracy_%": paper_acc, "paper_macro_f1": paper_f1,
                         "test_songs": ours["songs"] if ours else np.nan})
    return pd.DataFrame(rows)


def write_results_table(table: pd.DataFrame, results_dir: str | Path, note: str = "") -> Path:
    """Save the table as CSV and Markdown (``results_table.csv`` / ``.md``)."""
    results_dir = Path(results_dir)
    atomic_write(results_dir / "results_table.csv", table.to_csv(index=False))
    header = "| task | model | ours: accuracy % (macro-F1) | paper: accuracy % (macro-F1) |\n|---|---|---|---|\n"
    body = "".join(
        f"| {r.task} | {r.model} | {r._3:.2f} ({r.ours_macro_f1:.2f}) | {r._5:.2f} ({r.paper_macro_f1:.2f}) |\n"
        for r in table.itertuples()
    )
    atomic_write(results_dir / "results_table.md", header + body + (f"\n{note}\n" if note else ""))
    return results_dir / "results_table.md"


def plot_history(history: Sequence[dict], title: str, save_path: str | os.PathLike | None = None):
    """Training curves from a training state's ``history``: cross-entropy (train and validation)
    and validation accuracy per epoch; saved to ``save_path`` by :func:`utils.plotting.save_figure`."""
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError(f"{title}: empty training history, nothing to plot")
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [h["train_loss"] for h in history], label="train")
    left.plot(epochs, [h["val_loss"] for h in history], label="validation")
    left.set_xlabel("epoch"), left.set_ylabel("cross-entropy"), left.legend()
    right.plot(epochs, [h["val_accuracy"] for h in history], color="tab:green")
    right.set_xlabel("epoch"), right.set_ylabel("validation accuracy"), right.set_ylim(0, 1)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, save_path)
