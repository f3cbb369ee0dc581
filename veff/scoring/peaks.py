"""Peak sets for the active-allele quantile (variant-scorer's ``--peaks``).

The peak score is the model's RC-averaged predicted counts on a window around each peak's
summit; the sorted scores are what profile.allele_quantile compares variant counts against.
This module reads the peaks and says where their windows are; fetching the sequence and
running the model belong to the engine.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True, kw_only=True)
class Peaks:
    """Peak intervals, 0-based half-open, with the summit as an offset from ``start0``
    (narrowPeak column 10). Arrays are (num_peaks,)."""

    chrom: np.ndarray  # object array of str
    start0: np.ndarray  # int64
    end0: np.ndarray  # int64
    summit: np.ndarray  # int64, offset from start0

    def __post_init__(self) -> None:
        n = len(self.chrom)
        for name in ("start0", "end0", "summit"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Peaks: {name} has {len(getattr(self, name))} rows, chrom {n}")

    def __len__(self) -> int:
        return len(self.chrom)

    @property
    def summit0(self) -> np.ndarray:
        """Absolute 0-based summit position."""
        return self.start0 + self.summit


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt")
    return open(path)


def read_peaks(path: str | Path) -> Peaks:
    """Read a narrowPeak or BED file (>= 3 columns; ``track``/``browser``/``#`` lines skipped).

    Summit: column 10 when the line has it, else (end - start) // 2 as variant-scorer does for
    files with fewer than 10 columns; a summit of -1 (narrowPeak's "no summit") also falls
    back to the midpoint (upstream would use -1 literally). Rows are de-duplicated on
    (chrom, start, end, summit), keeping the first occurrence in file order; duplicates give
    identical windows and scores, so which one is kept does not change any score.
    """
    path = Path(path)
    chroms: list[str] = []
    rows: list[tuple[int, int, int]] = []
    seen: set[tuple[str, int, int, int]] = set()
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                raise ValueError(f"{path}:{lineno}: a peak needs at least 3 tab-separated columns")
            try:
                start, end = int(fields[1]), int(fields[2])
                summit = int(fields[9]) if len(fields) >= 10 else -1
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: non-integer coordinate ({err})") from None
            if start < 0 or end <= start:
                raise ValueError(f"{path}:{lineno}: bad interval {start}-{end}")
            if summit < 0:
                summit = (end - start) // 2
            key = (fields[0], start, end, summit)
            if key in seen:
                continue
            seen.add(key)
            chroms.append(fields[0])
            rows.append((start, end, summit))
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return Peaks(
        chrom=np.array(chroms, dtype=object),
        start0=table[:, 0],
        end0=table[:, 1],
        summit=table[:, 2],
    )


def peak_window_starts(
    peaks: Peaks, length: int, variant_scorer_quirk: bool = True
) -> np.ndarray:
    """0-based start of each peak's model window of ``length`` bases, (num_peaks,) int64.

    Without the quirk the summit sits at index length // 2 (chromBPNet's training window
    [summit - length//2, summit - length//2 + length)). variant-scorer's PeakGenerator calls
    pyfaidx ``get_seq(chrom, summit - length//2, summit + length//2 - 1)``, which is 1-based
    inclusive, i.e. 0-based [summit - length//2 - 1, summit + length//2 - 1): one base to the
    left. The quirk (default, for parity) reproduces that.
    """
    if length < 1:
        raise ValueError(f"peak_window_starts: length must be positive, got {length}")
    return peaks.summit0 - length // 2 - (1 if variant_scorer_quirk else 0)


def peaks_in_bounds(peaks: Peaks, chrom_sizes: dict[str, int], length: int) -> np.ndarray:
    """variant-scorer's get_valid_peaks: a peak is kept when its contig is known and
    summit - length//2 > 0 and summit + length//2 <= contig size. (num_peaks,) bool."""
    half = length // 2
    sizes = np.array([chrom_sizes.get(c, -1) for c in peaks.chrom], dtype=np.int64)
    summit = peaks.summit0
    return (sizes >= 0) & (summit - half > 0) & (summit + half <= sizes)
