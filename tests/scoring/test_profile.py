"""Profile statistics (veff.scoring.profile) and peak sets (veff.scoring.peaks) against
independent numpy/scipy computations of variant-scorer's formulas, in fp32."""

from __future__ import annotations

import functools
import gzip

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import gmean

from veff.scoring import peaks as peaks_mod
from veff.scoring import profile as prof

ATOL = 1e-6
ALL_STATS = tuple(prof.STAT_INFO)
# One compiled program per (shape, stats) instead of op-by-op dispatch keeps the file fast.
score = jax.jit(prof.profile_scores, static_argnames=("stats",))


@pytest.fixture(autouse=True)
def _fp32():
    assert not jax.config.jax_enable_x64, "these tests check fp32 behaviour"


# ---------------------------------------------------------------- independent references


def np_softmax(logits: np.ndarray) -> np.ndarray:
    """chromBPNet / variant-scorer's mean-subtracted softmax, float64."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.mean(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sliced_profiles(p1, p2, l1, l2):
    """adjust_indel_jsd's slicing, read literally, with Python lists."""
    p1, p2 = list(p1), list(p2)
    num_pos = len(p1)
    f = num_pos // 2
    if l1 > l2:
        a1 = p1[:f] + p1[f : f + l2] + p1[f + l1 :]
        a2 = p2[:f] + p2[f : num_pos - (l1 - l2)]
    else:
        a1 = p1[:f] + p1[f : num_pos - (l2 - l1)]
        a2 = p2[:f] + p2[f : f + l1] + p2[f + l2 :]
    assert len(a1) == len(a2) == num_pos - abs(l1 - l2)
    a1, a2 = np.array(a1, dtype=np.float64), np.array(a2, dtype=np.float64)
    return a1 / a1.sum(), a2 / a2.sum()


def reference_scores(lg1, lc1, lg2, lc2, l1, l2):
    """Per-row float64 reference of every non-peak statistic."""
    c1, c2 = np.exp(np.float64(lc1)), np.exp(np.float64(lc2))
    p1, p2 = np_softmax(lg1), np_softmax(lg2)
    original = jensenshannon(p2, p1, base=2.0)
    if l1 == l2:
        jsd = original
    else:
        a1, a2 = sliced_profiles(p1, p2, l1, l2)
        jsd = jensenshannon(a1, a2, base=2.0)
    logfc = np.log2(c2 / c1)
    return {
        "ref_counts": c1,
        "alt_counts": c2,
        "logfc": logfc,
        "abs_logfc": abs(logfc),
        "jsd": jsd,
        "original_jsd": original,
        "logfc_x_jsd": logfc * jsd,
        "abs_logfc_x_jsd": abs(logfc) * jsd,
    }


def make_outputs(rng, batch, num_pos, scales):
    """REF/ALT outputs whose profiles differ by per-row scales (tiny to large effects)."""
    lg1 = rng.normal(size=(batch, num_pos)).astype(np.float32)
    scales = np.resize(np.asarray(scales, dtype=np.float32), batch)[:, None]
    lg2 = (lg1 + scales * rng.normal(size=(batch, num_pos))).astype(np.float32)
    lc1 = rng.uniform(-1.0, 2.0, size=batch).astype(np.float32)
    lc2 = (lc1 + rng.normal(scale=0.5, size=batch)).astype(np.float32)
    ref = {"logits": jnp.asarray(lg1), "logcounts": jnp.asarray(lc1)}
    alt = {"logits": jnp.asarray(lg2), "logcounts": jnp.asarray(lc2)}
    return ref, alt


def check_against_reference(ref, alt, l1s, l2s, out):
    lg1, lc1 = np.asarray(ref["logits"]), np.asarray(ref["logcounts"])
    lg2, lc2 = np.asarray(alt["logits"]), np.asarray(alt["logcounts"])
    for i in range(lg1.shape[0]):
        want = reference_scores(lg1[i], lc1[i], lg2[i], lc2[i], int(l1s[i]), int(l2s[i]))
        for name, value in want.items():
            got = float(out[name][i])
            assert abs(got - value) <= ATOL * max(1.0, abs(value)), (name, i, got, value)


# ---------------------------------------------------------------- RC averaging, softmax


def test_rc_average_matches_linear_count_mean_and_flipped_logits():
    rng = np.random.default_rng(3)
    fwd_lg, rc_lg = rng.normal(size=(2, 5, 13)).astype(np.float32)
    fwd_lc, rc_lc = rng.uniform(-2, 3, size=(2, 5)).astype(np.float32)
    out = prof.rc_average(
        {"logits": fwd_lg, "logcounts": fwd_lc}, {"logits": rc_lg, "logcounts": rc_lc}
    )
    want_lc = np.log((np.exp(fwd_lc.astype(np.float64)) + np.exp(rc_lc.astype(np.float64))) / 2)
    want_lg = (fwd_lg.astype(np.float64) + rc_lg[:, ::-1]) / 2
    np.testing.assert_allclose(np.asarray(out["logcounts"]), want_lc, rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.asarray(out["logits"]), want_lg, rtol=0, atol=ATOL)
    # the flip is along P only: position 0 of the average pairs with RC position P-1
    assert np.asarray(out["logits"])[2, 0] == pytest.approx((fwd_lg[2, 0] + rc_lg[2, 12]) / 2)


def test_rc_average_does_not_overflow_large_counts():
    big = {"logits": jnp.zeros((1, 4)), "logcounts": jnp.array([120.0])}
    bigger = {"logits": jnp.zeros((1, 4)), "logcounts": jnp.array([121.0])}
    got = float(prof.rc_average(big, bigger)["logcounts"][0])
    want = 120.0 + np.log((1.0 + np.e) / 2.0)
    assert abs(got - want) < 2e-5  # fp32 spacing at 120 is 7.6e-6


def test_rc_average_requires_both_heads():
    with pytest.raises(ValueError, match="lacks"):
        prof.rc_average({"logits": jnp.zeros((1, 3))}, {"logits": jnp.zeros((1, 3))})


def test_softmax_equals_mean_subtracted_softmax():
    x = np.random.default_rng(0).normal(scale=4.0, size=(3, 1000)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(prof.softmax_profile(jnp.asarray(x))), np_softmax(x), rtol=0, atol=1e-7
    )


# ---------------------------------------------------------------- the formulas


@pytest.mark.parametrize("num_pos", [1000, 97])
def test_snv_and_mnv_scores_match_scipy(num_pos):
    rng = np.random.default_rng(num_pos)
    # 1e-5: near-identical profiles, where a textbook fp32 JSD is off by ~1e-4
    ref, alt = make_outputs(rng, 11, num_pos, [1e-5, 1e-3, 1e-2, 0.1, 1.0, 3.0])
    l1 = np.array([1, 1, 2, 3, 1, 1, 1, 5, 1, 1, 1])
    out = score(ref, alt, l1, l1, prof.DEFAULT_STATS)
    for name in prof.DEFAULT_STATS:
        assert out[name].shape == (11,) and out[name].dtype == jnp.float32, name
    check_against_reference(ref, alt, l1, l1, out)
    # SNV/MNV: no adjustment
    np.testing.assert_array_equal(np.asarray(out["jsd"]), np.asarray(out["original_jsd"]))


INDELS = [(2, 1), (5, 1), (12, 3), (40, 7), (1, 2), (1, 6), (3, 14), (8, 41)]


@pytest.mark.parametrize("num_pos", [1000, 97])
def test_indel_jsd_adjustment_matches_list_slicing(num_pos):
    rng = np.random.default_rng(7 + num_pos)
    batch = len(INDELS)
    ref, alt = make_outputs(rng, batch, num_pos, [0.05, 0.5, 2.0])
    l1 = np.array([a for a, _ in INDELS])
    l2 = np.array([b for _, b in INDELS])
    out = score(ref, alt, l1, l2, prof.DEFAULT_STATS)
    check_against_reference(ref, alt, l1, l2, out)
    # the adjustment changes the score (or the test above would not be testing it)
    assert np.all(np.asarray(out["jsd"]) != np.asarray(out["original_jsd"]))

    p1 = prof.softmax_profile(ref["logits"])
    p2 = prof.softmax_profile(alt["logits"])
    a1, a2, ok = prof.indel_aligned_profiles(p1, p2, l1, l2)
    assert bool(jnp.all(ok))
    for i, (x, y) in enumerate(INDELS):
        d = abs(x - y)
        w1, w2 = sliced_profiles(np.asarray(p1[i]), np.asarray(p2[i]), x, y)
        got1 = np.asarray(a1[i], dtype=np.float64)
        got2 = np.asarray(a2[i], dtype=np.float64)
        assert np.all(got1[num_pos - d :] == 0) and np.all(got2[num_pos - d :] == 0)
        np.testing.assert_allclose(got1[: num_pos - d] / got1.sum(), w1, rtol=0, atol=1e-8)
        np.testing.assert_allclose(got2[: num_pos - d] / got2.sum(), w2, rtol=0, atol=1e-8)


def test_indel_longer_than_the_profile_gives_nan_jsd():
    rng = np.random.default_rng(1)
    ref, alt = make_outputs(rng, 3, 31, [1.0])
    l1 = np.array([16, 17, 1])
    l2 = np.array([1, 1, 17])  # f = 15: 15 + 16 fits 31, 15 + 17 does not
    out = score(ref, alt, l1, l2, ("jsd", "original_jsd", "logfc_x_jsd"))
    jsd = np.asarray(out["jsd"])
    assert np.isfinite(jsd[0]) and np.isnan(jsd[1]) and np.isnan(jsd[2])
    assert np.all(np.isfinite(np.asarray(out["original_jsd"])))
    assert np.isnan(np.asarray(out["logfc_x_jsd"])[1])


def test_zero_probabilities_are_handled_like_scipy():
    # softmax underflows to exact zeros for very negative logits; 0 * log 0 must count as 0
    lg1 = np.zeros((2, 20), dtype=np.float32)
    lg2 = np.zeros((2, 20), dtype=np.float32)
    lg1[0, :5] = -200.0
    lg2[0, 10:] = -200.0
    lg2[1, 3] = -200.0
    ref = {"logits": jnp.asarray(lg1), "logcounts": jnp.zeros(2)}
    alt = {"logits": jnp.asarray(lg2), "logcounts": jnp.zeros(2)}
    out = score(ref, alt, 1, 1, ("jsd",))
    for i in range(2):
        p1 = np.asarray(prof.softmax_profile(ref["logits"]))[i].astype(np.float64)
        p2 = np.asarray(prof.softmax_profile(alt["logits"]))[i].astype(np.float64)
        assert (p1 == 0).any() or (p2 == 0).any()
        want = jensenshannon(p2, p1, base=2.0)
        assert abs(float(out["jsd"][i]) - want) <= ATOL


def test_identical_profiles_give_exactly_zero_and_disjoint_give_one():
    lg = jnp.asarray(np.random.default_rng(2).normal(size=(2, 50)).astype(np.float32))
    out = score(
        {"logits": lg, "logcounts": jnp.ones(2)}, {"logits": lg, "logcounts": jnp.ones(2)},
        1, 1, ("jsd",),
    )
    np.testing.assert_array_equal(np.asarray(out["jsd"]), 0.0)
    half = np.full((1, 10), -300.0, dtype=np.float32)
    a, b = half.copy(), half.copy()
    a[0, :5] = 0.0
    b[0, 5:] = 0.0
    out = score(
        {"logits": jnp.asarray(a), "logcounts": jnp.zeros(1)},
        {"logits": jnp.asarray(b), "logcounts": jnp.zeros(1)}, 1, 1, ("jsd",),
    )
    assert abs(float(out["jsd"][0]) - 1.0) <= ATOL


# ---------------------------------------------------------------- invariances


def _sorted_peaks(rng, n=257):
    return jnp.asarray(np.sort(np.exp(rng.uniform(-1.5, 2.5, size=n))).astype(np.float32))


def test_ref_equal_alt_scores_exactly_zero():
    rng = np.random.default_rng(5)
    ref, _ = make_outputs(rng, 9, 101, [1.0])
    lens = np.array([1, 1, 2, 4, 1, 1, 3, 1, 1])
    out = score(ref, ref, lens, lens, ALL_STATS, sorted_peak_counts=_sorted_peaks(rng))
    for name, info in prof.STAT_INFO.items():
        if name in ("ref_counts", "alt_counts", "allele1_quantile", "allele2_quantile",
                    "active_allele_quantile"):
            continue
        np.testing.assert_array_equal(np.asarray(out[name]), 0.0, err_msg=name)
    np.testing.assert_array_equal(np.asarray(out["ref_counts"]), np.asarray(out["alt_counts"]))


def test_swapping_ref_and_alt_negates_signed_and_keeps_unsigned_stats():
    rng = np.random.default_rng(6)
    ref, alt = make_outputs(rng, 13, 101, [1e-3, 0.1, 1.0])
    l1 = np.array([1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3])
    peaks = _sorted_peaks(rng)
    fwd = score(ref, alt, l1, l1, ALL_STATS, sorted_peak_counts=peaks)
    rev = score(alt, ref, l1, l1, ALL_STATS, sorted_peak_counts=peaks)
    swapped_pairs = {"ref_counts": "alt_counts", "allele1_quantile": "allele2_quantile"}
    swapped_pairs.update({v: k for k, v in swapped_pairs.items()})
    assert np.any(np.asarray(fwd["quantile_change"]) != 0)  # the peak stats are exercised
    for name, info in prof.STAT_INFO.items():
        got = np.asarray(rev[name])
        if name in swapped_pairs:
            np.testing.assert_array_equal(got, np.asarray(fwd[swapped_pairs[name]]), name)
        elif info.signed:
            np.testing.assert_array_equal(got, -np.asarray(fwd[name]), name)
        else:
            np.testing.assert_array_equal(got, np.asarray(fwd[name]), name)


def test_swapping_a_deletion_into_an_insertion_keeps_the_adjusted_jsd():
    rng = np.random.default_rng(8)
    ref, alt = make_outputs(rng, 4, 1000, [0.3])
    l1, l2 = np.array([2, 9, 1, 1]), np.array([1, 1, 4, 30])
    fwd = score(ref, alt, l1, l2, ("jsd",))
    rev = score(alt, ref, l2, l1, ("jsd",))
    np.testing.assert_allclose(np.asarray(rev["jsd"]), np.asarray(fwd["jsd"]), rtol=0, atol=ATOL)


def test_jit_and_batch_size_invariance():
    rng = np.random.default_rng(9)
    ref, alt = make_outputs(rng, 64, 1000, [1e-2, 0.3, 2.0])
    l1 = rng.choice([1, 1, 1, 2, 5, 1], size=64)
    l2 = rng.choice([1, 1, 3, 1, 1, 7], size=64)
    peaks = _sorted_peaks(rng)
    scorer = jax.jit(
        functools.partial(prof.profile_scores, stats=ALL_STATS),
    )
    full = scorer(ref, alt, jnp.asarray(l1), jnp.asarray(l2), sorted_peak_counts=peaks)
    eager = prof.profile_scores(ref, alt, l1, l2, ALL_STATS, sorted_peak_counts=peaks)
    for name in ALL_STATS:
        np.testing.assert_allclose(
            np.asarray(full[name]), np.asarray(eager[name]), rtol=0, atol=ATOL, err_msg=name
        )
    check_against_reference(ref, alt, l1, l2, full)
    for size in (1, 7):
        for start in range(0, 64 - size + 1, 19):
            sl = slice(start, start + size)
            part = scorer(
                jax.tree.map(lambda x: x[sl], ref), jax.tree.map(lambda x: x[sl], alt),
                jnp.asarray(l1[sl]), jnp.asarray(l2[sl]), sorted_peak_counts=peaks,
            )
            # Not bitwise: XLA:CPU vectorises fused exp and row reductions differently for
            # different batch shapes, which moves results by an ulp or two.
            for name in ALL_STATS:
                np.testing.assert_allclose(
                    np.asarray(part[name]), np.asarray(full[name])[sl], rtol=1e-6, atol=ATOL,
                    err_msg=f"{name} {size}",
                )


# ---------------------------------------------------------------- peak quantiles


def test_quantiles_and_products_match_brute_force():
    rng = np.random.default_rng(10)
    ref, alt = make_outputs(rng, 17, 101, [0.5])
    peak_counts = np.sort(np.exp(rng.uniform(-1.5, 2.5, size=211)).astype(np.float32))
    # exact ties with peak values and values below every peak
    lc1 = np.asarray(ref["logcounts"]).copy()
    lc1[0] = np.log(peak_counts[50])
    lc1[1] = -5.0
    ref = {"logits": ref["logits"], "logcounts": jnp.asarray(lc1)}
    out = score(
        ref, alt, 1, 1, ALL_STATS, sorted_peak_counts=jnp.asarray(peak_counts)
    )
    c1, c2 = np.asarray(out["ref_counts"]), np.asarray(out["alt_counts"])
    n = peak_counts.size
    shuffled = rng.permutation(peak_counts)  # the brute force does not need sorted input
    for i in range(17):
        q1 = max(np.mean(shuffled < c1[i]), 1 / n)
        q2 = max(np.mean(shuffled < c2[i]), 1 / n)
        aaq = max(q1, q2)
        logfc, jsd = float(out["logfc"][i]), float(out["jsd"][i])
        want = {
            "allele1_quantile": q1,
            "allele2_quantile": q2,
            "active_allele_quantile": aaq,
            "quantile_change": q2 - q1,
            "abs_quantile_change": abs(q2 - q1),
            "logfc_x_active_allele_quantile": logfc * aaq,
            "abs_logfc_x_active_allele_quantile": abs(logfc) * aaq,
            "jsd_x_active_allele_quantile": jsd * aaq,
            "logfc_x_jsd_x_active_allele_quantile": logfc * jsd * aaq,
            "abs_logfc_x_jsd_x_active_allele_quantile": abs(logfc) * jsd * aaq,
        }
        for name, value in want.items():
            assert abs(float(out[name][i]) - value) <= ATOL, (name, i)
    assert float(out["allele1_quantile"][1]) == pytest.approx(1 / n)  # the 1/n floor


def test_quantile_ties_count_strictly_below():
    peaks = jnp.asarray(np.array([1.0, 2.0, 2.0, 2.0, 3.0], dtype=np.float32))
    q = prof.allele_quantile(jnp.asarray(np.array([2.0, 2.5, 0.5, 3.0, 9.0], np.float32)), peaks)
    np.testing.assert_allclose(np.asarray(q), [0.2, 0.8, 0.2, 0.8, 1.0], rtol=0, atol=1e-7)


def test_peak_stats_without_peaks_raise():
    ref = {"logits": jnp.zeros((1, 5)), "logcounts": jnp.zeros(1)}
    with pytest.raises(ValueError, match="need peak scores"):
        prof.profile_scores(ref, ref, 1, 1, ("logfc", "active_allele_quantile"))
    with pytest.raises(ValueError, match="unknown profile statistic"):
        prof.profile_scores(ref, ref, 1, 1, ("logfc", "log_fc"))


# ---------------------------------------------------------------- STAT_INFO, folds


def test_stat_info_tails_follow_variant_scorer():
    two = {"logfc", "logfc_x_jsd", "quantile_change", "logfc_x_active_allele_quantile",
           "logfc_x_jsd_x_active_allele_quantile"}
    right = {"abs_logfc", "jsd", "abs_logfc_x_jsd", "active_allele_quantile",
             "abs_quantile_change", "abs_logfc_x_active_allele_quantile",
             "jsd_x_active_allele_quantile", "abs_logfc_x_jsd_x_active_allele_quantile"}
    none = {"ref_counts", "alt_counts", "original_jsd", "allele1_quantile", "allele2_quantile"}
    assert set(prof.STAT_INFO) == two | right | none
    for name, info in prof.STAT_INFO.items():
        want = "two" if name in two else "right" if name in right else None
        assert info.tail == want, name
        assert info.signed == (name in two), name  # the two-sided ones are the signed ones
        assert info.needs_peaks == ("quantile" in name), name
        assert info.formula
    with pytest.raises(ValueError):
        prof.StatInfo(signed=True, tail="both", needs_peaks=False, formula="x")


def test_fold_mean_and_geometric_mean_of_pvalues():
    rng = np.random.default_rng(11)
    scores = {"logfc": rng.normal(size=(5, 7)).astype(np.float32)}
    pvals = rng.uniform(1e-4, 1.0, size=(5, 7)).astype(np.float32)
    mean = prof.mean_over_folds({k: jnp.asarray(v) for k, v in scores.items()})
    np.testing.assert_allclose(np.asarray(mean["logfc"]), scores["logfc"].mean(0), atol=ATOL)
    np.testing.assert_allclose(
        np.asarray(prof.combine_fold_pvalues(jnp.asarray(pvals))), gmean(pvals, axis=0),
        rtol=0, atol=ATOL,
    )


# ---------------------------------------------------------------- peak files


def test_read_peaks_summits_dedup_and_bed(tmp_path):
    narrow = tmp_path / "p.narrowPeak.gz"
    lines = [
        "track name=x",
        "chr1\t100\t300\tp1\t0\t.\t1\t2\t3\t40",
        "chr1\t100\t300\tp1b\t0\t.\t1\t2\t9\t40",  # duplicate of (chr1, 100, 300, 40)
        "chr1\t100\t300\tp2\t0\t.\t1\t2\t3\t41",
        "chr2\t10\t21\tp3\t0\t.\t1\t2\t3\t-1",  # no summit: midpoint
    ]
    with gzip.open(narrow, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    peaks = peaks_mod.read_peaks(narrow)
    assert list(peaks.chrom) == ["chr1", "chr1", "chr2"]
    np.testing.assert_array_equal(peaks.summit, [40, 41, 5])
    np.testing.assert_array_equal(peaks.summit0, [140, 141, 15])

    bed = tmp_path / "p.bed"
    bed.write_text("chrX\t0\t9\nchrX\t0\t9\nchrX\t4\t10\textra\n")
    peaks = peaks_mod.read_peaks(bed)
    np.testing.assert_array_equal(peaks.summit, [4, 3])
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t5\n")
    with pytest.raises(ValueError, match="at least 3"):
        peaks_mod.read_peaks(bad)


def test_peak_window_quirk_matches_pyfaidx_get_seq(tmp_path):
    pyfaidx = pytest.importorskip("pyfaidx")
    rng = np.random.default_rng(12)
    genome = "".join(rng.choice(list("ACGT"), size=6000))
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "\n".join(genome[i : i + 60] for i in range(0, 6000, 60)) + "\n")
    peaks = peaks_mod.Peaks(
        chrom=np.array(["chr1", "chr1"], dtype=object), start0=np.array([2000, 2500]),
        end0=np.array([2400, 2600]), summit=np.array([150, 7]),
    )
    length, flank = 2114, 1057
    starts = peaks_mod.peak_window_starts(peaks, length)
    plain = peaks_mod.peak_window_starts(peaks, length, variant_scorer_quirk=False)
    fa = pyfaidx.Fasta(str(fasta))
    for i in range(2):
        summit = int(peaks.start0[i] + peaks.summit[i])
        # variant-scorer's PeakGenerator call, verbatim arguments
        upstream = str(fa.get_seq("chr1", summit - flank, summit + (flank - 1)))
        assert len(upstream) == length
        assert genome[starts[i] : starts[i] + length] == upstream
        assert plain[i] == starts[i] + 1 and genome[plain[i] + flank] == genome[summit]
    in_bounds = peaks_mod.peaks_in_bounds(peaks, {"chr1": 3207}, length)
    np.testing.assert_array_equal(in_bounds, [True, False])  # 2150 + 1057 = 3207 <= 3207
    assert not peaks_mod.peaks_in_bounds(peaks, {}, length).any()
