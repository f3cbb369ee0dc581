"""chromBPNet training recipe: losses, filters, augmentation, and a tiny end-to-end run."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from veff.train import chrombpnet as cb
from veff.train import data as td
from veff.types import decode

# ----------------------------------------------------------------------------- tiny data

CHROMS = {"chrA": 6007, "chrB": 3001, "chrV": 2003, "chrT": 2011}
MOTIF = "GGGACTTTCC"


def make_dataset(tmp_path, seed=0, peaks_per_kb=2.0):
    """A random genome with a motif at every peak centre; fragments whose cut rate is a
    bump around each motif plus a flat background. Returns the four input paths."""
    rng = np.random.default_rng(seed)
    fa, frags, peaks, nonpeaks = (tmp_path / n for n in ("g.fa", "f.tsv", "p.bed", "n.bed"))
    seqs, peak_lines, non_lines, frag_lines = {}, [], [], []
    for chrom, size in CHROMS.items():
        s = rng.choice(list("ACGT"), size)
        rate = np.full(size, 0.02)
        centres = np.arange(150, size - 150, int(1000 / peaks_per_kb))
        for c in centres:
            s[c - 5 : c + 5] = list(MOTIF)
            rate[c - 40 : c + 40] += 1.5 * np.exp(-0.5 * (np.arange(-40, 40) / 12.0) ** 2)
            peak_lines.append(f"{chrom}\t{c - 50}\t{c + 50}\t.\t0\t.\t0\t0\t0\t50\n")
        for k, c in enumerate(np.arange(400, size - 150, 500)):
            if np.min(np.abs(centres - c)) > 120:
                non_lines.append(f"{chrom}\t{c - 50}\t{c + 50}\n")
                if k % 3 == 0:  # an unannotated open site: the bias-threshold filter drops it
                    rate[c - 20 : c + 20] += 1.0
        for pos in np.repeat(np.arange(size), rng.poisson(rate)):
            frag_lines.append(f"{chrom}\t{pos}\t{pos + 1}\tbc\t1\n")  # cuts at pos, pos + 1
        seqs[chrom] = "".join(s)
    fa.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    frags.write_text("".join(frag_lines))
    peaks.write_text("".join(peak_lines))
    nonpeaks.write_text("".join(non_lines))
    return fa, frags, peaks, nonpeaks, seqs


TINY = dict(filters=7, n_layers=2, bias_filters=5, bias_n_layers=1, input_len=131,
            output_len=23, batch_size=16, lr=4e-3, epochs=3, patience=2, max_jitter=7,
            valid_contigs=("chrV",), test_contigs=("chrT",), negative_sampling_ratio=0.3)


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("counts", [[0, 0, 3], [2, 1, 0, 4, 1], [0, 0, 0, 0], [7], [1, 1, 1, 1, 1, 1, 9]])
def test_multinomial_nll_matches_scipy(counts):
    rng = np.random.default_rng(len(counts))
    logits = rng.normal(size=len(counts)) * 2
    p = np.exp(logits - logits.max())
    p /= p.sum()
    expected = -scipy.stats.multinomial.logpmf(counts, n=sum(counts), p=p)
    got = cb.multinomial_nll(jnp.asarray(logits[None], jnp.float64 if jax.config.x64_enabled else jnp.float32),
                             jnp.asarray([counts], jnp.float32))
    assert got.shape == (1,)
    assert abs(float(got[0]) - expected) < 1e-4 * max(1.0, abs(expected))


def test_example_losses_weights_the_log1p_mse():
    out = {"logits": jnp.zeros((2, 3)), "logcounts": jnp.array([0.0, np.log(5.0)])}
    counts = jnp.array([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    terms = cb.example_losses(out, counts, 3.0)
    mse = np.array([np.log(5.0) ** 2, np.log(5.0) ** 2])
    np.testing.assert_allclose(np.asarray(terms["mse"]), mse, atol=1e-6)
    np.testing.assert_allclose(np.asarray(terms["loss"]), np.asarray(terms["mnll"]) + 3.0 * mse, atol=1e-5)
    assert cb.counts_loss_weight(np.array([5.0, 7.0, 9.0])) == 1.0
    assert cb.counts_loss_weight(np.array([50.0, 300.0, 900.0])) == 30.0


# ----------------------------------------------------------------------------- filters


def test_bias_threshold_filter_drops_exactly_the_expected_regions():
    peaks = np.arange(1, 101, dtype=float)  # quantile(., 0.01) = 1.99
    nonpeaks = np.array([0.0, 0.99, 0.995, 1.0, 5.0, 0.5])
    keep = td.bias_threshold_keep(peaks, nonpeaks, 0.5)  # threshold 0.995
    assert keep.tolist() == [True, True, True, False, False, True]
    assert td.bias_threshold_keep(peaks, nonpeaks, 2.0).tolist() == [True] * 4 + [False, True]


def test_contig_split_and_outliers():
    r = td.Regions(chrom=np.array(["chrA", "chrV", "chrT", "chrA"], dtype=object),
                   start0=np.zeros(4, np.int64), end0=np.ones(4, np.int64), centre0=np.zeros(4, np.int64))
    s = td.split_by_contig(r, valid_contigs=("chrV",), test_contigs=("chrT",))
    assert s["train"].tolist() == [True, False, False, True]
    assert s["valid"].tolist() == [False, True, False, False]
    assert s["test"].tolist() == [False, False, True, False]
    with pytest.raises(td.TrainDataError):
        td.split_by_contig(r, valid_contigs=("chrV",), test_contigs=("chrV",))
    counts = np.arange(100001, dtype=float)  # quantiles 0.0001 / 0.9999 are 10 and 99990
    keep = td.outlier_keep(counts)
    assert np.flatnonzero(keep).tolist() == list(range(10, 99991))


# ----------------------------------------------------------------------------- augmentation


def test_reverse_complement_tokens():
    t = np.array([[0, 1, 2, 3, 4, 0]], np.uint8)
    assert td.reverse_complement(t).tolist() == [[3, 4, 0, 1, 2, 3]]


def test_rc_and_jitter_move_sequence_and_label_together():
    rng = np.random.default_rng(3)
    n, L, P, J = 9, 31, 11, 5
    ext_t = rng.integers(0, 5, size=(n, L + 2 * J)).astype(np.uint8)
    ext_c = rng.poisson(3.0, size=(n, P + 2 * J)).astype(np.float32)
    reg = td.Regions(chrom=np.array(["c"] * n, dtype=object), start0=np.zeros(n, np.int64),
                     end0=np.ones(n, np.int64), centre0=np.zeros(n, np.int64))
    ex = td.Examples(tokens=ext_t, counts=ext_c, regions=reg, max_jitter=J)
    idx = np.array([0, 3, 3, 8, 1, 5, 5, 5, 2, 7, 6, 4] * 4)
    tokens, counts = td.make_batch(ex, idx, rng, input_len=L, output_len=P, jitter=J, rc_fraction=0.5)
    seen_rc = seen_fwd = 0
    offsets = set()
    for b, i in enumerate(idx):
        fwd = [o for o in range(2 * J + 1) if np.array_equal(tokens[b], ext_t[i, o : o + L])]
        rc = [o for o in range(2 * J + 1)
              if np.array_equal(tokens[b], td.reverse_complement(ext_t[i, o : o + L]))]
        matches_fwd = [o for o in fwd if np.array_equal(counts[b], ext_c[i, o : o + P])]
        matches_rc = [o for o in rc if np.array_equal(counts[b], ext_c[i, o : o + P][::-1])]
        assert matches_fwd or matches_rc, f"batch row {b}: sequence and counts disagree"
        seen_fwd += bool(matches_fwd)
        seen_rc += bool(matches_rc)
        offsets.update(matches_fwd + matches_rc)
    assert seen_rc > 5 and seen_fwd > 5  # both happen at ~50 %
    assert len(offsets) > 4 and min(offsets) >= 0 and max(offsets) <= 2 * J
    # no rng: centred forward windows
    t0, c0 = td.make_batch(ex, np.arange(n), None, input_len=L, output_len=P, jitter=J)
    np.testing.assert_array_equal(t0, ext_t[:, J : J + L])
    np.testing.assert_array_equal(c0, ext_c[:, J : J + P])


# ----------------------------------------------------------------------------- data loading


def test_examples_are_centred_on_summits(tmp_path):
    fa, frags, peaks, _, seqs = make_dataset(tmp_path)
    from veff.io.genome import Genome

    regions = td.read_regions(peaks)
    sig = td.open_signal(frags)
    assert isinstance(sig, td.FragmentSignal)
    with Genome(fa) as g:
        ex = td.load_examples(g, sig, regions, input_len=41, output_len=11, max_jitter=3)
    c = int(regions.centre0[0])
    chrom = regions.chrom[0]
    assert c == int(regions.start0[0]) + 50
    # the planted motif sits at [c-5, c+5): input index L//2 - 5 of the centred window
    centred = ex.tokens[0, 3 : 3 + 41]
    assert decode(centred[20 - 5 : 20 + 5]) == MOTIF
    assert decode(ex.tokens[0]) == seqs[chrom][c - 20 - 3 : c + 21 + 3]
    # counts: a fragment "s s+1" cuts at s and at s+1 (the +4/-5 -> +4/-4 shift)
    lines = [ln.split("\t") for ln in frags.read_text().splitlines()]
    pos = np.array([int(f[1]) for f in lines if f[0] == chrom])
    o = c - 20 + 15 - 3
    expect = np.array([np.sum(pos == p) + np.sum(pos + 1 == p) for p in range(o, o + 11 + 6)], np.float32)
    np.testing.assert_array_equal(ex.counts[0], expect)


# ----------------------------------------------------------------------------- training


def test_loss_decreases_over_a_few_steps(tmp_path):
    fa, frags, peaks, _, _ = make_dataset(tmp_path)
    from veff.io.genome import Genome
    from veff.models import bpnet

    cfg = bpnet.BPNetConfig(filters=7, n_layers=2, input_len=131, output_len=23)
    with Genome(fa) as g:
        ex = td.load_examples(g, td.open_signal(frags), td.read_regions(peaks), input_len=131,
                              output_len=23, max_jitter=0)
    stage = cb._Stage(cb._forward_single(cfg), 1e-2, cb.counts_loss_weight(ex.total_counts))
    params = bpnet.init(cfg, 0)
    opt_state = stage.opt.init(params)
    tokens, counts = td.make_batch(ex, np.arange(16), None, input_len=131, output_len=23, jitter=0)
    losses = []
    for _ in range(12):
        params, opt_state, terms = stage.step(params, opt_state, None, tokens, counts)
        losses.append(float(terms["loss"]))
    assert losses[-1] < 0.7 * losses[0], losses


def test_train_chrombpnet_end_to_end_writes_loadable_checkpoints(tmp_path):
    fa, frags, peaks, nonpeaks, _ = make_dataset(tmp_path)
    cfg = cb.TrainConfig(**TINY, seed=1, max_steps_per_epoch=4)
    res = cb.train_chrombpnet(fa, frags, peaks, nonpeaks, tmp_path / "out", config=cfg,
                              command="veff train chrombpnet ...", progress=False)
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    assert 1 <= len(log["bias"]) <= 3 and 1 <= len(log["chrombpnet"]) <= 3
    assert all(1 <= r["steps"] <= 4 for r in log["chrombpnet"] + log["bias"])
    from veff.checkpoint import load_checkpoint
    from veff.models.bpnet import forward, forward_chrombpnet
    from veff.models.registry import load_model

    handles = {k: load_model(str(d)) for k, d in
               (("bias", res.bias_dir), ("nobias", res.nobias_dir), ("full", res.full_dir))}
    assert handles["full"].arch == "chrombpnet" and handles["nobias"].arch == "bpnet"
    meta = load_checkpoint(res.nobias_dir).metadata
    assert meta["command"] == "veff train chrombpnet ..."
    assert meta["train_config"]["filters"] == 7 and len(meta["data"]["genome"]["sha256"]) == 64
    # the full checkpoint is exactly nobias + (scaled) bias
    x = jax.nn.one_hot(jnp.asarray(np.random.default_rng(0).integers(0, 4, (3, 131))), 4)
    full = handles["full"].apply(handles["full"].params, x)
    parts = forward_chrombpnet(cfg.accessibility_config(), cfg.bias_config(),
                               {"accessibility": handles["nobias"].params, "bias": handles["bias"].params}, x)
    np.testing.assert_allclose(np.asarray(full["logits"]), np.asarray(parts["logits"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(full["logcounts"]), np.asarray(parts["logcounts"]), atol=1e-6)
    b = forward(cfg.bias_config(), handles["bias"].params, x)
    assert np.all(np.isfinite(np.asarray(b["logcounts"])))
    assert np.isfinite(res.metrics["test_peaks_loss"])
    # the bias stage trained on exactly the non-peaks the threshold rule keeps
    from veff.io.genome import Genome

    with Genome(fa) as g:
        sig = td.open_signal(frags)
        tot = {k: td.load_examples(g, sig, td.read_regions(p), input_len=131, output_len=23,
                                   max_jitter=0).total_counts for k, p in (("p", peaks), ("n", nonpeaks))}
    pr, nr = td.read_regions(peaks), td.read_regions(nonpeaks)
    thr = np.quantile(tot["p"][pr.chrom != "chrT"], 0.01) * 0.5
    expect = int(np.sum((tot["n"] <= thr) & ~np.isin(nr.chrom, ["chrV", "chrT"])))
    assert log["examples"]["bias_nonpeaks_train"] == expect
    assert 0 < expect < int(np.sum(~np.isin(nr.chrom, ["chrV", "chrT"])))  # the filter bites


def test_bias_stage_overrides_are_used(tmp_path):
    """bias_lr drives the bias stage's Adam (a tiny lr leaves the bias tower at its init) and
    bias_counts_loss_weight replaces the median/10 rule."""
    from veff.checkpoint import load_checkpoint, unflatten
    from veff.models import bpnet

    fa, frags, peaks, nonpeaks, _ = make_dataset(tmp_path)
    cfg = cb.TrainConfig(**{**TINY, "epochs": 1}, seed=3, max_steps_per_epoch=3, bias_lr=1e-9,
                         bias_counts_loss_weight=7.5, bias_patience=1)
    res = cb.train_chrombpnet(fa, frags, peaks, nonpeaks, tmp_path / "out", config=cfg, progress=False)
    assert res.metrics["counts_loss_weight_bias"] == 7.5
    assert res.metrics["counts_loss_weight"] != 7.5  # stage 2 keeps chromBPNet's rule
    got = unflatten(load_checkpoint(res.bias_dir).params)
    init = bpnet.init(cfg.bias_config(), 2 * cfg.seed + 1)
    for layer in init:
        for leaf in ("kernel", "bias"):
            if layer == bpnet.COUNT and leaf == "bias":
                continue  # set to the mean target, then shifted (bias_model_scaled)
            np.testing.assert_allclose(np.asarray(got[layer][leaf]), np.asarray(init[layer][leaf]),
                                       atol=1e-6, err_msg=f"{layer}/{leaf}")
    with pytest.raises(ValueError, match="bias_lr"):
        cb.TrainConfig(**TINY, bias_lr=0.0)


def test_train_rejects_empty_valid_split(tmp_path):
    fa, frags, peaks, nonpeaks, _ = make_dataset(tmp_path)
    cfg = cb.TrainConfig(**{**TINY, "valid_contigs": ("chrZ",)}, max_steps_per_epoch=1)
    with pytest.raises(td.TrainDataError, match="valid"):
        cb.train_chrombpnet(fa, frags, peaks, nonpeaks, tmp_path / "o", config=cfg, progress=False)
