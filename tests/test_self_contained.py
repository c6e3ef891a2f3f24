"""The project never needs anything beside its own folder (no sibling reference directory)."""
from __future__ import annotations

import re
from pathlib import Path

from utils.dataset_related import music4all

ROOT = Path(__file__).resolve().parents[1]
SCANNED = {".py", ".ipynb", ".md", ".txt", ".ini", ".cfg", ".toml", ".json", ".sh", ""}
# .ci/ is the one exception: CI points MUSICLIME_PUBLISHED_DIR at the reference copy beside the checkout
SKIPPED_DIRS = {".ci", ".git", "data", "runs", "cache", "notebooks", "smoke", "__pycache__", ".ipynb_checkpoints",
                "venv", ".venv", "node_modules"}
SIBLING = "sha" + "red"       # spelled in two parts so that this file does not match itself
PATTERNS = [
    re.compile(r"\.\./+" + SIBLING + r"\b"),                          # ../<sibling>, ../../<sibling>
    re.compile(r"""/\s*["']""" + SIBLING + r"""["']"""),              # path / "<sibling>"
    re.compile(r"""["']""" + SIBLING + r"""/reference"""),            # "<sibling>/reference/..."
]


def _project_files():
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts[:-1])
        if path.is_file() and not parts & SKIPPED_DIRS and path.suffix in SCANNED:
            yield path


def test_no_file_refers_to_a_sibling_reference_folder():
    offending = []
    for path in _project_files():
        if path.stat().st_size > 5_000_000:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in PATTERNS):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not offending, "references outside the project:\n" + "\n".join(offending)


def test_the_scan_catches_a_reference():
    line = 'RULES = ROOT.parent / "' + SIBLING + '" / "reference" / "rules.json"'
    assert any(p.search(line) for p in PATTERNS)
    assert any(p.search("see ../" + SIBLING + "/reference/PAPER.md") for p in PATTERNS)
    assert not any(p.search("a shared cache, shared by tests") for p in PATTERNS)


def test_genre_rules_ship_inside_the_project():
    path = music4all.DEFAULT_RULES_PATH
    assert path.is_file() and path.resolve().is_relative_to(ROOT)
    rules = music4all.load_genre_rules()
    assert rules["order"][:3] == ["pop", "rock", "alternative rock"]
    assert sorted(set(rules["to_class"].values())) == sorted(music4all.GENRES)
