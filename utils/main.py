"""The main job: run the numbered notebooks top to bottom on one profile.

    python -m utils.main                 # tiny profile, full size (the README's main command)
    python -m utils.main --smoke         # tiny profile, smoke size (what CI runs)
    python -m utils.main --only 05 06    # just those notebooks

Each notebook is executed with papermill (its ``parameters`` cell overridden) from its own
folder, and the executed copy is written to ``<results>/notebooks/``. Notebook 11 needs the
authors' published aggregates: from ``--published DIR|URL``, else the directory in
``$MUSICLIME_PUBLISHED_DIR``, else the authors' repository URL (downloaded once into
``~/.cache/musiclime``). When none of these can be read (offline, nothing cached) it is skipped
with a message.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from utils.config import PROFILES, PROJECT_ROOT
from utils.results.published import SOURCE_URL_PATTERN, fetch_published

NOTEBOOKS = (
    "dataset_related/01_synthetic_corpus.ipynb",
    "dataset_related/02_music4all_refinement.ipynb",
    "dataset_related/03_audioset_refinement.ipynb",
    "dataset_related/04_extract_features.ipynb",
    "model_related/05_train_lyrics.ipynb",
    "model_related/06_train_audio.ipynb",
    "model_related/07_train_multimodal.ipynb",
    "model_related/08_evaluate.ipynb",
    "musiclime/09_local_explanations.ipynb",
    "musiclime/10_global_run.ipynb",
    "results/11_paper_figures.ipynb",
)
SMOKE = {"SONGS_PER_CLASS": 4, "EPOCHS": 1, "SMOKE": True}
PUBLISHED_ENV = "MUSICLIME_PUBLISHED_DIR"
"""Environment variable naming a local directory of the authors' published pickles."""


def published_unavailable(source: str, timeout: float = 20.0) -> str | None:
    """Why the published aggregates at ``source`` cannot be read, or None when they all can."""
    try:
        fetch_published(source, timeout=timeout)
    except (OSError, FileNotFoundError) as err:
        return str(err).split("; pass source=")[0]
    return None


def notebook_parameters(path: str, *, profile: str, seed: int, corpus_dir: str, run_dir: str | None,
                        results_dir: str, smoke: bool, published: str | None) -> dict:
    """Parameters to inject into notebook ``path``: only the names its parameters cell defines."""
    import nbformat

    notebook = nbformat.read(PROJECT_ROOT / path, as_version=4)
    cell = next((c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])), None)
    defined = set()
    if cell is not None:
        for line in cell.source.splitlines():
            name = line.split("=", 1)[0].strip()
            if "=" in line and name.isidentifier():
                defined.add(name)
    offered = {"PROFILE": profile, "SEED": seed, "CORPUS_DIR": corpus_dir, "RUN_DIR": run_dir,
               "RESULTS_DIR": results_dir, "PUBLISHED_SOURCE": published}
    if smoke:
        offered.update(SMOKE)
    return {k: v for k, v in offered.items() if k in defined and v is not None}


def run_notebook(path: str, parameters: dict, out_dir: Path, *, progress: bool = True) -> Path:
    """Execute one notebook with papermill from its folder; returns the executed copy's path."""
    import papermill

    source = PROJECT_ROOT / path
    if not source.is_file():
        raise FileNotFoundError(f"notebook not found: {source}")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / source.name
    papermill.execute_notebook(str(source), str(output), parameters=parameters, cwd=str(source.parent),
                               kernel_name="python3", progress_bar=progress, log_output=False)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a few songs, one epoch")
    parser.add_argument("--only", nargs="*", help="notebook numbers to run, e.g. 05 06")
    parser.add_argument("--corpus-dir", default=None, help="default: data/synthetic (smoke: data/smoke)")
    parser.add_argument("--run-dir", default=None, help="default: runs/<profile> (smoke: runs/smoke)")
    parser.add_argument("--results-dir", default=None, help="default: results (smoke: results/smoke)")
    parser.add_argument("--published", default=None,
                        help="directory or URL of the authors' published aggregates (for notebook 11); "
                             f"default ${PUBLISHED_ENV}, else the authors' repository URL (cached)")
    args = parser.parse_args(argv)

    corpus_dir = args.corpus_dir or ("data/smoke" if args.smoke else "data/synthetic")
    run_dir = args.run_dir or ("runs/smoke" if args.smoke else None)
    results_dir = args.results_dir or ("results/smoke" if args.smoke else "results")
    published = args.published or os.environ.get(PUBLISHED_ENV) or SOURCE_URL_PATTERN
    selected = [nb for nb in NOTEBOOKS if not args.only or Path(nb).name[:2] in args.only]
    timings = []
    started = time.time()
    for path in selected:
        if not (PROJECT_ROOT / path).is_file():
            print(f"-- {path}: not in this checkout, skipped")
            continue
        if path.startswith("results/11"):
            unavailable = published_unavailable(published)
            if unavailable:
                print(f"-- {path}: skipped ({unavailable}; pass --published DIR or set {PUBLISHED_ENV})")
                continue
        parameters = notebook_parameters(path, profile=args.profile, seed=args.seed, corpus_dir=corpus_dir,
                                         run_dir=run_dir, results_dir=results_dir, smoke=args.smoke,
                                         published=published)
        print(f"== {path} {parameters}", flush=True)
        begun = time.time()
        run_notebook(path, parameters, PROJECT_ROOT / results_dir / "notebooks")
        timings.append((path, time.time() - begun))
    print("\nnotebook                                             seconds")
    for path, seconds in timings:
        print(f"{path:52s} {seconds:7.1f}")
    print(f"{'total':52s} {time.time() - started:7.1f}")
    table = PROJECT_ROOT / results_dir / "results_table.md"
    if table.is_file():
        print("\n" + table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
