"""Model construction from `config.model` (`vae_jax/models/`): widths and activations of
encoder and decoder, the package's names, the older two-layer spelling, objective modules and
the import order (models below objectives)."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
from flax import nnx

from tests.helpers import ROOT, tiny_config
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


def test_the_models_package_does_not_import_the_objectives():
  """models/ stands below objectives/ (which builds a FactorVAE's discriminator from
  `models.layers`): importing it must not import them, directly or lazily."""
  code = """
import sys
from ml_collections import config_dict
import vae_jax.models as m
model = dict(architecture="mlp", latent_dim=2, hidden_sizes=(4,), activation="relu",
             likelihood="bernoulli", scale=1.0, learn_scale=False, conv_channels=(4,),
             kernel_size=4, stochastic_layers=1, top_latent_dim=2, top_hidden_sizes=(3,),
             vampprior_components=3, vampprior_init_mean=-0.05, vampprior_init_std=0.01)
for name in m.FAMILIES:  # build and run every family
  c = config_dict.ConfigDict({"seed": 0, "dtype": "float32", "model": {**model, "name": name}})
  m.init_params(c, (4, 4, 1))
  m.compute_graphdef(c, (4, 4, 1))
bad = sorted(k for k in sys.modules if k.startswith("vae_jax.objectives"))
assert not bad, bad
"""
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]


def test_the_package_keeps_the_names_the_library_uses():
  for name in ("init_params", "compute_graphdef", "from_config", "noise_dim", "DTYPES",
               "ACTIVATIONS", "MLP", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder",
               "ENCODERS", "DECODERS", "conv_shapes", "FAMILIES"):
    assert hasattr(models, name), name
  assert models.MLP is models.layers.MLP


def test_the_older_two_layer_spelling_is_the_two_layer_family():
  """Runs saved before the family table hold model.name="vae", model.stochastic_layers=2: they
  build the two-layer VAE, with the parameters of model.name="two_layer_vae"."""
  fields = {"model.top_latent_dim": 2, "model.top_hidden_sizes": (8,)}
  old = tiny_config(**{"model.name": "vae", "model.stochastic_layers": 2, **fields})
  new = tiny_config(**{"model.name": "two_layer_vae", **fields})
  validate.validate(old)
  validate.validate(new)
  assert models.family_name(old.model) == models.family_name(new.model) == "two_layer_vae"
  assert models.family_field(old.model) == ("model.stochastic_layers", 2)
  assert models.noise_dim(old.model) == models.noise_dim(new.model) == 4 + 2
  a, b = models.init_params(old, (8, 8, 1))[1], models.init_params(new, (8, 8, 1))[1]
  assert set(a) == {"encoder", "decoder", "top_encoder", "top_decoder"}
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_auxiliary_modules_join_the_parameters_from_their_own_key():
  """An objective's modules (a FactorVAE's discriminator) reach `init_params` from the caller;
  the model's parameters are those of a run without them."""
  c = tiny_config()
  build = lambda config, dtype, rngs: models.MLP([4, 3, 2], "relu", rngs=rngs, dtype=dtype)
  graphdef, params, rest = models.init_params(c, (8, 8, 1), {"extra": build})
  plain = models.init_params(c, (8, 8, 1))[1]
  assert set(params) == set(plain) | {"extra"}
  for k in plain:
    jax.tree.map(np.testing.assert_array_equal, params[k], plain[k])
  assert "extra" in nnx.state(nnx.merge(models.compute_graphdef(c, (8, 8, 1), {"extra": build}),
                                        params, rest), nnx.Param).to_pure_dict()
