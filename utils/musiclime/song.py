"""One song -> its clip -> audio components -> a MusicLIME explanation: the one path every caller uses.

Notebooks 09 and 10, ``python -m utils.explain``, the planted-cue checks
(:mod:`utils.musiclime.sanity`), the global runs (:mod:`utils.musiclime.global_explain`) and the
speed benchmark all turn a song into components here, so they explain the same audio.

Clip policy (:func:`utils.dataset_related.features.cut_clip`, used by :func:`load_song_clip`)
    The model sees ``profile.clip_length`` samples (mono, at the profile's rate). A longer file
    is cut at ``start_seconds`` -- default ``0.0``, the first ``clip_length``: what the AST
    feature extractor's truncation and the corpus pipeline do; ``None`` centres the window on
    the file's middle (the explain command's default). A shorter file is zero-padded at the end
    with a ``UserWarning`` naming the song; the separator then splits only the audio that is in
    the file and every stem is padded with the same silence. The window is returned in
    :class:`SongClip`. On the synthetic corpus every clip is exactly the model's length.

Read top to bottom: :func:`load_song_clip` / :func:`corpus_clip`,
:func:`make_separator`, :func:`clip_factorization` / :func:`song_factorization`,
:func:`explain_song`, :func:`compare_sampling` (one song explained with each neighbourhood
design) and :func:`write_explanation` (its JSON, CSV and figures).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from utils.config import GENRES, SEPARATORS, STEMS, Profile
from utils.musiclime.explanation import Explanation



# ---------------------------------------------------------------- the clip
@dataclass(frozen=True)
class SongClip:
    """The clip the model sees, cut from an audio file.

    Attributes
    ----------
    waveform : np.ndarray, shape (clip_length,)
        Mono float32 at ``sample_rate``, zero-padded at the end when the file is short.
    sample_rate : int
        The model's rate, Hz.
    window : (int, int)
        ``(start, end)`` of the clip in the resampled file, samples (end exclusive).
    file_length : int
        Length of the resampled file, samples.
    padded_length : int
        Zeros appended (0 unless the file is shorter than the clip).
    input_sample_rate, input_channels : int or None
        The file's own rate (Hz) and channels, when soundfile can tell.
    """

    waveform: np.ndarray
    sample_rate: int
    window: tuple[int, int]
    file_length: int
    padded_length: int
    input_sample_rate: int | None
    input_channels: int | None

    @property
    def audio(self) -> np.ndarray:
        """The part of :attr:`waveform` that came from the file (without the padding), shape (samples,)."""
        return self.waveform[:self.waveform.shape[0] - self.padded_length]


def _file_format(path: Path) -> tuple[int | None, int | None]:
    try:
        import soundfile

        info = soundfile.info(str(path))
        return int(info.samplerate), int(info.channels)
    except Exception:                    # formats only audioread decodes
        return None, None


def load_song_clip(path: str | os.PathLike, sample_rate: int, clip_length: int,
                   start_seconds: float | None = 0.0, *, name: str | None = None) -> SongClip:
    """Load an audio file as mono at ``sample_rate`` and cut the model's clip from it (the clip policy).

    Any format librosa reads (wav, flac, ogg, mp3), mono or stereo (channels averaged), any
    rate (resampled); integer PCM comes out in [-1, 1]. The window is
    :func:`utils.dataset_related.features.clip_window` at
    ``start_seconds``; a file shorter than ``clip_length`` is zero-padded at the end with a
    ``UserWarning`` naming ``name`` (default the path).

    Raises
    ------
    FileNotFoundError
        The file is missing.
    ValueError
        Unreadable, empty or non-finite audio (:class:`utils.dataset_related.features.AudioError`),
        or a start outside the file.
    """
    from utils.dataset_related.features import cut_clip, load_audio

    path = Path(path)
    name = name or str(path)
    with warnings.catch_warnings():      # librosa's soundfile -> audioread fallback notices
        warnings.filterwarnings("ignore", message="PySoundFile failed")
        warnings.simplefilter("ignore", FutureWarning)
        waveform = load_audio(path, sample_rate, name=name)
    clip, (start, end) = cut_clip(waveform, clip_length, sample_rate, start_seconds, name=name, pad=True)
    padded = clip_length - (end - start)
    return SongClip(np.ascontiguousarray(clip, dtype=np.float32), int(sample_rate), (start, end),
                    int(waveform.shape[0]), int(padded), *_file_format(path))


def corpus_clip(corpus_dir: str | os.PathLike, song_id: str, profile: Profile,
                start_seconds: float | None = 0.0) -> SongClip:
    """The clip of corpus song ``song_id`` (``<corpus_dir>/audio/<id>.*``) at the profile's rate and length."""
    from utils.dataset_related.features import find_audio

    return load_song_clip(find_audio(Path(corpus_dir) / "audio", song_id), profile.audio.sample_rate,
                          profile.clip_length, start_seconds, name=f"song {song_id!r}")


# ---------------------------------------------------------------- components
def make_separator(name: str, corpus_dir: str | os.PathLike | None = None,
                   cache_dir: str | os.PathLike | None = None, device: str = "cpu"):
    """A :mod:`utils.musiclime.separation` separator by name (:data:`SEPARATORS`).

    ``oracle`` reads the synthetic corpus's saved stems (needs ``corpus_dir``; nothing to
    cache). ``hpss`` / ``openunmix`` are wrapped in a ``CachedSeparator`` when ``cache_dir`` is
    given; Open-Unmix runs on ``device`` (``'auto'``: CUDA when there is one) and raises
    ``ImportError`` (or a download error) where it is not available.
    """
    from utils.musiclime.open_unmix import OpenUnmixSeparator
    from utils.musiclime.separation import CachedSeparator, HPSSSeparator, OracleSeparator

    if name not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS}, got {name!r}")
    if name == "oracle":
        if corpus_dir is None:
            raise ValueError("the oracle separator reads a corpus's stems: give corpus_dir")
        return OracleSeparator(corpus_dir)
    if name == "hpss":
        inner = HPSSSeparator()
    else:
        from utils.config import resolve_device

        inner = OpenUnmixSeparator(device=resolve_device(device))
    return inner if cache_dir is None else CachedSeparator(inner, cache_dir)


def clip_factorization(clip: SongClip, separator: Any, num_segments: int, track_id: str | None = None):
    """``SourceSeparationSegments`` of a clip: stems x ``num_segments`` segments.

    A padded clip is separated without its padding (the separator splits only audio that is in
    the file) and every stem is padded with the same zeros.
    """
    from utils.musiclime.factorization import SourceSeparationSegments

    if not clip.padded_length:
        return SourceSeparationSegments(clip.waveform, clip.sample_rate, separator, num_segments=num_segments,
                                        track_id=track_id)
    stems = separator.separate(clip.audio, clip.sample_rate, track_id=track_id)
    stems = {s: np.pad(np.asarray(stems[s], dtype=np.float32), (0, clip.padded_length)) for s in STEMS}
    factorization = SourceSeparationSegments(clip.waveform, clip.sample_rate, stems=stems,
                                             num_segments=num_segments)
    factorization.separator_name = getattr(separator, "name", type(separator).__name__)
    return factorization


def song_factorization(corpus_dir: str | os.PathLike, song_id: str, profile: Profile, separator: Any, *,
                       num_segments: int | None = None, start_seconds: float | None = 0.0):
    """The paper's audio components of one corpus song: ``SourceSeparationSegments``.

    The clip is :func:`corpus_clip` (the clip policy of this module); ``separator`` is any
    :mod:`utils.musiclime.separation` separator (the oracle needs the id, which is passed
    along); ``num_segments`` defaults to ``profile.num_segments``.
    """
    clip = corpus_clip(corpus_dir, song_id, profile, start_seconds)
    return clip_factorization(clip, separator, num_segments or profile.num_segments, track_id=song_id)


# ---------------------------------------------------------------- the explanation
def explain_song(predictor: Any, corpus_dir: str | os.PathLike, song: Any, profile: Profile, *,
                 separator: Any = None, factorization: Any = None, mode: str = "both",
                 labels: Sequence[int] | None = None, num_samples: int = 1000, batch_size: int = 250,
                 seed: int = 0, num_segments: int | None = None, sampling: str = "iid",
                 class_names: Sequence[str] = GENRES, kernel: str = "paper") -> Explanation:
    """MusicLIME explanation of one corpus song (a split row or mapping with ``id`` and ``lyrics``).

    Parameters
    ----------
    predictor : the black box (e.g. :func:`utils.musiclime.predict.load_predictor`).
    corpus_dir : the corpus holding ``audio/<id>.*`` (and, for the oracle, ``stems/<id>/``).
    song : a split row (``song.id``, ``song.lyrics``) or a mapping with ``'id'`` and ``'lyrics'``.
    profile : audio settings (rate, clip length) and the default number of segments.
    separator : any :mod:`utils.musiclime.separation` separator; needed unless ``factorization`` is
        given or the predictor is a lyrics model (``predictor.kind == 'lyrics'``), which is
        explained without audio.
    factorization : reuse an existing :func:`song_factorization` of this song.
    mode : ``'both'``, ``'audio'`` or ``'lyrical'``.
    labels : classes to explain (default the predicted class, as the paper).
    num_samples, batch_size, seed, sampling, kernel : the explainer's settings
        (:func:`utils.musiclime.explainer.explain`).
    num_segments : temporal segments (default ``profile.num_segments``).
    class_names : the predictor's class names.

    Returns
    -------
    Explanation (with the factorization attached when audio was perturbed, for listening).
    """
    from utils.musiclime.explainer import explain

    song_id, lyrics = (song["id"], song.get("lyrics")) if isinstance(song, Mapping) else (song.id, song.lyrics)
    needs_audio = getattr(predictor, "kind", None) != "lyrics"
    if needs_audio and factorization is None:
        if separator is None:
            raise ValueError(f"song {song_id!r}: give separator= or factorization= to explain audio")
        factorization = song_factorization(corpus_dir, song_id, profile, separator, num_segments=num_segments)
    return explain(predictor, factorization if needs_audio else None, lyrics,
                   sample_rate=profile.audio.sample_rate, mode=mode, labels=labels,
                   num_samples=num_samples, batch_size=batch_size, seed=seed, class_names=class_names,
                   sampling=sampling, kernel=kernel)


def compare_sampling(predictor: Any, factorization: Any, lyrics: str, profile: Profile, *,
                     designs: Sequence[str] = ("iid", "antithetic", "crossed"), num_samples: int = 1000,
                     seed: int = 0, k: int = 10, class_names: Sequence[str] = GENRES) -> pd.DataFrame:
    """One song explained with each neighbourhood design (:func:`utils.musiclime.explainer.explain`'s ``sampling``).

    All designs explain the class the model predicts for the intact song, in ``'both'``
    mode. ``'crossed'`` needs a late-fusion predictor (``predict_crossed``).

    Returns
    -------
    pd.DataFrame, one row per design: ``design``, ``rows`` (surrogate rows), ``encoder_passes``
    (encoder rows actually run, audio + text), ``seconds``, ``top`` (the ``k`` best features by
    weight), ``overlap_with_first`` (share of the first design's top ``k``).
    """
    from utils.musiclime.explainer import explain

    rows, first_top, label = [], None, None
    for design in designs:
        if hasattr(predictor, "reset_counters"):
            predictor.reset_counters()
        tick = time.perf_counter()
        explanation = explain(predictor, factorization, lyrics, sample_rate=profile.audio.sample_rate,
                              labels=None if label is None else [label], num_samples=num_samples,
                              batch_size=num_samples, seed=seed, sampling=design, class_names=class_names)
        seconds = time.perf_counter() - tick
        label = explanation.labels[0] if label is None else label
        top = [row["name"] for row in explanation.ranked(label, k=k)]
        first_top = top if first_top is None else first_top
        calls = getattr(predictor, "calls", {})
        rows.append({"design": design, "rows": explanation.settings["num_samples"],
                     "encoder_passes": calls.get("audio_rows", 0) + calls.get("text_rows", 0),
                     "seconds": round(seconds, 2), "top": top,
                     "overlap_with_first": len(set(top) & set(first_top)) / max(len(first_top), 1)})
    return pd.DataFrame(rows)


def write_explanation(explanation: Explanation, out_dir: str | os.PathLike, name: str, label: int | None = None,
                      k: int = 10) -> dict[str, Path]:
    """Save one explanation: ``explanations/<name>.json`` and ``.csv`` and its figures.

    Writes ``<out_dir>/explanations/<name>.json`` (:meth:`Explanation.to_json`),
    ``<out_dir>/explanations/<name>.csv`` (:meth:`Explanation.to_frame`),
    ``<out_dir>/figures/<name>_top.png`` (top-``k`` bars of both modalities) and, when the
    explanation has audio features, ``<out_dir>/figures/<name>_heatmap.png`` (stems x
    segments). Returns the paths by kind (``json``, ``csv``, ``top``, ``heatmap``).
    """
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = {"json": out_dir / "explanations" / f"{name}.json", "csv": out_dir / "explanations" / f"{name}.csv",
             "top": out_dir / "figures" / f"{name}_top.png"}
    explanation.to_json(paths["json"])
    explanation.to_frame(label).to_csv(paths["csv"], index=False)
    plt.close(explanation.plot_top_features(label, k=k, save_path=paths["top"], order="weight"))
    if explanation.audio_features:
        paths["heatmap"] = out_dir / "figures" / f"{name}_heatmap.png"
        plt.close(explanation.plot_audio_heatmap(label, save_path=paths["heatmap"]))
    return paths
