"""The data: corpora in one schema, and the model inputs precomputed from them (notebooks 01-04).

Import what a notebook needs from here (``from utils.dataset_related import build_m4a``); the
modules behind it, one job each:

* ``synth`` -- the synthetic M4A-style corpus with planted, recorded cues (``synth_sounds``: its sounds);
* ``corpus`` -- the corpus schema and the steps every builder shares (lyrics cleaning, clips,
  filter counts, stratified split, split files);
* ``music4all`` -- M4A rebuilt from raw Music4All with the authors' genre tag rules;
* ``music4all_published`` -- the authors' published M4A release imported as published
  (``published_spectrograms``: their spectrogram batches, read safely; ``safe_pickle``: restricted
  unpickling);
* ``audioset_selection`` / ``audioset_authors`` / ``audioset_lyrics`` / ``audioset`` -- the AudioSet
  subset: which segments (ontology tree, or the authors' substring lists), the authors' recipe
  (``utils/resources/audioset_authors.json``), their lyrics, the pipeline with its downloads;
* ``net`` / ``net_clients`` -- retries, rate limits, resumable progress, checked downloads /
  the network clients (real and fake);
* ``fixtures`` / ``fixtures_audioset`` / ``fixtures_published`` -- small inputs in the real formats,
  for tests, CI and the notebooks' fixture mode;
* ``features`` -- audio loading and batched AST input features;
* ``text`` -- lyrics tokenisation (corpus-trained tokenizer, the authors' preprocessing and token file,
  token cache);
* ``extract`` -- the one feature-precompute path (``features/<id>.npy``), and the profile's tokenizer;
* ``splits`` -- reading a split and turning it into model inputs (``SongDataset``).
"""
from utils.dataset_related.audioset import build_audioset, download_segments, make_client
from utils.dataset_related.audioset import select as select_audioset_segments
from utils.dataset_related.audioset_authors import (clean_title_authors, load_authors_recipe, read_label_indices,
                                                    select_segments_authors, split_artist_song_authors)
from utils.dataset_related.audioset_lyrics import (clean_genius_lyrics, fetch_lyrics, fetch_titles, lyrics_outcome_counts,
                                                   split_artist_song)
from utils.dataset_related.audioset_selection import (TARGET_CLASSES, default_blacklist, load_ontology, read_segments,
                                                      select_segments)
from utils.dataset_related.corpus import SPLITS, BuildReport, clean_lyrics, stratified_split, write_split
from utils.dataset_related.extract import (ExtractReport, extract_features, plot_feature, read_split_records,
                                          resolve_tokenizer)
from utils.dataset_related.features import (AudioError, ast_features, clip_window, cut_clip, find_audio, load_audio,
                                           load_clip, load_features)
from utils.dataset_related.fixtures import write_audioset_fixture, write_music4all_fixture
from utils.dataset_related.fixtures_published import write_published_fixture
from utils.dataset_related.music4all import DEFAULT_RULES_PATH, build_m4a, genre_class, load_genre_rules
from utils.dataset_related.music4all_published import import_counts, import_published_split
from utils.dataset_related.net import ProgressLog, RateLimiter, RetryPolicy, run_resumable
from utils.dataset_related.net_clients import FakeClient, WebClient
from utils.dataset_related.splits import DataError, SongDataset, encode_labels, read_split, split_counts
from utils.dataset_related.synth import (AUDIO_CUES, LYRIC_CUES, CorpusSettings, generate_corpus, plot_genre_examples,
                                         read_metadata)
from utils.dataset_related.text import (TokenCache, authors_preprocess, load_tokenizer, read_token_file,
                                       train_tokenizer)

__all__ = [
    # synthetic corpus
    "AUDIO_CUES", "LYRIC_CUES", "CorpusSettings", "generate_corpus", "plot_genre_examples", "read_metadata",
    # the corpus schema
    "SPLITS", "BuildReport", "clean_lyrics", "stratified_split", "write_split",
    # Music4All
    "DEFAULT_RULES_PATH", "build_m4a", "genre_class", "load_genre_rules", "import_counts", "import_published_split",
    # AudioSet and the network
    "TARGET_CLASSES", "build_audioset", "clean_genius_lyrics", "default_blacklist", "download_segments",
    "fetch_lyrics", "fetch_titles", "load_ontology", "make_client", "read_segments", "select_segments",
    "split_artist_song", "select_audioset_segments", "clean_title_authors", "load_authors_recipe",
    "read_label_indices", "select_segments_authors", "split_artist_song_authors", "lyrics_outcome_counts",
    "FakeClient", "ProgressLog", "RateLimiter", "RetryPolicy", "WebClient", "run_resumable",
    # fixtures
    "write_audioset_fixture", "write_music4all_fixture", "write_published_fixture",
    # model inputs
    "AudioError", "ast_features", "clip_window", "cut_clip", "find_audio", "load_audio", "load_clip", "load_features",
    "ExtractReport", "extract_features", "plot_feature", "read_split_records", "resolve_tokenizer",
    "TokenCache", "authors_preprocess", "load_tokenizer", "read_token_file", "train_tokenizer",
    "DataError", "SongDataset", "encode_labels", "read_split", "split_counts",
]
