"""`veff score --genes` end to end on a tiny hand-made Borzoi (no shared data): the stored
(variant, gene) table equals an independent numpy computation from the model's forward, a
resumed run gives the same store bitwise, and `veff export --format genes` writes it."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner

from tests.helpers_store import assert_same_store
from veff.checkpoint import save_checkpoint
from veff.cli import main
from veff.io.genome import Genome
from veff.io.windows import build_windows, one_hot
from veff.models import borzoi as bz
from veff.models.registry import load_model
from veff.types import Variant

CFG = bz.BorzoiConfig.small(
    window_len=2048, crop_bins=8, heads=(("human", 5),), position_basis_length=2048,
    conv_dna_filters=3, res_filters=(5, 7, 5, 7, 11, 13), num_heads=2, key_size=3, value_size=5,
    num_layers=1, ffn_dim=26, final_filters=7)
TRACKS = [{"name": "a+", "strand_pair": 1}, {"name": "a-", "strand_pair": 0}, {"name": "u"},
          {"name": "b+", "strand_pair": 4}, {"name": "b-", "strand_pair": 3}]
# (gene_id, name, strand, exons as 1-based inclusive GTF coordinates)
GENES = [
    ("g1", "ALPHA", "+", [(1000, 1100), (1300, 1420)]),
    ("g2", "BETA", "-", [(1380, 1500), (1900, 2050), (2400, 2401)]),
    ("g3", "GAMMA", "+", [(2600, 2990)]),
    ("g4", "DELTA", "-", [(500, 520)]),
    ("g5", "FAR", "+", [(9000, 9100)]),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("genes_e2e")
    rng = np.random.default_rng(3)
    seq = "".join(rng.choice(list("ACGT"), 12_000))
    (d / "g.fa").write_text(">chr1\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    lines = []
    for gid, name, strand, exons in GENES:
        for s, e in exons:
            lines.append("\t".join(["chr1", "T", "exon", str(s), str(e), ".", strand, ".",
                                    f'gene_id "{gid}"; gene_name "{name}";']))
    (d / "genes.gtf").write_text("\n".join(lines) + "\n")
    rows = []
    for i, pos in enumerate([700, 1200, 1500, 1777, 2100, 2500, 3100, 5000, 6100, 8800, 9050]):
        ref = seq[pos - 1]
        rows.append(f"chr1\t{pos}\tv{i}\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\t.\t.\t.")
    rows.append("chr1\t1600\tbad\tN\tA\t.\t.\t.")  # not ok: no pairs
    (d / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                             + "\n".join(rows) + "\n")
    save_checkpoint(d / "tb", arch="borzoi", config=CFG.to_dict(),
                    params=bz.init_params(CFG, jax.random.key(7)), tracks=TRACKS,
                    metadata={"name": "tb"})
    return d


def _score(world, out, *extra):
    r = CliRunner().invoke(main, ["score", str(world / "v.vcf"), "--genome", str(world / "g.fa"),
                                  "--model", str(world / "tb"), "--out", str(out), "--quiet",
                                  "--genes", str(world / "genes.gtf"), "--chunk-size", "4",
                                  "--batch-size", "3", *extra])
    assert r.exit_code == 0, r.output
    return zarr.open_group(str(out), mode="r")


def expected_gene_table(world, h, ref, alt, variants, starts):
    """float64 numpy: genes by an exon-overlap loop, tracks by their name suffix."""
    P, bs, L = ref.shape[1], h.bin_size, h.window_len
    out = []
    for b, (v, start0) in enumerate(zip(variants, starts)):
        out0 = start0 + (L - P * bs) // 2
        # the table's order: variant, then the GTF's (contig, start, gene_id)
        for gid, name, strand, exons in sorted(GENES, key=lambda g: (g[3][0][0], g[0])):
            ex = [(s - 1, e) for s, e in exons]
            m = np.array([any(s < out0 + (p + 1) * bs and e > out0 + p * bs for s, e in ex)
                          for p in range(P)])
            if not m.any():
                continue
            other = "-" if strand == "+" else "+"
            cols = [t for t, n in enumerate(h.track_names) if not n.endswith(other)]
            sr = ref[b][m][:, cols].astype(np.float64).sum(0)
            sa = alt[b][m][:, cols].astype(np.float64).sum(0)
            tss = ex[0][0] if strand == "+" else ex[-1][1] - 1
            dist = (v.pos1 - 1 - tss) * (1 if strand == "+" else -1)
            out.append((b, gid, name, strand, dist, {
                "SED": sa - sr, "logSED": np.log2(sa + 1) - np.log2(sr + 1),
                "GeneMaskLFC": np.log(sa / m.sum() + 1e-3) - np.log(sr / m.sum() + 1e-3)}))
    return out


def check_table(g, expected):
    used = np.asarray(g["variant"][:]) >= 0
    assert int(used.sum()) == len(expected)
    cols = {k: np.asarray(g[k][:])[used] for k in ("variant", "gene_id", "gene_name", "strand",
                                                     "tss_distance")}
    for j, (b, gid, name, strand, dist, want) in enumerate(expected):
        assert (cols["variant"][j], str(cols["gene_id"][j]), str(cols["gene_name"][j]),
                str(cols["strand"][j]), cols["tss_distance"][j]) == (b, gid, name, strand, dist)
        for k, w in want.items():
            got = np.asarray(g[k][:])[used][j]
            size = np.abs(w) + 1
            assert (np.abs(got - w) <= 1e-5 * size).all(), (j, k, got, w)
    assert len(g["track"][:]) == 3  # a, u, b: strand pairs selected per gene


def test_tiny_borzoi_gene_table_and_resume(world, tmp_path):
    root = _score(world, tmp_path / "a.zarr", "--no-rc")
    g = root["scores/tb/genes"]
    h = load_model(str(world / "tb"))
    rows = [line.split("\t") for line in (world / "v.vcf").read_text().splitlines()
            if not line.startswith("#")][:-1]
    variants = [Variant(chrom="chr1", pos1=int(r[1]), ref=r[3], alt=r[4]) for r in rows]
    w = build_windows(Genome(str(world / "g.fa")), variants, h.window_len)
    apply = jax.jit(h.apply)
    ref = np.asarray(apply(h.params, one_hot(w.ref))["tracks"])
    alt = np.asarray(apply(h.params, one_hot(w.alt))["tracks"])
    starts = [v.pos1 - 1 - h.window_len // 2 for v in variants]
    expected = expected_gene_table(world, h, ref, alt, variants, starts)
    assert {e[1] for e in expected} == {"g1", "g2", "g3", "g4", "g5"}
    check_table(g, expected)
    assert g.attrs["max_genes"] >= 3 and g.attrs["num_pairs"] == len(expected)
    # chunks of 4 variants own fixed slot ranges: a chunk's stats are one Zarr chunk
    assert g["SED"].chunks[0] == g.attrs["slots_per_chunk"]

    # resume: drop chunk 1's marker and corrupt its slots, then --resume: bitwise the same
    b = tmp_path / "b.zarr"
    shutil.copytree(tmp_path / "a.zarr", b)
    (b / "_veff" / "done" / f"{1:08d}").unlink()
    gb = zarr.open_group(str(b), mode="r+")["scores/tb/genes"]
    k = gb.attrs["slots_per_chunk"]
    gb["SED"][k: 2 * k] = 123.0
    gb["logSED"][k: 2 * k] = np.nan
    _score(world, b, "--no-rc", "--resume")
    assert_same_store(tmp_path / "a.zarr", b)

    out = tmp_path / "genes.tsv"
    r = CliRunner().invoke(main, ["export", str(tmp_path / "a.zarr"), "--format", "genes", "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out, sep="\t", comment="#")
    assert list(df.columns) == ["chrom", "pos", "ref", "alt", "id", "model", "gene_id", "gene_name",
                                "strand", "tss_distance", "track", "statistic", "value"]
    assert len(df) == len(expected) * 3 * 3
    first = df[(df.gene_id == expected[0][1]) & (df.statistic == "SED") & (df.id == f"v{expected[0][0]}")]
    np.testing.assert_allclose(first["value"].to_numpy(), expected[0][5]["SED"], rtol=1e-5, atol=1e-6)


def test_rc_runs_and_resume_guards(world, tmp_path):
    root = _score(world, tmp_path / "rc.zarr")  # RC averaging on: a finite table
    sed = np.asarray(root["scores/tb/genes/SED"][:])
    used = np.asarray(root["scores/tb/genes/variant"][:]) >= 0
    assert np.isfinite(sed[used]).all() and np.isnan(sed[~used]).all()
    other = tmp_path / "other.gtf"
    other.write_text((world / "genes.gtf").read_text().replace("ALPHA", "ALPHA2"))
    r = CliRunner().invoke(main, ["score", str(world / "v.vcf"), "--genome", str(world / "g.fa"),
                                  "--model", str(world / "tb"), "--out", str(tmp_path / "rc.zarr"),
                                  "--quiet", "--genes", str(other), "--resume"])
    assert r.exit_code == 1 and "--genes differs" in r.output


def test_genes_need_a_binned_model(tmp_path):
    from tests.test_score_e2e import CFG as BP_CFG
    from veff.models import bpnet

    (tmp_path / "g.fa").write_text(">chr1\n" + "ACGT" * 200 + "\n")
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                    "chr1\t400\t.\tA\tC\t.\t.\t.\n")
    (tmp_path / "x.gtf").write_text('chr1\tT\texon\t1\t10\t.\t+\t.\tgene_id "a";\n')
    save_checkpoint(tmp_path / "bp", arch="bpnet", config=BP_CFG.to_dict(),
                    params=bpnet.init(BP_CFG, jax.random.key(0)), metadata={"name": "bp"})
    r = CliRunner().invoke(main, ["score", str(tmp_path / "v.vcf"), "--genome", str(tmp_path / "g.fa"),
                                  "--model", str(tmp_path / "bp"), "--out", str(tmp_path / "o.zarr"),
                                  "--quiet", "--genes", str(tmp_path / "x.gtf")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "binned model" in r.output
