"""What the tests compare the library against, and hostile inputs they feed it (never used by the library)."""
from __future__ import annotations

import numpy as np

from utils.config import STEMS, AudioConfig, component_name


def reference_features(waveform: np.ndarray, audio_cfg: AudioConfig) -> np.ndarray:
    """The library's own ``ASTFeatureExtractor`` output for one clip, (max_length, mel).

    Without torchaudio (this project's environment) the extractor takes its numpy fallback,
    which frames at 16 kHz (400 / 160 samples) whatever the rate: a reference at 16 kHz only.
    The authors' 44.1 kHz front end (torchaudio's Kaldi fbank) is in ``tests/kaldi_signals.py``.
    """
    from transformers import ASTFeatureExtractor
    from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer

    if audio_cfg.sample_rate != 16_000 and not feature_extraction_audio_spectrogram_transformer.is_speech_available():
        raise ValueError(f"reference_features: without torchaudio the extractor frames at 16 kHz, not at "
                         f"sample_rate={audio_cfg.sample_rate}; compare with the Kaldi fixture instead")

    extractor = ASTFeatureExtractor(
        sampling_rate=audio_cfg.sample_rate,
        num_mel_bins=audio_cfg.num_mel_bins,
        max_length=audio_cfg.max_length,
        mean=audio_cfg.feature_mean,
        std=audio_cfg.feature_std,
    )
    out = extractor(np.asarray(waveform, dtype=np.float32), sampling_rate=audio_cfg.sample_rate, return_tensors="np")
    return out["input_values"][0]


def audio_component_names(num_segments: int = 10, stems: tuple[str, ...] = STEMS) -> list[str]:
    """Names of all audio components in the paper's segment-major order."""
    return [component_name(s, k) for k in range(num_segments) for s in stems]


class Hostile:
    """Pickles as a call of ``exec`` that writes ``marker``: what a planted checkpoint could run
    without ``weights_only`` (the marker file existing afterwards means the code ran)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))
