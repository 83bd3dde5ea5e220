"""The VAE (`model.name = "vae"`; Kingma & Welling, 2014): one stochastic layer,
q(z|x) = N(mean(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x|z) the decoder.

Its KL(q(z|x) || p(z)) is analytic per dimension, so the ELBO's one-sample path, free bits,
the disentangling objectives and the KL decomposition's dimension-wise term are defined for it.
"""

from __future__ import annotations

import jax

from vae_jax.models import gaussian
from vae_jax.models.base import Family


class VAE(Family):
  """One Gaussian latent layer under a standard normal prior."""

  name = "vae"
  title = "VAE"
  standard_normal_prior = True

  def log_weight_terms(self, q, x_target, eps_SxBxE):
    mean, logvar = q
    z = gaussian.reparameterize(mean, logvar, eps_SxBxE)
    return (self.log_likelihood(x_target, z), gaussian.standard_normal_log_prob(z),
            gaussian.log_q_of_eps(eps_SxBxE, logvar))

  def kl_per_dim(self, q):
    return gaussian.gaussian_kl(*q)

  def sample_prior(self, key, n: int):
    return jax.random.normal(key, (n, self.latent_dim))

  @property
  def prior_description(self) -> str:
    return "N(0, I)"
