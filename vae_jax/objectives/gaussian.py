"""Densities and identities of diagonal Gaussians that every objective shares.

Shapes: B images, Z latent units, S samples per image; all sums are in nats.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# The densities of the families' posteriors and priors are the models' (`models/gaussian.py`);
# the objectives use the same functions.
from vae_jax.models.gaussian import (gaussian_kl, log_q_of_eps, normal_log_prob,  # noqa: F401
                                     reparameterize, standard_normal_log_prob)


def kl_weight(beta, kl_warmup_steps, step):
  """beta, scaled linearly from 0 over the first `kl_warmup_steps` steps (0 = no warm-up)."""
  warm = jnp.where(kl_warmup_steps > 0,
                   jnp.minimum(1.0, step / jnp.maximum(kl_warmup_steps, 1)), 1.0)
  return beta * warm


def log_mean_exp(a, axis=0):
  """log (1/n) sum exp(a) along `axis`, stable for any scale of a."""
  return jax.nn.logsumexp(a, axis=axis) - math.log(a.shape[axis])
