"""Global aggregation of local MusicLIME explanations (after van der Linden et al. 2019).

Read top to bottom:

1. :func:`accumulate` -- records (one local explanation per song) -> ``W[c][j]`` (sum of
   ``|weight|``) and ``C[c][j]`` (how many songs kept feature ``j``), per explained class ``c``.
2. :func:`measures` -- ``W``, ``C`` -> a tidy table with ``I_LIME = sqrt(W)``, ``I_AVG = W / C`` and
   the homogeneity-weighted ``I_H = (1 - Hn) * I_LIME`` of every (class, feature).
3. The record store for long global runs: an append-only JSON-lines file, one record per song,
   written with one ``os.write`` + ``fsync`` per line (:func:`append_record`), read back by
   :func:`load_records` (which drops and truncates away a half-written last line), driven by
   :func:`run_global` (resumes, shards) and combined by :func:`merge_records`.

A *record* is a dict::

    {"id": "song-1",                       # str, unique
     "label": 4,                           # explained class index (the authors: predicted class)
     "probabilities": [0.1, ...],          # model output for the song (optional)
     "weights": {"vocals0": 0.03, "love": -0.01, ...},   # LIME weight per feature
     "modality": {"vocals0": "audio", "love": "lyrics"}, # optional
     "settings": {"num_samples": 5000, ...}}             # optional

Audio feature names are stem + segment index (``'vocals0'`` .. ``'other9'``); any other name is a
lyric word.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from utils.config import STEMS

AUDIO_FEATURE = re.compile(r"^(" + "|".join(STEMS) + r")(\d+)$")
"""Matches audio component names: a stem name followed by the segment index."""

MEASURE_COLUMNS = ["class", "feature", "modality", "stem", "segment", "W", "C", "I_LIME", "I_AVG", "I_H"]


def parse_feature(name: str) -> tuple[str, str | None, int | None]:
    """``'drums3'`` -> ``('audio', 'drums', 3)``; any other name -> ``('lyrics', None, None)``."""
    match = AUDIO_FEATURE.match(name)
    if match:
        return "audio", match.group(1), int(match.group(2))
    return "lyrics", None, None


# ---------------------------------------------------------------- 1. accumulate
def explained_class(record: Mapping, label_key: str = "label") -> int:
    """Class index a record is aggregated under.

    ``label_key`` names a record field holding a class index; the special value ``'predicted'``
    uses ``record['predicted']`` when present, else ``argmax(record['probabilities'])``.
    """
    rid = record.get("id", "<no id>")
    if label_key == "predicted" and "predicted" not in record:
        probabilities = record.get("probabilities")
        if probabilities is None or len(probabilities) == 0:
            raise ValueError(f"record {rid!r}: label_key='predicted' needs 'probabilities'")
        return int(np.argmax(np.asarray(probabilities, dtype=float)))
    if label_key not in record:
        raise ValueError(f"record {rid!r} has no {label_key!r} field (keys: {sorted(record)})")
    value = record[label_key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"record {rid!r}: {label_key}={value!r} is not a class index")
    return int(value)


def accumulate(records: Iterable[Mapping], positive_only: bool = True, label_key: str = "label",
               ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, int]]]:
    """Sum ``|weight|`` and count appearances per (explained class, feature).

    Follows the authors: each song's explanation is for its predicted class (the record's
    ``label``), and only components with weight ``> 0`` are kept (``positive_only=True``; with
    ``False`` every non-zero weight counts, by its absolute value).

    Parameters
    ----------
    records : iterable of dict
        See the module docstring; needs ``id``, the ``label_key`` field and ``weights``.
    positive_only : bool
        Keep only weights ``> 0`` (the authors' ``negative_components=False``).
    label_key : str
        Record field holding the class index; ``'predicted'`` = argmax of ``probabilities``.

    Returns
    -------
    W : dict[int, dict[str, float]]
        class index -> feature -> sum of ``|w|``.
    C : dict[int, dict[str, int]]
        class index -> feature -> number of songs that kept the feature.

    Notes
    -----
    When a record's ``modality`` map calls a feature ``'lyrics'`` although its name looks like
    an audio component (a lyric word such as ``'other1'``), it is stored under
    ``'<name> (word)'`` so it is never mixed with the audio component (a warning says so).
    """
    weights_sum: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        rid = record.get("id", "<no id>")
        if "weights" not in record or not isinstance(record["weights"], Mapping):
            raise ValueError(f"record {rid!r} has no 'weights' mapping")
        cls = explained_class(record, label_key)
        modality = record.get("modality") or {}
        for name, weight in record["weights"].items():
            weight = float(weight)
            if not math.isfinite(weight):
                raise ValueError(f"record {rid!r}: weight of {name!r} is {weight}")
            if weight == 0.0 or (positive_only and weight < 0.0):
                continue
            key = str(name)
            if modality.get(name) == "lyrics" and AUDIO_FEATURE.match(key):
                warnings.warn(f"record {rid!r}: lyric word {key!r} looks like an audio component; "
                              f"aggregated as {key + ' (word)'!r}")
                key = key + " (word)"
            weights_sum[cls][key] += abs(weight)
            counts[cls][key] += 1
    return ({c: dict(f) for c, f in sorted(weights_sum.items())},
            {c: dict(f) for c, f in sorted(counts.items())})


def merge_word_variants(W: Mapping[int, Mapping[str, float]], C: Mapping[int, Mapping[str, int]],
                        normalise: Callable[[str], str] = str.lower,
                        ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, int]]]:
    """Merge lyric words that ``normalise`` maps to the same key (sums of W and of C).

    Audio components are left alone. With the default ``str.lower``, ``'Bitch'`` and ``'bitch'``
    become one feature whose ``I_AVG`` is ``(W1 + W2) / (C1 + C2)``. The authors' M4A word bars
    also merged inflections (``'niggas'`` -> ``'nigga'``); pass a lemmatiser as ``normalise``
    to do the same.
    """
    merged_w: dict[int, dict[str, float]] = {}
    merged_c: dict[int, dict[str, int]] = {}
    for cls, features in W.items():
        out_w: dict[str, float] = defaultdict(float)
        out_c: dict[str, int] = defaultdict(int)
        for name, value in features.items():
            key = name if AUDIO_FEATURE.match(name) else normalise(name)
            out_w[key] += float(value)
            out_c[key] += int(C[cls][name])
        merged_w[cls], merged_c[cls] = dict(out_w), dict(out_c)
    return merged_w, merged_c


# ---------------------------------------------------------------- 2. measures
def measures(W: Mapping[int, Mapping[str, float]], C: Mapping[int, Mapping[str, int]],
             class_names: Sequence[str]) -> pd.DataFrame:
    """The three global importance measures of every (class, feature) with ``C > 0``.

    Parameters
    ----------
    W, C : dict[int, dict[str, float | int]]
        From :func:`accumulate` or :func:`utils.results.published.load_published_pair`.
    class_names : sequence of str
        ``class_names[i]`` names class index ``i``.

    Returns
    -------
    pandas.DataFrame
        Columns ``class`` (categorical, categories = ``class_names`` in order), ``feature``,
        ``modality`` (``'audio'`` | ``'lyrics'``), ``stem``, ``segment`` (``<NA>`` for words),
        ``W``, ``C`` and

        * ``I_LIME = sqrt(W)``
        * ``I_AVG = W / C``
        * ``I_H = (1 - Hn) * I_LIME`` with ``p[c][j] = I_LIME[c][j] / sum_c' I_LIME[c'][j]``,
          ``H[j] = -sum_c p log2 p`` (``p = 0`` terms skipped) and ``Hn`` = ``H`` min-max
          normalised over all features (all ``Hn = 0`` when every ``H`` is equal).

        Rows are sorted by class index, then feature name.

    Raises
    ------
    ValueError
        Empty aggregates, a class index outside ``class_names``, a feature in W without a
        positive count in C, or a negative W.
    """
    class_names = [str(c) for c in class_names]
    rows = []
    for cls in sorted(W):
        if not 0 <= int(cls) < len(class_names):
            raise ValueError(f"class index {cls} has no name (class_names has {len(class_names)} entries)")
        for feature, w in W[cls].items():
            count = C.get(cls, {}).get(feature, 0)
            if count <= 0:
                raise ValueError(f"class {cls} ({class_names[cls]}), feature {feature!r}: W={w} but C={count}")
            if w < 0:
                raise ValueError(f"class {cls}, feature {feature!r}: W={w} < 0 (W sums |weights|)")
            rows.append((int(cls), str(feature), float(w), int(count)))
    if not rows:
        raise ValueError("empty aggregates: no (class, feature) with a count")
    table = pd.DataFrame(rows, columns=["class_index", "feature", "W", "C"])
    table["I_LIME"] = np.sqrt(table["W"])
    table["I_AVG"] = table["W"] / table["C"]
    totals = table.groupby("feature")["I_LIME"].transform("sum")
    p = np.where(totals > 0, table["I_LIME"] / totals.where(totals > 0, 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    entropy = pd.Series(terms, index=table.index).groupby(table["feature"]).sum()
    span = entropy.max() - entropy.min()
    normalised = (entropy - entropy.min()) / span if span > 0 else entropy * 0.0
    table["I_H"] = (1.0 - table["feature"].map(normalised)) * table["I_LIME"]
    parsed = [parse_feature(f) for f in table["feature"]]
    table["modality"] = [m for m, _, _ in parsed]
    table["stem"] = pd.array([s for _, s, _ in parsed], dtype="string")
    table["segment"] = pd.array([k for _, _, k in parsed], dtype="Int64")
    table["class"] = pd.Categorical.from_codes(table["class_index"], categories=class_names)
    table = table.sort_values(["class_index", "feature"], kind="stable").reset_index(drop=True)
    return table[MEASURE_COLUMNS]


def global_measures(records: Iterable[Mapping], class_names: Sequence[str], positive_only: bool = True,
                    label_key: str = "label") -> pd.DataFrame:
    """``measures(*accumulate(records, positive_only, label_key), class_names)``."""
    return measures(*accumulate(records, positive_only=positive_only, label_key=label_key), class_names)


def modality_shares(table: pd.DataFrame, value: str = "W") -> pd.DataFrame:
    """Share of each class's total ``value`` carried by audio and by lyric features.

    Returns a DataFrame indexed by class name (classes with rows only) with columns
    ``audio`` and ``lyrics``; each row sums to 1.
    """
    table = _non_empty(table, value)
    sums = table.groupby(["class", "modality"], observed=True)[value].sum().unstack("modality", fill_value=0.0)
    sums = sums.reindex(columns=["audio", "lyrics"], fill_value=0.0)
    return _row_shares(sums, value)


def stem_shares(table: pd.DataFrame, value: str = "W") -> pd.DataFrame:
    """Share of each class's audio ``value`` carried by each stem (columns = ``STEMS``, rows sum to 1)."""
    table = _non_empty(table, value)
    audio = table[table["modality"] == "audio"]
    if audio.empty:
        raise ValueError("no audio features in the table: stem shares need audio components")
    sums = audio.groupby(["class", "stem"], observed=True)[value].sum().unstack("stem", fill_value=0.0)
    return _row_shares(sums.reindex(columns=list(STEMS), fill_value=0.0), value)


def _non_empty(table: pd.DataFrame, value: str) -> pd.DataFrame:
    if table is None or len(table) == 0:
        raise ValueError("empty aggregate table")
    if value not in table.columns:
        raise ValueError(f"unknown value column {value!r}; choose one of {MEASURE_COLUMNS[5:]}")
    return table


def _row_shares(sums: pd.DataFrame, value: str) -> pd.DataFrame:
    totals = sums.sum(axis=1)
    if (totals <= 0).any():
        raise ValueError(f"classes {list(totals[totals <= 0].index)} have zero total {value}")
    shares = sums.div(totals, axis=0)
    shares.index = shares.index.astype(str)
    shares.columns = shares.columns.astype(str)
    return shares


# ---------------------------------------------------------------- 3. record store
def _json_default(obj):
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def append_record(path: str | os.PathLike, record: Mapping) -> None:
    """Append one record as one JSON line: a single ``os.write`` of the whole line, then ``fsync``.

    A process killed during the call leaves either nothing or a partial last line without its
    newline, which :func:`load_records` drops.
    """
    line = (json.dumps(record, sort_keys=True, default=_json_default) + "\n").encode("utf-8")
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def load_records(path: str | os.PathLike, repair: bool = True) -> list[dict]:
    """Read a records file written by :func:`append_record`.

    A last line without its trailing newline, or one that is not valid JSON, is a write cut
    short by a kill: it is dropped (with a warning) and, when ``repair``, truncated away so
    that later appends start on a clean line; that song is redone by :func:`run_global`.
    Duplicate ids keep the first record (warning). A missing file gives ``[]``.

    Raises
    ------
    ValueError
        A bad line that is not the last one, or a record without a string ``id``
        (names the file and line number).
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")   # the last element is b"" when the file ends with a newline
    complete, tail = lines[:-1], lines[-1]
    good_bytes = len(data) - len(tail)
    parsed: list[dict] = []
    for number, raw in enumerate(complete, start=1):
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if number == len(complete) and not tail:
                warnings.warn(f"{path}: dropping unparsable last line {number} ({err}); that song will be redone")
                good_bytes -= len(raw) + 1
                break
            raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise ValueError(f"{path}, line {number}: a record must be a JSON object with a string 'id'")
        parsed.append(record)
    if tail:
        warnings.warn(f"{path}: dropping a half-written last line ({len(tail)} bytes); that song will be redone")
    if repair and good_bytes < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
            handle.flush()
            os.fsync(handle.fileno())
    records: list[dict] = []
    seen: set[str] = set()
    for record in parsed:
        if record["id"] in seen:
            warnings.warn(f"{path}: duplicate record id {record['id']!r}; keeping the first")
            continue
        seen.add(record["id"])
        records.append(record)
    return records


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``'2/3'`` or ``(2, 3)`` -> ``(2, 3)`` (1-based shard ``k`` of ``n``); ``None`` -> ``(1, 1)``."""
    if shard is None:
        return 1, 1
    try:
        k, n = (int(x) for x in shard.split("/")) if isinstance(shard, str) else (int(shard[0]), int(shard[1]))
    except (ValueError, TypeError, IndexError):
        raise ValueError(f"shard must be 'k/n' or (k, n), got {shard!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {shard!r}: need 1 <= k <= n")
    return k, n


def shard_of(song_id: str, n: int) -> int:
    """1-based shard of ``song_id`` among ``n``: ``zlib.crc32(id as UTF-8) % n + 1``.

    CRC-32 is stable across processes and Python versions (unlike ``hash``), so every machine
    puts a song in the same shard.
    """
    return zlib.crc32(song_id.encode("utf-8")) % n + 1


def _item_id(item, position: int) -> str:
    try:
        song_id = item["id"]
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"item {position} has no 'id'") from None
    if not isinstance(song_id, str) or not song_id:
        raise ValueError(f"item {position}: id {song_id!r} is not a non-empty string")
    return song_id


SETTINGS_DEFAULTS = {"sampling": "iid"}
"""Settings a record made before they existed implicitly had (i.i.d. explanations carry no
``sampling`` key)."""


def settings_conflict(records: Iterable[Mapping], settings: Mapping) -> str | None:
    """Why ``records`` cannot be resumed with run ``settings`` (None: they can).

    A conflict is a key in both a record's ``settings`` and ``settings`` with different
    values; a record made before a key existed counts as having its default
    (:data:`SETTINGS_DEFAULTS`).
    """
    for record in records:
        stored = {**SETTINGS_DEFAULTS, **(record.get("settings") or {})}
        for key, value in settings.items():
            if key in stored and stored[key] != json.loads(json.dumps(value, default=_json_default)):
                return f"record {record['id']!r} was made with {key}={stored[key]!r}, this run uses {key}={value!r}"
    return None


def run_global(items: Iterable[Mapping], explain_fn: Callable[[Mapping], Mapping],
               records_path: str | os.PathLike, shard: str | tuple[int, int] | None = None,
               settings: Mapping | None = None, progress: bool = True) -> list[dict]:
    """Explain every item of this shard once, appending one record per song; resumable.

    Parameters
    ----------
    items : iterable of mappings with an ``'id'`` (str)
        The songs, e.g. ``read_split(...).to_dict('records')``.
    explain_fn : callable
        ``explain_fn(item) -> record`` (see the module docstring). ``id`` is filled in when
        missing and must equal the item's otherwise.
    records_path : path
        JSON-lines file (created if missing). Ids already in it are skipped, so re-running after
        a crash or kill continues where it stopped; a half-written last line is repaired first.
    shard : ``'k/n'`` or ``(k, n)``, optional
        Take only the items with :func:`shard_of` ``(id, n) == k`` (``crc32(id) % n == k - 1``).
        Different shards can run on different machines into different files; combine them with
        :func:`merge_records`.
    settings : dict, optional
        Run settings (``num_samples``, seed, model, ...) stored in every record's ``settings``.
        Resuming with settings that differ from those already in the file raises ``ValueError``.
    progress : bool
        Show a tqdm bar (with ETA) over this shard's songs.

    Returns
    -------
    list of dict
        This shard's records in ``items`` order (earlier runs' records included).
    """
    from tqdm.auto import tqdm

    k, n = parse_shard(shard)
    settings = dict(settings or {})
    records_path = Path(records_path)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    done = {r["id"]: r for r in load_records(records_path, repair=True)}
    conflict = settings_conflict(done.values(), settings)
    if conflict:
        raise ValueError(f"{records_path}: {conflict}; use another records file")
    mine: list[tuple[str, Mapping]] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        song_id = _item_id(item, position)
        if song_id in seen:
            raise ValueError(f"duplicate item id {song_id!r} in items")
        seen.add(song_id)
        if shard_of(song_id, n) == k:
            mine.append((song_id, item))
    already = sum(song_id in done for song_id, _ in mine)
    bar = tqdm(total=len(mine), initial=already, desc=f"global run, shard {k}/{n}", unit="song",
               disable=not progress)
    try:
        for song_id, item in mine:
            if song_id in done:
                continue
            record = dict(explain_fn(item))
            record.setdefault("id", song_id)
            if record["id"] != song_id:
                raise ValueError(f"explain_fn returned id {record['id']!r} for item {song_id!r}")
            if settings:
                record["settings"] = {**(record.get("settings") or {}), **settings}
            # normalise numpy types now so the in-memory record equals the stored one
            record = json.loads(json.dumps(record, sort_keys=True, default=_json_default))
            append_record(records_path, record)
            done[song_id] = record
            bar.update(1)
    finally:
        bar.close()
    return [done[song_id] for song_id, _ in mine]


def merge_records(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """Combine records files (e.g. one per shard) into one list sorted by id.

    The same id in several files is kept once when its ``label`` and ``weights`` agree; if they
    differ, ``ValueError`` names the id and both files. Because ``W`` and ``C`` are recomputed
    from the records (:func:`accumulate`), the order of ``paths`` does not matter.
    """
    merged: dict[str, tuple[dict, Path]] = {}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"records file {path} does not exist")
        for record in load_records(path, repair=False):
            song_id = record["id"]
            if song_id in merged:
                first, first_path = merged[song_id]
                if first.get("weights") != record.get("weights") or first.get("label") != record.get("label"):
                    raise ValueError(f"record {song_id!r} differs between {first_path} and {path} "
                                     f"(label or weights)")
                continue
            merged[song_id] = (record, path)
    return [merged[song_id][0] for song_id in sorted(merged)]
