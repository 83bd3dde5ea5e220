"""The Python API: a trained run in a notebook, and training from Python.

    import vae_jax
    results = vae_jax.train("configs/mnist_vae.py", "runs/vae", overrides={"num_epochs": 5})
    run = vae_jax.load("runs/vae")
    z = run.encode(run.dataset.test_images[:100])          # (100, Z) posterior means
    mean, logvar = run.encode(images, posterior=True)      # a VAE's q(z|x)
    x = run.decode(z)                                      # (100, H, W, C) in [0, 1]
    log_px = run.log_likelihood(images, k=1000)            # IWAE estimate, nats per image

`train` is the launcher's single run (or sweep) from Python: the same validation and the same
code path (`launcher.run`, `trainer.train_and_evaluate`), so it writes the same workdir and the
same results.json. `load` reads a finished workdir back (`workdir.load_run`) into a `Run`,
whose methods are thin wrappers of the library's own functions (`latents`,
`marginal_likelihood`, `figures.traversals.traversal_codes`, `analysis.factors`) with the
checks a notebook needs: images are uint8 (N, H, W, C) or (N, H, W), or floats in [0, 1], of
the model's image shape; a mistake is one `UserError` line. Every sampling method takes a `key`
or a `seed`; the default seed is the run's, so the defaults reproduce what the run recorded
(samples.png, test/nll).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import sys
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_jax import latents, rng
from vae_jax.errors import UserError

_BATCH = 2000  # images or codes per device call (as `latents`)


# Reading a run back -----------------------------------------------------------------------


def load(workdir: str | os.PathLike, *, epoch: int | None = None, require_finished: bool = True,
         dataset=None) -> "Run":
  """The run in `workdir` with its config, trained model, dataset and results.

  Args:
    workdir: a run's output folder (a sweep member's is DIR/<member>).
    epoch: which checkpoint; default the newest (the final model of a finished run).
    require_finished: refuse a run whose results.json does not record every epoch.
    dataset: the run's `data.Dataset` when already loaded (e.g. shared by a sweep's members);
      else it is loaded from the run's config (it also gives the model its image shape).

  Raises:
    UserError: no run there, an unfinished run, no such checkpoint.
  """
  from vae_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config, model, ds = workdir_lib.load_run(workdir, epoch=epoch,
                                           require_finished=require_finished, dataset=dataset)
  return Run(workdir=pathlib.Path(workdir), config=config, model=model, dataset=ds,
             results=workdir_lib.read_results(workdir))


@nnx.jit
def _decoder_output(model, z):
  return model.decode(z)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Run:
  """A trained run: `config` (the saved ConfigDict), `model` (the float32 model, of a family in
  `models.FAMILIES`),
  `dataset` (its `data.Dataset`: uint8 splits and factor labels), `results` (results.json as a
  dict, None when missing) and `workdir`. Arrays come back as numpy."""

  workdir: pathlib.Path
  config: Any
  model: Any
  dataset: Any
  results: dict | None

  def __repr__(self) -> str:
    neg_elbo = (self.results or {}).get("test/neg_elbo")
    score = f", test/neg_elbo={neg_elbo:.2f}" if isinstance(neg_elbo, (int, float)) else ""
    return (f"Run({str(self.workdir)!r}: {self.model.title}, latent_dim={self.latent_dim}, "
            f"{self.dataset.name} {'x'.join(map(str, self.image_shape))}{score})")

  # What the model is -----------------------------------------------------------------------

  @property
  def kind(self) -> str:
    """The model's family, a name of `models.FAMILIES`: "ae", "vae", "two_layer_vae" or
    "vampprior_vae"."""
    return self.model.name

  @property
  def latent_dim(self) -> int:
    return int(self.model.latent_dim)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of the images the model takes and makes."""
    return tuple(int(s) for s in self.dataset.image_shape)

  # Encoding and decoding -------------------------------------------------------------------

  def encode(self, images, *, posterior: bool = False):
    """Codes of images: (N, Z) posterior means (an AE's z = f(x)), as `latents.encode_means`.

    With `posterior=True` (a stochastic family only), q(z|x) itself: (mean (N, Z), logvar
    (N, Z)), float32. For a two-layer VAE both describe q(z1|x).
    """
    x = self._images(images)
    if not posterior:
      return latents.encode_means(self.model, x, _BATCH)
    if not self.model.stochastic:
      raise UserError(f"{self.workdir} holds an AE: it has no posterior q(z|x), only codes "
                      "z = f(x); call encode(images) without posterior=True")
    return latents.encode_posteriors(self.model, x, _BATCH)

  def decode(self, z, *, mean: bool = True) -> np.ndarray:
    """Images of codes z (N, Z): the decoder's mean E[x|z] in [0, 1], (N, H, W, C) float32.

    `mean=False` returns the decoder's raw output instead: Bernoulli logits, or a Gaussian's /
    Laplace's location before the sigmoid (`decoder_likelihoods`).
    """
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise UserError(f"codes of shape {z.shape} given: expected (N, {self.latent_dim}), "
                      f"N codes of this run's latent_dim={self.latent_dim}")
    if mean:
      out = [latents.decode_means(self.model, z[i:i + _BATCH]) for i in range(0, len(z), _BATCH)]
    else:
      with jax.default_matmul_precision("float32"):
        out = [np.asarray(_decoder_output(self.model, jnp.asarray(z[i:i + _BATCH])))
               for i in range(0, len(z), _BATCH)]
    return _concat(out, (0, *self.image_shape))

  def reconstruct(self, images) -> np.ndarray:
    """decode(encode(images)): the deterministic reconstruction (decoded posterior means), in
    [0, 1], (N, H, W, C)."""
    return latents.reconstruct(self.model, self._images(images), _BATCH)

  # Sampling --------------------------------------------------------------------------------

  def sample(self, n: int, *, key=None, seed: int | None = None) -> np.ndarray:
    """n generated images (decoder means in [0, 1]), (n, H, W, C), as samples.png draws them.

    A stochastic family decodes z ~ p(z) (N(0, I); ancestrally for two layers; a pseudo-input's
    posterior for the VampPrior). An AE has no prior: it decodes z ~ N(m, C), the Gaussian
    fitted to the codes of the first 10,000 training images (`latents.prior_samples`).
    Randomness: `key`, else `rng.samples_key(seed)` with `seed`
    defaulting to the run's, so `sample(64)` draws samples.png's 64 codes.
    """
    n = _positive_int(n, "n")
    key = self._key(key, seed, rng.samples_key)
    train = None if self.model.stochastic else self.dataset.images("train", slice(0, 10000))
    return latents.prior_samples(self.model, key, n, train)

  def traverse(self, image, unit: int, *, limit: float = 3.0, steps: int = 11) -> np.ndarray:
    """One unit swept around one image: (steps, H, W, C) decoder means in [0, 1].

    The image's code (posterior mean) with unit `unit` set to each of
    linspace(-limit, limit, steps) prior standard deviations about the prior's mean (0 and 1 for
    N(0, I); `latents.prior_moments` for another prior; the values themselves for an AE, which
    has no prior) and the other units kept, as each row of traversals.png
    (`figures.traversals.traversal_codes`).
    """
    from vae_jax.figures import traversals  # pylint: disable=g-import-not-at-top
    x = self._images(image, one=True)
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or not (
        0 <= unit < self.latent_dim):
      raise UserError(f"unit={unit!r} is invalid: expected an integer in 0 .. "
                      f"{self.latent_dim - 1} (latent_dim={self.latent_dim})")
    steps = _positive_int(steps, "steps")
    if not np.isfinite(limit) or limit <= 0:
      raise UserError(f"limit={limit!r} is invalid: expected a number > 0")
    z0 = latents.encode_means(self.model, x)[0]
    center, scale = latents.prior_moments(self.model) if self.model.stochastic else (None, None)
    return self.decode(traversals.traversal_codes(z0, [int(unit)], float(limit), steps, center,
                                                  scale))

  # Likelihood ------------------------------------------------------------------------------

  def log_likelihood(self, images, *, k: int = 5000, key=None, seed: int | None = None,
                     sample_chunk: int | None = None,
                     image_chunk: int | None = None) -> np.ndarray:
    """The k-sample importance-weighted (IWAE) estimate of log p(x) of each image, in nats:
    (N,) float64. A lower bound that rises with k to log p(x); k = 1 is a one-sample ELBO.

    Computed as test/nll is (`marginal_likelihood.iwae_log_px`): sample i of image n draws its
    noise from (key, n, i), whatever the chunk sizes. Randomness: `key`, else
    `rng.nll_key(seed)` with `seed` defaulting to the run's, so on the run's test split with
    its `eval_nll_k` the mean is minus results.json's test/nll. The likelihood is the
    decoder's: a Bernoulli decoder scores binary images (the test split of a binarised run is
    binary already). `sample_chunk`, `image_chunk`: memory knobs, see `iwae_log_px`. An AE has
    no likelihood.
    """
    from vae_jax import marginal_likelihood  # pylint: disable=g-import-not-at-top
    if not self.model.stochastic:
      raise UserError(f"{self.workdir} holds an AE: a deterministic autoencoder defines no "
                      "likelihood p(x); use a VAE run")
    k = _positive_int(k, "k")
    for name, v in (("sample_chunk", sample_chunk), ("image_chunk", image_chunk)):
      if v is not None:
        _positive_int(v, name)
    x = latents.unit_floats(self._images(images))
    model_fn, params = marginal_likelihood.autoencoder_latents(self.model)
    return np.asarray(marginal_likelihood.iwae_log_px(
        model_fn, params, x, self._key(key, seed, rng.nll_key), num_samples=k,
        sample_chunk=sample_chunk, image_chunk=image_chunk), np.float64)

  # Disentanglement -------------------------------------------------------------------------

  def disentanglement(self, factors=None, *, images=None, factor_names=None,
                      sample_scale: float = 1.0, seed: int = 0) -> dict[str, float]:
    """disentanglement_lib's metrics of the model's codes (posterior means), and Chen et
    al.'s MIG for a VAE: {"disentanglement/<metric>": value, ...}, as results.json records them
    (`analysis.factors.disentanglement_metrics`).

    Without arguments, on the run's dataset's training split and its ground-truth factors
    (dSprites; for a class-labelled set such as MNIST the one factor is the class). With
    `images` (N, H, W[, C]) and `factors` ((N,) or (N, F) integer indices 0 .. size - 1), on
    those: every combination of factor values must occur at least once (the metrics look
    observations up by factors). `factor_names`: names of the F columns (default factor_0, ...).
    `sample_scale` multiplies the metrics' sample counts (1 = disentanglement_lib's 10,000
    points: minutes; 0.05 for a quick look); `seed` fixes every random draw.
    """
    from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    from vae_jax.analysis import factors as factors_lib  # pylint: disable=g-import-not-at-top
    if not np.isfinite(sample_scale) or sample_scale <= 0:
      raise UserError(f"sample_scale={sample_scale!r} is invalid: expected a number > 0")
    if (factors is None) != (images is None):
      raise UserError("pass both images= and factors= (the ground truth of those images), or "
                      "neither (the run's own dataset)")
    if factors is None:
      ds = self.dataset
      if not ds.labelled:
        raise UserError(f"the run's dataset {ds.name!r} has no ground-truth factors: pass "
                        "images= and their factors= to score the model on those")
      if factor_names is not None:
        raise UserError("factor_names= names the columns of given factors=; the run's dataset "
                        "names its own")
    else:
      ds = self._factor_dataset(data_lib, self._images(images), factors, factor_names)
    return factors_lib.disentanglement_metrics(self.model, ds, seed=int(seed),
                                               sample_scale=float(sample_scale))

  def _factor_dataset(self, data_lib, images, factors, factor_names):
    """Given images and factors as a `data.Dataset` whose training split they are."""
    f = np.asarray(factors)
    if f.ndim not in (1, 2) or len(f) != len(images):
      raise UserError(f"factors of shape {f.shape} given for {len(images)} images: expected "
                      f"({len(images)},) or ({len(images)}, F)")
    if not np.issubdtype(f.dtype, np.integer) or (f.size and f.min() < 0):
      raise UserError("factors must be integer indices 0 .. size - 1, one column per factor")
    f = f.astype(np.int32)
    num = 1 if f.ndim == 1 else f.shape[1]
    names = (tuple(f"factor_{i}" for i in range(num)) if factor_names is None
             else tuple(str(n) for n in factor_names))
    if len(names) != num:
      raise UserError(f"{len(names)} factor_names given for {num} factor columns")
    return data_lib.Dataset("given images", self.dataset.binarization, images, f, images[:0],
                            f[:0], names, ())

  # Checks ----------------------------------------------------------------------------------

  def _images(self, images, *, one: bool = False) -> np.ndarray:
    """uint8 (N, H, W, C) as given, or float32 in [0, 1]; (N, H, W) gains C = 1. With
    `one`, a single image (H, W[, C]) or a batch of one."""
    x = np.asarray(images)
    shape = self.image_shape
    expected = f"(N, {', '.join(map(str, shape))})"
    if one:
      if x.shape in (shape, shape[:2]):
        x = x[None]
      expected = f"one image of shape {shape}"
    if x.ndim == 3 and shape[2] == 1 and x.shape[1:] == shape[:2]:
      x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != shape or (one and len(x) != 1):
      raise UserError(f"images of shape {x.shape} given: expected {expected}, this run's "
                      f"image shape (height, width, channels)")
    if x.dtype == np.uint8:
      return x
    if x.dtype == bool:
      return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
      if x.size and (x.min() < 0 or x.max() > 255):
        raise UserError(f"integer images must hold grey levels 0..255 (got {x.min()}..{x.max()})")
      return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.floating):
      raise UserError(f"images of dtype {x.dtype} given: expected uint8, or floats in [0, 1]")
    x = x.astype(np.float32)
    if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
      raise UserError(f"float images must lie in [0, 1] (got {np.nanmin(x):g}..{np.nanmax(x):g});"
                      " pass uint8 0..255, or divide by 255")
    return x

  def _key(self, key, seed, key_of_seed):
    if key is not None and seed is not None:
      raise UserError("pass key= or seed=, not both")
    if key is not None:
      return key
    return key_of_seed(int(self.config.seed if seed is None else seed))


def _concat(parts, empty_shape) -> np.ndarray:
  return np.concatenate(parts) if parts else np.zeros(empty_shape, np.float32)


def _positive_int(v, name: str) -> int:
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
    raise UserError(f"{name}={v!r} is invalid: expected an integer >= 1")
  return int(v)


# Training from Python ---------------------------------------------------------------------


def train(config, workdir: str | os.PathLike, *, overrides: Mapping[str, Any] | None = None,
          sweep: bool = False, allow_config_change: bool = False):
  """Trains as `python launch.py --config CONFIG --workdir WORKDIR` does; returns the results.

  Args:
    config: a config file's path ("configs/mnist_vae.py", or "file.py:ARG" for get_config(ARG))
      or a `ConfigDict` (e.g. `configs.default.get_config()` with fields changed).
    workdir: the output folder, as --workdir (a finished run there is not trained again; an
      unfinished one resumes).
    overrides: {"dotted.key": value}, as --config.dotted.key=value on the command line.
    sweep: for a config file that defines get_sweep(): True trains the sweep (every member into
      workdir/<member>, sweep.csv and the sweep's figures), as the launcher does by default;
      False (the default) trains the config alone, as --nosweep. As on the command line, an
      override of a swept key pins it: one run.
    allow_config_change: as --allow_config_change.

  Returns:
    results.json of the run as a dict; for a sweep, sweep.csv's rows (a dict per member).

  Raises:
    UserError: a bad config value (validated before anything is read or compiled, as by the
      launcher), a workdir holding another config, and the launcher's other one-line errors.

  As the launcher, it turns on JAX's persistent compilation cache (`compilation_cache`) unless
  one is configured, and Ctrl-C (a notebook's interrupt) stops after the current epoch with a
  checkpoint, from which the same call resumes.
  """
  # pylint: disable=g-import-not-at-top  (Flax, Orbax, W&B: loaded when training)
  from absl import logging
  from vae_jax import compilation_cache, launcher, sweeps, sweep_table, validate
  from vae_jax import workdir as workdir_lib
  logging.set_verbosity(logging.WARNING)  # as the launcher: Orbax logs every save at INFO
  compilation_cache.configure()
  overrides = dict(overrides or {})
  workdir = os.fspath(workdir)
  if isinstance(config, (str, os.PathLike)):
    path = os.fspath(config)
    with _repo_on_path():  # config files import `configs.default`, as under launch.py
      module, arg, base = _config_file(path)
      cfg = _with_overrides(base, overrides)
      launcher.run(config=cfg, config_path=path, workdir=workdir, overrides=overrides,
                   use_sweep=sweep, allow_config_change=allow_config_change)
    swept = sweeps.sweep_of(module, arg) if sweep else None
    if swept is not None and not sweeps.pinned_overrides(cfg, swept, overrides):
      return sweep_table.read_csv(pathlib.Path(workdir) / "sweep.csv")
  else:
    if sweep:
      raise UserError("sweep=True needs a config file (its get_sweep() defines the sweep); "
                      "a ConfigDict trains one run")
    from vae_jax import trainer as train_lib  # pylint: disable=g-import-not-at-top
    cfg = _with_overrides(config, overrides)
    # What launcher.run does for a config without a sweep.
    validate.validate(cfg, num_devices=jax.device_count())
    train_lib.train_and_evaluate(cfg, workdir, allow_config_change=allow_config_change)
  return workdir_lib.read_results(workdir)


_ROOT = pathlib.Path(__file__).resolve().parent.parent  # launch.py and configs/ live here


@contextlib.contextmanager
def _repo_on_path():
  """The repository root on sys.path for a while, as it is for launch.py (its folder)."""
  added = str(_ROOT) not in sys.path
  if added:
    sys.path.insert(0, str(_ROOT))
  try:
    yield
  finally:
    if added and str(_ROOT) in sys.path:
      sys.path.remove(str(_ROOT))


def _config_file(path: str):
  """(module, ARG or None, get_config(ARG)) of "file.py[:ARG]", failing in one line: the one
  loader of config files, `config.load_file`."""
  from vae_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_file(path)


def _with_overrides(config, overrides: dict):
  """A locked copy of `config` with the dotted-key overrides set (the sweeps' function)."""
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  from vae_jax import sweeps  # pylint: disable=g-import-not-at-top
  if not isinstance(config, config_dict.ConfigDict):
    raise UserError(f"config of type {type(config).__name__} given: expected a config file's "
                    "path or an ml_collections ConfigDict")
  try:
    return sweeps.apply_overrides(config, overrides)
  except UserError as e:
    raise UserError(str(e).replace("sweep override", "override", 1)) from None
