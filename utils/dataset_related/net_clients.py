"""The network, behind one small interface: a *client* with four methods.

:class:`WebClient` talks to the real services, :class:`FakeClient` answers from canned
responses for tests and CI (written by :func:`utils.dataset_related.fixtures.write_audioset_fixture`):

``video_titles(video_ids) -> {video_id: title}``
    YouTube Data API v3 ``videos`` endpoint (at most 50 ids a call; key from the
    ``YOUTUBE_API_KEY`` environment variable).
``search_song(artist, title) -> {"artist", "title", "lyrics"} | None``
    Genius through the ``lyricsgenius`` client (token from ``GENIUS_ACCESS_TOKEN``).
``lyricfind_page(slug) -> str | None``
    The HTML of ``https://lyrics.lyricfind.com/lyrics/<slug>`` (``None``: no such page, 404).
``download_audio(video_id, start_seconds, end_seconds, part_path, audio_format="wav") -> None``
    yt-dlp + ffmpeg: the segment written to ``part_path`` only -- ``"wav"``: mono at the
    client's sample rate; ``"mp3"``: as the authors cut it (``yt-dlp -x --audio-format mp3
    --audio-quality 0``, then ``ffmpeg -ss START -to END -acodec copy``). The caller checks the
    file and renames it (:func:`utils.dataset_related.net.checked_download`).

Errors become :class:`utils.dataset_related.net.NetError` with the HTTP status, so
:class:`utils.dataset_related.net.RetryPolicy` can retry them.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from utils.dataset_related.net import NetError, QuotaExceeded, error_for_status, protect_http_logs, redact, secret_from_env

log = logging.getLogger(__name__)

YOUTUBE_VIDEOS_URL = "https://www.googleapis.com/youtube/v3/videos"
YOUTUBE_MAX_IDS = 50
LYRICFIND_URL = "https://lyrics.lyricfind.com/lyrics/"
AUDIO_FORMATS = ("wav", "mp3")


class Client(Protocol):
    """The one network interface of the pipelines (see the module docstring)."""

    def video_titles(self, video_ids: list[str]) -> dict[str, str]: ...

    def search_song(self, artist: str, title: str) -> dict | None: ...

    def lyricfind_page(self, slug: str) -> str | None: ...

    def download_audio(self, video_id: str, start_seconds: float, end_seconds: float,
                       part_path: Path, audio_format: str = "wav") -> None: ...


def _check_audio_format(audio_format: str) -> None:
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")


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
    Keys never leave in clear: errors are redacted and chain no ``requests`` exception, and
    the urllib3 / requests / lyricsgenius loggers are filtered (:func:`protect_http_logs`).

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
        import requests  # noqa: F401 -- imports urllib3, whose loggers protect_http_logs filters

        protect_http_logs()

    # -- YouTube
    def _youtube_get(self, video_ids: list[str]) -> tuple[Any, NetError | None]:
        """``(response, None)`` or ``(None, NetError)``: the one place the key is in a local
        variable, so a failure raised by the caller carries neither the key in a frame nor
        the ``requests`` exception (whose message holds the URL, key included) as context."""
        import requests

        key = secret_from_env("YOUTUBE_API_KEY")
        if self._session is None:
            self._session = requests.Session()
            protect_http_logs()     # loggers of urllib3 modules imported since __init__
        params = {"part": "snippet", "id": ",".join(video_ids), "key": key,
                  "maxResults": YOUTUBE_MAX_IDS}
        try:
            return self._session.get(YOUTUBE_VIDEOS_URL, params=params, timeout=self.timeout), None
        except requests.RequestException as err:
            return None, request_failure("YouTube", err)

    def video_titles(self, video_ids: list[str]) -> dict[str, str]:
        """Titles of up to 50 videos by id (one ``videos.list`` call, 1 quota unit).

        Any ``requests`` failure (timeout, dropped connection, a redirect to an unsupported
        scheme, ...) becomes a redacted :class:`NetError` with no chained exception."""
        if len(video_ids) > YOUTUBE_MAX_IDS:
            raise ValueError(f"at most {YOUTUBE_MAX_IDS} ids per call, got {len(video_ids)}")
        resp, failure = self._youtube_get(video_ids)
        if failure is not None:
            raise failure
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
            protect_http_logs()
            self._genius = lyricsgenius.Genius(
                secret_from_env("GENIUS_ACCESS_TOKEN"), timeout=int(self.timeout), retries=0,
                verbose=False, skip_non_songs=True, remove_section_headers=False)
        return self._genius

    def _genius_search(self, artist: str, title: str) -> tuple[Any, NetError | None]:
        """``(song or None, None)`` or ``(None, NetError)`` (see :meth:`_youtube_get`)."""
        import requests

        genius = self._genius_client()
        try:
            return genius.search_song(title, artist), None
        except (requests.RequestException, AssertionError) as err:
            # lyricsgenius raises HTTPError(status, text) or AssertionError("Unexpected
            # response status code: 429 ...") for non-200 answers
            return None, request_failure("Genius", err)

    def search_song(self, artist: str, title: str) -> dict | None:
        """Genius' best match for (artist, title): ``{"artist", "title", "lyrics"}`` or None.

        A match whose lyrics page gave no text raises a non-retryable :class:`NetError`
        (recorded as failed, so a later run tries again: Genius answers rate-limited page
        requests with pages that hold no lyrics). Request failures are redacted
        :class:`NetError` with no chained exception."""
        song, failure = self._genius_search(artist, title)
        if failure is not None:
            raise failure
        if song is None:
            return None
        lyrics = str(song.lyrics or "")
        if not lyrics.strip():
            raise NetError(f"Genius page for {artist!r} - {title!r} gave no lyrics")
        return {"artist": str(song.artist), "title": str(song.title), "lyrics": lyrics}

    # -- LyricFind
    def _lyricfind_get(self, url: str) -> tuple[Any, NetError | None]:
        """``(response, None)`` or ``(None, NetError)`` (no key involved; same shape as YouTube)."""
        import requests

        if self._session is None:
            self._session = requests.Session()
            protect_http_logs()
        try:
            return self._session.get(url, timeout=self.timeout), None
        except requests.RequestException as err:
            return None, request_failure("LyricFind", err)

    def lyricfind_page(self, slug: str) -> str | None:
        """The LyricFind page ``LYRICFIND_URL + slug`` (the slug percent-encoded, so a ``/`` or
        ``?`` in a title stays in the page name): its HTML, or ``None`` for a 404. 429 and 5xx
        are retryable :class:`NetError`; other statuses are not."""
        import urllib.parse

        resp, failure = self._lyricfind_get(LYRICFIND_URL + urllib.parse.quote(slug, safe=""))
        if failure is not None:
            raise failure
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise error_for_status(resp.status_code, f"LyricFind {slug!r}: {resp.text[:200]}",
                                   _retry_after(resp.headers))
        return resp.text

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
                       part_path: Path, audio_format: str = "wav") -> None:
        """Download a video's audio and cut ``[start, end)`` seconds into ``part_path``:
        ``"wav"`` -- mono wav at :attr:`sample_rate`; ``"mp3"`` -- the authors' commands (mp3 at
        yt-dlp's best quality, cut with ``-ss START -to END -acodec copy``, no re-encoding).
        The caller checks and renames the file."""
        _check_audio_format(audio_format)
        ytdlp, ffmpeg = self._ytdlp_command(), self._ffmpeg()
        part_path = Path(part_path)
        part_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="ytdlp_") as tmp:
            template = str(Path(tmp) / "full.%(ext)s")
            fetch = (["-x", "--audio-format", "mp3", "--audio-quality", "0"] if audio_format == "mp3"
                     else ["-f", "bestaudio/best"])
            cmd = ytdlp + ["--quiet", "--no-playlist", "--no-progress"] + fetch + [
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
            if audio_format == "mp3":
                cut = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(downloaded[0]),
                       "-ss", f"{start_seconds:g}", "-to", f"{end_seconds:g}", "-acodec", "copy",
                       "-f", "mp3", str(part_path)]
            else:
                cut = [ffmpeg, "-nostdin", "-loglevel", "error", "-y",
                       "-ss", f"{start_seconds:.3f}", "-i", str(downloaded[0]),
                       "-t", f"{end_seconds - start_seconds:.3f}", "-ac", "1",
                       "-ar", str(self.sample_rate), "-f", "wav", str(part_path)]
            proc = subprocess.run(cut, capture_output=True, text=True,
                                  timeout=self.download_timeout)
            if proc.returncode != 0:
                raise NetError(f"ffmpeg cut failed for {video_id}: {proc.stderr.strip()[-400:]}")


def request_failure(service: str, err: Exception) -> NetError:
    """The :class:`NetError` for a failed ``requests`` call to ``service`` (message redacted).

    Timeouts, dropped connections and broken chunked answers are retryable; an HTTP error
    carries its status (:func:`_genius_error`); anything else (an invalid URL, a redirect to
    an unsupported scheme, too many redirects, ...) is not retryable.
    """
    import requests

    if isinstance(err, requests.Timeout):
        return NetError(f"{service} timeout: {err}", retryable=True)
    if isinstance(err, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return NetError(f"{service} connection error: {err}", retryable=True)
    if isinstance(err, (requests.HTTPError, AssertionError)):
        return _genius_error(err) if service == "Genius" else NetError(f"{service}: {err}")
    return NetError(f"{service} request failed ({type(err).__name__}): {err}")


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
    pages : dict
        ``{LyricFind slug: HTML}``; unknown -> None (a 404).
    audio : dict
        ``{video_id: "ok" | "partial" | "broken" | "missing"}``; "ok" writes a full
        segment (a tone), "partial" writes a third of it, "broken" writes bytes that are not
        audio, "missing" writes nothing; unknown ids raise a non-retryable 404.
    errors : dict
        ``{key: [status, ...]}`` -- the first calls for ``key`` (a video id,
        ``"artist|title"``, or ``"lyricfind|<slug>"``) raise these HTTP statuses before the canned answer is given;
        0 means a timeout, 403 an exhausted quota (:class:`QuotaExceeded`).
    sample_rate : int
        Hz of the wav written by :meth:`download_audio`.
    """

    titles: dict = field(default_factory=dict)
    songs: dict = field(default_factory=dict)
    pages: dict = field(default_factory=dict)
    audio: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    sample_rate: int = 16_000
    calls: list = field(default_factory=list)

    @classmethod
    def from_json(cls, path: str | Path, **kwargs) -> "FakeClient":
        """Load canned responses (``fake_responses.json`` of the AudioSet fixture)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"canned responses file not found: {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
        errors = {k: list(v) for k, v in data.get("errors", {}).items()}
        return cls(titles=data.get("titles", {}), songs=data.get("songs", {}), pages=data.get("pages", {}),
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

    def lyricfind_page(self, slug: str) -> str | None:
        self.calls.append(("lyricfind_page", slug))
        self._maybe_fail(f"lyricfind|{slug}")
        return self.pages.get(slug)

    def download_audio(self, video_id: str, start_seconds: float, end_seconds: float,
                       part_path: Path, audio_format: str = "wav") -> None:
        import numpy as np
        import soundfile as sf

        _check_audio_format(audio_format)
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
        if audio_format == "mp3":
            sf.write(str(part_path), wave, self.sample_rate, format="MP3")
        else:
            sf.write(str(part_path), wave, self.sample_rate, format="WAV", subtype="PCM_16")
