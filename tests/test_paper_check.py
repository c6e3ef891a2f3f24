"""The paper profile end to end at paper size, offline (``python -m utils.paper_check``).

Marked ``slow``: random AST-base and RoBERTa-large stand-ins, 44.1 kHz audio, one epoch of each
model and one explanation take minutes and several GiB on a CPU. It runs when MUSICLIME_SLOW=1
(CI leaves it out).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from utils.paper_check import run_paper_check

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("MUSICLIME_SLOW") != "1",
                                 reason="paper-size run: set MUSICLIME_SLOW=1 to run it")]


def test_paper_profile_runs_end_to_end_at_paper_size(tmp_path):
    report = run_paper_check(tmp_path, num_samples=12, progress=False)
    assert (report["sample_rate"], report["clip_length"], report["max_tokens"]) == (44_100, 452_250, 256)
    assert report["songs"] == {"train": 9, "val": 9, "test": 9}
    assert report["explained"]["features"] > 40 and len(report["explained"]["top"]) == 3
    assert json.loads((tmp_path / "paper_check.json").read_text()) == report
    song = report["explained"]["id"]
    assert np.load(tmp_path / "corpus" / "features" / f"{song}.npy").shape == (1024, 128)
    saved = json.loads((tmp_path / "runs" / "genre" / "multimodal" / "best" / "model.json").read_text())
    assert saved["profile"] == "paper" and saved["sample_rate"] == 44_100
    assert saved["audio_config"]["hidden_size"] == 768 and saved["lyrics_config"]["num_hidden_layers"] == 24
