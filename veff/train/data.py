"""Training examples for chromBPNet-style models: regions, signal, contig splits, augmentation.

Every example is stored *extended* by its maximum jitter J on both sides, as uint8 tokens
(``L + 2J``) and per-base counts (``P + 2J``); a batch is cut out of those arrays on the host
with one random offset per example, so jitter and reverse complement never touch the genome
again. Coordinates are 0-based half-open.

Window convention (the same for training and prediction, and chromBPNet's): a region's centre
``c`` is its narrowPeak summit (``start + column 10``) or, without one, ``(start + end) // 2``;
the model input is ``[c - L//2, c - L//2 + L)`` and the output covers
``[c - L//2 + (L-P)//2, ... + P)`` (BPNet crops symmetrically, so output j sits over input
``(L-P)//2 + j``).

Signal: a bigWig of per-base counts (NaN read as 0), or a 10x-style fragments file
(``chrom start end ...``, optionally gzipped; the +4/-5 convention) where every fragment adds
one cut at 0-based ``start`` and one at 0-based ``end``: the + end as written and the - end
(BED ``end - 1``) moved +1 bp, which is chromBPNet's +4/-5 -> +4/-4 shift for fragment input.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from veff.io.genome import Genome
from veff.types import N


class TrainDataError(Exception):
    """An input file for training is missing, malformed or leaves nothing to train on."""


# ------------------------------------------------------------------------- regions


@dataclasses.dataclass(frozen=True, kw_only=True)
class Regions:
    """Regions with a centre each (the summit when the BED has one)."""

    chrom: np.ndarray  # (N,) str
    start0: np.ndarray  # (N,) int64
    end0: np.ndarray  # (N,) int64
    centre0: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.chrom)

    def subset(self, mask: np.ndarray) -> Regions:
        return Regions(
            chrom=self.chrom[mask], start0=self.start0[mask], end0=self.end0[mask],
            centre0=self.centre0[mask],
        )


def read_regions(path: str | os.PathLike) -> Regions:
    """BED3+ or narrowPeak (column 10 = summit offset from start, -1 = none)."""
    path = Path(path)
    if not path.is_file():
        raise TrainDataError(f"regions file not found: {path}")
    chroms, starts, ends, centres = [], [], [], []
    with _open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            try:
                s, e = int(f[1]), int(f[2])
                summit = int(f[9]) if len(f) >= 10 else -1
            except (IndexError, ValueError):
                raise TrainDataError(f"{path}:{n}: not a BED/narrowPeak line: {line.strip()!r}") from None
            if e <= s or s < 0:
                raise TrainDataError(f"{path}:{n}: empty or negative interval {s}-{e}")
            chroms.append(f[0])
            starts.append(s)
            ends.append(e)
            centres.append(s + summit if summit >= 0 else (s + e) // 2)
    return Regions(
        chrom=np.asarray(chroms, dtype=object), start0=np.asarray(starts, np.int64),
        end0=np.asarray(ends, np.int64), centre0=np.asarray(centres, np.int64),
    )


def _open_text(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gz else open(path)


def input_start(centre0, input_len: int):
    return centre0 - input_len // 2


def output_start(centre0, input_len: int, output_len: int):
    return centre0 - input_len // 2 + (input_len - output_len) // 2


# ------------------------------------------------------------------------- signal


class Signal:
    """Per-base counts over any interval: ``counts(chrom, start0, end0) -> float32``."""

    def counts(self, chrom: str, start0: int, end0: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class BigWigSignal(Signal):
    def __init__(self, path: Path):
        import pyBigWig

        self._bw = pyBigWig.open(str(path))
        if self._bw is None or not self._bw.isBigWig():
            raise TrainDataError(f"{path}: not a bigWig file")
        self._sizes = self._bw.chroms()

    def counts(self, chrom, start0, end0):
        out = np.zeros(end0 - start0, np.float32)
        size = self._sizes.get(chrom)
        s, e = max(start0, 0), min(end0, size or 0)
        if size is None or s >= e:
            return out
        v = np.asarray(self._bw.values(chrom, s, e, numpy=True), np.float32)
        out[s - start0 : e - start0] = np.nan_to_num(v, nan=0.0)
        return out

    def close(self):
        self._bw.close()


class FragmentSignal(Signal):
    """Sorted cut positions per contig; a window's counts are one bincount."""

    def __init__(self, path: Path):
        buf: dict[str, list[int]] = {}
        with _open_text(path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                f = line.split("\t", 3)
                try:
                    s, e = int(f[1]), int(f[2])
                except (IndexError, ValueError):
                    raise TrainDataError(f"{path}:{n}: not a fragments line: {line.strip()!r}") from None
                lst = buf.setdefault(f[0], [])
                lst.append(s)
                lst.append(e)  # -5 -> -4: the - strand cut moves to BED end
        self._cuts = {c: np.sort(np.asarray(v, np.int64)) for c, v in buf.items()}

    def counts(self, chrom, start0, end0):
        pos = self._cuts.get(chrom)
        if pos is None:
            return np.zeros(end0 - start0, np.float32)
        lo, hi = np.searchsorted(pos, [start0, end0])
        return np.bincount(pos[lo:hi] - start0, minlength=end0 - start0).astype(np.float32)


def open_signal(path: str | os.PathLike) -> Signal:
    """bigWig (by magic number) or fragments (anything else, plain or gzipped)."""
    path = Path(path)
    if not path.is_file():
        raise TrainDataError(f"signal file not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"\x26\xfc\x8f\x88", b"\x88\x8f\xfc\x26"):  # bigWig, either byte order
        return BigWigSignal(path)
    return FragmentSignal(path)


# ------------------------------------------------------------------------- examples


@dataclasses.dataclass(frozen=True, kw_only=True)
class Examples:
    """Extended windows: tokens (N, L + 2J) uint8, counts (N, P + 2J) float32."""

    tokens: np.ndarray
    counts: np.ndarray
    regions: Regions
    max_jitter: int

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def total_counts(self) -> np.ndarray:
        """Counts over the un-jittered output window, (N,)."""
        j = self.max_jitter
        return self.counts[:, j : self.counts.shape[1] - j].sum(axis=1)

    def subset(self, mask: np.ndarray) -> Examples:
        return Examples(
            tokens=self.tokens[mask], counts=self.counts[mask], regions=self.regions.subset(mask),
            max_jitter=self.max_jitter,
        )


def concat_examples(a: Examples, b: Examples) -> Examples:
    if a.max_jitter != b.max_jitter:
        raise ValueError("concat_examples: examples were extended by different jitters")
    regions = Regions(**{
        f.name: np.concatenate([getattr(a.regions, f.name), getattr(b.regions, f.name)])
        for f in dataclasses.fields(Regions)
    })
    return Examples(
        tokens=np.concatenate([a.tokens, b.tokens]), counts=np.concatenate([a.counts, b.counts]),
        regions=regions, max_jitter=a.max_jitter,
    )


def load_examples(
    genome: Genome, signal: Signal, regions: Regions, *, input_len: int, output_len: int,
    max_jitter: int,
) -> Examples:
    """Fetch every region's extended window (regions on contigs absent from the FASTA are errors)."""
    missing = sorted({c for c in regions.chrom if genome.resolve(c) is None})
    if missing:
        raise TrainDataError(f"regions on contigs not in {genome.path}: {', '.join(missing[:5])}")
    j = max_jitter
    n = len(regions)
    tokens = np.empty((n, input_len + 2 * j), np.uint8)
    counts = np.empty((n, output_len + 2 * j), np.float32)
    for i in range(n):
        chrom, c = regions.chrom[i], int(regions.centre0[i])
        s = input_start(c, input_len) - j
        tokens[i] = genome.fetch(chrom, s, s + input_len + 2 * j)
        o = output_start(c, input_len, output_len) - j
        counts[i] = signal.counts(genome.resolve(chrom), o, o + output_len + 2 * j)
    return Examples(tokens=tokens, counts=counts, regions=regions, max_jitter=j)


def split_by_contig(
    regions: Regions, *, valid_contigs: tuple[str, ...], test_contigs: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Boolean masks {"train", "valid", "test"}; train is every contig not held out."""
    overlap = set(valid_contigs) & set(test_contigs)
    if overlap:
        raise TrainDataError(f"contigs both in valid and test: {sorted(overlap)}")
    valid = np.isin(regions.chrom, list(valid_contigs))
    test = np.isin(regions.chrom, list(test_contigs))
    return {"train": ~(valid | test), "valid": valid, "test": test}


def bias_threshold_keep(
    peak_counts: np.ndarray, nonpeak_counts: np.ndarray, factor: float
) -> np.ndarray:
    """chromBPNet's bias-training filter: keep non-peaks with counts at most
    ``quantile(peak_counts, 0.01) * factor`` (the rest hold real accessibility)."""
    if len(peak_counts) == 0:
        raise TrainDataError("bias-threshold filter needs at least one peak")
    threshold = np.quantile(peak_counts, 0.01) * factor
    return nonpeak_counts <= threshold


def outlier_keep(counts: np.ndarray, *, low: float = 0.0001, high: float = 0.9999) -> np.ndarray:
    """chromBPNet drops peaks with total counts outside [quantile(low), quantile(high)]."""
    lo, hi = np.quantile(counts, [low, high])
    return (counts >= lo) & (counts <= hi)


# ------------------------------------------------------------------------- batches

_COMPLEMENT = np.array([3, 2, 1, 0, N], np.uint8)  # A<->T, C<->G, N stays N


def reverse_complement(tokens: np.ndarray) -> np.ndarray:
    """(..., L) uint8 tokens -> reverse complement along the last axis."""
    return _COMPLEMENT[tokens[..., ::-1]]


def make_batch(
    ex: Examples, idx: np.ndarray, rng: np.random.Generator | None, *, input_len: int,
    output_len: int, jitter: int | np.ndarray, rc_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut examples ``idx`` at a random offset in [-jitter, jitter] (one int, or one per
    example) and reverse-complement a ``rc_fraction`` of them (sequence AND counts flip
    together); ``rng=None`` gives the centred, forward windows.
    Returns tokens (B, L) uint8 and counts (B, P) float32."""
    b = len(idx)
    jitter = np.broadcast_to(np.asarray(jitter, np.int64), (b,))
    if b and jitter.max() > ex.max_jitter:
        raise ValueError(f"jitter {jitter.max()} exceeds the examples' max_jitter {ex.max_jitter}")
    if rng is None:
        offsets = np.full(b, ex.max_jitter)
        flips = np.zeros(b, bool)
    else:
        offsets = ex.max_jitter + rng.integers(-jitter, jitter + 1)
        flips = rng.random(b) < rc_fraction
    cols_t = offsets[:, None] + np.arange(input_len)[None, :]
    cols_c = offsets[:, None] + np.arange(output_len)[None, :]
    tokens = np.take_along_axis(ex.tokens[idx], cols_t, axis=1)
    counts = np.take_along_axis(ex.counts[idx], cols_c, axis=1)
    tokens[flips] = reverse_complement(tokens[flips])
    counts[flips] = counts[flips, ::-1]
    return tokens, counts


# ------------------------------------------------------------------------- provenance


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = [
    "Examples", "Regions", "Signal", "TrainDataError", "bias_threshold_keep", "concat_examples",
    "load_examples",
    "make_batch", "open_signal", "outlier_keep", "read_regions", "reverse_complement",
    "sha256_file", "split_by_contig", "input_start", "output_start",
]
