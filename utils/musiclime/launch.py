"""Global runs under a launcher: one process per device (torchrun, accelerate) or per Slurm array task.

Read top to bottom:

1. :func:`launch_from_env` -- which shard this process is, from the launcher's plain environment
   variables (no ``torch.distributed`` initialisation): ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``
   (set by torchrun and by ``accelerate launch``), and ``SLURM_ARRAY_TASK_ID`` /
   ``SLURM_ARRAY_TASK_MIN`` / ``SLURM_ARRAY_TASK_MAX`` / ``SLURM_ARRAY_TASK_COUNT`` (a Slurm
   array); both at once give ``tasks x ranks`` shards. Rank ``r`` is shard ``r + 1`` of ``n``
   (:func:`utils.musiclime.global_explain.shard_of`, the same songs as ``--shard r+1/n``).
2. :func:`shard_paths` -- each shard writes its own records file ``<stem>.shard{k}of{n}<suffix>``
   beside ``<records>`` and, once every song of the shard has a record, a completion marker
   ``<stem>.shard{k}of{n}.done.json`` (:func:`write_marker`: the shard's ids with their positions in
   the run's song list, a hash of that list, the run settings, the records file's sha256).
3. :func:`merge_shards` -- the ``n`` shard files into ``<records>``, in the single-process order
   (song-list positions) and byte for byte what one process writes; refuses a missing or
   incomplete shard, a shard file changed after it completed, and mixed settings or song lists,
   naming the files.
4. :func:`finish_shard` -- called by every process when its shard is complete: writes the
   marker, then, under a lock, merges when every marker is there. So *the last process to
   finish merges*; nobody waits. Why not rank 0 polling, or a ``torch.distributed`` barrier:
   shards of a real run finish hours apart (a barrier would time out), array tasks of Slurm
   never share a process group, and a rank that dies must not leave the others hanging; with
   markers a rerun of the dead rank resumes its shard and then merges. The marker is written
   before the lock is taken, so whichever process writes the last marker sees all of them.
5. :func:`run_launched` -- one process of a launched run: its shard, then :func:`finish_shard`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from utils.io import atomic_write, atomic_write_json, file_sha256, json_default, jsonl_line

MERGE_LOCK_TIMEOUT_S = 600.0
"""How long a finishing process waits for another one's merge (seconds); a merge takes seconds."""

_SHARD_NAME = re.compile(r"\.shard\d+of\d+(\.done)?$")


# ---------------------------------------------------------------- 1. the launcher's environment
@dataclass(frozen=True)
class Launch:
    """This process's place in a launched run.

    Attributes
    ----------
    rank, world_size : int
        0-based index of this process among ``world_size`` (Slurm array tasks x launcher ranks).
    local_rank : int
        Index on this machine (its GPU: ``cuda:<local_rank>``).
    source : str
        What set it, for messages (``'torchrun/accelerate'``, ``'slurm array'``, both joined by ``' x '``).
    """

    rank: int
    world_size: int
    local_rank: int = 0
    source: str = ""

    @property
    def shard(self) -> tuple[int, int]:
        """``(k, n)``: the 1-based shard of the global run this process explains."""
        return self.rank + 1, self.world_size


def _env_int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={environ[name]!r} is not an integer") from None


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """This process's :class:`Launch` from the launcher's environment variables; None when not launched.

    ``RANK`` and ``WORLD_SIZE`` (torchrun, ``accelerate launch``; ``LOCAL_RANK`` optional) and a
    Slurm array (``SLURM_ARRAY_TASK_ID`` with ``SLURM_ARRAY_TASK_COUNT``; ``_MIN`` / ``_MAX`` to
    number the tasks from 0) may be combined: array task ``t`` of ``T`` with rank ``r`` of ``R``
    is process ``t * R + r`` of ``T * R``.

    Raises
    ------
    ValueError
        Only one of ``RANK`` / ``WORLD_SIZE``, a non-integer value, a rank outside ``[0, world)``,
        an array without its task count, or an array with a step or holes (``--array 0-9:2``).
    """
    environ = os.environ if environ is None else environ
    rank, world, local, sources = 0, 1, 0, []
    if "RANK" in environ or "WORLD_SIZE" in environ:
        if not ("RANK" in environ and "WORLD_SIZE" in environ):
            raise ValueError("the launcher set only one of RANK and WORLD_SIZE; both are needed to pick a shard")
        rank, world = _env_int(environ, "RANK"), _env_int(environ, "WORLD_SIZE")
        local = _env_int(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else 0
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
        sources.append("torchrun/accelerate")
    if "SLURM_ARRAY_TASK_ID" in environ:
        if "SLURM_ARRAY_TASK_COUNT" not in environ:
            raise ValueError("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT")
        task, count = _env_int(environ, "SLURM_ARRAY_TASK_ID"), _env_int(environ, "SLURM_ARRAY_TASK_COUNT")
        low = _env_int(environ, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in environ else 0
        high = _env_int(environ, "SLURM_ARRAY_TASK_MAX") if "SLURM_ARRAY_TASK_MAX" in environ else low + count - 1
        if high - low + 1 != count or not low <= task <= high:
            raise ValueError(f"Slurm array {low}-{high} with {count} tasks (task {task}): use a contiguous "
                             "array such as --array=0-7, one task per shard")
        rank, world = (task - low) * world + rank, count * world
        sources.insert(0, "slurm array")
    if not sources:
        return None
    return Launch(rank, world, local, " x ".join(sources))


def launch_device(launch: Launch | None, device: str) -> str:
    """The torch device of this process: ``cuda:<local_rank>`` when ``device`` resolves to CUDA under a
    launcher (one process per GPU), else ``device`` resolved."""
    from utils.config import resolve_device

    device = resolve_device(device)
    if launch is not None and device == "cuda":
        return f"cuda:{launch.local_rank}"
    return device


# ---------------------------------------------------------------- 2. one shard's files
def shard_paths(records: str | os.PathLike, k: int, n: int) -> tuple[Path, Path]:
    """``(records file, completion marker)`` of shard ``k`` of ``n`` of the run merging into ``records``.

    ``results/x.jsonl`` -> ``results/x.shard2of4.jsonl`` and ``results/x.shard2of4.done.json``.
    Derived from the records path only (never from song ids).
    """
    records = Path(records)
    stem = records.name[:-len(records.suffix)] if records.suffix else records.name
    if _SHARD_NAME.search(stem):
        raise ValueError(f"--records {records}: the name looks like a shard file (.shardKofN); give the merged "
                         "records path")
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: need 1 <= k <= n")
    return (records.with_name(f"{stem}.shard{k}of{n}{records.suffix}"),
            records.with_name(f"{stem}.shard{k}of{n}.done.json"))


def selection_hash(song_ids: Sequence[str]) -> str:
    """sha256 of the run's song list (ids in order): every shard of a run must share it."""
    return hashlib.sha256(json.dumps(list(song_ids)).encode("utf-8")).hexdigest()


def write_marker(marker: str | os.PathLike, shard_file: str | os.PathLike, k: int, n: int,
                 song_ids: Sequence[str], mine: Sequence[str], settings: Mapping) -> Path:
    """The completion marker of shard ``k``/``n`` (atomic JSON).

    ``song_ids``: the run's whole song list in order; ``mine``: this shard's ids (each must be in it).
    """
    position = {song_id: i for i, song_id in enumerate(song_ids)}
    shard_file = Path(shard_file)
    payload = {"shard": [k, n], "records_file": shard_file.name,
               "sha256": file_sha256(shard_file) if shard_file.exists() else None,
               "songs": len(song_ids), "selection_sha256": selection_hash(song_ids),
               "positions": [[position[song_id], song_id] for song_id in mine],
               "settings": json.loads(json.dumps(dict(settings), sort_keys=True, default=json_default))}
    return atomic_write_json(marker, payload, indent=1)


# ---------------------------------------------------------------- 3. merging
class ShardsIncomplete(RuntimeError):
    """Some shard of a launched run has not finished: the merge is not possible yet."""


def missing_shards(records: str | os.PathLike, n: int) -> list[int]:
    """The shards ``k`` (1-based) of ``n`` without a completion marker."""
    return [k for k in range(1, n + 1) if not shard_paths(records, k, n)[1].is_file()]


def shard_count(records: str | os.PathLike) -> int:
    """The ``n`` of the shard files beside ``records`` (``<stem>.shard{k}of{n}...``).

    Raises
    ------
    FileNotFoundError
        No shard file of ``records``.
    ValueError
        Shard files of several world sizes (give the number of shards).
    """
    records = Path(records)
    stem = records.name[:-len(records.suffix)] if records.suffix else records.name
    pattern = re.compile(re.escape(stem) + r"\.shard\d+of(\d+)(\.done\.json|" + re.escape(records.suffix) + ")$")
    found = {int(m.group(1)) for path in records.parent.glob(f"{stem}.shard*")
             if (m := pattern.match(path.name))}
    if not found:
        raise FileNotFoundError(f"no shard files of {records} ({stem}.shardKofN{records.suffix}) in "
                                f"{records.parent}")
    if len(found) > 1:
        raise ValueError(f"shard files of {records} for {sorted(found)} processes; give the number of shards")
    return found.pop()


def merge_shards(records: str | os.PathLike, n: int) -> Path:
    """Merge the ``n`` complete shards of a launched run into ``records`` (atomic); returns ``records``.

    The records are written in the run's song order with the bytes :func:`utils.io.append_jsonl`
    writes, so the file equals a single-process run's. A ``records`` file that already holds exactly
    that is left alone (a second finishing process, a rerun).

    Raises
    ------
    ShardsIncomplete
        A shard has no completion marker (names the shards, their files and how to finish).
    ValueError
        A shard file changed after its marker, shards of different settings or song lists, songs
        missing or in two shards, or ``records`` holding something else (names the files).
    """
    from utils.musiclime.records import load_records, merge_records

    records = Path(records)
    missing = missing_shards(records, n)
    if missing:
        names = ", ".join(f"{k}/{n} ({shard_paths(records, k, n)[0]})" for k in missing)
        raise ShardsIncomplete(f"cannot merge {records}: shard(s) {names} not complete (no "
                               ".done.json marker); rerun those ranks / array tasks: they resume where they stopped")
    markers = []
    for k in range(1, n + 1):
        shard_file, marker_path = shard_paths(records, k, n)
        marker = json.loads(marker_path.read_text())
        _check_marker(marker, marker_path, shard_file, k, n, markers)
        markers.append((marker, marker_path))
    files = [shard_paths(records, k, n)[0] for k in range(1, n + 1)]
    merge_records(files)                                    # mixed record settings -> ValueError naming files
    by_id = {r["id"]: r for path in files for r in load_records(path, repair=False)}
    ordered: dict[int, str] = {}
    for marker, marker_path in markers:
        for position, song_id in marker["positions"]:
            if position in ordered or song_id not in by_id:
                raise ValueError(f"{marker_path}: song {song_id!r} (position {position}) is "
                                 + ("in two shards" if position in ordered else "not in its records file"))
            ordered[position] = song_id
    total = markers[0][0]["songs"]
    if sorted(ordered) != list(range(total)):
        raise ValueError(f"the {n} shards of {records} hold {len(ordered)} of the run's {total} songs")
    data = b"".join(jsonl_line(by_id[ordered[i]]) for i in range(total))
    if records.exists():
        if records.read_bytes() == data:
            return records
        raise ValueError(f"{records} exists and is not the merge of its {n} shards; move it away to merge")
    atomic_write(records, data)
    return records


def _check_marker(marker: dict, marker_path: Path, shard_file: Path, k: int, n: int, earlier: list) -> None:
    if marker.get("shard") != [k, n]:
        raise ValueError(f"{marker_path} is the marker of shard {marker.get('shard')}, not {k}/{n}")
    sha = file_sha256(shard_file) if shard_file.exists() else None
    if sha != marker["sha256"]:
        raise ValueError(f"{shard_file} changed after shard {k}/{n} completed ({marker_path}); rerun that shard")
    if not earlier:
        return
    first, first_path = earlier[0]
    if marker["selection_sha256"] != first["selection_sha256"] or marker["songs"] != first["songs"]:
        raise ValueError(f"{marker_path} and {first_path} were run on different song lists ({marker['songs']} "
                         f"vs {first['songs']} songs); every rank must get the same --split/--limit/"
                         "--songs-per-class")
    for key in sorted(set(marker["settings"]) | set(first["settings"])):
        if marker["settings"].get(key) != first["settings"].get(key):
            raise ValueError(f"mixed settings across ranks: {marker_path} has {key}="
                             f"{marker['settings'].get(key)!r}, {first_path} has {key}="
                             f"{first['settings'].get(key)!r}")


# ---------------------------------------------------------------- 4. finishing a shard
def check_start(records: str | os.PathLike, n: int, song_ids: Sequence[str]) -> None:
    """Before a launched run: refuse a ``records`` file that is not this launch's merge (a
    single-process run's, or a merge of another song list), so that hours of work do not end in a
    refused merge."""
    records = Path(records)
    if not records.exists():
        return
    if missing_shards(records, n):
        raise ValueError(f"{records} exists but is not the merge of a {n}-process run (its shards "
                         f"{shard_paths(records, 1, n)[0].name}... are not all complete): resume it with one "
                         "process (--shard 1/1), or choose another --records")
    marker = json.loads(shard_paths(records, 1, n)[1].read_text())
    if marker["selection_sha256"] != selection_hash(song_ids):
        raise ValueError(f"{records} is the merge of a run on another song list ({marker['songs']} songs, this "
                         f"run: {len(song_ids)}); choose another --records")


def finish_shard(records: str | os.PathLike, k: int, n: int, song_ids: Sequence[str], mine: Sequence[str],
                 settings: Mapping, lock_timeout: float = MERGE_LOCK_TIMEOUT_S) -> Path | None:
    """Mark shard ``k``/``n`` complete and merge if it is the last: returns ``records`` when merged.

    Returns None when other shards are still running (they merge when they finish).
    """
    from filelock import FileLock

    shard_file, marker = shard_paths(records, k, n)
    write_marker(marker, shard_file, k, n, song_ids, mine, settings)
    with FileLock(f"{os.fspath(records)}.merge.lock", timeout=lock_timeout):
        if missing_shards(records, n):
            return None
        return merge_shards(records, n)


# ---------------------------------------------------------------- 5. one process of a launched run
def run_launched(items: Iterable[Mapping], explain_fn: Callable, records_path: str | os.PathLike, launch,
                 settings: Mapping | None = None, **options) -> Path:
    """:func:`utils.musiclime.global_explain.run_global` as one process (``launch``, a :class:`Launch`)
    of a launched run.

    This process explains shard ``launch.shard`` into its own file beside ``records_path``
    (:func:`shard_paths`, resumable as any records file), marks it complete, and the last process
    to finish merges every shard into ``records_path``: the records a single process writes, in
    the same order, byte for byte. ``options`` go to ``run_global``.

    Returns
    -------
    Path
        ``records_path`` when this process merged (or found the merge done), else its shard file.
    """
    from utils.musiclime.global_explain import _item_id, run_global

    items = list(items)
    k, n = launch.shard
    song_ids = [_item_id(item, position) for position, item in enumerate(items)]
    shard_file, marker = shard_paths(records_path, k, n)
    check_start(records_path, n, song_ids)
    marker.unlink(missing_ok=True)          # complete again only when this run's shard is
    records = run_global(items, explain_fn, shard_file, shard=(k, n), settings=settings, **options)
    shard_file.touch(exist_ok=True)         # an idle rank (more ranks than songs) leaves an empty, complete shard
    merged = finish_shard(records_path, k, n, song_ids, [r["id"] for r in records], settings or {})
    return Path(records_path) if merged is not None else shard_file
