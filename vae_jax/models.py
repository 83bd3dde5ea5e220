"""Encoders, decoders and the autoencoders built from them, in Flax NNX.

`AutoEncoder` is one module for both model kinds: with `kind="vae"` the encoder emits the mean
and log-variance of a Gaussian q(z|x); with `kind="ae"` it emits z itself. A VAE may have a
second stochastic layer above the first (`stochastic_layers=2`, Burda et al., 2016):
q(z1|x) q(z2|z1) for inference and p(z2) = N(0, I), p(z1|z2), p(x|z1) for generation, with
MLPs of `top_hidden_sizes` between z1 and z2 in both directions; `latent_dim` is always the
size of z1, the layer the decoder reads, so every tool that encodes or decodes sees z1. Architectures are
looked up by name in `ENCODERS` / `DECODERS` ("mlp", and "conv": stride-2 convolutions down,
transposed convolutions up, for any image size and channel count). The model is built from
`config.model` only (`from_config`), plus the compute dtype.

Mixed precision (`config.dtype`): every layer computes in the given dtype (its inputs and
weights are cast to it), while the parameters themselves stay float32 (`param_dtype`), so the
optimizer updates and stores float32 values. `encode` and `decode` hand back float32 arrays:
the likelihood and the KL sum hundreds of per-pixel and per-latent terms per image, and in
bfloat16 (8 significant bits) a sum of ~100 nats would be rounded to ~0.5 nats.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vae_jax import convolutions, rng

# Compute dtypes a model may run in. float16 is left out on purpose: its 5-bit exponent
# underflows small gradients unless the loss is scaled, which this library does not do;
# bfloat16 has float32's exponent range and needs no scaling.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2),  # slope 0.2, TensorFlow's default
}


class MLP(nnx.Module):
  """Dense layers of the given widths with an activation between them (none after the last)."""

  def __init__(self, sizes: Sequence[int], activation: str, *, rngs: nnx.Rngs,
               dtype=jnp.float32):
    self.layers = nnx.List([nnx.Linear(a, b, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
                            for a, b in zip(sizes[:-1], sizes[1:])])
    self.activation = ACTIVATIONS[activation]

  def __call__(self, h):
    for i, layer in enumerate(self.layers):
      h = layer(h)
      if i < len(self.layers) - 1:
        h = self.activation(h)
    return h


class MLPEncoder(nnx.Module):
  """Image (B, H, W, C) -> flat features (B, out_features)."""

  def __init__(self, image_shape, hidden_sizes, out_features, activation, *, rngs,
               dtype=jnp.float32):
    self.mlp = MLP([math.prod(image_shape), *hidden_sizes, out_features], activation, rngs=rngs,
                   dtype=dtype)

  def __call__(self, x_BxHxWxC):
    return self.mlp(x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1))


class MLPDecoder(nnx.Module):
  """Latent (B, Z) -> one decoder output per pixel (B, H, W, C); widths mirror the encoder."""

  def __init__(self, image_shape, hidden_sizes, latent_dim, activation, *, rngs,
               dtype=jnp.float32):
    self.image_shape = tuple(image_shape)
    sizes = [latent_dim, *reversed(tuple(hidden_sizes)), math.prod(image_shape)]
    self.mlp = MLP(sizes, activation, rngs=rngs, dtype=dtype)

  def __call__(self, z_BxZ):
    return self.mlp(z_BxZ).reshape(z_BxZ.shape[0], *self.image_shape)


def conv_shapes(image_shape, channels: Sequence[int]) -> list[tuple[int, int]]:
  """Spatial sizes (H, W) after each stride-2 SAME convolution: ceil(size / 2) per layer."""
  h, w = image_shape[:2]
  sizes = []
  for _ in channels:
    h, w = -(-h // 2), -(-w // 2)
    sizes.append((h, w))
  return sizes


class ConvEncoder(nnx.Module):
  """Image (B, H, W, C) -> flat features: stride-2 convolutions, then dense layers.

  Each convolution halves the spatial size (SAME padding: 28 -> 14 -> 7 -> 4), so any image
  size works; the feature map is flattened and passed through `hidden_sizes` dense layers.
  """

  def __init__(self, image_shape, hidden_sizes, out_features, activation, *, rngs,
               channels: Sequence[int] = (32, 64), kernel_size: int = 4, dtype=jnp.float32,
               lowering: str = "auto"):
    chans = [image_shape[-1], *channels]
    self.convs = nnx.List([nnx.Conv(a, b, (kernel_size, kernel_size), (2, 2), padding="SAME",
                                    dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
                           for a, b in zip(chans[:-1], chans[1:])])
    h, w = conv_shapes(image_shape, channels)[-1]
    self.mlp = MLP([h * w * channels[-1], *hidden_sizes, out_features], activation, rngs=rngs,
                   dtype=dtype)
    self.activation = ACTIVATIONS[activation]
    self.dtype, self.lowering = dtype, lowering

  def __call__(self, x_BxHxWxC):
    h = x_BxHxWxC
    for conv in self.convs:  # nnx.Conv's parameters and dtype rules; `convolutions`' lowering
      h = convolutions.conv(h.astype(self.dtype), conv.kernel[...].astype(self.dtype),
                            self.lowering) + conv.bias[...].astype(self.dtype)
      h = self.activation(h)
    return self.mlp(h.reshape(h.shape[0], -1))


class ConvDecoder(nnx.Module):
  """Latent (B, Z) -> (B, H, W, C): dense layers to the encoder's last feature map, then
  stride-2 transposed convolutions back up; the output is cropped to the image size when
  the size is not a multiple of 2^depth (28 -> 4 -> 8 -> 16 -> 32, cropped to 28)."""

  def __init__(self, image_shape, hidden_sizes, latent_dim, activation, *, rngs,
               channels: Sequence[int] = (32, 64), kernel_size: int = 4, dtype=jnp.float32,
               lowering: str = "auto"):
    self.image_shape = tuple(image_shape)
    self.start = (*conv_shapes(image_shape, channels)[-1], channels[-1])
    sizes = [latent_dim, *reversed(tuple(hidden_sizes)), math.prod(self.start)]
    self.mlp = MLP(sizes, activation, rngs=rngs, dtype=dtype)
    chans = [*reversed(tuple(channels)), image_shape[-1]]
    self.deconvs = nnx.List([
        nnx.ConvTranspose(a, b, (kernel_size, kernel_size), (2, 2), padding="SAME", dtype=dtype,
                          param_dtype=jnp.float32, rngs=rngs)
        for a, b in zip(chans[:-1], chans[1:])])
    self.activation = ACTIVATIONS[activation]
    self.dtype, self.lowering = dtype, lowering

  def __call__(self, z_BxZ):
    h = self.activation(self.mlp(z_BxZ)).reshape(z_BxZ.shape[0], *self.start)
    for i, deconv in enumerate(self.deconvs):
      h = (convolutions.conv_transpose(h.astype(self.dtype), deconv.kernel[...].astype(self.dtype),
                                       self.lowering) + deconv.bias[...].astype(self.dtype))
      if i < len(self.deconvs) - 1:
        h = self.activation(h)
    height, width = self.image_shape[:2]
    return h[:, :height, :width]


# config.model.architecture -> (encoder, decoder).
ENCODERS = {"mlp": MLPEncoder, "conv": ConvEncoder}
DECODERS = {"mlp": MLPDecoder, "conv": ConvDecoder}
KINDS = {"vae": "Gaussian q(z|x), z = mean + sigma * eps", "ae": "deterministic z = f(x)"}


class AutoEncoder(nnx.Module):
  """AE (z = f(x)) or VAE (q(z|x) = N(mean, diag(exp(logvar)))) with a chosen decoder likelihood."""

  def __init__(self, *, kind: str, architecture: str, image_shape: Sequence[int], latent_dim: int,
               hidden_sizes: Sequence[int], activation: str, likelihood: str, scale: float,
               learn_scale: bool, rngs: nnx.Rngs, decoder_activation: str | None = None,
               decoder_hidden_sizes: Sequence[int] | None = None,
               conv_channels: Sequence[int] = (32, 64),
               kernel_size: int = 4, stochastic_layers: int = 1, top_latent_dim: int = 0,
               top_hidden_sizes: Sequence[int] = (), dtype: str = "float32",
               conv_lowering: str = "auto"):
    self.kind = kind
    self.likelihood = likelihood
    self.latent_dim = latent_dim
    self.stochastic_layers = stochastic_layers
    self.top_latent_dim = top_latent_dim if stochastic_layers == 2 else 0
    # Standard normal numbers per sample and image: one per latent unit of every layer
    # (eps[..., :latent_dim] draws z1, the rest z2).
    self.noise_dim = latent_dim + self.top_latent_dim
    enc_out = 2 * latent_dim if kind == "vae" else latent_dim
    conv = ({"channels": tuple(conv_channels), "kernel_size": kernel_size,
             "lowering": conv_lowering} if architecture == "conv" else {})
    compute = DTYPES[dtype]
    self.encoder = ENCODERS[architecture](image_shape, hidden_sizes, enc_out, activation,
                                          rngs=rngs, dtype=compute, **conv)
    # The decoders take widths in encoder order and mirror them; decoder_hidden_sizes is
    # written from z up, so it is reversed here.
    dec_hidden = (hidden_sizes if decoder_hidden_sizes is None
                  else tuple(reversed(tuple(decoder_hidden_sizes))))
    self.decoder = DECODERS[architecture](image_shape, dec_hidden, latent_dim,
                                          decoder_activation or activation, rngs=rngs,
                                          dtype=compute, **conv)
    log_scale = jnp.asarray(math.log(scale), jnp.float32)
    # A learned scale is a Param (trained, checkpointed); a fixed one is a constant Variable.
    self.log_scale = nnx.Param(log_scale) if learn_scale else nnx.Variable(log_scale)
    if stochastic_layers == 2:
      # Built after everything above, so a one-layer model draws its initial parameters from
      # the init key exactly as before the option existed.
      self.top_encoder = MLP([latent_dim, *top_hidden_sizes, 2 * top_latent_dim], activation,
                             rngs=rngs, dtype=compute)
      self.top_decoder = MLP([top_latent_dim, *reversed(tuple(top_hidden_sizes)), 2 * latent_dim],
                             activation, rngs=rngs, dtype=compute)

  def encode(self, x_BxHxWxC):
    """Returns (mean_BxZ, logvar_BxZ) for a VAE, (z_BxZ, None) for an AE, in float32."""
    h = self.encoder(x_BxHxWxC).astype(jnp.float32)  # a no-op when computing in float32
    if self.kind == "vae":
      mean, logvar = jnp.split(h, 2, axis=-1)
      return mean, logvar
    return h, None

  def decode(self, z_BxZ):
    """Decoder output (B, H, W, C) in float32: Bernoulli logits or the pre-sigmoid location."""
    return self.decoder(z_BxZ).astype(jnp.float32)

  def encode_top(self, z1_SxBxZ):
    """q(z2|z1) of a two-layer VAE: (mean, logvar), each (..., top_latent_dim)."""
    mean, logvar = jnp.split(self.top_encoder(z1_SxBxZ).astype(jnp.float32), 2, axis=-1)
    return mean, logvar

  def prior_z1(self, z2_SxBxT):
    """p(z1|z2) of a two-layer VAE: (mean, logvar), each (..., latent_dim)."""
    mean, logvar = jnp.split(self.top_decoder(z2_SxBxT).astype(jnp.float32), 2, axis=-1)
    return mean, logvar


def noise_dim(model_config) -> int:
  """Standard normal numbers per sample and image that a model of this config consumes."""
  m = model_config
  return m.latent_dim + (m.top_latent_dim if m.stochastic_layers == 2 else 0)


def from_config(model_config, image_shape, rngs: nnx.Rngs, dtype: str = "float32") -> AutoEncoder:
  """Builds the model from `config.model` and a compute dtype ("float32" or "bfloat16").

  The parameters are float32 and initialised identically whatever the compute dtype, so one
  parameter tree serves a bfloat16 training program and a float32 evaluation program.
  """
  m = model_config
  return AutoEncoder(kind=m.name, architecture=m.architecture, image_shape=tuple(image_shape),
                     latent_dim=m.latent_dim, hidden_sizes=tuple(m.hidden_sizes),
                     activation=m.activation, decoder_activation=m.get("decoder_activation"),
                     decoder_hidden_sizes=m.get("decoder_hidden_sizes"),
                     likelihood=m.likelihood, scale=m.scale,
                     learn_scale=m.learn_scale, conv_channels=tuple(m.conv_channels),
                     kernel_size=m.kernel_size, stochastic_layers=m.stochastic_layers,
                     top_latent_dim=m.top_latent_dim, top_hidden_sizes=tuple(m.top_hidden_sizes),
                     dtype=dtype, conv_lowering=m.get("conv_lowering", "auto"), rngs=rngs)


def init_params(config, image_shape):
  """Builds the model of a run from its init key; returns (graphdef, params, rest).

  The graphdef computes in float32: it is the one evaluation, figures and every tool that
  reads a finished run use, whatever `config.dtype` the run trained in (see
  `compute_graphdef`).
  """
  init_key = rng.root_key(config.seed, rng.KEY_INIT)
  model = from_config(config.model, image_shape, nnx.Rngs(params=init_key))
  _attach_objective_modules(model, config, "float32", rng.modules_key(init_key))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, params.to_pure_dict(), rest


def compute_graphdef(config, image_shape):
  """The graphdef of the training step: the same modules and float32 parameters as
  `init_params`'s, computing in `config.dtype`. Built abstractly (no initialisation runs)."""
  def build():
    model = from_config(config.model, image_shape, nnx.Rngs(params=0), dtype=config.dtype)
    _attach_objective_modules(model, config, config.dtype, jax.random.key(0))
    return model

  return nnx.split(nnx.eval_shape(build), nnx.Param, ...)[0]


def _attach_objective_modules(model, config, dtype: str, key) -> None:
  """The modules the run's objective adds (a FactorVAE's discriminator), from their own key so
  the AutoEncoder's parameters are those of a run without them."""
  from vae_jax import objectives  # pylint: disable=g-import-not-at-top
  for name, build in objectives.OBJECTIVES[config.objective].modules.items():
    setattr(model, name, build(config, DTYPES[dtype], nnx.Rngs(params=jax.random.fold_in(
        key, sum(map(ord, name))))))
