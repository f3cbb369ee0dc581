"""Contribution scores against independent implementations: tangermeme's deep_lift_shap on
a bpnet-lite BPNet (weights through veff's bpnet-lite converter), captum's integrated
gradients / input × gradient, and finite differences for a tiny Enformer."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
bpnetlite_bpnet = pytest.importorskip("bpnetlite.bpnet")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from veff.convert import bpnet_lite  # noqa: E402
from veff.interpret.contrib import Attributor, bpnet_target, make_baselines, project  # noqa: E402
from veff.models.bpnet import ACCESSIBILITY, BPNetConfig  # noqa: E402

L = 300


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A bpnet-lite BPNet with re-randomised weights, and veff's conversion of it."""
    torch.manual_seed(5)
    m = bpnetlite_bpnet.BPNet(n_filters=8, n_layers=3, n_outputs=1, n_control_tracks=0, verbose=False)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * (1.5 / np.sqrt(max(1, p[0].numel()))) if p.ndim > 1
                    else torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("m") / "bpnet.torch"
    torch.save(m.state_dict(), path)  # a state dict: loads without --trust-pickle
    conv = bpnet_lite.read(path, input_len=L)
    cfg = BPNetConfig.from_dict(conv.config[ACCESSIBILITY] if ACCESSIBILITY in conv.config else conv.config)
    params = conv.params[ACCESSIBILITY] if ACCESSIBILITY in conv.params else conv.params
    return m.eval().double(), cfg, jax.tree.map(jnp.asarray, params)


def _inputs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    tok = rng.integers(0, 4, (n, L)).astype(np.uint8)
    return tok, np.eye(4, dtype=np.float32)[tok]


def _torch_x(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).double()


@pytest.mark.parametrize("head", ["counts", "profile"])
def test_deeplift_matches_tangermeme(model, head):
    from tangermeme.deep_lift_shap import deep_lift_shap

    tm, cfg, params = model
    tok, x = _inputs()
    refs = make_baselines(tok, "shuffle:4", seed=3)  # (N, S, L, 4)
    wrapper = (bpnetlite_bpnet.CountWrapper if head == "counts" else bpnetlite_bpnet.ProfileWrapper)(tm)
    want = deep_lift_shap(wrapper, _torch_x(x), references=torch.from_numpy(
        refs.transpose(0, 1, 3, 2).copy()).double(), hypothetical=True, device="cpu",
        batch_size=6, warning_threshold=1e9).numpy().transpose(0, 2, 1)
    att = Attributor(bpnet_target(cfg, params, head, deeplift=False),
                     bpnet_target(cfg, params, head, deeplift=True), method="deeplift", batch_pairs=5)
    got, delta = att.hypothetical(x, refs)
    scale = np.abs(want).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)
    # DeepLIFT's summation-to-delta Σ (x - r) m = f(x) - f(r) holds for the counts head;
    # the profile target's product l' · softmax(l') goes through the plain product rule (as
    # in tangermeme), so there it does not.
    if head == "counts":
        assert np.abs(delta).max() < 1e-5


def test_plain_target_is_the_model(model):
    """The attribution target with plain nonlinearities is bpnet-lite's output."""
    tm, cfg, params = model
    _, x = _inputs()
    with torch.no_grad():
        prof, counts = tm(_torch_x(x))
    f = bpnet_target(cfg, params, "counts", deeplift=False)
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(x))), counts[:, 0].numpy(), atol=1e-5)
    g = bpnet_target(cfg, params, "profile", deeplift=False)
    want = bpnetlite_bpnet.ProfileWrapper(tm)(_torch_x(x))[:, 0].detach().numpy()
    np.testing.assert_allclose(np.asarray(g(jnp.asarray(x))), want, atol=1e-5)


@pytest.mark.parametrize("method", ["ig", "ixg"])
def test_ig_ixg_match_captum(model, method):
    captum = pytest.importorskip("captum.attr")
    tm, cfg, params = model
    tok, x = _inputs(2, seed=4)
    refs = make_baselines(tok, "shuffle:1", seed=1)
    wrapper = bpnetlite_bpnet.CountWrapper(tm)
    xt = _torch_x(x).requires_grad_()
    if method == "ig":
        bt = _torch_x(refs[:, 0])
        actual = captum.IntegratedGradients(wrapper).attribute(
            xt, baselines=bt, target=0, n_steps=16, method="gausslegendre").detach().numpy()
    else:
        actual = captum.InputXGradient(wrapper).attribute(xt, target=0).detach().numpy()
    actual = actual.transpose(0, 2, 1)
    att = Attributor(bpnet_target(cfg, params, "counts", deeplift=False), None, method=method,
                     ig_steps=16)
    hyp, delta = att.hypothetical(x, refs)
    # captum's actual IG attributions are (x - r) m; ours are x h with h = m - Σ r m, whose
    # per-position sums agree (both are Σ_b (x_b - r_b) m_b).
    np.testing.assert_allclose((x * hyp).sum(-1), actual.sum(-1), rtol=0,
                               atol=1e-4 * np.abs(actual).max())
    if method == "ixg":
        np.testing.assert_allclose(x * hyp, actual, rtol=0, atol=1e-4 * np.abs(actual).max())


def test_project_is_deeplift_hypothetical():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((2, 5, 4)).astype(np.float32)
    r = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, 5))]
    h = np.asarray(project(jnp.asarray(m), jnp.asarray(r)))
    for b in range(4):  # tangermeme's definition: Σ_c (e_b - r)_c m_c
        e = np.zeros(4, np.float32)
        e[b] = 1
        np.testing.assert_allclose(h[..., b], ((e - r) * m).sum(-1), atol=1e-6)


def test_baselines_shapes_and_errors(tmp_path):
    tok = np.random.default_rng(0).integers(0, 4, (2, 40)).astype(np.uint8)
    b = make_baselines(tok, "shuffle:3", seed=0)
    assert b.shape == (2, 3, 40, 4)
    np.testing.assert_array_equal(b.sum(axis=(2,)), np.repeat(np.eye(4)[tok].sum(1)[:, None], 3, 1))
    assert make_baselines(tok, "zeros", 0).shape == (2, 1, 40, 4)
    np.savez(tmp_path / "b.npz", baselines=b)
    np.testing.assert_array_equal(make_baselines(tok, str(tmp_path / "b.npz"), 0), b)
    for bad in ("shuffle:x", "nope", "shuffle:0"):
        with pytest.raises(ValueError):
            make_baselines(tok, bad, 0)


def test_cli_contrib_on_demo_variants(tmp_path):
    """`veff contrib` on demo variants: REF and ALT windows of the bias-free model, actual
    contributions that sum to f(x) - f(r) for the counts head, one-line errors."""
    import subprocess
    import sys
    from pathlib import Path

    import zarr

    root = Path(__file__).resolve().parents[2]
    demo = root / "checkpoints" / "demo"
    lines = (demo / "variants.vcf").read_text().splitlines()
    body = [x for x in lines if not x.startswith("#")][:2]
    (tmp_path / "v.vcf").write_text("\n".join([x for x in lines if x.startswith("#")] + body) + "\n")
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "VEFF_JAX_CACHE": ""}
    args = [sys.executable, "-m", "veff.cli", "contrib", str(tmp_path / "v.vcf"), "--genome",
            str(demo / "genome.fa"), "--model", str(demo / "full"), "--out", str(tmp_path / "c.zarr"),
            "--baseline", "shuffle:2"]
    r = subprocess.run(args, capture_output=True, text=True, cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    z = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    hyp, oh = np.asarray(z["hypothetical"][:]), np.asarray(z["onehot"][:])
    assert hyp.shape == oh.shape == (2, 474, 4) and np.isfinite(hyp).all()
    assert np.abs(np.asarray(z["delta"][:])).max() < 1e-4
    assert (np.asarray(z["onehot_alt"][:]) != oh).sum() == 4  # one base differs per SNV
    bad = subprocess.run(args[:-2] + ["--baseline", "shuffle:x", "--overwrite"], capture_output=True,
                         text=True, cwd=root, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("veff: error:") and "Traceback" not in bad.stderr


def test_binned_ixg_matches_finite_differences(tmp_path):
    """Gradient of a tiny Enformer's centre-bin track sum against central differences
    (fp32, eps = 1e-2 along a random direction)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_ism import _enformer_handle

    from veff.interpret.contrib import binned_target

    handle = _enformer_handle(tmp_path)
    f = binned_target(handle, (0, 2))
    rng = np.random.default_rng(2)
    x = jnp.asarray(np.eye(4, dtype=np.float32)[rng.integers(0, 4, (1, handle.window_len))])
    att = Attributor(f, None, method="ixg")
    hyp, _ = att.hypothetical(np.asarray(x), np.zeros((1, 1, handle.window_len, 4), np.float32))
    g = np.asarray(jax.grad(lambda z: f(z).sum())(x))
    np.testing.assert_allclose(hyp, g, rtol=0, atol=1e-6)  # zero baseline: h = ∇f
    for seed in range(3):
        v = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
        eps = 1e-2
        fd = (float(f(x + eps * v)[0]) - float(f(x - eps * v)[0])) / (2 * eps)
        assert abs(fd - float((g * v).sum())) <= 2e-2 * abs(fd) + 1e-4, (fd, float((g * v).sum()))
