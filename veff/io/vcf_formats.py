"""Record readers for :mod:`veff.io.vcf`: text VCF (plain, gzip, BGZF), BCF through cyvcf2,
and variant-scorer TSV, each yielding raw ``_Record`` rows (one per input record, every ALT)
with the file's line number; ``##contig`` header parsing. Format detection and standard
input live in :mod:`veff.io.vcf_source`.

Errors are one line, ``<file>:<line>: <what> — <what to do>``. Only the file's structure
raises (undecodable or truncated bytes, missing columns, a header line among the records);
a field value that cannot be used (POS, alleles) becomes a row status instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import itertools
import os
import re
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Iterator

_CONTIG_LINE = re.compile(r"^##contig=<(.*)>\s*$")
_ASCII_DIGITS = re.compile(r"[0-9]+")
# VCF/BCF positions are 32-bit (htslib refuses larger ones in BCF); larger ones are invalid.
MAX_POS = 2**31 - 1


class VcfError(Exception):
    """The variant file is unreadable or malformed (message names the file and line)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Record:
    chrom: str
    pos1: int | None  # None: POS is not a whole number in 0..MAX_POS (status invalid_pos)
    id: str
    ref: str
    alts: list[str]  # [] when ALT is '.'
    record: int
    line: int | None
    empty_allele: str | None = None  # TSV: the spelling of an empty allele ('-')


# ------------------------------------------------------------------- formats
def parse_pos(text: str) -> int | None:
    """A position written in ASCII digits, in 0..MAX_POS; None otherwise (``²``, ``-1``,
    ``1e5`` and 20-digit numbers included)."""
    if not _ASCII_DIGITS.fullmatch(text) or len(text.lstrip("0")) > 10:
        return None
    value = int(text)
    return value if value <= MAX_POS else None


def _open_binary(path: Path, name: str):
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    except OSError as e:
        raise VcfError(f"{name}: cannot read: {e.strerror or e} — check the path and its "
                       "permissions") from None  # fmt: skip


def _text_lines(name: str, fh) -> Iterator[tuple[int, str]]:
    """(line number, line without terminator or BOM); decoded per line so errors name
    their line."""
    lineno = 0
    try:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield lineno, raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise VcfError(f"{name}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start} of the "
                       "line) — convert the file to UTF-8") from None  # fmt: skip
    except (OSError, EOFError, zlib.error) as e:
        raise VcfError(f"{name}:{lineno + 1}: cannot read: {e} — the file is truncated or "
                       "corrupt; download or copy it again") from None  # fmt: skip


def _parse_contig(line: str) -> tuple[str, int | None] | None:
    m = _CONTIG_LINE.match(line)
    if m is None:
        return None
    fields = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=(?:\"[^\"]*\"|[^,]*))", m.group(1)))
    if "ID" not in fields:
        return None
    length = fields.get("length")
    return fields["ID"], parse_pos(length) if length else None


class _VcfText:
    """Plain or (b)gzipped VCF text; reads the header eagerly so contigs are known up front."""

    def __init__(self, path: Path, name: str):
        self.path, self.name = path, name
        self.contigs: dict[str, int | None] = {}
        self._fh = _open_binary(path, name)
        self._lines = _text_lines(name, self._fh)
        self._first: tuple[int, str] | None = None
        for lineno, line in self._lines:
            if line.startswith("##contig="):
                contig = _parse_contig(line)
                if contig is not None:
                    self.contigs[contig[0]] = contig[1]
            elif not line.startswith("#") and line.strip():  # blank lines may sit in a header
                self._first = (lineno, line)
                break

    def __iter__(self) -> Iterator[_Record]:
        if self._first is None:
            return
        record = 0
        for lineno, text in itertools.chain([self._first], self._lines):
            if text.startswith("#"):
                raise VcfError(f"{self.name}:{lineno}: header line after the first record — "
                               "move every line that starts with # above the records")  # fmt: skip
            if text.strip():
                yield self._parse(text, lineno, record)
                record += 1

    def _parse(self, text: str, lineno: int, record: int) -> _Record:
        fields = text.split("\t", 5)
        if len(fields) < 5:
            raise VcfError(
                f"{self.name}:{lineno}: expected tab-separated CHROM POS ID REF ALT columns, "
                f"found {len(fields)} — separate the columns with tabs, or give the "
                "headerless variant list as chr pos ref alt [id]"
            )
        chrom, pos, vid, ref, alt = fields[:5]
        # An empty item of an ALT list ('C,,G') stays an item: it becomes a missing_alt row.
        alts = [] if alt in (".", "") else alt.split(",")
        return _Record(chrom=chrom, pos1=parse_pos(pos), id=vid or ".", ref=ref, alts=alts,
                       record=record, line=lineno)  # fmt: skip

    def close(self) -> None:
        self._fh.close()


class _Bcf:
    """BCF through cyvcf2 (htslib); record line numbers are not known."""

    def __init__(self, path: Path, name: str):
        import cyvcf2

        self.path, self.name = path, name
        with _htslib_messages() as said:
            try:
                self._vcf = cyvcf2.VCF(str(path), samples=[])
                error = None
            except Exception as e:  # cyvcf2 raises bare Exception / OSError for bad input
                error = e
        if error is not None:  # htslib's own words, which it printed to stderr, go in the line
            why = "; ".join(said()) or str(error)
            raise VcfError(f"{name}: cannot read BCF: {why} — the file is truncated or corrupt; "
                           "write it again (bcftools view -Ob)")  # fmt: skip
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
                raise VcfError(f"{self.name} (record {record + 1}): cannot read BCF: {e} — the "
                               "file is truncated or corrupt; write it again (bcftools view "
                               "-Ob)") from None  # fmt: skip
            pos1 = v.POS if 0 <= v.POS <= MAX_POS else None
            yield _Record(chrom=v.CHROM, pos1=pos1, id=v.ID or ".", ref=v.REF,
                          alts=[a for a in v.ALT], record=record, line=None)  # fmt: skip
            record += 1

    def close(self) -> None:
        self._vcf.close()


@contextlib.contextmanager
def _htslib_messages():
    """Capture what htslib writes to file descriptor 2 while opening a file, so that veff's
    one-line error carries it instead of htslib printing its own lines first. Yields a
    function returning the captured lines (complete once the block has exited)."""
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: let htslib print wherever it can
        yield lambda: lines
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(4096).decode("utf-8", "replace")
            lines += [ln.strip() for ln in text.splitlines() if ln.strip()]


class _Tsv:
    """variant-scorer's headerless list: ``chr pos(1-based) allele1 allele2 [id]``.

    allele1 is taken as REF; ``-`` is an empty allele. Blank and ``#`` lines are skipped.
    """

    def __init__(self, path: Path, name: str):
        self.path, self.name = path, name
        self.contigs: dict[str, int | None] = {}  # a TSV declares none
        self._fh = _open_binary(path, name)

    def __iter__(self) -> Iterator[_Record]:
        record = 0
        for lineno, line in _text_lines(self.name, self._fh):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 4:
                raise VcfError(
                    f"{self.name}:{lineno}: expected columns chr pos allele1 allele2 [id], "
                    f"found {len(fields)} — give every variant on its own line with at least "
                    "four columns"
                )
            yield _Record(
                chrom=fields[0], pos1=parse_pos(fields[1]), ref=fields[2], alts=[fields[3]],
                id=fields[4] if len(fields) > 4 else ".", record=record, line=lineno,
                empty_allele="-",
            )  # fmt: skip
            record += 1

    def close(self) -> None:
        self._fh.close()
