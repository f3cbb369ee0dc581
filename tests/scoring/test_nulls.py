"""Shuffled null windows and empirical p-values (veff.scoring.nulls) against plain readings of
deeplift's dinuc_shuffle and variant-scorer's VariantGenerator / get_pvals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veff.scoring import nulls
from veff.types import decode, encode


def dinucleotide_counts(tokens: np.ndarray) -> np.ndarray:
    counts = np.zeros((5, 5), dtype=np.int64)
    np.add.at(counts, (tokens[:-1], tokens[1:]), 1)
    return counts


def reference_dinuc_shuffle(seq: str, rs: np.random.RandomState) -> str:
    """deeplift's algorithm read literally, on a string, walking positions: for each character
    (sorted), permute the positions that follow it except the last, then walk from 0."""
    chars = sorted(set(seq))
    following = {c: [i + 1 for i in range(len(seq) - 1) if seq[i] == c] for c in chars}
    for c in chars:
        lst = following[c]
        perm = rs.permutation(len(lst) - 1)
        following[c] = [lst[j] for j in perm] + lst[-1:]
    used = dict.fromkeys(chars, 0)
    pos, out = 0, [seq[0]]
    for _ in range(len(seq) - 1):
        c = seq[pos]
        pos = following[c][used[c]]
        used[c] += 1
        out.append(seq[pos])
    return "".join(out)


# ---------------------------------------------------------------- dinucleotide shuffle


@settings(max_examples=150, deadline=None)
@given(
    seq=st.lists(st.integers(0, 4), min_size=3, max_size=300),
    seed=st.integers(0, 2**32 - 1),
)
def test_dinuc_shuffle_preserves_dinucleotides_ends_and_matches_deeplift(seq, seed):
    tokens = np.array(seq, dtype=np.uint8)
    out = nulls.dinuc_shuffle(tokens, np.random.default_rng(seed))
    assert out.dtype == np.uint8 and out.shape == tokens.shape
    np.testing.assert_array_equal(dinucleotide_counts(out), dinucleotide_counts(tokens))
    assert out[0] == tokens[0] and out[-1] == tokens[-1]
    # with a RandomState it is deeplift's shuffle, draw for draw (N sorts before T in ASCII)
    ours = nulls.dinuc_shuffle(tokens, np.random.RandomState(seed))
    assert decode(ours) == reference_dinuc_shuffle(decode(tokens), np.random.RandomState(seed))


def test_dinuc_shuffle_is_deterministic_per_seed_and_actually_shuffles():
    tokens = np.random.default_rng(0).integers(0, 4, size=2114).astype(np.uint8)
    a = nulls.dinuc_shuffle(tokens, np.random.default_rng(42))
    b = nulls.dinuc_shuffle(tokens, np.random.default_rng(42))
    c = nulls.dinuc_shuffle(tokens, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert (a == tokens).mean() < 0.5  # ~0.25 for a random sequence


def test_dinuc_shuffle_short_and_bad_input():
    np.testing.assert_array_equal(
        nulls.dinuc_shuffle(np.array([2, 1], np.uint8), np.random.default_rng(0)), [2, 1]
    )
    with pytest.raises(ValueError, match="1-D"):
        nulls.dinuc_shuffle(np.zeros((2, 5), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="tokens must be"):
        nulls.dinuc_shuffle(np.array([0, 7, 1], np.uint8), np.random.default_rng(0))


# ---------------------------------------------------------------- null windows


def upstream_null_pair(genome: str, pos0: int, a1: str, a2: str, length: int, seed: int):
    """VariantGenerator.__get_allele_seq__ with shuf=True, read literally (flank_size = f)."""
    f = length // 2
    if len(a1) == len(a2):
        flank = genome[pos0 - f : pos0 + f]
        flank = reference_dinuc_shuffle(flank, np.random.RandomState(seed))
        return flank[:f] + a1 + flank[f + len(a1) :], flank[:f] + a2 + flank[f + len(a2) :]
    mismatch = len(a1) - len(a2)
    end = pos0 + f + mismatch if mismatch > 0 else pos0 + f
    flank = reference_dinuc_shuffle(genome[pos0 - f : end], np.random.RandomState(seed))
    left = flank[:f]
    return (
        left + a1 + flank[f + len(a1) : f * 2],
        left + a2 + flank[f + len(a1) : f * 2 + mismatch],
    )


def centred_windows(genome: str, pos0: int, a1: str, a2: str, width: int):
    """veff's window contract: REF at width // 2, left-anchored ALT, right flank absorbs."""
    start = pos0 - width // 2
    ref = genome[start : start + width]
    alt = (genome[start:pos0] + a2 + genome[pos0 + len(a1) :])[:width]
    assert ref[width // 2 : width // 2 + len(a1)] == a1
    return encode(ref), encode(alt)


@pytest.mark.parametrize("kind", ["snv", "mnv", "deletion", "insertion"])
@pytest.mark.parametrize("seed", [0, 17, 2024])
def test_null_pair_matches_variant_scorer(kind, seed):
    rng = np.random.default_rng(seed)
    genome = "".join(rng.choice(list("ACGT"), size=400))
    pos0, length = 200, 64
    a1 = {"snv": genome[pos0], "mnv": genome[pos0 : pos0 + 3],
          "deletion": genome[pos0 : pos0 + 5], "insertion": genome[pos0]}[kind]
    a2 = {"snv": "T" if a1 != "T" else "C", "mnv": "GAT", "deletion": genome[pos0],
          "insertion": genome[pos0] + "GATTACA"}[kind]
    want_ref, want_alt = upstream_null_pair(genome, pos0, a1, a2, length, seed)
    assert len(want_ref) == len(want_alt) == length
    for width in (length, length + 10):  # the windows may be wider than the model's
        ref_win, alt_win = centred_windows(genome, pos0, a1, a2, width)
        got_ref, got_alt = nulls.null_window_pair(
            ref_win, alt_win, len(a1), len(a2), length, np.random.RandomState(seed)
        )
        assert decode(got_ref) == want_ref
        assert decode(got_alt) == want_alt


def test_null_pair_rejects_alleles_that_do_not_fit():
    win = np.zeros(20, np.uint8)
    with pytest.raises(ValueError, match="do not fit"):
        nulls.null_window_pair(win, win, 11, 1, 20, np.random.default_rng(0))
    with pytest.raises(ValueError, match="length"):
        nulls.null_window_pair(win, win, 1, 1, 21, np.random.default_rng(0))


def test_shuffled_windows_do_not_depend_on_the_batch():
    rng = np.random.default_rng(5)
    genome = "".join(rng.choice(list("ACGT"), size=3000))
    specs = [(300 + 97 * i, i % 4) for i in range(23)]
    width, length, n = 120, 101, 3
    refs, alts, l1, l2 = [], [], [], []
    for pos0, kind in specs:
        a1 = genome[pos0 : pos0 + (3 if kind == 1 else 1)]
        a2 = {0: "A" if a1 != "A" else "G", 1: genome[pos0], 2: a1 + "CC", 3: "T"}[kind]
        r, a = centred_windows(genome, pos0, a1, a2, width)
        refs.append(r)
        alts.append(a)
        l1.append(len(a1))
        l2.append(len(a2))
    refs, alts, l1, l2 = map(np.array, (refs, alts, l1, l2))
    index = np.arange(1000, 1023)
    full_ref, full_alt = nulls.shuffled_windows(
        refs, alts, l1, l2, length, n, seed=9, variant_index=index
    )
    assert full_ref.shape == full_alt.shape == (23, n, length)
    f = length // 2
    for i in range(23):
        # shared left flank, the alleles at f, and n different shuffles
        np.testing.assert_array_equal(full_ref[i, :, :f], full_alt[i, :, :f])
        for k in range(n):
            assert (full_ref[i, k, f : f + l1[i]] == refs[i, width // 2 : width // 2 + l1[i]]).all()
            assert (full_alt[i, k, f : f + l2[i]] == alts[i, width // 2 : width // 2 + l2[i]]).all()
        assert (full_ref[i, 0] != full_ref[i, 1]).any()
    for size in (1, 7):
        for start in range(0, 23 - size + 1, 8):
            sl = slice(start, start + size)
            part_ref, part_alt = nulls.shuffled_windows(
                refs[sl], alts[sl], l1[sl], l2[sl], length, n, seed=9, variant_index=index[sl]
            )
            np.testing.assert_array_equal(part_ref, full_ref[sl])
            np.testing.assert_array_equal(part_alt, full_alt[sl])
    other, _ = nulls.shuffled_windows(refs, alts, l1, l2, length, n, seed=10, variant_index=index)
    assert (other != full_ref).any()
    with pytest.raises(ValueError, match="variant_index"):
        nulls.shuffled_windows(refs, alts, l1, l2, length, n, seed=9, variant_index=index[:3])


# ---------------------------------------------------------------- empirical p-values


def test_empirical_pvalues_match_brute_force():
    rng = np.random.default_rng(6)
    null = rng.integers(0, 20, size=101).astype(np.float64)  # many ties
    obs = np.array([-1.0, 0.0, 5.0, 5.5, 9.0, 10.0, 19.0, 25.0])
    n = null.size
    right = np.array([(np.sum(null >= o) + 1) / (n + 1) for o in obs])
    left = np.array([(np.sum(null <= o) + 1) / (n + 1) for o in obs])
    np.testing.assert_array_equal(nulls.empirical_pvalues(obs, null, "right"), right)
    np.testing.assert_array_equal(nulls.empirical_pvalues(obs, null, "left"), left)
    two = nulls.empirical_pvalues(obs, null, "two")
    np.testing.assert_array_equal(two, 2 * np.minimum(left, right))
    assert two.max() > 1.0  # not clipped, as upstream
    assert nulls.empirical_pvalues(np.array([25.0]), null, "right")[0] == 1 / (n + 1)
    # NaN in the null is ignored, NaN obs gives NaN; fp32 input compares like fp64
    padded = np.concatenate([null, [np.nan, np.nan]]).astype(np.float32)
    got = nulls.empirical_pvalues(np.append(obs, np.nan).astype(np.float32), padded, "right")
    np.testing.assert_array_equal(got[:-1], right)
    assert np.isnan(got[-1])


def test_empirical_pvalues_bad_input():
    with pytest.raises(ValueError, match="tail"):
        nulls.empirical_pvalues(np.zeros(2), np.zeros(3), "both")
    with pytest.raises(ValueError, match="empty"):
        nulls.empirical_pvalues(np.zeros(2), np.array([np.nan]), "right")
