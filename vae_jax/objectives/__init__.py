"""Training objectives, chosen by name (`config.objective`) from one table: `OBJECTIVES`.

An objective is a loss `loss(model, x_in, x_target, eps, hparams, ctx) -> (loss, metrics)`:
the model merged from its parameters, the encoder's input and the decoder's target (the same
images unless the run denoises), the reparameterisation noise (B, E) or (K, B, E), the
member's hyperparameters (a dict of scalars, traced: members of a vectorised sweep differ in
them) and a `LossContext` (the step, the training set's size). `metrics` holds "loss", "rec",
"kl" and "neg_elbo" (= rec + KL) as batch means in nats, plus any terms of its own.

Each entry declares the config fields it reads per member (`hparams`: the trainer stacks them
over a sweep's members, and members that differ only in them and the seed train as one
vmapped program) and a `validate(config)` for its own fields and combinations. Adding an
objective is one entry here plus its fields in `configs/default.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

from vae_jax import checks
from vae_jax.objectives import elbo
from vae_jax.objectives.elbo import eval_metrics, log_weight_terms  # noqa: F401
from vae_jax.objectives.gaussian import (gaussian_kl, kl_weight, log_mean_exp,  # noqa: F401
                                         log_q_of_eps, normal_log_prob, reparameterize,
                                         standard_normal_log_prob)


class LossContext(NamedTuple):
  """What a loss may need besides the batch: the global step (traced) and the number of
  training images (static)."""
  step: Any
  dataset_size: int


@dataclasses.dataclass(frozen=True)
class Objective:
  loss: Callable
  hparams: tuple[str, ...]  # config fields read per member; they may differ within a group
  validate: Callable[[Any], None]  # raises UserError for a bad field or combination
  summary: str


def _validate_elbo_family(config) -> None:
  """The combinations of objective, k, model and free bits that define something."""
  vae = config.model.name == "vae"
  if config.objective != "elbo" and not vae:
    checks.fail("objective", config.objective, "'elbo' with model.name='ae' (an AE has no "
                "q(z|x) to importance-weight)")
  # Free bits floor each latent dimension's analytic KL; the importance-weighted bound holds
  # no such term, nor does a two-layer model (whose p(z1|z2) has no closed-form KL).
  if config.free_bits > 0 and vae and config.objective == "iwae":
    checks.fail("free_bits", config.free_bits, "0 with objective='iwae' (the bound has no "
                "per-dimension KL to floor)")
  if config.free_bits > 0 and vae and config.model.stochastic_layers == 2:
    checks.fail("free_bits", config.free_bits, "0 with model.stochastic_layers=2 (a two-layer "
                "model has no per-dimension analytic KL to floor)")


_ELBO_HPARAMS = ("beta", "kl_warmup_steps", "free_bits")

OBJECTIVES: dict[str, Objective] = {
    "elbo": Objective(elbo.elbo_loss, _ELBO_HPARAMS, _validate_elbo_family,
                      "rec + beta * KL (the beta-VAE; the k-sample ELBO for k > 1)"),
    "iwae": Objective(elbo.iwae_loss, _ELBO_HPARAMS, _validate_elbo_family,
                      "the importance-weighted bound L_k (Burda et al., 2016)"),
}


def member_hparams(config) -> tuple[str, ...]:
  """The fields a member of `config` reads per member: the learning rate and its objective's."""
  return ("learning_rate", *OBJECTIVES[config.objective].hparams)


def vectorised_fields(config) -> tuple[str, ...]:
  """The fields in which members of one vectorised group may differ (they change no shapes)."""
  return ("seed", *member_hparams(config))


def loss_fn(model, x_in, x_target, eps, hparams, step, objective: str = "elbo", *,
            dataset_size: int = 0):
  """The loss of `OBJECTIVES[objective]` on one batch at global step `step`: (loss, metrics)."""
  ctx = LossContext(step=step, dataset_size=dataset_size)
  return OBJECTIVES[objective].loss(model, x_in, x_target, eps, hparams, ctx)
