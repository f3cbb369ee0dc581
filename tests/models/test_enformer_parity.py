"""veff's Enformer vs enformer-pytorch, block by block, every parameter and buffer
re-randomised (a fresh enformer-pytorch has a zero attention output projection, 2·identity
attention pooling and trivial BatchNorm statistics, which would hide bugs there).

Both sides run in float32 (veff with matmul precision "highest"); the weights go through
veff's converter from a saved state dict. Per block: max|veff − torch| <= 1e-5 · max|torch|
+ 1e-7. Run with ``-s`` to see the measured figures.
"""

from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")
ep = pytest.importorskip("enformer_pytorch")
pytest.importorskip("enformer_pytorch.modeling_enformer")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_torch import rerandomise  # noqa: E402

from veff.checkpoint import flatten, load_checkpoint  # noqa: E402
from veff.convert import enformer_pytorch as conv  # noqa: E402
from veff.convert.common import ConvertError  # noqa: E402
from veff.models import attention, enformer  # noqa: E402
from veff.models.enformer import EnformerConfig  # noqa: E402

M = pytest.importorskip("enformer_pytorch.modeling_enformer")
REL_TOL = 1e-5
ATOL = 1e-7
FULL = 196_608


# --------------------------------------------------------------------------- helpers


def torch_model(cfg: EnformerConfig, *, use_tf_gamma: bool, seed: int = 0):
    """enformer-pytorch with cfg's shape, every parameter and buffer re-randomised."""
    torch.manual_seed(seed)
    model = ep.Enformer.from_hparams(
        dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, attn_dim_key=cfg.attn_dim_key,
        num_downsamples=cfg.num_downsamples, dim_divisible_by=cfg.dim_divisible_by,
        output_heads=cfg.heads_dict, target_length=cfg.output_len, use_tf_gamma=use_tf_gamma,
    ).eval()
    rerandomise(model, seed + 1)
    return model


def record_blocks(model) -> dict[str, np.ndarray]:
    """Forward hooks on every block; outputs stored channels-last, like veff's."""
    out: dict[str, np.ndarray] = {}

    def hook(name: str, channels_first: bool):
        def f(_mod, _inp, y):
            out[name] = (y.transpose(1, 2) if channels_first else y).detach().numpy().copy()
        return f

    model.stem.register_forward_hook(hook("stem", True))
    for i, block in enumerate(model.conv_tower):
        block.register_forward_hook(hook(f"tower/{i}", True))
    for i, block in enumerate(model.transformer):
        block.register_forward_hook(hook(f"transformer/{i}", False))
    model.crop_final.register_forward_hook(hook("crop", False))
    model.final_pointwise.register_forward_hook(hook("final_pointwise", False))
    for name, head in model._heads.items():
        head.register_forward_hook(hook(f"heads/{name}", False))
    return out


def set_tf_gamma(model, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, M.Attention):
            m.use_tf_gamma = on


def onehot(length: int, seed: int, batch: int = 1) -> np.ndarray:
    """Random ACGT one-hot with ~1% N (all-zero) columns; with batch 2 the second row is the
    reverse complement of the first."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, (batch, length))
    tokens[rng.random((batch, length)) < 0.01] = 4
    x = np.eye(5, 4, dtype=np.float32)[tokens]
    if batch == 2:
        x[1] = x[0][::-1, ::-1]
    return x


def compare(got: dict, want: dict, label: str) -> dict[str, tuple[float, float]]:
    figures, bad = {}, []
    for key, b in want.items():
        a = np.asarray(got[key])
        assert a.shape == b.shape, f"{label} {key}: shape {a.shape} vs torch {b.shape}"
        err = float(np.abs(a - b).max())
        scale = float(np.abs(b).max())
        figures[key] = (err, err / scale)
        if not err <= REL_TOL * scale + ATOL:
            bad.append(f"{key}: max abs {err:.3g} vs max|torch| {scale:.3g}")
    print(f"\n[{label}] block: max abs diff / relative to max|torch|")
    for key, (err, rel) in figures.items():
        print(f"  {key:18s} {err:.3e}  {rel:.3e}")
    assert not bad, f"{label}: " + "; ".join(bad)
    return figures


def converted(model, tmp_path, cfg: EnformerConfig, **kw):
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    c = conv.read(path, window_len=cfg.window_len, target_length=cfg.output_len, **kw)
    return EnformerConfig.from_dict(c.config), jax.tree.map(jnp.asarray, c.params)


def jitted(fn, config):
    return jax.jit(lambda p, x: fn(p, x, config=config, return_intermediates=True))


# --------------------------------------------------------------------------- unit pieces


# At 1000 positions torch's vectorised float32 log of two gamma rates is 1 ulp off the
# correctly rounded value veff uses; the log-normaliser (~3e4) amplifies that to ~1e-3.
@pytest.mark.parametrize("length,features,gamma_tol", [
    (23, 18, 1e-6), (1000, 192, 2e-3), (1024, 192, 1e-6), (1536, 192, 1e-6)])
def test_positional_features_match_enformer_pytorch(length, features, gamma_tol):
    want = M.get_positional_embed(length, features, "cpu", False).numpy()
    got = np.asarray(attention.positional_basis(
        length, features, (attention.exponential_basis, attention.central_mask_basis,
                           attention.gamma_basis_enformer_pytorch)))
    assert got.shape == want.shape
    nb = features // 6
    err = np.abs(got - want).max(axis=0)
    assert err[:nb].max() <= 1e-6            # exponential
    assert err[nb:2 * nb].max() == 0.0       # central mask
    # enformer-pytorch's float32 gamma, rounding noise included (1e-3 if computed exactly)
    assert err[2 * nb:3 * nb].max() <= gamma_tol
    # signed copy (XLA flushes float32 denormals to zero, hence the atol)
    sign = np.sign(np.arange(-length + 1, length))[:, None]
    np.testing.assert_allclose(got[:, 3 * nb:], sign * got[:, :3 * nb], rtol=0, atol=1e-37)


def test_gamma_normalisation_tf_vs_enformer_pytorch():
    """TF normalises each gamma feature by its max over distances (the table has every
    column max exactly 1); enformer-pytorch's use_tf_gamma=False normalises each distance
    over features instead, which is up to ~1.0 away."""
    table = conv.load_tf_gammas()
    assert np.array_equal(table.max(axis=0), np.ones(32, np.float32))
    d = np.abs(np.arange(-1535, 1536, dtype=np.float64))
    tf = attention.gamma_basis(d, 32, 1536)
    legacy = attention.gamma_basis_enformer_pytorch(d, 32, 1536)
    assert np.abs(tf - table).max() <= 3e-3      # float32 lgamma cancellation in TF
    assert np.abs(legacy - table).max() > 0.9
    # the table mode uses the table itself
    cfg = EnformerConfig.original(gamma_basis="tf_table")
    feats = np.asarray(enformer.positional_features(cfg, {"tf_gamma": jnp.asarray(table)}))
    assert np.array_equal(feats[:, 64:96], table)
    assert np.array_equal(feats[:, 160:192], np.sign(d * np.sign(np.arange(-1535, 1536)))
                          [:, None].astype(np.float32) * table)


def test_relative_shift_is_a_gather():
    rng = np.random.default_rng(0)
    n = 7
    x = rng.normal(size=(2, 3, n, 2 * n - 1)).astype(np.float32)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    want = x[..., i, j - i + n - 1]
    assert np.array_equal(np.asarray(attention.relative_shift(jnp.asarray(x))), want)


def test_config_rules():
    o = EnformerConfig.original()
    assert o.tower_channels == [768, 768, 896, 1024, 1152, 1280, 1536]
    assert (o.output_len, o.crop, o.bin_size, o.num_bins) == (896, 320, 128, 1536)
    assert EnformerConfig.original(window_len=131_072).output_len == 1024 - 2 * 213
    with pytest.raises(ValueError, match="tf_table"):
        EnformerConfig.original(window_len=131_072, gamma_basis="tf_table")
    with pytest.raises(ValueError, match="divisible by 6"):
        EnformerConfig.tiny(dim=56, heads=4)
    with pytest.raises(ValueError, match="centre-cropped"):
        EnformerConfig.tiny(target_length=14)
    with pytest.raises(ValueError, match="multiple"):
        EnformerConfig.tiny(window_len=23 * 128 + 64)
    assert EnformerConfig.from_dict(o.to_dict()) == o


def test_original_shapes_match_enformer_pytorch():
    """Every tensor of a full-size enformer-pytorch (built on the meta device) maps onto
    exactly the params of EnformerConfig.original()."""
    with torch.device("meta"):
        model = ep.Enformer.from_hparams()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    canon = conv.canonical_keys({k: np.broadcast_to(np.uint8(0), s) for k, s in shapes.items()},
                                "meta")
    mapped = {}
    for key, v in canon.items():
        target, fn = conv.map_key(key)
        mapped[target] = fn(v).shape
    abstract = enformer.abstract_params(EnformerConfig.original())
    want = {k: tuple(v.shape) for k, v in flatten(
        jax.tree.map(lambda s: np.broadcast_to(np.uint8(0), s.shape), abstract)).items()}
    assert mapped == want
    # parameters (251.2M) plus BatchNorm running statistics, nothing else
    n_params = sum(p.numel() for p in model.parameters())
    n_stats = sum(b.numel() for k, b in model.named_buffers() if k.endswith(("_mean", "_var")))
    assert round(n_params / 1e5) == 2512
    assert sum(int(np.prod(s)) for s in want.values()) == n_params + n_stats


# --------------------------------------------------------------------------- parity


def test_tiny_parity_block_by_block(tmp_path):
    cfg = EnformerConfig.tiny()
    model = torch_model(cfg, use_tf_gamma=False)
    want = record_blocks(model)
    x = onehot(cfg.window_len, seed=1, batch=2)
    with torch.no_grad():
        model(torch.from_numpy(x))
    jcfg, params = converted(model, tmp_path, cfg, use_tf_gamma=False)
    assert jcfg.gamma_basis == "enformer_pytorch"
    with jax.default_matmul_precision("highest"):
        got = jitted(enformer.apply, jcfg)(params, jnp.asarray(x))
    compare(got, want, "tiny 2944 bp, enformer-pytorch gamma")
    assert np.array_equal(np.asarray(got["tracks"]), np.asarray(got["heads/human"]))
    # trunk + head_from_trunk is apply split in two
    with jax.default_matmul_precision("highest"):
        h = enformer.trunk(params, jnp.asarray(x), config=jcfg)
        split = enformer.head_from_trunk(params, h, config=jcfg)["tracks"]
    np.testing.assert_allclose(np.asarray(split), np.asarray(got["tracks"]), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_full_length_parity_both_gamma_modes(tmp_path):
    """196,608 bp (1536 transformer positions), dim 192 / 1 head so that there are 32 gamma
    basis functions, as the TF table needs. The conv trunk runs once; the transformer and
    heads run under use_tf_gamma=True and False."""
    cfg = EnformerConfig.tiny(window_len=FULL, dim=192, heads=1, target_length=896)
    model = torch_model(cfg, use_tf_gamma=True, seed=3)
    want = record_blocks(model)
    x = onehot(FULL, seed=4)
    tf_cfg, tf_params = converted(model, tmp_path, cfg, use_tf_gamma=True)
    py_cfg, py_params = converted(model, tmp_path, cfg, use_tf_gamma=False)
    assert (tf_cfg.gamma_basis, py_cfg.gamma_basis) == ("tf_table", "enformer_pytorch")

    with torch.no_grad():
        h = model.conv_tower(model.stem(torch.from_numpy(x).transpose(1, 2))).transpose(1, 2)
        runs = {}
        for on in (True, False):
            set_tf_gamma(model, on)
            e = model.final_pointwise(model.crop_final(model.transformer(h)))
            for head in model._heads.values():
                head(e)
            runs[on] = dict(want)
    with jax.default_matmul_precision("highest"):
        got_tf = jitted(enformer.apply, tf_cfg)(tf_params, jnp.asarray(x))
        got_py = jitted(enformer.head_from_trunk, py_cfg)(py_params, got_tf["tower/5"])
    compare(got_tf, runs[True], "196,608 bp, use_tf_gamma=True")
    head_keys = {k: v for k, v in runs[False].items() if not k.startswith(("stem", "tower"))}
    compare(got_py, head_keys, "196,608 bp, use_tf_gamma=False")
    # the two gamma modes differ by far more than the tolerance, so the test tells them apart
    a, b = runs[True]["transformer/0"], runs[False]["transformer/0"]
    gap = np.abs(a - b).max() / np.abs(a).max()
    print(f"  use_tf_gamma True vs False at transformer/0: {gap:.3e} relative")
    assert gap > 20 * REL_TOL


# --------------------------------------------------------------------------- converter


def test_converter_spellings_and_roundtrip(tmp_path):
    """state_dict() (both _trunk.* and named keys), named keys only, _trunk.* keys only and
    a save_pretrained directory all give the same params; the native checkpoint round-trips
    through from_checkpoint to the same tracks as enformer-pytorch."""
    cfg = EnformerConfig.tiny()
    model = torch_model(cfg, use_tf_gamma=False, seed=5)
    sd = model.state_dict()
    assert any(k.startswith("_trunk.") for k in sd) and any(k.startswith("stem.") for k in sd)
    named = {k: v for k, v in sd.items() if not k.startswith("_trunk.")}
    trunk_only = {k: v for k, v in sd.items()
                  if not k.startswith(("stem.", "conv_tower.", "transformer.", "final_pointwise."))}
    flat = {}
    from safetensors.torch import save_file

    for label, d in (("both", sd), ("named", named), ("trunk", trunk_only)):
        torch.save(d, tmp_path / f"{label}.pt")
        c = conv.read(tmp_path / f"{label}.pt", window_len=cfg.window_len, use_tf_gamma=False)
        flat[label] = flatten(c.params)
    save_file({k: v.contiguous() for k, v in named.items()}, tmp_path / "named.safetensors")
    flat["safetensors"] = flatten(conv.read(tmp_path / "named.safetensors",
                                            window_len=cfg.window_len, use_tf_gamma=False).params)
    for label in ("named", "trunk", "safetensors"):
        assert flat[label].keys() == flat["both"].keys()
        assert all(np.array_equal(flat[label][k], flat["both"][k]) for k in flat["both"])

    hf = tmp_path / "hf"
    # a hub-style directory (config.json + pytorch_model.bin, as EleutherAI's repos ship;
    # transformers refuses safetensors here because of enformer-pytorch's shared modules)
    model.save_pretrained(hf, safe_serialization=False)
    assert (hf / "config.json").is_file() and (hf / "pytorch_model.bin").is_file()
    ckpt = conv.convert_enformer_pytorch(hf, tmp_path / "veff", use_tf_gamma=False,
                                         window_len=cfg.window_len)
    handle = enformer.from_checkpoint(load_checkpoint(tmp_path / "veff"))
    assert (handle.kind, handle.bin_size, handle.window_len, handle.output_len) == (
        "binned", 128, cfg.window_len, cfg.output_len)
    assert handle.track_names == [f"human_{i}" for i in range(11)] == [
        t["name"] for t in ckpt.tracks]
    x = onehot(cfg.window_len, seed=6)
    with torch.no_grad():
        want = model(torch.from_numpy(x))["human"].numpy()
    got = np.asarray(jax.jit(handle.apply)(handle.params, jnp.asarray(x))["tracks"])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_converter_is_strict(tmp_path):
    cfg = EnformerConfig.tiny()
    sd = dict(torch_model(cfg, use_tf_gamma=False, seed=7).state_dict())
    for k in ("transformer.1.0.fn.1.to_q.weight", "_trunk.4.1.0.fn.1.to_q.weight"):
        del sd[k]
    sd["transformer.1.0.fn.1.extra.weight"] = torch.zeros(3)
    sd["_heads.human.0.bias"] = torch.zeros(12)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ConvertError) as e:
        conv.read(tmp_path / "bad.pt", window_len=cfg.window_len)
    msg = str(e.value)
    assert "transformer/1/attn/to_q/kernel" in msg                 # missing
    assert "transformer.1.0.fn.1.extra.weight" in msg              # unexpected
    assert "heads/human/bias (12,)" in msg                         # wrong shape

    sd = dict(torch_model(cfg, use_tf_gamma=False, seed=7).state_dict())
    sd["stem.0.bias"] = sd["stem.0.bias"] + 1.0   # its _trunk.1.0.bias twin differs now
    torch.save(sd, tmp_path / "twins.pt")
    with pytest.raises(ConvertError, match="stem.0.bias"):
        conv.read(tmp_path / "twins.pt", window_len=cfg.window_len)

    with pytest.raises(ConvertError, match="tf_table|1536"):
        conv.read(tmp_path / "bad.pt", window_len=cfg.window_len, use_tf_gamma=True)
