"""Plain configuration objects: class lists, the emotion rule, and the profiles.

The profiles share one code path:

* ``paper`` -- the authors' setup: AST from ``MIT/ast-finetuned-audioset-10-10-0.4593`` fed
  with spectrograms at 44.1 kHz, as the authors computed them
  (``ASTFeatureExtractor(sampling_rate=44100)`` with torchaudio: Kaldi frames of 25 ms / 10 ms
  = 1102 / 441 samples, 128 mel bins up to 22.05 kHz, 1024 frames), ``roberta-large``,
  Open-Unmix and the segments at 44.1 kHz too, 10.2551 s clips (the shortest that fill the
  1024 frames in 10 equal segments), GPU.
* ``paper16k`` -- the same models at the AST checkpoint's own 16 kHz (its AudioSet front end;
  10.24 s clips), for training from the checkpoint at its native rate.
* ``tiny`` (the embedded default) -- the same model classes with small configs initialised
  from scratch, a tokenizer trained on the synthetic corpus, 4 s clips at 16 kHz and 32 mel
  bins; CPU.

Every path-like field may point at a local directory of saved weights, so a profile loads
without network when the weights are on disk.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------- classes and names
GENRES: tuple[str, ...] = (
    "alternative rock", "electronic", "folk", "heavy music", "hip hop",
    "pop", "punk", "rhythm music", "rock",
)
"""The 9 M4A genre classes, in sklearn ``LabelEncoder`` (alphabetical) order as the authors used."""

EMOTIONS: tuple[str, ...] = (
    "Angry", "Calm", "Depressed", "Excited", "Happy", "Neutral", "Relaxed", "Sad", "Tense",
)
"""The 9 emotion classes, alphabetical (``LabelEncoder`` order)."""

AUDIOSET_GENRES: tuple[str, ...] = (
    "electronic", "folk", "heavy music", "hip hop", "pop", "rhythm music", "rock",
)

STEMS: tuple[str, ...] = ("vocals", "drums", "bass", "other")
"""Open-Unmix stem order; audio component index = segment * len(STEMS) + stem index."""

TASKS: dict[str, tuple[str, ...]] = {"genre": GENRES, "emotion": EMOTIONS}
"""Class names per task; class index ``i`` is ``TASKS[task][i]``."""
LABEL_COLUMNS: dict[str, str] = {"genre": "primary_short", "emotion": "emotion"}
"""The split-file column that holds each task's label."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The corpus splits, one ``<corpus>/<split>.jsonl`` file each."""
MODEL_KINDS: tuple[str, ...] = ("lyrics", "audio", "multimodal")
"""The three classifiers (:mod:`utils.model_related.models`)."""
MODES: tuple[str, ...] = ("both", "audio", "lyrical")
"""Explainer modes: which components MusicLIME perturbs (audio and lyrics, audio only, lyrics only)."""
KIND_MODES: dict[str, tuple[str, ...]] = {"multimodal": MODES, "audio": ("audio",), "lyrics": ("lyrical",)}
"""The explainer modes each model kind supports (a unimodal model is explained on its own input)."""
SEPARATORS: tuple[str, ...] = ("oracle", "hpss", "openunmix")
"""Source separators: the synthetic corpus's true stems, HPSS, Open-Unmix (see ``musiclime/separation``)."""

# The paper's 3x3 valence/energy grid (rows: valence high->low, columns: energy high->low).
_EMOTION_GRID = (
    ("Excited", "Happy", "Relaxed"),
    ("Tense", "Neutral", "Calm"),
    ("Angry", "Sad", "Depressed"),
)
LOW, HIGH = 0.35, 0.65


def _band(value: float, name: str) -> int:
    """0 for ``> 0.65`` (strict), 2 for ``< 0.35`` (strict), 1 otherwise."""
    if value is None or not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if value > HIGH:
        return 0
    if value < LOW:
        return 2
    return 1


def emotion_from_valence_energy(valence: float, energy: float) -> str:
    """Map Spotify valence and energy (both in [0, 1]) to one of the 9 emotions.

    Thresholds 0.35 / 0.65 as in the paper: ``> 0.65`` and ``< 0.35`` are strict, the rest
    is the middle band.
    """
    return _EMOTION_GRID[_band(valence, "valence")][_band(energy, "energy")]


def component_name(stem: str, segment: int) -> str:
    """Audio feature name as in the paper: stem name + segment index (``'vocals0'``)."""
    return f"{stem}{segment}"


# ---------------------------------------------------------------- profiles
@dataclass
class AudioConfig:
    sample_rate: int = 44_100          # Hz: the authors' rate (features, separation, segments)
    # seconds the model sees: 452250 samples at 44.1 kHz (10.2551 s), the shortest clip that fills
    # the 1024 frames (1102 + 1023 * 441 samples) and splits into 10 equal segments with no remainder
    clip_seconds: float = 452_250 / 44_100
    num_mel_bins: int = 128
    max_length: int = 1024             # spectrogram frames (10 ms hop)
    feature_mean: float = -4.2677393   # ASTFeatureExtractor normalisation
    feature_std: float = 4.5689974

    @property
    def clip_length(self) -> int:
        """The model's input length, samples (``clip_seconds`` at ``sample_rate``)."""
        return int(round(self.clip_seconds * self.sample_rate))


@dataclass
class ModelConfig:
    # "scratch" builds the config below from nothing; anything else is a hub id or a local dir.
    audio_source: str = "MIT/ast-finetuned-audioset-10-10-0.4593"
    lyrics_source: str = "roberta-large"
    tokenizer_source: str = "roberta-large"
    max_tokens: int = 256              # the authors' DataPreprocessor(max_len=256)
    # applied to every text before tokenising (utils.dataset_related.text.PREPROCESSING): "authors" =
    # their DataPreprocessor.preprocess (lower-case, punctuation removed, whitespace collapsed)
    text_preprocessing: str = "authors"
    # scratch configs (used only when a source is "scratch")
    ast_hidden: int = 768
    ast_layers: int = 12
    ast_heads: int = 12
    ast_intermediate: int = 3072
    roberta_hidden: int = 1024
    roberta_layers: int = 24
    roberta_heads: int = 16
    roberta_intermediate: int = 4096
    vocab_size: int = 50265
    dropout: float = 0.1
    # where the fusion model's encoders start: "pretrained" (audio_source / lyrics_source) or
    # "unimodal" (the lyrics and audio models already fine-tuned on the same task)
    fusion_init: str = "pretrained"


@dataclass
class TrainConfig:
    batch_size: dict = field(default_factory=lambda: {"lyrics": 10, "audio": 8, "multimodal": 3})
    learning_rate: dict = field(default_factory=lambda: {"lyrics": 1e-5, "audio": 1e-5, "multimodal": 1e-5})
    epochs: dict = field(default_factory=lambda: {"lyrics": 10, "audio": 10, "multimodal": 10})
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_accumulation: int = 1
    patience: int = 3                  # early stopping: epochs without a new best val accuracy or val loss
    mixed_precision: bool = True       # used only on CUDA


@dataclass
class CorpusConfig:
    songs_per_class: int = 40
    split: tuple[float, float, float] = (0.6, 0.15, 0.25)


@dataclass
class Profile:
    name: str
    audio: AudioConfig
    model: ModelConfig
    train: TrainConfig
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    num_segments: int = 10
    separator: str = "openunmix"
    explain_samples: int = 5000
    device: str = "auto"

    @property
    def clip_length(self) -> int:
        """The model's input length, samples (:attr:`AudioConfig.clip_length`)."""
        return self.audio.clip_length

    def replace(self, **changes) -> "Profile":
        """A copy with top-level fields replaced (nested configs are copied too)."""
        return dataclasses.replace(dataclasses.replace(self), **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def paper_profile() -> Profile:
    """The authors' setup: everything at 44.1 kHz (:class:`AudioConfig` defaults)."""
    return Profile(name="paper", audio=AudioConfig(), model=ModelConfig(), train=TrainConfig())


def paper16k_profile() -> Profile:
    """The paper's models at the AST checkpoint's own 16 kHz (AudioSet's front end), 10.24 s clips."""
    return Profile(name="paper16k", audio=AudioConfig(sample_rate=16_000, clip_seconds=10.24),
                   model=ModelConfig(), train=TrainConfig())


def tiny_profile() -> Profile:
    return Profile(
        name="tiny",
        audio=AudioConfig(sample_rate=16_000, clip_seconds=4.0, num_mel_bins=32, max_length=400),
        model=ModelConfig(
            audio_source="scratch", lyrics_source="scratch", tokenizer_source="corpus",
            max_tokens=96, text_preprocessing="none",
            ast_hidden=128, ast_layers=2, ast_heads=4, ast_intermediate=256,
            roberta_hidden=64, roberta_layers=2, roberta_heads=4, roberta_intermediate=128,
            vocab_size=1000, dropout=0.1, fusion_init="unimodal",
        ),
        train=TrainConfig(
            batch_size={"lyrics": 16, "audio": 16, "multimodal": 16},
            learning_rate={"lyrics": 1e-3, "audio": 3e-4, "multimodal": 3e-4},
            epochs={"lyrics": 40, "audio": 60, "multimodal": 10}, warmup_ratio=0.1, weight_decay=0.01, patience=8, mixed_precision=False,
        ),
        corpus=CorpusConfig(songs_per_class=150),
        separator="oracle",
        explain_samples=1000,
        device="cpu",
    )


PROFILES = {"paper": paper_profile, "paper16k": paper16k_profile, "tiny": tiny_profile}


def get_profile(name: str = "tiny", **overrides) -> Profile:
    """Return a fresh :class:`Profile` by name (``'tiny'``, ``'paper'`` or ``'paper16k'``).

    ``overrides`` replace top-level fields, e.g. ``get_profile('tiny', explain_samples=200)``.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]()
    return profile.replace(**overrides) if overrides else profile


def resolve_device(device: str = "auto") -> str:
    """``'auto'`` -> ``'cuda'`` when a GPU is present, else ``'cpu'``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
RESULTS_DIR = PROJECT_ROOT / "results"
RUNS_DIR = PROJECT_ROOT / "runs"


def num_samples_arg(text: str) -> int | str:
    """A command line's sample count: an int >= 2 or ``auto`` (argparse ``type=``)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the sample count must be an int or 'auto', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"the sample count must be >= 2, got {value}")
    return value
