"""The ragged (variant, gene) table of gene-level scores: ``scores/<model>/genes/``.

Pairs depend only on the variants, the model's window geometry and the GTF, so they are all
computed when the store is created and laid out in fixed **slots**: chunk ``c`` of the
variants owns pair slots ``[c·K, (c+1)·K)``, K being the most pairs any chunk has. A chunk's
slots hold its pairs sorted by (variant, gene) and then unused slots (``variant`` = -1). The
Zarr chunks of every pair array are K long, so each variant chunk writes exactly one Zarr
chunk of each statistic: chunks are written independently (partitions, cluster workers) and
the variant chunk's done marker covers its gene statistics too, so ``--resume`` is exact.

G, the most genes any one window reaches, is fixed at creation (attrs ``max_genes``): the
device step takes (rows, G, P) exon masks with a static shape, and no window can have more.
See docs/store.md and docs/scores_genes.md.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from veff.io.gtf import read_gtf
from veff.scoring.gene_pairs import GeneIndex, GeneRows, output_starts, signed_tss_distance
from veff.scoring.genes import GENE_STATS, strand_tracks
from veff.store import Store, StoreError

GROUP = "genes"
PREFIX = "gene:"  # engine output keys of gene statistics
FORMULAS = {
    "SED": "sum over the gene's exon bins of ALT minus REF (strand-selected tracks)",
    "logSED": "log2(sum_exons ALT + 1) - log2(sum_exons REF + 1)",
    "GeneMaskLFC": "ln(mean_exons ALT + 1e-3) - ln(mean_exons REF + 1e-3)",
}


class GeneTableError(StoreError):
    """The gene table cannot be made or continued as asked."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_index(gtf: str | Path) -> GeneIndex:
    genes = read_gtf(gtf)
    if not genes:
        raise GeneTableError(f"{gtf}: no gene with an exon line")
    return GeneIndex.build(genes)


def window_pos0(cols: dict[str, np.ndarray], indel_windows: str) -> np.ndarray:
    """0-based position each row's window is centred on: the normalised ``pos``, or with
    ``--indel-windows variant-scorer`` the input's own position (flipped rows keep ``pos``)."""
    pos = np.asarray(cols["pos"], np.int64)
    if indel_windows == "variant-scorer":
        pos = np.where(np.asarray(cols["flipped"], bool), pos, np.asarray(cols["orig_pos"], np.int64))
    return pos - 1


def _columns(store: Store, a: int, b: int) -> dict[str, np.ndarray]:
    g = store.root["variants"]
    return {c: g[c][a:b] for c in ("chrom", "pos", "orig_pos", "flipped", "status", "fasta_chrom")}


def _geometry(scorer) -> dict[str, int]:
    h = scorer.handle
    return dict(window_len=h.window_len, num_bins=h.output_len, bin_size=h.bin_size,
                centre_offset=scorer.options.centre_offset)


def _chunk_pairs(index: GeneIndex, cols, geom, indel_windows):
    out0 = output_starts(window_pos0(cols, indel_windows), **geom)
    # the GTF names contigs as the FASTA does, or as the input does: try both
    chroms = np.array([f if str(f) in index.by_contig else str(c)
                       for c, f in zip(cols["chrom"], cols["fasta_chrom"])], dtype=object)
    ok = np.asarray([str(s) == "ok" for s in cols["status"]], bool)
    rows, genes = index.pairs(chroms, out0, geom["num_bins"] * geom["bin_size"], ok)
    return rows, genes, out0


def prepare(scorers, gtf: str | Path) -> GeneIndex:
    """Check that a model is binned and read the GTF (before the store is created)."""
    if not any(s.handle.kind == "binned" for s in scorers):
        raise GeneTableError("--genes needs a binned model (Borzoi, Enformer); the models given "
                             "are all profile models")
    return load_index(gtf)


def create(store: Store, scorers, gtf: str | Path, indel_windows: str,
           index: GeneIndex | None = None) -> None:
    """Write every binned model's pair table (statistics NaN until their chunk is scored);
    profile models get none."""
    binned = [s for s in scorers if s.handle.kind == "binned"]
    index = index or prepare(scorers, gtf)
    sha = file_sha256(gtf)
    for s in binned:
        geom = _geometry(s)
        per_chunk, max_genes = [], 1
        for c in range(store.num_chunks):
            a, b = store.chunk_range(c)
            cols = _columns(store, a, b)
            rows, genes, _ = _chunk_pairs(index, cols, geom, indel_windows)
            if len(rows):
                max_genes = max(max_genes, int(np.bincount(rows).max()))
            pos0 = np.asarray(cols["pos"], np.int64)[rows] - 1
            per_chunk.append((rows + a, genes, signed_tss_distance(index, genes, pos0)))
        slots = max(1, max((len(r) for r, _, _ in per_chunk), default=1))
        total = slots * max(1, store.num_chunks)
        variant = np.full(total, -1, np.int64)
        gene = np.full(total, -1, np.int64)
        tss = np.zeros(total, np.int64)
        for c, (r, g, d) in enumerate(per_chunk):
            variant[c * slots: c * slots + len(r)] = r
            gene[c * slots: c * slots + len(g)] = g
            tss[c * slots: c * slots + len(d)] = d
        used = gene >= 0
        names = lambda f: np.array([f(index.genes[i]) if i >= 0 else "" for i in gene], dtype=object)  # noqa: E731
        plus, _, track_names = strand_tracks(s.handle.tracks)
        grp = store.root["scores"][s.handle.name].create_group(GROUP)
        _array(grp, "track", np.array(track_names, dtype=object), ["track"], None)
        meaning = {
            "variant": "row of variants/ (-1: an unused slot of this chunk's pair range)",
            "gene_index": "0-based index of the gene in the GTF's order (contig, start, gene_id)",
            "gene_id": "GTF gene_id", "gene_name": "GTF gene_name (gene_id when absent)",
            "strand": "the gene's strand (+ or -)",
            "tss_distance": "variant pos - TSS (0-based, the gene body's 5' end) in the gene's "
                            "direction: > 0 downstream of the TSS (into the gene), < 0 upstream",
        }
        _array(grp, "variant", variant, ["pair"], slots, meaning["variant"])
        _array(grp, "gene_index", gene.astype(np.int32), ["pair"], slots, meaning["gene_index"])
        _array(grp, "gene_id", names(lambda g: g.gene_id), ["pair"], slots, meaning["gene_id"])
        _array(grp, "gene_name", names(lambda g: g.name), ["pair"], slots, meaning["gene_name"])
        _array(grp, "strand", names(lambda g: g.strand), ["pair"], slots, meaning["strand"])
        _array(grp, "tss_distance", np.where(used, tss, 0), ["pair"], slots, meaning["tss_distance"])
        for stat in GENE_STATS:
            arr = grp.create_array(stat, shape=(total, len(plus)), chunks=(slots, len(plus)),
                                   dtype="float32", fill_value=np.nan, dimension_names=["pair", "track"])
            arr.attrs["formula"] = FORMULAS[stat]
        grp.attrs.update({"gtf": str(gtf), "gtf_sha256": sha, "slots_per_chunk": slots,
                          "max_genes": max_genes, "statistics": list(GENE_STATS),
                          "indel_windows": indel_windows, "num_pairs": int(used.sum())})


def _array(grp, name, values, dims, chunk, meaning=None):
    kw = {"chunks": (chunk,)} if chunk else {}
    arr = grp.create_array(name, shape=values.shape, dtype=str if values.dtype == object else values.dtype,
                           dimension_names=dims, **kw)
    if len(values):
        arr[:] = values
    if meaning:
        arr.attrs["meaning"] = meaning


def has_genes(store: Store, model: str) -> bool:
    return GROUP in store.root["scores"][model]


class ChunkGenes:
    """What one variant chunk needs from a model's gene table: the engine's ``GeneRows`` and
    where its (row, gene) results go."""

    def __init__(self, store: Store, scorer, index: GeneIndex, chunk: int, indel_windows: str):
        grp = store.root["scores"][scorer.handle.name][GROUP]
        self.slots = int(grp.attrs["slots_per_chunk"])
        G = int(grp.attrs["max_genes"])
        a, b = store.chunk_range(chunk)
        lo = chunk * self.slots
        variant = np.asarray(grp["variant"][lo: lo + self.slots])
        gene = np.asarray(grp["gene_index"][lo: lo + self.slots]).astype(np.int64)
        self.lo, self.used = lo, int((variant >= 0).sum())
        rows = variant[: self.used] - a
        first = np.searchsorted(rows, rows, side="left")
        self.rows, self.cols = rows, np.arange(self.used) - first
        gene_idx = np.full((b - a, G), -1, np.int64)
        gene_idx[self.rows, self.cols] = gene[: self.used]
        geom = _geometry(scorer)
        out0 = output_starts(window_pos0(_columns(store, a, b), indel_windows), **geom)
        self.gene_rows = GeneRows(index=index, gene_idx=gene_idx, out0=out0,
                                  num_bins=geom["num_bins"], bin_size=geom["bin_size"])

    def write(self, store: Store, model: str, scores: dict[str, np.ndarray]) -> None:
        grp = store.root["scores"][model][GROUP]
        for stat in GENE_STATS:
            values = scores[PREFIX + stat]  # (rows, G, T)
            block = np.full((self.slots, values.shape[-1]), np.nan, np.float32)
            block[: self.used] = values[self.rows, self.cols]
            grp[stat][self.lo: self.lo + self.slots] = block


def check_resume(store: Store, models: list[str], gtf: str | None) -> None:
    """A resumed run scores the gene table it was created with, from the same GTF."""
    stored = [m for m in models if has_genes(store, m)]
    if not stored and gtf is None:
        return
    if not stored:
        raise GeneTableError(f"{store.path} was created without --genes; score genes in a new store")
    attrs = store.root["scores"][stored[0]][GROUP].attrs
    if gtf is None:
        raise GeneTableError(f"{store.path} was created with --genes {attrs['gtf']}; pass it again "
                             "to resume")
    if file_sha256(gtf) != attrs["gtf_sha256"]:
        raise GeneTableError(f"--genes {gtf} differs from the GTF the store was created with "
                             f"({attrs['gtf']}, sha256 {attrs['gtf_sha256'][:12]})")


@functools.lru_cache(maxsize=4)
def _cached_index(path: str, mtime_ns: int, size: int) -> GeneIndex:
    return load_index(path)


def store_index(store: Store, gtf: str | None = None) -> GeneIndex | None:
    """The GeneIndex a store's gene tables were made from (``gtf``, else the path recorded
    at creation), or None when no model has a gene table. Cached per process (cluster
    workers score many chunks)."""
    models = [m for m in store.model_names() if has_genes(store, m)]
    if not models:
        return None
    path = gtf or store.root["scores"][models[0]][GROUP].attrs["gtf"]
    try:
        st = Path(path).stat()
    except OSError as e:
        raise GeneTableError(f"cannot read the store's GTF {path}: {e.strerror}") from None
    return _cached_index(str(path), st.st_mtime_ns, st.st_size)
