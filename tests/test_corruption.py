"""Denoising: the corruptions hit pixels at the configured rates, and training corrupts the
encoder's input only (the loss targets the clean image) from a stream of its own."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import fake_dataset, tiny_config, write_fake_cache
from vae_jax import data as data_lib, models, objectives, rng, trainer, validate
from vae_jax.data import corruption
from vae_jax.errors import UserError
from tests.helpers import final_params

X = jnp.full((64, 28, 28, 1), 0.5)  # 50,176 pixels at 0.5: rates are measurable to ~0.5%


def test_gaussian_adds_noise_of_the_configured_sigma():
  for sigma in (0.05, 0.15):
    y = corruption.corrupt("gaussian", X, jax.random.key(0), sigma)
    d = np.asarray(y - X)
    assert abs(d.mean()) < 3 * sigma / np.sqrt(d.size) + 1e-6
    assert d.std() == pytest.approx(sigma, rel=0.02)
  y = corruption.corrupt("gaussian", X, jax.random.key(0), 2.0)
  assert float(y.min()) == 0.0 and float(y.max()) == 1.0  # clipped to the pixel range


@pytest.mark.parametrize("p", [0.1, 0.4])
def test_salt_and_pepper_hits_half_black_half_white(p):
  y = np.asarray(corruption.corrupt("salt_and_pepper", X, jax.random.key(1), p))
  assert np.mean(y == 0.0) == pytest.approx(p / 2, abs=0.006)
  assert np.mean(y == 1.0) == pytest.approx(p / 2, abs=0.006)
  assert np.mean(y == 0.5) == pytest.approx(1 - p, abs=0.008)  # the rest untouched


@pytest.mark.parametrize("p", [0.25, 0.75])
def test_mask_zeroes_the_configured_fraction(p):
  y = np.asarray(corruption.corrupt("mask", X, jax.random.key(2), p))
  assert np.mean(y == 0.0) == pytest.approx(p, abs=0.008)
  assert set(np.unique(y)) <= {0.0, 0.5}


def test_keys_are_explicit_and_none_is_the_identity():
  a = corruption.corrupt("mask", X, jax.random.key(3), 0.5)
  np.testing.assert_array_equal(a, corruption.corrupt("mask", X, jax.random.key(3), 0.5))
  assert not np.array_equal(a, corruption.corrupt("mask", X, jax.random.key(4), 0.5))
  assert corruption.corrupt("none", X, jax.random.key(3), 0.5) is X
  # The fast uniform of the training step is the same draw as jax.random.uniform.
  k = rng.corruption_key(jax.random.key(5), 7)
  np.testing.assert_array_equal(corruption.draw_noise("mask", k, (4, 28, 28, 1)),
                                corruption.draw_noise("mask", k, (4, 28, 28, 1), rng.uniform))


@pytest.mark.slow
def test_training_step_is_the_corrupted_input_against_the_clean_target(tmp_path):
  """One plain SGD step of a denoising AE equals params - lr * grad of loss_fn(model, x
  corrupted, x clean), with the noise recomputed from the documented keys; the logged loss
  is that loss. Pairing the clean input, or the corrupted target, gives other parameters."""
  n, lr = 16, 0.05
  ds = fake_dataset(n_train=n, n_test=16, binarization="static")
  config = tiny_config(num_epochs=1, batch_size=n, learning_rate=lr, **{
      "model.name": "ae", "data.binarization": "static", "data.corruption": "salt_and_pepper",
      "data.corruption_level": 0.5, "optimizer.name": "sgd", "optimizer.b1": 0.0})
  trainer.train_group([config], [tmp_path], dataset=ds)
  logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["train/loss"]
  trained = final_params(config, tmp_path, ds)

  graphdef, params, rest = models.init_params(config, ds.image_shape)
  seeds = jnp.array([config.seed], jnp.uint32)
  shuffle_key = rng.member_keys(seeds, rng.KEY_SHUFFLE)[0]
  train_key = rng.member_keys(seeds, rng.KEY_TRAIN)[0]
  perm = jax.random.permutation(jax.random.fold_in(shuffle_key, 0), n)
  x = jnp.asarray(ds.train_images, jnp.float32)[perm] / 255.0
  x_in = corruption.corrupt("salt_and_pepper", x, rng.corruption_key(train_key, 0), 0.5)
  hp = {"beta": 1.0, "kl_warmup_steps": 0, "free_bits": 0.0}
  eps = jnp.zeros((n, config.model.latent_dim))  # an AE ignores it

  def one_step(a, b):
    loss = lambda p: objectives.loss_fn(nnx.merge(graphdef, p, rest), a, b, eps, hp, 0)[0]
    value, grads = jax.value_and_grad(loss)(params)
    new = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return float(value), [np.asarray(v) for v in jax.tree.leaves(new)]

  loss, expected = one_step(x_in, x)
  assert logged == pytest.approx(loss, rel=1e-5)
  for got, want in zip(trained, expected):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  for a, b in ((x, x), (x_in, x_in)):
    _, other = one_step(a, b)
    assert max(np.abs(o - w).max() for o, w in zip(other, expected)) > 1e-3


@pytest.mark.slow
def test_corruption_has_its_own_stream(tmp_path):
  """A corruption that changes nothing (mask with rate 0) trains bit for bit like "none": the
  binarisation, shuffling and reparameterisation noise are untouched by the extra stream."""
  ds = fake_dataset()
  plain = tiny_config()
  noop = tiny_config(**{"data.corruption": "mask", "data.corruption_level": 0.0})
  trainer.train_group([plain], [tmp_path / "a"], dataset=ds)
  trainer.train_group([noop], [tmp_path / "b"], dataset=ds)
  for a, b in zip(final_params(plain, tmp_path / "a", ds), final_params(noop, tmp_path / "b", ds)):
    np.testing.assert_array_equal(a, b)
  real = tiny_config(**{"data.corruption": "mask", "data.corruption_level": 0.5})
  trainer.train_group([real], [tmp_path / "c"], dataset=ds)
  assert not all(np.array_equal(a, c) for a, c in zip(
      final_params(plain, tmp_path / "a", ds), final_params(real, tmp_path / "c", ds)))


def test_data_options_are_validated():
  for kind, level in (("none", 0.0), ("gaussian", 1.5), ("mask", 0.3)):
    validate.validate(tiny_config(**{"data.corruption": kind, "data.corruption_level": level}))
  with pytest.raises(UserError, match="data.corruption="):
    validate.validate(tiny_config(**{"data.corruption": "blur"}))
  with pytest.raises(UserError, match="data.corruption_level"):
    validate.validate(tiny_config(**{"data.corruption": "mask", "data.corruption_level": 1.5}))
  with pytest.raises(UserError, match="data.corruption_level"):
    validate.validate(tiny_config(**{"data.corruption": "gaussian", "data.corruption_level": 0.0}))
  with pytest.raises(UserError, match="data.exclude_labels"):
    validate.validate(tiny_config(**{"data.exclude_labels": (-1,)}))


def test_exclude_labels_removes_them_from_the_train_split_only(tmp_path):
  cache = write_fake_cache(tmp_path)
  config = tiny_config(**{"data.cache_dir": cache, "data.binarization": "static"})
  whole = data_lib.load(config.data)
  config.data.exclude_labels = (3, 7)
  ds = data_lib.load(config.data)
  assert not np.isin(ds.train_labels, [3, 7]).any()
  keep = ~np.isin(whole.train_labels, [3, 7])
  np.testing.assert_array_equal(ds.train_images, whole.train_images[keep])
  np.testing.assert_array_equal(ds.test_labels, whole.test_labels)
  assert np.isin(ds.test_labels, [3, 7]).any()
  config.data.exclude_labels = tuple(range(10))
  with pytest.raises(UserError, match="removes every training image"):
    data_lib.load(config.data)
