"""FactorVAE score (Kim & Mnih, 2018, "Disentangling by Factorising", ICML), as disentanglement_lib
computes it (`factor_vae.py`): the accuracy of a majority vote that names the fixed factor from
the code dimension of least normalised variance within a batch.

Preconditions (`METRIC`), and why:
* at least 2 factors: the vote names which factor was fixed; with one factor every vote names
  it and the score is 1 by construction (chance is about 1 / number of factors);
* every factor takes 2 or more values: a batch that "fixes" a constant factor varies in every
  dimension, so its vote lands on whichever dimension happens to vary least and competes with
  the other factors' votes for it;
* 5 training points (votes) per factor;
* any number of code dimensions (with one, every vote lands on it: about chance). A code
  whose every dimension is collapsed scores 0, as in disentanglement_lib: that is an answer
  (the code carries nothing), not an undefined question.
"""

from __future__ import annotations

import numpy as np

from vae_jax.analysis.metrics import interface
from vae_jax.analysis.metrics.common import (OBSERVATIONS_PER_CALL, FactorData, Representation,
                                             RngLike, as_generator, encode, sample_codes)


def factor_vae_votes(data: FactorData, representation: Representation, num_points: int,
                     rng: RngLike, global_variances_D: np.ndarray, active_D: np.ndarray, *,
                     batch_size: int = 64, obs_per_call: int = OBSERVATIONS_PER_CALL
                     ) -> np.ndarray:
  """(F, D) int votes: how often fixing factor f made active dimension d the least variable.

  For each point a factor f is drawn uniformly and fixed, at a random value, across a batch of
  `batch_size` random combinations; the vote goes to the active dimension with the smallest
  within-batch variance (ddof=1) divided by its global variance.
  """
  rng = as_generator(rng)
  num_factors, num_dims = data.num_factors, len(global_variances_D)
  active_idx = np.flatnonzero(active_D)
  votes_FxD = np.zeros((num_factors, num_dims), np.int64)
  per_chunk = max(1, obs_per_call // batch_size)
  for start in range(0, num_points, per_chunk):
    p = min(per_chunk, num_points - start)
    f_P = rng.integers(0, num_factors, size=p)
    factors_PxBxF = data.sample_factors(p * batch_size, rng).reshape(p, batch_size, num_factors)
    rows = np.arange(p)
    factors_PxBxF[rows, :, f_P] = factors_PxBxF[rows, 0, f_P][:, None]
    codes = encode(data, representation, factors_PxBxF.reshape(-1, num_factors), rng,
                   obs_per_call=obs_per_call).reshape(p, batch_size, num_dims)
    local_PxD = np.var(codes, axis=1, ddof=1)
    ratio = local_PxD[:, active_idx] / global_variances_D[active_idx]
    np.add.at(votes_FxD, (f_P, active_idx[np.argmin(ratio, axis=1)]), 1)
  return votes_FxD


def factor_vae_from_votes(train_votes_FxD: np.ndarray, eval_votes_FxD: np.ndarray) -> float:
  """Evaluation accuracy of the majority-vote classifier built from the training votes.

  Each code dimension is assigned the factor that most often made it the least variable (ties to
  the lowest factor index, as `np.argmax`); the accuracy is the share of evaluation votes that
  fall on a (factor, dimension) pair so assigned.
  """
  classifier_D = np.argmax(train_votes_FxD, axis=0)
  total = np.sum(eval_votes_FxD)
  if total == 0:
    return 0.0
  return float(np.sum(eval_votes_FxD[classifier_D, np.arange(eval_votes_FxD.shape[1])]) / total)


def factor_vae_score(data: FactorData, representation: Representation, rng: RngLike, *,
                     batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000, prune_threshold: float = 0.05,
                     obs_per_call: int = OBSERVATIONS_PER_CALL) -> dict[str, float]:
  """FactorVAE score (Kim & Mnih, 2018): {"factor_vae": evaluation accuracy}.

  Global variances (ddof=1) come from `num_variance_estimate` random observations; dimensions
  whose global std is below `prune_threshold` (collapsed to the prior: posterior means near
  constant) are pruned, and the score is 0 if none is left. The majority-vote classifier is
  built from num_train votes and scored on num_eval (`factor_vae_votes`,
  `factor_vae_from_votes`). Chance is about 1 / num_factors.
  """
  rng = as_generator(rng)
  codes, _ = sample_codes(data, representation, num_variance_estimate, rng,
                          obs_per_call=obs_per_call)
  global_variances_D = np.var(codes, axis=0, ddof=1)
  active_D = np.sqrt(global_variances_D) >= prune_threshold
  if not active_D.any():
    return {"factor_vae": 0.0}
  kw = dict(batch_size=batch_size, obs_per_call=obs_per_call)
  train_votes = factor_vae_votes(data, representation, num_train, rng, global_variances_D,
                                 active_D, **kw)
  eval_votes = factor_vae_votes(data, representation, num_eval, rng, global_variances_D,
                                active_D, **kw)
  return {"factor_vae": factor_vae_from_votes(train_votes, eval_votes)}




METRIC = interface.Metric(
    name="factor_vae", keys=("factor_vae",), needs=interface.CODES,
    compute=lambda inputs: factor_vae_score(
        inputs.data, inputs.representation, inputs.fresh_rng(), obs_per_call=inputs.obs_per_call,
        **inputs.settings("factor_vae")),
    requires=(interface.AT_LEAST_TWO_FACTORS, interface.EVERY_FACTOR_VARIES,
              interface.enough_points_per_factor("factor_vae")),
    paper="Kim & Mnih (2018)")
