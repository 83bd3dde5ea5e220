"""Reliability: kills, SIGTERM, divergence, W&B trouble and a config fuzz, none of which may
lose finished work or produce a silent wrong result."""

import json
import math
import random
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from ml_collections import config_dict

from tests import forkserver
from tests.helpers import ROOT, TINY_CONFIG_FILE, fake_dataset, tiny_config, write_fake_cache
from tests.helpers import final_params
from vae_jax import launcher, sweeps, trainer, workdir
from vae_jax.runtime import writers

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory):
  """A tiny config file over fake data big enough for epochs to take a moment, and the
  parameters of uninterrupted reference runs (single and sweep)."""
  root = tmp_path_factory.mktemp("kill")
  cache = write_fake_cache(root / "cache", n_train=2048)
  text = TINY_CONFIG_FILE.format(cache_dir=cache).replace(
      "c.num_epochs = 2", "c.num_epochs = 6\n  c.checkpoint_every_epochs = 1")
  path = root / "cfg.py"
  path.write_text(text)
  module = sweeps.load_module(str(path))
  for args in (["--nosweep", "--workdir", str(root / "ref")], ["--workdir", str(root / "ref_sweep")]):
    proc = _run([str(path), *args])
    assert proc.returncode == 0, proc.stderr[-2000:]
  return root, path, module


def _cmd(args):
  return [sys.executable, str(ROOT / "launch.py"), "--config", *args]


def _run(args, timeout=300):
  return forkserver.run(_cmd(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _params(config, wd):
  return final_params(config, wd, fake_dataset(shape=SHAPE))


def _relaunch_finishes_like_the_reference(args, root, module, wd):
  done = _run(args)
  assert done.returncode == 0, done.stderr[-2000:]
  config = module.get_config()
  for a, b in zip(_params(config, root / "ref"), _params(config, wd)):
    np.testing.assert_array_equal(a, b)


def _kill_at_random_points(args, seed, kills=3):
  rng = random.Random(seed)
  for _ in range(kills):
    proc = forkserver.popen(_cmd(args), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
      proc.wait(timeout=rng.uniform(2.0, 12.0))
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=60)
  done = _run(args)
  assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_kill9_at_random_points_then_relaunch_is_bitwise_identical(kill_setup, tmp_path):
  root, path, module = kill_setup
  wd = tmp_path / "killed"
  _kill_at_random_points([str(path), "--nosweep", "--workdir", str(wd)], seed=1)
  config = module.get_config()
  for a, b in zip(_params(config, root / "ref"), _params(config, wd)):
    np.testing.assert_array_equal(a, b)
  ref = json.loads((root / "ref" / "results.json").read_text())
  got = json.loads((wd / "results.json").read_text())
  assert got["test/neg_elbo"] == ref["test/neg_elbo"]
  steps = [json.loads(l)["step"] for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(set(steps)) and len(steps) == 6  # no duplicated or missing epochs


@pytest.mark.slow
def test_kill9_of_a_vectorised_sweep_then_relaunch_is_bitwise_identical(kill_setup, tmp_path):
  root, path, module = kill_setup
  wd = tmp_path / "sweep"
  _kill_at_random_points([str(path), "--workdir", str(wd)], seed=2)
  for overrides in module.get_sweep():
    name = sweeps.member_name(overrides)
    config = sweeps.apply_overrides(module.get_config(), overrides)
    for a, b in zip(_params(config, root / "ref_sweep" / name), _params(config, wd / name)):
      np.testing.assert_array_equal(a, b)
  assert (wd / "sweep.csv").read_text() .count("finished") == 3


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_relaunch_finishes_identically(kill_setup, tmp_path):
  root, path, module = kill_setup
  wd = tmp_path / "term"
  args = [str(path), "--nosweep", "--workdir", str(wd)]
  proc = forkserver.popen(_cmd(args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 120
  metrics = wd / "metrics.jsonl"
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
    time.sleep(0.05)  # until the first epoch has finished
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  if proc.returncode == 0:
    pytest.skip("the run finished before SIGTERM arrived")
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert "SIGTERM" in err and "Traceback" not in err
  saved = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and saved[-1] < 6
  _relaunch_finishes_like_the_reference(args, root, module, wd)


@pytest.mark.slow
def test_divergence_keeps_a_loadable_checkpoint(tmp_path):
  ds = fake_dataset()
  ok = tiny_config(num_epochs=2, **{"optimizer.name": "sgd", "optimizer.b1": 0.0})
  trainer.train_group([ok], [tmp_path], dataset=ds)
  good = _params_of(ok, tmp_path, ds)
  bad = tiny_config(num_epochs=4, learning_rate=1e12, **{"optimizer.name": "sgd", "optimizer.b1": 0.0})
  with pytest.raises(trainer.DivergenceError) as e:
    trainer.train_group([bad], [tmp_path], dataset=ds, allow_config_change=True)
  msg = str(e.value)
  # 128 images / batch 16 = 8 steps per epoch: epoch 3 holds steps 16..23.
  failed = json.loads((tmp_path / "failed.json").read_text())
  assert 16 <= failed["step"] < 24
  assert f"step {failed['step']} (epoch 3)" in msg
  assert "last good checkpoint: epoch 2" in msg and "learning_rate=1000000000000.0" in msg
  for a, b in zip(good, _params_of(ok, tmp_path, ds)):  # still epoch 2, loadable and finite
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(b).all()


def _params_of(config, wd, ds):
  return final_params(config, wd, ds)


@pytest.mark.slow
def test_one_diverging_member_of_a_vectorised_sweep_is_marked_failed(tmp_path):
  cache = write_fake_cache(tmp_path / "cache")
  module_path = tmp_path / "cfg.py"
  module_path.write_text(TINY_CONFIG_FILE.format(cache_dir=cache))
  config = sweeps.load_module(str(module_path)).get_config()
  with config.unlocked():
    config.optimizer.name, config.optimizer.b1 = "sgd", 0.0
  sweep = [{"learning_rate": 0.01}, {"learning_rate": 1e12}, {"learning_rate": 0.02}]
  rows = sweeps.run_sweep(config, sweep, tmp_path / "s", sweep_name="t")
  assert [r["status"] for r in rows] == ["finished", "failed", "finished"]
  assert math.isfinite(rows[0]["test/neg_elbo"]) and "test/neg_elbo" not in rows[1]
  assert (tmp_path / "s" / "learning_rate=1e+12" / "failed.json").exists()
  # A relaunch neither retrains the finished members nor retries the failed one.
  before = (tmp_path / "s" / "learning_rate=0.01" / "metrics.jsonl").read_text()
  sweeps.run_sweep(config, sweep, tmp_path / "s", sweep_name="t")
  assert (tmp_path / "s" / "learning_rate=0.01" / "metrics.jsonl").read_text() == before


def test_wandb_online_without_a_reachable_server_falls_back_to_offline(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no stored credentials
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
  monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
  wandb_config = config_dict.ConfigDict(
      {"mode": "online", "project": "p", "entity": None, "group": None, "name": None})
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    w = writers.Writer(tmp_path, config={"a": 1}, wandb_config=wandb_config)
  assert sum("offline" in str(c.message) for c in caught) == 1
  w.log(1, {"train/loss": 1.0})
  w.close()
  assert list((tmp_path / "wandb").glob("offline-run-*"))
  assert json.loads((tmp_path / "metrics.jsonl").read_text())["train/loss"] == 1.0


# Values that are wrong for every field of their kind (type or range).
_BAD = {
    int: ["3", 2.5, None, True, [1], -1, -10**9],
    float: ["x", None, [0.1], float("nan"), float("inf"), -1.0, "1e-3"],
    bool: [1, "yes", None, 0.0],
    str: ["definitely_not_a_choice", 3, None, ""],
    # unset fields: optional strings, and optional tuples (of ints or of names), for which
    # [1] would be a valid value
    "optional_str": [3, "", [1.5], 2.5],
    tuple: ["400", 400, (1.5,), (-5,), ("a",)],
    # a float that may be negative (an initial value, not a size or a rate)
    "signed_float": ["x", None, [0.1], float("nan"), float("inf"), "1e-3"],
}
_FREE_STRINGS = {"data.name", "wandb.project"}  # any non-empty string is allowed
_SIGNED_FLOATS = {"model.vampprior_init_mean"}


def _kind(key, value):
  if value is None:
    return "optional_str"
  if isinstance(value, bool):
    return bool
  if isinstance(value, (tuple, list)):
    return tuple
  if isinstance(value, str):
    return "optional_str" if key in _FREE_STRINGS else str
  if key in _SIGNED_FLOATS:
    return "signed_float"
  return type(value)


def _unsafe(d):
  """A ConfigDict that stores any value as given (type safety off at every level): a config
  file can hold anything, and validation is what must catch it."""
  return config_dict.ConfigDict({k: _unsafe(v) if isinstance(v, dict) else v for k, v in d.items()},
                                type_safe=False)


def test_config_fuzz_every_field_fails_with_one_clean_line(tmp_path, capsys, monkeypatch):
  from configs import default  # pylint: disable=g-import-not-at-top

  def must_not_train(config, *args, **kwargs):
    raise AssertionError(f"a bad config passed validation: {config}")
  monkeypatch.setattr(trainer, "train_and_evaluate", must_not_train)
  flat = workdir.flatten(default.get_config().to_dict())
  rng = random.Random(0)
  checked = set()
  for key, value in flat.items():
    for bad in rng.sample(_BAD[_kind(key, value)], 3):
      c = _unsafe(default.get_config().to_dict())
      *parents, leaf = key.split(".")
      node = c
      for p in parents:
        node = node[p]
      node[leaf] = bad
      wd = tmp_path / "wd"
      with pytest.raises(SystemExit) as e:
        launcher.main(config=c, config_path=str(ROOT / "configs" / "default.py"), workdir=str(wd))
      err = capsys.readouterr().err
      lines = [l for l in err.splitlines() if l.strip()]
      assert e.value.code == 2, (key, bad)
      assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], (key, bad, err)
      assert not wd.exists(), (key, bad)
      checked.add(key)
  assert checked == set(flat)


def _wait_for_lock(workdir, proc, timeout=120):
  """Until `proc` holds the lock of `workdir` (its pid in DIR/lock)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    try:
      if json.loads((workdir / "lock").read_text())["pid"] == proc.pid:
        return
    except (OSError, ValueError, KeyError):
      pass
    assert proc.poll() is None, "the first launch ended before it took the lock"
    time.sleep(0.05)
  raise AssertionError(f"{workdir} was never locked by pid {proc.pid}")


def _tree(wd):
  return {str(p.relative_to(wd)): p.read_bytes() for p in sorted(wd.rglob("*")) if p.is_file()}


def _refused(proc, holder_pid):
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert f"in use by pid {holder_pid} on host {socket.gethostname()}" in lines[0], lines[0]


@pytest.mark.slow
def test_a_second_launch_on_a_busy_workdir_is_refused_and_a_killed_holder_does_not_block(
    kill_setup, tmp_path):
  root, path, module = kill_setup
  wd = tmp_path / "shared"
  args = [str(path), "--nosweep", "--workdir", str(wd)]
  first = forkserver.popen(_cmd(args), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  try:
    _wait_for_lock(wd, first)
    first.send_signal(signal.SIGSTOP)  # a slow first launch, frozen mid-run: it holds the lock
    before = _tree(wd)
    _refused(_run(args), first.pid)
    assert _tree(wd) == before  # the refused launch touched nothing
    first.send_signal(signal.SIGKILL)  # its lock file stays behind, naming a dead process
    first.wait(timeout=60)
  finally:
    if first.poll() is None:
      first.kill()
  assert (wd / "lock").exists()
  _relaunch_finishes_like_the_reference(args, root, module, wd)


@pytest.mark.slow
def test_sweep_agents_share_a_sweep_folder_member_by_member(kill_setup, tmp_path):
  root, path, module = kill_setup
  wd = tmp_path / "sweep"
  names = [sweeps.member_name(o) for o in module.get_sweep()]
  sweep_args = [str(path), "--workdir", str(wd)]
  agent = forkserver.popen(_cmd([*sweep_args, f"--member={names[0]}"]), cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    _wait_for_lock(wd / names[0], agent)
    agent.send_signal(signal.SIGSTOP)
    # The same member again: refused. Another member: trained alongside.
    _refused(_run([*sweep_args, f"--member={names[0]}"]), agent.pid)
    other = _run([*sweep_args, f"--member={names[1]}"])
    assert other.returncode == 0, other.stderr[-2000:]
    # The whole sweep: leaves the busy member to its agent and trains the rest.
    whole = _run(sweep_args)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert f"skipped: {wd / names[0]} is in use by pid {agent.pid}" in whole.stdout
    assert f"{wd / names[1]}: finished, skipped" in whole.stdout
    assert not (wd / names[0] / "results.json").exists()
    agent.send_signal(signal.SIGCONT)
    assert agent.wait(timeout=300) == 0
  finally:
    if agent.poll() is None:
      agent.kill()
  final = _run(sweep_args)
  assert final.returncode == 0, final.stderr[-2000:]
  assert (wd / "sweep.csv").read_text().count("finished") == 3
  # Each member, trained alone by an agent, is the reference sweep's member of its name: up to
  # the float noise between a vectorised group and a run alone (summation order, amplified by
  # Adam over the epochs: 8e-3 at most on the 2-vCPU Sapphire Rapids, where another member's
  # parameters are 0.4 away), and ten times nearer its own reference than any other member's.
  configs = [sweeps.apply_overrides(module.get_config(), o) for o in module.get_sweep()]
  refs = [_params(c, root / "ref_sweep" / n) for c, n in zip(configs, names)]
  for i, (config, name) in enumerate(zip(configs, names)):
    got = _params(config, wd / name)
    gap = [max(float(np.max(np.abs(a - b))) for a, b in zip(got, ref)) for ref in refs]
    assert gap[i] < 2e-2, (name, gap)
    assert gap[i] < min(g for j, g in enumerate(gap) if j != i) / 10, (name, gap)
