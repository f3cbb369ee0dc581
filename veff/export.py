"""`veff export`: a finished store -> TSV / Parquet tables, PolyFun annotations, or a VCF.

Formats (docs/export.md has the column lists):

- ``tsv``/``parquet``, long (default): one row per variant × model × track × statistic
  (``chrom pos ref alt id status model track stat value``), plus consensus rows with
  ``model = "consensus"``, ``track = <group>``, ``stat`` in score, sign_agreement, num_strong,
  num_models. ``wide=True``: one row per variant, one column per ``<model>/<track>/<stat>`` and
  per ``consensus/<group>/<field>``.
- ``polyfun``: ``OUT.<CHR>.annot.parquet`` per chromosome, PolyFun's ``CHR SNP BP A1 A2`` and
  non-negative effect annotations (per model and effect statistic the maximum |score| over
  tracks; per consensus group |score| and a strong indicator; ``veff_unscored``), NaN as 0.
- ``vcf``: the input VCF annotated (veff/export_vcf.py).

Every output carries the store's provenance (veff/provenance.py): TSV as ``#`` lines before
the header (``pandas.read_csv(path, sep="\t", comment="#")``), Parquet as schema metadata.

Tables are written chunk by chunk of the store's variants, so memory stays bounded. Every
output is written under a temporary name next to it and renamed at the end, and the store
is checked first (veff/integrity.py): an incomplete or damaged store is refused, naming the
chunk, instead of exporting fill values.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from veff import provenance as _prov
from veff.integrity import reading, replaced_at_end, verify
from veff.store import Store

FORMATS = ("tsv", "parquet", "polyfun", "vcf", "genes")
_VARIANT_COLS = ("chrom", "pos", "ref", "alt", "id", "status")
_CONS_FIELDS = ("score", "sign_agreement", "num_strong", "num_models")
# PLINK chromosome codes: PolyFun wants numeric CHR.
_PLINK = {"X": 23, "Y": 24, "XY": 25, "M": 26, "MT": 26}


class ExportError(Exception):
    """The export cannot be written as asked."""


# ---------------------------------------------------------------------------- reading
class _Source:
    """Read-side view of a store: variant columns, score arrays and consensus, by chunk."""

    def __init__(self, store: Store):
        self.root = store.root
        self.n = store.num_variants
        self.chunk = store.chunk_size
        self.models = list(self.root.attrs["models"])
        self.tracks = {m: [str(t) for t in self.root["scores"][m]["track"][:]] for m in self.models}
        self.stats = {m: list(self.root["scores"][m].attrs.get("statistics", [])) for m in self.models}
        self.kind = {m: self.root["scores"][m].attrs.get("kind", "binned") for m in self.models}
        self.groups = sorted(self.root["consensus"].group_keys()) if "consensus" in self.root else []

    def spans(self) -> Iterator[tuple[int, int]]:
        for a in range(0, self.n, self.chunk):
            yield a, min(a + self.chunk, self.n)

    def variants(self, a: int, b: int, cols=_VARIANT_COLS) -> dict[str, np.ndarray]:
        g = self.root["variants"]
        return {c: g[c][a:b] for c in cols}

    def scores(self, model: str, stat: str, a: int, b: int) -> np.ndarray:
        return np.asarray(self.root["scores"][model][stat][a:b], dtype=np.float32)

    def consensus(self, group: str, field: str, a: int, b: int) -> np.ndarray:
        return self.root["consensus"][group][field][a:b]

    def formula(self, model: str, stat: str) -> str:
        return str(self.root["scores"][model][stat].attrs.get("formula", ""))


def _strs(a: np.ndarray) -> np.ndarray:
    return np.array([str(x) for x in a], dtype=object)


def _col(a: np.ndarray) -> np.ndarray:
    """Zarr v3 strings come back as numpy StringDType; pandas/pyarrow get plain objects."""
    return a if a.dtype.kind in "biuf" else _strs(a)


# ---------------------------------------------------------------------------- tables
def _long_frame(src: _Source, a: int, b: int):
    import pandas as pd

    v = src.variants(a, b)
    parts = []
    for m in src.models:
        for s in src.stats[m]:
            vals = src.scores(m, s, a, b)  # (n, T)
            n, t = vals.shape
            parts.append(pd.DataFrame({
                **{c: np.repeat(_col(v[c]), t) for c in _VARIANT_COLS},
                "model": m, "track": np.tile(np.array(src.tracks[m], dtype=object), n), "stat": s,
                "value": vals.reshape(-1),
            }))
    for g in src.groups:
        for f in _CONS_FIELDS:
            vals = np.asarray(src.consensus(g, f, a, b), dtype=np.float32)
            parts.append(pd.DataFrame({
                **{c: _col(v[c]) for c in _VARIANT_COLS},
                "model": "consensus", "track": g, "stat": f, "value": vals,
            }))
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*_VARIANT_COLS, "model", "track", "stat", "value"])
    df["pos"] = df["pos"].astype("int64")
    df["value"] = df["value"].astype("float32")
    return df


def wide_columns(src: _Source) -> list[str]:
    cols = [f"{m}/{t}/{s}" for m in src.models for s in src.stats[m] for t in src.tracks[m]]
    cols += [f"consensus/{g}/{f}" for g in src.groups for f in (*_CONS_FIELDS, "call")]
    return cols


def _wide_frame(src: _Source, a: int, b: int):
    import pandas as pd

    v = src.variants(a, b)
    data: dict[str, Any] = {c: _col(v[c]) for c in _VARIANT_COLS}
    for m in src.models:
        for s in src.stats[m]:
            vals = src.scores(m, s, a, b)
            for j, t in enumerate(src.tracks[m]):
                data[f"{m}/{t}/{s}"] = vals[:, j]
    for g in src.groups:
        for f in _CONS_FIELDS:
            data[f"consensus/{g}/{f}"] = np.asarray(src.consensus(g, f, a, b), dtype=np.float32)
        data[f"consensus/{g}/call"] = _strs(src.consensus(g, "call", a, b))
    df = pd.DataFrame(data)
    df["pos"] = df["pos"].astype("int64")
    return df


def _schema_meta(prov: dict[str, Any]) -> dict[bytes, bytes]:
    return {b"veff.provenance": json.dumps(prov, sort_keys=True).encode()}


def comment_header(prov: dict[str, Any]) -> str:
    """The provenance as ``#`` lines (TSV): read the table with ``comment="#"``."""
    lines = ["# veff export; read with pandas.read_csv(path, sep='\\t', comment='#')"]
    lines += [f"# {k}: {v}".replace("\n", " ") for k, v in _prov.flat_lines(prov)]
    return "\n".join(lines) + "\n"


def _write_table(src: _Source, out, *, parquet: bool, wide: bool, prov: dict[str, Any]) -> None:
    """``out``: a path, or for TSV an open text file (standard output)."""
    frame = _wide_frame if wide else _long_frame
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for a, b in src.spans():
                table = pa.Table.from_pandas(frame(src, a, b), preserve_index=False)
                if writer is None:
                    schema = table.schema.with_metadata({**(table.schema.metadata or {}), **_schema_meta(prov)})
                    writer = pq.ParquetWriter(str(out), schema)
                writer.write_table(table.cast(writer.schema))
            if writer is None:  # an empty store still gets a readable file
                table = pa.Table.from_pandas(frame(src, 0, 0), preserve_index=False)
                table = table.replace_schema_metadata({**(table.schema.metadata or {}), **_schema_meta(prov)})
                pq.write_table(table, str(out))
        finally:
            if writer is not None:
                writer.close()
        return
    fh = open(out, "w") if isinstance(out, (str, Path)) else out
    try:
        fh.write(comment_header(prov))
        first = True
        for a, b in src.spans():
            # float32 values printed with 9 significant digits read back bit-exact
            frame(src, a, b).to_csv(fh, sep="\t", index=False, header=first, na_rep="NA",
                                    float_format="%.9g")
            first = False
        if first:
            frame(src, 0, 0).to_csv(fh, sep="\t", index=False, header=True)
    finally:
        if fh is not out:
            fh.close()
        else:
            fh.flush()


# ---------------------------------------------------------------------------- PolyFun
def plink_chrom(chrom: str) -> int | None:
    """``chr7``/``7`` -> 7, X -> 23, Y -> 24, XY -> 25, M/MT -> 26; other contigs None."""
    key = chrom[3:] if chrom[:3].lower() == "chr" else chrom
    if key.isdigit():
        return int(key)
    return _PLINK.get(key.upper())


def _column_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(parts)).strip("_")


_ALLELE = re.compile(r"^[ACGTN]+$", re.IGNORECASE)


def effect_stats(src: _Source, model: str) -> list[str]:
    """The statistics that are effects (PolyFun annotations): not predicted counts or
    per-allele quantiles (no tail), not p-values, not the unaligned ``original_jsd``, and not
    ``abs_X`` beside ``X`` (the same |score|)."""
    from veff.scoring.profile import STAT_INFO

    stats = src.stats[model]
    keep = []
    for s in stats:
        if s.endswith("_pval") or (s in STAT_INFO and STAT_INFO[s].tail is None):
            continue
        if s.startswith("abs_") and s[4:] in stats:
            continue
        keep.append(s)
    return keep


def _write_polyfun(src: _Source, prefix: Path, prov: dict[str, Any]) -> list[Path]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = []
    stats = {m: effect_stats(src, m) for m in src.models}
    for a, b in src.spans():
        v = src.variants(a, b, ("chrom", "pos", "ref", "alt", "id", "status"))
        chr_num = [plink_chrom(str(c)) for c in v["chrom"]]
        ref, alt = _strs(v["ref"]), _strs(v["alt"])
        keep = np.array([c is not None and bool(_ALLELE.match(r)) and bool(_ALLELE.match(al))
                         for c, r, al in zip(chr_num, ref, alt)], dtype=bool)  # no symbolic rows
        data: dict[str, Any] = {
            "CHR": np.array([c or 0 for c in chr_num], dtype=np.int64),
            "SNP": _strs(v["id"]), "BP": np.asarray(v["pos"], dtype=np.int64),
            "A1": alt, "A2": ref,
            "_name": np.array([f"{c}:{p}:{r}:{al}" for c, p, r, al in zip(v["chrom"], v["pos"], ref, alt)],
                              dtype=object),
        }
        for m in src.models:
            for s in stats[m]:
                vals = np.abs(src.scores(m, s, a, b).astype(np.float64))
                with np.errstate(invalid="ignore"):
                    mx = np.where(np.isnan(vals).all(axis=1), 0.0, np.nanmax(np.where(np.isnan(vals), -np.inf, vals), axis=1))
                data[_column_name(m, s, "maxabs")] = mx
        for g in src.groups:
            score = np.asarray(src.consensus(g, "score", a, b), dtype=np.float64)
            data[_column_name(g, "absq")] = np.nan_to_num(np.abs(score), nan=0.0)
            data[_column_name(g, "strong")] = (np.asarray(src.consensus(g, "num_strong", a, b)) >= 1).astype(np.float64)
        data["veff_unscored"] = (_strs(v["status"]) != "ok").astype(np.float64)
        frames.append(pd.DataFrame(data)[keep])
    if not frames:
        raise ExportError("the store has no variants to export")
    df = pd.concat(frames, ignore_index=True)
    # SNP: the input ID where it names one row; else (missing, or shared by the ALT alleles
    # of a multi-allelic record) chrom:pos:ref:alt
    bad = df.SNP.isin([".", ""]) | df.SNP.duplicated(keep=False)
    df.loc[bad, "SNP"] = df.loc[bad, "_name"]
    df = df.drop(columns="_name")
    names = list(df.columns)
    if len(set(names)) != len(names):
        raise ExportError("two annotation names collide after sanitising; rename a model (--model NAME=PATH)")
    if df.empty:
        raise ExportError("no variant lies on a chromosome PolyFun can number (1-22, X, Y, MT)")
    parts = list(df.groupby("CHR", sort=True))
    written = [Path(f"{prefix}.{chr_num}.annot.parquet") for chr_num, _ in parts]
    with replaced_at_end(written) as tmps:
        for (_, part), tmp in zip(parts, tmps):
            table = pa.Table.from_pandas(part.sort_values("BP", kind="stable"), preserve_index=False)
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **_schema_meta(prov)})
            pq.write_table(table, str(tmp))
    return written


# ---------------------------------------------------------------------------- entry point
def export(store_path: str | Path, fmt: str, out: str | Path, *, wide: bool = False,
           tracks: str | None = None) -> list[Path]:
    """Write ``store_path`` as ``fmt`` (tsv, parquet, polyfun, vcf, genes) to ``out``; returns
    the files written (for polyfun ``out`` is a prefix: ``OUT.<CHR>.annot.parquet``, whose
    directory is created; for vcf.gz also the ``.tbi`` index). ``out="-"``: tsv and genes go
    to standard output. ``tracks`` (vcf, binned models): ``"all"`` or comma-separated track
    names exported one INFO key each, instead of the largest-|score| summary."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if wide and fmt not in ("tsv", "parquet"):
        raise ExportError("--wide applies to tsv and parquet only")
    if tracks is not None and fmt != "vcf":
        raise ExportError("--tracks applies to vcf only")
    stdout = str(out) == "-"
    if stdout and fmt not in ("tsv", "genes"):
        raise ExportError(f"-o - (standard output) applies to tsv and genes, not {fmt}")
    out = Path(out)
    if fmt == "polyfun":
        out.parent.mkdir(parents=True, exist_ok=True)
    elif not stdout and out.parent and not out.parent.is_dir():
        raise ExportError(f"directory {out.parent} does not exist")
    store = Store.open(store_path, mode="r")
    try:
        verify(store)
        with reading(store):
            src = _Source(store)
            prov = _prov.of_export(dict(store.root.attrs), store_path)
            if fmt == "polyfun":
                return _write_polyfun(src, out, prov)
            if stdout:
                if fmt == "tsv":
                    _write_table(src, sys.stdout, parquet=False, wide=wide, prov=prov)
                else:
                    from veff.export_genes import write_genes_tsv

                    write_genes_tsv(store, sys.stdout, header=comment_header(prov))
                return [Path("-")]
            with replaced_at_end([out]) as (tmp,):
                if fmt in ("tsv", "parquet"):
                    _write_table(src, tmp, parquet=fmt == "parquet", wide=wide, prov=prov)
                elif fmt == "genes":  # the (variant, gene) tables (veff/export_genes.py)
                    from veff.export_genes import write_genes_tsv

                    write_genes_tsv(store, tmp, header=comment_header(prov))
                else:
                    from veff.export_vcf import write_vcf

                    is_sorted = write_vcf(src, out, tmp, provenance=_prov.flat_lines(prov), tracks=tracks,
                              store_path=store_path)
            if fmt == "vcf" and out.name.endswith((".gz", ".bgz")):
                from veff.export_vcf import index

                return [out, *index(out, is_sorted)]
            return [out]
    finally:
        store.close()
