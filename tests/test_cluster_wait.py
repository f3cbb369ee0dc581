"""`veff score --cluster` never waits unbounded for workers: with a batch system that takes
jobs but never starts them (a fake sbatch on PATH) it gives one line naming the jobs and
what to check after --worker-timeout, cancels the jobs, and a SIGTERM while waiting exits at
once (143, one line); a missing or failing sbatch is one line at once; a run whose workers
all go away stops after the timeout, resumable."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_cluster import fake_slurm, logged, make_world, path_with
from veff.engine import ScoreOptions
from veff.pipeline import RunSpec

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

from veff.cluster import ClusterError, run_on_cluster  # noqa: E402 - after the skip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("wait")
    make_world(d, 300)
    spec = RunSpec(variants=str(d / "v.vcf"), genome=str(d / "g.fa"), models=(str(d / "tiny"),),
                   out=str(d / "unused.zarr"), options=ScoreOptions(batch_size=32), chunk_size=64)
    return d, spec


def test_no_worker_within_the_timeout_is_one_error_and_the_jobs_are_cancelled(world, tmp_path, monkeypatch):
    _, spec = world
    bin_dir = fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", path_with(bin_dir))
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as info:
        run_on_cluster(dataclasses.replace(spec, out=str(tmp_path / "o.zarr")), "slurm:2,queue=gpu,memory=1GB",
                       worker_timeout=2)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    assert "no Dask worker started within 2 s: 2 SLURM job(s) requested, 2 submitted (101,102)" in msg
    assert "`squeue -j 101,102`" in msg and "queue/account" in msg and "--worker-timeout" in msg
    assert "\n" not in msg
    assert elapsed < 2 + 30, elapsed  # store, scheduler start and close included
    assert len(logged(bin_dir, "sbatch")) == 2 and sorted(logged(bin_dir, "scancel")) == ["101", "102"]


def test_failed_submission_is_the_batch_systems_line_at_once(world, tmp_path, monkeypatch):
    _, spec = world
    bin_dir = fake_slurm(tmp_path / "bin", submit_error="sbatch: error: invalid partition specified: gpu")
    monkeypatch.setenv("PATH", path_with(bin_dir))
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"^--cluster slurm: sbatch failed: sbatch: error: invalid "
                                           r"partition specified: gpu$"):
        run_on_cluster(dataclasses.replace(spec, out=str(tmp_path / "o.zarr")), "slurm:1,queue=gpu,memory=1GB",
                       worker_timeout=300)
    assert time.monotonic() - t0 < 60


def test_missing_sbatch_is_one_error_before_any_job(world, tmp_path, monkeypatch):
    _, spec = world
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ClusterError, match=r"sbatch not found on PATH: run veff where SLURM jobs can be submitted"):
        run_on_cluster(dataclasses.replace(spec, out=str(tmp_path / "o.zarr")), "slurm:1,memory=1GB", worker_timeout=300)


def test_scheduler_without_workers_times_out(world, tmp_path):
    _, spec = world
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster:
        address = cluster.scheduler.address.removeprefix("tcp://")
        with pytest.raises(ClusterError, match=r"no Dask worker joined the scheduler at tcp://.* within 1 s"):
            run_on_cluster(dataclasses.replace(spec, out=str(tmp_path / "o.zarr")), f"dask://{address}",
                           worker_timeout=1)


def test_all_workers_gone_while_scoring_stops_after_the_timeout(world, tmp_path):
    d, spec = world
    out = tmp_path / "g.zarr"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        address = cluster.scheduler.address.removeprefix("tcp://")
        t0 = time.monotonic()
        with pytest.raises(ClusterError, match=r"no Dask worker left for 2 s with \d+ of 5 chunk\(s\) to score.*--resume"):
            run_on_cluster(dataclasses.replace(spec, out=str(out)), f"dask://{address}",
                           lambda n, total: cluster.scale(0), worker_timeout=2)
        assert time.monotonic() - t0 < 60
    # the chunk a worker held when it was told to go may still finish after the client gave
    # up, so the count of done chunks is only bounded below
    done = [p for p in (out / "_veff" / "done").iterdir() if not p.name.endswith(".wip")]
    assert len(done) >= 1


def _cli(d: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "veff.cli", "score", str(d / "v.vcf"), "--genome", str(d / "g.fa"),
            "--model", str(d / "tiny"), "--out", str(out), "--chunk-size", "64", "--batch-size", "32",
            "--quiet", "--cluster", "slurm:2,memory=1GB", *extra]


def _env(bin_dir: Path, **more: str) -> dict[str, str]:
    env = dict(os.environ, PATH=path_with(bin_dir), JAX_PLATFORMS="cpu", **more)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _wait_for_jobs(bin_dir: Path, proc: subprocess.Popen, n: int, limit: float = 120) -> float:
    t0 = time.monotonic()
    while len(logged(bin_dir, "sbatch")) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < limit, "no job submitted"
        time.sleep(0.1)
    return time.monotonic()


def test_cli_worker_timeout_env_is_one_line(world, tmp_path):
    d, _ = world
    bin_dir = fake_slurm(tmp_path / "bin")
    proc = subprocess.Popen(_cli(d, tmp_path / "o.zarr"), env=_env(bin_dir, VEFF_WORKER_TIMEOUT="3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    submitted = _wait_for_jobs(bin_dir, proc, 2)
    _, err = proc.communicate(timeout=120)
    assert time.monotonic() - submitted < 3 + 20
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("veff:")]
    assert len(lines) == 1 and lines[0].startswith("veff: error: no Dask worker started within 3 s: 2 SLURM"), err
    assert "Traceback" not in err
    assert sorted(logged(bin_dir, "scancel")) == ["101", "102"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_signal_while_waiting_exits_at_once(world, tmp_path, sig):
    d, _ = world
    bin_dir = fake_slurm(tmp_path / "bin")
    proc = subprocess.Popen(_cli(d, tmp_path / "o.zarr", "--worker-timeout", "600"), env=_env(bin_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_jobs(bin_dir, proc, 2)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    assert proc.returncode == 128 + sig, err
    lines = [ln for ln in err.splitlines() if ln.startswith("veff:")]
    assert lines == [f"veff: stopped by {sig.name} while waiting for workers: the 2 submitted SLURM "
                     "job(s) are cancelled; no chunk was scored (run the same command with --resume "
                     "to start again)"], err
    assert sorted(logged(bin_dir, "scancel")) == ["101", "102"]
