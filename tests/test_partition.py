"""`veff plan` / `veff run-partition I` / `veff finalize`: partitions run in any order (one
twice) give the store `veff score` writes, bit for bit; finalize names a missing partition;
partition writers share the store's lock and exclude a whole-store writer."""

from __future__ import annotations

import json

import click
import jax
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from helpers_store import assert_same_store
from veff.checkpoint import save_checkpoint
from veff.cli_cluster import register
from veff.engine import ScoreOptions
from veff.models import bpnet
from veff.partition import make_plan, read_plan, shared_writer, spec_from_store
from veff.pipeline import RunSpec, run
from veff.store import Store, StoreError

CFG = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)
NUM, CHUNK = 601, 64  # 10 chunks, the last one short


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("partition")
    rng = np.random.default_rng(29)
    seq = "".join(rng.choice(list("ACGT"), 7001))
    (d / "g.fa").write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    rows = []
    for pos in sorted(rng.choice(np.arange(1, len(seq) + 1), NUM - 1, replace=False)):
        ref = seq[pos - 1]
        rows.append(("chr1", int(pos), ref, "ACGT"[("ACGT".index(ref) + 1 + pos % 3) % 4]))
    rows.append(("chr1", 42, "N", "G"))  # REF mismatch: a row that is not ok
    with open(d / "v.vcf", "w") as fh:
        fh.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for j, (c, p, r, a) in enumerate(rows):
            fh.write(f"{c}\t{p}\tv{j}\t{r}\t{a}\t.\t.\t.\n")
    save_checkpoint(d / "tiny", arch="bpnet", config=CFG.to_dict(), params=bpnet.init(CFG, jax.random.key(3)),
                    metadata={"name": "tiny"})
    run(RunSpec(variants=str(d / "v.vcf"), genome=str(d / "g.fa"), models=(str(d / "tiny"),),
                out=str(d / "ref.zarr"), options=ScoreOptions(batch_size=16), chunk_size=CHUNK))
    return d


@pytest.fixture(scope="module")
def cli():
    group = click.Group()
    register(group)
    runner = CliRunner()

    def invoke(*args, ok=True):
        r = runner.invoke(group, [str(a) for a in args])
        if ok:
            assert r.exit_code == 0, r.output
        return r

    return invoke


def plan_args(world, out, partitions):
    return ["plan", world / "v.vcf", "--genome", world / "g.fa", "--model", world / "tiny", "--out", out,
            "--partitions", partitions, "--batch-size", 16, "--chunk-size", CHUNK]


def test_partitions_in_any_order_give_the_single_process_store(world, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(world)  # relative paths in plan; partitions run from elsewhere
    out = tmp_path / "p.zarr"
    cli("plan", "v.vcf", "--genome", "g.fa", "--model", "./tiny", "--out", out, "--partitions", 3,
        "--batch-size", 16, "--chunk-size", CHUNK)
    monkeypatch.chdir(tmp_path)
    doc = json.loads((out / "_veff" / "plan.json").read_text())
    assert doc["partitions"] == [[0, 3], [3, 6], [6, 10]]
    assert not list((out / "_veff" / "done").iterdir())

    for i in (2, 0):
        cli("run-partition", out, i, "--quiet")
    again = cli("run-partition", out, 0, "--quiet")  # a rerun scores nothing
    assert "0 chunk(s) scored" in again.output

    r = cli("finalize", out, ok=False)
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "partition 1 (chunks 3–5, variants[192:384]) is not done" in r.output
    assert f"veff run-partition {out} 1" in r.output
    assert not zarr.open_group(str(out), mode="r").attrs["complete"]

    r = cli("run-partition", out, 1, "--quiet")
    assert "3 chunk(s) scored" in r.output
    cli("finalize", out)
    assert_same_store(world / "ref.zarr", out)
    assert zarr.open_group(str(out), mode="r").attrs["complete"]


def test_run_config_round_trips_through_the_store(world, cli, tmp_path):
    out = tmp_path / "s.zarr"
    cli(*plan_args(world, out, 3), "--no-rc", "--stats", "logfc,jsd", "--no-consensus")
    with shared_writer(out) as store:
        spec = spec_from_store(store)
        assert spec.options == ScoreOptions(batch_size=16, rc=False, stats=("logfc", "jsd"))
        assert spec.models == (str(world / "tiny"),) and spec.genome == str(world / "g.fa")
        assert spec.chunk_size == CHUNK and spec.consensus is False
        assert [p.num_variants for p in read_plan(store).partitions] == [192, 192, 217]


def test_locks_partition_writers_share_whole_store_writers_exclude(world, cli, tmp_path):
    out = tmp_path / "l.zarr"
    cli(*plan_args(world, out, 2))
    with shared_writer(out), shared_writer(out):  # two partition writers at once
        with pytest.raises(StoreError, match="being written by"):
            Store.open(out)  # what `veff score --resume` and `finalize` take
    holder = Store.open(out)
    try:
        r = cli("run-partition", out, 0, ok=False)
        assert r.exit_code == 1 and "being written as a whole" in r.output
    finally:
        holder.close()
    r = cli("run-partition", out, 2, ok=False)
    assert r.exit_code == 1 and "no partition 2: the plan has 2 (0–1)" in r.output
    r = cli(*plan_args(world, out, 2), ok=False)
    assert r.exit_code == 1 and "already exists" in r.output


def test_more_partitions_than_chunks_leaves_empty_ones(world, tmp_path):
    store = Store.open(world / "ref.zarr", mode="r")
    plan = make_plan(store, 13)
    sizes = [len(p.chunks) for p in plan.partitions]
    assert len(sizes) == 13 and sum(sizes) == 10 and set(sizes) == {0, 1}
    assert plan.partitions[-1].stop == NUM
    assert [c for p in plan.partitions for c in p.chunks] == list(range(10))
    with pytest.raises(ValueError, match="≥ 1"):
        make_plan(store, 0)


def test_a_stop_request_ends_a_partition_after_whole_chunks(world, cli, tmp_path):
    """``run_partition(stop=...)``: a stop requested while a chunk is being scored lets the
    started chunks finish and be marked done, then raises Interrupted saying how to finish;
    running the partition again completes the same store."""
    import signal

    from veff.partition import run_partition
    from veff.signals import Interrupted, StopRequest

    out = tmp_path / "stop.zarr"
    cli(*plan_args(world, out, 1))
    stop = StopRequest()

    def progress(_rows, _total):  # called once a chunk is written and marked done
        stop.set(signal.SIGTERM)

    with pytest.raises(Interrupted) as info:
        run_partition(out, 0, progress=progress, stop=stop)
    exc = info.value
    done = [p for p in (out / "_veff" / "done").iterdir() if not p.name.endswith(".wip")]
    assert 1 <= exc.chunks_done == len(done) < exc.chunks_todo == 10
    assert str(exc).startswith(f"stopped by SIGTERM after {len(done)} of 10 chunk(s)")
    assert str(exc).endswith("run the same command again to finish this partition")

    preset = StopRequest()
    preset.set(signal.SIGINT)
    with pytest.raises(Interrupted, match=f"SIGINT after 0 of {10 - len(done)} chunk"):
        run_partition(out, 0, stop=preset)

    assert run_partition(out, 0).chunks_scored == 10 - len(done)
    cli("finalize", out)
    assert_same_store(world / "ref.zarr", out)
