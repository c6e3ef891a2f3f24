"""M4A: the MusicLIME corpus built from Music4All, in our corpus schema.

Two ways in, both ending in ``<corpus_dir>/{train,val,test}.jsonl`` (+ ``audio/<id>.wav``,
optionally ``features/<id>.npy`` and ``tokens.json``):

1. :func:`import_published_split` -- the authors' published split (JSON-lines with ``id``,
   ``lyrics``, ``primary_short``, ``emotion``) plus either the Music4All audio folder or
   their precomputed spectrograms (``.npy`` per id) and token file (JSON keyed by id).
2. :func:`build_m4a` -- rebuilt from raw Music4All (``id_genres.csv``, ``id_lang.csv``,
   ``id_metadata.csv``, ``lyrics/<id>.txt``, ``audios/<id>.mp3``): English songs, genre by
   the authors' tag rules (``m4a_genre_rules.json``), emotion from valence / energy, lyrics
   cleaned, duplicates and songs without lyrics or audio dropped, clips cut to the model
   length, stratified seeded split. Every filter's class counts are returned as a table.

Bad input (malformed rows, missing files, duplicates, unreadable audio) is logged and
counted per reason in the report, never silently dropped and never fatal for the run.
:func:`write_fixture` / :func:`write_published_fixture` write small inputs in the real
formats for tests and CI.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from utils.config import EMOTIONS, GENRES, Profile, emotion_from_valence_energy, get_profile

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[1] / "resources" / "m4a_genre_rules.json"
"""The project's own copy of the authors' tag rules (``utils/resources/m4a_genre_rules.json``;
where they come from: ``utils/resources/README.md``)."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
CONDITIONS: tuple[str, ...] = (
    "first_in", "others_any_of", "others_none_of", "others_any_contains",
    "others_none_contains", "second_not_in", "no_others",
)
OTHER = "other"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# ================================================================== genre rules
def load_genre_rules(path: str | Path | None = None) -> dict:
    """Load and check the Music4All tag -> genre rules (``m4a_genre_rules.json``).

    Parameters
    ----------
    path : str or Path, optional
        The rules file; default :data:`DEFAULT_RULES_PATH`, the copy that ships with the
        project (``utils/resources/m4a_genre_rules.json``).

    Returns
    -------
    dict
        ``{"order": [...], "to_class": {...}, "rules": {class: [rule, ...]}}``.
    """
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    if not path.exists():
        raise FileNotFoundError(
            f"genre rules file not found: {path}. Pass the path to an m4a_genre_rules.json, or None "
            f"for the rules that ship with the project (utils/resources/m4a_genre_rules.json)")
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    for key in ("order", "to_class", "rules"):
        if key not in rules:
            raise ValueError(f"{path}: missing key {key!r}")
    for name in rules["order"]:
        if name not in rules["rules"]:
            raise ValueError(f"{path}: class {name!r} in 'order' has no entry in 'rules'")
        if rules["to_class"].get(name) not in GENRES:
            raise ValueError(f"{path}: to_class[{name!r}] = {rules['to_class'].get(name)!r} "
                             f"is not one of {GENRES}")
        for i, rule in enumerate(rules["rules"][name]):
            unknown = set(rule) - set(CONDITIONS)
            if unknown or "first_in" not in rule:
                raise ValueError(f"{path}: rules[{name!r}][{i}] has unknown conditions "
                                 f"{sorted(unknown)} or no 'first_in'")
    return rules


def parse_tags(genres: Any) -> list[str]:
    """Music4All's one-column tag list (``"rock,pop,indie rock"``) -> ``['rock', 'pop', 'indie rock']``.

    Tags are stripped, lower-cased and stray quotes removed; empty tags dropped; a missing
    value gives ``[]``.
    """
    if genres is None or (isinstance(genres, float) and math.isnan(genres)):
        return []
    tags = [t.strip().strip('"\'').strip().lower() for t in str(genres).split(",")]
    return [t for t in tags if t]


def rule_matches(rule: dict, tags: list[str]) -> bool:
    """True when every condition of ``rule`` holds for ``tags`` (semantics: the rules file's "about")."""
    if not tags:
        return False
    first, others = tags[0], tags[1:]
    for cond, value in rule.items():
        if cond == "first_in":
            ok = first in value
        elif cond == "others_any_of":
            ok = any(t in value for t in others)
        elif cond == "others_none_of":
            ok = not any(t in value for t in others)
        elif cond == "others_any_contains":
            ok = any(value in t for t in others)
        elif cond == "others_none_contains":
            ok = not any(value in t for t in others)
        elif cond == "second_not_in":
            ok = len(tags) < 2 or tags[1] not in value
        elif cond == "no_others":
            ok = (len(others) == 0) == bool(value)
        else:
            raise ValueError(f"unknown rule condition {cond!r}")
        if not ok:
            return False
    return True


def primary_genre(tags: list[str], rules: dict) -> str | None:
    """The authors' primary genre (one of the 12 in ``rules['order']``): the first class with
    a matching rule; ``None`` when nothing matches (their ``'other'``)."""
    for name in rules["order"]:
        if any(rule_matches(rule, tags) for rule in rules["rules"][name]):
            return name
    return None


def genre_class(tags: list[str], rules: dict) -> str | None:
    """The M4A class (one of :data:`utils.config.GENRES`) for a tag list, or ``None``."""
    primary = primary_genre(tags, rules)
    return None if primary is None else rules["to_class"][primary]


# ================================================================== lyrics
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


# ================================================================== tables
def read_tsv(path: str | Path, required: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
    """Read one of Music4All's tab-separated files, tolerating odd rows.

    Every value is read as a string (missing -> NaN). Lines with too many fields are
    collected, not parsed; rows whose ``id`` is empty or not a safe file name are dropped
    too. Both are returned as ``bad_rows`` (a short description each).

    Returns
    -------
    (DataFrame, list of str)
        The good rows (columns stripped of whitespace) and the bad rows.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Music4All file not found: {path}")
    bad: list[str] = []

    def on_bad(fields: list[str]) -> None:
        bad.append(f"{path.name}: too many fields: {'|'.join(map(str, fields))[:120]}")
        return None

    df = pd.read_csv(path, sep="\t", dtype=str, engine="python", on_bad_lines=on_bad,
                     skip_blank_lines=True)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)} "
                         "(is it tab-separated?)")
    ids = df["id"].astype("string").str.strip()
    good = ids.fillna("").str.match(_SAFE_ID)
    for raw in df.loc[~good, "id"]:
        bad.append(f"{path.name}: bad id {raw!r}")
    df = df.loc[good].copy()
    df["id"] = ids[good].astype(str)
    return df.reset_index(drop=True), bad


def _float_or_none(value: Any) -> float | None:
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
def load_clip(path: str | Path, sample_rate: int, clip_seconds: float,
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
    """Write a mono 16-bit wav via ``<path>.part`` and an atomic rename."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    sf.write(str(part), np.clip(wave, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    os.replace(part, path)
    return path


def wav_is_complete(path: str | Path, sample_rate: int, num_samples: int) -> bool:
    """True when ``path`` is a readable mono wav with the expected rate and length."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 -- any unreadable file is "not complete"
        return False
    return info.samplerate == sample_rate and info.frames == num_samples and info.channels == 1


def write_clip(source: str | Path, dest: str | Path, sample_rate: int, clip_seconds: float,
               offset_seconds: float = 0.0) -> int:
    """Cut ``source`` to a model-length clip at ``dest`` (skipped when already complete).

    Returns the number of zero-padding samples added (0 when skipped).
    """
    n = int(round(clip_seconds * sample_rate))
    if wav_is_complete(dest, sample_rate, n):
        return 0
    wave, padding = load_clip(source, sample_rate, clip_seconds, offset_seconds)
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


SCHEMA_COLUMNS: tuple[str, ...] = ("id", "lyrics", "primary_short", "emotion", "valence", "energy")


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
    corpus_dir = Path(corpus_dir)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    path = corpus_dir / f"{name}.jsonl"
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding="utf-8") as fh:
        for row in df.to_dict("records"):
            record = {col: _json_value(row.get(col)) for col in SCHEMA_COLUMNS}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(part, path)
    return path


def split_counts_table(splits: dict[str, pd.DataFrame], classes: Iterable[str],
                       label_column: str = "primary_short") -> pd.DataFrame:
    classes = list(classes)
    rows = {}
    for name, df in splits.items():
        counts = df[label_column].value_counts() if len(df) else pd.Series(dtype=int)
        rows[name] = {c: int(counts.get(c, 0)) for c in classes}
        rows[name]["total"] = int(len(df))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "split"
    return out


def as_profile(profile: str | Profile) -> Profile:
    """A :class:`Profile` from a profile name or a profile."""
    return get_profile(profile) if isinstance(profile, str) else profile


# ================================================================== path 2: raw Music4All
def read_music4all(music4all_dir: str | Path) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Read and join Music4All's ``id_genres.csv``, ``id_lang.csv`` and ``id_metadata.csv``.

    Returns
    -------
    (DataFrame, dict)
        One row per ``id_genres.csv`` row with columns ``id``, ``tags`` (list), ``lang``,
        ``valence``, ``energy`` (floats or None), in file order (duplicates kept, marked in
        ``duplicate``); and ``{reason: [row descriptions]}`` for malformed rows.
    """
    root = Path(music4all_dir)
    problems: dict[str, list[str]] = defaultdict(list)
    genres, bad = read_tsv(root / "id_genres.csv", ["id", "genres"])
    problems["malformed row in id_genres.csv"] += bad
    langs, bad = read_tsv(root / "id_lang.csv", ["id", "lang"])
    problems["malformed row in id_lang.csv"] += bad
    meta, bad = read_tsv(root / "id_metadata.csv", ["id", "valence", "energy"])
    problems["malformed row in id_metadata.csv"] += bad

    lang_first: dict[str, Any] = {}
    for song_id, lang in zip(langs["id"], langs["lang"]):
        lang_first.setdefault(song_id, lang)
    meta_first = meta.drop_duplicates("id", keep="first").set_index("id")
    songs = pd.DataFrame({"id": genres["id"]})
    songs["tags"] = [parse_tags(g) for g in genres["genres"]]
    songs["duplicate"] = songs["id"].duplicated(keep="first")
    songs["lang"] = [None if pd.isna(lang_first.get(i)) else str(lang_first[i]).strip().lower()
                     for i in songs["id"]]
    songs["valence"] = [_float_or_none(meta_first["valence"].get(i)) if i in meta_first.index else None
                        for i in songs["id"]]
    songs["energy"] = [_float_or_none(meta_first["energy"].get(i)) if i in meta_first.index else None
                       for i in songs["id"]]
    return songs, {k: v for k, v in problems.items() if v}


def build_m4a(music4all_dir: str | Path, out_dir: str | Path,
              rules_path: str | Path | None = None, profile: str | Profile = "tiny",
              fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0,
              clip_offset_seconds: float = 0.0, show_progress: bool = True) -> BuildReport:
    """Rebuild M4A from raw Music4All into ``out_dir`` (our corpus schema).

    Filters, in order (class counts after each are in ``report.counts``):
    malformed rows -> duplicate ids (first kept) -> English (``id_lang.csv`` == ``en``) ->
    genre class by the rules (no match = ``other``, dropped) -> valid valence and energy
    (emotion by :func:`utils.config.emotion_from_valence_energy`) -> lyrics file present
    and non-empty after :func:`clean_lyrics` -> duplicate lyrics (first id kept) -> audio
    present and decodable (cut to ``profile.audio.clip_seconds`` at
    ``profile.audio.sample_rate`` from ``clip_offset_seconds``, zero-padded if short).
    Then a seeded stratified split (:func:`stratified_split`) by genre.

    Resumable: clips already written with the right length are not decoded again.

    Parameters
    ----------
    music4all_dir : path
        Folder with ``id_genres.csv``, ``id_lang.csv``, ``id_metadata.csv``, ``lyrics/``,
        ``audios/``.
    out_dir : path
        Corpus folder to write.
    rules_path : path, optional
        ``m4a_genre_rules.json`` (default :data:`DEFAULT_RULES_PATH`).
    profile : str or Profile
        Sets the clip length (seconds) and sample rate (Hz).
    fractions : (float, float, float)
        train / val / test fractions.
    seed : int
        Split seed.
    """
    from tqdm.auto import tqdm

    rules = load_genre_rules(rules_path)
    prof = as_profile(profile)
    sr, clip_seconds = prof.audio.sample_rate, prof.audio.clip_seconds
    root, out_dir = Path(music4all_dir), Path(out_dir)
    songs, problems = read_music4all(root)
    problems = defaultdict(list, problems)
    counts = FilterCounts(GENRES)
    songs["primary_short"] = [genre_class(t, rules) for t in songs["tags"]]

    counts.add("rows read (id_genres.csv)", songs["primary_short"])
    problems["duplicate id"] += songs.loc[songs["duplicate"], "id"].tolist()
    songs = songs.loc[~songs["duplicate"]]
    counts.add("unique ids", songs["primary_short"])

    english = songs["lang"] == "en"
    for i, lang in zip(songs.loc[~english, "id"], songs.loc[~english, "lang"]):
        known = isinstance(lang, str) and bool(lang)
        problems["not English (id_lang.csv)" if known else "no language in id_lang.csv"].append(i)
    songs = songs.loc[english]
    counts.add("English (id_lang == en)", songs["primary_short"])

    has_genre = songs["primary_short"].notna()
    for i, tags in zip(songs.loc[~has_genre, "id"], songs.loc[~has_genre, "tags"]):
        problems["genre tags match no rule (other)" if tags else "no genre tags"].append(i)
    songs = songs.loc[has_genre]
    counts.add("genre class by rules", songs["primary_short"])

    def emotion(row) -> str | None:
        try:
            return emotion_from_valence_energy(row.valence, row.energy)
        except (ValueError, TypeError):
            return None

    songs = songs.assign(emotion=[emotion(r) for r in songs.itertuples()])
    has_emotion = songs["emotion"].notna()
    problems["missing or invalid valence/energy"] += songs.loc[~has_emotion, "id"].tolist()
    songs = songs.loc[has_emotion]
    counts.add("valence and energy -> emotion", songs["primary_short"])

    lyrics = []
    for song_id in songs["id"]:
        path = root / "lyrics" / f"{song_id}.txt"
        if not path.exists():
            problems["lyrics file missing"].append(song_id)
            lyrics.append(None)
            continue
        text = clean_lyrics(read_text_file(path))
        if not text:
            problems["lyrics empty after cleaning"].append(song_id)
            lyrics.append(None)
            continue
        lyrics.append(text)
    songs = songs.assign(lyrics=lyrics)
    songs = songs.loc[songs["lyrics"].notna()]
    counts.add("lyrics present", songs["primary_short"])

    lyric_key = songs["lyrics"].str.lower().str.replace(r"\W+", " ", regex=True).str.strip()
    dup_lyrics = lyric_key.duplicated(keep="first")
    problems["duplicate lyrics (same text as an earlier id)"] += songs.loc[dup_lyrics, "id"].tolist()
    songs = songs.loc[~dup_lyrics]
    counts.add("unique lyrics", songs["primary_short"])

    keep = []
    for song_id in tqdm(list(songs["id"]), desc="audio clips", disable=not show_progress):
        source = root / "audios" / f"{song_id}.mp3"
        if not source.exists():
            problems["audio file missing"].append(song_id)
            keep.append(False)
            continue
        try:
            padding = write_clip(source, out_dir / "audio" / f"{song_id}.wav", sr, clip_seconds,
                                 clip_offset_seconds)
        except Exception as err:  # noqa: BLE001 -- any decoder failure: skip this song, go on
            log.info("audio %s unreadable: %s", source, err)
            problems["audio unreadable"].append(f"{song_id} ({type(err).__name__})")
            keep.append(False)
            continue
        if padding:
            problems["audio shorter than the clip (zero-padded, kept)"].append(song_id)
        keep.append(True)
    songs = songs.loc[keep]
    counts.add("audio readable", songs["primary_short"])

    splits = stratified_split(songs.reset_index(drop=True), "primary_short", fractions, seed)
    for name, df in splits.items():
        write_split(out_dir, name, df)
    problems = {k: v for k, v in problems.items() if v}
    for reason, items in problems.items():
        log.warning("M4A build: %d item(s) %s", len(items), reason)
    return BuildReport(out_dir, counts.table(), split_counts_table(splits, GENRES), problems)


# ================================================================== path 1: published split
_SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation", "dev"),
                  "test": ("test",)}
_SPLIT_PATTERNS = ("{}.jsonl", "{}.json", "{}_data.jsonl", "{}_data.json", "{}_set.jsonl",
                   "{}_set.json", "{}_df.jsonl", "{}_df.json", "{}_split.jsonl", "{}_split.json")


def find_split_file(split_dir: str | Path, split: str) -> Path:
    """The published file for ``split`` in ``split_dir`` (``train.jsonl``, ``val.json``,
    ``validation.json``, ``test_data.json``, ...); a clear error listing what is there."""
    split_dir = Path(split_dir)
    for alias in _SPLIT_ALIASES[split]:
        for pattern in _SPLIT_PATTERNS:
            path = split_dir / pattern.format(alias)
            if path.exists():
                return path
    present = sorted(p.name for p in split_dir.glob("*.json*")) if split_dir.exists() else []
    raise FileNotFoundError(f"no {split} split file in {split_dir}; JSON files there: {present}")


def read_json_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Records from a JSON-lines file or a JSON array; unreadable lines are returned as bad rows."""
    path = Path(path)
    text = read_text_file(path)
    bad: list[str] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        records = [r for r in data if isinstance(r, dict)]
        bad += [f"{path.name}: item {i} is not an object" for i, r in enumerate(data)
                if not isinstance(r, dict)]
        return records, bad
    records = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(f"{path.name} line {line_no}: not JSON")
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad.append(f"{path.name} line {line_no}: not an object")
    return records, bad


def _canonical(value: Any, names: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    lookup = {n.lower(): n for n in names}
    return lookup.get(str(value).strip().lower())


def load_spectrogram(path: str | Path) -> np.ndarray:
    """A published AST spectrogram ``.npy`` as float32 ``(frames, mel_bins)``.

    Leading singleton axes (the extractor's batch axis, ``(1, 1024, 128)``) are dropped.
    Loaded with ``allow_pickle=False`` (never unpickles).
    """
    arr = np.load(str(path), allow_pickle=False)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric (frames, mel_bins) array, got "
                         f"shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: spectrogram has non-finite values")
    return arr


def _token_entry(entry: Any) -> dict | None:
    """``{"input_ids", "attention_mask"}`` from a published token entry (``ids`` / ``mask``
    accepted as the same); None when malformed."""
    if not isinstance(entry, dict):
        return None
    ids = entry.get("input_ids", entry.get("ids"))
    mask = entry.get("attention_mask", entry.get("mask"))
    if not isinstance(ids, list) or not isinstance(mask, list) or len(ids) != len(mask):
        return None
    # some exports keep the tokenizer's batch axis: [[...]]
    if ids and isinstance(ids[0], list) and len(ids) == 1:
        ids, mask = ids[0], mask[0]
    try:
        return {"input_ids": [int(x) for x in ids], "attention_mask": [int(x) for x in mask]}
    except (TypeError, ValueError):
        return None


def import_published_split(split_dir: str | Path, out_dir: str | Path,
                           audio_dir: str | Path | None = None,
                           spectrogram_dir: str | Path | None = None,
                           tokens_path: str | Path | None = None,
                           profile: str | Profile = "tiny", require_audio: bool = True,
                           clip_offset_seconds: float = 0.0,
                           show_progress: bool = True) -> BuildReport:
    """Bring the authors' published M4A split into our corpus schema at ``out_dir``.

    Parameters
    ----------
    split_dir : path
        Folder with the published train / val / test files (JSON-lines or JSON arrays with
        ``id``, ``lyrics``, ``primary_short``, ``emotion``; see :func:`find_split_file`).
    audio_dir : path, optional
        Music4All ``audios/`` folder (``<id>.mp3``): clips are cut to the profile's length
        and rate into ``out_dir/audio/<id>.wav``. With ``require_audio`` songs without a
        readable audio file are dropped (counted); otherwise they are kept without audio.
    spectrogram_dir : path, optional
        Published ``<id>.npy`` AST spectrograms -> ``out_dir/features/<id>.npy`` as float32
        ``(frames, mel_bins)``; missing or broken ones are counted.
    tokens_path : path, optional
        Published token JSON (``{id: {"input_ids"|"ids": [...], "attention_mask"|"mask": [...]}}``)
        -> ``out_dir/tokens.json`` (``input_ids`` / ``attention_mask``) for the kept ids.

    Rows with a missing / unsafe id, an unknown genre or emotion, empty lyrics, or an id
    already seen (in any split) are dropped and counted. ``valence`` / ``energy`` are
    ``null`` (the published split does not carry them).
    """
    from tqdm.auto import tqdm

    prof = as_profile(profile)
    out_dir = Path(out_dir)
    problems: dict[str, list[str]] = defaultdict(list)
    counts = FilterCounts(GENRES)
    frames: dict[str, pd.DataFrame] = {}
    seen: set[str] = set()
    for split in SPLITS:
        path = find_split_file(split_dir, split)
        records, bad = read_json_records(path)
        problems["malformed line in split file"] += bad
        rows = []
        for rec in records:
            song_id = str(rec.get("id", "")).strip()
            if not _SAFE_ID.match(song_id):
                problems["missing or unsafe id"].append(f"{path.name}: {song_id!r}")
                continue
            if song_id in seen:
                problems["duplicate id"].append(song_id)
                continue
            seen.add(song_id)
            genre = _canonical(rec.get("primary_short"), GENRES)
            emotion = _canonical(rec.get("emotion"), EMOTIONS)
            if genre is None:
                problems["unknown genre class"].append(f"{song_id}: {rec.get('primary_short')!r}")
                continue
            if emotion is None:
                problems["unknown emotion class"].append(f"{song_id}: {rec.get('emotion')!r}")
                continue
            text = clean_lyrics(rec.get("lyrics"))
            if not text:
                problems["lyrics empty"].append(song_id)
                continue
            rows.append({"id": song_id, "lyrics": text, "primary_short": genre,
                         "emotion": emotion, "valence": _float_or_none(rec.get("valence")),
                         "energy": _float_or_none(rec.get("energy"))})
        frames[split] = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    all_rows = pd.concat(frames.values(), ignore_index=True)
    counts.add("valid rows in split files", all_rows["primary_short"])

    if audio_dir is not None:
        audio_dir = Path(audio_dir)
        sr, clip_seconds = prof.audio.sample_rate, prof.audio.clip_seconds
        for split, df in frames.items():
            keep = []
            for song_id in tqdm(list(df["id"]), desc=f"audio clips ({split})",
                                disable=not show_progress):
                source = audio_dir / f"{song_id}.mp3"
                ok = source.exists()
                if not ok:
                    problems["audio file missing"].append(song_id)
                else:
                    try:
                        padding = write_clip(source, out_dir / "audio" / f"{song_id}.wav", sr,
                                             clip_seconds, clip_offset_seconds)
                        if padding:
                            problems["audio shorter than the clip (zero-padded, kept)"].append(song_id)
                    except Exception as err:  # noqa: BLE001 -- skip this song, go on
                        problems["audio unreadable"].append(f"{song_id} ({type(err).__name__})")
                        ok = False
                keep.append(ok or not require_audio)
            frames[split] = df.loc[keep].reset_index(drop=True)
        counts.add("audio readable" if require_audio else "audio (not required)",
                   pd.concat(frames.values())["primary_short"])

    kept_ids = [i for df in frames.values() for i in df["id"]]
    if spectrogram_dir is not None:
        spectrogram_dir = Path(spectrogram_dir)
        for song_id in tqdm(kept_ids, desc="spectrograms", disable=not show_progress):
            source = spectrogram_dir / f"{song_id}.npy"
            dest = out_dir / "features" / f"{song_id}.npy"
            if not source.exists():
                problems["spectrogram missing"].append(song_id)
                continue
            try:
                arr = load_spectrogram(source)
            except (ValueError, OSError) as err:
                problems["spectrogram unreadable"].append(f"{song_id} ({err})"[:160])
                continue
            if arr.shape[1] != prof.audio.num_mel_bins:
                problems["spectrogram mel bins differ from the profile"].append(
                    f"{song_id} {arr.shape}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            with part.open("wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            os.replace(part, dest)

    if tokens_path is not None:
        tokens_path = Path(tokens_path)
        if not tokens_path.exists():
            raise FileNotFoundError(f"token file not found: {tokens_path}")
        try:
            published = json.loads(read_text_file(tokens_path))
        except json.JSONDecodeError as err:
            raise ValueError(f"{tokens_path}: not valid JSON ({err})") from None
        if not isinstance(published, dict):
            raise ValueError(f"{tokens_path}: expected a JSON object keyed by id")
        tokens = {}
        for song_id in kept_ids:
            if song_id not in published:
                problems["tokens missing"].append(song_id)
                continue
            entry = _token_entry(published[song_id])
            if entry is None:
                problems["tokens malformed"].append(song_id)
                continue
            tokens[song_id] = entry
        out_dir.mkdir(parents=True, exist_ok=True)
        part = out_dir / "tokens.json.part"
        part.write_text(json.dumps(tokens), encoding="utf-8")
        os.replace(part, out_dir / "tokens.json")

    for name, df in frames.items():
        write_split(out_dir, name, df)
    problems = {k: v for k, v in problems.items() if v}
    for reason, items in problems.items():
        log.warning("published split import: %d item(s) %s", len(items), reason)
    return BuildReport(out_dir, counts.table(), split_counts_table(frames, GENRES), problems)


# ================================================================== fixtures
# (tag list, class expected by reading the rules by hand) -- the fixture songs cycle through these.
FIXTURE_TAGS: tuple[tuple[str, str | None], ...] = (
    ("pop", "pop"),
    ("indie pop,pop,indie", "pop"),
    ("synthpop", "pop"),
    ("classic rock,rock", "rock"),
    ("rock,classic rock,blues", "rock"),
    ("hard rock,rock", "rock"),
    ("alternative rock,rock,indie", "alternative rock"),
    ("indie rock,rock", "alternative rock"),
    ("grunge,rock", "alternative rock"),
    ("soul,rhythm and blues", "rhythm music"),
    ("jazz,blues", "rhythm music"),
    ("reggae,ska", "rhythm music"),
    ("house,electronic", "electronic"),
    ("electronic,pop", "electronic"),
    ("techno", "electronic"),
    ("hip hop,rap", "hip hop"),
    ("rap,hip hop,trap music", "hip hop"),
    ("trap music", "hip hop"),
    ("folk,indie folk", "folk"),
    ("country", "folk"),
    ("singer-songwriter,folk", "folk"),
    ("metal,heavy metal", "heavy music"),
    ("metalcore,metal", "heavy music"),
    ("hardcore,punk", "heavy music"),
    ("post-punk,new wave", "punk"),
    ("punk", "punk"),
    ("synthpop,new wave", "punk"),
    ("pop,rock", None),
    ("classical,piano", None),
    ("soundtrack", None),
)

_WORDS = ("love night heart fire road rain dance light dream city sky river gold storm "
          "home baby time world money street summer winter shadow ocean thunder").split()
_PT_LINES = ("eu quero ver o mar contigo", "a saudade nao me deixa dormir",
             "meu coracao e teu para sempre", "na rua da cidade a chuva cai devagar")


def _fixture_id(rng: np.random.Generator) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(rng.choice(list(alphabet), size=16))


def _english_lyrics(rng: np.random.Generator, lines: int = 8) -> str:
    out = []
    for k in range(lines):
        words = rng.choice(_WORDS, size=5)
        out.append(f"i {words[0]} the {words[1]} and the {words[2]} of {words[3]} {words[4]}")
        if k == 3:
            out.append("")
    return "\n".join(out)


def _tone(rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    freq = float(rng.uniform(150, 800))
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_fixture(directory: str | Path, seed: int = 0, repeats: int = 2,
                  audio_seconds: float = 5.0, sample_rate: int = 22_050) -> Path:
    """Write a small raw Music4All in the real formats (for tests, CI and the notebook).

    Files: tab-separated ``id_genres.csv`` (``id``, ``genres`` = comma-separated tags in
    one column), ``id_lang.csv`` (``id``, ``lang``), ``id_metadata.csv`` (``id``,
    ``spotify_id``, ``popularity``, ``release``, ``danceability``, ``energy``, ``key``,
    ``mode``, ``valence``, ``tempo``, ``duration_ms``), ``lyrics/<id>.txt`` and
    ``audios/<id>.mp3`` (``audio_seconds`` s tones at ``sample_rate`` Hz).

    Songs cycle ``repeats`` times through :data:`FIXTURE_TAGS`; on purpose some songs are
    non-English or lack a language, lyrics (missing / empty file), valence, audio (missing
    / not decodable), an id appears twice, one song repeats another's lyrics, and each csv
    has a malformed row. ``<directory>/expected.json`` records the ids, their tag lists,
    the class read off the rules by hand, and which id each defect hit.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root = Path(directory)
    (root / "lyrics").mkdir(parents=True, exist_ok=True)
    (root / "audios").mkdir(parents=True, exist_ok=True)
    tags = [t for _ in range(repeats) for t in FIXTURE_TAGS]
    ids = []
    while len(ids) < len(tags):
        candidate = _fixture_id(rng)
        if candidate not in ids:
            ids.append(candidate)
    n = len(ids)
    # defects, on songs of classes that still keep >= 3 clean songs
    order = rng.permutation(n)
    kinds = ["lang_pt", "lang_es", "lang_missing", "lyrics_missing", "lyrics_empty",
             "valence_missing", "energy_bad", "audio_missing", "audio_broken", "dup_lyrics"]
    defects: dict[str, str] = {}
    used_classes: dict[str, int] = defaultdict(int)
    for idx in order:
        if len(defects) == len(kinds):
            break
        cls = tags[idx][1]
        if cls is None or used_classes[cls] >= 2:
            continue
        used_classes[cls] += 1
        defects[ids[idx]] = kinds[len(defects)]
    lyrics_of = {}
    for song_id in ids:
        lyrics_of[song_id] = _english_lyrics(rng)
    dup_source = next(i for i in ids if i not in defects and tags[ids.index(i)][1] is not None)

    with (root / "id_genres.csv").open("w", encoding="utf-8") as fh:
        fh.write("id\tgenres\n")
        for song_id, (tag_list, _) in zip(ids, tags):
            fh.write(f"{song_id}\t{tag_list}\n")
        fh.write(f"{ids[0]}\t{tags[0][0]}\n")                 # duplicate id
        fh.write("brokenrow01\trock\textra\tfields\n")         # too many fields
        fh.write("\tpop\n")                                   # empty id
    with (root / "id_lang.csv").open("w", encoding="utf-8") as fh:
        fh.write("id\tlang\n")
        for song_id in ids:
            kind = defects.get(song_id)
            if kind == "lang_missing":
                continue
            lang = {"lang_pt": "pt", "lang_es": "es"}.get(kind, "en")
            fh.write(f"{song_id}\t{lang}\n")
        fh.write("x\ty\tz\tw\n")                                # too many fields
    with (root / "id_metadata.csv").open("w", encoding="utf-8") as fh:
        cols = ["id", "spotify_id", "popularity", "release", "danceability", "energy", "key",
                "mode", "valence", "tempo", "duration_ms"]
        fh.write("\t".join(cols) + "\n")
        for song_id in ids:
            kind = defects.get(song_id)
            valence = "" if kind == "valence_missing" else f"{rng.uniform(0, 1):.3f}"
            energy = "n/a" if kind == "energy_bad" else f"{rng.uniform(0, 1):.3f}"
            row = [song_id, _fixture_id(rng)[:22], str(int(rng.integers(0, 100))),
                   str(int(rng.integers(1960, 2020))), f"{rng.uniform(0, 1):.3f}", energy,
                   str(int(rng.integers(0, 12))), str(int(rng.integers(0, 2))), valence,
                   f"{rng.uniform(60, 180):.3f}", str(int(rng.integers(120000, 300000)))]
            fh.write("\t".join(row) + "\n")
        fh.write("\t".join(["tooManyCols"] + ["1"] * 12) + "\n")
    for song_id in ids:
        kind = defects.get(song_id)
        if kind == "lyrics_missing":
            continue
        text = lyrics_of[song_id]
        if kind == "lyrics_empty":
            text = "\n[Instrumental]\n\n"
        elif kind in ("lang_pt", "lang_es"):
            text = "\n".join(rng.choice(_PT_LINES, size=6))
        elif kind == "dup_lyrics":
            text = lyrics_of[dup_source].upper()        # same words, different case
        (root / "lyrics" / f"{song_id}.txt").write_text("[Verse 1]\r\n" + text.replace("\n", "\r\n"),
                                                        encoding="utf-8")
    for song_id in ids:
        kind = defects.get(song_id)
        path = root / "audios" / f"{song_id}.mp3"
        if kind == "audio_missing":
            continue
        if kind == "audio_broken":
            path.write_bytes(b"ID3" + bytes(rng.integers(0, 256, size=2000, dtype=np.uint8)))
            continue
        sf.write(str(path), _tone(rng, audio_seconds, sample_rate), sample_rate, format="MP3")
    expected = {"ids": ids, "tags": [t for t, _ in tags], "classes": [c for _, c in tags],
                "defects": defects, "duplicate_lyrics_of": dup_source}
    (root / "expected.json").write_text(json.dumps(expected, indent=1), encoding="utf-8")
    return root


def write_published_fixture(directory: str | Path, seed: int = 0,
                            sizes: tuple[int, int, int] = (18, 9, 9),
                            spectrogram_shape: tuple[int, ...] = (1, 400, 32),
                            token_length: int = 32, audio_seconds: float = 5.0,
                            sample_rate: int = 22_050) -> Path:
    """Write a small copy of the authors' published M4A release, in its formats.

    ``split/train.jsonl`` (JSON lines), ``split/val.json`` (JSON lines under a ``.json``
    name), ``split/test.json`` (a JSON array) with ``id``, ``lyrics``, ``primary_short``,
    ``emotion``; ``spectrograms/<id>.npy`` (float32 ``spectrogram_shape``, the extractor's
    batch axis first); ``tokenized_texts.json`` ``{id: {"input_ids", "attention_mask"}}``;
    ``audios/<id>.mp3``. Defects: one row with an unknown genre, one with an unknown
    emotion, one non-JSON line, one id repeated in another split, one spectrogram and one
    token entry missing, one audio file missing.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root = Path(directory)
    for sub in ("split", "spectrograms", "audios"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    total = sum(sizes)
    ids = []
    while len(ids) < total:
        candidate = _fixture_id(rng)
        if candidate not in ids:
            ids.append(candidate)
    records = []
    for k, song_id in enumerate(ids):
        records.append({"id": song_id, "lyrics": _english_lyrics(rng),
                        "primary_short": GENRES[k % len(GENRES)],
                        "emotion": EMOTIONS[(k * 4) % len(EMOTIONS)]})
    records[1]["primary_short"] = "polka"
    records[2]["emotion"] = "Bored"
    bounds = np.cumsum((0,) + tuple(sizes))
    parts = {s: records[bounds[i]:bounds[i + 1]] for i, s in enumerate(SPLITS)}
    parts["test"] = parts["test"] + [dict(parts["train"][3])]          # id repeated across splits
    with (root / "split" / "train.jsonl").open("w", encoding="utf-8") as fh:
        for rec in parts["train"]:
            fh.write(json.dumps(rec) + "\n")
        fh.write("{not json\n")
    with (root / "split" / "val.json").open("w", encoding="utf-8") as fh:
        for rec in parts["val"]:
            fh.write(json.dumps(rec) + "\n")
    (root / "split" / "test.json").write_text(json.dumps(parts["test"]), encoding="utf-8")
    tokens = {}
    for k, song_id in enumerate(ids):
        if k != 5:
            arr = rng.standard_normal(spectrogram_shape).astype(np.float32)
            np.save(root / "spectrograms" / f"{song_id}.npy", arr, allow_pickle=False)
        if k != 6:
            used = int(rng.integers(5, token_length))
            tokens[song_id] = {"input_ids": [0] + list(map(int, rng.integers(3, 1000, used - 2)))
                               + [2] + [1] * (token_length - used),
                               "attention_mask": [1] * used + [0] * (token_length - used)}
        if k != 7:
            sf.write(str(root / "audios" / f"{song_id}.mp3"),
                     _tone(rng, audio_seconds, sample_rate), sample_rate, format="MP3")
    (root / "tokenized_texts.json").write_text(json.dumps(tokens), encoding="utf-8")
    return root
