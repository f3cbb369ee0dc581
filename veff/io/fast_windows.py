"""Windows of a whole chunk straight from the store's columns, without a ``Variant`` per row.

``chunk_windows`` returns exactly what ``veff.pipeline.oriented_windows`` returns for the
chunk's rows (tests/test_fast_windows.py checks it token for token). Ok SNVs whose window
lies inside its contig — nearly every row of a typical input — are cut from the contig's
tokens in one gather per contig (``ContigTokens``: the contig decoded once and kept while
rows stay on it; variants arrive sorted). Every other row (indels, MNVs, windows past a
contig end, ``--indel-windows variant-scorer``) goes through ``build_windows`` as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from veff.io.genome import Genome
from veff.io.windows import WindowBatch
from veff.types import N, Variant, encode

_TOKEN = {b: int(encode(b)[0]) for b in "ACGT"}


class ContigTokens:
    """The tokens of one contig at a time (the one asked for last), decoded once."""

    def __init__(self, genome: Genome):
        self.genome = genome
        self._name: str | None = None
        self._tokens = np.zeros(0, np.uint8)
        self._lock = threading.Lock()

    def get(self, name: str) -> np.ndarray:
        with self._lock:
            if name != self._name:
                self._tokens = self.genome.fetch(name, 0, self.genome.contigs[name])
                self._name = name
            return self._tokens


def chunk_windows(
    genome: Genome,
    contigs: ContigTokens,
    cols: dict[str, np.ndarray],
    length: int,
    *,
    centre_offset: int = 0,
    indel_windows: str = "veff",
    slow_rows: Callable[[np.ndarray], Sequence[Variant]],
) -> WindowBatch:
    """Oriented windows of the rows in ``cols`` (store columns: status, fasta_chrom, chrom,
    pos, ref, alt, flipped). ``slow_rows(idx)`` returns the ``Variant`` rows at ``idx`` for
    the rows the fast path does not take."""
    from veff.pipeline import oriented_windows

    num = len(cols["pos"])
    centre = length // 2 + centre_offset
    if length < 1 or not 0 <= centre < length:
        raise ValueError(f"window length {length} with centre offset {centre_offset}")
    ref = np.full((num, length), N, dtype=np.uint8)
    alt = np.full((num, length), N, dtype=np.uint8)
    ref_len = np.ones(num, dtype=np.int32)
    alt_len = np.ones(num, dtype=np.int32)
    padded = np.zeros(num, dtype=bool)
    ok = cols["status"] == "ok"
    # the store keeps the input's alleles; an ok SNV's alleles are single bases either way
    ra, aa = cols["ref"], cols["alt"]
    snv = ok & np.fromiter((len(r) == 1 and len(a) == 1 for r, a in zip(ra, aa)), bool, num)
    if indel_windows == "variant-scorer":
        snv &= False  # windows at the input's own position and alleles: the general path
    names = np.array([f or "" for f in cols["fasta_chrom"]], dtype=object)
    start0 = cols["pos"].astype(np.int64) - 1 - centre
    fast = np.zeros(num, bool)
    for name in dict.fromkeys(names[snv]):
        if name not in genome.contigs:
            continue  # the general path resolves the input's name, or says why not
        rows = np.flatnonzero(snv & (names == name))
        inside = rows[(start0[rows] >= 0) & (start0[rows] + length <= genome.contigs[name])]
        if not len(inside):
            continue
        tokens = contigs.get(name)
        view = np.lib.stride_tricks.sliding_window_view(tokens, length)
        ref[inside] = view[start0[inside]]
        alt[inside] = ref[inside]
        flipped = cols["flipped"][inside].astype(bool)
        # oriented: REF window = genome with the input's REF, ALT window = the input's ALT
        in_ref = np.array([_TOKEN[r] for r in ra[inside]], np.uint8)
        in_alt = np.array([_TOKEN[a] for a in aa[inside]], np.uint8)
        # a flipped row's ALT window is the genome itself (its base may be an IUPAC code)
        alt[inside[~flipped], centre] = in_alt[~flipped]
        ref[inside[flipped], centre] = in_ref[flipped]
        fast[inside] = True
    rest = np.flatnonzero(~fast & ok)
    if len(rest):
        w = oriented_windows(genome, slow_rows(rest), length, centre_offset=centre_offset,
                             indel_windows=indel_windows)
        ref[rest], alt[rest] = w.ref, w.alt
        ref_len[rest], alt_len[rest], padded[rest] = w.ref_len, w.alt_len, w.padded
    return WindowBatch(ref=ref, alt=alt, ref_len=ref_len, alt_len=alt_len, padded=padded)
