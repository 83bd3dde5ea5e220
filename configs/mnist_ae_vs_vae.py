"""AE vs VAE with a 2-D latent space on MNIST: the pair behind the comparison figures.

    python launch.py --config configs/mnist_ae_vs_vae.py --workdir runs/ae_vs_vae
    python experiments/ae_vs_vae_2d.py --workdir runs/ae_vs_vae   # the side-by-side figures

Same MLP 784-400-2 network and Bernoulli decoder; the AE minimises reconstruction NLL alone,
the VAE the negative ELBO. Their latent scatters show the AE's spread-out, gappy clusters
against the VAE's compact, overlapping ones packed around the origin.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.latent_dim = 2
  config.num_epochs = 30
  return config


def get_sweep():
  return [{"model.name": "ae"}, {"model.name": "vae"}]
