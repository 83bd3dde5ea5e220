"""DCI disentanglement, completeness and informativeness (Eastwood & Williams, 2018, "A Framework
for the Quantitative Evaluation of Disentangled Representations", ICLR), as disentanglement_lib
computes them (`dci.py`), from gradient boosted trees' feature importances.

Preconditions (`METRIC`), and why:
* every factor takes 2 or more values (all three): one classifier per factor is fitted, and a
  classifier cannot be fitted to a single class (scikit-learn raises);
* 5 training points per value of the largest factor (all three);
* dci_disentanglement: at least 2 factors. It is 1 - the entropy of each code's importances
  over the factors, in base F; with one factor there is nothing to spread over and every code
  scores 1;
* dci_completeness: at least 2 code dimensions, for the same reason the other way round (the
  entropy of each factor's importances over the D codes, in base D);
* dci_informativeness (the classifiers' test accuracy) is defined for one factor and one
  dimension: how well the code predicts MNIST's label, say.
"""

from __future__ import annotations

import math

import joblib
import numpy as np

from vae_jax.analysis.metrics import interface
from vae_jax.analysis.metrics.common import (OBSERVATIONS_PER_CALL, FactorData, Representation,
                                             RngLike, as_generator, draw_seed, gradient_boosting,
                                             sample_codes)

# How DCI turns a fitted classifier into importances (`gbt_importances`).
GBT_IMPORTANCES = ("summed", "per_tree")


def gbt_importances(model, formula: str = "summed") -> np.ndarray:
  """Feature importances of a fitted `GradientBoostingClassifier`, by either of the formulas
  scikit-learn has used for `feature_importances_`.

  "summed" (scikit-learn >= 0.20, and what `feature_importances_` returns here): each tree's
  impurity decrease per feature, unnormalised, averaged over all trees, then normalised to sum
  to 1. "per_tree" (scikit-learn <= 0.19): each tree's importances normalised to sum to 1 first
  (a tree that is a single leaf gives zeros), averaged over the K trees of a stage and then over
  the stages; the result sums to 1 only when no tree is a single leaf. The change is
  scikit-learn pull request #11176, in the 0.20.0 changelog (doc/whats_new/v0.20.rst, which
  lists GradientBoostingClassifier under "Changed models": "Fixed a bug in
  ensemble.GradientBoostingRegressor and ensemble.GradientBoostingClassifier to have feature
  importances summed and then normalized, rather than normalizing on a per-tree basis. The
  previous behavior over-weighted the Gini importance of features that appear in later
  stages"). Later stages fit small residuals: per-tree normalisation gives their splits, often
  on weak or noise dimensions, the same weight as the first stages' splits, which spreads
  importance and lowers DCI disentanglement and completeness, by a lot: on 2,000 training points
  of dSprites' four non-shape factors coded as their standardised values plus 0.1 noise, with six
  pure-noise dimensions, DCI disentanglement / completeness are 0.60 / 0.53 summed and 0.32 /
  0.26 per tree (the same trees; 0.31 / 0.31 against 0.14 / 0.14 for a partly mixed code).

  Whether our DCI is comparable with the study's numbers therefore depends on a version the
  study did not record (see the module docstring): with scikit-learn 0.20 or later it is
  ("summed", the default here, kept because it is also the corrected formula and every newer
  release computes it); with 0.19 it is not, and `formula="per_tree"` rebuilds that old formula
  exactly from the same fitted trees. Degenerate case: where every tree is a single leaf,
  "summed" gives zeros here (0.20 gave NaN, 0 / 0, until pull request #13620 of April 2019 left
  single-leaf trees out) and `dci_from_importance` treats an all-zero column as "no importance".
  """
  if formula == "summed":
    return np.asarray(model.feature_importances_, np.float64)
  if formula != "per_tree":
    raise ValueError(f"formula must be one of {GBT_IMPORTANCES}, got {formula!r}")
  stages = model.estimators_  # (n_stages, K) regression trees
  total = np.zeros(stages[0, 0].tree_.n_features, np.float64)
  for stage in stages:
    total += sum(tree.tree_.compute_feature_importances(normalize=True)
                 for tree in stage) / len(stage)
  return total / len(stages)


def dci_importance_matrix(codes_train_NxD: np.ndarray, factors_train_NxF: np.ndarray,
                          codes_test_MxD: np.ndarray, factors_test_MxF: np.ndarray, *,
                          random_state: int = 0, n_jobs: int = -1,
                          gbt_importance: str = "summed"
                          ) -> tuple[np.ndarray, float, float]:
  """(importance_DxF, train accuracy, test accuracy) of one GBT classifier per factor.

  Column f holds the absolute feature importances of the gradient boosted trees predicting
  factor f from all codes (see `gradient_boosting`; `gbt_importance` picks scikit-learn's
  current formula, "summed", or the one before 0.20, "per_tree": see `gbt_importances`); the
  accuracies are averaged over factors. The factors' classifiers are independent, so they are
  fitted in `n_jobs` threads (-1: one per CPU core; scikit-learn builds trees without the GIL),
  the factor with most values first; each fit is the same as alone, so the numbers do not
  depend on n_jobs.
  """
  if gbt_importance not in GBT_IMPORTANCES:
    raise ValueError(f"gbt_importance must be one of {GBT_IMPORTANCES}, got {gbt_importance!r}")
  num_dims, num_factors = codes_train_NxD.shape[1], factors_train_NxF.shape[1]

  def fit(f):
    model = gradient_boosting(random_state).fit(codes_train_NxD, factors_train_NxF[:, f])
    return (np.abs(gbt_importances(model, gbt_importance)),
            np.mean(model.predict(codes_train_NxD) == factors_train_NxF[:, f]),
            np.mean(model.predict(codes_test_MxD) == factors_test_MxF[:, f]))

  largest_first = sorted(range(num_factors),
                         key=lambda f: -len(np.unique(factors_train_NxF[:, f])))
  fits = joblib.Parallel(n_jobs=n_jobs, backend="threading")(
      joblib.delayed(fit)(f) for f in largest_first)
  importance_DxF = np.zeros((num_dims, num_factors))
  train_acc, test_acc = np.zeros(num_factors), np.zeros(num_factors)
  for f, (importance, train, test) in zip(largest_first, fits):  # Parallel keeps the order
    importance_DxF[:, f], train_acc[f], test_acc[f] = importance, train, test
  return importance_DxF, float(np.mean(train_acc)), float(np.mean(test_acc))


def _one_minus_entropy(p_rows, base: int) -> np.ndarray:
  """1 - entropy (in the given base) of each row, normalised to sum to 1, +1e-11 as in dl."""
  if base < 2:
    return np.ones(len(p_rows))
  p = p_rows + 1e-11
  p = p / p.sum(axis=1, keepdims=True)
  return 1.0 + np.sum(p * np.log(p), axis=1) / math.log(base)


def dci_from_importance(importance_DxF: np.ndarray) -> tuple[float, float]:
  """(disentanglement, completeness) from a (codes x factors) importance matrix.

  Disentanglement: 1 - H_F(importances of code d over factors), averaged over codes weighted by
  each code's share of the total importance. Completeness: 1 - H_D(importances of factor f over
  codes), averaged over factors weighted likewise. Entropies use bases F and D, with 1e-11 added
  to every entry first, as disentanglement_lib does; an all-zero matrix gets uniform weights.
  """
  r_DxF = np.asarray(importance_DxF, np.float64)
  num_dims, num_factors = r_DxF.shape
  weights = r_DxF if r_DxF.sum() > 0 else np.ones_like(r_DxF)
  code_w_D = weights.sum(axis=1) / weights.sum()
  factor_w_F = weights.sum(axis=0) / weights.sum()
  disent = float(np.sum(_one_minus_entropy(r_DxF, num_factors) * code_w_D))
  complete = float(np.sum(_one_minus_entropy(r_DxF.T, num_dims) * factor_w_F))
  return disent, complete


def dci_from_codes(codes_train_NxD: np.ndarray, factors_train_NxF: np.ndarray,
                   codes_test_MxD: np.ndarray, factors_test_MxF: np.ndarray, *,
                   random_state: int = 0, n_jobs: int = -1,
                   gbt_importance: str = "summed") -> dict[str, float]:
  """DCI disentanglement, completeness and informativeness (GBT test accuracy) from arrays
  (`gbt_importance`: see `gbt_importances`)."""
  importance_DxF, _, test_acc = dci_importance_matrix(
      codes_train_NxD, factors_train_NxF, codes_test_MxD, factors_test_MxF,
      random_state=random_state, n_jobs=n_jobs, gbt_importance=gbt_importance)
  d, c = dci_from_importance(importance_DxF)
  return {"dci_disentanglement": d, "dci_completeness": c, "dci_informativeness": test_acc}


def dci(data: FactorData, representation: Representation, rng: RngLike, *,
        num_train: int = 10000, num_test: int = 5000,
        obs_per_call: int = OBSERVATIONS_PER_CALL, n_jobs: int = -1,
        gbt_importance: str = "summed") -> dict[str, float]:
  """DCI (Eastwood & Williams, 2018): disentanglement, completeness, informativeness.

  Gradient boosted trees (scikit-learn defaults, one per factor, fitted in n_jobs threads) are
  trained on num_train random points; informativeness is their mean test accuracy on num_test
  points (disentanglement_lib's "informativeness_test", an accuracy despite the paper's
  error-based definition). `gbt_importance="per_tree"` takes the importances as scikit-learn
  <= 0.19 computed them (see `gbt_importances`); the default is scikit-learn >= 0.20's.
  """
  rng = as_generator(rng)
  c_tr, f_tr = sample_codes(data, representation, num_train, rng, obs_per_call=obs_per_call)
  c_te, f_te = sample_codes(data, representation, num_test, rng, obs_per_call=obs_per_call)
  return dci_from_codes(c_tr, f_tr, c_te, f_te, random_state=draw_seed(rng), n_jobs=n_jobs,
                        gbt_importance=gbt_importance)




def _from_inputs(inputs: interface.Inputs) -> dict[str, float]:
  (c_tr, f_tr), (c_te, f_te) = inputs.train_sample, inputs.test_sample
  return dci_from_codes(c_tr, f_tr, c_te, f_te, random_state=inputs.classifier_seed,
                        gbt_importance=inputs.gbt_importance)


METRIC = interface.Metric(
    name="dci", keys=("dci_disentanglement", "dci_completeness", "dci_informativeness"),
    needs=interface.CODES, compute=_from_inputs,
    requires=(interface.EVERY_FACTOR_VARIES, interface.enough_points_per_value("dci")),
    requires_per_key={"dci_disentanglement": (interface.AT_LEAST_TWO_FACTORS,),
                      "dci_completeness": (interface.AT_LEAST_TWO_CODE_DIMS,)},
    paper="Eastwood & Williams (2018)")
