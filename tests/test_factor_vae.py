"""FactorVAE (`objectives/factor_vae.py`): the density-ratio estimate of total correlation, the
discriminator trained beside the VAE with its own optimizer, and that it resumes and vectorises
like every objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import fake_dataset, final_params, tiny_config
from vae_jax import models, objectives, optim, trainer, validate
from vae_jax.errors import UserError
from vae_jax.objectives import factor_vae


def _gaussian_case(rho=0.8, n=40000, seed=0):
  """z ~ N(0, [[1, rho], [rho, 1]]): TC = -1/2 log(1 - rho^2), and the optimal discriminator's
  logit difference log q(z) - log q(z_1) q(z_2) in closed form."""
  rng = np.random.default_rng(seed)
  cov = np.array([[1.0, rho], [rho, 1.0]])
  z = rng.multivariate_normal(np.zeros(2), cov, size=n)
  inv = np.linalg.inv(cov)
  log_joint = -0.5 * np.einsum("ni,ij,nj->n", z, inv, z) - 0.5 * np.log(np.linalg.det(cov))
  log_marginals = -0.5 * np.sum(z**2, 1)
  ratio = lambda x: (-0.5 * np.einsum("ni,ij,nj->n", x, inv, x) - 0.5 * np.log(
      np.linalg.det(cov)) + 0.5 * np.sum(x**2, 1))
  return z, -0.5 * np.log(1 - rho**2), ratio, log_joint - log_marginals


def test_the_optimal_discriminator_estimates_the_total_correlation():
  z, tc, ratio, _ = _gaussian_case()
  logits = lambda x: jnp.stack([jnp.asarray(ratio(x)), jnp.zeros(len(x))], 1)
  assert float(factor_vae.tc_estimate(logits(z))) == pytest.approx(tc, abs=0.02)
  # The discriminator loss is lowest at that optimum: its classes match the estimate's sign.
  perm = np.asarray(factor_vae.permute_dims(jnp.asarray(z), jax.random.key(1)))
  loss_at = lambda s: float(factor_vae.discriminator_loss(s * logits(z), s * logits(perm)))
  assert loss_at(1.0) < loss_at(0.7) and loss_at(1.0) < loss_at(1.3)
  assert loss_at(1.0) < loss_at(-1.0) - 0.1  # swapped classes are much worse


def test_permuting_keeps_each_marginal_and_breaks_the_dependence():
  z, _, _, _ = _gaussian_case(n=5000)
  z = z.astype(np.float32)
  perm = np.asarray(factor_vae.permute_dims(jnp.asarray(z), jax.random.key(0)))
  for d in range(2):
    np.testing.assert_array_equal(np.sort(perm[:, d]), np.sort(z[:, d]))
  assert abs(np.corrcoef(perm.T)[0, 1]) < 0.05 < 0.7 < np.corrcoef(z.T)[0, 1]


@pytest.mark.slow
def test_the_discriminator_is_part_of_the_model_with_its_own_optimizer():
  c = tiny_config(objective="factor_vae", **{"factor_vae.discriminator_sizes": (16, 16)})
  validate.validate(c)
  _, params, _ = models.init_params(c, (8, 8, 1), objectives.OBJECTIVES[c.objective].modules)
  assert "discriminator" in params
  _, plain, _ = models.init_params(tiny_config(), (8, 8, 1))
  for k in plain:  # the VAE's own parameters are those of a run without a discriminator
    jax.tree.map(np.testing.assert_array_equal, params[k], plain[k])
  tx = optim.transform(c)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  hp = {"learning_rate": 1e-3, "factor_vae.discriminator_learning_rate": 1e-4}
  new = optim.apply_update(params, updates, optim.step_sizes(c, hp, 1.0))
  step_of = lambda k: float(jnp.max(jnp.abs(jax.tree.leaves(new[k])[0] - jax.tree.leaves(params[k])[0])))
  assert step_of("discriminator") == pytest.approx(1e-4, rel=1e-3)  # Adam's first step: lr
  assert step_of("encoder") == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.slow
def test_loss_gradients_reach_each_part_only_from_its_own_loss():
  c = tiny_config(objective="factor_vae", **{"factor_vae.discriminator_sizes": (16,),
                                             "factor_vae.gamma": 5.0})
  graphdef, params, rest = models.init_params(c, (8, 8, 1),
                                              objectives.OBJECTIVES[c.objective].modules)
  x = (jax.random.uniform(jax.random.key(0), (32, 8, 8, 1)) < 0.5).astype(jnp.float32)
  eps = jax.random.normal(jax.random.key(1), (32, 4))
  hp = {"beta": 1.0, "factor_vae.gamma": 5.0, "factor_vae.discriminator_learning_rate": 1e-4}

  def total(p, gamma_scale=1.0, with_disc=True):
    from flax import nnx  # pylint: disable=g-import-not-at-top
    m = nnx.merge(graphdef, p, rest)
    loss, metrics = objectives.loss_fn(m, x, x, eps, {**hp, "factor_vae.gamma": 5.0 * gamma_scale},
                                       0, "factor_vae", key=jax.random.key(2))
    return loss if with_disc else metrics["loss"]

  g = jax.jit(jax.grad(total))(params)
  # gamma moves the encoder's gradient but not the discriminator's (which sees z stopped) ...
  g2 = jax.jit(jax.grad(lambda p: total(p, 2.0)))(params)
  jax.tree.map(np.testing.assert_allclose, g["discriminator"], g2["discriminator"])
  assert not np.allclose(jax.tree.leaves(g["encoder"])[0], jax.tree.leaves(g2["encoder"])[0])
  # ... and the VAE loss alone gives the discriminator no gradient.
  gv = jax.jit(jax.grad(lambda p: total(p, with_disc=False)))(params)
  assert all(float(jnp.max(jnp.abs(a))) == 0.0 for a in jax.tree.leaves(gv["discriminator"]))


def test_bad_factor_vae_settings_fail_with_one_line():
  for overrides, field in (({"factor_vae.gamma": -1.0}, "factor_vae.gamma"),
                           ({"factor_vae.discriminator_learning_rate": 0.0},
                            "factor_vae.discriminator_learning_rate"),
                           ({"factor_vae.discriminator_sizes": ()},
                            "factor_vae.discriminator_sizes"),
                           ({"beta": 2.0}, "beta"), ({"batch_size": 1}, "batch_size")):
    with pytest.raises(UserError, match=field):
      validate.validate(tiny_config(objective="factor_vae", **overrides))


@pytest.mark.slow
def test_factor_vae_trains_resumes_bit_exactly_and_vectorises(tmp_path):
  ds = fake_dataset()
  small = {"objective": "factor_vae", "factor_vae.discriminator_sizes": (16, 16)}
  straight = tiny_config(num_epochs=2, **small)
  first = tiny_config(num_epochs=1, **small)
  a = trainer.train_group([straight], [tmp_path / "a"], dataset=ds)[0]
  trainer.train_group([first], [tmp_path / "b"], dataset=ds)
  b = trainer.train_group([tiny_config(num_epochs=2, **small)], [tmp_path / "b"], dataset=ds)[0]
  for pa, pb in zip(final_params(straight, tmp_path / "a", ds),
                    final_params(straight, tmp_path / "b", ds)):
    np.testing.assert_array_equal(pa, pb)
  assert a["train/total_correlation"] == b["train/total_correlation"]
  assert 0.0 <= a["train/discriminator_accuracy"] <= 1.0
  # Three members differing in gamma, the discriminator's learning rate and the seed train as
  # one vmapped program to what each reaches alone.
  members = [tiny_config(num_epochs=1, seed=s, **{"factor_vae.gamma": g,
                                                  "factor_vae.discriminator_learning_rate": lr},
                         **small) for s, g, lr in ((0, 5.0, 1e-4), (1, 20.0, 1e-3), (2, 40.0, 3e-4))]
  group = trainer.train_group(members, [tmp_path / f"g{i}" for i in range(3)], dataset=ds)
  for i, c in enumerate(members):
    alone = trainer.train_group([c], [tmp_path / f"s{i}"], dataset=ds)[0]
    for k in ("train/loss", "train/total_correlation", "test/neg_elbo"):
      np.testing.assert_allclose(group[i][k], alone[k], rtol=1e-5, atol=1e-5)
