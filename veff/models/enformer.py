"""Enformer (Avsec et al. 2021) as pure functions over a params dict, numerically matching
enformer-pytorch 0.8.x (and through it DeepMind's Sonnet model).

Layout is channels-last, (B, L, C); input is one-hot (B, window_len, 4) in A, C, G, T order.

    stem      conv k15 (4 -> C/2) ; x + ConvBlock k1 ; AttentionPool 2
    tower     (num_downsamples − 1) × [ConvBlock k5 ; x + ConvBlock k1 ; AttentionPool 2]
    transformer  depth × [x + MHA(LN(x)) ; x + Linear(ReLU(Linear(LN(x))))]
    crop      centre crop to target_length bins
    final     ConvBlock k1 (C -> 2C) ; GELU
    heads     {name: softplus(Linear(2C -> T_name))}

ConvBlock = BatchNorm (running statistics, eps 1e-5) -> GELU -> Conv (with bias).
GELU is ``x · sigmoid(1.702 x)`` (TF/Sonnet's approximation, not erf or tanh GELU).
AttentionPool: per-position softmax over each window of 2, logits from a C×C linear map.
LayerNorm eps 1e-5 (torch's default; Flax's would be 1e-6).

Parameter names mirror enformer-pytorch's modules (``to_q``, ``to_attn_logits``…), kernels
are in (K, in, out) / (in, out) layout. The relative-position attention and its basis
functions live in :mod:`veff.models.attention`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.checkpoint import Checkpoint, CheckpointError, unflatten
from veff.models import attention
from veff.models.base import ModelHandle

ARCH = "enformer"
BN_EPS = 1e-5
LN_EPS = 1e-5
POOL_SIZE = 2
STEM_KERNEL = 15
TOWER_KERNEL = 5
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


# --------------------------------------------------------------------------- params


def _param_shapes(config: EnformerConfig) -> dict[str, Any]:
    """Nested {name: shape} of every parameter."""
    c = config.tower_channels
    half, dim, hk = c[0], config.dim, config.heads * config.attn_dim_key

    def bn(n):
        return {"scale": (n,), "bias": (n,), "mean": (n,), "var": (n,)}

    def conv_block(cin, cout, k):
        return {"bn": bn(cin), "conv": {"kernel": (k, cin, cout), "bias": (cout,)}}

    shapes: dict[str, Any] = {
        "stem": {
            "conv": {"kernel": (STEM_KERNEL, 4, half), "bias": (half,)},
            "res": conv_block(half, half, 1),
            "pool": {"kernel": (half, half)},
        },
        "tower": {
            str(i): {
                "conv": conv_block(cin, cout, TOWER_KERNEL),
                "res": conv_block(cout, cout, 1),
                "pool": {"kernel": (cout, cout)},
            }
            for i, (cin, cout) in enumerate(zip(c[:-1], c[1:]))
        },
        "transformer": {
            str(i): {
                "attn_norm": {"scale": (dim,), "bias": (dim,)},
                "attn": {
                    "to_q": {"kernel": (dim, hk)},
                    "to_k": {"kernel": (dim, hk)},
                    "to_v": {"kernel": (dim, dim)},
                    "to_rel_k": {"kernel": (config.num_rel_pos_features, hk)},
                    "to_out": {"kernel": (dim, dim), "bias": (dim,)},
                    "rel_content_bias": (config.heads, config.attn_dim_key),
                    "rel_pos_bias": (config.heads, config.attn_dim_key),
                },
                "ffn_norm": {"scale": (dim,), "bias": (dim,)},
                "ffn_in": {"kernel": (dim, 2 * dim), "bias": (2 * dim,)},
                "ffn_out": {"kernel": (2 * dim, dim), "bias": (dim,)},
            }
            for i in range(config.depth)
        },
        "final": conv_block(dim, 2 * dim, 1),
        "heads": {name: {"kernel": (2 * dim, t), "bias": (t,)} for name, t in config.output_heads},
    }
    if config.gamma_basis == "tf_table":
        shapes[TF_GAMMA_KEY] = (2 * TF_GAMMA_LEN - 1, TF_GAMMA_BASIS)
    return shapes


def _is_shape(node: Any) -> bool:
    return isinstance(node, tuple)


def init(config: EnformerConfig, key: jax.Array) -> dict[str, Any]:
    """Random params of the right shapes with O(1) activations: kernels ~ N(0, 1/fan_in),
    biases ~ N(0, 0.1²), norm scales ~ U(0.5, 1.5), running var ~ U(0.5, 2).

    For tests and benchmarks; through ``jax.eval_shape`` it is also the abstract tree that
    converted weights must fill exactly. A ``tf_gamma`` table gets random values here.
    """
    shapes = _param_shapes(config)
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=_is_shape)
    paths = [jax.tree_util.keystr(p) for p, _ in
             jax.tree_util.tree_flatten_with_path(shapes, is_leaf=_is_shape)[0]]
    keys = jax.random.split(key, len(leaves))
    out = []
    for path, shape, k in zip(paths, leaves, keys):
        leaf = path.split("'")[-2]
        if leaf == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            v = jax.random.normal(k, shape) / np.sqrt(fan_in)
        elif leaf in ("scale", "var"):
            lo, hi = (0.5, 1.5) if leaf == "scale" else (0.5, 2.0)
            v = jax.random.uniform(k, shape, minval=lo, maxval=hi)
        elif leaf == TF_GAMMA_KEY:
            v = jax.random.uniform(k, shape)
        else:  # bias, mean, rel_*_bias
            v = 0.1 * jax.random.normal(k, shape)
        out.append(v.astype(jnp.float32))
    return jax.tree.unflatten(treedef, out)


def abstract_params(config: EnformerConfig) -> Any:
    """Shape/dtype tree of :func:`init` without allocating anything."""
    return jax.eval_shape(lambda k: init(config, k), jax.random.key(0))


# --------------------------------------------------------------------------- blocks


def gelu(x: jax.Array) -> jax.Array:
    """Sonnet/enformer-pytorch GELU: sigmoid(1.702 x) · x."""
    return jax.nn.sigmoid(1.702 * x) * x


def _batch_norm(x: jax.Array, p: dict) -> jax.Array:
    # Inference BN folded to one multiply-add, in the order torch's CPU kernel uses.
    alpha = p["scale"] * lax.rsqrt(p["var"] + BN_EPS)
    beta = p["bias"] - p["mean"] * alpha
    return x * alpha.astype(x.dtype) + beta.astype(x.dtype)


def _layer_norm(x: jax.Array, p: dict) -> jax.Array:
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    y = (xf - mean) * lax.rsqrt(var + LN_EPS) * p["scale"] + p["bias"]
    return y.astype(x.dtype)


def _conv(x: jax.Array, p: dict, precision) -> jax.Array:
    kernel = p["kernel"].astype(x.dtype)
    k = kernel.shape[0]
    if k == 1:
        y = jnp.matmul(x, kernel[0], precision=precision)
    else:
        y = lax.conv_general_dilated(x, kernel, (1,), [(k // 2, k // 2)],
                                     dimension_numbers=("NWC", "WIO", "NWC"), precision=precision)
    return y + p["bias"].astype(x.dtype)


def _conv_block(x: jax.Array, p: dict, precision) -> jax.Array:
    return _conv(gelu(_batch_norm(x, p["bn"])), p["conv"], precision)


def _attention_pool(x: jax.Array, p: dict, precision) -> jax.Array:
    """(B, L, C) -> (B, L/2, C): softmax-weighted sum over each pair of positions.

    The softmax over the window is spelled out per window member (max, exp, sum, divide:
    the same operations jax.nn.softmax runs) rather than as a softmax over a size-2 axis:
    XLA's CPU backend reduces over a minor axis of 2 very slowly, which made the pools
    ~8x slower than the C×C logits matmul they follow.
    """
    b, n, c = x.shape
    logits = jnp.matmul(x, p["kernel"].astype(x.dtype), precision=precision)
    logits = logits.astype(jnp.float32).reshape(b, n // POOL_SIZE, POOL_SIZE, c)
    x = x.reshape(b, n // POOL_SIZE, POOL_SIZE, c)
    parts = [logits[:, :, i] for i in range(POOL_SIZE)]
    m = functools.reduce(jnp.maximum, parts)
    e = [jnp.exp(part - m) for part in parts]
    total = functools.reduce(jnp.add, e)
    return functools.reduce(jnp.add, [x[:, :, i] * (e[i] / total).astype(x.dtype)
                                      for i in range(POOL_SIZE)])


def _linear(x: jax.Array, p: dict, precision) -> jax.Array:
    return jnp.matmul(x, p["kernel"].astype(x.dtype), precision=precision) + p["bias"].astype(x.dtype)


def positional_features(config: EnformerConfig, params: dict | None = None) -> jax.Array:
    """(2·num_bins − 1, dim/heads) relative positional features of this config."""
    if config.gamma_basis == "tf_table":
        if params is None or TF_GAMMA_KEY not in params:
            raise ValueError(f"gamma_basis 'tf_table' needs the {TF_GAMMA_KEY!r} param")
        gamma = params[TF_GAMMA_KEY]
    elif config.gamma_basis == "enformer_pytorch":
        gamma = attention.gamma_basis_enformer_pytorch
    else:
        gamma = attention.gamma_basis
    basis = (attention.exponential_basis, attention.central_mask_basis, gamma)
    return attention.positional_basis(config.num_bins, config.num_rel_pos_features, basis)


# --------------------------------------------------------------------------- forward


# Input positions per stem tile. The stem (k15 conv -> x + ConvBlock k1 -> AttentionPool)
# is the only full-length stage, and each of its five passes over (L, C/2) goes through
# memory (about 150 MB per tensor at 196,608 × 192 f32). Run tile by tile, a tile's
# intermediates stay in cache: 8,192 positions are 6 MB per tensor. Measured on the
# 2-core Zen 3 at 196,608 bp, small(): stem 495 ms untiled, 281/295/321 ms with tiles of
# 4,096/8,192/16,384, bit-identical output there (other shapes may pick other GEMM
# kernels: tiny() forced into 368-position tiles differs by 3.6e-7).
STEM_TILE = 8192
_MIN_STEM_TILE = 512  # lengths with no even divisor in [512, STEM_TILE] run untiled


def _stem_tile(n: int) -> int:
    for t in range(min(STEM_TILE, n), _MIN_STEM_TILE - 1, -1):
        if n % t == 0 and t % POOL_SIZE == 0:
            return t
    return n


def _stem_piece(xp: jax.Array, p: dict, precision) -> jax.Array:
    """Stem on an input already padded by the conv's halo: (B, T + K − 1, 4) -> (B, T/2, C)."""
    kernel = p["conv"]["kernel"].astype(xp.dtype)
    h = lax.conv_general_dilated(xp, kernel, (1,), [(0, 0)],
                                 dimension_numbers=("NWC", "WIO", "NWC"), precision=precision)
    h = h + p["conv"]["bias"].astype(xp.dtype)
    h = h + _conv_block(h, p["res"], precision)
    return _attention_pool(h, p["pool"], precision)


def _stem(x: jax.Array, p: dict, precision) -> jax.Array:
    """conv k15 ; x + ConvBlock k1 ; AttentionPool: (B, L, 4) -> (B, L/2, C), in tiles of
    :data:`STEM_TILE` positions (see there). Only the k15 conv reaches across positions,
    and it reads the one-hot input, whose "same" zero padding is padded once up front, so a
    tile needs just its K − 1 input halo; every tile runs the same sums as the whole, up
    to the summation order of the GEMM kernel XLA picks for the tile's shape."""
    b, n, _ = x.shape
    halo = p["conv"]["kernel"].shape[0] // 2
    xp = jnp.pad(x, ((0, 0), (halo, halo), (0, 0)))
    tile = _stem_tile(n)
    if tile == n:
        return _stem_piece(xp, p, precision)

    def piece(i0):
        return _stem_piece(lax.dynamic_slice_in_dim(xp, i0, tile + 2 * halo, axis=1), p,
                           precision)

    out = lax.map(piece, jnp.arange(n // tile) * tile)  # (n/tile, B, tile/2, C)
    return out.transpose(1, 0, 2, 3).reshape(b, n // POOL_SIZE, -1)


def _check_input(config: EnformerConfig, x: jax.Array) -> None:
    if x.ndim != 3 or x.shape[1] != config.window_len or x.shape[2] != 4:
        raise ValueError(f"Enformer expects (B, {config.window_len}, 4) input, got {x.shape}")


def _trunk(config: EnformerConfig, params: dict, x: jax.Array, precision, inter: dict | None):
    x = x.astype(params["stem"]["conv"]["kernel"].dtype)
    h = _stem(x, params["stem"], precision)
    if inter is not None:
        inter["stem"] = h
    for i in range(config.num_downsamples - 1):
        p = params["tower"][str(i)]
        h = _conv_block(h, p["conv"], precision)
        h = h + _conv_block(h, p["res"], precision)
        h = _attention_pool(h, p["pool"], precision)
        if inter is not None:
            inter[f"tower/{i}"] = h
    return h


def _head(config: EnformerConfig, params: dict, h: jax.Array, precision, inter: dict | None):
    pos = positional_features(config, params)
    for i in range(config.depth):
        p = params["transformer"][str(i)]
        h = h + attention.relative_mha(p["attn"], _layer_norm(h, p["attn_norm"]), pos,
                                       precision=precision)
        f = jax.nn.relu(_linear(_layer_norm(h, p["ffn_norm"]), p["ffn_in"], precision))
        h = h + _linear(f, p["ffn_out"], precision)
        if inter is not None:
            inter[f"transformer/{i}"] = h
    h = h[:, config.crop : config.crop + config.output_len]
    if inter is not None:
        inter["crop"] = h
    h = gelu(_conv_block(h, params["final"], precision))
    if inter is not None:
        inter["final_pointwise"] = h
        for name, _ in config.output_heads:
            inter[f"heads/{name}"] = jax.nn.softplus(_linear(h, params["heads"][name], precision))
        tracks = inter[f"heads/{config.head}"]
    else:
        tracks = jax.nn.softplus(_linear(h, params["heads"][config.head], precision))
    return tracks


def trunk(params: dict, x: jax.Array, *, config: EnformerConfig, precision=None) -> jax.Array:
    """Stem + conv tower: (B, window_len, 4) -> (B, num_bins, dim). Position-local (each
    output bin sees a bounded input span), so a local edit changes only a slice of it."""
    _check_input(config, x)
    return _trunk(config, params, x, precision, None)


def head_from_trunk(
    params: dict, h: jax.Array, *, config: EnformerConfig, precision=None,
    return_intermediates: bool = False,
) -> dict[str, jax.Array]:
    """Transformer, crop, final pointwise and the selected head on a :func:`trunk` output:
    (B, num_bins, dim) -> {"tracks": (B, output_len, T)} (+ intermediates, see :func:`apply`)."""
    inter: dict[str, jax.Array] | None = {} if return_intermediates else None
    tracks = _head(config, params, h, precision, inter)
    return {"tracks": tracks, **(inter or {})}


def apply(
    params: dict, x: jax.Array, *, config: EnformerConfig, precision=None,
    return_intermediates: bool = False,
) -> dict[str, jax.Array]:
    """(B, window_len, 4) one-hot -> {"tracks": (B, output_len, T)} for ``config.head``.

    Computes in the dtype of the params (the engine casts params to pick precision); norms
    and softmaxes run in float32. ``precision=None`` follows jax's default matmul precision.
    With ``return_intermediates`` the dict also holds (all (B, P, C)): "stem",
    "tower/{i}", "transformer/{i}", "crop", "final_pointwise" and "heads/{name}" for
    every head.
    """
    _check_input(config, x)
    inter: dict[str, jax.Array] | None = {} if return_intermediates else None
    h = _trunk(config, params, x, precision, inter)
    tracks = _head(config, params, h, precision, inter)
    return {"tracks": tracks, **(inter or {})}


# --------------------------------------------------------------------------- checkpoints


def config_from_checkpoint(ckpt: Checkpoint) -> EnformerConfig:
    if ckpt.arch != ARCH:
        raise CheckpointError(f"{ckpt.path}: arch {ckpt.arch!r} is not {ARCH!r}")
    try:
        return EnformerConfig.from_dict(ckpt.config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: invalid enformer config ({e})") from None


def from_checkpoint(ckpt: Checkpoint, *, precision=lax.Precision.HIGHEST) -> ModelHandle:
    """The engine's handle for a native "enformer" checkpoint: kind "binned", 128-bp bins,
    ``apply`` returning the selected head's tracks, ``apply_pair`` the exact incremental
    ALT for substitutions. Params with one extra leading axis on every leaf are folds (the
    engine vmaps ``apply`` over it)."""
    from veff.convert.common import match_params
    from veff.models import enformer_incremental

    config = config_from_checkpoint(ckpt)
    params, num_folds = match_params(abstract_params(config), unflatten(ckpt.params),
                                     source=str(ckpt.path), error=CheckpointError)
    params = jax.tree.map(jnp.asarray, params)
    tracks = ckpt.tracks or [{"name": f"{config.head}_{i}"} for i in range(config.num_tracks)]
    if len(tracks) != config.num_tracks:
        raise CheckpointError(f"{ckpt.path}: {len(tracks)} track names for the "
                              f"{config.num_tracks} tracks of head {config.head!r}")
    name = ckpt.metadata.get("name") or (ckpt.path.name if ckpt.path else ARCH)
    return ModelHandle(
        name=name,
        arch=ARCH,
        kind="binned",
        window_len=config.window_len,
        output_len=config.output_len,
        tracks=tracks,
        sha256=ckpt.sha256,
        params=params,
        apply=functools.partial(apply, config=config, precision=precision),
        num_folds=num_folds,
        bin_size=config.bin_size,
        apply_pair=functools.partial(enformer_incremental.forward_pair, config,
                                     precision=precision),
    )
