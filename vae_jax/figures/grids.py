"""Image grids and the one PNG writer every figure goes through (matplotlib, no display)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


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
  """Lays out, writes and closes a figure; returns the path."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return os.fspath(path)


def save_reconstructions(path, inputs, recons, title="Test inputs (top) and reconstructions (bottom)"):
  """Inputs in the first row(s), their reconstructions in the row(s) below."""
  n = inputs.shape[0]
  ncols = min(n, 16)
  rows_in = -(-n // ncols)
  labels = ["input"] * rows_in + ["recon."] * rows_in
  return save_grid(path, np.concatenate([inputs, recons]), ncols, title, labels)
