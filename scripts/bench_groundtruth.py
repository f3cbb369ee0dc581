"""Ground-truth benchmark: simulate (seeded) -> train chromBPNet -> score the truth VCF.

    python scripts/bench_groundtruth.py [--out DIR] [--seed 0] [--write-docs]

Prints, side by side for the bias-corrected ("nobias") and the full (accessibility + bias)
model:
  * AUROC of |logfc| for causal variants (motif_break, motif_break_indel, motif_create) vs
    neutral ones (all variants, and those on the held-out test contig only);
  * median |logfc| (and median JSD) of tn5_bias variants, and the full/nobias ratio;
  * Pearson correlation of the predicted per-base profile with the TRUE accessibility
    (simulation's accessibility.bw) and with the true Tn5 bias track, over the peaks' outputs.
Variants are scored with the library pipeline (veff.pipeline.run, the `veff score` path).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from veff.simulate import SimulationConfig, simulate  # noqa: E402
from veff.train import TrainConfig, train_chrombpnet  # noqa: E402

CAUSAL = ("motif_break", "motif_break_indel", "motif_create")

# Six 500-kb contigs: train on chr1-chr4, early-stop on chr5, hold chr6 out.
SIM = SimulationConfig(num_contigs=6, contig_len=500_000, num_peaks=600)
# Bias stage: its own lr, count-loss weight and patience, so that its count head learns the
# background Tn5 hotspots (it does so late, after ~90-110 epochs; docs/groundtruth.md).
# negative_sampling_ratio 1.0: the accessibility model sees as many non-peaks as peaks each
# epoch and learns to be low in background, leaving the background counts to the bias model.
TRAIN = TrainConfig(
    filters=32, n_layers=5, bias_filters=16, bias_n_layers=2, input_len=474, output_len=256,
    batch_size=32, lr=3e-3, epochs=100, bias_epochs=200, patience=10, max_jitter=64,
    bias_lr=1e-2, bias_patience=40, bias_counts_loss_weight=100.0,
    negative_sampling_ratio=1.0, valid_contigs=("chr5",), test_contigs=("chr6",),
    name="groundtruth",
)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos n_neg), ties counted half."""
    from scipy.stats import rankdata

    r = rankdata(np.r_[pos, neg])
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def read_truth(vcf: Path) -> dict[str, np.ndarray]:
    rows = []
    for line in vcf.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split("\t")
        info = dict(kv.split("=", 1) for kv in f[7].split(";") if "=" in kv)
        rows.append((f[0], int(f[1]), f[2], info["CLASS"]))
    chrom, pos, vid, klass = map(np.array, zip(*rows))
    return {"chrom": chrom, "pos": pos, "id": vid, "class": klass}


def score_variants(sim, models: dict[str, Path], out: Path) -> dict[str, dict[str, np.ndarray]]:
    """{label: {"logfc": (V,), "jsd": (V,)}} in VCF order, through veff.pipeline.run."""
    import xarray as xr

    from veff.checkpoint import load_checkpoint
    from veff.engine import ScoreOptions
    from veff.pipeline import RunSpec, run

    spec = RunSpec(variants=str(sim.variants), genome=str(sim.genome),
                   models=tuple(str(p) for p in models.values()), out=str(out),
                   options=ScoreOptions(stats=("logfc", "jsd"), rc=True, batch_size=64),
                   overwrite=True)
    run(spec)
    v = xr.open_zarr(out, group="variants")
    status = np.array([str(x) for x in np.asarray(v["status"].values).ravel()])
    if not np.all(status == "ok"):
        bad = {s: int(np.sum(status == s)) for s in set(status)}
        print(f"warning: not every variant scored: {bad}", file=sys.stderr)
    res = {}
    for label, path in models.items():
        name = load_checkpoint(path).metadata["name"]
        s = xr.open_zarr(out, group=f"scores/{name}")
        res[label] = {k: np.asarray(s[k].values)[:, 0].astype(float) for k in ("logfc", "jsd")}
    return res


def profile_correlations(sim, models: dict[str, Path], out: Path) -> dict[str, dict[str, float]]:
    """Pearson r of predicted per-base profiles with the true accessibility and Tn5 bias."""
    import pyBigWig

    from veff.predict import predict_profiles

    truth = {"accessibility": pyBigWig.open(str(sim.accessibility)),
             "tn5_bias": pyBigWig.open(str(sim.tn5_bias)),
             "observed_cuts": pyBigWig.open(str(sim.cuts))}
    res = {}
    for label, path in models.items():
        bw_path = out / f"profile_{label}.bw"
        predict_profiles(path, sim.genome, sim.peaks, bw_path, rc=True, bias_corrected=(label == "nobias"))
        pred = pyBigWig.open(str(bw_path))
        xs, ts = [], {k: [] for k in truth}
        per_peak = {k: [] for k in truth}
        for chrom in pred.chroms():
            ivals = pred.intervals(chrom) or ()
            if not ivals:
                continue
            pos = np.array([s for s, _, _ in ivals])
            val = np.array([v for _, _, v in ivals])
            # split into contiguous runs (one per peak or merged overlapping peaks)
            breaks = np.flatnonzero(np.diff(pos) != 1) + 1
            for run_pos, run_val in zip(np.split(pos, breaks), np.split(val, breaks)):
                xs.append(run_val)
                for k, bw in truth.items():
                    t = np.nan_to_num(np.asarray(bw.values(chrom, int(run_pos[0]), int(run_pos[-1]) + 1)))
                    ts[k].append(t)
                    if np.std(run_val) > 0 and np.std(t) > 0:
                        per_peak[k].append(np.corrcoef(run_val, t)[0, 1])
        pred.close()
        x = np.concatenate(xs)
        res[label] = {}
        for k in truth:
            res[label][f"pooled_r_{k}"] = float(np.corrcoef(x, np.concatenate(ts[k]))[0, 1])
            res[label][f"median_peak_r_{k}"] = float(np.median(per_peak[k]))
    for bw in truth.values():
        bw.close()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/veff_groundtruth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-docs", action="store_true", help="rewrite docs/groundtruth.md")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the simulation and models already in --out (re-score only)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    command = "python scripts/bench_groundtruth.py " + " ".join(argv if argv is not None else sys.argv[1:])

    t0 = time.perf_counter()
    sim = simulate(out / "sim", config=SIM, seed=args.seed)  # seconds; rerun even with --reuse
    t_sim = time.perf_counter() - t0
    t1 = time.perf_counter()
    cfg = dataclasses.replace(TRAIN, seed=args.seed)
    if args.reuse and (out / "train" / "log.json").is_file():
        tr = _reused(out / "train")
    else:
        tr = train_chrombpnet(sim.genome, sim.cuts, sim.peaks, sim.nonpeaks, out / "train",
                              config=cfg, command=command, progress=not args.no_progress)
    t_train = time.perf_counter() - t1 if not args.reuse else tr.seconds
    t2 = time.perf_counter()
    models = {"nobias": tr.nobias_dir, "full": tr.full_dir}
    scores = score_variants(sim, models, out / "scores.zarr")
    t_score = time.perf_counter() - t2
    prof = profile_correlations(sim, models, out)

    truth = read_truth(sim.variants)
    klass, chrom = truth["class"], truth["chrom"]
    causal, neutral, tn5 = np.isin(klass, CAUSAL), klass == "neutral", klass == "tn5_bias"
    held = np.isin(chrom, cfg.test_contigs)
    figs: dict[str, dict[str, float]] = {}
    for label, s in scores.items():
        a = np.abs(s["logfc"])
        figs[label] = {
            "auroc_causal_vs_neutral": auroc(a[causal], a[neutral]),
            "auroc_causal_vs_neutral_test_contig": auroc(a[causal & held], a[neutral & held]),
            "median_abs_logfc_tn5": float(np.median(a[tn5])),
            "median_abs_logfc_causal": float(np.median(a[causal])),
            "median_abs_logfc_neutral": float(np.median(a[neutral])),
            "median_jsd_tn5": float(np.median(s["jsd"][tn5])),
            "median_jsd_neutral": float(np.median(s["jsd"][neutral])),
            **{f"auroc_{c}_vs_neutral": auroc(a[klass == c], a[neutral]) for c in CAUSAL},
            **prof[label],
        }
    ratio = figs["full"]["median_abs_logfc_tn5"] / max(figs["nobias"]["median_abs_logfc_tn5"], 1e-12)
    ratio_jsd = figs["full"]["median_jsd_tn5"] / max(figs["nobias"]["median_jsd_tn5"], 1e-12)
    counts = {c: int(np.sum(klass == c)) for c in (*CAUSAL, "tn5_bias", "neutral")}

    lines = [f"{'figure':44s} {'nobias':>10s} {'full':>10s}"]
    for k in figs["nobias"]:
        lines.append(f"{k:44s} {figs['nobias'][k]:10.4f} {figs['full'][k]:10.4f}")
    lines += [
        f"{'tn5_bias median |logfc| ratio full/nobias':44s} {ratio:10.2f}",
        f"{'tn5_bias median JSD ratio full/nobias':44s} {ratio_jsd:10.2f}",
    ]
    table = "\n".join(lines)
    timing = (f"simulate {t_sim:.1f} s, train {t_train:.1f} s "
              f"({len(tr.history['bias'])} bias + {len(tr.history['chrombpnet'])} chrombpnet epochs), "
              f"score {t_score:.1f} s")
    print(table)
    print(f"variants: {counts}; held-out contig(s) {list(cfg.test_contigs)}: {int(held.sum())}")
    print(f"targets: AUROC(nobias) ≥ 0.95: {figs['nobias']['auroc_causal_vs_neutral'] >= 0.95}; "
          f"tn5 |logfc| ratio ≥ 5: {ratio >= 5}")
    print(timing)
    result = {"figures": figs, "tn5_logfc_ratio": ratio, "tn5_jsd_ratio": ratio_jsd,
              "variant_counts": counts, "timing": timing, "command": command,
              "train_metrics": tr.metrics, "sim_config": repr(SIM), "train_config": cfg.to_json(),
              "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}"}
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.write_docs:
        write_docs(REPO / "docs" / "groundtruth.md", table, result)
    return 0


def _reused(d: Path):
    from veff.train.chrombpnet import TrainResult

    log = json.loads((d / "log.json").read_text())
    return TrainResult(out_dir=d, bias_dir=d / "bias", nobias_dir=d / "nobias", full_dir=d / "full",
                       history=log, metrics=log["metrics"], seconds=log["seconds"])


def write_docs(path: Path, table: str, result: dict) -> None:
    doc = path.read_text() if path.exists() else ""
    marker = "<!-- bench output -->"
    head = doc.split(marker)[0] if marker in doc else doc
    body = (f"{marker}\n\nCommand: `{result['command']}`\n\n"
            f"Timing: {result['timing']} ({result['machine']}).\n\n"
            f"Variants: {result['variant_counts']}\n\n```\n{table}\n```\n")
    path.write_text(head + body)


if __name__ == "__main__":
    raise SystemExit(main())
