"""fp32 track statistics on large, nearly equal REF/ALT predictions, against float64.

A variant effect is small next to the predictions it is the difference of. The statistics
must be accurate relative to the *effect* (|veff - f64| / |effect|), not relative to the sums
of REF and ALT: this is what the difference-first arithmetic in veff/scoring/tracks.py buys,
and the old "difference of two fp32 sums" arithmetic (transcribed here) fails the same check.

Inputs: P = 4096 bins of REF ~ 1e4 (fp32 ulp there 2^-10 ~ 1e-3) and ALT = REF + k ulp with
small integer k, so ALT - REF is exact in fp32 and the effect is ~1e-7 of the sums.

Tolerance: a pairwise sum of n terms (``_bin_sum``) is within ceil(log2 n) eps * sum |t| of the
exact sum; each per-bin term (a difference, a log ratio via log1p, a sqrt difference via a
quotient) carries at most a few eps of its own size. So |error| / |effect| <= C * eps *
log2(P) * kappa with kappa = sum_p |t_p| / |sum_p t_p| (1 for one-signed terms) and C = 4.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from veff.scoring import tracks
from veff.scoring.tracks import ScoreSpec

P, BIN = 4096, 32
WIN = P * BIN
EPS = float(np.finfo(np.float32).eps)
TOL = 4 * EPS * math.log2(P)  # 5.7e-6

# statistics that are effects (ACTIVE_* are activities, not differences)
EFFECTS = tuple(s for s in tracks.STATS if not s.startswith("ACTIVE"))


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(2, P, 3) REF ~ U[1e4, 1.1e4) and ALT = REF + k ulp: k in {0..3} (track 0),
    {-3..0} (track 1), {-2..3} (track 2, mixed sign)."""
    rng = np.random.default_rng(seed)
    ref = (1e4 * (1 + 0.1 * rng.random((2, P, 3)))).astype(np.float32)
    k = np.stack(
        [rng.integers(0, 4, (2, P)), rng.integers(-3, 1, (2, P)), rng.integers(-2, 4, (2, P))],
        axis=-1,
    )
    alt = (ref.astype(np.float64) + k * np.spacing(ref).astype(np.float64)).astype(np.float32)
    assert np.array_equal(alt.astype(np.float64) - ref, k * np.spacing(ref).astype(np.float64))
    return ref, alt


# ---- float64 references (numpy, written from docs/scores_tracks.md) -------------------------


def _terms(stat: str, r: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """Per-bin terms t_p (B, P, T) whose sum is the statistic (None: not a plain sum)."""
    if stat in ("SUM", "DIFF_SUM", "DIFF_MEAN", "D1"):
        t = a - r
    elif stat in ("logSUM", "DIFF_SUM_LOG2", "logD1"):
        t = (np.log1p(a) - np.log1p(r)) / np.log(2)
    elif stat in ("sqrtSUM", "sqrtD1"):
        t = np.sqrt(a) - np.sqrt(r)
    else:
        return None
    return np.abs(t) if stat.endswith("D1") else t


def _f64(stat: str, r: np.ndarray, a: np.ndarray) -> np.ndarray:
    r, a = r.astype(np.float64), a.astype(np.float64)
    terms = _terms(stat, r, a)
    if terms is not None:
        return terms.sum(1) / (P if stat == "DIFF_MEAN" else 1)
    log2 = lambda x: np.log1p(x) / np.log(2)  # noqa: E731
    match stat:
        case "logSED" | "DIFF_LOG2_SUM":
            return log2(a.sum(1)) - log2(r.sum(1))
        case "SAX":
            d = a - r
            return np.take_along_axis(d, np.argmax(np.abs(d), 1)[:, None], 1)[:, 0]
        case "D2" | "L2_DIFF":
            return np.sqrt(((a - r) ** 2).sum(1))
        case "logD2":
            return np.sqrt(((log2(a) - log2(r)) ** 2).sum(1))
        case "sqrtD2":
            return np.sqrt(((np.sqrt(a) - np.sqrt(r)) ** 2).sum(1))
        case "L2_DIFF_LOG1P":
            return np.sqrt(((np.log1p(a) - np.log1p(r)) ** 2).sum(1))
        case "JS":
            # The textbook form cancels to ~(effect)^2: in float64 its log-ratio rounding alone
            # is ~3e-4 of JS here, so it is evaluated in x87 extended precision (eps 1.1e-19).
            r, a = r.astype(np.longdouble), a.astype(np.longdouble)
            c = np.percentile(r, 25, axis=1, keepdims=True)
            rn = (r + c) / (r + c).sum(1, keepdims=True)
            an = (a + c) / (a + c).sum(1, keepdims=True)
            js = 0.5 * ((rn * np.log(rn / an)).sum(1) + (an * np.log(an / rn)).sum(1))
            return js.astype(np.float64)
    raise AssertionError(stat)


def _kappa(stat: str, r: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Condition number of the final sum: sum |t_p| / |sum t_p| (1 for one-signed terms)."""
    terms = _terms(stat, r.astype(np.float64), a.astype(np.float64))
    if terms is None and stat in ("logSED", "DIFF_LOG2_SUM"):
        terms = a.astype(np.float64) - r
    if terms is None:
        return np.ones((r.shape[0], r.shape[2]))
    return np.abs(terms).sum(1) / np.abs(terms.sum(1))


def _rel_err(got, exp) -> np.ndarray:
    return np.abs(np.asarray(got, np.float64) - exp) / np.abs(exp)


# ---- the old arithmetic (difference of two fp32 sums), for contrast -------------------------


def _old(stat: str, r: jax.Array, a: jax.Array) -> jax.Array:
    s, inv_ln2 = tracks._bin_sum, 1 / math.log(2)
    match stat:
        case "SUM":
            return s(a) - s(r)
        case "logSUM":
            return (s(jnp.log1p(a)) - s(jnp.log1p(r))) * inv_ln2
        case "sqrtSUM":
            return s(jnp.sqrt(a)) - s(jnp.sqrt(r))
        case "logSED":
            return (jnp.log1p(s(a)) - jnp.log1p(s(r))) * inv_ln2
        case "JS":
            c = tracks._percentile25(r)[:, None]
            rn, an = (r + c) / s(r + c)[:, None], (a + c) / s(a + c)[:, None]
            rel = jax.scipy.special.rel_entr
            return 0.5 * (s(rel(rn, an)) + s(rel(an, rn)))
    raise AssertionError(stat)


# ---- tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored():
    if np.finfo(np.longdouble).eps > 1e-18:
        pytest.skip("no extended-precision long double here for the JS reference")
    ref, alt = _inputs()
    fn = jax.jit(tracks.compute_track_stats, static_argnames=("specs", "bin_size", "window_len"))
    specs = tuple(ScoreSpec(stat=s) for s in EFFECTS)
    got = fn(ref, alt, specs, bin_size=BIN, window_len=WIN)
    return ref, alt, {k: np.asarray(v) for k, v in got.items()}


@pytest.mark.parametrize("stat", EFFECTS)
def test_statistic_error_is_small_relative_to_the_effect(scored, stat):
    ref, alt, got = scored
    exp = _f64(stat, ref, alt)
    assert np.all(np.abs(exp) > 0)
    err = _rel_err(got[stat], exp)
    bound = TOL * _kappa(stat, ref, alt)
    assert np.all(err <= bound), (stat, err.max(), bound.min())


@pytest.mark.parametrize("stat", ["SUM", "logSUM", "sqrtSUM", "logSED", "JS"])
def test_old_difference_of_sums_fails_the_same_check(scored, stat):
    ref, alt, _ = scored
    old = np.asarray(jax.jit(_old, static_argnums=0)(stat, jnp.asarray(ref), jnp.asarray(alt)))
    err = _rel_err(old, _f64(stat, ref, alt))
    # not merely over the bound: off by a sizeable fraction of the effect somewhere
    assert np.max(err / (TOL * _kappa(stat, ref, alt))) > 100, (stat, err.max())


def test_rc_pair_averages_differences():
    """Averaging forward and RC predictions first rounds the means to eps of the predictions;
    rc_average_pair's averaged difference keeps SUM accurate relative to the effect."""
    ref, alt = _inputs(1)
    ref_rc, alt_rc = _inputs(2)
    pair = np.arange(3)
    fwd = lambda x: x[:, ::-1]  # noqa: E731 - what rc_unflip does with identity strand pairs
    r64 = 0.5 * (ref.astype(np.float64) + fwd(ref_rc))
    a64 = 0.5 * (alt.astype(np.float64) + fwd(alt_rc))
    exp = (a64 - r64).sum(1)
    r, a, d = tracks.rc_average_pair(ref, alt, ref_rc, alt_rc, pair)
    spec = (ScoreSpec(stat="SUM"),)
    new = tracks.compute_track_stats(r, a, spec, bin_size=BIN, window_len=WIN, diff=d)["SUM"]
    old = tracks.compute_track_stats(r, a, spec, bin_size=BIN, window_len=WIN)["SUM"]
    kappa = np.abs(a64 - r64).sum(1) / np.abs(exp)
    assert np.all(_rel_err(new, exp) <= TOL * kappa)
    assert np.max(_rel_err(old, exp) / (TOL * kappa)) > 10
    # swap still negates exactly, REF == ALT still gives exactly 0
    r2, a2, d2 = tracks.rc_average_pair(alt, ref, alt_rc, ref_rc, pair)
    swapped = tracks.compute_track_stats(r2, a2, spec, bin_size=BIN, window_len=WIN, diff=d2)
    np.testing.assert_array_equal(np.asarray(swapped["SUM"]), -np.asarray(new))
    r3, a3, d3 = tracks.rc_average_pair(ref, ref, ref_rc, ref_rc, pair)
    zero = tracks.compute_track_stats(r3, a3, spec, bin_size=BIN, window_len=WIN, diff=d3)
    np.testing.assert_array_equal(np.asarray(zero["SUM"]), 0.0)


def test_log_ratio_far_from_one_and_at_zero():
    """The cancellation-safe log ratio keeps the plain form's values where REF or ALT is 0 or
    the ratio is large (the atanh form would round 1 - x to 0)."""
    # one bin, one case per track
    ref = np.array([0.0, 0.0, 1e7, 3.0, 0.0, 1e4], np.float32).reshape(1, 1, 6)
    alt = np.array([1e7, 0.0, 0.0, 3.5, 2.0, 2e4], np.float32).reshape(1, 1, 6)
    got = tracks.compute_track_stats(
        ref, alt, (ScoreSpec(stat="logSUM"), ScoreSpec(stat="sqrtSUM"), ScoreSpec(stat="logD2")),
        bin_size=1, window_len=1,
    )
    r, a = ref.astype(np.float64), alt.astype(np.float64)
    for name, exp in (
        ("logSUM", ((np.log1p(a) - np.log1p(r)) / np.log(2)).sum(1)),
        ("sqrtSUM", (np.sqrt(a) - np.sqrt(r)).sum(1)),
        ("logD2", np.sqrt((((np.log1p(a) - np.log1p(r)) / np.log(2)) ** 2).sum(1))),
    ):
        np.testing.assert_allclose(np.asarray(got[name]), exp, rtol=4 * EPS, atol=0, err_msg=name)
