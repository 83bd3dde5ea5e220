"""TFDS datasets: prepared once with TensorFlow Datasets, cached as .npz, read with NumPy.

Any TFDS dataset with an `image` feature. Labels are `config.data.label_features` when set
(class features, or bool features as two classes, e.g. celeb_a's "attributes/Smiling"; ()
for none), else a classification dataset's `label` (one factor), else, for datasets with
ground-truth factors such as TFDS's `dsprites` and `shapes3d`, every `label_*` class feature
(sorted by name) as a vector of factor indices; a dataset with none of them (celeb_a) is
unlabelled. A name may carry the prefix "tfds:" to pick TFDS over a built-in dataset of the
same name (`tfds:dsprites`).

TensorFlow is imported only in `_prepare_with_tfds`, the first time a split is needed. The
split is read in batches and preprocessed as it streams (`preprocess.py`: crop, resize,
colour), so a large set of large images (CelebA: 23 GB as 218 x 178 x 3 bytes) never sits in
memory whole, then cached as an uncompressed .npz so later launches load it with NumPy alone:
<cache_dir>/<name>/<split>.npz, or <cache_dir>/<name>/<tag>/<split>.npz when preprocessing or
label_features are set (`_cache_path`). Offline use: `config.data.manual_dir` (default
`$VAE_JAX_MANUAL_DIR/<name>`) holds the raw files as their publishers distribute them; every
file is checked against TFDS's registered size and SHA-256 before TFDS runs.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import pathlib
import re
import shutil
import sys
import tempfile
import urllib.parse

import numpy as np

from vae_jax import checks
from vae_jax.data import cache, preprocess
from vae_jax.data.paths import resolve_cache_dir, resolve_manual_dir, resolve_tfds_dir
from vae_jax.errors import UserError
from vae_jax.runtime import files

_READ_BATCH = 1024  # images per batch read from TFDS (and preprocessed) at a time


def _cache_path(data_config, split: str) -> pathlib.Path:
  """Where a prepared split is cached: the dataset's folder, in a sub-folder named by the
  preprocessing and label choice when they are not the defaults (so caches written before
  those fields existed keep being read)."""
  folder = pathlib.Path(resolve_cache_dir(data_config)) / data_config.name
  prep = preprocess.Preprocessing.from_config(data_config)
  labels = data_config.label_features
  labels = None if labels is None else [str(k) for k in labels]
  if prep.identity and labels is None:
    return folder / f"{split}.npz"
  identity = {"preprocessing": prep.key(), "label_features": labels}
  readable = "-".join(p for p in (prep.tag(), "labels" if labels else
                                  "unlabelled" if labels == [] else "") if p)
  return folder / cache.tag(readable, identity) / f"{split}.npz"


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


def _feature(features, path: str):
  """features["a"]["b"] for "a/b"; None when there is no such feature."""
  node = features
  for part in path.split("/"):
    try:
      node = node[part]
    except (KeyError, TypeError, ValueError):
      return None
  return node


def _num_classes(feature) -> int | None:
  """A class feature's number of classes: a ClassLabel's, 2 for a scalar bool; else None."""
  num = getattr(feature, "num_classes", None)
  if num is not None:
    return int(num)
  dtype = getattr(feature, "np_dtype", None)
  if dtype is not None and np.dtype(dtype) == np.bool_ and tuple(feature.shape) == ():
    return 2
  return None


def factor_features(features, label_features=None) -> tuple[tuple[str, int], ...]:
  """(feature name, number of classes) of the labels to read: `label_features` when given
  ("a/b" names a nested feature; a bool feature has two classes; () none), else ("label",)
  for a classification dataset, else every class feature named label_* (sorted), e.g.
  dsprites' label_orientation, label_scale, label_shape, label_x_position, label_y_position.
  () when there are none: the dataset is unlabelled."""
  if label_features is not None:
    out = []
    for k in label_features:
      feature = _feature(features, k)
      num = None if feature is None else _num_classes(feature)
      if num is None:
        what = "no such feature" if feature is None else f"a {type(feature).__name__}"
        raise UserError(f"config.data.label_features={tuple(label_features)!r} is invalid: "
                        f"{k!r} is {what}; expected class features (ClassLabel, or bool) of "
                        f"the dataset, whose features are {', '.join(features.keys())}")
      out.append((k, num))
    return tuple(out)
  keys = ("label",) if "label" in features else tuple(
      sorted(k for k in features if k.startswith("label_")))
  out = []
  for k in keys:
    num = getattr(features[k], "num_classes", None)
    if num is None:
      return ()
    out.append((k, int(num)))
  return tuple(out)


class _PreparedDamaged(Exception):
  """TFDS's prepared copy of the dataset (the folder `path`, as `inspected`) does not read."""

  def __init__(self, path: pathlib.Path, problem: str, inspected):
    super().__init__(path, problem)
    self.path, self.problem, self.inspected = path, problem, inspected


def _prepare_with_tfds(data_config, split: str):
  """Builds the TFDS dataset (offline from the manual dir when given) and reads one split.

  TFDS's prepared copy (<tfds_dir>/<name>/<version>/: dataset_info.json, features.json, the
  TFRecord shards) is derived from the raw files too: when it does not read back (a damaged
  dataset_info.json fails the builder; a damaged or missing shard fails the read with
  TensorFlow's DataLossError / NotFoundError), it is moved to <tfds_dir>/<name>/damaged/ with
  one warning line and prepared again from the raw files, once."""
  print(f"Preparing {data_config.name!r} ({split}) with TFDS; later launches read the cache in "
        f"{resolve_cache_dir(data_config)}", flush=True)
  name = tfds_name(data_config.name)
  sources = resolve_manual_dir(data_config) or "the TFDS download"
  for again in (False, True):
    try:
      with _quiet_native_output():
        return _prepare_with_tfds_quietly(data_config, split)
    except _PreparedDamaged as e:  # outside the quiet block, so that its warning shows
      if again:
        raise UserError(f"TFDS's copy of {name!r} in {e.path}, prepared again from {sources}, "
                        f"does not read back either ({e.problem})") from None
      files.set_aside_derived(e.path, f"(TFDS's prepared copy of {name!r}) does not read back "
                              f"({e.problem})", f"preparing it again from {sources}",
                              e.inspected)


def _tf_reason(e: BaseException) -> str:
  """A TensorFlow error in a few words: "DataLossError: corrupted record at 1654725"."""
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", text).strip()[:200]
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _prepared_folder(tfds, name: str, data_dir: str | None) -> pathlib.Path | None:
  """The folder TFDS keeps its prepared copy of `name` in under `data_dir` (TFDS's default,
  $TFDS_DATA_DIR or ~/tensorflow_datasets, when None), when it exists: where a builder made
  on an empty folder would look, moved to the real one."""
  with tempfile.TemporaryDirectory() as empty:
    try:
      inside = os.path.relpath(os.fspath(tfds.builder(name, data_dir=empty).data_dir), empty)
    except Exception:  # pylint: disable=broad-except  (not a dataset of this TFDS)
      return None
  root = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  path = pathlib.Path(root).expanduser() / inside
  return path if path.is_dir() else None


def _prepare_with_tfds_quietly(data_config, split):
  # TensorFlow itself (seconds to import) only once the name and the raw files have passed:
  # TFDS finds builders and their checksums without it, so a bad name or file fails fast.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = tfds_name(data_config.name)
  data_dir = resolve_tfds_dir(data_config)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # TFDS raises its own DatasetNotFoundError with a long listing.
    prepared = _prepared_folder(tfds, name, data_dir)
    if prepared is not None:  # a known dataset whose prepared dataset_info does not read
      raise _PreparedDamaged(prepared, _tf_reason(e), files.identity(prepared)) from None
    raise UserError(f"config.data.name={data_config.name!r} is not a TFDS dataset "
                    f"({type(e).__name__}); use a name from tfds.list_builders(), e.g. 'mnist'") from None
  features = builder.info.features
  if "image" not in features:
    raise UserError(f"config.data.name={data_config.name!r} has no 'image' feature; expected "
                    "an image dataset")
  chosen = data_config.label_features
  factors = factor_features(features, None if chosen is None else tuple(chosen))
  manual_dir = resolve_manual_dir(data_config)
  if manual_dir is not None and not os.path.isdir(manual_dir):
    raise UserError(f"data folder {manual_dir} does not exist: set config.data.manual_dir or "
                    f"$VAE_JAX_MANUAL_DIR to a folder holding the raw files of {name!r}")
  if manual_dir is not None:
    _check_manual_files(name, builder, manual_dir)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")  # TensorFlow prepares data only: keep it off GPUs.
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
  prepared = pathlib.Path(os.fspath(builder.data_dir))
  inspected = files.identity(prepared)
  try:
    return _read_split(tfds, builder, data_config, split, factors)
  except (tf.errors.OpError, OSError) as e:  # a damaged or missing shard
    problem = _tf_reason(e)
  # Raised here, not in the except block, with the reader's iterator collected first: its
  # frames would otherwise outlive the quiet block, and TensorFlow prints a note about its
  # unread dataset when it goes.
  gc.collect()
  raise _PreparedDamaged(prepared, problem, inspected)


def _read_split(tfds, builder, data_config, split: str, factors):
  """The split's preprocessed images and labels, read in batches from TFDS's prepared copy."""
  features = builder.info.features
  # Batches when every image has the same shape; one image at a time otherwise.
  static = None not in tuple(features["image"].shape)
  dataset = builder.as_dataset(split=split, batch_size=_READ_BATCH if static else None)
  prep = preprocess.Preprocessing.from_config(data_config)
  images, labels = [], []
  for arrays in tfds.as_numpy(dataset):
    x = np.asarray(arrays["image"], np.uint8)
    x = x[None] if not static else x
    x = prep.apply(x[..., None] if x.ndim == 3 else x, f"{data_config.name!r}")
    if images and x.shape[1:] != images[0].shape[1:]:
      checks.fail("data.resize", tuple(data_config.resize),
                  f"a (height, width) every image is resized to: the images of "
                  f"{data_config.name!r} differ in size ({images[0].shape[1]} x "
                  f"{images[0].shape[2]}, {x.shape[1]} x {x.shape[2]})")
    images.append(x)
    y = labels_of(arrays, factors, len(x))
    labels.append(y if static else y[None])
  return (np.concatenate(images), np.concatenate(labels), tuple(k for k, _ in factors),
          tuple(n for _, n in factors))


def labels_of(arrays, factors, num: int | None = None) -> np.ndarray:
  """int32 labels (N,) for one factor, (N, F) for several, from a TFDS split's arrays; the
  zeros of an unlabelled split (`data.Dataset`) when there are no factors."""
  if not factors:
    return np.zeros(num, np.int32) if num else np.zeros((), np.int32)
  columns = [np.asarray(_feature(arrays, k), np.int32) for k, _ in factors]
  return columns[0] if len(columns) == 1 else np.stack(columns, axis=-1)


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
  cached = cache.read(path)
  if cached is not None:
    return cached
  try:
    images, labels, names, sizes = _prepare_with_tfds(data_config, split)
  except SplitMissing:
    return None
  if images.ndim == 3:
    images = images[..., None]
  cache.write(path, images, labels, names, sizes)
  return images, labels, names, sizes


def has_labels(data_config) -> bool | None:
  """Whether the prepared train split carries labels; None when it is not prepared yet."""
  return cache.has_factors(_cache_path(data_config, "train"))
