"""Reading variant input robustly: standard input and pipes, format sniffing, BOM and CRLF,
truncated or corrupt files (one clean error), and malformed fields as statuses."""

import gzip

import pytest
from conftest import VCF_HEADER, make_tiny_seqs, write_bgzf

from veff.io.genome import Genome
from veff.io.vcf import VcfError, read_variants
from veff.types import Status


def other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base.upper()]


def g(seqs, pos1, n=1, chrom="chr1"):
    return seqs[chrom][pos1 - 1 : pos1 - 1 + n].upper()


@pytest.fixture(scope="module")
def genome(tiny_fasta):
    return Genome(tiny_fasta)


def _bcf_bytes(tmp_path, text: str) -> bytes:
    import cyvcf2

    vcf = tmp_path / "src.vcf"
    vcf.write_text(text)
    bcf = tmp_path / "src.bcf"
    w = cyvcf2.Writer.from_string(str(bcf), cyvcf2.VCF(str(vcf)).raw_header, mode="wb")
    for rec in cyvcf2.VCF(str(vcf)):
        w.write_record(rec)
    w.close()
    return bcf.read_bytes()


def test_unreadable_inputs(tmp_path, genome):
    with pytest.raises(VcfError, match=r"variant file not found: .*missing\.vcf — check the path"):
        read_variants(tmp_path / "missing.vcf", genome)
    with pytest.raises(VcfError, match=r"is a directory — "):
        read_variants(tmp_path, genome)
    binary = tmp_path / "junk.vcf"
    binary.write_bytes(b"##fileformat=VCFv4.2\n" + bytes(range(128, 256)) * 4)
    with pytest.raises(VcfError, match=r"junk\.vcf:2: not UTF-8 text .* — convert"):
        list(read_variants(binary, genome))
    records = "chr1\t5\t.\tA\tC\t.\t.\t.\n" * 2000
    truncated = tmp_path / "cut.vcf.gz"
    full = gzip.compress((VCF_HEADER + records).encode())
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(VcfError, match=r"cut\.vcf\.gz:\d+: cannot read: .* — the file is trunc"):
        list(read_variants(truncated, genome))
    # BGZF cut at a block boundary decompresses cleanly: the missing EOF block gives it away
    bgz = tmp_path / "cut.vcf.bgz"
    write_bgzf(bgz, (VCF_HEADER + records).encode(), block_size=4096)
    cut_at = bgz.read_bytes().index(b"\x1f\x8b\x08\x04", 100)
    bgz.write_bytes(bgz.read_bytes()[:cut_at])
    with pytest.raises(VcfError, match=r"cut\.vcf\.bgz: .* no end-of-file block, so it is trunc"):
        read_variants(bgz, genome)
    bcf = tmp_path / "bad.bcf"
    bcf.write_bytes(gzip.compress(b"BCF\x02\x02garbage"))
    with pytest.raises(VcfError, match=r"bad\.bcf"):
        list(read_variants(bcf, genome))


@pytest.mark.parametrize("cut", [0.5, 0.9, "eof"])
def test_truncated_bcf_is_one_clean_error(tmp_path, genome, cut):
    data = _bcf_bytes(tmp_path, VCF_HEADER.replace("#CHROM", "##contig=<ID=chr1,length=997>\n#CHROM")
                      + "".join(f"chr1\t{i}\t.\tA\tC\t.\t.\t.\n" for i in range(1, 998)))
    path = tmp_path / "cut.bcf"
    path.write_bytes(data[: len(data) - 28] if cut == "eof" else data[: int(len(data) * cut)])
    with pytest.raises(VcfError, match=r"cut\.bcf.* — "):
        list(read_variants(path, genome))


def test_bom_and_crlf(tmp_path, genome, tiny_seqs):
    b50 = g(tiny_seqs, 50)
    text = VCF_HEADER + f"chr1\t50\tv1\t{b50}\t{other(b50)}\t.\t.\t.\n"
    for name, data in [("bom.vcf", b"\xef\xbb\xbf" + text.encode()),
                       ("crlf.vcf", text.replace("\n", "\r\n").encode()),
                       ("both.txt", b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()),
                       ("both.vcf.gz", gzip.compress(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())),
                       ("tsv.txt", f"\ufeffchr1\t50\t{b50}\t{other(b50)}\tv1\r\n".encode())]:  # fmt: skip
        (tmp_path / name).write_bytes(data)
        reader = read_variants(tmp_path / name, genome)
        rows = list(reader)
        assert reader.format == ("tsv" if name == "tsv.txt" else "vcf"), name
        assert [(v.chrom, v.pos1, v.id, v.ref, v.alt, v.status) for v in rows] == [
            ("chr1", 50, "v1", b50, other(b50), Status.OK)], name  # fmt: skip


def test_format_is_sniffed_from_content(tmp_path, genome):
    cases = {
        "headerless.txt": ("chr2\t5\t.\tA\tC\t.\t.\t.\n", "vcf"),  # baskerville style
        "ids.txt": ("chr2\t5\trs7\tA\tC\n", "vcf"),
        "list.vcf": ("chr2\t5\tA\tC\trs7\n", "tsv"),  # the name does not decide
        "list2.vcf": ("chr2 5 A C\n", "tsv"),
        "meta.tsv": ("##fileformat=VCFv4.2\nchr2\t5\t.\tA\tC\n", "vcf"),
    }
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        reader = read_variants(tmp_path / name, genome)
        assert reader.format == want, name
        assert [(v.chrom, v.pos1, v.ref, v.alt) for v in reader] == [("chr2", 5, "A", "C")]
    gz = tmp_path / "headerless.gz"
    gz.write_bytes(gzip.compress(cases["headerless.txt"][0].encode()))
    assert read_variants(gz, genome).format == "vcf"


@pytest.mark.parametrize("how", ["dash", "dev_stdin", "fifo"])
def test_standard_input_and_pipes(tmp_path, tiny_fasta, how):
    """`-`, /dev/stdin and a named pipe are read (in a subprocess, which owns its stdin)."""
    import os
    import subprocess
    import sys

    vcf_gz = gzip.compress((VCF_HEADER + "chr2\t5\t.\tA\tC,,G\t.\t.\t.\n").encode())
    path = {"dash": "-", "dev_stdin": "/dev/stdin", "fifo": str(tmp_path / "fifo")}[how]
    code = (
        "import sys; from veff.io.vcf import read_variants\n"
        "r = read_variants(sys.argv[1], sys.argv[2]); rows = list(r)\n"
        "print(r.format, r.name, [(v.orig_alt, v.status.value) for v in rows])"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = [sys.executable, "-c", code, path, str(tiny_fasta)]
    if how == "fifo":
        os.mkfifo(path)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        with open(path, "wb") as fh:
            fh.write(vcf_gz)
        out = proc.communicate(timeout=60)[0]
    else:
        out = subprocess.run(args, input=vcf_gz, stdout=subprocess.PIPE, env=env, check=True,
                             timeout=60).stdout.decode()  # fmt: skip
    name = "<stdin>" if how == "dash" else path
    ok = "ok" if "C" != g(make_tiny_seqs(), 5, chrom="chr2") else "ref_mismatch"
    assert out.split(" ", 2)[:2] == ["vcf", name]
    assert "('', 'missing_alt')" in out and out.count("'C'") == 1 and ok in out


def test_empty_alleles_in_a_vcf_are_statuses(tmp_path, genome, tiny_seqs):
    b50 = g(tiny_seqs, 50)
    path = tmp_path / "e.vcf"
    path.write_text(VCF_HEADER + f"chr1\t50\t.\t{b50}\t{other(b50)},,{other(b50)}C\t.\t.\t.\n"
                    f"chr1\t50\t.\t\t{b50}\t.\t.\t.\n\t50\t.\t{b50}\tC\t.\t.\t.\n"
                    f"chr1\t50\t.\t{b50}\t,\t.\t.\t.\n")  # fmt: skip
    got = [(v.record, v.orig_alt, v.status.value) for v in read_variants(path, genome)]
    assert got == [
        (0, other(b50), "ok"), (0, "", "missing_alt"), (0, other(b50) + "C", "ok"),
        (1, b50, "non_acgt_allele"), (2, "C", "unknown_contig"),
        (3, "", "missing_alt"), (3, "", "missing_alt"),
    ]  # fmt: skip
