"""Step 1 of MusicLIME: perturb one song and query the model (the neighbourhood).

:func:`sample_neighbourhood` draws a uniform random 0/1 matrix (row 0 all ones, the
original song), turns each batch of rows into model inputs (waveforms composed with one
matrix product, texts with lime's ``IndexedString``), queries the black-box model and
computes each row's cosine distance to row 0.

The model is a black box ``predict_fn(texts: list[str], waveforms: np.ndarray (batch,
samples) float32) -> (batch, n_classes)`` probabilities. A model adapter may instead expose
``predict_fn.predict_masks(audio_masks, text_masks, factorization, text_features)`` (same
return), which is then called with the switch matrices of each batch (e.g. to compose
features instead of waveforms); ``audio_masks`` is ``(batch, n_components)`` and
``text_masks`` ``(batch, n_text_features)``, ones for a modality that is kept intact.

Designs (:data:`SAMPLING`): ``'iid'`` (the paper's) draws every row independently.
``'antithetic'`` (any model, same cost) draws rows in complementary pairs ``(z, 1 - z)``:
every row is still uniform, and the fit's slopes lose the noise of all pairwise interactions.
``'crossed'`` (:func:`sample_crossed_neighbourhood`) is for late-fusion models only -- models
that factor into per-modality encoders and a head, ``p = head(enc_a(audio), enc_t(text))``,
as the paper's multimodal model: it draws ``K_a`` audio masks and ``K_t`` lyric masks
(complementary pairs), runs each encoder once per mask (``K_a + K_t`` encoder passes instead
of ``2 N``) and the cheap head on (audio mask, text mask) pairs in balanced blocks
(:func:`crossed_design`). The model answers for those pairs are exact; what changes is the
design. Every other model (a single-input model, early fusion, cross-attention) must use
``'iid'`` or ``'antithetic'``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.config import MODES
from utils.musiclime.factorization import Factorization
from utils.musiclime.lyric_features import LineFeatures, WordFeatures
from utils.musiclime.separation import check_sample_rate
from utils.musiclime.surrogate import check_labels, cosine_distances

PROBABILITY_TOLERANCE = 1e-3
SAMPLING = ("iid", "antithetic", "crossed")
CROSSED_FRACTION = 10
"""Default crossed masks per modality: about ``num_samples // CROSSED_FRACTION`` (so ``K_a + K_t``
encoder passes are a tenth of the ``2 * num_samples`` of i.i.d. sampling)."""


def sample_masks(num_samples: int, num_features: int, seed: int | np.random.Generator,
                 antithetic: bool = False) -> np.ndarray:
    """Uniform random 0/1 matrix ``(num_samples, num_features)`` float64; row 0 is all ones.

    ``seed`` is an int (a fresh ``np.random.default_rng(seed)``) or a Generator.

    With ``antithetic=True`` rows 1, 2, ... come in complementary pairs ``(z, 1 - z)``
    (a fold-over design; KernelSHAP's "paired sampling"); with an even ``num_samples`` the
    last row is an unpaired draw. Every row is still a uniform random mask, so the
    surrogate estimates the same thing, but in the least-squares fit each pair cancels all
    even-order effects (every pairwise interaction among the features) from the slopes:
    only odd-order interactions are left as noise.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not antithetic:
        masks = rng.integers(0, 2, size=(num_samples, num_features)).astype(np.float64)
    else:
        masks = np.empty((num_samples, num_features))
        n_pairs = (num_samples - 1) // 2
        draws = rng.integers(0, 2, size=(n_pairs, num_features)).astype(np.float64)
        masks[1:2 * n_pairs + 1:2] = draws
        masks[2:2 * n_pairs + 2:2] = 1.0 - draws
        if 2 * n_pairs + 1 < num_samples:
            masks[-1] = rng.integers(0, 2, size=num_features)
    masks[0] = 1.0
    return masks



def check_probabilities(probabilities: Any, batch: int, n_classes: int | None = None) -> np.ndarray:
    """Validate one batch of model output: ``(batch, n_classes)``, finite, >= 0, rows summing to 1."""
    if hasattr(probabilities, "detach"):                      # a torch tensor
        probabilities = probabilities.detach().cpu().numpy()
    try:
        array = np.asarray(probabilities, dtype=np.float64)
    except Exception as error:
        raise TypeError(f"predict_fn must return a numeric array, got {type(probabilities).__name__}: "
                        f"{error}") from error
    expected = f"({batch}, {n_classes if n_classes is not None else 'n_classes'})"
    if array.ndim != 2 or array.shape[0] != batch or (n_classes is not None and array.shape[1] != n_classes):
        raise ValueError(f"predict_fn returned shape {array.shape}, expected {expected} probabilities")
    if array.shape[1] < 2:
        raise ValueError(f"predict_fn returned {array.shape[1]} class column(s); need probabilities of >= 2 classes")
    if not np.all(np.isfinite(array)):
        raise ValueError("predict_fn returned NaN or inf; it must return class probabilities")
    if np.any(array < 0):
        raise ValueError(f"predict_fn returned negative values (min {array.min():.3g}); it must return probabilities "
                         "(apply softmax to logits)")
    sums = array.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > PROBABILITY_TOLERANCE):
        raise ValueError(f"predict_fn rows must sum to 1 within {PROBABILITY_TOLERANCE}, got sums in "
                         f"[{sums.min():.4g}, {sums.max():.4g}]; apply softmax to logits")
    return array



@dataclass(frozen=True)
class Neighbourhood:
    """Perturbations of one song and the model's answers.

    Attributes
    ----------
    masks : np.ndarray, shape (num_samples, n_features)
        The surrogate's data: 0/1, row 0 all ones. Columns: audio then text in ``'both'``.
    predictions : np.ndarray, shape (num_samples, n_classes)
    distances : np.ndarray, shape (num_samples,)
        Cosine distance of each row to row 0.
    n_audio, n_text : int
        Columns per modality (0 for a modality kept intact).
    crossed_masks : (K_a, K_t) or None
        Masks per modality of a crossed neighbourhood (None for row-by-row sampling).
    groups : np.ndarray (num_samples,) or pair of them, optional
        Clusters of dependent rows for the weights' standard errors
        (:func:`utils.musiclime.uncertainty.sandwich_covariance`): the complementary pair of each
        antithetic row (:func:`antithetic_groups`), (audio pair, text pair) of each crossed row;
        None for independent rows.
    """

    masks: np.ndarray
    predictions: np.ndarray
    distances: np.ndarray
    n_audio: int
    n_text: int
    crossed_masks: tuple[int, int] | None = None
    groups: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None


def antithetic_groups(num_samples: int) -> np.ndarray:
    """Cluster id per row of :func:`sample_masks` with ``antithetic=True``: row 0 alone, rows
    ``(2p + 1, 2p + 2)`` one pair, a trailing unpaired row alone. Shape ``(num_samples,)``."""
    groups = (np.arange(num_samples) + 1) // 2
    if num_samples % 2 == 0 and num_samples > 1:     # even count: the last row is an unpaired draw
        groups[-1] = groups[-2] + 1
    return groups



def _check_inputs(predict_fn, factorization, text, mode, num_samples, batch_size, sample_rate):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    for name, value, low in (("num_samples", num_samples, 2), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if factorization is None:
        if mode != "lyrical":
            raise ValueError(f"mode {mode!r} needs a factorization (audio components)")
    else:
        if not isinstance(factorization, Factorization):
            raise TypeError("factorization must be a utils.musiclime.factorization.Factorization, "
                            f"got {type(factorization).__name__}")
        check_audio_fits(predict_fn, factorization, sample_rate)
    if mode in ("both", "lyrical"):
        if text is None:
            raise ValueError(f"mode {mode!r} needs lyrics")
        if text.n_features < 2:
            raise ValueError(f"lyrics have {text.n_features} distinct {text.unit} ({text.lyrics[:40]!r}); "
                             f"mode {mode!r} needs at least 2 (use mode='audio')")


def check_audio_fits(predict_fn: Any, factorization: Factorization, sample_rate: int | None) -> None:
    """Refuse audio the model would not see as the explanation assumes.

    The factorization must be at ``sample_rate`` and at the model's own rate (a predictor's
    ``sample_rate`` attribute, as :class:`utils.musiclime.predict.ModelPredictor` has; at least one
    of the two must be known), and no longer than the model's input (its ``clip_length``
    attribute, samples): components past the input would be cut off by the model's front end
    and get weights that mean nothing.
    """
    model_rate = getattr(predict_fn, "sample_rate", None)
    if sample_rate is None and model_rate is None:
        raise ValueError("sample_rate= (the model's sample rate in Hz) is required with a factorization")
    for name, rate in (("sample_rate=", sample_rate), ("the model's rate is ", model_rate)):
        if rate is not None and factorization.sample_rate != check_sample_rate(rate):
            raise ValueError(f"factorization is at {factorization.sample_rate} Hz but {name}{rate} Hz; "
                             "load/resample the audio at the model's rate")
    model_length = getattr(predict_fn, "clip_length", None)
    if model_length is not None and factorization.length > model_length:
        rate = factorization.sample_rate
        raise ValueError(f"factorization is {factorization.length / rate:.2f} s long but the model's input is "
                         f"{model_length / rate:g} s: components past it would get weights for audio the model "
                         "never hears; cut the clip to the model's input first "
                         "(utils.dataset_related.features.cut_clip, or the explain command's --start)")


def sample_neighbourhood(predict_fn: Callable, factorization: Factorization | None,
                         text: WordFeatures | LineFeatures | None, *, mode: str = "both",
                         num_samples: int = 1000, batch_size: int = 10,
                         seed: int | np.random.Generator = 0, sample_rate: int | None = None,
                         expected_labels: Sequence[int] | None = None, progress: bool = False,
                         antithetic: bool = False) -> Neighbourhood:
    """Perturb one song and query the model, batch by batch.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(texts, waveforms) -> (batch, n_classes)`` probabilities, or an object
        with ``predict_masks(audio_masks, text_masks, factorization, text_features)``.
    factorization : Factorization or None
        Audio components (None only in ``'lyrical'`` mode: the model then gets ``(batch, 0)``
        waveforms).
    text : WordFeatures or LineFeatures or None
        Lyric features (None only in ``'audio'`` mode: the model then gets empty texts).
    mode : {'both', 'audio', 'lyrical'}
    num_samples : int
        Rows, including the original (>= 2).
    batch_size : int
        Rows per model call; only one batch of waveforms exists at a time.
    seed : int or np.random.Generator
        Seeds the 0/1 matrix; the same seed gives the same masks.
    sample_rate : int, optional
        The model's rate (Hz); with a factorization it must equal its rate, and is required
        unless ``predict_fn`` has a ``sample_rate`` (:func:`check_audio_fits`).
    expected_labels : sequence of int, optional
        Labels that must exist; checked after the first batch so a bad label fails early.
    progress : bool
        Show a tqdm bar.
    antithetic : bool
        Rows in complementary pairs (:func:`sample_masks`); default independent rows (the paper).
    """
    _check_inputs(predict_fn, factorization, text, mode, num_samples, batch_size, sample_rate)
    n_audio, n_text = mode_columns(factorization, text, mode)
    masks = sample_masks(num_samples, n_audio + n_text, seed, antithetic=antithetic)
    predictions = query_model(predict_fn, factorization, text, masks, n_audio=n_audio, n_text=n_text,
                              batch_size=batch_size, expected_labels=expected_labels, progress=progress)
    return Neighbourhood(masks, predictions, cosine_distances(masks), n_audio, n_text,
                         groups=antithetic_groups(num_samples) if antithetic else None)


def mode_columns(factorization: Factorization | None, text: WordFeatures | LineFeatures | None,
                 mode: str) -> tuple[int, int]:
    """``(n_audio, n_text)`` surrogate columns per modality in ``mode`` (0 for a modality kept intact)."""
    n_audio = factorization.n_components if factorization is not None and mode in ("both", "audio") else 0
    n_text = text.n_features if text is not None and mode in ("both", "lyrical") else 0
    return n_audio, n_text


def query_model(predict_fn: Callable, factorization: Factorization | None, text: WordFeatures | LineFeatures | None,
                masks: np.ndarray, *, n_audio: int, n_text: int, batch_size: int = 10,
                expected_labels: Sequence[int] | None = None, progress: bool = False,
                n_classes: int | None = None) -> np.ndarray:
    """The model's checked probabilities for the rows of ``masks``, ``batch_size`` rows per call.

    ``masks`` is ``(rows, n_audio + n_text)``; a modality with 0 columns is kept intact. Inputs
    are checked by :func:`sample_neighbourhood`'s callers. ``n_classes``, when known (a later
    batch of the same neighbourhood), is enforced. Returns ``(rows, n_classes)``.
    """
    n_audio_all = factorization.n_components if factorization is not None else 0
    n_text_all = text.n_features if text is not None else 0
    num_samples = masks.shape[0]

    predict_masks = getattr(predict_fn, "predict_masks", None)
    if not callable(predict_masks) and not callable(predict_fn):
        raise TypeError(f"predict_fn must be callable or have predict_masks, got {type(predict_fn).__name__}")
    full_audio = None                                       # lyrical mode: the intact clip, composed once
    if factorization is not None and n_audio == 0:
        full_audio = factorization.compose(np.ones((1, n_audio_all)))
    original_text = text.lyrics if text is not None else ""

    predictions: list[np.ndarray] = []
    starts = range(0, num_samples, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="querying model", unit="batch")
    for start in starts:
        rows = masks[start:start + batch_size]
        batch = rows.shape[0]
        audio_masks = rows[:, :n_audio] if n_audio else np.ones((batch, n_audio_all))
        text_masks = rows[:, n_audio:] if n_text else np.ones((batch, n_text_all))
        if callable(predict_masks):
            output = predict_masks(audio_masks, text_masks, factorization, text)
        else:
            if factorization is None:
                waveforms = np.zeros((batch, 0), dtype=np.float32)
            elif full_audio is not None:
                waveforms = np.repeat(full_audio, batch, axis=0)
            else:
                waveforms = factorization.compose(audio_masks)
            texts = text.compose(text_masks) if n_text else [original_text] * batch
            output = predict_fn(texts, waveforms)
        output = check_probabilities(output, batch, n_classes)
        if n_classes is None:
            n_classes = output.shape[1]
            if expected_labels is not None:
                check_labels(expected_labels, n_classes)
        predictions.append(output)
    return np.concatenate(predictions)


def crossed_sizes(num_samples: int, crossed_masks: tuple[int, int] | None = None,
                  n_features: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """``(K_a, K_t)`` masks per modality, each rounded down to an odd number (the original plus
    complementary pairs).

    Default: ``num_samples // CROSSED_FRACTION`` each, but at least ``4 n + 1`` for a modality
    with ``n`` features (``n_features = (audio, text)``), so that its ``(K - 1) / 2`` pairs
    comfortably outnumber its columns; at N = 5000 and 40 components that is 499 each, a tenth
    of the i.i.d. encoder passes, while at small N the floor wins and the saving shrinks.
    """
    if crossed_masks is None:
        k_audio, k_text = (max(3, int(num_samples) // CROSSED_FRACTION, 4 * int(n) + 1) for n in n_features)
    else:
        try:
            k_audio, k_text = crossed_masks
        except (TypeError, ValueError):
            raise TypeError(f"crossed_masks must be a pair (K_a, K_t) of ints, got {crossed_masks!r}") from None
        for name, value in (("K_a", k_audio), ("K_t", k_text)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 3:
                raise ValueError(f"crossed_masks: {name} must be an int >= 3, got {value!r}")
    return 1 + 2 * ((int(k_audio) - 1) // 2), 1 + 2 * ((int(k_text) - 1) // 2)


def check_crossed_sizes(k_audio: int, k_text: int, n_audio: int, n_text: int) -> None:
    """Refuse masks too few to identify every weight; warn when barely enough.

    With ``P = (K - 1) / 2`` complementary pairs a modality's columns are seen in only ``P``
    (+1) directions, so ``P < n`` features leaves weights undetermined (the ridge then
    shrinks them to noise) and ``P < 2 n`` leaves them poorly conditioned.
    """
    import warnings

    for name, k, n in (("K_a (audio masks)", k_audio, n_audio), ("K_t (lyric masks)", k_text, n_text)):
        pairs = (k - 1) // 2
        if pairs < n:
            raise ValueError(f"crossed_masks: {name} = {k} gives {pairs} complementary pairs for {n} features; "
                             f"need K >= {2 * n + 1} (recommended >= {4 * n + 1}), or use sampling='iid'")
        if pairs < 2 * n:
            warnings.warn(f"crossed_masks: {name} = {k} gives {pairs} pairs for {n} features; the weights are "
                          f"poorly determined below K = {4 * n + 1}", stacklevel=3)


def crossed_design(k_audio: int, k_text: int, num_rows: int,
                   seed: int | np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which (audio mask, text mask) pairs crossed sampling evaluates: a balanced block design.

    Masks of each modality are numbered as :func:`sample_masks` with ``antithetic=True``
    makes them: 0 the original, then complementary pairs ``(2p + 1, 2p + 2)``. Row 0 is the
    pair (0, 0); every other row belongs to a *block* -- an audio pair crossed with a text
    pair, all 4 combinations. Each audio pair meets ``r`` text pairs taken in turn from a
    seeded permutation of all text pairs (so every text pair is used equally often, within
    one), with ``r`` the smallest count giving at least ``num_rows`` rows, at most all text
    pairs (the whole grid).

    Why blocks: in the ``+-1`` coding of a block's 4 rows the audio and text columns are
    orthogonal and every audio x text interaction sums to zero, so the surrogate's audio
    weights do not see the lyrics' effects (and vice versa); with complementary pairs inside
    each modality, pairwise interactions within a modality cancel too.

    Parameters
    ----------
    k_audio, k_text : int
        Masks per modality, odd (:func:`crossed_sizes`), >= 3.
    num_rows : int
        Rows wanted (>= 2); the design has ``1 + 4 * P_a * r`` rows, ``P_a = (k_audio - 1) // 2``.
    seed : int or np.random.Generator
        Seeds the text-pair permutation.

    Returns
    -------
    audio_index, text_index : np.ndarray of int64, shape (rows,)
    """
    for name, value in (("k_audio", k_audio), ("k_text", k_text)):
        if value < 3 or value % 2 == 0:
            raise ValueError(f"{name} must be odd and >= 3 (the original plus complementary pairs), got {value}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    audio_pairs, text_pairs = (k_audio - 1) // 2, (k_text - 1) // 2
    per_audio_pair = int(np.clip(-(-(int(num_rows) - 1) // (4 * audio_pairs)), 1, text_pairs))
    text_pair_of_block = np.resize(rng.permutation(text_pairs), audio_pairs * per_audio_pair)
    audio_pair_of_block = np.repeat(np.arange(audio_pairs), per_audio_pair)
    corner_audio, corner_text = np.array([1, 1, 2, 2]), np.array([1, 2, 1, 2])     # the block's 4 rows
    audio_index = (2 * audio_pair_of_block[:, None] + corner_audio).ravel()
    text_index = (2 * text_pair_of_block[:, None] + corner_text).ravel()
    return (np.concatenate([[0], audio_index]).astype(np.int64),
            np.concatenate([[0], text_index]).astype(np.int64))


def sample_crossed_neighbourhood(predict_fn: Any, factorization: Factorization, text: WordFeatures | LineFeatures, *,
                                 num_samples: int = 1000, crossed_masks: tuple[int, int] | None = None,
                                 seed: int | np.random.Generator = 0, sample_rate: int | None = None,
                                 expected_labels: Sequence[int] | None = None) -> Neighbourhood:
    """Crossed sampling for a late-fusion model (multimodal ``'both'`` mode only).

    Draws ``K_a`` audio masks and ``K_t`` lyric masks (uniform 0/1; the first of each all
    ones, the rest complementary pairs, :func:`sample_masks` with ``antithetic=True``), asks
    ``predict_fn.predict_crossed`` for the model's answers on about ``num_samples`` (audio
    mask, text mask) pairs laid out in balanced blocks (:func:`crossed_design`) -- the
    encoders run once per mask, ``K_a + K_t`` passes, and only the head runs per pair -- and
    returns those pairs as the neighbourhood: row ``r`` is ``[audio mask ; text mask]`` of
    pair ``r``, row 0 the all-ones pair, cosine distances to row 0 as usual.

    Marginally every row is still a uniform random mask, so the surrogate estimates what
    i.i.d. sampling estimates. Rows sharing a mask are not independent: the audio weights
    rest on ``K_a`` distinct audio masks and the word weights on ``K_t`` text masks; the
    design removes the other modality's effects and the pairwise interactions within a
    modality from each weight, which is what makes a tenth of the encoder passes enough
    (measured in ``python -m utils.benchmark --part crossed``).

    Valid only when the model is ``head(audio encoder(audio), text encoder(text))`` (the
    paper's fusion model): ``predict_fn`` must offer ``predict_crossed(audio_masks,
    text_masks, factorization, text, pairs=(audio_index, text_index)) -> (n, classes)``, as
    :class:`utils.musiclime.predict.ModelPredictor` does for a fusion model.

    Parameters
    ----------
    num_samples : int
        Rows of the neighbourhood wanted (pairs, including the original); the design rounds
        up to whole blocks of 4 (at most the whole grid).
    crossed_masks : (K_a, K_t), optional
        Masks per modality, rounded down to odd; default ``num_samples // 10`` each, at least
        ``4 n + 1`` for ``n`` features (:func:`crossed_sizes`). Fewer than ``2 n + 1`` is refused
        (:func:`check_crossed_sizes`).
    seed : int or np.random.Generator
        Seeds the masks and the design.
    """
    _check_inputs(predict_fn, factorization, text, "both", num_samples, 1, sample_rate)
    predict_crossed = getattr(predict_fn, "predict_crossed", None)
    if not callable(predict_crossed):
        raise TypeError("sampling='crossed' needs a late-fusion model adapter with predict_crossed(audio_masks, "
                        "text_masks, factorization, text, pairs) (e.g. utils.musiclime.predict.ModelPredictor around a "
                        f"FusionClassifier); {type(predict_fn).__name__} has none -- use sampling='iid'")
    k_audio, k_text = crossed_sizes(num_samples, crossed_masks, (factorization.n_components, text.n_features))
    check_crossed_sizes(k_audio, k_text, factorization.n_components, text.n_features)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    audio_masks = sample_masks(k_audio, factorization.n_components, rng, antithetic=True)
    text_masks = sample_masks(k_text, text.n_features, rng, antithetic=True)
    audio_index, text_index = crossed_design(k_audio, k_text, num_samples, rng)
    output = predict_crossed(audio_masks, text_masks, factorization, text, pairs=(audio_index, text_index))
    predictions = check_probabilities(output, len(audio_index))
    if expected_labels is not None:
        check_labels(expected_labels, predictions.shape[1])
    masks = np.hstack([audio_masks[audio_index], text_masks[text_index]])
    pair = lambda index: (index + 1) // 2                                   # noqa: E731  0: the original
    return Neighbourhood(masks, predictions, cosine_distances(masks), factorization.n_components, text.n_features,
                         (k_audio, k_text), groups=(pair(audio_index), pair(text_index)))
