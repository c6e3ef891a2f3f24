"""Step 2 of MusicLIME: lime's locally weighted linear surrogate, on plain arrays.

Nothing here knows about music: a neighbourhood is a 0/1 matrix ``masks`` (row 0 the
original), the model's ``predictions`` for its rows and their ``distances`` to row 0, and
:func:`fit_surrogate` hands them to ``lime.lime_base.LimeBase.explain_instance_with_data``
with the kernel ``sqrt(exp(-d^2 / w^2))`` (w = 25), feature selection ``'auto'`` and
``Ridge(alpha=1)``, as the authors did.

Note on locality: as in the authors' code the distance is the plain cosine distance
(in [0, 1]; lime's text explainer multiplies it by 100), so with w = 25 every sample gets a
kernel weight between 0.9992 and 1 -- the surrogate is in effect unweighted. The explainer's
``kernel='locality'`` scales the distance by 100 as lime's text explainer does
(:data:`DISTANCE_SCALES`, :func:`kernel_distances`).

Every fit also carries the uncertainty of its weights (:mod:`utils.musiclime.uncertainty`:
cluster-robust sandwich standard errors, 95 % intervals, top-k probabilities).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from utils.musiclime.surrogate_fit import SurrogateFit
from utils.musiclime.uncertainty import (CONFIDENCE, DRAWS, TOP_K, normal_interval, sandwich_covariance,
                                         topk_probabilities)

KERNEL_WIDTH = 25.0
NUM_FEATURES = 100_000
CONSTANT_TOLERANCE = 1e-12
"""A label's probability varying less than this (relative) over the rows counts as constant."""
KERNELS = ("paper", "locality")
DISTANCE_SCALES = {"paper": 1.0, "locality": 100.0}
"""Factor on the cosine distance per kernel option: ``'paper'`` (the authors: plain cosine distance
in [0, 1], so with width 25 every row weighs 0.9992 to 1 -- a flat kernel) and ``'locality'``
(``lime.lime_text.LimeTextExplainer``'s ``cosine distance * 100``: a half mask is about 29 away,
weight about 0.5, and rows closer to the original weigh more)."""


def kernel(distances: np.ndarray, kernel_width: float = KERNEL_WIDTH) -> np.ndarray:
    """LIME's exponential kernel: ``sqrt(exp(-d^2 / kernel_width^2))``."""
    return np.sqrt(np.exp(-(np.asarray(distances, dtype=np.float64) ** 2) / float(kernel_width) ** 2))



def kernel_distances(cosine: np.ndarray, kernel_name: str = "paper") -> np.ndarray:
    """Cosine distances scaled for the kernel option (:data:`DISTANCE_SCALES`)."""
    if kernel_name not in DISTANCE_SCALES:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel_name!r}")
    return np.asarray(cosine, dtype=np.float64) * DISTANCE_SCALES[kernel_name]


def cosine_distances(masks: np.ndarray) -> np.ndarray:
    """Cosine distance of every row to row 0, ``(num_samples,)`` (sklearn, as lime; all-zero rows get 1)."""
    import sklearn.metrics

    return sklearn.metrics.pairwise_distances(masks, masks[:1], metric="cosine").ravel()


def check_labels(labels: Sequence[int], n_classes: int, name: str = "labels") -> list[int]:
    """Labels as a list of ints in ``[0, n_classes)``."""
    out = []
    for label in labels:
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise TypeError(f"{name} must be class indices (ints), got {label!r}")
        if not 0 <= int(label) < n_classes:
            raise ValueError(f"{name} contains {int(label)}, outside the model's {n_classes} classes "
                             f"[0, {n_classes - 1}]")
        out.append(int(label))
    if not out:
        raise ValueError(f"{name} is empty")
    return out


def check_kernel_width(kernel_width: float) -> None:
    """Refuse a kernel width that weights nothing (zero, negative or not finite)."""
    if not np.isfinite(kernel_width) or kernel_width <= 0:
        raise ValueError(f"kernel_width must be a positive number, got {kernel_width!r}")


def fit_surrogate(masks: np.ndarray, predictions: np.ndarray, distances: np.ndarray, label: int, *,
                  kernel_width: float = KERNEL_WIDTH, num_features: int = NUM_FEATURES,
                  feature_selection: str = "auto", alpha: float = 1.0, random_state: int | None = 0,
                  groups: np.ndarray | Sequence[np.ndarray] | None = None, top_k: int = TOP_K,
                  confidence: float = CONFIDENCE, draws: int = DRAWS) -> SurrogateFit:
    """Fit lime's locally weighted linear surrogate for one label, with the uncertainty of its weights.

    Parameters
    ----------
    masks : np.ndarray, shape (num_samples, n_features)
        Neighbourhood data, row 0 the original.
    predictions : np.ndarray, shape (num_samples, n_classes)
    distances : np.ndarray, shape (num_samples,)
        Distance of each row to row 0, as the kernel sees it (cosine distance, times 100 for
        lime's text-explainer scale; :data:`DISTANCE_SCALES`).
    label : int
        Column of ``predictions`` to explain.
    kernel_width, num_features, feature_selection
        As ``lime.lime_base.LimeBase.explain_instance_with_data`` (``'auto'`` with the
        default 100000 features means ``'highest_weights'``: all features are kept).
    alpha : float
        Ridge penalty (the paper: 1).
    random_state : int, optional
        Passed to ``LimeBase`` and ``Ridge``; also seeds the top-k Monte Carlo (0 when None).
    groups : array (num_samples,) or pair of arrays, optional
        Clusters of dependent rows for the standard errors
        (:func:`utils.musiclime.uncertainty.sandwich_covariance`): complementary pairs of
        antithetic sampling, (audio pair, text pair) of crossed sampling; None: independent rows.
    top_k, confidence, draws
        The top-k probabilities' ``k`` and Monte-Carlo draws; the intervals' coverage.

    Returns
    -------
    SurrogateFit
        With ``se``, ``ci_low``, ``ci_high`` (normal intervals from the cluster-robust sandwich
        covariance, conditional on the fitted columns; 0 for columns feature selection dropped)
        and ``topk_probability`` (probability of being among the ``top_k`` largest weights,
        over the fitted columns).

    Warns
    -----
    UserWarning
        When the model's probability of ``label`` does not change over the rows: every weight
        and interval is then exactly 0.
    """
    from functools import partial

    from lime.lime_base import LimeBase
    from sklearn.linear_model import Ridge

    masks = np.asarray(masks, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    distances = np.asarray(distances, dtype=np.float64)
    if masks.ndim != 2 or predictions.ndim != 2 or masks.shape[0] != predictions.shape[0] \
            or distances.shape != (masks.shape[0],):
        raise ValueError(f"need masks (n, f), predictions (n, c), distances (n,); got {masks.shape}, "
                         f"{predictions.shape}, {distances.shape}")
    if masks.shape[0] < 2:
        raise ValueError(f"need at least 2 neighbourhood rows, got {masks.shape[0]}")
    label = check_labels([label], predictions.shape[1], "label")[0]
    check_kernel_width(kernel_width)
    base = LimeBase(partial(kernel, kernel_width=kernel_width), random_state=random_state)
    regressor = Ridge(alpha=alpha, fit_intercept=True, random_state=random_state)
    intercept, pairs, score, local_prediction = base.explain_instance_with_data(
        masks, predictions, distances, label, num_features,
        feature_selection=feature_selection, model_regressor=regressor)
    weights = np.zeros(masks.shape[1])
    used = np.zeros(masks.shape[1], dtype=bool)
    for feature, weight in pairs:
        weights[int(feature)] = weight
        used[int(feature)] = True
    target = predictions[:, label]
    covariance = np.zeros((int(used.sum()),) * 2)
    if np.ptp(target) <= CONSTANT_TOLERANCE * max(1.0, float(np.max(np.abs(target)))):
        warnings.warn(f"the model's probability of label {label} is the same for all {len(target)} neighbourhood "
                      f"rows ({target[0]:.6g}): no feature changes it, so every weight is 0 with a zero-width "
                      "interval", UserWarning, stacklevel=2)
        weights[:] = 0.0
        intercept = local_prediction = float(np.average(target, weights=kernel(distances, kernel_width)))
    else:
        covariance = sandwich_covariance(masks[:, used], target, kernel(distances, kernel_width), float(intercept),
                                         weights[used], alpha, groups)
    se = np.zeros(masks.shape[1])
    se[used] = np.sqrt(np.clip(np.diag(covariance), 0, None))
    ci_low, ci_high = normal_interval(weights, se, confidence)
    probability = np.zeros(masks.shape[1])
    probability[used] = topk_probabilities(weights[used], covariance, top_k, draws,
                                           0 if random_state is None else random_state)
    return SurrogateFit(label, float(intercept), weights, used, float(score), float(np.ravel(local_prediction)[0]),
                        se=se, ci_low=ci_low, ci_high=ci_high, topk_probability=probability, top_k=int(top_k),
                        confidence=float(confidence))
