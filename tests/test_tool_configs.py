"""The tools that read a run (`python -m vae_jax.tools.<name> --workdir DIR`) evaluate the run
that is there: they rebuild it from DIR/config.json (never configs/default.py in its place),
say which run and config they evaluate in one line, write into results.json only the numbers
of the finished run's own last epoch, and refuse with one line (exit 2, nothing in DIR
changed) a run they cannot evaluate, or a disk that fills. Through subprocesses, as a user
runs them, on a tiny run trained with launch.py whose config differs from the defaults."""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import sys

import numpy as np
import pytest

from tests import forkserver
from tests.helpers import ROOT, TINY_CONFIG_FILE, launch, write_fake_cache

# The tools, each with the arguments that keep it quick on the tiny run.
TOOLS = {
    "encode": ["--split", "test"],
    "nll": ["--k", "3"],
    "denoise": ["--corruption", "gaussian", "--level", "0.1"],
    "disentanglement": ["--sample_scale", "0.02"],
}


def _tool(name, workdir, *args, timeout=600):
  return forkserver.run([sys.executable, "-m", f"vae_jax.tools.{name}", "--workdir",
                         str(workdir), *TOOLS[name], *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout)


def _snapshot(folder: pathlib.Path) -> dict:
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file() and p.name != "lock"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A finished 2-epoch run on fake 8x8 images: mlp 64-32-4, beta 2 (the defaults: MNIST,
  mlp 784-400-20, beta 1)."""
  root = tmp_path_factory.mktemp("tools")
  config = root / "tiny.py"
  config.write_text(TINY_CONFIG_FILE.format(cache_dir=write_fake_cache(root / "cache")))
  workdir = root / "run"
  proc = launch(["--config", str(config), "--nosweep", "--workdir", str(workdir),
                 "--config.beta=2", "--config.checkpoint_every_epochs=1"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def _copy(run, tmp_path) -> pathlib.Path:
  dest = tmp_path / "run"
  shutil.copytree(run, dest, ignore=shutil.ignore_patterns("lock"))
  return dest


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TOOLS))
def test_each_tool_names_the_saved_config_it_evaluates(run, tmp_path, name):
  workdir = _copy(run, tmp_path)
  proc = _tool(name, workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = f"{workdir}: vae, mlp 64-32-4, fake, objective elbo beta=2, epoch 2 of 2"
  assert proc.stdout.splitlines().count(line) == 1, proc.stdout
  assert "784" not in proc.stdout and "mnist" not in proc.stdout
  assert "Traceback" not in proc.stderr
  if name == "encode":  # the saved model: four latents
    assert np.load(workdir / "latents_test.npy").shape == (40, 4)


@pytest.mark.slow
def test_nll_of_an_older_checkpoint_is_printed_and_results_json_is_left_alone(run, tmp_path):
  workdir = _copy(run, tmp_path)
  before = (workdir / "results.json").read_bytes()
  proc = _tool("nll", workdir, "--epoch", 1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0] == f"{workdir}: vae, mlp 64-32-4, fake, objective elbo beta=2, epoch 1 of 2"
  assert "printed only; results.json unchanged" in lines[-1]
  assert (workdir / "results.json").read_bytes() == before  # the finished run's numbers stay
  proc = _tool("nll", workdir)  # its last epoch: written
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "test/nll" in json.loads((workdir / "results.json").read_text())


def _without(workdir: pathlib.Path, what: str) -> str:
  """Makes the run one the tools cannot evaluate; returns what their line must say."""
  if what == "config":
    (workdir / "config.json").unlink()
    return "holds no run"
  if what == "unfinished":
    (workdir / "results.json").unlink()
    return "holds an unfinished run"
  shutil.rmtree(workdir / "checkpoints")
  return "has no checkpoints/ folder"


@pytest.mark.slow
@pytest.mark.parametrize("what", ["config", "unfinished", "checkpoints"])
def test_a_run_the_tools_cannot_evaluate_is_refused_in_one_line(run, tmp_path, what):
  workdir = _copy(run, tmp_path)
  needle = _without(workdir, what)
  before = _snapshot(workdir)
  for name in TOOLS:
    proc = _tool(name, workdir)
    assert proc.returncode == 2, (name, proc.stdout, proc.stderr[-3000:])
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (name, lines)
    assert "objective" not in proc.stdout  # no run described: none evaluated
    assert _snapshot(workdir) == before, name


@contextlib.contextmanager
def _full_disk(where: pathlib.Path, size: str):
  """A tmpfs of `size` at `where` (root only; skipped elsewhere)."""
  from tests.test_contained_faults import _small_disk  # pylint: disable=g-import-not-at-top
  with _small_disk(where, f"size={size}") as disk:
    yield disk


@pytest.mark.slow
def test_a_full_disk_while_encoding_names_the_file_and_leaves_no_part_of_it(run, tmp_path):
  with _full_disk(tmp_path / "disk", "2m") as disk:
    workdir = disk / "run"
    shutil.copytree(run, workdir, ignore=shutil.ignore_patterns("lock"))
    with open(disk / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
      while True:
        f.write(b"x" * 4096)
    before = _snapshot(workdir)
    proc = _tool("encode", workdir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: disk full while writing {workdir / 'latents_test.npy'}")
    assert "no half-written file is left" in lines[0]
    assert _snapshot(workdir) == before  # no latents file, whole or partial, no temporary one


@pytest.mark.parametrize("spelling", [{"model.name": "two_layer_vae"},
                                      {"model.name": "vae", "model.stochastic_layers": 2}])
def test_the_run_line_names_a_two_layer_vae_s_second_latent_in_either_spelling(spelling):
  from vae_jax import config as config_lib, sweeps, tools  # pylint: disable=g-import-not-at-top
  c = sweeps.apply_overrides(config_lib.get_config(), {**spelling, "model.top_latent_dim": 7})
  line = tools.describe("runs/x", c, epoch=None, image_shape=(28, 28, 1))
  assert "+ z2 7" in line
  one = tools.describe("runs/x", config_lib.get_config(), epoch=None, image_shape=(28, 28, 1))
  assert "z2" not in one
