"""Shared fixtures: a small synthetic corpus generated once per test session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """6 songs per genre (54 songs), default audio settings; shared by several test files."""
    from utils.synth import CorpusSettings, generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("corpus"), CorpusSettings(songs_per_class=6, seed=3), progress=False)
