"""Hypothesis fuzzing of the VCF and TSV readers (fixed, derandomised budget).

Properties: reading never raises anything but VcfError / GenomeError (one line each); when it
succeeds, every data line gives exactly one row per ALT item, each with a Status, as the
oracle of scripts/fuzz_inputs.py says from docs/variants.md; ok rows have ACGT alleles and
a position inside their contig; the rows convert to the store's column arrays.
"""

import gzip
import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veff.io.genome import Genome, GenomeError
from veff.io.vcf import VcfError, read_variants
from veff.store import _VARIANT_COLUMNS, _column_array
from veff.types import Status

_spec = importlib.util.spec_from_file_location(
    "fuzz_inputs", Path(__file__).resolve().parents[1] / "scripts" / "fuzz_inputs.py"
)
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)



def budget(n: int):
    """A fixed, derandomised number of examples (the same inputs on every run)."""
    return settings(derandomize=True, max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """The fuzz script's genome: chr1 (997 bp, soft-masked run, N gap, IUPAC R), chr2."""
    import random

    path = tmp_path_factory.mktemp("fuzz_genome") / "g.fa"
    seqs = fuzz.genome_text(random.Random(0))
    path.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    with Genome(path) as g:
        yield g


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                max_size=6)  # fmt: skip
_pos = st.one_of(
    st.integers(-3, 1100).map(str),
    st.sampled_from(fuzz.HUGE + fuzz.UNICODE_DIGITS),
    st.integers(0, 10**25).map(str),
    _text,
)
_allele = st.one_of(
    st.text("ACGTacgtN", min_size=1, max_size=4),
    st.sampled_from(fuzz.ALLELES),
    _text,
)
_alts = st.lists(_allele, min_size=1, max_size=4).map(",".join)
_chrom = st.sampled_from(["chr1", "chr1", "chr2", "chrZ", "", "#c", "chr1 "])


def _line_fields(fmt):
    if fmt == "vcf":
        cols = [_chrom, _pos, st.sampled_from([".", "rs1", "A", ""]), _allele, _alts]
        extra = st.lists(st.sampled_from([".", "PASS", "DP=3", ""]), max_size=4)
    else:
        cols = [_chrom, _pos, _allele, _allele]
        extra = st.lists(st.sampled_from(["id1", ".", "x y"]), max_size=2)
    return st.tuples(*cols, extra).map(lambda t: [*t[:-1], *t[-1]])


def _line(fmt):
    tabbed = _line_fields(fmt).map(lambda f: "\t".join(f).encode())
    return st.one_of(
        tabbed, tabbed, tabbed, tabbed,
        _line_fields(fmt).map(lambda f: " ".join(f).encode()),
        st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")),
        st.sampled_from([b"", b"  ", b"#x", b"\t\t\t\t"]),
    )


def _headers(fmt):
    if fmt == "tsv":
        return st.sampled_from([[], [b"# comment"]])
    contig = st.sampled_from([b"997", b"99999999999999999999", "\u00b2".encode(), b"", b"-4"])
    return st.one_of(
        st.sampled_from([[], fuzz.VCF_HEADER, fuzz.VCF_HEADER[1:]]),
        contig.map(lambda n: [fuzz.VCF_HEADER[0], b"##contig=<ID=chr1,length=" + n + b">",
                              fuzz.VCF_HEADER[1]]),  # fmt: skip
    )


def _check(tmp_path, genome, header, lines, bom, crlf, gz):
    nl = b"\r\n" if crlf else b"\n"
    all_lines = [*header, *lines]
    if bom and all_lines:
        all_lines[0] = fuzz.BOM + all_lines[0]
    plain = nl.join(all_lines) + nl if all_lines else b""
    path = tmp_path / "f.in"
    path.write_bytes(gzip.compress(plain) if gz else plain)
    rows = []
    try:
        reader = read_variants(path, genome, build_check=None)
        rows = list(reader)
        for name, dtype, get in _VARIANT_COLUMNS:
            _column_array(name, dtype, [get(v) for v in rows])
    except (VcfError, GenomeError) as e:
        assert "\n" not in str(e) and str(e)
        return None
    want = fuzz.expect(all_lines, reader.format)
    assert all(w != "error" for w, _ in want), (want, all_lines)
    got = [sum(v.line == k + 1 for v in rows) for k in range(len(all_lines))]
    assert got == [n for _, n in want]
    for v in rows:
        assert isinstance(v.status, Status)
        if v.status is Status.OK:
            assert fuzz.ok_row_is_valid(v), v
    return reader.format


@pytest.mark.parametrize("fmt", ["vcf", "tsv"])
@budget(1000)
@given(data=st.data())
def test_fuzzed_files(tmp_path, genome, fmt, data):
    header = data.draw(_headers(fmt))
    lines = data.draw(st.lists(_line(fmt), max_size=6))
    bom, crlf, gz = data.draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    got = _check(tmp_path, genome, header, lines, bom, crlf, gz)
    if got is not None and header and header[-1].startswith(b"#CHROM"):
        assert got == "vcf"


@budget(1000)
@given(seed=st.integers(0, 2**32 - 1), fmt=st.sampled_from(["vcf", "tsv"]))
def test_mutated_records(tmp_path, genome, seed, fmt):
    """The fuzz script's own mutations (Unicode digits, huge numbers, empty and missing
    columns, symbolic alleles, random bytes, truncation), a few records per file."""
    import random

    rng = random.Random(seed)
    seqs = fuzz.genome_text(random.Random(0))
    lines = [fuzz.mutate(rng, fuzz.valid_line(rng, seqs, fmt)) for _ in range(3)]
    header = fuzz.VCF_HEADER if fmt == "vcf" and rng.random() < 0.5 else []
    _check(tmp_path, genome, header, lines, rng.random() < 0.2, rng.random() < 0.3, False)
