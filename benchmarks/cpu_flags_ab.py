"""Interleaved A/B of the training epoch under XLA compile options, in one process.

    python -m benchmarks.cpu_flags_ab                        # the variants below, core VAE
    python -m benchmarks.cpu_flags_ab --config configs/mnist_conv.py --num_train 6400 \\
        --variants base onednn
    python -m benchmarks.cpu_flags_ab --variants base nonorm --rounds 8
    python -m benchmarks.cpu_flags_ab --config configs/iwae_table.py --num_train 20000 \\
        --variants base fusednorm nonorm

Prints one JSON object: for every variant, the median and best examples/s over the rounds
after the first, and every round's seconds.

Why interleaved: on a shared 2-core machine the background load drifts by tens of percent
within a minute, so two launches measured one after the other compare the load, not the
variants. Here every variant's epoch program is compiled first, then the rounds run variant
after variant (A, B, C, A, B, C, ...), so slow spells hit all of them alike.

Variants (names may be combined with "+", e.g. "onednn+nonorm"):
  base     the step as the launcher compiles it
  onednn   compile option xla_cpu_use_onednn=True (oneDNN for dots and convolutions)
  nonorm   the per-step gradient norm left out (it feeds `train/grad_norm` and the divergence
           check, so the library keeps it; this measures what it costs)
  fusednorm  the norm without the optimization barrier of `step.grad_norm`, free to fuse
           into the gradient and Adam loops (what the library did before; slower on CPU)

The data are random uint8 images of the real shape (speed does not depend on the pixels);
`--num_train` shortens the epoch for slow models.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

OPTIONS = {"onednn": {"xla_cpu_use_onednn": True}}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default=str(ROOT / "configs" / "mnist_vae.py"))
  p.add_argument("--variants", nargs="+", default=["base", "onednn", "nonorm", "onednn+nonorm"])
  p.add_argument("--rounds", type=int, default=6, help="epochs per variant; the first is dropped")
  p.add_argument("--num_train", type=int, default=60000)
  args = p.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import numpy as np
  import optax
  from jax.sharding import NamedSharding, PartitionSpec as P
  from vae_jax import models, objectives, optim, step as step_lib, sweeps, trainer

  for v in args.variants:
    unknown = set(v.split("+")) - {"base", "nonorm", "fusednorm", *OPTIONS}
    if unknown:
      raise SystemExit(f"error: unknown variant part(s) {sorted(unknown)} in {v!r}: expected "
                       f"base, nonorm, fusednorm, {', '.join(OPTIONS)} joined by '+'")
  config = sweeps.load_module(args.config).get_config()
  shape = (28, 28, 1)
  mesh = trainer.make_mesh()
  replicated = NamedSharding(mesh, P())
  graphdef, params0, rest = models.init_params(config, shape)
  tx = optim.direction(config.optimizer)
  images = jax.device_put(np.random.default_rng(0).integers(0, 256, (args.num_train, *shape),
                                                            dtype=np.uint8), replicated)
  hparams = {f: jnp.array([float(config[f])], jnp.float32) for f in objectives.member_hparams(config)}
  seeds = jnp.array([config.seed], jnp.uint32)
  with_norm = step_lib.grad_norm
  norms = {"nonorm": lambda tree: jnp.float32(0.0), "fusednorm": optax.tree.norm}

  runs = {}
  for name in args.variants:
    parts = set(name.split("+"))
    step_lib.grad_norm = next((norms[p] for p in parts if p in norms), with_norm)
    options = {k: v for part in parts for k, v in OPTIONS.get(part, {}).items()}
    params = jax.tree.map(lambda a: jax.device_put(np.asarray(a)[None], replicated), params0)
    opt_state = jax.jit(jax.vmap(tx.init))(params)
    epoch = step_lib.build_train_epoch(graphdef=graphdef, rest=rest, tx=tx, mesh=mesh,
                                       config=config, image_shape=shape,
                                       num_train=args.num_train, num_members=1)
    compiled = epoch.lower(params, opt_state, images, hparams, seeds, jnp.int32(0)).compile(
        compiler_options=options or None)
    runs[name] = {"compiled": compiled, "state": (params, opt_state), "seconds": []}
  step_lib.grad_norm = with_norm

  for r in range(args.rounds):
    for run in runs.values():
      params, opt_state = run["state"]
      t0 = time.perf_counter()
      params, opt_state, metrics = run["compiled"](params, opt_state, images, hparams, seeds,
                                                   jnp.int32(r))
      jax.device_get(metrics)
      run["seconds"].append(time.perf_counter() - t0)
      run["state"] = (params, opt_state)

  examples = args.num_train // config.batch_size * config.batch_size
  out = {"benchmark": "cpu_flags_ab", "config": args.config, "num_train": args.num_train,
         "rounds": args.rounds, "jax_version": jax.__version__,
         "devices": [str(d) for d in jax.devices()]}
  for name, run in runs.items():
    steady = run["seconds"][1:] or run["seconds"]
    out[name] = {"examples_per_s_median": round(examples / statistics.median(steady)),
                 "examples_per_s_best": round(examples / min(steady)),
                 "seconds": [round(s, 3) for s in run["seconds"]]}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
