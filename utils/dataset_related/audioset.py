"""The AudioSet subset of the paper: music-genre segments with English lyrics, in our schema.

:func:`build_audioset` runs the steps (each one's class counts are in the returned report):

1. :func:`~utils.dataset_related.audioset_selection.read_segments` and
   :func:`~utils.dataset_related.audioset_selection.select_segments` -- the segments of the
   paper's genres, one class each;
2. :func:`~utils.dataset_related.audioset_lyrics.fetch_titles` -- YouTube titles, then
   :func:`~utils.dataset_related.audioset_lyrics.split_artist_song` -- artist and song;
3. :func:`~utils.dataset_related.audioset_lyrics.fetch_lyrics` -- Genius lyrics, kept when English;
4. :func:`download_segments` -- the 10 s segment (yt-dlp + ffmpeg), cut to the model clip;
5. a seeded stratified split, written like every corpus (:mod:`utils.dataset_related.corpus`).

Network steps go through one client (:func:`make_client`), are rate limited and retried, and
keep JSON-lines progress files so a re-run skips finished items and retries failed ones.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from utils.config import AUDIOSET_GENRES, Profile
from utils.dataset_related.audioset_lyrics import fetch_lyrics, fetch_titles, normalize_name, split_artist_song
from utils.dataset_related.audioset_selection import TARGET_CLASSES, load_ontology, read_segments, select_segments
from utils.dataset_related.corpus import (DEFAULT_FRACTIONS, BuildReport, FilterCounts, as_profile, finish_corpus,
                                          stratified_split, write_clip)
from utils.dataset_related.net import ProgressLog, RateLimiter, RetryPolicy, checked_download, run_resumable
from utils.dataset_related.net_clients import Client, FakeClient, WebClient
from utils.io import atomic_write, check_id, id_path


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

def check_wav(path: Path, min_seconds: float) -> None:
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


def download_segments(segments: pd.DataFrame, client: Client, corpus_dir: str | Path,
                      work_dir: str | Path, progress: ProgressLog, policy: RetryPolicy,
                      limiter: RateLimiter | None = None, profile: str | Profile = "tiny",
                      min_fraction: float = 0.9, show_progress: bool = True) -> dict[str, int]:
    """Download each segment to ``work_dir/segments/<id>.wav`` (via ``.part``, checked:
    readable and at least ``min_fraction`` of the segment long) and cut the model clip to
    ``corpus_dir/audio/<id>.wav``. Broken or partial downloads are deleted and marked
    ``failed`` (retried on the next run); a partial download never counts as done.

    Every segment id must be a safe name (:func:`utils.io.check_id`): one that is not raises
    ``ValueError`` naming it before anything is downloaded or written."""
    for seg_id in segments["id"]:
        check_id(seg_id, "download_segments: segments['id']")
    prof = as_profile(profile)
    sr, clip_seconds = prof.audio.sample_rate, prof.audio.clip_seconds
    corpus_dir, work_dir = Path(corpus_dir), Path(work_dir)

    def step(seg_id: str, row: tuple[str, float, float]) -> dict:
        youtube_id, start, end = row
        segment_path = id_path(work_dir / "segments", seg_id, ".wav")
        clip_path = id_path(corpus_dir / "audio", seg_id, ".wav")
        if not segment_path.exists():
            checked_download(
                segment_path,
                lambda part: policy.call(client.download_audio, youtube_id, start, end, part, limiter=limiter),
                lambda part: check_wav(part, min_fraction * (float(end) - float(start))))
        padding = write_clip(segment_path, clip_path, sr, clip_seconds)
        return {"audio": f"audio/{seg_id}.wav", "padding_samples": int(padding)}

    items = [(sid, (y, s, e)) for sid, y, s, e in zip(segments["id"], segments["youtube_id"],
                                                      segments["start_seconds"],
                                                      segments["end_seconds"])]
    return run_resumable(items, step, progress, desc="audio segments", show_progress=show_progress)


# ================================================================== the pipeline
def build_audioset(segment_csvs: str | Path | Iterable[str | Path], ontology_path: str | Path,
                   out_dir: str | Path, client: Client, work_dir: str | Path | None = None,
                   profile: str | Profile = "tiny",
                   fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0,
                   targets: dict[str, str] = TARGET_CLASSES, blacklist: Iterable[str] | None = None,
                   max_per_class: int | None = None, policy: RetryPolicy | None = None,
                   min_intervals: dict[str, float] | None = None,
                   english_threshold: float = 0.42, english_tries: int = 5,
                   show_progress: bool = True) -> BuildReport:
    """Build the AudioSet corpus at ``out_dir`` (schema as every corpus; ``emotion``,
    ``valence`` and ``energy`` are null) plus ``segments.jsonl`` (YouTube id, times, title,
    artist, song, labels per kept id).

    Parameters
    ----------
    segment_csvs, ontology_path : paths
        AudioSet segment CSVs and ``ontology.json``.
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
        Seconds between calls per service: ``{"youtube": 0.1, "genius": 1.0, "download": 4.0}``.
    english_threshold, english_tries : float, int
        langdetect English probability threshold and tries (paper: 0.42, 5).
    """
    prof = as_profile(profile)
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "work"
    policy = policy or RetryPolicy(attempts=4, base_delay=2.0)
    intervals = {"youtube": 0.1, "genius": 1.0, "download": 4.0}
    intervals.update(min_intervals or {})
    limiters = {name: RateLimiter(value) for name, value in intervals.items()}

    segments, bad_rows = read_segments(segment_csvs)
    df, problems, counts = select_segments(segments, load_ontology(ontology_path), targets, blacklist)
    problems = defaultdict(list, problems)
    problems["malformed row in segment CSV"] += bad_rows
    if max_per_class is not None:
        df = _sample_per_class(df, max_per_class, seed)
        counts.add(f"at most {max_per_class} per class (seeded)", df["primary_short"])
    df = _with_artist_and_song(df, client, work_dir, policy, limiters["youtube"], problems, counts, show_progress)

    lyrics = ProgressLog(work_dir / "lyrics.jsonl")
    fetch_lyrics(df, client, lyrics, policy, limiters["genius"], english_threshold,
                 english_tries, seed, show_progress)
    _collect(problems, lyrics, df["id"], "lyrics")
    df = df.loc[[lyrics.status(i) == "ok" for i in df["id"]]]
    df = df.assign(lyrics=[lyrics.result(i)["lyrics"] for i in df["id"]])
    counts.add("English lyrics found", df["primary_short"])

    audio = ProgressLog(work_dir / "audio.jsonl")
    download_segments(df, client, out_dir, work_dir, audio, policy, limiters["download"], prof,
                      show_progress=show_progress)
    _collect(problems, audio, df["id"], "audio")
    df = df.loc[[audio.status(i) == "ok" for i in df["id"]]].reset_index(drop=True)
    counts.add("audio downloaded", df["primary_short"])

    df = df.assign(emotion=None, valence=None, energy=None)
    splits = stratified_split(df, "primary_short", fractions, seed)
    _write_segments_table(out_dir / "segments.jsonl", df)
    return finish_corpus(out_dir, splits, counts, problems, AUDIOSET_GENRES, "AudioSet build")


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
                          show_progress: bool) -> pd.DataFrame:
    """Segments whose YouTube title gives an artist and a song, one video per song."""
    titles = ProgressLog(work_dir / "titles.jsonl")
    fetch_titles(df, client, titles, policy, limiter, show_progress)
    _collect(problems, titles, df["id"], "title")
    df = df.assign(title=[titles.result(i) for i in df["id"]])
    df = df.loc[[titles.status(i) == "ok" for i in df["id"]]]
    counts.add("YouTube title found", df["primary_short"])

    parsed = [split_artist_song(t) for t in df["title"]]
    problems["title not of the form artist - song"] += [
        f"{i}: {t!r}" for i, t, p in zip(df["id"], df["title"], parsed) if p is None]
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
                         "song": row.song, "labels": list(row.labels)}, ensure_ascii=False) + "\n"
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
