"""Resume after kill -9: only missing chunks are scored and the store is bitwise identical to
an uninterrupted run; a second writer on the same store is refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from veff.checkpoint import save_checkpoint
from veff.models import bpnet

CFG = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(3)
    seq = "".join(rng.choice(list("ACGT"), 20011))
    (d / "g.fa").write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for i, pos in enumerate(range(200, 19800, 31)):
        ref = seq[pos - 1]
        alt = "ACGT"[("ACGT".index(ref) + 1 + i % 3) % 4]
        lines.append(f"chr1\t{pos}\tv{i}\t{ref}\t{alt}\t.\t.\t.")
    (d / "v.vcf").write_text("\n".join(lines) + "\n")
    save_checkpoint(d / "m", arch="bpnet", config=CFG.to_dict(), params=bpnet.init(CFG, 1),
                    metadata={"name": "m"})
    return d


def _cmd(world, out, *extra):
    return [sys.executable, "-m", "veff.cli", "score", str(world / "v.vcf"), "--genome",
            str(world / "g.fa"), "--model", str(world / "m"), "--out", str(out), "--quiet",
            "--chunk-size", "16", "--batch-size", "16", "--null-shuffles", "2", "--null-variants", "20",
            *extra]


def _arrays(path):
    root = zarr.open_group(str(path), mode="r")
    out = {}
    for group in ("variants", "scores/m"):
        g = root[group]
        for name in g.array_keys():
            out[f"{group}/{name}"] = np.asarray(g[name][...])
    return out


NUM_CHUNKS = -(-len(range(200, 19800, 31)) // 16)


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """An uninterrupted run of the same command."""
    out = tmp_path_factory.mktemp("reference") / "full.zarr"
    subprocess.run(_cmd(world, out), check=True, timeout=600)
    return out


def _start_and_signal(world, out, sig) -> tuple[subprocess.Popen, str]:
    """Start a run, send ``sig`` once 3 chunks are done; returns the process and stderr."""
    proc = subprocess.Popen(_cmd(world, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    done = out / "_veff" / "done"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if done.is_dir() and len(list(done.iterdir())) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be signalled; make it longer"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc, err


def _resume_matches(world, out, reference):
    r = subprocess.run(_cmd(world, out, "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    a, b = _arrays(reference), _arrays(out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert "m/logfc_pval" in " ".join(a)


def test_kill_then_resume_is_bitwise_identical(world, tmp_path, reference):
    out = tmp_path / "killed.zarr"
    _start_and_signal(world, out, signal.SIGKILL)
    finished = {p.name for p in (out / "_veff" / "done").iterdir() if not p.name.endswith(".wip")}
    assert 3 <= len(finished) < NUM_CHUNKS
    _resume_matches(world, out, reference)


def test_sigterm_stops_cleanly_then_resume_is_bitwise_identical(world, tmp_path, reference):
    """A scheduler's SIGTERM: the chunk in flight is written and marked done, the lock is
    released, exit status 143 with one line on stderr saying how to finish."""
    out = tmp_path / "terminated.zarr"
    proc, err = _start_and_signal(world, out, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("veff: stopped by SIGTERM after "), err
    assert "--resume" in lines[-1] and "Traceback" not in err
    assert any(ln.startswith("veff: SIGTERM received: stopping after the chunk in flight")
               for ln in lines), err
    done = sorted(p.name for p in (out / "_veff" / "done").iterdir())
    assert not [d for d in done if d.endswith(".wip")]
    assert 3 <= len(done) < NUM_CHUNKS
    assert f"after {len(done)} of {NUM_CHUNKS} chunk(s)" in lines[-1]
    _resume_matches(world, out, reference)


def test_second_writer_refused(world, tmp_path):
    out = tmp_path / "busy.zarr"
    proc = subprocess.Popen(_cmd(world, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "_veff" / "done").is_dir():
            time.sleep(0.05)
        r = subprocess.run(_cmd(world, out, "--resume"), capture_output=True, text=True, timeout=600)
        if proc.poll() is None:
            assert r.returncode == 1
            assert "being written by veff pid" in r.stderr and r.stderr.count("\n") == 1
    finally:
        proc.kill()
        proc.wait()


def test_unreadable_input_leaves_no_store_and_resume_restarts_a_half_made_one(world, tmp_path):
    bad = tmp_path / "bad.vcf"
    bad.write_text((world / "v.vcf").read_text() + "chr1\tnotanumber\n")  # a line with 2 columns
    out = tmp_path / "o.zarr"
    cmd = _cmd(world, out)
    cmd[cmd.index(str(world / "v.vcf"))] = str(bad)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "column" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()
    # a run killed while streaming the input leaves veff's own unfinished store: restarted
    kill_while_creating(out, after_rows=40)
    assert not zarr.open_group(str(out), mode="r").attrs.get("ready", False)
    r = subprocess.run(_cmd(world, out, "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert zarr.open_group(str(out), mode="r").attrs["complete"]


def kill_while_creating(out, *, after_rows=None) -> None:
    """A process killed (SIGKILL) while creating a store: while streaming the input
    (``after_rows`` rows in), or once the variant table is written but before the models."""
    code = (
        "import os, signal, sys\n"
        "from veff.store import Store\nfrom veff.types import Variant\n"
        "n = int(sys.argv[2])\n"
        "def rows():\n"
        "    for i in range(max(n, 50)):\n"
        "        if i == n: os.kill(os.getpid(), signal.SIGKILL)\n"
        "        yield Variant(chrom='chr1', pos1=100 + i, ref='A', alt='G', id=f'v{i}')\n"
        "Store.create(sys.argv[1], rows(), chunk_size=4, run_config={})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(out), str(after_rows if after_rows is not None else -1)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (out / "zarr.json").is_file()
