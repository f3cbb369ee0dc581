"""Record readers for :mod:`veff.io.vcf`: text VCF (plain, gzip, BGZF), BCF through cyvcf2,
and variant-scorer TSV, each yielding raw ``_Record`` rows (one per input record, every ALT)
with the file's line number; format detection and ``##contig`` header parsing.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import re
import zlib
from pathlib import Path
from typing import Iterator

_CONTIG_LINE = re.compile(r"^##contig=<(.*)>\s*$")


class VcfError(Exception):
    """The variant file is unreadable or malformed (message names the file and line)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Record:
    chrom: str
    pos1: int
    id: str
    ref: str
    alts: list[str]  # [] when ALT is '.'
    record: int
    line: int | None
    empty_allele: str | None = None  # TSV: the spelling of an empty allele ('-')


# ------------------------------------------------------------------- formats
def _open_binary(path: Path):
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    except OSError as e:
        raise VcfError(f"cannot read {path}: {e.strerror or e}") from None


def _text_lines(path: Path, fh) -> Iterator[tuple[int, str]]:
    """(line number, line without terminator); decoded per line so errors name their line."""
    lineno = 0
    try:
        for lineno, raw in enumerate(fh, 1):
            yield lineno, raw.decode("utf-8").rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
        raise VcfError(f"{path}:{lineno + (not isinstance(e, UnicodeDecodeError))}: "
                       f"cannot read: {e}") from None  # fmt: skip


def _detect_format(path: Path, fmt: str | None) -> str:
    if not path.is_file():
        raise VcfError(f"variant file not found: {path}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
        if head[:2] == b"\x1f\x8b":
            head = zlib.decompressobj(wbits=31).decompress(head)
    except (OSError, zlib.error) as e:
        raise VcfError(f"cannot read {path}: {e}") from None
    if head[:3] == b"BCF":
        if fmt == "tsv":
            raise VcfError(f"{path} is a BCF file, not a TSV")
        return "bcf"
    if fmt is not None:
        return fmt
    first = head.lstrip().split(b"\n", 1)[0]
    if first.startswith(b"##fileformat=VCF") or first.startswith(b"#CHROM"):
        return "vcf"
    name = path.name.lower()
    if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz")):
        return "vcf"
    return "tsv"


def _parse_contig(line: str) -> tuple[str, int | None] | None:
    m = _CONTIG_LINE.match(line)
    if m is None:
        return None
    fields = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=(?:\"[^\"]*\"|[^,]*))", m.group(1)))
    if "ID" not in fields:
        return None
    length = fields.get("length")
    return fields["ID"], int(length) if length and length.isdigit() else None


class _VcfText:
    """Plain or (b)gzipped VCF text; reads the header eagerly so contigs are known up front."""

    def __init__(self, path: Path):
        self.path = path
        self.contigs: dict[str, int | None] = {}
        self._fh = _open_binary(path)
        self._lines = _text_lines(path, self._fh)
        self._first: tuple[int, str] | None = None
        for lineno, line in self._lines:
            if line.startswith("##contig="):
                contig = _parse_contig(line)
                if contig is not None:
                    self.contigs[contig[0]] = contig[1]
            elif not line.startswith("#"):
                self._first = (lineno, line)
                break

    def __iter__(self) -> Iterator[_Record]:
        if self._first is None:
            return
        record = 0
        for lineno, text in itertools.chain([self._first], self._lines):
            if text.startswith("#"):
                raise VcfError(f"{self.path}:{lineno}: header line after the first record")
            if text.strip():
                yield self._parse(text, lineno, record)
                record += 1

    def _parse(self, text: str, lineno: int, record: int) -> _Record:
        fields = text.split("\t", 5)
        if len(fields) < 5:
            raise VcfError(
                f"{self.path}:{lineno}: expected tab-separated CHROM POS ID REF ALT columns, "
                f"found {len(fields)} column(s)"
            )
        chrom, pos, vid, ref, alt = fields[:5]
        if not pos.isdigit():
            raise VcfError(f"{self.path}:{lineno}: POS must be a whole number, not {pos!r}")
        if not chrom or not ref:
            raise VcfError(f"{self.path}:{lineno}: empty CHROM or REF column")
        alts = [] if alt in (".", "") else alt.split(",")
        return _Record(chrom=chrom, pos1=int(pos), id=vid or ".", ref=ref, alts=alts,
                       record=record, line=lineno)  # fmt: skip

    def close(self) -> None:
        self._fh.close()


class _Bcf:
    """BCF through cyvcf2 (htslib); record line numbers are not known."""

    def __init__(self, path: Path):
        import cyvcf2

        self.path = path
        try:
            self._vcf = cyvcf2.VCF(str(path), samples=[])
        except Exception as e:  # cyvcf2 raises bare Exception / OSError for bad input
            raise VcfError(f"cannot read BCF {path}: {e}") from None
        self.contigs: dict[str, int | None] = {}
        for line in self._vcf.raw_header.splitlines():
            contig = _parse_contig(line)
            if contig is not None:
                self.contigs[contig[0]] = contig[1]

    def __iter__(self) -> Iterator[_Record]:
        record = 0
        it = iter(self._vcf)
        while True:
            try:
                v = next(it)
            except StopIteration:
                return
            except Exception as e:  # htslib parse errors surface as bare Exception
                raise VcfError(f"{self.path} (record {record + 1}): cannot read: {e}") from None
            yield _Record(chrom=v.CHROM, pos1=v.POS, id=v.ID or ".", ref=v.REF,
                          alts=[a for a in v.ALT], record=record, line=None)  # fmt: skip
            record += 1

    def close(self) -> None:
        self._vcf.close()


class _Tsv:
    """variant-scorer's headerless list: ``chr pos(1-based) allele1 allele2 [id]``.

    allele1 is taken as REF; ``-`` is an empty allele. Blank and ``#`` lines are skipped.
    """

    def __init__(self, path: Path):
        self.path = path
        self.contigs: dict[str, int | None] = {}  # a TSV declares none
        self._fh = _open_binary(path)

    def __iter__(self) -> Iterator[_Record]:
        record = 0
        for lineno, line in _text_lines(self.path, self._fh):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 4:
                raise VcfError(
                    f"{self.path}:{lineno}: expected columns chr pos allele1 allele2 [id], "
                    f"found {len(fields)} column(s)"
                )
            if not fields[1].isdigit():
                raise VcfError(
                    f"{self.path}:{lineno}: pos must be a whole number, not {fields[1]!r}"
                )
            yield _Record(
                chrom=fields[0], pos1=int(fields[1]), ref=fields[2], alts=[fields[3]],
                id=fields[4] if len(fields) > 4 else ".", record=record, line=lineno,
                empty_allele="-",
            )  # fmt: skip
            record += 1

    def close(self) -> None:
        self._fh.close()
