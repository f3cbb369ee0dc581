"""`veff export`: a finished store -> TSV / Parquet tables, PolyFun annotations, or a VCF.

Formats (docs/export.md has the column lists):

- ``tsv``/``parquet``, long (default): one row per variant × model × track × statistic
  (``chrom pos ref alt id status model track stat value``), plus consensus rows with
  ``model = "consensus"``, ``track = <group>``, ``stat`` in score, sign_agreement, num_strong,
  num_models. ``wide=True``: one row per variant, one column per ``<model>/<track>/<stat>`` and
  per ``consensus/<group>/<field>``.
- ``polyfun``: ``OUT.<CHR>.annot.parquet`` per chromosome, PolyFun's ``CHR SNP BP A1 A2`` and
  non-negative annotations (per model and statistic the maximum |score| over tracks; per
  consensus group |score| and a strong indicator; ``veff_unscored``), NaN written as 0.
- ``vcf``: bgzipped VCF, one record per input record (multi-allelic rows rejoined, ``Number=A``
  values in ALT order), one INFO key per model × statistic × track and per consensus field.

Tables are written chunk by chunk of the store's variants, so memory stays bounded. Every
output is written under a temporary name next to it and renamed at the end, and the store
is checked first (veff/integrity.py): an incomplete or damaged store is refused, naming the
chunk, instead of exporting fill values.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from veff import __version__
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


def _write_table(src: _Source, out: Path, *, parquet: bool, wide: bool) -> None:
    frame = _wide_frame if wide else _long_frame
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for a, b in src.spans():
                table = pa.Table.from_pandas(frame(src, a, b), preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(str(out), table.schema)
                writer.write_table(table.cast(writer.schema))
            if writer is None:  # an empty store still gets a readable file
                table = pa.Table.from_pandas(frame(src, 0, 0), preserve_index=False)
                pq.write_table(table, str(out))
        finally:
            if writer is not None:
                writer.close()
        return
    with open(out, "w") as fh:
        first = True
        for a, b in src.spans():
            # float32 values printed with 9 significant digits read back bit-exact
            frame(src, a, b).to_csv(fh, sep="\t", index=False, header=first, na_rep="NA",
                                    float_format="%.9g")
            first = False
        if first:
            frame(src, 0, 0).to_csv(fh, sep="\t", index=False, header=True)


# ---------------------------------------------------------------------------- PolyFun
def plink_chrom(chrom: str) -> int | None:
    """``chr7``/``7`` -> 7, X -> 23, Y -> 24, XY -> 25, M/MT -> 26; other contigs None."""
    key = chrom[3:] if chrom[:3].lower() == "chr" else chrom
    if key.isdigit():
        return int(key)
    return _PLINK.get(key.upper())


def _column_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(parts)).strip("_")


def _write_polyfun(src: _Source, prefix: Path) -> list[Path]:
    import pandas as pd

    frames = []
    for a, b in src.spans():
        v = src.variants(a, b, ("chrom", "pos", "ref", "alt", "id", "status"))
        chr_num = [plink_chrom(str(c)) for c in v["chrom"]]
        keep = np.array([c is not None for c in chr_num], dtype=bool)
        ids = _strs(v["id"])
        snp = np.array([i if i not in (".", "") else f"{c}:{p}:{r}:{al}"
                        for i, c, p, r, al in zip(ids, v["chrom"], v["pos"], v["ref"], v["alt"])], dtype=object)
        data: dict[str, Any] = {
            "CHR": np.array([c or 0 for c in chr_num], dtype=np.int64),
            "SNP": snp, "BP": np.asarray(v["pos"], dtype=np.int64),
            "A1": _strs(v["alt"]), "A2": _strs(v["ref"]),
        }
        for m in src.models:
            for s in src.stats[m]:
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
    names = list(df.columns)
    if len(set(names)) != len(names):
        raise ExportError("two annotation names collide after sanitising; rename a model")
    if df.empty:
        raise ExportError("no variant lies on a chromosome PolyFun can number (1-22, X, Y, MT)")
    parts = list(df.groupby("CHR", sort=True))
    written = [Path(f"{prefix}.{chr_num}.annot.parquet") for chr_num, _ in parts]
    with replaced_at_end(written) as tmps:
        for (_, part), tmp in zip(parts, tmps):
            part.sort_values("BP", kind="stable").to_parquet(tmp, index=False)
    return written


# ---------------------------------------------------------------------------- VCF
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_BGZF_BLOCK = 0xFF00  # htslib's uncompressed block size


class BgzfWriter:
    """Minimal BGZF writer (RFC 1952 members with the BC extra field + the EOF block)."""

    def __init__(self, path: Path):
        self._fh = open(path, "wb")
        self._buf = bytearray()

    def write(self, text: str) -> None:
        self._buf += text.encode()
        while len(self._buf) >= _BGZF_BLOCK:
            self._block(bytes(self._buf[:_BGZF_BLOCK]))
            del self._buf[:_BGZF_BLOCK]

    def _block(self, data: bytes) -> None:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        cdata = comp.compress(data) + comp.flush()
        bsize = 18 + len(cdata) + 8
        head = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", 6) + b"BC" + struct.pack("<HH", 2, bsize - 1)
        self._fh.write(head + cdata + struct.pack("<II", zlib.crc32(data), len(data)))

    def close(self) -> None:
        if self._buf:
            self._block(bytes(self._buf))
            self._buf.clear()
        self._fh.write(_BGZF_EOF)
        self._fh.close()


def _info_key(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", "_".join(parts))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def info_fields(src: _Source) -> list[dict[str, Any]]:
    """Every INFO field written: {key, type, description, getter spec}."""
    fields: list[dict[str, Any]] = [{"key": "VEFF_STATUS", "type": "String", "what": ("status",),
                                     "description": "veff row status per ALT allele (ok, or why it was not scored)"}]
    for m in src.models:
        for s in src.stats[m]:
            for j, t in enumerate(src.tracks[m]):
                parts = ("VEFF", m, s) if src.kind[m] == "profile" and len(src.tracks[m]) == 1 else ("VEFF", m, s, t)
                fields.append({"key": _info_key(*parts), "type": "Float", "what": ("score", m, s, j),
                               "description": f"veff model={m} track={t} statistic={s}: {src.formula(m, s)}"})
    for g in src.groups:
        fields += [
            {"key": _info_key("VEFF_CONS", g), "type": "Float", "what": ("cons", g, "score"),
             "description": f"veff consensus score of group {g} (mean member quantile; docs/consensus.md)"},
            {"key": _info_key("VEFF_CONS", g, "NSTRONG"), "type": "Integer", "what": ("cons", g, "num_strong"),
             "description": f"veff number of models strong for group {g}"},
            {"key": _info_key("VEFF_CONS", g, "CALL"), "type": "String", "what": ("cons", g, "call"),
             "description": f"veff consensus call of group {g} (weak, agreed, single_model, conflict, none)"},
        ]
    keys = [f["key"] for f in fields]
    seen: dict[str, int] = {}
    for f in fields:  # keep keys unique after sanitising
        if keys.count(f["key"]) > 1:
            seen[f["key"]] = seen.get(f["key"], 0) + 1
            f["key"] = f"{f['key']}_{seen[f['key']]}"
    return fields


def _fmt(value, typ: str) -> str:
    if typ == "String":
        return str(value) or "."
    if typ == "Integer":
        return str(int(value))
    v = float(value)
    return "." if np.isnan(v) else format(v, ".9g")


def _write_vcf(src: _Source, out: Path) -> None:
    fields = info_fields(src)
    chroms = list(dict.fromkeys(str(c) for c in src.root["variants"]["chrom"][:]))
    w = BgzfWriter(out)
    try:
        w.write("##fileformat=VCFv4.2\n")
        w.write(f"##source=veff {__version__}\n")
        for c in chroms:
            w.write(f"##contig=<ID={c}>\n")
        for f in fields:
            w.write(f'##INFO=<ID={f["key"]},Number=A,Type={f["type"]},Description="{_escape(f["description"])}">\n')
        w.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        pending: list[dict[str, Any]] = []  # rows of the current input record
        for a, b in src.spans():
            v = src.variants(a, b, ("chrom", "id", "status", "record", "orig_pos", "orig_ref", "orig_alt"))
            cols: dict[tuple, np.ndarray] = {}
            for f in fields:
                what = f["what"]
                if what[0] == "score" and what[1:3] not in cols:
                    cols[what[1:3]] = src.scores(what[1], what[2], a, b)
                elif what[0] == "cons":
                    cols[what] = src.consensus(what[1], what[2], a, b)
            for i in range(b - a):
                row = {"chrom": str(v["chrom"][i]), "id": str(v["id"][i]), "record": int(v["record"][i]),
                       "pos": int(v["orig_pos"][i]), "ref": str(v["orig_ref"][i]), "alt": str(v["orig_alt"][i]),
                       "values": [_row_value(f["what"], cols, v, i) for f in fields]}
                key = (row["record"], row["chrom"], row["pos"], row["ref"])
                if pending and key != pending[0]["key"]:
                    _write_record(w, pending, fields)
                    pending = []
                row["key"] = key
                pending.append(row)
        if pending:
            _write_record(w, pending, fields)
    finally:
        w.close()


def _row_value(what: tuple, cols: dict, v: dict, i: int):
    if what[0] == "status":
        return str(v["status"][i])
    if what[0] == "score":
        return cols[what[1:3]][i, what[3]]
    return cols[what][i]


def _write_record(w: BgzfWriter, rows: list[dict[str, Any]], fields: list[dict[str, Any]]) -> None:
    r0 = rows[0]
    alts = [r["alt"] for r in rows if r["alt"] not in ("", ".")]
    info = "."
    if alts:
        scored = [r for r in rows if r["alt"] not in ("", ".")]
        items = []
        for k, f in enumerate(fields):
            vals = [_fmt(r["values"][k], f["type"]) for r in scored]
            if all(x == "." for x in vals):
                continue  # an all-missing Number=A field is left out
            items.append(f"{f['key']}={','.join(vals)}")
        info = ";".join(items) or "."
    w.write(f"{r0['chrom']}\t{r0['pos']}\t{r0['id'] or '.'}\t{r0['ref']}\t{','.join(alts) or '.'}\t.\t.\t{info}\n")


# ---------------------------------------------------------------------------- entry point
def export(store_path: str | Path, fmt: str, out: str | Path, *, wide: bool = False) -> list[Path]:
    """Write ``store_path`` as ``fmt`` (tsv, parquet, polyfun, vcf) to ``out``; returns the
    files written (for polyfun ``out`` is a prefix: ``OUT.<CHR>.annot.parquet``)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if wide and fmt not in ("tsv", "parquet"):
        raise ExportError("--wide applies to tsv and parquet only")
    out = Path(out)
    if fmt != "polyfun" and out.parent and not out.parent.is_dir():
        raise ExportError(f"directory {out.parent} does not exist")
    store = Store.open(store_path, mode="r")
    try:
        verify(store)
        with reading(store):
            src = _Source(store)
            if fmt == "polyfun":
                return _write_polyfun(src, out)
            with replaced_at_end([out]) as (tmp,):
                if fmt in ("tsv", "parquet"):
                    _write_table(src, tmp, parquet=fmt == "parquet", wide=wide)
                elif fmt == "genes":  # the (variant, gene) tables (veff/export_genes.py)
                    from veff.export_genes import write_genes_tsv

                    write_genes_tsv(store, tmp)
                else:
                    _write_vcf(src, tmp)
            return [out]
    finally:
        store.close()
