"""MusicLIME: LIME over audio components and lyric words of one song, as the authors did it.

Two steps with lime's seam between them (``LimeBase.explain_instance_with_data``):

1. :mod:`utils.musiclime.sampling` -- perturb the song and query the black-box model: a
   0/1 matrix over the features (row 0 all ones, the original), the model's probabilities
   for its rows and each row's cosine distance to row 0
   (:class:`~utils.musiclime.sampling.Neighbourhood`).
2. :mod:`utils.musiclime.surrogate` -- plain arrays in, lime's weighted ridge surrogate out,
   one per explained label (:func:`~utils.musiclime.surrogate.fit_surrogate`).

:func:`explain` does both and returns a :class:`utils.musiclime.explanation.Explanation`.

Modes (``mode``): ``'both'`` -- columns are the audio components then the words;
``'audio'`` -- audio columns only, lyrics intact; ``'lyrical'`` -- word columns only, audio
intact (all components composed).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from utils.musiclime.adaptive import AutoTarget, sample_until_stable
from utils.musiclime.explanation import Explanation, Feature
from utils.musiclime.factorization import Factorization
from utils.musiclime.lyric_features import LineFeatures, WordFeatures, text_features as make_text_features
from utils.musiclime.sampling import SAMPLING, Neighbourhood, sample_crossed_neighbourhood, sample_neighbourhood
from utils.musiclime.surrogate import (KERNEL_WIDTH, KERNELS, NUM_FEATURES, check_kernel_width, check_labels,
                                       fit_surrogate, kernel_distances)
from utils.musiclime.uncertainty import TOP_K


def _text_features(lyrics: Any, unit: str, predict_fn: Any, mode: str,
                   words_past_window: str) -> WordFeatures | LineFeatures | None:
    """Lyric features; words (lines) past the model's token window are left out unless ``'keep'``."""
    if words_past_window not in ("exclude", "keep"):
        raise ValueError(f"words_past_window must be 'exclude' or 'keep', got {words_past_window!r}")
    if lyrics is None or isinstance(lyrics, (WordFeatures, LineFeatures)):
        return lyrics
    if not isinstance(lyrics, str):
        raise TypeError(f"lyrics must be a str, WordFeatures/LineFeatures or None, got {type(lyrics).__name__}")
    window = getattr(predict_fn, "visible_chars", None)
    visible = window(lyrics) if callable(window) and mode != "audio" else None
    features = make_text_features(lyrics, unit, visible)
    if features.excluded:
        kept = "left out of the features (kept intact)" if words_past_window == "exclude" else "kept as features"
        warnings.warn(f"{len(features.excluded)} distinct {unit} of the lyrics lie past the model's token window "
                      f"(it reads the first {visible} of {len(lyrics)} characters) and are never seen by it, e.g. "
                      f"{features.excluded[:5]}; they are {kept} (words_past_window=...)", UserWarning, stacklevel=3)
        if words_past_window == "keep":
            features = make_text_features(lyrics, unit)
    return features


def _check_sizes(factorization, text, mode: str, num_samples: int, kernel_width: float) -> None:
    """Refuse a kernel that weights nothing; warn when rows are fewer than the surrogate's columns."""
    check_kernel_width(kernel_width)                  # before sampling, not after it
    columns = (factorization.n_components if factorization is not None and mode != "lyrical" else 0) + \
        (text.n_features if text is not None and mode != "audio" else 0)
    if isinstance(num_samples, (int, np.integer)) and not isinstance(num_samples, bool) and num_samples < columns:
        warnings.warn(f"num_samples={num_samples} rows for {columns} features: the surrogate has more unknowns than "
                      "equations, and its weights are mostly the ridge penalty's; use num_samples well above "
                      f"{columns}", UserWarning, stacklevel=3)


def _check_label_options(labels, top_labels, sampling: str, class_names) -> None:
    if class_names is not None and labels is not None:
        check_labels(labels, len(class_names))
    if top_labels is not None and (isinstance(top_labels, bool) or not isinstance(top_labels, (int, np.integer))
                                   or top_labels < 1):
        raise ValueError(f"top_labels must be a positive int, got {top_labels!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")


def _sample(predict_fn, factorization, text, *, mode: str, sampling: str, crossed_masks, expected,
            **options) -> Neighbourhood:
    """The neighbourhood by the chosen design (``options``: num_samples, batch_size, seed, sample_rate, progress)."""
    if sampling != "crossed":
        return sample_neighbourhood(predict_fn, factorization, text, mode=mode, expected_labels=expected,
                                    antithetic=sampling == "antithetic", **options)
    if mode != "both":
        raise ValueError(f"sampling='crossed' crosses audio and lyric masks, so it needs mode='both' (got "
                         f"{mode!r}; in one-modality modes the intact modality is already encoded once)")
    if factorization is None or text is None:
        raise ValueError("sampling='crossed' needs both a factorization and lyrics")
    return sample_crossed_neighbourhood(predict_fn, factorization, text, num_samples=options["num_samples"],
                                        crossed_masks=crossed_masks, seed=options["seed"],
                                        sample_rate=options["sample_rate"], expected_labels=expected)


def _chosen_labels(original: np.ndarray, labels, top_labels, class_names) -> list[int]:
    """The labels to explain: ``top_labels`` most probable, ``labels``, or the predicted class."""
    n_classes = original.shape[0]
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names has {len(class_names)} names but the model returned {n_classes} classes")
    if top_labels is not None:
        if top_labels > n_classes:
            raise ValueError(f"top_labels={top_labels} exceeds the model's {n_classes} classes")
        return [int(x) for x in np.argsort(original)[-top_labels:][::-1]]
    if labels is None:
        return [int(np.argmax(original))]
    return check_labels(labels, n_classes)


def _settings(factorization, neighbourhood: Neighbourhood, *, num_samples, batch_size, seed, kernel_width,
              num_features, feature_selection, sampling, kernel="paper", auto_target=None) -> dict:
    """How the explanation was made, as stored in ``Explanation.settings`` (and compared by records).

    Keys added after the paper's settings (``sampling``, ``kernel``) are stored only when they
    differ from the paper's (records fill in the defaults, :data:`utils.musiclime.records.SETTINGS_DEFAULTS`).
    """
    settings = {
        "num_samples": "auto" if auto_target is not None else int(num_samples), "batch_size": int(batch_size), "seed": int(seed),
        "kernel_width": float(kernel_width), "num_features": int(num_features),
        "feature_selection": feature_selection, "distance": "cosine",
        "sample_rate": None if factorization is None else int(factorization.sample_rate),
        "audio_length": None if factorization is None else int(factorization.length),
        "num_segments": getattr(factorization, "num_segments", None),
        "factorization": None if factorization is None else type(factorization).__name__,
        "separator": getattr(factorization, "separator_name", None),
    }
    if sampling != "iid":   # i.i.d. settings stay as they were (records compare settings)
        settings["sampling"] = sampling
    if sampling == "crossed":
        settings["crossed_masks"] = list(neighbourhood.crossed_masks)
        settings["num_samples"] = int(neighbourhood.masks.shape[0])
    if kernel != "paper":
        settings["kernel"] = kernel
    if auto_target is not None:
        settings["auto_target"] = auto_target.as_dict()
    return settings


def _check_auto(num_samples, auto_target, sampling: str) -> AutoTarget | None:
    """The target of ``num_samples='auto'`` (None for a fixed size); refuses what auto cannot do."""
    if isinstance(num_samples, str):
        if num_samples != "auto":
            raise ValueError(f"num_samples must be an int or 'auto', got {num_samples!r}")
        if sampling == "crossed":
            raise ValueError("num_samples='auto' adds antithetic row pairs batch by batch; crossed sampling fixes its "
                             "masks up front, so it needs a fixed num_samples (or use sampling='antithetic')")
        if auto_target is not None and not isinstance(auto_target, AutoTarget):
            raise TypeError(f"auto_target must be an AutoTarget, got {type(auto_target).__name__}")
        return auto_target or AutoTarget()
    if auto_target is not None:
        raise ValueError("auto_target is only used with num_samples='auto'")
    return None


def _features(factorization, text, neighbourhood: Neighbourhood) -> list[Feature]:
    features = []
    if neighbourhood.n_audio:
        for c in factorization.components:
            features.append(Feature(c.index, c.name, "audio", c.stem, c.segment, None, c.start_seconds, c.end_seconds))
    if neighbourhood.n_text:
        for j, name in enumerate(text.names):
            features.append(Feature(neighbourhood.n_audio + j, name, "lyrics", text=name))
    return features


def explain(predict_fn: Callable, factorization: Factorization | None,
            lyrics: str | WordFeatures | LineFeatures | None, *, sample_rate: int | None = None,
            mode: str = "both", labels: Sequence[int] | None = None, top_labels: int | None = None,
            num_samples: int = 1000, batch_size: int = 10, seed: int = 0,
            kernel_width: float = KERNEL_WIDTH, num_features: int = NUM_FEATURES, feature_selection: str = "auto",
            text_unit: str = "words", class_names: Sequence[str] | None = None, progress: bool = False,
            sampling: str = "iid", crossed_masks: tuple[int, int] | None = None,
            words_past_window: str = "exclude", kernel: str = "paper", top_k: int = TOP_K,
            auto_target: AutoTarget | None = None) -> Explanation:
    """Explain one song's prediction with MusicLIME.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(texts: list[str], waveforms: (batch, samples) float32) -> (batch,
        n_classes)`` probabilities (or an object with ``predict_masks``, see module doc).
    factorization : Factorization or None
        The song's audio components (e.g. ``SourceSeparationSegments``); None only in
        ``'lyrical'`` mode for a lyrics-only model.
    lyrics : str or WordFeatures or LineFeatures or None
        The song's lyrics; None only in ``'audio'`` mode.
    sample_rate : int, optional
        The model's sample rate (Hz); required with a factorization, which must be at this rate.
    mode : {'both', 'audio', 'lyrical'}
    labels : sequence of int, optional
        Classes to explain; default the predicted class (argmax of the original), as the
        paper's global runs.
    top_labels : int, optional
        Explain the ``top_labels`` most probable classes instead (overrides ``labels``, as lime).
    num_samples : int or 'auto'
        Neighbourhood size including the original (paper: 1000 default, 5000 multimodal global
        runs). ``'auto'``: antithetic row pairs, batch by batch, until the top-``top_k`` features
        are stable (``auto_target``; :func:`utils.musiclime.adaptive.sample_until_stable`); the
        explanation's ``adaptive`` says how many rows it took and whether the target was met.
        Auto always samples complementary pairs (``settings['sampling']`` is ``'antithetic'``;
        ``sampling`` must be ``'iid'``, the default, or ``'antithetic'``).
    batch_size : int
        Rows per model call.
    seed : int
        Seeds the perturbations and the regressors: same seed, bit-identical explanation.
    kernel_width, num_features, feature_selection
        lime's surrogate settings (paper: 25, 100000, 'auto').
    text_unit : {'words', 'lines'}
        Lyric features when ``lyrics`` is a str.
    class_names : sequence of str, optional
        For display; its length must match the model's classes.
    progress : bool
        Show a tqdm bar while querying the model.
    sampling : {'iid', 'antithetic', 'crossed'}
        ``'iid'`` (default): independent rows, as the paper. ``'antithetic'``: any model,
        same cost, rows in complementary pairs (:func:`utils.musiclime.sampling.sample_masks`),
        which removes the pairwise interactions from the weights' noise. ``'crossed'``: only
        for a late-fusion model in ``'both'`` mode
        (:func:`utils.musiclime.sampling.sample_crossed_neighbourhood`): ``K_a`` audio and
        ``K_t`` lyric masks, each encoder once per mask, the head on about ``num_samples``
        pairs in balanced blocks; ``batch_size`` is then unused.
    crossed_masks : (K_a, K_t), optional
        Crossed sampling's masks per modality (default ``num_samples // 10`` each, at least
        ``4 n + 1`` for a modality with ``n`` features, made odd).
    words_past_window : {'exclude', 'keep'}
        Lyric words (lines) wholly past the model's token window (``predict_fn.visible_chars``,
        as :class:`utils.musiclime.predict.ModelPredictor` has) are never seen by the model:
        by default they are left out of the features and kept intact in every row, with a
        warning; ``'keep'`` keeps them as features (warning too).

    kernel : {'paper', 'locality'}
        ``'paper'`` (default): the authors' plain cosine distance with width 25, a flat kernel.
        ``'locality'``: distance x 100 as lime's text explainer, so rows nearer the original
        weigh more (:data:`utils.musiclime.surrogate.DISTANCE_SCALES`); stored in the settings.
    top_k : int
        The ``k`` of every fit's top-k probabilities and stability (default 10).
    auto_target : AutoTarget, optional
        Stability target, row cap and batch of ``num_samples='auto'`` (default ``AutoTarget()``:
        0.95, 20,000 rows, 500 rows a batch).

    Every fit carries standard errors, 95 % intervals and top-k probabilities of its weights
    (:mod:`utils.musiclime.uncertainty`); a label whose probability never changes is warned
    about and gets zero weights with zero-width intervals.

    Refused: a factorization at another rate than the model's or longer than its input
    (:func:`utils.musiclime.sampling.check_audio_fits`), ``kernel_width <= 0``. Warned: fewer
    rows than features.

    Returns
    -------
    Explanation
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    text = _text_features(lyrics, text_unit, predict_fn, mode, words_past_window)
    _check_label_options(labels, top_labels, sampling, class_names)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    target = _check_auto(num_samples, auto_target, sampling)
    _check_sizes(factorization, text, mode, num_samples, kernel_width)
    expected = None if top_labels is not None else labels

    def fit_labels(neighbourhood: Neighbourhood) -> dict:
        chosen = _chosen_labels(neighbourhood.predictions[0], labels, top_labels, class_names)
        distances = kernel_distances(neighbourhood.distances, kernel)
        return {label: fit_surrogate(neighbourhood.masks, neighbourhood.predictions, distances, label,
                                     kernel_width=kernel_width, num_features=num_features,
                                     feature_selection=feature_selection, random_state=seed,
                                     groups=neighbourhood.groups, top_k=top_k)
                for label in chosen}

    adaptive = None
    if target is not None:
        neighbourhood, fits, adaptive = sample_until_stable(
            predict_fn, factorization, text, fit_labels, target=target, top_k=top_k, mode=mode,
            batch_size=batch_size, seed=seed, sample_rate=sample_rate, expected_labels=expected, progress=progress)
        sampling = "antithetic"
    else:
        neighbourhood = _sample(predict_fn, factorization, text, mode=mode, sampling=sampling,
                                crossed_masks=crossed_masks, expected=expected, num_samples=num_samples,
                                batch_size=batch_size, seed=seed, sample_rate=sample_rate, progress=progress)
        fits = fit_labels(neighbourhood)
    original = neighbourhood.predictions[0]
    chosen = list(fits)
    settings = _settings(factorization, neighbourhood, num_samples=num_samples, batch_size=batch_size, seed=seed,
                         kernel_width=kernel_width, num_features=num_features,
                         feature_selection=feature_selection, sampling=sampling, kernel=kernel, auto_target=target)
    return Explanation(_features(factorization, text, neighbourhood), fits, original, mode=mode,
                       lyrics=None if text is None else text.lyrics,
                       text_unit=text.unit if text is not None else text_unit,
                       class_names=None if class_names is None else list(class_names), settings=settings,
                       top_labels=chosen if top_labels is not None else None,
                       factorization=factorization if neighbourhood.n_audio else None, adaptive=adaptive)
