"""The layers every model family is built from, in Flax NNX: MLPs, and encoders and decoders
looked up by `config.model.architecture` in `ENCODERS` / `DECODERS` ("mlp", and "conv":
stride-2 convolutions down, transposed convolutions up, for any image size and channel count).

Mixed precision (`config.dtype`): every layer computes in the given dtype (its inputs and
weights are cast to it), while the parameters themselves stay float32 (`param_dtype`), so the
optimizer updates and stores float32 values. The families hand back float32 arrays from their
encoders and decoders (`models/base.py`).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vae_jax import convolutions

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
