"""The three classifiers: built, trained, saved, loaded and evaluated (notebooks 05-08).

Modules:

* ``models``   -- the lyrics, audio and fusion classifiers; save / load (Hugging Face layout); fingerprint
* ``fusion``   -- the fusion classifier as a ``transformers`` model (``FusionClassifier``, ``FusionConfig``)
* ``metadata`` -- ``model.json``: the task, kind, class names and profile of a saved model, checked
* ``authors``  -- the authors' published checkpoints (``torch.save`` state dicts) loaded into our models
* ``convert``  -- command line: earlier-layout folders and the authors' checkpoints -> the saved layout
* ``inputs``   -- what the models are fed: the profile's tokenizer, the split datasets
* ``train``    -- the one training loop (resumable checkpoints) and batched prediction
* ``checkpoint`` -- the training checkpoint, written and read back as one unit; resuming checks the settings
* ``evaluate`` -- accuracy, macro-F1, confusion matrix, training curves, the results table
* ``pipeline`` -- the notebooks' steps: corpus -> tokenizer -> train -> evaluate

Other layers (MusicLIME, the command lines) use ``models``, ``inputs``, ``train`` and
``evaluate``; ``pipeline`` is for notebooks only.
"""
from utils.model_related.evaluate import (PAPER_RESULTS, classification_metrics, plot_confusion, plot_history,
                                          results_table, write_evaluation, write_results_table)
from utils.model_related.inputs import make_datasets, prepare_tokens
from utils.model_related.models import (AudioClassifier, LyricsClassifier, build_model, load_model, load_trained,
                                        model_fingerprint, save_model, trained_model_dir)
from utils.model_related.pipeline import evaluate_task_model, load_splits, prepare_corpus, train_task_model
from utils.model_related.train import predict_proba, train_model

__all__ = [
    # models
    "LyricsClassifier", "AudioClassifier", "FusionClassifier", "build_model", "save_model", "load_model",
    "load_trained", "trained_model_dir", "model_fingerprint",
    # inputs
    "prepare_tokens", "make_datasets",
    # train
    "train_model", "predict_proba",
    # evaluate
    "PAPER_RESULTS", "classification_metrics", "write_evaluation", "plot_confusion", "plot_history",
    "results_table", "write_results_table",
    # pipeline (notebook steps)
    "prepare_corpus", "load_splits", "train_task_model", "evaluate_task_model",
]


def __getattr__(name: str):
    """``FusionClassifier`` on first use: its module imports ``transformers``, which importing this package does not."""
    if name == "FusionClassifier":
        from utils.model_related.fusion import FusionClassifier

        return FusionClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
