"""veff Borzoi vs borzoi-pytorch 0.5.x, block by block, fp32, every weight re-randomised.

borzoi-pytorch hard-codes its channel widths (512 … 1536, 1920, 7611), so the reference is
borzoi-pytorch's own ``Borzoi`` class with its sub-modules rebuilt from its own
``ConvBlock`` at small widths; its forward code is untouched. Its attention zero-inits the
output projection and BN statistics start at (0, 1): everything is drawn again here, so the
attention branch and the normalisations really contribute.

borzoi-pytorch 0.5.x builds the position basis for the actual transformer length but with
widths from 4096 positions (baskerville's ``seqlen_train``); the reduced-length comparison
therefore uses ``position_basis_length=4096`` (what the converter records by default), and
a separate test shows that the other choice is not silently equal.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("borzoi_pytorch")

from helpers_torch import narrow_borzoi  # noqa: E402

from veff.checkpoint import load_checkpoint  # noqa: E402
from veff.convert.borzoi_pytorch import (  # noqa: E402
    convert_borzoi_pytorch,
    infer_config,
    map_state_dict,
)
from veff.convert.common import ConvertError, assign  # noqa: E402
from veff.models import borzoi as bz  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

REL_TOL = 1e-5
FIGURES: dict[str, dict[str, tuple[float, float]]] = {}


def _torch_borzoi(cfg: bz.BorzoiConfig):
    """borzoi-pytorch Borzoi with its hard-coded widths replaced by ``cfg``'s (on meta)."""
    from borzoi_pytorch import Borzoi
    from borzoi_pytorch.config_borzoi import BorzoiConfig as TorchConfig

    assert len(cfg.res_filters) == 6 and cfg.num_unet == 2 and cfg.ffn_dim == 2 * cfg.dim
    tc = TorchConfig(dim=cfg.dim, depth=cfg.num_layers, heads=cfg.num_heads,
                     attn_dim_key=cfg.key_size, attn_dim_value=cfg.value_size,
                     bins_to_return=cfg.output_len, enable_mouse_head=True)
    with torch.device("meta"):
        m = Borzoi(tc)
        narrow_borzoi(m, cfg)
    m.to_empty(device="cpu")
    _rerandomise(m, seed=11)
    return m.eval()


def _rerandomise(model, seed: int) -> None:
    """Draw EVERY parameter and buffer again (to_out is zero and BN stats are (0, 1) at
    init); fails if a tensor is left that this function does not know."""
    import torch.nn as nn

    g = torch.Generator().manual_seed(seed)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    def uniform(t, lo, hi):
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    done = set()
    with torch.no_grad():
        for mname, mod in model.named_modules():
            pre = f"{mname}." if mname else ""
            if isinstance(mod, (nn.Conv1d, nn.Linear)):
                normal(mod.weight, mod.weight[0].numel() ** -0.5)
                done.add(pre + "weight")
                if mod.bias is not None:
                    normal(mod.bias, 0.1)
                    done.add(pre + "bias")
            elif isinstance(mod, nn.BatchNorm1d):
                uniform(mod.weight, 0.5, 1.5)
                normal(mod.bias, 0.1)
                normal(mod.running_mean, 0.1)
                uniform(mod.running_var, 0.5, 2.0)
                mod.num_batches_tracked.zero_()
                done |= {pre + k for k in ("weight", "bias", "running_mean", "running_var",
                                           "num_batches_tracked")}
            elif isinstance(mod, nn.LayerNorm):
                uniform(mod.weight, 0.5, 1.5)
                normal(mod.bias, 0.1)
                done |= {pre + "weight", pre + "bias"}
            elif type(mod).__name__ == "Attention":
                normal(mod.rel_content_bias, 0.5)
                normal(mod.rel_pos_bias, 0.5)
                done |= {pre + "rel_content_bias", pre + "rel_pos_bias"}
    left = set(model.state_dict()) - done
    assert not left, f"tensors not re-randomised: {sorted(left)}"
    out = model.transformer[0][0].fn[1].to_out.weight
    assert float(out.detach().abs().min()) > 0


_TORCH_BLOCKS = {
    "conv_dna": "conv_dna", "res_tower/0": "res_tower.0", "res_tower/1": "res_tower.2",
    "res_tower/2": "res_tower.4", "res_tower/3": "res_tower.6", "res_tower/4": "res_tower.8",
    "res_tower/5": "unet1.1", "unet/0": "separable1", "unet/1": "separable0",
    "crop": "crop", "final": "final_joined_convs",
}


def _torch_forward(model, x: np.ndarray, cfg: bz.BorzoiConfig, is_human: bool = True,
                   ) -> dict[str, np.ndarray]:
    """Reference outputs channels-last: blocks via forward hooks, plus "tracks"."""
    got: dict[str, np.ndarray] = {}
    handles = []
    mods = dict(model.named_modules())
    names = dict(_TORCH_BLOCKS)
    names.update({f"transformer/{i}": f"transformer.{i}" for i in range(cfg.num_layers)})
    for ours, theirs in names.items():
        def hook(_m, _inp, out, ours=ours, theirs=theirs):
            a = out.detach().clone().numpy()
            # conv modules are channels-first; transformer layers and crop are channels-last
            got[ours] = a if theirs.startswith(("transformer", "crop")) else a.transpose(0, 2, 1)
        handles.append(mods[theirs].register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(x.transpose(0, 2, 1)).float(), is_human=is_human)
    finally:
        for h in handles:
            h.remove()
    got["tracks"] = out.numpy().transpose(0, 2, 1)
    return got


def _onehot(rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    tok = rng.integers(0, 4, size=(batch, length))
    x = np.eye(4, dtype=np.float32)[tok]
    x[rng.random((batch, length)) < 0.01] = 0.0  # ~1% N (all zero)
    return x


def _compare(label: str, ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    figs = {}
    bad = []
    for k, b in ref.items():
        a = np.asarray(ours[k])
        assert a.shape == b.shape, (k, a.shape, b.shape)
        abs_err = float(np.max(np.abs(a - b)))
        rel_err = abs_err / (float(np.max(np.abs(b))) + 1e-6)
        figs[k] = (abs_err, rel_err)
        if not rel_err <= REL_TOL:
            bad.append(f"{k}: abs {abs_err:.2e} rel {rel_err:.2e}")
    FIGURES[label] = figs
    print(f"\n[{label}] max abs / rel difference per block:")
    for k, (ae, re_) in figs.items():
        print(f"  {k:16s} {ae:.2e}  {re_:.2e}")
    assert not bad, f"{label}: blocks over {REL_TOL} relative: " + "; ".join(bad)


def _veff_outputs(ckpt_dir, cfg_window: int, x: np.ndarray, head: str) -> dict[str, np.ndarray]:
    """Every block of veff's forward (apply with return_intermediates) plus "tracks"."""
    ckpt = load_checkpoint(ckpt_dir)
    handle = bz.from_checkpoint(ckpt, head=head)
    assert handle.window_len == cfg_window and handle.bin_size == 32
    cfg = bz.BorzoiConfig.from_dict(ckpt.config)
    fn = jax.jit(lambda p, x: bz.apply(cfg, p, x, head=head, return_intermediates=True))
    out = fn(handle.params, x)
    res = {k: np.asarray(v) for k, v in out["intermediates"].items()}
    res["tracks"] = np.asarray(out["tracks"])
    return res


# ----------------------------------------------------------------------------- tests
def test_small_reduced_length_hf_directory(tmp_path):
    """small() at 16,384 bp (128 transformer positions), batch 2, both heads, converted from
    a save_pretrained directory."""
    cfg = bz.BorzoiConfig.small(position_basis_length=4096)
    model = _torch_borzoi(cfg)
    model.save_pretrained(tmp_path / "hf")
    convert_borzoi_pytorch(tmp_path / "hf", tmp_path / "ck", window_len=cfg.window_len)
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["config"] == cfg.to_dict()

    x = _onehot(np.random.default_rng(0), 2, cfg.window_len)
    ref = _torch_forward(model, x, cfg, is_human=True)
    _compare("small 16,384 bp, human", _veff_outputs(tmp_path / "ck", cfg.window_len, x,
                                                     "human"), ref)
    # the engine's handle: pure apply(params, x), jitted as the engine would, mouse head
    handle = bz.from_checkpoint(load_checkpoint(tmp_path / "ck"), head="mouse")
    assert handle.kind == "binned" and handle.output_len == cfg.output_len
    assert set(handle.params["heads"]) == {"mouse"}
    ours_m = {"tracks": np.asarray(jax.jit(handle.apply)(handle.params, x)["tracks"])}
    ref_m = {"tracks": _torch_forward(model, x, cfg, is_human=False)["tracks"]}
    _compare("small 16,384 bp, mouse head", ours_m, ref_m)
    # non-trivial outputs: the comparison means something
    assert np.std(ref["tracks"]) > 1e-2 and np.std(ref["transformer/1"]) > 1e-1


def test_position_basis_length_matters(tmp_path):
    """At a reduced length, the basis built from the actual length (baskerville default)
    differs from borzoi-pytorch's 4096-position basis: a config mix-up cannot pass."""
    cfg = bz.BorzoiConfig.small(position_basis_length=4096)
    model = _torch_borzoi(cfg)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    convert_borzoi_pytorch(tmp_path / "sd.pt", tmp_path / "ck", window_len=cfg.window_len,
                           bins_to_return=cfg.output_len, position_basis_length=None)
    ckpt = load_checkpoint(tmp_path / "ck")
    cfg_none = bz.BorzoiConfig.from_dict(ckpt.config)
    assert cfg_none.position_basis_length is None
    params = bz.from_checkpoint(ckpt).params
    x = _onehot(np.random.default_rng(1), 1, cfg.window_len)
    ref = _torch_forward(model, x, cfg)

    def first_layer(c):
        @jax.jit
        def f(p, x):
            h, _ = bz.trunk(c, p, x)
            return bz._transformer_layer(c, p["transformer"]["0"], h, None)

        return np.asarray(f(params, x))

    def rel(a, b):
        return np.max(np.abs(a - b)) / np.max(np.abs(b))

    assert rel(first_layer(cfg), ref["transformer/0"]) <= REL_TOL
    assert rel(first_layer(cfg_none), ref["transformer/0"]) > 1e-3


@pytest.mark.slow
def test_tiny_full_length(tmp_path):
    """tiny() at the full 524,288 bp (4,096 transformer positions, 6,144 bins), batch 1,
    converted from a plain torch state dict."""
    cfg = bz.BorzoiConfig.tiny()
    model = _torch_borzoi(cfg)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    convert_borzoi_pytorch(tmp_path / "sd.pt", tmp_path / "ck")  # borzoi-pytorch defaults
    x = _onehot(np.random.default_rng(2), 1, cfg.window_len)
    ref = _torch_forward(model, x, cfg)
    ours = _veff_outputs(tmp_path / "ck", cfg.window_len, x, "human")
    assert ours["tracks"].shape == (1, 6144, cfg.num_tracks("human"))
    _compare("tiny 524,288 bp, human", ours, ref)


def test_central_mask_basis_matches_borzoi_pytorch():
    from borzoi_pytorch.pytorch_borzoi_transformer import get_positional_embed

    for n, train in ((128, 4096), (1024, 1024), (4096, 4096), (257, 257), (97, 4096)):
        theirs = get_positional_embed(n, train, 32, "cpu").numpy()
        ours = bz.central_mask_basis(n, 32, train)
        np.testing.assert_array_equal(ours, theirs)


def _zero_stride_state_dict(model) -> dict[str, np.ndarray]:
    """Shapes of a (meta) model as zero-memory numpy arrays."""
    return {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in
            model.state_dict().items()}


def test_original_matches_published_layout():
    """The full-size borzoi-pytorch state dict (human + mouse) maps 1:1 onto original()."""
    from borzoi_pytorch import Borzoi
    from borzoi_pytorch.config_borzoi import BorzoiConfig as TorchConfig

    with torch.device("meta"):
        model = Borzoi(TorchConfig(enable_mouse_head=True))
    sd = _zero_stride_state_dict(model)
    cfg = infer_config(sd, {}, source="meta")
    assert cfg == bz.BorzoiConfig.original(position_basis_length=4096)
    assert cfg.output_len == 6144 and cfg.transformer_len == 4096
    tree = assign(bz.param_shapes(cfg), map_state_dict(sd, cfg.num_layers), source="meta")
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))
    n_torch = sum(int(np.prod(v.shape)) for k, v in sd.items()
                  if not k.endswith("num_batches_tracked"))
    assert n == n_torch


def test_converter_is_strict(tmp_path):
    cfg = bz.BorzoiConfig.small()
    model = _torch_borzoi(cfg)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    del sd["transformer.1.0.fn.1.to_k.weight"]
    sd["transformer.0.0.fn.1.extra"] = torch.zeros(3)
    sd["separable0.conv_layer.1.bias"] = torch.zeros(5)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ConvertError) as e:
        convert_borzoi_pytorch(tmp_path / "bad.pt", tmp_path / "ck",
                               window_len=cfg.window_len, bins_to_return=cfg.output_len)
    msg = str(e.value)
    assert "transformer/1/attn/k_kernel" in msg
    assert "torch:transformer.0.0.fn.1.extra" in msg
    assert "unet/1/sep/bias" in msg
    assert not (tmp_path / "ck").exists()
