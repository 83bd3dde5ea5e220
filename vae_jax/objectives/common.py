"""What the disentangling objectives share: the one-sample reconstruction and KL terms, and the
checks that they are used where they define something.

The disentangling objectives (`annealed_vae.py`, `beta_tcvae.py`, `dip_vae.py`) each regularise
the posterior q(z|x) of a VAE with one stochastic layer, from one reparameterised sample per
image, as in their papers. Their config fields are checked for type and range whatever the
objective (a config file holds all of them: a bad value is an error even where it is unused,
`check_fields`), and read only when their objective is chosen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax import checks, decoder_likelihoods, models
from vae_jax.objectives.gaussian import gaussian_kl, reparameterize


def one_sample_terms(model, x_in, x_target, eps_BxZ):
  """(mean, logvar, z, rec, kl_per_dim) of a one-layer VAE at z = mean + sigma * eps.

  rec is the batch mean of -log p(x|z) (nats), kl_per_dim the batch mean of each dimension's
  analytic KL(q(z_d|x) || N(0, 1)), shape (Z,): the same computation as the ELBO's one-sample
  path (`elbo._one_sample_loss`), so the objectives' rec and kl are the ELBO's.
  """
  mean, logvar = model.encode(x_in)
  z = reparameterize(mean, logvar, eps_BxZ)
  out = model.decode(z)
  rec = jnp.mean(decoder_likelihoods.nll(model.likelihood, out, model.log_scale[...], x_target))
  kl_per_dim = jnp.mean(gaussian_kl(mean, logvar), axis=0)
  return mean, logvar, z, rec, kl_per_dim


def global_batch(axis_name: str | None, *arrays):
  """The arrays of the whole global batch: with `axis_name` (inside shard_map, several devices)
  every device's rows gathered in device order, so batch statistics (covariances, aggregate
  posteriors) are the global batch's whatever the number of devices; unchanged on one device.

  Each device then computes the same statistic. Differentiating through the gather sends each
  device the cotangents of every device's copy (its transpose sums them), so after the step's
  mean over devices the gradient is exactly the global statistic's (tests/test_sharding.py)."""
  if axis_name is None:
    return arrays
  return tuple(jax.lax.all_gather(a, axis_name, tiled=True) for a in arrays)


def require_one_sample_vae(config, *, min_batch: int = 1) -> None:
  """The objective needs a family with a factorised N(0, I) prior over one latent layer
  (`standard_normal_prior`: the VAE), one sample of z per image and (for batch statistics) at
  least `min_batch` images per batch: one line naming what is wrong."""
  name = config.objective
  family = models.family_of(config.model)
  if not family.stochastic:
    checks.fail("objective", name, f"'elbo' with model.name={config.model.name!r} ({name!r} "
                "regularises q(z|x): use model.name='vae')")
  if not family.standard_normal_prior:
    field, value = models.family_field(config.model)
    checks.fail(field, value, f"{'1' if field == 'model.stochastic_layers' else repr('vae')} "
                f"with objective={name!r} (it regularises q(z|x) of one latent layer against "
                f"a factorised N(0, I) prior, which the {family.title} does not have)")
  if config.num_importance_samples != 1:
    checks.fail("num_importance_samples", config.num_importance_samples,
                f"1 with objective={name!r} (it is defined for one sample of z per image)")
  if config.batch_size < min_batch:
    checks.fail("batch_size", config.batch_size,
                f"at least {min_batch} with objective={name!r} (it estimates statistics of the "
                "batch's posteriors)")


def refuse_elbo_knobs(config, instead: str) -> None:
  """For an objective that weights its KL terms itself: beta, kl_warmup_steps and free_bits
  must keep their defaults (they would silently do nothing). `instead` names its own weights."""
  name = config.objective
  if config.beta != 1:
    checks.fail("beta", config.beta, f"1 with objective={name!r} (its KL terms are weighted by "
                f"{instead})")
  if config.kl_warmup_steps != 0:
    checks.fail("kl_warmup_steps", config.kl_warmup_steps,
                f"0 with objective={name!r} (it has no KL warm-up; its KL terms are weighted by "
                f"{instead})")
  if config.free_bits != 0:
    checks.fail("free_bits", config.free_bits, f"0 with objective={name!r} (it has no "
                "per-dimension KL floor)")
