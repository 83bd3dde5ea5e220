"""disentanglement_lib's unsupervised study on dSprites (Locatello et al., 2019), for a GPU.

    python launch.py --config configs/dsprites_locatello.py:beta_vae --workdir runs/locatello/beta_vae
    python launch.py --config configs/dsprites_locatello.py:dip_vae_i --workdir runs/locatello/dip_vae_i \
        --config.num_seeds=5
    python launch.py --config configs/dsprites_locatello.py --workdir runs/locatello   # every family
    python launch.py --config configs/dsprites_locatello.py:beta_tcvae \
        --member='beta_tcvae.beta=6' ...

The setup of their `unsupervised_study_v1` (model_configs and shared gin): a convolutional
encoder of four 4x4 stride-2 layers with 32, 32, 64, 64 channels and a dense layer of 256 units,
the mirrored decoder, 10 latents, a Bernoulli decoder, Adam at 1e-4 (b1 0.9, b2 0.999, eps 1e-8),
batch 64, 300,000 steps (26 epochs of dSprites' 737,280 images = 299,520 steps), and each
model family's grid of six values. The family is the config string after the file name (one
vectorised group per family: its six members differ only in that hyperparameter; seeds with
`--config.num_seeds`); without one, every family runs, one group after another. disentanglement_lib's
metrics are computed at the end at full sample counts. FactorVAE's discriminator is theirs: six
layers of 1,000 leaky-ReLU units, Adam 1e-4 with b1 0.5, b2 0.9.
"""

from configs import dsprites_vae

# Family -> (config.objective, fixed fields, the swept field, its six values), from
# disentanglement_lib's config/unsupervised_study_v1/sweep.py (dotted config keys).
FAMILIES = {
    "beta_vae": ("elbo", {}, "beta", (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)),
    "annealed_vae": ("annealed_vae",
                     {"annealed_vae.gamma": 1000.0, "annealed_vae.capacity_steps": 100_000},
                     "annealed_vae.capacity_max", (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)),
    "factor_vae": ("factor_vae", {}, "factor_vae.gamma", (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)),
    "beta_tcvae": ("beta_tcvae", {}, "beta_tcvae.beta", (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)),
    "dip_vae_i": ("dip_vae_i", {}, "dip_vae.lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)),
    "dip_vae_ii": ("dip_vae_ii", {}, "dip_vae.lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)),
}


def get_config(family: str | None = None):
  c = dsprites_vae.get_config()
  c.model.architecture = "conv"
  c.model.conv_channels = (32, 32, 64, 64)
  c.model.kernel_size = 4
  c.model.hidden_sizes = (256,)
  c.model.latent_dim = 10
  c.model.likelihood = "bernoulli"
  c.optimizer.name = "adam"
  c.learning_rate = 1e-4
  c.batch_size = 64
  c.num_epochs = 26
  c.beta = 1.0
  c.checkpoint_every_epochs = 1
  c.disentanglement_sample_scale = 1.0
  if family is not None:
    objective, fixed, _, _ = _family(family)
    c.objective = objective
    c.update_from_flattened_dict(fixed)  # dotted keys
  return c


def _family(family: str):
  if family not in FAMILIES:
    from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
    raise UserError(f"configs/dsprites_locatello.py:{family} is not a model family; expected "
                    "one of " + ", ".join(FAMILIES))
  return FAMILIES[family]


def get_sweep(family: str | None = None):
  families = [family] if family is not None else list(FAMILIES)
  members = {}
  for f in families:
    objective, fixed, field, values = _family(f)
    for v in values:
      name = f"{field}={v:g}" if family is not None else f"{f},{field}={v:g}"
      members[name] = {"objective": objective, **fixed, field: v}
      if f == "dip_vae_ii":  # lambda_d = lambda_od for DIP-VAE-II, 10 lambda_od for DIP-VAE-I
        members[name]["dip_vae.lambda_d"] = v
      elif f == "dip_vae_i":
        members[name]["dip_vae.lambda_d"] = 10.0 * v
  return members
