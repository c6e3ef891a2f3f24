"""One look for every figure: how figures are saved, and the colours they use.

Every ``plot_*`` function in the project returns its matplotlib ``Figure`` and, given
``save_path``, saves it with :func:`save_figure`: PNG (or the format the suffix names) at
:data:`DPI` dots per inch, tight bounding box, parents created, written atomically (a crash
never leaves half a PNG). Colours:

* :data:`SIGNED_CMAP` -- signed local weights (red against the class, green for it), centred on 0;
* :data:`MAGNITUDE_CMAP` -- non-negative global importances (the authors' dark grey -> pale teal);
* :data:`SPECTROGRAM_CMAP` -- spectrograms and model inputs;
* :data:`MODALITY_COLOURS` -- audio vs lyrics bars.

The two weight drawings every explanation needs live here too (:func:`plot_weight_grid`,
:func:`plot_signed_bars`), so ``Explanation.plot_*`` and the figures of a global run draw alike.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.io import atomic_path

DPI = 150
SIGNED_CMAP = "RdYlGn"
SPECTROGRAM_CMAP = "magma"
MAGNITUDE_COLOURS = ("#373e40", "#b7d5d4")
"""Dark grey (low) to pale teal (high), sampled from the authors' colour bars."""
MODALITY_COLOURS = {"audio": "tab:blue", "lyrics": "tab:orange"}


def magnitude_cmap():
    """The authors' heatmap colour map (:data:`MAGNITUDE_COLOURS`) as a matplotlib colormap."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("musiclime", list(MAGNITUDE_COLOURS))


def save_figure(fig, save_path: str | os.PathLike | None):
    """Save ``fig`` to ``save_path`` (when given) at :data:`DPI`, tight; returns ``fig``."""
    if save_path is not None:
        save_path = Path(save_path)
        image_format = save_path.suffix.lstrip(".").lower() or "png"
        with atomic_path(save_path) as part:
            fig.savefig(part, dpi=DPI, bbox_inches="tight", format=image_format)
    return fig


def text_colour(rgba) -> str:
    """Black on light cells, white on dark ones (seaborn's relative-luminance rule)."""
    from matplotlib.colors import to_rgb

    rgb = np.asarray(to_rgb(rgba))
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return "black" if float(linear @ [0.2126, 0.7152, 0.0722]) > 0.408 else "white"


def plot_weight_grid(grid: np.ndarray, rows: Sequence[str], title: str,
                     save_path: str | os.PathLike | None = None, uncertain: np.ndarray | None = None):
    """Signed weights on a (stems, segments) grid, annotated, centred colour scale.

    Parameters
    ----------
    grid : ndarray, shape (n_stems, n_segments)
        Surrogate weights (unitless; change of the class probability per component kept).
    rows : sequence of str
        Row labels (stem names).
    uncertain : ndarray of bool, shape (n_stems, n_segments), optional
        Cells whose weight is not established (e.g. its 95 % interval contains 0): hatched,
        and their value printed with a trailing ``?``.
    """
    import matplotlib.pyplot as plt

    grid = np.asarray(grid, dtype=float)
    scale = float(np.max(np.abs(grid))) if grid.size else 0.0
    scale = scale or 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * grid.shape[1], 1.2 + 0.5 * len(rows)))
    image = ax.imshow(grid, cmap=SIGNED_CMAP, vmin=-scale, vmax=scale, aspect="auto")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xticks(range(grid.shape[1]), [str(k) for k in range(grid.shape[1])])
    ax.set_xlabel("segment")
    if uncertain is not None:
        uncertain = np.asarray(uncertain, dtype=bool)
        if uncertain.shape != grid.shape:
            raise ValueError(f"uncertain has shape {uncertain.shape}, the grid {grid.shape}")
    for (r, c), value in np.ndenumerate(grid):
        flagged = uncertain is not None and uncertain[r, c]
        colour = text_colour(image.cmap(image.norm(value)))
        if flagged:
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", edgecolor=colour,
                                       linewidth=0, alpha=0.35))
        ax.text(c, r, f"{value:.2g}" + ("?" if flagged else ""), ha="center", va="center", fontsize=7, color=colour)
    if uncertain is not None and uncertain.any():
        title = f"{title}\n(hatched, ?: interval contains 0)"
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="weight")
    fig.tight_layout()
    return save_figure(fig, save_path)


def plot_signed_bars(names: Sequence[str], weights: Sequence[float], modalities: Sequence[str], title: str,
                     save_path: str | os.PathLike | None = None,
                     intervals: Sequence[tuple[float, float]] | None = None):
    """Horizontal bars of signed weights, coloured by each feature's modality, first name on top.

    ``intervals`` (optional, one ``(low, high)`` per bar, e.g. the 95 % interval of each weight)
    are drawn as error bars.
    """
    import matplotlib.pyplot as plt

    if not (len(names) == len(weights) == len(modalities)):
        raise ValueError(f"names, weights and modalities differ in length: "
                         f"{len(names)}, {len(weights)}, {len(modalities)}")
    unknown = sorted(set(modalities) - set(MODALITY_COLOURS))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; expected {sorted(MODALITY_COLOURS)}")
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.35 * max(len(names), 1)))
    positions = range(len(names))
    xerr = None
    if intervals is not None:
        if len(intervals) != len(names):
            raise ValueError(f"{len(intervals)} intervals for {len(names)} bars")
        bounds = np.asarray(intervals, dtype=float).reshape(len(names), 2)[::-1]
        values = np.asarray(weights, dtype=float)[::-1]
        xerr = np.clip(np.stack([values - bounds[:, 0], bounds[:, 1] - values]), 0, None)
    ax.barh(positions, list(weights)[::-1], color=[MODALITY_COLOURS[m] for m in modalities][::-1],
            xerr=xerr, error_kw={"ecolor": "black", "capsize": 2, "elinewidth": 0.8})
    ax.set_yticks(positions, list(names)[::-1])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("weight")
    ax.set_title(title)
    shown = [m for m in MODALITY_COLOURS if m in set(modalities)]
    if shown:
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=MODALITY_COLOURS[m]) for m in shown], shown,
                  loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, save_path)
