"""``--centering baskerville`` reproduces baskerville ``hound_snp.py`` on the real mini-Borzoi
(baskerville test data) for the 8 real eQTL SNPs: every statistic, with and without the
reverse-complement ensemble and shifts, strand pairs summed (74 tracks -> 47).

hound_snp's own saved outputs are not in ../shared/data/baskerville (only its inputs are), so
the reference is an independent numpy construction of hound_snp's computation, written from
baskerville's snps.py / dna.py / dataset.py / seqnn.py (commit 544073b): the window starts at
1-based ``pos - L//2`` (the SNP at index L//2 - 1), bool one-hot with N all zero,
``hot1_augment`` shifts filling with N, the RC ensemble averaging raw (squashed) outputs,
``untransform_preds`` after it, ``compute_scores`` per statistic and ``score @
strand_transform`` (D2 family: sqrt of the summed squares). The network forward is the
converted model's own ``apply`` (checked layer by layer against the h5 in
tests/models/test_borzoi_real.py); everything around it here is independent of veff's engine.
hound_snp writes float16; the comparison is at float32 precision, before that cast.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from veff.cli import main

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "baskerville"
STATS = ["SUM", "logSUM", "sqrtSUM", "logSED", "SAX", "D1", "logD1", "sqrtD1",
         "D2", "logD2", "sqrtD2", "JS"]
L2 = {"D2", "logD2", "sqrtD2"}
CONFIGS = {"fwd": ([0], False), "rc_shifts": ([0, 1, -1], True)}


def _need():
    for n in ("eval_model.h5", "eval_params.json", "tiny_hg38_targets.txt", "hg38_1m.fa.gz",
              "snp_eqtl.vcf"):
        if not (DATA / n).is_file():
            pytest.skip(f"../shared/data/baskerville/{n} is absent")


def _targets():
    import pandas as pd

    return pd.read_csv(DATA / "tiny_hg38_targets.txt", sep="\t", index_col=0)


def _strand_transform(df) -> np.ndarray:
    """baskerville make_strand_transform, as a dense (T, T') 0/1 matrix."""
    m = np.zeros((len(df), len(df)))
    seen, sti = set(), 0
    for ti, (name, row) in enumerate(df.iterrows()):
        m[ti, sti] = 1
        if row.strand_pair == name or row.strand_pair in seen:
            sti += 1
        else:
            seen.add(name)
    return m[:, :sti]


def _untransform_preds(p, df):  # baskerville dataset.untransform_preds, unscale=False
    cs = np.asarray(df.clip_soft, np.float32)[None]
    p = np.where(p > cs, cs - 1 + (p - cs + 1) ** 2, p)
    sq = np.array(["_sqrt" in s for s in df.sum_stat])
    p[:, sq] = -1 + (p[:, sq] + 1) ** 2
    return p


def _hot1_augment(x, shift):
    out = np.zeros_like(x)
    if shift == 0:
        return x
    if shift > 0:
        out[shift:] = x[:-shift]
    else:
        out[:shift] = x[-shift:]
    return out


def _compute_scores(ref, alt, st):
    """baskerville snps.compute_scores on (S, P, T) arrays, before the float16 cast."""
    S, P, T = ref.shape
    rl, al = np.log2(ref + 1), np.log2(alt + 1)
    rs, as_ = np.sqrt(ref), np.sqrt(alt)
    d, dl, ds = alt - ref, al - rl, as_ - rs
    out = {
        "SUM": alt.sum((0, 1)) / S - ref.sum((0, 1)) / S,
        "logSUM": al.sum((0, 1)) / S - rl.sum((0, 1)) / S,
        "sqrtSUM": as_.sum((0, 1)) / S - rs.sum((0, 1)) / S,
        "logSED": np.log2(alt.sum(1) + 1).mean(0) - np.log2(ref.sum(1) + 1).mean(0),
        "D1": np.abs(d).sum(1).mean(0), "logD1": np.abs(dl).sum(1).mean(0),
        "sqrtD1": np.abs(ds).sum(1).mean(0),
        "D2": np.sqrt((d ** 2).sum(1)).mean(0), "logD2": np.sqrt((dl ** 2).sum(1)).mean(0),
        "sqrtD2": np.sqrt((ds ** 2).sum(1)).mean(0),
    }
    ad = np.abs(d)
    out["SAX"] = np.mean([d[s, np.argmax(ad[s], 0), np.arange(T)] for s in range(S)], 0)
    pc = np.percentile(ref, 25, axis=1)[:, None]
    rn = (ref + pc) / (ref + pc).sum(1, keepdims=True)
    an = (alt + pc) / (alt + pc).sum(1, keepdims=True)
    out["JS"] = np.mean([(rn[s] * np.log(rn[s] / an[s]) + an[s] * np.log(an[s] / rn[s])).sum(0) / 2
                         for s in range(S)], 0)
    scores = {k: (np.sqrt(v ** 2 @ st) if k in L2 else v @ st) for k, v in out.items()}
    # the size of what each statistic sums (fp32 error scales with it, not with the result)
    lin, lg, sq = (ref + alt).sum(1), (rl + al).sum(1), (rs + as_).sum(1)
    size = {"SUM": lin, "D1": lin, "D2": lin, "SAX": lin, "logSUM": lg, "logD1": lg,
            "logD2": lg, "sqrtSUM": sq, "sqrtD1": sq, "sqrtD2": sq,
            "logSED": np.log2(ref.sum(1) + 1) + np.log2(alt.sum(1) + 1), "JS": np.ones((S, T))}
    return scores, {k: v.mean(0) @ st for k, v in size.items()}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    _need()
    d = tmp_path_factory.mktemp("hound")
    r = CliRunner().invoke(main, [
        "convert", str(DATA / "eval_model.h5"), "--format", "baskerville",
        "--params", str(DATA / "eval_params.json"), "--targets",
        str(DATA / "tiny_hg38_targets.txt"), "--out", str(d / "mb")])
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture(scope="module")
def reference(converted):
    """hound_snp's scores per config, built independently (numpy + the model's apply)."""
    import pyfaidx

    from veff.models.registry import load_model

    h = load_model(str(converted / "mb"))
    apply = jax.jit(h.apply)
    df = _targets()
    pair = np.array([df.index.get_loc(p) for p in df.strand_pair])
    L = h.window_len
    fa = pyfaidx.Fasta(str(DATA / "hg38_1m.fa.gz"))
    lut = np.zeros((256, 4), bool)
    for i, c in enumerate("ACGT"):
        lut[ord(c), i] = True
    snps = [line.split("\t")[:5] for line in (DATA / "snp_eqtl.vcf").read_text().splitlines()
            if not line.startswith("#")]
    seqs = []
    for chrom, pos, _, ref_a, alt_a in snps:
        start = int(pos) - L // 2  # snps.SNPCluster.delimit
        # SNPCluster.get_1hots: N left of the contig start (and right of its end)
        seq = "N" * max(0, -start) + str(fa[chrom][max(0, start):start + L]).upper()
        seq += "N" * (L - len(seq))
        x = lut[np.frombuffer(seq.encode(), np.uint8)]
        i = int(pos) - 1 - start  # L // 2 - 1
        assert seq[i] == ref_a
        y = x.copy()
        y[i] = lut[ord(alt_a)]
        seqs.append((x, y))
    fa.close()

    def predict(batch):  # (B, L, 4) bool -> (B, P, T) float32
        return np.asarray(apply(h.params, np.asarray(batch, np.float32))["tracks"])

    preds = {}  # (shift, rc) -> (8, 2, P, T): raw outputs, RC ones already switched back
    for shift in (0, 1, -1):
        batch = np.stack([_hot1_augment(a, shift) for pair_ in seqs for a in pair_])
        fwd = predict(batch)
        rc = predict(batch[:, ::-1, ::-1])[:, ::-1][..., pair]  # SwitchReverse(strand_pair)
        preds[shift] = (fwd.reshape(8, 2, *fwd.shape[1:]), rc.reshape(8, 2, *rc.shape[1:]))
    st = _strand_transform(df)
    out = {}
    for name, (shifts, rc) in CONFIGS.items():
        rows = []
        for v in range(8):
            ra = []
            for allele in (0, 1):
                per_shift = []
                for s in shifts:
                    f, r = preds[s]
                    raw = (f[v, allele] + r[v, allele]) / 2 if rc else f[v, allele]
                    per_shift.append(_untransform_preds(raw.astype(np.float64), df))
                ra.append(np.stack(per_shift))
            rows.append(_compute_scores(ra[0], ra[1], st))
        out[name] = ({k: np.stack([r[0][k] for r in rows]) for k in STATS},
                     {k: np.stack([r[1][k] for r in rows]) for k in STATS})
    return out


@pytest.fixture(scope="module")
def scored(converted):
    out = {}
    for name, (shifts, rc) in CONFIGS.items():
        store = converted / f"{name}.zarr"
        r = CliRunner().invoke(main, [
            "score", str(DATA / "snp_eqtl.vcf"), "--genome", str(DATA / "hg38_1m.fa.gz"),
            "--model", str(converted / "mb"), "--out", str(store), "--quiet",
            "--batch-size", "8", "--stats", ",".join(STATS), "--untransform", "new",
            "--centering", "baskerville", "--shifts", ",".join(map(str, shifts)),
            *([] if rc else ["--no-rc"])])
        assert r.exit_code == 0, r.output
        out[name] = xr.open_zarr(store, group="scores/mb")
        assert xr.open_zarr(store).attrs["centering"] == "baskerville"
    return out


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_statistic_equals_hound_snp(scored, reference, config):
    s, (ref, size) = scored[config], reference[config]
    assert s.sizes["track"] == 47
    assert s.attrs["centering"] == "baskerville" and s.attrs["strands_merged"]
    for stat in STATS:
        got, want = s[stat].values, ref[stat]
        assert got.shape == (8, 47), stat
        err = np.abs(got - want)
        # float32 precision: 1e-5 of the summed magnitude (the forward itself is float32)
        bad = err > 1e-5 * size[stat] + 1e-6
        assert not bad.any(), (stat, float(err.max()), float((err / size[stat]).max()))


def test_veff_centring_is_not_hound_snp(converted, reference):
    """The veff centring (REF one base further right) fails the same comparison."""
    store = converted / "veff.zarr"
    r = CliRunner().invoke(main, [
        "score", str(DATA / "snp_eqtl.vcf"), "--genome", str(DATA / "hg38_1m.fa.gz"),
        "--model", str(converted / "mb"), "--out", str(store), "--quiet", "--batch-size", "8",
        "--stats", "SUM,logSED", "--untransform", "new", "--no-rc"])
    assert r.exit_code == 0, r.output
    s = xr.open_zarr(store, group="scores/mb")
    assert s.attrs["centering"] == "veff"
    ref, size = reference["fwd"]
    err = np.abs(s["SUM"].values - ref["SUM"])
    assert (err > 1e-5 * size["SUM"] + 1e-6).any()
