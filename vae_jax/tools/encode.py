"""Export a trained model's latent means, with labels, for use outside the project.

    python -m vae_jax.tools.encode --workdir runs/vae30 [--split test|train|both]

Writes DIR/latents_<split>.npy (float32, (N, Z): the posterior means of a VAE, z = f(x) of an
AE) and DIR/labels_<split>.npy (int32: (N,) class labels, or (N, F) factor indices for a dataset
with ground-truth factors such as dSprites), row i of both from image i of the split (after
any `data.exclude_labels` on the train split). An unlabelled dataset (a folder of faces,
celeb_a) gets no labels_<split>.npy, and the tool says so in one line. The inputs are the
images the model saw: for dynamic binarisation the train split is binarised once with a fixed
seed, as the test split already is. Bad input prints one line on stderr and exits with
status 2.
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags  # pylint: disable=g-import-not-at-top

from vae_jax.errors import UserError, check_tool_arguments  # pylint: disable=g-import-not-at-top
from vae_jax import tools  # pylint: disable=g-import-not-at-top
from vae_jax.runtime import files  # pylint: disable=g-import-not-at-top

SPLITS = ("test", "train", "both")


def split_images(ds, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images, labels) of one split as the model sees them (see the module docstring)."""
  if split == "test":
    return ds.test_images, ds.test_labels
  images = ds.train_images
  if ds.binarization == "dynamic":
    from vae_jax import rng  # pylint: disable=g-import-not-at-top
    gen = np.random.default_rng(rng.EXPORT_BINARIZATION_SEED)
    images = np.where(gen.random(images.shape) < images / 255.0, 255, 0).astype(np.uint8)
  return images, ds.train_labels


def export_latents(workdir, split: str = "test", *, epoch: int | None = None, dataset=None,
                   model=None) -> dict[str, pathlib.Path]:
  """Encodes the split(s) and writes the .npy files into `workdir`; returns their paths.

  `dataset` / `model`: the run's, when already loaded (else read from the workdir).
  Raises `UserError` for a missing or unfinished run or an unknown split. An unlabelled
  dataset's labels are not written (no labels_<split> in the result).
  """
  from vae_jax import latents as latents_lib  # pylint: disable=g-import-not-at-top

  if split not in SPLITS:
    raise UserError(f"--split={split!r} is invalid: expected one of {', '.join(SPLITS)}")
  if model is None:
    _, model, dataset, _ = tools.load_run(workdir, epoch=epoch, dataset=dataset)
  written = {}
  for s in (("test", "train") if split == "both" else (split,)):
    if s == "train" and dataset.packed_shape is not None:
      # Bit-packed binary images (dSprites: 3 GB as bytes): unpacked chunk by chunk.
      labels = dataset.train_labels
      chunk = 20000
      latents = np.concatenate([latents_lib.encode_means(
          model, dataset.images("train", slice(i, i + chunk))) for i in range(0, len(labels), chunk)]
      ).astype(np.float32)
    else:
      images, labels = split_images(dataset, s)
      latents = latents_lib.encode_means(model, images).astype(np.float32)
    arrays = [(f"latents_{s}", latents)]
    if dataset.labelled:  # an unlabelled dataset's labels are placeholder zeros: not exported
      arrays.append((f"labels_{s}", labels.astype(np.int32)))
    for name, arr in arrays:
      path = pathlib.Path(workdir) / f"{name}.npy"
      # Whole or not at all: a reader never sees half a file; a full disk names `path`.
      files.write_with(path, lambda f, arr=arr: np.save(f, arr), needed=arr.nbytes + 128)
      written[name] = path
  return written


def main(argv):
  check_tool_arguments(argv, flags.FLAGS.workdir)
  try:
    written = export_latents(flags.FLAGS.workdir, flags.FLAGS.split, epoch=flags.FLAGS.epoch)
  except Exception as e:  # pylint: disable=broad-except  (one line, or raised again)
    tools.refuse(e)
  for name, path in written.items():
    print(f"{path}: {np.load(path, mmap_mode='r').shape}")
  unlabelled = [n.replace("latents_", "labels_") + ".npy" for n in written
                if n.startswith("latents_") and n.replace("latents_", "labels_") not in written]
  if unlabelled:
    print(f"{', '.join(unlabelled)} not written: the run's dataset has no labels")


def _define_flags():
  """Command-line flags, defined only when run as a program (modules stay importable together)."""
  flags.DEFINE_string("workdir", None, "A finished run's output folder.")
  flags.DEFINE_enum("split", "test", SPLITS, "Which split(s) to encode.")
  flags.DEFINE_integer("epoch", None, "Checkpoint to use; default the newest.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
