"""A strong, strand-symmetric Tn5 insertion bias: a log-linear K-mer weight model.

log b(x) = sum_j W[j, s[x - K//2 + j]]   (K-mer centred on the cut base x)
b is normalised so that its genome-wide mean over valid bases is 1; windows leaving the contig or
touching N have b = 0. The consensus is not fitted to data: it is a palindromic, GC-rich-centred
pattern in the spirit of the published Tn5 insertion preference (G-T-...-A-C ends).
"""

from __future__ import annotations

import dataclasses

import numpy as np


_IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "S": "CG", "W": "AT", "Y": "CT", "R": "AG"}
_IUPAC.update(N="ACGT")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tn5BiasModel:
    """K-mer bias weights; ``strengths[j]`` is the log-weight of a preferred base at offset j."""

    consensus: str = "GTYSGSCSRAC"
    strengths: tuple[float, ...] = (0.45, 0.65, 0.45, 0.65, 0.85, 0.45, 0.85, 0.65, 0.45, 0.65, 0.45)
    scale: float = 1.0

    def __post_init__(self) -> None:
        if len(self.consensus) != len(self.strengths) or len(self.consensus) % 2 == 0:
            raise ValueError("Tn5 consensus and strengths must have the same odd length")
        if any(c not in _IUPAC for c in self.consensus):
            raise ValueError(f"Tn5 consensus has a non-IUPAC letter: {self.consensus}")

    def best_kmer(self) -> np.ndarray:
        """Tokens of the highest-bias K-mer (first allowed base at degenerate positions)."""
        return np.array([("ACGT").index(_IUPAC[c][0]) for c in self.consensus], dtype=np.uint8)

    def sample_kmers(self, rng: np.random.Generator, num: int) -> np.ndarray:
        """(num, K) tokens matching the IUPAC consensus, degenerate letters drawn uniformly:
        strong, but not identical, insertion sites."""
        choices = [np.array([("ACGT").index(b) for b in _IUPAC[c]]) for c in self.consensus]
        cols = [ch[rng.integers(ch.size, size=num)] for ch in choices]
        return np.stack(cols, axis=1).astype(np.uint8) if num else np.zeros((0, self.k), np.uint8)

    @property
    def k(self) -> int:
        return len(self.consensus)

    def log_weights(self) -> np.ndarray:
        """(K, 4) log-weights, zero-mean per row, exactly reverse-complement symmetric."""
        w = np.zeros((self.k, 4))
        for j, (letter, a) in enumerate(zip(self.consensus, self.strengths)):
            allowed = [("ACGT").index(b) for b in _IUPAC[letter]]
            if len(allowed) == 4:
                continue
            w[j] = -a * len(allowed) / (4 - len(allowed))
            w[j, allowed] = a
        # symmetric under reverse complement, so + and - strand insertions look alike
        w = 0.5 * (w + w[::-1, ::-1])
        return self.scale * w


def log_bias(tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unnormalised log b(x) for every base, (L,) float64; -inf where the K-mer is incomplete."""
    k = weights.shape[0]
    half = k // 2
    length = tokens.shape[0]
    out = np.full(length, -np.inf)
    n = length - k + 1
    if n <= 0:
        return out
    padded = np.concatenate([weights, np.full((k, 1), -np.inf)], axis=1)
    acc = np.zeros(n)
    for j in range(k):
        acc += padded[j][tokens[j : j + n]]
    out[half : half + n] = acc
    return out


def normaliser(log_b_per_contig: list[np.ndarray]) -> float:
    """log of the genome-wide mean of exp(log b) over valid bases (subtract it to get mean 1)."""
    total = sum(float(np.exp(lb[np.isfinite(lb)]).sum()) for lb in log_b_per_contig)
    count = sum(int(np.isfinite(lb).sum()) for lb in log_b_per_contig)
    return float(np.log(total / count))


