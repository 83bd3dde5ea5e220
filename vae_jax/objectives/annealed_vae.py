"""The annealed-capacity VAE (`config.objective = "annealed_vae"`).

Burgess et al. (2018), "Understanding disentangling in β-VAE" (arXiv:1804.03599), eq. (8):

    loss = rec + γ |KL − C|,   C = C_max · min(1, step / steps)

with rec = E_q[-log p(x|z)] and KL = KL(q(z|x) || N(0, I)) (analytic), both batch means in
nats, and the capacity C raised linearly from 0 to C_max nats over the first `steps` steps
(then held; `steps` = 0 holds C_max from the start). A large γ pins the KL near the target
capacity, so the posterior's information about x grows steadily while training. This is
disentanglement_lib's `AnnealedVAE` (`c = min(c_max, c_max * step / iteration_threshold)`, its
study used γ = 1000, C_max from 5 to 100 nats over 100,000 steps).

Fields, `config.annealed_vae` (`config_fields`; all per member, so sweeps over them train as
one vectorised program): `gamma` (γ), `capacity_max` (C_max, nats), `capacity_steps`.
γ replaces β: `beta` must stay 1 (and `kl_warmup_steps`, `free_bits` 0); test/loss is then the
test negative ELBO. Metrics: loss, rec, kl, neg_elbo and `capacity` (C at this step).
"""

from __future__ import annotations

import jax.numpy as jnp
from ml_collections import config_dict

from vae_jax import checks
from vae_jax.objectives import common

SECTION = "annealed_vae"  # its fields are config.annealed_vae.*
HPARAMS = ("annealed_vae.gamma", "annealed_vae.capacity_max", "annealed_vae.capacity_steps")


def config_fields() -> config_dict.ConfigDict:
  """`config.annealed_vae`: the objective's fields at their defaults (γ and the schedule of
  disentanglement_lib's study; C_max one of its six values)."""
  c = config_dict.ConfigDict()
  c.gamma = 1000.0  # γ of rec + γ |KL - C| (config.beta must stay 1).
  c.capacity_max = 25.0  # The capacity C_max (nats) that C rises to.
  c.capacity_steps = 100_000  # Steps of C's linear rise from 0 (0 = C_max from the start).
  return c


def capacity(capacity_max, capacity_steps, step):
  """C at `step`: C_max · min(1, step / steps), and C_max throughout when steps = 0."""
  frac = jnp.where(capacity_steps > 0, jnp.minimum(1.0, step / jnp.maximum(capacity_steps, 1)),
                   1.0)
  return capacity_max * frac


def loss(model, x_in, x_target, eps, hparams, ctx):
  """rec + γ |KL − C(step)| on one batch, one sample per image: (loss, metrics)."""
  _, _, _, rec, kl_per_dim = common.one_sample_terms(model, x_in, x_target, eps)
  kl = jnp.sum(kl_per_dim)
  c = capacity(hparams["annealed_vae.capacity_max"], hparams["annealed_vae.capacity_steps"],
               ctx.step)
  total = rec + hparams["annealed_vae.gamma"] * jnp.abs(kl - c)
  return total, {"loss": total, "rec": rec, "kl": kl, "neg_elbo": rec + kl,
                 "capacity": jnp.asarray(c, kl.dtype)}


def check_fields(config) -> None:
  """Type and range of the fields, whatever the objective."""
  checks.number(config, "annealed_vae.gamma", 0.0)
  checks.number(config, "annealed_vae.capacity_max", 0.0)
  checks.integer(config, "annealed_vae.capacity_steps", 0)


def validate(config) -> None:
  """The combinations `annealed_vae` defines: a one-layer VAE, one sample, γ instead of β."""
  common.require_one_sample_vae(config)
  common.refuse_elbo_knobs(config, "annealed_vae.gamma")
