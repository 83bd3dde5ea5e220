"""Where data comes from and where prepared data is cached (config fields, then environment)."""

from __future__ import annotations

import os


def resolve_manual_dir(data_config) -> str | None:
  """config.data.manual_dir, else $VAE_JAX_MANUAL_DIR/<name>, else None (TFDS downloads)."""
  if data_config.manual_dir:
    return str(data_config.manual_dir)
  root = os.environ.get("VAE_JAX_MANUAL_DIR")
  return os.path.join(root, data_config.name) if root else None


def resolve_tfds_dir(data_config) -> str | None:
  """config.data.tfds_dir, else $VAE_JAX_TFDS_DIR, else None (TFDS's own default)."""
  return data_config.tfds_dir or os.environ.get("VAE_JAX_TFDS_DIR") or None


def resolve_cache_dir(data_config) -> str:
  if data_config.cache_dir:
    return str(data_config.cache_dir)
  return os.environ.get("VAE_JAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vae_jax")
