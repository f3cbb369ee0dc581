"""Truth variants: choose them, compute their exact expected effects, write the labelled VCF.

For a variant at 0-based ``pos0`` the effect is measured on a ``window``-bp span centred on it
(chromBPNet's 1000-bp output by default), on the reference and on the alternate haplotype:
  ACC_LOGFC = log sum_window A_alt - log sum_window A_ref          (true accessibility)
  OBS_LOGFC = log sum_window lam_alt - log sum_window lam_ref      (expected observed cuts)
with lam = depth * A * b + noise * [base != N]. Both are recomputed from sequence alone, so a
variant that changes no site above occ_min has ACC_LOGFC exactly 0.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from veff.simulate.signal import AccessibilityParams, MotifModel, accessibility, find_sites
from veff.simulate.tn5 import log_bias
from veff.types import ALPHABET, N

CLASSES = ("motif_break", "motif_break_indel", "motif_create", "tn5_bias", "neutral")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class TruthModel:
    """Everything needed to recompute expected signal from sequence."""

    models: tuple[MotifModel, ...]
    params: AccessibilityParams
    tn5_weights: np.ndarray
    log_norm: float  # genome-wide log mean of the unnormalised Tn5 bias
    depth: float
    noise: float
    window: int

    @property
    def margin(self) -> int:
        widest = max(m.width for m in self.models)
        return self.window // 2 + self.params.reach + widest + self.tn5_weights.shape[0] + 2

    def rate(self, tokens: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """Expected cuts per base: depth * A * b + noise on non-N bases."""
        b = np.exp(log_bias(tokens, self.tn5_weights) - self.log_norm)
        return self.depth * acc * b + self.noise * (tokens != N)

    def signal(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sites = find_sites(tokens, self.models, self.params)
        acc = accessibility(tokens, sites, self.models, self.params)
        return acc, self.rate(tokens, acc)

    def effect(
        self, contig: np.ndarray, pos0: int, ref_len: int, alt: np.ndarray
    ) -> tuple[float, float]:
        """(ACC_LOGFC, OBS_LOGFC) of replacing contig[pos0:pos0+ref_len] by ``alt``."""
        lo = max(0, pos0 - self.margin)
        hi = min(contig.size, pos0 + ref_len + self.margin)
        ref = contig[lo:hi]
        p = pos0 - lo
        alt_seq = np.concatenate([ref[:p], alt, ref[p + ref_len :]]).astype(np.uint8)
        half = self.window // 2
        w0, w1 = max(0, p - half), min(ref.size, p + half)
        shift = alt.size - ref_len
        acc_r, lam_r = self.signal(ref)
        acc_a, lam_a = self.signal(alt_seq)
        acc_fc = np.log(acc_a[w0 : w1 + shift].sum()) - np.log(acc_r[w0:w1].sum())
        obs_fc = np.log(lam_a[w0 : w1 + shift].sum()) - np.log(lam_r[w0:w1].sum())
        return float(acc_fc), float(obs_fc)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TruthVariant:
    """One VCF record of the truth set (1-based ``pos1``, VCF-anchored alleles)."""

    contig: int
    pos1: int
    ref: str
    alt: str
    klass: str
    effect: str  # '+', '-' or '0'
    acc_logfc: float
    obs_logfc: float
    motif: str | None = None
    site_start0: int | None = None
    site_strand: str | None = None
    element: int | None = None

    @property
    def id(self) -> str:
        return f"{self.klass}_{self.contig}_{self.pos1}"


def tokens_str(tokens: np.ndarray) -> str:
    return "".join(ALPHABET[int(t)] for t in tokens)


def left_align_deletion(contig: np.ndarray, start0: int, length: int) -> int:
    """Leftmost start of a deletion of contig[start0:start0+length] giving the same haplotype."""
    while start0 > 1 and contig[start0 - 1] == contig[start0 + length - 1]:
        start0 -= 1
    return start0


def write_vcf(
    path: Path,
    names: list[str],
    lengths: list[int],
    variants: list[TruthVariant],
    *,
    seed: int,
    window: int,
) -> None:
    """VCFv4.2 with contig lengths and INFO definitions; records sorted by contig then POS."""
    header = [
        "##fileformat=VCFv4.2",
        f"##source=veff.simulate(seed={seed})",
        "##reference=genome.fa",
        *(f"##contig=<ID={n},length={ln}>" for n, ln in zip(names, lengths)),
        '##INFO=<ID=CLASS,Number=1,Type=String,Description="Truth class: '
        + "|".join(CLASSES)
        + '">',
        '##INFO=<ID=MOTIF,Number=1,Type=String,Description="JASPAR ID of the affected motif">',
        '##INFO=<ID=EFFECT,Number=1,Type=String,Description="Expected sign of the change: true '
        'accessibility for motif classes, observed Tn5 cuts for tn5_bias, 0 for neutral">',
        f'##INFO=<ID=ACC_LOGFC,Number=1,Type=Float,Description="log ratio alt/ref of true '
        f'accessibility summed over {window} bp centred on the variant">',
        f'##INFO=<ID=OBS_LOGFC,Number=1,Type=Float,Description="log ratio alt/ref of expected '
        f'observed cuts (accessibility x Tn5 bias) over {window} bp centred on the variant">',
        '##INFO=<ID=SITE_START,Number=1,Type=Integer,Description="0-based start of the affected '
        'motif site on the reference">',
        '##INFO=<ID=SITE_STRAND,Number=1,Type=String,Description="Strand of that site">',
        '##INFO=<ID=PEAK,Number=1,Type=String,Description="Name of the peak the variant is in">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    lines = []
    for v in sorted(variants, key=lambda v: (v.contig, v.pos1, v.alt)):
        info = [f"CLASS={v.klass}"]
        if v.motif is not None:
            info.append(f"MOTIF={v.motif}")
        info.append(f"EFFECT={v.effect}")
        info.append(f"ACC_LOGFC={v.acc_logfc:.6g}")
        info.append(f"OBS_LOGFC={v.obs_logfc:.6g}")
        if v.site_start0 is not None:
            info.append(f"SITE_START={v.site_start0}")
            info.append(f"SITE_STRAND={v.site_strand}")
        if v.element is not None:
            info.append(f"PEAK=peak_{v.element}")
        lines.append(
            f"{names[v.contig]}\t{v.pos1}\t{v.id}\t{v.ref}\t{v.alt}\t.\tPASS\t{';'.join(info)}"
        )
    Path(path).write_text("\n".join(header + lines) + "\n")
