"""AlphaGenome (Avsec et al. 2025) as pure functions over a params dict, numerically
following google-deepmind/alphagenome_research (Haiku) and its PyTorch port
alphagenome-pytorch 0.3.1 (the parity reference, tests/models/test_alphagenome_parity.py).

Layout is channels-last (B, L, C); input is one-hot (B, window_len, 4) in A, C, G, T order.

    encoder   conv k15 (4 -> C0) ; x + ConvBlock k5            -> skip bin 1 ; maxpool 2
              6 × [DownResBlock (C -> C + step)]               -> skip bins 2..64 ; maxpool 2
    trunk     + organism embedding
    tower     depth × [pair update (even blocks) ; x + MHA(x, bias(pair)) ; x + MLP(x)]
    decoder   7 × UpResBlock with the encoder's skips (128 bp -> 1 bp)
    embed     128 bp: GELU(RMSBN(Linear(trunk)) + org) ; 1 bp: GELU(RMSBN(Linear(dec) +
              up128(Linear(emb128))) + org)
    heads     softplus(Linear_org(emb)) · softplus(scale_org), then back to data scale

ConvBlock = RMSBatchNorm -> GELU (sigmoid(1.702 x)·x) -> conv; k>1 convs are weight-
standardised. RMSBatchNorm is ``x · scale/sqrt(var + 1e-5) + offset`` (no centring).
MHA: 8 query heads of 128 and one shared key (128) and value (192), each LayerNorm'd,
rotary positions on q and k, logits/sqrt(128) plus the pair bias, tanh soft cap at 5.

Left out: splice-site, splice-usage and splice-junction heads, the contact-map head and
the pair output embedding (they take no part in the track outputs).
Param names mirror alphagenome-pytorch's state dict (``encoder/down_blocks/0/block1``...).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.checkpoint import Checkpoint, CheckpointError, unflatten
from veff.models.alphagenome_config import TOKEN_BIN, AlphaGenomeConfig, param_shapes  # noqa: F401
from veff.models.base import ModelHandle

ARCH = "alphagenome"
EPS = 1e-5
SOFT_CLIP = 10.0
SOFT_CAP = 5.0


# --------------------------------------------------------------------------- params


def _is_shape(node: Any) -> bool:
    return isinstance(node, tuple)


def init(cfg: AlphaGenomeConfig, key: jax.Array) -> dict[str, Any]:
    """Random params with O(1) activations (kernels ~ N(0, 1/fan_in), norm scales and
    running variances ~ U(0.5, 1.5), track means ~ U(0.5, 2), other leaves ~ N(0, 0.1²)).
    For tests; through ``jax.eval_shape`` also the tree converted weights must fill."""
    shapes = param_shapes(cfg)
    flat = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=_is_shape)[0]
    treedef = jax.tree.structure(shapes, is_leaf=_is_shape)
    keys = jax.random.split(key, len(flat))
    out = []
    for (path, shape), k in zip(flat, keys):
        leaf = path[-1].key
        parent = path[-2].key if len(path) > 1 else ""
        if leaf == "kernel":
            # (K, in, out) convs: K·in; heads' (organism, in, out): in
            fan_in = shape[-2] * (shape[0] if path[0].key != "heads" and len(shape) == 3 else 1)
            v = jax.random.normal(k, shape) / np.sqrt(fan_in)
        elif leaf in ("scale", "var", "wscale", "residual_scale") or parent == "residual_scales":
            v = jax.random.uniform(k, shape, minval=0.5, maxval=1.5)
        elif leaf == "track_means":
            v = jax.random.uniform(k, shape, minval=0.5, maxval=2.0)
        else:
            v = 0.1 * jax.random.normal(k, shape)
        out.append(v.astype(jnp.float32))
    return jax.tree.unflatten(treedef, out)


def abstract_params(cfg: AlphaGenomeConfig) -> Any:
    return jax.eval_shape(lambda k: init(cfg, k), jax.random.key(0))


# --------------------------------------------------------------------------- layers


def gelu(x):
    """Conv-path GELU: sigmoid(1.702 x) · x."""
    return jax.nn.sigmoid(1.702 * x) * x


def _pair_gelu(cfg: AlphaGenomeConfig, x):
    return jax.nn.gelu(x, approximate=cfg.pair_gelu == "tanh")


def rms_bn(x, p):
    return x * (p["scale"] * lax.rsqrt(p["var"] + EPS)) + p["offset"]


def layer_norm(x, p, *, rms: bool = False):
    if not rms:
        x = x - jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * (p["scale"] * lax.rsqrt(var + EPS)) + p["offset"]


def linear(x, p, precision=None):
    y = jnp.matmul(x, p["kernel"], precision=precision)
    return y + p["bias"] if "bias" in p else y


def standardized_kernel(p) -> jax.Array:
    """Weight standardisation per output channel over (width, in), times a learned scale."""
    w = p["kernel"]
    mean = jnp.mean(w, axis=(0, 1), keepdims=True)
    var = jnp.mean(jnp.square(w - mean), axis=(0, 1), keepdims=True)
    fan_in = w.shape[0] * w.shape[1]
    return (w - mean) * lax.rsqrt(jnp.maximum(var * fan_in, 1e-4)) * p["wscale"]


def conv_block(x, p, precision=None):
    h = gelu(rms_bn(x, p["norm"]))
    c = p["conv"]
    if "wscale" not in c:
        return linear(h, c, precision)
    w = standardized_kernel(c)
    k = w.shape[0]
    y = lax.conv_general_dilated(h, w, (1,), [((k - 1) // 2, k - 1 - (k - 1) // 2)],
                                 dimension_numbers=("NWC", "WIO", "NWC"), precision=precision)
    return y + c["bias"]


def _pool(x, by: int, reduce: str):
    b, n, c = x.shape
    x = x.reshape(b, n // by, by, c)
    return x.max(axis=2) if reduce == "max" else x.mean(axis=2)


def down_res_block(x, p, precision=None):
    out = conv_block(x, p["block1"], precision)
    out = out + jnp.pad(x, ((0, 0), (0, 0), (0, out.shape[-1] - x.shape[-1])))
    return out + conv_block(out, p["block2"], precision)


def up_res_block(x, skip, p, precision=None):
    out = conv_block(x, p["conv_in"], precision) + x[..., : skip.shape[-1]]
    out = jnp.repeat(out, 2, axis=1) * p["residual_scale"]
    out = out + conv_block(skip, p["pointwise"], precision)
    return out + conv_block(out, p["conv_out"], precision)


def _geomspace(start: float, stop: float, num: int, endpoint: bool) -> np.ndarray:
    return np.geomspace(start, stop, num + (0 if endpoint else 1), dtype=np.float64)[:num]


def rope(x, max_position: int):
    """Rotary embedding over (B, S, H, C); angles in float64 on the host (exact for every
    position), rotation in the input dtype."""
    s, c = x.shape[1], x.shape[-1]
    nf = c // 2
    inv = 1.0 / (np.arange(nf) + _geomspace(1, max_position - nf + 1, nf, True))
    theta = np.repeat(np.arange(s)[:, None] * inv[None, :], 2, axis=-1)[None, :, None, :]
    rot = jnp.stack([-x[..., 1::2], x[..., ::2]], axis=-1).reshape(x.shape)
    return (x * jnp.asarray(np.cos(theta), x.dtype)
            + rot * jnp.asarray(np.sin(theta), x.dtype))


def central_mask_features(distances: np.ndarray, size: int, seq_length: int) -> np.ndarray:
    widths = np.arange(size) + _geomspace(1, seq_length - size + 1, size, False)
    return (widths > distances[..., None]).astype(np.float32)


def _shift(x, n: int):
    """(..., n, 2n) scores per relative offset -> (..., n, n) scores per key."""
    *batch, rows, diags = x.shape
    x = x.reshape(*batch, diags, rows)[..., 1:, :]
    return x.reshape(*batch, rows, diags - 1)[..., :n]


def seq_to_pair(cfg, x, p, precision=None):
    x = layer_norm(_pool(x, cfg.pair_pool, "mean"), p["norm_seq2pair"], rms=True)
    b, n, _ = x.shape
    ph, pc = cfg.pair_heads, cfg.pair_head_dim
    q = linear(x, p["linear_q"], precision).reshape(b, n, ph, pc)
    k = linear(x, p["linear_k"], precision).reshape(b, n, ph, pc)
    rel = np.arange(-n, n, dtype=np.float64)
    feat = central_mask_features(np.abs(rel), ph, cfg.max_rel // cfg.pair_pool)
    feat = np.concatenate([feat, np.sign(rel)[:, None].astype(np.float32) * feat], axis=-1)
    pos = linear(jnp.asarray(feat), p["linear_pos_features"], precision).reshape(2 * n, ph, pc)
    rq = _shift(jnp.einsum("bqhc,phc->bhqp", q + p["q_r_bias"], pos, precision=precision), n)
    rk = _shift(jnp.einsum("bkhc,phc->bhkp", k + p["k_r_bias"], pos, precision=precision), n)
    a = jnp.einsum("bqhc,bkhc->bqkh", q, k, precision=precision)
    a = a + 0.5 * (rq.transpose(0, 2, 3, 1) + rk.transpose(0, 3, 2, 1))
    g = _pair_gelu(cfg, x)
    y_q = linear(g, p["linear_y_q"], precision)
    y_k = linear(g, p["linear_y_k"], precision)
    return linear(a, p["linear_pair"], precision) + y_q[:, :, None, :] + y_k[:, None, :, :]


def row_attention(x, p, precision=None):
    h = layer_norm(x, p["norm"], rms=True)
    q, k, v = (linear(h, p[n], precision) for n in ("linear_q", "linear_k", "linear_v"))
    logits = jnp.einsum("bpqf,bpkf->bpqk", q, k, precision=precision) / math.sqrt(q.shape[-1])
    w = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bpqk,bpkf->bpqf", w, v, precision=precision)


def pair_update(cfg, x, pair, p, precision=None):
    y = seq_to_pair(cfg, x, p["seq2pair"], precision)
    pair = y if pair is None else pair + y
    pair = pair + row_attention(pair, p["row_attn"], precision)
    m = p["pair_mlp"]
    h = jax.nn.relu(linear(layer_norm(pair, m["norm"], rms=True), m["linear1"], precision))
    return pair + linear(h, m["linear2"], precision)


def attention_bias(cfg, pair, p, precision=None):
    """(B, s, s, F) -> (B, H, s, s); each entry covers pair_pool × pair_pool token pairs."""
    h = linear(_pair_gelu(cfg, rms_bn(pair, p["norm"])), p["proj"], precision)
    return h.transpose(0, 3, 1, 2)


def mha(cfg, x, bias, p, precision=None):
    b, s, _ = x.shape
    h = rms_bn(x, p["norm"])
    q = layer_norm(linear(h, p["q_proj"], precision).reshape(b, s, cfg.q_heads, cfg.qk_dim), p["norm_q"])
    k = layer_norm(linear(h, p["k_proj"], precision), p["norm_k"])
    v = layer_norm(linear(h, p["v_proj"], precision), p["norm_v"])
    q = rope(q, cfg.max_rel)
    k = rope(k[:, :, None, :], cfg.max_rel)[:, :, 0, :]
    logits = jnp.einsum("bshc,btc->bhst", q, k, precision=precision) / math.sqrt(cfg.qk_dim)
    n, r = s // cfg.pair_pool, cfg.pair_pool
    logits = (logits.reshape(b, cfg.q_heads, n, r, n, r)
              + bias[:, :, :, None, :, None]).reshape(b, cfg.q_heads, s, s)
    logits = jnp.tanh(logits / SOFT_CAP) * SOFT_CAP
    w = jax.nn.softmax(logits, axis=-1)
    y = jnp.einsum("bhst,btc->bshc", w, v, precision=precision).reshape(b, s, -1)
    return rms_bn(linear(y, p["linear_embedding"], precision), p["final_norm"])


def mlp(x, p, precision=None):
    h = jax.nn.relu(linear(rms_bn(x, p["norm"]), p["fc1"], precision))
    return rms_bn(linear(h, p["fc2"], precision), p["final_norm"])


def head_tracks(x, p, res: int, organism: int, squash: bool, precision=None):
    """Organism-specific linear head, softplus-scaled, then back to data scale."""
    c = p["convs"][str(res)]
    y = jnp.matmul(x, c["kernel"][organism], precision=precision) + c["bias"][organism]
    y = jax.nn.softplus(y) * jax.nn.softplus(p["residual_scales"][str(res)][organism])
    y = jnp.where(y > SOFT_CLIP, (y + SOFT_CLIP) ** 2 / (4 * SOFT_CLIP), y)
    if squash:
        y = y ** (1.0 / 0.75)
    return y * (p["track_means"][organism] * res)


# --------------------------------------------------------------------------- forward


def apply(params, x, *, config: AlphaGenomeConfig, precision=None,
          return_intermediates: bool = False, resolutions: tuple[int, ...] | None = None):
    """(B, window_len, 4) -> {"tracks": (B, output_len, T)}: config.output_heads at
    config.resolution for config.organism. With ``return_intermediates``: "encoder/bin_{b}",
    "trunk", "tower/{i}", "pair/{i}", "emb_128", "emb_1", "decoder" and "heads/{name}/{res}"
    for every head and resolution in ``resolutions`` (default: all)."""
    cfg = config
    if x.ndim != 3 or x.shape[1] != cfg.window_len or x.shape[2] != 4:
        raise ValueError(f"AlphaGenome expects (B, {cfg.window_len}, 4) input, got {x.shape}")
    P, org = params, cfg.organism
    inter: dict[str, jax.Array] = {}
    x = x.astype(jnp.float32)
    e = P["encoder"]["dna_embedder"]
    k = e["conv1"]["kernel"].shape[0]
    h = lax.conv_general_dilated(x, e["conv1"]["kernel"], (1,), [((k - 1) // 2, k - 1 - (k - 1) // 2)],
                                 dimension_numbers=("NWC", "WIO", "NWC"), precision=precision)
    h = h + e["conv1"]["bias"]
    h = h + conv_block(h, e["block"], precision)
    skips = [h]
    h = _pool(h, 2, "max")
    for i in range(cfg.num_down):
        h = down_res_block(h, P["encoder"]["down_blocks"][str(i)], precision)
        skips.append(h)
        h = _pool(h, 2, "max")
    for i, s in enumerate(skips):
        inter[f"encoder/bin_{2 ** i}"] = s
    h = h + P["organism_embed"]["embedding"][org]
    inter["trunk"] = h
    pair = None
    for i in range(cfg.depth):
        p = P["tower"]["blocks"][str(i)]
        if "pair_update" in p:
            pair = pair_update(cfg, h, pair, p["pair_update"], precision)
        h = h + mha(cfg, h, attention_bias(cfg, pair, p["attn_bias"], precision), p["mha"], precision)
        h = h + mlp(h, p["mlp"], precision)
        inter[f"tower/{i}"], inter[f"pair/{i}"] = h, pair
    e128 = P["embedder_128bp"]
    emb = {TOKEN_BIN: gelu(rms_bn(linear(h, e128["project_in"], precision), e128["norm"])
                           + e128["organism_embed"]["embedding"][org])}
    want = resolutions or ((1, TOKEN_BIN) if return_intermediates else (cfg.resolution,))
    if 1 in want:
        d = h
        for i, skip in enumerate(skips[::-1]):
            d = up_res_block(d, skip, P["decoder"]["up_blocks"][str(i)], precision)
        inter["decoder"] = d
        e1 = P["embedder_1bp"]
        y = linear(d, e1["project_in"], precision)
        y = y + jnp.repeat(linear(emb[TOKEN_BIN], e1["project_skip"], precision), TOKEN_BIN, axis=1)
        emb[1] = gelu(rms_bn(y, e1["norm"]) + e1["organism_embed"]["embedding"][org])
        inter["emb_1"] = emb[1]
    inter["emb_128"] = emb[TOKEN_BIN]
    heads = cfg.head_dict
    names = [n for n, *_ in cfg.heads] if return_intermediates else list(cfg.output_heads)
    for name in names:
        for res in heads[name][2]:
            if res in want:
                inter[f"heads/{name}/{res}"] = head_tracks(
                    emb[res], P["heads"][name], res, org, heads[name][3], precision)
    tracks = jnp.concatenate([inter[f"heads/{n}/{cfg.resolution}"] for n in cfg.output_heads],
                             axis=-1)
    return {"tracks": tracks, **(inter if return_intermediates else {})}


# --------------------------------------------------------------------------- checkpoints


def config_from_checkpoint(ckpt: Checkpoint) -> AlphaGenomeConfig:
    if ckpt.arch != ARCH:
        raise CheckpointError(f"{ckpt.path}: arch {ckpt.arch!r} is not {ARCH!r}")
    try:
        return AlphaGenomeConfig.from_dict(ckpt.config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: invalid alphagenome config ({e})") from None


def from_checkpoint(ckpt: Checkpoint, *, precision=lax.Precision.HIGHEST) -> ModelHandle:
    """The engine's handle for an "alphagenome" checkpoint: kind "binned" at the config's
    resolution (1 or 128 bp), ``apply`` returning the selected heads' tracks."""
    from veff.convert.common import match_params

    config = config_from_checkpoint(ckpt)
    params, num_folds = match_params(abstract_params(config), unflatten(ckpt.params),
                                     source=str(ckpt.path), error=CheckpointError)
    params = jax.tree.map(jnp.asarray, params)
    tracks = ckpt.tracks or [{"name": f"{n}_{i}"} for n in config.output_heads
                             for i in range(config.head_dict[n][1])]
    if len(tracks) != config.num_tracks:
        raise CheckpointError(f"{ckpt.path}: {len(tracks)} track names for the "
                              f"{config.num_tracks} tracks of {', '.join(config.output_heads)}")
    name = ckpt.metadata.get("name") or (ckpt.path.name if ckpt.path else ARCH)
    return ModelHandle(
        name=name, arch=ARCH, kind="binned", window_len=config.window_len,
        output_len=config.output_len, tracks=tracks, sha256=ckpt.sha256, params=params,
        apply=functools.partial(apply, config=config, precision=precision),
        num_folds=num_folds, bin_size=config.bin_size,
    )
