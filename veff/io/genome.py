"""Reference genome access: plain or BGZF FASTA, contig aliases, N-padded token fetches.

The ``.fai`` index gives every contig's byte layout, so a fetch is one byte-range read and a
vectorised newline strip, never a per-base loop. Plain FASTA is memory-mapped; pyfaidx builds
(or refreshes) its ``.fai`` when missing. BGZF FASTA is read through its ``.fai`` + ``.gzi``
with a small decompressed-block cache: pyfaidx would need Biopython for BGZF, and variants
arrive sorted, so neighbouring windows share blocks.

Coordinates are 0-based half-open (``start0``/``end0``). A ``Genome`` holds open handles and a
lock; share one per process.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import mmap
import os
import re
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from veff.types import N, encode


class GenomeError(Exception):
    """The FASTA (or its index) is unusable, or contig names cannot be mapped unambiguously."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _FaiRecord:
    name: str
    length: int
    offset: int  # byte (uncompressed) offset of the first base
    line_bases: int
    line_width: int  # bases + line terminator bytes


def contig_key(name: str) -> str:
    """Alias class of a contig name: ``chr1``/``1`` -> ``1``; ``chrM``/``M``/``MT`` -> ``MT``."""
    key = name[3:] if name[:3].lower() == "chr" else name
    key = key.upper()
    return "MT" if key == "M" else key


class Genome:
    """A reference FASTA (plain or BGZF with ``.fai`` + ``.gzi``).

    ``contigs`` maps FASTA contig names to lengths in file order. ``fetch`` returns uint8 tokens
    (A=0 C=1 G=2 T=3, anything else N=4), N-padded outside the contig on both sides.
    """

    _BLOCK_CACHE = 64  # decompressed BGZF blocks kept (<= 64 KiB each)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise GenomeError(f"FASTA not found: {self.path}")
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(18)
        except OSError as e:
            raise GenomeError(f"cannot read FASTA {self.path}: {e.strerror or e}") from None
        self._lock = threading.Lock()
        self._bgzf = _is_gzip(head)
        if self._bgzf:
            if not _is_bgzf(head):
                raise GenomeError(
                    f"{self.path} is gzip-compressed but not BGZF; recompress it with `bgzip` "
                    "(htslib) or decompress it with `gunzip` so veff can index it"
                )
            self._open_bgzf()
        else:
            self._open_plain()
        self.contigs: dict[str, int] = {r.name: r.length for r in self._index.values()}
        self._groups: dict[str, list[str]] = collections.defaultdict(list)
        for name in self.contigs:
            self._groups[contig_key(name)].append(name)

    # ------------------------------------------------------------------ opening
    def _open_plain(self) -> None:
        fai = Path(f"{self.path}.fai")
        if not fai.is_file() or fai.stat().st_mtime < self.path.stat().st_mtime:
            self._build_fai()
        self._index = _read_fai(fai, self.path)
        if self.path.stat().st_size == 0:
            raise GenomeError(f"FASTA {self.path} is empty")
        self._fh = open(self.path, "rb")
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = np.frombuffer(self._mm, dtype=np.uint8)

    def _build_fai(self) -> None:
        import pyfaidx  # only needed to (re)build an index

        try:
            pyfaidx.Faidx(str(self.path), rebuild=True, build_index=True).close()
        except (OSError, pyfaidx.FastaIndexingError, ValueError) as e:
            raise GenomeError(
                f"cannot index FASTA {self.path}: {e}. veff writes {self.path}.fai next to the "
                "FASTA: the folder must be writable and every sequence's lines (but its last) "
                "must have the same length"
            ) from None

    def _open_bgzf(self) -> None:
        fai, gzi = Path(f"{self.path}.fai"), Path(f"{self.path}.gzi")
        missing = [str(p) for p in (fai, gzi) if not p.is_file()]
        if missing:
            raise GenomeError(
                f"bgzipped FASTA {self.path} needs its .fai and .gzi indexes next to it "
                f"(missing: {', '.join(missing)}); create both with `samtools faidx {self.path}`, "
                "or decompress it (`bgzip -d`) and veff indexes the plain FASTA itself"
            )
        self._index = _read_fai(fai, self.path)
        coffs, uoffs = _read_gzi(gzi)
        self._coffs, self._uoffs = coffs, uoffs
        self._fh = open(self.path, "rb")
        self._blocks: collections.OrderedDict[int, tuple[bytes, int]] = collections.OrderedDict()

    def close(self) -> None:
        with self._lock:
            if not self._bgzf:
                del self._buf
                self._mm.close()
            self._fh.close()

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, contigs={len(self.contigs)})"

    # ------------------------------------------------------------------ names
    def resolve(self, chrom: str, *, declared_length: int | None = None) -> str | None:
        """FASTA contig name for an input contig name, or None when the genome has none.

        Exact name first, then the alias class (``1``/``chr1``, ``MT``/``M``/``chrM``/``chrMT``,
        case-insensitive prefix). A declared length (VCF ``##contig``) picks among aliases of
        different lengths. Raises GenomeError when the choice is ambiguous.
        """
        group = self._groups.get(contig_key(chrom))
        if not group:
            return None
        if declared_length is not None:
            same = [g for g in group if self.contigs[g] == declared_length]
            if len(same) == 1:
                return same[0]
        lengths = {self.contigs[g] for g in group}
        if len(lengths) == 1:
            if chrom in self.contigs:
                return chrom
            if len(group) == 1:
                return group[0]
        described = ", ".join(f"'{g}' ({self.contigs[g]:,} bp)" for g in group)
        raise GenomeError(
            f"contig '{chrom}' is ambiguous in {self.path}: it could mean {described}; "
            "remove the duplicate contig from the FASTA or rename the input contigs"
        )

    def alias_map(self, declared: Mapping[str, int | None] | Iterable[str] = ()) -> ContigAliases:
        """A per-input name mapping, decided up front for the declared (header) contigs."""
        return ContigAliases(self, declared)

    # ------------------------------------------------------------------ sequence
    def fetch(self, chrom: str, start0: int, end0: int) -> np.ndarray:
        """uint8 tokens of ``[start0, end0)``; positions outside the contig are N."""
        name = self._fasta_name(chrom)
        if end0 < start0:
            raise ValueError(f"fetch: end0 {end0} < start0 {start0}")
        out = np.full(end0 - start0, N, dtype=np.uint8)
        s, e = max(start0, 0), min(end0, self.contigs[name])
        if s < e:
            out[s - start0 : e - start0] = encode(self._read(name, s, e).tobytes())
        return out

    def bases(self, chrom: str, start0: int, end0: int) -> str:
        """Upper-case FASTA letters of ``[start0, end0)`` as stored (IUPAC codes kept).

        Must lie inside the contig: used for REF checks and left-alignment, where padding
        would hide an error.
        """
        name = self._fasta_name(chrom)
        if not 0 <= start0 <= end0 <= self.contigs[name]:
            raise GenomeError(
                f"{name}:{start0}-{end0} is outside contig {name} "
                f"({self.contigs[name]:,} bp) of {self.path}"
            )
        return self._read(name, start0, end0).tobytes().decode("ascii", "replace").upper()

    def _fasta_name(self, chrom: str) -> str:
        if chrom in self.contigs:
            return chrom
        name = self.resolve(chrom)
        if name is None:
            raise GenomeError(f"contig '{chrom}' is not in {self.path}")
        return name

    def _read(self, name: str, start0: int, end0: int) -> np.ndarray:
        """Raw FASTA bytes of an in-range interval, line terminators removed."""
        rec = self._index[name]
        b0 = rec.offset + (start0 // rec.line_bases) * rec.line_width + start0 % rec.line_bases
        last = end0 - 1
        b1 = rec.offset + (last // rec.line_bases) * rec.line_width + last % rec.line_bases + 1
        with self._lock:
            raw = self._buf[b0:b1] if not self._bgzf else self._read_bgzf(b0, b1)
        if b1 - b0 != end0 - start0:
            raw = raw[(raw != 10) & (raw != 13)]
        if raw.shape[0] != end0 - start0:
            raise GenomeError(
                f"{self.path}: index does not match the sequence of '{name}' "
                f"(read {raw.shape[0]} bases for {name}:{start0}-{end0}); delete the .fai "
                "(and .gzi) and re-index"
            )
        return raw

    def _read_bgzf(self, u0: int, u1: int) -> np.ndarray:
        i = bisect.bisect_right(self._uoffs, u0) - 1
        coff, uoff = self._coffs[i], self._uoffs[i]
        parts = []
        while uoff < u1:
            data, next_coff = self._block(coff)
            if not data and next_coff == coff:
                break
            lo, hi = max(u0 - uoff, 0), min(u1 - uoff, len(data))
            if lo < hi:
                parts.append(data[lo:hi])
            uoff += len(data)
            coff = next_coff
        return np.frombuffer(b"".join(parts), dtype=np.uint8)

    def _block(self, coff: int) -> tuple[bytes, int]:
        hit = self._blocks.get(coff)
        if hit is not None:
            self._blocks.move_to_end(coff)
            return hit
        self._fh.seek(coff)
        head = self._fh.read(12)
        if len(head) < 12:  # end of file: no more blocks
            return b"", coff
        xlen = struct.unpack("<H", head[10:12])[0]
        extra = self._fh.read(xlen)
        bsize = _bgzf_bsize(extra)
        if head[:2] != b"\x1f\x8b" or bsize is None:
            raise GenomeError(f"{self.path}: corrupt BGZF block at byte {coff}")
        rest = self._fh.read(bsize + 1 - 12 - xlen)
        try:
            data = zlib.decompress(rest[:-8], wbits=-15)
        except zlib.error as e:
            raise GenomeError(f"{self.path}: corrupt BGZF block at byte {coff}: {e}") from None
        hit = (data, coff + bsize + 1)
        self._blocks[coff] = hit
        if len(self._blocks) > self._BLOCK_CACHE:
            self._blocks.popitem(last=False)
        return hit


class ContigAliases:
    """Input contig name -> FASTA contig name for one input file.

    Names declared in the header are mapped up front (with their declared lengths); other
    names are mapped when first seen. Two input names mapping to one FASTA contig is an error:
    the input would then hold two spellings of one chromosome.
    """

    def __init__(self, genome: Genome, declared: Mapping[str, int | None] | Iterable[str] = ()):
        self.genome = genome
        self.mapping: dict[str, str | None] = {}
        self._claimed: dict[str, str] = {}
        items = declared.items() if isinstance(declared, Mapping) else ((d, None) for d in declared)
        for name, length in items:
            self.resolve(name, declared_length=length)

    def resolve(self, chrom: str, *, declared_length: int | None = None) -> str | None:
        if chrom in self.mapping:
            return self.mapping[chrom]
        name = self.genome.resolve(chrom, declared_length=declared_length)
        if name is not None:
            other = self._claimed.setdefault(name, chrom)
            if other != chrom:
                raise GenomeError(
                    f"input contigs '{other}' and '{chrom}' both map to FASTA contig '{name}' of "
                    f"{self.genome.path}; use one spelling for each chromosome"
                )
        self.mapping[chrom] = name
        return name

    def renamed(self) -> dict[str, str]:
        """Input names that map to a differently spelt FASTA contig (worth telling the user)."""
        return {k: v for k, v in self.mapping.items() if v is not None and v != k}


def _is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def _is_bgzf(head: bytes) -> bool:
    if len(head) < 18 or not head[3] & 4:  # FEXTRA flag
        return False
    xlen = struct.unpack("<H", head[10:12])[0]
    return xlen >= 6 and _bgzf_bsize(head[12 : 12 + xlen]) is not None


def _bgzf_bsize(extra: bytes) -> int | None:
    """BSIZE (total block size - 1) from a gzip extra field's ``BC`` subfield."""
    i = 0
    while i + 4 <= len(extra):
        sub_len = struct.unpack("<H", extra[i + 2 : i + 4])[0]
        if extra[i : i + 2] == b"BC" and sub_len == 2:
            return struct.unpack("<H", extra[i + 4 : i + 6])[0]
        i += 4 + sub_len
    return None


_FAI_LINE = re.compile(r"^(\S+)\t(\d+)\t(\d+)\t(\d+)\t(\d+)")


def _read_fai(fai: Path, fasta: Path) -> dict[str, _FaiRecord]:
    index: dict[str, _FaiRecord] = {}
    try:
        text = fai.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GenomeError(f"cannot read FASTA index {fai}: {e}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _FAI_LINE.match(line)
        if m is None:
            raise GenomeError(f"{fai}:{lineno}: malformed .fai line; delete it and re-index")
        name = m.group(1)
        length, offset, lb, lw = (int(m.group(k)) for k in range(2, 6))
        if name in index:
            raise GenomeError(f"{fasta}: contig '{name}' appears twice; names must be unique")
        if length > 0 and (lb <= 0 or lw < lb):
            raise GenomeError(f"{fai}:{lineno}: impossible line layout; delete it and re-index")
        index[name] = _FaiRecord(
            name=name, length=length, offset=offset, line_bases=max(lb, 1), line_width=max(lw, 1)
        )
    if not index:
        raise GenomeError(f"FASTA {fasta} holds no sequences")
    return index


def _read_gzi(gzi: Path) -> tuple[list[int], list[int]]:
    """htslib .gzi: uint64 count, then (compressed, uncompressed) offset pairs; block 0 implied."""
    try:
        raw = gzi.read_bytes()
    except OSError as e:
        raise GenomeError(f"cannot read BGZF index {gzi}: {e}") from None
    if len(raw) < 8:
        raise GenomeError(f"{gzi} is truncated; re-create it with `samtools faidx`")
    (count,) = struct.unpack("<Q", raw[:8])
    if len(raw) != 8 + 16 * count:
        raise GenomeError(f"{gzi} is truncated; re-create it with `samtools faidx`")
    pairs = np.frombuffer(raw, dtype="<u8", offset=8).reshape(count, 2)
    coffs = [0] + pairs[:, 0].tolist()
    uoffs = [0] + pairs[:, 1].tolist()
    return coffs, uoffs
