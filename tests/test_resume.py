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


def test_kill_then_resume_is_bitwise_identical(world, tmp_path):
    ref_out = tmp_path / "full.zarr"
    subprocess.run(_cmd(world, ref_out), check=True, timeout=600)

    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(_cmd(world, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = out / "_veff" / "done"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if done.is_dir() and len(list(done.iterdir())) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name for p in done.iterdir() if not p.name.endswith(".wip")}
    total = len(range(200, 19800, 31))
    num_chunks = -(-total // 16)
    assert 3 <= len(finished) < num_chunks

    # a second writer is refused while the first holds the store, and allowed after
    r = subprocess.run(_cmd(world, out, "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    a, b = _arrays(ref_out), _arrays(out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert "m/logfc_pval" in " ".join(a)


def test_second_writer_refused(world, tmp_path):
    out = tmp_path / "busy.zarr"
    proc = subprocess.Popen(_cmd(world, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "_veff" / "done").is_dir():
            time.sleep(0.05)
        r = subprocess.run(_cmd(world, out, "--resume"), capture_output=True, text=True, timeout=600)
        if proc.poll() is None:
            assert r.returncode == 2
            assert "being written by veff pid" in r.stderr and r.stderr.count("\n") == 1
    finally:
        proc.kill()
        proc.wait()


def test_unreadable_input_leaves_no_store_and_resume_restarts_a_half_made_one(world, tmp_path):
    bad = tmp_path / "bad.vcf"
    bad.write_text((world / "v.vcf").read_text() + "chr1\tnotanumber\t.\tA\tG\t.\t.\t.\n")
    out = tmp_path / "o.zarr"
    cmd = _cmd(world, out)
    cmd[cmd.index(str(world / "v.vcf"))] = str(bad)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "notanumber" in r.stderr
    assert not out.exists()
    # a run killed while streaming the input leaves a Zarr group without veff's attrs
    zarr.open_group(str(out), mode="w").create_group("variants")
    r = subprocess.run(_cmd(world, out, "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert zarr.open_group(str(out), mode="r").attrs["complete"]
