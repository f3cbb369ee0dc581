"""``veff motifs``: motif discovery (TF-MoDISco, modisco-lite) on a contribution store,
TOMTOM annotation of the patterns (memelite) against a MEME database, and the HTML report.

Files written to ``--out DIR``::

    ohe.npz, shap.npz      modisco-lite's inputs: one-hot and hypothetical contributions as
                           ``arr_0`` of shape (N, 4, L) (what ``modisco motifs -s -a`` reads)
    modisco_results.h5     modisco-lite's result file (``modiscolite.io.save_hdf5``)
    patterns.tsv           one row per pattern: seqlets, consensus and the top TOMTOM matches
                           with p- and q-values (Benjamini-Hochberg over the database, per pattern)
    patterns.meme          the trimmed pattern PPMs, named by their best match (q < 0.05)
    report/report.html     modisco-lite's descriptive report (logos inline as PNG), annotated
                           with memelite's TOMTOM
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np

from veff.simulate.motifs import DEFAULT_MEME, read_meme

BASES = "ACGT"


@dataclasses.dataclass(frozen=True)
class ModiscoParams:
    """modisco-lite knobs (defaults: its ``modisco motifs`` command's, except ``window``,
    which is clipped to the store's window length)."""

    max_seqlets: int = 2000
    n_leiden: int = 2
    window: int = 400
    sliding: int = 20
    trim_size: int = 30
    seqlet_flank_size: int = 5
    initial_flank_to_add: int = 10
    final_flank_to_add: int = 0


@dataclasses.dataclass
class Pattern:
    name: str            # "pos_patterns.pattern_0"
    n_seqlets: int
    ppm: np.ndarray      # (W, 4), trimmed
    cwm: np.ndarray      # (W, 4), trimmed
    matches: list[tuple[str, float, float]]  # (motif "ID NAME", p, q), best first

    @property
    def consensus(self) -> str:
        return "".join(BASES[i] for i in self.ppm.argmax(1))


def store_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The REF (or region) windows of a contrib store: one-hot (N, L, 4) and hypothetical
    contributions (N, L, 4), float32, rows that were attributed (finite) only."""
    from veff.interpret.store import open_store

    root = open_store(path)
    if root.attrs.get("kind") != "contrib":
        raise ValueError(f"{path}: not a contribution store (veff contrib)")
    onehot = np.asarray(root["onehot"][:], np.float32)
    hyp = np.asarray(root["hypothetical"][:], np.float32)
    ok = np.isfinite(hyp).all(axis=(1, 2))
    return onehot[ok], hyp[ok]


def write_inputs(out: Path, onehot: np.ndarray, hyp: np.ndarray) -> None:
    """modisco-lite's npz inputs, (N, 4, L)."""
    np.savez_compressed(out / "ohe.npz", np.ascontiguousarray(onehot.transpose(0, 2, 1)))
    np.savez_compressed(out / "shap.npz", np.ascontiguousarray(hyp.transpose(0, 2, 1)))


def run_modisco(onehot: np.ndarray, hyp: np.ndarray, h5: Path, params: ModiscoParams,
                verbose: bool = False) -> int:
    """TFMoDISco in-process on the central ``window`` bases; returns the number of patterns."""
    from modiscolite import io as mio
    from modiscolite import tfmodisco

    L = onehot.shape[1]
    window = min(params.window, L)
    a = L // 2 - window // 2
    x, h = onehot[:, a : a + window], hyp[:, a : a + window]
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        pos, neg = tfmodisco.TFMoDISco(
            one_hot=np.ascontiguousarray(x, np.float32),
            hypothetical_contribs=np.ascontiguousarray(h, np.float32),
            max_seqlets_per_metacluster=params.max_seqlets, sliding_window_size=params.sliding,
            flank_size=params.seqlet_flank_size, trim_to_window_size=params.trim_size,
            initial_flank_to_add=params.initial_flank_to_add,
            final_flank_to_add=params.final_flank_to_add, target_seqlet_fdr=0.05,
            n_leiden_runs=params.n_leiden, verbose=verbose)
    mio.save_hdf5(str(h5), pos, neg, window)
    return len(pos or []) + len(neg or [])


def trim(ppm: np.ndarray, cwm: np.ndarray, threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Keep the span whose per-position |CWM| sum reaches ``threshold`` × its maximum
    (modisco-lite's report trimming)."""
    score = np.abs(cwm).sum(1)
    keep = np.flatnonzero(score >= score.max() * threshold)
    if keep.size == 0:
        return ppm, cwm
    return ppm[keep[0] : keep[-1] + 1], cwm[keep[0] : keep[-1] + 1]


def read_patterns(h5: Path) -> list[Pattern]:
    import h5py

    out = []
    with h5py.File(h5, "r") as f:
        for group in ("pos_patterns", "neg_patterns"):
            if group not in f:
                continue
            for key in sorted(f[group].keys(), key=lambda k: int(k.split("_")[-1])):
                p = f[group][key]
                ppm, cwm = trim(np.asarray(p["sequence"][:]), np.asarray(p["contrib_scores"][:]))
                out.append(Pattern(f"{group}.{key}", int(p["seqlets"]["n_seqlets"][0]), ppm, cwm, []))
    return out


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of one row of p-values."""
    p = np.asarray(p, np.float64)
    n = p.size
    order = np.argsort(p)
    q = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def annotate(patterns: list[Pattern], meme: str | Path, top: int = 3) -> None:
    """Fill ``matches`` with memelite's TOMTOM against every motif of ``meme``."""
    from memelite import tomtom

    if not patterns:
        return
    db = read_meme(meme)
    targets = [np.ascontiguousarray(m.probs.T) for m in db]
    with warnings.catch_warnings():  # small databases: memelite warns that p-values depend on them
        warnings.simplefilter("ignore")
        p, *_ = tomtom([np.ascontiguousarray(pt.ppm.T) for pt in patterns], targets, n_jobs=1)
    for pt, row in zip(patterns, np.asarray(p)):
        q = bh_qvalues(row)
        order = np.argsort(row)[:top]
        pt.matches = [(f"{db[j].id} {db[j].name}", float(row[j]), float(q[j])) for j in order]


def write_tables(out: Path, patterns: list[Pattern], q_max: float = 0.05) -> None:
    lines = ["pattern\tn_seqlets\tconsensus\tmatch\tp_value\tq_value\tother_matches"]
    meme = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
            "Background letter frequencies", "A 0.25 C 0.25 G 0.25 T 0.25", ""]
    for pt in patterns:
        best = pt.matches[0] if pt.matches else ("", np.nan, np.nan)
        others = ", ".join(f"{m} (q={q:.2g})" for m, _, q in pt.matches[1:])
        lines.append(f"{pt.name}\t{pt.n_seqlets}\t{pt.consensus}\t{best[0]}\t{best[1]:.3g}\t{best[2]:.3g}\t{others}")
        label = best[0].split(" ", 1)[-1] + "-like" if best[0] and best[2] < q_max else pt.name
        meme += [f"MOTIF {pt.name} {label}",
                 f"letter-probability matrix: alength= 4 w= {len(pt.ppm)} nsites= {pt.n_seqlets} E= 0"]
        ppm = np.clip(pt.ppm, 0, None)
        ppm = ppm / np.maximum(ppm.sum(1, keepdims=True), 1e-12)
        meme += [" ".join(f"{v:.6f}" for v in row) for row in ppm] + [""]
    (out / "patterns.tsv").write_text("\n".join(lines) + "\n")
    (out / "patterns.meme").write_text("\n".join(meme) + "\n")


def write_report(out: Path, h5: Path, meme: str | Path, n_patterns: int) -> Path:
    """modisco-lite's descriptive report with memelite TOMTOM (offline, images inline)."""
    report = out / "report"
    report.mkdir(exist_ok=True)
    if n_patterns == 0:  # modisco-lite's report needs at least one pattern
        path = report / "report.html"
        path.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>veff motifs</title>"
                        "</head><body><h1>TF-MoDISco</h1><p>No patterns were found "
                        "(too few seqlets passed modisco-lite's thresholds).</p></body></html>\n")
        return path
    from modiscolite.descriptive_report import generate_descriptive_report

    import matplotlib

    matplotlib.use("Agg")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generate_descriptive_report(str(h5), str(report), img_path_suffix="./",
                                    meme_motif_db=str(meme), top_n_matches=3, ttl=True)
    return report / "report.html"


def run_motifs(store: str, out: str, *, meme: str | None = None, params: ModiscoParams | None = None,
               report: bool = True, verbose: bool = False) -> list[Pattern]:
    import modiscolite  # noqa: F401  (fail early, with the extra's name, when it is missing)
    import memelite  # noqa: F401

    params = params or ModiscoParams()
    for knob in ("max_seqlets", "n_leiden", "window"):
        if getattr(params, knob) < 1:
            raise ValueError(f"--{knob.replace('_', '-')} must be >= 1, got {getattr(params, knob)}")
    meme = meme or str(DEFAULT_MEME)
    read_meme(meme)  # a bad database fails before the long run
    onehot, hyp = store_arrays(store)
    if len(onehot) == 0:
        raise ValueError(f"{store}: no attributed windows")
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    write_inputs(d, onehot, hyp)
    h5 = d / "modisco_results.h5"
    n = run_modisco(onehot, hyp, h5, params, verbose=verbose)
    patterns = read_patterns(h5)
    annotate(patterns, meme)
    write_tables(d, patterns)
    if report:
        write_report(d, h5, meme, n)
    return patterns
