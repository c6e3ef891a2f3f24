"""MusicLIME: explain one song's prediction over audio components and lyric words.

What a notebook imports lives here; the modules behind it, one job each:

* ``separation`` -- the ``Separator`` interface, ``OracleSeparator``, ``HPSSSeparator`` and
  ``CachedSeparator`` (each track separated once, kept on disk);
* ``open_unmix`` -- ``OpenUnmixSeparator``, the paper's separator (needs ``openunmix``);
* ``factorization`` -- a song's interpretable features: audio components
  (``SourceSeparationSegments``, ``TimeSegments``) and lyrics (``WordFeatures``, ``LineFeatures``);
* ``sampling`` -- step 1: perturbation masks and the model's answers (i.i.d., antithetic, crossed);
* ``surrogate`` -- step 2: lime's weighted ridge surrogate on plain arrays;
* ``explainer`` -- ``explain``: sampling then surrogate, one ``Explanation``;
* ``explanation`` -- ``Explanation``: ranking, JSON, records, listening, lyrics HTML, figures;
* ``predict`` -- ``ModelPredictor`` / ``load_predictor``: our trained models as the black box;
* ``spectral`` -- ``SpectralComposer``: AST features of perturbed clips straight from the masks;
* ``lyric_tokens`` -- perturbed lyrics and their token ids, fast (``compose_texts``, ``PieceTokenizer``).
"""
# core: separation, factorization, explainer, explanation, predict
from utils.musiclime.explainer import explain
from utils.musiclime.explanation import MODALITIES, Explanation, Feature, SurrogateFit
from utils.musiclime.factorization import (Factorization, LineFeatures, SourceSeparationSegments, TimeSegments,
                                           WordFeatures, text_features)
from utils.musiclime.open_unmix import OpenUnmixSeparator
from utils.musiclime.predict import ModelPredictor, load_predictor
from utils.musiclime.sampling import SAMPLING, Neighbourhood, sample_crossed_neighbourhood, sample_neighbourhood
from utils.musiclime.separation import CachedSeparator, HPSSSeparator, OracleSeparator, Separator
from utils.musiclime.surrogate import fit_surrogate

__all__ = [
    # core
    "explain", "Explanation", "Feature", "SurrogateFit", "MODALITIES", "SAMPLING",
    "Factorization", "SourceSeparationSegments", "TimeSegments", "WordFeatures", "LineFeatures", "text_features",
    "Separator", "OracleSeparator", "HPSSSeparator", "OpenUnmixSeparator", "CachedSeparator",
    "ModelPredictor", "load_predictor",
    "Neighbourhood", "sample_neighbourhood", "sample_crossed_neighbourhood", "fit_surrogate",
]
