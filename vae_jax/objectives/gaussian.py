"""Densities and identities of diagonal Gaussians that every objective shares.

Shapes: B images, Z latent units, S samples per image; all sums are in nats.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mean_BxZ, logvar_BxZ):
  """KL(N(mean, diag(exp(logvar))) || N(0, I)) per latent dimension: shape (B, Z)."""
  return 0.5 * (jnp.exp(logvar_BxZ) + jnp.square(mean_BxZ) - 1.0 - logvar_BxZ)


def reparameterize(mean_BxZ, logvar_BxZ, eps_BxZ):
  """z = mean + sigma * eps, with eps ~ N(0, I) drawn by the caller from an explicit key."""
  return mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ


def kl_weight(beta, kl_warmup_steps, step):
  """beta, scaled linearly from 0 over the first `kl_warmup_steps` steps (0 = no warm-up)."""
  warm = jnp.where(kl_warmup_steps > 0,
                   jnp.minimum(1.0, step / jnp.maximum(kl_warmup_steps, 1)), 1.0)
  return beta * warm


def standard_normal_log_prob(z_SxBxZ):
  """log N(z; 0, I) summed over the last axis."""
  return -0.5 * jnp.sum(jnp.square(z_SxBxZ) + _LOG_2PI, axis=-1)


def normal_log_prob(z_SxBxZ, mean_SxBxZ, logvar_SxBxZ):
  """log N(z; mean, diag(exp(logvar))) summed over the last axis."""
  return -0.5 * jnp.sum(jnp.square(z_SxBxZ - mean_SxBxZ) * jnp.exp(-logvar_SxBxZ) + logvar_SxBxZ
                        + _LOG_2PI, axis=-1)


def log_q_of_eps(eps_SxBxZ, logvar_BxZ):
  """log N(z; mean, diag(exp(logvar))) at z = mean + sigma * eps, computed from eps itself:
  (z - mean) / sigma = eps exactly, with no cancellation."""
  return -0.5 * jnp.sum(jnp.square(eps_SxBxZ) + logvar_BxZ + _LOG_2PI, axis=-1)


def log_mean_exp(a, axis=0):
  """log (1/n) sum exp(a) along `axis`, stable for any scale of a."""
  return jax.nn.logsumexp(a, axis=axis) - math.log(a.shape[axis])
