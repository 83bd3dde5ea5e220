"""Helpers shared by the tests: a tiny config, a tiny fake dataset, launching the launcher, and
reading a run's final parameters back."""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
from flax import nnx

from configs import default
from tests import forkserver
from vae_jax import checkpoints, models, objectives, optim
from vae_jax import data as data_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent


# The tiny config's fields (dotted names): what tiny_config sets and TINY_CONFIG_FILE writes.
TINY_FIELDS = {
    "num_epochs": 2, "batch_size": 16, "model.hidden_sizes": (32,), "model.latent_dim": 4,
    "eval_batch_size": 32, "checkpoint_every_epochs": 1, "num_plot_images": 4,
    "write_figures": False,  # tests that check the PNGs turn them on
    "wandb.mode": "disabled", "data.name": "fake",
}


def _set(c, key, value):
  node = c
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value


def tiny_config(**overrides):
  """A config small enough to train in well under a second per epoch on fake data."""
  c = default.get_config()
  for k, v in {**TINY_FIELDS, **overrides}.items():
    _set(c, k, v)
  return c


def tiny_model(family="vae", *, latent_dim=3, likelihood="bernoulli", activation="relu",
               scale=0.1, seed=0, image_shape=(4, 4, 1), hidden_sizes=(8,), **family_fields):
  """A small MLP model of `family` (`models.FAMILIES`), built directly from its constructor
  (no config): what the objective and likelihood tests differentiate through."""
  return models.FAMILIES[family](
      architecture="mlp", image_shape=image_shape, latent_dim=latent_dim,
      hidden_sizes=hidden_sizes, activation=activation, likelihood=likelihood, scale=scale,
      learn_scale=False, rngs=nnx.Rngs(seed), **family_fields)


def fake_dataset(n_train=128, n_test=40, shape=(8, 8, 1), binarization="dynamic", seed=0):
  """Ten binary-ish prototype images plus noise, with their labels: easy to learn."""
  rng = np.random.default_rng(seed)
  protos = np.where(np.random.default_rng(123).random((10, *shape)) < 0.5, 25.0, 230.0)

  def make(n):
    labels = rng.integers(0, 10, n).astype(np.int32)
    imgs = np.clip(protos[labels] + rng.normal(0, 15, (n, *shape)), 0, 255).astype(np.uint8)
    return imgs, labels

  tx, ty = make(n_train)
  vx, vy = make(n_test)
  if binarization != "none":
    vx = np.where(vx > 127, 255, 0).astype(np.uint8)
  if binarization == "static":
    tx = np.where(tx > 127, 255, 0).astype(np.uint8)
  return data_lib.Dataset("fake", binarization, tx, ty, vx, vy, ("label",), (10,))


def final_params(config, workdir, dataset):
  """The parameters saved in the workdir's latest checkpoint, as numpy leaves."""
  _, params, _ = models.init_params(config, dataset.image_shape,
                                    objectives.OBJECTIVES[config.objective].modules)
  tx = optim.transform(config)
  ckpt = checkpoints.Checkpointer(workdir, 2)
  p, _ = ckpt.restore(ckpt.latest_epoch(), params, tx.init(params))
  ckpt.close()
  return [np.asarray(x) for x in jax.tree.leaves(p)]


def xla_env(devices: int) -> dict:
  """This process's environment with `devices` fake CPU devices added to its XLA flags."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
  return {**os.environ, "XLA_FLAGS": flags.strip()}


def launch(args, env=None, timeout=600, fresh=False):
  """Runs launch.py in a process forked from the test process's fork server, or with `fresh`
  in a new interpreter (`python launch.py ...` exactly); returns the CompletedProcess."""
  full_env = {**os.environ, **(env or {})}
  run = subprocess.run if fresh else forkserver.run
  return run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=full_env,
             capture_output=True, text=True, timeout=timeout)


def write_fake_cache(cache_dir, name="fake", **kwargs):
  """Stores a fake dataset where `data.load` looks for prepared splits, so the launcher and
  the sweep runner use it exactly as they use a real one (no TensorFlow involved)."""
  ds = fake_dataset(binarization="none", **kwargs)
  folder = pathlib.Path(cache_dir) / name
  folder.mkdir(parents=True, exist_ok=True)
  np.savez(folder / "train.npz", images=ds.train_images, labels=ds.train_labels)
  np.savez(folder / "test.npz", images=ds.test_images, labels=ds.test_labels)
  return str(cache_dir)


def _literal(v) -> str:
  """Python source for a config value, strings in double quotes (tests edit the file's text)."""
  return json.dumps(v) if isinstance(v, str) else repr(v)


# The tiny sweep as a config file, for tests that launch launch.py: TINY_FIELDS again, with
# its checkpoint interval left at the default and the fake data's cache folder filled in.
TINY_CONFIG_FILE = ('"""A tiny sweep over fake data, for tests."""\n'
                    "from configs import default\n\n"
                    "def get_config():\n"
                    "  c = default.get_config()\n"
                    + "".join(f"  c.{k} = {_literal(v)}\n" for k, v in TINY_FIELDS.items()
                              if k != "checkpoint_every_epochs")
                    + "  c.data.cache_dir = {cache_dir!r}\n"
                    "  return c\n\n"
                    "def get_sweep():\n"
                    '  return [{{"beta": b}} for b in (0.5, 1.0, 2.0)]\n')


def write_checkpointed_run(root):
  """In `root`: the fake data's cache, cfg.py (the tiny config file at 4 epochs, checkpointing
  every epoch, three kept) and its uninterrupted run in root/ref, launched with launch.py.
  The reference of the fault tests, whose damaged or interrupted runs resume to its bits.
  Returns (root, the config file's path, its config)."""
  root = pathlib.Path(root)
  path = root / "cfg.py"
  path.write_text(TINY_CONFIG_FILE.format(cache_dir=write_fake_cache(root / "cache")).replace(
      "c.num_epochs = 2",
      "c.num_epochs = 4\n  c.checkpoint_every_epochs = 1\n  c.keep_checkpoints = 3"))
  proc = launch(["--config", str(path), "--nosweep", "--workdir", str(root / "ref")])
  assert proc.returncode == 0, proc.stderr[-2000:]
  from vae_jax import sweeps  # pylint: disable=g-import-not-at-top
  return root, path, sweeps.load_module(str(path)).get_config()


def assert_same_final_params(config, workdir, other, dataset=None):
  """The two workdirs' latest checkpoints hold bit-identical parameters (`dataset` gives the
  image shape; the fake dataset's by default)."""
  dataset = dataset or fake_dataset()
  for a, b in zip(final_params(config, workdir, dataset), final_params(config, other, dataset)):
    np.testing.assert_array_equal(a, b)


def factor_grid(sizes, repeat=1):
  """Every combination of factor values, (N, F) int32 in product order (the last factor
  fastest, as dSprites' released file), each row `repeat` times in a row."""
  f = np.array(list(itertools.product(*[range(s) for s in sizes])), np.int32)
  return np.repeat(f, repeat, axis=0)


def grid_dataset(sizes=(3, 4)):
  """A two-factor dataset of 8x8 images, one per combination (train and test alike): factor 0
  is a 2x2 bar's row, factor 1 its column."""
  f = factor_grid(sizes)
  images = np.zeros((len(f), 8, 8, 1), np.uint8)
  for i, (a, b) in enumerate(f):
    images[i, 2 * a:2 * a + 2, 2 * b:2 * b + 2] = 255
  return data_lib.Dataset("grid", "static", images, f, images, f, ("row", "col"), sizes)


def write_fake_dsprites(folder, sizes=(3, 2, 2, 4, 4)):
  """A small stand-in for the released dSprites file in `folder` (a manual dir): every
  combination of the first `sizes` values of each factor, rendered procedurally, in the
  released order. Returns (images uint8 (N, 64, 64, 1), factors (N, 5))."""
  from vae_jax.data import dsprites  # pylint: disable=g-import-not-at-top
  factors = factor_grid(sizes)
  images = dsprites.render(factors)
  classes = np.concatenate([np.zeros((len(factors), 1), np.int64), factors], axis=1)
  values = np.concatenate([np.ones((len(factors), 1))] + [
      v[factors[:, d]][:, None] for d, v in enumerate(dsprites.factor_values())], axis=1)
  pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
  np.savez(pathlib.Path(folder) / dsprites.RELEASED_FILENAME, imgs=images[..., 0] // 255,
           latents_classes=classes, latents_values=values)
  return images, factors


def write_image_folder(root, n, shape=(12, 10, 3), classes=(), suffix=".png", seed=0):
  """`n` random images of `shape` (H, W, C) as files in `root` (in class sub-folders, round
  robin, when `classes` are given). Returns {path inside root: uint8 (H, W, C) as written}."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  root = pathlib.Path(root)
  written = {}
  for i in range(n):
    sub = classes[i % len(classes)] if classes else ""
    (root / sub).mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    rel = f"{sub}/{i:04d}{suffix}" if sub else f"{i:04d}{suffix}"
    Image.fromarray(x[..., 0] if shape[-1] == 1 else x).save(root / rel)
    written[rel] = x
  return written


def write_celeba_like(root, n=96, seed=0):
  """`n` JPEGs laid out as CelebA's aligned images (root/000001.jpg, ...: 178 wide, 218 high,
  RGB): a face-like ellipse with eyes and a mouth on a plain background, varying in position,
  size, skin and background colour, so that a model has something to learn."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    img = Image.new("RGB", (178, 218), tuple(int(v) for v in rng.integers(30, 220, 3)))
    d = ImageDraw.Draw(img)
    cx, cy = 89 + rng.integers(-12, 13), 115 + rng.integers(-12, 13)
    rx, ry = rng.integers(38, 55), rng.integers(50, 70)
    skin = tuple(int(v) for v in np.array([225, 180, 150]) * rng.uniform(0.55, 1.1))
    d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=tuple(min(v, 255) for v in skin))
    for ex in (cx - rx // 2, cx + rx // 2):
      d.ellipse((ex - 6, cy - 18, ex + 6, cy - 8), fill=(40, 30, 30))
    w = int(rng.integers(10, 25))
    d.rectangle((cx - w, cy + 28, cx + w, cy + 28 + int(rng.integers(3, 10))), fill=(150, 50, 60))
    img.save(root / f"{i + 1:06d}.jpg", quality=90)
  return str(root)
