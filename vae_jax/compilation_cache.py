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

A damaged entry (a flipped byte, a truncated file) is a derived file like the data caches:
JAX itself warns ("Error reading persistent compilation cache entry", two lines of a Python
warning), compiles the program, and then never replaces the entry (its cache does not
overwrite an existing key), so every later launch warns and compiles again. `configure`
therefore checks each entry JAX reads (it must decompress) and moves one that fails to
<cache>/damaged/ with one warning line (`runtime.files.set_aside_derived`), so that JAX
compiles the program and caches it afresh.

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
import sys

from vae_jax.errors import UserError
from vae_jax.runtime import files


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
  check_entries()


def check_entries() -> bool:
  """Makes JAX's persistent cache check every entry it reads (see the module docstring);
  returns whether it will. Call it before the first compilation. It wraps the cache JAX
  builds (`jax._src.compilation_cache.get_file_cache`, an internal name): where a JAX
  version lacks it nothing changes, and JAX's own warning and recompilation remain."""
  try:
    from jax._src import compilation_cache as jax_cache  # pylint: disable=g-import-not-at-top
    from jax._src import lru_cache  # pylint: disable=g-import-not-at-top
    from jax._src.compilation_cache_interface import CacheInterface  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  original = getattr(jax_cache, "get_file_cache", None)
  if original is None or not hasattr(jax_cache, "decompress_executable"):
    return False
  if getattr(original, "checks_entries", False):
    return True
  suffix = getattr(lru_cache, "_CACHE_SUFFIX", "-cache")

  class CheckedCache(CacheInterface):
    """JAX's file cache, with each entry checked as it is read."""

    def __init__(self, base):
      self._base = base
      self._path = base._path  # pylint: disable=protected-access

    def get(self, key: str):
      path = pathlib.Path(str(self._path)) / f"{key}{suffix}"
      inspected = files.identity(path)
      value = self._base.get(key)
      if value is None:
        return None
      try:
        if len(jax_cache.decompress_executable(value)) <= 4:  # 4 bytes of compile time first
          raise ValueError("no executable after its compile time")
      except Exception as e:  # pylint: disable=broad-except  (zlib.error, ZstdError, ...)
        _set_aside(path, e, inspected)
        return None  # a miss: JAX compiles the program and caches it afresh
      return value

    def put(self, key: str, value: bytes):
      return self._base.put(key, value)

  def get_file_cache(path):
    made = original(path)
    if made is None or not isinstance(made[0], lru_cache.LRUCache) or "://" in str(path):
      return made  # a remote cache, or JAX's own content check: left as JAX made it
    return CheckedCache(made[0]), made[1]

  get_file_cache.checks_entries = True
  jax_cache.get_file_cache = get_file_cache
  return True


def _set_aside(path: pathlib.Path, e: Exception, inspected) -> None:
  problem = f"is not a readable compiled program ({type(e).__name__}: {str(e)[:160]})"
  try:
    files.set_aside_derived(path, problem, "compiling it again", inspected)
  except (OSError, UserError) as failed:  # cannot move it: compile anyway, say so once
    print(f"warning: {path} {problem}; compiling it again (it could not be moved aside: "
          f"{getattr(failed, 'strerror', None) or failed})", file=sys.stderr, flush=True)
