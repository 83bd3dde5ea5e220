"""The ELBO family: rec + beta * KL for the VAE (rec for the AE), the k-sample ELBO and the
importance-weighted bound (IWAE; Burda et al., 2016), with every part reported.

Per-image sums over pixels and latent dimensions, means over the batch, all in nats.

With noise for k samples per image, eps of shape (K, B, E) instead of (B, E), a VAE trains on

    "elbo":  mean_k [ log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)) ]      (the k-sample ELBO)
    "iwae":  log (1/k) sum_k exp( log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)) )

both computed in one batched pass over the k samples. beta (with its warm-up) weights the
latent part of each log weight, the usual beta-IWAE form; at beta = 1 "iwae" is the bound
L_k of Burda et al. For k = 1 both are the ELBO, and both take the one-sample code path that
predates them (analytic KL), so existing runs reproduce bit for bit.

What the objectives ask of the model is its family's (`models/base.py`), never its name: an AE
(`not model.stochastic`) trains on rec alone; a family whose prior is N(0, I)
(`model.standard_normal_prior`) keeps the analytic KL (`model.kl_per_dim`) at any k (same
expectation as the Monte Carlo log weight, less variance); any other (the two-layer VAE, the
VampPrior VAE) has no closed-form KL, so its ELBO uses the sampled log weights. The log weights
themselves are the family's `log_weight_terms`, the one place they are computed: the training
objectives here and the estimate of log p(x) (`marginal_likelihood.py`) both call it.
"""

from __future__ import annotations

import jax.numpy as jnp

from vae_jax import decoder_likelihoods
from vae_jax.objectives.gaussian import kl_weight, log_mean_exp, reparameterize


def elbo_loss(model, x_in, x_target, eps, hparams, ctx):
  """The ELBO objective (`config.objective = "elbo"`): see `_loss`."""
  return _loss(model, x_in, x_target, eps, hparams, ctx.step, iwae=False)


def iwae_loss(model, x_in, x_target, eps, hparams, ctx):
  """The importance-weighted objective (`config.objective = "iwae"`): see `_loss`."""
  return _loss(model, x_in, x_target, eps, hparams, ctx.step, iwae=True)


def _loss(model, x_in, x_target, eps, hparams, step, *, iwae: bool):
  """Training objective for one batch.

  Args:
    model: a model family (`models.Family`, merged from its parameters).
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
  if not model.stochastic:
    return _deterministic_loss(model, x_in, x_target)
  if eps.ndim == 2 and model.standard_normal_prior:
    return _one_sample_loss(model, x_in, x_target, eps, hparams, step)
  return _sampled_loss(model, x_in, x_target, eps, hparams, step, iwae)


def _rec(model, z_BxZ, x_target):
  """-log p(x|z) of each image: (B,)."""
  return decoder_likelihoods.nll(model.likelihood, model.decode(z_BxZ), model.log_scale[...],
                                 x_target)


def _deterministic_loss(model, x_in, x_target):
  """An AE's rec at its code z = f(x); it has no KL (reported as 0)."""
  z, _ = model.encode(x_in)
  rec = jnp.mean(_rec(model, z, x_target))
  kl = jnp.zeros((), rec.dtype)
  return rec, {"loss": rec, "rec": rec, "kl": kl, "neg_elbo": rec + kl}


def _one_sample_loss(model, x_in, x_target, eps_BxZ, hparams, step):
  """rec + beta * analytic KL with one sample per image."""
  q = model.encode(x_in)
  z = reparameterize(*q, eps_BxZ)
  rec = jnp.mean(_rec(model, z, x_target))
  kl_per_dim = jnp.mean(model.kl_per_dim(q), axis=0)
  kl = jnp.sum(kl_per_dim)
  # Free bits (Kingma et al., 2016): each dimension's batch-mean KL is charged at least
  # `free_bits` nats, so the optimiser gains nothing by pushing it below that.
  kl_charged = jnp.sum(jnp.maximum(kl_per_dim, hparams["free_bits"]))
  loss = rec + kl_weight(hparams["beta"], hparams["kl_warmup_steps"], step) * kl_charged
  return loss, {"loss": loss, "rec": rec, "kl": kl, "neg_elbo": rec + kl}


def _sampled_loss(model, x_in, x_target, eps, hparams, step, iwae):
  """The k-sample ELBO or IWAE bound (any k), and the ELBO of a family without an analytic KL,
  from the log weights."""
  q = model.encode(x_in)
  eps_KxBxE = eps if eps.ndim == 3 else eps[None]
  k = eps_KxBxE.shape[0]
  log_lik_KxB, log_prior_KxB, log_q_KxB = model.log_weight_terms(q, x_target, eps_KxBxE)
  log_ratio_KxB = log_prior_KxB - log_q_KxB
  weight = kl_weight(hparams["beta"], hparams["kl_warmup_steps"], step)
  rec = -jnp.mean(log_lik_KxB)
  kl_BxZ = model.kl_per_dim(q)
  if kl_BxZ is not None:
    kl_per_dim = jnp.mean(kl_BxZ, axis=0)
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
  `step.build_test_metrics`). A family without an analytic KL (two-layer, VampPrior) reports
  the sampled log q - log p as kl; an AE reports rec alone (kl 0; eps unused, may be None).
  """
  if not model.stochastic:
    z, _ = model.encode(x)
    rec = _rec(model, z, x)
    kl = jnp.zeros(z.shape[:1], z.dtype)
    return {"loss": rec, "rec": rec, "kl": kl, "neg_elbo": rec + kl}
  q = model.encode(x)
  kl_BxZ = model.kl_per_dim(q)
  if kl_BxZ is None:
    log_lik, log_prior, log_q = model.log_weight_terms(q, x, eps_BxE[None])
    rec, kl = -log_lik[0], (log_q - log_prior)[0]
  else:
    rec = _rec(model, reparameterize(*q, eps_BxE), x)
    kl = jnp.sum(kl_BxZ, axis=-1)
  return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "neg_elbo": rec + kl}
