"""Modularity and explicitness (Ridgeway & Mozer, 2018, "Learning Deep Disentangled Embeddings
with the F-Statistic Loss", NeurIPS), as disentanglement_lib computes them
(`modularity_explicitness.py`).

Preconditions (`METRIC`), and why:
* every factor takes 2 or more values (both): a constant factor has no MI with any code, which
  dilutes modularity's comparison, and its one-class logistic regression predicts a constant,
  whose ROC AUC explicitness would count as chance;
* 5 training points per value of the largest factor (both);
* modularity: at least 2 factors. It compares each code's MI with its best factor to its MI with
  the others; with one factor there are no others and every informative code scores 1;
* explicitness (how well a linear classifier on all codes predicts each factor) is defined for
  one factor and one dimension.
"""

from __future__ import annotations

import numpy as np

from vae_jax.analysis.metrics import interface
from vae_jax.analysis.metrics.common import (OBSERVATIONS_PER_CALL, FactorData, Representation,
                                             RngLike, as_generator, draw_seed, discrete_mutual_info,
                                             histogram_discretize, logistic_regression,
                                             sample_codes)


def modularity_from_mi(mi_DxF: np.ndarray) -> float:
  """Mean over codes of 1 - δ_d, δ_d = Σ_{f ≠ f*} I_df² / ((F - 1) max_f I_df²).

  A code that carries no information about any factor scores 0, as in disentanglement_lib.
  """
  sq_DxF = np.square(np.asarray(mi_DxF, np.float64))
  max_D = np.max(sq_DxF, axis=1)
  num_factors = sq_DxF.shape[1]
  score_D = np.zeros(len(max_D))
  informative = max_D > 0
  if num_factors == 1:
    score_D[informative] = 1.0
  else:
    delta = (np.sum(sq_DxF[informative], axis=1) - max_D[informative]) / (
        max_D[informative] * (num_factors - 1))
    score_D[informative] = 1.0 - delta
  return float(np.mean(score_D))


def modularity_from_codes(codes_NxD: np.ndarray, factors_NxF: np.ndarray, *,
                          num_bins: int = 20) -> float:
  """Modularity from the mutual information of histogram-discretised codes and the factors."""
  return modularity_from_mi(
      discrete_mutual_info(histogram_discretize(codes_NxD, num_bins), factors_NxF))


def explicitness_from_codes(codes_train_NxD: np.ndarray, factors_train_NxF: np.ndarray,
                            codes_test_MxD: np.ndarray, factors_test_MxF: np.ndarray, *,
                            random_state: int = 0) -> float:
  """Mean over factors of the test ROC AUC of a logistic regression from all codes.

  Codes are standardised with the training mean and std (a constant dimension is only
  centred). Per factor, a one-vs-rest logistic regression (`logistic_regression`) predicts class
  probabilities; the score is the macro average over classes of the one-vs-rest ROC AUC, over
  the classes seen in training that occur (and do not make up the whole) test set.
  """
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  mean_D = codes_train_NxD.mean(axis=0)
  std_D = codes_train_NxD.std(axis=0)
  std_D = np.where(std_D > 0, std_D, 1.0)
  x_tr = (codes_train_NxD - mean_D) / std_D
  x_te = (codes_test_MxD - mean_D) / std_D
  aucs = []
  for f in range(factors_train_NxF.shape[1]):
    clf = logistic_regression(random_state).fit(x_tr, factors_train_NxF[:, f])
    proba_MxK = clf.predict_proba(x_te)
    onehot_MxK = (factors_test_MxF[:, f][:, None] == clf.classes_[None, :]).astype(np.int64)
    per_class = [sk_metrics.roc_auc_score(onehot_MxK[:, k], proba_MxK[:, k])
                 for k in range(onehot_MxK.shape[1])
                 if 0 < onehot_MxK[:, k].sum() < len(onehot_MxK)]
    aucs.append(np.mean(per_class) if per_class else 0.5)
  return float(np.mean(aucs))


def modularity_explicitness(data: FactorData, representation: Representation, rng: RngLike, *,
                            num_train: int = 10000, num_test: int = 5000, num_bins: int = 20,
                            obs_per_call: int = OBSERVATIONS_PER_CALL) -> dict[str, float]:
  """Modularity and explicitness (Ridgeway & Mozer, 2018): {"modularity", "explicitness"}.

  Modularity from the training points' discretised mutual information; explicitness is the test
  ROC AUC (disentanglement_lib's "explicitness_score_test").
  """
  rng = as_generator(rng)
  c_tr, f_tr = sample_codes(data, representation, num_train, rng, obs_per_call=obs_per_call)
  c_te, f_te = sample_codes(data, representation, num_test, rng, obs_per_call=obs_per_call)
  return {"modularity": modularity_from_codes(c_tr, f_tr, num_bins=num_bins),
          "explicitness": explicitness_from_codes(c_tr, f_tr, c_te, f_te,
                                                  random_state=draw_seed(rng))}




def _from_inputs(inputs: interface.Inputs) -> dict[str, float]:
  (c_tr, f_tr), (c_te, f_te) = inputs.train_sample, inputs.test_sample
  return {"modularity": modularity_from_codes(
              c_tr, f_tr, num_bins=inputs.settings("modularity_explicitness")["num_bins"]),
          "explicitness": explicitness_from_codes(c_tr, f_tr, c_te, f_te,
                                                  random_state=inputs.classifier_seed)}


METRIC = interface.Metric(
    name="modularity_explicitness", keys=("modularity", "explicitness"), needs=interface.CODES,
    compute=_from_inputs,
    requires=(interface.EVERY_FACTOR_VARIES,
              interface.enough_points_per_value("modularity_explicitness")),
    requires_per_key={"modularity": (interface.AT_LEAST_TWO_FACTORS,)},
    paper="Ridgeway & Mozer (2018)")
