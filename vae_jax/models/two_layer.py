"""The VAE with two stochastic layers (`model.name = "two_layer_vae"`; Burda et al., 2016):
q(z1|x) q(z2|z1) for inference and p(z2) = N(0, I), p(z1|z2), p(x|z1) for generation, with
MLPs of `model.top_hidden_sizes` between z1 (`model.latent_dim` units, the layer the decoder
reads, so every tool that encodes or decodes sees z1) and z2 (`model.top_latent_dim`) in both
directions. MLP only.

Its p(z1|z2) makes the KL of z1 have no closed form: its ELBO uses the Monte Carlo log weights,
and free bits and the disentangling objectives (which need N(0, I) over z) refuse it.

`model.name = "vae"` with `model.stochastic_layers = 2` is the older spelling of this family
(runs saved before the family table): `models.family_name` maps it here, and messages about it
name the field the config used (`spelling`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from vae_jax import checks
from vae_jax.models import gaussian, layers
from vae_jax.models.base import Family

NAME = "two_layer_vae"


def legacy_spelling(model_config) -> bool:
  """Whether `config.model` names this family as model.name="vae", model.stochastic_layers=2."""
  return model_config.name == "vae" and model_config.get("stochastic_layers", 1) == 2


def spelling(model_config) -> tuple[str, Any]:
  """The config field, and its value, that chose this family (for one-line messages)."""
  if legacy_spelling(model_config):
    return "model.stochastic_layers", 2
  return "model.name", model_config.name


class TwoLayerVAE(Family):
  """z1 under p(z1|z2) p(z2), inferred by q(z1|x) q(z2|z1); the decoder reads z1."""

  name = NAME
  title = "two-layer VAE"
  latent_layers = 2

  def __init__(self, *, top_latent_dim: int, top_hidden_sizes: Sequence[int] = (), rngs,
               dtype: str = "float32", **shared):
    super().__init__(rngs=rngs, dtype=dtype, **shared)
    self.top_latent_dim = top_latent_dim
    # eps[..., :latent_dim] draws z1, the rest z2.
    self.noise_dim = self.latent_dim + top_latent_dim
    activation, compute = shared["activation"], layers.DTYPES[dtype]
    # Built after the encoder and decoder, so those draw their initial parameters from the
    # init key exactly as a one-layer VAE's do.
    self.top_encoder = layers.MLP([self.latent_dim, *top_hidden_sizes, 2 * top_latent_dim],
                                  activation, rngs=rngs, dtype=compute)
    self.top_decoder = layers.MLP(
        [top_latent_dim, *reversed(tuple(top_hidden_sizes)), 2 * self.latent_dim], activation,
        rngs=rngs, dtype=compute)

  @classmethod
  def config_kwargs(cls, model_config) -> dict[str, Any]:
    return {**super().config_kwargs(model_config), "top_latent_dim": model_config.top_latent_dim,
            "top_hidden_sizes": tuple(model_config.top_hidden_sizes)}

  @classmethod
  def noise_dim_of(cls, model_config) -> int:
    return model_config.latent_dim + model_config.top_latent_dim

  @classmethod
  def check_fields(cls, config) -> None:
    checks.integer(config, "model.stochastic_layers", 1)
    layers_ = config.model.stochastic_layers
    if layers_ > 2:
      checks.fail("model.stochastic_layers", layers_, "1 or 2")
    if layers_ == 2 and config.model.name not in ("vae", NAME):
      checks.fail("model.stochastic_layers", 2, f"1 with model.name={config.model.name!r} "
                  f"(stacked latent layers are stochastic: use model.name={NAME!r})")
    checks.integer(config, "model.top_latent_dim", 1)
    checks.positive_ints(config, "model.top_hidden_sizes", "(100, 100) or ()")

  @classmethod
  def validate(cls, config) -> None:
    if config.model.architecture != "mlp":
      field, value = spelling(config.model)
      checks.fail(field, value, f"{'1' if field.endswith('layers') else repr('vae')} with "
                  f"model.architecture={config.model.architecture!r} (two stochastic layers "
                  "are MLP-only)")

  def encode_top(self, z1_SxBxZ):
    """q(z2|z1): (mean, logvar), each (..., top_latent_dim)."""
    mean, logvar = jnp.split(self.top_encoder(z1_SxBxZ).astype(jnp.float32), 2, axis=-1)
    return mean, logvar

  def prior_z1(self, z2_SxBxT):
    """p(z1|z2): (mean, logvar), each (..., latent_dim)."""
    mean, logvar = jnp.split(self.top_decoder(z2_SxBxT).astype(jnp.float32), 2, axis=-1)
    return mean, logvar

  def log_weight_terms(self, q, x_target, eps_SxBxE):
    """With z = (z1, z2): log p(z) = log p(z2) + log p(z1|z2) and log q(z|x) = log q(z1|x) +
    log q(z2|z1)."""
    mean1, logvar1 = q
    z1_dim = mean1.shape[-1]
    eps1 = eps_SxBxE[..., :z1_dim]
    z1 = gaussian.reparameterize(mean1, logvar1, eps1)
    log_q = gaussian.log_q_of_eps(eps1, logvar1)
    # q(z2|z1) takes each sample of z1, so its parameters are per sample: (S, B, T).
    mean2, logvar2 = self.encode_top(z1)
    eps2 = eps_SxBxE[..., z1_dim:]
    z2 = gaussian.reparameterize(mean2, logvar2, eps2)
    log_q = log_q + gaussian.log_q_of_eps(eps2, logvar2)
    prior_mean1, prior_logvar1 = self.prior_z1(z2)
    log_prior = (gaussian.standard_normal_log_prob(z2)
                 + gaussian.normal_log_prob(z1, prior_mean1, prior_logvar1))
    return self.log_likelihood(x_target, z1), log_prior, log_q

  def sample_prior(self, key, n: int):
    """Ancestrally: z2 ~ N(0, I), then z1 ~ p(z1|z2)."""
    key_z2, key_z1 = jax.random.split(key)
    mean, logvar = self.prior_z1(jax.random.normal(key_z2, (n, self.top_latent_dim)))
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key_z1, mean.shape)

  def deeper_posterior_means(self, q, key):
    """{"top": the mean of q(z2|z1)} at one sample of z1 (as Burda et al. count z2's units)."""
    mean, logvar = q
    z1 = gaussian.reparameterize(mean, logvar, jax.random.normal(key, mean.shape))
    return {"top": self.encode_top(z1)[0]}

  @property
  def prior_description(self) -> str:
    return "p(z1|z2) p(z2)"
