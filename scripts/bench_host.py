"""Host throughput of the whole `veff score` path at GPU rates: rows/s, wall time, files in
the store per million variants, and where the time goes.

    python scripts/bench_host.py [--n 200000] [--filters 24] [--layers 5] [--input-len 2114]
                                 [--multi 0.05] [--workdir DIR] [--extra "--chunk-size 4096"]

Makes a synthetic genome (random bases, 3 contigs) and ``--n`` sorted SNVs with correct REF
(a fraction ``--multi`` of them at multi-allelic sites: two ALT alleles on one record), a
random BPNet checkpoint, then runs ``python -m veff.cli score --no-rc --stats logfc,jsd``
in a subprocess with ``VEFF_PROFILE`` set (veff.hostprof) and prints the phase table.
Phases in the reader and writer threads overlap the main thread's, so they add up to more
than the wall time; "main: wait for windows" is the time the device waited for the host.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _bench_common as bc


def make_genome(path: Path, contigs: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for name, n in contigs.items():
            seq = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)]
            fh.write(f">{name}\n")
            width = 60
            lines = seq[: n - n % width].reshape(-1, width)
            body = np.concatenate([lines, np.full((len(lines), 1), ord("\n"), np.uint8)], 1).tobytes()
            fh.write(body.decode())
            if n % width:
                fh.write(seq[n - n % width:].tobytes().decode() + "\n")
    return None


def make_vcf(path: Path, genome_path: Path, contigs: dict[str, int], n: int, multi: float,
             seed: int = 1) -> int:
    """``n`` rows: SNV records at distinct sorted positions, a fraction ``multi`` of them
    with two ALT alleles. Returns the number of rows (ALT alleles)."""
    from veff.io.genome import Genome

    rng = np.random.default_rng(seed)
    g = Genome(genome_path)
    total = sum(contigs.values())
    n_multi = int(n * multi / 2)
    n_rec = n - n_multi
    lines = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={c},length={L}>" for c, L in contigs.items()]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    rows = 0
    per = {c: int(n_rec * L / total) for c, L in contigs.items()}
    per[next(iter(contigs))] += n_rec - sum(per.values())
    multi_left = n_multi
    for c, L in contigs.items():
        pos = np.sort(rng.choice(np.arange(1, L + 1), per[c], replace=False))
        seq = g.fetch(c, 0, L)
        for p in pos:
            ref = "ACGT"[seq[p - 1]]
            alts = [b for b in "ACGT" if b != ref]
            rng_alts = rng.permutation(3)
            k = 2 if multi_left and rng.random() < 2 * multi else 1
            multi_left -= k == 2
            alt = ",".join(alts[i] for i in rng_alts[:k])
            lines.append(f"{c}\t{p}\tv{rows}\t{ref}\t{alt}\t.\t.\t.")
            rows += k
    path.write_text("\n".join(lines) + "\n")
    return rows


def make_model(path: Path, filters: int, layers: int, input_len: int) -> None:
    import jax

    from veff.checkpoint import save_checkpoint
    from veff.models import bpnet

    out_len = 1000 if input_len >= 2114 else input_len // 2 - (input_len // 2) % 2
    cfg = bpnet.BPNetConfig(filters=filters, n_layers=layers, input_len=input_len, output_len=out_len)
    save_checkpoint(path, arch="bpnet", config=cfg.to_dict(), params=bpnet.init(cfg, jax.random.key(0)),
                    metadata={"name": "bench"})


def count_files(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for dirpath, _, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        key = "/".join(rel[:2]) if rel and rel[0] == "scores" else (rel[0] if rel else ".")
        out[key] = out.get(key, 0) + len(files)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="variant rows (ALT alleles)")
    ap.add_argument("--filters", type=int, default=24)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--input-len", type=int, default=2114)
    ap.add_argument("--multi", type=float, default=0.05, help="fraction of rows at multi-allelic sites")
    ap.add_argument("--workdir", type=Path, default=None, help="keep inputs here (reused when present)")
    ap.add_argument("--extra", default="", help="more `veff score` options")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()

    bc.header("host throughput: the whole `veff score` path")
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    contigs = {"chr1": 12_000_000, "chr2": 8_000_000, "chrX": 5_000_000}
    fa, vcf = work / "genome.fa", work / f"snv{args.n}.vcf"
    ckpt = work / f"bpnet_{args.filters}x{args.layers}_{args.input_len}"
    if not fa.exists():
        make_genome(fa, contigs)
    if not vcf.exists():
        make_vcf(vcf, fa, contigs, args.n, args.multi)
    if not ckpt.exists():
        make_model(ckpt, args.filters, args.layers, args.input_len)
    out = work / "out.zarr"
    prof = work / "profile.json"
    prof.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "veff.cli", "score", str(vcf), "--genome", str(fa),
           "--model", str(ckpt), "--out", str(out), "--overwrite", "--quiet", "--no-rc",
           "--stats", "logfc,jsd", *shlex.split(args.extra)]
    env = {**os.environ, "PYTHONPATH": str(bc.REPO)}
    if not args.no_profile:
        env["VEFF_PROFILE"] = str(prof)
    print("command:", " ".join(shlex.quote(c) for c in cmd[1:]))
    load0 = bc.load_average()
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=bc.REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"veff score failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    import zarr

    rows = int(zarr.open_group(str(out), mode="r").attrs["num_variants"])
    files = count_files(out)
    total_files = sum(files.values())
    per_m = 1e6 / rows
    print(f"rows: {rows:,} | wall {wall:.1f} s (process, incl. start-up and model load) | "
          f"{rows / wall:,.0f} rows/s")
    print(f"files in the store: {total_files:,} = {total_files * per_m:,.0f} per million variants "
          f"({', '.join(f'{k}: {v * per_m:,.0f}' for k, v in sorted(files.items()))} per million)")
    if prof.exists():
        table = json.loads(prof.read_text())
        print(f"\n{'phase':<52}{'seconds':>9}{'calls':>8}{'% wall':>8}")
        for name, v in sorted(table.items(), key=lambda kv: -kv[1]["seconds"]):
            print(f"{name:<52}{v['seconds']:>9.2f}{v['count']:>8}{100 * v['seconds'] / wall:>7.0f}%")
    print(f"\nload average before {load0}, after {bc.load_average()} ({bc.cores()} cores)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
