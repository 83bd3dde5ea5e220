"""Training batches made on device: which images each step sees, and the noise it draws.

The whole training split sits on the device as uint8. `BatchPlan` turns it into batches
inside the compiled epoch (`step.build_train_epoch`), in three parts:

  * `epoch_inputs`: per step of an epoch, the image indices of every member's batch (from
    its shuffle key) and the step's keys (`rng.step_keys`, `rng.corruption_key`), drawn up
    front in one vectorised call; with one sample per image also the reparameterisation
    noise eps, (B, E) per step.
  * `step_noise`: the random numbers of one step for the *global* batch (the uniforms of
    dynamic binarisation, eps for k > 1 samples, the corruption's noise), constrained to
    the batch sharding: results do not depend on the number of devices.
  * `device_batch`: on each device, gathers its slice of the batch, binarises, and corrupts
    the encoder's copy for a denoising run: (x_in, x_target).

Every array carries a leading member axis M (members of a vectorised sweep), except in the
single-run program, which drops it (`squeeze`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from vae_jax import models, rng
from vae_jax.data import corruption


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  batch_size: int
  num_train: int
  image_shape: tuple[int, ...]
  noise_dim: int
  num_samples: int  # k: latent samples per image
  binarization: str
  corruption: str
  corruption_level: float
  packed: bool = False  # the split holds bit-packed binary images (`Dataset.packed_shape`)
  objective_keys: bool = False  # the objective samples: a key per step (`rng.objective_key`)

  @classmethod
  def from_config(cls, config, image_shape, num_train: int, packed: bool = False) -> "BatchPlan":
    # Packed images are binary already: binarising them again would change nothing, so no
    # uniforms are drawn for them.
    return cls(batch_size=config.batch_size, num_train=num_train, image_shape=tuple(image_shape),
               noise_dim=models.noise_dim(config.model),
               num_samples=config.num_importance_samples,
               binarization="static" if packed else config.data.binarization,
               corruption=config.data.corruption,
               corruption_level=config.data.corruption_level, packed=packed,
               objective_keys=_objective_samples(config))

  @property
  def steps_per_epoch(self) -> int:
    return self.num_train // self.batch_size

  @property
  def corrupting(self) -> bool:
    return self.corruption != "none"

  def flatten_images(self, images):
    """(N, H, W, C) -> (N, H*W*C), a free reshape: XLA:CPU vectorises elementwise loops along
    the minor axis only, and image arrays end in a channel axis of size 1."""
    return images.reshape(images.shape[0], -1)

  def epoch_inputs(self, seeds_M, epoch):
    """The scan's inputs for one epoch, each with a leading step axis S:
    (steps_S, idx_SxMxB, binarisation keys_SxM, eps_SxMxBxE or eps keys_SxM[, corruption
    keys_SxM]). k > 1 carries each step's eps key instead of its noise: k times the noise up
    front would be GBs per epoch (batch 20, k = 50)."""
    B, S, Z = self.batch_size, self.steps_per_epoch, self.noise_dim
    shuffle_keys = rng.member_keys(seeds_M, rng.KEY_SHUFFLE)
    train_keys = rng.member_keys(seeds_M, rng.KEY_TRAIN)
    perm_MxSxB = jax.vmap(lambda k: rng.epoch_permutation(k, epoch, self.num_train)[:S * B]
                          .reshape(S, B))(shuffle_keys)
    steps_S = epoch * S + jnp.arange(S)
    keys_SxMx2 = jax.vmap(lambda s: jax.vmap(lambda k: rng.step_keys(k, s))(train_keys))(steps_S)
    eps_keys_SxM = keys_SxMx2[..., 1]
    if self.num_samples == 1:
      eps = jax.vmap(jax.vmap(lambda k: jax.random.normal(k, (B, Z))))(eps_keys_SxM)
    else:
      eps = eps_keys_SxM
    xs = (steps_S, jnp.swapaxes(perm_MxSxB, 0, 1), keys_SxMx2[..., 0], eps)
    if self.corrupting:  # a separate stream per step (rng.corruption_key)
      step_key = lambda s: jax.vmap(lambda k: rng.corruption_key(k, s))(train_keys)
      xs += (jax.vmap(step_key)(steps_S),)
    if self.objective_keys:  # another (rng.objective_key)
      step_key = lambda s: jax.vmap(lambda k: rng.objective_key(k, s))(train_keys)
      xs += (jax.vmap(step_key)(steps_S),)
    return xs

  def step_noise(self, bin_key, eps, corrupt_key, *, squeeze: bool, num_members: int,
                 shard_batch, shard_eps):
    """(u, eps) of one step for the global batch, sharded like it. `u` holds the uniforms of
    dynamic binarisation ((B, 1) zeros otherwise), paired with the corruption's noise when
    the run denoises; `eps` is drawn here from its key when k > 1."""
    B, K, Z = self.batch_size, self.num_samples, self.noise_dim
    over = (lambda f, a: f(a)) if squeeze else (lambda f, a: jax.vmap(f)(a))
    if self.binarization == "dynamic":
      u = over(lambda k: rng.uniform(k, (B, math.prod(self.image_shape))), bin_key)
    else:
      u = jnp.zeros((B, 1) if squeeze else (num_members, B, 1), jnp.float32)
    u = jax.lax.with_sharding_constraint(u, shard_batch)
    if K > 1:  # eps holds the step's eps key(s), the key k = 1 draws its (B, Z) from
      eps = over(lambda k: jax.random.normal(k, (K, B, Z)), eps)
    eps = jax.lax.with_sharding_constraint(eps, shard_eps)
    if self.corrupting:
      draw = lambda k: corruption.draw_noise(self.corruption, k, (B, *self.image_shape),
                                             rng.uniform)
      u = (u, jax.lax.with_sharding_constraint(over(draw, corrupt_key), shard_batch))
    return u, eps

  def device_batch(self, images, idx_b, u_b):
    """One device's (x_in, x_target), (b, H, W, C) floats: the gathered images, binarised
    with the step's uniforms; x_in corrupted for a denoising run (the loss targets x)."""
    u_b, c_b = u_b if self.corrupting else (u_b, None)
    if self.packed:
      x = unpack_bits(images[idx_b], math.prod(self.image_shape))
    else:
      x = images[idx_b].astype(jnp.float32) / 255.0
    if self.binarization == "dynamic":
      x = (u_b < x).astype(jnp.float32)
    x = x.reshape(x.shape[0], *self.image_shape)
    if not self.corrupting:
      return x, x
    return corruption.apply(self.corruption, x, c_b, self.corruption_level), x


def _objective_samples(config) -> bool:
  from vae_jax import objectives  # pylint: disable=g-import-not-at-top
  return objectives.OBJECTIVES[config.objective].needs_key


def unpack_bits(packed_BxP, num_pixels: int):
  """Bit-packed rows (np.packbits order: most significant bit first) -> float32 (B, pixels)
  in {0, 1}."""
  shifts = jnp.arange(7, -1, -1, dtype=jnp.uint8)
  bits = (packed_BxP[..., None] >> shifts) & jnp.uint8(1)
  return bits.reshape(packed_BxP.shape[0], -1)[:, :num_pixels].astype(jnp.float32)


def pad_test_split(images, num_devices: int, eval_batch_size: int):
  """The test split padded to a multiple of devices x evaluation batch, with its mask.

  Returns (padded images (P, H, W, C) uint8, mask (P,) float32 with 1 for real images,
  per-device evaluation batch size)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  n = len(images)
  eval_batch = min(eval_batch_size, -(-n // num_devices))
  num_padded = -(-n // (num_devices * eval_batch)) * num_devices * eval_batch
  pad = num_padded - n
  padded = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.uint8)])
  mask = np.r_[np.ones(n), np.zeros(pad)].astype(np.float32)
  return padded, mask, eval_batch
