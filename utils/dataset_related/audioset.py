"""The AudioSet subset of the paper: music-genre segments with English lyrics, in our schema.

Steps (each one's class counts are in the returned report):

1. :func:`read_segments` -- AudioSet's segment CSVs (``# ...`` comment lines, then
   ``YTID, start_seconds, end_seconds, "label,label"``);
2. :func:`select_segments` -- segments of the paper's genres (and their descendants in
   ``ontology.json`` via ``child_ids``) minus a blacklist; mapped to the 7 classes of
   :data:`utils.config.AUDIOSET_GENRES` (folk = country + folk, heavy music = metal split
   out of rock, rhythm music = jazz + reggae + rhythm and blues);
3. :func:`fetch_titles` -- YouTube titles;
4. :func:`split_artist_song` -- cleaned titles -> artist and song;
5. :func:`fetch_lyrics` -- Genius lyrics, kept when English (langdetect);
6. :func:`download_segments` -- the 10 s segment (yt-dlp + ffmpeg), cut to the model clip;
7. a seeded stratified split, written like every corpus.

Network steps go through one client (:mod:`utils.dataset_related.net`), are rate limited and retried, and
keep JSON-lines progress files so a re-run skips finished items and retries failed ones.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from utils.config import AUDIOSET_GENRES, Profile
from utils.dataset_related.music4all import (DEFAULT_FRACTIONS, BuildReport, FilterCounts, as_profile,
                        clean_lyrics, split_counts_table, stratified_split, write_clip,
                        write_split)
from utils.dataset_related.net import (Client, FakeClient, NetError, ProgressLog, QuotaExceeded, RateLimiter,
                  RetryPolicy, Skip, WebClient, YOUTUBE_MAX_IDS, finalize_part, part_path_for,
                  redact, run_resumable)

log = logging.getLogger(__name__)

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
_YTID = re.compile(r"^[A-Za-z0-9_-]{11}$")


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
                if not _YTID.match(ytid):
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


# ================================================================== titles
_BRACKET = re.compile(r"[(\[{【]([^()\[\]{}【】]*)[)\]}】]")
_FEAT = r"(?:feat\.?|ft\.?|featuring)"
_PROD = r"(?:prod\.|prod\b|produced\b)"
_JUNK_IN_BRACKETS = re.compile(
    r"(?i)\b(?:official|video|audio|lyrics?|visuali[sz]er|hd|hq|\d{3,4}p|4k|explicit|"
    r"remaster(?:ed)?|free download|download|high quality|on screen|full)\b"
    rf"|\b{_FEAT}\s|\b{_PROD}|^\s*\d{{4}}\s*$")
_JUNK_PHRASES = re.compile(
    r"(?i)\b(?:official\s+(?:music\s+|lyrics?\s+|hd\s+)?|music\s+|lyrics?\s+)(?:video|audio|clip)\b"
    r"|(?:\b(?:with|w/)\s+|\+\s*)?\blyrics\b"
    r"|\bH[DQ]\b|\b\d{3,4}p\b|\b4K\b")
_EXTENSION = re.compile(r"(?i)\.(?:mp3|mp4|m4a|avi|flv|mov|wmv|wav|mkv|webm|3gp)\b")
_SYMBOLS = re.compile(r"[►▶♫♪♬★☆✔️]+")
_SEPARATOR = re.compile(r"\s+(?:-{1,2}|–|—|~|\||//)\s+")
_QUOTED = re.compile(r'^(?P<artist>[^"“”]+?)\s*[:\-–—]?\s*["“](?P<song>[^"“”]+)["”]\s*$')


def _drop_feat_and_prod(text: str) -> str:
    text = re.sub(rf"(?i)\s*\b{_FEAT}\s.*$", "", text)
    text = re.sub(rf"(?i)\s*\b{_PROD}\s*(?:by\s*)?.*$", "", text)
    return text


def _tidy(text: str, strip_quotes: bool = True) -> str:
    text = " ".join(text.split())
    return text.strip(" -–—~|/:,.;" + ("'\"“”" if strip_quotes else "")).strip()


def clean_title(title: str) -> str:
    """Strip a YouTube title of video boilerplate, keeping ``artist - song``.

    Removes bracketed groups that hold boilerplate ("(Official Video)", "[HD]", "(Lyrics)",
    "(feat. X)", "(prod. by X)", "(2012)"), the same words outside brackets ("official
    video", "lyrics", "HD", "HQ", "1080p"), file extensions (".mp4"), and decorative
    symbols. Featured artists and producer credits are removed by :func:`split_artist_song`
    per part (they run to the end of the artist or song).
    """
    text = unicodedata.normalize("NFKC", str(title))
    text = _SYMBOLS.sub(" ", _EXTENSION.sub(" ", text))
    text = _BRACKET.sub(lambda m: " " if _JUNK_IN_BRACKETS.search(m.group(1) or " ") or
                        not m.group(1).strip() else m.group(0), text)
    text = _JUNK_PHRASES.sub(" ", text)
    text = re.sub(r"[(\[{]\s*[)\]}]", " ", text)        # brackets left empty
    return _tidy(text, strip_quotes=False)


def split_artist_song(title: str) -> tuple[str, str] | None:
    """``(artist, song)`` from a YouTube title, or ``None`` when it has no such form.

    The cleaned title (:func:`clean_title`) is split at the first separator (`` - ``,
    `` – ``, `` — ``, `` | ``, `` ~ ``, `` // ``), or read as ``Artist "Song"``. Featured
    artists and producer credits are cut from each part; the song also stops at a second
    separator ("Artist - Song | Album").
    """
    text = clean_title(title)
    parts = _SEPARATOR.split(text, maxsplit=1)
    if len(parts) == 2:
        artist, song = parts
        song = _SEPARATOR.split(song, maxsplit=1)[0]
    else:
        match = _QUOTED.match(text)
        if not match:
            return None
        artist, song = match.group("artist"), match.group("song")
    artist = _tidy(_drop_feat_and_prod(artist))
    song = _tidy(_drop_feat_and_prod(song.strip().strip('"“”')))
    if not artist or not song:
        return None
    return artist, song


def normalize_name(text: str) -> str:
    """Lower-case letters and digits only (``&`` read as ``and``; invisible characters gone)."""
    text = unicodedata.normalize("NFKC", str(text)).lower().replace("&", "and")
    return re.sub(r"[\W_]+", "", text)


def same_song(artist: str, song: str, found_artist: str, found_title: str) -> bool:
    """The authors' Genius match check: same artist (normalised) and the found title
    (featured artists removed) contained in the searched song title."""
    found_title = _BRACKET.sub(lambda m: " " if re.search(rf"(?i)\b{_FEAT}\s", m.group(1))
                               else m.group(0), found_title)
    found = normalize_name(_drop_feat_and_prod(found_title))
    return (normalize_name(artist) == normalize_name(found_artist)
            and bool(found) and found in normalize_name(song))


def clean_genius_lyrics(text: str) -> str:
    """Genius page text -> lyrics: the header line ("12 Contributors... Song Lyrics") and
    "You might also like" removed, then :func:`utils.dataset_related.music4all.clean_lyrics` (section
    lines like "[Chorus]", the trailing "Embed" marker, blank-line runs)."""
    lines = str(text).split("\n")
    if lines and "Lyrics" in lines[0]:
        rest = lines[0][lines[0].rindex("Lyrics") + len("Lyrics"):]
        lines = ([rest] if rest.strip() else []) + lines[1:]
    text = "\n".join(lines)
    text = re.sub(r"\n?You might also like", "\n", text)
    text = re.sub(r"\[[^\]\n]*\]", "\n", text)             # section headers glued to text
    return clean_lyrics(text)


# ================================================================== language
def _langdetect():
    try:
        import langdetect
    except ImportError:
        raise ImportError("English detection needs the optional package 'langdetect' "
                          "(pip install langdetect)") from None
    return langdetect


def english_probability(text: str, tries: int = 5, seed: int = 0,
                        threshold: float = 0.42) -> float:
    """langdetect's probability that ``text`` is English: the best of up to ``tries``
    detections (seeds ``seed, seed+1, ...``; stops early once ``>= threshold``).
    0.0 when langdetect finds no features (e.g. only digits)."""
    langdetect = _langdetect()
    from langdetect.lang_detect_exception import LangDetectException

    factory = langdetect.DetectorFactory
    previous, best = factory.seed, 0.0
    try:
        for k in range(tries):
            factory.seed = seed + k
            try:
                found = langdetect.detect_langs(text)
            except LangDetectException:
                return 0.0
            best = max([best] + [lang.prob for lang in found if lang.lang == "en"])
            if best >= threshold:
                break
    finally:
        factory.seed = previous
    return float(best)


def is_english(text: str, threshold: float = 0.42, tries: int = 5, seed: int = 0) -> bool:
    """True when :func:`english_probability` reaches ``threshold`` (paper: 0.42, 5 tries)."""
    return english_probability(text, tries, seed, threshold) >= threshold


# ================================================================== network steps
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


def fetch_titles(segments: pd.DataFrame, client: Client, progress: ProgressLog,
                 policy: RetryPolicy, limiter: RateLimiter | None = None,
                 show_progress: bool = True) -> dict[str, int]:
    """YouTube titles for ``segments`` (ids -> ``progress``), 50 videos a call.

    A video absent from the answer (removed or private) is ``skipped``; a call that still
    fails after retries marks its videos ``failed`` (retried on the next run). An exhausted
    daily quota stops the step: every video not yet asked for is marked ``failed``.
    """
    from tqdm.auto import tqdm

    todo = [(sid, yt) for sid, yt in zip(segments["id"], segments["youtube_id"])
            if not progress.is_finished(sid)]
    counts = {"done_before": len(segments) - len(todo), "ok": 0, "skipped": 0, "failed": 0}
    batches = [todo[i:i + YOUTUBE_MAX_IDS] for i in range(0, len(todo), YOUTUBE_MAX_IDS)]
    for number, batch in enumerate(tqdm(batches, desc="YouTube titles", disable=not show_progress)):
        try:
            titles = policy.call(client.video_titles, [yt for _, yt in batch], limiter=limiter)
        except QuotaExceeded as err:
            message = redact(f"quota exceeded, not requested: {err}")
            log.warning("YouTube quota exhausted; %d video(s) left for the next run",
                        sum(len(b) for b in batches[number:]))
            for rest in batches[number:]:
                for sid, _ in rest:
                    progress.record(sid, "failed", error=message)
                counts["failed"] += len(rest)
            break
        except (NetError, ValueError) as err:
            message = redact(f"{type(err).__name__}: {err}")
            log.warning("title batch failed: %s", message)
            for sid, _ in batch:
                progress.record(sid, "failed", error=message)
            counts["failed"] += len(batch)
            continue
        for sid, yt in batch:
            if yt in titles:
                progress.record(sid, "ok", result=titles[yt])
                counts["ok"] += 1
            else:
                progress.record(sid, "skipped", error="video unavailable (no title returned)")
                counts["skipped"] += 1
    return counts


def fetch_lyrics(songs: pd.DataFrame, client: Client, progress: ProgressLog,
                 policy: RetryPolicy, limiter: RateLimiter | None = None,
                 english_threshold: float = 0.42, english_tries: int = 5, seed: int = 0,
                 show_progress: bool = True) -> dict[str, int]:
    """Genius lyrics for rows with ``id``, ``artist``, ``song``; kept (``ok``, result
    ``{"lyrics", "genius_artist", "genius_title", "english_probability"}``) when Genius'
    match is the same song (:func:`same_song`), non-empty after cleaning and English.
    Everything else is ``skipped`` with the reason; network failures are ``failed``."""
    _langdetect()                                     # fail early, before any request

    def step(song_id: str, row: tuple[str, str]) -> dict:
        artist, song = row
        found = policy.call(client.search_song, artist, song, limiter=limiter)
        if not found:
            raise Skip("no Genius result")
        if not same_song(artist, song, found.get("artist", ""), found.get("title", "")):
            raise Skip(f"Genius returned another song: {found.get('artist')!r} - "
                       f"{found.get('title')!r}")
        lyrics = clean_genius_lyrics(found.get("lyrics", ""))
        if not lyrics:
            raise Skip("lyrics empty after cleaning")
        p_en = english_probability(lyrics, english_tries, seed, english_threshold)
        if p_en < english_threshold:
            raise Skip(f"not English (p_en={p_en:.2f})")
        return {"lyrics": lyrics, "genius_artist": found.get("artist"),
                "genius_title": found.get("title"), "english_probability": round(p_en, 4)}

    items = [(sid, (a, s)) for sid, a, s in zip(songs["id"], songs["artist"], songs["song"])]
    return run_resumable(items, step, progress, desc="Genius lyrics", show_progress=show_progress)


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
    ``failed`` (retried on the next run); a partial download never counts as done."""
    prof = as_profile(profile)
    sr, clip_seconds = prof.audio.sample_rate, prof.audio.clip_seconds
    corpus_dir, work_dir = Path(corpus_dir), Path(work_dir)

    def step(seg_id: str, row: tuple[str, float, float]) -> dict:
        youtube_id, start, end = row
        segment_path = work_dir / "segments" / f"{seg_id}.wav"
        clip_path = corpus_dir / "audio" / f"{seg_id}.wav"
        if not segment_path.exists():
            part = part_path_for(segment_path)
            part.unlink(missing_ok=True)
            policy.call(client.download_audio, youtube_id, start, end, part, limiter=limiter)
            finalize_part(part, segment_path,
                          lambda p: check_wav(p, min_fraction * (float(end) - float(start))))
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
    ontology = load_ontology(ontology_path)
    df, problems, counts = select_segments(segments, ontology, targets, blacklist)
    problems = defaultdict(list, problems)
    problems["malformed row in segment CSV"] += bad_rows
    if max_per_class is not None:
        rng = np.random.default_rng(seed)
        keep = np.zeros(len(df), dtype=bool)
        for cls in sorted(df["primary_short"].unique()):
            members = np.flatnonzero(df["primary_short"].to_numpy() == cls)
            keep[rng.permutation(members)[:max_per_class]] = True
        df = df.loc[keep].reset_index(drop=True)
        counts.add(f"at most {max_per_class} per class (seeded)", df["primary_short"])

    titles = ProgressLog(work_dir / "titles.jsonl")
    fetch_titles(df, client, titles, policy, limiters["youtube"], show_progress)
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
    for name, part in splits.items():
        write_split(out_dir, name, part)
    with (out_dir / "segments.jsonl").open("w", encoding="utf-8") as fh:
        for row in df.itertuples():
            fh.write(json.dumps({"id": row.id, "youtube_id": row.youtube_id,
                                 "start_seconds": row.start_seconds,
                                 "end_seconds": row.end_seconds, "title": row.title,
                                 "artist": row.artist, "song": row.song,
                                 "labels": list(row.labels)}, ensure_ascii=False) + "\n")
    problems = {k: v for k, v in problems.items() if v}
    for reason, items in problems.items():
        log.warning("AudioSet build: %d item(s) %s", len(items), reason)
    return BuildReport(out_dir, counts.table(), split_counts_table(splits, AUDIOSET_GENRES),
                       problems)


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


# ================================================================== fixtures
_FIXTURE_ONTOLOGY: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (id, name, child ids) -- a subset of the real AudioSet ontology, same ids and names
    ("/m/04rlf", "Music", ("/m/0kpv1t",)),
    ("/m/0kpv1t", "Music genre", ("/m/064t9", "/m/0glt670", "/m/06by7", "/m/06j6l", "/m/0gywn",
                                  "/m/06cqb", "/m/01lyv", "/m/02x8m", "/m/02w4v", "/m/03_d0",
                                  "/m/026z9", "/m/0ggq0m", "/m/02lkt", "/m/0155w")),
    ("/m/064t9", "Pop music", ()),
    ("/m/0glt670", "Hip hop music", ("/m/04j_h4", "/m/0n8zsc8", "/m/02cz_7")),
    ("/m/04j_h4", "Grime music", ()),
    ("/m/0n8zsc8", "Trap music", ()),
    ("/m/02cz_7", "Beatboxing", ()),
    ("/m/06by7", "Rock music", ("/m/03lty", "/m/05r6t", "/m/0dls3", "/m/0dl5d", "/m/07sbbz2",
                                "/m/05w3f")),
    ("/m/03lty", "Heavy metal", ()),
    ("/m/05r6t", "Punk rock", ()),
    ("/m/0dls3", "Grunge", ()),
    ("/m/0dl5d", "Progressive rock", ()),
    ("/m/07sbbz2", "Rock and roll", ()),
    ("/m/05w3f", "Psychedelic rock", ()),
    ("/m/06j6l", "Rhythm and blues", ()),
    ("/m/0gywn", "Soul music", ()),
    ("/m/06cqb", "Reggae", ("/m/0190y4",)),
    ("/m/0190y4", "Dub", ()),
    ("/m/01lyv", "Country", ("/m/015y_n", "/m/0gg8l")),
    ("/m/015y_n", "Swing music", ()),
    ("/m/0gg8l", "Bluegrass", ()),
    ("/m/02x8m", "Funk", ()),
    ("/m/02w4v", "Folk music", ()),
    ("/m/03_d0", "Jazz", ()),
    ("/m/026z9", "Disco", ()),
    ("/m/0ggq0m", "Classical music", ("/m/05lls",)),
    ("/m/05lls", "Opera", ()),
    ("/m/02lkt", "Electronic music", ("/m/03mb9", "/m/07gxw", "/m/07s72n")),
    ("/m/03mb9", "House music", ()),
    ("/m/07gxw", "Techno", ()),
    ("/m/07s72n", "Dubstep", ()),
    ("/m/0155w", "Blues", ()),
    ("/m/09x0r", "Speech", ()),
)

# (labels, class read off the ontology by hand or None) for the fixture's clean segments
_FIXTURE_SEGMENTS: tuple[tuple[str, str], ...] = (
    ("/m/04rlf,/m/064t9", "pop"), ("/m/064t9", "pop"), ("/m/04rlf,/m/064t9,/m/09x0r", "pop"),
    ("/m/04rlf,/m/0glt670", "hip hop"), ("/m/04rlf,/m/0n8zsc8", "hip hop"),
    ("/m/0glt670,/m/04j_h4", "hip hop"),
    ("/m/04rlf,/m/06by7", "rock"), ("/m/04rlf,/m/05r6t", "rock"), ("/m/06by7,/m/0dls3", "rock"),
    ("/m/04rlf,/m/06by7,/m/03lty", "heavy music"), ("/m/03lty", "heavy music"),
    ("/m/04rlf,/m/03lty,/m/05r6t", "heavy music"),
    ("/m/04rlf,/m/01lyv", "folk"), ("/m/02w4v", "folk"), ("/m/04rlf,/m/0gg8l", "folk"),
    ("/m/04rlf,/m/03_d0", "rhythm music"), ("/m/06cqb", "rhythm music"),
    ("/m/04rlf,/m/06j6l", "rhythm music"),
    ("/m/04rlf,/m/02lkt", "electronic"), ("/m/03mb9", "electronic"),
    ("/m/04rlf,/m/02lkt,/m/07gxw", "electronic"),
    ("/m/04rlf,/m/064t9", "pop"), ("/m/04rlf,/m/0glt670", "hip hop"), ("/m/06by7", "rock"),
    ("/m/04rlf,/m/03lty", "heavy music"), ("/m/04rlf,/m/02w4v", "folk"),
    ("/m/04rlf,/m/06j6l", "rhythm music"), ("/m/04rlf,/m/07s72n", "electronic"),
)

_EN_LINES = ("I walk alone down this empty road tonight", "you said that you would never leave me",
             "the city lights are burning in my eyes", "we were young and we were running free",
             "hold me close until the morning comes", "every time I see you I forget the pain",
             "I can feel the thunder in my heart", "don't you know that I will wait for you")
_ES_LINES = ("yo quiero bailar contigo toda la noche", "la luna brilla sobre el mar azul",
             "tu corazon es mi cancion favorita", "no puedo vivir sin tu amor mi vida")


def _random_ytid(rng: np.random.Generator) -> str:
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    return "".join(rng.choice(alphabet, size=11))


def write_fixture(directory: str | Path, seed: int = 0) -> Path:
    """Write a small AudioSet in the real formats plus canned network answers.

    Files: ``ontology.json`` (a subset of the real ontology, real ids and names, full node
    format), ``balanced_train_segments.csv`` and ``eval_segments.csv`` (AudioSet's comment
    header, ``YTID, start, end, "labels"``), ``fake_responses.json`` for
    :class:`utils.dataset_related.net.FakeClient`, and ``expected.json`` (what each segment should become).

    Defects on purpose: malformed rows, a segment repeated across the CSVs, a second
    segment of one video, a non-genre (speech) segment, a blacklisted (pop + classical) and
    an ambiguous (pop + rock) segment, a removed video, an unparseable title, a second
    video of the same song, a 429 then success on a title batch and on a song, a Genius
    miss, a wrong Genius match, Spanish lyrics, a lyrics search failing five times (503),
    and partial / broken / missing audio downloads.
    """
    rng = np.random.default_rng(seed)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    nodes = [{"id": i, "name": n, "description": f"{n} (fixture)", "citation_uri": "",
              "positive_examples": [], "child_ids": list(c), "restrictions": []}
             for i, n, c in _FIXTURE_ONTOLOGY]
    (root / "ontology.json").write_text(json.dumps(nodes, indent=2), encoding="utf-8")

    segments = []
    for k, (labels, cls) in enumerate(_FIXTURE_SEGMENTS):
        start = float(rng.integers(0, 20)) * 10.0
        segments.append({"ytid": _random_ytid(rng), "start": start, "labels": labels,
                         "class": cls, "artist": f"Band {k}", "song": f"Song Number {k}"})
    extra = {name: {"ytid": _random_ytid(rng), "start": 30.0, "labels": labels, "class": None}
             for name, labels in (("speech", "/m/09x0r"), ("blacklisted", "/m/04rlf,/m/064t9,/m/0ggq0m"),
                                  ("ambiguous", "/m/04rlf,/m/064t9,/m/06by7"))}

    titles = {}
    junk = ("{a} - {s} (Official Video) [HD]", "{a} - {s} (Lyrics)", "{a} ft. Guest - {s} (2012)",
            "{a} – {s} [Official Audio]", "{a} - {s} feat. Someone (prod. by DJ Test).mp4",
            "{a} - {s} | Official Music Video", '{a} "{s}"', "{a} - {s} HQ")
    for k, seg in enumerate(segments):
        titles[seg["ytid"]] = junk[k % len(junk)].format(a=seg["artist"], s=seg["song"])
    for seg in extra.values():
        titles[seg["ytid"]] = "Some Artist - Some Song"

    # the problems, each on a different class so every class keeps clean segments
    by_class: dict[str, list[dict]] = defaultdict(list)
    for seg in segments:
        by_class[seg["class"]].append(seg)
    removed = by_class["pop"][0]
    unparseable = by_class["hip hop"][0]
    dup_song_of = by_class["rock"][0]
    dup_song = by_class["rock"][1]
    genius_miss = by_class["heavy music"][0]
    wrong_match = by_class["folk"][0]
    spanish = by_class["rhythm music"][0]
    flaky_song = by_class["electronic"][0]
    failing_song = by_class["pop"][1]
    partial_audio = by_class["hip hop"][1]
    broken_audio = by_class["folk"][1]
    missing_audio = by_class["heavy music"][1]
    del titles[removed["ytid"]]
    titles[unparseable["ytid"]] = "my band practice 2012"
    titles[dup_song["ytid"]] = f"{dup_song_of['artist']} - {dup_song_of['song']} [HD]"
    dup_song["artist"], dup_song["song"] = dup_song_of["artist"], dup_song_of["song"]

    songs, errors, audio = {}, {}, {}
    for seg in segments:
        key = f"{seg['artist']}|{seg['song']}".lower()
        lines = list(rng.choice(_EN_LINES, size=6, replace=False))
        body = "\n".join(lines[:3]) + "\n\n[Chorus]\n" + "\n".join(lines[3:])
        songs[key] = {"artist": seg["artist"], "title": seg["song"],
                      "lyrics": f"3 Contributors{seg['song']} Lyrics[Verse 1]\n{body}\n12Embed"}
        audio[seg["ytid"]] = "ok"
    del songs[f"{genius_miss['artist']}|{genius_miss['song']}".lower()]
    songs[f"{wrong_match['artist']}|{wrong_match['song']}".lower()]["artist"] = "A Tribute Band"
    songs[f"{spanish['artist']}|{spanish['song']}".lower()]["lyrics"] = (
        f"{spanish['song']} Lyrics\n" + "\n".join(rng.choice(_ES_LINES, size=6)))
    errors[f"{flaky_song['artist']}|{flaky_song['song']}".lower()] = [429]
    errors[f"{failing_song['artist']}|{failing_song['song']}".lower()] = [503] * 5
    errors[segments[0]["ytid"]] = [429]
    audio[partial_audio["ytid"]] = "partial"
    audio[broken_audio["ytid"]] = "broken"
    audio[missing_audio["ytid"]] = "missing"

    header = ["# Segments csv created Sun Mar  5 10:54:31 2017",
              "# num_ytids=30, num_segs=30, num_unique_labels=30, num_positive_labels=60",
              "# YTID, start_seconds, end_seconds, positive_labels"]

    def row(ytid: str, start: float, labels: str) -> str:
        return f'{ytid}, {start:.3f}, {start + 10:.3f}, "{labels}"'

    balanced = [row(s["ytid"], s["start"], s["labels"]) for s in segments[::2]]
    balanced += [row(s["ytid"], s["start"], s["labels"]) for s in extra.values()]
    balanced += ["tooShort1, 30.000", f'{_random_ytid(rng)}, abc, 40.000, "/m/064t9"',
                 '../../etc/x, 0.000, 10.000, "/m/064t9"']
    evaluation = [row(s["ytid"], s["start"], s["labels"]) for s in segments[1::2]]
    evaluation.append(row(segments[0]["ytid"], segments[0]["start"], segments[0]["labels"]))
    evaluation.append(row(segments[2]["ytid"], segments[2]["start"] + 100.0, segments[2]["labels"]))
    (root / "balanced_train_segments.csv").write_text("\n".join(header + balanced) + "\n",
                                                      encoding="utf-8")
    (root / "eval_segments.csv").write_text("\n".join(header + evaluation) + "\n", encoding="utf-8")
    (root / "fake_responses.json").write_text(json.dumps(
        {"titles": titles, "songs": songs, "audio": audio, "errors": errors}, indent=1),
        encoding="utf-8")

    def seg_id(seg: dict) -> str:
        return f"{seg['ytid']}_{int(round(seg['start'] * 1000))}"

    dropped = {seg_id(removed): "title", seg_id(unparseable): "title parse",
               seg_id(dup_song): "duplicate song", seg_id(genius_miss): "lyrics",
               seg_id(wrong_match): "lyrics", seg_id(spanish): "lyrics",
               seg_id(failing_song): "lyrics failed", seg_id(partial_audio): "audio failed",
               seg_id(broken_audio): "audio failed", seg_id(missing_audio): "audio failed"}
    expected = {"classes": {seg_id(s): s["class"] for s in segments},
                "not_selected": {seg_id(s): name for name, s in extra.items()},
                "dropped": dropped,
                "kept": sorted(seg_id(s) for s in segments if seg_id(s) not in dropped)}
    (root / "expected.json").write_text(json.dumps(expected, indent=1), encoding="utf-8")
    return root
