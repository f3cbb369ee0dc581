"""Reference distributions a profile model's scores are read against (variant-scorer):

- **peak counts**: the model's predicted counts on a peak set (``--peaks``), for the
  active-allele quantile;
- **shuffled null**: scores of variants whose flanks are dinucleotide-shuffled
  (``--null-shuffles N``), for empirical p-values.

Both run the same model code as scoring and are computed once per store, so a resumed run
reads them back instead of recomputing them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from veff.engine import ModelScorer, one_hot_device, reverse_complement_device
from veff.io.genome import Genome
from veff.io.windows import WindowBatch, build_windows
from veff.models.base import ModelHandle
from veff.scoring import nulls, peaks as peaks_io, profile
from veff.types import Variant


def predict_peak_counts(
    handle: ModelHandle, genome: Genome, peaks_path: str, *, rc: bool = True, batch_size: int = 64
) -> np.ndarray:
    """RC-averaged predicted counts per in-bounds peak: (N,), or (F, N) for a fold ensemble.

    Windows follow variant-scorer's PeakGenerator (one base left of the training window);
    peaks off their contig's ends or on unknown contigs are skipped, as upstream does.
    """
    if handle.kind != "profile":
        raise ValueError(f"--peaks applies to profile models; {handle.name} is {handle.kind}")
    table = peaks_io.read_peaks(peaks_path)
    L = handle.window_len
    names = [genome.resolve(str(c)) for c in table.chrom]
    sizes = {c: genome.contigs[n] for c, n in zip(table.chrom, names) if n is not None}
    keep = peaks_io.peaks_in_bounds(table, sizes, L)
    starts = peaks_io.peak_window_starts(table, L)
    rows = np.flatnonzero(keep)
    if not len(rows):
        raise ValueError(f"{peaks_path}: no peak lies inside the genome with a full {L} bp window")
    tokens = np.stack([genome.fetch(names[i], int(starts[i]), int(starts[i]) + L) for i in rows])

    def counts(params, tok):
        x = tok if not rc else jnp.concatenate([tok, reverse_complement_device(tok)])
        out = handle.apply(params, one_hot_device(x))
        c = jnp.exp(out["logcounts"].astype(jnp.float32))
        return c if not rc else 0.5 * (c[: tok.shape[0]] + c[tok.shape[0] :])

    fn = jax.jit(counts if handle.num_folds == 1 else jax.vmap(counts, in_axes=(0, None)))
    parts = []
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start : start + batch_size]
        pad = batch_size - len(batch)
        if pad:
            batch = np.concatenate([batch, np.full((pad, L), 4, np.uint8)])
        parts.append(np.asarray(fn(handle.params, jnp.asarray(batch)))[..., : batch_size - pad])
    return np.concatenate(parts, axis=-1)


def shuffled_null(
    scorer: ModelScorer,
    genome: Genome,
    variants: Sequence[Variant],
    rows: np.ndarray,
    *,
    num_shuffles: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Scores of ``num_shuffles`` dinucleotide-shuffled window pairs per variant:
    {stat: (N, T)}. ``variants[i]`` is the store's row ``rows[i]``.

    Each variant's shuffles depend only on (seed, its row index), so the null is the same
    whatever the batch size or the number of devices.
    """
    L = scorer.handle.window_len
    chosen = list(variants)
    if len(chosen) != len(rows):
        raise ValueError("shuffled_null: one row index per variant")
    out: dict[str, list[np.ndarray]] = {s: [] for s in scorer.stats}
    for start in range(0, len(chosen), 256):
        part = chosen[start : start + 256]
        w = build_windows(genome, part, L)
        ref, alt = nulls.shuffled_windows(
            w.ref, w.alt, w.ref_len, w.alt_len, L, num_shuffles, seed,
            variant_index=rows[start : start + len(part)],
        )
        k = num_shuffles
        batch = WindowBatch(
            ref=ref.reshape(-1, L),
            alt=alt.reshape(-1, L),
            ref_len=np.repeat(w.ref_len, k),
            alt_len=np.repeat(w.alt_len, k),
            padded=np.repeat(w.padded, k),
        )
        for stat, values in scorer.score(batch).items():
            out[stat].append(values)
    return {s: np.concatenate(v) for s, v in out.items()}


def pvalue_stats(stats: Sequence[str]) -> list[str]:
    """The statistics that get an empirical p-value (variant-scorer's list)."""
    return [s for s in stats if profile.STAT_INFO[s].tail is not None]


def pvalues(scores: dict[str, np.ndarray], null: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{stat + "_pval": (B, T)} against the pooled null, track by track."""
    out = {}
    for stat in pvalue_stats(list(null)):
        tail = profile.STAT_INFO[stat].tail
        obs, bg = scores[stat], null[stat]
        out[f"{stat}_pval"] = np.stack(
            [nulls.empirical_pvalues(obs[:, t], bg[:, t], tail) for t in range(obs.shape[1])], axis=1
        ).astype(np.float32)
    return out
