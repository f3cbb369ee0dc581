"""XLA's CPU library paths (oneDNN, XNNPACK) on this machine: which fire, how fast, same numbers?

    python scripts/bench_xla_cpu_paths.py [--repeats 3]

The question behind it (issue 6): on an AMX CPU, PyTorch's oneDNN runs bf16 on AMX tiles.
Does XLA's CPU backend have a path there? jaxlib 0.10.2 carries two library back ends,
both switched by XLA_FLAGS: oneDNN (``--xla_cpu_use_onednn``: oneDNN thunks for matmul and
convolution fusions; ``--xla_cpu_experimental_onednn_custom_call``: the older custom-call
rewrite) and XNNPACK (``--xla_cpu_use_xnnpack``, on by default, and its graph fusion pass).
oneDNN picks AMX / AVX512-BF16 kernels at run time when the CPU has them.

Each flag set runs in its own subprocess (XLA reads XLA_FLAGS once) on the same inputs:
a 2048^2 fp32 GEMM, a 1024^2 bf16 GEMM, the chromBPNet 512 x 8 forward (batch 8 x 2,114 bp,
fp32 and bf16, veff.models.bpnet.forward) and Enformer ``small()``'s forward at 24,576 bp
(batch 2, fp32 and bf16, veff.models.enformer.apply). For each it prints the rate (FLOPs by
XLA's cost analysis of the default build), whether the optimised HLO names oneDNN or XNN
calls, and the largest difference from the default flags' output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _bench_common as bc
import numpy as np

FLAG_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn dot": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot",
    "onednn custom call": "--xla_cpu_experimental_onednn_custom_call=true",
    "xnnpack off": "--xla_cpu_use_xnnpack=false",
    "xnn graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
}
LIBS = ("onednn", "xnn", "ynn")  # fusion names in the optimised HLO (ynn: YNNPACK)


WORKLOADS = ["GEMM 2048 fp32", "GEMM 1024 bf16", "chromBPNet 512x8 B8 fp32",
             "Enformer small 24,576 bp B2 fp32", "chromBPNet 512x8 B8 bf16",
             "Enformer small 24,576 bp B2 bf16"]


def child(out: Path, repeats: int, index: int) -> None:
    """Run workload ``index`` under the XLA_FLAGS this process was started with (one
    process per workload: a flag that crashes XLA loses only that cell)."""
    import jax
    import jax.numpy as jnp

    from veff.models import bpnet, enformer

    rng = np.random.default_rng(0)
    hi = jax.lax.Precision.HIGHEST
    work = {}

    def gemm(n, dtype):
        a = jnp.asarray(rng.standard_normal((n, n)), dtype)
        b = jnp.asarray(rng.standard_normal((n, n)), dtype)
        return jax.jit(lambda x, y: jnp.dot(x, y, precision=hi)), (a, b), 2 * n**3

    def onehot(batch, length):
        return jnp.asarray(np.eye(4, dtype=np.float32)[rng.integers(0, 4, (batch, length))])

    from veff.engine import _compute_dtype_params as cast  # the engine's bf16 cast

    work["GEMM 2048 fp32"] = gemm(2048, jnp.float32)
    work["GEMM 1024 bf16"] = gemm(1024, jnp.bfloat16)
    bcfg = bpnet.BPNetConfig.chrombpnet()
    bparams = bpnet.init(bcfg, 0)
    xb = onehot(8, bcfg.input_len)
    ecfg = enformer.EnformerConfig.small(window_len=24_576, output_heads=(("human", 64),))
    eparams = enformer.init(ecfg, jax.random.key(0))
    xe = onehot(2, ecfg.window_len)
    f = jax.jit(lambda p, x: bpnet.forward(bcfg, p, x, precision=hi)["logits"])
    g = jax.jit(lambda p, x: enformer.apply(p, x, config=ecfg, precision=hi)["tracks"])
    for prec, dt in (("fp32", jnp.float32), ("bf16", jnp.bfloat16)):
        work[f"chromBPNet 512x8 B8 {prec}"] = (f, (cast(bparams, dt), xb.astype(dt)), None)
        work[f"Enformer small 24,576 bp B2 {prec}"] = (g, (cast(eparams, dt), xe.astype(dt)),
                                                       None)

    name = WORKLOADS[index]
    fn, args, flops = work[name]
    compiled = fn.lower(*args).compile()
    text = compiled.as_text().lower()
    if flops is None:
        flops = bc.xla_flops(fn, *args)
    y = compiled(*args)
    t = bc.timeit(lambda: jax.block_until_ready(compiled(*args)), repeats=repeats)
    np.save(out / f"{index}.npy", np.asarray(y, dtype=np.float32))
    (out / f"{index}.json").write_text(json.dumps(
        {"gflops": flops / t["best"] / 1e9,
         "libs": sorted({lib for lib in LIBS if f"%{lib}_" in text})}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.repeats, args.index)
        return

    bc.header("XLA CPU library paths: default vs oneDNN vs XNNPACK flags")
    for label, flags in FLAG_SETS.items():
        print(f"{label:>20}: XLA_FLAGS='{flags}'")
    print(f"\n{'workload':34}" + "".join(f"{lbl:>26}" for lbl in FLAG_SETS))
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(WORKLOADS):
            cells, ref = [], None
            for label, flags in FLAG_SETS.items():
                d = Path(tmp) / label.replace(" ", "_")
                d.mkdir(exist_ok=True)
                p = subprocess.run([sys.executable, __file__, "--child", str(d), "--index",
                                    str(i), "--repeats", str(args.repeats)],
                                   env={**os.environ, "XLA_FLAGS": flags}, capture_output=True,
                                   text=True)
                if p.returncode:
                    last = (p.stderr.strip().splitlines() or [""])[-1][:40]
                    cells.append(f"exit {p.returncode}: {last}")
                    continue
                r = json.loads((d / f"{i}.json").read_text())
                y = np.load(d / f"{i}.npy")
                ref = y if ref is None else ref  # the default flags run first
                diff = float(np.max(np.abs(y - ref)) / (np.max(np.abs(ref)) or 1.0))
                cells.append(f"{r['gflops']:6.1f} {'+'.join(r['libs']) or '-':>10} {diff:7.1e}")
            print(f"{name:34}" + "".join(f"{c:>26}" for c in cells), flush=True)
    print("\ncells: GFLOP/s (best of repeats), library fusions named in the optimised HLO, "
          "max |output - default| / max |default|; 'exit N': the process died (-4: SIGILL)")
    print(f"load average at end: {bc.load_average()}")


if __name__ == "__main__":
    main()
