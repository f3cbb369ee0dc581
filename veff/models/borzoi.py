"""Borzoi (Linder et al. 2025; calico/baskerville ``params.json`` family) as pure functions.

Layout (channels-last; every pool is max-pool 2, every conv "same"; Keras/baskerville order):

    conv_dna      conv_k15(onehot) + bias -> maxpool             (no norm, no activation)
    res_tower[i]  BN -> GELU -> conv_k5 (+bias)  = repr_i -> maxpool      i = 0..R-1
    transformer   N x [x + MHA(LN(x)),  x + W2 relu(W1 LN(x))]   (relative positions,
                  central-mask basis only)
    unet[j]       up = repeat2(dense(GELU(BN(x)))); skip = dense(GELU(BN(repr_{R-1-j})))
                  x = pointwise(depthwise_k3(up + skip)) + bias              j = 0..U-1
    crop          x[:, c:-c]
    final         [BN -> GELU -> dense(F)]  then GELU (baskerville's trunk activation)
    head          softplus(dense(T))

``repr_i`` is block i's output *before* its pool: the U-net skips are the last U res-tower
blocks (borzoi-pytorch: ``res_tower`` output = x_unet0, ``unet1`` = x_unet1). So
``trunk`` (everything up to the transformer input) also returns the skips, and
``head_from_trunk`` needs both; an exact incremental ALT recomputes the tower slice-wise
and must splice the skips as well as the transformer input.

Numerics follow baskerville/Keras (and borzoi-pytorch, which matches them): BatchNorm and
LayerNorm epsilon 1e-3, GELU is the tanh approximation (``tf.keras.activations.gelu(
approximate=True)``, ``nn.GELU(approximate='tanh')``), plain softplus on the head.

Relative positions (baskerville ``positional_features_central_mask``): central masks of
widths r**k - 1 and their signed copies over a *basis length* S (the transformer length T,
or a fixed ``position_basis_length``: borzoi-pytorch 0.5.1 hard-codes 4096); see
docs/models_borzoi.md. ``attention="rotary"`` is Flashzoi: the same trunk with rotary
grouped-query attention (:mod:`veff.models.rotary`).

Shape letters: B batch, L length, C channels, T transformer positions, P output bins.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.checkpoint import Checkpoint, unflatten
from veff.models.base import ModelHandle
from veff.models.borzoi_attention import attention as _attention
from veff.models.borzoi_attention import central_mask_basis  # noqa: F401 - re-exported
from veff.models.borzoi_config import (  # noqa: F401 - re-exported
    BorzoiConfig,
    BorzoiConfigError,
    res_tower_filters,
)

ARCH = "borzoi"
BN_EPS = 1e-3  # Keras BatchNormalization default; borzoi-pytorch sets eps=0.001
LN_EPS = 1e-3  # Keras LayerNormalization default (Flax's default would be 1e-6)


# ----------------------------------------------------------------------------- params
def param_shapes(cfg: BorzoiConfig, heads: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Nested dict of ``jax.ShapeDtypeStruct`` (float32) of every parameter.

    ``heads`` limits the head subtrees (default: every head in the config).
    """
    f32 = jnp.float32

    def s(*shape: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(tuple(int(d) for d in shape), f32)

    def bn(c: int) -> dict[str, Any]:
        return {"scale": s(c), "bias": s(c), "mean": s(c), "var": s(c)}

    def ln(c: int) -> dict[str, Any]:
        return {"scale": s(c), "bias": s(c)}

    def dense(i: int, o: int) -> dict[str, Any]:
        return {"kernel": s(i, o), "bias": s(o)}

    D, H, K, V, F = cfg.dim, cfg.num_heads, cfg.key_size, cfg.value_size, cfg.num_position_features
    p: dict[str, Any] = {"conv_dna": {"kernel": s(cfg.conv_dna_kernel, 4, cfg.conv_dna_filters),
                                      "bias": s(cfg.conv_dna_filters)}}
    cin, tower = cfg.conv_dna_filters, {}
    for i, c in enumerate(cfg.res_filters):
        tower[str(i)] = {"norm": bn(cin), "conv": {"kernel": s(cfg.res_kernel, cin, c),
                                                   "bias": s(c)}}
        cin = c
    p["res_tower"] = tower
    if cfg.attention == "rotary":
        Q = (H + 2 * cfg.num_kv_heads) * K
        attn = {"qkv_kernel": s(D, Q), "qkv_bias": s(Q), "out_kernel": s(H * V, D),
                "out_bias": s(D)}
    else:
        attn = {"q_kernel": s(D, H * K), "k_kernel": s(D, H * K), "v_kernel": s(D, H * V),
                "rel_k_kernel": s(F, H * K), "r_w_bias": s(H, K), "r_r_bias": s(H, K),
                "out_kernel": s(H * V, D), "out_bias": s(D)}
    p["transformer"] = {
        str(i): {
            "attn_norm": ln(D),
            "attn": attn,
            "ffn_norm": ln(D),
            "ffn": {"in_kernel": s(D, cfg.ffn_dim), "in_bias": s(cfg.ffn_dim),
                    "out_kernel": s(cfg.ffn_dim, D), "out_bias": s(D)},
        }
        for i in range(cfg.num_layers)
    }
    unet = {}
    for j in range(cfg.num_unet):
        cs = cfg.res_filters[-1 - j]
        u: dict[str, Any] = {"up_norm": bn(D), "skip_norm": bn(cs), "skip_dense": dense(cs, D),
                             "sep": {"depthwise": s(cfg.unet_kernel, D), "pointwise": s(D, D),
                                     "bias": s(D)}}
        if cfg.unet_upsample_conv:
            u["up_dense"] = dense(D, D)
        unet[str(j)] = u
    p["unet"] = unet
    cf = D
    if cfg.final_filters is not None:
        p["final"] = {"norm": bn(D), "conv": dense(D, cfg.final_filters)}
        cf = cfg.final_filters
    names = cfg.head_names if heads is None else heads
    p["heads"] = {n: dense(cf, cfg.num_tracks(n)) for n in names}
    return p


def init_params(cfg: BorzoiConfig, key: jax.Array, heads: tuple[str, ...] | None = None,
                ) -> dict[str, Any]:
    """Random params of the right shapes (tests; BN variances positive, no zero blocks)."""
    shapes = param_shapes(cfg, heads)
    leaves, treedef = jax.tree.flatten_with_path(shapes)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, sd), k in zip(leaves, keys):
        name = str(path[-1].key)
        if name == "var":
            out.append(jax.random.uniform(k, sd.shape, minval=0.5, maxval=2.0))
        elif name == "scale":
            out.append(jax.random.uniform(k, sd.shape, minval=0.5, maxval=1.5))
        elif len(sd.shape) == 1 or name.startswith("r_"):
            out.append(0.1 * jax.random.normal(k, sd.shape))
        else:
            fan_in = int(np.prod(sd.shape[:-1])) if name != "depthwise" else sd.shape[0]
            out.append(jax.random.normal(k, sd.shape) / np.sqrt(fan_in))
    return jax.tree.unflatten(treedef, [jnp.asarray(o, jnp.float32) for o in out])


# ----------------------------------------------------------------------------- layers
def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


def _batch_norm(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    # inference mode: running statistics only (momentum is irrelevant here)
    inv = p["scale"] * lax.rsqrt(p["var"] + BN_EPS)
    return (x - p["mean"]) * inv + p["bias"]


def _layer_norm(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + LN_EPS) * p["scale"] + p["bias"]


def _conv(x: jax.Array, kernel: jax.Array, precision, groups: int = 1) -> jax.Array:
    """'same' 1-D convolution, (B, L, Cin) x (K, Cin/groups, Cout) -> (B, L, Cout)."""
    k = kernel.shape[0]
    return lax.conv_general_dilated(
        x, kernel, window_strides=(1,), padding=[((k - 1) // 2, (k - 1) // 2)],
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=groups,
        precision=precision)


def _dense(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
    return jnp.einsum("...i,io->...o", x, kernel, precision=precision)


def _max_pool2(x: jax.Array) -> jax.Array:
    # Max of the two members of each pair taken as two strided views, not as a reduction
    # over a size-2 axis: XLA's CPU backend runs the latter several times slower.
    B, L, C = x.shape
    x = x.reshape(B, L // 2, 2, C)
    return jnp.maximum(x[:, :, 0], x[:, :, 1])


def _depthwise_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'same' depthwise 1-D convolution (B, L, C) x (K, C) -> (B, L, C) as a sum of K
    shifted, scaled copies: XLA's CPU grouped convolution (feature_group_count = C) is far
    slower than these K fused multiply-adds."""
    k = kernel.shape[0]
    L = x.shape[1]
    xp = jnp.pad(x, ((0, 0), ((k - 1) // 2, (k - 1) // 2), (0, 0)))
    out = xp[:, 0:L] * kernel[0]
    for i in range(1, k):
        out = out + xp[:, i : i + L] * kernel[i]
    return out


def _transformer_layer(cfg: BorzoiConfig, p: dict[str, Any], x: jax.Array, precision,
                       ) -> jax.Array:
    x = x + _attention(cfg, p["attn"], _layer_norm(x, p["attn_norm"]), precision)
    h = _layer_norm(x, p["ffn_norm"])
    h = jax.nn.relu(_dense(h, p["ffn"]["in_kernel"], precision) + p["ffn"]["in_bias"])
    return x + _dense(h, p["ffn"]["out_kernel"], precision) + p["ffn"]["out_bias"]


def _unet_stage(cfg: BorzoiConfig, p: dict[str, Any], x: jax.Array, skip: jax.Array,
                precision) -> jax.Array:
    up = _gelu(_batch_norm(x, p["up_norm"]))
    if cfg.unet_upsample_conv:
        up = _dense(up, p["up_dense"]["kernel"], precision) + p["up_dense"]["bias"]
    up = jnp.repeat(up, 2, axis=1)  # nearest-neighbour upsampling (Keras UpSampling1D)
    s = _gelu(_batch_norm(skip, p["skip_norm"]))
    s = _dense(s, p["skip_dense"]["kernel"], precision) + p["skip_dense"]["bias"]
    h = up + s
    h = _depthwise_same(h, p["sep"]["depthwise"])
    return _dense(h, p["sep"]["pointwise"], precision) + p["sep"]["bias"]


# ----------------------------------------------------------------------------- forward
def conv_dna(cfg: BorzoiConfig, params: Any, x: jax.Array, *, precision=None) -> jax.Array:
    """(B, L, 4) -> (B, L/2, C0): stem conv + bias, then pool."""
    h = _conv(x.astype(params["conv_dna"]["kernel"].dtype), params["conv_dna"]["kernel"],
              precision) + params["conv_dna"]["bias"]
    return _max_pool2(h)


def res_block(cfg: BorzoiConfig, params: Any, i: int, h: jax.Array, *, precision=None,
              ) -> jax.Array:
    """Res-tower block i WITHOUT its pool: BN -> GELU -> conv (+bias); this is repr_i."""
    p = params["res_tower"][str(i)]
    return _conv(_gelu(_batch_norm(h, p["norm"])), p["conv"]["kernel"], precision) \
        + p["conv"]["bias"]


def trunk(cfg: BorzoiConfig, params: Any, x: jax.Array, *, precision=None,
          intermediates: dict[str, jax.Array] | None = None,
          ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Convolutional part: (B, L, 4) -> (transformer input (B, T, D), skips).

    ``skips[j]`` is the (un-pooled) output of res block R-1-j, the input of U-net stage j.
    """
    h = conv_dna(cfg, params, x, precision=precision)
    if intermediates is not None:
        intermediates["conv_dna"] = h
    reprs = []
    for i in range(len(cfg.res_filters)):
        r = res_block(cfg, params, i, h, precision=precision)
        reprs.append(r)
        if intermediates is not None:
            intermediates[f"res_tower/{i}"] = r
        h = _max_pool2(r)
    skips = tuple(reprs[-1 - j] for j in range(cfg.num_unet))
    return h, skips


def head_from_trunk(cfg: BorzoiConfig, params: Any, h: jax.Array,
                    skips: tuple[jax.Array, ...], *, head: str | None = None, precision=None,
                    intermediates: dict[str, jax.Array] | None = None) -> jax.Array:
    """Transformer, U-net, crop, final conv and head: -> tracks (B, P, T)."""
    head = head or cfg.head_names[0]
    if intermediates is not None:
        intermediates["transformer_in"] = h
    for i in range(cfg.num_layers):
        h = _transformer_layer(cfg, params["transformer"][str(i)], h, precision)
        if intermediates is not None:
            intermediates[f"transformer/{i}"] = h
    for j in range(cfg.num_unet):
        h = _unet_stage(cfg, params["unet"][str(j)], h, skips[j], precision)
        if intermediates is not None:
            intermediates[f"unet/{j}"] = h
    c = cfg.crop_bins
    if c:
        h = h[:, c:-c]
    if intermediates is not None:
        intermediates["crop"] = h
    if cfg.final_filters is not None:
        p = params["final"]
        h = _dense(_gelu(_batch_norm(h, p["norm"])), p["conv"]["kernel"], precision) \
            + p["conv"]["bias"]
    h = _gelu(h)  # baskerville's trunk activation, applied after every trunk block
    if intermediates is not None:
        intermediates["final"] = h
    p = params["heads"][head]
    return jax.nn.softplus(_dense(h, p["kernel"], precision) + p["bias"])


def apply(cfg: BorzoiConfig, params: Any, x: jax.Array, *, head: str | None = None,
          precision=None, return_intermediates: bool = False) -> dict[str, Any]:
    """(B, L, 4) one-hot -> {"tracks": (B, P, T)} (+ "intermediates" when asked).

    Pure in (params, x) for fixed keyword arguments: wrap with functools.partial, then
    jax.jit / jax.vmap it.
    """
    if x.ndim != 3 or x.shape[1] != cfg.window_len or x.shape[2] != 4:
        raise ValueError(f"Borzoi expects (B, {cfg.window_len}, 4) one-hot, got {x.shape}")
    inter: dict[str, jax.Array] | None = {} if return_intermediates else None
    h, skips = trunk(cfg, params, x, precision=precision, intermediates=inter)
    tracks = head_from_trunk(cfg, params, h, skips, head=head, precision=precision,
                             intermediates=inter)
    out: dict[str, Any] = {"tracks": tracks}
    if return_intermediates:
        out["intermediates"] = inter
    return out


# ----------------------------------------------------------------------------- handle
def config_from_checkpoint(ckpt: Checkpoint) -> BorzoiConfig:
    try:
        return BorzoiConfig.from_dict(ckpt.config)
    except (TypeError, BorzoiConfigError) as e:
        from veff.checkpoint import CheckpointError

        raise CheckpointError(f"{ckpt.path}: invalid Borzoi config ({e})") from None


def from_checkpoint(ckpt: Checkpoint, *, head: str | None = None,
                    window_len: int | None = None,
                    precision=lax.Precision.HIGHEST) -> ModelHandle:
    """Native "borzoi" checkpoint -> ModelHandle (kind "binned", {"tracks": (B, P, T)}).

    ``head`` picks the output head (default: the config's first, "human" for Borzoi);
    ``window_len`` runs the model on another valid window length (the crop per side is
    kept; positional features follow the config's ``position_basis_length``).
    """
    from veff.checkpoint import CheckpointError
    from veff.convert.common import match_params
    from veff.models import borzoi_incremental

    if ckpt.arch != ARCH:
        raise CheckpointError(f"{ckpt.path}: arch {ckpt.arch!r} is not {ARCH!r}")
    cfg = config_from_checkpoint(ckpt)
    if window_len is not None:
        try:
            cfg = dataclasses.replace(cfg, window_len=int(window_len))
        except BorzoiConfigError as e:
            raise CheckpointError(f"{ckpt.path}: {e}") from None
    head = head or cfg.head_names[0]
    if head not in cfg.head_names:
        raise CheckpointError(f"{ckpt.path}: no head {head!r}; heads: {', '.join(cfg.head_names)}")
    tree = unflatten(ckpt.params)
    present = tuple(n for n in cfg.head_names if n in tree.get("heads", {}))
    params, num_folds = match_params(param_shapes(cfg, present), tree, source=str(ckpt.path),
                                     error=CheckpointError)
    if head not in present:
        raise CheckpointError(f"{ckpt.path}: head {head!r} has no weights in this checkpoint")
    # keep only the chosen head on the device
    params = {**{k: v for k, v in params.items() if k != "heads"},
              "heads": {head: params["heads"][head]}}
    params = jax.tree.map(jnp.asarray, params)
    fn = functools.partial(apply, cfg, head=head, precision=precision)
    # exact incremental ALT for substitutions (the engine's pair step)
    pair = functools.partial(borzoi_incremental.forward_pair, cfg, head=head,
                             precision=precision)

    def apply_fn(p, x):
        return fn(p, x)

    n = cfg.num_tracks(head)
    # ckpt.tracks describe the default (first) head; other heads may list theirs in
    # metadata["head_tracks"]; without either, tracks are numbered.
    if head == cfg.head_names[0]:
        tracks = list(ckpt.tracks)
    else:
        tracks = list((ckpt.metadata.get("head_tracks") or {}).get(head) or [])
    if tracks and len(tracks) != n:
        raise CheckpointError(f"{ckpt.path}: {len(tracks)} track descriptions for head "
                              f"{head!r}, which has {n} outputs")
    tracks = tracks or [{"name": f"{head}_{i}"} for i in range(n)]
    name = ckpt.metadata.get("name") or (ckpt.path.name if ckpt.path else ARCH)
    return ModelHandle(
        name=name, arch=ARCH, kind="binned", window_len=cfg.window_len,
        output_len=cfg.output_len, tracks=tracks, sha256=ckpt.sha256, params=params,
        apply=apply_fn, num_folds=num_folds, bin_size=cfg.bin_size, apply_pair=pair,
    )
