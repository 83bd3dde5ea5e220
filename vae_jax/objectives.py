"""Objectives: rec + beta * KL for the VAE, rec for the AE, with every part reported.

Per-image sums over pixels and latent dimensions, means over the batch, all in nats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax import likelihoods


def gaussian_kl(mean_BxZ, logvar_BxZ):
  """KL(N(mean, diag(exp(logvar))) || N(0, I)) per latent dimension: shape (B, Z)."""
  return 0.5 * (jnp.exp(logvar_BxZ) + jnp.square(mean_BxZ) - 1.0 - logvar_BxZ)


def reparameterize(mean_BxZ, logvar_BxZ, eps_BxZ):
  """z = mean + sigma * eps, with eps ~ N(0, I) drawn by the caller from an explicit key."""
  return mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ


def kl_weight(beta, kl_warmup_steps, step):
  """beta, scaled linearly from 0 over the first `kl_warmup_steps` steps (0 = no warm-up)."""
  warm = jnp.where(kl_warmup_steps > 0,
                   jnp.minimum(1.0, step / jnp.maximum(kl_warmup_steps, 1)), 1.0)
  return beta * warm


def loss_fn(model, x_in, x_target, eps_BxZ, hparams, step):
  """Training objective for one batch.

  Args:
    model: an `AutoEncoder` (merged from its parameters).
    x_in: encoder input (B, H, W, C); x_target: what the decoder must reconstruct (the same
      images, or the clean ones when the input is corrupted).
    eps_BxZ: standard normal noise for the reparameterised sample (ignored by an AE).
    hparams: dict with "beta", "kl_warmup_steps", "free_bits" (scalars, may be traced).
    step: the global step (for the KL warm-up).

  Returns:
    (loss, metrics) with metrics "loss", "rec", "kl", "neg_elbo", each a batch mean.
  """
  mean, logvar = model.encode(x_in)
  if model.kind == "vae":
    z = reparameterize(mean, logvar, eps_BxZ)
    kl_BxZ = gaussian_kl(mean, logvar)
  else:
    z = mean
    kl_BxZ = jnp.zeros_like(mean)
  out = model.decode(z)
  rec = jnp.mean(likelihoods.nll(model.likelihood, out, model.log_scale[...], x_target))
  kl_per_dim = jnp.mean(kl_BxZ, axis=0)
  kl = jnp.sum(kl_per_dim)
  # Free bits (Kingma et al., 2016): each dimension's batch-mean KL is charged at least
  # `free_bits` nats, so the optimiser gains nothing by pushing it below that.
  kl_charged = jnp.sum(jnp.maximum(kl_per_dim, hparams["free_bits"]))
  loss = rec + kl_weight(hparams["beta"], hparams["kl_warmup_steps"], step) * kl_charged
  if model.kind == "ae":
    loss = rec
  return loss, {"loss": loss, "rec": rec, "kl": kl, "neg_elbo": rec + kl}


def eval_metrics(model, x, eps_BxZ, beta):
  """Per-image test metrics (B,) for a fixed beta: rec, kl, neg_elbo and loss = rec + beta kl."""
  mean, logvar = model.encode(x)
  if model.kind == "vae":
    z = reparameterize(mean, logvar, eps_BxZ)
    kl = jnp.sum(gaussian_kl(mean, logvar), axis=-1)
  else:
    z, kl = mean, jnp.zeros(mean.shape[:1], mean.dtype)
  rec = likelihoods.nll(model.likelihood, model.decode(z), model.log_scale[...], x)
  loss = rec + beta * kl if model.kind == "vae" else rec
  return {"loss": loss, "rec": rec, "kl": kl, "neg_elbo": rec + kl}
