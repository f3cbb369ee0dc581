"""Interpretation speed: ISM and DeepLIFT/DeepSHAP, veff vs tangermeme, one run.

    python scripts/bench_interpret.py [--variants 1] [--width 101] [--shuffles 20]
                                      [--filters 512 --layers 8]

Same weights: a synthetic chromBPNet "nobias" Keras h5 (random weights, 512 x 8, 2,114 bp) is
converted by veff's converter (as scripts/bench_chrombpnet.py does) and loaded by bpnet-lite's
``BPNet.from_chrombpnet``; the target is the count head (bpnet-lite's CountWrapper).

* ISM: ``width`` positions x 3 substitutions around the centre of each window.
  veff: ``IsmScorer`` (stat logfc, RC off, the incremental apply_pair path);
  tangermeme: ``saturation_mutagenesis(CountWrapper(model), X, start, end, raw_outputs=True)``
  (its fastISM path where it judges it worth it). The logfc maps are compared.
* DeepLIFT: the same ``shuffles`` dinucleotide-shuffled references for both (veff's
  ``make_baselines``); veff: ``Attributor(method="deeplift")``; tangermeme:
  ``deep_lift_shap(CountWrapper(model), X, references=..., hypothetical=True)``. The
  hypothetical contributions are compared.

Timings are one call after a warm-up call (veff compiles there; tangermeme captures there),
fp32 on the CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _bench_common as bc
from bench_chrombpnet import make_weights


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=1)
    ap.add_argument("--width", type=int, default=101)
    ap.add_argument("--shuffles", type=int, default=20)
    ap.add_argument("--filters", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sys.path.insert(0, str(bc.REPO / "tests"))
    import torch
    from bpnetlite.bpnet import BPNet, CountWrapper
    from tangermeme.deep_lift_shap import deep_lift_shap
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    from veff.engine import ScoreOptions
    from veff.interpret.contrib import make_baselines
    from veff.interpret.contrib_run import attributors
    from veff.interpret.ism import IsmScorer
    from veff.io.genome import Genome
    from veff.io.windows import build_windows
    from veff.models.registry import load_model

    bc.header(f"ISM ({args.width} positions) and DeepLIFT ({args.shuffles} shuffles), chromBPNet "
              f"{args.filters} x {args.layers}, 2,114 bp, counts head: veff vs tangermeme")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        h5, ckpt = make_weights(workdir, args.filters, args.layers)
        genome = Genome(bc.genome_path(workdir))
        variants = bc.random_snvs(genome, args.variants, 2114, seed=args.seed)
        toks = build_windows(genome, variants, 2114).ref
        X = torch.from_numpy(bc.onehot_nchw(toks)).float()
        peer = CountWrapper(BPNet.from_chrombpnet(str(h5)).eval())
        handle = load_model(str(ckpt))
        print(f"inputs: {len(toks)} window(s) of random SNVs on {genome.path.name}; weights {h5.name} (random)")

        # ---------------------------------------------------------------- ISM
        W, c = args.width, 2114 // 2
        ism = IsmScorer(handle, ScoreOptions(rc=False, stats=("logfc",), batch_size=len(toks)), width=W)
        ism.map(toks)  # compile
        maps, t_veff = timed(lambda: ism.map(toks))
        lo, hi = c - W // 2, c + W // 2 + 1
        run_peer = lambda: saturation_mutagenesis(peer, X, start=lo, end=hi, raw_outputs=True,  # noqa: E731
                                                   batch_size=64, device="cpu")
        run_peer()  # warm-up (tangermeme decides fast/slow and captures here)
        (y0, y_hat), t_peer = timed(run_peer)
        y0, y_hat = y0.float().numpy(), y_hat.float().numpy()
        # y_hat (N, 4, W, 1): count head after each substitution; logfc in log2
        peer_lfc = (y_hat[..., 0] - y0[:, None, None, 0]) / math.log(2)
        ours = np.transpose(maps["logfc"][..., 0], (0, 2, 1))  # (N, 4, W), NaN at the REF base
        ok = np.isfinite(ours)
        err = np.max(np.abs(ours[ok] - peer_lfc[ok])) if ok.any() else float("nan")
        n_edits = len(toks) * W * 3
        print(f"ISM      veff {t_veff:8.2f} s   tangermeme {t_peer:8.2f} s   ratio {t_peer / t_veff:6.2f}x   "
              f"({n_edits} edits; max |Δ logfc| {err:.2e})")

        # ---------------------------------------------------------------- DeepLIFT
        atts, L, _ = attributors(str(ckpt), "counts", "deeplift", 50)
        refs = make_baselines(toks, f"shuffle:{args.shuffles}", args.seed)  # (N, S, L, 4)
        x = bc.onehot(toks).astype(np.float32)
        atts[0].hypothetical(x, refs)  # compile
        (hyp, _), t_veff = timed(lambda: atts[0].hypothetical(x, refs))
        R = torch.from_numpy(np.ascontiguousarray(refs.transpose(0, 1, 3, 2))).float()
        run_peer = lambda: deep_lift_shap(peer, X, references=R, hypothetical=True,  # noqa: E731
                                          batch_size=args.shuffles, device="cpu", warning_threshold=1e9)
        run_peer()
        theirs, t_peer = timed(run_peer)
        theirs = theirs.float().numpy().transpose(0, 2, 1)
        err = np.max(np.abs(hyp - theirs)) / max(np.max(np.abs(theirs)), 1e-30)
        print(f"DeepLIFT veff {t_veff:8.2f} s   tangermeme {t_peer:8.2f} s   ratio {t_peer / t_veff:6.2f}x   "
              f"({len(toks)} x {args.shuffles} pairs; max |Δh| / max|h| {err:.2e})")
    print(f"load average after: {bc.load_average()}")


if __name__ == "__main__":
    main()
