"""Scoring a store's chunks: the reader thread (columns, windows), the device steps and the
writer thread (scores, then the chunk's done marker). ``veff.pipeline`` creates the store
and calls :func:`score_chunks`; the names are re-exported there.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np

from veff import hostprof
from veff import store as _store
from veff.calibration import pvalue_stats, pvalues
from veff.engine import ModelScorer
from veff.io.genome import Genome
from veff.io.windows import WindowBatch, build_windows
from veff.signals import Interrupted, StopRequest
from veff.store import Store
from veff.types import Variant

ProgressFn = Callable[[int, int], None]  # (rows done in this call, rows total)


def load_nulls(store: Store, scorer: ModelScorer) -> dict[str, np.ndarray] | None:
    if scorer.handle.kind != "profile":
        return None
    found = {}
    for stat in pvalue_stats(scorer.stats):
        arr = store.read_model_array(scorer.handle.name, f"null_{stat}")
        if arr is not None:
            found[stat] = arr
    return found or None


class _ChunkReader:
    """Reader-thread state: the columns of the chunk being read (a chunk is read once and
    cut into blocks) and the current contig's tokens (veff.io.fast_windows)."""

    def __init__(self, store: Store, genome: Genome, lengths: list[tuple[int, int, str]]):
        from veff.io.fast_windows import ContigTokens

        self.store, self.genome, self.lengths = store, genome, sorted(set(lengths))
        self.contigs = ContigTokens(genome)
        self._chunk: int | None = None
        self._cols: dict[str, np.ndarray] = {}

    def block(self, chunk: int, a: int, b: int) -> tuple[np.ndarray, dict[tuple, WindowBatch]]:
        """The ok mask and the windows of rows ``[a, b)`` (store rows) of ``chunk``."""
        from veff.io.fast_windows import chunk_windows

        start, stop = self.store.chunk_range(chunk)
        if chunk != self._chunk:
            with hostprof.phase("reader: read variant rows"):
                self._cols = self.store.read_columns(start, stop)
                self._chunk = chunk
        cols = {k: v[a - start : b - start] for k, v in self._cols.items()}
        with hostprof.phase("reader: build windows"):
            windows = {
                (L, off, mode): chunk_windows(
                    self.genome, self.contigs, cols, L, centre_offset=off, indel_windows=mode,
                    slow_rows=lambda idx: _store.variants_from_columns(cols, idx))
                for L, off, mode in self.lengths
            }
        return cols["status"] == "ok", windows


def _blocks(store: Store, chunks: Sequence[int], rows: int) -> list[tuple[int, int, int, bool]]:
    """(chunk, first row, stop row, last block of its chunk?) for every block of ``chunks``."""
    out = []
    for c in chunks:
        start, stop = store.chunk_range(c)
        for a in range(start, stop, rows):
            out.append((c, a, min(a + rows, stop), a + rows >= stop))
    return out


def block_rows(window_len: int) -> int:
    """Rows the device scores at a time within a chunk (windows of long-context models are
    large: 1024 rows of 196,608 bp are 400 MB of tokens)."""
    env = os.environ.get("VEFF_BLOCK")
    if env:
        return max(1, int(env))
    return 4096 if window_len <= 16_384 else 1024


def oriented_windows(
    genome: Genome, variants: Sequence[Variant], length: int, *, centre_offset: int = 0,
    indel_windows: str = "veff",
) -> WindowBatch:
    """Windows with REF and ALT as the input gave them: a row swapped by ``--ref-mismatch
    flip`` (an SNV whose input REF is not the genome base) scores the input's REF window
    (the genome with that base substituted) against the input's ALT window (the genome), so
    every statistic — signed, unsigned, per allele — refers to the user's alleles.
    ``indel_windows="variant-scorer"``: windows at the input's own position and alleles
    (``veff.io.windows.as_input``)."""
    if indel_windows == "variant-scorer":
        from veff.io.windows import as_input

        variants = [as_input(v) for v in variants]
    w = build_windows(genome, variants, length, centre_offset=centre_offset)
    flipped = np.array([v.flipped for v in variants], dtype=bool)
    if not flipped.any():
        return w
    ref, alt = w.ref.copy(), w.alt.copy()
    ref[flipped], alt[flipped] = w.alt[flipped], w.ref[flipped]
    return dataclasses.replace(w, ref=ref, alt=alt)


def score_chunks(
    store: Store,
    genome: Genome,
    scorers: list[ModelScorer],
    chunks: Sequence[int],
    progress: ProgressFn | None = None,
    stop: StopRequest | None = None,
    gtf: str | None = None,
) -> None:
    """Score ``chunks`` for every model, writing each chunk then marking it done.

    Three stages overlap: a thread builds the windows two chunks ahead, the device scores
    the current chunk, and a writer thread writes the previous chunk's regions and then its
    done marker (a marker is only ever written after all of its chunk's regions).

    ``stop`` (see veff.signals): once set, no new chunk is started; the ones scored are
    written and marked done, then :class:`~veff.signals.Interrupted` is raised."""
    lengths = [(s.handle.window_len, s.options.centre_offset, s.options.indel_windows) for s in scorers]
    nulls = {s.handle.name: load_nulls(store, s) for s in scorers}
    from veff import genes_store

    gene_index = genes_store.store_index(store, gtf)

    def write(start: int, chunk: int, results: list[tuple[str, dict, np.ndarray]], rows: int) -> None:
        for name, scores, padded in results:
            gene_part = scores.pop("_genes", None)
            if gene_part is not None:
                gene_part[0].write(store, name, gene_part[1])
            with hostprof.phase("writer: write scores"):
                store.write_scores(name, start, scores, padded)
        with hostprof.phase("writer: done marker"):
            store.mark_done(chunk)
        if progress is not None:
            progress(rows, store.num_variants)

    # A chunk (the unit of resume and of the store's Zarr chunks) may be large; the device
    # scores it in blocks, and the chunk is written once all of its blocks are scored.
    whole = gene_index is not None  # the gene table is laid out by chunk
    rows = max(store.chunk_size, 1) if whole else block_rows(max(L for L, _, _ in lengths))
    units = _blocks(store, chunks, rows)
    reader_state = _ChunkReader(store, genome, lengths)
    with (
        cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="veff-windows") as reader,
        cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="veff-writer") as writer,
    ):
        pending = [reader.submit(reader_state.block, *u[:3]) for u in units[:2]]
        written: cf.Future | None = None
        started = 0
        parts: list[list[tuple[str, dict, np.ndarray]]] = []
        for i, (chunk, a, b, last) in enumerate(units):
            if a == store.chunk_range(chunk)[0]:
                if stop is not None and stop.is_set():
                    break
                started += 1
            with hostprof.phase("main: wait for windows"):
                ok, windows = pending[i].result()
            if i + 2 < len(units):
                pending.append(reader.submit(reader_state.block, *units[i + 2][:3]))
            pending[i] = None  # the windows are released once scored
            results = []
            for s in scorers:
                wb = windows[(s.handle.window_len, s.options.centre_offset, s.options.indel_windows)]
                cg = None
                if gene_index is not None and genes_store.has_genes(store, s.handle.name):
                    cg = genes_store.ChunkGenes(store, s, gene_index, chunk, s.options.indel_windows)
                with hostprof.phase("main: device step (score)"):
                    scores = s.score(wb, None if cg is None else cg.gene_rows)
                if cg is not None:
                    scores["_genes"] = (cg, {k: scores.pop(k) for k in list(scores)
                                             if k.startswith(genes_store.PREFIX)})
                if nulls[s.handle.name] is not None:
                    scores.update(pvalues(scores, nulls[s.handle.name]))
                for k, values in scores.items():
                    if k != "_genes":
                        values[~ok] = np.nan
                results.append((s.handle.name, scores, wb.padded & ok))
            del windows
            parts.append(results)
            if not last:
                continue
            results, parts = _join_blocks(parts), []
            if written is not None:
                with hostprof.phase("main: wait for writer"):
                    written.result()  # at most one chunk in flight; surfaces write errors
            start, stop_row = store.chunk_range(chunk)
            written = writer.submit(write, start, chunk, results, stop_row - start)
        if written is not None:
            written.result()
    if started < len(chunks):
        raise Interrupted(stop.signum, started, len(chunks))


def _join_blocks(parts: list[list[tuple[str, dict, np.ndarray]]]) -> list[tuple[str, dict, np.ndarray]]:
    """One chunk's results from those of its blocks (same models, same statistics)."""
    if len(parts) == 1:
        return parts[0]
    out = []
    for m, (name, scores, _) in enumerate(parts[0]):
        joined = {k: np.concatenate([p[m][1][k] for p in parts]) for k in scores}
        out.append((name, joined, np.concatenate([p[m][2] for p in parts])))
    return out
