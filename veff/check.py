"""``veff check``: read a variant file against a genome and count row statuses.

Bad records are statuses, not errors; only unusable input (unreadable or malformed file,
unusable FASTA, ambiguous contig names) raises. The build check is reported rather than
raised here, so a wrong build still shows its numbers.
"""

from __future__ import annotations

import dataclasses
import os

from veff.io.genome import Genome
from veff.io.vcf import BuildCheck, read_variants
from veff.types import Status

NUM_EXAMPLES = 5


@dataclasses.dataclass(frozen=True, kw_only=True)
class Example:
    chrom: str
    pos1: int
    ref: str
    alt: str
    line: int | None
    record: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckReport:
    path: str
    genome_path: str
    input_format: str  # "vcf", "bcf" or "tsv"
    num_records: int
    num_rows: int
    num_flipped: int
    counts: dict[str, int]  # every status value, zeros included
    examples: dict[str, list[Example]]  # first NUM_EXAMPLES rows of each non-ok status
    renamed_contigs: dict[str, str]  # input contig -> differently spelt FASTA contig
    num_snv_checked: int
    num_snv_mismatch: int
    build_mismatch: bool  # the build check would stop `veff score`
    build_min_checked: int

    def format(self) -> str:
        """Plain-text summary table."""
        lines = [
            f"variants: {self.path} ({self.input_format})",
            f"genome:   {self.genome_path}",
            f"records:  {self.num_records:,}   rows (one per ALT): {self.num_rows:,}"
            f"   flipped: {self.num_flipped:,}",
        ]
        for src, dst in self.renamed_contigs.items():
            lines.append(f"contig:   {src} -> {dst}")
        width = max(len(s.value) for s in Status)
        lines += ["", f"{'status':<{width}}  {'rows':>10}  {'share':>7}"]
        for status in Status:
            n = self.counts[status.value]
            share = 100 * n / self.num_rows if self.num_rows else 0.0
            lines.append(f"{status.value:<{width}}  {n:>10,}  {share:>6.2f}%")
        rate = 100 * self.num_snv_mismatch / self.num_snv_checked if self.num_snv_checked else 0.0
        if self.build_mismatch:
            verdict = "FAILED: wrong genome build or FASTA?"
        elif self.num_snv_checked < self.build_min_checked:
            verdict = f"too few SNVs to judge (needs {self.build_min_checked})"
        else:
            verdict = "passed"
        lines += [
            "",
            f"build check: {self.num_snv_mismatch:,} of {self.num_snv_checked:,} checked SNV "
            f"REFs differ from the genome ({rate:.1f}%): {verdict}",
        ]
        for status, examples in self.examples.items():
            if not examples:
                continue
            lines += ["", f"first {status} rows:"]
            for e in examples:
                where = f"line {e.line}" if e.line is not None else f"record {e.record + 1}"
                lines.append(f"  {where}: {e.chrom}:{e.pos1} {e.ref}>{e.alt}")
        return "\n".join(lines)


    def blockers(self, ref_mismatch: str) -> list[str]:
        """Why `veff score` with the same options would refuse this input (empty: it would
        run): a wrong genome build, or REF mismatches under ``--ref-mismatch error``."""
        out = []
        if self.build_mismatch:
            out.append(f"{self.num_snv_mismatch:,} of {self.num_snv_checked:,} SNV REFs differ "
                       f"from {self.genome_path}: wrong genome build? (veff score stops here)")
        mismatches = self.counts.get(Status.REF_MISMATCH.value, 0)
        if ref_mismatch == "error" and mismatches:
            out.append(f"{mismatches:,} row(s) have a REF that differs from the genome and "
                       "--ref-mismatch error stops at the first; see the rows listed above")
        return out


def check_variants(
    path: str | os.PathLike,
    genome_path: str | os.PathLike,
    *,
    ref_mismatch: str = "skip",
    max_indel_len: int = 50,
    fmt: str | None = None,
    build_check: BuildCheck = BuildCheck(),
) -> CheckReport:
    """Read every record of ``path`` against ``genome_path`` and summarise the statuses."""
    if ref_mismatch == "error":
        ref_mismatch = "skip"  # a check reports mismatches instead of stopping at the first
    with Genome(genome_path) as genome:
        reader = read_variants(
            path,
            genome,
            ref_mismatch=ref_mismatch,
            max_indel_len=max_indel_len,
            fmt=fmt,
            build_check=None,
        )
        counts = {s.value: 0 for s in Status}
        examples: dict[str, list[Example]] = {s.value: [] for s in Status if s != Status.OK}
        for v in reader:
            counts[v.status.value] += 1
            kept = examples.get(v.status.value)
            if kept is not None and len(kept) < NUM_EXAMPLES:
                kept.append(
                    Example(
                        chrom=v.chrom, pos1=_first(v.orig_pos1, v.pos1),
                        ref=_first(v.orig_ref, v.ref), alt=_first(v.orig_alt, v.alt),
                        line=v.line, record=v.record,
                    )  # fmt: skip
                )
        s = reader.stats
        build_mismatch = (
            s.num_snv_checked >= build_check.min_checked
            and s.snv_mismatch_rate >= build_check.max_mismatch_rate
        )
        return CheckReport(
            path=reader.name,
            genome_path=str(genome_path),
            input_format=reader.format,
            num_records=s.num_records,
            num_rows=s.num_rows,
            num_flipped=s.num_flipped,
            counts=counts,
            examples=examples,
            renamed_contigs=reader.aliases.renamed(),
            num_snv_checked=s.num_snv_checked,
            num_snv_mismatch=s.num_snv_mismatch,
            build_mismatch=build_mismatch,
            build_min_checked=build_check.min_checked,
        )


def _first(value, fallback):
    return fallback if value is None else value
