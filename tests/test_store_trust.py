"""Nothing of the user's is lost, nothing is silently mixed: --overwrite replaces only a veff
store no one writes, --resume refuses anything but veff's own store and any run that differs
from the one that created it (the fingerprint), one line per difference."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from helpers_store import arrays, assert_same_store, invoke, one_line_error, score_args, write_world
from test_resume import kill_while_creating
from veff.store import STARTED, UNSTARTED, Store, take_lock


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d, seq = write_world(tmp_path_factory.mktemp("trust"))
    # the same genome with one base changed far from every variant's window
    g2 = list(seq)
    g2[-5] = "ACGT"[("ACGT".index(g2[-5]) + 1) % 4]
    g2 = "".join(g2)
    (d / "g2.fa").write_text(">chr1\n" + "\n".join(g2[i : i + 60] for i in range(0, len(g2), 60)) + "\n")
    lines = (d / "v.vcf").read_text().splitlines()
    (d / "v2.vcf").write_text("\n".join(lines[:-1]) + "\n")  # one variant fewer
    (d / "moved").mkdir()
    shutil.copy(d / "v.vcf", d / "moved" / "v.vcf")  # same content elsewhere
    from veff.checkpoint import save_checkpoint
    from veff.models import bpnet

    cfg = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)
    save_checkpoint(d / "m2" / "m", arch="bpnet", config=cfg.to_dict(), params=bpnet.init(cfg, 2),
                    metadata={"name": "m"})  # same name, other weights
    (d / "peaks.narrowPeak").write_text("chr1\t1000\t1200\tp\t0\t.\t1\t1\t1\t100\n")
    (d / "groups.yaml").write_text("groups:\n  - name: accessibility\n    members:\n      - model: m\n        stat: logfc\n")
    return d


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "full.zarr"
    code, output = invoke(score_args(world, out))
    assert code == 0, output
    return out


def _state(path):
    """Everything a refused command must leave as it was: arrays, attrs, done markers."""
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    done = sorted(p.name for p in (path / "_veff" / "done").iterdir())
    return json.dumps(dict(root.attrs), sort_keys=True, default=str), done


def _unfinished_copy(reference, dst):
    """The reference store with its last two chunks not done (a resume would write them)."""
    shutil.copytree(reference, dst)
    for marker in sorted((dst / "_veff" / "done").iterdir())[-2:]:
        marker.unlink()
    root = zarr.open_group(str(dst), mode="r+", use_consolidated=False)
    root.attrs["complete"] = False
    return dst


# ---------------------------------------------------------------------------- --overwrite
def test_overwrite_never_deletes_a_foreign_directory(world, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("\\chapter{Five years}\n")
    (out / "figures").mkdir()
    (out / "figures" / "f1.pdf").write_bytes(b"%PDF-1.7 ...")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for flag in ("--overwrite", "--resume"):
        code, output = invoke(score_args(world, out, flag))
        line = one_line_error(code, output, "--resume: " if flag == "--resume" else str(out))
        assert "not a veff store" in line and "nothing was" in line
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_overwrite_and_resume_refuse_a_foreign_zarr_store(world, tmp_path):
    out = tmp_path / "other.zarr"
    g = zarr.open_group(str(out), mode="w")
    g.attrs["project"] = "someone else's"
    g.create_array("x", shape=(5,), dtype="int32")[:] = np.arange(5)
    before = arrays(out)
    for flag in ("--overwrite", "--resume"):
        code, output = invoke(score_args(world, out, flag))
        assert "not a veff store" in one_line_error(code, output, "")
    after = arrays(out)
    assert after.keys() == before.keys() and np.array_equal(after["x"], before["x"])
    assert zarr.open_group(str(out), mode="r").attrs["project"] == "someone else's"


def test_a_regular_file_at_out_is_refused_and_kept(world, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    for flag in ("--overwrite", "--resume", None):
        code, output = invoke(score_args(world, out, *([flag] if flag else [])))
        assert "is not a directory" in one_line_error(code, output, "")
    assert out.read_text() == "keep me"


def test_an_empty_directory_is_used(world, tmp_path, reference):
    out = tmp_path / "empty"
    out.mkdir()
    code, output = invoke(score_args(world, out))
    assert code == 0, output
    assert_same_store(reference, out)


@pytest.mark.parametrize("shared", [False, True], ids=["score", "partition-writer"])
def test_overwrite_refuses_a_store_another_writer_holds(world, tmp_path, reference, shared):
    out = tmp_path / "busy.zarr"
    shutil.copytree(reference, out)
    before = _state(out)
    fd = take_lock(out, shared=shared, busy="busy")  # another writer (a separate open file)
    try:
        code, output = invoke(score_args(world, out, "--overwrite"))
        assert "held by another writer" in one_line_error(code, output, str(out))
    finally:
        import os

        os.close(fd)
    assert _state(out) == before
    assert_same_store(reference, out)
    code, output = invoke(score_args(world, out, "--overwrite"))  # free again: replaced
    assert code == 0, output
    assert_same_store(reference, out)


# ---------------------------------------------------------------------------- --resume
@pytest.mark.parametrize("after_rows", [40, None], ids=["while-streaming", "before-models"])
def test_resume_restarts_vefs_own_unfinished_store(world, tmp_path, reference, after_rows):
    out = tmp_path / "half.zarr"
    kill_while_creating(out, after_rows=after_rows)
    assert Store.kind(out) == UNSTARTED
    code, output = invoke(score_args(world, out))  # without --resume: it exists
    one_line_error(code, output, f"{out} already exists")
    code, output = invoke(score_args(world, out, "--resume"))
    assert code == 0, output
    assert Store.kind(out) == STARTED
    assert_same_store(reference, out)


# Each setting that changes rows or numbers, with another value: (label in the message, args)
CHANGES = {
    "VARIANTS": lambda w: ["VARIANTS", str(w / "v2.vcf")],
    "--genome": lambda w: ["--genome", str(w / "g2.fa")],
    "--model": lambda w: ["--model", str(w / "m2" / "m")],
    "--stats": lambda w: ["--stats", "logfc"],
    "--no-rc": lambda w: ["--no-rc"],
    "--shifts": lambda w: ["--shifts", "0,1"],
    "--untransform": lambda w: ["--untransform", "new"],
    "--precision": lambda w: ["--precision", "bf16"],
    "--center-bp": lambda w: ["--center-bp", "11"],
    "--ref-mismatch": lambda w: ["--ref-mismatch", "flip"],
    "--max-indel-len": lambda w: ["--max-indel-len", "7"],
    "--chunk-size": lambda w: ["--chunk-size", "32"],
    "--peaks": lambda w: ["--peaks", str(w / "peaks.narrowPeak")],
    "--null-shuffles": lambda w: ["--null-shuffles", "3"],
    "--null-variants": lambda w: ["--null-variants", "21"],
    "--seed": lambda w: ["--seed", "1"],
    "--groups": lambda w: ["--groups", str(w / "groups.yaml")],
    "--background-n": lambda w: ["--background-n", "99"],
    "--no-consensus": lambda w: ["--no-consensus"],
}


def _changed_args(world, out, change):
    args = score_args(world, out, "--resume")
    extra = CHANGES[change](world)
    if extra[0] == "VARIANTS":
        args[1] = extra[1]
    elif extra[0] in args and len(extra) == 2:
        args[args.index(extra[0]) + 1] = extra[1]
    else:
        args += extra
    return args


@pytest.mark.parametrize("change", list(CHANGES))
def test_resume_with_another_setting_is_refused(world, tmp_path, reference, change):
    out = _unfinished_copy(reference, tmp_path / "o.zarr")
    before, data = _state(out), arrays(out)
    code, output = invoke(_changed_args(world, out, change))
    assert code != 0 and "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert lines[0].startswith(f"veff: error: --resume: {change} differs: stored "), output
    assert len(lines) == 2 and lines[1].startswith(f"veff: error: --resume: {out} is unchanged"), output
    assert _state(out) == before
    after = arrays(out)
    assert after.keys() == data.keys()
    for k in data:
        np.testing.assert_array_equal(after[k], data[k], err_msg=k)


def test_every_difference_gets_its_own_line(world, tmp_path, reference):
    out = _unfinished_copy(reference, tmp_path / "o.zarr")
    args = _changed_args(world, out, "--genome") + ["--seed", "5", "--no-rc"]
    code, output = invoke(args)
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 4, output
    assert [ln.split(":")[3].strip() for ln in lines[:3]] == ["--genome differs", "--no-rc differs", "--seed differs"]
    assert "stored 0, now 5" in lines[2] and "stored not given, now given" in lines[1]


def test_resume_accepts_what_does_not_change_results(world, tmp_path, reference):
    """A moved copy of the same VCF, another --batch-size and --devices, --chunk-size left
    out: the resumed store equals the uninterrupted run."""
    out = _unfinished_copy(reference, tmp_path / "o.zarr")
    args = score_args(world, out, "--resume", "--devices", "1")
    args[1] = str(world / "moved" / "v.vcf")
    i = args.index("--chunk-size")
    del args[i : i + 2]
    args[args.index("--batch-size") + 1] = "8"
    code, output = invoke(args)
    assert code == 0, output
    a, b = arrays(reference), arrays(out)
    assert a.keys() == b.keys()
    for k in a:  # another batch size may round differently on some backends
        if a[k].dtype.kind == "f":
            np.testing.assert_allclose(b[k], a[k], atol=1e-5, rtol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(b[k], a[k], err_msg=k)


# ---------------------------------------------------------------------------- plan / run-partition
def test_run_partition_refuses_a_genome_changed_since_plan(world, tmp_path):
    from veff.fingerprint import FingerprintMismatch
    from veff.partition import finalize, plan, run_partition
    from veff.pipeline import RunSpec

    g = tmp_path / "g.fa"
    shutil.copy(world / "g.fa", g)
    spec = RunSpec(variants=str(world / "v.vcf"), genome=str(g), models=(str(world / "m"),),
                   out=str(tmp_path / "p.zarr"), chunk_size=16)
    plan(spec, 2)
    run_partition(tmp_path / "p.zarr", 0)
    g.write_bytes((world / "g2.fa").read_bytes())
    done = sorted(p.name for p in (tmp_path / "p.zarr" / "_veff" / "done").iterdir())
    with pytest.raises(FingerprintMismatch) as e:
        run_partition(tmp_path / "p.zarr", 1)
    assert e.value.lines[0].startswith("run-partition: --genome differs: stored ")
    assert "since `veff plan`" in e.value.lines[-1]
    assert sorted(p.name for p in (tmp_path / "p.zarr" / "_veff" / "done").iterdir()) == done
    g.write_bytes((world / "g.fa").read_bytes())  # the original back: it runs
    run_partition(tmp_path / "p.zarr", 1)
    assert finalize(tmp_path / "p.zarr").num_partitions == 2


# ---------------------------------------------------------------------------- digests
def test_genome_digest_is_content_not_layout_and_sampling_sees_the_sampled_bases(tmp_path, monkeypatch):
    import veff.fingerprint as fpm
    from conftest import write_fasta
    from veff.io.genome import Genome

    rng = np.random.default_rng(11)
    seqs = {"chr1": "".join(rng.choice(list("ACGT"), 9001)), "chr2": "".join(rng.choice(list("ACGT"), 3001))}

    def digest(name, seqs, width=60):
        path = write_fasta(tmp_path / name, seqs, {k: width for k in seqs})
        with Genome(path) as g:
            return fpm.genome_digest(g)

    def same(a, b):
        return fpm._identity("--genome", a) == fpm._identity("--genome", b)

    full = digest("a.fa", seqs)
    assert full["bases"] == "all"
    assert same(full, digest("b.fa", seqs, width=80))  # another line width: the same genome
    lower = {k: v.lower() for k, v in seqs.items()}
    assert same(full, digest("c.fa", lower))  # soft-masking: the models see the same tokens
    edit = dict(seqs, chr1=seqs["chr1"][:4500] + ("A" if seqs["chr1"][4500] != "A" else "C") + seqs["chr1"][4501:])
    assert not same(full, digest("d.fa", edit))
    assert not same(full, digest("e.fa", {"chr1": seqs["chr1"], "chr2b": seqs["chr2"]}))

    monkeypatch.setattr(fpm, "FULL_GENOME_BASES", 0)  # a large genome: 64 stretches per contig
    sampled = digest("f.fa", seqs)
    assert sampled["bases"] == "64 x 32 bp per contig"
    last = len(seqs["chr1"]) - fpm.SAMPLE_LEN
    at = 10 * last // 63 + 3  # inside the 11th stretch
    hit = dict(seqs, chr1=seqs["chr1"][:at] + ("A" if seqs["chr1"][at] != "A" else "C") + seqs["chr1"][at + 1:])
    assert not same(sampled, digest("g.fa", hit))
    assert not same(sampled, digest("h.fa", dict(seqs, chr2=seqs["chr2"][:-1])))  # a length
