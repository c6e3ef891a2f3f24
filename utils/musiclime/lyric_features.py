"""Interpretable features of one song's lyrics, as lime's text explainer makes them.

:class:`WordFeatures` wraps ``lime.lime_text.IndexedString`` (split on ``r'\\W+'``, bag of
words: one feature per distinct word, switching it off removes every occurrence);
:class:`LineFeatures` has one feature per distinct lyric line. Both compose texts from masks:
``compose(masks) -> list[str]``.

Both take ``visible_chars``: how many leading characters the model's token window holds
(:meth:`utils.dataset_related.text.TokenCache.visible_chars`). A word or line whose every
occurrence starts past it is not a feature: it stays in every composed text, as the model
never sees it in the original, and gets no weight (``excluded`` names them).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from utils.musiclime.factorization import check_masks


class WordFeatures:
    """One feature per distinct word, exactly as lime's text explainer (and the paper).

    Wraps ``lime.lime_text.IndexedString(lyrics, split_expression=r'\\W+', bow=True)``:
    removing a word removes every occurrence and keeps the separators around it.

    Parameters
    ----------
    lyrics : str
        Lines separated by ``"\\n"``.
    visible_chars : int, optional
        Leading characters inside the model's token window; words wholly past it are kept
        intact and are not features (see the module doc). None: every word is a feature.
    """

    unit = "words"

    def __init__(self, lyrics: str, visible_chars: int | None = None):
        from lime.lime_text import IndexedString

        if not isinstance(lyrics, str):
            raise TypeError(f"lyrics must be a str, got {type(lyrics).__name__}")
        self.lyrics = lyrics
        self.indexed_string = IndexedString(lyrics, split_expression=r"\W+", bow=True)
        starts = np.cumsum([0] + [len(piece) for piece in self.indexed_string.as_list])
        limit = np.inf if visible_chars is None else visible_chars
        words = [str(word) for word in self.indexed_string.inverse_vocab]
        first = [starts[min(positions)] for positions in self.indexed_string.positions]
        self._columns = [j for j in range(len(words)) if first[j] < limit]      # vocabulary index per feature
        self.excluded = [words[j] for j in range(len(words)) if first[j] >= limit]

    @property
    def names(self) -> list[str]:
        return [str(self.indexed_string.inverse_vocab[j]) for j in self._columns]

    @property
    def n_features(self) -> int:
        return len(self._columns)

    def piece_owner(self) -> np.ndarray:
        """Feature index of each piece of ``indexed_string.as_list``; ``n_features`` for pieces always kept."""
        owner = np.full(len(self.indexed_string.as_list), self.n_features)
        for feature, word in enumerate(self._columns):
            owner[self.indexed_string.positions[word]] = feature
        return owner

    def compose(self, masks: Any) -> list[str]:
        """Texts for 0/1 ``masks`` of shape ``(n_rows, n_features)``: words with 0 are removed."""
        masks = check_masks(masks, self.n_features, binary=True)
        columns = np.asarray(self._columns, dtype=int)
        return [self.indexed_string.inverse_removing(columns[np.flatnonzero(row == 0)]) for row in masks]

    def spans(self) -> list[tuple[str, int | None]]:
        """The lyrics as consecutive ``(text, feature index or None)`` pieces (for rendering)."""
        owner = self.piece_owner()
        return [(str(piece), int(f) if f < self.n_features else None)
                for piece, f in zip(self.indexed_string.as_list, owner)]


class LineFeatures:
    """One feature per distinct non-blank lyric line; switching it off drops every occurrence.

    Lines are compared after stripping surrounding whitespace (a repeated chorus line is
    one feature); blank lines, and lines wholly past ``visible_chars``, are kept as they are.
    """

    unit = "lines"

    def __init__(self, lyrics: str, visible_chars: int | None = None):
        if not isinstance(lyrics, str):
            raise TypeError(f"lyrics must be a str, got {type(lyrics).__name__}")
        self.lyrics = lyrics
        self.lines = lyrics.split("\n")
        limit = np.inf if visible_chars is None else visible_chars
        starts = np.cumsum([0] + [len(line) + 1 for line in self.lines])
        visible = {line.strip() for line, start in zip(self.lines, starts) if start < limit}
        vocabulary: dict[str, int] = {}
        self.line_feature: list[int | None] = []
        for line in self.lines:
            key = line.strip()
            self.line_feature.append(vocabulary.setdefault(key, len(vocabulary)) if key and key in visible else None)
        self._names = list(vocabulary)
        self.excluded = sorted({line.strip() for line in self.lines if line.strip() and line.strip() not in visible})

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def n_features(self) -> int:
        return len(self._names)

    def compose(self, masks: Any) -> list[str]:
        """Texts for 0/1 ``masks`` of shape ``(n_rows, n_features)``: lines with 0 are dropped."""
        masks = check_masks(masks, self.n_features, binary=True)
        return ["\n".join(line for line, f in zip(self.lines, self.line_feature) if f is None or row[f] == 1)
                for row in masks]

    def spans(self) -> list[tuple[str, int | None]]:
        pieces: list[tuple[str, int | None]] = []
        for i, (line, feature) in enumerate(zip(self.lines, self.line_feature)):
            pieces.append((line, feature))
            if i < len(self.lines) - 1:
                pieces.append(("\n", None))
        return pieces


TEXT_UNITS = {"words": WordFeatures, "lines": LineFeatures}


def text_features(lyrics: str, unit: str = "words", visible_chars: int | None = None) -> WordFeatures | LineFeatures:
    """Lyric features of ``lyrics`` by ``unit`` (``'words'``, the paper's, or ``'lines'``); see the classes."""
    if unit not in TEXT_UNITS:
        raise ValueError(f"unit must be one of {sorted(TEXT_UNITS)}, got {unit!r}")
    return TEXT_UNITS[unit](lyrics, visible_chars)
