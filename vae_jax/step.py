"""The compiled programs: one training epoch (a `lax.scan` of pure steps) and one evaluation.

Both are `jax.jit` over a 1-D `Mesh(devices, ("data",))`. The per-device program is written
with `jax.shard_map`: each device gathers its slice of the global batch from the split held
on device, computes gradients, and averages them with `lax.pmean(..., "data")`; this is the
SPMD program `jax.pmap` used to express (pmap is in maintenance mode since JAX 0.8 and is
itself implemented on shard_map).

Every array carries a leading *member* axis M: members of a sweep that differ only in
shape-preserving values (beta, learning rate, seed, KL warm-up, free bits) train together,
`vmap`-ed inside the same scan. A single run is a group of one (M = 1), for which the vmap
is skipped so the single-run program is exactly the unbatched one.

Randomness: member m's keys come from `jax.random.key(seed_m)` split into init / shuffle /
train / eval; step s uses `fold_in(train_key, s)`. Noise is drawn for the *global* batch and
then sharded, so results do not depend on the number of devices.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from vae_jax import corruption, likelihood, models, objectives, optim

KEY_INIT, KEY_SHUFFLE, KEY_TRAIN, KEY_EVAL = range(4)


def member_keys(seeds_M, which: int):
  """The `which` key (init / shuffle / train / eval) of each member's root key: shape (M,)."""
  return jax.vmap(lambda s: jax.random.split(jax.random.key(s), 4)[which])(seeds_M)


def over_members(f: Callable, num_members: int) -> Callable:
  """vmap over the leading member axis; for a single member, squeeze it away instead."""
  if num_members > 1:
    return jax.vmap(f)

  def single(*args):
    out = f(*jax.tree.map(lambda a: a[0], args))
    return jax.tree.map(lambda a: a[None], out)

  return single


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
  element i is hash(key, (hi(i), lo(i))) with its two output words xor-ed; otherwise, or for
  other key implementations, this defers to `jax.random.uniform`.
  """
  if (str(jax.random.key_impl(key)) != "threefry2x32" or not jax.config.jax_threefry_partitionable
      or math.prod(shape) >= 2**32):
    return jax.random.uniform(key, shape)
  k1, k2 = jax.random.key_data(key)
  lo = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  a, b = _threefry2x32(k1, k2, jnp.zeros_like(lo), lo)
  # 23 random mantissa bits under exponent 0: a float in [1, 2), minus 1.
  mantissa = ((a ^ b) >> np.uint32(9)) | np.uint32(0x3F800000)
  return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def build_train_epoch(*, graphdef, rest, tx, mesh, config, image_shape, num_train: int,
                      num_members: int):
  """Returns jitted `epoch(params, opt_state, images, hparams, seeds, epoch) -> (params,
  opt_state, metrics)`; params and opt_state are donated. metrics hold per-member means over
  the epoch's steps, plus `nonfinite_step` (the first step whose loss or gradient was not
  finite, or -1)."""
  B = config.batch_size
  S = num_train // B
  Z = models.noise_dim(config.model)
  dynamic = config.data.binarization == "dynamic"
  lr_mult = optim.schedule(config, S)
  M = num_members
  n_dev = mesh.devices.size
  # With one member the member axis is dropped for the whole scan (and restored after it),
  # so the single-run program is exactly the unbatched one, with no per-step reshapes.
  squeeze = M == 1
  batch_spec = P("data") if squeeze else P(None, "data")
  shard_batch = NamedSharding(mesh, batch_spec)
  # Denoising: the encoder sees a corrupted copy, the loss targets the clean image. With
  # "none" none of this enters the program, whose random stream stays exactly as it was.
  corrupt_kind, corrupt_level = config.data.corruption, config.data.corruption_level
  corrupting = corrupt_kind != "none"
  # k samples per image (objectives.py): eps is (B, Z) for k = 1, exactly as before the option
  # existed, and (k, B, Z) otherwise, its batch axis (1) sharded over devices.
  K = config.num_importance_samples
  objective = config.objective
  shard_eps = shard_batch if K == 1 else NamedSharding(
      mesh, P(None, "data") if squeeze else P(None, None, "data"))

  def member_step(params, opt_state, hp, images, idx_b, u_b, eps_bxZ, step):
    u_b, c_b = u_b if corrupting else (u_b, None)
    # Pixels stay (B, H*W*C) up to the model: XLA:CPU vectorises elementwise loops along the
    # minor axis only, and image arrays end in a channel axis of size 1 (see likelihoods.nll).
    x = images[idx_b].astype(jnp.float32) / 255.0
    if dynamic:
      x = (u_b < x).astype(jnp.float32)
    x = x.reshape(x.shape[0], *image_shape)
    x_in = corruption.apply(corrupt_kind, x, c_b, corrupt_level) if corrupting else x

    def loss_of(p):
      model = nnx.merge(graphdef, p, rest)
      return objectives.loss_fn(model, x_in, x, eps_bxZ, hp, step, objective)

    (_, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    # Data parallelism: every device holds 1/n of the batch; the mean of the per-device
    # mean gradients is the gradient of the global batch mean. On one device that mean is
    # the identity, which XLA:CPU would still run as an all-reduce (a copy of every
    # gradient, ~6% of a step), so it is left out there.
    if n_dev > 1:
      grads = jax.lax.pmean(grads, "data")
      metrics = jax.lax.pmean(metrics, "data")
    metrics["grad_norm"] = grad_norm(grads)
    d, opt_state = tx.update(grads, opt_state, params)
    params = optim.apply_update(params, d, hp["learning_rate"] * lr_mult(step))
    return params, opt_state, metrics

  def device_step(params, opt_state, hp, images, idx, u, eps, step):
    f = lambda p, o, h, i, u_, e: member_step(p, o, h, images, i, u_, e, step)
    if not squeeze:
      f = jax.vmap(f)
    return f(params, opt_state, hp, idx, u, eps)

  sharded_step = jax.shard_map(
      device_step, mesh=mesh,
      in_specs=(P(), P(), P(), P(), batch_spec, batch_spec, shard_eps.spec, P()),
      # Without the pmean (one device) nothing marks the outputs as replicated; they are.
      out_specs=(P(), P(), P()), check_vma=n_dev > 1)

  def epoch_fn(params, opt_state, images, hparams, seeds_M, epoch):
    images = images.reshape(images.shape[0], -1)  # (N, H*W*C), a free reshape
    shuffle_keys = member_keys(seeds_M, KEY_SHUFFLE)
    train_keys = member_keys(seeds_M, KEY_TRAIN)
    perm_MxSxB = jax.vmap(lambda k: jax.random.permutation(
        jax.random.fold_in(k, epoch), num_train)[:S * B].reshape(S, B))(shuffle_keys)
    steps_S = epoch * S + jnp.arange(S)
    # Every step's keys, drawn up front in one vectorised call: keys_SxMx2[s, m] =
    # split(fold_in(train_key_m, step_s)); [..., 0] binarises, [..., 1] draws eps.
    keys_SxMx2 = jax.vmap(lambda s: jax.vmap(
        lambda k: jax.random.split(jax.random.fold_in(k, s)))(train_keys))(steps_S)
    eps_keys_SxM = keys_SxMx2[..., 1]
    if K == 1:
      eps_SxMxBxZ = jax.vmap(jax.vmap(lambda k: jax.random.normal(k, (B, Z))))(eps_keys_SxM)
    # k > 1: k times the noise up front would be GBs per epoch (batch 20, k = 50), so the scan
    # carries each step's eps key instead and the step draws its (k, B, Z) from it.
    xs = (steps_S, jnp.swapaxes(perm_MxSxB, 0, 1), keys_SxMx2[..., 0],
          eps_SxMxBxZ if K == 1 else eps_keys_SxM)
    if corrupting:  # a separate stream per step: fold_in(step key, salt), see corruption.py
      step_key = lambda s: jax.vmap(lambda k: corruption.step_key(k, s))(train_keys)
      xs += (jax.vmap(step_key)(steps_S),)
    if squeeze:
      params, opt_state, hparams = jax.tree.map(lambda a: a[0], (params, opt_state, hparams))
      xs = jax.tree.map(lambda a: a[:, 0] if a.ndim > 1 else a, xs)

    def body(carry, xs):
      params, opt_state = carry
      step, idx, bin_key, eps, *corrupt_key = xs
      if dynamic:
        draw = lambda k: uniform(k, (B, math.prod(image_shape)))
        u = draw(bin_key) if squeeze else jax.vmap(draw)(bin_key)
      else:
        u = jnp.zeros((B, 1) if squeeze else (M, B, 1), jnp.float32)
      # Noise is drawn for the global batch and then sharded: results do not depend on the
      # number of devices.
      u = jax.lax.with_sharding_constraint(u, shard_batch)
      if K > 1:  # eps holds the step's eps key(s), the key k = 1 draws its (B, Z) from
        draw_eps = lambda k: jax.random.normal(k, (K, B, Z))
        eps = draw_eps(eps) if squeeze else jax.vmap(draw_eps)(eps)
      eps = jax.lax.with_sharding_constraint(eps, shard_eps)
      if corrupting:  # the corruption's noise, also drawn for the global batch
        draw_c = lambda k: corruption.draw_noise(corrupt_kind, k, (B, *image_shape), uniform)
        c = draw_c(corrupt_key[0]) if squeeze else jax.vmap(draw_c)(corrupt_key[0])
        u = (u, jax.lax.with_sharding_constraint(c, shard_batch))
      params, opt_state, metrics = sharded_step(params, opt_state, hparams, images, idx, u,
                                                eps, step)
      return (params, opt_state), metrics

    (params, opt_state), ms = jax.lax.scan(body, (params, opt_state), xs)
    if squeeze:
      params, opt_state = jax.tree.map(lambda a: a[None], (params, opt_state))
      ms = jax.tree.map(lambda a: a[:, None], ms)
    bad_SxM = ~(jnp.isfinite(ms["loss"]) & jnp.isfinite(ms["grad_norm"]))
    first_bad = jnp.where(bad_SxM.any(0), jnp.argmax(bad_SxM, axis=0) + epoch * S, -1)
    means = jax.tree.map(lambda a: jnp.mean(a, axis=0), ms)
    means["nonfinite_step"] = first_bad
    return params, opt_state, means

  return jax.jit(epoch_fn, donate_argnums=(0, 1))


def grad_norm(grads):
  """The global L2 norm of the gradients (`train/grad_norm`, and the divergence check).

  The barrier keeps its squares and sums out of the gradient and Adam fusions: fused there,
  XLA:CPU materialises g^2 a second time per leaf and tiles the sums into 32x32
  reduce-windows, about 0.3 ms of a 2 ms batch-20 step (benchmarks/README.md, "fusednorm").
  """
  return optax.tree.norm(jax.lax.optimization_barrier(grads))


def build_evaluate(*, graphdef, rest, mesh, config, image_shape, num_members: int,
                   num_padded: int, eval_batch: int):
  """Returns jitted `evaluate(params, images, mask, betas, seeds) -> metrics (M,)`.

  `images` (num_padded, H, W, C) uint8 and `mask` (num_padded,) are sharded over devices;
  each device scans over batches of `eval_batch`. Sums are `psum`-ed and divided by the
  number of real (unmasked) images. Runs at full float32 matmul precision.

  The metrics are the single-sample rec, kl, neg_elbo and loss, and for a VAE trained on
  k > 1 samples also neg_iwae: -L_k, the bound at the training k, on the test images. Its
  noise is keyed like the test-NLL estimate's (`likelihood.nll_key(seed)`, per global image
  and sample index), so it equals `python -m vae_jax.evaluate --k K` on the same parameters
  and does not depend on the number of devices.
  """
  Z = models.noise_dim(config.model)
  M = num_members
  n_dev = mesh.devices.size
  per_dev = num_padded // n_dev
  nb = per_dev // eval_batch
  k = config.num_importance_samples if config.model.name == "vae" else 1
  sample_chunk = min(k, likelihood.default_chunks()[0])

  def device_eval(params, images, mask, betas, eps_MxNxZ, nll_keys_M):
    x_all = images.reshape(nb, eval_batch, *image_shape)
    m_all = mask.reshape(nb, eval_batch)
    e_all = eps_MxNxZ.reshape(M, nb, eval_batch, Z)
    first = jax.lax.axis_index("data") * per_dev  # global index of this device's first image

    def member(p, beta, e_nb, nll_key):
      model = nnx.merge(graphdef, p, rest)

      def batch(args):
        x_u8, m, e, b = args
        x = x_u8.astype(jnp.float32) / 255.0
        per = objectives.eval_metrics(model, x, e, beta)
        if k > 1:
          idx = first + b * eval_batch + jnp.arange(eval_batch)
          per["neg_iwae"] = -likelihood.log_px_images(
              likelihood.latent_model(model), x, idx, nll_key, k, sample_chunk=sample_chunk)
        return {name: jnp.sum(v * m) for name, v in per.items()}

      sums = jax.lax.map(batch, (x_all, m_all, e_nb, jnp.arange(nb)))
      return jax.tree.map(lambda a: jnp.sum(a, 0), sums)

    sums = over_members(member, M)(params, betas, e_all, nll_keys_M)
    sums = jax.lax.psum(sums, "data")
    count = jax.lax.psum(jnp.sum(mask), "data")
    return jax.tree.map(lambda a: a / count, sums)

  sharded = jax.shard_map(device_eval, mesh=mesh,
                          in_specs=(P(), P("data"), P("data"), P(), P(None, "data"), P()),
                          out_specs=P())

  def evaluate(params, images, mask, betas, seeds_M):
    eval_keys = member_keys(seeds_M, KEY_EVAL)
    eps = jax.vmap(lambda key: jax.random.normal(key, (num_padded, Z)))(eval_keys)
    eps = jax.lax.with_sharding_constraint(eps, NamedSharding(mesh, P(None, "data")))
    return sharded(params, images, mask, betas, eps, jax.vmap(likelihood.nll_key)(seeds_M))

  jitted = jax.jit(evaluate)

  def run(*args):
    # GPUs default to TF32 matmuls; likelihoods must not depend on the device.
    with jax.default_matmul_precision("float32"):
      return jitted(*args)

  return run
