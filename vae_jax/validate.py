"""Config validation: every field checked once, up front, before any data or compilation.

Each failure raises `UserError` with one line naming the field, the value and what is allowed.
Names are checked against the table of the module that owns them (`models.ENCODERS`,
`decoder_likelihoods.LIKELIHOODS`, `objectives.OBJECTIVES`, `optim.OPTIMIZERS`, ...); an
objective checks its own fields and combinations (`Objective.validate`).
"""

from __future__ import annotations

import numbers

from ml_collections import config_dict

from vae_jax import checks, convolutions, decoder_likelihoods, models, objectives, optim
from vae_jax import data as data_lib
from vae_jax.data import BINARIZATIONS, arrays, local, preprocess
from vae_jax.data.corruption import CORRUPTIONS
from vae_jax import workdir as workdir_lib

WANDB_MODES = ("offline", "online", "disabled")
MATMUL_PRECISIONS = ("default", "float32", "tensorfloat32", "bfloat16")  # jax.default_matmul_precision
_int, _float, _choice = checks.integer, checks.number, checks.choice


def _check_model(config) -> None:
  _choice(config, "model.name", models.FAMILIES)
  _choice(config, "model.architecture", models.ENCODERS)
  _int(config, "model.latent_dim", 1)
  checks.positive_ints(config, "model.hidden_sizes", "(400,) or (512, 256)")
  if config.model.decoder_hidden_sizes is not None:
    checks.positive_ints(config, "model.decoder_hidden_sizes", "(1200, 1200, 1200)")
  checks.positive_ints(config, "model.conv_channels", "(32, 64)", allow_empty=False)
  _int(config, "model.kernel_size", 1)
  _choice(config, "model.conv_lowering", convolutions.LOWERINGS)
  if config.model.conv_lowering == "matmul" and config.model.kernel_size % 2:
    checks.fail("model.conv_lowering", "matmul", f"'xla' or 'auto' with the odd "
                f"model.kernel_size={config.model.kernel_size} (\"matmul\" needs an even kernel)")
  _choice(config, "model.activation", models.ACTIVATIONS)
  if config.model.decoder_activation is not None:
    _choice(config, "model.decoder_activation", models.ACTIVATIONS)
  _choice(config, "model.likelihood", decoder_likelihoods.LIKELIHOODS)
  _float(config, "model.scale", 0.0, lo_open=True)
  checks.boolean(config, "model.learn_scale")
  models.check_fields(config)  # every family's own fields, whatever the family
  family = models.family_of(config.model)
  if config.num_importance_samples > 1 and not family.stochastic:
    checks.fail("num_importance_samples", config.num_importance_samples,
                f"1 with model.name={config.model.name!r} (its code is deterministic: there is "
                "nothing to sample)")
  family.validate(config)


def _check_data(config) -> None:
  checks.optional_string(config, "data.name")
  name = config.data.name
  if not isinstance(name, str):
    checks.fail("data.name", name, "a TFDS dataset name such as 'mnist' or 'celeb_a', "
                "'folder:PATH' or 'npz:PATH'")
  source = data_lib.source_of(name)
  if source in data_lib.SOURCES and not local.path_of(name):
    checks.fail("data.name", name, f"'{source}:PATH' with a path")
  if source == "npz" and not name.endswith(arrays.SUFFIXES):
    checks.fail("data.name", name, "'npz:PATH' with PATH a .npz or .npy file")
  _choice(config, "data.binarization", BINARIZATIONS)
  preprocess.check_config(config)
  prep = preprocess.Preprocessing.from_config(config.data)
  for field, default in (("crop", ()), ("resize", ()), ("color", "keep")):
    if source == "builtin" and getattr(prep, field) != default:
      checks.fail(f"data.{field}", getattr(prep, field), f"{default!r} for the built-in "
                  f"{name!r} (use 'tfds:{name}' to preprocess its images)")
  features = checks.get(config, "data.label_features")
  if features is not None and (not isinstance(features, (tuple, list)) or any(
      not isinstance(f, str) or not f for f in features)):
    checks.fail("data.label_features", features, "unset, or a tuple of TFDS feature names such "
                "as ('label_shape',) or ('attributes/Smiling',), or () for no labels")
  if features is not None and source != "tfds":
    checks.fail("data.label_features", tuple(features), f"unset for {name!r} (it names TFDS "
                "features; a folder is labelled by its sub-folders or data.label_file)")
  checks.optional_string(config, "data.label_file")
  label_file = config.data.label_file
  if label_file is not None:
    wanted = {"folder": ".csv", "npz": ".npy"}.get(source)
    if wanted is None:
      checks.fail("data.label_file", label_file, f"unset for {name!r} (label files label "
                  "folder: and npz: sources)")
    if not label_file.endswith(wanted):
      checks.fail("data.label_file", label_file, f"a {wanted} file for a {source}: source")
  _float(config, "data.test_fraction", 0.0, 1.0, lo_open=True)
  if config.data.test_fraction >= 1.0:
    checks.fail("data.test_fraction", config.data.test_fraction, "a number > 0 and < 1")
  if config.model.likelihood == "bernoulli" and config.data.binarization == "none":
    checks.fail("data.binarization", "none",
                "'dynamic' or 'static' with model.likelihood='bernoulli' (grey levels and "
                "colours in [0, 1] need 'gaussian' or 'laplace' for a proper likelihood)")
  _choice(config, "data.corruption", CORRUPTIONS)
  if config.data.corruption == "gaussian":
    _float(config, "data.corruption_level", 0.0)
  else:
    _float(config, "data.corruption_level", 0.0, 1.0)
  if config.data.corruption != "none" and config.data.corruption_level == 0:
    checks.fail("data.corruption_level", 0.0, f"a number > 0 with data.corruption="
                f"{config.data.corruption!r} (or data.corruption='none')")
  ex = checks.get(config, "data.exclude_labels")
  if not isinstance(ex, (tuple, list)) or any(
      isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0 for v in ex):
    checks.fail("data.exclude_labels", ex, "a tuple of non-negative integer labels, e.g. () "
                "or (3,)")
  for f in ("data.manual_dir", "data.tfds_dir", "data.cache_dir"):
    checks.optional_string(config, f)
  # Known without preparing the data for a folder, an array file or a prepared TFDS split.
  disentangle = checks.get(config, "eval_disentanglement") is True
  if disentangle and data_lib.has_labels(config.data) is False:
    checks.fail("eval_disentanglement", True, f"False for {name!r}: its images have no labels, "
                "and the disentanglement metrics need ground-truth factors")


def validate(config: config_dict.ConfigDict, num_devices: int = 1) -> None:
  """Checks every field the library reads; raises UserError on the first bad one."""
  checks.not_renamed(config, workdir_lib.RENAMED_FIELDS)  # an old name would be read by nothing
  _int(config, "seed", 0)
  _int(config, "num_epochs", 0)
  _int(config, "batch_size", 1)
  if config.batch_size % num_devices:
    checks.fail("batch_size", config.batch_size,
                f"a multiple of the number of devices ({num_devices})")
  _float(config, "learning_rate", 0.0, lo_open=True)
  _choice(config, "lr_schedule", optim.SCHEDULES)
  _int(config, "lr_warmup_epochs", 0)
  if config.lr_warmup_epochs > config.num_epochs and config.lr_schedule == "warmup_cosine":
    checks.fail("lr_warmup_epochs", config.lr_warmup_epochs,
                f"at most num_epochs ({config.num_epochs})")
  _float(config, "beta", 0.0)
  _int(config, "kl_warmup_steps", 0)
  _float(config, "free_bits", 0.0)
  _int(config, "num_seeds", 1)
  _choice(config, "objective", objectives.OBJECTIVES)
  _int(config, "num_importance_samples", 1)
  if checks.get(config, "dtype") == "float16":
    checks.fail("dtype", "float16", "'float32' or 'bfloat16' (float16 underflows small "
                "gradients without loss scaling, which vae_jax does not do; bfloat16 needs none)")
  _choice(config, "dtype", models.DTYPES)
  _choice(config, "train_matmul_precision", MATMUL_PRECISIONS)

  _choice(config, "optimizer.name", optim.OPTIMIZERS)
  _float(config, "optimizer.b1", 0.0, 1.0)
  _float(config, "optimizer.b2", 0.0, 1.0)
  _float(config, "optimizer.eps", 0.0, lo_open=True)
  _float(config, "optimizer.weight_decay", 0.0)
  _float(config, "optimizer.grad_clip_norm", 0.0)

  _check_model(config)
  objectives.OBJECTIVES[config.objective].validate(config)
  _check_data(config)

  _int(config, "eval_every_epochs", 1)
  _int(config, "eval_batch_size", 1)
  _int(config, "checkpoint_every_epochs", 1)
  _int(config, "keep_checkpoints", 1)
  _int(config, "eval_nll_k", 0)
  _int(config, "num_plot_images", 1)
  _int(config, "kl_decomposition_points", 0)
  checks.boolean(config, "eval_disentanglement")
  checks.boolean(config, "write_figures")
  _float(config, "disentanglement_sample_scale", 0.0, lo_open=True)

  _choice(config, "wandb.mode", WANDB_MODES)
  checks.optional_string(config, "wandb.project")
  for f in ("wandb.entity", "wandb.group", "wandb.name"):
    checks.optional_string(config, f)
