"""Per-track transforms for binned models: strand pairs (reverse-complement un-flip, strand
collapsing) and Borzoi's target untransform. Host checks in numpy, transforms in jax.numpy;
:mod:`veff.scoring.tracks` re-exports every public name here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from veff.scoring.tracks import ScoreSpec

Merge = Literal["sum", "l2"]


# ---------------------------------------------------------------------------------------------
# Reverse complement, strands


def check_strand_pair(strand_pair: Any, num_tracks: int | None = None) -> np.ndarray:
    """Host check: an int (T,) involution (pair[pair[t]] == t; unstranded tracks map to self)."""
    pair = np.asarray(strand_pair)
    if pair.ndim != 1 or not np.issubdtype(pair.dtype, np.integer):
        raise ValueError(f"strand_pair must be a 1-D integer array, got {pair.dtype} {pair.shape}")
    size = pair.shape[0]
    if num_tracks is not None and size != num_tracks:
        raise ValueError(f"strand_pair has {size} entries for {num_tracks} tracks")
    if size and (pair.min() < 0 or pair.max() >= size or np.any(pair[pair] != np.arange(size))):
        raise ValueError("strand_pair must pair tracks symmetrically (pair[pair[t]] == t)")
    return pair.astype(np.int32)


def rc_unflip(pred_rc: jax.Array, strand_pair: Any) -> jax.Array:
    """Predictions on the reverse-complemented window -> forward coordinates (B, P, T).

    Reverses the bins and swaps each stranded track with its partner: forward track t is the
    RC prediction of track ``strand_pair[t]``. Exact bin-for-bin when ``L - P * bin_size`` is
    even (Enformer, Borzoi); see docs/scores_tracks.md.
    """
    pair = check_strand_pair(strand_pair, pred_rc.shape[-1])
    return jnp.take(pred_rc[:, ::-1, :], jnp.asarray(pair), axis=2)


def rc_average_pair(
    ref: jax.Array, alt: jax.Array, ref_rc: jax.Array, alt_rc: jax.Array, strand_pair: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Forward and RC (B, P, T) predictions of both alleles -> their means (REF, ALT) and the
    mean of the per-bin differences ALT - REF, for ``compute_track_stats(..., diff=)``.

    The RC predictions are un-flipped first (``rc_unflip``). The difference is averaged, not
    taken between the averages: mean(ALT) - mean(REF) is rounded to ~eps of the predictions,
    the mean of (ALT - REF) to ~eps of the difference (identical in exact arithmetic).
    """
    ref_rc, alt_rc = rc_unflip(ref_rc, strand_pair), rc_unflip(alt_rc, strand_pair)
    diff = 0.5 * ((alt - ref) + (alt_rc - ref_rc))
    return 0.5 * (ref + ref_rc), 0.5 * (alt + alt_rc), diff


def strand_groups(strand_pair: Any) -> tuple[np.ndarray, np.ndarray]:
    """Host: (first, second) track index per merged track, ``second == -1`` when unstranded.

    Merged tracks are ordered by first appearance, as baskerville ``make_strand_transform``.
    """
    pair = check_strand_pair(strand_pair)
    first, second = [], []
    for t, p in enumerate(pair):
        if p == t:
            first.append(t)
            second.append(-1)
        elif p > t:
            first.append(t)
            second.append(int(p))
    return np.asarray(first, dtype=np.int32), np.asarray(second, dtype=np.int32)


def collapsed_track_names(names: Sequence[str], strand_pair: Any) -> list[str]:
    """Names of the merged tracks: the first member's name (baskerville keeps the '+' row)."""
    pair = check_strand_pair(strand_pair, len(names))
    first, _ = strand_groups(pair)
    return [names[t] for t in first]


def collapse_strand_pairs(x: jax.Array, strand_pair: Any, *, how: Merge = "sum") -> jax.Array:
    """(..., T) per-track scores -> (..., T') with each stranded pair merged.

    ``how="sum"``: x+ + x-; ``how="l2"``: sqrt(x+^2 + x-^2) (baskerville's D2 merge). Gathers and
    adds instead of a matmul so that no reduced-precision (TF32) dot is involved.
    """
    if how not in ("sum", "l2"):
        raise ValueError(f"how must be 'sum' or 'l2', got {how!r}")
    pair = check_strand_pair(strand_pair, x.shape[-1])
    first, second = strand_groups(pair)
    has_second = jnp.asarray(second >= 0)
    a = jnp.take(x, jnp.asarray(first), axis=-1)
    b = jnp.take(x, jnp.asarray(np.maximum(second, 0)), axis=-1)
    if how == "sum":
        return a + jnp.where(has_second, b, 0)
    return jnp.sqrt(jnp.square(a) + jnp.where(has_second, jnp.square(b), 0))


def merge_strands(
    scores: Mapping[str, jax.Array], specs: Sequence[ScoreSpec], strand_pair: Any
) -> dict[str, jax.Array]:
    """Apply each statistic's own strand merge to the output of ``compute_track_stats``."""
    return {
        s.name: collapse_strand_pairs(scores[s.name], strand_pair, how=s.strand_merge)
        for s in specs
    }


# ---------------------------------------------------------------------------------------------
# Borzoi target untransform


def _track_column(tracks_meta: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    missing = [i for i, t in enumerate(tracks_meta) if t.get(key) is None]
    if missing:
        raise ValueError(
            f"untransform needs {key!r} for every track; missing for {len(missing)} track(s), "
            f"first index {missing[0]}"
        )
    return np.asarray([float(t[key]) for t in tracks_meta], dtype=np.float32)


def untransform(
    pred: jax.Array,
    tracks_meta: Sequence[Mapping[str, Any]],
    *,
    legacy: bool = False,
    unscale: bool = False,
    unclip: bool = True,
) -> jax.Array:
    """Undo the training-target squashing of Borzoi-style models, per track (last axis).

    ``tracks_meta[t]`` holds ``clip_soft``, ``scale`` and ``sum_stat`` (baskerville targets.txt).
    ``legacy=False`` is baskerville ``untransform_preds``, ``legacy=True`` is
    ``untransform_preds1`` (hound_snp ``-u``/``--untransform_old``, the published Borzoi). The
    formulas are in docs/scores_tracks.md.
    """
    num_tracks = pred.shape[-1]
    if len(tracks_meta) != num_tracks:
        raise ValueError(f"{len(tracks_meta)} track descriptions for {num_tracks} tracks")
    sum_stats = [str(t.get("sum_stat", "")) for t in tracks_meta]
    is_sqrt = jnp.asarray(np.array(["_sqrt" in s for s in sum_stats]))
    needs_scale = legacy or unscale
    scale = jnp.asarray(_track_column(tracks_meta, "scale")) if needs_scale else None
    clip_soft = jnp.asarray(_track_column(tracks_meta, "clip_soft")) if unclip else None
    y = pred.astype(jnp.float32)
    if legacy:
        y = y / scale
        if unclip:
            y = jnp.where(y > clip_soft, clip_soft + jnp.square(y - clip_soft), y)
        # power 4/3 undoes the 3/4 power of sum_sqrt targets; where() keeps it off other tracks
        y = jnp.where(is_sqrt, jnp.power(jnp.where(is_sqrt, y, 1.0), 4.0 / 3.0), y)
        return y if unscale else y * scale
    if unclip:
        y = jnp.where(y > clip_soft, clip_soft - 1 + jnp.square(y - clip_soft + 1), y)
    y = jnp.where(is_sqrt, jnp.square(y + 1) - 1, y)
    return y / scale if unscale else y
