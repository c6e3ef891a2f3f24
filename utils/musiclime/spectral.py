"""AST input features of mask-composed clips, straight from the masks (no waveform composed).

The AST front end is linear in the waveform up to the power spectrum, and a perturbed clip
is a masked sum of components, so its power spectrum is a quadratic form in the mask with
small per-frame Gram matrices computed once per song; for 0/1 masks each frame's features
take one of ``2**a`` values (``a`` components touch the frame), tabulated once per song and
looked up per sample. No perturbed waveform is ever composed, framed or Fourier-transformed.
:class:`utils.musiclime.predict.ModelPredictor` uses a :class:`SpectralComposer` per song.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from utils.config import AudioConfig
from utils.dataset_related.features import MEL_FLOOR, _mel_filters, frame_geometry, frame_spectra, spectra_to_features


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
      instead of composing the frames' spectra (257 bins at 16 kHz, 1025 at 44.1 kHz) and a
      bins x mel product; any (float) masks;
    * ``'table'`` -- for 0/1 masks a frame's features depend only on which of its ``a``
      components are on: all ``2**a`` cases are computed once per song from ``G`` (log and
      normalisation included) and a call is a lookup, ``table[base[f] + code[r, f]]`` with
      ``code`` the frame's mask bits -- no arithmetic per sample beyond one small matrix
      product. Masks that are not 0/1 go to a Gram (or spectra) fallback.

    ``'auto'`` takes ``'table'`` when no frame has more than ``TABLE_MAX_COMPONENTS``
    components and the table fits ``TABLE_BYTES``, else the cheaper of ``'gram'`` and
    ``'spectra'`` by multiply-adds (``'spectra'`` when most components overlap most frames).
    All equal ``ASTFeatureExtractor`` on the composed waveform within 1e-3 at 16 kHz and at the
    authors' 44.1 kHz (its torchaudio path; tests/test_speed.py, tests/test_features.py).
    Gram entries are float64 (``dtype``) because the quadratic form sums cross terms that
    may cancel; features are float32.

    Parameters
    ----------
    components_matrix : (n_components, samples) float array at ``audio_cfg.sample_rate``.
    audio_cfg : the profile's audio settings (rate, hence the framing; mel bins, frames, normalisation).
    device : where the precomputed tables live and features are computed.
    method : 'auto', 'table', 'gram' or 'spectra'.
    dtype : float dtype of the Gram tables and the quadratic form (float64 default).
    """

    BLOCK_BYTES = 256 * 2**20   # bound on the float64 temporaries of one step (memory)
    TABLE_BYTES = 512 * 2**20   # largest feature table ('table' method)
    TABLE_MAX_COMPONENTS = 12   # at most 2**12 subsets of the components touching one frame

    def __init__(self, components_matrix: np.ndarray, audio_cfg: AudioConfig, device: str | torch.device = "cpu",
                 method: str = "auto", dtype: torch.dtype = torch.float64):
        geometry = frame_geometry(audio_cfg.sample_rate)              # refuses an unsupported rate
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
        self.num_frames = min(geometry.num_frames(matrix.shape[1]), audio_cfg.max_length)  # the rest is padding
        if self.num_frames < 1:
            raise ValueError(f"components of {matrix.shape[1]} samples are shorter than one frame "
                             f"({geometry.frame_length} samples at {geometry.sample_rate} Hz)")
        # (C, frames, frame_length) view: 400 samples at 16 kHz, 1102 at 44.1 kHz
        windows = matrix.unfold(-1, geometry.frame_length, geometry.hop_length)[:, : self.num_frames]
        # a component touches a frame when a sample in its window is not 0 (else its spectrum there is 0)
        active = (windows != 0).any(dim=-1).cpu().numpy()                             # (C, frames)
        self.runs = _active_runs(active)                                              # [(start, end, comps)]
        n_mel, n_bins = audio_cfg.num_mel_bins, geometry.num_bins
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
                                            torch.as_tensor(frame, device=self.device)],
                                    geometry.sample_rate)[:, 0]                                   # (n_active, bins)
            spectra = torch.cat([spectra, spectra.new_zeros(1, spectra.shape[1])])
            slots = torch.as_tensor(slots, device=self.device)
            if self.method == "table":
                self._build_table(spectra, slots)
            else:
                self._build_gram(spectra, slots)
        else:
            spectra = frame_spectra(matrix, geometry.sample_rate)[:, : self.num_frames]   # (C, frames, bins)
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
