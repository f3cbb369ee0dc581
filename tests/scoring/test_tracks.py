"""Track statistics against plain-numpy loop transcriptions of baskerville / alphagenome."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from veff.scoring import tracks
from veff.scoring.tracks import ScoreSpec

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
TARGETS_TXT = SHARED / "data" / "baskerville" / "tiny_hg38_targets.txt"

B, P, T = 5, 13, 7
BIN, WIN = 32, 13 * 32 + 2 * 29  # 29 bp of context either side of the output span


def _preds(seed: int, shape=(B, P, T)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(shape=0.8, scale=3.0, size=shape).astype(np.float32)


# ---- independent references: explicit loops over batch, track, bin, in float64 ----------


def _np_percentile25(v):
    v = sorted(v)
    pos = 0.25 * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def _ref_one(stat, r, a):
    """r, a: lists of floats over bins of one (b, t)."""
    n = len(r)
    log2 = lambda x: math.log(x + 1.0, 2)  # noqa: E731
    if stat in ("SUM", "DIFF_SUM"):
        return sum(a) - sum(r)
    if stat in ("logSUM", "DIFF_SUM_LOG2"):
        return sum(log2(x) for x in a) - sum(log2(x) for x in r)
    if stat == "sqrtSUM":
        return sum(math.sqrt(x) for x in a) - sum(math.sqrt(x) for x in r)
    if stat in ("logSED", "DIFF_LOG2_SUM"):
        return log2(sum(a)) - log2(sum(r))
    if stat == "SAX":
        best, val = -1.0, 0.0
        for p in range(n):
            if abs(a[p] - r[p]) > best:
                best, val = abs(a[p] - r[p]), a[p] - r[p]
        return val
    if stat == "D1":
        return sum(abs(a[p] - r[p]) for p in range(n))
    if stat == "logD1":
        return sum(abs(log2(a[p]) - log2(r[p])) for p in range(n))
    if stat == "sqrtD1":
        return sum(abs(math.sqrt(a[p]) - math.sqrt(r[p])) for p in range(n))
    if stat in ("D2", "L2_DIFF"):
        return math.sqrt(sum((a[p] - r[p]) ** 2 for p in range(n)))
    if stat == "logD2":
        return math.sqrt(sum((log2(a[p]) - log2(r[p])) ** 2 for p in range(n)))
    if stat == "sqrtD2":
        return math.sqrt(sum((math.sqrt(a[p]) - math.sqrt(r[p])) ** 2 for p in range(n)))
    if stat == "L2_DIFF_LOG1P":
        return math.sqrt(sum((math.log1p(a[p]) - math.log1p(r[p])) ** 2 for p in range(n)))
    if stat == "JS":
        c = _np_percentile25(r)
        rs = sum(x + c for x in r)
        as_ = sum(x + c for x in a)
        rn = [(x + c) / rs for x in r]
        an = [(x + c) / as_ for x in a]
        kl_ra = sum(rn[p] * math.log(rn[p] / an[p]) for p in range(n))
        kl_ar = sum(an[p] * math.log(an[p] / rn[p]) for p in range(n))
        return 0.5 * (kl_ra + kl_ar)
    if stat == "DIFF_MEAN":
        return sum(a) / n - sum(r) / n
    if stat == "ACTIVE_MEAN":
        return max(sum(a) / n, sum(r) / n)
    if stat == "ACTIVE_SUM":
        return max(sum(a), sum(r))
    raise AssertionError(stat)


def _reference(stat, ref, alt, lo=0, hi=None):
    hi = ref.shape[1] if hi is None else hi
    out = np.zeros((ref.shape[0], ref.shape[2]))
    for b in range(ref.shape[0]):
        for t in range(ref.shape[2]):
            r = [float(ref[b, p, t]) for p in range(lo, hi)]
            a = [float(alt[b, p, t]) for p in range(lo, hi)]
            out[b, t] = _ref_one(stat, r, a)
    return out


_jitted = jax.jit(
    tracks.compute_track_stats, static_argnames=("specs", "bin_size", "window_len", "shift_bp")
)


def _compute(ref, alt, specs, **kw):
    kw = {"bin_size": BIN, "window_len": WIN} | kw
    return {k: np.asarray(v) for k, v in _jitted(ref, alt, tuple(specs), **kw).items()}


def _atol(expected):
    # float32 computation vs float64 reference: relative-size absolute tolerance
    return 2e-6 * max(1.0, float(np.max(np.abs(expected)))) * P


ALL = tuple(ScoreSpec(stat=s) for s in tracks.STATS)


# ---- statistics ---------------------------------------------------------------------------


def test_every_statistic_matches_loop_reference():
    ref, alt = _preds(0), _preds(1)
    got = _compute(ref, alt, ALL)
    assert set(got) == set(tracks.STATS)
    for spec in ALL:
        exp = _reference(spec.stat, ref, alt)
        assert got[spec.name].shape == (B, T)
        assert got[spec.name].dtype == np.float32
        np.testing.assert_allclose(got[spec.name], exp, rtol=0, atol=_atol(exp), err_msg=spec.stat)


def test_js_is_symmetrised_kl_and_differs_from_jensen_shannon():
    ref, alt = _preds(2), _preds(3)
    got = _compute(ref, alt, (ScoreSpec(stat="JS"),))["JS"]
    # Jensen-Shannon proper (mixture m) on the same normalised profiles is a different number
    c = np.percentile(ref.astype(np.float64), 25, axis=1, keepdims=True)
    r = (ref + c) / (ref + c).sum(axis=1, keepdims=True)
    a = (alt + c) / (alt + c).sum(axis=1, keepdims=True)
    m = 0.5 * (r + a)
    jsd = 0.5 * (r * np.log(r / m)).sum(1) + 0.5 * (a * np.log(a / m)).sum(1)
    assert np.all(np.abs(got - jsd) > 1e-4)
    assert np.all(got >= 0)


def test_sax_takes_first_max_on_ties():
    ref = np.zeros((1, 4, 1), np.float32)
    alt = np.array([0.0, -2.0, 2.0, 1.0], np.float32).reshape(1, 4, 1)
    got = tracks.compute_track_stats(
        ref, alt, (ScoreSpec(stat="SAX"),), bin_size=BIN, window_len=4 * BIN
    )["SAX"]
    assert float(got[0, 0]) == -2.0


def test_swap_negates_signed_and_keeps_symmetric_unsigned():
    ref, alt = _preds(4), _preds(5)
    fwd, bwd = _compute(ref, alt, ALL), _compute(alt, ref, ALL)
    for spec in ALL:
        f, b = fwd[spec.name], bwd[spec.name]
        # exact: differences are taken before any multiply that XLA could fuse into an FMA
        if spec.is_signed:
            np.testing.assert_array_equal(b, -f, err_msg=spec.stat)
        elif spec.info.swap_symmetric:
            np.testing.assert_array_equal(b, f, err_msg=spec.stat)
            assert np.all(f >= 0)
        else:  # JS: pseudo-count from REF, so not symmetric (documented)
            assert spec.stat == "JS"
            assert np.max(np.abs(b - f)) > 1e-6


def test_ref_equal_alt_gives_zero():
    ref = _preds(6)
    got = _compute(ref, ref.copy(), ALL)
    for spec in ALL:
        if spec.stat.startswith("ACTIVE"):
            continue  # max(alt, ref) is activity, not a difference
        np.testing.assert_array_equal(got[spec.name], 0.0, err_msg=spec.stat)


def test_bf16_inputs_are_upcast():
    ref, alt = _preds(7), _preds(8)
    got = tracks.compute_track_stats(
        jnp.asarray(ref, jnp.bfloat16),
        jnp.asarray(alt, jnp.bfloat16),
        (ScoreSpec(stat="SUM"),),
        bin_size=BIN,
        window_len=WIN,
    )["SUM"]
    assert got.dtype == jnp.float32


# ---- centre masks ---------------------------------------------------------------------------


def test_variant_bin_geometry():
    # L = 13*32 + 58 = 474: offset 29, variant at 237 -> rel 208 -> bin 6
    assert tracks.variant_bin(num_bins=P, bin_size=BIN, window_len=WIN) == 6
    # Enformer: 196,608 bp, 896 x 128 -> bin 448; Borzoi 524,288, 6144 x 32 -> bin 3072
    assert tracks.variant_bin(num_bins=896, bin_size=128, window_len=196_608) == 448
    assert tracks.variant_bin(num_bins=6144, bin_size=32, window_len=524_288) == 3072
    # shift +1 moves the variant right by 1 bp: 208 + 1 still bin 6; +16 -> 224 = bin 7
    assert tracks.variant_bin(num_bins=P, bin_size=BIN, window_len=WIN, shift_bp=16) == 7
    with pytest.raises(ValueError, match="outside"):
        tracks.variant_bin(num_bins=2, bin_size=BIN, window_len=4 * BIN, shift_bp=40)


def test_center_mask_bins_by_hand():
    # bin_size 32, variant bin 6 (see above).
    # 501 bp -> ceil(501/32) = 16 bins from 6 - 8 = -2 -> clipped [0, 13)
    assert tracks.center_mask_bins(501, num_bins=P, bin_size=BIN, window_len=WIN) == (0, 13)
    # 96 bp -> 3 bins from 6 - 1 = 5: [5, 8)
    assert tracks.center_mask_bins(96, num_bins=P, bin_size=BIN, window_len=WIN) == (5, 8)
    # 100 bp -> 4 bins from 6 - 2 = 4: [4, 8) (alphagenome: one more bin on the left)
    assert tracks.center_mask_bins(100, num_bins=P, bin_size=BIN, window_len=WIN) == (4, 8)
    # 1 bp -> the variant bin only
    assert tracks.center_mask_bins(1, num_bins=P, bin_size=BIN, window_len=WIN) == (6, 7)
    # 32*9 = 288 -> 9 bins from 6 - 4 = 2: [2, 11)
    assert tracks.center_mask_bins(288, num_bins=P, bin_size=BIN, window_len=WIN) == (2, 11)
    # alphagenome at 128 bp resolution: 501 bp -> 4 bins [c-2, c+2)
    assert tracks.center_mask_bins(501, num_bins=896, bin_size=128, window_len=196_608) == (
        446,
        450,
    )
    # at 1 bp resolution the mask is v-250 .. v+250
    assert tracks.center_mask_bins(501, num_bins=1000, bin_size=1, window_len=1000) == (250, 751)


def test_center_mask_scores_exactly_the_masked_bins():
    ref, alt = _preds(9), _preds(10)
    specs = (
        ScoreSpec(stat="DIFF_LOG2_SUM", center_bp=100),
        ScoreSpec(stat="logSUM", center_bp=96),
        ScoreSpec(stat="JS", center_bp=288),
        ScoreSpec(stat="SAX", center_bp=1),
    )
    got = _compute(ref, alt, specs)
    assert set(got) == {"DIFF_LOG2_SUM@100", "logSUM@96", "JS@288", "SAX@1"}
    for spec, (lo, hi) in zip(specs, [(4, 8), (5, 8), (2, 11), (6, 7)]):
        exp = _reference(spec.stat, ref, alt, lo, hi)
        np.testing.assert_allclose(got[spec.name], exp, rtol=0, atol=_atol(exp), err_msg=spec.name)
    # a change outside the mask does not move the masked score; inside it does
    alt2 = alt.copy()
    alt2[:, [0, 3, 8, 12], :] += 100.0
    key = "DIFF_LOG2_SUM@100"
    assert np.array_equal(_compute(ref, alt2, specs[:1])[key], got[key])
    alt2[:, 4, :] += 100.0
    assert np.all(_compute(ref, alt2, specs[:1])[key] > got[key])


# ---- ScoreSpec ------------------------------------------------------------------------------


def test_score_spec_validation_and_names():
    s = ScoreSpec(stat="DIFF_LOG2_SUM", center_bp=501)
    assert s.name == "DIFF_LOG2_SUM@501" and s.is_signed
    assert "log2(1 + sum_p alt) - log2(1 + sum_p ref)" in s.formula and "501" in s.formula
    assert ScoreSpec.parse("DIFF_LOG2_SUM@501") == s
    assert ScoreSpec.parse("logD2") == ScoreSpec(stat="logD2")
    assert not ScoreSpec(stat="logD2").is_signed
    assert ScoreSpec(stat="logD2").strand_merge == "l2"
    assert ScoreSpec(stat="logSUM").strand_merge == "sum"
    hash(s)  # static jit argument
    with pytest.raises(ValueError, match="unknown track statistic"):
        ScoreSpec(stat="logsum")
    for bad in (0, -5, 1.5, True, "501"):
        with pytest.raises(ValueError, match="center_bp"):
            ScoreSpec(stat="SUM", center_bp=bad)
    with pytest.raises(ValueError, match="STAT@WIDTH_BP"):
        ScoreSpec.parse("SUM@x")
    with pytest.raises(TypeError):
        ScoreSpec("SUM")  # kw_only
    for name, info in tracks.STATS.items():
        assert info.formula and isinstance(info.signed, bool), name


def test_default_specs():
    names = [s.name for s in tracks.default_specs()]
    assert names == ["SUM", "logSUM", "logSED", "D2", "logD2", "DIFF_LOG2_SUM@501"]
    assert tracks.default_specs(center_bp=2001)[-1].name == "DIFF_LOG2_SUM@2001"
    got = tracks.default_specs(["logSUM", "DIFF_SUM", "L2_DIFF@11", "logSUM"], center_bp=97)
    assert [s.name for s in got] == ["logSUM", "DIFF_SUM@97", "L2_DIFF@11"]
    assert [s.name for s in tracks.default_specs(["DIFF_SUM"])] == ["DIFF_SUM"]
    with pytest.raises(ValueError, match="unknown track statistic"):
        tracks.default_specs(["nope"])
    with pytest.raises(ValueError, match="no track statistics"):
        tracks.default_specs([])


# ---- jit / batch invariance ----------------------------------------------------------------


def test_jit_batch_size_invariance():
    specs = ALL + (ScoreSpec(stat="DIFF_LOG2_SUM", center_bp=100),)
    fn = jax.jit(
        functools.partial(tracks.compute_track_stats, specs=specs, bin_size=BIN, window_len=WIN)
    )
    ref, alt = _preds(11, (64, P, T)), _preds(12, (64, P, T))
    full = {k: np.asarray(v) for k, v in fn(ref, alt).items()}
    for n in (1, 7):
        part = fn(ref[:n], alt[:n])
        bad = [k for k in full if not np.array_equal(np.asarray(part[k]), full[k][:n])]
        assert not bad, (n, bad)
    # the eager (op-by-op) path gives the same numbers
    eager = tracks.compute_track_stats(ref[:7], alt[:7], specs, bin_size=BIN, window_len=WIN)
    for k in full:
        np.testing.assert_allclose(
            np.asarray(eager[k]), full[k][:7], rtol=0, atol=_atol(full[k]), err_msg=k
        )


def test_shape_errors():
    with pytest.raises(ValueError, match="equal shape"):
        tracks.compute_track_stats(
            _preds(0), _preds(0)[:, :-1], ALL, bin_size=BIN, window_len=WIN
        )
    with pytest.raises(ValueError, match="does not fit"):
        tracks.compute_track_stats(_preds(0), _preds(1), ALL, bin_size=BIN, window_len=P * BIN - 1)


# ---- replicates -----------------------------------------------------------------------------


def test_replicated_is_mean_of_per_replicate_stats_with_shifted_masks():
    S = 3
    ref, alt = _preds(13, (S, B, P, T)), _preds(14, (S, B, P, T))
    specs = (ScoreSpec(stat="logSED"), ScoreSpec(stat="SUM", center_bp=96))
    shifts = (0, 16, -17)  # variant bins 6, 7, 5 -> masks [5,8), [6,9), [4,7)
    got = tracks.compute_track_stats_replicated(
        ref, alt, specs, bin_size=BIN, window_len=WIN, shifts_bp=shifts
    )
    exp_sed = np.mean([_reference("logSED", ref[s], alt[s]) for s in range(S)], axis=0)
    exp_sum = np.mean(
        [_reference("SUM", ref[s], alt[s], lo, lo + 3) for s, lo in zip(range(S), (5, 6, 4))],
        axis=0,
    )
    np.testing.assert_allclose(np.asarray(got["logSED"]), exp_sed, rtol=0, atol=_atol(exp_sed))
    np.testing.assert_allclose(np.asarray(got["SUM@96"]), exp_sum, rtol=0, atol=_atol(exp_sum))
    with pytest.raises(ValueError, match="shifts given"):
        tracks.compute_track_stats_replicated(
            ref, alt, specs, bin_size=BIN, window_len=WIN, shifts_bp=(0,)
        )


def test_average_predictions():
    stack = _preds(15, (4, B, P, T))
    exp = stack.astype(np.float64).mean(axis=0)
    for arg in (stack, list(stack), jnp.asarray(stack)):
        got = np.asarray(tracks.average_predictions(arg))
        np.testing.assert_allclose(got, exp, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="S, B, P, T"):
        tracks.average_predictions(stack[0])


# ---- reverse complement and strands ---------------------------------------------------------

PAIR = np.array([1, 0, 2, 4, 3, 5, 6])  # tracks 0/1 and 3/4 stranded


def test_rc_unflip_reverses_bins_and_swaps_pairs():
    x = _preds(16)
    got = np.asarray(tracks.rc_unflip(x, PAIR))
    for b in range(B):
        for p in range(P):
            for t in range(T):
                assert got[b, p, t] == x[b, P - 1 - p, PAIR[t]]
    np.testing.assert_array_equal(np.asarray(tracks.rc_unflip(got, PAIR)), x)


def test_rc_unflip_maps_rc_window_bins_to_forward_bins():
    # A "model" that reports, per bin, the sum of the forward coordinates it covers and, on a
    # +/- pair, the coordinate of its first/last input base: RC unflipped must equal forward.
    L, bs, nb = WIN, BIN, P
    off = (L - nb * bs) // 2
    pos = np.arange(L, dtype=np.float32)

    def model(coords):  # coords: forward coordinate of each input index
        bins = coords[off : off + nb * bs].reshape(nb, bs)
        # stranded tracks read the bin in input order: "+" its first base, "-" its last
        plus, minus = bins[:, 0], bins[:, -1]
        return np.stack([plus, minus, bins.sum(axis=1)], axis=-1)[None]

    fwd = model(pos)
    rc = model(pos[::-1])  # input index i of the RC window holds forward coordinate L-1-i
    # on RC the "+" track sees the max forward coordinate -> it is the forward "-" track
    unflipped = np.asarray(tracks.rc_unflip(rc, np.array([1, 0, 2])))
    np.testing.assert_array_equal(unflipped, fwd)


def test_strand_pair_validation():
    with pytest.raises(ValueError, match="symmetrically"):
        tracks.check_strand_pair(np.array([1, 2, 0]))
    with pytest.raises(ValueError, match="integer"):
        tracks.check_strand_pair(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="entries"):
        tracks.rc_unflip(_preds(0), np.array([0, 1]))


def test_collapse_strand_pairs_sum_and_l2():
    x = _preds(17, (B, T)) - 1.0
    got_sum = np.asarray(tracks.collapse_strand_pairs(x, PAIR))
    got_l2 = np.asarray(tracks.collapse_strand_pairs(x, PAIR, how="l2"))
    groups = [[0, 1], [2], [3, 4], [5], [6]]
    exp_sum = np.stack([x[:, g].sum(axis=1) for g in groups], axis=1)
    exp_l2 = np.stack([np.sqrt((x[:, g] ** 2).sum(axis=1)) for g in groups], axis=1)
    np.testing.assert_allclose(got_sum, exp_sum, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_l2, exp_l2, rtol=0, atol=1e-6)
    names = [f"t{i}" for i in range(T)]
    assert tracks.collapsed_track_names(names, PAIR) == ["t0", "t2", "t3", "t5", "t6"]
    specs = (ScoreSpec(stat="SUM"), ScoreSpec(stat="D2"))
    merged = tracks.merge_strands({"SUM": x, "D2": x}, specs, PAIR)
    np.testing.assert_array_equal(np.asarray(merged["SUM"]), got_sum)
    np.testing.assert_array_equal(np.asarray(merged["D2"]), got_l2)


def _read_targets():
    if not TARGETS_TXT.exists():
        pytest.skip("shared baskerville data not present")
    rows = [line.rstrip("\n").split("\t") for line in TARGETS_TXT.read_text().splitlines()]
    head, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(head)}
    return [
        {k: r[col[k]] for k in ("identifier", "clip_soft", "scale", "sum_stat", "strand_pair")}
        | {"index": int(r[0])}
        for r in body
    ]


def test_baskerville_targets_collapse_74_to_47():
    meta = _read_targets()
    pair = np.array([int(m["strand_pair"]) for m in meta])
    names = [m["identifier"] for m in meta]
    assert len(names) == 74
    merged = tracks.collapsed_track_names(names, pair)
    # baskerville targets_prep_strand keeps the rows whose strand is not "-"
    kept = [m["identifier"] for m in meta if not (int(m["strand_pair"]) != m["index"]
                                                  and m["identifier"].endswith("-"))]
    assert merged == kept and len(merged) == 47
    x = _preds(18, (2, 74))
    assert tracks.collapse_strand_pairs(x, pair).shape == (2, 47)


# ---- untransform ----------------------------------------------------------------------------


def _np_untransform(preds, meta, *, legacy, unscale=False, unclip=True):
    """Line-by-line numpy transcription of baskerville dataset.untransform_preds{,1}."""
    preds = preds.astype(np.float64).copy()
    cs = np.array([float(m["clip_soft"]) for m in meta])
    scale = np.array([float(m["scale"]) for m in meta])
    sqrt_mask = np.array(["_sqrt" in m["sum_stat"] for m in meta])
    if legacy:
        preds = preds / scale
        if unclip:
            preds = np.where(preds > cs, cs + (preds - cs) ** 2, preds)
        preds[..., sqrt_mask] = preds[..., sqrt_mask] ** (4 / 3)
        if not unscale:
            preds = preds * scale
        return preds
    if unclip:
        preds = np.where(preds > cs, cs - 1 + (preds - cs + 1) ** 2, preds)
    preds[..., sqrt_mask] = -1 + (preds[..., sqrt_mask] + 1) ** 2
    if unscale:
        preds = preds / scale
    return preds


def _synthetic_meta():
    return [
        {"clip_soft": 4.0, "scale": 0.3, "sum_stat": "sum_sqrt"},
        {"clip_soft": 2.0, "scale": 1.0, "sum_stat": "sum"},
        {"clip_soft": 8.0, "scale": 2.0, "sum_stat": "mean"},
        {"clip_soft": 1.5, "scale": 0.01, "sum_stat": "sum_sqrt"},
    ]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("unscale", [False, True])
def test_untransform_matches_numpy_transcription(legacy, unscale):
    meta = _synthetic_meta()
    x = _preds(19, (3, 11, 4)) * 2.0  # spans both sides of every clip_soft
    assert np.any(x > 8.0) and np.any(x < 1.5)
    got = np.asarray(tracks.untransform(jnp.asarray(x), meta, legacy=legacy, unscale=unscale))
    exp = _np_untransform(x, meta, legacy=legacy, unscale=unscale)
    np.testing.assert_allclose(got, exp, rtol=2e-6, atol=1e-5)
    got_nc = np.asarray(tracks.untransform(x, meta, legacy=legacy, unscale=unscale, unclip=False))
    exp_nc = _np_untransform(x, meta, legacy=legacy, unscale=unscale, unclip=False)
    np.testing.assert_allclose(got_nc, exp_nc, rtol=2e-6, atol=1e-5)


def test_untransform_hand_values():
    meta = [{"clip_soft": 4.0, "scale": 0.5, "sum_stat": "sum_sqrt"}]
    x = np.array([[[1.0], [6.0]]], np.float32)
    # new: 1 -> (1+1)^2-1 = 3; 6 -> 4-1+(6-4+1)^2 = 12 -> (12+1)^2-1 = 168
    np.testing.assert_allclose(np.asarray(tracks.untransform(x, meta))[0, :, 0], [3.0, 168.0])
    # legacy: 1/0.5 = 2 -> 2^(4/3) * 0.5; 6/0.5 = 12 -> 4+8^2 = 68 -> 68^(4/3) * 0.5
    np.testing.assert_allclose(
        np.asarray(tracks.untransform(x, meta, legacy=True))[0, :, 0],
        [0.5 * 2 ** (4 / 3), 0.5 * 68 ** (4 / 3)],
        rtol=1e-6,
    )


def test_untransform_with_baskerville_targets_and_errors():
    meta = _read_targets()
    x = _preds(20, (2, 3, 74)) * 40.0
    got = np.asarray(jax.jit(lambda v: tracks.untransform(v, meta, legacy=True))(x))
    exp = _np_untransform(x, meta, legacy=True)
    np.testing.assert_allclose(got, exp, rtol=5e-6, atol=1e-4)
    with pytest.raises(ValueError, match="track descriptions"):
        tracks.untransform(x, meta[:-1])
    bad = [dict(m) for m in meta]
    del bad[3]["clip_soft"]
    with pytest.raises(ValueError, match="clip_soft"):
        tracks.untransform(x, bad)


# ---- indel stitching ------------------------------------------------------------------------


def test_stitch_predictions_splits_at_variant_bin():
    left, right = _preds(21), _preds(22)
    got = np.asarray(tracks.stitch_predictions(left, right, bin_size=BIN, window_len=WIN))
    np.testing.assert_array_equal(got[:, :6], left[:, :6])
    np.testing.assert_array_equal(got[:, 6:], right[:, 6:])
