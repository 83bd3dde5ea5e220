"""Supervised disentanglement metrics, as disentanglement_lib defines them.

The nine numbers of Locatello et al. (2019), "Challenging Common Assumptions in the Unsupervised
Learning of Disentangled Representations" (ICML), computed the way their library
(google-research/disentanglement_lib, `evaluation/metrics/`) computes them, with the defaults of
its `config/unsupervised_study_v1/metric_configs/*.gin`:

* β-VAE score (Higgins et al., 2017, "β-VAE: Learning Basic Visual Concepts with a Constrained
  Variational Framework", ICLR): accuracy of a linear classifier that names the factor held
  fixed between two batches from the mean absolute difference of their codes.
* FactorVAE score (Kim & Mnih, 2018, "Disentangling by Factorising", ICML): accuracy of a
  majority vote that names the fixed factor from the code dimension of least normalised
  variance within a batch.
* MIG, mutual information gap (Chen et al., 2018, "Isolating Sources of Disentanglement in
  Variational Autoencoders", NeurIPS).
* DCI disentanglement, completeness and informativeness (Eastwood & Williams, 2018, "A Framework
  for the Quantitative Evaluation of Disentangled Representations", ICLR), from gradient boosted
  trees' feature importances.
* SAP, separated attribute predictability (Kumar et al., 2018, "Variational Inference of
  Disentangled Latent Concepts from Unlabeled Observations", ICLR).
* Modularity and explicitness (Ridgeway & Mozer, 2018, "Learning Deep Disentangled Embeddings
  with the F-Statistic Loss", NeurIPS).

The code was written from the definitions, not copied. The representation is whatever the
caller's `representation(images) -> codes_NxD` returns; for a VAE, as in the study, the posterior
mean. Ground-truth data come as a `FactorData`: factor sizes plus a function from factor indices
to observations (`factor_data_from_arrays` builds one from a dataset that covers the full grid
of factor values, as dSprites does). All randomness comes from the numpy Generator passed in
(an int seed or a RandomState are accepted too), and every scikit-learn estimator gets a
`random_state` drawn from it, so a seed fixes every number.

Where disentanglement_lib's behaviour rests on a scikit-learn default that has since changed, the
old default is spelled out here (see `_logistic_regression`, `_gradient_boosting`, `_linear_svc`).
Which scikit-learn the study ran is not recorded: disentanglement_lib's setup.py asks for an
unpinned "scikit-learn" and the repository has no requirements or lock file; the study's models
were evaluated in 2018 (arXiv:1811.12359 v1 is of 29 November 2018), when 0.19.x or 0.20.x
(0.20.0: 25 September 2018) was current. For DCI that matters: see `gbt_importances`.

Deliberate departures, all in cases where disentanglement_lib returns NaN or raises: factors that
take a single value in a sample are left out of MIG's average; a code dimension that is constant
is left unscaled (not divided by a zero std) before explicitness' classifier; explicitness
averages the ROC AUC over the classes the classifier knows that occur in the test set.

The study's sample counts are large (10,000 training points for most metrics; the β-VAE score
encodes 2 * 64 * 15,000 observations). `compute_all(..., num_samples_scale=s)` multiplies every
count of points by s for quick looks; the per-point batch sizes of the β-VAE and FactorVAE scores
(64 observations) are part of those metrics' definitions and are not scaled.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Sequence, Union

import joblib
import numpy as np
from sklearn import ensemble
from sklearn import linear_model
from sklearn import metrics as sk_metrics
from sklearn import multiclass
from sklearn import svm
from sklearn.exceptions import ConvergenceWarning

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

# The keys every metric's dict uses, in the order `compute_all` returns them.
SCORE_KEYS = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness",
              "dci_informativeness", "sap", "modularity", "explicitness")


# --------------------------------------------------------------------------------------------
# Ground-truth data.


def as_generator(rng: RngLike) -> np.random.Generator:
  """A numpy Generator from a Generator (returned as is), an int seed, None, or a RandomState."""
  if isinstance(rng, np.random.Generator):
    return rng
  if isinstance(rng, np.random.RandomState):
    return np.random.default_rng(int(rng.randint(0, 2**31 - 1)))
  return np.random.default_rng(rng)


def _seed(rng: np.random.Generator) -> int:
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


def _logistic_regression(random_state: int):
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
  return multiclass.OneVsRestClassifier(
      linear_model.LogisticRegression(solver="liblinear", C=1.0, max_iter=100,
                                      random_state=random_state))


def _gradient_boosting(random_state: int):
  """`ensemble.GradientBoostingClassifier()` with its defaults, as DCI uses it.

  n_estimators=100, learning_rate=0.1, max_depth=3, subsample=1.0, criterion="friedman_mse",
  max_features=None: unchanged in name and value from scikit-learn 0.19 to 1.8, so the fitted
  trees are the same. A multiclass factor with K values fits K regression trees per boosting
  stage. disentanglement_lib leaves random_state unset; with subsample=1 and max_features=None
  the only randomness is the order in which features are tried, i.e. how ties between equally
  good splits are broken, so seeding it changes nothing else. `presort` (speed only) went in
  0.24. What did change is how `feature_importances_` sums the trees: see `gbt_importances`.
  """
  return ensemble.GradientBoostingClassifier(random_state=random_state)


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


def _linear_svc(random_state: int):
  """`svm.LinearSVC(C=0.01, class_weight="balanced")` as disentanglement_lib ran it (SAP).

  dual=True is set explicitly: it was the default then; scikit-learn 1.3 began moving the default
  to dual="auto" (1.5), which here (many samples, one feature) solves the primal problem instead.
  Both solve the same squared-hinge, L2, one-vs-rest problem (intercept penalised, liblinear), but
  the dual solver stops at max_iter=1000 and its answer is the one the study's numbers come from.
  """
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
  codes_NxD, factors_NxF = np.asarray(codes_NxD), np.asarray(factors_NxF)
  mi_DxF = np.zeros((codes_NxD.shape[1], factors_NxF.shape[1]))
  for d in range(codes_NxD.shape[1]):
    for f in range(factors_NxF.shape[1]):
      mi_DxF[d, f] = sk_metrics.mutual_info_score(factors_NxF[:, f], codes_NxD[:, d])
  return mi_DxF


def discrete_entropy(factors_NxF: np.ndarray) -> np.ndarray:
  """(F,) plug-in entropy (nats) of each discrete factor."""
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


# --------------------------------------------------------------------------------------------
# β-VAE score (Higgins et al., 2017).


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
  model = _logistic_regression(random_state)
  model.fit(train_features_PxD, train_labels_P)
  return float(model.score(eval_features_QxD, eval_labels_Q))


def beta_vae_score(data: FactorData, representation: Representation, rng: RngLike, *,
                   batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                   obs_per_call: int = OBSERVATIONS_PER_CALL) -> dict[str, float]:
  """β-VAE score (Higgins et al., 2017): {"beta_vae": evaluation accuracy}.

  A logistic regression (see `_logistic_regression`) learns to name the fixed factor from
  `beta_vae_features` (num_train points, each from 2 * batch_size observations) and is scored on
  num_eval fresh points. Chance is 1 / num_factors. It is invariant to permutations and sign
  flips of the code and tests only linear identifiability of the fixed factor, so a rotated
  code can keep a high score.
  """
  rng = as_generator(rng)
  x_tr, y_tr = beta_vae_features(data, representation, num_train, rng, batch_size=batch_size,
                                 obs_per_call=obs_per_call)
  seed = _seed(rng)
  x_ev, y_ev = beta_vae_features(data, representation, num_eval, rng, batch_size=batch_size,
                                 obs_per_call=obs_per_call)
  return {"beta_vae": beta_vae_from_features(x_tr, y_tr, x_ev, y_ev, random_state=seed)}


# --------------------------------------------------------------------------------------------
# FactorVAE score (Kim & Mnih, 2018).


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


# --------------------------------------------------------------------------------------------
# MIG (Chen et al., 2018).


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


# --------------------------------------------------------------------------------------------
# DCI (Eastwood & Williams, 2018).


def dci_importance_matrix(codes_train_NxD: np.ndarray, factors_train_NxF: np.ndarray,
                          codes_test_MxD: np.ndarray, factors_test_MxF: np.ndarray, *,
                          random_state: int = 0, n_jobs: int = -1,
                          gbt_importance: str = "summed"
                          ) -> tuple[np.ndarray, float, float]:
  """(importance_DxF, train accuracy, test accuracy) of one GBT classifier per factor.

  Column f holds the absolute feature importances of the gradient boosted trees predicting
  factor f from all codes (see `_gradient_boosting`; `gbt_importance` picks scikit-learn's
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
    model = _gradient_boosting(random_state).fit(codes_train_NxD, factors_train_NxF[:, f])
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
  return dci_from_codes(c_tr, f_tr, c_te, f_te, random_state=_seed(rng), n_jobs=n_jobs,
                        gbt_importance=gbt_importance)


# --------------------------------------------------------------------------------------------
# SAP (Kumar et al., 2018).


def sap_score_matrix(codes_train_NxD: np.ndarray, factors_train_NxF: np.ndarray,
                     codes_test_MxD: np.ndarray | None = None,
                     factors_test_MxF: np.ndarray | None = None, *,
                     continuous_factors: bool = False, random_state: int = 0) -> np.ndarray:
  """(D, F) predictability of each factor from each single code dimension.

  Discrete factors (disentanglement_lib's setting): test accuracy of a linear SVM (see
  `_linear_svc`) trained on that one dimension. Continuous factors: the squared correlation of
  the dimension and the factor on the training points (0 for a dimension of variance <= 1e-12).
  """
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
        clf = _linear_svc(random_state)
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
                                random_state=_seed(rng))}


# --------------------------------------------------------------------------------------------
# Modularity and explicitness (Ridgeway & Mozer, 2018).


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
  centred). Per factor, a one-vs-rest logistic regression (`_logistic_regression`) predicts class
  probabilities; the score is the macro average over classes of the one-vs-rest ROC AUC, over
  the classes seen in training that occur (and do not make up the whole) test set.
  """
  mean_D = codes_train_NxD.mean(axis=0)
  std_D = codes_train_NxD.std(axis=0)
  std_D = np.where(std_D > 0, std_D, 1.0)
  x_tr = (codes_train_NxD - mean_D) / std_D
  x_te = (codes_test_MxD - mean_D) / std_D
  aucs = []
  for f in range(factors_train_NxF.shape[1]):
    clf = _logistic_regression(random_state).fit(x_tr, factors_train_NxF[:, f])
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
                                                  random_state=_seed(rng))}


# --------------------------------------------------------------------------------------------
# All of them.


def compute_all(data: FactorData, representation: Representation, seed: int, *,
                num_samples_scale: float = 1.0,
                obs_per_call: int = OBSERVATIONS_PER_CALL,
                gbt_importance: str = "summed") -> dict[str, float]:
  """All nine scores with disentanglement_lib's defaults, each metric from `seed`
  (`gbt_importance`: DCI's importance formula, see `gbt_importances`).

  As in disentanglement_lib (evaluation.random_seed = 0 for every metric), each metric starts
  from a fresh generator seeded with `seed`. MIG, DCI, SAP and modularity/explicitness then draw
  the same random training (and test) points there, so they are encoded once here and shared;
  the result equals calling each metric with `np.random.default_rng(seed)`.
  `num_samples_scale` multiplies every count of points (not the per-point batch sizes).
  """
  s = num_samples_scale
  out: dict[str, float] = {}
  out.update(beta_vae_score(data, representation, np.random.default_rng(seed),
                            obs_per_call=obs_per_call, **scaled_defaults("beta_vae", s)))
  out.update(factor_vae_score(data, representation, np.random.default_rng(seed),
                              obs_per_call=obs_per_call, **scaled_defaults("factor_vae", s)))
  # MIG, DCI, SAP and modularity/explicitness share num_train = 10,000 and num_test = 5,000 in
  # the study's configs, hence one training and one test sample for all four.
  shared = ("mig", "dci", "sap", "modularity_explicitness")
  num_train = scaled_defaults("dci", s)["num_train"]
  num_test = scaled_defaults("dci", s)["num_test"]
  assert all(scaled_defaults(m, s)["num_train"] == num_train for m in shared)
  assert all(scaled_defaults(m, s)["num_test"] == num_test for m in shared[1:])
  rng = np.random.default_rng(seed)
  c_tr, f_tr = sample_codes(data, representation, num_train, rng, obs_per_call=obs_per_call)
  out["mig"] = mig_from_codes(c_tr, f_tr, num_bins=DEFAULTS["mig"]["num_bins"])
  c_te, f_te = sample_codes(data, representation, num_test, rng, obs_per_call=obs_per_call)
  clf_seed = _seed(rng)
  out.update(dci_from_codes(c_tr, f_tr, c_te, f_te, random_state=clf_seed,
                            gbt_importance=gbt_importance))
  out["sap"] = sap_from_codes(c_tr, f_tr, c_te, f_te,
                              continuous_factors=DEFAULTS["sap"]["continuous_factors"],
                              random_state=clf_seed)
  out["modularity"] = modularity_from_codes(
      c_tr, f_tr, num_bins=DEFAULTS["modularity_explicitness"]["num_bins"])
  out["explicitness"] = explicitness_from_codes(c_tr, f_tr, c_te, f_te, random_state=clf_seed)
  return {k: float(out[k]) for k in SCORE_KEYS}
