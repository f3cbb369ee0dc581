"""Exact incremental ALT for Enformer: the conv tower is local, so a substitution changes
only a few trunk bins; recompute those from a short input slice and run the (global)
transformer and heads on REF's trunk with them spliced in.

The span algebra here is generic over "local towers" (Borzoi uses it too). A tower is a
sequence of layers, each one of

    ("conv", r)     a SAME-padded convolution with kernel 2r + 1 (r = 0: pointwise; a
                    residual ``x + f(x)`` with local f reads no further than f)
    ("pool", 2)     a non-overlapping pool by 2 (attention pool, max pool)
    ("tap", name)   an output of interest at the current resolution

From the edited input span two static intervals follow per tap:

* forward, the *affected* span: conv [a, b) -> [a - r, b + r), pool [a, b) ->
  [floor(a/2), ceil(b/2)), each clipped to the layer's length. Outside it ALT equals REF.
* backward, the *required* input slice: the union of the dependency cones of every tap's
  affected span (pool [a, b) -> [2a, 2b), conv -> [a - r, b + r), clipped), rounded out to
  multiples of the total pooling factor F so that every pool pairs the same positions in
  the slice as in the full window.

Running the tower on ``x_alt[:, start:stop]`` then gives every affected value exactly: its
cone lies inside the slice, and where the cone is clipped by the window's edge the slice
edge *is* the window's edge, so SAME's zero padding is the real one. Positions near an
interior slice edge see zero padding instead of the neighbouring bases and are wrong, but
those are never spliced. Everything is plain Python on the config, so the slices are static
and the whole pair jit-compiles to fixed shapes.

For Enformer (stem conv k15, 6 tower convs k5, 7 pools; F = 128) and a central SNV the
trunk output changes on 6 of 1,536 bins, recomputed from a 1,536-bp slice (of 196,608).
The result equals a full ALT forward up to floating-point summation order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from veff.models import enformer
from veff.models.enformer import EnformerConfig

Layer = tuple[str, Any]  # ("conv", halo) | ("pool", 2) | ("tap", name)
TRUNK = "trunk"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlicePlan:
    """Static recipe for one edit: recompute the tower on input ``[start, stop)`` and splice
    ``spans[tap]`` (half-open, in that tap's positions) of each tap into REF's."""

    start: int
    stop: int
    spans: dict[str, tuple[int, int]]
    strides: dict[str, int]  # input bp per position of each tap

    def offset(self, tap: str) -> int:
        """Index in the tap's full-window positions of the slice's first position."""
        return self.start // self.strides[tap]


def plan_slice(layers: Sequence[Layer], length: int, start: int, stop: int) -> SlicePlan:
    """The slice and affected spans for an edit of input ``[start, stop)`` of a ``length``
    window through ``layers``."""
    factor = 2 ** sum(kind == "pool" for kind, _ in layers)
    if length % factor:
        raise ValueError(f"window length {length} is not a multiple of the tower's total "
                         f"pooling factor {factor}")
    if not 0 <= start < stop <= length:
        raise ValueError(f"edit [{start}, {stop}) is not inside a window of {length}")
    lengths, spans, strides = [], {}, {}
    n, a, b, stride = length, start, stop, 1
    for kind, value in layers:
        lengths.append(n)  # the layer's input length
        if kind == "conv":
            a, b = max(0, a - value), min(n, b + value)
        elif kind == "pool":
            if value != 2:
                raise ValueError(f"only pools by 2 are supported, got {value}")
            a, b, n, stride = a // 2, -(-b // 2), n // 2, stride * 2
        elif kind == "tap":
            spans[value], strides[value] = (a, b), stride
        else:
            raise ValueError(f"unknown tower layer {kind!r}")
    need: tuple[int, int] | None = None
    for (kind, value), n in zip(reversed(layers), reversed(lengths)):
        if kind == "tap":
            ta, tb = spans[value]
            need = (ta, tb) if need is None else (min(need[0], ta), max(need[1], tb))
        elif need is None:
            continue
        elif kind == "conv":
            need = (max(0, need[0] - value), min(n, need[1] + value))
        else:  # pool
            need = (2 * need[0], 2 * need[1])
    if need is None:
        raise ValueError("the tower has no tap")
    lo, hi = need[0] // factor * factor, -(-need[1] // factor) * factor
    return SlicePlan(start=lo, stop=hi, spans=spans, strides=strides)


def splice(base: jax.Array, piece: jax.Array, plan: SlicePlan, tap: str) -> jax.Array:
    """``base`` (B, P, C) over the full window with the affected span of ``tap`` replaced
    from ``piece`` (B, P', C), the same tap computed on the plan's slice."""
    a, b = plan.spans[tap]
    off = plan.offset(tap)
    return base.at[:, a:b].set(piece[:, a - off : b - off].astype(base.dtype))


# --------------------------------------------------------------------------- Enformer


def tower_layers(config: EnformerConfig) -> tuple[Layer, ...]:
    """Enformer's trunk as local layers (the k1 residual conv blocks read no neighbours)."""
    layers: list[Layer] = [("conv", enformer.STEM_KERNEL // 2), ("pool", 2)]
    for _ in range(config.num_downsamples - 1):
        layers += [("conv", enformer.TOWER_KERNEL // 2), ("pool", 2)]
    return (*layers, ("tap", TRUNK))


def slice_plan(config: EnformerConfig, center: int, width: int = 1) -> SlicePlan:
    """Static plan for an edit of input bases ``[center, center + width)``."""
    return plan_slice(tower_layers(config), config.window_len, center, center + width)


def alt_trunk(
    config: EnformerConfig,
    params: dict,
    h_ref: jax.Array,
    x_alt: jax.Array,
    center: int,
    width: int = 1,
    *,
    precision=None,
) -> jax.Array:
    """ALT's :func:`enformer.trunk` output (B, num_bins, dim) from REF's, recomputing only
    the bins an edit of ``[center, center + width)`` reaches."""
    enformer._check_input(config, x_alt)
    plan = slice_plan(config, center, width)
    piece = enformer._trunk(config, params, x_alt[:, plan.start : plan.stop], precision, None)
    return splice(h_ref, piece, plan, TRUNK)


def forward_pair(
    config: EnformerConfig,
    params: dict,
    x_ref: jax.Array,
    x_alt: jax.Array,
    center: int,
    width: int = 1,
    *,
    precision=None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """(REF outputs, ALT outputs), each ``{"tracks": (B, P, T)}`` as :func:`enformer.apply`
    gives, for one-hot windows (B, L, 4) that differ only on ``[center, center + width)``."""
    enformer._check_input(config, x_ref)
    h_ref = enformer.trunk(params, x_ref, config=config, precision=precision)
    h_alt = alt_trunk(config, params, h_ref, x_alt, center, width, precision=precision)
    # one transformer pass over REF and ALT stacked: same FLOPs, bigger matmuls
    b = x_ref.shape[0]
    tracks = enformer.head_from_trunk(params, jnp.concatenate([h_ref, h_alt]), config=config,
                                      precision=precision)["tracks"]
    return {"tracks": tracks[:b]}, {"tracks": tracks[b:]}
