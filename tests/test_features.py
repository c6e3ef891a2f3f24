import numpy as np
import pytest
import soundfile as sf

import kaldi_signals
from reference import reference_features
from utils.config import AudioConfig, get_profile
from utils.dataset_related.features import (FFT_LENGTH, FRAME_LENGTH, HOP_LENGTH, AudioError, ast_features, cut_clip,
                                            find_audio, frame_geometry, load_audio, load_clip, load_features,
                                            num_frames, save_features)


def _music(seconds, seed=0, rate=16_000):
    """A real-looking clip: a chord with harmonics, a decaying kick and some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((220.0, 277.2, 329.6, 440.0)))
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-(t % 0.5) / 0.08)
    return (0.2 * chord + 0.4 * kick + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("profile", ["tiny", "paper16k"])
def test_matches_transformers_feature_extractor(profile):
    cfg = get_profile(profile).audio
    clips = [_music(cfg.clip_seconds, seed=s) for s in range(2)] + [_music(cfg.clip_seconds / 3, seed=5)]
    ours = [ast_features(c, cfg)[0].numpy() for c in clips]  # includes a short clip (zero-padded frames)
    batch = ast_features(np.stack(clips[:2]), cfg).numpy()
    for clip, feature in zip(clips, ours):
        reference = reference_features(clip, cfg)
        assert feature.shape == reference.shape == (cfg.max_length, cfg.num_mel_bins)
        assert np.abs(feature - reference).max() < 1e-3
    assert np.abs(batch - np.stack(ours[:2])).max() < 1e-5  # batching changes nothing


@pytest.mark.parametrize("rate", sorted(kaldi_signals.RATES))
def test_matches_the_torchaudio_kaldi_extractor(rate):
    """ASTFeatureExtractor(sampling_rate=rate) as the authors ran it (torchaudio), from the fixture."""
    references, versions = kaldi_signals.load_reference()
    assert versions["path"] == "torchaudio.compliance.kaldi.fbank" and "torchaudio" in versions
    cfg = kaldi_signals.audio_config(rate)
    padding = -cfg.feature_mean / (2 * cfg.feature_std)
    for name in kaldi_signals.RATES[rate]:
        waves = np.atleast_2d(kaldi_signals.signal(name, rate))
        reference = references[f"{name}@{rate}"].reshape(len(waves), -1, cfg.num_mel_bins)
        frames = reference.shape[1]
        assert frames == num_frames(waves.shape[1], rate)
        ours = ast_features(waves, cfg).numpy()
        assert np.abs(ours[:, :frames] - reference).max() < 1e-3, name
        assert np.all(ours[:, frames:] == np.float32(padding))


def test_frame_geometry_follows_kaldi():
    """25 ms / 10 ms as int(rate * ms * 0.001) samples, FFT at the next power of two (torchaudio)."""
    g44, g16 = frame_geometry(44_100), frame_geometry(16_000)
    assert (g44.frame_length, g44.hop_length, g44.fft_length, g44.num_bins) == (1102, 441, 2048, 1025)
    assert (g16.frame_length, g16.hop_length, g16.fft_length) == (FRAME_LENGTH, HOP_LENGTH, FFT_LENGTH) == (400, 160, 512)
    assert num_frames(1102 + 1023 * 441, 44_100) == 1024 and num_frames(1101 + 1023 * 441, 44_100) == 1023
    with pytest.raises(ValueError, match="16000 Hz or 44100 Hz.*sample_rate=22050"):
        ast_features(np.zeros(22_050, np.float32), AudioConfig(sample_rate=22_050))
    with pytest.raises(ValueError, match="shorter than one frame.*1102 samples at 44100 Hz"):
        ast_features(np.zeros(1101, np.float32), get_profile("paper").audio)


def test_profiles_rates_and_clips():
    """paper: the authors' 44.1 kHz, a clip that fills all 1024 frames and splits into equal segments;
    paper16k: the former 16 kHz paper profile; tiny unchanged."""
    paper, paper16k, tiny = (get_profile(name) for name in ("paper", "paper16k", "tiny"))
    assert paper.audio.sample_rate == 44_100 and paper.clip_length == 452_250
    assert paper.clip_length % paper.num_segments == 0
    assert num_frames(paper.clip_length, 44_100) == paper.audio.max_length == 1024
    assert num_frames(paper.clip_length - paper.num_segments, 44_100) < 1024      # the shortest such clip
    assert (paper16k.audio.sample_rate, paper16k.audio.clip_seconds, paper16k.clip_length) == (16_000, 10.24, 163_840)
    assert paper16k.model == paper.model and paper16k.audio.num_mel_bins == paper.audio.num_mel_bins
    assert (tiny.audio.sample_rate, tiny.audio.clip_seconds, tiny.audio.num_mel_bins, tiny.audio.max_length) == \
        (16_000, 4.0, 32, 400)
    clip = _music(1.0, seed=4, rate=44_100)
    if _torchaudio_available():                       # the extractor's own 44.1 kHz path: compare directly
        assert np.abs(reference_features(clip, paper.audio) - ast_features(clip, paper.audio)[0].numpy()).max() < 1e-3
    else:                                             # its numpy fallback frames at 16 kHz: not a reference
        with pytest.raises(ValueError, match="frames at 16 kHz"):
            reference_features(clip, paper.audio)


def _torchaudio_available():
    from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer

    return bool(feature_extraction_audio_spectrogram_transformer.is_speech_available())


def test_features_reject_bad_input():
    cfg = get_profile("tiny").audio
    with pytest.raises(ValueError, match="NaN or inf"):
        ast_features(np.full(16_000, np.nan, np.float32), cfg)
    with pytest.raises(ValueError, match="batch, samples"):
        ast_features(np.zeros((2, 2, 16_000), np.float32), cfg)
    with pytest.raises(ValueError, match="16000 Hz"):
        ast_features(np.zeros(16_000, np.float32), get_profile("tiny").audio.__class__(sample_rate=8000))


def test_load_resample_and_errors(tmp_path):
    clip = _music(1.0)
    sf.write(tmp_path / "a.wav", np.stack([clip, clip], axis=1), 16_000)  # stereo -> mono
    sf.write(tmp_path / "b.wav", clip[::2], 8_000)  # resampled to 16 kHz
    assert load_audio(tmp_path / "a.wav", 16_000).shape == (16_000,)
    assert abs(load_audio(tmp_path / "b.wav", 16_000).shape[0] - 16_000) <= 2
    assert find_audio(tmp_path, "a") == tmp_path / "a.wav"
    with pytest.raises(FileNotFoundError, match="'zzz'"):
        find_audio(tmp_path, "zzz")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav", 16_000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_audio(tmp_path / "corrupt.wav", 16_000)
    full = open(tmp_path / "a.wav", "rb").read()
    (tmp_path / "trunc.wav").write_bytes(full[:30])
    with pytest.raises(AudioError, match="trunc.wav"):
        load_audio(tmp_path / "trunc.wav", 16_000)
    with pytest.raises(AudioError, match="song7.*shorter than the model input"):
        load_clip(tmp_path / "a.wav", get_profile("tiny").audio, name="song7")
    with pytest.warns(UserWarning, match="padded with 0.25 s of silence"):
        padded, window = cut_clip(clip, 20_000, 16_000, pad=True)
    assert padded[16_000:].max() == 0 and window == (0, 16_000)


def test_save_and_reload_features(tmp_path):
    cfg = get_profile("tiny").audio
    features = ast_features(np.stack([_music(4.0, s) for s in range(3)]), cfg)
    save_features(tmp_path, ["a", "b", "c"], features)
    assert np.array_equal(load_features(tmp_path, "b", cfg), features[1].numpy())
    with pytest.raises(ValueError, match="'b'.*shape"):
        load_features(tmp_path, "b", get_profile("paper").audio)
    with pytest.raises(FileNotFoundError, match="'d'"):
        load_features(tmp_path, "d")
