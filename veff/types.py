"""Core value types shared by every layer of veff.

Coordinates: ``pos1`` is a 1-based VCF position; ``start0``/``end0`` are 0-based half-open.
Tokens: DNA is carried on the host as uint8 tokens A=0, C=1, G=2, T=3, N=4 (any IUPAC code
or unknown base is N); one-hot order is A, C, G, T and N is all zeros.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

A, C, G, T, N = 0, 1, 2, 3, 4
ALPHABET = "ACGTN"
NUM_TOKENS = 5


class Status(str, enum.Enum):
    """Per-row outcome. The string values are written to the store and documented in
    docs/variants.md; never rename one."""

    OK = "ok"
    REF_MISMATCH = "ref_mismatch"
    UNKNOWN_CONTIG = "unknown_contig"
    SYMBOLIC_ALLELE = "symbolic_allele"
    MISSING_ALT = "missing_alt"
    NON_ACGT_ALLELE = "non_acgt_allele"
    INDEL_TOO_LONG = "indel_too_long"
    OUT_OF_BOUNDS = "out_of_bounds"
    INVALID_POS = "invalid_pos"

    def __str__(self) -> str:  # so f-strings and the store see "ok", not "Status.OK"
        return self.value


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variant:
    """One row of output: one ALT allele of one input record.

    ``ref``/``alt`` are the normalised alleles actually scored (upper-case, minimal, left-aligned,
    anchor base kept for indels); ``orig_ref``/``orig_alt`` are what the input said.
    ``chrom`` is the input's contig name; ``fasta_chrom`` the genome's name for it (None when
    unknown). ``record`` is the 0-based index of the input record, ``line`` its line number
    in the file where known (for messages).
    """

    chrom: str
    pos1: int
    ref: str
    alt: str
    id: str = "."
    status: Status = Status.OK
    fasta_chrom: str | None = None
    orig_pos1: int | None = None
    orig_ref: str | None = None
    orig_alt: str | None = None
    flipped: bool = False
    record: int = 0
    line: int | None = None

    @property
    def is_snv(self) -> bool:
        return len(self.ref) == 1 and len(self.alt) == 1

    @property
    def is_indel(self) -> bool:
        return len(self.ref) != len(self.alt)

    @property
    def start0(self) -> int:
        return self.pos1 - 1


def encode(seq: str | bytes) -> np.ndarray:
    """DNA string -> uint8 tokens (case-insensitive; anything but ACGT becomes N)."""
    raw = np.frombuffer(seq.encode("ascii") if isinstance(seq, str) else seq, dtype=np.uint8)
    return _ENCODE_LUT[raw]


def decode(tokens: np.ndarray) -> str:
    return _DECODE_LUT[np.asarray(tokens, dtype=np.uint8)].tobytes().decode("ascii")


def _make_encode_lut() -> np.ndarray:
    lut = np.full(256, N, dtype=np.uint8)
    for i, b in enumerate("ACGT"):
        lut[ord(b)] = i
        lut[ord(b.lower())] = i
    return lut


_ENCODE_LUT = _make_encode_lut()
_DECODE_LUT = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
