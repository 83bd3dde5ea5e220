"""The conv models' training program under each convolution lowering, same process. ONE JSON.

    python -m benchmarks.conv_lowering                                     # configs/mnist_conv.py
    python -m benchmarks.conv_lowering --config configs/dsprites_locatello.py --steps 20

For each `model.conv_lowering` ("xla": lax's convolutions; "matmul": vae_jax/convolutions.py's
space-to-depth matrix products) it compiles the real training epoch (`step.build_train_epoch`:
the `lax.scan` of jitted steps the launcher runs) on `--steps` batches of random uint8 images of
the config's image size, then times `--epochs` dispatches of it after a warm-up one. Reported
per lowering: examples/s (median epoch), compile seconds, and the mean training loss of the
timed epochs. Both start from the same parameters and see the same batches and noise, so the
losses differ by float rounding only ("max_relative_loss_difference"). Random images cost what
real ones do; no data needs preparing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vae_jax import models, objectives, optim, step as step_lib, sweeps

IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "dsprites": (64, 64, 1)}


def measure(config, image_shape, steps: int, epochs: int) -> dict:
  n = config.batch_size * steps
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  replicated = NamedSharding(mesh, P())
  _, params0, rest = models.init_params(config, image_shape)
  graphdef = models.compute_graphdef(config, image_shape)
  tx = optim.transform(config)
  images = jax.device_put(np.random.default_rng(0).integers(0, 256, (n, *image_shape), np.uint8),
                          replicated)
  hparams = {f: jnp.full((1,), float(config[f]), jnp.float32)
             for f in objectives.member_hparams(config)}
  seeds = jnp.zeros((1,), jnp.uint32)
  params = jax.tree.map(lambda a: jax.device_put(a[None], replicated), params0)
  opt_state = jax.jit(jax.vmap(tx.init))(params)
  epoch_fn = step_lib.build_train_epoch(graphdef=graphdef, rest=rest, tx=tx, mesh=mesh,
                                        config=config, image_shape=image_shape, num_train=n,
                                        num_members=1)
  t0 = time.perf_counter()
  compiled = epoch_fn.lower(params, opt_state, images, hparams, seeds, jnp.int32(0)).compile()
  compile_s = time.perf_counter() - t0
  seconds, losses = [], []
  for e in range(epochs + 1):  # epoch 0 warms up
    t0 = time.perf_counter()
    params, opt_state, metrics = compiled(params, opt_state, images, hparams, seeds, jnp.int32(e))
    loss = float(jax.device_get(metrics["loss"])[0])
    if e:
      seconds.append(time.perf_counter() - t0)
      losses.append(loss)
  return {"examples_per_s": round(n / statistics.median(seconds)),
          "seconds_per_epoch": [round(s, 3) for s in seconds],
          "compile_seconds": round(compile_s, 2), "train_loss_per_epoch": losses}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/mnist_conv.py")
  parser.add_argument("--steps", type=int, default=50, help="batches per timed epoch")
  parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up")
  parser.add_argument("--lowerings", nargs="+", default=["xla", "matmul"])
  args = parser.parse_args()
  config = sweeps.load_module(args.config).get_config()
  if config.model.architecture != "conv":
    parser.error(f"{args.config} trains a {config.model.architecture!r} model; give a conv config")
  if config.data.name not in IMAGE_SHAPES:
    parser.error(f"data.name={config.data.name!r}: image size unknown here; one of "
                 f"{sorted(IMAGE_SHAPES)}")
  image_shape = IMAGE_SHAPES[config.data.name]
  results = {}
  for lowering in args.lowerings:
    with config.unlocked():
      config.model.conv_lowering = lowering
    results[lowering] = measure(config, image_shape, args.steps, args.epochs)
  out = {
      "benchmark": "conv_lowering",
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "config": args.config, "image_shape": image_shape, "batch_size": config.batch_size,
      "conv_channels": tuple(config.model.conv_channels), "kernel_size": config.model.kernel_size,
      "steps_per_epoch": args.steps, "lowerings": results,
  }
  if {"xla", "matmul"} <= set(results):
    out["matmul_over_xla_examples_per_s"] = round(
        results["matmul"]["examples_per_s"] / results["xla"]["examples_per_s"], 2)
    a, b = results["xla"]["train_loss_per_epoch"], results["matmul"]["train_loss_per_epoch"]
    out["max_relative_loss_difference"] = float(f"{max(abs(x - y) / abs(x) for x, y in zip(a, b)):.2g}")
  out.update(backend=jax.default_backend(), devices=[str(d) for d in jax.devices()[:1]],
             jax_version=jax.__version__, cpu_count=os.cpu_count(),
             machine=platform.processor() or platform.machine(),
             load_average_1min=round(os.getloadavg()[0], 2))
  print(json.dumps(out))


if __name__ == "__main__":
  main()
