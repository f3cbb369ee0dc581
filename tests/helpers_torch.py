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
