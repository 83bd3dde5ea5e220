"""What several benchmarks share: the machine's name, this process's CPU time, and the timing
of the real compiled training epoch on a prefix of a bit-packed dataset."""

from __future__ import annotations

import platform
import resource
import statistics
import subprocess
import time

import numpy as np


def cpu_model() -> str:
  """The CPU's model name (lscpu), or what `platform` knows."""
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
      if line.startswith("Model name"):
        return line.split(":", 1)[1].strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return platform.processor() or platform.machine()


def cpu_seconds() -> float:
  """User + system CPU seconds of this process so far (all threads)."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def time_train_epoch(config, ds, steps: int) -> dict:
  """The launcher's compiled train epoch (`step.build_train_epoch`, one member, bit-packed
  batches) of `config` on the first `steps` batches of `ds`, run three times (the first a
  warm-up), extrapolated to an epoch of the whole training split."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from vae_jax import models, objectives, optim, step as step_lib
  n = steps * config.batch_size
  mesh = Mesh(np.array(jax.devices()), ("data",))  # trainer.make_mesh's
  _, params0, rest = models.init_params(config, ds.image_shape)
  tx = optim.transform(config)
  fn = step_lib.build_train_epoch(graphdef=models.compute_graphdef(config, ds.image_shape),
                                  rest=rest, tx=tx, mesh=mesh, config=config,
                                  image_shape=ds.image_shape, num_train=n, num_members=1,
                                  packed=True)
  hp = {f: jnp.array([float(config[f])], jnp.float32) for f in objectives.member_hparams(config)}
  seeds = jnp.array([config.seed], jnp.uint32)
  params = jax.tree.map(lambda a: jnp.asarray(a)[None], params0)
  opt = jax.vmap(tx.init)(params)
  images = jax.device_put(ds.train_images[:n], NamedSharding(mesh, P()))
  compiled = fn.lower(params, opt, images, hp, seeds, jnp.int32(0)).compile()
  secs = []
  for epoch in range(3):  # the first is a warm-up
    t0 = time.perf_counter()
    params, opt, m = compiled(params, opt, images, hp, seeds, jnp.int32(epoch))
    jax.block_until_ready(m)
    secs.append(time.perf_counter() - t0)
  per_step = statistics.median(secs[1:]) / steps
  full = len(ds.train_images) // config.batch_size
  return {"batch_size": config.batch_size, "timed_steps": steps,
          "seconds_per_step": round(per_step, 5),
          "examples_per_s": round(config.batch_size / per_step),
          "epoch_seconds_extrapolated": round(per_step * full, 1),
          "steps_per_epoch": full, "all_run_seconds": [round(s, 2) for s in secs]}
