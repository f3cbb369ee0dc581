"""True accessibility as a pure function of sequence: PWM occupancy -> footprinted bumps.

occ(site)  = sigmoid((score - theta_m) / tau), best strand per window start, kept if >= occ_min
A(x)       = a_bg + sum_sites occ * shape(x - centre),   A = 0 on N bases
shape(d)   = exp(-d^2 / 2 sigma^2) * (1 - depth_fp * exp(-d^2 / 2 sigma_fp^2)),  |d| <= reach
sigma_fp   = W / 2 of the motif (the bound protein protects its own site).

Sites below occ_min are dropped so a variant far from every site changes A by exactly zero.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from veff.simulate.motifs import Motif, log_odds, reverse_complement_matrix, scan
from veff.types import N


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessibilityParams:
    """Occupancy and footprint shape; see docs/simulation.md for the formulas."""

    pseudocount: float = 0.01
    theta_offset: float = 3.0  # theta_m = max log-odds score of motif m - theta_offset (nats)
    tau: float = 0.5  # sigmoid temperature (nats)
    occ_min: float = 1e-3
    sigma: float = 150.0  # bp, width of the accessible bump around a bound site
    reach: int = 600  # bp, bump truncated beyond this distance (exact zero)
    footprint_depth: float = 0.8
    background: float = 0.02  # a_bg, accessibility everywhere (gives non-peaks Tn5 cuts)

    def __post_init__(self) -> None:
        if not (self.tau > 0 and self.sigma > 0 and self.reach > 0):
            raise ValueError("tau, sigma and reach must be positive")
        if not 0 <= self.footprint_depth < 1:
            raise ValueError("footprint_depth must be in [0, 1)")
        if not 0 < self.occ_min < 1:
            raise ValueError("occ_min must be in (0, 1)")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class MotifModel:
    """A motif with its log-odds matrix (nats, against the genome background) and threshold."""

    motif: Motif
    lo: np.ndarray
    theta: float

    @classmethod
    def build(
        cls, motif: Motif, background: np.ndarray, params: AccessibilityParams
    ) -> MotifModel:
        lo = log_odds(motif.probs, background, params.pseudocount)
        return cls(motif=motif, lo=lo, theta=float(lo.max(axis=1).sum()) - params.theta_offset)

    @property
    def width(self) -> int:
        return self.motif.width

    def occupancy(self, score: np.ndarray | float, params: AccessibilityParams):
        return 1.0 / (1.0 + np.exp(-(np.asarray(score) - self.theta) / params.tau))


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Sites:
    """Bound sites of one sequence, sorted by (start, motif). All arrays have length S."""

    start: np.ndarray  # int64, 0-based window start
    motif: np.ndarray  # int64, index into the MotifModel tuple
    strand: np.ndarray  # '<U1', '+' or '-'
    score: np.ndarray  # float64, log-odds on the best strand
    occ: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.start.shape[0])


def find_sites(
    tokens: np.ndarray, models: tuple[MotifModel, ...], params: AccessibilityParams
) -> Sites:
    """Every window whose best-strand occupancy is >= occ_min, for every motif."""
    starts, idx, strands, scores = [], [], [], []
    for m, model in enumerate(models):
        fwd = scan(tokens, model.lo)
        rev = scan(tokens, reverse_complement_matrix(model.lo))
        best = np.maximum(fwd, rev)
        keep = np.nonzero(model.occupancy(best, params) >= params.occ_min)[0]
        starts.append(keep)
        idx.append(np.full(keep.shape, m))
        strands.append(np.where(fwd[keep] >= rev[keep], "+", "-"))
        scores.append(best[keep])
    start = np.concatenate(starts).astype(np.int64)
    motif = np.concatenate(idx).astype(np.int64)
    order = np.lexsort((motif, start))
    score = np.concatenate(scores)[order]
    occ = np.array(
        [models[m].occupancy(s, params) for m, s in zip(motif[order], score)], dtype=np.float64
    )
    return Sites(
        start=start[order],
        motif=motif[order],
        strand=np.concatenate(strands).astype("<U1")[order],
        score=score,
        occ=occ,
    )


def site_shape(offsets: np.ndarray, width: int, params: AccessibilityParams) -> np.ndarray:
    """shape(d) for distances d (bp, float) from a site centre; zero beyond reach."""
    d2 = offsets * offsets
    bump = np.exp(-d2 / (2.0 * params.sigma**2))
    sigma_fp = width / 2.0
    dip = 1.0 - params.footprint_depth * np.exp(-d2 / (2.0 * sigma_fp**2))
    return np.where(np.abs(offsets) <= params.reach, bump * dip, 0.0)


def accessibility(
    tokens: np.ndarray,
    sites: Sites,
    models: tuple[MotifModel, ...],
    params: AccessibilityParams,
) -> np.ndarray:
    """True per-base accessibility A(x) of a sequence given its bound sites, float64 (L,)."""
    length = tokens.shape[0]
    acc = np.full(length, params.background, dtype=np.float64)
    for start, m, occ in zip(sites.start, sites.motif, sites.occ):
        width = models[m].width
        centre = start + (width - 1) / 2.0  # same centre on either strand
        lo = max(0, int(np.floor(centre - params.reach)))
        hi = min(length, int(np.ceil(centre + params.reach)) + 1)
        x = np.arange(lo, hi, dtype=np.float64)
        acc[lo:hi] += occ * site_shape(x - centre, width, params)
    acc[tokens == N] = 0.0
    return acc
