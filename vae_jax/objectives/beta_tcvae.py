"""The β-TCVAE (`config.objective = "beta_tcvae"`).

Chen et al. (2018), "Isolating Sources of Disentanglement in Variational Autoencoders"
(NeurIPS; arXiv:1802.04942), eq. (4): the ELBO's KL term, split into index-code mutual
information, total correlation and dimension-wise KL (`kl_decomposition.py`), with a weight
for each:

    loss = rec + α I_q(z; n) + β KL(q(z) || Π_j q(z_j)) + γ Σ_j KL(q(z_j) || p(z_j))

each term the batch mean of its per-sample log-density difference at one sample z ~ q(z|x) per
image, log q(z) and log Π_j q(z_j) estimated from the batch's posteriors over a training set of
`ctx.dataset_size` images: by minibatch stratified sampling ("mss", the default) or minibatch
weighted sampling ("mws", the paper's Sec. 4 estimator), or with the authors' code's weight
matrix ("mss_rtqichen", which differs from the paper's: `kl_decomposition.py`). The three terms telescope to the
sampled KL, mean[log q(z|x) - log p(z)], so at α = β = γ = 1 the loss is rec + that sampled
KL, an unbiased one-sample estimate of the negative ELBO. The paper, and the defaults, set
α = γ = 1 and weight only the total correlation (β; the authors' example uses β = 6).

Fields, `config.beta_tcvae` (`config_fields`): `alpha`, `beta`, `gamma` (per member: they may
differ within a vectorised group) and `estimator` (changes the program, so not per member; it
reaches the loss as `ctx.options["beta_tcvae.estimator"]`, see `objectives.static_options`).
`config.beta` (the ELBO's, not `config.beta_tcvae.beta`) must stay 1 (and `kl_warmup_steps`,
`free_bits` 0): the three weights replace it. The batch must hold at least 2 images; on several
devices the estimates use the posteriors of the whole global batch, gathered from every device
(`common.global_batch`). Metrics: loss, rec, kl and neg_elbo (analytic KL, as for every
objective), `index_code_mi`, `total_correlation`, `dimwise_kl` and `sampled_kl`
(their sum).
"""

from __future__ import annotations

import jax.numpy as jnp
from ml_collections import config_dict

from vae_jax import checks
from vae_jax.objectives import common, kl_decomposition

SECTION = "beta_tcvae"  # its fields are config.beta_tcvae.*
HPARAMS = ("beta_tcvae.alpha", "beta_tcvae.beta", "beta_tcvae.gamma")
STATIC = ("beta_tcvae.estimator",)
ESTIMATORS = kl_decomposition.ESTIMATORS


def config_fields() -> config_dict.ConfigDict:
  """`config.beta_tcvae`: the objective's fields at their defaults (the paper's α = γ = 1 and
  the β of its example)."""
  c = config_dict.ConfigDict()
  c.alpha = 1.0  # Weight of the index-code MI (config.beta itself must stay 1).
  c.beta = 6.0  # Weight of the total correlation.
  c.gamma = 1.0  # Weight of the dimension-wise KL.
  # log q(z) by minibatch "mss" (stratified sampling), "mws" (weighted), or "mss_rtqichen" (the
  # authors' code's weight matrix, not the paper's; see kl_decomposition.py).
  c.estimator = "mss"
  return c


def decomposition(mean_BxZ, logvar_BxZ, z_BxZ, dataset_size: int, estimator: str = "mss"):
  """Batch means (index_code_mi, total_correlation, dimwise_kl, sampled_kl) at the samples
  z_BxZ of q(z|x) = N(mean, exp(logvar)), with q(z) over `dataset_size` images estimated by
  `estimator`; traceable (`dataset_size` and `estimator` are Python values)."""
  if dataset_size < 1:
    raise ValueError("beta_tcvae needs the training set's size (LossContext.dataset_size) to "
                     "estimate log q(z)")
  log_qzx, log_qz, log_prod, log_pz = kl_decomposition.log_qz_terms(
      mean_BxZ, logvar_BxZ, z_BxZ, dataset_size, estimator)
  return (jnp.mean(log_qzx - log_qz), jnp.mean(log_qz - log_prod), jnp.mean(log_prod - log_pz),
          jnp.mean(log_qzx - log_pz))


def loss(model, x_in, x_target, eps, hparams, ctx):
  """rec + α MI + β TC + γ dimension-wise KL on one batch, one sample per image."""
  mean, logvar, z, rec, kl_per_dim = common.one_sample_terms(model, x_in, x_target, eps)
  estimator = ctx.options.get("beta_tcvae.estimator", "mss")
  # q(z) of the whole global batch's posteriors, on any number of devices.
  g_mean, g_logvar, g_z = common.global_batch(ctx.axis_name, mean, logvar, z)
  mi, tc, dwkl, sampled_kl = decomposition(g_mean, g_logvar, g_z, ctx.dataset_size, estimator)
  total = rec + hparams["beta_tcvae.alpha"] * mi + hparams["beta_tcvae.beta"] * tc + (
      hparams["beta_tcvae.gamma"] * dwkl)
  kl = jnp.sum(kl_per_dim)
  return total, {"loss": total, "rec": rec, "kl": kl, "neg_elbo": rec + kl,
                 "index_code_mi": mi, "total_correlation": tc, "dimwise_kl": dwkl,
                 "sampled_kl": sampled_kl}


def check_fields(config) -> None:
  """Type and range of the fields, whatever the objective."""
  for f in HPARAMS:
    checks.number(config, f, 0.0)
  checks.choice(config, "beta_tcvae.estimator", ESTIMATORS)


def validate(config) -> None:
  """The combinations `beta_tcvae` defines: a one-layer VAE, one sample, a batch of >= 2 images,
  the three weights instead of beta."""
  common.require_one_sample_vae(config, min_batch=2)
  common.refuse_elbo_knobs(config, "beta_tcvae.alpha, beta_tcvae.beta and beta_tcvae.gamma")
