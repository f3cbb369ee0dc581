"""Flashzoi variant scoring (REF + ALT per variant, CPU fp32): veff vs borzoi-pytorch, one run.

    python scripts/bench_flashzoi.py [--variants 1] [--flops-only]

Same weights: borzoi-pytorch's own ``Borzoi(flashed=True)`` (its forward code untouched)
at the widths of SMALL, every tensor drawn at random, saved as a state dict and converted
by ``veff.convert.borzoi_pytorch``. borzoi-pytorch's Flashzoi attention needs flash-attn,
which is CUDA-only and has no CPU path; the peer's attention here is
``tests/helpers_flashzoi.py``'s stand-in for flash-attn's ``MHA`` (the same arithmetic, with
``torch.nn.functional.scaled_dot_product_attention``: what a CPU run of Flashzoi in torch
does). Full 524,288 bp, Borzoi's layout with narrower channels (a few minutes on 2 cores).

veff: ``ModelScorer(..., ScoreOptions(rc=False, batch_size=1, stats=("SUM",)))`` (its exact
incremental ALT step for SNVs); peer: one forward of [REF, ALT] as a batch of 2.

Before the run it prints XLA's FLOP count of one full forward of the published Borzoi and
Flashzoi (traced on abstract shapes, no weights): the basis of docs/performance.md's H100
projection. ``--flops-only`` stops there.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _bench_common as bc

# Full length, Borzoi's layout, narrow channels; head size 192 with 128 rotary dims and 2
# query heads over 1 key/value head (the published: 8 over 4).
SMALL = dict(conv_dna_filters=128, res_filters=(152, 184, 224, 264, 320, 384), num_heads=2,
             num_kv_heads=1, key_size=192, value_size=192, num_layers=2, ffn_dim=768,
             final_filters=480, heads=(("human", 512), ("mouse", 128)))


def published_flops() -> dict[str, float]:
    import functools

    import jax
    import jax.numpy as jnp

    from veff.models import borzoi as bz

    out = {}
    for name, cfg in (("Borzoi", bz.BorzoiConfig.original(position_basis_length=4096)),
                      ("Flashzoi", bz.BorzoiConfig.flashzoi())):
        params = bz.param_shapes(cfg, ("human",))
        x = jax.ShapeDtypeStruct((1, cfg.window_len, 4), jnp.float32)
        out[name] = bc.xla_flops(jax.jit(functools.partial(bz.apply, cfg, head="human")),
                                 params, x)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=1)
    ap.add_argument("--flops-only", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    for name, f in published_flops().items():
        print(f"{name} published widths, 524,288 bp, human head: one full forward = "
              f"{f / 1e12:.3f} TFLOP (XLA count)")
    if args.flops_only:
        return

    import sys
    sys.path.insert(0, str(bc.REPO / "tests"))
    import torch
    from helpers_flashzoi import install_mha_standin, torch_flashzoi

    from veff.convert.borzoi_pytorch import convert_borzoi_pytorch
    from veff.models import borzoi as bz

    install_mha_standin()
    cfg = bz.BorzoiConfig.flashzoi(**SMALL)
    bc.header(f"Flashzoi small widths (see SMALL), {cfg.window_len:,} bp, REF+ALT, no RC: "
              "veff vs borzoi-pytorch (flash-attn stand-in, torch SDPA)")
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    model = torch_flashzoi(cfg)
    torch.save(model.state_dict(), workdir / "flashzoi.pt")
    convert_borzoi_pytorch(workdir / "flashzoi.pt", workdir / "ckpt", name="bench",
                           window_len=cfg.window_len, bins_to_return=cfg.output_len,
                           num_heads=cfg.num_heads)

    def forward(m, x):  # (B, L, 4) -> (B, P, T)
        return m(x.transpose(1, 2).contiguous(), is_human=True).transpose(1, 2)

    bc.long_context_bench(label="borzoi-pytorch flashzoi", torch_model=model,
                          ckpt=workdir / "ckpt", torch_forward=forward, workdir=workdir,
                          num_variants=args.variants, bf16=False, analytic_flops=None)
    if tmp:
        tmp.cleanup()
    print(f"\nload average at end: {bc.load_average()}")


if __name__ == "__main__":
    main()
