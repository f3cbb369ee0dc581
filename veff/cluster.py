"""``veff score --cluster SPEC``: the chunks of one store scored as Dask tasks.

The client (coordinator) creates or reopens the store and holds its exclusive lock for the
whole job; it submits one task per pending chunk. A task opens the store without the lock
(its coordinator holds it), scores its chunk with every model through the same engine as
``veff score`` (all of the worker's local devices), writes the chunk's region and then its
done marker. Models are loaded once per worker process and cached there, keyed by
checkpoint path and sha256; tasks carry only paths and options.

Faults: a worker that dies mid-task has its tasks rerun elsewhere by the scheduler (up to
``distributed.scheduler.allowed-failures`` deaths per task); a task that raises is retried
``retries`` times. A chunk that still fails does not stop the others: the job waits for
every task, then raises one error naming each failed chunk and its variant range. Chunks
that finished are marked done, so ``--resume`` finishes the job.

Dask is an optional dependency (``veff[cluster]``), imported only here and only when used.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from typing import Any


from veff.cluster_start import (  # noqa: F401 - the cluster API lives in veff.cluster
    DEFAULT_WORKER_TIMEOUT,
    ClusterError,
    ClusterSpec,
    StoppedWaiting,
    _require_distributed,
    jobqueue_cluster,
    open_client,
    parse_cluster_spec,
    wait_for_workers,
)
from veff.engine import ModelScorer
from veff.io.genome import Genome
from veff.partition import absolute_spec, open_unlocked
from veff.pipeline import (
    ProgressFn,
    RunResult,
    RunSpec,
    check_models,
    load_handles,
    open_run,
    score_chunks,
    scorers_for_store,
    finish_run,
)
from veff.signals import Interrupted, StopRequest
from veff.store import Store


# ---------------------------------------------------------------------------- worker side
@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """What a task needs besides its chunk: small, hashable, and the worker cache's key
    (checkpoint paths are in ``spec.models``, their sha256 in ``shas``)."""

    spec: RunSpec
    shas: tuple[str, ...]


_cache: dict[TaskConfig, tuple[Genome, list[ModelScorer]]] = {}
# One task at a time per process: the device is the bottleneck, and the cached genome
# reader and compiled steps are not meant to be shared by concurrent tasks.
_task_lock = threading.Lock()


def _cache_key(store: Store, config: TaskConfig) -> TaskConfig:
    """Jobs that differ only in their input and output files share compiled models; stored
    peak counts belong to one store."""
    spec = dataclasses.replace(config.spec, variants="", resume=False, overwrite=False)
    if spec.peaks is None:
        spec = dataclasses.replace(spec, out="")
    return dataclasses.replace(config, spec=spec)


def _worker_context(store: Store, config: TaskConfig) -> tuple[Genome, list[ModelScorer]]:
    key = _cache_key(store, config)
    if key not in _cache:
        _cache.clear()  # a worker serves one job's models at a time; free the previous ones
        spec = config.spec
        handles = load_handles(spec.models)
        for h, m, sha in zip(handles, spec.models, config.shas):
            if h.sha256 != sha:
                raise ClusterError(
                    f"checkpoint {m} changed since the job started "
                    f"(sha256 {h.sha256[:12]}, expected {sha[:12]})"
                )
        genome = Genome(spec.genome)
        _cache[key] = (genome, scorers_for_store(store, spec, genome, handles))
    return _cache[key]


def score_chunk_task(path: str, chunk: int, config: TaskConfig) -> int:
    """Score one chunk of the store at ``path`` (a Dask task); returns its number of rows.
    An attempt that finds the chunk done (its predecessor died after marking it) does nothing."""
    with _task_lock:
        store = open_unlocked(path)
        start, stop = store.chunk_range(chunk)
        if not store.is_done(chunk):
            genome, scorers = _worker_context(store, config)
            # a long-lived worker may have cached these for an earlier store at the same path
            check_models(store, [s.handle.name for s in scorers], [s.handle.sha256 for s in scorers])
            score_chunks(store, genome, scorers, [chunk])
        return stop - start


# ---------------------------------------------------------------------------- client side
@dataclasses.dataclass(frozen=True)
class ChunkFailure:
    chunk: int
    start: int
    stop: int
    error: BaseException

    def describe(self, store: Store) -> str:
        msg = str(self.error).strip().splitlines()[0] if str(self.error).strip() else ""
        where = f"variants[{self.start}:{self.stop}]{self._loci(store)}"
        return f"chunk {self.chunk} ({where}): {type(self.error).__name__}: {msg}"

    def _loci(self, store: Store) -> str:
        try:  # the failure may be an unreadable chunk of variants/
            first = store.read_variants(self.start, self.start + 1)[0]
            last = store.read_variants(self.stop - 1, self.stop)[0]
        except Exception:  # noqa: BLE001 - the locus is a courtesy; the row range says it all
            return ""
        return f", {first.chrom}:{first.pos1}–{last.chrom}:{last.pos1}"


def score_on_client(
    client: Any,
    store: Store,
    config: TaskConfig,
    chunks: list[int],
    progress: ProgressFn | None = None,
    *,
    retries: int = 2,
    stop: StopRequest | None = None,
    worker_timeout: float | None = None,
    poll: float = 0.25,
) -> list[ChunkFailure]:
    """Run one task per chunk on ``client``; wait for all of them; return the failures.

    ``stop`` (veff.signals): once set (checked every ``poll`` seconds), the tasks that no
    worker has taken yet are cancelled, the ones workers hold are waited for, and
    :class:`~veff.signals.Interrupted` is raised. A task that starts between the two steps
    may still write its chunk after that (Dask cannot stop a running task); each chunk is
    whole or absent either way, so ``--resume`` stays exact. With no worker left for
    ``worker_timeout`` seconds (batch jobs ended) it raises :class:`ClusterError`."""
    distributed = _require_distributed()
    timeout = DEFAULT_WORKER_TIMEOUT if worker_timeout is None else worker_timeout
    job = uuid.uuid4().hex[:8]  # a long-lived scheduler must not mistake a rerun for cached results
    futures = {
        client.submit(
            score_chunk_task, str(store.path), c, config,
            key=f"veff-{job}-chunk-{c}", retries=retries, pure=False,
        ): c
        for c in chunks
    }
    failures = []
    finished = 0
    stopping = False
    seen_worker = time.monotonic()

    def cancel_unheld():
        held = {key for keys in client.processing().values() for key in keys}
        client.cancel([f for f in futures if not f.done() and f.key not in held])

    pending = distributed.as_completed(list(futures))
    while not pending.is_empty():
        batch = pending.next_batch(block=False)
        if not batch:
            if stop is not None and stop.is_set() and not stopping:
                stopping = True
                cancel_unheld()
            elif client.nthreads():
                seen_worker = time.monotonic()
            elif time.monotonic() - seen_worker >= timeout:
                client.cancel([f for f in futures if not f.done()])
                raise ClusterError(
                    f"no Dask worker left for {timeout:.0f} s with {len(futures) - finished} of "
                    f"{len(futures)} chunk(s) to score (the workers' jobs ended or were killed: "
                    "see their logs); every finished chunk is saved: run the same command with "
                    "--resume to finish"
                )
            time.sleep(poll)
            continue
        for fut in batch:
            chunk = futures[fut]
            if fut.status == "cancelled" and stopping:
                continue
            finished += 1
            if fut.status == "finished":
                # the chunk's row count from the store, not fut.result(): fetching a result
                # blocks for ever once the worker that held it has gone
                start, stop_row = store.chunk_range(chunk)
                if progress is not None and stop_row > start:
                    progress(stop_row - start, store.num_variants)
            else:
                error = fut.exception() if fut.status == "error" else ClusterError(f"task {fut.status}")
                failures.append(ChunkFailure(chunk, *store.chunk_range(chunk), error))
            fut.release()
        if stop is not None and stop.is_set() and not stopping:
            stopping = True
            cancel_unheld()
    if stopping and finished < len(futures):
        raise Interrupted(stop.signum, finished, len(futures))
    return sorted(failures, key=lambda f: f.chunk)


def run_on_cluster(
    spec: RunSpec, cluster_spec: str | ClusterSpec, progress: ProgressFn | None = None, *,
    retries: int = 2, stop: StopRequest | None = None, worker_timeout: float | None = None,
) -> RunResult:
    """``veff.pipeline.run`` with the chunks scored on a Dask cluster. The store is the same,
    array for array, bit for bit."""
    t0 = time.perf_counter()
    cspec = parse_cluster_spec(cluster_spec) if isinstance(cluster_spec, str) else cluster_spec
    _require_distributed()  # fail before reading any input
    spec = absolute_spec(spec)  # workers may start in another directory
    genome = Genome(spec.genome)
    handles = load_handles(spec.models)
    # the scorers give the store its metadata (and null); the store holds the exclusive lock
    store, scorers = open_run(spec, genome, handles)
    try:
        todo = store.pending_chunks()
        if todo:
            config = TaskConfig(spec=spec, shas=tuple(h.sha256 for h in handles))
            with open_client(cspec, worker_timeout=worker_timeout, stop=stop) as client:
                failures = score_on_client(client, store, config, todo, progress, retries=retries,
                                           stop=stop, worker_timeout=worker_timeout)
            if failures:
                shown = "; ".join(f.describe(store) for f in failures[:5])
                more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
                raise ClusterError(
                    f"{len(failures)} of {len(todo)} chunk(s) failed, the others are written and "
                    f"marked done (fix the cause and rerun with --resume): {shown}{more}"
                )
    except BaseException:
        store.close()
        raise
    return finish_run(spec, store, len(handles), len(todo), t0)
