"""Reference/alternate token windows, indel alignment, one-hot and reverse complement.

Centring (contract): REF's first base sits at 0-based index ``L // 2`` of a window of length L,
so the window covers genome ``[pos1 - 1 - L // 2, pos1 - 1 - L // 2 + L)``.

Indels (variant-scorer's rule): both windows share the left flank ``[0, L // 2)``; the
alternate window is ``left + ALT + right`` where ``right`` continues the genome from just after
REF and is cut to keep length L (a deletion pulls in ``len(REF) - len(ALT)`` extra genome bases,
an insertion drops bases at the right end).

Shape letters: B batch, L window length, P output positions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from veff.io.genome import Genome, GenomeError
from veff.types import N, Status, Variant, encode

# index = token (A C G T N) -> complement token / one-hot row
_COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)
_ONE_HOT = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])


@dataclasses.dataclass(frozen=True, kw_only=True)
class WindowBatch:
    """Host-side windows of one batch. Non-ok rows are all N with ref_len = alt_len = 1."""

    ref: np.ndarray  # (B, L) uint8 tokens
    alt: np.ndarray  # (B, L) uint8 tokens
    ref_len: np.ndarray  # (B,) int32 length of the REF allele
    alt_len: np.ndarray  # (B,) int32 length of the ALT allele
    padded: np.ndarray  # (B,) bool: the windows reach past a contig end (N-padded there)

    @property
    def length(self) -> int:
        return self.ref.shape[1]


def build_windows(
    genome: Genome, variants: Sequence[Variant], length: int, *, centre_offset: int = 0
) -> WindowBatch:
    """Centred REF/ALT token windows of ``length`` bases for a batch of variants.

    REF's first base sits at index ``length // 2 + centre_offset``: 0 is veff's contract,
    -1 the Calico convention (baskerville ``hound_snp``, gReLU: ``L // 2 - 1``).

    One genome read per variant (``L + max(0, len(REF) - len(ALT))`` bases); each window is
    assembled from three slice copies (left flank, allele, right flank), never base by base.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    num = len(variants)
    centre = length // 2 + centre_offset
    if not 0 <= centre < length:
        raise ValueError(f"centre offset {centre_offset} leaves a {length} bp window")
    ref = np.full((num, length), N, dtype=np.uint8)
    alt = np.full((num, length), N, dtype=np.uint8)
    ref_len = np.ones(num, dtype=np.int32)
    alt_len = np.ones(num, dtype=np.int32)
    padded = np.zeros(num, dtype=bool)
    for b, v in enumerate(variants):
        if v.status != Status.OK:
            continue
        name = v.fasta_chrom or genome.resolve(v.chrom)
        if name is None:
            raise GenomeError(f"contig '{v.chrom}' of an ok variant is not in {genome.path}")
        rl, al = len(v.ref), len(v.alt)
        start0 = v.pos1 - 1 - centre
        end0 = start0 + length + max(0, rl - al)
        span = genome.fetch(name, start0, end0)
        ref[b] = span[:length]
        # ALT window: shared left flank, ALT (cut at the window end), then the genome right
        # of REF, shifted by len(REF) - len(ALT) so the length stays L.
        alt[b, :centre] = span[:centre]
        allele = encode(v.alt)[: length - centre]
        alt[b, centre : centre + allele.shape[0]] = allele
        rest = length - centre - allele.shape[0]
        alt[b, length - rest :] = span[centre + rl : centre + rl + rest]
        ref_len[b], alt_len[b] = rl, al
        padded[b] = start0 < 0 or end0 > genome.contigs[name]
    return WindowBatch(ref=ref, alt=alt, ref_len=ref_len, alt_len=alt_len, padded=padded)


def alignment(
    ref_len: np.ndarray, alt_len: np.ndarray, length: int, *, centre: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Which ALT output position corresponds to each REF output position.

    For a per-position output of ``length`` (P) positions laid out like the input (the
    variant's first base at output index ``centre``, default ``P // 2``), returns
    ``alt_index`` (B, P) int32 and ``valid`` (B, P) bool: REF position i and ALT position
    ``alt_index[b, i]`` show the same genome base when ``valid[b, i]``.

    - left of the variant (i < centre): the same index;
    - the first ``min(len(REF), len(ALT))`` allele positions pair up in order;
    - REF bases deleted by the ALT allele have no partner (valid False);
    - right of REF: i pairs with ``i + len(ALT) - len(REF)``, valid while that is inside
      [0, P) (an insertion pushes the last REF positions out of the ALT window).

    ALT-only positions (inserted bases, and genome pulled in at the right end by a
    deletion) are never referenced. For SNVs and MNVs this is the identity.
    """
    centre = length // 2 if centre is None else centre
    rl = np.asarray(ref_len, dtype=np.int64)[:, None]
    al = np.asarray(alt_len, dtype=np.int64)[:, None]
    i = np.arange(length, dtype=np.int64)[None, :]
    shared = np.minimum(rl, al)
    right = i >= centre + rl
    alt_index = np.where(right, i + al - rl, i)
    deleted = (i >= centre + shared) & ~right
    valid = ~deleted & (alt_index >= 0) & (alt_index < length)
    alt_index = np.where(valid, alt_index, 0)
    return alt_index.astype(np.int32), valid


def _namespace(x: Any, xp: Any):
    if xp is not None:
        return xp
    get = getattr(x, "__array_namespace__", None)
    return get() if get is not None and not isinstance(x, np.ndarray) else np


def reverse_complement(tokens: Any, xp: Any = None) -> Any:
    """Reverse complement of (..., L) uint8 tokens (numpy, or jax.numpy for jax arrays)."""
    xp = _namespace(tokens, xp)
    return xp.flip(xp.take(xp.asarray(_COMPLEMENT), tokens, axis=0), axis=-1)


def one_hot(tokens: Any, xp: Any = None) -> Any:
    """(..., L) tokens -> (..., L, 4) float32, order A C G T; N is all zeros."""
    xp = _namespace(tokens, xp)
    return xp.take(xp.asarray(_ONE_HOT), tokens, axis=0)


def as_input(v: Variant) -> Variant:
    """The variant at the input's own position and alleles, not normalised (variant-scorer
    builds its windows from the table's POS/allele1/allele2 as written; ``-`` or another
    non-ACGT spelling of an empty allele is the empty allele). Rows that are not ok, rows
    flipped by ``--ref-mismatch flip`` and rows without the input's fields are returned as
    they are. See docs/variants.md (Indel windows)."""
    if v.status != Status.OK or v.flipped or v.orig_pos1 is None or v.orig_ref is None:
        return v

    def allele(a: str) -> str:
        a = a.upper()
        return a if a and set(a) <= set("ACGT") else ""

    return dataclasses.replace(v, pos1=v.orig_pos1, ref=allele(v.orig_ref), alt=allele(v.orig_alt or ""))
