"""Choosing the truth variants of each class (effects come from TruthModel.effect)."""

from __future__ import annotations

import numpy as np

from veff.simulate.config import SimulationConfig
from veff.simulate.genome import Element
from veff.simulate.motifs import most_informative_column
from veff.simulate.signal import Sites
from veff.simulate.truth import TruthModel, TruthVariant, left_align_deletion, tokens_str
from veff.types import N


def near_site_mask(length: int, sites: Sites, widths: np.ndarray, extra, distance: int):
    """True within ``distance`` bp of any site (found sites plus ``extra`` (start, width))."""
    diff = np.zeros(length + 1, dtype=np.int64)
    starts = np.concatenate([sites.start, np.array([s for s, _ in extra], dtype=np.int64)])
    ends = np.concatenate(
        [sites.start + widths[sites.motif], np.array([s + w for s, w in extra], dtype=np.int64)]
    )
    np.add.at(diff, np.clip(starts - distance, 0, length), 1)
    np.add.at(diff, np.clip(ends + distance, 0, length), -1)
    return np.cumsum(diff[:-1]) > 0


class VariantPicker:
    """Holds the genome state needed to choose variants without re-deriving it per class."""

    def __init__(
        self,
        rng: np.random.Generator,
        cfg: SimulationConfig,
        truth: TruthModel,
        contigs: list[np.ndarray],
        elements: list[Element],
        sites: list[Sites],
        acc: list[np.ndarray],
        rate: list[np.ndarray],
        hotspots: list[tuple[int, int]] = (),
    ) -> None:
        self.rng, self.cfg, self.truth = rng, cfg, truth
        self.hotspots = list(hotspots)
        self.contigs, self.elements, self.acc, self.rate = contigs, elements, acc, rate
        widths = np.array([m.width for m in truth.models], dtype=np.int64)
        self.used: set[tuple[int, int]] = set()
        self.rate_cumsum = [np.concatenate([[0.0], np.cumsum(r)]) for r in rate]
        self.near = []
        for c, tokens in enumerate(contigs):
            latent = [
                (e.latent.start, truth.models[e.latent.motif].width)
                for e in elements
                if e.contig == c and e.latent is not None
            ]
            self.near.append(
                near_site_mask(tokens.size, sites[c], widths, latent, cfg.flank_min_site_distance)
            )

    # ---- motif classes -------------------------------------------------------------------

    def _break_position(self, e: Element, site) -> tuple[int, int, int]:
        model = self.truth.models[site.motif]
        col = most_informative_column(model.motif.probs)
        worst = int(np.argmin(model.motif.probs[col]))
        if site.strand == "+":
            return col, site.start + col, worst
        return col, site.start + model.width - 1 - col, 3 - worst

    def motif_breaks(self, elements: list[Element], num: int, indel: bool) -> list[TruthVariant]:
        out: list[TruthVariant] = []
        for e in elements:
            if len(out) == num:
                break
            site = e.sites[int(self.rng.integers(len(e.sites)))]
            model = self.truth.models[site.motif]
            tokens = self.contigs[e.contig]
            _, pos, worst = self._break_position(e, site)
            if indel:
                length = int(self.rng.integers(2, 5))
                start = pos - int(self.rng.integers(0, length))
                start = min(max(start, site.start), site.start + model.width - length)
                start = left_align_deletion(tokens, start, length)
                anchor = start - 1
                ref, alt = tokens[anchor : start + length], tokens[anchor : anchor + 1]
                acc_fc, obs_fc = self.truth.effect(tokens, anchor, ref.size, alt)
                key = (e.contig, anchor)
            else:
                anchor = pos
                ref, alt = tokens[pos : pos + 1], np.array([worst], dtype=np.uint8)
                acc_fc, obs_fc = self.truth.effect(tokens, pos, 1, alt)
                key = (e.contig, pos)
            if acc_fc > -self.cfg.min_causal_logfc or key in self.used:
                continue
            self.used.add(key)
            out.append(
                TruthVariant(
                    contig=e.contig,
                    pos1=anchor + 1,
                    ref=tokens_str(ref),
                    alt=tokens_str(alt),
                    klass="motif_break_indel" if indel else "motif_break",
                    effect="-",
                    acc_logfc=acc_fc,
                    obs_logfc=obs_fc,
                    motif=model.motif.id,
                    site_start0=site.start,
                    site_strand=site.strand,
                    element=e.index,
                )
            )
        return out

    def motif_creates(self, num: int) -> list[TruthVariant]:
        out: list[TruthVariant] = []
        for e in self.elements:
            if e.latent is None or len(out) == num:
                continue
            site = e.latent
            tokens = self.contigs[e.contig]
            alt = np.array([site.restored_base], dtype=np.uint8)
            acc_fc, obs_fc = self.truth.effect(tokens, site.genome_pos, 1, alt)
            if acc_fc < self.cfg.min_causal_logfc:
                continue
            self.used.add((e.contig, site.genome_pos))
            out.append(
                TruthVariant(
                    contig=e.contig,
                    pos1=site.genome_pos + 1,
                    ref=tokens_str(tokens[site.genome_pos : site.genome_pos + 1]),
                    alt=tokens_str(alt),
                    klass="motif_create",
                    effect="+",
                    acc_logfc=acc_fc,
                    obs_logfc=obs_fc,
                    motif=self.truth.models[site.motif].motif.id,
                    site_start0=site.start,
                    site_strand=site.strand,
                    element=e.index,
                )
            )
        return out

    # ---- Tn5 and neutral -----------------------------------------------------------------

    def flank_candidates(self, e: Element) -> np.ndarray:
        """Accessible positions of an element that are far from every site."""
        reach = self.truth.params.reach
        lo, hi = e.centre - reach, e.centre + reach
        acc = self.acc[e.contig][lo:hi]
        bg = self.truth.params.background
        x = np.arange(lo, hi)
        ok = (acc - bg >= self.cfg.flank_min_acc_frac * (acc.max() - bg)) & ~self.near[e.contig][lo:hi]
        return x[ok]

    def _tn5_deltas(self, c: int, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fast first pass: OBS_LOGFC of the best bias-lowering ALT at each position."""
        tokens, w = self.contigs[c], self.truth.tn5_weights
        k, half = w.shape[0], w.shape[0] // 2
        biased = self.rate[c] - self.truth.noise * (tokens != N)  # depth * A * b
        csum = self.rate_cumsum[c]
        h = self.truth.window // 2
        totals = csum[np.minimum(xs + h, tokens.size)] - csum[np.maximum(xs - h, 0)]
        ref = tokens[xs]
        best_fc = np.zeros(xs.size)
        best_alt = np.zeros(xs.size, dtype=np.uint8)
        for a in range(4):
            change = np.zeros(xs.size)
            for j in range(k):
                y = xs - j + half  # the window centred at y holds x at offset j
                change += biased[y] * np.expm1(w[j, a] - w[j, ref])
            fc = np.where(ref == a, 0.0, np.log1p(change / totals))
            better = fc < best_fc
            best_fc = np.where(better, fc, best_fc)
            best_alt = np.where(better, a, best_alt)
        return best_fc, best_alt

    def background_run(self, c: int, xs: np.ndarray) -> np.ndarray:
        """True where A == a_bg exactly over the whole truth window centred on each x."""
        pure = self.acc[c] == self.truth.params.background
        csum = np.concatenate([[0], np.cumsum(~pure)])
        h = self.truth.window // 2
        lo, hi = np.maximum(xs - h, 0), np.minimum(xs + h, pure.size)
        return (csum[hi] - csum[lo]) == 0

    def tn5_variants(self, num: int) -> list[TruthVariant]:
        """The most bias-lowering SNV inside each background hotspot (A == a_bg over the window).

        In the background the observed cuts are depth * a_bg * b: the Tn5 bias is the only
        thing that varies, which is the regime the bias model is trained on (non-peaks)."""
        k = self.truth.tn5_weights.shape[0]
        proposals = []
        for c, start in self.hotspots:
            xs = np.arange(start, start + k)
            xs = xs[self.background_run(c, xs) & ~self.near[c][xs]]
            if xs.size == 0:
                continue  # a chance site opened chromatin near this hotspot
            fc, alt = self._tn5_deltas(c, xs)
            i = int(np.argmin(fc))
            proposals.append((fc[i], c, int(xs[i]), int(alt[i])))
        proposals.sort(key=lambda p: (p[0], p[1], p[2]))
        out: list[TruthVariant] = []
        for _, c, x, a in proposals:
            if len(out) == num:
                break
            tokens = self.contigs[c]
            acc_fc, obs_fc = self.truth.effect(tokens, x, 1, np.array([a], dtype=np.uint8))
            if acc_fc != 0.0 or (c, x) in self.used:
                continue
            self.used.add((c, x))
            out.append(
                TruthVariant(
                    contig=c,
                    pos1=x + 1,
                    ref=tokens_str(tokens[x : x + 1]),
                    alt=tokens_str(np.array([a])),
                    klass="tn5_bias",
                    effect="-" if obs_fc < 0 else "+",
                    acc_logfc=acc_fc,
                    obs_logfc=obs_fc,
                )
            )
        return out

    def neutrals(self, num: int) -> list[TruthVariant]:
        """Half in accessible peak flanks, half in the background; no change to any site."""
        out: list[TruthVariant] = []
        num_flank = num // 2
        margin = self.cfg.edge_margin
        for attempt in range(200 * num + 1000):
            if len(out) == num:
                break
            in_flank = len(out) < num_flank
            element = None
            if in_flank:
                element = self.elements[int(self.rng.integers(len(self.elements)))]
                xs = self.flank_candidates(element)
                if xs.size == 0:
                    continue
                c, x = element.contig, int(xs[int(self.rng.integers(xs.size))])
            else:
                c = int(self.rng.integers(len(self.contigs)))
                x = int(self.rng.integers(margin, self.contigs[c].size - margin))
                if self.near[c][x]:
                    continue
            tokens = self.contigs[c]
            ref = int(tokens[x])
            alt = int((ref + self.rng.integers(1, 4)) % 4)
            acc_fc, obs_fc = self.truth.effect(tokens, x, 1, np.array([alt], dtype=np.uint8))
            if acc_fc != 0.0 or abs(obs_fc) > self.cfg.neutral_max_obs_logfc:
                continue
            if (c, x) in self.used:
                continue
            self.used.add((c, x))
            out.append(
                TruthVariant(
                    contig=c,
                    pos1=x + 1,
                    ref=ALPHA[ref],
                    alt=ALPHA[alt],
                    klass="neutral",
                    effect="0",
                    acc_logfc=acc_fc,
                    obs_logfc=obs_fc,
                    element=element.index if element is not None else None,
                )
            )
        return out


ALPHA = "ACGT"
