"""Benchmark: the beta sweep trained vectorised (all members one vmapped program) vs one
member after another, same process, same epochs, on real MNIST. Prints one JSON object.

    VAE_JAX_MANUAL_DIR=/path/to/data python benchmarks/sweep_vectorised.py --epochs 2

Times exclude compilation (reported separately): `train/seconds` is the sum of the epoch
times of a launch, each epoch one dispatch of the precompiled scan.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top

from configs import mnist_beta  # pylint: disable=g-import-not-at-top
from vae_jax import data as data_lib, sweeps, train  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--members", type=int, default=8, help="first N betas of the sweep")
  args = parser.parse_args()

  base = mnist_beta.get_config()
  with base.unlocked():
    base.num_epochs = args.epochs
    base.wandb.mode = "disabled"
    base.checkpoint_every_epochs = args.epochs
  members = [sweeps.apply_overrides(base, o) for o in mnist_beta.get_sweep()[:args.members]]
  ds = data_lib.load(base.data)

  with tempfile.TemporaryDirectory() as tmp:
    vec = train.train_group(members, [f"{tmp}/v{i}" for i in range(len(members))], dataset=ds)
    seq = [train.train_group([c], [f"{tmp}/s{i}"], dataset=ds)[0] for i, c in enumerate(members)]

  vec_s = vec[0]["train/seconds"]
  one_s = seq[0]["train/seconds"]
  seq_s = sum(r["train/seconds"] for r in seq)
  print(json.dumps({
      "benchmark": "sweep_vectorised",
      "date": datetime.date.today().isoformat(),
      "machine": {"devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
                  "processor": platform.processor() or platform.machine(),
                  "jax": jax.__version__},
      "members": len(members), "epochs": args.epochs,
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
