"""The contract every model family in `models.FAMILIES` keeps, checked on each of them: what
the rest of the library asks of a model (`models/base.py`) it answers consistently."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import tiny_config
from vae_jax import models, objectives, optim, step, validate

SHAPE = (6, 6, 1)
FAMILIES = sorted(models.FAMILIES)
STOCHASTIC = [f for f in FAMILIES if models.FAMILIES[f].stochastic]


def _config(family, **overrides):
  """A tiny config of `family`: 2 latent units (and 2 in z2, 5 pseudo-inputs)."""
  c = tiny_config(**{"model.name": family, "model.latent_dim": 2, "model.hidden_sizes": (16,),
                     "model.top_latent_dim": 2, "model.top_hidden_sizes": (8,),
                     "model.vampprior_components": 5, **overrides})
  validate.validate(c)
  return c


def _model(family, **overrides):
  c = _config(family, **overrides)
  return c, nnx.merge(*models.init_params(c, SHAPE))


def _x(b=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random((b, *SHAPE)) < 0.4, jnp.float32)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_config_names_the_family_it_builds(family):
  c, model = _model(family)
  assert type(model) is models.FAMILIES[family] and model.name == family
  assert models.family_of(c.model) is models.FAMILIES[family]
  # noise_dim is known from the config alone (the trainer draws the noise before any model).
  assert model.noise_dim == models.noise_dim(c.model)


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_and_decode_shapes(family):
  _, model = _model(family)
  mean, logvar = model.encode(_x())
  assert mean.shape == (3, 2) and mean.dtype == jnp.float32
  assert (logvar is None) == (not model.stochastic)
  if logvar is not None:
    assert logvar.shape == (3, 2)
  out = model.decode(mean)
  assert out.shape == (3, *SHAPE) and out.dtype == jnp.float32


@pytest.mark.parametrize("family", STOCHASTIC)
def test_log_weight_terms_have_one_value_per_sample_and_image(family):
  _, model = _model(family)
  x = _x()
  eps = jax.random.normal(jax.random.key(0), (4, 3, model.noise_dim))
  terms = model.log_weight_terms(model.encode(x), x, eps)
  assert [t.shape for t in terms] == [(4, 3)] * 3
  assert all(bool(jnp.all(jnp.isfinite(t))) for t in terms)
  # log p(x|z) is the decoder's likelihood at the z that eps[..., :latent_dim] draws.
  mean, logvar = model.encode(x)
  z = mean + jnp.exp(0.5 * logvar) * eps[..., :model.latent_dim]
  np.testing.assert_allclose(terms[0], model.log_likelihood(x, z), rtol=1e-6)


@pytest.mark.parametrize("family", STOCHASTIC)
def test_the_prior_over_the_posterior_averages_to_one(family):
  """E_q[p(z) / q(z|x)] = 1 for any normalised p and the q that samples z: the log weights'
  prior and posterior parts are densities of the distributions the family samples from."""
  _, model = _model(family)
  x = _x(1)
  n = 40_000
  eps = jax.random.normal(jax.random.key(1), (n, 1, model.noise_dim))
  _, log_p, log_q = jax.jit(lambda e: model.log_weight_terms(model.encode(x), x, e))(eps)
  w = np.exp(np.asarray(log_p - log_q, np.float64)[:, 0])
  assert abs(w.mean() - 1.0) < 5 * w.std() / math.sqrt(n) + 1e-3, (w.mean(), w.std())


@pytest.mark.parametrize("family", STOCHASTIC)
def test_prior_samples_have_the_prior_density_s_mean(family):
  """sample_prior and log p(z) describe one distribution: the mean of prior draws equals the
  importance-weighted mean E_q[z p(z) / q(z|x)] of posterior draws."""
  _, model = _model(family)
  x = _x(1)
  n = 40_000
  z_p = np.asarray(model.sample_prior(jax.random.key(2), n), np.float64)
  assert z_p.shape == (n, model.latent_dim) and np.isfinite(z_p).all()
  eps = jax.random.normal(jax.random.key(3), (n, 1, model.noise_dim))
  mean, logvar = model.encode(x)
  _, log_p, log_q = jax.jit(lambda e: model.log_weight_terms((mean, logvar), x, e))(eps)
  w = np.exp(np.asarray(log_p - log_q, np.float64)[:, 0])
  z_q = np.asarray(mean + jnp.exp(0.5 * logvar) * eps[:, 0, :model.latent_dim], np.float64)
  weighted = (w[:, None] * z_q).mean(0) / w.mean()
  tol = 6 * (z_p.std(0) / math.sqrt(n) + np.sqrt((w[:, None] * z_q).var(0) / n) / w.mean())
  assert np.all(np.abs(z_p.mean(0) - weighted) < tol + 1e-3), (z_p.mean(0), weighted, tol)


@pytest.mark.parametrize("family", STOCHASTIC)
def test_the_elbo_s_kl_is_the_monte_carlo_kl_or_its_closed_form(family):
  """Where the family has an analytic KL its Monte Carlo mean of log q - log p agrees with
  kl_per_dim's sum; where it has none the test -ELBO's kl is the sampled log q - log p."""
  _, model = _model(family)
  x = _x(2)
  q = model.encode(x)
  kl = model.kl_per_dim(q)
  assert (kl is not None) == model.standard_normal_prior
  n = 40_000
  eps = jax.random.normal(jax.random.key(4), (n, 2, model.noise_dim))
  _, log_p, log_q = jax.jit(lambda e: model.log_weight_terms(q, x, e))(eps)
  gap = np.asarray(log_q - log_p, np.float64)
  if kl is not None:
    assert kl.shape == (2, 2)
    np.testing.assert_allclose(gap.mean(0), np.asarray(kl).sum(-1),
                               atol=5 * gap.std(0).max() / math.sqrt(n))
  per = objectives.eval_metrics(model, x, eps[0], 1.0)
  want = np.asarray(kl).sum(-1) if kl is not None else gap[0]
  np.testing.assert_allclose(per["kl"], want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(per["neg_elbo"], per["rec"] + per["kl"], rtol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_training_steps_lower_the_loss(family):
  c = _config(family, learning_rate=1e-2)
  graphdef, params, rest = models.init_params(c, SHAPE)
  tx = optim.transform(c)
  spec = step.StepSpec.from_config(c, graphdef=graphdef, rest=rest, tx=tx, dataset_size=128)
  hparams = {f: jnp.float32(c[f]) for f in objectives.member_hparams(c)}
  x = _x(16, seed=5)
  eps = jax.random.normal(jax.random.key(6), (16, models.noise_dim(c.model)))
  train_step = jax.jit(lambda p, o, s: step.train_step(p, o, step.Batch(x, x, eps), hparams, s,
                                                       spec=spec))
  opt_state, losses = tx.init(params), []
  for s in range(5):
    new, opt_state, metrics = train_step(params, opt_state, s)
    assert set(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, params, new)))
    params = new
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all() and losses[-1] < losses[0] - 1.0, losses


_SHARED = {"encoder", "decoder"}
_OWN = {"ae": set(), "vae": set(), "two_layer_vae": {"top_encoder", "top_decoder"},
        "vampprior_vae": {"pseudo_input_logits"}}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_parameter_tree_is_stable(family):
  """Checkpoints restore by these names: the encoder and decoder of every family, then the
  family's own (a learned scale adds log_scale); the same values from the same seed; and the
  training program's graph holds the same parameters (`compute_graphdef`)."""
  c = _config(family)
  _, params, rest = models.init_params(c, SHAPE)
  assert set(params) == _SHARED | _OWN[family]
  again = models.init_params(c, SHAPE)[1]
  jax.tree.map(np.testing.assert_array_equal, params, again)
  c.model.learn_scale = True
  assert set(models.init_params(c, SHAPE)[1]) == _SHARED | _OWN[family] | {"log_scale"}
  c.model.learn_scale = False
  trained = nnx.merge(models.compute_graphdef(c, SHAPE), params, rest)
  assert jax.tree.map(np.shape, nnx.state(trained, nnx.Param).to_pure_dict()) == jax.tree.map(
      np.shape, params)
  if family == "ae":
    return
  # The encoder and decoder are drawn from the init key first, as a VAE's, so adding a
  # family's own parts never moves the parameters the families share.
  vae = models.init_params(_config("vae"), SHAPE)[1]
  for k in _SHARED:
    jax.tree.map(np.testing.assert_array_equal, params[k], vae[k])


@pytest.mark.parametrize("family", FAMILIES)
def test_capabilities_are_what_the_objectives_check(family):
  """An objective that needs a factorised N(0, I) prior refuses every family without one, in
  one line; the ELBO and IWAE take every stochastic family."""
  cls = models.FAMILIES[family]
  for objective in ("annealed_vae", "beta_tcvae", "dip_vae_i", "dip_vae_ii", "factor_vae"):
    c = tiny_config(objective=objective, **{"model.name": family})
    if cls.standard_normal_prior:
      validate.validate(c)
      continue
    with pytest.raises(Exception) as e:
      validate.validate(c)
    assert type(e.value).__name__ == "UserError" and "\n" not in str(e.value), e.value
  if cls.stochastic:
    validate.validate(tiny_config(objective="iwae", num_importance_samples=3,
                                  **{"model.name": family}))


@pytest.mark.slow
@pytest.mark.parametrize("objective", sorted(objectives.OBJECTIVES))
def test_every_objective_with_every_family_trains_a_step_or_is_refused(objective):
  """The contract over the whole table of objectives × the table of families: validation
  either refuses the pair in one line, or one jitted step of `step.train_step` on it (with the
  objective's own modules) gives finite metrics holding the four every objective reports and
  changes the parameters. The ELBO must train every family; every other pair is refused
  exactly when its family lacks a capability the objective needs."""
  trained = []
  for family in FAMILIES:
    c = tiny_config(objective=objective, batch_size=8, **{
        "model.name": family, "model.latent_dim": 2, "model.hidden_sizes": (16,),
        "model.top_latent_dim": 2, "model.top_hidden_sizes": (8,),
        "model.vampprior_components": 5, "factor_vae.discriminator_sizes": (8, 8)})
    try:
      validate.validate(c)
    except Exception as e:  # pylint: disable=broad-except
      assert type(e).__name__ == "UserError" and "\n" not in str(e), (family, e)
      continue
    modules = objectives.OBJECTIVES[objective].modules
    graphdef, params, rest = models.init_params(c, SHAPE, auxiliary=modules)
    tx = optim.transform(c)
    spec = step.StepSpec.from_config(c, graphdef=graphdef, rest=rest, tx=tx, dataset_size=128)
    hparams = {f: jnp.float32(c[f]) for f in objectives.member_hparams(c)}
    x = _x(8, seed=7)
    eps = jax.random.normal(jax.random.key(8), (8, models.noise_dim(c.model)))
    batch = step.Batch(x, x, eps, jax.random.key(9))
    new, _, metrics = jax.jit(functools.partial(step.train_step, spec=spec))(
        params, tx.init(params), batch, hparams, 0)
    assert {"loss", "rec", "kl", "neg_elbo", "grad_norm"} <= set(metrics), (family, metrics)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values()), (family, metrics)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), params, new))
    assert any(moved), family
    trained.append(family)
  cls = models.FAMILIES
  if objective == "elbo":
    assert trained == FAMILIES
  elif objective == "iwae":
    assert trained == [f for f in FAMILIES if cls[f].stochastic]
  else:  # the disentangling objectives regularise a one-layer posterior against N(0, I)
    assert trained == [f for f in FAMILIES if cls[f].standard_normal_prior], trained
