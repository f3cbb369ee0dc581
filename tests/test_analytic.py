"""A hand-set BPNet whose variant effect is known in closed form.

The stem counts A/T bases (kernel tap at its centre, weight 1 for A and T, ReLU), every
dilated layer and the profile head are zero (the residual passes the stem through), and the
count head is ``w · mean(tower) + b``. So logcounts = b + w · #AT / P_tower over the tower's
input span, which reverse complement maps onto itself (A↔T): an SNV C→A inside the span
changes the log counts by exactly w / P_tower in both strands, logfc = w / (P_tower · ln 2),
and the profile is uniform for both alleles, so jsd = 0.
"""

import math

import jax
import numpy as np
import pytest

from veff.checkpoint import save_checkpoint
from veff.engine import ModelScorer, ScoreOptions
from veff.io.windows import WindowBatch
from veff.models import bpnet
from veff.models.registry import load_model

CFG = bpnet.BPNetConfig(filters=3, n_layers=2, input_len=211, output_len=97)
W, B = 5.0, 0.3


def _params():
    p = jax.tree.map(np.zeros_like, bpnet.init(CFG, 0))
    p = jax.tree.map(np.asarray, p)
    p[bpnet.STEM]["kernel"][10, 0, 0] = 1.0  # A at the kernel centre
    p[bpnet.STEM]["kernel"][10, 3, 0] = 1.0  # T
    p[bpnet.COUNT]["kernel"][0, 0] = W
    p[bpnet.COUNT]["bias"][0] = B
    return p


@pytest.mark.parametrize("rc", [True, False])
def test_logfc_and_jsd_match_closed_form(tmp_path, rc):
    save_checkpoint(tmp_path / "m", arch="bpnet", config=CFG.to_dict(), params=_params(),
                    metadata={"name": "analytic"})
    handle = load_model(str(tmp_path / "m"))
    L, c = CFG.input_len, CFG.input_len // 2
    rng = np.random.default_rng(0)
    ref = rng.choice(np.array([1, 2], np.uint8), (6, L))  # C/G background: #AT = 0
    ref[:, c] = 1  # C at the variant
    alt = ref.copy()
    alt[:3, c] = 0  # C -> A: one more A/T base
    alt[3:, c] = 2  # C -> G: no change in A/T
    w = WindowBatch(ref=ref, alt=alt, ref_len=np.ones(6, np.int32), alt_len=np.ones(6, np.int32),
                    padded=np.zeros(6, bool))
    with jax.default_matmul_precision("highest"):
        s = ModelScorer(handle, ScoreOptions(rc=rc, batch_size=4)).score(w)
    tower = CFG.tower_len
    expected = W / (tower * math.log(2))
    np.testing.assert_allclose(s["logfc"][:3, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(s["logfc"][3:, 0], 0.0, atol=1e-7)
    np.testing.assert_allclose(s["ref_counts"][:, 0], math.exp(B), rtol=1e-6)
    np.testing.assert_allclose(s["jsd"][:, 0], 0.0, atol=1e-6)
