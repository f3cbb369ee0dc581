"""What the engine needs from any model: a pure ``apply(params, onehot)`` and its facts.

Every architecture module provides ``from_checkpoint(ckpt) -> ModelHandle``; the registry
(``veff.models.registry``) picks the builder by ``ckpt.arch``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import jax

# apply(params, x) with x: (B, L, 4) float one-hot -> outputs.
#   kind "profile": {"logits": (B, P), "logcounts": (B,)}
#   kind "binned":  {"tracks": (B, P, T)}
#   kind "cells":   {"tracks": (B, 1, C)}, one bin over the window, a track per cell (scBasset)
ApplyFn = Callable[[Any, jax.Array], dict[str, jax.Array]]
PairFn = Callable[[Any, jax.Array, jax.Array, int], tuple[dict[str, jax.Array], dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelHandle:
    name: str
    arch: str
    kind: Literal["profile", "binned", "cells"]
    window_len: int
    output_len: int
    tracks: list[dict[str, Any]]
    sha256: str
    # Pytree of arrays. With num_folds > 1 every leaf has a leading fold axis and the
    # engine vmaps ``apply`` over it (folds share inputs; scores are averaged over folds).
    params: Any
    apply: ApplyFn
    num_folds: int = 1
    # bp of input per output position (1 for per-base profile models, 32/128 for binned)
    bin_size: int = 1
    # Optional exact incremental ALT for substitutions:
    # apply_pair(params, x_ref, x_alt, center) -> (ref outputs, alt outputs), where the two
    # windows differ only at index ``center`` (static). None: the engine runs ALT in full.
    apply_pair: PairFn | None = None

    @property
    def track_names(self) -> list[str]:
        return [t["name"] for t in self.tracks]
