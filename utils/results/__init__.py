"""The figures: what a notebook user imports to draw global explanations and the paper's figures.

Modules:

* ``figures`` -- heatmaps, bars and share bars from a measures table; :func:`regenerate_paper_figures`;
* ``word_maps`` -- lyric words placed by their embeddings, marker and colour = class;
* ``published`` -- the authors' published W / C pickles, unpickled safely, as measures tables;
* ``published_pickle`` -- the restricted unpickler and the size / structure / value checks behind it;
* ``run_figures`` -- classes and word embeddings for the figures of our own global runs;
* ``word_vectors`` -- word vectors by lemma for the word maps (RoBERTa input embeddings, or a
  labelled fallback);
* ``figure_pairs`` -- which regenerated figure matches which published one, exactly or not.

Every ``plot_*`` takes ``save_path`` and saves through :func:`utils.plotting.save_figure`.
"""
from utils.musiclime.aggregate import modality_shares, stem_shares  # the numbers the share bars draw
from utils.results.figures import (PAPER_HEATMAP_STEMS, audio_matrix, heatmap_matrix, plot_audio_heatmap,
                                   plot_heatmap_and_word_bars, plot_modality_shares, plot_stem_shares,
                                   plot_top_features, regenerate_paper_figures, resolve_class, top_features)
from utils.results.figure_pairs import (APPROXIMATE, EXACT, FIGURES_URL_PATTERN, MULTIMODAL_SETS, MultimodalFigure,
                                         PaperFigure, figure_table, flat_name, multimodal_figures, paper_figures,
                                         plot_side_by_side, resolve_published_figure)
from utils.results.published import (PUBLISHED_PAIRS, SOURCE_URL_PATTERN, TASK_CLASSES, PublishedPair,
                                     UnsafePickleError, fetch_published, load_published, load_published_pair,
                                     load_published_table, resolve_published_file)
from utils.results.run_figures import pick_class, pick_classes, present_classes, word_embeddings
from utils.results.word_maps import (hashing_embeddings, plot_word_map, project_2d, select_class_words,
                                     tsne_perplexity, word_points)
from utils.results.word_vectors import FALLBACK_LABEL, WordVectors, published_word_vectors

__all__ = [
    # figures
    "PAPER_HEATMAP_STEMS", "audio_matrix", "heatmap_matrix", "plot_audio_heatmap", "plot_heatmap_and_word_bars",
    "plot_modality_shares", "plot_stem_shares", "plot_top_features", "regenerate_paper_figures",
    "resolve_class", "top_features", "modality_shares", "stem_shares",
    # word_maps
    "hashing_embeddings", "plot_word_map", "project_2d", "select_class_words", "tsne_perplexity", "word_points",
    # word_vectors
    "FALLBACK_LABEL", "WordVectors", "published_word_vectors",
    # published
    "PUBLISHED_PAIRS", "SOURCE_URL_PATTERN", "TASK_CLASSES", "PublishedPair", "UnsafePickleError",
    "fetch_published", "load_published", "load_published_pair", "load_published_table",
    "resolve_published_file",
    # figure_pairs
    "APPROXIMATE", "EXACT", "FIGURES_URL_PATTERN", "MULTIMODAL_SETS", "MultimodalFigure", "PaperFigure",
    "figure_table", "flat_name", "multimodal_figures", "paper_figures", "plot_side_by_side",
    "resolve_published_figure",
    # run_figures
    "pick_class", "pick_classes", "present_classes", "word_embeddings",
]
