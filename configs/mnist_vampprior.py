"""The standard-prior VAE against the VampPrior VAE on MNIST, at one schedule.

    python launch.py --config configs/mnist_vampprior.py --workdir runs/vampprior
    python launch.py --config configs/mnist_vampprior.py --member=vampprior --workdir ...  # one
    python launch.py --config configs/mnist_vampprior.py:smoke --workdir runs/vampprior_smoke

Tomczak & Welling (2018), "VAE with a VampPrior" (AISTATS; arXiv:1705.07120), Table 2: on
dynamically binarised MNIST their one-layer VAE reaches test -log p(x) 88.56 (IWAE, k = 5000)
with p(z) = N(0, I) and 85.57 with the VampPrior (K = 500 pseudo-inputs), 2,000 epochs with
early stopping, 100 epochs of KL warm-up, Adam at 5e-4, batch 100, z of 40 units, gated MLPs
of 300-300 units. Here both members share everything but the prior (`model.name`): the same
MLP 784-300-300-40 (ReLU, not gated), Adam 5e-4, batch 100, the KL weight warmed up over the
first 5 epochs, and test/nll at k = 5000, on a schedule that trains on a 2-core CPU:

  vae         p(z) = N(0, I)
  vampprior   p(z) = (1/500) sum_k q(z | u_k), u_k learned pseudo-inputs (`models/vampprior.py`)

An epoch of the VampPrior costs more than the VAE's: every step also encodes the 500
pseudo-inputs (five times the batch). `:smoke` is a one-epoch check of the whole path (50
pseudo-inputs, k = 100), minutes on a CPU.
"""

from configs import default
from vae_jax import config as config_lib

MEMBERS = {
    "vae": {"model.name": "vae"},
    "vampprior": {"model.name": "vampprior_vae"},
}
VARIANTS = ("smoke",)


def get_config(variant: str | None = None):
  config_lib.check_variant("configs/mnist_vampprior.py", variant, VARIANTS)
  c = default.get_config()
  c.data.name = "mnist"
  c.data.binarization = "dynamic"
  c.model.name = "vampprior_vae"
  c.model.architecture = "mlp"
  c.model.hidden_sizes = (300, 300)
  c.model.latent_dim = 40
  c.model.activation = "relu"
  c.model.likelihood = "bernoulli"
  c.model.vampprior_components = 500  # K, the paper's
  c.optimizer.name = "adam"
  c.learning_rate = 5e-4
  c.batch_size = 100
  c.num_epochs = 40
  c.kl_warmup_steps = 5 * 600  # 5 epochs of 600 steps
  c.eval_every_epochs = 5
  c.checkpoint_every_epochs = 5
  c.eval_nll_k = 5000
  if variant == "smoke":
    c.model.vampprior_components = 50
    c.num_epochs = 1
    c.kl_warmup_steps = 300
    c.eval_every_epochs = 1
    c.eval_nll_k = 100
  return c


def get_sweep(variant: str | None = None):
  del variant  # the same two members at every schedule
  return {name: dict(overrides) for name, overrides in MEMBERS.items()}
