"""Enformer's shape (:class:`EnformerConfig`): presets, validation and derived sizes.

The forward pass lives in :mod:`veff.models.enformer`, which re-exports these names.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np

# Rows of the TF gamma table (2 * 1536 - 1) and its basis count: the only shape it exists in.
TF_GAMMA_LEN = 1536
TF_GAMMA_BASIS = 32
TF_GAMMA_KEY = "tf_gamma"

GammaBasis = Literal["tf", "tf_table", "enformer_pytorch"]
_GAMMA_BASES = ("tf", "tf_table", "enformer_pytorch")


def exponential_linspace_int(start: int, end: int, num: int, divisible_by: int = 1) -> list[int]:
    """Tower widths: geometric from ``start`` to ``end`` in ``num`` steps, rounded to a
    multiple of ``divisible_by`` (Python's round-half-even, as enformer-pytorch rounds)."""
    base = math.exp(math.log(end / start) / (num - 1))
    return [int(round(start * base**i / divisible_by) * divisible_by) for i in range(num)]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnformerConfig:
    """Shape of an Enformer. ``window_len`` is any multiple of ``2**num_downsamples``.

    ``target_length``: output bins kept by the centre crop; ``None`` derives it by trimming
    the same fraction the original trims (320 of 1536 bins per side, i.e. 5/24, floored),
    which gives 896 at 196,608 bp. The trim must be the same on both sides.

    ``gamma_basis`` picks the gamma positional features (see docs/models_enformer.md):
    ``"tf"`` computes them as TF does (each feature normalised by its max over distances;
    valid at any length); ``"tf_table"`` uses the table DeepMind's TF model produced at
    1536 positions (enformer-pytorch's ``use_tf_gamma=True``; the table is a param,
    ``tf_gamma``, written by the converter); ``"enformer_pytorch"`` reproduces
    enformer-pytorch's ``use_tf_gamma=False`` (normalised over features: a port bug).
    """

    window_len: int = 196_608
    dim: int = 1536
    depth: int = 11
    heads: int = 8
    attn_dim_key: int = 64
    num_downsamples: int = 7
    dim_divisible_by: int = 128
    output_heads: tuple[tuple[str, int], ...] = (("human", 5313), ("mouse", 1643))
    target_length: int | None = None
    head: str = "human"
    gamma_basis: GammaBasis = "tf"

    def __post_init__(self):
        if isinstance(self.output_heads, dict):
            object.__setattr__(self, "output_heads", tuple(self.output_heads.items()))
        object.__setattr__(self, "output_heads",
                           tuple((str(k), int(v)) for k, v in self.output_heads))
        ints = ("window_len", "dim", "depth", "heads", "attn_dim_key", "num_downsamples",
                "dim_divisible_by")
        for f in ints:
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"EnformerConfig.{f} must be a positive int, got {v!r}")
        if self.num_downsamples < 3:
            raise ValueError("EnformerConfig.num_downsamples must be >= 3 (a stem and a tower "
                             f"of at least 2 blocks), got {self.num_downsamples}")
        if self.dim % 2:
            raise ValueError(f"EnformerConfig.dim must be even (the stem has dim/2), got {self.dim}")
        if self.dim % self.heads:
            raise ValueError(f"EnformerConfig.dim {self.dim} is not divisible by heads {self.heads}")
        if self.num_rel_pos_features % 6:
            raise ValueError(
                f"EnformerConfig: dim/heads = {self.num_rel_pos_features} must be divisible by 6 "
                "(3 positional basis functions, each also signed)"
            )
        if self.tower_channels[-1] != self.dim:
            raise ValueError(
                f"EnformerConfig: the tower ends at {self.tower_channels[-1]} channels, not dim "
                f"{self.dim}; dim must be a multiple of dim_divisible_by {self.dim_divisible_by}"
            )
        if self.window_len % self.bin_size:
            raise ValueError(f"EnformerConfig.window_len {self.window_len} is not a multiple of "
                             f"2**num_downsamples = {self.bin_size}")
        t = self.output_len
        if not 1 <= t <= self.num_bins or (self.num_bins - t) % 2:
            raise ValueError(
                f"EnformerConfig.target_length {t} cannot be centre-cropped from "
                f"{self.num_bins} bins (needs 1 <= target <= bins and an even difference)"
            )
        names = [n for n, _ in self.output_heads]
        if not names or len(set(names)) != len(names) or any(c < 1 for _, c in self.output_heads):
            raise ValueError(f"EnformerConfig.output_heads invalid: {self.output_heads}")
        if self.head not in names:
            raise ValueError(f"EnformerConfig.head {self.head!r} is not one of {names}")
        if self.gamma_basis not in _GAMMA_BASES:
            raise ValueError(f"EnformerConfig.gamma_basis must be one of {_GAMMA_BASES}, "
                             f"got {self.gamma_basis!r}")
        if self.gamma_basis == "tf_table" and not self.tf_table_fits:
            raise ValueError(
                f"EnformerConfig: gamma_basis 'tf_table' exists only for {TF_GAMMA_LEN} "
                f"transformer positions ({TF_GAMMA_LEN * self.bin_size} bp) and "
                f"{TF_GAMMA_BASIS} basis functions (dim/heads = {6 * TF_GAMMA_BASIS}); this "
                f"config has {self.num_bins} positions and dim/heads = {self.num_rel_pos_features}"
            )

    # ------------------------------------------------------------------ presets

    @classmethod
    def original(cls, **kw) -> EnformerConfig:
        """DeepMind's Enformer: 196,608 bp in, 896 × 128-bp bins out, 5313 human tracks."""
        return cls(**kw)

    @classmethod
    def small(cls, **kw) -> EnformerConfig:
        """Same family at ~1/16 of the FLOPs, for experiments and benchmarks."""
        base = dict(dim=384, depth=4, heads=4, attn_dim_key=32, dim_divisible_by=32)
        return cls(**{**base, **kw})

    @classmethod
    def tiny(cls, **kw) -> EnformerConfig:
        """Test config: distinct, mostly prime sizes so a transposed axis fails loudly.
        Tower widths 27, 27, 31, 36, 41, 47, 54; 3 heads of key 7, value 18."""
        base = dict(window_len=23 * 128, dim=54, depth=2, heads=3, attn_dim_key=7,
                    dim_divisible_by=1, output_heads=(("human", 11), ("mouse", 5)))
        return cls(**{**base, **kw})

    # ------------------------------------------------------------------ derived facts

    @property
    def bin_size(self) -> int:
        return 2**self.num_downsamples

    @property
    def num_bins(self) -> int:
        """Transformer length (positions after the conv tower)."""
        return self.window_len // self.bin_size

    @property
    def output_len(self) -> int:
        if self.target_length is not None:
            return int(self.target_length)
        return self.num_bins - 2 * (self.num_bins * 5 // 24)

    @property
    def crop(self) -> int:
        return (self.num_bins - self.output_len) // 2

    @property
    def tower_channels(self) -> list[int]:
        """Channels before and after each tower block: [C/2, C/2, …, C]."""
        half = self.dim // 2
        return [half, *exponential_linspace_int(half, self.dim, self.num_downsamples - 1,
                                                self.dim_divisible_by)]

    @property
    def num_rel_pos_features(self) -> int:
        return self.dim // self.heads

    @property
    def tf_table_fits(self) -> bool:
        return (self.num_bins == TF_GAMMA_LEN
                and self.num_rel_pos_features == 6 * TF_GAMMA_BASIS)

    @property
    def heads_dict(self) -> dict[str, int]:
        return dict(self.output_heads)

    @property
    def num_tracks(self) -> int:
        return self.heads_dict[self.head]

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["output_heads"] = self.heads_dict
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnformerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"EnformerConfig: unknown fields {sorted(unknown)}")
        return cls(**d)
