"""The shape of ``utils/``: data flows one way through the layers, and modules stay short.

Layers, in the order data flows through them (a module may import its own layer and the ones
before it, never a later one):

0. ``config``, ``io``, ``plotting``, ``resources`` (the base)
1. ``dataset_related``  2. ``model_related``  3. ``musiclime``  4. ``results``

The command-line modules ``main``, ``explain`` (with ``explain_model``), ``global_run``, ``benchmark``,
``compare``, ``paper_check``, ``scale_benchmark`` and ``paper_cost`` sit on top and
may import anything; nothing may import them. The notebooks' steps (``model_related.pipeline``)
sit on top too: only the command lines and their own package's public surface import them.
Imports inside functions count as well.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "utils"
LAYERS = {"config": 0, "io": 0, "plotting": 0, "resources": 0, "__init__": 0,
          "dataset_related": 1, "model_related": 2, "musiclime": 3, "results": 4}
COMMAND_LINES = {"main", "explain", "explain_model", "global_run", "benchmark", "compare", "paper_check",
                 "scale_benchmark", "paper_cost"}
NOTEBOOK_STEPS = {"utils.model_related.pipeline": "utils.model_related"}
"""Notebook-steps module -> the package whose ``__init__`` (public surface) may import it."""
TOP = max(LAYERS.values()) + 1
MAX_LINES = 450


def _layer(module: str, imported: bool = False) -> int | None:
    """Layer of a dotted name inside ``utils`` (``utils.musiclime.predict`` -> 3); None for ``utils`` itself.

    As an import target (``imported``) a notebook-steps module counts as a command line.
    """
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in COMMAND_LINES or (imported and module in NOTEBOOK_STEPS):
        return TOP
    if parts[1] not in LAYERS:
        raise KeyError(f"{module}: utils.{parts[1]} belongs to no layer; add it to LAYERS or COMMAND_LINES")
    return LAYERS[parts[1]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path):
    """(line, dotted target) of every import of a ``utils`` module in ``path``, relative ones resolved."""
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            # ``from utils import musiclime`` names a module; ``from utils.x import f`` names x
            targets = [f"{base}.{alias.name}" if base == "utils" else base for alias in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target == "utils" or target.startswith("utils."):
                yield node.lineno, target


def layer_violations(root: Path = ROOT) -> list[str]:
    """``file:line -> module`` for every import from a later layer (or of a command line) under ``root/utils``."""
    found = []
    for path in sorted((root / "utils").rglob("*.py")):
        name = _module_name(path, root)
        importer = _layer(name)
        if importer is None or importer == TOP:
            continue
        for line, target in _imports(path, root):
            wanted = _layer(target, imported=True)
            if NOTEBOOK_STEPS.get(target) == name:
                continue
            if wanted is not None and wanted > importer:
                what = "a command line or the notebook steps" if wanted == TOP else f"layer {wanted}"
                found.append(f"{path.relative_to(root)}:{line} -> {target} (layer {importer} imports {what})")
    return found


def long_modules(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted((root / "utils").rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append(f"{path.relative_to(root)}: {lines} lines")
    return found


def test_no_module_imports_a_later_layer():
    violations = layer_violations()
    assert not violations, "imports running back up the layers:\n" + "\n".join(violations)


def test_the_layer_check_catches_a_backward_import(tmp_path):
    package = tmp_path / "utils" / "model_related"
    package.mkdir(parents=True)
    (tmp_path / "utils" / "__init__.py").write_text("")
    (tmp_path / "utils" / "main.py").write_text("from utils.results import figures\n")
    (package / "__init__.py").write_text("from utils.model_related.pipeline import run\n")
    (package / "pipeline.py").write_text("import numpy\nfrom utils.config import TASKS\n\n\n"
                                         "def run():\n    from utils.musiclime.predict import load_predictor\n"
                                         "    from ..results import figures\n    from utils import musiclime\n")
    (tmp_path / "utils" / "musiclime").mkdir()
    (tmp_path / "utils" / "musiclime" / "predict.py").write_text("from utils.model_related import models\n"
                                                                 "from utils.model_related.pipeline import run\n")
    assert layer_violations(tmp_path) == [
        "utils/model_related/pipeline.py:6 -> utils.musiclime.predict (layer 2 imports layer 3)",
        "utils/model_related/pipeline.py:7 -> utils.results (layer 2 imports layer 4)",
        "utils/model_related/pipeline.py:8 -> utils.musiclime (layer 2 imports layer 3)",
        "utils/musiclime/predict.py:2 -> utils.model_related.pipeline "
        "(layer 3 imports a command line or the notebook steps)",
    ]


def test_no_module_is_over_the_size_limit():
    too_long = long_modules()
    assert not too_long, f"modules over {MAX_LINES} lines:\n" + "\n".join(too_long)
