"""The rows of `iwae_table.py` (Burda et al., 2016, Table 1) on a budget far below the paper's:
batch 100 and a warm-up + cosine learning-rate schedule over 300 epochs (180,000 steps,
about 1/50 of the paper's 9.8 M), same models, objectives and test NLL (k = 5000).

    python launch.py --config configs/iwae_fast.py --member=iwae_k50 --workdir runs/iwae_fast
    python launch.py --config configs/iwae_fast.py --workdir runs/iwae_fast   # all six rows

The question it answers is how much of the table's ordering (IWAE below VAE, two layers below
one) survives a short schedule; the README lists measured numbers beside the paper's.
"""

from configs import iwae_table


def get_config():
  c = iwae_table.get_config()
  c.num_epochs = 300
  c.batch_size = 100
  c.learning_rate = 1e-3  # peak, reached after the warm-up
  c.lr_schedule = "warmup_cosine"
  c.lr_warmup_epochs = 5
  c.eval_every_epochs = 5
  c.checkpoint_every_epochs = 10
  return c


def get_sweep():
  return iwae_table.get_sweep()
