"""The VampPrior VAE (`models/vampprior.py`): its prior's density against answers computed by
hand, its IWAE bound, and that it trains, vectorises, resumes and is evaluated like a VAE."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats

from tests.helpers import fake_dataset, final_params, tiny_config
from vae_jax import finish, marginal_likelihood, models, objectives, optim, step, trainer, validate
from vae_jax.errors import UserError

SHAPE = (6, 6, 1)


def _config(k=7, z=3, **overrides):
  c = tiny_config(**{"model.name": "vampprior_vae", "model.latent_dim": z,
                     "model.hidden_sizes": (16,), "model.activation": "tanh",
                     "model.vampprior_components": k, **overrides})
  validate.validate(c)
  return c


def _model(k=7, z=3, seed=0, **overrides):
  c = _config(k, z, seed=seed, **overrides)
  return nnx.merge(*models.init_params(c, SHAPE))


def _numpy_components(model):
  """q(z | u_k) of every pseudo-input, by hand: u = sigmoid(w), then the encoder's dense layers
  (tanh between them) in float64, split into mean and log-variance."""
  h = 1.0 / (1.0 + np.exp(-np.asarray(model.pseudo_input_logits[...], np.float64)))
  h = h.reshape(len(h), -1)
  layers = model.encoder.mlp.layers
  for i, layer in enumerate(layers):
    h = h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)
    if i < len(layers) - 1:
      h = np.tanh(h)
  return np.split(h, 2, axis=-1)


def test_one_component_makes_the_prior_the_pseudo_input_s_gaussian_posterior():
  model = _model(k=1)
  mean, logvar = (a[0] for a in _numpy_components(model))
  z = np.random.default_rng(0).normal(size=(4, 5, 3))
  want = stats.norm.logpdf(z, mean, np.exp(0.5 * logvar)).sum(-1)
  np.testing.assert_allclose(model.log_prior(jnp.asarray(z, jnp.float32)), want, rtol=1e-5,
                             atol=1e-4)
  draws = np.asarray(model.sample_prior(jax.random.key(0), 20_000), np.float64)
  np.testing.assert_allclose(draws.mean(0), mean, atol=4 * np.exp(0.5 * logvar).max() / 140)
  np.testing.assert_allclose(draws.std(0), np.exp(0.5 * logvar), rtol=0.03)


def test_log_prior_is_the_log_mean_exp_over_the_components_by_hand():
  model = _model(k=7, seed=3)
  # Spread the pseudo-inputs apart so the components differ.
  model.pseudo_input_logits[...] = jax.random.normal(jax.random.key(1), (7, *SHAPE)) * 2.0
  mean_KxZ, logvar_KxZ = _numpy_components(model)
  assert np.ptp(mean_KxZ, axis=0).min() > 1e-2
  z = np.random.default_rng(1).normal(size=(2, 4, 3))
  log_n = stats.norm.logpdf(z[:, :, None, :], mean_KxZ, np.exp(0.5 * logvar_KxZ)).sum(-1)
  want = special.logsumexp(log_n, axis=-1) - np.log(7)
  np.testing.assert_allclose(model.log_prior(jnp.asarray(z, jnp.float32)), want, rtol=1e-5,
                             atol=1e-4)
  # ... and it is what the log weights use: log p(z) at the z that eps draws.
  x = jnp.asarray(np.random.default_rng(2).random((4, *SHAPE)) < 0.5, jnp.float32)
  q = model.encode(x)
  eps = jax.random.normal(jax.random.key(2), (2, 4, 3))
  z = q[0] + jnp.exp(0.5 * q[1]) * eps
  np.testing.assert_allclose(model.log_weight_terms(q, x, eps)[1], model.log_prior(z),
                             rtol=1e-6)


def test_the_iwae_bound_rises_with_k():
  model = _model(k=5, seed=1)
  x = jnp.asarray(np.random.default_rng(3).random((20, *SHAPE)) < 0.4, jnp.float32)
  # 50 copies of each image: each copy draws its own samples (noise keyed per image index), so
  # the means below average 1,000 independent estimates.
  x_rep = jnp.tile(x, (50, 1, 1, 1))
  model_fn, params = marginal_likelihood.autoencoder_latents(model)
  log_px = {k: np.asarray(marginal_likelihood.iwae_log_px(
      model_fn, params, x_rep, jax.random.key(0), num_samples=k, sample_chunk=10,
      image_chunk=200), np.float64) for k in (1, 10, 100)}
  bounds = [log_px[k].mean() for k in (1, 10, 100)]
  assert bounds[0] < bounds[1] < bounds[2], bounds
  # L_1 is the one-sample ELBO: its mean is the test -ELBO's (negated), within the noise.
  eps = jax.random.normal(jax.random.key(4), (100, 20, 3))
  neg_elbo = jax.vmap(lambda e: objectives.eval_metrics(model, x, e, 1.0)["neg_elbo"])(eps)
  stderr = np.hypot(np.std(neg_elbo) / np.sqrt(neg_elbo.size),
                    log_px[1].std() / np.sqrt(log_px[1].size))
  assert abs(-float(np.mean(neg_elbo)) - bounds[0]) < 5 * stderr, (bounds[0], stderr)


def test_the_prior_trains_the_pseudo_inputs():
  """A step moves the pseudo-inputs (the sigmoid passes gradients wherever w lies)."""
  c = _config(learning_rate=1e-2)
  graphdef, params, rest = models.init_params(c, SHAPE)
  tx = optim.transform(c)
  spec = step.StepSpec.from_config(c, graphdef=graphdef, rest=rest, tx=tx, dataset_size=64)
  hp = {f: jnp.float32(c[f]) for f in objectives.member_hparams(c)}
  x = jnp.asarray(np.random.default_rng(4).random((16, *SHAPE)) < 0.4, jnp.float32)
  batch = step.Batch(x, x, jax.random.normal(jax.random.key(5), (16, 3)))
  new, _, _ = jax.jit(functools.partial(step.train_step, spec=spec))(
      params, tx.init(params), batch, hp, 0)
  moved = np.abs(np.asarray(new["pseudo_input_logits"]) - np.asarray(params["pseudo_input_logits"]))
  assert (moved > 0).mean() > 0.9


@pytest.mark.parametrize("overrides,field", [
    ({"free_bits": 0.5}, "free_bits"),
    ({"objective": "beta_tcvae"}, "model.name"),
    ({"objective": "annealed_vae"}, "model.name"),
    ({"objective": "dip_vae_ii"}, "model.name"),
    ({"objective": "factor_vae"}, "model.name"),
    ({"model.vampprior_components": 0}, "model.vampprior_components"),
    ({"model.vampprior_init_std": -1.0}, "model.vampprior_init_std"),
    ({"model.stochastic_layers": 2}, "model.stochastic_layers"),
])
def test_what_needs_a_factorised_standard_normal_prior_refuses_it_in_one_line(overrides, field):
  c = tiny_config(**{"model.name": "vampprior_vae", **overrides})
  with pytest.raises(UserError) as e:
    validate.validate(c)
  assert f"config.{field}=" in str(e.value) and "\n" not in str(e.value), e.value


@pytest.mark.slow
def test_it_trains_vectorised_resumes_exactly_and_is_evaluated_like_a_vae(tmp_path):
  ds = fake_dataset(shape=SHAPE)
  base = dict(eval_nll_k=20, kl_decomposition_points=30, num_importance_samples=2,
              **{"model.vampprior_components": 6, "model.latent_dim": 3})
  members = [tiny_config(num_epochs=3, beta=b, **{"model.name": "vampprior_vae", **base})
             for b in (1.0, 0.5)]
  res = trainer.train_group(members, [tmp_path / "b1", tmp_path / "b05"], dataset=ds)
  assert res[0]["members_trained_together"] == 2  # one vectorised program
  for r in res:
    assert np.isfinite([r["test/neg_elbo"], r["test/nll"], r["test/neg_iwae"]]).all()
    assert r["test/nll"] <= r["test/neg_elbo"] + 0.5  # the k = 20 bound is tighter than L_1
    # MI and TC need only q(z|x); the dimension-wise KL needs a factorised prior.
    assert "test/index_code_mi" in r and "test/total_correlation" in r
    assert "test/dimwise_kl" not in r and "test/kl_per_dim" not in r
  # Alone, the first member is what it was in the group, and resuming changes nothing.
  alone = tiny_config(num_epochs=1, **{"model.name": "vampprior_vae", **base})
  trainer.train_group([alone], [tmp_path / "alone"], dataset=ds)
  trainer.train_group([tiny_config(num_epochs=3, **{"model.name": "vampprior_vae", **base})],
                    [tmp_path / "alone"], dataset=ds)
  for a, b in zip(final_params(members[0], tmp_path / "b1", ds),
                  final_params(members[0], tmp_path / "alone", ds)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  resumed = json.loads((tmp_path / "alone" / "results.json").read_text())
  assert resumed["epochs"] == 3 and np.isfinite(resumed["test/nll"])


@pytest.mark.slow
def test_run_figures_draw_its_samples_traversals_and_pseudo_inputs(tmp_path):
  ds = fake_dataset(shape=SHAPE)
  c = _config(num_plot_images=4, **{"model.latent_dim": 2})
  model = models.from_config(c.model, SHAPE, nnx.Rngs(0))
  paths = finish.run_figures(c, tmp_path, model, ds)
  assert {"reconstructions", "samples", "latents", "manifold", "traversals",
          "pseudo_inputs"} <= set(paths)
  assert (tmp_path / "traversals.gif").stat().st_size > 0
  for name in ("samples", "traversals", "pseudo_inputs"):
    assert (tmp_path / f"{name}.png").stat().st_size > 1000
