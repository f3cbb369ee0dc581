"""Drift of bf16 scoring against fp32, per model, on trained weights.

    python scripts/bf16_drift.py [--baskerville ../shared/data/baskerville]

Scores the same variants with ScoreOptions(precision="fp32") and ("bf16") and prints, per
statistic, the max absolute difference, the max difference relative to the statistic's
spread across variants, and the sign agreement. Models: the demo chromBPNet (nobias,
trained by veff) on the demo VCF, and the trained mini-Borzoi on the 8 eQTL SNPs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from veff.convert import convert
from veff.demo import demo_dir
from veff.engine import ModelScorer, ScoreOptions
from veff.io.genome import Genome
from veff.io.vcf import read_variants
from veff.io.windows import build_windows
from veff.models.registry import load_model


def drift(name: str, model: str, vcf: Path, fasta: Path, stats=None, batch_size=16) -> None:
    handle = load_model(model)
    genome = Genome(fasta)
    variants = [v for v in read_variants(vcf, genome) if str(v.status) == "ok"]
    w = build_windows(genome, variants, handle.window_len)
    a = ModelScorer(handle, ScoreOptions(precision="fp32", stats=stats, batch_size=batch_size)).score(w)
    b = ModelScorer(handle, ScoreOptions(precision="bf16", stats=stats, batch_size=batch_size)).score(w)
    print(f"\n{name}: {len(variants)} variants, window {handle.window_len} bp")
    print(f"{'statistic':22} {'max |Δ|':>10} {'max |Δ|/sd':>11} {'sign agree':>11}")
    for k in a:
        x, y = a[k], b[k]
        sd = float(np.std(x)) or 1.0
        same = float(np.mean(np.sign(x) == np.sign(y)))
        print(f"{k:22} {np.max(np.abs(x - y)):10.4g} {np.max(np.abs(x - y)) / sd:11.4g} {same:11.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baskerville", type=Path,
                    default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "baskerville")
    args = ap.parse_args()
    d = demo_dir()
    drift("demo chromBPNet (nobias)", str(d / "nobias"), d / "variants.vcf", d / "genome.fa",
          stats=("logfc", "jsd", "abs_logfc_x_jsd"), batch_size=64)
    b = args.baskerville
    if (b / "eval_model.h5").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            convert([str(b / "eval_model.h5")], "baskerville", f"{tmp}/mb", name="mini-borzoi",
                    params=str(b / "eval_params.json"), targets=str(b / "tiny_hg38_targets.txt"))
            drift("mini-Borzoi (baskerville eval_model.h5)", f"{tmp}/mb", b / "snp_eqtl.vcf",
                  b / "hg38_1m.fa.gz", stats=("logSUM", "logSED", "D2"), batch_size=8)
    else:
        print(f"\n{b}: absent, mini-Borzoi skipped")


if __name__ == "__main__":
    main()
