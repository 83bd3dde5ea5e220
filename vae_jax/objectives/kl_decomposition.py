"""The ELBO's KL term split into index-code MI, total correlation and dimension-wise KL.

Chen et al. (2018), "Isolating Sources of Disentanglement in Variational Autoencoders"
(NeurIPS; arXiv:1802.04942), eq. (2): with data indices n uniform over a dataset of N points,
q(z, n) = q(z|n) / N and the aggregate posterior q(z) = (1/N) Σ_n q(z|n),

  E_n KL(q(z|n) || p(z)) = I_q(z; n)                          index-code mutual information
                         + KL(q(z) || Π_j q(z_j))              total correlation
                         + Σ_j KL(q(z_j) || p(z_j))            dimension-wise KL,

i.e. per sample z ~ q(z|n) the telescoping sum of [log q(z|n) - log q(z)],
[log q(z) - log Π_j q(z_j)] and [log Π_j q(z_j) - log p(z)]. q(z) and its marginals are sums over
the whole dataset; a minibatch of B posteriors estimates them (Sec. 4 and Appendix C of the
paper). For sample z_i of batch element i, with log q(z_i|n_j) evaluated against every batch
element j (per dimension for the marginals):

* minibatch weighted sampling, "mws":  log q(z_i) ≈ logsumexp_j log q(z_i|n_j) - log(N B).
  This is the paper's (and the authors' code's) estimator. It is biased low: it is meant for
  gradients, where the constant does not matter. When the batch is the whole dataset (B = N) it
  is exactly log q(z_i) - log B, and the log Π_j q(z_ij) estimate is exactly
  log Π_j q(z_ij) - Z log B, so the total correlation comes out (Z - 1) log B too high.
* minibatch stratified sampling, "mss":  log q(z_i) ≈ logsumexp_j [log w_ij + log q(z_i|n_j)] with
  w_ii = 1/N (the sample's own posterior), w_ij = (N - B + 1) / (N (B - 1)) for one other element
  j = i + 1 (mod B), and w_ij = 1/(B - 1) for the remaining B - 2. These are the weights of the
  paper's appendix. Each row sums to 1, and for a batch made of n_i and B - 1 other indices
  drawn without replacement, E[Σ_j w_ij q(z|n_j)] = q(z) exactly for any z: the estimate of
  q(z) (not of its log) is unbiased. For B = N it is NOT exactly q(z) (the weights of the other
  points are 1/(N-1) and 1/(N(N-1)) instead of 1/N), only unbiased over the order of the batch;
  as B grows the estimates approach log q(z).
* the authors' code's matrix, "mss_rtqichen": the weights that rtqichen/beta-tcvae's
  `_log_importance_weight_matrix` (`vae_quant.py`) builds for its `--mss` runs, as do the
  implementations that copied the function. It means to put 1/N on the diagonal
  and the stratum weight beside it, but sets them through a flat view with a stride of B where
  the diagonal's is B + 1 (rtqichen/beta-tcvae pull request #1 reports it): so 1/N lands in
  column 0 and the stratum weight in column 1 of every row (and at (B - 2, 0)), and every other
  entry, the diagonal from row 2 on included, is 1/(B - 1). A sample's own posterior then
  weighs 1/(B - 1) instead of 1/N, some 360 times more at N = 737,280 and B = 2,048: log q(z_i)
  is dominated by log q(z_i|n_i) - log(B - 1), and the "total correlation" this penalises is
  close to log q(z_i|n_i) - Σ_d log q(z_id), which a wider posterior lowers. ("mws", their
  default, also weighs a sample's own posterior like every other element's.)

The same weights serve log Π_j q(z_j): each dimension's marginal q(z_ij) is estimated the same
way from the one-dimensional posteriors and the logs are summed.

For evaluation no estimator is needed: `decompose_over_dataset` evaluates q(z) and its
marginals against every posterior of a finite set (the test split), exactly, at one sample per
point of a fixed random subset (`evaluation_points`); the training loop logs it as test/index_code_mi, test/total_correlation and
test/dimwise_kl. All functions are pure JAX
(`log_qz_estimates` and `decompose` are jitted with `dataset_size` and `estimator` static;
`log_qz_terms` is the un-jitted body that the β-TCVAE objective, `beta_tcvae.py`, calls).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

ESTIMATORS = ("mss", "mws", "mss_rtqichen")
_LOG_2PI = math.log(2.0 * math.pi)
# The smallest shifted sum `batch_log_qz` trusts: float32 keeps full precision above ~1e-38.
_SAFE_SUM = 1e-30


def gaussian_log_density(z, mean, logvar):
  """Elementwise log N(z; mean, exp(logvar)) (broadcasting)."""
  return -0.5 * (_LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar))


def pairwise_log_density(mean_BxZ, logvar_BxZ, z_BxZ):
  """log q(z_i,d | n_j) for every sample i, batch element j and dimension d: shape (B, B, Z)."""
  return gaussian_log_density(z_BxZ[:, None, :], mean_BxZ[None, :, :], logvar_BxZ[None, :, :])


def log_importance_weights(batch_size: int, dataset_size: int, estimator: str = "mss",
                           dtype=jnp.float32):
  """(B, B) log weights log w_ij of batch element j in the estimate of q(z_i) (see module doc).

  "mws": log(1 / (N B)) everywhere. "mss": log(1/N) on the diagonal, log((N - B + 1)/(N (B - 1)))
  at (i, i + 1 mod B), log(1/(B - 1)) elsewhere; needs 2 <= B <= N. (For B = 2 the one other
  element is the (i + 1) one, with weight (N - 1)/N.) "mss_rtqichen": the authors' code's
  matrix (module doc): 1/N in column 0, the stratum weight in column 1 and at (B - 2, 0),
  1/(B - 1) elsewhere.
  """
  b = int(batch_size)
  n = jnp.asarray(dataset_size, dtype)
  if estimator == "mws":
    return jnp.full((b, b), -jnp.log(n * b), dtype)
  if estimator not in ("mss", "mss_rtqichen"):
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
  if b < 2:
    raise ValueError("minibatch stratified sampling needs a batch of at least 2")
  if not isinstance(dataset_size, jax.Array) and dataset_size < b:
    raise ValueError(f"dataset_size {dataset_size} is smaller than the batch size {b}")
  stratum = (n - b + 1.0) / (n * (b - 1.0))
  if estimator == "mss_rtqichen":
    row, col = jnp.arange(b)[:, None], jnp.arange(b)[None, :]
    w = jnp.where(col == 0, 1.0 / n, jnp.where(col == 1, stratum, 1.0 / (b - 1.0)))
    return jnp.log(jnp.where((row == b - 2) & (col == 0), stratum, w).astype(dtype))
  eye = jnp.eye(b, dtype=bool)
  nxt = jnp.roll(eye, 1, axis=1)  # (i, i + 1 mod B)
  w = jnp.where(eye, 1.0 / n, jnp.where(nxt, stratum, 1.0 / (b - 1.0)))
  return jnp.log(w.astype(dtype))


def log_qz_terms(mean_BxZ, logvar_BxZ, z_BxZ, dataset_size: int, estimator: str = "mss"):
  """Per-sample (log q(z|x), log q(z), log Π_j q(z_j), log p(z)), each of shape (B,).

  z_BxZ[i] is a sample of q(z | x_i) = N(mean_BxZ[i], exp(logvar_BxZ[i])); p(z) = N(0, I);
  q(z) and Π_j q(z_j) are the aggregate posterior over a dataset of `dataset_size` points and
  the product of its marginals, estimated from this batch with `estimator` ("mss" or "mws").
  Not jitted: the form a traced loss calls (the β-TCVAE objective); `log_qz_estimates` is the
  same, jitted with `dataset_size` and `estimator` static. The estimates are
  `batch_log_qz(...)`'s (equal to the logsumexps over `pairwise_log_density` up to float
  rounding, in a fraction of the time and memory).
  """
  dtype = jnp.result_type(mean_BxZ, logvar_BxZ, z_BxZ, jnp.float32)
  mean_BxZ, logvar_BxZ, z_BxZ = (jnp.asarray(a, dtype) for a in (mean_BxZ, logvar_BxZ, z_BxZ))
  log_qzx_B = jnp.sum(gaussian_log_density(z_BxZ, mean_BxZ, logvar_BxZ), axis=-1)
  log_pz_B = jnp.sum(gaussian_log_density(z_BxZ, 0.0, 0.0), axis=-1)
  log_w_BxB = log_importance_weights(z_BxZ.shape[0], dataset_size, estimator, dtype)
  log_qz_B, log_qzj_BxZ = batch_log_qz(mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB)
  return log_qzx_B, log_qz_B, jnp.sum(log_qzj_BxZ, axis=-1), log_pz_B


# The minibatch estimates, one latent dimension at a time ---------------------------------------
#
# Written directly over `pairwise_log_density`, log q(z_i) and every log q(z_id) are logsumexps
# over a (B, B, Z) array: at Chen et al.'s batch of 2,048 and 10 latents, 42 M entries (168 MB)
# that autodiff materialises several times over, and XLA:CPU reduces over its middle and leading
# axes slowly (a value and gradient took ~1 s on the 2-vCPU development machine). Here a scan
# over the Z dimensions builds one (B, B) slice at a time: the joint density accumulates slice by
# slice, each marginal is a logsumexp along the slice's rows, and the gradient is written out
# (custom VJP) the same way, recomputing each slice instead of storing it. The marginals' shift
# is an upper bound of every term (the largest weight times the densest posterior's peak), not a
# max pass over the slice; where that bound underflows a row's sum, the whole estimate falls
# back to the exact max-shifted logsumexp.

def _dim_pair(z_B, mean_B, logvar_B, prec_B):
  """One dimension's (z_i - mean_j, log N(z_i; mean_j, exp(logvar_j))), both (B, B)."""
  r_BxB = z_B[:, None] - mean_B[None, :]
  return r_BxB, -0.5 * (_LOG_2PI + logvar_B[None, :] + r_BxB * r_BxB * prec_B[None, :])


def _over_dims(fn, init, mean_BxZ, logvar_BxZ, z_BxZ, *per_dim_BxZ):
  """lax.scan of fn(carry, mean_B, logvar_B, z_B, prec_B, *per_dim_B) over the Z dimensions."""
  xs = tuple(a.T for a in (mean_BxZ, logvar_BxZ, z_BxZ, jnp.exp(-logvar_BxZ), *per_dim_BxZ))
  return jax.lax.scan(lambda carry, x: fn(carry, *x), init, xs)


def _zeros_BxB(z_BxZ):
  """A (B, B) zero that varies over devices where z does (inside shard_map a scan's carry must
  keep its type, and the slices it accumulates vary with the batch)."""
  return jnp.zeros_like(z_BxZ[:, :1] - z_BxZ[:, 0])


def _joint_pair(mean_BxZ, logvar_BxZ, z_BxZ):
  """log q(z_i | n_j) of the whole vectors, (B, B): the slices summed over dimensions."""
  def add(acc, m, v, z, p):
    return acc + _dim_pair(z, m, v, p)[1], None
  return _over_dims(add, _zeros_BxB(z_BxZ), mean_BxZ, logvar_BxZ, z_BxZ)[0]


def _marginals_exact(mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB):
  def dim(_, m, v, z, p):
    return None, jax.nn.logsumexp(_dim_pair(z, m, v, p)[1] + log_w_BxB, axis=1)
  return _over_dims(dim, None, mean_BxZ, logvar_BxZ, z_BxZ)[1].T


def _batch_log_qz_fwd(mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB):
  top_w = jnp.max(log_w_BxB)

  def dim(joint_BxB, m, v, z, p):
    pair_BxB = _dim_pair(z, m, v, p)[1]
    shift = top_w + jnp.max(-0.5 * (_LOG_2PI + v))  # >= every entry of pair + log_w
    sum_B = jnp.sum(jnp.exp(pair_BxB + log_w_BxB - shift), axis=1)
    return joint_BxB + pair_BxB, (shift + jnp.log(sum_B), jnp.min(sum_B))

  joint_BxB, (log_qzj_ZxB, smallest_Z) = _over_dims(
      dim, _zeros_BxB(z_BxZ), mean_BxZ, logvar_BxZ, z_BxZ)
  log_qz_B = jax.nn.logsumexp(joint_BxB + log_w_BxB, axis=1)
  # A sum this small has lost its precision (or is 0: log = -inf); then recompute exactly.
  log_qzj_BxZ = jax.lax.cond(
      jnp.all(smallest_Z > _SAFE_SUM), lambda: log_qzj_ZxB.T,
      lambda: _marginals_exact(mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB))
  out = (log_qz_B, log_qzj_BxZ)
  return out, (mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB, *out)


def _batch_log_qz_bwd(residuals, cotangents):
  mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB, log_qz_B, log_qzj_BxZ = residuals
  g_qz_B, g_qzj_BxZ = cotangents
  # d log q(z_i) / d pair_ij = the softmax weight of j in row i; likewise per dimension.
  joint_w_BxB = jnp.exp(_joint_pair(mean_BxZ, logvar_BxZ, z_BxZ) + log_w_BxB
                        - log_qz_B[:, None]) * g_qz_B[:, None]

  def dim(_, m, v, z, p, log_qzj_B, g_B):
    r, pair = _dim_pair(z, m, v, p)
    w = jnp.exp(pair + log_w_BxB - log_qzj_B[:, None]) * g_B[:, None] + joint_w_BxB
    wrp = w * r * p[None, :]  # w times d pair / d mean_j = -(d pair / d z_i)
    d_logvar = 0.5 * jnp.sum(wrp * r, axis=0) - 0.5 * jnp.sum(w, axis=0)
    return None, (jnp.sum(wrp, axis=0), d_logvar, -jnp.sum(wrp, axis=1))

  _, (d_mean, d_logvar, d_z) = _over_dims(dim, None, mean_BxZ, logvar_BxZ, z_BxZ,
                                          log_qzj_BxZ, g_qzj_BxZ)
  return d_mean.T, d_logvar.T, d_z.T, jnp.zeros_like(log_w_BxB)


@jax.custom_vjp
def batch_log_qz(mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB):
  """(log q(z_i), log q(z_id)) of a batch, shapes (B,) and (B, Z): the logsumexps over j of
  log w_ij + log q(z_i | n_j) (and of each dimension's), with the (B, B) log weights of
  `log_importance_weights`. Reverse-mode differentiable in the first three arguments (the
  weights are constants: their cotangent is zero)."""
  return _batch_log_qz_fwd(mean_BxZ, logvar_BxZ, z_BxZ, log_w_BxB)[0]


batch_log_qz.defvjp(_batch_log_qz_fwd, _batch_log_qz_bwd)


log_qz_estimates = functools.partial(jax.jit, static_argnames=("dataset_size", "estimator"))(
    log_qz_terms)


@functools.partial(jax.jit, static_argnames=("dataset_size", "estimator"))
def decompose(mean_BxZ, logvar_BxZ, z_BxZ, dataset_size: int, estimator: str = "mss"):
  """Batch estimates of the KL decomposition (Chen et al., 2018, eq. 2), in nats.

  Returns a dict of scalars: index_code_mi = mean[log q(z|x) - log q(z)], total_correlation =
  mean[log q(z) - log Π_j q(z_j)], dimwise_kl = mean[log Π_j q(z_j) - log p(z)] and kl =
  mean[log q(z|x) - log p(z)], the single-sample Monte Carlo estimate of the average
  KL(q(z|x) || p(z)). The first three sum to kl (they telescope) up to float rounding.
  """
  log_qzx, log_qz, log_prod, log_pz = log_qz_estimates(mean_BxZ, logvar_BxZ, z_BxZ,
                                                       dataset_size, estimator)
  return {
      "index_code_mi": jnp.mean(log_qzx - log_qz),
      "total_correlation": jnp.mean(log_qz - log_prod),
      "dimwise_kl": jnp.mean(log_prod - log_pz),
      "kl": jnp.mean(log_qzx - log_pz),
  }


def dataset_log_qz(z_PxZ, mean_NxZ, logvar_NxZ, mask_N, *, chunk: int = 100):
  """(log q(z), log Π_j q(z_j)) at P points against the aggregate posterior of a whole finite
  dataset, q(z) = (1/N) Σ_n q(z|n) over the N rows with mask 1 (no estimator: exact for that
  set). Loops over chunks of `chunk` points, so memory is O(chunk N Z). Shapes (P,)."""
  log_n = jnp.log(jnp.sum(mask_N))
  off_N = jnp.where(mask_N > 0, 0.0, -jnp.inf)  # padded rows are no mixture components
  p = z_PxZ.shape[0]
  pad = -p % chunk
  z = jnp.concatenate([z_PxZ, jnp.zeros((pad, z_PxZ.shape[1]), z_PxZ.dtype)])

  def block(z_CxZ):
    pair_CxNxZ = gaussian_log_density(z_CxZ[:, None, :], mean_NxZ[None], logvar_NxZ[None])
    log_qz = jax.nn.logsumexp(jnp.sum(pair_CxNxZ, -1) + off_N, axis=1) - log_n
    log_qzj = jax.nn.logsumexp(pair_CxNxZ + off_N[None, :, None], axis=1) - log_n
    return log_qz, jnp.sum(log_qzj, -1)

  log_qz, log_prod = jax.lax.map(block, z.reshape(-1, chunk, z.shape[1]))
  return log_qz.reshape(-1)[:p], log_prod.reshape(-1)[:p]


def evaluation_points(num_real: int, num_points: int, seed: int = 0) -> np.ndarray:
  """The rows of a finite set at which `decompose_over_dataset` samples z: all `num_real` rows
  when num_points >= num_real, else a fixed uniform random subset of `num_points` of them
  (sorted; the same for every run and evaluation). Never the first rows: a test split ordered
  by its factors (dSprites') would score a corner of q(z), e.g. only its smallest squares."""
  if num_points >= num_real:
    return np.arange(num_real)
  return np.sort(np.random.default_rng(seed).choice(num_real, num_points, replace=False))


def decompose_over_dataset(mean_NxZ, logvar_NxZ, eps_PxZ, mask_N, points_P, *, chunk: int = 100):
  """The KL decomposition of a finite dataset's aggregate posterior, from one sample of z at
  each of the P rows `points_P` (z_i = mean_i + sigma_i eps_i; the rows must be real, mask 1;
  `evaluation_points` picks them): means over the P points of index_code_mi, total_correlation
  and dimwise_kl, which sum to their kl = mean[log q(z_i|x_i) - log p(z_i)], the Monte Carlo
  estimate of the average KL. q(z) is always the whole set's."""
  mean_p, logvar_p = mean_NxZ[points_P], logvar_NxZ[points_P]
  z = mean_p + jnp.exp(0.5 * logvar_p) * eps_PxZ
  log_qzx = jnp.sum(gaussian_log_density(z, mean_p, logvar_p), -1)
  log_pz = jnp.sum(gaussian_log_density(z, 0.0, 0.0), -1)
  log_qz, log_prod = dataset_log_qz(z, mean_NxZ, logvar_NxZ, mask_N, chunk=chunk)
  return {"index_code_mi": jnp.mean(log_qzx - log_qz),
          "total_correlation": jnp.mean(log_qz - log_prod),
          "dimwise_kl": jnp.mean(log_prod - log_pz)}
