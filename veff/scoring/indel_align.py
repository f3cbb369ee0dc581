"""Per-row token shifts on the device, for indel alignment of binned models.

For an indel with length difference d = len(ALT) - len(REF), the ALT window moved by -d bp
(content left for insertions, right for deletions) has the same right flank as REF. The
engine predicts it as a third allele and stitches it at the variant bin
(:func:`veff.scoring.tracks.stitch_predictions`): bins left of the variant from the ALT
window, the variant bin and right of it from the moved-back one. d varies per row, so the
move is a gather with a per-row offset: static shapes, one compiled step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

N_TOKEN = 4


def shift_rows(tokens: jax.Array, shift: jax.Array) -> jax.Array:
    """(B, L) tokens, (B,) int shifts -> row b moved right by ``shift[b]`` (left when
    negative), filled with N. ``shift == 0`` returns the row unchanged."""
    length = tokens.shape[-1]
    src = jnp.arange(length)[None, :] - jnp.asarray(shift, jnp.int32)[:, None]
    inside = (src >= 0) & (src < length)
    moved = jnp.take_along_axis(tokens, jnp.clip(src, 0, length - 1), axis=-1)
    return jnp.where(inside, moved, jnp.asarray(N_TOKEN, tokens.dtype))
