"""How faithful is an explanation to the model? Deletion and insertion curves, AOPC, a random baseline.

Read top to bottom:

1. :class:`MaskedModel` -- the black box as a function of 0/1 feature switches (audio components
   then words, the explainer's columns): ``masks (rows, n_features) -> (rows, n_classes)``. Rows
   are composed with the one "compose a model input from a selection" verb of each modality
   (``Factorization.compose``, ``WordFeatures.compose``; or the predictor's ``predict_masks`` fast
   path) and sent to the model in batches; it counts the rows it asked about.
2. :func:`ranking` / :func:`curve_masks` / :func:`feature_curves` -- switch features off
   (*deletion*: start from the whole song, all on) or on (*insertion*: start from nothing, all
   off) in ranked order, and read the model's probability of the explained label after each step.
3. :func:`aopc` -- the area over the perturbation curve (Samek et al. 2017):
   ``AOPC_del = mean_k (f(x_0) - f(x_k))`` over the ``L + 1`` points ``k = 0 .. L`` of the deletion
   curve and ``AOPC_ins = mean_k (f(x_k) - f(x_0))`` of the insertion curve. Both are higher when
   the ranking puts the features that carry the label first.
4. :func:`faithfulness` -- both curves of one explanation and the same AOPCs for a few seeded
   random orders (the chance level of this song), all in one batched model query
   (:func:`explanation_faithfulness` for a MusicLIME ``Explanation``);
   :func:`summarise_faithfulness` -- mean and standard error over a split.
5. :func:`top_k_overlap` / :func:`seed_stability` -- how much the top ``k`` of explanations made
   with different seeds agree.

Everything takes and returns plain numpy arrays.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utils.musiclime.sampling import check_probabilities

CURVES = ("deletion", "insertion")
RANDOM_ORDERS = 3
"""Random orders averaged for the chance level of one song."""


# ---------------------------------------------------------------- 1. the model on switches
class MaskedModel:
    """The black box as a function of feature switches, as the explainer sees it.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(texts, waveforms) -> (batch, n_classes)`` probabilities, or an object with
        ``predict_masks(audio_masks, text_masks, factorization, text_features)`` (used when present).
    factorization : Factorization or None
        The song's audio components (None for a lyrics-only model in ``'lyrical'`` mode).
    text : WordFeatures or LineFeatures or None
        The song's lyric features (None in ``'audio'`` mode).
    mode : {'both', 'audio', 'lyrical'}
        Which modality's features are columns; the other one is kept intact.
    batch_size : int
        Rows per model call.

    Attributes
    ----------
    rows : int
        Rows (perturbed songs) sent to the model so far: the model calls of the methods.
    """

    def __init__(self, predict_fn: Any, factorization: Any, text: Any, mode: str = "both", batch_size: int = 250):
        if mode not in ("both", "audio", "lyrical"):
            raise ValueError(f"mode must be 'both', 'audio' or 'lyrical', got {mode!r}")
        if mode != "lyrical" and factorization is None:
            raise ValueError(f"mode {mode!r} needs a factorization (audio components)")
        if mode != "audio" and text is None:
            raise ValueError(f"mode {mode!r} needs lyric features")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.predict_fn, self.factorization, self.text, self.mode = predict_fn, factorization, text, mode
        self.batch_size = int(batch_size)
        self.n_audio_all = factorization.n_components if factorization is not None else 0
        self.n_text_all = text.n_features if text is not None else 0
        self.n_audio = self.n_audio_all if mode != "lyrical" else 0
        self.n_text = self.n_text_all if mode != "audio" else 0
        self.rows = 0
        self._n_classes: int | None = None

    @property
    def n_features(self) -> int:
        """Columns of a mask: audio components then lyric features (those of the mode)."""
        return self.n_audio + self.n_text

    @property
    def names(self) -> list[str]:
        """Feature names in column order."""
        audio = list(self.factorization.names) if self.n_audio else []
        return audio + (list(self.text.names) if self.n_text else [])

    @property
    def modalities(self) -> list[str]:
        """``'audio'`` or ``'lyrics'`` per column."""
        return ["audio"] * self.n_audio + ["lyrics"] * self.n_text

    def __call__(self, masks: Any) -> np.ndarray:
        """Probabilities ``(rows, n_classes)`` float64 for 0/1 ``masks`` of shape ``(rows, n_features)``."""
        masks = np.asarray(masks, dtype=np.float64)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have shape (rows, {self.n_features}), got {masks.shape}")
        if not np.all((masks == 0) | (masks == 1)):
            raise ValueError("masks must be 0/1 switches")
        out = [self._batch(masks[start:start + self.batch_size]) for start in range(0, len(masks), self.batch_size)]
        self.rows += len(masks)
        return np.concatenate(out) if out else np.zeros((0, self._n_classes or 0))

    def _batch(self, rows: np.ndarray) -> np.ndarray:
        batch = rows.shape[0]
        audio_masks = rows[:, :self.n_audio] if self.n_audio else np.ones((batch, self.n_audio_all))
        text_masks = rows[:, self.n_audio:] if self.n_text else np.ones((batch, self.n_text_all))
        predict_masks = getattr(self.predict_fn, "predict_masks", None)
        if callable(predict_masks):
            output = predict_masks(audio_masks, text_masks, self.factorization, self.text)
        else:
            waveforms = (np.zeros((batch, 0), dtype=np.float32) if self.factorization is None
                         else self.factorization.compose(audio_masks))
            texts = self.text.compose(text_masks) if self.text is not None else [""] * batch
            output = self.predict_fn(texts, waveforms)
        output = check_probabilities(output, batch, self._n_classes)
        self._n_classes = output.shape[1]
        return output


# ---------------------------------------------------------------- 2. curves
def ranking(weights: Any) -> np.ndarray:
    """Feature indices by weight, largest first (ties: lower index first), shape ``(n_features,)``."""
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(weights)):
        raise ValueError("weights must be finite to rank features")
    return np.lexsort((np.arange(len(weights)), -weights))


def curve_masks(order: Any, n_features: int, curve: str, steps: int | None = None) -> np.ndarray:
    """The ``steps + 1`` masks of a curve, shape ``(steps + 1, n_features)``.

    Row ``k`` has the first ``k`` features of ``order`` switched off (``'deletion'``, from all on)
    or on (``'insertion'``, from all off). ``steps`` defaults to ``n_features`` (the whole curve).
    """
    if curve not in CURVES:
        raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    if sorted(order.tolist()) != list(range(n_features)):
        raise ValueError(f"order must be a permutation of the {n_features} feature indices")
    steps = n_features if steps is None else int(steps)
    if not 1 <= steps <= n_features:
        raise ValueError(f"steps must be in [1, {n_features}], got {steps}")
    start, flip = (1.0, 0.0) if curve == "deletion" else (0.0, 1.0)
    masks = np.full((steps + 1, n_features), start)
    for k in range(1, steps + 1):
        masks[k:, order[k - 1]] = flip
    return masks


def feature_curves(model: Callable[[np.ndarray], np.ndarray], orders: Sequence[Any], label: int, n_features: int,
                   steps: int | None = None) -> dict[str, np.ndarray]:
    """Deletion and insertion curves of several orders in one batched query.

    Returns ``{'deletion': (len(orders), steps + 1), 'insertion': (len(orders), steps + 1)}``:
    the model's probability of ``label`` after each step.
    """
    blocks = [curve_masks(order, n_features, curve, steps) for curve in CURVES for order in orders]
    probabilities = np.asarray(model(np.vstack(blocks)))
    if not 0 <= label < probabilities.shape[1]:
        raise ValueError(f"label {label} out of range for {probabilities.shape[1]} classes")
    values = probabilities[:, label].reshape(len(CURVES), len(orders), -1)
    return {curve: values[i] for i, curve in enumerate(CURVES)}


def aopc(curve: Any, kind: str) -> np.ndarray:
    """Area over the perturbation curve of ``(..., steps + 1)`` curves; higher is more faithful.

    ``'deletion'``: ``mean_k (c[0] - c[k])``; ``'insertion'``: ``mean_k (c[k] - c[0])``.
    """
    curve = np.asarray(curve, dtype=np.float64)
    if kind not in CURVES:
        raise ValueError(f"kind must be one of {CURVES}, got {kind!r}")
    gain = curve[..., :1] - curve if kind == "deletion" else curve - curve[..., :1]
    return gain.mean(axis=-1)


# ---------------------------------------------------------------- 3. one explanation, a split
@dataclass
class Faithfulness:
    """Deletion / insertion curves of one explanation and its chance level.

    Attributes
    ----------
    label : int
        The explained class.
    deletion, insertion : np.ndarray, shape (steps + 1,)
        Probability of ``label`` after removing / adding the top ``k`` features, ``k = 0 .. steps``.
    deletion_aopc, insertion_aopc : float
    random_deletion_aopc, random_insertion_aopc : float
        The same AOPCs averaged over seeded random orders (NaN with none).
    model_rows : int
        Rows sent to the model for these curves.
    """

    label: int
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_aopc: float
    insertion_aopc: float
    random_deletion_aopc: float = float("nan")
    random_insertion_aopc: float = float("nan")
    model_rows: int = 0
    extra: dict = field(default_factory=dict)


def random_orders(n_features: int, count: int = RANDOM_ORDERS, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded random permutations of the feature indices."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n_features) for _ in range(count)]


def faithfulness(model: Callable[[np.ndarray], np.ndarray], weights: Any, label: int, *,
                 random_count: int = RANDOM_ORDERS, seed: int = 0, steps: int | None = None) -> Faithfulness:
    """Deletion and insertion curves of one explanation (its ``weights`` ranked) and of random orders.

    Parameters
    ----------
    model : callable
        ``masks (rows, n_features) -> (rows, n_classes)``, e.g. a :class:`MaskedModel`.
    weights : array, shape (n_features,)
        The explanation's weight per feature, in the model's column order.
    label : int
        The explained class.
    random_count : int
        Seeded random orders for the chance level (0: none).
    seed : int
        Seeds the random orders.
    steps : int, optional
        Curve length (default all features).
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    n = len(weights)
    orders = [ranking(weights), *random_orders(n, random_count, seed)]
    rows_before = getattr(model, "rows", None)
    curves = feature_curves(model, orders, label, n, steps)
    deletion_aopc, insertion_aopc = aopc(curves["deletion"], "deletion"), aopc(curves["insertion"], "insertion")
    nan = float("nan")
    return Faithfulness(int(label), curves["deletion"][0], curves["insertion"][0], float(deletion_aopc[0]),
                        float(insertion_aopc[0]),
                        float(deletion_aopc[1:].mean()) if random_count else nan,
                        float(insertion_aopc[1:].mean()) if random_count else nan,
                        model_rows=(model.rows - rows_before) if rows_before is not None
                        else 2 * len(orders) * ((steps or n) + 1))


def explanation_faithfulness(predict_fn: Any, explanation: Any, factorization: Any, text: Any, *,
                             label: int | None = None, random_count: int = RANDOM_ORDERS, seed: int = 0,
                             batch_size: int = 250, steps: int | None = None) -> Faithfulness:
    """:func:`faithfulness` of a MusicLIME :class:`~utils.musiclime.explanation.Explanation`.

    ``factorization`` and ``text`` must be what the explanation was made from (the same
    components and lyric features, e.g. the ``WordFeatures`` passed to ``explain``); ``label``
    defaults to the explanation's first label.
    """
    model = MaskedModel(predict_fn, factorization, text, mode=explanation.mode, batch_size=batch_size)
    label = explanation.labels[0] if label is None else int(label)
    weights = np.asarray(explanation.fit(label).weights, dtype=np.float64)
    if len(weights) != model.n_features or [f.name for f in explanation.features] != model.names:
        raise ValueError(f"the explanation has {len(weights)} features but the factorization and lyrics given have "
                         f"{model.n_features} (or other names): pass the components and lyric features it was made from")
    return faithfulness(model, weights, label, random_count=random_count, seed=seed, steps=steps)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (``std(ddof=1) / sqrt(n)``; NaN for one value) of finite values."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def summarise_faithfulness(results: Sequence[Faithfulness]) -> dict[str, float]:
    """Mean and standard error over a split of each AOPC, of the random baseline and of the paired
    excess over it (``*_mean``, ``*_se`` keys; ``songs``: how many)."""
    summary: dict[str, float] = {"songs": len(results)}
    for curve in CURVES:
        own = [getattr(r, f"{curve}_aopc") for r in results]
        chance = [getattr(r, f"random_{curve}_aopc") for r in results]
        for key, values in ((f"{curve}_aopc", own), (f"random_{curve}_aopc", chance),
                            (f"{curve}_aopc_over_random", np.subtract(own, chance))):
            summary[f"{key}_mean"], summary[f"{key}_se"] = mean_se(values)
    return summary


# ---------------------------------------------------------------- 4. stability
def top_k_overlap(weights_a: Any, weights_b: Any, k: int = 10) -> float:
    """Share of the top ``k`` features (by weight) two explanations have in common, in [0, 1]."""
    a, b = ranking(weights_a), ranking(weights_b)
    k = min(k, len(a))
    return len(set(a[:k].tolist()) & set(b[:k].tolist())) / k


def seed_stability(weights: Sequence[Any], k: int = 10) -> float:
    """Mean pairwise :func:`top_k_overlap` of explanations of one song made with different seeds."""
    if len(weights) < 2:
        raise ValueError("seed stability needs explanations from at least 2 seeds")
    pairs = [(i, j) for i in range(len(weights)) for j in range(i + 1, len(weights))]
    return float(np.mean([top_k_overlap(weights[i], weights[j], k) for i, j in pairs]))
