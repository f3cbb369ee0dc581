"""`veff score` with a reduced-width AlphaGenome checkpoint and the demo chromBPNet in one
pass: AlphaGenome's CenterMask aggregations (veff.scoring.tracks, alphagenome names) are
written for SNVs and indels next to the chromBPNet scores."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from veff.checkpoint import flatten, save_checkpoint
from veff.cli import main
from veff.models import alphagenome as ag
from veff.models.registry import load_model

DEMO = Path(__file__).resolve().parents[2] / "checkpoints" / "demo"


def _contig(fasta: Path, name: str) -> str:
    seq, on = [], False
    for line in fasta.read_text().splitlines():
        if line.startswith(">"):
            if on:
                break
            on = line[1:].split()[0] == name
        elif on:
            seq.append(line.strip())
    return "".join(seq)


@pytest.fixture(scope="module")
def ag_ckpt(tmp_path_factory):
    cfg = ag.AlphaGenomeConfig.tiny()
    d = tmp_path_factory.mktemp("ag") / "ag_tiny"
    params = {k: np.asarray(v) for k, v in flatten(ag.init(cfg, jax.random.key(3))).items()}
    tracks = [{"name": f"{n}_{i}"} for n in cfg.output_heads for i in range(cfg.head_dict[n][1])]
    save_checkpoint(d, arch="alphagenome", config=cfg.to_dict(), params=params, tracks=tracks,
                    metadata={"name": "ag_tiny", "window_len": cfg.window_len,
                              "output_len": cfg.output_len})
    return d


def test_handle(ag_ckpt):
    h = load_model(str(ag_ckpt))
    assert (h.kind, h.window_len, h.output_len, h.bin_size) == ("binned", 6144, 48, 128)
    assert len(h.tracks) == 5


def test_score_with_chrombpnet_in_one_pass(ag_ckpt, tmp_path):
    if not (DEMO / "nobias").is_dir():
        pytest.skip("demo checkpoints absent")
    lines = [l for l in (DEMO / "variants.vcf").read_text().splitlines(keepends=True)]
    head = [l for l in lines if l.startswith("#")]
    body = [l for l in lines if not l.startswith("#")][:4]
    # one deletion and one insertion at the first variant's neighbourhood
    f = body[0].split("\t")
    pos = int(f[1]) + 50
    ref3 = _contig(DEMO / "genome.fa", f[0])[pos - 1 : pos + 2].upper()
    indels = [f"{f[0]}\t{pos}\tdel\t{ref3}\t{ref3[0]}\t.\tPASS\t.\n",
              f"{f[0]}\t{pos + 1}\tins\t{ref3[1]}\t{ref3[1]}GATT\t.\tPASS\t.\n"]
    vcf = tmp_path / "v.vcf"
    vcf.write_text("".join(head + body + indels))
    out = tmp_path / "s.zarr"
    r = CliRunner().invoke(main, ["score", str(vcf), "--genome", str(DEMO / "genome.fa"),
                                   "--model", str(DEMO / "nobias"), "--model", str(ag_ckpt),
                                   "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    variants = xr.open_zarr(out, group="variants")
    assert variants.sizes["variant"] == 6
    ag_scores = xr.open_zarr(out, group="scores/ag_tiny")
    bp_scores = xr.open_zarr(out, group="scores/demo_nobias")
    assert len(bp_scores.data_vars) > 0
    names = set(ag_scores.data_vars)
    # AlphaGenome's recommended CenterMask scorer (DIFF_LOG2_SUM, 501 bp) is a default
    assert "DIFF_LOG2_SUM@501" in names, sorted(names)
    key = next(n for n in names if "DIFF_LOG2_SUM@501" in n)
    vals = np.asarray(ag_scores[key])
    assert vals.shape[-1] == 5 and np.isfinite(vals).all()
    assert np.abs(vals).max() > 0  # the variants change the predictions (indels included)
