"""β-VAE score (Higgins et al., 2017, "β-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", ICLR), as disentanglement_lib computes it (`beta_vae.py`): the accuracy of
a linear classifier that names the factor held fixed between two batches from the mean absolute
difference of their codes.

Preconditions (`METRIC`), and why:
* at least 2 factors: the classifier names which factor was fixed; with one factor every point
  has the same label and the score is 1 by construction (chance is 1 / number of factors);
* every factor takes 2 or more values: fixing a constant factor fixes nothing, so its class is
  "nothing held fixed", which says nothing about how the code holds that factor;
* 5 training points per factor (the classes);
* any number of code dimensions (one dimension can still tell the fixed factors apart).
"""

from __future__ import annotations

import numpy as np

from vae_jax.analysis.metrics import interface
from vae_jax.analysis.metrics.common import (OBSERVATIONS_PER_CALL, FactorData, Representation,
                                             RngLike, as_generator, draw_seed, encode,
                                             logistic_regression)


def beta_vae_features(data: FactorData, representation: Representation, num_points: int,
                      rng: RngLike, *, batch_size: int = 64,
                      obs_per_call: int = OBSERVATIONS_PER_CALL
                      ) -> tuple[np.ndarray, np.ndarray]:
  """The β-VAE score's training points: (features_PxD, labels_P).

  For each point a factor k is drawn uniformly; two batches of `batch_size` random factor
  combinations are drawn, the second given the first's values of factor k; the feature is the
  mean over the batch of |code(x1) - code(x2)|, the label k.
  """
  rng = as_generator(rng)
  num_factors = data.num_factors
  per_chunk = max(1, obs_per_call // (2 * batch_size))
  features, labels = [], []
  for start in range(0, num_points, per_chunk):
    p = min(per_chunk, num_points - start)
    k_P = rng.integers(0, num_factors, size=p)
    f1_PxBxF = data.sample_factors(p * batch_size, rng).reshape(p, batch_size, num_factors)
    f2_PxBxF = data.sample_factors(p * batch_size, rng).reshape(p, batch_size, num_factors)
    rows = np.arange(p)
    f2_PxBxF[rows, :, k_P] = f1_PxBxF[rows, :, k_P]
    both = np.concatenate([f1_PxBxF, f2_PxBxF], axis=0).reshape(-1, num_factors)
    codes = encode(data, representation, both, rng, obs_per_call=obs_per_call)
    codes_2xPxBxD = codes.reshape(2, p, batch_size, -1)
    features.append(np.mean(np.abs(codes_2xPxBxD[0] - codes_2xPxBxD[1]), axis=1))
    labels.append(k_P)
  return np.concatenate(features, axis=0), np.concatenate(labels)


def beta_vae_from_features(train_features_PxD: np.ndarray, train_labels_P: np.ndarray,
                           eval_features_QxD: np.ndarray, eval_labels_Q: np.ndarray, *,
                           random_state: int = 0) -> float:
  """Evaluation accuracy of the β-VAE score's logistic regression, trained on the train points."""
  model = logistic_regression(random_state)
  model.fit(train_features_PxD, train_labels_P)
  return float(model.score(eval_features_QxD, eval_labels_Q))


def beta_vae_score(data: FactorData, representation: Representation, rng: RngLike, *,
                   batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                   obs_per_call: int = OBSERVATIONS_PER_CALL) -> dict[str, float]:
  """β-VAE score (Higgins et al., 2017): {"beta_vae": evaluation accuracy}.

  A logistic regression (see `logistic_regression`) learns to name the fixed factor from
  `beta_vae_features` (num_train points, each from 2 * batch_size observations) and is scored on
  num_eval fresh points. Chance is 1 / num_factors. It is invariant to permutations and sign
  flips of the code and tests only linear identifiability of the fixed factor, so a rotated
  code can keep a high score.
  """
  rng = as_generator(rng)
  x_tr, y_tr = beta_vae_features(data, representation, num_train, rng, batch_size=batch_size,
                                 obs_per_call=obs_per_call)
  seed = draw_seed(rng)
  x_ev, y_ev = beta_vae_features(data, representation, num_eval, rng, batch_size=batch_size,
                                 obs_per_call=obs_per_call)
  return {"beta_vae": beta_vae_from_features(x_tr, y_tr, x_ev, y_ev, random_state=seed)}




METRIC = interface.Metric(
    name="beta_vae", keys=("beta_vae",), needs=interface.CODES,
    compute=lambda inputs: beta_vae_score(
        inputs.data, inputs.representation, inputs.fresh_rng(), obs_per_call=inputs.obs_per_call,
        **inputs.settings("beta_vae")),
    requires=(interface.AT_LEAST_TWO_FACTORS, interface.EVERY_FACTOR_VARIES,
              interface.enough_points_per_factor("beta_vae")),
    paper="Higgins et al. (2017)")
