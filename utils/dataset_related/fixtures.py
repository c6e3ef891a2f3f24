"""Small inputs in the real formats, for tests, CI and the notebooks' fixture mode.

Each writer puts a few dozen songs (with deliberate defects, one of each kind the pipelines
must survive) in a folder, plus ``expected.json`` saying what each item should become:

* :func:`write_music4all_fixture` -- raw Music4All (for :func:`utils.dataset_related.music4all.build_m4a`);
* :func:`utils.dataset_related.fixtures_published.write_published_fixture` -- the authors' published
  M4A release, in their exact layout (for
  :func:`utils.dataset_related.music4all_published.import_published_split`);
* :func:`write_audioset_fixture` -- AudioSet's segment CSVs and ontology, and the canned network
  answers of :class:`utils.dataset_related.net_clients.FakeClient`
  (for :func:`utils.dataset_related.audioset.build_audioset`).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np


# ================================================================== Music4All
# (tag list, class expected by reading the rules by hand) -- the fixture songs cycle through these.
FIXTURE_TAGS: tuple[tuple[str, str | None], ...] = (
    ("pop", "pop"), ("indie pop,pop,indie", "pop"), ("synthpop", "pop"), ("classic rock,rock", "rock"),
    ("rock,classic rock,blues", "rock"), ("hard rock,rock", "rock"),
    ("alternative rock,rock,indie", "alternative rock"), ("indie rock,rock", "alternative rock"),
    ("grunge,rock", "alternative rock"), ("soul,rhythm and blues", "rhythm music"),
    ("jazz,blues", "rhythm music"), ("reggae,ska", "rhythm music"), ("house,electronic", "electronic"),
    ("electronic,pop", "electronic"), ("techno", "electronic"), ("hip hop,rap", "hip hop"),
    ("rap,hip hop,trap music", "hip hop"), ("trap music", "hip hop"), ("folk,indie folk", "folk"),
    ("country", "folk"), ("singer-songwriter,folk", "folk"), ("metal,heavy metal", "heavy music"),
    ("metalcore,metal", "heavy music"), ("hardcore,punk", "heavy music"), ("post-punk,new wave", "punk"),
    ("punk", "punk"), ("synthpop,new wave", "punk"), ("pop,rock", None), ("classical,piano", None),
    ("soundtrack", None),
)

_WORDS = ("love night heart fire road rain dance light dream city sky river gold storm "
          "home baby time world money street summer winter shadow ocean thunder").split()
_PT_LINES = ("eu quero ver o mar contigo", "a saudade nao me deixa dormir",
             "meu coracao e teu para sempre", "na rua da cidade a chuva cai devagar")


def _unique_ids(rng: np.random.Generator, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        candidate = _fixture_id(rng)
        if candidate not in ids:
            ids.append(candidate)
    return ids


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


def write_music4all_fixture(directory: str | Path, seed: int = 0, repeats: int = 2,
                            audio_seconds: float = 5.0, sample_rate: int = 22_050) -> Path:
    """Write a small raw Music4All in the real formats (for tests, CI and the notebooks).

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
    rng = np.random.default_rng(seed)
    root = Path(directory)
    (root / "lyrics").mkdir(parents=True, exist_ok=True)
    (root / "audios").mkdir(parents=True, exist_ok=True)
    tags = [t for _ in range(repeats) for t in FIXTURE_TAGS]
    ids = _unique_ids(rng, len(tags))
    defects = _music4all_defects(rng, ids, tags)
    lyrics_of = {song_id: _english_lyrics(rng) for song_id in ids}
    dup_source = next(i for i in ids if i not in defects and tags[ids.index(i)][1] is not None)
    _write_music4all_tables(root, rng, ids, tags, defects)
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
    _write_music4all_audio(root / "audios", rng, ids, defects, audio_seconds, sample_rate)
    expected = {"ids": ids, "tags": [t for t, _ in tags], "classes": [c for _, c in tags],
                "defects": defects, "duplicate_lyrics_of": dup_source}
    (root / "expected.json").write_text(json.dumps(expected, indent=1), encoding="utf-8")
    return root


def _music4all_defects(rng: np.random.Generator, ids: list[str], tags: list[tuple]) -> dict[str, str]:
    """``{id: defect}``, on songs of classes that still keep >= 3 clean songs."""
    order = rng.permutation(len(ids))
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
    return defects


def _write_music4all_tables(root: Path, rng: np.random.Generator, ids: list[str], tags: list[tuple],
                            defects: dict[str, str]) -> None:
    """``id_genres.csv``, ``id_lang.csv`` and ``id_metadata.csv``, each with a malformed row."""
    genre_rows = [f"{song_id}\t{tag_list}" for song_id, (tag_list, _) in zip(ids, tags)]
    genre_rows += [f"{ids[0]}\t{tags[0][0]}",                 # duplicate id
                   "brokenrow01\trock\textra\tfields",         # too many fields
                   "\tpop"]                                   # empty id
    langs = {"lang_pt": "pt", "lang_es": "es"}
    lang_rows = [f"{song_id}\t{langs.get(defects.get(song_id), 'en')}"
                 for song_id in ids if defects.get(song_id) != "lang_missing"]
    lang_rows.append("x\ty\tz\tw")                            # too many fields
    cols = ["id", "spotify_id", "popularity", "release", "danceability", "energy", "key",
            "mode", "valence", "tempo", "duration_ms"]
    meta_rows = []
    for song_id in ids:
        kind = defects.get(song_id)
        valence = "" if kind == "valence_missing" else f"{rng.uniform(0, 1):.3f}"
        energy = "n/a" if kind == "energy_bad" else f"{rng.uniform(0, 1):.3f}"
        row = [song_id, _fixture_id(rng)[:22], str(int(rng.integers(0, 100))),
               str(int(rng.integers(1960, 2020))), f"{rng.uniform(0, 1):.3f}", energy,
               str(int(rng.integers(0, 12))), str(int(rng.integers(0, 2))), valence,
               f"{rng.uniform(60, 180):.3f}", str(int(rng.integers(120000, 300000)))]
        meta_rows.append("\t".join(row))
    meta_rows.append("\t".join(["tooManyCols"] + ["1"] * 12))
    for name, header, rows in (("id_genres.csv", "id\tgenres", genre_rows), ("id_lang.csv", "id\tlang", lang_rows),
                               ("id_metadata.csv", "\t".join(cols), meta_rows)):
        (root / name).write_text("\n".join([header] + rows) + "\n", encoding="utf-8")


def _write_music4all_audio(audio_dir: Path, rng: np.random.Generator, ids: list[str], defects: dict[str, str],
                           audio_seconds: float, sample_rate: int) -> None:
    import soundfile as sf

    for song_id in ids:
        kind = defects.get(song_id)
        path = audio_dir / f"{song_id}.mp3"
        if kind == "audio_missing":
            continue
        if kind == "audio_broken":
            path.write_bytes(b"ID3" + bytes(rng.integers(0, 256, size=2000, dtype=np.uint8)))
            continue
        sf.write(str(path), _tone(rng, audio_seconds, sample_rate), sample_rate, format="MP3")


from utils.dataset_related.fixtures_audioset import write_audioset_fixture  # noqa: E402,F401 -- re-exported
