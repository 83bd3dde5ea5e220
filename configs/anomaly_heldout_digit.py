"""Anomaly detection with one MNIST digit held out of training: an AE and a VAE per digit.

The experiment trains the whole sweep through the launcher (unless --no_train), then scores
the test split with every finished member and writes the AUROC table and figures:

    python experiments/anomaly_heldout_digit.py --workdir runs/anomaly_heldout

The launcher alone trains the 20 members (or one, e.g. `--member=vae_holdout3`) without the
analysis:

    python launch.py --config configs/anomaly_heldout_digit.py --workdir runs/anomaly_heldout
    python launch.py --config configs/anomaly_heldout_digit.py --workdir runs/anomaly_heldout \
        --member=ae_holdout3

Members `{ae,vae}_holdout{d}` for d in 0-9: the MLP 784-400-20 of `mnist_vae.py` (Bernoulli
decoder, dynamic binarisation), 5 epochs on the training split without digit d
(`data.exclude_labels`; the test split stays whole). Add `--config.num_epochs=1` for a quick
look. The README's AUROC table was measured on these runs.
"""

from configs import mnist_vae

DIGITS = tuple(range(10))
KINDS = ("ae", "vae")


def get_config():
  config = mnist_vae.get_config()
  config.num_epochs = 5
  return config


def get_sweep():
  # Digit-major order: an interrupted sweep leaves complete AE/VAE pairs behind it.
  return {f"{kind}_holdout{d}": {"model.name": kind, "data.exclude_labels": (d,)}
          for d in DIGITS for kind in KINDS}
