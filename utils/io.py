"""Files that a crash never leaves half-written: atomic writes (of a file or a whole folder) and one append-only JSON-lines store.

Every module that writes a result, a checkpoint, a download or a progress file uses these two
mechanisms, so a fix made here holds everywhere:

* :func:`atomic_write` / :func:`atomic_path` -- write ``<name>.part`` beside the target, flush
  and ``fsync`` it, then ``os.replace`` it over the target (atomic on one filesystem). A crash
  leaves either the old file or the new one, never a mix; a failed write removes its ``.part``.
* :func:`atomic_dir` / :func:`recover_dir` -- fill ``<name>.new/``, fsync it, then swap it in
  with two renames (``name`` -> ``name.old``, ``name.new`` -> ``name``). A crash at any moment
  leaves a state that :func:`recover_dir` turns into the whole old folder or the whole new one,
  so several files that belong together (a training checkpoint) change as one unit.
* :func:`append_jsonl` / :func:`read_jsonl` -- an append-only JSON-lines file (one record per
  line, each appended with a single ``os.write`` and ``fsync``). A process killed mid-append
  leaves at most a torn last line, which :func:`read_jsonl` drops (and, with ``repair``,
  truncates away) so that the next append starts on a clean line. A file that holds no record
  at all is refused, never truncated: repair only ever trims the torn end of a records file.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

PART_SUFFIX = ".part"
NEW_DIR_SUFFIX = ".new"
OLD_DIR_SUFFIX = ".old"


def part_path(path: str | os.PathLike) -> Path:
    """``<path>.part``: where a file is written until it is complete."""
    path = Path(path)
    return path.with_name(path.name + PART_SUFFIX)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield ``<path>.part`` to write to; on success it is fsynced and renamed over ``path``.

    For writers that take a file name (``np.save``, ``soundfile.write``, ``torch.save``,
    ``safetensors.torch.save_file``). The writer must write exactly the yielded path (``np.save``
    appends ``.npy`` to names without it: pass an open file or a ``.npy`` name). On an exception
    the part file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(path)
    try:
        yield part
        if not part.is_file():
            raise OSError(f"{path}: the writer produced no file at {part}")
        _fsync_file(part)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically; returns ``path``."""
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_path(path) as part:
        with open(part, "wb") as handle:
            handle.write(payload)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj, indent=1)`` (numpy scalars and arrays as plain values) written atomically."""
    dumps_kwargs.setdefault("indent", 1)
    dumps_kwargs.setdefault("default", json_default)
    return atomic_write(path, json.dumps(obj, **dumps_kwargs) + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars / arrays and paths."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ---------------------------------------------------------------- atomic folders
def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def fsync_dir(path: str | os.PathLike) -> None:
    """``fsync`` a folder, so that renames inside it survive a power cut (a no-op where folders cannot be synced)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def recover_dir(path: str | os.PathLike) -> bool:
    """Finish or undo an :func:`atomic_dir` swap that a crash interrupted; returns whether ``path`` exists.

    The swap's commit point is the rename of the old folder to ``<path>.old``; ``<path>.new`` is
    complete and synced before it. So: ``path`` there -> any ``.new`` is an uncommitted (perhaps
    half-written) folder and any ``.old`` a replaced one, both removed; ``path`` missing but
    ``.old`` there -> the crash fell between the two renames, and ``.new`` (complete) is moved into
    place, or, if it is gone, ``.old`` is put back; only ``.new`` there -> the first swap never
    committed, and it is removed.
    """
    path = Path(path)
    new, old = _sibling(path, NEW_DIR_SUFFIX), _sibling(path, OLD_DIR_SUFFIX)
    if not path.exists() and old.exists():
        os.replace(new if new.exists() else old, path)
        fsync_dir(path.parent)
    for leftover in (new, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    return path.exists()


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh ``<path>.new/`` to fill; on success it replaces the folder ``path`` as one unit.

    Every file in it is fsynced, then the old folder (if any) is renamed to ``<path>.old``, the
    new one to ``path``, and ``.old`` removed. A crash at any moment leaves either the old folder
    or the new one after :func:`recover_dir` (which this calls first). On an exception the new
    folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    new, old = _sibling(path, NEW_DIR_SUFFIX), _sibling(path, OLD_DIR_SUFFIX)
    new.mkdir()
    try:
        yield new
        for file in sorted(new.rglob("*")):
            if file.is_file():
                _fsync_file(file)
        fsync_dir(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)                       # the commit point
    os.replace(new, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- append-only JSON lines
def append_jsonl(path: str | os.PathLike, record: Mapping) -> None:
    """Append one record as one JSON line: a single ``os.write`` of the whole line, then ``fsync``.

    Keys are sorted, so the same record always gives the same bytes. A process killed during
    the call leaves either nothing or a partial last line without its newline.
    """
    line = (json.dumps(record, sort_keys=True, ensure_ascii=False, default=json_default) + "\n").encode("utf-8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike, *, repair: bool = True,
               validate: Callable[[Any], None] | None = None, what: str = "record") -> list[dict]:
    """Read a JSON-lines file written by :func:`append_jsonl`; a missing file gives ``[]``.

    Parameters
    ----------
    path : path
        The file.
    repair : bool
        Truncate a torn or unparsable LAST line away (after a warning), so that later appends
        start on a clean line. Nothing else is ever removed.
    validate : callable, optional
        Called on each parsed line; raises ``ValueError`` for a line that is not a valid record
        (e.g. no string ``id``). The error is re-raised naming the file and line.
    what : str
        What a line is, for messages (``"record"``, ``"progress record"``).

    Raises
    ------
    ValueError
        A bad line that is not the last one; or a file in which no line is a valid record (it is
        not a records file: refused, never truncated). Both name the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")          # the last element is b"" when the file ends with a newline
    complete, tail = lines[:-1], lines[-1]
    good_bytes = len(data) - len(tail)
    records: list[dict] = []
    dropped = None
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict):
                raise ValueError(f"a {what} must be a JSON object")
            if validate is not None:
                validate(record)
        except (UnicodeDecodeError, ValueError) as err:      # JSONDecodeError is a ValueError
            if number == len(complete) and not tail and records:
                dropped = f"unparsable last line {number} ({err})"
                good_bytes -= len(raw) + 1
                break
            if not records:
                raise ValueError(f"{path}, line {number}: not a {what} ({err}); is this a records file? "
                                 f"It was left untouched") from None
            raise ValueError(f"{path}, line {number}: not a {what} ({err})") from None
        records.append(record)
    if tail:
        if not records and not complete:
            raise ValueError(f"{path}: no complete {what} line; is this a records file? It was left untouched")
        dropped = f"a half-written last line ({len(tail)} bytes)"
    if dropped:
        warnings.warn(f"{path}: dropping {dropped}; that item will be redone")
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(good_bytes)
                handle.flush()
                os.fsync(handle.fileno())
    return records
