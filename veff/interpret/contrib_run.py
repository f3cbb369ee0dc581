"""``veff contrib``: contribution scores of variants' REF/ALT windows or of regions into Zarr.

Store layout (dims in brackets)::

    variants/ or regions/      the inputs (variants: as the score store; regions: chrom,
                               start, end (BED, 0-based half-open), centre)
    window_start [item]        1-based genome position of window index 0
    onehot [item, position, base]               uint8, the REF window (or the region)
    hypothetical [item, position, base]         float32, mean over baselines
    onehot_alt / hypothetical_alt               variants only: the ALT window
    delta [item, baseline]                      f(x) - f(r) - Σ (x - r) m (convergence)

Actual contributions are ``onehot * hypothetical``.
"""

from __future__ import annotations

import numpy as np

from veff.interpret.contrib import Attributor, binned_target, bpnet_target, make_baselines


def _is_regions(path: str) -> bool:
    p = path.lower()
    return p.endswith((".bed", ".bed.gz", ".narrowpeak", ".narrowpeak.gz"))


def attributors(model: str, head: str | None, method: str, ig_steps: int) -> tuple[list[Attributor], int, str]:
    """One Attributor per fold, the model's window length and the target's description."""
    from veff.checkpoint import load_checkpoint
    from veff.models import bpnet
    from veff.models.registry import load_model, resolve

    directory, _ = resolve(model)
    ckpt = load_checkpoint(directory)
    if ckpt.arch in (bpnet.ARCH_SINGLE, bpnet.ARCH_COMBINED):
        head = head or "counts"
        handle = bpnet.from_checkpoint(ckpt)
        configs = bpnet.configs_from_checkpoint(ckpt)
        if ckpt.arch == bpnet.ARCH_COMBINED:  # chromBPNet interprets the bias-free model
            cfg, params = configs[bpnet.ACCESSIBILITY], handle.params[bpnet.ACCESSIBILITY]
        else:
            cfg, params = configs["model"], handle.params
        folds = ([params] if handle.num_folds == 1 else
                 [jax_tree_index(params, i) for i in range(handle.num_folds)])
        atts = [Attributor(bpnet_target(cfg, p, head, deeplift=False),
                           bpnet_target(cfg, p, head, deeplift=True), method=method, ig_steps=ig_steps)
                for p in folds]
        return atts, cfg.input_len, head
    handle = load_model(model)
    if handle.kind != "binned":
        raise ValueError(f"{model}: no attribution target for arch {ckpt.arch}")
    if not head or not head.startswith("track:"):
        raise ValueError("binned models need --head track:NAME[,NAME…]")
    if handle.num_folds != 1:
        raise ValueError(f"{model}: fold ensembles of binned models are not supported by contrib")
    names = [t.strip() for t in head.split(":", 1)[1].split(",") if t.strip()]
    missing = [t for t in names if t not in handle.track_names]
    if missing or not names:
        raise ValueError(f"{handle.name} has no track(s) {', '.join(missing) or '(none given)'}")
    idx = tuple(handle.track_names.index(t) for t in names)
    return ([Attributor(binned_target(handle, idx), None, method=method, ig_steps=ig_steps)],
            handle.window_len, head)


def jax_tree_index(tree, i: int):
    import jax

    return jax.tree.map(lambda a: a[i], tree)


def _attribute(atts: list[Attributor], tokens: np.ndarray, baseline: str, seed: int):
    from veff.io.windows import one_hot

    x = one_hot(tokens).astype(np.float32)
    refs = make_baselines(tokens, baseline, seed)
    hyps, deltas = zip(*(a.hypothetical(x, refs) for a in atts))
    return np.mean(hyps, axis=0), np.mean(deltas, axis=0)


def run_contrib(inputs: str, genome_path: str, model: str, out: str, *, method: str = "deeplift",
                head: str | None = None, baseline: str = "shuffle:20", seed: int = 0,
                ig_steps: int = 50, overwrite: bool = False) -> int:
    from veff.interpret import store as istore
    from veff.io.genome import Genome

    genome = Genome(genome_path)
    atts, L, head = attributors(model, head, method, ig_steps)
    attrs = {"model": model, "method": method, "head": head, "baseline": baseline, "seed": seed,
             "window_len": L, "ig_steps": ig_steps if method == "ig" else None,
             "convention": "hypothetical h_ib = m_ib - sum_c r_ic m_ic averaged over baselines; "
                           "actual = onehot * hypothetical"}
    if _is_regions(inputs):
        from veff.train.data import read_regions

        regions = read_regions(inputs)
        starts = regions.centre0 - L // 2
        toks = np.stack([genome.fetch(genome.resolve(str(c)) or str(c), int(s), int(s) + L)
                         for c, s in zip(regions.chrom, starts)]) if len(regions) else np.zeros((0, L), np.uint8)
        root = istore.create(out, overwrite=overwrite, kind="contrib", attrs={**attrs, "inputs": "regions"})
        g = root.create_group("regions")
        istore.write_array(g, "chrom", np.asarray(regions.chrom).astype(str), ["item"])
        istore.write_array(g, "start", np.asarray(regions.start0, np.int64), ["item"])
        istore.write_array(g, "end", np.asarray(regions.end0, np.int64), ["item"])
        istore.write_array(g, "centre", np.asarray(regions.centre0, np.int64), ["item"])
        backgrounds = [("", toks, np.arange(len(toks)))]
        n, window_start = len(toks), starts + 1
    else:
        from veff.io.vcf import read_variants
        from veff.pipeline import oriented_windows

        variants = list(read_variants(inputs, genome))
        w = oriented_windows(genome, variants, L)
        ok = np.flatnonzero([str(v.status) == "ok" for v in variants])
        root = istore.create(out, overwrite=overwrite, kind="contrib", attrs={**attrs, "inputs": "variants"})
        istore.write_variants(root, variants)
        n = len(variants)
        window_start = np.array([v.pos1 - L // 2 for v in variants], np.int64)
        backgrounds = [("", w.ref, ok), ("_alt", w.alt, ok)]
    istore.write_array(root, "window_start", window_start, ["item"],
                       {"meaning": "1-based genome position of window index 0"})
    for suffix, toks, rows in backgrounds:
        hyp = np.full((n, L, 4), np.nan, np.float32)
        delta = None
        if len(rows):
            h, d = _attribute(atts, toks[rows], baseline, seed)
            hyp[rows] = h
            delta = np.full((n, d.shape[1]), np.nan, np.float32)
            delta[rows] = d
        istore.write_array(root, "onehot" + suffix, np.eye(5, 4, dtype=np.uint8)[toks], ["item", "position", "base"])
        istore.write_array(root, "hypothetical" + suffix, hyp, ["item", "position", "base"])
        if delta is not None:
            istore.write_array(root, "delta" + suffix, delta, ["item", "baseline"])
    return n
