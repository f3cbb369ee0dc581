"""``--batch-size auto`` (veff.autobatch) and bucket padding of short batches: the chooser
returns a power of two that fits the budget, a smaller budget a smaller batch, an explicit
number wins; 3 variants at batch 64 run one step of 4 rows, equal to batch 1."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from veff import autobatch, sharding
from veff.checkpoint import load_checkpoint, save_checkpoint
from veff.cli import main
from veff.engine import ModelScorer, ScoreOptions, _padded_args
from veff.io.windows import WindowBatch
from veff.models import bpnet

CFG = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("autobatch")
    save_checkpoint(d / "m", arch="bpnet", config=CFG.to_dict(), params=bpnet.init(CFG, jax.random.key(2)),
                    metadata={"name": "m"})
    return d / "m"


@pytest.fixture(scope="module")
def handle(ckpt):
    return bpnet.from_checkpoint(load_checkpoint(ckpt))


def _windows(n: int, seed: int = 0) -> WindowBatch:
    rng = np.random.default_rng(seed)
    L = CFG.input_len
    ref = rng.integers(0, 4, (n, L)).astype(np.uint8)
    alt = ref.copy()
    alt[:, L // 2] = (alt[:, L // 2] + 1 + rng.integers(0, 3, n)) % 4
    return WindowBatch(ref=ref, alt=alt, ref_len=np.ones(n, np.int32), alt_len=np.ones(n, np.int32),
                       padded=np.zeros(n, bool))


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def test_search_finds_the_largest_fitting_power_of_two_in_few_compiles():
    calls = []

    def linear(p):
        calls.append(p)
        return 1000 + 37 * p

    assert autobatch.search(linear, budget=1000 + 37 * 90)[0] == 64
    assert len(calls) <= 4 and calls[0] == 1
    calls.clear()
    assert autobatch.search(linear, budget=10**9, cap=256)[:2] == (256, 1000 + 37 * 256)
    assert len(calls) <= 3
    assert autobatch.search(linear, budget=500)[0] == 1  # nothing fits: the smallest batch
    # a peak that grows faster than the line: the guess is checked, then bisected down
    p, peak, n = autobatch.search(lambda p: 1000 + 2 * p * p, budget=1000 + 2 * 40 * 40)
    assert (p, peak) == (32, 1000 + 2 * 32 * 32) and n <= 6


def test_bucket_sizes_are_few_powers_of_two_and_multiples_of_the_devices():
    mesh = sharding.make_mesh(1)
    assert [sharding.bucket_size(r, 64, mesh) for r in (1, 2, 3, 5, 33, 64)] == [1, 2, 4, 8, 64, 64]
    assert sharding.bucket_size(3, 7, mesh) == 4 and sharding.bucket_size(5, 7, mesh) == 7
    assert len({sharding.bucket_size(r, 256, mesh) for r in range(1, 257)}) == 9
    with pytest.raises(ValueError):
        sharding.bucket_size(65, 64, mesh)


def test_auto_picks_a_power_of_two_and_a_smaller_one_under_a_small_budget(handle, monkeypatch):
    monkeypatch.delenv(autobatch.ENV_BUDGET, raising=False)
    monkeypatch.setattr(autobatch, "_CACHE", {})
    big = ModelScorer(handle, ScoreOptions())
    assert big.auto == {} and big.compiled_shapes == []  # chosen at first use
    assert _pow2(big.step_size) and big.step_size <= autobatch.CAP
    full = big.auto["full"]
    assert full.peak_bytes <= full.budget_bytes and full.compiles <= 4
    # the chosen size's compiled step is kept for reuse
    assert big.compiled_shapes == [("full", big.step_size)]
    one = autobatch.peak_bytes(big._compile(False, 1), 1, True)
    # a budget that holds 1 row per step but not 256
    monkeypatch.setenv(autobatch.ENV_BUDGET, str(int(one * 2.5)))
    small = ModelScorer(handle, ScoreOptions())
    assert small.step_size and _pow2(small.step_size) and small.step_size < big.step_size
    assert small.auto["full"].peak_bytes <= int(one * 2.5) and small.auto["full"].budget_bytes == int(one * 2.5)
    # a second scorer with the same key reuses the choice without compiling
    again = ModelScorer(handle, ScoreOptions())
    assert again.step_size == small.step_size and again.compiled_shapes == []


def test_the_choice_is_printed_once(handle, monkeypatch, capsys):
    monkeypatch.setattr(autobatch, "_CACHE", {})
    monkeypatch.setenv(autobatch.ENV_BUDGET, str(1 << 40))
    s = ModelScorer(handle, ScoreOptions(rc=False))
    assert capsys.readouterr().err == ""
    assert s.step_size == autobatch.CAP
    err = capsys.readouterr().err
    assert err.startswith(f"veff: batch size auto → {s.step_size} for m (peak ~")
    assert "GiB of 1024.00 GiB available)" in err
    assert ModelScorer(handle, ScoreOptions(rc=False)).step_size == autobatch.CAP
    assert capsys.readouterr().err == ""


def test_an_snv_only_run_sizes_and_compiles_only_the_incremental_step(handle, monkeypatch, capsys):
    monkeypatch.setattr(autobatch, "_CACHE", {})
    monkeypatch.delenv(autobatch.ENV_BUDGET, raising=False)
    s = ModelScorer(handle, ScoreOptions())
    s.score(_windows(5))
    assert list(s.auto) == ["incremental"] and _pow2(s.batch_rows(True))
    assert {name for name, _ in s.compiled_shapes} == {"incremental"}
    assert "for m, SNV step (peak ~" in capsys.readouterr().err


def test_explicit_batch_size_wins(handle, monkeypatch):
    monkeypatch.setenv(autobatch.ENV_BUDGET, "1")  # would force the smallest auto batch
    s = ModelScorer(handle, ScoreOptions(batch_size=7))
    assert s.step_size == 7 and s.batch_rows(True) == 7 and s.auto == {} and s.compiled_shapes == []
    for bad in (0, -1, "8", 2.0, True):
        with pytest.raises(ValueError, match="batch size"):
            ScoreOptions(batch_size=bad)


def test_three_variants_at_batch_64_run_one_step_of_4_as_batch_1(handle):
    """XLA:CPU's kernels depend on the batch shape (batch 1 and 2 differ from 4 and 8 in the
    last bits), so the scores agree to float32 rounding, as the batch-size tests do."""
    w = _windows(3)
    wide = ModelScorer(handle, ScoreOptions(batch_size=64))
    a = wide.score(w)
    assert wide.compiled_shapes == [("incremental", 4)]
    one = ModelScorer(handle, ScoreOptions(batch_size=1))
    b = one.score(w)
    assert one.compiled_shapes == [("incremental", 1)]
    for k in a:
        assert np.isfinite(a[k]).all()
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6, err_msg=k)
    # and as the rows padded to the full 64 (the former padding)
    args = sharding.shard_batch(_padded_args(w, 0, 3, 64), wide.mesh)
    full = wide._compile(True, 64)(wide.params, wide.peaks, *args)
    for k in a:
        np.testing.assert_allclose(np.asarray(full[k])[:3].reshape(3, -1), a[k], rtol=1e-6, atol=1e-6,
                                   err_msg=k)


def test_a_chunk_of_67_rows_compiles_the_full_size_and_one_bucket(handle):
    w = _windows(67, seed=1)
    w.ref_len[-2:] = 2  # two non-SNV rows take the full step: a bucket of 2
    s = ModelScorer(handle, ScoreOptions(batch_size=32))
    s.score(w)
    assert s.compiled_shapes == [("full", 2), ("incremental", 1), ("incremental", 32)]


def _vcf(path, rows):
    with open(path, "w") as fh:
        fh.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for j, (c, p, r, a) in enumerate(rows):
            fh.write(f"{c}\t{p}\tv{j}\t{r}\t{a}\t.\t.\t.\n")


def test_cli_default_is_auto_and_an_explicit_number_is_kept(ckpt, tmp_path):
    rng = np.random.default_rng(4)
    seq = "".join(rng.choice(list("ACGT"), 1201))
    (tmp_path / "g.fa").write_text(">chr1\n" + seq + "\n")
    _vcf(tmp_path / "v.vcf", [("chr1", p, seq[p - 1], "ACGT"[("ACGT".index(seq[p - 1]) + 1) % 4])
                              for p in (400, 600, 800)])
    common = ["score", str(tmp_path / "v.vcf"), "--genome", str(tmp_path / "g.fa"), "--model",
              str(ckpt), "--quiet"]
    runner = CliRunner()
    r = runner.invoke(main, [*common, "--out", str(tmp_path / "a.zarr")])
    assert r.exit_code == 0, r.output
    assert zarr.open_group(str(tmp_path / "a.zarr"), mode="r").attrs["run"]["options"]["batch_size"] == "auto"
    r = runner.invoke(main, [*common, "--out", str(tmp_path / "b.zarr"), "--batch-size", "5"])
    assert r.exit_code == 0, r.output
    assert zarr.open_group(str(tmp_path / "b.zarr"), mode="r").attrs["run"]["options"]["batch_size"] == 5
    a = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["scores"]["m"]["logfc"][:]
    b = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")["scores"]["m"]["logfc"][:]
    assert np.isfinite(a).all() and np.array_equal(a, b)
    r = runner.invoke(main, [*common, "--out", str(tmp_path / "c.zarr"), "--batch-size", "0"])
    assert r.exit_code == 2 and "auto or a whole number" in r.output



def test_plan_stores_auto_and_run_partition_chooses_on_its_machine(ckpt, tmp_path):
    from veff.partition import shared_writer, spec_from_store

    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGT"), 1201))
    (tmp_path / "g.fa").write_text(">chr1\n" + seq + "\n")
    _vcf(tmp_path / "v.vcf", [("chr1", p, seq[p - 1], "ACGT"[("ACGT".index(seq[p - 1]) + 2) % 4])
                              for p in range(300, 900, 50)])
    out = tmp_path / "p.zarr"
    runner = CliRunner()
    r = runner.invoke(main, ["plan", str(tmp_path / "v.vcf"), "--genome", str(tmp_path / "g.fa"), "--model",
                             str(ckpt), "--out", str(out), "--partitions", "2", "--chunk-size", "5"])
    assert r.exit_code == 0, r.output
    assert "batch size auto" not in r.output  # plan builds scorers for metadata only
    with shared_writer(out) as store:
        assert spec_from_store(store).options.batch_size == "auto"
    for i in (1, 0):
        r = runner.invoke(main, ["run-partition", str(out), str(i), "--quiet"])
        assert r.exit_code == 0, r.output
    assert runner.invoke(main, ["finalize", str(out)]).exit_code == 0
    logfc = zarr.open_group(str(out), mode="r")["scores"]["m"]["logfc"][:]
    assert logfc.shape == (12, 1) and np.isfinite(logfc).all()
