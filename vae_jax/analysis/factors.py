"""A dataset's ground-truth factors as disentanglement_lib's metrics see them, and the metrics
of a trained model: `disentanglement_metrics(model, dataset, ...)` -> "disentanglement/<name>".

The representation is the posterior mean (an AE's code), as in Locatello et al. (2019). The
observations of a factor combination are looked up in the training split, which for dSprites
holds every combination exactly once (for a one-factor dataset such as MNIST each lookup picks
one of the images of that label at random). Chen et al.'s own MIG ("disentanglement/mig_chen",
`analysis.mig_chen`) uses the posteriors q(z|x) of the whole training split instead; an AE has
none and gets no such key.
"""

from __future__ import annotations

import time

import numpy as np

from vae_jax import latents
from vae_jax.analysis import disentanglement
from vae_jax.analysis import mig_chen
from vae_jax.errors import UserError


def factor_data(ds) -> disentanglement.FactorData:
  """The `FactorData` of a dataset's training split (its labels as factor indices)."""
  factors = ds.factors("train")
  sizes = tuple(ds.factor_sizes) or tuple(int(m) + 1 for m in factors.max(0))
  try:
    lookup = disentanglement.factor_data_from_arrays(np.arange(len(factors)), factors, sizes,
                                                     ds.factor_names)
  except ValueError as e:
    raise UserError(f"the disentanglement metrics need every factor combination of "
                    f"{ds.name!r} in its training split ({e})") from None
  return disentanglement.FactorData(
      sizes, lambda f, rng: ds.images("train", lookup.observe(f, rng)), ds.factor_names)


def representation(model):
  """images -> posterior means (N, Z), float32 matmuls, in batches."""
  return lambda images: latents.encode_means(model, images)


def chen_mig_metrics(model, ds, *, seed: int = 0, sample_scale: float = 1.0) -> dict:
  """{"disentanglement/mig_chen": Chen et al.'s MIG, "disentanglement/mig_chen_seconds"} of a
  VAE over its dataset's whole training split, with max(2, round(10,000 * sample_scale)) sample
  points per set (their 10,000 at scale 1); {} where it is undefined (an AE, or no factor that
  varies: `mig_chen.unavailable_reason` says which)."""
  if mig_chen.unavailable_reason(model, ds):
    return {}
  t0 = time.perf_counter()
  num_samples = max(2, int(round(mig_chen.NUM_SAMPLES * sample_scale)))
  r = mig_chen.mig_chen_of_model(model, ds, seed=seed, num_samples=num_samples)
  return {"disentanglement/mig_chen": r["mig_chen"],
          "disentanglement/mig_chen_seconds": time.perf_counter() - t0}


def disentanglement_metrics(model, ds, *, seed: int = 0, sample_scale: float = 1.0) -> dict:
  """The nine metrics of `disentanglement.compute_all` as "disentanglement/<name>", Chen et
  al.'s MIG as "disentanglement/mig_chen" (a VAE only, see `chen_mig_metrics`), plus the
  settings and wall time they were computed with."""
  t0 = time.perf_counter()
  scores = disentanglement.compute_all(factor_data(ds), representation(model), seed,
                                       num_samples_scale=sample_scale)
  out = {f"disentanglement/{k}": v for k, v in scores.items()}
  out.update(chen_mig_metrics(model, ds, seed=seed, sample_scale=sample_scale))
  out.update({"disentanglement/seed": seed, "disentanglement/sample_scale": float(sample_scale),
              "disentanglement/seconds": time.perf_counter() - t0})
  return out


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
  mi_ZxF = disentanglement.discrete_mutual_info(
      disentanglement.histogram_discretize(codes_NxZ, num_bins), factors_NxF)
  entropy_F = disentanglement.discrete_entropy(factors_NxF)
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
