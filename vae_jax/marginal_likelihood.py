"""Test log-likelihood by importance sampling (the IWAE bound), and latent-usage statistics.

    log p(x) >= L_k(x) = E[ log (1/k) sum_i p(x, z_i) / q(z_i|x) ],   z_1..z_k ~ q(z|x)

L_1 is the ELBO; L_k rises with k and tends to log p(x) (Burda et al., 2016). The estimate
is computed on device: each jitted call takes one chunk of images, encodes it once, and
loops (`lax.fori_loop`) over chunks of samples, keeping a running log-sum-exp (max and rescaled sum),
so memory is O(image_chunk * sample_chunk) whatever k is.

The core (`iwae_log_px`) takes any `LatentModel`: an encoder run once per image and a
function of the noise giving the log weights. `autoencoder_latents` adapts a trained model of
any stochastic family (`models.FAMILIES`) through its `log_weight_terms`, the same method the
training objectives use, so training and evaluation cannot disagree on what a log weight is;
`gaussian_latent_model` builds one from three densities, and the tests drive the core with a
linear-Gaussian model whose log p(x) is known exactly.

Noise is keyed per (image, sample) (`rng.iwae_noise`), so the estimate is deterministic given
the key (`rng.nll_key(seed)`) and does not depend on the chunk sizes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_jax import objectives, rng

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z_d]) > 0.01 counts as active.

standard_normal_log_prob = objectives.standard_normal_log_prob


class LatentModel(NamedTuple):
  """What the estimator needs from a latent-variable model.

  encode: x_Bx... -> q, whatever of q(z|x) depends on the image alone (a pytree; for a
    diagonal Gaussian, (mean_BxZ, logvar_BxZ)); computed once per chunk of images.
  log_weights: (x_Bx..., q, eps_SxBxE) -> log p(x, z) - log q(z|x) at the latents z that the
    standard normal eps reparameterises: shape (S, B).
  noise_dim: E, standard normal numbers per sample and image.
  """
  encode: Callable
  log_weights: Callable
  noise_dim: int


def gaussian_log_weights(log_likelihood, log_prior, x, mean_BxZ, logvar_BxZ, eps_SxBxZ):
  """log p(x, z) - log q(z|x) for a diagonal Gaussian q and z = mean + sigma * eps: (S, B)."""
  z = objectives.reparameterize(mean_BxZ, logvar_BxZ, eps_SxBxZ)
  return log_likelihood(x, z) + log_prior(z) - objectives.log_q_of_eps(eps_SxBxZ, logvar_BxZ)


def gaussian_latent_model(posterior: Callable, log_likelihood: Callable, latent_dim: int,
                          log_prior: Callable = standard_normal_log_prob) -> LatentModel:
  """A one-layer model with diagonal Gaussian q(z|x), from its three densities.

  posterior: x_Bx... -> (mean_BxZ, logvar_BxZ); log_likelihood: (x_Bx..., z_SxBxZ) -> (S, B);
  log_prior: z_SxBxZ -> (S, B).
  """
  def log_weights(x, q, eps_SxBxZ):
    return gaussian_log_weights(log_likelihood, log_prior, x, *q, eps_SxBxZ)

  return LatentModel(encode=posterior, log_weights=log_weights, noise_dim=latent_dim)


def log_px_images(model: LatentModel, x, image_idx_B, key, num_samples, *, sample_chunk: int):
  """The k-sample estimate of log p(x) for a batch of images whose global indices are given.

  Encodes the batch once and loops (`lax.fori_loop`) over chunks of `sample_chunk` samples
  with a running log-sum-exp, so memory is O(B * sample_chunk) whatever k is. `num_samples`
  may be traced. Shape (B,). Shared by the test-NLL estimate and the training loop's
  periodic test bound (`test/neg_iwae`), which therefore agree given the same key.
  """
  q = model.encode(x)
  num_chunks = (num_samples + sample_chunk - 1) // sample_chunk

  def log_weights(c):
    sample_idx = c * sample_chunk + jnp.arange(sample_chunk)
    eps = rng.iwae_noise(key, image_idx_B, sample_idx, model.noise_dim)
    lw_SxB = model.log_weights(x, q, eps)
    return jnp.where((sample_idx < num_samples)[:, None], lw_SxB, -jnp.inf)  # last chunk's pad

  def accumulate(lw_SxB, run_max, run_sum):
    new_max = jnp.maximum(run_max, jnp.max(lw_SxB, axis=0))
    safe = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
    run_sum = run_sum * jnp.exp(run_max - safe) + jnp.sum(jnp.exp(lw_SxB - safe), axis=0)
    return new_max, run_sum

  # The first chunk starts the running sums (rather than constants: under shard_map the
  # carry must vary over devices like the values added to it); the loop adds the rest.
  lw0 = log_weights(0)
  init = accumulate(lw0, jnp.full_like(lw0[0], -jnp.inf), jnp.zeros_like(lw0[0]))
  # k may be traced (a while loop over its chunks), so one compiled program serves every k.
  run_max, run_sum = jax.lax.fori_loop(1, num_chunks, lambda c, carry: accumulate(
      log_weights(c), *carry), init)
  return run_max + jnp.log(run_sum) - jnp.log(jnp.asarray(num_samples, run_sum.dtype))


def _log_px_chunk(model_fn, params, x_all, start, key, *, num_samples, sample_chunk,
                  image_chunk):
  """log-mean-exp of the k log weights of images [start, start + image_chunk): shape (B,)."""
  x = jax.lax.dynamic_slice_in_dim(x_all, start, image_chunk)
  return log_px_images(model_fn(params), x, start + jnp.arange(image_chunk), key, num_samples,
                       sample_chunk=sample_chunk)


_log_px_chunk_jit = jax.jit(_log_px_chunk, static_argnames=(
    "model_fn", "sample_chunk", "image_chunk"))


def default_chunks() -> tuple[int, int]:
  """(sample_chunk, image_chunk) for the default backend.

  On CPU, 25 x 200 = 5,000 decoded images per step keeps each (rows, pixels) intermediate
  (16 MB for MNIST) near the caches, measured faster than 50,000-row steps; accelerators
  want big steps: 500 x 200 rows is ~0.3 GB per intermediate for MNIST.
  """
  return (25, 200) if jax.default_backend() == "cpu" else (500, 200)


def iwae_log_px(model_fn: Callable[[Any], LatentModel], params, x, key, *, num_samples: int,
                sample_chunk: int | None = None, image_chunk: int | None = None,
                progress: bool = False, timing: dict | None = None):
  """The k-sample importance-weighted estimate of log p(x) for each image: shape (N,).

  Args:
    model_fn: hashable (e.g. a module-level function, or a frozen dataclass) mapping `params`
      to a `LatentModel`; it is a static argument of the compiled chunk function.
    params: pytree of arrays passed to `model_fn` (traced, so new values do not recompile).
    x: (N, ...) inputs, as the model's callables expect them.
    key: PRNG key; with the same key the result is the same for any chunk sizes.
    num_samples: k >= 1.
    sample_chunk, image_chunk: how many samples / images one step of the loop holds; memory
      grows with their product. None: `default_chunks()`.
    progress: show a tqdm bar over image chunks.
    timing: if given, gets "compile_seconds" (compiling the chunk program) and "seconds" (the
      compiled work over every chunk, waited for), apart.
  """
  if num_samples < 1:
    raise ValueError(f"num_samples={num_samples} must be >= 1")
  n = x.shape[0]
  default_sc, default_ic = default_chunks()
  sample_chunk = max(1, min(sample_chunk or default_sc, num_samples))
  image_chunk = image_chunk or default_ic
  image_chunk = max(1, min(image_chunk, n))
  pad = -n % image_chunk
  x = jnp.asarray(x)
  if pad:
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
  starts = range(0, n + pad, image_chunk)
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    starts = tqdm(starts, unit="chunk", desc=f"IWAE k={num_samples}", mininterval=2.0)
  out = []
  k = jnp.int32(num_samples)
  with jax.default_matmul_precision("float32"):  # GPUs default to TF32; keep nats exact.
    t0 = time.perf_counter()
    chunk = _log_px_chunk_jit.lower(model_fn, params, x, jnp.int32(0), key, num_samples=k,
                                    sample_chunk=sample_chunk, image_chunk=image_chunk).compile()
    t1 = time.perf_counter()
    for s in starts:
      out.append(chunk(params, x, jnp.int32(s), key, num_samples=k))
      if progress:  # dispatch is asynchronous: wait, so the bar shows finished chunks
        out[-1].block_until_ready()
    log_px = jax.block_until_ready(jnp.concatenate(out)[:n])
  if timing is not None:
    timing.update(compile_seconds=t1 - t0, seconds=time.perf_counter() - t1)
  return log_px


# A trained model as a LatentModel ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AutoEncoderLatents:
  """model_fn for a stochastic model family: params is its `nnx.State`; x is float in [0, 1]."""
  graphdef: Any

  def __call__(self, state) -> LatentModel:
    return latent_model(nnx.merge(self.graphdef, state))


def latent_model(model) -> LatentModel:
  """A model of a stochastic family (`model.stochastic`) as a `LatentModel`."""

  def log_weights(x_Bx, q, eps_SxBxE):
    log_lik, log_prior, log_q = model.log_weight_terms(q, x_Bx, eps_SxBxE)
    return log_lik + log_prior - log_q

  return LatentModel(encode=model.encode, log_weights=log_weights, noise_dim=model.noise_dim)


def autoencoder_latents(model) -> tuple[AutoEncoderLatents, Any]:
  """(model_fn, params) for `iwae_log_px` from a model of a stochastic family."""
  if not model.stochastic:
    raise ValueError(f"an {model.title} (model.name={model.name!r}) has no q(z|x) or p(z): its "
                     "likelihood is undefined")
  graphdef, state = nnx.split(model)
  return AutoEncoderLatents(graphdef), state


@nnx.jit
def _posterior(model, x, key):
  """q(z|x) and the means of the posteriors of deeper layers (a two-layer model's q(z2|z1) at
  one sample of z1)."""
  q = model.encode(x)
  return q, model.deeper_posterior_means(q, key)


def posterior_stats(model, images_u8: np.ndarray, batch: int = 2000) -> dict[str, Any]:
  """Active units and per-dimension KL of a stochastic model over a set of uint8 images.

  Returns {"active_units": int, "mean_variance": list (Z,)}, the variance across images of
  each dimension's posterior mean, and for a family with an analytic KL per dimension
  (`model.kl_per_dim`: the VAE's N(0, I) prior) "kl_per_dim": list (Z,), each dimension's mean
  KL(q(z_d|x) || N(0, 1)) in nats. These describe z, the layer the decoder reads; each deeper
  layer (a two-layer model's z2, "top") adds "active_units_<name>" and "mean_variance_<name>",
  with the mean of q(z2|z1) taken at one sample of z1 (as Burda et al. count a deeper layer's
  units).
  """
  means, kls, deeper = [], [], {}
  key = jax.random.key(rng.POSTERIOR_STATS_SEED)
  with jax.default_matmul_precision("float32"):
    for i in range(0, len(images_u8), batch):
      x = jnp.asarray(images_u8[i:i + batch], jnp.float32) / 255.0
      q, layers = _posterior(model, x, rng.chunk_key(key, i))
      means.append(np.asarray(q[0], np.float64))
      kl = model.kl_per_dim(q)
      if kl is not None:
        kls.append(np.asarray(kl, np.float64))
      for name, m in layers.items():
        deeper.setdefault(name, []).append(np.asarray(m, np.float64))
  var = np.var(np.concatenate(means), axis=0)
  out = {"active_units": int(np.sum(var > ACTIVE_UNIT_THRESHOLD)), "mean_variance": var.tolist()}
  if kls:
    out["kl_per_dim"] = np.concatenate(kls).mean(0).tolist()
  for name, ms in deeper.items():
    var_layer = np.var(np.concatenate(ms), axis=0)
    out[f"active_units_{name}"] = int(np.sum(var_layer > ACTIVE_UNIT_THRESHOLD))
    out[f"mean_variance_{name}"] = var_layer.tolist()
  return out


def test_metrics(model, images_u8: np.ndarray, num_samples: int, key, *,
                 sample_chunk: int | None = None, image_chunk: int | None = None,
                 progress: bool = False) -> dict[str, Any]:
  """Everything `results.json` records about a VAE's test likelihood.

  Returns "test/nll" (-mean L_k in nats per image), "test/nll_k", "test/nll_stderr" (standard
  error of that mean over images), "test/bpd" (nll / (pixels * ln 2)), "test/active_units",
  "test/kl_per_dim" (list; a family with an analytic KL per unit), "test/active_units_top"
  (two stochastic layers), and
  "test/nll_seconds" (the compiled work) with "test/nll_compile_seconds" apart.
  """
  model_fn, params = autoencoder_latents(model)
  x = jnp.asarray(images_u8, jnp.float32) / 255.0
  timing = {}
  log_px = np.asarray(iwae_log_px(
      model_fn, params, x, key, num_samples=num_samples, sample_chunk=sample_chunk,
      image_chunk=image_chunk, progress=progress, timing=timing), np.float64)
  nll = float(-log_px.mean())
  stats = posterior_stats(model, images_u8)
  out = {"test/nll": nll, "test/nll_k": int(num_samples),
         "test/nll_stderr": float(log_px.std(ddof=1) / math.sqrt(len(log_px))) if len(log_px) > 1 else 0.0,
         "test/bpd": nll / (math.prod(images_u8.shape[1:]) * math.log(2)),
         "test/active_units": stats["active_units"], "test/nll_seconds": timing["seconds"],
         "test/nll_compile_seconds": timing["compile_seconds"]}
  for k in ("kl_per_dim", "active_units_top"):
    if k in stats:
      out[f"test/{k}"] = stats[k]
  return out
