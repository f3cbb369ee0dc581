"""`veff export --format genes`: the (variant, gene) tables of every binned model as one long
TSV, one row per variant × model × gene × track × statistic::

    chrom pos ref alt id model gene_id gene_name strand tss_distance track statistic value

Written one variant chunk (one slot range) at a time, so memory stays bounded. Values are
float32 printed with 9 significant digits (bit-exact on reading back); NaN is ``NA``.
See docs/export.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from veff.genes_store import GROUP
from veff.store import Store

COLUMNS = ("chrom", "pos", "ref", "alt", "id", "model", "gene_id", "gene_name", "strand",
           "tss_distance", "track", "statistic", "value")


def write_genes_tsv(store: Store, out: Path) -> None:
    from veff.export import ExportError

    models = [m for m in store.model_names() if GROUP in store.root["scores"][m]]
    if not models:
        raise ExportError(f"{store.path} has no gene table; score it with --genes GTF")
    v = store.root["variants"]
    with open(out, "w") as fh:
        fh.write("\t".join(COLUMNS) + "\n")
        for m in models:
            g = store.root["scores"][m][GROUP]
            tracks = [str(t) for t in g["track"][:]]
            stats = list(g.attrs["statistics"])
            k = int(g.attrs["slots_per_chunk"])
            for lo in range(0, g["variant"].shape[0], k):
                row = np.asarray(g["variant"][lo: lo + k])
                used = row >= 0
                if not used.any():
                    continue
                row = row[used]
                a, b = int(row.min()), int(row.max()) + 1
                cols = {c: np.asarray(v[c][a:b])[row - a] for c in ("chrom", "pos", "ref", "alt", "id")}
                pair = {c: np.asarray(g[c][lo: lo + k])[used]
                        for c in ("gene_id", "gene_name", "strand", "tss_distance")}
                values = {s: np.asarray(g[s][lo: lo + k], dtype=np.float32)[used] for s in stats}
                lines = []
                for i in range(len(row)):
                    head = "\t".join([str(cols["chrom"][i]), str(int(cols["pos"][i])), str(cols["ref"][i]),
                                      str(cols["alt"][i]), str(cols["id"][i]), m, str(pair["gene_id"][i]),
                                      str(pair["gene_name"][i]), str(pair["strand"][i]),
                                      str(int(pair["tss_distance"][i]))])
                    for j, t in enumerate(tracks):
                        for s in stats:
                            x = float(values[s][i, j])
                            lines.append(f"{head}\t{t}\t{s}\t{'NA' if np.isnan(x) else format(x, '.9g')}\n")
                fh.writelines(lines)
