"""The AudioSet fixture: segment CSVs, ontology, label file and canned network answers.

:func:`write_audioset_fixture` (re-exported by :mod:`utils.dataset_related.fixtures`) writes a small
AudioSet in the real formats for :func:`utils.dataset_related.audioset.build_audioset`, with the
answers of :class:`utils.dataset_related.net_clients.FakeClient` and ``expected.json`` saying what
each segment becomes under the authors' selection and ours.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np


# ================================================================== AudioSet
_AUDIOSET_ONTOLOGY: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (id, name, child ids) -- a subset of the real AudioSet ontology, same ids and names
    ("/m/04rlf", "Music", ("/m/0kpv1t",)),
    ("/m/0kpv1t", "Music genre", ("/m/064t9", "/m/0glt670", "/m/06by7", "/m/06j6l", "/m/0gywn", "/m/06cqb",
                                  "/m/01lyv", "/m/02x8m", "/m/02w4v", "/m/03_d0", "/m/026z9", "/m/0ggq0m",
                                  "/m/02lkt", "/m/0155w")),
    ("/m/064t9", "Pop music", ()), ("/m/0glt670", "Hip hop music", ("/m/04j_h4", "/m/0n8zsc8", "/m/02cz_7")),
    ("/m/04j_h4", "Grime music", ()), ("/m/0n8zsc8", "Trap music", ()), ("/m/02cz_7", "Beatboxing", ()),
    ("/m/06by7", "Rock music", ("/m/03lty", "/m/05r6t", "/m/0dls3", "/m/0dl5d", "/m/07sbbz2", "/m/05w3f")),
    ("/m/03lty", "Heavy metal", ()), ("/m/05r6t", "Punk rock", ()), ("/m/0dls3", "Grunge", ()),
    ("/m/0dl5d", "Progressive rock", ()), ("/m/07sbbz2", "Rock and roll", ()),
    ("/m/05w3f", "Psychedelic rock", ()), ("/m/06j6l", "Rhythm and blues", ()),
    ("/m/0gywn", "Soul music", ()), ("/m/06cqb", "Reggae", ("/m/0190y4",)), ("/m/0190y4", "Dub", ()),
    ("/m/01lyv", "Country", ("/m/015y_n", "/m/0gg8l")), ("/m/015y_n", "Swing music", ()),
    ("/m/0gg8l", "Bluegrass", ()), ("/m/02x8m", "Funk", ()), ("/m/02w4v", "Folk music", ()),
    ("/m/03_d0", "Jazz", ()), ("/m/026z9", "Disco", ()), ("/m/0ggq0m", "Classical music", ("/m/05lls",)),
    ("/m/05lls", "Opera", ()), ("/m/02lkt", "Electronic music", ("/m/03mb9", "/m/07gxw", "/m/07s72n")),
    ("/m/03mb9", "House music", ()), ("/m/07gxw", "Techno", ()), ("/m/07s72n", "Dubstep", ()),
    ("/m/0155w", "Blues", ()), ("/m/09x0r", "Speech", ()),
)

# (labels, class read off the ontology by hand, class under the authors' substring selection by
# hand -- None: not selected) for the fixture's segments
_AUDIOSET_SEGMENTS: tuple[tuple[str, str | None, str | None], ...] = (
    ("/m/04rlf,/m/064t9", "pop", "pop"), ("/m/064t9", "pop", "pop"),
    ("/m/04rlf,/m/064t9,/m/09x0r", "pop", "pop"),
    ("/m/04rlf,/m/0glt670", "hip hop", "hip hop"), ("/m/04rlf,/m/0n8zsc8", "hip hop", None),   # trap: no substring
    ("/m/0glt670,/m/04j_h4", "hip hop", "hip hop"),
    ("/m/04rlf,/m/06by7", "rock", "rock"), ("/m/04rlf,/m/05r6t", "rock", "rock"),            # "Punk rock"
    ("/m/06by7,/m/0dls3", "rock", "rock"),
    ("/m/04rlf,/m/06by7,/m/03lty", "heavy music", "heavy music"), ("/m/03lty", "heavy music", None),
    ("/m/04rlf,/m/03lty,/m/05r6t", "heavy music", "heavy music"),
    ("/m/04rlf,/m/01lyv", "folk", "folk"), ("/m/02w4v", "folk", "folk"), ("/m/04rlf,/m/0gg8l", "folk", None),
    ("/m/04rlf,/m/03_d0", "rhythm music", "rhythm music"), ("/m/06cqb", "rhythm music", "rhythm music"),
    ("/m/04rlf,/m/06j6l", "rhythm music", "rhythm music"),
    ("/m/04rlf,/m/02lkt", "electronic", "electronic"), ("/m/03mb9", "electronic", None),        # house
    ("/m/04rlf,/m/02lkt,/m/07gxw", "electronic", "electronic"),
    ("/m/04rlf,/m/064t9", "pop", "pop"), ("/m/04rlf,/m/0glt670", "hip hop", "hip hop"), ("/m/06by7", "rock", "rock"),
    ("/m/04rlf,/m/03lty", "heavy music", None), ("/m/04rlf,/m/02w4v", "folk", "folk"),
    ("/m/04rlf,/m/06j6l", "rhythm music", "rhythm music"), ("/m/04rlf,/m/07s72n", "electronic", None),  # dubstep
    ("/m/04rlf,/m/06by7,/m/03lty", "heavy music", "heavy music"),
    ("/m/06by7,/m/03lty,/m/0dls3", "heavy music", "heavy music"),
    ("/m/04rlf,/m/02lkt,/m/0m0jc", "electronic", "electronic"),      # listed twice by the tool (two matched ids)
    ("/m/07qsvvw", None, "pop"),                                      # "Burst, pop": a sound, not music
    ("/m/03xq_f,/m/04rlf", None, "electronic"),                       # "Electronic organ": an instrument
)

_AUDIOSET_EXTRA_LABELS: tuple[tuple[str, str], ...] = (
    # real AudioSet labels (id, display_name) that the fixture ontology leaves out: sounds and
    # instruments whose names hold a class name, and the genres of the default blacklist
    ("/m/07qsvvw", "Burst, pop"), ("/m/03xq_f", "Electronic organ"), ("/m/0m0jc", "Electronica"),
    ("/m/08cyft", "Electronic dance music"), ("/m/06j64v", "Middle Eastern music"),
    ("/m/0g293", "Music of Latin America"), ("/m/05fw6t", "Music for children"), ("/m/02v2lh", "New-age music"),
    ("/m/0y4f8", "Vocal music"), ("/m/0164x2", "Music of Africa"), ("/m/02mscn", "Christian music"),
    ("/m/028sqc", "Music of Asia"), ("/m/06rqw", "Ska"), ("/m/02p0sh1", "Traditional music"),
    ("/m/05rwpb", "Independent music"), ("/m/06_fw", "Skateboard"),
)

# each title format, and by hand what the authors' split + cleaning makes of it (artist, song)
_TITLE_FORMATS: tuple[tuple[str, str, str], ...] = (
    ("{a} - {s} (Official Video) [HD]", "{a}", "{s} () []"), ("{a} - {s} (Lyrics)", "{a}", "{s} ()"),
    ("{a} ft. Guest - {s} (2012)", "{a} ft. guest", "{s}"), ("{a} – {s} [Official Audio]", "{a}", "{s} [official ]"),
    ("{a} - {s} feat. Someone (prod. by DJ Test).mp4", "{a}", "{s}  someone ( test)"),
    ("{a} - {s} | Official Music Video", "{a}", "{s} | official music video"), ('{a} "{s}"', "{a}", "{s}"),
    ("{a} - {s} HQ", "{a}", "{s}"),
)
_FEAT_IN_ARTIST = 2
"""Index of the format whose featured artist stays in the authors' artist: Genius' artist differs."""

_EN_LINES = ("I walk alone down this empty road tonight", "you said that you would never leave me",
             "the city lights are burning in my eyes", "we were young and we were running free",
             "hold me close until the morning comes", "every time I see you I forget the pain",
             "I can feel the thunder in my heart", "don't you know that I will wait for you")
_ES_LINES = ("yo quiero bailar contigo toda la noche", "la luna brilla sobre el mar azul",
             "tu corazon es mi cancion favorita", "no puedo vivir sin tu amor mi vida")


def _random_ytid(rng: np.random.Generator) -> str:
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    return "".join(rng.choice(alphabet, size=11))


def write_audioset_fixture(directory: str | Path, seed: int = 0) -> Path:
    """Write a small AudioSet in the real formats plus canned network answers.

    Files: ``ontology.json`` (a subset of the real ontology, real ids and names, full node
    format), ``balanced_train_segments.csv`` and ``eval_segments.csv`` (AudioSet's comment
    header, ``YTID, start, end, "labels"``), ``fake_responses.json`` for
    :class:`utils.dataset_related.net_clients.FakeClient`, and ``expected.json`` (what each
    segment should become).

    Also ``class_labels_indices.csv`` (``index,mid,display_name``: the fixture ontology's nodes
    that are AudioSet labels, plus :data:`_AUDIOSET_EXTRA_LABELS`), for the
    authors' substring selection, and one LyricFind page per segment whose title is clean.

    Defects on purpose: malformed rows, a segment repeated across the CSVs, a second
    segment of one video, a non-genre (speech) segment, a blacklisted (pop + classical) and
    an ambiguous (pop + rock) segment, a removed video, an unparseable title, a second
    video of the same song, a 429 then success on a title batch and on a song, a Genius
    miss, a wrong Genius match, Spanish lyrics, a lyrics search failing five times (503),
    partial / broken / missing audio downloads; for LyricFind, a page without lyrics, a 429
    then the page, and a page failing five times (503).
    """
    rng = np.random.default_rng(seed)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    nodes = [{"id": i, "name": n, "description": f"{n} (fixture)", "citation_uri": "",
              "positive_examples": [], "child_ids": list(c), "restrictions": []}
             for i, n, c in _AUDIOSET_ONTOLOGY]
    (root / "ontology.json").write_text(json.dumps(nodes, indent=2), encoding="utf-8")
    _write_label_indices(root / "class_labels_indices.csv")
    segments = []
    for k, (labels, cls, authors_cls) in enumerate(_AUDIOSET_SEGMENTS):
        start = float(rng.integers(0, 20)) * 10.0
        fmt = k % len(_TITLE_FORMATS)
        segments.append({"ytid": _random_ytid(rng), "start": start, "labels": labels, "class": cls,
                         "authors_class": authors_cls, "artist": f"Band {k}", "song": f"Song Number {k}",
                         "format": fmt})
    extra = {name: {"ytid": _random_ytid(rng), "start": 30.0, "labels": labels, "class": None,
                    "authors_class": None}
             for name, labels in (("speech", "/m/09x0r"), ("blacklisted", "/m/04rlf,/m/064t9,/m/0ggq0m"),
                                  ("ambiguous", "/m/04rlf,/m/064t9,/m/06by7"))}
    # the problems, each on a segment both selections keep, spread over the classes
    by_class: dict[str, list[dict]] = defaultdict(list)
    for seg in segments:
        if seg["class"] is not None and seg["class"] == seg["authors_class"] and seg["format"] != _FEAT_IN_ARTIST:
            by_class[seg["class"]].append(seg)
    roles = {"removed": by_class["pop"][0], "unparseable": by_class["hip hop"][0],
             "dup_song_of": by_class["rock"][0], "dup_song": by_class["rock"][1],
             "genius_miss": by_class["heavy music"][0], "wrong_match": by_class["folk"][0],
             "spanish": by_class["rhythm music"][0], "flaky_song": by_class["electronic"][0],
             "failing_song": by_class["pop"][1], "partial_audio": by_class["hip hop"][1],
             "broken_audio": by_class["folk"][1], "missing_audio": by_class["heavy music"][1],
             "lyricfind_no_lyrics": by_class["pop"][2], "lyricfind_flaky": by_class["rhythm music"][1],
             "lyricfind_down": by_class["rock"][2]}
    canned = _canned_answers(rng, segments, extra, roles)
    _write_segment_csvs(root, rng, segments, extra)
    (root / "fake_responses.json").write_text(json.dumps(canned, indent=1), encoding="utf-8")
    (root / "expected.json").write_text(json.dumps(_audioset_expected(segments, extra, roles), indent=1),
                                        encoding="utf-8")
    return root


def _write_label_indices(path: Path) -> None:
    """``class_labels_indices.csv`` in AudioSet's format (``index,mid,"display_name"``)."""
    not_labels = ("Music genre", "Grime music", "Trap music", "Dub")    # ontology nodes, not among the 527 labels
    labels = [(i, n) for i, n, _ in _AUDIOSET_ONTOLOGY if n not in not_labels] + list(_AUDIOSET_EXTRA_LABELS)
    rows = ["index,mid,display_name"] + [f'{k},{mid},"{name}"' for k, (mid, name) in enumerate(labels)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _lyricfind_page(lyrics: str | None) -> str:
    """A LyricFind-like page: the lyrics in its ``__NEXT_DATA__`` script (none: a page without them)."""
    track = {"title": "x"} if lyrics is None else {"title": "x", "lyrics": lyrics}
    data = {"props": {"pageProps": {"songData": {"track": track}}}, "page": "/lyrics/[slug]"}
    return ('<html><head><script src="/app.js"></script></head><body><div id="__next"></div>'
            f'<script id="__NEXT_DATA__" type="application/json">{json.dumps(data)}</script></body></html>')


def _authors_query(seg: dict) -> tuple[str, str]:
    """(artist, song) as the authors' split and cleaning make them of the segment's title (by hand)."""
    _, artist, song = _TITLE_FORMATS[seg["format"]]
    return artist.format(a=seg["artist"]).lower(), song.format(s=seg["song"]).lower()


_GENIUS_ROLES = ("genius_miss", "wrong_match", "spanish", "flaky_song", "failing_song")


def _has_lyricfind_page(seg: dict, roles: dict) -> bool:
    """A clean title has a LyricFind page, unless its role is about Genius."""
    return (seg["format"] == len(_TITLE_FORMATS) - 1
            and not any(roles[r] is seg for r in _GENIUS_ROLES))


def _canned_answers(rng: np.random.Generator, segments: list[dict], extra: dict, roles: dict) -> dict:
    """``{"titles", "songs", "pages", "audio", "errors"}`` for the FakeClient, with each role's
    defect. Songs are canned under both queries (ours and the authors'); LyricFind pages under
    the authors' page name."""
    titles = {seg["ytid"]: _TITLE_FORMATS[seg["format"]][0].format(a=seg["artist"], s=seg["song"])
              for seg in segments}
    for seg in extra.values():
        titles[seg["ytid"]] = "Some Artist - Some Song"
    dup_song, dup_song_of = roles["dup_song"], roles["dup_song_of"]
    del titles[roles["removed"]["ytid"]]
    titles[roles["unparseable"]["ytid"]] = "my band practice 2012"
    titles[dup_song["ytid"]] = titles[dup_song_of["ytid"]]
    dup_song["artist"], dup_song["song"] = dup_song_of["artist"], dup_song_of["song"]
    dup_song["format"] = dup_song_of["format"]

    def keys(seg: dict) -> list[str]:
        artist, song = _authors_query(seg)
        return [f"{seg['artist']}|{seg['song']}".lower(), f"{artist}|{song}"]

    def slug(seg: dict) -> str:
        artist, song = _authors_query(seg)
        return f"{artist.replace(' ', '-')}-{song.replace(' ', '-')}"

    songs, audio, pages = {}, {}, {}
    for seg in segments:
        lines = list(rng.choice(_EN_LINES, size=6, replace=False))
        body = "\n".join(lines[:3]) + "\n\n[Chorus]\n" + "\n".join(lines[3:])
        for key in keys(seg):
            songs[key] = {"artist": seg["artist"], "title": seg["song"],
                          "lyrics": f"3 Contributors{seg['song']} Lyrics[Verse 1]\n{body}\n12Embed"}
        if _has_lyricfind_page(seg, roles):                          # a clean title: LyricFind has the page
            pages[slug(seg)] = _lyricfind_page("\n".join(lines))
        audio[seg["ytid"]] = "ok"
    for key in keys(roles["genius_miss"]):
        del songs[key]
    for key in keys(roles["wrong_match"]):
        songs[key]["artist"] = "A Tribute Band"
    spanish = (f"{roles['spanish']['song']} Lyrics\n" + "\n".join(rng.choice(_ES_LINES, size=6)))
    for key in keys(roles["spanish"]):
        songs[key]["lyrics"] = spanish
    errors = {segments[0]["ytid"]: [429]}
    for key in keys(roles["flaky_song"]):
        errors[key] = [429]
    for key in keys(roles["failing_song"]):
        errors[key] = [503] * 5
    pages[slug(roles["lyricfind_no_lyrics"])] = _lyricfind_page(None)
    pages[slug(roles["lyricfind_flaky"])] = _lyricfind_page("the page after a rate limit\nwe were young")
    errors["lyricfind|" + slug(roles["lyricfind_flaky"])] = [429]
    pages[slug(roles["lyricfind_down"])] = _lyricfind_page("never served")
    errors["lyricfind|" + slug(roles["lyricfind_down"])] = [503] * 5
    for role, kind in (("partial_audio", "partial"), ("broken_audio", "broken"), ("missing_audio", "missing")):
        audio[roles[role]["ytid"]] = kind
    return {"titles": titles, "songs": songs, "pages": pages, "audio": audio, "errors": errors}


def _write_segment_csvs(root: Path, rng: np.random.Generator, segments: list[dict], extra: dict) -> None:
    """``balanced_train_segments.csv`` and ``eval_segments.csv``, with repeats and malformed rows."""
    header = ["# Segments csv created Sun Mar  5 10:54:31 2017",
              "# num_ytids=30, num_segs=30, num_unique_labels=30, num_positive_labels=60",
              "# YTID, start_seconds, end_seconds, positive_labels"]

    def row(ytid: str, start: float, labels: str) -> str:
        return f'{ytid}, {start:.3f}, {start + 10:.3f}, "{labels}"'

    balanced = [row(s["ytid"], s["start"], s["labels"]) for s in segments[::2]]
    balanced += [row(s["ytid"], s["start"], s["labels"]) for s in extra.values()]
    balanced += ["tooShort1, 30.000", f'{_random_ytid(rng)}, abc, 40.000, "/m/064t9"',
                 '../../etc/x, 0.000, 10.000, "/m/064t9"']
    evaluation = [row(s["ytid"], s["start"], s["labels"]) for s in segments[1::2]]
    evaluation.append(row(segments[0]["ytid"], segments[0]["start"], segments[0]["labels"]))
    evaluation.append(row(segments[2]["ytid"], segments[2]["start"] + 100.0, segments[2]["labels"]))
    for name, rows in (("balanced_train_segments.csv", balanced), ("eval_segments.csv", evaluation)):
        (root / name).write_text("\n".join(header + rows) + "\n", encoding="utf-8")


def _audioset_expected(segments: list[dict], extra: dict, roles: dict) -> dict:
    """What each segment should become under each selection: its class, why it is not
    selected or dropped, or kept (and, the authors' way, which source gives its lyrics)."""
    def seg_id(seg: dict) -> str:
        return f"{seg['ytid']}_{int(round(seg['start'] * 1000))}"

    why = {"removed": "title", "unparseable": "title parse", "dup_song": "duplicate song",
           "genius_miss": "lyrics", "wrong_match": "lyrics", "spanish": "lyrics",
           "failing_song": "lyrics failed", "partial_audio": "audio failed",
           "broken_audio": "audio failed", "missing_audio": "audio failed"}
    dropped = {seg_id(roles[role]): reason for role, reason in why.items()}
    dropped_authors = dict(dropped)
    for seg in segments:          # the authors' artist keeps "ft. Guest": Genius' artist differs, no page
        if seg["format"] == _FEAT_IN_ARTIST and seg["authors_class"] is not None:
            dropped_authors.setdefault(seg_id(seg), "lyrics")
    kept_authors = sorted(seg_id(s) for s in segments
                          if s["authors_class"] is not None and seg_id(s) not in dropped_authors)
    lyricfind = {seg_id(s) for s in segments if _has_lyricfind_page(s, roles)}
    lyricfind.add(seg_id(roles["lyricfind_flaky"]))
    return {"classes": {seg_id(s): s["class"] for s in segments},
            "classes_authors": {seg_id(s): s["authors_class"] for s in segments},
            "not_selected": {seg_id(s): name for name, s in extra.items()},
            "dropped": dropped, "dropped_authors": dropped_authors,
            "kept": sorted(seg_id(s) for s in segments if s["class"] is not None and seg_id(s) not in dropped),
            "kept_authors": kept_authors,
            "lyrics_source_authors": {i: ("lyricfind" if i in lyricfind else "genius") for i in kept_authors}}
