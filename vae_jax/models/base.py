"""The interface every model family implements: the only thing the rest of the library asks of
a model.

A family is an `nnx.Module` subclass of `Family`, built from `config.model` (`from_config`),
with an encoder (`self.encoder`) and a decoder (`self.decoder`) from `layers.py` and the
decoder likelihood's scale (`self.log_scale`). What it is, the trainer, objectives, evaluation
and figures read from class attributes (readable before any model is built, so validation
asks `models.family_of(config.model)`), never from its name:

    stochastic             q(z|x) and p(z) exist: a likelihood p(x) (IWAE, test/nll), the
                           ELBO's KL, prior samples, traversals. An AE has none of them.
    standard_normal_prior  p(z) = N(0, I) over the decoder's z, factorised: each dimension's
                           KL(q(z_d|x) || N(0, 1)) is analytic (`kl_per_dim`). Free bits, the
                           disentangling objectives, the KL decomposition's dimension-wise term
                           and the prior's quantiles on figures need it.
    latent_layers          stochastic layers; with one, q(z|x) is the whole posterior and its
                           aggregate decomposes the KL (index-code MI, total correlation).

What it computes, on float32 arrays (the layers may compute in bfloat16: the likelihood and
the KL sum hundreds of terms per image, which bfloat16's 8 significant bits would round):

    encode(x_BxHxWxC)       (mean_BxZ, logvar_BxZ) of q(z|x); an AE: (z_BxZ, None)
    decode(z_BxZ)           the decoder's output (B, H, W, C): logits or pre-sigmoid location
    log_weight_terms(q, x, eps_SxBxE)
                            (log p(x|z), log p(z), log q(z|x)), each (S, B), at the latents
                            that the standard normal eps reparameterises (E = noise_dim): the
                            one definition of a log importance weight, which the objectives and
                            `marginal_likelihood` share
    kl_per_dim(q)           (B, Z) analytic KL per dimension, or None without a closed form
                            (the ELBO then uses the Monte Carlo log weights)
    sample_prior(key, n)    (n, Z) draws of the decoder's z from p(z)
    deeper_posterior_means(q, key)
                            {name: (B, T)} means of the posteriors above z (a two-layer VAE's
                            q(z2|z1) at one sample of z1, "top"); {} for one layer
    prior_description       what p(z) is, in words (figure titles)

Adding a family: one file beside this one with its subclass, one entry in `models.FAMILIES`,
and its config fields (under `config.model`, defaulting to values that change nothing for the
other families) in `configs/default.py`, checked by its `check_fields`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vae_jax import decoder_likelihoods
from vae_jax.models import layers


class Family(nnx.Module):
  """An encoder, a decoder and a decoder likelihood; subclasses add the latent model."""

  name: ClassVar[str] = ""  # its key in `models.FAMILIES`, the value of config.model.name
  title: ClassVar[str] = ""  # how figures and printouts name it ("VAE")
  stochastic: ClassVar[bool] = True
  standard_normal_prior: ClassVar[bool] = False
  latent_layers: ClassVar[int] = 1

  def __init__(self, *, architecture: str, image_shape: Sequence[int], latent_dim: int,
               hidden_sizes: Sequence[int], activation: str, likelihood: str, scale: float,
               learn_scale: bool, rngs: nnx.Rngs, decoder_activation: str | None = None,
               decoder_hidden_sizes: Sequence[int] | None = None,
               conv_channels: Sequence[int] = (32, 64), kernel_size: int = 4,
               dtype: str = "float32", conv_lowering: str = "auto"):
    self.likelihood = likelihood
    self.latent_dim = latent_dim
    # Standard normal numbers per sample and image (families with more latents add theirs).
    self.noise_dim = latent_dim
    compute = layers.DTYPES[dtype]
    # A stochastic encoder emits the mean and log-variance of a Gaussian q(z|x).
    enc_out = 2 * latent_dim if self.stochastic else latent_dim
    conv = ({"channels": tuple(conv_channels), "kernel_size": kernel_size,
             "lowering": conv_lowering} if architecture == "conv" else {})
    # Built in this order from the init key (encoder, then decoder), so every family's shared
    # parts start from the same values as before the families existed.
    self.encoder = layers.ENCODERS[architecture](image_shape, hidden_sizes, enc_out, activation,
                                                 rngs=rngs, dtype=compute, **conv)
    # The decoders take widths in encoder order and mirror them; decoder_hidden_sizes is
    # written from z up, so it is reversed here.
    dec_hidden = (hidden_sizes if decoder_hidden_sizes is None
                  else tuple(reversed(tuple(decoder_hidden_sizes))))
    self.decoder = layers.DECODERS[architecture](image_shape, dec_hidden, latent_dim,
                                                 decoder_activation or activation, rngs=rngs,
                                                 dtype=compute, **conv)
    log_scale = jnp.asarray(math.log(scale), jnp.float32)
    # A learned scale is a Param (trained, checkpointed); a fixed one is a constant Variable.
    self.log_scale = nnx.Param(log_scale) if learn_scale else nnx.Variable(log_scale)

  # Built from the config ------------------------------------------------------------------

  @classmethod
  def config_kwargs(cls, model_config) -> dict[str, Any]:
    """The constructor's arguments from `config.model` (a family adds its own fields)."""
    m = model_config
    return dict(architecture=m.architecture, latent_dim=m.latent_dim,
                hidden_sizes=tuple(m.hidden_sizes), activation=m.activation,
                decoder_activation=m.get("decoder_activation"),
                decoder_hidden_sizes=m.get("decoder_hidden_sizes"), likelihood=m.likelihood,
                scale=m.scale, learn_scale=m.learn_scale, conv_channels=tuple(m.conv_channels),
                kernel_size=m.kernel_size, conv_lowering=m.get("conv_lowering", "auto"))

  @classmethod
  def from_config(cls, model_config, image_shape, rngs: nnx.Rngs,
                  dtype: str = "float32") -> "Family":
    return cls(**cls.config_kwargs(model_config), image_shape=tuple(image_shape), rngs=rngs,
               dtype=dtype)

  @classmethod
  def noise_dim_of(cls, model_config) -> int:
    """`noise_dim` of the model `model_config` builds, without building it."""
    return model_config.latent_dim

  @classmethod
  def check_fields(cls, config) -> None:
    """The type and range of the family's own `config.model` fields, whatever the family (a
    config holds them all: a bad value is an error even where it is unused)."""

  @classmethod
  def validate(cls, config) -> None:
    """The combinations of the config the family defines, when it is chosen (one line each)."""

  # What it computes -----------------------------------------------------------------------

  def encode(self, x_BxHxWxC):
    """(mean_BxZ, logvar_BxZ) of the Gaussian q(z|x), in float32."""
    h = self.encoder(x_BxHxWxC).astype(jnp.float32)  # a no-op when computing in float32
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, logvar

  def decode(self, z_BxZ):
    """Decoder output (B, H, W, C) in float32: Bernoulli logits or the pre-sigmoid location."""
    return self.decoder(z_BxZ).astype(jnp.float32)

  def log_likelihood(self, x_target, z_SxBxZ):
    """log p(x|z) of each of S samples of z per image: (S, B)."""
    s, b, z_dim = z_SxBxZ.shape
    out = self.decode(z_SxBxZ.reshape(s * b, z_dim)).reshape(s, b, *x_target.shape[1:])
    # vmap over samples broadcasts x instead of materialising k copies (2x faster on CPU).
    nll_S = jax.vmap(lambda o: decoder_likelihoods.nll(self.likelihood, o, self.log_scale[...],
                                                       x_target))
    return -nll_S(out)

  def log_weight_terms(self, q, x_target, eps_SxBxE):
    """(log p(x|z), log p(z), log q(z|x)), each (S, B), at the latents eps reparameterises.

    q: `encode(x)`, computed once per image by the caller (it does not depend on the sample).
    The log importance weight is log p(x|z) + log p(z) - log q(z|x)."""
    raise NotImplementedError(f"{type(self).__name__} defines no log weights")

  def kl_per_dim(self, q):
    """Each dimension's analytic KL(q(z_d|x) || p(z_d)), (B, Z); None without a closed form."""
    del q
    return None

  def sample_prior(self, key, n: int):
    """(n, Z) draws of the decoder's z from the prior p(z)."""
    raise NotImplementedError(f"{type(self).__name__} has no prior")

  def deeper_posterior_means(self, q, key) -> dict[str, jax.Array]:
    """Means of the posteriors of the latent layers above z (none for one layer)."""
    del q, key
    return {}

  @property
  def prior_description(self) -> str:
    return ""
