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

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.checkpoint import Checkpoint, CheckpointError, unflatten
from veff.models import attention
from veff.models.base import ModelHandle
from veff.models.enformer_config import (  # noqa: F401 - re-exported
    TF_GAMMA_BASIS,
    TF_GAMMA_KEY,
    TF_GAMMA_LEN,
    EnformerConfig,
    GammaBasis,
    exponential_linspace_int,
)

ARCH = "enformer"
BN_EPS = 1e-5
LN_EPS = 1e-5
POOL_SIZE = 2
STEM_KERNEL = 15
TOWER_KERNEL = 5
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
