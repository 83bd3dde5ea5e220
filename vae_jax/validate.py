"""Config validation: every field checked once, up front, before any data or compilation.

Each failure raises `UserError` with one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import numbers
from typing import Any

from ml_collections import config_dict

from vae_jax.errors import UserError

MODEL_NAMES = ("vae", "ae")
ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian", "laplace")
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "softplus")
BINARIZATIONS = ("dynamic", "static", "none")
CORRUPTIONS = ("none", "gaussian", "salt_and_pepper", "mask")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "iwae_paper")
OBJECTIVES = ("elbo", "iwae")
WANDB_MODES = ("offline", "online", "disabled")
DTYPES = ("float32", "bfloat16")  # vae_jax.models.DTYPES; float16 would need loss scaling


def _fail(field: str, value: Any, allowed: str) -> None:
  raise UserError(f"config.{field}={value!r} is invalid: expected {allowed}")


def _int(c, field, lo=None):
  v = _get(c, field)
  if isinstance(v, bool) or not isinstance(v, numbers.Integral):
    _fail(field, v, "an integer" + (f" >= {lo}" if lo is not None else ""))
  if lo is not None and v < lo:
    _fail(field, v, f"an integer >= {lo}")


def _float(c, field, lo=None, hi=None, lo_open=False):
  v = _get(c, field)
  if isinstance(v, bool) or not isinstance(v, numbers.Real) or v != v or v in (float("inf"), float("-inf")):
    _fail(field, v, "a finite number")
  bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi)
  if bad:
    rng = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
    if hi is not None:
      rng += (" and " if rng else "") + f"<= {hi}"
    _fail(field, v, f"a number {rng}")


def _choice(c, field, choices):
  v = _get(c, field)
  if v not in choices:
    _fail(field, v, "one of " + ", ".join(repr(x) for x in choices))


def _bool(c, field):
  v = _get(c, field)
  if not isinstance(v, bool):
    _fail(field, v, "True or False")


def _opt_str(c, field):
  v = _get(c, field)
  if v is not None and (not isinstance(v, str) or not v):
    _fail(field, v, "a non-empty string or unset")


def _get(c, field):
  node = c
  for part in field.split("."):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      raise UserError(f"config.{field} is missing: every config must define it (see configs/default.py)") from None
  return node


def _check_objective(config) -> None:
  """The combinations of objective, k, model and free bits that define something."""
  vae = config.model.name == "vae"
  if config.objective != "elbo" and not vae:
    _fail("objective", config.objective, "'elbo' with model.name='ae' (an AE has no q(z|x) to "
          "importance-weight)")
  if config.num_importance_samples > 1 and not vae:
    _fail("num_importance_samples", config.num_importance_samples,
          "1 with model.name='ae' (an AE's code is deterministic: there is nothing to sample)")
  if config.model.stochastic_layers == 2:
    if not vae:
      _fail("model.stochastic_layers", 2, "1 with model.name='ae' (stacked latent layers are "
            "stochastic: use model.name='vae')")
    if config.model.architecture != "mlp":
      _fail("model.stochastic_layers", 2, f"1 with model.architecture="
            f"{config.model.architecture!r} (two stochastic layers are MLP-only)")
  # Free bits floor each latent dimension's analytic KL; the importance-weighted bound holds
  # no such term, nor does a two-layer model (whose p(z1|z2) has no closed-form KL).
  if config.free_bits > 0 and vae and config.objective == "iwae":
    _fail("free_bits", config.free_bits, "0 with objective='iwae' (the bound has no "
          "per-dimension KL to floor)")
  if config.free_bits > 0 and vae and config.model.stochastic_layers == 2:
    _fail("free_bits", config.free_bits, "0 with model.stochastic_layers=2 (a two-layer model "
          "has no per-dimension analytic KL to floor)")


def validate(config: config_dict.ConfigDict, num_devices: int = 1) -> None:
  """Checks every field the library reads; raises UserError on the first bad one."""
  _int(config, "seed", 0)
  _int(config, "num_epochs", 0)
  _int(config, "batch_size", 1)
  if config.batch_size % num_devices:
    _fail("batch_size", config.batch_size, f"a multiple of the number of devices ({num_devices})")
  _float(config, "learning_rate", 0.0, lo_open=True)
  _choice(config, "lr_schedule", LR_SCHEDULES)
  _int(config, "lr_warmup_epochs", 0)
  if config.lr_warmup_epochs > config.num_epochs and config.lr_schedule == "warmup_cosine":
    _fail("lr_warmup_epochs", config.lr_warmup_epochs, f"at most num_epochs ({config.num_epochs})")
  _float(config, "beta", 0.0)
  _int(config, "kl_warmup_steps", 0)
  _float(config, "free_bits", 0.0)
  _int(config, "num_seeds", 1)
  _choice(config, "objective", OBJECTIVES)
  _int(config, "num_importance_samples", 1)
  if _get(config, "dtype") == "float16":
    _fail("dtype", "float16", "'float32' or 'bfloat16' (float16 underflows small gradients "
          "without loss scaling, which vae_jax does not do; bfloat16 needs none)")
  _choice(config, "dtype", DTYPES)

  _choice(config, "optimizer.name", OPTIMIZERS)
  _float(config, "optimizer.b1", 0.0, 1.0)
  _float(config, "optimizer.b2", 0.0, 1.0)
  _float(config, "optimizer.eps", 0.0, lo_open=True)
  _float(config, "optimizer.weight_decay", 0.0)
  _float(config, "optimizer.grad_clip_norm", 0.0)

  _choice(config, "model.name", MODEL_NAMES)
  _choice(config, "model.architecture", ARCHITECTURES)
  _int(config, "model.latent_dim", 1)
  hs = _get(config, "model.hidden_sizes")
  if not isinstance(hs, (tuple, list)) or any(
      isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hs):
    _fail("model.hidden_sizes", hs, "a tuple of positive integers, e.g. (400,) or (512, 256)")
  cc = _get(config, "model.conv_channels")
  if not isinstance(cc, (tuple, list)) or not cc or any(
      isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in cc):
    _fail("model.conv_channels", cc, "a non-empty tuple of positive integers, e.g. (32, 64)")
  _int(config, "model.kernel_size", 1)
  _choice(config, "model.activation", ACTIVATIONS)
  _choice(config, "model.likelihood", LIKELIHOODS)
  _float(config, "model.scale", 0.0, lo_open=True)
  _bool(config, "model.learn_scale")
  _int(config, "model.stochastic_layers", 1)
  if config.model.stochastic_layers > 2:
    _fail("model.stochastic_layers", config.model.stochastic_layers, "1 or 2")
  _int(config, "model.top_latent_dim", 1)
  ths = _get(config, "model.top_hidden_sizes")
  if not isinstance(ths, (tuple, list)) or any(
      isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in ths):
    _fail("model.top_hidden_sizes", ths, "a tuple of positive integers, e.g. (100, 100) or ()")
  _check_objective(config)

  _opt_str(config, "data.name")
  if not isinstance(config.data.name, str):
    _fail("data.name", config.data.name, "a TFDS dataset name such as 'mnist' or 'fashion_mnist'")
  _choice(config, "data.binarization", BINARIZATIONS)
  if config.model.likelihood == "bernoulli" and config.data.binarization == "none":
    _fail("data.binarization", "none",
          "'dynamic' or 'static' with model.likelihood='bernoulli' (grayscale pixels need "
          "'gaussian' or 'laplace' for a proper likelihood)")
  _choice(config, "data.corruption", CORRUPTIONS)
  if config.data.corruption == "gaussian":
    _float(config, "data.corruption_level", 0.0)
  else:
    _float(config, "data.corruption_level", 0.0, 1.0)
  if config.data.corruption != "none" and config.data.corruption_level == 0:
    _fail("data.corruption_level", 0.0, f"a number > 0 with data.corruption="
          f"{config.data.corruption!r} (or data.corruption='none')")
  ex = _get(config, "data.exclude_labels")
  if not isinstance(ex, (tuple, list)) or any(
      isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0 for v in ex):
    _fail("data.exclude_labels", ex, "a tuple of non-negative integer labels, e.g. () or (3,)")
  for f in ("data.manual_dir", "data.tfds_dir", "data.cache_dir"):
    _opt_str(config, f)

  _int(config, "eval_every_epochs", 1)
  _int(config, "eval_batch_size", 1)
  _int(config, "checkpoint_every_epochs", 1)
  _int(config, "keep_checkpoints", 1)
  _int(config, "eval_nll_k", 0)
  _int(config, "num_plot_images", 1)

  _choice(config, "wandb.mode", WANDB_MODES)
  _opt_str(config, "wandb.project")
  for f in ("wandb.entity", "wandb.group", "wandb.name"):
    _opt_str(config, f)
