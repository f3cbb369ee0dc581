"""Producer -> device -> writer: the whole `veff score` job over a store.

Window building for the next chunk runs in a background thread while the device scores
the current one; JAX dispatch is asynchronous, so host and device work overlap.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veff import __version__
from veff.engine import ModelScorer, ScoreOptions
from veff.io.genome import Genome
from veff.io.vcf import read_variants
from veff.io.windows import WindowBatch, build_windows
from veff.models.base import ModelHandle
from veff.store import Store, StoreError
from veff.types import Status, Variant


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSpec:
    variants: str
    genome: str
    models: tuple[str, ...]
    out: str
    options: ScoreOptions = ScoreOptions()
    chunk_size: int = 1024
    resume: bool = False
    overwrite: bool = False
    ref_mismatch: str = "skip"
    max_indel_len: int = 50
    peaks: str | None = None

    def __post_init__(self):
        if not self.models:
            raise ValueError("at least one --model is needed")
        if self.chunk_size < 1:
            raise ValueError("chunk size must be ≥ 1")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dataclasses.asdict(self.options)
        d["models"] = list(self.models)
        return d


@dataclasses.dataclass(frozen=True)
class RunResult:
    out: Path
    num_variants: int
    num_ok: int
    chunks_scored: int
    seconds: float


ProgressFn = Callable[[int, int], None]  # (rows done in this call, rows total)


def load_handles(specs: Sequence[str]) -> list[ModelHandle]:
    from veff.models.registry import load_model

    handles = [load_model(s) for s in specs]
    names = [h.name for h in handles]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StoreError(f"two --model arguments share the name {dupes[0]!r}; rename one checkpoint")
    return handles


def _model_attrs(h: ModelHandle) -> dict[str, Any]:
    return {
        "arch": h.arch,
        "checkpoint_sha256": h.sha256,
        "window_len": h.window_len,
        "output_len": h.output_len,
        "bin_size": h.bin_size,
        "num_folds": h.num_folds,
        "kind": h.kind,
    }


def open_or_create(spec: RunSpec, genome: Genome, scorers: list[ModelScorer]) -> Store:
    out = Path(spec.out)
    if spec.resume and out.exists():
        store = Store.open(out)
        stored = [store.root["scores"][m].attrs["checkpoint_sha256"] for m in store.model_names()]
        wanted = [s.handle.sha256 for s in scorers]
        if stored != wanted:
            raise StoreError(
                f"{out} was started with other models; resume with the same --model list"
            )
        return store
    variants = read_variants(
        spec.variants,
        genome,
        ref_mismatch=spec.ref_mismatch,
        max_indel_len=spec.max_indel_len,
    )
    store = Store.create(
        out,
        variants,
        chunk_size=spec.chunk_size,
        run_config={**spec.to_json(), "veff_version": __version__},
        overwrite=spec.overwrite,
    )
    for s in scorers:
        store.add_model(
            s.handle.name,
            tracks=s.track_names,
            stats=s.formulas,
            attrs=_model_attrs(s.handle),
        )
    return store


def _windows_for_chunk(
    store: Store, genome: Genome, chunk: int, lengths: list[int]
) -> tuple[int, list[Variant], dict[int, WindowBatch]]:
    start, stop = store.chunk_range(chunk)
    variants = store.read_variants(start, stop)
    return start, variants, {L: build_windows(genome, variants, L) for L in set(lengths)}


def score_chunks(
    store: Store,
    genome: Genome,
    scorers: list[ModelScorer],
    chunks: Sequence[int],
    progress: ProgressFn | None = None,
) -> None:
    """Score ``chunks`` for every model, writing each chunk then marking it done."""
    lengths = [s.handle.window_len for s in scorers]
    with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="veff-windows") as pool:
        pending = [pool.submit(_windows_for_chunk, store, genome, c, lengths) for c in chunks[:2]]
        for i, chunk in enumerate(chunks):
            start, variants, windows = pending[i].result()
            if i + 2 < len(chunks):
                pending.append(pool.submit(_windows_for_chunk, store, genome, chunks[i + 2], lengths))
            ok = np.array([v.status is Status.OK for v in variants])
            for s in scorers:
                wb = windows[s.handle.window_len]
                scores = s.score(wb)
                for values in scores.values():
                    values[~ok] = np.nan
                store.write_scores(s.handle.name, start, scores, wb.padded & ok)
            store.mark_done(chunk)
            if progress is not None:
                progress(len(variants), store.num_variants)


def run(spec: RunSpec, progress: ProgressFn | None = None) -> RunResult:
    t0 = time.perf_counter()
    genome = Genome(spec.genome)
    handles = load_handles(spec.models)
    scorers = [ModelScorer(h, spec.options) for h in handles]
    store = open_or_create(spec, genome, scorers)
    try:
        todo = store.pending_chunks()
        score_chunks(store, genome, scorers, todo, progress)
        store.finalize()
        status = store.root["variants"]["status"][:]
        num_ok = int(np.sum(status == "ok"))
        return RunResult(
            out=Path(spec.out),
            num_variants=store.num_variants,
            num_ok=num_ok,
            chunks_scored=len(todo),
            seconds=time.perf_counter() - t0,
        )
    finally:
        store.close()


def default_chunk_size(batch_size: int) -> int:
    """A chunk is the unit of resume: big enough to keep the device busy, small enough that
    a kill loses little. Rounded to a whole number of batches."""
    target = int(os.environ.get("VEFF_CHUNK", "1024"))
    return max(batch_size, (target // batch_size) * batch_size)
