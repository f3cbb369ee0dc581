import gzip

import pytest
from conftest import VCF_HEADER, baskerville_file, write_vcf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veff.io.genome import Genome, GenomeError
from veff.io.vcf import BuildCheck, BuildMismatchError, VcfError, normalize, read_variants
from veff.types import Status


def other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base.upper()]


@pytest.fixture(scope="module")
def genome(tiny_fasta):
    return Genome(tiny_fasta)


def g(seqs, pos1, n=1, chrom="chr1"):
    """Upper-case genome bases at 1-based pos1."""
    return seqs[chrom][pos1 - 1 : pos1 - 1 + n].upper()


def read_rows(tmp_path, genome, rows, **kw):
    return list(read_variants(write_vcf(tmp_path / "in.vcf", rows), genome, **kw))


# --------------------------------------------------------------- statuses
def status_cases(s):
    """(chrom, pos1, ref, alt, expected status) covering every status and the precedence."""
    b50 = g(s, 50)
    return [
        ("chr1", 50, b50, other(b50), Status.OK),
        ("chr1", 50, other(b50), b50, Status.REF_MISMATCH),
        ("chr9", 50, "A", "C", Status.UNKNOWN_CONTIG),
        ("chr1", 50, b50, "<DEL>", Status.SYMBOLIC_ALLELE),
        ("chr1", 50, b50, "<*>", Status.SYMBOLIC_ALLELE),
        ("chr1", 50, b50, "*", Status.SYMBOLIC_ALLELE),
        ("chr1", 50, b50, f"{b50}[chr2:12[", Status.SYMBOLIC_ALLELE),
        ("chr1", 50, b50, f"]chr2:12]{b50}", Status.SYMBOLIC_ALLELE),
        ("chr1", 50, b50, f".{b50}", Status.SYMBOLIC_ALLELE),
        ("chr1", 50, b50, ".", Status.MISSING_ALT),
        ("chr1", 50, "N", "C", Status.NON_ACGT_ALLELE),
        ("chr1", 50, b50, "R", Status.NON_ACGT_ALLELE),
        ("chr1", 50, b50, b50 + "N", Status.NON_ACGT_ALLELE),
        ("chr1", 50, g(s, 50, 52), b50, Status.INDEL_TOO_LONG),  # 51 bp deletion
        ("chr1", 50, b50, b50 + "A" * 51, Status.INDEL_TOO_LONG),  # 51 bp insertion
        ("chr1", 50, g(s, 50, 51), b50, Status.OK),  # 50 bp deletion: at the limit
        ("chr1", 50, g(s, 50, 60), other(b50) + g(s, 51, 59)[:-1] + other(g(s, 109)),
         Status.OK),  # 60 bp substitution: not an indel  # fmt: skip
        ("chr1", 998, "A", "C", Status.OUT_OF_BOUNDS),  # chr1 is 997 bp
        ("chr1", 996, g(s, 996, 2) + "A", g(s, 996), Status.OUT_OF_BOUNDS),  # REF runs off
        ("chr1", 0, "A", "C", Status.OUT_OF_BOUNDS),
        ("chr1", 2**31 - 1, "A", "C", Status.OUT_OF_BOUNDS),  # the largest valid POS
        # POS in ASCII digits, 0..2^31-1, or the row is invalid_pos (and first in precedence)
        ("chr1", "2147483648", b50, other(b50), Status.INVALID_POS),
        ("chr1", "99999999999999999999", b50, other(b50), Status.INVALID_POS),
        ("chr1", "\u00b2", b50, other(b50), Status.INVALID_POS),  # superscript two
        ("chr1", "\u0665\u0660", b50, other(b50), Status.INVALID_POS),  # Arabic-Indic 50
        ("chr1", "-5", b50, other(b50), Status.INVALID_POS),
        ("chr1", "5e1", b50, other(b50), Status.INVALID_POS),
        ("chr1", "", b50, other(b50), Status.INVALID_POS),
        ("chr9", "x", "N", ".", Status.INVALID_POS),
        ("chr2", 211, g(s, 211, chrom="chr2"), other(g(s, 211, chrom="chr2")), Status.OK),
        # precedence: the earlier status in docs/variants.md wins
        ("chr9", 50, "A", ".", Status.MISSING_ALT),
        ("chr9", 50, "N", "<DEL>", Status.SYMBOLIC_ALLELE),
        ("chr9", 50, "N", "C", Status.NON_ACGT_ALLELE),
        ("chr9", 50, "A" * 60, "A", Status.INDEL_TOO_LONG),
        ("chr9", 5000, "A", "C", Status.UNKNOWN_CONTIG),
        ("chr1", 998, other(b50), b50, Status.OUT_OF_BOUNDS),
        # genome IUPAC R (A/G) at 401: A and G match, C does not; an N gap never matches
        ("chr1", 401, "A", "C", Status.OK),
        ("chr1", 401, "G", "C", Status.OK),
        ("chr1", 401, "C", "A", Status.REF_MISMATCH),
        ("chr1", 305, "A", "C", Status.REF_MISMATCH),
        # soft-masked genome and lower-case input alleles
        ("chr1", 120, g(s, 120).lower(), other(g(s, 120)).lower(), Status.OK),
    ]


def test_every_status(tmp_path, genome, tiny_seqs):
    cases = status_cases(tiny_seqs)
    rows = read_rows(tmp_path, genome, [(c, p, f"v{i}", r, a) for i, (c, p, r, a, _) in
                                         enumerate(cases)])  # fmt: skip
    assert len(rows) == len(cases)
    for i, ((chrom, pos1, ref, alt, want), v) in enumerate(zip(cases, rows)):
        assert v.status == want, (i, chrom, pos1, ref, alt, v)
        orig_pos1 = pos1 if isinstance(pos1, int) else None
        assert (v.chrom, v.orig_pos1, v.orig_ref, v.orig_alt) == (chrom, orig_pos1, ref, alt)
        assert v.pos1 == (0 if want == Status.INVALID_POS else v.pos1)
        assert v.record == i and v.line == i + 3 and v.id == f"v{i}"
    assert {v.status for v in rows} == set(Status)
    ok_lower = rows[-1]
    assert (ok_lower.ref, ok_lower.alt) == (g(tiny_seqs, 120), other(g(tiny_seqs, 120)))
    assert rows[-1].fasta_chrom == "chr1" and rows[2].fasta_chrom is None


def test_multiallelic_split(tmp_path, genome, tiny_seqs):
    b = g(tiny_seqs, 60)
    alts = [x for x in "ACGT" if x != b]
    rows = read_rows(tmp_path, genome, [("chr1", 60, "rs1", b, ",".join(alts) + ",*,<NON_REF>"),
                                        ("chr1", 70, "rs2", g(tiny_seqs, 70), ".")])  # fmt: skip
    assert [v.alt for v in rows] == alts + ["*", "<NON_REF>", "."]
    assert [v.status for v in rows] == [Status.OK] * 3 + [Status.SYMBOLIC_ALLELE] * 2 + [
        Status.MISSING_ALT
    ]
    assert [v.record for v in rows] == [0] * 5 + [1]
    assert [v.line for v in rows] == [3] * 5 + [4]


# --------------------------------------------------------------- normalisation
def test_normalisation_cases(tmp_path, genome, tiny_seqs):
    s = tiny_seqs
    # chr1[499:513] = G CACACACACACA T (1-based 500..513); chr1[599:609] = C AAAAAAAA G
    cases = [
        # anchored deletion outside a repeat stays as is
        (("chr1", 41, g(s, 41, 3), g(s, 41)), (41, g(s, 41, 3), g(s, 41))),
        # the same deletion written one base to the right (TCA|T vs CAT|C) moves left
        (("chr1", 40, g(s, 40, 4), g(s, 40)), (39, g(s, 39, 4), g(s, 39))),
        # CA deleted at the right end of the repeat -> left-aligned onto the G anchor
        (("chr1", 510, "ACA", "A"), (500, "GCA", "G")),
        (("chr1", 509, "CAC", "C"), (500, "GCA", "G")),
        # CA inserted in the repeat -> left-aligned
        (("chr1", 512, "A", "ACA"), (500, "G", "GCA")),
        # A deleted / inserted in the homopolymer
        (("chr1", 606, "AA", "A"), (600, "CA", "C")),
        (("chr1", 608, "A", "AA"), (600, "C", "CA")),
        # right-anchored (anchor base after) deletion
        (("chr1", 608, "AG", "G"), (600, "CA", "C")),
        # MNV with shared suffix and prefix -> SNV
        (("chr1", 40, g(s, 40, 3), g(s, 40) + other(g(s, 41)) + g(s, 42)),
         (41, g(s, 41), other(g(s, 41)))),  # fmt: skip
        # over-long alleles with shared prefix on an indel keep one anchor base
        (("chr1", 40, g(s, 40, 5), g(s, 40, 2)), (41, g(s, 41, 4), g(s, 41))),
        # REF == ALT is left untouched (scored; effect 0)
        (("chr1", 40, g(s, 40), g(s, 40)), (40, g(s, 40), g(s, 40))),
    ]
    rows = read_rows(tmp_path, genome, [(c, p, ".", r, a) for (c, p, r, a), _ in cases])
    for ((chrom, pos1, ref, alt), want), v in zip(cases, rows):
        assert v.status == Status.OK, v
        assert (v.pos1, v.ref, v.alt) == want, (pos1, ref, alt, v)
        assert (v.orig_pos1, v.orig_ref, v.orig_alt) == (pos1, ref, alt)


def test_left_align_stops_at_contig_start(tmp_path):
    # "AAAA" then C: deleting any A is the same haplotype; the left-most has no anchor left of
    # it, so it stays right-anchored at position 1
    fa = tmp_path / "start.fa"
    fa.write_text(">c\nAAAACGTTGCA\n")
    rows = read_rows(tmp_path, Genome(fa), [("c", 3, ".", "AA", "A")])
    assert (rows[0].pos1, rows[0].ref, rows[0].alt, rows[0].status) == (1, "AA", "A", Status.OK)


def test_left_align_stops_at_unknown_base(tmp_path):
    fa = tmp_path / "n.fa"
    fa.write_text(">c\nGGNAAAACGT\n")
    rows = read_rows(tmp_path, Genome(fa), [("c", 6, ".", "AA", "A")])
    assert (rows[0].pos1, rows[0].ref, rows[0].alt) == (4, "AA", "A")


def _apply(genome_seq: str, pos1: int, ref: str, alt: str) -> str:
    assert genome_seq[pos1 - 1 : pos1 - 1 + len(ref)] == ref
    return genome_seq[: pos1 - 1] + alt + genome_seq[pos1 - 1 + len(ref) :]


@settings(max_examples=50, deadline=None)
@given(
    seq=st.text(alphabet="AC", min_size=12, max_size=40),
    data=st.data(),
)
def test_normalize_is_leftmost_and_keeps_the_haplotype(seq, data):
    k = data.draw(st.integers(1, 4), label="indel length")
    insertion = data.draw(st.booleans(), label="insertion")
    i = data.draw(st.integers(1, len(seq) - (0 if insertion else k)), label="0-based site")
    if insertion:
        ins = data.draw(st.text(alphabet="ACG", min_size=k, max_size=k), label="inserted")
        pos1, ref, alt = i, seq[i - 1], seq[i - 1] + ins
    else:
        pos1, ref, alt = i, seq[i - 1 : i + k], seq[i - 1]
    hap = _apply(seq, pos1, ref, alt)

    def left(p1, n):
        return seq[max(p1 - 1 - n, 0) : p1 - 1]

    npos, nref, nalt = normalize(pos1, ref, alt, left)
    assert _apply(seq, npos, nref, nalt) == hap
    assert len(nref) - len(nalt) == len(ref) - len(alt)
    assert min(len(nref), len(nalt)) == 1  # minimal with one anchor base
    # brute force: the smallest anchored (0-based anchor >= 0) site giving the same haplotype
    sites = []
    for j in range(1, len(seq) + 1):
        if insertion and hap[:j] == seq[:j] and hap[j + k :] == seq[j:]:
            sites.append(j)
        if not insertion and j + k <= len(seq) and seq[:j] + seq[j + k :] == hap:
            sites.append(j)
    assert npos == min(sites)
    assert nref[0] == nalt[0]  # left anchored


# --------------------------------------------------------------- ref mismatch modes
def test_flip_mode(tmp_path, genome, tiny_seqs):
    b = g(tiny_seqs, 80)
    rows = [("chr1", 80, "x", other(b), b), ("chr1", 80, "y", other(b), other(other(b)))]
    got = read_rows(tmp_path, genome, rows, ref_mismatch="flip")
    assert (got[0].status, got[0].ref, got[0].alt, got[0].flipped) == (Status.OK, b, other(b), True)
    assert (got[0].orig_ref, got[0].orig_alt) == (other(b), b)
    assert (got[1].status, got[1].flipped) == (Status.REF_MISMATCH, False)
    skipped = read_rows(tmp_path, genome, rows, ref_mismatch="skip")
    assert [v.status for v in skipped] == [Status.REF_MISMATCH] * 2


def test_error_mode_names_file_and_line(tmp_path, genome, tiny_seqs):
    b = g(tiny_seqs, 80)
    rows = [("chr1", 80, ".", b, other(b)), ("chr1", 80, ".", other(b), b)]
    with pytest.raises(VcfError, match=r"in\.vcf:4: REF .* does not match the genome"):
        read_rows(tmp_path, genome, rows, ref_mismatch="error")


def _snvs(seqs, num_ok, num_bad):
    rows = []
    for i in range(num_ok + num_bad):
        pos1 = 620 + i
        b = g(seqs, pos1)
        rows.append(("chr1", pos1, ".", b if i < num_ok else other(b), other(other(b))))
    return rows


@pytest.mark.parametrize(
    "num_ok,num_bad,mode,raises",
    [
        (23, 2, "skip", True),  # 8 % >= 5 %
        (24, 1, "skip", False),  # 4 %
        (0, 19, "skip", False),  # fewer than 20 checked: no verdict
        (0, 20, "skip", True),
        (20, 5, "flip", True),  # ALT is not the genome base either: not flippable
    ],
)
def test_build_check(tmp_path, genome, tiny_seqs, num_ok, num_bad, mode, raises):
    rows = _snvs(tiny_seqs, num_ok, num_bad)
    if raises:
        with pytest.raises(BuildMismatchError, match=rf"{num_bad} of {num_ok + num_bad} checked"):
            read_rows(tmp_path, genome, rows, ref_mismatch=mode)
    else:
        assert len(read_rows(tmp_path, genome, rows, ref_mismatch=mode)) == num_ok + num_bad


def test_build_check_flipped_rows_are_not_mismatches(tmp_path, genome, tiny_seqs):
    rows = [("chr1", p, ".", other(g(tiny_seqs, p)), g(tiny_seqs, p)) for p in range(620, 660)]
    got = read_rows(tmp_path, genome, rows, ref_mismatch="flip")
    assert all(v.flipped and v.status == Status.OK for v in got)
    with pytest.raises(BuildMismatchError):
        read_rows(tmp_path, genome, rows, ref_mismatch="skip")
    assert len(read_rows(tmp_path, genome, rows, build_check=None)) == 40


def test_build_check_stops_early(tmp_path, genome, tiny_seqs):
    rows = _snvs(tiny_seqs, 0, 30) + _snvs(tiny_seqs, 60, 0)
    reader = read_variants(write_vcf(tmp_path / "in.vcf", rows), genome,
                           build_check=BuildCheck(first_check_at=30))  # fmt: skip
    seen = []
    with pytest.raises(BuildMismatchError, match="among the first SNVs"):
        for v in reader:
            seen.append(v)
    assert len(seen) == 29  # stopped at the 30th checked SNV, not at the end of the file


# --------------------------------------------------------------- contigs
def test_contig_aliases_from_records_and_header(tmp_path, genome, tiny_seqs):
    b = g(tiny_seqs, 50)
    rows = read_rows(tmp_path, genome, [("1", 50, ".", b, other(b)), ("2", 3, ".", "A", ".")])
    assert [(v.chrom, v.fasta_chrom, v.status) for v in rows] == [
        ("1", "chr1", Status.OK), ("2", "chr2", Status.MISSING_ALT)]  # fmt: skip
    with pytest.raises(GenomeError, match="'1' and 'chr1' both map"):
        read_rows(tmp_path, genome, [("1", 50, ".", b, other(b)), ("chr1", 50, ".", b, "T")])
    header = "##fileformat=VCFv4.2\n##contig=<ID=1,length=997>\n##contig=<ID=chr1,length=997>\n"
    with pytest.raises(GenomeError, match="both map"):
        read_variants(write_vcf(tmp_path / "h.vcf", [], header + VCF_HEADER.split("\n", 1)[1]),
                      genome)  # fmt: skip


# --------------------------------------------------------------- formats
def test_bgzipped_vcf_and_bcf_give_the_same_rows(tmp_path, genome, tiny_seqs):
    import cyvcf2

    cases = status_cases(tiny_seqs)
    rows = [(c, p, f"v{i}", r, a) for i, (c, p, r, a, _) in enumerate(cases)]
    # htslib rejects POS 0 and cannot hold an unreadable POS
    rows = [r for r in rows if isinstance(r[1], int) and (r[0] != "chr1" or r[1] > 0)]
    vcf = write_vcf(tmp_path / "a.vcf", rows,
                    VCF_HEADER.replace("#CHROM", "##contig=<ID=chr1,length=997>\n"
                                       "##contig=<ID=chr2,length=211>\n"
                                       "##contig=<ID=chr9,length=5000>\n#CHROM"))  # fmt: skip
    gz = tmp_path / "a.vcf.gz"
    gz.write_bytes(gzip.compress(vcf.read_bytes()))
    bcf = tmp_path / "a.bcf"
    w = cyvcf2.Writer.from_string(str(bcf), cyvcf2.VCF(str(vcf)).raw_header, mode="wb")
    for rec in cyvcf2.VCF(str(vcf)):
        w.write_record(rec)
    w.close()
    want = list(read_variants(vcf, genome))

    def key(v):
        return (v.chrom, v.pos1, v.ref, v.alt, v.id, v.status, v.record)

    for path, fmt in [(gz, "vcf"), (bcf, "bcf")]:
        reader = read_variants(path, genome)
        got = list(reader)
        assert reader.format == fmt
        assert [key(v) for v in got] == [key(v) for v in want]
    assert all(v.line is None for v in read_variants(bcf, genome))


def test_tsv(tmp_path, genome, tiny_seqs):
    s = tiny_seqs
    b40 = g(s, 40)
    path = tmp_path / "variants.tsv"
    path.write_text(
        f"chr1\t50\t{g(s, 50)}\t{other(g(s, 50))}\tsnv1\n"
        f"# a comment\n\n"
        f"chr1 41  {g(s, 41, 2)}  -  del2\n"  # whitespace separated, '-' = empty allele
        f"chr1\t41\t-\t{other(b40) * 2}\tins\n"
        f"chr1\t1\t{g(s, 1)}\t-\tdel_at_1\n"
        f"chr1\t1\t-\tT\tins_at_1\n"
        f"chr1\t50\t{other(g(s, 50))}\t{g(s, 50)}\n"
        f"chr1\t50\t-\t-\tnothing\n"
        f"chr1\t999\t-\tA\toff_end\n"
        f"chr1\t402\t{g(s, 402)}\t-\tanchor_R\n"  # genome R at 401: anchored on A
        f"chr1\t306\t-\tT\tanchor_N\n"  # genome N at 305: no anchor base
    )
    rows = list(read_variants(path, genome))
    assert [(v.pos1, v.ref, v.alt, v.status.value, v.id, v.line) for v in rows] == [
        (50, g(s, 50), other(g(s, 50)), "ok", "snv1", 1),
        (40, g(s, 40, 3), b40, "ok", "del2", 4),
        (40, b40, b40 + other(b40) * 2, "ok", "ins", 5),
        (1, g(s, 1, 2), g(s, 2), "ok", "del_at_1", 6),
        (1, g(s, 1), "T" + g(s, 1), "ok", "ins_at_1", 7),
        (50, other(g(s, 50)), g(s, 50), "ref_mismatch", ".", 8),
        (50, "-", "-", "missing_alt", "nothing", 9),
        (999, "-", "A", "out_of_bounds", "off_end", 10),
        (401, "A" + g(s, 402), "A", "ok", "anchor_R", 11),
        (306, "-", "T", "non_acgt_allele", "anchor_N", 12),
    ]
    assert (rows[1].orig_pos1, rows[1].orig_ref, rows[1].orig_alt) == (41, g(s, 41, 2), "-")


@pytest.mark.parametrize(
    "text,match",
    [
        ("chr1\t5\t.\tA\n", r"bad\.vcf:3: expected tab-separated CHROM POS ID REF ALT .* — "),
        ("chr1\t5\t.\tA\tC\t.\t.\t.\n#late header\n", r"bad\.vcf:4: header line after .* — "),
    ],
)
def test_malformed_vcf(tmp_path, genome, text, match):
    path = tmp_path / "bad.vcf"
    path.write_text(VCF_HEADER + text)
    with pytest.raises(VcfError, match=match):
        list(read_variants(path, genome))


# --------------------------------------------------------------- properties
_ALLELES = ["A", "C", "G", "T", "AC", "CAT", ".", "*", "<DEL>", "N", "acg", "G]chr2:5]"]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(
        st.tuples(
            st.sampled_from(["chr1", "chr2", "1", "chrZ"]),
            st.integers(0, 1100),
            st.sampled_from(["A", "C", "G", "T", "AC", "GTT", "N"]),
            st.lists(st.sampled_from(_ALLELES), min_size=1, max_size=4),
        ),
        max_size=12,
    )
)
def test_one_row_per_alt(tmp_path, genome, records):
    # "1" and "chr1" must not both appear (that is an error by design)
    if any(r[0] == "chr1" for r in records):
        records = [r for r in records if r[0] != "1"]
    rows = [(c, max(p, 1), ".", ref, ",".join(alts)) for c, p, ref, alts in records]
    path = write_vcf(tmp_path / "p.vcf", rows)
    got = list(read_variants(path, genome, build_check=None))
    want = [(i, alt) for i, (_, _, _, alts) in enumerate(records) for alt in alts]
    # a lone '.' ALT is "no ALT" (one missing_alt row); '.' inside a list is one row too
    assert [(v.record, v.orig_alt) for v in got] == want
    assert all(isinstance(v.status, Status) for v in got)


# --------------------------------------------------------------- real data
def test_baskerville_eqtl_vcf():
    vcf = baskerville_file("snp_eqtl.vcf")
    fasta = baskerville_file("hg38_1m.fa.gz")
    rows = list(read_variants(vcf, fasta))
    assert [v.status for v in rows] == [Status.OK] * 8
    assert rows[0].id == "chr1_14677_G_A_b38" and (rows[0].ref, rows[0].alt) == ("G", "A")


@pytest.mark.parametrize("mode", ["skip", "flip", "error"])
def test_baskerville_flipped_vcf(mode):
    fasta = Genome(baskerville_file("hg38_1m.fa.gz"))
    plain = list(read_variants(baskerville_file("snp_eqtl.vcf"), fasta))
    path = baskerville_file("snp_eqtl_flip.vcf")
    if mode == "error":
        with pytest.raises(VcfError, match=r"snp_eqtl_flip\.vcf:2: REF A at chr1:14677"):
            list(read_variants(path, fasta, ref_mismatch=mode))
        return
    reader = read_variants(path, fasta, ref_mismatch=mode)
    rows = list(reader)
    if mode == "skip":  # 8 mismatches are too few (< 20) for the build check to judge
        assert [v.status for v in rows] == [Status.REF_MISMATCH] * 8
        assert reader.stats.num_snv_mismatch == 8
    else:
        assert [v.status for v in rows] == [Status.OK] * 8 and all(v.flipped for v in rows)
        assert [(v.pos1, v.ref, v.alt) for v in rows] == [(v.pos1, v.ref, v.alt) for v in plain]
        assert reader.stats.num_flipped == 8


def test_tsv_detected_by_content(tmp_path, genome):
    path = tmp_path / "list.txt"
    path.write_text("chr2\t5\tA\tC\n")
    reader = read_variants(path, genome)
    assert reader.format == "tsv"
    assert [(v.chrom, v.pos1, v.ref, v.alt) for v in reader] == [("chr2", 5, "A", "C")]
