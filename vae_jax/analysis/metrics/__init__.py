"""Supervised disentanglement metrics, one file per metric, chosen by name from one table.

The nine numbers of Locatello et al. (2019), "Challenging Common Assumptions in the Unsupervised
Learning of Disentangled Representations" (ICML), computed the way their library
(google-research/disentanglement_lib, `evaluation/metrics/`) computes them, with the defaults of
its `config/unsupervised_study_v1/metric_configs/*.gin` (`common.DEFAULTS`), plus Chen et al.'s
own MIG from q(z|x):

    name (file)               keys
    beta_vae                  beta_vae
    factor_vae                factor_vae
    mig                       mig
    mig_chen                  mig_chen (from q(z|x) of the whole training split)
    dci                       dci_disentanglement, dci_completeness, dci_informativeness
    sap                       sap
    modularity_explicitness   modularity, explicitness

Each file defines its metric's functions and its `METRIC` record (`interface.Metric`): the
function from `interface.Inputs`, the result keys, what it needs (CODES: posterior means of
observations drawn by their factors; POSTERIORS: q(z|x) of every training image) and its
preconditions, each with the reason it is there. `evaluate` loops over the registry: a key whose
preconditions fail is absent from the scores and present, with its one-line reason, in
`not_computed`. A new metric is one file and one entry in `REGISTRY`; results.json, sweep.csv
and the sweep's disentanglement figure take its keys from here.

The code was written from the definitions, not copied. Deliberate departures, all in cases where
disentanglement_lib returns NaN or raises: factors that take a single value in a sample are left
out of MIG's average; a code dimension that is constant is left unscaled (not divided by a zero
std) before explicitness' classifier; explicitness averages the ROC AUC over the classes the
classifier knows that occur in the test set; and a metric whose preconditions fail is absent.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from vae_jax.analysis.metrics import (beta_vae, common, dci, factor_vae, interface, mig,
                                      mig_chen, modularity_explicitness, sap)
from vae_jax.analysis.metrics.interface import CODES, POSTERIORS, Inputs, Metric  # noqa: F401

# The registry, in the order results are reported (and sweep.csv's columns run).
REGISTRY: dict[str, Metric] = {m.name: m for m in (
    beta_vae.METRIC, factor_vae.METRIC, mig.METRIC, mig_chen.METRIC, dci.METRIC, sap.METRIC,
    modularity_explicitness.METRIC)}

# The result keys of the metrics computed from codes alone (disentanglement_lib's nine), in order.
SCORE_KEYS = tuple(k for m in REGISTRY.values() if m.needs == CODES for k in m.keys)

# The prefix of the metrics' keys in results.json ("disentanglement/mig").
PREFIX = "disentanglement/"


def result_keys(prefix: str = PREFIX) -> tuple[str, ...]:
  """Every registered metric's result keys, in registry order, with `prefix`."""
  return tuple(prefix + k for m in REGISTRY.values() for k in m.keys)


@dataclasses.dataclass
class Evaluation:
  """What `evaluate` returns.

  Attributes:
    scores: {key: value} of every key computed, in registry order.
    not_computed: {key: reason} of every key left out (one line each).
    details: further numbers a metric returned beside its keys ("mig_chen_seconds").
  """

  scores: dict[str, float]
  not_computed: dict[str, str]
  details: dict[str, float]


def evaluate(inputs: Inputs, names: Iterable[str] | None = None) -> Evaluation:
  """The registered metrics `names` (default: all) on `inputs`, in registry order.

  A metric runs when at least one of its keys' preconditions holds; keys whose preconditions
  fail are not reported, whatever the metric computed for them.
  """
  names = list(REGISTRY) if names is None else list(names)
  unknown = [n for n in names if n not in REGISTRY]
  if unknown:
    raise ValueError(f"unknown metric(s) {unknown}; registered: {', '.join(REGISTRY)}")
  scores, not_computed, details = {}, {}, {}
  for metric in REGISTRY.values():
    if metric.name not in names:
      continue
    unmet = metric.unmet(inputs)
    not_computed.update(unmet)
    if len(unmet) == len(metric.keys):
      continue
    values = metric.compute(inputs)
    scores.update({k: float(values[k]) for k in metric.keys if k not in unmet})
    details.update({k: v for k, v in values.items() if k not in metric.keys})
  return Evaluation(scores, not_computed, details)


def compute_all(data: common.FactorData, representation: common.Representation, seed: int, *,
                num_samples_scale: float = 1.0,
                obs_per_call: int = common.OBSERVATIONS_PER_CALL,
                gbt_importance: str = "summed") -> dict[str, float]:
  """disentanglement_lib's nine scores with its defaults, each metric from `seed`
  (`gbt_importance`: DCI's importance formula, see `dci.gbt_importances`), those whose
  preconditions hold: `evaluate` on the CODES metrics, without the reasons.

  `num_samples_scale` multiplies every count of points (not the per-point batch sizes); see
  `interface.Inputs` for how the random draws are shared.
  """
  inputs = Inputs(data, representation, seed, num_samples_scale=num_samples_scale,
                  obs_per_call=obs_per_call, gbt_importance=gbt_importance)
  return evaluate(inputs, [m.name for m in REGISTRY.values() if m.needs == CODES]).scores


def table() -> str:
  """The registry as a Markdown table: metric, keys, needs, preconditions (for the README)."""
  lines = ["| metric | keys | computed from | reported only with |", "| --- | --- | --- | --- |"]
  for m in REGISTRY.values():
    needs = ("posterior means of sampled observations" if m.needs == CODES
             else "q(z|x) of every training image")
    conditions = [r.summary for r in m.requires] + [
        f"{r.summary} ({k})" for k, rs in m.requires_per_key.items() for r in rs]
    cells = (f"{m.name} ({m.paper})", ", ".join(m.keys), needs, "; ".join(conditions))
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  return "\n".join(lines)
