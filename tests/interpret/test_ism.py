"""ISM maps: the variant's own cell equals `veff score`; every other cell equals a full
forward of the edited window; the incremental and full paths agree."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import zarr

from veff.engine import ModelScorer, ScoreOptions
from veff.interpret.ism import IsmScorer, substituted_bases
from veff.io.windows import WindowBatch

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "checkpoints" / "demo"


def _small_vcf(tmp_path: Path, n: int = 4) -> Path:
    lines = [x for x in (DEMO / "variants.vcf").read_text().splitlines()]
    head = [x for x in lines if x.startswith("#")]
    snvs = [x for x in lines if not x.startswith("#") and len(x.split("\t")[3]) == 1
            and len(x.split("\t")[4]) == 1][:n]
    p = tmp_path / "v.vcf"
    p.write_text("\n".join(head + snvs) + "\n")
    return p


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "veff.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                    "VEFF_JAX_CACHE": ""})


@pytest.mark.parametrize("no_rc", [False, True])
def test_demo_variant_cell_equals_veff_score(tmp_path, no_rc):
    vcf = _small_vcf(tmp_path)
    flag = ["--no-rc"] if no_rc else []
    r = _cli("score", str(vcf), "--genome", str(DEMO / "genome.fa"), "--model", str(DEMO / "full"),
             "--out", str(tmp_path / "s.zarr"), "--stats", "logfc,jsd", "--quiet", *flag)
    assert r.returncode == 0, r.stderr
    r = _cli("ism", str(vcf), "--genome", str(DEMO / "genome.fa"), "--model", str(DEMO / "full"),
             "--out", str(tmp_path / "i.zarr"), "--width", "7", "--on-alt", *flag)
    assert r.returncode == 0, r.stderr
    s = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    i = zarr.open_group(str(tmp_path / "i.zarr"), mode="r")
    model = list(i["scores"].group_keys())[0]
    alt = np.asarray(i["variants/alt"][:])
    ref = np.asarray(i["variants/ref"][:])
    bi = {b: k for k, b in enumerate("ACGT")}
    rows = np.arange(len(alt))
    assert list(i["base"][:]) == list("ACGT")
    np.testing.assert_array_equal(i["genomic_pos"][:, 3], i["variants/pos"][:])
    for stat in ("logfc", "jsd"):
        m = np.asarray(i[f"scores/{model}/{stat}"][:])  # (V, W, 4, T)
        assert m.shape == (len(alt), 7, 4, 1)
        got = m[rows, 3, [bi[a] for a in alt], 0]
        want = np.asarray(s[f"scores/{model}/{stat}"][:])[:, 0]
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 if stat == "logfc" else 1e-6)
        assert np.isnan(m[rows, 3, [bi[a] for a in ref], 0]).all()  # the background base
        assert np.isfinite(m).sum() == len(alt) * 7 * 3
        # on the ALT background the REF base is the reverse edit: logfc negates
        m_alt = np.asarray(i[f"scores/{model}/{stat}_on_alt"][:])
        back = m_alt[rows, 3, [bi[a] for a in ref], 0]
        np.testing.assert_allclose(back, -want if stat == "logfc" else want, rtol=0, atol=1e-5)


def test_bad_width_is_one_line(tmp_path):
    vcf = _small_vcf(tmp_path, 1)
    r = _cli("ism", str(vcf), "--genome", str(DEMO / "genome.fa"), "--model", str(DEMO / "full"),
             "--out", str(tmp_path / "i.zarr"), "--width", "8")
    assert r.returncode == 2 and r.stderr.startswith("veff: error:") and "Traceback" not in r.stderr
    assert "--width" in r.stderr


def _enformer_handle(tmp_path):
    from veff.checkpoint import load_checkpoint, save_checkpoint
    from veff.models import enformer
    from veff.models.enformer import EnformerConfig

    cfg = EnformerConfig.tiny()
    rng = np.random.default_rng(3)

    def leaf(path, sd):  # kernels N(0, 1/fan_in), norm scales and variances positive
        name, shape = str(getattr(path[-1], "key", path[-1])), tuple(sd.shape)
        if name in ("var", "scale"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        if len(shape) > 1 and "bias" not in name:
            fan_in = shape[0] if name == "depthwise" else int(np.prod(shape[:-1]))
            return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)

    params = jax.tree_util.tree_map_with_path(leaf, enformer.abstract_params(cfg))
    save_checkpoint(tmp_path / "e", arch="enformer", config=cfg.to_dict(), params=params)
    return enformer.from_checkpoint(load_checkpoint(tmp_path / "e"))


def _full_scores(handle, opts, ref, offsets):
    """Every cell by brute force: ModelScorer's full step on (ref, edited ref)."""
    full = ModelScorer(dataclasses.replace(handle, apply_pair=None), opts)
    c = ref.shape[1] // 2
    out = {}
    for g, o in enumerate(offsets):
        sub = substituted_bases(ref[:, c + o])  # (B, 3)
        for k in range(3):
            alt = ref.copy()
            alt[:, c + o] = sub[:, k]
            n = len(ref)
            w = WindowBatch(ref=ref, alt=alt, ref_len=np.ones(n, np.int32), alt_len=np.ones(n, np.int32),
                            padded=np.zeros(n, bool))
            for s, v in full.score(w).items():
                out.setdefault(s, np.full((n, len(offsets), 4, v.shape[1]), np.nan, np.float32))
                out[s][np.arange(n), g, sub[:, k]] = v
    return out


@pytest.mark.parametrize("rc", [True, False])
def test_tiny_enformer_every_cell_matches_full_forward(tmp_path, rc):
    handle = _enformer_handle(tmp_path)
    opts = ScoreOptions(stats=("SUM", "logSUM"), rc=rc, batch_size=2)
    rng = np.random.default_rng(11)
    ref = rng.integers(0, 4, (2, handle.window_len)).astype(np.uint8)
    ref[1, handle.window_len // 2 + 1] = 4  # an N inside the map: A, C, G scored, T NaN
    ism = IsmScorer(handle, opts, width=5, tracks=(0, 3))
    got = ism.map(ref)
    want = _full_scores(handle, opts, ref, ism.offsets)
    for s in ("SUM", "logSUM"):
        assert got[s].shape == (2, 5, 4, 2)
        np.testing.assert_array_equal(np.isnan(got[s]), np.isnan(want[s][..., [0, 3]]))
        np.testing.assert_allclose(got[s], want[s][..., [0, 3]], rtol=0, atol=2e-5)
    assert np.isnan(got["SUM"][1, 3, 3]).all() and np.isfinite(got["SUM"][1, 3, :3]).all()
    # the full (non-incremental) ISM path gives the same map
    plain = IsmScorer(dataclasses.replace(handle, apply_pair=None), opts, width=5, tracks=(0, 3))
    again = plain.map(ref)
    np.testing.assert_allclose(again["SUM"], got["SUM"], rtol=0, atol=2e-5)
