"""Inputs and a fake batch system for the --cluster tests."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from veff.checkpoint import save_checkpoint
from veff.models import bpnet

CFG = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)


def make_world(d, num: int, seed: int = 13):
    """A random genome, a VCF of `num` rows (SNVs plus a few REF mismatches and an unknown
    contig, so some rows are not ok) and a tiny BPNet checkpoint."""
    rng = np.random.default_rng(seed)
    seqs = {"chr1": "".join(rng.choice(list("ACGT"), 20011)), "chr2": "".join(rng.choice(list("ACGT"), 5003))}
    with open(d / "g.fa", "w") as fh:
        for name, s in seqs.items():
            fh.write(f">{name}\n" + "\n".join(s[i : i + 70] for i in range(0, len(s), 70)) + "\n")
    rows = []
    for i in range(num - 1):
        c = "chr1" if i % 5 else "chr2"
        pos = int(rng.integers(1, len(seqs[c]) + 1))
        ref = seqs[c][pos - 1]
        if i % 301 == 7:  # REF that the genome does not have
            ref = "A" if ref != "A" else "C"
        rows.append((c, pos, ref, "ACGT"[("ACGT".index(seqs[c][pos - 1]) + 1 + i % 3) % 4]))
    rows.sort(key=lambda r: (r[0], r[1]))
    rows.append(("chrUn", 5, "A", "G"))
    with open(d / "v.vcf", "w") as fh:
        fh.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for j, (c, p, r, a) in enumerate(rows):
            fh.write(f"{c}\t{p}\tv{j}\t{r}\t{a}\t.\t.\t.\n")
    save_checkpoint(d / "tiny", arch="bpnet", config=CFG.to_dict(), params=bpnet.init(CFG, jax.random.key(5)),
                    metadata={"name": "tiny"})


def fake_slurm(bin_dir: Path, *, submit_error: str | None = None) -> Path:
    """``sbatch`` and ``scancel`` in ``bin_dir`` (put it first on PATH): sbatch accepts every
    job (ids 101, 102, …) and runs nothing, or fails with ``submit_error``; both log their
    arguments to bin_dir/sbatch.log and bin_dir/scancel.log."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    if submit_error is None:
        body = (f'exec 9>>"{bin_dir}/lock"; flock 9\n'  # dask-jobqueue submits jobs concurrently
                f'n=$(cat "{bin_dir}/count" 2>/dev/null || echo 100); n=$((n + 1)); echo $n > "{bin_dir}/count"\n'
                f'echo "$@" >> "{bin_dir}/sbatch.log"\necho "Submitted batch job $n"\n')
    else:
        body = f'echo "{submit_error}" >&2\nexit 1\n'
    for name, text in (("sbatch", body), ("scancel", f'echo "$@" >> "{bin_dir}/scancel.log"\n')):
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + text)
        path.chmod(0o755)
    return bin_dir


def logged(bin_dir: Path, name: str) -> list[str]:
    path = bin_dir / f"{name}.log"
    return path.read_text().split() if path.exists() else []


def path_with(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
