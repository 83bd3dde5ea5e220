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


def unit_floats(x) -> jax.Array:
  """uint8 images -> float32 in [0, 1]; float images as float32. Inside the jitted encoders
  too, so a batch of either kind is one program."""
  x = jnp.asarray(x)
  return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


@nnx.jit
def _encode_means(model, x):
  return (model.encode(unit_floats(x))[0],)


@nnx.jit
def _encode_posteriors(model, x):
  return tuple(model.encode(unit_floats(x)))


@nnx.jit
def _decode_means(model, z):
  return decoder_likelihoods.mean(model.likelihood, model.decode(z))


def _padded_rows(n: int, batch: int) -> int:
  """The rows a chunk of n images is encoded as: the next power of two from 16, at most
  `batch`. Callers such as the disentanglement metrics encode many small batches of varying
  size; padding them to a few sizes compiles the encoder a few times instead of once per size.
  A row's code does not depend on the other rows' values; it can differ in the last float bits
  with their number (XLA's matmul), which is why every chunk size maps to one padded size."""
  return max(n, min(batch, max(16, 1 << (n - 1).bit_length())))


def _in_chunks(encoder, outputs: int, model, images, batch: int) -> tuple[np.ndarray, ...]:
  """encoder(model, chunk), a tuple of `outputs` (n, Z) arrays, over the images `batch` at a
  time, each chunk padded with zero images to `_padded_rows` (so a given number of images
  always meets the same program and gives the same numbers); the rows of the real images,
  concatenated."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    images = images.astype(np.float32)
  parts = []
  with jax.default_matmul_precision("float32"):
    for i in range(0, len(images), batch):
      chunk = images[i:i + batch]
      n = len(chunk)
      pad = _padded_rows(n, batch) - n
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
      parts.append(tuple(np.asarray(a)[:n] for a in encoder(model, chunk)))
  if not parts:
    return tuple(np.zeros((0, model.latent_dim), np.float32) for _ in range(outputs))
  return tuple(np.concatenate(column) for column in zip(*parts))


def encode_means(model, images, batch: int = 2000) -> np.ndarray:
  """Latent means (the AE's z) of uint8 or [0, 1] float images, in batches: (N, Z)."""
  return _in_chunks(_encode_means, 1, model, images, batch)[0]


def encode_posteriors(model, images, batch: int = 2000) -> tuple[np.ndarray, np.ndarray]:
  """q(z|x) of a stochastic family's uint8 or [0, 1] float images: (mean (N, Z), logvar
  (N, Z)), float32, the means equal to `encode_means`'s."""
  return _in_chunks(_encode_posteriors, 2, model, images, batch)


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
