"""SUM fidelity of a full-size Enformer: veff fp32 and enformer-pytorch fp32 against
enformer-pytorch in float64, on the same weights and the same SNV windows.

    python scripts/fidelity_enformer.py [--variants 2] [--small] [--workdir DIR]

The model is enformer-pytorch's ``Enformer.from_hparams(dim=1536, depth=11, heads=8,
output_heads=dict(human=5313, mouse=1643), target_length=896)`` (its default
``use_tf_gamma=False``) with every parameter and buffer re-randomised
(tests/helpers_torch.py: a fresh model has a zero attention output), written with
``save_pretrained`` and converted by veff's converter with its defaults (so the gamma basis
comes from the written config.json). ``--small`` runs dim 384 / depth 4 instead (a check of
the script, minutes rather than an hour on 2 cores).

Per variant: SUM = sum_p ALT - sum_p REF per track (human head), batch size 1.
- veff: ``ModelScorer(ScoreOptions(batch_size=1, rc=False, stats=("SUM",)))``, fp32;
- enformer-pytorch fp32: REF and ALT forwards, SUM taken in float64 from the fp32 outputs
  (its forward error only, the most favourable reading of the peer);
- reference: the same torch model in float64 (``.double()``), SUM in float64.
Errors are relative to the largest |SUM| of the reference (the effect scale), not to the
sums of REF and ALT predictions (which hides cancellation). Target: veff within 2x of
enformer-pytorch fp32's own error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _bench_common as bc


def torch_sums(model, windows, *, dtype) -> tuple[np.ndarray, float]:
    """(N, T) float64 SUM from ``model``'s human head run in ``dtype`` (batch 1) and the
    largest |prediction| seen."""
    import torch

    sums, top = [], 0.0
    with torch.no_grad():
        for i in range(len(windows.ref)):
            ys = []
            for tok in (windows.ref[i], windows.alt[i]):
                x = torch.from_numpy(bc.onehot(tok[None])).to(dtype)
                ys.append(model(x, head="human")[0].double().numpy())
            sums.append((ys[1] - ys[0]).sum(0))
            top = max(top, float(np.abs(ys[0]).max()))
    return np.stack(sums), top


def _take(windows, i: int):
    import dataclasses

    return dataclasses.replace(windows, ref=windows.ref[i:i + 1], alt=windows.alt[i:i + 1])


def relative_errors(reference: np.ndarray, **candidates: np.ndarray) -> dict[str, float]:
    """max |SUM_x - SUM_ref| / max |SUM_ref| for each candidate."""
    scale = float(np.max(np.abs(reference)))
    return {k: float(np.max(np.abs(np.asarray(v, np.float64) - reference))) / scale
            for k, v in candidates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="dim 384, depth 4 (script check)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    sys.path[:0] = [str(bc.REPO / "tests")]
    import torch
    from enformer_pytorch import Enformer
    from helpers_torch import rerandomise

    from veff.convert.enformer_pytorch import convert_enformer_pytorch
    from veff.engine import ModelScorer, ScoreOptions
    from veff.io.genome import Genome
    from veff.io.windows import build_windows
    from veff.models.registry import load_model

    hp = (dict(dim=384, depth=4, heads=2) if args.small else dict(dim=1536, depth=11, heads=8))
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"enformer-pytorch Enformer.from_hparams({hp}, output_heads=human 5313 / mouse 1643, "
          f"target_length=896), re-randomised (seed {args.seed}); torch threads "
          f"{torch.get_num_threads()}; load average {bc.load_average()}")
    torch.manual_seed(args.seed)
    model = Enformer.from_hparams(**hp, output_heads=dict(human=5313, mouse=1643),
                                  target_length=896).eval()
    rerandomise(model, args.seed + 1)
    model.save_pretrained(workdir / "hf", safe_serialization=False)
    ckpt = convert_enformer_pytorch(workdir / "hf", workdir / "ckpt", name="fidelity")
    print(f"converted: gamma basis {ckpt.metadata['gamma_basis']!r} (from config.json)")

    handle = load_model(str(workdir / "ckpt"))
    genome = Genome(bc.genome_path(workdir))
    variants = bc.random_snvs(genome, args.variants, handle.window_len, seed=args.seed)
    windows = build_windows(genome, variants, handle.window_len)
    print(f"{len(variants)} SNV(s) on {genome.path.name}: "
          + ", ".join(f"{v.chrom}:{v.pos1} {v.ref}>{v.alt}" for v in variants))

    t = time.perf_counter()
    scorer = ModelScorer(handle, ScoreOptions(batch_size=1, rc=False, stats=("SUM",)))
    veff_sum = scorer.score(windows)["SUM"].astype(np.float64)
    print(f"veff fp32: {time.perf_counter() - t:.0f} s (compile included)")
    del scorer, handle

    # One variant at a time, both torch precisions, the running figures printed after each
    # (a full-size float64 forward takes minutes on a few cores).
    import copy

    model64 = copy.deepcopy(model).double()
    torch32, torch64, top = [], [], 0.0
    for i in range(len(variants)):
        one = _take(windows, i)
        t = time.perf_counter()
        s32, top32 = torch_sums(model, one, dtype=torch.float32)
        t32 = time.perf_counter() - t
        t = time.perf_counter()
        s64, _ = torch_sums(model64, one, dtype=torch.float64)
        t64 = time.perf_counter() - t
        torch32.append(s32[0])
        torch64.append(s64[0])
        top = max(top, top32)
        ref = np.stack(torch64)
        errs = relative_errors(ref, veff=veff_sum[: i + 1], torch32=np.stack(torch32))
        scale = float(np.max(np.abs(ref)))
        print(f"\nafter {i + 1} variant(s) (enformer-pytorch fp32 {t32:.0f} s, float64 "
              f"{t64:.0f} s): max |SUM_f64| = {scale:.4g}; max |prediction| = {top:.4g}")
        print(f"  veff fp32:             max |SUM - SUM_f64| / max |SUM_f64| = "
              f"{errs['veff']:.2e}")
        print(f"  enformer-pytorch fp32: max |SUM - SUM_f64| / max |SUM_f64| = "
              f"{errs['torch32']:.2e}")
        print(f"  veff / enformer-pytorch fp32 error = {errs['veff'] / errs['torch32']:.2f} "
              "(target <= 2)", flush=True)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
