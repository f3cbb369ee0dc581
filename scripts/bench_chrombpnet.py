"""chromBPNet variant scoring throughput: veff vs bpnet-lite through tangermeme, one run.

    python scripts/bench_chrombpnet.py [--variants 32] [--batch-size 16] [--bf16]
                                       [--filters 512 --layers 8] [--repeats 1]

Same weights: a synthetic chromBPNet "nobias" Keras h5 (random weights, 512 x 8 by
default) is converted by ``veff.convert.convert(..., "chrombpnet-h5", ...)`` AND loaded by
bpnet-lite's ``BPNet.from_chrombpnet``. Same variants: random SNVs on the shared 1-Mb hg38
slice (a random genome when it is absent), windows from ``veff.io.windows.build_windows``.

veff: ``ModelScorer(handle, ScoreOptions(rc=True, precision=...)).score(windows)`` — the
engine's incremental ALT path (REF in full, ALT only where the SNV reaches), statistics
reduced on the device. Peer: ``tangermeme.predict.predict`` on REF, ALT and both reverse
complements (4 sequences per variant, the variant-scorer recipe; tangermeme's
``substitution_effect`` would run the same REF/ALT forwards but without RC), fp32, with
the same number of sequences per forward batch as veff's step. The peer's log fold
change is computed from its outputs and compared with veff's (same weights check).

Figures: variants/s for both and the ratio; veff's "effective" rate (4 x the per-sequence
FLOPs per variant, what a full REF/ALT/RC forward would cost: 23.45 GFLOP per 2,114-bp
sequence at 512 x 8) and its "executed" rate (the FLOPs XLA's cost analysis counts for the
compiled incremental step), both against the fp32 GEMM rate JAX reaches here.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np

import _bench_common as bc

TARGETS = {"issue 3": 1.3, "issue 6": 2.0}


def valid_flops_per_seq(filters: int, layers: int, input_len: int = 2114) -> float:
    """Forward FLOPs (2 per MAC) of the valid-conv chromBPNet tower and heads."""
    f, length = filters, input_len - 20
    macs = length * 21 * 4 * f
    for i in range(1, layers + 1):
        length -= 2 * 2**i
        macs += length * 3 * f * f
    macs += (length - 74) * 75 * f + f
    return 2.0 * macs


def same_flops_per_seq(filters: int, layers: int, input_len: int = 2114) -> float:
    """bpnet-lite's BPNet pads every conv 'same': every layer runs the full length."""
    f, L = filters, input_len
    return 2.0 * (L * 21 * 4 * f + layers * L * 3 * f * f + L * 75 * f + f)


def make_weights(workdir: Path, filters: int, layers: int) -> tuple[Path, Path]:
    from helpers_h5 import write_chrombpnet_h5  # tests/ is on sys.path (see main)

    from veff.convert import convert

    h5 = workdir / "chrombpnet_nobias.h5"
    write_chrombpnet_h5(h5, "nobias", filters=filters, n_layers=layers, seed=0)
    ckpt = workdir / "veff_ckpt"
    convert([str(h5)], "chrombpnet-h5", str(ckpt), name="bench")
    return h5, ckpt


def veff_scorer(ckpt: Path, batch_size: int, precision: str):
    from veff.engine import ModelScorer, ScoreOptions
    from veff.models.registry import load_model

    handle = load_model(str(ckpt))
    return ModelScorer(handle, ScoreOptions(batch_size=batch_size, rc=True, precision=precision,
                                            stats=("logfc", "jsd")))


def peer_logfc(model, windows, batch_seqs: int, dtype) -> tuple[np.ndarray, float]:
    """tangermeme predict on [ref, alt, rc ref, rc alt]; (logfc per variant, seconds)."""
    import torch
    from tangermeme.predict import predict

    toks = np.concatenate([windows.ref, windows.alt,
                           bc.reverse_complement_tokens(windows.ref),
                           bc.reverse_complement_tokens(windows.alt)])
    X = torch.from_numpy(bc.onehot_nchw(toks))
    t = time.perf_counter()
    _, counts = predict(model, X, batch_size=batch_seqs, device="cpu", dtype=dtype)
    seconds = time.perf_counter() - t
    lc = counts.float().numpy()[:, 0].reshape(4, -1)
    ref = np.logaddexp(lc[0], lc[2]) - math.log(2)
    alt = np.logaddexp(lc[1], lc[3]) - math.log(2)
    return (alt - ref) / math.log(2), seconds


def run_veff(scorer, windows, repeats: int) -> tuple[dict, dict, float | None, str]:
    """Warm-up call (compiles; counts the step's FLOPs), then ``repeats`` timed calls."""
    scores, _, flops, step_name = bc.score_capturing(scorer, windows)
    t = bc.timeit(lambda: scorer.score(windows), repeats=repeats, warmup=0)
    return scores, t, flops, step_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16, help="variants per veff step")
    ap.add_argument("--filters", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1, help="timed veff repeats (after warm-up)")
    ap.add_argument("--bf16", action="store_true", help="also run both in bf16")
    ap.add_argument("--bf16-variants", type=int, default=2,
                    help="variants for the bf16 runs (torch bf16 is very slow without "
                         "native bf16 instructions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    import sys
    sys.path.insert(0, str(bc.REPO / "tests"))
    import torch
    from bpnetlite.bpnet import BPNet

    from veff.io.genome import Genome
    from veff.io.windows import build_windows

    bc.header(f"chromBPNet {args.filters} x {args.layers}, 2,114 bp, RC on: veff vs "
              "bpnet-lite + tangermeme")
    rates = bc.gemm_rates(bf16=args.bf16)
    bc.print_gemm(rates)

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    h5, ckpt = make_weights(workdir, args.filters, args.layers)
    genome = Genome(bc.genome_path(workdir))
    variants = bc.random_snvs(genome, args.variants, 2114, seed=args.seed)
    windows = build_windows(genome, variants, 2114)
    print(f"inputs: {len(variants)} random SNVs on {genome.path.name}; weights {h5.name} "
          f"(random, synthetic Keras layout)")

    valid = valid_flops_per_seq(args.filters, args.layers)
    same = same_flops_per_seq(args.filters, args.layers)
    print(f"FLOPs per 2,114-bp sequence: {valid / 1e9:.2f} G (valid convs, veff/chromBPNet), "
          f"{same / 1e9:.2f} G (bpnet-lite 'same' padding)")

    # ---------------------------------------------------------------- veff fp32
    scorer = veff_scorer(ckpt, args.batch_size, "fp32")
    scores, tv, executed, step_name = run_veff(scorer, windows, args.repeats)
    rates["jax_fp32"] = bc.remeasure_jax_fp32(rates["jax_fp32"])
    v_rate = len(variants) / tv["best"]
    print(f"\nveff fp32   : {fmt(tv)} -> {v_rate:.3f} variants/s "
          f"({4 * v_rate:.2f} equivalent sequences/s; batch {args.batch_size} variants)")
    eff = 4 * valid * v_rate / 1e9
    print(f"  effective rate (4 x {valid / 1e9:.2f} GFLOP per variant): {eff:.1f} GFLOP/s = "
          f"{eff / rates['jax_fp32']:.0%} of JAX fp32 GEMM")
    if executed is not None:
        ex = executed * v_rate / 1e9
        print(f"  executed FLOPs (XLA cost analysis, {step_name}): "
              f"{executed / 1e9:.2f} GFLOP per variant ({executed / (4 * valid):.0%} of 4 full "
              f"passes) -> {ex:.1f} GFLOP/s = {ex / rates['jax_fp32']:.0%} of JAX fp32 GEMM")

    # ---------------------------------------------------------------- peer fp32
    torch.manual_seed(0)
    model = BPNet.from_chrombpnet(str(h5)).eval()
    batch_seqs = 4 * args.batch_size
    head = dataclasses.replace(windows, ref=windows.ref[:2], alt=windows.alt[:2],
                               ref_len=windows.ref_len[:2], alt_len=windows.alt_len[:2],
                               padded=windows.padded[:2])
    peer_logfc(model, head, batch_seqs, torch.float32)  # warm oneDNN
    lfc, tp = peer_logfc(model, windows, batch_seqs, torch.float32)
    p_rate = len(variants) / tp
    print(f"bpnet-lite  : {tp:.3f} s (1 run) -> {p_rate:.3f} variants/s "
          f"({4 * p_rate:.2f} sequences/s; tangermeme.predict batch {batch_seqs} sequences); "
          f"{4 * same * p_rate / 1e9:.1f} GFLOP/s executed = "
          f"{4 * same * p_rate / 1e9 / rates['torch_fp32']:.0%} of torch fp32 GEMM")
    diff = float(np.max(np.abs(scores["logfc"][:, 0] - lfc)))
    print(f"same weights check: max |logfc veff - logfc bpnet-lite| = {diff:.2e} "
          f"(max |logfc| {float(np.max(np.abs(lfc))):.3g})")
    print(bc.ratio_line("fp32, RC on, variants/s", v_rate, p_rate, TARGETS))

    if args.bf16:
        run_bf16(args, ckpt, model, windows, scores)
    if tmp:
        tmp.cleanup()
    print(f"\nload average at end: {bc.load_average()}")


def run_bf16(args, ckpt, model, windows, scores32) -> None:
    import torch

    n = min(args.bf16_variants, len(windows.ref))
    sub = dataclasses.replace(windows, ref=windows.ref[:n], alt=windows.alt[:n],
                              ref_len=windows.ref_len[:n], alt_len=windows.alt_len[:n],
                              padded=windows.padded[:n])
    print(f"\n-- bf16 vs fp32 on the same {n} variant(s), veff batch {n}, peer batch {4 * n} "
          "sequences (so padding does not count against either)")
    rate = {}
    for prec in ("fp32", "bf16"):  # the engine casts params and one-hot to bf16 itself
        s, t, _, _ = run_veff(veff_scorer(ckpt, n, prec), sub, 1)
        rate[prec], out = n / t["best"], s
    err = float(np.max(np.abs(out["logfc"] - scores32["logfc"][:n])))
    print(f"veff bf16    : {rate['bf16']:.3f} variants/s ({rate['bf16'] / rate['fp32']:.2f}x its "
          f"fp32 {rate['fp32']:.3f}); max |logfc bf16 - fp32| {err:.3g}")
    _, tp32 = peer_logfc(model, sub, 4 * n, torch.float32)
    lfc, tp = peer_logfc(model, sub, 4 * n, torch.bfloat16)
    err = float(np.max(np.abs(lfc - scores32["logfc"][:n, 0])))
    print(f"bpnet-lite bf16 (torch autocast): {n / tp:.4f} variants/s ({tp32 / tp:.3f}x its "
          f"fp32 {n / tp32:.3f}); max |logfc bf16 - veff fp32| {err:.3g}")
    print(bc.ratio_line("bf16, RC on, variants/s", rate["bf16"], n / tp, {}))
    if not {"avx512_bf16", "amx_bf16"} & bc.cpu_flags():
        print("note: this CPU has neither AVX512-BF16 nor AMX, so torch's oneDNN has no fast "
              "bf16 kernel here (see the bf16 GEMM rates above).")


def fmt(t: dict) -> str:
    return bc.fmt_time(t)


if __name__ == "__main__":
    main()
