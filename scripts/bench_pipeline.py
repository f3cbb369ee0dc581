"""Host pipeline: window building rate per core, and peak memory of a whole `veff score` run
for 100k vs 1k variants (target: RSS(100k) <= 1.2 x RSS(1k)).

    python scripts/bench_pipeline.py [--windows-2k 20000] [--windows-long 300]
                                     [--small-n 1000] [--large-n 100000]

1. ``veff.io.windows.build_windows`` on random SNVs of the shared 1-Mb hg38 slice (BGZF;
   a random plain FASTA when it is absent) at 2,114 and 196,608 bp: windows (REF+ALT pairs)
   per second on one core (window building is single-threaded Python + numpy).
2. ``veff.pipeline.run`` (the `veff score` path: VCF reading, store, producer thread,
   engine, writer) with a tiny chromBPNet-layout model (7 filters, 3 layers, 256 bp in),
   each run in its own subprocess that reports its own peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench_common as bc

TARGET = 1.2

_CHILD = """
import json, resource, sys, time
from veff.engine import ScoreOptions
from veff.pipeline import RunSpec, run
vcf, genome, ckpt, out = sys.argv[1:5]
t = time.perf_counter()
res = run(RunSpec(variants=vcf, genome=genome, models=(ckpt,), out=out, overwrite=True,
                  options=ScoreOptions(batch_size=64, rc=True)))
print(json.dumps({"seconds": time.perf_counter() - t, "ok": res.num_ok,
                  "variants": res.num_variants,
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def window_rate(genome, length: int, n: int) -> tuple[float, float]:
    from veff.io.windows import build_windows

    variants = bc.random_snvs(genome, n, length, seed=1)
    build_windows(genome, variants[: min(50, n)], length)  # warm the block cache / imports
    t = time.perf_counter()
    build_windows(genome, variants, length)
    sec = time.perf_counter() - t
    return n / sec, sec


def write_vcf(path: Path, genome, n: int) -> None:
    variants = bc.random_snvs(genome, n, 256, seed=2)
    variants.sort(key=lambda v: v.pos1)
    lines = ["##fileformat=VCFv4.2"]
    lines += [f"##contig=<ID={c},length={L}>" for c, L in genome.contigs.items()]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    lines += [f"{v.chrom}\t{v.pos1}\tv{i}\t{v.ref}\t{v.alt}\t.\t.\t." for i, v in enumerate(variants)]
    path.write_text("\n".join(lines) + "\n")


def tiny_model(workdir: Path) -> Path:
    sys.path.insert(0, str(bc.REPO / "tests"))
    from helpers_h5 import write_chrombpnet_h5

    from veff.convert import convert

    h5 = workdir / "tiny.h5"
    write_chrombpnet_h5(h5, "nobias", filters=7, n_layers=3, seed=0, input_len=256,
                        output_len=128)
    convert([str(h5)], "chrombpnet-h5", str(workdir / "tiny_ckpt"), name="tiny")
    return workdir / "tiny_ckpt"


def run_child(vcf: Path, genome: Path, ckpt: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(vcf), str(genome), str(ckpt),
                           str(out)], capture_output=True, text=True, cwd=bc.REPO)
    if proc.returncode:
        raise RuntimeError(f"pipeline run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows-2k", type=int, default=20_000)
    ap.add_argument("--windows-long", type=int, default=300)
    ap.add_argument("--small-n", type=int, default=1_000)
    ap.add_argument("--large-n", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    from veff.io.genome import Genome

    bc.header("host pipeline: window building and peak RSS of veff.pipeline.run")
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    gpath = bc.genome_path(workdir)
    genome = Genome(gpath)
    print(f"genome: {gpath.name} ({'BGZF' if str(gpath).endswith('.gz') else 'plain'}, "
          f"{sum(genome.contigs.values()):,} bp)")
    for length, n in ((2114, args.windows_2k), (196_608, args.windows_long)):
        rate, sec = window_rate(genome, length, n)
        mb = 2 * length * rate / 1e6
        print(f"build_windows {length:>7,} bp: {rate:,.0f} windows/s per core "
              f"({n:,} REF+ALT pairs in {sec:.2f} s; {mb:,.0f} MB of tokens/s)")

    ckpt = tiny_model(workdir)
    figures = {}
    for n in (args.small_n, args.large_n):
        vcf = workdir / f"v{n}.vcf"
        write_vcf(vcf, genome, n)
        figures[n] = run_child(vcf, gpath, ckpt, workdir / f"out{n}.zarr")
        f = figures[n]
        print(f"veff.pipeline.run {n:>7,} variants: peak RSS {f['maxrss_mib']:.1f} MiB, "
              f"{f['seconds']:.1f} s ({f['ok']:,} ok of {f['variants']:,}; tiny model, "
              f"batch 64, RC on)")
    r = figures[args.large_n]["maxrss_mib"] / figures[args.small_n]["maxrss_mib"]
    print(f"RSS({args.large_n:,}) / RSS({args.small_n:,}) = {r:.3f} (target <= {TARGET}: "
          f"{'met' if r <= TARGET else 'MISSED'})")
    if tmp:
        tmp.cleanup()
    print(f"\nload average at end: {bc.load_average()}")


if __name__ == "__main__":
    main()
