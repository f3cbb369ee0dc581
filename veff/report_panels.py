"""REF/ALT prediction panels of the report: the models are run again on the windows of the
chosen variants only, and every output position is placed on the genome.

Geometry (the windows contract): a window of length L covers genome 0-based
``[pos1 - 1 - L // 2, pos1 - 1 - L // 2 + L)``; P output positions of ``bin_size`` bp sit in
the middle, ``(L - P * bin_size) // 2`` bases from the window start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from veff import report_plots as rp


def output_starts(pos1: int, window_len: int, num_out: int, bin_size: int) -> np.ndarray:
    """1-based genome position of the first base of each output position, (P,) int64."""
    start0 = pos1 - 1 - window_len // 2 + (window_len - num_out * bin_size) // 2
    return start0 + 1 + np.arange(num_out, dtype=np.int64) * bin_size


def _bare(chrom: str) -> str:
    return chrom[3:] if chrom.lower().startswith("chr") else chrom


def genes_in(genes: Sequence, chrom: str, lo: float, hi: float) -> list:
    """Genes on ``chrom`` (``chr`` prefix ignored) overlapping 1-based [lo, hi)."""
    c = _bare(chrom)
    return [g for g in genes if _bare(g.chrom) == c and g.end >= lo and g.start + 1 < hi]


def peaks_in(peaks, chrom: str, lo: float, hi: float) -> list[tuple[int, int, int]]:
    """(start0, end0, summit0) of the peaks on ``chrom`` overlapping 1-based [lo, hi)."""
    if peaks is None or not len(peaks):
        return []
    c = _bare(chrom)
    hit = np.array([_bare(str(x)) == c for x in peaks.chrom]) & (peaks.end0 >= lo) & (peaks.start0 + 1 < hi)
    return [(int(s), int(e), int(m)) for s, e, m in zip(peaks.start0[hit], peaks.end0[hit], peaks.summit0[hit])]


def prediction_panels(figs: rp.Figures, root, variants: list, members: list[dict], genome, models,
                      *, genes: Sequence = (), peaks=None) -> str:
    """One figure per (model, variant): REF/ALT predictions, ALT - REF, genes and peaks."""
    import jax
    import jax.numpy as jnp

    from veff.io.genome import Genome
    from veff.io.windows import build_windows, one_hot
    from veff.models.registry import load_model

    gen = genome if isinstance(genome, Genome) else Genome(genome)
    specs = list(models.values()) if isinstance(models, Mapping) else list(models)
    store_models = list(root.attrs["models"])
    by_sha = {root["scores"][m].attrs.get("checkpoint_sha256"): m for m in store_models}
    out = []
    for spec in specs:
        handle = load_model(spec)
        name = handle.name if handle.name in store_models else by_sha.get(handle.sha256, handle.name)
        w = build_windows(gen, variants, handle.window_len)
        x = jnp.concatenate([one_hot(w.ref), one_hot(w.alt)]).astype(jnp.float32)
        if handle.num_folds > 1:
            outs = jax.vmap(handle.apply, in_axes=(0, None))(handle.params, x)
            outs = jax.tree.map(lambda a: a.mean(axis=0), outs)
        else:
            outs = handle.apply(handle.params, x)
        n = len(variants)
        if handle.kind == "profile":
            logits = np.asarray(outs["logits"], dtype=np.float64)
            counts = np.exp(np.asarray(outs["logcounts"], dtype=np.float64)).reshape(-1, 1)
            prof = np.exp(logits - logits.max(axis=1, keepdims=True))
            prof = prof / prof.sum(axis=1, keepdims=True) * counts
            ref, alt, what = prof[:n], prof[n:], "predicted counts"
        else:
            tracks = np.asarray(outs["tracks"], dtype=np.float64)
            names = handle.track_names
            wanted = [t for m in members if m["model"] == name for t in m["tracks"]]
            j = names.index(wanted[0]) if wanted and wanted[0] in names else 0
            ref, alt, what = tracks[:n, :, j], tracks[n:, :, j], f"{names[j]}"
        figures = []
        for k, v in enumerate(variants):
            x0 = output_starts(v.pos1, handle.window_len, ref.shape[1], handle.bin_size)
            lo, hi = int(x0[0]), int(x0[-1] + handle.bin_size)
            title = f"{name} · {v.chrom}:{lo:,}–{hi - 1:,} · {v.chrom}:{v.pos1} {v.ref}>{v.alt} ({v.id})"
            svg = rp.prediction_panel(
                figs, x0=x0, bin_size=handle.bin_size, ref=ref[k], alt=alt[k], chrom=v.chrom, pos1=v.pos1,
                title=title, what=what, genes=genes_in(genes, v.chrom, lo, hi),
                peaks=peaks_in(peaks, v.chrom, lo, hi))
            figures.append(f"<figure>{svg}</figure>")
        out.append(f"<h3>{_esc(name)}</h3><div class='plots'>" + "".join(figures) + "</div>")
    return "".join(out)


def _esc(x) -> str:
    import html

    return html.escape(str(x), quote=True)
