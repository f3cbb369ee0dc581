"""Per-variant motif effects from a contribution store computed on REF and ALT windows.

For every motif of a MEME file (log-odds in nats against a uniform background, pseudocount
0.01, as veff.simulate) and both strands, every match that overlaps the variant's allele
(REF bases ``[c, c + len(REF))`` of the REF window, ALT bases ``[c, c + len(ALT))`` of the ALT
window, ``c = L // 2``) is scored. A match is an *instance* when its relative score
``(S - S_min) / (S_max - S_min)`` is at least ``min_rel_score``. Per motif and allele the
instance with the highest score is kept, weighted by its summed actual contribution
``C = Σ_match Σ_b onehot · hypothetical`` on that allele's window; on an allele without an
instance, C is the sum over the other allele's match span (same window indices).
The motif's effect is ``Δ = C_alt - C_ref``; its verb compares the PWM scores: ``breaks``
(an instance on REF, none on ALT), ``creates`` (the reverse), ``weakens`` / ``strengthens``
(instances on both, ALT's best score lower / higher). Effects with ``|Δ| >= min_delta`` are
listed by decreasing ``|Δ|``: ``"breaks CTCF (-2.10); weakens YY1 (-0.31)"``.

Arrays added to the store (dims ``item``): ``motif_ref``, ``motif_alt`` (the kept instances:
``NAME STRAND@OFFSET score=S C=…``; OFFSET is the match start relative to the variant),
``motif_effect`` (text) and ``motif_delta`` (float32, Δ of the first listed effect; NaN when
none).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from veff.simulate.motifs import DEFAULT_MEME, log_odds, read_meme, reverse_complement_matrix, scan

UNIFORM = np.full(4, 0.25)


@dataclasses.dataclass(frozen=True)
class ScanMotif:
    id: str
    name: str
    lo: np.ndarray  # (W, 4) nats, + strand
    smin: float
    smax: float

    @property
    def width(self) -> int:
        return self.lo.shape[0]


@dataclasses.dataclass(frozen=True)
class Instance:
    motif: str
    strand: str
    start: int       # window index of the match's first base
    score: float     # log-odds, nats
    rel: float       # relative score in [0, 1]
    contrib: float   # summed actual contribution over the match


def load_motifs(path: str | Path | None = None, pseudocount: float = 0.01) -> list[ScanMotif]:
    out = []
    for m in read_meme(path or DEFAULT_MEME):
        lo = log_odds(m.probs, UNIFORM, pseudocount)
        out.append(ScanMotif(m.id, m.name, lo, float(lo.min(1).sum()), float(lo.max(1).sum())))
    return out


def best_instances(tokens: np.ndarray, actual: np.ndarray, a: int, b: int, motifs: list[ScanMotif],
                   min_rel_score: float) -> dict[str, Instance]:
    """Per motif id, the highest-scoring instance overlapping window bases [a, b) (b > a).
    ``tokens`` (L,) uint8, ``actual`` (L,) per-base actual contribution."""
    L = tokens.shape[0]
    found: dict[str, Instance] = {}
    for m in motifs:
        W = m.width
        lo_s, hi_s = max(0, a - W + 1), min(L - W, b - 1)  # starts whose match overlaps [a, b)
        if hi_s < lo_s:
            continue
        sub = tokens[lo_s : hi_s + W]
        for strand, lo in (("+", m.lo), ("-", reverse_complement_matrix(m.lo))):
            scores = scan(sub, lo)
            if not scores.size or not np.isfinite(scores).any():
                continue
            k = int(np.argmax(scores))
            s = float(scores[k])
            rel = (s - m.smin) / (m.smax - m.smin)
            if rel < min_rel_score:
                continue
            start = lo_s + k
            best = found.get(m.id)
            if best is None or s > best.score:
                found[m.id] = Instance(m.name, strand, start, s, rel, float(actual[start : start + W].sum()))
    return found


def variant_effect(ref_tok, alt_tok, ref_act, alt_act, ref_len: int, alt_len: int,
                   motifs: list[ScanMotif], *, min_rel_score: float = 0.8,
                   min_delta: float = 0.0) -> tuple[str, str, str, float]:
    """(motif_ref, motif_alt, motif_effect, motif_delta) of one variant."""
    c = ref_tok.shape[0] // 2
    ref = best_instances(ref_tok, ref_act, c, c + max(ref_len, 1), motifs, min_rel_score)
    alt = best_instances(alt_tok, alt_act, c, c + max(alt_len, 1), motifs, min_rel_score)
    effects = []
    widths = {m.id: (m.name, m.width) for m in motifs}
    for key in sorted(set(ref) | set(alt)):
        r, a = ref.get(key), alt.get(key)
        # a side without an instance: its contribution over the other side's match span
        name, width = widths[key]
        c_ref = r.contrib if r else float(np.sum(ref_act[a.start : a.start + width]))
        c_alt = a.contrib if a else float(np.sum(alt_act[r.start : r.start + width]))
        delta = c_alt - c_ref
        if r is None:
            verb = "creates"
        elif a is None:
            verb = "breaks"
        else:
            verb = "weakens" if a.score < r.score else "strengthens"
        if abs(delta) >= min_delta:
            effects.append((abs(delta), f"{verb} {name} ({delta:+.2f})", delta))
    effects.sort(key=lambda e: -e[0])

    def describe(inst: dict[str, Instance]) -> str:
        items = sorted(inst.values(), key=lambda i: -abs(i.contrib))
        return "; ".join(f"{i.motif} {i.strand}@{i.start - c:+d} score={i.score:.1f} C={i.contrib:+.2f}"
                         for i in items)

    return (describe(ref), describe(alt), "; ".join(e[1] for e in effects),
            effects[0][2] if effects else float("nan"))


def actual_contrib(onehot: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """(…, L, 4) -> (…, L): Σ_b onehot · hypothetical."""
    return (np.asarray(onehot, np.float32) * np.nan_to_num(np.asarray(hyp, np.float32))).sum(-1)


def annotate_store(path: str | Path, meme: str | Path | None = None, *, min_rel_score: float = 0.8,
                   min_delta: float = 0.0) -> tuple[int, int]:
    """Add motif_ref/motif_alt/motif_effect/motif_delta to a variant contribution store.
    Returns (variants annotated, variants with an effect)."""
    from veff.interpret import store as istore

    if not 0.0 <= min_rel_score <= 1.0:
        raise ValueError(f"--min-rel-score must be in [0, 1], got {min_rel_score}")
    root = istore.open_store(path)
    if root.attrs.get("kind") != "contrib" or "hypothetical_alt" not in root:
        raise ValueError(f"{path}: not a variant contribution store (veff contrib on a VCF/TSV)")
    motifs = load_motifs(meme)
    table = istore.read_variant_table(root)
    onehot, onehot_alt = root["onehot"][:], root["onehot_alt"][:]
    hyp, hyp_alt = root["hypothetical"][:], root["hypothetical_alt"][:]
    n = onehot.shape[0]
    cols = {k: np.full(n, "", object) for k in ("motif_ref", "motif_alt", "motif_effect")}
    delta = np.full(n, np.nan, np.float32)
    done = hit = 0
    for i in range(n):
        if not (np.isfinite(hyp[i]).all() and np.isfinite(hyp_alt[i]).all()):
            continue
        ref_tok = np.where(onehot[i].any(-1), onehot[i].argmax(-1), 4).astype(np.uint8)
        alt_tok = np.where(onehot_alt[i].any(-1), onehot_alt[i].argmax(-1), 4).astype(np.uint8)
        r, a, e, d = variant_effect(
            ref_tok, alt_tok, actual_contrib(onehot[i], hyp[i]), actual_contrib(onehot_alt[i], hyp_alt[i]),
            len(str(table["ref"][i])), len(str(table["alt"][i])), motifs,
            min_rel_score=min_rel_score, min_delta=min_delta)
        cols["motif_ref"][i], cols["motif_alt"][i], cols["motif_effect"][i], delta[i] = r, a, e, d
        done += 1
        hit += bool(e)
    for name in (*cols, "motif_delta"):
        if name in root:
            del root[name]
    meaning = {"motifs": str(meme or DEFAULT_MEME), "min_rel_score": min_rel_score, "min_delta": min_delta}
    for name, values in cols.items():
        istore.write_array(root, name, values.astype(str), ["item"], meaning)
    istore.write_array(root, "motif_delta", delta, ["item"],
                       {**meaning, "meaning": "C_alt - C_ref of the first effect in motif_effect"})
    return done, hit
