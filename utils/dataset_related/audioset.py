"""The AudioSet subset of the paper: music-genre segments with English lyrics, in our schema.

:func:`build_audioset` runs the steps (each one's class counts are in the returned report).
Each step is done the authors' way by default, ours as a named option:

1. :func:`~utils.dataset_related.audioset_selection.read_segments`, then the selection:
   ``selection="authors"`` -- :func:`~utils.dataset_related.audioset_authors.select_segments_authors`
   (class names as substrings of ``display_name`` in ``class_labels_indices.csv``, a blacklist,
   one list per class, written to ``work/class_lists/``); ``"ontology"`` --
   :func:`~utils.dataset_related.audioset_selection.select_segments` (the ontology tree, one
   class per segment);
2. :func:`~utils.dataset_related.audioset_lyrics.fetch_titles` -- YouTube titles, then artist
   and song: ``titles="authors"`` --
   :func:`~utils.dataset_related.audioset_authors.split_artist_song_authors` (their ~90 patterns
   on the song part); ``"ours"`` -- :func:`~utils.dataset_related.audioset_lyrics.split_artist_song`;
3. :func:`~utils.dataset_related.audioset_lyrics.fetch_lyrics` -- ``lyrics="authors"``: LyricFind,
   then Genius (their match rule); ``"ours"``: Genius only; kept when English;
4. :func:`download_segments` -- ``audio="authors"``: the segment as an mp3 from START to
   ``int(END) + 1`` (about 11 s, their yt-dlp + ffmpeg commands); ``"ours"``: a mono wav of
   [START, END); then cut to the model clip;
5. a seeded stratified split, written like every corpus (:mod:`utils.dataset_related.corpus`).

Network steps go through one client (:func:`make_client`), are rate limited and retried, and
keep JSON-lines progress files so a re-run skips finished items and retries failed ones.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from utils.config import AUDIOSET_GENRES, Profile
from utils.dataset_related.audioset_authors import (read_label_indices, select_segments_authors,
                                                    split_artist_song_authors, write_class_lists)
from utils.dataset_related.audioset_lyrics import (LYRICS_METHODS, fetch_lyrics, fetch_titles, lyrics_outcome_counts,
                                                   normalize_name,
                                                   split_artist_song)
from utils.dataset_related.audioset_selection import TARGET_CLASSES, load_ontology, read_segments, select_segments
from utils.dataset_related.corpus import (DEFAULT_FRACTIONS, BuildReport, FilterCounts, as_profile, finish_corpus,
                                          stratified_split, write_clip)
from utils.dataset_related.net import ProgressLog, RateLimiter, RetryPolicy, checked_download, run_resumable
from utils.dataset_related.net_clients import Client, FakeClient, WebClient
from utils.io import atomic_write, check_id, id_path

log = logging.getLogger(__name__)


def make_client(kind: str = "web", canned_path: str | Path | None = None,
                sample_rate: int = 16_000) -> Client:
    """The network client: ``"web"`` (real services, keys from the environment) or
    ``"fake"`` (canned responses from ``canned_path``, e.g. a fixture's
    ``fake_responses.json``)."""
    if kind == "web":
        return WebClient(sample_rate=sample_rate)
    if kind == "fake":
        if canned_path is None:
            raise ValueError("a fake client needs canned_path (fake_responses.json)")
        return FakeClient.from_json(canned_path, sample_rate=sample_rate)
    raise ValueError(f"client kind must be 'web' or 'fake', got {kind!r}")

def check_audio(path: Path, min_seconds: float) -> None:
    """Raise ``ValueError`` unless ``path`` is readable audio of at least ``min_seconds``."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as err:  # noqa: BLE001 -- any unreadable file is broken
        raise ValueError(f"{path.name}: not readable audio ({type(err).__name__})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise ValueError(f"{path.name}: empty audio")
    seconds = info.frames / info.samplerate
    if seconds < min_seconds:
        raise ValueError(f"{path.name}: partial download ({seconds:.2f} s < {min_seconds:.2f} s)")


AUDIO_METHODS = ("authors", "ours")


def segment_span(start: float, end: float, audio: str = "authors") -> tuple[float, float]:
    """Seconds downloaded for a segment: the authors' ``(start, int(end) + 1)`` (about 11 s for
    AudioSet's 10 s segments) or ours ``(start, end)``."""
    if audio not in AUDIO_METHODS:
        raise ValueError(f"audio must be one of {AUDIO_METHODS}, got {audio!r}")
    return (float(start), float(int(end) + 1)) if audio == "authors" else (float(start), float(end))


def download_segments(segments: pd.DataFrame, client: Client, corpus_dir: str | Path,
                      work_dir: str | Path, progress: ProgressLog, policy: RetryPolicy,
                      limiter: RateLimiter | None = None, profile: str | Profile = "tiny",
                      min_fraction: float = 0.9, show_progress: bool = True,
                      audio: str = "authors") -> dict[str, int]:
    """Download each segment to ``work_dir/segments/<id>.mp3`` (``audio="authors"``: START to
    ``int(END) + 1``, their mp3 cut) or ``<id>.wav`` (``"ours"``: [START, END), mono wav), via
    ``.part``, checked (readable and at least ``min_fraction`` of the span long), and cut the
    model clip (the profile's length from the segment's start, zero-padded if short) to
    ``corpus_dir/audio/<id>.wav``. Broken or partial downloads are deleted and marked
    ``failed`` (retried on the next run); a partial download never counts as done.

    Every segment id must be a safe name (:func:`utils.io.check_id`): one that is not raises
    ``ValueError`` naming it before anything is downloaded or written."""
    for seg_id in segments["id"]:
        check_id(seg_id, "download_segments: segments['id']")
    segment_span(0.0, 1.0, audio)                         # checks ``audio`` before any request
    suffix, audio_format = (".mp3", "mp3") if audio == "authors" else (".wav", "wav")
    prof = as_profile(profile)
    sr, clip_seconds = prof.audio.sample_rate, prof.audio.clip_seconds
    corpus_dir, work_dir = Path(corpus_dir), Path(work_dir)

    def step(seg_id: str, row: tuple[str, float, float]) -> dict:
        youtube_id, start, end = row
        start, end = segment_span(start, end, audio)
        segment_path = id_path(work_dir / "segments", seg_id, suffix)
        clip_path = id_path(corpus_dir / "audio", seg_id, ".wav")
        if not segment_path.exists():
            checked_download(
                segment_path,
                lambda part: policy.call(client.download_audio, youtube_id, start, end, part,
                                         audio_format=audio_format, limiter=limiter),
                lambda part: check_audio(part, min_fraction * (end - start)))
        padding = write_clip(segment_path, clip_path, sr, clip_seconds)
        return {"audio": f"audio/{seg_id}.wav", "segment": segment_path.name, "padding_samples": int(padding)}

    items = [(sid, (y, s, e)) for sid, y, s, e in zip(segments["id"], segments["youtube_id"],
                                                      segments["start_seconds"],
                                                      segments["end_seconds"])]
    return run_resumable(items, step, progress, desc="audio segments", show_progress=show_progress)


# ================================================================== the pipeline
SELECTIONS = ("authors", "ontology")
TITLE_METHODS = ("authors", "ours")


def build_audioset(segment_csvs: str | Path | Iterable[str | Path], labels_path: str | Path | None,
                   out_dir: str | Path, client: Client, work_dir: str | Path | None = None,
                   profile: str | Profile = "tiny",
                   fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0,
                   selection: str = "authors", ontology_path: str | Path | None = None,
                   titles: str = "authors", lyrics: str = "authors", audio: str = "authors",
                   classes: dict[str, str] | None = None,
                   targets: dict[str, str] = TARGET_CLASSES, blacklist: Iterable[str] | None = None,
                   max_per_class: int | None = None, policy: RetryPolicy | None = None,
                   min_intervals: dict[str, float] | None = None,
                   english_threshold: float = 0.42, english_tries: int = 5,
                   show_progress: bool = True) -> BuildReport:
    """Build the AudioSet corpus at ``out_dir`` (schema as every corpus; ``emotion``,
    ``valence`` and ``energy`` are null) plus ``segments.jsonl`` (YouTube id, times, title,
    artist, song, labels and the lyrics' source per kept id).

    Parameters
    ----------
    segment_csvs, labels_path : paths
        AudioSet segment CSVs and ``class_labels_indices.csv`` (needed by
        ``selection="authors"``; may be None for ``"ontology"``).
    selection : {"authors", "ontology"}
        The authors' substring selection (one list per class name in ``classes``, written to
        ``work_dir/class_lists/``) or ours, from ``ontology_path`` (``ontology.json``) with
        ``targets``. ``blacklist``: class names (default: each selection's own).
    titles, lyrics, audio : {"authors", "ours"}
        Title cleaning, lyrics sources and segment cut (see the module docstring).
    client : Client
        :func:`make_client` ``("web")`` for the real services, ``("fake", ...)`` in CI.
    work_dir : path, optional
        Progress files and raw segments (default ``out_dir/work``). Re-running with the
        same ``work_dir`` skips finished items and retries failed ones.
    max_per_class : int, optional
        Keep at most this many segments per class (seeded sample) before any request.
    policy : RetryPolicy, optional
        Retries (default 4 attempts, backoff from 2 s).
    min_intervals : dict, optional
        Seconds between calls per service:
        ``{"youtube": 0.1, "lyricfind": 1.0, "genius": 1.0, "download": 4.0}`` (the authors slept
        1-1.5 s between songs and at least 4 s between downloads).
    english_threshold, english_tries : float, int
        langdetect English probability threshold and tries (paper: 0.42, 5).
    """
    for name, value, allowed in (("selection", selection, SELECTIONS), ("titles", titles, TITLE_METHODS),
                                 ("lyrics", lyrics, LYRICS_METHODS), ("audio", audio, AUDIO_METHODS)):
        if value not in allowed:
            raise ValueError(f"build_audioset: {name} must be one of {allowed}, got {value!r}")
    prof = as_profile(profile)
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "work"
    policy = policy or RetryPolicy(attempts=4, base_delay=2.0)
    intervals = {"youtube": 0.1, "lyricfind": 1.0, "genius": 1.0, "download": 4.0}
    intervals.update(min_intervals or {})
    limiters = {name: RateLimiter(value) for name, value in intervals.items()}

    segments, bad_rows = read_segments(segment_csvs)
    df, problems, counts = select(segments, selection, labels_path, ontology_path, classes, targets, blacklist,
                                  work_dir / "class_lists")
    problems = defaultdict(list, problems)
    problems["malformed row in segment CSV"] += bad_rows
    if max_per_class is not None:
        df = _sample_per_class(df, max_per_class, seed)
        counts.add(f"at most {max_per_class} per class (seeded)", df["primary_short"])
    df = _with_artist_and_song(df, client, work_dir, policy, limiters["youtube"], problems, counts, show_progress,
                               titles)

    lyrics_log = ProgressLog(work_dir / f"lyrics_{lyrics}.jsonl")
    fetch_lyrics(df, client, lyrics_log, policy, limiters["genius"], english_threshold,
                 english_tries, seed, show_progress, method=lyrics, lyricfind_limiter=limiters["lyricfind"])
    _collect(problems, lyrics_log, df["id"], "lyrics")
    if lyrics == "authors":
        outcome_table = lyrics_outcome_counts(lyrics_log, df["id"])
        log.info("lyrics outcomes per source:\n%s", outcome_table.to_string())
    df = df.loc[[lyrics_log.status(i) == "ok" for i in df["id"]]]
    df = df.assign(lyrics=[lyrics_log.result(i)["lyrics"] for i in df["id"]],
                   lyrics_source=[lyrics_log.result(i).get("source", "genius") for i in df["id"]])
    counts.add("English lyrics found", df["primary_short"])

    audio_log = ProgressLog(work_dir / f"audio_{audio}.jsonl")
    download_segments(df, client, out_dir, work_dir, audio_log, policy, limiters["download"], prof,
                      show_progress=show_progress, audio=audio)
    _collect(problems, audio_log, df["id"], "audio")
    df = df.loc[[audio_log.status(i) == "ok" for i in df["id"]]].reset_index(drop=True)
    counts.add("audio downloaded", df["primary_short"])

    df = df.assign(emotion=None, valence=None, energy=None)
    splits = stratified_split(df, "primary_short", fractions, seed)
    _write_segments_table(out_dir / "segments.jsonl", df)
    return finish_corpus(out_dir, splits, counts, problems, AUDIOSET_GENRES, "AudioSet build")


def select(segments: pd.DataFrame, selection: str = "authors", labels_path: str | Path | None = None,
           ontology_path: str | Path | None = None, classes: dict[str, str] | None = None,
           targets: dict[str, str] = TARGET_CLASSES, blacklist: Iterable[str] | None = None,
           lists_dir: str | Path | None = None) -> tuple[pd.DataFrame, dict[str, list[str]], FilterCounts]:
    """The segments of the paper's classes, by ``selection`` (see :func:`build_audioset`);
    ``(kept segments with id and primary_short, {reason: ids}, class counts per step)``. With
    ``selection="authors"`` and ``lists_dir``, the per-class lists are written there."""
    if selection == "authors":
        if labels_path is None:
            raise ValueError("selection='authors' needs labels_path (class_labels_indices.csv)")
        df, lists, problems, counts = select_segments_authors(segments, read_label_indices(labels_path),
                                                              classes, blacklist)
        if lists_dir is not None:
            write_class_lists(lists, lists_dir)
        return df, problems, counts
    if selection == "ontology":
        if ontology_path is None:
            raise ValueError("selection='ontology' needs ontology_path (ontology.json)")
        return select_segments(segments, load_ontology(ontology_path), targets, blacklist)
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")


def _sample_per_class(df: pd.DataFrame, max_per_class: int, seed: int) -> pd.DataFrame:
    """At most ``max_per_class`` segments per class, a seeded sample (file order kept)."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(df), dtype=bool)
    for cls in sorted(df["primary_short"].unique()):
        members = np.flatnonzero(df["primary_short"].to_numpy() == cls)
        keep[rng.permutation(members)[:max_per_class]] = True
    return df.loc[keep].reset_index(drop=True)


def _with_artist_and_song(df: pd.DataFrame, client: Client, work_dir: Path, policy: RetryPolicy,
                          limiter: RateLimiter, problems: dict, counts: FilterCounts,
                          show_progress: bool, title_method: str = "authors") -> pd.DataFrame:
    """Segments whose YouTube title gives an artist and a song (``title_method``: whose rules), one
    video per song. A title that parses to nothing is logged and counted."""
    titles = ProgressLog(work_dir / "titles.jsonl")
    fetch_titles(df, client, titles, policy, limiter, show_progress)
    _collect(problems, titles, df["id"], "title")
    df = df.assign(title=[titles.result(i) for i in df["id"]])
    df = df.loc[[titles.status(i) == "ok" for i in df["id"]]]
    counts.add("YouTube title found", df["primary_short"])

    split = split_artist_song_authors if title_method == "authors" else split_artist_song
    parsed = [split(t) for t in df["title"]]
    unparsed = [f"{i}: {t!r}" for i, t, p in zip(df["id"], df["title"], parsed) if p is None]
    if unparsed:
        log.warning("%d title(s) give no artist / song, e.g. %s", len(unparsed), unparsed[0])
    problems["title not of the form artist - song"] += unparsed
    df = df.assign(artist=[p[0] if p else None for p in parsed],
                   song=[p[1] if p else None for p in parsed])
    df = df.loc[df["artist"].notna()]
    counts.add("title -> artist / song", df["primary_short"])

    song_key = [normalize_name(a) + "|" + normalize_name(s) for a, s in zip(df["artist"], df["song"])]
    dup_song = pd.Series(song_key, index=df.index).duplicated(keep="first")
    problems["same artist / song as an earlier video"] += df.loc[dup_song, "id"].tolist()
    df = df.loc[~dup_song]
    counts.add("one video per song", df["primary_short"])
    return df


def _write_segments_table(path: Path, df: pd.DataFrame) -> None:
    """``segments.jsonl``: YouTube id, times, title, artist, song and labels per kept id (atomic)."""
    lines = [json.dumps({"id": row.id, "youtube_id": row.youtube_id, "start_seconds": row.start_seconds,
                         "end_seconds": row.end_seconds, "title": row.title, "artist": row.artist,
                         "song": row.song, "labels": list(row.labels),
                         "lyrics_source": row.lyrics_source}, ensure_ascii=False) + "\n"
             for row in df.itertuples()]
    atomic_write(path, "".join(lines))


def _collect(problems: dict, progress: ProgressLog, ids: Iterable[str], step: str) -> None:
    """Add the skipped / failed items of a step to ``problems`` (reason from the record)."""
    for item_id in ids:
        rec = progress.records.get(item_id)
        if rec is None or rec["status"] == "ok":
            continue
        reason = (rec.get("error") or "").split(":")[0].split("(")[0].strip() or "unknown"
        if rec["status"] == "failed":
            problems[f"{step}: failed after retries (re-run retries it)"].append(
                f"{item_id}: {rec.get('error')}"[:200])
        else:
            problems[f"{step}: {reason}"].append(item_id)
