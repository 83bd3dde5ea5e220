"""Fixtures: the tiny config and fake dataset of `helpers.py`, and real MNIST prepared once per
session. Subprocess launches are marked `slow`: `pytest -m "not slow"` runs the rest."""

from __future__ import annotations

import os

# The suite runs on the CPU backend unless asked otherwise (JAX_PLATFORMS set by the user): on
# a GPU machine the GPU would otherwise become the default backend with one device, breaking
# the tests that fake several CPU devices, and every test process would preallocate 75% of its
# memory. Set before anything imports JAX; subprocesses inherit it through the environment.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import atexit  # pylint: disable=g-import-not-at-top
import shutil  # pylint: disable=g-import-not-at-top
import tempfile  # pylint: disable=g-import-not-at-top

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

# Tests train many tiny models with the same shapes: JAX's persistent compilation cache (what
# every launch uses, vae_jax/compilation_cache.py) lets the in-process ones load a program
# compiled by an earlier test instead of compiling it again. A fresh folder per session, so a
# run never depends on what an earlier one left; launches in subprocesses use their own.
_XLA_CACHE = tempfile.mkdtemp(prefix="vae_jax_tests_xla_")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

from tests.helpers import fake_dataset, tiny_config  # pylint: disable=g-import-not-at-top


@pytest.fixture
def tiny():
  return tiny_config


@pytest.fixture
def fake_data():
  return fake_dataset


@pytest.fixture(scope="session")
def mnist_env(tmp_path_factory):
  """Environment for launches on real MNIST, prepared from $VAE_JAX_MANUAL_DIR into a fresh
  cache (so the TFDS preparation path itself is tested). Skips when no raw data is available."""
  manual = os.environ.get("VAE_JAX_MANUAL_DIR")
  if not manual or not os.path.isdir(os.path.join(manual, "mnist")):
    pytest.skip("set VAE_JAX_MANUAL_DIR to the folder holding mnist/ raw files")
  root = tmp_path_factory.mktemp("data")
  return {"VAE_JAX_MANUAL_DIR": manual, "VAE_JAX_CACHE_DIR": str(root / "cache"),
          "VAE_JAX_TFDS_DIR": str(root / "tfds")}
