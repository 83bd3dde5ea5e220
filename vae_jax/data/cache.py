"""Prepared splits on disk: one uncompressed .npz per split, read back with NumPy alone.

A split is (images uint8 (N, H, W, C), labels int32 (N,) or (N, F), factor names, factor
sizes). An unlabelled split stores no factor names and zero labels (`data.Dataset`). Files
are written under a temporary name and renamed, so a killed launch never leaves half a cache.
Where a split lives encodes everything that made it (`tag`): a change of preprocessing or
labels prepares a new cache beside the old one rather than reading a stale one. A cache is
derived from its sources, so one that fails its check (`read`: it does not load, or its arrays
are not a split) is moved to <its folder>/damaged/ with one warning line and prepared again;
`read_checked` does this for every derived cache (dSprites' too).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zipfile
import zlib
from typing import IO, Callable, TypeVar

import numpy as np

from vae_jax.errors import UserError
from vae_jax.runtime import files

# What a damaged .npz raises when read: a truncated or foreign file (BadZipFile, ValueError),
# a flipped byte (zipfile's CRC check: BadZipFile), a missing array (KeyError).
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)

T = TypeVar("T")


def tag(readable: str, identity: dict) -> str:
  """A cache folder name: `readable` (what a person scanning the cache needs, e.g.
  "crop148-resize64x64") and a hash of `identity` (everything that made the split)."""
  digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
  return f"{readable}-{digest}" if readable else digest


def read(path: pathlib.Path, rebuild: str = "preparing it again"):
  """(images, labels, factor names, factor sizes) of a cached split; None when absent.

  Also None when the file fails its check (it does not load, or its arrays are not a split:
  uint8 images (N, H, W, C), integer labels (N,) or (N, F) matching the factors): it is then
  moved aside (`files.set_aside_derived`, one warning line ending in `rebuild`) and the
  caller prepares the split again from its sources."""
  return read_checked(path, _load_split, lambda split: check_split(*split), "cached split",
                      rebuild)


def read_checked(path: pathlib.Path, load: Callable[[IO[bytes]], T], check: Callable[[T], None],
                 what: str, rebuild: str) -> T | None:
  """`load(file)` of a derived file that passes `check`; None when absent, or when it fails.

  One way of reading every derived cache, so each treats damage alike: `load` reads the open
  file into memory (it may raise anything in UNREADABLE), then `check` raises ValueError
  unless the contents are what the caller wrote. A file that fails either is moved aside
  with one warning line, "<path> is not a readable <what> (<reason>); ...; <rebuild>"
  (`files.set_aside_derived`), and the caller makes it again from its sources; it is moved
  only if it is still the file that was read (`files.identity`, taken on open), so a cache
  another launch has just rebuilt is left alone. A file that exists but cannot be opened
  (permissions) is a one-line `UserError`: moving it would not help."""
  try:
    fh = open(path, "rb")
  except FileNotFoundError:
    return None
  except OSError as e:
    raise UserError(f"{what} {path} cannot be opened ({e.strerror})") from None
  with fh:
    inspected = files.identity(fh)
    try:
      contents = load(fh)
      check(contents)
    except UNREADABLE as e:
      files.set_aside_derived(path, f"is not a readable {what} ({_reason(e)})", rebuild,
                              inspected)
      return None
  return contents


def _load_split(fh: IO[bytes]):
  with np.load(fh, allow_pickle=False) as f:
    images, labels = f["images"], f["labels"]
    if "factor_names" in f:
      names = tuple(str(n) for n in f["factor_names"])
      sizes = tuple(int(n) for n in f["factor_sizes"])
    else:
      names, sizes = ("label",), ()  # caches written before factors were stored
  return images, labels, names, sizes


def _reason(e: BaseException) -> str:
  text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def check_split(images, labels, names, sizes) -> None:
  """ValueError unless the arrays are a split as `write` stores it."""
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images are {images.dtype} {images.shape}, expected uint8 (N, H, W, C)")
  if not np.issubdtype(labels.dtype, np.integer) or labels.ndim not in (1, 2):
    raise ValueError(f"labels are {labels.dtype} {labels.shape}, expected integers (N,) or "
                     "(N, F)")
  if len(labels) != len(images):
    raise ValueError(f"{len(labels)} labels for {len(images)} images")
  columns = 1 if labels.ndim == 1 else labels.shape[1]
  if (names and columns != len(names)) or (sizes and len(sizes) != len(names)):
    raise ValueError(f"labels of {columns} column(s) for factors {names} of sizes {sizes}")


def write(path: pathlib.Path, images, labels, names, sizes) -> None:
  files.save_npz(path, images=images, labels=labels, factor_names=np.array(names, dtype=str),
                 factor_sizes=np.array(sizes, np.int64))


def has_factors(path: pathlib.Path) -> bool | None:
  """Whether a cached split carries ground-truth factors; None when it is not cached (or not
  readable: loading it will say why)."""
  try:
    with np.load(path) as f:
      return "factor_names" not in f or len(f["factor_names"]) > 0
  except UNREADABLE:
    return None
