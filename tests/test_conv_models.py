"""The convolutional encoder/decoder: shapes for MNIST-like and CIFAR-like images, training."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import fake_dataset, tiny_config
from vae_jax import models, trainer, validate, workdir
from vae_jax.errors import UserError


def _conv_config(**kw):
  return tiny_config(**{"model.architecture": "conv", "model.conv_channels": (4, 8),
                        "model.kernel_size": 3, "model.hidden_sizes": (16,), **kw})


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_encoder_and_decoder_shapes(shape, kind):
  config = _conv_config(**{"model.name": kind, "model.latent_dim": 5})
  model = models.from_config(config.model, shape, nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(1), (3, *shape))
  h = model.encoder(x)
  chex.assert_shape(h, (3, 10 if kind == "vae" else 5))
  mean, logvar = model.encode(x)
  chex.assert_shape(mean, (3, 5))
  assert (logvar is None) == (kind == "ae")
  out = model.decode(mean)
  chex.assert_shape(out, (3, *shape))
  chex.assert_tree_all_finite(out)
  # Really convolutional: two stride-2 layers, kernels of the configured size and channels.
  chex.assert_shape(model.encoder.convs[0].kernel[...], (3, 3, shape[-1], 4))
  chex.assert_shape(model.encoder.convs[1].kernel[...], (3, 3, 4, 8))
  chex.assert_shape(model.decoder.deconvs[-1].kernel[...], (3, 3, 4, shape[-1]))


@pytest.mark.slow
def test_sizes_not_divisible_by_two_to_the_depth():
  assert models.conv_shapes((28, 28, 1), (8, 8, 8)) == [(14, 14), (7, 7), (4, 4)]
  assert models.conv_shapes((32, 30, 3), (8, 8)) == [(16, 15), (8, 8)]
  for shape in [(28, 28, 1), (27, 30, 2)]:
    m = models.from_config(_conv_config(**{"model.conv_channels": (4, 4, 4)}).model, shape,
                           nnx.Rngs(0))
    chex.assert_shape(m.decode(jnp.zeros((2, 4))), (2, *shape))


@pytest.mark.slow
def test_decoder_output_depends_on_every_pixel_position():
  """The crop keeps the real image area: each output pixel moves with the latent (tanh, so
  no unit is dead at initialisation)."""
  m = models.from_config(_conv_config(**{"model.conv_channels": (4, 4, 4),
                                         "model.activation": "tanh"}).model, (28, 28, 1),
                         nnx.Rngs(0))
  jac = jax.jacobian(lambda z: m.decode(z[None])[0])(jnp.ones(4))  # (28, 28, 1, 4)
  assert np.all(np.abs(np.asarray(jac)).sum(-1) > 0)


@pytest.mark.slow
def test_conv_trains_on_32x32x3_fake_data(tmp_path):
  ds = fake_dataset(n_train=128, n_test=32, shape=(32, 32, 3), binarization="static")
  config = _conv_config(num_epochs=3, learning_rate=3e-3, write_figures=True,
                        **{"data.binarization": "static"})
  res = trainer.train_group([config], [tmp_path], dataset=ds)[0]
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"]
  assert np.isfinite(res["test/neg_elbo"])
  assert (tmp_path / "reconstructions.png").stat().st_size > 0


def test_conv_settings_are_validated():
  validate.validate(_conv_config())
  with pytest.raises(UserError, match="model.conv_channels"):
    validate.validate(_conv_config(**{"model.conv_channels": ()}))
  with pytest.raises(UserError, match="model.kernel_size"):
    validate.validate(_conv_config(**{"model.kernel_size": 0}))
  with pytest.raises(UserError, match="model.architecture"):
    validate.validate(_conv_config(**{"model.architecture": "resnet"}))


# Fields configs/default.py gained after runs were first written; read back at their defaults.
_ADDED_LATER = ("model.conv_channels", "model.kernel_size", "data.corruption",
                "data.corruption_level", "data.exclude_labels", "objective",
                "num_importance_samples", "model.stochastic_layers", "model.top_latent_dim",
                "model.top_hidden_sizes", "dtype", "model.vampprior_components",
                "model.vampprior_init_mean", "model.vampprior_init_std")


def test_runs_saved_before_the_new_fields_still_load_and_resume(tmp_path):
  """config.json of a run from before conv / corruption / exclude_labels / dtype existed: the
  fields read back as the values that reproduce that run, and resuming it is not refused."""
  config = tiny_config()
  info = workdir.run_info(config)
  for key in _ADDED_LATER:
    *sections, field = key.split(".")
    node = info["config"]
    for section in sections:
      node = node[section]
    del node[field]
  workdir.write_json(tmp_path / "config.json", info)
  old = workdir.read_config(tmp_path)
  assert old.model.conv_channels == (32, 64) and old.model.kernel_size == 4
  assert old.data.corruption == "none" and old.data.exclude_labels == ()
  assert old.objective == "elbo" and old.num_importance_samples == 1
  assert old.model.stochastic_layers == 1 and old.model.top_hidden_sizes == (100, 100)
  assert old.dtype == "float32"
  assert workdir.config_differences(info["config"], workdir.resolved_config(config)) == []
  changed = tiny_config(**{"data.corruption": "mask", "data.corruption_level": 0.5})
  assert workdir.config_differences(info["config"], workdir.resolved_config(changed)) == [
      "data.corruption", "data.corruption_level"]
