"""What the benchmarks explain: a test song of a corpus and a model, trained or of a profile's size.

:func:`load_song` gives a :class:`Song` (oracle stems x segments, the words of its lyrics);
:func:`load_model_and_tokens` the trained model of a run when there is one, else a randomly
initialised one; :func:`benchmark_profile` the ``paper`` profile with encoders built from
scratch (no download). Used by :mod:`utils.musiclime.speed` and
:mod:`utils.musiclime.crossed_agreement`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from utils.config import PROJECT_ROOT, RUNS_DIR, TASKS, Profile, get_profile
from utils.musiclime.factorization import SourceSeparationSegments
from utils.musiclime.lyric_features import WordFeatures


@dataclasses.dataclass
class Song:
    """One test song ready to explain; ``separation_seconds`` covers loading, separating, segmenting."""

    song_id: str
    factorization: SourceSeparationSegments
    words: WordFeatures
    genre: str
    separation_seconds: float


def load_song(corpus_dir: Path, profile: Profile, index: int = 0) -> Song:
    """Test song number ``index`` of the corpus split: its clip and oracle stems x segments.

    The one song path (:func:`utils.musiclime.song.song_factorization`): a synthetic 4 s clip is
    resampled to the profile's rate and zero-padded (with a warning) to a longer profile's input, e.g.
    the paper's 10.2551 s at 44.1 kHz; the cost
    of an explanation does not depend on what the samples hold.
    """
    from utils.dataset_related.splits import read_split
    from utils.musiclime.separation import OracleSeparator
    from utils.musiclime.song import song_factorization

    row = read_split(corpus_dir, "test").iloc[index]
    tick = time.perf_counter()
    factorization = song_factorization(corpus_dir, row["id"], profile, OracleSeparator(corpus_dir))
    seconds = time.perf_counter() - tick
    return Song(row["id"], factorization, WordFeatures(row["lyrics"]), row["primary_short"], seconds)


def benchmark_profile(name: str) -> Profile:
    """The profile to time: ``tiny`` as is; ``paper`` / ``paper16k`` with their encoder configs built
    from scratch (AST-base, RoBERTa-large sizes; random weights, no download)."""
    profile = get_profile(name)
    if name != "tiny":
        model = dataclasses.replace(profile.model, audio_source="scratch", lyrics_source="scratch",
                                    fusion_init="pretrained")
        profile = dataclasses.replace(profile, model=model)
    return profile


def load_model_and_tokens(profile: Profile, corpus_dir: Path, run_dir: Path, task: str, kind: str, device: str,
                          seed: int = 0):
    """The trained ``run_dir/task/kind/best`` model when it exists (tiny profile), else a randomly
    initialised one of the profile's config; tokens from the corpus tokenizer.

    Returns ``(model, tokens, model_source)``; ``model_source`` says which, without machine paths.
    """
    from utils.model_related.models import build_model, load_model
    from utils.model_related.inputs import prepare_tokens
    from utils.dataset_related.text import TokenCache

    profile_for_tokens = profile if profile.name == "tiny" else get_profile("tiny")
    tokens = prepare_tokens(profile_for_tokens, corpus_dir)
    tokens = TokenCache(tokens.tokenizer, profile.model.max_tokens, profile.model.text_preprocessing)
    best = run_dir / task / kind / "best"
    if profile.name == "tiny" and (best / "model.json").is_file():
        model, _ = load_model(best, device=device, task=task, kind=kind, profile=profile.name,
                              class_names=TASKS[task])
        try:  # no machine paths in written results
            shown = str(Path(best).resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            shown = Path(best).name
        return model, tokens, shown
    torch.manual_seed(seed)
    vocab = len(tokens.tokenizer) if profile.name == "tiny" else profile.model.vocab_size
    model = build_model(kind, profile, len(TASKS[task]), vocab_size=vocab).to(device).eval()
    return model, tokens, f"random init ({profile.name} config)"


def trained_multimodal(profile_name: str, corpus_dir: Path, run_dir: Path | None, task: str, device: str,
                       seed: int, needed_by: str):
    """The profile and the trained multimodal model of a run, for a benchmark that measures a trained model.

    ``run_dir`` defaults to ``runs/<profile_name>``. Returns ``(profile, model, tokens, model_source)``
    (see :func:`load_model_and_tokens`); ``FileNotFoundError`` naming the missing model and ``needed_by``
    when the run has no trained model (nothing is trained here).
    """
    profile = benchmark_profile(profile_name)
    run_dir = Path(run_dir) if run_dir is not None else RUNS_DIR / profile_name
    model, tokens, model_source = load_model_and_tokens(profile, Path(corpus_dir), run_dir, task, "multimodal",
                                                        device, seed)
    if model_source.startswith("random"):
        raise FileNotFoundError(f"{needed_by} needs the trained model {run_dir / task / 'multimodal' / 'best'}"
                                " (run the main job first; nothing is trained here)")
    return profile, model, tokens, model_source
