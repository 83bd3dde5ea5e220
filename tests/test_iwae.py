"""k-sample objectives (ELBO, IWAE), the two-stochastic-layer VAE, the paper's schedule and
configs: each check is one a wrong implementation fails."""

import csv
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.scipy import stats

from tests import forkserver
from tests.helpers import ROOT, fake_dataset, tiny_config, write_fake_cache, xla_env, tiny_model
from vae_jax import launcher, marginal_likelihood as L, models, objectives, optim, rng, sweeps, trainer, validate
from vae_jax.tools import nll
from vae_jax.errors import UserError

Z1, Z2 = 3, 2


def _model(layers=1, seed=0, top_hidden=(5,)):
  shared = dict(latent_dim=Z1, activation="tanh", scale=1.0, seed=seed)
  if layers == 1:
    return tiny_model("vae", **shared)
  return tiny_model("two_layer_vae", **shared, top_latent_dim=Z2, top_hidden_sizes=top_hidden)


def _x(n=6):
  rng = np.random.default_rng(3)
  return jnp.asarray(rng.random((n, 4, 4, 1)) < 0.4, jnp.float32)


def _hp(beta=1.0, warm=0, free_bits=0.0):
  return {"beta": beta, "kl_warmup_steps": warm, "free_bits": free_bits}


def _eps(key, *shape):
  return jax.random.normal(jax.random.key(key), shape)


def _loss(model, x, eps, objective, beta=1.0):
  return objectives.loss_fn(model, x, x, eps, _hp(beta), 0, objective)


def _reference_log_weight(model, x, eps_BxE):
  """log p(x, z1[, z2]) - log q(z1[, z2]|x), written independently with scipy densities."""
  m1, lv1 = model.encode(x)
  z1 = m1 + jnp.exp(0.5 * lv1) * eps_BxE[:, :Z1]
  log_q = stats.norm.logpdf(z1, m1, jnp.exp(0.5 * lv1)).sum(-1)
  if model.latent_layers == 1:
    log_p = stats.norm.logpdf(z1).sum(-1)
  else:
    m2, lv2 = model.encode_top(z1)
    z2 = m2 + jnp.exp(0.5 * lv2) * eps_BxE[:, Z1:]
    log_q += stats.norm.logpdf(z2, m2, jnp.exp(0.5 * lv2)).sum(-1)
    pm, plv = model.prior_z1(z2)
    log_p = stats.norm.logpdf(z2).sum(-1) + stats.norm.logpdf(z1, pm, jnp.exp(0.5 * plv)).sum(-1)
  probs = jax.nn.sigmoid(model.decode(z1))
  log_lik = stats.bernoulli.logpmf(x, probs).reshape(len(x), -1).sum(-1)
  return log_lik + log_p - log_q


# Objectives --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("layers", [1, 2])
def test_iwae_with_one_sample_is_the_elbo_exactly(layers):
  model, x = _model(layers), _x()
  eps = _eps(0, len(x), model.noise_dim)
  elbo = _loss(model, x, eps, "elbo", beta=2.0)
  iwae = _loss(model, x, eps, "iwae", beta=2.0)
  jax.tree.map(np.testing.assert_array_equal, elbo, iwae)
  # And its value is the single-sample ELBO of that eps: the sampled log weight at beta = 1.
  lw = _reference_log_weight(model, x, eps)
  if layers == 2:
    np.testing.assert_allclose(_loss(model, x, eps, "iwae")[0], -jnp.mean(lw), rtol=1e-5)
  else:  # one layer keeps the analytic KL: same rec, and E[log q - log p] = KL checked below
    _, m = _loss(model, x, eps, "iwae")
    terms = model.log_weight_terms(model.encode(x), x, eps[None])
    np.testing.assert_allclose(m["rec"], -jnp.mean(terms[0]), rtol=1e-6)
    np.testing.assert_allclose(jnp.mean(terms[0] + terms[1] - terms[2]), jnp.mean(lw), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("layers", [1, 2])
def test_k_sample_elbo_is_the_mean_of_one_sample_elbos(layers):
  """Deterministic: the k-sample ELBO on eps (k, B, E) is the mean of the k one-sample ELBOs on
  its slices (the one-layer k = 1 slices go through the original analytic-KL code path)."""
  model, x = _model(layers), _x()
  k = 5
  eps = _eps(1, k, len(x), model.noise_dim)
  loss_k, m_k = _loss(model, x, eps, "elbo", beta=0.5)
  singles = [_loss(model, x, eps[i], "elbo", beta=0.5) for i in range(k)]
  np.testing.assert_allclose(loss_k, np.mean([s[0] for s in singles]), rtol=1e-5)
  for name in ("rec", "kl", "neg_elbo"):
    np.testing.assert_allclose(m_k[name], np.mean([s[1][name] for s in singles]), rtol=1e-5)
  # The IWAE loss is a different number from the same samples, and (Jensen) never above the
  # sampled ELBO's, image by image.
  loss_iwae, m_iwae = _loss(model, x, eps, "iwae")
  lw = jax.vmap(lambda e: _reference_log_weight(model, x, e))(eps)
  np.testing.assert_allclose(loss_iwae, -jnp.mean(objectives.log_mean_exp(lw, 0)), rtol=1e-5)
  np.testing.assert_allclose(m_iwae["neg_iwae"], loss_iwae, rtol=1e-6)
  assert float(loss_iwae) < float(-jnp.mean(lw)) - 1e-3


def test_k_sample_elbo_has_the_expectation_of_the_one_sample_elbo():
  model, x = _model(1), _x()
  draws = 400
  one = jax.jit(jax.vmap(lambda e: _loss(model, x, e, "elbo")[0]))(_eps(2, draws, len(x), Z1))
  five = jax.jit(jax.vmap(lambda e: _loss(model, x, e, "elbo")[0]))(_eps(3, draws, 5, len(x), Z1))
  stderr = math.sqrt(np.var(one) / draws + np.var(five) / draws)
  assert abs(float(np.mean(one) - np.mean(five))) < 4 * stderr, (np.mean(one), np.mean(five), stderr)
  assert np.var(five) < np.var(one)  # ... with less variance


@pytest.mark.slow
@pytest.mark.parametrize("layers", [1, 2])
def test_iwae_bound_rises_with_k(layers):
  model, x = _model(layers, seed=1), _x()
  draws = 100

  @jax.jit
  def bound(eps_DxKxBxE):
    return jax.vmap(lambda e: -_loss(model, x, e, "iwae")[0])(eps_DxKxBxE)

  means = [float(np.mean(bound(_eps(10 + k, draws, k, len(x), model.noise_dim))))
           for k in (1, 5, 50)]
  assert means[0] + 0.05 < means[1] < means[2] - 0.05, means


@pytest.mark.slow
def test_beta_weights_the_latent_part_of_each_log_weight():
  model, x = _model(1), _x()
  eps = _eps(4, 3, len(x), Z1)
  log_lik, log_prior, log_q = model.log_weight_terms(model.encode(x), x, eps)
  want = -jnp.mean(objectives.log_mean_exp(log_lik + 0.25 * (log_prior - log_q), 0))
  np.testing.assert_allclose(_loss(model, x, eps, "iwae", beta=0.25)[0], want, rtol=1e-6)
  # KL warm-up scales that beta: halfway through, beta / 2.
  got = objectives.loss_fn(model, x, x, eps, _hp(0.5, warm=100), 50, "iwae")[0]
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.slow
def test_conv_model_takes_k_samples():
  model = models.VAE(architecture="conv", image_shape=(8, 8, 1), latent_dim=Z1,
                     hidden_sizes=(8,), activation="relu", likelihood="bernoulli",
                     scale=1.0, learn_scale=False, rngs=nnx.Rngs(0), conv_channels=(4,))
  x = jnp.asarray(np.random.default_rng(0).random((5, 8, 8, 1)) < 0.5, jnp.float32)
  eps = _eps(8, 3, 5, Z1)

  @jax.jit  # one program instead of many small eager convolutions
  def run(eps):
    loss, m = _loss(model, x, eps, "iwae")
    log_lik = model.log_weight_terms(model.encode(x), x, eps)[0]
    mean, logvar = model.encode(x)
    logits = model.decode(objectives.reparameterize(mean, logvar, eps[1]))
    want = stats.bernoulli.logpmf(x, jax.nn.sigmoid(logits)).reshape(len(x), -1).sum(-1)
    return loss, m, log_lik[1], want

  loss, m, got, want = run(eps)
  assert np.isfinite(float(loss)) and float(m["neg_iwae"]) < float(m["neg_elbo"]) + 1.0
  np.testing.assert_allclose(got, want, rtol=1e-5)


# The two-layer model -----------------------------------------------------------------------


def _linear_gaussian_two_layer():
  """A two-layer model whose q(z2|z1) and p(z1|z2) are linear-Gaussian (no hidden layers,
  constant variances), so KL(q(z1, z2|x) || p(z1, z2)) is a KL between joint Gaussians."""
  model = _model(2, seed=2, top_hidden=())
  rng = np.random.default_rng(0)
  # Moderate scales keep the KL at a few nats, so 20,000 samples pin its mean down to ~0.02.
  a, a_bias, lv2 = 0.5 * rng.normal(size=(Z2, Z1)), 0.3 * rng.normal(size=Z2), 0.3 * rng.normal(size=Z2)
  c, c_bias, lvp = 0.5 * rng.normal(size=(Z1, Z2)), 0.3 * rng.normal(size=Z1), 0.3 * rng.normal(size=Z1)
  enc, dec = model.top_encoder.layers[0], model.top_decoder.layers[0]
  enc.kernel[...] = jnp.asarray(np.concatenate([a.T, np.zeros((Z1, Z2))], 1), jnp.float32)
  enc.bias[...] = jnp.asarray(np.concatenate([a_bias, lv2]), jnp.float32)
  dec.kernel[...] = jnp.asarray(np.concatenate([c.T, np.zeros((Z2, Z1))], 1), jnp.float32)
  dec.bias[...] = jnp.asarray(np.concatenate([c_bias, lvp]), jnp.float32)
  return model, (a, a_bias, lv2, c, c_bias, lvp)


def _joint_gaussian_kl(m1, lv1, a, a_bias, lv2, c, c_bias, lvp):
  s1, s2, sp = np.diag(np.exp(lv1)), np.diag(np.exp(lv2)), np.diag(np.exp(lvp))
  mu_q = np.concatenate([m1, a @ m1 + a_bias])
  cov_q = np.block([[s1, s1 @ a.T], [a @ s1, a @ s1 @ a.T + s2]])
  mu_p = np.concatenate([c_bias, np.zeros(Z2)])
  cov_p = np.block([[c @ c.T + sp, c], [c.T, np.eye(Z2)]])
  inv_p = np.linalg.inv(cov_p)
  d = mu_p - mu_q
  return 0.5 * (np.trace(inv_p @ cov_q) + d @ inv_p @ d - (Z1 + Z2)
                + np.linalg.slogdet(cov_p)[1] - np.linalg.slogdet(cov_q)[1])


@pytest.mark.slow
def test_two_layer_kl_matches_the_joint_gaussian_kl():
  model, (a, a_bias, lv2, c, c_bias, lvp) = _linear_gaussian_two_layer()
  x = _x(3)
  q = model.encode(x)
  eps = _eps(5, 20000, len(x), model.noise_dim)
  _, log_prior, log_q = jax.jit(lambda e: model.log_weight_terms(q, x, e))(eps)
  kl_mc = log_q - log_prior  # (S, B)
  m1, lv1 = (np.asarray(v, np.float64) for v in q)
  exact = np.array([_joint_gaussian_kl(m1[b], lv1[b], a, a_bias, lv2, c, c_bias, lvp)
                    for b in range(len(x))])
  stderr = np.asarray(jnp.std(kl_mc, 0)) / math.sqrt(eps.shape[0])
  assert np.all(np.abs(np.asarray(jnp.mean(kl_mc, 0)) - exact) < 4 * stderr + 1e-3), (
      np.asarray(jnp.mean(kl_mc, 0)), exact, stderr)
  assert stderr.max() < 0.05  # the check has power
  # The training metric reports the same quantity.
  _, m = jax.jit(lambda e: _loss(model, x, e, "elbo"))(eps[:2000])
  assert abs(float(m["kl"]) - exact.mean()) < 4 * float(jnp.std(kl_mc)) / math.sqrt(2000 * 3)


@pytest.mark.slow
def test_two_layer_log_weights_are_the_joint_densities():
  model, x = _model(2), _x()
  eps = _eps(6, 4, len(x), model.noise_dim)
  terms = model.log_weight_terms(model.encode(x), x, eps)
  want = jax.vmap(lambda e: _reference_log_weight(model, x, e))(eps)
  np.testing.assert_allclose(terms[0] + terms[1] - terms[2], want, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_evaluator_on_two_layers_uses_the_same_log_weights_and_rises_with_k():
  model, x = _model(2, seed=3), np.asarray(_x(8))
  fn, params = L.autoencoder_latents(model)
  key = jax.random.key(7)
  est = L.iwae_log_px(fn, params, x, key, num_samples=1)
  eps = rng.iwae_noise(key, jnp.arange(len(x)), jnp.arange(1), model.noise_dim)[0]
  np.testing.assert_allclose(est, _reference_log_weight(model, jnp.asarray(x), eps), rtol=1e-5,
                             atol=1e-4)
  means = [np.mean([L.iwae_log_px(fn, params, x, jax.random.key(s), num_samples=k, sample_chunk=10)
                    for s in range(3)]) for k in (1, 10, 100)]
  assert means[0] + 0.05 < means[1] < means[2], means
  stats_ = L.posterior_stats(model, np.asarray(x * 255, np.uint8))
  assert "kl_per_dim" not in stats_ and len(stats_["mean_variance_top"]) == Z2


# Training ----------------------------------------------------------------------------------


def _metrics(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_layer_vae_trains_and_is_evaluated(tmp_path):
  ds = fake_dataset(n_train=256)
  config = tiny_config(num_epochs=6, learning_rate=1e-2, eval_nll_k=20, write_figures=True,
                       **{"model.stochastic_layers": 2, "model.top_latent_dim": 2,
                          "model.top_hidden_sizes": (8,)})
  validate.validate(config)
  res = trainer.train_group([config], [tmp_path], dataset=ds)[0]
  rows = _metrics(tmp_path)
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 5.0
  assert rows[-1]["test/neg_elbo"] < rows[0]["test/neg_elbo"]
  # test/nll (k = 20) is a tighter bound than the single-sample test ELBO.
  assert res["test/nll"] < res["test/neg_elbo"] and "test/active_units_top" in res
  assert (tmp_path / "samples.png").stat().st_size > 0  # ancestral samples through p(z1|z2)
  out = nll.nll_of_workdir(tmp_path, 50, dataset=ds)  # python -m vae_jax.tools.nll
  assert out["test/nll"] <= res["test/nll"] + 0.5


NAMED_SWEEP_FILE = '''
from configs import default

def get_config():
  c = default.get_config()
  c.num_epochs = 6
  c.batch_size = 16
  c.learning_rate = 1e-2
  c.model.hidden_sizes = (32,)
  c.model.latent_dim = 4
  c.eval_batch_size = 32
  c.eval_nll_k = 10
  c.num_plot_images = 4
  c.write_figures = False
  c.wandb.mode = "disabled"
  c.data.name = "fake"
  c.data.cache_dir = {cache_dir!r}
  return c

def get_sweep():
  return {{"vae_k1": {{}}, "iwae_k5": {{"objective": "iwae", "num_importance_samples": 5}},
          "vae2_k1": {{"model.stochastic_layers": 2, "model.latent_dim": 3}}}}
'''


def _named_sweep(tmp_path, n_train):
  """NAMED_SWEEP_FILE over a fake dataset of n_train images: (its path, its module)."""
  cache = write_fake_cache(tmp_path / "cache", n_train=n_train)
  path = tmp_path / "named.py"
  path.write_text(NAMED_SWEEP_FILE.format(cache_dir=cache))
  return path, sweeps.load_module(str(path))


@pytest.mark.slow
def test_iwae_member_runs_from_the_launcher(tmp_path):
  path, module = _named_sweep(tmp_path, n_train=256)
  launcher.main(config=module.get_config(), config_path=str(path), workdir=str(tmp_path / "s"),
                overrides={}, member="iwae_k5")
  wd = tmp_path / "s" / "iwae_k5"
  rows = _metrics(wd)
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 5.0
  # With k = 5 samples the bound the IWAE trains on is tighter than the ELBO of the same samples.
  assert all(r["train/neg_iwae"] < r["train/neg_elbo"] for r in rows)
  res = json.loads((wd / "results.json").read_text())
  assert np.isfinite(res["test/nll"]) and json.loads((wd / "config.json").read_text())[
      "config"]["num_importance_samples"] == 5
  # Each evaluation also reports the bound at the training k on the test split, with the
  # noise of the test-NLL estimate: at the last epoch it is `python -m vae_jax.tools.nll --k 5`.
  evals = [r for r in rows if "test/neg_elbo" in r]
  assert evals and all(np.isfinite(r["test/neg_iwae"]) for r in evals)
  assert res["test/neg_iwae"] == evals[-1]["test/neg_iwae"]
  k5 = nll.nll_of_workdir(wd, 5)["test/nll"]
  np.testing.assert_allclose(res["test/neg_iwae"], k5, rtol=1e-5)
  assert not (tmp_path / "s" / "vae_k1").exists()
  # The summary names the member; no latent-size figure for a sweep that is not about it.
  with open(tmp_path / "s" / "sweep.csv", newline="") as f:
    status = {r["member"]: r["status"] for r in csv.DictReader(f)}
  assert status == {"vae_k1": "missing", "iwae_k5": "finished", "vae2_k1": "missing"}
  assert not (tmp_path / "s" / "latent_size.png").exists()


@pytest.mark.slow
def test_member_takes_the_command_lines_value_of_a_swept_key(tmp_path):
  """`--member=iwae_k5 --config.num_importance_samples=3` trains iwae_k5 with k = 3: the flag
  the user typed wins over the member's own value instead of being silently dropped."""
  path, module = _named_sweep(tmp_path, n_train=64)
  config = module.get_config()
  config.num_epochs, config.eval_nll_k, config.num_importance_samples = 1, 0, 3
  launcher.main(config=config, config_path=str(path), workdir=str(tmp_path / "s"),
                overrides={"num_epochs": 1, "eval_nll_k": 0, "num_importance_samples": 3},
                member="iwae_k5")
  saved = json.loads((tmp_path / "s" / "iwae_k5" / "config.json").read_text())["config"]
  assert (saved["objective"], saved["num_importance_samples"]) == ("iwae", 3)
  with open(tmp_path / "s" / "sweep.csv", newline="") as f:
    row = next(r for r in csv.DictReader(f) if r["member"] == "iwae_k5")
  assert row["num_importance_samples"] == "3"


@pytest.mark.slow
def test_iwae_with_k1_trains_bit_for_bit_like_the_elbo(tmp_path):
  ds = fake_dataset()
  base = tiny_config(num_epochs=1)
  iwae = tiny_config(num_epochs=1, objective="iwae")
  ra = trainer.train_group([base], [tmp_path / "a"], dataset=ds)[0]
  rb = trainer.train_group([iwae], [tmp_path / "b"], dataset=ds)[0]
  from tests.helpers import final_params  # pylint: disable=g-import-not-at-top
  for pa, pb in zip(final_params(base, tmp_path / "a", ds), final_params(iwae, tmp_path / "b", ds)):
    np.testing.assert_array_equal(pa, pb)
  for k in ("train/loss", "test/neg_elbo"):
    assert ra[k] == rb[k], k


_SHARDED_RUN = '''
import sys
import jax, numpy as np
from tests.helpers import fake_dataset, tiny_config
from tests.helpers import final_params
from vae_jax import trainer
ds = fake_dataset()
cs = [tiny_config(num_epochs=1, objective="iwae", num_importance_samples=3, beta=b) for b in (1.0, 2.0)]
res = trainer.train_group(cs, [sys.argv[2] + "/m0", sys.argv[2] + "/m1"], dataset=ds)
np.savez(sys.argv[1], devices=jax.device_count(), neg_iwae=[r["test/neg_iwae"] for r in res],
         **{{f"m{{m}}_{{i}}": p for m in range(2) for i, p in enumerate(final_params(cs[m], f"{{sys.argv[2]}}/m{{m}}", ds))}})
'''


@pytest.mark.slow
def test_k_samples_shard_over_devices_like_one_device(tmp_path):
  """(M, k, B, Z) noise is drawn for the global batch and sharded on its batch axis: two fake
  devices train a two-member IWAE group to the parameters one device reaches, and find the
  same test bound at k = 3 (its noise is keyed by global image index, not by device)."""
  script = _SHARDED_RUN.format()
  got = {}
  for n in (1, 2):
    out = tmp_path / f"d{n}.npz"
    env = xla_env(n)
    proc = forkserver.run([sys.executable, "-c", script, str(out), str(tmp_path / f"wd{n}")],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got[n] = dict(np.load(out))
  assert int(got[1]["devices"]) == 1 and int(got[2]["devices"]) == 2
  for k in sorted(set(got[1]) - {"devices"}):
    np.testing.assert_allclose(got[1][k], got[2][k], rtol=2e-4, atol=2e-5, err_msg=k)


# Configs, schedule, validation -------------------------------------------------------------


def test_paper_schedule_steps_down_after_3_to_the_i_epochs():
  config = tiny_config(lr_schedule="iwae_paper")
  mult = optim.schedule(config, 10)
  ends = [1, 4, 13, 40, 121, 364, 1093]
  for i, end in enumerate(ends):
    start = 0 if i == 0 else ends[i - 1]
    for epoch in (start, end - 1):
      assert float(mult(epoch * 10 + 9)) == pytest.approx(10 ** (-i / 7), rel=1e-5), (i, epoch)
  assert float(mult(3279 * 10)) == pytest.approx(0.1, rel=1e-5)
  assert float(mult(10**6)) == pytest.approx(0.1, rel=1e-5)


@pytest.mark.parametrize("path", ["configs/iwae_table.py", "configs/iwae_fast.py"])
def test_table_configs_define_the_six_rows(path):
  module = sweeps.load_module(str(ROOT / path))
  config = module.get_config()
  validate.validate(config)
  members = {name: c for name, _, c in sweeps.expand(config, sweeps.sweep_of(module))}
  assert list(members) == ["vae_k1", "vae_k50", "iwae_k5", "iwae_k50", "vae2_k1", "iwae2_k50"]
  for name, c in members.items():
    validate.validate(c)
    assert c.objective == ("iwae" if name.startswith("iwae") else "elbo")
    assert c.num_importance_samples == int(name.split("_k")[1])
    assert c.model.stochastic_layers == (2 if "2_" in name else 1)
    assert c.model.latent_dim == (100 if "2_" in name else 50)
    assert c.model.hidden_sizes == (200, 200) and c.model.activation == "tanh"
    assert c.eval_nll_k == 5000 and c.optimizer.eps == 1e-4
    # The paper's setup has no KL warm-up; the short schedule warms up the two-layer rows only.
    assert (c.kl_warmup_steps > 0) == (path.endswith("iwae_fast.py") and "2_" in name)
  if path.endswith("iwae_table.py"):
    assert (config.batch_size, config.num_epochs, config.lr_schedule) == (20, 3280, "iwae_paper")
    assert config.model.top_hidden_sizes == (100, 100) and config.model.top_latent_dim == 50
  else:
    # At most an eighth of the paper's 9.8 M steps (3,280 epochs of batch 20), fewer epochs.
    assert config.num_epochs / config.batch_size <= 3280 / 20 / 8 and config.num_epochs < 3280


def test_named_sweep_members_with_seeds():
  config = tiny_config(num_seeds=2)
  names = [n for n, _, _ in sweeps.expand(config, {"a_k1": {}, "b_k5": {"beta": 2.0}})]
  assert names == ["a_k1,seed=0", "a_k1,seed=1", "b_k5,seed=0", "b_k5,seed=1"]

  class Module:
    @staticmethod
    def get_sweep():
      return {"bad name/..": {}}

  with pytest.raises(UserError, match="member name"):
    sweeps.sweep_of(Module)


@pytest.mark.parametrize("overrides,field", [
    ({"objective": "iwea"}, "objective"),
    ({"num_importance_samples": 0}, "num_importance_samples"),
    ({"objective": "iwae", "model.name": "ae"}, "objective"),
    ({"num_importance_samples": 5, "model.name": "ae"}, "num_importance_samples"),
    ({"objective": "iwae", "free_bits": 0.5}, "free_bits"),
    ({"model.stochastic_layers": 3}, "model.stochastic_layers"),
    ({"model.stochastic_layers": 0}, "model.stochastic_layers"),
    ({"model.stochastic_layers": 2, "model.architecture": "conv"}, "model.stochastic_layers"),
    ({"model.stochastic_layers": 2, "model.name": "ae"}, "model.stochastic_layers"),
    ({"model.stochastic_layers": 2, "free_bits": 0.5}, "free_bits"),
    ({"model.top_latent_dim": 0}, "model.top_latent_dim"),
    ({"model.top_hidden_sizes": (0,)}, "model.top_hidden_sizes"),
    ({"lr_schedule": "iwae"}, "lr_schedule"),
])
def test_bad_objective_and_layer_settings_fail_with_one_line(overrides, field):
  with pytest.raises(UserError, match=rf"config\.{field}=") as e:
    validate.validate(tiny_config(**overrides))
  assert "\n" not in str(e.value)


def test_good_combinations_pass_validation():
  for overrides in ({"objective": "iwae", "num_importance_samples": 50, "beta": 0.5,
                     "kl_warmup_steps": 100},
                    {"num_importance_samples": 5, "free_bits": 0.5},
                    {"model.stochastic_layers": 2, "objective": "iwae", "num_importance_samples": 5},
                    {"model.architecture": "conv", "objective": "iwae", "num_importance_samples": 5},
                    {"lr_schedule": "iwae_paper"}):
    validate.validate(tiny_config(**overrides))
