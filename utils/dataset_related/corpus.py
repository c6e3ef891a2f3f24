"""The corpus schema every corpus is written in, and the steps all corpus builders share.

A corpus folder holds ``{train,val,test}.jsonl`` (one song a line: ``id``, ``lyrics``,
``primary_short``, ``emotion``, ``valence``, ``energy``; :data:`SCHEMA_COLUMNS`) and
``audio/<id>.wav`` model-length clips. The Music4All rebuild, the published-split import and
the AudioSet pipeline all end here:

* :func:`clean_lyrics` -- one normalisation of lyrics text;
* :class:`FilterCounts` / :class:`BuildReport` -- class counts after each filter, and every
  dropped item by reason;
* :func:`decode_clip` / :func:`write_clip` -- audio cut (or zero-padded) to the model clip,
  written atomically (:func:`utils.io.atomic_path`) and skipped when already complete;
* :func:`stratified_split` / :func:`write_split` -- the seeded stratified split and its files.
"""
from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from utils.config import SPLITS, Profile, get_profile
from utils.io import atomic_path, atomic_write, id_path

log = logging.getLogger(__name__)

SCHEMA_COLUMNS: tuple[str, ...] = ("id", "lyrics", "primary_short", "emotion", "valence", "energy")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
OTHER = "other"


def as_profile(profile: str | Profile) -> Profile:
    """A :class:`Profile` from a profile name or a profile."""
    return get_profile(profile) if isinstance(profile, str) else profile


# ================================================================== text
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_SECTION = re.compile(r"^\s*\[[^\]]*\]\s*$")
_EMBED = re.compile(r"\d*\s*Embed\s*$")


def clean_lyrics(text: Any) -> str:
    """Normalise lyrics text: NFKC, no zero-width characters, ``\\n`` line ends, lines stripped,
    ``[Chorus]``-style section lines and a trailing ``Embed`` marker removed, runs of blank
    lines collapsed to one, no leading / trailing blank lines. Missing -> ``""``."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    text = unicodedata.normalize("NFKC", str(text))
    text = _ZERO_WIDTH.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _EMBED.sub("", text.rstrip())
    lines, blank = [], False
    for line in text.split("\n"):
        line = " ".join(line.split())
        if _SECTION.match(line):
            continue
        if not line:
            if lines and not blank:
                lines.append("")
            blank = True
            continue
        lines.append(line)
        blank = False
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def read_text_file(path: Path) -> str:
    """A text file as str: UTF-8, falling back to Latin-1 for legacy files."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        log.info("%s is not UTF-8; read as Latin-1", path)
        return data.decode("latin-1")


def float_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


# ================================================================== reports
class FilterCounts:
    """Class counts after each filter step: rows = steps, columns = classes + ``total``."""

    def __init__(self, classes: Iterable[str]):
        self.classes = list(classes)
        self.rows: list[tuple[str, dict]] = []

    def add(self, step: str, labels: Iterable[Any]) -> None:
        counts = {c: 0 for c in self.classes}
        counts[OTHER] = 0
        for label in labels:
            key = label if label in counts else OTHER
            counts[key] += 1
        counts["total"] = sum(counts.values())
        self.rows.append((step, counts))

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame([c for _, c in self.rows], index=[s for s, _ in self.rows])
        if OTHER in df and not df[OTHER].any():
            df = df.drop(columns=[OTHER])
        df.index.name = "step"
        return df


@dataclass
class BuildReport:
    """What a pipeline did: counts per filter, per split, and every skipped item by reason.

    Attributes
    ----------
    corpus_dir : Path
    counts : DataFrame
        Class counts (columns) remaining after each filter step (rows).
    split_counts : DataFrame
        Class counts per split (rows ``train``, ``val``, ``test``).
    problems : dict
        ``{reason: [id or row description, ...]}`` for everything dropped or skipped.
    """

    corpus_dir: Path
    counts: pd.DataFrame
    split_counts: pd.DataFrame
    problems: dict = field(default_factory=dict)

    def problem_counts(self) -> pd.Series:
        """Number of items per problem reason."""
        return pd.Series({k: len(v) for k, v in self.problems.items()}, dtype=int,
                         name="count").rename_axis("reason")

    def summary(self, examples: int = 3) -> str:
        """A printable summary: the filter table, the split table and the problem counts."""
        lines = ["Class counts after each filter:", self.counts.to_string(), "",
                 "Class counts per split:", self.split_counts.to_string(), "",
                 "Skipped / dropped items by reason:"]
        if not self.problems:
            lines.append("  (none)")
        for reason, items in self.problems.items():
            shown = ", ".join(map(str, items[:examples]))
            lines.append(f"  {reason}: {len(items)}" + (f"  e.g. {shown}" if shown else ""))
        return "\n".join(lines)


# ================================================================== audio clips
def decode_clip(path: str | Path, sample_rate: int, clip_seconds: float,
              offset_seconds: float = 0.0) -> tuple[np.ndarray, int]:
    """Decode audio with ``soundfile`` (wav, flac, ogg, mp3), average to mono, resample to
    ``sample_rate`` (``librosa.resample``) and cut / zero-pad to the clip length.

    Returns
    -------
    (np.ndarray, int)
        float32 waveform of exactly ``round(clip_seconds * sample_rate)`` samples, and the
        number of samples that were zero padding (0 when the file was long enough).

    Raises
    ------
    ValueError
        The file cannot be decoded or holds no samples (message names the file).
    """
    import librosa
    import soundfile as sf

    n = int(round(clip_seconds * sample_rate))
    try:
        with sf.SoundFile(str(path)) as fh:
            native_sr = fh.samplerate
            start = int(round(offset_seconds * native_sr))
            if start >= fh.frames:
                raise ValueError(f"{path}: offset {offset_seconds} s is past the end "
                                 f"({fh.frames / native_sr:.2f} s)")
            if start:
                fh.seek(start)
            wave = fh.read(int(math.ceil(clip_seconds * native_sr)), dtype="float32",
                           always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise ValueError(f"{path}: cannot decode audio ({err})") from None
    wave = wave.mean(axis=1)
    if wave.size == 0:
        raise ValueError(f"{path}: no audio samples decoded")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{path}: decoded audio has non-finite samples")
    if native_sr != sample_rate:
        wave = librosa.resample(wave, orig_sr=native_sr, target_sr=sample_rate)
    wave = np.asarray(wave, dtype=np.float32)
    padding = max(0, n - wave.size)
    if padding:
        wave = np.pad(wave, (0, padding))
    return wave[:n], padding


def write_wav_atomic(path: str | Path, wave: np.ndarray, sample_rate: int) -> Path:
    """Write a mono 16-bit wav atomically (:func:`utils.io.atomic_path`)."""
    import soundfile as sf

    path = Path(path)
    with atomic_path(path) as part:
        sf.write(str(part), np.clip(wave, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return path


def wav_is_complete(path: str | Path, sample_rate: int, length: int) -> bool:
    """True when ``path`` is a readable mono wav with the expected rate and length."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 -- any unreadable file is "not complete"
        return False
    return info.samplerate == sample_rate and info.frames == length and info.channels == 1


def write_clip(source: str | Path, dest: str | Path, sample_rate: int, clip_seconds: float,
               offset_seconds: float = 0.0) -> int:
    """Cut ``source`` to a model-length clip at ``dest`` (skipped when already complete).

    Returns the number of zero-padding samples added (0 when skipped).
    """
    n = int(round(clip_seconds * sample_rate))
    if wav_is_complete(dest, sample_rate, n):
        return 0
    wave, padding = decode_clip(source, sample_rate, clip_seconds, offset_seconds)
    write_wav_atomic(dest, wave, sample_rate)
    return padding


# ================================================================== split and write
def _allocate(sizes: list[int], fraction: float, cap: list[int]) -> list[int]:
    """Per-class counts summing to ``round(sum(sizes) * fraction)``: floors of
    ``size * fraction``, then one more for the classes with the largest remainders
    (Hamilton's method), never more than ``cap`` per class."""
    exact = [n * fraction for n in sizes]
    counts = [min(int(math.floor(x)), c) for x, c in zip(exact, cap)]
    target = int(math.floor(sum(sizes) * fraction + 0.5))
    order = sorted(range(len(sizes)), key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    for k in order:
        if sum(counts) >= target:
            break
        if counts[k] < cap[k]:
            counts[k] += 1
    return counts


def stratified_split(df: pd.DataFrame, label_column: str = "primary_short",
                     fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                     seed: int = 0) -> dict[str, pd.DataFrame]:
    """Seeded stratified train / val / test split.

    Per class, ``floor(n * fraction)`` songs go to val and to test; the songs left over by
    rounding are handed out to the classes with the largest remainders so that the split
    sizes are ``round(N * fraction)`` overall (every class keeps at least one training
    song). Which songs go where: a per-class shuffle with ``numpy.random.default_rng(seed)``.
    Written out rather than sklearn's ``train_test_split(stratify=...)``, which refuses
    classes with fewer than two members per split (small real classes, the CI fixtures).
    Rows keep their input order inside a split.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if label_column not in df.columns:
        raise ValueError(f"no column {label_column!r} to stratify on; columns: {list(df.columns)}")
    labels = df[label_column].astype(str)
    classes = sorted(labels.unique())
    sizes = [int((labels == c).sum()) for c in classes]
    keep_train = 1 if fractions[0] > 0 else 0
    n_val = _allocate(sizes, fractions[1], [max(0, n - keep_train) for n in sizes])
    n_test = _allocate(sizes, fractions[2], [max(0, n - keep_train - v) for n, v in zip(sizes, n_val)])
    rng = np.random.default_rng(seed)
    assignment = pd.Series("train", index=df.index, dtype=object)
    for label, v, t in zip(classes, n_val, n_test):
        idx = df.index[labels == label].to_numpy()
        idx = idx[rng.permutation(len(idx))]
        assignment[idx[:v]] = "val"
        assignment[idx[v:v + t]] = "test"
    return {name: df.loc[assignment == name].reset_index(drop=True) for name in SPLITS}


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (np.floating,)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_split(corpus_dir: str | Path, name: str, df: pd.DataFrame) -> Path:
    """Write ``<corpus_dir>/<name>.jsonl`` in the corpus schema (atomically)."""
    lines = [json.dumps({col: _json_value(row.get(col)) for col in SCHEMA_COLUMNS}, ensure_ascii=False) + "\n"
             for row in df.to_dict("records")]
    return atomic_write(Path(corpus_dir) / f"{name}.jsonl", "".join(lines))


def split_counts_table(splits: dict[str, pd.DataFrame], classes: Iterable[str],
                       label_column: str = "primary_short") -> pd.DataFrame:
    """Class counts (columns, plus ``total``) per split (rows)."""
    classes = list(classes)
    rows = {}
    for name, df in splits.items():
        counts = df[label_column].value_counts() if len(df) else pd.Series(dtype=int)
        rows[name] = {c: int(counts.get(c, 0)) for c in classes}
        rows[name]["total"] = int(len(df))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "split"
    return out


def cut_clips(ids: list[str], audio_dir: Path, out_dir: Path, profile: Profile, offset_seconds: float,
              problems: dict, desc: str, show_progress: bool = True) -> list[bool]:
    """Cut ``audio_dir/<id>.mp3`` to the profile's clip at ``out_dir/audio/<id>.wav``, per id.

    Returns, per id, whether its clip is there. A missing or undecodable file is recorded in
    ``problems`` (``"audio file missing"`` / ``"audio unreadable"``), never fatal; a file
    shorter than the clip is zero-padded, kept and recorded too.
    """
    from tqdm.auto import tqdm

    sr, clip_seconds = profile.audio.sample_rate, profile.audio.clip_seconds
    keep = []
    for song_id in tqdm(ids, desc=desc, disable=not show_progress):
        source = id_path(audio_dir, song_id, ".mp3", source="cut_clips ids")
        if not source.exists():
            problems["audio file missing"].append(song_id)
            keep.append(False)
            continue
        try:
            padding = write_clip(source, id_path(Path(out_dir) / "audio", song_id, ".wav"), sr, clip_seconds,
                                 offset_seconds)
        except Exception as err:  # noqa: BLE001 -- any decoder failure: skip this song, go on
            log.info("audio %s unreadable: %s", source, err)
            problems["audio unreadable"].append(f"{song_id} ({type(err).__name__})")
            keep.append(False)
            continue
        if padding:
            problems["audio shorter than the clip (zero-padded, kept)"].append(song_id)
        keep.append(True)
    return keep


def finish_corpus(out_dir: str | Path, splits: dict[str, pd.DataFrame], counts: FilterCounts,
                  problems: dict, classes: Iterable[str], what: str) -> BuildReport:
    """Write the split files, log each problem reason once, and return the build's report."""
    for name, df in splits.items():
        write_split(out_dir, name, df)
    problems = {k: v for k, v in problems.items() if v}
    for reason, items in problems.items():
        log.warning("%s: %d item(s) %s", what, len(items), reason)
    return BuildReport(Path(out_dir), counts.table(), split_counts_table(splits, classes), problems)
