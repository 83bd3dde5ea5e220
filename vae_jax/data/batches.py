"""Training batches made on device: which images each step sees, and the noise it draws.

The whole training split sits on the device as uint8. `BatchPlan` turns it into batches
inside the compiled epoch (`step.build_train_epoch`), in three parts:

  * `epoch_inputs`: per step of an epoch, the image indices of the batch (from the shuffle
    key) and the step's keys (`rng.step_keys`, `rng.corruption_key`, `rng.objective_key`),
    drawn up front in one vectorised call; with one sample per image also the
    reparameterisation noise eps, (B, E) per step.
  * `step_noise`: the random numbers of one step for the *global* batch (the uniforms of
    dynamic binarisation, eps for k > 1 samples, the corruption's noise); the epoch shards
    them like the batch, so results do not depend on the number of devices.
  * `device_batch`: on each device, gathers its slice of the batch, binarises, and corrupts
    the encoder's copy for a denoising run: (x_in, x_target).

All three are written for one member (one seed); `step.py` maps them over the members of a
vectorised sweep.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vae_jax import models, rng
from vae_jax.data import corruption


class StepInputs(NamedTuple):
  """What `epoch_inputs` draws for one step (it gives each leaf a leading step axis S)."""
  idx: Any  # (B,) the indices of the batch's images in the training split
  bin_key: Any  # the dynamic binarisation's key
  eps: Any  # (B, E) reparameterisation noise for k = 1; for k > 1 the key it is drawn from
  corrupt_key: Any = None  # a denoising run's corruption key
  objective_key: Any = None  # an objective's own key (`Objective.needs_key`)


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

  def epoch_steps(self, epoch):
    """The global step numbers of epoch `epoch`: (S,)."""
    return epoch * self.steps_per_epoch + jnp.arange(self.steps_per_epoch)

  def epoch_inputs(self, seed, epoch) -> StepInputs:
    """One member's inputs of every step of epoch `epoch`, each with a leading step axis S.
    k > 1 carries each step's eps key instead of its noise: k times the noise up front would
    be GBs per epoch (batch 20, k = 50)."""
    B, S, Z = self.batch_size, self.steps_per_epoch, self.noise_dim
    shuffle_key = rng.root_key(seed, rng.KEY_SHUFFLE)
    train_key = rng.root_key(seed, rng.KEY_TRAIN)
    idx_SxB = rng.epoch_permutation(shuffle_key, epoch, self.num_train)[:S * B].reshape(S, B)
    steps_S = self.epoch_steps(epoch)
    per_step = lambda key_fn: jax.vmap(lambda s: key_fn(train_key, s))(steps_S)
    keys_Sx2 = per_step(rng.step_keys)
    eps = keys_Sx2[:, 1]
    if self.num_samples == 1:
      eps = jax.vmap(lambda k: jax.random.normal(k, (B, Z)))(eps)
    return StepInputs(
        idx=idx_SxB, bin_key=keys_Sx2[:, 0], eps=eps,
        # Streams of their own (`rng.corruption_key`, `rng.objective_key`).
        corrupt_key=per_step(rng.corruption_key) if self.corrupting else None,
        objective_key=per_step(rng.objective_key) if self.objective_keys else None)

  def step_noise(self, inputs: StepInputs):
    """(u, eps) of one step for the global batch. `u` holds the uniforms of dynamic
    binarisation ((B, 1) zeros otherwise), paired with the corruption's noise when the run
    denoises; `eps` is the (B, E) noise for k = 1, for k > 1 the (k, B, E) noise drawn here
    from its key."""
    B, K, Z = self.batch_size, self.num_samples, self.noise_dim
    if self.binarization == "dynamic":
      u = rng.uniform(inputs.bin_key, (B, math.prod(self.image_shape)))
    else:
      u = jnp.zeros((B, 1), jnp.float32)
    eps = inputs.eps
    if K > 1:  # eps holds the step's eps key, the key k = 1 draws its (B, Z) from
      eps = jax.random.normal(eps, (K, B, Z))
    if self.corrupting:
      u = (u, corruption.draw_noise(self.corruption, inputs.corrupt_key,
                                    (B, *self.image_shape), rng.uniform))
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
