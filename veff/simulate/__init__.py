"""``veff simulate``: a seeded ATAC-seq ground truth with known causal and Tn5-only variants.

    result = simulate("sim/", seed=0)          # or simulate("sim/", config=SimulationConfig.tiny())

The generative model (real JASPAR PWMs -> occupancy -> footprinted accessibility -> x Tn5 k-mer
bias -> Poisson cuts -> fragments) and every file written are described in docs/simulation.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from veff.simulate.config import DEFAULT_MOTIF_IDS, SimulationConfig
from veff.simulate.genome import (
    background_probs,
    plant_elements,
    plant_hotspots,
    random_contigs,
    write_fasta,
)
from veff.simulate.motifs import DEFAULT_MEME, read_meme
from veff.simulate.outputs import (
    choose_nonpeaks,
    pair_cuts,
    peak_intervals,
    write_bigwig,
    write_fragments,
    write_nonpeaks,
    write_peaks,
    write_sites,
)
from veff.simulate.signal import MotifModel, accessibility, find_sites
from veff.simulate.tn5 import log_bias, normaliser
from veff.simulate.truth import CLASSES, TruthModel, write_vcf
from veff.simulate.variants import VariantPicker, near_site_mask
from veff.types import N

__all__ = ["DEFAULT_MOTIF_IDS", "SimulationConfig", "SimulationResult", "simulate"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulationResult:
    """Paths of every file written and summary counts."""

    out_dir: Path
    genome: Path
    chrom_sizes: Path
    cuts: Path
    accessibility: Path
    tn5_bias: Path
    fragments: Path
    peaks: Path
    nonpeaks: Path
    variants: Path
    sites: Path
    summary: Path
    num_cuts: int
    num_fragments: int
    num_peaks: int
    num_nonpeaks: int
    num_sites: int
    variant_counts: dict[str, int]


def simulate(
    out_dir: str | Path, *, config: SimulationConfig | None = None, **overrides
) -> SimulationResult:
    """Write a simulation into ``out_dir``; keyword overrides replace config fields (seed=...)."""
    cfg = dataclasses.replace(config or SimulationConfig(), **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng_genome, rng_elements, rng_cuts, rng_variants, rng_regions, rng_frag = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(6)
    )

    by_id = {m.id: m for m in read_meme(DEFAULT_MEME)}
    missing = [i for i in cfg.motif_ids if i not in by_id]
    if missing:
        raise ValueError(f"motif ids not in {DEFAULT_MEME.name}: {', '.join(missing)}")
    background = background_probs(cfg.gc)
    params = cfg.accessibility
    models = tuple(MotifModel.build(by_id[i], background, params) for i in cfg.motif_ids)

    contigs = random_contigs(
        rng_genome,
        num_contigs=cfg.num_contigs,
        contig_len=cfg.contig_len,
        gc=cfg.gc,
        n_run=cfg.n_run,
    )
    names = [f"chr{i + 1}" for i in range(cfg.num_contigs)]
    # extra latent sites because a few creations fall short of min_causal_logfc
    num_latent = min(cfg.num_peaks, cfg.num_motif_create + cfg.num_motif_create // 4 + 2)
    latent = frozenset(rng_elements.choice(cfg.num_peaks, size=num_latent, replace=False).tolist())
    elements = plant_elements(
        rng_elements,
        contigs,
        models,
        params,
        num_peaks=cfg.num_peaks,
        min_spacing=cfg.min_peak_spacing,
        margin=cfg.edge_margin,
        max_sites=cfg.max_sites_per_peak,
        site_spread=cfg.site_spread,
        planted_min_occ=cfg.planted_min_occ,
        latent_elements=latent,
    )
    # Tn5 hotspots live in the background, where the bias model owns the counts: the truth
    # window around each one has accessibility exactly a_bg (docs/groundtruth.md). Sites are
    # scanned before planting (chance matches open chromatin too) and again after.
    margin = cfg.edge_margin
    free = []
    for t in contigs:
        f = accessibility(t, find_sites(t, models, params), models, params) == params.background
        f[:margin] = False
        f[t.size - margin :] = False
        free.append(f)
    hotspots = plant_hotspots(
        rng_elements,
        contigs,
        free,
        num=cfg.num_tn5_bias + cfg.num_tn5_bias // 4 + 2,
        kmer=cfg.tn5.best_kmer(),
        clearance=cfg.window // 2 + cfg.tn5.k,
    )
    # Background Tn5 hotspots at large (strong IUPAC instances, not the variants' loci): they
    # make non-peak counts depend on sequence, which is what the bias model's count head
    # learns from; without them a 256-bp background window sums ~250 weak bases and its
    # counts barely vary (docs/groundtruth.md).
    num_decoys = int(round(cfg.tn5_hotspots_per_kb * sum(t.size for t in contigs) / 1000))
    plant_hotspots(
        rng_elements,
        contigs,
        free,
        num=num_decoys,
        kmer=cfg.tn5.sample_kmers(rng_elements, num_decoys),
        clearance=cfg.tn5.k,
    )

    sites = [find_sites(t, models, params) for t in contigs]
    acc = [accessibility(t, s, models, params) for t, s in zip(contigs, sites)]
    weights = cfg.tn5.log_weights()
    log_b = [log_bias(t, weights) for t in contigs]
    truth = TruthModel(
        models=models,
        params=params,
        tn5_weights=weights,
        log_norm=normaliser(log_b),
        depth=cfg.depth,
        noise=cfg.noise,
        window=cfg.window,
    )
    rate = [truth.rate(t, a) for t, a in zip(contigs, acc)]
    bias = [np.exp(lb - truth.log_norm) for lb in log_b]

    cuts = [rng_cuts.poisson(r).astype(np.int64) for r in rate]
    for c in cuts:  # every cut must belong to a fragment: drop the last one of an odd contig
        if c.sum() % 2:
            c[np.nonzero(c)[0][-1]] -= 1

    peaks = peak_intervals(elements, acc, params.background, params.reach)
    widths = np.array([m.width for m in models], dtype=np.int64)
    blocked = []
    for c, t in enumerate(contigs):
        mask = near_site_mask(t.size, sites[c], widths, [], cfg.nonpeak_clearance) | (t == N)
        for pc, s, e, _ in peaks:
            if pc == c:
                mask[max(0, s - cfg.nonpeak_clearance) : e + cfg.nonpeak_clearance] = True
        for hc, h in hotspots:  # tn5_bias variants are scored at loci no model trained on
            if hc == c:
                mask[max(0, h - cfg.window // 2) : h + cfg.window // 2] = True
        blocked.append(mask)
    nonpeaks = choose_nonpeaks(
        rng_regions, cfg.num_peaks, [t.size for t in contigs], blocked, cfg.nonpeak_width, cfg.edge_margin
    )

    picker = VariantPicker(rng_variants, cfg, truth, contigs, elements, sites, acc, rate, hotspots)
    order = [elements[i] for i in rng_variants.permutation(len(elements))]
    variants = picker.motif_breaks(order, cfg.num_motif_break, indel=False)
    done = {v.element for v in variants}
    rest = [e for e in order if e.index not in done]
    variants += picker.motif_breaks(rest, cfg.num_motif_break_indel, indel=True)
    variants += picker.motif_creates(cfg.num_motif_create)
    variants += picker.tn5_variants(cfg.num_tn5_bias)
    variants += picker.neutrals(cfg.num_neutral)
    counts = {k: sum(v.klass == k for v in variants) for k in CLASSES}
    wanted = {
        "motif_break": cfg.num_motif_break,
        "motif_break_indel": cfg.num_motif_break_indel,
        "motif_create": cfg.num_motif_create,
        "tn5_bias": cfg.num_tn5_bias,
        "neutral": cfg.num_neutral,
    }
    short = [f"{k} {counts[k]}/{n}" for k, n in wanted.items() if counts[k] < n]
    if short:
        raise ValueError(f"could not place every truth variant ({', '.join(short)}); add peaks")

    paths = {
        "genome": out / "genome.fa",
        "chrom_sizes": out / "chrom.sizes",
        "cuts": out / "cuts.bw",
        "accessibility": out / "accessibility.bw",
        "tn5_bias": out / "tn5_bias.bw",
        "fragments": out / "fragments.tsv.gz",
        "peaks": out / "peaks.narrowPeak",
        "nonpeaks": out / "nonpeaks.bed",
        "variants": out / "variants.vcf",
        "sites": out / "sites.bed",
        "summary": out / "summary.json",
    }
    write_fasta(paths["genome"], names, contigs)
    paths["chrom_sizes"].write_text("".join(f"{n}\t{t.size}\n" for n, t in zip(names, contigs)))
    write_bigwig(paths["cuts"], names, [c.astype(np.float64) for c in cuts], skip_zeros=True)
    write_bigwig(paths["accessibility"], names, acc, skip_zeros=False)
    write_bigwig(paths["tn5_bias"], names, bias, skip_zeros=False)
    fragments = [pair_cuts(c, cfg.fragment_tile) for c in cuts]
    num_fragments = write_fragments(paths["fragments"], names, fragments, rng_frag, cfg.num_barcodes)
    write_peaks(paths["peaks"], names, peaks, cuts)
    write_nonpeaks(paths["nonpeaks"], names, nonpeaks, cuts)
    write_vcf(paths["variants"], names, [t.size for t in contigs], variants, seed=cfg.seed, window=cfg.window)
    write_sites(paths["sites"], names, sites, models)

    result = SimulationResult(
        out_dir=out,
        **paths,
        num_cuts=int(sum(int(c.sum()) for c in cuts)),
        num_fragments=num_fragments,
        num_peaks=len(peaks),
        num_nonpeaks=len(nonpeaks),
        num_sites=int(sum(len(s) for s in sites)),
        variant_counts=counts,
    )
    summary = {
        "config": dataclasses.asdict(cfg),
        "counts": {
            k: getattr(result, k)
            for k in ("num_cuts", "num_fragments", "num_peaks", "num_nonpeaks", "num_sites")
        },
        "variant_counts": counts,
        "motifs": {m.motif.id: {"name": m.motif.name, "theta": m.theta} for m in models},
    }
    paths["summary"].write_text(json.dumps(summary, indent=2, sort_keys=True, default=list) + "\n")
    return result
