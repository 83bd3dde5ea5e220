"""Datasets: whole splits as host uint8 arrays, labelled with their ground-truth factors.

`load(config.data)` returns a `Dataset`. `config.data.name` is
  * a built-in dataset (`BUILTIN`: "dsprites", rendered procedurally or read from the
    released file, `dsprites.py`);
  * a user's images (`SOURCES`): "folder:PATH", a folder of PNG / JPEG files, with one
    sub-folder per class when labelled (`image_folder.py`), or "npz:PATH", arrays in a .npz
    or .npy file, with optional labels or a factor matrix (`arrays.py`);
  * else any TFDS image dataset (`tfds.py`; "tfds:dsprites" is TFDS's copy of dSprites).
The preprocessing of `config.data.crop`, `.resize` and `.color` (`preprocess.py`) is applied
once, when a split is prepared, and the result cached as .npz under a name that includes it.
Pixel values stay uint8 (or bit-packed, for binary sets too large for the device as bytes)
until a batch is gathered on device (`batches.py`), where they become the floats the model
sees. `binarization` names what happens to the grey levels (`BINARIZATIONS`).

Labels are ground-truth factors: a vector of factor indices per image, (N, F), with the
factors' names and sizes on the dataset; a classification dataset such as MNIST is the
one-factor case, its labels kept as (N,) digits. An unlabelled dataset (a folder of faces,
TFDS's celeb_a) has no factors: `factor_names == ()`, `factors()` is (N, 0), and its label
arrays are zeros (N,), one class, so that what colours or exports images by label needs no
case of its own; what needs ground truth asks `labelled`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vae_jax import rng
from vae_jax.data import arrays, dsprites, image_folder, tfds
from vae_jax.data.paths import resolve_cache_dir, resolve_manual_dir, resolve_tfds_dir  # noqa: F401
from vae_jax.errors import UserError

# name -> what the split-level preparation does to the grey levels; "dynamic" draws a fresh
# Bernoulli sample of the training images every step (`batches.py`), and binarises the test
# split once with rng.TEST_BINARIZATION_SEED, so every evaluation of every run sees the
# same binary test set.
BINARIZATIONS = {
    "dynamic": "x ~ Bernoulli(pixel / 255), drawn anew every time a training image is used",
    "static": "x = pixel > 127, fixed",
    "none": "grey levels in [0, 1]",
}


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Both splits as host uint8 arrays of shape (N, H, W, C), with their factor labels.

  For "static" binarisation both splits hold {0, 255}; for "dynamic" the test split holds
  {0, 255} (binarised once) and the train split the raw grey levels. Labels are int32, (N,)
  for one factor or (N, F); `factor_names` and `factor_sizes` describe their columns. An
  unlabelled dataset has `factor_names == ()` and labels of zeros (N,) (module docstring).
  """
  name: str
  binarization: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  factor_names: tuple[str, ...] = ("label",)
  factor_sizes: tuple[int, ...] = ()
  packed_shape: tuple[int, int, int] | None = None

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.packed_shape or self.train_images.shape[1:])

  @property
  def labelled(self) -> bool:
    """Whether the images carry ground-truth factors (a class label is one factor)."""
    return len(self.factor_names) > 0

  def images(self, split: str, index=slice(None)) -> np.ndarray:
    """uint8 images (n, H, W, C) of a split (`index` picks rows), unpacked if need be."""
    if split == "test":
      return self.test_images[index]
    rows = self.train_images[index]
    if self.packed_shape is None:
      return rows
    bits = np.unpackbits(rows, axis=-1)[..., :int(np.prod(self.packed_shape))]
    return (bits * np.uint8(255)).reshape(-1, *self.packed_shape)

  def factors(self, split: str) -> np.ndarray:
    """The split's labels as factor indices, always (N, F)."""
    labels = self.test_labels if split == "test" else self.train_labels
    if not self.labelled:
      return np.zeros((len(labels), 0), np.int32)
    return labels.reshape(len(labels), -1)


def _load_dsprites(data_config) -> Dataset:
  """dSprites: every image trains (as in disentanglement_lib); the fixed subset
  `dsprites.test_indices()` is the test split for the ELBO. Binary already: no binarisation
  changes it."""
  if len(data_config.exclude_labels):
    raise UserError(f"config.data.exclude_labels={tuple(data_config.exclude_labels)!r} is "
                    "invalid for 'dsprites': expected () (its labels are five factors, not one "
                    "class)")
  packed, factors = dsprites.load(resolve_cache_dir(data_config), resolve_manual_dir(data_config))
  if len(packed) == dsprites.NUM_IMAGES:
    test, sizes = dsprites.test_indices(), dsprites.FACTOR_SIZES
  else:  # a smaller file than the release (tests): every tenth image, the grid it covers
    test, sizes = np.arange(0, len(packed), 10), tuple(int(m) + 1 for m in factors.max(0))
  return Dataset("dsprites", data_config.binarization, packed, factors,
                 dsprites.unpack(packed[test]), factors[test], dsprites.FACTOR_NAMES, sizes,
                 packed_shape=dsprites.IMAGE_SHAPE)


# Datasets that need no TFDS: name -> loader(config.data).
BUILTIN = {"dsprites": _load_dsprites}
# A user's images: prefix of config.data.name ("folder:PATH") -> loader(config.data) returning
# `local.Splits`. Any other name is a TFDS dataset.
SOURCES = {"folder": image_folder.load, "npz": arrays.load}
_HAS_LABELS = {"folder": image_folder.has_labels, "npz": arrays.has_labels}


def source_of(name: str) -> str:
  """"builtin", a key of `SOURCES` ("folder", "npz") or "tfds": where `name` is read from."""
  if name in BUILTIN:
    return "builtin"
  prefix = name.split(":", 1)[0] if ":" in name else None
  return prefix if prefix in SOURCES else "tfds"


def has_labels(data_config) -> bool | None:
  """Whether the dataset carries ground-truth factors, when that is known without preparing
  it (a folder's layout, an array file's keys, a prepared TFDS split); None otherwise."""
  source = source_of(data_config.name)
  if source == "builtin":
    return True
  if source == "tfds":
    return tfds.has_labels(data_config)
  return _HAS_LABELS[source](data_config)


def load(data_config) -> Dataset:
  """Loads both splits of a built-in, folder, array or TFDS dataset. Except for a built-in one:
  applies the split-level part of the binarisation and removes `data_config.exclude_labels`
  from the train split (the test split stays whole)."""
  source = source_of(data_config.name)
  if source == "builtin":
    return BUILTIN[data_config.name](data_config)
  if source in SOURCES:
    s = SOURCES[source](data_config)
    train_x, train_y, test_x, test_y = s.train_images, s.train_labels, s.test_images, s.test_labels
    names, sizes = s.factor_names, s.factor_sizes
  else:
    train_x, train_y, names, sizes = tfds.load_split(data_config, "train")
    test = tfds.load_split(data_config, "test")
    if test is None:  # factor datasets (dsprites, shapes3d) have one split: a fixed subset tests
      idx = np.random.default_rng(rng.TEST_SUBSET_SEED).permutation(len(train_x))[:10000]
      test_x, test_y = train_x[np.sort(idx)], train_y[np.sort(idx)]
    else:
      test_x, test_y = test[:2]
  b = data_config.binarization
  if b == "static":
    train_x = np.where(train_x > 127, 255, 0).astype(np.uint8)
    test_x = np.where(test_x > 127, 255, 0).astype(np.uint8)
  elif b == "dynamic":
    gen = np.random.default_rng(rng.TEST_BINARIZATION_SEED)
    test_x = np.where(gen.random(test_x.shape) < test_x / 255.0, 255, 0).astype(np.uint8)
  if len(data_config.exclude_labels) and not names:
    raise UserError(f"config.data.exclude_labels={tuple(data_config.exclude_labels)!r} is "
                    f"invalid for {data_config.name!r}: expected () (its images have no labels)")
  if len(data_config.exclude_labels) and train_y.ndim > 1:
    raise UserError(f"config.data.exclude_labels={tuple(data_config.exclude_labels)!r} is "
                    f"invalid for {data_config.name!r}: expected () (its labels are "
                    f"{train_y.shape[1]} factors, not one class)")
  train_x, train_y = exclude_labels(train_x, train_y, data_config.exclude_labels)
  if not len(train_y):
    raise UserError(f"config.data.exclude_labels={tuple(data_config.exclude_labels)!r} removes "
                    f"every training image of {data_config.name!r}")
  if names and not sizes:
    sizes = (int(max(train_y.max(initial=0), test_y.max(initial=0))) + 1,)
  return Dataset(data_config.name, b, train_x, train_y, test_x, test_y, names, sizes)


def exclude_labels(images, labels, excluded) -> tuple[np.ndarray, np.ndarray]:
  """Drops the images whose label is in `excluded` (the train split of an anomaly run)."""
  if not len(excluded):
    return images, labels
  keep = ~np.isin(labels, np.asarray(tuple(excluded), labels.dtype))
  return images[keep], labels[keep]
