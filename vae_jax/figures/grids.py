"""Image grids and the one writer every figure file goes through (matplotlib, no display).

Figures are drawn on `matplotlib.figure.Figure`s with an Agg canvas of their own, never
through pyplot's figure manager: importing this package leaves the user's backend alone (a
notebook keeps its inline backend), and no GUI window or pyplot state is touched. `plt` is the
part of pyplot the figure modules use (subplots, figure, get_cmap, close), on such figures.
Every file is written whole or not at all (`runtime.files.write_with`: a full disk names the
file, and no partial file is left).
"""

from __future__ import annotations

import os
import pathlib
import sys

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from vae_jax.runtime import files

# Figure.subplots' own arguments; every other keyword of `plt.subplots` goes to the Figure.
_SUBPLOTS_ARGS = ("sharex", "sharey", "squeeze", "width_ratios", "height_ratios", "subplot_kw",
                  "gridspec_kw")


class _Figures:
  """pyplot's figure-making calls, making figures that belong to no backend (module docstring)."""

  @staticmethod
  def figure(**kwargs) -> Figure:
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # draws and saves it; no pyplot figure manager, no window
    return fig

  @classmethod
  def subplots(cls, nrows: int = 1, ncols: int = 1, **kwargs):
    grid = {k: kwargs.pop(k) for k in _SUBPLOTS_ARGS if k in kwargs}
    fig = cls.figure(**kwargs)
    return fig, fig.subplots(nrows, ncols, **grid)

  @staticmethod
  def get_cmap(name):
    return matplotlib.colormaps.get_cmap(name)

  @staticmethod
  def close(fig=None) -> None:
    """Closes a pyplot figure (one a user made); the figures made here need no closing."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and getattr(getattr(fig, "canvas", None), "manager", None):
      pyplot.close(fig)


plt = _Figures()


def write_file(path: str | os.PathLike, write) -> str:
  """Writes a figure file through `write(f)` (e.g. a GIF's `image.save(f, format="GIF")`)
  whole or not at all (`runtime.files.write_with`); returns the path."""
  return files.write_with(path, write)


def tile(images_NxHxWxC: np.ndarray, ncols: int) -> np.ndarray:
  """Arranges images in a grid with 1-pixel gaps; returns (rows*H, cols*W, C) in [0, 1]."""
  n, h, w, c = images_NxHxWxC.shape
  nrows = -(-n // ncols)
  canvas = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1, c), np.float32)
  for i, img in enumerate(np.clip(images_NxHxWxC, 0.0, 1.0)):
    r, k = divmod(i, ncols)
    canvas[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = img
  return canvas


def save_grid(path: str | os.PathLike, images_NxHxWxC: np.ndarray, ncols: int, title: str = "",
              row_labels: list[str] | None = None) -> str:
  """Writes one image grid to `path` (PNG) and returns the path."""
  canvas = tile(np.asarray(images_NxHxWxC, np.float32), ncols)
  h, w = canvas.shape[:2]
  inch = 0.5 / (images_NxHxWxC.shape[2] + 1)  # half an inch per image
  fig, ax = plt.subplots(figsize=(max(3.0, w * inch + 0.8), h * inch + 0.6))
  if canvas.shape[-1] == 1:
    ax.imshow(canvas[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
  else:
    ax.imshow(canvas, interpolation="nearest")
  ax.set_xticks([])
  if row_labels:
    rows = len(row_labels)
    cell = (h + 1) / rows
    ax.set_yticks([cell * (i + 0.5) for i in range(rows)], row_labels)
    ax.tick_params(length=0)
  else:
    ax.set_yticks([])
  for s in ax.spines.values():
    s.set_visible(False)
  if title:
    ax.set_title(title, fontsize=10)
  return save_figure(fig, path, dpi=150)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> str:
  """Lays out and writes a figure (the format from the file's suffix, PNG by default) whole
  or not at all; returns the path. A pyplot figure (a user's) is closed, as pyplot's are."""
  fig.tight_layout()
  fmt = pathlib.Path(path).suffix.lstrip(".").lower() or "png"
  write_file(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
  plt.close(fig)
  return os.fspath(path)


def save_reconstructions(path, inputs, recons, title="Test inputs (top) and reconstructions (bottom)"):
  """Inputs in the first row(s), their reconstructions in the row(s) below."""
  n = inputs.shape[0]
  ncols = min(n, 16)
  rows_in = -(-n // ncols)
  labels = ["input"] * rows_in + ["recon."] * rows_in
  return save_grid(path, np.concatenate([inputs, recons]), ncols, title, labels)
