"""`veff report`: one self-contained HTML file (inline CSS and SVG, no script, nothing fetched).

Sections (docs/report.md says how to read them): run summary; per consensus group the calls
with the rate at which the same rule calls the background (random SNVs) "strong"/"agreed",
the pairwise agreement, raw effects of member pairs (density + top variants), each member's
tail against its background and the top variants ranked by a non-saturating score; without
consensus, per model the tail of its first statistic against the background and the top
variants by |raw effect|. With ``models`` and ``genome``, REF/ALT prediction panels on genome
coordinates are added for the first ``num_panels`` top variants (the models are run again on
those windows only), with genes (GTF) and peaks (BED) when given. Figures are matplotlib SVG
(veff.report_plots); the only URLs are plain links to a genome browser.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veff import __version__
from veff import report_plots as rp
from veff.report_html import CSS as _CSS
from veff.report_html import _e, _figure, _fmt, _pct, _table, bar_html, browser_url  # noqa: F401 (re-exported)
from veff.integrity import reading, replaced_at_end, verify
from veff.store import Store

_CALL_ORDER = ("agreed", "conflict", "single_model", "weak", "none")


class ReportError(Exception):
    """The report cannot be built as asked."""


class _Ctx:
    """What every section needs: the variants, the figure maker, the browser assembly."""

    def __init__(self, root, top_n: int, assembly: str | None):
        g = root["variants"]
        v = {c: g[c][:] for c in ("chrom", "pos", "ref", "alt", "id", "status", "fasta_chrom")}
        self.v = {c: (a if a.dtype.kind in "biuf" else np.array([str(x) for x in a], dtype=object))
                  for c, a in v.items()}
        self.root, self.top_n, self.assembly = root, top_n, assembly
        self.figs = rp.Figures()

    def text(self, i: int) -> str:
        v = self.v
        return f"{v['chrom'][i]}:{int(v['pos'][i]):,} {v['ref'][i]}>{v['alt'][i]} ({v['id'][i]})"

    def cell(self, i: int) -> str:
        label = _e(self.text(i))
        if not self.assembly:
            return label
        url = browser_url(self.v["chrom"][i], int(self.v["pos"][i]), len(self.v["ref"][i]), self.assembly)
        return f"<a href='{_e(url)}'>{label}</a>"

    def background(self, model: str, stat: str) -> np.ndarray | None:
        r = self.root
        if "backgrounds" in r and model in r["backgrounds"] and stat in r["backgrounds"][model]:
            return np.asarray(r["backgrounds"][model][stat][:], dtype=np.float64)
        return None


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
        f"{_e(root.attrs.get('created', ''))} · {int(root.attrs.get('num_variants', 0)):,} rows</p>"
        + _table(["status", "rows"], [[_e(s), f"{int(c):,}"] for s, c in zip(status, counts)], [False, True])
        + _table(["model", "arch", "kind", "tracks", "statistics", "checkpoint"], rows,
                 [False, False, False, True, False, False])
    )


def _member_arrays(ctx: _Ctx, m: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """A member's raw effect per variant and per background SNV (mean over its tracks)."""
    sg = ctx.root["scores"][m["model"]]
    names = [str(t) for t in sg["track"][:]]
    idx = [names.index(t) for t in m["tracks"]]
    vals = np.asarray(sg[m["stat"]][:, idx], dtype=np.float64).mean(axis=1)
    bg = ctx.background(m["model"], m["stat"])
    return vals, (bg[:, idx].mean(axis=1) if bg is not None else None)


def background_rates(ctx: _Ctx, attrs: dict) -> dict[str, Any]:
    """How often the group's rule fires on its own background (random SNVs): per member the
    fraction scored strong; per call the fraction of background SNVs given that call, when
    every member's background is the same SNVs (else None)."""
    from veff import consensus as cs

    signed, thr = bool(attrs.get("signed", True)), float(attrs["threshold"])
    qs, keys, strong = [], [], {}
    for m in attrs.get("members", []):
        bg = ctx.background(m["model"], m["stat"])
        if bg is None:
            return {"strong": {}, "calls": None, "num": 0}
        g = ctx.root["backgrounds"][m["model"]]
        names = [str(t) for t in g["track"][:]]
        b = bg[:, [names.index(t) for t in m["tracks"]]]
        q = cs.member_quantiles(b, b, signed=bool(m.get("signed", signed)))
        q = q if signed else np.abs(q)
        strong[f"{m['model']}:{m['stat']}"] = float(np.mean(np.abs(q[np.isfinite(q)]) >= thr))
        qs.append(q)
        keys.append(tuple(tuple(str(x) for x in g[c][:]) for c in ("chrom", "pos", "ref", "alt")))
    calls = None
    if qs and all(k == keys[0] for k in keys):
        c = cs.consensus_scores(np.stack(qs, axis=1), signed=signed, threshold=thr)["call"]
        calls = {name: float(np.mean(c == name)) for name in _CALL_ORDER}
    return {"strong": strong, "calls": calls, "num": len(qs[0]) if qs else 0}


def _fpr_sentence(rates: dict, num_scored: int, observed: dict[str, int], thr: float) -> str:
    if not rates["strong"]:
        return ("<p class='fpr'>The store holds no background for this group, so the rate at which "
                "“strong” fires on random SNVs cannot be given.</p>")
    per = "; ".join(f"{_e(k)} {_pct(r)}" for k, r in rates["strong"].items())
    s = (f"<p class='fpr'><b>False-positive rate.</b> On the background ({rates['num']:,} random SNVs "
         f"scored the same way), a member is “strong” (|quantile| ≥ {thr:g}) for: {per}. ")
    calls = rates["calls"]
    if calls is None:
        return s + ("The members' backgrounds are different SNVs, so the background rate of "
                    "“agreed” cannot be measured.</p>")
    exp = calls["agreed"] * num_scored
    return s + (f"The same rule calls {_pct(calls['agreed'])} of background SNVs “agreed” "
                f"({_pct(calls['conflict'])} “conflict”, {_pct(calls['single_model'])} “single_model”): "
                f"about {exp:,.0f} of the {num_scored:,} scored variants would be “agreed” by chance; "
                f"this store has {observed.get('agreed', 0):,}.</p>")


def _group_section(ctx: _Ctx, slug: str) -> tuple[str, np.ndarray, list[dict]]:
    g = ctx.root["consensus"][slug]
    attrs = dict(g.attrs)
    members = [str(m) for m in g["member"][:]]
    q = np.asarray(g["quantile"][:], dtype=np.float64)
    score = np.asarray(g["score"][:], dtype=np.float64)
    calls = np.array([str(c) for c in g["call"][:]], dtype=object)
    signed, thr = bool(attrs.get("signed", True)), float(attrs.get("threshold", 0.95))
    out = [f"<h2>Consensus: {_e(attrs.get('name', slug))}</h2>",
           f"<p class='note'>{'Signed' if signed else 'Magnitude'} group. A member is <i>strong</i> for a "
           f"variant when |quantile| ≥ {thr:g}, its quantile being the variant's rank against the "
           f"member's background; <i>agreed</i> = two or more strong members, all of one sign. "
           f"Rule: {_e(attrs.get('rule', ''))}</p>"]
    if attrs.get("skipped"):
        out.append(f"<p class='note'>Left out: {_e('; '.join(attrs['skipped']))}</p>")
    mem = attrs.get("members", [])
    raw = [_member_arrays(ctx, m) for m in mem]
    # the raw value at which a member turns strong (on the mean-over-tracks scale)
    bound = [float(np.quantile(np.abs(b) if signed else b, thr)) if b is not None and np.isfinite(b).any()
             else np.nan for _, b in raw]
    mem_rows = [[_e(m["model"]), _e(m["stat"]),
                 _e(", ".join(m["tracks"][:8]) + (" …" if len(m["tracks"]) > 8 else "")),
                 _e((m.get("background") or {}).get("num")), _fmt(bound[k])] for k, m in enumerate(mem)]
    out.append(_table(["model", "statistic", "tracks", "background n", f"|raw| at quantile {thr:g}"],
                      mem_rows, [False, False, False, True, True]))
    scored = int((np.asarray(g["num_models"][:]) > 0).sum())
    observed = {c: int((calls == c).sum()) for c in _CALL_ORDER}
    rates = background_rates(ctx, attrs)
    crow = [[_e(c), f"{observed[c]:,}", _pct(observed[c] / scored if scored else np.nan),
             _pct(rates["calls"][c]) if rates["calls"] else "NA",
             f"{rates['calls'][c] * scored:,.0f}" if rates["calls"] else "NA"]
            for c in _CALL_ORDER if observed[c] or c != "none"]
    out.append(_table(["call", "variants", "% of scored", "background rate", "expected by chance"], crow,
                      [False, True, True, True, True]))
    out.append(_fpr_sentence(rates, scored, observed, thr))
    # non-saturating score: each member's raw effect in units of its strong boundary
    scaled = np.stack([r / b if np.isfinite(b) and b > 0 else np.full_like(r, np.nan)
                       for (r, _), b in zip(raw, bound)], axis=1) if raw else np.zeros((len(score), 0))
    if not signed:
        scaled = np.abs(scaled)
    with np.errstate(all="ignore"):
        n_fin = np.isfinite(scaled).sum(axis=1)
        rank_score = np.where(n_fin > 0, np.nansum(scaled, axis=1) / np.maximum(n_fin, 1), np.nan)
    if not np.isfinite(rank_score).any():  # no backgrounds: fall back to the consensus quantile
        rank_score = score
    top = _top_rows(rank_score, ctx.top_n)
    labels = [ctx.text(i) for i in top]
    if g["pair"].shape[0]:
        prs = [[_e(p), _fmt(s), _fmt(c), _fmt(t), f"{int(n):,}", f"{int(k):,}"] for p, s, c, t, n, k in zip(
            g["pair"][:], g["spearman"][:], g["sign_concordance"][:], g["topk_overlap"][:],
            g["num_common"][:], g["num_both_strong"][:])]
        out.append("<h3>Agreement</h3>" + _table(
            ["pair", "Spearman", "sign concordance (strong in both)", f"top-{attrs.get('top_k')} overlap",
             "variants", "strong in both"], prs, [False, True, True, True, True, True]))
        figs = [_figure(rp.pair_density(ctx.figs, raw[i][0], raw[j][0], members[i], members[j], top=top,
                                        labels=labels, calls=calls, thr_a=bound[i], thr_b=bound[j]),
                        f"{members[i]} vs {members[j]}: raw effects (symlog axes); grey = density of "
                        f"all variants, points = top variants by call, dotted = strong boundaries")
                for i in range(len(members)) for j in range(i + 1, len(members))][:12]
        out.append("<h3>Raw effects, pairwise</h3><div class='plots'>" + "".join(figs) + "</div>")
    figs = [_figure(rp.tail_plot(ctx.figs, r, b, f"{m['model']} {m['stat']}", strong_at=bound[k],
                                 strong_label=f"strong (background q {thr:g})"),
                    f"{members[k]}: fraction of variants (red) and background SNVs (grey) with |raw effect| "
                    f"≥ x; red above grey at the right = more large effects than chance")
            for k, (m, (r, b)) in enumerate(zip(mem, raw))]
    out.append("<h3>Effects against the background</h3><div class='plots'>" + "".join(figs) + "</div>")
    rows, titles = [], []
    for rank, i in enumerate(top, 1):
        cells = [f"{_fmt(raw[k][0][i])} {bar_html(float(q[i, k]), signed=signed)}q {_fmt(q[i, k], 2)}"
                 for k in range(len(members))]
        rows.append([rank, ctx.cell(i), _e(calls[i]), int(g["num_strong"][i]), _fmt(rank_score[i]),
                     _fmt(score[i]), *cells])
        titles.append(ctx.text(i))
    out.append(
        "<h3>Top variants</h3><p class='note'>Ranked by |background-scaled effect|: the mean over "
        "members of raw effect ÷ the member's |raw| at the strong quantile (1 = at the boundary; it "
        "does not saturate like quantiles do). Each member cell: raw effect (mean over its tracks), "
        "then its quantile.</p>"
        + _table(["#", "variant", "call", "strong", "scaled effect", "consensus quantile", *members], rows,
                 [True, False, False, True, True, True, *[False] * len(members)], titles))
    return "".join(out), top, mem


def _model_section(ctx: _Ctx, model: str) -> tuple[str, np.ndarray]:
    from veff.consensus import ConsensusError, normalise, stat_is_signed

    sg = ctx.root["scores"][model]
    stats = list(sg.attrs.get("statistics", []))
    if not stats:
        return "", np.zeros(0, int)
    stat = stats[0]
    tracks = [str(t) for t in sg["track"][:]]
    vals = np.asarray(sg[stat][:], dtype=np.float64)
    # per variant: the value of its track with the largest |effect|
    absv = np.where(np.isfinite(vals), np.abs(vals), -1.0)
    col = absv.argmax(axis=1)
    effect = np.where(absv.max(axis=1) >= 0, vals[np.arange(len(vals)), col], np.nan)
    bg = ctx.background(model, stat)
    bg_eff = None
    if bg is not None:
        babs = np.where(np.isfinite(bg), np.abs(bg), -1.0)
        bg_eff = bg[np.arange(len(bg)), babs.argmax(axis=1)]
    top = _top_rows(effect, ctx.top_n)
    try:
        signed = stat_is_signed(stat, sg.attrs.get("kind", "binned"))
    except ConsensusError:  # a statistic this veff does not know: signed when any value is < 0
        signed = bool(np.nanmin(vals) < 0) if np.isfinite(vals).any() else True
    rows, titles = [], []
    for rank, i in enumerate(top, 1):
        qv = normalise(np.array([effect[i]]), bg[:, col[i]], signed=signed)[0] if bg is not None else np.nan
        rows.append([rank, ctx.cell(i), _e(tracks[col[i]]), _fmt(effect[i]),
                     f"{bar_html(qv, signed=signed)}{_fmt(qv, 3)}" if bg is not None else "NA"])
        titles.append(ctx.text(i))
    what = stat if len(tracks) == 1 else f"{stat}, track of largest |effect|"
    fig = _figure(rp.tail_plot(ctx.figs, effect, bg_eff, f"{model} {what}"),
                  f"{model}: fraction of variants (red) and background SNVs (grey) with |{stat}| ≥ x"
                  + (" (each row's largest |effect| over its tracks)" if len(tracks) > 1 else "")
                  + ("" if bg is not None else "; no background in the store"))
    return (f"<h2>Model {_e(model)}</h2><p class='note'>No consensus in this store: statistic {_e(stat)}, "
            f"{len(tracks)} track(s). Quantile = rank of the effect against the background of the same "
            f"track.</p><div class='plots'>{fig}</div><h3>Top variants</h3>"
            + _table(["#", "variant", "track", f"raw {stat}", "quantile vs background"], rows,
                     [True, False, False, True, False], titles)), top


def _variant_objects(v: dict, rows: np.ndarray) -> list:
    from veff.types import Status, Variant

    out = [Variant(chrom=str(v["chrom"][i]), pos1=int(v["pos"][i]), ref=str(v["ref"][i]), alt=str(v["alt"][i]),
                   id=str(v["id"][i]), status=Status(str(v["status"][i])),
                   fasta_chrom=str(v["fasta_chrom"][i]) or None) for i in rows]
    return [x for x in out if x.status is Status.OK]


def write_report(
    store_path: str | Path,
    out_html: str | Path,
    *,
    genome: str | Path | None = None,
    models: Sequence[str] | Mapping[str, str] | None = None,
    top_n: int = 25,
    num_panels: int = 4,
    genes: str | Path | None = None,
    peaks: str | Path | None = None,
    assembly: str | None = "hg38",
) -> Path:
    """Write the HTML report of a finished store. ``models`` (checkpoint paths or registered
    names) and ``genome`` together add REF/ALT prediction panels for the first ``num_panels``
    top variants, with ``genes`` (GTF) and ``peaks`` (BED/narrowPeak) drawn under them;
    ``assembly`` names the UCSC assembly of the variant links (None: no links)."""
    if (models is None) != (genome is None):
        raise ReportError("prediction panels need both the models and the genome")
    if (genes is not None or peaks is not None) and models is None:
        raise ReportError("--genes and --peaks annotate the prediction panels: give --model and --genome too")
    if top_n < 1 or num_panels < 0:
        raise ReportError("--top must be ≥ 1 and --panels ≥ 0")
    if assembly is not None and not re.fullmatch(r"[A-Za-z0-9_]+", assembly):
        raise ReportError(f"--assembly {assembly!r} is not a UCSC assembly name (like hg38 or mm10)")
    rp._mpl()  # a missing matplotlib is one line, before any work
    out_html = Path(out_html)
    if not out_html.parent.is_dir():
        raise ReportError(f"directory {out_html.parent} does not exist")
    gene_list = _read_genes(genes) if genes is not None else []
    peak_set = _read_peaks(peaks) if peaks is not None else None
    store = Store.open(store_path, mode="r")
    try:
        verify(store)  # complete, and every chunk there: never a report of fill values
        with reading(store):
            ctx = _Ctx(store.root, top_n, assembly)
            body, top, members = _sections(ctx, Path(store_path))
            if models is not None and len(top) and num_panels:
                from veff.report_panels import prediction_panels

                body.append("<h2>REF/ALT predictions around the top variants</h2>" + prediction_panels(
                    ctx.figs, store.root, _variant_objects(ctx.v, top[:num_panels]), members, genome, models,
                    genes=gene_list, peaks=peak_set))
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


def _read_genes(path) -> list:
    from veff.io.gtf import read_gtf

    return read_gtf(path)


def _read_peaks(path):
    from veff.scoring.peaks import read_peaks

    try:
        return read_peaks(path)
    except ValueError as e:
        raise ReportError(str(e)) from None


def _sections(ctx: _Ctx, path: Path) -> tuple[list[str], np.ndarray, list[dict]]:
    """The summary and the per-group (or per-model) sections; the top rows and members."""
    root = ctx.root
    body = ["<h1>veff report</h1>", _summary(root, path, ctx.v)]
    top, members = np.zeros(0, int), []
    groups = sorted(root["consensus"].group_keys()) if "consensus" in root else []
    for slug in groups:
        part, t, mem = _group_section(ctx, slug)
        body.append(part)
        if not len(top):
            top, members = t, mem
    if not groups:
        for m in root.attrs["models"]:
            part, t = _model_section(ctx, m)
            body.append(part)
            if not len(top):
                top = t
    return body, top, members
