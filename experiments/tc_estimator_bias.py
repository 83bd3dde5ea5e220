"""How far the β-TCVAE's minibatch estimates of total correlation are from the exact value.

    python experiments/tc_estimator_bias.py --workdir runs/dsprites_chen_cpu/tcvae_mss
    python experiments/tc_estimator_bias.py --workdir DIR --batch 256 --batch 2048 --repeats 4

The β-TCVAE (Chen et al., 2018) penalises β times an estimate of the total correlation
KL(q(z) || Π_j q(z_j)) of the aggregate posterior, with log q(z) and log q(z_j) estimated from
the batch's posteriors ("mss": minibatch stratified sampling; "mws": minibatch weighted
sampling; `vae_jax.objectives.beta_tcvae.decomposition`). This script takes a finished run of
any one-layer VAE on a dataset, draws `--repeats` random training batches of each `--batch`
size, one z ~ q(z|x) per image, and prints both estimators' TC next to the run's exact
`test/total_correlation` (the test split's aggregate posterior, evaluated over all its images:
`objectives.kl_decomposition`). Output: one JSON object on stdout.

A total correlation is never negative: an estimate below zero, or one that moves with the batch
size, is bias, and what the objective's β then pushes on is that estimate, not the quantity.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="a finished run of a one-layer VAE")
  p.add_argument("--batch", type=int, action="append", default=None,
                 help="batch sizes to estimate at (repeatable; default 256, 2048, 8192)")
  p.add_argument("--repeats", type=int, default=4, help="random batches per size")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  batches = args.batch or [256, 2048, 8192]
  if args.repeats < 1 or any(b < 2 for b in batches):
    print("error: --repeats must be >= 1 and every --batch >= 2", file=sys.stderr)
    return 2

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  import vae_jax  # pylint: disable=g-import-not-at-top
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from vae_jax.objectives import beta_tcvae  # pylint: disable=g-import-not-at-top

  try:
    run = vae_jax.load(args.workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  ds = run.dataset
  num_train = len(ds.train_images)  # rows (bit-packed for dSprites: never unpacked whole)
  if any(b > num_train for b in batches):
    print(f"error: every --batch must be at most the training split's {num_train} images",
          file=sys.stderr)
    return 2
  rng = np.random.default_rng(args.seed)
  out = {"workdir": str(args.workdir), "num_train": num_train,
         "exact_test_total_correlation": run.results.get("test/total_correlation"),
         "estimates": {}}
  for estimator in beta_tcvae.ESTIMATORS:
    for b in batches:
      values = []
      for r in range(args.repeats):
        rows = np.sort(rng.choice(num_train, b, replace=False))
        x = jnp.asarray(ds.images("train", rows), jnp.float32) / 255.0
        with jax.default_matmul_precision("float32"):
          mean, logvar = run.model.encode(x)
          eps = jax.random.normal(jax.random.key(args.seed * 1000 + r), mean.shape)
          z = mean + jnp.exp(0.5 * logvar) * eps
          _, tc, _, _ = beta_tcvae.decomposition(mean, logvar, z, num_train, estimator)
        values.append(round(float(tc), 4))
      out["estimates"][f"{estimator}/batch_{b}"] = values
  print(json.dumps(out, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
