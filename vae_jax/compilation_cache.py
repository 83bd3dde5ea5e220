"""The persistent compilation cache that every launch turns on.

`configure()` is called by the launcher before anything is compiled. It turns on JAX's
persistent compilation cache, so that a second launch of the same program (same config
shapes, same code, same JAX) loads its executables from disk instead of compiling them. On
the 2-core benchmark machine that takes launch-to-first-step of the core VAE from ~15 s to
~8 s under load (benchmarks/README.md): the epoch program alone takes seconds to compile,
and model initialisation runs a few dozen small programs of 0.1-0.4 s each, which is why
every program is cached, not only the default's "compiled in more than 1 s".

The cache lives beside the data cache: `$VAE_JAX_CACHE_DIR/xla`, else
`~/.cache/vae_jax/xla`. Settings the user made win: with `JAX_COMPILATION_CACHE_DIR` (or
`jax_compilation_cache_dir`) already set nothing is changed, and `VAE_JAX_COMPILATION_CACHE=0`
turns the cache off. Cache entries are keyed by the program, the compile options, the
devices and the JAX/XLA versions, so a stale entry is never loaded for a different program.

Deliberately not set here, after measuring the training step on the 2-core CPU: forcing two
host devices (`--xla_force_host_platform_device_count=2`, which makes the step's shard_map
data-parallel over the cores) was ~40% slower than one device using XLA's intra-op threads
(every device then runs the whole optimizer update, plus an all-reduce per step), and the
XLA:CPU flags tried (concurrency-optimised scheduler, 512-bit vectors, oneDNN, library
fusion types) made no measurable difference.
"""

from __future__ import annotations

import os
import pathlib


def cache_dir() -> pathlib.Path:
  """Where compiled programs are cached: $VAE_JAX_CACHE_DIR/xla or ~/.cache/vae_jax/xla."""
  root = os.environ.get("VAE_JAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                             "vae_jax")
  return pathlib.Path(root) / "xla"


def configure() -> None:
  """Turns on the persistent compilation cache unless the user configured (or disabled) it.

  Call it once, before the first compilation (importing jax first is fine).
  """
  import jax  # pylint: disable=g-import-not-at-top

  if os.environ.get("VAE_JAX_COMPILATION_CACHE", "1") == "0":
    return
  if not jax.config.jax_compilation_cache_dir:  # also set by $JAX_COMPILATION_CACHE_DIR
    jax.config.update("jax_compilation_cache_dir", str(cache_dir()))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
