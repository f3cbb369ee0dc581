"""Gene-level scores: the GTF reader, exon masks in output bins, and SED / logSED /
GeneMaskLFC on the real mini-Borzoi against an independent float64 numpy computation."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from veff.io.gtf import GTFError, read_gtf
from veff.scoring import genes as gs

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "baskerville"

# Genes of hg38 chr1:1-140,000 (GENCODE-style; coordinates written from memory of the
# annotation, approximately right, which is all this test needs: plausible multi-exon genes
# on both strands, overlapping each other and the eQTL windows).
GENES = {
    ("DDX11L1", "+"): [(11869, 12227), (12613, 12721), (13221, 14409)],
    ("WASH7P", "-"): [(14404, 14501), (15005, 15038), (15796, 15947), (16607, 16765),
                      (16858, 17055), (17233, 17368), (17606, 17742), (17915, 18061),
                      (18268, 18366), (24738, 24891), (29534, 29570)],
    ("MIR1302-2HG", "+"): [(29554, 30039), (30564, 30667), (30976, 31109)],
    ("FAM138A", "-"): [(34554, 35174), (35277, 35481), (35721, 36081)],
    ("OR4F5", "+"): [(65419, 65433), (65520, 65573), (69037, 71585)],
    ("AL627309.1", "-"): [(89295, 91629), (92091, 92240), (110953, 111357), (112700, 112804),
                          (120725, 120932), (129055, 129223), (133374, 133723)],
    ("CICP27", "+"): [(131025, 134836)],
}


def write_gtf(path: Path) -> Path:
    lines = ["#!genome-build GRCh38 (test excerpt)"]
    for i, ((name, strand), exons) in enumerate(GENES.items()):
        attrs = f'gene_id "G{i:03d}"; gene_name "{name}";'
        lines.append("\t".join(["chr1", "T", "gene", str(exons[0][0]), str(exons[-1][1]), ".",
                                strand, ".", attrs]))
        for s, e in exons:  # a second transcript repeats the last exon, overlapping
            for tx in ("1", "2") if (s, e) == exons[-1] else ("1",):
                lines.append("\t".join(["chr1", "T", "exon", str(s), str(e), ".", strand, ".",
                                        f'{attrs} transcript_id "T{i}.{tx}";']))
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_read_gtf_merges_exons_and_finds_tss(tmp_path):
    genes = read_gtf(write_gtf(tmp_path / "g.gtf.gz"))
    assert [g.name for g in genes][:3] == ["DDX11L1", "WASH7P", "MIR1302-2HG"]
    wash = genes[1]
    assert wash.strand == "-" and wash.exons[0] == (14403, 14501) and len(wash.exons) == 11
    assert wash.tss == 29569 and genes[0].tss == 11868
    assert gs.tss_distance(wash, 29569 - 10) == 10 and gs.tss_distance(genes[0], 11868 - 5) == -5


def test_bad_gtf_is_one_error(tmp_path):
    p = tmp_path / "bad.gtf"
    p.write_text("chr1\tT\texon\tx\t10\t.\t+\t.\tgene_id \"a\";\n")
    with pytest.raises(GTFError, match="bad.gtf:1"):
        read_gtf(p)


def _mask_loop(exons, out0, P, bs):
    return np.array([any(s < out0 + (p + 1) * bs and e > out0 + p * bs for s, e in exons)
                     for p in range(P)])


def test_exon_mask_is_any_overlap(tmp_path):
    genes = read_gtf(write_gtf(tmp_path / "g.gtf.gz"))
    for start0 in (-50_000, 0, 7, 40_001):
        w = gs.genes_in_window(genes, "chr1", start0, window_len=4096, num_bins=96, bin_size=32)
        out0 = gs.output_start(start0, window_len=4096, num_bins=96, bin_size=32)
        want = [g for g in genes if _mask_loop(g.exons, out0, 96, 32).any()]
        assert [g.gene_id for g in w.genes] == [g.gene_id for g in want]
        for g, m in zip(w.genes, w.exon_mask):
            np.testing.assert_array_equal(m, _mask_loop(g.exons, out0, 96, 32))


@pytest.fixture(scope="module")
def borzoi_preds(tmp_path_factory):
    for n in ("eval_model.h5", "eval_params.json", "tiny_hg38_targets.txt", "hg38_1m.fa.gz",
              "snp_eqtl.vcf"):
        if not (DATA / n).is_file():
            pytest.skip(f"../shared/data/baskerville/{n} is absent")
    from veff.convert.baskerville import convert_baskerville
    from veff.io.genome import Genome
    from veff.io.windows import build_windows, one_hot
    from veff.models.registry import load_model
    from veff.types import Variant

    d = tmp_path_factory.mktemp("genes")
    convert_baskerville(DATA / "eval_model.h5", DATA / "eval_params.json", d / "mb",
                        targets=DATA / "tiny_hg38_targets.txt")
    h = load_model(str(d / "mb"))
    rows = [line.split("\t") for line in (DATA / "snp_eqtl.vcf").read_text().splitlines()
            if not line.startswith("#")]
    variants = [Variant(chrom=r[0], pos1=int(r[1]), ref=r[3], alt=r[4]) for r in rows]
    w = build_windows(Genome(str(DATA / "hg38_1m.fa.gz")), variants, h.window_len)
    apply = jax.jit(h.apply)
    ref = np.asarray(apply(h.params, one_hot(w.ref))["tracks"])
    alt = np.asarray(apply(h.params, one_hot(w.alt))["tracks"])
    starts = [v.pos1 - 1 - h.window_len // 2 for v in variants]
    return h, ref, alt, starts, write_gtf(d / "g.gtf.gz")


def test_gene_scores_on_the_real_mini_borzoi(borzoi_preds):
    h, ref, alt, starts, gtf = borzoi_preds
    genes = read_gtf(gtf)
    P, T, bs, L = ref.shape[1], ref.shape[2], h.bin_size, h.window_len
    plus, minus, names = gs.strand_tracks(h.tracks)
    assert len(names) == 47
    seen = 0
    for b, start0 in enumerate(starts):
        w = gs.genes_in_window(genes, "chr1", start0, window_len=L, num_bins=P, bin_size=bs)
        got = gs.gene_stats(ref[b:b + 1], alt[b:b + 1], w.exon_mask[None], w.minus[None],
                            plus, minus)
        out0 = start0 + (L - P * bs) // 2
        for gi, g in enumerate(w.genes):
            m = _mask_loop(g.exons, out0, P, bs)
            # tracks of the gene's strand, by name: "+"/"-" suffix, unstranded both
            cols = [t for t in range(T) if not h.track_names[t].endswith("-" if g.strand == "+" else "+")]
            r = ref[b][m][:, cols].astype(np.float64)
            a = alt[b][m][:, cols].astype(np.float64)
            sr, sa = r.sum(0), a.sum(0)
            want = {"SED": sa - sr, "logSED": np.log2(sa + 1) - np.log2(sr + 1),
                    "GeneMaskLFC": np.log(sa / m.sum() + 1e-3) - np.log(sr / m.sum() + 1e-3)}
            size = {"SED": sa + sr, "logSED": np.log2(sa + 1) + np.log2(sr + 1),
                    "GeneMaskLFC": np.abs(np.log(sa / m.sum() + 1e-3)) + 1}
            for k in want:
                err = np.abs(np.asarray(got[k][0, gi]) - want[k])
                assert (err <= 1e-5 * size[k] + 1e-6).all(), (g.name, k, float(err.max()))
            seen += 1
    assert seen >= 8
    # the eQTLs move some gene's expression: not all zero
    assert np.abs(np.asarray(got["SED"])).max() > 0


def test_replicates_average_per_gene():
    rng = np.random.default_rng(0)
    ref, alt = rng.random((3, 2, 10, 4), np.float32), rng.random((3, 2, 10, 4), np.float32)
    mask = rng.random((2, 3, 10)) < 0.4
    mask[:, :, 0] = True
    minus = np.array([[False, True, False], [True, True, False]])
    plus_i, minus_i = np.array([0, 2]), np.array([1, 3])
    mean = gs.gene_stats_replicated(ref, alt, mask, minus, plus_i, minus_i)
    for k in gs.GENE_STATS:
        each = [np.asarray(gs.gene_stats(ref[s], alt[s], mask, minus, plus_i, minus_i)[k])
                for s in range(3)]
        np.testing.assert_allclose(np.asarray(mean[k]), np.mean(each, 0), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):
        gs.gene_stats(ref[0], alt[0], mask, minus, plus_i, minus_i, stats=("nope",))
    assert math.isfinite(float(np.asarray(mean["GeneMaskLFC"]).sum()))


def test_cli_gene_table_on_the_real_mini_borzoi(borzoi_preds, tmp_path):
    """`veff score --genes` stores, per (eQTL, gene) pair, the values of the independent
    numpy computation above; a resumed run gives the same store bitwise."""
    import shutil

    import zarr
    from click.testing import CliRunner

    from tests.helpers_store import assert_same_store
    from veff.cli import main

    h, ref, alt, starts, gtf = borzoi_preds
    args = ["score", str(DATA / "snp_eqtl.vcf"), "--genome", str(DATA / "hg38_1m.fa.gz"),
            "--model", str(Path(gtf).parent / "mb"), "--genes", str(gtf), "--no-rc", "--quiet",
            "--chunk-size", "3", "--batch-size", "2"]
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    r = CliRunner().invoke(main, [*args, "--out", str(a)])
    assert r.exit_code == 0, r.output
    g = zarr.open_group(str(a), mode="r")[f"scores/{h.name}/genes"]
    used = np.asarray(g["variant"][:]) >= 0
    rows = np.asarray(g["variant"][:])[used]
    ids = [str(x) for x in np.asarray(g["gene_id"][:])[used]]
    genes = {x.gene_id: x for x in read_gtf(gtf)}
    P, T, bs, L = ref.shape[1], ref.shape[2], h.bin_size, h.window_len
    want_pairs = []
    for row, start0 in enumerate(starts):
        out0 = start0 + (L - P * bs) // 2
        want_pairs += [(row, x.gene_id) for x in genes.values() if _mask_loop(x.exons, out0, P, bs).any()]
    assert sorted(zip(rows.tolist(), ids)) == sorted(want_pairs) and len(want_pairs) >= 8
    for j, (row, gid) in enumerate(zip(rows, ids)):
        x = genes[gid]
        out0 = starts[row] + (L - P * bs) // 2
        m = _mask_loop(x.exons, out0, P, bs)
        cols = [t for t in range(T) if not h.track_names[t].endswith("-" if x.strand == "+" else "+")]
        sr = ref[row][m][:, cols].astype(np.float64).sum(0)
        sa = alt[row][m][:, cols].astype(np.float64).sum(0)
        want = {"SED": sa - sr, "logSED": np.log2(sa + 1) - np.log2(sr + 1),
                "GeneMaskLFC": np.log(sa / m.sum() + 1e-3) - np.log(sr / m.sum() + 1e-3)}
        size = {"SED": sa + sr, "logSED": np.log2(sa + 1) + np.log2(sr + 1),
                "GeneMaskLFC": np.abs(np.log(sa / m.sum() + 1e-3)) + 1}
        for k in want:
            got = np.asarray(g[k][:])[used][j]
            assert (np.abs(got - want[k]) <= 1e-5 * size[k] + 1e-6).all(), (gid, k)
        assert int(np.asarray(g["tss_distance"][:])[used][j]) == gs.tss_distance(x, starts[row] + L // 2)
    shutil.copytree(a, b)
    (b / "_veff" / "done" / f"{1:08d}").unlink()
    zarr.open_group(str(b), mode="r+")[f"scores/{h.name}/genes/SED"][:] = np.float32(7)
    r = CliRunner().invoke(main, [*args, "--out", str(b), "--resume"])
    assert r.exit_code == 0, r.output
    # only chunk 1 was redone; restore the others' SED from a, then compare everything
    gb = zarr.open_group(str(b), mode="r+")[f"scores/{h.name}/genes"]
    k = gb.attrs["slots_per_chunk"]
    sed_a = np.asarray(g["SED"][:])
    assert np.array_equal(np.asarray(gb["SED"][k:2 * k]).view(np.uint32), sed_a[k:2 * k].view(np.uint32))
    gb["SED"][:k] = sed_a[:k]
    gb["SED"][2 * k:] = sed_a[2 * k:]
    assert_same_store(a, b)
