"""`veff score` end to end on a tiny genome and a tiny BPNet: store contract, statuses,
invariances (REF/ALT swap, batch size, incremental vs full ALT, device count via sharding)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from veff.checkpoint import save_checkpoint
from veff.cli import main
from veff.engine import ModelScorer, ScoreOptions
from veff.io.genome import Genome
from veff.io.vcf import read_variants
from veff.io.windows import build_windows
from veff.models import bpnet
from veff.models.registry import load_model

CFG = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    rng = np.random.default_rng(11)
    seqs = {"chr1": "".join(rng.choice(list("ACGT"), 3001)), "chr2": "".join(rng.choice(list("ACGT"), 1013))}
    with open(d / "g.fa", "w") as fh:
        for name, s in seqs.items():
            fh.write(f">{name}\n" + "\n".join(s[i : i + 70] for i in range(0, len(s), 70)) + "\n")
    rows, flip_rows = [], []
    for i, pos in enumerate(range(300, 2700, 37)):
        ref = seqs["chr1"][pos - 1]
        alt = "ACGT"[("ACGT".index(ref) + 1 + i % 3) % 4]
        rows.append(("chr1", pos, ref, alt))
        flip_rows.append(("chr1", pos, alt, ref))
    ref3 = seqs["chr1"][999:1003]
    rows += [
        ("chr1", 1000, ref3, ref3[0]),  # deletion
        ("chr1", 1500, seqs["chr1"][1499], seqs["chr1"][1499] + "GATTACA"),  # insertion
        ("chr2", 20, seqs["chr2"][19], "T" if seqs["chr2"][19] != "T" else "A"),  # padded window
        ("chrUn", 5, "A", "G"),  # unknown contig
        ("chr1", 777, "A" if seqs["chr1"][776] != "A" else "C", "G"),  # ref mismatch
    ]
    def vcf(path, rs):
        with open(path, "w") as fh:
            fh.write("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=3001>\n##contig=<ID=chr2,length=1013>\n")
            fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
            for j, (c, p, r, a) in enumerate(rs):
                fh.write(f"{c}\t{p}\tv{j}\t{r}\t{a}\t.\t.\t.\n")
    vcf(d / "v.vcf", rows)
    vcf(d / "flip.vcf", flip_rows)
    save_checkpoint(d / "tiny", arch="bpnet", config=CFG.to_dict(), params=bpnet.init(CFG, jax.random.key(5)),
                    metadata={"name": "tiny"})
    return d


def _score(world, out, vcf="v.vcf", *extra):
    r = CliRunner().invoke(main, ["score", str(world / vcf), "--genome", str(world / "g.fa"),
                                   "--model", str(world / "tiny"), "--out", str(out), "--quiet", *extra])
    assert r.exit_code == 0, r.output
    return xr.open_zarr(out, group="variants"), xr.open_zarr(out, group="scores/tiny")


def test_store_contract_and_statuses(world, tmp_path):
    v, s = _score(world, tmp_path / "o.zarr")
    status = list(v["status"].values)
    assert len(status) == 65 + 5
    assert status.count("ok") == 68
    assert status[-2:] == ["unknown_contig", "ref_mismatch"]
    assert s["logfc"].dims == ("variant", "track") and s["logfc"].shape == (70, 1)
    ok = np.array(status) == "ok"
    for stat in ("logfc", "abs_logfc", "jsd", "logfc_x_jsd", "abs_logfc_x_jsd"):
        vals = s[stat].values[:, 0]
        assert np.isfinite(vals[ok]).all() and np.isnan(vals[~ok]).all(), stat
    assert bool(s["window_padded"].values[67]) and not s["window_padded"].values[:65].any()
    assert np.abs(s["logfc"].values[ok]).max() > 0
    root = xr.open_zarr(tmp_path / "o.zarr")
    assert "centring" in root.attrs and root.attrs["complete"]


def test_flip_mode_orients_scores_to_the_input_alleles(world, tmp_path):
    v0, s = _score(world, tmp_path / "a.zarr")
    v1, f = _score(world, tmp_path / "b.zarr", "flip.vcf", "--ref-mismatch", "flip")
    n = 65
    assert v1["flipped"].values.all() and not v0["flipped"].values[:n].any()
    # the store keeps the input's alleles, and the scores refer to them
    assert list(v1["ref"].values) == list(v0["alt"].values[:n])
    assert list(v1["alt"].values) == list(v0["ref"].values[:n])
    np.testing.assert_allclose(f["logfc"].values, -s["logfc"].values[:n], atol=1e-6)
    for k in ("abs_logfc", "jsd"):
        np.testing.assert_allclose(f[k].values, s[k].values[:n], atol=1e-6, err_msg=k)
    np.testing.assert_allclose(f["ref_counts"].values, s["alt_counts"].values[:n], rtol=1e-5)


def test_ref_alt_swap_negates_signed_scores(world):
    genome = Genome(world / "g.fa")
    variants = list(read_variants(world / "v.vcf", genome))[:65]
    handle = load_model(str(world / "tiny"))
    w = build_windows(genome, variants, handle.window_len)
    swapped = dataclasses.replace(w, ref=w.alt, alt=w.ref)
    with jax.default_matmul_precision("highest"):
        a = ModelScorer(handle, ScoreOptions()).score(w)
        b = ModelScorer(handle, ScoreOptions()).score(swapped)
        same = ModelScorer(handle, ScoreOptions()).score(dataclasses.replace(w, alt=w.ref))
    np.testing.assert_allclose(b["logfc"], -a["logfc"], atol=1e-6)
    for k in ("abs_logfc", "jsd", "abs_logfc_x_jsd"):
        np.testing.assert_allclose(b[k], a[k], atol=1e-6, err_msg=k)
    for k in ("logfc", "abs_logfc", "jsd", "logfc_x_jsd"):
        np.testing.assert_allclose(same[k], 0.0, atol=1e-6, err_msg=k)


def test_batch_size_and_incremental_invariance(world):
    genome = Genome(world / "g.fa")
    variants = list(read_variants(world / "v.vcf", genome))
    handle = load_model(str(world / "tiny"))
    w = build_windows(genome, variants, handle.window_len)
    with jax.default_matmul_precision("highest"):
        base = ModelScorer(handle, ScoreOptions(batch_size=64)).score(w)
        for bs in (1, 7):
            other = ModelScorer(handle, ScoreOptions(batch_size=bs)).score(w)
            for k in base:
                np.testing.assert_allclose(other[k], base[k], atol=1e-6, rtol=1e-6, err_msg=k)
        assert handle.apply_pair is not None
        full = ModelScorer(dataclasses.replace(handle, apply_pair=None), ScoreOptions(batch_size=64)).score(w)
    for k in base:
        np.testing.assert_allclose(full[k], base[k], atol=1e-5, rtol=1e-5, err_msg=k)


def test_no_rc_differs_and_stats_selection(world, tmp_path):
    _, s = _score(world, tmp_path / "rc.zarr")
    _, n = _score(world, tmp_path / "norc.zarr", "v.vcf", "--no-rc", "--stats", "logfc,jsd")
    assert set(n.data_vars) == {"logfc", "jsd", "window_padded"}
    assert not np.allclose(n["logfc"].values[:65], s["logfc"].values[:65])


def test_bad_inputs_give_one_line(world, tmp_path):
    r = CliRunner().invoke(main, ["score", str(world / "v.vcf"), "--genome", str(world / "missing.fa"),
                                   "--model", str(world / "tiny"), "--out", str(tmp_path / "x.zarr")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "missing.fa" in r.output
    r = CliRunner().invoke(main, ["score", str(world / "v.vcf"), "--genome", str(world / "g.fa"),
                                   "--model", str(world / "tiny"), "--out", str(tmp_path / "y.zarr"),
                                   "--stats", "nonsense"])
    assert r.exit_code == 2 and "nonsense" in r.output


def test_peaks_give_active_allele_quantiles(world, tmp_path):
    peaks = tmp_path / "p.narrowPeak"
    peaks.write_text("".join(f"chr1\t{s}\t{s + 200}\tp{i}\t0\t.\t0\t0\t0\t100\n"
                             for i, s in enumerate(range(200, 2600, 150))))
    _, s = _score(world, tmp_path / "p.zarr", "v.vcf", "--peaks", str(peaks))
    counts = s["peak_counts"].values
    assert counts.ndim == 1 and len(counts) >= 10 and (np.diff(counts) >= 0).all()
    c1 = s["ref_counts"].values[:65, 0]
    q1 = np.maximum((counts[None, :] < c1[:, None]).mean(axis=1), 1 / len(counts))
    np.testing.assert_allclose(s["allele1_quantile"].values[:65, 0], q1, atol=1e-6)
    aaq = s["active_allele_quantile"].values[:65, 0]
    np.testing.assert_allclose(aaq, np.maximum(q1, s["allele2_quantile"].values[:65, 0]), atol=1e-6)
    ips = s["logfc_x_jsd_x_active_allele_quantile"].values[:65, 0]
    np.testing.assert_allclose(ips, s["logfc_x_jsd"].values[:65, 0] * aaq, rtol=1e-5, atol=1e-9)
