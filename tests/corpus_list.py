"""The corpus itself (see corpus_cases.py for the format). The genome is chr1 = ACGT × 500,
chr2 = GATTACA × 43, chrM = ACGT × 50, so the base at a position is known without a lookup."""

from __future__ import annotations

import struct
from pathlib import Path

from corpus_cases import HEADER, Case, check, gz, row, score, text, vcf


def b(pos: int) -> str:
    return "ACGT"[(pos - 1) % 4]


def alt(pos: int) -> str:
    return "ACGT"[pos % 4]


def snv(pos: int, chrom: str = "chr1", vid: str = ".") -> str:
    return row(chrom, pos, b(pos), alt(pos), vid)


OK3 = snv(200) + snv(301) + snv(402)
ONE = {"ok": 1}


def _cases() -> list[Case]:
    c: list[tuple[str, dict]] = []
    add = lambda i, **kw: c.append((i, kw))  # noqa: E731

    # ---------------------------------------------------------------- VCF content: statuses
    add("vcf-ok", **check(OK3, statuses={"ok": 3}, rows=3))
    add("alt-empty-item", **check(row(ref=b(200), alt="C,,G", pos=200), rows=3,
                                  statuses={"ok": 2, "missing_alt": 1}))
    add("alt-dot", **check(row(ref=b(200), alt=".", pos=200), rows=1, statuses={"missing_alt": 1}))
    add("alt-star", **check(row(ref=b(200), alt="*", pos=200), rows=1, statuses={"symbolic_allele": 1}))
    add("alt-symbolic-del", **check(row(ref=b(200), alt="<DEL>", pos=200), rows=1, statuses={"symbolic_allele": 1}))
    add("alt-breakend", **check(row(ref=b(200), alt="G]chr2:10]", pos=200), rows=1, statuses={"symbolic_allele": 1}))
    add("alt-iupac", **check(row(ref=b(200), alt="R", pos=200), rows=1, statuses={"non_acgt_allele": 1}))
    add("ref-iupac", **check(row(ref="N", alt="A", pos=200), rows=1))
    add("alt-lowercase", **check(row(ref=b(200).lower(), alt=alt(200).lower(), pos=200), rows=1, statuses=ONE))
    add("ref-mismatch", **check(row(ref=alt(200), alt=b(200), pos=200), rows=1, statuses={"ref_mismatch": 1}))
    add("ref-mismatch-error", **check(row(ref=alt(201), alt="T", pos=200), exit=None,
                                      err=r"(?i)ref", extra=["--ref-mismatch", "error"]))
    add("ref-mismatch-flip", **check(row(ref=alt(200), alt=b(200), pos=200), rows=1, statuses=ONE,
                                     extra=["--ref-mismatch", "flip"]))
    add("unknown-contig", **check(row("chrUn", 5, "A", "G"), rows=1, statuses={"unknown_contig": 1}))
    add("contig-alias-1", **check(row("1", 200, b(200), alt(200)), rows=1, statuses=ONE))
    add("contig-alias-MT", **check(row("MT", 20, b(20), alt(20)), rows=1, statuses=ONE))
    add("pos-past-end", **check(row("chr1", 2500, "A", "G"), rows=1, statuses={"out_of_bounds": 1}))
    add("pos-zero", **check(row("chr1", 0, "A", "G"), rows=1))
    add("pos-huge", **check(row("chr1", "99999999999999999999", "A", "G"), rows=1, statuses={"invalid_pos": 1}))
    add("pos-2^31", **check(row("chr1", 2**31, "A", "G"), rows=1, statuses={"invalid_pos": 1}))
    add("pos-negative", **check(row("chr1", -5, "A", "G"), rows=1, statuses={"invalid_pos": 1}))
    add("pos-superscript", **check(row("chr1", "2²", "A", "G"), rows=1, statuses={"invalid_pos": 1}))
    add("pos-circled", **check(row("chr1", "①", "A", "G"), rows=1, statuses={"invalid_pos": 1}))
    add("pos-arabic-indic", **check(row("chr1", "٢٠٠", "A", "G"), rows=1, statuses={"invalid_pos": 1}))
    add("pos-float", **check(row("chr1", "200.0", "A", "G"), rows=1, statuses={"invalid_pos": 1}))
    add("pos-empty", **check("chr1\t\t.\tA\tG\t.\t.\t.\n", rows=1, statuses={"invalid_pos": 1}))
    add("too-few-columns", **check("chr1\t200\t.\tA\n", exit=None, err=r"(?i)column"))
    add("spaces-not-tabs", **check("chr1 200 . A G . . .\n", exit=None))
    add("ref-eq-alt", **check(row(ref=b(200), alt=b(200), pos=200), rows=1))
    add("deletion", **check(row(ref=b(200) + b(201), alt=b(200), pos=200), rows=1, statuses=ONE))
    add("insertion", **check(row(ref=b(200), alt=b(200) + "GG", pos=200), rows=1, statuses=ONE))
    add("indel-too-long", **check(row(ref=b(200), alt=b(200) + "A" * 60, pos=200), rows=1,
                                  statuses={"indel_too_long": 1}))
    add("indel-limit-option", **check(row(ref=b(200), alt=b(200) + "A" * 5, pos=200), rows=1,
                                      statuses={"indel_too_long": 1}, extra=["--max-indel-len", "3"]))
    add("mnp", **check(row(ref=b(200) + b(201), alt=alt(200) + alt(201), pos=200), rows=1))
    add("multi-allelic", **check(row(ref=b(200), alt=",".join(x for x in "ACGT" if x != b(200)), pos=200), rows=3, statuses={"ok": 3}))
    add("multi-with-star", **check(row(ref=b(200), alt=f"{alt(200)},*", pos=200), rows=2,
                                   statuses={"ok": 1, "symbolic_allele": 1}))
    add("duplicate-records", **check(snv(200) + snv(200), rows=2, statuses={"ok": 2}))
    add("unsorted", **check(snv(402) + snv(200), rows=2, statuses={"ok": 2}))
    add("crlf", **check(OK3.replace("\n", "\r\n"), rows=3, statuses={"ok": 3},
                        header=HEADER.replace("\n", "\r\n")))
    add("bom", **check(OK3, rows=3, statuses={"ok": 3}, header="\ufeff" + HEADER))
    add("header-only", **check("", rows=0))
    add("no-chrom-line", **check(OK3, header="##fileformat=VCFv4.2\n", rows=3, statuses={"ok": 3}))
    add("headerless-as-txt", **check(OK3, name="v.txt", header="", rows=3, statuses={"ok": 3}))
    add("vcf-named-txt", **check(OK3, name="v.txt", rows=3, statuses={"ok": 3}))
    add("vcf-named-tsv", **check(OK3, name="v.tsv", rows=3, statuses={"ok": 3}))
    add("blank-lines", **check(snv(200) + "\n\n" + snv(301), rows=2))
    add("trailing-no-newline", **check(OK3.rstrip("\n"), rows=3, statuses={"ok": 3}))
    add("non-utf8", **check(None, exit=None, files={"in": text("v.vcf", HEADER.encode() + b"chr1\t200\t\xff\xfe\tA\tG\t.\t.\t.\n")}))
    add("binary-garbage", **check(None, exit=None, files={"in": text("v.vcf", bytes(range(256)) * 4)}))
    add("empty-file", **check(None, rows=0, files={"in": text("v.vcf", b"")}))
    add("gzip-vcf", **check(None, rows=3, statuses={"ok": 3}, files={"in": gz(vcf(OK3))}))
    add("truncated-gzip", **check(None, exit=None, files={"in": gz(vcf(OK3 * 50), truncate=120)}))
    add("gzip-garbage", **check(None, exit=None, files={"in": text("v.vcf.gz", b"\x1f\x8b\x08\x00" + b"junk" * 40)}))
    add("bcf-truncated", **check(None, exit=None, files={"in": text("v.bcf", b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + b"\x00" * 30)}))
    add("missing-file", **check(None, exit=None, err=r"(?i)not found|no such", arg="{dir}/nope.vcf"))
    add("directory-as-vcf", **check(None, exit=None, arg="{dir}"))
    add("stdin-dash", **check(None, rows=3, statuses={"ok": 3}, arg="-", stdin=(HEADER + OK3).encode()))
    add("stdin-tsv", **check(None, rows=1, statuses=ONE, arg="-", stdin=f"chr1\t200\t{b(200)}\t{alt(200)}\n".encode()))
    add("tsv-ok", **check(None, rows=2, statuses={"ok": 2}, files={"in": text("v.tsv", f"chr1\t200\t{b(200)}\t{alt(200)}\tx\nchr1\t301\t{b(301)}\t{alt(301)}\n")}))
    add("tsv-dash-allele", **check(None, rows=1, files={"in": text("v.tsv", f"chr1\t200\t{b(200)}\t-\n")}))
    add("tsv-three-cols", **check(None, exit=None, err=r"(?i)column", files={"in": text("v.tsv", "chr1\t200\tA\n")}))
    add("tsv-bad-pos", **check(None, rows=1, statuses={"invalid_pos": 1}, files={"in": text("v.tsv", "chr1\t2x0\tA\tG\n")}))
    add("tsv-unicode-pos", **check(None, rows=1, statuses={"invalid_pos": 1}, files={"in": text("v.tsv", "chr1\t²\tA\tG\n")}))
    add("contig-line-wrong-length", **check(OK3, rows=3, header="##fileformat=VCFv4.2\n##contig=<ID=chr1,length=5>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"))
    add("id-with-spaces", **check(row(ref=b(200), alt=alt(200), pos=200, vid="rs 1"), rows=1))
    add("very-long-line", **check(row(ref=b(200), alt=alt(200), pos=200) .replace("\t.\t.\t.\n", "\t.\t.\t" + "X=1;" * 20000 + "\n"), rows=1))

    # ---------------------------------------------------------------- genome
    add("genome-missing", cmd=["check", "{in}", "--genome", "{dir}/nope.fa"], files={"in": vcf(OK3)}, exit=None)
    add("genome-not-fasta", cmd=["check", "{in}", "--genome", "{g}"], files={"in": vcf(OK3), "g": text("g.fa", "hello\nworld\n")}, exit=None)
    add("genome-empty", cmd=["check", "{in}", "--genome", "{g}"], files={"in": vcf(OK3), "g": text("g.fa", "")}, exit=None)
    add("genome-dup-contig", cmd=["check", "{in}", "--genome", "{g}"], files={"in": vcf(OK3), "g": text("g.fa", ">chr1\nACGT\n>chr1\nACGT\n")}, exit=None)
    add("genome-ragged-lines", cmd=["check", "{in}", "--genome", "{g}"], files={"in": vcf(OK3), "g": text("g.fa", ">chr1\nACGTACGT\nACG\nACGTACGT\n")}, exit=None)
    add("genome-stale-fai", cmd=["check", "{in}", "--genome", "{g}"], files={"in": vcf(OK3), "g": _stale_fai}, exit=0)
    add("genome-gzip-not-bgzf", cmd=["check", "{in}", "--genome", "{g}"], files={"in": vcf(OK3), "g": gz(text("g.fa", ">chr1\n" + "ACGT" * 500 + "\n"))}, exit=None)
    add("genome-directory", cmd=["check", "{in}", "--genome", "{dir}"], files={"in": vcf(OK3)}, exit=None)
    add("wrong-build", **check("".join(row("chr1", p, alt(p), b(p)) for p in range(100, 1900, 7)), exit=None,
                               err=r"(?i)build|genome"))

    # ---------------------------------------------------------------- score options
    add("score-ok", **score(OK3, rows=3, statuses={"ok": 3}))
    add("score-mixed-statuses", **score(OK3 + row("chrUn", 5, "A", "G") + row(ref=b(200), alt="C,,G", pos=200), rows=7))
    add("score-stdin", **score(None, rows=3, statuses={"ok": 3}, arg="-", stdin=(HEADER + OK3).encode()))
    add("score-alt-empty-item", **score(row(ref=b(200), alt="C,,G", pos=200), rows=3))
    add("score-pos-huge", **score(row("chr1", "99999999999999999999", "A", "G") + OK3, rows=4))
    add("chunk-size-0", **score(OK3, exit=2, extra=["--chunk-size", "0"]))
    add("chunk-size-neg", **score(OK3, exit=2, extra=["--chunk-size", "-3"]))
    add("batch-size-0", **score(OK3, exit=2, extra=["--batch-size", "0"]))
    add("batch-size-word", **score(OK3, exit=2, extra=["--batch-size", "many"]))
    add("background-n-0", **score(OK3, exit=2, extra=["--background-n", "0"]))
    add("stats-unknown", **score(OK3, exit=None, err=r"(?i)stat", extra=["--stats", "jsdd"]))
    add("stats-empty", **score(OK3, exit=None, extra=["--stats", ","]))
    add("shifts-words", **score(OK3, exit=2, extra=["--shifts", "a,b"]))
    add("shifts-duplicate", **score(OK3, exit=None, extra=["--shifts", "0,0"]))
    add("shifts-on-profile", **score(OK3, exit=None, extra=["--shifts", "0,1"]))
    add("precision-fp16", **score(OK3, exit=2, extra=["--precision", "fp16"]))
    add("devices-0", **score(OK3, exit=None, extra=["--devices", "0"]))
    add("devices-99", **score(OK3, exit=None, extra=["--devices", "99"]))
    add("null-shuffles-neg", **score(OK3, exit=None, extra=["--null-shuffles", "-1"]))
    add("null-variants-0", **score(OK3, exit=None, extra=["--null-variants", "0"]))
    add("max-indel-neg", **score(OK3, exit=None, extra=["--max-indel-len", "-1"]))
    add("center-bp-neg", **score(OK3, exit=None, extra=["--center-bp", "-5"]))
    add("peaks-missing", **score(OK3, exit=2, extra=["--peaks", "{dir}/nope.bed"]))
    add("peaks-garbage", **score(OK3, exit=None, extra=["--peaks", "{p}"], files={"p": text("p.bed", "not a bed file\n")}))
    add("groups-missing", **score(OK3, exit=2, extra=["--groups", "{dir}/nope.yaml"]))
    add("groups-bad-yaml", **score(OK3, exit=None, err=r"(?i)group|yaml", extra=["--groups", "{gy}", "--model", "{model2}"], files={"gy": text("g.yaml", "groups: [unclosed\n")}))
    add("groups-wrong-shape", **score(OK3, exit=None, err=r"(?i)group", extra=["--groups", "{gy}", "--model", "{model2}"], files={"gy": text("g.yaml", "42\n")}))
    add("model-missing", **score(OK3, exit=None, err=r"(?i)no such|not found|registered", model="{dir}/nope"))
    add("model-typo-name", **score(OK3, exit=None, err=r"(?i)registered|no such", model="enformr"))
    add("model-dir-empty", **score(OK3, exit=None, model="{dir}"))
    add("model-config-number", **score(OK3, exit=None, err=r"(?i)config", model="{m}", files={"m": _model_variant("config_number")}))
    add("model-config-not-json", **score(OK3, exit=None, err=r"(?i)config|json", model="{m}", files={"m": _model_variant("config_garbage")}))
    add("model-config-no-arch", **score(OK3, exit=None, model="{m}", files={"m": _model_variant("config_no_arch")}))
    add("model-unknown-arch", **score(OK3, exit=None, err=r"(?i)arch", model="{m}", files={"m": _model_variant("unknown_arch")}))
    add("model-weights-missing", **score(OK3, exit=None, model="{m}", files={"m": _model_variant("no_weights")}))
    add("model-weights-corrupt-header", **score(OK3, exit=None, model="{m}", files={"m": _model_variant("corrupt_header")}))
    add("model-weights-truncated", **score(OK3, exit=None, model="{m}", files={"m": _model_variant("truncated")}))
    add("model-weights-tampered", **score(OK3, exit=None, err=r"(?i)sha256|digest|changed", model="{m}", files={"m": _model_variant("tampered")}))
    add("model-config-tampered", **score(OK3, exit=None, err=r"(?i)sha256|digest|changed", model="{m}", files={"m": _model_variant("config_tampered")}))
    add("model-nan-weights", **score(OK3, exit=None, err=r"(?i)nan|finite", model="{m}", files={"m": _model_variant("nan")}))
    add("model-inf-weights", **score(OK3, exit=None, err=r"(?i)nan|inf|finite", model="{m}", files={"m": _model_variant("inf")}))
    add("model-missing-tensor", **score(OK3, exit=None, model="{m}", files={"m": _model_variant("missing_tensor")}))
    add("model-twice", **score(OK3, exit=None, extra=["--model", "{model}"]))
    add("genome-missing-score", **score(OK3, exit=None, err=r"(?i)nope\.fa") | {"cmd": ["score", "{in}", "--genome", "{dir}/nope.fa", "--model", "{model}", "--out", "{dir}/o.zarr"]})

    # ---------------------------------------------------------------- output store
    add("out-exists-foreign-dir", **score(OK3, exit=None, out="{foreign}", files={"foreign": _foreign_dir}))
    add("out-overwrite-foreign-dir", **score(OK3, exit=None, out="{foreign}", extra=["--overwrite"], files={"foreign": _foreign_dir}))
    add("out-overwrite-regular-file", **score(OK3, exit=None, out="{f}", extra=["--overwrite"], files={"f": text("thesis.txt", "my thesis\n")}))
    add("out-regular-file", **score(OK3, exit=None, out="{f}", files={"f": text("thesis.txt", "my thesis\n")}))
    add("out-overwrite-empty-dir", **score(OK3, rows=3, out="{e}", extra=["--overwrite"], files={"e": _empty_dir}))
    add("out-parent-is-file", **score(OK3, exit=None, out="{f}/o.zarr", files={"f": text("plain", "x")}))
    add("out-overwrite-store", **score(OK3, rows=3, out="{store}", extra=["--overwrite"]))
    add("out-exists-store", **score(OK3, exit=None, err=r"(?i)exists|resume|overwrite", out="{store}"))
    add("resume-foreign-dir", **score(OK3, exit=None, out="{foreign}", extra=["--resume"], files={"foreign": _foreign_dir}))
    add("resume-other-zarr", **score(OK3, exit=None, out="{z}", extra=["--resume"], files={"z": _other_zarr}))
    add("resume-complete-store", **score(None, rows=None, out="{store}", extra=["--resume"], arg="{store_vcf}"))
    add("resume-same-content-elsewhere", **score(OK3, rows=3, out="{store}", extra=["--resume"]))
    add("resume-other-vcf", **score(snv(200) + snv(305), exit=None, err=r"(?i)differ|vcf|variants", out="{store}", extra=["--resume"]))
    add("resume-other-stats", **score(None, exit=None, err=r"(?i)differ|stat", out="{store}", arg="{store_vcf}", extra=["--resume", "--stats", "logfc"]))
    add("resume-no-rc", **score(None, exit=None, err=r"(?i)differ|rc", out="{store}", arg="{store_vcf}", extra=["--resume", "--no-rc"]))
    add("resume-ref-mismatch", **score(None, exit=None, err=r"(?i)differ|mismatch", out="{store}", arg="{store_vcf}", extra=["--resume", "--ref-mismatch", "flip"]))
    add("resume-max-indel", **score(None, exit=None, err=r"(?i)differ|indel", out="{store}", arg="{store_vcf}", extra=["--resume", "--max-indel-len", "7"]))
    add("resume-other-genome", cmd=["score", "{store_vcf}", "--genome", "{g2}", "--model", "{model}", "--out", "{store}", "--resume", "--quiet"],
        files={"g2": _other_genome}, exit=None, err=r"(?i)differ|genome")
    add("resume-other-model", **score(None, exit=None, out="{store}", arg="{store_vcf}", model="{model2}", extra=["--resume"]))

    # ---------------------------------------------------------------- export / report
    for fmt in ("tsv", "vcf", "polyfun", "parquet"):
        add(f"export-{fmt}-missing-store", cmd=["export", "{dir}/nope.zarr", "--format", fmt, "--out", "{dir}/x"], exit=None)
        add(f"export-{fmt}-foreign-dir", cmd=["export", "{foreign}", "--format", fmt, "--out", "{dir}/x"], files={"foreign": _foreign_dir}, exit=None)
        add(f"export-{fmt}-deleted-chunk", cmd=["export", "{damaged}", "--format", fmt, "--out", "{dir}/x"], files={"damaged": _damaged("score")}, exit=None, err=r"(?i)chunk|missing|damaged")
    add("export-deleted-pos-chunk", cmd=["export", "{damaged}", "--format", "tsv", "--out", "{dir}/x.tsv"], files={"damaged": _damaged("pos")}, exit=None, err=r"(?i)chunk|missing|damaged")
    add("export-garbled-chunk", cmd=["export", "{damaged}", "--format", "tsv", "--out", "{dir}/x.tsv"], files={"damaged": _damaged("garble")}, exit=None)
    add("export-polyfun-missing-dir", cmd=["export", "{store}", "--format", "polyfun", "--out", "{dir}/annot/veff"], exit=0)
    add("export-out-is-dir", cmd=["export", "{store}", "--format", "tsv", "--out", "{dir}"], exit=None)
    add("export-out-parent-file", cmd=["export", "{store}", "--format", "tsv", "--out", "{f}/x.tsv"], files={"f": text("plain", "x")}, exit=None)
    add("export-bad-format", cmd=["export", "{store}", "--format", "xlsx", "--out", "{dir}/x"], exit=2)
    add("export-unfinished", cmd=["export", "{unfinished}", "--format", "tsv", "--out", "{dir}/x.tsv"], files={"unfinished": _unfinished}, exit=None)
    add("report-missing-store", cmd=["report", "{dir}/nope.zarr", "--out", "{dir}/r.html"], exit=None)
    add("report-foreign-dir", cmd=["report", "{foreign}", "--out", "{dir}/r.html"], files={"foreign": _foreign_dir}, exit=None)
    add("report-deleted-chunk", cmd=["report", "{damaged}", "--out", "{dir}/r.html"], files={"damaged": _damaged("score")}, exit=None, err=r"(?i)chunk|missing|damaged")
    add("report-out-is-dir", cmd=["report", "{store}", "--out", "{dir}"], exit=None)
    add("report-top-0", cmd=["report", "{store}", "--out", "{dir}/r.html", "--top", "0"], exit=2)
    add("report-top-neg", cmd=["report", "{store}", "--out", "{dir}/r.html", "--top", "-1"], exit=2)

    # ---------------------------------------------------------------- convert
    add("convert-missing-source", cmd=["convert", "{dir}/nope.h5", "--format", "chrombpnet-h5", "--out", "{dir}/m"], exit=2)
    add("convert-text-as-h5", cmd=["convert", "{f}", "--format", "chrombpnet-h5", "--out", "{dir}/m"], files={"f": text("m.h5", "not hdf5")}, exit=None)
    add("convert-text-as-torch", cmd=["convert", "{f}", "--format", "bpnet-lite", "--out", "{dir}/m"], files={"f": text("m.torch", "not a torch file")}, exit=None)
    add("convert-text-as-enformer", cmd=["convert", "{f}", "--format", "enformer-pytorch", "--out", "{dir}/m"], files={"f": text("m.bin", "junk")}, exit=None)
    add("convert-text-as-borzoi", cmd=["convert", "{f}", "--format", "borzoi-pytorch", "--out", "{dir}/m"], files={"f": text("m.bin", "junk")}, exit=None)
    add("convert-text-as-grelu", cmd=["convert", "{f}", "--format", "grelu", "--out", "{dir}/m"], files={"f": text("m.ckpt", "junk")}, exit=None)
    add("convert-baskerville-no-params", cmd=["convert", "{f}", "--format", "baskerville", "--out", "{dir}/m"], files={"f": text("m.h5", "junk")}, exit=None)
    add("convert-bad-format", cmd=["convert", "{f}", "--format", "onnx", "--out", "{dir}/m"], files={"f": text("m.onnx", "junk")}, exit=2)
    add("convert-out-is-file", cmd=["convert", "{f}", "--format", "chrombpnet-h5", "--out", "{g}"], files={"f": text("m.h5", "junk"), "g": text("plain", "x")}, exit=None)

    # ---------------------------------------------------------------- other commands
    add("models-env-file", cmd=["models"], env={"VEFF_MODELS": "{f}"}, files={"f": text("plain", "x")}, exit=0)
    add("fetch-unknown", cmd=["fetch", "no-such-model"], exit=None)
    add("predict-bad-bed", cmd=["predict", "{bed}", "--model", "{model}", "--genome", "{fa}", "--out", "{dir}/p.bw"], files={"bed": text("r.bed", "chr1\tx\ty\n")}, exit=None)
    add("predict-missing-bed", cmd=["predict", "{dir}/nope.bed", "--model", "{model}", "--genome", "{fa}", "--out", "{dir}/p.bw"], exit=2)
    add("finalize-foreign", cmd=["finalize", "{foreign}"], files={"foreign": _foreign_dir}, exit=None)
    add("run-partition-foreign", cmd=["run-partition", "{foreign}", "0"], files={"foreign": _foreign_dir}, exit=None)
    add("run-partition-out-of-range", cmd=["run-partition", "{store}", "999"], exit=None)
    add("unknown-command", cmd=["scroe"], exit=2)
    return [Case(id=i, **kw) for i, kw in c]


# ------------------------------------------------------------------------ builders
def _foreign_dir(d: Path, world: dict) -> Path:
    f = d / "thesis"
    (f / "chapters").mkdir(parents=True)
    (f / "chapters" / "one.tex").write_text("\\chapter{One}\n")
    (f / "notes.txt").write_text("do not delete\n")
    return f


def _empty_dir(d: Path, world: dict) -> Path:
    e = d / "empty"
    e.mkdir()
    return e


def _other_zarr(d: Path, world: dict) -> Path:
    import numpy as np
    import zarr

    z = d / "other.zarr"
    g = zarr.open_group(str(z), mode="w")
    g.create_array("x", data=np.arange(10))
    return z


def _other_genome(d: Path, world: dict) -> Path:
    p = d / "g2.fa"
    p.write_text(Path(world["fa"]).read_text().replace("ACGTACGTAC", "ACGTACGTAA", 1))
    return p


def _stale_fai(d: Path, world: dict) -> Path:
    p = d / "g.fa"
    p.write_text(">chr1\n" + "ACGT" * 500 + "\n")
    (d / "g.fa.fai").write_text("chr1\t99999\t6\t2000\t2001\n")
    return p


def _model_variant(kind: str):
    def make(d: Path, world: dict) -> Path:
        import json
        import shutil

        m = d / "m"
        shutil.copytree(world["model"], m)
        cfg = m / "config.json"
        weights = next(m.glob("*.safetensors"))
        if kind == "config_number":
            cfg.write_text("3")
        elif kind == "config_garbage":
            cfg.write_text("{not json")
        elif kind == "config_no_arch":
            doc = json.loads(cfg.read_text()); doc.pop("arch", None); cfg.write_text(json.dumps(doc))
        elif kind == "unknown_arch":
            doc = json.loads(cfg.read_text()); doc["arch"] = "transformer9000"; cfg.write_text(json.dumps(doc))
        elif kind == "config_tampered":
            doc = json.loads(cfg.read_text()); doc["config"]["filters"] = doc["config"].get("filters", 1); doc["tracks"] = [{"name": "renamed\ntrack"}]; cfg.write_text(json.dumps(doc))
        elif kind == "no_weights":
            weights.unlink()
        elif kind == "corrupt_header":
            data = weights.read_bytes()
            weights.write_bytes(struct.pack("<Q", 10**12) + data[8:])
        elif kind == "truncated":
            weights.write_bytes(weights.read_bytes()[:100])
        elif kind == "tampered":
            data = bytearray(weights.read_bytes()); data[-5] ^= 0xFF; weights.write_bytes(bytes(data))
        elif kind in ("nan", "inf", "missing_tensor"):
            from safetensors.numpy import load_file, save_file
            import numpy as np
            t = load_file(str(weights))
            key = sorted(t)[0]
            if kind == "missing_tensor":
                t.pop(key)
            else:
                a = t[key].copy(); a.flat[0] = np.nan if kind == "nan" else np.inf; t[key] = a
            save_file(t, str(weights))
            _reseal(m)
        return m
    return make


def _reseal(m: Path) -> None:
    """Make a modified checkpoint's digest match again, so only the content check can object."""
    import json

    from veff.checkpoint import write_config

    write_config(m, json.loads((m / "config.json").read_text()))


def _damaged(kind: str):
    def make(d: Path, world: dict) -> Path:
        import shutil

        s = d / "damaged.zarr"
        shutil.copytree(world["store"], s)
        if kind == "score":
            arr = next(p for p in (s / "scores").rglob("logfc") if p.is_dir())
        else:
            arr = s / "variants" / "pos"
        chunk = next(p for p in (arr / "c").rglob("*") if p.is_file())
        if kind == "garble":
            chunk.write_bytes(b"garbage" * 10)
        else:
            chunk.unlink()
        return s
    return make


def _unfinished(d: Path, world: dict) -> Path:
    import shutil

    s = d / "unfinished.zarr"
    shutil.copytree(world["store"], s)
    for marker in (s / "_veff").rglob("*"):
        if marker.is_file() and "done" in str(marker):
            marker.unlink()
            break
    return s


CASES = _cases()
