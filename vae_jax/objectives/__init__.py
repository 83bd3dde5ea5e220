"""Training objectives, chosen by name (`config.objective`) from one table: `OBJECTIVES`.

An objective is a loss `loss(model, x_in, x_target, eps, hparams, ctx) -> (loss, metrics)`:
the model merged from its parameters, the encoder's input and the decoder's target (the same
images unless the run denoises), the reparameterisation noise (B, E) or (K, B, E), the
member's hyperparameters (a dict of scalars, traced: members of a vectorised sweep differ in
them) and a `LossContext` (the step, the training set's size, the objective's static options).
`metrics` holds "loss", "rec", "kl" and "neg_elbo" (= rec + KL) as batch means in nats, plus
any terms of its own.

Each entry declares the config fields it reads per member (`hparams`: the trainer stacks them
over a sweep's members, and members that differ only in them and the seed train as one
vmapped program), the fields that change its program (`static`: they reach the loss as
`ctx.options`, see `static_options`), a `validate(config)` for its combinations and a
`check_fields(config)` for the type and range of its own fields. Every objective's fields are
checked whatever the objective (a config file holds them all), its combinations only when it
is chosen. An objective's own fields live in one sub-dict of the config named for it
(`config.beta_tcvae.beta`, `config.factor_vae.gamma`; the DIP-VAEs share `config.dip_vae`),
declared with their defaults by its module's `config_fields()` and listed in `CONFIG_SECTIONS`,
from which the default config (`vae_jax/config.py`) is assembled; `hparams` and `static` name
them dotted ("beta_tcvae.beta"). The shared ELBO knobs (`beta`, `kl_warmup_steps`, `free_bits`,
`num_importance_samples`) stay at the top level. Adding an objective is one entry here, plus
its section in `CONFIG_SECTIONS` when it has fields of its own.

Besides the ELBO family (`elbo.py`) the table holds the disentangling objectives of one-layer
VAEs: the annealed-capacity VAE (`annealed_vae.py`, Burgess et al., 2018), the β-TCVAE
(`beta_tcvae.py`, Chen et al., 2018) and DIP-VAE-I/II (`dip_vae.py`, Kumar et al., 2018).
"""

from __future__ import annotations

import dataclasses

import optax
import types
from typing import Any, Callable, Mapping, NamedTuple

from vae_jax import checks, models
from vae_jax.objectives import annealed_vae, beta_tcvae, dip_vae, elbo, factor_vae
from vae_jax.objectives.elbo import eval_metrics  # noqa: F401
from vae_jax.objectives.gaussian import (gaussian_kl, kl_weight, log_mean_exp,  # noqa: F401
                                         log_q_of_eps, normal_log_prob, reparameterize,
                                         standard_normal_log_prob)


class LossContext(NamedTuple):
  """What a loss may need besides the batch: the global step (traced), the number of
  training images (static) and the objective's static options (`static_options`)."""
  step: Any
  dataset_size: int
  options: Mapping[str, Any] = types.MappingProxyType({})
  key: Any = None  # the step's objective key (`rng.objective_key`), for objectives that sample
  axis_name: str | None = None  # the device axis inside shard_map (None on one device)


@dataclasses.dataclass(frozen=True)
class Objective:
  loss: Callable
  hparams: tuple[str, ...]  # config fields read per member; they may differ within a group
  validate: Callable[[Any], None]  # raises UserError for a bad combination (when chosen)
  summary: str
  static: tuple[str, ...] = ()  # config fields that change the program: the same in a group
  check_fields: Callable[[Any], None] = lambda config: None  # its fields' types and ranges
  needs_key: bool = False  # the loss samples (ctx.key)
  # Extra modules of the model: name -> build(config, compute dtype, rngs), attached to the
  # AutoEncoder (checkpointed and vectorised with it); each trains with its own optimizer
  # `module_optimizers[name]` (optax, before the step size) at the per-member learning rate
  # field `module_learning_rates[name]`.
  modules: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
  module_optimizers: Mapping[str, Callable[[], Any]] = dataclasses.field(default_factory=dict)
  module_learning_rates: Mapping[str, str] = dataclasses.field(default_factory=dict)


def check_all_fields(config) -> None:
  """The type and range of every objective's own fields, whatever objective is chosen."""
  for objective in OBJECTIVES.values():
    objective.check_fields(config)


def _checking_all_fields(validate: Callable[[Any], None]) -> Callable[[Any], None]:
  """`validate`, after `check_all_fields` (what `validate.py` runs as the objective's check)."""
  def run(config) -> None:
    check_all_fields(config)
    validate(config)
  return run


def _validate_elbo_family(config) -> None:
  """The combinations of objective, k, model family and free bits that define something."""
  family = models.family_of(config.model)
  if config.objective != "elbo" and not family.stochastic:
    checks.fail("objective", config.objective, f"'elbo' with model.name={config.model.name!r} "
                "(a deterministic autoencoder has no q(z|x) to importance-weight)")
  # Free bits floor each latent dimension's analytic KL; the importance-weighted bound holds
  # no such term, nor does a family without a factorised N(0, I) prior (the two-layer VAE's
  # p(z1|z2), the VampPrior's mixture: no closed-form KL per dimension).
  if config.free_bits > 0 and family.stochastic and config.objective == "iwae":
    checks.fail("free_bits", config.free_bits, "0 with objective='iwae' (the bound has no "
                "per-dimension KL to floor)")
  if config.free_bits > 0 and family.stochastic and not family.standard_normal_prior:
    field, value = models.family_field(config.model)
    checks.fail("free_bits", config.free_bits, f"0 with {field}={value!r} (the {family.title}'s "
                "prior has no per-dimension analytic KL to floor)")


_ELBO_HPARAMS = ("beta", "kl_warmup_steps", "free_bits")
_check = _checking_all_fields

# "beta" is a member field of every objective: the trainer scores test/loss = rec + beta * KL
# with it. The annealed VAE and the beta-TCVAE weight their KL terms themselves and require
# beta = 1 (so test/loss is the test negative ELBO); the DIP-VAEs keep the ELBO's knobs.
OBJECTIVES: dict[str, Objective] = {
    "elbo": Objective(elbo.elbo_loss, _ELBO_HPARAMS, _check(_validate_elbo_family),
                      "rec + beta * KL (the beta-VAE; the k-sample ELBO for k > 1)"),
    "iwae": Objective(elbo.iwae_loss, _ELBO_HPARAMS, _check(_validate_elbo_family),
                      "the importance-weighted bound L_k (Burda et al., 2016)"),
    "annealed_vae": Objective(
        annealed_vae.loss, ("beta", *annealed_vae.HPARAMS), _check(annealed_vae.validate),
        "rec + gamma |KL - C|, C raised linearly to C_max (Burgess et al., 2018)",
        check_fields=annealed_vae.check_fields),
    "beta_tcvae": Objective(
        beta_tcvae.loss, ("beta", *beta_tcvae.HPARAMS), _check(beta_tcvae.validate),
        "rec + alpha MI + beta TC + gamma dimension-wise KL (Chen et al., 2018)",
        static=beta_tcvae.STATIC, check_fields=beta_tcvae.check_fields),
    "dip_vae_i": Objective(
        dip_vae.loss_i, (*_ELBO_HPARAMS, *dip_vae.HPARAMS), _check(dip_vae.validate),
        "the ELBO + a penalty on Cov[mu(x)] (DIP-VAE-I; Kumar et al., 2018)",
        check_fields=dip_vae.check_fields),
    "factor_vae": Objective(
        factor_vae.loss, ("beta", *factor_vae.HPARAMS), _check(factor_vae.validate),
        "rec + KL + gamma TC, TC by a discriminator's density ratio (Kim & Mnih, 2018)",
        check_fields=factor_vae.check_fields, needs_key=True,
        modules={"discriminator": factor_vae.discriminator},
        module_optimizers={"discriminator": lambda: optax.scale_by_adam(
            **factor_vae.DISCRIMINATOR_ADAM)},
        module_learning_rates={"discriminator": "factor_vae.discriminator_learning_rate"}),
    "dip_vae_ii": Objective(
        dip_vae.loss_ii, (*_ELBO_HPARAMS, *dip_vae.HPARAMS), _check(dip_vae.validate),
        "the ELBO + a penalty on Cov_q(z) (DIP-VAE-II; Kumar et al., 2018)",
        check_fields=dip_vae.check_fields),
}


# Each objective's own fields: config.<section> = <module>.config_fields(), the sections of
# the default config (`vae_jax/config.py`). The DIP-VAEs share one.
CONFIG_SECTIONS: dict[str, Callable[[], Any]] = {
    m.SECTION: m.config_fields for m in (annealed_vae, beta_tcvae, dip_vae, factor_vae)}


def member_hparams(config) -> tuple[str, ...]:
  """The fields a member of `config` reads per member: the learning rate and its objective's."""
  return ("learning_rate", *OBJECTIVES[config.objective].hparams)


def vectorised_fields(config) -> tuple[str, ...]:
  """The fields in which members of one vectorised group may differ (they change no shapes)."""
  return ("seed", *member_hparams(config))


def static_options(config) -> dict[str, Any]:
  """The values of the fields that change `config.objective`'s program (`Objective.static`),
  for `loss_fn(options=...)`; members of one vectorised group share them."""
  return {f: config[f] for f in OBJECTIVES[config.objective].static}


def loss_fn(model, x_in, x_target, eps, hparams, step, objective: str = "elbo", *,
            dataset_size: int = 0, options: Mapping[str, Any] | None = None, key=None,
            axis_name: str | None = None):
  """The loss of `OBJECTIVES[objective]` on one batch at global step `step`: (loss, metrics).

  `options`: `static_options(config)`; an objective reads its defaults for those not given."""
  ctx = LossContext(step=step, dataset_size=dataset_size,
                    options=types.MappingProxyType(dict(options or {})), key=key,
                    axis_name=axis_name)
  return OBJECTIVES[objective].loss(model, x_in, x_target, eps, hparams, ctx)
