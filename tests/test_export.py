"""`veff export`: TSV/Parquet (long and wide), PolyFun annotations and a bgzipped VCF, each
read back and compared value by value with the store."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_consensus import BG, hand_bg  # noqa: E402

from veff import consensus as cs  # noqa: E402
from veff.export import ExportError, export, plink_chrom  # noqa: E402
from veff.store import Store  # noqa: E402
from veff.types import Status, Variant  # noqa: E402

TRACKS = ["DNASE:K562", "ATAC@HepG2 x"]  # '@' and a space must survive / be sanitised


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """7 rows: a bi-allelic record (rows 1, 2), a non-ok row, chrX and an unplaced contig."""
    path = tmp_path_factory.mktemp("exp") / "s.zarr"
    rows = [
        Variant(chrom="chr1", pos1=100, ref="A", alt="G", id="rs1", record=0),
        Variant(chrom="chr1", pos1=200, ref="C", alt="T", id="rs2", record=1, orig_pos1=200, orig_ref="CG",
                orig_alt="TG"),
        Variant(chrom="chr1", pos1=201, ref="G", alt="GA", id="rs2", record=1, orig_pos1=200, orig_ref="CG", orig_alt="CGA"),
        Variant(chrom="chr2", pos1=50, ref="T", alt="A", id=".", record=2, status=Status.REF_MISMATCH),
        Variant(chrom="chr2", pos1=40, ref="G", alt="C", id="rs4", record=3),
        Variant(chrom="chrX", pos1=7, ref="A", alt="C", id="rs5", record=4),
        Variant(chrom="chrUn_1", pos1=9, ref="A", alt="T", id="rs6", record=5),
    ]
    n = len(rows)
    rng = np.random.default_rng(1)
    prof = rng.normal(size=(n, 1)).astype(np.float32) * 30
    big = rng.normal(size=(n, 2)).astype(np.float32) * 30
    prof[3], big[3] = np.nan, np.nan
    s = Store.create(path, rows, chunk_size=3, run_config={})
    s.add_model("prof", tracks=["prof"], stats={"logfc": "log2(c2/c1)", "jsd": 'JS "distance"'},
                attrs={"kind": "profile", "checkpoint_sha256": "sha-prof"})
    s.add_model("big", tracks=TRACKS, stats={"logSUM": "f", "DIFF_LOG2_SUM@501": "g"},
                attrs={"kind": "binned", "checkpoint_sha256": "sha-big"})
    for c in range(s.num_chunks):
        a, b = s.chunk_range(c)
        s.write_scores("prof", a, {"logfc": prof[a:b], "jsd": np.abs(prof[a:b])}, np.zeros(b - a, bool))
        s.write_scores("big", a, {"logSUM": big[a:b], "DIFF_LOG2_SUM@501": -big[a:b]}, np.zeros(b - a, bool))
        s.mark_done(c)
    s.finalize()
    s.close()
    cs.write_consensus(path, backgrounds={"prof": hand_bg("prof", {"logfc": BG}, ["prof"]),
                                          "big": hand_bg("big", {"logSUM": np.concatenate([BG, BG], 1)}, TRACKS)})
    truth = {("prof", "prof", "logfc"): prof[:, 0], ("prof", "prof", "jsd"): np.abs(prof[:, 0])}
    for j, t in enumerate(TRACKS):
        truth[("big", t, "logSUM")] = big[:, j]
        truth[("big", t, "DIFF_LOG2_SUM@501")] = -big[:, j]
    import xarray as xr

    cons = xr.open_zarr(path, group="consensus/accessibility")
    return path, rows, truth, cons


def _check_long(df, rows, truth, cons):
    assert list(df.columns) == ["chrom", "pos", "ref", "alt", "id", "status", "model", "track", "stat", "value"]
    scores = df[df.model != "consensus"]
    assert len(scores) == len(rows) * len(truth)
    for (m, t, s), vals in truth.items():
        sub = scores[(scores.model == m) & (scores.track == t) & (scores.stat == s)]
        assert list(sub.pos) == [r.pos1 for r in rows] and list(sub.alt) == [r.alt for r in rows]
        np.testing.assert_array_equal(sub.value.to_numpy(np.float32), vals)
    c = df[(df.model == "consensus") & (df.stat == "score")]
    assert list(c.track.unique()) == ["accessibility"]
    np.testing.assert_array_equal(c.value.to_numpy(np.float32), cons["score"].values)
    assert list(df[df.model == "consensus"].stat.unique()) == ["score", "sign_agreement", "num_strong", "num_models"]


def test_long_tsv_and_parquet_round_trip(store, tmp_path):
    path, rows, truth, cons = store
    export(path, "tsv", tmp_path / "o.tsv")
    export(path, "parquet", tmp_path / "o.parquet")
    _check_long(pd.read_csv(tmp_path / "o.tsv", sep="\t", comment="#", keep_default_na=False, na_values=["NA"]), rows, truth, cons)
    pq = pd.read_parquet(tmp_path / "o.parquet")
    assert str(pq.value.dtype) == "float32"
    _check_long(pq, rows, truth, cons)


def test_wide_round_trip(store, tmp_path):
    path, rows, truth, cons = store
    export(path, "parquet", tmp_path / "w.parquet", wide=True)
    export(path, "tsv", tmp_path / "w.tsv", wide=True)
    for df in (pd.read_parquet(tmp_path / "w.parquet"),
               pd.read_csv(tmp_path / "w.tsv", sep="\t", comment="#", keep_default_na=False, na_values=["NA"])):
        assert len(df) == len(rows) and list(df.id) == [r.id for r in rows]
        for (m, t, s), vals in truth.items():
            np.testing.assert_array_equal(df[f"{m}/{t}/{s}"].to_numpy(np.float32), vals)
        assert list(df["consensus/accessibility/call"]) == list(cons["call"].values)
        assert list(df.status) == [str(r.status) for r in rows]


def test_polyfun_per_chromosome(store, tmp_path):
    path, rows, truth, cons = store
    files = export(path, "polyfun", tmp_path / "annot")
    assert sorted(p.name for p in files) == ["annot.1.annot.parquet", "annot.2.annot.parquet", "annot.23.annot.parquet"]
    df2 = pd.read_parquet(tmp_path / "annot.2.annot.parquet")
    assert list(df2.columns[:5]) == ["CHR", "SNP", "BP", "A1", "A2"]
    assert all(pd.api.types.is_numeric_dtype(df2[c]) for c in df2.columns[5:])
    assert list(df2.BP) == [40, 50]  # sorted by BP
    assert list(df2.SNP) == ["rs4", "chr2:50:T:A"]  # '.' IDs get a chrom:pos:ref:alt name
    assert list(df2.CHR) == [2, 2] and list(df2.A1) == ["C", "A"] and list(df2.A2) == ["G", "T"]
    assert list(df2.veff_unscored) == [0.0, 1.0]
    assert df2.prof_logfc_maxabs[1] == 0.0 and df2.accessibility_absq[1] == 0.0  # unscored -> 0
    assert df2.prof_logfc_maxabs[0] == pytest.approx(abs(float(truth[("prof", "prof", "logfc")][4])), abs=0)
    both = np.abs(np.array([truth[("big", t, "logSUM")][4] for t in TRACKS], dtype=np.float64))
    assert df2.big_logSUM_maxabs[0] == both.max()
    assert "big_DIFF_LOG2_SUM_501_maxabs" in df2.columns
    assert df2.accessibility_absq[0] == pytest.approx(abs(float(cons["score"].values[4])), abs=1e-7)
    df1 = pd.read_parquet(tmp_path / "annot.1.annot.parquet")
    # the ALT alleles of a multi-allelic record share its ID: each gets a unique name
    assert list(df1.SNP) == ["rs1", "chr1:200:C:T", "chr1:201:G:GA"]
    assert df1.SNP.is_unique and df2.SNP.is_unique
    # effect annotations only: |jsd| is its own column, no abs_ duplicate, no counts
    assert {"prof_logfc_maxabs", "prof_jsd_maxabs"} <= set(df1.columns)
    import pyarrow.parquet as pq

    meta = pq.read_schema(tmp_path / "annot.1.annot.parquet").metadata
    assert b"veff.provenance" in meta
    dfx = pd.read_parquet(tmp_path / "annot.23.annot.parquet")
    assert list(dfx.CHR) == [23]
    assert (plink_chrom("chrM"), plink_chrom("7"), plink_chrom("chrUn_1")) == (26, 7, None)


def test_vcf_parses_and_carries_every_score(store, tmp_path):
    from cyvcf2 import VCF

    path, rows, truth, cons = store
    out = tmp_path / "o.vcf.gz"
    assert export(path, "vcf", out, tracks="all") == [out]  # unsorted (chr2 50, 40): no index
    assert not Path(f"{out}.tbi").exists()
    raw = out.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x04" and raw[12:14] == b"BC"  # BGZF, not plain gzip
    assert raw.endswith(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    assert gzip.decompress(raw).decode().count("\n#CHROM") == 1
    vcf = VCF(str(out))
    header = {h["ID"]: h for h in (x.info() for x in vcf.header_iter()) if h.get("HeaderType") == "INFO"}
    for h in header.values():
        assert h["Number"] == "A"
    assert 'JS \\"distance\\"' in header["VEFF_prof_jsd"]["Description"]
    recs = list(vcf)
    assert [(r.CHROM, r.POS, r.REF, r.ALT) for r in recs] == [
        ("chr1", 100, "A", ["G"]), ("chr1", 200, "CG", ["TG", "CGA"]), ("chr2", 50, "T", ["A"]),
        ("chr2", 40, "G", ["C"]), ("chrX", 7, "A", ["C"]), ("chrUn_1", 9, "A", ["T"])]
    row_of = [[0], [1, 2], [3], [4], [5], [6]]
    keys = {("prof", "prof", "logfc"): "VEFF_prof_logfc", ("prof", "prof", "jsd"): "VEFF_prof_jsd",
            ("big", TRACKS[0], "logSUM"): "VEFF_big_logSUM_DNASE_K562",
            ("big", TRACKS[1], "logSUM"): "VEFF_big_logSUM_ATAC_HepG2_x",
            ("big", TRACKS[0], "DIFF_LOG2_SUM@501"): "VEFF_big_DIFF_LOG2_SUM_501_DNASE_K562",
            ("big", TRACKS[1], "DIFF_LOG2_SUM@501"): "VEFF_big_DIFF_LOG2_SUM_501_ATAC_HepG2_x"}
    assert set(keys.values()) <= set(header)
    for rec, idx in zip(recs, row_of):
        statuses = rec.INFO.get("VEFF_STATUS")
        got_status = statuses.split(",") if isinstance(statuses, str) else list(statuses)
        assert got_status == [str(rows[i].status) for i in idx]
        for k, key in keys.items():
            want = truth[k][idx]
            if np.isnan(want).all():
                assert rec.INFO.get(key) is None
                continue
            got = rec.INFO.get(key)
            got = np.atleast_1d(np.asarray(got, dtype=np.float32))
            np.testing.assert_array_equal(got, want.astype(np.float32))
        cons_got = np.atleast_1d(np.asarray(rec.INFO.get("VEFF_CONS_accessibility"), dtype=np.float32))
        if not np.isnan(cons["score"].values[idx]).all():
            np.testing.assert_array_equal(cons_got, cons["score"].values[idx])


def test_bad_requests(store, tmp_path):
    path, *_ = store
    with pytest.raises(ExportError, match="unknown export format"):
        export(path, "xlsx", tmp_path / "x")
    with pytest.raises(ExportError, match="--wide"):
        export(path, "vcf", tmp_path / "x.vcf.gz", wide=True)
    with pytest.raises(ExportError, match="does not exist"):
        export(path, "tsv", tmp_path / "nope" / "x.tsv")
