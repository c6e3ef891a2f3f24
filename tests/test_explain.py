"""The one-song command line (utils.explain) and its HTML report (utils.musiclime.report).

Models are untrained tiny models saved in a fixture (what they predict does not matter: the
tests check the plumbing -- loading, windows, resampling, the report's content against
explanation.json, and that bad input exits 2 and writes nothing).
"""
from __future__ import annotations

import base64
import html
import importlib.util
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from utils.config import GENRES, get_profile
from utils.explain import main
from utils.musiclime.explanation import Explanation
from utils.dataset_related.features import clip_window
from utils.musiclime.song import load_song_clip
from utils.model_related.models import build_model, save_model
from utils.model_related.pipeline import prepare_tokens

PROFILE = get_profile("tiny")
RATE = PROFILE.audio.sample_rate            # 16 kHz
CLIP = PROFILE.clip_length                 # 4 s = 64000 samples
LYRICS = "Tonight the <b>fire</b> & the rain\nwe dance tonight\nthe rain is cold"
AUDIO_URI = re.compile(r'src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"')
LYRIC_SPAN = re.compile(r'<span (?:class="uncertain" )?style="[^"]*" title="([^"]+)">([^<]*)</span>')
PROBABILITY = re.compile(r'class="number probability">([0-9.]+)<')


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(small_corpus, tmp_path_factory):
    """Untrained tiny genre models saved as the main job saves them; and the corpus tokenizer."""
    tokens = prepare_tokens(PROFILE, small_corpus)
    root = tmp_path_factory.mktemp("models")
    dirs = {}
    for kind in ("multimodal", "audio", "lyrics"):
        torch.manual_seed(0)
        model = build_model(kind, PROFILE, len(GENRES), vocab_size=len(tokens.tokenizer))
        dirs[kind] = save_model(model, root / "genre" / kind / "best", task="genre", class_names=list(GENRES),
                                profile="tiny").parent          # runs/<profile>/<task>/<kind> layout
    return dirs, small_corpus / "tokenizer"


def tone(seconds, rate=RATE, channels=1, amplitude=0.5, freq=440.0):
    """A tone with clicks every half second (so every stem has something), (samples,) or (samples, channels)."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = amplitude * (0.7 * np.sin(2 * np.pi * freq * t) + 0.3 * (np.mod(t, 0.5) < 0.01))
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def cli(argv, capsys):
    """Run the command in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def decode_wav(encoded):
    data = base64.b64decode(encoded)
    info = soundfile.info(io.BytesIO(data))
    wave, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return wave, rate, info.subtype


# ---------------------------------------------------------------- windows and loading
def test_clip_window_bounds():
    assert clip_window(10 * RATE, CLIP, RATE, None) == (48_000, 112_000)       # None: centred on the middle
    assert clip_window(10 * RATE, CLIP, RATE, 2.0) == (32_000, 96_000)
    assert clip_window(10 * RATE, CLIP, RATE, 0) == (0, CLIP)
    assert clip_window(10 * RATE, CLIP, RATE) == (0, CLIP)                    # default: the first clip
    assert clip_window(10 * RATE, CLIP, RATE, 6.0) == (96_000, 160_000)        # the last full clip
    for bad in (6.01, -0.5, float("nan")):
        with pytest.raises(ValueError, match="start"):
            clip_window(10 * RATE, CLIP, RATE, bad)
    assert clip_window(40_000, CLIP, RATE, None) == (0, 40_000)                # short: the caller pads
    assert clip_window(40_000, CLIP, RATE) == (0, 40_000)
    with pytest.raises(ValueError, match="start"):
        clip_window(40_000, CLIP, RATE, 1.0)


def test_long_clip_is_cut_at_start(tmp_path):
    ramp = np.linspace(-0.9, 0.9, 10 * RATE).astype(np.float32)
    path = tmp_path / "ramp.wav"
    soundfile.write(path, ramp, RATE, subtype="FLOAT")
    clip = load_song_clip(path, RATE, CLIP, start_seconds=2.0)
    assert clip.window == (32_000, 96_000) and clip.padded_length == 0 and clip.file_length == 10 * RATE
    np.testing.assert_array_equal(clip.waveform, ramp[32_000:96_000])
    middle = load_song_clip(path, RATE, CLIP, start_seconds=None)
    assert middle.window == (48_000, 112_000)
    np.testing.assert_array_equal(middle.waveform, ramp[48_000:112_000])


def test_short_clip_warns_and_pads(tmp_path):
    path = tmp_path / "short.wav"
    soundfile.write(path, tone(2.5, rate=8_000), 8_000, subtype="PCM_16")      # integer PCM at 8 kHz
    with pytest.warns(UserWarning, match="padded with 1.50 s"):
        clip = load_song_clip(path, RATE, CLIP)
    assert clip.window == (0, 40_000) and clip.padded_length == 24_000 and clip.waveform.shape == (CLIP,)
    assert np.all(clip.waveform[40_000:] == 0)
    assert 0.4 < np.max(np.abs(clip.waveform)) <= 0.55                         # scaled to [-1, 1], not int16


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3", "WAV"])
def test_stereo_44k_files_are_resampled_to_mono(tmp_path, fmt):
    path = tmp_path / f"song.{fmt.lower()}"
    stereo = tone(5.0, rate=44_100, channels=2, freq=500.0)
    stereo[:, 1] *= 0.5                                                        # channels differ: mono = mean
    soundfile.write(path, stereo.astype(np.float32), 44_100, format=fmt)
    clip = load_song_clip(path, RATE, CLIP)
    assert clip.waveform.shape == (CLIP,) and clip.waveform.dtype == np.float32
    assert (clip.input_sample_rate, clip.input_channels) == (44_100, 2)
    assert abs(clip.file_length - 5 * RATE) < 0.01 * RATE
    spectrum = np.abs(np.fft.rfft(clip.waveform))
    assert abs(np.argmax(spectrum) * RATE / CLIP - 500.0) < 2.0                # still a 500 Hz tone at 16 kHz
    assert 0.25 < np.max(np.abs(clip.waveform)) < 0.45                         # mean of 0.5 and 0.25 peaks


# ---------------------------------------------------------------- the report
def test_report_of_a_stereo_flac_with_lyrics(models, tmp_path, capsys):
    dirs, tokenizer = models
    audio = tmp_path / "a&b <song>.flac"
    soundfile.write(audio, tone(6.0, rate=44_100, channels=2).astype(np.float32), 44_100, format="FLAC")
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(LYRICS)
    out = tmp_path / "out"
    code, stdout, stderr = cli([audio, "--lyrics", lyrics, "--model", dirs["multimodal"], "--tokenizer", tokenizer,
                                "--samples", 24, "--batch-size", 12, "--start", 1.5, "--out", out], capsys)
    assert code == 0, stderr
    assert "querying model" in stderr and "report.html" in stdout              # tqdm bar, then the summary
    assert sorted(p.name for p in out.iterdir()) == ["explanation.json", "report.html"]
    page = (out / "report.html").read_text()
    record = json.loads((out / "explanation.json").read_text())
    run = record["run"]

    # settings: the model's rate and clip, the window cut at --start, the file's own format
    assert run["window_samples"] == [24_000, 88_000] and run["start_seconds"] == 1.5
    assert (run["input_sample_rate"], run["input_channels"]) == (44_100, 2)
    assert (run["sample_rate"], run["clip_seconds"], run["samples"], run["seed"]) == (RATE, 4.0, 24, 0)
    assert (run["task"], run["kind"], run["separator"], run["mode"]) == ("genre", "multimodal", "hpss", "both")
    assert record["settings"]["num_samples"] == 24
    explanation = Explanation.from_json(out / "explanation.json")             # still a valid explanation file
    label = explanation.labels[0]
    assert run["explained_class"] == GENRES[label] and run["score"] == explanation.fit(label).score

    # self-contained: every src/href is a data URI, nothing from the network
    assert "http://" not in page and "https://" not in page
    assert all(value.startswith("data:") for value in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert page.count("data:image/png;base64,") == 2                           # bar chart + heatmap
    clips = AUDIO_URI.findall(page)
    assert len(clips) == 3                                                     # original, top-k, complement
    decoded = [decode_wav(c) for c in clips]
    assert all(rate == RATE and subtype == "PCM_16" and wave.shape == (CLIP,) for wave, rate, subtype in decoded)
    import librosa
    expected = librosa.load(audio, sr=RATE, mono=True)[0][24_000:88_000]
    np.testing.assert_allclose(decoded[0][0], expected, atol=2e-4)            # the original, to 16-bit rounding
    np.testing.assert_allclose(decoded[1][0] + decoded[2][0], expected, atol=2e-3)   # top + complement = all

    # probabilities: shown sorted, summing to 1, the explained class marked
    shown = [float(p) for p in PROBABILITY.findall(page)]
    assert len(shown) == len(GENRES) and abs(sum(shown) - 1) < 1e-3
    np.testing.assert_allclose(shown, np.sort(record["probabilities"])[::-1], atol=5e-5)
    assert f"{html.escape(GENRES[label])} (explained)" in page
    assert f"R<sup>2</sup> = {explanation.fit(label).score:.3f}" in page

    # lyrics: escaped, every word span titled with its weight from explanation.json
    section = page[page.index('<section id="lyrics">'):page.index('<section id="settings">')]
    assert "&lt;" in section and "&amp;" in section and "<b>" not in section
    weights = {f.name: explanation.fit(label).weights[f.index] for f in explanation.lyric_features}
    spans = LYRIC_SPAN.findall(page)
    assert {html.unescape(word) for _, word in spans} == set(weights) and len(spans) > len(weights)
    fit = explanation.fit(label)
    for title, word in spans:                              # "+0.0123 [-0.001, +0.025] (interval contains 0)"
        weight, low = (float(v) for v in re.match(r"(\S+) \[(\S+), \S+\]", title).group(1, 2))
        assert weight == pytest.approx(weights[html.unescape(word)], rel=1e-3, abs=1e-12)
        column = next(f.index for f in explanation.lyric_features if f.name == html.unescape(word))
        assert low == pytest.approx(fit.ci_low[column], rel=5e-3, abs=1e-12)            # printed to 3 digits
        assert ("interval contains 0" in title) == bool(fit.uncertain()[column])
    assert "a&amp;b &lt;song&gt;.flac" in page and "<song>" not in page    # file names escaped


def test_lyrics_model_needs_no_audio_and_reruns_into_its_own_folder(models, tmp_path, capsys):
    dirs, tokenizer = models
    lyrics = tmp_path / "words.txt"
    lyrics.write_text(LYRICS)
    out = tmp_path / "explanations" / "words"
    argv = ["--lyrics", lyrics, "--model", dirs["lyrics"], "--tokenizer", tokenizer, "--samples", 16, "--out", out]
    for _ in range(2):                                                         # the second run replaces the first
        code, _, stderr = cli(argv, capsys)
        assert code == 0, stderr
    page = (out / "report.html").read_text()
    record = json.loads((out / "explanation.json").read_text())
    assert record["mode"] == "lyrical" and record["run"]["audio"] is None
    assert "data:audio/wav" not in page and page.count("data:image/png;base64,") == 1   # no heatmap, no players
    assert len(LYRIC_SPAN.findall(page)) > 0
    assert sorted(p.name for p in out.iterdir()) == ["explanation.json", "report.html"]


def test_auto_sample_size_and_locality_kernel_from_the_command_line(models, tmp_path, capsys):
    dirs, tokenizer = models
    lyrics = tmp_path / "words.txt"
    lyrics.write_text(LYRICS)
    out = tmp_path / "auto"
    code, _, stderr = cli(["--lyrics", lyrics, "--model", dirs["lyrics"], "--tokenizer", tokenizer, "--samples", "auto",
                           "--kernel", "locality", "--out", out], capsys)
    assert code == 0, stderr
    record = json.loads((out / "explanation.json").read_text())
    run, adaptive = record["run"], record["adaptive"]
    assert run["samples"] == "auto" and run["kernel"] == "locality"
    assert run["rows_used"] == adaptive["rows"] >= 3 and adaptive["rows"] % 2 == 1   # the original + antithetic pairs
    assert run["target_met"] == adaptive["target_met"] and isinstance(run["target_met"], bool)
    code, _, stderr = cli(["--lyrics", lyrics, "--model", dirs["lyrics"], "--samples", "many", "--out", out], capsys)
    assert code != 0 and "--samples" in stderr and "'many'" in stderr


@pytest.mark.parametrize("kind", ["audio", "multimodal"])
def test_audio_without_lyrics_on_a_short_clip_warns_and_pads(models, tmp_path, capsys, kind):
    dirs, tokenizer = models
    audio = tmp_path / "short.wav"
    soundfile.write(audio, tone(2.5, rate=8_000), 8_000, subtype="PCM_16")
    out = tmp_path / "out"
    code, _, stderr = cli([audio, "--model", dirs[kind], "--tokenizer", tokenizer, "--samples", 12, "--out", out],
                          capsys)
    assert code == 0, stderr
    assert "warning" in stderr and "padded with 1.50 s" in stderr
    record = json.loads((out / "explanation.json").read_text())
    run = record["run"]
    assert run["window_samples"] == [0, 40_000] and run["padded_seconds"] == 1.5 and run["mode"] == "audio"
    assert all(f["modality"] == "audio" for f in record["features"]) and len(record["features"]) == 40
    page = (out / "report.html").read_text()
    assert not LYRIC_SPAN.findall(page)
    assert ("empty lyrics" in page) == (kind == "multimodal")          # the fusion model got no words
    original = decode_wav(AUDIO_URI.findall(page)[0])[0]
    assert np.all(original[40_000:] == 0) and np.max(np.abs(original[:40_000])) > 0.4


# ---------------------------------------------------------------- bad input
def _bad_cases(tmp_path, dirs, tokenizer):
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(5.0), RATE)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(5 * RATE), RATE)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 100)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(LYRICS)
    no_json = tmp_path / "no_json"
    no_json.mkdir()
    odd_kind = tmp_path / "odd_kind"
    odd_kind.mkdir()
    (odd_kind / "model.json").write_text(json.dumps({"kind": "spectrogram", "task": "genre"}))
    mm = ["--model", dirs["multimodal"], "--tokenizer", tokenizer]
    return {
        "missing audio": ([tmp_path / "nope.wav", *mm], "nope.wav"),
        "unreadable audio": ([garbage, *mm], "garbage.wav"),
        "silent audio": ([silent, *mm], "silent.wav"),
        "missing lyrics": ([good, "--lyrics", tmp_path / "missing.txt", *mm], "--lyrics"),
        "empty lyrics": ([good, "--lyrics", empty, *mm], "empty.txt"),
        "no model.json": ([good, "--model", no_json], "model.json"),
        "no model folder": ([good, "--model", tmp_path / "runs" / "nothing"], "python -m utils.main"),
        "unknown kind": ([good, "--model", odd_kind], "spectrogram"),
        "other task": ([good, *mm, "--task", "emotion"], "--task"),
        "other kind": ([good, *mm, "--kind", "audio"], "--kind"),
        "one sample": ([good, *mm, "--samples", 1], "--samples"),
        "start past the end": ([good, *mm, "--start", 2.0], "--start"),
        "unknown label": ([good, *mm, "--label", "polka"], "--label"),
        "lyrics model without lyrics": ([good, "--model", dirs["lyrics"], "--tokenizer", tokenizer], "--lyrics"),
        "audio model without audio": (["--model", dirs["audio"]], "AUDIO"),
        "out is the input's folder": ([good, *mm, "--out", tmp_path], "--out"),
        "openunmix unavailable": ([good, *mm, "--separator", "openunmix"], "--separator"),
    }


@pytest.mark.parametrize("case", ["missing audio", "unreadable audio", "silent audio", "missing lyrics",
                                  "empty lyrics", "no model.json", "no model folder", "unknown kind", "other task",
                                  "other kind", "one sample", "start past the end", "unknown label",
                                  "lyrics model without lyrics", "audio model without audio",
                                  "out is the input's folder", "openunmix unavailable"])
def test_bad_input_exits_2_and_writes_nothing(models, tmp_path, capsys, case):
    if case == "openunmix unavailable" and importlib.util.find_spec("openunmix") is not None:
        pytest.skip("openunmix is installed here (its weights may download)")
    argv, named = _bad_cases(tmp_path, *models)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    if "--out" not in argv:
        argv = [*argv, "--out", out]
    code, stdout, stderr = cli(argv, capsys)
    assert code == 2, (case, stderr)
    assert named in stderr and "error:" in stderr and "wrote" not in stdout
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before                # nothing written anywhere


def test_out_folder_with_other_files_is_refused_and_left_alone(models, tmp_path, capsys):
    dirs, tokenizer = models
    audio = tmp_path / "song.wav"
    soundfile.write(audio, tone(5.0), RATE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "report.html").write_text("old report")
    code, _, stderr = cli([audio, "--model", dirs["multimodal"], "--tokenizer", tokenizer, "--out", out], capsys)
    assert code == 2 and "--out" in stderr and "notes.txt" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.html"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.html").read_text() == "old report"


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "utils.explain", "--help"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert result.returncode == 0
    for option in ("AUDIO", "--lyrics", "--model", "--separator", "--samples", "--start", "--out", "lyrics model"):
        assert option in result.stdout
