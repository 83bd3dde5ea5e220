"""The beta-VAE on procedural dSprites for beta in {1, 2, 4, 6, 8, 16}: one vectorised program,
disentanglement_lib's metrics per member in sweep.csv.

    python launch.py --config configs/dsprites_beta.py --workdir runs/dsprites_beta
    python launch.py --config configs/dsprites_beta.py --workdir runs/dsprites_beta --config.num_seeds=3

The six members differ only in beta, so they train together as one vmapped program
(`train.train_group`); each is `configs/dsprites_vae.py`'s model (MLP 4096-512-256-10,
Bernoulli decoder, 2 epochs), CPU-sized. `--config.num_seeds=N` repeats every beta with seeds
seed..seed+N-1 (sweep_seeds.csv holds mean and std). docs/results.md lists what it reaches.
"""

from configs import dsprites_vae

BETAS = (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)


def get_config():
  return dsprites_vae.get_config()


def get_sweep():
  return [{"beta": b} for b in BETAS]
