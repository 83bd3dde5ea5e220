"""Chen et al.'s own MIG ("mig_chen") as an entry of the registry. The estimator, which works on
the encoder's q(z|x) of the whole training split rather than on sampled codes, is
`vae_jax.analysis.mig_chen` (imported only when the metric runs: it needs JAX).

Preconditions (`METRIC`), and why:
* q(z|x) of every training image: a model with an encoder distribution and its dataset (an AE
  has none; `analysis.mig_chen.unavailable_reason` says so);
* a factor that takes 2 or more values in the training split (the factors it averages over,
  `analysis.mig_chen.factors_used`: on dSprites scale, orientation, x and y). One is enough;
* at least 2 code dimensions: as for MIG, the gap between the two most informative units.
"""

from __future__ import annotations

import time

from vae_jax.analysis.metrics import interface


def _has_posteriors(inputs: interface.Inputs) -> str | None:
  if inputs.model is None or inputs.dataset is None:
    return ("needs the encoder's q(z|x) of every training image (a model and its dataset); "
            "only a representation was given")
  from vae_jax.analysis import mig_chen  # pylint: disable=g-import-not-at-top
  return mig_chen.unavailable_reason(inputs.model, inputs.dataset)


HAS_POSTERIORS = interface.Requirement(
    "q(z|x) of every training image (not an AE); a factor that takes 2 or more values",
    _has_posteriors)


def _from_inputs(inputs: interface.Inputs) -> dict[str, float]:
  """{"mig_chen", "mig_chen_seconds"} with max(2, round(10,000 * sample_scale)) sample points
  per set (Chen et al.'s 10,000 at scale 1)."""
  from vae_jax.analysis import mig_chen  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  num_samples = max(2, int(round(mig_chen.NUM_SAMPLES * inputs.num_samples_scale)))
  r = mig_chen.mig_chen_of_model(inputs.model, inputs.dataset, seed=inputs.seed,
                                 num_samples=num_samples)
  return {"mig_chen": r["mig_chen"], "mig_chen_seconds": time.perf_counter() - t0}


METRIC = interface.Metric(
    name="mig_chen", keys=("mig_chen",), needs=interface.POSTERIORS, compute=_from_inputs,
    requires=(HAS_POSTERIORS, interface.AT_LEAST_TWO_CODE_DIMS),
    paper="Chen et al. (2018), their code")
