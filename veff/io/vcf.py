"""Variant input: VCF / VCF.gz / BCF / variant-scorer TSV -> a stream of ``Variant`` rows.

One row per ALT allele of every input record, each with a ``Status`` (docs/variants.md holds
the status table, its precedence, normalisation and the build check). Streaming: memory does
not grow with the file.

Text VCF is parsed here rather than through htslib: only the first five columns matter,
htslib rejects VCFs without a ``#CHROM`` line (baskerville's test VCFs have none), prints its
own errors to stderr, and cannot say on which line a record sits. BCF goes through cyvcf2.
``-`` reads standard input; the format is sniffed from the content (veff.io.vcf_source).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterator, Literal

from veff.io.genome import ContigAliases, Genome, GenomeError
from veff.io.vcf_formats import (  # noqa: F401 - VcfError is part of this module's API
    VcfError,
    _Bcf,
    _Record,
    _Tsv,
    _VcfText,
)
from veff.io.vcf_source import Source
from veff.types import Status, Variant

RefMismatchMode = Literal["skip", "error", "flip"]
Format = Literal["vcf", "tsv"]

_ACGT = frozenset("ACGT")
# IUPAC codes a FASTA may carry -> the bases each one allows (N is NOT a wildcard: a REF placed
# in an assembly gap is a mismatch, and most likely a wrong build).
_IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T", "R": "AG", "Y": "CT", "S": "CG", "W": "AT",
    "K": "GT", "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG",
}  # fmt: skip



class BuildMismatchError(VcfError):
    """Too many SNV REF alleles differ from the genome: wrong build or wrong FASTA."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildCheck:
    """Abort when at least ``max_mismatch_rate`` of checked SNV REFs differ from the genome.

    Evaluated once ``first_check_at`` SNVs have been checked and again at the end of the
    input, and only once ``min_checked`` SNVs have been checked.
    """

    min_checked: int = 20
    max_mismatch_rate: float = 0.05
    first_check_at: int = 1000

    def __post_init__(self):
        if self.min_checked < 1 or self.first_check_at < 1:
            raise ValueError("BuildCheck: min_checked and first_check_at must be >= 1")
        if not 0.0 < self.max_mismatch_rate <= 1.0:
            raise ValueError("BuildCheck: max_mismatch_rate must be in (0, 1]")


@dataclasses.dataclass(kw_only=True)
class ReaderStats:
    """Running totals of one read; complete once the iterator is exhausted."""

    num_records: int = 0
    num_rows: int = 0
    num_snv_checked: int = 0
    num_snv_mismatch: int = 0
    num_flipped: int = 0

    @property
    def snv_mismatch_rate(self) -> float:
        return self.num_snv_mismatch / self.num_snv_checked if self.num_snv_checked else 0.0


def read_variants(
    path: str | os.PathLike,
    genome: Genome | str | os.PathLike,
    *,
    ref_mismatch: RefMismatchMode = "skip",
    max_indel_len: int = 50,
    fmt: Format | None = None,
    build_check: BuildCheck | None = BuildCheck(),
) -> VariantReader:
    """Open a variant file and return an iterator of ``Variant`` rows (one per ALT allele).

    ``path`` may be ``-`` (standard input) or a pipe. Opening errors raise at once (VcfError
    / GenomeError); record-level problems become statuses. ``fmt`` forces "vcf" (VCF, VCF.gz
    or BCF) or "tsv"; None sniffs it from the content.
    """
    if ref_mismatch not in ("skip", "error", "flip"):
        raise ValueError(f"ref_mismatch must be 'skip', 'error' or 'flip', not {ref_mismatch!r}")
    if max_indel_len < 0:
        raise ValueError("max_indel_len must be >= 0")
    if fmt not in (None, "vcf", "tsv"):
        raise ValueError(f"fmt must be None, 'vcf' or 'tsv', not {fmt!r}")
    genome = genome if isinstance(genome, Genome) else Genome(genome)
    return VariantReader(
        Path(path),
        genome,
        ref_mismatch=ref_mismatch,
        max_indel_len=max_indel_len,
        fmt=fmt,
        build_check=build_check,
    )


class VariantReader:
    """Iterator of ``Variant`` rows; ``stats`` and ``aliases`` describe what was read so far."""

    def __init__(self, path, genome, *, ref_mismatch, max_indel_len, fmt, build_check):
        self.path = path
        self.genome = genome
        self.ref_mismatch = ref_mismatch
        self.max_indel_len = max_indel_len
        self.build_check = build_check
        self.stats = ReaderStats()
        self._input = Source(path, fmt)
        self.name = self._input.name  # what messages call the file ('<stdin>' for '-')
        self.format = self._input.format
        opener = {"vcf": _VcfText, "bcf": _Bcf, "tsv": _Tsv}[self.format]
        try:
            self._source = opener(self._input.path, self.name)
            self.aliases: ContigAliases = genome.alias_map(self._source.contigs)
        except BaseException:
            self._input.close()
            raise
        self._rows = self._generate()

    def __iter__(self) -> Iterator[Variant]:
        return self

    def __next__(self) -> Variant:
        return next(self._rows)

    def close(self) -> None:
        self._rows.close()
        self._source.close()
        self._input.close()

    def _generate(self) -> Iterator[Variant]:
        try:
            for rec in self._source:
                self.stats.num_records += 1
                for alt in rec.alts or ["."]:
                    row = self._row(rec, alt)
                    self.stats.num_rows += 1
                    yield row
            self._check_build(final=True)
        finally:
            self._source.close()
            self._input.close()

    # --------------------------------------------------------------- one row
    def _row(self, rec: _Record, alt_in: str) -> Variant:
        ref, alt = rec.ref.upper(), alt_in.upper()
        common = dict(
            chrom=rec.chrom, id=rec.id, orig_pos1=rec.pos1, orig_ref=rec.ref, orig_alt=alt_in,
            record=rec.record, line=rec.line,
        )  # fmt: skip

        # Resolved for every row, so that rejected rows name their FASTA contig too and a
        # contig spelt two ways is caught whatever its rows' statuses.
        fasta = self.aliases.resolve(rec.chrom)

        def rejected(status: Status) -> Variant:
            return Variant(pos1=rec.pos1 or 0, ref=ref, alt=alt, status=status,
                           fasta_chrom=fasta, **common)  # fmt: skip

        if rec.pos1 is None:
            return rejected(Status.INVALID_POS)
        empty = rec.empty_allele
        r = "" if ref == empty else ref
        a = "" if alt == empty else alt
        status = _allele_status(r, a, self.max_indel_len, empty_ok=empty is not None)
        if status is not None:
            return rejected(status)
        if fasta is None:
            return rejected(Status.UNKNOWN_CONTIG)
        length = self.genome.contigs[fasta]
        pos1 = rec.pos1
        if not r or not a:  # TSV empty allele: anchor it on a genome base, VCF style
            if pos1 < 1 or pos1 - 1 + len(r) > length or (pos1 == 1 and len(r) == length):
                return rejected(Status.OUT_OF_BOUNDS)
            at0 = pos1 - 2 if pos1 >= 2 else len(r)  # at base 1: the base after (VCF rule)
            # an IUPAC anchor is written as the first base it allows (as VCF does); an N
            # anchor (assembly gap) leaves no base to write
            anchor = _IUPAC.get(self.genome.bases(fasta, at0, at0 + 1), "")[:1]
            if not anchor:
                return rejected(Status.NON_ACGT_ALLELE)
            if pos1 >= 2:
                pos1, r, a = pos1 - 1, anchor + r, anchor + a
            else:
                r, a = r + anchor, a + anchor
        if pos1 < 1 or pos1 - 1 + len(r) > length:
            return rejected(Status.OUT_OF_BOUNDS)

        snv = len(r) == 1 and len(a) == 1
        flipped = False
        genome_ref = self.genome.bases(fasta, pos1 - 1, pos1 - 1 + len(r))
        if not _ref_matches(genome_ref, r):
            if self.ref_mismatch == "flip" and snv and _ref_matches(genome_ref, a):
                r, a, flipped = a, r, True
            elif self.ref_mismatch == "error":
                raise VcfError(
                    f"{self._where(rec)}: REF {ref} at {rec.chrom}:{rec.pos1} does not match the "
                    f"genome ({genome_ref} in {self.genome.path}); ref_mismatch mode is "
                    "'error' — use the matching FASTA, or --ref-mismatch skip or flip"
                )
            else:
                if snv:
                    self._count_snv(mismatch=True)
                return rejected(Status.REF_MISMATCH)
        if snv:
            self._count_snv(mismatch=False)
            self.stats.num_flipped += flipped
        if r != a:
            pos1, r, a = normalize(pos1, r, a, self._left_bases(fasta))
        return Variant(pos1=pos1, ref=r, alt=a, status=Status.OK, fasta_chrom=fasta,
                       flipped=flipped, **common)  # fmt: skip

    def _left_bases(self, fasta: str) -> Callable[[int, int], str]:
        def left(pos1: int, n: int) -> str:
            end0 = pos1 - 1
            return self.genome.bases(fasta, max(end0 - n, 0), end0)

        return left

    def _count_snv(self, *, mismatch: bool) -> None:
        self.stats.num_snv_checked += 1
        self.stats.num_snv_mismatch += mismatch
        if self.build_check and self.stats.num_snv_checked == self.build_check.first_check_at:
            self._check_build(final=False)

    def _check_build(self, *, final: bool) -> None:
        bc, s = self.build_check, self.stats
        if bc is None or s.num_snv_checked < bc.min_checked:
            return
        if s.snv_mismatch_rate >= bc.max_mismatch_rate:
            scope = "in the whole file" if final else "among the first SNVs"
            raise BuildMismatchError(
                f"{self.name}: {s.num_snv_mismatch:,} of {s.num_snv_checked:,} checked SNV REF "
                f"alleles ({100 * s.snv_mismatch_rate:.1f}%) {scope} differ from the genome "
                f"{self.genome.path}; the variants are probably on another genome build (e.g. "
                "hg19 vs hg38) or this is the wrong FASTA. Use the matching FASTA or lift the "
                "variants over"
            )

    def _where(self, rec: _Record) -> str:
        return f"{self.name}:{rec.line}" if rec.line else f"{self.name} (record {rec.record + 1})"


# ------------------------------------------------------------------- alleles
def _is_symbolic(allele: str) -> bool:
    return (
        allele == "*"
        or allele.startswith("<")
        or "[" in allele
        or "]" in allele
        or (len(allele) > 1 and (allele[0] == "." or allele[-1] == "."))  # single breakends
    )


def _allele_status(ref: str, alt: str, max_indel_len: int, *, empty_ok: bool) -> Status | None:
    """Genome-free checks, in precedence order (docs/variants.md). ``''`` is a TSV empty
    allele when ``empty_ok``; in a VCF it is an empty field (ALT: missing; REF: not ACGT)."""
    if alt == "." or (not alt and (not ref or not empty_ok)):
        return Status.MISSING_ALT
    if _is_symbolic(alt) or _is_symbolic(ref):
        return Status.SYMBOLIC_ALLELE
    if not set(ref) <= _ACGT or not set(alt) <= _ACGT or (not ref and not empty_ok):
        return Status.NON_ACGT_ALLELE
    # Indels only: equal-length substitutions keep the window layout whatever their length.
    if len(ref) != len(alt) and max(_trimmed_lengths(ref, alt)) > max_indel_len:
        return Status.INDEL_TOO_LONG
    return None


def _trimmed_lengths(ref: str, alt: str) -> tuple[int, int]:
    """Lengths of REF and ALT once their common suffix and then prefix are removed."""
    n = min(len(ref), len(alt))
    s = 0
    while s < n and ref[-1 - s] == alt[-1 - s]:
        s += 1
    p = 0
    while p < n - s and ref[p] == alt[p]:
        p += 1
    return len(ref) - s - p, len(alt) - s - p


def _ref_matches(genome_ref: str, ref: str) -> bool:
    if genome_ref == ref:
        return True
    if len(genome_ref) != len(ref):
        return False
    return all(b in _IUPAC.get(g, "") for g, b in zip(genome_ref, ref))


def normalize(
    pos1: int, ref: str, alt: str, left_bases: Callable[[int, int], str]
) -> tuple[int, str, str]:
    """Minimal, left-aligned representation (Tan et al. 2015, as vt / bcftools norm).

    Repeatedly drop a shared last base; when that would empty an allele, prepend the genome
    base to the left instead (shifting the variant left through repeats). Then drop shared
    leading bases while both alleles keep at least one base, so indels keep their VCF anchor.
    ``left_bases(pos1, n)`` returns up to ``n`` genome bases ending just before ``pos1``
    (fewer at the contig start). REF must already match the genome and differ from ALT.
    """
    if ref == alt:
        raise ValueError("normalize: REF equals ALT")
    buf = ""  # genome bases just left of pos1, fetched in growing chunks
    chunk = 32
    while ref[-1] == alt[-1]:
        if len(ref) > 1 and len(alt) > 1:
            ref, alt = ref[:-1], alt[:-1]
            continue
        if not buf and pos1 > 1:
            buf = left_bases(pos1, chunk)
            chunk = min(chunk * 2, 4096)
        if not buf or buf[-1] not in _ACGT:  # contig start or unknown base: stop here
            break
        base, buf = buf[-1], buf[:-1]
        ref, alt, pos1 = base + ref[:-1], base + alt[:-1], pos1 - 1
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos1 = ref[1:], alt[1:], pos1 + 1
    return pos1, ref, alt


__all__ = [
    "BuildCheck",
    "BuildMismatchError",
    "GenomeError",
    "ReaderStats",
    "VariantReader",
    "VcfError",
    "normalize",
    "read_variants",
]
