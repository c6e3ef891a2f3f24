"""Word maps: t-SNE (seeded, perplexity from the number of points), inflections on one point, and
the word vectors behind them (utils.results.word_maps, utils.results.word_vectors).

A tiny RoBERTa (random weights, a byte-level BPE tokenizer trained here) saved with
``save_pretrained`` stands in for ``roberta-large``: the same loading code, a few kB.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils.musiclime.aggregate import measures  # noqa: E402
from utils.results import (FALLBACK_LABEL, hashing_embeddings, plot_word_map, project_2d,  # noqa: E402
                           published_word_vectors, tsne_perplexity, word_points)
from utils.results.run_figures import word_embeddings  # noqa: E402
from utils.results.word_vectors import pretrained_input_embeddings  # noqa: E402

CLASSES = ["heavy music", "hip hop"]
WEIGHTS = {0: {"work": 0.9, "working": 0.8, "Working": 0.1, "riff": 0.7, "scream": 0.6, "metal": 0.5},
           1: {"diamond": 0.9, "diamonds": 0.85, "rhyme": 0.7, "flow": 0.6, "street": 0.5, "ghetto": 0.4}}
COUNTS = {cls: {w: 1 for w in words} for cls, words in WEIGHTS.items()}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _positions(fig) -> dict[str, tuple[float, float]]:
    return {t.get_text(): tuple(map(float, t.xy)) for t in fig.axes[0].texts}


def test_tsne_same_seed_same_coordinates():
    vectors = np.random.default_rng(0).normal(size=(12, 16))
    first = project_2d(vectors, "tsne", seed=3)
    assert first.shape == (12, 2)
    assert np.array_equal(first, project_2d(vectors, "tsne", seed=3))
    assert not np.allclose(first, project_2d(vectors, "tsne", seed=4))      # the seed jitters the start
    assert not np.allclose(first, project_2d(vectors, "pca"))
    # two vectors related only to each other share a PCA point; the jittered start still parts them
    pair = np.eye(6)[[0, 1, 2, 3, 4, 5]] + 0.3 * np.eye(6)[[1, 0, 3, 2, 5, 4]]
    assert np.allclose(project_2d(pair, "pca")[0], project_2d(pair, "pca")[1])
    apart = project_2d(pair, "tsne", seed=0)
    assert np.linalg.norm(apart[0] - apart[1]) > 1e-3
    assert [tsne_perplexity(n) for n in (2, 4, 10, 91, 500)] == [1.0, 1.0, 3.0, 30.0, 30.0]
    assert project_2d(vectors[:2], "tsne").shape == (2, 2)          # perplexity below the number of points
    with pytest.raises(ValueError, match="method must be 'pca' or 'tsne', got 'umap'"):
        project_2d(vectors, "umap")


def test_inflections_share_a_point_and_keep_their_labels(tmp_path):
    table = measures(WEIGHTS, COUNTS, CLASSES)
    vectors = hashing_embeddings(["work", "riff", "scream", "metal", "diamond", "rhyme", "flow", "street", "ghetto"])
    fig = plot_word_map(table, vectors, CLASSES, top_k=5, value="I_AVG", seed=1, save_path=tmp_path / "map.png")
    where = _positions(fig)
    # 'Working' + 'working' merge by case (one label); 'work' / 'working', 'diamond' / 'diamonds' share a point
    assert sorted(where) == ["diamond", "diamonds", "flow", "metal", "rhyme", "riff", "scream", "street", "work",
                             "working"]
    assert where["work"] == where["working"] and where["diamond"] == where["diamonds"]
    assert len(set(where.values())) == 8
    again = _positions(plot_word_map(table, vectors, CLASSES, top_k=5, value="I_AVG", seed=1))
    assert again == where                                             # same seed, same map
    # without merging inflections every form needs its own vector and gets its own point
    forms = hashing_embeddings(list(where))
    apart = _positions(plot_word_map(table, forms, CLASSES, top_k=5, value="I_AVG", merge_inflections=False))
    assert apart["work"] != apart["working"]
    assert np.array_equal(word_points(["diamonds", "Diamond"], {"diamond": np.ones(3)}), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no embedding for lemmas \\['diamond'\\]"):
        word_points(["diamonds", "work"], {"work": np.ones(3)})


def test_fallback_vectors_are_labelled(tmp_path):
    found = published_word_vectors(["Working", "work", "diamonds"], source=tmp_path / "no-checkpoint")
    assert found.fallback and found.label == FALLBACK_LABEL
    assert list(found.vectors) == ["work", "diamond"]                 # keyed by lemma
    table = measures(WEIGHTS, COUNTS, CLASSES)
    fig = plot_word_map(table, found.vectors | hashing_embeddings(["riff", "scream", "metal", "rhyme", "flow"]),
                        CLASSES, top_k=4, value="I_AVG", vectors_label=found.label)
    assert fig.axes[0].get_title() == f"({FALLBACK_LABEL})"
    fig = plot_word_map(table, hashing_embeddings(["work", "riff", "diamond", "rhyme"]), None, top_k=2,
                        value="I_AVG", vectors_label=FALLBACK_LABEL)
    assert fig.axes[0].get_title() == f"2D Visualization of Word Embeddings by Class Importance\n({FALLBACK_LABEL})"


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """A 2-layer RoBERTa with random weights and its tokenizer, saved like a hub checkpoint."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    from utils.dataset_related.text import train_tokenizer

    folder = tmp_path_factory.mktemp("tiny-roberta")
    texts = ["work working worked diamond diamonds street ghetto flow rhyme riff scream metal"] * 20
    tokenizer = train_tokenizer(texts, folder, vocab_size=300)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40)
    model = RobertaModel(config)
    model.save_pretrained(folder)                                     # model.safetensors
    return folder, model, tokenizer


def test_roberta_input_embeddings_by_lemma(tiny_roberta):
    folder, model, tokenizer = tiny_roberta
    matrix = model.get_input_embeddings().weight.detach().numpy()
    assert np.array_equal(pretrained_input_embeddings(folder), matrix)
    found = published_word_vectors(["Working", "diamonds", "work"], source=folder)
    assert not found.fallback and found.label == f"{folder.name} input embeddings"
    assert list(found.vectors) == ["work", "diamond"]
    ids = tokenizer(" diamond", add_special_tokens=False)["input_ids"]
    assert np.allclose(found.vectors["diamond"], matrix[ids].mean(axis=0))
    # our own models: the same lookup through the model object, keyed by lemma
    ours = word_embeddings(model, tokenizer, ["Working", "diamonds"])
    assert list(ours) == ["work", "diamond"] and np.allclose(ours["diamond"], found.vectors["diamond"])
    assert list(word_embeddings(model, tokenizer, ["diamonds"], by_lemma=False)) == ["diamonds"]
