"""disentanglement_lib's metrics on synthetic factor grids with known answers.

The ground-truth data are the full grid of three factors of sizes (3, 4, 5) (or (4, 4, 3)),
observed as their own indices; representations are the standardised factors (a perfect code),
a rotation of them, and noise. Sample counts are 3-5% of the study's (num_samples_scale).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vae_jax.analysis import disentanglement as dis

SIZES = (3, 4, 5)
SCALE = 0.05  # 500 training points where the study uses 10,000


def _grid(sizes):
  return np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"),
                  -1).reshape(-1, len(sizes))


def _grid_data(sizes=SIZES):
  grid = _grid(sizes)
  return dis.factor_data_from_arrays(grid.astype(np.float64), grid)


def _standardise(sizes):
  sizes = np.asarray(sizes, np.float64)
  mean, std = (sizes - 1) / 2, np.sqrt((sizes**2 - 1) / 12)  # of a uniform index 0 .. s-1
  return lambda x: (np.asarray(x) - mean) / std


def _rotation(dim, seed):
  q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
  return q * np.sign(np.diag(r))


def _noise(dim, seed):
  rng = np.random.default_rng(seed)
  return lambda x: rng.normal(size=(len(x), dim))


@pytest.fixture(scope="module")
def scores():
  data = _grid_data()
  truth = _standardise(SIZES)
  q = _rotation(3, 0)
  reps = {"truth": truth, "rotated": lambda x: truth(x) @ q, "noise": _noise(3, 1)}
  return {k: dis.compute_all(data, rep, 0, num_samples_scale=SCALE) for k, rep in reps.items()}


def test_factor_data_from_arrays_looks_up_observations():
  grid = _grid((2, 3))
  perm = np.random.default_rng(0).permutation(len(grid))
  images = np.arange(len(grid))[perm] * 10  # observation n is 10 x (its row in the grid)
  data = dis.factor_data_from_arrays(images, grid[perm], factor_names=("a", "b"))
  assert data.factor_sizes == (2, 3) and data.factor_names == ("a", "b")
  f = data.sample_factors(50, 0)
  assert f.shape == (50, 2) and f.min() >= 0 and np.all(f.max(0) < [2, 3])
  np.testing.assert_array_equal(data.observations(f, 0), (f[:, 0] * 3 + f[:, 1]) * 10)
  with pytest.raises(ValueError, match="full factor grid"):
    dis.factor_data_from_arrays(images[1:], grid[perm][1:], factor_sizes=(2, 3))
  # A combination seen twice: either of its observations comes back.
  dup = dis.factor_data_from_arrays(np.concatenate([images, [-1]]),
                                    np.concatenate([grid[perm], [[1, 2]]]))
  seen = set(dup.observations(np.tile([[1, 2]], (40, 1)), 0).tolist())
  assert seen == {50, -1}


@pytest.mark.slow
def test_scores_are_dicts_of_floats_in_the_unit_interval(scores):
  for rep_scores in scores.values():
    assert tuple(rep_scores) == dis.SCORE_KEYS
    for v in rep_scores.values():
      assert isinstance(v, float) and 0.0 <= v <= 1.0


@pytest.mark.slow
def test_ground_truth_scores_at_or_near_the_maximum(scores):
  s = scores["truth"]
  for k in ("beta_vae", "factor_vae", "dci_disentanglement", "dci_completeness",
            "dci_informativeness", "modularity"):
    assert s[k] >= 0.98, (k, s[k])
  assert s["mig"] >= 0.95  # 1 minus the plug-in MI bias of the second-best code
  assert s["explicitness"] >= 0.95


def test_ground_truth_sap_at_its_ceiling():
  # SAP's ceiling for discrete factors is below 1: the second-best code, which knows nothing of
  # the factor, still scores about the chance accuracy of a class-balanced classifier (1/K), so a
  # factor of K values gives at most about 1 - 1/K; here mean(1 - 1/K) = 0.74. The one-feature
  # linear SVM (C = 0.01, not scaled with the sample size) reads the 4- and 5-valued factors
  # perfectly only with the study's 10,000 points, so this runs SAP at its defaults (0.3 s).
  ceiling = np.mean([1 - 1 / k for k in SIZES])
  value = dis.sap(_grid_data(), _standardise(SIZES), 0)["sap"]
  assert ceiling - 0.03 <= value <= ceiling + 0.03, value


def test_a_rotation_lowers_the_disentanglement_scores(scores):
  truth, rot = scores["truth"], scores["rotated"]
  for k in ("mig", "dci_disentanglement", "dci_completeness", "modularity"):
    assert rot[k] < truth[k] - 0.1, (k, rot[k], truth[k])
  data, z = _grid_data(), _standardise(SIZES)  # SAP at its defaults (see the test above)
  sap_rot = dis.sap(data, lambda x: z(x) @ _rotation(3, 0), 0)["sap"]
  assert sap_rot < dis.sap(data, z, 0)["sap"] - 0.1, sap_rot
  assert rot["mig"] < 0.6 and rot["dci_disentanglement"] < 0.85
  # What a rotation keeps: the information (a linear classifier still reads every factor), and
  # the β-VAE score, which asks only that the fixed factor be linearly identifiable from
  # mean |Δcode|. (FactorVAE's argmin can survive a generic rotation too; see the next test.)
  assert rot["explicitness"] > 0.95
  assert rot["beta_vae"] > 0.9


def test_mixing_two_equal_factors_at_45_degrees_confuses_factor_vae_and_beta_vae():
  # Codes (a + b)/√2, (a - b)/√2, c with a and b of the same size: fixing a (or b) shrinks both
  # mixed codes' variance alike, so FactorVAE's least-variance vote is a coin flip between them
  # for those two factors: accuracy about (1/2 + 1/2 + 1) / 3 = 2/3 instead of 1. The β-VAE
  # features |Δ((a+b)/√2)|, |Δ((a-b)/√2)| are then |Δb|/√2 twice or |Δa|/√2 twice, identically
  # distributed, so its classifier cannot tell a from b either: also about 2/3.
  sizes = (4, 4, 3)
  data = _grid_data(sizes)
  truth = _standardise(sizes)
  mix = np.array([[1, 1, 0], [1, -1, 0], [0, 0, math.sqrt(2)]]).T / math.sqrt(2)
  kw = dict(num_train=300, num_eval=300, num_variance_estimate=500)
  clean = dis.factor_vae_score(data, truth, 0, **kw)["factor_vae"]
  mixed = dis.factor_vae_score(data, lambda x: truth(x) @ mix, 0, **kw)["factor_vae"]
  assert clean == 1.0
  assert 0.5 < mixed < 0.8, mixed
  kw = dict(num_train=300, num_eval=300)
  assert dis.beta_vae_score(data, truth, 0, **kw)["beta_vae"] == 1.0
  mixed = dis.beta_vae_score(data, lambda x: truth(x) @ mix, 0, **kw)["beta_vae"]
  assert 0.5 < mixed < 0.8, mixed


def test_noise_scores_zero_or_chance(scores):
  s = scores["noise"]
  chance = 1 / len(SIZES)
  assert s["mig"] < 0.05 and s["sap"] < 0.05
  assert s["dci_disentanglement"] < 0.1 and s["dci_completeness"] < 0.1
  assert abs(s["beta_vae"] - chance) < 0.1, s["beta_vae"]
  assert abs(s["factor_vae"] - chance) < 0.12, s["factor_vae"]
  assert abs(s["explicitness"] - 0.5) < 0.05
  assert abs(s["dci_informativeness"] - np.mean([1 / k for k in SIZES])) < 0.06


def test_a_duplicated_factor_lowers_completeness_not_disentanglement():
  rng = np.random.default_rng(0)
  f_tr = np.stack([rng.integers(0, k, 600) for k in SIZES], axis=1)
  f_te = np.stack([rng.integers(0, k, 300) for k in SIZES], axis=1)
  z = _standardise(SIZES)
  plain = dis.dci_from_codes(z(f_tr), f_tr, z(f_te), f_te)
  dup = lambda f: np.concatenate([z(f), z(f)[:, :1]], axis=1)  # factor 0 in two codes
  doubled = dis.dci_from_codes(dup(f_tr), f_tr, dup(f_te), f_te)
  assert plain["dci_disentanglement"] > 0.98 and plain["dci_completeness"] > 0.98
  assert doubled["dci_disentanglement"] > 0.95
  assert doubled["dci_completeness"] < plain["dci_completeness"] - 0.08
  # The factors' classifiers are fitted in threads, largest factor first: each column is still
  # its own factor's classifier, fitted alone.
  importance, _, _ = dis.dci_importance_matrix(dup(f_tr), f_tr, dup(f_te), f_te, n_jobs=2)
  for f in range(len(SIZES)):
    alone = dis._gradient_boosting(0).fit(dup(f_tr), f_tr[:, f])  # pylint: disable=protected-access
    np.testing.assert_array_equal(importance[:, f], alone.feature_importances_)
  # MIG punishes the duplicate outright: factor 0's gap is 0, so MIG loses about a third.
  assert dis.mig_from_codes(z(f_tr), f_tr) > 0.95
  assert abs(dis.mig_from_codes(dup(f_tr), f_tr) - 2 / 3) < 0.04


def test_dci_and_modularity_closed_forms():
  d, c = dis.dci_from_importance(np.eye(3))
  assert d == pytest.approx(1.0, abs=1e-6) and c == pytest.approx(1.0, abs=1e-6)
  d, c = dis.dci_from_importance(np.ones((3, 3)))
  assert d == pytest.approx(0.0, abs=1e-6) and c == pytest.approx(0.0, abs=1e-6)
  # Factor 0 split evenly over codes 0 and 1, factor 1 on code 2.
  d, c = dis.dci_from_importance(np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 1.0]]))
  assert d == pytest.approx(1.0, abs=1e-6)
  assert c == pytest.approx(0.5 * (1 - math.log(2) / math.log(3)) + 0.5, abs=1e-6)
  assert dis.modularity_from_mi(np.diag([0.3, 0.7])) == pytest.approx(1.0)
  assert dis.modularity_from_mi(np.array([[0.5, 0.5], [0.0, 0.0]])) == pytest.approx(0.0)


def test_histogram_discretisation_matches_disentanglement_lib():
  x = np.array([[0.0], [0.5], [1.0], [0.96]])
  np.testing.assert_array_equal(dis.histogram_discretize(x, 20)[:, 0], [1, 11, 20, 20])


def test_sap_continuous_and_factor_vae_pruning():
  rng = np.random.default_rng(0)
  f = np.stack([rng.integers(0, k, 500) for k in SIZES], axis=1)
  z = _standardise(SIZES)(f)
  assert dis.sap_from_codes(z, f, continuous_factors=True) > 0.95
  data = _grid_data()
  truth = _standardise(SIZES)
  kw = dict(num_train=200, num_eval=200, num_variance_estimate=300)
  # A collapsed (constant) extra dimension is pruned, not voted for (its variance ratio is 0/0).
  with_dead = lambda x: np.concatenate([truth(x), np.zeros((len(x), 1))], axis=1)
  assert dis.factor_vae_score(data, with_dead, 0, **kw)["factor_vae"] == 1.0
  assert dis.factor_vae_score(data, lambda x: 0.01 * truth(x), 0, **kw)["factor_vae"] == 0.0


@pytest.mark.slow
def test_compute_all_is_deterministic_and_equals_the_single_metrics():
  data = _grid_data()
  rep = lambda x: _standardise(SIZES)(x) @ _rotation(3, 1)
  scale = 0.03
  a = dis.compute_all(data, rep, 7, num_samples_scale=scale)
  assert a == dis.compute_all(data, rep, 7, num_samples_scale=scale)
  n_tr, n_te = round(10000 * scale), round(5000 * scale)
  single = {}
  single.update(dis.beta_vae_score(data, rep, np.random.default_rng(7), num_train=n_tr,
                                   num_eval=n_te))
  single.update(dis.factor_vae_score(data, rep, np.random.default_rng(7), num_train=n_tr,
                                     num_eval=n_te, num_variance_estimate=n_tr))
  for fn in (dis.mig, dis.dci, dis.sap, dis.modularity_explicitness):
    kw = dict(num_train=n_tr) if fn is dis.mig else dict(num_train=n_tr, num_test=n_te)
    single.update(fn(data, rep, np.random.default_rng(7), **kw))
  assert single == a
  # A legacy RandomState is accepted as the generator too.
  assert 0 <= dis.mig(data, rep, np.random.RandomState(0), num_train=n_tr)["mig"] <= 1


def test_dci_can_take_the_importances_of_scikit_learn_before_0_20():
  # scikit-learn <= 0.19 normalised each tree's importances before averaging over the trees of
  # a stage and then over stages; >= 0.20 (feature_importances_ here) sums, then normalises.
  rng = np.random.default_rng(0)
  f = np.stack([rng.integers(0, k, 400) for k in SIZES], axis=1)
  codes = np.concatenate([_standardise(SIZES)(f) + 0.3 * rng.normal(size=(400, 3)),
                          rng.normal(size=(400, 2))], axis=1)
  model = dis._gradient_boosting(0).fit(codes, f[:, 2])  # pylint: disable=protected-access
  np.testing.assert_array_equal(dis.gbt_importances(model), model.feature_importances_)
  by_stage = [np.mean([tree.feature_importances_ for tree in stage], axis=0)
              for stage in model.estimators_]
  old = dis.gbt_importances(model, "per_tree")
  np.testing.assert_allclose(old, np.mean(by_stage, axis=0), rtol=1e-12)
  assert old.sum() == pytest.approx(1.0)  # no tree here is a single leaf
  # Late stages' splits on the other codes weigh as much as the first stages': code 2 carries
  # about 0.9 of the summed importance but only about 0.55 of the per-tree one.
  assert dis.gbt_importances(model)[2] > 0.8 and old[2] < 0.65
  importance, _, _ = dis.dci_importance_matrix(codes, f, codes, f, gbt_importance="per_tree")
  np.testing.assert_allclose(importance[:, 2], old, rtol=1e-12)
  with pytest.raises(ValueError, match="gbt_importance"):
    dis.dci_from_codes(codes, f, codes, f, gbt_importance="sklearn_0.19")
