"""What the disentanglement metrics share: ground-truth data, codes, discrete information, and
the scikit-learn estimators with the settings disentanglement_lib ran them with.

Ground-truth data come as a `FactorData`: factor sizes plus a function from factor indices to
observations (`factor_data_from_arrays` builds one from a dataset that covers the full grid of
factor values, as dSprites does). The representation is whatever the caller's
`representation(images) -> codes_NxD` returns; for a VAE, as in Locatello et al. (2019), the
posterior mean. All randomness comes from the numpy Generator passed in (an int seed or a
RandomState are accepted too, `as_generator`), and every scikit-learn estimator gets a
`random_state` drawn from it (`draw_seed`), so a seed fixes every number.

Where disentanglement_lib's behaviour rests on a scikit-learn default that has since changed, the
old default is spelled out here (`logistic_regression`, `gradient_boosting`, `linear_svc`; DCI's
importances: `dci.gbt_importances`). Which scikit-learn the study ran is not recorded:
disentanglement_lib's setup.py asks for an unpinned "scikit-learn" and the repository has no
requirements or lock file; the study's models were evaluated in 2018 (arXiv:1811.12359 v1 is of
29 November 2018), when 0.19.x or 0.20.x (0.20.0: 25 September 2018) was current.

The study's sample counts (`DEFAULTS`) are large (10,000 training points for most metrics; the
β-VAE score encodes 2 * 64 * 15,000 observations). `scaled_defaults(metric, s)` multiplies every
count of points by s for quick looks; the per-point batch sizes of the β-VAE and FactorVAE scores
(64 observations) are part of those metrics' definitions and are not scaled.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence, Union

import numpy as np

# scikit-learn (a second of imports) is imported by the functions that use it, not here: every
# sweep reads the metric registry for its sweep.csv columns, most without computing a metric.

RngLike = Union[int, np.random.Generator, np.random.RandomState, None]
Representation = Callable[[np.ndarray], np.ndarray]

# At most this many observations go to `representation` in one call (the β-VAE and FactorVAE
# scores would otherwise hand it 10^6 images at once). 4096 dSprites images are 64 MB in float32.
OBSERVATIONS_PER_CALL = 4096

# disentanglement_lib's settings for the unsupervised study
# (config/unsupervised_study_v1/metric_configs/<metric>.gin; the metric function's own keyword
# default where the gin file sets none, e.g. the batch size of 16 used only for sampling).
DEFAULTS = {
    # beta_vae_sklearn.gin: batch_size=64, num_train=10000, num_eval=5000.
    "beta_vae": dict(batch_size=64, num_train=10000, num_eval=5000),
    # factor_vae_metric.gin: batch_size=64, num_train=10000, num_eval=5000,
    # num_variance_estimate=10000, prune_dims.threshold=0.05.
    "factor_vae": dict(batch_size=64, num_train=10000, num_eval=5000,
                       num_variance_estimate=10000, prune_threshold=0.05),
    # mig.gin: num_train=10000, discretizer = histogram_discretizer with num_bins=20.
    "mig": dict(num_train=10000, num_bins=20),
    # dci.gin: num_train=10000, num_test=5000.
    "dci": dict(num_train=10000, num_test=5000),
    # sap_score.gin: num_train=10000, num_test=5000, continuous_factors=False.
    "sap": dict(num_train=10000, num_test=5000, continuous_factors=False),
    # modularity_explicitness.gin: num_train=10000, num_test=5000, histogram discretizer, 20 bins.
    "modularity_explicitness": dict(num_train=10000, num_test=5000, num_bins=20),
}

# --------------------------------------------------------------------------------------------
# Ground-truth data.


def as_generator(rng: RngLike) -> np.random.Generator:
  """A numpy Generator from a Generator (returned as is), an int seed, None, or a RandomState."""
  if isinstance(rng, np.random.Generator):
    return rng
  if isinstance(rng, np.random.RandomState):
    return np.random.default_rng(int(rng.randint(0, 2**31 - 1)))
  return np.random.default_rng(rng)


def draw_seed(rng: np.random.Generator) -> int:
  """An int for a scikit-learn `random_state`, drawn from `rng`."""
  return int(rng.integers(0, 2**31 - 1))


@dataclasses.dataclass(frozen=True)
class FactorData:
  """Ground-truth data: independent discrete factors and a way to observe any combination.

  Factor i takes the values 0 .. factor_sizes[i] - 1; `sample_factors` draws each uniformly and
  independently (disentanglement_lib's ground-truth datasets do the same). `observe(factors_NxF,
  rng)` returns the N observations (images) of those factor indices, drawing from `rng` any
  randomness the rendering has (e.g. a random colour or a random choice among several images of
  one combination).
  """

  factor_sizes: tuple[int, ...]
  observe: Callable[[np.ndarray, np.random.Generator], np.ndarray]
  factor_names: tuple[str, ...] | None = None

  def __post_init__(self):
    sizes = tuple(int(s) for s in self.factor_sizes)
    if not sizes or min(sizes) < 1:
      raise ValueError(f"factor sizes must be positive, got {self.factor_sizes}")
    object.__setattr__(self, "factor_sizes", sizes)
    names = (tuple(f"factor_{i}" for i in range(len(sizes))) if self.factor_names is None
             else tuple(self.factor_names))
    if len(names) != len(sizes):
      raise ValueError(f"{len(names)} factor names for {len(sizes)} factors")
    object.__setattr__(self, "factor_names", names)

  @property
  def num_factors(self) -> int:
    return len(self.factor_sizes)

  def sample_factors(self, n: int, rng: RngLike) -> np.ndarray:
    """(n, F) int64 factor indices, each factor uniform and independent of the others."""
    rng = as_generator(rng)
    return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes],
                    axis=1).astype(np.int64)

  def observations(self, factors_NxF: np.ndarray, rng: RngLike) -> np.ndarray:
    """The observations of the given factor indices."""
    return self.observe(np.asarray(factors_NxF, np.int64), as_generator(rng))

  def sample(self, n: int, rng: RngLike) -> tuple[np.ndarray, np.ndarray]:
    """(factors_NxF, observations) for n random factor combinations."""
    rng = as_generator(rng)
    factors_NxF = self.sample_factors(n, rng)
    return factors_NxF, self.observations(factors_NxF, rng)


def factor_data_from_arrays(observations: np.ndarray, factors_NxF: np.ndarray,
                            factor_sizes: Sequence[int] | None = None,
                            factor_names: Sequence[str] | None = None) -> FactorData:
  """A `FactorData` that looks observations up in arrays covering the full grid of factors.

  `factors_NxF[n]` are the integer factor indices of `observations[n]` (for dSprites, its
  `latents_classes` without the constant colour column). Every combination of factor values must
  occur at least once; where one occurs several times, each look-up picks one of its rows
  uniformly at random. `factor_sizes` defaults to the largest index of each factor plus one.
  """
  factors_NxF = np.asarray(factors_NxF)
  if factors_NxF.ndim != 2 or len(factors_NxF) != len(observations):
    raise ValueError(f"factors must be (N, F) with N = {len(observations)} observations, "
                     f"got shape {factors_NxF.shape}")
  if not np.issubdtype(factors_NxF.dtype, np.integer):
    if not np.array_equal(factors_NxF, np.round(factors_NxF)):
      raise ValueError("factors must be integer indices 0 .. size - 1")
  factors_NxF = factors_NxF.astype(np.int64)
  sizes = (tuple(int(s) for s in factors_NxF.max(axis=0) + 1) if factor_sizes is None
           else tuple(int(s) for s in factor_sizes))
  if len(sizes) != factors_NxF.shape[1]:
    raise ValueError(f"{len(sizes)} factor sizes for {factors_NxF.shape[1]} factor columns")
  if factors_NxF.min() < 0 or np.any(factors_NxF.max(axis=0) >= np.asarray(sizes)):
    raise ValueError(f"factor indices out of range for sizes {sizes}")
  flat_N = np.ravel_multi_index(tuple(factors_NxF.T), sizes)
  counts = np.bincount(flat_N, minlength=math.prod(sizes))
  missing = int(np.sum(counts == 0))
  if missing:
    raise ValueError(f"the arrays do not cover the full factor grid: {missing} of "
                     f"{counts.size} combinations have no observation")
  order = np.argsort(flat_N, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  unique = bool(np.all(counts == 1))

  def observe(factors, rng):
    cell = np.ravel_multi_index(tuple(np.asarray(factors).T), sizes)
    pick = starts[cell] if unique else starts[cell] + rng.integers(0, counts[cell])
    return observations[order[pick]]

  return FactorData(sizes, observe, None if factor_names is None else tuple(factor_names))


def encode(data: FactorData, representation: Representation, factors_NxF: np.ndarray,
           rng: RngLike, *, obs_per_call: int = OBSERVATIONS_PER_CALL) -> np.ndarray:
  """codes_NxD (float64) of the observations of the given factors, `obs_per_call` at a time."""
  rng = as_generator(rng)
  chunks = []
  for start in range(0, len(factors_NxF), obs_per_call):
    obs = data.observations(factors_NxF[start:start + obs_per_call], rng)
    codes = np.asarray(representation(obs), np.float64)
    if codes.ndim != 2 or len(codes) != len(obs):
      raise ValueError(f"representation must return (N, D) codes for N = {len(obs)} "
                       f"observations, got shape {codes.shape}")
    chunks.append(codes)
  return np.concatenate(chunks, axis=0)


def sample_codes(data: FactorData, representation: Representation, num_points: int,
                 rng: RngLike, *, obs_per_call: int = OBSERVATIONS_PER_CALL
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(codes_NxD, factors_NxF) of `num_points` random factor combinations.

  disentanglement_lib's `generate_batch_factor_code` draws the same i.i.d. sample in batches of
  16; the batching changes nothing but the order of random draws.
  """
  rng = as_generator(rng)
  factors_NxF = data.sample_factors(num_points, rng)
  return encode(data, representation, factors_NxF, rng, obs_per_call=obs_per_call), factors_NxF


# --------------------------------------------------------------------------------------------
# The classifiers, with the settings disentanglement_lib ran them with.


def logistic_regression(random_state: int):
  """`linear_model.LogisticRegression()` as scikit-learn <= 0.21 defined it.

  disentanglement_lib calls `LogisticRegression(random_state=...)` (β-VAE score) and
  `LogisticRegression()` (explicitness) with every other argument at its default. Up to
  scikit-learn 0.21 the defaults were solver="liblinear" and multi_class="ovr" (one binary
  classifier per class; liblinear also penalises the intercept), C=1, max_iter=100; 0.22 changed
  them to solver="lbfgs" with a multinomial model for more than two classes, and scikit-learn
  1.8 (installed here) has no multi_class argument and no multiclass liblinear at all, so the old
  behaviour is rebuilt as one-vs-rest liblinear. `predict_proba` normalises the per-class
  probabilities to sum to one, as the old multi_class="ovr" did.
  """
  from sklearn import linear_model, multiclass  # pylint: disable=g-import-not-at-top
  return multiclass.OneVsRestClassifier(
      linear_model.LogisticRegression(solver="liblinear", C=1.0, max_iter=100,
                                      random_state=random_state))


def gradient_boosting(random_state: int):
  """`ensemble.GradientBoostingClassifier()` with its defaults, as DCI uses it.

  n_estimators=100, learning_rate=0.1, max_depth=3, subsample=1.0, criterion="friedman_mse",
  max_features=None: unchanged in name and value from scikit-learn 0.19 to 1.8, so the fitted
  trees are the same. A multiclass factor with K values fits K regression trees per boosting
  stage. disentanglement_lib leaves random_state unset; with subsample=1 and max_features=None
  the only randomness is the order in which features are tried, i.e. how ties between equally
  good splits are broken, so seeding it changes nothing else. `presort` (speed only) went in
  0.24. What did change is how `feature_importances_` sums the trees: see `dci.gbt_importances`.
  """
  from sklearn import ensemble  # pylint: disable=g-import-not-at-top
  return ensemble.GradientBoostingClassifier(random_state=random_state)


def linear_svc(random_state: int):
  """`svm.LinearSVC(C=0.01, class_weight="balanced")` as disentanglement_lib ran it (SAP).

  dual=True is set explicitly: it was the default then; scikit-learn 1.3 began moving the default
  to dual="auto" (1.5), which here (many samples, one feature) solves the primal problem instead.
  Both solve the same squared-hinge, L2, one-vs-rest problem (intercept penalised, liblinear), but
  the dual solver stops at max_iter=1000 and its answer is the one the study's numbers come from.
  """
  from sklearn import svm  # pylint: disable=g-import-not-at-top
  return svm.LinearSVC(C=0.01, class_weight="balanced", dual=True, max_iter=1000,
                       random_state=random_state)


# --------------------------------------------------------------------------------------------
# Discretisation and discrete information (disentanglement_lib's evaluation/metrics/utils.py).


def histogram_discretize(codes_NxD: np.ndarray, num_bins: int = 20) -> np.ndarray:
  """Each code dimension binned into `num_bins` equal-width bins over its own range.

  As disentanglement_lib's histogram discretizer: `np.digitize` against the left edges of
  `np.histogram(x, num_bins)`, so the labels are 1 .. num_bins (the maximum falls in the last bin).
  """
  codes_NxD = np.asarray(codes_NxD, np.float64)
  out_NxD = np.zeros(codes_NxD.shape, np.int64)
  for d in range(codes_NxD.shape[1]):
    edges = np.histogram(codes_NxD[:, d], num_bins)[1]
    out_NxD[:, d] = np.digitize(codes_NxD[:, d], edges[:-1])
  return out_NxD


def discrete_mutual_info(codes_NxD: np.ndarray, factors_NxF: np.ndarray) -> np.ndarray:
  """(D, F) plug-in mutual information (nats) between discrete codes and factors."""
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  codes_NxD, factors_NxF = np.asarray(codes_NxD), np.asarray(factors_NxF)
  mi_DxF = np.zeros((codes_NxD.shape[1], factors_NxF.shape[1]))
  for d in range(codes_NxD.shape[1]):
    for f in range(factors_NxF.shape[1]):
      mi_DxF[d, f] = sk_metrics.mutual_info_score(factors_NxF[:, f], codes_NxD[:, d])
  return mi_DxF


def discrete_entropy(factors_NxF: np.ndarray) -> np.ndarray:
  """(F,) plug-in entropy (nats) of each discrete factor."""
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  factors_NxF = np.asarray(factors_NxF)
  return np.array([sk_metrics.mutual_info_score(factors_NxF[:, f], factors_NxF[:, f])
                   for f in range(factors_NxF.shape[1])])


_COUNT_KEYS = ("num_train", "num_eval", "num_test", "num_variance_estimate")


def scaled_defaults(metric: str, scale: float = 1.0) -> dict:
  """`DEFAULTS[metric]` with every count of points multiplied by `scale` (rounded, at least 2).

  Batch sizes, bins and thresholds are kept: they are part of the metrics' definitions.
  """
  out = dict(DEFAULTS[metric])
  for k in _COUNT_KEYS:
    if k in out:
      out[k] = max(2, int(round(out[k] * scale)))
  return out


