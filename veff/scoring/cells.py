"""Per-cell variant statistics for kind "cells" models (scBasset): (B, C) scores.

The model's per-cell value is the logit WITHOUT the per-cell intercept, z . w_c (scBasset's
depth-normalised accessibility). ALT minus REF:

- ``logit_diff``: z_alt . w_c - z_ref . w_c. The intercept would cancel here anyway; it is
  left out so the value is the same number scBasset's normalised predictions give.
- ``prob_diff``: sigmoid(z_alt . w_c) - sigmoid(z_ref . w_c), the difference of depth-
  normalised accessibility probabilities (where leaving the intercept out matters).

With reverse complements the statistic is the mean of the forward and RC statistics.
Aggregation to cell groups (``group_means``) is the mean over each group's cells.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

STATS = {
    "logit_diff": "alt - ref of the per-cell logit without the intercept (z . w_c)",
    "prob_diff": "sigmoid(alt) - sigmoid(ref) of the per-cell logit without the intercept",
}
DEFAULT_STATS = ("logit_diff",)


def _stat(name: str, ref: jax.Array, alt: jax.Array) -> jax.Array:
    if name == "logit_diff":
        return alt - ref
    return jax.nn.sigmoid(alt) - jax.nn.sigmoid(ref)


def reducer(handle, options):
    """(stats, formulas, reduce) for engine.ModelScorer."""
    from veff.engine import ScoringError

    stats = list(options.stats) if options.stats is not None else list(DEFAULT_STATS)
    unknown = [s for s in stats if s not in STATS]
    if unknown:
        raise ScoringError(f"unknown statistic(s) {', '.join(unknown)} for model {handle.name}; "
                           f"choose from {', '.join(STATS)}")
    if options.untransform is not None:
        raise ScoringError(f"{handle.name}: --untransform applies to Borzoi-style track models")

    def reduce(parts: list[dict], ref_len, alt_len, shift, peaks, genes=None) -> dict[str, Any]:
        cells = [p["tracks"][:, 0, :] for p in parts]  # (B, C) each
        pairs = [(cells[0], cells[1])] + ([(cells[2], cells[3])] if len(cells) == 4 else [])
        return {s: sum(_stat(s, r, a) for r, a in pairs) / len(pairs) for s in stats}

    return stats, {s: STATS[s] for s in stats}, reduce


def read_groups(path: str, cells: list[str]) -> tuple[list[str], np.ndarray]:
    """A TSV of ``cell<TAB>label`` (a header line ``cell label`` is allowed) -> (group labels in
    first-seen order, (C,) group index per model cell, -1 for cells the table leaves out)."""
    from veff.engine import ScoringError

    try:
        lines = [ln.rstrip("\n\r") for ln in open(path, encoding="utf-8")]
    except (OSError, UnicodeDecodeError) as e:
        raise ScoringError(f"{path}: cannot read the cell groups ({e})") from None
    label_of: dict[str, str] = {}
    for i, ln in enumerate(lines, 1):
        if not ln.strip() or ln.startswith("#"):
            continue
        parts = ln.split("\t")
        if len(parts) < 2 or not parts[1].strip():
            raise ScoringError(f"{path}:{i}: expected 'cell<TAB>label'")
        if i == 1 and parts[0].strip().lower() in ("cell", "barcode", "obs_names"):
            continue
        cell, label = parts[0].strip(), parts[1].strip()
        if label_of.get(cell, label) != label:
            raise ScoringError(f"{path}:{i}: cell {cell!r} has two labels")
        label_of[cell] = label
    index = {c: i for i, c in enumerate(cells)}
    unknown = [c for c in label_of if c not in index]
    if not label_of or len(unknown) == len(label_of):
        raise ScoringError(f"{path}: none of its cells is a cell of the model")
    if unknown:
        raise ScoringError(f"{path}: {len(unknown)} cell(s) the model does not have, e.g. "
                           f"{unknown[0]!r}")
    groups = list(dict.fromkeys(label_of.values()))
    gi = {g: i for i, g in enumerate(groups)}
    assign = np.array([gi[label_of[c]] if c in label_of else -1 for c in cells], np.int64)
    return groups, assign


def group_means(scores: np.ndarray, assign: np.ndarray, num_groups: int) -> np.ndarray:
    """(V, C) per-cell scores -> (V, G) mean over each group's cells (NaN rows stay NaN)."""
    onehot = (assign[:, None] == np.arange(num_groups)[None, :]).astype(np.float64)
    counts = onehot.sum(axis=0)
    return (np.asarray(scores, np.float64) @ onehot / counts).astype(np.float32)
