"""One MusicLIME explanation as a single self-contained HTML page.

:func:`render_report` turns an :class:`utils.musiclime.explanation.Explanation` (with its factorization
attached, for listening) and the settings of the run into one HTML string. Everything the page
shows is inside it -- nothing is fetched when it opens (no scripts, no external style sheets
or fonts):

* the class probabilities of the unperturbed song, the explained class marked;
* the top-k features as a bar chart (PNG) and a table;
* the audio weights as a stems x segments heatmap (PNG);
* audio players: the clip explained, the top-k positive audio components alone and
  everything else (the complement) -- 16-bit PCM WAV at the model's rate, base64 data URIs;
* the lyrics shaded by weight (:meth:`Explanation.lyrics_html`; hover a word for its weight);
* the settings and the surrogate's R^2.

All user text (lyrics, file names, class names) is escaped with :func:`html.escape`.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from utils.musiclime.explanation import Explanation
from utils.plotting import DPI

CHART_FEATURES = 10
"""Bars in the top-features chart (both modalities, by |weight|)."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 1.5rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 1.8rem; }
.lead { font-size: 1.05rem; margin-top: 0.3rem; }
.note { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
td, th { padding: 0.15rem 0.6rem; text-align: left; vertical-align: top; font-size: 0.92rem; }
th { background: #f3f3f3; }
tr.explained td { font-weight: bold; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: inline-block; height: 0.8rem; background: #4a7ebb; vertical-align: middle; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
.player { margin: 0.6rem 0; }
.player audio { display: block; width: 100%; max-width: 36rem; margin-top: 0.2rem; }
.settings td:first-child { color: #555; white-space: nowrap; }
.lyrics { border: 1px solid #ddd; padding: 0.6rem; background: #fcfcfc; }
"""


# ---------------------------------------------------------------- embedded media
def wav_data_uri(waveform: np.ndarray, sample_rate: int, scale: float = 1.0) -> str:
    """A mono waveform as a ``data:audio/wav;base64,...`` URI (16-bit PCM).

    Parameters
    ----------
    waveform : np.ndarray, shape (samples,)
        Float audio, nominally in [-1, 1].
    sample_rate : int
        Hz, written into the WAV header.
    scale : float
        Multiplies the samples before they are clipped to [-1, 1] and quantised.

    Returns
    -------
    str
        The URI; its payload is ``44 + 2 * samples`` bytes before base64 (4/3 after).
    """
    import soundfile

    samples = np.clip(np.asarray(waveform, dtype=np.float64) * scale, -1.0, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, int(sample_rate), format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(figure: Any) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the project's :data:`utils.plotting.DPI`,
    tight, as :func:`utils.plotting.save_figure` saves); the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------- sections
def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _probabilities(explanation: Explanation, label: int) -> str:
    rows = []
    for index in np.argsort(-explanation.probabilities, kind="stable"):
        p = float(explanation.probabilities[index])
        mark = ' class="explained"' if int(index) == label else ""
        rows.append(f'<tr{mark}><td>{_escape(explanation.label_name(int(index)))}'
                    f'{" (explained)" if int(index) == label else ""}</td>'
                    f'<td class="number probability">{p:.4f}</td>'
                    f'<td><span class="bar" style="width: {300 * p:.1f}px"></span></td></tr>')
    return ('<table class="probabilities"><tr><th>class</th><th>probability</th><th></th></tr>'
            + "".join(rows) + "</table>")


def _where(row: dict, clip_start: float) -> str:
    if row["modality"] == "lyrics":
        return "lyrics"
    span = f'{row["start_seconds"]:.2f}&ndash;{row["end_seconds"]:.2f} s of the clip'
    if clip_start:
        span += f' ({clip_start + row["start_seconds"]:.2f}&ndash;{clip_start + row["end_seconds"]:.2f} s in the file)'
    return span


def _top_table(explanation: Explanation, label: int, k: int, clip_start: float) -> str:
    rows = explanation.ranked(label, k=k)
    if not rows:
        return '<p class="note">The surrogate kept no features.</p>'
    body = "".join(f'<tr><td class="number">{rank + 1}</td><td>{_escape(row["name"])}</td>'
                   f'<td>{_escape(row["modality"])}</td><td class="number">{row["weight"]:+.4g}</td>'
                   f'<td>{_where(row, clip_start)}</td></tr>' for rank, row in enumerate(rows))
    return ('<table class="top"><tr><th>rank</th><th>feature</th><th>modality</th><th>weight</th><th>where</th></tr>'
            + body + "</table>")


def _players(explanation: Explanation, label: int, k: int) -> str:
    """The clip, its top-k positive audio components alone, and the complement, on one common scale."""
    factorization = explanation.factorization
    waves = explanation.listen(label, k)
    top = [row["name"] for row in explanation.ranked(label, k=k, positive_only=True, modality="audio")]
    clips = {"original": factorization.waveform, **waves}
    peak = max(float(np.max(np.abs(w))) if w.size else 0.0 for w in clips.values())
    scale = 1.0 / peak if peak > 1.0 else 1.0          # one scale for all three: loudness stays comparable
    titles = {
        "original": "The clip explained (all components)",
        "top": (f"Top {len(top)} positive audio component{'s' if len(top) != 1 else ''} alone: "
                + ", ".join(_escape(name) for name in top)),
        "complement": "Everything else (the complement of the top components)",
    }
    parts = []
    for name, wave in clips.items():
        if name == "top" and not top:
            parts.append('<div class="player"><p class="note">No audio component has a positive weight for this '
                         'class, so there is nothing to play alone.</p></div>')
            continue
        uri = wav_data_uri(wave, factorization.sample_rate, scale)
        parts.append(f'<div class="player" id="player-{name}">{titles[name]}'
                     f'<audio controls preload="metadata" src="{uri}"></audio></div>')
    note = ('<p class="note">If the explanation is right, the class evidence is in the first of the two '
            'lower clips and missing from the second. All three share one volume scale'
            + (f" (divided by {peak:.3g} to avoid clipping)" if scale != 1.0 else "") + ".</p>")
    return note + "".join(parts)


def _format(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):              # a (start, end) span, or a list of names
        numeric = len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
        return (" \u2013 " if numeric else ", ").join(_format(v) for v in value)
    return str(value)


def _settings_table(run: dict, explanation: Explanation, label: int) -> str:
    fit = explanation.fit(label)
    rows = [(key, value) for key, value in run.items() if not isinstance(value, dict) and key != "score"]
    rows += [("surrogate R^2 (score)", round(fit.score, 4)), ("surrogate intercept", fit.intercept),
             ("surrogate local prediction", fit.local_prediction),
             ("kernel width", explanation.settings.get("kernel_width")),
             ("features", f"{len(explanation.audio_features)} audio, {len(explanation.lyric_features)} lyrics")]
    body = "".join(f"<tr><td>{_escape(key)}</td><td>{_escape(_format(value))}</td></tr>" for key, value in rows)
    return f'<table class="settings">{body}</table>'


# ---------------------------------------------------------------- the page
def render_report(explanation: Explanation, run: dict, *, label: int | None = None, top_k: int = 3) -> str:
    """The whole report as one HTML string.

    Parameters
    ----------
    explanation : Explanation
        One explained song; with audio features it needs its factorization attached
        (as :func:`utils.musiclime.explainer.explain` leaves it) for the players.
    run : dict
        How the explanation was made, shown as the settings table (flat values). Keys used
        in the text: ``audio``, ``lyrics`` (file names or None), ``model_dir``, ``task``,
        ``kind``, ``separator``, ``window_seconds`` ((start, end) of the clip in the file,
        seconds, or None).
    label : int, optional
        The class explained (default: the explanation's first label).
    top_k : int
        Audio components to play alone; rows of the top-features table.

    Returns
    -------
    str
        A complete ``<!DOCTYPE html>`` document with every image and clip embedded as a
        data URI.
    """
    label = explanation.labels[0] if label is None else int(label)
    fit = explanation.fit(label)
    predicted = int(np.argmax(explanation.probabilities))
    source = run.get("audio") or run.get("lyrics") or "song"
    clip_start = (run.get("window_seconds") or [0.0])[0]
    sections = []

    lead = (f'<p class="lead">{_escape(run.get("kind"))} {_escape(run.get("task"))} model '
            f'<code>{_escape(run.get("model_dir"))}</code> predicts '
            f'<b>{_escape(explanation.label_name(predicted))}</b> '
            f'(p = {explanation.probabilities[predicted]:.3f}); explained class: '
            f'<b>{_escape(explanation.label_name(label))}</b>; surrogate R<sup>2</sup> = {fit.score:.3f} '
            f'({_escape(explanation.mode)} mode, {len(explanation.features)} features).</p>')
    if fit.score < 0.3:
        lead += ('<p class="note">A low R<sup>2</sup> means the linear surrogate explains little of how the '
                 'model\'s probability moves when features are switched off: read the weights with care.</p>')
    sections.append(lead)
    sections.append('<section id="probabilities"><h2>Class probabilities</h2>'
                    + _probabilities(explanation, label) + "</section>")

    chart = png_data_uri(explanation.plot_top_features(label, k=CHART_FEATURES, order="abs"))
    sections.append(f'<section id="features"><h2>Top features</h2>'
                    f'<img alt="bar chart of the {CHART_FEATURES} features with the largest |weight|" src="{chart}">'
                    f'<p class="note">Top {top_k} by weight (largest first):</p>'
                    + _top_table(explanation, label, top_k, clip_start) + "</section>")

    sections += _audio_sections(explanation, run, label, top_k) + _lyrics_sections(explanation, run, label)

    sections.append('<section id="settings"><h2>Settings</h2>' + _settings_table(run, explanation, label)
                    + "</section>")
    title = f"MusicLIME: {_escape(Path(str(source)).name)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>\n" + "\n".join(sections)
            + '\n<footer class="note"><p>Made by <code>python -m utils.explain</code>; the weights are in '
              "<code>explanation.json</code> next to this file (<code>utils.musiclime.explanation.Explanation.from_json</code> "
              "reads it).</p></footer></body></html>\n")


def _audio_sections(explanation: Explanation, run: dict, label: int, top_k: int) -> list[str]:
    """The heatmap and, with the factorization attached, the players (none for a lyrics-only explanation)."""
    sections: list[str] = []
    if explanation.audio_features:
        heatmap = png_data_uri(explanation.plot_audio_heatmap(label))
        note = ""
        if run.get("separator") == "hpss":
            note = ('<p class="note">Stems come from HPSS, a weight-free signal-processing heuristic, not a trained '
                    'separator: "drums" is whatever is transient, "vocals" whatever does not repeat in the vocal '
                    'band, "bass" everything harmonic below 250 Hz.</p>')
        sections.append(f'<section id="heatmap"><h2>Audio weights: stems &times; segments</h2>'
                        f'<img alt="heatmap of the audio weights, stems by segments" src="{heatmap}">{note}</section>')
        if explanation.factorization is not None:
            sections.append('<section id="listen"><h2>Listen</h2>' + _players(explanation, label, top_k)
                            + "</section>")
    return sections


def _lyrics_sections(explanation: Explanation, run: dict, label: int) -> list[str]:
    """The shaded lyrics, the intact lyrics, or a note that a multimodal model got none."""
    sections: list[str] = []
    if explanation.lyrics and explanation.lyric_features:
        strongest = max((abs(row["weight"]) for row in explanation.ranked(label, modality="lyrics")), default=0.0)
        sections.append('<section id="lyrics"><h2>Lyrics</h2><p class="note">Green: for the explained class, red: '
                        'against; the shade is |weight| relative to the strongest word '
                        f'(|weight| {strongest:.3g}), so compare words with each other, not with the audio. Hover a '
                        'word for its weight.</p><div class="lyrics">' + explanation.lyrics_html(label)
                        + "</div></section>")
    elif explanation.lyrics:
        sections.append('<section id="lyrics"><h2>Lyrics</h2><p class="note">Kept intact (not explained).</p>'
                        '<div class="lyrics">' + explanation.lyrics_html(label) + "</div></section>")
    elif run.get("kind") == "multimodal":
        sections.append('<section id="lyrics"><h2>Lyrics</h2><p class="note">No lyrics given: the multimodal model '
                        'received empty lyrics and only the audio was explained.</p></section>')
    return sections
