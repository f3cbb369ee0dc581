"""The jit boundary: one compiled step per model that runs REF and ALT (and their reverse
complements) and reduces the pair of predictions to scores on the device.

Only (B, T) score arrays leave the device. Tokens travel as uint8 and are one-hot encoded on
the device. Full batches share one static size; a short last batch is padded only to its
bucket (the next power of two, see ``sharding.bucket_size``), so few shapes compile.
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
from veff.settings import ScoreOptions  # noqa: F401 - defined with every run option



_STEP_NAMES = {False: "full", True: "incremental"}


class ScoringError(Exception):
    """A scoring request that cannot be honoured (unknown statistic, wrong model kind)."""


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


def _forward_alleles(handle: ModelHandle, params, ref_tok, alt_tok, rc: bool, dtype, *extra):
    """Run the model once on the stacked [ref, alt, *extra, (their reverse complements)] batch."""
    toks = jnp.concatenate([ref_tok, alt_tok, *extra], axis=0)
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
        self._post = None  # binned models: strand merge after the shift and fold means
        if handle.kind == "profile":
            if options.shifts != (0,):
                raise ScoringError(
                    f"{handle.name}: shift ensembles apply to binned models; profile scores "
                    "are defined on the centred window"
                )
            self.stats, self.formulas, reduce = _profile_reducer(handle, options, peak_counts)
            self.track_names = [handle.name]
        elif handle.kind == "cells":  # scBasset: tracks are cells (veff/scoring/cells.py)
            from veff.scoring import cells

            self.stats, self.formulas, reduce = cells.reducer(handle, options)
            self.track_names = handle.track_names
        elif handle.kind == "binned":
            self.stats, self.formulas, reduce, self._post, self.track_names = _binned_reducer(
                handle, options
            )
        else:  # pragma: no cover - ModelHandle.kind is a Literal
            raise ScoringError(f"unknown model kind {handle.kind!r}")
        self.mesh = sharding.make_mesh(options.devices)
        self.params = sharding.replicate(handle.params, self.mesh)
        peaks = _peak_array(peak_counts, handle.num_folds)
        self.peaks = None if peaks is None else sharding.replicate(peaks, self.mesh)
        self._steps = {False: jax.jit(self._make_step(reduce, pair=False))}
        if handle.apply_pair is not None:
            self._steps[True] = jax.jit(self._make_step(reduce, pair=True))
        # compiled steps by (incremental?, rows): full batches share one size, short last
        # batches their bucket; ``compiled_shapes`` lists what ran or was compiled
        self._compiled: dict[tuple[bool, int], Any] = {}
        self.auto: dict[str, Any] = {}  # step name -> autobatch.Choice, once made
        self._batch: dict[bool, int] = {}  # rows per full batch, by step (incremental?)
        if options.batch_size != "auto":  # split evenly over the devices
            size = sharding.padded_batch_size(options.batch_size, self.mesh)
            self._batch = {pair: size for pair in self._steps}

    @property
    def step_size(self) -> int:
        """Rows per full batch of the full step (see ``batch_rows``)."""
        return self.batch_rows(False)

    def batch_rows(self, pair: bool) -> int:
        """Rows per full batch of one step. ``auto`` is resolved here, per step, on first
        use: a scorer built only for its metadata (``plan``, a cluster client) compiles
        nothing, and an SNV-only run never sizes (or compiles) the full step."""
        if pair not in self._batch:
            self._batch[pair] = self._choose_batch(pair)
        return self._batch[pair]

    @property
    def compiled_shapes(self) -> list[tuple[str, int]]:
        return sorted((_STEP_NAMES[pair], rows) for pair, rows in self._compiled)

    def _compile(self, pair: bool, rows: int) -> Any:
        """Lower and compile one step for ``rows`` rows (nothing runs)."""
        if (pair, rows) not in self._compiled:
            spec = sharding.batch_spec(self.mesh)
            L = self.handle.window_len
            args = [jax.ShapeDtypeStruct((rows, L), np.uint8, sharding=spec)] * 2 + [
                jax.ShapeDtypeStruct((rows,), np.int32, sharding=spec)] * 2
            self._compiled[pair, rows] = (
                self._steps[pair].lower(self.params, self.peaks, *args).compile()
            )
        return self._compiled[pair, rows]

    def _choose_batch(self, pair: bool) -> int:
        """``--batch-size auto`` for one step (veff.autobatch): the full step, which indels
        take, or the incremental SNV step."""
        from veff import autobatch

        o = self.options
        key = (self.handle.sha256, self.handle.name, self.handle.window_len, o.precision, o.rc,
               o.shifts, o.untransform, o.center_bp, tuple(self.stats),
               None if self.peaks is None else self.peaks.shape, pair)
        label = self.handle.name + (", SNV step" if pair else "")
        choice, _ = autobatch.choose(
            key, lambda rows: self._compile(pair, rows), num_devices=self.mesh.size,
            devices=list(self.mesh.devices.flat), model=label,
        )
        # of the search's executables keep the chosen size's (reused by every full batch)
        self._compiled = {k: v for k, v in self._compiled.items()
                          if k[0] != pair or k[1] == choice.batch_size}
        self.auto[_STEP_NAMES[pair]] = choice
        return choice.batch_size

    def _make_step(self, reduce: Callable, *, pair: bool) -> Callable:
        handle, rc, shifts = self.handle, self.options.rc, self.options.shifts
        dtype = jnp.bfloat16 if self.options.precision == "bf16" else jnp.float32
        L, off = handle.window_len, self.options.centre_offset
        align = handle.kind == "binned" and self.options.indel_align

        def full(params, ref_tok, alt_tok, shift, ref_len, alt_len):
            ref_tok, alt_tok = shift_device(ref_tok, shift), shift_device(alt_tok, shift)
            if align:  # + ALT moved back by its length difference: right flanks coincide
                from veff.scoring.indel_align import shift_rows

                comp = shift_rows(alt_tok, ref_len - alt_len)
                out = _forward_alleles(handle, params, ref_tok, alt_tok, rc, dtype, comp)
                return _split(out, 6 if rc else 3, ref_tok.shape[0])
            out = _forward_alleles(handle, params, ref_tok, alt_tok, rc, dtype)
            return _split(out, 4 if rc else 2, ref_tok.shape[0])

        def incremental(params, ref_tok, alt_tok, shift, ref_len, alt_len):
            # REF in full, ALT only where the substituted base reaches (exact)
            ref_tok, alt_tok = shift_device(ref_tok, shift), shift_device(alt_tok, shift)
            center = L // 2 + off + shift
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

        def one_fold(params, peaks, ref_tok, alt_tok, ref_len, alt_len, genes):
            params = _compute_dtype_params(params, dtype)
            per_shift = [
                reduce(forward(params, ref_tok, alt_tok, s, ref_len, alt_len), ref_len, alt_len, s, peaks,
                       genes)
                for s in shifts
            ]
            if len(per_shift) == 1:
                return per_shift[0]
            # baskerville's order: statistics per shift, then their mean
            return jax.tree.map(lambda *a: jnp.mean(jnp.stack(a), axis=0), *per_shift)

        merge = self._post or (lambda scores: scores)

        def post(scores):  # gene statistics (keys "gene:…") are strand-selected, never merged
            return {**merge(scores), **{k: v for k, v in scores.items() if k.startswith("gene:")}}

        def step(params, peaks, ref_tok, alt_tok, ref_len, alt_len, *genes):
            genes = genes or None  # binned models with --genes: (exon_mask, minus)
            if handle.num_folds == 1:
                return post(one_fold(params, peaks, ref_tok, alt_tok, ref_len, alt_len, genes))
            peak_axis = None if peaks is None else 0
            per_fold = jax.vmap(one_fold, in_axes=(0, peak_axis, None, None, None, None, None))(
                params, peaks, ref_tok, alt_tok, ref_len, alt_len, genes
            )
            # fold ensemble: the mean of per-fold scores (variant-scorer's summary)
            return post(jax.tree.map(lambda a: a.mean(axis=0), per_fold))

        return step

    def score(self, windows: WindowBatch, genes: Any = None) -> dict[str, np.ndarray]:
        """Scores for every row of ``windows``: {stat: (B, T) float32}; with ``genes`` (a
        ``veff.scoring.gene_pairs.GeneRows``, binned models) also {"gene:<stat>": (B, G, T')}.

        Single-base substitutions go through the incremental step when the model has one;
        everything else through the full step. Each step sees the same static batch shape
        (the last batch of each kind is padded and the padding dropped)."""
        n = len(windows.ref)
        snv = (windows.ref_len == 1) & (windows.alt_len == 1)
        groups = [(np.flatnonzero(snv), True), (np.flatnonzero(~snv), False)]
        if True not in self._steps:
            groups = [(np.arange(n), False)]
        out = {s: np.full((n, len(self.track_names)), np.nan, np.float32) for s in self.stats}
        for rows, pair in groups:
            if len(rows):
                sub = None if genes is None else genes.take(rows)
                for k, v in self._run(pair, _take(windows, rows), sub).items():
                    if k not in out:  # gene statistics
                        out[k] = np.full((n, *v.shape[1:]), np.nan, np.float32)
                    out[k][rows] = v.reshape(len(rows), *out[k].shape[1:])
        return out

    def _run(self, pair: bool, windows: WindowBatch, genes: Any = None) -> dict[str, np.ndarray]:
        n, bs = len(windows.ref), self.batch_rows(pair)
        pending, spans = [], []
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            size = sharding.bucket_size(stop - start, bs, self.mesh)
            args = _padded_args(windows, start, stop, size)
            if genes is not None:
                args = (*args, *genes.padded(start, stop, size))
            args = sharding.shard_batch(args, self.mesh)
            # Dispatch is asynchronous: queue every step before reading any result back.
            # with --genes the step takes the gene masks too (shapes of the GTF's density):
            # jit's own cache compiles it per shape; the sizing above ignores the masks
            step = self._steps[pair] if genes is not None else self._compile(pair, size)
            pending.append(step(self.params, self.peaks, *args))
            spans.append(stop - start)
        pieces = [{k: np.asarray(v)[:m] for k, v in p.items()} for p, m in zip(pending, spans)]
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} if pieces else {}


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

    def reduce(parts: list[dict], ref_len, alt_len, shift, sorted_peaks, genes=None) -> dict[str, Any]:
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
    pairs = [t.get("strand_pair", i) for i, t in enumerate(handle.tracks)]
    strand_pair = jnp.asarray(pairs, dtype=jnp.int32)
    off = options.centre_offset
    from veff.scoring.genes import strand_tracks

    gene_plus, gene_minus, _ = strand_tracks(handle.tracks)
    # baskerville averages the raw (squashed) RC pair, then untransforms (its ensemble model)
    untransform_after_rc = options.centering == "baskerville"

    def prepare(pred):
        if options.untransform is None:
            return pred
        return tracks.untransform(pred, handle.tracks, legacy=options.untransform == "legacy")

    def reduce(parts: list[dict], ref_len, alt_len, shift, peaks, genes=None) -> dict[str, Any]:
        n = len(parts) // 2 if options.rc else len(parts)
        preds = [p["tracks"] for p in parts[:n]]
        diff = None  # ALT - REF per bin, averaged as a difference over the RC pair
        if options.rc:
            back = [tracks.rc_unflip(p["tracks"], strand_pair) for p in parts[n:]]
            if untransform_after_rc:
                preds = [prepare(0.5 * (f + r)) for f, r in zip(preds, back)]
            else:
                fwd, back = [prepare(f) for f in preds], [prepare(r) for r in back]
                preds = [0.5 * (f + r) for f, r in zip(fwd, back)]
                if len(preds) == 2:  # mean of differences, not difference of means
                    diff = 0.5 * ((fwd[1] - fwd[0]) + (back[1] - back[0]))
        else:
            preds = [prepare(p) for p in preds]
        ref, alt = preds[0], preds[1]
        geometry = dict(bin_size=handle.bin_size, window_len=handle.window_len, shift_bp=shift + off)
        if len(preds) == 3:  # indel alignment: right of the variant from the moved-back ALT
            alt = tracks.stitch_predictions(alt, preds[2], **geometry)
        scores = tracks.compute_track_stats(ref, alt, specs, **geometry, diff=diff)
        if genes is not None:  # exon masks in REF's bins; ALT as stitched for indels
            from veff.scoring.genes import gene_stats

            g = gene_stats(ref, alt, genes[0], genes[1], gene_plus, gene_minus)
            scores.update({f"gene:{k}": v for k, v in g.items()})
        return scores

    names, post = handle.track_names, None
    merge = any("strand_pair" in t for t in handle.tracks) and not options.keep_strands
    if merge and any(p != i for i, p in enumerate(pairs)):
        names = tracks.collapsed_track_names(handle.track_names, pairs)

        def post(scores):  # baskerville: each statistic's strand merge, after the means
            return tracks.merge_strands(scores, specs, pairs)

    return [s.name for s in specs], {s.name: s.formula for s in specs}, reduce, post, names


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


# ---------------------------------------------------------------------------- raw predictions
def predict_tokens(handle: ModelHandle, tokens: np.ndarray, *, rc: bool = False,
                   batch_size: int = 8, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Raw model outputs for (N, L) uint8 token windows (``veff.load_model(...).predict``).

    The same one-hot, reverse complement and fold rules as scoring: with ``rc`` the forward
    and RC outputs are averaged as the reducers do (profile: ``profile.rc_average``; binned:
    bins reversed and strand pairs swapped); folds are averaged as ``veff predict`` does
    (profile logits mean, counts in linear space; binned tracks mean)."""
    from veff.scoring import profile, tracks

    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    strand_pair = jnp.asarray([t.get("strand_pair", i) for i, t in enumerate(handle.tracks)], jnp.int32)

    def one_fold(params, tok):
        params = _compute_dtype_params(params, dtype)
        fwd = jax.tree.map(lambda a: a.astype(jnp.float32), handle.apply(params, one_hot_device(tok, dtype)))
        if not rc:
            return fwd
        rev = jax.tree.map(lambda a: a.astype(jnp.float32),
                           handle.apply(params, one_hot_device(reverse_complement_device(tok), dtype)))
        if handle.kind == "profile":
            return profile.rc_average(fwd, rev)
        return {"tracks": 0.5 * (fwd["tracks"] + tracks.rc_unflip(rev["tracks"], strand_pair))}

    @jax.jit
    def step(params, tok):
        if handle.num_folds == 1:
            return one_fold(params, tok)
        out = jax.vmap(one_fold, in_axes=(0, None))(params, tok)
        if handle.kind == "profile":
            return {"logits": out["logits"].mean(0),
                    "logcounts": jax.nn.logsumexp(out["logcounts"], axis=0) - jnp.log(handle.num_folds)}
        return jax.tree.map(lambda a: a.mean(axis=0), out)

    n = len(tokens)
    size = max(1, min(batch_size, n))
    pieces = []
    for start in range(0, n, size):
        chunk = tokens[start : start + size]
        real = len(chunk)
        if real < size:  # one compiled shape: pad with all-N windows, drop their outputs
            chunk = np.concatenate([chunk, np.full((size - real, tokens.shape[1]), 4, np.uint8)])
        out = step(handle.params, jnp.asarray(chunk))
        pieces.append({k: np.asarray(v)[:real] for k, v in out.items()})
    if not pieces:
        return {}
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
