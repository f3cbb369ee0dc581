"""Real JASPAR position weight matrices: MEME parsing, log-odds and strand-aware scanning.

Tokens follow veff.types (A=0 C=1 G=2 T=3 N=4). A log-odds matrix is (W, 4) in nats; any window
touching N scores -inf so no site ever overlaps an N run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

DEFAULT_MEME = Path(__file__).resolve().parents[1] / "data" / "jaspar_core_subset.meme"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Motif:
    """One MEME motif: ``probs`` is (W, 4) letter probabilities, rows summing to 1."""

    id: str
    name: str
    probs: np.ndarray

    @property
    def width(self) -> int:
        return int(self.probs.shape[0])


def read_meme(path: str | Path = DEFAULT_MEME) -> tuple[Motif, ...]:
    """Parse the letter-probability matrices of a MEME (version 4) text file."""
    lines = Path(path).read_text().splitlines()
    motifs: list[Motif] = []
    i = 0
    while i < len(lines):
        parts = lines[i].split()
        if parts[:1] == ["MOTIF"]:
            motif_id = parts[1]
            name = parts[2] if len(parts) > 2 else parts[1]
            j = i + 1
            while not lines[j].startswith("letter-probability matrix"):
                j += 1
            fields = lines[j].replace("=", " = ").split()
            width = int(fields[fields.index("w") + 2])
            rows = [list(map(float, lines[j + 1 + k].split())) for k in range(width)]
            probs = np.asarray(rows, dtype=np.float64)
            if probs.shape != (width, 4):
                raise ValueError(f"{path}: motif {motif_id} is not a (w, 4) matrix")
            # the file keeps 6 decimals; renormalise so sampling sees exact distributions
            motifs.append(Motif(id=motif_id, name=name, probs=probs / probs.sum(1, keepdims=True)))
            i = j + width
        i += 1
    if not motifs:
        raise ValueError(f"{path}: no MOTIF entries")
    return tuple(motifs)


def log_odds(probs: np.ndarray, background: np.ndarray, pseudocount: float) -> np.ndarray:
    """(W, 4) log-odds in nats: log(((p + e) / (1 + 4e)) / background)."""
    smoothed = (probs + pseudocount) / (1.0 + 4.0 * pseudocount)
    return np.log(smoothed / background[None, :])


def reverse_complement_matrix(matrix: np.ndarray) -> np.ndarray:
    """Rows reversed, columns A,C,G,T -> T,G,C,A: the matrix read on the minus strand."""
    return matrix[::-1, ::-1]


def scan(tokens: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Score of every window start on the + strand: (L - W + 1,) float64, -inf over N."""
    width = lo.shape[0]
    n = tokens.shape[0] - width + 1
    if n <= 0:
        return np.zeros(0)
    padded = np.concatenate([lo, np.full((width, 1), -np.inf)], axis=1)  # column 4 is N
    scores = np.zeros(n)
    for j in range(width):
        scores += padded[j][tokens[j : j + n]]
    return scores


def site_score(tokens: np.ndarray, lo: np.ndarray, start0: int, strand: str) -> float:
    """Log-odds of one window; strand '-' reads it with the reverse-complement matrix."""
    matrix = lo if strand == "+" else reverse_complement_matrix(lo)
    return float(scan(tokens[start0 : start0 + lo.shape[0]], matrix)[0])


def most_informative_column(probs: np.ndarray) -> int:
    """Column with the highest information content (bits, uniform background)."""
    ic = (probs * np.log2(np.maximum(probs, 1e-12) / 0.25)).sum(axis=1)
    return int(np.argmax(ic))
