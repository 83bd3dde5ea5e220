"""Latent traversals, the figure every beta-VAE paper shows.

`save_traversals`: one row per latent unit, sorted by its KL (most informative first), each
decoding a code in which that unit sweeps the prior's -3..3 standard deviations while the other
units stay at a test image's posterior mean; the unit's KL (nats, averaged over the test
split) labels its row. A unit whose row does not change is unused (KL ~ 0).

`save_factor_traversals` (data with ground-truth factors): for each factor, the images that
differ from one base image in that factor alone are encoded, and each informative unit's
posterior mean is drawn against the factor's value: a disentangled unit responds to one
factor only.
"""

from __future__ import annotations

import os

import numpy as np

from vae_jax import latents
from vae_jax.figures.grids import plt, save_figure, save_grid


def unit_order(kl_per_dim) -> np.ndarray:
  """Latent units from the largest to the smallest KL."""
  return np.argsort(-np.asarray(kl_per_dim, np.float64), kind="stable")


def traversal_codes(z0_Z, units, limit: float = 3.0, steps: int = 11) -> np.ndarray:
  """(len(units) * steps, Z) codes: row r sets unit units[r] to linspace(-limit, limit, steps)
  and keeps every other unit at z0."""
  values = np.linspace(-limit, limit, steps)
  z = np.repeat(np.asarray(z0_Z, np.float32)[None, None], len(units), 0).repeat(steps, 1)
  for r, d in enumerate(units):
    z[r, :, d] = values
  return z.reshape(-1, z.shape[-1])


def save_traversals(path: str | os.PathLike, model, image_u8, kl_per_dim, *, limit: float = 3.0,
                    steps: int = 11, max_units: int | None = None, score_name: str = "KL") -> str:
  """Prior traversals around the posterior mean of one image (see the module docstring).

  `kl_per_dim` orders and labels the rows; a two-layer model, whose z1 has no closed-form KL,
  passes the variance of each unit's posterior mean instead (`score_name="var"`).
  """
  z0 = latents.encode_means(model, np.asarray(image_u8)[None])[0]
  units = unit_order(kl_per_dim)[:max_units]
  images = latents.decode_means(model, traversal_codes(z0, units, limit, steps))
  labels = [f"z{d}  {score_name} {float(kl_per_dim[d]):.2f}" for d in units]
  return save_grid(path, images, steps, f"Latent traversals: each unit from -{limit:g} to "
                   f"+{limit:g} prior std,\nthe others at a test image's posterior mean", labels)


def save_factor_traversals(path: str | os.PathLike, model, factor_images: dict, kl_per_dim, *,
                           max_units: int = 6, min_kl: float = 0.01) -> str:
  """Posterior means of the most informative units against each ground-truth factor.

  Args:
    factor_images: {factor name: (values (n,), uint8 images (n, H, W, C))}, the images that
      differ from a base image in that factor alone, in the order of its values.
    kl_per_dim: (Z,) each unit's KL; units below `min_kl` nats are left out (unused).
  """
  units = [d for d in unit_order(kl_per_dim)[:max_units] if kl_per_dim[d] >= min_kl]
  names = list(factor_images)
  fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.0), sharey=True,
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    values, images = factor_images[name]
    means = latents.encode_means(model, images)
    for d in units:
      ax.plot(values, means[:, d], marker=".", lw=1, label=f"z{d} ({kl_per_dim[d]:.1f})")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("factor value", fontsize=8)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("posterior mean")
  if units:
    axes[0, -1].legend(fontsize=6, title="unit (KL)", title_fontsize=6, frameon=False,
                       loc="upper left", bbox_to_anchor=(1.0, 1.0))
  fig.suptitle("Posterior traversals: each factor varied alone from one base image", fontsize=10)
  return save_figure(fig, path)
