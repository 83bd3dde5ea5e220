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

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from vae_jax import objectives, optim

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


def build_train_epoch(*, graphdef, rest, tx, mesh, config, image_shape, num_train: int,
                      num_members: int):
  """Returns jitted `epoch(params, opt_state, images, hparams, seeds, epoch) -> (params,
  opt_state, metrics)`; params and opt_state are donated. metrics hold per-member means over
  the epoch's steps, plus `nonfinite_step` (the first step whose loss or gradient was not
  finite, or -1)."""
  B = config.batch_size
  S = num_train // B
  Z = config.model.latent_dim
  dynamic = config.data.binarization == "dynamic"
  lr_mult = optim.schedule(config, S)
  M = num_members
  shard_batch = NamedSharding(mesh, P(None, "data"))

  def member_step(params, opt_state, hp, images, idx_b, u_b, eps_bxZ, step):
    x = images[idx_b].astype(jnp.float32) / 255.0
    if dynamic:
      x = (u_b < x).astype(jnp.float32)

    def loss_of(p):
      model = nnx.merge(graphdef, p, rest)
      return objectives.loss_fn(model, x, x, eps_bxZ, hp, step)

    (_, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    # Data parallelism: every device holds 1/n of the batch; the mean of the per-device
    # mean gradients is the gradient of the global batch mean.
    grads = jax.lax.pmean(grads, "data")
    metrics = jax.lax.pmean(metrics, "data")
    metrics["grad_norm"] = optax_global_norm(grads)
    d, opt_state = tx.update(grads, opt_state, params)
    params = optim.apply_update(params, d, hp["learning_rate"] * lr_mult(step))
    return params, opt_state, metrics

  def device_step(params, opt_state, hp, images, idx_MxB, u_MxB, eps_MxBxZ, step):
    f = functools.partial(member_step, images=images, step=step)
    return over_members(lambda p, o, h, i, u, e: f(p, o, h, idx_b=i, u_b=u, eps_bxZ=e), M)(
        params, opt_state, hp, idx_MxB, u_MxB, eps_MxBxZ)

  sharded_step = jax.shard_map(
      device_step, mesh=mesh,
      in_specs=(P(), P(), P(), P(), P(None, "data"), P(None, "data"), P(None, "data"), P()),
      out_specs=(P(), P(), P()))

  def epoch_fn(params, opt_state, images, hparams, seeds_M, epoch):
    shuffle_keys = member_keys(seeds_M, KEY_SHUFFLE)
    train_keys = member_keys(seeds_M, KEY_TRAIN)
    perm_MxSxB = jax.vmap(lambda k: jax.random.permutation(
        jax.random.fold_in(k, epoch), num_train)[:S * B].reshape(S, B))(shuffle_keys)

    def body(carry, xs):
      params, opt_state = carry
      s, idx_MxB = xs
      step = epoch * S + s
      keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, step)))(train_keys)
      if dynamic:
        u = jax.vmap(lambda k: jax.random.uniform(k, (B, *image_shape)))(keys[:, 0])
      else:
        u = jnp.zeros((M, B, 1), jnp.float32)
      eps = jax.vmap(lambda k: jax.random.normal(k, (B, Z)))(keys[:, 1])
      u = jax.lax.with_sharding_constraint(u, shard_batch)
      eps = jax.lax.with_sharding_constraint(eps, shard_batch)
      params, opt_state, metrics = sharded_step(params, opt_state, hparams, images, idx_MxB,
                                                u, eps, step)
      return (params, opt_state), metrics

    (params, opt_state), ms = jax.lax.scan(
        body, (params, opt_state), (jnp.arange(S), jnp.swapaxes(perm_MxSxB, 0, 1)))
    bad_SxM = ~(jnp.isfinite(ms["loss"]) & jnp.isfinite(ms["grad_norm"]))
    first_bad = jnp.where(bad_SxM.any(0), jnp.argmax(bad_SxM, axis=0) + epoch * S, -1)
    means = jax.tree.map(lambda a: jnp.mean(a, axis=0), ms)
    means["nonfinite_step"] = first_bad
    return params, opt_state, means

  return jax.jit(epoch_fn, donate_argnums=(0, 1))


def optax_global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def build_evaluate(*, graphdef, rest, mesh, config, image_shape, num_members: int,
                   num_padded: int, eval_batch: int):
  """Returns jitted `evaluate(params, images, mask, betas, seeds) -> metrics (M,)`.

  `images` (num_padded, H, W, C) uint8 and `mask` (num_padded,) are sharded over devices;
  each device scans over batches of `eval_batch`. Sums are `psum`-ed and divided by the
  number of real (unmasked) images. Runs at full float32 matmul precision.
  """
  Z = config.model.latent_dim
  M = num_members
  n_dev = mesh.devices.size
  per_dev = num_padded // n_dev
  nb = per_dev // eval_batch

  def device_eval(params, images, mask, betas, eps_MxNxZ):
    x_all = images.reshape(nb, eval_batch, *image_shape)
    m_all = mask.reshape(nb, eval_batch)
    e_all = eps_MxNxZ.reshape(M, nb, eval_batch, Z)

    def member(p, beta, e_nb):
      model = nnx.merge(graphdef, p, rest)

      def batch(args):
        x_u8, m, e = args
        x = x_u8.astype(jnp.float32) / 255.0
        per = objectives.eval_metrics(model, x, e, beta)
        return {k: jnp.sum(v * m) for k, v in per.items()}

      sums = jax.lax.map(batch, (x_all, m_all, e_nb))
      return jax.tree.map(lambda a: jnp.sum(a, 0), sums)

    sums = over_members(member, M)(params, betas, e_all)
    sums = jax.lax.psum(sums, "data")
    count = jax.lax.psum(jnp.sum(mask), "data")
    return jax.tree.map(lambda a: a / count, sums)

  sharded = jax.shard_map(device_eval, mesh=mesh,
                          in_specs=(P(), P("data"), P("data"), P(), P(None, "data")),
                          out_specs=P())

  def evaluate(params, images, mask, betas, seeds_M):
    eval_keys = member_keys(seeds_M, KEY_EVAL)
    eps = jax.vmap(lambda k: jax.random.normal(k, (num_padded, Z)))(eval_keys)
    eps = jax.lax.with_sharding_constraint(eps, NamedSharding(mesh, P(None, "data")))
    return sharded(params, images, mask, betas, eps)

  jitted = jax.jit(evaluate)

  def run(*args):
    # GPUs default to TF32 matmuls; likelihoods must not depend on the device.
    with jax.default_matmul_precision("float32"):
      return jitted(*args)

  return run
