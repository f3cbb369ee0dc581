"""GPU check: accelerator-vs-CPU parity and engine throughput for chromBPNet, Enformer, Borzoi.

    bash scripts/gpu_check.sh            # or: python scripts/gpu_check.py [--quick]

No network, no weights: every model is built from random weights (``init``), saved with
``save_checkpoint`` to a temporary directory and loaded through ``registry.load_model``
(the path ``veff score`` takes).

1. Parity. One forward of the same weights and one-hot input on the accelerator in fp32
   (``jax.default_matmul_precision("highest")``: no TF32) and in bf16 (parameters and input
   cast as ``ScoreOptions(precision="bf16")`` does), each compared against the CPU fp32
   forward (``jax.devices("cpu")``). Printed: max |device - CPU| / max |CPU|, over all
   outputs, and PASS/FAIL against ``TOL``.
2. Engine. ``ModelScorer(handle, ScoreOptions(batch_size="auto"))`` on synthetic SNV
   windows: the auto batch size it chose, variants/s after a warm-up batch, and the
   process's peak device memory so far (``memory_stats()["peak_bytes_in_use"]``; on a CPU,
   which has no such counter, the peak RSS).

Sizes: on a GPU (default) chromBPNet 512 x 8 at 2,114 bp, ``EnformerConfig.small()`` at
196,608 bp and Borzoi's layout with narrow channels at 524,288 bp — about 8 minutes on one
H100. ``--quick`` (automatic when no accelerator is present) runs the same checks on the
CPU with the tiny test configs, in 1-2 minutes. Exit status 1 if any parity check fails.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

TOL = {"fp32": 1e-4, "bf16": 5e-2}  # max |device - CPU fp32| / max |CPU fp32|

# Borzoi's layout at full length with ~1/10 of the channels' cost (scripts/bench_borzoi.py)
BORZOI_NARROW = dict(conv_dna_filters=128, res_filters=(152, 184, 224, 264, 320, 384),
                     num_heads=4, key_size=32, value_size=48, num_layers=2, ffn_dim=768,
                     final_filters=480, heads=(("human", 512), ("mouse", 128)),
                     position_basis_length=4096)


def model_specs(quick: bool) -> list[tuple[str, str, dict, object]]:
    """(label, arch, config dict, params) for the three models at the chosen sizes."""
    from veff.models import borzoi, bpnet, enformer
    from veff.models.borzoi_config import BorzoiConfig
    from veff.models.enformer_config import EnformerConfig

    bp = bpnet.BPNetConfig.tiny() if quick else bpnet.BPNetConfig.chrombpnet()
    ef = EnformerConfig.tiny() if quick else EnformerConfig.small()
    bz = BorzoiConfig.small() if quick else BorzoiConfig.original(**BORZOI_NARROW)
    return [
        (f"chromBPNet {bp.filters}x{bp.n_layers}, {bp.input_len:,} bp", "bpnet",
         bp.to_dict(), bpnet.init(bp, jax.random.key(1))),
        (f"Enformer dim {ef.dim} depth {ef.depth}, {ef.window_len:,} bp", "enformer",
         ef.to_dict(), enformer.init(ef, jax.random.key(2))),
        (f"Borzoi width {bz.dim}, {bz.window_len:,} bp", "borzoi",
         bz.to_dict(), borzoi.init_params(bz, jax.random.key(3))),
    ]


def build_handle(workdir: Path, name: str, arch: str, config: dict, params):
    from veff.checkpoint import save_checkpoint
    from veff.models.registry import load_model

    params = jax.tree.map(np.asarray, params)
    save_checkpoint(workdir / name, arch=arch, config=config, params=params,
                    metadata={"name": name})
    return load_model(str(workdir / name))


# --------------------------------------------------------------------------- parity


def _forward(handle, params, x, device, dtype):
    from veff.engine import _compute_dtype_params

    p = jax.device_put(_compute_dtype_params(params, dtype), device)
    xd = jax.device_put(jnp.asarray(x, dtype), device)
    out = jax.jit(handle.apply)(p, xd)
    return {k: np.asarray(v.astype(jnp.float32)) for k, v in out.items()}


def parity(handle, device, seed: int = 0) -> dict[str, float]:
    """{"fp32": rel err, "bf16": rel err} of ``device``'s forward against the CPU's."""
    cpu = jax.devices("cpu")[0]
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (1, handle.window_len))]
    params = handle.params
    with jax.default_matmul_precision("highest"):
        ref = _forward(handle, params, x, cpu, jnp.float32)
        errs = {"fp32": _forward(handle, params, x, device, jnp.float32)}
    errs["bf16"] = _forward(handle, params, x, device, jnp.bfloat16)
    scale = max(float(np.abs(v).max()) for v in ref.values()) or 1.0
    return {prec: max(float(np.abs(out[k] - ref[k]).max()) for k in ref) / scale
            for prec, out in errs.items()}


# --------------------------------------------------------------------------- engine


def snv_windows(n: int, length: int, seed: int = 0):
    from veff.io.windows import WindowBatch

    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 4, (n, length)).astype(np.uint8)
    alt = ref.copy()
    c = length // 2
    alt[:, c] = (alt[:, c] + 1 + rng.integers(0, 3, n)) % 4
    ones = np.ones(n, np.int32)
    return WindowBatch(ref=ref, alt=alt, ref_len=ones, alt_len=ones.copy(),
                       padded=np.zeros(n, bool))


def peak_memory(device) -> str:
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without the counter
        pass
    if stats and "peak_bytes_in_use" in stats:
        return f"{stats['peak_bytes_in_use'] / 2**30:.2f} GiB device peak"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"{rss_kib / 2**20:.2f} GiB host RSS peak"


def engine(handle, device, max_variants: int | None) -> dict[str, object]:
    """Auto batch size, variants/s after a warm-up batch, peak memory, for the SNV path."""
    from veff.engine import ModelScorer, ScoreOptions

    scorer = ModelScorer(handle, ScoreOptions(batch_size="auto"))
    pair = handle.apply_pair is not None  # SNVs take the incremental step where there is one
    t = time.perf_counter()
    bs = scorer.batch_rows(pair)
    choose_s = time.perf_counter() - t
    n = min(bs, max_variants) if max_variants else bs
    warm = snv_windows(n, handle.window_len, seed=1)
    t = time.perf_counter()
    scorer.score(warm)  # compiles (if the search did not) and runs one batch
    warm_s = time.perf_counter() - t
    timed = snv_windows(n, handle.window_len, seed=2)  # the warm-up's shape: no compile
    t = time.perf_counter()
    scores = scorer.score(timed)
    run_s = time.perf_counter() - t
    finite = all(np.isfinite(v).all() for v in scores.values())
    return {"batch": bs, "variants": n, "seconds": run_s, "vps": n / run_s,
            "choose_s": choose_s, "warm_s": warm_s, "memory": peak_memory(device),
            "finite": finite}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny configs on the CPU (automatic when no accelerator is present)")
    ap.add_argument("--max-variants", type=int, default=None,
                    help="variants per engine batch (default: the auto batch size; 8 with --quick)")
    ap.add_argument("--models", default="bpnet,enformer,borzoi",
                    help="comma-separated subset of bpnet,enformer,borzoi")
    args = ap.parse_args(argv)
    wanted = set(args.models.split(","))
    unknown = sorted(wanted - {"bpnet", "enformer", "borzoi"})
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from bpnet,enformer,borzoi")
    if args.max_variants is not None and args.max_variants < 1:
        ap.error("--max-variants must be at least 1")

    device = jax.devices()[0]
    has_accel = device.platform != "cpu"
    quick = args.quick or not has_accel
    max_variants = args.max_variants or (8 if quick else None)
    mode = "quick (tiny configs)" if quick else "full-length configs"
    print(f"== veff GPU check: {device.platform} device {device.device_kind!r}, {mode}")
    print(f"jax {jax.__version__}; devices: {', '.join(str(d) for d in jax.devices())}")
    if not has_accel:
        print("no accelerator: the device checks run on the CPU itself")

    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch, cfg, params in model_specs(quick):
            if arch not in wanted:
                continue
            handle = build_handle(Path(tmp), arch, arch, cfg, params)
            del params
            print(f"\n-- {label}")
            t = time.perf_counter()
            errs = parity(handle, device)
            for prec, e in errs.items():
                ok = e <= TOL[prec]
                failed |= not ok
                print(f"parity {arch} {prec}: max rel err {e:.2e} (tol {TOL[prec]:.0e}) "
                      f"{'PASS' if ok else 'FAIL'}")
            print(f"   parity took {time.perf_counter() - t:.1f} s")
            r = engine(handle, device, max_variants)
            failed |= not r["finite"]
            print(f"engine {arch}: auto batch {r['batch']} (chosen in {r['choose_s']:.1f} s, "
                  f"warm-up {r['warm_s']:.1f} s); {r['variants']} SNVs in "
                  f"{r['seconds']:.2f} s = {r['vps']:.2f} variants/s; {r['memory']}"
                  + ("" if r["finite"] else "; NON-FINITE SCORES"))
            rows.append((arch, errs, r))

    print(f"\n== summary ({device.platform}, {mode})")
    head = f"{'model':<9} {'fp32 rel err':>12} {'bf16 rel err':>12} {'parity':>6} " \
           f"{'auto batch':>10} {'variants/s':>11}  peak memory"
    print(head)
    print("-" * len(head))
    for arch, errs, r in rows:
        ok = all(errs[p] <= TOL[p] for p in errs) and r["finite"]
        print(f"{arch:<9} {errs['fp32']:>12.2e} {errs['bf16']:>12.2e} "
              f"{'PASS' if ok else 'FAIL':>6} {r['batch']:>10} {r['vps']:>11.2f}  {r['memory']}")
    print("result:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
