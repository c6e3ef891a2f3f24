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
* :func:`refuse_clobber` -- no output path names an input; :func:`exclusive` -- one writer per
  file across processes (a lock beside it).

Ids are data, not paths: :data:`SAFE_ID` is the one pattern every song / segment id must match
(:func:`check_id`, wherever an id is read), and :func:`id_path` is the one way an id becomes a
file name (``<folder>/<id><suffix>``, checked to stay inside ``folder``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

PART_SUFFIX = ".part"
NEW_DIR_SUFFIX = ".new"
OLD_DIR_SUFFIX = ".old"

SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""The one pattern of a song / segment id (matched whole): 1-64 ASCII letters, digits, ``_``, ``-``.

It covers every id the project meets: Music4All / M4A ids (``0009fFIM1eYThaPg``), the synthetic
corpus's 16-character ids, YouTube ids (11 characters with ``-`` and ``_``) and AudioSet segment
ids (``<YouTube id>_<start ms>``). No separator, no dot, nothing that a path could interpret."""


def is_safe_id(value: Any) -> bool:
    """True when ``value`` is a str that matches :data:`SAFE_ID` whole."""
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None


def check_id(value: Any, source: str) -> str:
    """``value`` when it is a safe id (:data:`SAFE_ID`); else a ``ValueError`` naming it and its source.

    Parameters
    ----------
    value : Any
        The id as read (a str for a valid one).
    source : str
        Where it was read, for the message: ``"<file>:<line>"``, ``"--song"``, ``"item 3"``.

    Returns
    -------
    str
        ``value``, unchanged.

    Raises
    ------
    ValueError
        ``"<source>: id '<value>' is not a safe id ..."``.
    """
    if not is_safe_id(value):
        raise ValueError(f"{source}: id {value!r} is not a safe id (1-64 ASCII letters, digits, '_' or '-'; "
                         "ids are names, not paths)")
    return value


def id_path(folder: str | os.PathLike, song_id: str, suffix: str = "", source: str = "id") -> Path:
    """``<folder>/<song_id><suffix>``, refused unless the id is safe and the path stays in ``folder``.

    Defence in depth: besides :func:`check_id`, the joined path is normalised against the
    resolved ``folder`` and must be a direct child of it (a suffix holding a separator is refused
    too). The file itself is not resolved, so a corpus may keep its files as symbolic links.

    Parameters
    ----------
    folder : path
        The folder the file belongs in (``<corpus>/features``, ``<corpus>/audio``, ...).
    song_id : str
        The id (checked with :func:`check_id`).
    suffix : str
        Appended to the id: ``".npy"``, ``".wav"``, ``""`` for a folder of its own.
    source : str
        Where the id came from, for the message.

    Returns
    -------
    Path
        ``Path(folder) / (song_id + suffix)``.
    """
    check_id(song_id, source)
    name = f"{song_id}{suffix}"
    if any(sep in suffix for sep in ("/", "\\", os.sep)) or "\x00" in suffix:
        raise ValueError(f"{source}: id {song_id!r}: suffix {suffix!r} holds a path separator")
    base = Path(folder).resolve()
    if Path(os.path.normpath(base / name)).parent != base:
        raise ValueError(f"{source}: id {song_id!r}: {name!r} would leave the folder {folder}")
    return Path(folder) / name


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


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (links and ``..`` resolved; the files need not exist)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_clobber(outputs: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when an output path names the same file as an input.

    Parameters
    ----------
    outputs, inputs : dict
        Argument name (as the user wrote it, e.g. ``"--out"``) -> a path, a list of paths or None.
    """
    def paths(value: Any) -> list:
        if value is None:
            return []
        return [value] if isinstance(value, (str, os.PathLike)) else list(value)

    for out_name, out_value in outputs.items():
        for out in paths(out_value):
            for in_name, in_value in inputs.items():
                for source in paths(in_value):
                    if same_file(out, source):
                        raise ValueError(f"{out_name} {out} is the same file as {in_name} {source}: an output "
                                         "never overwrites an input; choose another path")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BusyError(RuntimeError):
    """Another process holds the lock of a file this process wants to write."""


@contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``<path>.lock`` while writing ``path``: one writer per file, across processes.

    Uses ``filelock`` (the lock huggingface_hub and torch use; ``flock`` on POSIX, ``msvcrt`` on
    Windows; the operating system releases it when a process dies, so a killed run never leaves
    a stale lock). A second writer is refused at once with :class:`BusyError` naming the file.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(f"{os.fspath(path)}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BusyError(f"{path} is being written by another process (it holds {path}.lock); wait for it to "
                        "finish or write to another file (two writers would compute every item twice)") from None
    try:
        yield
    finally:
        lock.release()
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
def jsonl_line(record: Mapping) -> bytes:
    """One record as :func:`append_jsonl` writes it: sorted keys, UTF-8, newline-terminated bytes."""
    return (json.dumps(record, sort_keys=True, ensure_ascii=False, default=json_default) + "\n").encode("utf-8")


def append_jsonl(path: str | os.PathLike, record: Mapping) -> None:
    """Append one record as one JSON line: a single ``os.write`` of the whole line, then ``fsync``.

    Keys are sorted, so the same record always gives the same bytes. A process killed during
    the call leaves either nothing or a partial last line without its newline.
    """
    line = jsonl_line(record)
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
        Truncate a half-written last line away (after a warning), so that later appends start on
        a clean line: a line without its newline that starts like a record (``{``), after at
        least one complete line. Nothing else is ever removed.
    validate : callable, optional
        Called on each parsed line; raises ``ValueError`` for a line that is not a valid record
        (e.g. no string ``id``). The error is re-raised naming the file and line.
    what : str
        What a line is, for messages (``"record"``, ``"progress record"``).

    Raises
    ------
    ValueError
        A complete line that is not a valid record (anywhere, the last one included), a last
        line that cannot be the start of a record, or a file with no complete line: it is not a
        records file, or not only one. Refused, never truncated; the error names the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")          # the last element is b"" when the file ends with a newline
    complete, tail = lines[:-1], lines[-1]
    good_bytes = len(data) - len(tail)
    records: list[dict] = []
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
            if not records:
                raise ValueError(f"{path}, line {number}: not a {what} ({err}); is this a records file? "
                                 f"It was left untouched") from None
            raise ValueError(f"{path}, line {number}: not a {what} ({err}); a complete line is never dropped, "
                             f"so the file was left untouched") from None
        records.append(record)
    if tail:
        if not _half_written(tail):
            raise ValueError(f"{path}: the last line ({tail[:40]!r}) has no newline and is not the start of a "
                             f"{what} cut short; is this a records file? It was left untouched")
        warnings.warn(f"{path}: dropping a half-written last line ({len(tail)} bytes); that item will be redone")
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(good_bytes)
                handle.flush()
                os.fsync(handle.fileno())
    return records


def _half_written(tail: bytes) -> bool:
    """Whether a last line without its newline is what a killed :func:`append_jsonl` leaves: the
    start of a JSON object that does not parse (a complete line always ends in a newline)."""
    if not tail.lstrip().startswith(b"{"):
        return False
    try:
        json.loads(tail.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return True
    return False
