"""Track statistics for binned models (Enformer, Borzoi): REF/ALT predictions -> (B, T) scores.

Three phases (alphagenome style): geometry (variant bin, centre-mask bin range, strand groups,
untransform constants) is computed on the host from static facts; the statistics are pure
``jax.numpy`` under ``jit`` with static shapes; only (B, T) arrays leave the device.

Shapes: B batch, S replicates (shifts), P output bins, T tracks.

Window geometry (contract, see docs/scores_tracks.md): the input window has length L and the
REF allele's first base at index ``L // 2 + shift_bp``; output bin p covers input positions
``(L - P * bin_size) // 2 + p * bin_size + k`` for ``0 <= k < bin_size``.

Sign convention: every signed statistic is ALT minus REF.

The formulas follow baskerville ``snps.compute_scores`` (commit 544073b) and alphagenome_research
``center_mask._apply_aggregation`` (commit 3f79219) exactly; docs/scores_tracks.md lists them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from veff.scoring.track_stats import _bin_sum, _percentile25, _stat  # noqa: F401
from veff.scoring.track_transforms import (  # noqa: F401 - re-exported
    Merge,
    check_strand_pair,
    collapse_strand_pairs,
    collapsed_track_names,
    merge_strands,
    rc_average_pair,
    rc_unflip,
    strand_groups,
    untransform,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StatInfo:
    """Static facts of one statistic.

    ``swap_symmetric``: unchanged when REF and ALT are exchanged (every unsigned statistic except
    JS, whose pseudo-count is taken from REF only). ``strand_merge``: how baskerville merges the
    two strands of a stranded track ("l2" = sqrt of the sum of squares, used for the D2 family).
    """

    signed: bool
    formula: str
    source: str
    strand_merge: Merge = "sum"
    swap_symmetric: bool = True


# Sums run over the scored bins p (all P bins, or the centre-mask bins); x+ = alt, x- = ref.
STATS: dict[str, StatInfo] = {
    # baskerville snps.compute_scores / hound_snp.py names
    "SUM": StatInfo(signed=True, source="baskerville", formula="sum_p alt - sum_p ref"),
    "logSUM": StatInfo(
        signed=True,
        source="baskerville",
        formula="sum_p log2(alt + 1) - sum_p log2(ref + 1)",
    ),
    "sqrtSUM": StatInfo(
        signed=True, source="baskerville", formula="sum_p sqrt(alt) - sum_p sqrt(ref)"
    ),
    "logSED": StatInfo(
        signed=True,
        source="baskerville",
        formula="log2(sum_p alt + 1) - log2(sum_p ref + 1)",
    ),
    "SAX": StatInfo(
        signed=True,
        source="baskerville",
        formula="d[p*] with d = alt - ref, p* = first argmax_p |d|",
    ),
    "D1": StatInfo(signed=False, source="baskerville", formula="sum_p |alt - ref|"),
    "logD1": StatInfo(
        signed=False, source="baskerville", formula="sum_p |log2(alt + 1) - log2(ref + 1)|"
    ),
    "sqrtD1": StatInfo(
        signed=False, source="baskerville", formula="sum_p |sqrt(alt) - sqrt(ref)|"
    ),
    "D2": StatInfo(
        signed=False,
        source="baskerville",
        strand_merge="l2",
        formula="sqrt(sum_p (alt - ref)^2)",
    ),
    "logD2": StatInfo(
        signed=False,
        source="baskerville",
        strand_merge="l2",
        formula="sqrt(sum_p (log2(alt + 1) - log2(ref + 1))^2)",
    ),
    "sqrtD2": StatInfo(
        signed=False,
        source="baskerville",
        strand_merge="l2",
        formula="sqrt(sum_p (sqrt(alt) - sqrt(ref))^2)",
    ),
    "JS": StatInfo(
        signed=False,
        source="baskerville",
        swap_symmetric=False,
        formula=(
            "c = 25th percentile over p of ref (linear interpolation); "
            "r = (ref + c) / sum_p (ref + c); a = (alt + c) / sum_p (alt + c); "
            "0.5 * (sum_p r ln(r / a) + sum_p a ln(a / r))  (symmetrised KL, natural log)"
        ),
    ),
    # DeepMind Enformer colab SAD and the alphagenome AggregationType names
    "DIFF_MEAN": StatInfo(
        signed=True, source="alphagenome/enformer", formula="mean_p alt - mean_p ref"
    ),
    "DIFF_SUM": StatInfo(signed=True, source="alphagenome", formula="sum_p alt - sum_p ref"),
    "DIFF_SUM_LOG2": StatInfo(
        signed=True,
        source="alphagenome",
        formula="sum_p log2(alt + 1) - sum_p log2(ref + 1)",
    ),
    "DIFF_LOG2_SUM": StatInfo(
        signed=True,
        source="alphagenome",
        formula="log2(1 + sum_p alt) - log2(1 + sum_p ref)",
    ),
    "L2_DIFF": StatInfo(
        signed=False,
        source="alphagenome",
        strand_merge="l2",
        formula="sqrt(sum_p (alt - ref)^2)",
    ),
    "L2_DIFF_LOG1P": StatInfo(
        signed=False,
        source="alphagenome",
        strand_merge="l2",
        formula="sqrt(sum_p (ln(1 + alt) - ln(1 + ref))^2)",
    ),
    "ACTIVE_MEAN": StatInfo(
        signed=False, source="alphagenome", formula="max(mean_p alt, mean_p ref)"
    ),
    "ACTIVE_SUM": StatInfo(
        signed=False, source="alphagenome", formula="max(sum_p alt, sum_p ref)"
    ),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreSpec:
    """One statistic, optionally restricted to the bins around the variant.

    ``center_bp=None`` scores all P output bins. ``center_bp=w`` scores the ``ceil(w / bin_size)``
    bins starting ``ceil(w / bin_size) // 2`` bins left of the variant's bin (alphagenome
    ``create_center_mask``), clipped to the output.
    """

    stat: str
    center_bp: int | None = None

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ValueError(
                f"unknown track statistic {self.stat!r}; known: {', '.join(STATS)}"
            )
        if self.center_bp is not None and (
            isinstance(self.center_bp, bool)
            or not isinstance(self.center_bp, (int, np.integer))
            or self.center_bp < 1
        ):
            raise ValueError(
                f"center_bp must be a positive integer or None, got {self.center_bp!r}"
            )

    @classmethod
    def parse(cls, text: str) -> ScoreSpec:
        """``"logSUM"`` or ``"DIFF_LOG2_SUM@501"`` (the inverse of ``name``)."""
        stat, sep, width = text.strip().partition("@")
        if not sep:
            return cls(stat=stat)
        if not width.isdigit():
            raise ValueError(f"bad statistic {text!r}: expected STAT or STAT@WIDTH_BP")
        return cls(stat=stat, center_bp=int(width))

    @property
    def name(self) -> str:
        return self.stat if self.center_bp is None else f"{self.stat}@{self.center_bp}"

    @property
    def info(self) -> StatInfo:
        return STATS[self.stat]

    @property
    def is_signed(self) -> bool:
        return self.info.signed

    @property
    def strand_merge(self) -> Merge:
        return self.info.strand_merge

    @property
    def formula(self) -> str:
        """Human-readable formula for the store's attributes."""
        where = (
            "p over all output bins"
            if self.center_bp is None
            else (
                f"p over the ceil({self.center_bp} / bin_size) bins starting "
                f"ceil({self.center_bp} / bin_size) // 2 bins left of the variant bin "
                "(alphagenome CenterMask), clipped to the output"
            )
        )
        return f"{self.name} = {self.info.formula}; {where}; sign ALT - REF"


DEFAULT_STATS = ("SUM", "logSUM", "logSED", "D2", "logD2", "DIFF_LOG2_SUM")
DEFAULT_CENTER_BP = 501  # alphagenome's recommended width for DIFF_LOG2_SUM (ATAC/DNase/CAGE)


def default_specs(
    stats: Sequence[str] | None = None, *, center_bp: int | None = None
) -> tuple[ScoreSpec, ...]:
    """Statistic names (``"logSUM"``, ``"DIFF_LOG2_SUM@501"``) -> specs, duplicates dropped.

    ``center_bp`` is the width given to the alphagenome-family statistics (the centre-mask
    scorers) that carry no ``@WIDTH`` of their own; baskerville statistics always score the
    whole output unless written ``STAT@WIDTH``. ``stats=None`` gives ``DEFAULT_STATS`` with the
    alphagenome one masked to ``center_bp`` (default 501 bp).
    """
    if stats is None:
        stats = DEFAULT_STATS
        if center_bp is None:
            center_bp = DEFAULT_CENTER_BP
    specs: list[ScoreSpec] = []
    for text in stats:
        spec = ScoreSpec.parse(text)
        if spec.center_bp is None and center_bp is not None and spec.info.source == "alphagenome":
            spec = ScoreSpec(stat=spec.stat, center_bp=center_bp)
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ValueError("no track statistics requested")
    return tuple(specs)


# ---------------------------------------------------------------------------------------------
# Host-side geometry (static ints)


def _output_offset(*, num_bins: int, bin_size: int, window_len: int) -> int:
    span = num_bins * bin_size
    if bin_size < 1 or num_bins < 1 or span > window_len:
        raise ValueError(
            f"output of {num_bins} bins x {bin_size} bp does not fit a {window_len} bp window"
        )
    return (window_len - span) // 2


def variant_bin(*, num_bins: int, bin_size: int, window_len: int, shift_bp: int = 0) -> int:
    """Output bin holding the REF allele's first base (input index ``L // 2 + shift_bp``)."""
    offset = _output_offset(num_bins=num_bins, bin_size=bin_size, window_len=window_len)
    rel = window_len // 2 + shift_bp - offset
    if not 0 <= rel < num_bins * bin_size:
        raise ValueError(
            f"the variant (input index {window_len // 2 + shift_bp}) lies outside the output "
            f"bins of a {window_len} bp window"
        )
    return rel // bin_size


def center_mask_bins(
    center_bp: int | None, *, num_bins: int, bin_size: int, window_len: int, shift_bp: int = 0
) -> tuple[int, int]:
    """Half-open bin range [start, end) scored for ``center_bp`` (alphagenome rule)."""
    vbin = variant_bin(
        num_bins=num_bins, bin_size=bin_size, window_len=window_len, shift_bp=shift_bp
    )
    if center_bp is None:
        return 0, num_bins
    width_bins = math.ceil(center_bp / bin_size)
    first = vbin - width_bins // 2
    return max(first, 0), min(first + width_bins, num_bins)


def _check_pair(ref: jax.Array, alt: jax.Array) -> None:
    if ref.ndim != 3 or ref.shape != alt.shape:
        raise ValueError(
            f"ref and alt must both be (B, P, T) of equal shape, got {ref.shape} and {alt.shape}"
        )


def compute_track_stats(
    ref: jax.Array,
    alt: jax.Array,
    specs: Sequence[ScoreSpec],
    *,
    bin_size: int,
    window_len: int,
    shift_bp: int = 0,
    diff: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """REF/ALT (B, P, T) predictions -> {spec.name: (B, T) float32}.

    Jit with ``specs``, ``bin_size``, ``window_len`` and ``shift_bp`` static (the centre masks are
    static slices). Predictions are upcast to float32 first (bf16 models). ``diff``: ALT - REF
    per bin where the caller has it more accurately than ``alt - ref`` (averaged replicates,
    ``rc_average_pair``); None computes it here.
    """
    _check_pair(ref, alt)
    ref = ref.astype(jnp.float32)
    alt = alt.astype(jnp.float32)
    if diff is None:
        diff = alt - ref
    elif diff.shape != ref.shape:
        raise ValueError(f"diff has shape {diff.shape}, expected {ref.shape}")
    diff = diff.astype(jnp.float32)
    num_bins = ref.shape[1]
    out: dict[str, jax.Array] = {}
    for spec in specs:
        if not isinstance(spec, ScoreSpec):
            raise TypeError(f"specs must hold ScoreSpec, got {type(spec).__name__}")
        lo, hi = center_mask_bins(
            spec.center_bp,
            num_bins=num_bins,
            bin_size=bin_size,
            window_len=window_len,
            shift_bp=shift_bp,
        )
        out[spec.name] = _stat(spec.stat, ref[:, lo:hi], alt[:, lo:hi], diff[:, lo:hi])
    return out


def compute_track_stats_replicated(
    ref: jax.Array,
    alt: jax.Array,
    specs: Sequence[ScoreSpec],
    *,
    bin_size: int,
    window_len: int,
    shifts_bp: Sequence[int] | None = None,
) -> dict[str, jax.Array]:
    """(S, B, P, T) replicate predictions (shifts, RC, folds) -> mean over S of each statistic.

    This is baskerville's order (statistics per shift, then the mean; calico/baskerville#8):
    averaging predictions of shifted windows first blurs bin alignment. ``shifts_bp[s]`` is the
    shift of replicate s (content moved right by s bp, so the variant sits at ``L // 2 + s``);
    ``None`` means all zero.
    """
    if ref.ndim != 4 or ref.shape != alt.shape:
        raise ValueError(
            "ref and alt must both be (S, B, P, T) of equal shape, "
            f"got {ref.shape} and {alt.shape}"
        )
    num_reps = ref.shape[0]
    shifts = (0,) * num_reps if shifts_bp is None else tuple(int(s) for s in shifts_bp)
    if len(shifts) != num_reps:
        raise ValueError(f"{len(shifts)} shifts given for {num_reps} replicates")
    per_rep = [
        compute_track_stats(
            ref[s], alt[s], specs, bin_size=bin_size, window_len=window_len, shift_bp=shifts[s]
        )
        for s in range(num_reps)
    ]
    return {k: jnp.mean(jnp.stack([r[k] for r in per_rep]), axis=0) for k in per_rep[0]}


def average_predictions(preds: jax.Array | Sequence[jax.Array]) -> jax.Array:
    """Mean of S replicate predictions, (S, B, P, T) or a list of (B, P, T) -> (B, P, T) float32.

    Exact for forward + unflipped RC of one window (same bins). For shifted windows the bins
    are offset by the shift; prefer ``compute_track_stats_replicated`` there.
    """
    stacked = preds if isinstance(preds, jax.Array | np.ndarray) else jnp.stack(list(preds))
    if stacked.ndim != 4 or stacked.shape[0] < 1:
        raise ValueError(f"expected (S, B, P, T) predictions, got shape {stacked.shape}")
    return jnp.mean(jnp.asarray(stacked, dtype=jnp.float32), axis=0)


# ---------------------------------------------------------------------------------------------
# Indels


def stitch_predictions(
    pred_left: jax.Array,
    pred_right: jax.Array,
    *,
    bin_size: int,
    window_len: int,
    shift_bp: int = 0,
) -> jax.Array:
    """baskerville ``--indel_stitch``: bins before the variant bin from ``pred_left`` (the
    window whose left flank matches REF), the variant bin and after from ``pred_right`` (the
    window shifted by ``-(len(alt) - len(ref))`` so its right flank matches REF). (B, P, T).
    """
    if pred_left.shape != pred_right.shape or pred_left.ndim != 3:
        raise ValueError(
            f"expected two (B, P, T) arrays of equal shape, got {pred_left.shape}, "
            f"{pred_right.shape}"
        )
    vbin = variant_bin(
        num_bins=pred_left.shape[1], bin_size=bin_size, window_len=window_len, shift_bp=shift_bp
    )
    return jnp.concatenate([pred_left[:, :vbin], pred_right[:, vbin:]], axis=1)
