"""Anomaly scores and AUROC (rank statistic vs a brute-force pair count), on fake data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import fake_dataset, tiny_config
from vae_jax import data as data_lib, decoder_likelihoods, objectives, trainer, workdir
from vae_jax.analysis import anomaly


def brute_force_auroc(scores, labels):
  pos, neg = scores[labels], scores[~labels]
  diff = pos[:, None] - neg[None, :]
  return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_auroc_known_answers():
  s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
  y = np.array([0, 0, 0, 1, 1, 1], bool)
  assert anomaly.auroc(s, y) == 1.0
  assert anomaly.auroc(-s, y) == 0.0
  assert anomaly.auroc(np.ones(6), y) == 0.5
  assert anomaly.auroc([1.0, 2.0, 2.0, 3.0], [False, True, False, True]) == 0.875  # 3.5 / 4
  with pytest.raises(ValueError, match="both"):
    anomaly.auroc(s, np.zeros(6, bool))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_the_pair_count_with_ties(seed):
  rng = np.random.default_rng(seed)
  n = 300
  labels = rng.random(n) < 0.3
  scores = rng.integers(0, 12, n) + 2.0 * labels  # many ties, anomalies shifted up
  want = brute_force_auroc(scores, labels)
  assert anomaly.auroc(scores, labels) == pytest.approx(want, abs=1e-12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny AE and VAE trained on fake data without prototype 3 (the anomaly)."""
  ds = fake_dataset(n_train=512, n_test=200, binarization="static")
  tx, ty = data_lib.exclude_labels(ds.train_images, ds.train_labels, (3,))
  ds_train = data_lib.Dataset("fake", "static", tx, ty, ds.test_images, ds.test_labels)
  models = {}
  for kind in ("ae", "vae"):
    path = tmp_path_factory.mktemp(kind)
    config = tiny_config(num_epochs=8, learning_rate=1e-2, **{
        "model.name": kind, "data.binarization": "static", "data.exclude_labels": (3,)})
    trainer.train_group([config], [path], dataset=ds_train)
    models[kind] = workdir.load_run(path, dataset=ds_train)[1]
  return ds, models


@pytest.mark.slow
def test_rec_score_is_the_reconstruction_nll(trained):
  ds, models = trained
  x = jnp.asarray(ds.test_images, jnp.float32) / 255.0
  ae = models["ae"]
  want = objectives.eval_metrics(ae, x, None, 1.0)["rec"]
  np.testing.assert_allclose(anomaly.scores(ae, ds.test_images, "rec", batch=64), want, rtol=1e-5)
  vae = models["vae"]
  mean, _ = vae.encode(x)
  want = decoder_likelihoods.nll(vae.likelihood, vae.decode(mean), vae.log_scale[...], x)
  np.testing.assert_allclose(anomaly.scores(vae, ds.test_images, "rec"), want, rtol=1e-5)
  assert anomaly.default_method(ae) == "rec" and anomaly.default_method(vae) == "iwae"
  with pytest.raises(ValueError, match="needs a VAE"):
    anomaly.scores(ae, ds.test_images, "iwae")


@pytest.mark.slow
def test_iwae_score_is_below_neg_elbo_on_average(trained):
  ds, models = trained
  key = jax.random.key(1)
  elbo = anomaly.scores(models["vae"], ds.test_images, "neg_elbo", key=key)
  iwae = anomaly.scores(models["vae"], ds.test_images, "iwae", key=key, k=64)
  assert elbo.shape == iwae.shape == (len(ds.test_images),)
  assert iwae.mean() < elbo.mean()  # -L_64 <= -L_1 in expectation


@pytest.mark.slow
def test_held_out_prototype_is_detected(trained):
  ds, models = trained
  held_out = ds.test_labels == 3
  for model in models.values():
    s = anomaly.scores(model, ds.test_images)
    auc = anomaly.auroc(s, held_out)
    assert auc > 0.9, (model.name, auc)
    assert auc == pytest.approx(brute_force_auroc(s, held_out))
