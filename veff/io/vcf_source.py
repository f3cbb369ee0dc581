"""Where the bytes of a variant file come from, and which format they are in.

``-`` reads standard input; standard input, ``/dev/stdin``, named pipes and other files that
cannot be read twice are first copied to a temporary plain file (deleted on close), so
that the format can be sniffed and cyvcf2 can open a BCF by name. The format is taken from
the content, never from the file name: gzip/BGZF is decompressed to look inside, ``BCF``
magic bytes mean BCF, a ``##fileformat=VCF`` or ``#CHROM`` header means VCF, a headerless
file whose first record has VCF's column layout (CHROM POS ID REF ALT, tab-separated) is
VCF too, and anything else is the variant-scorer TSV layout.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
import weakref
import zlib
from pathlib import Path

from veff.io.vcf_formats import VcfError

BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 64 * 1024
# The 28-byte empty block htslib and bgzip write at the end of every BGZF file.
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
# A bare allele as variant-scorer TSVs write them (IUPAC letters or '-'): a VCF ID is not one.
_PLAIN_ALLELE = re.compile(r"[ACGTNRYSWKMBDHVacgtnryswkmbdhv-]+")


class Source:
    """A regular file to read (``path``), the name messages use (``name``), its format."""

    def __init__(self, given: str | os.PathLike, fmt: str | None):
        self.name = "<stdin>" if str(given) == "-" else str(given)
        self.path = Path(given)
        self._tmp: str | None = None
        if str(given) == "-":
            self.path = self._spool(sys.stdin.buffer)
        else:
            try:
                mode = os.stat(self.path).st_mode
            except FileNotFoundError:
                raise VcfError(f"variant file not found: {self.name} — check the path "
                               "(use - to read standard input)") from None  # fmt: skip
            except OSError as e:
                raise VcfError(f"{self.name}: cannot read: {e.strerror or e} — check the path "
                               "and its permissions") from None  # fmt: skip
            if stat.S_ISDIR(mode):
                raise VcfError(f"{self.name} is a directory — give a VCF, BCF or TSV file")
            if not stat.S_ISREG(mode):  # a pipe, /dev/stdin, a process substitution
                try:
                    with open(self.path, "rb") as fh:
                        self.path = self._spool(fh)
                except OSError as e:
                    raise VcfError(f"{self.name}: cannot read: {e.strerror or e} — check the "
                                   "path and its permissions") from None  # fmt: skip
        self.format = self._detect(fmt)

    def _spool(self, fh) -> Path:
        tmp = tempfile.NamedTemporaryFile(prefix="veff-variants-", delete=False)
        self._tmp = tmp.name
        weakref.finalize(self, _unlink, tmp.name)
        try:
            with tmp:
                shutil.copyfileobj(fh, tmp, 1 << 20)
        except OSError as e:
            raise VcfError(
                f"{self.name}: cannot copy the input to a temporary file ({e.strerror or e}) "
                "— set TMPDIR to a folder with space"
            ) from None
        return Path(tmp.name)

    def close(self) -> None:
        if self._tmp is not None:
            _unlink(self._tmp)
            self._tmp = None

    def _detect(self, fmt: str | None) -> str:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(SNIFF_BYTES)
                gz = head[:2] == b"\x1f\x8b"
                if gz and _is_bgzf(head):
                    fh.seek(0, os.SEEK_END)
                    size = fh.tell()
                    fh.seek(max(size - len(BGZF_EOF), 0))
                    if fh.read() != BGZF_EOF:
                        raise VcfError(
                            f"{self.name}: the BGZF (bgzip) file has no end-of-file block, so "
                            "it is truncated — download or copy it again, or recompress it "
                            "with bgzip"
                        )
            if gz:
                head = zlib.decompressobj(wbits=31).decompress(head)
        except (OSError, zlib.error) as e:
            raise VcfError(
                f"{self.name}: cannot read: {e} — the file is corrupt or not VCF/BCF/TSV; "
                "check it with `zcat` or `bcftools view`"
            ) from None
        if head[:3] == b"BCF":
            if fmt == "tsv":
                raise VcfError(f"{self.name} is a BCF file, not a TSV — leave the format out")
            return "bcf"
        if fmt is not None:
            return fmt
        return sniff_text(head)


def is_stream(path: str | os.PathLike | None) -> bool:
    """``-``, or an existing path that is not a regular file or folder (a pipe, /dev/stdin):
    input that can be read only once."""
    if path is None:
        return False
    if str(path) == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def sniff_text(head: bytes) -> str:
    """'vcf' or 'tsv' for the (decompressed) start of a text file."""
    if head.startswith(BOM):
        head = head[len(BOM) :]
    for raw in head.split(b"\n")[:10_000]:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line.strip():
            continue
        if line.startswith("#"):
            if line.startswith(("##fileformat=VCF", "#CHROM")):
                return "vcf"
            continue
        return "vcf" if _looks_like_vcf_record(line) else "tsv"
    return "tsv"


def _looks_like_vcf_record(line: str) -> bool:
    """CHROM POS ID REF ALT, tab-separated: the third column is an ID, not an allele."""
    fields = line.split("\t")
    return len(fields) >= 5 and (fields[2] == "." or not _PLAIN_ALLELE.fullmatch(fields[2]))


def _is_bgzf(head: bytes) -> bool:
    """gzip member with the FEXTRA 'BC' subfield (SAM/BAM spec, section 4.1)."""
    return len(head) >= 18 and bool(head[3] & 4) and head[12:14] == b"BC"


def _unlink(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
