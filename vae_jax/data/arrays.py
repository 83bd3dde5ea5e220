"""`npz:PATH`: images held in a NumPy file, .npz or .npy, with optional labels.

    .npz  images (+ labels): a fixed share `config.data.test_fraction` of the images tests;
          or train_images, test_images (+ train_labels, test_labels);
          or Keras's x_train, x_test (+ y_train, y_test); a file of one array is its images.
          Optional factor_names and factor_sizes name and size the label columns.
    .npy  the images alone; `config.data.label_file` (a .npy) may label them.

Images are uint8 (0..255), bool, or floats in [0, 1] (rounded to 0..255), of shape (N, H, W)
or (N, H, W, C) with C = 1 or 3. Labels are integers, (N,) (a class) or (N, F) (a factor
matrix). Prepared splits are cached only when they are preprocessed (`preprocess.py`): read
as they are, the arrays load as fast as a cache would.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from vae_jax.data import local, preprocess
from vae_jax.errors import UserError

SUFFIXES = (".npz", ".npy")
# (train images, train labels, test images, test labels) keys of the .npz layouts, in the order
# they are looked for.
NPZ_LAYOUTS = (("train_images", "train_labels", "test_images", "test_labels"),
               ("x_train", "y_train", "x_test", "y_test"),
               ("images", "labels", None, None))


def to_uint8(x, where: str) -> np.ndarray:
  """Images as uint8 (N, H, W, C), C = 1 or 3; one-line errors for the wrong rank or dtype."""
  x = np.asarray(x)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3) or not len(x):
    raise UserError(f"images in {where} have shape {x.shape}: expected (N, H, W) or "
                    "(N, H, W, C) with N >= 1 and C = 1 or 3")
  if x.dtype == np.uint8:
    return x
  if x.dtype == bool:
    return x.astype(np.uint8) * np.uint8(255)
  if np.issubdtype(x.dtype, np.floating):
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (0.0 <= lo and hi <= 1.0):  # also false for NaN
      raise UserError(f"images in {where} are {x.dtype} in [{lo:g}, {hi:g}]: expected floats "
                      "in [0, 1] (or uint8 0..255)")
    return np.round(x * 255.0).astype(np.uint8)
  raise UserError(f"images in {where} are {x.dtype}: expected uint8 (0..255), bool, or floats "
                  "in [0, 1]")


def _open(path: str, where: str):
  if not os.path.isfile(path):
    raise UserError(f"config.data.name={where!r}: {path} does not exist (expected a .npz or "
                    ".npy file of images)")
  try:
    return np.load(path, mmap_mode="r" if path.endswith(".npy") else None, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(f"data file {path} is unreadable ({type(e).__name__}): expected a NumPy "
                    ".npz or .npy file") from None


def _read(path: str, where: str):
  """(train images, train labels or None, test images or None, test labels or None, names,
  sizes) as stored."""
  f = _open(path, where)
  if isinstance(f, np.ndarray):
    return f, None, None, None, None, None
  with f:
    keys = set(f.files)
    layout = next((l for l in NPZ_LAYOUTS if l[0] in keys), None)
    if layout is None and len(keys) == 1:
      layout = (next(iter(keys)), None, None, None)
    if layout is None:
      raise UserError(f"data file {path} holds {', '.join(sorted(keys)) or 'no arrays'}: "
                      "expected 'images' (and 'labels'), 'train_images' and 'test_images' "
                      "(and their labels), or 'x_train' and 'x_test'")
    if layout[2] is not None and layout[2] not in keys:
      raise UserError(f"data file {path} holds {layout[0]!r} but no {layout[2]!r}")
    get = lambda k: f[k] if k is not None and k in keys else None
    names, sizes = get("factor_names"), get("factor_sizes")
    return (get(layout[0]), get(layout[1]), get(layout[2]), get(layout[3]),
            None if names is None else tuple(str(n) for n in names),
            None if sizes is None else tuple(int(s) for s in sizes))


def has_labels(data_config) -> bool | None:
  """Whether the arrays are labelled (their own labels or a label file); None when the file
  cannot be read (loading it says why)."""
  if data_config.label_file:
    return True
  path = local.path_of(data_config.name)
  try:
    f = _open(path, data_config.name)
  except UserError:
    return None
  if isinstance(f, np.ndarray):
    return False
  with f:
    return any(l[1] in f.files for l in NPZ_LAYOUTS)


def _label_file(path: str, n: int, where: str) -> np.ndarray:
  if not path.endswith(".npy"):
    raise UserError(f"config.data.label_file={path!r} is invalid for {where!r}: expected a .npy "
                    "file of integer labels, (N,) or (N, F)")
  if not os.path.isfile(path):
    raise UserError(f"config.data.label_file={path!r} does not exist")
  try:
    labels = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise UserError(f"label file {path} is unreadable ({type(e).__name__}): expected a .npy "
                    "file") from None
  return local.check_labels(labels, n, f"label file {path}")


def load(data_config) -> local.Splits:
  """Both splits of an array source (from the cache when preprocessed before)."""
  where = data_config.name
  path = local.path_of(where)
  if not path.endswith(SUFFIXES):
    raise UserError(f"config.data.name={where!r} is invalid: expected npz:PATH with PATH a .npz "
                    "or .npy file")
  prep = preprocess.Preprocessing.from_config(data_config)
  label_file = data_config.label_file
  folder = None
  if not prep.identity:
    identity = {"file": local.source_identity(path),
                "label_file": local.source_identity(label_file)}
    folder = local.cache_folder(data_config, "npz", path, identity)
    cached = local.read_cached(folder)
    if cached is not None:
      return cached

  train_x, train_y, test_x, test_y, names, sizes = _read(path, where)
  train_x = to_uint8(train_x, path)
  test_x = None if test_x is None else to_uint8(test_x, path)
  if label_file:
    if train_y is not None or test_x is not None:
      raise UserError(f"config.data.label_file={label_file!r} is invalid for {where!r}: its "
                      "file holds labels or a test split already; expected unset")
    train_y = _label_file(label_file, len(train_x), where)
  if train_y is None:
    if test_y is not None:
      raise UserError(f"data file {path} holds test labels but no train labels")
    train_y = local.unlabelled(len(train_x))
    test_y = None if test_x is None else local.unlabelled(len(test_x))
    names, sizes = (), ()
  else:
    train_y = local.check_labels(train_y, len(train_x), path)
    if test_x is not None:
      if test_y is None:
        raise UserError(f"data file {path} holds train labels but no test labels")
      test_y = local.check_labels(test_y, len(test_x), f"{path} (test split)")
      if test_y.shape[1:] != train_y.shape[1:]:
        raise UserError(f"labels in {path} are {train_y.shape[1:]} per train image but "
                        f"{test_y.shape[1:]} per test image")
    both = train_y if test_y is None else np.concatenate([train_y, test_y])
    names, sizes = local.factors_of(both, path, names, sizes)

  if not prep.identity:
    print(f"Preparing {where} ({len(train_x) + (0 if test_x is None else len(test_x)):,} "
          f"images); later launches read the cache in {folder}", flush=True)
    train_x = prep.apply(train_x, f"{where} (train)")
    test_x = None if test_x is None else prep.apply(test_x, f"{where} (test)")
  if test_x is not None and train_x.shape[1:] != test_x.shape[1:]:
    raise UserError(f"images in {path} are {train_x.shape[1:]} for training but "
                    f"{test_x.shape[1:]} for testing: expected one shape (config.data.resize "
                    "can make them one)")
  if test_x is None:
    splits = local.hold_out(np.asarray(train_x), train_y, float(data_config.test_fraction), where)
  else:
    splits = train_x, train_y, test_x, test_y
  result = local.Splits(*splits, names, sizes)
  if folder is not None:
    local.write_cached(folder, result)
  return result
