"""The paper profile end to end at paper size, offline: ``python -m utils.paper_check``.

Nothing here is downloaded. Stand-ins for the hub checkpoints the paper profile names
(``MIT/ast-finetuned-audioset-10-10-0.4593``, ``roberta-large``) are written to a local folder
first: an AST-base and a RoBERTa-large with random weights (the real shapes: 768 x 12 layers over
1024 x 128 spectrograms; 1024 x 24 layers), and a byte-level BPE tokenizer trained on the corpus
lyrics (the real one's 50,265-word vocabulary cannot be fetched; the model keeps that vocabulary
size). The paper profile then runs as on a GPU machine, with only its sources pointed at that
folder:

1. a synthetic corpus at 44.1 kHz, clips of the paper's 10.2551 s (``songs_per_class`` per genre,
   split in thirds: by default one train, one val and one test song per genre);
2. AST features at 44.1 kHz (the authors' Kaldi front end) and 256-token lyrics, the authors'
   preprocessing;
3. one epoch of each model (lyrics, audio, multimodal) on the genre task;
4. one MusicLIME explanation of a test song with the multimodal model (oracle stems, small N).

It prints each phase's wall time and the process's peak resident memory, and writes them to
``<out>/paper_check.json``. The numbers say whether the path runs and what it costs on this
machine; the models are untrained, so the predictions mean nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from pathlib import Path

from utils.config import GENRES, get_profile
from utils.io import atomic_write_json


def make_standins(folder: str | Path, lyrics: list[str], seed: int = 0) -> dict[str, str]:
    """Random paper-size AST and RoBERTa checkpoints and a corpus-trained tokenizer, as local folders.

    Returns the ``ModelConfig`` sources ``{"audio_source", "lyrics_source", "tokenizer_source"}``.
    """
    import torch
    from transformers import ASTConfig, ASTModel, RobertaConfig, RobertaModel

    from utils.dataset_related.text import authors_preprocess, train_tokenizer

    folder = Path(folder)
    model = get_profile("paper").model
    torch.manual_seed(seed)
    audio = folder / "ast-base"
    if not (audio / "config.json").is_file():
        ASTModel(ASTConfig(hidden_size=model.ast_hidden, num_hidden_layers=model.ast_layers,
                           num_attention_heads=model.ast_heads, intermediate_size=model.ast_intermediate,
                           num_mel_bins=128, max_length=1024)).save_pretrained(audio)
    text = folder / "roberta-large"
    if not (text / "config.json").is_file():
        RobertaModel(RobertaConfig(vocab_size=model.vocab_size, hidden_size=model.roberta_hidden,
                                   num_hidden_layers=model.roberta_layers, num_attention_heads=model.roberta_heads,
                                   intermediate_size=model.roberta_intermediate, max_position_embeddings=514,
                                   type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
                     ).save_pretrained(text)
    tokenizer = folder / "tokenizer"
    if not (tokenizer / "vocab.json").is_file():
        train_tokenizer([authors_preprocess(t) for t in lyrics], tokenizer, vocab_size=2000, seed=seed)
    return {"audio_source": str(audio), "lyrics_source": str(text), "tokenizer_source": str(tokenizer)}


def _peak_gib() -> float:
    """Peak resident memory of this process so far, GiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def run_paper_check(out_dir: str | Path, *, songs_per_class: int = 3, num_samples: int = 16,
                    batch_size: int = 2, seed: int = 0, progress: bool = True) -> dict:
    """Run the four steps of the module doc into ``out_dir``; returns the report (also written as JSON).

    ``batch_size`` replaces the paper's 10 / 8 / 3 for all three models, to bound memory on a
    CPU machine; everything else is the paper profile.
    """
    from utils.dataset_related.synth import CorpusSettings, generate_corpus
    from utils.model_related.pipeline import load_splits, prepare_tokens, train_task_model
    from utils.musiclime.predict import load_predictor
    from utils.musiclime.separation import OracleSeparator
    from utils.musiclime.song import explain_song

    out_dir = Path(out_dir)
    phases: dict[str, float] = {}
    tick = time.perf_counter()
    base = get_profile("paper")
    corpus = generate_corpus(out_dir / "corpus", CorpusSettings(
        songs_per_class=songs_per_class, seed=seed, sample_rate=base.audio.sample_rate,
        clip_seconds=base.audio.clip_seconds, num_segments=base.num_segments, split=(1 / 3, 1 / 3, 1 / 3)),
        progress=progress)
    frames = load_splits(corpus)
    phases["corpus"] = time.perf_counter() - tick
    tick = time.perf_counter()
    sources = make_standins(out_dir / "standins", list(frames["train"]["lyrics"]), seed)
    train = dataclasses.replace(base.train, batch_size={k: batch_size for k in base.train.batch_size})
    profile = base.replace(model=dataclasses.replace(base.model, **sources), train=train, device="cpu",
                           separator="oracle")
    tokens = prepare_tokens(profile, corpus, seed=seed)
    phases["standins"] = time.perf_counter() - tick
    run_dir = out_dir / "runs"
    for kind in ("lyrics", "audio", "multimodal"):
        tick = time.perf_counter()
        train_task_model(profile, corpus, run_dir, "genre", kind, frames, tokens, seed=seed, epochs=1,
                         progress=progress)
        phases[f"train_{kind}"] = time.perf_counter() - tick
    tick = time.perf_counter()
    predictor = load_predictor(run_dir, "genre", "multimodal", profile, corpus, device="cpu")
    song = frames["test"].iloc[0]
    explanation = explain_song(predictor, corpus, song, profile, separator=OracleSeparator(corpus),
                               num_samples=num_samples, batch_size=num_samples, seed=seed, class_names=GENRES)
    phases["explain"] = time.perf_counter() - tick
    report = {"profile": "paper", "sample_rate": profile.audio.sample_rate, "clip_length": profile.clip_length,
              "max_tokens": profile.model.max_tokens, "songs": {k: len(v) for k, v in frames.items()},
              "batch_size": batch_size, "num_samples": num_samples, "epochs": 1,
              "explained": {"id": str(song["id"]), "features": len(explanation.features),
                            "top": [r["name"] for r in explanation.ranked(k=3)]},
              "seconds": {k: round(v, 1) for k, v in phases.items()},
              "total_seconds": round(sum(phases.values()), 1), "peak_memory_gib": round(_peak_gib(), 2)}
    atomic_write_json(out_dir / "paper_check.json", report, indent=1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.paper_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/paper-check", help="working folder (corpus, stand-ins, runs)")
    parser.add_argument("--songs-per-class", type=int, default=3, help="one song per split each (>= 3)")
    parser.add_argument("--num-samples", type=int, default=16, help="MusicLIME neighbourhood rows")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    report = run_paper_check(args.out, songs_per_class=args.songs_per_class, num_samples=args.num_samples,
                             batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
    for phase, seconds in report["seconds"].items():
        print(f"{phase:18s} {seconds:8.1f} s")
    print(f"{'total':18s} {report['total_seconds']:8.1f} s; peak memory {report['peak_memory_gib']:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
