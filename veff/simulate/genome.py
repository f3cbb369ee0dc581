"""Random background contigs, planted regulatory elements, and the FASTA writer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyfaidx

from veff.simulate.signal import AccessibilityParams, MotifModel
from veff.types import N, decode


def background_probs(gc: float) -> np.ndarray:
    return np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])


def random_contigs(
    rng: np.random.Generator, *, num_contigs: int, contig_len: int, gc: float, n_run: int
) -> list[np.ndarray]:
    """i.i.d. bases with the given GC fraction; ``n_run`` N bases at both ends of each contig."""
    contigs = []
    for _ in range(num_contigs):
        tokens = rng.choice(4, size=contig_len, p=background_probs(gc)).astype(np.uint8)
        tokens[:n_run] = N
        tokens[contig_len - n_run :] = N
        contigs.append(tokens)
    return contigs


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlantedSite:
    """A site written into the genome; ``latent`` sites carry one broken column (for creation)."""

    contig: int
    start: int
    motif: int
    strand: str
    latent: bool = False
    column: int = -1  # motif column that was broken (latent sites only)
    genome_pos: int = -1  # 0-based genome position of that column
    restored_base: int = -1  # token that restores the strong site


@dataclasses.dataclass(frozen=True, kw_only=True)
class Element:
    """One planted regulatory element (a future peak)."""

    index: int
    contig: int
    centre: int
    sites: tuple[PlantedSite, ...]
    latent: PlantedSite | None


def place_centres(
    rng: np.random.Generator, num: int, lo: int, hi: int, min_spacing: int
) -> np.ndarray:
    """``num`` sorted positions in [lo, hi) at least ``min_spacing`` apart, uniform otherwise."""
    slack = (hi - lo) - (num - 1) * min_spacing - 1
    if num == 0:
        return np.zeros(0, dtype=np.int64)
    if slack < 0:
        raise ValueError(
            f"cannot place {num} peaks {min_spacing} bp apart in {hi - lo} bp; "
            "use longer contigs or fewer peaks"
        )
    u = np.sort(rng.integers(0, slack + 1, size=num))
    return lo + u + np.arange(num) * min_spacing


def sample_strong_site(
    rng: np.random.Generator, model: MotifModel, params: AccessibilityParams, min_occ: float
) -> np.ndarray:
    """One + strand site sampled from the PWM, conditioned on occupancy >= min_occ."""
    probs = model.motif.probs
    cdf = np.cumsum(probs, axis=1)
    for _ in range(1000):
        u = rng.random((256, model.width, 1))
        seqs = (u > cdf[None, :, :3]).sum(axis=2)  # inverse-CDF sample per column
        scores = model.lo[np.arange(model.width), seqs].sum(axis=1)
        ok = np.nonzero(model.occupancy(scores, params) >= min_occ)[0]
        if ok.size:
            return seqs[ok[0]].astype(np.uint8)
    raise ValueError(f"motif {model.motif.id}: no sample reaches occupancy {min_occ}")


def write_site(tokens: np.ndarray, start: int, plus_seq: np.ndarray, strand: str) -> None:
    tokens[start : start + plus_seq.size] = plus_seq if strand == "+" else 3 - plus_seq[::-1]


def write_fasta(path: Path, names: list[str], contigs: list[np.ndarray], width: int = 60) -> None:
    """FASTA with fixed line width, then a pyfaidx .fai index next to it."""
    with open(path, "w") as fh:
        for name, tokens in zip(names, contigs):
            fh.write(f">{name}\n")
            seq = decode(tokens)
            fh.write("\n".join(seq[i : i + width] for i in range(0, len(seq), width)))
            fh.write("\n")
    pyfaidx.Faidx(str(path)).close()


def plant_elements(
    rng: np.random.Generator,
    contigs: list[np.ndarray],
    models: tuple[MotifModel, ...],
    params: AccessibilityParams,
    *,
    num_peaks: int,
    min_spacing: int,
    margin: int,
    max_sites: int,
    site_spread: int,
    planted_min_occ: float,
    latent_elements: frozenset[int],
) -> list[Element]:
    """Write 1..max_sites strong PWM samples near each element centre (in place).

    Elements listed in ``latent_elements`` also get one latent site 40-90 bp beyond the others:
    a strong sample whose most informative column is set to its least likely base.
    """
    from veff.simulate.motifs import most_informative_column

    num_contigs = len(contigs)
    per_contig = [num_peaks // num_contigs + (c < num_peaks % num_contigs) for c in range(num_contigs)]
    elements: list[Element] = []
    for c, tokens in enumerate(contigs):
        centres = place_centres(rng, per_contig[c], margin, tokens.size - margin, min_spacing)
        for centre in centres:
            index = len(elements)
            n_sites = 1 + int(rng.binomial(max_sites - 1, 0.5))
            sites: list[PlantedSite] = []
            spans: list[tuple[int, int]] = []
            while len(sites) < n_sites:
                m = int(rng.integers(len(models)))
                width = models[m].width
                start = int(centre) + int(rng.integers(-site_spread, site_spread + 1)) - width // 2
                if any(start < e + 4 and s < start + width + 4 for s, e in spans):
                    continue  # keep sites apart so each is scored on its own
                strand = "+" if rng.random() < 0.5 else "-"
                write_site(tokens, start, sample_strong_site(rng, models[m], params, planted_min_occ), strand)
                spans.append((start, start + width))
                sites.append(PlantedSite(contig=c, start=start, motif=m, strand=strand))
            latent = None
            side = 1 if rng.random() < 0.5 else -1
            if index in latent_elements:
                m = int(rng.integers(len(models)))
                model = models[m]
                offset = int(rng.integers(site_spread + 40, site_spread + 91))
                start = int(centre) + side * offset - model.width // 2
                strand = "+" if rng.random() < 0.5 else "-"
                seq = sample_strong_site(rng, model, params, planted_min_occ)
                col = most_informative_column(model.motif.probs)
                restored = int(seq[col])
                seq = seq.copy()
                seq[col] = int(np.argmin(model.motif.probs[col]))
                write_site(tokens, start, seq, strand)
                pos = start + col if strand == "+" else start + model.width - 1 - col
                latent = PlantedSite(
                    contig=c,
                    start=start,
                    motif=m,
                    strand=strand,
                    latent=True,
                    column=col,
                    genome_pos=pos,
                    restored_base=restored if strand == "+" else 3 - restored,
                )
            elements.append(
                Element(
                    index=index,
                    contig=c,
                    centre=int(centre),
                    sites=tuple(sites),
                    latent=latent,
                )
            )
    return elements


def plant_hotspots(
    rng: np.random.Generator,
    contigs: list[np.ndarray],
    free: list[np.ndarray],
    *,
    num: int,
    kmer: np.ndarray,
    clearance: int,
) -> list[tuple[int, int]]:
    """Write ``kmer`` ((K,) one K-mer, or (num, K) one per copy) at ``num`` random positions
    whose ``clearance``-bp surroundings are all ``free`` (in place); returns sorted
    (contig, start) pairs, copies ``clearance`` bp apart. ``free`` is updated in place too."""
    kmers = np.broadcast_to(kmer, (num, kmer.shape[-1]))
    k = kmers.shape[1]
    blocked = []
    for f in free:
        diff = np.zeros(f.size + 1, dtype=np.int64)  # dilate the non-free bases by clearance
        bad = np.flatnonzero(~f)
        np.add.at(diff, np.clip(bad - clearance - k, 0, f.size), 1)
        np.add.at(diff, np.clip(bad + clearance + 1, 0, f.size), -1)
        blocked.append(np.cumsum(diff[:-1]) > 0)
    out: list[tuple[int, int]] = []
    for _ in range(200 * num + 100):
        if len(out) == num:
            break
        c = int(rng.integers(len(contigs)))
        start = int(rng.integers(0, contigs[c].size - k))
        if blocked[c][start]:
            continue
        contigs[c][start : start + k] = kmers[len(out)]
        blocked[c][max(0, start - clearance - k) : start + k + clearance] = True
        free[c][max(0, start - clearance) : start + k + clearance] = False
        out.append((c, start))
    if len(out) < num:
        raise ValueError(f"could place only {len(out)}/{num} Tn5 hotspots in the background; "
                         "use longer contigs or fewer peaks")
    return sorted(out)
