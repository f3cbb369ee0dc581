import re

import pytest
from conftest import baskerville_file, write_vcf

from veff.check import NUM_EXAMPLES, check_variants
from veff.io.genome import GenomeError
from veff.io.vcf import VcfError
from veff.types import Status


def base(seqs, pos1):
    return seqs["chr1"][pos1 - 1].upper()


def other(b):
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[b]


def test_counts_examples_and_table(tmp_path, tiny_fasta, tiny_seqs):
    rows = []
    for p in range(620, 640):  # 20 ok SNVs
        rows.append(("chr1", p, ".", base(tiny_seqs, p), other(base(tiny_seqs, p))))
    for p in range(640, 647):  # 7 mismatches: only the first 5 are kept as examples
        rows.append(("chr1", p, ".", other(base(tiny_seqs, p)), base(tiny_seqs, p)))
    rows += [
        ("chr9", 5, "rsX", "A", "C"),
        ("2", 50, ".", tiny_seqs["chr2"][49], "<DEL>,*," + other(tiny_seqs["chr2"][49])),
        ("chr1", 60, ".", "A", "."),
    ]
    vcf = write_vcf(tmp_path / "c.vcf", rows)
    report = check_variants(vcf, tiny_fasta)
    assert report.num_records == 30 and report.num_rows == 32
    assert report.counts == {
        "ok": 21, "ref_mismatch": 7, "unknown_contig": 1, "symbolic_allele": 2,
        "missing_alt": 1, "non_acgt_allele": 0, "indel_too_long": 0, "out_of_bounds": 0,
        "invalid_pos": 0,
    }  # fmt: skip
    assert set(report.counts) == {s.value for s in Status}
    mism = report.examples["ref_mismatch"]
    assert len(mism) == NUM_EXAMPLES
    assert [(e.pos1, e.line) for e in mism] == [(640 + i, 23 + i) for i in range(5)]
    assert report.examples["unknown_contig"][0].chrom == "chr9"
    assert report.renamed_contigs == {"2": "chr2"}
    # 7 of 28 checked SNVs mismatch (25 %): reported, not raised
    assert (report.num_snv_checked, report.num_snv_mismatch) == (28, 7)
    assert report.build_mismatch
    text = report.format()
    assert "ref_mismatch" in text and "FAILED" in text and "2 -> chr2" in text
    assert "line 23: chr1:640" in text
    assert re.search(r"^ok\s+21\s+65\.6\d%$", text, re.M)
    assert re.search(r"^ref_mismatch\s+7\s+21\.88%$", text, re.M)


def test_flip_mode_counts(tmp_path, tiny_fasta, tiny_seqs):
    rows = [("chr1", p, ".", other(base(tiny_seqs, p)), base(tiny_seqs, p)) for p in (70, 71)]
    report = check_variants(write_vcf(tmp_path / "f.vcf", rows), tiny_fasta, ref_mismatch="flip")
    assert report.num_flipped == 2 and report.counts["ok"] == 2
    assert not report.build_mismatch
    assert "too few SNVs to judge" in report.format()


def test_unusable_input_raises(tmp_path, tiny_fasta):
    with pytest.raises(GenomeError):
        check_variants(write_vcf(tmp_path / "a.vcf", []), tmp_path / "none.fa")
    bad = tmp_path / "bad.vcf"
    bad.write_text("##fileformat=VCFv4.2\nchr1\t5\t.\tA\n")
    with pytest.raises(VcfError, match=r"bad\.vcf:2: expected tab-separated .* — "):
        check_variants(bad, tiny_fasta)


def test_unreadable_pos_is_a_counted_status(tmp_path, tiny_fasta):
    path = tmp_path / "pos.vcf"
    path.write_text("##fileformat=VCFv4.2\nchr1\tx\t.\tA\tC\nchr1\t99999999999999999999\t.\tA\tC,G\n")
    report = check_variants(path, tiny_fasta)
    assert report.num_records == 2 and report.counts["invalid_pos"] == 3 == report.num_rows
    assert [e.line for e in report.examples["invalid_pos"]] == [2, 3, 3]
    assert "invalid_pos" in report.format() and "line 3: chr1:0 A>G" in report.format()


def test_baskerville_flip_file():
    report = check_variants(baskerville_file("snp_eqtl_flip.vcf"),
                            baskerville_file("hg38_1m.fa.gz"))  # fmt: skip
    assert report.counts["ref_mismatch"] == 8 and report.num_rows == 8
    flipped = check_variants(baskerville_file("snp_eqtl_flip.vcf"),
                             baskerville_file("hg38_1m.fa.gz"), ref_mismatch="flip")  # fmt: skip
    assert flipped.counts["ok"] == 8 and flipped.num_flipped == 8


def _cli(args, stdin=b""):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "veff.cli", *args], input=stdin, env=env,
                          capture_output=True, timeout=120)  # fmt: skip


def test_cli_reads_stdin_and_gives_one_line_errors(tmp_path, tiny_fasta, tiny_seqs):
    import gzip

    b = base(tiny_seqs, 50)
    text = f"\ufeffchr1\t50\t.\t{b}\t{other(b)},,<DEL>\r\nchr1\t\u00b2\t.\t{b}\tC\r\n"
    proc = _cli(["check", "-", "--genome", str(tiny_fasta)], gzip.compress(text.encode()))
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert out.startswith("variants: <stdin> (vcf)") and "records:  2   rows (one per ALT): 4" in out
    counts = {s: int(line.split()[1]) for line in out.splitlines() for s in ("ok", "missing_alt",
              "symbolic_allele", "invalid_pos") if line.startswith(s + " ")}  # fmt: skip
    assert counts == {"ok": 1, "missing_alt": 1, "symbolic_allele": 1, "invalid_pos": 1}

    cut = tmp_path / "cut.vcf.gz"
    full = gzip.compress(("##fileformat=VCFv4.2\n" + f"chr1\t50\t.\t{b}\tC\n" * 5000).encode())
    cut.write_bytes(full[: len(full) // 2])
    proc = _cli(["check", str(cut), "--genome", str(tiny_fasta)])
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1, err
    assert err[0].startswith(f"veff: error: {cut}:") and " — " in err[0]

    bad_bcf = tmp_path / "bad.bcf"  # htslib's own complaint goes into veff's one line
    bad_bcf.write_bytes(gzip.compress(b"BCF\x02\x02garbage"))
    proc = _cli(["check", str(bad_bcf), "--genome", str(tiny_fasta)])
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1, err
    assert err[0].startswith(f"veff: error: {bad_bcf}: cannot read BCF: ") and " — " in err[0]
