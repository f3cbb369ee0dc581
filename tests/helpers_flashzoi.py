"""borzoi-pytorch's Flashzoi on a CPU, for parity tests and the benchmark.

borzoi-pytorch builds Flashzoi's attention (``FlashAttention``) as
``flash_attn.modules.mha.MHA(use_flash_attn=True, …)``. flash-attn is a CUDA build (its
attention kernels and its rotary kernel, Triton, need a GPU), it is not installable here,
and borzoi-pytorch has no CPU fallback: without flash-attn ``Borzoi(flashed=True)`` cannot
even be constructed. :func:`install_mha_standin` puts a ``flash_attn.modules.mha`` module
in ``sys.modules`` whose ``MHA`` takes borzoi-pytorch's constructor arguments unchanged and
computes what flash-attn's MHA defines, in plain torch: the fused ``Wqkv`` split
``[q | k | v]``, float32 rotary tables (``1 / base**(arange(0, r, 2) / r)``, ``outer``,
cos/sin) applied GPT-NeoX style ("rotate half") to the first r dims of q and k, key/value
heads shared by ``num_heads // num_heads_kv`` consecutive query heads, softmax attention
with ``softmax_scale`` (``torch.nn.functional.scaled_dot_product_attention``, the CPU path
a torch port takes), ``out_proj``. The arguments borzoi-pytorch passes are recorded in
``MHA.calls`` so tests can check veff's constants against them. Everything else in the
reference (conv tower, LayerNorm, FFN, U-net, heads, forward order) is borzoi-pytorch's code.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from helpers_torch import narrow_borzoi
from torch import nn


class MHA(nn.Module):
    calls: list[dict] = []

    def __init__(self, *, use_flash_attn, embed_dim, num_heads, num_heads_kv, qkv_proj_bias,
                 out_proj_bias, dropout, softmax_scale, causal, rotary_emb_dim,
                 rotary_emb_base, rotary_emb_scale_base, fused_bias_fc):
        super().__init__()
        MHA.calls.append(dict(
            use_flash_attn=use_flash_attn, embed_dim=embed_dim, num_heads=num_heads,
            num_heads_kv=num_heads_kv, qkv_proj_bias=qkv_proj_bias,
            out_proj_bias=out_proj_bias, dropout=dropout, softmax_scale=softmax_scale,
            causal=causal, rotary_emb_dim=rotary_emb_dim, rotary_emb_base=rotary_emb_base,
            rotary_emb_scale_base=rotary_emb_scale_base, fused_bias_fc=fused_bias_fc))
        assert not causal and rotary_emb_scale_base is None
        self.h, self.kv, self.d = num_heads, num_heads_kv, embed_dim // num_heads
        self.scale, self.dropout = softmax_scale, dropout
        self.rdim, self.base = rotary_emb_dim, float(rotary_emb_base)
        self.Wqkv = nn.Linear(embed_dim, self.d * (num_heads + 2 * num_heads_kv),
                              bias=qkv_proj_bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=out_proj_bias)

    def _rotate(self, t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.rdim // 2
        a, b, rest = t[..., :half], t[..., half : self.rdim], t[..., self.rdim :]
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.cat([a * c - b * s, b * c + a * s, rest], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        h, kv, d = self.h, self.kv, self.d
        qkv = self.Wqkv(x)
        q = qkv[..., : h * d].reshape(B, T, h, d)
        k = qkv[..., h * d : (h + kv) * d].reshape(B, T, kv, d)
        v = qkv[..., (h + kv) * d :].reshape(B, T, kv, d)
        inv = 1.0 / (self.base ** (torch.arange(0, self.rdim, 2, dtype=torch.float32)
                                   / self.rdim))
        ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        q, k = self._rotate(q, ang.cos(), ang.sin()), self._rotate(k, ang.cos(), ang.sin())
        k, v = (t.repeat_interleave(h // kv, dim=2) for t in (k, v))
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            dropout_p=self.dropout if self.training else 0.0, scale=self.scale)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, h * d))


def install_mha_standin(monkeypatch=None) -> None:
    """Make ``from flash_attn.modules.mha import MHA`` give the stand-in (via ``monkeypatch``
    when given, so a test leaves ``sys.modules`` as it found it)."""
    import importlib.machinery

    pkg, mods, mha = (types.ModuleType(n) for n in
                      ("flash_attn", "flash_attn.modules", "flash_attn.modules.mha"))
    for m in (pkg, mods, mha):  # importlib.util.find_spec (transformers) wants a spec
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, loader=None)
    mha.MHA = MHA
    pkg.modules, mods.mha = mods, mha
    for name, mod in (("flash_attn", pkg), ("flash_attn.modules", mods),
                      ("flash_attn.modules.mha", mha)):
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, name, mod)
        else:
            sys.modules[name] = mod


def torch_flashzoi(cfg, seed: int = 11):
    """borzoi-pytorch ``Borzoi(flashed=True)`` with its hard-coded widths replaced by those of
    veff config ``cfg`` (built on meta, then every tensor drawn again). Needs the stand-in."""
    from borzoi_pytorch import Borzoi
    from borzoi_pytorch.config_borzoi import BorzoiConfig as TorchConfig

    assert len(cfg.res_filters) == 6 and cfg.num_unet == 2 and cfg.ffn_dim == 2 * cfg.dim
    tc = TorchConfig(dim=cfg.dim, depth=cfg.num_layers, heads=cfg.num_heads, flashed=True,
                     bins_to_return=cfg.output_len, enable_mouse_head=True)
    with torch.device("meta"):
        m = Borzoi(tc)
        narrow_borzoi(m, cfg)
    m.to_empty(device="cpu")
    rerandomise_all(m, seed)
    return m.eval()


def rerandomise_all(model: nn.Module, seed: int) -> None:
    """Draw every parameter and buffer again (Flashzoi zero-inits out_proj, ones Wqkv.bias,
    BN statistics start at (0, 1)); fails on a tensor it does not know."""
    g = torch.Generator().manual_seed(seed)
    done = set()
    with torch.no_grad():
        for mname, mod in model.named_modules():
            pre = f"{mname}." if mname else ""
            if isinstance(mod, (nn.Conv1d, nn.Linear)):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g)
                                 / math.sqrt(mod.weight[0].numel()))
                done.add(pre + "weight")
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
                    done.add(pre + "bias")
            elif isinstance(mod, (nn.BatchNorm1d, nn.LayerNorm)):
                mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
                done |= {pre + "weight", pre + "bias"}
                if isinstance(mod, nn.BatchNorm1d):
                    mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                    mod.running_var.copy_(0.5 + 1.5 * torch.rand(mod.running_var.shape,
                                                                  generator=g))
                    mod.num_batches_tracked.zero_()
                    done |= {pre + "running_mean", pre + "running_var",
                             pre + "num_batches_tracked"}
    left = set(model.state_dict()) - done
    assert not left, f"tensors not re-randomised: {sorted(left)}"


BLOCKS = {
    "conv_dna": "conv_dna", "res_tower/0": "res_tower.0", "res_tower/1": "res_tower.2",
    "res_tower/2": "res_tower.4", "res_tower/3": "res_tower.6", "res_tower/4": "res_tower.8",
    "res_tower/5": "unet1.1", "unet/0": "separable1", "unet/1": "separable0",
    "crop": "crop", "final": "final_joined_convs",
}


def torch_forward(model, x: np.ndarray, num_layers: int, is_human: bool = True,
                  ) -> dict[str, np.ndarray]:
    """Reference outputs channels-last, per block (forward hooks), plus "tracks"."""
    got: dict[str, np.ndarray] = {}
    mods = dict(model.named_modules())
    names = {**BLOCKS, **{f"transformer/{i}": f"transformer.{i}" for i in range(num_layers)}}
    handles = []
    for ours, theirs in names.items():
        def hook(_m, _inp, out, ours=ours, theirs=theirs):
            a = out.detach().clone().numpy()
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
