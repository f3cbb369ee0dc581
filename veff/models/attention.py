"""Relative-position multi-head attention (Transformer-XL style, as in Enformer and Borzoi)
and the positional basis functions it is built from, as pure functions.

Positional features. For a transformer of length ``L`` the relative distances are
``d = -(L-1) .. L-1`` (2L-1 of them). A *basis function* maps the absolute distances to
``num_basis`` features; :func:`relative_positional_features` concatenates the basis
functions it is given and appends ``sign(d) *`` the same block, giving ``num_features =
2 * len(basis) * num_basis`` columns. Enformer uses (exponential, central mask, gamma);
Borzoi uses a geometric central mask only. Every basis function has the signature

    fn(abs_distances: np.ndarray (N,) float64, num_basis: int, seq_len: int) -> (N, num_basis)

and is evaluated on the host in float64 once per traced length (the features are static,
so they become constants of the jitted program). Computing in float64 matters for the gamma
basis: its log-normaliser is a difference of terms near 3e4 at 32 basis functions, where a
float32 ulp (2e-3) would show up as ~1e-3 relative noise in the features.

``seq_len`` is the length the basis is *defined* for; it is normally the transformer length
but a model may pin it (borzoi-pytorch builds its central mask for 4096 at every length).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BasisFn = Callable[[np.ndarray, int, int], np.ndarray]


# --------------------------------------------------------------------------- basis functions


def exponential_basis(
    abs_d: np.ndarray, num_basis: int, seq_len: int, *, min_half_life: float = 3.0
) -> np.ndarray:
    """exp(-ln2 · |d| / half_life) with half-lives 2**linspace(min_half_life, log2(seq_len))."""
    max_range = math.log(seq_len) / math.log(2.0)
    half_life = 2.0 ** np.linspace(min_half_life, max_range, num_basis)
    return np.exp(-math.log(2.0) / half_life[None, :] * abs_d[:, None])


def central_mask_basis(abs_d: np.ndarray, num_basis: int, seq_len: int) -> np.ndarray:
    """1 where |d| < 2**k - 1 (k = 1..num_basis), else 0 (Enformer; independent of seq_len)."""
    del seq_len
    widths = 2.0 ** np.arange(1, num_basis + 1) - 1.0
    return (widths[None, :] > abs_d[:, None]).astype(np.float64)


def central_mask_geometric_basis(abs_d: np.ndarray, num_basis: int, seq_len: int) -> np.ndarray:
    """1 where |d| < r**k - 1 with r = (seq_len + 1)**(1/num_basis) (Borzoi / baskerville).

    The widths are rounded to float32 before the comparison, as borzoi-pytorch compares
    them (only a width within a float32 ulp of an integer could tell the difference).
    """
    rate = np.float32(math.exp(math.log(seq_len + 1) / num_basis))
    widths = np.power(rate, np.arange(1, num_basis + 1, dtype=np.float32)) - np.float32(1.0)
    return (widths.astype(np.float64)[None, :] > abs_d[:, None]).astype(np.float64)


GammaNorm = Literal["position", "feature"]


def _torch_linspace_f32(start: float, end: float, n: int) -> np.ndarray:
    """torch.linspace in float32, bit for bit: the first half counts up from ``start``,
    the second half down from ``end``."""
    f32 = np.float32
    step = (f32(end) - f32(start)) / f32(max(n - 1, 1))
    i = np.arange(n)
    up = f32(start) + step * i.astype(f32)
    down = f32(end) - step * (n - 1 - i).astype(f32)
    return np.where(i < n // 2, up, down).astype(f32)


def gamma_basis(
    abs_d: np.ndarray,
    num_basis: int,
    seq_len: int,
    *,
    normalise: GammaNorm = "position",
    eps: float = 1e-8,
    float32_like_torch: bool = False,
) -> np.ndarray:
    """Gamma pdfs with means linspace(seq_len/num_basis, seq_len), sd seq_len/(2·num_basis),
    plus ``eps``, each divided by a maximum.

    ``normalise="position"``: every feature is divided by its own maximum over distances.
    This is what DeepMind's TF Enformer computes (``reduce_max(..., axis=1)`` over a
    ``[1, 2L-1]`` position row) and what the released weights were trained with.
    ``normalise="feature"``: every distance's row is divided by its maximum over the
    features; enformer-pytorch's ``use_tf_gamma=False`` path does this (its
    ``amax(dim=-1)`` runs over features because its positions are 1-D): a port bug, kept
    here only to reproduce enformer-pytorch.

    The log-normaliser cancels terms near 3e4 at 32 basis functions, so float32 evaluation
    carries ~1e-3 noise. By default the formula is evaluated in float64 (the exact
    function). ``float32_like_torch`` instead rounds every intermediate to float32 in
    enformer-pytorch's order (log and lgamma correctly rounded, as torch's CPU ``xlogy`` and
    ``lgamma`` compute them), reproducing its features, noise included, to ~1e-7.
    """
    if float32_like_torch:
        f32, f64 = np.float32, np.float64
        mean = _torch_linspace_f32(seq_len / num_basis, seq_len, num_basis)[None, :]
        stddev = seq_len / (2 * num_basis)
        concentration = (mean / f32(stddev)) ** 2
        rate = mean / f32(stddev**2)
        x = abs_d.astype(f32)[:, None]
        with np.errstate(divide="ignore"):
            log_x = np.log(x.astype(f64)).astype(f32)
        log_unnorm = np.where(x > 0, (concentration - f32(1.0)) * log_x, -np.inf).astype(f32)
        log_unnorm = log_unnorm - rate * x
        lgamma = np.array([math.lgamma(c) for c in concentration[0].astype(f64)]).astype(f32)
        log_norm = lgamma[None, :] - concentration * np.log(rate.astype(f64)).astype(f32)
        prob = np.exp((log_unnorm - log_norm).astype(f64)).astype(f32) + f32(eps)
    else:
        stddev = seq_len / (2 * num_basis)
        mean = np.linspace(seq_len / num_basis, seq_len, num_basis)[None, :]
        concentration = (mean / stddev) ** 2
        rate = mean / stddev**2
        x = abs_d[:, None]
        # xlogy(c - 1, x) with c >= 4: -inf at x == 0, so the pdf there is 0 and, after
        # ``+ eps``, every feature of the d = 0 row equals eps (all 1 under "feature").
        with np.errstate(divide="ignore"):
            log_unnorm = (concentration - 1.0) * np.log(x) - rate * x
        lgamma = np.array([math.lgamma(c) for c in concentration[0]])[None, :]
        log_norm = lgamma - concentration * np.log(rate)
        prob = np.exp(log_unnorm - log_norm) + eps
    if normalise == "position":
        return prob / prob.max(axis=0, keepdims=True)
    if normalise == "feature":
        return prob / prob.max(axis=1, keepdims=True)
    raise ValueError(f"gamma normalise must be 'position' or 'feature', got {normalise!r}")


def gamma_basis_enformer_pytorch(abs_d: np.ndarray, num_basis: int, seq_len: int) -> np.ndarray:
    """enformer-pytorch's ``use_tf_gamma=False`` gamma features: feature-axis maximum,
    evaluated in float32 as it does (see :func:`gamma_basis`)."""
    return gamma_basis(abs_d, num_basis, seq_len, normalise="feature", float32_like_torch=True)


# --------------------------------------------------------------------------- features


def positional_basis(
    seq_len: int,
    num_features: int,
    basis: Sequence[BasisFn | jax.Array | np.ndarray],
    *,
    basis_seq_len: int | None = None,
) -> jax.Array:
    """Relative positional features, (2·seq_len − 1, num_features) float32.

    Each entry of ``basis`` is a :data:`BasisFn` or a precomputed (2·seq_len − 1, num_basis)
    table (e.g. the TF-dumped gamma table, which may be a traced array from params).
    Column order: [basis_0 | basis_1 | … | sign(d)·basis_0 | sign(d)·basis_1 | …].
    """
    num_components = 2 * len(basis)
    if num_features % num_components:
        raise ValueError(
            f"{num_features} positional features are not divisible by {num_components} "
            f"(2 × {len(basis)} basis functions)"
        )
    num_basis = num_features // num_components
    n = 2 * seq_len - 1
    d = np.arange(-seq_len + 1, seq_len, dtype=np.float64)
    abs_d = np.abs(d)
    pieces = []
    for fn in basis:
        if callable(fn):
            piece = jnp.asarray(np.asarray(fn(abs_d, num_basis, basis_seq_len or seq_len),
                                           np.float64).astype(np.float32))
        else:
            piece = jnp.asarray(fn, jnp.float32)
        if piece.shape != (n, num_basis):
            raise ValueError(
                f"positional basis has shape {tuple(piece.shape)}, expected ({n}, {num_basis}) "
                f"for a transformer length of {seq_len}"
            )
        pieces.append(piece)
    feats = jnp.concatenate(pieces, axis=-1)
    sign = jnp.asarray(np.sign(d).astype(np.float32))[:, None]
    return jnp.concatenate([feats, sign * feats], axis=-1)


# --------------------------------------------------------------------------- attention


def _skew(x: jax.Array, n: int) -> jax.Array:
    """(..., Q, n + Q − 1) -> (..., Q, n) with ``out[r, j] = x[r, j − r + Q − 1]``.

    In the row-major flattening ``out[r, j]`` sits at ``r·(n + Q − 2) + j + Q − 1``: one
    slice of the flat array, viewed as rows of n + Q − 2, then the first n columns
    (Transformer-XL's pad / reshape / slice without the pad, which would cost XLA a full
    copy). Data movement only.
    """
    *lead, q, w = x.shape
    if w != n + q - 1:
        raise ValueError(f"cannot skew (..., {q}, {w}) to {n} columns (needs {n + q - 1})")
    if q == 1:
        return x
    flat = x.reshape(*lead, q * w)[..., q - 1 : q - 1 + q * (w - 1)]
    return flat.reshape(*lead, q, w - 1)[..., :n]


def relative_shift(x: jax.Array) -> jax.Array:
    """(..., L, 2L−1) logits indexed by relative distance -> (..., L, L) with
    ``out[i, j] = x[i, j − i + L − 1]`` (distance j − i). Data movement only."""
    *_, t1, t2 = x.shape
    if t2 != 2 * t1 - 1:
        raise ValueError(f"relative_shift needs (..., L, 2L-1) logits, got {x.shape}")
    return _skew(x, t1)


# Query rows per attention block. A block's logits, (H, B, Q, L) plus its (H, B, Q, L+Q−1)
# positional logits, then stay small enough to be reused from cache by the softmax and the
# value product, and the positional GEMM needs only L+Q−1 of the 2L−1 relative distances
# (about half the FLOPs of the unblocked form). 128 measured best on a 2-core Zen 3.
QUERY_BLOCK = 128
_MIN_BLOCK = 32  # lengths with no divisor in [32, 128] run as one block, not as many tiny GEMMs


def _query_block(n: int) -> int:
    # QUERY_BLOCK is read at trace time, so a benchmark can set it to count the FLOPs of the
    # unblocked form (XLA's cost analysis counts a loop body once, not once per block).
    for q in range(min(QUERY_BLOCK, n), _MIN_BLOCK - 1, -1):
        if n % q == 0:
            return q
    return n


def relative_attention_core(
    q_content: jax.Array, q_pos: jax.Array, k: jax.Array, v: jax.Array, rel_k: jax.Array,
    *, precision=None, query_block: int | None = None,
) -> jax.Array:
    """softmax(q_content·kᵀ + shift(q_pos·rel_kᵀ))·v in the head-major layout.

    q_content, q_pos, k: (H, B, L, K); v: (H, B, L, V); rel_k: (H, 2L−1, K) over distances
    −(L−1)..L−1 -> (H, B, L, V).

    Heads lead, so every product is a batched GEMM over H with no transpose of the logits.
    Queries run in blocks of Q rows (``query_block``, default :data:`QUERY_BLOCK` or the
    largest divisor of L below it): rows [i0, i0+Q) see distances −(i0+Q−1)..L−1−i0, i.e.
    rel_k rows [L−Q−i0, 2L−1−i0), a window of L+Q−1. Each row's logits, softmax and output
    are the same sums as unblocked.
    """
    h, b, n, dk = q_pos.shape
    qb = _query_block(n) if query_block is None else query_block
    if n % qb:
        raise ValueError(f"query block {qb} does not divide the length {n}")
    nb = n // qb

    def block(args):
        qc, qp, i0 = args  # (H, B, Q, K) x 2, first query row
        window = lax.dynamic_slice_in_dim(rel_k, n - qb - i0, n + qb - 1, axis=1)
        content = jnp.einsum("hbid,hbjd->hbij", qc, k, precision=precision)
        rel = jnp.einsum("hnd,hjd->hnj", qp.reshape(h, b * qb, dk), window,
                         precision=precision)
        rel = _skew(rel.reshape(h, b, qb, n + qb - 1), n)
        attn = jax.nn.softmax((content + rel).astype(jnp.float32), axis=-1).astype(v.dtype)
        return jnp.einsum("hbij,hbjd->hbid", attn, v, precision=precision)

    def blocks(x: jax.Array) -> jax.Array:  # (H, B, L, K) -> (nb, H, B, Q, K)
        return x.reshape(h, b, nb, qb, x.shape[-1]).transpose(2, 0, 1, 3, 4)

    if nb == 1:
        return block((q_content, q_pos, 0))
    out = lax.map(block, (blocks(q_content), blocks(q_pos), jnp.arange(nb) * qb))
    return out.transpose(1, 2, 0, 3, 4).reshape(h, b, n, -1)


def relative_mha(
    params: dict, x: jax.Array, pos_features: jax.Array, *, precision=None
) -> jax.Array:
    """Multi-head attention with relative positional logits; x: (B, L, C) -> (B, L, C).

    ``params`` (kernels in (in, out) layout): ``to_q``, ``to_k``, ``to_rel_k`` {kernel:
    (C|F, H·K)}, ``to_v`` {kernel: (C, H·V)}, ``to_out`` {kernel: (H·V, C), bias: (C,)},
    ``rel_content_bias`` and ``rel_pos_bias`` (H, K). ``pos_features``: (2L−1, F) from
    :func:`positional_basis`.

        logits = (q/√K + u)·kᵀ + shift((q/√K + v)·r_kᵀ),   out = softmax(logits)·v

    The projection of the positional features is done in float32 whatever the compute
    dtype, then cast: the features are static and the product is small.
    """
    num_heads, dim_key = params["rel_content_bias"].shape
    dt = x.dtype
    b, n, _ = x.shape

    def proj(name: str, h: jax.Array) -> jax.Array:
        y = jnp.matmul(h, params[name]["kernel"].astype(dt), precision=precision)
        return y.reshape(b, n, num_heads, -1).transpose(2, 0, 1, 3)  # (H, B, L, K|V)

    q = proj("to_q", x) * jnp.asarray(dim_key**-0.5, dt)
    k = proj("to_k", x)
    v = proj("to_v", x)

    u = params["rel_content_bias"].astype(dt)[:, None, None, :]
    w = params["rel_pos_bias"].astype(dt)[:, None, None, :]
    rel_k = jnp.matmul(pos_features.astype(jnp.float32),
                       params["to_rel_k"]["kernel"].astype(jnp.float32), precision=precision)
    rel_k = rel_k.reshape(-1, num_heads, dim_key).transpose(1, 0, 2).astype(dt)  # (H, 2L-1, K)
    out = relative_attention_core(q + u, q + w, k, v, rel_k, precision=precision)
    out = out.transpose(1, 2, 0, 3).reshape(b, n, -1)
    return (jnp.matmul(out, params["to_out"]["kernel"].astype(dt), precision=precision)
            + params["to_out"]["bias"].astype(dt))
