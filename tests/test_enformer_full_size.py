"""The main job as users run it: a FULL-SIZE Enformer (dim 1536, depth 11, both heads;
random weights) converted from enformer-pytorch with ``veff convert``, then ``veff score``
on 3 SNVs with default options (``--batch-size auto``). Before auto batching this stopped
with RESOURCE_EXHAUSTED on a 24 GB machine (3 variants padded to 64 REF/ALT windows).

Slow (minutes on 2 cores, ~1 GB of weights written to tmp); still runs in CI."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

ep = pytest.importorskip("enformer_pytorch")
torch = pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")

WINDOW = 196_608


def _cli(*args, env=None, timeout=1800, timed=False):
    prefix = ["/usr/bin/time", "-f", "maxrss_kib=%M"] if timed and os.path.exists("/usr/bin/time") else []
    return subprocess.run([*prefix, sys.executable, "-m", "veff.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_full_size_enformer_scores_3_snvs_with_default_options(tmp_path):
    torch.manual_seed(0)
    model = ep.Enformer.from_hparams(dim=1536, depth=11, heads=8, output_heads=dict(human=5313, mouse=1643),
                                     target_length=896).eval()
    torch.save(model.state_dict(), tmp_path / "enformer.pt")
    del model
    env = dict(os.environ, VEFF_JAX_CACHE="")  # measure a cold run: no persistent XLA cache
    r = _cli("convert", tmp_path / "enformer.pt", "--format", "enformer-pytorch", "--out", tmp_path / "enformer",
             env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (tmp_path / "enformer.pt").unlink()

    # one contig that holds full windows around the variants, a second one short enough that
    # its variant's window is N-padded
    rng = np.random.default_rng(3)
    seqs = {"chr1": "".join(rng.choice(list("ACGT"), WINDOW + 4001)),
            "chr2": "".join(rng.choice(list("ACGT"), 5003))}
    with open(tmp_path / "g.fa", "w") as fh:
        for name, s in seqs.items():
            fh.write(f">{name}\n" + "\n".join(s[i : i + 80] for i in range(0, len(s), 80)) + "\n")
    rows = [("chr1", WINDOW // 2 + 101), ("chr1", WINDOW // 2 + 2999), ("chr2", 2500)]
    with open(tmp_path / "v.vcf", "w") as fh:
        fh.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for j, (c, p) in enumerate(rows):
            ref = seqs[c][p - 1]
            fh.write(f"{c}\t{p}\tv{j}\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\t.\t.\t.\n")

    t0 = time.perf_counter()
    r = _cli("score", tmp_path / "v.vcf", "--genome", tmp_path / "g.fa", "--model", tmp_path / "enformer",
             "--out", tmp_path / "o.zarr", "--quiet", env=env, timed=True)
    seconds = time.perf_counter() - t0
    rss = [line for line in r.stderr.splitlines() if line.startswith("maxrss_kib=")]
    rss_gib = int(rss[-1].split("=")[1]) / 2**20 if rss else float("nan")
    print(f"\nveff score, full-size Enformer, 3 SNVs: {seconds:.0f} s wall, peak RSS {rss_gib:.2f} GiB"
          f"\n{r.stderr.strip()}")
    assert r.returncode == 0, r.stderr[-3000:]
    # SNVs only: the incremental step is the one sized (and the only one compiled)
    assert "veff: batch size auto → " in r.stderr and " for enformer, SNV step (peak ~" in r.stderr

    root = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert list(root["variants"]["status"][:]) == ["ok"] * 3
    scores = root["scores"]["enformer"]
    stats = [k for k in scores.array_keys() if k not in ("window_padded",) and scores[k].ndim == 2]
    assert stats, list(scores.array_keys())
    for k in stats:
        assert scores[k].shape == (3, 5313), k
        assert np.isfinite(scores[k][:]).all(), k
    assert list(scores["window_padded"][:]) == [False, False, True]
