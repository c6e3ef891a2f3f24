"""M4A rebuilt from raw Music4All: the authors' genre tag rules, then every filter, counted.

:func:`build_m4a` reads Music4All (``id_genres.csv``, ``id_lang.csv``, ``id_metadata.csv``,
``lyrics/<id>.txt``, ``audios/<id>.mp3``) and writes ``<out_dir>/{train,val,test}.jsonl`` +
``audio/<id>.wav`` (:mod:`utils.dataset_related.corpus`): English songs, genre by the authors'
tag rules (``m4a_genre_rules.json``, :func:`load_genre_rules`), emotion from valence / energy,
lyrics cleaned, duplicates and songs without lyrics or audio dropped, clips cut to the model
length, stratified seeded split. Every filter's class counts are returned as a table.

Bad input (malformed rows, missing files, duplicates, unreadable audio) is logged and
counted per reason in the report, never silently dropped and never fatal for the run. The
authors' published split comes in through :mod:`utils.dataset_related.music4all_published`;
small inputs in the real formats: :mod:`utils.dataset_related.fixtures`.
"""
from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from utils.config import GENRES, Profile, emotion_from_valence_energy
from utils.dataset_related.corpus import (DEFAULT_FRACTIONS, BuildReport, FilterCounts, as_profile,
                                          clean_lyrics, cut_clips, finish_corpus, float_or_none, read_text_file,
                                          stratified_split)
from utils.io import SAFE_ID, id_path

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[1] / "resources" / "m4a_genre_rules.json"
"""The project's own copy of the authors' tag rules (``utils/resources/m4a_genre_rules.json``;
where they come from: ``utils/resources/README.md``)."""

CONDITIONS: tuple[str, ...] = (
    "first_in", "others_any_of", "others_none_of", "others_any_contains",
    "others_none_contains", "second_not_in", "no_others",
)


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
    good = ids.fillna("").str.fullmatch(SAFE_ID)
    for raw in df.loc[~good, "id"]:
        bad.append(f"{path.name}: bad id {raw!r}")
    df = df.loc[good].copy()
    df["id"] = ids[good].astype(str)
    return df.reset_index(drop=True), bad


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
    songs["valence"] = [float_or_none(meta_first["valence"].get(i)) if i in meta_first.index else None
                        for i in songs["id"]]
    songs["energy"] = [float_or_none(meta_first["energy"].get(i)) if i in meta_first.index else None
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
    and non-empty after :func:`~utils.dataset_related.corpus.clean_lyrics` -> duplicate lyrics
    (first id kept) -> audio present and decodable (cut to ``profile.audio.clip_seconds`` at
    ``profile.audio.sample_rate`` from ``clip_offset_seconds``, zero-padded if short).
    Then a seeded stratified split (:func:`~utils.dataset_related.corpus.stratified_split`) by genre.

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
    rules = load_genre_rules(rules_path)
    root, out_dir = Path(music4all_dir), Path(out_dir)
    songs, problems = read_music4all(root)
    problems = defaultdict(list, problems)
    counts = FilterCounts(GENRES)
    songs["primary_short"] = [genre_class(t, rules) for t in songs["tags"]]
    songs = _filter_metadata(songs, problems, counts)
    songs = _attach_lyrics(songs, root / "lyrics", problems, counts)
    keep = cut_clips(list(songs["id"]), root / "audios", out_dir, as_profile(profile), clip_offset_seconds,
                     problems, "audio clips", show_progress)
    songs = songs.loc[keep]
    counts.add("audio readable", songs["primary_short"])
    splits = stratified_split(songs.reset_index(drop=True), "primary_short", fractions, seed)
    return finish_corpus(out_dir, splits, counts, problems, GENRES, "M4A build")


def _filter_metadata(songs: pd.DataFrame, problems: dict, counts: FilterCounts) -> pd.DataFrame:
    """Unique ids, English, a genre class by the rules, an emotion from valence / energy."""
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
    return songs


def _attach_lyrics(songs: pd.DataFrame, lyrics_dir: Path, problems: dict, counts: FilterCounts) -> pd.DataFrame:
    """Cleaned lyrics from ``lyrics_dir/<id>.txt``; songs without any, or repeating earlier ones, dropped."""
    lyrics = []
    for song_id in songs["id"]:
        path = id_path(lyrics_dir, song_id, ".txt")
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
    return songs
