"""Benchmark: a beta sweep trained vectorised (all members one vmapped program) vs one member
after another, same process, same epochs. Prints one JSON object.

    VAE_JAX_MANUAL_DIR=/path/to/data python -m benchmarks.sweep_vectorised --epochs 2
    python -m benchmarks.sweep_vectorised --config configs/dsprites_beta.py --epochs 1 --max_train 73728

`--config` is any config whose sweep varies shape-preserving fields only (default the MNIST beta
sweep, `configs/mnist_beta.py`; `configs/dsprites_beta.py` is the six-beta dSprites study);
`--max_train` keeps the first N training images (dSprites' 737,280 make long epochs on a CPU).

Times exclude compilation (reported separately): `train/seconds` is the sum of the epoch
times of a launch, each epoch one dispatch of the precompiled scan.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import tempfile

import jax

from vae_jax import data as data_lib, sweeps, trainer


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--members", type=int, default=8, help="first N members of the sweep")
  parser.add_argument("--config", default="configs/mnist_beta.py")
  parser.add_argument("--max_train", type=int, default=0, help="first N training images (0: all)")
  args = parser.parse_args()

  module = sweeps.load_module(args.config)
  base = module.get_config()
  with base.unlocked():
    base.num_epochs = args.epochs
    base.wandb.mode = "disabled"
    base.checkpoint_every_epochs = args.epochs
    base.eval_disentanglement = False  # training time only
  members = [sweeps.apply_overrides(base, o)
             for _, o in sweeps.named_members(sweeps.sweep_of(module))[:args.members]]
  ds = data_lib.load(base.data)
  if args.max_train:
    ds = dataclasses.replace(ds, train_images=ds.train_images[:args.max_train],
                             train_labels=ds.train_labels[:args.max_train])

  with tempfile.TemporaryDirectory() as tmp:
    vec = trainer.train_group(members, [f"{tmp}/v{i}" for i in range(len(members))], dataset=ds)
    seq = [trainer.train_group([c], [f"{tmp}/s{i}"], dataset=ds)[0] for i, c in enumerate(members)]

  vec_s = vec[0]["train/seconds"]
  one_s = seq[0]["train/seconds"]
  seq_s = sum(r["train/seconds"] for r in seq)
  print(json.dumps({
      "benchmark": "sweep_vectorised",
      "date": datetime.date.today().isoformat(),
      "machine": {"devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
                  "processor": platform.processor() or platform.machine(),
                  "jax": jax.__version__},
      "config": args.config, "members": len(members), "epochs": args.epochs,
      "train_images": len(ds.train_images),
      "vectorised_seconds": round(vec_s, 2),
      "vectorised_compile_seconds": round(vec[0]["train/compile_seconds"], 2),
      "sequential_seconds": round(seq_s, 2),
      "sequential_compile_seconds": round(sum(r["train/compile_seconds"] for r in seq), 2),
      "one_member_seconds": round(one_s, 2),
      "vectorised_over_one_member": round(vec_s / one_s, 3),
      "sequential_over_vectorised": round(seq_s / vec_s, 3),
      "max_abs_neg_elbo_difference": max(abs(v["test/neg_elbo"] - s["test/neg_elbo"])
                                         for v, s in zip(vec, seq)),
  }, indent=2))


if __name__ == "__main__":
  main()
