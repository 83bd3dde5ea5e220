"""MIG, the mutual information gap (Chen et al., 2018, "Isolating Sources of Disentanglement in
Variational Autoencoders", NeurIPS), as disentanglement_lib computes it (`mig.py`): posterior
means binned into 20 histogram bins, plug-in MI with each factor. Chen et al.'s own estimator,
from q(z|x), is `mig_chen`.

Preconditions (`METRIC`), and why:
* at least 2 code dimensions: the gap is between the two code dimensions most informative about
  a factor; with one dimension it would be that dimension's MI alone, not a gap;
* a factor that takes 2 or more values: MIG averages over factors, each gap divided by the
  factor's entropy; constant factors (entropy 0: disentanglement_lib returns NaN) are left out
  of the average. One factor is enough: the question "does one dimension alone carry it?" is
  defined for MNIST's label;
* 5 training points per value of the largest factor (the plug-in MI's bias grows with the
  number of values over the number of points).
"""

from __future__ import annotations

import numpy as np

from vae_jax.analysis.metrics import interface
from vae_jax.analysis.metrics.common import (OBSERVATIONS_PER_CALL, FactorData, Representation,
                                             RngLike, discrete_entropy, discrete_mutual_info,
                                             histogram_discretize, sample_codes)


def mig_from_codes(codes_NxD: np.ndarray, factors_NxF: np.ndarray, *, num_bins: int = 20
                   ) -> float:
  """Mutual information gap of codes for discrete factors.

  The codes are discretised into `num_bins` histogram bins per dimension; for each factor the
  gap between the largest and the second largest I(code_d; factor) is divided by H(factor); MIG
  is the mean over factors. Factors that are constant in the sample (H = 0; disentanglement_lib
  would return NaN) are left out. With one code dimension the second largest is taken as 0.
  """
  mi_DxF = discrete_mutual_info(histogram_discretize(codes_NxD, num_bins), factors_NxF)
  entropy_F = discrete_entropy(factors_NxF)
  sorted_DxF = np.sort(mi_DxF, axis=0)[::-1]
  second_F = sorted_DxF[1] if len(sorted_DxF) > 1 else np.zeros(mi_DxF.shape[1])
  keep = entropy_F > 0
  if not keep.any():
    return 0.0
  return float(np.mean((sorted_DxF[0, keep] - second_F[keep]) / entropy_F[keep]))


def mig(data: FactorData, representation: Representation, rng: RngLike, *,
        num_train: int = 10000, num_bins: int = 20,
        obs_per_call: int = OBSERVATIONS_PER_CALL) -> dict[str, float]:
  """Mutual information gap (Chen et al., 2018) on num_train random points: {"mig": ...}."""
  codes, factors = sample_codes(data, representation, num_train, rng, obs_per_call=obs_per_call)
  return {"mig": mig_from_codes(codes, factors, num_bins=num_bins)}




def _from_inputs(inputs: interface.Inputs) -> dict[str, float]:
  codes, factors = inputs.train_sample
  return {"mig": mig_from_codes(codes, factors, num_bins=inputs.settings("mig")["num_bins"])}


METRIC = interface.Metric(
    name="mig", keys=("mig",), needs=interface.CODES, compute=_from_inputs,
    requires=(interface.SOME_FACTOR_VARIES, interface.enough_points_per_value("mig"),
              interface.AT_LEAST_TWO_CODE_DIMS),
    paper="Chen et al. (2018)")
