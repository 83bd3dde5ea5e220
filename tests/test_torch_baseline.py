"""benchmarks/torch_baseline.py computes the objective vae_jax trains: same network shapes,
same -ELBO for the same weights, images and noise. Skipped where PyTorch is not installed
(it comes with the `bench` extra, not `test`)."""

import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import mnist_vae
from tests.helpers import ROOT
from vae_jax import models, objectives

torch = pytest.importorskip("torch")


def _baseline():
  spec = importlib.util.spec_from_file_location("torch_baseline",
                                                ROOT / "benchmarks" / "torch_baseline.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _batch_and_jax_neg_elbo(jax_model):
  """16 binary MNIST-sized images, their 20-D noise, and vae_jax's -ELBO of them."""
  rng = np.random.default_rng(0)
  x_BxD = (rng.random((16, 784)) < 0.2).astype(np.float32)
  eps_BxZ = rng.standard_normal((16, 20)).astype(np.float32)
  hparams = {"beta": 1.0, "kl_warmup_steps": 0, "free_bits": 0.0}
  x = jnp.asarray(x_BxD).reshape(16, 28, 28, 1)
  _, metrics = objectives.loss_fn(jax_model, x, x, jnp.asarray(eps_BxZ), hparams, 0)
  return x_BxD, eps_BxZ, float(metrics["neg_elbo"])


def test_torch_baseline_neg_elbo_equals_vae_jax_objective():
  baseline = _baseline()
  jax_model = models.from_config(mnist_vae.get_config().model, (28, 28, 1), nnx.Rngs(params=0))
  torch_model = baseline.VAE()
  # Copy vae_jax's weights into the PyTorch layers (Linear stores (out, in), Flax (in, out)).
  jax_layers = [*jax_model.encoder.mlp.layers, *jax_model.decoder.mlp.layers]
  torch_layers = [m for m in torch_model.modules() if isinstance(m, torch.nn.Linear)]
  assert [tuple(l.kernel.shape) for l in jax_layers] == [
      tuple(l.weight.shape[::-1]) for l in torch_layers]
  with torch.no_grad():
    for j, t in zip(jax_layers, torch_layers):
      t.weight.copy_(torch.from_numpy(np.asarray(j.kernel[...]).T.copy()))
      t.bias.copy_(torch.from_numpy(np.array(j.bias[...])))

  x_BxD, eps_BxZ, jax_neg_elbo = _batch_and_jax_neg_elbo(jax_model)

  # The baseline's forward pass draws eps with randn_like; feed the same eps instead.
  x_t = torch.from_numpy(x_BxD)
  mean, logvar = torch_model.encoder(x_t).chunk(2, dim=-1)
  z = mean + torch.exp(0.5 * logvar) * torch.from_numpy(eps_BxZ)
  value = baseline.neg_elbo(torch_model.decoder(z), x_t, mean, logvar).item()
  np.testing.assert_allclose(value, jax_neg_elbo, rtol=1e-5)
  assert jax_neg_elbo > 100  # a random model: hundreds of nats


def test_torch_conv_baseline_is_configs_mnist_conv_model():
  """The conv baseline is the same function as vae_jax's conv VAE of configs/mnist_conv.py
  once vae_jax's weights are copied in: the layouts differ (PyTorch's NCHW, (out, in, kh, kw)
  kernels and flipped transposed-convolution kernels; flax's NHWC), the -ELBO must not."""
  from configs import mnist_conv  # pylint: disable=g-import-not-at-top
  baseline = _baseline()
  jax_model = models.from_config(mnist_conv.get_config().model, (28, 28, 1), nnx.Rngs(params=0))
  torch_model = baseline.ConvVAE()
  t = lambda a: torch.from_numpy(np.array(a, np.float32))  # a writable copy
  enc, dec = jax_model.encoder, jax_model.decoder
  c2 = 32
  with torch.no_grad():
    convs = [m for m in torch_model.encoder if isinstance(m, torch.nn.Conv2d)]
    for j, m in zip(enc.convs, convs):
      m.weight.copy_(t(np.asarray(j.kernel[...]).transpose(3, 2, 0, 1)))  # HWIO -> OIHW
      m.bias.copy_(t(j.bias[...]))
    deconvs = [m for m in torch_model.decoder_conv if isinstance(m, torch.nn.ConvTranspose2d)]
    for j, m in zip(dec.deconvs, deconvs):
      # flax's (kernel not transposed) = PyTorch's gradient-of-conv with the kernel flipped.
      m.weight.copy_(t(np.asarray(j.kernel[...])[::-1, ::-1].transpose(2, 3, 0, 1)))
      m.bias.copy_(t(j.bias[...]))
    e_lin = [m for m in torch_model.encoder if isinstance(m, torch.nn.Linear)]
    d_lin = [m for m in torch_model.decoder_mlp if isinstance(m, torch.nn.Linear)]
    # Flattened feature maps: flax's rows run over (h, w, c), PyTorch's over (c, h, w).
    k0 = np.asarray(enc.mlp.layers[0].kernel[...]).reshape(7, 7, c2, -1).transpose(2, 0, 1, 3)
    e_lin[0].weight.copy_(t(k0.reshape(7 * 7 * c2, -1).T))
    e_lin[0].bias.copy_(t(enc.mlp.layers[0].bias[...]))
    e_lin[1].weight.copy_(t(np.asarray(enc.mlp.layers[1].kernel[...]).T))
    e_lin[1].bias.copy_(t(enc.mlp.layers[1].bias[...]))
    d_lin[0].weight.copy_(t(np.asarray(dec.mlp.layers[0].kernel[...]).T))
    d_lin[0].bias.copy_(t(dec.mlp.layers[0].bias[...]))
    k1 = np.asarray(dec.mlp.layers[1].kernel[...]).reshape(-1, 7, 7, c2).transpose(0, 3, 1, 2)
    d_lin[1].weight.copy_(t(k1.reshape(-1, 7 * 7 * c2).T))
    d_lin[1].bias.copy_(t(np.asarray(dec.mlp.layers[1].bias[...]).reshape(7, 7, c2)
                          .transpose(2, 0, 1).reshape(-1)))

  x_BxD, eps_BxZ, jax_neg_elbo = _batch_and_jax_neg_elbo(jax_model)

  x_t = torch.from_numpy(x_BxD)
  mean, logvar = torch_model.encoder(x_t.view(-1, 1, 28, 28)).chunk(2, dim=-1)
  z = mean + torch.exp(0.5 * logvar) * torch.from_numpy(eps_BxZ)
  logits = torch_model.decoder_conv(torch_model.decoder_mlp(z).view(-1, c2, 7, 7)).flatten(1)
  value = baseline.neg_elbo(logits, x_t, mean, logvar).item()
  np.testing.assert_allclose(value, jax_neg_elbo, rtol=1e-5)
  assert jax_neg_elbo > 100  # a random model: hundreds of nats
