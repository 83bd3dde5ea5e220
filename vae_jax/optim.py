"""Optimiser direction (optax) and learning-rate schedule, kept apart from the learning rate.

The learning rate itself is a per-member array (see `step.py`), not baked into the optax
transformation, so members of a sweep that differ only in learning rate share one compiled
program: update = -learning_rate * schedule(step) * direction.
"""

from __future__ import annotations

import jax
import optax


# config.optimizer.name -> the optax direction it builds (see `direction`).
OPTIMIZERS = {
    "adam": "optax.scale_by_adam",
    "adamw": "optax.scale_by_adam + optax.add_decayed_weights",
    "sgd": "optax.trace (momentum b1; plain SGD at b1 = 0)",
}
# config.lr_schedule -> the multiplier of the peak learning rate (see `schedule`).
SCHEDULES = {
    "constant": "1",
    "cosine": "cosine decay to 0 at the end",
    "warmup_cosine": "linear warm-up over lr_warmup_epochs, then cosine decay",
    "iwae_paper": "Burda et al. (2016): 3^i epochs at 10^(-i/7), i = 0..7",
}


def direction(opt_config) -> optax.GradientTransformation:
  """The optax transformation from gradients to an update direction, before the step size."""
  parts = []
  if opt_config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt_config.grad_clip_norm))
  if opt_config.name in ("adam", "adamw"):
    parts.append(optax.scale_by_adam(b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps))
    if opt_config.name == "adamw" and opt_config.weight_decay > 0:
      parts.append(optax.add_decayed_weights(opt_config.weight_decay))
  elif opt_config.name == "sgd":
    if opt_config.b1 > 0:
      parts.append(optax.trace(decay=opt_config.b1))
  else:
    raise ValueError(f"unknown optimizer {opt_config.name!r}")
  return optax.chain(*parts) if parts else optax.identity()


def schedule(config, steps_per_epoch: int):
  """Multiplier of the peak learning rate as a function of the global step."""
  total = max(1, config.num_epochs * steps_per_epoch)
  if config.lr_schedule == "constant":
    return optax.constant_schedule(1.0)
  if config.lr_schedule == "cosine":
    return optax.cosine_decay_schedule(1.0, total)
  if config.lr_schedule == "iwae_paper":
    # Burda et al. (2016): 3^i epochs at 10^(-i/7) times the peak rate for i = 0..7, i.e.
    # drops after epochs 1, 4, 13, 40, 121, 364 and 1093, the last stage ending at 3,280.
    # A run shorter than that follows the same epochs up to its end; a longer one stays at
    # the last rate. (The authors' code rounds each rate to two significant digits, e.g.
    # 7.2e-4 for 7.197e-4; this follows the paper's formula.)
    ends = [sum(3**j for j in range(i + 1)) for i in range(7)]
    return optax.piecewise_constant_schedule(
        1.0, {e * steps_per_epoch: 10.0**(-1 / 7) for e in ends})
  if config.lr_schedule == "warmup_cosine":
    warm = config.lr_warmup_epochs * steps_per_epoch
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, max(warm, 1), total)
  raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")


def transform(config) -> optax.GradientTransformation:
  """The run's optax transformation: `direction(config.optimizer)`, and for the modules its
  objective adds (a FactorVAE's discriminator) their own (`Objective.module_optimizers`)."""
  from vae_jax import objectives  # pylint: disable=g-import-not-at-top
  own = objectives.OBJECTIVES[config.objective].module_optimizers
  base = direction(config.optimizer)
  if not own:
    return base
  labels = lambda params: {k: jax.tree.map(lambda _, k=k: k if k in own else "model", v)
                           for k, v in params.items()}
  return optax.multi_transform({"model": base, **{k: make() for k, make in own.items()}},
                               labels)


def step_sizes(config, hparams, multiplier):
  """The step size of each part of the parameters: learning_rate * schedule for the model, and
  each added module's own learning rate (`Objective.module_learning_rates`, no schedule);
  a scalar when the objective adds none."""
  from vae_jax import objectives  # pylint: disable=g-import-not-at-top
  own = objectives.OBJECTIVES[config.objective].module_learning_rates
  lr = hparams["learning_rate"] * multiplier
  return {k: hparams[f] for k, f in own.items()} | {"*": lr} if own else lr


def apply_update(params, direction_tree, lr):
  """params - lr * direction, leaf by leaf; `lr` a scalar or `step_sizes`' dict by top-level
  key ("*" for the rest)."""
  if isinstance(lr, dict):
    return {k: apply_update(v, direction_tree[k], lr.get(k, lr["*"])) for k, v in params.items()}
  return jax.tree.map(lambda p, u: p - (lr * u).astype(p.dtype), params, direction_tree)
