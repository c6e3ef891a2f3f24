"""The paper's separator, Open-Unmix, behind the :class:`utils.musiclime.separation.Separator` interface.

The ``openunmix`` package (which imports ``torchaudio``) is imported lazily, so everything
else runs without it; :func:`import_openunmix` says what to install when it is missing.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from utils.config import STEMS
from utils.musiclime.separation import Separator


def import_openunmix():
    """Import the ``openunmix`` package or raise an ``ImportError`` that says what to do."""
    try:
        import openunmix
        import openunmix.model
        import openunmix.predict
        import openunmix.utils
    except Exception as error:  # ImportError, or OSError from a torchaudio built for another torch
        raise ImportError(
            "OpenUnmixSeparator needs the `openunmix` package, which imports `torchaudio` at module level; "
            "install both for your torch version (on Colab: `pip install openunmix`). "
            "Without them use HPSSSeparator (any audio) or OracleSeparator (synthetic corpus). "
            f"Import failed with {type(error).__name__}: {error}") from error
    return openunmix


class OpenUnmixSeparator(Separator):
    """The paper's separator: Open-Unmix at its own rate (44.1 kHz), stems averaged to mono.

    The mono clip is resampled to the model's rate (``librosa.resample``, as the authors
    did), duplicated to stereo, separated with ``openunmix.predict.separate``, each stem
    averaged over channels and resampled back to ``sample_rate``.

    Parameters
    ----------
    model : str or openunmix.model.Separator
        A pretrained model name known to ``openunmix.utils.load_separator`` (``'umxl'``,
        the package default the paper used, or ``'umxhq'``; weights are downloaded by
        openunmix on first use) or a ready ``openunmix.model.Separator`` whose
        ``target_models`` include all four :data:`STEMS`.
    device : str
        torch device for inference.
    niter : int
        Wiener EM iterations (openunmix's default 1) when loading a pretrained model.

    Notes
    -----
    Open-Unmix's stems (after Wiener filtering and two resamplings) do not sum exactly to
    the mixture; :class:`utils.musiclime.factorization.SourceSeparationSegments` reports the gap as
    ``reconstruction_error`` and can give it to ``other`` (``residual_to_other=True``).
    """

    name = "openunmix"

    def __init__(self, model: Any = "umxl", device: str = "cpu", niter: int = 1, wiener_win_len: int | None = 300):
        openunmix = import_openunmix()
        import torch

        self.device = device
        if isinstance(model, str):
            separator = openunmix.utils.load_separator(model_str_or_path=model, niter=niter,
                                                       wiener_win_len=wiener_win_len, device=device, pretrained=True)
            separator.freeze()
            self.model_name = model
            self._fingerprint = model
        elif isinstance(model, openunmix.model.Separator):
            separator = model.to(device).eval()
            self.model_name = "custom"
            digest = hashlib.sha256()
            for key, tensor in sorted(separator.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        else:
            raise TypeError("model must be a pretrained model name (e.g. 'umxl') or an openunmix.model.Separator, "
                            f"got {type(model).__name__}")
        missing = [s for s in STEMS if s not in separator.target_models]
        if missing:
            raise ValueError(f"the Open-Unmix model lacks targets {missing}; it has {list(separator.target_models)}")
        self.separator = separator
        self.model_sample_rate = int(round(float(torch.as_tensor(separator.sample_rate))))
        self.niter = int(separator.niter)

    def _separate(self, waveform, sample_rate, track_id):
        import librosa
        import torch

        openunmix = import_openunmix()
        audio = waveform
        if sample_rate != self.model_sample_rate:
            audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=self.model_sample_rate)
        with torch.inference_mode():
            estimates = openunmix.predict.separate(torch.as_tensor(audio[None, :], dtype=torch.float32),
                                                   rate=self.model_sample_rate, separator=self.separator,
                                                   device=self.device)
        stems = {}
        for stem in STEMS:
            mono = estimates[stem][0].mean(dim=0).cpu().numpy().astype(np.float32)   # (channels, n) -> (n,)
            if sample_rate != self.model_sample_rate:
                mono = librosa.resample(mono, orig_sr=self.model_sample_rate, target_sr=sample_rate)
            stems[stem] = librosa.util.fix_length(mono, size=waveform.shape[0])
        return stems

    def config(self) -> dict:
        return {"model": self.model_name, "fingerprint": self._fingerprint, "niter": self.niter,
                "model_sample_rate": self.model_sample_rate}
