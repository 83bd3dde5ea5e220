"""Figures of trained models: samples, latent manifolds, latent scatters, interpolations, and
AE vs VAE side by side. PNG files (matplotlib, no display needed).
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import jax
import numpy as np

from vae_jax import latents, models
from vae_jax.analysis import probes
from vae_jax.figures import grids
from vae_jax.figures.grids import plt, save_figure

VAE_GRID_QUANTILES = (0.05, 0.95)  # the VAE manifold spans these prior quantiles per axis
AE_GRID_PERCENTILES = (1.0, 99.0)  # the AE manifold spans these percentiles of its latents
_DIGIT_COLORS = plt.get_cmap("tab10")


def manifold_axes(family, n: int = 10, latents_Nx2: np.ndarray | None = None):
  """The latent values along each axis of the n x n manifold grid: two arrays of shape (n,).

  `family`: a model, or a family name of `models.FAMILIES`. With a N(0, I) prior (the VAE):
  the N(0, 1) inverse CDF of linspace(0.05, 0.95, n), equal prior mass between points. Without
  one (the AE, which has no prior; the two-layer and VampPrior VAEs, whose prior over z has no
  quantiles in closed form): linspace between the 1st and 99th percentiles of `latents_Nx2` per
  axis, the region the codes occupy.
  """
  if isinstance(family, str):
    family = models.FAMILIES[family]
  if family.standard_normal_prior:
    q = np.asarray(jax.scipy.stats.norm.ppf(np.linspace(*VAE_GRID_QUANTILES, n)), np.float64)
    return q, q.copy()
  if latents_Nx2 is None:
    raise ValueError("the AE manifold needs latents to find the range they occupy")
  lo, hi = np.percentile(latents_Nx2, AE_GRID_PERCENTILES, axis=0)
  return np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)


def decode_manifold(model, z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
  """Mean images on the grid, row-major with z2 decreasing down the rows (as on a plot)."""
  zz = np.array([[a, b] for b in z2[::-1] for a in z1], np.float32)
  return latents.decode_means(model, zz)


def _draw_grid(ax, images, z1, z2, title):
  n1, n2 = len(z1), len(z2)
  canvas = grids.tile(images, n1)
  h, w = images.shape[1:3]
  ax.imshow(canvas[..., 0] if canvas.shape[-1] == 1 else canvas, cmap="gray", vmin=0, vmax=1,
            interpolation="nearest")
  ax.set_xticks([(w + 1) * (j + 0.5) for j in range(n1)], [f"{v:.2g}" for v in z1],
                rotation=90, fontsize=7)
  ax.set_yticks([(h + 1) * (i + 0.5) for i in range(n2)], [f"{v:.2g}" for v in z2[::-1]],
                fontsize=7)
  ax.set_xlabel("$z_1$")
  ax.set_ylabel("$z_2$")
  ax.set_title(title, fontsize=10)


def _coloured(labels, label_name) -> bool:
  """Whether a scatter is coloured by its labels: not without labels or a name for them, nor
  when every point has the same one (an unlabelled dataset's labels are zeros, one class)."""
  return labels is not None and label_name is not None and len(np.unique(labels)) > 1


def _draw_scatter(ax, codes, labels, title, box=None, label_name="digit"):
  """Codes in 2-D (PCA above 2 dimensions), coloured by `labels` when `_coloured`."""
  codes = np.asarray(codes)
  if codes.shape[1] == 2:
    xy, names = codes, ("$z_1$", "$z_2$")
  else:
    mean, comps, ratio = probes.pca(codes, 2)
    xy = probes.pca_transform(codes, mean, comps)
    names = tuple(f"PC {i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(ratio))
    box = None
  coloured = _coloured(labels, label_name)
  if coloured:
    for d in np.unique(labels):
      sel = labels == d
      ax.scatter(xy[sel, 0], xy[sel, 1], s=2, alpha=0.5, color=_DIGIT_COLORS(int(d) % 10),
                 label=str(d), rasterized=True, linewidths=0)
  else:
    ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.5, color="0.25", rasterized=True, linewidths=0)
  if box is not None:  # the region the manifold grid covers
    (x0, x1), (y0, y1) = box
    ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], "k--", lw=0.8, label="grid")
  if coloured or box is not None:
    ax.legend(title=label_name if coloured else None, markerscale=5, fontsize=7,
              title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
  ax.set_xlabel(names[0])
  ax.set_ylabel(names[1])
  ax.set_title(title, fontsize=10)


# Datasets whose one label is a digit (TFDS names); other labelled data name their factor.
DIGIT_DATASETS = ("mnist", "binarized_mnist", "svhn_cropped", "emnist/digits", "emnist/mnist")


def scatter_label_name(ds) -> str | None:
  """What colours a dataset's latent scatter: "digit" for digit data (`DIGIT_DATASETS`), else
  the first factor's name ("label", "shape"); None for unlabelled data (drawn uncoloured)."""
  if not ds.labelled:
    return None
  if str(ds.name).split(":")[-1] in DIGIT_DATASETS:
    return "digit"
  from vae_jax.figures.traversals import factor_name  # pylint: disable=g-import-not-at-top
  return factor_name(ds.factor_names[0])


def _model_name(model) -> str:
  return model.title


def save_samples(path, model, key, n: int = 64, train_images_u8=None) -> str:
  """Decoded prior samples (a stochastic family's prior; AE: a Gaussian fitted to training
  latents)."""
  samples = latents.prior_samples(model, key, n, train_images_u8)
  what = (f"prior {model.prior_description}" if model.stochastic
          else "Gaussian fitted to training latents")
  return grids.save_grid(path, samples, int(np.ceil(np.sqrt(n))),
                         f"{_model_name(model)} samples: decoded z ~ {what}")


def save_manifold(path, model, codes=None, n: int = 10) -> str:
  """The n x n grid of decoded latents of a 2-D model (see `manifold_axes`)."""
  if model.latent_dim != 2:
    raise ValueError(f"the manifold needs a 2-D latent space (latent_dim={model.latent_dim})")
  z1, z2 = manifold_axes(model, n, codes)
  fig, ax = plt.subplots(figsize=(6.2, 6.4))
  _draw_grid(ax, decode_manifold(model, z1, z2), z1, z2, _manifold_title(model))
  return save_figure(fig, path)


def _manifold_title(model) -> str:
  if model.standard_normal_prior:
    return f"{model.title} latent manifold: $z$ = $\\Phi^{{-1}}$(0.05 ... 0.95) per axis"
  return f"{model.title} latent manifold: 1st ... 99th percentile of its latents"


def save_latent_scatter(path, codes, labels, title: str = "Test latents (posterior means)",
                        label_name: str | None = "digit") -> str:
  """Each image's latent (mean), coloured by its label (`label_name`: "digit", a factor's
  name); uncoloured when `labels` or `label_name` is None or every label is the same. PCA to
  2-D when the latent is larger."""
  fig, ax = plt.subplots(figsize=(6.4, 5.2))
  _draw_scatter(ax, codes, None if labels is None else np.asarray(labels), title,
                label_name=label_name)
  return save_figure(fig, path)


def save_interpolations(path, model, images_a_u8, images_b_u8, steps: int = 10,
                        labels: Sequence[str] | None = None) -> str:
  """Rows: image a, `steps` decodings of the straight latent line from a to b, image b."""
  za = latents.encode_means(model, images_a_u8)
  zb = latents.encode_means(model, images_b_u8)
  t = np.linspace(0.0, 1.0, steps)[None, :, None]
  z = (1 - t) * za[:, None] + t * zb[:, None]
  dec = latents.decode_means(model, z.reshape(-1, z.shape[-1])).reshape(
      len(za), steps, *images_a_u8.shape[1:])
  rows = np.concatenate([images_a_u8[:, None] / 255.0, dec, images_b_u8[:, None] / 255.0], 1)
  return grids.save_grid(path, rows.reshape(-1, *rows.shape[2:]), steps + 2,
                         f"{_model_name(model)} interpolations: input, decoded line in z, input",
                         list(labels) if labels is not None else None)


def save_ae_vs_vae(path, ae_model, vae_model, test_images_u8, test_labels, n: int = 10, *,
                   dataset_name: str | None = None, label_name: str | None = "digit") -> str:
  """Top: both test-latent scatters (coloured as `save_latent_scatter`); bottom: both manifold
  grids (2-D latents). `dataset_name` names the data in the title."""
  fig, axes = plt.subplots(2, 2, figsize=(12.5, 11.5))
  labels = None if test_labels is None else np.asarray(test_labels)
  if labels is not None and labels.ndim == 2:
    labels = labels[:, 0]
  for col, model in enumerate((ae_model, vae_model)):
    lat = latents.encode_means(model, test_images_u8)
    z1, z2 = manifold_axes(model, n, lat)
    name = _model_name(model)
    _draw_scatter(axes[0, col], lat, labels,
                  f"{name}: test latents ({'posterior means' if model.stochastic else 'z = f(x)'})",
                  box=((z1[0], z1[-1]), (z2[0], z2[-1])), label_name=label_name)
    _draw_grid(axes[1, col], decode_manifold(model, z1, z2), z1, z2, _manifold_title(model))
  where = f"{dataset_name} test set" if dataset_name else "test set"
  fig.suptitle(f"AE vs VAE with a 2-D latent space ({where})", fontsize=13)
  return save_figure(fig, path, dpi=90)  # 1.1k x 1k pixels: readable, a few hundred KB


def interpolation_pairs(labels, digit_pairs=((0, 6), (1, 7), (2, 3), (4, 9), (5, 8), (3, 8))):
  """Test-set indices (a, b) and row labels "a→b": the first image of one digit to the first
  of another, for the digit pairs present in `labels`."""
  labels = np.asarray(labels)
  first = {int(d): int(np.flatnonzero(labels == d)[0]) for d in np.unique(labels)}
  pairs = [(first[a], first[b]) for a, b in digit_pairs if a in first and b in first]
  if not pairs:  # fewer than two of the digits: consecutive images instead
    pairs = [(i, i + 1) for i in range(0, min(len(labels) - 1, 12), 2)]
  ia, ib = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
  return ia, ib, [f"{labels[a]}→{labels[b]}" for a, b in pairs]


def save_latent_figures(workdir, model, test_images_u8, test_labels,
                        label_name: str | None = "digit") -> dict[str, str]:
  """A finished run's latent figures in `workdir`: latents.png (scatter; PCA above 2-D) and,
  for a 2-D latent space, manifold.png. Returns {name: path} for the run's image log.
  `test_labels` (N,) colour the scatter; for (N, F) factor labels the first factor does;
  `label_name` says what they are (`scatter_label_name(ds)`). Without labels or a name, or
  with one label for every image (unlabelled data), the scatter is uncoloured."""
  workdir = pathlib.Path(workdir)
  lat = latents.encode_means(model, test_images_u8)
  labels = None if test_labels is None else np.asarray(test_labels)
  if labels is not None and labels.ndim == 2:
    labels = labels[:, 0]
  what = "posterior means" if model.stochastic else "z = f(x)"
  title = f"{_model_name(model)} test latents ({what})"
  if _coloured(labels, label_name):
    title += f", coloured by {label_name}"
  paths = {"latents": save_latent_scatter(workdir / "latents.png", lat, labels, title,
                                          label_name)}
  if model.latent_dim == 2:
    paths["manifold"] = save_manifold(workdir / "manifold.png", model, lat)
  return paths
