"""Separators: oracle stems, weight-free HPSS, Open-Unmix (skipped without the package), cache."""
import sys
import types

import numpy as np
import pytest
import soundfile

from utils.config import STEMS
from utils.musiclime.open_unmix import OpenUnmixSeparator, import_openunmix
from utils.musiclime.separation import (CachedSeparator, HPSSSeparator, OracleSeparator, Separator, check_waveform,
                                        separation_cache_key)

SR = 16_000


def sine(freq, seconds=1.0, sr=SR, amp=0.2):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_corpus(root, track_id="song1", seconds=1.0, sr=SR):
    """A tiny corpus: audio/<id>.wav and stems/<id>/<stem>.wav whose sum is the mix."""
    stems = {s: sine(f, seconds, sr) for s, f in zip(STEMS, (440.0, 1000.0, 100.0, 2000.0))}
    mix = sum(stems.values()).astype(np.float32)
    (root / "stems" / track_id).mkdir(parents=True)
    (root / "audio").mkdir(exist_ok=True)
    for s, wave in stems.items():
        soundfile.write(str(root / "stems" / track_id / f"{s}.wav"), wave, sr, subtype="FLOAT")
    soundfile.write(str(root / "audio" / f"{track_id}.wav"), mix, sr, subtype="FLOAT")
    return mix, stems


# ---------------------------------------------------------------- input checks
def test_check_waveform_refuses_bad_audio():
    good = sine(440)
    assert check_waveform(good.astype(np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match="silent"):
        check_waveform(np.zeros(100))
    with pytest.raises(ValueError, match="NaN or inf"):
        check_waveform(np.where(np.arange(good.size) == 3, np.nan, good))
    with pytest.raises(ValueError, match="NaN or inf"):
        check_waveform(np.where(np.arange(good.size) == 3, np.inf, good))
    with pytest.raises(ValueError, match="stereo"):
        check_waveform(np.stack([good, good]))
    with pytest.raises(ValueError, match="empty"):
        check_waveform(np.zeros(0))
    with pytest.raises(TypeError, match="waveform"):
        check_waveform("song.wav")


# ---------------------------------------------------------------- oracle
def test_oracle_returns_saved_stems_by_id(tmp_path):
    mix, stems = make_corpus(tmp_path)
    out = OracleSeparator(tmp_path).separate(mix, SR, track_id="song1")
    assert list(out) == list(STEMS)
    for s in STEMS:
        np.testing.assert_array_equal(out[s], stems[s])


def test_oracle_by_mapping_and_resampled(tmp_path):
    import librosa

    mix, stems = make_corpus(tmp_path)
    mapping = {"x": {s: tmp_path / "stems" / "song1" / f"{s}.wav" for s in STEMS}}
    out = OracleSeparator(stem_paths=mapping).separate(mix, SR, track_id="x")
    np.testing.assert_array_equal(out["drums"], stems["drums"])
    # the mix loaded at 8 kHz: stems are resampled the same way and still sum to it
    mix8 = librosa.resample(mix, orig_sr=SR, target_sr=8000)
    out8 = OracleSeparator(tmp_path).separate(mix8, 8000, track_id="song1")
    assert out8["bass"].shape == mix8.shape
    assert np.max(np.abs(sum(out8.values()) - mix8)) < 1e-4


def test_oracle_errors_name_the_id_and_file(tmp_path):
    mix, _ = make_corpus(tmp_path)
    oracle = OracleSeparator(tmp_path)
    with pytest.raises(FileNotFoundError, match="nosuchsong"):
        oracle.separate(mix, SR, track_id="nosuchsong")
    with pytest.raises(ValueError, match="track_id"):
        oracle.separate(mix, SR)
    with pytest.raises(ValueError, match="song1.*do not sum"):
        oracle.separate(sine(330), SR, track_id="song1")
    (tmp_path / "stems" / "song1" / "bass.wav").unlink()
    with pytest.raises(FileNotFoundError, match="bass.wav"):
        oracle.separate(mix, SR, track_id="song1")
    with pytest.raises(FileNotFoundError, match="corpus_dir"):
        OracleSeparator(tmp_path / "missing")


# ---------------------------------------------------------------- HPSS
def test_hpss_stems_sum_to_mixture_and_split_sensibly():
    seconds = 3.0
    t = np.arange(int(seconds * SR)) / SR
    bass = 0.3 * np.sin(2 * np.pi * 55 * t)
    clicks = np.zeros_like(t)
    clicks[:: SR // 4] = 1.0
    burst = np.exp(-np.arange(200) / 20) * np.random.default_rng(0).standard_normal(200)
    clicks = 0.5 * np.convolve(clicks, burst, mode="same")
    tone = 0.2 * np.sin(2 * np.pi * 1500 * t)
    mix = (bass + clicks + tone).astype(np.float32)
    stems = HPSSSeparator().separate(mix, SR)
    assert list(stems) == list(STEMS) and all(s.dtype == np.float32 for s in stems.values())
    assert np.max(np.abs(sum(stems.values()) - mix)) < 1e-5

    def share(stem, ref):
        return float(np.dot(stems[stem], ref) / np.dot(ref, ref))

    assert share("bass", bass) > 0.95
    assert share("drums", clicks) > 0.9
    assert share("other", tone) > 0.95
    assert share("vocals", tone) < 0.05


def test_hpss_puts_non_repeating_melody_in_vocals():
    seconds = 6.0
    t = np.arange(int(seconds * SR)) / SR
    loop = 0.15 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 1320 * t)
    notes = np.random.default_rng(1).uniform(400, 1200, size=int(seconds / 0.3) + 1)
    freq = notes[(t / 0.3).astype(int)]
    melody = 0.15 * np.sin(2 * np.pi * np.cumsum(freq * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / SR)
    mix = (loop + melody).astype(np.float32)
    stems = HPSSSeparator().separate(mix, SR)
    assert np.dot(stems["vocals"], melody) / np.dot(melody, melody) > 0.5
    assert abs(np.dot(stems["vocals"], loop)) / np.dot(loop, loop) < 0.05
    assert np.max(np.abs(sum(stems.values()) - mix)) < 1e-5


def test_hpss_masks_are_a_partition_of_unity_and_short_clips_work():
    import librosa

    mix = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    mix[: SR // 4] = 0.0                                   # a silent stretch: 0/0 bins
    spectrum = librosa.stft(mix, n_fft=2048, hop_length=512)
    masks = HPSSSeparator().masks(spectrum, SR)
    total = sum(masks.values())
    assert np.max(np.abs(total - 1.0)) < 1e-6
    assert all(m.min() >= -1e-12 and m.max() <= 1 + 1e-12 for m in masks.values())
    short = HPSSSeparator().separate(mix[SR // 4: SR // 4 + 300], SR)
    assert np.max(np.abs(sum(short.values()) - mix[SR // 4: SR // 4 + 300])) < 1e-5


# ---------------------------------------------------------------- cache
class CountingSeparator(Separator):
    name = "counting"

    def __init__(self):
        self.calls = 0

    def _separate(self, waveform, sample_rate, track_id):
        self.calls += 1
        return {s: waveform * (k + 1) / 10 for k, s in enumerate(STEMS)}


def test_cache_separates_each_input_once(tmp_path):
    inner = CountingSeparator()
    cached = CachedSeparator(inner, tmp_path / "cache")
    wave = sine(440)
    first = cached.separate(wave, SR)
    second = cached.separate(wave, SR)
    assert inner.calls == 1
    for s in STEMS:
        np.testing.assert_array_equal(first[s], second[s])
        np.testing.assert_array_equal(first[s], wave * (STEMS.index(s) + 1) / 10)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    cached.separate(wave, 8000)                              # another rate: another key
    cached.separate(sine(441), SR)                           # another waveform: another key
    assert inner.calls == 3
    assert separation_cache_key(wave, SR, inner) != separation_cache_key(wave, SR, HPSSSeparator())
    assert separation_cache_key(wave, SR, HPSSSeparator()) != separation_cache_key(wave, SR, HPSSSeparator(n_fft=1024))


def test_cache_reports_corrupt_file(tmp_path):
    cached = CachedSeparator(CountingSeparator(), tmp_path)
    wave = sine(440)
    cached.cache_path(wave, SR).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="unreadable"):
        cached.separate(wave, SR)


# ---------------------------------------------------------------- Open-Unmix
def test_openunmix_import_error_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "openunmix", None)      # makes `import openunmix` fail
    with pytest.raises(ImportError, match="openunmix"):
        import_openunmix()
    with pytest.raises(ImportError, match="HPSSSeparator"):
        OpenUnmixSeparator("umxl")


def _openunmix_or_skip():
    try:
        return import_openunmix()
    except ImportError as error:
        pytest.skip(f"openunmix cannot be imported here (it needs a torchaudio matching torch): {error}")


def _random_umx(seed):
    import torch

    openunmix = _openunmix_or_skip()
    torch.manual_seed(seed)
    targets = {s: openunmix.model.OpenUnmix(nb_bins=4096 // 2 + 1, nb_channels=2, hidden_size=16, max_bin=256)
               for s in STEMS}
    return openunmix.model.Separator(targets, niter=1, sample_rate=44100.0, n_fft=4096, n_hop=1024, nb_channels=2)


def test_openunmix_separator_matches_the_authors_pipeline_and_refuses_incomplete_models():
    """One test (one skip where openunmix cannot be imported)."""
    import librosa
    import torch

    openunmix = _openunmix_or_skip()
    model = _random_umx(0)
    separator = OpenUnmixSeparator(model)
    wave = sine(440, 0.5) + sine(90, 0.5)
    stems = separator.separate(wave, SR)
    assert list(stems) == list(STEMS) and all(s.shape == wave.shape for s in stems.values())
    # the authors' steps: resample to 44.1 kHz, separate, average channels, resample back
    up = librosa.resample(wave, orig_sr=SR, target_sr=44100)
    with torch.inference_mode():
        est = openunmix.predict.separate(torch.as_tensor(up[None, :]), rate=44100, separator=model)
    for s in STEMS:
        ref = librosa.resample(est[s][0].mean(dim=0).numpy(), orig_sr=44100, target_sr=SR)
        np.testing.assert_allclose(stems[s], librosa.util.fix_length(ref, size=wave.size), atol=1e-6)
    assert separator.config()["fingerprint"] != OpenUnmixSeparator(_random_umx(1)).config()["fingerprint"]
    # a model without all four targets is refused
    partial = openunmix.model.Separator({"vocals": model.target_models["vocals"], "bass": model.target_models["bass"]},
                                        niter=0)
    with pytest.raises(ValueError, match="drums"):
        OpenUnmixSeparator(partial)
    with pytest.raises(TypeError, match="model"):
        OpenUnmixSeparator(42)


def _fake_openunmix(monkeypatch, calls):
    """A stand-in ``openunmix`` package: stem k is ``(k + 1) / 10`` times the input, in stereo."""
    import torch

    class FakeSeparator:
        sample_rate, niter, target_models = torch.tensor(44100.0), 1, {s: None for s in STEMS}

        def to(self, device):
            return self

        def eval(self):
            return self

        def state_dict(self):
            return {}

    def separate(audio, rate, separator, device):
        calls.append((audio.clone(), rate))
        return {s: torch.stack([audio, audio], dim=1) * (k + 1) / 10 for k, s in enumerate(STEMS)}

    package = types.ModuleType("openunmix")
    package.model = types.SimpleNamespace(Separator=FakeSeparator)
    package.predict = types.SimpleNamespace(separate=separate)
    package.utils = types.SimpleNamespace()
    for name, module in (("openunmix", package), ("openunmix.model", package.model),
                         ("openunmix.predict", package.predict), ("openunmix.utils", package.utils)):
        monkeypatch.setitem(sys.modules, name, module)
    return FakeSeparator()


def test_openunmix_separator_takes_44k_audio_as_it_is(monkeypatch):
    """At the authors' 44.1 kHz the clip goes to Open-Unmix unresampled and the stems come back
    at 44.1 kHz; at 16 kHz it is resampled up and back."""
    calls = []
    separator = OpenUnmixSeparator(_fake_openunmix(monkeypatch, calls))
    assert separator.model_sample_rate == 44_100
    wave = sine(440, 0.5, sr=44_100) + sine(90, 0.5, sr=44_100)
    stems = separator.separate(wave, 44_100)
    (audio, rate), = calls
    assert rate == 44_100 and np.array_equal(audio.numpy()[0], wave)
    for k, s in enumerate(STEMS):
        np.testing.assert_allclose(stems[s], wave * (k + 1) / 10, rtol=1e-6, atol=1e-7)
    calls.clear()
    low = sine(440, 0.5) + sine(90, 0.5)
    stems = separator.separate(low, SR)
    assert calls[0][1] == 44_100 and abs(calls[0][0].shape[1] - 22_050) <= 1           # resampled up
    assert stems["bass"].shape == low.shape and np.abs(stems["bass"] - 0.3 * low).max() < 1e-2


def test_openunmix_separator_at_44k_is_the_model_itself():
    """With the real package: at 44.1 kHz the stems are the model's, averaged to mono (no resampling)."""
    import torch

    openunmix = _openunmix_or_skip()
    model = _random_umx(0)
    wave = sine(440, 0.5, sr=44_100) + sine(90, 0.5, sr=44_100)
    stems = OpenUnmixSeparator(model).separate(wave, 44_100)
    with torch.inference_mode():
        est = openunmix.predict.separate(torch.as_tensor(wave[None, :]), rate=44100, separator=model)
    for s in STEMS:
        reference = est[s][0].mean(dim=0).numpy()
        np.testing.assert_allclose(stems[s], reference[: wave.size], atol=1e-6)


@pytest.mark.parametrize("rate", [16_000, 44_100])
def test_hpss_splits_the_same_at_44k(rate):
    """Cut-offs are in Hz and the repetition width in seconds: the split does not assume 16 kHz."""
    t = np.arange(int(3.0 * rate)) / rate
    bass = 0.3 * np.sin(2 * np.pi * 55 * t)
    tone = 0.2 * np.sin(2 * np.pi * 1500 * t)
    clicks = np.zeros_like(t)
    clicks[:: rate // 4] = 1.0
    burst = np.exp(-np.arange(int(0.0125 * rate)) / (0.00125 * rate)) * np.random.default_rng(0).standard_normal(
        int(0.0125 * rate))
    clicks = 0.5 * np.convolve(clicks, burst, mode="same")
    mix = (bass + clicks + tone).astype(np.float32)
    stems = HPSSSeparator().separate(mix, rate)
    assert np.max(np.abs(sum(stems.values()) - mix)) < 1e-5

    def share(stem, ref):
        return float(np.dot(stems[stem], ref) / np.dot(ref, ref))

    assert share("bass", bass) > 0.95 and share("other", tone) > 0.95 and share("vocals", tone) < 0.05
    assert share("drums", clicks) > 0.8
