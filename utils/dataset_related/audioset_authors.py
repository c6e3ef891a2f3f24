"""The MusicLIME authors' AudioSet recipe: segment lists, title cleaning, lyric-page rules.

The facts (their class names, their ~90 title patterns, our reading of their metal split and
blacklist) are data in ``utils/resources/audioset_authors.json`` (:func:`load_authors_recipe`);
the rules that use them are here:

* :func:`select_segments_authors` -- the ``audioset-processing`` tool's ``create_csv``: a class
  name matched as a case-insensitive substring of ``display_name`` in
  ``class_labels_indices.csv`` (:func:`label_ids`), rows holding one of the matched label ids
  and no blacklisted id kept, one list per class (:func:`write_class_lists`);
* :func:`clean_title_authors` / :func:`split_artist_song_authors` -- their patterns, removed
  case-insensitively and unanchored from the song part only; the artist only lower-cased;
* :func:`lyricfind_slug` / :func:`parse_lyricfind_page` -- the LyricFind page and the lyrics in
  its ``__NEXT_DATA__`` JSON (``props.pageProps.songData.track.lyrics``);
* :func:`same_song_authors` / :func:`clean_genius_lyrics_authors` -- their Genius match rule and
  Genius text cleaning.
"""
from __future__ import annotations

import csv
import functools
import html.parser
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import pandas as pd

from utils.config import AUDIOSET_GENRES
from utils.dataset_related.corpus import FilterCounts

AUTHORS_RECIPE_PATH = Path(__file__).resolve().parents[1] / "resources" / "audioset_authors.json"


# ================================================================== the recipe data
@functools.lru_cache(maxsize=4)
def _read_recipe(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"AudioSet recipe file not found: {p}")
    data = json.loads(p.read_text(encoding="utf-8"))
    for key in ("title_patterns", "classes", "metal", "blacklist"):
        if key not in data:
            raise ValueError(f"{p}: no {key!r} section")
    for pattern in data["title_patterns"]["patterns"]:
        re.compile(pattern)                        # a broken pattern fails here, naming nothing silently
    unknown = set(data["classes"]["names"].values()) - set(AUDIOSET_GENRES)
    if unknown:
        raise ValueError(f"{p}: classes map to unknown AudioSet classes {sorted(unknown)}")
    return data


def load_authors_recipe(path: str | Path = AUTHORS_RECIPE_PATH) -> dict:
    """The authors' AudioSet recipe (``title_patterns``, ``classes``, ``metal``, ``blacklist``),
    checked: every pattern compiles, every class maps to one of :data:`utils.config.AUDIOSET_GENRES`."""
    return _read_recipe(str(Path(path).resolve()))


# ================================================================== selection (create_csv)
def read_label_indices(path: str | Path) -> pd.DataFrame:
    """AudioSet ``class_labels_indices.csv`` (columns ``index``, ``mid``, ``display_name``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"AudioSet label file not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != ["index", "mid", "display_name"]:
            raise ValueError(f"{path}: expected the columns index, mid, display_name; got {reader.fieldnames}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    table = pd.DataFrame(rows, columns=["index", "mid", "display_name"])
    if table.empty:
        raise ValueError(f"{path}: no labels")
    if table["mid"].duplicated().any():
        raise ValueError(f"{path}: label ids repeated: {sorted(set(table.loc[table['mid'].duplicated(), 'mid']))}")
    table.attrs["path"] = str(path)
    return table


def label_ids(labels: pd.DataFrame, name: str, exact: bool = False) -> list[str]:
    """The label ids whose ``display_name`` contains ``name`` (case-insensitive), as the
    ``audioset-processing`` tool's ``get_label_id`` finds them (``exact=True``: its strict mode,
    equal ignoring case). A name that matches no label raises ``ValueError`` naming it."""
    wanted = name.lower()
    names = labels["display_name"].str.lower()
    hit = (names == wanted) if exact else names.map(lambda n: wanted in n)
    out = labels.loc[hit, "mid"].tolist()
    if not out:
        where = labels.attrs.get("path", "class_labels_indices.csv")
        raise ValueError(f"class name {name!r} matches no display_name in {where} "
                         f"({'exact' if exact else 'substring'} match, case-insensitive)")
    return out


def select_segments_authors(segments: pd.DataFrame, labels: pd.DataFrame,
                            classes: dict[str, str] | None = None,
                            blacklist: Iterable[str] | None = None, blacklist_exact: bool | None = None,
                            recipe: dict | None = None
                            ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, list[str]], FilterCounts]:
    """The authors' selection: one list per class name, then one corpus row per segment.

    Per class name (``classes``: name -> AudioSet class; default the authors' nine), the rows
    of ``segments`` (:func:`~utils.dataset_related.audioset_selection.read_segments`) whose labels
    hold a label id matched by the name (:func:`label_ids`) and no blacklisted id. As the tool
    writes it, a row is listed once per matched id it holds (``"electronic"`` matches Electronic
    music and Electronica). Then, for the corpus: rows of the rock list holding the heavy-metal
    label become heavy music (our reading, see the recipe file); repeats of a segment within one
    class are dropped, and so are segments listed under two classes (a corpus row has one class),
    and further segments of an already kept video.

    Parameters
    ----------
    blacklist : names, optional
        Default: the recipe's (ours; the authors' is not published), matched exactly.
    blacklist_exact : bool, optional
        Match blacklist names exactly (default: as the recipe says) or as substrings (the tool's
        default). A blacklisted id that is also a class's id raises ``ValueError``.

    Returns
    -------
    (DataFrame, dict, dict, FilterCounts)
        Kept segments with ``id`` (``<youtube_id>_<start ms>``) and ``primary_short``; the lists
        ``{class name: rows}`` as the tool writes them; ``{reason: [segment ids]}``; class counts.
    """
    recipe = recipe or load_authors_recipe()
    classes = dict(recipe["classes"]["names"] if classes is None else classes)
    if blacklist is None:
        blacklist = recipe["blacklist"]["names"]
    if blacklist_exact is None:
        blacklist_exact = recipe["blacklist"].get("match") == "exact"
    class_ids = {name: label_ids(labels, name) for name in classes}
    black_ids: dict[str, str] = {}
    for name in blacklist:
        for mid in label_ids(labels, name, exact=blacklist_exact):
            black_ids[mid] = name
    for name, ids in class_ids.items():
        clash = [f"{black_ids[m]!r} -> {m}" for m in ids if m in black_ids]
        if clash:
            raise ValueError(f"the blacklist removes the labels of class {name!r}: {clash}")
    metal = recipe["metal"]
    metal_ids = set(label_ids(labels, metal["name"]))

    df = segments.copy()
    df["id"] = [f"{y}_{int(round(s * 1000))}" for y, s in zip(df["youtube_id"], df["start_seconds"])]
    label_sets = [set(x) for x in df["labels"]]
    blacklisted = [bool(s & black_ids.keys()) for s in label_sets]
    lists: dict[str, pd.DataFrame] = {}
    listed = []
    for name, ids in class_ids.items():
        # the tool: one row per (row, matched id held), blacklisted rows left out
        take = [pos for pos, s in enumerate(label_sets) if not blacklisted[pos] for mid in ids if mid in s]
        lists[name] = df.iloc[take].reset_index(drop=True)
        for pos in take:
            cls = classes[name]
            if name == metal["from_class"] and label_sets[pos] & metal_ids:
                cls = metal["to_class"]
            listed.append((pos, name, cls))

    problems: dict[str, list[str]] = defaultdict(list)
    counts = FilterCounts(AUDIOSET_GENRES)
    ids = df["id"].tolist()
    counts.add("listed (rows of the class lists)", pd.Series([c for _, _, c in listed], dtype=object))
    problems["blacklisted class among labels"] += [i for i, b, s in zip(ids, blacklisted, label_sets)
                                                   if b and any(s & set(v) for v in class_ids.values())]
    classes_of: dict[int, list[str]] = defaultdict(list)
    first_name: dict[int, str] = {}
    seen_pairs = set()
    for pos, name, cls in listed:
        if (pos, cls) in seen_pairs:
            problems["listed again in the same class"].append(f"{ids[pos]} ({name})")
            continue
        seen_pairs.add((pos, cls))
        classes_of[pos].append(cls)
        first_name.setdefault(pos, name)
    order = sorted(classes_of)
    counts.add("one row per segment and class", pd.Series([c for p in order for c in classes_of[p]], dtype=object))
    single = [p for p in order if len(classes_of[p]) == 1]
    problems["listed under several classes"] += [f"{ids[p]} ({', '.join(classes_of[p])})"
                                                 for p in order if len(classes_of[p]) > 1]
    kept = df.iloc[single].copy()
    kept["primary_short"] = [classes_of[p][0] for p in single]
    kept["class_list"] = [first_name[p] for p in single]
    counts.add("in one class only", kept["primary_short"])

    dup = kept["id"].duplicated(keep="first")
    problems["duplicate segment"] += kept.loc[dup, "id"].tolist()
    kept = kept.loc[~dup]
    dup_video = kept["youtube_id"].duplicated(keep="first")
    problems["another segment of the same video kept"] += kept.loc[dup_video, "id"].tolist()
    kept = kept.loc[~dup_video]
    counts.add("one segment per video", kept["primary_short"])
    return kept.reset_index(drop=True), lists, {k: v for k, v in problems.items() if v}, counts


def write_class_lists(lists: dict[str, pd.DataFrame], directory: str | Path) -> list[Path]:
    """One CSV per class name, ``<name with _>.csv``, rows as the tool writes them
    (``YTID, start_seconds, end_seconds, "labels"``, no header)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, rows in lists.items():
        path = directory / f"{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            for row in rows.itertuples():
                writer.writerow([row.youtube_id, f"{row.start_seconds:.3f}", f"{row.end_seconds:.3f}",
                                 ",".join(row.labels)])
        out.append(path)
    return out


# ================================================================== titles
def clean_title_authors(title: str, patterns: Iterable[str] | None = None) -> str:
    """The authors' ``clean_title``: each pattern removed (``re.sub``, case-insensitive,
    unanchored) in order, then the text stripped."""
    patterns = load_authors_recipe()["title_patterns"]["patterns"] if patterns is None else patterns
    for pattern in patterns:
        title = re.sub(pattern, "", title, flags=re.IGNORECASE)
    return title.strip()


_SEPARATOR = re.compile(r"\s+(?:-{1,2}|–|—|~|\||//)\s+")
_QUOTED = re.compile(r'^(?P<artist>[^"“”]+?)\s*[:\-–—]?\s*["“](?P<song>[^"“”]+)["”]\s*$')


def split_artist_song_authors(title: str) -> tuple[str, str] | None:
    """``(artist, song)`` the authors' way: the raw title split at its first separator (`` - ``,
    `` – ``, `` — ``, `` | ``, `` ~ ``, `` // ``; or ``Artist "Song"``) -- the split is ours, their
    split is not in the repository -- then the artist only lower-cased and stripped, the song
    lower-cased and cleaned with :func:`clean_title_authors`. ``None`` when there is no
    separator or a part is empty after cleaning (a title that parses to nothing)."""
    text = " ".join(str(title).split())
    parts = _SEPARATOR.split(text, maxsplit=1)
    if len(parts) == 2:
        artist, song = parts
    else:
        match = _QUOTED.match(text)
        if not match:
            return None
        artist, song = match.group("artist"), match.group("song")
    artist, song = artist.strip().lower(), clean_title_authors(song.lower())
    if not artist or not song:
        return None
    return artist, song


# ================================================================== lyric pages
LYRICFIND_URL = "https://lyrics.lyricfind.com/lyrics/"


def lyricfind_slug(artist: str, song: str) -> str:
    """The LyricFind page name the authors asked for: ``{artist}-{song}``, lower-cased, spaces -> ``-``."""
    return f"{artist.lower().replace(' ', '-')}-{song.lower().replace(' ', '-')}"


class _NextData(html.parser.HTMLParser):
    """Collects the text of ``<script id="__NEXT_DATA__">``."""

    def __init__(self):
        super().__init__()
        self.inside, self.found, self.parts = False, False, []

    def handle_starttag(self, tag, attrs):
        if tag == "script" and dict(attrs).get("id") == "__NEXT_DATA__" and not self.found:
            self.inside = self.found = True

    def handle_endtag(self, tag):
        if tag == "script":
            self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.parts.append(data)


def parse_lyricfind_page(page: str) -> str | None:
    """The lyrics in a LyricFind page: its ``__NEXT_DATA__`` JSON at
    ``props.pageProps.songData.track.lyrics``; ``None`` when the page has no such script, the
    script is not JSON, or the path is missing or empty (a page without lyrics).

    Parsed with the standard library's ``html.parser`` (the authors used BeautifulSoup; one
    script tag needs no extra dependency)."""
    parser = _NextData()
    parser.feed(str(page))
    parser.close()
    if not parser.found:
        return None
    try:
        data = json.loads("".join(parser.parts))
    except json.JSONDecodeError:
        return None
    node = data
    for key in ("props", "pageProps", "songData", "track", "lyrics"):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, str) and node.strip() else None


def normalize_string_authors(text: str) -> str:
    """The authors' ``normalize_string``: zero-width characters removed, lower-cased, whitespace
    and periods removed."""
    text = re.sub(r"[\u200b-\u200d\ufeff]", "", str(text))
    return re.sub(r"\s+|\.", "", text.lower())


def same_song_authors(artist: str, song: str, found_artist: str, found_title: str) -> bool:
    """The authors' Genius match: normalised artists equal and the hit's title (lower-cased)
    contained in the searched song title (lower-cased)."""
    return (normalize_string_authors(artist) == normalize_string_authors(found_artist)
            and str(found_title).lower() in str(song).lower())


def clean_genius_lyrics_authors(text: str) -> str:
    """The authors' ``clean_lyrics`` for Genius text: first line dropped, then
    ``re.sub(r'\\[.*?\\]\\n|\\d*Embed$', '', ..., flags=re.IGNORECASE)``, stripped."""
    text = "\n".join(str(text).split("\n")[1:])
    return re.sub(r"\[.*?\]\n|\d*Embed$", "", text, flags=re.IGNORECASE).strip()
