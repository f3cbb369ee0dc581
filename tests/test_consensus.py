"""Consensus, agreement and backgrounds: hand-made stores with known answers, and a tiny BPNet
background on a tiny random genome (determinism, N-free windows, cache reuse)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import xarray as xr

from veff import backgrounds as bgmod
from veff import consensus as cs
from veff.store import Store
from veff.types import Status, Variant

NV = 11  # variants in the hand-made stores; the last one is not ok


def make_store(path, models: dict[str, dict], *, tracks=None, num=NV, chunk=4):
    """models: name -> {"kind", "stats": {stat: (V, T) array}, "tracks": [...]}."""
    variants = [
        Variant(chrom="chr1" if i < 7 else "chr2", pos1=100 + 10 * i, ref="A", alt="CGT"[i % 3],
                id=f"rs{i}", status=Status.OK if i < num - 1 else Status.REF_MISMATCH, record=i)
        for i in range(num)
    ]
    store = Store.create(path, variants, chunk_size=chunk, run_config={})
    for name, m in models.items():
        first = next(iter(m["stats"].values()))
        store.add_model(name, tracks=m.get("tracks") or [f"{name}_t{j}" for j in range(first.shape[1])],
                        stats={s: f"formula of {s}" for s in m["stats"]},
                        attrs={"kind": m["kind"], "checkpoint_sha256": f"sha-{name}", "arch": "hand"})
        for c in range(store.num_chunks):
            a, b = store.chunk_range(c)
            store.write_scores(name, a, {s: v[a:b] for s, v in m["stats"].items()}, np.zeros(b - a, bool))
    for c in range(store.num_chunks):
        store.mark_done(c)
    store.finalize()
    store.close()
    return path


def hand_bg(name, stats: dict[str, np.ndarray], tracks=None):
    n, t = next(iter(stats.values())).shape
    return bgmod.Background(
        model=name, checkpoint_sha256=f"sha-{name}", tracks=tracks or [f"{name}_t{j}" for j in range(t)],
        scores={k: v.astype(np.float32) for k, v in stats.items()},
        chrom=np.array(["chr1"] * n, dtype=object), pos=np.arange(1, n + 1), ref=np.array(["A"] * n, dtype=object),
        alt=np.array(["C"] * n, dtype=object), meta={"key": "hand", "source": "hand", "num": n, "seed": None})


# 100 background values with |b| = 1..100 and alternating signs: F_|bg|(t) = floor(t) / 100.
BG = (np.arange(1, 101) * np.where(np.arange(100) % 2, -1, 1)).astype(np.float64)[:, None]
RAW = np.array([0.0, 50.5, -50.5, 95.0, -99.0, 100.0, 250.0, 1.0, -3.5, 96.5, np.nan])[:, None]
EXPECTED_Q = np.array([0.0, 0.50, -0.50, 0.95, -0.99, 1.0, 1.0, 0.01, -0.03, 0.96, np.nan])


def test_normalise_known_quantiles():
    np.testing.assert_allclose(cs.normalise(RAW[:, 0], BG[:, 0], signed=True), EXPECTED_Q, atol=0, equal_nan=True)
    # unsigned: F(x) = #{b <= x} / n over the raw (signed) background values
    q = cs.normalise(np.array([-1000.0, 0.0, 2.0, 100.0]), BG[:, 0], signed=False)
    np.testing.assert_allclose(q, [0.0, 0.5, 0.51, 1.0], atol=0)
    with pytest.raises(cs.ConsensusError, match="empty background"):
        cs.normalise(RAW[:, 0], np.array([np.nan]), signed=True)


def test_identical_models_agree_and_negated_model_conflicts(tmp_path):
    path = make_store(tmp_path / "s.zarr", {
        "a": {"kind": "profile", "stats": {"logfc": RAW}},
        "b": {"kind": "profile", "stats": {"logfc": RAW.copy()}},
        "neg": {"kind": "profile", "stats": {"logfc": -RAW}},
    })
    bgs = {m: hand_bg(m, {"logfc": BG}) for m in ("a", "b", "neg")}
    yaml_path = tmp_path / "g.yaml"
    yaml_path.write_text(
        "threshold: 0.95\ntop_k: 3\ngroups:\n"
        "  - name: same pair\n    members:\n      - {model: a, stat: logfc}\n      - {model: b, stat: logfc}\n"
        "  - name: negated\n    members:\n      - {model: a, stat: logfc}\n      - {model: neg, stat: logfc}\n"
    )
    assert cs.write_consensus(path, groups_yaml=yaml_path, backgrounds=bgs) == ["same_pair", "negated"]
    same = xr.open_zarr(path, group="consensus/same_pair")
    np.testing.assert_allclose(same["score"].values, EXPECTED_Q, atol=1e-7, equal_nan=True)
    assert float(same["spearman"].values[0]) == pytest.approx(1.0, abs=1e-12)
    # strong in both (|q| >= 0.95): rows 3, 4, 5, 6, 9
    assert int(same["num_both_strong"].values[0]) == 5
    assert float(same["sign_concordance"].values[0]) == 1.0
    assert float(same["topk_overlap"].values[0]) == 1.0
    calls = list(same["call"].values)
    assert calls == ["weak", "weak", "weak", "agreed", "agreed", "agreed", "agreed", "weak", "weak",
                     "agreed", "none"]
    np.testing.assert_array_equal(same["num_strong"].values, [0, 0, 0, 2, 2, 2, 2, 0, 0, 2, 0])
    assert same.attrs["name"] == "same pair" and same.attrs["signed"]

    neg = xr.open_zarr(path, group="consensus/negated")
    assert float(neg["sign_concordance"].values[0]) == 0.0
    assert float(neg["spearman"].values[0]) == pytest.approx(-1.0, abs=1e-12)
    assert float(neg["topk_overlap"].values[0]) == 1.0  # same magnitudes
    np.testing.assert_allclose(neg["score"].values[:10], 0.0, atol=1e-7)
    assert list(neg["call"].values[3:7]) == ["conflict"] * 4
    assert neg["disagree"].values[3] and not neg["disagree"].values[0]
    # mean sign agreement is undefined when the consensus is exactly 0
    assert np.isnan(neg["sign_agreement"].values[3])
    # backgrounds were copied into the store
    b = xr.open_zarr(path, group="backgrounds/a")
    np.testing.assert_array_equal(b["logfc"].values, BG.astype(np.float32))


def test_single_model_strong_and_mixed_signedness(tmp_path):
    other = np.array([0.0, 99.0, -10.0, 96.0, -99.0, 1.0, 2.0, 1.0, 1.0, 1.0, np.nan])[:, None]
    path = make_store(tmp_path / "m.zarr", {
        "a": {"kind": "profile", "stats": {"logfc": RAW, "jsd": np.abs(RAW)}},
        "c": {"kind": "profile", "stats": {"logfc": other, "jsd": np.abs(other)}},
    })
    bgs = {"a": hand_bg("a", {"logfc": BG, "jsd": np.abs(BG)}), "c": hand_bg("c", {"logfc": BG, "jsd": np.abs(BG)})}
    y = tmp_path / "g.yaml"
    y.write_text("groups:\n  - name: signed\n    members:\n      - {model: a, stat: logfc}\n"
                 "      - {model: c, stat: logfc}\n  - name: mixed\n    members:\n"
                 "      - {model: a, stat: logfc}\n      - {model: c, stat: jsd}\n")
    cs.write_consensus(path, groups_yaml=y, backgrounds=bgs, threshold=0.95)
    g = xr.open_zarr(path, group="consensus/signed")
    q_c = np.array([0.0, 0.99, -0.10, 0.96, -0.99, 0.01, 0.02, 0.01, 0.01, 0.01, np.nan])
    np.testing.assert_allclose(g["quantile"].values[:, 1], q_c, atol=1e-7, equal_nan=True)
    assert list(g["call"].values[:7]) == ["weak", "single_model", "weak", "agreed", "agreed",
                                          "single_model", "single_model"]
    # row 2: a = -0.5, c = -0.10 -> score -0.3, both negative
    assert float(g["sign_agreement"].values[2]) == 1.0
    # row 5: a = 1.0, c = 0.01 -> both positive
    assert float(g["sign_agreement"].values[5]) == 1.0
    m = xr.open_zarr(path, group="consensus/mixed")
    assert not m.attrs["signed"]
    np.testing.assert_allclose(m["quantile"].values[:, 0], np.abs(EXPECTED_Q), atol=1e-7, equal_nan=True)
    assert np.isnan(m["sign_concordance"].values[0]) and np.isnan(m["sign_agreement"].values).all()


def test_pair_agreement_topk_and_no_strong():
    qa = np.array([0.9, 0.1, 0.5, 0.7, np.nan])
    qb = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    r = cs.pair_agreement(qa, qb, signed=True, threshold=0.95, top_k=2)
    assert r["num_common"] == 4 and r["k"] == 2
    assert r["topk_overlap"] == 0.5  # {0, 3} vs {1, 3}
    assert np.isnan(r["sign_concordance"]) and r["num_both_strong"] == 0


def test_default_group_and_track_search(tmp_path):
    binned = np.stack([RAW[:, 0], 2 * RAW[:, 0], -RAW[:, 0]], axis=1)
    path = make_store(tmp_path / "d.zarr", {
        "prof": {"kind": "profile", "stats": {"logfc": RAW, "jsd": np.abs(RAW)}},
        "big": {"kind": "binned", "stats": {"logSUM": binned, "D2": np.abs(binned)},
                "tracks": ["DNASE:K562", "CAGE:liver", "ATAC:HepG2"]},
        "rna": {"kind": "binned", "stats": {"logSUM": binned}, "tracks": ["RNA:a", "RNA:b", "RNA:c"]},
    })
    assert [t["name"] for t in cs.search_tracks(path, "dnase|atac")] == ["DNASE:K562", "ATAC:HepG2"]
    assert len(cs.list_tracks(path)) == 7
    bg3 = np.concatenate([BG, BG, BG], axis=1)
    bgs = {"prof": hand_bg("prof", {"logfc": BG}),
           "big": hand_bg("big", {"logSUM": bg3}, ["DNASE:K562", "CAGE:liver", "ATAC:HepG2"])}
    assert cs.write_consensus(path, backgrounds=bgs) == ["accessibility"]
    g = xr.open_zarr(path, group="consensus/accessibility")
    assert list(g["member"].values) == ["prof:logfc", "big:logSUM"]
    assert g.attrs["members"][1]["tracks"] == ["DNASE:K562", "ATAC:HepG2"]
    assert g.attrs["skipped"] == ["rna: no DNase/ATAC track"]
    # big's member = mean of quantile(x) and quantile(-x) = 0
    np.testing.assert_allclose(g["quantile"].values[:10, 1], 0.0, atol=1e-7)
    with pytest.raises(cs.ConsensusError, match="background"):
        cs.write_consensus(path)  # rna isn't needed, but prof/big backgrounds need a genome now


def test_bad_group_configs(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("groups:\n  - name: x\n    members:\n      - {model: a}\n")
    with pytest.raises(cs.ConsensusError, match="needs 'model' and 'stat'"):
        cs.load_groups(y)
    y.write_text("threshold: 2\ngroups: []\n")
    with pytest.raises(cs.ConsensusError, match="threshold"):
        cs.load_groups(y)


def test_example_config_parses():
    from pathlib import Path

    cfg = cs.load_groups(Path(__file__).resolve().parents[1] / "configs" / "track_groups.example.yaml")
    assert cfg.groups and all(g.members for g in cfg.groups)


# ---------------------------------------------------------------------------- real backgrounds
def _bpnet_cfg():
    from veff.models import bpnet

    return bpnet.BPNetConfig(filters=5, n_layers=2, input_len=131, output_len=67, conv1_kernel=5, profile_kernel=7)


BPNET_CFG = _bpnet_cfg()

@pytest.fixture(scope="module")
def bpnet_world(tmp_path_factory):
    from veff.checkpoint import save_checkpoint
    from veff.models import bpnet

    d = tmp_path_factory.mktemp("bg")
    rng = np.random.default_rng(3)
    chr1 = list("".join(rng.choice(list("ACGT"), 1201)))
    chr1[400:700] = "N" * 300  # a gap: no background window may touch it
    seqs = {"chr1": "".join(chr1), "chr2": "".join(rng.choice(list("ACGT"), 701)), "chrUn_x": "A" * 900}
    with open(d / "g.fa", "w") as fh:
        for name, s in seqs.items():
            fh.write(f">{name}\n" + "\n".join(s[i : i + 61] for i in range(0, len(s), 61)) + "\n")
    save_checkpoint(d / "tiny", arch="bpnet", config=BPNET_CFG.to_dict(),
                    params=bpnet.init(BPNET_CFG, jax.random.key(2)),
                    metadata={"name": "tiny"})
    return d, seqs


def test_background_deterministic_nfree_and_cached(bpnet_world, tmp_path, monkeypatch):
    from veff.engine import ScoreOptions
    from veff.io.genome import Genome
    from veff.models.registry import load_model

    d, seqs = bpnet_world
    genome = Genome(d / "g.fa")
    handle = load_model(str(d / "tiny"))
    L = handle.window_len
    snvs = bgmod.sample_snvs(genome, 53, 7, L)
    assert snvs == bgmod.sample_snvs(genome, 53, 7, L)
    assert snvs != bgmod.sample_snvs(genome, 53, 8, L)
    # autosome-like contigs only (chrUn_x is never drawn), windows inside the contig and N-free
    for v in snvs:
        assert v.chrom in ("chr1", "chr2")
        s0 = v.pos1 - 1 - L // 2
        assert s0 >= 0 and s0 + L <= len(seqs[v.chrom])
        assert "N" not in seqs[v.chrom][s0 : s0 + L]
        assert seqs[v.chrom][v.pos1 - 1] == v.ref and v.alt != v.ref and v.alt in "ACGT"

    spec = bgmod.BackgroundSpec(num=53, seed=7)
    opts = ScoreOptions(stats=("logfc", "jsd"), batch_size=16)
    cache = tmp_path / "cache"
    calls = []
    real = bgmod.compute_background
    monkeypatch.setattr(bgmod, "compute_background", lambda *a, **k: calls.append(1) or real(*a, **k))
    bg1, hit1 = bgmod.get_background(handle, genome, spec, opts, cache=cache)
    bg2, hit2 = bgmod.get_background(handle, genome, spec, opts, cache=cache)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert bg1.scores["logfc"].shape == (53, 1) and np.isfinite(bg1.scores["logfc"]).all()
    np.testing.assert_array_equal(bg2.scores["logfc"], bg1.scores["logfc"])
    assert [int(p) for p in bg1.pos] == [v.pos1 for v in snvs]
    # same engine: the background equals scoring those SNVs directly
    from veff.engine import ModelScorer
    from veff.io.windows import build_windows

    direct = ModelScorer(handle, opts).score(build_windows(genome, snvs, L))
    np.testing.assert_array_equal(direct["jsd"], bg1.scores["jsd"])
    # other N, other options -> other keys -> recomputed
    bgmod.get_background(handle, genome, dataclasses.replace(spec, num=17), opts, cache=cache)
    assert len(calls) == 2
    # a damaged cache entry is recomputed, not trusted
    (cache / f"{bg1.meta['key']}.npz").write_bytes(b"junk")
    _, hit = bgmod.get_background(handle, genome, spec, opts, cache=cache)
    assert not hit and len(calls) == 3


def test_too_short_genome_is_a_clear_error(bpnet_world):
    from veff.io.genome import Genome

    d, _ = bpnet_world
    with pytest.raises(bgmod.BackgroundError, match="as long as"):
        bgmod.sample_snvs(Genome(d / "g.fa"), 5, 0, 5000)


def test_score_then_consensus_end_to_end(bpnet_world, tmp_path, monkeypatch):
    """Two models scored by `veff score`; consensus computes backgrounds from the run config."""
    from click.testing import CliRunner

    from veff.cli import main

    d, seqs = bpnet_world
    monkeypatch.setenv("VEFF_CACHE", str(tmp_path / "vc"))
    from veff.checkpoint import save_checkpoint
    from veff.models import bpnet

    # same weights (same sha256, so one cached background), another name
    save_checkpoint(tmp_path / "twin", arch="bpnet", config=BPNET_CFG.to_dict(),
                    params=bpnet.init(BPNET_CFG, jax.random.key(2)), metadata={"name": "twin"})
    rows = []
    for i, pos in enumerate(range(80, 380, 23)):
        ref = seqs["chr1"][pos - 1]
        rows.append(f"chr1\t{pos}\tv{i}\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\t.\t.\t.")
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                    + "\n".join(rows) + "\n")
    out = tmp_path / "o.zarr"
    r = CliRunner().invoke(main, ["score", str(tmp_path / "v.vcf"), "--genome", str(d / "g.fa"),
                                   "--model", str(d / "tiny"), "--model", str(tmp_path / "twin"),
                                   "--out", str(out), "--quiet", "--stats", "logfc,jsd",
                                   "--background-n", "31", "--seed", "1"])
    assert r.exit_code == 0, r.output
    names = xr.open_zarr(out).attrs["models"]
    cs.write_consensus(out, background=bgmod.BackgroundSpec(num=31, seed=1))
    g = xr.open_zarr(out, group="consensus/accessibility")
    assert float(g["spearman"].values[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(g["topk_overlap"].values[0]) == 1.0
    np.testing.assert_array_equal(g["quantile"].values[:, 0], g["quantile"].values[:, 1])
    assert len(list((tmp_path / "vc" / "backgrounds").glob("*.npz"))) == 1  # same sha: one entry
    for n in names:
        assert xr.open_zarr(out, group=f"backgrounds/{n}")["logfc"].shape == (31, 1)
