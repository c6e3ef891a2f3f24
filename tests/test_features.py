import numpy as np
import pytest
import soundfile as sf

from reference import reference_features
from utils.config import get_profile
from utils.dataset_related.features import (AudioError, ast_features, cut_clip, find_audio, load_audio, load_clip,
                                            load_features, save_features)


def _music(seconds, seed=0):
    """A real-looking clip: a chord with harmonics, a decaying kick and some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    chord = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((220.0, 277.2, 329.6, 440.0)))
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-(t % 0.5) / 0.08)
    return (0.2 * chord + 0.4 * kick + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("profile", ["tiny", "paper"])
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
