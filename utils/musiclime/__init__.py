"""MusicLIME: explain one song's prediction over audio components and lyric words.

What a notebook imports lives here; the modules behind it, one job each:

* ``separation`` -- the ``Separator`` interface, ``OracleSeparator``, ``HPSSSeparator`` and
  ``CachedSeparator`` (each track separated once, kept on disk);
* ``open_unmix`` -- ``OpenUnmixSeparator``, the paper's separator (needs ``openunmix``);
* ``factorization`` -- a song's audio components (``SourceSeparationSegments``, ``TimeSegments``);
* ``lyric_features`` -- its lyric features (``WordFeatures``, ``LineFeatures``), limited to the
  model's token window;
* ``sampling`` -- step 1: perturbation masks and the model's answers (i.i.d., antithetic, crossed);
* ``surrogate`` -- step 2: lime's weighted ridge surrogate on plain arrays (kernel option
  ``'paper'`` / ``'locality'``);
* ``surrogate_fit`` -- ``SurrogateFit``, one label's surrogate (weights, intervals) and its JSON form;
* ``uncertainty`` -- how far to trust its weights: sandwich standard errors, intervals, top-k probabilities;
* ``adaptive`` -- ``num_samples='auto'``: antithetic pairs until the top k is stable (``AutoTarget``);
* ``explainer`` -- ``explain``: sampling then surrogate, one ``Explanation``;
* ``explanation`` -- ``Explanation``: ranking, JSON, records, listening, lyrics HTML, figures;
* ``predict`` -- ``ModelPredictor`` / ``load_predictor``: our trained models as the black box;
* ``spectral`` -- ``SpectralComposer``: AST features of perturbed clips straight from the masks;
* ``lyric_tokens`` -- perturbed lyrics and their token ids, fast (``compose_texts``, ``PieceTokenizer``).

Runs (notebooks 09 and 10, the explain command, global runs):

* ``song`` -- one song -> its clip (``cut_clip``, the one clip policy) -> components -> an explanation;
* ``sanity`` -- the planted-cue check of local explanations;
* ``planted`` -- the synthetic corpus's planted cues and where they land (local and global);
* ``aggregate`` -- global measures W, C, I_LIME, I_AVG, I_H and modality / stem shares;
* ``bootstrap`` -- bootstrap intervals over songs of I_AVG, I_LIME, I_H; which cells are uncertain;
* ``faithfulness`` -- deletion / insertion curves, AOPC, a random baseline, stability across seeds;
* ``baselines`` and ``compare`` -- KernelSHAP (captum), occlusion, random; the comparison table
  (command: ``python -m utils.compare``);
* ``records`` -- the append-only record store of a global run, merging, records -> measures;
* ``global_explain`` -- a global run: every song of a split, resumable and sharded;
* ``launch`` -- a global run under torchrun / accelerate / a Slurm array: one shard per process, merged;
* ``prefetch`` -- the next song loaded and separated in a background thread during this one;
* ``report`` -- one explanation as a self-contained HTML page;
* ``trust_benchmark`` -- ``python -m utils.musiclime.trust_benchmark``: auto N, interval calibration, kernel.
"""
# core: separation, factorization, explainer, explanation, predict
from utils.musiclime.adaptive import AutoTarget
from utils.musiclime.explainer import explain
from utils.musiclime.explanation import MODES, Explanation, Feature, SurrogateFit
from utils.musiclime.factorization import Factorization, SourceSeparationSegments, TimeSegments
from utils.musiclime.lyric_features import LineFeatures, WordFeatures, text_features
from utils.musiclime.open_unmix import OpenUnmixSeparator
from utils.musiclime.predict import ModelPredictor, load_predictor
from utils.musiclime.sampling import SAMPLING, Neighbourhood, sample_crossed_neighbourhood, sample_neighbourhood
from utils.musiclime.separation import CachedSeparator, HPSSSeparator, OracleSeparator, Separator
from utils.musiclime.surrogate import KERNELS, fit_surrogate

__all__ = [
    # core
    "explain", "Explanation", "Feature", "SurrogateFit", "MODES", "SAMPLING", "KERNELS", "AutoTarget",
    "Factorization", "SourceSeparationSegments", "TimeSegments", "WordFeatures", "LineFeatures", "text_features",
    "Separator", "OracleSeparator", "HPSSSeparator", "OpenUnmixSeparator", "CachedSeparator",
    "ModelPredictor", "load_predictor",
    "Neighbourhood", "sample_neighbourhood", "sample_crossed_neighbourhood", "fit_surrogate",
]


# runs: song, sanity, aggregate
# (and planted, records, global_explain)
from utils.musiclime.aggregate import (accumulate, measures, merge_word_variants, modality_shares, read_measures,
                                       stem_shares, write_measures)
from utils.musiclime.global_explain import KIND_MODES, global_explain, run_global, select_songs
from utils.musiclime.planted import (compare_planted, cue_rank, describe_cues, describe_planted, example_songs,
                                     planted_cue_summary, planted_cues, song_planted_summary)
from utils.musiclime.records import aggregate_records, load_records, merge_records
from utils.musiclime.word_forms import WORD_MERGES, lemma_key, merge_table_words
from utils.musiclime.bootstrap import bootstrap_measures, too_few_songs, uncertain
from utils.musiclime.faithfulness import (MaskedModel, aopc, explanation_faithfulness, faithfulness, seed_stability,
                                          summarise_faithfulness)
from utils.musiclime.compare import METHODS, Method, UnsupportedExplainer, compare_song, comparison_table
from utils.musiclime.sanity import CUE_CHECKS, hit_rates, lyrics_ignored, plot_hit_rates, run_cue_checks
from utils.musiclime.song import (SEPARATORS, SongClip, compare_sampling, explain_song,
                                  load_song_clip, make_separator, song_factorization, write_explanation)

__all__ += [
    # song
    "SEPARATORS", "SongClip", "load_song_clip", "make_separator", "song_factorization",
    "explain_song", "compare_sampling", "write_explanation",
    # sanity and planted
    "CUE_CHECKS", "run_cue_checks", "hit_rates", "lyrics_ignored", "plot_hit_rates", "cue_rank", "describe_cues",
    "example_songs", "planted_cues", "planted_cue_summary", "song_planted_summary", "compare_planted",
    "describe_planted",
    # aggregate, records, global_explain
    "accumulate", "measures", "merge_word_variants", "modality_shares", "stem_shares", "write_measures",
    "read_measures", "load_records", "merge_records", "aggregate_records", "KIND_MODES", "select_songs",
    "run_global", "global_explain",
    # word_forms
    "WORD_MERGES", "lemma_key", "merge_table_words",
    # bootstrap, faithfulness, compare
    "bootstrap_measures", "uncertain", "too_few_songs", "MaskedModel", "aopc", "faithfulness", "explanation_faithfulness",
    "seed_stability",
    "summarise_faithfulness", "METHODS", "Method", "UnsupportedExplainer", "compare_song", "comparison_table",
]
