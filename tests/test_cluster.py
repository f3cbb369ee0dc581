"""`veff score --cluster`: chunks scored as Dask tasks on a 2-process LocalCluster give the
store a single process writes, bit for bit — also when a worker is killed mid-run; a chunk
that fails is reported with its variant range while the others finish, and --resume
completes the job."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import time

import numpy as np
import pytest
import zarr

from helpers_cluster import make_world
from helpers_store import assert_same_store
from veff.engine import ScoreOptions
from veff.pipeline import RunSpec, run

distributed = pytest.importorskip("distributed")

from veff.cluster import (  # noqa: E402 - after the skip
    ClusterError,
    ClusterSpec,
    jobqueue_cluster,
    parse_cluster_spec,
    run_on_cluster,
)

CHUNK = 128
NUM = 2000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    make_world(d, NUM)
    spec = RunSpec(variants=str(d / "v.vcf"), genome=str(d / "g.fa"), models=(str(d / "tiny"),),
                   out=str(d / "ref.zarr"), options=ScoreOptions(batch_size=32), chunk_size=CHUNK)
    result = run(spec)
    assert result.chunks_scored == -(-NUM // CHUNK) and 0 < result.num_ok < NUM
    return d, spec


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def dask_spec(client) -> str:
    return "dask://" + client.scheduler.address.removeprefix("tcp://")


def test_cluster_store_is_bitwise_the_single_process_one(world, client, tmp_path):
    d, spec = world
    updates = []
    result = run_on_cluster(dataclasses.replace(spec, out=str(tmp_path / "c.zarr")), dask_spec(client),
                            lambda n, total: updates.append((n, total)))
    assert result.chunks_scored == 16 and result.num_variants == NUM
    assert len(updates) == 16 and sum(n for n, _ in updates) == NUM and {t for _, t in updates} == {NUM}
    assert_same_store(d / "ref.zarr", tmp_path / "c.zarr")
    assert zarr.open_group(str(tmp_path / "c.zarr"), mode="r").attrs["complete"]


def test_worker_killed_mid_run_is_retried(world, client, tmp_path):
    d, spec = world
    pids = client.run(os.getpid)
    killed = []

    def progress(n, total):
        if killed:
            return
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        assert busy, "no worker is running a task: the kill would not be mid-run"
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append(busy[0])

    result = run_on_cluster(dataclasses.replace(spec, out=str(tmp_path / "k.zarr")), dask_spec(client), progress)
    assert killed and result.chunks_scored == 16
    assert_same_store(d / "ref.zarr", tmp_path / "k.zarr")
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next test


def test_failed_chunk_is_named_others_finish_and_resume_completes(world, client, tmp_path):
    d, spec = world
    out = tmp_path / "f.zarr"
    shutil.copytree(d / "ref.zarr", out)
    for marker in (out / "_veff" / "done").iterdir():
        marker.unlink()
    for stat in ("logfc", "jsd", "window_padded"):  # the rerun must write these again
        shutil.rmtree(out / "scores" / "tiny" / stat / "c")
    bad = out / "variants" / "pos" / "c" / "3"
    good = bad.read_bytes()
    bad.write_bytes(b"not a zstd frame")
    spec = dataclasses.replace(spec, out=str(out), resume=True)
    with pytest.raises(ClusterError, match=r"1 of 16 chunk\(s\) failed.*chunk 3 \(variants\[384:512\]"):
        run_on_cluster(spec, dask_spec(client), retries=1)
    done = sorted(int(p.name) for p in (out / "_veff" / "done").iterdir())
    assert done == [c for c in range(16) if c != 3]
    logfc = zarr.open_group(str(out), mode="r")["scores/tiny/logfc"][:, 0]
    assert np.isnan(logfc[384:512]).all() and np.isfinite(logfc[:384]).any()

    bad.write_bytes(good)
    result = run_on_cluster(spec, dask_spec(client))
    assert result.chunks_scored == 1
    assert_same_store(d / "ref.zarr", out)


@pytest.mark.parametrize(
    "text, want",
    [
        ("local:3", ClusterSpec(kind="local", workers=3)),
        ("dask://node7:8786", ClusterSpec(kind="dask", address="tcp://node7:8786")),
        ("tls://10.0.0.1:8786", ClusterSpec(kind="dask", address="tls://10.0.0.1:8786")),
        ("slurm:4,queue=gpu,memory=64GB,job_cpu=8,walltime=02:00:00,job_extra_directives=--gres=gpu:2;--exclusive",
         ClusterSpec(kind="slurm", workers=4, options=(
             ("queue", "gpu"), ("memory", "64GB"), ("job_cpu", 8), ("walltime", "02:00:00"),
             ("job_extra_directives", ("--gres=gpu:2", "--exclusive"))))),
        ("pbs:2,cores=4", ClusterSpec(kind="pbs", workers=2, options=(("cores", 4),))),
    ],
)
def test_parse_cluster_spec(text, want):
    assert parse_cluster_spec(text) == want


@pytest.mark.parametrize(
    "text", ["local", "local:0", "local:2,x=1", "dask://node7", "slurm:gpu", "slurm:2,queue", "k8s:3", ""]
)
def test_parse_cluster_spec_rejects(text):
    with pytest.raises(ValueError, match="cluster|key=value|options|HOST:PORT|≥ 1"):
        parse_cluster_spec(text)


def test_cluster_option_checks_the_spec_before_any_work():
    import click
    from click.testing import CliRunner

    from veff.cli_cluster import cluster_option

    @click.command()
    @cluster_option
    def cmd(cluster):
        click.echo(repr(cluster))

    ok = CliRunner().invoke(cmd, ["--cluster", "local:2"])
    assert ok.exit_code == 0 and "ClusterSpec(kind='local', workers=2" in ok.output
    bad = CliRunner().invoke(cmd, ["--cluster", "k8s:3"])
    assert bad.exit_code == 2 and "local:N, dask://HOST:PORT" in bad.output


def test_slurm_job_script():
    pytest.importorskip("dask_jobqueue")
    spec = parse_cluster_spec(
        "slurm:2,queue=gpu,memory=16GB,job_cpu=8,walltime=01:00:00,job_extra_directives=--gres=gpu:1;--exclusive"
    )
    cluster = jobqueue_cluster(spec)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1", "#SBATCH --exclusive",
                 "#SBATCH -t 01:00:00", "--nthreads 1"):
        assert line in script, line


def test_missing_dask_is_one_clear_error(world, tmp_path, monkeypatch):
    _, spec = world
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ClusterError, match=r"veff\[cluster\]"):
        run_on_cluster(dataclasses.replace(spec, out=str(tmp_path / "x.zarr")), "local:1")
    assert not (tmp_path / "x.zarr").exists()


def test_stop_request_cancels_the_rest_and_resume_completes(world, client, tmp_path):
    """A SIGTERM to ``veff score --cluster``: the chunks not finished are cancelled at the
    next completion, Interrupted says how to finish, and --resume gives the same store."""
    from veff.signals import Interrupted, StopRequest

    d, spec = world
    out = tmp_path / "s.zarr"
    stop = StopRequest()
    pattern = r"stopped by SIGTERM after \d+ of 16 chunk\(s\).*--resume"
    with pytest.raises(Interrupted, match=pattern) as info:
        run_on_cluster(dataclasses.replace(spec, out=str(out)), dask_spec(client),
                       lambda n, total: stop.set(signal.SIGTERM), stop=stop)
    assert 1 <= info.value.chunks_done < 16  # the first, and the ones workers already held
    time.sleep(1)  # a task that started while the rest was being cancelled may still finish
    done = [p for p in (out / "_veff" / "done").iterdir() if not p.name.endswith(".wip")]
    assert info.value.chunks_done <= len(done) < 16
    result = run_on_cluster(dataclasses.replace(spec, out=str(out), resume=True), dask_spec(client))
    assert result.chunks_scored <= 16 - info.value.chunks_done
    assert_same_store(d / "ref.zarr", out)
