"""The default config: every field the library reads, with its default and what it means.

    from vae_jax import config as config_lib
    c = config_lib.get_config()            # what configs/default.py returns
    loaded = config_lib.load_file("configs/dsprites_chen.py:cpu")   # module, arg, config

Every experiment config (`configs/*.py`) starts from `get_config()` through
`configs/default.py` and overrides a few fields. The fields of each training objective live in
one sub-dict named for it (`config.beta_tcvae.beta`), declared with their defaults by the
objective's own module (`objectives.CONFIG_SECTIONS`); the shared ELBO knobs (`beta`,
`kl_warmup_steps`, `free_bits`, `num_importance_samples`) stay at the top level.

A field added here must default to what the library computed before the field existed: a run
saved without it is read back (and resumed) with this default (`workdir.default_fields`), which
is why the defaults live in the package and not beside it. A field renamed or moved must be
added to `workdir.RENAMED_FIELDS`, so that runs saved under its old name still read and resume.

`load_file` is the one loader of config files ("file.py" or "file.py:ARG", whose ARG goes to
`get_config(ARG)` and `get_sweep(ARG)`): launch.py's --config flag, `vae_jax.train` and the
sweeps all load through it, and each way a file fails to load is one line naming the file.
A config file whose ARG names one of a fixed set of variants refuses any other with
`check_variant`, in one line naming the file, the variant and those it has.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import traceback
import types
from typing import NamedTuple

from ml_collections import config_dict

from vae_jax import objectives
from vae_jax.errors import UserError


def get_config() -> config_dict.ConfigDict:
  """The default config (unlocked): every field, at its default."""
  c = config_dict.ConfigDict()

  c.seed = 0  # Root PRNG seed: split once into init / shuffle / train / eval keys.
  c.num_epochs = 30  # Passes over the training split (0 = evaluate the initial model only).
  c.batch_size = 128  # Global batch, split evenly over every device of the mesh.
  c.learning_rate = 1e-3  # Peak learning rate (the schedule multiplies it).
  # "constant", "cosine" (to 0 at the end), "warmup_cosine", or "iwae_paper" (Burda et al.:
  # 3^i epochs at 10^(-i/7) times learning_rate, i = 0..7, 3,280 epochs in all).
  c.lr_schedule = "constant"
  c.lr_warmup_epochs = 0  # Linear warm-up length for "warmup_cosine".
  c.beta = 1.0  # Weight of the KL term: loss = rec + beta * KL (beta-VAE when != 1).
  c.kl_warmup_steps = 0  # Anneal the KL weight linearly from 0 to beta over this many steps.
  c.free_bits = 0.0  # Nats per latent dimension below which KL is not penalised (0 = off).
  c.num_seeds = 1  # Sweeps: repeat every member with seeds seed, seed+1, ... (mean +- std).
  # VAE training objective over k = num_importance_samples samples of z per image: "elbo"
  # (mean over the k samples of the ELBO) or "iwae" (log of the mean importance weight, a
  # tighter bound; beta weights log p(z) - log q(z|x) inside each weight). Both are the ELBO
  # at k = 1. free_bits needs "elbo" (or a DIP-VAE). Disentangling objectives of a one-layer VAE
  # at k = 1 (vae_jax/objectives/): "annealed_vae" (Burgess et al., 2018), "beta_tcvae" (Chen et
  # al., 2018), "dip_vae_i" / "dip_vae_ii" (Kumar et al., 2018), "factor_vae" (Kim & Mnih,
  # 2018); each reads only its own fields
  # (per member: a sweep over them trains as one vectorised program, except the estimator).
  c.objective = "elbo"
  c.num_importance_samples = 1  # k: latent samples per image per step (VAE only).
  # Each objective's own fields, one sub-dict per objective with its defaults declared (and
  # documented) by the objective's module (`config_fields()`; `objectives.CONFIG_SECTIONS`):
  #   annealed_vae: gamma, capacity_max, capacity_steps          (objectives/annealed_vae.py)
  #   beta_tcvae:   alpha, beta, gamma, estimator                 (objectives/beta_tcvae.py)
  #   dip_vae:      lambda_od, lambda_d (dip_vae_i, dip_vae_ii)   (objectives/dip_vae.py)
  #   factor_vae:   gamma, discriminator_learning_rate, discriminator_sizes
  #                                                               (objectives/factor_vae.py)
  # e.g. --config.beta_tcvae.beta=4, or {"beta_tcvae.beta": 4.0} in a sweep. `beta` above is
  # the ELBO's weight; beta_tcvae.beta the beta-TCVAE's weight of the total correlation.
  for section, fields in objectives.CONFIG_SECTIONS.items():
    c[section] = fields()
  # Compute dtype of the training step's layers: "float32" or "bfloat16" (mixed precision:
  # parameters, optimizer state, likelihood and KL sums stay float32). Evaluation (test/*
  # metrics, test/nll, figures, every post-hoc tool) always runs the same float32 parameters
  # in float32, so test numbers of bfloat16 and float32 runs compare like with like.
  c.dtype = "float32"
  # Matmul precision of the training step: "default" (the backend's: float32 on CPU, TF32 on
  # Ampere and Hopper GPUs), "float32" (full precision everywhere, slower on GPUs) or
  # "tensorfloat32" / "bfloat16". Evaluation always runs at float32.
  c.train_matmul_precision = "default"

  c.optimizer = config_dict.ConfigDict()
  c.optimizer.name = "adam"  # "adam", "adamw" or "sgd" (optax).
  c.optimizer.b1 = 0.9  # Adam first-moment decay (SGD momentum when name == "sgd").
  c.optimizer.b2 = 0.999  # Adam second-moment decay.
  c.optimizer.eps = 1e-8  # Adam epsilon.
  c.optimizer.weight_decay = 0.0  # Decoupled weight decay (adamw only).
  c.optimizer.grad_clip_norm = 0.0  # Clip gradients to this global norm (0 = no clipping).

  c.model = config_dict.ConfigDict()
  # The model family (`models.FAMILIES`): "vae" (Gaussian q(z|x), p(z) = N(0, I)), "ae"
  # (deterministic bottleneck), "two_layer_vae" (z1 and z2, Burda et al., 2016) or
  # "vampprior_vae" (p(z) a mixture of q(z|u_k) at learned pseudo-inputs, Tomczak & Welling).
  c.model.name = "vae"
  c.model.architecture = "mlp"  # "mlp" or "conv" (stride-2 convolutions, transposed back up).
  c.model.latent_dim = 20  # Size of z (of z1, the layer the decoder reads, with two layers).
  c.model.hidden_sizes = (400,)  # MLP hidden widths, encoder order; the decoder mirrors them.
  # The decoder's own hidden widths, from z up, when they do not mirror hidden_sizes (Chen et
  # al.'s dSprites MLP: encoder 1200-1200, decoder 1200-1200-1200); unset = the mirror.
  c.model.decoder_hidden_sizes = config_dict.placeholder(tuple)
  c.model.conv_channels = (32, 64)  # "conv": channels of each stride-2 layer (depth = length).
  c.model.kernel_size = 4  # "conv": square kernel size of every (transposed) convolution.
  # "conv": how the convolutions are computed, never what: "xla" (lax.conv_*, cuDNN on GPUs),
  # "matmul" (space-to-depth and one matrix product per layer; even kernel sizes), or "auto":
  # "matmul" on the CPU for an even kernel, where XLA's own are several times slower, else
  # "xla". Results agree to float rounding, so it may change when a run resumes.
  c.model.conv_lowering = "auto"
  c.model.activation = "relu"  # "relu", "tanh", "elu", "gelu", "softplus" or "leaky_relu".
  # The decoder's activation when it differs from the encoder's (Chen et al.'s dSprites MLP:
  # ReLU encoder, tanh decoder); unset = model.activation.
  c.model.decoder_activation = config_dict.placeholder(str)
  c.model.likelihood = "bernoulli"  # Decoder p(x|z): "bernoulli", "gaussian" or "laplace".
  c.model.scale = 0.1  # Gaussian sigma / Laplace b (initial value when learned).
  c.model.learn_scale = False  # Learn one global log-scale for gaussian / laplace decoders.
  # "two_layer_vae" (MLP only): q(z1|x) q(z2|z1), p(z2) = N(0, I), p(z1|z2) Gaussian, p(x|z1)
  # the decoder; the top_* fields shape the part between z1 and z2 (ignored by other families).
  # stochastic_layers = 2 with name = "vae" is the older spelling of "two_layer_vae".
  c.model.stochastic_layers = 1
  c.model.top_latent_dim = 10  # Size of z2.
  c.model.top_hidden_sizes = (100, 100)  # Widths z1 -> z2 in q; mirrored z2 -> z1 in p.
  # "vampprior_vae": K, the number of pseudo-inputs u_k = sigmoid(w_k) whose posteriors make
  # the prior (500 in the paper), and the mean and std of w's normal initialisation (the
  # paper's code: -0.05, 0.01). Ignored by other families.
  c.model.vampprior_components = 500
  c.model.vampprior_init_mean = -0.05
  c.model.vampprior_init_std = 0.01

  c.data = config_dict.ConfigDict()
  # Where the images come from: a TFDS name ("mnist", "celeb_a", any dataset with an `image`
  # feature), "dsprites" (built in), "folder:PATH" (PNG / JPEG files; one sub-folder per class
  # when labelled; train/ and test/ sub-folders for fixed splits) or "npz:PATH" (a .npz or
  # .npy of uint8 or [0, 1] float images, (N, H, W) or (N, H, W, C); optional labels).
  c.data.name = "mnist"
  # "dynamic" (fresh Bernoulli draw), "static" (>0.5) or "none" (grey levels / colours in [0, 1],
  # for the "gaussian" and "laplace" decoders: natural images such as faces).
  c.data.binarization = "dynamic"
  # Preprocessing, applied once when a split is prepared (cached with it): crop, resize, colour.
  # crop: () none; (size,) a centred square; (height, width) a centred box; (top, left,
  # height, width) a box. resize: () keep; (size,) or (height, width), Pillow's antialiased
  # bilinear. color: "keep", "grey" (ITU-R 601 luma) or "rgb" (grey repeated).
  c.data.crop = ()
  c.data.resize = ()
  c.data.color = "keep"
  # TFDS: the class features that label the images, e.g. ("label_shape",) or, nested, celeb_a's
  # ("attributes/Smiling",) (a bool is two classes); () = none (unlabelled); unset = `label`,
  # else every label_* feature, else none.
  c.data.label_features = config_dict.placeholder(tuple)
  # folder:/npz: labels kept apart from the images: for a folder a CSV (header row; each image's
  # path inside the folder, then one integer column per factor); for a .npy of images a .npy
  # of integers, (N,) or (N, F). Unset = the class sub-folders / the .npz's own labels.
  c.data.label_file = config_dict.placeholder(str)
  # folder:/npz: without their own test split: this share of the images (a fixed random subset)
  # is held out as the test split.
  c.data.test_fraction = 0.1
  # Denoising: corrupt the encoder's input only (the loss still targets the clean image):
  # "none", "gaussian" (+ N(0, level^2), clipped), "salt_and_pepper" or "mask" (pixels hit
  # with probability level).
  c.data.corruption = "none"
  c.data.corruption_level = 0.0  # Gaussian sigma, or the fraction of pixels corrupted.
  c.data.exclude_labels = ()  # Labels removed from the train split only (anomaly detection).
  # Raw files for offline preparation; unset means $VAE_JAX_MANUAL_DIR/<name> when that is set.
  c.data.manual_dir = config_dict.placeholder(str)
  c.data.tfds_dir = config_dict.placeholder(str)  # TFDS data_dir; unset = TFDS's default.
  # Where prepared splits are cached as .npz so later launches skip TensorFlow;
  # unset = $VAE_JAX_CACHE_DIR, else ~/.cache/vae_jax.
  c.data.cache_dir = config_dict.placeholder(str)

  c.eval_every_epochs = 1  # Evaluate on the whole test split every this many epochs.
  c.eval_batch_size = 1000  # Test images per device per evaluation batch.
  c.checkpoint_every_epochs = 5  # Save an Orbax checkpoint this often (and always at the end).
  c.keep_checkpoints = 2  # How many recent checkpoints to keep.
  # IWAE samples per test image for test/nll (a tighter bound than the ELBO) at the end of
  # training; 0 = skip. k = 5000 costs minutes on a CPU; `python -m vae_jax.tools.nll` runs it later.
  c.eval_nll_k = 0
  c.num_plot_images = 16  # Test images in the reconstruction figure; also samples = this squared / 2.
  # Each finished run's PNGs (reconstructions, samples, latents, traversals); False skips
  # them (a large grid, or the test suite). The sweep's own figures are written either way.
  c.write_figures = True
  # Test images whose sample z is scored against the test split's aggregate posterior for
  # test/index_code_mi, test/total_correlation and test/dimwise_kl (Chen et al., 2018) at every
  # evaluation (one-layer VAEs): a fixed random subset of the split, never its first images (a
  # factor dataset's test split is ordered by its factors); 0 = off.
  c.kl_decomposition_points = 1000
  # disentanglement_lib's nine metrics (beta-VAE, FactorVAE, MIG, DCI x3, SAP, modularity,
  # explicitness) of the final posterior means, as disentanglement/* in results.json; needs a
  # dataset with ground-truth factors (dSprites; MNIST as one factor). Also
  # `python -m vae_jax.tools.disentanglement --workdir DIR` on a finished run.
  c.eval_disentanglement = False
  c.disentanglement_sample_scale = 1.0  # Multiplies their sample counts (1 = disentanglement_lib's).

  c.wandb = config_dict.ConfigDict()
  c.wandb.mode = "offline"  # "offline" (written under DIR/wandb), "online" or "disabled".
  c.wandb.project = "vae-jax"  # W&B project.
  c.wandb.entity = config_dict.placeholder(str)  # W&B entity (team or user); unset = default.
  c.wandb.group = config_dict.placeholder(str)  # Group name (sweeps set it to the sweep name).
  c.wandb.name = config_dict.placeholder(str)  # Run name; unset = the workdir's name.

  return c


# Loading a config file -------------------------------------------------------------------

_EXAMPLE = "a config file such as configs/mnist_vae.py"


class ConfigFile(NamedTuple):
  """A loaded config file: its module (`get_config`, perhaps `get_sweep`), the ARG of
  "file.py:ARG" (None without one) and `get_config(ARG)`."""
  module: types.ModuleType
  arg: str | None
  config: config_dict.ConfigDict


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).replace("\\n", " ").split())


def _where(path: str, e: BaseException) -> str:
  """"PATH, line N": the innermost line of the config file in `e`'s traceback (a SyntaxError
  carries its own), so an error raised inside get_config() names the line that raised it."""
  lines = [f.lineno for f in traceback.extract_tb(e.__traceback__)
           if os.path.abspath(f.filename) == os.path.abspath(path)]
  line = lines[-1] if lines else getattr(e, "lineno", None)
  return f"{path}, line {line}" if line else path


def load_module(config_path: str) -> types.ModuleType:
  """Imports the config file of "file.py[:ARG]" (ARG is ignored here).

  Raises:
    UserError: one line naming the file, for a missing file, a folder, a file that is not
      Python, one that does not import (with the line and the exception) and one that defines
      no get_config().
  """
  path = config_path.split(":", 1)[0]
  if os.path.isdir(path):
    raise UserError(f"config {path}: is a folder; expected {_EXAMPLE}")
  if not os.path.isfile(path):
    raise UserError(f"config {path or repr(path)}: no such file; expected {_EXAMPLE}")
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem + "_config", path)
  if spec is None:
    raise UserError(f"config {path}: not a Python file; expected {_EXAMPLE}")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  (whatever the file raises)
    raise UserError(f"config {_where(path, e)}: the file does not import: "
                    f"{type(e).__name__}: {_one_line(e)}") from None
  if not callable(getattr(module, "get_config", None)):
    raise UserError(f"config {path} defines no get_config(); a config file defines "
                    "get_config() returning an ml_collections.ConfigDict")
  return module


def load_file(config_path: str) -> ConfigFile:
  """The config file of "file.py[:ARG]": its module, ARG, and `get_config(ARG)` (unlocked).

  The one loader of config files: launch.py's --config, `vae_jax.train` and the sweeps call
  it. The file imports the configs it builds on as `from configs import default`, so the
  repository root must be on sys.path (it is for launch.py, beside configs/).

  Raises:
    UserError: one line naming the file (and, for an exception inside it, the line and the
      exception): as `load_module`, and for a get_config() that raises or does not return an
      ml_collections.ConfigDict.
  """
  module = load_module(config_path)
  path, _, arg = config_path.partition(":")
  call = f"get_config({arg!r})" if arg else "get_config()"
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"config {_where(path, e)}: {call} raised {type(e).__name__}: "
                    f"{_one_line(e)}") from None
  if not isinstance(config, config_dict.ConfigDict):
    raise UserError(f"config {path}: {call} returned {type(config).__name__}; expected an "
                    "ml_collections.ConfigDict (start from configs/default.py's get_config())")
  return ConfigFile(module, arg or None, config)


def check_variant(path: str, variant: str | None, variants) -> None:
  """Refuses a variant ("file.py:VARIANT") that the config file at `path` does not define.

  For config files whose get_config / get_sweep take a variant: none (`variant` None) or one
  of `variants`. `path` is the file as a user names it on the command line
  ("configs/celeba_beta.py").

  Raises:
    UserError: one line, e.g. "configs/celeba_beta.py:3d is not a variant; expected none or 2d".
  """
  if variant is not None and variant not in variants:
    raise UserError(f"{path}:{variant} is not a variant; expected none or "
                    + ", ".join(variants))
