"""Re-randomise a PyTorch reference model for parity tests.

A fresh enformer-pytorch / borzoi-pytorch model has zero attention output projections and
BatchNorm statistics of (0, 1), which would hide attention and normalisation bugs; every
parameter and running statistic is drawn again here.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def rerandomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            leaf = name.rsplit(".", 1)[1]
            if isinstance(owner, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
                new = (torch.rand(p.shape, generator=g) + 0.5 if leaf == "weight"
                       else 0.1 * torch.randn(p.shape, generator=g))
            elif leaf == "weight":  # conv / linear / attention-pool / to_out: N(0, 1/fan_in)
                new = torch.randn(p.shape, generator=g) / math.sqrt(int(np.prod(p.shape[1:])))
            elif leaf in ("rel_content_bias", "rel_pos_bias"):
                new = 0.5 * torch.randn(p.shape, generator=g)
            else:
                new = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(new)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + 1.5 * torch.rand(b.shape, generator=g))


def narrow_borzoi(m: torch.nn.Module, cfg) -> None:
    """Replace the hard-coded widths of a borzoi-pytorch ``Borzoi`` built on the meta device
    with those of veff config ``cfg`` (stem, res tower, U-net, final convs, heads)."""
    from borzoi_pytorch.pytorch_borzoi_model import ConvBlock

    nn = torch.nn
    r = cfg.res_filters
    m.conv_dna.conv_layer = nn.Conv1d(4, cfg.conv_dna_filters, cfg.conv_dna_kernel, padding="same")
    blocks, cin = [], cfg.conv_dna_filters
    for i, c in enumerate(r[:5]):
        blocks.append(ConvBlock(in_channels=cin, out_channels=c, kernel_size=cfg.res_kernel))
        if i < 4:
            blocks.append(m._max_pool)
        cin = c
    m.res_tower = nn.Sequential(*blocks)
    m.unet1 = nn.Sequential(m._max_pool, ConvBlock(in_channels=r[4], out_channels=cfg.dim,
                                                   kernel_size=cfg.res_kernel))
    m.horizontal_conv0 = ConvBlock(in_channels=r[4], out_channels=cfg.dim, kernel_size=1)
    m.final_joined_convs[0] = ConvBlock(in_channels=cfg.dim, out_channels=cfg.final_filters,
                                        kernel_size=1)
    m.human_head = nn.Conv1d(cfg.final_filters, cfg.num_tracks("human"), 1)
    if getattr(m, "mouse_head", None) is not None:  # built with enable_mouse_head
        m.mouse_head = nn.Conv1d(cfg.final_filters, cfg.num_tracks("mouse"), 1)
