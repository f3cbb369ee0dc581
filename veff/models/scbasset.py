"""scBasset (Yuan & Kelley 2022): a Basenji-style CNN over one peak window with a per-cell
linear projection, as pure functions over a params dict.

Input one-hot (B, L, 4), A C G T, N all zeros; channels-last; every block is

    h = pool(bn(conv_same(gelu(h))))            # gelu(x) = sigmoid(1.702 x) * x, conv no bias

    stem:    288 filters, kernel 17, max-pool 3         1344 -> 448
    tower:   6 blocks, kernel 5, max-pool 2             448 -> 7
    pre:     256 filters, kernel 1, no pool
    z = gelu(bn(dense_nobias(flatten(gelu(h)))))       # bottleneck, 32 units
    logits = z @ W  (+ b)                               # W: (32, n_cells), b: per-cell intercept

Batch norm is inference-mode with epsilon 1e-3 (Keras' default; scvi-tools sets the same).
``flatten`` is position-major (index p * C + c), Keras' Reshape; scvi-tools flattens
channel-major and its converter permutes the bottleneck kernel's rows, so one forward serves
both. The two layouts differ where no weight shows it, recorded in the config:

- ``pool``: "keras" is TF's SAME max-pool (ceil(L / p) outputs, padding at the end when
  needed); "scvi" is torch's ``MaxPool1d(p, padding=(p - 1) // 2)``, floor mode: the stem's
  pool-3 windows start one base to the left ([-1, 0, 1], [2, 3, 4], ...).
- tower widths: calico rounds 288 * 1.122**i (288 323 363 407 456 512); scvi-tools keeps the
  first block at 288 and rounds cumulatively (288 323 362 406 456 512; ``tower_widths``).
  The converters read the widths from the weights.

The model's engine output ``tracks`` (B, 1, n_cells) is the per-cell logit WITHOUT the
intercept (scBasset's depth-normalised accessibility, ``imputation_Y_normalize``); variant
scores are differences of it (veff/scoring/cells.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.checkpoint import Checkpoint, CheckpointError, unflatten
from veff.models.base import ModelHandle

ARCH = "scbasset"
LAYOUTS = ("keras", "scvi")
BN_LEAVES = ("gamma", "beta", "mean", "var")


def tower_widths(init: int = 288, mult: float = 1.122, repeat: int = 6, layout: str = "keras"):
    """The conv tower's filter counts as each implementation computes them."""
    if layout == "keras":  # calico conv_tower: round(init * mult**i), float accumulated
        out, f = [], float(init)
        for _ in range(repeat):
            out.append(int(np.round(f)))
            f *= mult
        return tuple(out)
    out, cur = [], init  # scvi-tools: the first block keeps init, then round(cur * mult)
    for i in range(repeat):
        cur = int(np.round(cur * mult)) if i > 0 else cur
        out.append(cur)
    return tuple(out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScBassetConfig:
    n_cells: int
    window_len: int = 1344
    stem_filters: int = 288
    stem_kernel: int = 17
    stem_pool: int = 3
    tower_filters: tuple[int, ...] = tower_widths()
    tower_kernel: int = 5
    tower_pool: int = 2
    pre_filters: int = 256
    bottleneck: int = 32
    bn_eps: float = 1e-3
    pool: str = "keras"

    def __post_init__(self):
        object.__setattr__(self, "tower_filters", tuple(int(f) for f in self.tower_filters))
        if self.pool not in LAYOUTS:
            raise ValueError(f"ScBassetConfig.pool must be one of {LAYOUTS}, got {self.pool!r}")
        sizes = (self.n_cells, self.window_len, self.stem_filters, self.stem_kernel,
                 self.stem_pool, self.tower_kernel, self.tower_pool, self.pre_filters,
                 self.bottleneck, *self.tower_filters)
        if any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1 for v in sizes):
            raise ValueError(f"ScBassetConfig: sizes must be whole numbers >= 1: {self}")
        if self.final_len < 1:
            raise ValueError(f"ScBassetConfig: window_len {self.window_len} pools to nothing")

    @classmethod
    def tiny(cls, **kw) -> ScBassetConfig:
        """Prime-sized config for tests (transposed kernels or flatten orders fail loudly)."""
        return cls(**{"n_cells": 11, "window_len": 96, "stem_filters": 5, "stem_kernel": 7,
                      "tower_filters": (7, 6), "tower_kernel": 5, "pre_filters": 3,
                      "bottleneck": 13, **kw})

    def pool_padding(self, length: int, p: int) -> tuple[int, int]:
        if p == 1:
            return 0, 0
        if self.pool == "scvi":
            return (p - 1) // 2, (p - 1) // 2
        out = -(-length // p)
        total = max((out - 1) * p + p - length, 0)
        return total // 2, total - total // 2

    def pooled_len(self, length: int, p: int) -> int:
        lo, hi = self.pool_padding(length, p)
        return (length + lo + hi - p) // p + 1

    @property
    def final_len(self) -> int:
        n = self.pooled_len(self.window_len, self.stem_pool)
        for _ in self.tower_filters:
            n = self.pooled_len(n, self.tower_pool) if n > 0 else 0
        return n

    @property
    def blocks(self) -> list[tuple[str, int, int, int, int]]:
        """[(name, in, out, kernel, pool)] of the conv blocks."""
        out = [("stem", 4, self.stem_filters, self.stem_kernel, self.stem_pool)]
        prev = self.stem_filters
        for i, f in enumerate(self.tower_filters):
            out.append((f"tower_{i}", prev, f, self.tower_kernel, self.tower_pool))
            prev = f
        out.append(("pre", prev, self.pre_filters, 1, 1))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tower_filters"] = list(self.tower_filters)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScBassetConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"ScBassetConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------- params
def param_shapes(cfg: ScBassetConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cin, cout, k, _ in cfg.blocks:
        out[name] = {"kernel": (k, cin, cout), **{b: (cout,) for b in BN_LEAVES}}
    out["bottleneck"] = {"kernel": (cfg.final_len * cfg.pre_filters, cfg.bottleneck),
                         **{b: (cfg.bottleneck,) for b in BN_LEAVES}}
    out["cells"] = {"kernel": (cfg.bottleneck, cfg.n_cells), "bias": (cfg.n_cells,)}
    return out


def abstract_params(cfg: ScBassetConfig) -> Any:
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), param_shapes(cfg),
                        is_leaf=lambda s: isinstance(s, tuple))


def init(cfg: ScBassetConfig, seed: int = 0) -> dict[str, Any]:
    """Random float32 params (kernels ~ N(0, 1/fan_in), BN statistics away from identity)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, leaves in param_shapes(cfg).items():
        d = {}
        for leaf, shape in leaves.items():
            if leaf == "kernel":
                a = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
            elif leaf == "var":
                a = rng.uniform(0.5, 2.0, shape)
            elif leaf == "gamma":
                a = rng.uniform(0.5, 1.5, shape)
            else:
                a = 0.2 * rng.standard_normal(shape)
            d[leaf] = np.asarray(a, np.float32)
        out[name] = d
    return out


# --------------------------------------------------------------------------- forward
def gelu(x):
    """Basenji's GELU approximation: sigmoid(1.702 x) * x."""
    return jax.nn.sigmoid(1.702 * x) * x


def _bn(x, p, eps):
    return (x - p["mean"]) * lax.rsqrt(p["var"] + eps) * p["gamma"] + p["beta"]


def block(cfg: ScBassetConfig, p, h, kernel: int, pool: int, precision):
    """gelu -> conv (SAME, no bias) -> batch norm -> max-pool, as calico conv_block."""
    h = gelu(h)
    lo = (kernel - 1) // 2
    h = lax.conv_general_dilated(h, p["kernel"].astype(h.dtype), (1,), [(lo, kernel - 1 - lo)],
                                 dimension_numbers=("NWC", "WIO", "NWC"), precision=precision)
    h = _bn(h, p, cfg.bn_eps)
    if pool > 1:
        pad = cfg.pool_padding(h.shape[1], pool)
        h = lax.reduce_window(h, jnp.array(-jnp.inf, h.dtype), lax.max, (1, pool, 1),
                              (1, pool, 1), [(0, 0), pad, (0, 0)])
    return h


def embed(cfg: ScBassetConfig, params, x, *, precision=lax.Precision.HIGHEST) -> jax.Array:
    """(B, L, 4) one-hot -> (B, bottleneck) region embedding (after the final GELU)."""
    if x.ndim != 3 or x.shape[1] != cfg.window_len or x.shape[2] != 4:
        raise ValueError(f"scBasset expects (B, {cfg.window_len}, 4) input, got {x.shape}")
    h = x.astype(params["stem"]["kernel"].dtype)
    for name, _, _, k, pool in cfg.blocks:
        h = block(cfg, params[name], h, k, pool, precision)
    h = gelu(h).reshape(h.shape[0], -1)  # position-major flatten, as Keras' Reshape
    pb = params["bottleneck"]
    h = _bn(jnp.matmul(h, pb["kernel"], precision=precision), pb, cfg.bn_eps)
    return gelu(h)


def forward(cfg: ScBassetConfig, params, x, *, precision=lax.Precision.HIGHEST,
            intercept: bool = False) -> jax.Array:
    """(B, L, 4) -> (B, n_cells) per-cell logits; ``intercept`` adds the per-cell bias
    (the model's own output is sigmoid of that)."""
    z = embed(cfg, params, x, precision=precision)
    logits = jnp.matmul(z, params["cells"]["kernel"], precision=precision)
    return logits + params["cells"]["bias"] if intercept else logits


# --------------------------------------------------------------------------- checkpoints
def config_from_checkpoint(ckpt: Checkpoint) -> ScBassetConfig:
    try:
        return ScBassetConfig.from_dict(dict(ckpt.config))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: invalid scbasset config ({e})") from None


def from_checkpoint(ckpt: Checkpoint, *, precision=lax.Precision.HIGHEST) -> ModelHandle:
    """Native "scbasset" checkpoint -> a kind "cells" handle: tracks are the cells, one output
    bin covering the window, values the per-cell logits without the intercept."""
    from veff.convert.common import match_params

    cfg = config_from_checkpoint(ckpt)
    params, num_folds = match_params(abstract_params(cfg), unflatten(ckpt.params),
                                     source=str(ckpt.path), error=CheckpointError)
    params = jax.tree.map(jnp.asarray, params)
    tracks = ckpt.tracks
    if len(tracks) != cfg.n_cells:
        raise CheckpointError(f"{ckpt.path}: {len(tracks)} track names for {cfg.n_cells} cells")

    def apply(p, x):
        return {"tracks": forward(cfg, p, x, precision=precision)[:, None, :]}

    name = ckpt.metadata.get("name") or (ckpt.path.name if ckpt.path else ARCH)
    return ModelHandle(name=name, arch=ARCH, kind="cells", window_len=cfg.window_len,
                       output_len=1, tracks=tracks, sha256=ckpt.sha256, params=params,
                       apply=apply, num_folds=num_folds, bin_size=cfg.window_len)
