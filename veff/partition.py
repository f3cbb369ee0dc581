"""Scheduler-agnostic batch scoring: ``plan`` / ``run-partition I`` / ``finalize``.

``plan`` creates the store (every variant, every model's empty arrays, the run
configuration in the root attrs) and ``_veff/plan.json``: P contiguous ranges of the
store's chunks. ``run-partition I`` needs nothing but the store: it reads the genome, the
models and the options from the attrs, scores the chunks of partition I that have no done
marker, and can be run any number of times, in any order, on any machine that sees the
store. ``finalize`` checks that every partition is done, consolidates the metadata and
writes the consensus when configured.

Locking: the whole-store writers (``veff score``, ``plan``, ``finalize``) hold the exclusive
``.veff.lock`` (``Store.lock``); partition writers hold it *shared*, so any number of them
may write their disjoint chunks at once while a whole-store writer is kept out (and they
are kept out while one runs). Each chunk of variants is exactly one Zarr chunk of every
array, and Zarr writes each chunk file under a temporary name and renames it, so disjoint
writers never touch the same file and a killed writer never leaves a torn one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zarr

from veff.engine import ModelScorer
from veff.io.genome import Genome
from veff.io.vcf_source import is_stream
from veff.pipeline import (
    ProgressFn,
    RunSpec,
    build_scorers,
    load_handles,
    open_or_create,
    score_chunks,
    scorers_for_store,
    write_run_consensus,
)
from veff.signals import Interrupted, StopRequest
from veff.store import STARTED, UNSTARTED, Store, StoreError, take_lock

PLAN_FILE = "plan.json"


# ---------------------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True, kw_only=True)
class Partition:
    index: int
    first_chunk: int
    stop_chunk: int  # exclusive
    start: int  # first variant row (0-based)
    stop: int  # one past the last variant row

    @property
    def chunks(self) -> range:
        return range(self.first_chunk, self.stop_chunk)

    @property
    def num_variants(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        chunks = f"chunks {self.first_chunk}–{self.stop_chunk - 1}" if len(self.chunks) else "no chunks"
        return f"partition {self.index} ({chunks}, variants[{self.start}:{self.stop}])"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    partitions: tuple[Partition, ...]

    def __getitem__(self, index: int) -> Partition:
        if not 0 <= index < len(self.partitions):
            raise StoreError(
                f"no partition {index}: the plan has {len(self.partitions)} "
                f"(0–{len(self.partitions) - 1})"
            )
        return self.partitions[index]

    def to_json(self) -> dict[str, Any]:
        return {"partitions": [[p.first_chunk, p.stop_chunk] for p in self.partitions]}


def make_plan(store: Store, num_partitions: int) -> Plan:
    """Split the store's chunks into ``num_partitions`` contiguous ranges whose sizes differ
    by at most one chunk. More partitions than chunks leaves the extra ones empty (always
    done), so a job array sized by the user never points at a partition that is missing."""
    if num_partitions < 1:
        raise ValueError(f"--partitions must be ≥ 1, got {num_partitions}")
    n = store.num_chunks
    bounds = [i * n // num_partitions for i in range(num_partitions + 1)]
    return Plan(
        partitions=tuple(_partition(store, i, a, b) for i, (a, b) in enumerate(zip(bounds, bounds[1:])))
    )


def _partition(store: Store, index: int, first: int, stop: int) -> Partition:
    start = min(first * store.chunk_size, store.num_variants)
    end = min(stop * store.chunk_size, store.num_variants)
    return Partition(index=index, first_chunk=first, stop_chunk=stop, start=start, stop=end)


def write_plan(store: Store, plan: Plan) -> None:
    path = store.path / "_veff" / PLAN_FILE
    tmp = path.with_suffix(".wip")
    tmp.write_text(json.dumps(plan.to_json(), indent=1))
    tmp.replace(path)


def read_plan(store: Store) -> Plan:
    path = store.path / "_veff" / PLAN_FILE
    if not path.is_file():
        raise StoreError(f"{store.path} has no partition plan; create the store with `veff plan`")
    doc = json.loads(path.read_text())
    return Plan(
        partitions=tuple(_partition(store, i, a, b) for i, (a, b) in enumerate(doc["partitions"]))
    )


# ---------------------------------------------------------------------------- run config
def absolute_spec(spec: RunSpec) -> RunSpec:
    """Paths made absolute so that a process started elsewhere (a worker, an array task)
    finds the same files. A model given by registered name stays a name."""

    def absolute(p: str | None) -> str | None:
        return None if p is None else str(Path(p).expanduser().resolve())

    models = tuple(absolute(m) if Path(m).expanduser().is_dir() else m for m in spec.models)
    return dataclasses.replace(
        spec,
        # '-' and pipes (/dev/stdin) are read once, here: resolving would lose them
        variants=spec.variants if is_stream(spec.variants) else absolute(spec.variants),
        genome=absolute(spec.genome),
        models=models,
        out=absolute(spec.out),
        peaks=absolute(spec.peaks),
    )


def spec_from_store(store: Store) -> RunSpec:
    """The RunSpec a store was created with (its ``run`` attrs), pointed at its own path."""
    from veff.settings import from_attrs

    return from_attrs(store.root.attrs["run"], out=str(store.path), resume=True, overwrite=False)


def load_scorers(store: Store, spec: RunSpec) -> tuple[Genome, list[ModelScorer]]:
    """The genome and models the store was planned with, checked against its fingerprint
    (files changed on disk since ``veff plan`` are refused)."""
    from veff.fingerprint import PARTITION_KEYS, check, partial_fingerprint

    genome = Genome(spec.genome)
    handles = load_handles(spec.models)
    now = partial_fingerprint(PARTITION_KEYS, genome=genome, handles=handles)
    check(store.root.attrs.get("fingerprint"), now, command="run-partition", path=store.path,
          hint=_CHANGED_HINT, keys=PARTITION_KEYS)
    return genome, scorers_for_store(store, spec, genome, handles)


_CHANGED_HINT = ("its input files changed on disk since `veff plan`: put the original files back, "
                 "or plan the run again with --overwrite")


def _check_finalize_inputs(store: Store, spec: RunSpec) -> None:
    """The genome and groups file the consensus reads must be the planned ones (a file
    that is gone is left to the consensus to ask for)."""
    from veff.fingerprint import FINALIZE_KEYS, check, partial_fingerprint

    keys = [k for k, f in zip(FINALIZE_KEYS, (spec.genome, spec.groups)) if f and Path(f).is_file()]
    if not keys:
        return
    genome = Genome(spec.genome) if "--genome" in keys else None
    try:
        now = partial_fingerprint(keys, genome=genome, groups=spec.groups)
    finally:
        if genome is not None:
            genome.close()
    check(store.root.attrs.get("fingerprint"), now, command="finalize", path=store.path,
          hint=_CHANGED_HINT, keys=keys)


# ---------------------------------------------------------------------------- opening
def open_unlocked(path: str | os.PathLike) -> Store:
    """The store opened for region writes without taking ``.veff.lock``: for a worker whose
    coordinator holds the exclusive lock for it (``veff score --cluster``)."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: not a veff store (no zarr.json)")
    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    if "veff_version" not in root.attrs:
        raise StoreError(f"{path}: a Zarr store, but not one written by veff")
    return Store(path, root)


@contextlib.contextmanager
def shared_writer(path: str | os.PathLike) -> Iterator[Store]:
    """The store opened by one of several partition writers: ``.veff.lock`` held shared."""
    store = open_unlocked(path)
    fd = take_lock(store.path, shared=True, busy="is being written as a whole by {holder}; "
                   "wait for it to finish or stop it before running partitions")
    try:
        yield store
    finally:
        os.close(fd)  # releases the flock


# ---------------------------------------------------------------------------- commands
@dataclasses.dataclass(frozen=True)
class PartitionResult:
    partition: Partition
    chunks_scored: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class FinalizeResult:
    out: Path
    num_variants: int
    num_partitions: int
    consensus_groups: tuple[str, ...]  # empty: not configured, or fewer than 2 models


def plan(spec: RunSpec, num_partitions: int) -> Plan:
    """Create the store for ``spec`` with every variant and model, and its partition plan."""
    spec = absolute_spec(spec)
    if Store.kind(spec.out) in (STARTED, UNSTARTED) and not spec.overwrite:
        raise StoreError(
            f"{spec.out} already exists; run its partitions with `veff run-partition`, "
            "or pass --overwrite to plan it again"
        )
    genome = Genome(spec.genome)
    scorers = build_scorers(spec, genome, load_handles(spec.models))
    store = open_or_create(dataclasses.replace(spec, resume=False), genome, scorers)
    try:
        result = make_plan(store, num_partitions)
        write_plan(store, result)
        return result
    finally:
        store.close()


def run_partition(
    path: str | os.PathLike, index: int, progress: ProgressFn | None = None,
    stop: StopRequest | None = None,
) -> PartitionResult:
    """Score the chunks of partition ``index`` that are not done yet (safe to rerun).
    ``stop``: as for ``veff.pipeline.score_chunks``."""
    t0 = time.perf_counter()
    with shared_writer(path) as store:
        part = read_plan(store)[index]
        todo = [c for c in part.chunks if not store.is_done(c)]
        if todo:
            genome, scorers = load_scorers(store, spec_from_store(store))
            # score_chunks reports against the whole store; the bar is for this partition.
            update = None if progress is None else (lambda n, _total: progress(n, part.num_variants))
            try:
                score_chunks(store, genome, scorers, todo, update, stop)
            except Interrupted as exc:
                exc.rerun = "run the same command again to finish this partition"
                raise
        return PartitionResult(part, len(todo), time.perf_counter() - t0)


def missing_partitions(store: Store, plan_: Plan) -> list[Partition]:
    return [p for p in plan_.partitions if any(not store.is_done(c) for c in p.chunks)]


def finalize(path: str | os.PathLike, *, consensus: bool | None = None) -> FinalizeResult:
    """Check every partition is done and consolidate the metadata; then, as ``veff score``
    does, write the consensus when the run asked for it (``consensus`` overrides) and the
    store has ≥ 2 models."""
    store = Store.open(path)
    try:
        plan_ = read_plan(store)
        missing = missing_partitions(store, plan_)
        if missing:
            first, others = missing[0], [str(p.index) for p in missing[1:]]
            also = f" (also not done: {', '.join(others[:8])}{', …' if len(others) > 8 else ''})"
            raise StoreError(
                f"{store.path}: {first.describe()} is not done{also if others else ''}; "
                f"run `veff run-partition {store.path} {first.index}`"
            )
        spec = spec_from_store(store)
        if consensus is not None:
            spec = dataclasses.replace(spec, consensus=consensus)
        num_models, num_variants = len(store.model_names()), store.num_variants
        if spec.consensus and num_models >= 2:
            _check_finalize_inputs(store, spec)
        store.finalize()
    finally:
        store.close()  # write_consensus takes the exclusive lock itself
    groups = write_run_consensus(spec, num_models)
    return FinalizeResult(Path(path), num_variants, len(plan_.partitions), groups)
