"""The training step, and the compiled programs around it.

`train_step` is one optimiser step of one member on one device: a pure function
`(params, opt_state, batch, hparams, step) -> (params, opt_state, metrics)`, its static
parts (the model's graph, the optax transformation, the objective, the learning-rate
schedule) held in a `StepSpec`. A test or a notebook calls it as it is:

    spec = step.StepSpec.from_config(config, graphdef=graphdef, rest=rest,
                                     tx=optim.transform(config), dataset_size=num_train)
    params, opt_state, metrics = step.train_step(params, opt_state, step.Batch(x, x, eps),
                                                 hparams, 0, spec=spec)

`build_train_epoch` compiles one epoch by composing transforms around it, outermost first:
`lax.scan` over the epoch's steps, `jax.shard_map` over the devices of a 1-D
`Mesh(devices, ("data",))`, `vmap` over the members of a vectorised sweep. Each device
gathers its slice of the global batch from the split held on device (`data/batches.py`
draws the batch and its noise for the *global* batch, then it is sharded, so results do not
depend on the number of devices), and `train_step` averages gradients with
`lax.pmean(..., "data")`. This is the SPMD program `jax.pmap` used to express (pmap is in
maintenance mode since JAX 0.8 and is itself implemented on shard_map).

Members of a sweep that differ only in shape-preserving values (the seed, the learning rate
and their objective's hyperparameters, `objectives.vectorised_fields`) train together, their
arrays stacked on a leading member axis M. `MemberAxis` is the one place that knows that
axis; a single run (M = 1) drops it for the whole scan, so its program is exactly the
unbatched one. The evaluation programs (`build_test_metrics`, `build_kl_decomposition`) map
over members the same way. Randomness follows `rng.py`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from vae_jax import marginal_likelihood, models, objectives, optim, rng
from vae_jax.data import batches


# The step ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepSpec:
  """The static parts of `train_step`: bound into its program, never traced."""
  graphdef: Any  # the model's graph, merged with the parameters in the step (`nnx.merge`)
  rest: Any  # the model's state besides its parameters (`models.init_params`)
  tx: optax.GradientTransformation  # gradients -> update direction (`optim.transform`)
  # (hparams, step) -> the step size(s) `optim.apply_update` scales the direction by.
  step_sizes: Callable[[Mapping[str, Any], Any], Any]
  objective: str = "elbo"  # a name in `objectives.OBJECTIVES`
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # its static options
  dataset_size: int = 0  # training images (objectives that estimate q(z) use it)
  axis_name: str | None = None  # the device axis to average over, inside shard_map

  @classmethod
  def from_config(cls, config, *, graphdef, rest, tx, dataset_size: int,
                  axis_name: str | None = None) -> "StepSpec":
    """The spec of `config`'s run on `dataset_size` training images: its objective and
    options, and step sizes learning_rate * `optim.schedule` (and the objective's modules'
    own, `optim.step_sizes`)."""
    schedule = optim.schedule(config, dataset_size // config.batch_size)
    return cls(graphdef=graphdef, rest=rest, tx=tx,
               step_sizes=functools.partial(_step_sizes, config, schedule),
               objective=config.objective, options=objectives.static_options(config),
               dataset_size=dataset_size, axis_name=axis_name)


def _step_sizes(config, schedule, hparams, step):
  return optim.step_sizes(config, hparams, schedule(step))


class Batch(NamedTuple):
  """One member's batch on one device, and its noise."""
  x_in: jax.Array  # (B, H, W, C) floats: the encoder's input (corrupted when denoising)
  x_target: jax.Array  # (B, H, W, C): what the decoder reconstructs
  eps: jax.Array  # reparameterisation noise: (B, E) for one sample per image, (k, B, E) for k
  key: jax.Array | None = None  # the objective's key (`rng.objective_key`) when it samples


def train_step(params, opt_state, batch: Batch, hparams, step, *, spec: StepSpec):
  """One optimiser step of one member: (params, opt_state, metrics).

  Args:
    params: the model's parameters (a pure dict, `models.init_params`).
    opt_state: `spec.tx`'s state for them.
    batch: the step's images and noise (`Batch`).
    hparams: the member's hyperparameters, a dict of scalars (`objectives.member_hparams`).
    step: the global step (the KL warm-up and the learning-rate schedule read it).
    spec: the static parts (`StepSpec`); bind it with `functools.partial` to jit the step.

  Returns:
    The new parameters and optimiser state, and the metrics: the objective's ("loss", "rec",
    "kl", "neg_elbo", ...; batch means, over all devices) and "grad_norm".
  """
  def loss_of(p):
    model = nnx.merge(spec.graphdef, p, spec.rest)
    return objectives.loss_fn(model, batch.x_in, batch.x_target, batch.eps, hparams, step,
                              spec.objective, dataset_size=spec.dataset_size,
                              options=spec.options, key=batch.key, axis_name=spec.axis_name)

  (_, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
  # Data parallelism: every device holds 1/n of the batch; the mean of the per-device
  # mean gradients is the gradient of the global batch mean. On one device that mean is
  # the identity, which XLA:CPU would still run as an all-reduce (a copy of every
  # gradient, ~6% of a step), so the epoch gives no axis there.
  if spec.axis_name is not None:
    grads = jax.lax.pmean(grads, spec.axis_name)
    metrics = jax.lax.pmean(metrics, spec.axis_name)
  metrics["grad_norm"] = grad_norm(grads)
  direction, opt_state = spec.tx.update(grads, opt_state, params)
  params = optim.apply_update(params, direction, spec.step_sizes(hparams, step))
  return params, opt_state, metrics


def grad_norm(grads):
  """The global L2 norm of the gradients (`train/grad_norm`, and the divergence check).

  The barrier keeps its squares and sums out of the gradient and Adam fusions: fused there,
  XLA:CPU materialises g^2 a second time per leaf and tiles the sums into 32x32
  reduce-windows, about 0.3 ms of a 2 ms batch-20 step (benchmarks/README.md, "fusednorm").
  """
  if jax.default_backend() != "cpu":  # measured on XLA:CPU only; elsewhere leave XLA free
    return optax.tree.norm(grads)
  return optax.tree.norm(jax.lax.optimization_barrier(grads))


# The member axis --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MemberAxis:
  """The leading member axis M of a vectorised group: the one place that knows its layout.

  Members' parameters, optimiser states, hyperparameters and per-member inputs are stacked
  on it, and per-member functions are `vmap`-ed over it. A single run (M = 1) drops it
  instead, `drop` before a program's body and `restore` after, so its program is exactly the
  unbatched one, with no per-step reshapes; `map` is then the function itself."""
  size: int

  @property
  def dropped(self) -> bool:
    return self.size == 1

  def drop(self, tree, axis: int = 0):
    """`tree` without the member axis (at `axis`) when it is dropped; as it is otherwise."""
    if not self.dropped:
      return tree
    return jax.tree.map(lambda a: a[(slice(None),) * axis + (0,)], tree)

  def restore(self, tree, axis: int = 0):
    """`drop` undone: the member axis (of size 1) put back at `axis`."""
    if not self.dropped:
      return tree
    return jax.tree.map(lambda a: a[(slice(None),) * axis + (None,)], tree)

  def map(self, f: Callable, out_axes: int = 0) -> Callable:
    """`f` of one member, over the members of arguments laid out as `drop` leaves them; its
    outputs' member axis (if kept) at `out_axes`."""
    return f if self.dropped else jax.vmap(f, out_axes=out_axes)

  def over(self, f: Callable) -> Callable:
    """`f` of one member, over stacked members (every argument has the leading axis)."""
    return lambda *args: self.restore(self.map(f)(*self.drop(args)))

  def spec(self, *per_member) -> P:
    """The PartitionSpec of an array laid out as `drop` leaves it, from one member's."""
    return P(*per_member) if self.dropped else P(None, *per_member)


# The epoch --------------------------------------------------------------------------------

def build_train_epoch(*, graphdef, rest, tx, mesh, config, image_shape, num_train: int,
                      num_members: int, packed: bool = False):
  """Returns jitted `epoch(params, opt_state, images, hparams, seeds, epoch) -> (params,
  opt_state, metrics)`; params and opt_state are donated. metrics hold per-member means over
  the epoch's steps, plus `nonfinite_step` (the first step whose loss or gradient was not
  finite, or -1). Batches (indices, binarisation, corruption, noise) are `batches.BatchPlan`'s;
  this program only scans, shards and vmaps `train_step`. `packed`: the images are bit-packed
  rows."""
  plan = batches.BatchPlan.from_config(config, image_shape, num_train, packed)
  S = plan.steps_per_epoch
  members = MemberAxis(num_members)
  n_dev = mesh.devices.size
  spec = StepSpec.from_config(config, graphdef=graphdef, rest=rest, tx=tx,
                              dataset_size=num_train, axis_name="data" if n_dev > 1 else None)
  # The global batch is sharded over devices along its batch axis: axis 0 of the indices,
  # the uniforms and eps (B, E) for k = 1; axis 1 of eps (k, B, E) otherwise.
  batch_spec = members.spec("data")
  eps_spec = batch_spec if plan.num_samples == 1 else members.spec(None, "data")

  def device_step(params, opt_state, hparams, images, idx, u, eps, step, okey):
    """Every member's step on this device's slice of the batch."""
    def member(params, opt_state, hparams, idx, u, eps, okey):
      x_in, x_target = plan.device_batch(images, idx, u)
      return train_step(params, opt_state, Batch(x_in, x_target, eps, okey), hparams, step,
                        spec=spec)

    return members.map(member)(params, opt_state, hparams, idx, u, eps, okey)

  sharded_step = jax.shard_map(
      device_step, mesh=mesh,
      in_specs=(P(), P(), P(), P(), batch_spec, batch_spec, eps_spec, P(), P()),
      # Without the pmean (one device) nothing marks the outputs as replicated; they are.
      out_specs=(P(), P(), P()), check_vma=n_dev > 1)

  def epoch_fn(params, opt_state, images, hparams, seeds_M, epoch):
    images = plan.flatten_images(images)
    params, opt_state, hparams, seeds = members.drop((params, opt_state, hparams, seeds_M))
    # Every member's inputs of every step, drawn up front: (S, M, ...), or (S, ...) for one.
    inputs = members.map(lambda seed: plan.epoch_inputs(seed, epoch), out_axes=1)(seeds)

    def body(carry, xs):
      params, opt_state = carry
      step, inputs = xs
      u, eps = members.map(plan.step_noise)(inputs)
      # Drawn for the global batch, then sharded like it.
      u = jax.lax.with_sharding_constraint(u, NamedSharding(mesh, batch_spec))
      eps = jax.lax.with_sharding_constraint(eps, NamedSharding(mesh, eps_spec))
      params, opt_state, metrics = sharded_step(params, opt_state, hparams, images,
                                                inputs.idx, u, eps, step,
                                                inputs.objective_key)
      return (params, opt_state), metrics

    (params, opt_state), ms = jax.lax.scan(body, (params, opt_state),
                                          (plan.epoch_steps(epoch), inputs))
    params, opt_state = members.restore((params, opt_state))
    ms = members.restore(ms, axis=1)  # (S, M)
    bad_SxM = ~(jnp.isfinite(ms["loss"]) & jnp.isfinite(ms["grad_norm"]))
    first_bad = jnp.where(bad_SxM.any(0), jnp.argmax(bad_SxM, axis=0) + epoch * S, -1)
    means = jax.tree.map(lambda a: jnp.mean(a, axis=0), ms)
    means["nonfinite_step"] = first_bad
    return params, opt_state, means

  return jax.jit(epoch_fn, donate_argnums=(0, 1))


# Evaluation -------------------------------------------------------------------------------

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
  k = config.num_importance_samples if models.family_of(config.model).stochastic else 1
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

    sums = MemberAxis(M).over(member)(params, betas, e_all, nll_keys_M)
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
  sample's Monte Carlo estimate of the average KL. Full float32 matmul precision. Families with
  one stochastic layer only (`latent_layers == 1`: a two-layer model's q(z1|x) is not its whole
  posterior). dimwise_kl, sum_j KL(q(z_j) || p(z_j)), needs a factorised prior: without one
  (the VampPrior's mixture) it is left out, while the index-code MI and the total correlation,
  which do not involve p(z), are kept (`kl_decomposition_terms`).
  """
  from vae_jax.objectives import kl_decomposition  # pylint: disable=g-import-not-at-top
  terms = kl_decomposition_terms(config)
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
    out = kl_decomposition.decompose_over_dataset(mean, logvar, eps, mask, points)
    return {name: out[name] for name in terms}

  def kl_decomposition_fn(params, images, mask, seeds_M):
    keys = jax.vmap(rng.kl_decomposition_key)(seeds_M)
    return MemberAxis(M).over(lambda p, k: member(p, images, mask, k))(params, keys)

  jitted = jax.jit(kl_decomposition_fn)

  def run(*args):
    with jax.default_matmul_precision("float32"):
      return jitted(*args)

  return run


def kl_decomposition_terms(config) -> tuple[str, ...]:
  """The terms of Chen et al.'s KL decomposition that `config`'s model family defines: all three
  for a factorised N(0, I) prior, the index-code MI and the total correlation (properties of
  q(z|x) and its aggregate alone) for another prior over one latent layer, none otherwise (an
  AE has no q(z|x); a two-layer VAE's KL is not that of one layer)."""
  family = models.family_of(config.model)
  if not family.stochastic or family.latent_layers != 1:
    return ()
  if family.standard_normal_prior:
    return ("index_code_mi", "total_correlation", "dimwise_kl")
  return ("index_code_mi", "total_correlation")
