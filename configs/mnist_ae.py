"""Deterministic MLP autoencoder on dynamically binarised MNIST, Bernoulli decoder.

    python launch.py --config configs/mnist_ae.py --workdir runs/ae --config.model.latent_dim=2

Same network as `mnist_vae.py` with z = f(x); the loss is the reconstruction NLL alone
(`test/kl` is 0). With a 2-D latent it reaches a test reconstruction NLL of about 135 nats
after 30 epochs (see the README).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "ae"
  config.model.latent_dim = 20
  return config
