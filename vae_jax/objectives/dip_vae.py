"""DIP-VAE-I and DIP-VAE-II (`config.objective = "dip_vae_i"` / `"dip_vae_ii"`).

Kumar et al. (2018), "Variational Inference of Disentangled Latent Concepts from Unlabeled
Observations" (ICLR; arXiv:1711.00848), eqs. (5)-(7): the ELBO plus a penalty that pulls a
covariance of the aggregate posterior towards the identity,

    loss = rec + β KL + λ_od Σ_{i≠j} Cov[·]_ij² + λ_d Σ_i (Cov[·]_ii − 1)²

* DIP-VAE-I:  Cov_x[μ(x)], the covariance of the posterior means over the batch;
* DIP-VAE-II: Cov_q(z) = E_x[diag σ²(x)] + Cov_x[μ(x)], the covariance of the aggregate
  posterior q(z) = E_x q(z|x), the means' covariance plus the mean posterior variance.

Batch covariances divide by B (disentanglement_lib's `compute_covariance_z_mean`, whose
`DIPVAE` this is). The ELBO part is the "elbo" objective's one-sample loss, so `beta`,
`kl_warmup_steps` and `free_bits` act on it as they do there (at their defaults it is the
ELBO of the paper). Fields, `config.dip_vae` (`config_fields`, shared by both; per member):
`lambda_od` and `lambda_d`. The paper and disentanglement_lib's unsupervised study use
λ_d = 10 λ_od for DIP-VAE-I and λ_d = λ_od for DIP-VAE-II; the defaults (λ_od = 10, λ_d = 100)
are DIP-VAE-I's, so a DIP-VAE-II run sets `dip_vae.lambda_d` to its λ_od. The batch must
hold at least 2 images; on several devices the covariance is the whole global batch's,
gathered from every device (`common.global_batch`). Metrics: loss, rec, kl, neg_elbo and
`dip_penalty` (the weighted penalty).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ml_collections import config_dict

from vae_jax import checks
from vae_jax.objectives import common
from vae_jax.objectives.gaussian import kl_weight

SECTION = "dip_vae"  # the fields of dip_vae_i and dip_vae_ii are config.dip_vae.*
HPARAMS = ("dip_vae.lambda_od", "dip_vae.lambda_d")
KINDS = ("i", "ii")


def config_fields() -> config_dict.ConfigDict:
  """`config.dip_vae`: the DIP-VAEs' fields at their defaults (DIP-VAE-I's λ_d = 10 λ_od)."""
  c = config_dict.ConfigDict()
  c.lambda_od = 10.0  # Weight of the squared off-diagonal Cov_ij.
  c.lambda_d = 100.0  # Weight of (Cov_ii - 1)^2: 10 lambda_od for DIP-VAE-I, lambda_od for II.
  return c


def covariance(mean_BxZ, logvar_BxZ, kind: str):
  """(Z, Z): Cov_x[μ(x)] for kind "i"; E_x[diag σ²(x)] + Cov_x[μ(x)] for "ii" (divided by B)."""
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  centred = mean_BxZ - jnp.mean(mean_BxZ, axis=0)
  cov = jnp.einsum("bi,bj->ij", centred, centred,
                   precision=jax.lax.Precision.HIGHEST) / mean_BxZ.shape[0]
  if kind == "ii":
    cov = cov + jnp.diag(jnp.mean(jnp.exp(logvar_BxZ), axis=0))
  return cov


def penalty(cov_ZxZ, lambda_od, lambda_d):
  """λ_od Σ_{i≠j} cov_ij² + λ_d Σ_i (cov_ii − 1)²."""
  diag = jnp.diagonal(cov_ZxZ)
  off = cov_ZxZ - jnp.diag(diag)
  return lambda_od * jnp.sum(jnp.square(off)) + lambda_d * jnp.sum(jnp.square(diag - 1.0))


def _loss(model, x_in, x_target, eps, hparams, ctx, kind: str):
  mean, logvar, _, rec, kl_per_dim = common.one_sample_terms(model, x_in, x_target, eps)
  kl = jnp.sum(kl_per_dim)
  kl_charged = jnp.sum(jnp.maximum(kl_per_dim, hparams["free_bits"]))  # as in the ELBO
  g_mean, g_logvar = common.global_batch(ctx.axis_name, mean, logvar)  # the global batch's
  dip = penalty(covariance(g_mean, g_logvar, kind), hparams["dip_vae.lambda_od"],
                hparams["dip_vae.lambda_d"])
  total = rec + kl_weight(hparams["beta"], hparams["kl_warmup_steps"], ctx.step) * kl_charged + dip
  return total, {"loss": total, "rec": rec, "kl": kl, "neg_elbo": rec + kl, "dip_penalty": dip}


def loss_i(model, x_in, x_target, eps, hparams, ctx):
  """DIP-VAE-I: the ELBO loss + the penalty on Cov_x[μ(x)]."""
  return _loss(model, x_in, x_target, eps, hparams, ctx, "i")


def loss_ii(model, x_in, x_target, eps, hparams, ctx):
  """DIP-VAE-II: the ELBO loss + the penalty on E_x[diag σ²(x)] + Cov_x[μ(x)]."""
  return _loss(model, x_in, x_target, eps, hparams, ctx, "ii")


def check_fields(config) -> None:
  """Type and range of the fields, whatever the objective."""
  for f in HPARAMS:
    checks.number(config, f, 0.0)


def validate(config) -> None:
  """The combinations DIP-VAE defines: a one-layer VAE, one sample, a batch of >= 2 images."""
  common.require_one_sample_vae(config, min_batch=2)
