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

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any


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

_JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
# jobqueue keyword arguments that take a list: give items separated by ';'
_LIST_KEYS = {"job_extra_directives", "job_directives_skip", "worker_extra_args", "job_script_prologue"}


class ClusterError(Exception):
    """A cluster that cannot be started or reached, or chunks that failed on it."""


# ---------------------------------------------------------------------------- the spec
@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """``local:N`` | ``dask://HOST:PORT`` | ``slurm:JOBS[,key=value…]`` (also ``pbs:``, ``lsf:``)."""

    kind: str  # local, dask, slurm, pbs, lsf
    workers: int = 0  # local: worker processes; slurm/pbs/lsf: batch jobs
    address: str | None = None  # dask: the scheduler
    options: tuple[tuple[str, Any], ...] = ()  # slurm/pbs/lsf: dask-jobqueue keyword arguments

    def __post_init__(self):
        if self.kind not in ("local", "dask", *_JOBQUEUE):
            raise ValueError(f"unknown cluster kind {self.kind!r}")
        if self.kind != "dask" and self.workers < 1:
            raise ValueError(f"{self.kind}: need at least one worker, got {self.workers}")


def parse_cluster_spec(text: str) -> ClusterSpec:
    text = text.strip()
    usage = "--cluster takes local:N, dask://HOST:PORT or slurm:JOBS[,key=value…] (also pbs:, lsf:)"
    for scheme in ("dask://", "tcp://", "tls://"):
        if text.startswith(scheme):
            rest = text[len(scheme) :]
            if ":" not in rest or not rest.rsplit(":", 1)[1].isdigit():
                raise ValueError(f"{text!r}: the scheduler address needs HOST:PORT; {usage}")
            proto = "tls://" if scheme == "tls://" else "tcp://"
            return ClusterSpec(kind="dask", address=proto + rest)
    kind, _, rest = text.partition(":")
    if kind not in ("local", *_JOBQUEUE) or not rest:
        raise ValueError(f"{text!r}: {usage}")
    count, *pairs = rest.split(",")
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{text!r}: {kind}: needs a whole number ≥ 1 before any options; {usage}")
    if kind == "local" and pairs:
        raise ValueError(f"{text!r}: local:N takes no options")
    options = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"{text!r}: {pair!r} is not key=value")
        options.append((key.strip(), _option_value(key.strip(), value.strip())))
    return ClusterSpec(kind=kind, workers=int(count), options=tuple(options))


def _option_value(key: str, value: str) -> Any:
    if key in _LIST_KEYS:
        return tuple(v for v in value.split(";") if v)
    if value.isdigit():
        return int(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


# ---------------------------------------------------------------------------- clients
def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "--cluster needs dask: pip install 'veff[cluster]' (dask[distributed], dask-jobqueue)"
        ) from None
    return distributed


def jobqueue_cluster(spec: ClusterSpec):
    """A dask-jobqueue cluster (no jobs submitted yet). One worker process per job with
    one task at a time: that worker's JAX uses every GPU of the job; ask the batch system
    for CPUs with ``job_cpu=N`` (window building) and for GPUs with
    ``job_extra_directives=--gres=gpu:K``."""
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(
            f"--cluster {spec.kind}: needs dask-jobqueue: pip install 'veff[cluster]'"
        ) from None
    kwargs = {"cores": 1, "processes": 1, **{k: list(v) if k in _LIST_KEYS else v for k, v in spec.options}}
    try:
        return getattr(dask_jobqueue, _JOBQUEUE[spec.kind])(**kwargs)
    except (TypeError, ValueError) as e:
        raise ClusterError(f"--cluster {spec.kind}: {e}") from None


@contextlib.contextmanager
def open_client(spec: ClusterSpec) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster ``spec`` describes, shut down on exit (an
    existing scheduler, ``dask://``, is left running)."""
    distributed = _require_distributed()
    with contextlib.ExitStack() as stack:
        if spec.kind == "dask":
            try:
                client = distributed.Client(spec.address, timeout="30s")
            except OSError as e:
                raise ClusterError(f"cannot reach the Dask scheduler at {spec.address}: {e}") from None
            stack.callback(client.close)
        else:
            if spec.kind == "local":
                cluster = distributed.LocalCluster(
                    n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
            else:
                cluster = jobqueue_cluster(spec)
                cluster.scale(jobs=spec.workers)
            stack.callback(cluster.close)
            client = distributed.Client(cluster)
            stack.callback(client.close)
        yield client


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
) -> list[ChunkFailure]:
    """Run one task per chunk on ``client``; wait for all of them; return the failures.

    ``stop`` (veff.signals): once set, at the next completion the tasks that no worker has
    taken yet are cancelled, the ones workers hold are waited for, and
    :class:`~veff.signals.Interrupted` is raised. A task that starts between the two steps
    may still write its chunk after that (Dask cannot stop a running task); each chunk is
    whole or absent either way, so ``--resume`` stays exact."""
    distributed = _require_distributed()
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
    for fut in distributed.as_completed(list(futures)):
        chunk = futures[fut]
        if fut.status == "cancelled" and stopping:
            continue
        finished += 1
        if fut.status == "finished":
            rows = fut.result()
            if progress is not None and rows:
                progress(rows, store.num_variants)
        else:
            error = fut.exception() if fut.status == "error" else ClusterError(f"task {fut.status}")
            failures.append(ChunkFailure(chunk, *store.chunk_range(chunk), error))
        fut.release()
        if stop is not None and stop.is_set() and not stopping:
            stopping = True
            held = {key for keys in client.processing().values() for key in keys}
            client.cancel([f for f in futures if not f.done() and f.key not in held])
    if stopping and finished < len(futures):
        raise Interrupted(stop.signum, finished, len(futures))
    return sorted(failures, key=lambda f: f.chunk)


def run_on_cluster(
    spec: RunSpec, cluster_spec: str | ClusterSpec, progress: ProgressFn | None = None, *,
    retries: int = 2, stop: StopRequest | None = None,
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
            with open_client(cspec) as client:
                failures = score_on_client(client, store, config, todo, progress,
                                           retries=retries, stop=stop)
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
