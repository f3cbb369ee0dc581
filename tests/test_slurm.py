"""The SLURM paths against a real one-node SLURM (tests/slurm_cluster.py): `veff score
--cluster slurm:2` (dask-jobqueue's SLURMCluster: two batch jobs, each a Dask worker) and a
job array of `veff run-partition` followed by a `veff finalize` job both write the store a
single `veff score` writes, bit for bit. Skipped where SLURM cannot start here (not
installed, not root, the daemons fail), with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from helpers_store import assert_same_store
from slurm_cluster import SlurmUnavailable, slurm_cluster
from veff.demo import demo_dir

ROOT = Path(__file__).resolve().parents[1]
CHUNK = "32"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
            yield env
    except SlurmUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def env(slurm):
    """What the client and, through sbatch's default --export=ALL, every job sees: this
    SLURM, this checkout of veff (workers run sys.executable), JAX on the CPU."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, **slurm, PYTHONPATH=path, JAX_PLATFORMS="cpu")


def _inputs() -> list[str]:
    src = demo_dir()
    return [str(src / "variants.vcf"), "--genome", str(src / "genome.fa"), "--model", str(src / "nobias"),
            "--model", str(src / "full"), "--chunk-size", CHUNK]


def _veff(env, cwd, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "veff.cli", *args], env=env, cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same command without --cluster, in this process."""
    from click.testing import CliRunner

    from veff.cli import main

    out = tmp_path_factory.mktemp("slurm-ref") / "ref.zarr"
    r = CliRunner().invoke(main, ["score", *_inputs(), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    return out


def _logs(d: Path) -> str:
    return " | ".join(f"{p.name}: {p.read_text(errors='replace')[-800:]}" for p in sorted(d.glob("*.*")))


def test_score_on_slurm_jobs_is_bitwise_the_single_process_store(env, reference, tmp_path):
    logs = tmp_path / "logs"
    spec = f"slurm:2,memory=2GB,walltime=00:10:00,log_directory={logs}"
    r = subprocess.run([sys.executable, "-m", "veff.cli", "score", *_inputs(), "--out", str(tmp_path / "s.zarr"),
                        "--quiet", "--cluster", spec, "--worker-timeout", "120"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, (r.stderr[-3000:], _logs(logs))
    assert_same_store(reference, tmp_path / "s.zarr")
    assert zarr.open_group(str(tmp_path / "s.zarr"), mode="r").attrs["complete"]
    # the workers really were SLURM jobs: dask-jobqueue wrote their logs under log_directory
    assert len(list(logs.glob("*.err"))) == 2, _logs(logs)


def test_job_array_of_partitions_then_finalize_is_bitwise_the_single_process_store(env, reference, tmp_path):
    out = tmp_path / "a.zarr"
    _veff(env, tmp_path, "plan", *_inputs(), "--out", str(out), "--partitions", "2")
    python = f"{sys.executable} -m veff.cli"
    array = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", "-o", str(tmp_path / "a-%A_%a.log"),
         "--wrap", f'{python} run-partition {out} "$SLURM_ARRAY_TASK_ID" --quiet'],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip().split(";")[0]
    final = subprocess.run(
        ["sbatch", "--wait", f"--dependency=afterok:{array}", "-o", str(tmp_path / "f.log"),
         "--wrap", f"{python} finalize {out}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400,
    )
    assert final.returncode == 0, (final.stderr, _logs(tmp_path))
    assert "2 partition(s) done" in (tmp_path / "f.log").read_text(), _logs(tmp_path)
    assert_same_store(reference, out)
