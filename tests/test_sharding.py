"""Data parallelism: scores for 1 vs 8 (fake CPU) devices and for batch sizes 1/7/64 agree
to ≤ 1e-6. JAX reads XLA_FLAGS once, so the 8-device run happens in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, jax
    from veff.engine import ModelScorer, ScoreOptions
    from veff.io.windows import WindowBatch
    from veff.models import bpnet
    from veff.checkpoint import save_checkpoint, load_checkpoint

    assert len(jax.local_devices()) == 8, jax.local_devices()
    cfg = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)
    ck = save_checkpoint(sys.argv[1] + "/m", arch="bpnet", config=cfg.to_dict(),
                         params=bpnet.init(cfg, 4), metadata={"name": "m"})
    handle = bpnet.from_checkpoint(load_checkpoint(sys.argv[1] + "/m"))
    rng = np.random.default_rng(0)
    n, L = 45, cfg.input_len
    ref = rng.integers(0, 4, (n, L)).astype(np.uint8)
    alt = ref.copy()
    alt[:, L // 2] = (alt[:, L // 2] + 1) % 4
    alt[:5, L // 2 + 1 :] = ref[:5, L // 2 + 3 :].tolist() and np.concatenate(
        [ref[:5, L // 2 + 3 :], rng.integers(0, 4, (5, 2)).astype(np.uint8)], axis=1)  # 5 deletions
    ref_len = np.ones(n, np.int32); ref_len[:5] = 3
    w = WindowBatch(ref=ref, alt=alt, ref_len=ref_len, alt_len=np.ones(n, np.int32),
                    padded=np.zeros(n, bool))
    out = {}
    with jax.default_matmul_precision("highest"):
        for devices in (1, 8):
            for bs in (1, 7, 64):
                s = ModelScorer(handle, ScoreOptions(batch_size=bs, devices=devices)).score(w)
                for k, v in s.items():
                    out[f"{devices}_{bs}_{k}"] = v
    np.savez(sys.argv[1] + "/scores.npz", **out)
    """
)


def test_one_vs_eight_devices_and_batch_sizes(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    scores = np.load(tmp_path / "scores.npz")
    stats = {k.split("_", 2)[2] for k in scores.files}
    assert {"logfc", "jsd"} <= stats
    for stat in stats:
        base = scores[f"1_64_{stat}"]
        assert np.isfinite(base).all(), stat
        for devices in (1, 8):
            for bs in (1, 7, 64):
                np.testing.assert_allclose(scores[f"{devices}_{bs}_{stat}"], base, atol=1e-6, rtol=0,
                                           err_msg=f"{stat} devices={devices} batch={bs}")


def test_devices_beyond_what_exists_is_a_clear_error():
    from veff.sharding import make_mesh

    with pytest.raises(ValueError, match="sees 1 device"):
        make_mesh(64)
