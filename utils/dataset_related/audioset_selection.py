"""Which AudioSet segments the paper keeps: music-genre segments of exactly one target class.

:func:`read_segments` reads AudioSet's segment CSVs (``# ...`` comment lines, then
``YTID, start_seconds, end_seconds, "label,label"``); :func:`select_segments` keeps the
segments of the paper's genres (and their descendants in ``ontology.json`` via ``child_ids``)
minus a blacklist, mapped to the 7 classes of :data:`utils.config.AUDIOSET_GENRES` (folk =
country + folk, heavy music = metal split out of rock, rhythm music = jazz + reggae + rhythm
and blues).
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import pandas as pd

from utils.config import AUDIOSET_GENRES
from utils.dataset_related.corpus import FilterCounts
from utils.io import is_safe_id

TARGET_CLASSES: dict[str, str] = {
    "Hip hop music": "hip hop",
    "Country": "folk",
    "Folk music": "folk",
    "Electronic music": "electronic",
    "Jazz": "rhythm music",
    "Pop music": "pop",
    "Reggae": "rhythm music",
    "Rhythm and blues": "rhythm music",
    "Rock music": "rock",
    "Heavy metal": "heavy music",
}
"""AudioSet ontology class name -> our class. Descendants (``child_ids``) inherit the class;
the most specific target wins, so Heavy metal (a child of Rock music) is split out of rock."""

GENRE_ROOT = "Music genre"
YOUTUBE_ID_LENGTH = 11
"""A YouTube video id: a safe id (:data:`utils.io.SAFE_ID`) of exactly this many characters."""


def is_youtube_id(value: object) -> bool:
    """True for a YouTube video id: a safe id (:func:`utils.io.is_safe_id`) of :data:`YOUTUBE_ID_LENGTH` characters."""
    return is_safe_id(value) and len(value) == YOUTUBE_ID_LENGTH


# ================================================================== segments and ontology
def read_segments(paths: str | Path | Iterable[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """Read AudioSet segment CSVs (``balanced_train_segments.csv``, ``eval_segments.csv``, ...).

    Returns
    -------
    (DataFrame, list of str)
        Columns ``youtube_id``, ``start_seconds``, ``end_seconds`` (floats, seconds),
        ``labels`` (list of ontology ids), ``source`` (file name), in file order; and the
        malformed rows (wrong field count, bad id, bad or inverted times, no labels).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows, bad = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"AudioSet segments file not found: {path}")
        with path.open(newline="", encoding="utf-8") as fh:
            for line_no, fields in enumerate(csv.reader(fh, skipinitialspace=True), 1):
                if not fields or (fields[0].lstrip().startswith("#")):
                    continue
                where = f"{path.name} line {line_no}"
                if len(fields) != 4:
                    bad.append(f"{where}: {len(fields)} fields")
                    continue
                ytid, start, end, labels = (f.strip() for f in fields)
                if not is_youtube_id(ytid):
                    bad.append(f"{where}: bad YouTube id {ytid!r}")
                    continue
                try:
                    start_s, end_s = float(start), float(end)
                except ValueError:
                    bad.append(f"{where}: bad times {start!r}, {end!r}")
                    continue
                if not (0 <= start_s < end_s) or not math.isfinite(end_s):
                    bad.append(f"{where}: bad times {start!r}, {end!r}")
                    continue
                label_list = [x.strip() for x in labels.split(",") if x.strip()]
                if not label_list:
                    bad.append(f"{where}: no labels")
                    continue
                rows.append({"youtube_id": ytid, "start_seconds": start_s, "end_seconds": end_s,
                             "labels": label_list, "source": path.name})
    return pd.DataFrame(rows, columns=["youtube_id", "start_seconds", "end_seconds", "labels",
                                       "source"]), bad


def load_ontology(path: str | Path) -> dict[str, dict]:
    """AudioSet ``ontology.json`` (a list of ``{id, name, child_ids, ...}``) as ``{id: node}``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"AudioSet ontology not found: {path}")
    try:
        nodes = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(nodes, list):
        raise ValueError(f"{path}: expected a JSON list of ontology nodes")
    out = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or "id" not in node or "name" not in node:
            raise ValueError(f"{path}: node {i} has no id / name")
        node.setdefault("child_ids", [])
        out[node["id"]] = node
    return out


def ids_by_name(ontology: dict[str, dict], names: Iterable[str]) -> dict[str, str]:
    """``{name: id}`` for class names (case-insensitive); a clear error naming unknown ones."""
    lookup = {node["name"].lower(): node_id for node_id, node in ontology.items()}
    out, unknown = {}, []
    for name in names:
        if name.lower() in lookup:
            out[name] = lookup[name.lower()]
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"class name(s) not in the ontology: {unknown}")
    return out


def descendants(ontology: dict[str, dict], node_id: str) -> set[str]:
    """``node_id`` and every id below it (via ``child_ids``)."""
    seen, stack = set(), [node_id]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(ontology.get(current, {}).get("child_ids", []))
    return seen


def default_blacklist(ontology: dict[str, dict], targets: dict[str, str] = TARGET_CLASSES) -> list[str]:
    """Names of the other children of "Music genre" (classical, blues, soul, disco, ...):
    a segment that also carries one of them is not a clean example of its target genre.

    This list is our reading of "minus a blacklist of other classes"; the authors' exact
    blacklist is not published."""
    root = ids_by_name(ontology, [GENRE_ROOT])[GENRE_ROOT]
    target_ids = set(ids_by_name(ontology, targets).values())
    covered = set().union(*(descendants(ontology, t) for t in target_ids))
    return [ontology[c]["name"] for c in ontology[root]["child_ids"]
            if c in ontology and c not in covered]


def label_targets(ontology: dict[str, dict], targets: dict[str, str] = TARGET_CLASSES) -> dict[str, str]:
    """``{label id: target node id}``: each label under a target maps to its most specific
    target ancestor-or-self."""
    target_ids = ids_by_name(ontology, targets)
    mapping: dict[str, str] = {}
    # broad targets first so that deeper ones (Heavy metal under Rock music) overwrite them
    ordered = sorted(target_ids.values(), key=lambda t: -len(descendants(ontology, t)))
    for target in ordered:
        for label in descendants(ontology, target):
            mapping[label] = target
    return mapping


def select_segments(segments: pd.DataFrame, ontology: dict[str, dict],
                    targets: dict[str, str] = TARGET_CLASSES,
                    blacklist: Iterable[str] | None = None
                    ) -> tuple[pd.DataFrame, dict[str, list[str]], FilterCounts]:
    """Keep the segments of exactly one target class and no blacklisted class.

    A segment's classes come from its labels (:func:`label_targets`); a target that is an
    ancestor of another present target yields to it (rock + heavy metal -> heavy music).
    Segments of two or more classes are ambiguous and dropped. Duplicated segments (same
    video and start, e.g. in two CSVs) and further segments of an already kept video are
    dropped too. Everything dropped is returned by reason.

    Returns
    -------
    (DataFrame, dict, FilterCounts)
        Kept segments with ``id`` (``<youtube_id>_<start ms>``) and ``primary_short``;
        ``{reason: [segment ids]}``; class counts after each step.
    """
    blacklist = default_blacklist(ontology, targets) if blacklist is None else list(blacklist)
    label_to_target = label_targets(ontology, targets)
    target_ids = ids_by_name(ontology, targets)
    class_of_target = {target_ids[name]: cls for name, cls in targets.items()}
    black_ids = set()
    for node_id in ids_by_name(ontology, blacklist).values():
        black_ids |= descendants(ontology, node_id)
    below = {t: descendants(ontology, t) - {t} for t in class_of_target}

    df = segments.copy()
    df["id"] = [f"{y}_{int(round(s * 1000))}" for y, s in zip(df["youtube_id"], df["start_seconds"])]

    def classes_of(labels: list[str]) -> set[str]:
        present = {label_to_target[x] for x in labels if x in label_to_target}
        specific = {t for t in present if not any(o in below[t] for o in present if o != t)}
        return {class_of_target[t] for t in specific}

    classes = [classes_of(x) for x in df["labels"]]
    df["primary_short"] = [next(iter(c)) if len(c) == 1 else None for c in classes]
    problems: dict[str, list[str]] = defaultdict(list)
    counts = FilterCounts(AUDIOSET_GENRES)
    counts.add("segments read", df["primary_short"])

    dup = df["id"].duplicated(keep="first")
    problems["duplicate segment"] += [f"{i} (again in {s})" for i, s in
                                      zip(df.loc[dup, "id"], df.loc[dup, "source"])]
    df, classes = df.loc[~dup], [c for c, d in zip(classes, dup) if not d]
    counts.add("unique segments", df["primary_short"])

    n_classes = pd.Series([len(c) for c in classes], index=df.index)
    problems["no target genre"] += df.loc[n_classes == 0, "id"].tolist()
    problems["ambiguous: labels of several classes"] += df.loc[n_classes > 1, "id"].tolist()
    df = df.loc[n_classes == 1]
    counts.add("exactly one target class", df["primary_short"])

    blacklisted = df["labels"].map(lambda labels: any(x in black_ids for x in labels))
    problems["blacklisted class among labels"] += df.loc[blacklisted, "id"].tolist()
    df = df.loc[~blacklisted]
    counts.add("no blacklisted class", df["primary_short"])

    dup_video = df["youtube_id"].duplicated(keep="first")
    problems["another segment of the same video kept"] += df.loc[dup_video, "id"].tolist()
    df = df.loc[~dup_video]
    counts.add("one segment per video", df["primary_short"])
    return df.reset_index(drop=True), {k: v for k, v in problems.items() if v}, counts
