"""Writers for the simulated files: bigWig tracks, fragments, peaks, non-peaks, sites."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyBigWig

from veff.simulate.genome import Element
from veff.simulate.signal import MotifModel, Sites


def write_bigwig(path: Path, names: list[str], tracks: list[np.ndarray], *, skip_zeros: bool) -> None:
    """Per-base bigWig. Dense tracks are one fixed-step block per contig; with ``skip_zeros``
    only non-zero bases get an entry (a missing base reads back as NaN, i.e. no cuts)."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([(n, int(t.size)) for n, t in zip(names, tracks)], maxZooms=0)
    for name, track in zip(names, tracks):
        values = np.ascontiguousarray(track, dtype=np.float64)
        if not skip_zeros:
            bw.addEntries(name, 0, values=values, span=1, step=1)
            continue
        pos = np.nonzero(values)[0]
        if pos.size:
            bw.addEntries(name, pos.tolist(), values=values[pos].tolist(), span=1)
    bw.close()


def pair_cuts(cuts: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair one contig's cuts into fragments (left, right), both 0-based cut positions.

    Sorted cuts are split into groups of even size that follow ``tile``-bp tiles; inside a
    group of 2h cuts the r-th is paired with the (h + r)-th. Requires an even number of cuts.
    """
    pos = np.repeat(np.arange(cuts.size, dtype=np.int64), cuts)
    n = pos.size
    if n % 2:
        raise ValueError("pair_cuts needs an even number of cuts")
    if n == 0:
        return pos, pos
    first = np.searchsorted(pos, np.arange(0, cuts.size, tile))
    bounds = np.unique(np.concatenate([2 * ((first + 1) // 2), [n]]))
    bounds = bounds[bounds <= n]
    starts, ends = bounds[:-1], bounds[1:]
    starts, ends = starts[ends > starts], ends[ends > starts]
    half = (ends - starts) // 2
    group_start = np.repeat(starts, half)
    group_half = np.repeat(half, half)
    r = np.arange(half.sum()) - np.repeat(np.cumsum(half) - half, half)
    left = pos[group_start + r]
    right = pos[group_start + group_half + r]
    return _split_zero_length(left, right)


def _split_zero_length(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-pair fragments whose two cuts share a base (a Tn5 hotspot can hold more than half of
    a group's cuts): (z, z) and the next fragment (a, b) with a, b != z become (z, a), (z, b),
    which keeps the multiset of cuts and so the bigWig unchanged."""
    left, right = left.copy(), right.copy()
    zero = np.nonzero(left == right)[0].tolist()
    touched = set(zero)
    n = left.size
    for k in zero:
        z = int(left[k])
        j = (k + 1) % n
        for _ in range(n):
            if j not in touched and left[j] != z and right[j] != z:
                break
            j = (j + 1) % n
        else:
            raise ValueError("every cut of the contig is at one base; cannot form fragments")
        a, b = int(left[j]), int(right[j])
        left[k], right[k] = min(z, a), max(z, a)
        left[j], right[j] = min(z, b), max(z, b)
        touched.add(j)
    return left, right


def write_fragments(
    path: Path,
    names: list[str],
    fragments: list[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    num_barcodes: int,
) -> int:
    """10x-style fragments (+4/-5 convention): chrom, start, end, barcode, count (=1)."""
    barcodes = [f"SIM{i:05d}-1" for i in range(num_barcodes)]
    total = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0, filename="") as fh:
        for name, (left, right) in zip(names, fragments):
            order = np.lexsort((right, left))
            bc = rng.integers(num_barcodes, size=left.size)
            rows = (
                f"{name}\t{s}\t{e}\t{barcodes[b]}\t1\n"
                for s, e, b in zip(left[order].tolist(), right[order].tolist(), bc.tolist())
            )
            fh.write("".join(rows).encode("ascii"))
            total += left.size
    return total


def narrowpeak_line(chrom: str, start: int, end: int, name: str, score: int, signal: float, summit: int) -> str:
    return f"{chrom}\t{start}\t{end}\t{name}\t{score}\t.\t{signal:.6g}\t-1\t-1\t{summit}"


def peak_intervals(
    elements: list[Element], acc: list[np.ndarray], background: float, reach: int
) -> list[tuple[int, int, int, int]]:
    """(contig, start, end, summit0) per element: A - a_bg >= 10% of its maximum, around the summit."""
    out = []
    for e in elements:
        lo = e.centre - reach
        a = acc[e.contig][lo : e.centre + reach] - background
        summit = int(np.argmax(a))
        keep = a >= 0.1 * a[summit]
        left = summit
        while left > 0 and keep[left - 1]:
            left -= 1
        right = summit
        while right + 1 < a.size and keep[right + 1]:
            right += 1
        out.append((e.contig, lo + left, lo + right + 1, lo + summit))
    return out


def write_peaks(path: Path, names: list[str], peaks, cuts: list[np.ndarray]) -> None:
    signals = [float(cuts[c][s:e].sum()) for c, s, e, _ in peaks]
    top = max(signals) if signals else 1.0
    lines = [
        narrowpeak_line(names[c], s, e, f"peak_{i}", int(round(1000 * sig / top)), sig, summit - s)
        for i, ((c, s, e, summit), sig) in enumerate(zip(peaks, signals))
    ]
    Path(path).write_text("".join(line + "\n" for line in lines))


def choose_nonpeaks(
    rng: np.random.Generator,
    num: int,
    lengths: list[int],
    blocked: list[np.ndarray],
    width: int,
    margin: int,
) -> list[tuple[int, int, int]]:
    """``num`` non-overlapping (contig, start, end) windows whose blocked mask is all False."""
    chosen: list[tuple[int, int, int]] = []
    taken = [np.zeros(n, dtype=bool) for n in lengths]
    for _ in range(1000 * max(num, 1)):
        if len(chosen) == num:
            break
        c = int(rng.integers(len(lengths)))
        start = int(rng.integers(margin, lengths[c] - margin - width))
        if blocked[c][start : start + width].any() or taken[c][start : start + width].any():
            continue
        taken[c][start : start + width] = True
        chosen.append((c, start, start + width))
    if len(chosen) < num:
        raise ValueError(f"only {len(chosen)} of {num} non-peak regions fit; lengthen the contigs")
    return sorted(chosen)


def write_nonpeaks(path: Path, names: list[str], regions, cuts: list[np.ndarray]) -> None:
    lines = [
        narrowpeak_line(names[c], s, e, f"nonpeak_{i}", 0, float(cuts[c][s:e].sum()), (e - s) // 2)
        for i, (c, s, e) in enumerate(regions)
    ]
    Path(path).write_text("".join(line + "\n" for line in lines))


def write_sites(path: Path, names: list[str], sites: list[Sites], models: tuple[MotifModel, ...]) -> None:
    """Every bound site (occupancy >= occ_min): BED6 + log-odds score + occupancy."""
    lines = []
    for c, s in enumerate(sites):
        for start, m, strand, score, occ in zip(s.start, s.motif, s.strand, s.score, s.occ):
            model = models[m]
            lines.append(
                f"{names[c]}\t{start}\t{start + model.width}\t{model.motif.id}\t"
                f"{int(round(1000 * occ))}\t{strand}\t{score:.4f}\t{occ:.6g}\n"
            )
    Path(path).write_text("".join(lines))
