"""Command line: saved models of the earlier layout, and the authors' checkpoints, into the saved layout.

Rewrite every model folder of the earlier layout (``model.safetensors`` with our wrappers' key
names + ``model.json``, no ``config.json``) below ``runs/`` as ``save_model`` writes it now
(``config.json`` + ``model.safetensors`` + ``model.json``)::

    python -m utils.model_related.convert legacy runs/

Folders of the earlier layout load without conversion too; converted ones also load with one
``from_pretrained`` call. A conversion interrupted at any point leaves folders that still load;
run the command again to finish it.

Import one of the authors' checkpoints (``torch.save`` files; see
:mod:`utils.model_related.authors`) as a saved model that the rest of the project (e.g.
``python -m utils.explain --model``) can use::

    python -m utils.model_related.convert authors genre_multimodal_3 --kind multimodal --task genre \\
        --profile paper --out runs/paper/genre/multimodal/best

Their class order is sklearn's ``LabelEncoder`` order, i.e. :data:`utils.config.TASKS` order.
Errors go to stderr with exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.config import MODEL_KINDS, PROFILES, TASKS, get_profile
from utils.model_related.models import (CONFIG_FILE, HF_CONFIG_FILE, WEIGHTS_FILE, hf_part, load_model,
                                        save_model)

ARCHITECTURE_KEYS = ("kind", "num_labels", "config", "audio_config", "lyrics_config")
"""``model.json`` entries that :func:`save_model` writes from the model itself."""
IN_PROGRESS_SUFFIXES = (".new", ".old", ".part")
"""Folders an interrupted atomic write leaves (never converted)."""


def earlier_layout_folders(root: str | Path) -> list[Path]:
    """Model folders at or below ``root`` with ``model.json`` and ``model.safetensors`` but no ``config.json``."""
    root = Path(root)
    found = set()
    for description in root.rglob(CONFIG_FILE):
        folder = description.parent
        if any(part.endswith(IN_PROGRESS_SUFFIXES) for part in folder.relative_to(root).parts):
            continue
        if (folder / WEIGHTS_FILE).is_file() and not (folder / HF_CONFIG_FILE).is_file():
            found.add(folder)
    return sorted(found)


def convert_legacy(root: str | Path) -> list[Path]:
    """Rewrite each of :func:`earlier_layout_folders` in place with :func:`save_model`; returns them.

    The weights are unchanged (only their names); ``model.json`` keeps its task, class names,
    profile and any other entry.
    """
    folders = earlier_layout_folders(root)
    for folder in folders:
        model, description = load_model(folder)
        save_model(model, folder, **{k: v for k, v in description.items() if k not in ARCHITECTURE_KEYS})
    return folders


def import_authors(path: str | Path, kind: str, task: str, profile_name: str, out_dir: str | Path) -> Path:
    """Load one of the authors' checkpoints and save it to ``out_dir`` for ``task`` and profile ``profile_name``."""
    from utils.model_related.authors import load_authors_checkpoint

    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    from utils.io import refuse_clobber

    refuse_clobber({"--out": [Path(out_dir) / name for name in ("config.json", "model.safetensors", "model.json")]
                    + [Path(out_dir)]}, {"FILE": path})
    model = load_authors_checkpoint(path, kind, get_profile(profile_name))
    outputs = hf_part(model).config.num_labels
    if outputs != len(TASKS[task]):
        raise ValueError(f"{path}: {outputs} outputs, but the {task} task has {len(TASKS[task])} classes")
    return save_model(model, out_dir, task=task, class_names=list(TASKS[task]), profile=profile_name,
                      source=f"authors' checkpoint {Path(path).name}")


def build_parser() -> argparse.ArgumentParser:
    """The ``legacy`` and ``authors`` subcommands."""
    parser = argparse.ArgumentParser(prog="python -m utils.model_related.convert", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    legacy = commands.add_parser("legacy", help="rewrite earlier-layout model folders below ROOT in place")
    legacy.add_argument("roots", nargs="+", type=Path, metavar="ROOT")
    authors = commands.add_parser("authors", help="save one of the authors' checkpoint files as a model folder")
    authors.add_argument("file", type=Path)
    authors.add_argument("--kind", required=True, choices=MODEL_KINDS)
    authors.add_argument("--task", required=True, choices=sorted(TASKS))
    authors.add_argument("--profile", default="paper", choices=sorted(PROFILES))
    authors.add_argument("--out", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; prints what it wrote. Bad input: message on stderr, exit status 1."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "legacy":
            for root in args.roots:
                if not root.is_dir():
                    raise FileNotFoundError(f"{root}: no such folder")
                converted = convert_legacy(root)
                print(f"{root}: {len(converted)} model folder(s) converted", *converted, sep="\n  ")
        else:
            out = import_authors(args.file, args.kind, args.task, args.profile, args.out)
            print(f"wrote {out} ({args.kind} model for {args.task}, {args.profile} profile)")
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
