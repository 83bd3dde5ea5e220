"""Out-of-distribution detection across datasets: an AE and a VAE trained on Fashion-MNIST,
and another pair on MNIST, each scoring both test splits.

The experiment trains the sweep through the launcher (unless --no_train), then writes the
AUROC table, score histograms and extremes from every finished member:

    python experiments/anomaly_fashion_vs_mnist.py --workdir runs/anomaly_fashion_mnist

The launcher alone trains the 4 members (or one, e.g. `--member=vae_mnist`):

    python launch.py --config configs/anomaly_fashion_mnist.py --workdir runs/anomaly_fashion_mnist

Members `{ae,vae}_{fashion_mnist,mnist}`: the convolutional network of `fashion_mnist.py`
(grey levels, Laplace decoder of learned scale), 5 epochs. Both datasets go through the same
preparation (no binarisation), so scores of one model on the two test splits compare. The
README's table used the MLP 784-400-20 instead, to keep the four trainings within CPU
minutes: add `--config.model.architecture=mlp --config.model.hidden_sizes="(400,)"`, and
`--config.num_epochs=1` for a quick look.
"""

from configs import fashion_mnist

DATASETS = ("fashion_mnist", "mnist")
KINDS = ("ae", "vae")


def get_config():
  config = fashion_mnist.get_config()
  config.num_epochs = 5
  return config


def get_sweep():
  return {f"{kind}_{name}": {"model.name": kind, "data.name": name}
          for name in DATASETS for kind in KINDS}
