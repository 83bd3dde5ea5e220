"""A dataset's ground-truth factors as disentanglement_lib's metrics see them, and the metrics
of a trained model: `disentanglement_metrics(model, dataset, ...)` -> "disentanglement/<name>".

The representation is the posterior mean (an AE's code), as in Locatello et al. (2019). The
observations of a factor combination are looked up in the training split, which for dSprites
holds every combination exactly once (for a one-factor dataset such as MNIST each lookup picks
one of the images of that label at random). Chen et al.'s own MIG ("disentanglement/mig_chen",
`analysis.mig_chen`) uses the posteriors q(z|x) of the whole training split instead.

Which metrics there are, and when each is defined, is the registry's business
(`vae_jax.analysis.metrics`). A metric that is undefined here (β-VAE score, FactorVAE score,
DCI disentanglement and modularity on one factor such as MNIST's label; mig_chen for an AE; ...)
gets no key; its reason goes under "not_computed" ({"disentanglement/beta_vae": "needs at least
2 factors; 'mnist' has 1 (label)"}), in the returned dict and in results.json
(`merge_results`), and the run prints "<workdir>: disentanglement/beta_vae not computed:
<reason>" (`not_computed_lines`)."""

from __future__ import annotations

import time

import numpy as np

from vae_jax import latents
from vae_jax.analysis import metrics
from vae_jax.analysis.metrics import common
from vae_jax.errors import UserError

# The key of results.json (and of `disentanglement_metrics`' dict) that holds
# {result key: why it was not computed}.
NOT_COMPUTED = "not_computed"


def factor_data(ds) -> common.FactorData:
  """The `FactorData` of a dataset's training split (its labels as factor indices)."""
  factors = ds.factors("train")
  sizes = tuple(ds.factor_sizes) or tuple(int(m) + 1 for m in factors.max(0))
  try:
    lookup = common.factor_data_from_arrays(np.arange(len(factors)), factors, sizes,
                                             ds.factor_names)
  except ValueError as e:
    raise UserError(f"the disentanglement metrics need every factor combination of "
                    f"{ds.name!r} in its training split ({e})") from None
  return common.FactorData(
      sizes, lambda f, rng: ds.images("train", lookup.observe(f, rng)), ds.factor_names)


def representation(model):
  """images -> posterior means (N, Z), float32 matmuls, in batches."""
  return lambda images: latents.encode_means(model, images)


def disentanglement_metrics(model, ds, *, seed: int = 0, sample_scale: float = 1.0) -> dict:
  """Every registered metric (`vae_jax.analysis.metrics.REGISTRY`: disentanglement_lib's nine
  and, for a model with q(z|x), Chen et al.'s MIG) as "disentanglement/<key>", the settings and
  wall time they were computed with, and NOT_COMPUTED: {"disentanglement/<key>": reason} for
  every key whose preconditions do not hold on this model and dataset (possibly empty)."""
  t0 = time.perf_counter()
  inputs = metrics.Inputs(factor_data(ds), representation(model), seed,
                          num_samples_scale=sample_scale, dataset_name=ds.name, model=model,
                          dataset=ds)
  result = metrics.evaluate(inputs)
  prefix = metrics.PREFIX
  out = {prefix + k: v for k, v in result.scores.items()}
  out.update({prefix + k: v for k, v in result.details.items()})
  out.update({"disentanglement/seed": seed, "disentanglement/sample_scale": float(sample_scale),
              "disentanglement/seconds": time.perf_counter() - t0})
  out[NOT_COMPUTED] = {prefix + k: why for k, why in result.not_computed.items()}
  return out


def merge_results(results: dict, new: dict) -> dict:
  """`results` (a results.json dict) updated in place with `new` (as `disentanglement_metrics`
  returns it) and returned: a key computed now replaces its old value and loses any old reason;
  a key not computed now loses any old value and records its reason under NOT_COMPUTED (kept
  only when it holds something)."""
  reasons = dict(new.get(NOT_COMPUTED, {}))
  results.update({k: v for k, v in new.items() if k != NOT_COMPUTED})
  for k in reasons:
    results.pop(k, None)
  merged = {k: v for k, v in results.get(NOT_COMPUTED, {}).items() if k not in new}
  merged.update(reasons)
  results.pop(NOT_COMPUTED, None)
  if merged:
    results[NOT_COMPUTED] = merged
  return results


def not_computed_lines(workdir, new: dict) -> list[str]:
  """"<workdir>: <key> not computed: <reason>", one line per key left out of `new`."""
  return [f"{workdir}: {k} not computed: {why}" for k, why in new.get(NOT_COMPUTED, {}).items()]


def factor_traversal_images(ds, base_index: int = 0) -> dict:
  """{factor name: (values, uint8 images)}: training images that differ from image
  `base_index` in one factor alone, over all of that factor's values (for
  `figures.traversals.save_factor_traversals`). Factors without such a full set are left out."""
  factors = ds.factors("train")
  sizes = tuple(ds.factor_sizes)
  row_of = np.full(int(np.prod(sizes)), -1, np.int64)  # grid cell -> a training row in it
  row_of[np.ravel_multi_index(tuple(factors.T), sizes)] = np.arange(len(factors))
  out = {}
  for d, (name, size) in enumerate(zip(ds.factor_names, sizes)):
    grid = np.repeat(factors[base_index][None], size, 0)
    grid[:, d] = np.arange(size)
    rows = row_of[np.ravel_multi_index(tuple(grid.T), sizes)]
    if (rows >= 0).all():
      out[name] = (np.arange(size), ds.images("train", rows))
  return out


def normalised_unit_factor_mi(codes_NxZ, factors_NxF, num_bins: int = 20) -> np.ndarray:
  """(Z, F) mutual information between each code unit and each factor, as a share of the
  factor's entropy: disentanglement_lib's MIG inputs (each unit binned into `num_bins`
  equal-width bins, plug-in MI in nats) divided by H(factor). A constant factor (H = 0) gets 0."""
  factors_NxF = np.asarray(factors_NxF).reshape(len(factors_NxF), -1)
  mi_ZxF = common.discrete_mutual_info(common.histogram_discretize(codes_NxZ, num_bins),
                                       factors_NxF)
  entropy_F = common.discrete_entropy(factors_NxF)
  return np.divide(mi_ZxF, entropy_F, out=np.zeros_like(mi_ZxF), where=entropy_F > 0)


def unit_factor_information(model, ds, num_points: int = 10000, seed: int = 0,
                            num_bins: int = 20) -> tuple[np.ndarray, tuple[str, ...]]:
  """(Z, F) normalised unit-factor MI (`normalised_unit_factor_mi`) of the posterior means
  of `num_points` training images drawn with a fixed numpy seed (all of them when the split is
  smaller), and the factors' names: which ground-truth factor each latent unit carries (for
  the row labels of `figures.traversals.save_traversals`)."""
  factors = ds.factors("train")
  n = min(num_points, len(factors))
  rows = np.sort(np.random.default_rng(seed).choice(len(factors), n, replace=False))
  codes = latents.encode_means(model, ds.images("train", rows))
  return normalised_unit_factor_mi(codes, factors[rows], num_bins), tuple(ds.factor_names)
