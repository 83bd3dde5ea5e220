"""Decoder likelihoods p(x|z), by name (`config.model.likelihood`) from one table: `LIKELIHOODS`.

The decoder emits one array `out_BxHxWxC` per image: Bernoulli logits, or the location of a
Gaussian / Laplace density (squashed into [0, 1] by a sigmoid, the range of the pixels). The
scale of the continuous densities is one scalar `log_scale` (fixed or learned by the model).
Every NLL is an exact log-density summed over pixels, so numbers are comparable with papers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


def _flat(a):
  return a.reshape(a.shape[0], -1)


def _softplus(l):
  """log(1 + e^l) = max(l, 0) + log(1 + e^-|l|), stable for any l.

  Written with log(1 + t), t = e^-|l| in (0, 1], rather than log1p(t) (as in jax.nn.softplus):
  they differ by less than the float32 rounding of 1 + t (6e-8 nats per pixel), and XLA:CPU
  runs this form about twice as fast; it is the costliest elementwise op of a training step.
  """
  return jnp.maximum(l, 0.0) + jnp.log(1.0 + jnp.exp(-jnp.abs(l)))


def _bernoulli(out, log_scale, x):
  # -[x log sigmoid(l) + (1-x) log sigmoid(-l)] = softplus(l) - x l, stable for any l.
  del log_scale
  return jnp.sum(_softplus(out) - x * out, axis=-1)


def _gaussian(out, log_scale, x):
  loc = jax.nn.sigmoid(out)
  return jnp.sum(0.5 * jnp.square((x - loc) * jnp.exp(-log_scale)) + log_scale + 0.5 * _LOG_2PI,
                 axis=-1)


def _laplace(out, log_scale, x):
  loc = jax.nn.sigmoid(out)
  return jnp.sum(jnp.abs(x - loc) * jnp.exp(-log_scale) + log_scale + _LOG_2, axis=-1)


# name -> -log p(x | decoder output) on (B, pixels) arrays, summed over pixels: (B,).
LIKELIHOODS = {"bernoulli": _bernoulli, "gaussian": _gaussian, "laplace": _laplace}


def nll(likelihood: str, out, log_scale, x):
  """-log p(x | decoder output), summed over pixels: shape (B,)."""
  # Per-pixel work on (B, pixels): XLA:CPU vectorises an elementwise loop along the minor
  # dimension only, and images end in a channel axis of size 1 (MNIST: B x 28 x 28 x 1),
  # which made these loops ~10x slower.
  return LIKELIHOODS[likelihood](_flat(out), log_scale, _flat(x))


def mean(likelihood: str, out):
  """E[x | z] in [0, 1]: the image to show for a decoder output."""
  del likelihood  # sigmoid(logits) is the Bernoulli mean; sigmoid(out) the location otherwise.
  return jax.nn.sigmoid(out)
