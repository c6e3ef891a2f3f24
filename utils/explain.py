"""Explain one song from the command line: an audio file (and its lyrics) -> one HTML report.

    python -m utils.explain AUDIO [--lyrics LYRICS.txt] [--model DIR] [--separator hpss|openunmix]
                            [--samples N] [--start SECONDS] [--out DIR]

writes ``DIR/report.html`` (one self-contained page, :mod:`utils.musiclime.report`) and
``DIR/explanation.json`` (:meth:`utils.musiclime.explanation.Explanation.to_json` plus a ``"run"`` entry
with the settings below; ``Explanation.from_json`` reads it back).

Read top to bottom:

1. :func:`find_model` reads ``model.json`` (task, kind, class names, profile) of a saved model;
   ``runs/<profile>/<task>/<kind>`` (its ``best/``) or the checkpoint folder itself.
2. :func:`read_clip` loads any wav/flac/ogg/mp3 (mono or stereo, any rate) as mono at the
   model's rate and cuts the model's clip out of it with the project's one clip policy
   (:mod:`utils.musiclime.song`; here the window is centred on the file's middle unless
   ``--start`` is given); a short file is padded with a warning.
3. :func:`explain_song_file` separates the clip into stems x segments
   (:func:`utils.musiclime.song.clip_factorization`) and runs
   :func:`utils.musiclime.explainer.explain` with a tqdm bar.
4. :func:`main` checks every input first, computes, renders, and only then creates the output
   folder and writes the two files into place atomically.

Bad input (a missing, unreadable or silent audio file, an empty or missing lyrics file, a
model folder that is not a saved model of the expected task/kind, ``--samples`` below 2, an
output folder that holds other files) ends with a message naming the file or argument and exit
status 2, and nothing is written.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from utils.config import KIND_MODES, MODEL_KINDS, PROJECT_ROOT, TASKS, num_samples_arg
from utils.explain_model import DEFAULT_TOKENIZER, ModelInfo, UsageError, find_model, load_tokens
from utils.io import atomic_write
from utils.musiclime.song import SongClip, clip_factorization, load_song_clip, make_separator

DEFAULT_MODEL = Path("runs/tiny/genre/multimodal")
"""Relative to the project root: the tiny multimodal genre model that ``python -m utils.main`` trains."""
DEFAULT_SAMPLES = 1000
REPORT_FILES = ("report.html", "explanation.json")
SEPARATORS = ("hpss", "openunmix")


# ---------------------------------------------------------------- 2. the inputs
def read_clip(path: Path, model: ModelInfo, start_seconds: float | None) -> SongClip:
    """The model's clip of an audio file (:func:`utils.musiclime.song.load_song_clip`; ``None``: the middle).

    Raises :class:`UsageError` naming the file when it is missing, unreadable or its clip is
    silent, or naming ``--start`` when the window does not fit.
    """
    from utils.dataset_related.features import AudioError
    from utils.musiclime.separation import SILENCE_PEAK

    rate, clip_length = model.profile.audio.sample_rate, model.profile.clip_length
    try:
        clip = load_song_clip(path, rate, clip_length, start_seconds, name=f"AUDIO {path}")
    except FileNotFoundError as error:
        raise UsageError(f"AUDIO {path}: no such file") from error
    except AudioError as error:          # unreadable, empty, NaN
        cause = error.__cause__
        if cause is None:
            raise UsageError(str(error)) from error
        raise UsageError(f"AUDIO {path}: cannot decode it as audio (wav, flac, ogg or mp3): "
                         f"{type(cause).__name__} {cause}".rstrip()) from error
    except ValueError as error:          # the window does not fit in the file
        raise UsageError(f"--{error}") from error
    if float(np.max(np.abs(clip.waveform))) < SILENCE_PEAK:
        start, end = clip.window
        raise UsageError(f"AUDIO {path}: the clip {start / rate:.2f}-{end / rate:.2f} s is silent (peak |sample| "
                         f"< {SILENCE_PEAK}); nothing to explain there: choose another --start or file")
    return clip


def read_lyrics(path: str | os.PathLike) -> str:
    """The lyrics in a UTF-8 text file; :class:`UsageError` when missing, unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--lyrics {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--lyrics {path}: cannot read it as UTF-8 text ({error})") from error
    if not text.strip():
        raise UsageError(f"--lyrics {path}: the file is empty")
    return text.replace("\r\n", "\n").strip("\n")


def cli_separator(name: str):
    """``hpss`` (weight-free, offline) or ``openunmix`` (the paper's; needs the package and its weights)."""
    try:
        return make_separator(name)
    except Exception as error:           # ImportError, or a failed weight download
        raise UsageError(f"--separator openunmix is not available here ({type(error).__name__}: "
                         f"{str(error)[:300]}); use --separator hpss (weight-free)") from error


# ---------------------------------------------------------------- 3. explain
def explain_song_file(predictor: Any, model: ModelInfo, clip: SongClip | None, lyrics: str | None, separator: Any, *,
                      num_samples: int | str = DEFAULT_SAMPLES, seed: int = 0, batch_size: int = 100,
                      label: int | None = None, progress: bool = True, kernel: str = "paper"):
    """MusicLIME explanation of one clip and/or lyrics with ``model``'s predictor.

    The mode follows the model (:data:`utils.config.KIND_MODES`, its first); a multimodal model without lyrics gets empty
    lyrics and is explained in ``'audio'`` mode. ``num_samples='auto'``: antithetic pairs until the top 10 is
    stable; ``kernel``: ``'paper'`` or ``'locality'`` (:func:`utils.musiclime.explainer.explain`). Returns the
    :class:`utils.musiclime.explanation.Explanation` with its factorization attached.
    """
    from utils.musiclime.explainer import explain

    mode = KIND_MODES[model.kind][0] if lyrics is not None or model.kind != "multimodal" else "audio"
    factorization = None
    if model.kind != "lyrics":
        if progress:
            print(f"separating the clip into stems ({getattr(separator, 'name', separator)}) ...", file=sys.stderr)
        factorization = clip_factorization(clip, separator, model.profile.num_segments)
    text = None if model.kind == "audio" else ("" if lyrics is None else lyrics)
    return explain(predictor, factorization, text, sample_rate=clip.sample_rate if clip else None,
                   mode=mode, labels=None if label is None else [label], num_samples=num_samples,
                   batch_size=batch_size, seed=seed, class_names=model.class_names, progress=progress, kernel=kernel)


# ---------------------------------------------------------------- 4. output
def check_out_dir(out_dir: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is a file, an input's folder, or holds files other than a previous report."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    resolved = out_dir.resolve()
    for path in inputs:
        if resolved == path.resolve().parent or any(resolved / name == path.resolve() for name in REPORT_FILES):
            raise UsageError(f"--out {out_dir}: would write next to (or over) the input {path}; "
                             "choose a folder of its own")
    if out_dir.is_dir():
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in REPORT_FILES)
        if others:
            raise UsageError(f"--out {out_dir}: already holds other files ({', '.join(others[:5])}"
                             f"{', ...' if len(others) > 5 else ''}); give a new or empty folder (only a previous "
                             f"{' / '.join(REPORT_FILES)} is replaced)")


def write_files(out_dir: Path, files: dict[str, bytes]) -> None:
    """Create ``out_dir`` and write each file into place atomically (:func:`utils.io.atomic_write`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(out_dir / name, data)


# ---------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m utils.explain",
        description="Explain one song with MusicLIME: writes OUT/report.html (one self-contained page: "
                    "probabilities, top features, stems x segments heatmap, lyrics shaded by weight, audio of the "
                    "top components and of the rest) and OUT/explanation.json (Explanation.to_json plus the run "
                    "settings under \"run\").",
        epilog="AUDIO is required for audio and multimodal models and ignored by a lyrics model, which needs only "
               "--lyrics. A multimodal model without --lyrics gets empty lyrics and explains the audio only. Audio: "
               "wav, flac, ogg or mp3, mono or stereo, any rate (converted to the model's). A longer file is cut to "
               "the model's clip length; a shorter one is padded with a warning. An existing OUT folder is accepted "
               "only if it is empty or holds nothing but a previous report.html / explanation.json, which are "
               "replaced. Bad input exits with status 2 and writes nothing.")
    parser.add_argument("audio", nargs="?", metavar="AUDIO", help="the song's audio file (omit it for a lyrics model)")
    parser.add_argument("--lyrics", metavar="LYRICS.txt", help="the song's lyrics, a UTF-8 text file")
    parser.add_argument("--model", metavar="DIR", default=None,
                        help=f"saved model: runs/<profile>/<task>/<kind> or its best/ folder "
                             f"(default: {DEFAULT_MODEL} in the project root, made by `python -m utils.main`)")
    parser.add_argument("--separator", choices=SEPARATORS, default="hpss",
                        help="stems: hpss (default; weight-free, offline) or openunmix (the paper's; needs the "
                             "openunmix package and its weights)")
    parser.add_argument("--samples", type=num_samples_arg, default=DEFAULT_SAMPLES, metavar="N",
                        help=f"perturbed samples, the original included (>= 2; default {DEFAULT_SAMPLES}), or 'auto': "
                             "antithetic pairs until the top 10 is stable (the count used is in the report)")
    parser.add_argument("--kernel", choices=["paper", "locality"], default="paper",
                        help="surrogate kernel: paper (flat, the authors'; default) or locality (distance x100, as lime's "
                             "text explainer)")
    parser.add_argument("--start", type=float, default=None, metavar="SECONDS",
                        help="where the clip starts in the file (default: the clip is centred on the file's middle)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: explanations/<AUDIO or LYRICS file name without suffix>)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the perturbations (default 0)")
    parser.add_argument("--top-k", type=int, default=3, metavar="K",
                        help="audio components to play alone, rows of the top-features table (default 3)")
    parser.add_argument("--label", metavar="CLASS", default=None,
                        help="class to explain, a name or an index (default: the predicted class)")
    parser.add_argument("--task", choices=sorted(TASKS), default=None, help="refuse a model of another task")
    parser.add_argument("--kind", choices=MODEL_KINDS, default=None, help="refuse a model of another kind")
    parser.add_argument("--tokenizer", metavar="DIR", default=None,
                        help=f"lyrics tokenizer (default: <model>/tokenizer, else {DEFAULT_TOKENIZER} for tiny models)")
    parser.add_argument("--batch-size", type=int, default=100, metavar="B", help="samples per model call (default 100)")
    parser.add_argument("--device", default=None, help="torch device (default: the profile's, cpu for tiny)")
    return parser


def _label_index(label: str | None, class_names: list[str]) -> int | None:
    if label is None:
        return None
    if label in class_names:
        return class_names.index(label)
    if label.isdigit() and int(label) < len(class_names):
        return int(label)
    raise UsageError(f"--label {label!r}: not one of the model's classes {class_names} (or an index)")


def _inputs(args: argparse.Namespace, model: ModelInfo) -> tuple[Path | None, Path | None]:
    """``(audio, lyrics)`` paths the model uses; the other one is refused or ignored with a warning."""
    audio = Path(args.audio) if args.audio else None
    lyrics_path = Path(args.lyrics) if args.lyrics else None
    if model.kind == "lyrics":
        if lyrics_path is None:
            raise UsageError(f"--lyrics is required: {model.directory} is a lyrics model")
        if audio is not None:
            warnings.warn(f"AUDIO {audio} is ignored: {model.directory} is a lyrics model")
        return None, lyrics_path
    if audio is None:
        raise UsageError(f"AUDIO is required: {model.directory} is a{'n' if model.kind == 'audio' else ''} "
                         f"{model.kind} model")
    if model.kind == "audio" and lyrics_path is not None:
        warnings.warn(f"--lyrics {lyrics_path} is ignored: {model.directory} is an audio model")
        lyrics_path = None
    return audio, lyrics_path


def _predictor(args: argparse.Namespace, model: ModelInfo):
    """``(ModelPredictor, device)`` of the saved model."""
    from utils.config import resolve_device
    from utils.model_related.models import load_model
    from utils.musiclime.predict import ModelPredictor

    tokens = load_tokens(model, args.tokenizer) if model.kind != "audio" else None
    device = resolve_device(args.device or model.profile.device)
    try:
        network, _ = load_model(model.directory, device=device, task=model.task, kind=model.kind,
                                profile=model.description.get("profile"), class_names=model.class_names)
    except (OSError, ValueError) as error:
        raise UsageError(f"--model {model.directory}: cannot load the weights: {error}") from error
    return ModelPredictor(network, model.profile, tokens, device=device), device


def _clip_settings(clip: SongClip | None, separator: str) -> dict:
    """The clip's part of the run settings: separator, window and file format (all None without audio)."""
    keys = ("separator", "start_seconds", "window_samples", "window_seconds", "file_seconds", "padded_seconds",
            "input_sample_rate", "input_channels")
    if clip is None:
        return dict.fromkeys(keys)
    rate, (start, end) = clip.sample_rate, clip.window
    return dict(zip(keys, (separator, start / rate, [start, end], [start / rate, end / rate],
                           clip.file_length / rate, clip.padded_length / rate, clip.input_sample_rate,
                           clip.input_channels)))


def explain_from_args(args: argparse.Namespace) -> Path:
    """Everything :func:`main` does after parsing; returns the output folder. Raises :class:`UsageError`."""
    for name, value, low in (("--samples", args.samples, 2), ("--top-k", args.top_k, 1),
                             ("--batch-size", args.batch_size, 1)):
        if value != "auto" and value < low:
            raise UsageError(f"argument {name}: must be >= {low}, got {value}")
    model = find_model(PROJECT_ROOT / DEFAULT_MODEL if args.model is None else args.model, args.task, args.kind)
    label = _label_index(args.label, model.class_names)
    audio, lyrics_path = _inputs(args, model)
    inputs = [p for p in (audio, lyrics_path) if p is not None]
    out_dir = Path(args.out) if args.out else Path("explanations") / inputs[0].stem
    check_out_dir(out_dir, inputs)
    lyrics = read_lyrics(lyrics_path) if lyrics_path is not None else None
    if lyrics is not None and model.kind != "audio":
        from utils.musiclime.lyric_features import WordFeatures

        if WordFeatures(lyrics).n_features < 2:
            raise UsageError(f"--lyrics {lyrics_path}: fewer than 2 distinct words; nothing to explain")
    clip = read_clip(audio, model, args.start) if audio is not None else None
    separator = cli_separator(args.separator) if model.kind != "lyrics" else None
    predictor, device = _predictor(args, model)
    explanation = explain_song_file(predictor, model, clip, lyrics, separator, num_samples=args.samples,
                                    seed=args.seed, batch_size=args.batch_size, label=label, kernel=args.kernel)

    from utils.musiclime.report import render_report

    explained = explanation.labels[0]
    rate = model.profile.audio.sample_rate
    clip_run = _clip_settings(clip, args.separator)
    run_settings = {
        "audio": None if audio is None else str(audio), "lyrics": None if lyrics_path is None else str(lyrics_path),
        "model_dir": str(model.directory), "task": model.task, "kind": model.kind, "profile": model.profile.name,
        "mode": explanation.mode, "explained_class": model.class_names[explained],
        "separator": clip_run.pop("separator"), "samples": args.samples, "kernel": args.kernel, "seed": args.seed,
        "batch_size": args.batch_size, "top_k": args.top_k, "device": device, **clip_run,
        "sample_rate": rate, "clip_seconds": model.profile.clip_length / rate,
        "num_segments": None if clip is None else model.profile.num_segments,
        "score": explanation.fit(explained).score,
    }
    if explanation.adaptive is not None:     # --samples auto: the rows it took, and whether the target was met
        run_settings["rows_used"], run_settings["target_met"] = explanation.adaptive["rows"], explanation.target_met
    page = render_report(explanation, run_settings, label=explained, top_k=args.top_k)
    record = json.loads(explanation.to_json())
    record["run"] = run_settings
    check_out_dir(out_dir, inputs)           # again: the folder may have changed while we computed
    write_files(out_dir, {"report.html": page.encode("utf-8"),
                          "explanation.json": json.dumps(record, indent=1).encode("utf-8")})
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, explain, write; bad input -> message on stderr and exit status 2."""
    import matplotlib

    matplotlib.use("Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *rest, **kw: print(f"warning: {message}", file=sys.stderr)
        try:
            out_dir = explain_from_args(args)
        except UsageError as error:
            parser.error(str(error))
    size = (out_dir / "report.html").stat().st_size
    print(f"wrote {out_dir / 'report.html'} ({size} bytes) and {out_dir / 'explanation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
