"""The compiled programs: one training epoch (a `lax.scan` of pure steps) and one evaluation.

Both are `jax.jit` over a 1-D `Mesh(devices, ("data",))`. The per-device program is written
with `jax.shard_map`: each device gathers its slice of the global batch from the split held
on device, computes gradients, and averages them with `lax.pmean(..., "data")`; this is the
SPMD program `jax.pmap` used to express (pmap is in maintenance mode since JAX 0.8 and is
itself implemented on shard_map).

Every array carries a leading *member* axis M: members of a sweep that differ only in
shape-preserving values (the seed, the learning rate and their objective's hyperparameters,
`objectives.vectorised_fields`) train together, `vmap`-ed inside the same scan. A single run
is a group of one (M = 1), for which the vmap is skipped so the single-run program is exactly
the unbatched one.

Randomness follows `rng.py`; batches and their noise are made by `data/batches.py`, drawn for
the *global* batch and then sharded, so results do not depend on the number of devices.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from vae_jax import marginal_likelihood, models, objectives, optim, rng
from vae_jax.data import batches


def over_members(f: Callable, num_members: int) -> Callable:
  """vmap over the leading member axis; for a single member, squeeze it away instead."""
  if num_members > 1:
    return jax.vmap(f)

  def single(*args):
    out = f(*jax.tree.map(lambda a: a[0], args))
    return jax.tree.map(lambda a: a[None], out)

  return single


def build_train_epoch(*, graphdef, rest, tx, mesh, config, image_shape, num_train: int,
                      num_members: int, packed: bool = False):
  """Returns jitted `epoch(params, opt_state, images, hparams, seeds, epoch) -> (params,
  opt_state, metrics)`; params and opt_state are donated. metrics hold per-member means over
  the epoch's steps, plus `nonfinite_step` (the first step whose loss or gradient was not
  finite, or -1). Batches (indices, binarisation, corruption, noise) are `batches.BatchPlan`'s;
  this program only scans, shards and vmaps. `packed`: the images are bit-packed rows."""
  plan = batches.BatchPlan.from_config(config, image_shape, num_train, packed)
  S = plan.steps_per_epoch
  lr_mult = optim.schedule(config, S)
  M = num_members
  n_dev = mesh.devices.size
  # With one member the member axis is dropped for the whole scan (and restored after it),
  # so the single-run program is exactly the unbatched one, with no per-step reshapes.
  squeeze = M == 1
  batch_spec = P("data") if squeeze else P(None, "data")
  shard_batch = NamedSharding(mesh, batch_spec)
  # eps is (B, E) for k = 1 and (k, B, E) otherwise, its batch axis (1) sharded over devices.
  shard_eps = shard_batch if plan.num_samples == 1 else NamedSharding(
      mesh, P(None, "data") if squeeze else P(None, None, "data"))
  objective = config.objective
  options = objectives.static_options(config)

  axis_name = "data" if n_dev > 1 else None

  def member_step(params, opt_state, hp, images, idx_b, u_b, eps_bxZ, step, okey):
    x_in, x = plan.device_batch(images, idx_b, u_b)

    def loss_of(p):
      model = nnx.merge(graphdef, p, rest)
      return objectives.loss_fn(model, x_in, x, eps_bxZ, hp, step, objective,
                                dataset_size=num_train, options=options, key=okey,
                                axis_name=axis_name)

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
    params = optim.apply_update(params, d, optim.step_sizes(config, hp, lr_mult(step)))
    return params, opt_state, metrics

  def device_step(params, opt_state, hp, images, idx, u, eps, step, okey):
    f = lambda p, o, h, i, u_, e, k: member_step(p, o, h, images, i, u_, e, step, k)
    if not squeeze:
      f = jax.vmap(f)
    return f(params, opt_state, hp, idx, u, eps, okey)

  sharded_step = jax.shard_map(
      device_step, mesh=mesh,
      in_specs=(P(), P(), P(), P(), batch_spec, batch_spec, shard_eps.spec, P(), P()),
      # Without the pmean (one device) nothing marks the outputs as replicated; they are.
      out_specs=(P(), P(), P()), check_vma=n_dev > 1)

  def epoch_fn(params, opt_state, images, hparams, seeds_M, epoch):
    images = plan.flatten_images(images)
    xs = plan.epoch_inputs(seeds_M, epoch)
    if squeeze:
      params, opt_state, hparams = jax.tree.map(lambda a: a[0], (params, opt_state, hparams))
      xs = jax.tree.map(lambda a: a[:, 0] if a.ndim > 1 else a, xs)

    def body(carry, xs):
      params, opt_state = carry
      step, idx, bin_key, eps, *extra = xs
      corrupt_key = extra.pop(0) if plan.corrupting else None
      okey = extra.pop(0) if plan.objective_keys else None
      u, eps = plan.step_noise(bin_key, eps, corrupt_key, squeeze=squeeze, num_members=M,
                               shard_batch=shard_batch, shard_eps=shard_eps)
      params, opt_state, metrics = sharded_step(params, opt_state, hparams, images, idx, u,
                                                eps, step, okey)
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
  if jax.default_backend() != "cpu":  # measured on XLA:CPU only; elsewhere leave XLA free
    return optax.tree.norm(grads)
  return optax.tree.norm(jax.lax.optimization_barrier(grads))


def build_test_metrics(*, graphdef, rest, mesh, config, image_shape, num_members: int,
                   num_padded: int, eval_batch: int):
  """Returns jitted `test_metrics(params, images, mask, betas, seeds) -> metrics (M,)`.

  `images` (num_padded, H, W, C) uint8 and `mask` (num_padded,) are sharded over devices;
  each device scans over batches of `eval_batch`. Sums are `psum`-ed and divided by the
  number of real (unmasked) images. Runs at full float32 matmul precision.

  The metrics are the single-sample rec, kl, neg_elbo and loss, and for a VAE trained on
  k > 1 samples also neg_iwae: -L_k, the bound at the training k, on the test images. Its
  noise is keyed like the test-NLL estimate's (`rng.nll_key(seed)`, per global image and
  sample index), so it equals `python -m vae_jax.tools.nll --k K` on the same parameters
  and does not depend on the number of devices.
  """
  Z = models.noise_dim(config.model)
  M = num_members
  n_dev = mesh.devices.size
  per_dev = num_padded // n_dev
  nb = per_dev // eval_batch
  k = config.num_importance_samples if config.model.name == "vae" else 1
  sample_chunk = min(k, marginal_likelihood.default_chunks()[0])

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
          per["neg_iwae"] = -marginal_likelihood.log_px_images(
              marginal_likelihood.latent_model(model), x, idx, nll_key, k,
              sample_chunk=sample_chunk)
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

  def test_metrics(params, images, mask, betas, seeds_M):
    eval_keys = rng.member_keys(seeds_M, rng.KEY_EVAL)
    eps = jax.vmap(lambda key: jax.random.normal(key, (num_padded, Z)))(eval_keys)
    eps = jax.lax.with_sharding_constraint(eps, NamedSharding(mesh, P(None, "data")))
    return sharded(params, images, mask, betas, eps, jax.vmap(rng.nll_key)(seeds_M))

  jitted = jax.jit(test_metrics)

  def run(*args):
    # GPUs default to TF32 matmuls; likelihoods must not depend on the device.
    with jax.default_matmul_precision("float32"):
      return jitted(*args)

  return run


def build_kl_decomposition(*, graphdef, rest, config, image_shape, num_members: int,
                           num_test: int, num_points: int, eval_batch: int):
  """Returns jitted `kl_decomposition(params, images, mask, seeds) -> metrics (M,)`: Chen et
  al.'s (2018) split of the test KL into index_code_mi, total_correlation and dimwise_kl.

  q(z) is the test split's own aggregate posterior, (1/N) sum_n q(z|x_n) over its N real
  images, evaluated exactly (`objectives.kl_decomposition.decompose_over_dataset`) at one
  sample of z for each of `num_points` test images, a fixed random subset of the split
  (`kl_decomposition.evaluation_points`: never its first images, since a factor dataset's test
  split is ordered by its factors); the three terms sum to that
  sample's Monte Carlo estimate of the average KL. Full float32 matmul precision. VAEs with one
  stochastic layer only (a two-layer model's p(z1|z2) is no fixed prior).
  """
  from vae_jax.objectives import kl_decomposition  # pylint: disable=g-import-not-at-top
  M = num_members
  Z = config.model.latent_dim
  points = jnp.asarray(kl_decomposition.evaluation_points(num_test, num_points))  # real rows
  P = len(points)

  def member(p, images, mask, key):
    model = nnx.merge(graphdef, p, rest)
    x = images.reshape(-1, eval_batch, *image_shape)
    mean, logvar = jax.lax.map(lambda b: model.encode(b.astype(jnp.float32) / 255.0), x)
    mean, logvar = mean.reshape(-1, Z), logvar.reshape(-1, Z)
    eps = jax.random.normal(key, (P, Z))
    return kl_decomposition.decompose_over_dataset(mean, logvar, eps, mask, points)

  def kl_decomposition_fn(params, images, mask, seeds_M):
    keys = jax.vmap(rng.kl_decomposition_key)(seeds_M)
    return over_members(lambda p, k: member(p, images, mask, k), M)(params, keys)

  jitted = jax.jit(kl_decomposition_fn)

  def run(*args):
    with jax.default_matmul_precision("float32"):
      return jitted(*args)

  return run
