"""Shared pieces of the peer benchmarks (scripts/bench_*.py): machine facts, GEMM rates,
timing, a genome and random SNVs, XLA FLOP counts.

Benchmarks, not tests: every script runs veff and its peer on the same inputs with the
same converted weights in one process and prints both figures and their ratio.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_GENOME = REPO / ".." / "shared" / "data" / "baskerville" / "hg38_1m.fa.gz"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_line() -> str:
    flags = cpu_flags()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
           if f in flags]
    return (f"machine: {cpu_model()} | {cores()} cores | ISA {'/'.join(isa) or 'n/a'} | "
            f"load average (1/5/15 min) {load_average()}")


def versions() -> str:
    import jax
    out = [f"python {platform.python_version()}", f"jax {jax.__version__}"]
    try:
        import torch
        out.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        out.append("torch not installed")
    return "versions: " + ", ".join(out)


def header(title: str) -> None:
    print(f"== {title}")
    print(machine_line())
    print(versions())


# --------------------------------------------------------------------------- timing


def timeit(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> dict[str, float]:
    """Wall seconds of ``fn()`` (which must block until its result exists): best and
    median over ``repeats`` after ``warmup`` calls. On a shared machine the best is the
    figure closest to what the code can do; the median shows the noise."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"best": min(times), "median": statistics.median(times), "n": repeats}


def fmt_time(t: dict[str, float]) -> str:
    return f"best {t['best']:.3f} s, median {t['median']:.3f} s of {t['n']}"


# --------------------------------------------------------------------------- GEMM rates


def jax_gemm_gflops(n: int = 2048, dtype: str = "float32", repeats: int = 5) -> float:
    """GFLOP/s of one (n, n) @ (n, n) jnp.dot, the best of ``repeats`` (2 n^3 FLOP)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), dtype=dtype)
    b = jnp.asarray(rng.standard_normal((n, n)), dtype=dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
    t = timeit(lambda: f(a, b).block_until_ready(), repeats=repeats, warmup=2)
    return 2 * n**3 / t["best"] / 1e9


def torch_gemm_gflops(n: int = 2048, dtype: str = "float32", repeats: int = 5) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(getattr(torch, dtype))
    b = torch.randn(n, n, generator=g).to(getattr(torch, dtype))
    with torch.no_grad():
        t = timeit(lambda: torch.mm(a, b), repeats=repeats, warmup=1)
    return 2 * n**3 / t["best"] / 1e9


BF16_GEMM_N = 512  # torch's bf16 GEMM without native bf16 instructions: ~1 GFLOP/s


def gemm_rates(bf16: bool = False, n: int = 2048) -> dict[str, float | None]:
    """{"jax_fp32", "torch_fp32"[, "jax_bf16", "torch_bf16"]}: GFLOP/s; the bf16 ones at
    (BF16_GEMM_N)^2 so that a CPU without native bf16 finishes in seconds."""
    rates = {"jax_fp32": jax_gemm_gflops(n), "torch_fp32": torch_gemm_gflops(n)}
    if bf16:
        rates["jax_bf16"] = jax_gemm_gflops(BF16_GEMM_N, "bfloat16", repeats=2)
        rates["torch_bf16"] = torch_gemm_gflops(BF16_GEMM_N, "bfloat16", repeats=2)
    return rates


def remeasure_jax_fp32(before: float, n: int = 2048) -> float:
    """JAX's fp32 GEMM rate again, right after a timed veff run; the larger of the two is
    the reference (on a shared machine the load changes between measurements)."""
    after = jax_gemm_gflops(n)
    print(f"GEMM {n}x{n} fp32   jax, re-measured after veff's timing: {after:.1f} GFLOP/s "
          f"(reference: the larger, {max(before, after):.1f})")
    return max(before, after)


def print_gemm(rates: dict[str, float | None], n: int = 2048) -> None:
    for k, v in rates.items():
        lib, dt = k.split("_")
        size = BF16_GEMM_N if dt == "bf16" else n
        shown = "n/a" if v is None else f"{v:.1f} GFLOP/s"
        print(f"GEMM {size}x{size} {dt:>4} {lib:>5}: {shown}")


# --------------------------------------------------------------------------- XLA FLOPs


def xla_flops(jitted: Callable, *args) -> float | None:
    """FLOPs XLA's HLO cost analysis counts for one call of ``jitted(*args)`` (2 per
    multiply-add in dots and convolutions; None if the backend reports none). Read from the
    lowered module, so nothing is compiled again.

    Counted for the *unblocked* relative attention and the untiled Enformer stem: XLA counts
    a loop body once, not once
    per trip, so the query-blocked attention (``veff.models.attention.QUERY_BLOCK``) would
    be undercounted. The unblocked form is the same basis the figures used before blocking;
    it counts the full (L, 2L-1) positional GEMM, of which the blocked form runs ~(L+Q)/2L.
    """
    import jax

    from veff.models import attention, enformer

    fn = getattr(jitted, "__wrapped__", jitted)
    saved = attention.QUERY_BLOCK, enformer.STEM_TILE
    # Enformer's stem runs in tiles under lax.map too: count it untiled for the same reason.
    attention.QUERY_BLOCK = enformer.STEM_TILE = sys.maxsize
    try:  # a fresh jit, so the trace is not a cached (blocked) one
        lowered = jax.jit(lambda *a: fn(*a)).lower(*args)
    finally:
        attention.QUERY_BLOCK, enformer.STEM_TILE = saved
    try:
        cost = lowered.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends only analyse compiled modules
        cost = lowered.compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def score_capturing(scorer, windows) -> tuple[dict, float, float | None, str]:
    """One ``scorer.score(windows)`` call (the warm-up: it compiles) that also captures the
    step's arguments to count its FLOPs. Returns (scores, seconds, FLOPs per variant of the
    step veff's engine ran, which step). Captured from a real call, so this follows the
    engine's step signature whatever it is; substitutions go through the incremental ALT
    step when the model has one."""
    import jax

    pair = True in scorer._steps
    compile_step = scorer._compile
    captured = []

    def record(p, rows):
        compiled = compile_step(p, rows)

        def call(*args):
            captured.append(args)
            return compiled(*args)

        return call

    scorer._compile = record
    try:
        t = time.perf_counter()
        scores = scorer.score(windows)
        seconds = time.perf_counter() - t
    finally:
        del scorer._compile
    jax.block_until_ready(captured)
    flops = xla_flops(scorer._steps[pair], *captured[0])
    name = "incremental ALT step" if pair else "full REF+ALT step"
    rows = captured[0][2].shape[0]  # the step's (bucketed) batch
    return scores, seconds, (None if flops is None else flops / rows), name


def forward_flops(handle, batch: int = 1) -> float | None:
    """XLA-counted FLOPs of one full ``handle.apply`` on ``batch`` windows (traced only)."""
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((batch, handle.window_len, 4), jnp.float32)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), handle.params)
    return xla_flops(jax.jit(handle.apply), params, x)


# --------------------------------------------------------------------------- inputs


def genome_path(workdir: Path, *, random_len: int = 2_000_000, seed: int = 0) -> Path:
    """The shared 1-Mb hg38 slice when present, else a random single-contig FASTA."""
    if SHARED_GENOME.is_file():
        return SHARED_GENOME.resolve()
    path = workdir / "random_genome.fa"
    if not path.is_file():
        rng = np.random.default_rng(seed)
        seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, random_len)]
        lines = [seq[i : i + 60].tobytes().decode() for i in range(0, random_len, 60)]
        path.write_text(">chrR\n" + "\n".join(lines) + "\n")
    return path


def random_snvs(genome, num: int, window_len: int, *, seed: int = 0) -> list:
    """``num`` SNVs at random positions whose ``window_len`` window lies inside a contig
    (the longest), REF read from the genome (non-N), ALT a different base. When the contig
    is shorter than the window the positions are uniform over the contig (N-padded)."""
    from veff.types import Variant

    rng = np.random.default_rng(seed)
    name = max(genome.contigs, key=genome.contigs.get)
    length = genome.contigs[name]
    lo, hi = window_len // 2 + 1, length - window_len // 2 - 1
    if hi <= lo:
        lo, hi = 1, length
    out: list = []
    while len(out) < num:
        pos1 = int(rng.integers(lo, hi))
        ref = int(genome.fetch(name, pos1 - 1, pos1)[0])
        if ref > 3:
            continue
        alt = (ref + int(rng.integers(1, 4))) % 4
        out.append(Variant(chrom=name, pos1=pos1, ref="ACGT"[ref], alt="ACGT"[alt],
                           fasta_chrom=name, record=len(out)))
    return out


_ONEHOT = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])


def onehot(tokens: np.ndarray) -> np.ndarray:
    """(B, L) uint8 tokens -> (B, L, 4) float32 one-hot (N = zeros)."""
    return _ONEHOT[tokens]


def onehot_nchw(tokens: np.ndarray) -> np.ndarray:
    """(B, L) uint8 tokens -> (B, 4, L) float32 one-hot (PyTorch's layout; N = zeros)."""
    return np.ascontiguousarray(onehot(tokens).transpose(0, 2, 1))


def reverse_complement_tokens(tokens: np.ndarray) -> np.ndarray:
    comp = np.array([3, 2, 1, 0, 4], dtype=np.uint8)
    return comp[tokens][:, ::-1].copy()


def ratio_line(label: str, veff: float, peer: float, targets: dict[str, float]) -> str:
    """'veff/peer = 1.23x (issue 3 target >= 1.3x: MISSED; ...)' for higher-is-better rates."""
    r = veff / peer
    parts = [f"{name} target >= {t:g}x: {'met' if r >= t else 'MISSED'}"
             for name, t in targets.items()]
    return f"{label}: veff/peer = {r:.2f}x" + (f" ({'; '.join(parts)})" if parts else "")


# --------------------------------------------------------------------------- long models


def long_context_bench(*, label: str, torch_model, ckpt: Path, torch_forward, workdir: Path,
                       num_variants: int, bf16: bool, analytic_flops: float | None,
                       seed: int = 0, extra_peers: tuple = ()) -> dict[str, Any]:
    """Enformer/Borzoi: REF+ALT per variant, no RC, veff vs a PyTorch peer on the same
    converted weights and the same windows; prints s/variant for both and the ratio, and
    veff's forward rate against JAX's fp32 GEMM rate.

    ``torch_forward(model, x)`` maps a (B, L, 4) float one-hot tensor to (B, P, T) tracks.
    ``analytic_flops``: FLOPs of one full forward from the reference notes (None: XLA's).
    ``extra_peers``: (label, run) pairs, fp32 only; ``run(variants, windows)`` scores the
    same SNVs its own way and returns (total seconds, (N, T) SUM = sum_p ALT - sum_p REF on
    veff's windows, max |sum_p REF|, how it ran). Returns the variants, windows and every
    (N, T) SUM computed: {"variants", "windows", "veff": {prec: SUM}, "peers": {label prec:
    SUM}} (for a float64 reference check)."""
    import torch

    from veff.engine import ModelScorer, ScoreOptions
    from veff.io.genome import Genome
    from veff.io.windows import build_windows
    from veff.models.registry import load_model

    rates = gemm_rates(bf16=bf16)
    print_gemm(rates)
    handle = load_model(str(ckpt))
    genome = Genome(genome_path(workdir))
    variants = random_snvs(genome, num_variants, handle.window_len, seed=seed)
    windows = build_windows(genome, variants, handle.window_len)
    full = forward_flops(handle)
    print(f"inputs: {len(variants)} random SNV(s) on {genome.path.name}, {handle.window_len:,} "
          f"bp windows; one full forward = {full / 1e12:.3f} TFLOP (XLA count)"
          + (f", {analytic_flops / 1e12:.2f} TFLOP (reference notes)" if analytic_flops else ""))

    precisions = ["fp32"] + (["bf16"] if bf16 else [])
    v_sec: dict[str, float] = {}
    sums: dict[str, np.ndarray] = {}
    for prec in precisions:
        scorer = ModelScorer(handle, ScoreOptions(batch_size=1, rc=False, precision=prec,
                                                  stats=("SUM",)))
        scores, first, executed, step_name = score_capturing(scorer, windows)
        t = time.perf_counter()
        scores = scorer.score(windows)
        sec = (time.perf_counter() - t) / len(variants)
        v_sec[prec], sums[prec] = sec, scores["SUM"]
        rates["jax_fp32"] = remeasure_jax_fp32(rates["jax_fp32"])
        print(f"\nveff {prec}: {sec:.2f} s/variant (REF+ALT, batch 1; first call incl. "
              f"compile {first:.1f} s)")
        eff = 2 * full / sec / 1e9
        print(f"  effective rate (2 full forwards per variant): {eff:.1f} GFLOP/s = "
              f"{eff / rates['jax_fp32']:.0%} of JAX fp32 GEMM")
        if executed is not None:
            ex = executed / sec / 1e9
            print(f"  executed (XLA count of the {step_name}): {executed / 1e12:.3f} TFLOP per "
                  f"variant ({executed / (2 * full):.0%} of 2 full forwards) -> {ex:.1f} "
                  f"GFLOP/s = {ex / rates['jax_fp32']:.0%} of JAX fp32 GEMM")

    peer_sums: dict[str, np.ndarray] = {}
    for prec in precisions:
        dtype = torch.bfloat16 if prec == "bf16" else torch.float32
        total, diffs, ref_sums = 0.0, [], []
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=prec == "bf16"):
            for i in range(len(variants)):
                x = torch.from_numpy(onehot(np.stack([windows.ref[i], windows.alt[i]])))
                t = time.perf_counter()
                y = torch_forward(torch_model, x).float().numpy()
                total += time.perf_counter() - t
                # per-bin difference, summed in float64: the peer's forward error only
                diffs.append((y[1].astype(np.float64) - y[0]).sum(0))
                ref_sums.append(y[0].sum(0))
        peer_sums[f"{label} {prec}"] = np.stack(diffs)
        _peer_report(label, prec, total / len(variants), np.stack(diffs),
                     float(np.max(np.abs(np.stack(ref_sums)))), sums["fp32"], v_sec[prec],
                     2 * (analytic_flops or full),
                     f"REF+ALT as one batch of 2, 1 run, torch "
                     f"{'autocast bf16' if prec == 'bf16' else 'fp32'}")
    for peer_label, run_peer in extra_peers:
        total, peer_sum, ref_scale, how = run_peer(variants, windows)
        peer_sums[f"{peer_label} fp32"] = peer_sum
        _peer_report(peer_label, "fp32", total / len(variants), peer_sum, ref_scale,
                     sums["fp32"], v_sec["fp32"], 2 * (analytic_flops or full), how)
    if bf16 and not {"avx512_bf16", "amx_bf16"} & cpu_flags():
        print("note: this CPU has neither AVX512-BF16 nor AMX: torch's oneDNN has no fast bf16 "
              "kernel here (see the bf16 GEMM rates above); an AMX CPU would change the "
              "torch bf16 figure, XLA's CPU backend does not use AMX.")
    return {"variants": variants, "windows": windows, "veff": sums, "peers": peer_sums}


def _peer_report(label: str, prec: str, sec: float, peer_sum: np.ndarray, ref_scale: float,
                 veff_sum: np.ndarray, veff_sec: float, flops_per_variant: float,
                 how: str) -> None:
    """A peer's s/variant, its same-weights check against veff's fp32 SUM and the ratio."""
    err = float(np.max(np.abs(peer_sum - veff_sum)))
    scale = float(np.max(np.abs(peer_sum)))
    print(f"\n{label} {prec}: {sec:.2f} s/variant ({how}); "
          f"{flops_per_variant / sec / 1e9:.1f} GFLOP/s")
    # Relative to the effect (max |SUM|), not to max |sum_p REF|: SUM is a small difference
    # of two large sums, and dividing by their size hides errors in the difference.
    print(f"  same weights check: max |SUM veff fp32 - SUM {label} {prec}| = {err:.3g} "
          f"= {err / scale:.1e} of max |SUM| ({scale:.3g}); max |sum_p REF| {ref_scale:.3g}")
    print(f"{prec}: veff/{label} speed = {sec / veff_sec:.2f}x "
          f"(s/variant {veff_sec:.2f} vs {sec:.2f})")
