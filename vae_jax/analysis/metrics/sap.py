"""SAP, separated attribute predictability (Kumar et al., 2018, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations", ICLR), as disentanglement_lib computes
it (`sap_score.py`, discrete factors).

Preconditions (`METRIC`), and why:
* at least 2 code dimensions: per factor, the gap between the two code dimensions that predict it
  best; with one dimension it would be that dimension's accuracy alone, not a gap;
* every factor takes 2 or more values: a linear SVM cannot be fitted to a single class
  (scikit-learn raises);
* 5 training points per value of the largest factor;
* one factor is enough (as for MIG).
"""

from __future__ import annotations

import warnings

import numpy as np

from vae_jax.analysis.metrics import interface
from vae_jax.analysis.metrics.common import (OBSERVATIONS_PER_CALL, FactorData, Representation,
                                             RngLike, as_generator, draw_seed, linear_svc,
                                             sample_codes)


def sap_score_matrix(codes_train_NxD: np.ndarray, factors_train_NxF: np.ndarray,
                     codes_test_MxD: np.ndarray | None = None,
                     factors_test_MxF: np.ndarray | None = None, *,
                     continuous_factors: bool = False, random_state: int = 0) -> np.ndarray:
  """(D, F) predictability of each factor from each single code dimension.

  Discrete factors (disentanglement_lib's setting): test accuracy of a linear SVM (see
  `linear_svc`) trained on that one dimension. Continuous factors: the squared correlation of
  the dimension and the factor on the training points (0 for a dimension of variance <= 1e-12).
  """
  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  codes_train_NxD = np.asarray(codes_train_NxD, np.float64)
  num_dims, num_factors = codes_train_NxD.shape[1], factors_train_NxF.shape[1]
  score_DxF = np.zeros((num_dims, num_factors))
  for d in range(num_dims):
    for f in range(num_factors):
      x, y = codes_train_NxD[:, d], factors_train_NxF[:, f]
      if continuous_factors:
        cov = np.cov(x, y, ddof=1)
        score_DxF[d, f] = cov[0, 1]**2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
      else:
        clf = linear_svc(random_state)
        with warnings.catch_warnings():
          # The dual solver often stops at max_iter on one feature; that is the setting the
          # study ran with, so its warning says nothing here.
          warnings.simplefilter("ignore", ConvergenceWarning)
          clf.fit(x[:, None], y)
        pred = clf.predict(np.asarray(codes_test_MxD, np.float64)[:, d:d + 1])
        score_DxF[d, f] = np.mean(pred == factors_test_MxF[:, f])
  return score_DxF


def sap_from_codes(codes_train_NxD: np.ndarray, factors_train_NxF: np.ndarray,
                   codes_test_MxD: np.ndarray | None = None,
                   factors_test_MxF: np.ndarray | None = None, *,
                   continuous_factors: bool = False, random_state: int = 0) -> float:
  """SAP: mean over factors of the gap between the two best single-dimension predictabilities."""
  s_DxF = np.sort(sap_score_matrix(codes_train_NxD, factors_train_NxF, codes_test_MxD,
                                   factors_test_MxF, continuous_factors=continuous_factors,
                                   random_state=random_state), axis=0)
  second_F = s_DxF[-2] if len(s_DxF) > 1 else np.zeros(s_DxF.shape[1])
  return float(np.mean(s_DxF[-1] - second_F))


def sap(data: FactorData, representation: Representation, rng: RngLike, *,
        num_train: int = 10000, num_test: int = 5000, continuous_factors: bool = False,
        obs_per_call: int = OBSERVATIONS_PER_CALL) -> dict[str, float]:
  """SAP score (Kumar et al., 2018) with disentanglement_lib's discrete factors: {"sap": ...}."""
  rng = as_generator(rng)
  c_tr, f_tr = sample_codes(data, representation, num_train, rng, obs_per_call=obs_per_call)
  c_te, f_te = sample_codes(data, representation, num_test, rng, obs_per_call=obs_per_call)
  return {"sap": sap_from_codes(c_tr, f_tr, c_te, f_te, continuous_factors=continuous_factors,
                                random_state=draw_seed(rng))}




def _from_inputs(inputs: interface.Inputs) -> dict[str, float]:
  (c_tr, f_tr), (c_te, f_te) = inputs.train_sample, inputs.test_sample
  return {"sap": sap_from_codes(c_tr, f_tr, c_te, f_te,
                                continuous_factors=inputs.settings("sap")["continuous_factors"],
                                random_state=inputs.classifier_seed)}


METRIC = interface.Metric(
    name="sap", keys=("sap",), needs=interface.CODES, compute=_from_inputs,
    requires=(interface.EVERY_FACTOR_VARIES, interface.enough_points_per_value("sap"),
              interface.AT_LEAST_TWO_CODE_DIMS),
    paper="Kumar et al. (2018)")
