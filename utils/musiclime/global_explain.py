"""Global MusicLIME runs: explain every song of a split into a resumable, shardable record store.

Read top to bottom:

1. :func:`select_songs` picks the songs of a split (all, or the first ``k`` per class);
   :func:`song_seed` gives each song its own explainer seed.
2. :func:`song_record` explains one song's *predicted* class (as the authors' global runs did)
   through :func:`utils.musiclime.song.explain_song` and returns its record.
3. :func:`run_global` -- the runner: appends one record per song to a
   :mod:`utils.musiclime.records` store, skips songs already there (resume after a kill), takes
   one shard (:func:`parse_shard`, :func:`shard_of`) and shows a tqdm bar with ETA; the next
   song's audio is loaded and separated in a background thread (:func:`song_components`,
   :mod:`utils.musiclime.prefetch`) while the current one is explained. As one process of a
   launched run (torchrun, accelerate, Slurm array), :func:`utils.musiclime.launch.run_launched`
   runs it on that process's shard file; the last process to finish merges.
4. :func:`global_explain` -- all of it for one trained model: checks the arguments, loads the
   model, stores the run settings (:func:`run_settings`) in every record so that resuming a
   file with other settings is refused, and runs.

Merge and aggregate the records with :func:`utils.musiclime.records.aggregate_records`; score
them against the planted cues with :mod:`utils.musiclime.planted`. The command line is
``python -m utils.global_run``.

Seeds: song ``id`` is explained with the seed ``SeedSequence([seed, crc32(id)])``, so a song's
explanation does not depend on which shard or position it ran in: sharded == unsharded.
"""
from __future__ import annotations

import json
import os
import warnings
import zlib
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from utils.config import KIND_MODES, LABEL_COLUMNS, MODEL_KINDS, SEPARATORS, TASKS, Profile
from utils.io import check_id, exclusive, file_sha256, json_default
from utils.musiclime.sampling import SAMPLING
from utils.musiclime.records import append_record, load_records, settings_conflict
from utils.musiclime.song import explain_song, make_separator


# ---------------------------------------------------------------- 1. songs
def select_songs(frame: pd.DataFrame, task: str, songs_per_class: int | None = None,
                 limit: int | None = None) -> pd.DataFrame:
    """The songs to explain: the first ``songs_per_class`` of each class (split-file order), then
    the first ``limit`` of those. Deterministic; ``None`` keeps all.

    Parameters
    ----------
    frame : DataFrame
        A split (:func:`utils.dataset_related.splits.read_split`), with ``id`` and the task's label column.
    task : {'genre', 'emotion'}
    songs_per_class, limit : int, optional
        Must be >= 1 when given.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    for name, value in (("songs_per_class", songs_per_class), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    column = LABEL_COLUMNS[task]
    if column not in frame.columns:
        raise ValueError(f"the split has no {column!r} column (task {task!r})")
    chosen = frame
    if songs_per_class is not None:
        chosen = frame[frame.groupby(column, sort=False).cumcount() < songs_per_class]
    if limit is not None:
        chosen = chosen.head(limit)
    return chosen.reset_index(drop=True)


def song_seed(seed: int, song_id: str) -> int:
    """Per-song explainer seed from the run seed and the id: ``SeedSequence([seed, crc32(id)])``."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(str(song_id).encode("utf-8"))]).generate_state(1)[0])


# ---------------------------------------------------------------- 2. one song
def song_record(predictor, corpus_dir: str | os.PathLike, item: Mapping, profile: Profile, *, separator,
                task: str, mode: str, num_samples: int | str, seed: int, batch_size: int = 250,
                sampling: str = "iid", factorization=None, kernel: str = "paper") -> dict:
    """Explain one song's predicted class (:func:`utils.musiclime.song.explain_song`); returns its record.

    The explainer seed is :func:`song_seed` ``(seed, id)``. The record is
    :meth:`utils.musiclime.explanation.Explanation.to_record` plus ``song_seed`` (the seed used)
    and, when ``item`` carries a valid label, ``true_label`` (class index). Errors name the song.
    ``factorization``: the song's audio components when already made (:func:`song_components`,
    e.g. by the prefetch thread of :func:`run_global`); by default they are made here.
    """
    song_id = str(item["id"])
    class_names = list(TASKS[task])
    seed_used = song_seed(seed, song_id)
    try:
        explanation = explain_song(predictor, corpus_dir, item, profile, separator=separator, mode=mode,
                                   factorization=factorization, num_samples=num_samples, batch_size=batch_size,
                                   seed=seed_used, sampling=sampling, class_names=class_names, kernel=kernel)
    except (ValueError, TypeError) as error:
        raise (ValueError if isinstance(error, ValueError) else TypeError)(f"song {song_id!r}: {error}") from error
    record = explanation.to_record(song_id)
    record["song_seed"] = seed_used
    true_name = item.get(LABEL_COLUMNS[task])
    if true_name in class_names:
        record["true_label"] = class_names.index(true_name)
    return record


def song_components(corpus_dir: str | os.PathLike, item: Mapping, profile: Profile, separator):
    """The audio components of one song (load, separate, segment: :func:`utils.musiclime.song.song_factorization`);
    a ``ValueError`` / ``TypeError`` names the song. What :func:`run_global` prefetches."""
    from utils.musiclime.song import song_factorization

    song_id = str(item["id"])
    try:
        return song_factorization(corpus_dir, song_id, profile, separator)
    except (ValueError, TypeError) as error:
        raise (ValueError if isinstance(error, ValueError) else TypeError)(f"song {song_id!r}: {error}") from error


# ---------------------------------------------------------------- 3. the runner
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
    return check_id(song_id, f"item {position}")


def run_global(items: Iterable[Mapping], explain_fn: Callable[[Mapping], Mapping],
               records_path: str | os.PathLike, shard: str | tuple[int, int] | None = None,
               settings: Mapping | None = None, progress: bool = True, skip_bad: bool = False,
               prepare_fn: Callable[[Mapping], Any] | None = None, prefetch: bool = True) -> list[dict]:
    """Explain every item of this shard once, appending one record per song; resumable.

    Parameters
    ----------
    items : iterable of mappings with an ``'id'`` (a safe id, :func:`utils.io.check_id`)
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
        :func:`utils.musiclime.records.merge_records`.
    settings : dict, optional
        Run settings (``num_samples``, seed, model, ...) stored in every record's ``settings``.
        Resuming with settings that differ from those already in the file raises ``ValueError``.
    progress : bool
        Show a tqdm bar (with ETA) over this shard's songs.
    skip_bad : bool
        A song whose ``explain_fn`` raises one of :data:`SKIPPABLE` gets the record ``{"id",
        "skipped": reason, "settings"}`` and the run goes on (a warning gives the count at the
        end; the aggregate leaves skipped songs out; a rerun does not retry them). Default: the
        error stops the run (it names the song).
    prepare_fn : callable, optional
        ``prepare_fn(item) -> prepared`` (e.g. load and separate the audio, :func:`song_components`);
        then ``explain_fn(item, prepared)`` is called instead of ``explain_fn(item)``. Its errors
        count as the song's (``skip_bad`` included).
    prefetch : bool
        Run ``prepare_fn`` for the next song in one background thread while the current song is
        explained (:func:`utils.musiclime.prefetch.prepared_items`); the records are the same either way.

    The file is locked (:func:`utils.io.exclusive`) for the whole run: a second process writing
    the same records file is refused with :class:`utils.io.BusyError`.

    Returns
    -------
    list of dict
        This shard's records in ``items`` order (earlier runs' records included).
    """
    k, n = parse_shard(shard)
    settings = dict(settings or {})
    records_path = Path(records_path)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    mine = _shard_items(items, k, n)
    with exclusive(records_path):
        done = {r["id"]: r for r in load_records(records_path, repair=True)}
        conflict = settings_conflict(done.values(), settings)
        if conflict:
            raise ValueError(f"{records_path}: {conflict}; use another records file")
        _explain_missing(mine, done, explain_fn, records_path, settings, skip_bad, f"shard {k}/{n}", progress,
                         prepare_fn, prefetch)
    skipped = [song_id for song_id, _ in mine if "skipped" in done[song_id]]
    if skipped:
        warnings.warn(f"{records_path}: {len(skipped)} of {len(mine)} songs skipped (unreadable), e.g. "
                      f"{skipped[:3]}; their reasons are in the records (key 'skipped'), and the aggregate leaves "
                      "them out")
    return [done[song_id] for song_id, _ in mine]


def _shard_items(items: Iterable[Mapping], k: int, n: int) -> list[tuple[str, Mapping]]:
    mine: list[tuple[str, Mapping]] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        song_id = _item_id(item, position)
        if song_id in seen:
            raise ValueError(f"duplicate item id {song_id!r} in items")
        seen.add(song_id)
        if shard_of(song_id, n) == k:
            mine.append((song_id, item))
    return mine


SKIPPABLE = (ValueError, TypeError, OSError)
"""What ``skip_bad`` skips: unreadable or unusable audio / lyrics (AudioError is a ValueError,
a missing file an OSError). Anything else (out of memory, a bug) still stops the run."""


def _explain_missing(mine, done: dict, explain_fn, records_path: Path, settings: dict, skip_bad: bool,
                     desc: str, progress: bool, prepare_fn=None, prefetch: bool = True) -> None:
    """Explain the songs of ``mine`` not in ``done``, appending each record (and adding it to ``done``)."""
    from tqdm.auto import tqdm

    already = sum(song_id in done for song_id, _ in mine)
    pending = [(song_id, item) for song_id, item in mine if song_id not in done]
    with tqdm(total=len(mine), initial=already, desc=f"global run, {desc}", unit="song",
              disable=not progress) as bar:
        from utils.musiclime.prefetch import prepared_items

        with closing(prepared_items(pending, prepare_fn, prefetch)) as stream:
            _explain_stream(stream, done, explain_fn, prepare_fn, records_path, settings, skip_bad, bar)


def _explain_stream(stream, done, explain_fn, prepare_fn, records_path, settings, skip_bad, bar) -> None:
    for song_id, item, prepared in stream:
        try:
            record = dict(explain_fn(item) if prepare_fn is None else explain_fn(item, prepared()))
        except SKIPPABLE as error:
            if not skip_bad:
                raise
            record = {"id": song_id, "skipped": f"{type(error).__name__}: {error}"[:500]}
        record.setdefault("id", song_id)
        if record["id"] != song_id:
            raise ValueError(f"explain_fn returned id {record['id']!r} for item {song_id!r}")
        if settings:
            record["settings"] = {**(record.get("settings") or {}), **settings}
        # normalise numpy types now so the in-memory record equals the stored one
        record = json.loads(json.dumps(record, sort_keys=True, default=json_default))
        append_record(records_path, record)
        done[song_id] = record
        bar.update(1)


# ---------------------------------------------------------------- 4. one model's run
def run_settings(profile: Profile, task: str, kind: str, mode: str, split: str, num_samples: int, seed: int,
                 separator: str | None, model_sha256: str | None = None, sampling: str = "iid",
                 kernel: str = "paper") -> dict:
    """The settings stored in every record of a run (a resume must match them)."""
    return {"profile": profile.name, "task": task, "kind": kind, "mode": mode, "split": split,
            "num_samples": num_samples if num_samples == "auto" else int(num_samples), "seed": int(seed),
            "sampling": "antithetic" if num_samples == "auto" else sampling, "kernel": kernel,
            "separator": None if kind == "lyrics" else separator,
            "num_segments": None if kind == "lyrics" else int(profile.num_segments),
            "model_sha256": model_sha256}


def global_explain(profile: Profile, task: str, kind: str, mode: str, records_path: str | os.PathLike, *,
                   split: str = "test", corpus_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None,
                   num_samples: int | None = None, seed: int = 0, batch_size: int = 250,
                   separator: str | None = None, shard: str | tuple[int, int] | None = None,
                   songs_per_class: int | None = None, limit: int | None = None, predictor=None,
                   on_mismatch: str = "raise", num_threads: int | None = None, progress: bool = True,
                   sampling: str = "iid", skip_bad: bool = False, launch=None, prefetch: bool = True,
                   kernel: str = "paper") -> Path:
    """Explain every selected song of ``split`` with MusicLIME into ``records_path``; resumable.

    Parameters
    ----------
    profile : Profile
        Audio settings, ``num_segments``, default ``explain_samples`` and ``separator``.
    task : {'genre', 'emotion'}
    kind : {'multimodal', 'audio', 'lyrics'}
        The model explained (``run_dir/task/kind/best``).
    mode : {'both', 'audio', 'lyrical'}
        Explainer mode; a unimodal model only supports the mode of its own input.
    records_path : path
        JSON-lines record store (one record per song; created, or resumed when it exists).
    split : str
        Split file of ``corpus_dir`` to explain.
    corpus_dir, run_dir : path
        The corpus (audio, stems, lyrics, tokenizer) and the checkpoints (``runs/<profile>``).
    num_samples : int or 'auto', optional
        Rows per song (default ``profile.explain_samples``; the paper's: 5000); 'auto': adaptive.
    seed : int
        Run seed; song ``id`` uses :func:`song_seed` ``(seed, id)``.
    batch_size : int
        Perturbations per model call.
    separator : {'oracle', 'hpss', 'openunmix'}, optional
        Default ``profile.separator``. Ignored for the lyrics model (no audio components).
    shard : ``'k/n'``, optional
        Only this shard's songs (see :func:`shard_of`); merge shard files with
        :func:`utils.musiclime.records.aggregate_records`.
    songs_per_class, limit : int, optional
        Explain a subset (:func:`select_songs`).
    predictor : optional
        A ready :class:`utils.musiclime.predict.ModelPredictor` (its ``kind`` must equal ``kind``); default
        :func:`utils.musiclime.predict.load_predictor` from ``run_dir``. Its weights' sha256 is stored in
        the settings only when it is loaded here.
    on_mismatch : {'raise', 'replace'}
        What to do when ``records_path`` holds records made with other settings: raise
        ``ValueError`` (default), or move the old file to ``<records_path>.replaced`` and start
        afresh (for notebooks re-run after retraining).
    num_threads : int, optional
        torch intra-op threads during the run (restored afterwards). The tiny models' small
        matrix products gain little from threads, and on a busy 2-core machine 1 thread is
        several times faster than 2 (no OpenMP contention). None leaves torch's setting.
    progress : bool
        tqdm bar with ETA over the songs.
    sampling : {'iid', 'antithetic', 'crossed'}
        Neighbourhood design (:func:`utils.musiclime.explainer.explain`): ``'iid'`` the paper's;
        ``'antithetic'`` any model, same cost, less noise; ``'crossed'`` the multimodal model in
        ``'both'`` mode only, a tenth of the encoder passes. Stored in the settings.
    skip_bad : bool
        Skip (and record, :func:`run_global`) a song that cannot be explained, instead of stopping.
    launch : :class:`utils.musiclime.launch.Launch`, optional
        This process's place in a launched run (:func:`utils.musiclime.launch.run_launched`): its
        shard into its own file, merged into ``records_path`` by the last to finish; no ``shard``.
    prefetch : bool
        Load and separate the next song in a background thread (same records).
    kernel : {'paper', 'locality'}
        The surrogate's kernel (:func:`utils.musiclime.explainer.explain`), stored in the settings.

    Returns
    -------
    Path
        ``records_path`` (launched: when this process merged; else its shard file).
    """
    from utils.dataset_related.splits import read_split

    _check_run(task, kind, mode, sampling, on_mismatch)
    separator = separator or profile.separator
    if separator not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS}, got {separator!r}")
    num_samples = "auto" if num_samples == "auto" else int(num_samples or profile.explain_samples)
    corpus_dir, records_path = Path(corpus_dir), Path(records_path)
    songs = select_songs(read_split(corpus_dir, split), task, songs_per_class, limit)   # ids checked first
    if launch is not None:
        from utils.musiclime.launch import launch_device

        if shard is not None:
            raise ValueError(f"give shard= or launch=, not both (shard={shard!r}, launch {launch.shard})")
        profile = profile.replace(device=launch_device(launch, profile.device))
    predictor, model_sha256 = _run_predictor(predictor, run_dir, task, kind, profile, corpus_dir)
    settings = run_settings(profile, task, kind, mode, split, num_samples, seed, separator, model_sha256,
                            sampling, kernel)
    _resumable(records_path, settings, on_mismatch)
    audio_separator = None if kind == "lyrics" else make_separator(
        separator, corpus_dir, None if separator == "oracle" else corpus_dir / "separations" / separator,
        device=profile.device)

    def prepare_fn(item: Mapping):
        return song_components(corpus_dir, item, profile, audio_separator)

    def explain_fn(item: Mapping, factorization=None) -> dict:
        return song_record(predictor, corpus_dir, item, profile, separator=audio_separator, task=task,
                           mode=mode, num_samples=num_samples, seed=seed, batch_size=batch_size,
                           sampling=sampling, factorization=factorization, kernel=kernel)

    import torch

    threads_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        options = dict(settings=settings, progress=progress, skip_bad=skip_bad, prefetch=prefetch,
                       prepare_fn=None if audio_separator is None else prepare_fn)
        if launch is not None:
            from utils.musiclime.launch import run_launched

            return run_launched(songs.to_dict("records"), explain_fn, records_path, launch, **options)
        run_global(songs.to_dict("records"), explain_fn, records_path, shard=shard, **options)
    finally:
        torch.set_num_threads(threads_before)
    records_path.touch(exist_ok=True)        # an empty shard still leaves a (mergeable) file
    return records_path


def _check_run(task: str, kind: str, mode: str, sampling: str, on_mismatch: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if mode not in KIND_MODES[kind]:
        raise ValueError(f"a {kind} model can be explained in mode {KIND_MODES[kind]}, not {mode!r}")
    if on_mismatch not in ("raise", "replace"):
        raise ValueError(f"on_mismatch must be 'raise' or 'replace', got {on_mismatch!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if sampling == "crossed" and (kind != "multimodal" or mode != "both"):
        raise ValueError(f"sampling='crossed' needs the late-fusion multimodal model in 'both' mode, not the {kind} "
                         f"model in {mode!r} mode; use 'iid' or 'antithetic'")


def _run_predictor(predictor, run_dir, task: str, kind: str, profile: Profile, corpus_dir: Path):
    """``(predictor, sha256 of its weights file)``: the given one (sha None) or the trained ``run_dir`` model."""
    if predictor is not None:
        if getattr(predictor, "kind", None) != kind:
            raise ValueError(f"predictor is a {getattr(predictor, 'kind', type(predictor).__name__)} model, "
                             f"kind={kind!r} was asked for")
        return predictor, None
    from utils.musiclime.predict import load_predictor

    if run_dir is None:
        raise ValueError("give run_dir= (e.g. runs/tiny) or predictor=")
    weights = Path(run_dir) / task / kind / "best" / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no trained {kind} model for {task}: {weights} is missing")
    return load_predictor(run_dir, task, kind, profile, corpus_dir, device=profile.device), file_sha256(weights)


def _resumable(records_path: Path, settings: Mapping, on_mismatch: str) -> None:
    """Refuse (or, with ``on_mismatch='replace'``, move aside) a records file made with other settings."""
    if not records_path.exists():
        return
    conflict = settings_conflict(load_records(records_path, repair=False), settings)
    if conflict and on_mismatch == "replace":
        warnings.warn(f"{records_path}: {conflict}; moving the old records to {records_path}.replaced "
                      "and starting afresh")
        os.replace(records_path, str(records_path) + ".replaced")
    elif conflict:
        raise ValueError(f"{records_path}: {conflict}; use another records file")
