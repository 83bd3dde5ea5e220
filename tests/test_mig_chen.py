"""Chen et al.'s MIG (`analysis.mig_chen`) on factor grids with known answers, against a numpy
transcription of their estimator, and its absence where it is undefined."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from scipy.special import logsumexp

from tests.helpers import factor_grid, grid_dataset, tiny_config
from vae_jax import data as data_lib, models
from vae_jax.analysis import factors as factors_lib
from vae_jax.analysis import metrics
from vae_jax.analysis import mig_chen as mc

SIZES = (4, 5, 3)


def _reference_mi(mean, logvar, factors, which, seed, num_samples):
  """Their estimate_entropies / mutual_info_metric_shapes in float64 numpy, on the same z and
  the same sample points."""
  z = np.asarray(mc.sample_codes(mean, logvar, seed), np.float64)
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  entropies = {}
  for k, v, rows, positions in mc.sample_sets(factors, which, num_samples, seed):
    zs = z[rows[positions]]  # (S, Z) samples of the set
    m, lv = mean[rows][None], logvar[rows][None]  # (1, M, Z) its posteriors
    log_q = -0.5 * (np.log(2 * np.pi) + lv + (zs[:, None, :] - m) ** 2 / np.exp(lv))
    entropies[k, v] = (-np.mean(logsumexp(log_q, axis=1) - np.log(len(rows)), axis=0),
                       len(rows) / len(factors))
  marginal = entropies[None, 0][0]
  cond = np.stack([sum(w * h for (kk, _), (h, w) in entropies.items() if kk == k)
                   for k in which], axis=1)
  return marginal[:, None] - cond


def test_a_code_that_copies_each_factor_has_mig_one():
  # Unit j is factor j (spacing 1, sigma 1e-3), two more units are N(0, 1) noise. With every
  # image a sample point (S >= N) the estimator's sample noise cancels between H(z_j) and
  # H(z_j | v_k): I(z_j; v_j) = log K_j exactly, every other MI 0, so MIG = 1.
  f = factor_grid(SIZES, repeat=2)
  n = len(f)
  mean = np.concatenate([f, np.zeros((n, 2))], 1).astype(np.float32)
  logvar = np.concatenate([np.full((n, 3), 2 * np.log(1e-3)), np.zeros((n, 2))],
                          1).astype(np.float32)
  r = mc.mig_chen(mean, logvar, f, SIZES, seed=0, num_samples=n)
  expected = np.zeros((5, 3))
  expected[np.arange(3), np.arange(3)] = np.log(SIZES)
  np.testing.assert_allclose(r["mi_nats"], expected, atol=2e-5)
  assert r["mig_chen"] == pytest.approx(1.0, abs=2e-5)
  assert r["factors"] == (0, 1, 2)
  # Subsampled (S = 40 of 120 per set), the noise of -log N(eps) no longer cancels, but
  # copies stay far apart: the gap is still log K_j up to a few hundredths.
  r = mc.mig_chen(mean, logvar, f, SIZES, seed=1, num_samples=40)
  assert r["mig_chen"] == pytest.approx(1.0, abs=0.15)
  assert np.argmax(r["mi_nats"], axis=0).tolist() == [0, 1, 2]


def test_a_code_independent_of_the_factors_has_mig_zero():
  # Every factor combination appears once with each of 7 nuisance codes: the posteriors with
  # v_k = v are the same mixture as all of them, so H(z_j | v_k) = H(z_j) and every MI is 0.
  nuisance = np.random.default_rng(0).normal(size=(7, 4))
  f = factor_grid(SIZES, repeat=7)
  n = len(f)
  r_idx = np.tile(np.arange(7), n // 7)
  mean = nuisance[r_idx].astype(np.float32)
  logvar = np.full((n, 4), np.log(0.3**2), np.float32)
  r = mc.mig_chen(mean, logvar, f, SIZES, seed=0, num_samples=n)
  np.testing.assert_allclose(r["mi_nats"], 0.0, atol=2e-5)
  assert 0.0 <= r["mig_chen"] < 2e-5


def test_the_estimator_equals_a_numpy_transcription_of_theirs():
  rng = np.random.default_rng(2)
  f = factor_grid(SIZES, repeat=3)
  n = len(f)
  mean = (rng.normal(size=(n, 5)) + 0.8 * f[:, [0, 1, 2, 0, 1]]).astype(np.float32)
  logvar = rng.normal(-1.0, 0.7, size=(n, 5)).astype(np.float32)
  which = (0, 2)
  r = mc.mig_chen(mean, logvar, f, SIZES, which, seed=5, num_samples=50, chunk=16, block=32)
  mi = _reference_mi(mean, logvar, f, which, seed=5, num_samples=50)
  np.testing.assert_allclose(r["mi_nats"], mi, atol=2e-5)
  assert r["mig_chen"] == pytest.approx(mc.mig_from_mi(mi, [SIZES[k] for k in which]), abs=2e-5)
  # Their metric by hand: sort, clamp, divide by log(size), best minus second.
  normed = np.clip(np.sort(mi, axis=0)[::-1], 0, None) / np.log([4, 3])
  assert r["mig_chen"] == pytest.approx(np.mean(normed[0] - normed[1]), abs=2e-5)
  # The sample subsets are the first S of a permutation, S = min(num_samples, set size).
  sets = mc.sample_sets(f, which, 50, seed=5)  # 180 images: 45 per value of factor 0
  assert [len(p) for *_, p in sets] == [50] + [45] * 4 + [50] * 3
  assert all(len(set(p.tolist())) == len(p) for *_, p in sets)
  assert [len(p) for *_, p in mc.sample_sets(f, (0,), 1000, 0)] == [n] + [n // 4] * 4


def test_chunks_and_blocks_do_not_change_the_result():
  rng = np.random.default_rng(3)
  f = factor_grid(SIZES, repeat=2)
  n = len(f)
  mean = (rng.normal(size=(n, 3)) + f).astype(np.float32)
  logvar = rng.normal(-2.0, 1.0, size=(n, 3)).astype(np.float32)
  a = mc.mig_chen(mean, logvar, f, SIZES, seed=0, num_samples=70, chunk=7, block=16)
  b = mc.mig_chen(mean, logvar, f, SIZES, seed=0, num_samples=70, chunk=128, block=512)
  np.testing.assert_allclose(a["mi_nats"], b["mi_nats"], atol=1e-5)
  assert a["mig_chen"] == pytest.approx(b["mig_chen"], abs=1e-5)


def test_log_variances_too_far_apart_for_the_one_pass_sum_take_the_exact_path():
  # A unit whose posteriors' log-variances span 230 nats: the shifted one-pass sum underflows
  # for samples of the wide posteriors and those chunks are redone with a two-pass logsumexp.
  f = factor_grid((2, 3), repeat=4)
  n = len(f)
  logvar = np.where(np.arange(n) % 2 == 0, -80.0, 150.0)[:, None].astype(np.float32)
  mean = np.zeros((n, 1), np.float32)
  r = mc.mig_chen(mean, logvar, f, (2, 3), seed=0, num_samples=n, chunk=4, block=8)
  assert np.all(np.isfinite(r["marginal_entropy"]))
  np.testing.assert_allclose(r["marginal_entropy"],
                             _reference_marginal(mean, logvar, f, seed=0), rtol=1e-5)


def _reference_marginal(mean, logvar, factors, seed):
  z = np.asarray(mc.sample_codes(mean, logvar, seed), np.float64)
  _, _, rows, positions = mc.sample_sets(factors, (), len(factors), seed)[0]
  zs = z[rows[positions]]
  lv = np.asarray(logvar, np.float64)[None]
  log_q = -0.5 * (np.log(2 * np.pi) + lv + (zs[:, None, :] - mean[None]) ** 2 / np.exp(lv))
  return -np.mean(logsumexp(log_q, axis=1) - np.log(len(factors)), axis=0)


def test_factors_used_follow_chen_on_dsprites_and_need_a_varying_factor():
  f = factor_grid((3, 2, 2, 4, 4))
  names = ("shape", "scale", "orientation", "position_x", "position_y")
  assert mc.factors_used("dsprites", names, f) == (1, 2, 3, 4)
  assert mc.factors_used("tfds:dsprites", ("label_shape", "label_scale"), f[:, :2]) == (1,)
  assert mc.factors_used("shapes3d", names, f) == (0, 1, 2, 3, 4)
  constant = np.zeros((10, 2), np.int32)
  constant[:, 1] = np.arange(10) % 2
  assert mc.factors_used("x", ("a", "b"), constant) == (1,)
  with pytest.raises(mc.Unavailable, match="more than one value"):
    mc.mig_chen(np.zeros((10, 2)), np.zeros((10, 2)), np.zeros((10, 1), np.int32), (1,))


def test_a_vae_gets_a_number_and_an_ae_none():
  ds = grid_dataset()
  shape = (8, 8, 1)
  vae = models.from_config(tiny_config(**{"model.latent_dim": 3}).model, shape, nnx.Rngs(0))
  r = mc.mig_chen_of_model(vae, ds, seed=0, num_samples=12)
  assert 0.0 <= r["mig_chen"] <= 1.0 and r["factor_names"] == ("row", "col")
  assert r["mi_nats"].shape == (3, 2)
  mean, logvar = mc.posteriors(vae, ds, batch=5)  # batches change nothing
  np.testing.assert_allclose(mean, mc.posteriors(vae, ds)[0], atol=1e-6)
  assert mean.shape == logvar.shape == (12, 3)
  ae = models.from_config(tiny_config(**{"model.name": "ae", "model.latent_dim": 3}).model,
                          shape, nnx.Rngs(0))
  assert "AE has no posterior" in mc.unavailable_reason(ae, ds)
  assert mc.unavailable_reason(vae, ds) is None
  with pytest.raises(mc.Unavailable, match="AE"):
    mc.mig_chen_of_model(ae, ds)
  one_value = data_lib.Dataset("grid", "static", ds.train_images, np.zeros_like(ds.train_labels),
                               ds.test_images, ds.test_labels, ("row", "col"), (3, 4))
  assert "no factor" in mc.unavailable_reason(vae, one_value)
  # In the registry's results: a number for the VAE; for the AE no key, and the reason; and
  # none for a VAE of one unit, which has no second-best unit to take a gap to.
  def chen(model):
    inputs = metrics.Inputs(factors_lib.factor_data(ds), factors_lib.representation(model), 0,
                            num_samples_scale=0.01, model=model, dataset=ds)
    return metrics.evaluate(inputs, ["mig_chen"])

  got = chen(vae)
  assert 0.0 <= got.scores["mig_chen"] <= 1.0 and got.not_computed == {}
  got = chen(ae)
  assert got.scores == {} and "AE has no posterior" in got.not_computed["mig_chen"]
  one_unit = models.from_config(tiny_config(**{"model.latent_dim": 1}).model, shape, nnx.Rngs(0))
  assert "needs at least 2 code dimensions" in chen(one_unit).not_computed["mig_chen"]
