"""Bias-corrected profile prediction to bigWig: intervals, values and RC averaging."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from veff.checkpoint import save_checkpoint
from veff.io.genome import Genome
from veff.models import bpnet
from veff.predict import owned_intervals, predict_profiles
from veff.types import encode

pyBigWig = pytest.importorskip("pyBigWig")

ACC = bpnet.BPNetConfig(filters=7, n_layers=2, input_len=131, output_len=23)
BIAS = bpnet.BPNetConfig(filters=5, n_layers=1, input_len=131, output_len=23)
CONTIGS = {"chrA": 997, "chrB": 409}


@pytest.fixture()
def setup(tmp_path):
    rng = np.random.default_rng(0)
    seqs = {c: "".join(rng.choice(list("ACGT"), n)) for c, n in CONTIGS.items()}
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    params = {"accessibility": bpnet.init(ACC, 1), "bias": bpnet.init(BIAS, 2)}
    np_params = jax.tree.map(np.asarray, params)
    save_checkpoint(tmp_path / "nobias", arch="bpnet", config=ACC.to_dict(), params=np_params["accessibility"])
    save_checkpoint(tmp_path / "full", arch="chrombpnet",
                    config={"accessibility": ACC.to_dict(), "bias": BIAS.to_dict()}, params=np_params)
    # narrowPeak with summits (two overlapping outputs on chrA, one near the contig start),
    # and a plain BED line (midpoint centre) on chrB
    bed = tmp_path / "r.bed"
    bed.write_text(
        "chrA\t100\t300\tp1\t0\t.\t0\t0\t0\t100\n"   # centre 200
        "chrA\t190\t240\tp2\t0\t.\t0\t0\t0\t20\n"    # centre 210: overlaps p1
        "chrA\t0\t10\tp3\t0\t.\t0\t0\t0\t2\n"        # centre 2: output starts before the contig
        "chrB\t300\t321\n"                            # centre 310
    )
    return tmp_path, fa, seqs, params, bed


def _reference(cfg, p, seq_tokens, rc):
    """Independent numpy-side expectation for one centred window."""
    x = jax.nn.one_hot(jnp.asarray(seq_tokens[None]), 4)
    f = bpnet.forward(cfg, p, x)
    if rc:
        r = bpnet.forward(cfg, p, x[:, ::-1, ::-1])
        logits = 0.5 * (np.asarray(f["logits"][0], np.float64) + np.asarray(r["logits"][0], np.float64)[::-1])
        counts = 0.5 * (np.exp(float(f["logcounts"][0])) + np.exp(float(r["logcounts"][0])))
    else:
        logits, counts = np.asarray(f["logits"][0], np.float64), np.exp(float(f["logcounts"][0]))
    sm = np.exp(logits - logits.max())
    return counts * sm / sm.sum()


def _window(seqs, chrom, centre):
    s = centre - 131 // 2
    pad = "N" * 200
    padded = pad + seqs[chrom] + pad
    return encode(padded[s + 200 : s + 200 + 131])


@pytest.mark.parametrize("rc", [True, False])
def test_predicted_bigwig_intervals_and_values(setup, rc):
    tmp, fa, seqs, params, bed = setup
    out = tmp / f"p_{rc}.bw"
    res = predict_profiles(tmp / "nobias", fa, bed, out, rc=rc, batch_size=3)
    assert res.num_regions == 4 and res.output_len == 23
    off = 131 // 2 - (131 - 23) // 2  # output start = centre - off
    assert off == 11
    exp = {k: _reference(ACC, params["accessibility"], _window(seqs, *k), rc)
           for k in (("chrA", 200), ("chrA", 210), ("chrA", 2), ("chrB", 310))}
    bw = pyBigWig.open(str(out))
    assert bw.chroms() == CONTIGS
    ivals = bw.intervals("chrA")
    # p3 writes [0, 2 + 12); p1 owns up to the midpoint 205 (inclusive); p2 from 206 to 210+12
    got = {s: v for s, e, v in ivals}
    assert sorted(got) == list(range(0, 14)) + list(range(189, 222))
    for x in range(0, 14):
        assert abs(got[x] - exp[("chrA", 2)][x - (2 - off)]) < 1e-5 * max(1, exp[("chrA", 2)].max())
    for x in range(189, 206):
        assert abs(got[x] - exp[("chrA", 200)][x - 189]) < 1e-5 * max(1, exp[("chrA", 200)].max())
    for x in range(206, 222):
        assert abs(got[x] - exp[("chrA", 210)][x - 199]) < 1e-5 * max(1, exp[("chrA", 210)].max())
    b = bw.intervals("chrB")
    assert [s for s, _, _ in b] == list(range(299, 322))
    np.testing.assert_allclose([v for _, _, v in b], exp[("chrB", 310)], rtol=1e-5, atol=1e-6)
    bw.close()


def test_combined_checkpoint_is_bias_corrected_by_default(setup):
    tmp, fa, seqs, params, bed = setup
    predict_profiles(tmp / "nobias", fa, bed, tmp / "a.bw", rc=False)
    predict_profiles(tmp / "full", fa, bed, tmp / "b.bw", rc=False)
    predict_profiles(tmp / "full", fa, bed, tmp / "c.bw", rc=False, bias_corrected=False)
    a, b, c = (pyBigWig.open(str(tmp / f"{n}.bw")) for n in "abc")
    va, vb, vc = (np.array([v for _, _, v in h.intervals("chrB")]) for h in (a, b, c))
    np.testing.assert_array_equal(va, vb)
    x = jax.nn.one_hot(jnp.asarray(_window(seqs, "chrB", 310)[None]), 4)
    full = bpnet.forward_chrombpnet(ACC, BIAS, params, x)
    sm = jax.nn.softmax(full["logits"][0].astype(jnp.float32))
    np.testing.assert_allclose(vc, np.exp(float(full["logcounts"][0])) * np.asarray(sm), rtol=1e-5, atol=1e-6)
    assert np.abs(va - vc).max() > 1e-3


def test_owned_intervals_closest_centre_wins():
    # centres 10, 14, 14 (duplicate), 40; outputs of 9 bases starting at centre - 4
    c = np.array([10, 14, 14, 40])
    iv = owned_intervals(c - 4, c, 9, 45)
    assert iv == [(0, 6, 13), (1, 13, 19), (3, 36, 45)]


def test_predict_rejects_unknown_contig(setup):
    tmp, fa, _, _, _ = setup
    bad = tmp / "bad.bed"
    bad.write_text("chrZ\t1\t5\n")
    from veff.train.data import TrainDataError

    with pytest.raises(TrainDataError, match="chrZ"):
        predict_profiles(tmp / "nobias", fa, bad, tmp / "x.bw")
    _ = Genome  # genome is opened inside predict_profiles
