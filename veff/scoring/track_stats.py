"""Device-side kernels of the track statistics (:mod:`veff.scoring.tracks`): fixed-order bin
sums and the difference-first formulas, (B, P, T) REF, ALT and d = ALT - REF -> (B, T).

Pure ``jax.numpy``, elementwise ops and fixed pairwise sums only, so that one variant's
result does not depend on the batch size. docs/scores_tracks.md, "Exactness", explains the
forms.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _percentile25(x: jax.Array) -> jax.Array:
    """numpy's default (linear) 25th percentile along axis 1 of (B, P, T); static-shape sort."""
    num = x.shape[1]
    xs = jnp.sort(x, axis=1)
    pos = 0.25 * (num - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, num - 1)
    frac = pos - lo
    return xs[:, lo] + frac * (xs[:, hi] - xs[:, lo])


def _bin_sum(x: jax.Array) -> jax.Array:
    """Sum over axis 1 of (B, P, T) as a fixed pairwise tree of elementwise adds.

    XLA's reduce picks its summation order from the whole shape, so ``x.sum(axis=1)`` of one
    variant can change in the last bit with the batch size; elementwise adds cannot. Zero
    padding to a power of two is exact. Pairwise summation is also more accurate.
    """
    num = x.shape[1]
    size = 1 << max(num - 1, 0).bit_length()
    if size != num:
        pad = jnp.zeros((x.shape[0], size - num) + x.shape[2:], x.dtype)
        x = jnp.concatenate([x, pad], axis=1)
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        x = x[:, :half] + x[:, half:]
    return x[:, 0]


def _ln_ratio1p(d: jax.Array, alt: jax.Array, ref: jax.Array) -> jax.Array:
    """ln((1 + alt) / (1 + ref)) from d = alt - ref, without cancellation.

    Near 1 the ratio is 2 atanh(x) = ln(1 + x) - ln(1 - x) with x = d / (2 + alt + ref), whose
    rounding is relative to d itself; ln(1 + alt) - ln(1 + ref) would lose ln(1 + ref) * eps
    to cancellation. Far from 1 (|x| > 1/2, i.e. a ratio beyond 3) the plain difference is
    accurate and keeps the 0 and infinite cases of the logs. Odd in (d, alt, ref) -> (-d, ref,
    alt) bit for bit: -x is exact and alt + ref commutes.
    """
    den = 2.0 + (alt + ref)
    x = d / jnp.where(den > 0, den, 1.0)
    near = (den > 0) & (jnp.abs(x) <= 0.5)
    x = jnp.where(near, x, 0.0)
    return jnp.where(near, jnp.log1p(x) - jnp.log1p(-x), jnp.log1p(alt) - jnp.log1p(ref))


def _sqrt_diff(d: jax.Array, alt: jax.Array, ref: jax.Array) -> jax.Array:
    """sqrt(alt) - sqrt(ref) as d / (sqrt(alt) + sqrt(ref)) (0 where both are 0)."""
    den = jnp.sqrt(alt) + jnp.sqrt(ref)
    return jnp.where(den == 0, 0.0, d / jnp.where(den == 0, 1.0, den))


def _js(ref: jax.Array, alt: jax.Array, d: jax.Array) -> jax.Array:
    """0.5 (KL(r~ || a~) + KL(a~ || r~)) = 0.5 sum_p (r~ - a~) ln(r~ / a~), with r~ - a~ from
    the per-bin differences: r~ - a~ = (a~ * sum_p d - d) / sum_p (ref + c)."""
    c = _percentile25(ref)[:, None, :]
    r, a = ref + c, alt + c
    sr, sa = _bin_sum(r)[:, None], _bin_sum(a)[:, None]
    rn, an = r / sr, a / sa
    e = (an * _bin_sum(d)[:, None] - d) / sr  # rn - an; sum_p (a - r) = sa - sr (c cancels)
    m = rn + an
    x = e / jnp.where(m > 0, m, 1.0)
    near = (m > 0) & (jnp.abs(x) <= 0.5)
    x = jnp.where(near, x, 0.0)
    log_ratio = jnp.where(near, jnp.log1p(x) - jnp.log1p(-x), jnp.log(rn) - jnp.log(an))
    # rel_entr's conventions: 0 where both are 0, +inf where exactly one is 0
    return 0.5 * _bin_sum(jnp.where(m == 0, 0.0, e * log_ratio))


# Difference first: every statistic that is a difference of two sums over bins is computed as
# the sum of per-bin differences d = alt - ref (identical in exact arithmetic). The sums of
# REF and ALT are each rounded to ~eps of their own size, which for nearly equal alleles is
# far larger than their difference; the sum of d is rounded to ~eps of the effect itself.
# Base-2 logs are taken as ln(.) / ln 2 *after* the ALT - REF difference: XLA lowers log2 to
# ln(x) * (1/ln 2) and then fuses "multiply, subtract" into an FMA, which leaves a non-zero
# residue for REF == ALT and breaks exact antisymmetry. ln(1 + x) is computed with log1p.
_INV_LN2 = 1.0 / math.log(2.0)


def _stat(stat: str, ref: jax.Array, alt: jax.Array, d: jax.Array) -> jax.Array:
    """(B, P', T) REF, ALT and d = ALT - REF -> (B, T) for one statistic over the bins given."""
    match stat:
        case "SUM" | "DIFF_SUM":
            return _bin_sum(d)
        case "logSUM" | "DIFF_SUM_LOG2":
            return _bin_sum(_ln_ratio1p(d, alt, ref)) * _INV_LN2
        case "sqrtSUM":
            return _bin_sum(_sqrt_diff(d, alt, ref))
        case "logSED" | "DIFF_LOG2_SUM":
            return _ln_ratio1p(_bin_sum(d), _bin_sum(alt), _bin_sum(ref)) * _INV_LN2
        case "SAX":
            idx = jnp.argmax(jnp.abs(d), axis=1)[:, None, :]
            return jnp.take_along_axis(d, idx, axis=1)[:, 0, :]
        case "D1":
            return _bin_sum(jnp.abs(d))
        case "logD1":
            return _bin_sum(jnp.abs(_ln_ratio1p(d, alt, ref))) * _INV_LN2
        case "sqrtD1":
            return _bin_sum(jnp.abs(_sqrt_diff(d, alt, ref)))
        case "D2" | "L2_DIFF":
            return jnp.sqrt(_bin_sum(jnp.square(d)))
        case "logD2":
            return jnp.sqrt(_bin_sum(jnp.square(_ln_ratio1p(d, alt, ref)))) * _INV_LN2
        case "sqrtD2":
            return jnp.sqrt(_bin_sum(jnp.square(_sqrt_diff(d, alt, ref))))
        case "L2_DIFF_LOG1P":
            return jnp.sqrt(_bin_sum(jnp.square(_ln_ratio1p(d, alt, ref))))
        case "JS":
            return _js(ref, alt, d)
        case "DIFF_MEAN":
            # sum / P rather than mean - mean: no multiply-subtract to fuse into an FMA
            return _bin_sum(d) / alt.shape[1]
        case "ACTIVE_MEAN":
            return jnp.maximum(_bin_sum(alt), _bin_sum(ref)) / alt.shape[1]
        case "ACTIVE_SUM":
            return jnp.maximum(_bin_sum(alt), _bin_sum(ref))
    raise ValueError(f"unknown track statistic {stat!r}")  # unreachable after ScoreSpec checks
