"""Base configuration: every field the library reads, with its default.

Every experiment config imports this and overrides a few fields. Run it alone with

    python launch.py --config configs/default.py --workdir runs/default

which trains the MLP 784-400-20 VAE of `mnist_vae.py` for 30 epochs.

The fields, their defaults and what each means live in the package, `vae_jax/config.py`, so
an installed vae_jax reads runs saved before a field existed (`vae_jax/workdir.py`) without
this folder. Each objective's own fields are one sub-dict named for it, declared by its module
in vae_jax/objectives/: `annealed_vae` (gamma, capacity_max, capacity_steps), `beta_tcvae`
(alpha, beta, gamma, estimator), `dip_vae` (lambda_od, lambda_d; both DIP-VAEs) and
`factor_vae` (gamma, discriminator_learning_rate, discriminator_sizes), e.g.
`--config.beta_tcvae.beta=4`. The ELBO's knobs (beta, kl_warmup_steps, free_bits,
num_importance_samples) stay at the top level.
"""

from ml_collections import config_dict

from vae_jax import config as config_lib


def get_config() -> config_dict.ConfigDict:
  return config_lib.get_config()
