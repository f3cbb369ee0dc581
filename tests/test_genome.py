import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import baskerville_file, write_fasta
from hypothesis import given, settings
from hypothesis import strategies as st

from veff.io.genome import Genome, GenomeError, contig_key
from veff.types import decode, encode


def expected_tokens(seqs, chrom, start0, end0):
    """Reference answer built from the python string: N outside the contig."""
    seq = seqs[chrom]
    out = "".join(seq[i] if 0 <= i < len(seq) else "N" for i in range(start0, end0))
    return encode(out)


def test_contigs_in_file_order(any_fasta, tiny_seqs):
    g = Genome(any_fasta)
    assert g.contigs == {"chr1": 997, "chr2": 211}
    assert list(g.contigs) == ["chr1", "chr2"]


@pytest.mark.parametrize(
    "chrom,start0,end0",
    [
        ("chr1", 0, 997),  # whole contig, crossing every line break
        ("chr1", 59, 61),  # across one line break
        ("chr1", -5, 3),  # negative start: N-padded, not wrapped around
        ("chr1", -20, -10),  # entirely left of the contig
        ("chr1", 990, 1010),  # past the end: N-padded, not truncated
        ("chr1", 1000, 1003),  # entirely right of the contig
        ("chr1", -3, 1001),  # both sides
        ("chr1", 95, 145),  # soft-masked run -> upper-case tokens
        ("chr1", 295, 325),  # N run
        ("chr1", 398, 403),  # IUPAC R -> N
        ("chr2", 0, 211),
        ("chr2", 49, 51),
        ("chr2", 210, 215),
        ("chr1", 7, 7),  # empty
    ],
)
def test_fetch_table(any_fasta, tiny_seqs, chrom, start0, end0):
    got = Genome(any_fasta).fetch(chrom, start0, end0)
    assert got.dtype == np.uint8 and got.shape == (end0 - start0,)
    np.testing.assert_array_equal(got, expected_tokens(tiny_seqs, chrom, start0, end0))


def test_fetch_specific_tokens(tiny_fasta, tiny_seqs):
    g = Genome(tiny_fasta)
    assert decode(g.fetch("chr1", 398, 403)) == tiny_seqs["chr1"][398:403].replace("R", "N")
    assert decode(g.fetch("chr1", 100, 140)) == tiny_seqs["chr1"][100:140].upper()
    assert decode(g.fetch("chr1", -2, 2)) == "NN" + tiny_seqs["chr1"][:2]
    assert decode(g.fetch("chr1", 995, 999)) == tiny_seqs["chr1"][995:] + "NN"
    assert decode(g.fetch("chr1", 499, 513)) == "GCACACACACACAT"


def test_bases_keep_iupac_and_upper_case(any_fasta, tiny_seqs):
    g = Genome(any_fasta)
    assert g.bases("chr1", 398, 403) == tiny_seqs["chr1"][398:403].upper()
    assert "R" in g.bases("chr1", 398, 403)
    assert g.bases("chr1", 100, 140) == tiny_seqs["chr1"][100:140].upper()
    with pytest.raises(GenomeError, match="outside contig chr1"):
        g.bases("chr1", 990, 998)
    with pytest.raises(GenomeError, match="outside contig"):
        g.bases("chr1", -1, 3)


@settings(max_examples=50, deadline=None)
@given(
    chrom=st.sampled_from(["chr1", "chr2"]),
    start0=st.integers(-300, 1100),
    size=st.integers(0, 700),
)
def test_fetch_matches_reference_plain_and_bgzf(tiny_fasta, tiny_fasta_bgz, tiny_seqs, chrom,
                                                start0, size):  # fmt: skip
    want = expected_tokens(tiny_seqs, chrom, start0, start0 + size)
    np.testing.assert_array_equal(_plain(tiny_fasta).fetch(chrom, start0, start0 + size), want)
    np.testing.assert_array_equal(_bgzf(tiny_fasta_bgz).fetch(chrom, start0, start0 + size), want)


_CACHE = {}


def _plain(path):
    return _CACHE.setdefault(("p", path), Genome(path))


def _bgzf(path):
    return _CACHE.setdefault(("b", path), Genome(path))


def test_fetch_unknown_contig_raises(tiny_fasta):
    with pytest.raises(GenomeError, match="'chr9' is not in"):
        Genome(tiny_fasta).fetch("chr9", 0, 5)


# ------------------------------------------------------------------ aliases
@pytest.mark.parametrize(
    "name,key",
    [("chr1", "1"), ("1", "1"), ("CHR1", "1"), ("chrX", "X"), ("x", "X"), ("chrM", "MT"),
     ("M", "MT"), ("MT", "MT"), ("chrMT", "MT"), ("chrUn_KI270302v1", "UN_KI270302V1")],
)  # fmt: skip
def test_contig_key(name, key):
    assert contig_key(name) == key


@pytest.fixture
def alias_fasta(tmp_path):
    seqs = {"chr1": "ACGTACGTAC", "chrX": "GGGG", "chrM": "TTTAAA", "2": "CCCCC"}
    return write_fasta(tmp_path / "alias.fa", seqs)


@pytest.mark.parametrize(
    "query,fasta",
    [("chr1", "chr1"), ("1", "chr1"), ("X", "chrX"), ("chrX", "chrX"), ("MT", "chrM"),
     ("M", "chrM"), ("chrMT", "chrM"), ("chr2", "2"), ("2", "2"), ("3", None), ("chrY", None)],
)  # fmt: skip
def test_resolve(alias_fasta, query, fasta):
    g = Genome(alias_fasta)
    assert g.resolve(query) == fasta
    if fasta is not None:  # fetch accepts an alias too
        assert decode(g.fetch(query, 0, 3)) == decode(g.fetch(fasta, 0, 3))


def test_ambiguous_alias_with_different_lengths(tmp_path):
    g = Genome(write_fasta(tmp_path / "amb.fa", {"1": "ACGTACGTAC", "chr1": "ACGTACGTACGT"}))
    for name in ["1", "chr1", "CHR1"]:
        with pytest.raises(GenomeError, match=r"ambiguous.*'1' \(10 bp\).*'chr1' \(12 bp\)"):
            g.resolve(name)
    # a declared (VCF ##contig) length picks the one that fits
    assert g.resolve("1", declared_length=12) == "chr1"
    assert g.resolve("chr1", declared_length=10) == "1"
    assert g.alias_map({"chr1": 12}).resolve("chr1") == "chr1"
    with pytest.raises(GenomeError, match="ambiguous"):
        g.alias_map({"chr1": 99})


def test_same_length_aliases(tmp_path):
    g = Genome(write_fasta(tmp_path / "dup.fa", {"chrM": "ACGTAC", "MT": "ACGTAC"}))
    assert g.resolve("chrM") == "chrM" and g.resolve("MT") == "MT"  # exact names win
    with pytest.raises(GenomeError, match="ambiguous"):
        g.resolve("M")  # neither spelling is exact


def test_two_input_names_for_one_contig(alias_fasta):
    g = Genome(alias_fasta)
    with pytest.raises(GenomeError, match="'1' and 'chr1' both map to FASTA contig 'chr1'"):
        g.alias_map(["1", "chr1"])
    aliases = g.alias_map(["1", "X"])
    assert aliases.mapping == {"1": "chr1", "X": "chrX"}
    assert aliases.renamed() == {"1": "chr1", "X": "chrX"}
    with pytest.raises(GenomeError, match="both map"):
        aliases.resolve("chr1")  # seen later in the records
    assert g.alias_map(["chr1"]).renamed() == {}  # a fresh map per input file


# ------------------------------------------------------------------ errors
def test_missing_fasta(tmp_path):
    with pytest.raises(GenomeError, match=r"FASTA not found: .*nope\.fa"):
        Genome(tmp_path / "nope.fa")


def test_plain_gzip_is_rejected(tmp_path, tiny_fasta):
    path = tmp_path / "plain.fa.gz"
    path.write_bytes(gzip.compress(tiny_fasta.read_bytes()))
    with pytest.raises(GenomeError, match="gzip-compressed but not BGZF.*bgzip"):
        Genome(path)


def test_bgzf_without_gzi(tmp_path, tiny_fasta_bgz):
    path = tmp_path / "copy.fa.gz"
    shutil.copy(tiny_fasta_bgz, path)
    shutil.copy(f"{tiny_fasta_bgz}.fai", f"{path}.fai")
    with pytest.raises(
        GenomeError, match=r"needs its \.fai and \.gzi.*missing: .*copy\.fa\.gz\.gzi"
    ):
        Genome(path)


def test_plain_fasta_index_is_built_and_refreshed(tmp_path, tiny_seqs):
    path = write_fasta(tmp_path / "g.fa", tiny_seqs)
    assert not Path(f"{path}.fai").exists()
    assert Genome(path).contigs["chr2"] == 211
    assert Path(f"{path}.fai").is_file()
    # rewrite the FASTA with other contents: a stale .fai must not be trusted
    import os
    import time

    write_fasta(path, {"only": "ACGTN" * 30}, {"only": 7})
    later = time.time() + 5
    os.utime(path, (later, later))
    g = Genome(path)
    assert g.contigs == {"only": 150}
    assert decode(g.fetch("only", 0, 10)) == "ACGTNACGTN"


def test_ragged_fasta_is_a_genome_error(tmp_path):
    path = tmp_path / "ragged.fa"
    path.write_text(">a\nACGTACGT\nACG\nACGTACGT\n")
    with pytest.raises(GenomeError, match="cannot index FASTA"):
        Genome(path)


def test_empty_fasta(tmp_path):
    path = tmp_path / "empty.fa"
    path.write_text("")
    with pytest.raises(GenomeError):
        Genome(path)


def test_index_mismatch_is_detected(tmp_path, tiny_seqs):
    path = write_fasta(tmp_path / "g.fa", tiny_seqs)
    Genome(path).close()
    Path(f"{path}.fai").write_text("chr1\t997\t999999\t60\t61\n")  # offset past the file
    import os

    os.utime(f"{path}.fai", (path.stat().st_mtime + 5,) * 2)
    with pytest.raises(GenomeError, match="index does not match"):
        Genome(path).fetch("chr1", 0, 10)


# ------------------------------------------------------------------ real data
def test_hg38_1m_bgzf():
    path = baskerville_file("hg38_1m.fa.gz")
    g = Genome(path)
    assert g.contigs == {"chr1": 1_000_000}
    assert g.resolve("1") == "chr1"
    assert decode(g.fetch("chr1", 0, 10_000)) == "N" * 10_000  # hg38 chr1 starts with a gap
    # REF bases of baskerville's eQTL SNPs (snp_eqtl.vcf)
    for pos1, ref in [(14677, "G"), (54490, "G"), (63697, "T"), (64764, "C"), (135203, "G")]:
        assert g.bases("chr1", pos1 - 1, pos1) == ref
    window = g.fetch("chr1", 999_000, 1_001_000)  # BGZF forces strict bounds in pyfaidx
    assert (window[1000:] == 4).all() and (window[:1000] < 4).any()
