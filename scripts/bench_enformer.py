"""Enformer variant scoring (REF + ALT per variant, CPU): veff vs enformer-pytorch, one run.

    python scripts/bench_enformer.py [--original] [--variants 1] [--bf16]

Same weights: an enformer-pytorch model with every parameter and buffer drawn at random
(the parity test's ``torch_model``; a fresh model has a zero attention output and identity
pooling) is saved as a state dict and converted with
``veff.convert.enformer_pytorch.convert_enformer_pytorch``. Default (a few minutes on
2 cores): ``EnformerConfig.small()`` (dim 384, depth 4, ~1/16 of the FLOPs) at the full
196,608 bp; ``--original``: the published ``original()`` (dim 1536, depth 11, 5313 human
tracks, 3.29 TFLOP per forward). The gamma
positional basis is enformer-pytorch's ``use_tf_gamma=False`` on both sides (same cost).

veff: ``ModelScorer(..., ScoreOptions(rc=False, batch_size=1, stats=("SUM",)))`` (its
exact incremental ALT step for SNVs when the model has one); peer: one enformer-pytorch
forward of [REF, ALT] as a batch of 2. gReLU's ``predict_variant_effects`` would be a
third peer, but grelu is not installed here.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import _bench_common as bc

FULL_TFLOP = 3.29e12  # long_context.md §4: original Enformer at 196,608 bp


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
    from test_enformer_parity import torch_model  # the parity test's randomised model

    from veff.convert.enformer_pytorch import convert_enformer_pytorch
    from veff.models.enformer import EnformerConfig

    cfg = EnformerConfig.original() if args.original else EnformerConfig.small()
    which = "original() (dim 1536, depth 11)" if args.original else "small() (dim 384, depth 4)"
    bc.header(f"Enformer {which}, {cfg.window_len:,} bp, REF+ALT, no RC: veff vs "
              "enformer-pytorch")
    print("gReLU predict_variant_effects: "
          + ("importable (not benchmarked here)" if importlib.util.find_spec("grelu")
             else "not installed here, so not benchmarked"))
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    model = torch_model(cfg, use_tf_gamma=False, seed=0)
    torch.save(model.state_dict(), workdir / "enformer.pt")
    convert_enformer_pytorch(workdir / "enformer.pt", workdir / "ckpt", use_tf_gamma=False,
                             name="bench", window_len=cfg.window_len)

    def forward(m, x):
        return m(x, head="human")

    bc.long_context_bench(label="enformer-pytorch", torch_model=model, ckpt=workdir / "ckpt",
                          torch_forward=forward, workdir=workdir, num_variants=args.variants,
                          bf16=args.bf16, analytic_flops=FULL_TFLOP if args.original else None)
    if tmp:
        tmp.cleanup()
    print(f"\nload average at end: {bc.load_average()}")


if __name__ == "__main__":
    main()
