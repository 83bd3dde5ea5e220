"""Benchmark: dSprites training from bit-packed images on device vs from uint8 images, same run.

    python -m benchmarks.dsprites_packed [--images 102400] [--epochs 2]     (from the repository root)

The built-in dSprites is kept on the device bit-packed (377 MB for all 737,280 images, 3 GB as
uint8); each training step gathers its batch of packed rows and unpacks them in the same
program (`data/batches.py`). This trains `configs/dsprites_vae.py`'s model on the first
`--images` images both ways, alternating (packed, uint8, packed, uint8, ...), and prints one
JSON line with the examples/s of each epoch after compilation and the device bytes of each form.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from vae_jax import data, models, objectives, optim, step as step_lib, sweeps, trainer


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--images", type=int, default=102400)
  parser.add_argument("--epochs", type=int, default=2, help="timed epochs of each form")
  args = parser.parse_args()
  c = sweeps.load_module("configs/dsprites_vae.py").get_config()
  ds = data.load(c.data)
  n = args.images
  forms = {"packed": (ds.train_images[:n], True), "uint8": (ds.images("train", slice(0, n)), False)}
  mesh = trainer.make_mesh()
  graphdef, params0, rest = models.init_params(c, ds.image_shape)
  train_graphdef = models.compute_graphdef(c, ds.image_shape)
  tx = optim.transform(c)
  hp = {f: jnp.array([float(c[f])], jnp.float32) for f in objectives.member_hparams(c)}
  seeds = jnp.array([c.seed], jnp.uint32)
  runs = {}
  for name, (images, packed) in forms.items():
    fn = step_lib.build_train_epoch(graphdef=train_graphdef, rest=rest, tx=tx, mesh=mesh, config=c,
                                    image_shape=ds.image_shape, num_train=n, num_members=1,
                                    packed=packed)
    params = jax.tree.map(lambda a: jnp.asarray(a)[None], params0)
    opt = jax.vmap(tx.init)(params)
    x = jax.device_put(images, NamedSharding(mesh, P()))
    runs[name] = [fn.lower(params, opt, x, hp, seeds, jnp.int32(0)).compile(), params, opt, x]
  per_s = {name: [] for name in forms}
  for epoch in range(args.epochs):
    for name in forms:  # alternate, so load on the machine hits both alike
      compiled, params, opt, x = runs[name]
      t0 = time.perf_counter()
      params, opt, m = compiled(params, opt, x, hp, seeds, jnp.int32(epoch))
      jax.block_until_ready(m)
      per_s[name].append(n // c.batch_size * c.batch_size / (time.perf_counter() - t0))
      runs[name][1:3] = [params, opt]
  print(json.dumps({"benchmark": "dsprites_packed", "images": n, "epochs": args.epochs,
                    "examples_per_s": {k: [round(v) for v in vs] for k, vs in per_s.items()},
                    "packed_over_uint8": round(sum(per_s["packed"]) / sum(per_s["uint8"]), 3),
                    "device_bytes": {k: int(v[0].nbytes) for k, v in forms.items()},
                    "processor": platform.processor() or platform.machine(),
                    "devices": [str(d) for d in jax.devices()], "jax": jax.__version__}))


if __name__ == "__main__":
  main()
