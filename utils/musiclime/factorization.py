"""Interpretable features of one song's audio: factorizations (lyrics: :mod:`utils.musiclime.lyric_features`).

Audio follows audioLIME's design: a :class:`Factorization` holds the components of one clip
and composes model inputs from a selection of them. Here the verb is batched:
``compose(masks)`` turns an ``(n_rows, n_components)`` matrix of 0/1 (or float) switches
into ``(n_rows, samples)`` waveforms with one matrix product ``masks @ components_matrix``.

* :class:`SourceSeparationSegments` -- the paper's components: separator stems x equal
  temporal segments, segment-major (index = segment * 4 + stem; names ``vocals0, drums0,
  bass0, other0, vocals1, ...``).
* :class:`TimeSegments` -- time-only segmentation (audioLIME's ``TimeOnlyFactorization``),
  names ``segment0, segment1, ...``.

Segmentation drops trailing samples that do not fill a segment (as the paper and audioLIME
do): a clip of ``N`` samples with ``K`` segments has segments of ``N // K`` samples and every
composed waveform has ``K * (N // K)`` samples -- the first ``K * (N // K)`` samples of the
clip (``Factorization.waveform``). Composing all components reproduces that truncated clip;
composing none gives silence.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.config import STEMS, component_name
from utils.musiclime.separation import Separator, check_sample_rate, check_stems, check_waveform


# ---------------------------------------------------------------- helpers
def check_masks(masks: Any, n_columns: int, name: str = "masks", binary: bool = False) -> np.ndarray:
    """Validate a 2-D ``(n_rows, n_columns)`` switch matrix; return it as float32.

    ``binary=True`` also requires every entry to be 0 or 1 (text cannot be half removed).
    """
    try:
        array = np.asarray(masks)
    except Exception as error:
        raise TypeError(f"{name} must be a numeric array: {error}") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be a numeric or boolean array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_rows, {n_columns}), got shape {array.shape}; "
                         "use masks[None, :] for a single row")
    if array.shape[1] != n_columns:
        raise ValueError(f"{name} has {array.shape[1]} columns, expected {n_columns} (one per feature)")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    if binary and not np.all((array == 0) | (array == 1)):
        raise ValueError(f"{name} must contain only 0 and 1")
    return array


def segment_bounds(length: int, num_segments: int) -> list[tuple[int, int]]:
    """Equal segments ``[(start, end), ...]`` in samples; trailing ``length % num_segments`` dropped."""
    if isinstance(num_segments, bool) or not isinstance(num_segments, (int, np.integer)):
        raise TypeError(f"num_segments must be an int, got {type(num_segments).__name__}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    segment_len = int(length) // int(num_segments)
    if segment_len == 0:
        raise ValueError(f"waveform has {length} samples, fewer than num_segments={num_segments}; "
                         "use a longer clip or fewer segments")
    return [(k * segment_len, (k + 1) * segment_len) for k in range(int(num_segments))]


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.setflags(write=False)
    return array


# ---------------------------------------------------------------- audio
@dataclass(frozen=True)
class AudioComponent:
    """One audio feature: a stem (or the whole mix) inside one temporal segment.

    ``start`` / ``end`` are sample indices (end exclusive) at ``sample_rate`` Hz.
    """

    index: int
    name: str
    stem: str | None
    segment: int
    start: int
    end: int
    sample_rate: int

    @property
    def start_seconds(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_seconds(self) -> float:
        return self.end / self.sample_rate


class Factorization:
    """Audio components of one clip and the verb that composes model inputs from them.

    Parameters
    ----------
    components_matrix : np.ndarray, shape (n_components, samples)
        Row ``i`` is component ``i`` as a waveform (zeros outside its segment).
    components : sequence of AudioComponent
        Metadata, ``components[i].index == i``.
    sample_rate : int
        Hz.
    waveform : np.ndarray, shape (samples,)
        The (truncated) clip the components explain.

    Nothing changes after construction: the arrays are read-only.
    """

    def __init__(self, components_matrix: np.ndarray, components: Sequence[AudioComponent],
                 sample_rate: int, waveform: np.ndarray):
        matrix = np.asarray(components_matrix)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise ValueError(f"components_matrix must have shape (n_components>0, samples), got {matrix.shape}")
        if len(components) != matrix.shape[0]:
            raise ValueError(f"{len(components)} components for {matrix.shape[0]} matrix rows")
        if [c.index for c in components] != list(range(len(components))):
            raise ValueError("components[i].index must equal i")
        if np.shape(waveform) != (matrix.shape[1],):
            raise ValueError(f"waveform has shape {np.shape(waveform)}, expected ({matrix.shape[1]},)")
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError("component names must be unique")
        self._matrix = _read_only(matrix)
        self._components = tuple(components)
        self._sample_rate = check_sample_rate(sample_rate)
        self._waveform = _read_only(waveform)

    # read-only views
    @property
    def components_matrix(self) -> np.ndarray:
        """``(n_components, samples)`` float32, read-only."""
        return self._matrix

    @property
    def components(self) -> tuple[AudioComponent, ...]:
        return self._components

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._components]

    @property
    def n_components(self) -> int:
        return self._matrix.shape[0]

    @property
    def length(self) -> int:
        """Length of every composed waveform (samples)."""
        return self._matrix.shape[1]

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def waveform(self) -> np.ndarray:
        """The truncated clip, ``(samples,)`` float32: what composing all components gives."""
        return self._waveform

    def compose(self, masks: Any) -> np.ndarray:
        """Compose model inputs from component switches.

        Parameters
        ----------
        masks : array-like, shape (n_rows, n_components)
            1 keeps a component, 0 drops it; floats scale it.

        Returns
        -------
        np.ndarray, shape (n_rows, samples), float32
            ``masks @ components_matrix``: row ``r`` is the sum of the components switched on
            in ``masks[r]`` (silence if none).
        """
        return check_masks(masks, self.n_components) @ self._matrix

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_components={self.n_components}, length={self.length}, "
                f"sample_rate={self.sample_rate})")


class SourceSeparationSegments(Factorization):
    """The paper's audio components: 4 stems x ``num_segments`` equal temporal segments.

    Component ``segment * 4 + stem_index`` is that stem inside that segment, zeros
    elsewhere; names ``vocals0, drums0, bass0, other0, vocals1, ...``.

    Parameters
    ----------
    waveform : np.ndarray, shape (samples,)
        Mono clip (float, finite, not silent).
    sample_rate : int
        Hz.
    separator : Separator, optional
        Any :mod:`utils.musiclime.separation` separator (wrap it in ``CachedSeparator`` to separate
        each track once). Give either ``separator`` or ``stems``.
    stems : mapping, optional
        Precomputed ``{stem: (samples,)}`` for all four :data:`STEMS`.
    num_segments : int
        Temporal segments (paper: 10); trailing samples that do not fill one are dropped.
    track_id : str, optional
        Passed to the separator (the oracle needs it).
    residual_to_other : bool
        Add ``waveform - sum(stems)`` to ``other`` so all components reproduce the clip
        even for a separator whose stems do not sum to the mixture (Open-Unmix). Default
        False, as the paper (its unperturbed input is the sum of the stems).

    Attributes
    ----------
    stems : dict[str, np.ndarray]
        The truncated stems, read-only.
    reconstruction_error : float
        ``max |sum of all components - waveform|`` (0 up to float32 rounding for the oracle
        and HPSS separators).
    separator_name : str
    """

    def __init__(self, waveform: np.ndarray, sample_rate: int, separator: Separator | None = None, *,
                 stems: Mapping[str, np.ndarray] | None = None, num_segments: int = 10,
                 track_id: str | None = None, residual_to_other: bool = False):
        waveform = check_waveform(waveform)
        sample_rate = check_sample_rate(sample_rate)
        bounds = segment_bounds(waveform.shape[0], num_segments)
        if (separator is None) == (stems is None):
            raise ValueError("give exactly one of separator= or stems=")
        if separator is not None:
            if not callable(getattr(separator, "separate", None)):
                raise TypeError("separator must have a separate(waveform, sample_rate) method, "
                                f"got {type(separator).__name__}")
            stems = separator.separate(waveform, sample_rate, track_id=track_id)
            separator_name = getattr(separator, "name", type(separator).__name__)
        else:
            separator_name = "precomputed"
        stems = check_stems(stems, waveform.shape[0], "stems")
        if residual_to_other:
            stems["other"] = (stems["other"] + (waveform - sum(stems[s] for s in STEMS))).astype(np.float32)

        explained = bounds[-1][1]
        n_stems = len(STEMS)
        matrix = np.zeros((len(bounds) * n_stems, explained), dtype=np.float32)
        components = []
        for segment, (start, end) in enumerate(bounds):
            for j, stem in enumerate(STEMS):
                index = segment * n_stems + j
                matrix[index, start:end] = stems[stem][start:end]
                components.append(AudioComponent(index, component_name(stem, segment), stem, segment,
                                                 start, end, sample_rate))
        truncated = waveform[:explained]
        super().__init__(matrix, components, sample_rate, truncated)
        self.num_segments = len(bounds)
        self.segment_length = bounds[0][1]
        self.separator_name = separator_name
        self.stems = {s: _read_only(stems[s][:explained]) for s in STEMS}
        self.reconstruction_error = float(np.max(np.abs(sum(self.stems[s] for s in STEMS) - truncated)))


class TimeSegments(Factorization):
    """Time-only components (no separation): segment ``k`` of the clip, names ``segment0, ...``.

    Parameters
    ----------
    waveform : np.ndarray, shape (samples,)
    sample_rate : int
        Hz.
    num_segments : int
        Equal segments; trailing samples that do not fill one are dropped.
    """

    def __init__(self, waveform: np.ndarray, sample_rate: int, num_segments: int = 10):
        waveform = check_waveform(waveform)
        sample_rate = check_sample_rate(sample_rate)
        bounds = segment_bounds(waveform.shape[0], num_segments)
        explained = bounds[-1][1]
        matrix = np.zeros((len(bounds), explained), dtype=np.float32)
        components = []
        for segment, (start, end) in enumerate(bounds):
            matrix[segment, start:end] = waveform[start:end]
            components.append(AudioComponent(segment, f"segment{segment}", None, segment, start, end, sample_rate))
        super().__init__(matrix, components, sample_rate, waveform[:explained])
        self.num_segments = len(bounds)
        self.segment_length = bounds[0][1]
        self.separator_name = None
