"""`veff report`: one self-contained HTML file (inline SVG, inline CSS, no script, no network).

Sections: run summary; per consensus group the agreement table, pairwise scatter plots of
normalised scores, each member's score distribution against its background and the top
variants with per-model bars; without consensus, per model the distribution and top variants
of its first statistic. With ``models`` and ``genome``, REF/ALT prediction panels are added for
the top variants (the models are run again on those windows only).
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veff import __version__
from veff.integrity import reading, replaced_at_end, verify
from veff.store import Store

_COLORS = {"agreed": "#1b7837", "conflict": "#c51b7d", "single_model": "#e08214",
           "weak": "#9e9e9e", "none": "#dddddd"}
_REF, _ALT, _BG = "#2166ac", "#d6604d", "#999999"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px}table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}th{background:#f3f3f3}
.num{text-align:right;font-variant-numeric:tabular-nums}.plots{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:11px;color:#555;max-width:320px}.note{font-size:12px;color:#555}
svg text{font-size:10px;fill:#333}
"""


class ReportError(Exception):
    """The report cannot be built as asked."""


# ---------------------------------------------------------------------------- SVG pieces
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: float, digits: int = 3) -> str:
    return "NA" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


class _Axes:
    """A plot box: data ranges -> pixel coordinates, with axes and tick labels."""

    def __init__(self, w: int, h: int, xlim, ylim, *, margin=(46, 10, 10, 28)):
        self.w, self.h = w, h
        self.left, self.top, self.right, self.bottom = margin
        self.xlim, self.ylim = _pad(xlim), _pad(ylim)
        self.parts: list[str] = []

    def x(self, v):
        a, b = self.xlim
        return self.left + (np.asarray(v, float) - a) / (b - a) * (self.w - self.left - self.right)

    def y(self, v):
        a, b = self.ylim
        return self.h - self.bottom - (np.asarray(v, float) - a) / (b - a) * (self.h - self.top - self.bottom)

    def frame(self, xlabel: str = "", ylabel: str = "") -> None:
        l, t, r, b = self.left, self.top, self.w - self.right, self.h - self.bottom
        self.parts.append(f'<rect x="{l}" y="{t}" width="{r - l}" height="{b - t}" fill="none" stroke="#888"/>')
        for v in self.xlim:
            self.parts.append(f'<text x="{self.x(v):.1f}" y="{b + 11}" text-anchor="middle">{_fmt(v)}</text>')
        for v in self.ylim:
            self.parts.append(f'<text x="{l - 3}" y="{self.y(v):.1f}" text-anchor="end">{_fmt(v)}</text>')
        if xlabel:
            self.parts.append(f'<text x="{(l + r) / 2:.1f}" y="{self.h - 3}" text-anchor="middle">{_e(xlabel)}</text>')
        if ylabel:
            self.parts.append(f'<text x="10" y="{(t + b) / 2:.1f}" text-anchor="middle" '
                              f'transform="rotate(-90 10 {(t + b) / 2:.1f})">{_e(ylabel)}</text>')

    def line(self, xs, ys, color: str, width: float = 1.2) -> None:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(self.x(xs), self.y(ys)) if np.isfinite(a) and np.isfinite(b))
        if pts:
            self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"/>')

    def svg(self, title: str = "") -> str:
        t = f"<title>{_e(title)}</title>" if title else ""
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}" role="img">{t}{"".join(self.parts)}</svg>')


def _pad(lim):
    a, b = (float(lim[0]), float(lim[1])) if lim is not None else (0.0, 1.0)
    if not (np.isfinite(a) and np.isfinite(b)):
        a, b = 0.0, 1.0
    if a == b:
        a, b = a - 0.5, b + 0.5
    return a, b


def scatter_svg(qa: np.ndarray, qb: np.ndarray, calls: np.ndarray, xlabel: str, ylabel: str, *, signed: bool) -> str:
    lim = (-1.0, 1.0) if signed else (0.0, 1.0)
    ax = _Axes(300, 300, lim, lim)
    ax.frame(xlabel, ylabel)
    ax.line(lim, lim, "#cccccc", 0.8)
    ok = np.isfinite(qa) & np.isfinite(qb)
    for a, b, c in zip(ax.x(qa[ok]), ax.y(qb[ok]), calls[ok]):
        ax.parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{_COLORS.get(str(c), "#555")}" fill-opacity="0.7"/>')
    return ax.svg(f"{xlabel} vs {ylabel}")


def histogram_svg(values: np.ndarray, background: np.ndarray | None, xlabel: str, bins: int = 40) -> str:
    v = values[np.isfinite(values)]
    b = background[np.isfinite(background)] if background is not None else np.zeros(0)
    both = np.concatenate([v, b])
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    edges = np.linspace(*_pad((lo, hi)), bins + 1)
    series = [(v, _ALT)] + ([(b, _BG)] if b.size else [])
    dens = [np.histogram(s, edges, density=True)[0] if s.size else np.zeros(bins) for s, _ in series]
    ymax = max(float(d.max()) for d in dens) if dens else 1.0
    ax = _Axes(320, 200, (edges[0], edges[-1]), (0.0, ymax or 1.0))
    ax.frame(xlabel, "density")
    for (s, color), d in zip(series, dens):
        xs = np.repeat(edges, 2)[1:-1]
        ax.line(xs, np.repeat(d, 2), color, 1.6)
    ax.parts.append(f'<text x="{ax.w - 12}" y="20" text-anchor="end" fill="{_ALT}">variants (n={v.size})</text>')
    if b.size:
        ax.parts.append(f'<text x="{ax.w - 12}" y="32" text-anchor="end" fill="{_BG}">background (n={b.size})</text>')
    return ax.svg(f"distribution of {xlabel}")


def bar_svg(q: float, *, signed: bool, width: int = 90) -> str:
    """A quantile as a horizontal bar (centred at 0 for signed groups)."""
    h = 12
    if not np.isfinite(q):
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}"><text x="2" y="10">NA</text></svg>'
    zero = width / 2 if signed else 0.0
    span = width / 2 if signed else width
    x0, x1 = sorted((zero, zero + q * span))
    color = _REF if q < 0 else _ALT
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}">'
            f'<rect x="0" y="0" width="{width}" height="{h}" fill="#f4f4f4"/>'
            f'<rect x="{x0:.1f}" y="1" width="{max(x1 - x0, 0.5):.1f}" height="{h - 2}" fill="{color}"/>'
            f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{h}" stroke="#666"/></svg>')


def panel_svg(ref: np.ndarray, alt: np.ndarray, title: str, xlabel: str) -> str:
    xs = np.arange(len(ref))
    lo = float(min(np.nanmin(ref), np.nanmin(alt)))
    hi = float(max(np.nanmax(ref), np.nanmax(alt)))
    ax = _Axes(340, 170, (0, len(ref) - 1), (min(lo, 0.0), hi))
    ax.frame(xlabel, "prediction")
    ax.line(xs, ref, _REF, 1.2)
    ax.line(xs, alt, _ALT, 1.2)
    mid = ax.x(len(ref) // 2)
    ax.parts.append(f'<line x1="{mid:.1f}" y1="{ax.top}" x2="{mid:.1f}" y2="{ax.h - ax.bottom}" stroke="#aaa" stroke-dasharray="3,3"/>')
    ax.parts.append(f'<text x="{ax.w - 12}" y="20" text-anchor="end" fill="{_REF}">REF</text>'
                    f'<text x="{ax.w - 12}" y="32" text-anchor="end" fill="{_ALT}">ALT</text>')
    return ax.svg(title)


# ---------------------------------------------------------------------------- HTML pieces
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in zip(r, numeric)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _variant_label(v: dict[str, np.ndarray], i: int) -> str:
    return f"{v['chrom'][i]}:{int(v['pos'][i])} {v['ref'][i]}&gt;{v['alt'][i]} ({v['id'][i]})"


def _top_rows(score: np.ndarray, n: int) -> np.ndarray:
    finite = np.flatnonzero(np.isfinite(score))
    order = np.argsort(-np.abs(score[finite]), kind="stable")
    return finite[order[:n]]


# ---------------------------------------------------------------------------- sections
def _summary(root, path: Path, v: dict[str, np.ndarray]) -> str:
    status, counts = np.unique(np.array([str(s) for s in v["status"]]), return_counts=True)
    rows = []
    for m in root.attrs["models"]:
        a = root["scores"][m].attrs
        rows.append([_e(m), _e(a.get("arch", "")), _e(a.get("kind", "")), root["scores"][m]["track"].shape[0],
                     _e(", ".join(a.get("statistics", []))), _e(str(a.get("checkpoint_sha256", ""))[:12])])
    return (
        f"<p class='note'>Store {_e(path)} · veff {_e(root.attrs.get('veff_version', ''))} · created "
        f"{_e(root.attrs.get('created', ''))} · {int(root.attrs.get('num_variants', 0))} rows</p>"
        + _table(["status", "rows"], [[_e(s), int(c)] for s, c in zip(status, counts)], [False, True])
        + _table(["model", "arch", "kind", "tracks", "statistics", "checkpoint"], rows,
                 [False, False, False, True, False, False])
    )


def _group_section(root, slug: str, v, top_n: int) -> tuple[str, np.ndarray, list[dict]]:
    g = root["consensus"][slug]
    attrs = dict(g.attrs)
    members = [str(m) for m in g["member"][:]]
    q = np.asarray(g["quantile"][:], dtype=np.float64)
    score = np.asarray(g["score"][:], dtype=np.float64)
    calls = np.array([str(c) for c in g["call"][:]], dtype=object)
    signed = bool(attrs.get("signed", True))
    out = [f"<h2>Consensus: {_e(attrs.get('name', slug))}</h2>",
           f"<p class='note'>{'signed' if signed else 'magnitude'} group; strong means |quantile| ≥ "
           f"{_e(attrs.get('threshold'))}; rule: {_e(attrs.get('rule', ''))}</p>"]
    if attrs.get("skipped"):
        out.append(f"<p class='note'>Left out: {_e('; '.join(attrs['skipped']))}</p>")
    mem_rows = [[_e(m["model"]), _e(m["stat"]), _e(", ".join(m["tracks"][:8]) + (" …" if len(m["tracks"]) > 8 else "")),
                 _e((m.get("background") or {}).get("num"))] for m in attrs.get("members", [])]
    out.append(_table(["model", "statistic", "tracks", "background n"], mem_rows, [False, False, False, True]))
    calls_u, calls_n = np.unique(calls, return_counts=True)
    out.append(_table(["call", "variants"], [[_e(c), int(n)] for c, n in zip(calls_u, calls_n)], [False, True]))
    if g["pair"].shape[0]:
        prs = [[_e(p), _fmt(s), _fmt(c), _fmt(t), int(n), int(k)] for p, s, c, t, n, k in zip(
            g["pair"][:], g["spearman"][:], g["sign_concordance"][:], g["topk_overlap"][:],
            g["num_common"][:], g["num_both_strong"][:])]
        out.append("<h3>Agreement</h3>" + _table(
            ["pair", "Spearman", "sign concordance (strong in both)", f"top-{attrs.get('top_k')} overlap",
             "variants", "strong in both"], prs, [False, True, True, True, True, True]))
        figs = [_figure(scatter_svg(q[:, i], q[:, j], calls, members[i], members[j], signed=signed),
                        f"{members[i]} vs {members[j]}; colour = consensus call")
                for i in range(len(members)) for j in range(i + 1, len(members))][:12]
        out.append("<h3>Normalised scores, pairwise</h3><div class='plots'>" + "".join(figs) + "</div>")
    figs = []
    for k, m in enumerate(attrs.get("members", [])):
        sg = root["scores"][m["model"]]
        names = [str(t) for t in sg["track"][:]]
        idx = [names.index(t) for t in m["tracks"]]
        vals = np.asarray(sg[m["stat"]][:, idx], dtype=np.float64).mean(axis=1)
        bg = None
        if "backgrounds" in root and m["model"] in root["backgrounds"] and m["stat"] in root["backgrounds"][m["model"]]:
            bg = np.asarray(root["backgrounds"][m["model"]][m["stat"]][:, idx], dtype=np.float64).mean(axis=1)
        figs.append(_figure(histogram_svg(vals, bg, f"{m['model']} {m['stat']}"),
                            f"{members[k]}: raw score (mean over its tracks) of the variants vs the background"))
    out.append("<h3>Score distributions against the background</h3><div class='plots'>" + "".join(figs) + "</div>")
    top = _top_rows(score, top_n)
    rows = []
    for i in top:
        bars = [bar_svg(float(q[i, k]), signed=signed) + f" {_fmt(q[i, k], 2)}" for k in range(len(members))]
        rows.append([_variant_label(v, i), _fmt(score[i]), _e(calls[i]), int(g["num_strong"][i]), *bars])
    out.append("<h3>Top variants</h3>" + _table(["variant", "consensus", "call", "strong", *members], rows,
                                                  [False, True, False, True, *[False] * len(members)]))
    return "".join(out), top, attrs.get("members", [])


def _model_section(root, model: str, v, top_n: int) -> tuple[str, np.ndarray]:
    sg = root["scores"][model]
    stats = list(sg.attrs.get("statistics", []))
    if not stats:
        return "", np.zeros(0, int)
    stat = stats[0]
    vals = np.asarray(sg[stat][:], dtype=np.float64)
    per_variant = vals[:, np.nanargmax(np.nanmax(np.abs(vals), axis=0))] if vals.size and np.isfinite(vals).any() else vals[:, 0]
    bg = None
    if "backgrounds" in root and model in root["backgrounds"] and stat in root["backgrounds"][model]:
        bg = np.asarray(root["backgrounds"][model][stat][:], dtype=np.float64).ravel()
    top = _top_rows(per_variant, top_n)
    rows = [[_variant_label(v, i), _fmt(per_variant[i])] for i in top]
    return (f"<h2>Model {_e(model)}</h2><div class='plots'>"
            + _figure(histogram_svg(vals.ravel(), bg, f"{model} {stat}"), f"{stat} over variants and tracks")
            + "</div><h3>Top variants</h3>" + _table(["variant", stat], rows, [False, True])), top


def _panels(root, v, rows: np.ndarray, members: list[dict], genome, models) -> str:
    """REF/ALT predictions of the given store rows, for every model that could be loaded."""
    import jax
    import jax.numpy as jnp

    from veff.io.genome import Genome
    from veff.io.windows import build_windows, one_hot
    from veff.models.registry import load_model
    from veff.types import Status, Variant

    gen = genome if isinstance(genome, Genome) else Genome(genome)
    specs = list(models.values()) if isinstance(models, Mapping) else list(models)
    store_models = list(root.attrs["models"])
    by_sha = {root["scores"][m].attrs.get("checkpoint_sha256"): m for m in store_models}
    variants = [Variant(chrom=str(v["chrom"][i]), pos1=int(v["pos"][i]), ref=str(v["ref"][i]), alt=str(v["alt"][i]),
                        id=str(v["id"][i]), status=Status(str(v["status"][i])),
                        fasta_chrom=str(v["fasta_chrom"][i]) or None) for i in rows]
    variants = [x for x in variants if x.status is Status.OK]
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
            ref, alt, what = prof[:n], prof[n:], "predicted counts per base"
        else:
            tracks = np.asarray(outs["tracks"], dtype=np.float64)
            names = handle.track_names
            wanted = [t for m in members if m["model"] == name for t in m["tracks"]]
            j = names.index(wanted[0]) if wanted and wanted[0] in names else 0
            ref, alt, what = tracks[:n, :, j], tracks[n:, :, j], f"track {names[j]} per bin"
        figs = [_figure(panel_svg(ref[k], alt[k], f"{name} {variants[k].chrom}:{variants[k].pos1}", "output position"),
                        f"{name}: {variants[k].chrom}:{variants[k].pos1} {variants[k].ref}>{variants[k].alt}, {what}")
                for k in range(n)]
        out.append(f"<h3>{_e(name)}</h3><div class='plots'>" + "".join(figs) + "</div>")
    return "<h2>REF/ALT predictions around the top variants</h2>" + "".join(out)


def write_report(
    store_path: str | Path,
    out_html: str | Path,
    *,
    genome: str | Path | None = None,
    models: Sequence[str] | Mapping[str, str] | None = None,
    top_n: int = 25,
    num_panels: int = 4,
) -> Path:
    """Write the HTML report of a finished store. ``models`` (checkpoint paths or registered
    names) and ``genome`` together add REF/ALT prediction panels for the top ``num_panels``
    variants; without them the report needs only the store."""
    if (models is None) != (genome is None):
        raise ReportError("prediction panels need both the models and the genome")
    out_html = Path(out_html)
    if not out_html.parent.is_dir():
        raise ReportError(f"directory {out_html.parent} does not exist")
    store = Store.open(store_path, mode="r")
    try:
        verify(store)  # complete, and every chunk there: never a report of fill values
        with reading(store):
            body, top, members, v = _sections(store.root, Path(store_path), top_n)
        if models is not None and len(top):
            body.append(_panels(store.root, v, top[:num_panels], members, genome, models))
    finally:
        store.close()
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    doc = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>veff report: {_e(Path(store_path).name)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + f"<p class='note'>Written by veff {_e(__version__)} at {_e(stamp)}.</p></body></html>"
    )
    with replaced_at_end([out_html]) as (tmp,):
        tmp.write_text(doc, encoding="utf-8")
    return out_html


def _sections(root, path: Path, top_n: int) -> tuple[list[str], np.ndarray, list[dict], dict]:
    """The summary and the per-group (or per-model) sections; the top rows and members."""
    g = root["variants"]
    v = {c: g[c][:] for c in ("chrom", "pos", "ref", "alt", "id", "status", "fasta_chrom")}
    v = {c: (a if a.dtype.kind in "biuf" else np.array([str(x) for x in a], dtype=object)) for c, a in v.items()}
    v_html = {c: (np.array([_e(x) for x in a], dtype=object) if a.dtype == object else a) for c, a in v.items()}
    body = ["<h1>veff report</h1>", _summary(root, path, v)]
    top, members = np.zeros(0, int), []
    groups = sorted(root["consensus"].group_keys()) if "consensus" in root else []
    for slug in groups:
        html_part, t, mem = _group_section(root, slug, v_html, top_n)
        body.append(html_part)
        if not len(top):
            top, members = t, mem
    if not groups:
        for m in root.attrs["models"]:
            html_part, t = _model_section(root, m, v_html, top_n)
            body.append(html_part)
            if not len(top):
                top = t
    return body, top, members, v
