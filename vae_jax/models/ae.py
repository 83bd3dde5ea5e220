"""The deterministic autoencoder (`model.name = "ae"`): z = f(x), trained on reconstruction.

It has no q(z|x) and no p(z), so no likelihood p(x), no KL and no prior samples of its own
(`latents.prior_samples` decodes a Gaussian fitted to its training codes instead).
"""

from __future__ import annotations

import jax.numpy as jnp

from vae_jax.models.base import Family


class AE(Family):
  """z = f(x), decoded by p(x|z); the encoder emits z itself."""

  name = "ae"
  title = "AE"
  stochastic = False

  def encode(self, x_BxHxWxC):
    """(z_BxZ, None): the code, in float32; no posterior variance."""
    return self.encoder(x_BxHxWxC).astype(jnp.float32), None

  def log_weight_terms(self, q, x_target, eps_SxBxE):
    raise ValueError("an AE has no q(z|x) or p(z): it defines no importance weights")

  def sample_prior(self, key, n: int):
    raise ValueError("an AE has no prior p(z) (latents.prior_samples fits one to its codes)")
