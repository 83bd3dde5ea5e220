"""Seconds per disentanglement metric at disentanglement_lib's defaults, on a dSprites-sized grid.

    python -m benchmarks.disentanglement_metrics               # the study's sample counts
    python -m benchmarks.disentanglement_metrics --scale 0.1   # every count of points x 0.1

The ground truth is the full grid of dSprites' five factors (sizes 3, 6, 40, 32, 32: shape,
scale, orientation, x, y; 737,280 combinations) looked up through `factor_data_from_arrays`, the
"images" being the factor indices themselves. The representation is a fixed random linear map of
the standardised indices to 10 dimensions plus fixed Gaussian noise (std 0.1, the same for the
same point, as an encoder's output is), so the encoder costs next to nothing and the seconds are
the metrics' own: sampling, and above all the scikit-learn classifiers (DCI's gradient boosted
trees fit 100 stages x K trees for a factor of K values on 10,000 points, 113 classes in all).
DCI's per-factor classifiers run in threads, one per core; "dci_one_thread" is the same DCI with
one thread (same seed, so the same scores: "dci_threads_equal_one_thread" says whether they
are), for the speed-up in one run. "mig_chen" (not run by default: minutes on a CPU) is Chen et
al.'s MIG (`vae_jax.analysis.mig_chen`) over all 737,280 grid points, with the representation as
posterior means and its noise (std 0.1) as posterior std, 10,000 x scale sample points per set.
Prints one JSON line: per-metric wall seconds and CPU seconds, the scores, the CPU model
(/proc/cpuinfo) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import sklearn

from vae_jax.analysis import disentanglement as dis

FACTOR_SIZES = (3, 6, 40, 32, 32)
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def synthetic_dsprites(code_dim: int = 10, noise: float = 0.1, seed: int = 0):
  """(FactorData over the full dSprites grid, representation: indices -> code_dim codes)."""
  grid = np.stack(np.meshgrid(*[np.arange(s) for s in FACTOR_SIZES], indexing="ij"),
                  -1).reshape(-1, len(FACTOR_SIZES))
  data = dis.factor_data_from_arrays(grid.astype(np.float32), grid, FACTOR_SIZES, FACTOR_NAMES)
  sizes = np.asarray(FACTOR_SIZES, np.float64)
  mean, std = (sizes - 1) / 2, np.sqrt((sizes**2 - 1) / 12)
  w_FxD = np.random.default_rng(seed).normal(size=(len(sizes), code_dim)) / np.sqrt(len(sizes))
  # One fixed noise vector per grid point: deterministic, as an encoder's posterior mean is.
  noise_GxD = noise * np.random.default_rng(seed + 1).normal(size=(len(grid), code_dim))

  def representation(x):
    idx = np.asarray(x).astype(np.int64)
    z = (idx - mean) / std
    return z @ w_FxD + noise_GxD[np.ravel_multi_index(tuple(idx.T), FACTOR_SIZES)]

  return data, representation


def mig_chen_of_grid(representation, scale: float, seed: int) -> dict:
  """Chen et al.'s MIG of the synthetic code over the whole grid, q(z|x) = N(code, 0.1^2)."""
  from vae_jax.analysis import mig_chen  # pylint: disable=g-import-not-at-top
  grid = np.indices(FACTOR_SIZES).reshape(len(FACTOR_SIZES), -1).T
  mean = np.concatenate([representation(grid[i:i + 65536]) for i in range(0, len(grid), 65536)])
  logvar = np.full(mean.shape, 2 * np.log(0.1), np.float32)
  which = mig_chen.factors_used("dsprites", FACTOR_NAMES, grid)
  num_samples = max(2, int(round(mig_chen.NUM_SAMPLES * scale)))
  r = mig_chen.mig_chen(mean.astype(np.float32), logvar, grid, FACTOR_SIZES, which, seed=seed,
                        num_samples=num_samples)
  return {"mig_chen": r["mig_chen"]}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--scale", type=float, default=1.0, help="multiplies every count of points")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--metrics",
                 default="beta_vae,factor_vae,mig,dci,dci_one_thread,sap,modularity_explicitness")
  args = p.parse_args()
  data, representation = synthetic_dsprites()
  s = args.scale
  kw = lambda name: dis.scaled_defaults(name, s)
  runs = {
      "beta_vae": lambda rng: dis.beta_vae_score(data, representation, rng, **kw("beta_vae")),
      "factor_vae": lambda rng: dis.factor_vae_score(data, representation, rng,
                                                     **kw("factor_vae")),
      "mig": lambda rng: dis.mig(data, representation, rng, **kw("mig")),
      "dci": lambda rng: dis.dci(data, representation, rng, **kw("dci")),
      "dci_one_thread": lambda rng: {
          f"{k}:one_thread": v
          for k, v in dis.dci(data, representation, rng, **kw("dci"), n_jobs=1).items()},
      "sap": lambda rng: dis.sap(data, representation, rng, **kw("sap")),
      "modularity_explicitness": lambda rng: dis.modularity_explicitness(
          data, representation, rng, **kw("modularity_explicitness")),
      "mig_chen": lambda rng: mig_chen_of_grid(representation, s, args.seed),
  }
  seconds, cpu_seconds, scores = {}, {}, {}
  for name in args.metrics.split(","):
    t0, c0 = time.perf_counter(), time.process_time()
    scores.update(runs[name](np.random.default_rng(args.seed)))
    seconds[name] = round(time.perf_counter() - t0, 2)
    cpu_seconds[name] = round(time.process_time() - c0, 2)
    print(f"# {name}: {seconds[name]} s", file=sys.stderr, flush=True)
  same = [scores[k] == scores[k + ":one_thread"] for k in scores if k + ":one_thread" in scores]
  print(json.dumps({
      "benchmark": "disentanglement_metrics", "scale": s, "factor_sizes": FACTOR_SIZES,
      "code_dim": 10, "seconds": seconds, "total_seconds": round(sum(seconds.values()), 2),
      "cpu_seconds": cpu_seconds,
      "scores": {k: round(v, 4) for k, v in scores.items() if not k.endswith(":one_thread")},
      **({"dci_threads_equal_one_thread": all(same)} if same else {}),
      "cpu": cpu_model(), "num_cpus": os.cpu_count(),
      "load_average_1min": round(os.getloadavg()[0], 2),
      "sklearn": sklearn.__version__, "numpy": np.__version__,
      "python": platform.python_version(),
  }))


if __name__ == "__main__":
  main()
