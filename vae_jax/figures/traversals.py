"""Latent traversals, the figure every beta-VAE paper shows.

`save_traversals`: one row per latent unit, sorted by its KL (most informative first), each
decoding a code in which that unit sweeps the prior's -3..3 standard deviations (about the
prior's mean: 0 and 1 for N(0, I), estimated from prior samples for another prior,
`latents.prior_moments`) while the other units stay at a test image's posterior mean; the
unit's KL (nats, averaged over the test split) labels its row. A unit whose row does not change is unused (KL ~ 0). On data with
ground-truth factors the label also names the factor the unit carries most information about
and that information as a share of the factor's entropy ("z3 · position x 0.71 H";
`factor_labels`, from `analysis.factors.unit_factor_information`), or "no factor" below
`NO_FACTOR_BELOW` ("unused" for a unit whose KL is below `UNUSED_BELOW`). `traversals.gif`
beside the PNG animates the same sweep, one frame per step, every unit in its own labelled
panel, so all of them move at once (`save_traversal_gif`).

`save_factor_traversals` (data with ground-truth factors): for each factor, the images that
differ from one base image in that factor alone are encoded, and each informative unit's
posterior mean is drawn against the factor's value: a disentangled unit responds to one
factor only.
"""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np

from vae_jax import latents
from vae_jax.figures.grids import plt, save_figure, save_grid, write_file


def unit_order(kl_per_dim) -> np.ndarray:
  """Latent units from the largest to the smallest KL."""
  return np.argsort(-np.asarray(kl_per_dim, np.float64), kind="stable")


def traversal_codes(z0_Z, units, limit: float = 3.0, steps: int = 11, center_Z=None,
                    scale_Z=None) -> np.ndarray:
  """(len(units) * steps, Z) codes: row r sets unit d = units[r] to linspace(-limit, limit,
  steps), or with `center_Z` and `scale_Z` (a prior's per-unit mean and standard deviation) to
  center_Z[d] + scale_Z[d] * linspace(-limit, limit, steps), and keeps every other unit at z0."""
  values = np.linspace(-limit, limit, steps)
  z = np.repeat(np.asarray(z0_Z, np.float32)[None, None], len(units), 0).repeat(steps, 1)
  for r, d in enumerate(units):
    z[r, :, d] = values if center_Z is None else center_Z[d] + scale_Z[d] * values
  return z.reshape(-1, z.shape[-1])


# A unit whose best normalised MI with any factor is below this carries no factor: its label
# says so rather than naming the factor that the histogram estimator's bias happens to favour.
NO_FACTOR_BELOW = 0.05
NO_FACTOR = "no factor"
# A unit whose score (KL, or the variance of its posterior mean) is below this is unused, as in
# `save_factor_traversals`: its posterior mean may still vary with a factor, but so little
# against its posterior noise that the decoder ignores it, so no factor is named for it.
UNUSED_BELOW = 0.01
UNUSED = "unused"


def factor_name(name: str) -> str:
  """A factor's name as a label shows it: "label_x_position" (TFDS) -> "x position"."""
  name = str(name)
  return (name[len("label_"):] if name.startswith("label_") else name).replace("_", " ")


def factor_labels(mi_normalised_ZxF, factor_names, threshold: float = NO_FACTOR_BELOW
                  ) -> list[str]:
  """Each unit's "<factor> <share> H": the factor of highest normalised MI (I(z_d; v_f) /
  H(v_f)) and that share, or `NO_FACTOR` when the share is below `threshold`."""
  mi = np.atleast_2d(np.asarray(mi_normalised_ZxF, np.float64))
  best = mi.argmax(1)
  share = mi[np.arange(len(mi)), best]
  return [f"{factor_name(factor_names[f])} {s:.2f} H" if s >= threshold else NO_FACTOR
          for f, s in zip(best, share)]


def row_labels(units, scores, score_name: str = "KL", unit_factors=None,
               min_score: float = UNUSED_BELOW) -> list[str]:
  """The label of each traversed unit: "z3  KL 2.31", and with `unit_factors` (the
  `factor_labels` of every unit) "z3 · position x 0.71 H" above "KL 2.31" ("z3 · unused" when
  its score is below `min_score`)."""
  if unit_factors is None:
    return [f"z{d}  {score_name} {float(scores[d]):.2f}" for d in units]
  return [f"z{d} · {unit_factors[d] if scores[d] >= min_score else UNUSED}\n"
          f"{score_name} {float(scores[d]):.2f}" for d in units]


def bounce(steps: int) -> list[int]:
  """Frame order of a sweep played forth and back without repeating its ends:
  0, 1, ..., steps - 1, steps - 2, ..., 1 (the GIF loops back to 0)."""
  return list(range(steps)) + list(range(steps - 2, 0, -1))


def save_traversals(path: str | os.PathLike, model, image_u8, kl_per_dim, *, limit: float = 3.0,
                    steps: int = 11, max_units: int | None = None, score_name: str = "KL",
                    unit_factor_info=None, gif: bool = True) -> str:
  """Prior traversals around the posterior mean of one image (see the module docstring).

  `kl_per_dim` orders and labels the rows; a family without a closed-form KL per unit (the
  two-layer VAE, the VampPrior VAE) passes the variance of each unit's posterior mean instead
  (`score_name="var"`).
  `unit_factor_info`: (mi_normalised_ZxF, factor names) of
  `analysis.factors.unit_factor_information`, for data with ground-truth factors; None keeps
  the labels to the score. `gif`: also write the sweep animated, the PNG's name with ".gif"
  (`save_traversal_gif`). Returns the PNG's path.
  """
  z0 = latents.encode_means(model, np.asarray(image_u8)[None])[0]
  units = unit_order(kl_per_dim)[:max_units]
  center, scale = latents.prior_moments(model)
  images = latents.decode_means(model, traversal_codes(z0, units, limit, steps, center, scale))
  per_unit = None if unit_factor_info is None else factor_labels(*unit_factor_info)
  labels = row_labels(units, kl_per_dim, score_name, per_unit)
  note = ("" if per_unit is None else
          "labels: the factor each unit informs most, I(unit; factor) / H(factor)")
  about = "" if model.standard_normal_prior else " about the prior mean"
  title = (f"Latent traversals: each unit from -{limit:g} to +{limit:g} prior std{about},\nthe "
           "others at a test image's posterior mean" + (f"\n{note}" if note else ""))
  if gif:
    save_traversal_gif(pathlib.Path(path).with_suffix(".gif"),
                       images.reshape(len(units), steps, *images.shape[1:]), labels,
                       np.linspace(-limit, limit, steps), note=note)
  return save_grid(path, images, steps, title, labels)


def save_traversal_gif(path: str | os.PathLike, images_UxSxHxWxC, labels, values, *,
                       note: str = "", ncols: int = 6, frame_ms: int = 120,
                       end_ms: int = 500) -> str:
  """An animated GIF of a traversal: frame t shows every unit's step t side by side, each unit
  a panel under its label, played forth and back (`bounce`) and looping forever.

  Args:
    images_UxSxHxWxC: decoded means in [0, 1], unit u's sweep in images_UxSxHxWxC[u].
    labels: one per unit (a newline allowed).
    values: (S,) the swept unit's value at each step, shown in the frame's title.
    note: a last line for the title (what the labels mean).
    frame_ms, end_ms: how long a frame shows, and the first and last step of the sweep.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top  (Pillow ships with matplotlib)
  images = np.clip(np.asarray(images_UxSxHxWxC, np.float32), 0.0, 1.0)
  u, s, h, w, c = images.shape
  k = max(1, 64 // max(h, w))  # whole-pixel upscaling of small images, panels at most 64 px
  ph, pw = h * k, w * k
  lines = max(str(t).count("\n") + 1 for t in labels)
  dpi, font_pt = 100, 7
  line_px = math.ceil(font_pt * 1.3 * dpi / 72)
  widest = max(len(line) for t in labels for line in str(t).split("\n"))
  col_px = max(pw + 10, math.ceil(widest * 0.6 * font_pt * dpi / 72) + 12)  # room for labels
  row_px = ph + lines * line_px + 8
  title_px = (3 if note else 2) * (line_px + 1) + 10
  ncols = max(1, min(ncols, u))
  nrows = -(-u // ncols)
  width, height = ncols * col_px, nrows * row_px + title_px
  fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
  artists = []
  for i in range(u):
    r, col = divmod(i, ncols)
    left = col * col_px + (col_px - pw) / 2
    bottom = height - title_px - (r + 1) * row_px + 4
    ax = fig.add_axes((left / width, bottom / height, pw / width, ph / height))
    ax.set_axis_off()
    first = images[i, 0, ..., 0] if c == 1 else images[i, 0]
    artists.append(ax.imshow(first, cmap="gray", vmin=0, vmax=1, interpolation="nearest"))
    fig.text((col * col_px + col_px / 2) / width, (bottom + ph + 2) / height, labels[i],
             ha="center", va="bottom", fontsize=font_pt, linespacing=1.1)
  header = fig.text(0.5, 1 - 4 / height, "", ha="center", va="top", fontsize=font_pt + 1)
  frames, durations = [], []
  for t in bounce(s):
    for i, im in enumerate(artists):
      im.set_data(images[i, t, ..., 0] if c == 1 else images[i, t])
    header.set_text(f"Latent traversals: each unit at {values[t]:+.1f} prior std\n(the others "
                    f"at a test image's posterior mean; step {t + 1}/{s})"
                    + (f"\n{note}" if note else ""))
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    frames.append(rgb.convert("L") if c == 1 else rgb.convert("P", palette=Image.ADAPTIVE))
    durations.append(end_ms if t in (0, s - 1) else frame_ms)
  plt.close(fig)
  write_file(path, lambda f: frames[0].save(f, format="GIF", save_all=True,
                                            append_images=frames[1:], duration=durations, loop=0))
  return os.fspath(path)


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
