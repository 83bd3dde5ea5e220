"""`folder:PATH`: a folder of PNG / JPEG images, decoded with Pillow, prepared once and cached.

    PATH/*.jpg                      unlabelled images (one sub-folder alone, e.g. CelebA's
                                    img_align_celeba/, is read the same way)
    PATH/<class>/*.png              two or more class sub-folders: an image's label is its
                                    folder's index in sorted order (one factor, "class")
    PATH/train/..., PATH/test/...   the two splits, each laid out as above; without them a
                                    fixed share `config.data.test_fraction` of the images tests

One level of sub-folders is read; hidden entries and files of other types (a CSV beside the
images) are ignored. `config.data.label_file` may label the images instead: a CSV file with a
header row, the image's path inside PATH in the first column ("train/cat/001.png"), then one
integer column per factor, named by the header. Every image must be of the same size after
the crop and resize (`preprocess.py`); grey and colour images mixed become RGB. 16-bit and
float images are refused (convert them to 8-bit PNG).
"""

from __future__ import annotations

import csv
import hashlib
import os

import numpy as np
from PIL import Image

from vae_jax import checks
from vae_jax.data import local, preprocess
from vae_jax.errors import UserError

SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_FOLDERS = ("train", "test")
_GREY_MODES = ("1", "L", "LA")
_UNSUPPORTED_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _entries(folder: str):
  """(image files, non-hidden sub-folders) directly inside `folder`, as sorted names."""
  files, dirs = [], []
  with os.scandir(folder) as it:
    for e in it:
      if e.name.startswith("."):
        continue
      if e.is_dir():
        dirs.append(e.name)
      elif e.name.lower().endswith(SUFFIXES) and e.is_file():
        files.append(e.name)
  return sorted(files), sorted(dirs)


def _split_listing(root: str, sub: str, where: str):
  """[(path inside root, class name or None)] of one split folder `root/sub`."""
  folder = os.path.join(root, sub) if sub else root
  files, dirs = _entries(folder)
  classes = [d for d in dirs if _entries(os.path.join(folder, d))[0]]
  join = lambda *p: "/".join(x for x in p if x)
  if files and classes:
    raise UserError(f"{where} mixes images ({files[0]}, ...) with sub-folders of images "
                    f"({classes[0]}/, ...) in {folder}: put every image in a class sub-folder, "
                    "or none")
  if files:
    return [(join(sub, f), None) for f in files]
  if len(classes) == 1:  # one folder of images (CelebA's img_align_celeba/): no classes
    only = classes[0]
    return [(join(sub, only, f), None) for f in _entries(os.path.join(folder, only))[0]]
  return [(join(sub, c, f), c) for c in classes for f in _entries(os.path.join(folder, c))[0]]


def listing(data_config):
  """{split or None (no split folders): [(path inside root, class or None)]} of a folder source,
  with its root and the name errors use; one-line errors for a missing or empty folder."""
  where = data_config.name
  root = local.path_of(where)
  if not os.path.isdir(root):
    raise UserError(f"config.data.name={where!r}: {root} is not a folder (expected a folder "
                    "of PNG or JPEG images)")
  _, dirs = _entries(root)
  splits = SPLIT_FOLDERS if set(SPLIT_FOLDERS) <= set(dirs) else (None,)
  out = {s: _split_listing(root, s or "", where) for s in splits}
  for s, items in out.items():
    if not items:
      raise UserError(f"config.data.name={where!r}: {os.path.join(root, s) if s else root} "
                      "holds no PNG or JPEG images (read: its files and one level of "
                      "sub-folders)")
  return out, root, where


def has_labels(data_config) -> bool | None:
  """Whether the folder is labelled (class sub-folders or a label file); None when it cannot be
  listed (loading it says why)."""
  if data_config.label_file:
    return True
  try:
    out, _, _ = listing(data_config)
  except (UserError, OSError):
    return None
  return any(c is not None for items in out.values() for _, c in items)


def _read_label_file(path: str, relpaths, where: str):
  """labels (N,) or (N, F) and factor names from a CSV label file, rows in `relpaths` order."""
  try:
    with open(path, newline="") as f:
      rows = [r for r in csv.reader(f) if r]
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise UserError(f"config.data.label_file={path!r} is unreadable ({type(e).__name__}): "
                    "expected a CSV file") from None
  if not rows or len(rows[0]) < 2:
    raise UserError(f"label file {path} needs a header row: the image path, then one name per "
                    "factor (e.g. 'file,smiling')")
  header, table = rows[0], {}
  for line, row in enumerate(rows[1:], start=2):
    if len(row) != len(header):
      raise UserError(f"label file {path} line {line} has {len(row)} fields, its header "
                      f"{len(header)}")
    try:
      table[row[0].strip()] = [int(v) for v in row[1:]]
    except ValueError:
      raise UserError(f"label file {path} line {line}: {row[1:]} are not all integers") from None
  missing = [p for p in relpaths if p not in table]
  if missing:
    raise UserError(f"label file {path} has no row for {missing[0]} ({len(missing)} of the "
                    f"{len(relpaths)} images of {where} have none; the first column holds "
                    "each image's path inside the folder)")
  labels = local.check_labels(np.array([table[p] for p in relpaths], np.int64), len(relpaths),
                              path)
  names = tuple(h.strip() for h in header[1:])
  return (labels[:, 0] if labels.shape[1] == 1 else labels), names


def _decode(path: str, prep: preprocess.Preprocessing, relpath: str) -> np.ndarray:
  try:
    with Image.open(path) as img:
      if img.mode in _UNSUPPORTED_MODES:
        raise UserError(f"image {path} is {img.mode} (16-bit or float): expected 8-bit grey "
                        "or colour PNG / JPEG")
      img = img.convert("L" if img.mode in _GREY_MODES else "RGB")
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise UserError(f"image {path} is unreadable ({type(e).__name__}): expected a PNG or "
                    "JPEG file") from None
  return prep.apply_pil(img, f"image {relpath}")


def load(data_config) -> local.Splits:
  """Both splits of a folder source, from the cache when prepared before."""
  out, root, where = listing(data_config)
  items = [(s, p, c) for s, entries in out.items() for p, c in entries]
  relpaths = [p for _, p, _ in items]
  digest = hashlib.sha256()
  for p in relpaths:
    digest.update(repr(local.file_identity(os.path.join(root, p))[1:] + [p]).encode())
  label_file = data_config.label_file
  identity = {"files": digest.hexdigest(), "root": os.path.abspath(root),
              "label_file": local.source_identity(label_file)}
  folder = local.cache_folder(data_config, "folder", root, identity)
  cached = local.read_cached(folder)
  if cached is not None:
    return cached

  if label_file:
    labels, names = _read_label_file(label_file, relpaths, where)
    names, sizes = local.factors_of(labels, label_file, names)
  elif any(c is not None for _, _, c in items):
    if any(c is None for _, _, c in items):
      raise UserError(f"{where}: {' and '.join(f'{s}/' for s in out)} differ: one is laid out in "
                      "class sub-folders, the other not; label both or neither")
    classes = sorted({c for _, _, c in items})
    labels = np.array([classes.index(c) for _, _, c in items], np.int32)
    names, sizes = ("class",), (len(classes),)
  else:
    labels, names, sizes = local.unlabelled(len(items)), (), ()

  print(f"Preparing {where} ({len(items):,} images) with Pillow; later launches read the "
        f"cache in {folder}", flush=True)
  prep = preprocess.Preprocessing.from_config(data_config)
  first = _decode(os.path.join(root, relpaths[0]), prep, relpaths[0])

  def one(relpath):
    x = _decode(os.path.join(root, relpath), prep, relpath)
    if x.shape[:2] != first.shape[:2]:
      checks.fail("data.resize", tuple(data_config.resize),
                  f"a (height, width) every image is resized to: the images of {where} differ "
                  f"in size after the crop ({relpaths[0]}: {first.shape[0]} x {first.shape[1]}, "
                  f"{relpath}: {x.shape[0]} x {x.shape[1]})")
    return x

  decoded = [first] + preprocess.map_images(one, relpaths[1:])
  channels = max(x.shape[-1] for x in decoded)  # grey and colour mixed: all RGB
  images = np.stack([np.repeat(x, channels // x.shape[-1], -1) for x in decoded])
  split_of = np.array([s or "" for s, _, _ in items])
  if None in out:
    splits = local.hold_out(images, labels, float(data_config.test_fraction), where)
  else:
    tr, te = split_of == "train", split_of == "test"
    splits = images[tr], labels[tr], images[te], labels[te]
  result = local.Splits(*splits, names, sizes)
  local.write_cached(folder, result)
  return result
