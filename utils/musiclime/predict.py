"""Our trained models as MusicLIME's black box: ``(texts, waveforms) -> probabilities``.

:class:`ModelPredictor` is callable like any black box, and also exposes the explainer's
fast paths:

* ``predict_masks(audio_masks, text_masks, factorization, text_features)`` (i.i.d.
  sampling): only distinct mask rows are composed and encoded (``np.unique`` over rows), so
  the intact modality in ``'audio'`` / ``'lyrical'`` mode is composed, featurised and
  encoded once, and its encoding is kept across batches -- for the fusion model the
  unperturbed modality's encoder runs once per explanation, not once per sample;
* ``predict_crossed(audio_masks, text_masks, factorization, text_features, pairs)``
  (crossed sampling, fusion model only): each encoder runs once per mask of its own
  modality and the head on (audio mask, text mask) pairs; see
  :func:`utils.musiclime.explainer.sample_crossed_neighbourhood`.

Audio features of perturbed clips come straight from the masks (:class:`SpectralComposer`):
the AST front end is linear in the waveform up to the power spectrum, and a perturbed clip
is a masked sum of components, so its power spectrum is a quadratic form in the mask with
small per-frame Gram matrices computed once per song; for 0/1 masks each frame's features
take one of ``2**a`` values (``a`` components touch the frame), tabulated once per song and
looked up per sample. No perturbed waveform is ever composed, framed or Fourier-transformed.
Perturbed lyrics are tokenised piecewise (:class:`PieceTokenizer`): their token ids are
concatenations of the ids of a few distinct pieces, each tokenised once.

Inference can run under autocast (``autocast='bf16'`` / ``'fp16'``); features, masks and
embeddings stay on the model's device between phases, and only the probabilities come back.
"""
from __future__ import annotations

import itertools
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from utils.config import AudioConfig, Profile, resolve_device
from utils.dataset_related.features import (AST_SAMPLE_RATE, FFT_LENGTH, FRAME_LENGTH, HOP_LENGTH, MEL_FLOOR, _mel_filters, ast_features,
                       frame_spectra, num_frames, spectra_to_features)
from utils.musiclime.factorization import check_masks
from utils.dataset_related.text import TokenCache

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FEATURE_PATHS = ("auto", "spectral", "waveform")
HEAD_CHUNK = 65_536  # (audio, text) pairs per head call in crossed mode (bounds memory)
CPU_CHUNK = 256      # rows per encoder call on CPU with chunk_size='auto'
PHASES = {"composition": ("audio_composition", "text_composition"),
          "features": ("audio_features", "text_features"),
          "encoders": ("audio_encoder", "text_encoder"), "head": ("head",)}
"""How :attr:`ModelPredictor.timings` keys group into the benchmark's phases."""


# ---------------------------------------------------------------- linear-domain composition
class SpectralComposer:
    """AST input features of mask-composed clips, computed from the components' spectra.

    Everything in the AST front end before the power spectrum (framing, DC removal,
    pre-emphasis, Hann window, FFT: :func:`utils.dataset_related.features.frame_spectra`) is linear in the
    waveform. A perturbed clip is ``sum_c m_c x_c`` (components ``x_c``, mask ``m``), so its
    frame spectra are ``sum_c m_c S_c`` with ``S_c`` each component's spectra, computed once
    per song. A component is silent (exactly zero spectra) outside its segment, so a frame
    only involves the few components whose samples reach into it (``a`` = 4 inside a segment
    and 8 across a segment boundary for stems x segments). Three exact ways on from there:

    * ``'spectra'`` -- compose the complex spectra as a (masks x components) product (real
      and imaginary parts separately) and run the non-linear tail
      (:func:`utils.dataset_related.features.spectra_to_features`: power, mel, log, pad, normalise);
    * ``'gram'`` -- the power ``|sum_c m_c S_c|^2`` is a quadratic form in ``m`` and the mel
      energies are linear in the power, so the mel energy of frame ``f``, band ``j`` is
      ``m^T G[f, j] m`` with ``G[f, j]_cd = sum_k mel[k, j] Re(S_c[f, k] conj(S_d[f, k]))``
      over the frame's components only: ``a (a + 1) / 2 * mel`` multiply-adds per frame
      instead of composing 257-bin spectra and a 257 x mel product; any (float) masks;
    * ``'table'`` -- for 0/1 masks a frame's features depend only on which of its ``a``
      components are on: all ``2**a`` cases are computed once per song from ``G`` (log and
      normalisation included) and a call is a lookup, ``table[base[f] + code[r, f]]`` with
      ``code`` the frame's mask bits -- no arithmetic per sample beyond one small matrix
      product. Masks that are not 0/1 go to a Gram (or spectra) fallback.

    ``'auto'`` takes ``'table'`` when no frame has more than ``TABLE_MAX_COMPONENTS``
    components and the table fits ``TABLE_BYTES``, else the cheaper of ``'gram'`` and
    ``'spectra'`` by multiply-adds (``'spectra'`` when most components overlap most frames).
    All equal ``ASTFeatureExtractor`` on the composed waveform within 1e-4 (tests/test_speed.py).
    Gram entries are float64 (``dtype``) because the quadratic form sums cross terms that
    may cancel; features are float32.

    Parameters
    ----------
    components_matrix : (n_components, samples) float array at 16 kHz.
    audio_cfg : the profile's audio settings (mel bins, frames, normalisation).
    device : where the precomputed tables live and features are computed.
    method : 'auto', 'table', 'gram' or 'spectra'.
    dtype : float dtype of the Gram tables and the quadratic form (float64 default).
    """

    BLOCK_BYTES = 256 * 2**20   # bound on the float64 temporaries of one step (memory)
    TABLE_BYTES = 512 * 2**20   # largest feature table ('table' method)
    TABLE_MAX_COMPONENTS = 12   # at most 2**12 subsets of the components touching one frame

    def __init__(self, components_matrix: np.ndarray, audio_cfg: AudioConfig, device: str | torch.device = "cpu",
                 method: str = "auto", dtype: torch.dtype = torch.float64):
        if audio_cfg.sample_rate != AST_SAMPLE_RATE:
            raise ValueError(f"AST features need 16000 Hz audio; the profile says sample_rate={audio_cfg.sample_rate}")
        if method not in ("auto", "table", "gram", "spectra"):
            raise ValueError(f"method must be 'auto', 'table', 'gram' or 'spectra', got {method!r}")
        matrix = torch.tensor(np.asarray(components_matrix, dtype=np.float64), device=device)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise ValueError(f"components_matrix must be (n_components, samples), got {tuple(matrix.shape)}")
        self.audio_cfg = audio_cfg
        self.device = torch.device(device)
        self.dtype = dtype
        self.n_components = matrix.shape[0]
        self._components_matrix = components_matrix                  # for a lazily built fallback
        self._fallback: SpectralComposer | None = None
        self.num_frames = min(num_frames(matrix.shape[1]), audio_cfg.max_length)  # the rest is padding
        if self.num_frames < 1:
            raise ValueError(f"components of {matrix.shape[1]} samples are shorter than one frame")
        windows = matrix.unfold(-1, FRAME_LENGTH, HOP_LENGTH)[:, : self.num_frames]   # (C, frames, 400) view
        # a component touches a frame when a sample in its window is not 0 (else its spectrum there is 0)
        active = (windows != 0).any(dim=-1).cpu().numpy()                             # (C, frames)
        self.runs = _active_runs(active)                                              # [(start, end, comps)]
        n_mel, n_bins = audio_cfg.num_mel_bins, FFT_LENGTH // 2 + 1
        gram_cost = sum((e - s) * len(c) * (len(c) + 1) // 2 * n_mel for s, e, c in self.runs)
        spectra_cost = self.num_frames * (2 * self.n_components * n_bins + n_bins * n_mel)
        self._gram_cost = gram_cost
        table_bytes = (sum((e - s) * 2 ** len(c) for s, e, c in self.runs) + 1) * n_mel * 4
        if method == "auto":
            if max(len(c) for _, _, c in self.runs) <= self.TABLE_MAX_COMPONENTS and table_bytes <= self.TABLE_BYTES:
                method = "table"
            else:
                method = "gram" if gram_cost <= spectra_cost else "spectra"
        self.method = method
        self.macs_per_row = spectra_cost
        if self.method in ("table", "gram"):
            # spectra of the active (component, frame) windows only, one row each, plus a zero row
            component, frame = np.nonzero(active)
            slots = np.full(active.shape, len(component), np.int64)
            slots[component, frame] = np.arange(len(component))
            spectra = frame_spectra(windows[torch.as_tensor(component, device=self.device),
                                            torch.as_tensor(frame, device=self.device)])[:, 0]   # (n_active, 257)
            spectra = torch.cat([spectra, spectra.new_zeros(1, spectra.shape[1])])
            slots = torch.as_tensor(slots, device=self.device)
            if self.method == "table":
                self._build_table(spectra, slots)
            else:
                self._build_gram(spectra, slots)
        else:
            spectra = frame_spectra(matrix)[:, : self.num_frames]                     # (C, frames, 257)
            flat = spectra.reshape(self.n_components, -1)
            self._real = flat.real.float().contiguous()
            self._imag = flat.imag.float().contiguous()
            self._frames_shape = spectra.shape[1:]

    def _build_table(self, spectra: torch.Tensor, slots: torch.Tensor) -> None:
        """The features of every frame for every subset of the components touching it.

        For 0/1 masks a frame's features depend only on which of its ``a`` active components
        are on: ``2**a`` cases (16 inside a segment, 256 across a segment boundary for stems
        x segments). Each case's mel energies are the sum of the frame's Gram entries over
        the component pairs in the case (float64; see the class doc), then log and
        normalisation as the AST front end. A call then
        only looks rows up: frame ``f`` of row ``r`` is ``table[base[f] + code[r, f]]`` with
        ``code`` the mask bits of the frame's components (one small matrix product).
        Padding frames point at one constant row.
        """
        cfg = self.audio_cfg
        n_mel, scale = cfg.num_mel_bins, 1.0 / (cfg.feature_std * 2)
        mel = torch.as_tensor(_mel_filters(n_mel, cfg.sample_rate), device=self.device, dtype=torch.float64)
        n_runs = len(self.runs)
        run_weights = np.zeros((self.n_components, n_runs + 1), np.float32)   # last column: padding frames
        run_of_frame = np.full(cfg.max_length, n_runs, np.int64)
        base = np.zeros(cfg.max_length, np.int64)
        by_size: dict[int, list[int]] = defaultdict(list)
        for run, (start, end, comps) in enumerate(self.runs):
            run_weights[list(comps), run] = 2.0 ** np.arange(len(comps))
            run_of_frame[start:end] = run
            by_size[len(comps)].append(run)
        parts, offset = [], 0
        for size in sorted(by_size):
            runs = [self.runs[r] for r in by_size[size]]
            frames = np.concatenate([np.arange(s, e) for s, e, _ in runs])
            cases = 2 ** size
            base[frames] = offset + np.arange(len(frames)) * cases
            offset += len(frames) * cases
            if size == 0:                                                        # silent frames: the floor
                parts.append(torch.full((len(frames), n_mel), (np.log(MEL_FLOOR) - cfg.feature_mean) * scale,
                                        device=self.device))
                continue
            comps = np.concatenate([np.tile(c, (e - s, 1)) for s, e, c in runs])  # (F_g, a)
            # |sum_{c in subset} S_c|^2 = sum over pairs c <= d in the subset of (2 - [c == d]) Re(S_c conj S_d)
            up, down = np.triu_indices(size)
            bits = (np.arange(cases)[:, None] >> np.arange(size)) & 1                     # (cases, a)
            incidence = torch.as_tensor(bits[:, up] * bits[:, down], device=self.device, dtype=torch.float64)
            factor = torch.as_tensor(np.where(up == down, 1.0, 2.0), device=self.device)[:, None]
            frames_t = torch.as_tensor(frames, device=self.device)
            left = torch.as_tensor(comps[:, up], device=self.device)                      # (F_g, pairs)
            right = torch.as_tensor(comps[:, down], device=self.device)
            block = max(1, self.BLOCK_BYTES // (len(up) * spectra.shape[1] * 16 * 3 + cases * n_mel * 8))
            for start in range(0, len(frames), block):
                part = slice(start, start + block)
                where = frames_t[part, None]
                cross = (spectra[slots[left[part], where]] * spectra[slots[right[part], where]].conj()).real
                gram = (cross @ mel) * factor                                               # (F, pairs, mel)
                energy = torch.matmul(incidence, gram)                                      # (F, cases, mel)
                features = (torch.log(energy.clamp(min=MEL_FLOOR)) - cfg.feature_mean) * scale
                parts.append(features.reshape(-1, n_mel).float())
        base[self.num_frames:] = offset                                                  # the padding row
        parts.append(torch.full((1, n_mel), -cfg.feature_mean * scale, device=self.device))
        self._table = torch.cat(parts)                                                   # (entries, mel)
        self._base = torch.as_tensor(base, device=self.device)
        self._run_weights = torch.as_tensor(run_weights, device=self.device)
        self._run_of_frame = torch.as_tensor(run_of_frame, device=self.device)

    def _build_gram(self, spectra: torch.Tensor, slots: torch.Tensor, extra_cost: float = 0.3) -> None:
        """Per-frame Gram tables, in a few groups of frames with equally many component pairs.

        Frame ``f`` with active components ``A_f`` has the pairs ``c <= d`` of ``A_f`` and the
        table ``G[f, (c, d), j] = (2 - [c == d]) sum_k mel[k, j] Re(S_c[f, k] conj(S_d[f, k]))``.
        Frames are grouped by pair count, and groups with few pairs are padded (zero table
        entries) into larger ones while that adds at most ``extra_cost`` of the work, so a
        call runs a handful of batched products, not one per run of frames. ``spectra`` holds
        one row per active (component, frame), ``slots[c, f]`` its row (the last, zero row for
        inactive pairs).
        """
        n_mel = self.audio_cfg.num_mel_bins
        by_pairs: dict[int, list] = defaultdict(list)        # pair count -> [(start, end, left, right)]
        for start, end, comps in self.runs:
            if comps:                                        # silent frames: mel energy 0 (the floor)
                up, down = np.triu_indices(len(comps))
                by_pairs[len(up)].append((start, end, np.asarray(comps)[up], np.asarray(comps)[down]))
        sizes = sorted(by_pairs)
        frames_of = {p: sum(e - s for s, e, _, _ in by_pairs[p]) for p in sizes}
        budget = extra_cost * sum(p * frames_of[p] for p in sizes)
        target = {p: p for p in sizes}                       # merge groups upwards while padding is cheap
        while len(set(target.values())) > 1:
            levels = sorted(set(target.values()))
            cost, low, high = min((sum(frames_of[p] for p in sizes if target[p] == low) * (high - low), low, high)
                                  for low, high in zip(levels[:-1], levels[1:]))
            if cost > budget:
                break
            budget -= cost
            target = {p: high if t == low else t for p, t in target.items()}
        mel = torch.as_tensor(_mel_filters(n_mel, self.audio_cfg.sample_rate), device=self.device,
                              dtype=torch.float64)
        self._groups = []
        for level in sorted(set(target.values())):
            entries = [e for p in sizes if target[p] == level for e in by_pairs[p]]
            run_left = np.zeros((len(entries), level), np.int64)       # padding pairs point at component 0
            run_right = np.zeros((len(entries), level), np.int64)
            factor = np.zeros((len(entries), level))                    # 1 diagonal, 2 off-diagonal, 0 padding
            for run, (_, _, up, down) in enumerate(entries):
                run_left[run, : len(up)] = up
                run_right[run, : len(up)] = down
                factor[run, : len(up)] = np.where(up == down, 1.0, 2.0)
            frames = np.concatenate([np.arange(start, end) for start, end, _, _ in entries])
            run_of_frame = np.concatenate([np.full(end - start, run) for run, (start, end, _, _) in enumerate(entries)])
            frames_t, run_of_frame_t, run_left_t, run_right_t, factor_t = (
                torch.as_tensor(a, device=self.device) for a in (frames, run_of_frame, run_left, run_right, factor))
            left, right = run_left_t[run_of_frame_t], run_right_t[run_of_frame_t]               # (F_g, p)
            products = spectra[slots[left, frames_t[:, None]]] * spectra[slots[right, frames_t[:, None]]].conj()
            table = (products.real @ mel) * factor_t[run_of_frame_t][:, :, None]                # (F_g, p, mel)
            self._groups.append((frames_t, run_of_frame_t, run_left_t, run_right_t, table.to(self.dtype)))
        covered = np.zeros(self.num_frames, bool)
        for frames_t, *_ in self._groups:
            covered[frames_t.cpu().numpy()] = True
        self._silent = torch.as_tensor(np.flatnonzero(~covered), device=self.device)
        self.macs_per_row = sum(len(g[0]) * g[2].shape[1] * n_mel for g in self._groups)

    def __call__(self, masks: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Features of the clips ``masks @ components_matrix``.

        Parameters
        ----------
        masks : (rows, n_components) switches (0/1, or floats that scale components).

        Returns
        -------
        (rows, max_length, num_mel_bins) float32 tensor on the composer's device, equal to
        ``ast_features(masks @ components_matrix)`` (Gram path: a non-contiguous view of a
        frame-major buffer, which the AST patch embedding reads as it is).
        """
        masks = torch.as_tensor(masks, device=self.device)
        if masks.ndim != 2 or masks.shape[1] != self.n_components:
            raise ValueError(f"masks must be (rows, {self.n_components}), got {tuple(masks.shape)}")
        cfg = self.audio_cfg
        if self.method == "table":
            if not bool(((masks == 0) | (masks == 1)).all()):             # scaled components: no lookup
                if self._fallback is None:
                    self._fallback = SpectralComposer(self._components_matrix, cfg, self.device, method="gram"
                                                      if self.macs_per_row >= self._gram_cost else "spectra")
                return self._fallback(masks)
            codes = (masks.float() @ self._run_weights).long()                          # (rows, runs + 1)
            return torch.nn.functional.embedding(codes[:, self._run_of_frame] + self._base, self._table)
        if self.method == "spectra":
            masks = masks.float()
            per_row = self._real.shape[1] * 4 * 4                   # real, imag, complex, power: float32
            block = max(1, self.BLOCK_BYTES // per_row)
            parts = []
            for start in range(0, len(masks), block):
                rows = masks[start:start + block]
                real = (rows @ self._real).reshape(len(rows), *self._frames_shape)
                imag = (rows @ self._imag).reshape(len(rows), *self._frames_shape)
                parts.append(spectra_to_features(torch.complex(real, imag), cfg))
            return torch.cat(parts)
        rows = masks.shape[0]
        columns = masks.to(self.dtype).T.contiguous()                                  # (C, rows)
        scale = 1.0 / (cfg.feature_std * 2)
        # frame-major buffer (frames, rows, mel); padding frames are log-mel 0 before normalisation
        out = torch.empty((cfg.max_length, rows, cfg.num_mel_bins), device=self.device)
        out[self.num_frames:] = -cfg.feature_mean * scale
        energy = out[: self.num_frames]
        energy[self._silent] = 0.0                                                     # no component: the floor
        block = max(1, self.BLOCK_BYTES // (rows * cfg.num_mel_bins * 8))            # frames per product
        for frames, run_of_frame, run_left, run_right, table in self._groups:
            run_pairs = columns[run_left] * columns[run_right]                          # (runs, p, rows)
            for start in range(0, len(frames), block):
                part = slice(start, start + block)
                pairs = run_pairs[run_of_frame[part]]                                    # (F, p, rows)
                energy.index_copy_(0, frames[part], torch.bmm(pairs.transpose(1, 2), table[part]).to(out.dtype))
        energy.clamp_(min=MEL_FLOOR).log_().sub_(cfg.feature_mean).mul_(scale)
        return out.permute(1, 0, 2)                         # (rows, frames, mel) view; the AST conv takes it


def _active_runs(active: np.ndarray) -> list[tuple[int, int, tuple[int, ...]]]:
    """Maximal runs of consecutive frames that involve the same components.

    ``active`` is (n_components, frames) bool; returns ``[(start, end, components), ...]``.
    """
    frames = active.shape[1]
    if frames == 0:
        return []
    change = np.flatnonzero(np.any(active[:, 1:] != active[:, :-1], axis=0)) + 1
    bounds = [0, *change.tolist(), frames]
    return [(s, e, tuple(np.flatnonzero(active[:, s]).tolist())) for s, e in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------- lyric tokens by pieces
class PieceTokenizer:
    """Token ids of many perturbed versions of one lyric, reusing the tokens of their pieces.

    RoBERTa's byte-level BPE (no normalizer, ``add_prefix_space=False``) tokenises each regex
    pre-token on its own, and whitespace right after a non-space character always starts a
    new pre-token: no alternative of the GPT-2 pattern (contractions, `` ?\\p{L}+``,
    `` ?\\p{N}+``, `` ?[^\\s\\p{L}\\p{N}]+``, whitespace runs) runs from a non-space character
    into whitespace, and how a whitespace run splits depends only on the run and the
    character after it. So the ids of a text are the concatenation of the ids of its pieces
    split there (a whitespace run and the non-space characters after it: ``" fire,"``,
    ``"\\n  night"``), and the perturbed lyrics of one song are made of few distinct pieces:
    each is tokenised once. Whitespace here is exactly the tokenizer regex's ``\\s`` (Unicode
    White_Space), not Python's wider ``\\s``. The result equals ``TokenCache`` / ``tokenizer(texts,
    truncation=True, max_length=max_tokens, padding='max_length')`` (tests/test_speed.py);
    :meth:`supports` says whether a tokenizer qualifies (else the predictor uses its
    ``TokenCache``).

    Parameters
    ----------
    tokenizer : a Hugging Face RoBERTa tokenizer (with ``backend_tokenizer``).
    max_tokens : sequence length (tokens) including ``<s>`` and ``</s>``.
    """

    WHITESPACE = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"  # the tokenizer's \s
    SPLIT = re.compile(f"(?<=[^{WHITESPACE}])(?=[{WHITESPACE}])")
    MAX_PIECES = 200_000

    def __init__(self, tokenizer, max_tokens: int):
        if not self.supports(tokenizer):
            raise ValueError("PieceTokenizer needs a byte-level BPE tokenizer without normalizer or prefix space "
                             "(RoBERTa's)")
        self.backend = self._backend(tokenizer)
        self.max_tokens = int(max_tokens)
        self.cls_id, self.sep_id, self.pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        self._pieces: dict[str, list[int]] = {}

    _backends: dict[int, tuple[object, object]] = {}

    @classmethod
    def _backend(cls, tokenizer):
        """A private copy of the Rust tokenizer without padding / truncation (the Hugging Face
        wrapper sets those on its own backend per call), built once per tokenizer object."""
        from tokenizers import Tokenizer

        cached = cls._backends.get(id(tokenizer))
        if cached is None or cached[0] is not tokenizer:
            backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            backend.no_padding()
            backend.no_truncation()
            cached = cls._backends[id(tokenizer)] = (tokenizer, backend)
        return cached[1]

    @staticmethod
    def supports(tokenizer) -> bool:
        """True for RoBERTa-style byte-level BPE tokenizers, where piecewise tokenisation is exact."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return False
        config = json.loads(backend.to_str())
        pre, post = config.get("pre_tokenizer") or {}, config.get("post_processor") or {}
        return (config.get("normalizer") is None and pre.get("type") == "ByteLevel"
                and not pre.get("add_prefix_space", True) and pre.get("use_regex", False)
                and post.get("type") == "RobertaProcessing"
                and getattr(tokenizer, "truncation_side", "right") == "right"
                and getattr(tokenizer, "padding_side", "right") == "right"
                and None not in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id))

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask``, (len(texts), max_tokens) int64."""
        split = [self.SPLIT.split(text) for text in texts]
        missing = list({piece for pieces in split for piece in pieces if piece not in self._pieces})
        if missing:
            if len(self._pieces) + len(missing) > self.MAX_PIECES:
                self._pieces.clear()
                missing = list({piece for pieces in split for piece in pieces})
            encoded = self.backend.encode_batch(missing, add_special_tokens=False)
            self._pieces.update(zip(missing, (e.ids for e in encoded)))
        ids = np.full((len(texts), self.max_tokens), self.pad_id, dtype=np.int64)
        lengths = np.empty(len(texts), dtype=np.int64)
        content = self.max_tokens - 2
        pieces_of = self._pieces
        for row, pieces in enumerate(split):
            tokens = [self.cls_id, *itertools.islice(itertools.chain.from_iterable(pieces_of[p] for p in pieces),
                                                     content), self.sep_id]
            ids[row, : len(tokens)] = tokens
            lengths[row] = len(tokens)
        mask = (np.arange(self.max_tokens)[None, :] < lengths[:, None]).astype(np.int64)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def compose_texts(text_features, masks: np.ndarray) -> list[str]:
    """``text_features.compose(masks)``; for lime's bag-of-words features one vectorised pass.

    ``IndexedString.inverse_removing`` drops the pieces (words) at the positions of every
    switched-off word and joins the rest; here a (rows x pieces) keep matrix is built at once
    and each row joined with ``itertools.compress`` -- the same strings (tests/test_speed.py).
    """
    indexed = getattr(text_features, "indexed_string", None)
    if indexed is None or not getattr(indexed, "bow", False) or not hasattr(indexed, "positions"):
        return text_features.compose(masks)
    n_features = text_features.n_features
    masks = check_masks(masks, n_features, binary=True)
    owner = np.full(len(indexed.as_list), n_features)                     # separators: the ones column
    for word, positions in enumerate(indexed.positions):
        owner[positions] = word
    keep = np.concatenate([masks, np.ones((len(masks), 1), masks.dtype)], axis=1)[:, owner] != 0
    pieces = indexed.as_list
    return ["".join(itertools.compress(pieces, row)) for row in keep.tolist()]


# ---------------------------------------------------------------- the predictor
class ModelPredictor:
    """Wrap a lyrics, audio or fusion classifier from :mod:`utils.model_related.models`.

    Parameters
    ----------
    model : LyricsClassifier, AudioClassifier or FusionClassifier.
    profile : supplies the audio settings (rate, mel bins, frames).
    tokens : a :class:`TokenCache` (needed for lyrics and fusion models).
    device : 'cpu', 'cuda' or 'auto'.
    chunk_size : rows per encoder call (bounds memory), or 'auto': 256 on CPU; on CUDA as
        many rows as fit in half the free memory, from a probe of the encoders' peak memory
        per row (:meth:`auto_chunk_size`).
    features : 'auto' (linear-domain :class:`SpectralComposer` features whenever the
        factorization offers a ``components_matrix``), 'spectral' (require it) or
        'waveform' (compose waveforms, then :func:`utils.dataset_related.features.ast_features`).
    autocast : None (fp32), 'bf16' or 'fp16': encoders and head run under
        ``torch.autocast`` with that dtype; features are computed in fp32 and the
        probabilities returned in float32.

    Attributes
    ----------
    calls : dict
        ``audio_rows`` / ``text_rows``: encoder rows actually run (encoder passes).
    timings : dict
        Seconds spent per phase: ``audio_composition`` / ``text_composition`` (waveforms /
        texts from masks), ``audio_features`` (AST features, composer set-up) /
        ``text_features`` (tokenisation), ``audio_encoder`` / ``text_encoder``, ``head``
        (fusion head, softmax, copy to host); :data:`PHASES` groups them. On CUDA set
        ``sync_timings = True`` for exact per-phase figures (synchronises at phase ends).
    """

    def __init__(self, model: torch.nn.Module, profile: Profile, tokens: TokenCache | None = None,
                 device: str = "auto", chunk_size: int | str = 256, *, features: str = "auto",
                 autocast: str | None = None):
        self.kind = model.kind
        if self.kind in ("lyrics", "multimodal") and tokens is None:
            raise ValueError(f"a {self.kind} model needs tokens=TokenCache(...)")
        if features not in FEATURE_PATHS:
            raise ValueError(f"features must be one of {FEATURE_PATHS}, got {features!r}")
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.profile = profile
        self.tokens = tokens
        self.features = features
        self.autocast = autocast
        self.sync_timings = False
        self._intact: dict[str, tuple[object, torch.Tensor]] = {}
        self._composer: tuple[object, SpectralComposer] | None = None
        self._pieces: PieceTokenizer | bool | None = None   # perturbed lyrics' tokens (False: unsupported)
        self.calls = {"audio_rows": 0, "text_rows": 0}  # encoder rows actually run (for benchmarks)
        self.timings: dict[str, float] = defaultdict(float)
        if chunk_size == "auto":
            chunk_size = self.auto_chunk_size()
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or 'auto', got {chunk_size!r}")
        self.chunk_size = int(chunk_size)

    # ------------------------------------------------------------ bookkeeping
    def reset_counters(self) -> None:
        """Zero ``calls`` and ``timings``."""
        self.calls = {"audio_rows": 0, "text_rows": 0}
        self.timings = defaultdict(float)

    def _tick(self, phase: str, since: float) -> float:
        if self.sync_timings and str(self.device).startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[phase] += now - since
        return now

    def _to_device(self, array) -> torch.Tensor:
        """Host array -> tensor on the model's device; to CUDA through pinned memory without
        blocking, so the copy does not wait for the kernels already queued (no host round trip)."""
        tensor = torch.as_tensor(array)
        if tensor.device.type == "cpu" and str(self.device).startswith("cuda"):
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _autocast(self):
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        return torch.autocast(device_type, dtype=AUTOCAST_DTYPES.get(self.autocast, torch.float32),
                              enabled=self.autocast is not None)

    @torch.no_grad()
    def auto_chunk_size(self, memory_fraction: float = 0.5, probe_rows: int = 8, limit: int = 4096) -> int:
        """Rows per encoder call: ``CPU_CHUNK`` on CPU; on CUDA as many rows as fit in
        ``memory_fraction`` of the free memory, from the peak memory of a probe batch of
        ``probe_rows`` rows through the encoders (multiple of 8, at most ``limit``)."""
        if not str(self.device).startswith("cuda"):
            return CPU_CHUNK
        cfg = self.profile.audio
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        with self._autocast():
            if self.kind in ("audio", "multimodal"):
                values = torch.zeros(probe_rows, cfg.max_length, cfg.num_mel_bins, device=self.device)
                self.model(input_values=values) if self.kind == "audio" else self.model.encode_audio(values)
            if self.kind in ("lyrics", "multimodal"):
                ids = torch.ones(probe_rows, self.tokens.max_tokens, dtype=torch.long, device=self.device)
                mask = torch.ones_like(ids)
                self.model(ids, mask) if self.kind == "lyrics" else self.model.encode_lyrics(ids, mask)
        torch.cuda.synchronize()
        per_row = max(1, (torch.cuda.max_memory_allocated(self.device) - before) // probe_rows)
        free, _ = torch.cuda.mem_get_info(self.device)
        rows = int(memory_fraction * free // per_row)
        return int(max(8, min(limit, rows // 8 * 8)))

    # ------------------------------------------------------------ encoders
    def _encode_audio_features(self, features: torch.Tensor) -> torch.Tensor:
        """Audio model: logits; fusion model: AST pooled embeddings, for (rows, frames, mel) features."""
        with self._autocast():
            if self.kind == "audio":
                return self.model(input_values=features)
            return self.model.encode_audio(features)

    def _audio_outputs(self, waveforms: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Audio model: logits; fusion model: AST pooled embeddings, for (rows, samples) waveforms."""
        outputs = []
        for start in range(0, len(waveforms), self.chunk_size):
            tick = time.perf_counter()
            features = ast_features(waveforms[start:start + self.chunk_size], self.profile.audio, device=self.device)
            tick = self._tick("audio_features", tick)
            outputs.append(self._encode_audio_features(features))
            self._tick("audio_encoder", tick)
        self.calls["audio_rows"] += len(waveforms)
        return torch.cat(outputs)

    def _encode_tokens(self, encoded: dict) -> torch.Tensor:
        with self._autocast():
            if self.kind == "lyrics":
                return self.model(**encoded)
            return self.model.encode_lyrics(**encoded)

    def _text_outputs(self, texts: Sequence[str], tokenize=None) -> torch.Tensor:
        """Lyrics model: logits; fusion model: RoBERTa first-token states. (rows, ...).

        ``tokenize`` (default the ``TokenCache``) turns a list of texts into ids and masks.
        """
        tokenize = tokenize or self.tokens
        tick = time.perf_counter()
        tokens = tokenize(list(texts))                      # one call: the tokenizer batches internally
        self._tick("text_features", tick)
        outputs = []
        for start in range(0, len(texts), self.chunk_size):
            tick = time.perf_counter()
            encoded = {k: self._to_device(v[start:start + self.chunk_size]) for k, v in tokens.items()}
            tick = self._tick("text_features", tick)
            outputs.append(self._encode_tokens(encoded))
            self._tick("text_encoder", tick)
        self.calls["text_rows"] += len(texts)
        return torch.cat(outputs)

    def _composer_for(self, factorization) -> SpectralComposer | None:
        """The song's :class:`SpectralComposer` (built once per factorization), or None for the waveform path."""
        if self.features == "waveform":
            return None
        matrix = getattr(factorization, "components_matrix", None)
        if matrix is None or self.profile.audio.sample_rate != AST_SAMPLE_RATE:
            if self.features == "spectral":
                raise ValueError("features='spectral' needs a factorization with a components_matrix at 16 kHz")
            return None
        if self._composer is None or self._composer[0] is not factorization:
            tick = time.perf_counter()
            self._composer = (factorization, SpectralComposer(matrix, self.profile.audio, self.device))
            self._tick("audio_features", tick)
        return self._composer[1]

    def _audio_from_masks(self, masks: np.ndarray, factorization) -> torch.Tensor:
        """Encoder outputs for (rows, n_components) masks, chunk by chunk.

        Perturbed rows take the linear-domain path; the intact clip alone (all-ones rows,
        encoded once per song) takes it too when the song's composer exists, else the
        waveform path, so no composer is built for a song whose audio is never perturbed
        ('lyrical' mode).
        """
        intact_only = bool(np.all(np.asarray(masks) == 1))
        existing = self._composer is not None and self._composer[0] is factorization
        composer = None if intact_only and not existing else self._composer_for(factorization)
        if composer is None:
            tick = time.perf_counter()
            waveforms = factorization.compose(masks).astype(np.float32, copy=False)
            self._tick("audio_composition", tick)
            return self._audio_outputs(waveforms)
        outputs = []
        masks_t = self._to_device(np.asarray(masks, dtype=np.float64))
        for start in range(0, len(masks_t), self.chunk_size):
            tick = time.perf_counter()
            features = composer(masks_t[start:start + self.chunk_size])
            tick = self._tick("audio_features", tick)
            outputs.append(self._encode_audio_features(features))
            self._tick("audio_encoder", tick)
        self.calls["audio_rows"] += len(masks_t)
        return torch.cat(outputs)

    def _text_from_masks(self, masks: np.ndarray, text_features) -> torch.Tensor:
        tick = time.perf_counter()
        texts = compose_texts(text_features, masks)
        self._tick("text_composition", tick)
        if self._pieces is None:
            supported = PieceTokenizer.supports(self.tokens.tokenizer)
            self._pieces = PieceTokenizer(self.tokens.tokenizer, self.tokens.max_tokens) if supported else False
        return self._text_outputs(texts, self._pieces or None)

    def _finish(self, logits: torch.Tensor) -> np.ndarray:
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    # ------------------------------------------------------------ black-box interface
    @torch.no_grad()
    def __call__(self, texts: Sequence[str], waveforms: np.ndarray) -> np.ndarray:
        """Probabilities (batch, classes) for lists of lyrics and (batch, samples) waveforms."""
        if self.kind == "lyrics":
            logits = self._text_outputs(texts)
        elif self.kind == "audio":
            logits = self._audio_outputs(np.asarray(waveforms, dtype=np.float32))
        else:
            if len(texts) != len(waveforms):
                raise ValueError(f"{len(texts)} texts but {len(waveforms)} waveforms")
            audio = self._audio_outputs(np.asarray(waveforms, dtype=np.float32))
            text = self._text_outputs(texts)
            tick = time.perf_counter()
            with self._autocast():
                logits = self.model.classify(audio, text)
            out = self._finish(logits)
            self._tick("head", tick)
            return out
        tick = time.perf_counter()
        out = self._finish(logits)
        self._tick("head", tick)
        return out

    # ------------------------------------------------------------ explainer fast paths
    def _unique_encode(self, masks: np.ndarray, source, encode) -> torch.Tensor:
        """Encode each distinct mask row once; all-ones rows are cached per source object."""
        unique, inverse = np.unique(np.asarray(masks), axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        full = np.all(unique == 1, axis=1)
        key = type(source).__name__
        todo = np.flatnonzero(~full)
        encoded = encode(unique[todo]) if len(todo) else None   # perturbed rows first (they build the composer)
        if full.any():
            cached = self._intact.get(key)
            if cached is None or cached[0] is not source:
                self._intact[key] = (source, encode(unique[full][:1])[0])
            intact = self._intact[key][1]
            if encoded is None:
                return intact.expand(len(inverse), *intact.shape)
            rows = encoded.new_empty((len(unique), *encoded.shape[1:]))
            rows[self._to_device(todo)] = encoded
            rows[self._to_device(np.flatnonzero(full))] = intact.to(encoded.dtype)
        else:
            rows = encoded
        return rows[self._to_device(inverse)]

    def _check_sources(self, factorization, text_features) -> None:
        if self.kind in ("audio", "multimodal") and factorization is None:
            raise ValueError(f"a {self.kind} model needs a factorization of the audio")
        if self.kind in ("lyrics", "multimodal") and text_features is None:
            raise ValueError(f"a {self.kind} model needs lyrics")

    @torch.no_grad()
    def predict_masks(self, audio_masks: np.ndarray, text_masks: np.ndarray, factorization, text_features) -> np.ndarray:
        """Probabilities (batch, classes) for a batch of switch rows (see the module doc).

        ``audio_masks`` is (batch, n_components), ``text_masks`` (batch, n_text_features);
        row ``i`` of the answer is the model's output for audio row ``i`` with text row ``i``.
        """
        self._check_sources(factorization, text_features)
        audio = text = None
        if self.kind in ("audio", "multimodal"):
            audio = self._unique_encode(audio_masks, factorization, lambda m: self._audio_from_masks(m, factorization))
        if self.kind in ("lyrics", "multimodal"):
            text = self._unique_encode(text_masks, text_features, lambda m: self._text_from_masks(m, text_features))
        tick = time.perf_counter()
        if self.kind == "multimodal":
            with self._autocast():
                logits = self.model.classify(audio, text)
        else:
            logits = audio if self.kind == "audio" else text
        out = self._finish(logits)
        self._tick("head", tick)
        return out

    @torch.no_grad()
    def predict_crossed(self, audio_masks: np.ndarray, text_masks: np.ndarray, factorization, text_features,
                        pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Crossed sampling (fusion model only): each encoder once per mask, the head on pairs.

        Parameters
        ----------
        audio_masks : (K_a, n_components) audio switch rows.
        text_masks : (K_t, n_text_features) text switch rows.
        pairs : (audio_index, text_index) integer arrays of equal length ``n``; default all
            ``K_a * K_t`` pairs in row-major order (audio index major).

        Returns
        -------
        (n, classes) float32 probabilities: row ``r`` is the model's output for
        ``audio_masks[audio_index[r]]`` with ``text_masks[text_index[r]]``. The encoders
        run ``K_a + K_t`` rows (fewer when masks repeat), not ``2 n``.
        """
        if self.kind != "multimodal":
            raise ValueError(f"crossed sampling needs a late-fusion model (per-modality encoders + head); "
                             f"this predictor wraps a {self.kind} model")
        self._check_sources(factorization, text_features)
        audio = self._unique_encode(audio_masks, factorization, lambda m: self._audio_from_masks(m, factorization))
        text = self._unique_encode(text_masks, text_features, lambda m: self._text_from_masks(m, text_features))
        if pairs is None:
            audio_index = np.repeat(np.arange(len(audio)), len(text))
            text_index = np.tile(np.arange(len(text)), len(audio))
        else:
            audio_index, text_index = (np.asarray(p, dtype=np.int64).reshape(-1) for p in pairs)
            if audio_index.shape != text_index.shape:
                raise ValueError(f"pairs must be two index arrays of equal length, got {audio_index.shape} "
                                 f"and {text_index.shape}")
            for name, index, size in (("audio", audio_index, len(audio)), ("text", text_index, len(text))):
                if len(index) and (index.min() < 0 or index.max() >= size):
                    raise ValueError(f"pairs: {name} index out of range [0, {size})")
        tick = time.perf_counter()
        audio_index, text_index = self._to_device(audio_index), self._to_device(text_index)
        logits = []
        with self._autocast():
            for start in range(0, len(audio_index), HEAD_CHUNK):
                stop = start + HEAD_CHUNK
                logits.append(self.model.classify(audio[audio_index[start:stop]], text[text_index[start:stop]]).float())
        out = self._finish(torch.cat(logits))
        self._tick("head", tick)
        return out


def load_predictor(run_dir: str | Path, task: str, kind: str, profile: Profile, corpus_dir: str | Path,
                   device: str = "auto", **options) -> ModelPredictor:
    """The best ``run_dir/task/kind`` model wrapped as a predictor (tokenizer from the corpus).

    ``options`` go to :class:`ModelPredictor` (``chunk_size``, ``features``, ``autocast``).
    """
    from utils.model_related.pipeline import prepare_tokens, trained_model

    device = resolve_device(device)
    tokens = prepare_tokens(profile, corpus_dir) if kind in ("lyrics", "multimodal") else None
    return ModelPredictor(trained_model(run_dir, task, kind, device=device), profile, tokens, device=device, **options)
