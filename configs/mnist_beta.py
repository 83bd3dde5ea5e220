"""beta-VAE on dynamically binarised MNIST: MLP 784-400-20, KL weighted by beta.

    python launch.py --config configs/mnist_beta.py --workdir runs/beta4 --config.beta=4

Larger beta buys a smaller rate (test KL) at the price of a larger distortion (test
reconstruction NLL). With beta = 4 after 30 epochs: KL about 9 nats, reconstruction about
115 nats (see the README).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.beta = 4.0
  config.model.latent_dim = 20
  return config
