"""Seconds for the k = 5000 IWAE evaluation of the whole MNIST test set (10,000 images).

    python -m benchmarks.iwae_eval                      # the full measurement; prints one JSON
    python -m benchmarks.iwae_eval --num_images 200     # a quick look (scaled up in the JSON)

The model is the core config's MLP 784-400-20 VAE with random parameters: the cost of the
estimate does not depend on the parameter values. The test images are random binary images
of MNIST's shape unless --mnist is given (then the real, binarised test split; same cost).
One image chunk is run first (compiling the program) and timed apart; "seconds" then times the
whole evaluation. On a shared machine read it with "cpu_seconds" and "load_average_1min".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import mnist_vae
from vae_jax import marginal_likelihood, models


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--k", type=int, default=5000)
  p.add_argument("--num_images", type=int, default=10000)
  p.add_argument("--sample_chunk", type=int, default=None, help="default: by backend")
  p.add_argument("--image_chunk", type=int, default=None, help="default: by backend")
  p.add_argument("--mnist", action="store_true", help="use the real test split")
  args = p.parse_args()
  sc, ic = marginal_likelihood.default_chunks()
  args.sample_chunk, args.image_chunk = args.sample_chunk or sc, args.image_chunk or ic

  config = mnist_vae.get_config()
  model = models.from_config(config.model, (28, 28, 1), nnx.Rngs(0))
  if args.mnist:
    from vae_jax import data
    images = data.load(config.data).test_images[:args.num_images]
  else:
    rng = np.random.default_rng(0)
    images = np.where(rng.random((args.num_images, 28, 28, 1)) < 0.13, 255, 0).astype(np.uint8)
  model_fn, params = marginal_likelihood.autoencoder_latents(model)
  x = jnp.asarray(images, jnp.float32) / 255.0
  key = jax.random.key(0)

  # One call: compiling the chunk program and the compiled work over every chunk, timed apart.
  load_before = os.getloadavg()[0]
  cpu0 = time.process_time()
  timing = {}
  log_px = marginal_likelihood.iwae_log_px(
      model_fn, params, x, key, num_samples=args.k, sample_chunk=args.sample_chunk,
      image_chunk=args.image_chunk, timing=timing)
  seconds = timing["seconds"]
  cpu_seconds = time.process_time() - cpu0
  assert np.all(np.isfinite(np.asarray(log_px)))

  dev = jax.devices()[0]
  scale = 10000 / args.num_images
  decoder_flops = 2 * (20 * 400 + 400 * 784) * args.k * args.num_images
  print(json.dumps({
      "benchmark": "iwae_eval", "date": datetime.date.today().isoformat(),
      "k": args.k, "num_images": args.num_images,
      "seconds": round(seconds, 2),
      "seconds_for_10000_images": round(seconds * scale, 1),
      # The machine may be shared: process CPU time and the load average tell how much of it
      # this process got (on an idle n-core machine, seconds ~ cpu_seconds / n).
      "cpu_seconds": round(cpu_seconds, 1),
      "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
      "images_per_s": round(args.num_images / seconds, 2),
      "samples_per_s": round(args.k * args.num_images / seconds),
      "decoder_gflop_per_s": round(decoder_flops / seconds / 1e9, 1),
      "compile_seconds": round(timing["compile_seconds"], 2),
      "sample_chunk": min(args.sample_chunk, args.k), "image_chunk": args.image_chunk,
      "rows_per_step": min(args.sample_chunk, args.k) * args.image_chunk,
      "device": f"{dev.platform}:{dev.device_kind}", "num_devices_used": 1,
      "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
      "jax": jax.__version__, "mean_log_px": float(np.mean(np.asarray(log_px))),
      "model": "MLP 784-400-20 VAE, Bernoulli decoder, random init",
  }))


if __name__ == "__main__":
  main()
