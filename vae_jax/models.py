"""Encoders, decoders and the autoencoders built from them, in Flax NNX.

`AutoEncoder` is one module for both model kinds: with `kind="vae"` the encoder emits the mean
and log-variance of a Gaussian q(z|x); with `kind="ae"` it emits z itself. Architectures are
looked up by name in `ENCODERS` / `DECODERS`, so a new one (the convolutional pair) plugs in
without touching the rest. The model is built from `config.model` only (`from_config`).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
}


class MLP(nnx.Module):
  """Dense layers of the given widths with an activation between them (none after the last)."""

  def __init__(self, sizes: Sequence[int], activation: str, *, rngs: nnx.Rngs):
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.activation = ACTIVATIONS[activation]

  def __call__(self, h):
    for i, layer in enumerate(self.layers):
      h = layer(h)
      if i < len(self.layers) - 1:
        h = self.activation(h)
    return h


class MLPEncoder(nnx.Module):
  """Image (B, H, W, C) -> flat features (B, out_features)."""

  def __init__(self, image_shape, hidden_sizes, out_features, activation, *, rngs):
    self.mlp = MLP([math.prod(image_shape), *hidden_sizes, out_features], activation, rngs=rngs)

  def __call__(self, x_BxHxWxC):
    return self.mlp(x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1))


class MLPDecoder(nnx.Module):
  """Latent (B, Z) -> one decoder output per pixel (B, H, W, C); widths mirror the encoder."""

  def __init__(self, image_shape, hidden_sizes, latent_dim, activation, *, rngs):
    self.image_shape = tuple(image_shape)
    sizes = [latent_dim, *reversed(tuple(hidden_sizes)), math.prod(image_shape)]
    self.mlp = MLP(sizes, activation, rngs=rngs)

  def __call__(self, z_BxZ):
    return self.mlp(z_BxZ).reshape(z_BxZ.shape[0], *self.image_shape)


ENCODERS = {"mlp": MLPEncoder}
DECODERS = {"mlp": MLPDecoder}


class AutoEncoder(nnx.Module):
  """AE (z = f(x)) or VAE (q(z|x) = N(mean, diag(exp(logvar)))) with a chosen decoder likelihood."""

  def __init__(self, *, kind: str, architecture: str, image_shape: Sequence[int], latent_dim: int,
               hidden_sizes: Sequence[int], activation: str, likelihood: str, scale: float,
               learn_scale: bool, rngs: nnx.Rngs):
    self.kind = kind
    self.likelihood = likelihood
    self.latent_dim = latent_dim
    enc_out = 2 * latent_dim if kind == "vae" else latent_dim
    self.encoder = ENCODERS[architecture](image_shape, hidden_sizes, enc_out, activation, rngs=rngs)
    self.decoder = DECODERS[architecture](image_shape, hidden_sizes, latent_dim, activation, rngs=rngs)
    log_scale = jnp.asarray(math.log(scale), jnp.float32)
    # A learned scale is a Param (trained, checkpointed); a fixed one is a constant Variable.
    self.log_scale = nnx.Param(log_scale) if learn_scale else nnx.Variable(log_scale)

  def encode(self, x_BxHxWxC):
    """Returns (mean_BxZ, logvar_BxZ) for a VAE, (z_BxZ, None) for an AE."""
    h = self.encoder(x_BxHxWxC)
    if self.kind == "vae":
      mean, logvar = jnp.split(h, 2, axis=-1)
      return mean, logvar
    return h, None

  def decode(self, z_BxZ):
    """Decoder output (B, H, W, C): Bernoulli logits or the pre-sigmoid location."""
    return self.decoder(z_BxZ)


def from_config(model_config, image_shape, rngs: nnx.Rngs) -> AutoEncoder:
  """Builds the model from `config.model` alone."""
  m = model_config
  return AutoEncoder(kind=m.name, architecture=m.architecture, image_shape=tuple(image_shape),
                     latent_dim=m.latent_dim, hidden_sizes=tuple(m.hidden_sizes),
                     activation=m.activation, likelihood=m.likelihood, scale=m.scale,
                     learn_scale=m.learn_scale, rngs=rngs)
