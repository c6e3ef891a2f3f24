"""Adaptive sample size: draw neighbourhood rows until the top-k features are stable.

:func:`sample_until_stable` is what ``explain(num_samples="auto")`` runs. It draws rows in
complementary pairs (antithetic sampling, :func:`utils.musiclime.sampling.sample_masks`),
``batch_rows`` at a time, refits the surrogate after every batch and stops as soon as, for
every explained label, the top-k *stability* reaches the target: the mean over the reported
top ``k`` of each feature's probability of staying in the top ``k``
(:attr:`utils.musiclime.explanation.SurrogateFit.stability`), i.e. the expected top-k overlap
of a fresh explanation with this one, from the cluster-robust normal approximation of the
weights (:mod:`utils.musiclime.uncertainty`). In the spirit of Covert & Lee (AISTATS 2021,
paired sampling with convergence detection) and S-LIME (Zhou, Hooker & Wang, KDD 2021).

The first check waits for at least ``4 n + 1`` rows for ``n`` features (the normal approximation
is poor with fewer). Checking after every batch is a sequential test: the stopping rule is
slightly optimistic, which the benchmark's comparison with a large reference measures
(``python -m utils.musiclime.trust_benchmark``). Crossed sampling fixes its masks up front and is
not supported. Works for every model (only ``predict_fn`` is queried).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from utils.musiclime.surrogate_fit import SurrogateFit
from utils.musiclime.factorization import Factorization
from utils.musiclime.lyric_features import LineFeatures, WordFeatures
from utils.musiclime.sampling import (Neighbourhood, _check_inputs, antithetic_groups, mode_columns, query_model)
from utils.musiclime.surrogate import cosine_distances


@dataclass(frozen=True)
class AutoTarget:
    """When ``num_samples='auto'`` stops.

    Attributes
    ----------
    stability : float
        Top-k stability to reach, in (0, 1) (the expected top-k overlap of a redraw; 0.95).
    max_samples : int
        Cap on the rows, the original included (>= 3); reached without the target, the
        explanation is returned marked "target not met", with a warning.
    batch_rows : int
        Rows added between checks (>= 2; rounded down to whole pairs).
    """

    stability: float = 0.95
    max_samples: int = 20_000
    batch_rows: int = 500

    def __post_init__(self):
        if isinstance(self.stability, bool) or not isinstance(self.stability, (int, float)) \
                or not 0 < self.stability < 1:
            raise ValueError(f"AutoTarget.stability must be a number in (0, 1), got {self.stability!r}")
        for name, low in (("max_samples", 3), ("batch_rows", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"AutoTarget.{name} must be an int >= {low}, got {value!r}")

    def as_dict(self) -> dict:
        return {key: (float(v) if key == "stability" else int(v)) for key, v in dataclasses.asdict(self).items()}


def _pairs(rng: np.random.Generator, count: int, columns: int) -> np.ndarray:
    """``count`` complementary pairs of uniform 0/1 rows, ``(2 count, columns)``: z, 1 - z, ..."""
    draws = rng.integers(0, 2, size=(count, columns)).astype(np.float64)
    rows = np.empty((2 * count, columns))
    rows[0::2], rows[1::2] = draws, 1.0 - draws
    return rows


def sample_until_stable(predict_fn: Callable, factorization: Factorization | None,
                        text: WordFeatures | LineFeatures | None, fit_labels: Callable[[Neighbourhood],
                                                                                       dict[int, SurrogateFit]], *,
                        target: AutoTarget, top_k: int, mode: str = "both", batch_size: int = 10,
                        seed: int = 0, sample_rate: int | None = None,
                        expected_labels: Sequence[int] | None = None,
                        progress: bool = False) -> tuple[Neighbourhood, dict[int, SurrogateFit], dict]:
    """Antithetic rows, batch by batch, until every fitted label's top-``top_k`` stability meets ``target``.

    Parameters
    ----------
    predict_fn, factorization, text, mode, batch_size, sample_rate, expected_labels, progress
        As :func:`utils.musiclime.sampling.sample_neighbourhood` (``batch_size``: rows per model call).
    fit_labels : callable
        ``fit_labels(neighbourhood) -> {label: SurrogateFit}`` with uncertainty at ``top_k``
        (the explainer's surrogate fits).
    target : AutoTarget
    top_k : int
        The ``k`` of the fits' stability (reported in the result).
    seed : int
        Seeds the masks: the same seed gives the same rows, stopping point and explanation.

    Returns
    -------
    neighbourhood, fits, report
        ``report = {"rows", "target_met", "achieved", "top_k", "stability", "max_samples",
        "batch_rows", "checks"}``: rows used (original included), whether the target was met,
        the smallest stability over the labels at the stop, the target, and how many batches
        were checked.

    Warns
    -----
    UserWarning
        The target was not met within ``target.max_samples`` rows.
    """
    _check_inputs(predict_fn, factorization, text, mode, 3, batch_size, sample_rate)
    n_audio, n_text = mode_columns(factorization, text, mode)
    columns = n_audio + n_text
    rng = np.random.default_rng(seed)
    first_rows = min(target.max_samples, max(target.batch_rows, 4 * columns + 1))
    masks = np.vstack([np.ones((1, columns)), _pairs(rng, (first_rows - 1) // 2, columns)])
    query = dict(n_audio=n_audio, n_text=n_text, batch_size=batch_size, progress=progress)
    predictions = query_model(predict_fn, factorization, text, masks, expected_labels=expected_labels, **query)
    checks = 0
    while True:
        neighbourhood = Neighbourhood(masks, predictions, cosine_distances(masks), n_audio, n_text,
                                      groups=antithetic_groups(masks.shape[0]))
        fits = fit_labels(neighbourhood)
        checks += 1
        achieved = min(fit.stability for fit in fits.values())
        room = (target.max_samples - masks.shape[0]) // 2
        if achieved >= target.stability or room < 1:
            break
        new = _pairs(rng, min(target.batch_rows // 2, room), columns)
        more = query_model(predict_fn, factorization, text, new, n_classes=predictions.shape[1], **query)
        masks, predictions = np.vstack([masks, new]), np.vstack([predictions, more])
    met = bool(achieved >= target.stability)
    if not met:
        warnings.warn(f"num_samples='auto': target not met -- the top-{top_k} stability is {achieved:.3f} after "
                      f"{masks.shape[0]} rows (the cap, max_samples={target.max_samples}), below the target "
                      f"{target.stability}; the explanation is returned marked target_met=False. Raise max_samples "
                      "or lower the target (ties among weak features may never settle)", UserWarning, stacklevel=3)
    report = {"rows": int(masks.shape[0]), "target_met": met, "achieved": float(achieved), "top_k": int(top_k),
              **target.as_dict(), "checks": checks}
    return neighbourhood, fits, report
