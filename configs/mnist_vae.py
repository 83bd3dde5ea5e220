"""MLP VAE on dynamically binarised MNIST: 784-400-20, Bernoulli decoder, Adam 1e-3, batch 128.

    python launch.py --config configs/mnist_vae.py --workdir runs/vae

Reaches test -ELBO (`test/neg_elbo`) of about 103 nats after 10 epochs and about 100 after 30
on one CPU (see the README's results table for the measured numbers).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.num_epochs = 30
  config.model.name = "vae"
  config.model.latent_dim = 20
  config.model.hidden_sizes = (400,)
  return config
