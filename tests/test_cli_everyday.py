"""The README's everyday commands, run as a user runs them (``python -m veff.cli`` in a
subprocess) on the shipped demo files: check, score (NAME=PATH), resume, export (polyfun
into a new directory, TSV to stdout, the input VCF annotated with its samples kept), help,
and the one-line answers to typos."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo"
pytestmark = pytest.mark.skipif(not (DEMO / "variants.vcf").is_file(), reason="no demo files")


def veff(*args, cwd, env=None, code=0):
    r = subprocess.run([sys.executable, "-m", "veff.cli", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "VEFF_JAX_CACHE": "",
                            **(env or {})})
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r


def _samples_vcf(path: Path, n: int = 24) -> None:
    """The first ``n`` demo records with QUAL, FILTER, two samples and FORMAT fields, and one
    record made multi-allelic (a second ALT)."""
    head, recs = [], []
    for line in (DEMO / "variants.vcf").read_text().splitlines():
        if line.startswith("##"):
            head.append(line)
        elif not line.startswith("#") and len(recs) < n:
            recs.append(line.split("\t")[:8])
    head += ['##FILTER=<ID=lowq,Description="low quality">',
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2"]
    out = []
    for i, f in enumerate(recs):
        f[5] = str(10 + i)
        f[6] = "lowq" if i % 5 == 0 else "PASS"
        if i == 3:
            f[4] += "," + next(b for b in "ACGT" if b not in (f[3][0], f[4]))
        out.append("\t".join([*f, "GT:DP", f"0/1:{i + 3}", f"1/1:{i + 7}"]))
    path.write_text("\n".join(head + out) + "\n")


@pytest.mark.slow
def test_everyday_commands(tmp_path):
    vcf = tmp_path / "in.vcf"
    _samples_vcf(vcf)
    genome = tmp_path / "genome.fa"
    shutil.copy(DEMO / "genome.fa", genome)
    shutil.copy(DEMO / "genome.fa.fai", tmp_path / "genome.fa.fai")
    env = {"VEFF_CACHE": str(tmp_path / "cache"), "VEFF_MODELS": str(tmp_path / "models")}
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "enformer").symlink_to(DEMO / "nobias")

    veff("check", vcf, "--genome", genome, cwd=tmp_path)

    # typos: one line, the valid names, and a suggestion
    r = veff("score", vcf, "--genome", genome, "--model", "enformr", "-o", "x.zarr", cwd=tmp_path, env=env, code=1)
    assert r.stderr.count("\n") == 1 and "did you mean 'enformer'?" in r.stderr, r.stderr
    r = veff("score", vcf, "--genome", genome, "--model", "enformer", "--stats", "jsdd", "-o", "x.zarr",
             cwd=tmp_path, env=env, code=2)
    assert r.stderr.count("\n") == 1 and "did you mean 'jsd'?" in r.stderr, r.stderr
    r = veff("score", vcf, "--genome", genome, "--model", DEMO / "nobias", "--model", DEMO / "nobias",
             "-o", "x.zarr", cwd=tmp_path, env=env, code=1)
    assert "NAME=PATH" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "x.zarr").exists()

    args = ["score", vcf, "--genome", genome, "--model", f"acc={DEMO / 'nobias'}",
            "--model", f"full={DEMO / 'full'}", "-o", "s.zarr", "--background-n", "48",
            "--batch-size", "16", "--quiet"]
    r = veff(*args, cwd=tmp_path, env=env)
    assert f"acc={DEMO / 'nobias'} -> scores/acc" in r.stderr and "-> scores/full" in r.stderr
    assert "consensus background for acc" not in r.stderr  # --quiet
    attrs = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["models"] == ["acc", "full"]
    prov = attrs["provenance"]
    assert prov["command"][:2] == ["veff", "score"] and prov["finished"] >= prov["started"]
    assert prov["inputs"]["variants"]["path"] == str(vcf.resolve())
    assert prov["inputs"]["variants"]["sha256"] == attrs["fingerprint"]["VARIANTS"]["sha256"]
    assert [m["name"] for m in prov["models"]] == ["acc", "full"]
    assert prov["models"][0]["path"] == str((DEMO / "nobias").resolve())
    assert {"veff", "jax", "numpy", "zarr"} <= set(prov["versions"]) and prov["devices"]["count"] >= 1
    r = veff(*args, "--resume", cwd=tmp_path, env=env)
    assert "0 chunk(s) scored" in r.stderr

    # polyfun into a directory that does not exist yet (the README's line)
    r = veff("export", "s.zarr", "--format", "polyfun", "--out", "annot/veff", cwd=tmp_path)
    files = sorted((tmp_path / "annot").glob("veff.*.annot.parquet"))
    assert files and all(f"wrote annot/veff.{f.name.split('.')[1]}.annot.parquet" in r.stdout for f in files)
    pf = pd.concat([pd.read_parquet(f) for f in files])
    assert pf.SNP.is_unique and "acc_original_jsd_maxabs" not in pf.columns
    assert "acc_ref_counts_maxabs" not in pf.columns and "acc_logfc_maxabs" in pf.columns

    # TSV to standard output, provenance as # lines
    r = veff("export", "s.zarr", "--format", "tsv", "-o", "-", "--wide", cwd=tmp_path)
    assert r.stdout.startswith("# veff export") and "wrote" not in r.stdout
    assert "# run.command: veff score" in r.stdout
    df = pd.read_csv(io.StringIO(r.stdout), sep="\t", comment="#", keep_default_na=False, na_values=["NA"])
    assert len(df) == 25 and any(c.startswith("acc/") and c.endswith("/logfc") for c in df.columns)

    # the input VCF annotated: QUAL, FILTER, INFO, FORMAT and samples kept, bgzipped + index
    veff("export", "s.zarr", "--format", "vcf", "-o", "ann.vcf.gz", cwd=tmp_path)
    from cyvcf2 import VCF

    src, ann = list(VCF(str(vcf))), VCF(str(tmp_path / "ann.vcf.gz"))
    assert ann.samples == ["S1", "S2"] and (tmp_path / "ann.vcf.gz.tbi").is_file()
    assert "##contig=<ID=chr1,length=500000>" in ann.raw_header and "##veff.run.command=veff score" in ann.raw_header
    out = list(ann)
    assert len(out) == len(src)
    for a, b in zip(src, out):
        assert (a.CHROM, a.POS, a.REF, a.ALT, a.QUAL, a.FILTER) == (b.CHROM, b.POS, b.REF, b.ALT, b.QUAL, b.FILTER)
        np.testing.assert_array_equal(a.format("DP"), b.format("DP"))
        assert a.genotypes == b.genotypes
        assert b.INFO.get("CLASS") == a.INFO.get("CLASS")
        logfc = np.atleast_1d(b.INFO.get("VEFF_acc_logfc"))
        assert len(logfc) == len(b.ALT)
    multi = out[3]
    assert len(multi.ALT) == 2 and len(np.atleast_1d(multi.INFO.get("VEFF_acc_logfc"))) == 2
    region = list(VCF(str(tmp_path / "ann.vcf.gz"))(f"{out[0].CHROM}:{out[0].POS}-{out[0].POS}"))
    assert [r.POS for r in region] == [out[0].POS]  # cyvcf2 reads the index
    if shutil.which("bcftools"):
        r = subprocess.run(["bcftools", "view", "-H", str(tmp_path / "ann.vcf.gz")],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "" and r.stdout.count("\n") == len(src), r.stderr
    veff("export", "s.zarr", "--format", "vcf", "-o", "ann.vcf", cwd=tmp_path)
    assert (tmp_path / "ann.vcf").read_text().startswith("##fileformat=VCFv4")

    # the input changed since scoring: one line, then a sites-only VCF
    vcf.write_text(vcf.read_text().replace("\t10\t", "\t11\t", 1))
    r = veff("export", "s.zarr", "--format", "vcf", "-o", "sites.vcf", cwd=tmp_path)
    assert "changed since scoring" in r.stderr and r.stderr.count("\n") == 1
    assert "\tFORMAT" not in (tmp_path / "sites.vcf").read_text()

    # docs shipped with the package
    r = veff("help", "export", cwd=tmp_path)
    assert r.stdout.startswith("# Exports")
    r = veff("help", "exprot", cwd=tmp_path, code=1)
    assert "did you mean 'export'?" in r.stderr and r.stderr.count("\n") == 1
    assert "docs/" not in veff("score", "--help", cwd=tmp_path).stdout


def test_background_stop_then_resume_writes_the_consensus(tmp_path, monkeypatch):
    """Ctrl-C in the background phase stops at once; --resume computes it and writes
    consensus/ (the store was already complete)."""
    import zarr

    from veff import backgrounds
    from veff.engine import ScoreOptions
    from veff.pipeline import RunSpec, run
    from veff.signals import Interrupted, StopRequest

    monkeypatch.setenv("VEFF_CACHE", str(tmp_path / "cache"))
    vcf = tmp_path / "in.vcf"
    _samples_vcf(vcf, n=12)
    spec = RunSpec(variants=str(vcf), genome=str(DEMO / "genome.fa"),
                   models=(f"a={DEMO / 'nobias'}", f"b={DEMO / 'full'}"), out=str(tmp_path / "s.zarr"),
                   options=ScoreOptions(batch_size=16), chunk_size=16, background_n=32)
    stop, seen = StopRequest(), []
    stop.set(2)
    with backgrounds.phase_hooks(stop=stop, start=lambda m, n: seen.append((m, n))):
        with pytest.raises(Interrupted, match="--resume to write the consensus"):
            run(spec)
    assert seen == [("a", 32)]
    root = zarr.open_group(spec.out, mode="r")
    assert root.attrs["complete"] and "consensus" not in root
    done = []
    with backgrounds.phase_hooks(progress=lambda k, n: done.append((k, n))):
        result = run(dataclasses.replace(spec, resume=True))
    assert result.consensus_groups and sum(k for k, _ in done) == 2 * 32
    root = zarr.open_group(spec.out, mode="r")
    assert "consensus" in root and root.attrs["provenance"]["resumed"]


@pytest.mark.parametrize("lib", ["httpx", "requests", "socket"])
def test_fetch_network_failure_is_one_line_naming_offline(tmp_path, monkeypatch, lib):
    import huggingface_hub

    if lib == "httpx":
        httpx = pytest.importorskip("httpx")
        exc = httpx.ConnectError("[Errno -3] Temporary failure in name resolution")
    elif lib == "requests":
        requests = pytest.importorskip("requests")
        exc = requests.ConnectionError("Max retries exceeded")
    else:
        exc = OSError(101, "Network is unreachable")

    def no_network(*a, **k):
        raise exc

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    from veff.fetch import FetchError, fetch

    with pytest.raises(FetchError) as e:
        fetch("enformer", cache_dir=tmp_path / "hub", models_dir=tmp_path / "models", offline=False)
    msg = str(e.value)
    assert "\n" not in msg and "cannot reach the Hugging Face hub" in msg and "--offline" in msg
    assert type(exc).__name__ in msg
