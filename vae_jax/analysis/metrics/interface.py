"""What a metric is to the registry: its record (`Metric`), what it is computed from
(`Inputs`), and the preconditions it states (`Requirement`).

A metric whose question is undefined on the data at hand, or answered perfectly by
construction, is not computed: its keys are absent from the results and `Metric.unmet` says
why, one line per key ("needs at least 2 factors; mnist has 1 (label)"). disentanglement_lib
returns NaN or raises in most of these cases; here a 1.0 would read as a perfect score and a
NaN as a failed run, so neither is reported.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

import numpy as np

from vae_jax.analysis.metrics import common

# What a metric is computed from (`Metric.needs`).
CODES = "codes"  # codes (posterior means) of observations drawn by their factors (`Inputs.data`)
POSTERIORS = "posteriors"  # q(z|x) of every training image: a model and its dataset

# The metrics that share one training and one test sample of codes (`Inputs.train_sample`):
# the study's configs give all four num_train = 10,000 and (but MIG) num_test = 5,000.
SHARED_SAMPLE = ("mig", "dci", "sap", "modularity_explicitness")

# Fewer expected training points than this per class (a factor's value; for the β-VAE and
# FactorVAE scores, a factor) and a metric is not computed. With 5 per value a value is missing
# from the training points with probability about e^-5 = 0.7%; with 1 per value, 37%, and the
# plug-in MI of 20 bins is then biased by about (20 - 1)(K - 1) / (2 N) = 9.5 nats per factor,
# more than any factor's entropy. It only binds for tiny `sample_scale`s (dSprites' 40
# orientations need 200 points: sample_scale 0.02).
MIN_POINTS_PER_CLASS = 5


@dataclasses.dataclass(frozen=True)
class Requirement:
  """A precondition: `summary` says it for people (the README's table of metrics);
  `check(inputs)` returns None where it holds, else the reason, one line."""

  summary: str
  check: Callable[["Inputs"], str | None]


@dataclasses.dataclass(frozen=True, eq=False)
class Metric:
  """One entry of the registry (`vae_jax.analysis.metrics.REGISTRY`).

  Attributes:
    name: the registry's name ("dci").
    keys: the result keys it produces, in order ("dci_disentanglement", ...).
    needs: CODES or POSTERIORS.
    compute: inputs -> {key: value} for every key (extra keys, such as a time, pass through
      to `Evaluation.details`).
    requires: preconditions of every key, checked in order (the first unmet one is the reason).
    requires_per_key: further preconditions of single keys (DCI disentanglement compares
      factors; DCI informativeness does not).
    paper: where the metric is defined, for the table of metrics.
  """

  name: str
  keys: tuple[str, ...]
  needs: str
  compute: Callable[["Inputs"], dict]
  requires: tuple[Requirement, ...] = ()
  requires_per_key: Mapping[str, tuple[Requirement, ...]] = dataclasses.field(
      default_factory=dict)
  paper: str = ""

  def requirements(self, key: str) -> tuple[Requirement, ...]:
    return self.requires + tuple(self.requires_per_key.get(key, ()))

  def unmet(self, inputs: "Inputs") -> dict[str, str]:
    """{key: reason} for each key whose preconditions do not all hold (first reason only)."""
    out = {}
    for key in self.keys:
      for requirement in self.requirements(key):
        reason = requirement.check(inputs)
        if reason:
          out[key] = reason
          break
    return out


class Inputs:
  """What metrics are computed from: ground-truth data, a representation, a seed and the sample
  counts; for POSTERIORS metrics also a model and its dataset. Shared parts are made once, on
  first use.

  As in disentanglement_lib (evaluation.random_seed = 0 for every metric) each metric starts
  from a fresh generator seeded with `seed` (`fresh_rng`). MIG, DCI, SAP and
  modularity/explicitness would then draw the same training and test points, so those are
  drawn once (`train_sample`, `test_sample`, then `classifier_seed`, in that order, from one
  generator): the result equals calling each metric with `np.random.default_rng(seed)`.
  """

  def __init__(self, data: common.FactorData, representation: common.Representation,
               seed: int, *, num_samples_scale: float = 1.0,
               obs_per_call: int = common.OBSERVATIONS_PER_CALL,
               gbt_importance: str = "summed", dataset_name: str | None = None,
               model=None, dataset=None, num_dims: int | None = None):
    self.data = data
    self.representation = representation
    self.seed = seed
    self.num_samples_scale = num_samples_scale
    self.obs_per_call = obs_per_call
    self.gbt_importance = gbt_importance
    self.dataset_name = dataset_name
    self.model = model
    self.dataset = dataset
    self._num_dims = num_dims
    self._shared_rng = None

  @property
  def num_factors(self) -> int:
    return self.data.num_factors

  def fresh_rng(self) -> np.random.Generator:
    return np.random.default_rng(self.seed)

  def settings(self, metric: str) -> dict:
    """disentanglement_lib's settings of `metric` (a key of `common.DEFAULTS`), counts scaled."""
    return common.scaled_defaults(metric, self.num_samples_scale)

  def shared_counts(self) -> tuple[int, int]:
    """(num_train, num_test) of the shared sample."""
    num_train, num_test = self.settings("dci")["num_train"], self.settings("dci")["num_test"]
    assert all(self.settings(m)["num_train"] == num_train for m in SHARED_SAMPLE)
    assert all(self.settings(m)["num_test"] == num_test for m in SHARED_SAMPLE[1:])
    return num_train, num_test

  @functools.cached_property
  def train_sample(self) -> tuple[np.ndarray, np.ndarray]:
    """(codes_NxD, factors_NxF) of the shared training points."""
    self._shared_rng = self.fresh_rng()
    return common.sample_codes(self.data, self.representation, self.shared_counts()[0],
                               self._shared_rng, obs_per_call=self.obs_per_call)

  @functools.cached_property
  def test_sample(self) -> tuple[np.ndarray, np.ndarray]:
    """(codes_MxD, factors_MxF) of the shared test points (drawn after the training points)."""
    _ = self.train_sample
    return common.sample_codes(self.data, self.representation, self.shared_counts()[1],
                               self._shared_rng, obs_per_call=self.obs_per_call)

  @functools.cached_property
  def classifier_seed(self) -> int:
    """The `random_state` of the shared sample's classifiers (drawn after the test points)."""
    _ = self.test_sample
    return common.draw_seed(self._shared_rng)

  @property
  def num_dims(self) -> int:
    """The code's dimension (as given, else that of the shared training codes)."""
    if self._num_dims is None:
      self._num_dims = int(self.train_sample[0].shape[1])
    return self._num_dims

  def where(self) -> str:
    return repr(self.dataset_name) if self.dataset_name else "the data"

  def factor_list(self, indices) -> str:
    return ", ".join(self.data.factor_names[i] for i in indices)


# --------------------------------------------------------------------------------------------
# The preconditions metrics state.


def _two_factors(inputs: Inputs) -> str | None:
  f = inputs.num_factors
  if f < 2:
    return f"needs at least 2 factors; {inputs.where()} has {f} ({inputs.factor_list(range(f))})"
  return None


def _every_factor_varies(inputs: Inputs) -> str | None:
  constant = [i for i, s in enumerate(inputs.data.factor_sizes) if s < 2]
  if constant:
    return (f"needs every factor to take at least 2 values; in {inputs.where()} "
            f"{inputs.factor_list(constant)} take{'s' if len(constant) == 1 else ''} 1")
  return None


def _some_factor_varies(inputs: Inputs) -> str | None:
  if max(inputs.data.factor_sizes) < 2:
    return f"needs a factor that takes at least 2 values; none of {inputs.where()}'s does"
  return None


def _two_code_dims(inputs: Inputs) -> str | None:
  d = inputs.num_dims
  if d < 2:
    return (f"needs at least 2 code dimensions (it takes the gap between the two most "
            f"informative); the code has {d}")
  return None


AT_LEAST_TWO_FACTORS = Requirement("at least 2 factors", _two_factors)
EVERY_FACTOR_VARIES = Requirement("every factor takes 2 or more values", _every_factor_varies)
SOME_FACTOR_VARIES = Requirement("a factor that takes 2 or more values", _some_factor_varies)
AT_LEAST_TWO_CODE_DIMS = Requirement("at least 2 code dimensions", _two_code_dims)


def enough_points_per_value(metric: str) -> Requirement:
  """MIN_POINTS_PER_CLASS training points (`metric`'s scaled num_train) per value of the
  largest factor."""

  def check(inputs: Inputs) -> str | None:
    n = inputs.settings(metric)["num_train"]
    sizes = inputs.data.factor_sizes
    largest = int(np.argmax(sizes))
    need = MIN_POINTS_PER_CLASS * sizes[largest]
    if n < need:
      return (f"needs at least {MIN_POINTS_PER_CLASS} training points per factor value, "
              f"{need} for the {sizes[largest]} values of {inputs.data.factor_names[largest]}; "
              f"sample_scale {inputs.num_samples_scale:g} gives {n}")
    return None

  return Requirement(f"{MIN_POINTS_PER_CLASS} training points per factor value", check)


def enough_points_per_factor(metric: str) -> Requirement:
  """MIN_POINTS_PER_CLASS training points (`metric`'s scaled num_train) per factor: the classes
  of the β-VAE and FactorVAE scores are the factors."""

  def check(inputs: Inputs) -> str | None:
    n = inputs.settings(metric)["num_train"]
    need = MIN_POINTS_PER_CLASS * inputs.num_factors
    if n < need:
      return (f"needs at least {MIN_POINTS_PER_CLASS} training points per factor, {need} for "
              f"{inputs.num_factors} factors; sample_scale {inputs.num_samples_scale:g} gives {n}")
    return None

  return Requirement(f"{MIN_POINTS_PER_CLASS} training points per factor", check)
