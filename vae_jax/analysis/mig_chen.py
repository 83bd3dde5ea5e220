"""Chen et al.'s mutual information gap, as their code computes it: "disentanglement/mig_chen".

Chen, Li, Grosse & Duvenaud (2018), "Isolating Sources of Disentanglement in Variational
Autoencoders" (NeurIPS; arXiv:1802.04942), Sec. 5, and their code (rtqichen/beta-tcvae,
`disentanglement_metrics.py` with `metric_helpers/mi_metric.py`). `disentanglement/mig` stays
disentanglement_lib's version (posterior means, 20-bin histograms, 10,000 random points); this
module is the original, which works with the encoder's distributions q(z|x):

1. q(z|x_n) = N(mean_n, diag exp(logvar_n)) of every image n of the dataset (the whole training
   split: all 737,280 dSprites images), and one sample z_n ~ q(z|x_n) per image.
2. For a set X of images (the whole dataset, or the images with v_k = v), the entropy of each
   unit of the aggregate posterior q_X(z_j) = (1/|X|) sum_{n in X} q(z_j|x_n) is estimated as
       H_X(z_j) = -(1/S) sum_s log q_X(z_sj),
       log q_X(z_sj) = logsumexp_{n in X} log q(z_sj | x_n) - log |X|,
   over S = min(10,000, |X|) of the set's own samples z_s, drawn without replacement (their
   `estimate_entropies`: `randperm(...)[:10000]`), each evaluated against ALL posteriors of the
   set (no minibatch estimator).
3. H(z_j | v_k) = sum_v p(v_k = v) H_{v_k = v}(z_j), I(z_j; v_k) = H(z_j) - H(z_j | v_k) (nats).
4. Per factor k: the MIs sorted over units, clamped at 0, divided by log(factor size) (their
   `factor_entropies`, log 6, log 40, log 32, log 32 on dSprites: the entropy of a uniform
   factor), and MIG = mean over factors of (best - second best).

Factors: on dSprites scale, orientation, position x and position y, Chen et al.'s choice (shape,
a categorical factor, is not among them); on any other dataset every factor that takes more than
one value in the training split. A deterministic AE has no q(z|x): it gets no number
(`unavailable_reason`), and neither does a dataset without such a factor.

Where this generalises their dSprites code: p(v_k = v) is the value's share of the images (their
1/6, 1/40, 1/32 on the complete dSprites grid, where every value holds N / size images); with a
single latent unit the second best MI is 0 (their code would index out of range). The MI matrix
(`mi_nats`, units x factors, before clamping) is returned too: it names the factor each unit
carries.

Computation: float32, in JAX, on whatever device JAX uses. Per set, sample points are processed
`chunk` at a time against the set's posteriors in blocks of `block` (the set is padded to a
multiple of `block` with rows that carry no mass), so memory stays O(Z N) for the posteriors
(N = 737,280, Z = 10: 59 MB for means and log-variances) plus O(Z chunk block) of work space:
log q(z_sj | x_n) is never materialised for all n. log q is -0.5 (log 2 pi + logvar) - r^2 with
r = (z - mean) exp(-logvar / 2) / sqrt 2; the sum of exp over n is taken after subtracting the
largest -0.5 (log 2 pi + logvar) of the set (no term exceeds 1), and a chunk where that sum
underflows to 0 (log-variances spread over more than about 200 nats within one unit) is redone
with an exact two-pass logsumexp.

Cost: every sample is compared with every posterior of its set, i.e. about
(1 + number of factors) * S * N * Z Gaussian terms: 5 * 10^4 * 737,280 * 10 = 3.7e11 on
dSprites, each a subtraction, two multiplications, an exp and an add. Measured with random
posteriors of the full dSprites size (N = 737,280, Z = 10, its factor grid from np.indices, the
four factors, S = 10,000; `mig_chen` alone, without encoding the images) on the 2-core
development machine (`lscpu`: "Intel(R) Xeon(R) Processor", AVX-512, JAX 0.10.2 on CPU, whose
YNNPACK fusion keeps both cores busy): 295 and 394 CPU-seconds in two runs (the same MIG to the
last bit), i.e. about 2.5 to 3.3 minutes of wall time with both cores free; the runs themselves
took 12 and 42 minutes of wall time, because other jobs kept the load average at 9 to 17 on the
two cores. 1,000 samples per set instead of 10,000: 59 CPU-seconds. The float32 sums agree with
float64 to 1e-6 nats at this size. `python -m benchmarks.disentanglement_metrics --metrics
mig_chen` times the same computation on a synthetic dSprites code. A GPU does it in seconds.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import latents

NUM_SAMPLES = 10_000  # their estimate_entropies(n_samples=10000)
# The key of the z samples is fold_in(key(seed), SALT); the sample subsets come from
# np.random.default_rng([seed, SALT]).
SALT = 0x31C
CHUNK = 128  # sample points per step
BLOCK = 512  # posteriors per block; sets are padded to a multiple of it
# Factors Chen et al. leave out, by dataset ("tfds:" prefix stripped): on dSprites they use
# scale, orientation and the two positions, not the shape.
LEFT_OUT = {"dsprites": frozenset({"shape", "label_shape"})}

_LOG_2PI = math.log(2.0 * math.pi)


class Unavailable(ValueError):
  """Chen et al.'s MIG is undefined here (an AE, or no factor with more than one value)."""


# --------------------------------------------------------------------------------------------
# Which factors, and whether the metric exists at all.


def factors_used(dataset_name: str, factor_names: Sequence[str],
                 factors_NxF: np.ndarray) -> tuple[int, ...]:
  """Indices of the factors the metric averages over: every factor that takes more than one
  value, except those Chen et al. leave out on that dataset (dSprites: the shape)."""
  factors_NxF = np.asarray(factors_NxF).reshape(len(factors_NxF), -1)
  left_out = LEFT_OUT.get(str(dataset_name).split(":")[-1], frozenset())
  return tuple(k for k, name in enumerate(factor_names)
               if name not in left_out and len(np.unique(factors_NxF[:, k])) > 1)


def unavailable_reason(model, ds) -> str | None:
  """Why a model on a dataset gets no mig_chen (None: it gets one)."""
  if not getattr(model, "stochastic", True):
    return ("an AE has no posterior q(z|x): Chen et al.'s MIG needs a sampled z and the "
            "density q(z_j|x) of every image")
  factors = ds.factors("train")
  if not factors_used(ds.name, ds.factor_names, factors):
    return f"no factor of {ds.name!r} takes more than one value in its training split"
  return None


# --------------------------------------------------------------------------------------------
# The estimator.


def sample_codes(mean_NxZ, logvar_NxZ, seed: int) -> jax.Array:
  """One z ~ q(z|x_n) per row: mean + exp(logvar / 2) * eps, eps ~ N(0, I) from the seed."""
  mean = jnp.asarray(mean_NxZ, jnp.float32)
  key = jax.random.fold_in(jax.random.key(seed), SALT)
  eps = jax.random.normal(key, mean.shape, jnp.float32)
  return mean + jnp.exp(0.5 * jnp.asarray(logvar_NxZ, jnp.float32)) * eps


def sample_sets(factors_NxF: np.ndarray, which: Sequence[int], num_samples: int,
                seed: int) -> list[tuple[int | None, int, np.ndarray, np.ndarray]]:
  """The sets whose entropies are estimated, in order, with their sample points.

  Returns [(factor k or None for the whole dataset, value v, rows of the set, positions within
  the set of its S = min(num_samples, set size) sample points)], the whole dataset first, then
  each factor of `which` value by value. The positions are the first S of a random permutation
  of the set (their `torch.randperm(n)[:n_samples]`), from np.random.default_rng([seed, SALT]).
  """
  factors_NxF = np.asarray(factors_NxF).reshape(len(factors_NxF), -1)
  rng = np.random.default_rng([seed, SALT])
  n = len(factors_NxF)
  out = [(None, 0, np.arange(n), rng.permutation(n)[:num_samples])]
  for k in which:
    for v in np.unique(factors_NxF[:, k]):
      rows = np.flatnonzero(factors_NxF[:, k] == v)
      out.append((int(k), int(v), rows, rng.permutation(len(rows))[:num_samples]))
  return out


def _terms(z_ZxC, a_ZxKxB, s_ZxKxB, mu_ZxKxB):
  """log q(z_cj | x_n) (minus the set's shift in a): shape (Z, K, C, B)."""
  r = (z_ZxC[:, None, :, None] - mu_ZxKxB[:, :, None, :]) * s_ZxKxB[:, :, None, :]
  return a_ZxKxB[:, :, None, :] - r * r


@functools.partial(jax.jit, static_argnames=("chunk", "block"))
def _log_mixture_density(z_SxZ, mean_MxZ, logvar_MxZ, num_valid, *, chunk: int, block: int):
  """log (1/m) sum_{n < m} q(z_sj | x_n) for every sample s and unit j: (S, Z), m = num_valid.

  S must be a multiple of `chunk` and M of `block`; rows n >= num_valid are padding."""
  num_rows, num_units = mean_MxZ.shape
  valid_M = jnp.arange(num_rows) < num_valid
  a_MxZ = jnp.where(valid_M[:, None], -0.5 * (_LOG_2PI + logvar_MxZ), -jnp.inf)
  shift_Z = jnp.max(a_MxZ, axis=0)
  s_MxZ = jnp.where(valid_M[:, None], jnp.exp(-0.5 * logvar_MxZ) * math.sqrt(0.5), 0.0)
  mu_MxZ = jnp.where(valid_M[:, None], mean_MxZ, 0.0)
  blocks = lambda x: x.T.reshape(num_units, num_rows // block, block)  # (Z, K, B)
  a_shifted, a_raw = blocks(a_MxZ - shift_Z), blocks(a_MxZ)
  s, mu = blocks(s_MxZ), blocks(mu_MxZ)

  def step(z_CxZ):
    z = z_CxZ.T
    fast = jnp.log(jnp.sum(jnp.exp(_terms(z, a_shifted, s, mu)), axis=(1, 3))) + shift_Z[:, None]
    exact = lambda: jax.nn.logsumexp(_terms(z, a_raw, s, mu), axis=(1, 3))
    return jax.lax.cond(jnp.all(jnp.isfinite(fast)), lambda: fast, exact)  # (Z, C)

  out_KxZxC = jax.lax.map(step, z_SxZ.reshape(-1, chunk, num_units))
  log_sum = jnp.transpose(out_KxZxC, (0, 2, 1)).reshape(-1, num_units)
  return log_sum - jnp.log(num_valid.astype(jnp.float32))


def _pad_to(rows: np.ndarray, multiple: int) -> np.ndarray:
  pad = -len(rows) % multiple
  return np.concatenate([rows, np.full(pad, rows[0], rows.dtype)]) if pad else rows


def set_entropies(z_NxZ, mean_NxZ, logvar_NxZ, rows: np.ndarray, positions: np.ndarray, *,
                  chunk: int = CHUNK, block: int = BLOCK) -> jax.Array:
  """H_X(z_j), (Z,), of the set X = `rows`, from the samples z[rows[positions]] (a device
  array; nothing waits for it, so sets queue up on the device)."""
  rows = np.asarray(rows, np.int64)
  chunk = min(chunk, len(positions))  # no padding work for small sets
  set_rows = jnp.asarray(_pad_to(rows, block))
  sample_rows = jnp.asarray(_pad_to(rows[np.asarray(positions)], chunk))  # padding repeats one
  log_q = _log_mixture_density(z_NxZ[sample_rows], mean_NxZ[set_rows], logvar_NxZ[set_rows],
                               jnp.asarray(len(rows), jnp.int32), chunk=chunk, block=block)
  return -jnp.mean(log_q[:len(positions)], axis=0)


def mig_from_mi(mi_ZxF: np.ndarray, factor_sizes_F: Sequence[int]) -> float:
  """Their `compute_metric_shapes`: per factor, sort the units' MI, clamp at 0, divide by
  log(factor size); the mean over factors of best - second best."""
  mi = np.clip(-np.sort(-np.asarray(mi_ZxF, np.float64), axis=0), 0.0, None)
  normed = mi / np.log(np.asarray(factor_sizes_F, np.float64))[None, :]
  second = normed[1] if len(normed) > 1 else np.zeros(normed.shape[1])
  return float(np.mean(normed[0] - second))


def mig_chen(mean_NxZ, logvar_NxZ, factors_NxF, factor_sizes: Sequence[int],
             which: Sequence[int] | None = None, *, seed: int = 0,
             num_samples: int = NUM_SAMPLES, chunk: int = CHUNK, block: int = BLOCK) -> dict:
  """Chen et al.'s MIG of Gaussian posteriors (see the module docstring).

  Args:
    mean_NxZ, logvar_NxZ: q(z|x_n) of every image of the dataset.
    factors_NxF: integer factor values of each image.
    factor_sizes: each factor's number of values (its log normalises the MI).
    which: the factors to average over (default: every factor with more than one value).
    seed: the z samples (`sample_codes`) and the sample points of each set (`sample_sets`).
    num_samples: S, sample points per set (Chen et al.: 10,000).
    chunk, block: the work split (results do not depend on them beyond float rounding).

  Returns {"mig_chen": float, "mi_nats": (Z, len(which)) MI before clamping, "factors": which,
  "marginal_entropy": (Z,), "conditional_entropy": (Z, len(which)), "seconds": float}.
  Raises `Unavailable` when no factor is left to average over.
  """
  t0 = time.perf_counter()
  factors_NxF = np.asarray(factors_NxF).reshape(len(factors_NxF), -1)
  mean = jnp.asarray(mean_NxZ, jnp.float32)
  logvar = jnp.asarray(logvar_NxZ, jnp.float32)
  if mean.ndim != 2 or mean.shape != logvar.shape or len(mean) != len(factors_NxF):
    raise ValueError(f"expected (N, Z) means and log-variances for N = {len(factors_NxF)} "
                     f"images, got {mean.shape} and {logvar.shape}")
  if which is None:
    which = tuple(k for k in range(factors_NxF.shape[1])
                  if len(np.unique(factors_NxF[:, k])) > 1)
  which = tuple(int(k) for k in which)
  if not which or any(int(factor_sizes[k]) < 2 for k in which):
    raise Unavailable("Chen et al.'s MIG needs at least one factor with more than one value")
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  z = sample_codes(mean, logvar, seed)
  n = len(factors_NxF)
  marginal = None
  conditional = {k: [] for k in which}  # factor -> [(weight, entropies)]
  for k, _, rows, positions in sample_sets(factors_NxF, which, num_samples, seed):
    h = set_entropies(z, mean, logvar, rows, positions, chunk=chunk, block=block)
    if k is None:
      marginal = h
    else:
      conditional[k].append((len(rows) / n, h))
  marginal_Z = np.asarray(marginal, np.float64)
  cond_ZxF = np.stack([sum(w * np.asarray(h, np.float64) for w, h in conditional[k])
                       for k in which], axis=1)
  mi_ZxF = marginal_Z[:, None] - cond_ZxF
  sizes = [int(factor_sizes[k]) for k in which]
  return {"mig_chen": mig_from_mi(mi_ZxF, sizes), "mi_nats": mi_ZxF, "factors": which,
          "marginal_entropy": marginal_Z, "conditional_entropy": cond_ZxF,
          "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------
# A trained model on a dataset.


def posteriors(model, ds, *, batch: int = 2000) -> tuple[np.ndarray, np.ndarray]:
  """(mean, logvar) of q(z|x), float32 (N, Z) each, of every image of the training split."""
  n = len(ds.factors("train"))
  parts = [latents.encode_posteriors(model, ds.images("train", slice(i, i + batch)), batch)
           for i in range(0, n, batch)]  # chunks: dSprites' split is stored bit-packed
  return tuple(np.concatenate(column) for column in zip(*parts))


def mig_chen_of_model(model, ds, *, seed: int = 0, num_samples: int = NUM_SAMPLES,
                      batch: int = 2000) -> dict:
  """`mig_chen` of a VAE's posteriors on its dataset's whole training split, over
  `factors_used` (dSprites: scale, orientation, x, y). Raises `Unavailable` with the reason
  for an AE or a dataset without a factor that varies. The dict adds "factor_names" and
  "encode_seconds"."""
  reason = unavailable_reason(model, ds)
  if reason:
    raise Unavailable(reason)
  t0 = time.perf_counter()
  mean, logvar = posteriors(model, ds, batch=batch)
  encode_seconds = time.perf_counter() - t0
  factors = ds.factors("train")
  sizes = tuple(ds.factor_sizes) or tuple(int(m) + 1 for m in factors.max(0))
  which = factors_used(ds.name, ds.factor_names, factors)
  out = mig_chen(mean, logvar, factors, sizes, which, seed=seed, num_samples=num_samples)
  out["factor_names"] = tuple(ds.factor_names[k] for k in which)
  out["encode_seconds"] = encode_seconds
  return out
