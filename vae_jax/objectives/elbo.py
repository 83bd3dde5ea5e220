"""The ELBO family: rec + beta * KL for the VAE (rec for the AE), the k-sample ELBO and the
importance-weighted bound (IWAE; Burda et al., 2016), with every part reported.

Per-image sums over pixels and latent dimensions, means over the batch, all in nats.

With noise for k samples per image, eps of shape (K, B, E) instead of (B, E), a VAE trains on

    "elbo":  mean_k [ log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)) ]      (the k-sample ELBO)
    "iwae":  log (1/k) sum_k exp( log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)) )

both computed in one batched pass over the k samples. beta (with its warm-up) weights the
latent part of each log weight, the usual beta-IWAE form; at beta = 1 "iwae" is the bound
L_k of Burda et al. For k = 1 both are the ELBO, and both take the one-sample code path that
predates them (analytic KL), so existing runs reproduce bit for bit. With one stochastic layer
the ELBO keeps the analytic KL at any k (same expectation as the Monte Carlo log weight, less
variance); a two-layer model has no closed-form KL, so its ELBO uses the sampled log weights.

`log_weight_terms` is the single place where the log importance weights are computed: the
training objectives here and the estimate of log p(x) (`marginal_likelihood.py`) both call it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax import decoder_likelihoods
from vae_jax.objectives.gaussian import (gaussian_kl, kl_weight, log_mean_exp, log_q_of_eps,
                                         normal_log_prob, reparameterize, standard_normal_log_prob)


def log_weight_terms(model, q, x_target, eps_SxBxE):
  """The three parts of each log importance weight, at the latents that eps reparameterises.

  Args:
    model: a VAE `AutoEncoder` of one or two stochastic layers.
    q: `model.encode(x_in)`, the (mean_BxZ, logvar_BxZ) of q(z1|x): computed once per image
      by the caller, since it does not depend on the sample.
    x_target: (B, H, W, C) images whose likelihood is scored.
    eps_SxBxE: standard normal noise, E = model.noise_dim (z1's units, then z2's).

  Returns:
    (log p(x|z), log p(z), log q(z|x)), each (S, B); for two layers z = (z1, z2),
    log p(z) = log p(z2) + log p(z1|z2) and log q(z|x) = log q(z1|x) + log q(z2|z1).
    The log weight is log p(x|z) + log p(z) - log q(z|x).
  """
  mean1, logvar1 = q
  z1_dim = mean1.shape[-1]
  eps1 = eps_SxBxE if model.stochastic_layers == 1 else eps_SxBxE[..., :z1_dim]
  z1 = reparameterize(mean1, logvar1, eps1)
  log_q = log_q_of_eps(eps1, logvar1)
  if model.stochastic_layers == 1:
    log_prior = standard_normal_log_prob(z1)
  else:
    # q(z2|z1) takes each sample of z1, so its parameters are per sample: (S, B, T).
    mean2, logvar2 = model.encode_top(z1)
    eps2 = eps_SxBxE[..., z1_dim:]
    z2 = reparameterize(mean2, logvar2, eps2)
    log_q = log_q + log_q_of_eps(eps2, logvar2)
    prior_mean1, prior_logvar1 = model.prior_z1(z2)
    log_prior = standard_normal_log_prob(z2) + normal_log_prob(z1, prior_mean1, prior_logvar1)
  s, b = z1.shape[:2]
  out = model.decode(z1.reshape(s * b, z1_dim)).reshape(s, b, *x_target.shape[1:])
  # vmap over samples broadcasts x instead of materialising k copies (2x faster on CPU).
  nll_S = jax.vmap(lambda o: decoder_likelihoods.nll(model.likelihood, o, model.log_scale[...], x_target))
  return -nll_S(out), log_prior, log_q


def elbo_loss(model, x_in, x_target, eps, hparams, ctx):
  """The ELBO objective (`config.objective = "elbo"`): see `_loss`."""
  return _loss(model, x_in, x_target, eps, hparams, ctx.step, iwae=False)


def iwae_loss(model, x_in, x_target, eps, hparams, ctx):
  """The importance-weighted objective (`config.objective = "iwae"`): see `_loss`."""
  return _loss(model, x_in, x_target, eps, hparams, ctx.step, iwae=True)


def _loss(model, x_in, x_target, eps, hparams, step, *, iwae: bool):
  """Training objective for one batch.

  Args:
    model: an `AutoEncoder` (merged from its parameters).
    x_in: encoder input (B, H, W, C); x_target: what the decoder must reconstruct (the same
      images, or the clean ones when the input is corrupted).
    eps: standard normal noise for the reparameterised samples (ignored by an AE): (B, E) for
      one sample per image, (K, B, E) for K; E = model.noise_dim.
    hparams: dict with "beta", "kl_warmup_steps", "free_bits" (scalars, may be traced).
    step: the global step (for the KL warm-up).
    iwae: the importance-weighted bound instead of the ELBO (the same for K = 1).

  Returns:
    (loss, metrics) with metrics "loss", "rec", "kl", "neg_elbo", each a batch mean (over the
    K samples too), and with K > 1 "neg_iwae", -L_K at beta = 1 on this batch.
  """
  if model.kind == "ae" or (eps.ndim == 2 and model.stochastic_layers == 1):
    return _one_sample_loss(model, x_in, x_target, eps, hparams, step)
  return _sampled_loss(model, x_in, x_target, eps, hparams, step, iwae)


def _one_sample_loss(model, x_in, x_target, eps_BxZ, hparams, step):
  """rec + beta * analytic KL with one sample per image (and the AE's rec)."""
  mean, logvar = model.encode(x_in)
  if model.kind == "vae":
    z = reparameterize(mean, logvar, eps_BxZ)
    kl_BxZ = gaussian_kl(mean, logvar)
  else:
    z = mean
    kl_BxZ = jnp.zeros_like(mean)
  out = model.decode(z)
  rec = jnp.mean(decoder_likelihoods.nll(model.likelihood, out, model.log_scale[...], x_target))
  kl_per_dim = jnp.mean(kl_BxZ, axis=0)
  kl = jnp.sum(kl_per_dim)
  # Free bits (Kingma et al., 2016): each dimension's batch-mean KL is charged at least
  # `free_bits` nats, so the optimiser gains nothing by pushing it below that.
  kl_charged = jnp.sum(jnp.maximum(kl_per_dim, hparams["free_bits"]))
  loss = rec + kl_weight(hparams["beta"], hparams["kl_warmup_steps"], step) * kl_charged
  if model.kind == "ae":
    loss = rec
  return loss, {"loss": loss, "rec": rec, "kl": kl, "neg_elbo": rec + kl}


def _sampled_loss(model, x_in, x_target, eps, hparams, step, iwae):
  """The k-sample ELBO or IWAE bound (any k), and the two-layer ELBO, from the log weights."""
  q = model.encode(x_in)
  eps_KxBxE = eps if eps.ndim == 3 else eps[None]
  k = eps_KxBxE.shape[0]
  log_lik_KxB, log_prior_KxB, log_q_KxB = log_weight_terms(model, q, x_target, eps_KxBxE)
  log_ratio_KxB = log_prior_KxB - log_q_KxB
  weight = kl_weight(hparams["beta"], hparams["kl_warmup_steps"], step)
  rec = -jnp.mean(log_lik_KxB)
  if model.stochastic_layers == 1:
    kl_per_dim = jnp.mean(gaussian_kl(*q), axis=0)
    kl = jnp.sum(kl_per_dim)
    kl_charged = jnp.sum(jnp.maximum(kl_per_dim, hparams["free_bits"]))
  else:  # validation rejects free bits here: there is no per-dimension KL to floor
    kl = -jnp.mean(log_ratio_KxB)
    kl_charged = kl
  if iwae and k > 1:
    loss = -jnp.mean(log_mean_exp(log_lik_KxB + weight * log_ratio_KxB, axis=0))
  else:
    loss = rec + weight * kl_charged
  metrics = {"loss": loss, "rec": rec, "kl": kl, "neg_elbo": rec + kl}
  if k > 1:
    metrics["neg_iwae"] = -jnp.mean(log_mean_exp(log_lik_KxB + log_ratio_KxB, axis=0))
  return loss, metrics


def eval_metrics(model, x, eps_BxE, beta):
  """Per-image test metrics (B,) for a fixed beta: rec, kl, neg_elbo and loss = rec + beta kl.

  One sample per image whatever the training objective; the k-sample bounds on the test split
  are `marginal_likelihood.py`'s (test/nll, and test/neg_iwae at the training k, added by
  `step.build_test_metrics`). A two-layer model's kl is the sampled log q - log p.
  """
  if model.kind == "vae" and model.stochastic_layers == 2:
    log_lik, log_prior, log_q = log_weight_terms(model, model.encode(x), x, eps_BxE[None])
    rec, kl = -log_lik[0], (log_q - log_prior)[0]
    return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "neg_elbo": rec + kl}
  mean, logvar = model.encode(x)
  if model.kind == "vae":
    z = reparameterize(mean, logvar, eps_BxE)
    kl = jnp.sum(gaussian_kl(mean, logvar), axis=-1)
  else:
    z, kl = mean, jnp.zeros(mean.shape[:1], mean.dtype)
  rec = decoder_likelihoods.nll(model.likelihood, model.decode(z), model.log_scale[...], x)
  loss = rec + beta * kl if model.kind == "vae" else rec
  return {"loss": loss, "rec": rec, "kl": kl, "neg_elbo": rec + kl}
