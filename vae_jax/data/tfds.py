"""TFDS datasets: prepared once with TensorFlow Datasets, cached as .npz, read with NumPy.

Labels are a classification dataset's `label` (one factor), or, for datasets with ground-truth
factors such as TFDS's `dsprites` and `shapes3d`, every `label_*` class feature (sorted by
name) as a vector of factor indices. A name may carry the prefix "tfds:" to pick TFDS over a
built-in dataset of the same name (`tfds:dsprites`).

TensorFlow is imported only in `_prepare_with_tfds`, the first time a split is needed; the
result is cached as an uncompressed .npz so later launches load it with NumPy alone. Offline
use: `config.data.manual_dir` (default `$VAE_JAX_MANUAL_DIR/<name>`) holds the raw files as
their publishers distribute them; every file is checked against TFDS's registered size and
SHA-256 before TFDS runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import shutil
import sys
import tempfile
import urllib.parse
import zipfile

import numpy as np

from vae_jax.data.paths import resolve_cache_dir, resolve_manual_dir, resolve_tfds_dir
from vae_jax.errors import UserError


def _cache_path(data_config, split: str) -> pathlib.Path:
  return pathlib.Path(resolve_cache_dir(data_config)) / data_config.name / f"{split}.npz"


@contextlib.contextmanager
def _quiet_native_output():
  """Silences what TensorFlow's C++ runtime and TFDS's progress bars print (fds 1 and 2)."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  with tempfile.TemporaryFile() as sink:
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    try:
      yield
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)


TFDS_PREFIX = "tfds:"


class SplitMissing(Exception):
  """The TFDS dataset has no such split (factor datasets often have only "train")."""


def tfds_name(data_name: str) -> str:
  return data_name[len(TFDS_PREFIX):] if data_name.startswith(TFDS_PREFIX) else data_name


def factor_features(features) -> tuple[tuple[str, int], ...]:
  """(feature name, number of classes) of the labels to read: ("label",) for a classification
  dataset, else every class feature named label_* (sorted), e.g. dsprites' label_orientation,
  label_scale, label_shape, label_x_position, label_y_position. () when there are none."""
  keys = ("label",) if "label" in features else tuple(
      sorted(k for k in features if k.startswith("label_")))
  out = []
  for k in keys:
    num = getattr(features[k], "num_classes", None)
    if num is None:
      return ()
    out.append((k, int(num)))
  return tuple(out)


def _prepare_with_tfds(data_config, split: str):
  """Builds the TFDS dataset (offline from the manual dir when given) and reads one split."""
  print(f"Preparing {data_config.name!r} ({split}) with TFDS; later launches read the cache in "
        f"{resolve_cache_dir(data_config)}", flush=True)
  with _quiet_native_output():
    return _prepare_with_tfds_quietly(data_config, split)


def _prepare_with_tfds_quietly(data_config, split):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")  # TensorFlow prepares data only: keep it off GPUs.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = tfds_name(data_config.name)
  try:
    builder = tfds.builder(name, data_dir=resolve_tfds_dir(data_config))
  except Exception as e:  # TFDS raises its own DatasetNotFoundError with a long listing.
    raise UserError(f"config.data.name={data_config.name!r} is not a TFDS dataset "
                    f"({type(e).__name__}); use a name from tfds.list_builders(), e.g. 'mnist'") from None
  features = builder.info.features
  factors = factor_features(features)
  if "image" not in features or not factors:
    raise UserError(f"config.data.name={data_config.name!r} has no 'image' feature with a "
                    "'label' or label_* class features; expected an image dataset with "
                    "labels or ground-truth factors")
  manual_dir = resolve_manual_dir(data_config)
  if manual_dir is not None and not os.path.isdir(manual_dir):
    raise UserError(f"data folder {manual_dir} does not exist: set config.data.manual_dir or "
                    f"$VAE_JAX_MANUAL_DIR to a folder holding the raw files of {name!r}")
  if manual_dir is not None:
    _check_manual_files(name, builder, manual_dir)
  # A fresh extraction folder: TFDS names extracted files by file name alone
  # (downloads/extracted/GZIP.train-images-idx3-ubyte.gz), and MNIST and Fashion-MNIST share
  # file names, so a shared folder silently hands the second dataset the first one's images.
  extract_dir = tempfile.mkdtemp(prefix=f"vae_jax_extract_{name}_")
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir, extract_dir=extract_dir)
  try:
    builder.download_and_prepare(download_config=download_config)
  except Exception as e:  # Missing / truncated / corrupt raw files surface here.
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = manual_dir or "the TFDS download"
    raise UserError(f"could not prepare {name!r} from {where}: {type(e).__name__}: {msg[:300]}") from None
  finally:
    shutil.rmtree(extract_dir, ignore_errors=True)
  if split not in builder.info.splits:  # known once prepared
    raise SplitMissing(split)
  arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return (np.asarray(arrays["image"], np.uint8), labels_of(arrays, factors),
          tuple(k for k, _ in factors), tuple(n for _, n in factors))


def labels_of(arrays, factors) -> np.ndarray:
  """int32 labels (N,) for one factor, (N, F) for several, from a TFDS split's arrays."""
  columns = [np.asarray(arrays[k], np.int32) for k, _ in factors]
  return columns[0] if len(columns) == 1 else np.stack(columns, axis=1)


def _check_manual_files(name: str, builder, manual_dir: str) -> None:
  """Every raw file TFDS will need is present, of the registered size and SHA-256.

  Checked here, before TFDS runs, so a missing file never falls through to a download
  attempt and a damaged one is named with what was expected (TFDS's checksum registry).
  """
  infos = builder.url_infos or {}
  names = {url: info.filename or os.path.basename(urllib.parse.urlparse(url).path)
           for url, info in infos.items()}
  for url, info in infos.items():
    path = os.path.join(manual_dir, names[url])
    if not os.path.isfile(path):
      raise UserError(f"data file {path} is missing: {name!r} needs "
                      f"{', '.join(sorted(names.values()))} in {manual_dir}")
    size = os.path.getsize(path)
    if info.size is not None and size != int(info.size):
      raise UserError(f"data file {path} has {size} bytes, expected {int(info.size)} "
                      "(TFDS checksum registry): truncated or not the published file")
    if info.checksum:
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          digest.update(chunk)
      if digest.hexdigest() != info.checksum:
        raise UserError(f"data file {path} has SHA-256 {digest.hexdigest()[:16]}..., expected "
                        f"{info.checksum[:16]}... (TFDS checksum registry): the file is corrupt")


def load_split(data_config, split: str):
  """Returns (images uint8 (N, H, W, C), labels int32 (N,) or (N, F), factor names, factor
  sizes) from the cache when present, else prepared with TFDS; None when the dataset has no
  such split."""
  path = _cache_path(data_config, split)
  if path.exists():
    try:
      with np.load(path) as f:
        images, labels = f["images"], f["labels"]
        if "factor_names" in f:
          return images, labels, tuple(str(n) for n in f["factor_names"]), tuple(
              int(n) for n in f["factor_sizes"])
        return images, labels, ("label",), ()  # caches written before factors were stored
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
      raise UserError(f"cached split {path} is unreadable ({type(e).__name__}); delete it to "
                      "prepare the data again") from None
  try:
    images, labels, names, sizes = _prepare_with_tfds(data_config, split)
  except SplitMissing:
    return None
  if images.ndim == 3:
    images = images[..., None]
  path.parent.mkdir(parents=True, exist_ok=True)
  # Write to a temporary name and rename, so a killed launch never leaves half a cache.
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as tmp:
    np.savez(tmp, images=images, labels=labels, factor_names=np.array(names),
             factor_sizes=np.array(sizes, np.int64))
  os.replace(tmp.name, path)
  return images, labels, names, sizes
