"""`veff export --format vcf`: the input VCF annotated with veff's scores (docs/export.md).

The input the store was scored from (its path and digest are in the store's fingerprint) is
read with cyvcf2 (htslib) and each record passes through as htslib reads it, so QUAL, FILTER,
INFO, FORMAT, the samples and the header (contig lengths included) are kept; veff adds its
INFO fields (``Number=A``, in ALT order) and ``##veff...`` provenance lines. The store's rows
of one input record are that record's ALT alleles in order (veff/io/vcf.py), so record k of
the input gets the store's rows whose ``record`` is k; CHROM, POS and REF are checked.

When the input is gone, changed since scoring (size or SHA-256), a stream, or not a VCF, a
sites-only VCF is written from the store instead and one line on stderr says why.

``.vcf``: plain text. ``.vcf.gz``/``.bgz``: BGZF (htslib, through pysam.BGZFile) and a tabix index
``.tbi`` (pysam.tabix_index); an unsorted input cannot be indexed, which is said in one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from veff import notes

_TRACK_TEXT = re.compile(r"[^A-Za-z0-9_.:@+\-]+")


def _info_key(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", "_".join(parts))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _chosen_tracks(src, model: str, tracks: str | None) -> list[int] | None:
    """Track indices exported one INFO key each, or None for the summary."""
    names = src.tracks[model]
    if src.kind[model] == "profile" and len(names) == 1:
        return [0]
    if tracks is None:
        return None
    if tracks == "all":
        return list(range(len(names)))
    from veff.export import ExportError

    wanted = [t.strip() for t in tracks.split(",") if t.strip()]
    idx = [names.index(t) for t in wanted if t in names]
    if not idx:
        from veff.cli import did_you_mean

        raise ExportError(f"--tracks {tracks!r}: no such track in {model}; "
                          f"{did_you_mean(wanted[0] if wanted else '', names)}"
                          f"tracks: {', '.join(names[:20])}{' …' if len(names) > 20 else ''}")
    return idx


def info_fields(src, tracks: str | None = None) -> list[dict[str, Any]]:
    """Every INFO field written: {key, type, description, what}."""
    fields: list[dict[str, Any]] = [{"key": "VEFF_STATUS", "type": "String", "what": ("status",),
                                     "description": "veff row status per ALT allele (ok, or why it was not scored)"}]
    for m in src.models:
        chosen = _chosen_tracks(src, m, tracks)
        for s in src.stats[m]:
            if chosen is None:  # binned model: the track with the largest |score|
                fields.append({"key": _info_key("VEFF", m, s), "type": "Float", "what": ("top", m, s),
                               "description": f"veff model={m} statistic={s}, the value of the track "
                               f"with the largest |value| of {len(src.tracks[m])}: {src.formula(m, s)}"})
                fields.append({"key": _info_key("VEFF", m, s, "TRACK"), "type": "String",
                               "what": ("toptrack", m, s),
                               "description": f"veff model={m} statistic={s}: the track of VEFF_{m}_{s}"})
                continue
            for j in chosen:
                t = src.tracks[m][j]
                one = src.kind[m] == "profile" and len(src.tracks[m]) == 1
                fields.append({"key": _info_key(*(("VEFF", m, s) if one else ("VEFF", m, s, t))),
                               "type": "Float", "what": ("score", m, s, j),
                               "description": f"veff model={m} track={t} statistic={s}: {src.formula(m, s)}"})
    for g in src.groups:
        fields += [
            {"key": _info_key("VEFF_CONS", g), "type": "Float", "what": ("cons", g, "score"),
             "description": f"veff consensus score of group {g} (mean member quantile; veff help consensus)"},
            {"key": _info_key("VEFF_CONS", g, "NSTRONG"), "type": "Integer", "what": ("cons", g, "num_strong"),
             "description": f"veff number of models strong for group {g}"},
            {"key": _info_key("VEFF_CONS", g, "CALL"), "type": "String", "what": ("cons", g, "call"),
             "description": f"veff consensus call of group {g} (weak, agreed, single_model, conflict, none)"},
        ]
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    for f in fields:
        counts[f["key"]] = counts.get(f["key"], 0) + 1
    for f in fields:  # keep keys unique after sanitising
        if counts[f["key"]] > 1:
            seen[f["key"]] = seen.get(f["key"], 0) + 1
            f["key"] = f"{f['key']}_{seen[f['key']]}"
    return fields


def _fmt(value, typ: str) -> str:
    if typ == "String":
        text = _TRACK_TEXT.sub("_", str(value))
        return text or "."
    if typ == "Integer":
        return str(int(value))
    v = float(value)
    return "." if np.isnan(v) else format(v, ".9g")


def _columns(src, fields, a: int, b: int) -> dict[tuple, Any]:
    cols: dict[tuple, Any] = {}
    for f in fields:
        what = f["what"]
        if what[0] in ("score", "top", "toptrack") and ("s",) + what[1:3] not in cols:
            cols[("s",) + what[1:3]] = src.scores(what[1], what[2], a, b)
        elif what[0] == "cons":
            cols[what] = src.consensus(what[1], what[2], a, b)
    return cols


def _value(what: tuple, cols: dict, v: dict, i: int, src) -> Any:
    if what[0] == "status":
        return str(v["status"][i])
    if what[0] == "cons":
        return cols[what][i]
    vals = cols[("s",) + what[1:3]][i]
    if what[0] == "score":
        return vals[what[3]]
    if np.isnan(vals).all():
        return np.nan if what[0] == "top" else "."
    j = int(np.nanargmax(np.abs(vals)))
    return vals[j] if what[0] == "top" else src.tracks[what[1]][j]


def _records(src, fields):
    """(record, chrom, pos, ref, alts, [info text per field]) per input record, in order."""
    pending: list[dict] = []
    for a, b in src.spans():
        v = src.variants(a, b, ("chrom", "id", "status", "record", "orig_pos", "orig_ref", "orig_alt"))
        cols = _columns(src, fields, a, b)
        for i in range(b - a):
            row = {"record": int(v["record"][i]), "chrom": str(v["chrom"][i]), "id": str(v["id"][i]),
                   "pos": int(v["orig_pos"][i]), "ref": str(v["orig_ref"][i]), "alt": str(v["orig_alt"][i]),
                   "values": [_value(f["what"], cols, v, i, src) for f in fields]}
            if pending and row["record"] != pending[0]["record"]:
                yield pending
                pending = []
            pending.append(row)
    if pending:
        yield pending


def _info_text(rows: list[dict], fields) -> str:
    scored = [r for r in rows if r["alt"] not in ("", ".")]
    items = []
    for k, f in enumerate(fields):
        vals = [_fmt(r["values"][k], f["type"]) for r in scored]
        if not vals or all(x == "." for x in vals):
            continue  # an all-missing Number=A field is left out
        items.append(f"{f['key']}={','.join(vals)}")
    return ";".join(items)


def _input_vcf(src, store_path) -> tuple[str | None, str]:
    """The input VCF to annotate, or (None, why not)."""
    from veff.fingerprint import file_digest

    run = src.root.attrs.get("run") or {}
    fp = (src.root.attrs.get("fingerprint") or {}).get("VARIANTS") or {}
    path = fp.get("path") or run.get("variants")
    if not path:
        return None, f"{store_path} does not record its input VCF"
    if fp.get("stream") or path == "-":
        return None, f"the input was a stream ({path})"
    if not Path(path).is_file():
        return None, f"the input {path} is gone"
    if fp.get("sha256"):
        now = file_digest(path)
        if (now["size"], now["sha256"]) != (fp["size"], fp["sha256"]):
            return None, f"the input {path} changed since scoring (sha256 {now['sha256'][:12]}, was {fp['sha256'][:12]})"
    return str(path), ""


def write_vcf(src, out: Path, tmp: Path, *, provenance: list[tuple[str, str]], tracks: str | None,
              store_path) -> bool:
    """Write the VCF to ``tmp`` (renamed to ``out`` by the caller, who then calls
    :func:`index`); True when its records are sorted (indexable).

    Records pass through htslib (cyvcf2) as read; veff's values are appended to INFO as text
    with 9 significant digits (float32 reads back bit-exact; htslib's own float formatting
    keeps 6), and the file is written as text or as BGZF through htslib (pysam.BGZFile)."""
    from cyvcf2 import VCF

    fields = info_fields(src, tracks)
    path, why = _input_vcf(src, store_path)
    reader = None
    if path is not None:
        try:
            reader = VCF(path)
        except Exception as e:  # noqa: BLE001 - a TSV input, or a VCF htslib refuses
            why = f"cyvcf2 cannot read the input {path} as a VCF ({str(e).strip() or type(e).__name__})"
    if reader is None:
        notes.note(f"{why}; writing a sites-only VCF from the store")
    header = reader.raw_header if reader is not None else _sites_header(src)
    lines = [f'##INFO=<ID={f["key"]},Number=A,Type={f["type"]},Description="{_escape(f["description"])}">'
             for f in fields]
    lines += [f"##veff.{key}={value}".replace("\n", " ") for key, value in provenance]
    at = header.rindex("#CHROM")
    header = header[:at] + "".join(x + "\n" for x in lines) + header[at:]
    order = _Order()
    with _open_text(tmp, bgzf=out.name.endswith((".gz", ".bgz"))) as write:
        write(header)
        if reader is None:
            _write_sites(write, src, fields, order)
        else:
            try:
                _write_annotated(write, reader, src, fields, path, order)
            finally:
                reader.close()
    return order.sorted


class _open_text:
    """A text sink: a plain file, or BGZF through htslib (pysam) for ``.vcf.gz``."""

    def __init__(self, path: Path, *, bgzf: bool):
        self.path, self.bgzf = path, bgzf

    def __enter__(self):
        if self.bgzf:
            from pysam.libcbgzf import BGZFile

            self.fh = BGZFile(str(self.path), "wb")
            return lambda text: self.fh.write(text.encode())
        self.fh = open(self.path, "w")
        return self.fh.write

    def __exit__(self, *exc):
        self.fh.close()


class _Order:
    """Whether records come sorted (each contig in one block, positions non-decreasing):
    only then can a tabix index be built."""

    def __init__(self):
        self.sorted, self._chrom, self._pos, self._seen = True, None, 0, set()

    def see(self, chrom: str, pos: int) -> None:
        if chrom != self._chrom:
            if chrom in self._seen:
                self.sorted = False
            self._seen.add(chrom)
            self._chrom, self._pos = chrom, pos
        elif pos < self._pos:
            self.sorted = False
        self._pos = max(self._pos, pos)


def _sites_header(src) -> str:
    chroms = list(dict.fromkeys(str(c) for c in src.root["variants"]["chrom"][:]))
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c}>" for c in chroms),
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    return "\n".join(lines) + "\n"


def _write_sites(write, src, fields, order) -> None:
    for rows in _records(src, fields):
        r0 = rows[0]
        order.see(r0["chrom"], r0["pos"])
        alts = ",".join(r["alt"] for r in rows if r["alt"] not in ("", ".")) or "."
        write(f"{r0['chrom']}\t{r0['pos']}\t{r0['id'] or '.'}\t{r0['ref']}\t{alts}\t.\t.\t"
              f"{_info_text(rows, fields) or '.'}\n")


def _write_annotated(write, reader, src, fields, path, order) -> None:
    from veff.export import ExportError

    groups = _records(src, fields)
    nxt = next(groups, None)
    for k, rec in enumerate(reader):
        text = str(rec).rstrip("\n").split("\t")
        order.see(rec.CHROM, rec.POS)
        if nxt is not None and nxt[0]["record"] == k:
            r0 = nxt[0]
            if (r0["chrom"], r0["pos"], r0["ref"].upper()) != (rec.CHROM, rec.POS, rec.REF.upper()):
                raise ExportError(f"record {k + 1} of {path} ({rec.CHROM}:{rec.POS} {rec.REF}) is not "
                                  f"the store's ({r0['chrom']}:{r0['pos']} {r0['ref']}); was the store "
                                  "scored from this file?")
            extra = _info_text(nxt, fields)
            if extra:
                text[7] = extra if text[7] == "." else f"{text[7]};{extra}"
            nxt = next(groups, None)
        write("\t".join(text) + "\n")
    if nxt is not None:
        raise ExportError(f"{path} has fewer records than the store (record {nxt[0]['record'] + 1} is "
                          "missing); was the store scored from this file?")


def index(out: Path, is_sorted: bool = True) -> list[Path]:
    """The tabix index ``out.tbi`` of a bgzipped VCF; [] with a note when it cannot be made."""
    idx = Path(f"{out}.tbi")
    idx.unlink(missing_ok=True)  # never leave an index of an earlier file
    if not is_sorted:
        notes.note(f"{out} is not indexed: the input is not sorted; sort it "
                   "with `bcftools sort -Oz` and index it with `tabix -p vcf`")
        return []
    try:
        import pysam
    except ModuleNotFoundError:
        notes.note("no index written (it needs pysam: pip install 'veff[export]')")
        return []
    try:
        pysam.tabix_index(str(out), preset="vcf", force=True, keep_original=True)
    except (OSError, ValueError) as e:
        notes.note(f"{out} is not indexed ({str(e).strip() or 'unsorted input'}); "
                   "sort it with `bcftools sort` and index it with `tabix -p vcf`")
        return []
    return [idx]
