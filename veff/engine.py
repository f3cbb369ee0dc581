"""The jit boundary: one compiled step per model that runs REF and ALT (and their reverse
complements) and reduces the pair of predictions to scores on the device.

Only (B, T) score arrays leave the device. Tokens travel as uint8 and are one-hot encoded on
the device. Every batch is padded to the same static size so each model compiles once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from veff import sharding
from veff.io import windows
from veff.io.windows import WindowBatch
from veff.models.base import ModelHandle



class ScoringError(Exception):
    """A scoring request that cannot be honoured (unknown statistic, wrong model kind)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    stats: tuple[str, ...] | None = None  # None: every statistic that applies to the model
    rc: bool = True
    batch_size: int = 64
    precision: str = "fp32"
    center_bp: int | None = None  # binned models: centre mask for the masked statistics
    devices: int | None = None  # use the first N local devices (None: all)
    shifts: tuple[int, ...] = (0,)  # binned models: shift ensemble in bp (content moves right)
    untransform: str | None = None  # binned models: None, "new" or "legacy" (baskerville)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch size must be ≥ 1, got {self.batch_size}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if not self.shifts or len(set(self.shifts)) != len(self.shifts):
            raise ValueError(f"shifts must be distinct and non-empty, got {self.shifts}")
        if self.untransform not in (None, "new", "legacy"):
            raise ValueError(f"untransform must be new or legacy, got {self.untransform!r}")


def one_hot_device(tokens: jax.Array, dtype=jnp.float32) -> jax.Array:
    """(…, L) uint8 tokens -> (…, L, 4) one-hot on the device; N (token 4) is all zeros."""
    return windows.one_hot(tokens.astype(jnp.int32), xp=jnp).astype(dtype)


def reverse_complement_device(tokens: jax.Array) -> jax.Array:
    return windows.reverse_complement(tokens.astype(jnp.int32), xp=jnp).astype(tokens.dtype)


def shift_device(tokens: jax.Array, shift: int) -> jax.Array:
    """Move window content right by ``shift`` bases (left when negative), filling with N."""
    if shift == 0:
        return tokens
    pad = jnp.full((*tokens.shape[:-1], abs(shift)), 4, tokens.dtype)
    if shift > 0:
        return jnp.concatenate([pad, tokens[..., :-shift]], axis=-1)
    return jnp.concatenate([tokens[..., -shift:], pad], axis=-1)


def _compute_dtype_params(params, dtype):
    """bf16 compute: cast floating parameters, except tables that must stay exact (Enformer's
    TF gamma positional table), which the models upcast where they use them."""
    if dtype == jnp.float32:
        return params

    def cast(path, a):
        name = jax.tree_util.keystr(path)
        if "gamma" in name and "tf" in name:
            return a
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map_with_path(cast, params)


def _forward_alleles(handle: ModelHandle, params, ref_tok, alt_tok, rc: bool, dtype):
    """Run the model once on the stacked [ref, alt, (rc ref, rc alt)] batch."""
    toks = jnp.concatenate([ref_tok, alt_tok], axis=0)
    if rc:
        toks = jnp.concatenate([toks, reverse_complement_device(toks)], axis=0)
    x = one_hot_device(toks, dtype)
    out = handle.apply(params, x)
    return jax.tree.map(lambda a: a.astype(jnp.float32), out)


def _split(out: dict, num: int, b: int) -> list[dict]:
    return [{k: v[i * b : (i + 1) * b] for k, v in out.items()} for i in range(num)]


class ModelScorer:
    """Scores batches of ref/alt windows with one model; owns the compiled steps.

    ``peak_counts``: predicted counts of a peak set (profile models; (N,) or (F, N) per fold)
    that the active-allele-quantile statistics compare against.
    """

    def __init__(
        self,
        handle: ModelHandle,
        options: ScoreOptions,
        *,
        peak_counts: np.ndarray | None = None,
    ):
        self.handle = handle
        self.options = options
        if handle.kind == "profile":
            if options.shifts != (0,):
                raise ScoringError(
                    f"{handle.name}: shift ensembles apply to binned models; profile scores "
                    "are defined on the centred window"
                )
            self.stats, self.formulas, reduce = _profile_reducer(handle, options, peak_counts)
            self.track_names = [handle.name]
        elif handle.kind == "binned":
            self.stats, self.formulas, reduce = _binned_reducer(handle, options)
            self.track_names = handle.track_names
        else:  # pragma: no cover - ModelHandle.kind is a Literal
            raise ScoringError(f"unknown model kind {handle.kind!r}")
        self.mesh = sharding.make_mesh(options.devices)
        # Every step sees the same static batch shape, split evenly over the devices.
        self.step_size = sharding.padded_batch_size(options.batch_size, self.mesh)
        self.params = sharding.replicate(handle.params, self.mesh)
        self.peaks = _peak_array(peak_counts, handle.num_folds)
        self._full_step = jax.jit(self._make_step(reduce, pair=False))
        self._pair_step = (
            jax.jit(self._make_step(reduce, pair=True)) if handle.apply_pair is not None else None
        )

    def _make_step(self, reduce: Callable, *, pair: bool) -> Callable:
        handle, rc, shifts = self.handle, self.options.rc, self.options.shifts
        dtype = jnp.bfloat16 if self.options.precision == "bf16" else jnp.float32
        L = handle.window_len

        def full(params, ref_tok, alt_tok, shift):
            ref_tok, alt_tok = shift_device(ref_tok, shift), shift_device(alt_tok, shift)
            out = _forward_alleles(handle, params, ref_tok, alt_tok, rc, dtype)
            return _split(out, 4 if rc else 2, ref_tok.shape[0])

        def incremental(params, ref_tok, alt_tok, shift):
            # REF in full, ALT only where the substituted base reaches (exact)
            ref_tok, alt_tok = shift_device(ref_tok, shift), shift_device(alt_tok, shift)
            center = L // 2 + shift
            parts = list(handle.apply_pair(
                params, one_hot_device(ref_tok, dtype), one_hot_device(alt_tok, dtype), center
            ))
            if rc:
                parts += handle.apply_pair(
                    params,
                    one_hot_device(reverse_complement_device(ref_tok), dtype),
                    one_hot_device(reverse_complement_device(alt_tok), dtype),
                    L - 1 - center,
                )
            return [jax.tree.map(lambda a: a.astype(jnp.float32), q) for q in parts]

        forward = incremental if pair else full

        def one_fold(params, peaks, ref_tok, alt_tok, ref_len, alt_len):
            params = _compute_dtype_params(params, dtype)
            per_shift = [
                reduce(forward(params, ref_tok, alt_tok, s), ref_len, alt_len, s, peaks)
                for s in shifts
            ]
            if len(per_shift) == 1:
                return per_shift[0]
            # baskerville's order: statistics per shift, then their mean
            return jax.tree.map(lambda *a: jnp.mean(jnp.stack(a), axis=0), *per_shift)

        def step(params, peaks, ref_tok, alt_tok, ref_len, alt_len):
            if handle.num_folds == 1:
                return one_fold(params, peaks, ref_tok, alt_tok, ref_len, alt_len)
            peak_axis = None if peaks is None else 0
            per_fold = jax.vmap(one_fold, in_axes=(0, peak_axis, None, None, None, None))(
                params, peaks, ref_tok, alt_tok, ref_len, alt_len
            )
            # fold ensemble: the mean of per-fold scores (variant-scorer's summary)
            return jax.tree.map(lambda a: a.mean(axis=0), per_fold)

        return step

    def score(self, windows: WindowBatch) -> dict[str, np.ndarray]:
        """Scores for every row of ``windows``: {stat: (B, T) float32}.

        Single-base substitutions go through the incremental step when the model has one;
        everything else through the full step. Each step sees the same static batch shape
        (the last batch of each kind is padded and the padding dropped)."""
        n = len(windows.ref)
        snv = (windows.ref_len == 1) & (windows.alt_len == 1)
        groups = [(np.flatnonzero(snv), self._pair_step), (np.flatnonzero(~snv), self._full_step)]
        if self._pair_step is None:
            groups = [(np.arange(n), self._full_step)]
        out = {s: np.full((n, len(self.track_names)), np.nan, np.float32) for s in self.stats}
        for rows, step in groups:
            if len(rows):
                for k, v in self._run(step, _take(windows, rows)).items():
                    out[k][rows] = v.reshape(len(rows), -1)
        return out

    def _run(self, step: Callable, windows: WindowBatch) -> dict[str, np.ndarray]:
        n, bs = len(windows.ref), self.step_size
        pending, spans = [], []
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            args = sharding.shard_batch(_padded_args(windows, start, stop, bs), self.mesh)
            # Dispatch is asynchronous: queue every step before reading any result back.
            pending.append(step(self.params, self.peaks, *args))
            spans.append(stop - start)
        pieces = [{k: np.asarray(v)[:m] for k, v in p.items()} for p, m in zip(pending, spans)]
        return {k: np.concatenate([p[k] for p in pieces]) for k in self.stats}


def _peak_array(peak_counts: np.ndarray | None, num_folds: int) -> jax.Array | None:
    """Sorted peak counts, (N,) or (F, N) with one row per fold."""
    if peak_counts is None:
        return None
    peaks = np.sort(np.asarray(peak_counts, np.float32), axis=-1)
    expected = 2 if num_folds > 1 else 1
    if peaks.ndim != expected or (num_folds > 1 and peaks.shape[0] != num_folds):
        raise ScoringError(f"peak counts of shape {peaks.shape} for {num_folds} fold(s)")
    return jnp.asarray(peaks)


def _take(w: WindowBatch, rows: np.ndarray) -> WindowBatch:
    return dataclasses.replace(
        w, ref=w.ref[rows], alt=w.alt[rows], ref_len=w.ref_len[rows], alt_len=w.alt_len[rows],
        padded=w.padded[rows],
    )


def _padded_args(w: WindowBatch, start: int, stop: int, size: int) -> tuple[np.ndarray, ...]:
    def pad(a: np.ndarray, fill) -> np.ndarray:
        a = a[start:stop]
        if len(a) == size:
            return a
        extra = np.full((size - len(a), *a.shape[1:]), fill, dtype=a.dtype)
        return np.concatenate([a, extra])

    # Padding rows are all-N windows with 1-bp alleles: valid input, results discarded.
    return pad(w.ref, 4), pad(w.alt, 4), pad(w.ref_len, 1), pad(w.alt_len, 1)


# ---------------------------------------------------------------------------- reducers
def _profile_reducer(handle: ModelHandle, options: ScoreOptions, peak_counts):
    from veff.scoring import profile

    available = [
        s for s, info in profile.STAT_INFO.items() if peak_counts is not None or not info.needs_peaks
    ]
    stats = _select(options.stats, available, handle.name, profile.STAT_INFO)

    def reduce(parts: list[dict], ref_len, alt_len, shift, sorted_peaks) -> dict[str, Any]:
        if len(parts) == 4:
            ref = profile.rc_average(parts[0], parts[2])
            alt = profile.rc_average(parts[1], parts[3])
        else:
            ref, alt = parts
        return profile.profile_scores(
            ref, alt, ref_len, alt_len, tuple(stats), sorted_peak_counts=sorted_peaks
        )

    return stats, {s: profile.STAT_INFO[s].formula for s in stats}, reduce


def _binned_reducer(handle: ModelHandle, options: ScoreOptions):
    from veff.scoring import tracks

    specs = tracks.default_specs(options.stats, center_bp=options.center_bp)
    strand_pair = jnp.asarray(
        [t.get("strand_pair", i) for i, t in enumerate(handle.tracks)], dtype=jnp.int32
    )

    def prepare(pred):
        if options.untransform is None:
            return pred
        return tracks.untransform(pred, handle.tracks, legacy=options.untransform == "legacy")

    def reduce(parts: list[dict], ref_len, alt_len, shift, peaks) -> dict[str, Any]:
        ref, alt = prepare(parts[0]["tracks"]), prepare(parts[1]["tracks"])
        diff = None  # ALT - REF per bin; averaged as a difference over the RC pair
        if len(parts) == 4:
            ref_rc, alt_rc = prepare(parts[2]["tracks"]), prepare(parts[3]["tracks"])
            ref, alt, diff = tracks.rc_average_pair(ref, alt, ref_rc, alt_rc, strand_pair)
        return tracks.compute_track_stats(
            ref, alt, specs, bin_size=handle.bin_size, window_len=handle.window_len,
            shift_bp=shift, diff=diff,
        )

    return [s.name for s in specs], {s.name: s.formula for s in specs}, reduce


def _select(requested, available: list[str], model: str, info: dict) -> list[str]:
    if requested is None:
        return available
    unknown = [s for s in requested if s not in info]
    if unknown:
        raise ScoringError(
            f"unknown statistic(s) {', '.join(unknown)} for model {model}; "
            f"choose from {', '.join(available)}"
        )
    missing = [s for s in requested if s not in available]
    if missing:
        raise ScoringError(f"statistic(s) {', '.join(missing)} need --peaks")
    return list(requested)
