"""Benchmark: the β-TCVAE's minibatch estimates of log q(z), two formulations, one process.

    python -m benchmarks.tc_estimator [--batch_sizes 256 2048] [--latents 10] [--repeats 5]
                                      [--train_steps 8]

The β-TCVAE penalises total correlation through log q(z_i) and log q(z_id): logsumexps over
the batch of log w_ij + log q(z_i | n_j), jointly and per latent dimension
(`vae_jax/objectives/kl_decomposition.py`). This times their value and gradient with respect to
the posterior means, log-variances and samples, as a training step needs them, at each batch
size B (posteriors of a random but realistic spread; the time does not depend on the values):

  direct        the logsumexps written over the (B, B, Z) array of `pairwise_log_density`,
                differentiated by autodiff: the form before 2026-12-05.
  batch_log_qz  `kl_decomposition.batch_log_qz`, what the objective calls now: one (B, B)
                slice per latent dimension in a scan, its gradient written out (custom VJP).

Both run interleaved (A, B, A, B, ...) so a busy spell hits both; the first round is dropped
and the median of the rest reported. Every result carries the largest difference of the
values and gradients between the two, relative to the largest entry.

`--train_steps N` also times the real training epoch (`step.build_train_epoch`, bit-packed
dSprites batches) of configs/dsprites_chen.py:cpu2048's `tcvae_mss` member, its `beta_vae`
member (the same network without the estimate) and `tcvae_mss` again with the direct form
swapped in, each on N batches, and extrapolates to one epoch of 737,280 images (0: skip).

Prints one JSON object with the CPU model, jax version, load average before and after, and the
CPU seconds the process used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import time

import numpy as np

from benchmarks import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATASET_SIZE = 737_280  # dSprites


def direct_log_qz(mean, logvar, z, log_w):
  """The estimates written over the (B, B, Z) pairwise densities (autodiff's gradient)."""
  import jax  # pylint: disable=g-import-not-at-top
  from vae_jax.objectives import kl_decomposition as kd
  pair = kd.pairwise_log_density(mean, logvar, z)
  return (jax.nn.logsumexp(pair.sum(-1) + log_w, axis=1),
          jax.nn.logsumexp(pair + log_w[:, :, None], axis=1))


def time_estimates(batch_sizes, latents, repeats, seed=0) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from vae_jax.objectives import kl_decomposition as kd

  forms = {"direct": direct_log_qz, "batch_log_qz": kd.batch_log_qz}
  out = []
  for b in batch_sizes:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(b, latents)).astype(np.float32)
    logvar = (rng.normal(size=(b, latents)) - 2.0).astype(np.float32)
    z = (mean + np.exp(0.5 * logvar) * rng.normal(size=(b, latents))).astype(np.float32)
    log_w = kd.log_importance_weights(b, DATASET_SIZE, "mss")
    g_qz = jnp.asarray(rng.normal(size=b), jnp.float32)
    g_qzj = jnp.asarray(rng.normal(size=(b, latents)), jnp.float32)
    # Everything an argument: XLA would constant-fold a captured (B, B) array for seconds.
    args = (mean, logvar, z, log_w, g_qz, g_qzj)
    compiled, results = {}, {}
    for name, fn in forms.items():
      def loss(mean, logvar, z, log_w, g_qz, g_qzj, fn=fn):
        log_qz, log_qzj = fn(mean, logvar, z, log_w)
        return jnp.sum(g_qz * log_qz) + jnp.sum(g_qzj * log_qzj)
      compiled[name] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(
          *args).compile()
      results[name] = jax.block_until_ready(compiled[name](*args))
    times = {name: [] for name in forms}
    for _ in range(repeats + 1):
      for name in forms:
        t0 = time.perf_counter()
        jax.block_until_ready(compiled[name](*args))
        times[name].append(time.perf_counter() - t0)
    ref_value, ref_grads = results["direct"]
    value, grads = results["batch_log_qz"]
    rel = max([abs(float(value - ref_value)) / max(abs(float(ref_value)), 1e-30)] + [
        float(jnp.max(jnp.abs(g - r)) / jnp.max(jnp.abs(r))) for g, r in zip(grads, ref_grads)])
    med = {name: statistics.median(t[1:]) for name, t in times.items()}
    out.append({"batch_size": b, "latents": latents,
                "seconds": {name: round(s, 5) for name, s in med.items()},
                "ratio_direct_over_batch_log_qz": round(med["direct"] / med["batch_log_qz"], 2),
                "max_relative_difference": float(f"{rel:.2e}")})
  return out


def time_training_epochs(steps: int) -> list[dict]:
  """The real train epoch of configs/dsprites_chen.py:cpu2048's two members on `steps` batches,
  and the β-TCVAE's once more with `batch_log_qz` swapped for the direct form."""
  from vae_jax import data as data_lib, sweeps  # pylint: disable=g-import-not-at-top
  from vae_jax.objectives import kl_decomposition as kd
  module = sweeps.load_module(str(ROOT / "configs/dsprites_chen.py"))
  ds = data_lib.load(module.get_config("cpu2048").data)  # the same data for every member
  fast = kd.batch_log_qz
  out = []
  try:
    for member, form in (("tcvae_mss", "batch_log_qz"), ("beta_vae", None),
                         ("tcvae_mss", "direct")):
      kd.batch_log_qz = direct_log_qz if form == "direct" else fast
      c = sweeps.apply_overrides(module.get_config("cpu2048"),
                                 module.get_sweep("cpu2048")[member])
      out.append({"config": f"configs/dsprites_chen.py:cpu2048 --member={member}",
                  "log_qz_form": form, **common.time_train_epoch(c, ds, steps)})
  finally:
    kd.batch_log_qz = fast
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch_sizes", type=int, nargs="+", default=[256, 2048])
  parser.add_argument("--latents", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after a dropped one)")
  parser.add_argument("--train_steps", type=int, default=8,
                      help="steps of the real train epoch to time per member (0: skip)")
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  start = datetime.datetime.now().astimezone()
  load_before = os.getloadavg()
  estimates = time_estimates(args.batch_sizes, args.latents, args.repeats)
  epochs = time_training_epochs(args.train_steps) if args.train_steps else []
  print(json.dumps({
      "benchmark": "tc_estimator",
      "date": start.isoformat(timespec="seconds"),
      "dataset_size": DATASET_SIZE,
      "repeats": args.repeats,
      "estimates": estimates,
      "train_epochs": epochs,
      "cpu": common.cpu_model(),
      "jax": jax.__version__,
      "devices": [str(d) for d in jax.devices()],
      "load_average_before": [round(x, 2) for x in load_before],
      "load_average_after": [round(x, 2) for x in os.getloadavg()],
      "cpu_seconds_total": round(common.cpu_seconds(), 1),
  }, indent=1))


if __name__ == "__main__":
  main()
