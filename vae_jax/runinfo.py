"""What a run records about itself: the resolved config, code version, libraries and devices."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import subprocess
import tempfile
from typing import Any

import jax

from vae_jax import data as data_lib

_LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "wandb",
              "ml-collections", "numpy")
# Fields that may change between launches of the same workdir without changing what is
# computed (or, for num_epochs, only extending it).
RESUMABLE_CHANGES = ("num_epochs", "eval_every_epochs", "checkpoint_every_epochs",
                     "keep_checkpoints", "num_plot_images", "eval_batch_size", "eval_nll_k", "wandb.")
# Fields added to configs/default.py after runs were first written, with the values that
# reproduce what those runs computed: a saved config without one means that value.
ADDED_FIELDS = {"model.conv_channels": [32, 64], "model.kernel_size": 4,
                "data.corruption": "none", "data.corruption_level": 0.0,
                "data.exclude_labels": [], "objective": "elbo", "num_importance_samples": 1,
                "model.stochastic_layers": 1, "model.top_latent_dim": 10,
                "model.top_hidden_sizes": [100, 100], "dtype": "float32"}


def resolved_config(config) -> dict[str, Any]:
  """The config as plain JSON-able data, with the data folders it will actually use."""
  d = json.loads(config.to_json_best_effort())
  d["data"]["manual_dir"] = data_lib.resolve_manual_dir(config.data)
  d["data"]["cache_dir"] = data_lib.resolve_cache_dir(config.data)
  return d


def _git_commit() -> str | None:
  root = pathlib.Path(__file__).resolve().parent.parent
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                         timeout=5, check=True)
    return out.stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def run_info(config) -> dict[str, Any]:
  versions = {}
  for lib in _LIBRARIES:
    try:
      versions[lib] = importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
      versions[lib] = None
  return {
      "config": resolved_config(config),
      "git_commit": _git_commit(),
      "versions": versions,
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
  }


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_differences(old: dict, new: dict) -> list[str]:
  """Dotted keys whose values differ, ignoring the fields a resumed run may change."""
  a, b = {**ADDED_FIELDS, **flatten(old)}, flatten(new)
  keys = sorted(set(a) | set(b))
  diffs = [k for k in keys if a.get(k) != b.get(k)]
  return [k for k in diffs if not any(k == r or (r.endswith(".") and k.startswith(r))
                                      for r in RESUMABLE_CHANGES)]


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes JSON atomically: a temporary file in the same folder, then a rename."""
  path = pathlib.Path(path)
  with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(f.name, path)
