"""Host side of gene-level scores: which genes each variant's window reaches, vectorised.

Genes are indexed per contig (exons sorted by start, with the longest exon's length), so the
exons overlapping a window's output span are found with two ``searchsorted`` calls per
contig for the whole batch of variants, never by looping over genes. A gene is paired with
a variant when one of its exons overlaps the window's output span ``[out0, out0 + P·bs)``,
which is exactly when ``genes.genes_in_window`` gives it an exon bin (any-overlap rule).

Exon masks are built per batch of rows with a difference array (``np.add.at`` of +1/-1 at
each exon's first and one-past-last bin, then a cumulative sum), so a chunk of Borzoi-sized
windows never holds all its (row, gene, bin) masks at once. See docs/scores_genes.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from veff.io.gtf import Gene


@dataclasses.dataclass(frozen=True)
class GeneIndex:
    """Genes of a GTF in flat arrays: gene ``g`` has exons ``exon_start[ex_ptr[g]:ex_ptr[g+1]]``."""

    genes: list[Gene]
    minus: np.ndarray  # (n_genes,) bool
    tss: np.ndarray  # (n_genes,) int64, 0-based
    ex_ptr: np.ndarray  # (n_genes + 1,) int64
    ex_start: np.ndarray  # (n_exons,) int64, gene order
    ex_end: np.ndarray
    by_contig: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]
    # contig -> (exon starts sorted, exon ends, gene of each exon, longest exon)

    @classmethod
    def build(cls, genes: Sequence[Gene]) -> "GeneIndex":
        genes = list(genes)
        counts = np.array([len(g.exons) for g in genes], np.int64)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = [e for g in genes for e in g.exons]
        starts = np.array([s for s, _ in flat], np.int64)
        ends = np.array([e for _, e in flat], np.int64)
        owner = np.repeat(np.arange(len(genes), dtype=np.int64), counts)
        chroms = np.array([g.chrom for g in genes], dtype=object)
        by_contig = {}
        for c in dict.fromkeys(chroms):
            sel = np.flatnonzero(chroms[owner] == c) if len(owner) else np.zeros(0, np.int64)
            order = sel[np.argsort(starts[sel], kind="stable")]
            by_contig[str(c)] = (starts[order], ends[order], owner[order],
                                 int((ends[order] - starts[order]).max()))
        return cls(genes=genes, minus=np.array([g.strand == "-" for g in genes], bool),
                   tss=np.array([g.tss for g in genes], np.int64), ex_ptr=ptr,
                   ex_start=starts, ex_end=ends, by_contig=by_contig)

    def pairs(self, chroms: Sequence[str], out0: np.ndarray, span: int,
              ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, gene) of every pair, sorted by row then gene order (the GTF's order by
        contig, start, gene_id). ``out0``: each row's output bin 0 genome start; ``span``
        = P·bs; rows with ``ok`` False get no pair."""
        rows_out, genes_out = [], []
        chroms = np.asarray(chroms, dtype=object)
        out0 = np.asarray(out0, np.int64)
        for c, (s, e, own, longest) in self.by_contig.items():
            rows = np.flatnonzero((chroms == c) & ok)
            if not len(rows):
                continue
            lo = np.searchsorted(s, out0[rows] - longest, side="right")
            hi = np.searchsorted(s, out0[rows] + span, side="left")
            n = hi - lo
            row_rep = np.repeat(rows, n)
            idx = np.repeat(lo - np.cumsum(np.concatenate([[0], n[:-1]])), n) + np.arange(n.sum())
            hit = e[idx] > out0[row_rep]  # starts < out0 + span by construction
            if hit.any():
                key = np.unique(row_rep[hit] * len(self.genes) + own[idx[hit]])
                rows_out.append(key // len(self.genes))
                genes_out.append(key % len(self.genes))
        if not rows_out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        r, g = np.concatenate(rows_out), np.concatenate(genes_out)
        order = np.lexsort((g, r))
        return r[order], g[order]

    def exon_masks(self, gene_idx: np.ndarray, out0: np.ndarray, num_bins: int,
                   bin_size: int) -> np.ndarray:
        """(N, G) gene indices (-1: padding) and (N,) output starts -> (N, G, P) bool exon
        masks: bin p is set when an exon overlaps ``[out0 + p·bs, out0 + (p+1)·bs)``."""
        n, G = gene_idx.shape
        flat = gene_idx.reshape(-1)
        real = np.flatnonzero(flat >= 0)
        g = flat[real]
        counts = self.ex_ptr[g + 1] - self.ex_ptr[g]
        slot = np.repeat(real, counts)
        ex = np.repeat(self.ex_ptr[g] - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
        ex = ex + np.arange(counts.sum())
        o = np.asarray(out0, np.int64)[slot // G]
        lo = np.clip((self.ex_start[ex] - o) // bin_size, 0, num_bins)
        hi = np.clip(-(-(self.ex_end[ex] - o) // bin_size), 0, num_bins)
        keep = lo < hi
        diff = np.zeros((n * G, num_bins + 1), np.int32)
        np.add.at(diff, (slot[keep], lo[keep]), 1)
        np.add.at(diff, (slot[keep], hi[keep]), -1)
        return (np.cumsum(diff[:, :num_bins], axis=1) > 0).reshape(n, G, num_bins)


@dataclasses.dataclass(frozen=True)
class GeneRows:
    """The genes of a batch of rows, as the engine's step takes them: ``gene_idx`` (N, G)
    (-1 pads a row with fewer than G genes), ``out0`` (N,) each row's output bin 0."""

    index: GeneIndex
    gene_idx: np.ndarray
    out0: np.ndarray
    num_bins: int
    bin_size: int

    def take(self, rows: np.ndarray) -> "GeneRows":
        return dataclasses.replace(self, gene_idx=self.gene_idx[rows], out0=self.out0[rows])

    def padded(self, start: int, stop: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [start, stop) padded to ``size`` rows: (exon_mask (size, G, P) bool,
        minus (size, G) bool); padding genes and rows have all-false masks."""
        idx = self.gene_idx[start:stop]
        if len(idx) < size:
            idx = np.concatenate([idx, np.full((size - len(idx), idx.shape[1]), -1, idx.dtype)])
        out0 = np.zeros(size, np.int64)
        out0[: stop - start] = self.out0[start:stop]
        mask = self.index.exon_masks(idx, out0, self.num_bins, self.bin_size)
        minus = np.where(idx >= 0, self.index.minus[np.maximum(idx, 0)], False)
        return mask, minus


def output_starts(pos0: np.ndarray, *, window_len: int, num_bins: int, bin_size: int,
                  centre_offset: int = 0) -> np.ndarray:
    """Genome start of output bin 0 for windows whose REF starts at 0-based ``pos0``
    (REF at input index L // 2 + centre_offset; symmetric crop)."""
    start0 = np.asarray(pos0, np.int64) - (window_len // 2 + centre_offset)
    return start0 + (window_len - num_bins * bin_size) // 2


def signed_tss_distance(index: GeneIndex, gene: np.ndarray, pos0: np.ndarray) -> np.ndarray:
    """``genes.tss_distance`` for arrays: position minus TSS, negated for "-" genes."""
    d = np.asarray(pos0, np.int64) - index.tss[gene]
    return np.where(index.minus[gene], -d, d)
