"""From a YouTube video to English lyrics: titles, artist / song, LyricFind and Genius, language.

:func:`fetch_titles` asks YouTube for the segments' video titles; :func:`split_artist_song`
reads ``artist - song`` out of a title with our cleaning (the authors' is
:func:`utils.dataset_related.audioset_authors.split_artist_song_authors`); :func:`fetch_lyrics`
asks LyricFind then Genius with the authors' rules (default), or Genius only with ours (checks the
match with :func:`same_song`, cleans the page with :func:`clean_genius_lyrics`), and keeps English
lyrics (:func:`english_probability`, langdetect); :func:`lyrics_outcome_counts` counts what each
source answered. Network calls go through a client
(:mod:`utils.dataset_related.net_clients`), rate limited and retried, with progress files
(:class:`utils.dataset_related.net.ProgressLog`) so a re-run skips finished items.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from typing import Iterable

import pandas as pd

from utils.dataset_related.audioset_authors import (clean_genius_lyrics_authors, lyricfind_slug, parse_lyricfind_page,
                                                    same_song_authors)

from utils.dataset_related.corpus import clean_lyrics
from utils.dataset_related.net import (NetError, ProgressLog, QuotaExceeded, RateLimiter, RetryPolicy, Skip, redact,
                                       run_resumable)
from utils.dataset_related.net_clients import YOUTUBE_MAX_IDS, Client

log = logging.getLogger(__name__)


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
    "You might also like" removed, then :func:`utils.dataset_related.corpus.clean_lyrics` (section
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


LYRICS_METHODS = ("authors", "ours")
"""``authors``: LyricFind, then Genius with the authors' match rule and cleaning; ``ours``:
Genius only, with :func:`same_song` and :func:`clean_genius_lyrics`."""


def fetch_lyrics(songs: pd.DataFrame, client: Client, progress: ProgressLog,
                 policy: RetryPolicy, limiter: RateLimiter | None = None,
                 english_threshold: float = 0.42, english_tries: int = 5, seed: int = 0,
                 show_progress: bool = True, method: str = "authors",
                 lyricfind_limiter: RateLimiter | None = None) -> dict[str, int]:
    """Lyrics for rows with ``id``, ``artist``, ``song``, kept (``ok``) when English.

    ``method="authors"`` (default): the LyricFind page first (:func:`_from_lyricfind`), then
    Genius, a hit counting when :func:`~utils.dataset_related.audioset_authors.same_song_authors`
    holds, its text cleaned by
    :func:`~utils.dataset_related.audioset_authors.clean_genius_lyrics_authors`. The result is
    ``{"lyrics", "source" ("lyricfind" | "genius"), "english_probability", "outcomes"}`` where
    ``outcomes`` says what each source gave (``ok``, ``no page``, ``page without lyrics``,
    ``no result``, ``another song``, ``empty after cleaning``, ``not English``, ``failed``). A song
    neither source gives is ``skipped`` (error ``"LyricFind <outcome>, Genius <outcome>"``, the
    outcomes as result) -- unless a source failed (rate limit or server error after the retries,
    a Genius page without text, a LyricFind page without its JSON): then it is ``failed``, and a
    re-run asks again.

    ``method="ours"``: Genius only, :func:`same_song`, :func:`clean_genius_lyrics`; result
    ``{"lyrics", "source": "genius", "genius_artist", "genius_title", "english_probability"}``.

    Limiters: ``limiter`` for Genius, ``lyricfind_limiter`` for LyricFind.
    """
    if method not in LYRICS_METHODS:
        raise ValueError(f"method must be one of {LYRICS_METHODS}, got {method!r}")
    _langdetect()                                     # fail early, before any request

    def english(text: str) -> float:
        return english_probability(text, english_tries, seed, english_threshold)

    def step_ours(song_id: str, row: tuple[str, str]) -> dict:
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
        p_en = english(lyrics)
        if p_en < english_threshold:
            raise Skip(f"not English (p_en={p_en:.2f})")
        return {"lyrics": lyrics, "source": "genius", "genius_artist": found.get("artist"),
                "genius_title": found.get("title"), "english_probability": round(p_en, 4)}

    def step_authors(song_id: str, row: tuple[str, str]) -> dict:
        artist, song = row
        outcomes: dict[str, str] = {}
        errors: list[str] = []
        for source, fetch in (("lyricfind", _from_lyricfind), ("genius", _from_genius)):
            try:
                text, outcome = fetch(client, policy, artist, song,
                                      lyricfind_limiter if source == "lyricfind" else limiter)
            except NetError as err:
                outcomes[source] = "failed"
                errors.append(redact(f"{source}: {err}"))
                log.warning("lyrics %s: %s failed: %s", song_id, source, errors[-1])
                continue
            if text is not None:
                p_en = english(text)
                if p_en >= english_threshold:
                    outcomes[source] = "ok"
                    return {"lyrics": text, "source": source, "english_probability": round(p_en, 4),
                            "outcomes": outcomes}
                outcome = "not English"
            outcomes[source] = outcome
            log.info("lyrics %s: %s %s", song_id, source, outcome)
        summary = f"LyricFind {outcomes['lyricfind']}, Genius {outcomes['genius']}"
        if errors:
            raise NetError(f"{summary}: " + "; ".join(errors))
        raise Skip(summary, details={"outcomes": outcomes})

    step = step_authors if method == "authors" else step_ours
    items = [(sid, (a, s)) for sid, a, s in zip(songs["id"], songs["artist"], songs["song"])]
    return run_resumable(items, step, progress, desc="lyrics", show_progress=show_progress)


def _from_lyricfind(client: Client, policy: RetryPolicy, artist: str, song: str,
                    limiter: RateLimiter | None) -> tuple[str | None, str]:
    """``(lyrics or None, outcome)`` from the LyricFind page of (artist, song). A page with no
    ``__NEXT_DATA__`` script at all (a block or challenge page, or a changed site) raises a
    non-retryable :class:`NetError`: the song is asked again on the next run."""
    slug = lyricfind_slug(artist, song)
    page = policy.call(client.lyricfind_page, slug, limiter=limiter)
    if page is None:
        return None, "no page"
    if "__NEXT_DATA__" not in page:
        raise NetError(f"LyricFind page {slug!r} has no __NEXT_DATA__ script (blocked, or the site changed)")
    text = parse_lyricfind_page(page)
    return (None, "page without lyrics") if text is None else (text, "ok")


def _from_genius(client: Client, policy: RetryPolicy, artist: str, song: str,
                 limiter: RateLimiter | None) -> tuple[str | None, str]:
    """``(lyrics or None, outcome)`` from Genius with the authors' match rule and cleaning."""
    found = policy.call(client.search_song, artist, song, limiter=limiter)
    if not found:
        return None, "no result"
    if not same_song_authors(artist, song, found.get("artist", ""), found.get("title", "")):
        return None, "another song"
    text = clean_genius_lyrics_authors(found.get("lyrics", ""))
    return (text, "ok") if text else (None, "empty after cleaning")


def lyrics_outcome_counts(progress: ProgressLog, ids: Iterable[str]) -> pd.DataFrame:
    """How many of ``ids`` each lyrics source answered with each outcome: rows ``lyricfind``,
    ``genius``; columns the outcomes (``ok`` = the source gave the kept, English lyrics). Read
    from the records of :func:`fetch_lyrics` (``method="authors"``); a failed item's outcomes are
    read from its error text. Items not yet asked for are left out."""
    table: dict[str, dict[str, int]] = {"lyricfind": {}, "genius": {}}
    pattern = re.compile(r"LyricFind (?P<lyricfind>[a-zA-Z ]+?), Genius (?P<genius>[a-zA-Z ]+?)(?::|$)")
    for item_id in ids:
        rec = progress.records.get(str(item_id))
        if rec is None:
            continue
        outcomes = dict((rec.get("result") or {}).get("outcomes") or {})
        if rec["status"] == "failed":
            match = pattern.search(rec.get("error") or "")
            outcomes = match.groupdict() if match else {}
        for source, outcome in outcomes.items():
            table[source][outcome] = table[source].get(outcome, 0) + 1
    return pd.DataFrame(table).T.fillna(0).astype(int)
