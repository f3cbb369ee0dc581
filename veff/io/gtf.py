"""A small GTF reader for gene-level scores: exon and gene lines only (plain or gzip).

Per ``gene_id``: contig, strand, name, merged exons (0-based half-open), the gene body (the
``gene`` line when present, else the exons' span) and the TSS (the body's 5' end). The rules
follow baskerville ``gene.Transcriptome``: exons of every transcript of a gene are pooled and
their overlaps merged.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

_KV = re.compile(r'\s*([^\s";]+)\s+"?([^";]*)"?\s*;?')


class GTFError(ValueError):
    """A GTF that cannot be read (one line, with the line number)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gene:
    gene_id: str
    name: str
    chrom: str
    strand: str  # "+" or "-"
    exons: tuple[tuple[int, int], ...]  # merged, sorted, 0-based half-open
    start: int  # gene body, 0-based half-open
    end: int

    @property
    def tss(self) -> int:
        """0-based position of the transcription start (the body's 5' end)."""
        return self.start if self.strand == "+" else self.end - 1


def _merge(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


def read_gtf(path: str | Path) -> list[Gene]:
    """Genes with at least one exon, ordered by (contig as first seen, start, gene_id)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    exons: dict[str, list[tuple[int, int]]] = {}
    info: dict[str, dict] = {}
    body: dict[str, tuple[int, int]] = {}
    try:
        with opener(path, "rt") as fh:
            for num, line in enumerate(fh, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                f = line.rstrip("\n").split("\t")
                if len(f) < 9:
                    raise GTFError(f"{path}:{num}: expected 9 tab-separated fields, got {len(f)}")
                if f[2] not in ("exon", "gene"):
                    continue
                kv = dict(_KV.findall(f[8]))
                gid = kv.get("gene_id")
                if not gid:
                    raise GTFError(f"{path}:{num}: no gene_id attribute")
                try:
                    start0, end0 = int(f[3]) - 1, int(f[4])
                except ValueError:
                    raise GTFError(f"{path}:{num}: start/end are not integers") from None
                if f[6] not in ("+", "-") or start0 < 0 or end0 <= start0:
                    raise GTFError(f"{path}:{num}: bad strand or coordinates")
                g = info.setdefault(gid, {"chrom": f[0], "strand": f[6],
                                          "name": kv.get("gene_name", gid)})
                if (g["chrom"], g["strand"]) != (f[0], f[6]):
                    raise GTFError(f"{path}:{num}: gene {gid} changes contig or strand")
                if f[2] == "exon":
                    exons.setdefault(gid, []).append((start0, end0))
                else:
                    body[gid] = (start0, end0)
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise GTFError(f"cannot read GTF {path}: {e}") from None
    genes = []
    for gid, ex in exons.items():
        merged = _merge(ex)
        s, e = body.get(gid, (merged[0][0], merged[-1][1]))
        g = info[gid]
        genes.append(Gene(gene_id=gid, name=g["name"], chrom=g["chrom"], strand=g["strand"],
                          exons=merged, start=min(s, merged[0][0]), end=max(e, merged[-1][1])))
    order = {c: i for i, c in enumerate(dict.fromkeys(g.chrom for g in genes))}
    return sorted(genes, key=lambda g: (order[g.chrom], g.start, g.gene_id))
