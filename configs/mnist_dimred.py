"""Dimensionality reduction on MNIST: AEs and VAEs with 2-D and 10-D codes, for comparison
with PCA by classifiers trained on the codes.

The experiment trains the sweep through the launcher (unless --no_train), then exports the
latent means of every finished member and writes the accuracy table and the 2-D scatters:

    python experiments/dimensionality_reduction.py --workdir runs/dimred

The launcher alone trains the 4 members (or one, e.g. `--member=vae_z10`):

    python launch.py --config configs/mnist_dimred.py --workdir runs/dimred

Members `{ae,vae}_z{2,10}`: the MLP 784-400-z of `mnist_vae.py` (Bernoulli decoder, dynamic
binarisation), 10 epochs; `--config.num_epochs=1` for a quick look. The README's accuracy
table was measured on these runs.
"""

from configs import mnist_vae

LATENT_DIMS = (2, 10)
KINDS = ("ae", "vae")


def get_config():
  config = mnist_vae.get_config()
  config.num_epochs = 10
  return config


def get_sweep():
  return {f"{kind}_z{d}": {"model.name": kind, "model.latent_dim": d}
          for kind in KINDS for d in LATENT_DIMS}
