"""The KL decomposition (Chen et al., 2018) against brute-force aggregate posteriors."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.objectives import kl_decomposition as kd


def _log_normal(z, mean, logvar):
  return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean)**2 * np.exp(-logvar))


def _logsumexp(a, axis):
  m = np.max(a, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _brute_force(mean_NxZ, logvar_NxZ, z_BxZ):
  """Exact log q(z) = log (1/N) Σ_n q(z|n) and log Π_d q(z_d) at each z, in float64."""
  pair_BxNxZ = _log_normal(z_BxZ[:, None, :], mean_NxZ[None], logvar_NxZ[None])
  n = len(mean_NxZ)
  log_qz = _logsumexp(pair_BxNxZ.sum(-1), axis=1) - math.log(n)
  log_prod = np.sum(_logsumexp(pair_BxNxZ, axis=1) - math.log(n), axis=-1)
  return log_qz, log_prod


def _posterior_batch(seed, b, z_dim, spread=1.0):
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=(b, z_dim)) * spread
  logvar = rng.normal(size=(b, z_dim)) * 0.3 - 0.5
  z = mean + np.exp(0.5 * logvar) * rng.normal(size=(b, z_dim))
  return mean, logvar, z


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_terms_sum_to_the_kl_estimate(estimator):
  mean, logvar, z = _posterior_batch(0, 16, 4)
  out = {k: float(v) for k, v in kd.decompose(mean, logvar, z, 1000, estimator).items()}
  assert set(out) == {"index_code_mi", "total_correlation", "dimwise_kl", "kl"}
  total = out["index_code_mi"] + out["total_correlation"] + out["dimwise_kl"]
  np.testing.assert_allclose(total, out["kl"], rtol=0, atol=1e-5)
  # kl is the Monte Carlo E_q[log q(z|x) - log p(z)] on these samples.
  mc = np.mean(np.sum(_log_normal(z, mean, logvar) - _log_normal(z, 0.0, 0.0), axis=-1))
  np.testing.assert_allclose(out["kl"], mc, rtol=1e-5)


def test_full_batch_against_brute_force():
  # N = B = 3 data points, 2 latent dims: the batch is the whole dataset.
  mean, logvar, z = _posterior_batch(1, 3, 2, spread=0.7)
  exact_qz, exact_prod = _brute_force(mean, logvar, z)
  log_qzx, log_qz, log_prod, log_pz = map(np.asarray, kd.log_qz_estimates(mean, logvar, z, 3,
                                                                          "mws"))
  np.testing.assert_allclose(log_qzx, _log_normal(z, mean, logvar).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(log_pz, _log_normal(z, 0.0, 0.0).sum(-1), rtol=1e-5)
  # MWS with the batch = the dataset is exactly off by its constant: -log B per density.
  np.testing.assert_allclose(log_qz, exact_qz - math.log(3), rtol=1e-5)
  np.testing.assert_allclose(log_prod, exact_prod - 2 * math.log(3), rtol=1e-5)

  # MSS with N = B is the mixture with weights 1/N (own), 1/(N(N-1)) (the next element, mod B)
  # and 1/(N-1) (the rest): rows sum to 1, but it is not exactly q(z).
  w = np.array([[1 / 3, 1 / 6, 1 / 2], [1 / 2, 1 / 3, 1 / 6], [1 / 6, 1 / 2, 1 / 3]])
  np.testing.assert_allclose(np.exp(np.asarray(kd.log_importance_weights(3, 3))), w, rtol=1e-6)
  pair = _log_normal(z[:, None, :], mean[None], logvar[None])
  mss_qz = np.log(np.sum(w * np.exp(pair.sum(-1)), axis=1))
  mss_prod = np.sum(np.log(np.sum(w[:, :, None] * np.exp(pair), axis=1)), axis=-1)
  _, log_qz, log_prod, _ = map(np.asarray, kd.log_qz_estimates(mean, logvar, z, 3, "mss"))
  np.testing.assert_allclose(log_qz, mss_qz, rtol=1e-5)
  np.testing.assert_allclose(log_prod, mss_prod, rtol=1e-5)
  assert np.max(np.abs(log_qz - exact_qz)) > 1e-3  # the weights are not uniform


def test_mss_is_unbiased_for_q_over_the_stratified_batches():
  # N = 4 points, batches of B = 3 holding n* first and two others drawn without replacement:
  # averaged over all such ordered batches, the MSS estimate of q(z) (not log q) is exact.
  n_data, b = 4, 3
  mean, logvar, _ = _posterior_batch(2, n_data, 2, spread=0.8)
  z_query = np.array([0.3, -0.4])
  exact_qz, _ = _brute_force(mean, logvar, z_query[None])
  for n_star in range(n_data):
    others = [n for n in range(n_data) if n != n_star]
    q_joint, q_dim0 = [], []
    for rest in itertools.permutations(others, b - 1):
      idx = [n_star, *rest]
      zb = np.tile(z_query, (b, 1))  # only row 0 (the sample of n*) is read
      _, lq, _, _ = kd.log_qz_estimates(mean[idx], logvar[idx], zb, n_data, "mss")
      _, _, lp0, _ = kd.log_qz_estimates(mean[idx, :1], logvar[idx, :1], zb[:, :1], n_data,
                                         "mss")
      q_joint.append(np.exp(float(lq[0])))
      q_dim0.append(np.exp(float(lp0[0])))
    np.testing.assert_allclose(np.mean(q_joint), np.exp(exact_qz[0]), rtol=1e-5)
    exact_dim0 = np.mean(np.exp(_log_normal(z_query[0], mean[:, 0], logvar[:, 0])))
    np.testing.assert_allclose(np.mean(q_dim0), exact_dim0, rtol=1e-5)


def _grid_posteriors(side, correlated):
  """side**2 posteriors with means on a side x side grid (or on its diagonal), equal widths."""
  vals = np.linspace(-1.5, 1.5, side)
  if correlated:
    m = np.linspace(-1.5, 1.5, side * side)
    mean = np.stack([m, m], axis=1)
  else:
    mean = np.stack(np.meshgrid(vals, vals, indexing="ij"), -1).reshape(-1, 2)
  logvar = np.full_like(mean, math.log(0.2**2))
  z = mean + 0.2 * np.random.default_rng(3).normal(size=mean.shape)
  return mean, logvar, z


def test_total_correlation_vanishes_for_a_factorised_aggregate_posterior():
  # Means on a grid with equal, diagonal posteriors: q(z) = q(z_1) q(z_2) exactly.
  mean, logvar, z = _grid_posteriors(8, correlated=False)
  n = len(mean)  # 64, the batch is the dataset
  exact_qz, exact_prod = _brute_force(mean, logvar, z)
  np.testing.assert_allclose(exact_qz, exact_prod, rtol=1e-9)  # the premise
  mws = kd.decompose(mean, logvar, z, n, "mws")
  # MWS's constants: TC comes out exactly (Z - 1) log B above the (here zero) truth.
  np.testing.assert_allclose(float(mws["total_correlation"]), math.log(n), rtol=1e-4)
  # MSS on a shuffled batch (as minibatches are; the (i, i + 1) weight then falls on a random
  # other point rather than on a grid neighbour): close to zero.
  perm = np.random.default_rng(0).permutation(n)
  mss = kd.decompose(mean[perm], logvar[perm], z[perm], n, "mss")
  assert abs(float(mss["total_correlation"])) < 0.05, mss
  # The same points along a line (strongly dependent dims): a large TC.
  mean_c, logvar_c, z_c = _grid_posteriors(8, correlated=True)
  exact_qz_c, exact_prod_c = _brute_force(mean_c, logvar_c, z_c)
  true_tc = float(np.mean(exact_qz_c - exact_prod_c))
  tc_c = float(kd.decompose(mean_c[perm], logvar_c[perm], z_c[perm], n,
                            "mss")["total_correlation"])
  assert true_tc > 1.0
  assert abs(tc_c - true_tc) < 0.1 * true_tc, (tc_c, true_tc)


def test_jit_and_argument_checks():
  mean, logvar, z = _posterior_batch(4, 8, 3)
  eager = kd.decompose(mean, logvar, z, 500, "mss")
  jitted = jax.jit(kd.decompose, static_argnums=(3, 4))(mean, logvar, z, 500, "mss")
  for k in eager:
    np.testing.assert_allclose(float(jitted[k]), float(eager[k]), rtol=1e-5)
  with pytest.raises(ValueError):
    kd.decompose(mean, logvar, z, 500, "exact")
  with pytest.raises(ValueError):
    kd.decompose(mean, logvar, z, 4, "mss")  # dataset smaller than the batch
  with pytest.raises(ValueError):
    kd.decompose(mean[:1], logvar[:1], z[:1], 500, "mss")


def _linear_vae_decomposition(images_u8, num_points):
  """The training loop's test KL decomposition (`step.build_kl_decomposition`) of a VAE whose
  encoder is set by hand to q(z_d|x) = N(6 x_d - 1, 0.05^2) for the two pixels x of each image."""
  from flax import nnx
  from vae_jax import models, step
  from tests.helpers import tiny_config
  config = tiny_config(**{"model.hidden_sizes": (), "model.latent_dim": 2})
  shape = images_u8.shape[1:]
  graphdef, params, rest = models.init_params(config, shape)
  layer = params["encoder"]["mlp"]["layers"][0]
  layer["kernel"] = np.concatenate([6.0 * np.eye(2), np.zeros((2, 2))], 1).astype(np.float32)
  layer["bias"] = np.r_[-1.0, -1.0, 2 * np.log(0.05), 2 * np.log(0.05)].astype(np.float32)
  n = len(images_u8)
  run = step.build_kl_decomposition(graphdef=graphdef, rest=rest, config=config,
                                    image_shape=shape, num_members=1, num_test=n,
                                    num_points=num_points, eval_batch=n)
  stacked = jax.tree.map(lambda a: np.asarray(a)[None], params)
  out = run(stacked, images_u8, np.ones(n, np.float32), np.zeros(1, np.uint32))
  del nnx
  return {k: float(v[0]) for k, v in out.items()}


def test_test_split_decomposition_is_not_scored_on_its_first_images():
  # A split ordered as a factor dataset's is: the first images are the crowded corner of q(z)
  # (both pixels dark), the last ones its sparse tail. Scoring z at the first 250 of 1,000
  # images (what the loop did) overstates log q(z) there: each term comes out 1.0-1.6 nats
  # off. A fixed random subset of 250 must agree with scoring all 1,000 (to Monte Carlo
  # error: 0.2 nats here).
  n = 1000
  x = np.round(255 * np.linspace(0, 1, n) ** 3)
  images = np.stack([x, np.roll(x, 7)], 1).reshape(n, 1, 2, 1).astype(np.uint8)
  full = _linear_vae_decomposition(images, n)
  subset = _linear_vae_decomposition(images, n // 4)
  first = kd.decompose_over_dataset(*_linear_posteriors(images), np.arange(n // 4))
  for k in ("index_code_mi", "total_correlation", "dimwise_kl"):
    assert abs(float(first[k]) - full[k]) > 0.9, (k, float(first[k]), full[k])  # the bias
    assert abs(subset[k] - full[k]) < 0.4, (k, subset[k], full[k])
  assert sorted(kd.evaluation_points(n, n // 4)) == list(kd.evaluation_points(n, n // 4))
  assert len(set(kd.evaluation_points(n, n // 4))) == n // 4
  np.testing.assert_array_equal(kd.evaluation_points(10, 50), np.arange(10))


def _linear_posteriors(images_u8):
  """(mean, logvar, eps, mask) of `_linear_vae_decomposition`'s encoder, for the first-rows
  scoring that the training loop used before: z at rows 0..P-1."""
  x = images_u8.reshape(len(images_u8), -1).astype(np.float32) / 255.0
  mean = 6.0 * x - 1.0
  logvar = np.full_like(mean, 2 * np.log(0.05))
  eps = np.random.default_rng(0).normal(size=(len(x) // 4, 2)).astype(np.float32)
  return mean, logvar, eps, np.ones(len(x), np.float32)


def _direct_log_qz(mean, logvar, z, log_w):
  """The estimates written directly over the (B, B, Z) pairwise densities, for autodiff."""
  pair = kd.pairwise_log_density(mean, logvar, z)
  return (jax.nn.logsumexp(pair.sum(-1) + log_w, axis=1),
          jax.nn.logsumexp(pair + log_w[:, :, None], axis=1))


def _weighted_loss(fn, g_qz, g_qzj):
  """A scalar that weights every output differently, so each cotangent is checked."""
  def loss(mean, logvar, z, log_w):
    log_qz, log_qzj = fn(mean, logvar, z, log_w)
    return jnp.sum(g_qz * log_qz) + jnp.sum(g_qzj * log_qzj)
  return loss


@pytest.mark.parametrize("estimator,b,z_dim,spread", [("mss", 37, 5, 1.0), ("mws", 37, 5, 1.0),
                                                      ("mss", 2, 1, 1.0), ("mss", 64, 10, 4.0)])
def test_batch_log_qz_values_and_gradients_match_the_direct_form(estimator, b, z_dim, spread):
  with jax.enable_x64(True):
    mean, logvar, z = _posterior_batch(3, b, z_dim, spread)
    log_w = kd.log_importance_weights(b, 1000, estimator, jnp.float64)
    rng = np.random.default_rng(4)
    g_qz, g_qzj = rng.normal(size=b), rng.normal(size=(b, z_dim))
    want = jax.jit(_direct_log_qz)(mean, logvar, z, log_w)
    got = jax.jit(kd.batch_log_qz)(mean, logvar, z, log_w)
    for w, g in zip(want, got):
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-12, atol=1e-12)
    grads_want = jax.jit(jax.grad(_weighted_loss(_direct_log_qz, g_qz, g_qzj),
                                  argnums=(0, 1, 2)))(mean, logvar, z, log_w)
    grads_got = jax.jit(jax.grad(_weighted_loss(kd.batch_log_qz, g_qz, g_qzj),
                                 argnums=(0, 1, 2)))(mean, logvar, z, log_w)
    for name, w, g in zip(("mean", "logvar", "z"), grads_want, grads_got):
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10, atol=1e-12,
                                 err_msg=name)


def test_batch_log_qz_falls_back_to_the_exact_form_where_the_bound_underflows():
  # Points far apart, so each row's only real term is its own posterior at weight 1/N; N huge,
  # and one posterior so tight on dimension 0 that it lifts that dimension's shared shift by
  # 30 nats: the other rows' shifted sums there fall below float32's smallest number (0).
  mean, logvar, z = _posterior_batch(5, 8, 3, spread=1000.0)
  logvar[0, 0], z[0, 0] = -60.0, mean[0, 0]
  log_w = kd.log_importance_weights(8, 1e36, "mss")
  args = tuple(jnp.asarray(a, jnp.float32) for a in (mean, logvar, z))
  want = _direct_log_qz(*args, log_w)
  shift = float(jnp.max(log_w)) + float(jnp.max(-0.5 * (math.log(2 * math.pi) + args[1][:, 0])))
  assert float(jnp.max(want[1][1:, 0])) - shift < -104  # the premise: e^that is 0 in float32
  got = jax.jit(kd.batch_log_qz)(*args, log_w)
  assert np.all(np.isfinite(np.asarray(got[1])))
  for w, g in zip(want, got):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5)


@pytest.mark.parametrize("b", [2, 3, 5, 64])
def test_the_authors_code_matrix_is_what_its_flat_view_assignments_build(b):
  # The authors' construction, replayed on a NumPy array: fill with 1/M (M = B - 1), then
  # every (M + 1)-th entry of the flattened matrix from 0 gets 1/N and from 1 the stratum
  # weight, then entry (M - 1, 0) the stratum weight.
  n = 1000
  m = b - 1
  stratum = (n - m) / (n * m)
  w = np.full((b, b), 1.0 / m)
  flat = w.reshape(-1)
  flat[::m + 1] = 1.0 / n
  flat[1::m + 1] = stratum
  w[m - 1, 0] = stratum
  with jax.enable_x64(True):
    got = np.exp(np.asarray(kd.log_importance_weights(b, n, "mss_rtqichen", jnp.float64)))
    paper = np.exp(np.asarray(kd.log_importance_weights(b, n, "mss", jnp.float64)))
  np.testing.assert_allclose(got, w, rtol=1e-12)
  if b > 2:  # not the paper's: the diagonal from row 2 on weighs 1/M, not 1/N
    assert np.diag(got)[2:] == pytest.approx(1.0 / m) and np.diag(paper) == pytest.approx(1.0 / n)
