"""Commands for batch scoring on any scheduler: ``plan``, ``run-partition``, ``finalize``,
and the ``--cluster SPEC`` option for ``veff score``.

``veff/cli.py`` adds them with ``from veff.cli_cluster import register; register(main)``
placed after its own options are defined (the end of the file): the shared options and the
one-line error wrapper are taken from there so that ``plan`` reads its inputs exactly as
``score`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from veff.cluster_start import DEFAULT_WORKER_TIMEOUT

if TYPE_CHECKING:  # the CLI imports this module at start-up: keep jax out of it
    from veff.pipeline import ProgressFn, RunResult, RunSpec


def _check_cluster_spec(ctx, param, value):
    if value is None:
        return None
    from veff.cluster_start import parse_cluster_spec  # no dask, no jax

    try:
        return parse_cluster_spec(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _keep_worker_timeout(ctx, param, value):
    # not a parameter of the command: the cluster run reads it from the context
    ctx.meta[_TIMEOUT_KEY] = value
    return value


_TIMEOUT_KEY = "veff.worker_timeout"
_cluster = click.option(
    "--cluster",
    default=None,
    metavar="SPEC",
    callback=_check_cluster_spec,
    help="Score the chunks as Dask tasks: local:N (N worker processes), dask://HOST:PORT "
    "(an existing scheduler) or slurm:JOBS[,key=value…] (dask-jobqueue; also pbs:, lsf:). "
    "Needs veff[cluster].",
)
_worker_timeout = click.option(
    "--worker-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_WORKER_TIMEOUT,
    show_default=True,
    envvar="VEFF_WORKER_TIMEOUT",
    expose_value=False,
    callback=_keep_worker_timeout,
    metavar="SECONDS",
    help="With --cluster: give up, cancelling the jobs, when no worker has joined after this "
    "long (batch jobs may queue), or when all workers are gone this long while scoring "
    "[env VEFF_WORKER_TIMEOUT].",
)


def cluster_option(fn):
    """``--cluster SPEC`` (the command's ``cluster`` parameter) and ``--worker-timeout``
    (kept in the click context for :func:`run_on_cluster`)."""
    return _cluster(_worker_timeout(fn))


def run_on_cluster(spec: RunSpec, cluster_spec, progress: ProgressFn | None = None,
                   stop=None) -> RunResult:
    """What ``veff score --cluster SPEC`` calls (imports dask only now)."""
    from veff.cluster import run_on_cluster as _run

    ctx = click.get_current_context(silent=True)
    timeout = ctx.meta.get(_TIMEOUT_KEY) if ctx is not None else None
    return _run(spec, cluster_spec, progress, stop=stop, worker_timeout=timeout)


def register(group: click.Group) -> None:
    from veff.cli import _one_line_errors, run_options, spec_from_options

    @group.command()
    @run_options
    @click.option("--partitions", type=click.IntRange(min=1), required=True, help="Number of partitions (e.g. the size of a job array).")
    @_one_line_errors
    def plan(partitions, **options):
        """Create OUT with every variant and model, split into PARTITIONS for run-partition."""
        from veff.partition import plan as make_plan

        spec = spec_from_options(**options)
        out = spec.out
        result = make_plan(spec, partitions)
        last = result.partitions[-1]
        click.echo(
            f"{out}: {last.stop} rows in {last.stop_chunk} chunk(s), {len(result.partitions)} "
            f"partition(s); run `veff run-partition {out} I` for I in 0..{len(result.partitions) - 1}, "
            f"then `veff finalize {out}`",
            err=True,
        )

    @group.command("run-partition")
    @click.argument("store", type=click.Path(file_okay=False, exists=True))
    @click.argument("index", type=int)
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @_one_line_errors
    def run_partition_cmd(store, index, quiet):
        """Score partition INDEX of STORE (made by plan); done chunks are skipped."""
        from veff.partition import run_partition
        from veff.progress import progress_bar
        from veff.signals import stop_requests

        with stop_requests() as stop, progress_bar(f"partition {index}", disable=quiet) as update:
            result = run_partition(store, index, progress=update, stop=stop)
        click.echo(
            f"{store}: {result.partition.describe()}: {result.chunks_scored} chunk(s) scored "
            f"in {result.seconds:.1f} s",
            err=True,
        )

    @group.command()
    @click.argument("store", type=click.Path(file_okay=False, exists=True))
    @click.option("--no-consensus", is_flag=True, help="Skip the consensus even if the run asked for it.")
    @_one_line_errors
    def finalize(store, no_consensus):
        """Check every partition of STORE is done, consolidate it, write the consensus."""
        from veff.partition import finalize as do_finalize

        result = do_finalize(store, consensus=False if no_consensus else None)
        groups = f"; consensus groups {', '.join(result.consensus_groups)}" if result.consensus_groups else ""
        click.echo(f"{store}: {result.num_variants} rows, {result.num_partitions} partition(s) done{groups}", err=True)
