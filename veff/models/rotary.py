"""Rotary grouped-query attention (Flashzoi's transformer attention) as pure functions.

Flashzoi (borzoi-pytorch ``flashed=True``) replaces Borzoi's relative-position attention
with flash-attn's ``MHA``: one fused projection ``Wqkv`` (with bias) to H query heads and
``H_kv`` key/value heads of size ``d = width / H`` (laid out ``[q (H, d) | k (H_kv, d) |
v (H_kv, d)]``), rotary position embedding on the first ``r`` dims of every query and key
head, softmax attention with scale ``d**-0.5`` where query head h reads key/value head
``h // (H / H_kv)``, and an output projection with bias.

Rotary (GPT-NeoX layout, "rotate half", not interleaved): for position t and pair
i < r/2, ``theta = t * inv_freq[i]``, ``inv_freq[i] = 1 / base**(2i / r)``, and

    x'[i]       = x[i] cos(theta) - x[i + r/2] sin(theta)
    x'[i + r/2] = x[i + r/2] cos(theta) + x[i] sin(theta)

dims ``r..d-1`` pass unchanged. The tables follow flash-attn's float32 arithmetic:
``inv_freq`` in float32 (the correctly rounded float32 power, then a float32 reciprocal;
torch's float32 pow agrees except for one of Flashzoi's 64 frequencies, by one ulp),
positions times ``inv_freq`` rounded to float32 as ``torch.outer`` does, then cos/sin of
that float32 angle. Positions start at 0 for every window (no offset): the encoding depends
on the transformer length only through the positions it covers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.models import attention as attn_lib


def inverse_frequencies(rotary_dim: int, base: float) -> np.ndarray:
    """(rotary_dim / 2,) float32 ``1 / base**(2i / rotary_dim)`` as flash-attn rounds it."""
    exps = np.arange(0, rotary_dim, 2, dtype=np.float32) / np.float32(rotary_dim)
    return np.float32(1.0) / (float(base) ** exps.astype(np.float64)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _tables(seq_len: int, rotary_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    inv_freq = inverse_frequencies(rotary_dim, base)
    theta = np.outer(np.arange(seq_len, dtype=np.float32), inv_freq)  # float32 products
    cos = np.cos(theta.astype(np.float64)).astype(np.float32)
    sin = np.sin(theta.astype(np.float64)).astype(np.float32)
    cos.flags.writeable = sin.flags.writeable = False
    return cos, sin


def rotary_tables(seq_len: int, rotary_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin), each (seq_len, rotary_dim / 2) float32 (read-only, cached)."""
    if rotary_dim % 2 or rotary_dim < 2:
        raise ValueError(f"rotary_dim must be even and positive, got {rotary_dim}")
    return _tables(int(seq_len), int(rotary_dim), float(base))


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate the first ``2 * cos.shape[-1]`` dims of ``x`` (..., T, heads, d) by position
    (T); the rest pass through."""
    half = cos.shape[-1]
    c = cos[:, None, :].astype(x.dtype)
    s = sin[:, None, :].astype(x.dtype)
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s, rest], axis=-1)


def gqa_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, precision=None,
                  query_block: int | None = None) -> jax.Array:
    """Softmax attention, q (B, T, H, d), k and v (B, S, H_kv, d) -> (B, T, H, d); query
    head h uses key/value head ``h // (H / H_kv)`` (no copy of k/v: the query heads are
    grouped instead).

    Queries run in blocks of Q rows (as :func:`veff.models.attention.relative_attention_core`:
    ``attention.QUERY_BLOCK`` or the largest divisor of T below it) so a block's logits stay
    in cache; every row's logits, softmax and output are the same sums as unblocked.
    """
    B, T, H, d = q.shape
    kv = k.shape[2]
    g = H // kv
    qb = attn_lib._query_block(T) if query_block is None else query_block
    if T % qb:
        raise ValueError(f"query block {qb} does not divide the length {T}")
    nb = T // qb
    # batch dims lead: queries (kv, B, g, T, d), keys and values (kv, B, S, d); a block's
    # g query heads are stacked as g*Q rows of one GEMM per (kv, B), so neither product
    # transposes the logits
    qh = q.reshape(B, T, kv, g, d).transpose(2, 0, 3, 1, 4)
    kh = (k * jnp.asarray(scale, k.dtype)).transpose(2, 0, 1, 3)
    vh = v.transpose(2, 0, 1, 3)

    def block(qblk: jax.Array) -> jax.Array:  # (kv, B, g, Q, d) -> (kv, B, g, Q, d)
        q2 = qblk.reshape(kv, B, g * qblk.shape[3], d)
        logits = jnp.einsum("kbid,kbjd->kbij", q2, kh, precision=precision)
        w = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        return jnp.einsum("kbij,kbjd->kbid", w, vh, precision=precision).reshape(qblk.shape)

    if nb == 1:
        out = block(qh)[None]
    else:
        out = lax.map(block, qh.reshape(kv, B, g, nb, qb, d).transpose(3, 0, 1, 2, 4, 5))
    # (nb, kv, B, g, Q, d) -> (B, nb, Q, kv, g, d) = (B, T, H, d)
    return out.transpose(2, 0, 4, 1, 3, 5).reshape(B, T, H, d)


def rotary_mha(p: dict[str, jax.Array], x: jax.Array, *, num_heads: int, num_kv_heads: int,
               rotary_dim: int, base: float, precision=None) -> jax.Array:
    """Flashzoi's attention block, (B, T, D) -> (B, T, D). ``p``: ``qkv_kernel``
    (D, (H + 2 H_kv) d), ``qkv_bias``, ``out_kernel`` (H d, D), ``out_bias``."""
    B, T, D = x.shape
    H, kv = num_heads, num_kv_heads
    d = p["out_kernel"].shape[0] // H
    qkv = jnp.einsum("btc,co->bto", x, p["qkv_kernel"], precision=precision) + p["qkv_bias"]
    q = qkv[..., : H * d].reshape(B, T, H, d)
    k = qkv[..., H * d : (H + kv) * d].reshape(B, T, kv, d)
    v = qkv[..., (H + kv) * d :].reshape(B, T, kv, d)
    cos, sin = rotary_tables(T, rotary_dim, base)
    cos, sin = jnp.asarray(cos), jnp.asarray(sin)
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    out = gqa_attention(q, k, v, d**-0.5, precision).reshape(B, T, H * d)
    return jnp.einsum("bti,io->bto", out, p["out_kernel"], precision=precision) + p["out_bias"]
