"""Enformer variant scoring (REF + ALT per variant, CPU): veff vs enformer-pytorch and gReLU.

    python scripts/bench_enformer.py [--original] [--variants 1] [--bf16] [--no-grelu]

Same weights: an enformer-pytorch model with every parameter and buffer drawn at random
(the parity test's ``torch_model``; a fresh model has a zero attention output and identity
pooling) is saved as a state dict and converted with
``veff.convert.enformer_pytorch.convert_enformer_pytorch``. Default (a few minutes on
2 cores): ``EnformerConfig.small(dim_divisible_by=128)`` (dim 384, depth 4, ~1/16 of
the FLOPs; tower widths rounded to 128 as gReLU's EnformerConvTower builds them) at the full
196,608 bp; ``--original``: the published ``original()`` (dim 1536, depth 11, 5313 human
tracks, 3.29 TFLOP per forward). The gamma
positional basis is enformer-pytorch's ``use_tf_gamma=False`` on both sides (same cost).

veff: ``ModelScorer(..., ScoreOptions(rc=False, batch_size=1, stats=("SUM",)))`` (its
exact incremental ALT step for SNVs when the model has one); peer: one enformer-pytorch
forward of [REF, ALT] as a batch of 2. Third peer, where grelu is installed (it is in the
``test`` extra): ``grelu.variant.predict_variant_effects`` on a ``LightningModel`` whose
``EnformerModel`` holds the same weights (enformer-pytorch's state dict renamed to gReLU's
modules by tests/test_convert_grelu.py's ``enformer_grelu_state``, loaded strictly), the
same SNVs on a plain-text copy of the same genome, its defaults otherwise (batch 64, 1
loader worker), timed as a user calls it: dataset building and Lightning's predict loop
included. gReLU puts the variant at 0-based L/2 - 1, veff at L/2, so the same-weights check
runs gReLU's model on veff's windows (untimed), and the script prints how far gReLU's own
windows move the SUM.

Fidelity: the same-weights checks print errors relative to the largest |SUM| (the effect),
and a last check runs enformer-pytorch in float64 (``.double()``) on the same windows and
prints every fp32 SUM's error against it on that scale (scripts/fidelity_enformer.py does
this alone for the full-size model).
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
    ap.add_argument("--no-grelu", action="store_true", help="skip the gReLU peer")
    args = ap.parse_args()

    import sys
    sys.path[:0] = [str(bc.REPO / "tests" / "models"), str(bc.REPO / "tests")]
    import torch
    from test_enformer_parity import torch_model  # the parity test's randomised model

    from veff.convert.enformer_pytorch import convert_enformer_pytorch
    from veff.models.enformer import EnformerConfig

    cfg = (EnformerConfig.original() if args.original
           else EnformerConfig.small(dim_divisible_by=128))
    which = ("original() (dim 1536, depth 11)" if args.original
             else "small(dim_divisible_by=128) (dim 384, depth 4)")
    with_grelu = not args.no_grelu and importlib.util.find_spec("grelu") is not None
    bc.header(f"Enformer {which}, {cfg.window_len:,} bp, REF+ALT, no RC: veff vs "
              "enformer-pytorch" + (" and gReLU" if with_grelu else ""))
    if not with_grelu:
        print("gReLU predict_variant_effects: "
              + ("skipped (--no-grelu)" if args.no_grelu else "not installed, not benchmarked"))
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    model = torch_model(cfg, use_tf_gamma=False, seed=0)
    torch.save(model.state_dict(), workdir / "enformer.pt")
    convert_enformer_pytorch(workdir / "enformer.pt", workdir / "ckpt", use_tf_gamma=False,
                             name="bench", window_len=cfg.window_len)

    def forward(m, x):
        return m(x, head="human")

    peers = (("gReLU", grelu_peer(model, cfg, workdir)),) if with_grelu else ()
    run = bc.long_context_bench(label="enformer-pytorch", torch_model=model,
                                ckpt=workdir / "ckpt", torch_forward=forward, workdir=workdir,
                                num_variants=args.variants, bf16=args.bf16,
                                analytic_flops=FULL_TFLOP if args.original else None,
                                extra_peers=peers)
    float64_check(model, run)
    if tmp:
        tmp.cleanup()
    print(f"\nload average at end: {bc.load_average()}")


def float64_check(model, run: dict) -> None:
    """Every fp32 SUM of the run against enformer-pytorch in float64 (``.double()``) on the
    same windows, relative to the largest |SUM| (the effect scale)."""
    import copy

    import numpy as np
    import torch
    from fidelity_enformer import relative_errors, torch_sums

    ref, _ = torch_sums(copy.deepcopy(model).double(), run["windows"], dtype=torch.float64)
    fp32 = {"veff fp32": run["veff"]["fp32"],
            **{k: v for k, v in run["peers"].items() if k.endswith("fp32")}}
    errs = relative_errors(ref, **fp32)
    print(f"\nfloat64 reference (enformer-pytorch .double(), same windows): max |SUM| "
          f"{np.max(np.abs(ref)):.4g}")
    for k, e in errs.items():
        print(f"  {k}: max |SUM - SUM_f64| / max |SUM_f64| = {e:.2e}")


def grelu_peer(model, cfg, workdir: Path):
    """gReLU's ``predict_variant_effects`` on ``model``'s weights: returns the
    ``run(variants, windows)`` that ``long_context_bench`` calls for an extra peer."""
    import os
    import time

    import numpy as np
    import pandas as pd
    import torch
    from grelu.lightning import LightningModel
    from grelu.variant import predict_variant_effects
    from test_convert_grelu import enformer_grelu_params, enformer_grelu_state

    crop = (cfg.num_bins - cfg.output_len) // 2
    lm = LightningModel(model_params=enformer_grelu_params(cfg, crop),
                        train_params={"task": "regression", "loss": "mse"})
    lm.load_state_dict(enformer_grelu_state(model), strict=True)
    lm.data_params = {"tasks": {"name": [f"T{i}" for i in range(cfg.heads_dict["human"])]},
                      "train": {"seq_len": cfg.window_len}}
    lm.eval()

    def run(variants, windows):
        fasta = plain_fasta(bc.genome_path(workdir), workdir)
        df = pd.DataFrame({"chrom": [v.chrom for v in variants], "pos": [v.pos1 for v in variants],
                           "ref": [v.ref for v in variants], "alt": [v.alt for v in variants]})
        here = os.getcwd()
        os.chdir(workdir)  # Lightning's predict loop writes lightning_logs/ into the cwd
        try:
            t = time.perf_counter()
            out = predict_variant_effects(df, lm, devices="cpu", seq_len=cfg.window_len,
                                          genome=str(fasta), compare_func="subtract",
                                          return_ad=False)
            total = time.perf_counter() - t
        finally:
            os.chdir(here)
        own = np.asarray(out, dtype=np.float64).sum(-1)  # (N, T, bins) ALT - REF -> (N, T)
        # Same weights, checked on veff's windows (untimed): gReLU centres a variant at
        # 0-based L/2 - 1, veff (and variant-scorer, the DeepMind colab) at L/2.
        sums = []
        with torch.no_grad():
            for i in range(len(variants)):
                x = torch.from_numpy(bc.onehot(np.stack([windows.ref[i], windows.alt[i]])))
                y = lm(x.transpose(1, 2).contiguous()).double().numpy().sum(-1)  # (2, T)
                sums.append(y)
        sums = np.stack(sums)
        on_veff = (sums[:, 1] - sums[:, 0]).astype(np.float32)
        print(f"\ngReLU's own windows (variant at L/2 - 1) vs veff's (L/2): max |SUM "
              f"difference| = {np.max(np.abs(own - on_veff)):.3g} (max |SUM| "
              f"{np.max(np.abs(on_veff)):.3g}): the 1-bp centring convention, not an error")
        return (total, on_veff, float(np.max(np.abs(sums[:, 0]))),
                "predict_variant_effects with its defaults (batch 64, 1 loader worker), "
                "compare_func='subtract', timed with its dataset; SUM check on veff's windows")

    return run


def plain_fasta(path: Path, workdir: Path) -> Path:
    """An uncompressed copy with .fai and .sizes (gReLU's CustomGenome needs both; pyfaidx
    cannot read BGZF without Biopython)."""
    import gzip

    import pyfaidx

    out = workdir / "genome_plain.fa"
    if not out.is_file():
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as src, open(out, "wb") as dst:
            dst.write(src.read())
        fa = pyfaidx.Fasta(str(out))
        Path(str(out) + ".sizes").write_text(
            "".join(f"{name}\t{len(fa[name])}\n" for name in fa.keys()))
    return out


if __name__ == "__main__":
    main()
