"""A trained model applied outside the training step: encode images to latent means, decode
latents to mean images, reconstruct, and sample. Images are uint8 (as datasets hold them) or
floats in [0, 1] (e.g. corrupted inputs); everything runs at float32 matmul precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_jax import decoder_likelihoods


@nnx.jit
def _encode_means(model, x):
  return model.encode(x)[0]


@nnx.jit
def _decode_means(model, z):
  return decoder_likelihoods.mean(model.likelihood, model.decode(z))


def _as_float(images) -> jax.Array:
  """uint8 images -> floats in [0, 1]; float images are taken as they are."""
  if np.asarray(images).dtype == np.uint8:
    return jnp.asarray(images, jnp.float32) / 255.0
  return jnp.asarray(images, jnp.float32)


def encode_means(model, images, batch: int = 2000) -> np.ndarray:
  """Latent means (the AE's z) of uint8 or [0, 1] float images, in batches: (N, Z)."""
  out = []
  with jax.default_matmul_precision("float32"):
    for i in range(0, len(images), batch):
      out.append(np.asarray(_encode_means(model, _as_float(images[i:i + batch]))))
  return np.concatenate(out)


def decode_means(model, z) -> np.ndarray:
  """Mean images E[x|z] in [0, 1]: (N, H, W, C)."""
  with jax.default_matmul_precision("float32"):
    return np.asarray(_decode_means(model, jnp.asarray(z, jnp.float32)))


def reconstruct(model, images, batch: int = 2000) -> np.ndarray:
  """Decoded latent means of uint8 or float images: the model's deterministic reconstruction."""
  return np.concatenate([decode_means(model, encode_means(model, images[i:i + batch], batch))
                         for i in range(0, len(images), batch)])


def prior_samples(model, key, n: int, train_images_u8: np.ndarray | None = None) -> np.ndarray:
  """Mean images of n latent draws.

  A stochastic family draws z from its prior (`model.sample_prior`: N(0, I) for the VAE;
  ancestrally z2 ~ N(0, I), z1 ~ p(z1|z2) for two layers; a pseudo-input's posterior for the
  VampPrior). An AE has no prior, so z ~ N(m, C) with m, C fitted to the latents of
  `train_images_u8`; the gaps between its clusters show why such samples look worse.
  """
  if model.stochastic:
    with jax.default_matmul_precision("float32"):
      z = model.sample_prior(key, n)
  else:
    lat = encode_means(model, train_images_u8).astype(np.float64)
    mean, cov = lat.mean(0), np.atleast_2d(np.cov(lat, rowvar=False))
    z = jax.random.multivariate_normal(key, jnp.asarray(mean, jnp.float32),
                                       jnp.asarray(cov, jnp.float32), (n,))
  return decode_means(model, np.asarray(z))


PRIOR_MOMENT_SAMPLES = 10_000  # prior draws behind a non-standard prior's per-unit moments


def prior_moments(model, key=None) -> tuple[np.ndarray, np.ndarray]:
  """Each unit's mean and standard deviation under the prior, (Z,) each: exactly 0 and 1 for a
  N(0, I) prior, else estimated from `PRIOR_MOMENT_SAMPLES` draws of `model.sample_prior` (key
  default `jax.random.key(0)`): the scale on which traversals sweep a unit."""
  if model.standard_normal_prior:
    return np.zeros(model.latent_dim), np.ones(model.latent_dim)
  key = jax.random.key(0) if key is None else key
  with jax.default_matmul_precision("float32"):
    z = np.asarray(model.sample_prior(key, PRIOR_MOMENT_SAMPLES), np.float64)
  return z.mean(0), z.std(0)
