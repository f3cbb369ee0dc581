"""Exact incremental ALT for Borzoi: recompute the convolutional tower only on a short input
slice around the substitution, splice the changed bins into REF's transformer input *and*
into each U-net skip at its own resolution, then run the transformer, U-net and heads.

conv_dna (k15) and the res tower (k5 convs, max pools) are local; the skips are res-tower
outputs before their pool, so they are taps of the same tower (see
:mod:`veff.models.enformer_incremental` for the span algebra and why the slice is exact).
For Borzoi (F = 128) and a central SNV the transformer input changes on 6 of 4,096 bins and
the skips on 10 of 8,192 (res block 5) and 10 of 16,384 (res block 4) positions, all
recomputed from a 1,536-bp slice of 524,288. The transformer and U-net are global and run in full.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from veff.models import borzoi
from veff.models.borzoi import BorzoiConfig
from veff.models.enformer_incremental import Layer, SlicePlan, plan_slice, splice

TRUNK = "trunk"


def skip_tap(cfg: BorzoiConfig, j: int) -> str:
    """Tap name of U-net skip j (the output of res block R-1-j, before its pool)."""
    return f"res_tower/{len(cfg.res_filters) - 1 - j}"


def tower_layers(cfg: BorzoiConfig) -> tuple[Layer, ...]:
    layers: list[Layer] = [("conv", cfg.conv_dna_kernel // 2), ("pool", 2)]
    for i in range(len(cfg.res_filters)):
        layers += [("conv", cfg.res_kernel // 2), ("tap", f"res_tower/{i}"), ("pool", 2)]
    return (*layers, ("tap", TRUNK))


def slice_plan(cfg: BorzoiConfig, center: int, width: int = 1) -> SlicePlan:
    """Static plan for an edit of input bases ``[center, center + width)``. Only the trunk
    and the skip taps are spliced; the other res-tower spans are not needed."""
    return plan_slice(_used(cfg), cfg.window_len, center, center + width)


def _used(cfg: BorzoiConfig) -> tuple[Layer, ...]:
    # Drop taps that are not skips so the slice covers only what is spliced.
    skips = {skip_tap(cfg, j) for j in range(cfg.num_unet)}
    return tuple(l for l in tower_layers(cfg) if l[0] != "tap" or l[1] in skips | {TRUNK})


def _check_input(cfg: BorzoiConfig, x: jax.Array) -> None:
    if x.ndim != 3 or x.shape[1] != cfg.window_len or x.shape[2] != 4:
        raise ValueError(f"Borzoi expects (B, {cfg.window_len}, 4) one-hot, got {x.shape}")


def alt_trunk(
    cfg: BorzoiConfig,
    params,
    trunk_ref: tuple[jax.Array, tuple[jax.Array, ...]],
    x_alt: jax.Array,
    center: int,
    width: int = 1,
    *,
    precision=None,
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """ALT's :func:`borzoi.trunk` output (transformer input, skips) from REF's, recomputing
    only the positions an edit of ``[center, center + width)`` reaches."""
    _check_input(cfg, x_alt)
    plan = slice_plan(cfg, center, width)
    h_ref, skips_ref = trunk_ref
    h_piece, skips_piece = borzoi.trunk(cfg, params, x_alt[:, plan.start : plan.stop],
                                        precision=precision)
    skips = tuple(splice(r, p, plan, skip_tap(cfg, j))
                  for j, (r, p) in enumerate(zip(skips_ref, skips_piece)))
    return splice(h_ref, h_piece, plan, TRUNK), skips


def forward_pair(
    cfg: BorzoiConfig,
    params,
    x_ref: jax.Array,
    x_alt: jax.Array,
    center: int,
    width: int = 1,
    *,
    head: str | None = None,
    precision=None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """(REF outputs, ALT outputs), each ``{"tracks": (B, P, T)}`` as :func:`borzoi.apply`
    gives, for one-hot windows (B, L, 4) that differ only on ``[center, center + width)``."""
    _check_input(cfg, x_ref)
    h_ref, skips_ref = borzoi.trunk(cfg, params, x_ref, precision=precision)
    h_alt, skips_alt = alt_trunk(cfg, params, (h_ref, skips_ref), x_alt, center, width,
                                 precision=precision)
    # one global pass over REF and ALT stacked: same FLOPs, bigger matmuls
    b = x_ref.shape[0]
    both = [jnp.concatenate(pair) for pair in zip((h_ref, *skips_ref), (h_alt, *skips_alt))]
    tracks = borzoi.head_from_trunk(cfg, params, both[0], tuple(both[1:]), head=head,
                                    precision=precision)
    return {"tracks": tracks[:b]}, {"tracks": tracks[b:]}
