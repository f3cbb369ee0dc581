"""The report's figures: matplotlib (SVG backend, no pyplot state) -> inline SVG strings.

Every figure is saved with ``svg.fonttype = none`` (text stays text: searchable, and the
browser draws it), a tight bounding box (no clipped tick labels) and its own id salt (clip
paths and markers of different figures never share an id in one HTML page). Raw effects are
drawn on symlog axes and densities as 2-D histograms with a log colour scale, so neither
saturates at tens of thousands of variants. Points that stand for one variant carry an SVG
``<title>`` (the browser's tooltip).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence

import numpy as np

CALL_COLORS = {"agreed": "#1b7837", "conflict": "#c51b7d", "single_model": "#e08214",
               "weak": "#9e9e9e", "none": "#dddddd"}
REF_COLOR, ALT_COLOR, BG_COLOR, DELTA_COLOR = "#2166ac", "#d6604d", "#7f7f7f", "#4d4d4d"
GENE_COLOR, PEAK_COLOR = "#35978f", "#8c510a"


def _mpl():
    """matplotlib's Figure class and colors module, or the one-line reason it is missing."""
    try:
        import matplotlib
        from matplotlib import colors
        from matplotlib.figure import Figure
    except ImportError:
        from veff.report import ReportError

        raise ReportError("the report needs matplotlib; install it with pip install 'veff[report]'") from None
    return matplotlib, Figure, colors


class Figures:
    """Makes figures and saves each as an SVG string with ids unique within one page."""

    def __init__(self, prefix: str = "f"):
        self.prefix = prefix
        self.count = 0

    def new(self, w: float, h: float, **kw):
        _, Figure, _ = _mpl()
        return Figure(figsize=(w, h), layout="constrained", **kw)

    def svg(self, fig, titles: dict[str, str] | None = None) -> str:
        """``fig`` as inline SVG; ``titles`` maps an artist gid to its tooltip text."""
        matplotlib, _, _ = _mpl()
        self.count += 1
        salt = f"{self.prefix}{self.count}"
        buf = io.StringIO()
        rc = {"svg.fonttype": "none", "svg.hashsalt": salt, "svg.image_inline": True,
              "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8}
        with matplotlib.rc_context(rc):
            fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.06, dpi=110,
                        metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        text = buf.getvalue()
        text = text[text.index("<svg"):]  # no XML declaration or DOCTYPE inside HTML
        for gid, title in (titles or {}).items():
            text = text.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(title)}</title>', 1)
        # ids unique within the page: every id, and every reference to one, gets the salt
        text = re.sub(r'(\sid="|url\(#|xlink:href="#)([^"()]+)', lambda m: f"{m.group(1)}{salt}-{m.group(2)}", text)
        return text.replace('<svg xmlns', f'<svg class="fig" data-fig="{salt}" xmlns', 1)


# ---------------------------------------------------------------------------- scales
def linthresh(values: np.ndarray) -> float:
    """A symlog linear range: the median non-zero |value| (so half the data is in the log part)."""
    a = np.abs(values[np.isfinite(values)])
    a = a[a > 0]
    return float(np.median(a)) if a.size else 1.0


def symlog_axis(axis, values: np.ndarray, *, pad: float = 0.04) -> float:
    """Put ``axis`` on a symlog scale fitted to ``values``: linear range, limits padded by
    ``pad`` of the span (points at the extremes stay whole), ticks at 0 and ±10^k (every
    other decade when there are many) labelled plainly. Returns the linear range."""
    c = linthresh(values)
    x = axis.axis_name == "x"
    (axis.axes.set_xscale if x else axis.axes.set_yscale)("symlog", linthresh=c)
    lo, hi = _limits(values)
    tr = axis.get_transform()
    a, b = tr.transform(np.array([lo, hi], dtype=float))
    m = (b - a) * pad
    vlo, vhi = tr.inverted().transform(np.array([a - m, b + m]))
    (axis.axes.set_xlim if x else axis.axes.set_ylim)(vlo, vhi)
    top = max(abs(vlo), abs(vhi))
    k0, k1 = int(np.ceil(np.log10(c))), int(np.floor(np.log10(top))) if top > 0 else 0
    step = 1 if k1 - k0 < 4 else 2
    decades = [10.0 ** k for k in range(k0, k1 + 1, step)]
    ticks = sorted({0.0, *decades, *(-d for d in decades)})
    axis.set_ticks([t for t in ticks if vlo <= t <= vhi])
    axis.set_major_formatter(lambda v, _: f"{v:g}")
    return c


def _edges(ax_axis, lo: float, hi: float, n: int) -> np.ndarray:
    """``n + 1`` bin edges evenly spaced on the axis' (symlog) scale."""
    tr = ax_axis.get_transform()
    a, b = tr.transform(np.array([lo, hi], dtype=float))
    if not b > a:
        a, b = a - 0.5, b + 0.5
    return tr.inverted().transform(np.linspace(a, b, n + 1))


def _limits(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if not x.size:
        return -1.0, 1.0
    lo, hi = float(x.min()), float(x.max())
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


# ---------------------------------------------------------------------------- figures
def pair_density(figs: Figures, xa: np.ndarray, xb: np.ndarray, xlabel: str, ylabel: str, *,
                 top: Sequence[int], labels: Sequence[str], calls: np.ndarray,
                 thr_a: float | None, thr_b: float | None) -> str:
    """Raw effects of two members: density of every variant (grey, log colour) on symlog
    axes, the top variants on top coloured by call, dotted lines at each member's strong
    boundary on the raw scale."""
    _, _, colors = _mpl()
    fig = figs.new(4.3, 3.6)
    ax = fig.add_subplot()
    ok = np.isfinite(xa) & np.isfinite(xb)
    symlog_axis(ax.xaxis, xa[ok])
    symlog_axis(ax.yaxis, xb[ok])
    ex = _edges(ax.xaxis, *_limits(xa[ok]), 40)
    ey = _edges(ax.yaxis, *_limits(xb[ok]), 40)
    counts, _, _ = np.histogram2d(xa[ok], xb[ok], [ex, ey])
    if ok.any():
        mesh = ax.pcolormesh(ex, ey, np.ma.masked_equal(counts.T, 0), cmap="Greys", rasterized=True,
                             norm=colors.LogNorm(vmin=1, vmax=max(2.0, counts.max())))
        top_count = float(max(2.0, counts.max()))
        cb = fig.colorbar(mesh, ax=ax, label="variants per cell", shrink=0.85)
        cb.minorticks_off()
        cticks = sorted({*(10.0 ** np.arange(int(np.log10(top_count)) + 1)), top_count})
        cb.set_ticks(cticks, labels=[f"{t:g}" for t in cticks])
    for thr, line in ((thr_a, ax.axvline), (thr_b, ax.axhline)):
        if thr is not None and np.isfinite(thr):
            for t in (thr, -thr):
                line(t, color="#555555", lw=0.7, ls=":")
    titles, seen = {}, set()
    for k, i in enumerate(top):
        if not (np.isfinite(xa[i]) and np.isfinite(xb[i])):
            continue
        c = str(calls[i])
        gid = f"{figs.prefix}{figs.count + 1}-pt{k}"
        ax.scatter([xa[i]], [xb[i]], s=26, color=CALL_COLORS.get(c, "#555555"), edgecolors="black",
                   linewidths=0.5, zorder=3, gid=gid, label=None if c in seen else f"top: {c}")
        seen.add(c)
        titles[gid] = f"#{k + 1} {labels[k]} ({c})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if seen:
        ax.legend(loc="best", frameon=True, framealpha=0.9)
    return figs.svg(fig, titles)


def _survival(x: np.ndarray, points: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """|x| sorted and P(|X| >= that value), thinned to about ``points`` steps (log spaced)."""
    a = np.sort(np.abs(x[np.isfinite(x)]))
    n = a.size
    if n == 0:
        return a, a
    idx = np.unique(np.clip(n - np.round(np.geomspace(1, n, points)).astype(int), 0, n - 1))
    return a[idx], (n - idx) / n


def tail_plot(figs: Figures, values: np.ndarray, background: np.ndarray | None, xlabel: str, *,
              strong_at: float | None = None, strong_label: str = "") -> str:
    """Survival curves P(|effect| >= x) of the variants and the background: log y, symlog x.
    A curve above the grey one at large x is an excess of large effects over chance."""
    fig = figs.new(4.3, 3.0)
    ax = fig.add_subplot()
    both = np.abs(np.concatenate([values[np.isfinite(values)],
                                  background[np.isfinite(background)] if background is not None else []]))
    symlog_axis(ax.xaxis, both if both.size else np.zeros(1))
    ax.set_xlim(left=0)
    ax.set_yscale("log")
    series = [(values, ALT_COLOR, "variants")]
    if background is not None:
        series.append((background, BG_COLOR, "background"))
    for v, color, name in series:
        xs, ys = _survival(v)
        if xs.size:
            ax.step(xs, ys, where="post", color=color, lw=1.6, label=f"{name} (n={int(np.isfinite(v).sum()):,})")
    if strong_at is not None and np.isfinite(strong_at):
        ax.axvline(strong_at, color="#1b7837", lw=1.0, ls="--", label=strong_label or "strong")
    ax.set_xlabel(f"|{xlabel}|")
    ax.set_ylabel("fraction with |effect| ≥ x")
    ax.legend(loc="lower left", frameon=True, framealpha=0.9)
    return figs.svg(fig)


def prediction_panel(figs: Figures, *, x0: np.ndarray, bin_size: int, ref: np.ndarray, alt: np.ndarray,
                     chrom: str, pos1: int, title: str, what: str, genes: Sequence = (),
                     peaks: Sequence[tuple[int, int, int]] = ()) -> str:
    """REF/ALT predictions on genomic coordinates (1-based bp; ``x0[p]`` = first base of output
    position p), ALT - REF below, then genes (exons as boxes, name and strand) and peaks
    (0-based half-open intervals with the summit) overlapping the output span."""
    rows = 2 + bool(len(genes)) + bool(len(peaks))
    ratios = [3, 1.4] + [1.0] * (rows - 2)
    fig = figs.new(6.4, 1.1 * sum(ratios) + 0.6)
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    edges = np.append(x0, x0[-1] + bin_size)
    kw = {"where": "post"} if bin_size > 1 else {}
    xs, r, a = (edges, np.append(ref, ref[-1]), np.append(alt, alt[-1])) if bin_size > 1 else (x0, ref, alt)
    plot = axes[0].step if bin_size > 1 else axes[0].plot
    plot(xs, r, color=REF_COLOR, lw=1.1, label="REF", **kw)
    plot(xs, a, color=ALT_COLOR, lw=1.1, label="ALT", **kw)
    axes[0].set_ylabel(what)
    axes[0].legend(loc="upper right", frameon=True, framealpha=0.9)
    axes[0].set_title(title, loc="left")
    d = a - r
    (axes[1].step if bin_size > 1 else axes[1].plot)(xs, d, color=DELTA_COLOR, lw=1.0, **kw)
    axes[1].axhline(0, color="#bbbbbb", lw=0.6)
    axes[1].set_ylabel("ALT − REF")
    for ax in axes:
        ax.axvline(pos1, color="#999999", lw=0.8, ls="--")
    lo, hi = float(edges[0]), float(edges[-1])
    k = 2
    if len(genes):
        _genes_track(axes[k], genes, lo, hi)
        k += 1
    if len(peaks):
        _peaks_track(axes[k], peaks, lo, hi)
    axes[-1].set_xlim(lo, hi)
    axes[-1].set_xlabel(f"{chrom} position (bp)")
    axes[-1].xaxis.set_major_formatter(lambda v, _: f"{int(round(v)):,}")
    axes[-1].tick_params(axis="x", labelrotation=0)
    return figs.svg(fig)


def _genes_track(ax, genes: Sequence, lo: float, hi: float) -> None:
    from matplotlib.patches import Rectangle

    for level, g in enumerate(genes[:4]):
        y = -level
        ax.plot([max(g.start + 1, lo), min(g.end, hi)], [y, y], color=GENE_COLOR, lw=1.0)
        for s, e in g.exons:
            if e > lo and s + 1 < hi:
                ax.add_patch(Rectangle((s + 1, y - 0.3), e - s, 0.6, color=GENE_COLOR))
        arrow = "→" if g.strand == "+" else "←"
        ax.text(max(g.start + 1, lo), y + 0.35, f"{g.name} {arrow}", fontsize=7, color=GENE_COLOR,
                va="bottom", clip_on=True)
    ax.set_ylim(-min(len(genes), 4) + 0.4, 1.2)
    ax.set_yticks([])
    ax.set_ylabel("genes")


def _peaks_track(ax, peaks: Sequence[tuple[int, int, int]], lo: float, hi: float) -> None:
    from matplotlib.patches import Rectangle

    for s, e, summit in peaks:
        ax.add_patch(Rectangle((s + 1, -0.3), e - s, 0.6, color=PEAK_COLOR, alpha=0.6))
        ax.plot([summit + 1, summit + 1], [-0.45, 0.45], color=PEAK_COLOR, lw=1.0)
    ax.set_ylim(-0.6, 0.6)
    ax.set_yticks([])
    ax.set_ylabel("peaks")


def svg_ids(svg: str) -> list[str]:
    """Every id defined in an SVG string (tests: ids are unique across a page)."""
    return re.findall(r'\sid="([^"]+)"', svg)
