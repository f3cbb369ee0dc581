"""HTML pieces of the report: page CSS, escaping and number formats, tables, quantile bars,
genome-browser links."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from veff import report_plots as rp

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px}table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:middle}th{background:#f3f3f3}
.num{text-align:right;font-variant-numeric:tabular-nums}.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0}figcaption{font-size:11px;color:#555;max-width:420px}.note{font-size:12px;color:#555;max-width:900px}
.fpr{background:#fff8e1;border-left:4px solid #e08214;padding:6px 10px;font-size:13px;max-width:900px}
.bar{display:inline-block;position:relative;width:60px;height:10px;background:#f0f0f0;vertical-align:middle;margin-right:4px}
.bar span{position:absolute;top:1px;height:8px}.bar i{position:absolute;top:0;width:1px;height:10px;background:#666}
svg.fig{max-width:100%;height:auto}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: float, digits: int = 3) -> str:
    return "NA" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def _pct(x: float) -> str:
    return "NA" if not np.isfinite(x) else f"{100 * x:.2f} %"


def bar_html(q: float, *, signed: bool) -> str:
    """A quantile as a small CSS bar (centred at 0 for signed groups): blue < 0, red > 0."""
    if not np.isfinite(q):
        return "<span class='bar'></span>"
    zero = 50.0 if signed else 0.0
    span = 50.0 if signed else 100.0
    x0, x1 = sorted((zero, zero + q * span))
    color = rp.REF_COLOR if q < 0 else rp.ALT_COLOR
    return (f"<span class='bar'><span style='left:{x0:.1f}%;width:{max(x1 - x0, 1.0):.1f}%;"
            f"background:{color}'></span><i style='left:{zero:.1f}%'></i></span>")


def browser_url(chrom: str, pos1: int, ref_len: int, assembly: str, flank: int = 20) -> str:
    """UCSC Genome Browser link on the variant ± ``flank`` bp (Ensembl-style names get ``chr``)."""
    c = chrom
    if re.fullmatch(r"[0-9]+|X|Y|MT?", c):
        c = "chrM" if c in ("M", "MT") else f"chr{c}"
    start, end = max(1, pos1 - flank), pos1 + max(ref_len, 1) - 1 + flank
    return f"https://genome.ucsc.edu/cgi-bin/hgTracks?db={assembly}&position={c}:{start}-{end}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None,
           row_titles: Sequence[str] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        (f"<tr title='{_e(row_titles[k])}'>" if row_titles else "<tr>")
        + "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in zip(r, numeric)) + "</tr>"
        for k, r in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"
