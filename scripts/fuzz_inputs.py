"""Fuzz veff's variant readers: mutated VCF/TSV records through the `veff check` read path.

    python scripts/fuzz_inputs.py --inputs 200000 --seed 0

Every input is one record line (a valid VCF or TSV record, then mutated: random bytes,
Unicode digits, huge numbers, empty fields, missing or extra columns, symbolic alleles,
breakends, lower case, IUPAC, ...), written with a few hundred others into a file that may
have a header or none, a BOM, CRLF line endings, gzip or BGZF compression. Each file is read
in-process exactly as `veff check` reads it (``read_variants(..., build_check=None)``) and
its rows are turned into the store's column arrays as `veff score` does. An independent
oracle (``expect``) says, from the documented rules, how many rows each line must give.

After a clean error (VcfError / GenomeError) the offending line is set aside and the rest
of the file is read again, so one bad line does not hide the others. Whole files are also
cut short (gzip, BGZF, BCF) to check that truncation always ends in a clean error.

Printed: inputs tried, rows by status, clean errors by kind, crashes (any other exception,
with the first examples), silent drops (fewer rows than ALT items) and extra rows.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import random
import re
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from veff.io.genome import Genome, GenomeError  # noqa: E402
from veff.io.vcf import VcfError, read_variants  # noqa: E402
from veff.store import _VARIANT_COLUMNS, _column_array  # noqa: E402
from veff.types import Status  # noqa: E402

BOM = b"\xef\xbb\xbf"
CLEAN = (VcfError, GenomeError)
ACGT = frozenset("ACGT")
CONTIGS = {"chr1": 997, "chr2": 211}
VCF_HEADER = [b"##fileformat=VCFv4.2", b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
UNICODE_DIGITS = ["\u00b2", "\u00b9", "\u2460", "\u0663", "\u06f5", "\u096b", "\uff15",
                  "\U0001d7d3", "\u00bd", "\u0665\u0660"]  # fmt: skip
HUGE = ["99999999999999999999", "2147483648", "2147483647", "4294967296", "-1", "-0", "0",
        "+5", "1e3", "0x10", "5.0", " 5", "5 ", "00000000000000000050", "1_000"]  # fmt: skip
ALLELES = ["<DEL>", "<INS:ME>", "<*>", "<NON_REF>", "*", "A[chr2:5[", "]chr1:3]A", ".A", "A.",
           "N", "R", "acgt", "ACGTN", "-", ".", "", ",", "C,,G", "A,", ",T", "a,c,<DEL>,*",
           "A" * 80, "AC" * 30, "Ä", "ß", "\u0391"]  # fmt: skip
JUNK_CHARS = "\t \r\x00\x0b\x0c\x1c\x85\u2028\u00a0#,.;:=<>[]*-ACGTNacgtn0123456789\ufeff"


def genome_text(rng: random.Random) -> dict[str, str]:
    seqs = {c: "".join(rng.choice("ACGT") for _ in range(n)) for c, n in CONTIGS.items()}
    s1 = list(seqs["chr1"])
    s1[100:140] = [b.lower() for b in s1[100:140]]
    s1[300:320] = "N" * 20
    s1[400] = "R"
    seqs["chr1"] = "".join(s1)
    return seqs


# ------------------------------------------------------------------------ inputs
def valid_line(rng: random.Random, seqs: dict[str, str], fmt: str) -> list[str]:
    chrom = rng.choice([c for c in ("chr1", "chr1", "chr2") if c in seqs])
    seq = seqs[chrom]
    pos1 = rng.randint(1, len(seq) - 6)
    ref = seq[pos1 - 1 : pos1 - 1 + rng.choice([1, 1, 1, 2, 4])].upper()
    alts = [rng.choice("ACGT") + "".join(rng.choice("ACGT") for _ in range(rng.choice([0, 0, 2])))
            for _ in range(rng.choice([1, 1, 1, 2, 3]))]  # fmt: skip
    if fmt == "tsv":
        return [chrom, str(pos1), ref, alts[0], f"v{pos1}"][: rng.choice([4, 5, 5])]
    return [chrom, str(pos1), rng.choice([".", f"rs{pos1}"]), ref, ",".join(alts), ".", "PASS", "."]


def mutate(rng: random.Random, fields: list[str]) -> bytes:
    """A record line (no terminator) with 0-3 mutations, as bytes."""
    fields = list(fields)
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        i = rng.randrange(len(fields)) if fields else 0
        op = rng.randrange(13)
        if not fields:
            fields = [""]
        elif op == 0:
            fields[i] = rng.choice(UNICODE_DIGITS) * rng.randint(1, 3)
        elif op == 1:
            fields[1 if len(fields) > 1 else 0] = rng.choice(HUGE + UNICODE_DIGITS)
        elif op == 2:
            fields[i] = ""
        elif op == 3:
            del fields[i]
        elif op == 4:
            fields.insert(i, rng.choice(fields))
        elif op in (5, 6):
            fields[rng.choice([j for j in (2, 3, 4) if j < len(fields)] or [0])] = rng.choice(ALLELES)
        elif op == 7:
            fields[i] = fields[i].lower() if rng.random() < 0.5 else fields[i].upper()
        elif op == 8:
            fields[i] = "".join(rng.choice(JUNK_CHARS) for _ in range(rng.randint(1, 6)))
        elif op == 9:
            fields[i] = "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 4)))
        elif op == 10:
            fields[0] = rng.choice(["1", "CHR1", "chrZ", "chr1_random", "MT", "#chr1", " chr1"])
        elif op == 11:  # spaces instead of tabs
            return _bytes(rng, " ".join(fields))
        else:
            fields[i] = str(rng.choice([10**rng.randint(9, 30), rng.randint(-10, 2000)]))
    return _bytes(rng, "\t".join(fields))


def _bytes(rng: random.Random, text: str) -> bytes:
    data = text.replace("\n", " ").encode("utf-8", "surrogatepass")
    r = rng.random()
    if r < 0.03:  # random bytes, possibly not UTF-8
        k = rng.randint(0, len(data))
        data = data[:k] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + data[k:]
    elif r < 0.06:  # truncated line
        data = data[: rng.randint(0, len(data))]
    return data.replace(b"\n", b" ")


def bgzf(data: bytes, block: int = 4096) -> bytes:
    out = []
    for i in range(0, len(data), block):
        chunk = data[i : i + block]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        cdata = c.compress(chunk) + c.flush()
        head = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", 6) + b"BC"
        out.append(head + struct.pack("<HH", 2, 25 + len(cdata)) + cdata
                   + struct.pack("<II", zlib.crc32(chunk), len(chunk)))  # fmt: skip
    eof = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
    return b"".join(out) + eof


# ------------------------------------------------------------------------ oracle
def expect(lines: list[bytes], fmt: str) -> list[tuple[str, int]]:
    """Per line of the plain file: ('skip', 0), ('rows', n) or ('error', 0), from the rules
    in docs/variants.md (not from the reader's code)."""
    out, seen_record = [], False
    for i, raw in enumerate(lines):
        if i == 0 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            out.append(("error", 0))
            continue
        if fmt == "tsv":
            f = line.split()
            out.append(("skip", 0) if not f or f[0].startswith("#") else
                       ("error", 0) if len(f) < 4 else ("rows", 1))  # fmt: skip
            continue
        if not line.strip():
            out.append(("skip", 0))
        elif line.startswith("#"):
            out.append(("error", 0) if seen_record else ("skip", 0))
        else:
            seen_record = True
            f = line.split("\t", 5)
            alt = f[4] if len(f) >= 5 else None
            out.append(("error", 0) if alt is None else
                       ("rows", 1 if alt in (".", "") else alt.count(",") + 1))  # fmt: skip
    return out


def ok_row_is_valid(v) -> bool:
    n = CONTIGS.get(v.fasta_chrom or "", 0)
    written = {"-"} | ACGT  # the input alleles, '-' being a TSV empty allele
    return (bool(v.ref) and bool(v.alt) and set(v.ref) <= ACGT and set(v.alt) <= ACGT
            and 1 <= v.pos1 and v.pos1 - 1 + len(v.ref) <= n
            and bool(v.orig_ref) and bool(v.orig_alt) and v.orig_pos1 is not None
            and set(v.orig_ref.upper()) <= written and set(v.orig_alt.upper()) <= written)  # fmt: skip


# ------------------------------------------------------------------------ driver
class Tally:
    def __init__(self):
        self.inputs = self.records = self.non_records = self.errors = 0
        self.files = self.file_cuts = self.file_cut_errors = 0
        self.statuses = collections.Counter()
        self.error_kinds = collections.Counter()
        self.crashes: list[str] = []
        self.num_crashes = self.drops = self.extras = self.bad_ok = self.accepted_bad = 0
        self.rejected_good = 0
        self.problems: list[str] = []

    def problem(self, kind: str, detail: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(f"{kind}: {detail}")


def error_kind(msg: str) -> str:
    m = re.match(r"^.*?(?::\d+| \(record \d+\))?: (.*?)(?: — |$)", msg)
    text = m.group(1) if m else msg
    return re.sub(r"'[^']*'|\d+|\(.*", "…", text)[:70]


def read_file(path: Path, genome: Genome):
    """(format, rows, error) as `veff check` sees the file."""
    rows, fmt = [], None
    try:
        reader = read_variants(path, genome, ref_mismatch="skip", build_check=None)
        fmt = reader.format
        for v in reader:
            rows.append(v)
        for name, dtype, get in _VARIANT_COLUMNS:  # what Store.create does with the rows
            _column_array(name, dtype, [get(v) for v in rows])
        return fmt, rows, None
    except CLEAN as e:
        return fmt, rows, e


def run_batch(tally: Tally, path: Path, genome: Genome, header: list[bytes],
              lines: list[bytes], crlf: bool, compress: str) -> None:  # fmt: skip
    nl = b"\r\n" if crlf else b"\n"
    pending = list(range(len(lines)))  # indices of fuzzed lines not yet accounted for
    while pending:
        plain = nl.join(header + [lines[i] for i in pending]) + nl
        path.write_bytes(gzip.compress(plain, 1) if compress == "gzip" else
                         bgzf(plain) if compress == "bgzf" else plain)  # fmt: skip
        try:
            fmt, rows, err = read_file(path, genome)
        except Exception as e:  # noqa: BLE001 - a crash is what we are looking for
            tally.num_crashes += 1
            if len(tally.crashes) < 5:
                tally.crashes.append(f"{type(e).__name__}: {e} | lines {[lines[i] for i in pending][:3]}")
            tally.inputs += len(pending)
            return
        all_lines = [*header, *(lines[i] for i in pending)]
        want = expect(all_lines, fmt or "tsv")
        by_line = collections.Counter(v.line for v in rows)
        for v in rows:
            tally.statuses[v.status.value] += 1
            if v.status is Status.OK and not ok_row_is_valid(v):
                tally.bad_ok += 1
                tally.problem("bad ok row", repr(v))
        stop = len(all_lines)
        if err is not None:
            m = re.match(rf"^{re.escape(str(path))}:(\d+):", str(err))
            firsts = [k for k, (w, n) in enumerate(want) if by_line[k + 1] < n or w == "error"]
            stop = int(m.group(1)) - 1 if m else (firsts[0] if firsts else len(all_lines) - 1)
            if "\n" in str(err):
                tally.problem("multi-line error", str(err))
        for k in range(len(header), min(stop, len(all_lines))):
            w, n = want[k]
            tally.inputs += 1
            tally.records += w == "rows"
            tally.non_records += w == "skip"
            if w == "error":
                tally.accepted_bad += 1
                tally.problem("oracle expected an error", repr(all_lines[k]))
            if by_line[k + 1] < n:
                tally.drops += 1
                tally.problem("silent drop", repr(all_lines[k]))
            elif by_line[k + 1] > n:
                tally.extras += 1
                tally.problem("extra rows", repr(all_lines[k]))
        if err is None:
            return
        tally.inputs += 1
        tally.errors += 1
        if isinstance(err, VcfError) and stop < len(want) and want[stop][0] != "error":
            tally.rejected_good += 1
            tally.problem("oracle expected rows", f"{all_lines[stop]!r}: {err}")
        tally.error_kinds[error_kind(str(err))] += 1
        if stop < len(header):  # the header itself failed: nothing more to learn
            tally.inputs += len(pending) - 1
            return
        pending = pending[stop - len(header) + 1 :]


def cut_files(tally: Tally, rng: random.Random, tmp: Path, genome: Genome, plain: bytes) -> None:
    """Truncated gzip, BGZF and BCF files: a clean error (or, for a cut at a gzip member
    end, fewer complete rows), never a crash."""
    import cyvcf2

    src = tmp / "cut_src.vcf"
    src.write_bytes(plain)
    bcf = tmp / "cut_src.bcf"
    w = cyvcf2.Writer.from_string(str(bcf), cyvcf2.VCF(str(src)).raw_header, mode="wb")
    for rec in cyvcf2.VCF(str(src)):
        w.write_record(rec)
    w.close()
    for kind, data in [("gz", gzip.compress(plain)), ("bgz", bgzf(plain)), ("bcf", bcf.read_bytes())]:
        for _ in range(20):
            path = tmp / f"cut.{kind}"
            path.write_bytes(data[: rng.randint(1, len(data) - 1)])
            tally.file_cuts += 1
            try:
                _, _, err = read_file(path, genome)
            except Exception as e:  # noqa: BLE001
                tally.num_crashes += 1
                tally.crashes.append(f"{kind} cut: {type(e).__name__}: {e}")
                continue
            tally.file_cut_errors += err is not None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=200_000, help="fuzzed record lines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=250, help="records per file")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="veff-fuzz-") as tmpdir:
        tmp = Path(tmpdir)
        seqs = genome_text(rng)
        fasta = tmp / "g.fa"
        fasta.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
        genome = Genome(fasta)
        path = tmp / "in"
        made = 0
        while made < args.inputs:
            n = min(args.batch, args.inputs - made)
            fmt = rng.choice(["vcf", "vcf", "tsv"])
            header = {"vcf": rng.choice([VCF_HEADER, VCF_HEADER[1:], [], [VCF_HEADER[0],
                      b"##contig=<ID=chr1,length=" + rng.choice([b"997", "\u00b2".encode(), b"99999999999999999999", b""]) + b">",
                      VCF_HEADER[1]]]), "tsv": rng.choice([[], [b"# chr pos a1 a2 id"]])}[fmt]  # fmt: skip
            if header and rng.random() < 0.1:
                header = [BOM + header[0], *header[1:]]
            lines = [mutate(rng, valid_line(rng, seqs, fmt)) for _ in range(n)]
            if not header and rng.random() < 0.1:
                lines[0] = BOM + lines[0]
            run_batch(tally, path, genome, header, lines, crlf=rng.random() < 0.2,
                      compress=rng.choice(["none"] * 6 + ["gzip", "bgzf"]))  # fmt: skip
            tally.files += 1
            made += n
        plain = b"\n".join(VCF_HEADER[:1] + [b"##contig=<ID=chr1,length=997>"] + VCF_HEADER[1:]
                           + [b"\t".join(x.encode() for x in valid_line(rng, {"chr1": seqs["chr1"]}, "vcf"))
                              for _ in range(3000)]) + b"\n"  # fmt: skip
        cut_files(tally, rng, tmp, genome, plain)
        genome.close()
    secs = time.perf_counter() - t0
    print(f"command: python scripts/fuzz_inputs.py --inputs {args.inputs} --seed {args.seed} "
          f"--batch {args.batch}")  # fmt: skip
    print(f"inputs tried: {tally.inputs:,} record lines in {tally.files:,} files, {secs:.1f} s "
          f"({tally.inputs / secs:,.0f} lines/s, 1 core)")  # fmt: skip
    print(f"  read as records: {tally.records:,}; blank/comment/header: {tally.non_records:,}; "
          f"clean errors: {tally.errors:,}")  # fmt: skip
    print(f"rows by status ({sum(tally.statuses.values()):,}):")
    for s in Status:
        print(f"  {s.value:<16} {tally.statuses[s.value]:>9,}")
    print("clean errors by kind:")
    for kind, n in tally.error_kinds.most_common():
        print(f"  {n:>7,}  {kind}")
    print(f"truncated gzip/BGZF/BCF files: {tally.file_cuts}, clean errors: {tally.file_cut_errors}")
    print(f"crashes (unexpected exceptions): {tally.num_crashes}")
    for c in tally.crashes:
        print(f"  {c[:300]}")
    print(f"silent drops (fewer rows than ALT items): {tally.drops}; extra rows: {tally.extras}; "
          f"ok rows with non-ACGT alleles or a bad position: {tally.bad_ok}; lines the oracle "
          f"calls malformed but were read: {tally.accepted_bad}; lines it calls records but "
          f"were refused: {tally.rejected_good}")  # fmt: skip
    for p in tally.problems:
        print(f"  {p[:300]}")
    bad = (tally.num_crashes + tally.drops + tally.extras + tally.bad_ok + tally.accepted_bad
           + tally.rejected_good)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
