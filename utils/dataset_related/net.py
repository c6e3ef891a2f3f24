"""The network, behind one small interface.

Everything the real-data pipelines fetch from outside goes through a *client* with three
methods (:class:`WebClient` talks to the real services, :class:`FakeClient` answers from
canned responses for tests and CI):

``video_titles(video_ids) -> {video_id: title}``
    YouTube Data API v3 ``videos`` endpoint (at most 50 ids a call; key from the
    ``YOUTUBE_API_KEY`` environment variable).
``search_song(artist, title) -> {"artist", "title", "lyrics"} | None``
    Genius through the ``lyricsgenius`` client (token from ``GENIUS_ACCESS_TOKEN``).
``download_audio(video_id, start_seconds, end_seconds, part_path) -> None``
    yt-dlp + ffmpeg: the segment, mono, written to ``part_path`` only. The caller checks the
    file and renames it (:func:`finalize_part`); a partial download never counts as done.

Around the client, plain helpers that both clients share:

* :class:`RateLimiter` -- a minimum interval between calls to one service;
* :class:`RetryPolicy` -- retries with exponential backoff on retryable :class:`NetError`
  (HTTP 429, 5xx, timeouts, connection errors), honouring ``Retry-After``;
* :class:`ProgressLog` -- a JSON-lines file ``{"id", "status", "result", "error"}`` (last
  line per id wins): re-running skips finished items (``ok`` / ``skipped``) and retries
  ``failed`` ones;
* :func:`run_resumable` -- the loop that ties them together, with a tqdm progress bar and
  counts per status;
* :func:`redact` -- removes API keys / tokens from any text before it is logged or stored.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

log = logging.getLogger(__name__)

SECRET_ENV_VARS: tuple[str, ...] = ("YOUTUBE_API_KEY", "GENIUS_ACCESS_TOKEN")
YOUTUBE_VIDEOS_URL = "https://www.googleapis.com/youtube/v3/videos"
YOUTUBE_MAX_IDS = 50

# ------------------------------------------------------------------ secrets
_SECRET_PATTERNS = (
    # key=..., access_token=..., token=... in URLs / query strings / messages
    (re.compile(r"(?i)\b((?:api[_-]?)?key|access_token|token|client_secret)=[^&\s'\"]+"), r"\1=***"),
    # Authorization: Bearer xxx
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
)


def redact(text: Any, secrets: Iterable[str] = ()) -> str:
    """``str(text)`` with API keys and tokens replaced by ``***``.

    Removes the current values of :data:`SECRET_ENV_VARS` (and of ``secrets``) wherever
    they appear, and anything that looks like ``key=...``, ``token=...``,
    ``access_token=...`` or ``Bearer ...``.
    """
    out = str(text)
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS] + list(secrets)
    for value in values:
        if value and len(value) >= 4:
            out = out.replace(value, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def secret_from_env(name: str) -> str:
    """The value of environment variable ``name``; a clear error (naming it) if unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(
            f"environment variable {name} is not set; export it before running the network "
            "steps (keys are read only from the environment, never from files or notebooks)")
    return value


# ------------------------------------------------------------------ errors, rate, retries
class NetError(Exception):
    """A failed network call.

    Parameters
    ----------
    message : str
        What failed (redacted before it is stored).
    status : int or None
        HTTP status when there was one.
    retryable : bool
        True for rate limits (429), server errors (5xx), timeouts and dropped connections.
    retry_after : float or None
        Seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(self, message: str, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None):
        super().__init__(redact(message))
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class QuotaExceeded(NetError):
    """The service's daily quota is used up: retrying today is pointless; stop the step."""


def error_for_status(status: int, message: str, retry_after: float | None = None) -> NetError:
    """A :class:`NetError` for an HTTP status: 429 and 5xx are retryable, other 4xx not."""
    retryable = status == 429 or status >= 500
    return NetError(f"HTTP {status}: {message}", status=status, retryable=retryable,
                    retry_after=retry_after)


class RateLimiter:
    """At most one call per ``min_interval`` seconds.

    ``clock`` and ``sleep`` are injectable so tests run without waiting.
    """

    def __init__(self, min_interval: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        self.min_interval = float(min_interval)
        self.clock, self.sleep = clock, sleep
        self._last: float | None = None

    def wait(self) -> None:
        """Sleep until ``min_interval`` seconds have passed since the previous call."""
        now = self.clock()
        if self._last is not None:
            remaining = self.min_interval - (now - self._last)
            if remaining > 0:
                self.sleep(remaining)
                now = self.clock()
        self._last = now


@dataclass
class RetryPolicy:
    """Retries with exponential backoff.

    Delay before retry ``k`` (1-based) is ``min(base_delay * 2**(k-1), max_delay)`` seconds,
    or the server's ``Retry-After`` when it is larger. Only retryable :class:`NetError`
    are retried; anything else propagates at once.
    """

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        delay = min(self.base_delay * 2 ** (retry - 1), self.max_delay)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self.max_delay))
        return delay

    def call(self, fn: Callable[..., Any], *args: Any, limiter: RateLimiter | None = None,
             **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with rate limiting and retries; raises the last error."""
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        for attempt in range(1, self.attempts + 1):
            if limiter is not None:
                limiter.wait()
            try:
                return fn(*args, **kwargs)
            except NetError as err:
                if not err.retryable or attempt == self.attempts:
                    raise
                delay = self.delay(attempt, err.retry_after)
                log.warning("retry %d/%d in %.1f s after: %s", attempt, self.attempts - 1,
                            delay, redact(err))
                self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------ progress files
FINISHED = ("ok", "skipped")
STATUSES = ("ok", "skipped", "failed")


class ProgressLog:
    """Resumable progress: a JSON-lines file of ``{"id", "status", "result", "error"}``.

    ``status`` is ``ok`` (done, ``result`` holds the value), ``skipped`` (done, permanently
    rejected -- ``error`` says why, e.g. no lyrics found) or ``failed`` (transient error;
    retried on the next run). The last line for an id wins. A torn last line (a crash while
    writing) is ignored and counted in :attr:`bad_lines`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.bad_lines = 0
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line_no, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        if rec.get("status") not in STATUSES or "id" not in rec:
                            raise ValueError("bad record")
                    except (json.JSONDecodeError, ValueError, AttributeError):
                        self.bad_lines += 1
                        log.warning("%s line %d unreadable; ignored", self.path, line_no)
                        continue
                    self.records[str(rec["id"])] = rec

    def status(self, item_id: str) -> str | None:
        rec = self.records.get(str(item_id))
        return None if rec is None else rec["status"]

    def result(self, item_id: str) -> Any:
        rec = self.records.get(str(item_id))
        return None if rec is None else rec.get("result")

    def is_finished(self, item_id: str) -> bool:
        return self.status(item_id) in FINISHED

    def record(self, item_id: str, status: str, result: Any = None, error: str | None = None) -> None:
        """Append one record (flushed and fsynced, so a crash loses at most this line)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        rec = {"id": str(item_id), "status": status, "result": result,
               "error": None if error is None else redact(error)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records[str(item_id)] = rec

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for rec in self.records.values():
            out[rec["status"]] += 1
        return out


class Skip(Exception):
    """Raised by a step function: the item is permanently rejected (recorded as skipped)."""


def run_resumable(items: Iterable[tuple[str, Any]], step: Callable[[str, Any], Any],
                  progress: ProgressLog, desc: str = "items", show_progress: bool = True
                  ) -> dict[str, int]:
    """Run ``step(item_id, item)`` for every item not finished in ``progress``.

    ``step`` returns a JSON-serialisable result (-> ``ok``), raises :class:`Skip`
    (-> ``skipped``) or raises :class:`NetError` / ``OSError`` / ``ValueError``
    (-> ``failed``, retried next run). Other exceptions are programming errors and propagate.

    Returns
    -------
    dict
        Counts for this run: ``{"done_before", "ok", "skipped", "failed"}``.
    """
    from tqdm.auto import tqdm

    items = list(items)
    counts = {"done_before": 0, "ok": 0, "skipped": 0, "failed": 0}
    todo = []
    for item_id, item in items:
        if progress.is_finished(item_id):
            counts["done_before"] += 1
        else:
            todo.append((item_id, item))
    for item_id, item in tqdm(todo, desc=desc, disable=not show_progress):
        try:
            result = step(item_id, item)
        except Skip as why:
            progress.record(item_id, "skipped", error=str(why))
            counts["skipped"] += 1
        except (NetError, OSError, ValueError, subprocess.SubprocessError) as err:
            message = redact(f"{type(err).__name__}: {err}")
            log.warning("%s %s failed: %s", desc, item_id, message)
            progress.record(item_id, "failed", error=message)
            counts["failed"] += 1
        else:
            progress.record(item_id, "ok", result=result)
            counts["ok"] += 1
    return counts


# ------------------------------------------------------------------ atomic downloads
def part_path_for(final_path: str | Path) -> Path:
    """``<final>.part`` -- where a download goes until it has been checked."""
    final_path = Path(final_path)
    return final_path.with_name(final_path.name + ".part")


def finalize_part(part_path: str | Path, final_path: str | Path,
                  check: Callable[[Path], None]) -> Path:
    """Check a finished download and move it into place atomically.

    ``check(part_path)`` raises (``ValueError`` / ``OSError``) when the file is broken or
    incomplete; then the part file is deleted and the error re-raised, and ``final_path``
    is untouched. Otherwise ``os.replace`` renames it (atomic on one filesystem).
    """
    part_path, final_path = Path(part_path), Path(final_path)
    if not part_path.exists():
        raise OSError(f"download produced no file at {part_path}")
    try:
        check(part_path)
    except Exception:
        part_path.unlink(missing_ok=True)
        raise
    final_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part_path, final_path)
    return final_path


# ------------------------------------------------------------------ the interface
class Client(Protocol):
    """The one network interface of the pipelines (see the module docstring)."""

    def video_titles(self, video_ids: list[str]) -> dict[str, str]: ...

    def search_song(self, artist: str, title: str) -> dict | None: ...

    def download_audio(self, video_id: str, start_seconds: float, end_seconds: float,
                       part_path: Path) -> None: ...


def parse_videos_response(payload: dict) -> dict[str, str]:
    """``{video_id: title}`` from a YouTube Data API v3 ``videos.list`` JSON response.

    Videos that were removed or made private are simply absent from ``items``.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("items", []), list):
        raise ValueError(f"unexpected YouTube response: {redact(payload)[:200]}")
    titles = {}
    for item in payload.get("items", []):
        try:
            titles[str(item["id"])] = str(item["snippet"]["title"])
        except (KeyError, TypeError):
            log.warning("YouTube item without id/snippet.title ignored: %s", redact(item)[:200])
    return titles


class WebClient:
    """The real network: YouTube Data API (``requests``), Genius (``lyricsgenius``),
    yt-dlp + ffmpeg (subprocesses).

    Each service is checked lazily, on first use, with a clear error naming what is
    missing (environment variable, package or executable). Calls have timeouts; errors
    become :class:`NetError` with the HTTP status, so :class:`RetryPolicy` can retry them.

    Parameters
    ----------
    timeout : float
        Seconds per HTTP request.
    download_timeout : float
        Seconds for one yt-dlp download or ffmpeg cut.
    sample_rate : int
        Hz of the mono wav that :meth:`download_audio` writes.
    """

    def __init__(self, timeout: float = 30.0, download_timeout: float = 300.0,
                 sample_rate: int = 16_000):
        self.timeout = timeout
        self.download_timeout = download_timeout
        self.sample_rate = sample_rate
        self._genius = None
        self._session = None

    # -- YouTube
    def video_titles(self, video_ids: list[str]) -> dict[str, str]:
        """Titles of up to 50 videos by id (one ``videos.list`` call, 1 quota unit)."""
        if len(video_ids) > YOUTUBE_MAX_IDS:
            raise ValueError(f"at most {YOUTUBE_MAX_IDS} ids per call, got {len(video_ids)}")
        import requests

        key = secret_from_env("YOUTUBE_API_KEY")
        if self._session is None:
            self._session = requests.Session()
        params = {"part": "snippet", "id": ",".join(video_ids), "key": key,
                  "maxResults": YOUTUBE_MAX_IDS}
        try:
            resp = self._session.get(YOUTUBE_VIDEOS_URL, params=params, timeout=self.timeout)
        except requests.Timeout as err:
            raise NetError(f"YouTube timeout: {err}", retryable=True) from None
        except requests.ConnectionError as err:
            raise NetError(f"YouTube connection error: {err}", retryable=True) from None
        if resp.status_code != 200:
            reason = resp.text[:300]
            status = resp.status_code
            if status == 403 and "quotaExceeded" in reason:
                raise QuotaExceeded(f"HTTP 403 quota exceeded: {reason}", status=403)
            raise error_for_status(status, reason, _retry_after(resp.headers))
        return parse_videos_response(resp.json())

    # -- Genius
    def _genius_client(self):
        if self._genius is None:
            try:
                import lyricsgenius
            except ImportError:
                raise ImportError("lyrics fetching needs the optional package 'lyricsgenius' "
                                  "(pip install lyricsgenius)") from None
            self._genius = lyricsgenius.Genius(
                secret_from_env("GENIUS_ACCESS_TOKEN"), timeout=int(self.timeout), retries=0,
                verbose=False, skip_non_songs=True, remove_section_headers=False)
        return self._genius

    def search_song(self, artist: str, title: str) -> dict | None:
        """Genius' best match for (artist, title): ``{"artist", "title", "lyrics"}`` or None.

        A match whose lyrics page gave no text raises a non-retryable :class:`NetError`
        (recorded as failed, so a later run tries again: Genius answers rate-limited page
        requests with pages that hold no lyrics)."""
        import requests

        genius = self._genius_client()
        try:
            song = genius.search_song(title, artist)
        except requests.Timeout as err:
            raise NetError(f"Genius timeout: {err}", retryable=True) from None
        except requests.ConnectionError as err:
            raise NetError(f"Genius connection error: {err}", retryable=True) from None
        except (requests.HTTPError, AssertionError) as err:
            # lyricsgenius raises HTTPError(status, text) or AssertionError("Unexpected
            # response status code: 429 ...") for non-200 answers
            raise _genius_error(err) from None
        if song is None:
            return None
        lyrics = str(song.lyrics or "")
        if not lyrics.strip():
            raise NetError(f"Genius page for {artist!r} - {title!r} gave no lyrics")
        return {"artist": str(song.artist), "title": str(song.title), "lyrics": lyrics}

    # -- yt-dlp + ffmpeg
    @staticmethod
    def _ytdlp_command() -> list[str]:
        exe = shutil.which("yt-dlp")
        if exe:
            return [exe]
        import importlib.util

        if importlib.util.find_spec("yt_dlp") is None:
            raise RuntimeError("audio download needs yt-dlp (pip install yt-dlp)")
        return [sys.executable, "-m", "yt_dlp"]

    @staticmethod
    def _ffmpeg() -> str:
        exe = shutil.which("ffmpeg")
        if not exe:
            raise RuntimeError("audio download needs the ffmpeg executable on PATH "
                               "(e.g. apt-get install ffmpeg)")
        return exe

    def download_audio(self, video_id: str, start_seconds: float, end_seconds: float,
                       part_path: Path) -> None:
        """Download a video's audio and cut ``[start, end)`` seconds into ``part_path``
        (mono wav at :attr:`sample_rate`). The caller checks and renames the file."""
        ytdlp, ffmpeg = self._ytdlp_command(), self._ffmpeg()
        part_path = Path(part_path)
        part_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="ytdlp_") as tmp:
            template = str(Path(tmp) / "full.%(ext)s")
            cmd = ytdlp + ["--quiet", "--no-playlist", "--no-progress", "-f", "bestaudio/best",
                           "-o", template, f"https://www.youtube.com/watch?v={video_id}"]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=self.download_timeout)
            if proc.returncode != 0:
                message = proc.stderr.strip()[-400:]
                retryable = "HTTP Error 429" in message or "timed out" in message.lower()
                raise NetError(f"yt-dlp failed for {video_id}: {message}", retryable=retryable,
                               status=429 if "HTTP Error 429" in message else None)
            downloaded = sorted(Path(tmp).glob("full.*"))
            if not downloaded:
                raise NetError(f"yt-dlp wrote no file for {video_id}")
            cut = [ffmpeg, "-nostdin", "-loglevel", "error", "-y",
                   "-ss", f"{start_seconds:.3f}", "-i", str(downloaded[0]),
                   "-t", f"{end_seconds - start_seconds:.3f}", "-ac", "1",
                   "-ar", str(self.sample_rate), "-f", "wav", str(part_path)]
            proc = subprocess.run(cut, capture_output=True, text=True,
                                  timeout=self.download_timeout)
            if proc.returncode != 0:
                raise NetError(f"ffmpeg cut failed for {video_id}: {proc.stderr.strip()[-400:]}")


def _genius_error(err: Exception) -> NetError:
    """A :class:`NetError` with the HTTP status found in a lyricsgenius exception."""
    status = None
    response = getattr(err, "response", None)
    if response is not None and getattr(response, "status_code", None):
        status = int(response.status_code)
    elif err.args and isinstance(err.args[0], int):
        status = err.args[0]
    else:
        match = re.search(r"status code:?\s*(\d{3})", str(err))
        status = int(match.group(1)) if match else None
    if status is None:
        return NetError(f"Genius error: {err}")
    headers = getattr(response, "headers", None)
    return error_for_status(status, f"Genius: {str(err)[:300]}", _retry_after(headers))


def _retry_after(headers) -> float | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class FakeClient:
    """Canned answers at the network interface, for tests and CI.

    Parameters
    ----------
    titles : dict
        ``{video_id: title}``; ids not in it are "removed videos" (absent from the answer).
    songs : dict
        ``{"artist|title" (lower case): {"artist", "title", "lyrics"}}``; unknown -> None.
    audio : dict
        ``{video_id: "ok" | "partial" | "broken" | "missing"}``; "ok" writes a full
        segment (a tone), "partial" writes a third of it, "broken" writes bytes that are not
        audio, "missing" writes nothing; unknown ids raise a non-retryable 404.
    errors : dict
        ``{key: [status, ...]}`` -- the first calls for ``key`` (a video id, or
        ``"artist|title"``) raise these HTTP statuses before the canned answer is given;
        0 means a timeout, 403 an exhausted quota (:class:`QuotaExceeded`).
    sample_rate : int
        Hz of the wav written by :meth:`download_audio`.
    """

    titles: dict = field(default_factory=dict)
    songs: dict = field(default_factory=dict)
    audio: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    sample_rate: int = 16_000
    calls: list = field(default_factory=list)

    @classmethod
    def from_json(cls, path: str | Path, **kwargs) -> "FakeClient":
        """Load canned responses written by ``utils.dataset_related.audioset.write_fixture``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"canned responses file not found: {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
        errors = {k: list(v) for k, v in data.get("errors", {}).items()}
        return cls(titles=data.get("titles", {}), songs=data.get("songs", {}),
                   audio=data.get("audio", {}), errors=errors, **kwargs)

    def _maybe_fail(self, key: str) -> None:
        pending = self.errors.get(key)
        if pending:
            status = pending.pop(0)
            if status == 0:
                raise NetError(f"timeout for {key}", retryable=True)
            if status == 403:
                raise QuotaExceeded(f"HTTP 403 quota exceeded (canned) for {key}", status=403)
            raise error_for_status(status, f"canned error for {key}")

    def video_titles(self, video_ids: list[str]) -> dict[str, str]:
        self.calls.append(("video_titles", tuple(video_ids)))
        if len(video_ids) > YOUTUBE_MAX_IDS:
            raise ValueError(f"at most {YOUTUBE_MAX_IDS} ids per call, got {len(video_ids)}")
        for vid in video_ids:
            self._maybe_fail(vid)
        payload = {"items": [{"id": v, "snippet": {"title": self.titles[v]}}
                             for v in video_ids if v in self.titles]}
        return parse_videos_response(payload)

    def search_song(self, artist: str, title: str) -> dict | None:
        key = f"{artist}|{title}".lower()
        self.calls.append(("search_song", key))
        self._maybe_fail(key)
        song = self.songs.get(key)
        return None if song is None else dict(song)

    def download_audio(self, video_id: str, start_seconds: float, end_seconds: float,
                       part_path: Path) -> None:
        import numpy as np
        import soundfile as sf

        self.calls.append(("download_audio", video_id))
        self._maybe_fail(video_id)
        kind = self.audio.get(video_id)
        if kind is None:
            raise error_for_status(404, f"no canned audio for {video_id}")
        if kind == "missing":
            return
        part_path = Path(part_path)
        part_path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "broken":
            part_path.write_bytes(b"<html>not audio</html>")
            return
        seconds = float(end_seconds) - float(start_seconds)
        if kind == "partial":
            seconds /= 3.0
        n = int(round(seconds * self.sample_rate))
        t = np.arange(n) / self.sample_rate
        freq = 220.0 + (sum(map(ord, video_id)) % 12) * 40.0
        wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        sf.write(str(part_path), wave, self.sample_rate, format="WAV", subtype="PCM_16")
