"""The study's steps as functions the notebooks call: corpus -> tokenizer -> train -> evaluate.

Steps: :func:`prepare_corpus`, :func:`load_splits`, :func:`~utils.model_related.inputs.prepare_tokens`
(from :mod:`~utils.model_related.inputs`), :func:`train_task_model`, :func:`evaluate_task_model`.
The work itself is done in :mod:`~utils.model_related.models`, :mod:`~utils.model_related.train`,
:mod:`~utils.model_related.evaluate` and :mod:`~utils.model_related.inputs`; other layers import
from those modules, never from this one.

Directory conventions (all relative to the project root unless given):

* ``data/synthetic``                 the tiny profile's corpus (real data: any corpus dir)
* ``<corpus>/tokenizer``             the corpus-trained tokenizer (tiny profile)
* ``runs/<profile>/<task>/<kind>``   checkpoints (``best/``; ``last/`` with ``optimizer.pt`` and ``state.json``)
* ``results/<task>/<kind>``          metrics.json, classification_report.txt, confusion_matrix.png
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import torch

from utils.config import SPLITS, TASKS, Profile, resolve_device
from utils.dataset_related.splits import read_split
from utils.dataset_related.synth import CorpusSettings, generate_corpus
from utils.dataset_related.text import TokenCache
from utils.model_related.evaluate import classification_metrics, write_evaluation
from utils.model_related.inputs import make_datasets, prepare_tokens
from utils.model_related.models import build_model, load_trained
from utils.model_related.train import predict_proba, train_model

__all__ = ["prepare_corpus", "load_splits", "prepare_tokens", "train_task_model", "evaluate_task_model"]


def prepare_corpus(profile: Profile, corpus_dir: str | Path, *, seed: int = 0, songs_per_class: int | None = None,
                   progress: bool = True) -> Path:
    """Make sure a corpus is there: the tiny profile generates its synthetic one, the paper
    profile expects a real corpus (see ``dataset_related/``) and checks its split files."""
    corpus_dir = Path(corpus_dir)
    if profile.name == "tiny":
        settings = CorpusSettings(songs_per_class=songs_per_class or profile.corpus.songs_per_class, seed=seed,
                                  sample_rate=profile.audio.sample_rate, clip_seconds=profile.audio.clip_seconds,
                                  num_segments=profile.num_segments, split=tuple(profile.corpus.split))
        return generate_corpus(corpus_dir, settings, progress=progress)
    missing = [s for s in SPLITS if not (corpus_dir / f"{s}.jsonl").is_file()]
    if missing:
        raise FileNotFoundError(f"corpus {corpus_dir} lacks {missing}; build it with the dataset_related notebooks")
    return corpus_dir


def load_splits(corpus_dir: str | Path, *, skip_bad: bool = False) -> dict[str, pd.DataFrame]:
    """The corpus's split tables, ``{split: frame}`` for every split in :data:`utils.config.SPLITS`."""
    return {split: read_split(corpus_dir, split, skip_bad=skip_bad) for split in SPLITS}


def _fusion_profile(profile: Profile, run_dir: Path, task: str) -> Profile:
    """For ``fusion_init == 'unimodal'``: point the encoders at the task's trained unimodal models."""
    if profile.model.fusion_init != "unimodal":
        return profile
    sources = {kind: run_dir / task / kind / "pretrained" for kind in ("audio", "lyrics")}
    missing = [str(p) for p in sources.values() if not (p / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(f"fusion_init='unimodal' needs the unimodal models first; missing {missing}")
    model_cfg = dataclasses.replace(profile.model, audio_source=str(sources["audio"]), lyrics_source=str(sources["lyrics"]))
    return dataclasses.replace(profile, model=model_cfg)


def train_task_model(profile: Profile, corpus_dir: str | Path, run_dir: str | Path, task: str, kind: str,
                     frames: dict[str, pd.DataFrame], tokens: TokenCache, *, seed: int = 0, epochs: int | None = None,
                     progress: bool = True) -> dict:
    """Train (or resume) one model for ``task``; returns its training state.

    The best weights go to ``run_dir/task/kind/best``; unimodal models also get a
    Hugging Face copy in ``.../pretrained`` that the fusion model can start from.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    run_dir = Path(run_dir)
    out_dir = run_dir / task / kind
    datasets = make_datasets(frames, corpus_dir, profile, task, kind, tokens)
    build_profile = _fusion_profile(profile, run_dir, task) if kind == "multimodal" else profile
    torch.manual_seed(seed)
    model = build_model(kind, build_profile, len(TASKS[task]), vocab_size=len(tokens.tokenizer))
    extra = {"task": task, "class_names": list(TASKS[task]), "profile": profile.name,
             "sample_rate": profile.audio.sample_rate}
    state = train_model(model, datasets["train"], datasets["val"], profile, out_dir, seed=seed, epochs=epochs,
                        progress=progress, extra=extra)
    if kind in ("audio", "lyrics") and not (out_dir / "pretrained" / "config.json").is_file():
        best = load_trained(run_dir, task, kind, profile=profile.name)
        best.model.save_pretrained(out_dir / "pretrained")
    return state


def evaluate_task_model(profile: Profile, corpus_dir: str | Path, run_dir: str | Path, results_dir: str | Path,
                        task: str, kind: str, frames: dict[str, pd.DataFrame], tokens: TokenCache,
                        split: str = "test") -> dict:
    """Evaluate the best checkpoint on ``split`` and write metrics and figures to ``results/<task>/<kind>``."""
    device = resolve_device(profile.device)
    model = load_trained(run_dir, task, kind, device=device, profile=profile.name)
    dataset = make_datasets({split: frames[split]}, corpus_dir, profile, task, kind, tokens)[split]
    probabilities, _ = predict_proba(model, dataset, device=device)
    metrics = classification_metrics(dataset.labels.numpy(), probabilities, TASKS[task])
    metrics.update(task=task, model=kind, split=split, profile=profile.name)
    write_evaluation(metrics, TASKS[task], Path(results_dir) / task / kind,
                     f"{kind} model, {task}, {split} split ({profile.name} profile): "
                     f"accuracy {100 * metrics['accuracy']:.1f}%")
    return metrics

