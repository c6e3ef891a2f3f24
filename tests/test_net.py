"""The network helpers (utils.dataset_related.net, net_clients): redaction, retries, rate limits, progress files,
checked downloads and the fake client. No test touches the real network."""
from __future__ import annotations

import contextlib
import http.server
import json
import logging
import threading
import traceback

import numpy as np
import pytest
import soundfile as sf

from utils.dataset_related import net, net_clients
from utils.dataset_related.net import (NetError, ProgressLog, RateLimiter, RetryPolicy, Skip, checked_download,
                                       error_for_status, redact, run_resumable)
from utils.dataset_related.net_clients import FakeClient, parse_videos_response
from utils.io import part_path


# ------------------------------------------------------------------ redaction
def test_redact_removes_env_keys_and_key_like_parameters(monkeypatch):
    monkeypatch.setenv("YOUTUBE_API_KEY", "AIzaFAKE-KEY-0123")
    monkeypatch.setenv("GENIUS_ACCESS_TOKEN", "genius_tok_987")
    text = ("GET https://www.googleapis.com/youtube/v3/videos?part=snippet&key=AIzaFAKE-KEY-0123&id=x "
            "failed; header Authorization: Bearer genius_tok_987; also access_token=other_secret&q=1; "
            "raw AIzaFAKE-KEY-0123 in text")
    out = redact(text)
    for secret in ("AIzaFAKE-KEY-0123", "genius_tok_987", "other_secret"):
        assert secret not in out
    assert "key=***" in out and "Bearer ***" in out and "access_token=***&q=1" in out
    assert "part=snippet" in out and "id=x" in out          # the rest survives


def test_key_ending_in_a_newline_is_stripped_and_redacted(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("GENIUS_ACCESS_TOKEN", "geniusTOKEN123\n")      # as `export X="$(cat file)"` may leave it
    assert net.secret_from_env("GENIUS_ACCESS_TOKEN") == "geniusTOKEN123"
    assert redact("the token geniusTOKEN123 was refused") == "the token *** was refused"
    assert "geniusTOKEN123" not in str(NetError("Genius said: bad token geniusTOKEN123"))

    def step(item_id, value):
        raise ValueError(f"Genius refused token geniusTOKEN123 for {value}")

    progress = tmp_path / "p.jsonl"
    with caplog.at_level(logging.WARNING):
        assert run_resumable([("1", "x")], step, ProgressLog(progress), show_progress=False)["failed"] == 1
    assert "geniusTOKEN123" not in progress.read_text() and "geniusTOKEN123" not in caplog.text
    assert "***" in progress.read_text()


def test_net_error_message_is_redacted(monkeypatch):
    monkeypatch.setenv("GENIUS_ACCESS_TOKEN", "tok_SECRET_555")
    err = NetError("HTTP 500 at https://api.genius.com/search?access_token=tok_SECRET_555")
    assert "tok_SECRET_555" not in str(err)


def test_secret_from_env_names_the_variable(monkeypatch):
    monkeypatch.delenv("YOUTUBE_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="YOUTUBE_API_KEY"):
        net.secret_from_env("YOUTUBE_API_KEY")


def test_web_client_without_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("YOUTUBE_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="YOUTUBE_API_KEY"):
        net_clients.WebClient().video_titles(["dQw4w9WgXcQ"])


# ------------------------------------------------------------------ keys never leave through requests / urllib3
KEY, TOKEN = "AIzaLOCAL-test-key-0042", "GeniusLOCALtoken77"


@contextlib.contextmanager
def _serve(handler, monkeypatch):
    """Serve ``handler`` (its request log silenced) on 127.0.0.1, with no proxy in the way; yields the port."""
    handler.log_message = lambda self, *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def _local_youtube(monkeypatch, redirect_scheme: str | None = None):
    """A stand-in for the YouTube videos endpoint on 127.0.0.1 (no network needed).

    It answers one title per requested id, or -- with ``redirect_scheme`` -- redirects to
    ``<scheme>://example.invalid<path and query>``, so the redirect carries the key. Yields
    the list of query strings it received."""
    received: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            received.append(self.path.partition("?")[2])
            if redirect_scheme:
                self.send_response(302)
                self.send_header("Location", f"{redirect_scheme}://example.invalid{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"items": [{"id": "abcdefghijk", "snippet": {"title": "A - B"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serve(Handler, monkeypatch) as port:
        monkeypatch.setenv("YOUTUBE_API_KEY", KEY + "\n")
        monkeypatch.setattr(net_clients, "YOUTUBE_VIDEOS_URL", f"http://127.0.0.1:{port}/videos")
        yield received


def _assert_no_key_in_exception(err: BaseException, key: str) -> None:
    """Neither the message, args, chained exceptions nor the locals of the library's frames hold ``key``."""
    trace = traceback.TracebackException.from_exception(err, capture_locals=True)
    library_locals = [frame.locals for frame in trace.stack if frame.filename != __file__]
    assert library_locals                                # the frames that raised were captured
    assert key not in repr(library_locals) and key not in "".join(trace.format_exception_only())
    assert key not in repr(err) and key not in repr(err.args)
    assert err.__cause__ is None and err.__context__ is None


def test_redirect_to_an_unsupported_scheme_raises_a_redacted_net_error(monkeypatch):
    with (_local_youtube(monkeypatch, redirect_scheme="weird") as received,
          pytest.raises(NetError, match="InvalidSchema") as info):
        net_clients.WebClient(timeout=5).video_titles(["abcdefghijk"])
    assert f"key={KEY}&" in received[0]                  # the key (stripped) did go to the server ...
    assert "key=***" in str(info.value) and not info.value.retryable
    _assert_no_key_in_exception(info.value, KEY)        # ... and comes back nowhere


def test_genius_request_failure_raises_a_redacted_net_error(monkeypatch):
    import requests

    monkeypatch.setenv("GENIUS_ACCESS_TOKEN", TOKEN + "\n")

    class Genius:
        def search_song(self, title, artist):
            raise requests.exceptions.InvalidSchema(f"No connection adapters were found for 'weird://x/{TOKEN}/s'")

    client = net_clients.WebClient()
    client._genius = Genius()
    with pytest.raises(NetError, match="InvalidSchema") as info:
        client.search_song("X", "Y")
    _assert_no_key_in_exception(info.value, TOKEN)


def test_urllib3_debug_log_holds_no_key(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    with _local_youtube(monkeypatch):
        assert net_clients.WebClient(timeout=5).video_titles(["abcdefghijk"]) == {"abcdefghijk": "A - B"}
    logging.getLogger("urllib3.util.retry").debug("retry %s", f"/videos?key={KEY}", exc_info=OSError(KEY))
    records = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert any("key=***" in r.getMessage() for r in records if r.name == "urllib3.connectionpool")
    assert KEY not in caplog.text and all(KEY not in f"{r.msg} {r.args} {r.exc_text}" for r in records)


# ------------------------------------------------------------------ retries and rate limits
def test_error_for_status_retryable_only_for_429_and_5xx():
    assert error_for_status(429, "x").retryable
    assert error_for_status(503, "x").retryable
    assert not error_for_status(404, "x").retryable
    assert not error_for_status(400, "x").retryable


def test_retry_policy_backoff_and_success_after_failures():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise error_for_status(429, "slow down")
        return "done"

    policy = RetryPolicy(attempts=4, base_delay=1.5, max_delay=60, sleep=sleeps.append)
    assert policy.call(flaky) == "done"
    assert len(calls) == 3
    assert sleeps == [1.5, 3.0]                       # 1.5 * 2**0, 1.5 * 2**1


def test_retry_policy_honours_retry_after_and_max_delay():
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    assert policy.delay(1, retry_after=7) == 7.0
    assert policy.delay(1, retry_after=100) == 10.0
    assert policy.delay(5) == 10.0                    # 16 capped at 10


def test_retry_policy_gives_up_and_does_not_retry_client_errors():
    sleeps = []
    policy = RetryPolicy(attempts=3, base_delay=1.0, sleep=sleeps.append)
    calls = []

    def always_503():
        calls.append(1)
        raise error_for_status(503, "down")

    with pytest.raises(NetError, match="503"):
        policy.call(always_503)
    assert len(calls) == 3 and sleeps == [1.0, 2.0]

    calls.clear()

    def not_found():
        calls.append(1)
        raise error_for_status(404, "gone")

    with pytest.raises(NetError, match="404"):
        policy.call(not_found)
    assert len(calls) == 1


def test_rate_limiter_waits_for_the_remaining_interval():
    now = [100.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2.0, clock=lambda: now[0], sleep=sleep)
    limiter.wait()                    # first call: no wait
    now[0] += 0.5
    limiter.wait()                    # 1.5 s left
    now[0] += 3.0
    limiter.wait()                    # interval already passed
    assert sleeps == [1.5]


# ------------------------------------------------------------------ progress files
def test_progress_log_last_record_wins_and_torn_lines_are_ignored(tmp_path):
    path = tmp_path / "progress.jsonl"
    log = ProgressLog(path)
    log.record("a", "failed", error="timeout")
    log.record("a", "ok", result={"x": 1})
    log.record("b", "skipped", error="no title")
    with path.open("a") as fh:
        fh.write('{"id": "c", "status": "ok", "res')   # a crash mid-line
    again = ProgressLog(path)
    assert again.status("a") == "ok" and again.result("a") == {"x": 1}
    assert again.is_finished("b") and not again.is_finished("c")
    assert again.bad_lines == 1
    assert again.counts() == {"ok": 1, "skipped": 1, "failed": 0}


def test_run_resumable_skips_finished_and_retries_failed(tmp_path):
    progress = ProgressLog(tmp_path / "p.jsonl")
    attempts: dict[str, int] = {}

    def step(item_id, value):
        attempts[item_id] = attempts.get(item_id, 0) + 1
        if value == "flaky" and attempts[item_id] == 1:
            raise error_for_status(503, "try later")
        if value == "reject":
            raise Skip("not wanted")
        return value.upper()

    items = [("1", "one"), ("2", "flaky"), ("3", "reject")]
    first = run_resumable(items, step, progress, show_progress=False)
    assert first == {"done_before": 0, "ok": 1, "skipped": 1, "failed": 1}
    second = run_resumable(items, step, ProgressLog(tmp_path / "p.jsonl"), show_progress=False)
    assert second == {"done_before": 2, "ok": 1, "skipped": 0, "failed": 0}
    assert attempts == {"1": 1, "2": 2, "3": 1}
    final = ProgressLog(tmp_path / "p.jsonl")
    assert final.result("2") == "FLAKY" and final.status("3") == "skipped"


def test_run_resumable_lets_programming_errors_through(tmp_path):
    def step(item_id, value):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_resumable([("1", 1)], step, ProgressLog(tmp_path / "p.jsonl"), show_progress=False)


# ------------------------------------------------------------------ checked downloads
def _check_min_frames(min_frames):
    def check(path):
        info = sf.info(str(path))
        if info.frames < min_frames:
            raise ValueError("partial")
    return check


def _write_frames(frames):
    def download(part):
        sf.write(str(part), np.zeros(frames, dtype=np.float32), 1000, format="WAV")
    return download


def test_checked_download_renames_only_checked_files(tmp_path):
    final = tmp_path / "audio" / "x.wav"
    part = part_path(final)
    assert part.name == "x.wav.part"
    with pytest.raises(ValueError, match="partial"):
        checked_download(final, _write_frames(100), _check_min_frames(1000))
    assert not part.exists() and not final.exists()       # a partial file never counts as done

    checked_download(final, _write_frames(1000), _check_min_frames(1000))
    assert final.exists() and not part.exists()


def test_checked_download_without_a_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="no file"):
        checked_download(tmp_path / "x", lambda part: None, lambda p: None)


# ------------------------------------------------------------------ responses and the fake
def test_parse_videos_response_reads_titles_and_ignores_odd_items():
    payload = {"kind": "youtube#videoListResponse",
               "items": [{"id": "abcdefghijk", "snippet": {"title": "A - B"}},
                         {"id": "broken"}]}
    assert parse_videos_response(payload) == {"abcdefghijk": "A - B"}
    with pytest.raises(ValueError):
        parse_videos_response({"items": "nope"})


def test_fake_client_canned_answers_errors_and_audio_kinds(tmp_path):
    canned = {"titles": {"aaaaaaaaaaa": "X - Y"},
              "songs": {"x|y": {"artist": "X", "title": "Y", "lyrics": "la la"}},
              "audio": {"aaaaaaaaaaa": "ok", "bbbbbbbbbbb": "partial", "ccccccccccc": "broken",
                        "ddddddddddd": "missing"},
              "errors": {"x|y": [429, 0]}}
    path = tmp_path / "fake.json"
    path.write_text(json.dumps(canned))
    client = FakeClient.from_json(path, sample_rate=8000)
    assert client.video_titles(["aaaaaaaaaaa", "zzzzzzzzzzz"]) == {"aaaaaaaaaaa": "X - Y"}
    with pytest.raises(NetError) as first:
        client.search_song("X", "Y")
    assert first.value.status == 429 and first.value.retryable
    with pytest.raises(NetError) as second:
        client.search_song("X", "Y")
    assert second.value.retryable                       # 0 = timeout
    assert client.search_song("X", "Y")["lyrics"] == "la la"
    assert client.search_song("Nobody", "Nothing") is None

    client.download_audio("aaaaaaaaaaa", 10.0, 20.0, tmp_path / "a.part")
    assert sf.info(str(tmp_path / "a.part")).frames == 80_000
    client.download_audio("bbbbbbbbbbb", 10.0, 20.0, tmp_path / "b.part")
    assert sf.info(str(tmp_path / "b.part")).frames == pytest.approx(80_000 / 3, abs=1)
    client.download_audio("ccccccccccc", 0.0, 10.0, tmp_path / "c.part")
    with pytest.raises(Exception):
        sf.info(str(tmp_path / "c.part"))
    client.download_audio("ddddddddddd", 0.0, 10.0, tmp_path / "d.part")
    assert not (tmp_path / "d.part").exists()
    with pytest.raises(NetError) as unknown:
        client.download_audio("eeeeeeeeeee", 0.0, 10.0, tmp_path / "e.part")
    assert unknown.value.status == 404 and not unknown.value.retryable


def test_fake_client_refuses_more_than_50_ids():
    with pytest.raises(ValueError, match="50"):
        FakeClient().video_titles([f"{i:011d}" for i in range(51)])


def test_genius_errors_map_to_http_statuses():
    import requests

    err = net_clients._genius_error(requests.HTTPError(429, "Too many requests"))
    assert err.status == 429 and err.retryable
    err = net_clients._genius_error(AssertionError("Unexpected response status code: 503. Expected 200"))
    assert err.status == 503 and err.retryable
    err = net_clients._genius_error(AssertionError("Unexpected response status code: 401. Expected 200"))
    assert err.status == 401 and not err.retryable
    assert net_clients._genius_error(ValueError("odd")).status is None


# ------------------------------------------------------------------ LyricFind pages and the authors' mp3 cut
def test_fake_client_lyricfind_pages_and_mp3_segments(tmp_path):
    client = FakeClient(pages={"a-b": "<html>page</html>"}, audio={"aaaaaaaaaaa": "ok"},
                        errors={"lyricfind|a-b": [429]}, sample_rate=8000)
    with pytest.raises(NetError) as limited:
        client.lyricfind_page("a-b")
    assert limited.value.status == 429 and limited.value.retryable
    assert client.lyricfind_page("a-b") == "<html>page</html>"
    assert client.lyricfind_page("x-y") is None                       # no page: a 404
    client.download_audio("aaaaaaaaaaa", 30.0, 41.0, tmp_path / "a.part", audio_format="mp3")
    info = sf.info(str(tmp_path / "a.part"))
    assert info.format == "MP3" and info.frames / info.samplerate == pytest.approx(11.0, abs=0.05)
    with pytest.raises(ValueError, match="audio_format"):
        client.download_audio("aaaaaaaaaaa", 0.0, 1.0, tmp_path / "b.part", audio_format="flac")


@contextlib.contextmanager
def _local_lyricfind(monkeypatch, statuses: dict[str, int]):
    """A stand-in for lyrics.lyricfind.com on 127.0.0.1: ``statuses`` {path: HTTP status}; 200 pages
    echo their path. Yields the list of paths it received."""
    received: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            received.append(self.path)
            status = statuses.get(self.path, 404)
            body = f"<html>{self.path}</html>".encode()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "7")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serve(Handler, monkeypatch) as port:
        monkeypatch.setattr(net_clients, "LYRICFIND_URL", f"http://127.0.0.1:{port}/lyrics/")
        yield received


def test_web_client_lyricfind_statuses(monkeypatch):
    pytest.importorskip("requests")
    statuses = {"/lyrics/a-b": 200, "/lyrics/a-limited": 429, "/lyrics/a-down": 503, "/lyrics/a-gone": 410}
    with _local_lyricfind(monkeypatch, statuses) as received:
        client = net_clients.WebClient(timeout=5)
        assert client.lyricfind_page("a-b") == "<html>/lyrics/a-b</html>"
        assert client.lyricfind_page("a-missing") is None
        with pytest.raises(NetError) as limited:
            client.lyricfind_page("a-limited")
        assert limited.value.status == 429 and limited.value.retryable and limited.value.retry_after == 7
        with pytest.raises(NetError) as down:
            client.lyricfind_page("a-down")
        assert down.value.status == 503 and down.value.retryable
        with pytest.raises(NetError) as gone:
            client.lyricfind_page("a-gone")
        assert gone.value.status == 410 and not gone.value.retryable
        client.lyricfind_page("ac/dc-t.n.t.?")
    assert received[-1] == "/lyrics/ac%2Fdc-t.n.t.%3F"                # one page name, percent-encoded


def test_web_client_mp3_commands_are_the_authors(monkeypatch, tmp_path):
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        if "-x" in cmd:                                             # yt-dlp: the full audio
            out = cmd[cmd.index("-o") + 1].replace("%(ext)s", "mp3")
            open(out, "wb").close()
        return subprocess.CompletedProcess(cmd, 0, "", "")

    import subprocess

    monkeypatch.setattr(net_clients.subprocess, "run", fake_run)
    monkeypatch.setattr(net_clients.shutil, "which", lambda name: f"/usr/bin/{name}")
    net_clients.WebClient().download_audio("aaaaaaaaaaa", 30.0, 41.0, tmp_path / "s.mp3.part", audio_format="mp3")
    ytdlp, cut = commands
    assert ytdlp[ytdlp.index("-x"):ytdlp.index("-x") + 5] == ["-x", "--audio-format", "mp3", "--audio-quality", "0"]
    i = cut.index("-ss")
    assert cut[i:i + 6] == ["-ss", "30", "-to", "41", "-acodec", "copy"] and cut[-1] == str(tmp_path / "s.mp3.part")


def test_skip_details_are_kept_as_the_records_result(tmp_path):
    def step(item_id, item):
        raise Skip("LyricFind no page, Genius no result", details={"outcomes": {"lyricfind": "no page"}})

    progress = ProgressLog(tmp_path / "p.jsonl")
    assert run_resumable([("a", None)], step, progress, show_progress=False)["skipped"] == 1
    again = ProgressLog(tmp_path / "p.jsonl")
    assert again.result("a") == {"outcomes": {"lyricfind": "no page"}}
    assert again.records["a"]["error"] == "LyricFind no page, Genius no result"
