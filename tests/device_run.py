"""Helper for test_sharding: trains the tiny config on fake data on however many CPU devices
XLA_FLAGS gives this process, once per objective, and saves the final parameters and test
metrics to an .npz (keys "<objective>_m<member>_...").

    python -m tests.device_run OUT.npz WORKDIR [NUM_MEMBERS [OBJECTIVE,...]]   (from the repository root)
"""

import sys

import jax
import numpy as np

from tests.helpers import fake_dataset, final_params, tiny_config
from vae_jax import trainer


def main(out, workdir, num_members=1, objectives="elbo"):
  ds = fake_dataset()
  arrays = {"devices": np.array(jax.device_count())}
  for objective in objectives.split(","):
    # The disentangling objectives weight their own KL terms: beta stays 1 for them. One epoch
    # of them (8 steps) is enough to see batch statistics taken per device.
    configs = [tiny_config(num_epochs=2 if objective == "elbo" else 1, objective=objective, seed=m,
                           beta=1.0 + m if objective == "elbo" else 1.0)
               for m in range(num_members)]
    dirs = [f"{workdir}/{objective}_m{m}" for m in range(num_members)]
    results = trainer.train_group(configs, dirs, dataset=ds)
    for m, (c, r, d) in enumerate(zip(configs, results, dirs)):
      for i, leaf in enumerate(final_params(c, d, ds)):
        arrays[f"{objective}_m{m}_p{i}"] = leaf
      for k in ("test/neg_elbo", "test/rec", "test/kl", "train/loss"):
        arrays[f"{objective}_m{m}_{k}"] = np.array(r[k])
  np.savez(out, **arrays)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], *(int(a) if a.isdigit() else a for a in sys.argv[3:]))
