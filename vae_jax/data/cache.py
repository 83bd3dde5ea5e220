"""Prepared splits on disk: one uncompressed .npz per split, read back with NumPy alone.

A split is (images uint8 (N, H, W, C), labels int32 (N,) or (N, F), factor names, factor
sizes). An unlabelled split stores no factor names and zero labels (`data.Dataset`). Files
are written under a temporary name and renamed, so a killed launch never leaves half a cache.
Where a split lives encodes everything that made it (`tag`): a change of preprocessing or
labels prepares a new cache beside the old one rather than reading a stale one.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zipfile

import numpy as np

from vae_jax.errors import UserError
from vae_jax.runtime import files


def tag(readable: str, identity: dict) -> str:
  """A cache folder name: `readable` (what a person scanning the cache needs, e.g.
  "crop148-resize64x64") and a hash of `identity` (everything that made the split)."""
  digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
  return f"{readable}-{digest}" if readable else digest


def read(path: pathlib.Path):
  """(images, labels, factor names, factor sizes) of a cached split; None when absent."""
  if not path.exists():
    return None
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


def write(path: pathlib.Path, images, labels, names, sizes) -> None:
  files.save_npz(path, images=images, labels=labels, factor_names=np.array(names, dtype=str),
                 factor_sizes=np.array(sizes, np.int64))


def has_factors(path: pathlib.Path) -> bool | None:
  """Whether a cached split carries ground-truth factors; None when it is not cached (or not
  readable: loading it will say why)."""
  try:
    with np.load(path) as f:
      return "factor_names" not in f or len(f["factor_names"]) > 0
  except (OSError, ValueError, KeyError, zipfile.BadZipFile):
    return None
