"""A small copy of the authors' published M4A release, in their exact layout and formats.

For tests, CI and notebook 02's fixture mode; read by
:func:`utils.dataset_related.music4all_published.import_published_split`. What their notebooks
wrote, reproduced: ``final_split/{train,val,test}.json`` (JSON lines, ``DataFrame.to_json(orient=
'records', lines=True)``), ``spectogram_pikles/batch_{i}.pkl`` (a plain ``pickle.dump`` of
``{id: torch.FloatTensor}`` per batch of songs), ``tokenized_texts.json`` (their
``DataPreprocessor``: preprocessed lyrics, ``max_length`` tokens, ``padding='max_length'``,
truncation), ``audios/<id>.mp3`` for the Music4All songs and ``new_audios/<id>.mp3`` for the songs
they added from Spotify (``id == spotify_id``).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from utils.config import EMOTIONS, GENRES, SPLITS
from utils.dataset_related.fixtures import _tone, _unique_ids
from utils.dataset_related.text import TOKEN_FILE, authors_preprocess, load_tokenizer, train_tokenizer

_WORDS = ("Love Night heart FIRE road rain Dance light dream city sky river gold storm home baby time "
          "world money street summer winter shadow ocean thunder").split()
_MARKS = (",", "!", "?", "...", " -", ":", ";", "'s", "")
ROLES = {1: "unknown genre class", 2: "unknown emotion class", 4: "lyrics empty", 6: "missing or unsafe id",
         8: f"no tokens in {TOKEN_FILE}", 10: "audio and spectrogram both missing"}
"""Song index -> why the import must drop it (plus the malformed line and the repeated id)."""
KEPT_ROLES = {12: "no spectrogram (audio only)", 14: "no audio (spectrogram only)",
              16: "undecodable audio (spectrogram only)", 9: "Spotify-added, no spectrogram (audio in new_audios/)"}
"""Song index -> a defect the import must survive, keeping the song."""
UNSAFE_ID = "../../outside/x"


def _lyrics(rng: np.random.Generator, lines: int = 6) -> str:
    """Lyrics with capitals and punctuation, so that the authors' preprocessing changes them."""
    out = []
    for k in range(lines):
        words = [str(w) + str(rng.choice(_MARKS)) for w in rng.choice(_WORDS, size=5)]
        out.append(f"I {words[0]} the {words[1]}\tand {words[2]} of {words[3]} {words[4]}")
        if k == 2:
            out.append("")
    return "\n".join(out)


def _spotify_id(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), size=22))


def _records(rng: np.random.Generator, count: int) -> tuple[list[dict], list[int]]:
    """The songs (their columns) with the defects of :data:`ROLES`; and the Spotify-added indices."""
    ids = _unique_ids(rng, count)
    spotify = [k for k in range(count) if k % 6 == 3]
    records = []
    for k, song_id in enumerate(ids):
        song_id = _spotify_id(rng) if k in spotify else song_id
        records.append({"id": song_id, "spotify_id": song_id if k in spotify else _spotify_id(rng),
                        "lyrics": _lyrics(rng), "primary_short": GENRES[k % len(GENRES)],
                        "emotion": EMOTIONS[(k * 4) % len(EMOTIONS)], "valence": round(float(rng.uniform()), 3),
                        "energy": round(float(rng.uniform()), 3)})
    records[1]["primary_short"] = "polka"
    records[2]["emotion"] = "Bored"
    records[4]["lyrics"] = "  \n "
    records[6]["id"] = UNSAFE_ID
    return records, spotify


def _tokens(records: list[dict], root: Path, tokenizer, max_tokens: int) -> dict:
    """``tokenized_texts.json`` as their notebook made it (the tokenizer: given, or trained here)."""
    texts = [authors_preprocess(r["lyrics"]) for r in records]
    if tokenizer is None:            # a stand-in for roberta-large, saved beside the release
        tokenizer = train_tokenizer(texts, root / "tokenizer", vocab_size=400)
    elif isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    rows = {}
    for k, (rec, text) in enumerate(zip(records, texts)):
        if k == 8:
            continue
        enc = tokenizer(text, None, add_special_tokens=True, max_length=max_tokens, padding="max_length",
                        return_token_type_ids=True, truncation=True)
        rows[rec["id"]] = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return rows


def write_published_fixture(directory: str | Path, seed: int = 0, sizes: tuple[int, int, int] = (18, 9, 9),
                            spectrogram_shape: tuple[int, ...] = (1, 1024, 128), batch_size: int = 10,
                            tokenizer=None, max_tokens: int = 256, audio_seconds: float = 3.0,
                            sample_rate: int = 22_050) -> Path:
    """Write a small copy of the authors' published release in their layout; returns its folder.

    Parameters
    ----------
    sizes : (train, val, test) songs; train must hold at least 18 (the defects live there).
    spectrogram_shape : each song's tensor (theirs: (1, 1024, 128); smaller frames for speed, with a
        profile of that shape).
    batch_size : songs per ``batch_{i}.pkl`` (theirs: 5000).
    tokenizer : a Hugging Face tokenizer or its folder; None trains a small byte-level BPE one
        (RoBERTa format) on the preprocessed lyrics and saves it in ``<directory>/tokenizer``
        (not part of their release: the stand-in for roberta-large, for a profile's
        ``tokenizer_source``).
    max_tokens : tokens per row of ``tokenized_texts.json`` (theirs: 256).

    Defects: those of :data:`ROLES` (dropped), of :data:`KEPT_ROLES` (kept), one malformed line in
    ``train.json``, one train song repeated in ``test.json``, and a spectrogram of an id that is in
    no split. ``expected.json`` says what each line must become.
    """
    if sizes[0] < 18:
        raise ValueError(f"write_published_fixture: the train split needs at least 18 songs, got {sizes}")
    rng = np.random.default_rng(seed)
    root = Path(directory)
    records, spotify = _records(rng, sum(sizes))
    bounds = np.cumsum((0,) + tuple(sizes))
    parts = {s: records[bounds[i]:bounds[i + 1]] for i, s in enumerate(SPLITS)}
    parts["test"] = parts["test"] + [dict(parts["train"][5])]            # an id repeated across splits
    (root / "final_split").mkdir(parents=True, exist_ok=True)
    for split, rows in parts.items():
        text = pd.DataFrame(rows).to_json(orient="records", lines=True)
        text = text if text.endswith("\n") else text + "\n"
        (root / "final_split" / f"{split}.json").write_text(text + ("{not json\n" if split == "train" else ""),
                                                             encoding="utf-8")
    (root / TOKEN_FILE).write_text(json.dumps(_tokens(records, root, tokenizer, max_tokens)), encoding="utf-8")
    _write_spectrogram_batches(root, rng, records, spectrogram_shape, batch_size)
    _write_audio(root, rng, records, spotify, audio_seconds, sample_rate)
    (root / "expected.json").write_text(json.dumps(_expected(records, spotify, parts), indent=1), encoding="utf-8")
    return root


def _write_spectrogram_batches(root: Path, rng: np.random.Generator, records: list[dict], shape: tuple[int, ...],
                               batch_size: int) -> None:
    """``spectogram_pikles/batch_{i}.pkl``: plain ``pickle.dump`` of ``{id: torch.FloatTensor}``, as theirs."""
    import torch

    folder = root / "spectogram_pikles"
    folder.mkdir(parents=True, exist_ok=True)
    have = [r["id"] for k, r in enumerate(records) if k not in (9, 10, 12)]
    have.append("notInAnySplit0001")
    for start in range(0, len(have), batch_size):
        batch = {song_id: torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
                 for song_id in have[start:start + batch_size]}
        with open(folder / f"batch_{start}.pkl", "wb") as handle:
            pickle.dump(batch, handle)


def _write_audio(root: Path, rng: np.random.Generator, records: list[dict], spotify: list[int], seconds: float,
                 sample_rate: int) -> None:
    """``audios/<id>.mp3`` (Music4All) and ``new_audios/<id>.mp3`` (Spotify-added) tones."""
    import soundfile as sf

    for folder in ("audios", "new_audios"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for k, rec in enumerate(records):
        if k in (10, 14) or rec["id"] == UNSAFE_ID:
            continue
        path = root / ("new_audios" if k in spotify else "audios") / f"{rec['id']}.mp3"
        if k == 16:
            path.write_bytes(b"ID3" + bytes(rng.integers(0, 256, size=2000, dtype=np.uint8)))
            continue
        sf.write(str(path), _tone(rng, seconds, sample_rate), sample_rate, format="MP3")


def _expected(records: list[dict], spotify: list[int], parts: dict) -> dict:
    """What the import must make of each line: imported ids per split, dropped ones by reason, notes."""
    dropped = {reason: [records[k]["id"]] for k, reason in ROLES.items()}
    dropped["malformed line in split file"] = ["train.json line %d" % (len(parts["train"]) + 1)]
    dropped["duplicate id"] = [parts["test"][-1]["id"]]
    gone = {records[k]["id"] for k in ROLES}
    imported = {split: [r["id"] for r in rows if r["id"] not in gone] for split, rows in parts.items()}
    imported["test"] = imported["test"][:-1]                               # the repeated id
    return {"lines": sum(len(rows) for rows in parts.values()) + 1, "imported": imported, "dropped": dropped,
            "kept_with_defects": {records[k]["id"]: why for k, why in KEPT_ROLES.items()},
            "spotify": [records[k]["id"] for k in spotify]}
