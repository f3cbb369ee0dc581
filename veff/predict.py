"""Bias-corrected per-base accessibility profiles of a BPNet/chromBPNet checkpoint, as bigWig.

For each region (centred on its narrowPeak summit, else its midpoint; the same windows as
training, see ``veff.train.data``) the model predicts ``output_len`` bases:

    profile = exp(logcounts) * softmax(logits)          (expected cuts per base)

With ``rc=True`` the forward and reverse-complement predictions are averaged as variant-scorer
does: logits in logit space (the RC logits flipped back), counts in linear space. A
``chrombpnet`` (combined) checkpoint is bias-corrected by dropping its bias model unless
``bias_corrected=False``; a ``bpnet`` checkpoint (``nobias/``) is used as it is.

Overlapping outputs: every base takes the value of the region whose centre is closest (ties go
to the upstream region), so each written base comes from exactly one prediction and the file
holds no averaged seams. Bases outside every region's output are absent from the bigWig.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from veff.checkpoint import CheckpointError, load_checkpoint
from veff.io.genome import Genome
from veff.models import bpnet
from veff.scoring.profile import rc_average
from veff.train.data import Regions, TrainDataError, input_start, output_start, read_regions


@dataclasses.dataclass(frozen=True, kw_only=True)
class PredictResult:
    out_bigwig: Path
    num_regions: int
    num_bases: int
    input_len: int
    output_len: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProfileModel:
    """A single (bias-corrected or full) BPNet-family model ready to run on tokens."""

    apply: object  # (params, onehot (B, L, 4)) -> {"logits", "logcounts"}, folds averaged
    params: object
    input_len: int
    output_len: int


def load_profile_model(model_dir: str | os.PathLike, *, bias_corrected: bool = True) -> ProfileModel:
    ckpt = load_checkpoint(model_dir)
    if ckpt.arch not in (bpnet.ARCH_SINGLE, bpnet.ARCH_COMBINED):
        raise CheckpointError(f"{model_dir}: arch {ckpt.arch!r} has no per-base profile head")
    handle = bpnet.from_checkpoint(ckpt)  # strict parameter check
    configs = bpnet.configs_from_checkpoint(ckpt)
    if ckpt.arch == bpnet.ARCH_COMBINED and bias_corrected:
        cfg = configs[bpnet.ACCESSIBILITY]
        params = handle.params[bpnet.ACCESSIBILITY]

        def single(p, x):
            return bpnet.forward(cfg, p, x)
    else:
        cfg = configs.get("model") or configs[bpnet.ACCESSIBILITY]
        params, single = handle.params, handle.apply

    if handle.num_folds > 1:
        def apply(p, x):  # folds averaged like replicates: logits mean, counts in linear space
            out = jax.vmap(single, in_axes=(0, None))(p, x)
            return {"logits": out["logits"].mean(0),
                    "logcounts": jax.nn.logsumexp(out["logcounts"], axis=0) - jnp.log(handle.num_folds)}
    else:
        apply = single
    return ProfileModel(apply=apply, params=params, input_len=cfg.input_len, output_len=cfg.output_len)


def predict_outputs(
    model: ProfileModel, genome: Genome, regions: Regions, *, rc: bool = True, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """{"logits": (N, P), "logcounts": (N,)} for centred windows, RC-averaged when ``rc``."""
    L = model.input_len

    @jax.jit
    def run(params, tokens):
        x = jax.nn.one_hot(tokens, 4, dtype=jnp.float32)
        out = model.apply(params, x)
        if rc:
            out = rc_average(out, model.apply(params, x[:, ::-1, ::-1]))
        return out

    n = len(regions)
    logits = np.empty((n, model.output_len), np.float32)
    logcounts = np.empty(n, np.float32)
    for s in range(0, n, batch_size):
        idx = np.arange(s, s + batch_size) % n  # wrap the last batch: one compiled shape
        tokens = np.stack([
            genome.fetch(regions.chrom[i], input_start(int(regions.centre0[i]), L),
                         input_start(int(regions.centre0[i]), L) + L) for i in idx])
        out = run(model.params, tokens)
        real = min(batch_size, n - s)
        logits[s : s + real] = np.asarray(out["logits"])[:real]
        logcounts[s : s + real] = np.asarray(out["logcounts"])[:real]
    return {"logits": logits, "logcounts": logcounts}


def expected_profile(logits: np.ndarray, logcounts: np.ndarray) -> np.ndarray:
    """exp(logcounts) * softmax(logits): (N, P) expected cuts per base."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z.astype(np.float64))
    p /= p.sum(axis=-1, keepdims=True)
    return (np.exp(logcounts.astype(np.float64))[:, None] * p).astype(np.float32)


def owned_intervals(out_start0: np.ndarray, centre0: np.ndarray, output_len: int,
                    contig_len: int) -> list[tuple[int, int, int]]:
    """For regions on one contig: [(region index, start0, end0)] of the bases each region
    writes, sorted by position; a base belongs to the covering region with the closest
    centre (ties upstream). Regions sharing a centre write once (the first)."""
    order = np.argsort(centre0, kind="stable")
    c = centre0[order]
    keep = np.r_[True, np.diff(c) > 0]
    order, c = order[keep], c[keep]
    # base x belongs to k when x <= (c_k + c_{k+1}) // 2 and x > (c_{k-1} + c_k) // 2
    hi = np.r_[(c[:-1] + c[1:]) // 2 + 1, np.iinfo(np.int64).max]
    lo = np.r_[np.iinfo(np.int64).min, hi[:-1]]
    out = []
    for k, i in enumerate(order):
        s = max(int(out_start0[i]), int(lo[k]), 0)
        e = min(int(out_start0[i]) + output_len, int(hi[k]), contig_len)
        if s < e:
            out.append((int(i), s, e))
    return out


def write_profiles_bigwig(
    path: str | os.PathLike, genome: Genome, regions: Regions, profiles: np.ndarray,
    output_start0: np.ndarray,
) -> int:
    """Write (N, P) per-base values at their output positions; returns bases written."""
    import pyBigWig

    names = np.array([genome.resolve(c) for c in regions.chrom], dtype=object)
    bw = pyBigWig.open(str(path), "w")
    if bw is None:
        raise OSError(f"cannot create bigWig {path}")
    written = 0
    try:
        bw.addHeader([(c, int(n)) for c, n in genome.contigs.items()])
        for chrom, size in genome.contigs.items():
            on = np.flatnonzero(names == chrom)
            if not len(on):
                continue
            for i, s, e in owned_intervals(output_start0[on], regions.centre0[on],
                                           profiles.shape[1], size):
                r = on[i]
                vals = profiles[r, s - output_start0[r] : e - output_start0[r]]
                bw.addEntries(chrom, s, values=vals.astype(np.float64).tolist(), span=1, step=1)
                written += e - s
    finally:
        bw.close()
    return written


def predict_profiles(
    model_dir: str | os.PathLike,
    genome: str | os.PathLike,
    regions_bed: str | os.PathLike,
    out_bigwig: str | os.PathLike,
    *,
    rc: bool = True,
    batch_size: int = 64,
    bias_corrected: bool = True,
) -> PredictResult:
    """Predict every region of ``regions_bed`` (BED or narrowPeak) and write a bigWig."""
    if batch_size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
    model = load_profile_model(model_dir, bias_corrected=bias_corrected)
    regions = read_regions(regions_bed)
    if len(regions) == 0:
        raise TrainDataError(f"{regions_bed}: no regions")
    with Genome(genome) as g:
        missing = sorted({c for c in regions.chrom if g.resolve(c) is None})
        if missing:
            raise TrainDataError(f"regions on contigs not in {g.path}: {', '.join(missing[:5])}")
        out = predict_outputs(model, g, regions, rc=rc, batch_size=batch_size)
        prof = expected_profile(out["logits"], out["logcounts"])
        starts = output_start(regions.centre0, model.input_len, model.output_len)
        n = write_profiles_bigwig(out_bigwig, g, regions, prof, starts)
    return PredictResult(out_bigwig=Path(out_bigwig), num_regions=len(regions), num_bases=n,
                         input_len=model.input_len, output_len=model.output_len)
