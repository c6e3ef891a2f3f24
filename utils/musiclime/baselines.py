"""Other explainers on MusicLIME's own features, for the comparison table.

All three take a :class:`utils.musiclime.faithfulness.MaskedModel` (or any ``masks (rows, n) ->
(rows, classes)`` callable) and return one weight per feature, in the model's column order
(audio components, then words):

* :func:`kernel_shap_weights` -- KernelSHAP (Lundberg & Lee 2017) from captum
  (``captum.attr.KernelShap`` with one feature-mask group per component / word). Chosen over
  shap's ``KernelExplainer`` because captum is pure Python on the torch we already need (shap
  pulls numba / llvmlite and a compiled extension), it works on torch tensors in batches
  (``perturbations_per_eval``) and takes a feature mask directly, and it is maintained by the
  PyTorch team. The features are switched exactly as MusicLIME switches them: input all ones,
  baseline all zeros, so a coalition ``z`` is the song with the components / words of ``z`` on;
  the model is asked about ``num_samples`` coalitions (the same budget as MusicLIME's rows).
* :func:`occlusion_weights` -- leave one out: ``f(all) - f(all but j)``, one model row per feature
  plus the original.
* :func:`random_weights` -- a seeded random ranking (the chance level), no model rows.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def kernel_shap_weights(model: Callable[[np.ndarray], np.ndarray], n_features: int, label: int, *,
                        num_samples: int = 1000, seed: int = 0, batch_size: int = 250) -> np.ndarray:
    """KernelSHAP values of ``label``'s probability for the ``n_features`` switches (captum).

    Parameters
    ----------
    model : callable
        ``masks (rows, n_features) float 0/1 -> (rows, n_classes)`` probabilities.
    n_features : int
    label : int
        Class whose probability is explained.
    num_samples : int
        Coalitions sampled (model rows, the all-on and all-off ones included; captum draws the
        coalition size from the Shapley kernel, then a uniform subset of that size).
    seed : int
        Seeds captum's sampling (torch's generator, forked so the global state is untouched).
    batch_size : int
        Coalitions per model call.

    Returns
    -------
    np.ndarray, shape (n_features,) float64
    """
    import torch
    from captum.attr import KernelShap

    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")

    def forward(switches: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(model(switches.detach().cpu().numpy().astype(np.float64)), dtype=torch.float64)

    inputs = torch.ones(1, n_features, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        values = KernelShap(forward).attribute(inputs, baselines=torch.zeros_like(inputs), target=int(label),
                                               feature_mask=torch.arange(n_features).unsqueeze(0),
                                               n_samples=int(num_samples), perturbations_per_eval=int(batch_size))
    return values.detach().cpu().numpy().reshape(-1).astype(np.float64)


def occlusion_weights(model: Callable[[np.ndarray], np.ndarray], n_features: int, label: int) -> np.ndarray:
    """Leave-one-out weights ``f(all on) - f(all on but j)`` of ``label``'s probability, shape (n_features,).

    ``n_features + 1`` model rows. Exact for a model additive in the switches.
    """
    masks = np.ones((n_features + 1, n_features))
    masks[np.arange(1, n_features + 1), np.arange(n_features)] = 0.0
    probabilities = np.asarray(model(masks))[:, label]
    return probabilities[0] - probabilities[1:]


def random_weights(n_features: int, seed: int = 0) -> np.ndarray:
    """Seeded random weights (a random ranking), shape (n_features,); no model rows."""
    return np.random.default_rng(seed).standard_normal(n_features)
