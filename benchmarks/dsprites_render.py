"""Seconds and host memory for procedural dSprites (`vae_jax/data/dsprites.py`).

    python -m benchmarks.dsprites_render       # prints one JSON line

Renders the whole bit-packed set (737,280 images), writes it as the cache to a temporary
folder and reads it back with `dsprites.load`, then times `unpack_jax` of a 64-row gather,
jitted on JAX's default device (the CPU on a machine without accelerators). Peak RSS comes
from resource.getrusage, once after rendering and once at the end (which includes JAX's copy
of the packed set on the device). On a shared machine read the seconds with "cpu_seconds"
and "load_average_1min".
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import resource
import tempfile
import time

import jax
import numpy as np

from vae_jax.data import dsprites


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main():
  load_before = os.getloadavg()[0]
  t0, c0 = time.perf_counter(), time.process_time()
  packed, factors = dsprites.packed_dataset()
  render_s, render_cpu_s = time.perf_counter() - t0, time.process_time() - c0
  rss_after_render = peak_rss_mb()
  on_fraction = float(np.unpackbits(packed[::97]).mean())

  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "dsprites" / "procedural.npz"
    t0 = time.perf_counter()
    write_cache = dsprites._write_cache  # pylint: disable=protected-access
    write_cache(path, packed, factors, version=dsprites.RENDERER_VERSION)
    write_s = time.perf_counter() - t0
    cache_mb = path.stat().st_size / 1e6
    t0 = time.perf_counter()
    cached, cached_factors = dsprites.load(tmp)
    load_s = time.perf_counter() - t0
    assert np.array_equal(cached, packed) and np.array_equal(cached_factors, factors)
    del cached, cached_factors

  device = jax.devices()[0]
  t0 = time.perf_counter()
  packed_dev = jax.device_put(packed, device)
  packed_dev.block_until_ready()
  put_s = time.perf_counter() - t0
  batch = jax.jit(lambda p, i: dsprites.unpack_jax(p[i]))
  rng = np.random.default_rng(0)
  indices = [jax.device_put(rng.integers(0, dsprites.NUM_IMAGES, 64, dtype=np.int32), device)
             for _ in range(201)]
  t0 = time.perf_counter()
  first = batch(packed_dev, indices[0]).block_until_ready()
  compile_s = time.perf_counter() - t0
  assert np.array_equal(np.asarray(first) * 255,
                        dsprites.unpack(packed[np.asarray(indices[0])]).astype(np.float32))
  times = []
  for idx in indices[1:]:
    t0 = time.perf_counter()
    batch(packed_dev, idx).block_until_ready()
    times.append(time.perf_counter() - t0)

  print(json.dumps({
      "num_images": int(packed.shape[0]),
      "render_seconds": round(render_s, 2),
      "render_cpu_seconds": round(render_cpu_s, 2),
      "images_per_s": round(packed.shape[0] / render_s),
      "packed_mb": round(packed.nbytes / 1e6, 1),
      "factors_mb": round(factors.nbytes / 1e6, 1),
      "uint8_mb_if_unpacked": round(packed.shape[0] * 64 * 64 / 1e6, 1),
      "peak_rss_mb_after_render": round(rss_after_render, 1),
      "cache_write_seconds": round(write_s, 2),
      "cache_mb": round(cache_mb, 1),
      "cached_load_seconds": round(load_s, 2),
      "on_pixel_fraction": round(on_fraction, 4),
      "device_put_seconds": round(put_s, 3),
      "unpack_jax_64_first_call_seconds_incl_compile": round(compile_s, 3),
      "unpack_jax_64_median_us": round(float(np.median(times)) * 1e6, 1),
      "unpack_jax_64_p90_us": round(float(np.percentile(times, 90)) * 1e6, 1),
      "peak_rss_mb_end": round(peak_rss_mb(), 1),
      "device": f"{device.platform}:{device.device_kind}",
      "cpu_model": cpu_model(),
      "cpu_count": os.cpu_count(),
      "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
      "jax": jax.__version__,
      "numpy": np.__version__,
      "date": datetime.date.today().isoformat(),
  }))


if __name__ == "__main__":
  main()
