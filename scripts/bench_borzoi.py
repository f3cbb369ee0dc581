"""Borzoi variant scoring (REF + ALT per variant, CPU): veff vs borzoi-pytorch, one run.

    python scripts/bench_borzoi.py [--original] [--variants 1] [--bf16]

Same weights: borzoi-pytorch's own ``Borzoi`` (its forward code untouched), built by the
parity test's ``_torch_borzoi`` at the chosen widths with every parameter and buffer drawn
at random, saved as a state dict and converted with
``veff.convert.borzoi_pytorch.convert_borzoi_pytorch``. Default (a few minutes on 2
cores): the full 524,288 bp and Borzoi's layout with narrower channels (SMALL);
``--original``: ``BorzoiConfig.original()`` (the published widths, 7611 human tracks,
4.91 TFLOP per forward).

veff: ``ModelScorer(..., ScoreOptions(rc=False, batch_size=1, stats=("SUM",)))`` (its
exact incremental ALT step for SNVs when the model has one); peer: one borzoi-pytorch
forward of [REF, ALT] as a batch of 2, human head.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _bench_common as bc

FULL_TFLOP = 4.91e12  # long_context.md §4: Borzoi at 524,288 bp, 6144 bins, human head

# Full length, Borzoi's layout, ~1/10 of the channels' cost (ffn = 2 x dim as borzoi-pytorch).
SMALL = dict(conv_dna_filters=128, res_filters=(152, 184, 224, 264, 320, 384), num_heads=4,
             key_size=32, value_size=48, num_layers=2, ffn_dim=768, final_filters=480,
             heads=(("human", 512), ("mouse", 128)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", action="store_true",
                    help="the published widths (minutes per variant on 2 cores)")
    ap.add_argument("--variants", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    import sys
    sys.path.insert(0, str(bc.REPO / "tests" / "models"))
    import torch
    from test_borzoi_parity import _torch_borzoi  # the parity test's randomised model

    from veff.convert.borzoi_pytorch import convert_borzoi_pytorch
    from veff.models import borzoi as bz

    cfg = bz.BorzoiConfig.original(position_basis_length=4096,
                                   **({} if args.original else SMALL))
    which = "original()" if args.original else "small widths (see SMALL)"
    bc.header(f"Borzoi {which}, {cfg.window_len:,} bp, REF+ALT, no RC: veff vs borzoi-pytorch")
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    model = _torch_borzoi(cfg)
    torch.save(model.state_dict(), workdir / "borzoi.pt")
    convert_borzoi_pytorch(workdir / "borzoi.pt", workdir / "ckpt", name="bench",
                           window_len=cfg.window_len, bins_to_return=cfg.output_len)

    def forward(m, x):  # (B, L, 4) -> (B, P, T)
        return m(x.transpose(1, 2).contiguous(), is_human=True).transpose(1, 2)

    bc.long_context_bench(label="borzoi-pytorch", torch_model=model, ckpt=workdir / "ckpt",
                          torch_forward=forward, workdir=workdir, num_variants=args.variants,
                          bf16=args.bf16, analytic_flops=FULL_TFLOP if args.original else None)
    if tmp:
        tmp.cleanup()
    print(f"\nload average at end: {bc.load_average()}")


if __name__ == "__main__":
    main()
