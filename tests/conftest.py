"""Fixtures: the tiny config and fake dataset of `helpers.py`, and real MNIST prepared once per
test run. Subprocess launches are marked `slow`: `pytest -m "not slow"` runs the rest."""

from __future__ import annotations

import os

# The suite runs on the CPU backend unless asked otherwise (JAX_PLATFORMS set by the user): on
# a GPU machine the GPU would otherwise become the default backend with one device, breaking
# the tests that fake several CPU devices, and every test process would preallocate 75% of its
# memory. Set before anything imports JAX; subprocesses inherit it through the environment.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite compiles hundreds of small programs and runs each for milliseconds, so most of its
# time is XLA compiling, much of it LLVM optimising generated code that then runs for
# microseconds (matmuls and convolutions call their libraries either way). LLVM's level 0
# instead of its default 3. On 2-core development machines, five test files took 1m52s at
# level 0, 2m11s at level 1 and 2m55s at level 3 (2026-12-01), and four in-process files took
# 40-43 s at level 0 against 47-48 s at level 1 (alternated runs, Sapphire Rapids,
# 2026-12-06). Level 0 rounds a vectorised program differently from the same member trained
# alone (a test -ELBO 46.580990 against 46.580994 here), so tests comparing the two use a
# tolerance (test_sweeps: rtol 1e-5); every other comparison is of programs compiled alike.
# The flag reaches subprocesses and forked launches through the environment (helpers.xla_env
# adds fake devices to it).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

import atexit  # pylint: disable=g-import-not-at-top
import fcntl  # pylint: disable=g-import-not-at-top
import pathlib  # pylint: disable=g-import-not-at-top
import shutil  # pylint: disable=g-import-not-at-top
import subprocess  # pylint: disable=g-import-not-at-top
import sys  # pylint: disable=g-import-not-at-top
import tempfile  # pylint: disable=g-import-not-at-top

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

# One scratch folder for the whole test run, made fresh by its first process (plain pytest, or
# pytest-xdist's controller before it starts the workers, which inherit it through the
# environment) and removed when that process exits. So a run never depends on what an
# earlier one left, and what one worker prepared the others reuse.
_RUN_DIR = os.environ.get("VAE_JAX_TESTS_RUN_DIR")
if not _RUN_DIR or not os.path.isdir(_RUN_DIR):
  _RUN_DIR = tempfile.mkdtemp(prefix="vae_jax_tests_")
  os.environ["VAE_JAX_TESTS_RUN_DIR"] = _RUN_DIR
  atexit.register(shutil.rmtree, _RUN_DIR, ignore_errors=True)

# Tests train many tiny models with the same shapes: JAX's persistent compilation cache (what
# every launch uses, vae_jax/compilation_cache.py) lets a test load a program compiled by an
# earlier one instead of compiling it again. The run's one cache serves every worker and,
# through $JAX_COMPILATION_CACHE_DIR (which the launcher's own setting defers to), every
# launch in a subprocess, caching every program as a launch does.
_XLA_CACHE = os.path.join(_RUN_DIR, "xla")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

from tests.helpers import ROOT, fake_dataset, tiny_config  # pylint: disable=g-import-not-at-top


@pytest.fixture
def tiny():
  return tiny_config


@pytest.fixture
def fake_data():
  return fake_dataset


@pytest.fixture(scope="session")
def mnist_env():
  """Environment for launches on real MNIST, prepared from $VAE_JAX_MANUAL_DIR with TFDS into
  the run's fresh cache (so the TFDS preparation path itself is tested), once per run: the
  first worker to ask prepares it, in a subprocess (TensorFlow stays out of the workers), while
  the others wait. Skips when no raw data is available."""
  manual = os.environ.get("VAE_JAX_MANUAL_DIR")
  if not manual or not os.path.isdir(os.path.join(manual, "mnist")):
    pytest.skip("set VAE_JAX_MANUAL_DIR to the folder holding mnist/ raw files")
  root = pathlib.Path(_RUN_DIR) / "mnist"
  root.mkdir(exist_ok=True)
  env = {"VAE_JAX_MANUAL_DIR": manual, "VAE_JAX_CACHE_DIR": str(root / "cache"),
         "VAE_JAX_TFDS_DIR": str(root / "tfds")}
  with open(root / "lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (root / "prepared").exists():
      code = ("from configs import default; from vae_jax import data;"
              " ds = data.load(default.get_config().data);"
              " assert ds.train_images.shape == (60000, 28, 28, 1), ds.train_images.shape")
      proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
      assert proc.returncode == 0, proc.stderr[-3000:]
      assert "Preparing 'mnist' (train) with TFDS" in proc.stdout + proc.stderr
      (root / "prepared").touch()
  return env
