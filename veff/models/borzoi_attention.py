"""Borzoi's transformer attention: baskerville's relative-position MHA (central-mask basis)
or, for ``cfg.attention == "rotary"``, Flashzoi's rotary grouped-query attention."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from veff.models import attention as attn_lib
from veff.models import rotary
from veff.models.borzoi_config import BorzoiConfig


def _dense(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
    return jnp.einsum("...i,io->...o", x, kernel, precision=precision)


def central_mask_basis(seq_len: int, num_features: int, basis_len: int | None = None,
                       ) -> jax.Array:
    """(2T-1, F) float32 relative-position features for distances -(T-1)..T-1: Borzoi's
    central masks (widths in float32, as baskerville computes them) and their signed copies.
    ``basis_len`` is baskerville's ``seqlen_train`` (default: ``seq_len``)."""
    return attn_lib.positional_basis(
        seq_len, num_features, [attn_lib.central_mask_geometric_basis], basis_seq_len=basis_len)


def attention(cfg: BorzoiConfig, p: dict[str, jax.Array], x: jax.Array, precision,
              ) -> jax.Array:
    """One transformer layer's attention on the LayerNorm'd input (B, T, D) -> (B, T, D)."""
    if cfg.attention == "rotary":  # Flashzoi
        return rotary.rotary_mha(p, x, num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads,
                                 rotary_dim=cfg.rotary_dim, base=cfg.rotary_base,
                                 precision=precision)
    # Same relative-position MHA as Enformer's (attention.relative_attention_core), with a
    # central-mask-only basis and baskerville's parameter names.
    B, T, _ = x.shape
    H, K, V = cfg.num_heads, cfg.key_size, cfg.value_size

    def heads(y: jax.Array, d: int) -> jax.Array:  # (B, T, H*d) -> (H, B, T, d)
        return y.reshape(B, T, H, d).transpose(2, 0, 1, 3)

    q = heads(_dense(x, p["q_kernel"], precision), K) * (K**-0.5)
    k = heads(_dense(x, p["k_kernel"], precision), K)
    v = heads(_dense(x, p["v_kernel"], precision), V)
    basis = jnp.asarray(central_mask_basis(T, cfg.num_position_features,
                                           cfg.position_basis_length), x.dtype)
    rel_k = _dense(basis, p["rel_k_kernel"], precision).reshape(2 * T - 1, H, K)
    out = attn_lib.relative_attention_core(
        q + p["r_w_bias"][:, None, None, :], q + p["r_r_bias"][:, None, None, :], k, v,
        rel_k.transpose(1, 0, 2), precision=precision)
    out = out.transpose(1, 2, 0, 3).reshape(B, T, H * V)
    return _dense(out, p["out_kernel"], precision) + p["out_bias"]
