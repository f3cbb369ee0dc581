"""Profile statistics for chromBPNet/BPNet-style models (variant-scorer's scores), on device.

A profile model returns, per window, ``{"logits": (B, P), "logcounts": (B,)}``: base-resolution
profile logits over P output positions and the natural-log total count. Everything here is pure
``jax.numpy`` with static shapes, batched over B, and meant to run inside the engine's jitted
step; only the (B,) statistics leave the device. Formulas and their provenance are in
docs/scores_profile.md.

Direction: every signed statistic is allele2 (ALT) relative to allele1 (REF), as in
variant-scorer (``logfc = log2(allele2_pred_counts / allele1_pred_counts)``).

Window contract: REF's first base sits at input index ``L // 2`` and output position j covers
input position ``(L - P) // 2 + j``, so the variant sits at output index ``P // 2``. Indels are
left-anchored (both alleles start there) and ``ref_len``/``alt_len`` are the VCF allele lengths
including the anchor base.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp

_LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StatInfo:
    """What the store and the p-value step need to know about one statistic.

    ``tail`` is the tail variant-scorer uses for the statistic's empirical p-value against the
    shuffled null; None where variant-scorer computes no p-value (counts, original_jsd, the
    per-allele quantiles).
    """

    signed: bool
    tail: Literal["two", "right"] | None
    needs_peaks: bool
    formula: str

    def __post_init__(self) -> None:
        if self.tail not in ("two", "right", None):
            raise ValueError(f"StatInfo.tail must be 'two', 'right' or None, got {self.tail!r}")


_AAQ = "active_allele_quantile"
_Q = "q(c) = max(#{peak_counts < c} / n_peaks, 1 / n_peaks)"

STAT_INFO: dict[str, StatInfo] = {
    "ref_counts": StatInfo(
        signed=False, tail=None, needs_peaks=False,
        formula="c1 = exp(logcounts of allele1 (REF)); variant-scorer allele1_pred_counts",
    ),
    "alt_counts": StatInfo(
        signed=False, tail=None, needs_peaks=False,
        formula="c2 = exp(logcounts of allele2 (ALT)); variant-scorer allele2_pred_counts",
    ),
    "logfc": StatInfo(
        signed=True, tail="two", needs_peaks=False, formula="log2(c2 / c1)  (ALT vs REF)"
    ),
    "abs_logfc": StatInfo(
        signed=False, tail="right", needs_peaks=False, formula="|log2(c2 / c1)|"
    ),
    "jsd": StatInfo(
        signed=False, tail="right", needs_peaks=False,
        formula="Jensen-Shannon distance, base 2 (sqrt of JS divergence in bits), between "
        "softmax(logits2) and softmax(logits1), indels aligned as variant-scorer's "
        "adjust_indel_jsd (f = P//2; deletion: p1' = p1[:f]+p1[f:f+l2]+p1[f+l1:], "
        "p2' = p2[:P-(l1-l2)]; insertion mirrored; both renormalised)",
    ),
    "original_jsd": StatInfo(
        signed=False, tail=None, needs_peaks=False,
        formula="Jensen-Shannon distance, base 2, between softmax(logits2) and softmax(logits1), "
        "no indel alignment",
    ),
    "logfc_x_jsd": StatInfo(
        signed=True, tail="two", needs_peaks=False, formula="logfc * jsd"
    ),
    "abs_logfc_x_jsd": StatInfo(
        signed=False, tail="right", needs_peaks=False, formula="abs_logfc * jsd  (IES)"
    ),
    "allele1_quantile": StatInfo(
        signed=False, tail=None, needs_peaks=True, formula=f"q(c1), {_Q}"
    ),
    "allele2_quantile": StatInfo(
        signed=False, tail=None, needs_peaks=True, formula=f"q(c2), {_Q}"
    ),
    _AAQ: StatInfo(
        signed=False, tail="right", needs_peaks=True, formula=f"max(q(c1), q(c2)), {_Q}"
    ),
    "quantile_change": StatInfo(
        signed=True, tail="two", needs_peaks=True, formula=f"q(c2) - q(c1), {_Q}"
    ),
    "abs_quantile_change": StatInfo(
        signed=False, tail="right", needs_peaks=True, formula=f"|q(c2) - q(c1)|, {_Q}"
    ),
    f"logfc_x_{_AAQ}": StatInfo(
        signed=True, tail="two", needs_peaks=True, formula=f"logfc * {_AAQ}"
    ),
    f"abs_logfc_x_{_AAQ}": StatInfo(
        signed=False, tail="right", needs_peaks=True, formula=f"abs_logfc * {_AAQ}"
    ),
    f"jsd_x_{_AAQ}": StatInfo(
        signed=False, tail="right", needs_peaks=True, formula=f"jsd * {_AAQ}"
    ),
    f"logfc_x_jsd_x_{_AAQ}": StatInfo(
        signed=True, tail="two", needs_peaks=True, formula=f"logfc * jsd * {_AAQ}  (IPS)"
    ),
    f"abs_logfc_x_jsd_x_{_AAQ}": StatInfo(
        signed=False, tail="right", needs_peaks=True, formula=f"abs_logfc * jsd * {_AAQ}"
    ),
}

DEFAULT_STATS: tuple[str, ...] = (
    "ref_counts", "alt_counts", "logfc", "abs_logfc", "jsd", "original_jsd", "logfc_x_jsd",
    "abs_logfc_x_jsd",
)
PEAK_STATS: tuple[str, ...] = tuple(k for k, v in STAT_INFO.items() if v.needs_peaks)


def validate_stats(stats: tuple[str, ...]) -> tuple[str, ...]:
    """Check statistic names (host side, before tracing); returns them as a tuple."""
    stats = tuple(stats)
    unknown = [s for s in stats if s not in STAT_INFO]
    if unknown:
        raise ValueError(
            f"unknown profile statistic(s) {unknown}; known: {', '.join(STAT_INFO)}"
        )
    if not stats:
        raise ValueError("no profile statistic requested")
    return stats


def rc_average(fwd: dict, rc: dict) -> dict:
    """Average a forward and a reverse-complement prediction as variant-scorer does.

    Counts are averaged in linear space, ``log((exp(a) + exp(b)) / 2)`` computed as
    ``logaddexp(a, b) - log 2`` so it cannot overflow; profile logits are averaged in logit
    space with the RC prediction flipped along P (its output j covers the forward output P-1-j).
    Results are at least fp32.
    """
    for name, out in (("fwd", fwd), ("rc", rc)):
        missing = {"logits", "logcounts"} - set(out)
        if missing:
            raise ValueError(f"rc_average: {name} output lacks {sorted(missing)}")
    logits = 0.5 * (_at_least_f32(fwd["logits"]) + jnp.flip(_at_least_f32(rc["logits"]), axis=-1))
    logcounts = jnp.logaddexp(_at_least_f32(fwd["logcounts"]), _at_least_f32(rc["logcounts"]))
    logcounts = logcounts - _LN2
    return {"logits": logits, "logcounts": logcounts}


def softmax_profile(logits: jax.Array) -> jax.Array:
    """(B, P) logits -> (B, P) probabilities.

    chromBPNet and variant-scorer subtract the mean before exponentiating; any shift cancels in
    the ratio, so this max-subtracted softmax is the same function (and cannot overflow).
    """
    return jax.nn.softmax(logits, axis=-1)


def _js_distance(p: jax.Array, q: jax.Array) -> jax.Array:
    """Jensen-Shannon distance, base 2, between rows of p and q (B, P); rows are renormalised
    like scipy's ``jensenshannon`` and 0 * log 0 counts as 0.

    Written with r = (p - q) / (p + q), m = (p + q) / 2:
    p log(p/m) + q log(q/m) = m * [2 r atanh(r) + log1p(-r^2)]. The bracket is ~r^2 for small r
    and is computed without the catastrophic cancellation of the textbook form, which in fp32
    would bury near-identical profiles (SNVs with small effects) in rounding noise.
    """
    p = p / jnp.sum(p, axis=-1, keepdims=True)
    q = q / jnp.sum(q, axis=-1, keepdims=True)
    s = p + q
    pos = s > 0
    # |r| keeps the result bitwise symmetric in (p, q): the bracket is even in r.
    r = jnp.where(pos, jnp.abs(p - q) / jnp.where(pos, s, 1.0), 0.0)
    inner = r < 1.0
    r_in = jnp.where(inner, r, 0.0)
    bracket = jnp.where(
        inner, 2.0 * r_in * jnp.arctanh(r_in) + jnp.log1p(-r_in * r_in), 2.0 * _LN2
    )
    divergence = 0.25 * jnp.sum(s * bracket, axis=-1) / _LN2  # 0.5 * sum(m * bracket), m = s/2
    return jnp.sqrt(jnp.maximum(divergence, 0.0))


def _at_least_f32(x) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _as_lengths(length, batch: int) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(length, dtype=jnp.int32), (batch,))


def indel_aligned_profiles(
    p1: jax.Array, p2: jax.Array, ref_len, alt_len
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """variant-scorer's adjust_indel_jsd alignment with static shapes.

    With f = P // 2, d = |l1 - l2| and s = min(l1, l2), the longer allele's profile keeps
    positions [0, f + s) and [f + max, P) (the output positions of the extra bases are
    dropped), the shorter allele's keeps [0, P - d) (its tail, which saw bases beyond the
    other window, is dropped). Both become length P - d; here they are (B, P) gathers with
    the last d positions zeroed. Returns (p1', p2', ok) where ok is False for rows whose
    longer allele runs past the profile (f + max(l1, l2) > P), which variant-scorer cannot
    score either. SNVs/MNVs (d = 0) come back unchanged. No renormalisation here.
    """
    batch, num_pos = p1.shape
    l1 = _as_lengths(ref_len, batch)
    l2 = _as_lengths(alt_len, batch)
    f = num_pos // 2
    d = jnp.abs(l1 - l2)[:, None]
    k = jnp.arange(num_pos, dtype=jnp.int32)[None, :]
    valid = k < num_pos - d
    skip = jnp.where(k < f + jnp.minimum(l1, l2)[:, None], k, k + d)
    skip = jnp.clip(skip, 0, num_pos - 1)
    deletion = (l1 > l2)[:, None]
    idx1 = jnp.where(deletion, skip, k)
    idx2 = jnp.where(deletion, k, skip)
    a1 = jnp.where(valid, jnp.take_along_axis(p1, idx1, axis=-1), 0.0)
    a2 = jnp.where(valid, jnp.take_along_axis(p2, idx2, axis=-1), 0.0)
    ok = (f + jnp.maximum(l1, l2)) <= num_pos
    return a1, a2, ok


def allele_quantile(counts: jax.Array, sorted_peak_counts: jax.Array) -> jax.Array:
    """variant-scorer's per-allele quantile: max(mean(peak_counts < c), 1 / n_peaks).

    ``sorted_peak_counts`` must be sorted ascending (sort once on the host); searchsorted with
    side='left' counts the peaks strictly below c.
    """
    num_peaks = sorted_peak_counts.shape[0]
    if num_peaks == 0:
        raise ValueError("allele_quantile: the peak score array is empty")
    below = jnp.searchsorted(sorted_peak_counts, counts, side="left")
    return jnp.maximum(below / num_peaks, 1.0 / num_peaks).astype(counts.dtype)


def peak_scores(base: dict, sorted_peak_counts: jax.Array) -> dict:
    """The peak-based statistics from ref_counts, alt_counts, logfc, abs_logfc, jsd,
    logfc_x_jsd, abs_logfc_x_jsd (as returned by profile_scores)."""
    q1 = allele_quantile(base["ref_counts"], sorted_peak_counts)
    q2 = allele_quantile(base["alt_counts"], sorted_peak_counts)
    aaq = jnp.maximum(q1, q2)
    change = q2 - q1
    return {
        "allele1_quantile": q1,
        "allele2_quantile": q2,
        _AAQ: aaq,
        "quantile_change": change,
        "abs_quantile_change": jnp.abs(change),
        f"logfc_x_{_AAQ}": base["logfc"] * aaq,
        f"abs_logfc_x_{_AAQ}": base["abs_logfc"] * aaq,
        f"jsd_x_{_AAQ}": base["jsd"] * aaq,
        f"logfc_x_jsd_x_{_AAQ}": base["logfc_x_jsd"] * aaq,
        f"abs_logfc_x_jsd_x_{_AAQ}": base["abs_logfc_x_jsd"] * aaq,
    }


def profile_scores(
    ref: dict,
    alt: dict,
    ref_len,
    alt_len,
    stats: tuple[str, ...] = DEFAULT_STATS,
    *,
    sorted_peak_counts: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Per-variant statistics, each (B,), from (RC-averaged) REF and ALT outputs.

    ``ref``/``alt``: {"logits": (B, P), "logcounts": (B,)} for allele1 and allele2.
    ``ref_len``/``alt_len``: VCF allele lengths (int or (B,) ints, anchor base included).
    ``stats``: names from STAT_INFO (static under jit). Peak statistics need
    ``sorted_peak_counts`` (N,), ascending. Rows whose indel is too long for the profile get
    NaN jsd (and NaN for everything built on it).
    """
    stats = validate_stats(stats)
    wants_peaks = [s for s in stats if STAT_INFO[s].needs_peaks]
    if wants_peaks and sorted_peak_counts is None:
        raise ValueError(f"statistics {wants_peaks} need peak scores (sorted_peak_counts)")
    # Statistics are always at least fp32, also for a bf16 forward pass.
    lc1, lc2 = _at_least_f32(ref["logcounts"]), _at_least_f32(alt["logcounts"])
    # log2(c2/c1) from the log counts directly: exactly 0 for REF == ALT, exactly negated on a
    # REF/ALT swap, and no overflow of exp for large counts.
    logfc = (lc2 - lc1) / _LN2
    p1 = softmax_profile(_at_least_f32(ref["logits"]))
    p2 = softmax_profile(_at_least_f32(alt["logits"]))
    original_jsd = _js_distance(p2, p1)
    a1, a2, ok = indel_aligned_profiles(p1, p2, ref_len, alt_len)
    same_len = _as_lengths(ref_len, p1.shape[0]) == _as_lengths(alt_len, p1.shape[0])
    jsd = jnp.where(same_len, original_jsd, jnp.where(ok, _js_distance(a2, a1), jnp.nan))
    base = {
        "ref_counts": jnp.exp(lc1),
        "alt_counts": jnp.exp(lc2),
        "logfc": logfc,
        "abs_logfc": jnp.abs(logfc),
        "jsd": jsd,
        "original_jsd": original_jsd,
        "logfc_x_jsd": logfc * jsd,
        "abs_logfc_x_jsd": jnp.abs(logfc) * jsd,
    }
    if wants_peaks:
        base.update(peak_scores(base, jnp.asarray(sorted_peak_counts)))
    return {s: base[s] for s in stats}


def mean_over_folds(scores: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """variant-scorer's summary across folds: the arithmetic mean of per-fold scores,
    {name: (F, B)} -> {name: (B,)}. (jsd.mean is the mean of per-fold JSDs; profiles are not
    averaged first.)"""
    return {name: jnp.mean(jnp.asarray(v), axis=0) for name, v in scores.items()}


def combine_fold_pvalues(pvalues: jax.Array) -> jax.Array:
    """variant-scorer's fold summary of p-values: the geometric mean over folds, (F, B) -> (B,).

    Computed as exp(mean(log p)) like upstream; p-values here are always > 0 (the +1 in the
    empirical estimate), so the log is finite.
    """
    return jnp.exp(jnp.mean(jnp.log(jnp.asarray(pvalues)), axis=0))
