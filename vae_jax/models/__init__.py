"""Model families, chosen by name (`config.model.name`) from one table: `FAMILIES`.

    ae              z = f(x), no prior (`ae.py`)
    vae             q(z|x) Gaussian, p(z) = N(0, I) (`vae.py`)
    two_layer_vae   z1, z2 with p(z2) p(z1|z2) (Burda et al., 2016; `two_layer.py`); also
                    spelled model.name="vae" with model.stochastic_layers=2, as runs saved
                    before this table are (`family_name`)
    vampprior_vae   q(z|x) Gaussian, p(z) a mixture of q(z|u_k) at learned pseudo-inputs
                    (Tomczak & Welling, 2018; `vampprior.py`)

Each family implements one interface (`base.Family`: encode, decode, log_weight_terms,
kl_per_dim, sample_prior, ... and the capabilities `stochastic`, `standard_normal_prior`,
`latent_layers`), the only thing the rest of the library asks of a model. The layers they are
built from are `layers.py`'s. The model is built from `config.model` only (`from_config`),
plus the compute dtype.

This package does not import `vae_jax.objectives`: the modules an objective adds to the model
(a FactorVAE's discriminator) reach `init_params` / `compute_graphdef` as `auxiliary`
builders from the caller (`objectives.OBJECTIVES[config.objective].modules`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
from flax import nnx

from vae_jax import checks, rng
from vae_jax.models import two_layer
from vae_jax.models.ae import AE
from vae_jax.models.base import Family
from vae_jax.models.layers import (ACTIVATIONS, DECODERS, DTYPES, ENCODERS,  # noqa: F401
                                   MLP, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder,
                                   conv_shapes)
from vae_jax.models.two_layer import TwoLayerVAE
from vae_jax.models.vae import VAE
from vae_jax.models.vampprior import VampPriorVAE

# config.model.name -> the family's class.
FAMILIES: dict[str, type[Family]] = {f.name: f for f in (AE, VAE, TwoLayerVAE, VampPriorVAE)}

# name -> build(config, compute dtype, rngs): modules added to the model by its objective.
Auxiliary = Mapping[str, Callable[[Any, Any, nnx.Rngs], nnx.Module]]


def family_name(model_config) -> str:
  """The family `config.model` builds: model.name, where model.name="vae" with
  model.stochastic_layers=2 (the older spelling, in runs saved before the family table) is the
  two-layer VAE. The one place that reads the older spelling."""
  if two_layer.legacy_spelling(model_config):
    return two_layer.NAME
  return model_config.name


def family_of(model_config) -> type[Family]:
  """The family's class, whose capabilities validation and evaluation read."""
  name = family_name(model_config)
  if name not in FAMILIES:
    checks.fail("model.name", name, f"one of {', '.join(map(repr, FAMILIES))}")
  return FAMILIES[name]


def family_field(model_config) -> tuple[str, Any]:
  """The config field, and its value, that chose the family: what a one-line message about the
  family names ("model.stochastic_layers", 2 for the older two-layer spelling)."""
  return two_layer.spelling(model_config)


def check_fields(config) -> None:
  """The type and range of every family's own fields, whatever the family."""
  for family in FAMILIES.values():
    family.check_fields(config)


def noise_dim(model_config) -> int:
  """Standard normal numbers per sample and image that a model of this config consumes."""
  return family_of(model_config).noise_dim_of(model_config)


def from_config(model_config, image_shape, rngs: nnx.Rngs, dtype: str = "float32") -> Family:
  """Builds the model from `config.model` and a compute dtype ("float32" or "bfloat16").

  The parameters are float32 and initialised identically whatever the compute dtype, so one
  parameter tree serves a bfloat16 training program and a float32 evaluation program.
  """
  return family_of(model_config).from_config(model_config, image_shape, rngs, dtype)


def init_params(config, image_shape, auxiliary: Auxiliary | None = None):
  """Builds the model of a run from its init key; returns (graphdef, params, rest).

  `auxiliary`: the modules the run's objective adds, `objectives.OBJECTIVES[config.objective]
  .modules` (a FactorVAE's discriminator), each built from its own key after the model, so the
  model's parameters are those of a run without them. The graphdef computes in float32: it is
  the one evaluation, figures and every tool that reads a finished run use, whatever
  `config.dtype` the run trained in (see `compute_graphdef`).
  """
  init_key = rng.root_key(config.seed, rng.KEY_INIT)
  model = from_config(config.model, image_shape, nnx.Rngs(params=init_key))
  _attach(model, config, auxiliary, "float32", rng.modules_key(init_key))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, params.to_pure_dict(), rest


def compute_graphdef(config, image_shape, auxiliary: Auxiliary | None = None):
  """The graphdef of the training step: the same modules and float32 parameters as
  `init_params`'s (given the same `auxiliary`), computing in `config.dtype`. Built abstractly
  (no initialisation runs)."""
  def build():
    model = from_config(config.model, image_shape, nnx.Rngs(params=0), dtype=config.dtype)
    _attach(model, config, auxiliary, config.dtype, jax.random.key(0))
    return model

  return nnx.split(nnx.eval_shape(build), nnx.Param, ...)[0]


def _attach(model, config, auxiliary: Auxiliary | None, dtype: str, key) -> None:
  """Each auxiliary module as an attribute of the model (checkpointed and vectorised with it),
  from the key fold_in(key, sum of its name's character codes)."""
  for name, build in (auxiliary or {}).items():
    setattr(model, name, build(config, DTYPES[dtype], nnx.Rngs(params=jax.random.fold_in(
        key, sum(map(ord, name))))))
