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

  rng = np.random.default_rng(0)
  x_BxD = (rng.random((16, 784)) < 0.2).astype(np.float32)
  eps_BxZ = rng.standard_normal((16, 20)).astype(np.float32)
  hparams = {"beta": 1.0, "kl_warmup_steps": 0, "free_bits": 0.0}
  x = jnp.asarray(x_BxD).reshape(16, 28, 28, 1)
  _, metrics = objectives.loss_fn(jax_model, x, x, jnp.asarray(eps_BxZ), hparams, 0)

  # The baseline's forward pass draws eps with randn_like; feed the same eps instead.
  x_t = torch.from_numpy(x_BxD)
  mean, logvar = torch_model.encoder(x_t).chunk(2, dim=-1)
  z = mean + torch.exp(0.5 * logvar) * torch.from_numpy(eps_BxZ)
  value = baseline.neg_elbo(torch_model.decoder(z), x_t, mean, logvar).item()
  np.testing.assert_allclose(value, float(metrics["neg_elbo"]), rtol=1e-5)
  assert float(metrics["neg_elbo"]) > 100  # a random model: hundreds of nats
