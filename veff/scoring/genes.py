"""Gene-level scores for binned models: per gene, statistics over its exon bins.

Host side (numpy): which genes a window's output bins reach and their exon / gene-body masks
in output bins (baskerville ``Gene.output_slice``: a bin belongs to an exon when it overlaps
it at all). Device side (jax.numpy): SED, logSED and GeneMaskLFC per (variant, gene, track)
from masked sums, with the tracks of the gene's strand (baskerville ``hound_snpgene``: a
"+" gene reads the "+" and unstranded tracks, a "-" gene the "-" and unstranded ones).
See docs/scores_genes.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from veff.io.gtf import Gene

GENE_STATS = ("SED", "logSED", "GeneMaskLFC")
LFC_PSEUDO = 1e-3  # AlphaGenome GeneMaskLFCScorer: ln(mean + 1e-3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GeneWindow:
    """The genes one window's output reaches: G genes, P bins."""

    genes: list[Gene]
    exon_mask: np.ndarray  # (G, P) bool
    body_mask: np.ndarray  # (G, P) bool
    minus: np.ndarray  # (G,) bool: the gene is on the "-" strand


def output_start(window_start0: int, *, window_len: int, num_bins: int, bin_size: int) -> int:
    """Genome position (0-based) of output bin 0's first base (symmetric crop)."""
    return window_start0 + (window_len - num_bins * bin_size) // 2


def _bins(intervals, out0: int, num_bins: int, bin_size: int) -> np.ndarray:
    mask = np.zeros(num_bins, dtype=bool)
    for s, e in intervals:  # any overlap: floor of the start, ceil of the end
        lo = max(0, (s - out0) // bin_size)
        hi = min(num_bins, -(-(e - out0) // bin_size))
        if lo < hi:
            mask[lo:hi] = True
    return mask


def genes_in_window(
    genes: Sequence[Gene], chrom: str, window_start0: int, *, window_len: int, num_bins: int,
    bin_size: int,
) -> GeneWindow:
    """Genes with at least one exon bin inside the window's output bins."""
    out0 = output_start(window_start0, window_len=window_len, num_bins=num_bins, bin_size=bin_size)
    out1 = out0 + num_bins * bin_size
    keep, exon, body = [], [], []
    for g in genes:
        if g.chrom != chrom or g.end <= out0 or g.start >= out1:
            continue
        m = _bins(g.exons, out0, num_bins, bin_size)
        if m.any():
            keep.append(g)
            exon.append(m)
            body.append(_bins([(g.start, g.end)], out0, num_bins, bin_size))
    empty = np.zeros((0, num_bins), dtype=bool)
    return GeneWindow(
        genes=keep,
        exon_mask=np.stack(exon) if exon else empty,
        body_mask=np.stack(body) if body else empty,
        minus=np.array([g.strand == "-" for g in keep], dtype=bool),
    )


def strand_tracks(tracks: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(plus, minus, names): per merged track (strand pairs as one), the track index a "+"
    gene reads and the one a "-" gene reads; names are the "+" member's (as the window-level
    strand merge). Unstranded tracks read themselves for both."""
    pair = [int(t.get("strand_pair", i)) for i, t in enumerate(tracks)]
    plus, minus, names = [], [], []
    for t, p in enumerate(pair):
        if p < t:
            continue
        a, b = (t, p) if str(tracks[t].get("name", "")).endswith("+") or p == t else (p, t)
        plus.append(a)
        minus.append(b)
        names.append(str(tracks[a].get("name", a)))
    return np.asarray(plus, np.int32), np.asarray(minus, np.int32), names


def gene_stats(
    ref: jax.Array, alt: jax.Array, exon_mask: jax.Array, minus: jax.Array,
    plus_idx: Any, minus_idx: Any, stats: Sequence[str] = GENE_STATS,
) -> dict[str, jax.Array]:
    """ref, alt (B, P, T) predictions; exon_mask (B, G, P) bool; minus (B, G) bool ->
    {stat: (B, G, T')} with T' = len(plus_idx) strand-selected tracks. Float32; sums over
    bins in the order of a plain masked reduction. Genes with no exon bin (padding) give 0
    for SED and logSED and NaN for GeneMaskLFC."""
    unknown = [s for s in stats if s not in GENE_STATS]
    if unknown:
        raise ValueError(f"unknown gene statistic(s) {unknown}; choose from {GENE_STATS}")
    m = exon_mask.astype(jnp.float32)
    # (B, G, T) masked sums over bins: exact 0/1 weights, float32 accumulation
    sum_r = jnp.einsum("bgp,bpt->bgt", m, ref.astype(jnp.float32),
                       precision=jax.lax.Precision.HIGHEST)
    sum_a = jnp.einsum("bgp,bpt->bgt", m, alt.astype(jnp.float32),
                       precision=jax.lax.Precision.HIGHEST)
    sel = jnp.where(minus[..., None], jnp.asarray(minus_idx), jnp.asarray(plus_idx))  # (B,G,T')
    sum_r = jnp.take_along_axis(sum_r, sel, axis=-1)
    sum_a = jnp.take_along_axis(sum_a, sel, axis=-1)
    n = m.sum(-1)[..., None]
    out = {}
    if "SED" in stats:
        out["SED"] = sum_a - sum_r
    if "logSED" in stats:
        out["logSED"] = (jnp.log1p(sum_a) - jnp.log1p(sum_r)) / math.log(2)
    if "GeneMaskLFC" in stats:
        out["GeneMaskLFC"] = jnp.log(sum_a / n + LFC_PSEUDO) - jnp.log(sum_r / n + LFC_PSEUDO)
    return out


def gene_stats_replicated(ref, alt, exon_mask, minus, plus_idx, minus_idx,
                          stats: Sequence[str] = GENE_STATS) -> dict[str, jax.Array]:
    """(S, B, P, T) replicates (shifts) -> the mean over S of each per-replicate statistic
    (baskerville compute_scores averages over shifts after the statistic)."""
    per = [gene_stats(r, a, exon_mask, minus, plus_idx, minus_idx, stats) for r, a in zip(ref, alt)]
    return {k: jnp.mean(jnp.stack([p[k] for p in per]), axis=0) for k in per[0]}


def tss_distance(gene: Gene, pos0: int) -> int:
    """Signed distance from the TSS to a 0-based position, in the gene's direction
    (positive: downstream of the TSS, into the gene)."""
    d = pos0 - gene.tss
    return d if gene.strand == "+" else -d
