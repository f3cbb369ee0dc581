"""Settings of the ATAC-seq simulation (every default is documented in docs/simulation.md)."""

from __future__ import annotations

import dataclasses

from veff.simulate.signal import AccessibilityParams
from veff.simulate.tn5 import Tn5BiasModel

# High-specificity motifs only: short, low-information PWMs (GATA1 MA0035.4, CEBPB MA0466.2,
# FOS::JUN MA0099.3) match random sequence ~1e-4 per position at this threshold, so each would
# open hundreds of unplanned sites per Mb; they stay in the MEME file and can be chosen here.
DEFAULT_MOTIF_IDS = ("MA0139.1", "MA0080.5", "MA0138.2", "MA0506.1", "MA0095.2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Seeded ATAC-seq ground truth; same config and seed give byte-identical files."""

    seed: int = 0
    num_contigs: int = 3
    contig_len: int = 350_000
    gc: float = 0.41
    n_run: int = 1_000  # N bases at each contig end
    motif_ids: tuple[str, ...] = DEFAULT_MOTIF_IDS
    num_peaks: int = 200
    min_peak_spacing: int = 2_500
    edge_margin: int = 2_000  # element centres stay this far from contig ends (past the N run)
    max_sites_per_peak: int = 3
    site_spread: int = 60  # site centres within +-site_spread bp of the element centre
    planted_min_occ: float = 0.95
    accessibility: AccessibilityParams = AccessibilityParams()
    tn5: Tn5BiasModel = Tn5BiasModel()
    depth: float = 10.0  # expected cuts per bp at accessibility 1 and bias 1
    noise: float = 0.002  # bias-free cuts per bp (ambient background)
    window: int = 1_000  # bp over which truth effects (ACC/OBS_LOGFC) are summed
    nonpeak_width: int = 1_000
    nonpeak_clearance: int = 650  # bp beyond a non-peak's edges kept free of sites and peaks
    fragment_tile: int = 1_000  # cuts are paired into fragments within ~tile-sized groups
    num_barcodes: int = 500
    num_motif_break: int = 80
    num_motif_break_indel: int = 40
    num_motif_create: int = 40
    num_tn5_bias: int = 80
    tn5_hotspots_per_kb: float = 0.5  # strong Tn5 K-mers planted in background, besides the variants'
    num_neutral: int = 160
    min_causal_logfc: float = 0.2  # |ACC_LOGFC| a causal variant must reach to be kept
    flank_min_site_distance: int = 150  # flank neutrals: at least this far from every site
    flank_min_acc_frac: float = 0.1  # flank neutrals: A - a_bg >= this x the peak's maximum
    neutral_max_obs_logfc: float = 0.01

    def __post_init__(self) -> None:
        if self.num_contigs < 1 or self.contig_len <= 2 * self.edge_margin:
            raise ValueError("need at least one contig longer than 2 * edge_margin")
        if self.edge_margin <= self.n_run + self.accessibility.reach:
            raise ValueError("edge_margin must exceed n_run + accessibility.reach")
        if not 0.0 < self.gc < 1.0:
            raise ValueError("gc must be in (0, 1)")
        if self.num_motif_break + self.num_motif_break_indel > self.num_peaks:
            raise ValueError("num_motif_break + num_motif_break_indel must be <= num_peaks")
        if self.num_motif_create > self.num_peaks:
            raise ValueError("num_motif_create must be <= num_peaks")
        if self.max_sites_per_peak < 1 or not self.motif_ids:
            raise ValueError("need at least one motif and one site per peak")

    @classmethod
    def tiny(cls, seed: int = 0) -> SimulationConfig:
        """A few-second config for tests: 2 contigs of 40 kb, 11 peaks."""
        return cls(
            seed=seed,
            num_contigs=2,
            contig_len=40_009,
            num_peaks=11,
            num_motif_break=3,
            num_motif_break_indel=2,
            num_motif_create=3,
            num_tn5_bias=5,
            num_neutral=7,
        )
