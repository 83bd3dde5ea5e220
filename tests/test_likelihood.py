"""The IWAE estimate of log p(x): exactness on a linear-Gaussian model, bounds, chunking, stats."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.scipy import stats

from vae_jax import marginal_likelihood as L
from vae_jax import decoder_likelihoods, models, objectives, rng

D, Z = 5, 3


def _linear_gaussian(seed=0, noise_std=0.5):
  """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I) with orthogonal columns of W, so that the exact
  posterior is a diagonal Gaussian."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(D, D)))
  w = q[:, :Z] * np.array([2.0, 1.0, 0.5])
  b = rng.normal(size=D)
  return w, b, noise_std


def _exact_log_px(x, w, b, s):
  cov = w @ w.T + s**2 * np.eye(D)
  diff = x - b
  _, logdet = np.linalg.slogdet(cov)
  maha = np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff)
  return -0.5 * (maha + logdet + D * math.log(2 * math.pi))


def linear_model(params) -> L.LatentModel:
  """Module-level (hashable) model_fn; params["shift"], ["logvar_add"] make q wrong on purpose."""
  w, b, s = params["w"], params["b"], params["s"]
  post_var = 1.0 / (1.0 + jnp.sum(w * w, axis=0) / s**2)  # diagonal: W^T W is diagonal

  def posterior(x):
    mean = (x - b) @ w * post_var / s**2 + params["shift"]
    logvar = jnp.broadcast_to(jnp.log(post_var) + params["logvar_add"], mean.shape)
    return mean, logvar

  def log_likelihood(x, z_SxBxZ):
    return jnp.sum(stats.norm.logpdf(x, z_SxBxZ @ w.T + b, s), axis=-1)

  return L.gaussian_latent_model(posterior, log_likelihood, Z)


def _params(shift=0.0, logvar_add=0.0, **kw):
  w, b, s = _linear_gaussian(**kw)
  return {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32),
          "s": jnp.float32(s), "shift": jnp.float32(shift), "logvar_add": jnp.float32(logvar_add)}


def _data(n=40, far=False):
  w, b, s = _linear_gaussian()
  rng = np.random.default_rng(1)
  x = rng.normal(size=(n, Z)) @ w.T + b + s * rng.normal(size=(n, D))
  if far:  # log p(x) of about -1e4: exp of a log weight underflows without log-sum-exp
    x = x + 100.0
  return x.astype(np.float32), _exact_log_px(x.astype(np.float64), w, b, s)


@pytest.mark.parametrize("far", [False, True])
def test_exact_posterior_gives_exact_log_px_for_every_k(far):
  x, exact = _data(far=far)
  for k in (1, 7):
    est = np.asarray(L.iwae_log_px(linear_model, _params(), x, jax.random.key(0), num_samples=k,
                                   sample_chunk=1))
    np.testing.assert_allclose(est, exact, rtol=2e-5, atol=2e-3)


def test_wrong_posterior_estimate_rises_with_k_stays_below_and_converges():
  x, exact = _data(n=30)
  params = _params(shift=0.4, logvar_add=0.6)
  gaps = []
  for k in (1, 4, 32, 256, 4096):
    est = np.mean([L.iwae_log_px(linear_model, params, x, jax.random.key(seed), num_samples=k,
                                 sample_chunk=1) for seed in range(3)], axis=0)
    gaps.append(float(np.mean(exact - est)))
  assert all(g > -5e-3 for g in gaps), gaps  # a lower bound in expectation (float32 noise)
  assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps  # rises with k
  assert gaps[0] > 0.3, gaps  # the bound is loose at k = 1 for this q ...
  assert gaps[-1] < 0.02, gaps  # ... and tight at large k


@pytest.mark.slow
def test_chunk_sizes_do_not_change_the_estimate():
  x, _ = _data(n=23)
  params = _params(shift=0.3, logvar_add=0.5)
  key = jax.random.key(3)
  ref = L.iwae_log_px(linear_model, params, x, key, num_samples=50, sample_chunk=50, image_chunk=23)
  for sc, ic in ((7, 5), (16, 23)):
    got = L.iwae_log_px(linear_model, params, x, key, num_samples=50, sample_chunk=sc, image_chunk=ic)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
  other = L.iwae_log_px(linear_model, params, x, jax.random.key(4), num_samples=50)
  assert not np.allclose(other, ref)


def test_num_samples_must_be_positive():
  with pytest.raises(ValueError):
    L.iwae_log_px(linear_model, _params(), _data()[0], jax.random.key(0), num_samples=0)


# A tiny VAE ------------------------------------------------------------------------------


def _tiny_vae(kind="vae", seed=0):
  return models.FAMILIES[kind](architecture="mlp", image_shape=(4, 4, 1), latent_dim=Z,
                               hidden_sizes=(8,), activation="tanh", likelihood="bernoulli",
                               scale=1.0, learn_scale=False, rngs=nnx.Rngs(seed))


def _images(n=12):
  return np.where(np.random.default_rng(2).random((n, 4, 4, 1)) < 0.4, 255, 0).astype(np.uint8)


def test_k1_estimate_is_the_elbo_with_the_same_noise():
  model, x_u8 = _tiny_vae(), _images()
  x = x_u8 / np.float32(255)
  key = jax.random.key(5)
  fn, params = L.autoencoder_latents(model)
  est = L.iwae_log_px(fn, params, x, key, num_samples=1)

  @nnx.jit
  def elbo(model, x):  # single-sample ELBO from the training code's pieces, same eps
    eps = rng.iwae_noise(key, jnp.arange(len(x)), jnp.arange(1), Z)[0]
    mean, logvar = model.encode(x)
    z = objectives.reparameterize(mean, logvar, eps)
    rec = decoder_likelihoods.nll("bernoulli", model.decode(z), model.log_scale[...], x)
    log_q = jnp.sum(stats.norm.logpdf(z, mean, jnp.exp(0.5 * logvar)), -1)
    return -rec - (log_q - jnp.sum(stats.norm.logpdf(z), -1))

  np.testing.assert_allclose(est, elbo(model, x), rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_mean_log_weight_is_the_analytic_elbo():
  """E_q[log w] = E_q[log p(x|z)] - KL(q || p) with the training code's analytic KL."""
  model, x_u8 = _tiny_vae(), _images()
  x = jnp.asarray(x_u8 / np.float32(255))
  fn, params = L.autoencoder_latents(model)
  lm = fn(params)
  mean, logvar = lm.encode(x)
  eps = jax.random.normal(jax.random.key(0), (20000, len(x), Z))
  lw = lm.log_weights(x, (mean, logvar), eps)
  log_lik = -jax.vmap(lambda e: decoder_likelihoods.nll(
      "bernoulli", model.decode(objectives.reparameterize(mean, logvar, e)), 0.0, x))(eps)
  kl = jnp.sum(objectives.gaussian_kl(mean, logvar), -1)
  diff = lw - (log_lik - kl)  # = log p(z) - log q(z|x) + KL: mean zero
  stderr = jnp.std(diff, 0) / math.sqrt(eps.shape[0])
  assert np.all(np.abs(jnp.mean(diff, 0)) < 4 * stderr + 1e-5)
  assert float(jnp.max(stderr)) < 0.05  # the check has power


def test_vae_estimate_rises_with_k():
  model, x_u8 = _tiny_vae(), _images()
  fn, params = L.autoencoder_latents(model)
  x = x_u8 / np.float32(255)
  means = [np.mean([L.iwae_log_px(fn, params, x, jax.random.key(s), num_samples=k, sample_chunk=1)
                    for s in range(4)]) for k in (1, 10, 100)]
  assert means[0] < means[1] < means[2], means


def test_ae_has_no_likelihood():
  with pytest.raises(ValueError, match="AE"):
    L.autoencoder_latents(_tiny_vae("ae"))


@pytest.mark.slow
def test_active_units_and_per_dim_kl():
  model, x_u8 = _tiny_vae(), _images(64)
  last = model.encoder.mlp.layers[-1]
  kernel = np.array(last.kernel[...])
  kernel[:, :Z] *= 20.0  # make the posterior means vary strongly across images ...
  kernel[:, 1] = 0.0  # ... except dimension 1, whose mean is then the same for every image
  last.kernel[...] = jnp.asarray(kernel)
  out = L.test_metrics(model, x_u8, 20, jax.random.key(0), sample_chunk=8, image_chunk=16)
  assert out["test/active_units"] == Z - 1
  assert len(out["test/kl_per_dim"]) == Z and min(out["test/kl_per_dim"]) >= 0
  mean, logvar = model.encode(jnp.asarray(x_u8, jnp.float32) / 255)
  np.testing.assert_allclose(out["test/kl_per_dim"],
                             np.mean(objectives.gaussian_kl(mean, logvar), 0), rtol=1e-5)
  assert out["test/bpd"] == pytest.approx(out["test/nll"] / (16 * math.log(2)))
  assert out["test/nll_k"] == 20 and out["test/nll_stderr"] > 0


def test_compilation_is_timed_apart_from_the_compiled_work(monkeypatch):
  """One compile per estimate, on the shapes of the full evaluation (a warm-up on other
  shapes would compile twice), timed apart from the chunks it then runs."""
  params = _params()
  x, _ = _data(n=50)
  lowered = []
  real_lower = L._log_px_chunk_jit.lower  # pylint: disable=protected-access

  class Counting:
    def lower(self, *a, **kw):
      lowered.append(a[2].shape)
      return real_lower(*a, **kw)

  monkeypatch.setattr(L, "_log_px_chunk_jit", Counting())
  timing = {}
  est = L.iwae_log_px(linear_model, params, x, jax.random.key(0), num_samples=8, image_chunk=16,
                      timing=timing)
  assert lowered == [(64, x.shape[1])]  # padded to 4 chunks of 16, all run by the one executable
  assert timing["compile_seconds"] > 0 and timing["seconds"] > 0
  monkeypatch.undo()
  np.testing.assert_array_equal(est, L.iwae_log_px(linear_model, params, x, jax.random.key(0),
                                                   num_samples=8, image_chunk=16))
