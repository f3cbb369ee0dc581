"""Shared fixtures: a tiny generated genome (plain and BGZF FASTA) and file writers.

chr1 (997 bp, 60 bp lines) holds, at 0-based positions:
  [100, 140) soft-masked (lower case)       [300, 320) N run
  400 IUPAC 'R' (A/G)                        [499, 513) G + (CA)x6 + T, a dinucleotide repeat
  [599, 609) C + A x8 + G, a homopolymer
chr2 (211 bp, 50 bp lines) is random.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
BASKERVILLE = SHARED / "data" / "baskerville"


def make_tiny_seqs() -> dict[str, str]:
    rng = np.random.default_rng(7)
    chr1 = list("".join(rng.choice(list("ACGT"), 997)))
    chr1[100:140] = [b.lower() for b in chr1[100:140]]
    chr1[300:320] = "N" * 20
    chr1[400] = "R"
    chr1[499:513] = "G" + "CA" * 6 + "T"
    chr1[599:609] = "C" + "A" * 8 + "G"
    chr2 = "".join(rng.choice(list("ACGT"), 211))
    return {"chr1": "".join(chr1), "chr2": chr2}


def write_fasta(path: Path, seqs: dict[str, str], widths: dict[str, int] | None = None) -> Path:
    with open(path, "w") as fh:
        for name, seq in seqs.items():
            w = (widths or {}).get(name, 60)
            fh.write(f">{name} some description\n")
            for i in range(0, len(seq), w):
                fh.write(seq[i : i + w] + "\n")
    return path


_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def write_bgzf(path: Path, data: bytes, block_size: int) -> list[tuple[int, int]]:
    """BGZF-compress ``data`` in blocks of ``block_size`` bytes; returns the .gzi pairs."""
    pairs, coff = [], 0
    with open(path, "wb") as fh:
        for uoff in range(0, len(data), block_size):
            chunk = data[uoff : uoff + block_size]
            comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            cdata = comp.compress(chunk) + comp.flush()
            bsize = 18 + len(cdata) + 8
            head = b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\0\xff" + struct.pack("<H", 6)
            head += b"BC" + struct.pack("<HH", 2, bsize - 1)
            tail = struct.pack("<II", zlib.crc32(chunk), len(chunk))
            fh.write(head + cdata + tail)
            if uoff:
                pairs.append((coff, uoff))
            coff += bsize
        fh.write(_BGZF_EOF)
    return pairs


def write_gzi(path: Path, pairs: list[tuple[int, int]]) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(pairs)))
        for c, u in pairs:
            fh.write(struct.pack("<QQ", c, u))


@pytest.fixture(scope="session")
def tiny_seqs() -> dict[str, str]:
    return make_tiny_seqs()


@pytest.fixture(scope="session")
def tiny_fasta(tmp_path_factory, tiny_seqs) -> Path:
    path = tmp_path_factory.mktemp("genome") / "tiny.fa"
    return write_fasta(path, tiny_seqs, {"chr1": 60, "chr2": 50})


@pytest.fixture(scope="session")
def tiny_fasta_bgz(tmp_path_factory, tiny_fasta) -> Path:
    """The same genome as BGZF with 97-byte blocks, so fetches cross many blocks."""
    from veff.io.genome import Genome

    Genome(tiny_fasta).close()  # builds tiny.fa.fai
    path = tmp_path_factory.mktemp("genome_bgz") / "tiny.fa.gz"
    pairs = write_bgzf(path, tiny_fasta.read_bytes(), block_size=97)
    write_gzi(Path(f"{path}.gzi"), pairs)
    shutil.copy(f"{tiny_fasta}.fai", f"{path}.fai")
    return path


@pytest.fixture(params=["plain", "bgzf"])
def any_fasta(request, tiny_fasta, tiny_fasta_bgz) -> Path:
    return tiny_fasta if request.param == "plain" else tiny_fasta_bgz


VCF_HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def write_vcf(path: Path, rows: list[tuple], header: str = VCF_HEADER) -> Path:
    """rows: (chrom, pos1, id, ref, alt) tuples; alt may hold commas."""
    with open(path, "w") as fh:
        fh.write(header)
        for chrom, pos1, vid, ref, alt in rows:
            fh.write(f"{chrom}\t{pos1}\t{vid}\t{ref}\t{alt}\t.\t.\t.\n")
    return path


def baskerville_file(name: str) -> Path:
    path = BASKERVILLE / name
    if not path.is_file():
        pytest.skip(f"shared test data {path} is not present")
    return path


@pytest.fixture(autouse=True)
def _torch_matmul_precision_restored():
    """gReLU/Lightning training sets torch's float32 matmul precision to "medium" (bf16
    internally) for the rest of the process, which moved later torch reference outputs by
    ~1e-4: every test ends with the precision it started with."""
    import sys

    torch = sys.modules.get("torch")
    before = torch.get_float32_matmul_precision() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None:
        torch.set_float32_matmul_precision(before)
