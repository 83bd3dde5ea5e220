"""beta-VAE sweep on dynamically binarised MNIST: MLP 784-400-20, KL weighted by beta.

The launcher's main command trains the whole sweep (8 log-spaced betas from 0.1 to 10), all
members as one vectorised program, and draws the rate-distortion plane:

    python launch.py --config configs/mnist_beta.py --workdir runs/beta

One beta alone (a single run into the given workdir):

    python launch.py --config configs/mnist_beta.py --workdir runs/beta4 --config.beta=4

Larger beta buys a smaller rate (test KL) at the price of a larger distortion (test
reconstruction NLL); the README's table lists the measured values.
"""

from configs import default

BETAS = (0.1, 0.193, 0.373, 0.72, 1.39, 2.68, 5.18, 10.0)  # np.logspace(-1, 1, 8), rounded


def get_config():
  config = default.get_config()
  config.beta = 1.0
  config.model.latent_dim = 20
  config.num_epochs = 30
  return config


def get_sweep():
  return [{"beta": b} for b in BETAS]
