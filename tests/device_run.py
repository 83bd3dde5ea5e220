"""Helper for test_sharding: trains the tiny config on fake data on however many CPU devices
XLA_FLAGS gives this process and saves the final parameters and test metrics to an .npz.

    python -m tests.device_run OUT.npz WORKDIR [NUM_MEMBERS]     (from the repository root)
"""

import sys

import jax
import numpy as np

from tests.helpers import fake_dataset, final_params, tiny_config
from vae_jax import train


def main(out, workdir, num_members=1):
  ds = fake_dataset()
  configs = [tiny_config(num_epochs=2, beta=1.0 + m, seed=m) for m in range(num_members)]
  results = train.train_group(configs, [f"{workdir}/m{m}" for m in range(num_members)], dataset=ds)
  arrays = {"devices": np.array(jax.device_count())}
  for m, (c, r) in enumerate(zip(configs, results)):
    for i, leaf in enumerate(final_params(c, f"{workdir}/m{m}", ds)):
      arrays[f"m{m}_p{i}"] = leaf
    for k in ("test/neg_elbo", "test/rec", "test/kl", "train/loss"):
      arrays[f"m{m}_{k}"] = np.array(r[k])
  np.savez(out, **arrays)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
