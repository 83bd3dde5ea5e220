"""The VAE with a VampPrior (`model.name = "vampprior_vae"`; Tomczak & Welling, 2018, "VAE with
a VampPrior", AISTATS, arXiv:1705.07120): one stochastic layer, q(z|x) = N(mean(x),
diag(exp(logvar(x)))) as in the VAE, under the prior

    p(z) = (1/K) sum_k q(z | u_k),

the "variational mixture of posteriors": the model's own encoder applied to K learned
pseudo-inputs u_k, images of the data's shape (K = `model.vampprior_components`, 500 in the
paper). The prior is trained with the rest of the model by the same ELBO and approximates the
aggregate posterior, which the standard normal prior only pulls towards.

Pseudo-inputs: u_k = sigmoid(w_k) with w_k (H, W, C) free parameters (`pseudo_input_logits`,
one row per component), so every u_k lies in (0, 1) like the images the encoder reads. The
paper's code produces them by a linear layer without bias from a K-dimensional one-hot input,
i.e. one free row per component, followed by a squashing nonlinearity (a hardtanh into [0, 1]
in its first version, a sigmoid for binary and grey images later), with the layer's weights
initialised N(-0.05, 0.01^2); here w ~ N(`vampprior_init_mean`, `vampprior_init_std`^2) with
those defaults. The sigmoid rather than the hardtanh: a hardtanh has no gradient outside
[0, 1], where that initialisation puts every w.

Its KL(q(z|x) || p(z)) has no closed form, so its ELBO, test -ELBO and IWAE use the Monte
Carlo log weights (log p(z) is a log-mean-exp over the K components, computed exactly), and
what needs a factorised N(0, I) prior (free bits, the disentangling objectives, the
KL decomposition's dimension-wise term) refuses it. Each call that scores log p(z) encodes the
K pseudo-inputs once: K extra images through the encoder per step (500 beside a batch of 100
in the paper's setting).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vae_jax import checks
from vae_jax.models import gaussian
from vae_jax.models.base import Family


class VampPriorVAE(Family):
  """One Gaussian latent layer under the mixture of its posteriors at K pseudo-inputs."""

  name = "vampprior_vae"
  title = "VampPrior VAE"

  def __init__(self, *, vampprior_components: int, vampprior_init_mean: float = -0.05,
               vampprior_init_std: float = 0.01, image_shape, rngs: nnx.Rngs, **shared):
    # The encoder and decoder first, from the init key as in every family.
    super().__init__(image_shape=image_shape, rngs=rngs, **shared)
    self.num_components = vampprior_components
    w = jax.random.normal(rngs.params(), (vampprior_components, *image_shape), jnp.float32)
    self.pseudo_input_logits = nnx.Param(vampprior_init_mean + vampprior_init_std * w)

  @classmethod
  def config_kwargs(cls, model_config) -> dict[str, Any]:
    m = model_config
    return {**super().config_kwargs(m), "vampprior_components": m.vampprior_components,
            "vampprior_init_mean": m.vampprior_init_mean,
            "vampprior_init_std": m.vampprior_init_std}

  @classmethod
  def check_fields(cls, config) -> None:
    checks.integer(config, "model.vampprior_components", 1)
    checks.number(config, "model.vampprior_init_mean")
    checks.number(config, "model.vampprior_init_std", 0.0)

  def pseudo_inputs(self):
    """The K pseudo-inputs u_k: (K, H, W, C) images in (0, 1)."""
    return jax.nn.sigmoid(self.pseudo_input_logits[...])

  def components(self):
    """(mean_KxZ, logvar_KxZ): q(z | u_k) of every pseudo-input, the prior's components."""
    return self.encode(self.pseudo_inputs())

  def log_prior(self, z_SxBxZ):
    """log p(z) = log (1/K) sum_k N(z; mean_k, diag(exp(logvar_k))): (S, B)."""
    mean_KxZ, logvar_KxZ = self.components()
    log_n_SxBxK = gaussian.normal_log_prob(z_SxBxZ[..., None, :], mean_KxZ, logvar_KxZ)
    return jax.nn.logsumexp(log_n_SxBxK, axis=-1) - math.log(self.num_components)

  def log_weight_terms(self, q, x_target, eps_SxBxE):
    mean, logvar = q
    z = gaussian.reparameterize(mean, logvar, eps_SxBxE)
    return (self.log_likelihood(x_target, z), self.log_prior(z),
            gaussian.log_q_of_eps(eps_SxBxE, logvar))

  def sample_prior(self, key, n: int):
    """A component k uniformly, then z ~ q(z | u_k)."""
    key_k, key_z = jax.random.split(key)
    k = jax.random.randint(key_k, (n,), 0, self.num_components)
    mean, logvar = self.components()
    return gaussian.reparameterize(mean[k], logvar[k],
                                   jax.random.normal(key_z, (n, self.latent_dim)))

  @property
  def prior_description(self) -> str:
    return f"VampPrior (mixture of q(z|u) at {self.num_components} pseudo-inputs)"
