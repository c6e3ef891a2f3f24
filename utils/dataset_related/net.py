"""Calling the network safely: redaction, retries, rate limits, resumable progress, checked downloads.

The clients themselves (the one network interface, :class:`~utils.dataset_related.net_clients.WebClient`
for the real services and :class:`~utils.dataset_related.net_clients.FakeClient` for tests and CI)
live in :mod:`utils.dataset_related.net_clients`. Around them, plain helpers:

* :func:`redact` -- removes API keys / tokens (stripped, and URL-encoded) from any text before
  it is logged, raised or stored; :func:`protect_http_logs` -- the same for the records of
  urllib3 / requests / lyricsgenius (urllib3 logs request URLs, keys included, at DEBUG);
* :class:`RateLimiter` -- a minimum interval between calls to one service;
* :class:`RetryPolicy` -- retries with exponential backoff on retryable :class:`NetError`
  (HTTP 429, 5xx, timeouts, connection errors), honouring ``Retry-After``;
* :class:`ProgressLog` -- a JSON-lines file ``{"id", "status", "result", "error"}`` kept with
  :func:`utils.io.append_jsonl` / :func:`utils.io.read_jsonl` (last line per id wins):
  re-running skips finished items (``ok`` / ``skipped``) and retries ``failed`` ones;
* :func:`run_resumable` -- the loop that ties them together, with a tqdm progress bar and
  counts per status;
* :func:`checked_download` -- a download written to ``<final>.part``, checked, then renamed
  (:func:`utils.io.atomic_path`): a partial download never counts as done.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from utils.io import append_jsonl, atomic_path, read_jsonl

log = logging.getLogger(__name__)

SECRET_ENV_VARS: tuple[str, ...] = ("YOUTUBE_API_KEY", "GENIUS_ACCESS_TOKEN")

# ------------------------------------------------------------------ secrets
_SECRET_PATTERNS = (
    # key=..., access_token=..., token=... in URLs / query strings / messages
    (re.compile(r"(?i)\b((?:api[_-]?)?key|access_token|token|client_secret)=[^&\s'\"]+"), r"\1=***"),
    # Authorization: Bearer xxx
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
)


_KNOWN_SECRETS: set[str] = set()
"""Every key :func:`secret_from_env` has handed out (stripped): redacted even if the
environment changes later."""

HTTP_LOGGERS: tuple[str, ...] = ("urllib3", "requests", "lyricsgenius")
"""Third-party loggers (and their children) whose records :func:`protect_http_logs` redacts:
urllib3 logs every request line, query string (``key=...``) included, at DEBUG."""


def _secret_forms(value: str) -> set[str]:
    """``value`` stripped, plus its percent-encoded forms as they appear in URLs."""
    value = value.strip()
    if len(value) < 4:
        return set()
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}


def redact(text: Any, secrets: Iterable[str] = ()) -> str:
    """``str(text)`` with API keys and tokens replaced by ``***``.

    Removes the current values of :data:`SECRET_ENV_VARS`, every key returned by
    :func:`secret_from_env` and ``secrets`` -- each stripped of surrounding whitespace (an
    exported ``"abc123\\n"`` is used, and redacted, as ``abc123``) and in its URL-encoded
    forms -- wherever they appear, and anything that looks like ``key=...``, ``token=...``,
    ``access_token=...`` or ``Bearer ...``.
    """
    out = str(text)
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS] + sorted(_KNOWN_SECRETS) + list(secrets)
    forms = set().union(*(_secret_forms(str(v)) for v in values)) if values else set()
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def secret_from_env(name: str) -> str:
    """The value of environment variable ``name``, stripped of surrounding whitespace.

    The value is remembered, so :func:`redact` removes it from any later text. A clear error
    (naming the variable) if it is unset or blank.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(
            f"environment variable {name} is not set; export it before running the network "
            "steps (keys are read only from the environment, never from files or notebooks)")
    _KNOWN_SECRETS.add(value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record, with secrets redacted (:func:`redact`)
    from its message, arguments, exception text and stack text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: keep what it holds, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), ()
        if record.exc_info:
            record.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def protect_http_logs(prefixes: Iterable[str] = HTTP_LOGGERS) -> None:
    """Install one :class:`RedactingFilter` on every existing logger under ``prefixes``.

    A logger's filters apply only to records created on that very logger, so each module
    logger (``urllib3.connectionpool``, ...) gets its own; call this after importing the
    library (idempotent). :class:`~utils.dataset_related.net_clients.WebClient` does.
    """
    prefixes = tuple(prefixes)
    names = set(prefixes) | {name for name in logging.Logger.manager.loggerDict
                             if name.startswith(tuple(p + "." for p in prefixes))}
    for name in sorted(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


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


def _check_progress_record(record: dict) -> None:
    if "id" not in record or record.get("status") not in STATUSES:
        raise ValueError(f"needs an id and a status in {STATUSES}")


class ProgressLog:
    """Resumable progress: a JSON-lines file of ``{"id", "status", "result", "error"}``.

    ``status`` is ``ok`` (done, ``result`` holds the value), ``skipped`` (done, permanently
    rejected -- ``error`` says why, e.g. no lyrics found) or ``failed`` (transient error;
    retried on the next run). The last line for an id wins. The file is read with
    :func:`utils.io.read_jsonl`: a torn last line (a crash while writing) is dropped and cut
    off the file (counted in :attr:`bad_lines`); a bad line before the last one is refused.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        size_before = self.path.stat().st_size if self.path.exists() else 0
        lines = read_jsonl(self.path, repair=True, validate=_check_progress_record, what="progress record")
        size_after = self.path.stat().st_size if self.path.exists() else 0
        self.bad_lines = int(size_after < size_before)
        self.records: dict[str, dict] = {str(rec["id"]): rec for rec in lines}

    def status(self, item_id: str) -> str | None:
        rec = self.records.get(str(item_id))
        return None if rec is None else rec["status"]

    def result(self, item_id: str) -> Any:
        rec = self.records.get(str(item_id))
        return None if rec is None else rec.get("result")

    def is_finished(self, item_id: str) -> bool:
        return self.status(item_id) in FINISHED

    def record(self, item_id: str, status: str, result: Any = None, error: str | None = None) -> None:
        """Append one record (:func:`utils.io.append_jsonl`: one write, fsynced)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        rec = {"id": str(item_id), "status": status, "result": result,
               "error": None if error is None else redact(error)}
        append_jsonl(self.path, rec)
        self.records[str(item_id)] = rec

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for rec in self.records.values():
            out[rec["status"]] += 1
        return out


class Skip(Exception):
    """Raised by a step function: the item is permanently rejected (recorded as skipped, with
    ``details`` -- JSON-serialisable, optional -- as the record's result)."""

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.details = details


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
            progress.record(item_id, "skipped", result=why.details, error=str(why))
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



# ------------------------------------------------------------------ checked downloads
def checked_download(final_path: str | Path, download: Callable[[Path], None],
                     check: Callable[[Path], None]) -> Path:
    """``download(part)`` then ``check(part)``, and only then ``part`` renamed to ``final_path``.

    ``part`` is ``<final_path>.part`` (:func:`utils.io.atomic_path`; a stale one from a killed
    run is removed first). ``check`` raises (``ValueError`` / ``OSError``) when the file is
    broken or incomplete; then, as when ``download`` raises or writes nothing (``OSError``),
    the part file is deleted, the error propagates and ``final_path`` is untouched.
    """
    with atomic_path(final_path) as part:
        part.unlink(missing_ok=True)
        download(part)
        if not part.exists():
            raise OSError(f"download produced no file at {part}")
        check(part)
    return Path(final_path)
