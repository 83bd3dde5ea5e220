"""What a user's own data sources (`folder:PATH`, `npz:PATH`) share: their splits, checked
labels, the held-out test split when they have none, and where their prepared splits are
cached.

Labels are non-negative integers, (N,) for one factor or (N, F); an unlabelled source has no
factors (`data.Dataset`). The cache of a source sits in <cache_dir>/<kind>/<file or folder
name>/<tag>/ with a tag that hashes the source's absolute path, its files' sizes and
modification times and every field that shapes the split (preprocessing, labels, test
fraction): editing the data or the config prepares it again.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from vae_jax import rng
from vae_jax.data import cache, preprocess
from vae_jax.data.paths import resolve_cache_dir
from vae_jax.errors import UserError


@dataclasses.dataclass
class Splits:
  """Both splits of a source, labelled as `data.Dataset` is."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]


def path_of(data_name: str) -> str:
  """"folder:/data/faces" -> "/data/faces"."""
  return os.path.expanduser(data_name.split(":", 1)[1])


def check_labels(labels, n: int, where: str) -> np.ndarray:
  """Integer (or bool) labels of n images, (n,) or (n, F), all >= 0 -> int32."""
  labels = np.asarray(labels)
  if labels.dtype == bool:
    labels = labels.astype(np.int32)
  if not np.issubdtype(labels.dtype, np.integer) or labels.ndim not in (1, 2):
    raise UserError(f"labels in {where} are {labels.dtype} of shape {labels.shape}: expected "
                    "integers (N,) (one class per image) or (N, F) (F factor indices)")
  if len(labels) != n:
    raise UserError(f"labels in {where} have {len(labels)} rows for {n} images: expected one "
                    "row per image")
  if labels.size and labels.min() < 0:
    raise UserError(f"labels in {where} hold {labels.min()}: expected integers >= 0")
  return labels.astype(np.int32)


def factors_of(labels: np.ndarray, where: str, names=None, sizes=None):
  """(names, sizes) of labels' factors: given ones checked against them, else "label" (one
  column) or "factor_<i>" and each column's largest value + 1."""
  num = 1 if labels.ndim == 1 else labels.shape[1]
  columns = labels.reshape(len(labels), -1)
  most = columns.max(0) if len(columns) else np.zeros(num, np.int64)
  if names is None:
    names = ("label",) if num == 1 else tuple(f"factor_{i}" for i in range(num))
  names = tuple(str(n) for n in names)
  sizes = tuple(int(m) + 1 for m in most) if sizes is None else tuple(int(s) for s in sizes)
  if len(names) != num or len(sizes) != num or any(m >= s for m, s in zip(most, sizes)):
    raise UserError(f"factor_names/factor_sizes in {where} ({names}, {sizes}) do not fit its "
                    f"{num} label column(s) (largest values {tuple(int(m) for m in most)})")
  return names, sizes


def unlabelled(n: int) -> np.ndarray:
  """The labels of an unlabelled split: one class, 0 (see `data.Dataset`)."""
  return np.zeros(n, np.int32)


def hold_out(images, labels, fraction: float, where: str):
  """(train images, train labels, test images, test labels): a fixed random share `fraction`
  of the images (at least one) tests, the rest trains."""
  n = len(images)
  num_test = max(1, int(round(n * fraction)))
  if num_test >= n:
    raise UserError(f"{where} holds {n} image(s): too few to hold out "
                    f"config.data.test_fraction={fraction} of them as a test split and train "
                    "on the rest")
  order = np.random.default_rng(rng.TEST_SUBSET_SEED).permutation(n)
  test, train = np.sort(order[:num_test]), np.sort(order[num_test:])
  return images[train], labels[train], images[test], labels[test]


def file_identity(path: str | os.PathLike) -> list:
  """What identifies a file's content cheaply: absolute path, size, modification time."""
  st = os.stat(path)
  return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def source_identity(path):
  """`file_identity` of an existing file; otherwise the value as given (None for an unset label
  file, or a path that is not there, whose reading then fails with its own line)."""
  return file_identity(path) if path and os.path.isfile(path) else path


def cache_folder(data_config, kind: str, path: str, identity: dict) -> pathlib.Path:
  """Where a source's prepared splits live (see the module docstring)."""
  prep = preprocess.Preprocessing.from_config(data_config)
  identity = {**identity, "preprocessing": prep.key(),
              "test_fraction": float(data_config.test_fraction)}
  name = os.path.basename(os.path.normpath(path)) or kind
  return (pathlib.Path(resolve_cache_dir(data_config)) / kind / name
          / cache.tag(prep.tag(), identity))


def read_cached(folder: pathlib.Path) -> Splits | None:
  train = cache.read(folder / "train.npz")
  test = cache.read(folder / "test.npz") if train is not None else None
  if test is None:
    return None
  return Splits(train[0], train[1], test[0], test[1], train[2], train[3])


def write_cached(folder: pathlib.Path, s: Splits) -> None:
  # test first: a split is read only when train.npz, written last, is there
  cache.write(folder / "test.npz", s.test_images, s.test_labels, s.factor_names, s.factor_sizes)
  cache.write(folder / "train.npz", s.train_images, s.train_labels, s.factor_names,
              s.factor_sizes)
