"""Build the shipped demo: a seeded simulated genome, chromBPNet models trained on it, and a
small labelled VCF.

    python scripts/make_demo.py [--out checkpoints/demo] [--seed 7]

Writes ``OUT/genome.fa`` (+ ``.fai``), ``OUT/variants.vcf`` (the simulation's truth VCF, INFO
CLASS=motif_break|motif_break_indel|motif_create|tn5_bias|neutral, at most 200 records),
``OUT/peaks.narrowPeak`` and ``OUT/{bias,nobias,full}/`` native checkpoints, each with a
``MANIFEST.json`` recording the exact command, seeds, configs and file digests. Scratch files
(cuts, fragments) stay in a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from veff.simulate import SimulationConfig, simulate  # noqa: E402
from veff.train import TrainConfig, train_chrombpnet  # noqa: E402
from veff.train.data import sha256_file  # noqa: E402

MAX_RECORDS = 200

# The benchmark's genome (six 500-kb contigs, 600 elements) with 150 truth variants; same
# architecture and recipe as scripts/bench_groundtruth.py.
SIM = SimulationConfig(
    num_contigs=6, contig_len=500_000, num_peaks=600, num_motif_break=30, num_motif_break_indel=15,
    num_motif_create=15, num_tn5_bias=30, num_neutral=60,
)
TRAIN = TrainConfig(
    filters=32, n_layers=5, bias_filters=16, bias_n_layers=2, input_len=474, output_len=256,
    batch_size=32, lr=3e-3, epochs=100, bias_epochs=200, patience=10, max_jitter=64,
    bias_lr=1e-2, bias_patience=40, bias_counts_loss_weight=100.0,
    negative_sampling_ratio=1.0, valid_contigs=("chr6",), test_contigs=(), name="demo",
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "checkpoints" / "demo"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    command = "python scripts/make_demo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate(Path(tmp) / "sim", config=SIM, seed=args.seed)
        cfg = dataclasses.replace(TRAIN, seed=args.seed)
        res = train_chrombpnet(sim.genome, sim.cuts, sim.peaks, sim.nonpeaks, Path(tmp) / "train",
                               config=cfg, command=command, progress=not args.no_progress)
        out.mkdir(parents=True, exist_ok=True)
        for role in ("bias", "nobias", "full"):
            dst = out / role
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(Path(tmp) / "train" / role, dst)
        shutil.copy(Path(tmp) / "train" / "log.json", out / "train_log.json")
        shutil.copy(sim.genome, out / "genome.fa")
        shutil.copy(f"{sim.genome}.fai", out / "genome.fa.fai")
        shutil.copy(sim.peaks, out / "peaks.narrowPeak")
        lines = sim.variants.read_text().splitlines(keepends=True)
        header = [ln for ln in lines if ln.startswith("#")]
        records = [ln for ln in lines if not ln.startswith("#")][:MAX_RECORDS]
        (out / "variants.vcf").write_text("".join(header + records))
        files = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}
        manifest = {
            "command": command,
            "seed": args.seed,
            "simulation_config": repr(SIM),
            "train_config": cfg.to_json(),
            "variant_counts": sim.variant_counts,
            "records": len(records),
            "metrics": res.metrics,
            "files": files,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        for role in ("bias", "nobias", "full"):
            (out / role / "MANIFEST.json").write_text(json.dumps({**manifest, "role": role}, indent=2) + "\n")
    print(f"wrote {out} in {manifest['seconds']} s: {len(records)} variants, metrics {res.metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
