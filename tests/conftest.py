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
    from utils.dataset_related.synth import CorpusSettings, generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("corpus"), CorpusSettings(songs_per_class=6, seed=3), progress=False)


@pytest.fixture(scope="session")
def trained_genre(tmp_path_factory):
    """Tiny-profile genre models (lyrics, audio, multimodal) trained on the default-size corpus.

    The planted-cue and global-run tests need models that actually learned the planted cues,
    so this trains them once per session (a few minutes on 2 CPU cores). When the environment
    variable MUSICLIME_TRAINED_RUN points at an existing run directory (e.g. ``runs/tiny`` after
    the main job) with its corpus in MUSICLIME_TRAINED_CORPUS, those models are reused instead.
    Returns (profile, corpus_dir, run_dir).
    """
    import os

    from utils.config import get_profile
    from utils.model_related.pipeline import load_splits, prepare_corpus, prepare_tokens, train_task_model

    profile = get_profile("tiny")
    if os.environ.get("MUSICLIME_TRAINED_RUN"):
        return profile, Path(os.environ["MUSICLIME_TRAINED_CORPUS"]), Path(os.environ["MUSICLIME_TRAINED_RUN"])
    root = tmp_path_factory.mktemp("trained")
    corpus = prepare_corpus(profile, root / "corpus", seed=0, progress=False)
    frames = load_splits(corpus)
    tokens = prepare_tokens(profile, corpus)
    for kind in ("lyrics", "audio", "multimodal"):
        train_task_model(profile, corpus, root / "runs", "genre", kind, frames, tokens, seed=0, progress=False)
    return profile, corpus, root / "runs"


@pytest.fixture(scope="session")
def published_fixture(tmp_path_factory):
    """The eleven published W / C pickles in the authors' exact format, with values chosen by
    tests/published_fixtures.py (no external data); ``.directory`` and ``.pairs``."""
    from published_fixtures import write_published_fixture

    return write_published_fixture(tmp_path_factory.mktemp("published"))


@pytest.fixture
def real_published_dir():
    """The authors' real pickles, from $MUSICLIME_PUBLISHED_DIR (skips when unset)."""
    from published_fixtures import real_published_dir as lookup

    return lookup()
