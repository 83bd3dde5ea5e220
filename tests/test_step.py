"""The training step as a function: one `step.train_step` on a tiny batch equals the β-VAE's
loss, its gradient and Adam's update written out by hand; the compiled epoch is its steps one
after another."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from tests.helpers import fake_dataset, tiny_config
from vae_jax import models, objectives, optim, step, trainer
from vae_jax.data import batches

SHAPE = (8, 8, 1)
BETA, LR = 2.0, 3e-3


def _setup(**overrides):
  config = tiny_config(beta=BETA, learning_rate=LR, **overrides)
  graphdef, params, rest = models.init_params(config, SHAPE)
  tx = optim.transform(config)
  spec = step.StepSpec.from_config(config, graphdef=graphdef, rest=rest, tx=tx,
                                   dataset_size=128)
  hparams = {f: jnp.float32(config[f]) for f in objectives.member_hparams(config)}
  return config, spec, params, tx.init(params), hparams


def _batch(seed):
  rs = np.random.default_rng(seed)
  x = (rs.random((16, *SHAPE)) < 0.5).astype(np.float32)
  return step.Batch(x, x, rs.standard_normal((16, 4)).astype(np.float32))


def _reference_loss(params, spec, batch):
  """The β-VAE's loss written out: Bernoulli NLL of the decoder's logits summed over pixels,
  β times the analytic KL against N(0, I) summed over latents, mean over the batch."""
  model = nnx.merge(spec.graphdef, params, spec.rest)
  mean, logvar = model.encode(batch.x_in)
  z = mean + jnp.exp(0.5 * logvar) * batch.eps
  logits = model.decode(z).reshape(16, -1)
  x = batch.x_target.reshape(16, -1)
  rec = jnp.sum(jnp.logaddexp(0.0, logits) - x * logits, axis=1)  # -log Bernoulli(x; σ(l))
  kl = 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=1)
  return jnp.mean(rec + BETA * kl), (jnp.mean(rec), jnp.mean(kl))


def _reference_adam(p, g, m, v, t, b1=0.9, b2=0.999, eps=1e-8):
  """Adam (Kingma & Ba, 2015) at step t >= 1, in float64."""
  p, g, m, v = (np.asarray(a, np.float64) for a in (p, g, m, v))
  m = b1 * m + (1 - b1) * g
  v = b2 * v + (1 - b2) * g * g
  m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
  return p - LR * m_hat / (np.sqrt(v_hat) + eps), m, v


def test_one_step_equals_the_loss_gradient_and_adam_written_by_hand():
  config, spec, params, opt_state, hparams = _setup()
  assert config.optimizer.name == "adam" and config.lr_schedule == "constant"
  batch = _batch(0)
  jitted = jax.jit(functools.partial(step.train_step, spec=spec))
  new_params, _, metrics = jitted(params, opt_state, batch, hparams, 0)

  (loss, (rec, kl)), grads = jax.jit(jax.value_and_grad(
      lambda p, b: _reference_loss(p, spec, b), has_aux=True))(params, batch)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["rec"], rec, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-6)
  np.testing.assert_allclose(metrics["neg_elbo"], rec + kl, rtol=1e-6)
  # Adam is blind to the gradient's scale; its norm is not.
  norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads)))
  np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
  zeros = jax.tree.map(np.zeros_like, params)
  expected = jax.tree.map(lambda p, g, z: _reference_adam(p, g, z, z, 1)[0], params, grads,
                          zeros)
  moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), params, expected)
  assert min(jax.tree.leaves(moved)) > 0  # every leaf moves
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), new_params,
               expected)


def test_metrics_hold_the_loss_its_parts_and_the_gradient_norm():
  _, spec, params, opt_state, hparams = _setup()
  _, _, metrics = jax.jit(functools.partial(step.train_step, spec=spec))(
      params, opt_state, _batch(0), hparams, 0)
  assert set(metrics) == {"loss", "rec", "kl", "neg_elbo", "grad_norm"}
  for name, value in metrics.items():
    assert jnp.shape(value) == () and np.isfinite(value), name


def test_a_second_call_continues_adam():
  _, spec, params, opt_state, hparams = _setup()
  jitted = jax.jit(functools.partial(step.train_step, spec=spec))  # as the notebook would
  b0, b1 = _batch(0), _batch(1)
  p1, o1, _ = jitted(params, opt_state, b0, hparams, 0)
  p2, o2, _ = jitted(p1, o1, b1, hparams, 1)
  assert int(optax.tree.get(o1, "count")) == 1 and int(optax.tree.get(o2, "count")) == 2

  grad = jax.jit(jax.grad(lambda p, b: _reference_loss(p, spec, b)[0]))
  zeros = jax.tree.map(np.zeros_like, params)
  state = jax.tree.map(lambda p, g, z: _reference_adam(p, g, z, z, 1), params,
                       grad(params, b0), zeros)
  get = lambda i: jax.tree.map(lambda s: s[i], state, is_leaf=lambda s: isinstance(s, tuple))
  # The second step starts from the library's first (so the gradients are taken at the same
  # point) and carries the hand-written moments.
  g1 = grad(p1, b1)
  expected = jax.tree.map(lambda p, g, m, v: _reference_adam(p, g, m, v, 2)[0], p1, g1,
                          get(1), get(2))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), p2, expected)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), p1, get(0))


def test_an_epoch_is_its_steps_one_after_another():
  ds = fake_dataset()
  config, spec, params, opt_state, hparams = _setup()
  epoch = step.build_train_epoch(graphdef=spec.graphdef, rest=spec.rest, tx=spec.tx,
                                 mesh=trainer.make_mesh(), config=config, image_shape=SHAPE,
                                 num_train=len(ds.train_images), num_members=1)
  stack = lambda tree: jax.tree.map(lambda a: jnp.asarray(a)[None], tree)
  seeds = jnp.asarray([config.seed], jnp.uint32)
  images = jnp.asarray(ds.train_images)
  got, _, means = epoch(stack(params), stack(opt_state), images, stack(hparams), seeds,
                        jnp.int32(0))

  plan = batches.BatchPlan.from_config(config, SHAPE, len(ds.train_images))
  steps_S, inputs = plan.epoch_steps(0), plan.epoch_inputs(seeds[0], 0)
  jitted = jax.jit(functools.partial(step.train_step, spec=spec))
  losses = []
  for s in range(plan.steps_per_epoch):
    one = jax.tree.map(lambda a, s=s: a[s], inputs)
    u, eps = plan.step_noise(one)
    x_in, x = plan.device_batch(plan.flatten_images(images), one.idx, u)
    params, opt_state, metrics = jitted(params, opt_state, step.Batch(x_in, x, eps), hparams,
                                        steps_S[s])
    losses.append(metrics["loss"])
  np.testing.assert_allclose(means["loss"][0], np.mean(losses), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6), got,
               params)


def test_member_axis_maps_or_drops():
  f = lambda a, b: {"sum": a + b}
  a, b = jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))
  np.testing.assert_array_equal(step.MemberAxis(2).over(f)(a, b)["sum"], a + b)
  one = step.MemberAxis(1)
  assert one.over(f)(a[:1], b[:1])["sum"].shape == (1, 3)
  assert one.drop(a[:1]).shape == (3,) and one.restore(one.drop(a[:1])).shape == (1, 3)
  assert one.drop(a[:, :1], axis=1).shape == (2,)
  assert one.spec("data") == jax.sharding.PartitionSpec("data")
  assert step.MemberAxis(2).spec("data") == jax.sharding.PartitionSpec(None, "data")
