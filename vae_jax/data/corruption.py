"""Input corruptions for denoising autoencoders: pure functions with explicit keys.

A denoising run (`config.data.corruption != "none"`, one of `CORRUPTIONS`) feeds the encoder
a corrupted image and asks the decoder for the clean one (Vincent et al., 2008). Each
corruption is split into a draw (`draw_noise`: one random number per pixel, from a key) and a
deterministic `apply`, so the training step can draw the noise for the global batch and apply
it on each device's slice (results then do not depend on the number of devices), while
`corrupt` does both. A step's corruption key is `rng.corruption_key`, a stream of its own, so
adding a corruption leaves every other random number of a run unchanged.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# name -> what it does to an image x in [0, 1] with its level (config.data.corruption).
CORRUPTIONS = {
    "none": "x unchanged",
    "gaussian": "x + level * n, n ~ N(0, 1), clipped to [0, 1]",
    "salt_and_pepper": "each pixel with probability level/2 set to 0, with level/2 set to 1",
    "mask": "each pixel with probability level set to 0",
}
KINDS = tuple(CORRUPTIONS)


def draw_noise(kind: str, key, shape, uniform: Callable = jax.random.uniform):
  """The per-pixel random numbers of one corruption: N(0, 1) for "gaussian", U[0, 1) else.

  `uniform(key, shape)` may be swapped for a faster bit-identical implementation.
  """
  if kind == "gaussian":
    return jax.random.normal(key, shape)
  if kind in ("salt_and_pepper", "mask"):
    return uniform(key, shape)
  raise ValueError(f"unknown corruption {kind!r}; expected one of {KINDS[1:]}")


def apply(kind: str, x, noise, level):
  """Corrupts images `x` in [0, 1] with pre-drawn `noise` of the same shape (see `draw_noise`)."""
  if kind == "none":
    return x
  if kind == "gaussian":
    return jnp.clip(x + level * noise, 0.0, 1.0)
  if kind == "salt_and_pepper":
    x = jnp.where(noise < 0.5 * level, 0.0, x)
    return jnp.where(noise >= 1.0 - 0.5 * level, 1.0, x)
  if kind == "mask":
    return jnp.where(noise < level, 0.0, x)
  raise ValueError(f"unknown corruption {kind!r}; expected one of {KINDS}")


def corrupt(kind: str, x, key, level):
  """`apply(kind, x, draw_noise(kind, key, x.shape), level)`; "none" returns x untouched."""
  if kind == "none":
    return x
  return apply(kind, x, draw_noise(kind, key, x.shape), level).astype(x.dtype)
