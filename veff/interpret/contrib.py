"""Contribution scores: DeepLIFT/DeepSHAP (rescale rule), integrated gradients, input × gradient.

A *target* is a scalar function of a one-hot window, ``f: (B, L, 4) -> (B,)``:

* profile models (BPNet/chromBPNet; the accessibility model of a chromBPNet checkpoint, the
  bias-corrected model chromBPNet interprets): ``counts`` = predicted log total count;
  ``profile`` = ``Σ_j l'_j softmax(l')_j`` with ``l' = l - mean(l)`` the centred profile
  logits (bpnet-lite's ProfileWrapper).
* binned models (Enformer/Borzoi): ``track:NAME,…`` = the sum of the named tracks over the
  centre output bin(s) (ixg and ig only).

For a baseline ``r`` and multipliers ``m`` (∂f along the method's path), the hypothetical
contribution of base b at position i is ``h_ib = m_ib - Σ_c r_ic m_ic`` (averaged over
baselines), the actual contribution ``x_ib h_ib``. DeepLIFT's ``m`` is the gradient of the
stacked batch ``[x; r]`` with the rules of veff.interpret.rules; IG's is the Gauss–Legendre
average of ∇f on the straight path from r to x; input × gradient is ∇f(x) with r = 0.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.interpret import rules

METHODS = ("deeplift", "ig", "ixg")
Target = Callable[[jax.Array], jax.Array]


# ---------------------------------------------------------------------------- targets
def bpnet_target(config, params, head: str, *, deeplift: bool,
                 precision=lax.Precision.HIGHEST) -> Target:
    """f(x) for a single BPNet (veff.models.bpnet layout) with swappable nonlinearities."""
    from veff.models import bpnet

    act = rules.relu if deeplift else rules.plain_relu
    smax = rules.softmax if deeplift else rules.plain_softmax
    if head not in ("counts", "profile"):
        raise ValueError(f"--head must be counts or profile for a profile model, got {head!r}")

    def f(x):
        x = x.astype(params[bpnet.STEM]["kernel"].dtype)
        h = act(bpnet._conv(x, params[bpnet.STEM], 1, precision))
        for i in config._dilations():
            d = 2**i
            c = act(bpnet._conv(h, params[bpnet.dilated_name(i)], d, precision))
            h = h[:, d : h.shape[1] - d] + c
        if head == "counts":
            pooled = jnp.mean(h, axis=1)
            return (jnp.matmul(pooled, params[bpnet.COUNT]["kernel"], precision=precision)
                    + params[bpnet.COUNT]["bias"])[:, 0]
        prof = bpnet._conv(h, params[bpnet.PROFILE], 1, precision)[..., 0]
        logits = prof[:, config.profile_crop : config.profile_crop + config.output_len]
        logits = logits - jnp.mean(logits, axis=-1, keepdims=True)
        return jnp.sum(logits * smax(logits), axis=-1)

    return f


def binned_target(handle, track_idx: tuple[int, ...], centre_bins: int = 1) -> Target:
    """Sum of the chosen tracks over the ``centre_bins`` output bins around the centre."""
    P = handle.output_len
    a = P // 2 - centre_bins // 2
    idx = jnp.asarray(track_idx, jnp.int32)

    def f(x):
        out = handle.apply(handle.params, x)["tracks"]
        return jnp.take(out[:, a : a + centre_bins], idx, axis=-1).sum(axis=(1, 2))

    return f


# ---------------------------------------------------------------------------- methods
def project(mult: jax.Array, ref: jax.Array) -> jax.Array:
    """Hypothetical contributions (…, L, 4): m_b - Σ_c r_c m_c at every position."""
    return mult - jnp.sum(mult * ref, axis=-1, keepdims=True)


def deeplift_multipliers(f: Target, x: jax.Array, refs: jax.Array) -> jax.Array:
    """(n, L, 4) examples and their (n, L, 4) references -> rescale-rule multipliers."""

    def total(xx):
        return jnp.sum(f(jnp.concatenate([xx, refs])))

    return jax.grad(total)(x)


def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes on [0, 1] and weights summing to 1 (captum's "gausslegendre")."""
    t, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (t + 1.0), 0.5 * w


def ig_multipliers(f: Target, x: jax.Array, refs: jax.Array, steps: int) -> jax.Array:
    alphas, weights = gauss_legendre(steps)
    grad = jax.grad(lambda z: jnp.sum(f(z)))

    def body(acc, aw):
        a, w = aw
        return acc + w * grad(refs + a * (x - refs)), None

    acc, _ = lax.scan(body, jnp.zeros_like(x), (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype)))
    return acc


@dataclasses.dataclass
class Attributor:
    """Hypothetical contributions of one target; ``baselines`` per example: (N, S, L, 4)."""

    f_plain: Target
    f_deeplift: Target | None
    method: str = "deeplift"
    ig_steps: int = 50
    batch_pairs: int = 64

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method == "deeplift" and self.f_deeplift is None:
            raise ValueError("DeepLIFT needs rules for every nonlinearity of the model; "
                             "use --method ig or ixg for this model")
        f_dl, f, steps = self.f_deeplift, self.f_plain, self.ig_steps
        if self.method == "deeplift":
            self._mult = jax.jit(lambda x, r: deeplift_multipliers(f_dl, x, r))
        elif self.method == "ig":
            self._mult = jax.jit(lambda x, r: ig_multipliers(f, x, r, steps))
        else:
            self._mult = jax.jit(jax.grad(lambda x, r: jnp.sum(f(x))))
        self._f = jax.jit(f)

    def hypothetical(self, x: np.ndarray, baselines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (N, L, 4), baselines (N, S, L, 4) -> (hypothetical (N, L, 4) mean over S,
        convergence delta (N, S): f(x) - f(r) - Σ (x - r) m)."""
        x = np.asarray(x, np.float32)
        N, S = baselines.shape[:2]
        if self.method == "ixg":
            baselines = np.zeros_like(baselines[:, :1])
            S = 1
        pairs_x = np.repeat(x, S, axis=0)
        pairs_r = baselines.reshape(N * S, *x.shape[1:]).astype(np.float32)
        hyp = np.zeros((N * S, *x.shape[1:]), np.float32)
        delta = np.zeros(N * S, np.float32)
        bs = self.batch_pairs
        for s in range(0, N * S, bs):
            xb, rb = pairs_x[s : s + bs], pairs_r[s : s + bs]
            m = len(xb)
            if m < bs and N * S > bs:
                pad = bs - m
                xb = np.concatenate([xb, np.repeat(xb[-1:], pad, 0)])
                rb = np.concatenate([rb, np.repeat(rb[-1:], pad, 0)])
            mult = self._mult(jnp.asarray(xb), jnp.asarray(rb))
            hyp[s : s + m] = np.asarray(project(mult, jnp.asarray(rb)))[:m]
            diff = np.asarray(self._f(jnp.asarray(xb)) - self._f(jnp.asarray(rb)))[:m]
            delta[s : s + m] = diff - np.asarray(jnp.sum((jnp.asarray(xb) - rb) * mult, axis=(1, 2)))[:m]
        return hyp.reshape(N, S, *x.shape[1:]).mean(axis=1), delta.reshape(N, S)


# ---------------------------------------------------------------------------- baselines
def make_baselines(tokens: np.ndarray, spec: str, seed: int) -> np.ndarray:
    """(N, L) tokens -> (N, S, L, 4) one-hot baselines: ``shuffle:S`` (dinucleotide
    shuffles, veff.scoring.nulls; the k-th of every example drawn in example order from
    RandomState(seed + k)),
    ``zeros``, or a ``.npz`` holding ``baselines`` of that shape."""
    from veff.io.windows import one_hot
    from veff.scoring.nulls import dinuc_shuffle

    N, L = tokens.shape
    if spec == "zeros":
        return np.zeros((N, 1, L, 4), np.float32)
    if spec.startswith("shuffle:"):
        try:
            S = int(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"--baseline shuffle:N needs an integer N, got {spec!r}") from None
        if S < 1:
            raise ValueError("--baseline shuffle:N needs N >= 1")
        out = np.empty((N, S, L), np.uint8)
        for k in range(S):
            rng = np.random.RandomState(seed + k)
            for i in range(N):
                out[i, k] = dinuc_shuffle(tokens[i], rng)
        return one_hot(out).astype(np.float32)
    if spec.endswith(".npz"):
        with np.load(spec) as z:
            if "baselines" not in z:
                raise ValueError(f"{spec}: no array named 'baselines'")
            b = np.asarray(z["baselines"], np.float32)
        if b.ndim != 4 or b.shape[0] != N or b.shape[2:] != (L, 4):
            raise ValueError(f"{spec}: baselines of shape {b.shape}, expected ({N}, S, {L}, 4)")
        return b
    raise ValueError(f"--baseline must be shuffle:N, zeros or FILE.npz, got {spec!r}")
