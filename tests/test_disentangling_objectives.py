"""The disentangling objectives: the annealed-capacity VAE, the β-TCVAE and DIP-VAE-I/II,
against the ELBO, closed forms and constructed posteriors; their validation; and training
from the launcher (resumed bit-exactly) and as vectorised groups."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats
from ml_collections import config_dict

from configs import default
from vae_jax import objectives, trainer, validate
from vae_jax.errors import UserError
from vae_jax.objectives import dip_vae
from tests.helpers import (TINY_CONFIG_FILE, fake_dataset, final_params, launch, tiny_config,
                           tiny_model, write_fake_cache)

NEW = ("annealed_vae", "beta_tcvae", "dip_vae_i", "dip_vae_ii")


def _model(latent=3):
  return tiny_model("vae", latent_dim=latent)


def _batch(b=6, latent=3, seed=0):
  kx, ke = jax.random.split(jax.random.key(seed))
  x = jax.random.bernoulli(kx, 0.4, (b, 4, 4, 1)).astype(jnp.float32)
  return x, jax.random.normal(ke, (b, latent))


def _hp(**overrides):
  """Every objective's member fields at the default config's values, then `overrides` (dotted
  names: `_hp(**{"beta_tcvae.beta": 4.0})`)."""
  c = default.get_config()
  fields = {f for o in objectives.OBJECTIVES.values() for f in o.hparams}
  return {**{f: float(c[f]) for f in fields}, **overrides}


class _Posteriors:
  """A stand-in VAE whose encoder returns the given posteriors whatever the input, with a
  decoder of zero logits (every 1x1 pixel costs log 2): for losses of constructed q(z|x)."""
  kind, stochastic_layers, likelihood = "vae", 1, "bernoulli"

  def __init__(self, mean, logvar):
    self.mean, self.logvar = jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32)
    self.log_scale = jnp.zeros(())

  def encode(self, x):
    return self.mean, self.logvar

  def decode(self, z):
    return jnp.zeros((z.shape[0], 1, 1, 1))


def _stub_loss(objective, mean, logvar, eps=None, dataset_size=0, **hp):
  b = mean.shape[0]
  eps = jnp.zeros(mean.shape) if eps is None else eps
  return objectives.loss_fn(_Posteriors(mean, logvar), None, jnp.ones((b, 1, 1, 1)), eps,
                            _hp(**hp), 0, objective, dataset_size=dataset_size)


# --- annealed_vae --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("gamma", [0.5, 4.0])
def test_annealed_vae_at_zero_capacity_is_the_beta_vae_loss(gamma):
  x, eps = _batch()
  model = _model()
  for step in (0, 37, 10_000):
    loss_a, m_a = objectives.loss_fn(model, x, x, eps, _hp(**{
        "annealed_vae.gamma": gamma, "annealed_vae.capacity_max": 0.0,
        "annealed_vae.capacity_steps": 100}), step, "annealed_vae")
    loss_e, m_e = objectives.loss_fn(model, x, x, eps, _hp(beta=gamma), step, "elbo")
    np.testing.assert_allclose(loss_a, loss_e, rtol=1e-6)
    for k in ("rec", "kl", "neg_elbo"):
      assert float(m_a[k]) == float(m_e[k]), k
    assert float(m_a["capacity"]) == 0.0
  assert float(m_a["kl"]) > 0  # |KL - 0| = KL is not trivially zero


@pytest.mark.slow
def test_annealed_vae_capacity_rises_linearly_then_holds():
  x, eps = _batch()
  model = _model()
  hp = _hp(**{"annealed_vae.gamma": 3.0, "annealed_vae.capacity_max": 10.0,
              "annealed_vae.capacity_steps": 100})
  for step, c in ((0, 0.0), (25, 2.5), (100, 10.0), (5000, 10.0)):
    loss, m = objectives.loss_fn(model, x, x, eps, hp, step, "annealed_vae")
    np.testing.assert_allclose(m["capacity"], c, rtol=1e-6)
    np.testing.assert_allclose(loss, m["rec"] + 3.0 * abs(float(m["kl"]) - c), rtol=1e-6)
  assert float(m["kl"]) < 2.5  # so steps 25+ are on the other side of |KL - C|: C > KL
  # 0 steps: the full capacity from the first step.
  _, m = objectives.loss_fn(model, x, x, eps, {**hp, "annealed_vae.capacity_steps": 0.0}, 0,
                            "annealed_vae")
  assert float(m["capacity"]) == 10.0
  # Below the capacity, raising the KL lowers the loss: gradient descent lowers the posterior
  # variances below 1 (KL = sum 0.5 (sigma^2 - 1 - log sigma^2) grows as they fall).
  grad = jax.grad(lambda lv: _stub_loss("annealed_vae", jnp.zeros((4, 2)), lv, **{
      "annealed_vae.gamma": 1.0, "annealed_vae.capacity_max": 5.0,
      "annealed_vae.capacity_steps": 0})[0])(jnp.full((4, 2), -1.0))
  assert jnp.all(grad > 0)


# --- beta_tcvae ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_beta_tcvae_terms_telescope_to_the_sampled_kl_and_weight_the_loss(estimator):
  x, eps = _batch(b=8)
  model = _model()
  opts = {"beta_tcvae.estimator": estimator}
  ones = _hp(**{"beta_tcvae.alpha": 1.0, "beta_tcvae.beta": 1.0, "beta_tcvae.gamma": 1.0})
  loss1, m = objectives.loss_fn(model, x, x, eps, ones, 3, "beta_tcvae", dataset_size=100,
                                options=opts)
  parts = float(m["index_code_mi"] + m["total_correlation"] + m["dimwise_kl"])
  np.testing.assert_allclose(parts, m["sampled_kl"], rtol=1e-5, atol=1e-5)
  # The sampled KL is mean[log q(z|x) - log p(z)] at z = mean + sigma eps, computed here
  # independently; the reported kl is the analytic one, as for every objective.
  mean, logvar = model.encode(x)
  z = mean + jnp.exp(0.5 * logvar) * eps
  sampled = jnp.mean(jnp.sum(stats.norm.logpdf(z, mean, jnp.exp(0.5 * logvar))
                             - stats.norm.logpdf(z), -1))
  np.testing.assert_allclose(m["sampled_kl"], sampled, rtol=1e-5)
  _, m_elbo = objectives.loss_fn(model, x, x, eps, _hp(), 3, "elbo")
  for k in ("rec", "kl", "neg_elbo"):
    np.testing.assert_allclose(m[k], m_elbo[k], rtol=1e-6)
  # alpha = beta = gamma = 1: rec + the sampled KL, an estimate of the negative ELBO.
  np.testing.assert_allclose(loss1, m["rec"] + m["sampled_kl"], rtol=1e-6)
  # Each weight multiplies its own term.
  loss2, m2 = objectives.loss_fn(model, x, x, eps, _hp(**{
      "beta_tcvae.alpha": 2.0, "beta_tcvae.beta": 5.0, "beta_tcvae.gamma": 0.5}), 3,
                                 "beta_tcvae", dataset_size=100, options=opts)
  np.testing.assert_allclose(loss2, m["rec"] + 2.0 * m["index_code_mi"]
                             + 5.0 * m["total_correlation"] + 0.5 * m["dimwise_kl"], rtol=1e-6)
  assert float(m2["total_correlation"]) == float(m["total_correlation"])


@pytest.mark.slow
def test_beta_tcvae_estimator_option_reaches_the_loss():
  x, eps = _batch(b=8)
  model = _model()
  out = {e: objectives.loss_fn(model, x, x, eps, _hp(), 0, "beta_tcvae", dataset_size=1000,
                               options={"beta_tcvae.estimator": e})[1] for e in ("mss", "mws")}
  # Same samples, so the same sampled KL; the split of it differs between the estimators.
  np.testing.assert_allclose(out["mss"]["sampled_kl"], out["mws"]["sampled_kl"], rtol=1e-6)
  assert abs(float(out["mss"]["index_code_mi"] - out["mws"]["index_code_mi"])) > 0.1
  # No options: the default estimator, "mss".
  _, m = objectives.loss_fn(model, x, x, eps, _hp(), 0, "beta_tcvae", dataset_size=1000)
  assert float(m["index_code_mi"]) == float(out["mss"]["index_code_mi"])
  assert objectives.static_options(tiny_config(objective="beta_tcvae")) == {
      "beta_tcvae.estimator": "mss"}
  assert objectives.static_options(tiny_config(objective="dip_vae_i")) == {}
  with pytest.raises(ValueError, match="dataset_size"):
    objectives.loss_fn(model, x, x, eps, _hp(), 0, "beta_tcvae")


@pytest.mark.slow
def test_beta_tcvae_total_correlation_vanishes_for_a_factorised_aggregate_posterior():
  b, z_dim = 2000, 3
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(b, z_dim))  # independent dimensions: q(z) factorises
  logvar = np.full((b, z_dim), math.log(0.25))
  eps = jnp.asarray(rng.normal(size=(b, z_dim)), jnp.float32)
  _, m = _stub_loss("beta_tcvae", mean, logvar, eps, dataset_size=b)
  assert abs(float(m["total_correlation"])) < 0.03, m["total_correlation"]
  # The same marginals' spread with the dimensions tied together: a large total correlation.
  tied = mean.copy()
  tied[:, 1] = mean[:, 0] + 0.1 * rng.normal(size=b)
  tied[:, 2] = -mean[:, 0] + 0.1 * rng.normal(size=b)
  _, m_tied = _stub_loss("beta_tcvae", tied, logvar, eps, dataset_size=b)
  assert float(m_tied["total_correlation"]) > 0.5, m_tied["total_correlation"]
  # Its TC weight makes the difference in the loss.
  l1, _ = _stub_loss("beta_tcvae", tied, logvar, eps, dataset_size=b, **{"beta_tcvae.beta": 1.0})
  l6, _ = _stub_loss("beta_tcvae", tied, logvar, eps, dataset_size=b, **{"beta_tcvae.beta": 6.0})
  np.testing.assert_allclose(l6 - l1, 5.0 * m_tied["total_correlation"], rtol=1e-4)


# --- DIP-VAE -------------------------------------------------------------------------------

def _whitened(b, z_dim, seed=0):
  """(b, z_dim) means whose batch covariance (divided by b) is exactly the identity."""
  a = np.random.default_rng(seed).normal(size=(b, z_dim))
  q, _ = np.linalg.qr(a - a.mean(0))
  return q * math.sqrt(b)


@pytest.mark.slow
def test_dip_penalties_vanish_at_identity_covariance_and_are_positive_otherwise():
  b, z_dim, s2 = 64, 3, 0.3
  white = _whitened(b, z_dim) + 3.0  # an offset of the means changes no covariance
  np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(z_dim), atol=1e-12)
  tiny_var = np.full((b, z_dim), -30.0)  # sigma^2 ~ 1e-13
  for od, d in ((10.0, 100.0), (1.0, 1.0)):
    hp = {"dip_vae.lambda_od": od, "dip_vae.lambda_d": d}
    # DIP-I: Cov[mu] = I whatever sigma; DIP-II: Cov[mu] + E[sigma^2] = I when sigma -> 0.
    _, m = _stub_loss("dip_vae_i", white, np.full((b, z_dim), 0.7), **hp)
    assert abs(float(m["dip_penalty"])) < 1e-6
    _, m = _stub_loss("dip_vae_ii", white, tiny_var, **hp)
    assert abs(float(m["dip_penalty"])) < 1e-6
    # DIP-II counts the posterior variance: Cov[mu] = (1 - s2) I plus sigma^2 = s2 is I for
    # DIP-II (penalty 0) but not for DIP-I, whose diagonal is off by s2 in each dimension.
    shrunk = white * math.sqrt(1 - s2)
    _, m2 = _stub_loss("dip_vae_ii", shrunk, np.full((b, z_dim), math.log(s2)), **hp)
    _, m1 = _stub_loss("dip_vae_i", shrunk, np.full((b, z_dim), math.log(s2)), **hp)
    assert abs(float(m2["dip_penalty"])) < 1e-5
    np.testing.assert_allclose(m1["dip_penalty"], d * z_dim * s2 ** 2, rtol=1e-4)
    # ... and the same means with sigma^2 = s2 on top of Cov[mu] = I: II sees I + s2 I.
    _, m = _stub_loss("dip_vae_ii", white, np.full((b, z_dim), math.log(s2)), **hp)
    np.testing.assert_allclose(m["dip_penalty"], d * z_dim * s2 ** 2, rtol=1e-4)
    # A correlation rho between dimensions 0 and 1 costs lambda_od (2 rho^2) exactly.
    rho = 0.4
    cov = np.eye(z_dim)
    cov[0, 1] = cov[1, 0] = rho
    corr = _whitened(b, z_dim, seed=1) @ np.linalg.cholesky(cov).T
    _, m = _stub_loss("dip_vae_i", corr, tiny_var, **hp)
    np.testing.assert_allclose(m["dip_penalty"], od * 2 * rho ** 2, rtol=1e-4)
  # Random posteriors: both penalties positive, and the loss is the ELBO's plus the penalty.
  x, eps = _batch(b=16)
  model = _model()
  _, m_elbo = objectives.loss_fn(model, x, x, eps, _hp(), 0, "elbo")
  for objective in ("dip_vae_i", "dip_vae_ii"):
    loss, m = objectives.loss_fn(model, x, x, eps, _hp(), 0, objective)
    assert float(m["dip_penalty"]) > 0.1
    np.testing.assert_allclose(loss, m_elbo["loss"] + m["dip_penalty"], rtol=1e-6)
    for k in ("rec", "kl", "neg_elbo"):
      np.testing.assert_allclose(m[k], m_elbo[k], rtol=1e-6)


def test_dip_ii_covariance_is_the_mean_covariance_plus_the_mean_variance():
  rng = np.random.default_rng(2)
  mean = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4))
  logvar = rng.normal(size=(50, 4))
  cov_i = np.asarray(dip_vae.covariance(jnp.asarray(mean), jnp.asarray(logvar), "i"))
  cov_ii = np.asarray(dip_vae.covariance(jnp.asarray(mean), jnp.asarray(logvar), "ii"))
  np.testing.assert_allclose(cov_i, np.cov(mean.T, bias=True), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(cov_ii - cov_i, np.diag(np.exp(logvar).mean(0)), rtol=1e-5, atol=1e-5)
  # The penalty by hand.
  off = cov_i - np.diag(np.diag(cov_i))
  np.testing.assert_allclose(dip_vae.penalty(jnp.asarray(cov_i), 2.0, 3.0),
                             2.0 * (off ** 2).sum() + 3.0 * ((np.diag(cov_i) - 1) ** 2).sum(),
                             rtol=1e-5)


@pytest.mark.parametrize("objective", ["dip_vae_i", "dip_vae_ii"])
def test_dip_vae_without_the_penalty_is_the_elbo_objective_with_its_knobs(objective):
  x, eps = _batch(b=8)
  model = _model()
  knobs = {"beta": 2.0, "kl_warmup_steps": 100.0, "free_bits": 0.3}
  loss_d, _ = objectives.loss_fn(model, x, x, eps, _hp(**{"dip_vae.lambda_od": 0.0,
                                                         "dip_vae.lambda_d": 0.0}, **knobs),
                                 40, objective)
  loss_e, _ = objectives.loss_fn(model, x, x, eps, _hp(**knobs), 40, "elbo")
  assert float(loss_d) == float(loss_e)


# --- configuration -------------------------------------------------------------------------

def test_defaults_leave_the_elbo_runs_unchanged():
  c = default.get_config()
  assert c.objective == "elbo"
  assert objectives.member_hparams(c) == ("learning_rate", "beta", "kl_warmup_steps", "free_bits")
  validate.validate(c)
  for objective in NEW:
    validate.validate(tiny_config(objective=objective))  # the defaults are valid for each
    assert "beta" in objectives.member_hparams(tiny_config(objective=objective))  # test/loss
    assert objectives.OBJECTIVES[objective].summary


def _unsafe(config, **overrides):
  """A type-unsafe copy of `config` with dotted `overrides` (a config file can hold anything)."""
  def conv(d):
    return config_dict.ConfigDict({k: conv(v) if isinstance(v, dict) else v
                                   for k, v in d.items()}, type_safe=False)
  c = conv(config.to_dict())
  for k, v in overrides.items():
    *parents, leaf = k.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def _one_line_error(config, field):
  with pytest.raises(UserError) as e:
    validate.validate(config)
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith(f"config.{field}="), msg
  return msg


_BAD_VALUES = [
    ("annealed_vae.gamma", -1.0), ("annealed_vae.gamma", "1000"),
    ("annealed_vae.capacity_max", float("nan")), ("annealed_vae.capacity_max", -0.5),
    ("annealed_vae.capacity_steps", 2.5), ("annealed_vae.capacity_steps", -3),
    ("annealed_vae.capacity_steps", True),
    ("beta_tcvae.alpha", -0.1), ("beta_tcvae.beta", "6"), ("beta_tcvae.gamma", None),
    ("beta_tcvae.gamma", float("inf")), ("beta_tcvae.estimator", "exact"),
    ("beta_tcvae.estimator", 1),
    ("dip_vae.lambda_od", -1.0), ("dip_vae.lambda_d", float("inf")), ("dip_vae.lambda_d", [1.0]),
]
_OWNER = {"annealed_vae": "annealed_vae", "beta_tcvae": "beta_tcvae", "dip_vae": "dip_vae_ii"}


@pytest.mark.parametrize("field,bad", _BAD_VALUES)
def test_bad_field_values_fail_with_one_line_whatever_the_objective(field, bad):
  owner = _OWNER[field.split(".")[0]]
  for objective in ("elbo", owner):
    _one_line_error(_unsafe(tiny_config(objective=objective), **{field: bad}), field)


@pytest.mark.parametrize("objective,overrides,field,words", [
    ("annealed_vae", {"beta": 2.0}, "beta", "annealed_vae.gamma"),
    ("annealed_vae", {"kl_warmup_steps": 100}, "kl_warmup_steps", "annealed_vae.gamma"),
    ("annealed_vae", {"free_bits": 0.5}, "free_bits", "annealed_vae"),
    ("beta_tcvae", {"beta": 4.0}, "beta", "beta_tcvae.beta"),
    ("beta_tcvae", {"free_bits": 0.5}, "free_bits", "beta_tcvae"),
    ("beta_tcvae", {"batch_size": 1}, "batch_size", "at least 2"),
    ("dip_vae_i", {"batch_size": 1}, "batch_size", "at least 2"),
    *[(o, {"model.name": "ae"}, "objective", "model.name='vae'") for o in NEW],
    *[(o, {"model.stochastic_layers": 2}, "model.stochastic_layers", o) for o in NEW],
    *[(o, {"num_importance_samples": 4}, "num_importance_samples", o) for o in NEW],
])
def test_combinations_an_objective_does_not_define_fail_with_one_line(objective, overrides,
                                                                      field, words):
  msg = _one_line_error(tiny_config(objective=objective, **overrides), field)
  assert words in msg, msg


@pytest.mark.slow
def test_the_training_step_uses_the_chosen_tcvae_estimator(tmp_path):
  """The estimator reaches the loss inside the compiled epoch: the same run with "mws" logs
  the same sampled KL but a different index-code MI than with "mss"."""
  ds = fake_dataset()
  out = {}
  for e in ("mss", "mws"):
    c = tiny_config(num_epochs=1, objective="beta_tcvae", **{"beta_tcvae.estimator": e})
    out[e] = trainer.train_group([c], [tmp_path / e], dataset=ds)[0]
  assert out["mss"]["train/index_code_mi"] != out["mws"]["train/index_code_mi"]


def test_dip_vae_keeps_the_elbo_knobs():
  for objective in ("dip_vae_i", "dip_vae_ii"):
    validate.validate(tiny_config(objective=objective, beta=4.0, kl_warmup_steps=10,
                                  free_bits=0.1, batch_size=2))


# --- training ------------------------------------------------------------------------------

# helpers' tiny sweep with one member of each disentangling objective, a checkpoint each epoch.
_MEMBERS_FILE = TINY_CONFIG_FILE[:TINY_CONFIG_FILE.index("def get_sweep")].replace(
    '  c.wandb.mode', '  c.checkpoint_every_epochs = 1\n  c.wandb.mode') + '''def get_sweep():
  return {{"annealed": {{"objective": "annealed_vae", "annealed_vae.gamma": 5.0,
                        "annealed_vae.capacity_max": 3.0, "annealed_vae.capacity_steps": 12}},
          "tcvae": {{"objective": "beta_tcvae", "beta_tcvae.beta": 4.0}},
          "dip_i": {{"objective": "dip_vae_i", "dip_vae.lambda_od": 2.0,
                    "dip_vae.lambda_d": 20.0}},
          "dip_ii": {{"objective": "dip_vae_ii", "dip_vae.lambda_od": 2.0,
                     "dip_vae.lambda_d": 2.0}}}}
'''

_OWN_METRICS = {"annealed": ("capacity",), "tcvae": ("index_code_mi", "total_correlation",
                                                   "dimwise_kl", "sampled_kl"),
                "dip_i": ("dip_penalty",), "dip_ii": ("dip_penalty",)}


def _rows(wd):
  return [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_each_objective_trains_from_the_launcher_and_resumes_bit_exactly(tmp_path):
  cache = write_fake_cache(tmp_path / "cache")
  path = tmp_path / "members.py"
  path.write_text(_MEMBERS_FILE.format(cache_dir=cache))
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  for args in (["--workdir", str(straight)],
               ["--workdir", str(resumed), "--config.num_epochs=1"],
               ["--workdir", str(resumed)]):
    proc = launch(["--config", str(path), *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
  ds = fake_dataset()
  c = tiny_config()
  for name, own in _OWN_METRICS.items():
    a, b = straight / name, resumed / name
    saved = json.loads((a / "config.json").read_text())["config"]
    assert saved["objective"] == {"annealed": "annealed_vae", "tcvae": "beta_tcvae",
                                  "dip_i": "dip_vae_i", "dip_ii": "dip_vae_ii"}[name]
    ra, rb = (json.loads((w / "results.json").read_text()) for w in (a, b))
    assert ra["epochs"] == rb["epochs"] == 2
    for pa, pb in zip(final_params(c, a, ds), final_params(c, b, ds)):
      np.testing.assert_array_equal(pa, pb)
    train_rows = [r for r in _rows(a) if "train/loss" in r]
    assert len(train_rows) == 2
    assert [r["train/loss"] for r in train_rows] == [
        r["train/loss"] for r in _rows(b) if "train/loss" in r]
    for k in ("test/neg_elbo", "test/kl", "train/loss", *[f"train/{m}" for m in own]):
      assert math.isfinite(ra[k]) and ra[k] == rb[k], (name, k)
    assert ra["test/loss"] == ra["test/neg_elbo"]  # beta = 1 throughout
  # The capacity schedule ran over the global step (12 steps to 3 nats; 8 steps an epoch).
  cap = [r["train/capacity"] for r in _rows(straight / "annealed") if "train/capacity" in r]
  np.testing.assert_allclose(cap, [np.mean([3.0 * min(1, s / 12) for s in range(e * 8, e * 8 + 8)])
                                   for e in (0, 1)], rtol=1e-6)


_GROUPS = {
    "annealed_vae": [
        {"annealed_vae.gamma": 2.0, "annealed_vae.capacity_max": 1.0,
         "annealed_vae.capacity_steps": 4},
        {"annealed_vae.gamma": 10.0, "annealed_vae.capacity_max": 5.0,
         "annealed_vae.capacity_steps": 8},
        {"annealed_vae.gamma": 50.0, "annealed_vae.capacity_max": 0.0,
         "annealed_vae.capacity_steps": 0}],
    "beta_tcvae": [
        {"beta_tcvae.alpha": 1.0, "beta_tcvae.beta": 1.0, "beta_tcvae.gamma": 1.0},
        {"beta_tcvae.alpha": 1.0, "beta_tcvae.beta": 6.0, "beta_tcvae.gamma": 1.0},
        {"beta_tcvae.alpha": 0.5, "beta_tcvae.beta": 10.0, "beta_tcvae.gamma": 2.0}],
    "dip_vae_i": [{"dip_vae.lambda_od": 1.0, "dip_vae.lambda_d": 10.0},
                  {"dip_vae.lambda_od": 10.0, "dip_vae.lambda_d": 100.0, "beta": 2.0},
                  {"dip_vae.lambda_od": 0.0, "dip_vae.lambda_d": 0.0}],
    "dip_vae_ii": [{"dip_vae.lambda_od": 1.0, "dip_vae.lambda_d": 1.0},
                   {"dip_vae.lambda_od": 20.0, "dip_vae.lambda_d": 20.0, "free_bits": 0.2},
                   {"dip_vae.lambda_od": 50.0, "dip_vae.lambda_d": 5.0}],
}
_GROUP_METRICS = {"annealed_vae": ("capacity",),
                  "beta_tcvae": ("index_code_mi", "total_correlation", "dimwise_kl"),
                  "dip_vae_i": ("dip_penalty",), "dip_vae_ii": ("dip_penalty",)}


@pytest.mark.slow
@pytest.mark.parametrize("objective", NEW)
def test_vectorised_group_equals_its_members_run_alone(tmp_path, objective):
  ds = fake_dataset()
  configs = [tiny_config(objective=objective, num_epochs=1, kl_decomposition_points=0,
                         learning_rate=lr, seed=s, **hp)
             for hp, lr, s in zip(_GROUPS[objective], (1e-3, 3e-3, 1e-3), (0, 1, 2))]
  together = trainer.train_group(configs, [tmp_path / f"v{i}" for i in range(3)], dataset=ds)
  assert all(r["members_trained_together"] == 3 for r in together)
  keys = ("test/neg_elbo", "test/rec", "test/kl", "test/loss", "train/loss",
          *[f"train/{m}" for m in _GROUP_METRICS[objective]])
  for i, c in enumerate(configs):
    alone = trainer.train_group([c], [tmp_path / f"s{i}"], dataset=ds)[0]
    assert alone["members_trained_together"] == 1
    for k in keys:
      np.testing.assert_allclose(together[i][k], alone[k], rtol=1e-5, atol=1e-5, err_msg=k)
    for a, b in zip(final_params(c, tmp_path / f"v{i}", ds), final_params(c, tmp_path / f"s{i}", ds)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The members' own hyperparameters reached their losses.
  if objective == "annealed_vae":
    for r, hp in zip(together, _GROUPS[objective]):
      c_max, steps = hp["annealed_vae.capacity_max"], hp["annealed_vae.capacity_steps"]
      want = np.mean([c_max * (min(1, s / steps) if steps else 1) for s in range(8)])
      np.testing.assert_allclose(r["train/capacity"], want, rtol=1e-6)
  else:
    assert len({round(r["train/loss"], 4) for r in together}) == 3
  if objective == "dip_vae_i":  # its unpenalised member at beta = 1 trains on the plain ELBO
    np.testing.assert_allclose(together[2]["train/loss"], together[2]["train/neg_elbo"], rtol=1e-6)
