"""Execute every numbered notebook top to bottom on the tiny profile at smoke size (what CI runs).

All outputs go to a temporary directory: corpus, checkpoints, results and executed notebooks.
"""
from __future__ import annotations

import os

import pytest

from utils.main import SHARED_PUBLISHED, main


@pytest.mark.skipif(os.environ.get("SKIP_NOTEBOOKS") == "1", reason="SKIP_NOTEBOOKS=1")
def test_all_notebooks_smoke(tmp_path):
    args = ["--smoke", "--corpus-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results")]
    if SHARED_PUBLISHED.is_dir():
        args += ["--published", str(SHARED_PUBLISHED)]
    assert main(args) == 0
    executed = sorted(p.name for p in (tmp_path / "results" / "notebooks").glob("*.ipynb"))
    assert "01_synthetic_corpus.ipynb" in executed and "08_evaluate.ipynb" in executed
    table = (tmp_path / "results" / "results_table.md").read_text()
    assert "| genre | multimodal |" in table
    assert (tmp_path / "results" / "genre" / "audio" / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "results" / "figures" / "corpus_examples.png").is_file()
