"""Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (ICLR 2016), Table 1:
VAE vs IWAE on dynamically binarised MNIST, one and two stochastic layers, test NLL at k = 5000.

One row (member) alone; each is long, 3,280 epochs of 3,000 batch-20 steps (about 9.8 M steps):

    python launch.py --config configs/iwae_table.py --member=iwae_k50 --workdir runs/iwae_table

and every row, one after the other, with sweep.csv (test/nll per member) at the end:

    python launch.py --config configs/iwae_table.py --workdir runs/iwae_table

The paper's numbers (test NLL in nats, k = 5000), which the README's table compares against:

    member     model                                  objective   k    paper
    vae_k1     1 layer: 784-200-200-50 (tanh)         ELBO        1    86.76
    vae_k50    1 layer                                ELBO        50   86.35
    iwae_k5    1 layer                                IWAE        5    85.54
    iwae_k50   1 layer                                IWAE        50   84.78
    vae2_k1    2 layers: 784-200-200-100-100-100-50   ELBO        1    85.33
    iwae2_k50  2 layers                               IWAE        50   82.90

Setup as in the paper's section 5: deterministic tanh layers of 200 units between x and z1, and
for the two-layer model z1 of 100 units, two tanh layers of 100 units between z1 and z2 (50
units), mirrored in the generative model; Bernoulli p(x|z1); Adam (b1 0.9, b2 0.999, eps 1e-4),
batch 20, 3^i epochs at 1e-3 * 10^(-i/7) for i = 0..7 (lr_schedule "iwae_paper"). The
architecture was checked against the paper's text (section 5, arxiv.org/abs/1509.00519, as
stored on arxiv-vanity / bytez) and the layer sizes in the authors' released experiment script
(github.com/yburda/iwae, experiments.py: latent units [100, 50], q hidden [[200, 200],
[100, 100]], p hidden [[100, 100], [200, 200]]). Known differences from that code: the ELBO
rows use the analytic KL of q(z|x) against N(0, I) with one layer (same expectation as their
sampled log weights, less variance), the decoder's output bias starts at zero rather than
at the logits of the training-set mean, and the optimizer is the paper's Adam on the batch-mean
gradient: the code's own Adam (optimizers.py) has b1 0.99, a second moment that starts at 1,
and steps on the batch-sum gradient (README, "IWAE"). `configs/iwae_fast.py` runs the same
rows on a much shorter schedule.
"""

from configs import default

TWO_LAYERS = {"model.stochastic_layers": 2, "model.latent_dim": 100}


def get_config():
  c = default.get_config()
  c.num_epochs = 3280  # sum of 3^i, i = 0..7
  c.batch_size = 20
  c.learning_rate = 1e-3  # the first stage's rate; the schedule multiplies it by 10^(-i/7)
  c.lr_schedule = "iwae_paper"
  c.optimizer.name = "adam"
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-4
  c.model.name = "vae"
  c.model.activation = "tanh"
  c.model.hidden_sizes = (200, 200)
  c.model.latent_dim = 50  # z1; the two-layer rows override it to 100
  c.model.top_hidden_sizes = (100, 100)
  c.model.top_latent_dim = 50
  c.model.likelihood = "bernoulli"
  c.data.binarization = "dynamic"
  c.eval_every_epochs = 10  # test ELBO (and L_k at the training k): cheap next to 3,000 steps an epoch
  c.checkpoint_every_epochs = 20
  c.eval_nll_k = 5000  # test/nll as in the paper: the IWAE bound with k = 5000 at the end
  return c


def get_sweep():
  return {
      "vae_k1": {"objective": "elbo", "num_importance_samples": 1},
      "vae_k50": {"objective": "elbo", "num_importance_samples": 50},
      "iwae_k5": {"objective": "iwae", "num_importance_samples": 5},
      "iwae_k50": {"objective": "iwae", "num_importance_samples": 50},
      "vae2_k1": {"objective": "elbo", "num_importance_samples": 1, **TWO_LAYERS},
      "iwae2_k50": {"objective": "iwae", "num_importance_samples": 50, **TWO_LAYERS},
  }
