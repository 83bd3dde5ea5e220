"""FactorVAE (`config.objective = "factor_vae"`).

Kim & Mnih (2018), "Disentangling by Factorising" (ICML; arXiv:1802.05983): the ELBO plus γ
times the total correlation KL(q(z) || Π_j q(z_j)), estimated by the density-ratio trick. A
discriminator D (an MLP on z with two logits) learns to tell samples of q(z) (one z per image
of the batch) from samples of Π_j q(z_j) (the same batch with every dimension permuted
independently across the batch); at its optimum the logit difference is
log q(z) - log Π_j q(z_j), so

    TC ≈ mean_batch [ logit_0(z) - logit_1(z) ],   loss = rec + KL + γ TC,
    discriminator loss = -1/2 mean [ log softmax(D(z))_0 ] - 1/2 mean [ log softmax(D(z_perm))_1 ].

As in disentanglement_lib, both use the batch the VAE trains on, and the discriminator is a
second module (`model.discriminator`: 6 layers of 1,000 leaky-ReLU units by default,
`factor_vae.discriminator_sizes`) trained in the same step with its own Adam (β1 0.5, β2 0.9,
learning rate `factor_vae.discriminator_learning_rate`, no schedule): the step's one gradient
is that of VAE loss + discriminator loss, where the VAE loss sees the discriminator's parameters
through `stop_gradient` and the discriminator loss sees z through `stop_gradient`, so each part
gets exactly its own gradient. The discriminator lives in the model's parameters, so it is
checkpointed, resumed and vectorised like the rest. The permutation is drawn from the step's
objective key (`rng.objective_key`) over the global batch (gathered across devices), so results
do not depend on the number of devices.

Fields, `config.factor_vae` (`config_fields`): `gamma`, `discriminator_learning_rate` (per
member) and `discriminator_sizes` (shapes: the same within a group). `beta` must stay 1. Metrics:
loss (the VAE's), rec, kl, neg_elbo, `total_correlation` (the estimate), `discriminator_loss`
and `discriminator_accuracy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import config_dict

from vae_jax import checks
from vae_jax.models import layers
from vae_jax.objectives import common

SECTION = "factor_vae"  # its fields are config.factor_vae.*
HPARAMS = ("factor_vae.gamma", "factor_vae.discriminator_learning_rate")
DISCRIMINATOR_ADAM = {"b1": 0.5, "b2": 0.9, "eps": 1e-8}  # disentanglement_lib's discriminator Adam


def config_fields() -> config_dict.ConfigDict:
  """`config.factor_vae`: the objective's fields at their defaults (disentanglement_lib's
  discriminator and step size; γ its smallest study value)."""
  c = config_dict.ConfigDict()
  c.gamma = 10.0  # Weight of the discriminator's total-correlation estimate.
  c.discriminator_learning_rate = 1e-4  # The discriminator's Adam step size (no schedule).
  c.discriminator_sizes = (1000,) * 6  # The discriminator's hidden widths.
  return c


def tc_estimate(logits_Bx2):
  """The density-ratio estimate of the total correlation: mean[logit_0 - logit_1]."""
  return jnp.mean(logits_Bx2[:, 0] - logits_Bx2[:, 1])


def discriminator_loss(logits_real_Bx2, logits_perm_Bx2):
  """Cross-entropy of class 0 for samples of q(z), class 1 for permuted ones (mean of both)."""
  return -0.5 * (jnp.mean(jax.nn.log_softmax(logits_real_Bx2)[:, 0])
                 + jnp.mean(jax.nn.log_softmax(logits_perm_Bx2)[:, 1]))


def permute_dims(z_BxZ, key, axis_name: str | None = None):
  """Every dimension of z permuted independently across the batch: samples of Π_j q(z_j).

  With `axis_name` (inside shard_map) the permutation is of the global batch: every device
  gathers all z, permutes them with the same key and keeps its own slice."""
  if axis_name is not None:
    local = z_BxZ.shape[0]
    z_all = jax.lax.all_gather(z_BxZ, axis_name, tiled=True)
    perm = permute_dims(z_all, key)
    return jax.lax.dynamic_slice_in_dim(perm, jax.lax.axis_index(axis_name) * local, local)
  keys = jax.random.split(key, z_BxZ.shape[1])
  cols = jax.vmap(lambda k, c: jax.random.permutation(k, c), in_axes=(0, 1), out_axes=1)
  return cols(keys, z_BxZ)


def loss(model, x_in, x_target, eps, hparams, ctx):
  """(VAE loss + discriminator loss, metrics) of one batch; see the module docstring."""
  mean, logvar, z, rec, kl_per_dim = common.one_sample_terms(model, x_in, x_target, eps)
  kl = jnp.sum(kl_per_dim)
  graph, state = nnx.split(model.discriminator)
  frozen = nnx.merge(graph, jax.lax.stop_gradient(state))
  tc = tc_estimate(frozen(z).astype(jnp.float32))
  vae_loss = rec + kl + hparams["factor_vae.gamma"] * tc
  z_fixed = jax.lax.stop_gradient(z)
  real = model.discriminator(z_fixed).astype(jnp.float32)
  perm = model.discriminator(permute_dims(z_fixed, ctx.key, ctx.axis_name)).astype(jnp.float32)
  d_loss = discriminator_loss(real, perm)
  accuracy = 0.5 * (jnp.mean(real[:, 0] > real[:, 1]) + jnp.mean(perm[:, 1] > perm[:, 0]))
  metrics = {"loss": vae_loss, "rec": rec, "kl": kl, "neg_elbo": rec + kl,
             "total_correlation": tc, "discriminator_loss": d_loss,
             "discriminator_accuracy": accuracy}
  return vae_loss + d_loss, metrics


def check_fields(config) -> None:
  checks.number(config, "factor_vae.gamma", 0.0)
  checks.number(config, "factor_vae.discriminator_learning_rate", 0.0, lo_open=True)
  checks.positive_ints(config, "factor_vae.discriminator_sizes", "(1000,) * 6",
                       allow_empty=False)


def validate(config) -> None:
  """A one-layer VAE, one sample, a batch of >= 2 images (to permute), γ instead of β."""
  common.require_one_sample_vae(config, min_batch=2)
  common.refuse_elbo_knobs(config, "factor_vae.gamma")


def discriminator(config, dtype, rngs) -> nnx.Module:
  """The discriminator module of a FactorVAE: z (latent_dim) -> hidden layers -> 2 logits."""
  sizes = [config.model.latent_dim, *config.factor_vae.discriminator_sizes, 2]
  return layers.MLP(sizes, "leaky_relu", rngs=rngs, dtype=dtype)
