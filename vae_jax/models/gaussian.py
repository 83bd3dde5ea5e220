"""Densities and identities of diagonal Gaussians, the families' posteriors and priors.

Shapes: B images, Z latent units, S samples per image; all sums are in nats. The objectives
use the same functions (`objectives.gaussian` re-exports them), so a family's log weights and
an objective's analytic KL are one computation.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

_LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mean_BxZ, logvar_BxZ):
  """KL(N(mean, diag(exp(logvar))) || N(0, I)) per latent dimension: shape (B, Z)."""
  return 0.5 * (jnp.exp(logvar_BxZ) + jnp.square(mean_BxZ) - 1.0 - logvar_BxZ)


def reparameterize(mean_BxZ, logvar_BxZ, eps_BxZ):
  """z = mean + sigma * eps, with eps ~ N(0, I) drawn by the caller from an explicit key."""
  return mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ


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
