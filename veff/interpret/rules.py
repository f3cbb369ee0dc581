"""DeepLIFT rescale rules as JAX custom gradients.

DeepLIFT runs the model once on a stacked batch ``[x; r]`` (every example followed, in the
second half, by its reference) and replaces the local gradient of each nonlinearity by a
secant between the two halves. Each rule here is a ``jax.custom_vjp`` whose forward is the
ordinary function on the stacked batch and whose backward reads the halves:

* ``relu`` (rescale rule): ``m = Δout / Δin`` with ``Δ = half0 - half1``, shared by both
  halves; where ``|Δin| < 1e-6`` the ordinary gradient is used instead (the threshold and
  the fallback are DeepLIFT's/captum's/tangermeme's).
* ``softmax`` along the last axis, decomposed as ``a = exp(x - c)``, ``s = Σ a``,
  ``v = 1 / s``, ``y = a v`` with each step's exact multiplier (DeepLIFT's rule for
  softmax, the chain tangermeme applies): with ``Δlog y = Δx + Δlog v``,
  ``r = Δy / Δlog y`` (fallback ``y_ref``), ``q = Δlog v / Δv`` (fallback ``1 / v_ref``),
  ``m_a = Δa / Δx`` (fallback ``a_ref``), the input multiplier is
  ``g_j r_j - m_a,j v v_ref Σ_i g_i r_i q``.

Shapes: any (2n, …); the two halves are split along axis 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-6


def _halves(z):
    n = z.shape[0] // 2
    return z[:n], z[n:]


@jax.custom_vjp
def relu(z):
    return jax.nn.relu(z)


def _relu_fwd(z):
    return jax.nn.relu(z), z


def _relu_bwd(z, g):
    zx, zr = _halves(z)
    d_in = zx - zr
    d_out = jax.nn.relu(zx) - jax.nn.relu(zr)
    safe = jnp.where(jnp.abs(d_in) < EPS, 1.0, d_in)
    ratio = jnp.concatenate([d_out / safe] * 2)
    small = jnp.concatenate([jnp.abs(d_in) < EPS] * 2)
    plain = g * (z > 0).astype(g.dtype)
    return (jnp.where(small, plain, g * ratio),)


relu.defvjp(_relu_fwd, _relu_bwd)


@jax.custom_vjp
def softmax(x):
    return jax.nn.softmax(x, axis=-1)


def _softmax_fwd(x):
    return jax.nn.softmax(x, axis=-1), x


def _softmax_bwd(x_all, g_all):
    x, x_ref = _halves(x_all)
    c = jnp.maximum(x.max(-1, keepdims=True), x_ref.max(-1, keepdims=True))
    a, a_ref = jnp.exp(x - c), jnp.exp(x_ref - c)
    tiny = jnp.finfo(x.dtype).tiny
    v = 1.0 / jnp.maximum(a.sum(-1, keepdims=True), tiny)
    v_ref = 1.0 / jnp.maximum(a_ref.sum(-1, keepdims=True), tiny)
    y, y_ref = a * v, a_ref * v_ref
    dx = x - x_ref
    m_a = jnp.where(jnp.abs(dx) > EPS, (a - a_ref) / jnp.where(jnp.abs(dx) > EPS, dx, 1.0), a_ref)
    dy, dv = y - y_ref, v - v_ref
    dlogv = jnp.log(v) - jnp.log(v_ref)
    dlogy = dx + dlogv
    r = jnp.where(jnp.abs(dlogy) > EPS, dy / jnp.where(jnp.abs(dlogy) > EPS, dlogy, 1.0), y_ref)
    q = jnp.where(jnp.abs(dv) > EPS, dlogv / jnp.where(jnp.abs(dv) > EPS, dv, 1.0), 1.0 / v_ref)
    g, g_ref = _halves(g_all)

    def back(gh):
        return gh * r - m_a * v * v_ref * jnp.sum(gh * r * q, -1, keepdims=True)

    return (jnp.concatenate([back(g), back(g_ref)]),)


softmax.defvjp(_softmax_fwd, _softmax_bwd)


def plain_relu(z):
    return jax.nn.relu(z)


def plain_softmax(x):
    return jax.nn.softmax(x, axis=-1)
