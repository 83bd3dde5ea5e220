"""Model construction from `config.model`: widths and activations of encoder and decoder."""

from __future__ import annotations

import json

import jax
import numpy as np
from flax import nnx

from tests.helpers import tiny_config
from vae_jax import models, validate, workdir
from vae_jax.errors import UserError


def _widths(mlp):
  return [layer.kernel.shape[1] for layer in mlp.layers]


def test_decoder_widths_and_activation_apart_from_the_encoders():
  # Chen et al.'s dSprites MLP shape in miniature: encoder 12-6, decoder 6-6-6 with tanh.
  c = tiny_config(**{"model.hidden_sizes": (12, 6), "model.decoder_hidden_sizes": (6, 6, 5),
                     "model.decoder_activation": "tanh"})
  validate.validate(c)
  model = nnx.merge(*models.init_params(c, (8, 8, 1)))
  assert _widths(model.encoder.mlp) == [12, 6, 2 * c.model.latent_dim]
  assert _widths(model.decoder.mlp) == [6, 6, 5, 64]
  assert model.encoder.mlp.activation is jax.nn.relu
  # The decoder computes tanh between its layers: recompute it by hand.
  z = np.random.default_rng(0).normal(size=(3, c.model.latent_dim)).astype(np.float32)
  h = z
  for i, layer in enumerate(model.decoder.mlp.layers):
    h = h @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
    if i < 3:
      h = np.tanh(h)
  np.testing.assert_allclose(np.asarray(model.decode(z)).reshape(3, -1), h, rtol=1e-5,
                             atol=1e-5)


def test_unset_decoder_fields_mirror_the_encoder_exactly():
  c = tiny_config(**{"model.hidden_sizes": (12, 6)})
  plain = models.init_params(c, (8, 8, 1))[1]
  c.model.decoder_hidden_sizes = (6, 12)  # the mirror, spelled out
  c.model.decoder_activation = "relu"
  spelled = models.init_params(c, (8, 8, 1))[1]
  jax.tree.map(np.testing.assert_array_equal, plain, spelled)


def test_bad_decoder_fields_are_one_line():
  for field, value in (("decoder_hidden_sizes", (6, 0)), ("decoder_activation", "swish")):
    c = tiny_config(**{f"model.{field}": value})
    try:
      validate.validate(c)
    except UserError as e:
      assert f"model.{field}" in str(e) and "\n" not in str(e)
    else:
      raise AssertionError(f"model.{field}={value!r} passed validation")


def test_a_config_json_without_the_decoder_fields_reads_back_unset(tmp_path):
  c = tiny_config()
  d = json.loads(c.to_json_best_effort())
  del d["model"]["decoder_hidden_sizes"], d["model"]["decoder_activation"]
  (tmp_path / "config.json").write_text(json.dumps({"config": d}))
  back = workdir.read_config(tmp_path)
  assert back.model.decoder_hidden_sizes is None and back.model.decoder_activation is None
  c.model.decoder_hidden_sizes = (4, 4)
  d = json.loads(c.to_json_best_effort())
  (tmp_path / "config.json").write_text(json.dumps({"config": d}))
  assert workdir.read_config(tmp_path).model.decoder_hidden_sizes == (4, 4)
