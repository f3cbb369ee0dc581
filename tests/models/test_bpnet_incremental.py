"""Exact incremental ALT for BPNet equals the full ALT forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from veff.models import bpnet
from veff.models.bpnet_incremental import affected_spans, forward_pair, forward_pair_chrombpnet

EYE = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])


def _pair(cfg, center, width, seed, n_left=0):
    rng = np.random.default_rng(seed)
    tok = rng.integers(0, 4, (3, cfg.input_len))
    tok[0, :n_left] = 4  # a window N-padded at a contig start
    alt = tok.copy()
    alt[:, center : center + width] = (alt[:, center : center + width] + 1 + rng.integers(0, 3, width)) % 4
    return jnp.asarray(EYE[tok]), jnp.asarray(EYE[alt])


def _close(a, b, rel=1e-5):
    scale = max(float(jnp.abs(b).max()), 1e-3)
    assert float(jnp.abs(a - b).max()) <= rel * scale


@pytest.mark.parametrize(
    "cfg",
    [bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131),
     bpnet.BPNetConfig(filters=11, n_layers=8)],
)
@pytest.mark.parametrize("where,width", [("center", 1), ("rc_center", 1), ("center", 3)])
def test_incremental_alt_matches_full_forward(cfg, where, width):
    with jax.default_matmul_precision("highest"):
        p = bpnet.init(cfg, jax.random.key(1))
        c = cfg.input_len // 2 if where == "center" else cfg.input_len - 1 - cfg.input_len // 2
        xr, xa = _pair(cfg, c, width, seed=width, n_left=200)
        ref, alt = jax.jit(lambda p, x, y: forward_pair(cfg, p, x, y, c, width))(p, xr, xa)
        full_ref, full_alt = bpnet.forward(cfg, p, xr), bpnet.forward(cfg, p, xa)
    for k in ("logits", "logcounts"):
        _close(ref[k], full_ref[k])
        _close(alt[k], full_alt[k])
    # the edit changes the output, so the comparison above is not vacuous
    assert float(jnp.abs(full_alt["logits"] - full_ref["logits"]).max()) > 1e-3


def test_incremental_combined_chrombpnet():
    acc = bpnet.BPNetConfig(filters=7, n_layers=4, input_len=311, output_len=101)
    bias = bpnet.BPNetConfig(filters=5, n_layers=2, input_len=311, output_len=101)
    with jax.default_matmul_precision("highest"):
        p = bpnet.init_chrombpnet(acc, bias, jax.random.key(2))
        xr, xa = _pair(acc, 155, 1, seed=3)
        ref, alt = forward_pair_chrombpnet(acc, bias, p, xr, xa, 155)
        full = bpnet.forward_chrombpnet(acc, bias, p, xa)
    for k in ("logits", "logcounts"):
        _close(alt[k], full[k])


def test_affected_fraction_chrombpnet_512x8():
    cfg = bpnet.BPNetConfig.chrombpnet()
    spans = affected_spans(cfg, cfg.input_len // 2)
    changed = sum(b - a for a, b in spans[1:])
    total = sum(cfg.input_len - 20 - 2 * sum(2**j for j in range(1, i + 1)) for i in range(1, 9))
    assert total == 14744  # Σ dilated-layer lengths for 2114 bp, 8 layers
    assert 0.14 < changed / total < 0.16
