"""variant-scorer's shuffled null and empirical p-values (host side, numpy).

The null: for a variant, the genomic flank around it is dinucleotide-shuffled and the same two
alleles are written back at the centre; the model's scores on such pairs form a background
distribution pooled over all variants, and each observed score gets an empirical p-value
against it. See docs/scores_profile.md.
"""

from __future__ import annotations

import numpy as np

from veff.types import NUM_TOKENS

# deeplift's dinuc_shuffle works on the ASCII string and visits characters in sorted (ASCII)
# order: A, C, G, N, T. Token codes are A=0 C=1 G=2 T=3 N=4, so N comes before T here; keeping
# that order makes the random draws line up with deeplift's for the same RandomState.
_ASCII_ORDER = np.array([0, 1, 2, 4, 3])


def dinuc_shuffle(
    tokens: np.ndarray, rng: np.random.Generator | np.random.RandomState
) -> np.ndarray:
    """A dinucleotide-preserving shuffle of a (L,) uint8 token sequence (Altschul-Erickson,
    deeplift's variant).

    For every token t, the list of positions that follow an occurrence of t is permuted, all
    but its last entry (``rng.permutation(n - 1)``); the new sequence is the walk that starts
    at the first token and, on its k-th visit to t, steps to the token at the k-th entry of
    t's list. Keeping every token's last successor fixed keeps the walk Eulerian, so the
    result has exactly the input's dinucleotide counts and its first and last tokens.

    With ``rng=np.random.RandomState(seed)`` the draws and the result are those of
    ``deeplift.dinuc_shuffle.dinuc_shuffle(seq, rng=np.random.RandomState(seed))`` on the
    upper-case string (variant-scorer's null); deeplift would treat soft-masked lower case
    letters as extra symbols, which tokens cannot represent.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"dinuc_shuffle expects a 1-D token array, got shape {tokens.shape}")
    if tokens.size and int(tokens.max()) >= NUM_TOKENS:
        raise ValueError(f"dinuc_shuffle: tokens must be < {NUM_TOKENS}")
    length = tokens.size
    if length < 3:
        return tokens.astype(np.uint8, copy=True)
    prev = tokens[:-1]
    present = np.bincount(tokens, minlength=NUM_TOKENS) > 0
    num_following = np.bincount(prev, minlength=NUM_TOKENS)
    # Successor tokens grouped by the preceding token, each group in position order.
    order = np.argsort(prev, kind="stable")
    successors = tokens[1:][order]
    ends = np.cumsum(num_following)
    starts = ends - num_following
    groups: list[list[int]] = [[] for _ in range(NUM_TOKENS)]
    for t in _ASCII_ORDER:
        if not present[t]:
            continue
        n = int(num_following[t])
        group = successors[starts[t] : ends[t]]
        perm = rng.permutation(n - 1)  # called even for n <= 1, as deeplift does
        if n > 1:
            group = np.concatenate([group[:-1][perm], group[-1:]])
        groups[t] = group.tolist()
    steps = [iter(g).__next__ for g in groups]
    cur = int(tokens[0])
    walk = [cur] + [cur := steps[cur]() for _ in range(length - 1)]
    return np.array(walk, dtype=np.uint8)


def variant_rng(seed: int, variant_index: int) -> np.random.Generator:
    """The generator for one variant's null shuffles: a function of (seed, variant index)
    only, so a variant's null windows do not depend on batch size or batch position."""
    if seed < 0 or variant_index < 0:
        raise ValueError("seed and variant_index must be non-negative")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(variant_index)]))


def null_window_pair(
    ref_tokens: np.ndarray,
    alt_tokens: np.ndarray,
    ref_len: int,
    alt_len: int,
    length: int,
    rng: np.random.Generator | np.random.RandomState,
) -> tuple[np.ndarray, np.ndarray]:
    """One shuffled (REF, ALT) window pair of ``length`` tokens, as variant-scorer builds it.

    ``ref_tokens``/``alt_tokens`` (W,), W >= length, are centred windows (REF's first base at
    W // 2; left-anchored indels, the ALT window's right flank absorbing the difference); the
    length-``length`` windows centred the same way are taken from them. The genomic stretch
    variant-scorer shuffles is the REF window, plus, for a deletion of d bases, the d genome
    bases that close the ALT window. After the shuffle s, with f = length // 2:
    REF = s[:f] + allele1 + s[f + l1 : length],
    ALT = s[:f] + allele2 + s[f + l1 : length + l1 - l2].
    (For SNVs the REF base is shuffled with the flank and then overwritten, as upstream.)
    """
    ref_tokens = np.asarray(ref_tokens)
    alt_tokens = np.asarray(alt_tokens)
    width = ref_tokens.shape[-1]
    if ref_tokens.shape != (width,) or alt_tokens.shape != (width,):
        raise ValueError(
            f"null_window_pair: windows must be 1-D and equal length, got {ref_tokens.shape} "
            f"and {alt_tokens.shape}"
        )
    if not 0 < length <= width:
        raise ValueError(f"null_window_pair: length {length} must be in [1, {width}]")
    f = length // 2
    if ref_len < 0 or alt_len < 0 or f + max(ref_len, alt_len) > length:
        raise ValueError(
            f"null_window_pair: alleles of length {ref_len}/{alt_len} do not fit a "
            f"{length}-bp window centred at {f}"
        )
    start = width // 2 - f
    ref_win = ref_tokens[start : start + length]
    alt_win = alt_tokens[start : start + length]
    mismatch = ref_len - alt_len
    stretch = ref_win if mismatch <= 0 else np.concatenate([ref_win, alt_win[length - mismatch :]])
    s = dinuc_shuffle(stretch, rng)
    ref_out = np.concatenate([s[:f], ref_win[f : f + ref_len], s[f + ref_len : length]])
    alt_out = np.concatenate(
        [s[:f], alt_win[f : f + alt_len], s[f + ref_len : length + mismatch]]
    )
    return ref_out, alt_out


def shuffled_windows(
    ref_tokens: np.ndarray,
    alt_tokens: np.ndarray,
    ref_len: np.ndarray,
    alt_len: np.ndarray,
    length: int,
    n: int,
    seed: int,
    *,
    variant_index: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` null window pairs per variant: (B, W) windows -> (B, n, length) REF and ALT.

    Shuffle k of variant i uses ``variant_rng(seed, variant_index[i])`` advanced through
    shuffles 0..k-1, so the null for a variant is the same whatever batch it lands in.
    ``variant_index`` is the variant's global row index (B,).
    """
    ref_tokens = np.asarray(ref_tokens)
    alt_tokens = np.asarray(alt_tokens)
    if ref_tokens.ndim != 2 or ref_tokens.shape != alt_tokens.shape:
        raise ValueError(
            f"shuffled_windows: expected two (B, W) arrays, got {ref_tokens.shape} and "
            f"{alt_tokens.shape}"
        )
    batch = ref_tokens.shape[0]
    ref_len = np.broadcast_to(np.asarray(ref_len, dtype=np.int64), (batch,))
    alt_len = np.broadcast_to(np.asarray(alt_len, dtype=np.int64), (batch,))
    variant_index = np.asarray(variant_index, dtype=np.int64)
    if variant_index.shape != (batch,):
        raise ValueError(f"shuffled_windows: variant_index must have shape ({batch},)")
    if n < 1:
        raise ValueError("shuffled_windows: n must be >= 1")
    ref_out = np.empty((batch, n, length), dtype=np.uint8)
    alt_out = np.empty((batch, n, length), dtype=np.uint8)
    for i in range(batch):
        rng = variant_rng(seed, int(variant_index[i]))
        for k in range(n):
            ref_out[i, k], alt_out[i, k] = null_window_pair(
                ref_tokens[i], alt_tokens[i], int(ref_len[i]), int(alt_len[i]), length, rng
            )
    return ref_out, alt_out


def empirical_pvalues(obs: np.ndarray, null: np.ndarray, tail: str) -> np.ndarray:
    """variant-scorer's empirical p-values of ``obs`` (B,) against a pooled ``null`` (N,).

    right: (#{null >= obs} + 1) / (N + 1); left: (#{null <= obs} + 1) / (N + 1);
    two: 2 * min(left, right), NOT clipped, exactly as upstream's get_pvals: it exceeds 1 when
    obs sits near the null's median (and reaches 2 when obs ties the whole null).
    NaN entries of the null (rows that were not scored) are ignored; a NaN obs gives NaN.
    """
    if tail not in ("right", "left", "two"):
        raise ValueError(f"empirical_pvalues: tail must be 'right', 'left' or 'two', got {tail!r}")
    null = np.asarray(null, dtype=np.float64).ravel()
    null = np.sort(null[~np.isnan(null)])
    if null.size == 0:
        raise ValueError("empirical_pvalues: the null distribution is empty")
    obs = np.asarray(obs, dtype=np.float64)
    denom = null.size + 1
    right = (null.size - np.searchsorted(null, obs, side="left") + 1) / denom
    left = (np.searchsorted(null, obs, side="right") + 1) / denom
    if tail == "right":
        p = right
    elif tail == "left":
        p = left
    else:
        p = 2.0 * np.minimum(left, right)
    return np.where(np.isnan(obs), np.nan, p)
