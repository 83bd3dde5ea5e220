"""The launcher end to end on real MNIST, and every kind of bad input failing cleanly."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
from ml_collections import config_dict

from tests.helpers import ROOT, launch, tiny_config, xla_env
from tests.wandb_records import history_keys
from vae_jax import validate
from vae_jax.errors import UserError

CONTRACT = ("config.json", "metrics.jsonl", "results.json", "checkpoints", "wandb",
            "reconstructions.png", "samples.png")


@pytest.mark.slow
def test_end_to_end_on_real_mnist(tmp_path, mnist_env):
  wd = tmp_path / "vae"
  # One epoch (468 steps) of the core config on real, dynamically binarised MNIST, launched
  # as a user launches it: a new interpreter, not a fork of the tests' pre-imported one.
  proc = launch(["--config", "configs/mnist_vae.py", "--workdir", str(wd),
                 "--config.num_epochs=1"], env=mnist_env, fresh=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in CONTRACT:
    assert (wd / name).exists(), name
  results = json.loads((wd / "results.json").read_text())
  for k in ("test/loss", "test/neg_elbo", "test/rec", "test/kl", "train/examples_per_s",
            "train/seconds"):
    assert k in results
  # After one epoch the VAE is far better than an untrained one (~543 nats) but not yet converged.
  assert 100 < results["test/neg_elbo"] < 140
  assert results["test/kl"] > 5
  info = json.loads((wd / "config.json").read_text())
  assert info["config"]["model"]["latent_dim"] == 20 and info["devices"] and info["versions"]["jax"]
  rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1]["step"] == 468 and "test/neg_elbo" in rows[-1]
  assert os.listdir(wd / "checkpoints")
  runs = glob.glob(str(wd / "wandb" / "offline-run-*" / "run-*.wandb"))
  assert len(runs) == 1
  keys = history_keys(runs[0])
  for k in ("train/loss", "train/rec", "train/kl", "train/neg_elbo", "test/loss", "test/rec",
            "test/kl", "test/neg_elbo"):
    assert k in keys, k
  assert any(k.startswith("reconstructions") for k in keys)
  assert any(k.startswith("samples") for k in keys)

  # A second launch with the same workdir reports and trains nothing.
  again = launch(["--config", "configs/mnist_vae.py", "--workdir", str(wd),
                  "--config.num_epochs=1"], env=mnist_env, fresh=True)
  assert again.returncode == 0 and "finished" in again.stdout
  assert len((wd / "metrics.jsonl").read_text().splitlines()) == 1

  # Later launches read the cached split with NumPy alone: TensorFlow is never imported.
  code = ("import sys; from configs import default; from vae_jax import data; c = default.get_config();"
          " ds = data.load(c.data); assert len(ds.train_images) == 60000, ds.train_images.shape;"
          " assert ds.train_images.dtype.name == 'uint8';"
          " assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  check = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **mnist_env},
                         capture_output=True, text=True, timeout=120)
  assert check.returncode == 0, check.stderr[-2000:]


def _assert_clean_failure(proc, *needles):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  for n in needles:
    assert n in lines[0], (n, lines[0])


@pytest.mark.slow
@pytest.mark.parametrize("override,needles", [
    ("--config.model.name=vea", ("model.name", "'vae'")),
    ("--config.model.likelihood=poisson", ("model.likelihood", "bernoulli")),
    ("--config.optimizer.name=adagrad", ("optimizer.name", "adam")),
    ("--config.model.latent_dim=0", ("model.latent_dim", ">= 1")),
    ("--config.beta=-1", ("beta", ">= 0")),
    ("--config.num_epochs=-2", ("num_epochs", ">= 0")),
    ("--config.model.nme=vae", ("nme",)),
    ("--config.model.latent_dim=abc", ("latent_dim",)),
])
def test_bad_config_values_fail_cleanly_before_creating_the_workdir(tmp_path, override, needles):
  wd = tmp_path / "run"
  proc = launch(["--config", "configs/mnist_vae.py", "--workdir", str(wd), override])
  _assert_clean_failure(proc, *needles)
  assert not wd.exists()


@pytest.mark.slow
def test_batch_size_must_divide_over_devices(tmp_path):
  wd = tmp_path / "run"
  proc = launch(["--config", "configs/mnist_vae.py", "--workdir", str(wd), "--config.batch_size=126"],
                env=xla_env(4))
  _assert_clean_failure(proc, "batch_size", "multiple of the number of devices (4)")
  assert not wd.exists()


@pytest.mark.slow
def test_missing_config_file_and_unknown_dataset(tmp_path):
  _assert_clean_failure(launch(["--config", "configs/does_not_exist.py"]), "does_not_exist.py")
  wd = tmp_path / "run"
  proc = launch(["--config", "configs/mnist_vae.py", "--workdir", str(wd),
                 "--config.data.name=not_a_dataset", f"--config.data.cache_dir={tmp_path / 'c'}"])
  _assert_clean_failure(proc, "not_a_dataset")
  assert not wd.exists()


@pytest.mark.slow
def test_missing_truncated_and_corrupt_data_files_name_the_file(tmp_path, mnist_env):
  raw = tmp_path / "raw"
  shutil.copytree(os.path.join(mnist_env["VAE_JAX_MANUAL_DIR"], "mnist"), raw)
  wd = tmp_path / "run"
  common = ["--config", "configs/mnist_vae.py", "--workdir", str(wd), f"--config.data.manual_dir={raw}",
            f"--config.data.cache_dir={tmp_path / 'cache'}", f"--config.data.tfds_dir={tmp_path / 'tfds'}"]
  target = raw / "train-labels-idx1-ubyte.gz"
  good = target.read_bytes()

  target.unlink()
  _assert_clean_failure(launch(common), str(target), "missing", "t10k-images-idx3-ubyte.gz")
  target.write_bytes(good[:1000])
  _assert_clean_failure(launch(common), str(target), "1000 bytes", f"expected {len(good)}")
  flipped = bytearray(good)
  flipped[100] ^= 0xFF
  target.write_bytes(bytes(flipped))
  _assert_clean_failure(launch(common), str(target), "SHA-256", "expected 3552534a0a558bbe")
  assert not wd.exists()
  assert not list((tmp_path / "cache").glob("**/*.npz"))


@pytest.mark.parametrize("field,value", [
    ("seed", -1), ("seed", 1.5), ("num_epochs", "3"), ("batch_size", 0), ("learning_rate", 0.0),
    ("learning_rate", float("nan")), ("beta", -0.1), ("kl_warmup_steps", -1), ("free_bits", -1.0),
    ("lr_schedule", "linear"), ("optimizer.b1", 1.5), ("optimizer.eps", 0.0),
    ("model.hidden_sizes", (400, 0)), ("model.hidden_sizes", "400"), ("model.activation", "swish"),
    ("model.architecture", "transformer"), ("model.scale", 0.0), ("model.learn_scale", 1),
    ("data.binarization", "dynamc"), ("eval_every_epochs", 0), ("checkpoint_every_epochs", 0),
    ("wandb.mode", "on"), ("data.name", 3),
])
def test_validate_names_the_field_and_what_is_allowed(field, value):
  # Type-unsafe copy: a config file can hold any type, which is what validation must catch.
  c = config_dict.ConfigDict(tiny_config().to_dict(), type_safe=False)
  with c.unlocked():
    node = c
    *parents, leaf = field.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  with pytest.raises(UserError, match=f"config.{field}"):
    validate.validate(c)


def test_bernoulli_needs_binary_pixels():
  c = tiny_config(**{"data.binarization": "none"})
  with pytest.raises(UserError, match="gaussian"):
    validate.validate(c)
  validate.validate(tiny_config(**{"data.binarization": "none", "model.likelihood": "gaussian"}))
