"""Ground truth for `veff motifs` on the demo models (trained on `veff simulate` data with
planted JASPAR motifs: CTCF, SPI1, REST, NRF1, YY1; docs/groundtruth.md).

    python scripts/groundtruth_motifs.py [--out DIR] [--shuffles 10] [--report]

(a) DeepLIFT/DeepSHAP contributions (counts head, bias-free model checkpoints/demo/nobias) over
    the 600 demo peaks -> modisco-lite -> TOMTOM against the shipped JASPAR subset: for every
    planted motif, the pattern that matches it best and its q-value.
(b) contributions of the truth VCF's REF and ALT windows -> `veff motifs --variants`: the
    fraction of motif_break / motif_break_indel / motif_create variants whose annotation names
    the planted motif (INFO MOTIF), as the first (largest |Δ|) effect and anywhere in the list,
    and whether the sign of Δ matches the truth's EFFECT; the rate for neutral variants.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from veff.interpret.contrib_run import run_contrib  # noqa: E402
from veff.interpret.motif_effect import annotate_store  # noqa: E402
from veff.interpret.motifs import DEFAULT_MEME, ModiscoParams, run_motifs  # noqa: E402
from veff.simulate.config import DEFAULT_MOTIF_IDS  # noqa: E402
from veff.simulate.motifs import read_meme  # noqa: E402

DEMO = REPO / "checkpoints" / "demo"
CLASSES = ("motif_break", "motif_break_indel", "motif_create")


def truth(vcf: Path) -> list[dict]:
    rows = []
    for line in vcf.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split("\t")
        info = dict(kv.split("=", 1) for kv in f[7].split(";") if "=" in kv)
        rows.append({"id": f[2], **info})
    return rows


def part_a(out: Path, shuffles: int, report: bool) -> None:
    t = time.time()
    run_contrib(str(DEMO / "peaks.narrowPeak"), str(DEMO / "genome.fa"), str(DEMO / "nobias"),
                str(out / "peaks.zarr"), method="deeplift", head="counts",
                baseline=f"shuffle:{shuffles}", overwrite=True)
    t1 = time.time()
    pats = run_motifs(str(out / "peaks.zarr"), str(out / "modisco"), report=report,
                      params=ModiscoParams(window=400))
    t2 = time.time()
    print(f"(a) contrib over 600 peaks {t1 - t:.0f} s, modisco-lite + TOMTOM {t2 - t1:.0f} s: "
          f"{len(pats)} patterns")
    for p in pats:
        m = p.matches[0] if p.matches else ("-", np.nan, np.nan)
        print(f"    {p.name:24s} {p.n_seqlets:5d} seqlets  {p.consensus:24s} {m[0]:18s} "
              f"p={m[1]:.2g} q={m[2]:.2g}")
    names = {m.id: m.name for m in read_meme(DEFAULT_MEME)}
    print("    planted motif    best pattern (top TOMTOM match)      q-value")
    found = 0
    for mid in DEFAULT_MOTIF_IDS:
        hits = [(p.matches[0][2], p.name) for p in pats if p.matches and p.matches[0][0].split()[0] == mid]
        if hits:
            q, name = min(hits)
            found += q < 0.05
            print(f"    {mid} {names[mid]:8s} {name:36s} {q:.2g}")
        else:
            print(f"    {mid} {names[mid]:8s} {'(no pattern)':36s} -")
    print(f"    recovered (top match, q < 0.05): {found}/{len(DEFAULT_MOTIF_IDS)}")


def part_b(out: Path, shuffles: int) -> None:
    import zarr

    t = time.time()
    store = out / "variants.zarr"
    run_contrib(str(DEMO / "variants.vcf"), str(DEMO / "genome.fa"), str(DEMO / "nobias"), str(store),
                method="deeplift", head="counts", baseline=f"shuffle:{shuffles}", overwrite=True)
    annotate_store(store)
    print(f"(b) contrib + annotation of {len(truth(DEMO / 'variants.vcf'))} variants: {time.time() - t:.0f} s")
    z = zarr.open_group(str(store), mode="r")
    ids = [str(v) for v in z["variants"]["id"][:]]
    effect = [str(v) for v in z["motif_effect"][:]]
    delta = np.asarray(z["motif_delta"][:])
    names = {m.id: m.name for m in read_meme(DEFAULT_MEME)}
    by_id = {r["id"]: r for r in truth(DEMO / "variants.vcf")}
    print("    class               n   first names it   listed   sign of Δ right (first)")
    tot = [0, 0, 0, 0]
    for cls in CLASSES:
        n = first = anywhere = sign = 0
        for i, vid in enumerate(ids):
            r = by_id[vid]
            if r.get("CLASS") != cls:
                continue
            name = names[r["MOTIF"]]
            listed = [e.split(" (")[0].split(" ", 1)[1] for e in effect[i].split("; ") if e]
            n += 1
            first += bool(listed) and listed[0] == name
            anywhere += name in listed
            want = 1 if r.get("EFFECT") == "+" else -1
            sign += bool(listed) and listed[0] == name and np.sign(delta[i]) == want
        tot = [a + b for a, b in zip(tot, (n, first, anywhere, sign))]
        print(f"    {cls:18s} {n:3d}   {first / n:6.1%}          {anywhere / n:6.1%}   {sign / n:6.1%}")
    n, first, anywhere, sign = tot
    print(f"    {'all motif classes':18s} {n:3d}   {first / n:6.1%}          {anywhere / n:6.1%}   {sign / n:6.1%}")
    neutral = [i for i, v in enumerate(ids) if by_id[v].get("CLASS") == "neutral"]
    med = lambda rows: float(np.nanmedian(np.abs(delta[rows]))) if rows else float("nan")  # noqa: E731
    causal = [i for i, v in enumerate(ids) if by_id[v].get("CLASS") in CLASSES]
    print(f"    neutral: {sum(bool(effect[i]) for i in neutral)}/{len(neutral)} with any listed effect; "
          f"median |Δ| of the first effect: causal {med(causal):.3f}, neutral {med(neutral):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/veff_gt_motifs")
    ap.add_argument("--shuffles", type=int, default=10, help="DeepSHAP dinucleotide-shuffle baselines")
    ap.add_argument("--report", action="store_true", help="also write modisco-lite's HTML report")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    if not args.skip_b:
        part_b(out, args.shuffles)
    if not args.skip_a:
        part_a(out, args.shuffles, args.report)
    print(f"total {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
