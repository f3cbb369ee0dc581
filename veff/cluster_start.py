"""Starting the Dask cluster that ``veff score --cluster SPEC`` scores on, and waiting for it.

``SPEC`` is parsed here (without importing Dask or JAX, so the CLI checks it up front). A
batch-system cluster (``slurm:``/``pbs:``/``lsf:``) is a dask-jobqueue cluster whose jobs
each run one worker. Jobs may queue for a long time or never start, and dask-jobqueue only
logs a failed submission, so :func:`open_client` checks that the submit command exists,
then waits for the first worker at most ``--worker-timeout`` seconds (default
``DEFAULT_WORKER_TIMEOUT``), stopping at once, with the jobs cancelled, on a failed
submission, on the timeout (one line saying what to check) or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

from veff.signals import Interrupted, StopRequest

_JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
_NAMES = {"slurm": "SLURM", "pbs": "PBS", "lsf": "LSF"}
_SUBMIT = {"slurm": ("sbatch", "squeue -j"), "pbs": ("qsub", "qstat"), "lsf": ("bsub", "bjobs")}  # submit, status
# How long ``--cluster`` waits for its first worker (batch jobs may queue), and, while
# scoring, for any worker once all are gone; ``veff score --worker-timeout``.
DEFAULT_WORKER_TIMEOUT = 600.0
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


def jobqueue_cluster(spec: ClusterSpec, submit_errors: list[BaseException] | None = None):
    """A dask-jobqueue cluster (no jobs submitted yet). One worker process per job with
    one task at a time: that worker's JAX uses every GPU of the job; ask the batch system
    for CPUs with ``job_cpu=N`` (window building) and for GPUs with
    ``job_extra_directives=--gres=gpu:K``. A job whose submission fails (dask-jobqueue only
    logs it) is appended to ``submit_errors``."""
    dask_jobqueue = _import_jobqueue(spec.kind)
    cls = getattr(dask_jobqueue, _JOBQUEUE[spec.kind])
    kwargs = {"cores": 1, "processes": 1, **{k: list(v) if k in _LIST_KEYS else v for k, v in spec.options}}
    if submit_errors is not None:
        kwargs["job_cls"] = _recording(cls.job_cls, submit_errors)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if "memory" not in kwargs and "memory" in str(e):
            raise ClusterError(f"--cluster {spec.kind}: give each job's memory, e.g. "
                               f"{spec.kind}:{spec.workers},memory=16GB") from None
        raise ClusterError(f"--cluster {spec.kind}: {' '.join(str(e).split())}") from None


def _import_jobqueue(kind: str):
    """dask_jobqueue, imported without the SIGINT handler it sets (``sys.exit()``: exit 0,
    silently), which would take Ctrl-C away from veff.signals."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(f"--cluster {kind}: needs dask-jobqueue: pip install 'veff[cluster]'") from None
    finally:
        if previous is not None and signal.getsignal(signal.SIGINT) is not previous:
            with contextlib.suppress(ValueError):  # not the main thread: nothing to restore
                signal.signal(signal.SIGINT, previous)
    return dask_jobqueue


def _recording(job_cls: type, errors: list[BaseException]) -> type:
    class Recorded(job_cls):  # type: ignore[misc,valid-type]
        async def start(self):
            try:
                await super().start()
            except Exception as e:  # noqa: BLE001 - handed to the client, which names it
                errors.append(e)
                from distributed.core import Status

                self.status = Status.failed  # else closing the cluster fails on this job
                raise

    Recorded.__name__ = Recorded.__qualname__ = job_cls.__name__
    return Recorded


def _submit_error(kind: str, error: BaseException) -> ClusterError:
    """dask-jobqueue's failed-command text, cut to the batch system's own first error line."""
    text = str(error)
    lines = [ln.strip() for ln in text.partition("stderr:")[2].splitlines() if ln.strip()]
    lines = lines or [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(error).__name__]
    return ClusterError(f"--cluster {kind}: {_SUBMIT[kind][0]} failed: {lines[0]}")


def _job_ids(cluster: Any) -> list[str]:
    return [str(j.job_id) for j in getattr(cluster, "workers", {}).values() if getattr(j, "job_id", None)]


def _no_worker_error(spec: ClusterSpec, cluster: Any, waited: float) -> ClusterError:
    if spec.kind == "dask":
        return ClusterError(
            f"no Dask worker joined the scheduler at {spec.address} within {waited:.0f} s: start "
            f"workers (`dask worker {spec.address}`) or check that they can reach it; "
            "wait longer with --worker-timeout SECONDS"
        )
    if spec.kind == "local":
        return ClusterError(f"local:{spec.workers}: no worker process started within {waited:.0f} s")
    status = _SUBMIT[spec.kind][1]
    ids = _job_ids(cluster)
    shown = ",".join(ids[:8]) + (",…" if len(ids) > 8 else "")
    log = "slurm-JOBID.out where sbatch ran or log_directory=" if spec.kind == "slurm" else "log_directory="
    return ClusterError(
        f"no Dask worker started within {waited:.0f} s: {spec.workers} {_NAMES[spec.kind]} job(s) "
        f"requested, {len(ids)} submitted ({shown or 'no job id'}), now cancelled; check "
        f"`{status} {shown}` (pending: the queue/account/walltime/memory options; ended: the "
        f"job's log, {log}), or wait longer with "
        "--worker-timeout SECONDS"
    )


class StoppedWaiting(Interrupted):
    """A signal while no worker had started yet: the jobs are cancelled, nothing was scored."""

    def __str__(self) -> str:
        return (f"stopped by {signal.Signals(self.signum).name} while waiting for workers: "
                f"{self.rerun}; no chunk was scored (run the same command with --resume to start again)")


def wait_for_workers(
    client: Any, spec: ClusterSpec, *, timeout: float, stop: StopRequest | None = None,
    cluster: Any = None, submit_errors: list[BaseException] | None = None, poll: float = 0.5,
) -> None:
    """Return once one worker has joined; raise a one-line :class:`ClusterError` when a job
    submission failed or ``timeout`` seconds passed, :class:`StoppedWaiting` on a signal
    (checked every ``poll`` seconds; the caller's exit closes the cluster, cancelling its jobs)."""
    t0 = time.monotonic()
    note = stop.note if stop is not None else ""
    if stop is not None:
        stop.note = ""  # one line, from StoppedWaiting, not "after the chunk in flight"
    try:
        while True:
            try:
                client.wait_for_workers(1, timeout=poll)
                return
            except TimeoutError:
                pass
            if submit_errors:
                raise _submit_error(spec.kind, submit_errors[0])
            if stop is not None and stop.is_set():
                what = (f"the {len(_job_ids(cluster))} submitted {_NAMES[spec.kind]} job(s) are cancelled"
                        if spec.kind in _SUBMIT else "no worker had joined")
                raise StoppedWaiting(stop.signum, 0, 0, rerun=what)
            if time.monotonic() - t0 >= timeout:
                raise _no_worker_error(spec, cluster, time.monotonic() - t0)
    finally:
        if stop is not None:
            stop.note = note


@contextlib.contextmanager
def open_client(spec: ClusterSpec, *, worker_timeout: float | None = None,
                stop: StopRequest | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster ``spec`` describes, once one worker has joined
    (see :func:`wait_for_workers`; ``worker_timeout`` defaults to ``DEFAULT_WORKER_TIMEOUT``);
    shut down on exit, cancelling any batch job (an existing scheduler, ``dask://``, is left
    running)."""
    distributed = _require_distributed()
    timeout = DEFAULT_WORKER_TIMEOUT if worker_timeout is None else worker_timeout
    cluster, errors = None, []
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
                cluster = jobqueue_cluster(spec, errors)
                command = shlex.split(cluster.job_cls.submit_command or _SUBMIT[spec.kind][0])[0]
                if shutil.which(command) is None:
                    cluster.close()
                    raise ClusterError(
                        f"--cluster {spec.kind}: {command} not found on PATH: run veff where "
                        f"{_NAMES[spec.kind]} jobs can be submitted (a login node), or use local:N"
                    )
                cluster.scale(jobs=spec.workers)
            stack.callback(cluster.close)
            client = distributed.Client(cluster)
            stack.callback(client.close)
        wait_for_workers(client, spec, timeout=timeout, stop=stop, cluster=cluster, submit_errors=errors)
        yield client
