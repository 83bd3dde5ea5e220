"""Objectives and likelihoods against closed forms and Monte Carlo."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

from tests.helpers import tiny_model
from vae_jax import decoder_likelihoods, objectives


def test_analytic_kl_matches_monte_carlo():
  key = jax.random.key(0)
  mean = jnp.array([[0.5, -1.0, 2.0]])
  logvar = jnp.array([[0.3, -0.7, 0.1]])
  analytic = objectives.gaussian_kl(mean, logvar).sum()
  eps = jax.random.normal(key, (200_000, 3))
  z = objectives.reparameterize(mean, logvar, eps)
  log_q = stats.norm.logpdf(z, mean, jnp.exp(0.5 * logvar)).sum(-1)
  log_p = stats.norm.logpdf(z).sum(-1)
  mc = jnp.mean(log_q - log_p)
  assert abs(float(mc - analytic)) < 0.02, (mc, analytic)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
  z = jnp.zeros((2, 5))
  np.testing.assert_allclose(objectives.gaussian_kl(z, z), 0.0, atol=1e-7)
  assert jnp.all(objectives.gaussian_kl(z + 0.1, z) > 0)
  assert jnp.all(objectives.gaussian_kl(z, z + 0.1) > 0)


@pytest.fixture
def pixels():
  key = jax.random.key(1)
  k1, k2, k3 = jax.random.split(key, 3)
  out = jax.random.normal(k1, (3, 4, 4, 1)) * 3
  x_bin = jax.random.bernoulli(k2, 0.4, out.shape).astype(jnp.float32)
  x_grey = jax.random.uniform(k3, out.shape)
  return out, x_bin, x_grey


def test_bernoulli_nll_is_the_bernoulli_log_pmf(pixels):
  out, x, _ = pixels
  expected = -stats.bernoulli.logpmf(x, jax.nn.sigmoid(out)).reshape(3, -1).sum(-1)
  np.testing.assert_allclose(decoder_likelihoods.nll("bernoulli", out, 0.0, x), expected, rtol=1e-5)


@pytest.mark.parametrize("log_scale", [-2.0, 0.0, 0.7])
def test_gaussian_nll_is_the_normal_log_density(pixels, log_scale):
  out, _, x = pixels
  expected = -stats.norm.logpdf(x, jax.nn.sigmoid(out), jnp.exp(log_scale)).reshape(3, -1).sum(-1)
  np.testing.assert_allclose(decoder_likelihoods.nll("gaussian", out, log_scale, x), expected, rtol=1e-5)


@pytest.mark.parametrize("log_scale", [-2.0, 0.5])
def test_laplace_nll_is_the_laplace_log_density(pixels, log_scale):
  out, _, x = pixels
  expected = -stats.laplace.logpdf(x, jax.nn.sigmoid(out), jnp.exp(log_scale)).reshape(3, -1).sum(-1)
  np.testing.assert_allclose(decoder_likelihoods.nll("laplace", out, log_scale, x), expected, rtol=1e-5)


def _model(kind="vae", likelihood="bernoulli", latent=3):
  return tiny_model(kind, likelihood=likelihood, latent_dim=latent)


def _hp(beta=1.0, warm=0, free_bits=0.0):
  return {"beta": beta, "kl_warmup_steps": warm, "free_bits": free_bits}


def test_loss_parts_and_beta(pixels):
  _, x, _ = pixels
  model = _model()
  eps = jax.random.normal(jax.random.key(2), (3, 3))
  _, m1 = objectives.loss_fn(model, x, x, eps, _hp(1.0), 0)
  _, m4 = objectives.loss_fn(model, x, x, eps, _hp(4.0), 0)
  chex.assert_tree_all_finite(m1)
  np.testing.assert_allclose(m1["neg_elbo"], m1["rec"] + m1["kl"], rtol=1e-6)
  np.testing.assert_allclose(m1["loss"], m1["neg_elbo"], rtol=1e-6)
  np.testing.assert_allclose(m4["loss"], m4["rec"] + 4.0 * m4["kl"], rtol=1e-6)
  np.testing.assert_allclose(m4["neg_elbo"], m1["neg_elbo"], rtol=1e-6)  # beta only weights the loss


def test_kl_warmup_scales_the_kl_weight(pixels):
  _, x, _ = pixels
  model = _model()
  eps = jnp.zeros((3, 3))
  _, m = objectives.loss_fn(model, x, x, eps, _hp(2.0, warm=100), 25)
  np.testing.assert_allclose(m["loss"], m["rec"] + 2.0 * 0.25 * m["kl"], rtol=1e-6)
  _, m = objectives.loss_fn(model, x, x, eps, _hp(2.0, warm=100), 500)
  np.testing.assert_allclose(m["loss"], m["rec"] + 2.0 * m["kl"], rtol=1e-6)


def test_free_bits_charge_at_least_the_floor_per_dimension(pixels):
  _, x, _ = pixels
  model = _model(latent=3)
  eps = jnp.zeros((3, 3))
  _, m = objectives.loss_fn(model, x, x, eps, _hp(1.0, free_bits=5.0), 0)
  # A fresh model's per-dimension KL is far below 5 nats, so each dimension is charged 5.
  assert float(m["kl"]) < 3 * 5.0
  np.testing.assert_allclose(m["loss"], m["rec"] + 3 * 5.0, rtol=1e-6)
  # The reported KL is the true KL, not the charged one.
  _, m0 = objectives.loss_fn(model, x, x, eps, _hp(1.0), 0)
  np.testing.assert_allclose(m["kl"], m0["kl"], rtol=1e-6)


def test_autoencoder_loss_is_reconstruction_only(pixels):
  _, x, _ = pixels
  model = _model(kind="ae")
  _, m = objectives.loss_fn(model, x, x, jnp.ones((3, 3)), _hp(10.0), 0)
  assert float(m["kl"]) == 0.0
  np.testing.assert_allclose(m["loss"], m["rec"], rtol=1e-6)
  mean, logvar = model.encode(x)
  assert logvar is None and mean.shape == (3, 3)


def test_vae_eval_metrics_agree_with_training_metrics(pixels):
  _, x, _ = pixels
  model = _model()
  eps = jax.random.normal(jax.random.key(3), (3, 3))
  _, m = objectives.loss_fn(model, x, x, eps, _hp(2.0), 0)
  per = objectives.eval_metrics(model, x, eps, 2.0)
  for k in ("rec", "kl", "neg_elbo", "loss"):
    np.testing.assert_allclose(jnp.mean(per[k]), m[k], rtol=1e-5)
