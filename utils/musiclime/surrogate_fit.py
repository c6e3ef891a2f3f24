"""The local linear surrogate of one label (:class:`SurrogateFit`) and its JSON form.

Made by :func:`utils.musiclime.surrogate.fit_surrogate`, held by
:class:`utils.musiclime.explanation.Explanation` (which re-exports it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNCERTAINTY_FIELDS = ("se", "ci_low", "ci_high", "topk_probability")
"""Per-feature arrays of a :class:`SurrogateFit` that say how far to trust its weights."""


@dataclass
class SurrogateFit:
    """The local linear surrogate for one label.

    Attributes
    ----------
    label : int
        Class index explained.
    intercept : float
    weights : np.ndarray, shape (n_features,)
        Ridge coefficients in feature order (0 for features feature selection dropped).
    used : np.ndarray, shape (n_features,), bool
        Features the surrogate was fitted on.
    score : float
        Weighted R^2 of the surrogate on the neighbourhood.
    local_prediction : float
        The surrogate's prediction for the unperturbed song (all features on).
    se, ci_low, ci_high : np.ndarray, shape (n_features,), optional
        Standard error and ``confidence`` interval of each weight
        (:mod:`utils.musiclime.uncertainty`; 0 for features not fitted). None in explanations
        made before they existed.
    topk_probability : np.ndarray, shape (n_features,), optional
        Probability that the feature is among the ``top_k`` largest weights (by signed weight,
        as ``ranked``'s default order and the paper's positive-weight aggregation) when the
        weights are redrawn from their normal approximation (stays in, for the reported top ``k``).
    top_k : int, optional
    confidence : float, optional
        Coverage of ``ci_low`` .. ``ci_high`` (0.95).
    """

    label: int
    intercept: float
    weights: np.ndarray
    used: np.ndarray
    score: float
    local_prediction: float
    se: np.ndarray | None = None
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None
    topk_probability: np.ndarray | None = None
    top_k: int | None = None
    confidence: float | None = None

    @property
    def has_uncertainty(self) -> bool:
        return self.se is not None

    @property
    def stability(self) -> float | None:
        """Mean ``topk_probability`` over the ``top_k`` largest fitted weights: the expected top-k
        overlap of a redrawn explanation with this one (None without uncertainty)."""
        if self.topk_probability is None or self.top_k is None:
            return None
        fitted = np.flatnonzero(self.used)
        top = fitted[np.argsort(-self.weights[fitted], kind="stable")[:self.top_k]]
        return float(np.mean(self.topk_probability[top])) if len(top) else 1.0

    def uncertain(self) -> np.ndarray:
        """Bool per feature: its interval contains 0 (all False without uncertainty)."""
        if self.ci_low is None:
            return np.zeros(len(self.weights), dtype=bool)
        return (self.ci_low <= 0) & (self.ci_high >= 0)


def fit_to_dict(fit: SurrogateFit) -> dict:
    """One fit as JSON-ready lists (uncertainty only when it exists)."""
    out = {"label": int(fit.label), "intercept": float(fit.intercept), "score": float(fit.score),
           "local_prediction": float(fit.local_prediction),
           "weights": [float(w) for w in fit.weights], "used": [bool(u) for u in fit.used]}
    if fit.has_uncertainty:
        out.update({name: [float(v) for v in getattr(fit, name)] for name in UNCERTAINTY_FIELDS})
        out.update(top_k=fit.top_k, confidence=fit.confidence)
    return out


def fit_from_dict(data: dict) -> SurrogateFit:
    """Inverse of :func:`fit_to_dict`; explanations written before uncertainty existed have none."""
    extra = {name: np.asarray(data[name], dtype=np.float64) for name in UNCERTAINTY_FIELDS if name in data}
    if extra and len(extra) != len(UNCERTAINTY_FIELDS):
        raise ValueError(f"label {data.get('label')}: explanation JSON has only {sorted(extra)} of "
                         f"{list(UNCERTAINTY_FIELDS)}")
    return SurrogateFit(int(data["label"]), data["intercept"], np.asarray(data["weights"], dtype=np.float64),
                        np.asarray(data["used"], dtype=bool), data["score"], data["local_prediction"], **extra,
                        top_k=data.get("top_k"), confidence=data.get("confidence"))
