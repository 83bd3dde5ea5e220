"""The key schedule: every key, salt and fixed seed the library draws randomness from.

Determinism is this library's promise (a resumed run equals the uninterrupted one bit for bit
on CPU, a sweep member equals the same run alone, results do not depend on the number of
devices), and it rests on every random number coming from one of the keys below.

    key(seed) --split(4)--> init      model initialisation (`init_key`)
                           shuffle    epoch e's permutation: permutation(fold_in(shuffle, e))
                           train      step s: split(fold_in(train, s)) -> [binarise, eps];
                                      the corruption of a denoising run: fold_in(fold_in(train,
                                      s), CORRUPTION_SALT), a stream of its own; an objective
                                      that samples: fold_in(fold_in(train, s), OBJECTIVE_SALT)
                           eval       the one-sample test metrics: normal(eval, (N, E))
    fold_in(key(seed), NLL_SALT)      the IWAE estimate of log p(x) (test/nll, test/neg_iwae):
                                      image n, sample i draws normal(fold_in(fold_in(k, n), i))
    fold_in(key(seed), SAMPLES_SALT)  the samples.png figure
    fold_in(key(seed), DENOISE_SALT)  the corruption of the test split in `tools.denoise`
    fold_in(key(seed), KL_DECOMPOSITION_SALT)  the z samples of the test KL decomposition

Host-side loops over chunks of images draw from `chunk_key(key, start)`; analyses default to
`key(ANALYSIS_SEED)`. NumPy seeds (fixed, whatever `config.seed`, so every run sees the same
data):
`TEST_BINARIZATION_SEED` binarises the test split of a dynamically binarised dataset once;
`EXPORT_BINARIZATION_SEED` binarises the train split for `tools.encode`; `TEST_SUBSET_SEED` picks
the 10,000 test images of a TFDS dataset with only a train split (`dsprites.test_indices` is
the built-in dSprites' own fixed subset).

`uniform` is `jax.random.uniform` bit for bit, written out so XLA:CPU vectorises it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

KEY_INIT, KEY_SHUFFLE, KEY_TRAIN, KEY_EVAL = range(4)  # the four keys split from key(seed)
CORRUPTION_SALT = 0xC0DE
NLL_SALT = 0x1AE5
SAMPLES_SALT = 7
DENOISE_SALT = 0xD0
KL_DECOMPOSITION_SALT = 0x7C
OBJECTIVE_SALT = 0x0B7
MODULES_SALT = 0x30D
TEST_BINARIZATION_SEED = 0
EXPORT_BINARIZATION_SEED = 1
TEST_SUBSET_SEED = 2  # the test subset of a TFDS dataset that has only a train split
POSTERIOR_STATS_SEED = 0  # the one z1 sample per image behind a two-layer model's z2 statistics
ANALYSIS_SEED = 0  # the default key of the analyses' sampled scores (anomaly -ELBO and IWAE)


def root_key(seed: int, which: int):
  """One of the four keys (KEY_INIT, KEY_SHUFFLE, KEY_TRAIN, KEY_EVAL) of a seed."""
  return jax.random.split(jax.random.key(seed), 4)[which]


def member_keys(seeds_M, which: int):
  """The `which` key of each member's root key: shape (M,)."""
  return jax.vmap(lambda s: jax.random.split(jax.random.key(s), 4)[which])(seeds_M)


def epoch_permutation(shuffle_key, epoch, num_train: int):
  """The order in which epoch `epoch` visits the training images."""
  return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), num_train)


def step_keys(train_key, step):
  """(binarisation key, eps key) of one training step."""
  return jax.random.split(jax.random.fold_in(train_key, step))


def objective_key(train_key, step):
  """The key an objective samples from at one step (a FactorVAE's permutation)."""
  return jax.random.fold_in(jax.random.fold_in(train_key, step), OBJECTIVE_SALT)


def modules_key(init_key):
  """The init key of the modules an objective adds to the model (a FactorVAE's discriminator)."""
  return jax.random.fold_in(init_key, MODULES_SALT)


def corruption_key(train_key, step):
  """The corruption key of one training step (independent of the step's other keys)."""
  return jax.random.fold_in(jax.random.fold_in(train_key, step), CORRUPTION_SALT)


def nll_key(seed: int):
  """The key of the IWAE estimate of log p(x) of a run with this seed (train and tools agree)."""
  return jax.random.fold_in(jax.random.key(seed), NLL_SALT)


def iwae_noise(key, image_idx_B, sample_idx_S, noise_dim: int):
  """eps (S, B, E) for the given global image and sample indices: independent of chunking."""
  image_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, image_idx_B)
  one = lambda k, i: jax.random.normal(jax.random.fold_in(k, i), (noise_dim,))
  return jax.vmap(lambda i: jax.vmap(lambda k: one(k, i))(image_keys))(sample_idx_S)


def samples_key(seed: int):
  """The key of a finished run's samples.png."""
  return jax.random.fold_in(jax.random.key(seed), SAMPLES_SALT)


def kl_decomposition_key(seed):
  """The key of the z samples behind test/index_code_mi, total_correlation and dimwise_kl."""
  return jax.random.fold_in(jax.random.key(seed), KL_DECOMPOSITION_SALT)


def denoise_key(seed: int):
  """The key that corrupts the test split in `tools.denoise`."""
  return jax.random.fold_in(jax.random.key(seed), DENOISE_SALT)


def chunk_key(key, start: int):
  """The key of the chunk of images starting at index `start` of a host-side loop."""
  return jax.random.fold_in(key, start)


def _rotl(x, r: int):
  return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _threefry2x32(k1, k2, x1, x2):
  """The Threefry-2x32 block cipher (20 rounds; Salmon et al., 2011), written out in full."""
  rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
  ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
  x1, x2 = x1 + ks[0], x2 + ks[1]
  for i in range(5):
    for r in rotations[i % 2]:
      x1 = x1 + x2
      x2 = x1 ^ _rotl(x2, r)
    x1, x2 = x1 + ks[(i + 1) % 3], x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x1, x2


def uniform(key, shape):
  """`jax.random.uniform(key, shape)` (float32 in [0, 1)), bit for bit, but fast on CPU.

  JAX lowers threefry on CPU to a rolled 5-iteration loop that XLA does not vectorise
  (about 9 ns per number on the benchmark machine, 1 ms for one (128, 784) batch); the same
  hash written out here fuses into one vectorised loop, ~7x faster. The bits equal
  `jax.random.bits(key, shape)` under `jax_threefry_partitionable` (JAX's default), where
  element i is hash(key, (hi(i), lo(i))) with its two output words xor-ed; otherwise, for
  other key implementations, and on other backends than the CPU (where it was never measured,
  and the bits are the same either way) this defers to `jax.random.uniform`.
  """
  if (str(jax.random.key_impl(key)) != "threefry2x32" or not jax.config.jax_threefry_partitionable
      or math.prod(shape) >= 2**32 or jax.default_backend() != "cpu"):
    return jax.random.uniform(key, shape)
  k1, k2 = jax.random.key_data(key)
  lo = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  a, b = _threefry2x32(k1, k2, jnp.zeros_like(lo), lo)
  # 23 random mantissa bits under exponent 0: a float in [1, 2), minus 1.
  mantissa = ((a ^ b) >> np.uint32(9)) | np.uint32(0x3F800000)
  return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
