"""Latent-size sweep: AE and VAE (MLP 784-400-z, Bernoulli decoder) for z in 2, 5, 10, 20, 50.

    python launch.py --config configs/mnist_latent.py --workdir runs/latent

Writes DIR/latent_size.png: test reconstruction NLL and -ELBO against latent size, AE and VAE
side by side. Each (model, z) pair changes array shapes, so the 10 members train as 10 groups.
"""

from configs import default

LATENT_DIMS = (2, 5, 10, 20, 50)


def get_config():
  config = default.get_config()
  config.num_epochs = 30
  return config


def get_sweep():
  return [{"model.name": name, "model.latent_dim": z} for name in ("ae", "vae") for z in LATENT_DIMS]
